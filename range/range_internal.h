/*
 * Internals shared by the range/ source files: the store object, the LMDB
 * wrappers that translate error codes, the stored record formats and the
 * operation records of write transactions.
 *
 * Stored key formats (all integers big-endian):
 *   data  0x01 'd' start_key      meta record: encoded RangeDescriptor
 *         0x01 'c'                range id counter: next id (8 bytes)
 *         0x02 user_key           user value
 *   log   range_id index          term (8), type (4), data
 *   raft  range_id 'h'            hard state: term, vote, commit (24)
 *         range_id 'a'            applied state: index, term, key_bytes,
 *                                 value_bytes, key_count (40)
 *         range_id 'l'            log bounds: compacted index, term (16)
 *   desc  range_id                encoded RangeDescriptor
 *   node  "ident"                 node_id, cluster_id (16)
 *   snap  range_id                staging header: index, term, next chunk
 *                                 seq (4), last (1), encoded descriptor
 *         range_id seq pair       one staged pair: key length (2), stored
 *                                 key, value
 *
 * A replica exists when its 'a' record exists; it is initialized when its
 * desc record exists too.
 *
 * Invariants:
 *   1. Only the first range has an empty start key, so its stored span
 *      starts at 0x01 and takes in the whole system span.
 *   2. Every LMDB call that writes goes through rkv_range__put() or
 *      rkv_range__del(), which also apply the test fault switch.
 */
#ifndef RKV_RANGE_INTERNAL_H
#define RKV_RANGE_INTERNAL_H

#include "range/range.h"

#include <pthread.h>
#include <stdatomic.h>

#include <lmdb.h>

#include "range/range.pb-c.h"

#define RKV_RANGE__PREFIX_SYSTEM 0x01
#define RKV_RANGE__PREFIX_USER 0x02
#define RKV_RANGE__META_TAG 'd'
#define RKV_RANGE__COUNTER_TAG 'c'
/* Longest stored key: a meta record key of a maximum-size start key. */
#define RKV_RANGE__STORED_KEY_MAX (RKV_RANGE_KEY_MAX + 2)
/* The LMDB key size the store needs (Debian's build has 511). */
#define RKV_RANGE__LMDB_KEY_MAX 511

_Static_assert(RKV_RANGE__STORED_KEY_MAX == RKV_RANGE__LMDB_KEY_MAX,
               "the user key limit leaves room for the meta prefix only");

struct rkv_range_store {
    MDB_env *env;
    MDB_dbi dbi_data;
    MDB_dbi dbi_log;
    MDB_dbi dbi_raft;
    MDB_dbi dbi_desc;
    MDB_dbi dbi_node;
    MDB_dbi dbi_snap;
    /* Held shared by every open transaction and exclusively while the map
     * grows, because LMDB allows mdb_env_set_mapsize() only with no
     * transaction active in the process. */
    pthread_rwlock_t map_lock;
    uint64_t map_size_max; /* bytes */
    bool no_sync;
    uint32_t value_max; /* bytes */
    uint32_t batch_ops_max;
    uint32_t batch_bytes_max; /* bytes of one encoded command */
    _Atomic uint64_t split_bytes;
    _Atomic uint64_t n_commits;
    _Atomic uint64_t n_fsyncs;
    _Atomic uint64_t n_entries_applied;
    _Atomic uint64_t n_map_grows;
    _Atomic uint64_t map_size; /* bytes */
    /* Test fault switch: writes left before every write fails with -EIO;
     * negative means never. Only the writer thread touches it. */
    long writes_before_failure;
};

/* One LMDB transaction with its store. */
struct rkv_range__tx {
    struct rkv_range_store *store;
    MDB_txn *txn;
};

struct rkv_range_rtxn {
    struct rkv_range__tx tx;
};

/* The raft 'a' record. */
struct rkv_range__applied {
    uint64_t index;
    uint64_t term;
    struct rkv_range_stats stats;
};

/* The raft 'l' record. */
struct rkv_range__log_bounds {
    uint64_t compacted_index;
    uint64_t compacted_term;
};

/* ---- range_store.c ---------------------------------------------------- */

/* Translates an LMDB return code (0, positive errno or MDB_*). */
int rkv_range__mdb_error(int mdb_rv);

/* Makes every write after the next n fail with -EIO (n < 0: never). */
void rkv_range__fail_writes_after(struct rkv_range_store *store, long n);

int rkv_range__put(struct rkv_range__tx *tx, MDB_dbi dbi, const void *key,
                   size_t key_len, const void *value, size_t value_len);
/* Deletes one key; a missing key is not an error. */
int rkv_range__del(struct rkv_range__tx *tx, MDB_dbi dbi, const void *key,
                   size_t key_len);
/* Reads one key; RKV_ENOTFOUND when missing. The value is borrowed from the
 * transaction. */
int rkv_range__get(struct rkv_range__tx *tx, MDB_dbi dbi, const void *key,
                   size_t key_len, MDB_val *value_out);
/* Deletes every key in [lower, upper) of dbi; upper NULL: to the end. */
int rkv_range__del_span(struct rkv_range__tx *tx, MDB_dbi dbi,
                        const void *lower, size_t lower_len, const void *upper,
                        size_t upper_len);
/* Compares an LMDB key against a bound (memcmp order, shorter first). */
int rkv_range__key_cmp(const void *a, size_t a_len, const void *b,
                       size_t b_len);

/* Stored user key: writes 0x02 key into buf (RKV_RANGE__STORED_KEY_MAX). */
size_t rkv_range__user_key(uint8_t *buf, const void *key, size_t key_len);
/* The stored span [lower, upper) of a descriptor; upper_len 0 means the end
 * of the data database. */
void rkv_range__stored_span(const struct rkv_range_desc *desc, uint8_t *lower,
                            size_t *lower_len, uint8_t *upper,
                            size_t *upper_len);

/* ---- range_state.c: raft, desc and node records ------------------------ */

int rkv_range__applied_load(struct rkv_range__tx *tx, uint64_t range_id,
                            struct rkv_range__applied *out);
int rkv_range__applied_save(struct rkv_range__tx *tx, uint64_t range_id,
                            const struct rkv_range__applied *applied);
int rkv_range__hard_state_load(struct rkv_range__tx *tx, uint64_t range_id,
                               struct rkv_range_hard_state *out);
int rkv_range__hard_state_write(struct rkv_range__tx *tx, uint64_t range_id,
                                const struct rkv_range_hard_state *hs);
int rkv_range__bounds_load(struct rkv_range__tx *tx, uint64_t range_id,
                           struct rkv_range__log_bounds *out);
int rkv_range__bounds_save(struct rkv_range__tx *tx, uint64_t range_id,
                           const struct rkv_range__log_bounds *bounds);
/* RKV_ERANGENOTFOUND when the desc record is missing. */
int rkv_range__desc_load(struct rkv_range__tx *tx, uint64_t range_id,
                         struct rkv_range_desc *out);
int rkv_range__desc_save(struct rkv_range__tx *tx,
                         const struct rkv_range_desc *desc);
int rkv_range__state_load(struct rkv_range__tx *tx, uint64_t range_id,
                          struct rkv_range_state *out);
/* Writes the records of a new replica (applied state, bounds, hard state)
 * at position index/term. */
int rkv_range__replica_create(struct rkv_range__tx *tx, uint64_t range_id,
                              uint64_t index, uint64_t term,
                              const struct rkv_range_stats *stats);

/* ---- range_log.c ------------------------------------------------------ */

int rkv_range__log_last(struct rkv_range__tx *tx, uint64_t range_id,
                        const struct rkv_range__log_bounds *bounds,
                        uint64_t *index_out, uint64_t *term_out);
int rkv_range__log_term(struct rkv_range__tx *tx, uint64_t range_id,
                        uint64_t index, uint64_t *term_out);
int rkv_range__log_append(struct rkv_range__tx *tx, uint64_t range_id,
                          const struct rkv_range_entry *entries,
                          size_t n_entries);
int rkv_range__log_truncate(struct rkv_range__tx *tx, uint64_t range_id,
                            uint64_t from_index);
int rkv_range__log_compact(struct rkv_range__tx *tx, uint64_t range_id,
                           uint64_t index);
/* Deletes every entry of a range. */
int rkv_range__log_clear(struct rkv_range__tx *tx, uint64_t range_id);

/* ---- range_codec.c ---------------------------------------------------- */

bool rkv_range__desc_is_valid(const struct rkv_range_desc *desc);
/* Encodes desc into a new buffer (rkv_free()). */
int rkv_range__desc_encode(const struct rkv_range_desc *desc, uint8_t **buf,
                           size_t *len);
int rkv_range__desc_decode(const uint8_t *buf, size_t len,
                           struct rkv_range_desc *out);
/* Copies a decoded descriptor message. RKV_EMALFORMED when invalid. */
int rkv_range__desc_from_msg(const RkvRange__RangeDescriptor *msg,
                             struct rkv_range_desc *out);
/* Fills msg (and replica storage owned by the caller) to point into desc. */
void rkv_range__desc_to_msg(const struct rkv_range_desc *desc,
                            RkvRange__RangeDescriptor *msg,
                            RkvRange__Replica *replicas,
                            RkvRange__Replica **replica_ptrs);

/* ---- range_apply.c, range_split.c, range_meta.c ------------------------ */

int rkv_range__apply(struct rkv_range__tx *tx, uint64_t range_id,
                     const struct rkv_range_entry *entry,
                     struct rkv_range_apply_result *result);
/* Applies a decoded split command to the range whose descriptor is desc. */
int rkv_range__split_apply(struct rkv_range__tx *tx,
                           struct rkv_range_desc *desc,
                           struct rkv_range__applied *applied,
                           const RkvRange__Split *split,
                           struct rkv_range_apply_result *result);
/* Writes a meta record unless the stored one has an equal or higher
 * generation. */
int rkv_range__meta_write(struct rkv_range__tx *tx,
                          const struct rkv_range_desc *desc);
int rkv_range__counter_next(struct rkv_range__tx *tx, uint64_t *id_out);
int rkv_range__counter_init(struct rkv_range__tx *tx, uint64_t next_id);
/* Sums user keys of the stored span [lower, upper). */
int rkv_range__stats_count(struct rkv_range__tx *tx, const uint8_t *lower,
                           size_t lower_len, const uint8_t *upper,
                           size_t upper_len, struct rkv_range_stats *out);

/* ---- range_snapshot.c ------------------------------------------------- */

int rkv_range__snapshot_stage(struct rkv_range__tx *tx, uint64_t range_id,
                              const uint8_t *chunk, size_t chunk_len);
/* Installs the staged snapshot. A snapshot that cannot be installed is
 * reported in result->rv (and returned when result is NULL); the return
 * value is otherwise a storage failure. */
int rkv_range__snapshot_finish(struct rkv_range__tx *tx, uint64_t range_id,
                               struct rkv_range_install_result *result);

#endif /* RKV_RANGE_INTERNAL_H */
