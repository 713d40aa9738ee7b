/*
 * Connections from the client to nodes' client ports.
 *
 * Happy path: the first op routed to a node connects lazily; its frame waits
 * in conn->out meanwhile. Once connected, a flush hands everything in out
 * to one uv_write and swaps in the spare buffer, so frames that ops append
 * while that write is pending leave together in the next uv_write. Flushes
 * run at the end of every client event (rkv_client__after_event), which
 * coalesces the frames of one event (a batch of submits, a read with many
 * replies) into one write. Replies are read into conn->in and parsed in
 * place; each is matched to its op by request id.
 *
 * Failure modes:
 *   - connect fails: every op queued on the connection is re-routed (none
 *     was sent), and the connection waits reconnect_delay_ms, doubling up to
 *     RKV_CLIENT_RECONNECT_MAX_MS, before the next attempt;
 *   - read error, EOF, write error: the socket is closed; reads are resent,
 *     writes whose frame was handed to uv_write end as RKV_EUNKNOWN;
 *   - a frame length above RKV_CLIENT_FRAME_MAX or 0, or a payload that
 *     fails to decode: the node broke the protocol; the connection is
 *     dropped as above and the event logged at WARN.
 *
 * Invariants:
 *   1. is_writing implies state == CONNECTED or CLOSING, and wbuf holds
 *      exactly the bytes of the pending uv_write.
 *   2. An op on conn->ops with frame_seq <= n_frames_handed was sent.
 *   3. flush_link is on client->flush_list iff out.len > 0 and the
 *      connection is CONNECTED.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes read per uv_read callback at most. */
#define CONN_READ_CHUNK (64 * 1024)

static void conn_drop(struct rkv_client__conn *conn, int reason);

bool rkv_client__conn_is_usable(const struct rkv_client__conn *conn,
                                uint64_t now_ms)
{
    if (conn->state == RKV_CLIENT_CONN_CLOSING) {
        return false;
    }
    if (conn->state == RKV_CLIENT_CONN_IDLE) {
        return now_ms >= conn->reconnect_at_ms;
    }
    return true;
}

/* Parses "host:port" (IPv4, [IPv6] or a name) into addr. */
static int conn_resolve(const char *text, struct sockaddr_storage *addr)
{
    char host[RKV_CLIENT_ADDR_MAX];
    const char *colon = strrchr(text, ':');
    struct addrinfo hints;
    struct addrinfo *found;
    unsigned long port;
    size_t host_len;
    char *end;
    int rv;

    if (colon == NULL || colon == text || colon[1] == '\0') {
        return -EINVAL;
    }
    host_len = (size_t)(colon - text);
    if (text[0] == '[' && host_len >= 2 && text[host_len - 1] == ']') {
        text++;
        host_len -= 2;
    }
    if (host_len >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535) {
        return -EINVAL;
    }

    /* IP literals, what cluster nodes report, need no resolver. */
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) == 0 ||
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) == 0) {
        return 0;
    }
    /* NOTE: a host name resolves with a blocking getaddrinfo on the loop
     * thread, stalling every request of the client meanwhile; only --host
     * values typed by a user are names. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rv = getaddrinfo(host, colon + 1, &hints, &found);
    if (rv != 0) {
        return -EHOSTUNREACH;
    }
    memcpy(addr, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    return 0;
}

/* Adds conn to the flush list when it has frames and may write. */
static void conn_mark_dirty(struct rkv_client__conn *conn)
{
    if (conn->state != RKV_CLIENT_CONN_CONNECTED || conn->out.len == 0) {
        return;
    }
    if (rkv_client__list_is_empty(&conn->flush_link)) {
        rkv_client__list_push_back(&conn->client->flush_list,
                                   &conn->flush_link);
    }
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct rkv_client__conn *conn = req->data;

    assert(conn->is_writing);
    conn->is_writing = false;
    conn->wbuf.len = 0;
    if (status < 0) {
        RKV_LOG(RKV_DEBUG, "write failed node=%llu addr=%s: %s",
                (unsigned long long)conn->node->node_id, conn->node->addr,
                uv_strerror(status));
        conn_drop(conn, status);
    } else {
        conn_mark_dirty(conn);
    }
    rkv_client__after_event(conn->client);
}

/* Hands out to one uv_write. */
static void conn_flush(struct rkv_client__conn *conn)
{
    struct rkv_client__buf spare;
    uv_buf_t buf;
    int rv;

    if (conn->is_writing || conn->state != RKV_CLIENT_CONN_CONNECTED ||
        conn->out.len == 0) {
        return;
    }
    assert(conn->wbuf.len == 0);

    spare = conn->wbuf;
    conn->wbuf = conn->out;
    conn->out = spare;
    conn->n_frames_handed = conn->n_frames_queued;

    buf = uv_buf_init((char *)conn->wbuf.data, (unsigned)conn->wbuf.len);
    conn->write_req.data = conn;
    rv = uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &buf, 1,
                  conn_write_cb);
    if (rv != 0) {
        conn->wbuf.len = 0;
        conn_drop(conn, rv);
        return;
    }
    conn->is_writing = true;
}

void rkv_client__conn_flush_all(struct rkv_client *client)
{
    while (!rkv_client__list_is_empty(&client->flush_list)) {
        struct rkv_client__conn *conn = RKV_CLIENT_CONTAINER(
            client->flush_list.next, struct rkv_client__conn, flush_link);
        rkv_client__list_remove(&conn->flush_link);
        conn_flush(conn);
    }
}

static void conn_close_cb(uv_handle_t *handle)
{
    struct rkv_client__conn *conn = handle->data;

    assert(conn->state == RKV_CLIENT_CONN_CLOSING);
    conn->state = RKV_CLIENT_CONN_IDLE;
    conn->in.len = 0;
    conn->wbuf.len = 0;
    conn->is_writing = false;
    rkv_client__after_event(conn->client);
}

/* Closes the socket, if any, and hands every op on it back to the op layer
 * with reason (a negative code). */
static void conn_drop(struct rkv_client__conn *conn, int reason)
{
    struct rkv_client__link ops;

    if (conn->state == RKV_CLIENT_CONN_IDLE ||
        conn->state == RKV_CLIENT_CONN_CLOSING) {
        return;
    }
    conn->n_failures++;
    conn->reconnect_at_ms = rkv_monotonic_ms() + conn->reconnect_delay_ms;
    conn->reconnect_delay_ms = RKV_MIN(conn->reconnect_delay_ms * 2,
                                       (uint32_t)RKV_CLIENT_RECONNECT_MAX_MS);
    /* The first failure is routine (a node restarts); repeats are not. */
    RKV_LOG(conn->n_failures > 3 ? RKV_WARN : RKV_DEBUG,
            "connection failed node=%llu addr=%s failures=%u: %s",
            (unsigned long long)conn->node->node_id, conn->node->addr,
            conn->n_failures, rkv_strerror(reason));

    conn->state = RKV_CLIENT_CONN_CLOSING;
    conn->out.len = 0;
    rkv_client__list_remove(&conn->flush_link);
    conn->tcp.data = conn;
    uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);

    /* Detach the ops first: handling one may route it back here, and this
     * connection is unusable now. */
    rkv_client__link_init(&ops);
    rkv_client__list_splice(&ops, &conn->ops);
    while (!rkv_client__list_is_empty(&ops)) {
        struct rkv_client__op *op =
            RKV_CLIENT_CONTAINER(ops.next, struct rkv_client__op, link);
        rkv_client__list_remove(&op->link);
        rkv_client__op_on_conn_lost(op, reason);
    }
}

void rkv_client__conn_close(struct rkv_client__conn *conn)
{
    conn_drop(conn, RKV_ESHUTDOWN);
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct rkv_client__conn *conn = handle->data;

    (void)suggested;
    if (rkv_client__buf_reserve(&conn->in, CONN_READ_CHUNK) != 0) {
        /* libuv reports UV_ENOBUFS to the read callback. */
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)conn->in.data + conn->in.len,
                       (unsigned)(conn->in.cap - conn->in.len));
}

/* Matches one payload to its op. A negative return drops the connection. */
static int conn_handle_frame(struct rkv_client__conn *conn,
                             const uint8_t *payload, size_t payload_len)
{
    struct rkv_client__reply reply;
    struct rkv_client__op *op;
    int rv;

    rv = rkv_client__wire_decode(payload, payload_len, &reply);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "malformed reply node=%llu addr=%s len=%zu",
                (unsigned long long)conn->node->node_id, conn->node->addr,
                payload_len);
        return rv;
    }
    op = rkv_client__id_take(conn->client, reply.id, conn);
    if (op == NULL) {
        /* The op already timed out or was re-sent elsewhere. */
        RKV_LOG(RKV_DEBUG, "dropped late reply id=%llu",
                (unsigned long long)reply.id);
        rkv_client__wire_reply_free(&reply);
        return 0;
    }
    rkv_client__list_remove(&op->link);
    rkv_client__op_on_reply(conn, op, &reply);
    rkv_client__wire_reply_free(&reply);
    return 0;
}

/* Parses every complete frame in conn->in and keeps the partial tail. */
static int conn_parse_frames(struct rkv_client__conn *conn)
{
    size_t pos = 0;
    int rv = 0;

    while (conn->in.len - pos >= RKV_CLIENT_FRAME_HEADER_LEN) {
        uint32_t len = rkv_get_be32(conn->in.data + pos);

        if (len == 0 || len > RKV_CLIENT_FRAME_MAX) {
            RKV_LOG(RKV_WARN, "invalid frame length=%u node=%llu addr=%s", len,
                    (unsigned long long)conn->node->node_id, conn->node->addr);
            return len == 0 ? RKV_EMALFORMED : RKV_ETOOLARGE;
        }
        if (conn->in.len - pos - RKV_CLIENT_FRAME_HEADER_LEN < len) {
            break;
        }
        rv = conn_handle_frame(
            conn, conn->in.data + pos + RKV_CLIENT_FRAME_HEADER_LEN, len);
        if (rv != 0) {
            return rv;
        }
        pos += RKV_CLIENT_FRAME_HEADER_LEN + len;
    }
    memmove(conn->in.data, conn->in.data + pos, conn->in.len - pos);
    conn->in.len -= pos;

    /* Make room for the whole frame now that its length passed the check,
     * so reads do not grow the buffer one chunk at a time. */
    if (conn->in.len >= RKV_CLIENT_FRAME_HEADER_LEN) {
        size_t frame_len =
            RKV_CLIENT_FRAME_HEADER_LEN + rkv_get_be32(conn->in.data);
        rv = rkv_client__buf_reserve(&conn->in, frame_len - conn->in.len);
    }
    return rv;
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread,
                         const uv_buf_t *buf)
{
    struct rkv_client__conn *conn = stream->data;
    int rv;

    (void)buf;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        conn_drop(conn, (int)nread);
        rkv_client__after_event(conn->client);
        return;
    }
    conn->in.len += (size_t)nread;
    rv = conn_parse_frames(conn);
    if (rv != 0) {
        conn_drop(conn, rv);
    }
    rkv_client__after_event(conn->client);
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct rkv_client__conn *conn = req->data;
    int rv = status;

    if (conn->state != RKV_CLIENT_CONN_CONNECTING) {
        /* Closed while connecting; conn_drop handled the ops. */
        rkv_client__after_event(conn->client);
        return;
    }
    if (rv == 0) {
        conn->state = RKV_CLIENT_CONN_CONNECTED;
        rv = uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb,
                           conn_read_cb);
    }
    if (rv != 0) {
        /* conn_drop needs a live socket state to act. */
        conn->state = RKV_CLIENT_CONN_CONNECTED;
        conn_drop(conn, rv);
        rkv_client__after_event(conn->client);
        return;
    }
    RKV_LOG(conn->n_failures > 0 ? RKV_INFO : RKV_DEBUG,
            "connected node=%llu addr=%s after failures=%u",
            (unsigned long long)conn->node->node_id, conn->node->addr,
            conn->n_failures);
    conn->n_failures = 0;
    conn->reconnect_delay_ms = RKV_CLIENT_RECONNECT_MIN_MS;
    uv_tcp_nodelay(&conn->tcp, 1);
    conn_mark_dirty(conn);
    rkv_client__after_event(conn->client);
}

/* Starts connecting; failures that happen before the socket exists set the
 * reconnect time and return the error without any handle to close. */
static int conn_connect(struct rkv_client__conn *conn)
{
    struct sockaddr_storage addr;
    int rv;

    assert(conn->state == RKV_CLIENT_CONN_IDLE);
    rv = conn_resolve(conn->node->addr, &addr);
    if (rv != 0) {
        goto err;
    }
    rv = uv_tcp_init(&conn->client->loop, &conn->tcp);
    if (rv != 0) {
        goto err;
    }
    conn->tcp.data = conn;
    conn->connect_req.data = conn;
    conn->state = RKV_CLIENT_CONN_CONNECTING;
    rv = uv_tcp_connect(&conn->connect_req, &conn->tcp,
                        (const struct sockaddr *)&addr, conn_connect_cb);
    if (rv != 0) {
        conn->state = RKV_CLIENT_CONN_CLOSING;
        uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
        goto err;
    }
    return 0;

err:
    conn->n_failures++;
    conn->reconnect_at_ms = rkv_monotonic_ms() + conn->reconnect_delay_ms;
    conn->reconnect_delay_ms = RKV_MIN(conn->reconnect_delay_ms * 2,
                                       (uint32_t)RKV_CLIENT_RECONNECT_MAX_MS);
    RKV_LOG(conn->n_failures > 3 ? RKV_WARN : RKV_DEBUG,
            "connect failed node=%llu addr=%s: %s",
            (unsigned long long)conn->node->node_id, conn->node->addr,
            rkv_strerror(rv));
    assert(rv != 0);
    return rv;
}

int rkv_client__conn_send(struct rkv_client__conn *conn,
                          struct rkv_client__op *op, uint64_t range_id,
                          uint64_t generation)
{
    uint64_t now_ms = rkv_monotonic_ms();
    uint64_t remaining_ms;
    size_t len_before = conn->out.len;
    int rv;

    assert(rkv_client__conn_is_usable(conn, now_ms));
    assert(op->id != 0);

    if (conn->state == RKV_CLIENT_CONN_IDLE) {
        rv = conn_connect(conn);
        if (rv != 0) {
            return RKV_EUNAVAILABLE;
        }
    }
    remaining_ms = op->deadline_ms > now_ms ? op->deadline_ms - now_ms : 1;
    rv = rkv_client__wire_encode(op, op->id, range_id, generation, remaining_ms,
                                 &conn->out);
    if (rv != 0) {
        conn->out.len = len_before;
        return rv;
    }
    conn->n_frames_queued++;
    op->conn = conn;
    op->frame_seq = conn->n_frames_queued;
    rkv_client__list_push_back(&conn->ops, &op->link);
    conn_mark_dirty(conn);
    return 0;
}
