/*
 * Splits: the leader's choice of a split key, and the split command every
 * replica applies.
 *
 * A split moves no data, because all ranges share the `data` database: it
 * shrinks the left descriptor, creates the right one with the same
 * replicas, and divides the stats by counting the right side (the left side
 * keeps the rest).
 *
 * NOTE: counting scans the right half inside the apply transaction, so at
 * the default 512 MiB threshold a split reads about 256 MiB while the
 * node's group commit waits. Tests use kilobyte thresholds, where it does
 * not show.
 *
 * Invariants:
 *   1. Both descriptors carry the same new generation, one above the left
 *      range's generation before the split.
 *   2. The right range's Raft state starts at RKV_RANGE_SPLIT_INDEX and
 *      RKV_RANGE_SPLIT_TERM with an empty log, on every replica.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

bool rkv_range_should_split(const struct rkv_range_store *store,
                            const struct rkv_range_stats *stats)
{
    return stats->key_bytes + stats->value_bytes >
           rkv_range_store_split_bytes(store);
}

int rkv_range__stats_count(struct rkv_range__tx *tx, const uint8_t *lower,
                           size_t lower_len, const uint8_t *upper,
                           size_t upper_len, struct rkv_range_stats *out)
{
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = lower_len, .mv_data = (void *)lower};
    MDB_val v;
    int rv;

    memset(out, 0, sizeof(*out));
    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_data, &cursor));
    if (rv != 0) {
        return rv;
    }
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rv == MDB_SUCCESS;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        const uint8_t *key = k.mv_data;

        if (upper_len > 0 &&
            rkv_range__key_cmp(key, k.mv_size, upper, upper_len) >= 0) {
            break;
        }
        if (key[0] != RKV_RANGE__PREFIX_USER) {
            continue;
        }
        out->key_count++;
        out->key_bytes += k.mv_size - 1;
        out->value_bytes += v.mv_size;
    }
    mdb_cursor_close(cursor);
    if (rv == MDB_NOTFOUND) {
        rv = 0;
    }
    return rkv_range__mdb_error(rv);
}

/* Checks a split command against the range as it is now. Returns a
 * storage failure; the verdict (0, -EINVAL or RKV_ESTALE) goes to
 * *verdict_out. */
static int split_validate(struct rkv_range__tx *tx,
                          const struct rkv_range_desc *desc,
                          const RkvRange__Split *split, int *verdict_out)
{
    struct rkv_range_desc existing;
    const ProtobufCBinaryData *key = &split->split_key;
    int rv;

    *verdict_out = -EINVAL;
    if (split->range_id != desc->range_id ||
        split->new_range_id <= RKV_RANGE_ID_FIRST ||
        split->new_range_id == desc->range_id) {
        return 0;
    }
    if (split->generation != desc->generation) {
        *verdict_out = RKV_ESTALE;
        return 0;
    }
    if (key->len == 0 || key->len > RKV_RANGE_KEY_MAX ||
        !rkv_range_desc_contains_key(desc, key->data, key->len) ||
        rkv_range__key_cmp(key->data, key->len, desc->start_key,
                           desc->start_key_len) == 0) {
        return 0;
    }
    /* An initialized range with the new id means the id was reused. */
    rv = rkv_range__desc_load(tx, split->new_range_id, &existing);
    if (rv == 0) {
        return 0;
    }
    if (rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    *verdict_out = 0;
    return 0;
}

/* Creates (or initializes an uninitialized) right-hand replica. */
static int split_create_right(struct rkv_range__tx *tx,
                              const struct rkv_range_desc *right,
                              const struct rkv_range_stats *stats)
{
    struct rkv_range_hard_state hs = {0};
    struct rkv_range__applied applied = {.index = RKV_RANGE_SPLIT_INDEX,
                                         .term = RKV_RANGE_SPLIT_TERM,
                                         .stats = *stats};
    struct rkv_range__log_bounds bounds = {
        .compacted_index = RKV_RANGE_SPLIT_INDEX,
        .compacted_term = RKV_RANGE_SPLIT_TERM};
    int rv;

    /* An uninitialized replica may have voted already: keep its term and
     * vote unless the split's term is newer. */
    rv = rkv_range__hard_state_load(tx, right->range_id, &hs);
    if (rv != 0 && rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    if (hs.term < RKV_RANGE_SPLIT_TERM) {
        hs.term = RKV_RANGE_SPLIT_TERM;
        hs.vote = 0;
    }
    hs.commit = RKV_MAX(hs.commit, (uint64_t)RKV_RANGE_SPLIT_INDEX);

    rv = rkv_range__log_clear(tx, right->range_id);
    if (rv == 0) {
        rv = rkv_range__hard_state_write(tx, right->range_id, &hs);
    }
    if (rv == 0) {
        rv = rkv_range__bounds_save(tx, right->range_id, &bounds);
    }
    if (rv == 0) {
        rv = rkv_range__applied_save(tx, right->range_id, &applied);
    }
    if (rv == 0) {
        rv = rkv_range__desc_save(tx, right);
    }
    return rv;
}

int rkv_range__split_apply(struct rkv_range__tx *tx,
                           struct rkv_range_desc *desc,
                           struct rkv_range__applied *applied,
                           const RkvRange__Split *split,
                           struct rkv_range_apply_result *result)
{
    struct rkv_range_desc right;
    struct rkv_range_stats right_stats;
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX];
    size_t lower_len;
    size_t upper_len;
    int rv;

    rv = split_validate(tx, desc, split, &result->rv);
    if (rv != 0) {
        return rv;
    }
    if (result->rv != 0) {
        RKV_LOG(RKV_WARN, "split rejected range=%llu generation=%llu error=%s",
                (unsigned long long)desc->range_id,
                (unsigned long long)split->generation, rkv_errname(result->rv));
        result->desc = *desc;
        return 0;
    }

    right = *desc;
    right.range_id = split->new_range_id;
    memcpy(right.start_key, split->split_key.data, split->split_key.len);
    right.start_key_len = split->split_key.len;
    desc->end_key_len = split->split_key.len;
    memcpy(desc->end_key, split->split_key.data, split->split_key.len);
    desc->generation++;
    right.generation = desc->generation;
    assert(rkv_range__desc_is_valid(desc));
    assert(rkv_range__desc_is_valid(&right));

    rkv_range__stored_span(&right, lower, &lower_len, upper, &upper_len);
    rv = rkv_range__stats_count(tx, lower, lower_len, upper, upper_len,
                                &right_stats);
    if (rv != 0) {
        return rv;
    }
    assert(right_stats.key_count <= applied->stats.key_count);
    applied->stats.key_count -= right_stats.key_count;
    applied->stats.key_bytes -= right_stats.key_bytes;
    applied->stats.value_bytes -= right_stats.value_bytes;

    rv = rkv_range__desc_save(tx, desc);
    if (rv == 0) {
        rv = split_create_right(tx, &right, &right_stats);
    }
    if (rv == 0 && desc->range_id == RKV_RANGE_ID_FIRST) {
        rv = rkv_range__meta_write(tx, desc);
        if (rv == 0) {
            rv = rkv_range__meta_write(tx, &right);
        }
    }
    if (rv != 0) {
        return rv;
    }
    result->desc = *desc;
    result->right = right;
    RKV_LOG(RKV_INFO,
            "split range=%llu new_range=%llu generation=%llu left_keys=%llu "
            "right_keys=%llu",
            (unsigned long long)desc->range_id,
            (unsigned long long)right.range_id,
            (unsigned long long)desc->generation,
            (unsigned long long)applied->stats.key_count,
            (unsigned long long)right_stats.key_count);
    return 0;
}

/* Finds the key nearest the byte middle of the span. */
static int split_find_middle(MDB_cursor *cursor, const uint8_t *upper,
                             size_t upper_len, uint64_t half, uint8_t *key_out,
                             size_t *key_len_out)
{
    MDB_val k;
    MDB_val v;
    uint64_t bytes = 0;
    size_t n_keys = 0;
    int rv;

    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_GET_CURRENT);
         rv == MDB_SUCCESS; rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        const uint8_t *key = k.mv_data;

        if (upper_len > 0 &&
            rkv_range__key_cmp(key, k.mv_size, upper, upper_len) >= 0) {
            break;
        }
        if (key[0] != RKV_RANGE__PREFIX_USER) {
            continue;
        }
        /* Split before the pair whose middle byte crosses half, because
         * that balances the sides best. The first user key always stays
         * left, so the left side is never empty. */
        if (n_keys > 0 && bytes + (k.mv_size - 1 + v.mv_size) / 2 >= half) {
            memcpy(key_out, key + 1, k.mv_size - 1);
            *key_len_out = k.mv_size - 1;
            return 0;
        }
        bytes += k.mv_size - 1 + v.mv_size;
        n_keys++;
    }
    if (rv != MDB_SUCCESS && rv != MDB_NOTFOUND) {
        return rkv_range__mdb_error(rv);
    }
    return RKV_ENOTFOUND;
}

int rkv_range_pick_split_key(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                             uint8_t *key_out, size_t *key_len_out)
{
    struct rkv_range__tx *tx = &rtxn->tx;
    struct rkv_range__applied applied;
    struct rkv_range_desc desc;
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX];
    size_t lower_len;
    size_t upper_len;
    MDB_cursor *cursor;
    MDB_val k;
    MDB_val v;
    int rv;

    rv = rkv_range__desc_load(tx, range_id, &desc);
    if (rv == 0) {
        rv = rkv_range__applied_load(tx, range_id, &applied);
    }
    if (rv != 0) {
        return rv;
    }
    if (applied.stats.key_count < 2) {
        return RKV_ENOTFOUND;
    }
    rkv_range__stored_span(&desc, lower, &lower_len, upper, &upper_len);
    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_data, &cursor));
    if (rv != 0) {
        return rv;
    }
    k.mv_size = lower_len;
    k.mv_data = lower;
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rv == MDB_SUCCESS) {
        rv = split_find_middle(
            cursor, upper, upper_len,
            (applied.stats.key_bytes + applied.stats.value_bytes) / 2, key_out,
            key_len_out);
    } else {
        rv = rkv_range__mdb_error(rv);
    }
    mdb_cursor_close(cursor);
    return rv;
}
