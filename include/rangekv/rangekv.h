/*
 * The embedding API: run a rangekv node inside another program.
 *
 * A node owns one thread running its libuv loop (transport, timers, every
 * Raft group of the node, the client RPC server) and one writer thread that
 * commits Raft work to LMDB. rkv_node_start() returns once the node listens
 * on both ports; the calls below may be made from any thread except the
 * node's own.
 *
 * A cluster is formed as with `rangekv start` and `rangekv init`. Start
 * every initial member with the same join list (the peer addresses of all
 * members, in the same order). Then call rkv_node_init() on one of them, or
 * send an init request to its client port. Node ids are the 1-based
 * positions in the join list unless node_id is set. Node id and cluster id
 * are persisted in the store folder; restarting with the same folder
 * resumes the node with everything it acknowledged.
 *
 * Several nodes may run in one process (tests start whole clusters this
 * way); they share only the process-wide logger.
 */
#ifndef RANGEKV_RANGEKV_H
#define RANGEKV_RANGEKV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rangekv/error.h"
#include "rangekv/log.h"

struct rkv_node;

/* Longest "host:port" string the node accepts or returns, NUL included. */
#define RKV_NODE_ADDR_MAX 64
/* Maximum members in a join list. */
#define RKV_NODE_JOIN_MAX 16
/* Default split threshold: 512 MiB, CockroachDB's range_max_bytes. */
#define RKV_NODE_SPLIT_BYTES_DEFAULT (512ull * 1024 * 1024)
/* Smallest map_size_max a node accepts: 1 MiB. */
#define RKV_NODE_MAP_SIZE_MAX_MIN (1u << 20)

/* Settings of one node; mirrors the flags of `rangekv start`. Strings are
 * borrowed for the duration of rkv_node_start() only (the node copies
 * them). Zero or NULL selects the default named on each field. */
struct rkv_node_config {
    const char *store_dir;             /* required; created when missing */
    const char *listen_addr;           /* peer (Raft) port; "127.0.0.1:0" */
    const char *client_addr;           /* client RPC port; "127.0.0.1:0" */
    const char *advertise_addr;        /* peer address sent to others;
                                          listen_addr after binding */
    const char *advertise_client_addr; /* client address sent to clients;
                                          client_addr after binding */
    const char *const *join;           /* peer addresses of all initial
                                          members, in the same order on
                                          every member; required */
    size_t n_join;                     /* 1 .. RKV_NODE_JOIN_MAX */
    uint64_t node_id;                  /* 0: position in join (1-based) */
    uint64_t split_bytes;              /* range split threshold in bytes;
                                          RKV_NODE_SPLIT_BYTES_DEFAULT */
    const char *cluster_secret;        /* NULL: peers are not authenticated */
    uint32_t tick_ms;                  /* Raft tick in milliseconds; 100 */
    uint64_t log_compact_entries;      /* applied Raft log entries each
                                          range keeps for lagging
                                          followers; 20000 */
    bool no_sync;                      /* skip fsync (tests only: a crash
                                          then loses acknowledged writes) */
    uint64_t map_size_max;             /* largest size in bytes the store's
                                          LMDB map may grow to; past it
                                          writes fail with RKV_EMAPFULL;
                                          0: 1 TiB */
    uint32_t clients_max;              /* open client connections; more
                                          are closed on accept; 0: 4096 */
    uint32_t peers_pending_max;        /* inbound peer connections without
                                          an accepted Hello; more are
                                          closed on accept; 0: 64 */
};

/* Starts a node: opens or creates the store, binds both listeners, starts
 * the loop and writer threads, and writes STORE/addresses. On success *out
 * is a running node, stopped and freed by rkv_node_stop().
 * Errors: RKV_ECONFIG (invalid config; errmsg names the setting),
 * -EADDRINUSE and other -errno from binding, store errors from opening.
 * errmsg (errmsg_len bytes, may be NULL) receives a message on failure. */
int rkv_node_start(const struct rkv_node_config *config, struct rkv_node **out,
                   char *errmsg, size_t errmsg_len);

/* Copies the node's advertised peer and client addresses ("host:port",
 * actual ports when 0 was asked) into buffers of RKV_NODE_ADDR_MAX bytes. */
void rkv_node_addresses(const struct rkv_node *node,
                        char peer_addr[RKV_NODE_ADDR_MAX],
                        char client_addr[RKV_NODE_ADDR_MAX]);

/* Returns the node id (known from the start). */
uint64_t rkv_node_id(const struct rkv_node *node);

/* Bootstraps a new cluster from this node: picks a cluster id and creates
 * the first range with every join member as a voter. The other members
 * learn the cluster id from this node over the peer transport. Blocks until
 * done. Returns 0, or RKV_ESTALE when the node already belongs to a
 * cluster. */
int rkv_node_init(struct rkv_node *node);

/* Stops the node: closes listeners and connections, fails pending client
 * requests with RKV_ESHUTDOWN, joins both threads, closes the store and
 * frees node. Everything acknowledged is durable already (unless no_sync). */
void rkv_node_stop(struct rkv_node *node);

#endif /* RANGEKV_RANGEKV_H */
