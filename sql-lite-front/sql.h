/*
 * sql-lite-front: SQL over rangekv ranges. SQLite parses, plans and
 * executes; every user table is an SQLite virtual table whose rows live in
 * the store under order-preserving keys, and whose descriptor lives in a
 * catalog span of the store, so every node and every session sees the
 * same tables. A PostgreSQL protocol v3 listener serves sessions to psql
 * and libpq clients.
 *
 * Statements: CREATE TABLE (single or composite PRIMARY KEY, or a hidden
 * row key "rowid_" when none is given), DROP TABLE, INSERT, INSERT OR
 * REPLACE (alias UPSERT INTO), SELECT, UPDATE, DELETE, plus
 *   EXPLAIN stmt               the key spans the statement reads and the
 *                              ranges they touch (reads run, writes do not)
 *   SHOW RANGES FROM TABLE t   the ranges holding t, leaders and sizes
 *   SHOW TABLES                the catalog
 * CREATE TEMP TABLE makes a session-local SQLite table.
 *
 * Limits users can hit:
 *   - A statement buffers its writes and commits them when it ends, one
 *     atomic batch per range. Writes that fall into several ranges commit
 *     range by range: if one batch fails, the earlier ones stay committed
 *     and the error (SQLSTATE 40003) says so. One range's writes above
 *     4096 rows or 1 MiB also go out in several batches.
 *   - Multi-statement transactions (BEGIN ... COMMIT) are rejected. After
 *     a rejected BEGIN the session rejects every statement with 25P02
 *     until COMMIT, END, ABORT or ROLLBACK, as in a failed PostgreSQL
 *     transaction block, so no statement meant for the block commits.
 *   - Key columns need INTEGER, REAL, TEXT or BLOB affinity and BINARY
 *     collation; a key is at most 509 bytes.
 *   - A statement's reads see the store as of each scan page, not one
 *     snapshot.
 *
 * Threads: a session is used by one thread at a time.
 */
#ifndef RKV_SQL_H
#define RKV_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sql-lite-front/sql_kv.h"

struct rkv_sql_session;

/* PostgreSQL type OIDs that result columns are described with. */
#define RKV_SQL_OID_BYTEA 17
#define RKV_SQL_OID_INT8 20
#define RKV_SQL_OID_TEXT 25
#define RKV_SQL_OID_FLOAT8 701

enum rkv_sql_event_kind {
    RKV_SQL_EVENT_COLUMNS,  /* a statement returns rows: names and types */
    RKV_SQL_EVENT_ROW,      /* one row, every value in PostgreSQL text form */
    RKV_SQL_EVENT_COMPLETE, /* a statement finished: command tag */
    RKV_SQL_EVENT_ERROR,    /* a statement failed; no later one runs */
    RKV_SQL_EVENT_EMPTY,    /* the query string held no statement */
};

/* One result event; every pointer is borrowed until the callback returns. */
struct rkv_sql_event {
    enum rkv_sql_event_kind kind;
    size_t n_columns;          /* COLUMNS, ROW */
    const char *const *names;  /* COLUMNS */
    const uint32_t *type_oids; /* COLUMNS: RKV_SQL_OID_* */
    const char *const *values; /* ROW: NULL entry for SQL NULL */
    const size_t *value_lens;  /* ROW: bytes of each value */
    const char *command_tag;   /* COMPLETE: "SELECT 3", "INSERT 0 1" */
    const char *sqlstate;      /* ERROR: five characters */
    const char *message;       /* ERROR: one line */
};

/* Receives events in order. A negative return stops the execution, which
 * then returns that code. */
typedef int (*rkv_sql_event_cb)(void *data, const struct rkv_sql_event *event);

/* Opens a session over kv (borrowed; it must outlive the session). *out is
 * freed with rkv_sql_session_close(). Returns -ENOMEM or RKV_ESQL when
 * SQLite cannot open its in-memory database. */
int rkv_sql_session_open(struct rkv_sql_kv *kv, struct rkv_sql_session **out);

void rkv_sql_session_close(struct rkv_sql_session *session);

/* Runs every statement of sql in order, as PostgreSQL's simple query
 * protocol does: each statement commits when it ends, and the first error
 * stops the rest. Returns 0 when all succeeded, RKV_ESQL after an ERROR
 * event, or a negative code from cb. */
int rkv_sql_session_exec(struct rkv_sql_session *session, const char *sql,
                         rkv_sql_event_cb cb, void *data);

/* ---- PostgreSQL wire protocol server (sql_pgwire.c) -------------------- */

struct rkv_sql_server;

/* Milliseconds a connection may take from accept to ReadyForQuery. */
#define RKV_SQL_PG_STARTUP_TIMEOUT_MS_DEFAULT 10000

struct rkv_sql_server_options {
    const char *listen_addr;     /* "host:port"; port 0 lets the OS choose */
    const char *password;        /* NULL: trust; else cleartext password auth */
    uint32_t connections_max;    /* sessions; 0: 64. A startup past it gets
                                    SQLSTATE 53300 and a close */
    uint32_t pending_max;        /* connections not yet past startup and
                                    authentication; 0: connections_max. A
                                    new connection past it closes the
                                    oldest of them with SQLSTATE 53300 */
    uint32_t startup_timeout_ms; /* 0: the default above. A connection
                                    not ready for queries this long after
                                    its accept gets 08P01 and a close */
};

/* Starts a listener on its own libuv loop thread; every connection gets a
 * session over kv (borrowed, shared by all sessions, so it must be
 * thread-safe, as the client-backed one is). Statements run on libuv's
 * worker threads. Fails with -EINVAL for a bad address or a libuv error
 * code when binding fails. */
int rkv_sql_server_start(const struct rkv_sql_server_options *options,
                         struct rkv_sql_kv *kv, struct rkv_sql_server **out);

/* Writes the bound address ("127.0.0.1:5433") into out. */
void rkv_sql_server_address(const struct rkv_sql_server *server, char *out,
                            size_t out_len);

/* Closes the listener and every connection, waits for running statements
 * and joins the loop thread, then frees the server. */
void rkv_sql_server_stop(struct rkv_sql_server *server);

#endif /* RKV_SQL_H */
