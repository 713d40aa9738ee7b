/*
 * The system span that range 1 owns: meta records (one range descriptor per
 * range, keyed by 0x01 'd' start_key) and the range id counter (0x01 'c').
 *
 * Meta records are written by range 1's applies only: its own splits and
 * replica changes, and RKV_RANGE_CMD_META_UPDATE commands that the leaders
 * of other ranges propose after their splits. A record is replaced only by
 * one with a higher generation, so late, repeated or reordered updates
 * leave the newest descriptor in place. Without merges a start key always
 * belongs to the same range id, and its generation only grows.
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

static const uint8_t counter_key[2] = {RKV_RANGE__PREFIX_SYSTEM,
                                       RKV_RANGE__COUNTER_TAG};

static size_t meta_key(uint8_t *buf, const void *start_key,
                       size_t start_key_len)
{
    buf[0] = RKV_RANGE__PREFIX_SYSTEM;
    buf[1] = RKV_RANGE__META_TAG;
    if (start_key_len > 0) {
        memcpy(buf + 2, start_key, start_key_len);
    }
    return start_key_len + 2;
}

static bool meta_key_is_record(const MDB_val *k)
{
    const uint8_t *key = k->mv_data;

    return k->mv_size >= 2 && key[0] == RKV_RANGE__PREFIX_SYSTEM &&
           key[1] == RKV_RANGE__META_TAG;
}

int rkv_range__meta_write(struct rkv_range__tx *tx,
                          const struct rkv_range_desc *desc)
{
    uint8_t key[RKV_RANGE__STORED_KEY_MAX];
    size_t key_len = meta_key(key, desc->start_key, desc->start_key_len);
    struct rkv_range_desc stored;
    uint8_t *buf;
    size_t len;
    MDB_val v;
    int rv;

    assert(rkv_range__desc_is_valid(desc));

    rv = rkv_range__get(tx, tx->store->dbi_data, key, key_len, &v);
    if (rv == 0) {
        rv = rkv_range__desc_decode(v.mv_data, v.mv_size, &stored);
        if (rv != 0) {
            return RKV_ECORRUPT;
        }
        if (stored.generation >= desc->generation &&
            stored.range_id == desc->range_id) {
            return 0;
        }
    } else if (rv != RKV_ENOTFOUND) {
        return rv;
    }
    rv = rkv_range__desc_encode(desc, &buf, &len);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__put(tx, tx->store->dbi_data, key, key_len, buf, len);
    rkv_free(buf);
    return rv;
}

int rkv_range__counter_init(struct rkv_range__tx *tx, uint64_t next_id)
{
    uint8_t buf[8];

    rkv_put_be64(buf, next_id);
    return rkv_range__put(tx, tx->store->dbi_data, counter_key,
                          sizeof(counter_key), buf, sizeof(buf));
}

int rkv_range__counter_next(struct rkv_range__tx *tx, uint64_t *id_out)
{
    MDB_val v;
    uint64_t id;
    int rv;

    rv = rkv_range__get(tx, tx->store->dbi_data, counter_key,
                        sizeof(counter_key), &v);
    if (rv == RKV_ENOTFOUND || (rv == 0 && v.mv_size != 8)) {
        return RKV_ECORRUPT;
    }
    if (rv != 0) {
        return rv;
    }
    id = rkv_get_be64(v.mv_data);
    assert(id > RKV_RANGE_ID_FIRST);
    rv = rkv_range__counter_init(tx, id + 1);
    if (rv == 0) {
        *id_out = id;
    }
    return rv;
}

int rkv_range_meta_check(struct rkv_range_rtxn *rtxn,
                         const struct rkv_range_desc *desc, bool *stale_out)
{
    uint8_t key[RKV_RANGE__STORED_KEY_MAX];
    size_t key_len = meta_key(key, desc->start_key, desc->start_key_len);
    struct rkv_range_desc first;
    struct rkv_range_desc stored;
    MDB_val v;
    int rv;

    assert(rkv_range__desc_is_valid(desc));

    rv = rkv_range__desc_load(&rtxn->tx, RKV_RANGE_ID_FIRST, &first);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range__get(&rtxn->tx, rtxn->tx.store->dbi_data, key, key_len, &v);
    if (rv == RKV_ENOTFOUND) {
        *stale_out = true;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (rkv_range__desc_decode(v.mv_data, v.mv_size, &stored) != 0) {
        return RKV_ECORRUPT;
    }
    *stale_out = stored.range_id != desc->range_id ||
                 stored.generation < desc->generation;
    return 0;
}

int rkv_range_meta_lookup(struct rkv_range_rtxn *rtxn, const void *key,
                          size_t key_len, struct rkv_range_desc *out)
{
    uint8_t lookup[RKV_RANGE__STORED_KEY_MAX];
    size_t lookup_len;
    MDB_cursor *cursor;
    MDB_val k;
    MDB_val v;
    int rv;

    if (key_len > RKV_RANGE_KEY_MAX) {
        return RKV_ETOOLARGE;
    }
    lookup_len = meta_key(lookup, key, key_len);
    k.mv_size = lookup_len;
    k.mv_data = lookup;
    rv = rkv_range__mdb_error(
        mdb_cursor_open(rtxn->tx.txn, rtxn->tx.store->dbi_data, &cursor));
    if (rv != 0) {
        return rv;
    }
    /* The range containing key has the last start key <= key. */
    rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rv == MDB_SUCCESS &&
        rkv_range__key_cmp(k.mv_data, k.mv_size, lookup, lookup_len) != 0) {
        rv = mdb_cursor_get(cursor, &k, &v, MDB_PREV);
    } else if (rv == MDB_NOTFOUND) {
        rv = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
    }
    if (rv == MDB_SUCCESS && !meta_key_is_record(&k)) {
        rv = MDB_NOTFOUND;
    }
    if (rv == MDB_SUCCESS) {
        rv = rkv_range__desc_decode(v.mv_data, v.mv_size, out);
        rv = rv != 0 ? RKV_ECORRUPT : 0;
    } else if (rv == MDB_NOTFOUND) {
        rv = RKV_ERANGENOTFOUND;
    } else {
        rv = rkv_range__mdb_error(rv);
    }
    mdb_cursor_close(cursor);
    return rv;
}

/* Appends one descriptor to a growing array. */
static int meta_list_push(struct rkv_range_desc **descs, size_t *n, size_t *cap,
                          const struct rkv_range_desc *desc)
{
    if (*n == *cap) {
        size_t new_cap = *cap == 0 ? 16 : *cap * 2;
        struct rkv_range_desc *grown =
            rkv_realloc(*descs, new_cap * sizeof(**descs));

        if (grown == NULL) {
            return -ENOMEM;
        }
        *descs = grown;
        *cap = new_cap;
    }
    (*descs)[(*n)++] = *desc;
    return 0;
}

/* Collects every descriptor in dbi whose key passes is_record. */
static int meta_collect(struct rkv_range__tx *tx, MDB_dbi dbi,
                        const uint8_t *first, size_t first_len,
                        bool (*is_record)(const MDB_val *k),
                        struct rkv_range_desc **descs_out, size_t *n_out)
{
    struct rkv_range_desc *descs = NULL;
    struct rkv_range_desc desc;
    size_t n = 0;
    size_t cap = 0;
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = first_len, .mv_data = (void *)first};
    MDB_val v;
    int rv;

    rv = rkv_range__mdb_error(mdb_cursor_open(tx->txn, dbi, &cursor));
    if (rv != 0) {
        return rv;
    }
    rv = mdb_cursor_get(cursor, &k, &v,
                        first_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
    for (; rv == MDB_SUCCESS && is_record(&k);
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        if (rkv_range__desc_decode(v.mv_data, v.mv_size, &desc) != 0) {
            rv = RKV_ECORRUPT;
            break;
        }
        rv = meta_list_push(&descs, &n, &cap, &desc);
        if (rv != 0) {
            break;
        }
    }
    mdb_cursor_close(cursor);
    if (rv == MDB_NOTFOUND || rv == MDB_SUCCESS) {
        *descs_out = descs;
        *n_out = n;
        return 0;
    }
    rkv_free(descs);
    return rv < 0 ? rv : rkv_range__mdb_error(rv);
}

int rkv_range_meta_list(struct rkv_range_rtxn *rtxn,
                        struct rkv_range_desc **descs_out, size_t *n_out)
{
    uint8_t first[2];

    meta_key(first, NULL, 0);
    return meta_collect(&rtxn->tx, rtxn->tx.store->dbi_data, first,
                        sizeof(first), meta_key_is_record, descs_out, n_out);
}

static bool desc_key_is_record(const MDB_val *k)
{
    return k->mv_size == 8;
}

int rkv_range_desc_list(struct rkv_range_rtxn *rtxn,
                        struct rkv_range_desc **descs_out, size_t *n_out)
{
    return meta_collect(&rtxn->tx, rtxn->tx.store->dbi_desc, NULL, 0,
                        desc_key_is_record, descs_out, n_out);
}
