/*
 * Internals shared by the raft/ source files: the replica struct, the
 * in-memory log, per-follower progress, and the helpers each file exports
 * to the others (named rkv_raft__*).
 *
 * Invariants:
 *   1. log.entries[i]->index == log.snap_index + 1 + i.
 *   2. log.snap_index <= applied <= commit <= last index, and applied <=
 *      persisted_index.
 *   3. Entries with index >= unstable_index have not been handed out in a
 *      ready batch yet.
 *   4. conf is the configuration of the latest ENTRY_CONF in the log, or
 *      log.snap_conf when there is none; conf_index is that entry's index.
 *   5. n_progress and progress[] are meaningful only on a leader and list
 *      exactly the servers of conf.
 */
#ifndef RKV_RAFT_INTERNAL_H
#define RKV_RAFT_INTERNAL_H

#include "raft/raft.h"

/* Pending ReadIndex requests per leader; past it read_index returns
 * RKV_EBUSY. */
#define RKV_RAFT_READS_MAX 4096

enum rkv_raft_progress_state {
    RKV_RAFT_PROBE = 0,     /* one append at a time until a match is found */
    RKV_RAFT_REPLICATE = 1, /* pipelined appends up to the in-flight limits */
    RKV_RAFT_SNAPSHOT = 2,  /* a chunked snapshot transfer is running */
};

/* One append in flight to a follower. */
struct rkv_raft_inflight {
    uint64_t last_index; /* index of its last entry */
    uint64_t n_entries;  /* entries it carries */
    uint64_t bytes;      /* entry bytes it carries */
};

/* A leader's view of one server (the leader itself included). */
struct rkv_raft_progress {
    uint64_t id;                        /* server id */
    uint64_t match_index;               /* highest index known replicated */
    uint64_t next_index;                /* next index to send */
    enum rkv_raft_progress_state state; /* replication mode */
    bool probe_sent;                    /* PROBE: an append is unanswered */
    bool recent_active;                 /* heard from in this lease period */
    uint64_t read_seq_acked;            /* highest ReadIndex round acked */

    /* REPLICATE: appends in flight, oldest first, as a ring that grows on
     * demand (owned); at most config.inflight_entries_max entries. */
    struct rkv_raft_inflight *inflight;
    unsigned inflight_head;         /* ring position of the oldest */
    unsigned n_inflight;            /* appends in flight */
    unsigned cap_inflight;          /* ring slots allocated */
    uint64_t inflight_entries;      /* entries in those appends */
    uint64_t inflight_bytes_total;  /* entry bytes in those appends */

    /* SNAPSHOT: the transfer state. */
    uint64_t snap_index;      /* index of the snapshot being sent, 0 unset */
    uint32_t snap_chunk_seq;  /* chunk requested from or sent by the node */
    bool snap_chunk_sent;     /* snap_chunk_seq is on the wire */
    bool snap_last_sent;      /* the chunk on the wire is the last one */
    unsigned snap_idle_ticks; /* ticks without progress; restart past
                                 election_ticks */
};

struct rkv_raft_log {
    RkvRaft__Entry **entries;   /* owned, each owned */
    size_t n_entries;           /* entries in memory */
    size_t cap_entries;         /* allocated slots */
    uint64_t snap_index;        /* compacted prefix ends here */
    uint64_t snap_term;         /* term of snap_index */
    struct rkv_raft_conf snap_conf; /* configuration as of snap_index */
};

/* A read waiting for its quorum round. */
struct rkv_raft_pending_read {
    uint64_t ctx;      /* caller's id */
    uint64_t index;    /* commit index when admitted; 0 while waiting */
    uint64_t read_seq; /* heartbeat round confirming it; 0 while waiting */
};

/* A batch handed out and not yet acked. */
struct rkv_raft_batch {
    uint64_t seq;        /* ready sequence number */
    bool has_log;        /* the batch wrote entries or a snapshot */
    uint64_t last_index; /* log's last index when the batch was made */
    uint64_t last_term;  /* its term */
    bool has_term;       /* the batch persisted a hard state */
    uint64_t term;       /* that hard state's term */
};

/* A growable array of messages (owned). */
struct rkv_raft_msgs {
    RkvRaft__Message **items;
    size_t n;
    size_t cap;
};

struct rkv_raft {
    struct rkv_raft_config config;

    /* Persistent state (thesis Figure 3.1). */
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
    struct rkv_raft_hard_state hs_emitted; /* last hard state handed out */

    struct rkv_raft_log log;
    uint64_t applied;         /* last entry handed out for apply */
    uint64_t persisted_index; /* entries durable locally and matching log */
    uint64_t durable_term;    /* term of the last acked hard state */
    uint64_t unstable_index;  /* first entry not yet handed out */

    struct rkv_raft_conf conf; /* in effect: the latest appended */
    uint64_t conf_index;       /* index of the entry that set conf */

    enum rkv_raft_role role;
    uint64_t leader_id;
    bool role_changed;
    unsigned election_elapsed;  /* ticks since reset, at most the timeout */
    unsigned election_timeout;  /* randomized in [T, 2T), T election_ticks */
    unsigned heartbeat_elapsed; /* leader: ticks since heartbeat */
    unsigned n_votes_granted;   /* candidate: grants received */
    unsigned n_votes_rejected;  /* candidate: rejections received */
    uint64_t votes_from[RKV_RAFT_MAX_SERVERS]; /* who answered */
    unsigned n_votes_from;

    /* Leader state. */
    struct rkv_raft_progress progress[RKV_RAFT_MAX_SERVERS];
    unsigned n_progress;
    uint64_t transfer_to;        /* 0 when no transfer runs */
    unsigned transfer_elapsed;   /* ticks since it started */
    uint64_t read_seq;           /* latest ReadIndex round */
    uint64_t uncommitted_bytes;  /* data bytes proposed, not committed */
    struct rkv_raft_pending_read *reads; /* owned ring-less array */
    size_t n_reads;
    size_t cap_reads;

    /* Follower snapshot reception. */
    uint64_t recv_snap_index;   /* snapshot being staged, 0 none */
    uint32_t recv_next_chunk;   /* chunk expected next */

    /* Output waiting for rkv_raft_ready(). */
    struct rkv_raft_msgs msgs;
    struct rkv_raft_msgs msgs_after;
    struct rkv_raft_snapshot_chunk *chunks;
    size_t n_chunks;
    size_t cap_chunks;
    struct rkv_raft_read_state *reads_done;
    size_t n_reads_done;
    size_t cap_reads_done;
    struct rkv_raft_snapshot_request *snap_requests;
    size_t n_snap_requests;
    size_t cap_snap_requests;

    uint64_t ready_seq;             /* last seq handed out */
    struct rkv_raft_batch *batches; /* unacked, oldest first */
    size_t n_batches;
    size_t cap_batches;

    uint64_t rand_state; /* xorshift64* state */
};

/* ---- raft_log.c ---- */
uint64_t rkv_raft__last_index(const struct rkv_raft *r);
uint64_t rkv_raft__last_term(const struct rkv_raft *r);
/* Term of index, or 0 when it is compacted away or past the end. */
uint64_t rkv_raft__term(const struct rkv_raft *r, uint64_t index);
const RkvRaft__Entry *rkv_raft__entry(const struct rkv_raft *r,
                                      uint64_t index);
/* Appends a copy of entry (its index must be last + 1). */
int rkv_raft__log_append(struct rkv_raft *r, uint64_t term,
                         RkvRaft__EntryType type, const void *data,
                         size_t len);
/* Deletes entries from index on; index must be above commit. */
void rkv_raft__log_truncate(struct rkv_raft *r, uint64_t index);
void rkv_raft__log_compact(struct rkv_raft *r, uint64_t index);
void rkv_raft__log_reset(struct rkv_raft *r, uint64_t index, uint64_t term,
                         const struct rkv_raft_conf *conf);
void rkv_raft__log_free(struct rkv_raft *r);
RkvRaft__Entry *rkv_raft__entry_copy(const RkvRaft__Entry *entry);
void rkv_raft__entry_free(RkvRaft__Entry *entry);
/* Configuration in effect at index (from the log or the snapshot). */
void rkv_raft__conf_at(const struct rkv_raft *r, uint64_t index,
                       struct rkv_raft_conf *conf, uint64_t *conf_index);

/* ---- raft.c ---- */
uint64_t rkv_raft__random(struct rkv_raft *r);
RkvRaft__Message *rkv_raft__msg_new(const struct rkv_raft *r,
                                    RkvRaft__MessageType type, uint64_t to);
/* Queues msg (taking ownership) on the list the durability rule picks. */
int rkv_raft__send(struct rkv_raft *r, RkvRaft__Message *msg);
void rkv_raft__msg_free(RkvRaft__Message *msg);
const struct rkv_raft_server *rkv_raft__conf_find(
    const struct rkv_raft_conf *conf, uint64_t id);
bool rkv_raft__is_voter(const struct rkv_raft_conf *conf, uint64_t id);
unsigned rkv_raft__n_voters(const struct rkv_raft_conf *conf);
bool rkv_raft__may_campaign(const struct rkv_raft *r);

/* ---- raft_election.c ---- */
void rkv_raft__become_follower(struct rkv_raft *r, uint64_t term,
                               uint64_t leader_id);
/* Moves a follower to a higher term without touching its timer. */
void rkv_raft__adopt_term(struct rkv_raft *r, uint64_t term);
int rkv_raft__become_leader(struct rkv_raft *r);
int rkv_raft__campaign(struct rkv_raft *r, bool pre_vote, bool transfer);
int rkv_raft__tick_election(struct rkv_raft *r);
int rkv_raft__step_vote(struct rkv_raft *r, const RkvRaft__Message *msg);
int rkv_raft__step_vote_resp(struct rkv_raft *r, const RkvRaft__Message *msg);
int rkv_raft__step_timeout_now(struct rkv_raft *r,
                               const RkvRaft__Message *msg);
void rkv_raft__reset_election_timer(struct rkv_raft *r);
int rkv_raft__send_timeout_now(struct rkv_raft *r, uint64_t to);
bool rkv_raft__in_lease(const struct rkv_raft *r);

/* ---- raft_replication.c ---- */
struct rkv_raft_progress *rkv_raft__progress(struct rkv_raft *r, uint64_t id);
int rkv_raft__progress_reset(struct rkv_raft *r);
void rkv_raft__progress_probe(struct rkv_raft_progress *pr,
                              uint64_t next_index);
void rkv_raft__progress_free(struct rkv_raft *r);
int rkv_raft__send_append(struct rkv_raft *r, struct rkv_raft_progress *pr);
int rkv_raft__broadcast_append(struct rkv_raft *r);
int rkv_raft__broadcast_heartbeat(struct rkv_raft *r);
int rkv_raft__maybe_commit(struct rkv_raft *r);
int rkv_raft__step_append(struct rkv_raft *r, const RkvRaft__Message *msg);
int rkv_raft__step_append_resp(struct rkv_raft *r,
                               const RkvRaft__Message *msg);
int rkv_raft__step_heartbeat(struct rkv_raft *r, const RkvRaft__Message *msg);
int rkv_raft__step_heartbeat_resp(struct rkv_raft *r,
                                  const RkvRaft__Message *msg);
int rkv_raft__tick_leader(struct rkv_raft *r);
int rkv_raft__reads_on_commit(struct rkv_raft *r);
int rkv_raft__reads_release(struct rkv_raft *r);
unsigned rkv_raft__quorum(const struct rkv_raft *r);

/* ---- raft_snapshot.c ---- */
int rkv_raft__snapshot_start(struct rkv_raft *r, struct rkv_raft_progress *pr);
int rkv_raft__snapshot_request(struct rkv_raft *r,
                               struct rkv_raft_progress *pr, uint32_t seq);
int rkv_raft__step_snapshot(struct rkv_raft *r, const RkvRaft__Message *msg);
int rkv_raft__step_snapshot_resp(struct rkv_raft *r,
                                 const RkvRaft__Message *msg);
int rkv_raft__tick_snapshot(struct rkv_raft *r, struct rkv_raft_progress *pr);

/* ---- raft_membership.c ---- */
/* Makes conf (set by the entry at index) the configuration in effect and,
 * on a leader, adds or drops progress. */
int rkv_raft__conf_apply(struct rkv_raft *r, const struct rkv_raft_conf *conf,
                         uint64_t index);
/* Recomputes conf from the log after a truncation or a restart. */
int rkv_raft__conf_reload(struct rkv_raft *r);
RkvRaft__Conf *rkv_raft__conf_to_pb(const struct rkv_raft_conf *conf);
void rkv_raft__conf_pb_free(RkvRaft__Conf *pb);
int rkv_raft__conf_from_pb(const RkvRaft__Conf *pb,
                           struct rkv_raft_conf *conf);
/* Steps a leader down once a committed configuration removed it. */
void rkv_raft__conf_check_removed(struct rkv_raft *r);

#endif /* RKV_RAFT_INTERNAL_H */
