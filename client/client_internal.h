/*
 * Internals shared by the files of the client library: the client object,
 * requests in flight (ops), connections, the node table and the range cache.
 * Everything here lives on the client's loop thread unless its field
 * comment states otherwise.
 *
 * Files:
 *   client.c        open/close, the loop thread, submit, blocking calls
 *   client_op.c     the op state machine: routing, retries, deadlines
 *   client_conn.c   connections: lazy connect, framing, coalesced writes
 *   client_cache.c  the range cache and the node table
 *   client_wire.c   the only file that touches node/rpc.proto types
 *
 * Op states and the function performing each transition:
 *   SUBMITTED  --op_start()-->        ROUTING (transient)
 *   ROUTING    --op_send()-->         INFLIGHT  (frame queued on a conn)
 *   ROUTING    --op_wait_cache()-->   WAIT_CACHE (no descriptor for its key)
 *   ROUTING    --op_backoff()-->      BACKOFF   (no usable connection)
 *   INFLIGHT   --reply / drop-->      ROUTING (retry) or DONE
 *   WAIT_CACHE --cache refreshed-->   ROUTING
 *   BACKOFF    --timer-->             ROUTING
 *   any        --deadline / close-->  DONE
 *
 * Invariants:
 *   1. An op is on exactly one state list (submit queue, conn->ops,
 *      cache_wait, backoff) unless it is DONE or ROUTING.
 *   2. An op is in the id table iff it is INFLIGHT; a reply whose id is not
 *      in the table belongs to an abandoned attempt and is dropped.
 *   3. client->ops lists every live op in submission order, so its head has
 *      the earliest deadline (every op uses the client's timeout_ms).
 *   4. A write whose frame was handed to uv_write and whose reply never came
 *      ends as RKV_EUNKNOWN, never as a failure and never retried.
 */
#ifndef RKV_CLIENT_INTERNAL_H
#define RKV_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/common.h"
#include "rangekv/client.h"

/* Largest frame payload sent or accepted; checked before allocating. */
#define RKV_CLIENT_FRAME_MAX (16u * 1024 * 1024)
/* Bytes of the big-endian length in front of every frame. */
#define RKV_CLIENT_FRAME_HEADER_LEN 4
/* Buckets of the id table; a power of two. Chains grow past it. */
#define RKV_CLIENT_ID_BUCKETS 4096
/* First and largest pause between retries of one op, in milliseconds. The
 * cap is low because the common wait is a new range electing its first
 * leader after a split: polling every 200 ms ends the wait soon after the
 * election, where a 1 s cap added up to a second of idle time (measured
 * with `rangekv bench kv` at 64 clients and --split-bytes 65536). */
#define RKV_CLIENT_BACKOFF_MIN_MS 10
#define RKV_CLIENT_BACKOFF_MAX_MS 200
/* First and largest pause before reconnecting to a node, in milliseconds. */
#define RKV_CLIENT_RECONNECT_MIN_MS 50
#define RKV_CLIENT_RECONNECT_MAX_MS 2000
/* Redirects (not-leader hints, fresh descriptors) followed at once before an
 * op starts backing off, so two nodes that disagree cannot spin it. */
#define RKV_CLIENT_REDIRECTS_MAX 4
/* A key the cache cannot place within this long after a refresh goes by
 * key at once rather than asking for another refresh, so a meta span that
 * lags a split costs at most one RangesRequest per interval. */
#define RKV_CLIENT_REFRESH_INTERVAL_MS 250
/* Connection failures after which an op for one given node (STATUS, INIT)
 * gives up with RKV_EUNAVAILABLE instead of waiting for its deadline. */
#define RKV_CLIENT_TARGET_RETRIES_MAX 3
/* Longest "host:port" address, terminator included. */
#define RKV_CLIENT_ADDR_MAX 272
/* Replicas kept per cached range; more are ignored for routing. */
#define RKV_CLIENT_REPLICAS_MAX 8
/* Operations in one BATCH request. */
#define RKV_CLIENT_BATCH_OPS_MAX 10000

/* ---- intrusive lists -------------------------------------------------- */

/* A link in a circular doubly-linked list; a head is a link too. */
struct rkv_client__link {
    struct rkv_client__link *prev; /* previous link, or the head */
    struct rkv_client__link *next; /* next link, or the head */
};

#define RKV_CLIENT_CONTAINER(ptr, type, field)                                 \
    ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

static inline void rkv_client__link_init(struct rkv_client__link *link)
{
    link->prev = link;
    link->next = link;
}

static inline bool rkv_client__list_is_empty(const struct rkv_client__link *h)
{
    return h->next == h;
}

static inline void rkv_client__list_push_back(struct rkv_client__link *head,
                                              struct rkv_client__link *link)
{
    link->prev = head->prev;
    link->next = head;
    head->prev->next = link;
    head->prev = link;
}

static inline void rkv_client__list_remove(struct rkv_client__link *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
    rkv_client__link_init(link);
}

/* Moves every link of src to the end of dst; src ends empty. */
static inline void rkv_client__list_splice(struct rkv_client__link *dst,
                                           struct rkv_client__link *src)
{
    if (rkv_client__list_is_empty(src)) {
        return;
    }
    src->next->prev = dst->prev;
    src->prev->next = dst;
    dst->prev->next = src->next;
    dst->prev = src->prev;
    rkv_client__link_init(src);
}

/* ---- byte buffers ----------------------------------------------------- */

/* A growable byte buffer; data is owned and freed by rkv_client__buf_free. */
struct rkv_client__buf {
    uint8_t *data; /* owned; NULL when cap is 0 */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
};

/* Makes room for at least extra more bytes. Returns 0 or -ENOMEM. */
int rkv_client__buf_reserve(struct rkv_client__buf *buf, size_t extra);
void rkv_client__buf_free(struct rkv_client__buf *buf);

/* ---- range cache -------------------------------------------------------- */

/* One cached range descriptor; the cache owns both keys. */
struct rkv_client__range {
    uint64_t range_id;   /* the cluster's id of the range */
    uint64_t generation; /* bumped by every split or membership change */
    uint8_t *start_key;  /* inclusive; owned */
    size_t start_key_len;
    uint8_t *end_key; /* exclusive; owned; length 0 is the keyspace end */
    size_t end_key_len;
    uint64_t leader_node_id; /* last known leader, 0 when unknown */
    uint64_t replica_node_ids[RKV_CLIENT_REPLICAS_MAX]; /* voters first */
    size_t n_replicas;
};

/* Sorted, non-overlapping descriptors. Ranges only split, never merge, so a
 * newer descriptor replaces every cached one it overlaps. */
struct rkv_client__cache {
    struct rkv_client__range *ranges; /* owned, sorted by start_key */
    size_t n_ranges;
    size_t ranges_cap; /* entries allocated */
};

/* Compares two byte strings as the store orders keys (memcmp, then length).
 * An empty key sorts first; treating an empty end key as "the keyspace
 * end" is the caller's job. */
int rkv_client__key_compare(const void *a, size_t a_len, const void *b,
                            size_t b_len);

/* Returns true when key lies in [start, end) and end_len 0 is unbounded. */
bool rkv_client__range_contains(const struct rkv_client__range *range,
                                const void *key, size_t key_len);

void rkv_client__cache_init(struct rkv_client__cache *cache);
void rkv_client__cache_free(struct rkv_client__cache *cache);

/* Returns the cached range holding key, borrowed until the next change of
 * the cache, or NULL when none is cached. */
struct rkv_client__range *
rkv_client__cache_lookup(struct rkv_client__cache *cache, const void *key,
                         size_t key_len);

/* Copies desc into the cache. Cached ranges it overlaps are evicted, unless
 * one of them, or the same range id, has a higher generation, in which case
 * desc is stale and ignored (returns 0). Returns 0 or -ENOMEM. */
int rkv_client__cache_install(struct rkv_client__cache *cache,
                              const struct rkv_client__range *desc);

/* Drops the range with this id, if cached. */
void rkv_client__cache_evict(struct rkv_client__cache *cache,
                             uint64_t range_id);

/* Records leader_node_id as the range's leader, if the range is cached. */
void rkv_client__cache_set_leader(struct rkv_client__cache *cache,
                                  uint64_t range_id, uint64_t leader_node_id);

/* ---- nodes and connections -------------------------------------------- */

struct rkv_client;
struct rkv_client__op;

enum rkv_client__conn_state {
    RKV_CLIENT_CONN_IDLE = 0,   /* no socket; tcp is not initialized */
    RKV_CLIENT_CONN_CONNECTING, /* uv_tcp_connect pending */
    RKV_CLIENT_CONN_CONNECTED,  /* reading; writes flow */
    RKV_CLIENT_CONN_CLOSING,    /* uv_close pending; back to IDLE after */
};

/* One TCP connection to a node's client port. The struct lives as long as
 * the client; the socket comes and goes. */
struct rkv_client__conn {
    struct rkv_client *client;     /* borrowed owner */
    struct rkv_client__node *node; /* borrowed owner */
    enum rkv_client__conn_state state;
    uv_tcp_t tcp;                /* valid unless IDLE */
    uv_connect_t connect_req;    /* in use while CONNECTING */
    uv_write_t write_req;        /* in use while is_writing */
    bool is_writing;             /* one uv_write at a time */
    struct rkv_client__buf out;  /* frames waiting for the next uv_write */
    struct rkv_client__buf wbuf; /* frames handed to the pending uv_write */
    struct rkv_client__buf in;   /* bytes read and not yet parsed */
    uint64_t n_frames_queued;    /* frames ever appended to out */
    uint64_t n_frames_handed;    /* frames ever handed to uv_write */
    struct rkv_client__link ops; /* INFLIGHT ops sent on this connection */
    struct rkv_client__link flush_link; /* on client->flush_list when out
                                           has frames to write */
    uint64_t reconnect_at_ms;    /* no connect attempt before this time */
    uint32_t reconnect_delay_ms; /* next backoff; reset on connect */
    uint32_t n_failures;         /* consecutive failed connects or drops */
};

/* A node as the client knows it: a seed address from the options (node id
 * still 0) or an entry from a RangesResponse. */
struct rkv_client__node {
    uint64_t node_id;               /* 0 until the cluster names it */
    char addr[RKV_CLIENT_ADDR_MAX]; /* client address "host:port" */
    struct rkv_client__conn *conns; /* owned, n_connections of them */
    uint32_t next_conn_index;       /* round-robin over conns */
};

/* ---- ops --------------------------------------------------------------- */

/* Op kinds beyond the public enum rkv_client_op. */
enum {
    RKV_CLIENT__OP_RANGES = 100, /* RangesRequest to any node */
    RKV_CLIENT__OP_SPLIT,        /* SplitRequest to the key's leader */
    RKV_CLIENT__OP_STATUS,       /* StatusRequest to target_addr */
    RKV_CLIENT__OP_INIT,         /* InitRequest to target_addr */
};

enum rkv_client__op_state {
    RKV_CLIENT_OP_SUBMITTED = 0,
    RKV_CLIENT_OP_ROUTING,
    RKV_CLIENT_OP_WAIT_CACHE,
    RKV_CLIENT_OP_BACKOFF,
    RKV_CLIENT_OP_INFLIGHT,
    RKV_CLIENT_OP_DONE,
};

/* A blocking caller's rendezvous with the loop thread. */
struct rkv_client__waiter {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool is_done; /* set under mutex by the loop thread */
};

/* One request from submit to completion, with its own copies of the keys and
 * values. Freed by the loop thread after an async callback, or by the
 * blocking caller after the waiter is signalled. */
struct rkv_client__op {
    struct rkv_client *client; /* borrowed */
    int kind;                  /* enum rkv_client_op or RKV_CLIENT__OP_* */
    enum rkv_client__op_state state;

    /* The request, copied at submit; one allocation in arena. */
    uint8_t *key; /* GET/PUT/DELETE/CAS/SPLIT key; SCAN start */
    size_t key_len;
    uint8_t *value; /* PUT value; CAS new value */
    size_t value_len;
    bool has_value;    /* CAS: false deletes on match */
    uint8_t *expected; /* CAS expected value */
    size_t expected_len;
    bool has_expected; /* CAS: false means "must be absent" */
    uint8_t *end_key;  /* SCAN exclusive end; length 0: unbounded */
    size_t end_key_len;
    uint32_t limit;                        /* SCAN pairs wanted in total */
    bool serializable;                     /* GET/SCAN skip ReadIndex */
    struct rkv_client_batch_op *batch_ops; /* BATCH; pointers into arena */
    size_t n_batch_ops;
    char target_addr[RKV_CLIENT_ADDR_MAX]; /* STATUS, INIT: node to ask */
    void *arena; /* owned; contains the copies above */

    /* Routing and retry state. */
    uint64_t id;                   /* request id of the attempt in flight */
    uint64_t deadline_ms;          /* monotonic; the op fails past it */
    uint64_t retry_at_ms;          /* BACKOFF: when to route again */
    uint32_t backoff_ms;           /* next pause; doubles up to the max */
    uint32_t n_redirects;          /* redirects followed since the last pause */
    uint32_t n_attempts;           /* frames sent, for replica rotation */
    uint64_t range_id;             /* range of the attempt in flight, or 0 */
    uint64_t preferred_node_id;    /* RANGES or by_key: node a hint named */
    bool is_routed_by_key;         /* sent with range id 0: the node finds
                                      the range (the cache cannot) */
    struct rkv_client__conn *conn; /* INFLIGHT: the connection */
    uint64_t frame_seq; /* INFLIGHT: conn->n_frames_queued after it */
    bool is_resend;     /* the next send is a retry (n_retries) */
    int last_rv;        /* last retryable error, for timeouts */
    bool is_refresh;    /* the client's own cache refresh */

    /* SCAN progress across ranges. */
    uint8_t *cursor; /* owned; next start key */
    size_t cursor_len;
    size_t pairs_cap; /* entries allocated in result.pairs */

    /* Outputs. */
    struct rkv_client_result result;
    struct rkv_client_range *ranges; /* RANGES; owned until taken */
    size_t n_ranges;
    char **node_addrs; /* RANGES: client addresses; owned */
    size_t n_node_addrs;
    struct rkv_client_node_status status; /* STATUS; INIT: cluster_id */

    /* Completion: exactly one of done and waiter is set. */
    rkv_client_done_cb done;
    void *done_data;
    struct rkv_client__waiter *waiter; /* borrowed from the blocked caller */

    struct rkv_client__link link;     /* the list of its state */
    struct rkv_client__link all_link; /* client->ops, in deadline order */
    struct rkv_client__op *id_next;   /* chain in the id table */
};

/* ---- the client -------------------------------------------------------- */

struct rkv_client {
    uv_loop_t loop;
    uv_thread_t thread;     /* runs the loop */
    uv_async_t wakeup;      /* submit queue has ops, or closing */
    uv_timer_t timer;       /* earliest deadline or retry */
    uint64_t timer_due_ms;  /* when timer fires; UINT64_MAX when stopped */
    uint32_t timeout_ms;    /* per op, retries included */
    uint32_t n_connections; /* per node */
    uint32_t inflight_max;  /* live ops allowed at once */
    atomic_uint n_live;     /* ops submitted and not yet completed */

    /* Shared with submitting threads, under mutex. */
    pthread_mutex_t mutex;
    struct rkv_client__link submit_queue; /* SUBMITTED ops */
    bool is_closing;

    /* Loop thread only. */
    struct rkv_client__link local_queue; /* ops submitted from the loop */
    struct rkv_client__link ops;         /* every live op, oldest first */
    struct rkv_client__link backoff;     /* BACKOFF ops by retry_at_ms */
    struct rkv_client__link cache_wait;  /* WAIT_CACHE ops */
    struct rkv_client__link flush_list;  /* conns with frames to write */
    struct rkv_client__op *id_table[RKV_CLIENT_ID_BUCKETS];
    uint64_t next_id;               /* request ids start at 1 */
    struct rkv_client__op *refresh; /* cache refresh in flight */
    uint64_t refreshed_at_ms;       /* last successful refresh, or 0 */
    struct rkv_client__cache cache;
    struct rkv_client__node **nodes; /* owned */
    size_t n_nodes;
    size_t next_node_index; /* round-robin for any-node ops */
    bool is_stopping;       /* handles are being closed */
};

/* client.c */
bool rkv_client__on_loop_thread(const struct rkv_client *client);
/* Runs queued local submits and flushes connections; every libuv callback
 * of the client ends with it. */
void rkv_client__after_event(struct rkv_client *client);

/* client_op.c */
void rkv_client__op_start(struct rkv_client__op *op);
void rkv_client__op_complete(struct rkv_client__op *op, int rv);
/* Handles one decoded reply frame that arrived on conn. */
void rkv_client__op_on_reply(struct rkv_client__conn *conn,
                             struct rkv_client__op *op, void *reply);
/* conn dropped: resends reads, ends sent writes as RKV_EUNKNOWN. */
void rkv_client__op_on_conn_lost(struct rkv_client__op *op, int reason);
void rkv_client__timer_cb(uv_timer_t *timer);
void rkv_client__timer_arm(struct rkv_client *client);
void rkv_client__fail_all(struct rkv_client *client);
/* Removes and returns the op waiting for id on conn, or NULL. */
struct rkv_client__op *rkv_client__id_take(struct rkv_client *client,
                                           uint64_t id,
                                           const struct rkv_client__conn *c);
void rkv_client__op_free(struct rkv_client__op *op);

/* client_conn.c */
bool rkv_client__conn_is_usable(const struct rkv_client__conn *conn,
                                uint64_t now_ms);
/* Appends op's frame and sends it soon, connecting first when needed.
 * Returns 0 or a negative code (the frame is over the limit, -ENOMEM). */
int rkv_client__conn_send(struct rkv_client__conn *conn,
                          struct rkv_client__op *op, uint64_t range_id,
                          uint64_t generation);
void rkv_client__conn_flush_all(struct rkv_client *client);
void rkv_client__conn_close(struct rkv_client__conn *conn);

/* client_cache.c (node table) */
struct rkv_client__node *rkv_client__node_by_id(struct rkv_client *client,
                                                uint64_t node_id);
/* Finds or adds the node; node_id 0 adds a seed. NULL only on -ENOMEM. */
struct rkv_client__node *rkv_client__node_learn(struct rkv_client *client,
                                                uint64_t node_id,
                                                const char *addr);
/* Picks a usable connection of node, round-robin, or NULL. */
struct rkv_client__conn *rkv_client__node_conn(struct rkv_client__node *node,
                                               uint64_t now_ms);
void rkv_client__nodes_free(struct rkv_client *client);

/* client_wire.c: the only code that uses node/rpc.proto types. */
int rkv_client__wire_encode(const struct rkv_client__op *op, uint64_t id,
                            uint64_t range_id, uint64_t generation,
                            uint64_t deadline_ms, struct rkv_client__buf *out);

/* A decoded Response: the fields routing needs, plus the message itself. */
struct rkv_client__reply {
    uint64_t id;
    int error;                 /* 0 or a negative rangekv code */
    const char *error_message; /* borrowed from msg, may be NULL */
    uint64_t leader_node_id;   /* hint with RKV_ENOTLEADER */
    const char *leader_addr;   /* hint, borrowed, may be NULL */
    void *msg;                 /* owned Rkv__Rpc__Response */
};

/* Decodes one frame payload. Returns 0 or RKV_EMALFORMED. */
int rkv_client__wire_decode(const uint8_t *payload, size_t payload_len,
                            struct rkv_client__reply *reply);
void rkv_client__wire_reply_free(struct rkv_client__reply *reply);
/* Installs the reply's descriptors and nodes (KEYMISMATCH, RANGES). Returns
 * how many descriptors it carried, or -ENOMEM. */
int rkv_client__wire_learn(struct rkv_client *client,
                           const struct rkv_client__reply *reply);
/* Moves a successful reply's result into op: result fields, SCAN pairs and
 * its continuation, RANGES and STATUS outputs. Sets *scan_next (SCAN only)
 * to the resume key, borrowed from reply, or NULL when the range is done.
 * Returns 0, RKV_EMALFORMED (the reply lacks its result) or -ENOMEM. */
int rkv_client__wire_take_result(struct rkv_client__op *op,
                                 const struct rkv_client__reply *reply,
                                 const uint8_t **scan_next,
                                 size_t *scan_next_len, bool *scan_more);

#endif /* RKV_CLIENT_INTERNAL_H */
