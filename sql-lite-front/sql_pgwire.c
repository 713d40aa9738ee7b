/*
 * The PostgreSQL wire protocol (version 3.0) in front of SQL sessions:
 * enough for psql and libpq clients using the simple query protocol.
 *
 * Threads: one libuv loop thread owns the listener and every connection.
 * Statements run on libuv's worker pool (uv_queue_work), one at a time per
 * connection, and the loop thread writes their whole response back when
 * the statement is done.
 *
 * Connection states (conn_process):
 *   STARTUP   expects an untyped startup packet. An SSLRequest or
 *             GSSENCRequest gets "N" and stays here; a CancelRequest is
 *             closed (queries are not cancellable); protocol 3.0 moves to
 *             PASSWORD when the server has a password, else to READY.
 *   PASSWORD  expects a PasswordMessage ('p'); a match moves to READY, a
 *             mismatch sends SQLSTATE 28P01 and closes.
 *   READY     'Q' runs a query (BUSY until it is written back), 'X'
 *             closes. Extended-protocol messages get one 0A000 error and
 *             are skipped until 'S' (Sync), which answers ReadyForQuery,
 *             as PostgreSQL recovers from an error in that protocol.
 *   CLOSING   the handle is closing; the connection is freed when both
 *             the handle is closed and no statement is running.
 * A connection in STARTUP or PASSWORD is pending; in READY it is a
 * session. Pending connections and sessions have separate limits, so
 * connections that never finish startup cannot lock sessions out.
 *
 * Failure modes: a message longer than RKV_SQL_PG_MESSAGE_MAX or of an
 * unknown type gets 08P01 and a close; a result longer than
 * RKV_SQL_PG_RESULT_MAX is cut with 54000; a connection past pending_max
 * pending ones closes the oldest pending one with 53300, and a startup
 * past connections_max sessions gets 53300 and a close; a connection still
 * pending startup_timeout_ms after it was accepted gets 08P01 and a close
 * (startup_sweep_cb); read and write errors close. Protocol errors and
 * 53300 closes are logged as warnings, each kind at most once a second
 * with a count of the ones in between.
 */
#include "sql-lite-front/sql.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sql-lite-front/sql_internal.h"

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* Bytes of one client message, length field included. */
#define RKV_SQL_PG_MESSAGE_MAX (8 * 1024 * 1024)
/* Bytes of one query's response; past it the rest becomes an error. */
#define RKV_SQL_PG_RESULT_MAX (64 * 1024 * 1024)
#define RKV_SQL_PG_CONNECTIONS_DEFAULT 64
/* Milliseconds between two warnings of one kind (53300 closes, protocol
 * errors) in the log; the ones in between are counted. */
#define RKV_SQL_PG_REJECT_LOG_INTERVAL_MS 1000

#define PG_PROTOCOL_3_0 196608
#define PG_SSL_REQUEST 80877103
#define PG_GSSENC_REQUEST 80877104
#define PG_CANCEL_REQUEST 80877102

enum conn_state {
    CONN_STARTUP,
    CONN_PASSWORD,
    CONN_READY,
    CONN_CLOSING,
};

struct conn {
    uv_tcp_t handle;
    struct rkv_sql_server *server;
    struct conn *prev;
    struct conn *next;
    enum conn_state state;
    uint64_t accepted_ms;   /* loop time of the accept, for the timeout */
    bool is_session;        /* counted in n_sessions, else in n_pending, until
                               conn_close */
    struct rkv_sql_buf in;  /* received, not yet processed bytes */
    struct rkv_sql_buf out; /* the running query's response */
    struct rkv_sql_session *session;
    char user[RKV_SQL_NAME_MAX + 1];
    uv_work_t work;
    char *query; /* the running query, owned */
    bool busy;   /* a query runs on a worker thread */
    bool handle_closed;
    bool skip_until_sync; /* after an extended-protocol message */
    bool result_cut;      /* out reached RKV_SQL_PG_RESULT_MAX */
};

struct rkv_sql_server {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop_async;
    uv_thread_t thread;
    struct rkv_sql_kv *kv;    /* borrowed */
    char *password;           /* owned, NULL: trust */
    uv_timer_t startup_timer; /* closes pending connections past timeout */
    uint32_t connections_max; /* sessions (READY connections) */
    uint32_t pending_max;     /* connections in STARTUP or PASSWORD */
    uint32_t startup_timeout_ms;
    size_t n_sessions;          /* READY connections, not closing */
    size_t n_pending;           /* STARTUP and PASSWORD connections */
    uint64_t n_rejected;        /* 53300 closes since the last warning */
    uint64_t reject_log_ms;     /* loop time of the last 53300 warning */
    uint64_t n_protocol_errors; /* 08P01 closes since the last warning */
    uint64_t protocol_log_ms;   /* loop time of the last 08P01 warning */
    struct conn *connections;
    char address[64];
    uint32_t next_backend_pid;
};

/* A write that owns its bytes until libuv is done with them. */
struct write_req {
    uv_write_t req;
    struct rkv_sql_buf data;
};

/* ---- message building ---------------------------------------------------- */

static int put_u32(struct rkv_sql_buf *buf, uint32_t value)
{
    uint8_t bytes[4];

    rkv_put_be32(bytes, value);
    return rkv_sql__buf_append(buf, bytes, 4);
}

static int put_u16(struct rkv_sql_buf *buf, uint16_t value)
{
    uint8_t bytes[2] = {(uint8_t)(value >> 8), (uint8_t)value};

    return rkv_sql__buf_append(buf, bytes, 2);
}

static int put_cstring(struct rkv_sql_buf *buf, const char *text)
{
    return rkv_sql__buf_append(buf, text, strlen(text) + 1);
}

/* Starts a message of type; returns the offset of its length field. */
static size_t message_begin(struct rkv_sql_buf *buf, char type, int *rv)
{
    size_t offset;

    if (*rv == 0) {
        *rv = rkv_sql__buf_append_byte(buf, (uint8_t)type);
    }
    offset = buf->len;
    if (*rv == 0) {
        *rv = put_u32(buf, 0);
    }
    return offset;
}

/* Fills in the length of the message whose length field is at offset. */
static void message_end(struct rkv_sql_buf *buf, size_t offset, int rv)
{
    if (rv == 0) {
        rkv_put_be32(buf->data + offset, (uint32_t)(buf->len - offset));
    }
}

static int put_error(struct rkv_sql_buf *buf, const char *sqlstate,
                     const char *message)
{
    int rv = 0;
    size_t offset = message_begin(buf, 'E', &rv);

    rv = rv != 0 ? rv : rkv_sql__buf_append_byte(buf, 'S');
    rv = rv != 0 ? rv : put_cstring(buf, "ERROR");
    rv = rv != 0 ? rv : rkv_sql__buf_append_byte(buf, 'V');
    rv = rv != 0 ? rv : put_cstring(buf, "ERROR");
    rv = rv != 0 ? rv : rkv_sql__buf_append_byte(buf, 'C');
    rv = rv != 0 ? rv : put_cstring(buf, sqlstate);
    rv = rv != 0 ? rv : rkv_sql__buf_append_byte(buf, 'M');
    rv = rv != 0 ? rv : put_cstring(buf, message);
    rv = rv != 0 ? rv : rkv_sql__buf_append_byte(buf, 0);
    message_end(buf, offset, rv);
    return rv;
}

static int put_ready(struct rkv_sql_buf *buf)
{
    int rv = 0;
    size_t offset = message_begin(buf, 'Z', &rv);

    rv = rv != 0 ? rv : rkv_sql__buf_append_byte(buf, 'I');
    message_end(buf, offset, rv);
    return rv;
}

static int put_parameter(struct rkv_sql_buf *buf, const char *name,
                         const char *value)
{
    int rv = 0;
    size_t offset = message_begin(buf, 'S', &rv);

    rv = rv != 0 ? rv : put_cstring(buf, name);
    rv = rv != 0 ? rv : put_cstring(buf, value);
    message_end(buf, offset, rv);
    return rv;
}

static int put_row_description(struct rkv_sql_buf *buf,
                               const struct rkv_sql_event *event)
{
    int rv = 0;
    size_t offset = message_begin(buf, 'T', &rv);

    rv = rv != 0 ? rv : put_u16(buf, (uint16_t)event->n_columns);
    for (size_t i = 0; rv == 0 && i < event->n_columns; i++) {
        uint32_t oid = event->type_oids[i];
        int16_t type_len =
            oid == RKV_SQL_OID_INT8 || oid == RKV_SQL_OID_FLOAT8 ? 8 : -1;

        rv = put_cstring(buf, event->names[i]);
        rv = rv != 0 ? rv : put_u32(buf, 0); /* table oid */
        rv = rv != 0 ? rv : put_u16(buf, 0); /* column number */
        rv = rv != 0 ? rv : put_u32(buf, oid);
        rv = rv != 0 ? rv : put_u16(buf, (uint16_t)type_len);
        rv = rv != 0 ? rv : put_u32(buf, UINT32_MAX); /* typmod -1 */
        rv = rv != 0 ? rv : put_u16(buf, 0);          /* text format */
    }
    message_end(buf, offset, rv);
    return rv;
}

static int put_data_row(struct rkv_sql_buf *buf,
                        const struct rkv_sql_event *event)
{
    int rv = 0;
    size_t offset = message_begin(buf, 'D', &rv);

    rv = rv != 0 ? rv : put_u16(buf, (uint16_t)event->n_columns);
    for (size_t i = 0; rv == 0 && i < event->n_columns; i++) {
        if (event->values[i] == NULL) {
            rv = put_u32(buf, UINT32_MAX); /* -1: NULL */
            continue;
        }
        rv = put_u32(buf, (uint32_t)event->value_lens[i]);
        rv = rv != 0 ? rv
                     : rkv_sql__buf_append(buf, event->values[i],
                                           event->value_lens[i]);
    }
    message_end(buf, offset, rv);
    return rv;
}

/* Turns one session event into protocol messages; runs on a worker. */
static int conn_event_cb(void *data, const struct rkv_sql_event *event)
{
    struct conn *conn = data;
    struct rkv_sql_buf *out = &conn->out;
    int rv = 0;
    size_t offset;

    if (out->len > RKV_SQL_PG_RESULT_MAX) {
        conn->result_cut = true;
        return RKV_ETOOLARGE;
    }
    switch (event->kind) {
    case RKV_SQL_EVENT_COLUMNS:
        return put_row_description(out, event);
    case RKV_SQL_EVENT_ROW:
        return put_data_row(out, event);
    case RKV_SQL_EVENT_COMPLETE:
        offset = message_begin(out, 'C', &rv);
        rv = rv != 0 ? rv : put_cstring(out, event->command_tag);
        message_end(out, offset, rv);
        return rv;
    case RKV_SQL_EVENT_ERROR:
        return put_error(out, event->sqlstate, event->message);
    case RKV_SQL_EVENT_EMPTY:
        offset = message_begin(out, 'I', &rv);
        message_end(out, offset, rv);
        return rv;
    }
    return 0;
}

/* ---- connections --------------------------------------------------------- */

static void conn_free(struct conn *conn)
{
    struct rkv_sql_server *server = conn->server;

    assert(!conn->busy);
    assert(conn->handle_closed);

    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        server->connections = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    rkv_sql_session_close(conn->session);
    rkv_sql__buf_free(&conn->in);
    rkv_sql__buf_free(&conn->out);
    rkv_free(conn->query);
    rkv_free(conn);
}

static void conn_close_cb(uv_handle_t *handle)
{
    struct conn *conn = handle->data;

    conn->handle_closed = true;
    if (!conn->busy) {
        conn_free(conn);
    }
}

static void conn_close(struct conn *conn)
{
    if (conn->state == CONN_CLOSING) {
        return;
    }
    RKV_LOG(RKV_DEBUG, "pg connection closing user=%s", conn->user);
    if (conn->is_session) {
        conn->server->n_sessions--;
    } else {
        conn->server->n_pending--;
    }
    conn->state = CONN_CLOSING;
    uv_close((uv_handle_t *)&conn->handle, conn_close_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *write = (struct write_req *)req;

    if (status != 0 && status != UV_ECANCELED) {
        struct conn *conn = req->handle->data;

        RKV_LOG(RKV_DEBUG, "pg write failed user=%s error=%s", conn->user,
                uv_strerror(status));
        conn_close(conn);
    }
    rkv_sql__buf_free(&write->data);
    rkv_free(write);
}

/* Sends and takes over the bytes of data (left empty). */
static void conn_send(struct conn *conn, struct rkv_sql_buf *data)
{
    struct write_req *write;
    uv_buf_t buf;
    int rv;

    if (conn->state == CONN_CLOSING || data->len == 0) {
        rkv_sql__buf_free(data);
        return;
    }
    write = rkv_calloc(1, sizeof(*write));
    if (write == NULL) {
        rkv_sql__buf_free(data);
        conn_close(conn);
        return;
    }
    write->data = *data;
    memset(data, 0, sizeof(*data));
    buf = uv_buf_init((char *)write->data.data, (unsigned)write->data.len);
    rv = uv_write(&write->req, (uv_stream_t *)&conn->handle, &buf, 1, write_cb);
    if (rv != 0) {
        rkv_sql__buf_free(&write->data);
        rkv_free(write);
        conn_close(conn);
    }
}

/* Sends an error and closes, for failures that end the connection. */
static void conn_fail(struct conn *conn, const char *sqlstate,
                      const char *message)
{
    struct rkv_sql_buf out = {0};

    RKV_LOG(RKV_DEBUG, "pg connection failed sqlstate=%s message=%s", sqlstate,
            message);
    if (put_error(&out, sqlstate, message) == 0) {
        conn_send(conn, &out);
    }
    rkv_sql__buf_free(&out);
    conn_close(conn);
}

/* Tells whether a warning of the kind last logged at *last_log_ms may be
 * logged now, and if so records now as its time. */
static bool server_may_log(struct rkv_sql_server *server, uint64_t *last_log_ms)
{
    uint64_t now_ms = uv_now(&server->loop);

    if (*last_log_ms != 0 &&
        now_ms - *last_log_ms < RKV_SQL_PG_REJECT_LOG_INTERVAL_MS) {
        return false;
    }
    *last_log_ms = now_ms;
    return true;
}

/* Closes a connection that broke the protocol with 08P01. The warning is
 * rate-limited by server_may_log and counts the closes in between, so a
 * flood of bad connections cannot flood the log. */
static void conn_fail_protocol(struct conn *conn, const char *message)
{
    struct rkv_sql_server *server = conn->server;

    server->n_protocol_errors++;
    if (server_may_log(server, &server->protocol_log_ms)) {
        RKV_LOG(RKV_WARN,
                "pg protocol error, closing the connection user=%s "
                "error=\"%s\" closed=%llu",
                conn->user, message,
                (unsigned long long)server->n_protocol_errors);
        server->n_protocol_errors = 0;
    }
    conn_fail(conn, "08P01", message);
}

/* Closes a connection with 53300 because limit is full. The warning is
 * rate-limited by server_may_log and counts the closes in between. */
static void conn_close_over_limit(struct conn *conn, const char *limit,
                                  const char *message)
{
    struct rkv_sql_server *server = conn->server;

    server->n_rejected++;
    if (server_may_log(server, &server->reject_log_ms)) {
        RKV_LOG(RKV_WARN,
                "pg connection closed: too many connections limit=%s "
                "sessions=%zu pending=%zu closed=%llu",
                limit, server->n_sessions, server->n_pending,
                (unsigned long long)server->n_rejected);
        server->n_rejected = 0;
    }
    conn_fail(conn, "53300", message);
}

/* ---- running queries ----------------------------------------------------- */

static void query_work_cb(uv_work_t *work)
{
    struct conn *conn = work->data;
    int rv;

    conn->out.len = 0;
    conn->result_cut = false;
    rv = rkv_sql_session_exec(conn->session, conn->query, conn_event_cb, conn);
    if (conn->result_cut) {
        /* UNTESTED: needs a result over 64 MiB, too slow for unit tests. */
        char message[128];

        snprintf(message, sizeof(message),
                 "result exceeds the maximum of %d bytes; add a LIMIT",
                 RKV_SQL_PG_RESULT_MAX);
        put_error(&conn->out, "54000", message);
    } else if (rv != 0 && rv != RKV_ESQL) {
        put_error(&conn->out, "XX000", rkv_strerror(rv));
    }
    put_ready(&conn->out);
}

static void conn_process(struct conn *conn);

static void query_after_work_cb(uv_work_t *work, int status)
{
    struct conn *conn = work->data;

    conn->busy = false;
    rkv_free(conn->query);
    conn->query = NULL;
    if (conn->state == CONN_CLOSING) {
        if (conn->handle_closed) {
            conn_free(conn);
        }
        return;
    }
    conn_send(conn, &conn->out);
    conn_process(conn);
}

static void conn_start_query(struct conn *conn, const uint8_t *body,
                             size_t body_len)
{
    int rv;

    if (body_len == 0 || body[body_len - 1] != '\0') {
        conn_fail_protocol(conn, "query message is not NUL-terminated");
        return;
    }
    conn->query = rkv_memdup(body, body_len);
    if (conn->query == NULL) {
        conn_fail(conn, "53200", "out of memory");
        return;
    }
    conn->work.data = conn;
    conn->busy = true;
    rv = uv_queue_work(&conn->server->loop, &conn->work, query_work_cb,
                       query_after_work_cb);
    if (rv != 0) {
        conn->busy = false;
        conn_fail(conn, "53000", uv_strerror(rv));
    }
}

/* ---- startup and authentication ----------------------------------------- */

static int put_startup_done(struct conn *conn, struct rkv_sql_buf *out)
{
    static const char *const parameters[][2] = {
        {"server_version", "15.0 (rangekv)"},
        {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},
        {"DateStyle", "ISO, MDY"},
        {"TimeZone", "UTC"},
        {"integer_datetimes", "on"},
        {"standard_conforming_strings", "on"},
        {"is_superuser", "off"},
    };
    int rv = 0;
    size_t offset = message_begin(out, 'R', &rv);

    rv = rv != 0 ? rv : put_u32(out, 0); /* AuthenticationOk */
    message_end(out, offset, rv);
    for (size_t i = 0; rv == 0 && i < RKV_ARRAY_SIZE(parameters); i++) {
        rv = put_parameter(out, parameters[i][0], parameters[i][1]);
    }
    rv = rv != 0 ? rv : put_parameter(out, "session_authorization", conn->user);
    offset = message_begin(out, 'K', &rv);
    rv = rv != 0 ? rv : put_u32(out, ++conn->server->next_backend_pid);
    rv = rv != 0 ? rv : put_u32(out, (uint32_t)rkv_monotonic_ms());
    message_end(out, offset, rv);
    return rv != 0 ? rv : put_ready(out);
}

/* Opens the session and sends ReadyForQuery after the startup reply. */
static void conn_become_ready(struct conn *conn)
{
    struct rkv_sql_server *server = conn->server;
    struct rkv_sql_buf out = {0};
    int rv;

    assert(!conn->is_session);

    if (server->n_sessions >= server->connections_max) {
        conn_close_over_limit(conn, "connections_max",
                              "sorry, too many clients already");
        return;
    }
    rv = rkv_sql_session_open(conn->server->kv, &conn->session);
    if (rv != 0) {
        conn_fail(conn, "53000", "opening an SQL session failed");
        return;
    }
    rv = put_startup_done(conn, &out);
    if (rv != 0) {
        rkv_sql__buf_free(&out);
        conn_fail(conn, "53200", "out of memory");
        return;
    }
    conn->state = CONN_READY;
    conn->is_session = true;
    server->n_pending--;
    server->n_sessions++;
    RKV_LOG(RKV_DEBUG, "pg session started user=%s", conn->user);
    conn_send(conn, &out);
}

/* Reads the user name from the startup parameters (name, value pairs of
 * NUL-terminated strings ending with an empty name). */
static void startup_read_user(struct conn *conn, const uint8_t *params,
                              size_t params_len)
{
    const char *pos = (const char *)params;
    const char *end = pos + params_len;

    while (pos < end && *pos != '\0') {
        const char *value = memchr(pos, '\0', (size_t)(end - pos));

        if (value == NULL || ++value >= end ||
            memchr(value, '\0', (size_t)(end - value)) == NULL) {
            return;
        }
        if (strcmp(pos, "user") == 0) {
            snprintf(conn->user, sizeof(conn->user), "%s", value);
        }
        pos = value + strlen(value) + 1;
    }
}

static void conn_startup(struct conn *conn, const uint8_t *body,
                         size_t body_len)
{
    struct rkv_sql_buf out = {0};
    uint32_t code = body_len >= 4 ? rkv_get_be32(body) : 0;
    int rv = 0;
    size_t offset;

    if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST) {
        /* No encryption: the client may go on in plain text. */
        if (rkv_sql__buf_append_byte(&out, 'N') == 0) {
            conn_send(conn, &out);
        }
        rkv_sql__buf_free(&out);
        return;
    }
    if (code == PG_CANCEL_REQUEST) {
        /* UNTESTED: psql sends it only on Ctrl-C during a query. */
        conn_close(conn);
        return;
    }
    if (code != PG_PROTOCOL_3_0) {
        conn_fail_protocol(conn, "unsupported frontend protocol: rangekv "
                                 "speaks protocol 3.0");
        return;
    }
    startup_read_user(conn, body + 4, body_len - 4);
    if (conn->server->password == NULL) {
        conn_become_ready(conn);
        return;
    }
    offset = message_begin(&out, 'R', &rv);
    rv = rv != 0 ? rv : put_u32(&out, 3); /* cleartext password */
    message_end(&out, offset, rv);
    conn->state = CONN_PASSWORD;
    conn_send(conn, &out);
    rkv_sql__buf_free(&out);
}

static void conn_password(struct conn *conn, char type, const uint8_t *body,
                          size_t body_len)
{
    const char *password = conn->server->password;
    size_t password_len = strlen(password);
    char message[128];
    uint8_t diff = 0;

    if (type != 'p' || body_len == 0 || body[body_len - 1] != '\0') {
        conn_fail_protocol(conn, "expected a password message");
        return;
    }
    /* Compare every byte, so timing does not reveal a matching prefix. */
    diff = (uint8_t)(body_len - 1 != password_len);
    for (size_t i = 0; i < body_len - 1; i++) {
        diff |= (uint8_t)(body[i] ^ (uint8_t)password[i % (password_len + 1)]);
    }
    if (diff != 0) {
        snprintf(message, sizeof(message),
                 "password authentication failed for user \"%s\"", conn->user);
        RKV_LOG(RKV_WARN, "pg password rejected user=%s", conn->user);
        conn_fail(conn, "28P01", message);
        return;
    }
    conn_become_ready(conn);
}

/* ---- message dispatch ---------------------------------------------------- */

static void conn_ready_message(struct conn *conn, char type,
                               const uint8_t *body, size_t body_len)
{
    struct rkv_sql_buf out = {0};

    switch (type) {
    case 'Q':
        conn->skip_until_sync = false;
        conn_start_query(conn, body, body_len);
        return;
    case 'X':
        conn_close(conn);
        return;
    case 'S':
        if (put_ready(&out) == 0) {
            conn_send(conn, &out);
        }
        conn->skip_until_sync = false;
        break;
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
    case 'H':
    case 'F':
        if (!conn->skip_until_sync &&
            put_error(&out, "0A000",
                      "the extended query protocol is not "
                      "supported; use simple queries (psql "
                      "does)") == 0) {
            conn_send(conn, &out);
        }
        conn->skip_until_sync = true;
        break;
    default:
        conn_fail_protocol(conn, "unknown message type");
        break;
    }
    rkv_sql__buf_free(&out);
}

/* Returns the length of the first complete message in conn->in, 0 when
 * more bytes are needed, or -1 when the length is invalid. The startup
 * packet has no type byte. */
static long conn_message_len(const struct conn *conn)
{
    size_t header = conn->state == CONN_STARTUP ? 0 : 1;
    uint32_t length;

    if (conn->in.len < header + 4) {
        return 0;
    }
    length = rkv_get_be32(conn->in.data + header);
    if (length < 4 || length > RKV_SQL_PG_MESSAGE_MAX) {
        return -1;
    }
    if (conn->in.len < header + length) {
        return 0;
    }
    return (long)(header + length);
}

/* Handles every complete message buffered, until a query runs. */
static void conn_process(struct conn *conn)
{
    while (!conn->busy && conn->state != CONN_CLOSING) {
        long len = conn_message_len(conn);
        size_t header = conn->state == CONN_STARTUP ? 4 : 5;
        char type = conn->state == CONN_STARTUP ? '\0' : (char)conn->in.data[0];
        uint8_t *body;

        if (len < 0) {
            conn_fail_protocol(conn, "invalid message length");
            return;
        }
        if (len == 0) {
            return;
        }
        body = conn->in.data + header;
        if (conn->state == CONN_STARTUP) {
            conn_startup(conn, body, (size_t)len - header);
        } else if (conn->state == CONN_PASSWORD) {
            conn_password(conn, type, body, (size_t)len - header);
        } else {
            conn_ready_message(conn, type, body, (size_t)len - header);
        }
        /* The query copied its text, so the bytes can go now. */
        memmove(conn->in.data, conn->in.data + len, conn->in.len - (size_t)len);
        conn->in.len -= (size_t)len;
    }
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *conn = handle->data;
    size_t want = RKV_MAX(suggested, (size_t)65536);

    if (conn->in.cap - conn->in.len < want) {
        uint8_t *grown = rkv_realloc(conn->in.data, conn->in.len + want);

        if (grown == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        conn->in.data = grown;
        conn->in.cap = conn->in.len + want;
    }
    *buf = uv_buf_init((char *)conn->in.data + conn->in.len,
                       (unsigned)(conn->in.cap - conn->in.len));
}

static void read_cb(uv_stream_t *stream, ssize_t n_read, const uv_buf_t *buf)
{
    struct conn *conn = stream->data;

    if (n_read < 0) {
        if (n_read != UV_EOF) {
            RKV_LOG(RKV_DEBUG, "pg read failed user=%s error=%s", conn->user,
                    uv_strerror((int)n_read));
        }
        conn_close(conn);
        return;
    }
    if (n_read == 0 && buf->base == NULL) {
        conn_fail(conn, "53200", "out of memory");
        return;
    }
    conn->in.len += (size_t)n_read;
    conn_process(conn);
}

/* Closes the pending connection accepted first, to make room for a new
 * one. So idle connections cannot keep clients out: each new connection
 * pushes the oldest idle one out, while a real client finishes startup
 * within a few round trips. */
static void server_close_oldest_pending(struct rkv_sql_server *server)
{
    struct conn *oldest = NULL;

    /* The list is newest first, so the last pending one is the oldest. */
    for (struct conn *conn = server->connections; conn != NULL;
         conn = conn->next) {
        if (conn->state == CONN_STARTUP || conn->state == CONN_PASSWORD) {
            oldest = conn;
        }
    }
    assert(oldest != NULL);
    assert(oldest != server->connections);
    /* NOTE: there is no per-address limit, so a client that opens
     * connections faster than pending_max per startup round trip can
     * still push out real clients while it keeps doing so. */
    conn_close_over_limit(oldest, "pending_max",
                          "sorry, too many connections are starting; "
                          "this one, the oldest, was closed");
}

static void connection_cb(uv_stream_t *listener, int status)
{
    struct rkv_sql_server *server = listener->data;
    struct conn *conn;

    if (status != 0) {
        RKV_LOG(RKV_WARN, "pg accept failed error=%s", uv_strerror(status));
        return;
    }
    conn = rkv_calloc(1, sizeof(*conn));
    if (conn == NULL || uv_tcp_init(&server->loop, &conn->handle) != 0) {
        rkv_free(conn);
        RKV_LOG(RKV_WARN, "pg accept failed error=%s", "out of memory");
        return;
    }
    conn->server = server;
    conn->handle.data = conn;
    conn->next = server->connections;
    if (conn->next != NULL) {
        conn->next->prev = conn;
    }
    server->connections = conn;
    server->n_pending++;
    conn->accepted_ms = uv_now(&server->loop);
    snprintf(conn->user, sizeof(conn->user), "%s", "?");
    if (uv_accept(listener, (uv_stream_t *)&conn->handle) != 0) {
        conn_close(conn);
        return;
    }
    if (server->n_pending > server->pending_max) {
        server_close_oldest_pending(server);
    }
    if (uv_read_start((uv_stream_t *)&conn->handle, alloc_cb, read_cb) != 0) {
        conn_close(conn);
    }
}

/* ---- the server ---------------------------------------------------------- */

/* Closes every connection that is still pending startup_timeout_ms after
 * its accept, and logs how many it closed. */
static void startup_sweep_cb(uv_timer_t *timer)
{
    struct rkv_sql_server *server = timer->data;
    uint64_t now_ms = uv_now(&server->loop);
    char message[128];
    size_t n_closed = 0;

    snprintf(message, sizeof(message),
             "startup not completed within %u ms; closing the connection",
             server->startup_timeout_ms);
    for (struct conn *conn = server->connections; conn != NULL;
         conn = conn->next) {
        bool pending =
            conn->state == CONN_STARTUP || conn->state == CONN_PASSWORD;

        if (pending &&
            now_ms - conn->accepted_ms >= server->startup_timeout_ms) {
            conn_fail(conn, "08P01", message);
            n_closed++;
        }
    }
    if (n_closed > 0) {
        RKV_LOG(RKV_WARN,
                "pg startup timed out: closed connections=%zu "
                "timeout_ms=%u pending=%zu",
                n_closed, server->startup_timeout_ms, server->n_pending);
    }
}

static void stop_async_cb(uv_async_t *async)
{
    struct rkv_sql_server *server = async->data;

    uv_close((uv_handle_t *)&server->listener, NULL);
    uv_close((uv_handle_t *)&server->stop_async, NULL);
    uv_close((uv_handle_t *)&server->startup_timer, NULL);
    for (struct conn *conn = server->connections; conn != NULL;
         conn = conn->next) {
        conn_close(conn);
    }
}

static void server_thread(void *arg)
{
    struct rkv_sql_server *server = arg;

    uv_run(&server->loop, UV_RUN_DEFAULT);
}

/* Parses "host:port" (IPv6 hosts in brackets) into addr. */
static int parse_address(const char *text, struct sockaddr_storage *addr)
{
    const char *colon = strrchr(text, ':');
    char host[64];
    char *end;
    long port;

    if (colon == NULL || (size_t)(colon - text) >= sizeof(host)) {
        return -EINVAL;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535 || colon[1] == '\0') {
        return -EINVAL;
    }
    if (text[0] == '[' && colon > text + 1 && colon[-1] == ']') {
        /* UNTESTED: tests listen on 127.0.0.1 only. */
        snprintf(host, sizeof(host), "%.*s", (int)(colon - text - 2), text + 1);
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr);
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr);
}

static void server_record_address(struct rkv_sql_server *server)
{
    struct sockaddr_storage addr;
    int addr_len = sizeof(addr);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    uv_tcp_getsockname(&server->listener, (struct sockaddr *)&addr, &addr_len);
    if (addr.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;

        uv_ip6_name(in6, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(server->address, sizeof(server->address), "[%s]:%d", host,
                 port);
        return;
    }
    uv_ip4_name((struct sockaddr_in *)&addr, host, sizeof(host));
    port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    snprintf(server->address, sizeof(server->address), "%s:%d", host, port);
}

static int server_listen(struct rkv_sql_server *server, const char *address)
{
    struct sockaddr_storage addr;
    int rv;

    memset(&addr, 0, sizeof(addr));
    rv = parse_address(address, &addr);
    if (rv != 0) {
        return -EINVAL;
    }
    rv = uv_tcp_init(&server->loop, &server->listener);
    if (rv != 0) {
        return rv;
    }
    server->listener.data = server;
    rv = uv_tcp_bind(&server->listener, (struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&server->listener, 128, connection_cb);
    }
    if (rv != 0) {
        uv_close((uv_handle_t *)&server->listener, NULL);
        return rv;
    }
    server_record_address(server);
    return 0;
}

/* Starts the timer that runs startup_sweep_cb every quarter of the
 * timeout (10 ms to 1 s), so a pending connection is closed at most one
 * such interval after its timeout. */
static int server_start_sweep(struct rkv_sql_server *server)
{
    uint64_t interval_ms = server->startup_timeout_ms / 4;
    int rv;

    interval_ms = RKV_MAX(interval_ms, (uint64_t)10);
    interval_ms = RKV_MIN(interval_ms, (uint64_t)1000);
    rv = uv_timer_init(&server->loop, &server->startup_timer);
    if (rv != 0) {
        return rv;
    }
    server->startup_timer.data = server;
    rv = uv_timer_start(&server->startup_timer, startup_sweep_cb, interval_ms,
                        interval_ms);
    if (rv != 0) {
        /* UNTESTED: uv_timer_start fails only without a callback. */
        uv_close((uv_handle_t *)&server->startup_timer, NULL);
    }
    return rv;
}

int rkv_sql_server_start(const struct rkv_sql_server_options *options,
                         struct rkv_sql_kv *kv, struct rkv_sql_server **out)
{
    struct rkv_sql_server *server;
    int rv;

    assert(options != NULL);
    assert(kv != NULL);

    if (options->listen_addr == NULL) {
        return -EINVAL;
    }
    server = rkv_calloc(1, sizeof(*server));
    if (server == NULL) {
        return -ENOMEM;
    }
    server->kv = kv;
    server->connections_max = options->connections_max != 0
                                  ? options->connections_max
                                  : RKV_SQL_PG_CONNECTIONS_DEFAULT;
    server->pending_max = options->pending_max != 0 ? options->pending_max
                                                    : server->connections_max;
    server->startup_timeout_ms = options->startup_timeout_ms != 0
                                     ? options->startup_timeout_ms
                                     : RKV_SQL_PG_STARTUP_TIMEOUT_MS_DEFAULT;
    if (options->password != NULL) {
        server->password =
            rkv_memdup(options->password, strlen(options->password) + 1);
        if (server->password == NULL) {
            rv = -ENOMEM;
            goto err_after_alloc;
        }
    }
    rv = uv_loop_init(&server->loop);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = server_listen(server, options->listen_addr);
    if (rv != 0) {
        goto err_after_loop;
    }
    server->stop_async.data = server;
    rv = uv_async_init(&server->loop, &server->stop_async, stop_async_cb);
    if (rv != 0) {
        goto err_after_listen;
    }
    rv = server_start_sweep(server);
    if (rv != 0) {
        goto err_after_async;
    }
    rv = uv_thread_create(&server->thread, server_thread, server);
    if (rv != 0) {
        uv_close((uv_handle_t *)&server->startup_timer, NULL);
        goto err_after_async;
    }
    RKV_LOG(RKV_INFO, "pg listener started addr=%s", server->address);
    *out = server;
    return 0;

err_after_async:
    uv_close((uv_handle_t *)&server->stop_async, NULL);
err_after_listen:
    uv_close((uv_handle_t *)&server->listener, NULL);
err_after_loop:
    uv_run(&server->loop, UV_RUN_DEFAULT);
    uv_loop_close(&server->loop);
err_after_alloc:
    rkv_free(server->password);
    rkv_free(server);
    assert(rv != 0);
    return rv;
}

void rkv_sql_server_address(const struct rkv_sql_server *server, char *out,
                            size_t out_len)
{
    snprintf(out, out_len, "%s", server->address);
}

void rkv_sql_server_stop(struct rkv_sql_server *server)
{
    if (server == NULL) {
        return;
    }
    uv_async_send(&server->stop_async);
    uv_thread_join(&server->thread);
    uv_loop_close(&server->loop);
    RKV_LOG(RKV_INFO, "pg listener stopped addr=%s", server->address);
    rkv_free(server->password);
    rkv_free(server);
}
