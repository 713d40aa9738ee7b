/*
 * Statements as text and results as events: splitting a query string,
 * recognising the statements rangekv adds (EXPLAIN, SHOW RANGES, SHOW
 * TABLES, UPSERT INTO) and the ones it rejects (transaction control),
 * creating tables, and turning SQLite rows into PostgreSQL text values.
 * After a rejected BEGIN, every statement is rejected until ROLLBACK.
 *
 * This is a lexer, not a parser: it only skips quotes and comments and
 * compares leading keywords. Everything past those keywords goes to SQLite.
 *
 * EXPLAIN stmt runs stmt with the session in explain mode: scans record
 * the spans xFilter computed and still read (so joins see real outer
 * rows), writes only record their keys. It then lists SQLite's query plan,
 * every span with the ranges it overlaps, and the union of those ranges.
 */
#include "sql-lite-front/sql_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* Characters of a formatted key in EXPLAIN and SHOW RANGES output. */
#define KEY_TEXT_MAX 256
/* Characters of one EXPLAIN line. */
#define EXPLAIN_LINE_MAX 1024

/* ---- lexing -------------------------------------------------------------- */

/* Returns the position after the whitespace and comments at text. */
static const char *skip_space(const char *text)
{
    for (;;) {
        if (isspace((unsigned char)*text)) {
            text++;
        } else if (text[0] == '-' && text[1] == '-') {
            while (*text != '\0' && *text != '\n') {
                text++;
            }
        } else if (text[0] == '/' && text[1] == '*') {
            const char *close = strstr(text + 2, "*/");

            text = close == NULL ? text + strlen(text) : close + 2;
        } else {
            return text;
        }
    }
}

/* Returns the position after a quoted token starting at text. */
static const char *skip_quoted(const char *text)
{
    char close = *text == '[' ? ']' : *text;

    text++;
    while (*text != '\0') {
        if (*text == close && text[1] == close && close != ']') {
            text += 2; /* a doubled quote is a literal quote */
        } else if (*text == close) {
            return text + 1;
        } else {
            text++;
        }
    }
    return text;
}

size_t rkv_sql__statement_len(const char *sql)
{
    const char *pos = sql;

    while (*pos != '\0') {
        const char *after = skip_space(pos);

        if (after != pos) {
            pos = after;
        } else if (*pos == '\'' || *pos == '"' || *pos == '`' || *pos == '[') {
            pos = skip_quoted(pos);
        } else if (*pos == ';') {
            return (size_t)(pos - sql) + 1;
        } else {
            pos++;
        }
    }
    return (size_t)(pos - sql);
}

bool rkv_sql__statement_starts_with(const char *text, const char *words,
                                    const char **after_out)
{
    const char *pos = skip_space(text);

    while (*words != '\0') {
        size_t word_len = strcspn(words, " ");

        if (strncasecmp(pos, words, word_len) != 0 ||
            isalnum((unsigned char)pos[word_len]) || pos[word_len] == '_') {
            return false;
        }
        pos = skip_space(pos + word_len);
        words += word_len;
        while (*words == ' ') {
            words++;
        }
    }
    *after_out = pos;
    return true;
}

static bool starts_with(const char *text, const char *words)
{
    const char *after;

    return rkv_sql__statement_starts_with(text, words, &after);
}

/* ---- result events ------------------------------------------------------- */

static int send_columns(rkv_sql_event_cb cb, void *data, size_t n_columns,
                        const char *const *names, const uint32_t *type_oids)
{
    struct rkv_sql_event event = {
        .kind = RKV_SQL_EVENT_COLUMNS,
        .n_columns = n_columns,
        .names = names,
        .type_oids = type_oids,
    };

    return cb(data, &event);
}

/* Sends a row of NUL-terminated text values (NULL entries for SQL NULL). */
static int send_text_row(rkv_sql_event_cb cb, void *data, size_t n_columns,
                         const char *const *values)
{
    size_t lens[RKV_SQL_COLUMNS_MAX];
    struct rkv_sql_event event = {
        .kind = RKV_SQL_EVENT_ROW,
        .n_columns = n_columns,
        .values = values,
        .value_lens = lens,
    };

    assert(n_columns <= RKV_SQL_COLUMNS_MAX);
    for (size_t i = 0; i < n_columns; i++) {
        lens[i] = values[i] != NULL ? strlen(values[i]) : 0;
    }
    return cb(data, &event);
}

static int send_complete(rkv_sql_event_cb cb, void *data, const char *tag)
{
    struct rkv_sql_event event = {
        .kind = RKV_SQL_EVENT_COMPLETE,
        .command_tag = tag,
    };
    int rv = cb(data, &event);

    return RKV_MIN(rv, 0);
}

/* ---- values as PostgreSQL text ------------------------------------------- */

/* Prints a double in the fewest digits that read back to the same value,
 * as PostgreSQL 12 and later print float8. */
static char *format_real(double value)
{
    char text[40];

    if (isinf(value)) {
        return sqlite3_mprintf("%s", value > 0 ? "Infinity" : "-Infinity");
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, sizeof(text), "%.*g", digits, value);
        if (strtod(text, NULL) == value) {
            break;
        }
    }
    return sqlite3_mprintf("%s", text);
}

char *rkv_sql__value_text(sqlite3_value *value, size_t *len_out)
{
    char *text = NULL;

    switch (sqlite3_value_type(value)) {
    case SQLITE_NULL:
        *len_out = 0;
        return NULL;
    case SQLITE_INTEGER:
        text = sqlite3_mprintf("%lld", sqlite3_value_int64(value));
        break;
    case SQLITE_FLOAT:
        text = format_real(sqlite3_value_double(value));
        break;
    case SQLITE_BLOB: {
        const uint8_t *bytes = sqlite3_value_blob(value);
        int len = sqlite3_value_bytes(value);
        sqlite3_str *hex = sqlite3_str_new(NULL);

        sqlite3_str_appendall(hex, "\\x");
        for (int i = 0; i < len; i++) {
            sqlite3_str_appendf(hex, "%02x", bytes[i]);
        }
        text = sqlite3_str_finish(hex);
        break;
    }
    default: {
        const unsigned char *bytes = sqlite3_value_text(value);
        int len = sqlite3_value_bytes(value);

        text = sqlite3_malloc(len + 1);
        if (text != NULL) {
            memcpy(text, bytes, (size_t)len);
            text[len] = '\0';
        }
        *len_out = (size_t)len;
        return text;
    }
    }
    *len_out = text != NULL ? strlen(text) : 0;
    return text;
}

/* Picks the PostgreSQL type of a result column from its declared type's
 * affinity, or else from the first row's value. */
static uint32_t column_type_oid(sqlite3_stmt *stmt, int column, bool has_row)
{
    const char *decl_type = sqlite3_column_decltype(stmt, column);
    int type;

    if (decl_type != NULL) {
        switch (rkv_sql__affinity_of(decl_type)) {
        case RKV_SQL_AFF_INTEGER:
            return RKV_SQL_OID_INT8;
        case RKV_SQL_AFF_REAL:
            return RKV_SQL_OID_FLOAT8;
        case RKV_SQL_AFF_TEXT:
            return RKV_SQL_OID_TEXT;
        default:
            break;
        }
    }
    type = has_row ? sqlite3_column_type(stmt, column) : SQLITE_TEXT;
    switch (type) {
    case SQLITE_INTEGER:
        return RKV_SQL_OID_INT8;
    case SQLITE_FLOAT:
        return RKV_SQL_OID_FLOAT8;
    case SQLITE_BLOB:
        return RKV_SQL_OID_BYTEA;
    default:
        return RKV_SQL_OID_TEXT;
    }
}

static int step_send_columns(sqlite3_stmt *stmt, bool has_row,
                             rkv_sql_event_cb cb, void *data)
{
    const char *names[RKV_SQL_COLUMNS_MAX];
    uint32_t oids[RKV_SQL_COLUMNS_MAX];
    int n_columns = sqlite3_column_count(stmt);

    if (n_columns > RKV_SQL_COLUMNS_MAX) {
        return -E2BIG;
    }
    for (int i = 0; i < n_columns; i++) {
        names[i] = sqlite3_column_name(stmt, i);
        oids[i] = column_type_oid(stmt, i, has_row);
    }
    return send_columns(cb, data, (size_t)n_columns, names, oids);
}

static int step_send_row(sqlite3_stmt *stmt, rkv_sql_event_cb cb, void *data)
{
    char *values[RKV_SQL_COLUMNS_MAX];
    size_t lens[RKV_SQL_COLUMNS_MAX];
    int n_columns = sqlite3_column_count(stmt);
    struct rkv_sql_event event = {
        .kind = RKV_SQL_EVENT_ROW,
        .n_columns = (size_t)n_columns,
        .values = (const char *const *)values,
        .value_lens = lens,
    };
    int rv = 0;

    for (int i = 0; i < n_columns; i++) {
        sqlite3_value *value = sqlite3_column_value(stmt, i);

        values[i] = rkv_sql__value_text(value, &lens[i]);
        if (values[i] == NULL && sqlite3_value_type(value) != SQLITE_NULL) {
            rv = -ENOMEM;
        }
    }
    if (rv == 0) {
        rv = cb(data, &event);
    }
    for (int i = 0; i < n_columns; i++) {
        sqlite3_free(values[i]);
    }
    return rv;
}

/* Builds PostgreSQL's command tag for a finished statement. */
static void step_command_tag(struct rkv_sql_session *session,
                             sqlite3_stmt *stmt, const char *text,
                             uint64_t n_rows, char *tag, size_t tag_len)
{
    sqlite3 *db = sqlite3_db_handle(stmt);
    long long changes = sqlite3_changes64(db);
    const char *word = skip_space(text);
    size_t word_len = 0;

    if (session->write_action == SQLITE_INSERT) {
        snprintf(tag, tag_len, "INSERT 0 %lld", changes);
    } else if (session->write_action == SQLITE_UPDATE) {
        snprintf(tag, tag_len, "UPDATE %lld", changes);
    } else if (session->write_action == SQLITE_DELETE &&
               !starts_with(text, "DROP")) {
        snprintf(tag, tag_len, "DELETE %lld", changes);
    } else if (sqlite3_column_count(stmt) > 0) {
        snprintf(tag, tag_len, "SELECT %llu", (unsigned long long)n_rows);
    } else if (starts_with(text, "DROP TABLE")) {
        snprintf(tag, tag_len, "DROP TABLE");
    } else {
        while (isalpha((unsigned char)word[word_len]) && word_len < 16) {
            word_len++;
        }
        snprintf(tag, tag_len, "%.*s", (int)word_len, word);
        for (char *c = tag; *c != '\0'; c++) {
            *c = (char)toupper((unsigned char)*c);
        }
    }
}

/* Records SQLite's error for a failed step unless the virtual table
 * already set a more precise one. */
static void step_set_error(struct rkv_sql_session *session, sqlite3_stmt *stmt)
{
    sqlite3 *db = sqlite3_db_handle(stmt);
    int code = sqlite3_extended_errcode(db);

    if (code == SQLITE_CONSTRAINT_NOTNULL) {
        rkv_sql__session_set_error(session, "23502", "%s", sqlite3_errmsg(db));
    } else if ((code & 0xff) == SQLITE_CONSTRAINT) {
        rkv_sql__session_set_error(session, "23000", "%s", sqlite3_errmsg(db));
    } else if (code == SQLITE_TOOBIG) {
        rkv_sql__session_set_error(session, "54000", "%s", sqlite3_errmsg(db));
    } else {
        rkv_sql__session_set_error(session, "XX000", "%s", sqlite3_errmsg(db));
    }
}

int rkv_sql__statement_step(struct rkv_sql_session *session, sqlite3_stmt *stmt,
                            const char *text, rkv_sql_event_cb cb, void *data)
{
    bool has_columns = sqlite3_column_count(stmt) > 0;
    uint64_t n_rows = 0;
    char tag[64];
    int rc;
    int rv = 0;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n_rows == 0) {
            rv = step_send_columns(stmt, true, cb, data);
        }
        if (rv == 0) {
            rv = step_send_row(stmt, cb, data);
        }
        if (rv != 0) {
            return rv;
        }
        n_rows++;
    }
    if (rc != SQLITE_DONE) {
        step_set_error(session, stmt);
        return rkv_sql__session_send_error(session, cb, data);
    }
    if (has_columns && n_rows == 0) {
        rv = step_send_columns(stmt, false, cb, data);
        if (rv != 0) {
            return rv;
        }
    }
    if (rkv_sql__session_flush(session) != 0) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    step_command_tag(session, stmt, text, n_rows, tag, sizeof(tag));
    return send_complete(cb, data, tag);
}

/* ---- CREATE TABLE -------------------------------------------------------- */

/* Tells whether a CREATE TABLE statement has IF NOT EXISTS. */
static bool create_has_if_not_exists(const char *text)
{
    const char *after;

    if (!rkv_sql__statement_starts_with(text, "CREATE", &after)) {
        return false;
    }
    if (starts_with(after, "TEMP") || starts_with(after, "TEMPORARY")) {
        return false;
    }
    return starts_with(after, "TABLE IF NOT EXISTS");
}

/* Lets SQLite build the table in a throwaway database and describes it. */
static int create_describe(struct rkv_sql_session *session, const char *text,
                           const char *name, struct rkv_sql_table **out)
{
    char message[256] = "";
    sqlite3 *scratch = NULL;
    char *error = NULL;
    int rv;

    if (sqlite3_open(":memory:", &scratch) != SQLITE_OK) {
        sqlite3_close(scratch);
        rkv_sql__session_set_error(session, "53200",
                                   "opening a scratch database failed");
        return RKV_ESQL;
    }
    if (sqlite3_exec(scratch, text, NULL, NULL, &error) != SQLITE_OK) {
        rkv_sql__session_set_error(session, "42601", "%s",
                                   error != NULL ? error : "failed");
        sqlite3_free(error);
        sqlite3_close(scratch);
        return RKV_ESQL;
    }
    rv = rkv_sql__table_from_sqlite(scratch, name, out, message,
                                    sizeof(message));
    sqlite3_close(scratch);
    if (rv == -EINVAL) {
        rkv_sql__session_set_error(session, "0A000", "%s", message);
    } else if (rv != 0) {
        rkv_sql__session_set_kv_error(session, rv, "describing the table",
                                      message);
    }
    return rv;
}

int rkv_sql__statement_create_table(struct rkv_sql_session *session,
                                    const char *text, rkv_sql_event_cb cb,
                                    void *data)
{
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    struct rkv_sql_table *table = NULL;
    bool if_not_exists = create_has_if_not_exists(text);
    int rv;

    rv = create_describe(session, text, session->create_table_name, &table);
    if (rv != 0) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    rv = rkv_sql__catalog_create(session->kv, table, message);
    if (rv == RKV_ECONDFAILED && !if_not_exists) {
        rkv_sql__session_set_error(
            session, "42P07", "relation \"%s\" already exists", table->name);
    } else if (rv != 0 && rv != RKV_ECONDFAILED) {
        rkv_sql__session_set_kv_error(session, rv, "creating the table",
                                      message);
    }
    rkv_sql__table_free(table);
    if (rv == 0) {
        rv = rkv_sql__session_sync_catalog(session);
    }
    if (session->has_error) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    return send_complete(cb, data, "CREATE TABLE");
}

/* ---- SHOW and EXPLAIN ---------------------------------------------------- */

/* Finds an attached table's id by name, ignoring ASCII case. */
static bool find_table_id(struct rkv_sql_session *session, const char *name,
                          uint64_t *table_id)
{
    for (size_t i = 0; i < session->n_attached; i++) {
        if (strcasecmp(session->attached[i].name, name) == 0) {
            *table_id = session->attached[i].table_id;
            return true;
        }
    }
    return false;
}

/* Tells whether a range overlaps [start, end), an empty end meaning the
 * keyspace end. */
static bool range_overlaps(const struct rkv_sql_kv_range *range,
                           const uint8_t *start, size_t start_len,
                           const uint8_t *end, size_t end_len)
{
    bool starts_before_end =
        end_len == 0 ||
        rkv_sql__key_compare(range->start_key, range->start_key_len, end,
                             end_len) < 0;
    bool ends_after_start =
        range->end_key_len == 0 ||
        rkv_sql__key_compare(range->end_key, range->end_key_len, start,
                             start_len) > 0;

    return starts_before_end && ends_after_start;
}

static int list_ranges(struct rkv_sql_session *session,
                       struct rkv_sql_kv_range **ranges, size_t *n_ranges)
{
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    struct rkv_sql_kv *kv = session->kv;
    int rv = kv->vtable->ranges(kv, ranges, n_ranges, message);

    if (rv != 0) {
        rkv_sql__session_set_kv_error(session, rv, "listing ranges", message);
    }
    return rv;
}

static int show_ranges_row(const struct rkv_sql_kv_range *range,
                           rkv_sql_event_cb cb, void *data)
{
    char numbers[4][24];
    char start[KEY_TEXT_MAX];
    char end[KEY_TEXT_MAX];
    char replicas[8 * 24 + 2] = "{";
    const char *values[7];

    for (size_t i = 0; i < range->n_replicas && i < 8; i++) {
        size_t used = strlen(replicas);

        snprintf(replicas + used, sizeof(replicas) - used, "%s%llu",
                 i > 0 ? "," : "",
                 (unsigned long long)range->replica_node_ids[i]);
    }
    strcat(replicas, "}");
    rkv_sql__key_format(range->start_key, range->start_key_len, false, start,
                        sizeof(start));
    rkv_sql__key_format(range->end_key, range->end_key_len, true, end,
                        sizeof(end));
    snprintf(numbers[0], 24, "%llu", (unsigned long long)range->range_id);
    snprintf(numbers[1], 24, "%llu", (unsigned long long)range->leader_node_id);
    snprintf(numbers[2], 24, "%llu", (unsigned long long)range->live_bytes);
    snprintf(numbers[3], 24, "%llu", (unsigned long long)range->key_count);
    values[0] = numbers[0];
    values[1] = start;
    values[2] = end;
    values[3] = range->leader_node_id != 0 ? numbers[1] : NULL;
    values[4] = replicas;
    values[5] = numbers[2];
    values[6] = numbers[3];
    return send_text_row(cb, data, 7, values);
}

static int show_ranges(struct rkv_sql_session *session, const char *name,
                       rkv_sql_event_cb cb, void *data)
{
    static const char *const names[7] = {
        "range_id", "start_key",  "end_key",  "leader_node_id",
        "replicas", "live_bytes", "key_count"};
    static const uint32_t oids[7] = {
        RKV_SQL_OID_INT8, RKV_SQL_OID_TEXT, RKV_SQL_OID_TEXT, RKV_SQL_OID_INT8,
        RKV_SQL_OID_TEXT, RKV_SQL_OID_INT8, RKV_SQL_OID_INT8};
    struct rkv_sql_buf start = {0};
    struct rkv_sql_buf end = {0};
    struct rkv_sql_kv_range *ranges = NULL;
    size_t n_ranges = 0;
    uint64_t table_id;
    uint64_t n_rows = 0;
    char tag[32];
    int rv;

    if (!find_table_id(session, name, &table_id)) {
        rkv_sql__session_set_error(session, "42P01",
                                   "relation \"%s\" does not exist", name);
        return rkv_sql__session_send_error(session, cb, data);
    }
    rv = list_ranges(session, &ranges, &n_ranges);
    if (rv != 0) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    rv = rkv_sql__key_append_prefix(&start, table_id, 0);
    if (rv == 0) {
        rv = rkv_sql__key_append_prefix(&end, table_id + 1, 0);
    }
    if (rv == 0) {
        rv = send_columns(cb, data, 7, names, oids);
    }
    for (size_t i = 0; rv == 0 && i < n_ranges; i++) {
        if (range_overlaps(&ranges[i], start.data, start.len, end.data,
                           end.len)) {
            rv = show_ranges_row(&ranges[i], cb, data);
            n_rows++;
        }
    }
    rkv_sql_kv_ranges_free(ranges, n_ranges);
    rkv_sql__buf_free(&start);
    rkv_sql__buf_free(&end);
    if (rv != 0) {
        return rv;
    }
    snprintf(tag, sizeof(tag), "SELECT %llu", (unsigned long long)n_rows);
    return send_complete(cb, data, tag);
}

static int show_tables(struct rkv_sql_session *session, rkv_sql_event_cb cb,
                       void *data)
{
    static const char *const names[2] = {"table_name", "table_id"};
    static const uint32_t oids[2] = {RKV_SQL_OID_TEXT, RKV_SQL_OID_INT8};
    char tag[32];
    int rv;

    rv = send_columns(cb, data, 2, names, oids);
    for (size_t i = 0; rv == 0 && i < session->n_attached; i++) {
        char id[24];
        const char *values[2] = {session->attached[i].name, id};

        snprintf(id, sizeof(id), "%llu",
                 (unsigned long long)session->attached[i].table_id);
        rv = send_text_row(cb, data, 2, values);
    }
    if (rv != 0) {
        return rv;
    }
    snprintf(tag, sizeof(tag), "SELECT %zu", session->n_attached);
    return send_complete(cb, data, tag);
}

/* An EXPLAIN output being built: one text column of lines. */
struct explain_output {
    rkv_sql_event_cb cb;
    void *data;
    uint64_t n_lines;
    uint64_t touched[RKV_SQL_EXPLAIN_SPANS_MAX]; /* distinct range ids */
    size_t n_touched;
};

static int explain_line(struct explain_output *out, const char *line)
{
    const char *values[1] = {line};

    out->n_lines++;
    return send_text_row(out->cb, out->data, 1, values);
}

/* Lists SQLite's query plan for the inner statement. */
static int explain_plan(struct rkv_sql_session *session, const char *inner,
                        struct explain_output *out)
{
    char line[EXPLAIN_LINE_MAX];
    sqlite3_stmt *stmt = NULL;
    char *sql;
    int rv = 0;

    sql = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", inner);
    if (sql == NULL) {
        return -ENOMEM;
    }
    if (sqlite3_prepare_v2(session->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rkv_sql__session_set_error(session, "42601", "%s",
                                   sqlite3_errmsg(session->db));
        sqlite3_free(sql);
        return RKV_ESQL;
    }
    while (rv == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
        snprintf(line, sizeof(line), "plan: %s",
                 (const char *)sqlite3_column_text(stmt, 3));
        rv = explain_line(out, line);
    }
    sqlite3_finalize(stmt);
    sqlite3_free(sql);
    return rv;
}

/* Appends the ids of the ranges a span overlaps to line and to the
 * distinct set. */
static void explain_span_ranges(const struct rkv_sql_span_note *note,
                                const struct rkv_sql_kv_range *ranges,
                                size_t n_ranges, struct explain_output *out,
                                char *line, size_t line_len)
{
    const uint8_t *end = note->is_write ? note->start : note->end;
    size_t end_len = note->is_write ? 0 : note->end_len;
    bool first = true;

    for (size_t i = 0; i < n_ranges; i++) {
        bool known = false;
        size_t used = strlen(line);

        if (note->is_write
                ? i != rkv_sql__range_find(ranges, n_ranges, note->start,
                                           note->start_len)
                : !range_overlaps(&ranges[i], note->start, note->start_len, end,
                                  end_len)) {
            continue;
        }
        snprintf(line + used, line_len - used, "%s%llu", first ? "" : ", ",
                 (unsigned long long)ranges[i].range_id);
        first = false;
        for (size_t j = 0; j < out->n_touched; j++) {
            known = known || out->touched[j] == ranges[i].range_id;
        }
        if (!known && out->n_touched < RKV_SQL_EXPLAIN_SPANS_MAX) {
            out->touched[out->n_touched++] = ranges[i].range_id;
        }
    }
}

static int explain_spans(struct rkv_sql_session *session,
                         const struct rkv_sql_kv_range *ranges, size_t n_ranges,
                         struct explain_output *out)
{
    char line[EXPLAIN_LINE_MAX];
    char start[KEY_TEXT_MAX];
    char end[KEY_TEXT_MAX];
    int rv = 0;

    for (size_t i = 0; rv == 0 && i < session->n_spans; i++) {
        const struct rkv_sql_span_note *note = &session->spans[i];

        rkv_sql__key_format(note->start, note->start_len, false, start,
                            sizeof(start));
        rkv_sql__key_format(note->end, note->end_len, true, end, sizeof(end));
        if (note->is_write) {
            snprintf(line, sizeof(line),
                     "write %s: %s ranges: ", note->table_name, start);
        } else {
            snprintf(line, sizeof(line),
                     "scan %s: [%s, %s) ranges: ", note->table_name, start,
                     end);
        }
        explain_span_ranges(note, ranges, n_ranges, out, line, sizeof(line));
        rv = explain_line(out, line);
    }
    if (rv == 0 && session->n_spans_dropped > 0) {
        snprintf(line, sizeof(line), "... %zu more spans",
                 session->n_spans_dropped);
        rv = explain_line(out, line);
    }
    return rv;
}

static int compare_range_ids(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static int explain_touched(struct explain_output *out)
{
    char line[EXPLAIN_LINE_MAX] = "ranges touched: ";

    qsort(out->touched, out->n_touched, sizeof(out->touched[0]),
          compare_range_ids);
    for (size_t i = 0; i < out->n_touched; i++) {
        size_t used = strlen(line);

        snprintf(line + used, sizeof(line) - used, "%s%llu", i > 0 ? ", " : "",
                 (unsigned long long)out->touched[i]);
    }
    if (out->n_touched == 0) {
        strcat(line, "none");
    }
    return explain_line(out, line);
}

/* Runs the inner statement in explain mode, discarding its rows. */
static int explain_run(struct rkv_sql_session *session, const char *inner)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    if (sqlite3_prepare_v2(session->db, inner, -1, &stmt, NULL) != SQLITE_OK) {
        rkv_sql__session_set_error(session, "42601", "%s",
                                   sqlite3_errmsg(session->db));
        return RKV_ESQL;
    }
    if (!sqlite3_stmt_readonly(stmt) && !starts_with(inner, "INSERT") &&
        !starts_with(inner, "REPLACE") && !starts_with(inner, "UPDATE") &&
        !starts_with(inner, "DELETE")) {
        sqlite3_finalize(stmt);
        rkv_sql__session_set_error(session, "0A000",
                                   "EXPLAIN supports SELECT, INSERT, UPDATE "
                                   "and DELETE");
        return RKV_ESQL;
    }
    session->explaining = true;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    session->explaining = false;
    if (rc != SQLITE_DONE) {
        step_set_error(session, stmt);
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : RKV_ESQL;
}

static int explain(struct rkv_sql_session *session, const char *inner,
                   rkv_sql_event_cb cb, void *data)
{
    static const char *const names[1] = {"info"};
    static const uint32_t oids[1] = {RKV_SQL_OID_TEXT};
    struct explain_output out = {.cb = cb, .data = data};
    struct rkv_sql_kv_range *ranges = NULL;
    size_t n_ranges = 0;
    char tag[32];
    int rv;

    /* Nothing is sent before the statement has run, so a failure still
     * produces a lone error. */
    rv = explain_run(session, inner);
    if (rv == 0) {
        rv = list_ranges(session, &ranges, &n_ranges);
    }
    if (rv != 0) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    rv = send_columns(cb, data, 1, names, oids);
    if (rv == 0) {
        rv = explain_plan(session, inner, &out);
    }
    if (rv == 0) {
        rv = explain_spans(session, ranges, n_ranges, &out);
    }
    if (rv == 0) {
        rv = explain_touched(&out);
    }
    rkv_sql_kv_ranges_free(ranges, n_ranges);
    if (rv == RKV_ESQL) {
        return rkv_sql__session_send_error(session, cb, data);
    }
    if (rv != 0) {
        return rv;
    }
    snprintf(tag, sizeof(tag), "SELECT %llu", (unsigned long long)out.n_lines);
    return send_complete(cb, data, tag);
}

/* Copies a possibly quoted identifier at text into name. */
static void read_identifier(const char *text, char *name, size_t name_len)
{
    const char *pos = skip_space(text);
    size_t len;

    if (*pos == '"' || *pos == '`' || *pos == '[') {
        const char *end = skip_quoted(pos);

        len = (size_t)(end - pos);
        len = len >= 2 ? len - 2 : 0;
        pos++;
    } else {
        len = strcspn(pos, " \t\r\n;");
    }
    snprintf(name, name_len, "%.*s", (int)len, pos);
}

static bool is_block_start(const char *text)
{
    return starts_with(text, "BEGIN") || starts_with(text, "START TRANSACTION");
}

/* Tells whether text ends a transaction block; ROLLBACK TO SAVEPOINT does
 * not. */
static bool is_block_end(const char *text)
{
    return starts_with(text, "COMMIT") || starts_with(text, "END") ||
           starts_with(text, "ABORT") ||
           (starts_with(text, "ROLLBACK") && !starts_with(text, "ROLLBACK TO"));
}

static bool is_transaction_control(const char *text)
{
    return is_block_start(text) || starts_with(text, "COMMIT") ||
           starts_with(text, "END") || starts_with(text, "ABORT") ||
           starts_with(text, "ROLLBACK") || starts_with(text, "SAVEPOINT") ||
           starts_with(text, "RELEASE");
}

/* Rejects a transaction control statement. A rejected BEGIN opens a
 * rejected block, so that the statements a client meant to run inside
 * the transaction do not commit one by one. */
static int reject_transaction(struct rkv_sql_session *session, const char *text,
                              rkv_sql_event_cb cb, void *data)
{
    if (is_block_start(text)) {
        session->in_rejected_block = true;
        rkv_sql__session_set_error(
            session, "0A000",
            "transaction blocks are not supported: each statement commits "
            "on its own, atomically within one range; the statements that "
            "follow are rejected until ROLLBACK ends this block");
    } else {
        rkv_sql__session_set_error(
            session, "0A000",
            "transaction blocks are not supported: each statement commits "
            "on its own, atomically within one range");
    }
    return rkv_sql__session_send_error(session, cb, data);
}

/* Runs a statement after a rejected BEGIN: COMMIT, END, ABORT or ROLLBACK
 * end the block with tag ROLLBACK, as PostgreSQL ends a failed block, and
 * any other statement is rejected with 25P02 without running. */
static int run_in_rejected_block(struct rkv_sql_session *session,
                                 const char *text, rkv_sql_event_cb cb,
                                 void *data)
{
    assert(session->in_rejected_block);

    if (is_block_end(text)) {
        session->in_rejected_block = false;
        return send_complete(cb, data, "ROLLBACK");
    }
    rkv_sql__session_set_error(
        session, "25P02",
        "current transaction is aborted, commands ignored until end of "
        "transaction block: BEGIN was rejected, so send ROLLBACK to end the "
        "block");
    return rkv_sql__session_send_error(session, cb, data);
}

int rkv_sql__statement_run_special(struct rkv_sql_session *session,
                                   const char *text, rkv_sql_event_cb cb,
                                   void *data)
{
    char name[RKV_SQL_NAME_MAX + 1];
    const char *after;
    int rv;

    if (session->in_rejected_block) {
        rv = run_in_rejected_block(session, text, cb, data);
        return rv == 0 ? 1 : rv;
    }
    if (rkv_sql__statement_starts_with(text, "UPSERT INTO", &after)) {
        char *rewritten = sqlite3_mprintf("INSERT OR REPLACE INTO %s", after);

        if (rewritten == NULL) {
            return -ENOMEM;
        }
        rv = rkv_sql__session_run_sqlite(session, rewritten, cb, data);
        sqlite3_free(rewritten);
        return rv == 0 ? 1 : rv;
    }
    if (rkv_sql__statement_starts_with(text, "SHOW RANGES FROM TABLE",
                                       &after)) {
        read_identifier(after, name, sizeof(name));
        rv = show_ranges(session, name, cb, data);
        return rv == 0 ? 1 : rv;
    }
    if (starts_with(text, "SHOW TABLES")) {
        rv = show_tables(session, cb, data);
        return rv == 0 ? 1 : rv;
    }
    if (rkv_sql__statement_starts_with(text, "EXPLAIN", &after) &&
        !starts_with(after, "QUERY PLAN")) {
        rv = explain(session, after, cb, data);
        return rv == 0 ? 1 : rv;
    }
    if (is_transaction_control(text)) {
        return reject_transaction(session, text, cb, data);
    }
    return 0;
}
