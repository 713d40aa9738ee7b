/*
 * A fixture for sql-lite-front session tests: a session over the
 * in-process store, and a result collector that renders every event as
 * text ("a|b" per row, NULL as "NULL") so tests compare whole results.
 */
#ifndef RKV_TEST_SQL_FIXTURE_H
#define RKV_TEST_SQL_FIXTURE_H

#include <stddef.h>

#include "sql-lite-front/sql.h"

#define SQL_RESULT_MAX (256 * 1024)

struct sql_result {
    char rows[SQL_RESULT_MAX]; /* "v1|v2\n" per row */
    size_t rows_len;
    char columns[1024]; /* "name:oid|name:oid" of the last COLUMNS */
    char tag[64];       /* the last command tag */
    char sqlstate[6];   /* "" when no error */
    char message[512];
    int n_rows;
    int n_empty;
};

struct sql_fixture {
    struct rkv_sql_kv *kv;
    struct rkv_sql_session *session;
    struct sql_result result;
};

void sql_fixture_setup(struct sql_fixture *f);
void sql_fixture_teardown(struct sql_fixture *f);

/* Runs sql on session, collecting into result (cleared first); returns
 * rkv_sql_session_exec's code. */
int sql_run(struct rkv_sql_session *session, const char *sql,
            struct sql_result *result);

/* The collecting event callback, for other callers. */
int sql_collect_cb(void *data, const struct rkv_sql_event *event);

/* Runs sql and fails the test unless it succeeds. */
#define SQL_OK(f, sql)                                                         \
    do {                                                                       \
        int rv_ = sql_run((f)->session, (sql), &(f)->result);                  \
        if (rv_ != 0) {                                                        \
            rkv_test_fail(__FILE__, __LINE__, "%s failed: %s %s", (sql),       \
                          (f)->result.sqlstate, (f)->result.message);          \
        }                                                                      \
    } while (0)

/* Runs sql and fails the test unless it fails with sqlstate. */
#define SQL_FAILS(f, sql, state)                                               \
    do {                                                                       \
        int rv_ = sql_run((f)->session, (sql), &(f)->result);                  \
        if (rv_ == 0 || strcmp((f)->result.sqlstate, (state)) != 0) {          \
            rkv_test_fail(__FILE__, __LINE__,                                  \
                          "%s: expected SQLSTATE %s, got rv %d %s %s", (sql),  \
                          (state), rv_, (f)->result.sqlstate,                  \
                          (f)->result.message);                                \
        }                                                                      \
    } while (0)

/* Runs a query and compares its rendered rows. */
#define SQL_ROWS(f, sql, expected)                                             \
    do {                                                                       \
        SQL_OK(f, sql);                                                        \
        ASSERT_STR_EQ((f)->result.rows, (expected));                           \
    } while (0)

#endif /* RKV_TEST_SQL_FIXTURE_H */
