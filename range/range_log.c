/*
 * The Raft log of every range in the `log` database: key = range id and
 * index (both 8 bytes, big-endian, so one range's entries are contiguous
 * and in index order), value = term (8), type (4), data.
 *
 * Invariants:
 *   1. A range's stored entries have consecutive indexes starting at
 *      compacted_index + 1 (the 'l' record in range_state.c).
 *   2. The entry at compacted_index is gone, and its term is kept in the
 *      'l' record.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

#define LOG_KEY_LEN 16
#define LOG_HEADER_LEN 12

static void log_key(uint8_t *key, uint64_t range_id, uint64_t index)
{
    rkv_put_be64(key, range_id);
    rkv_put_be64(key + 8, index);
}

int rkv_range__log_last(struct rkv_range__tx *tx, uint64_t range_id,
                        const struct rkv_range__log_bounds *bounds,
                        uint64_t *index_out, uint64_t *term_out)
{
    uint8_t key[LOG_KEY_LEN];
    MDB_cursor *cursor;
    MDB_val k;
    MDB_val v;
    int rv;

    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_log, &cursor));
    if (rv != 0) {
        return rv;
    }
    /* The last entry of range_id sits just before range_id + 1's first. */
    log_key(key, range_id + 1, 0);
    k.mv_size = sizeof(key);
    k.mv_data = key;
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rv == MDB_SUCCESS) {
        rv = mdb_cursor_get(cursor, &k, &v, MDB_PREV);
    } else if (rv == MDB_NOTFOUND) {
        rv = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
    }
    if (rv == MDB_SUCCESS && k.mv_size == LOG_KEY_LEN &&
        rkv_get_be64(k.mv_data) == range_id) {
        if (v.mv_size < LOG_HEADER_LEN) {
            mdb_cursor_close(cursor);
            return RKV_ECORRUPT;
        }
        *index_out = rkv_get_be64((uint8_t *)k.mv_data + 8);
        *term_out = rkv_get_be64(v.mv_data);
        mdb_cursor_close(cursor);
        return 0;
    }
    mdb_cursor_close(cursor);
    if (rv != MDB_SUCCESS && rv != MDB_NOTFOUND) {
        return rkv_range__mdb_error(rv);
    }
    *index_out = bounds->compacted_index;
    *term_out = bounds->compacted_term;
    return 0;
}

int rkv_range__log_term(struct rkv_range__tx *tx, uint64_t range_id,
                        uint64_t index, uint64_t *term_out)
{
    struct rkv_range__log_bounds bounds;
    uint8_t key[LOG_KEY_LEN];
    MDB_val v;
    int rv;

    rv = rkv_range__bounds_load(tx, range_id, &bounds);
    if (rv != 0) {
        return rv;
    }
    if (index < bounds.compacted_index) {
        return RKV_ECOMPACTED;
    }
    if (index == bounds.compacted_index) {
        *term_out = bounds.compacted_term;
        return 0;
    }
    log_key(key, range_id, index);
    rv = rkv_range__get(tx, tx->store->dbi_log, key, sizeof(key), &v);
    if (rv != 0) {
        return rv;
    }
    if (v.mv_size < LOG_HEADER_LEN) {
        return RKV_ECORRUPT;
    }
    *term_out = rkv_get_be64(v.mv_data);
    return 0;
}

/* Deletes entries of range_id with index in [from, to]. */
static int log_delete(struct rkv_range__tx *tx, uint64_t range_id,
                      uint64_t from, uint64_t to)
{
    uint8_t lower[LOG_KEY_LEN];
    uint8_t upper[LOG_KEY_LEN];

    if (from > to) {
        return 0;
    }
    log_key(lower, range_id, from);
    if (to == UINT64_MAX) {
        log_key(upper, range_id + 1, 0);
    } else {
        log_key(upper, range_id, to + 1);
    }
    return rkv_range__del_span(tx, tx->store->dbi_log, lower, sizeof(lower),
                               upper, sizeof(upper));
}

int rkv_range__log_append(struct rkv_range__tx *tx, uint64_t range_id,
                          const struct rkv_range_entry *entries,
                          size_t n_entries)
{
    struct rkv_range__log_bounds bounds;
    uint64_t last_index;
    uint64_t last_term;
    uint8_t key[LOG_KEY_LEN];
    uint8_t *value = NULL;
    size_t value_cap = 0;
    int rv;

    assert(n_entries > 0);

    rv = rkv_range__bounds_load(tx, range_id, &bounds);
    if (rv == 0) {
        rv =
            rkv_range__log_last(tx, range_id, &bounds, &last_index, &last_term);
    }
    if (rv != 0) {
        return rv;
    }
    if (entries[0].index <= bounds.compacted_index ||
        entries[0].index > last_index + 1) {
        RKV_LOG(RKV_WARN,
                "append out of place range=%llu index=%llu compacted=%llu "
                "last=%llu",
                (unsigned long long)range_id,
                (unsigned long long)entries[0].index,
                (unsigned long long)bounds.compacted_index,
                (unsigned long long)last_index);
        return -EINVAL;
    }
    /* Raft's conflicting suffix: everything from the first new index. */
    rv = log_delete(tx, range_id, entries[0].index, UINT64_MAX);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n_entries; i++) {
        size_t len = LOG_HEADER_LEN + entries[i].data_len;

        assert(entries[i].index == entries[0].index + i);
        if (len > value_cap) {
            uint8_t *grown = rkv_realloc(value, len);

            if (grown == NULL) {
                rv = -ENOMEM;
                break;
            }
            value = grown;
            value_cap = len;
        }
        rkv_put_be64(value, entries[i].term);
        rkv_put_be32(value + 8, entries[i].type);
        if (entries[i].data_len > 0) {
            memcpy(value + LOG_HEADER_LEN, entries[i].data,
                   entries[i].data_len);
        }
        log_key(key, range_id, entries[i].index);
        rv = rkv_range__put(tx, tx->store->dbi_log, key, sizeof(key), value,
                            len);
        if (rv != 0) {
            break;
        }
    }
    rkv_free(value);
    return rv;
}

int rkv_range__log_truncate(struct rkv_range__tx *tx, uint64_t range_id,
                            uint64_t from_index)
{
    struct rkv_range__log_bounds bounds;
    int rv;

    rv = rkv_range__bounds_load(tx, range_id, &bounds);
    if (rv != 0) {
        return rv;
    }
    if (from_index <= bounds.compacted_index) {
        return -EINVAL;
    }
    return log_delete(tx, range_id, from_index, UINT64_MAX);
}

int rkv_range__log_compact(struct rkv_range__tx *tx, uint64_t range_id,
                           uint64_t index)
{
    struct rkv_range__log_bounds bounds;
    struct rkv_range__applied applied;
    uint64_t term;
    int rv;

    rv = rkv_range__bounds_load(tx, range_id, &bounds);
    if (rv == 0) {
        rv = rkv_range__applied_load(tx, range_id, &applied);
    }
    if (rv != 0) {
        return rv;
    }
    if (index <= bounds.compacted_index) {
        return 0;
    }
    if (index > applied.index) {
        return -EINVAL;
    }
    rv = rkv_range__log_term(tx, range_id, index, &term);
    if (rv != 0) {
        return rv == RKV_ENOTFOUND ? -EINVAL : rv;
    }
    rv = log_delete(tx, range_id, bounds.compacted_index + 1, index);
    if (rv != 0) {
        return rv;
    }
    bounds.compacted_index = index;
    bounds.compacted_term = term;
    return rkv_range__bounds_save(tx, range_id, &bounds);
}

int rkv_range__log_clear(struct rkv_range__tx *tx, uint64_t range_id)
{
    return log_delete(tx, range_id, 0, UINT64_MAX);
}

/* ---- public readers ----------------------------------------------------- */

void rkv_range_entries_free(struct rkv_range_entry *entries, size_t n_entries)
{
    if (entries == NULL) {
        return;
    }
    for (size_t i = 0; i < n_entries; i++) {
        rkv_free((void *)entries[i].data);
    }
    rkv_free(entries);
}

static int log_entry_copy(const MDB_val *k, const MDB_val *v,
                          struct rkv_range_entry *out)
{
    const uint8_t *value = v->mv_data;

    if (k->mv_size != LOG_KEY_LEN || v->mv_size < LOG_HEADER_LEN) {
        return RKV_ECORRUPT;
    }
    out->index = rkv_get_be64((const uint8_t *)k->mv_data + 8);
    out->term = rkv_get_be64(value);
    out->type = rkv_get_be32(value + 8);
    out->data_len = v->mv_size - LOG_HEADER_LEN;
    out->data = rkv_memdup(value + LOG_HEADER_LEN, out->data_len);
    if (out->data == NULL) {
        return -ENOMEM;
    }
    return 0;
}

/* Reads entries [from, to] of a range into a growing array. */
static int log_load_entries(struct rkv_range__tx *tx, uint64_t range_id,
                            uint64_t from, uint64_t to, size_t bytes_max,
                            struct rkv_range_entry **entries_out, size_t *n_out)
{
    uint8_t key[LOG_KEY_LEN];
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = sizeof(key), .mv_data = key};
    MDB_val v;
    struct rkv_range_entry *entries = NULL;
    size_t n = 0;
    size_t bytes = 0;
    int rv;

    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_log, &cursor));
    if (rv != 0) {
        return rv;
    }
    log_key(key, range_id, from);
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET);
    while (rv == MDB_SUCCESS && from + n <= to) {
        struct rkv_range_entry *grown;

        if (bytes_max > 0 && n > 0 && bytes + v.mv_size > bytes_max) {
            break;
        }
        grown = rkv_realloc(entries, (n + 1) * sizeof(*entries));
        if (grown == NULL) {
            rv = -ENOMEM;
            goto err;
        }
        entries = grown;
        rv = log_entry_copy(&k, &v, &entries[n]);
        if (rv != 0) {
            goto err;
        }
        if (entries[n].index != from + n) {
            rkv_free((void *)entries[n].data);
            rv = RKV_ECORRUPT;
            goto err;
        }
        bytes += v.mv_size;
        n++;
        rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    if (rv != MDB_SUCCESS && rv != MDB_NOTFOUND) {
        rv = rkv_range__mdb_error(rv);
        goto err;
    }
    mdb_cursor_close(cursor);
    if (n == 0) {
        return RKV_ENOTFOUND;
    }
    *entries_out = entries;
    *n_out = n;
    return 0;

err:
    mdb_cursor_close(cursor);
    rkv_range_entries_free(entries, n);
    assert(rv != 0);
    return rv;
}

int rkv_range_log_load(struct rkv_range_store *store, uint64_t range_id,
                       uint64_t from_index, uint64_t to_index, size_t bytes_max,
                       struct rkv_range_entry **entries_out,
                       size_t *n_entries_out)
{
    struct rkv_range_rtxn *rtxn;
    struct rkv_range__log_bounds bounds;
    int rv;

    assert(from_index <= to_index);

    rv = rkv_range_rtxn_begin(store, &rtxn);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__bounds_load(&rtxn->tx, range_id, &bounds);
    if (rv == 0 && from_index <= bounds.compacted_index) {
        rv = RKV_ECOMPACTED;
    }
    if (rv == 0) {
        rv = log_load_entries(&rtxn->tx, range_id, from_index, to_index,
                              bytes_max, entries_out, n_entries_out);
    }
    rkv_range_rtxn_end(rtxn);
    return rv;
}

int rkv_range_log_term(struct rkv_range_store *store, uint64_t range_id,
                       uint64_t index, uint64_t *term_out)
{
    struct rkv_range_rtxn *rtxn;
    int rv;

    rv = rkv_range_rtxn_begin(store, &rtxn);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__log_term(&rtxn->tx, range_id, index, term_out);
    rkv_range_rtxn_end(rtxn);
    return rv;
}
