/*
 * Reads within one range from a read transaction: descriptor, stats, get,
 * scan, and the content hash used to compare replicas.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

#define READ_SCAN_LIMIT_DEFAULT 1000
#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

int rkv_range_desc_get(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                       struct rkv_range_desc *out)
{
    return rkv_range__desc_load(&rtxn->tx, range_id, out);
}

int rkv_range_stats_get(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                        struct rkv_range_stats *out)
{
    struct rkv_range__applied applied;
    int rv;

    rv = rkv_range__applied_load(&rtxn->tx, range_id, &applied);
    if (rv == 0) {
        *out = applied.stats;
    }
    return rv;
}

int rkv_range_get(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                  const void *key, size_t key_len, const uint8_t **value_out,
                  size_t *value_len_out)
{
    uint8_t stored[RKV_RANGE__STORED_KEY_MAX];
    size_t stored_len;
    struct rkv_range_desc desc;
    MDB_val v;
    int rv;

    if (key_len == 0) {
        return -EINVAL;
    }
    if (key_len > RKV_RANGE_KEY_MAX) {
        return RKV_ETOOLARGE;
    }
    rv = rkv_range__desc_load(&rtxn->tx, range_id, &desc);
    if (rv != 0) {
        return rv;
    }
    if (!rkv_range_desc_contains_key(&desc, key, key_len)) {
        return RKV_EKEYMISMATCH;
    }
    stored_len = rkv_range__user_key(stored, key, key_len);
    rv = rkv_range__get(&rtxn->tx, rtxn->tx.store->dbi_data, stored, stored_len,
                        &v);
    if (rv != 0) {
        return rv;
    }
    *value_out = v.mv_data;
    *value_len_out = v.mv_size;
    return 0;
}

void rkv_range_scan_result_free(struct rkv_range_scan_result *result)
{
    if (result == NULL) {
        return;
    }
    rkv_free(result->pairs);
    result->pairs = NULL;
    result->n_pairs = 0;
}

/* Picks the tighter of the request's end and the range's end. */
static void scan_upper(const struct rkv_range_desc *desc, const void *end,
                       size_t end_len, uint8_t *upper, size_t *upper_len)
{
    bool use_request =
        end_len > 0 && (desc->end_key_len == 0 ||
                        rkv_range__key_cmp(end, end_len, desc->end_key,
                                           desc->end_key_len) < 0);

    if (use_request) {
        *upper_len = rkv_range__user_key(upper, end, end_len);
    } else if (desc->end_key_len > 0) {
        *upper_len =
            rkv_range__user_key(upper, desc->end_key, desc->end_key_len);
    } else {
        /* The end of the user keyspace: the prefix after the user one. */
        upper[0] = RKV_RANGE__PREFIX_USER + 1;
        *upper_len = 1;
    }
}

static int scan_collect(MDB_cursor *cursor, MDB_val *k, MDB_val *v,
                        const uint8_t *upper, size_t upper_len, uint32_t limit,
                        struct rkv_range_scan_result *out)
{
    size_t cap = 0;
    int rv = MDB_SUCCESS;

    for (; rv == MDB_SUCCESS; rv = mdb_cursor_get(cursor, k, v, MDB_NEXT)) {
        const uint8_t *key = k->mv_data;

        if (rkv_range__key_cmp(key, k->mv_size, upper, upper_len) >= 0) {
            break;
        }
        if (out->n_pairs == limit) {
            out->more_after = true;
            memcpy(out->resume_key, key + 1, k->mv_size - 1);
            out->resume_key_len = k->mv_size - 1;
            break;
        }
        if (out->n_pairs == cap) {
            size_t new_cap = RKV_MIN(cap == 0 ? 64 : cap * 2, (size_t)limit);
            struct rkv_range_kv *grown =
                rkv_realloc(out->pairs, new_cap * sizeof(*grown));

            if (grown == NULL) {
                rkv_range_scan_result_free(out);
                return -ENOMEM;
            }
            out->pairs = grown;
            cap = new_cap;
        }
        out->pairs[out->n_pairs].key = key + 1;
        out->pairs[out->n_pairs].key_len = k->mv_size - 1;
        out->pairs[out->n_pairs].value = v->mv_data;
        out->pairs[out->n_pairs].value_len = v->mv_size;
        out->n_pairs++;
    }
    if (rv != MDB_SUCCESS && rv != MDB_NOTFOUND) {
        rkv_range_scan_result_free(out);
        return rkv_range__mdb_error(rv);
    }
    return 0;
}

int rkv_range_scan(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                   const void *start, size_t start_len, const void *end,
                   size_t end_len, uint32_t limit,
                   struct rkv_range_scan_result *out)
{
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX];
    size_t upper_len;
    struct rkv_range_desc desc;
    MDB_cursor *cursor;
    MDB_val k;
    MDB_val v;
    int rv;

    memset(out, 0, sizeof(*out));
    if (start_len > RKV_RANGE_KEY_MAX || end_len > RKV_RANGE_KEY_MAX) {
        return RKV_ETOOLARGE;
    }
    rv = rkv_range__desc_load(&rtxn->tx, range_id, &desc);
    if (rv != 0) {
        return rv;
    }
    if (!rkv_range_desc_contains_key(&desc, start, start_len)) {
        return RKV_EKEYMISMATCH;
    }
    if (limit == 0) {
        limit = READ_SCAN_LIMIT_DEFAULT;
    }
    limit = RKV_MIN(limit, RKV_RANGE_SCAN_LIMIT_MAX);
    scan_upper(&desc, end, end_len, upper, &upper_len);
    k.mv_size = rkv_range__user_key(lower, start, start_len);
    k.mv_data = lower;

    rv = rkv_range__mdb_error(
        mdb_cursor_open(rtxn->tx.txn, rtxn->tx.store->dbi_data, &cursor));
    if (rv != 0) {
        return rv;
    }
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rv == MDB_SUCCESS || rv == MDB_NOTFOUND) {
        rv = rv == MDB_SUCCESS
                 ? scan_collect(cursor, &k, &v, upper, upper_len, limit, out)
                 : 0;
    } else {
        rv = rkv_range__mdb_error(rv);
    }
    mdb_cursor_close(cursor);
    if (rv == 0 && !out->more_after && desc.end_key_len > 0 &&
        (end_len == 0 || rkv_range__key_cmp(end, end_len, desc.end_key,
                                            desc.end_key_len) > 0)) {
        /* The request goes past this range: continue in the next one. */
        out->more_after = true;
        memcpy(out->resume_key, desc.end_key, desc.end_key_len);
        out->resume_key_len = desc.end_key_len;
    }
    return rv;
}

static uint64_t hash_bytes(uint64_t hash, const void *data, size_t len)
{
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++) {
        hash ^= p[i];
        hash *= FNV_PRIME;
    }
    return hash;
}

static uint64_t hash_u64(uint64_t hash, uint64_t value)
{
    uint8_t buf[8];

    rkv_put_be64(buf, value);
    return hash_bytes(hash, buf, sizeof(buf));
}

/* Hashes every stored pair in [lower, upper) with its lengths. */
static int hash_span(struct rkv_range__tx *tx, const uint8_t *lower,
                     size_t lower_len, const uint8_t *upper, size_t upper_len,
                     uint64_t *hash)
{
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = lower_len, .mv_data = (void *)lower};
    MDB_val v;
    int rv;

    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_data, &cursor));
    if (rv != 0) {
        return rv;
    }
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rv == MDB_SUCCESS;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        if (upper_len > 0 &&
            rkv_range__key_cmp(k.mv_data, k.mv_size, upper, upper_len) >= 0) {
            break;
        }
        *hash = hash_u64(*hash, k.mv_size);
        *hash = hash_bytes(*hash, k.mv_data, k.mv_size);
        *hash = hash_u64(*hash, v.mv_size);
        *hash = hash_bytes(*hash, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cursor);
    return rv == MDB_NOTFOUND ? 0 : rkv_range__mdb_error(rv);
}

int rkv_range_content_hash(struct rkv_range_rtxn *rtxn, uint64_t range_id,
                           uint64_t *hash_out)
{
    struct rkv_range__applied applied;
    struct rkv_range_desc desc;
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX];
    size_t lower_len;
    size_t upper_len;
    uint64_t hash = FNV_OFFSET;
    uint8_t *buf;
    size_t len;
    int rv;

    rv = rkv_range__desc_load(&rtxn->tx, range_id, &desc);
    if (rv == 0) {
        rv = rkv_range__applied_load(&rtxn->tx, range_id, &applied);
    }
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__desc_encode(&desc, &buf, &len);
    if (rv != 0) {
        return rv;
    }
    hash = hash_bytes(hash, buf, len);
    rkv_free(buf);
    hash = hash_u64(hash, applied.stats.key_bytes);
    hash = hash_u64(hash, applied.stats.value_bytes);
    hash = hash_u64(hash, applied.stats.key_count);

    rkv_range__stored_span(&desc, lower, &lower_len, upper, &upper_len);
    rv = hash_span(&rtxn->tx, lower, lower_len, upper, upper_len, &hash);
    if (rv == 0) {
        *hash_out = hash;
    }
    return rv;
}
