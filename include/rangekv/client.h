/*
 * The rangekv client library: a connection pool to a cluster with a range
 * cache, routing, retries and many requests in flight.
 *
 * Threads: a client owns one libuv loop thread. The blocking calls below may
 * be made from any number of threads at once; each submits its request to
 * the loop thread and waits for the reply. rkv_client_submit() is the
 * asynchronous form: its callback runs on the client's loop thread and must
 * not block.
 *
 * Routing and retries: the client keeps a cache of range descriptors filled
 * from any node (the meta span), sends each request to the cached leader of
 * the range holding the key, and on RKV_ENOTLEADER, RKV_EKEYMISMATCH,
 * RKV_ERANGENOTFOUND or RKV_EUNAVAILABLE refreshes and retries with
 * exponential backoff until the request's deadline.
 *
 * Outcomes: a write whose connection dropped after the request was sent has
 * an unknown outcome; it is reported as RKV_EUNKNOWN, never as failed,
 * because the cluster may have applied it. The same holds for a write still
 * waiting for its reply at the deadline, and for a node's RKV_ETIMEOUT or
 * RKV_ESHUTDOWN reply to a write. (RKV_EDROPPED means the proposal can
 * never apply, so that write is re-sent.) Such writes are never re-sent by the
 * client. Reads are re-sent after any failure until the deadline.
 *
 * Scans: a SCAN continues from range to range until limit pairs or the end
 * key. Each range is read at its own moment, so a scan over several ranges
 * is not one snapshot.
 *
 * Limits: keys are 1 to RKV_CLIENT_KEY_MAX bytes (a SCAN bound may be
 * empty), values at most RKV_CLIENT_VALUE_MAX, a whole request or reply at
 * most 16 MiB on the wire (RKV_ETOOLARGE otherwise; a reply frame above it
 * closes the connection before anything is allocated for it).
 *
 * Ownership: keys and values passed in are borrowed for the duration of the
 * call (blocking) or copied before rkv_client_submit() returns (async).
 * Values returned in a struct rkv_client_result are owned by the result and
 * freed by rkv_client_result_free().
 */
#ifndef RANGEKV_CLIENT_H
#define RANGEKV_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rangekv/error.h"

struct rkv_client;

/* Limits a client enforces before sending (the node enforces them too). */
/* Keys: LMDB's 511-byte maximum key size in Debian's build less the store's
 * 2-byte prefix, the same limit the node enforces (RKV_RANGE_KEY_MAX). */
#define RKV_CLIENT_KEY_MAX 509                  /* bytes */
#define RKV_CLIENT_VALUE_MAX (4u * 1024 * 1024) /* bytes, the default limit */

struct rkv_client_options {
    const char *const *hosts; /* "host:port" client addresses, borrowed */
    size_t n_hosts;           /* at least 1 */
    uint32_t n_connections;   /* per node; 0 means 1; at most 64 */
    uint32_t timeout_ms;      /* per request, retries included; 0: 10000 */
    uint32_t inflight_max;    /* per client; past it submit returns RKV_EBUSY;
                                 0: 4096 */
};

enum rkv_client_op {
    RKV_CLIENT_GET = 0,
    RKV_CLIENT_PUT,
    RKV_CLIENT_DELETE,
    RKV_CLIENT_CAS,
    RKV_CLIENT_SCAN,
    RKV_CLIENT_BATCH,
};

struct rkv_client_batch_op {
    bool is_delete; /* false: put */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
};

/* One request; unused fields are ignored for each op. */
struct rkv_client_request {
    enum rkv_client_op op;
    const void *key; /* GET, PUT, DELETE, CAS; SCAN: start key */
    size_t key_len;
    const void *value; /* PUT; CAS: new value (NULL: delete on match) */
    size_t value_len;
    const void *expected; /* CAS: NULL means "key must be absent" */
    size_t expected_len;
    const void *end_key; /* SCAN: exclusive end; NULL/0: keyspace end */
    size_t end_key_len;
    uint32_t limit;            /* SCAN: maximum pairs, 0: 1000 */
    bool serializable;         /* GET, SCAN: skip ReadIndex (may be stale) */
    const struct rkv_client_batch_op *ops; /* BATCH: one range only, at
                                              most 10000 ops */
    size_t n_ops;
};

struct rkv_client_kv {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
};

struct rkv_client_result {
    int rv;            /* 0 or a negative error code */
    bool found;        /* GET: key existed; DELETE: key existed; CAS: swapped */
    uint8_t *value;    /* GET: the value; CAS: current value when not swapped */
    size_t value_len;
    struct rkv_client_kv *pairs; /* SCAN: in key order */
    size_t n_pairs;
    uint32_t n_retries; /* how many times the client re-sent the request */
    char error_message[256]; /* detail when rv != 0 */
};

/* Opens a client; *out is freed by rkv_client_close(). Fails with -EINVAL
 * on bad options, or a negative code when the loop thread cannot start.
 * Connections are made lazily, so an unreachable cluster shows up as
 * RKV_EUNAVAILABLE or RKV_ETIMEOUT on the first request. */
int rkv_client_open(const struct rkv_client_options *options,
                    struct rkv_client **out);

/* Fails every pending request with RKV_ESHUTDOWN (or RKV_EUNKNOWN for sent
 * writes), joins the loop thread and frees the client. */
void rkv_client_close(struct rkv_client *client);

/* Runs one request and waits for it. Returns result->rv. The result must be
 * freed with rkv_client_result_free() whatever the outcome. Errors beyond
 * the node's: -EINVAL (bad request), RKV_ETOOLARGE (key or value over its
 * limit), RKV_EBUSY (inflight_max reached), RKV_ETIMEOUT (no success before
 * timeout_ms; nothing was applied), RKV_EUNKNOWN (a write that may or may
 * not have been applied), RKV_EKEYMISMATCH (BATCH keys in more than one
 * range), RKV_ESHUTDOWN, and -EDEADLK when called on the client's loop
 * thread (from a callback). */
int rkv_client_do(struct rkv_client *client,
                  const struct rkv_client_request *request,
                  struct rkv_client_result *result);

/* Called once per submitted request on the client's loop thread. The
 * result struct itself is the client's and valid only until the callback
 * returns; what it points to (value, pairs) is the callback's: release it
 * with rkv_client_result_free(result), or move the pointers out and set them
 * to NULL first. Do not free() the result pointer. The callback may call
 * rkv_client_submit() (the request is routed when the callback returns,
 * with no thread hop) but must not call a blocking function of this
 * client or rkv_client_close(). */
typedef void (*rkv_client_done_cb)(void *data,
                                   struct rkv_client_result *result);

/* Submits a request without waiting. Returns 0 and later calls done exactly
 * once, or returns an error (-EINVAL, RKV_ETOOLARGE, RKV_EBUSY at
 * inflight_max, -ENOMEM, RKV_ESHUTDOWN) and never calls it. */
int rkv_client_submit(struct rkv_client *client,
                      const struct rkv_client_request *request,
                      rkv_client_done_cb done, void *data);

void rkv_client_result_free(struct rkv_client_result *result);

/* Convenience wrappers over rkv_client_do(). get returns RKV_ENOTFOUND for
 * a missing key; *value_out is then NULL. Free *value_out with free(). */
int rkv_client_put(struct rkv_client *client, const void *key, size_t key_len,
                   const void *value, size_t value_len);
int rkv_client_get(struct rkv_client *client, const void *key, size_t key_len,
                   uint8_t **value_out, size_t *value_len_out);
int rkv_client_delete(struct rkv_client *client, const void *key,
                      size_t key_len);

/* One range as the cluster reports it. */
struct rkv_client_range {
    uint64_t range_id;
    uint8_t *start_key; /* inclusive */
    size_t start_key_len;
    uint8_t *end_key; /* exclusive; length 0 means the keyspace end */
    size_t end_key_len;
    uint64_t generation;
    uint64_t leader_node_id; /* 0 when unknown */
    uint64_t replica_node_ids[8];
    size_t n_replicas;
    uint64_t live_bytes;
    uint64_t key_count;
};

/* Lists every range in key order (fresh from the cluster, not the cache)
 * and refreshes the client's cache with them. Free with
 * rkv_client_ranges_free(). */
int rkv_client_ranges(struct rkv_client *client,
                      struct rkv_client_range **ranges_out,
                      size_t *n_ranges_out);
void rkv_client_ranges_free(struct rkv_client_range *ranges, size_t n_ranges);

/* Splits the range holding split_key at that key (it starts the right-hand
 * range). Fails with -EINVAL for a key that is already a range boundary or
 * inside the reserved system span. */
int rkv_client_split(struct rkv_client *client, const void *split_key,
                     size_t split_key_len);

/* Node counters as shown by `rangekv status`. */
struct rkv_client_node_status {
    uint64_t node_id;
    uint64_t cluster_id;
    uint64_t n_ranges;
    uint64_t n_leaders;
    uint64_t n_proposals;
    uint64_t n_commits;
    uint64_t n_fsyncs;
    uint64_t n_entries_applied;
    uint64_t n_puts;
    uint64_t uptime_ms;
    uint64_t cpu_user_ms;
    uint64_t cpu_system_ms;
    uint64_t n_bytes_sent;     /* bytes written to peers and clients */
    uint64_t n_bytes_received; /* bytes read from peers and clients */
    uint64_t n_quiesced;       /* ranges whose Raft group is quiesced */
};

/* Reads the counters of the node at host ("host:port", a client address).
 * Fails with RKV_EUNAVAILABLE after three failed connection attempts, so a
 * dead node does not cost the whole timeout. */
int rkv_client_node_status(struct rkv_client *client, const char *host,
                           struct rkv_client_node_status *status_out);

/* Bootstraps a new cluster through the node at host ("host:port", a client
 * address), as `rangekv init` does, once every initial member runs. Sets
 * *cluster_id_out on success. Fails with RKV_ESTALE when the node already
 * belongs to a cluster, and RKV_EUNKNOWN when the connection dropped after
 * the request was sent (check with a request before retrying). */
int rkv_client_init_cluster(struct rkv_client *client, const char *host,
                            uint64_t *cluster_id_out);

/* Lists the client addresses of every node the cluster lists, so callers
 * can ask each for its status. Free with rkv_client_strings_free(). */
int rkv_client_node_addrs(struct rkv_client *client, char ***addrs_out,
                          size_t *n_addrs_out);
void rkv_client_strings_free(char **strings, size_t n_strings);

#endif /* RANGEKV_CLIENT_H */
