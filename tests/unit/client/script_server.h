/*
 * A scripted stand-in for a node's client port, for client unit tests: a
 * real TCP listener on 127.0.0.1 (OS-chosen port) on its own thread that
 * reads node/rpc.proto frames and hands each decoded Request to a handler.
 * The handler decides what the "node" does: reply, reply later, drop the
 * connection, or write raw bytes.
 *
 * Threads: the handler runs on the server's thread. script_server_reply(),
 * script_server_drop() and script_server_write_raw() may be called from any
 * thread; they serialize on the server's mutex.
 */
#ifndef RKV_TEST_SCRIPT_SERVER_H
#define RKV_TEST_SCRIPT_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "node/rpc.pb-c.h"

struct script_server;

/* Called for every decoded request; req is borrowed until return. */
typedef void (*script_handler_fn)(struct script_server *server, int conn_fd,
                                  const Rkv__Rpc__Request *req, void *data);

/* Starts a server; aborts the test on failure. */
struct script_server *script_server_start(script_handler_fn handler,
                                          void *data);
/* Stops the thread, closes every socket and frees the server. */
void script_server_stop(struct script_server *server);

/* "127.0.0.1:PORT", owned by the server. */
const char *script_server_addr(const struct script_server *server);

/* Encodes resp with its length prefix and writes it on conn_fd. */
void script_server_reply(struct script_server *server, int conn_fd,
                         const Rkv__Rpc__Response *resp);
/* Writes len raw bytes on conn_fd. */
void script_server_write_raw(struct script_server *server, int conn_fd,
                             const void *bytes, size_t len);
/* Closes conn_fd as a crashed node would. */
void script_server_drop(struct script_server *server, int conn_fd);

/* Counters, read under the server's mutex. */
struct script_server_stats {
    uint64_t n_accepts;           /* connections accepted */
    uint64_t n_requests;          /* frames decoded */
    uint64_t n_reads;             /* read() calls that returned data */
    uint64_t max_frames_per_read; /* most frames completed by one read() */
};
struct script_server_stats script_server_stats(struct script_server *server);

#endif /* RKV_TEST_SCRIPT_SERVER_H */
