/*
 * The LMDB environment of a node: open and close, error translation, the
 * write wrappers with their test fault switch, map growth, read
 * transactions and the node identity record.
 *
 * Map growth: a write transaction that hits MDB_MAP_FULL is aborted, the
 * map is doubled (up to map_size_max) while map_lock is held exclusively,
 * and the transaction is replayed (range_wtxn.c). Readers hold map_lock
 * shared for their whole lifetime.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"

#define STORE_MAX_DBS 8
#define STORE_READERS_DEFAULT 126

int rkv_range__mdb_error(int mdb_rv)
{
    switch (mdb_rv) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return RKV_ENOTFOUND;
    case MDB_MAP_FULL:
        return RKV_EMAPFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
    case MDB_INVALID:
    case MDB_INCOMPATIBLE:
        return RKV_ECORRUPT;
    case MDB_TXN_FULL:
    case MDB_BAD_VALSIZE:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
        return RKV_ETOOLARGE;
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
    case MDB_TLS_FULL:
        return RKV_EBUSY;
    case MDB_MAP_RESIZED:
        return RKV_ESTALE;
    default:
        break;
    }
    if (mdb_rv > 0) {
        return -mdb_rv;
    }
    /* MDB_BAD_TXN, MDB_BAD_RSLOT, MDB_BAD_DBI, MDB_KEYEXIST: misuse. */
    return -EINVAL;
}

void rkv_range__fail_writes_after(struct rkv_range_store *store, long n)
{
    store->writes_before_failure = n;
}

static bool store_write_should_fail(struct rkv_range_store *store)
{
    if (store->writes_before_failure < 0) {
        return false;
    }
    if (store->writes_before_failure == 0) {
        return true;
    }
    store->writes_before_failure--;
    return false;
}

int rkv_range__put(struct rkv_range__tx *tx, MDB_dbi dbi, const void *key,
                   size_t key_len, const void *value, size_t value_len)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v = {.mv_size = value_len, .mv_data = (void *)value};

    assert(key_len > 0);
    assert(key_len <= RKV_RANGE__LMDB_KEY_MAX);

    if (store_write_should_fail(tx->store)) {
        return -EIO;
    }
    return rkv_range__mdb_error(mdb_put(tx->txn, dbi, &k, &v, 0));
}

int rkv_range__del(struct rkv_range__tx *tx, MDB_dbi dbi, const void *key,
                   size_t key_len)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    int rv;

    assert(key_len > 0);

    if (store_write_should_fail(tx->store)) {
        return -EIO;
    }
    rv = mdb_del(tx->txn, dbi, &k, NULL);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    return rkv_range__mdb_error(rv);
}

int rkv_range__get(struct rkv_range__tx *tx, MDB_dbi dbi, const void *key,
                   size_t key_len, MDB_val *value_out)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};

    assert(key_len > 0);
    return rkv_range__mdb_error(mdb_get(tx->txn, dbi, &k, value_out));
}

int rkv_range__key_cmp(const void *a, size_t a_len, const void *b, size_t b_len)
{
    size_t n = RKV_MIN(a_len, b_len);
    int c = n > 0 ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    if (a_len == b_len) {
        return 0;
    }
    return a_len < b_len ? -1 : 1;
}

int rkv_range__del_span(struct rkv_range__tx *tx, MDB_dbi dbi,
                        const void *lower, size_t lower_len, const void *upper,
                        size_t upper_len)
{
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = lower_len, .mv_data = (void *)lower};
    MDB_val v;
    int rv;

    assert(lower_len > 0);

    rv = rkv_range__mdb_error(mdb_cursor_open(tx->txn, dbi, &cursor));
    if (rv != 0) {
        return rv;
    }
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    while (rv == MDB_SUCCESS) {
        if (upper != NULL &&
            rkv_range__key_cmp(k.mv_data, k.mv_size, upper, upper_len) >= 0) {
            break;
        }
        if (store_write_should_fail(tx->store)) {
            mdb_cursor_close(cursor);
            return -EIO;
        }
        rv = mdb_cursor_del(cursor, 0);
        if (rv != MDB_SUCCESS) {
            break;
        }
        /* Seek again rather than rely on the cursor's position after a
         * delete, which LMDB defines loosely at page boundaries. */
        k.mv_size = lower_len;
        k.mv_data = (void *)lower;
        rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cursor);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    return rkv_range__mdb_error(rv);
}

size_t rkv_range__user_key(uint8_t *buf, const void *key, size_t key_len)
{
    assert(key_len <= RKV_RANGE_KEY_MAX);

    buf[0] = RKV_RANGE__PREFIX_USER;
    if (key_len > 0) {
        memcpy(buf + 1, key, key_len);
    }
    return key_len + 1;
}

void rkv_range__stored_span(const struct rkv_range_desc *desc, uint8_t *lower,
                            size_t *lower_len, uint8_t *upper,
                            size_t *upper_len)
{
    assert(rkv_range__desc_is_valid(desc));

    if (desc->start_key_len == 0) {
        /* The first range takes in the system span. */
        lower[0] = RKV_RANGE__PREFIX_SYSTEM;
        *lower_len = 1;
    } else {
        *lower_len =
            rkv_range__user_key(lower, desc->start_key, desc->start_key_len);
    }
    if (desc->end_key_len == 0) {
        *upper_len = 0;
    } else {
        *upper_len =
            rkv_range__user_key(upper, desc->end_key, desc->end_key_len);
    }
}

static void store_errmsg(char *errmsg, const char *step, int rv)
{
    if (errmsg == NULL) {
        return;
    }
    snprintf(errmsg, RKV_RANGE_ERRMSG_SIZE, "range store: %s: %s", step,
             rkv_strerror(rv));
}

static int store_apply_options(struct rkv_range_store *store,
                               const struct rkv_range_store_options *options,
                               char *errmsg)
{
    uint64_t map_size = options->map_size;

    store->map_size_max = options->map_size_max != 0
                              ? options->map_size_max
                              : RKV_RANGE_MAP_SIZE_MAX_DEFAULT;
    if (map_size == 0) {
        map_size = RKV_RANGE_MAP_SIZE_DEFAULT;
    }
    map_size = RKV_MIN(map_size, store->map_size_max);
    atomic_store(&store->map_size, map_size);
    store->no_sync = options->no_sync;
    store->value_max = options->value_max != 0 ? options->value_max
                                               : RKV_RANGE_VALUE_MAX_DEFAULT;
    store->batch_ops_max = options->batch_ops_max != 0
                               ? options->batch_ops_max
                               : RKV_RANGE_BATCH_OPS_MAX_DEFAULT;
    store->batch_bytes_max = options->batch_bytes_max != 0
                                 ? options->batch_bytes_max
                                 : RKV_RANGE_BATCH_BYTES_MAX_DEFAULT;
    atomic_store(&store->split_bytes, options->split_bytes != 0
                                          ? options->split_bytes
                                          : RKV_RANGE_SPLIT_BYTES_DEFAULT);
    store->writes_before_failure = -1;

    if (store->batch_bytes_max < store->value_max) {
        if (errmsg != NULL) {
            snprintf(errmsg, RKV_RANGE_ERRMSG_SIZE,
                     "range store: batch_bytes_max %u is below value_max %u",
                     store->batch_bytes_max, store->value_max);
        }
        return RKV_ECONFIG;
    }
    return 0;
}

static int store_open_env(struct rkv_range_store *store,
                          const struct rkv_range_store_options *options,
                          char *errmsg)
{
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
    unsigned readers = options->readers_max != 0 ? options->readers_max
                                                 : STORE_READERS_DEFAULT;
    int rv;

    if (store->no_sync) {
        flags |= MDB_NOSYNC;
    }
    rv = rkv_range__mdb_error(mdb_env_create(&store->env));
    if (rv != 0) {
        store_errmsg(errmsg, "mdb_env_create", rv);
        return rv;
    }
    mdb_env_set_maxdbs(store->env, STORE_MAX_DBS);
    mdb_env_set_maxreaders(store->env, readers);
    mdb_env_set_mapsize(store->env, (size_t)atomic_load(&store->map_size));

    if (mkdir(options->path, 0700) != 0 && errno != EEXIST) {
        rv = -errno;
        store_errmsg(errmsg, options->path, rv);
        goto err_after_create;
    }
    rv = rkv_range__mdb_error(
        mdb_env_open(store->env, options->path, flags, 0600));
    if (rv != 0) {
        store_errmsg(errmsg, options->path, rv);
        goto err_after_create;
    }
    if (mdb_env_get_maxkeysize(store->env) < RKV_RANGE__LMDB_KEY_MAX) {
        rv = RKV_ECONFIG;
        if (errmsg != NULL) {
            snprintf(errmsg, RKV_RANGE_ERRMSG_SIZE,
                     "range store: LMDB maximum key size %d is below %d",
                     mdb_env_get_maxkeysize(store->env),
                     RKV_RANGE__LMDB_KEY_MAX);
        }
        goto err_after_create;
    }
    return 0;

err_after_create:
    mdb_env_close(store->env);
    store->env = NULL;
    assert(rv != 0);
    return rv;
}

static int store_open_dbis(struct rkv_range_store *store, char *errmsg)
{
    static const char *const names[] = {"data", "log",  "raft",
                                        "desc", "node", "snap"};
    MDB_dbi *dbis[] = {&store->dbi_data, &store->dbi_log,  &store->dbi_raft,
                       &store->dbi_desc, &store->dbi_node, &store->dbi_snap};
    MDB_txn *txn;
    int rv;

    rv = rkv_range__mdb_error(mdb_txn_begin(store->env, NULL, 0, &txn));
    if (rv != 0) {
        store_errmsg(errmsg, "begin", rv);
        return rv;
    }
    for (size_t i = 0; i < RKV_ARRAY_SIZE(names); i++) {
        rv = rkv_range__mdb_error(
            mdb_dbi_open(txn, names[i], MDB_CREATE, dbis[i]));
        if (rv != 0) {
            store_errmsg(errmsg, names[i], rv);
            mdb_txn_abort(txn);
            return rv;
        }
    }
    rv = rkv_range__mdb_error(mdb_txn_commit(txn));
    if (rv != 0) {
        store_errmsg(errmsg, "commit", rv);
    }
    return rv;
}

int rkv_range_store_open(const struct rkv_range_store_options *options,
                         struct rkv_range_store **out, char *errmsg)
{
    struct rkv_range_store *store;
    int rv;

    assert(options != NULL);
    assert(out != NULL);

    if (options->path == NULL) {
        store_errmsg(errmsg, "path", -EINVAL);
        return -EINVAL;
    }
    store = rkv_calloc(1, sizeof(*store));
    if (store == NULL) {
        store_errmsg(errmsg, "allocate", -ENOMEM);
        return -ENOMEM;
    }
    rv = store_apply_options(store, options, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = -pthread_rwlock_init(&store->map_lock, NULL);
    if (rv != 0) {
        store_errmsg(errmsg, "map lock", rv);
        goto err_after_alloc;
    }
    rv = store_open_env(store, options, errmsg);
    if (rv != 0) {
        goto err_after_lock;
    }
    rv = store_open_dbis(store, errmsg);
    if (rv != 0) {
        goto err_after_env;
    }

    RKV_LOG(RKV_INFO, "store opened path=%s map_size=%llu sync=%d",
            options->path, (unsigned long long)atomic_load(&store->map_size),
            !store->no_sync);
    *out = store;
    return 0;

err_after_env:
    mdb_env_close(store->env);
err_after_lock:
    pthread_rwlock_destroy(&store->map_lock);
err_after_alloc:
    rkv_free(store);
    assert(rv != 0);
    return rv;
}

void rkv_range_store_close(struct rkv_range_store *store)
{
    if (store == NULL) {
        return;
    }
    mdb_env_close(store->env);
    pthread_rwlock_destroy(&store->map_lock);
    rkv_free(store);
}

void rkv_range_store_set_split_bytes(struct rkv_range_store *store,
                                     uint64_t split_bytes)
{
    assert(split_bytes > 0);
    atomic_store(&store->split_bytes, split_bytes);
}

uint64_t rkv_range_store_split_bytes(const struct rkv_range_store *store)
{
    return atomic_load(&((struct rkv_range_store *)store)->split_bytes);
}

void rkv_range_store_counters(const struct rkv_range_store *store,
                              struct rkv_range_store_counters *out)
{
    struct rkv_range_store *s = (struct rkv_range_store *)store;

    out->n_commits = atomic_load(&s->n_commits);
    out->n_fsyncs = atomic_load(&s->n_fsyncs);
    out->n_entries_applied = atomic_load(&s->n_entries_applied);
    out->n_map_grows = atomic_load(&s->n_map_grows);
    out->map_size = atomic_load(&s->map_size);
}

void rkv_range_store_space(struct rkv_range_store *store,
                           struct rkv_range_store_space *out)
{
    MDB_envinfo info;
    MDB_stat stat;

    pthread_rwlock_rdlock(&store->map_lock);
    mdb_env_info(store->env, &info);
    mdb_env_stat(store->env, &stat);
    pthread_rwlock_unlock(&store->map_lock);
    out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * stat.ms_psize;
    out->map_size_max = store->map_size_max;
}

/* ---- read transactions -------------------------------------------------- */

int rkv_range_rtxn_begin(struct rkv_range_store *store,
                         struct rkv_range_rtxn **out)
{
    struct rkv_range_rtxn *rtxn;
    int rv;

    assert(store != NULL);

    rtxn = rkv_malloc(sizeof(*rtxn));
    if (rtxn == NULL) {
        return -ENOMEM;
    }
    rtxn->tx.store = store;
    pthread_rwlock_rdlock(&store->map_lock);
    rv = rkv_range__mdb_error(
        mdb_txn_begin(store->env, NULL, MDB_RDONLY, &rtxn->tx.txn));
    if (rv != 0) {
        goto err_after_lock;
    }
    *out = rtxn;
    return 0;

err_after_lock:
    pthread_rwlock_unlock(&store->map_lock);
    rkv_free(rtxn);
    assert(rv != 0);
    return rv;
}

void rkv_range_rtxn_end(struct rkv_range_rtxn *rtxn)
{
    struct rkv_range_store *store;

    if (rtxn == NULL) {
        return;
    }
    store = rtxn->tx.store;
    mdb_txn_abort(rtxn->tx.txn);
    pthread_rwlock_unlock(&store->map_lock);
    rkv_free(rtxn);
}

/* ---- node identity ------------------------------------------------------ */

static const char ident_key[] = "ident";

int rkv_range_ident_load(struct rkv_range_store *store,
                         struct rkv_range_ident *out)
{
    struct rkv_range_rtxn *rtxn;
    MDB_val v;
    int rv;

    rv = rkv_range_rtxn_begin(store, &rtxn);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__get(&rtxn->tx, store->dbi_node, ident_key,
                        sizeof(ident_key) - 1, &v);
    if (rv == 0 && v.mv_size != 16) {
        rv = RKV_ECORRUPT;
    }
    if (rv == 0) {
        out->node_id = rkv_get_be64(v.mv_data);
        out->cluster_id = rkv_get_be64((uint8_t *)v.mv_data + 8);
    }
    rkv_range_rtxn_end(rtxn);
    return rv;
}

int rkv_range_ident_save(struct rkv_range_store *store,
                         const struct rkv_range_ident *ident)
{
    struct rkv_range_ident stored;
    struct rkv_range__tx tx = {.store = store};
    uint8_t buf[16];
    int rv;

    assert(ident->node_id != 0);
    assert(ident->cluster_id != 0);

    rv = rkv_range_ident_load(store, &stored);
    if (rv == 0) {
        if (stored.node_id != ident->node_id ||
            stored.cluster_id != ident->cluster_id) {
            RKV_LOG(RKV_ERROR,
                    "identity mismatch stored_node=%llu stored_cluster=%llu "
                    "node=%llu cluster=%llu",
                    (unsigned long long)stored.node_id,
                    (unsigned long long)stored.cluster_id,
                    (unsigned long long)ident->node_id,
                    (unsigned long long)ident->cluster_id);
            return RKV_ECLUSTERID;
        }
        return 0;
    }
    if (rv != RKV_ENOTFOUND) {
        return rv;
    }

    rkv_put_be64(buf, ident->node_id);
    rkv_put_be64(buf + 8, ident->cluster_id);
    pthread_rwlock_rdlock(&store->map_lock);
    rv = rkv_range__mdb_error(mdb_txn_begin(store->env, NULL, 0, &tx.txn));
    if (rv != 0) {
        goto out;
    }
    rv = rkv_range__put(&tx, store->dbi_node, ident_key, sizeof(ident_key) - 1,
                        buf, sizeof(buf));
    if (rv != 0) {
        mdb_txn_abort(tx.txn);
        goto out;
    }
    rv = rkv_range__mdb_error(mdb_txn_commit(tx.txn));
    if (rv == 0) {
        atomic_fetch_add(&store->n_commits, 1);
        if (!store->no_sync) {
            atomic_fetch_add(&store->n_fsyncs, 1);
        }
    }
out:
    pthread_rwlock_unlock(&store->map_lock);
    return rv;
}
