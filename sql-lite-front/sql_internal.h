/*
 * Internals shared by the files of sql-lite-front: the order-preserving key
 * encoding, the row value encoding, the catalog, and the session state the
 * SQLite virtual table works on.
 *
 * Key layout (CockroachDB's, byte for byte our own):
 *   table key  = 0xF0 | int(table_id) | int(index_id) | col1 | col2 ...
 *   catalog    = table 1: index 1 maps text(table name) -> descriptor,
 *                index 2 stores the next table id, and index 3 stores the
 *                next hidden row key of each table (int(table_id) -> be64).
 * User tables get ids from 100 on and keep their rows in index 1, the
 * primary key.
 *
 * Invariants:
 *   1. For two rows of one table, memcmp of their keys orders them exactly
 *      as SQLite orders the primary key tuples (BINARY collation, NULL
 *      first, a DESC column reversed).
 *   2. Every encoded key column is self-delimiting, so a key decodes
 *      without a schema and a prefix of columns is a key prefix.
 *   3. A descending column is the bitwise NOT of its ascending encoding.
 */
#ifndef RKV_SQL_INTERNAL_H
#define RKV_SQL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "sql-lite-front/sql.h"
#include "sql-lite-front/sql_kv.h"

/* ---- growable byte buffer ---------------------------------------------- */

/* Owns data (rkv_malloc); len bytes are used of cap. */
struct rkv_sql_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

int rkv_sql__buf_append(struct rkv_sql_buf *buf, const void *src, size_t len);
int rkv_sql__buf_append_byte(struct rkv_sql_buf *buf, uint8_t byte);
void rkv_sql__buf_free(struct rkv_sql_buf *buf);

/* ---- datums ------------------------------------------------------------ */

/* SQLite's storage classes, numbered in SQLite's cross-type sort order. */
enum rkv_sql_type {
    RKV_SQL_NULL = 0,
    RKV_SQL_INTEGER = 1,
    RKV_SQL_REAL = 2,
    RKV_SQL_TEXT = 3,
    RKV_SQL_BLOB = 4,
};

/* One SQL value. bytes is borrowed unless owned is set, and then it was
 * allocated with rkv_malloc and is freed by rkv_sql__datum_clear(). */
struct rkv_sql_datum {
    enum rkv_sql_type type;
    int64_t integer;      /* RKV_SQL_INTEGER */
    double real;          /* RKV_SQL_REAL */
    const uint8_t *bytes; /* RKV_SQL_TEXT (UTF-8, no NUL) and RKV_SQL_BLOB */
    size_t len;           /* bytes of bytes */
    bool owned;           /* bytes is ours to free */
};

void rkv_sql__datum_clear(struct rkv_sql_datum *datum);

/* ---- keys (sql_keys.c) ------------------------------------------------- */

#define RKV_SQL_KEY_PREFIX 0xF0
#define RKV_SQL_CATALOG_TABLE_ID 1
#define RKV_SQL_CATALOG_INDEX_NAMES 1
#define RKV_SQL_CATALOG_INDEX_TABLE_ID 2
#define RKV_SQL_CATALOG_INDEX_ROW_KEY 3
#define RKV_SQL_FIRST_USER_TABLE_ID 100
#define RKV_SQL_PRIMARY_INDEX_ID 1

/* Appends the key prefix of one index of a table. */
int rkv_sql__key_append_prefix(struct rkv_sql_buf *buf, uint64_t table_id,
                               uint64_t index_id);
/* Appends one key column; see invariants 1 to 3. REAL NaN is rejected with
 * -EINVAL (SQLite turns NaN into NULL before it reaches us). */
int rkv_sql__key_append_datum(struct rkv_sql_buf *buf,
                              const struct rkv_sql_datum *datum,
                              bool descending);
/* Decodes one key column at *pos and advances *pos. TEXT and BLOB come back
 * owned. Fails with RKV_ECORRUPT on bytes no encoder produces. */
int rkv_sql__key_decode_datum(const uint8_t **pos, const uint8_t *end,
                              bool descending, struct rkv_sql_datum *out);
/* Decodes the table and index id at the start of a key. */
int rkv_sql__key_decode_prefix(const uint8_t **pos, const uint8_t *end,
                               uint64_t *table_id, uint64_t *index_id);
/* Turns buf into the smallest key greater than every key it prefixes; a
 * buffer of only 0xFF bytes becomes empty, meaning the keyspace end. */
void rkv_sql__key_prefix_end(struct rkv_sql_buf *buf);
/* Writes a readable form ("/Table/100/1/42/'abc'") of key into out,
 * falling back to hex for bytes that are not an SQL key. Truncates to
 * out_len - 1 characters. An empty key prints as "/Max" when is_end. */
void rkv_sql__key_format(const uint8_t *key, size_t key_len, bool is_end,
                         char *out, size_t out_len);

/* ---- row values (sql_value.c) ------------------------------------------ */

/* LEB128 unsigned varints, at most 10 bytes; reading fails with
 * RKV_ECORRUPT on truncation or overlength. */
int rkv_sql__buf_append_uvarint(struct rkv_sql_buf *buf, uint64_t value);
int rkv_sql__read_uvarint(const uint8_t **pos, const uint8_t *end,
                          uint64_t *out);

/* Appends the value of a row: every non-NULL column of values, tagged with
 * its column id. Columns in the key are left out by the caller. */
int rkv_sql__row_encode(struct rkv_sql_buf *buf, size_t n_values,
                        const uint32_t *column_ids,
                        const struct rkv_sql_datum *values);
/* Fills out[0..n_columns) from an encoded value: out[id] gets the column
 * with that id, borrowed from value; absent columns become NULL. Columns
 * with ids >= n_columns are an error (RKV_ECORRUPT), as are truncated or
 * unordered entries. */
int rkv_sql__row_decode(const uint8_t *value, size_t value_len,
                        size_t n_columns, struct rkv_sql_datum *out);

/* ---- store helpers (sql_kv.c) ----------------------------------------- */

/* Operations per batch and bytes of keys plus values per batch. A
 * statement's writes to one range that exceed either go out in several
 * batches and so are not atomic together. */
#define RKV_SQL_BATCH_OPS_MAX 4096
#define RKV_SQL_BATCH_BYTES_MAX (1024 * 1024)

/* The outcome of a multi-batch write, filled by rkv_sql__kv_apply(). */
struct rkv_sql_apply_report {
    size_t n_batches;         /* batches committed */
    size_t n_ops_applied;     /* ops in those batches */
    uint64_t failed_range_id; /* range of the failing batch, 0 if none */
};

/* Applies ops, sorted by key with no key twice, as one atomic batch per
 * range (chunked at the limits above). Refreshes the range list and
 * retries when a range split between listing and writing. On failure the
 * report counts what was already committed. */
int rkv_sql__kv_apply(struct rkv_sql_kv *kv, const struct rkv_sql_kv_op *ops,
                      size_t n_ops, struct rkv_sql_apply_report *report,
                      char *message);
/* Returns the index of the range holding key in a sorted range list. */
size_t rkv_sql__range_find(const struct rkv_sql_kv_range *ranges,
                           size_t n_ranges, const uint8_t *key, size_t key_len);
/* Compares keys as the store does (memcmp, shorter prefix first). */
int rkv_sql__key_compare(const uint8_t *a, size_t a_len, const uint8_t *b,
                         size_t b_len);

/* ---- catalog (sql_catalog.c) ------------------------------------------- */

#define RKV_SQL_COLUMNS_MAX 256
#define RKV_SQL_NAME_MAX 63 /* bytes, PostgreSQL's NAMEDATALEN - 1 */
#define RKV_SQL_HIDDEN_KEY_NAME "rowid_"

/* Type affinity, SQLite's rule on the declared type. */
enum rkv_sql_affinity {
    RKV_SQL_AFF_BLOB = 0, /* no declared type, or BLOB */
    RKV_SQL_AFF_TEXT = 1,
    RKV_SQL_AFF_NUMERIC = 2,
    RKV_SQL_AFF_INTEGER = 3,
    RKV_SQL_AFF_REAL = 4,
};

struct rkv_sql_column {
    char *name;                     /* owned, as declared */
    char *decl_type;                /* owned, "" when none */
    char *default_sql;              /* owned expression text, NULL when none */
    enum rkv_sql_affinity affinity; /* from decl_type */
    bool not_null;                  /* NOT NULL or in the primary key */
    bool hidden;           /* the generated row key of a table without a key */
    bool descending;       /* key column stored in descending order */
    uint32_t key_position; /* 1-based position in the key; 0: not a key */
};

/* A table descriptor as stored in the catalog. */
struct rkv_sql_table {
    uint64_t table_id;
    uint64_t version; /* descriptor format, RKV_SQL_TABLE_VERSION */
    char *name;       /* owned, lowercase */
    struct rkv_sql_column *columns; /* owned array */
    size_t n_columns;
    uint32_t key_columns[RKV_SQL_COLUMNS_MAX]; /* column index per key
                                                  position */
    size_t n_key_columns;
    bool hidden_key; /* the key is the generated RKV_SQL_HIDDEN_KEY_NAME */
};

#define RKV_SQL_TABLE_VERSION 1

enum rkv_sql_affinity rkv_sql__affinity_of(const char *decl_type);
void rkv_sql__table_free(struct rkv_sql_table *table);
int rkv_sql__table_encode(const struct rkv_sql_table *table,
                          struct rkv_sql_buf *buf);
int rkv_sql__table_decode(const uint8_t *data, size_t len,
                          struct rkv_sql_table **out);
/* Builds a descriptor from a table that SQLite created in scratch (a
 * throwaway connection), reading PRAGMA table_xinfo and index_xinfo.
 * message receives the reason for -EINVAL (unsupported key type, too many
 * columns). */
int rkv_sql__table_from_sqlite(sqlite3 *scratch, const char *name,
                               struct rkv_sql_table **out, char *message,
                               size_t message_len);
/* Writes the CREATE TABLE text that sqlite3_declare_vtab() takes. Returns
 * a new string freed with sqlite3_free(), or NULL on allocation failure. */
char *rkv_sql__table_declaration(const struct rkv_sql_table *table);

/* Stores a new table: assigns table->table_id from the catalog counter and
 * inserts the descriptor under its name. Returns RKV_ECONDFAILED when the
 * name exists. */
int rkv_sql__catalog_create(struct rkv_sql_kv *kv, struct rkv_sql_table *table,
                            char *message);
/* Lists every table (descriptors owned by the array; free each with
 * rkv_sql__table_free() and the array with rkv_free()). */
int rkv_sql__catalog_list(struct rkv_sql_kv *kv, struct rkv_sql_table ***out,
                          size_t *n_out, char *message);
/* Removes the descriptor if it still has table->table_id (RKV_ENOTFOUND
 * otherwise), then deletes the table's rows range by range. */
int rkv_sql__catalog_drop(struct rkv_sql_kv *kv,
                          const struct rkv_sql_table *table, char *message);
/* Reserves count hidden row keys of a table; *first_out is the first. */
int rkv_sql__catalog_reserve_row_keys(struct rkv_sql_kv *kv, uint64_t table_id,
                                      uint64_t count, int64_t *first_out,
                                      char *message);

/* ---- session state (sql_session.c, sql_statement.c) -------------------- */

/* Writes one statement may buffer; past it the statement fails. */
#define RKV_SQL_STATEMENT_WRITES_MAX (1024 * 1024)
/* Spans EXPLAIN lists one by one; the rest are counted. */
#define RKV_SQL_EXPLAIN_SPANS_MAX 64
/* Hidden row keys reserved per catalog round trip. */
#define RKV_SQL_ROW_KEY_BLOCK 256

/* One buffered write; key and value are owned. value NULL: delete. */
struct rkv_sql_write {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
};

/* A span a scan read, kept for EXPLAIN; all buffers owned. */
struct rkv_sql_span_note {
    char *table_name;
    bool is_write; /* a point write, start is the key */
    uint8_t *start;
    size_t start_len;
    uint8_t *end;
    size_t end_len;
};

/* A catalog table this session has as a virtual table. */
struct rkv_sql_attached {
    char *name; /* owned, lowercase */
    uint64_t table_id;
};

/* Hidden row keys reserved for one table: next..end-1 are unused. */
struct rkv_sql_row_key_block {
    uint64_t table_id;
    int64_t next;
    int64_t end;
};

struct rkv_sql_session {
    struct rkv_sql_kv *kv; /* borrowed */
    sqlite3 *db;           /* in-memory database of the virtual tables */

    /* The running statement's writes: array in arrival order plus an
     * open-addressing hash of 1-based indexes into it, keyed by key. */
    struct rkv_sql_write *writes;
    size_t n_writes;
    size_t writes_cap;
    uint32_t *write_slots;
    size_t n_write_slots; /* a power of two, at least 2 * n_writes */

    /* Row keys behind the rowid handles of the running statement. */
    struct rkv_sql_buf *handle_keys;
    size_t n_handles;
    size_t handles_cap;

    /* EXPLAIN state. */
    bool explaining;
    struct rkv_sql_span_note *spans;
    size_t n_spans;
    size_t n_spans_dropped;

    /* The running statement's error, set by the virtual table. */
    bool has_error;
    char sqlstate[6];
    char message[512];

    /* Catalog tables present as virtual tables. */
    struct rkv_sql_attached *attached;
    size_t n_attached;
    struct rkv_sql_table *attaching; /* handed to xCreate, which owns it */
    bool detaching; /* xDestroy only unregisters, the catalog stays */

    /* The authorizer's findings while a statement is prepared. */
    bool classifying;
    bool saw_create_table;
    char create_table_name[RKV_SQL_NAME_MAX + 1];
    const char *unsupported; /* a static reason, NULL when none */
    int write_action; /* SQLITE_INSERT, _UPDATE or _DELETE seen, else 0 */

    struct rkv_sql_row_key_block *row_key_blocks;
    size_t n_row_key_blocks;

    /* A BEGIN was rejected and no COMMIT or ROLLBACK has ended its block
     * yet, so statements are rejected with 25P02 as in a failed
     * PostgreSQL transaction block (run_in_rejected_block). */
    bool in_rejected_block;
};

/* Statement helpers in sql_statement.c. */

/* Returns the length of the first statement in sql, up to and including
 * its semicolon, skipping quoted text and comments. */
size_t rkv_sql__statement_len(const char *sql);
/* Tells whether text starts with the keywords in words (space separated,
 * uppercase), ignoring case, whitespace and comments between them. On a
 * match *after_out points past the last keyword. */
bool rkv_sql__statement_starts_with(const char *text, const char *words,
                                    const char **after_out);
/* Runs the statements that rangekv adds or handles itself (EXPLAIN, SHOW,
 * transaction control). Returns 1 when text was one of them and has run,
 * 0 when SQLite should run it, or a negative code after an error. */
int rkv_sql__statement_run_special(struct rkv_sql_session *session,
                                   const char *text, rkv_sql_event_cb cb,
                                   void *data);
/* Creates a table from a CREATE TABLE statement SQLite accepted. */
int rkv_sql__statement_create_table(struct rkv_sql_session *session,
                                    const char *text, rkv_sql_event_cb cb,
                                    void *data);
/* Runs a prepared statement, sending its events. */
int rkv_sql__statement_step(struct rkv_sql_session *session, sqlite3_stmt *stmt,
                            const char *text, rkv_sql_event_cb cb, void *data);
/* Prepares and runs one statement that SQLite executes (UPSERT INTO
 * already rewritten), classifying it first. */
int rkv_sql__session_run_sqlite(struct rkv_sql_session *session,
                                const char *text, rkv_sql_event_cb cb,
                                void *data);
/* Sends an ERROR event with the session's error. */
int rkv_sql__session_send_error(struct rkv_sql_session *session,
                                rkv_sql_event_cb cb, void *data);
/* Makes the session's virtual tables match the catalog. */
int rkv_sql__session_sync_catalog(struct rkv_sql_session *session);
/* Commits the statement's buffered writes; sets the error on failure. */
int rkv_sql__session_flush(struct rkv_sql_session *session);
/* Drops the statement's buffered writes, handles and spans. */
void rkv_sql__session_reset_statement(struct rkv_sql_session *session);
/* Runs SQL of our own on the session's database without the authorizer. */
int rkv_sql__session_exec_internal(struct rkv_sql_session *session,
                                   const char *sql);
/* Formats a value as PostgreSQL's text output would. Returns a new string
 * (sqlite3_free) or NULL for SQL NULL; *len_out gets its length. */
char *rkv_sql__value_text(sqlite3_value *value, size_t *len_out);

/* ---- session state the virtual table uses (sql_session.c) -------------- */

/* One table of a session; sql_vtab.c and sql_vtab_write.c share it. */
struct rkv_sql_vtab {
    sqlite3_vtab base;
    struct rkv_sql_session *session; /* borrowed, outlives the table */
    sqlite3 *db;                     /* the session's connection */
    struct rkv_sql_table *table;     /* owned */
    struct rkv_sql_buf prefix;       /* key prefix of the primary index */
};

/* Registers the "rangekv" virtual table module on the session's db. */
int rkv_sql__vtab_register(struct rkv_sql_session *session);
/* Sets the message SQLite reports for the table's failing call. */
void rkv_sql__vtab_set_error(struct rkv_sql_vtab *vtab, const char *message);
/* The xBestIndex method (sql_vtab_plan.c). */
int rkv_sql__vtab_best_index(sqlite3_vtab *base, sqlite3_index_info *info);
/* The xUpdate method (sql_vtab_write.c). */
int rkv_sql__vtab_update(sqlite3_vtab *base, int argc, sqlite3_value **argv,
                         sqlite3_int64 *rowid);

/* Sets the statement's error: SQLSTATE (five characters) and a message. */
void rkv_sql__session_set_error(struct rkv_sql_session *session,
                                const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets the error from a store failure rv with context. */
void rkv_sql__session_set_kv_error(struct rkv_sql_session *session, int rv,
                                   const char *context, const char *detail);

struct rkv_sql_kv *rkv_sql__session_kv(struct rkv_sql_session *session);
bool rkv_sql__session_explaining(struct rkv_sql_session *session);

/* Buffers a write of the running statement. value NULL: delete. */
int rkv_sql__session_write(struct rkv_sql_session *session, const uint8_t *key,
                           size_t key_len, const uint8_t *value,
                           size_t value_len);
/* Looks a key up in the statement's buffer: returns 1 when the statement
 * put it, 0 when it deleted it, -1 when it did not touch it. */
int rkv_sql__session_buffered(struct rkv_sql_session *session,
                              const uint8_t *key, size_t key_len);
/* Maps a row key to a rowid handle valid until the statement ends. */
int rkv_sql__session_handle_put(struct rkv_sql_session *session,
                                const uint8_t *key, size_t key_len,
                                int64_t *handle_out);
/* Returns the key behind a handle (borrowed until the statement ends) or
 * RKV_ENOTFOUND. */
int rkv_sql__session_handle_get(struct rkv_sql_session *session, int64_t handle,
                                const uint8_t **key_out, size_t *key_len_out);
/* Records a span a scan read, or with is_write the key a write would
 * touch (end unused), for EXPLAIN. Copies the keys. */
int rkv_sql__session_note_span(struct rkv_sql_session *session,
                               const char *table_name, bool is_write,
                               const uint8_t *start, size_t start_len,
                               const uint8_t *end, size_t end_len);
/* Hands out the next hidden row key of a table. */
int rkv_sql__session_next_row_key(struct rkv_sql_session *session,
                                  uint64_t table_id, int64_t *row_key_out);

/* Converts a value to a column's affinity as SQLite does for a stored
 * table, into out (borrowing value's text or blob). */
void rkv_sql__datum_from_value(sqlite3_value *value,
                               enum rkv_sql_affinity affinity,
                               struct rkv_sql_datum *out);

#endif /* RKV_SQL_INTERNAL_H */
