/*
 * A small blocking client of node/rpc.proto for node and integration tests,
 * plus helpers that start and stop `rangekv start` processes.
 *
 * The routing helpers send every request with range_id 0 (the node routes
 * by key), follow RKV_ENOTLEADER hints and retry RKV_EUNAVAILABLE,
 * RKV_ERANGENOTFOUND, RKV_EKEYMISMATCH and connection errors across all
 * nodes until a deadline, the way a real client would.
 */
#ifndef RKV_TEST_NODE_RPC_H
#define RKV_TEST_NODE_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "node/rpc.pb-c.h"

#define RKV_TEST_NODES_MAX 8
#define RKV_TEST_ADDR_MAX 64

/* Connects to "host:port"; returns a socket or a negative errno. */
int rkv_test_rpc_connect(const char *addr);

/* Sends one request frame; 0 or a negative errno. */
int rkv_test_rpc_send(int fd, Rkv__Rpc__Request *request);
/* Reads one response frame; NULL on an I/O error or a malformed reply. */
Rkv__Rpc__Response *rkv_test_rpc_recv(int fd);

/* Sends request on fd and reads its response; NULL on an I/O error or a
 * malformed reply. Free with rkv__rpc__response__free_unpacked(r, NULL). */
Rkv__Rpc__Response *rkv_test_rpc_call(int fd, Rkv__Rpc__Request *request);

/* Connects to addr, calls, closes. */
Rkv__Rpc__Response *rkv_test_rpc_call_addr(const char *addr,
                                           Rkv__Rpc__Request *request);

/* Sends request to the nodes in addrs (client addresses) until one returns
 * a final response or timeout_ms passes. Returns that response, or NULL on
 * timeout. A final response has error 0 or an error other than the retried
 * ones above. */
Rkv__Rpc__Response *rkv_test_rpc_route(char addrs[][RKV_TEST_ADDR_MAX],
                                       size_t n_addrs,
                                       Rkv__Rpc__Request *request,
                                       uint32_t timeout_ms);

/* Routed put and get of string keys; return the response error, or
 * RKV_ETIMEOUT. get sets *found and copies the value into value (at most
 * value_cap bytes, NUL-terminated). */
int rkv_test_put(char addrs[][RKV_TEST_ADDR_MAX], size_t n_addrs,
                 const char *key, const char *value, uint32_t timeout_ms);
int rkv_test_get(char addrs[][RKV_TEST_ADDR_MAX], size_t n_addrs,
                 const char *key, bool *found, char *value, size_t value_cap,
                 uint32_t timeout_ms);

/* ---- processes ---------------------------------------------------------- */

/* Returns a free port on 127.0.0.1 chosen by the OS (bind to port 0, read
 * it, close). */
uint16_t rkv_test_pick_port(void);

/* One `rangekv start` process of a test cluster. */
struct rkv_test_proc {
    pid_t pid;                           /* 0 when not running */
    char store[512];                     /* store folder */
    char peer_addr[RKV_TEST_ADDR_MAX];   /* fixed before start */
    char client_addr[RKV_TEST_ADDR_MAX]; /* read from STORE/addresses */
};

struct rkv_test_cluster {
    struct rkv_test_proc procs[RKV_TEST_NODES_MAX];
    size_t n_procs;
    char client_addrs[RKV_TEST_NODES_MAX][RKV_TEST_ADDR_MAX];
    char split_bytes[32];         /* --split-bytes value */
    char log_compact_entries[32]; /* --log-compact-entries; "": the
                                     default */
};

/* Picks n free peer ports (bind to port 0, read, close), and fills the
 * store folders under dir. */
void rkv_test_cluster_setup(struct rkv_test_cluster *cluster, size_t n,
                            const char *dir, uint64_t split_bytes);
/* Starts process i ($RKV_BUILD_DIR/cmd/rangekv start ...) and waits until it
 * wrote its addresses; fails the test on error. */
void rkv_test_cluster_start_node(struct rkv_test_cluster *cluster, size_t i);
/* Sends SIGKILL to process i and reaps it. */
void rkv_test_cluster_kill_node(struct rkv_test_cluster *cluster, size_t i);
/* Returns true when process i is still running (not exited). */
bool rkv_test_cluster_node_alive(struct rkv_test_cluster *cluster, size_t i);
/* Runs `rangekv init` against node i; fails the test on error. */
void rkv_test_cluster_init(struct rkv_test_cluster *cluster, size_t i);
/* Returns whether node i's log (STORE/node.log) contains text. */
bool rkv_test_cluster_log_contains(struct rkv_test_cluster *cluster, size_t i,
                                   const char *text);
/* Sends SIGTERM to every running process and reaps them. */
void rkv_test_cluster_stop(struct rkv_test_cluster *cluster);

#endif /* RKV_TEST_NODE_RPC_H */
