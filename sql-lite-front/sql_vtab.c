/*
 * The "rangekv" SQLite virtual table module: one instance per catalog
 * table, reading rows with key-span scans and writing into the session's
 * statement buffer.
 *
 * Planning (xBestIndex) is in sql_vtab_plan.c; its plan reaches xFilter
 * as idxStr, one letter per argv entry, and idxNum.
 *
 * Scanning (xFilter): the product of the equality values times the bounds
 * gives a sorted list of non-overlapping key spans, so a query touches only
 * the ranges its spans overlap. No constraint is marked omit: SQLite checks
 * every row again, so a span only has to contain the matching rows. That
 * keeps cross-type comparisons (an INTEGER column against 2.5) correct with
 * superset spans. Rows come in pages that grow from a small first page
 * (or the LIMIT) to RKV_SQL_SCAN_PAGE_MAX.
 *
 * Writing (xUpdate) is in sql_vtab_write.c.
 *
 * Rowids are handles into the session's per-statement table of row keys,
 * because a composite key does not fit SQLite's 64-bit rowid.
 */
#include "sql-lite-front/sql_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* Spans one scan may expand into (IN lists multiply); past it the plan
 * keeps fewer key columns, which gives wider spans, never wrong rows. */
#define RKV_SQL_SPANS_MAX 1024
/* Pairs of the first and of the largest scan page. */
#define RKV_SQL_SCAN_PAGE_FIRST 64
#define RKV_SQL_SCAN_PAGE_MAX 1024

struct span {
    struct rkv_sql_buf start; /* inclusive */
    struct rkv_sql_buf end;   /* exclusive, never empty */
};

struct cursor {
    sqlite3_vtab_cursor base;
    struct span *spans;
    size_t n_spans;
    size_t span_index;
    struct rkv_sql_buf next_start; /* where the current span continues */
    struct rkv_sql_kv_pair *page;
    size_t n_page;
    size_t page_index; /* the row after the current one */
    uint32_t page_len; /* pairs requested for the next page */
    bool page_was_full;
    bool eof;
    struct rkv_sql_datum *row; /* n_columns values of the current row */
};

void rkv_sql__vtab_set_error(struct rkv_sql_vtab *vtab, const char *message)
{
    sqlite3_free(vtab->base.zErrMsg);
    vtab->base.zErrMsg = sqlite3_mprintf("%s", message);
}

/* Copies the session's error into the vtab and returns SQLITE_ERROR. */
static int fail(struct rkv_sql_vtab *vtab)
{
    rkv_sql__vtab_set_error(vtab, vtab->session->message);
    return SQLITE_ERROR;
}

/* ---- affinity ------------------------------------------------------------ */

static void datum_fill(sqlite3_value *value, struct rkv_sql_datum *out)
{
    memset(out, 0, sizeof(*out));
    switch (sqlite3_value_type(value)) {
    case SQLITE_INTEGER:
        out->type = RKV_SQL_INTEGER;
        out->integer = sqlite3_value_int64(value);
        break;
    case SQLITE_FLOAT:
        out->type = RKV_SQL_REAL;
        out->real = sqlite3_value_double(value);
        break;
    case SQLITE_TEXT:
        out->type = RKV_SQL_TEXT;
        out->bytes = sqlite3_value_text(value);
        out->len = (size_t)sqlite3_value_bytes(value);
        break;
    case SQLITE_BLOB:
        out->type = RKV_SQL_BLOB;
        out->bytes = sqlite3_value_blob(value);
        out->len = (size_t)sqlite3_value_bytes(value);
        break;
    default:
        out->type = RKV_SQL_NULL;
        break;
    }
}

void rkv_sql__datum_from_value(sqlite3_value *value,
                               enum rkv_sql_affinity affinity,
                               struct rkv_sql_datum *out)
{
    int type = sqlite3_value_type(value);

    if (affinity == RKV_SQL_AFF_TEXT &&
        (type == SQLITE_INTEGER || type == SQLITE_FLOAT)) {
        memset(out, 0, sizeof(*out));
        out->type = RKV_SQL_TEXT;
        out->bytes = sqlite3_value_text(value);
        out->len = (size_t)sqlite3_value_bytes(value);
        return;
    }
    if ((affinity == RKV_SQL_AFF_INTEGER || affinity == RKV_SQL_AFF_REAL ||
         affinity == RKV_SQL_AFF_NUMERIC) &&
        type == SQLITE_TEXT) {
        sqlite3_value_numeric_type(value); /* converts numeric-looking text */
    }
    datum_fill(value, out);
    if (out->type == RKV_SQL_REAL && affinity != RKV_SQL_AFF_REAL &&
        affinity != RKV_SQL_AFF_TEXT && affinity != RKV_SQL_AFF_BLOB &&
        out->real >= -9223372036854775808.0 &&
        out->real < 9223372036854775808.0 && out->real == floor(out->real)) {
        out->type = RKV_SQL_INTEGER;
        out->integer = (int64_t)out->real;
    }
    if (out->type == RKV_SQL_INTEGER && affinity == RKV_SQL_AFF_REAL) {
        out->type = RKV_SQL_REAL;
        out->real = (double)out->integer;
    }
}

/* ---- connecting ---------------------------------------------------------- */

static int attached_add(struct rkv_sql_session *session,
                        const struct rkv_sql_table *table)
{
    struct rkv_sql_attached *grown;
    char *name = rkv_memdup(table->name, strlen(table->name) + 1);

    grown = rkv_realloc(session->attached,
                        (session->n_attached + 1) * sizeof(*grown));
    if (grown == NULL || name == NULL) {
        session->attached = grown != NULL ? grown : session->attached;
        rkv_free(name);
        return -ENOMEM;
    }
    session->attached = grown;
    grown[session->n_attached].name = name;
    grown[session->n_attached].table_id = table->table_id;
    session->n_attached++;
    return 0;
}

static void attached_remove(struct rkv_sql_session *session, uint64_t table_id)
{
    for (size_t i = 0; i < session->n_attached; i++) {
        if (session->attached[i].table_id != table_id) {
            continue;
        }
        rkv_free(session->attached[i].name);
        memmove(&session->attached[i], &session->attached[i + 1],
                (session->n_attached - i - 1) * sizeof(session->attached[0]));
        session->n_attached--;
        return;
    }
}

static void vtab_free(struct rkv_sql_vtab *vtab)
{
    rkv_sql__table_free(vtab->table);
    rkv_sql__buf_free(&vtab->prefix);
    sqlite3_free(vtab->base.zErrMsg);
    rkv_free(vtab);
}

/* Creates the instance for session->attaching, taking it over. */
static int vtab_connect(sqlite3 *db, void *aux, int argc,
                        const char *const *argv, sqlite3_vtab **out,
                        char **error)
{
    struct rkv_sql_session *session = aux;
    struct rkv_sql_vtab *vtab;
    char *declaration;
    int rc;

    if (session->attaching == NULL) {
        *error = sqlite3_mprintf("rangekv tables are created with CREATE "
                                 "TABLE, not CREATE VIRTUAL TABLE");
        return SQLITE_ERROR;
    }
    vtab = rkv_calloc(1, sizeof(*vtab));
    if (vtab == NULL) {
        return SQLITE_NOMEM;
    }
    vtab->session = session;
    vtab->db = db;
    vtab->table = session->attaching;
    session->attaching = NULL;
    declaration = rkv_sql__table_declaration(vtab->table);
    rc = declaration == NULL ? SQLITE_NOMEM
                             : sqlite3_declare_vtab(db, declaration);
    sqlite3_free(declaration);
    if (rc == SQLITE_OK &&
        (rkv_sql__key_append_prefix(&vtab->prefix, vtab->table->table_id,
                                    RKV_SQL_PRIMARY_INDEX_ID) != 0 ||
         attached_add(session, vtab->table) != 0)) {
        rc = SQLITE_NOMEM;
    }
    if (rc != SQLITE_OK) {
        *error = sqlite3_mprintf("declaring table %s failed: %s",
                                 vtab->table->name, sqlite3_errmsg(db));
        vtab_free(vtab);
        return rc;
    }
    *out = &vtab->base;
    return SQLITE_OK;
}

static int vtab_disconnect(sqlite3_vtab *base)
{
    vtab_free((struct rkv_sql_vtab *)base);
    return SQLITE_OK;
}

/* DROP TABLE: removes the catalog entry and the rows, unless the session
 * is only detaching a table that another session dropped. */
static int vtab_destroy(sqlite3_vtab *base)
{
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base;
    struct rkv_sql_session *session = vtab->session;
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    int rv = 0;

    if (!session->detaching) {
        rv = rkv_sql__catalog_drop(session->kv, vtab->table, message);
    }
    if (rv != 0 && rv != RKV_ENOTFOUND) {
        rkv_sql__session_set_kv_error(session, rv, "dropping the table",
                                      message);
        return fail(vtab);
    }
    attached_remove(session, vtab->table->table_id);
    vtab_free(vtab);
    return SQLITE_OK;
}

/* ---- spans --------------------------------------------------------------- */

static void spans_free(struct span *spans, size_t n_spans)
{
    for (size_t i = 0; i < n_spans; i++) {
        rkv_sql__buf_free(&spans[i].start);
        rkv_sql__buf_free(&spans[i].end);
    }
    rkv_free(spans);
}

/* Key prefixes being built: the product of equality values so far. */
struct prefixes {
    struct rkv_sql_buf *keys;
    size_t n_keys;
};

static void prefixes_free(struct prefixes *prefixes)
{
    for (size_t i = 0; i < prefixes->n_keys; i++) {
        rkv_sql__buf_free(&prefixes->keys[i]);
    }
    rkv_free(prefixes->keys);
    prefixes->keys = NULL;
    prefixes->n_keys = 0;
}

/* Encodes the values of an "=" or IN argument, converted to the column's
 * affinity, into fragments; NULLs are left out because they match
 * nothing. IN values are encoded at once because each one is valid only
 * until the next is fetched. Returns -E2BIG past fragments_max. */
static int collect_values(sqlite3_value *arg, bool is_in,
                          const struct rkv_sql_column *column,
                          struct rkv_sql_buf *fragments, size_t fragments_max,
                          size_t *n_fragments)
{
    sqlite3_value *value = arg;
    int rc = SQLITE_OK;
    int rv = 0;

    *n_fragments = 0;
    if (is_in) {
        rc = sqlite3_vtab_in_first(arg, &value);
    }
    while (rv == 0 && rc == SQLITE_OK && value != NULL) {
        struct rkv_sql_datum datum;

        rkv_sql__datum_from_value(value, column->affinity, &datum);
        if (datum.type != RKV_SQL_NULL && *n_fragments == fragments_max) {
            return -E2BIG;
        }
        if (datum.type != RKV_SQL_NULL) {
            rv = rkv_sql__key_append_datum(&fragments[(*n_fragments)++], &datum,
                                           column->descending);
        }
        if (!is_in) {
            break;
        }
        rc = sqlite3_vtab_in_next(arg, &value);
    }
    if (rv != 0) {
        return rv;
    }
    return rc == SQLITE_OK || rc == SQLITE_DONE ? 0 : RKV_ESQL;
}

/* Extends every prefix by each fragment; -E2BIG when the product would
 * pass RKV_SQL_SPANS_MAX, leaving prefixes as they were. */
static int prefixes_extend(struct prefixes *prefixes,
                           const struct rkv_sql_buf *fragments,
                           size_t n_fragments)
{
    struct prefixes next = {0};
    int rv = 0;

    if (prefixes->n_keys * n_fragments > RKV_SQL_SPANS_MAX) {
        return -E2BIG;
    }
    next.keys = rkv_calloc(RKV_MAX(prefixes->n_keys * n_fragments, (size_t)1),
                           sizeof(*next.keys));
    if (next.keys == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; rv == 0 && i < prefixes->n_keys; i++) {
        for (size_t j = 0; rv == 0 && j < n_fragments; j++) {
            struct rkv_sql_buf *key = &next.keys[next.n_keys++];

            rv = rkv_sql__buf_append(key, prefixes->keys[i].data,
                                     prefixes->keys[i].len);
            if (rv == 0) {
                rv = rkv_sql__buf_append(key, fragments[j].data,
                                         fragments[j].len);
            }
        }
    }
    if (rv != 0) {
        prefixes_free(&next);
        return rv;
    }
    prefixes_free(prefixes);
    *prefixes = next;
    return 0;
}

/* One bound of the range column, as a key: the bound value encoded and
 * whether the span includes keys that start with it. */
struct bound {
    bool present;
    bool empty; /* the bound excludes every row */
    struct rkv_sql_datum value;
    bool inclusive;
};

/* Turns a lower (is_lower) or upper SQL bound into a superset bound on
 * the stored storage class of the column (see the file comment). */
static void bound_adjust(struct bound *bound, enum rkv_sql_affinity affinity,
                         bool is_lower)
{
    double real = bound->value.real;

    if (bound->value.type == RKV_SQL_NULL) {
        bound->empty = true;
        return;
    }
    if (bound->value.type != RKV_SQL_REAL) {
        return;
    }
    if (affinity == RKV_SQL_AFF_INTEGER) {
        double edge = is_lower ? ceil(real) : floor(real);

        if (edge >= 9223372036854775808.0) {
            bound->empty = is_lower;
            bound->present = !is_lower ? false : bound->present;
            return;
        }
        if (edge < -9223372036854775808.0) {
            bound->empty = !is_lower;
            bound->present = is_lower ? false : bound->present;
            return;
        }
        bound->value.type = RKV_SQL_INTEGER;
        bound->value.integer = (int64_t)edge;
        bound->inclusive = true;
        return;
    }
    if (affinity == RKV_SQL_AFF_REAL) {
        /* An integer bound was rounded when it became REAL; widen by one
         * unit in the last place so the rounding cannot drop a row. */
        bound->value.real = nextafter(real, is_lower ? -INFINITY : INFINITY);
        bound->inclusive = true;
    }
}

/* Appends the encoded bound to a copy of prefix, past it when the bound
 * covers every key starting with the value. */
static int bound_key(const struct rkv_sql_buf *prefix,
                     const struct bound *bound, bool descending,
                     bool past_value, struct rkv_sql_buf *out)
{
    int rv = rkv_sql__buf_append(out, prefix->data, prefix->len);

    if (rv == 0) {
        rv = rkv_sql__key_append_datum(out, &bound->value, descending);
    }
    if (rv == 0 && past_value) {
        rkv_sql__key_prefix_end(out);
    }
    return rv;
}

/* Builds the span of one prefix with the range column's bounds. On a DESC
 * column the SQL lower bound limits the end of the key span. */
static int span_build(const struct rkv_sql_buf *prefix,
                      const struct bound *lower, const struct bound *upper,
                      bool descending, struct span *span)
{
    const struct bound *start_bound = descending ? upper : lower;
    const struct bound *end_bound = descending ? lower : upper;
    int rv;

    if (start_bound->present) {
        /* Skip the keys equal to the value unless they are included. */
        rv = bound_key(prefix, start_bound, descending, !start_bound->inclusive,
                       &span->start);
    } else {
        rv = rkv_sql__buf_append(&span->start, prefix->data, prefix->len);
    }
    if (rv != 0) {
        return rv;
    }
    if (end_bound->present) {
        return bound_key(prefix, end_bound, descending, end_bound->inclusive,
                         &span->end);
    }
    rv = rkv_sql__buf_append(&span->end, prefix->data, prefix->len);
    rkv_sql__key_prefix_end(&span->end);
    return rv;
}

static int compare_spans(const void *a, const void *b)
{
    const struct span *x = a;
    const struct span *y = b;

    return rkv_sql__key_compare(x->start.data, x->start.len, y->start.data,
                                y->start.len);
}

/* Sorts spans, drops empty ones and merges overlapping ones (IN lists may
 * repeat a value), so the scan returns rows once and in key order. */
static void spans_normalize(struct span *spans, size_t *n_spans)
{
    size_t kept = 0;

    qsort(spans, *n_spans, sizeof(*spans), compare_spans);
    for (size_t i = 0; i < *n_spans; i++) {
        bool empty =
            rkv_sql__key_compare(spans[i].start.data, spans[i].start.len,
                                 spans[i].end.data, spans[i].end.len) >= 0;
        bool duplicate =
            kept > 0 && rkv_sql__key_compare(
                            spans[kept - 1].end.data, spans[kept - 1].end.len,
                            spans[i].start.data, spans[i].start.len) > 0;

        if (duplicate &&
            rkv_sql__key_compare(spans[i].end.data, spans[i].end.len,
                                 spans[kept - 1].end.data,
                                 spans[kept - 1].end.len) > 0) {
            struct rkv_sql_buf end = spans[kept - 1].end;

            spans[kept - 1].end = spans[i].end;
            spans[i].end = end;
        }
        if (empty || duplicate) {
            rkv_sql__buf_free(&spans[i].start);
            rkv_sql__buf_free(&spans[i].end);
            continue;
        }
        spans[kept++] = spans[i];
    }
    *n_spans = kept;
}

/* ---- scanning ------------------------------------------------------------ */

/* The arguments of a plan once read in xFilter. */
struct filter_args {
    struct prefixes prefixes;
    struct bound lower;
    struct bound upper;
    bool match_none;  /* an "=" or IN had only NULLs */
    bool prefix_cut;  /* too many spans: later key columns are not used */
    int64_t row_hint; /* LIMIT plus OFFSET when known, else 0 */
};

/* Reads the "=" and IN arguments into the prefix product. */
static int filter_read_equalities(struct rkv_sql_vtab *vtab, const char *plan,
                                  sqlite3_value **argv, size_t *arg,
                                  struct filter_args *args)
{
    const struct rkv_sql_table *table = vtab->table;
    struct rkv_sql_buf *fragments;
    int rv = 0;

    fragments = rkv_calloc(RKV_SQL_SPANS_MAX, sizeof(*fragments));
    if (fragments == NULL) {
        return -ENOMEM;
    }
    for (size_t p = 0; plan[*arg] == 'e' || plan[*arg] == 'i'; p++) {
        const struct rkv_sql_column *column =
            &table->columns[table->key_columns[p]];
        size_t n_fragments = 0;

        rv = collect_values(argv[*arg], plan[*arg] == 'i', column, fragments,
                            RKV_SQL_SPANS_MAX, &n_fragments);
        (*arg)++;
        if (rv == 0 && n_fragments == 0) {
            args->match_none = true;
        }
        if (rv == 0 && !args->prefix_cut) {
            rv = prefixes_extend(&args->prefixes, fragments, n_fragments);
        }
        if (rv == -E2BIG) {
            args->prefix_cut = true;
            rv = 0;
        }
        for (size_t i = 0; i < RKV_SQL_SPANS_MAX; i++) {
            fragments[i].len = 0;
        }
        if (rv != 0) {
            break;
        }
    }
    for (size_t i = 0; i < RKV_SQL_SPANS_MAX; i++) {
        rkv_sql__buf_free(&fragments[i]);
    }
    rkv_free(fragments);
    return rv;
}

/* Reads bounds, LIMIT and OFFSET. */
static void filter_read_rest(struct rkv_sql_vtab *vtab, const char *plan,
                             sqlite3_value **argv, size_t arg, int n_eq,
                             struct filter_args *args)
{
    const struct rkv_sql_table *table = vtab->table;
    enum rkv_sql_affinity affinity = RKV_SQL_AFF_BLOB;
    int64_t limit = 0;
    int64_t offset = 0;

    if ((size_t)n_eq < table->n_key_columns) {
        affinity = table->columns[table->key_columns[n_eq]].affinity;
    }
    for (; plan[arg] != '\0'; arg++) {
        char letter = plan[arg];
        bool is_lower = letter == 'g' || letter == 'G';
        struct bound *bound = is_lower ? &args->lower : &args->upper;

        if (letter == 'n') {
            limit = sqlite3_value_int64(argv[arg]);
            continue;
        }
        if (letter == 'o') {
            offset = sqlite3_value_int64(argv[arg]);
            continue;
        }
        bound->present = true;
        bound->inclusive = letter == 'G' || letter == 'L';
        rkv_sql__datum_from_value(argv[arg], affinity, &bound->value);
        bound_adjust(bound, affinity, is_lower);
    }
    if (limit > 0 && offset >= 0 && limit <= INT32_MAX && offset <= INT32_MAX) {
        args->row_hint = limit + offset;
    }
    if (args->prefix_cut) {
        args->lower.present = false;
        args->upper.present = false;
        args->lower.empty = false;
        args->upper.empty = false;
    }
}

static int filter_build_spans(struct rkv_sql_vtab *vtab, struct cursor *cursor,
                              int n_eq, struct filter_args *args)
{
    const struct rkv_sql_table *table = vtab->table;
    bool descending = false;

    if (args->match_none || args->lower.empty || args->upper.empty) {
        return 0;
    }
    /* Bounds apply to the key column after the equality prefix; they are
     * dropped when the prefix was cut short. */
    if ((size_t)n_eq < table->n_key_columns) {
        descending = table->columns[table->key_columns[n_eq]].descending;
    }
    cursor->spans = rkv_calloc(args->prefixes.n_keys, sizeof(*cursor->spans));
    if (cursor->spans == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < args->prefixes.n_keys; i++) {
        int rv = span_build(&args->prefixes.keys[i], &args->lower, &args->upper,
                            descending, &cursor->spans[cursor->n_spans]);

        cursor->n_spans++;
        if (rv != 0) {
            return rv;
        }
    }
    spans_normalize(cursor->spans, &cursor->n_spans);
    return 0;
}

static void cursor_clear_row(struct cursor *cursor, size_t n_columns)
{
    for (size_t i = 0; i < n_columns; i++) {
        rkv_sql__datum_clear(&cursor->row[i]);
    }
}

static void cursor_reset(struct cursor *cursor, size_t n_columns)
{
    cursor_clear_row(cursor, n_columns);
    rkv_sql_kv_pairs_free(cursor->page, cursor->n_page);
    cursor->page = NULL;
    cursor->n_page = 0;
    cursor->page_index = 0;
    spans_free(cursor->spans, cursor->n_spans);
    cursor->spans = NULL;
    cursor->n_spans = 0;
    cursor->span_index = 0;
    cursor->next_start.len = 0;
    cursor->eof = true;
}

static int vtab_open(sqlite3_vtab *base, sqlite3_vtab_cursor **out)
{
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base;
    struct cursor *cursor = rkv_calloc(1, sizeof(*cursor));

    if (cursor == NULL) {
        return SQLITE_NOMEM;
    }
    cursor->row = rkv_calloc(vtab->table->n_columns, sizeof(*cursor->row));
    if (cursor->row == NULL) {
        rkv_free(cursor);
        return SQLITE_NOMEM;
    }
    cursor->eof = true;
    *out = &cursor->base;
    return SQLITE_OK;
}

static int vtab_close(sqlite3_vtab_cursor *base)
{
    struct cursor *cursor = (struct cursor *)base;
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base->pVtab;

    cursor_reset(cursor, vtab->table->n_columns);
    rkv_sql__buf_free(&cursor->next_start);
    rkv_free(cursor->row);
    rkv_free(cursor);
    return SQLITE_OK;
}

/* Reads the next page of the current span from cursor->next_start. */
static int cursor_fetch(struct cursor *cursor, struct rkv_sql_vtab *vtab)
{
    struct rkv_sql_kv *kv = rkv_sql__session_kv(vtab->session);
    const struct span *span = &cursor->spans[cursor->span_index];
    char message[RKV_SQL_KV_MESSAGE_MAX] = "";
    int rv;

    rkv_sql_kv_pairs_free(cursor->page, cursor->n_page);
    cursor->page = NULL;
    cursor->n_page = 0;
    cursor->page_index = 0;
    rv = kv->vtable->scan(kv, cursor->next_start.data, cursor->next_start.len,
                          span->end.data, span->end.len, cursor->page_len,
                          &cursor->page, &cursor->n_page, message);
    if (rv != 0) {
        rkv_sql__session_set_kv_error(vtab->session, rv, "scanning", message);
        return rv;
    }
    cursor->page_was_full = cursor->n_page == cursor->page_len;
    cursor->page_len = RKV_MIN(cursor->page_len * 2, RKV_SQL_SCAN_PAGE_MAX);
    return 0;
}

/* Decodes a stored pair into cursor->row. */
static int cursor_decode(struct cursor *cursor, struct rkv_sql_vtab *vtab,
                         const struct rkv_sql_kv_pair *pair)
{
    const struct rkv_sql_table *table = vtab->table;
    const uint8_t *pos = pair->key + vtab->prefix.len;
    const uint8_t *end = pair->key + pair->key_len;
    int rv;

    cursor_clear_row(cursor, table->n_columns);
    if (pair->key_len < vtab->prefix.len ||
        memcmp(pair->key, vtab->prefix.data, vtab->prefix.len) != 0) {
        return RKV_ECORRUPT;
    }
    rv = rkv_sql__row_decode(pair->value, pair->value_len, table->n_columns,
                             cursor->row);
    for (size_t p = 0; rv == 0 && p < table->n_key_columns; p++) {
        uint32_t column = table->key_columns[p];

        rv = rkv_sql__key_decode_datum(
            &pos, end, table->columns[column].descending, &cursor->row[column]);
    }
    if (rv == 0 && pos != end) {
        rv = RKV_ECORRUPT;
    }
    return rv;
}

/* Moves to the next row, fetching pages and spans as needed. */
static int cursor_advance(struct cursor *cursor, struct rkv_sql_vtab *vtab)
{
    int rv;

    for (;;) {
        if (cursor->page_index < cursor->n_page) {
            const struct rkv_sql_kv_pair *pair =
                &cursor->page[cursor->page_index++];

            rv = cursor_decode(cursor, vtab, pair);
            if (rv != 0) {
                rkv_sql__session_set_kv_error(vtab->session, rv,
                                              "decoding a row of table",
                                              vtab->table->name);
            }
            return rv;
        }
        if (cursor->page_was_full && cursor->n_page > 0) {
            const struct rkv_sql_kv_pair *last =
                &cursor->page[cursor->n_page - 1];

            cursor->next_start.len = 0;
            rv = rkv_sql__buf_append(&cursor->next_start, last->key,
                                     last->key_len);
            if (rv == 0) {
                rv = rkv_sql__buf_append_byte(&cursor->next_start, 0);
            }
        } else if (cursor->span_index + 1 < cursor->n_spans) {
            const struct span *span = &cursor->spans[++cursor->span_index];

            cursor->next_start.len = 0;
            rv = rkv_sql__buf_append(&cursor->next_start, span->start.data,
                                     span->start.len);
        } else {
            cursor->eof = true;
            return 0;
        }
        if (rv == 0) {
            rv = cursor_fetch(cursor, vtab);
        }
        if (rv != 0) {
            return rv;
        }
    }
}

/* Notes every span for EXPLAIN. */
static int filter_note_spans(struct cursor *cursor, struct rkv_sql_vtab *vtab)
{
    for (size_t i = 0; i < cursor->n_spans; i++) {
        const struct span *span = &cursor->spans[i];
        int rv = rkv_sql__session_note_span(
            vtab->session, vtab->table->name, false, span->start.data,
            span->start.len, span->end.data, span->end.len);

        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int filter_start(struct cursor *cursor, struct rkv_sql_vtab *vtab,
                        int64_t row_hint)
{
    int rv;

    cursor->page_len = RKV_SQL_SCAN_PAGE_FIRST;
    if (row_hint > 0) {
        /* One more than the rows needed, so a full page still ends it. */
        cursor->page_len =
            (uint32_t)RKV_MIN(row_hint + 1, (int64_t)RKV_SQL_SCAN_PAGE_MAX);
    }
    if (cursor->n_spans == 0) {
        return 0;
    }
    cursor->eof = false;
    rv = rkv_sql__buf_append(&cursor->next_start, cursor->spans[0].start.data,
                             cursor->spans[0].start.len);
    if (rv == 0) {
        rv = cursor_fetch(cursor, vtab);
    }
    if (rv == 0) {
        rv = cursor_advance(cursor, vtab);
    }
    return rv;
}

static int vtab_filter(sqlite3_vtab_cursor *base, int n_eq, const char *plan,
                       int argc, sqlite3_value **argv)
{
    struct cursor *cursor = (struct cursor *)base;
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base->pVtab;
    struct filter_args args = {0};
    size_t arg = 0;
    int rv;

    assert(plan != NULL);
    assert(strlen(plan) == (size_t)argc);

    cursor_reset(cursor, vtab->table->n_columns);
    args.prefixes.keys = rkv_calloc(1, sizeof(*args.prefixes.keys));
    rv = args.prefixes.keys == NULL ? -ENOMEM : 0;
    if (rv == 0) {
        args.prefixes.n_keys = 1;
        rv = rkv_sql__buf_append(&args.prefixes.keys[0], vtab->prefix.data,
                                 vtab->prefix.len);
    }
    if (rv == 0) {
        rv = filter_read_equalities(vtab, plan, argv, &arg, &args);
    }
    if (rv == 0) {
        filter_read_rest(vtab, plan, argv, arg, n_eq, &args);
        rv = filter_build_spans(vtab, cursor, n_eq, &args);
    }
    prefixes_free(&args.prefixes);
    if (rv == 0 && rkv_sql__session_explaining(vtab->session)) {
        rv = filter_note_spans(cursor, vtab);
    }
    if (rv == 0) {
        rv = filter_start(cursor, vtab, args.row_hint);
    }
    if (rv != 0) {
        rkv_sql__session_set_kv_error(vtab->session, rv, "scanning table",
                                      vtab->table->name);
        return fail(vtab);
    }
    return SQLITE_OK;
}

static int vtab_next(sqlite3_vtab_cursor *base)
{
    struct cursor *cursor = (struct cursor *)base;
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base->pVtab;

    if (cursor_advance(cursor, vtab) != 0) {
        return fail(vtab);
    }
    return SQLITE_OK;
}

static int vtab_eof(sqlite3_vtab_cursor *base)
{
    return ((struct cursor *)base)->eof;
}

static int vtab_column(sqlite3_vtab_cursor *base, sqlite3_context *context,
                       int column)
{
    struct cursor *cursor = (struct cursor *)base;
    const struct rkv_sql_datum *datum = &cursor->row[column];

    switch (datum->type) {
    case RKV_SQL_INTEGER:
        sqlite3_result_int64(context, datum->integer);
        break;
    case RKV_SQL_REAL:
        sqlite3_result_double(context, datum->real);
        break;
    case RKV_SQL_TEXT:
        sqlite3_result_text(context, (const char *)datum->bytes,
                            (int)datum->len, SQLITE_TRANSIENT);
        break;
    case RKV_SQL_BLOB:
        sqlite3_result_blob(context, datum->bytes, (int)datum->len,
                            SQLITE_TRANSIENT);
        break;
    default:
        sqlite3_result_null(context);
        break;
    }
    return SQLITE_OK;
}

static int vtab_rowid(sqlite3_vtab_cursor *base, sqlite3_int64 *rowid)
{
    struct cursor *cursor = (struct cursor *)base;
    struct rkv_sql_vtab *vtab = (struct rkv_sql_vtab *)base->pVtab;
    const struct rkv_sql_kv_pair *pair;
    int64_t handle;

    assert(cursor->page_index > 0);
    pair = &cursor->page[cursor->page_index - 1];
    if (rkv_sql__session_handle_put(vtab->session, pair->key, pair->key_len,
                                    &handle) != 0) {
        return SQLITE_NOMEM;
    }
    *rowid = handle;
    return SQLITE_OK;
}

static const sqlite3_module vtab_module = {
    .iVersion = 1,
    .xCreate = vtab_connect,
    .xConnect = vtab_connect,
    .xBestIndex = rkv_sql__vtab_best_index,
    .xDisconnect = vtab_disconnect,
    .xDestroy = vtab_destroy,
    .xOpen = vtab_open,
    .xClose = vtab_close,
    .xFilter = vtab_filter,
    .xNext = vtab_next,
    .xEof = vtab_eof,
    .xColumn = vtab_column,
    .xRowid = vtab_rowid,
    .xUpdate = rkv_sql__vtab_update,
};

int rkv_sql__vtab_register(struct rkv_sql_session *session)
{
    int rc = sqlite3_create_module_v2(session->db, "rangekv", &vtab_module,
                                      session, NULL);

    return rc == SQLITE_OK ? 0 : RKV_ESQL;
}
