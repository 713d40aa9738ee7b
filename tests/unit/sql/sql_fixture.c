/* The session fixture of the sql-lite-front tests; see sql_fixture.h. */
#include "tests/unit/sql/sql_fixture.h"

#include <stdio.h>
#include <string.h>

#include "tests/lib/test.h"
#include "tests/unit/sql/kv_local.h"

static void append(char *buffer, size_t buffer_max, size_t *len,
                   const char *text, size_t text_len)
{
    size_t n = text_len;

    if (*len + n + 1 > buffer_max) {
        n = buffer_max - *len - 1;
    }
    memcpy(buffer + *len, text, n);
    *len += n;
    buffer[*len] = '\0';
}

int sql_collect_cb(void *data, const struct rkv_sql_event *event)
{
    struct sql_result *result = data;
    size_t columns_len = 0;

    switch (event->kind) {
    case RKV_SQL_EVENT_COLUMNS:
        result->columns[0] = '\0';
        for (size_t i = 0; i < event->n_columns; i++) {
            char piece[128];

            snprintf(piece, sizeof(piece), "%s%s:%u", i > 0 ? "|" : "",
                     event->names[i], event->type_oids[i]);
            append(result->columns, sizeof(result->columns), &columns_len,
                   piece, strlen(piece));
        }
        break;
    case RKV_SQL_EVENT_ROW:
        for (size_t i = 0; i < event->n_columns; i++) {
            if (i > 0) {
                append(result->rows, sizeof(result->rows), &result->rows_len,
                       "|", 1);
            }
            if (event->values[i] == NULL) {
                append(result->rows, sizeof(result->rows), &result->rows_len,
                       "NULL", 4);
            } else {
                append(result->rows, sizeof(result->rows), &result->rows_len,
                       event->values[i], event->value_lens[i]);
            }
        }
        append(result->rows, sizeof(result->rows), &result->rows_len, "\n", 1);
        result->n_rows++;
        break;
    case RKV_SQL_EVENT_COMPLETE:
        snprintf(result->tag, sizeof(result->tag), "%s", event->command_tag);
        break;
    case RKV_SQL_EVENT_ERROR:
        snprintf(result->sqlstate, sizeof(result->sqlstate), "%s",
                 event->sqlstate);
        snprintf(result->message, sizeof(result->message), "%s",
                 event->message);
        break;
    case RKV_SQL_EVENT_EMPTY:
        result->n_empty++;
        break;
    }
    return 0;
}

int sql_run(struct rkv_sql_session *session, const char *sql,
            struct sql_result *result)
{
    memset(result, 0, sizeof(*result));
    return rkv_sql_session_exec(session, sql, sql_collect_cb, result);
}

void sql_fixture_setup(struct sql_fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->kv = kv_local_open();
    ASSERT_TRUE(f->kv != NULL);
    ASSERT_OK(rkv_sql_session_open(f->kv, &f->session));
}

void sql_fixture_teardown(struct sql_fixture *f)
{
    rkv_sql_session_close(f->session);
    f->kv->vtable->close(f->kv);
}
