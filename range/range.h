/*
 * The node's store and the range state machine: one LMDB environment per
 * node holding every range's data, Raft log and Raft state, plus the command
 * encoding, apply, splits, addressing and snapshots of ranges.
 *
 * Layout on disk (named LMDB databases in one environment):
 *   data   the user keyspace, shared by all ranges, plus the system span.
 *          A user key K is stored as 0x02 K; the system span is every
 *          stored key starting with 0x01, so it sorts before all user keys.
 *          The system span contains the meta records (one descriptor per
 *          range, keyed by its start key) and the range id counter. It is
 *          part of range 1, whose start key is always the empty key, so no
 *          split can fall inside it.
 *   log    Raft log entries, key = range id (8 bytes BE) + index (8 BE).
 *   raft   per range: hard state, applied state with stats, log bounds.
 *   desc   per range: the local range descriptor of each replica.
 *   node   the node identity record (node id, cluster id).
 *   snap   staging area for snapshot chunks being received.
 *
 * Addressing: descriptors live twice. The local `desc` record is what a
 * replica serves from. The meta record in range 1's system span is what any
 * node uses to find the range for a key; it is replicated by range 1's Raft
 * group, so it may lag a split. A split of range 1 updates its own meta
 * records in the same apply transaction. A split of any other range is
 * followed by a RKV_RANGE_CMD_META_UPDATE proposed to range 1 by the split
 * range's leader (rkv_range_encode_meta_update()); meta updates are applied
 * only when their generation is higher than the stored one, so they may
 * arrive late, twice or out of order. A stale meta record sends a client to
 * a range that answers RKV_EKEYMISMATCH with its fresh descriptor. A meta
 * update lost with a crashed leader is found by rkv_range_meta_check() on
 * the next leader.
 *
 * Splits: the leader of range R calls rkv_range_should_split() and
 * rkv_range_pick_split_key(), proposes RKV_RANGE_CMD_ALLOC_RANGE_ID to
 * range 1 to obtain a new range id from the counter in the system span,
 * proposes the split (rkv_range_encode_split()) to R, and after it applies
 * proposes the meta update to range 1 (skipped when R is range 1). Every
 * replica applies the split in one transaction: the left descriptor
 * shrinks and its generation goes up, the right descriptor is created with
 * the same replicas and the new generation, its Raft state starts at
 * RKV_RANGE_SPLIT_INDEX / RKV_RANGE_SPLIT_TERM, and stats are divided.
 *
 * Right-hand ranges on lagging replicas: a node that receives a Raft
 * message for a range id it does not have creates an uninitialized replica
 * (rkv_range_create_uninit(), then a Raft core with an empty
 * configuration) and steps the message into it. Two things can then
 * happen, and tests/unit/range/test_range_cluster.c runs both:
 *   - the left range's split applies here: the split initializes the
 *     replica's store records, and the node restarts that range's Raft core
 *     from rkv_range_state_load();
 *   - the leader sends a snapshot: rkv_range_snapshot_install_finish()
 *     refuses it with RKV_EBUSY in its install result while the span still
 *     overlaps the unsplit left range here, and the rest of the write
 *     transaction commits. The node then drops that range's ready batch
 *     without acknowledging it and restarts the range's Raft core from the
 *     store, as after a crash, and the leader sends the snapshot again.
 * Dropping such messages instead is also safe, but a replica whose left
 * range was caught up by a snapshot past the split would then never get
 * the right range.
 *
 * Raft restart: boot a range's core with hard state, snapshot index and
 * term = compacted_index and compacted_term, configuration = desc.replicas
 * (empty when not initialized), applied = applied_index, and the entries
 * from rkv_range_log_load(compacted_index + 1, last_index).
 *
 * Threads: a store may be used from many threads. Write transactions
 * (struct rkv_range_wtxn) run one at a time (LMDB serializes them); the
 * node's writer thread owns them. Read transactions (struct rkv_range_rtxn)
 * and snapshot readers may be opened on any thread, several per thread,
 * while a write transaction runs. Encode functions are pure and may run on
 * any thread. Growing the map waits until every read transaction and
 * snapshot reader in the process has ended, so the thread that commits
 * must not hold one itself (it would deadlock), and a long-lived snapshot
 * reader delays writes that need a bigger map.
 *
 * Invariants:
 *   1. An entry's effects and the new applied index commit in one LMDB
 *      transaction, so after a crash every entry up to the stored applied
 *      index is applied exactly once and none after it.
 *   2. A range's stats equal a full recount of the user keys in its span
 *      after every committed transaction (apply, split, snapshot).
 *   3. Local descriptors on one node never overlap, except that an
 *      uninitialized replica has no span.
 *   4. The map grows (doubling up to map_size_max) when LMDB reports it full;
 *      a write transaction is replayed after growth, never partially applied.
 *
 * Errors: LMDB's positive errno values become -errno and MDB_* codes become
 * RKV_E* (MDB_MAP_FULL past map_size_max: RKV_EMAPFULL; MDB_CORRUPTED,
 * MDB_PAGE_NOTFOUND, MDB_VERSION_MISMATCH, MDB_INVALID: RKV_ECORRUPT;
 * MDB_TXN_FULL, MDB_BAD_VALSIZE: RKV_ETOOLARGE; MDB_READERS_FULL:
 * RKV_EBUSY). Every other code is documented on the function.
 */
#ifndef RKV_RANGE_H
#define RKV_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits and defaults ------------------------------------------------ */

/* Maximum user key length in bytes: LMDB's maximum key size in Debian's
 * build (511, mdb_env_get_maxkeysize) less the two bytes of the meta record
 * prefix. rkv_range_store_open() fails with RKV_ECONFIG on an LMDB build
 * whose maximum key size is smaller. */
#define RKV_RANGE_KEY_MAX 509
/* Default maximum value length in bytes (option value_max). */
#define RKV_RANGE_VALUE_MAX_DEFAULT (4u * 1024 * 1024)
/* Default maximum number of operations in one batch (option batch_ops_max). */
#define RKV_RANGE_BATCH_OPS_MAX_DEFAULT 10000u
/* Default maximum encoded size of one command in bytes (batch_bytes_max). */
#define RKV_RANGE_BATCH_BYTES_MAX_DEFAULT (16u * 1024 * 1024)
/* Default split threshold in bytes of user keys plus values: 512 MiB, as
 * CockroachDB's range_max_bytes. */
#define RKV_RANGE_SPLIT_BYTES_DEFAULT (512ull * 1024 * 1024)
/* Default initial LMDB map size and growth limit, in bytes. */
#define RKV_RANGE_MAP_SIZE_DEFAULT (1ull << 30)
#define RKV_RANGE_MAP_SIZE_MAX_DEFAULT (1ull << 40)
/* Replicas per range; as many as the client API reports. */
#define RKV_RANGE_REPLICAS_MAX 8
/* The first range: it starts at the empty key and owns the system span. */
#define RKV_RANGE_ID_FIRST 1
/* Raft position a right-hand range starts from after a split: its log is
 * empty and compacted up to this index and term. The values are those of
 * raftInitialLogIndex and raftInitialLogTerm in CockroachDB's
 * kvserver/stateloader. */
#define RKV_RANGE_SPLIT_INDEX 10
#define RKV_RANGE_SPLIT_TERM 5
/* Default chunk size for snapshot readers, in bytes. */
#define RKV_RANGE_SNAPSHOT_CHUNK_DEFAULT (1u << 20)
/* Maximum pairs one rkv_range_scan() returns. */
#define RKV_RANGE_SCAN_LIMIT_MAX 100000u
/* Size of an errmsg buffer that boundary operations fill. */
#define RKV_RANGE_ERRMSG_SIZE 256

struct rkv_range_store;
struct rkv_range_wtxn;
struct rkv_range_rtxn;
struct rkv_range_snapshot_reader;

/* ---- store -------------------------------------------------------------- */

struct rkv_range_store_options {
    const char *path;         /* directory; borrowed during open */
    uint64_t map_size;        /* initial map size in bytes; 0: 1 GiB */
    uint64_t map_size_max;    /* growth limit in bytes; 0: 1 TiB */
    bool no_sync;             /* true: commits skip fsync (MDB_NOSYNC); a crash
                                 may lose recent commits. Tests only. */
    uint32_t value_max;       /* bytes; 0: RKV_RANGE_VALUE_MAX_DEFAULT */
    uint32_t batch_ops_max;   /* 0: RKV_RANGE_BATCH_OPS_MAX_DEFAULT */
    uint32_t batch_bytes_max; /* 0: RKV_RANGE_BATCH_BYTES_MAX_DEFAULT */
    uint64_t split_bytes;     /* 0: RKV_RANGE_SPLIT_BYTES_DEFAULT */
    uint32_t readers_max;     /* concurrent read txns; 0: 126 */
};

/* Opens the store in options->path, creating the folder (one level) and
 * the database when missing. On success *out is a new store freed by
 * rkv_range_store_close(). On failure errmsg (may be NULL;
 * RKV_RANGE_ERRMSG_SIZE bytes) names the step and the cause. Errors:
 * -errno from the file system, RKV_ECONFIG (bad option, LMDB key size
 * limit too small), RKV_ECORRUPT. Call from one thread, once per path. */
int rkv_range_store_open(const struct rkv_range_store_options *options,
                         struct rkv_range_store **out, char *errmsg);

/* Closes the store and frees it. Every transaction and snapshot reader must
 * be finished first. */
void rkv_range_store_close(struct rkv_range_store *store);

/* Sets the split threshold in bytes (a cluster setting). Thread-safe. */
void rkv_range_store_set_split_bytes(struct rkv_range_store *store,
                                     uint64_t split_bytes);
uint64_t rkv_range_store_split_bytes(const struct rkv_range_store *store);

/* Counters since open; thread-safe reads. */
struct rkv_range_store_counters {
    uint64_t n_commits;         /* write transactions committed */
    uint64_t n_fsyncs;          /* durable syncs (0 with no_sync) */
    uint64_t n_entries_applied; /* committed entries applied */
    uint64_t n_map_grows;       /* map size increases */
    uint64_t map_size;          /* current map size in bytes */
};
void rkv_range_store_counters(const struct rkv_range_store *store,
                              struct rkv_range_store_counters *out);

/* How full the map is; thread-safe. used_bytes counts every page up to the
 * highest one written, including free pages LMDB will reuse, so it never
 * understates the use. */
struct rkv_range_store_space {
    uint64_t used_bytes;   /* bytes of the map in use */
    uint64_t map_size_max; /* growth limit in bytes */
};
void rkv_range_store_space(struct rkv_range_store *store,
                           struct rkv_range_store_space *out);

/* The node identity record. */
struct rkv_range_ident {
    uint64_t node_id;    /* non-zero */
    uint64_t cluster_id; /* non-zero */
};

/* Reads the identity record. RKV_ENOTFOUND on a store never identified. */
int rkv_range_ident_load(struct rkv_range_store *store,
                         struct rkv_range_ident *out);
/* Writes the identity record in its own durable transaction. Fails with
 * RKV_ECLUSTERID when a different identity is already stored. */
int rkv_range_ident_save(struct rkv_range_store *store,
                         const struct rkv_range_ident *ident);

/* ---- descriptors and state ---------------------------------------------- */

struct rkv_range_replica {
    uint64_t node_id;
    uint64_t replica_id; /* the Raft server id within the range's group */
    bool learner;        /* false: voter */
};

/* A range descriptor. Keys are user keys (no store prefix) held inline, so
 * the struct is copied by value and owns nothing. */
struct rkv_range_desc {
    uint64_t range_id;
    uint64_t generation; /* bumped by every split or replica change */
    uint8_t start_key[RKV_RANGE_KEY_MAX]; /* inclusive */
    size_t start_key_len;                 /* 0: the keyspace start */
    uint8_t end_key[RKV_RANGE_KEY_MAX];   /* exclusive */
    size_t end_key_len;                   /* 0: the keyspace end */
    struct rkv_range_replica replicas[RKV_RANGE_REPLICAS_MAX];
    size_t n_replicas;
};

/* Returns whether desc's span [start, end) contains the user key. */
bool rkv_range_desc_contains_key(const struct rkv_range_desc *desc,
                                 const void *key, size_t key_len);

/* Live user data of one range. */
struct rkv_range_stats {
    uint64_t key_bytes;   /* sum of user key lengths */
    uint64_t value_bytes; /* sum of value lengths */
    uint64_t key_count;
};

/* Raft's hard state, the same fields as struct rkv_raft_hard_state. */
struct rkv_range_hard_state {
    uint64_t term;
    uint64_t vote;   /* replica id voted for in term; 0: none */
    uint64_t commit; /* highest index known committed */
};

/* Everything a node needs to restart one replica. */
struct rkv_range_state {
    struct rkv_range_desc desc; /* valid when initialized */
    bool initialized;           /* false: placeholder, no span */
    struct rkv_range_hard_state hard_state;
    uint64_t applied_index;
    uint64_t applied_term;
    uint64_t compacted_index; /* the log starts after it */
    uint64_t compacted_term;  /* term of compacted_index */
    uint64_t last_index;      /* compacted_index when the log is empty */
    uint64_t last_term;
    struct rkv_range_stats stats;
};

/* Loads the state of every replica on this node, in range id order. On
 * success *states_out is a new array the caller frees with rkv_free() (NULL
 * when n is 0). Errors: -ENOMEM, RKV_ECORRUPT. Any thread. */
int rkv_range_store_load(struct rkv_range_store *store,
                         struct rkv_range_state **states_out,
                         size_t *n_states_out);

/* Loads one replica's state. RKV_ERANGENOTFOUND when absent. */
int rkv_range_state_load(struct rkv_range_store *store, uint64_t range_id,
                         struct rkv_range_state *out);

/* ---- Raft log ----------------------------------------------------------- */

/* Entry types, the same values as raft.proto's EntryType. */
enum rkv_range_entry_type {
    RKV_RANGE_ENTRY_NORMAL = 0, /* data: an encoded command */
    RKV_RANGE_ENTRY_NOOP = 1,   /* leader's no-op; no data */
    RKV_RANGE_ENTRY_CONF = 2,   /* data: a Raft configuration */
};

/* One Raft log entry. data is borrowed when passed in; in arrays returned
 * by rkv_range_log_load() it is owned by the array. */
struct rkv_range_entry {
    uint64_t index;
    uint64_t term;
    uint32_t type; /* enum rkv_range_entry_type */
    const uint8_t *data;
    size_t data_len;
};

/* Loads entries [from_index, to_index] (inclusive) of a range, stopping
 * early once bytes_max bytes of data are loaded (at least one entry is
 * returned; 0: no limit). *entries_out is freed with
 * rkv_range_entries_free(). Errors: RKV_ECOMPACTED when from_index is at or
 * below the compacted index, RKV_ENOTFOUND past the last index,
 * RKV_ERANGENOTFOUND, -ENOMEM. Any thread. */
int rkv_range_log_load(struct rkv_range_store *store, uint64_t range_id,
                       uint64_t from_index, uint64_t to_index, size_t bytes_max,
                       struct rkv_range_entry **entries_out,
                       size_t *n_entries_out);
void rkv_range_entries_free(struct rkv_range_entry *entries, size_t n_entries);

/* Sets *term_out to the term of the entry at index (the compacted index
 * included). Errors: RKV_ECOMPACTED below it, RKV_ENOTFOUND past the last
 * index, RKV_ERANGENOTFOUND. Any thread. */
int rkv_range_log_term(struct rkv_range_store *store, uint64_t range_id,
                       uint64_t index, uint64_t *term_out);

/* ---- write transactions (group commit) ---------------------------------- */

/* A write transaction collects the work of many ranges and commits it in
 * one LMDB transaction with one fsync. Operations are recorded when called
 * and run at commit, in call order, so a transaction can be replayed after
 * the map grows. Pointers passed to the operations (entries, their data,
 * snapshot chunks, results) are borrowed until commit or abort returns.
 * Operation calls fail only with -ENOMEM or -EINVAL (bad arguments); each
 * operation's own failures surface from rkv_range_wtxn_commit(). */

/* Starts a write transaction; *out is freed by commit or abort. */
int rkv_range_wtxn_begin(struct rkv_range_store *store,
                         struct rkv_range_wtxn **out);

/* Runs every operation and commits them atomically with one fsync (unless
 * no_sync). Frees wtxn whatever the outcome. On failure nothing is
 * committed. Errors: RKV_ERANGENOTFOUND (an operation named a range this
 * node does not have), RKV_ECORRUPT, RKV_EMAPFULL, RKV_ETOOLARGE, -EIO,
 * -ENOSPC, -ENOMEM, and the errors listed on each operation. */
int rkv_range_wtxn_commit(struct rkv_range_wtxn *wtxn);

/* Frees wtxn without committing anything. */
void rkv_range_wtxn_abort(struct rkv_range_wtxn *wtxn);

/* Saves a range's hard state. */
int rkv_range_hard_state_save(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                              const struct rkv_range_hard_state *hard_state);

/* Appends entries with consecutive indexes. An existing entry at or after
 * entries[0].index is deleted first (Raft's conflicting suffix). Commit
 * fails with -EINVAL when entries[0].index is above last_index + 1 or at or
 * below the compacted index. */
int rkv_range_log_append(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                         const struct rkv_range_entry *entries,
                         size_t n_entries);

/* Deletes the entries at from_index and after. */
int rkv_range_log_truncate(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                           uint64_t from_index);

/* Deletes the entries up to and including index, which must be applied; its
 * term becomes the compacted term. Commit fails with -EINVAL above the
 * applied index; an index at or below the compacted index is a no-op. */
int rkv_range_log_compact(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                          uint64_t index);

/* Kind of a committed entry's command, for the client waiting on it. */
enum rkv_range_cmd_kind {
    RKV_RANGE_CMD_NONE = 0, /* no-op and configuration entries */
    RKV_RANGE_CMD_PUT,
    RKV_RANGE_CMD_DELETE,
    RKV_RANGE_CMD_CAS,
    RKV_RANGE_CMD_BATCH,
    RKV_RANGE_CMD_SPLIT,
    RKV_RANGE_CMD_ALLOC_RANGE_ID, /* range 1 only */
    RKV_RANGE_CMD_META_UPDATE,    /* range 1 only */
};

struct rkv_range_apply_result {
    enum rkv_range_cmd_kind kind;
    /* 0, or the command's failure. The entry counts as applied with:
     * RKV_EKEYMISMATCH (a key outside the range at apply time; desc is
     * the current descriptor), RKV_ESTALE (a split for an older
     * generation), -EINVAL (a split key that is not strictly inside the
     * range or a reused range id, a command for range 1 sent elsewhere),
     * RKV_EMALFORMED (the entry does not decode), RKV_ETOOLARGE (over this
     * node's limits). With RKV_EBUSY the entry was not applied, because a
     * snapshot install of the range earlier in the transaction was
     * refused. A stale meta update is skipped with rv 0. */
    int rv;
    bool found;     /* DELETE: the key existed; CAS: swapped */
    uint8_t *value; /* CAS not swapped: the current value, NULL when the
                       key is absent; owned, see _result_free() */
    size_t value_len;
    uint64_t new_range_id;       /* ALLOC_RANGE_ID */
    struct rkv_range_desc desc;  /* SPLIT: left; EKEYMISMATCH: current */
    struct rkv_range_desc right; /* SPLIT: the new right-hand range */
};

/* Frees what a result owns (not the struct itself). */
void rkv_range_apply_result_free(struct rkv_range_apply_result *result);

/* Applies one committed entry of a range and advances its applied index to
 * entry->index in the same transaction. NORMAL entries run their command,
 * NOOP and CONF entries only advance the index (apply a configuration with
 * rkv_range_replicas_set() in the same transaction). result (may be NULL)
 * is filled at commit. Commit fails with -EINVAL when entry->index is not
 * applied_index + 1. */
int rkv_range_apply(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                    const struct rkv_range_entry *entry,
                    struct rkv_range_apply_result *result);

/* Replaces the replicas of a range's descriptor and bumps its generation
 * (a committed membership change). */
int rkv_range_replicas_set(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                           const struct rkv_range_replica *replicas,
                           size_t n_replicas);

/* Creates range 1 spanning the whole keyspace with the given replicas,
 * applied index 0, the meta record for it and the range id counter at 2.
 * Every node of a new cluster bootstraps with the same replicas. Commit
 * fails with RKV_ESTALE when range 1 already exists. */
int rkv_range_bootstrap(struct rkv_range_wtxn *wtxn,
                        const struct rkv_range_replica *replicas,
                        size_t n_replicas);

/* Creates an uninitialized replica (Raft state only, no span) for a
 * right-hand range this node learns of before its split applies. A no-op
 * when the range exists. */
int rkv_range_create_uninit(struct rkv_range_wtxn *wtxn, uint64_t range_id);

/* ---- reads -------------------------------------------------------------- */

/* A consistent read view of the whole store (an LMDB read transaction).
 * Values returned through it are borrowed until rkv_range_rtxn_end(). */
int rkv_range_rtxn_begin(struct rkv_range_store *store,
                         struct rkv_range_rtxn **out);
void rkv_range_rtxn_end(struct rkv_range_rtxn *rtxn);

/* Reads the local descriptor of a range. RKV_ERANGENOTFOUND when absent or
 * uninitialized. */
int rkv_range_desc_get(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                       struct rkv_range_desc *out);

/* Reads a range's stats. RKV_ERANGENOTFOUND. */
int rkv_range_stats_get(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                        struct rkv_range_stats *out);

/* Reads a key of a range. *value_out is borrowed from rtxn. Errors:
 * RKV_ENOTFOUND, RKV_EKEYMISMATCH (outside the range), RKV_ERANGENOTFOUND,
 * RKV_ETOOLARGE (key over RKV_RANGE_KEY_MAX). */
int rkv_range_get(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                  const void *key, size_t key_len, const uint8_t **value_out,
                  size_t *value_len_out);

/* One pair borrowed from a read transaction. */
struct rkv_range_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
};

struct rkv_range_scan_result {
    struct rkv_range_kv *pairs; /* owned array; pairs borrowed from rtxn */
    size_t n_pairs;
    bool more_after; /* stopped by limit or by the range end */
    uint8_t resume_key[RKV_RANGE_KEY_MAX]; /* where to continue */
    size_t resume_key_len;
};

/* Scans user keys in [start, end) clipped to the range's span, at most
 * limit pairs (0: 1000; above RKV_RANGE_SCAN_LIMIT_MAX it is lowered to
 * that). end_len 0 means the keyspace end. When the scan stops at the
 * limit or at the range's end before the requested end, more_after is set
 * and resume_key is where to continue (at the range's end: in the next
 * range). Free out with rkv_range_scan_result_free(). Errors:
 * RKV_EKEYMISMATCH when start is outside the range, RKV_ERANGENOTFOUND,
 * RKV_ETOOLARGE (a bound over RKV_RANGE_KEY_MAX), -ENOMEM. */
int rkv_range_scan(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                   const void *start, size_t start_len, const void *end,
                   size_t end_len, uint32_t limit,
                   struct rkv_range_scan_result *out);
void rkv_range_scan_result_free(struct rkv_range_scan_result *result);

/* Finds the meta record of the range containing a user key. Errors:
 * RKV_ERANGENOTFOUND when this node's copy of the system span has none
 * (it does not hold range 1). */
int rkv_range_meta_lookup(struct rkv_range_rtxn *rtxn, const void *key,
                          size_t key_len, struct rkv_range_desc *out);

/* Sets *stale_out when this node's meta record for desc (at its start key)
 * is missing or has a lower generation than desc. A range's leader runs it
 * after a split or replica change, and after gaining leadership, and then
 * proposes rkv_range_encode_meta_update() to range 1, so that a meta update
 * lost with a crashed leader is proposed again. RKV_ERANGENOTFOUND when
 * this node has no initialized replica of range 1. */
int rkv_range_meta_check(struct rkv_range_rtxn *rtxn,
                         const struct rkv_range_desc *desc, bool *stale_out);

/* Lists the meta records (every range of the cluster as this node's copy
 * of range 1 records them) in key order. *descs_out is freed with rkv_free().
 */
int rkv_range_meta_list(struct rkv_range_rtxn *rtxn,
                        struct rkv_range_desc **descs_out, size_t *n_out);

/* Lists the local descriptors of initialized replicas in range id order.
 * *descs_out is freed with rkv_free(). */
int rkv_range_desc_list(struct rkv_range_rtxn *rtxn,
                        struct rkv_range_desc **descs_out, size_t *n_out);

/* Computes a hash (FNV-1a, 64 bits) of a range's descriptor, stats and
 * every stored pair in its span (range 1: the system span too), to compare
 * replicas. */
int rkv_range_content_hash(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                           uint64_t *hash_out);

/* ---- commands ----------------------------------------------------------- */

/* The encoders build the bytes a NORMAL Raft entry carries. Each checks the
 * store's limits first and fails with RKV_ETOOLARGE naming the size and the
 * limit in errmsg (may be NULL; RKV_RANGE_ERRMSG_SIZE bytes); a key outside
 * the user keyspace limit, an empty batch or a bad argument is -EINVAL. On
 * success *buf_out is a new buffer freed with rkv_free(). Any thread. */

int rkv_range_encode_put(const struct rkv_range_store *store, const void *key,
                         size_t key_len, const void *value, size_t value_len,
                         uint8_t **buf_out, size_t *len_out, char *errmsg);

int rkv_range_encode_delete(const struct rkv_range_store *store,
                            const void *key, size_t key_len, uint8_t **buf_out,
                            size_t *len_out, char *errmsg);

/* expected NULL: the key must be absent. new_value NULL: delete on match. */
int rkv_range_encode_cas(const struct rkv_range_store *store, const void *key,
                         size_t key_len, const void *expected,
                         size_t expected_len, const void *new_value,
                         size_t new_value_len, uint8_t **buf_out,
                         size_t *len_out, char *errmsg);

struct rkv_range_op {
    bool is_delete; /* false: put */
    const void *key;
    size_t key_len;
    const void *value; /* put only */
    size_t value_len;
};

/* An atomic batch; all keys must be in one range at apply time, or none is
 * written (RKV_EKEYMISMATCH). */
int rkv_range_encode_batch(const struct rkv_range_store *store,
                           const struct rkv_range_op *ops, size_t n_ops,
                           uint8_t **buf_out, size_t *len_out, char *errmsg);

/* A split of desc (its generation is checked at apply) at split_key, which
 * starts the right-hand range new_range_id. */
int rkv_range_encode_split(const struct rkv_range_store *store,
                           const struct rkv_range_desc *desc,
                           const void *split_key, size_t split_key_len,
                           uint64_t new_range_id, uint8_t **buf_out,
                           size_t *len_out, char *errmsg);

/* Advances the range id counter (propose to range 1); the result's
 * new_range_id is the id allocated. */
int rkv_range_encode_alloc_range_id(uint8_t **buf_out, size_t *len_out);

/* Writes the meta records of the two sides of a split, or of one range
 * after a replica change when right is NULL (propose to range 1). */
int rkv_range_encode_meta_update(const struct rkv_range_desc *left,
                                 const struct rkv_range_desc *right,
                                 uint8_t **buf_out, size_t *len_out);

/* ---- splits ------------------------------------------------------------- */

/* Returns whether stats exceed the store's split threshold. */
bool rkv_range_should_split(const struct rkv_range_store *store,
                            const struct rkv_range_stats *stats);

/* Picks a user key near the middle of a range by key plus value bytes such
 * that both sides are non-empty. Copies it into key_out (RKV_RANGE_KEY_MAX
 * bytes). Errors: RKV_ENOTFOUND when the range has fewer than two keys,
 * RKV_ERANGENOTFOUND. */
int rkv_range_pick_split_key(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                             uint8_t *key_out, size_t *key_len_out);

/* ---- snapshots ---------------------------------------------------------- */

/* Position and state a snapshot restores besides the data. */
struct rkv_range_snapshot_meta {
    struct rkv_range_desc desc;
    uint64_t index; /* the applied index the snapshot is taken at */
    uint64_t term;  /* its term */
    struct rkv_range_stats stats;
};

/* Opens a reader of a range's data and state from one read transaction.
 * chunk_bytes_max 0 means RKV_RANGE_SNAPSHOT_CHUNK_DEFAULT. A chunk has
 * at least one pair, so it can exceed chunk_bytes_max by one pair (up to
 * value_max plus about 530 bytes); Raft's chunk limit must allow that.
 * meta_out (may be NULL) receives the snapshot's position. Free with
 * rkv_range_snapshot_close(). Errors: RKV_ERANGENOTFOUND, -ENOMEM. */
int rkv_range_snapshot_open(struct rkv_range_store *store, uint64_t range_id,
                            size_t chunk_bytes_max,
                            struct rkv_range_snapshot_reader **out,
                            struct rkv_range_snapshot_meta *meta_out);

/* Produces the next chunk; *chunk_out is a new buffer freed with rkv_free().
 * *last_out is true on the final chunk (the first chunk may be the last). */
int rkv_range_snapshot_next(struct rkv_range_snapshot_reader *reader,
                            uint8_t **chunk_out, size_t *chunk_len_out,
                            bool *last_out);
void rkv_range_snapshot_close(struct rkv_range_snapshot_reader *reader);

/* Stages one chunk of a snapshot for range_id; the first chunk resets any
 * earlier staged snapshot of the range. Commit fails with RKV_EMALFORMED
 * for a chunk that does not decode or names another range. */
int rkv_range_snapshot_install_chunk(struct rkv_range_wtxn *wtxn,
                                     uint64_t range_id, const uint8_t *chunk,
                                     size_t chunk_len);

/* Outcome of finishing a snapshot install, filled at commit. */
struct rkv_range_install_result {
    /* 0: installed. Not installed: RKV_EMALFORMED (the last chunk was not
     * staged), RKV_ESTALE (the snapshot is at or below the applied index),
     * RKV_EBUSY (its span overlaps another initialized range on this node;
     * the leader retries after that range's split applies here). */
    int rv;
    struct rkv_range_snapshot_meta meta; /* rv 0: what was installed */
};

/* Replaces the range's span, descriptor, stats and applied state with the
 * staged snapshot, deletes the range's whole stored log (as the Raft core
 * expects) and records the snapshot index and term as compacted.
 *
 * When the snapshot cannot be installed (the rv values listed on struct
 * rkv_range_install_result), the outcome depends on result:
 *   - result NULL: the whole commit fails with that code;
 *   - result given: result->rv gives the reason, the staged snapshot is
 * dropped, every later operation of this transaction on the same range is
 *     skipped (apply results then carry RKV_EBUSY), and the other ranges'
 *     work commits. The caller then restarts that range's Raft core from
 *     rkv_range_state_load(), as after a crash of that one group. */
int rkv_range_snapshot_install_finish(struct rkv_range_wtxn *wtxn,
                                      uint64_t range_id,
                                      struct rkv_range_install_result *result);

#endif /* RKV_RANGE_H */
