/*
 * Write transactions with group commit: the node's writer thread records
 * the Raft work and applies of many ranges, then commits them in one LMDB
 * transaction with one fsync.
 *
 * Happy path: each rkv_range_* operation appends a record to wtxn->ops;
 * rkv_range_wtxn_commit() begins an LMDB write transaction, runs the
 * records in order and commits.
 *
 * Failure modes:
 *   - MDB_MAP_FULL (RKV_EMAPFULL) from any record or from the commit: the
 *     LMDB transaction is aborted, the map is doubled up to map_size_max,
 *     apply results are reset and every record runs again. At the limit the
 *     commit fails with RKV_EMAPFULL;
 *   - a snapshot the store refuses to install, when the caller passed an
 *     install result: the refusal goes to the result, and every later
 *     record of that range in this transaction is skipped, because it
 *     assumed the snapshot. Other ranges' records commit;
 *   - any other error: the LMDB transaction is aborted, nothing is written
 *     and the error is returned. Apply results are reset so the caller never
 *     sees the outcome of an entry that was not committed.
 *
 * State machine of a wtxn: recording (begin, operations) -> committing
 * (commit) -> freed (end of commit or abort).
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

enum wtxn_op_kind {
    WTXN_HARD_STATE,
    WTXN_APPEND,
    WTXN_TRUNCATE,
    WTXN_COMPACT,
    WTXN_APPLY,
    WTXN_REPLICAS,
    WTXN_BOOTSTRAP,
    WTXN_CREATE_UNINIT,
    WTXN_SNAPSHOT_CHUNK,
    WTXN_SNAPSHOT_FINISH,
};

/* One recorded operation; pointers are borrowed from the caller. */
struct wtxn_op {
    enum wtxn_op_kind kind;
    uint64_t range_id;
    union {
        struct rkv_range_hard_state hard_state;
        struct {
            const struct rkv_range_entry *entries;
            size_t n_entries;
        } append;
        uint64_t index; /* TRUNCATE, COMPACT */
        struct {
            struct rkv_range_entry entry;
            struct rkv_range_apply_result *result;
        } apply;
        struct {
            struct rkv_range_replica replicas[RKV_RANGE_REPLICAS_MAX];
            size_t n_replicas;
        } replicas;
        struct {
            const uint8_t *chunk;
            size_t chunk_len;
        } chunk;
        struct rkv_range_install_result *install_result;
    } u;
};

struct rkv_range_wtxn {
    struct rkv_range_store *store;
    struct wtxn_op *ops;
    size_t n_ops;
    size_t ops_cap;
    /* Ranges whose snapshot was refused in the current attempt: their later
     * operations are skipped. Reset before every attempt. */
    uint64_t *skipped;
    size_t n_skipped;
    size_t skipped_cap;
};

int rkv_range_wtxn_begin(struct rkv_range_store *store,
                         struct rkv_range_wtxn **out)
{
    struct rkv_range_wtxn *wtxn;

    assert(store != NULL);

    wtxn = rkv_calloc(1, sizeof(*wtxn));
    if (wtxn == NULL) {
        return -ENOMEM;
    }
    wtxn->store = store;
    *out = wtxn;
    return 0;
}

void rkv_range_wtxn_abort(struct rkv_range_wtxn *wtxn)
{
    if (wtxn == NULL) {
        return;
    }
    rkv_free(wtxn->skipped);
    rkv_free(wtxn->ops);
    rkv_free(wtxn);
}

static struct wtxn_op *wtxn_push(struct rkv_range_wtxn *wtxn,
                                 enum wtxn_op_kind kind, uint64_t range_id)
{
    struct wtxn_op *op;

    if (wtxn->n_ops == wtxn->ops_cap) {
        size_t cap = wtxn->ops_cap == 0 ? 16 : wtxn->ops_cap * 2;
        struct wtxn_op *grown = rkv_realloc(wtxn->ops, cap * sizeof(*grown));

        if (grown == NULL) {
            return NULL;
        }
        wtxn->ops = grown;
        wtxn->ops_cap = cap;
    }
    op = &wtxn->ops[wtxn->n_ops++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->range_id = range_id;
    return op;
}

int rkv_range_hard_state_save(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                              const struct rkv_range_hard_state *hard_state)
{
    struct wtxn_op *op = wtxn_push(wtxn, WTXN_HARD_STATE, range_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.hard_state = *hard_state;
    return 0;
}

int rkv_range_log_append(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                         const struct rkv_range_entry *entries,
                         size_t n_entries)
{
    struct wtxn_op *op;

    if (n_entries == 0) {
        return 0;
    }
    for (size_t i = 1; i < n_entries; i++) {
        if (entries[i].index != entries[0].index + i) {
            return -EINVAL;
        }
    }
    op = wtxn_push(wtxn, WTXN_APPEND, range_id);
    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.append.entries = entries;
    op->u.append.n_entries = n_entries;
    return 0;
}

int rkv_range_log_truncate(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                           uint64_t from_index)
{
    struct wtxn_op *op = wtxn_push(wtxn, WTXN_TRUNCATE, range_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.index = from_index;
    return 0;
}

int rkv_range_log_compact(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                          uint64_t index)
{
    struct wtxn_op *op = wtxn_push(wtxn, WTXN_COMPACT, range_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.index = index;
    return 0;
}

int rkv_range_apply(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                    const struct rkv_range_entry *entry,
                    struct rkv_range_apply_result *result)
{
    struct wtxn_op *op = wtxn_push(wtxn, WTXN_APPLY, range_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.apply.entry = *entry;
    op->u.apply.result = result;
    if (result != NULL) {
        memset(result, 0, sizeof(*result));
    }
    return 0;
}

int rkv_range_replicas_set(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                           const struct rkv_range_replica *replicas,
                           size_t n_replicas)
{
    struct wtxn_op *op;

    if (n_replicas > RKV_RANGE_REPLICAS_MAX) {
        return -EINVAL;
    }
    op = wtxn_push(wtxn, WTXN_REPLICAS, range_id);
    if (op == NULL) {
        return -ENOMEM;
    }
    memcpy(op->u.replicas.replicas, replicas, n_replicas * sizeof(*replicas));
    op->u.replicas.n_replicas = n_replicas;
    return 0;
}

int rkv_range_bootstrap(struct rkv_range_wtxn *wtxn,
                        const struct rkv_range_replica *replicas,
                        size_t n_replicas)
{
    struct wtxn_op *op;

    if (n_replicas == 0 || n_replicas > RKV_RANGE_REPLICAS_MAX) {
        return -EINVAL;
    }
    op = wtxn_push(wtxn, WTXN_BOOTSTRAP, RKV_RANGE_ID_FIRST);
    if (op == NULL) {
        return -ENOMEM;
    }
    memcpy(op->u.replicas.replicas, replicas, n_replicas * sizeof(*replicas));
    op->u.replicas.n_replicas = n_replicas;
    return 0;
}

int rkv_range_create_uninit(struct rkv_range_wtxn *wtxn, uint64_t range_id)
{
    if (range_id == 0) {
        return -EINVAL;
    }
    return wtxn_push(wtxn, WTXN_CREATE_UNINIT, range_id) != NULL ? 0 : -ENOMEM;
}

int rkv_range_snapshot_install_chunk(struct rkv_range_wtxn *wtxn,
                                     uint64_t range_id, const uint8_t *chunk,
                                     size_t chunk_len)
{
    struct wtxn_op *op = wtxn_push(wtxn, WTXN_SNAPSHOT_CHUNK, range_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.chunk.chunk = chunk;
    op->u.chunk.chunk_len = chunk_len;
    return 0;
}

int rkv_range_snapshot_install_finish(struct rkv_range_wtxn *wtxn,
                                      uint64_t range_id,
                                      struct rkv_range_install_result *result)
{
    struct wtxn_op *op = wtxn_push(wtxn, WTXN_SNAPSHOT_FINISH, range_id);

    if (op == NULL) {
        return -ENOMEM;
    }
    op->u.install_result = result;
    if (result != NULL) {
        memset(result, 0, sizeof(*result));
    }
    return 0;
}

/* ---- running the records ------------------------------------------------ */

static int wtxn_run_replicas(struct rkv_range__tx *tx, const struct wtxn_op *op)
{
    struct rkv_range_desc desc;
    int rv;

    rv = rkv_range__desc_load(tx, op->range_id, &desc);
    if (rv != 0) {
        return rv;
    }
    memcpy(desc.replicas, op->u.replicas.replicas,
           op->u.replicas.n_replicas * sizeof(desc.replicas[0]));
    desc.n_replicas = op->u.replicas.n_replicas;
    desc.generation++;
    rv = rkv_range__desc_save(tx, &desc);
    if (rv != 0) {
        return rv;
    }
    RKV_LOG(RKV_INFO, "replicas changed range=%llu generation=%llu n=%zu",
            (unsigned long long)desc.range_id,
            (unsigned long long)desc.generation, desc.n_replicas);
    /* The first range stores its own meta record. Other ranges are
     * refreshed by a meta update proposed to the first range. */
    if (desc.range_id == RKV_RANGE_ID_FIRST) {
        return rkv_range__meta_write(tx, &desc);
    }
    return 0;
}

static int wtxn_run_bootstrap(struct rkv_range__tx *tx,
                              const struct wtxn_op *op)
{
    struct rkv_range__applied applied;
    struct rkv_range_desc desc;
    int rv;

    rv = rkv_range__applied_load(tx, RKV_RANGE_ID_FIRST, &applied);
    if (rv == 0) {
        return RKV_ESTALE;
    }
    if (rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    memset(&desc, 0, sizeof(desc));
    desc.range_id = RKV_RANGE_ID_FIRST;
    desc.generation = 1;
    memcpy(desc.replicas, op->u.replicas.replicas,
           op->u.replicas.n_replicas * sizeof(desc.replicas[0]));
    desc.n_replicas = op->u.replicas.n_replicas;

    rv = rkv_range__replica_create(tx, RKV_RANGE_ID_FIRST, 0, 0, NULL);
    if (rv == 0) {
        rv = rkv_range__desc_save(tx, &desc);
    }
    if (rv == 0) {
        rv = rkv_range__meta_write(tx, &desc);
    }
    if (rv == 0) {
        rv = rkv_range__counter_init(tx, RKV_RANGE_ID_FIRST + 1);
    }
    return rv;
}

static int wtxn_run_create_uninit(struct rkv_range__tx *tx, uint64_t range_id)
{
    struct rkv_range__applied applied;
    int rv;

    rv = rkv_range__applied_load(tx, range_id, &applied);
    if (rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    RKV_LOG(RKV_INFO, "uninitialized replica created range=%llu",
            (unsigned long long)range_id);
    return rkv_range__replica_create(tx, range_id, 0, 0, NULL);
}

/* Makes sure the range of a Raft operation exists on this node. */
static int wtxn_check_range(struct rkv_range__tx *tx, uint64_t range_id)
{
    struct rkv_range__applied applied;

    return rkv_range__applied_load(tx, range_id, &applied);
}

static int wtxn_run_op(struct rkv_range__tx *tx, struct wtxn_op *op)
{
    int rv;

    switch (op->kind) {
    case WTXN_HARD_STATE:
        rv = wtxn_check_range(tx, op->range_id);
        if (rv != 0) {
            return rv;
        }
        return rkv_range__hard_state_write(tx, op->range_id, &op->u.hard_state);
    case WTXN_APPEND:
        return rkv_range__log_append(tx, op->range_id, op->u.append.entries,
                                     op->u.append.n_entries);
    case WTXN_TRUNCATE:
        return rkv_range__log_truncate(tx, op->range_id, op->u.index);
    case WTXN_COMPACT:
        return rkv_range__log_compact(tx, op->range_id, op->u.index);
    case WTXN_APPLY:
        return rkv_range__apply(tx, op->range_id, &op->u.apply.entry,
                                op->u.apply.result);
    case WTXN_REPLICAS:
        return wtxn_run_replicas(tx, op);
    case WTXN_BOOTSTRAP:
        return wtxn_run_bootstrap(tx, op);
    case WTXN_CREATE_UNINIT:
        return wtxn_run_create_uninit(tx, op->range_id);
    case WTXN_SNAPSHOT_CHUNK:
        return rkv_range__snapshot_stage(tx, op->range_id, op->u.chunk.chunk,
                                         op->u.chunk.chunk_len);
    case WTXN_SNAPSHOT_FINISH:
        return rkv_range__snapshot_finish(tx, op->range_id,
                                          op->u.install_result);
    }
    assert(false);
    return -EINVAL;
}

static bool wtxn_is_skipped(const struct rkv_range_wtxn *wtxn,
                            uint64_t range_id)
{
    for (size_t i = 0; i < wtxn->n_skipped; i++) {
        if (wtxn->skipped[i] == range_id) {
            return true;
        }
    }
    return false;
}

static int wtxn_skip_range(struct rkv_range_wtxn *wtxn, uint64_t range_id)
{
    if (wtxn->n_skipped == wtxn->skipped_cap) {
        size_t cap = wtxn->skipped_cap == 0 ? 4 : wtxn->skipped_cap * 2;
        uint64_t *grown = rkv_realloc(wtxn->skipped, cap * sizeof(*grown));

        if (grown == NULL) {
            return -ENOMEM;
        }
        wtxn->skipped = grown;
        wtxn->skipped_cap = cap;
    }
    wtxn->skipped[wtxn->n_skipped++] = range_id;
    return 0;
}

/* Marks the outcome of an operation skipped after a refused snapshot. */
static void wtxn_skip_op(struct wtxn_op *op)
{
    if (op->kind == WTXN_APPLY && op->u.apply.result != NULL) {
        op->u.apply.result->kind = RKV_RANGE_CMD_NONE;
        op->u.apply.result->rv = RKV_EBUSY;
    }
    if (op->kind == WTXN_SNAPSHOT_FINISH && op->u.install_result != NULL) {
        op->u.install_result->rv = RKV_EBUSY;
    }
}

/* Forgets what a failed attempt wrote into apply results. */
static void wtxn_reset_results(struct rkv_range_wtxn *wtxn)
{
    for (size_t i = 0; i < wtxn->n_ops; i++) {
        struct wtxn_op *op = &wtxn->ops[i];

        if (op->kind == WTXN_APPLY && op->u.apply.result != NULL) {
            rkv_range_apply_result_free(op->u.apply.result);
            memset(op->u.apply.result, 0, sizeof(*op->u.apply.result));
        }
        if (op->kind == WTXN_SNAPSHOT_FINISH && op->u.install_result != NULL) {
            memset(op->u.install_result, 0, sizeof(*op->u.install_result));
        }
    }
}

/* Runs every record in one LMDB transaction and commits it. */
static int wtxn_attempt(struct rkv_range_wtxn *wtxn, size_t *n_applied_out)
{
    struct rkv_range__tx tx = {.store = wtxn->store};
    size_t n_applied = 0;
    int rv;

    rv =
        rkv_range__mdb_error(mdb_txn_begin(wtxn->store->env, NULL, 0, &tx.txn));
    if (rv != 0) {
        return rv;
    }
    wtxn->n_skipped = 0;
    for (size_t i = 0; i < wtxn->n_ops; i++) {
        struct wtxn_op *op = &wtxn->ops[i];

        if (wtxn_is_skipped(wtxn, op->range_id)) {
            wtxn_skip_op(op);
            continue;
        }
        rv = wtxn_run_op(&tx, op);
        if (rv != 0) {
            mdb_txn_abort(tx.txn);
            return rv;
        }
        if (op->kind == WTXN_APPLY) {
            n_applied++;
        }
        if (op->kind == WTXN_SNAPSHOT_FINISH && op->u.install_result != NULL &&
            op->u.install_result->rv != 0) {
            /* Later work of this range assumed the snapshot. */
            rv = wtxn_skip_range(wtxn, op->range_id);
            if (rv != 0) {
                mdb_txn_abort(tx.txn);
                return rv;
            }
        }
    }
    rv = rkv_range__mdb_error(mdb_txn_commit(tx.txn));
    if (rv == 0) {
        *n_applied_out = n_applied;
    }
    return rv;
}

/* Doubles the map, waiting for every transaction in the process to end. */
static int wtxn_grow_map(struct rkv_range_store *store)
{
    uint64_t size = atomic_load(&store->map_size);
    uint64_t new_size;
    int rv;

    if (size >= store->map_size_max) {
        /* The caller reports it: the node's writer retries and warns. */
        RKV_LOG(RKV_DEBUG, "map full size=%llu limit=%llu",
                (unsigned long long)size,
                (unsigned long long)store->map_size_max);
        return RKV_EMAPFULL;
    }
    new_size = RKV_MIN(size * 2, store->map_size_max);
    pthread_rwlock_wrlock(&store->map_lock);
    rv = rkv_range__mdb_error(mdb_env_set_mapsize(store->env, new_size));
    pthread_rwlock_unlock(&store->map_lock);
    if (rv != 0) {
        RKV_LOG(RKV_ERROR, "map growth failed size=%llu error=%s",
                (unsigned long long)new_size, rkv_strerror(rv));
        return rv;
    }
    atomic_store(&store->map_size, new_size);
    atomic_fetch_add(&store->n_map_grows, 1);
    RKV_LOG(RKV_INFO, "map grown size=%llu", (unsigned long long)new_size);
    return 0;
}

int rkv_range_wtxn_commit(struct rkv_range_wtxn *wtxn)
{
    struct rkv_range_store *store = wtxn->store;
    size_t n_applied = 0;
    int rv;

    for (;;) {
        pthread_rwlock_rdlock(&store->map_lock);
        rv = wtxn_attempt(wtxn, &n_applied);
        pthread_rwlock_unlock(&store->map_lock);
        if (rv != RKV_EMAPFULL) {
            break;
        }
        wtxn_reset_results(wtxn);
        rv = wtxn_grow_map(store);
        if (rv != 0) {
            break;
        }
    }
    if (rv != 0) {
        wtxn_reset_results(wtxn);
        rkv_range_wtxn_abort(wtxn);
        return rv;
    }

    atomic_fetch_add(&store->n_commits, 1);
    if (!store->no_sync) {
        atomic_fetch_add(&store->n_fsyncs, 1);
    }
    atomic_fetch_add(&store->n_entries_applied, n_applied);
    rkv_range_wtxn_abort(wtxn);
    return 0;
}
