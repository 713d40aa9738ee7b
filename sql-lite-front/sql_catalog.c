/*
 * The catalog: table descriptors, their encoding, and their place in the
 * store (system table 1, layout in sql_internal.h), so every node and
 * every session sees the same tables.
 *
 * Descriptor encoding, all integers as uvarints, strings as a uvarint
 * length and bytes:
 *   version, table_id, name, n_columns, then per column:
 *   name, decl_type, flags (1 NOT NULL, 2 hidden, 4 DESC, 8 has default),
 *   key_position, [default_sql].
 * Affinity and the key column list are derived on decode, not stored.
 *
 * Invariants:
 *   1. A decoded descriptor passes table_is_valid(): key positions run
 *      1..n_key_columns exactly once, key columns are NOT NULL and have an
 *      INTEGER, REAL, TEXT or BLOB affinity, and names are non-empty.
 *   2. Table ids only grow: the counter at index 2 advances by
 *      compare-and-swap, so two sessions never get the same id.
 *   3. A name maps to one descriptor; creating takes the name with a
 *      compare-and-swap that requires it absent.
 */
#include "sql-lite-front/sql_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* Compare-and-swap attempts on one counter before giving up busy. */
#define COUNTER_RETRIES_MAX 64
/* Pairs read per page when listing the catalog or a table's keys. */
#define SCAN_PAGE_LEN 512

enum {
    COLUMN_NOT_NULL = 1,
    COLUMN_HIDDEN = 2,
    COLUMN_DESC = 4,
    COLUMN_HAS_DEFAULT = 8,
};

enum rkv_sql_affinity rkv_sql__affinity_of(const char *decl_type)
{
    /* SQLite's rules, in order: INT, then CHAR/CLOB/TEXT, then BLOB or
     * no type, then REAL/FLOA/DOUB, else NUMERIC. */
    if (strcasestr(decl_type, "INT") != NULL) {
        return RKV_SQL_AFF_INTEGER;
    }
    if (strcasestr(decl_type, "CHAR") != NULL ||
        strcasestr(decl_type, "CLOB") != NULL ||
        strcasestr(decl_type, "TEXT") != NULL) {
        return RKV_SQL_AFF_TEXT;
    }
    if (decl_type[0] == '\0' || strcasestr(decl_type, "BLOB") != NULL) {
        return RKV_SQL_AFF_BLOB;
    }
    if (strcasestr(decl_type, "REAL") != NULL ||
        strcasestr(decl_type, "FLOA") != NULL ||
        strcasestr(decl_type, "DOUB") != NULL) {
        return RKV_SQL_AFF_REAL;
    }
    return RKV_SQL_AFF_NUMERIC;
}

void rkv_sql__table_free(struct rkv_sql_table *table)
{
    if (table == NULL) {
        return;
    }
    for (size_t i = 0; i < table->n_columns; i++) {
        rkv_free(table->columns[i].name);
        rkv_free(table->columns[i].decl_type);
        rkv_free(table->columns[i].default_sql);
    }
    rkv_free(table->columns);
    rkv_free(table->name);
    rkv_free(table);
}

/* Tells whether a column may be part of a key (invariant 1). */
static bool affinity_is_keyable(enum rkv_sql_affinity affinity)
{
    return affinity != RKV_SQL_AFF_NUMERIC;
}

/* Fills key_columns from the columns' key positions; false when they do
 * not run 1..n exactly once or a key column breaks invariant 1. */
static bool table_derive_key(struct rkv_sql_table *table)
{
    table->n_key_columns = 0;
    for (size_t i = 0; i < table->n_columns; i++) {
        const struct rkv_sql_column *column = &table->columns[i];
        uint32_t position = column->key_position;

        if (position == 0) {
            continue;
        }
        if (position > table->n_columns || !column->not_null ||
            !affinity_is_keyable(column->affinity)) {
            return false;
        }
        table->key_columns[position - 1] = (uint32_t)i;
        table->n_key_columns++;
    }
    for (size_t p = 0; p < table->n_key_columns; p++) {
        uint32_t index = table->key_columns[p];

        if (index >= table->n_columns ||
            table->columns[index].key_position != p + 1) {
            return false;
        }
    }
    return table->n_key_columns > 0;
}

static int append_string(struct rkv_sql_buf *buf, const char *text)
{
    size_t len = strlen(text);
    int rv = rkv_sql__buf_append_uvarint(buf, len);

    if (rv == 0) {
        rv = rkv_sql__buf_append(buf, text, len);
    }
    return rv;
}

static int append_column(struct rkv_sql_buf *buf,
                         const struct rkv_sql_column *column)
{
    uint64_t flags = (column->not_null ? COLUMN_NOT_NULL : 0) |
                     (column->hidden ? COLUMN_HIDDEN : 0) |
                     (column->descending ? COLUMN_DESC : 0) |
                     (column->default_sql != NULL ? COLUMN_HAS_DEFAULT : 0);
    int rv;

    rv = append_string(buf, column->name);
    if (rv == 0) {
        rv = append_string(buf, column->decl_type);
    }
    if (rv == 0) {
        rv = rkv_sql__buf_append_uvarint(buf, flags);
    }
    if (rv == 0) {
        rv = rkv_sql__buf_append_uvarint(buf, column->key_position);
    }
    if (rv == 0 && column->default_sql != NULL) {
        rv = append_string(buf, column->default_sql);
    }
    return rv;
}

int rkv_sql__table_encode(const struct rkv_sql_table *table,
                          struct rkv_sql_buf *buf)
{
    int rv;

    assert(table != NULL);
    assert(table->n_key_columns > 0);

    rv = rkv_sql__buf_append_uvarint(buf, RKV_SQL_TABLE_VERSION);
    if (rv == 0) {
        rv = rkv_sql__buf_append_uvarint(buf, table->table_id);
    }
    if (rv == 0) {
        rv = append_string(buf, table->name);
    }
    if (rv == 0) {
        rv = rkv_sql__buf_append_uvarint(buf, table->n_columns);
    }
    for (size_t i = 0; rv == 0 && i < table->n_columns; i++) {
        rv = append_column(buf, &table->columns[i]);
    }
    return rv;
}

/* Reads a length-prefixed string into a new NUL-terminated copy. */
static int read_string(const uint8_t **pos, const uint8_t *end, char **out)
{
    uint64_t len;
    char *text;
    int rv;

    rv = rkv_sql__read_uvarint(pos, end, &len);
    if (rv != 0 || len > (uint64_t)(end - *pos) || memchr(*pos, 0, len)) {
        return RKV_ECORRUPT;
    }
    text = rkv_malloc(len + 1);
    if (text == NULL) {
        return -ENOMEM;
    }
    memcpy(text, *pos, len);
    text[len] = '\0';
    *pos += len;
    *out = text;
    return 0;
}

static int read_column(const uint8_t **pos, const uint8_t *end,
                       struct rkv_sql_column *column)
{
    uint64_t flags;
    uint64_t position;
    int rv;

    rv = read_string(pos, end, &column->name);
    if (rv == 0) {
        rv = read_string(pos, end, &column->decl_type);
    }
    if (rv == 0) {
        rv = rkv_sql__read_uvarint(pos, end, &flags);
    }
    if (rv == 0) {
        rv = rkv_sql__read_uvarint(pos, end, &position);
    }
    if (rv != 0) {
        return rv;
    }
    if (flags > 15 || position > RKV_SQL_COLUMNS_MAX ||
        column->name[0] == '\0') {
        return RKV_ECORRUPT;
    }
    column->not_null = (flags & COLUMN_NOT_NULL) != 0;
    column->hidden = (flags & COLUMN_HIDDEN) != 0;
    column->descending = (flags & COLUMN_DESC) != 0;
    column->key_position = (uint32_t)position;
    column->affinity = rkv_sql__affinity_of(column->decl_type);
    if (flags & COLUMN_HAS_DEFAULT) {
        rv = read_string(pos, end, &column->default_sql);
    }
    return rv;
}

int rkv_sql__table_decode(const uint8_t *data, size_t len,
                          struct rkv_sql_table **out)
{
    const uint8_t *pos = data;
    const uint8_t *end = data + len;
    struct rkv_sql_table *table;
    uint64_t n_columns;
    int rv;

    table = rkv_calloc(1, sizeof(*table));
    if (table == NULL) {
        return -ENOMEM;
    }
    rv = rkv_sql__read_uvarint(&pos, end, &table->version);
    if (rv == 0 && table->version != RKV_SQL_TABLE_VERSION) {
        rv = RKV_ECORRUPT;
    }
    if (rv == 0) {
        rv = rkv_sql__read_uvarint(&pos, end, &table->table_id);
    }
    if (rv == 0) {
        rv = read_string(&pos, end, &table->name);
    }
    if (rv == 0) {
        rv = rkv_sql__read_uvarint(&pos, end, &n_columns);
    }
    if (rv == 0 && (n_columns == 0 || n_columns > RKV_SQL_COLUMNS_MAX)) {
        rv = RKV_ECORRUPT;
    }
    if (rv != 0) {
        goto err_after_alloc;
    }
    table->columns = rkv_calloc(n_columns, sizeof(*table->columns));
    if (table->columns == NULL) {
        rv = -ENOMEM;
        goto err_after_alloc;
    }
    table->n_columns = n_columns;
    for (size_t i = 0; i < n_columns; i++) {
        rv = read_column(&pos, end, &table->columns[i]);
        if (rv != 0) {
            goto err_after_alloc;
        }
    }
    if (pos != end || !table_derive_key(table)) {
        rv = RKV_ECORRUPT;
        goto err_after_alloc;
    }
    table->hidden_key = table->columns[table->key_columns[0]].hidden;
    *out = table;
    return 0;

err_after_alloc:
    rkv_sql__table_free(table);
    assert(rv != 0);
    return rv;
}

/* ---- descriptors from SQLite's schema ---------------------------------- */

static char *dup_text(const unsigned char *text)
{
    const char *source = text != NULL ? (const char *)text : "";

    return rkv_memdup(source, strlen(source) + 1);
}

/* Reads DESC flags and collations of the primary key index, if SQLite made
 * one (an INTEGER PRIMARY KEY has none and is ascending). */
static int table_read_key_order(sqlite3 *scratch, const char *name,
                                struct rkv_sql_table *table, char *message,
                                size_t message_len)
{
    static const char sql[] =
        "SELECT x.cid, x.desc, x.coll FROM pragma_index_list(?1) AS l, "
        "pragma_index_xinfo(l.name) AS x WHERE l.origin = 'pk' AND x.key";
    sqlite3_stmt *stmt;
    int rv;

    if (sqlite3_prepare_v2(scratch, sql, -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(message, message_len, "reading the key order failed: %s",
                 sqlite3_errmsg(scratch));
        return RKV_ESQL;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    while ((rv = sqlite3_step(stmt)) == SQLITE_ROW) {
        int cid = sqlite3_column_int(stmt, 0);
        const char *collation = (const char *)sqlite3_column_text(stmt, 2);

        if (cid < 0 || (size_t)cid >= table->n_columns) {
            continue;
        }
        table->columns[cid].descending = sqlite3_column_int(stmt, 1) != 0;
        if (collation != NULL && strcasecmp(collation, "BINARY") != 0) {
            snprintf(message, message_len,
                     "primary key column \"%s\" uses collation %s, but key "
                     "columns support only BINARY",
                     table->columns[cid].name, collation);
            sqlite3_finalize(stmt);
            return -EINVAL;
        }
    }
    sqlite3_finalize(stmt);
    return rv == SQLITE_DONE ? 0 : RKV_ESQL;
}

/* Copies one row of PRAGMA table_xinfo into a column. */
static int column_from_pragma(sqlite3_stmt *stmt, struct rkv_sql_column *column,
                              char *message, size_t message_len)
{
    const unsigned char *default_sql = sqlite3_column_text(stmt, 4);

    column->name = dup_text(sqlite3_column_text(stmt, 1));
    column->decl_type = dup_text(sqlite3_column_text(stmt, 2));
    if (default_sql != NULL) {
        column->default_sql = dup_text(default_sql);
    }
    if (column->name == NULL || column->decl_type == NULL ||
        (default_sql != NULL && column->default_sql == NULL)) {
        return -ENOMEM;
    }
    column->affinity = rkv_sql__affinity_of(column->decl_type);
    column->key_position = (uint32_t)sqlite3_column_int(stmt, 5);
    column->not_null =
        sqlite3_column_int(stmt, 3) != 0 || column->key_position > 0;
    if (sqlite3_column_int(stmt, 6) != 0) {
        snprintf(message, message_len,
                 "column \"%s\" is a generated column, which is not "
                 "supported",
                 column->name);
        return -EINVAL;
    }
    if (column->key_position > 0 && !affinity_is_keyable(column->affinity)) {
        snprintf(message, message_len,
                 "primary key column \"%s\" has type \"%s\", but a key "
                 "column needs INTEGER, REAL, TEXT or BLOB affinity "
                 "(for example BIGINT, DOUBLE, VARCHAR, BLOB)",
                 column->name, column->decl_type);
        return -EINVAL;
    }
    return 0;
}

/* Appends the generated row key column to a table without a primary key. */
static int table_add_hidden_key(struct rkv_sql_table *table)
{
    struct rkv_sql_column *column = &table->columns[table->n_columns];

    column->name = dup_text((const unsigned char *)RKV_SQL_HIDDEN_KEY_NAME);
    column->decl_type = dup_text((const unsigned char *)"INTEGER");
    if (column->name == NULL || column->decl_type == NULL) {
        return -ENOMEM;
    }
    column->affinity = RKV_SQL_AFF_INTEGER;
    column->not_null = true;
    column->hidden = true;
    column->key_position = 1;
    table->n_columns++;
    table->hidden_key = true;
    return 0;
}

static int table_read_columns(sqlite3 *scratch, const char *name,
                              struct rkv_sql_table *table, char *message,
                              size_t message_len)
{
    sqlite3_stmt *stmt;
    int rv = 0;

    if (sqlite3_prepare_v2(scratch, "SELECT * FROM pragma_table_xinfo(?1)", -1,
                           &stmt, NULL) != SQLITE_OK) {
        snprintf(message, message_len, "reading the columns failed: %s",
                 sqlite3_errmsg(scratch));
        return RKV_ESQL;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    while (rv == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
        /* One slot stays free for a hidden key column. */
        if (table->n_columns + 1 >= RKV_SQL_COLUMNS_MAX) {
            snprintf(message, message_len,
                     "table \"%s\" has more than %d columns", name,
                     RKV_SQL_COLUMNS_MAX - 1);
            rv = -EINVAL;
            break;
        }
        rv = column_from_pragma(stmt, &table->columns[table->n_columns],
                                message, message_len);
        table->n_columns++;
    }
    sqlite3_finalize(stmt);
    return rv;
}

int rkv_sql__table_from_sqlite(sqlite3 *scratch, const char *name,
                               struct rkv_sql_table **out, char *message,
                               size_t message_len)
{
    struct rkv_sql_table *table;
    bool has_key = false;
    int rv;

    table = rkv_calloc(1, sizeof(*table));
    if (table == NULL) {
        return -ENOMEM;
    }
    table->version = RKV_SQL_TABLE_VERSION;
    table->columns = rkv_calloc(RKV_SQL_COLUMNS_MAX, sizeof(*table->columns));
    table->name = dup_text((const unsigned char *)name);
    if (table->columns == NULL || table->name == NULL) {
        rv = -ENOMEM;
        goto err_after_alloc;
    }
    for (char *c = table->name; *c != '\0'; c++) {
        *c = (char)((*c >= 'A' && *c <= 'Z') ? *c - 'A' + 'a' : *c);
    }
    rv = table_read_columns(scratch, name, table, message, message_len);
    if (rv != 0) {
        goto err_after_alloc;
    }
    for (size_t i = 0; i < table->n_columns; i++) {
        has_key = has_key || table->columns[i].key_position > 0;
    }
    rv = has_key
             ? table_read_key_order(scratch, name, table, message, message_len)
             : table_add_hidden_key(table);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (!table_derive_key(table)) {
        snprintf(message, message_len, "table \"%s\" has an invalid key", name);
        rv = -EINVAL;
        goto err_after_alloc;
    }
    *out = table;
    return 0;

err_after_alloc:
    rkv_sql__table_free(table);
    assert(rv != 0);
    return rv;
}

char *rkv_sql__table_declaration(const struct rkv_sql_table *table)
{
    sqlite3_str *text = sqlite3_str_new(NULL);

    sqlite3_str_appendf(text, "CREATE TABLE x(");
    for (size_t i = 0; i < table->n_columns; i++) {
        const struct rkv_sql_column *column = &table->columns[i];

        sqlite3_str_appendf(text, "%s\"%w\" %s", i > 0 ? ", " : "",
                            column->name, column->decl_type);
        if (column->hidden) {
            sqlite3_str_appendf(text, " HIDDEN");
        }
        if (column->default_sql != NULL) {
            sqlite3_str_appendf(text, " DEFAULT (%s)", column->default_sql);
        }
    }
    sqlite3_str_appendf(text, ")");
    return sqlite3_str_finish(text);
}

/* ---- the catalog in the store ------------------------------------------ */

static int catalog_name_key(struct rkv_sql_buf *key, const char *name)
{
    struct rkv_sql_datum datum = {
        .type = RKV_SQL_TEXT,
        .bytes = (const uint8_t *)name,
        .len = strlen(name),
    };
    int rv;

    rv = rkv_sql__key_append_prefix(key, RKV_SQL_CATALOG_TABLE_ID,
                                    RKV_SQL_CATALOG_INDEX_NAMES);
    if (rv == 0) {
        rv = rkv_sql__key_append_datum(key, &datum, false);
    }
    return rv;
}

/* Advances the be64 counter at key by count with compare-and-swap; an
 * absent counter starts at initial. *first_out gets the old value. */
static int counter_advance(struct rkv_sql_kv *kv, const struct rkv_sql_buf *key,
                           uint64_t initial, uint64_t count,
                           uint64_t *first_out, char *message)
{
    for (unsigned attempt = 0; attempt < COUNTER_RETRIES_MAX; attempt++) {
        uint8_t *current = NULL;
        size_t current_len = 0;
        uint8_t next[8];
        uint64_t value = initial;
        bool swapped = false;
        int rv;

        rv = kv->vtable->get(kv, key->data, key->len, &current, &current_len,
                             message);
        if (rv != 0 && rv != RKV_ENOTFOUND) {
            return rv;
        }
        if (rv == 0 && current_len != 8) {
            rkv_free(current);
            snprintf(message, RKV_SQL_KV_MESSAGE_MAX,
                     "catalog counter holds %zu bytes, expected 8",
                     current_len);
            return RKV_ECORRUPT;
        }
        if (rv == 0) {
            value = rkv_get_be64(current);
        }
        rkv_put_be64(next, value + count);
        rv = kv->vtable->cas(kv, key->data, key->len, current, current_len,
                             next, sizeof(next), &swapped, message);
        rkv_free(current);
        if (rv != 0) {
            return rv;
        }
        if (swapped) {
            *first_out = value;
            return 0;
        }
    }
    snprintf(message, RKV_SQL_KV_MESSAGE_MAX,
             "catalog counter contended %d times in a row",
             COUNTER_RETRIES_MAX);
    return RKV_EBUSY;
}

int rkv_sql__catalog_create(struct rkv_sql_kv *kv, struct rkv_sql_table *table,
                            char *message)
{
    struct rkv_sql_buf key = {0};
    struct rkv_sql_buf value = {0};
    bool swapped = false;
    int rv;

    rv = rkv_sql__key_append_prefix(&key, RKV_SQL_CATALOG_TABLE_ID,
                                    RKV_SQL_CATALOG_INDEX_TABLE_ID);
    if (rv == 0) {
        rv = counter_advance(kv, &key, RKV_SQL_FIRST_USER_TABLE_ID, 1,
                             &table->table_id, message);
    }
    key.len = 0;
    if (rv == 0) {
        rv = catalog_name_key(&key, table->name);
    }
    if (rv == 0) {
        rv = rkv_sql__table_encode(table, &value);
    }
    if (rv == 0) {
        rv = kv->vtable->cas(kv, key.data, key.len, NULL, 0, value.data,
                             value.len, &swapped, message);
    }
    if (rv == 0 && !swapped) {
        rv = RKV_ECONDFAILED;
    }
    if (rv == 0) {
        RKV_LOG(RKV_INFO, "created table name=%s table=%llu columns=%zu",
                table->name, (unsigned long long)table->table_id,
                table->n_columns);
    }
    rkv_sql__buf_free(&key);
    rkv_sql__buf_free(&value);
    return rv;
}

/* Decodes one page of catalog pairs into the growing list. */
static int catalog_list_page(const struct rkv_sql_kv_pair *pairs,
                             size_t n_pairs, struct rkv_sql_table ***tables,
                             size_t *n_tables, char *message)
{
    struct rkv_sql_table **grown;

    grown = rkv_realloc(*tables, (*n_tables + n_pairs + 1) * sizeof(*grown));
    if (grown == NULL) {
        return -ENOMEM;
    }
    *tables = grown;
    for (size_t i = 0; i < n_pairs; i++) {
        int rv = rkv_sql__table_decode(pairs[i].value, pairs[i].value_len,
                                       &grown[*n_tables]);

        if (rv != 0) {
            snprintf(message, RKV_SQL_KV_MESSAGE_MAX,
                     "catalog entry %zu of this page failed to decode", i);
            return rv;
        }
        (*n_tables)++;
    }
    return 0;
}

static void tables_free(struct rkv_sql_table **tables, size_t n_tables)
{
    for (size_t i = 0; i < n_tables; i++) {
        rkv_sql__table_free(tables[i]);
    }
    rkv_free(tables);
}

int rkv_sql__catalog_list(struct rkv_sql_kv *kv, struct rkv_sql_table ***out,
                          size_t *n_out, char *message)
{
    struct rkv_sql_buf start = {0};
    struct rkv_sql_buf end = {0};
    struct rkv_sql_table **tables = NULL;
    size_t n_tables = 0;
    int rv;

    rv = rkv_sql__key_append_prefix(&start, RKV_SQL_CATALOG_TABLE_ID,
                                    RKV_SQL_CATALOG_INDEX_NAMES);
    if (rv == 0) {
        rv = rkv_sql__buf_append(&end, start.data, start.len);
    }
    rkv_sql__key_prefix_end(&end);
    while (rv == 0) {
        struct rkv_sql_kv_pair *pairs = NULL;
        size_t n_pairs = 0;

        rv = kv->vtable->scan(kv, start.data, start.len, end.data, end.len,
                              SCAN_PAGE_LEN, &pairs, &n_pairs, message);
        if (rv == 0) {
            rv = catalog_list_page(pairs, n_pairs, &tables, &n_tables, message);
        }
        if (rv == 0 && n_pairs == SCAN_PAGE_LEN) {
            start.len = 0;
            rv = rkv_sql__buf_append(&start, pairs[n_pairs - 1].key,
                                     pairs[n_pairs - 1].key_len);
            if (rv == 0) {
                rv = rkv_sql__buf_append_byte(&start, 0);
            }
            rkv_sql_kv_pairs_free(pairs, n_pairs);
            continue;
        }
        rkv_sql_kv_pairs_free(pairs, n_pairs);
        break;
    }
    rkv_sql__buf_free(&start);
    rkv_sql__buf_free(&end);
    if (rv != 0) {
        tables_free(tables, n_tables);
        return rv;
    }
    *out = tables;
    *n_out = n_tables;
    return 0;
}

/* Deletes every key of a table, one page at a time. */
static int catalog_drop_rows(struct rkv_sql_kv *kv, uint64_t table_id,
                             char *message)
{
    struct rkv_sql_buf start = {0};
    struct rkv_sql_buf end = {0};
    int rv;

    rv = rkv_sql__key_append_prefix(&start, table_id, 0);
    if (rv == 0) {
        rv = rkv_sql__key_append_prefix(&end, table_id + 1, 0);
    }
    while (rv == 0) {
        struct rkv_sql_kv_pair *pairs = NULL;
        struct rkv_sql_kv_op *ops = NULL;
        struct rkv_sql_apply_report report;
        size_t n_pairs = 0;

        rv = kv->vtable->scan(kv, start.data, start.len, end.data, end.len,
                              SCAN_PAGE_LEN, &pairs, &n_pairs, message);
        if (rv != 0 || n_pairs == 0) {
            rkv_sql_kv_pairs_free(pairs, n_pairs);
            break;
        }
        ops = rkv_calloc(n_pairs, sizeof(*ops));
        rv = ops == NULL ? -ENOMEM : 0;
        for (size_t i = 0; rv == 0 && i < n_pairs; i++) {
            ops[i].is_delete = true;
            ops[i].key = pairs[i].key;
            ops[i].key_len = pairs[i].key_len;
        }
        if (rv == 0) {
            rv = rkv_sql__kv_apply(kv, ops, n_pairs, &report, message);
        }
        rkv_free(ops);
        rkv_sql_kv_pairs_free(pairs, n_pairs);
    }
    rkv_sql__buf_free(&start);
    rkv_sql__buf_free(&end);
    return rv;
}

int rkv_sql__catalog_drop(struct rkv_sql_kv *kv,
                          const struct rkv_sql_table *table, char *message)
{
    struct rkv_sql_buf key = {0};
    struct rkv_sql_table *stored = NULL;
    uint8_t *value = NULL;
    size_t value_len = 0;
    bool swapped = false;
    int rv;

    rv = catalog_name_key(&key, table->name);
    if (rv == 0) {
        rv =
            kv->vtable->get(kv, key.data, key.len, &value, &value_len, message);
    }
    if (rv == 0) {
        rv = rkv_sql__table_decode(value, value_len, &stored);
    }
    if (rv == 0 && stored->table_id != table->table_id) {
        rv = RKV_ENOTFOUND;
    }
    if (rv == 0) {
        rv = kv->vtable->cas(kv, key.data, key.len, value, value_len, NULL, 0,
                             &swapped, message);
    }
    if (rv == 0 && !swapped) {
        rv = RKV_ENOTFOUND;
    }
    /* The name is gone, so no session reads these rows any more; a failure
     * from here on leaves unreachable keys, never a half-visible table. */
    if (rv == 0) {
        rv = catalog_drop_rows(kv, table->table_id, message);
    }
    if (rv == 0) {
        RKV_LOG(RKV_INFO, "dropped table name=%s table=%llu", table->name,
                (unsigned long long)table->table_id);
    }
    rkv_sql__table_free(stored);
    rkv_free(value);
    rkv_sql__buf_free(&key);
    return rv;
}

int rkv_sql__catalog_reserve_row_keys(struct rkv_sql_kv *kv, uint64_t table_id,
                                      uint64_t count, int64_t *first_out,
                                      char *message)
{
    struct rkv_sql_buf key = {0};
    struct rkv_sql_datum id = {
        .type = RKV_SQL_INTEGER,
        .integer = (int64_t)table_id,
    };
    uint64_t first = 0;
    int rv;

    rv = rkv_sql__key_append_prefix(&key, RKV_SQL_CATALOG_TABLE_ID,
                                    RKV_SQL_CATALOG_INDEX_ROW_KEY);
    if (rv == 0) {
        rv = rkv_sql__key_append_datum(&key, &id, false);
    }
    if (rv == 0) {
        rv = counter_advance(kv, &key, 1, count, &first, message);
    }
    if (rv == 0 && first + count > (uint64_t)INT64_MAX) {
        rv = RKV_ETOOLARGE;
    }
    if (rv == 0) {
        *first_out = (int64_t)first;
    }
    rkv_sql__buf_free(&key);
    return rv;
}
