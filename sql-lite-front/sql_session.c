/*
 * A SQL session: one in-memory SQLite connection whose user tables are
 * "rangekv" virtual tables, plus the state of the running statement.
 *
 * Statement life cycle (rkv_sql_session_exec):
 *   1. Split off the next statement (sql_statement.c); run it there if it
 *      is one rangekv handles itself (EXPLAIN, SHOW, UPSERT, BEGIN).
 *   2. Sync the catalog: attach tables other sessions created, detach the
 *      dropped ones.
 *   3. Prepare with the authorizer classifying it. CREATE TABLE goes to
 *      rkv_sql__statement_create_table(); unsupported schema statements
 *      fail here.
 *   4. Step it; the virtual table buffers writes in the session.
 *   5. On success, flush: the writes go out as one batch per range.
 *      On failure, drop them; nothing reached the store.
 *
 * Invariants:
 *   1. Between statements the write buffer, handle map and span notes are
 *      empty (rkv_sql__session_reset_statement).
 *   2. Every entry of attached is a virtual table in db, and the reverse.
 *   3. In the write buffer a key appears once; a later write to it
 *      replaces the earlier one, so the last write of a statement wins.
 */
#include "sql-lite-front/sql.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql-lite-front/sql_internal.h"

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* Hash slots a write buffer starts with. */
#define WRITE_SLOTS_MIN 64

int rkv_sql_session_open(struct rkv_sql_kv *kv, struct rkv_sql_session **out)
{
    struct rkv_sql_session *session;
    int rv;

    assert(kv != NULL);
    assert(out != NULL);

    session = rkv_calloc(1, sizeof(*session));
    if (session == NULL) {
        return -ENOMEM;
    }
    session->kv = kv;
    if (sqlite3_open_v2(":memory:", &session->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rv = RKV_ESQL;
        goto err_after_alloc;
    }
    rv = rkv_sql__vtab_register(session);
    if (rv != 0) {
        goto err_after_open;
    }
    *out = session;
    return 0;

err_after_open:
    sqlite3_close(session->db);
err_after_alloc:
    rkv_free(session);
    assert(rv != 0);
    return rv;
}

void rkv_sql_session_close(struct rkv_sql_session *session)
{
    if (session == NULL) {
        return;
    }
    rkv_sql__session_reset_statement(session);
    /* Closing the connection disconnects, not destroys, the tables. */
    sqlite3_close(session->db);
    for (size_t i = 0; i < session->n_attached; i++) {
        rkv_free(session->attached[i].name);
    }
    rkv_free(session->attached);
    rkv_free(session->writes);
    rkv_free(session->write_slots);
    rkv_free(session->handle_keys);
    rkv_free(session->spans);
    rkv_free(session->row_key_blocks);
    rkv_free(session);
}

/* ---- errors -------------------------------------------------------------- */

void rkv_sql__session_set_error(struct rkv_sql_session *session,
                                const char *sqlstate, const char *fmt, ...)
{
    va_list args;

    assert(strlen(sqlstate) == 5);

    /* The first error of a statement is the cause; keep it. */
    if (session->has_error) {
        return;
    }
    session->has_error = true;
    memcpy(session->sqlstate, sqlstate, 6);
    va_start(args, fmt);
    vsnprintf(session->message, sizeof(session->message), fmt, args);
    va_end(args);
}

void rkv_sql__session_set_kv_error(struct rkv_sql_session *session, int rv,
                                   const char *context, const char *detail)
{
    const char *sqlstate = "XX000";

    switch (rv) {
    case RKV_EUNAVAILABLE:
    case RKV_ETIMEOUT:
    case RKV_ESHUTDOWN:
    case -ECONNREFUSED:
        sqlstate = "08006"; /* connection_failure */
        break;
    case RKV_EUNKNOWN:
        sqlstate = "40003"; /* statement_completion_unknown */
        break;
    case RKV_ETOOLARGE:
        sqlstate = "54000"; /* program_limit_exceeded */
        break;
    case RKV_EBUSY:
        sqlstate = "53000"; /* insufficient_resources */
        break;
    case -ENOMEM:
        sqlstate = "53200"; /* out_of_memory */
        break;
    default:
        break;
    }
    rkv_sql__session_set_error(session, sqlstate, "%s failed: %s%s%s", context,
                               rkv_strerror(rv),
                               detail != NULL && detail[0] != '\0' ? ": " : "",
                               detail != NULL ? detail : "");
}

struct rkv_sql_kv *rkv_sql__session_kv(struct rkv_sql_session *session)
{
    return session->kv;
}

bool rkv_sql__session_explaining(struct rkv_sql_session *session)
{
    return session->explaining;
}

/* ---- the write buffer ---------------------------------------------------- */

static uint64_t hash_key(const uint8_t *key, size_t key_len)
{
    uint64_t hash = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (size_t i = 0; i < key_len; i++) {
        hash = (hash ^ key[i]) * 0x100000001b3ULL;
    }
    return hash;
}

/* Returns the slot holding key, or the empty slot where it would go. */
static size_t write_slot_find(const struct rkv_sql_session *session,
                              const uint8_t *key, size_t key_len)
{
    size_t mask = session->n_write_slots - 1;
    size_t slot = (size_t)hash_key(key, key_len) & mask;

    for (;;) {
        uint32_t index = session->write_slots[slot];
        const struct rkv_sql_write *write;

        if (index == 0) {
            return slot;
        }
        write = &session->writes[index - 1];
        if (write->key_len == key_len &&
            memcmp(write->key, key, key_len) == 0) {
            return slot;
        }
        slot = (slot + 1) & mask;
    }
}

/* Doubles the hash when it would pass half full, and grows the array. */
static int write_buffer_grow(struct rkv_sql_session *session)
{
    if (session->n_writes == session->writes_cap) {
        size_t cap = RKV_MAX(session->writes_cap * 2, (size_t)16);
        struct rkv_sql_write *writes =
            rkv_realloc(session->writes, cap * sizeof(*writes));

        if (writes == NULL) {
            return -ENOMEM;
        }
        session->writes = writes;
        session->writes_cap = cap;
    }
    if (2 * (session->n_writes + 1) > session->n_write_slots) {
        size_t n_slots =
            RKV_MAX(session->n_write_slots * 2, (size_t)WRITE_SLOTS_MIN);
        uint32_t *slots = rkv_calloc(n_slots, sizeof(*slots));

        if (slots == NULL) {
            return -ENOMEM;
        }
        rkv_free(session->write_slots);
        session->write_slots = slots;
        session->n_write_slots = n_slots;
        for (size_t i = 0; i < session->n_writes; i++) {
            const struct rkv_sql_write *write = &session->writes[i];

            slots[write_slot_find(session, write->key, write->key_len)] =
                (uint32_t)(i + 1);
        }
    }
    return 0;
}

int rkv_sql__session_write(struct rkv_sql_session *session, const uint8_t *key,
                           size_t key_len, const uint8_t *value,
                           size_t value_len)
{
    struct rkv_sql_write *write;
    uint8_t *value_copy = NULL;
    size_t slot;
    int rv;

    assert(key_len > 0);

    if (session->n_writes >= RKV_SQL_STATEMENT_WRITES_MAX) {
        return RKV_ETOOLARGE;
    }
    rv = write_buffer_grow(session);
    if (rv != 0) {
        return rv;
    }
    if (value != NULL) {
        /* An empty value still needs a non-NULL buffer to mean "put". */
        value_copy = rkv_malloc(RKV_MAX(value_len, (size_t)1));
        if (value_copy == NULL) {
            return -ENOMEM;
        }
        memcpy(value_copy, value, value_len);
    }
    slot = write_slot_find(session, key, key_len);
    if (session->write_slots[slot] != 0) {
        write = &session->writes[session->write_slots[slot] - 1];
        rkv_free(write->value);
        write->value = value_copy;
        write->value_len = value_len;
        return 0;
    }
    write = &session->writes[session->n_writes];
    write->key = rkv_memdup(key, key_len);
    if (write->key == NULL) {
        rkv_free(value_copy);
        return -ENOMEM;
    }
    write->key_len = key_len;
    write->value = value_copy;
    write->value_len = value_len;
    session->n_writes++;
    session->write_slots[slot] = (uint32_t)session->n_writes;
    return 0;
}

int rkv_sql__session_buffered(struct rkv_sql_session *session,
                              const uint8_t *key, size_t key_len)
{
    size_t slot;
    const struct rkv_sql_write *write;

    if (session->n_writes == 0) {
        return -1;
    }
    slot = write_slot_find(session, key, key_len);
    if (session->write_slots[slot] == 0) {
        return -1;
    }
    write = &session->writes[session->write_slots[slot] - 1];
    return write->value != NULL ? 1 : 0;
}

static int compare_writes(const void *a, const void *b)
{
    const struct rkv_sql_write *x = a;
    const struct rkv_sql_write *y = b;

    return rkv_sql__key_compare(x->key, x->key_len, y->key, y->key_len);
}

/* Describes a partial commit in the session error. */
static void flush_set_partial_error(struct rkv_sql_session *session, int rv,
                                    const struct rkv_sql_apply_report *report,
                                    const char *detail)
{
    rkv_sql__session_set_error(
        session, "40003",
        "statement partially applied: %zu of %zu writes were committed in "
        "%zu batches before the batch for range %llu failed (%s%s%s); a "
        "statement is atomic only within one range",
        report->n_ops_applied, session->n_writes, report->n_batches,
        (unsigned long long)report->failed_range_id, rkv_strerror(rv),
        detail[0] != '\0' ? ": " : "", detail);
}

int rkv_sql__session_flush(struct rkv_sql_session *session)
{
    struct rkv_sql_apply_report report;
    struct rkv_sql_kv_op *ops;
    char detail[RKV_SQL_KV_MESSAGE_MAX] = "";
    int rv;

    if (session->n_writes == 0) {
        return 0;
    }
    qsort(session->writes, session->n_writes, sizeof(*session->writes),
          compare_writes);
    ops = rkv_calloc(session->n_writes, sizeof(*ops));
    if (ops == NULL) {
        rkv_sql__session_set_kv_error(session, -ENOMEM, "commit", NULL);
        return -ENOMEM;
    }
    for (size_t i = 0; i < session->n_writes; i++) {
        ops[i].is_delete = session->writes[i].value == NULL;
        ops[i].key = session->writes[i].key;
        ops[i].key_len = session->writes[i].key_len;
        ops[i].value = session->writes[i].value;
        ops[i].value_len = session->writes[i].value_len;
    }
    rv =
        rkv_sql__kv_apply(session->kv, ops, session->n_writes, &report, detail);
    rkv_free(ops);
    if (rv != 0 && report.n_batches > 0) {
        flush_set_partial_error(session, rv, &report, detail);
    } else if (rv != 0) {
        rkv_sql__session_set_kv_error(session, rv, "commit", detail);
    }
    if (rv != 0) {
        RKV_LOG(RKV_DEBUG,
                "statement commit failed writes=%zu applied=%zu "
                "range=%llu rv=%s",
                session->n_writes, report.n_ops_applied,
                (unsigned long long)report.failed_range_id, rkv_errname(rv));
    }
    return rv;
}

/* ---- rowid handles, span notes, row keys -------------------------------- */

int rkv_sql__session_handle_put(struct rkv_sql_session *session,
                                const uint8_t *key, size_t key_len,
                                int64_t *handle_out)
{
    struct rkv_sql_buf *slot;
    int rv;

    if (session->n_handles == session->handles_cap) {
        size_t cap = RKV_MAX(session->handles_cap * 2, (size_t)64);
        struct rkv_sql_buf *grown =
            rkv_realloc(session->handle_keys, cap * sizeof(*grown));

        if (grown == NULL) {
            return -ENOMEM;
        }
        session->handle_keys = grown;
        session->handles_cap = cap;
    }
    slot = &session->handle_keys[session->n_handles];
    memset(slot, 0, sizeof(*slot));
    rv = rkv_sql__buf_append(slot, key, key_len);
    if (rv != 0) {
        rkv_sql__buf_free(slot);
        return rv;
    }
    session->n_handles++;
    *handle_out = (int64_t)session->n_handles;
    return 0;
}

int rkv_sql__session_handle_get(struct rkv_sql_session *session, int64_t handle,
                                const uint8_t **key_out, size_t *key_len_out)
{
    if (handle < 1 || (uint64_t)handle > session->n_handles) {
        return RKV_ENOTFOUND;
    }
    *key_out = session->handle_keys[handle - 1].data;
    *key_len_out = session->handle_keys[handle - 1].len;
    return 0;
}

int rkv_sql__session_note_span(struct rkv_sql_session *session,
                               const char *table_name, bool is_write,
                               const uint8_t *start, size_t start_len,
                               const uint8_t *end, size_t end_len)
{
    struct rkv_sql_span_note *note;

    if (session->n_spans == 0) {
        session->spans =
            rkv_calloc(RKV_SQL_EXPLAIN_SPANS_MAX, sizeof(*session->spans));
        if (session->spans == NULL) {
            return -ENOMEM;
        }
    }
    if (session->n_spans == RKV_SQL_EXPLAIN_SPANS_MAX) {
        session->n_spans_dropped++;
        return 0;
    }
    note = &session->spans[session->n_spans];
    note->table_name = rkv_memdup(table_name, strlen(table_name) + 1);
    note->start = rkv_memdup(start, RKV_MAX(start_len, (size_t)1));
    note->end =
        rkv_memdup(end == NULL ? start : end, RKV_MAX(end_len, (size_t)1));
    note->start_len = start_len;
    note->end_len = end_len;
    note->is_write = is_write;
    session->n_spans++;
    if (note->table_name == NULL || note->start == NULL || note->end == NULL) {
        return -ENOMEM;
    }
    return 0;
}

int rkv_sql__session_next_row_key(struct rkv_sql_session *session,
                                  uint64_t table_id, int64_t *row_key_out)
{
    struct rkv_sql_row_key_block *block = NULL;
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    int rv;

    for (size_t i = 0; i < session->n_row_key_blocks; i++) {
        if (session->row_key_blocks[i].table_id == table_id) {
            block = &session->row_key_blocks[i];
        }
    }
    if (block == NULL) {
        struct rkv_sql_row_key_block *grown =
            rkv_realloc(session->row_key_blocks,
                        (session->n_row_key_blocks + 1) * sizeof(*grown));

        if (grown == NULL) {
            return -ENOMEM;
        }
        session->row_key_blocks = grown;
        block = &grown[session->n_row_key_blocks++];
        memset(block, 0, sizeof(*block));
        block->table_id = table_id;
    }
    if (block->next == block->end) {
        rv = rkv_sql__catalog_reserve_row_keys(session->kv, table_id,
                                               RKV_SQL_ROW_KEY_BLOCK,
                                               &block->next, message);
        if (rv != 0) {
            rkv_sql__session_set_kv_error(session, rv, "reserving row keys",
                                          message);
            return rv;
        }
        block->end = block->next + RKV_SQL_ROW_KEY_BLOCK;
    }
    *row_key_out = block->next++;
    return 0;
}

void rkv_sql__session_reset_statement(struct rkv_sql_session *session)
{
    for (size_t i = 0; i < session->n_writes; i++) {
        rkv_free(session->writes[i].key);
        rkv_free(session->writes[i].value);
    }
    session->n_writes = 0;
    if (session->write_slots != NULL) {
        memset(session->write_slots, 0,
               session->n_write_slots * sizeof(*session->write_slots));
    }
    for (size_t i = 0; i < session->n_handles; i++) {
        rkv_sql__buf_free(&session->handle_keys[i]);
    }
    session->n_handles = 0;
    for (size_t i = 0; i < session->n_spans; i++) {
        rkv_free(session->spans[i].table_name);
        rkv_free(session->spans[i].start);
        rkv_free(session->spans[i].end);
    }
    rkv_free(session->spans);
    session->spans = NULL;
    session->n_spans = 0;
    session->n_spans_dropped = 0;
    session->has_error = false;
    session->sqlstate[0] = '\0';
    session->message[0] = '\0';
}

/* ---- catalog sync -------------------------------------------------------- */

int rkv_sql__session_exec_internal(struct rkv_sql_session *session,
                                   const char *sql)
{
    char *error = NULL;
    int rc;

    sqlite3_set_authorizer(session->db, NULL, NULL);
    rc = sqlite3_exec(session->db, sql, NULL, NULL, &error);
    if (rc != SQLITE_OK) {
        rkv_sql__session_set_error(session, "XX000", "%s",
                                   error != NULL ? error : "sqlite failed");
        sqlite3_free(error);
        return RKV_ESQL;
    }
    return 0;
}

static int session_detach(struct rkv_sql_session *session, size_t index)
{
    char *sql;
    int rv;

    sql = sqlite3_mprintf("DROP TABLE main.\"%w\"",
                          session->attached[index].name);
    if (sql == NULL) {
        return -ENOMEM;
    }
    session->detaching = true;
    rv = rkv_sql__session_exec_internal(session, sql);
    session->detaching = false;
    sqlite3_free(sql);
    return rv;
}

/* Attaches a table; takes ownership of table. */
static int session_attach(struct rkv_sql_session *session,
                          struct rkv_sql_table *table)
{
    char *sql;
    int rv;

    sql = sqlite3_mprintf("CREATE VIRTUAL TABLE main.\"%w\" USING rangekv",
                          table->name);
    if (sql == NULL) {
        rkv_sql__table_free(table);
        return -ENOMEM;
    }
    session->attaching = table;
    rv = rkv_sql__session_exec_internal(session, sql);
    if (session->attaching != NULL) {
        /* xCreate never ran, so the table is still ours. */
        rkv_sql__table_free(session->attaching);
        session->attaching = NULL;
    }
    sqlite3_free(sql);
    return rv;
}

static bool catalog_has(struct rkv_sql_table **tables, size_t n_tables,
                        const struct rkv_sql_attached *attached)
{
    for (size_t i = 0; i < n_tables; i++) {
        if (tables[i] != NULL && tables[i]->table_id == attached->table_id &&
            strcmp(tables[i]->name, attached->name) == 0) {
            return true;
        }
    }
    return false;
}

int rkv_sql__session_sync_catalog(struct rkv_sql_session *session)
{
    struct rkv_sql_table **tables = NULL;
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    size_t n_tables = 0;
    int rv;

    rv = rkv_sql__catalog_list(session->kv, &tables, &n_tables, message);
    if (rv != 0) {
        rkv_sql__session_set_kv_error(session, rv, "reading the catalog",
                                      message);
        return rv;
    }
    for (size_t i = session->n_attached; rv == 0 && i > 0; i--) {
        if (!catalog_has(tables, n_tables, &session->attached[i - 1])) {
            rv = session_detach(session, i - 1);
        }
    }
    for (size_t i = 0; i < n_tables; i++) {
        bool present = false;

        for (size_t j = 0; j < session->n_attached; j++) {
            present =
                present || session->attached[j].table_id == tables[i]->table_id;
        }
        if (rv == 0 && !present) {
            rv = session_attach(session, tables[i]);
            tables[i] = NULL;
        }
        rkv_sql__table_free(tables[i]);
    }
    rkv_free(tables);
    return rv;
}

/* ---- running statements -------------------------------------------------- */

/* Records schema statements while a statement is prepared. */
static int session_authorize_cb(void *data, int action, const char *arg1,
                                const char *arg2, const char *database,
                                const char *trigger)
{
    struct rkv_sql_session *session = data;

    switch (action) {
    case SQLITE_CREATE_TABLE:
        if (arg1[0] == '\0') {
            session->unsupported = "a table name must not be empty";
            return SQLITE_DENY;
        }
        if (strlen(arg1) > RKV_SQL_NAME_MAX) {
            session->unsupported = "table names are limited to 63 bytes";
            return SQLITE_DENY;
        }
        session->saw_create_table = true;
        snprintf(session->create_table_name, sizeof(session->create_table_name),
                 "%s", arg1);
        return SQLITE_OK;
    case SQLITE_CREATE_INDEX:
        /* CREATE TABLE creates an index for its PRIMARY KEY. */
        if (strncmp(arg1, "sqlite_autoindex_", 17) == 0) {
            return SQLITE_OK;
        }
        session->unsupported = "CREATE INDEX is not supported: tables have "
                               "only their primary key index";
        return SQLITE_DENY;
    case SQLITE_CREATE_VIEW:
        session->unsupported = "CREATE VIEW is supported only as CREATE TEMP "
                               "VIEW, which lasts for the session";
        return SQLITE_DENY;
    case SQLITE_CREATE_TRIGGER:
        session->unsupported = "CREATE TRIGGER is supported only as CREATE "
                               "TEMP TRIGGER on temporary tables";
        return SQLITE_DENY;
    case SQLITE_ALTER_TABLE:
        session->unsupported = "ALTER TABLE is not supported";
        return SQLITE_DENY;
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
        session->unsupported = "ATTACH and DETACH are not supported";
        return SQLITE_DENY;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        /* The first write names the statement's kind, even after WITH. */
        if (session->write_action == 0) {
            session->write_action = action;
        }
        return SQLITE_OK;
    default:
        return SQLITE_OK;
    }
}

/* Maps SQLite's message for a failed prepare to SQLSTATE and PostgreSQL's
 * wording where one exists. */
static void session_set_sqlite_error(struct rkv_sql_session *session)
{
    const char *message = sqlite3_errmsg(session->db);
    const char *name;

    if ((name = strstr(message, "no such table: ")) != NULL) {
        name += strlen("no such table: ");
        rkv_sql__session_set_error(session, "42P01",
                                   "relation \"%s\" does not exist", name);
    } else if ((name = strstr(message, "no such column: ")) != NULL) {
        name += strlen("no such column: ");
        rkv_sql__session_set_error(session, "42703",
                                   "column \"%s\" does not exist", name);
    } else if (strstr(message, "may not be indexed") != NULL) {
        rkv_sql__session_set_error(session, "0A000",
                                   "CREATE INDEX is not supported: tables "
                                   "have only their primary key index");
    } else if (strstr(message, "already exists") != NULL) {
        rkv_sql__session_set_error(session, "42P07", "%s", message);
    } else if (strstr(message, "syntax error") != NULL ||
               strstr(message, "incomplete input") != NULL) {
        rkv_sql__session_set_error(session, "42601", "%s", message);
    } else if (strstr(message, "no such function") != NULL) {
        rkv_sql__session_set_error(session, "42883", "%s", message);
    } else if (strstr(message, "ambiguous column") != NULL) {
        rkv_sql__session_set_error(session, "42702", "%s", message);
    } else if (strstr(message, "misuse of aggregate") != NULL) {
        rkv_sql__session_set_error(session, "42803", "%s", message);
    } else {
        rkv_sql__session_set_error(session, "42000", "%s", message);
    }
}

int rkv_sql__session_send_error(struct rkv_sql_session *session,
                                rkv_sql_event_cb cb, void *data)
{
    struct rkv_sql_event event = {
        .kind = RKV_SQL_EVENT_ERROR,
        .sqlstate = session->sqlstate,
        .message = session->message,
    };
    int rv;

    assert(session->has_error);
    RKV_LOG(RKV_DEBUG, "statement failed sqlstate=%s message=%s",
            session->sqlstate, session->message);
    rv = cb(data, &event);
    return rv < 0 ? rv : RKV_ESQL;
}

/* Prepares and runs one statement SQLite executes. */
int rkv_sql__session_run_sqlite(struct rkv_sql_session *session,
                                const char *text, rkv_sql_event_cb cb,
                                void *data)
{
    sqlite3_stmt *stmt = NULL;
    int rc;
    int rv;

    session->saw_create_table = false;
    session->unsupported = NULL;
    session->write_action = 0;
    sqlite3_set_authorizer(session->db, session_authorize_cb, session);
    rc = sqlite3_prepare_v2(session->db, text, -1, &stmt, NULL);
    sqlite3_set_authorizer(session->db, NULL, NULL);
    if (session->unsupported != NULL) {
        sqlite3_finalize(stmt);
        rkv_sql__session_set_error(session, "0A000", "%s",
                                   session->unsupported);
        return rkv_sql__session_send_error(session, cb, data);
    }
    if (rc != SQLITE_OK) {
        session_set_sqlite_error(session);
        return rkv_sql__session_send_error(session, cb, data);
    }
    if (session->saw_create_table) {
        sqlite3_finalize(stmt);
        return rkv_sql__statement_create_table(session, text, cb, data);
    }
    if (stmt == NULL) {
        return 0; /* only a comment */
    }
    rv = rkv_sql__statement_step(session, stmt, text, cb, data);
    sqlite3_finalize(stmt);
    return rv;
}

/* Runs one statement from the exec loop. */
static int session_run_one(struct rkv_sql_session *session, const char *text,
                           rkv_sql_event_cb cb, void *data)
{
    int rv;

    rkv_sql__session_reset_statement(session);
    rv = rkv_sql__session_sync_catalog(session);
    if (rv != 0) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    rv = rkv_sql__statement_run_special(session, text, cb, data);
    if (rv == 0) {
        rv = rkv_sql__session_run_sqlite(session, text, cb, data);
    } else if (rv == 1) {
        rv = 0;
    }
    rkv_sql__session_reset_statement(session);
    return rv;
}

/* Tells whether text holds only whitespace, semicolons and comments. */
static bool statement_is_empty(const char *text)
{
    const char *after;

    return rkv_sql__statement_starts_with(text, "", &after) &&
           (*after == '\0' || *after == ';');
}

int rkv_sql_session_exec(struct rkv_sql_session *session, const char *sql,
                         rkv_sql_event_cb cb, void *data)
{
    const char *pos = sql;
    bool ran_any = false;

    assert(session != NULL);
    assert(sql != NULL);

    while (*pos != '\0') {
        size_t len = rkv_sql__statement_len(pos);
        char *text = rkv_memdup(pos, len + 1);
        int rv;

        if (text == NULL) {
            return -ENOMEM;
        }
        text[len] = '\0';
        pos += len;
        if (statement_is_empty(text)) {
            rkv_free(text);
            continue;
        }
        ran_any = true;
        rv = session_run_one(session, text, cb, data);
        rkv_free(text);
        if (rv != 0) {
            return rv;
        }
    }
    if (!ran_any) {
        struct rkv_sql_event event = {.kind = RKV_SQL_EVENT_EMPTY};

        return RKV_MIN(cb(data, &event), 0);
    }
    return 0;
}
