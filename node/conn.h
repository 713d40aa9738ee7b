/*
 * Framed TCP connections on the node's loop thread, shared by the peer
 * transport and the client RPC server.
 *
 * Wire format: every frame is a 4-byte big-endian payload length followed by
 * the payload (one encoded protobuf message).
 *
 * Happy path: bytes read from the socket go through a frame reader that
 * checks the declared length against the connection's frame_max before it
 * allocates anything, then hands each complete payload to ops->frame_cb.
 * Outgoing frames are appended to an output buffer; the node calls
 * rkv_node__io_flush() once per loop iteration (from its uv_check handle),
 * so all frames produced in one iteration leave in one uv_write.
 *
 * Failure modes:
 *   - a declared length of 0 or above frame_max: the connection is closed and
 *     the error logged (RKV_EMALFORMED, RKV_ETOOLARGE); nothing is allocated;
 *   - frame_cb returns an error (a payload that fails to decode, a refused
 *     handshake): the connection is closed;
 *   - a read or write error, or EOF: the connection is closed;
 *   - output above out_max bytes queued (a peer that stops reading): the
 *     frame is refused with RKV_EBUSY and the caller decides (Raft messages
 *     are dropped, which Raft tolerates).
 * Closing is asynchronous: rkv_node__conn_close() starts it, and ops->close_cb
 * runs once, later, after which the owner frees the connection.
 *
 * Invariants:
 *   1. A connection is on the io's dirty list iff out_len > 0 and it is not
 *      closing.
 *   2. frame_cb is never called after rkv_node__conn_close().
 */
#ifndef RKV_NODE_CONN_H
#define RKV_NODE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/common.h"

/* Bytes of the length prefix in front of every frame. */
#define RKV_NODE_FRAME_HEADER_LEN 4
/* Size of the loop-wide read buffer handed to libuv. */
#define RKV_NODE_READ_BUF_LEN (64 * 1024)

struct rkv_node__conn;

/* Loop-wide state shared by every connection of one node. Owned by the node;
 * lives on its loop thread. */
struct rkv_node__io {
    uv_loop_t *loop;                         /* borrowed */
    struct rkv_node__conn *dirty;            /* head of the dirty list */
    uint8_t read_buf[RKV_NODE_READ_BUF_LEN]; /* one read at a time per loop */
    bool read_buf_in_use;      /* libuv hands it to one read at once */
    uint64_t n_bytes_sent;     /* bytes written by every connection */
    uint64_t n_bytes_received; /* bytes read by every connection */
    uint64_t n_malformed;      /* connections closed for bad input */
};

struct rkv_node__conn_ops {
    /* One complete payload, borrowed until return. A negative return closes
     * the connection. */
    int (*frame_cb)(struct rkv_node__conn *conn, const uint8_t *payload,
                    size_t payload_len);
    /* The connection is closed; the owner may free it now. */
    void (*close_cb)(struct rkv_node__conn *conn);
};

struct rkv_node__conn {
    uv_tcp_t tcp;                         /* the socket; data points here */
    struct rkv_node__io *io;              /* borrowed */
    const struct rkv_node__conn_ops *ops; /* borrowed, static */
    void *data;                           /* owner's pointer */
    const char *kind;                     /* "peer" or "client", for logs */
    uint32_t frame_max;                   /* bytes of payload accepted */
    size_t out_max;                       /* bytes of output queued at most */

    /* Frame reader state. */
    uint8_t header[RKV_NODE_FRAME_HEADER_LEN]; /* partial length prefix */
    size_t header_len;                         /* bytes of header received */
    uint8_t *payload;                          /* owned; NULL between frames */
    size_t payload_len;        /* declared length of the frame */
    size_t payload_filled;     /* bytes of payload received */
    uint64_t frame_started_ms; /* monotonic time the frame being read
                                  began; 0 between frames */

    /* Output state. */
    uint8_t *out;                      /* owned; frames not yet written */
    size_t out_len;                    /* bytes used in out */
    size_t out_cap;                    /* bytes allocated for out */
    size_t open_frame_index;           /* offset of the open frame header,
                                          SIZE_MAX when none is open */
    size_t write_queue_len;            /* bytes handed to uv_write */
    struct rkv_node__conn *dirty_prev; /* dirty list links */
    struct rkv_node__conn *dirty_next;
    bool dirty; /* on the dirty list */

    bool closing; /* close started */
    bool reading; /* uv_read_start called */
};

/* Sets up io on loop. */
void rkv_node__io_init(struct rkv_node__io *io, uv_loop_t *loop);
/* Counts one connection closed for bad input and returns the level to log
 * it at: RKV_WARN the first time and every RKV_NODE_MALFORMED_WARN_EVERY-th
 * time, RKV_DEBUG otherwise, so that a flood of bad frames cannot flood the
 * log. */
enum rkv_log_level rkv_node__io_malformed_level(struct rkv_node__io *io);
#define RKV_NODE_MALFORMED_WARN_EVERY 100

/* Writes out the pending output of every dirty connection. */
void rkv_node__io_flush(struct rkv_node__io *io);

/* Initializes conn's socket on io's loop; the caller then connects or
 * accepts into &conn->tcp and calls rkv_node__conn_start(). */
int rkv_node__conn_init(struct rkv_node__conn *conn, struct rkv_node__io *io,
                        const struct rkv_node__conn_ops *ops, void *data,
                        const char *kind, uint32_t frame_max, size_t out_max);
/* Starts reading frames. */
int rkv_node__conn_start(struct rkv_node__conn *conn);
/* Returns whether conn has been reading one frame for longer than
 * timeout_ms at now_ms (a peer that stopped inside a frame holds its
 * buffer, up to frame_max bytes). */
bool rkv_node__conn_frame_overdue(const struct rkv_node__conn *conn,
                                  uint64_t now_ms, uint64_t timeout_ms);
/* Starts closing; ops->close_cb runs later, exactly once. Idempotent. */
void rkv_node__conn_close(struct rkv_node__conn *conn);

/* Appends one frame holding the packed protobuf message. Returns RKV_EBUSY
 * when output is over out_max, -ENOMEM, or RKV_ESHUTDOWN when closing. */
int rkv_node__conn_send_message(struct rkv_node__conn *conn,
                                const void *protobuf_message);

/* Batching of repeated fields: opens a frame (when none is open) and appends
 * field number field_number (length-delimited) holding the packed message,
 * so that a frame built of many calls decodes as a message with a repeated
 * field. The frame is closed at the next flush or by
 * rkv_node__conn_close_frame(). Same errors as send_message. */
int rkv_node__conn_append_field(struct rkv_node__conn *conn,
                                uint32_t field_number,
                                const void *protobuf_message);
void rkv_node__conn_close_frame(struct rkv_node__conn *conn);

/* Frame reader, exposed for unit tests: feeds len bytes of stream into conn,
 * calling ops->frame_cb for each complete frame. Returns 0, RKV_ETOOLARGE,
 * RKV_EMALFORMED (length 0), -ENOMEM, or frame_cb's error. */
int rkv_node__conn_feed(struct rkv_node__conn *conn, const uint8_t *buf,
                        size_t len);

#endif /* RKV_NODE_CONN_H */
