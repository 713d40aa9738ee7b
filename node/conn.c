/*
 * Framed TCP connections: frame reading with the size check before
 * allocation, output coalescing, and asynchronous close (node/conn.h).
 */
#define RKV_LOG_SUBSYS "node"
#include "node/conn.h"

#include <errno.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

/* Bytes a length-delimited field adds around its message: a tag and a
 * length varint need at most 15, so 20 is a safe bound. */
#define CONN_FIELD_OVERHEAD_MAX 20

/* One uv_write in flight; owns the bytes it writes. */
struct conn_write {
    uv_write_t req;
    struct rkv_node__conn *conn;
    uint8_t *buf; /* owned */
    size_t buf_len;
};

static void conn_dirty_remove(struct rkv_node__conn *conn)
{
    struct rkv_node__io *io = conn->io;

    if (!conn->dirty) {
        return;
    }
    if (conn->dirty_prev != NULL) {
        conn->dirty_prev->dirty_next = conn->dirty_next;
    } else {
        io->dirty = conn->dirty_next;
    }
    if (conn->dirty_next != NULL) {
        conn->dirty_next->dirty_prev = conn->dirty_prev;
    }
    conn->dirty_prev = NULL;
    conn->dirty_next = NULL;
    conn->dirty = false;
}

static void conn_dirty_add(struct rkv_node__conn *conn)
{
    struct rkv_node__io *io = conn->io;

    if (conn->dirty) {
        return;
    }
    conn->dirty_prev = NULL;
    conn->dirty_next = io->dirty;
    if (io->dirty != NULL) {
        io->dirty->dirty_prev = conn;
    }
    io->dirty = conn;
    conn->dirty = true;
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct conn_write *w = req->data;
    struct rkv_node__conn *conn = w->conn;

    assert(conn->write_queue_len >= w->buf_len);
    conn->write_queue_len -= w->buf_len;
    if (status == 0) {
        conn->io->n_bytes_sent += w->buf_len;
    } else if (status != UV_ECANCELED) {
        RKV_LOG(RKV_DEBUG, "write failed kind=%s error=%s", conn->kind,
                uv_strerror(status));
        rkv_node__conn_close(conn);
    }
    rkv_free(w->buf);
    rkv_free(w);
}

/* Hands the pending output to one uv_write; the buffer moves to the write
 * request, so nothing is copied. */
static void conn_flush(struct rkv_node__conn *conn)
{
    struct conn_write *w;
    uv_buf_t buf;
    int rv;

    assert(!conn->closing);
    rkv_node__conn_close_frame(conn);
    if (conn->out_len == 0) {
        return;
    }
    w = rkv_malloc(sizeof(*w));
    if (w == NULL) {
        RKV_LOG(RKV_WARN, "closing connection kind=%s error=%s", conn->kind,
                rkv_strerror(-ENOMEM));
        rkv_node__conn_close(conn);
        return;
    }
    w->conn = conn;
    w->buf = conn->out;
    w->buf_len = conn->out_len;
    w->req.data = w;
    conn->out = NULL;
    conn->out_len = 0;
    conn->out_cap = 0;

    buf = uv_buf_init((char *)w->buf, (unsigned int)w->buf_len);
    rv = uv_write(&w->req, (uv_stream_t *)&conn->tcp, &buf, 1, conn_write_cb);
    if (rv != 0) {
        RKV_LOG(RKV_DEBUG, "write failed kind=%s error=%s", conn->kind,
                uv_strerror(rv));
        rkv_free(w->buf);
        rkv_free(w);
        rkv_node__conn_close(conn);
        return;
    }
    conn->write_queue_len += w->buf_len;
}

void rkv_node__io_flush(struct rkv_node__io *io)
{
    while (io->dirty != NULL) {
        struct rkv_node__conn *conn = io->dirty;

        conn_dirty_remove(conn);
        conn_flush(conn);
    }
}

void rkv_node__io_init(struct rkv_node__io *io, uv_loop_t *loop)
{
    memset(io, 0, sizeof(*io));
    io->loop = loop;
}

int rkv_node__conn_init(struct rkv_node__conn *conn, struct rkv_node__io *io,
                        const struct rkv_node__conn_ops *ops, void *data,
                        const char *kind, uint32_t frame_max, size_t out_max)
{
    int rv;

    assert(frame_max > 0);
    memset(conn, 0, sizeof(*conn));
    conn->io = io;
    conn->ops = ops;
    conn->data = data;
    conn->kind = kind;
    conn->frame_max = frame_max;
    conn->out_max = out_max;
    conn->open_frame_index = SIZE_MAX;
    rv = uv_tcp_init(io->loop, &conn->tcp);
    if (rv != 0) {
        return rv;
    }
    conn->tcp.data = conn;
    return 0;
}

/* Takes a frame whose payload is complete, whether it sits in the caller's
 * buffer or in conn->payload. */
static int conn_deliver(struct rkv_node__conn *conn, const uint8_t *payload,
                        size_t payload_len)
{
    if (conn->closing) {
        return RKV_ESHUTDOWN;
    }
    return conn->ops->frame_cb(conn, payload, payload_len);
}

/* Reads the 4-byte header from buf; returns the bytes consumed. */
static size_t conn_feed_header(struct rkv_node__conn *conn, const uint8_t *buf,
                               size_t len)
{
    size_t n = RKV_MIN(len, RKV_NODE_FRAME_HEADER_LEN - conn->header_len);

    memcpy(conn->header + conn->header_len, buf, n);
    conn->header_len += n;
    return n;
}

enum rkv_log_level rkv_node__io_malformed_level(struct rkv_node__io *io)
{
    return io->n_malformed++ % RKV_NODE_MALFORMED_WARN_EVERY == 0 ? RKV_WARN
                                                                  : RKV_DEBUG;
}

static int conn_check_length(struct rkv_node__conn *conn, uint32_t length)
{
    enum rkv_log_level level;

    if (length == 0) {
        level = rkv_node__io_malformed_level(conn->io);
        RKV_LOG(level,
                "closing connection kind=%s error=frame of length 0 "
                "malformed=%llu",
                conn->kind, (unsigned long long)conn->io->n_malformed);
        return RKV_EMALFORMED;
    }
    if (length > conn->frame_max) {
        level = rkv_node__io_malformed_level(conn->io);
        RKV_LOG(level,
                "closing connection kind=%s error=frame of %u bytes is over "
                "the limit of %u bytes malformed=%llu",
                conn->kind, length, conn->frame_max,
                (unsigned long long)conn->io->n_malformed);
        return RKV_ETOOLARGE;
    }
    return 0;
}

bool rkv_node__conn_frame_overdue(const struct rkv_node__conn *conn,
                                  uint64_t now_ms, uint64_t timeout_ms)
{
    return conn->frame_started_ms != 0 &&
           now_ms > conn->frame_started_ms + timeout_ms;
}

int rkv_node__conn_feed(struct rkv_node__conn *conn, const uint8_t *buf,
                        size_t len)
{
    int rv;

    while (len > 0) {
        uint32_t length;
        size_t n;

        if (conn->header_len < RKV_NODE_FRAME_HEADER_LEN) {
            if (conn->header_len == 0) {
                conn->frame_started_ms = rkv_monotonic_ms();
            }
            n = conn_feed_header(conn, buf, len);
            buf += n;
            len -= n;
            if (conn->header_len < RKV_NODE_FRAME_HEADER_LEN) {
                return 0;
            }
            length = rkv_get_be32(conn->header);
            rv = conn_check_length(conn, length);
            if (rv != 0) {
                return rv;
            }
            conn->payload_len = length;
            conn->payload_filled = 0;

            /* A frame that lies whole in buf is delivered without a copy. */
            if (len >= length) {
                conn->header_len = 0;
                conn->frame_started_ms = 0;
                rv = conn_deliver(conn, buf, length);
                if (rv != 0) {
                    return rv;
                }
                buf += length;
                len -= length;
                continue;
            }
            conn->payload = rkv_malloc(length);
            if (conn->payload == NULL) {
                return -ENOMEM;
            }
        }

        n = RKV_MIN(len, conn->payload_len - conn->payload_filled);
        memcpy(conn->payload + conn->payload_filled, buf, n);
        conn->payload_filled += n;
        buf += n;
        len -= n;
        if (conn->payload_filled == conn->payload_len) {
            uint8_t *payload = conn->payload;

            conn->payload = NULL;
            conn->header_len = 0;
            conn->frame_started_ms = 0;
            rv = conn_deliver(conn, payload, conn->payload_len);
            rkv_free(payload);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested_size,
                          uv_buf_t *buf)
{
    struct rkv_node__conn *conn = handle->data;
    struct rkv_node__io *io = conn->io;

    /* libuv reads into the buffer right after asking for it, so one buffer
     * per loop is enough; the flag guards that assumption. */
    assert(!io->read_buf_in_use);
    io->read_buf_in_use = true;
    buf->base = (char *)io->read_buf;
    buf->len = sizeof(io->read_buf);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread,
                         const uv_buf_t *buf)
{
    struct rkv_node__conn *conn = stream->data;
    int rv;

    conn->io->read_buf_in_use = false;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            RKV_LOG(RKV_DEBUG, "read failed kind=%s error=%s", conn->kind,
                    uv_strerror((int)nread));
        }
        rkv_node__conn_close(conn);
        return;
    }
    conn->io->n_bytes_received += (uint64_t)nread;
    rv = rkv_node__conn_feed(conn, (const uint8_t *)buf->base, (size_t)nread);
    if (rv != 0) {
        RKV_LOG(RKV_DEBUG, "closing connection kind=%s error=%s", conn->kind,
                rkv_strerror(rv));
        rkv_node__conn_close(conn);
    }
}

int rkv_node__conn_start(struct rkv_node__conn *conn)
{
    int rv;

    uv_tcp_nodelay(&conn->tcp, 1);
    rv = uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc_cb, conn_read_cb);
    if (rv != 0) {
        return rv;
    }
    conn->reading = true;
    return 0;
}

static void conn_close_cb(uv_handle_t *handle)
{
    struct rkv_node__conn *conn = handle->data;

    rkv_free(conn->payload);
    conn->payload = NULL;
    rkv_free(conn->out);
    conn->out = NULL;
    conn->ops->close_cb(conn);
}

void rkv_node__conn_close(struct rkv_node__conn *conn)
{
    if (conn->closing) {
        return;
    }
    conn->closing = true;
    conn_dirty_remove(conn);
    uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
}

static int conn_reserve(struct rkv_node__conn *conn, size_t extra)
{
    size_t need;
    size_t cap;
    uint8_t *out;

    if (conn->closing) {
        return RKV_ESHUTDOWN;
    }
    if (conn->out_len + conn->write_queue_len + extra > conn->out_max) {
        return RKV_EBUSY;
    }
    need = conn->out_len + extra;
    if (need <= conn->out_cap) {
        return 0;
    }
    cap = conn->out_cap > 0 ? conn->out_cap : 4096;
    while (cap < need) {
        cap *= 2;
    }
    out = rkv_realloc(conn->out, cap);
    if (out == NULL) {
        return -ENOMEM;
    }
    conn->out = out;
    conn->out_cap = cap;
    return 0;
}

int rkv_node__conn_send_message(struct rkv_node__conn *conn,
                                const void *protobuf_message)
{
    const ProtobufCMessage *message = protobuf_message;
    size_t len = protobuf_c_message_get_packed_size(message);
    size_t packed_len;
    int rv;

    rkv_node__conn_close_frame(conn);
    if (len > conn->frame_max) {
        return RKV_ETOOLARGE;
    }
    rv = conn_reserve(conn, RKV_NODE_FRAME_HEADER_LEN + len);
    if (rv != 0) {
        return rv;
    }
    rkv_put_be32(conn->out + conn->out_len, (uint32_t)len);
    packed_len = protobuf_c_message_pack(
        message, conn->out + conn->out_len + RKV_NODE_FRAME_HEADER_LEN);
    assert(packed_len == len);
    conn->out_len += RKV_NODE_FRAME_HEADER_LEN + len;
    conn_dirty_add(conn);
    return 0;
}

/* Writes value as a protobuf varint; returns the bytes written (at most
 * 10). */
static size_t conn_put_varint(uint8_t *dst, uint64_t value)
{
    size_t n = 0;

    while (value >= 0x80) {
        dst[n++] = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    dst[n++] = (uint8_t)value;
    return n;
}

int rkv_node__conn_append_field(struct rkv_node__conn *conn,
                                uint32_t field_number,
                                const void *protobuf_message)
{
    const ProtobufCMessage *message = protobuf_message;
    size_t len = protobuf_c_message_get_packed_size(message);
    size_t frame_len = 0;
    int rv;

    assert(field_number > 0);
    if (conn->open_frame_index != SIZE_MAX) {
        frame_len =
            conn->out_len - conn->open_frame_index - RKV_NODE_FRAME_HEADER_LEN;
        /* A frame never grows past frame_max: start a new one. */
        if (frame_len + len + CONN_FIELD_OVERHEAD_MAX > conn->frame_max) {
            rkv_node__conn_close_frame(conn);
        }
    }
    if (len + CONN_FIELD_OVERHEAD_MAX > conn->frame_max) {
        return RKV_ETOOLARGE;
    }
    rv = conn_reserve(conn, RKV_NODE_FRAME_HEADER_LEN +
                                CONN_FIELD_OVERHEAD_MAX + len);
    if (rv != 0) {
        return rv;
    }
    if (conn->open_frame_index == SIZE_MAX) {
        conn->open_frame_index = conn->out_len;
        conn->out_len += RKV_NODE_FRAME_HEADER_LEN;
    }
    /* Tag: field number and wire type 2 (length-delimited). */
    conn->out_len += conn_put_varint(conn->out + conn->out_len,
                                     ((uint64_t)field_number << 3) | 2);
    conn->out_len += conn_put_varint(conn->out + conn->out_len, len);
    conn->out_len +=
        protobuf_c_message_pack(message, conn->out + conn->out_len);
    conn_dirty_add(conn);
    return 0;
}

void rkv_node__conn_close_frame(struct rkv_node__conn *conn)
{
    size_t frame_len;

    if (conn->open_frame_index == SIZE_MAX) {
        return;
    }
    frame_len =
        conn->out_len - conn->open_frame_index - RKV_NODE_FRAME_HEADER_LEN;
    assert(frame_len > 0);
    assert(frame_len <= conn->frame_max);
    rkv_put_be32(conn->out + conn->open_frame_index, (uint32_t)frame_len);
    conn->open_frame_index = SIZE_MAX;
}
