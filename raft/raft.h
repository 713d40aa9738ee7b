/*
 * The Raft core: one replication group as a pure state machine.
 *
 * The core performs no I/O apart from RKV_LOG, reads no clock and keeps no
 * global state. The caller (the node runtime, or the test fixture) drives
 * it:
 *
 *   in:  rkv_raft_tick()       one logical clock tick (100 ms in the node)
 *        rkv_raft_step()       a message received from a peer
 *        rkv_raft_propose()    a command for the range state machine
 *        rkv_raft_propose_conf_change(), rkv_raft_read_index(),
 *        rkv_raft_transfer_leadership(), rkv_raft_compact(),
 *        rkv_raft_snapshot_chunk()
 *   out: rkv_raft_ready()      a batch of work: hard state and entries to
 *                              persist, messages to send, committed entries
 *                              to apply, snapshot chunks to stage, reads to
 *                              serve, snapshot chunks the leader needs
 *        rkv_raft_ack()        the caller reports a batch durable
 *
 * Durability contract (the order the caller must keep):
 *   1. Batches are persisted in seq order; rkv_raft_ack(r, seq) reports that
 *      batch seq and every earlier one are durable.
 *   2. ready->messages may be sent at once, before the batch is durable.
 *      They are a leader's appends, heartbeats, snapshot chunks and
 *      TimeoutNow, and a follower's heartbeat responses, all sent only once
 *      the term they carry is durable and depending on nothing the batch
 *      contains. A leader sends its entries to followers while writing them
 *      itself (thesis 10.2.1), and counts itself toward a commit only once
 *      rkv_raft_ack() covers them.
 *   3. ready->messages_after_persist are sent only after that batch is
 *      durable: vote requests and grants depend on the persisted term and
 *      vote, and append and snapshot acknowledgments on persisted entries
 *      (thesis 3.8: a server persists its state before responding).
 *   4. ready->committed may be applied at once: the core only hands out
 *      committed entries that are already durable locally.
 *   5. A batch with has_hard_state false, no entries and no chunks has
 *      nothing to persist, so the caller writes and syncs nothing for it.
 *      It is durable once every earlier batch is: only then may its
 *      messages_after_persist (pre-votes, for example) leave. Acking it is
 *      optional, since a later ack covers it.
 * A caller that persists synchronously does: ready, persist, ack, send both
 * message lists, apply, ready_free. A caller with a writer thread may take
 * further batches while earlier ones are being written.
 *
 * Restart: the caller hands rkv_raft_new() what it made durable (hard
 * state, last snapshot metadata, applied index, the persisted entries after
 * the snapshot). A crash may lose any write that was not yet acked, or
 * keep it; the core copes with both.
 *
 * The core keeps every entry after the last compaction in memory (as
 * canonical/raft does), so it never reads storage. rkv_raft_compact() drops
 * the prefix once the caller has snapshotted its state machine.
 *
 * Roles and transitions (state, and the function performing each):
 *   follower -> pre-candidate   election timeout with pre-vote on (tick)
 *   follower -> candidate       election timeout with pre-vote off, a
 *                               granted pre-vote quorum, or TimeoutNow
 *   candidate -> leader         vote quorum (step)
 *   any -> follower             higher term seen, a current leader heard,
 *                               check-quorum failure, or removal (step/tick)
 * Learners never leave the follower role.
 *
 * Invariants the core keeps and the tests check:
 *   1. At most one leader per term.
 *   2. A leader never overwrites or truncates entries in its log (only
 *      compaction drops a prefix).
 *   3. A committed entry never changes; commit only advances by counting
 *      replicas of an entry of the leader's current term (thesis 3.6.2).
 *   4. Every replica applies the same sequence of entries.
 *   5. At most one configuration change is uncommitted at a time, and a
 *      leader proposes one only after committing an entry of its own term,
 *      which closes the single-server-change bug (thesis 4.1, and Ongaro's
 *      2015 raft-dev correction).
 *
 * Threading: an instance is used from one thread at a time (the node's loop
 * thread). Nothing is shared between instances.
 *
 * "Thesis" section numbers refer to Diego Ongaro's dissertation, Consensus:
 * Bridging Theory and Practice (Stanford University, 2014).
 *
 * Errors: calls return 0 or a negative code: -ENOMEM when allocation fails,
 * -EINVAL for an invalid argument, and RKV_E* codes from rangekv/error.h as
 * listed on each call. After -ENOMEM the replica stays consistent and
 * usable: the failed call had either no effect, or the effect of its
 * outgoing messages being lost, which Raft tolerates (the random fault
 * tests inject such failures). The caller may retry or carry on.
 */
#ifndef RKV_RAFT_H
#define RKV_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.pb-c.h"

/* Maximum servers (voters plus learners) in one configuration. */
#define RKV_RAFT_MAX_SERVERS 16

/* Default snapshot chunk size: 1 MiB. */
#define RKV_RAFT_CHUNK_BYTES_DEFAULT (1024 * 1024)

struct rkv_raft;

enum rkv_raft_role {
    RKV_RAFT_FOLLOWER = 0,
    RKV_RAFT_PRE_CANDIDATE = 1,
    RKV_RAFT_CANDIDATE = 2,
    RKV_RAFT_LEADER = 3,
};

struct rkv_raft_config {
    uint64_t id;                   /* this replica's id; nonzero */
    uint64_t group_id;             /* copied into every outgoing message */
    unsigned election_ticks;       /* base election timeout, in ticks */
    unsigned heartbeat_ticks;      /* leader heartbeat interval, in ticks */
    uint64_t rand_state;           /* PRNG seed for election timeouts; != 0 */
    bool pre_vote;                 /* run a pre-vote round (thesis 9.6) */
    bool check_quorum;             /* leader lease checks (thesis 6.2, 4.2.3) */
    uint64_t inflight_entries_max; /* entries in flight per follower */
    uint64_t inflight_bytes_max;   /* entry bytes in flight per follower */
    uint64_t append_bytes_max;     /* entry bytes in one append message */
    uint64_t chunk_bytes_max;      /* snapshot chunk size, in bytes */
    /* Leader: data bytes of uncommitted entries; past it proposals fail
     * with RKV_EBUSY (like etcd raft's MaxUncommittedEntriesSize). */
    uint64_t uncommitted_bytes_max;
#ifdef RKV_RAFT_BUGS
    /* Test-only build: a new leader serves ReadIndex at its commit index
     * before it committed an entry of its term, when that index may still
     * lag the one its predecessor acknowledged writes at. */
    bool bug_read_before_noop;
#endif
};

/*
 * Fills config with defaults: election_ticks 10, heartbeat_ticks 1,
 * pre_vote and check_quorum on, inflight_entries_max 1024,
 * inflight_bytes_max 8 MiB, append_bytes_max 1 MiB, chunk_bytes_max 1 MiB,
 * uncommitted_bytes_max 64 MiB. seed seeds the election timeout PRNG (0 is
 * replaced by a fixed constant).
 */
void rkv_raft_config_init(struct rkv_raft_config *config, uint64_t id,
                          uint64_t group_id, uint64_t seed);

/* The state that must be durable before dependent messages are sent. */
struct rkv_raft_hard_state {
    uint64_t term;   /* current term */
    uint64_t vote;   /* id voted for in term, 0 for none */
    uint64_t commit; /* highest index known committed */
};

struct rkv_raft_server {
    uint64_t id;  /* replica id, nonzero */
    bool learner; /* true: receives the log, never votes */
};

/* A configuration; servers are kept sorted by id. */
struct rkv_raft_conf {
    unsigned n_servers;
    struct rkv_raft_server servers[RKV_RAFT_MAX_SERVERS];
};

/* Metadata of the snapshot the log starts after. */
struct rkv_raft_snapshot_meta {
    uint64_t index;            /* last index the snapshot covers */
    uint64_t term;             /* term of that entry */
    struct rkv_raft_conf conf; /* configuration as of index */
};

/*
 * The durable state rkv_raft_new() starts from. A new group is
 * bootstrapped by giving every initial replica the same snapshot metadata
 * (index 0 or any agreed index, term 0, the initial voters) and no
 * entries. A replica created to be added later gets an empty
 * configuration and learns the group from the leader's snapshot.
 */
struct rkv_raft_boot {
    struct rkv_raft_hard_state hard_state;
    struct rkv_raft_snapshot_meta snapshot;
    uint64_t applied; /* last applied index, snapshot.index <= it */
    /* Persisted entries with consecutive indexes from snapshot.index + 1.
     * Borrowed for the call; the core copies them. */
    RkvRaft__Entry *const *entries;
    size_t n_entries;
};

/* A linearizable read that may be served once applied >= index. */
struct rkv_raft_read_state {
    uint64_t ctx;   /* the caller's id from rkv_raft_read_index() */
    uint64_t index; /* serve the read after applying this index */
};

/*
 * Leader side of a snapshot transfer: the core requests chunk chunk_seq of
 * a snapshot for peer `to`. chunk_seq 0 means (re)start: open a new
 * snapshot (for example an LMDB read transaction at the current applied
 * index), discarding any earlier one for this peer. The caller responds
 * with rkv_raft_snapshot_chunk(). One chunk is in flight per peer, and a
 * transfer without progress for two election timeouts restarts at chunk 0.
 * The caller closes its snapshot after supplying the last chunk, when
 * rkv_raft_snapshot_chunk() returns RKV_ESTALE or RKV_ENOTLEADER, when the
 * replica stops leading, or when the peer leaves the configuration.
 */
struct rkv_raft_snapshot_request {
    uint64_t to;        /* peer id */
    uint32_t chunk_seq; /* which chunk, 0-based */
    uint64_t index;     /* snapshot index the transfer uses; 0 at restart */
};

/*
 * Follower side: one chunk to write into the staging area. chunk_seq 0
 * starts a new staging area (drop any earlier partial one). When `last` is
 * set, the caller atomically replaces the state machine with the staging
 * area, records meta as its snapshot and deletes every stored log entry,
 * all before the later parts of the same batch.
 */
struct rkv_raft_snapshot_chunk {
    struct rkv_raft_snapshot_meta meta; /* the snapshot being installed */
    uint32_t chunk_seq;                 /* 0-based */
    bool last;                          /* the final chunk */
    uint8_t *data;                      /* owned by the ready batch */
    size_t data_len;
};

/*
 * One batch of work. Owned by the caller after rkv_raft_ready() and freed
 * with rkv_raft_ready_free(); every pointer inside is owned by the batch.
 * Messages are protobuf-c structs for rkv_raft__message__pack(). Persist
 * in this order: chunks, then entries, then hard_state (one store
 * transaction may carry all three).
 *
 * NOTE: entries, committed entries and every append message hold their
 * own copies of entry data, so a value is copied once per use. With large
 * values this costs memory bandwidth; reference-counted entries (as in
 * canonical/raft) would remove the copies.
 */
struct rkv_raft_ready {
    uint64_t seq; /* pass to rkv_raft_ack() once durable */

    /* Role changes since the previous batch, for routing and logging. */
    bool role_changed;
    enum rkv_raft_role role;
    uint64_t leader_id; /* 0 when unknown */

    /* Whether hard_state changed since the previous batch and must be
     * persisted. A heartbeat that repeats the commit index leaves it
     * false. */
    bool has_hard_state;
    struct rkv_raft_hard_state hard_state;

    /* Follower snapshot chunks to stage, in order. */
    struct rkv_raft_snapshot_chunk *chunks;
    size_t n_chunks;

    /* Entries to persist: first delete every stored entry with index >=
     * entries[0]->index, then store these. */
    RkvRaft__Entry **entries;
    size_t n_entries;

    RkvRaft__Message **messages; /* send at once */
    size_t n_messages;
    RkvRaft__Message **messages_after_persist; /* send once durable */
    size_t n_messages_after_persist;

    /* Committed entries to apply, in index order; already durable here. */
    RkvRaft__Entry **committed;
    size_t n_committed;

    struct rkv_raft_read_state *reads; /* reads that became servable */
    size_t n_reads;

    /* Leader: snapshot chunks to produce (see rkv_raft_snapshot_chunk). */
    struct rkv_raft_snapshot_request *snapshot_requests;
    size_t n_snapshot_requests;
};

/*
 * Creates a replica from its durable state. config and boot are borrowed
 * for the call. On success *out is a new object the caller frees with
 * rkv_raft_free(). Returns -EINVAL for an invalid config (zero id, zero
 * limits, heartbeat_ticks not below election_ticks) or an inconsistent
 * boot: entries not consecutive after snapshot.index, entry terms
 * decreasing or above hard_state.term, applied outside [snapshot.index,
 * last index], or commit past the last index. Returns -ENOMEM when
 * allocation fails. A commit below applied is raised to applied.
 */
int rkv_raft_new(const struct rkv_raft_config *config,
                 const struct rkv_raft_boot *boot, struct rkv_raft **out);

/* Frees the replica and everything it owns. Batches already handed out
 * stay valid and are freed with rkv_raft_ready_free(). */
void rkv_raft_free(struct rkv_raft *r);

/*
 * Advances the logical clock by one tick: election timeouts, heartbeats,
 * check-quorum, transfer timeouts. Returns 0 or -ENOMEM.
 */
int rkv_raft_tick(struct rkv_raft *r);

/*
 * Processes a message from a peer. msg is borrowed for the call. A stale
 * request (an older term) gets a rejection carrying the current term, so
 * its sender steps down. Other stale, duplicate or unknown-peer messages
 * are ignored and return 0. Returns RKV_EMALFORMED when msg->to is not
 * this replica, msg->from is 0 or this replica, the type is unknown,
 * entries do not follow prev_log_index, a configuration is invalid, or an
 * acknowledged index lies past the last index. Returns -ENOMEM when
 * allocation fails.
 */
int rkv_raft_step(struct rkv_raft *r, const RkvRaft__Message *msg);

/*
 * Appends a normal entry with a copy of data[0..len) to the leader's log.
 * On success *index and *term identify the entry. The proposal succeeded
 * if and only if an entry with that index and term is applied. An entry
 * applied at that index with another term means it was dropped.
 * Returns RKV_ENOTLEADER (not the leader; see rkv_raft_leader()),
 * RKV_EBUSY (a leadership transfer is in progress, or uncommitted entries
 * already reach config.uncommitted_bytes_max), or -ENOMEM (nothing was
 * appended). Once the entry is appended the call returns 0, even if its
 * appends could not be queued yet.
 */
int rkv_raft_propose(struct rkv_raft *r, const void *data, size_t len,
                     uint64_t *index, uint64_t *term);

enum rkv_raft_conf_change {
    RKV_RAFT_ADD_LEARNER = 0, /* add a non-voting server */
    RKV_RAFT_PROMOTE = 1,     /* make a learner a voter */
    RKV_RAFT_REMOVE = 2,      /* remove a learner or voter */
};

/*
 * Proposes one configuration change (single-server change, thesis 4.1).
 * The new configuration takes effect on every replica when the entry is
 * appended. Removing the leader is allowed: it keeps leading until the
 * change commits, without counting itself, then steps down (thesis 4.2.2).
 * Returns RKV_ENOTLEADER, RKV_EBUSY (transfer in progress), or -ENOMEM.
 * Returns RKV_ECONFCHANGE when a change is uncommitted or the leader has
 * not yet committed an entry of its term. Returns -EINVAL when adding a
 * present server, promoting a non-learner, removing an absent server,
 * removing the last voter, or adding to a full configuration.
 */
int rkv_raft_propose_conf_change(struct rkv_raft *r,
                                 enum rkv_raft_conf_change change,
                                 uint64_t server_id, uint64_t *index,
                                 uint64_t *term);

/*
 * Starts a ReadIndex round (thesis 6.4) for the caller's request ctx. Once
 * the leader has committed an entry of its term and a quorum confirmed its
 * leadership, a later batch lists {ctx, index} in reads; the read is then
 * linearizable once the caller has applied index. Returns RKV_ENOTLEADER,
 * RKV_EBUSY when 4096 reads are pending, or -ENOMEM (nothing queued).
 * Pending reads are dropped silently when the replica stops leading, so
 * the caller times them out.
 */
int rkv_raft_read_index(struct rkv_raft *r, uint64_t ctx);

/*
 * Starts a leadership transfer to voter `to` (thesis 3.10): proposals are
 * refused with RKV_EBUSY until it ends, the target is brought up to date
 * and sent TimeoutNow. The transfer is abandoned after one election
 * timeout. Returns RKV_ENOTLEADER, RKV_EBUSY (already transferring),
 * -EINVAL (`to` is this replica or not a voter), or -ENOMEM (no transfer
 * started).
 */
int rkv_raft_transfer_leadership(struct rkv_raft *r, uint64_t to);

/*
 * Starts an election now, as if the election timeout had fired (with the
 * pre-vote round when configured). A replica that its latest configuration
 * removed may campaign too, without counting its own vote, because until
 * the removal commits the group may need it (thesis 4.2.2). Returns
 * -EINVAL on a learner or a replica whose configuration is empty, or
 * -ENOMEM.
 */
int rkv_raft_campaign(struct rkv_raft *r);

/* Returns whether rkv_raft_ready() would return any work. */
bool rkv_raft_has_ready(const struct rkv_raft *r);

/*
 * Takes the pending work. On success *out is a new batch (possibly empty)
 * the caller frees with rkv_raft_ready_free(). Returns -ENOMEM.
 */
int rkv_raft_ready(struct rkv_raft *r, struct rkv_raft_ready **out);

/*
 * Reports that batch seq and all earlier batches are durable. The leader
 * then counts its own entries toward commit, and committed entries become
 * available for apply. Returns -EINVAL if seq was never handed out.
 */
int rkv_raft_ack(struct rkv_raft *r, uint64_t seq);

/* Frees a batch from rkv_raft_ready(); NULL is allowed. */
void rkv_raft_ready_free(struct rkv_raft_ready *rd);

/*
 * Drops the in-memory log up to and including index, after the caller has
 * made a snapshot of its state machine at index (or later) durable.
 * Followers far behind then catch up by snapshot. Returns -EINVAL when
 * index is past the applied index, 0 (no-op) when already compacted.
 */
int rkv_raft_compact(struct rkv_raft *r, uint64_t index);

/*
 * Leader side of a snapshot transfer: supplies chunk chunk_seq (as asked by
 * a snapshot request) of the snapshot at snap_index for peer `to`.
 * snap_index must be between the compacted index and the applied index.
 * It stays the same for all chunks of one transfer, and last marks the
 * final chunk. data is copied. Returns RKV_ESTALE when the transfer was
 * restarted (also when compaction passed snap_index mid-transfer) or the
 * peer no longer needs it, and the caller then drops that snapshot.
 * Returns RKV_ENOTLEADER, -EINVAL (bad index, or len over
 * chunk_bytes_max), or -ENOMEM.
 */
int rkv_raft_snapshot_chunk(struct rkv_raft *r, uint64_t to,
                            uint64_t snap_index, uint32_t chunk_seq,
                            const void *data, size_t len, bool last);

/* Queries; all O(1) except rkv_raft_term_at (O(1) too) and conf copies. */
uint64_t rkv_raft_id(const struct rkv_raft *r);
enum rkv_raft_role rkv_raft_role(const struct rkv_raft *r);
uint64_t rkv_raft_term(const struct rkv_raft *r);
uint64_t rkv_raft_leader(const struct rkv_raft *r); /* 0 when unknown */
uint64_t rkv_raft_commit_index(const struct rkv_raft *r);
/* Returns the last index handed out for apply: the last committed entry
 * in a batch, or the index of a snapshot handed out for install. It runs
 * ahead of the caller's state machine until those batches are handled. */
uint64_t rkv_raft_applied_index(const struct rkv_raft *r);
uint64_t rkv_raft_last_index(const struct rkv_raft *r);
/* First index still in memory; compacted index + 1. */
uint64_t rkv_raft_first_index(const struct rkv_raft *r);
/* Stores the term of index in *term; RKV_ECOMPACTED below the snapshot
 * index, RKV_ENOTFOUND past the last index. */
int rkv_raft_term_at(const struct rkv_raft *r, uint64_t index, uint64_t *term);
/* Returns the leader's match index for server id: the highest index known
 * replicated there (0 when unknown, or when this replica does not lead).
 * The node uses it to pick an up-to-date leadership transfer target. */
uint64_t rkv_raft_match_index(const struct rkv_raft *r, uint64_t id);
/* Copies the configuration in effect (latest appended). */
void rkv_raft_conf_get(const struct rkv_raft *r, struct rkv_raft_conf *conf);

/*
 * Returns whether the group is idle and fully replicated: this replica
 * leads, every follower's match index equals the last index, everything is
 * committed, durable and applied, and no read, transfer or snapshot is in
 * progress. The node may then quiesce the group (stop ticking it) until a
 * proposal or a message arrives. Followers of a quiesced group must stop
 * ticking too, so the node sends them a quiesce notice (for example in its
 * coalesced heartbeat). Returns false on non-leaders.
 *
 * NOTE: the core has no quiesce state of its own. A follower that stops
 * ticking keeps its leader; one that keeps ticking without heartbeats
 * campaigns as usual, so the node must stop both sides together.
 */
bool rkv_raft_is_idle(const struct rkv_raft *r);

/* Encodes conf as the data of an ENTRY_CONF entry; a new buffer of *len
 * bytes the caller frees with rkv_free(), or NULL on allocation failure. */
uint8_t *rkv_raft_conf_encode(const struct rkv_raft_conf *conf, size_t *len);

/* Decodes ENTRY_CONF data (borrowed) into *conf. Returns RKV_EMALFORMED
 * for invalid data, more than RKV_RAFT_MAX_SERVERS servers, a zero id or a
 * duplicate id. */
int rkv_raft_conf_decode(const uint8_t *data, size_t len,
                         struct rkv_raft_conf *conf);

#endif /* RKV_RAFT_H */
