/*
 * The per-range records of the `raft` and `desc` databases (hard state,
 * applied state with stats, log bounds, local descriptor) and the restart
 * loader built from them. Each record is checked after it is read: a wrong
 * length or a descriptor that fails validation is RKV_ECORRUPT.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

#define STATE_KEY_LEN 9
#define STATE_TAG_HARD 'h'
#define STATE_TAG_APPLIED 'a'
#define STATE_TAG_BOUNDS 'l'
#define STATE_HARD_LEN 24
#define STATE_APPLIED_LEN 40
#define STATE_BOUNDS_LEN 16

static void state_key(uint8_t *key, uint64_t range_id, uint8_t tag)
{
    rkv_put_be64(key, range_id);
    key[8] = tag;
}

static int state_read(struct rkv_range__tx *tx, uint64_t range_id, uint8_t tag,
                      size_t len, uint8_t *buf)
{
    uint8_t key[STATE_KEY_LEN];
    MDB_val v;
    int rv;

    state_key(key, range_id, tag);
    rv = rkv_range__get(tx, tx->store->dbi_raft, key, sizeof(key), &v);
    if (rv == RKV_ENOTFOUND) {
        return RKV_ERANGENOTFOUND;
    }
    if (rv != 0) {
        return rv;
    }
    if (v.mv_size != len) {
        RKV_LOG(RKV_ERROR, "corrupt state record range=%llu tag=%c len=%zu",
                (unsigned long long)range_id, tag, v.mv_size);
        return RKV_ECORRUPT;
    }
    memcpy(buf, v.mv_data, len);
    return 0;
}

static int state_write(struct rkv_range__tx *tx, uint64_t range_id, uint8_t tag,
                       const uint8_t *buf, size_t len)
{
    uint8_t key[STATE_KEY_LEN];

    state_key(key, range_id, tag);
    return rkv_range__put(tx, tx->store->dbi_raft, key, sizeof(key), buf, len);
}

int rkv_range__applied_load(struct rkv_range__tx *tx, uint64_t range_id,
                            struct rkv_range__applied *out)
{
    uint8_t buf[STATE_APPLIED_LEN];
    int rv;

    rv = state_read(tx, range_id, STATE_TAG_APPLIED, sizeof(buf), buf);
    if (rv != 0) {
        return rv;
    }
    out->index = rkv_get_be64(buf);
    out->term = rkv_get_be64(buf + 8);
    out->stats.key_bytes = rkv_get_be64(buf + 16);
    out->stats.value_bytes = rkv_get_be64(buf + 24);
    out->stats.key_count = rkv_get_be64(buf + 32);
    return 0;
}

int rkv_range__applied_save(struct rkv_range__tx *tx, uint64_t range_id,
                            const struct rkv_range__applied *applied)
{
    uint8_t buf[STATE_APPLIED_LEN];

    /* A range with keys has key bytes: every key is at least one byte. */
    assert(applied->stats.key_bytes >= applied->stats.key_count);

    rkv_put_be64(buf, applied->index);
    rkv_put_be64(buf + 8, applied->term);
    rkv_put_be64(buf + 16, applied->stats.key_bytes);
    rkv_put_be64(buf + 24, applied->stats.value_bytes);
    rkv_put_be64(buf + 32, applied->stats.key_count);
    return state_write(tx, range_id, STATE_TAG_APPLIED, buf, sizeof(buf));
}

int rkv_range__hard_state_load(struct rkv_range__tx *tx, uint64_t range_id,
                               struct rkv_range_hard_state *out)
{
    uint8_t buf[STATE_HARD_LEN];
    int rv;

    rv = state_read(tx, range_id, STATE_TAG_HARD, sizeof(buf), buf);
    if (rv != 0) {
        return rv;
    }
    out->term = rkv_get_be64(buf);
    out->vote = rkv_get_be64(buf + 8);
    out->commit = rkv_get_be64(buf + 16);
    return 0;
}

int rkv_range__hard_state_write(struct rkv_range__tx *tx, uint64_t range_id,
                                const struct rkv_range_hard_state *hs)
{
    uint8_t buf[STATE_HARD_LEN];

    rkv_put_be64(buf, hs->term);
    rkv_put_be64(buf + 8, hs->vote);
    rkv_put_be64(buf + 16, hs->commit);
    return state_write(tx, range_id, STATE_TAG_HARD, buf, sizeof(buf));
}

int rkv_range__bounds_load(struct rkv_range__tx *tx, uint64_t range_id,
                           struct rkv_range__log_bounds *out)
{
    uint8_t buf[STATE_BOUNDS_LEN];
    int rv;

    rv = state_read(tx, range_id, STATE_TAG_BOUNDS, sizeof(buf), buf);
    if (rv != 0) {
        return rv;
    }
    out->compacted_index = rkv_get_be64(buf);
    out->compacted_term = rkv_get_be64(buf + 8);
    return 0;
}

int rkv_range__bounds_save(struct rkv_range__tx *tx, uint64_t range_id,
                           const struct rkv_range__log_bounds *bounds)
{
    uint8_t buf[STATE_BOUNDS_LEN];

    rkv_put_be64(buf, bounds->compacted_index);
    rkv_put_be64(buf + 8, bounds->compacted_term);
    return state_write(tx, range_id, STATE_TAG_BOUNDS, buf, sizeof(buf));
}

int rkv_range__desc_load(struct rkv_range__tx *tx, uint64_t range_id,
                         struct rkv_range_desc *out)
{
    uint8_t key[8];
    MDB_val v;
    int rv;

    rkv_put_be64(key, range_id);
    rv = rkv_range__get(tx, tx->store->dbi_desc, key, sizeof(key), &v);
    if (rv == RKV_ENOTFOUND) {
        return RKV_ERANGENOTFOUND;
    }
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__desc_decode(v.mv_data, v.mv_size, out);
    if (rv != 0 || out->range_id != range_id) {
        RKV_LOG(RKV_ERROR, "corrupt descriptor record range=%llu",
                (unsigned long long)range_id);
        return RKV_ECORRUPT;
    }
    return 0;
}

int rkv_range__desc_save(struct rkv_range__tx *tx,
                         const struct rkv_range_desc *desc)
{
    uint8_t key[8];
    uint8_t *buf;
    size_t len;
    int rv;

    assert(rkv_range__desc_is_valid(desc));

    rv = rkv_range__desc_encode(desc, &buf, &len);
    if (rv != 0) {
        return rv;
    }
    rkv_put_be64(key, desc->range_id);
    rv = rkv_range__put(tx, tx->store->dbi_desc, key, sizeof(key), buf, len);
    rkv_free(buf);
    return rv;
}

int rkv_range__replica_create(struct rkv_range__tx *tx, uint64_t range_id,
                              uint64_t index, uint64_t term,
                              const struct rkv_range_stats *stats)
{
    struct rkv_range__applied applied = {.index = index, .term = term};
    struct rkv_range__log_bounds bounds = {.compacted_index = index,
                                           .compacted_term = term};
    struct rkv_range_hard_state hs = {.term = term, .commit = index};
    int rv;

    assert(range_id != 0);

    if (stats != NULL) {
        applied.stats = *stats;
    }
    rv = rkv_range__applied_save(tx, range_id, &applied);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__bounds_save(tx, range_id, &bounds);
    if (rv != 0) {
        return rv;
    }
    return rkv_range__hard_state_write(tx, range_id, &hs);
}

int rkv_range__state_load(struct rkv_range__tx *tx, uint64_t range_id,
                          struct rkv_range_state *out)
{
    struct rkv_range__applied applied;
    struct rkv_range__log_bounds bounds;
    int rv;

    memset(out, 0, sizeof(*out));
    rv = rkv_range__applied_load(tx, range_id, &applied);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__bounds_load(tx, range_id, &bounds);
    if (rv == 0) {
        rv = rkv_range__hard_state_load(tx, range_id, &out->hard_state);
    }
    if (rv == 0) {
        rv = rkv_range__log_last(tx, range_id, &bounds, &out->last_index,
                                 &out->last_term);
    }
    if (rv != 0) {
        return rv == RKV_ERANGENOTFOUND ? RKV_ECORRUPT : rv;
    }
    rv = rkv_range__desc_load(tx, range_id, &out->desc);
    if (rv == 0) {
        out->initialized = true;
    } else if (rv == RKV_ERANGENOTFOUND) {
        out->initialized = false;
        out->desc.range_id = range_id;
    } else {
        return rv;
    }
    out->applied_index = applied.index;
    out->applied_term = applied.term;
    out->stats = applied.stats;
    out->compacted_index = bounds.compacted_index;
    out->compacted_term = bounds.compacted_term;
    if (out->applied_index < out->compacted_index ||
        out->last_index < out->compacted_index) {
        RKV_LOG(RKV_ERROR,
                "inconsistent raft state range=%llu applied=%llu "
                "compacted=%llu last=%llu",
                (unsigned long long)range_id,
                (unsigned long long)out->applied_index,
                (unsigned long long)out->compacted_index,
                (unsigned long long)out->last_index);
        return RKV_ECORRUPT;
    }
    return 0;
}

int rkv_range_state_load(struct rkv_range_store *store, uint64_t range_id,
                         struct rkv_range_state *out)
{
    struct rkv_range_rtxn *rtxn;
    int rv;

    rv = rkv_range_rtxn_begin(store, &rtxn);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__state_load(&rtxn->tx, range_id, out);
    rkv_range_rtxn_end(rtxn);
    return rv;
}

/* Collects the ids of every replica (every 'a' record). */
static int store_load_ids(struct rkv_range__tx *tx, uint64_t **ids_out,
                          size_t *n_out)
{
    MDB_cursor *cursor;
    MDB_val k;
    MDB_val v;
    uint64_t *ids = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rv;

    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_raft, &cursor));
    if (rv != 0) {
        return rv;
    }
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rv == MDB_SUCCESS;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        const uint8_t *key = k.mv_data;

        if (k.mv_size != STATE_KEY_LEN || key[8] != STATE_TAG_APPLIED) {
            continue;
        }
        if (n == cap) {
            size_t new_cap = cap == 0 ? 16 : cap * 2;
            uint64_t *grown = rkv_realloc(ids, new_cap * sizeof(*ids));

            if (grown == NULL) {
                mdb_cursor_close(cursor);
                rkv_free(ids);
                return -ENOMEM;
            }
            ids = grown;
            cap = new_cap;
        }
        ids[n++] = rkv_get_be64(key);
    }
    mdb_cursor_close(cursor);
    if (rv != MDB_NOTFOUND) {
        rkv_free(ids);
        return rkv_range__mdb_error(rv);
    }
    *ids_out = ids;
    *n_out = n;
    return 0;
}

int rkv_range_store_load(struct rkv_range_store *store,
                         struct rkv_range_state **states_out,
                         size_t *n_states_out)
{
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_state *states = NULL;
    uint64_t *ids = NULL;
    size_t n = 0;
    int rv;

    rv = rkv_range_rtxn_begin(store, &rtxn);
    if (rv != 0) {
        return rv;
    }
    rv = store_load_ids(&rtxn->tx, &ids, &n);
    if (rv != 0) {
        goto err_after_rtxn;
    }
    if (n > 0) {
        states = rkv_calloc(n, sizeof(*states));
        if (states == NULL) {
            rv = -ENOMEM;
            goto err_after_ids;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rv = rkv_range__state_load(&rtxn->tx, ids[i], &states[i]);
        if (rv != 0) {
            goto err_after_states;
        }
    }
    rkv_free(ids);
    rkv_range_rtxn_end(rtxn);
    *states_out = states;
    *n_states_out = n;
    return 0;

err_after_states:
    rkv_free(states);
err_after_ids:
    rkv_free(ids);
err_after_rtxn:
    rkv_range_rtxn_end(rtxn);
    assert(rv != 0);
    return rv;
}
