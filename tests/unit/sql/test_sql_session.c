/* Checks SQL sessions over the in-process store: statements, key spans,
 * EXPLAIN and SHOW RANGES, the shared catalog and commit failures. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sql-lite-front/sql_internal.h"
#include "tests/lib/test.h"
#include "tests/unit/sql/kv_local.h"
#include "tests/unit/sql/sql_fixture.h"

static struct sql_fixture fixture;

#define SETUP() sql_fixture_setup(&fixture)
#define TEARDOWN() sql_fixture_teardown(&fixture)

/* Splits the local store before the row of table_id with integer key k,
 * or at the table's prefix when k is NULL. */
static void split_at_int(uint64_t table_id, const int64_t *k)
{
    struct rkv_sql_buf key = {0};
    struct rkv_sql_datum datum = {.type = RKV_SQL_INTEGER};

    if (k == NULL) {
        ASSERT_OK(rkv_sql__key_append_prefix(&key, table_id, 0));
    } else {
        datum.integer = *k;
        ASSERT_OK(rkv_sql__key_append_prefix(&key, table_id, 1));
        ASSERT_OK(rkv_sql__key_append_datum(&key, &datum, false));
    }
    ASSERT_OK(kv_local_split(fixture.kv, key.data, key.len));
    rkv_sql__buf_free(&key);
}

/* Creates t(k INTEGER PRIMARY KEY, v TEXT) with k = 1..100 and ranges
 * r1 catalog, r2 [t, 25), r3 [25, 50), r4 [50, 75), r5 [75, end). */
static void setup_split_table(void)
{
    static const int64_t splits[] = {25, 50, 75};

    SQL_OK(&fixture, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");
    SQL_OK(&fixture, "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT "
                     "x + 1 FROM s WHERE x < 100) "
                     "INSERT INTO t SELECT x, 'v' || x FROM s");
    ASSERT_STR_EQ(fixture.result.tag, "INSERT 0 100");
    split_at_int(100, NULL);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(splits); i++) {
        split_at_int(100, &splits[i]);
    }
    kv_local_reset_touches(fixture.kv);
}

#define ASSERT_TOUCHES(expected) assert_touches((expected), __LINE__)

/* Fails unless exactly the ranges 2..5 marked in expected were touched. */
static void assert_touches(const uint64_t *expected, int line)
{
    size_t n = 4;

    for (uint64_t range_id = 2; range_id < 2 + n; range_id++) {
        uint64_t touches = kv_local_touches(fixture.kv, range_id);

        if ((touches > 0) != (expected[range_id - 2] > 0)) {
            rkv_test_fail(
                __FILE__, line, "range %llu touched %llu times, expected %s",
                (unsigned long long)range_id, (unsigned long long)touches,
                expected[range_id - 2] ? "some" : "none");
        }
    }
    kv_local_reset_touches(fixture.kv);
}

/* Rows come back in key order with PostgreSQL types and tags. */
TEST(sql_session, insert_select)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)");
    ASSERT_STR_EQ(fixture.result.tag, "CREATE TABLE");
    SQL_OK(&fixture, "INSERT INTO kv VALUES (3, 'c'), (-7, 'minus'), "
                     "(0, NULL)");
    ASSERT_STR_EQ(fixture.result.tag, "INSERT 0 3");
    SQL_ROWS(&fixture, "SELECT * FROM kv", "-7|minus\n0|NULL\n3|c\n");
    ASSERT_STR_EQ(fixture.result.columns, "k:20|v:25");
    ASSERT_STR_EQ(fixture.result.tag, "SELECT 3");
    SQL_ROWS(&fixture, "SELECT v FROM kv WHERE k = 3", "c\n");
    SQL_ROWS(&fixture, "SELECT count(*), sum(k), avg(k) FROM kv",
             "3|-4|-1.3333333333333333\n");
    SQL_ROWS(&fixture, "SELECT * FROM kv WHERE k = 99", "");
    ASSERT_STR_EQ(fixture.result.tag, "SELECT 0");
    ASSERT_STR_EQ(fixture.result.columns, "k:20|v:25");
    TEARDOWN();
}

/* A composite key with a DESC column orders and filters like SQL. */
TEST(sql_session, composite_desc_key)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE t(a TEXT, b INTEGER, c REAL, "
                     "PRIMARY KEY (a, b DESC))");
    SQL_OK(&fixture, "INSERT INTO t VALUES ('x', 1, 0.5), ('x', 3, 1.5), "
                     "('y', -2, 2), ('x', 2, NULL), ('w', 9, 9)");
    SQL_ROWS(&fixture, "SELECT a, b FROM t", "w|9\nx|3\nx|2\nx|1\ny|-2\n");
    SQL_ROWS(&fixture, "SELECT b FROM t WHERE a = 'x' AND b > 1", "3\n2\n");
    SQL_ROWS(&fixture, "SELECT b FROM t WHERE a = 'x' AND b <= 2 AND b >= 2",
             "2\n");
    SQL_ROWS(&fixture, "SELECT a, b FROM t WHERE a IN ('y', 'w', 'y')",
             "w|9\ny|-2\n");
    SQL_ROWS(&fixture, "SELECT c FROM t WHERE a = 'x' AND b = 3", "1.5\n");
    SQL_ROWS(&fixture, "SELECT a, b FROM t ORDER BY a, b DESC LIMIT 2",
             "w|9\nx|3\n");
    /* The scan already returns key order, so SQLite does not sort. */
    SQL_OK(&fixture, "EXPLAIN SELECT a, b FROM t ORDER BY a, b DESC");
    ASSERT_TRUE(strstr(fixture.result.rows, "ORDER BY") == NULL);
    SQL_OK(&fixture, "EXPLAIN SELECT a, b FROM t ORDER BY a DESC");
    ASSERT_TRUE(strstr(fixture.result.rows, "ORDER BY") != NULL);
    TEARDOWN();
}

/* Values take the column's affinity; key columns keep one class. */
TEST(sql_session, affinity_and_key_types)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE r(k REAL PRIMARY KEY, n TEXT, b BLOB)");
    SQL_OK(&fixture, "INSERT INTO r VALUES (2, 5, x'00ff'), ('1.5', 'a', "
                     "NULL), (-0.25, 2.5, 'txt')");
    SQL_ROWS(&fixture, "SELECT k, n, typeof(n), b FROM r",
             "-0.25|2.5|text|txt\n1.5|a|text|NULL\n2|5|text|\\x00ff\n");
    SQL_ROWS(&fixture, "SELECT n FROM r WHERE k > 1 AND k < 2.5", "a\n5\n");
    SQL_ROWS(&fixture, "SELECT n FROM r WHERE k = 2", "5\n");
    SQL_OK(&fixture, "CREATE TABLE i(k BIGINT PRIMARY KEY)");
    SQL_OK(&fixture, "INSERT INTO i VALUES ('7'), (2.0), (-3)");
    SQL_ROWS(&fixture, "SELECT k, typeof(k) FROM i",
             "-3|integer\n2|integer\n7|integer\n");
    SQL_ROWS(&fixture, "SELECT k FROM i WHERE k > 1.5 AND k <= 6.9", "2\n");
    SQL_ROWS(&fixture, "SELECT k FROM i WHERE k = '7'", "7\n");
    SQL_ROWS(&fixture, "SELECT k FROM i WHERE k < 'a'", "-3\n2\n7\n");
    SQL_FAILS(&fixture, "INSERT INTO i VALUES ('abc')", "22P02");
    SQL_FAILS(&fixture, "INSERT INTO i VALUES (2.5)", "22P02");
    SQL_OK(&fixture, "CREATE TABLE bk(k BLOB PRIMARY KEY)");
    SQL_OK(&fixture, "INSERT INTO bk VALUES ('b'), (x'61')");
    SQL_ROWS(&fixture, "SELECT hex(k) FROM bk", "61\n62\n");
    TEARDOWN();
}

/* Without a primary key rows get a hidden, growing row key. */
TEST(sql_session, hidden_row_key)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE h(a, b)");
    SQL_OK(&fixture, "INSERT INTO h VALUES (1, 'x'), (1, 'x'), (NULL, 2)");
    SQL_ROWS(&fixture, "SELECT * FROM h", "1|x\n1|x\nNULL|2\n");
    SQL_ROWS(&fixture, "SELECT rowid_ FROM h", "1\n2\n3\n");
    SQL_OK(&fixture, "DELETE FROM h WHERE rowid_ = 2");
    ASSERT_STR_EQ(fixture.result.tag, "DELETE 1");
    SQL_ROWS(&fixture, "SELECT rowid_, a FROM h", "1|1\n3|NULL\n");
    TEARDOWN();
}

/* NOT NULL, duplicate keys, REPLACE, UPSERT INTO and IGNORE behave as
 * PostgreSQL and SQLite users expect. */
TEST(sql_session, constraints_and_upsert)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE c(k INTEGER PRIMARY KEY, v TEXT NOT NULL, "
                     "d TEXT DEFAULT 'dflt')");
    SQL_FAILS(&fixture, "INSERT INTO c(k) VALUES (1)", "23502");
    ASSERT_STR_EQ(fixture.result.message,
                  "null value in column \"v\" of relation \"c\" violates "
                  "not-null constraint");
    SQL_FAILS(&fixture, "INSERT INTO c VALUES (NULL, 'x', NULL)", "23502");
    SQL_OK(&fixture, "INSERT INTO c(k, v) VALUES (1, 'one')");
    SQL_ROWS(&fixture, "SELECT * FROM c", "1|one|dflt\n");
    SQL_FAILS(&fixture, "INSERT INTO c(k, v) VALUES (1, 'again')", "23505");
    ASSERT_STR_EQ(fixture.result.message,
                  "duplicate key value violates unique constraint "
                  "\"c_pkey\"");
    /* A failed statement writes nothing, not even its earlier rows. */
    SQL_FAILS(&fixture, "INSERT INTO c(k, v) VALUES (2, 'two'), (2, 'dup')",
              "23505");
    SQL_ROWS(&fixture, "SELECT k FROM c", "1\n");
    SQL_OK(&fixture, "INSERT OR REPLACE INTO c(k, v) VALUES (1, 'uno')");
    SQL_OK(&fixture, "UPSERT INTO c(k, v) VALUES (1, 'eins'), (5, 'fünf')");
    ASSERT_STR_EQ(fixture.result.tag, "INSERT 0 2");
    SQL_OK(&fixture, "INSERT OR IGNORE INTO c(k, v) VALUES (5, 'ignored')");
    SQL_ROWS(&fixture, "SELECT k, v FROM c", "1|eins\n5|fünf\n");
    TEARDOWN();
}

/* UPDATE rewrites values and moves rows whose key changes; DELETE of a
 * span removes exactly its rows. */
TEST(sql_session, update_delete)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE u(k INTEGER PRIMARY KEY, v INTEGER)");
    SQL_OK(&fixture, "INSERT INTO u VALUES (1, 10), (2, 20), (3, 30)");
    SQL_OK(&fixture, "UPDATE u SET v = v + 1 WHERE k >= 2");
    ASSERT_STR_EQ(fixture.result.tag, "UPDATE 2");
    SQL_ROWS(&fixture, "SELECT * FROM u", "1|10\n2|21\n3|31\n");
    SQL_OK(&fixture, "UPDATE u SET k = 7 WHERE k = 1");
    SQL_ROWS(&fixture, "SELECT * FROM u", "2|21\n3|31\n7|10\n");
    SQL_FAILS(&fixture, "UPDATE u SET k = 3 WHERE k = 2", "23505");
    SQL_ROWS(&fixture, "SELECT * FROM u", "2|21\n3|31\n7|10\n");
    SQL_OK(&fixture, "DELETE FROM u WHERE k < 5");
    ASSERT_STR_EQ(fixture.result.tag, "DELETE 2");
    SQL_ROWS(&fixture, "SELECT * FROM u", "7|10\n");
    TEARDOWN();
}

/* Renders a query's rows from a plain SQLite database like the fixture
 * renders a session's. */
static void plain_rows(sqlite3 *db, const char *sql, char *out, size_t out_len)
{
    sqlite3_stmt *stmt;
    size_t used = 0;

    out[0] = '\0';
    ASSERT_INT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(stmt); i++) {
            size_t len;
            char *text =
                rkv_sql__value_text(sqlite3_column_value(stmt, i), &len);

            used += (size_t)snprintf(out + used, out_len - used, "%s%s",
                                     i > 0 ? "|" : "",
                                     text != NULL ? text : "NULL");
            sqlite3_free(text);
        }
        used += (size_t)snprintf(out + used, out_len - used, "\n");
    }
    sqlite3_finalize(stmt);
}

/* Joins, aggregates, subqueries and range predicates return what SQLite
 * returns on the same data in ordinary tables. */
TEST(sql_session, queries_match_sqlite)
{
    static const char schema[] =
        "CREATE TABLE country(code TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "pop INTEGER);"
        "CREATE TABLE region(country TEXT, code TEXT, name TEXT, "
        "PRIMARY KEY (country, code));"
        "INSERT INTO country VALUES ('FR', 'France', 68), ('DE', 'Germany', "
        "84), ('LU', 'Luxembourg', 1), ('IS', 'Iceland', NULL);"
        "INSERT INTO region VALUES ('FR', 'FR-IDF', 'Ile-de-France'), "
        "('FR', 'FR-BRE', 'Bretagne'), ('DE', 'DE-BY', 'Bayern'), "
        "('DE', 'DE-BE', 'Berlin'), ('DE', 'DE-HH', 'Hamburg'), "
        "('LU', 'LU-L', 'Luxembourg');";
    static const char *const queries[] = {
        "SELECT c.name, count(r.code) FROM country c LEFT JOIN region r ON "
        "r.country = c.code GROUP BY c.code ORDER BY 2 DESC, 1",
        "SELECT name FROM country WHERE code BETWEEN 'DE' AND 'IS'",
        "SELECT r.name FROM region r WHERE r.country = (SELECT code FROM "
        "country WHERE name = 'Germany') AND r.code > 'DE-BE'",
        "SELECT country, min(name), max(name) FROM region GROUP BY country "
        "HAVING count(*) > 1",
        "SELECT name FROM country WHERE code IN (SELECT country FROM region "
        "WHERE name LIKE 'B%')",
        "SELECT sum(pop), avg(pop), total(pop) FROM country",
        "SELECT code FROM country WHERE pop IS NULL OR pop < 2 ORDER BY code "
        "DESC",
        "SELECT r.code, c.name FROM region r JOIN country c ON "
        "c.code = r.country WHERE r.code >= 'DE-BY' AND r.code < 'FR-IDF' "
        "ORDER BY r.code",
    };
    static char expected[4096];
    sqlite3 *plain;

    SETUP();
    ASSERT_INT_EQ(sqlite3_open(":memory:", &plain), SQLITE_OK);
    ASSERT_INT_EQ(sqlite3_exec(plain, schema, NULL, NULL, NULL), SQLITE_OK);
    SQL_OK(&fixture, schema);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(queries); i++) {
        plain_rows(plain, queries[i], expected, sizeof(expected));
        ASSERT_TRUE(expected[0] != '\0');
        SQL_ROWS(&fixture, queries[i], expected);
    }
    sqlite3_close(plain);
    TEARDOWN();
}

/* After splits, a point query reads one range and a range query only the
 * ranges its span overlaps. */
TEST(sql_session, spans_touch_expected_ranges)
{
    static const uint64_t point[] = {0, 0, 1, 0};
    static const uint64_t span[] = {0, 1, 1, 0};
    static const uint64_t in_list[] = {1, 0, 0, 1};
    static const uint64_t all[] = {1, 1, 1, 1};
    static const uint64_t first[] = {1, 0, 0, 0};
    static const uint64_t none[] = {0, 0, 0, 0};

    SETUP();
    setup_split_table();
    SQL_ROWS(&fixture, "SELECT v FROM t WHERE k = 60", "v60\n");
    ASSERT_TOUCHES(point);
    SQL_ROWS(&fixture, "SELECT count(*) FROM t WHERE k BETWEEN 30 AND 55",
             "26\n");
    ASSERT_TOUCHES(span);
    SQL_ROWS(&fixture, "SELECT k FROM t WHERE k IN (80, 10, 80)", "10\n80\n");
    ASSERT_TOUCHES(in_list);
    /* An empty span reads nothing at all. */
    SQL_ROWS(&fixture, "SELECT k FROM t WHERE k > 24 AND k < 25", "");
    ASSERT_TOUCHES(none);
    SQL_ROWS(&fixture, "SELECT k FROM t LIMIT 3", "1\n2\n3\n");
    ASSERT_TOUCHES(first);
    SQL_ROWS(&fixture, "SELECT count(*) FROM t WHERE v = 'v60'", "1\n");
    ASSERT_TOUCHES(all);
    TEARDOWN();
}

/* EXPLAIN lists each span with its ranges and runs no write. */
TEST(sql_session, explain_spans_and_ranges)
{
    SETUP();
    setup_split_table();
    SQL_OK(&fixture, "EXPLAIN SELECT * FROM t WHERE k = 60");
    ASSERT_TRUE(strstr(fixture.result.rows,
                       "scan t: [/Table/100/1/60, /Table/100/1/61) "
                       "ranges: 4\n") != NULL);
    ASSERT_TRUE(strstr(fixture.result.rows, "ranges touched: 4\n") != NULL);
    ASSERT_TRUE(strstr(fixture.result.rows, "plan: SCAN t VIRTUAL TABLE") !=
                NULL);
    ASSERT_STR_EQ(fixture.result.columns, "info:25");
    SQL_OK(&fixture, "EXPLAIN SELECT * FROM t WHERE k >= 20 AND k < 30");
    ASSERT_TRUE(strstr(fixture.result.rows, "ranges touched: 2, 3\n") != NULL);
    SQL_OK(&fixture, "EXPLAIN DELETE FROM t WHERE k = 90");
    ASSERT_TRUE(strstr(fixture.result.rows,
                       "write t: /Table/100/1/90 ranges: 5\n") != NULL);
    SQL_ROWS(&fixture, "SELECT v FROM t WHERE k = 90", "v90\n");
    SQL_FAILS(&fixture, "EXPLAIN CREATE TABLE z(a)", "0A000");
    TEARDOWN();
}

/* SHOW RANGES FROM TABLE lists the ranges holding the table. */
TEST(sql_session, show_ranges)
{
    SETUP();
    setup_split_table();
    SQL_OK(&fixture, "SHOW RANGES FROM TABLE t");
    ASSERT_STR_EQ(fixture.result.columns,
                  "range_id:20|start_key:25|end_key:25|leader_node_id:20|"
                  "replicas:25|live_bytes:20|key_count:20");
    ASSERT_INT_EQ(fixture.result.n_rows, 4);
    ASSERT_TRUE(strncmp(fixture.result.rows,
                        "2|/Table/100/0|/Table/100/1/25|1|{1}|", 36) == 0);
    ASSERT_TRUE(strstr(fixture.result.rows, "|24\n3|/Table/100/1/25|") != NULL);
    ASSERT_TRUE(strstr(fixture.result.rows, "5|/Table/100/1/75|/Max|") != NULL);
    SQL_FAILS(&fixture, "SHOW RANGES FROM TABLE nope", "42P01");
    SQL_ROWS(&fixture, "SHOW TABLES", "t|100\n");
    TEARDOWN();
}

/* A table created in one session is visible to another, and a drop is
 * seen by both. */
TEST(sql_session, catalog_shared_between_sessions)
{
    struct rkv_sql_session *other;
    static struct sql_result result;

    SETUP();
    ASSERT_OK(rkv_sql_session_open(fixture.kv, &other));
    SQL_OK(&fixture, "CREATE TABLE s(k INTEGER PRIMARY KEY, v TEXT)");
    SQL_OK(&fixture, "INSERT INTO s VALUES (1, 'a')");
    ASSERT_OK(sql_run(other, "SELECT v FROM s", &result));
    ASSERT_STR_EQ(result.rows, "a\n");
    ASSERT_INT_EQ(sql_run(other, "CREATE TABLE s(x)", &result), RKV_ESQL);
    ASSERT_STR_EQ(result.sqlstate, "42P07");
    ASSERT_OK(sql_run(other, "CREATE TABLE IF NOT EXISTS s(x)", &result));
    ASSERT_OK(sql_run(other, "DROP TABLE s", &result));
    ASSERT_STR_EQ(result.tag, "DROP TABLE");
    ASSERT_UINT_EQ(kv_local_count(fixture.kv), 1); /* the table id counter */
    SQL_FAILS(&fixture, "SELECT * FROM s", "42P01");
    ASSERT_STR_EQ(fixture.result.message, "relation \"s\" does not exist");
    SQL_OK(&fixture, "CREATE TABLE s(k TEXT PRIMARY KEY)");
    /* IF NOT EXISTS took id 101 before it found the name taken. */
    SQL_ROWS(&fixture, "SHOW TABLES", "s|102\n");
    ASSERT_OK(sql_run(other, "SELECT count(*) FROM s", &result));
    ASSERT_STR_EQ(result.rows, "0\n");
    rkv_sql_session_close(other);
    TEARDOWN();
}

/* Writes within one range commit together or not at all; writes across
 * ranges commit range by range and a failure reports what was applied. */
TEST(sql_session, commit_atomic_per_range)
{
    SETUP();
    setup_split_table();
    kv_local_fail_batches_after(fixture.kv, 0);
    SQL_FAILS(&fixture, "DELETE FROM t WHERE k < 10", "XX000");
    kv_local_fail_batches_after(fixture.kv, -1);
    SQL_ROWS(&fixture, "SELECT count(*) FROM t", "100\n");
    kv_local_fail_batches_after(fixture.kv, 1);
    SQL_FAILS(&fixture, "DELETE FROM t WHERE k BETWEEN 20 AND 30", "40003");
    ASSERT_TRUE(strstr(fixture.result.message,
                       "statement partially applied: 5 of 11 writes") != NULL);
    ASSERT_TRUE(
        strstr(fixture.result.message, "atomic only within one range") != NULL);
    kv_local_fail_batches_after(fixture.kv, -1);
    SQL_ROWS(&fixture,
             "SELECT min(k), max(k) FROM t WHERE k BETWEEN 19 AND "
             "31",
             "19|31\n");
    SQL_ROWS(&fixture, "SELECT count(*) FROM t WHERE k BETWEEN 20 AND 30",
             "6\n");
    TEARDOWN();
}

/* A range listing with no range for a written key is read again, and the
 * write goes through. */
TEST(sql_session, stale_range_listing_retried)
{
    SETUP();
    setup_split_table();
    kv_local_omit_last_range(fixture.kv, 1);
    SQL_OK(&fixture, "INSERT INTO t VALUES (101, 'x')");
    ASSERT_STR_EQ(fixture.result.tag, "INSERT 0 1");
    kv_local_omit_last_range(fixture.kv, 1);
    SQL_OK(&fixture, "UPDATE t SET v = 'w' WHERE k BETWEEN 70 AND 80");
    ASSERT_STR_EQ(fixture.result.tag, "UPDATE 11");
    SQL_ROWS(&fixture, "SELECT count(*), max(k) FROM t", "101|101\n");
    SQL_ROWS(&fixture, "SELECT count(*) FROM t WHERE v = 'w'", "11\n");

    /* A listing that lags for a dozen reads, as while a meta record waits
     * for its repair, is waited out with backoff. */
    kv_local_omit_last_range(fixture.kv, 12);
    SQL_OK(&fixture, "INSERT INTO t VALUES (102, 'y')");
    ASSERT_STR_EQ(fixture.result.tag, "INSERT 0 1");
    TEARDOWN();
}

/* Errors carry PostgreSQL's SQLSTATE and stop the remaining statements. */
TEST(sql_session, errors_and_empty_queries)
{
    SETUP();
    SQL_FAILS(&fixture, "SELECT * FROM nope", "42P01");
    SQL_FAILS(&fixture, "SELEC 1", "42601");
    SQL_FAILS(&fixture, "BEGIN", "0A000");
    SQL_OK(&fixture, "ROLLBACK");
    SQL_OK(&fixture, "CREATE TABLE e(k INTEGER PRIMARY KEY)");
    SQL_FAILS(&fixture, "CREATE INDEX e_k ON e(k)", "0A000");
    SQL_FAILS(&fixture, "CREATE TABLE \"\" (a)", "0A000");
    ASSERT_STR_EQ(fixture.result.message, "a table name must not be empty");
    SQL_FAILS(&fixture, "SELECT nope FROM e", "42703");
    SQL_FAILS(&fixture,
              "INSERT INTO e VALUES (1); SELECT * FROM nope; "
              "INSERT INTO e VALUES (2)",
              "42P01");
    SQL_ROWS(&fixture, "SELECT * FROM e", "1\n");
    SQL_OK(&fixture, " ; -- nothing\n");
    ASSERT_INT_EQ(fixture.result.n_empty, 1);
    SQL_OK(&fixture, "CREATE TEMP TABLE scratch(a); INSERT INTO scratch "
                     "VALUES (1); SELECT a FROM scratch");
    ASSERT_STR_EQ(fixture.result.rows, "1\n");
    SQL_FAILS(&fixture, "CREATE TABLE d(k DECIMAL PRIMARY KEY)", "0A000");
    TEARDOWN();
}

/* A key over the store's key limit fails with the limit named, and a
 * key just under it is stored. */
TEST(sql_session, key_size_limit)
{
    static char sql[2048];

    SETUP();
    SQL_OK(&fixture, "CREATE TABLE big(k TEXT PRIMARY KEY)");
    snprintf(sql, sizeof(sql), "INSERT INTO big VALUES ('%0*d')", 600, 7);
    SQL_FAILS(&fixture, sql, "54000");
    ASSERT_TRUE(strstr(fixture.result.message, "over the maximum of 509") !=
                NULL);
    /* The prefix (0xF0, table 100, index 1: 5 bytes), the text tag and the
     * terminator (3 bytes) leave 501 bytes. */
    snprintf(sql, sizeof(sql), "INSERT INTO big VALUES ('%0*d')", 502, 7);
    SQL_FAILS(&fixture, sql, "54000");
    snprintf(sql, sizeof(sql), "INSERT INTO big VALUES ('%0*d')", 501, 7);
    SQL_OK(&fixture, sql);
    SQL_ROWS(&fixture, "SELECT length(k) FROM big", "501\n");
    TEARDOWN();
}

/* IN lists longer than the span limit still return every match. */
TEST(sql_session, long_in_list)
{
    static char sql[16384];
    size_t used;

    SETUP();
    SQL_OK(&fixture, "CREATE TABLE l(a INTEGER, b INTEGER, "
                     "PRIMARY KEY (a, b))");
    SQL_OK(&fixture, "WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT "
                     "x + 1 FROM s WHERE x < 1999) "
                     "INSERT INTO l SELECT x / 50, x % 50 FROM s");
    used = (size_t)snprintf(sql, sizeof(sql),
                            "SELECT count(*) FROM l WHERE a IN (1, 2, 3) AND "
                            "b IN (");
    for (int i = 0; i < 500; i++) {
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s%d",
                                 i > 0 ? ", " : "", i * 2);
    }
    snprintf(sql + used, sizeof(sql) - used, ")");
    SQL_ROWS(&fixture, sql, "75\n");
    TEARDOWN();
}

/* An allocation failure at any point fails the statement cleanly. */
TEST(sql_session, allocation_failures)
{
    SETUP();
    SQL_OK(&fixture, "CREATE TABLE a(k INTEGER PRIMARY KEY, v TEXT)");
    SQL_OK(&fixture, "INSERT INTO a VALUES (1, 'x'), (2, 'y')");
    for (long n = 0; n < 400; n++) {
        int rv;

        rkv_alloc_fail_after(n);
        rv = sql_run(fixture.session,
                     "INSERT OR REPLACE INTO a VALUES (3, 'z'); "
                     "SELECT * FROM a WHERE k > 1; UPDATE a SET v = 'w'",
                     &fixture.result);
        rkv_alloc_fail_after(-1);
        ASSERT_TRUE(rv == 0 || rv == RKV_ESQL || rv == -ENOMEM);
    }
    SQL_ROWS(&fixture, "SELECT * FROM a", "1|w\n2|w\n3|w\n");
    TEARDOWN();
}

/* After a rejected BEGIN, statements sent one by one (as psql sends a
 * script) are rejected with 25P02 until COMMIT, END, ABORT or ROLLBACK
 * ends the block, so none of them commits on its own. */
TEST(sql_session, rejected_begin_blocks_until_end)
{
    static const char *const block_starts[] = {
        "BEGIN",
        "begin transaction",
        "START TRANSACTION",
    };
    static const char *const block_ends[] = {
        "ROLLBACK",
        "COMMIT",
        "END",
        "abort",
    };

    SETUP();
    SQL_OK(&fixture, "CREATE TABLE b(k INTEGER PRIMARY KEY, v TEXT)");
    for (size_t i = 0; i < RKV_ARRAY_SIZE(block_ends); i++) {
        const char *start = block_starts[i % RKV_ARRAY_SIZE(block_starts)];

        SQL_FAILS(&fixture, start, "0A000");
        ASSERT_TRUE(strstr(fixture.result.message, "until ROLLBACK") != NULL);
        SQL_FAILS(&fixture, "INSERT INTO b VALUES (1, 'x')", "25P02");
        SQL_FAILS(&fixture, "SELECT count(*) FROM b", "25P02");
        SQL_FAILS(&fixture, "SAVEPOINT s", "25P02");
        SQL_FAILS(&fixture, "ROLLBACK TO SAVEPOINT s", "25P02");
        SQL_FAILS(&fixture, "BEGIN", "25P02");
        SQL_OK(&fixture, block_ends[i]);
        ASSERT_STR_EQ(fixture.result.tag, "ROLLBACK");
        SQL_ROWS(&fixture, "SELECT count(*) FROM b", "0\n");
    }

    /* Outside a block, ending one is rejected and blocks nothing. */
    SQL_FAILS(&fixture, "COMMIT", "0A000");
    SQL_OK(&fixture, "INSERT INTO b VALUES (2, 'y')");
    SQL_ROWS(&fixture, "SELECT k FROM b", "2\n");

    /* In one query string the block starts at the failed BEGIN too, and a
     * ROLLBACK later in the same string does not run. */
    SQL_FAILS(&fixture, "BEGIN; INSERT INTO b VALUES (3, 'z'); ROLLBACK",
              "0A000");
    SQL_FAILS(&fixture, "INSERT INTO b VALUES (4, 'w')", "25P02");
    SQL_OK(&fixture, "ROLLBACK; INSERT INTO b VALUES (5, 'v')");
    SQL_ROWS(&fixture, "SELECT k FROM b", "2\n5\n");
    TEARDOWN();
}
