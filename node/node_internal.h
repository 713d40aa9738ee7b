/*
 * Internals of the node runtime shared by the files of node/.
 *
 * Threads: everything here lives on the node's loop thread except the
 * writer (node/writer.c), which owns one batch at a time between its
 * submission and the completion the loop receives through writer.async.
 *
 * Replica ids: every range's replica on node N has Raft id N (replica_id ==
 * node_id in every descriptor this node creates), so a Raft message's `to`
 * names the node to send it to.
 *
 * Invariants:
 *   1. At most one writer batch is in flight; its items' ready batches are
 *      acknowledged to Raft in submission order.
 *   2. A replica's pending proposals are sorted by index. Two share an
 *      index only when the log was truncated under the older one, and the
 *      entry applied at that index settles both. A snapshot or restart
 *      that jumps past a proposal's index settles it as unknown (or as
 *      dropped when its term is too new), never as dropped by guess.
 *   3. A client request is on at most one wait list (pending proposal,
 *      pending read, split waiter) and on the node's deadline list until
 *      its one response is sent, then it is freed.
 */
#ifndef RKV_NODE_INTERNAL_H
#define RKV_NODE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "common/common.h"
#include "node/conn.h"
#include "node/peer.pb-c.h"
#include "node/rpc.pb-c.h"
#include "raft/raft.h"
#include "range/range.h"
#include "rangekv/rangekv.h"

/* Version carried in the peer Hello. */
#define RKV_NODE_PEER_PROTOCOL_VERSION 2
/* Bytes of the random nonce in a peer Challenge. */
#define RKV_NODE_NONCE_LEN 32
/* Largest peer frame in bytes: Raft appends are capped at 1 MiB of entries
 * and snapshot chunks at 1 MiB, so 32 MiB leaves room for batching. */
#define RKV_NODE_PEER_FRAME_MAX (32u * 1024 * 1024)
/* Largest client frame in bytes: a 4 MiB value plus its key and framing,
 * with room for batches; the client library uses the same limit. */
#define RKV_NODE_CLIENT_FRAME_MAX (16u * 1024 * 1024)
/* Output queued to one peer before Raft messages to it are dropped. */
#define RKV_NODE_PEER_OUT_MAX (64u * 1024 * 1024)
/* Output queued to one client before the connection is closed. */
#define RKV_NODE_CLIENT_OUT_MAX (256u * 1024 * 1024)
/* Peer reconnect backoff, doubling between these bounds. */
#define RKV_NODE_RECONNECT_MIN_MS 50
#define RKV_NODE_RECONNECT_MAX_MS 2000
/* Client request timeout when the request sets none. */
#define RKV_NODE_REQUEST_TIMEOUT_MS 5000
/* An internal proposal (a split step or a meta update) that has not
 * applied by then is abandoned, and its split retried later. A forwarded
 * one whose message or result was lost waits this long. */
#define RKV_NODE_SPLIT_TIMEOUT_MS 5000
/* Replica count the hash table of replicas starts with (grows by
 * doubling). */
#define RKV_NODE_REPLICAS_BUCKETS_MIN 64
/* Client requests in flight on one node before new ones get RKV_EBUSY. */
#define RKV_NODE_REQUESTS_MAX 65536
/* Leadership spread: how often a node checks its share of leaders, and
 * how many transfers it starts per check. */
#define RKV_NODE_SPREAD_INTERVAL_MS 1000
#define RKV_NODE_SPREAD_MOVES_MAX 16
/* Log compaction: a replica keeps this many applied entries (a setting,
 * this by default) for followers that lag, and compacts older ones in steps
 * of a RKV_NODE_LOG_STEP_DIVISOR-th of that, so that no single transaction
 * deletes a long stretch of log. Followers further behind catch up by
 * snapshot. */
#define RKV_NODE_LOG_COMPACT_ENTRIES_DEFAULT 20000
#define RKV_NODE_LOG_STEP_DIVISOR 10
/* Snapshot chunks read from the store, in bytes; a chunk may exceed it by
 * one pair (range.h), so Raft accepts chunks up to
 * RKV_NODE_SNAPSHOT_CHUNK_MAX. */
#define RKV_NODE_SNAPSHOT_CHUNK_BYTES (1u << 20)
#define RKV_NODE_SNAPSHOT_CHUNK_MAX                                            \
    (RKV_NODE_SNAPSHOT_CHUNK_BYTES + RKV_RANGE_VALUE_MAX_DEFAULT + 64u * 1024)
/* Attempts to create a placeholder replica for one unknown range id are at
 * least this far apart. */
#define RKV_NODE_UNINIT_RETRY_MS 1000
/* Size of the table remembering those attempts (oldest overwritten). */
#define RKV_NODE_UNINIT_SLOTS 64
/* Raft messages for a range this node has not created yet (its split has
 * not applied here) are held this long, up to these limits (the oldest are
 * dropped first), and delivered once the split creates the range; Raft
 * resends whatever is dropped. */
#define RKV_NODE_HELD_TTL_MS 2000
#define RKV_NODE_HELD_MAX 4096
#define RKV_NODE_HELD_BYTES_MAX (16u * 1024 * 1024)
/* Quiescence: a leader idle for this many ticks stops ticking the range
 * and sends its followers a Quiesce so that they stop too. */
#define RKV_NODE_QUIESCE_TICKS 5
/* A writer commit that fails for lack of space (a full disk, or the map at
 * its limit) is retried with a backoff doubling between these bounds, and
 * its warning repeats at most once per RKV_NODE_STALL_WARN_MS. */
#define RKV_NODE_STALL_RETRY_MIN_MS 50
#define RKV_NODE_STALL_RETRY_MAX_MS 1000
#define RKV_NODE_STALL_WARN_MS 10000
/* Space reserve: new writes are rejected (RKV_ENOSPACE, RKV_EMAPFULL) once
 * the store's file system has less than a RKV_NODE_SPACE_RESERVE_DIVISOR-th
 * of its size free, or the map is that close to its limit (capped at
 * RKV_NODE_SPACE_RESERVE_MAX bytes), so that the writes already accepted
 * still commit and apply and reads keep being served. Checked after every
 * writer batch and at least every RKV_NODE_SPACE_CHECK_MS. */
#define RKV_NODE_SPACE_RESERVE_DIVISOR 16
#define RKV_NODE_SPACE_RESERVE_MAX (256ull * 1024 * 1024)
#define RKV_NODE_SPACE_CHECK_MS 100
/* A client or inbound peer connection that stays inside one frame for this
 * long is closed, since a sender that stopped mid-frame holds a buffer of up
 * to the frame's declared size. Checked every RKV_NODE_FRAME_CHECK_MS. A
 * 16 MiB frame must arrive at 0.8 MB/s or faster. */
#define RKV_NODE_FRAME_TIMEOUT_MS 20000
#define RKV_NODE_FRAME_CHECK_MS 1000
/* A Raft message whose term is more than this ahead of the local term (or
 * is UINT64_MAX) is dropped: elections raise the term by one each, so no
 * real member gets that far ahead, and adopting such a term would leave the
 * range unable to elect a leader. Drops are logged at WARN on the first
 * and every RKV_NODE_TERM_WARN_EVERY-th. */
#define RKV_NODE_TERM_JUMP_MAX (1ull << 32)
#define RKV_NODE_TERM_WARN_EVERY 1000
/* Connection limits, so that connections which prove nothing cannot take
 * the node's memory or file descriptors. Client connections past the
 * configured maximum (RKV_NODE_CLIENTS_MAX_DEFAULT) and inbound peer
 * connections without an accepted Hello past theirs
 * (RKV_NODE_PEERS_PENDING_MAX_DEFAULT) are closed as soon as they are
 * accepted. An inbound peer connection whose Hello is not accepted within
 * RKV_NODE_PEER_HELLO_TIMEOUT_MS is closed; the check runs every
 * RKV_NODE_FRAME_CHECK_MS. Refusals are logged at WARN on the first and
 * every RKV_NODE_REFUSED_WARN_EVERY-th. */
#define RKV_NODE_CLIENTS_MAX_DEFAULT 4096
#define RKV_NODE_PEERS_PENDING_MAX_DEFAULT 64
#define RKV_NODE_PEER_HELLO_TIMEOUT_MS 10000
#define RKV_NODE_REFUSED_WARN_EVERY 100
/* Raft election timeout and heartbeat interval, in ticks. */
#define RKV_NODE_ELECTION_TICKS 10
#define RKV_NODE_HEARTBEAT_TICKS 1

struct rkv_node;
struct rkv_node__replica;
struct rkv_node__wbatch;

/* ---- the node's reach to the outside world ------------------------------ */

/* The node code (replicas, writer batches, splits, client requests) reaches
 * time, peers and the disk only through these three interfaces. Production
 * wires them to the monotonic clock, TCP (node/transport.c) and the writer
 * thread (node/writer.c). The simulator (tests/sim/sim_node.c) wires them
 * to its seeded clock, network and disk. Every function is called on the
 * node's loop thread. */

struct rkv_node__clock {
    /* Returns monotonic milliseconds. */
    uint64_t (*now_ms)(void *data);
    void *data;
};

struct rkv_node__transport_ops {
    /* Queues a Raft message for its `to` node. A message that cannot be
     * sent is dropped: Raft resends. */
    void (*send_raft)(void *data, const RkvRaft__Message *msg);
    /* Forwards an internal proposal; RKV_EUNAVAILABLE when the peer cannot
     * be reached now. */
    int (*send_propose)(void *data, uint64_t to_node_id,
                        const Rkv__Peer__Propose *propose);
    void (*send_propose_result)(void *data, uint64_t to_node_id,
                                const Rkv__Peer__ProposeResult *result);
    void (*send_quiesce)(void *data, uint64_t to_node_id,
                         const Rkv__Peer__Quiesce *quiesce);
    /* Returns whether anything arrived from node_id within the last
     * within_ms (always true for this node itself). */
    bool (*peer_is_live)(void *data, uint64_t node_id, uint64_t within_ms);
};

struct rkv_node__transport {
    const struct rkv_node__transport_ops *ops;
    void *data;
};

struct rkv_node__storage_ops {
    /* Takes batch b, commits it with rkv_node__wbatch_commit() (b->rv is
     * the status) and later hands it back through rkv_node__batch_done().
     * At most one batch is submitted at a time. */
    void (*submit)(void *data, struct rkv_node__wbatch *b);
    /* Returns RKV_ENOSPACE or RKV_EMAPFULL while commits fail for lack of
     * space and are being retried, 0 otherwise. */
    int (*stalled)(void *data);
    /* A commit failed in a way no retry cures, so the Raft cores, which
     * consider the batch handed out, cannot go on: stops the node without
     * acknowledging anything more. Production exits the process. */
    void (*failed)(void *data, int rv);
};

struct rkv_node__storage {
    const struct rkv_node__storage_ops *ops;
    void *data;
};

/* The destination of the one response to a client request: a client connection
 * (node/rpc.c) or a simulated client. */
struct rkv_node__reply_to {
    /* Sends response (borrowed for the call). */
    void (*send)(struct rkv_node__reply_to *to,
                 const Rkv__Rpc__Response *response);
    /* Drops the reference that a request held. */
    void (*release)(struct rkv_node__reply_to *to);
};

#ifdef RKV_NODE_BUGS
/* Known bugs that a test-only build (-DRKV_NODE_BUGS) can switch on, to
 * prove that the simulator's checks catch them. Production builds do not
 * contain them. */
enum rkv_node__bug {
    RKV_NODE_BUG_NONE = 0,
    /* Every replica, leader or not, serves reads from its applied state at
     * once, without ReadIndex. */
    RKV_NODE_BUG_STALE_READ = 1,
    /* A put is acknowledged as soon as it is proposed. */
    RKV_NODE_BUG_EARLY_ACK = 2,
    /* A new proposal at or below a pending one's index fails the pending
     * one as dropped at once, instead of waiting for its index to apply
     * (the bug fixed in 148e4c9). */
    RKV_NODE_BUG_DROP_ON_TRUNCATE = 3,
    /* Raft batches are acknowledged (votes granted, appends acknowledged)
     * when collected, before the writer made them durable. */
    RKV_NODE_BUG_ACK_BEFORE_PERSIST = 4,
    /* A new leader serves ReadIndex before it committed an entry of its
     * term (raft.h, bug_read_before_noop). */
    RKV_NODE_BUG_READ_BEFORE_NOOP = 5,
};
#endif

/* ---- client requests ---------------------------------------------------- */

struct rkv_node__client;

/* Wait state of a client request. */
enum rkv_node__wait {
    RKV_NODE_WAIT_NONE = 0,
    RKV_NODE_WAIT_PROPOSAL, /* for its entry to apply */
    RKV_NODE_WAIT_READ,     /* for a ReadIndex, then for the apply */
    RKV_NODE_WAIT_SPLIT,    /* for a split it asked for */
    RKV_NODE_WAIT_INIT,     /* nothing: init responds at once */
};

/* One client request in flight; owned by the node from decode to
 * response. */
struct rkv_node__request {
    struct rkv_node *node;            /* borrowed */
    struct rkv_node__reply_to *reply; /* holds one reference */
    Rkv__Rpc__Request *msg;           /* owned, freed with the response */
    uint64_t deadline_ms;             /* monotonic */
    enum rkv_node__wait wait;
    uint64_t range_id;              /* the replica it waits on */
    uint64_t index;                 /* proposal: entry index; read: index
                                       to apply first (0 until known) */
    uint64_t term;                  /* proposal: entry term */
    uint64_t read_ctx;              /* read: ReadIndex context */
    struct rkv_node__request *prev; /* the list it waits on */
    struct rkv_node__request *next;
    struct rkv_node__request *all_prev; /* every request, by deadline */
    struct rkv_node__request *all_next;
};

/* A doubly linked list of requests through prev/next. */
struct rkv_node__request_list {
    struct rkv_node__request *head;
    struct rkv_node__request *tail;
};

/* A client connection; freed once closed and unreferenced. */
struct rkv_node__client {
    struct rkv_node__reply_to reply; /* first: requests point here */
    struct rkv_node__conn conn;
    struct rkv_node *node;
    unsigned refs;                 /* pending requests plus the open socket */
    struct rkv_node__client *prev; /* node's client list */
    struct rkv_node__client *next;
};

/* ---- internal proposals (splits) ---------------------------------------- */

/* Called on the loop thread when an internal proposal applied (rv 0), failed
 * or timed out. result is borrowed for the call, NULL on failure. */
typedef void (*rkv_node__propose_cb)(
    void *data, int rv, const struct rkv_range_apply_result *result);

/* An internal proposal waiting for its entry, local or forwarded. */
struct rkv_node__iprop {
    uint64_t id; /* forward request id; 0 when local */
    uint64_t range_id;
    uint64_t index;           /* local: entry index */
    uint64_t term;            /* local: entry term */
    uint64_t from_node_id;    /* proposed for a peer: reply to it */
    uint64_t peer_request_id; /* the peer's request id */
    uint64_t deadline_ms;
    rkv_node__propose_cb cb; /* NULL when proposed for a peer */
    void *data;
    struct rkv_node__iprop *next;
};

/* State of a split driven by the leader of a range. */
enum rkv_node__split_state {
    RKV_NODE_SPLIT_IDLE = 0,
    RKV_NODE_SPLIT_ALLOC, /* waiting for a range id from range 1 */
    RKV_NODE_SPLIT_APPLY, /* waiting for the split entry */
    RKV_NODE_SPLIT_META,  /* waiting for the meta update on range 1 */
};

/* ---- replicas ----------------------------------------------------------- */

/* One range's replica on this node. */
struct rkv_node__replica {
    struct rkv_node *node; /* borrowed */
    uint64_t range_id;
    struct rkv_raft *raft;        /* owned */
    struct rkv_range_desc desc;   /* current local descriptor */
    bool initialized;             /* desc is valid */
    struct rkv_range_stats stats; /* as of applied_index */
    uint64_t applied_index;       /* durable and applied */
    uint64_t leader_id;           /* replica (= node) id, 0: unknown */
    enum rkv_raft_role role;

    struct rkv_node__request_list proposals; /* by index */
    struct rkv_node__request_list reads;     /* ReadIndex waiting */
    uint64_t next_read_ctx;

    /* Split driver (leader only). */
    enum rkv_node__split_state split_state;
    uint64_t split_deadline_ms;
    uint64_t split_new_range_id;
    uint8_t split_key[RKV_RANGE_KEY_MAX];
    size_t split_key_len;
    struct rkv_node__request_list split_waiters; /* SplitRequests */
    uint64_t split_check_after_ms; /* earliest next automatic check */
    uint64_t meta_check_after_ms;  /* earliest next check of this range's
                                      meta record in range 1 */

    /* Log compaction and snapshots. */
    uint64_t compacted_index; /* log starts after this index */
    uint64_t compact_pending; /* compact up to this; 0: none */
    struct rkv_range_snapshot_reader *snap_readers[RKV_NODE_JOIN_MAX];
    /* leader: one per peer, owned */
    uint64_t snap_indexes[RKV_NODE_JOIN_MAX];   /* index of each reader */
    uint32_t snap_next_seqs[RKV_NODE_JOIN_MAX]; /* next chunk expected */

    bool on_work_list; /* has Raft work to collect */
    struct rkv_node__replica *work_next;
    struct rkv_node__replica *hash_next;
    uint64_t n_ticks_idle; /* leader: ticks idle in a row */
    bool quiesced;         /* not ticked until woken */
    bool restarting;       /* its snapshot install was refused; the core is
                              rebuilt after this writer batch */
};

/* ---- writer ------------------------------------------------------------- */

/* One replica's ready batch inside a writer batch, or the creation of a
 * placeholder replica (create_range_id set, replica and rd NULL). */
struct rkv_node__witem {
    struct rkv_node__replica *replica;       /* borrowed */
    struct rkv_raft_ready *rd;               /* owned */
    uint64_t create_range_id;                /* placeholder to create */
    struct rkv_range_install_result install; /* last snapshot chunk */
    bool has_install;                        /* install is filled */
    struct rkv_range_entry *entries;         /* owned; rd->entries */
    struct rkv_range_entry *committed;       /* owned; rd->committed */
    struct rkv_range_apply_result *results;  /* owned; per committed */
    uint64_t compact_index;                  /* compact the log up to this
                                                after the applies; 0: no */
    bool prepared;                           /* the arrays above are made */
    struct rkv_node__witem *next;
};

/* A batch of Raft work that the writer commits in one LMDB transaction. */
struct rkv_node__wbatch {
    struct rkv_node__witem *head;
    struct rkv_node__witem *tail;
    size_t n_items;
    int rv; /* commit status */
};

struct rkv_node__writer {
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    struct rkv_node__wbatch *submitted; /* given to the thread; NULL idle */
    struct rkv_node__wbatch *done;      /* finished, not yet taken */
    bool stop;                          /* the thread exits when idle */
    bool give_up;                       /* stop retrying a stalled batch */
    uv_async_t async;                   /* wakes the loop on completion */
    struct rkv_range_store *store;      /* borrowed */
    const char *store_dir;              /* borrowed; for messages */
    /* While a commit keeps failing for lack of space: -ENOSPC or
     * RKV_EMAPFULL, and the writer retries the same batch; 0 otherwise.
     * Written by the writer, read by the loop to reject new writes. */
    _Atomic int stalled_rv;
};

/* ---- peers -------------------------------------------------------------- */

struct rkv_node__peer;

/* An inbound peer connection; receives only. */
struct rkv_node__peer_in {
    struct rkv_node__conn conn;
    struct rkv_node *node;
    uint64_t node_id;                  /* from Hello; 0 before it */
    uint8_t nonce[RKV_NODE_NONCE_LEN]; /* sent in our Challenge */
    uint64_t accepted_ms;              /* when the connection was accepted */
    struct rkv_node__peer_in *prev;
    struct rkv_node__peer_in *next;
};

/* Another member of the cluster, and our outbound connection to it. */
struct rkv_node__peer {
    struct rkv_node *node;
    uint64_t node_id;
    char peer_addr[RKV_NODE_ADDR_MAX];   /* from the join list */
    char client_addr[RKV_NODE_ADDR_MAX]; /* from its Hello; "" unknown */
    struct rkv_node__conn *out;          /* owned; NULL when down */
    bool hello_sent; /* out has answered the Challenge with a Hello */
    uint8_t nonce[RKV_NODE_NONCE_LEN]; /* sent in that Hello */
    bool connected; /* out has received its Welcome, so it carries
                       messages */
    uv_connect_t connect_req;
    uv_timer_t retry_timer;
    uint64_t backoff_ms;
    uint64_t last_heard_ms; /* last frame received from it */
    uint64_t connected_ms;  /* when out last connected */
    uint64_t dial_ms;       /* when out was dialed */
    unsigned n_failures;    /* consecutive dial failures */
    uint64_t n_dropped;     /* messages dropped while down */
    bool writes_blocked;    /* its last heartbeat said it rejects writes
                               for lack of space */
};

/* A Raft message held for a range not created yet; owns its bytes. */
struct rkv_node__held {
    uint64_t range_id;
    uint64_t expire_ms;          /* dropped after this */
    size_t len;                  /* bytes of the packed message */
    struct rkv_node__held *next; /* FIFO, oldest first */
    uint8_t packed[];            /* the packed RkvRaft__Message */
};

/* ---- the node ----------------------------------------------------------- */

struct rkv_node__counters {
    uint64_t n_proposals;
    uint64_t n_puts;
    uint64_t n_batches; /* writer batches */
    uint64_t n_ready;   /* ready batches committed */
};

struct rkv_node {
    /* Configuration (owned copies). */
    char store_dir[512];
    char listen_addr[RKV_NODE_ADDR_MAX];
    char client_listen_addr[RKV_NODE_ADDR_MAX];
    char advertise_addr[RKV_NODE_ADDR_MAX];
    char advertise_client_addr[RKV_NODE_ADDR_MAX];
    char *cluster_secret; /* owned; NULL: none */
    uint64_t split_bytes;
    uint32_t tick_ms;
    uint64_t log_compact_entries; /* compaction threshold, entries */
    bool no_sync;
    uint64_t map_size_max;      /* LMDB map growth limit in bytes; 0: 1 TiB */
    uint32_t clients_max;       /* client connections kept open */
    uint32_t peers_pending_max; /* inbound peers kept open before Hello */

    uint64_t node_id;
    uint64_t cluster_id; /* 0 until initialized */
    uint64_t start_ms;
    uint64_t rand_state;

    struct rkv_range_store *store; /* owned */
    struct rkv_node__clock clock;
    struct rkv_node__transport transport;
    struct rkv_node__storage storage;
#ifdef RKV_NODE_BUGS
    enum rkv_node__bug bug;
#endif

    uv_loop_t loop;
    pthread_t thread;
    uv_async_t stop_async;
    uv_async_t init_async;
    uv_timer_t tick_timer;
    uv_check_t check; /* collects Raft work, flushes */
    uv_tcp_t peer_listener;
    uv_tcp_t client_listener;
    struct rkv_node__io io;

    struct rkv_node__peer peers[RKV_NODE_JOIN_MAX]; /* index = node id - 1 */
    size_t n_peers;
    struct rkv_node__peer_in *peers_in;
    uint64_t n_rejected;      /* Hellos rejected since start */
    uint64_t n_raft_rejected; /* Raft messages dropped as forged: another
                                 sender id or an impossible term */
    struct rkv_node__client *clients;
    size_t n_clients;         /* in clients */
    size_t n_peers_pending;   /* in peers_in, without an accepted Hello */
    uint64_t n_conns_refused; /* closed on accept for a limit */

    /* Replicas by range id (hash table), and a by-start-key index of the
     * initialized ones for routing. */
    struct rkv_node__replica **buckets;
    size_t n_buckets;
    size_t n_replicas;
    struct rkv_node__replica **by_key; /* sorted by desc.start_key */
    size_t n_by_key;
    bool by_key_stale; /* rebuild before the next use */

    struct rkv_node__replica *work_head; /* replicas with Raft work */
    struct rkv_node__wbatch *next_batch; /* collecting for the writer */
    bool batch_in_flight;                /* a batch is with the storage */
    struct rkv_node__writer writer;

    struct rkv_node__request *all_head; /* every pending request */
    struct rkv_node__request *all_tail;
    size_t n_requests;

    struct rkv_node__iprop *iprops; /* internal proposals waiting */
    struct {
        uint64_t range_id;
        uint64_t at_ms;
    } uninit_attempts[RKV_NODE_UNINIT_SLOTS]; /* recent placeholder checks */
    size_t uninit_next;                       /* slot overwritten next */
    struct rkv_node__held *held_head;         /* messages for absent ranges */
    struct rkv_node__held *held_tail;
    size_t n_held;
    size_t held_bytes;
    uint64_t next_iprop_id;

    struct rkv_node__counters counters;
    uint64_t spread_after_ms;      /* next leadership spread check */
    uint64_t spread_next_target;   /* round-robin transfer target */
    uint64_t n_ticks;              /* ticks since start */
    int space_low_rv;              /* RKV_ENOSPACE or RKV_EMAPFULL while the
                                      space reserve is reached; 0 otherwise */
    uint64_t space_check_after_ms; /* next periodic space check */
    uint64_t frame_check_after_ms; /* next check for overdue frames */
    bool stopping;

    /* Init handshake with the calling thread of rkv_node_init(). */
    pthread_mutex_t init_mutex;
    pthread_cond_t init_cond;
    bool init_requested;
    bool init_done;
    int init_rv;
};

/* ---- node.c ------------------------------------------------------------- */

static inline uint64_t rkv_node__now_ms(struct rkv_node *node)
{
    return node->clock.now_ms(node->clock.data);
}

/*
 * Creates a node without any I/O of its own: reads the configuration,
 * opens (creating) the store and builds the replica of every stored range;
 * seed feeds the election timeouts. The caller sets node->clock,
 * node->transport and node->storage before anything else runs:
 * rkv_node_start() wires the loop, sockets and writer thread, the
 * simulator its own. Free with rkv_node__free().
 */
int rkv_node__new(const struct rkv_node_config *config, uint64_t seed,
                  struct rkv_node **out, char *errmsg, size_t errmsg_len);
/* Frees a node from rkv_node__new() after its I/O stopped: its replicas
 * (waiting requests get RKV_ESHUTDOWN), internal proposals, held
 * messages, the uncommitted next batch, and the store. A batch still
 * submitted to the storage must have been freed by it. */
void rkv_node__free(struct rkv_node *node);
/* One tick of the node's clock: ticks the replicas and expires requests,
 * internal proposals and held messages past their time. */
void rkv_node__tick(struct rkv_node *node);
/* Delivers a Raft message from its sender's node: steps it into the
 * replica of its range, or keeps it while that range does not exist here
 * yet. */
void rkv_node__deliver_raft(struct rkv_node *node, const RkvRaft__Message *msg);

/* Marks a replica as having Raft work for this loop iteration. */
void rkv_node__replica_mark(struct rkv_node__replica *replica);
struct rkv_node__replica *rkv_node__replica_find(struct rkv_node *node,
                                                 uint64_t range_id);
/* Returns the initialized replica whose span contains key, or NULL. */
struct rkv_node__replica *rkv_node__replica_for_key(struct rkv_node *node,
                                                    const uint8_t *key,
                                                    size_t key_len);
/* Creates and registers a replica from its stored state. */
int rkv_node__replica_open(struct rkv_node *node,
                           const struct rkv_range_state *state,
                           struct rkv_node__replica **out);
/* Bootstraps a new cluster from this node; RKV_ESTALE when it already
 * belongs to one. */
int rkv_node__init_cluster(struct rkv_node *node, uint64_t *cluster_id_out);
/* Bootstraps the cluster on this node with the given cluster id. */
int rkv_node__bootstrap(struct rkv_node *node, uint64_t cluster_id);
/* Orders keys as LMDB does: bytewise, a prefix before its extensions. */
int rkv_node__compare_keys(const uint8_t *a, size_t a_len, const uint8_t *b,
                           size_t b_len);
/* Returns the client address of a node ("" when unknown). */
const char *rkv_node__client_addr_of(struct rkv_node *node, uint64_t node_id);

/* ---- spread.c ----------------------------------------------------------- */

/* Transfers leaderships while this node leads more than its share. */
void rkv_node__spread_leadership(struct rkv_node *node);

/* ---- replica.c ---------------------------------------------------------- */

/* Collects the Raft work of every marked replica into the next writer batch
 * and sends what may be sent at once. */
void rkv_node__collect_ready(struct rkv_node *node);
/* Handles a finished writer batch: acks, sends and replies. */
void rkv_node__batch_done(struct rkv_node *node, struct rkv_node__wbatch *b);
/* Proposes command bytes on a replica; on success *index and *term. */
int rkv_node__propose(struct rkv_node__replica *replica, const uint8_t *data,
                      size_t len, uint64_t *index, uint64_t *term);
/* Starts moving the leadership of replica (its leader) to node `to`, a
 * voter of the range. */
int rkv_node__transfer_leadership(struct rkv_node__replica *replica,
                                  uint64_t to);
/* Proposes one membership change of replica's range (its leader):
 * node_id's replica is added as a learner, promoted or removed once the
 * entry at *index applies. */
int rkv_node__change_replicas(struct rkv_node__replica *replica,
                              enum rkv_raft_conf_change change,
                              uint64_t node_id, uint64_t *index);
/* Fails every request waiting on replica with RKV_ESHUTDOWN (node stop),
 * so that it can be freed. */
void rkv_node__replica_stop(struct rkv_node__replica *replica);
/* Frees a replica that no request waits on. */
void rkv_node__replica_free(struct rkv_node__replica *replica);
/* Settles the client proposals at or below index, whose entries replica
 * will not apply itself because it jumped past them (a snapshot at (index,
 * term), or a restart from its store at index with term 0). A proposal of
 * a higher term than `term` never committed (RKV_EDROPPED). The outcome of
 * any other is unknown (RKV_EUNKNOWN), which clients do not retry. */
void rkv_node__settle_skipped(struct rkv_node__replica *replica, uint64_t index,
                              uint64_t term);
/* Fails the reads and splits waiting on replica with rv and closes its
 * snapshot readers. Its proposals keep waiting: their entries may still
 * apply, and the entry applied at each one's index settles it. */
void rkv_node__replica_fail_waiting(struct rkv_node__replica *replica, int rv,
                                    const char *message);
/* Schedules a placeholder (uninitialized) replica for range_id when a
 * snapshot skipped the split that would have created it. The writer creates
 * it in its next batch, and held messages are then replayed. */
void rkv_node__placeholder_maybe_create(struct rkv_node *node,
                                        uint64_t range_id);
/* Opens a placeholder replica once the writer created it. */
void rkv_node__placeholder_created(struct rkv_node *node, uint64_t range_id);
/* Queues the creation of a placeholder replica in the next writer batch. */
int rkv_node__batch_add_create(struct rkv_node *node, uint64_t range_id);
/* Rebuilds a replica's Raft core from the store, as after a crash of that
 * one group (a refused snapshot install). */
int rkv_node__replica_restart(struct rkv_node__replica *replica);
/* Resumes ticking a quiesced replica. */
void rkv_node__replica_wake(struct rkv_node__replica *replica);
/* Wakes, when peer_id (re)connects, the quiesced ranges this node leads
 * that have a replica there, and the quiesced followers whose leader is
 * there. A restarted node learns a leader only from its heartbeats, and a
 * restarted leader has lost its leadership, which its quiesced followers
 * notice only by ticking. */
void rkv_node__wake_ranges_of(struct rkv_node *node, uint64_t peer_id);
/* Handles a Quiesce from the leader's node. */
void rkv_node__quiesce_recv(struct rkv_node *node, uint64_t from_node_id,
                            const Rkv__Peer__Quiesce *quiesce);
/* Holds a message for a range this node does not have yet. */
void rkv_node__hold_message(struct rkv_node *node, const RkvRaft__Message *msg);
/* Steps the held messages of a range that was just created. */
void rkv_node__replay_held(struct rkv_node__replica *replica);
/* Drops held messages past their time (now_ms), or all with UINT64_MAX. */
void rkv_node__held_expire(struct rkv_node *node, uint64_t now_ms);
/* Steps one Raft message into replica and wakes or marks it as needed. */
void rkv_node__replica_step(struct rkv_node__replica *replica,
                            const RkvRaft__Message *msg, uint64_t from);
/* Ticks every replica that is not quiesced, quiesces idle ones and wakes
 * quiesced followers whose leader's node went silent. */
void rkv_node__tick_replicas(struct rkv_node *node);

/* ---- writer.c ----------------------------------------------------------- */

/* The writer thread as the node's storage (data: &node->writer). */
extern const struct rkv_node__storage_ops rkv_node__writer_ops;
/* Records every item of b in one store transaction, in order, and commits
 * it; returns the commit status. Nothing is committed on failure, and the
 * same batch may be committed again. */
int rkv_node__wbatch_commit(struct rkv_range_store *store,
                            struct rkv_node__wbatch *b);

int rkv_node__writer_start(struct rkv_node *node);
/* Stops and joins the writer thread (after the last batch finished). */
void rkv_node__writer_stop(struct rkv_node__writer *w);
/* Asks a writer that retries a batch for lack of space to give up: the
 * batch then completes with its error, unacknowledged (used at stop). */
void rkv_node__writer_give_up(struct rkv_node__writer *w);
/* Returns whether rv is a lack of space the writer waits out. */
bool rkv_node__is_space_error(int rv);
/* Compares the store's free space with its reserve (loop thread); force
 * skips the RKV_NODE_SPACE_CHECK_MS rate limit. */
void rkv_node__space_check(struct rkv_node *node, bool force);
/* Returns RKV_ENOSPACE or RKV_EMAPFULL while new writes must be rejected for
 * lack of space, 0 when they may go on (loop thread). */
int rkv_node__writes_blocked(struct rkv_node *node);
void rkv_node__wbatch_free(struct rkv_node__wbatch *b);
/* Removes and frees the items of replica from batch b (may be NULL): work
 * of a Raft core that is being replaced, none of it acknowledged. */
void rkv_node__wbatch_drop_replica(struct rkv_node__wbatch *b,
                                   const struct rkv_node__replica *replica);

/* ---- transport.c -------------------------------------------------------- */

/* TCP as the node's transport (data: the node). */
extern const struct rkv_node__transport_ops rkv_node__tcp_ops;

static inline void rkv_node__send_raft(struct rkv_node *node,
                                       const RkvRaft__Message *msg)
{
    node->transport.ops->send_raft(node->transport.data, msg);
}

static inline int rkv_node__send_propose(struct rkv_node *node,
                                         uint64_t to_node_id,
                                         const Rkv__Peer__Propose *propose)
{
    return node->transport.ops->send_propose(node->transport.data, to_node_id,
                                             propose);
}

static inline void
rkv_node__send_propose_result(struct rkv_node *node, uint64_t to_node_id,
                              const Rkv__Peer__ProposeResult *result)
{
    node->transport.ops->send_propose_result(node->transport.data, to_node_id,
                                             result);
}

static inline void rkv_node__send_quiesce(struct rkv_node *node,
                                          uint64_t to_node_id,
                                          const Rkv__Peer__Quiesce *quiesce)
{
    node->transport.ops->send_quiesce(node->transport.data, to_node_id,
                                      quiesce);
}

static inline bool rkv_node__peer_is_live(struct rkv_node *node,
                                          uint64_t node_id, uint64_t within_ms)
{
    return node->transport.ops->peer_is_live(node->transport.data, node_id,
                                             within_ms);
}

int rkv_node__transport_start(struct rkv_node *node);
/* Binds and listens on addr ("a.b.c.d:port"); fills advertise when empty
 * with the bound address. */
int rkv_node__listen(uv_loop_t *loop, uv_tcp_t *tcp, const char *addr,
                     char advertise[RKV_NODE_ADDR_MAX],
                     uv_connection_cb connection_cb);
/* Closes listeners and every peer connection. */
void rkv_node__transport_close(struct rkv_node *node);
/* Fills the per-tick liveness heartbeat. */
void rkv_node__heartbeat_fill(struct rkv_node *node, uint64_t tick,
                              Rkv__Peer__Heartbeat *heartbeat);
/* Sends the per-tick liveness heartbeat to every connected peer. */
void rkv_node__send_heartbeats(struct rkv_node *node, uint64_t tick);
/* Closes the inbound peer connections whose Hello has not been accepted,
 * and the outbound ones whose Welcome has not arrived, within
 * RKV_NODE_PEER_HELLO_TIMEOUT_MS at now_ms; the outbound ones are redialed. */
void rkv_node__transport_close_silent(struct rkv_node *node, uint64_t now_ms);
/* Counts a connection closed on accept for a limit, and returns the level
 * to log it at (WARN on the first and every RKV_NODE_REFUSED_WARN_EVERY-th,
 * DEBUG otherwise). */
enum rkv_log_level rkv_node__refused_level(struct rkv_node *node);
/* Redials every peer so they see a new cluster id in our Hello. */
void rkv_node__transport_reset(struct rkv_node *node);
/* Fills the Hello auth digest of node_id from the secret and the nonce the
 * accepting node sent; all zero without a secret. */
void rkv_node__auth_digest(const char *secret,
                           const uint8_t nonce[RKV_NODE_NONCE_LEN],
                           uint64_t node_id, uint8_t digest[32]);

/* ---- rpc.c -------------------------------------------------------------- */

int rkv_node__rpc_start(struct rkv_node *node);
void rkv_node__rpc_close(struct rkv_node *node);
/* Takes a decoded client request (msg owned, one reference of reply) and
 * serves it; its one response goes to reply. */
void rkv_node__request_start(struct rkv_node *node,
                             struct rkv_node__reply_to *reply,
                             Rkv__Rpc__Request *msg);
/* Answers a request with error rv (or a success built by the caller) and
 * frees it. */
void rkv_node__request_fail(struct rkv_node__request *req, int rv,
                            const char *message);
/* Answers a request waiting on a proposal that applied. */
void rkv_node__request_applied(struct rkv_node__request *req,
                               const struct rkv_range_apply_result *result);
/* Serves a read whose ReadIndex is now applied. */
void rkv_node__request_read(struct rkv_node__request *req);
/* Answers a SplitRequest once its split applied. */
void rkv_node__request_split_done(struct rkv_node__request *req,
                                  const struct rkv_range_desc *left,
                                  const struct rkv_range_desc *right);
/* Fails every request past its deadline. */
void rkv_node__requests_expire(struct rkv_node *node, uint64_t now_ms);
/* Unlinks req from list. */
void rkv_node__request_list_remove(struct rkv_node__request_list *list,
                                   struct rkv_node__request *req);
void rkv_node__request_list_append(struct rkv_node__request_list *list,
                                   struct rkv_node__request *req);

/* ---- split.c ------------------------------------------------------------ */

/* Considers splitting replica (leader only): automatically past the size
 * threshold. */
void rkv_node__split_maybe(struct rkv_node__replica *replica);
/* Starts a split at key (a SplitRequest); req waits on the replica. */
int rkv_node__split_start(struct rkv_node__replica *replica, const uint8_t *key,
                          size_t key_len, struct rkv_node__request *req);
/* A committed split applied on this node: creates the right-hand replica
 * and advances the split driver. */
void rkv_node__split_applied(struct rkv_node__replica *replica, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result);
/* Proposes command to range_id on its leader, local or remote. On success
 * cb runs once, later, unless the node stops first (stop frees waiting
 * proposals without calling them). */
/* Checks, when this replica leads and a check is due, whether range 1's
 * record of this range is stale and proposes it again. Called from the
 * tick loop, also for quiesced replicas. */
void rkv_node__split_meta_tick(struct rkv_node__replica *r);

int rkv_node__iprop_submit(struct rkv_node *node, uint64_t range_id,
                           const uint8_t *command, size_t command_len,
                           rkv_node__propose_cb cb, void *data);
/* Matches an applied entry against waiting internal proposals. */
void rkv_node__iprop_applied(struct rkv_node__replica *replica, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result);
/* Handles a Propose or ProposeResult from a peer. */
void rkv_node__iprop_recv(struct rkv_node *node, uint64_t from_node_id,
                          const Rkv__Peer__Propose *propose);
void rkv_node__iprop_recv_result(struct rkv_node *node,
                                 const Rkv__Peer__ProposeResult *result);
/* Fails internal proposals and splits past their deadline. */
void rkv_node__iprops_expire(struct rkv_node *node, uint64_t now_ms);
/* Frees every internal proposal (at stop). */
void rkv_node__iprops_free(struct rkv_node *node);

#endif /* RKV_NODE_INTERNAL_H */
