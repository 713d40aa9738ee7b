/* Checks the key, row value and descriptor encodings of sql-lite-front. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "sql-lite-front/sql_internal.h"
#include "tests/lib/test.h"

/* One encoded datum with the datum it came from. */
struct encoded {
    struct rkv_sql_datum datum;
    struct rkv_sql_buf key;
};

static uint64_t random_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64*, seeded per test so a failure replays. */
static uint64_t random_next(void)
{
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    return random_state * 0x2545f4914f6cdd1dULL;
}

static void encode_all(struct encoded *items, size_t n, bool descending)
{
    for (size_t i = 0; i < n; i++) {
        items[i].key.len = 0;
        ASSERT_OK(rkv_sql__key_append_datum(&items[i].key, &items[i].datum,
                                            descending));
    }
}

static void free_all(struct encoded *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rkv_sql__buf_free(&items[i].key);
    }
}

/* Returns <0, 0, >0 as SQL orders a and b of one storage class. */
static int sql_compare(const struct rkv_sql_datum *a,
                       const struct rkv_sql_datum *b)
{
    if (a->type != b->type) {
        return (int)a->type - (int)b->type;
    }
    switch (a->type) {
    case RKV_SQL_INTEGER:
        return (a->integer > b->integer) - (a->integer < b->integer);
    case RKV_SQL_REAL:
        return (a->real > b->real) - (a->real < b->real);
    case RKV_SQL_TEXT:
    case RKV_SQL_BLOB:
        return rkv_sql__key_compare(a->bytes, a->len, b->bytes, b->len);
    default:
        return 0;
    }
}

/* Every pair's key order equals its SQL order (reversed when DESC). */
static void check_pairwise_order(struct encoded *items, size_t n,
                                 bool descending)
{
    encode_all(items, n, descending);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int want = sql_compare(&items[i].datum, &items[j].datum);
            int got = rkv_sql__key_compare(items[i].key.data, items[i].key.len,
                                           items[j].key.data, items[j].key.len);

            want = descending ? -want : want;
            if ((want > 0) != (got > 0) || (want < 0) != (got < 0)) {
                rkv_test_fail(__FILE__, __LINE__,
                              "items %zu and %zu: sql order %d, key order %d",
                              i, j, want, got);
            }
        }
    }
}

/* Decoding each key gives back the datum and consumes the whole key. */
static void check_round_trip(struct encoded *items, size_t n, bool descending)
{
    encode_all(items, n, descending);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *pos = items[i].key.data;
        struct rkv_sql_datum back;

        ASSERT_OK(rkv_sql__key_decode_datum(
            &pos, items[i].key.data + items[i].key.len, descending, &back));
        ASSERT_TRUE(pos == items[i].key.data + items[i].key.len);
        ASSERT_INT_EQ(sql_compare(&back, &items[i].datum), 0);
        ASSERT_INT_EQ(back.type, items[i].datum.type);
        rkv_sql__datum_clear(&back);
    }
}

/* Integers: boundaries of every byte length, both signs, and random
 * values of random magnitude keep their order ascending and descending. */
TEST(sql_keys, integer_order)
{
    static const int64_t boundaries[] = {INT64_MIN,
                                         INT64_MIN + 1,
                                         -4294967297LL,
                                         -4294967296LL,
                                         -65537,
                                         -65536,
                                         -257,
                                         -256,
                                         -255,
                                         -2,
                                         -1,
                                         0,
                                         1,
                                         2,
                                         255,
                                         256,
                                         257,
                                         65535,
                                         65536,
                                         4294967295LL,
                                         4294967296LL,
                                         INT64_MAX - 1,
                                         INT64_MAX};
    static struct encoded items[RKV_ARRAY_SIZE(boundaries) + 200];
    size_t n = 0;

    random_state = 1;
    for (size_t i = 0; i < RKV_ARRAY_SIZE(boundaries); i++) {
        items[n].datum.type = RKV_SQL_INTEGER;
        items[n++].datum.integer = boundaries[i];
    }
    while (n < RKV_ARRAY_SIZE(items)) {
        unsigned shift = (unsigned)(random_next() % 64);

        items[n].datum.type = RKV_SQL_INTEGER;
        items[n++].datum.integer = (int64_t)random_next() >> shift;
    }
    check_pairwise_order(items, n, false);
    check_pairwise_order(items, n, true);
    check_round_trip(items, n, false);
    check_round_trip(items, n, true);
    free_all(items, n);
}

/* Small integers take few bytes, so typical keys stay short. */
TEST(sql_keys, integer_length)
{
    struct rkv_sql_buf key = {0};
    struct rkv_sql_datum datum = {.type = RKV_SQL_INTEGER};

    datum.integer = 0;
    ASSERT_OK(rkv_sql__key_append_datum(&key, &datum, false));
    ASSERT_UINT_EQ(key.len, 1);
    key.len = 0;
    datum.integer = 200;
    ASSERT_OK(rkv_sql__key_append_datum(&key, &datum, false));
    ASSERT_UINT_EQ(key.len, 2);
    key.len = 0;
    datum.integer = -1;
    ASSERT_OK(rkv_sql__key_append_datum(&key, &datum, false));
    ASSERT_UINT_EQ(key.len, 1);
    key.len = 0;
    datum.integer = INT64_MIN;
    ASSERT_OK(rkv_sql__key_append_datum(&key, &datum, false));
    ASSERT_UINT_EQ(key.len, 9);
    rkv_sql__buf_free(&key);
}

/* Reals: infinities, extremes, subnormals and both zeros. */
TEST(sql_keys, real_order)
{
    static const double boundaries[] = {
        -INFINITY, -DBL_MAX, -1e300, -2.5, -1,    -DBL_MIN, -4.9e-324, 0,
        4.9e-324,  DBL_MIN,  1,      2.5,  1e300, DBL_MAX,  INFINITY};
    static struct encoded items[RKV_ARRAY_SIZE(boundaries) + 100];
    size_t n = 0;

    random_state = 2;
    for (size_t i = 0; i < RKV_ARRAY_SIZE(boundaries); i++) {
        items[n].datum.type = RKV_SQL_REAL;
        items[n++].datum.real = boundaries[i];
    }
    while (n < RKV_ARRAY_SIZE(items)) {
        double value = (double)(int64_t)random_next() /
                       (double)(1 + (random_next() % 1000000));

        items[n].datum.type = RKV_SQL_REAL;
        items[n++].datum.real = value;
    }
    check_pairwise_order(items, n, false);
    check_pairwise_order(items, n, true);
    check_round_trip(items, n, false);
    check_round_trip(items, n, true);
    free_all(items, n);
}

/* -0.0 equals 0.0 in SQL, so both get one key; NaN has no key. */
TEST(sql_keys, real_zero_and_nan)
{
    struct rkv_sql_buf a = {0};
    struct rkv_sql_buf b = {0};
    struct rkv_sql_datum datum = {.type = RKV_SQL_REAL, .real = -0.0};

    ASSERT_OK(rkv_sql__key_append_datum(&a, &datum, false));
    datum.real = 0.0;
    ASSERT_OK(rkv_sql__key_append_datum(&b, &datum, false));
    ASSERT_MEM_EQ(a.data, a.len, b.data, b.len);
    datum.real = NAN;
    ASSERT_INT_EQ(rkv_sql__key_append_datum(&a, &datum, false), -EINVAL);
    ASSERT_UINT_EQ(a.len, 9);
    rkv_sql__buf_free(&a);
    rkv_sql__buf_free(&b);
}

/* Text and blobs: empty, embedded NULs, 0xFF bytes, and prefixes. */
TEST(sql_keys, bytes_order)
{
    static const char *const texts[] = {
        "",  "\x01", "a",        "a\x01", "ab",       "abc", "abd",
        "b", "\x7f", "\xc3\xa9", "\xff",  "\xff\xff", "z"};
    static const uint8_t nul_texts[][3] = {
        {0, 0, 0}, {'a', 0, 0}, {'a', 0, 'b'}, {0, 0xff, 0}};
    static struct encoded items[RKV_ARRAY_SIZE(texts) + 4 + 60];
    uint8_t random_bytes[60][6];
    size_t n = 0;

    random_state = 3;
    for (size_t i = 0; i < RKV_ARRAY_SIZE(texts); i++) {
        items[n].datum.type = RKV_SQL_TEXT;
        items[n].datum.bytes = (const uint8_t *)texts[i];
        items[n++].datum.len = strlen(texts[i]);
    }
    for (size_t i = 0; i < 4; i++) {
        items[n].datum.type = RKV_SQL_BLOB;
        items[n].datum.bytes = nul_texts[i];
        items[n++].datum.len = 1 + i % 3;
    }
    for (size_t i = 0; i < 60; i++) {
        for (size_t j = 0; j < 6; j++) {
            /* Mostly 0x00, 0x01 and 0xFF: the bytes escaping works on. */
            static const uint8_t alphabet[] = {0x00, 0x01, 0xff, 'a'};

            random_bytes[i][j] = alphabet[random_next() % 4];
        }
        items[n].datum.type = RKV_SQL_BLOB;
        items[n].datum.bytes = random_bytes[i];
        items[n++].datum.len = (size_t)(random_next() % 7);
    }
    check_pairwise_order(items, n, false);
    check_pairwise_order(items, n, true);
    check_round_trip(items, n, false);
    check_round_trip(items, n, true);
    free_all(items, n);
}

/* Across storage classes, tuples with a DESC column sort as SQLite's
 * ORDER BY a, b DESC sorts them (SQLite is the oracle here). */
TEST(sql_keys, tuples_match_sqlite_order)
{
    sqlite3 *db;
    sqlite3_stmt *insert;
    sqlite3_stmt *select;
    struct rkv_sql_buf keys[300] = {{0}};
    size_t n = RKV_ARRAY_SIZE(keys);
    size_t previous = SIZE_MAX;

    random_state = 4;
    ASSERT_INT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    ASSERT_INT_EQ(
        sqlite3_exec(db, "CREATE TABLE t(id INTEGER, a, b)", NULL, NULL, NULL),
        SQLITE_OK);
    ASSERT_INT_EQ(sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?1, ?2, ?3)",
                                     -1, &insert, NULL),
                  SQLITE_OK);
    for (size_t i = 0; i < n; i++) {
        struct rkv_sql_datum values[2];
        char text[8];

        snprintf(text, sizeof(text), "%c%c", 'a' + (int)(random_next() % 3),
                 'a' + (int)(random_next() % 3));
        for (int c = 0; c < 2; c++) {
            memset(&values[c], 0, sizeof(values[c]));
            switch (random_next() % 4) {
            case 0:
                values[c].type = RKV_SQL_NULL;
                sqlite3_bind_null(insert, 2 + c);
                break;
            case 1:
                values[c].type = RKV_SQL_INTEGER;
                values[c].integer = (int64_t)(random_next() % 7) - 3;
                sqlite3_bind_int64(insert, 2 + c, values[c].integer);
                break;
            case 2:
                values[c].type = RKV_SQL_TEXT;
                values[c].bytes = (const uint8_t *)text;
                values[c].len = strlen(text);
                sqlite3_bind_text(insert, 2 + c, text, -1, SQLITE_TRANSIENT);
                break;
            default:
                values[c].type = RKV_SQL_BLOB;
                values[c].bytes = (const uint8_t *)text;
                values[c].len = 1;
                sqlite3_bind_blob(insert, 2 + c, text, 1, SQLITE_TRANSIENT);
                break;
            }
        }
        ASSERT_OK(rkv_sql__key_append_datum(&keys[i], &values[0], false));
        ASSERT_OK(rkv_sql__key_append_datum(&keys[i], &values[1], true));
        sqlite3_bind_int64(insert, 1, (sqlite3_int64)i);
        ASSERT_INT_EQ(sqlite3_step(insert), SQLITE_DONE);
        sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    ASSERT_INT_EQ(sqlite3_prepare_v2(db, "SELECT id FROM t ORDER BY a, b DESC",
                                     -1, &select, NULL),
                  SQLITE_OK);
    while (sqlite3_step(select) == SQLITE_ROW) {
        size_t id = (size_t)sqlite3_column_int64(select, 0);

        if (previous != SIZE_MAX) {
            ASSERT_INT_LE(rkv_sql__key_compare(keys[previous].data,
                                               keys[previous].len,
                                               keys[id].data, keys[id].len),
                          0);
        }
        previous = id;
    }
    sqlite3_finalize(select);
    sqlite3_close(db);
    for (size_t i = 0; i < n; i++) {
        rkv_sql__buf_free(&keys[i]);
    }
}

/* Bytes no encoder writes fail to decode instead of misreading. */
TEST(sql_keys, decode_rejects_garbage)
{
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"", 0},             /* nothing */
        {"\x29", 1},         /* one-byte integer, payload missing */
        {"\x29\x00", 2},     /* non-minimal: 0 in one byte */
        {"\x40\x01\x02", 3}, /* real cut short */
        {"\x50"
         "ab",
         3},                 /* text without terminator */
        {"\x50\x00\x02", 3}, /* invalid escape */
        {"\x77", 1},         /* unknown tag */
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        const uint8_t *pos = (const uint8_t *)cases[i].bytes;
        struct rkv_sql_datum datum;
        int rv =
            rkv_sql__key_decode_datum(&pos, pos + cases[i].len, false, &datum);

        if (rv != RKV_ECORRUPT) {
            rkv_test_fail(__FILE__, __LINE__, "case %zu decoded: rv %d", i, rv);
        }
    }
}

/* The end of a prefix sorts after every key that starts with it. */
TEST(sql_keys, prefix_end)
{
    struct rkv_sql_buf prefix = {0};
    struct rkv_sql_buf end = {0};
    struct rkv_sql_buf inside = {0};
    struct rkv_sql_datum max = {
        .type = RKV_SQL_BLOB, .bytes = (const uint8_t *)"\xff\xff", .len = 2};

    ASSERT_OK(rkv_sql__key_append_prefix(&prefix, 100, 1));
    ASSERT_OK(rkv_sql__buf_append(&end, prefix.data, prefix.len));
    rkv_sql__key_prefix_end(&end);
    ASSERT_OK(rkv_sql__buf_append(&inside, prefix.data, prefix.len));
    ASSERT_OK(rkv_sql__key_append_datum(&inside, &max, false));
    ASSERT_INT_LT(
        rkv_sql__key_compare(inside.data, inside.len, end.data, end.len), 0);
    ASSERT_INT_LT(
        rkv_sql__key_compare(prefix.data, prefix.len, end.data, end.len), 0);
    end.len = 0;
    ASSERT_OK(rkv_sql__buf_append(&end, "\xff\xff", 2));
    rkv_sql__key_prefix_end(&end);
    ASSERT_UINT_EQ(end.len, 0);
    rkv_sql__buf_free(&prefix);
    rkv_sql__buf_free(&end);
    rkv_sql__buf_free(&inside);
}

/* Keys print as /Table/<id>/<index>/<columns>, DESC columns included. */
TEST(sql_keys, format)
{
    struct rkv_sql_buf key = {0};
    struct rkv_sql_datum id = {.type = RKV_SQL_INTEGER, .integer = -42};
    struct rkv_sql_datum name = {
        .type = RKV_SQL_TEXT, .bytes = (const uint8_t *)"it's", .len = 4};
    char text[128];

    ASSERT_OK(rkv_sql__key_append_prefix(&key, 104, 1));
    ASSERT_OK(rkv_sql__key_append_datum(&key, &id, false));
    ASSERT_OK(rkv_sql__key_append_datum(&key, &name, true));
    rkv_sql__key_format(key.data, key.len, false, text, sizeof(text));
    ASSERT_STR_EQ(text, "/Table/104/1/-42/'it\\x27s'");
    rkv_sql__key_format((const uint8_t *)"\x02k", 2, false, text, sizeof(text));
    ASSERT_STR_EQ(text, "0x026b");
    rkv_sql__key_format(NULL, 0, true, text, sizeof(text));
    ASSERT_STR_EQ(text, "/Max");
    rkv_sql__buf_free(&key);
}

/* A row value keeps every non-NULL column and its storage class. */
TEST(sql_value, round_trip)
{
    static const uint32_t ids[] = {0, 2, 3, 5, 9};
    struct rkv_sql_datum values[5] = {
        {.type = RKV_SQL_INTEGER, .integer = INT64_MIN},
        {.type = RKV_SQL_NULL},
        {.type = RKV_SQL_REAL, .real = -2.5},
        {.type = RKV_SQL_TEXT, .bytes = (const uint8_t *)"h\0i", .len = 3},
        {.type = RKV_SQL_BLOB, .bytes = (const uint8_t *)"", .len = 0},
    };
    struct rkv_sql_datum back[10];
    struct rkv_sql_buf value = {0};

    ASSERT_OK(rkv_sql__row_encode(&value, 5, ids, values));
    ASSERT_OK(rkv_sql__row_decode(value.data, value.len, 10, back));
    ASSERT_INT_EQ(back[0].type, RKV_SQL_INTEGER);
    ASSERT_INT_EQ(back[0].integer, INT64_MIN);
    ASSERT_INT_EQ(back[2].type, RKV_SQL_NULL);
    ASSERT_INT_EQ(back[3].type, RKV_SQL_REAL);
    ASSERT_TRUE(back[3].real == -2.5);
    ASSERT_INT_EQ(back[5].type, RKV_SQL_TEXT);
    ASSERT_MEM_EQ(back[5].bytes, back[5].len, "h\0i", 3);
    ASSERT_INT_EQ(back[9].type, RKV_SQL_BLOB);
    ASSERT_UINT_EQ(back[9].len, 0);
    ASSERT_INT_EQ(back[1].type, RKV_SQL_NULL);
    /* Fewer columns than the value names is corruption, not truncation. */
    ASSERT_INT_EQ(rkv_sql__row_decode(value.data, value.len, 9, back),
                  RKV_ECORRUPT);
    /* So is every cut-short prefix of a value. */
    for (size_t len = 1; len < value.len; len++) {
        int rv = rkv_sql__row_decode(value.data, len, 10, back);

        ASSERT_TRUE(rv == RKV_ECORRUPT || rv == 0);
    }
    ASSERT_INT_EQ(rkv_sql__row_decode(value.data, value.len - 1, 10, back),
                  RKV_ECORRUPT);
    rkv_sql__buf_free(&value);
}

/* A row of NULLs is an empty value. */
TEST(sql_value, all_null_is_empty)
{
    static const uint32_t ids[] = {0, 1};
    struct rkv_sql_datum values[2] = {{.type = RKV_SQL_NULL},
                                      {.type = RKV_SQL_NULL}};
    struct rkv_sql_buf value = {0};
    struct rkv_sql_datum back[2];

    ASSERT_OK(rkv_sql__row_encode(&value, 2, ids, values));
    ASSERT_UINT_EQ(value.len, 0);
    ASSERT_OK(rkv_sql__row_decode((const uint8_t *)"", 0, 2, back));
    ASSERT_INT_EQ(back[0].type, RKV_SQL_NULL);
    rkv_sql__buf_free(&value);
}

static struct rkv_sql_table *describe(const char *create, const char *name)
{
    struct rkv_sql_table *table = NULL;
    char message[256] = "";
    sqlite3 *db;
    int rv;

    ASSERT_INT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    ASSERT_INT_EQ(sqlite3_exec(db, create, NULL, NULL, NULL), SQLITE_OK);
    rv = rkv_sql__table_from_sqlite(db, name, &table, message, sizeof(message));
    sqlite3_close(db);
    if (rv != 0) {
        rkv_test_fail(__FILE__, __LINE__, "describe failed: %d %s", rv,
                      message);
    }
    return table;
}

/* A composite key keeps its order, DESC flags and NOT NULL through the
 * descriptor encoding. */
TEST(sql_catalog, descriptor_round_trip)
{
    struct rkv_sql_table *table = describe(
        "CREATE TABLE Orders(note TEXT DEFAULT 'none', region TEXT, "
        "id BIGINT, amount REAL NOT NULL, PRIMARY KEY (region, id DESC))",
        "Orders");
    struct rkv_sql_table *back = NULL;
    struct rkv_sql_buf encoded = {0};

    table->table_id = 123;
    ASSERT_OK(rkv_sql__table_encode(table, &encoded));
    ASSERT_OK(rkv_sql__table_decode(encoded.data, encoded.len, &back));
    ASSERT_STR_EQ(back->name, "orders");
    ASSERT_UINT_EQ(back->table_id, 123);
    ASSERT_UINT_EQ(back->n_columns, 4);
    ASSERT_UINT_EQ(back->n_key_columns, 2);
    ASSERT_UINT_EQ(back->key_columns[0], 1);
    ASSERT_UINT_EQ(back->key_columns[1], 2);
    ASSERT_FALSE(back->columns[1].descending);
    ASSERT_TRUE(back->columns[2].descending);
    ASSERT_TRUE(back->columns[1].not_null);
    ASSERT_TRUE(back->columns[3].not_null);
    ASSERT_FALSE(back->columns[0].not_null);
    ASSERT_STR_EQ(back->columns[0].default_sql, "'none'");
    ASSERT_INT_EQ(back->columns[2].affinity, RKV_SQL_AFF_INTEGER);
    ASSERT_FALSE(back->hidden_key);
    /* Every cut-short descriptor fails to decode. */
    for (size_t len = 0; len < encoded.len; len++) {
        struct rkv_sql_table *cut = NULL;

        ASSERT_INT_NE(rkv_sql__table_decode(encoded.data, len, &cut), 0);
    }
    rkv_sql__table_free(table);
    rkv_sql__table_free(back);
    rkv_sql__buf_free(&encoded);
}

/* A table without a primary key gets the hidden row key column. */
TEST(sql_catalog, hidden_key)
{
    struct rkv_sql_table *table = describe("CREATE TABLE t(a, b)", "t");
    char *declaration = rkv_sql__table_declaration(table);

    ASSERT_TRUE(table->hidden_key);
    ASSERT_UINT_EQ(table->n_columns, 3);
    ASSERT_STR_EQ(table->columns[2].name, RKV_SQL_HIDDEN_KEY_NAME);
    ASSERT_TRUE(table->columns[2].hidden);
    ASSERT_STR_EQ(declaration, "CREATE TABLE x(\"a\" , \"b\" , \"rowid_\" "
                               "INTEGER HIDDEN)");
    sqlite3_free(declaration);
    rkv_sql__table_free(table);
}

/* Key columns without one storage class are rejected with the reason. */
TEST(sql_catalog, rejects_numeric_key)
{
    struct rkv_sql_table *table = NULL;
    char message[256] = "";
    sqlite3 *db;

    ASSERT_INT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    ASSERT_INT_EQ(sqlite3_exec(db, "CREATE TABLE t(k DECIMAL PRIMARY KEY)",
                               NULL, NULL, NULL),
                  SQLITE_OK);
    ASSERT_INT_EQ(
        rkv_sql__table_from_sqlite(db, "t", &table, message, sizeof(message)),
        -EINVAL);
    ASSERT_TRUE(strstr(message, "\"k\"") != NULL);
    ASSERT_INT_EQ(sqlite3_exec(db,
                               "CREATE TABLE u(k TEXT COLLATE NOCASE "
                               "PRIMARY KEY)",
                               NULL, NULL, NULL),
                  SQLITE_OK);
    ASSERT_INT_EQ(
        rkv_sql__table_from_sqlite(db, "u", &table, message, sizeof(message)),
        -EINVAL);
    ASSERT_TRUE(strstr(message, "NOCASE") != NULL);
    sqlite3_close(db);
}
