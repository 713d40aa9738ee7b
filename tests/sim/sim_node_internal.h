/*
 * Internals of the simulated nodes shared by sim_node.c (lifecycle, disk,
 * Raft work), sim_node_split.c (splits, transfers, membership) and
 * sim_node_request.c (client requests and reads).
 *
 * Invariants:
 *   1. A replica's proposals list is sorted by index.
 *   2. A node's disk jobs are due in queue order, and commit in that order.
 *   3. A down node owns no store, replica, disk job or internal proposal.
 */
#ifndef RKV_SIM_NODE_INTERNAL_H
#define RKV_SIM_NODE_INTERNAL_H

#include "tests/sim/sim_internal.h"

/* A client request waiting on a replica: a proposal (by index) or a read
 * (by ReadIndex context). */
struct sim_pending {
    uint64_t index;       /* proposal: entry index; read: 0 until known */
    uint64_t term;        /* proposal: entry term */
    uint64_t ctx;         /* read: ReadIndex context */
    unsigned client_addr;
    struct sim_request request;
    struct sim_pending *next;
};

enum sim_split_state {
    SIM_SPLIT_IDLE = 0,
    SIM_SPLIT_ALLOC,
    SIM_SPLIT_APPLY,
    SIM_SPLIT_META,
};

/* Leader side of one snapshot transfer to a peer: every chunk is read
 * when the transfer starts, so no LMDB reader stays open across steps. */
struct sim_snapshot_out {
    uint64_t to;                      /* peer node id */
    uint64_t index;                   /* snapshot index */
    uint8_t **chunks;                 /* owned, each owned */
    size_t *chunk_lens;               /* owned */
    size_t n_chunks;
    struct sim_snapshot_out *next;
};

struct sim_replica {
    uint64_t range_id;
    struct rkv_raft *raft;            /* owned */
    struct rkv_range_desc desc;
    bool initialized;
    struct rkv_range_stats stats;
    uint64_t applied_index;
    uint64_t leader_id;               /* node id; 0: unknown */
    enum rkv_raft_role role;
    struct sim_pending *proposals;    /* by index, owned */
    struct sim_pending *reads;        /* owned */
    uint64_t next_read_ctx;
    enum sim_split_state split_state;
    uint8_t split_key[RKV_RANGE_KEY_MAX];
    size_t split_key_len;
    uint64_t split_retry_ms;          /* earliest next automatic check */
    uint64_t compacted_index;         /* the log starts after it */
    struct sim_snapshot_out *snapshots_out; /* leader: transfers, owned */
    bool needs_restart;               /* rebuild the core from the store
                                         after this disk write */
    struct sim_replica *next;
};

/* The step an internal proposal performs. */
enum sim_iprop_step {
    SIM_IPROP_ALLOC = 0,  /* our split driver: allocate a range id */
    SIM_IPROP_SPLIT,      /* our split driver: the split itself */
    SIM_IPROP_META,       /* our split driver: the meta update */
    SIM_IPROP_FOR_PEER,   /* proposed here for another node's driver */
};

struct sim_iprop {
    uint64_t id;               /* world-unique */
    uint64_t range_id;         /* the range it is proposed to */
    bool local;                /* proposed here: index and term are set */
    uint64_t index;
    uint64_t term;
    enum sim_iprop_step step;
    uint64_t origin_range_id;  /* the split driver's range */
    unsigned reply_to;         /* FOR_PEER: the node address to reply to */
    uint64_t deadline_ms;
    struct sim_iprop *next;
};

/* One ready batch waiting for the disk. */
struct sim_disk_job {
    struct sim_replica *replica;      /* borrowed */
    struct rkv_raft_ready *rd;        /* owned */
    uint64_t due_ms;
    struct rkv_range_entry *entries;  /* owned; converted rd->entries */
    struct rkv_range_entry *committed;           /* owned */
    struct rkv_range_apply_result *results;      /* owned */
    bool installed;                   /* the last snapshot chunk is here */
    bool acked_early;                 /* RKV_SIM_BUG_ACK_BEFORE_PERSIST */
    struct rkv_range_install_result install;     /* filled at commit */
    struct sim_disk_job *next;
};

struct sim_node {
    unsigned index;                   /* 0-based */
    uint64_t id;                      /* index + 1 */
    char dir[512];
    struct rkv_range_store *store;    /* owned; NULL when down */
    struct sim_replica *replicas;     /* owned */
    struct sim_disk_job *disk_head;   /* owned, FIFO */
    struct sim_disk_job *disk_tail;
    uint64_t disk_due_ms;             /* due time of the last job */
    uint64_t n_writes;                /* committed disk writes */
    uint64_t fail_write_at;           /* 0, or n_writes that fails */
    struct sim_iprop *iprops;         /* owned */
    unsigned tick_phase;
    unsigned tick_ms;                 /* this node's clock: 9..11 ms */
};


/* ---- sim_node.c --------------------------------------------------------- */

/* Returns zeroed memory; stops the process when allocation fails. */
void *sim_alloc(size_t size);
/* Formats key number `key` as its user key ("k07") into out (16 bytes). */
void sim_key_format(unsigned key, uint8_t *out, size_t *len);
struct sim_replica *sim_replica_find(struct sim_node *node,
                                     uint64_t range_id);
/* Returns the initialized replica whose span contains key, or NULL. */
struct sim_replica *sim_replica_for_key(struct sim_node *node,
                                        const uint8_t *key, size_t len);
/* Creates a replica and its Raft core from a stored state. */
int sim_replica_open(struct rkv_sim_world *w, struct sim_node *node,
                     const struct rkv_range_state *state,
                     struct sim_replica **out);
/* Sends a response (copied) to a client address. */
void sim_respond(struct rkv_sim_world *w, struct sim_node *node,
                 unsigned client_addr, const struct sim_response *resp);
void sim_respond_error(struct rkv_sim_world *w, struct sim_node *node,
                       unsigned client_addr, uint64_t req_id, int rv,
                       uint64_t leader_hint);

/* ---- sim_node_snapshot.c ------------------------------------------------ */

/* Produces the snapshot chunks the leader's Raft core requests. */
void sim_snapshot_serve(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r,
                        const struct rkv_raft_ready *rd);
/* Closes every snapshot transfer of r (leadership lost, crash). */
void sim_snapshot_close_all(struct sim_replica *r);
/* Records the snapshot chunks of a ready batch into wtxn. */
int sim_snapshot_record(struct rkv_range_wtxn *wtxn, struct sim_disk_job *job);
/* Updates the job's replica after its snapshot install committed. */
void sim_snapshot_installed(struct rkv_sim_world *w, struct sim_node *node,
                            struct sim_disk_job *job);
/* Marks the job's replica for a restart from the store, because the store
 * refused its snapshot (job->install.rv). */
void sim_snapshot_refused(struct rkv_sim_world *w, struct sim_node *node,
                          struct sim_disk_job *job);
/* Compacts r's log when it has grown past the simulator's limit. */
void sim_compact_maybe(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r);

/* ---- sim_node_split.c --------------------------------------------------- */

/* Returns whether every node is a voter of r's group. */
bool sim_replica_has_every_voter(struct rkv_sim_world *w,
                                 struct sim_replica *r);
/* Starts a split of r when it leads and has grown past the threshold. */
void sim_split_maybe(struct rkv_sim_world *w, struct sim_node *node,
                     struct sim_replica *r);
/* A committed split applied here: creates the right-hand replica. */
void sim_split_applied(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r,
                       const struct rkv_range_apply_result *result);
/* Matches an applied entry against the node's internal proposals. */
void sim_iprops_applied(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r, uint64_t index, uint64_t term,
                        const struct rkv_range_apply_result *result);
/* Fails internal proposals past their deadline. */
void sim_iprops_expire(struct rkv_sim_world *w, struct sim_node *node);
void sim_receive_propose(struct rkv_sim_world *w, struct sim_node *node,
                         const struct sim_msg *msg);
void sim_receive_propose_result(struct rkv_sim_world *w,
                                struct sim_node *node,
                                const struct sim_msg *msg);

/* ---- sim_node_request.c ------------------------------------------------- */

void sim_receive_request(struct rkv_sim_world *w, struct sim_node *node,
                         const struct sim_msg *msg);
/* Serves every read of r whose ReadIndex is known and applied. */
void sim_serve_reads(struct rkv_sim_world *w, struct sim_node *node,
                     struct sim_replica *r);
/* Fails every waiting read of r with RKV_ENOTLEADER. */
void sim_fail_reads(struct rkv_sim_world *w, struct sim_node *node,
                    struct sim_replica *r);
/* Completes r's client proposals up to index: the one at index with term
 * succeeded with result, every earlier one was dropped. */
void sim_finish_proposals(struct rkv_sim_world *w, struct sim_node *node,
                          struct sim_replica *r, uint64_t index,
                          uint64_t term,
                          const struct rkv_range_apply_result *result);

#endif /* RKV_SIM_NODE_INTERNAL_H */
