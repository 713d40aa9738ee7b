/*
 * Writing through the "rangekv" virtual table (xUpdate): values get the
 * column's affinity, key columns must then hold their one storage class,
 * and NOT NULL is checked. Writes go to the session's statement buffer
 * (sql_session.c), which commits them when the statement ends. A plain
 * INSERT first checks that the key is absent, in the buffer and then in
 * the store. In EXPLAIN mode writes only record their keys.
 *
 * Rowids are handles into the session's per-statement table of row keys
 * (see sql_vtab.c), so UPDATE and DELETE find the key of the row SQLite
 * scanned.
 */
#include "sql-lite-front/sql_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rangekv/client.h"

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

static const char *pg_type_name(enum rkv_sql_affinity affinity)
{
    switch (affinity) {
    case RKV_SQL_AFF_INTEGER:
        return "bigint";
    case RKV_SQL_AFF_REAL:
        return "double precision";
    case RKV_SQL_AFF_TEXT:
        return "text";
    default:
        return "bytea";
    }
}

/* Makes a key column's value its one storage class, or fails with 22P02
 * (invalid_text_representation) as PostgreSQL does for "abc"::bigint. */
static int row_check_key_value(struct rkv_sql_vtab *vtab,
                               const struct rkv_sql_column *column,
                               sqlite3_value *value,
                               struct rkv_sql_datum *datum)
{
    enum rkv_sql_type expected;

    switch (column->affinity) {
    case RKV_SQL_AFF_INTEGER:
        expected = RKV_SQL_INTEGER;
        break;
    case RKV_SQL_AFF_REAL:
        expected = RKV_SQL_REAL;
        break;
    case RKV_SQL_AFF_TEXT:
        expected = RKV_SQL_TEXT;
        break;
    default:
        expected = RKV_SQL_BLOB;
        if (datum->type == RKV_SQL_TEXT) {
            datum->type = RKV_SQL_BLOB;
        }
        break;
    }
    if (datum->type == expected) {
        return 0;
    }
    rkv_sql__session_set_error(vtab->session, "22P02",
                               "invalid input syntax for type %s: \"%s\" "
                               "(key column \"%s\")",
                               pg_type_name(column->affinity),
                               (const char *)sqlite3_value_text(value),
                               column->name);
    return RKV_ESQL;
}

/* Checks one column of a new row: NOT NULL, then the key storage class. */
static int row_check_column(struct rkv_sql_vtab *vtab, size_t index,
                            sqlite3_value *value, struct rkv_sql_datum *datum)
{
    const struct rkv_sql_column *column = &vtab->table->columns[index];

    if (column->not_null && datum->type == RKV_SQL_NULL) {
        rkv_sql__session_set_error(vtab->session, "23502",
                                   "null value in column \"%s\" of relation "
                                   "\"%s\" violates not-null constraint",
                                   column->name, vtab->table->name);
        return RKV_ESQL;
    }
    if (column->key_position > 0) {
        return row_check_key_value(vtab, column, value, datum);
    }
    return 0;
}

/* Evaluates a column's DEFAULT expression into a new value (free with
 * sqlite3_value_free), or NULL when it fails. */
static sqlite3_value *default_value(struct rkv_sql_vtab *vtab,
                                    const struct rkv_sql_column *column)
{
    sqlite3_value *value = NULL;
    sqlite3_stmt *stmt = NULL;
    char *sql = sqlite3_mprintf("SELECT (%s)", column->default_sql);

    if (sql != NULL &&
        sqlite3_prepare_v2(vtab->db, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        value = sqlite3_value_dup(sqlite3_column_value(stmt, 0));
    }
    sqlite3_finalize(stmt);
    sqlite3_free(sql);
    return value;
}

/* Encodes a new row (values[i] for column i) into its key and value.
 * SQLite passes NULL for a column an INSERT leaves out, because virtual
 * tables get no DEFAULT handling, so an inserted NULL takes the DEFAULT.
 * NOTE: an explicit NULL into a column with a DEFAULT therefore stores
 * the default, unlike PostgreSQL; it matters only for nullable columns
 * that also have a DEFAULT. */
static int row_encode(struct rkv_sql_vtab *vtab, sqlite3_value **values,
                      bool is_insert, struct rkv_sql_buf *key,
                      struct rkv_sql_buf *value, bool *generated_key)
{
    const struct rkv_sql_table *table = vtab->table;
    struct rkv_sql_datum datums[RKV_SQL_COLUMNS_MAX];
    sqlite3_value *defaults[RKV_SQL_COLUMNS_MAX] = {NULL};
    uint32_t ids[RKV_SQL_COLUMNS_MAX];
    size_t n_stored = 0;
    int rv = 0;

    for (size_t i = 0; i < table->n_columns; i++) {
        sqlite3_value *source = values[i];

        if (is_insert && table->columns[i].default_sql != NULL &&
            sqlite3_value_type(source) == SQLITE_NULL) {
            defaults[i] = default_value(vtab, &table->columns[i]);
            source = defaults[i] != NULL ? defaults[i] : source;
        }
        values[i] = source;
        rkv_sql__datum_from_value(source, table->columns[i].affinity,
                                  &datums[i]);
    }
    if (table->hidden_key &&
        datums[table->key_columns[0]].type == RKV_SQL_NULL) {
        struct rkv_sql_datum *row_key = &datums[table->key_columns[0]];

        row_key->type = RKV_SQL_INTEGER;
        rv = rkv_sql__session_next_row_key(vtab->session, table->table_id,
                                           &row_key->integer);
        *generated_key = true;
    }
    for (size_t i = 0; rv == 0 && i < table->n_columns; i++) {
        rv = row_check_column(vtab, i, values[i], &datums[i]);
    }
    rv = rv != 0
             ? rv
             : rkv_sql__buf_append(key, vtab->prefix.data, vtab->prefix.len);
    for (size_t p = 0; rv == 0 && p < table->n_key_columns; p++) {
        uint32_t column = table->key_columns[p];

        rv = rkv_sql__key_append_datum(key, &datums[column],
                                       table->columns[column].descending);
    }
    for (size_t i = 0; i < table->n_columns; i++) {
        if (table->columns[i].key_position == 0) {
            ids[n_stored] = (uint32_t)i;
            datums[n_stored++] = datums[i];
        }
    }
    if (rv == 0) {
        rv = rkv_sql__row_encode(value, n_stored, ids, datums);
    }
    for (size_t i = 0; i < table->n_columns; i++) {
        sqlite3_value_free(defaults[i]);
    }
    return rv;
}

static int row_check_limits(struct rkv_sql_vtab *vtab,
                            const struct rkv_sql_buf *key,
                            const struct rkv_sql_buf *value)
{
    if (key->len > RKV_CLIENT_KEY_MAX) {
        rkv_sql__session_set_error(vtab->session, "54000",
                                   "row key of table \"%s\" is %zu bytes, "
                                   "over the maximum of %d; use shorter key "
                                   "values",
                                   vtab->table->name, key->len,
                                   RKV_CLIENT_KEY_MAX);
        return RKV_ETOOLARGE;
    }
    if (value->len > RKV_CLIENT_VALUE_MAX) {
        rkv_sql__session_set_error(vtab->session, "54000",
                                   "row of table \"%s\" is %zu bytes, over "
                                   "the maximum of %u",
                                   vtab->table->name, value->len,
                                   RKV_CLIENT_VALUE_MAX);
        return RKV_ETOOLARGE;
    }
    return 0;
}

/* Returns 1 when a row exists at key (the statement's own writes first), 0
 * when it does not, or a negative code. */
static int key_exists(struct rkv_sql_vtab *vtab, const struct rkv_sql_buf *key)
{
    struct rkv_sql_kv *kv = rkv_sql__session_kv(vtab->session);
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    uint8_t *value = NULL;
    size_t value_len = 0;
    int buffered;
    int rv;

    buffered = rkv_sql__session_buffered(vtab->session, key->data, key->len);
    if (buffered >= 0) {
        return buffered;
    }
    rv = kv->vtable->get(kv, key->data, key->len, &value, &value_len, message);
    rkv_free(value);
    if (rv == RKV_ENOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        rkv_sql__session_set_kv_error(vtab->session, rv, "reading a row",
                                      message);
        return rv;
    }
    return 1;
}

/* Decides what a write to an existing key does under the statement's ON
 * CONFLICT mode: 0 write, 1 skip the row, negative fail. */
static int resolve_conflict(struct rkv_sql_vtab *vtab, sqlite3 *db,
                            const struct rkv_sql_buf *key)
{
    int mode = sqlite3_vtab_on_conflict(db);
    int exists;

    if (mode == SQLITE_REPLACE) {
        return 0;
    }
    exists = key_exists(vtab, key);
    if (exists <= 0) {
        return exists;
    }
    if (mode == SQLITE_IGNORE) {
        return 1;
    }
    rkv_sql__session_set_error(vtab->session, "23505",
                               "duplicate key value violates unique "
                               "constraint \"%s_pkey\"",
                               vtab->table->name);
    return RKV_ECONDFAILED;
}

static int update_delete(struct rkv_sql_vtab *vtab, sqlite3_value *old_rowid)
{
    const uint8_t *key;
    size_t key_len;
    int rv;

    rv = rkv_sql__session_handle_get(
        vtab->session, sqlite3_value_int64(old_rowid), &key, &key_len);
    if (rv != 0) {
        rkv_sql__session_set_error(vtab->session, "XX000",
                                   "row handle %lld is unknown",
                                   sqlite3_value_int64(old_rowid));
        return rv;
    }
    if (rkv_sql__session_explaining(vtab->session)) {
        return rkv_sql__session_note_span(vtab->session, vtab->table->name,
                                          true, key, key_len, NULL, 0);
    }
    return rkv_sql__session_write(vtab->session, key, key_len, NULL, 0);
}

/* Inserts (old_rowid NULL) or updates a row. */
static int update_put(struct rkv_sql_vtab *vtab, sqlite3_value *old_rowid,
                      sqlite3_value **values, sqlite3_int64 *rowid)
{
    struct rkv_sql_session *session = vtab->session;
    struct rkv_sql_buf key = {0};
    struct rkv_sql_buf value = {0};
    const uint8_t *old_key = NULL;
    size_t old_key_len = 0;
    bool generated_key = false;
    bool moves;
    int rv;

    rv = row_encode(vtab, values, sqlite3_value_type(old_rowid) == SQLITE_NULL,
                    &key, &value, &generated_key);
    if (rv == 0) {
        rv = row_check_limits(vtab, &key, &value);
    }
    if (rv == 0 && sqlite3_value_type(old_rowid) != SQLITE_NULL) {
        rv = rkv_sql__session_handle_get(
            session, sqlite3_value_int64(old_rowid), &old_key, &old_key_len);
    }
    if (rv != 0) {
        goto out;
    }
    moves = old_key == NULL ||
            rkv_sql__key_compare(old_key, old_key_len, key.data, key.len) != 0;
    if (rkv_sql__session_explaining(session)) {
        rv = rkv_sql__session_note_span(session, vtab->table->name, true,
                                        key.data, key.len, NULL, 0);
        goto out;
    }
    /* A generated row key is new by construction, so it needs no read. */
    rv = moves && !generated_key ? resolve_conflict(vtab, vtab->db, &key) : 0;
    if (rv == 1) {
        rv = 0;
        goto out;
    }
    if (rv == 0 && old_key != NULL && moves) {
        rv = rkv_sql__session_write(session, old_key, old_key_len, NULL, 0);
    }
    if (rv == 0) {
        /* A row of NULLs has an empty value, still a put, not a delete. */
        rv = rkv_sql__session_write(
            session, key.data, key.len,
            value.data != NULL ? value.data : (const uint8_t *)"", value.len);
    }
    if (rv == 0) {
        int64_t handle = 0;

        rv = rkv_sql__session_handle_put(session, key.data, key.len, &handle);
        *rowid = handle;
    }

out:
    rkv_sql__buf_free(&key);
    rkv_sql__buf_free(&value);
    return rv;
}

int rkv_sql__vtab_update(sqlite3_vtab *base, int argc, sqlite3_value **argv,
                         sqlite3_int64 *rowid)
{
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base;
    int rv;

    if (argc == 1) {
        rv = update_delete(vtab, argv[0]);
    } else {
        assert((size_t)argc == 2 + vtab->table->n_columns);
        rv = update_put(vtab, argv[0], argv + 2, rowid);
    }
    if (rv == RKV_ETOOLARGE && !vtab->session->has_error) {
        rkv_sql__session_set_error(vtab->session, "54000",
                                   "a statement may write at most %d rows",
                                   RKV_SQL_STATEMENT_WRITES_MAX);
    }
    if (rv != 0) {
        rkv_sql__session_set_kv_error(vtab->session, rv, "writing a row",
                                      vtab->table->name);
        rkv_sql__vtab_set_error(vtab, vtab->session->message);
        return rv == RKV_ECONDFAILED || vtab->session->sqlstate[0] == '2'
                   ? SQLITE_CONSTRAINT
                   : SQLITE_ERROR;
    }
    return SQLITE_OK;
}
