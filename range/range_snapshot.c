/*
 * Range snapshots: a leader streams a range's stored pairs and state as
 * chunks from one read transaction, and a follower stages the chunks and
 * then swaps them in atomically.
 *
 * Sending: rkv_range_snapshot_open() starts a read transaction and reads
 * the descriptor and applied state. Each rkv_range_snapshot_next() then
 * encodes the next pairs of the stored span into a SnapshotChunk. Chunk 0
 * carries the descriptor, index and term. A chunk has at least one pair, so
 * it may exceed chunk_bytes_max by one pair (at most value_max plus about 530
 * bytes of key and framing).
 *
 * Receiving: rkv_range_snapshot_install_chunk() writes a chunk's pairs to
 * the `snap` database (chunk 0 first clears any earlier staged snapshot of
 * the range); rkv_range_snapshot_install_finish() then, in one write
 * transaction, deletes the range's old and new spans, copies the staged
 * pairs in, recounts stats, writes descriptor, applied state and log
 * bounds, deletes the whole stored log (as the Raft core expects) and
 * clears the staging area.
 *
 * Failure modes: a chunk out of sequence or for another range is
 * RKV_EMALFORMED and fails the whole write transaction. Finishing without
 * the last chunk (RKV_EMALFORMED), a snapshot at or below the applied index
 * (RKV_ESTALE) and a span overlapping another initialized range on this
 * node (RKV_EBUSY) are refusals: they fail the transaction when the caller
 * passed no result, and otherwise go to result->rv while the staged
 * snapshot is dropped (range_wtxn.c then skips the range's later work).
 */
#define RKV_LOG_SUBSYS "range"
#include "range/range_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

#define SNAP_HEADER_FIXED_LEN 21
#define SNAP_PAIR_KEY_LEN 16

struct rkv_range_snapshot_reader {
    struct rkv_range_rtxn *rtxn;
    MDB_cursor *cursor;
    struct rkv_range_snapshot_meta meta;
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX]; /* end of the stored span */
    size_t upper_len;                         /* 0: end of the database */
    size_t chunk_bytes_max;
    uint32_t seq;    /* next chunk's sequence number */
    bool positioned; /* the cursor is on the next pair to send */
    bool done;       /* the last chunk was produced */
};

int rkv_range_snapshot_open(struct rkv_range_store *store, uint64_t range_id,
                            size_t chunk_bytes_max,
                            struct rkv_range_snapshot_reader **out,
                            struct rkv_range_snapshot_meta *meta_out)
{
    struct rkv_range_snapshot_reader *reader;
    struct rkv_range__applied applied;
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    size_t lower_len;
    MDB_val k;
    MDB_val v;
    int rv;

    reader = rkv_calloc(1, sizeof(*reader));
    if (reader == NULL) {
        return -ENOMEM;
    }
    reader->chunk_bytes_max = chunk_bytes_max != 0
                                  ? chunk_bytes_max
                                  : RKV_RANGE_SNAPSHOT_CHUNK_DEFAULT;
    rv = rkv_range_rtxn_begin(store, &reader->rtxn);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = rkv_range__desc_load(&reader->rtxn->tx, range_id, &reader->meta.desc);
    if (rv == 0) {
        rv = rkv_range__applied_load(&reader->rtxn->tx, range_id, &applied);
    }
    if (rv != 0) {
        goto err_after_rtxn;
    }
    reader->meta.index = applied.index;
    reader->meta.term = applied.term;
    reader->meta.stats = applied.stats;
    rkv_range__stored_span(&reader->meta.desc, lower, &lower_len, reader->upper,
                           &reader->upper_len);

    rv = rkv_range__mdb_error(mdb_cursor_open(
        reader->rtxn->tx.txn, store->dbi_data, &reader->cursor));
    if (rv != 0) {
        goto err_after_rtxn;
    }
    k.mv_size = lower_len;
    k.mv_data = lower;
    rv = mdb_cursor_get(reader->cursor, &k, &v, MDB_SET_RANGE);
    if (rv != MDB_SUCCESS && rv != MDB_NOTFOUND) {
        rv = rkv_range__mdb_error(rv);
        goto err_after_cursor;
    }
    reader->positioned = rv == MDB_SUCCESS;
    if (meta_out != NULL) {
        *meta_out = reader->meta;
    }
    *out = reader;
    return 0;

err_after_cursor:
    mdb_cursor_close(reader->cursor);
err_after_rtxn:
    rkv_range_rtxn_end(reader->rtxn);
err_after_alloc:
    rkv_free(reader);
    assert(rv != 0);
    return rv;
}

void rkv_range_snapshot_close(struct rkv_range_snapshot_reader *reader)
{
    if (reader == NULL) {
        return;
    }
    mdb_cursor_close(reader->cursor);
    rkv_range_rtxn_end(reader->rtxn);
    rkv_free(reader);
}

/* Collects the pairs of the next chunk; pointers borrow from the rtxn. */
static int snapshot_collect(struct rkv_range_snapshot_reader *reader,
                            RkvRange__StoredPair **pairs_out, size_t *n_out)
{
    RkvRange__StoredPair *pairs = NULL;
    size_t n = 0;
    size_t bytes = 0;
    MDB_val k;
    MDB_val v;
    int rv = MDB_SUCCESS;

    if (reader->positioned) {
        rv = mdb_cursor_get(reader->cursor, &k, &v, MDB_GET_CURRENT);
    }
    while (reader->positioned && rv == MDB_SUCCESS) {
        RkvRange__StoredPair *grown;

        if (reader->upper_len > 0 &&
            rkv_range__key_cmp(k.mv_data, k.mv_size, reader->upper,
                               reader->upper_len) >= 0) {
            reader->positioned = false;
            break;
        }
        if (n > 0 && bytes + k.mv_size + v.mv_size > reader->chunk_bytes_max) {
            break;
        }
        grown = rkv_realloc(pairs, (n + 1) * sizeof(*pairs));
        if (grown == NULL) {
            rkv_free(pairs);
            return -ENOMEM;
        }
        pairs = grown;
        rkv_range__stored_pair__init(&pairs[n]);
        pairs[n].key.data = k.mv_data;
        pairs[n].key.len = k.mv_size;
        pairs[n].value.data = v.mv_data;
        pairs[n].value.len = v.mv_size;
        n++;
        bytes += k.mv_size + v.mv_size;
        rv = mdb_cursor_get(reader->cursor, &k, &v, MDB_NEXT);
        if (rv == MDB_NOTFOUND) {
            reader->positioned = false;
        }
    }
    if (rv != MDB_SUCCESS && rv != MDB_NOTFOUND) {
        rkv_free(pairs);
        return rkv_range__mdb_error(rv);
    }
    *pairs_out = pairs;
    *n_out = n;
    return 0;
}

int rkv_range_snapshot_next(struct rkv_range_snapshot_reader *reader,
                            uint8_t **chunk_out, size_t *chunk_len_out,
                            bool *last_out)
{
    RkvRange__SnapshotChunk chunk = RKV_RANGE__SNAPSHOT_CHUNK__INIT;
    RkvRange__RangeDescriptor desc_msg;
    RkvRange__Replica replicas[RKV_RANGE_REPLICAS_MAX];
    RkvRange__Replica *replica_ptrs[RKV_RANGE_REPLICAS_MAX];
    RkvRange__StoredPair *pairs = NULL;
    RkvRange__StoredPair **pair_ptrs = NULL;
    size_t n_pairs = 0;
    uint8_t *buf;
    size_t len;
    int rv;

    assert(!reader->done);

    rv = snapshot_collect(reader, &pairs, &n_pairs);
    if (rv != 0) {
        return rv;
    }
    pair_ptrs = rkv_calloc(n_pairs > 0 ? n_pairs : 1, sizeof(*pair_ptrs));
    if (pair_ptrs == NULL) {
        rv = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n_pairs; i++) {
        pair_ptrs[i] = &pairs[i];
    }
    chunk.range_id = reader->meta.desc.range_id;
    chunk.seq = reader->seq;
    if (reader->seq == 0) {
        rkv_range__desc_to_msg(&reader->meta.desc, &desc_msg, replicas,
                               replica_ptrs);
        chunk.desc = &desc_msg;
        chunk.has_index = true;
        chunk.index = reader->meta.index;
        chunk.has_term = true;
        chunk.term = reader->meta.term;
    }
    chunk.pairs = pair_ptrs;
    chunk.n_pairs = n_pairs;
    chunk.last = !reader->positioned;

    len = rkv_range__snapshot_chunk__get_packed_size(&chunk);
    buf = rkv_malloc(len);
    if (buf == NULL) {
        rv = -ENOMEM;
        goto out;
    }
    rkv_range__snapshot_chunk__pack(&chunk, buf);
    reader->seq++;
    reader->done = chunk.last;
    *chunk_out = buf;
    *chunk_len_out = len;
    *last_out = chunk.last;
out:
    rkv_free(pair_ptrs);
    rkv_free(pairs);
    return rv;
}

/* ---- staging ------------------------------------------------------------ */

/* The staging header record. */
struct snap_header {
    uint64_t index;
    uint64_t term;
    uint32_t next_seq;
    bool last;
    struct rkv_range_desc desc;
};

static int snap_header_load(struct rkv_range__tx *tx, uint64_t range_id,
                            struct snap_header *out)
{
    uint8_t key[8];
    const uint8_t *p;
    MDB_val v;
    int rv;

    rkv_put_be64(key, range_id);
    rv = rkv_range__get(tx, tx->store->dbi_snap, key, sizeof(key), &v);
    if (rv == RKV_ENOTFOUND) {
        return RKV_EMALFORMED;
    }
    if (rv != 0) {
        return rv;
    }
    if (v.mv_size < SNAP_HEADER_FIXED_LEN) {
        return RKV_ECORRUPT;
    }
    p = v.mv_data;
    out->index = rkv_get_be64(p);
    out->term = rkv_get_be64(p + 8);
    out->next_seq = rkv_get_be32(p + 16);
    out->last = p[20] != 0;
    rv = rkv_range__desc_decode(p + SNAP_HEADER_FIXED_LEN,
                                v.mv_size - SNAP_HEADER_FIXED_LEN, &out->desc);
    return rv == 0 ? 0 : RKV_ECORRUPT;
}

static int snap_header_save(struct rkv_range__tx *tx, uint64_t range_id,
                            const struct snap_header *header)
{
    uint8_t key[8];
    uint8_t *desc_buf;
    uint8_t *buf;
    size_t desc_len;
    int rv;

    rv = rkv_range__desc_encode(&header->desc, &desc_buf, &desc_len);
    if (rv != 0) {
        return rv;
    }
    buf = rkv_malloc(SNAP_HEADER_FIXED_LEN + desc_len);
    if (buf == NULL) {
        rkv_free(desc_buf);
        return -ENOMEM;
    }
    rkv_put_be64(buf, header->index);
    rkv_put_be64(buf + 8, header->term);
    rkv_put_be32(buf + 16, header->next_seq);
    buf[20] = header->last ? 1 : 0;
    memcpy(buf + SNAP_HEADER_FIXED_LEN, desc_buf, desc_len);
    rkv_put_be64(key, range_id);
    rv = rkv_range__put(tx, tx->store->dbi_snap, key, sizeof(key), buf,
                        SNAP_HEADER_FIXED_LEN + desc_len);
    rkv_free(buf);
    rkv_free(desc_buf);
    return rv;
}

static int snap_clear(struct rkv_range__tx *tx, uint64_t range_id)
{
    uint8_t lower[8];
    uint8_t upper[8];

    rkv_put_be64(lower, range_id);
    rkv_put_be64(upper, range_id + 1);
    return rkv_range__del_span(tx, tx->store->dbi_snap, lower, sizeof(lower),
                               upper, sizeof(upper));
}

/* Checks that a stored key of a snapshot lies in the descriptor's span. */
static bool snap_key_in_span(const struct rkv_range_desc *desc,
                             const ProtobufCBinaryData *key)
{
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX];
    size_t lower_len;
    size_t upper_len;

    if (key->len == 0 || key->len > RKV_RANGE__STORED_KEY_MAX) {
        return false;
    }
    rkv_range__stored_span(desc, lower, &lower_len, upper, &upper_len);
    if (rkv_range__key_cmp(key->data, key->len, lower, lower_len) < 0) {
        return false;
    }
    return upper_len == 0 ||
           rkv_range__key_cmp(key->data, key->len, upper, upper_len) < 0;
}

static int snap_stage_pairs(struct rkv_range__tx *tx, uint64_t range_id,
                            const struct snap_header *header,
                            const RkvRange__SnapshotChunk *chunk)
{
    uint8_t key[SNAP_PAIR_KEY_LEN];
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rv = 0;

    for (size_t i = 0; i < chunk->n_pairs && rv == 0; i++) {
        const RkvRange__StoredPair *pair = chunk->pairs[i];
        size_t len = 2 + pair->key.len + pair->value.len;

        if (!snap_key_in_span(&header->desc, &pair->key)) {
            rv = RKV_EMALFORMED;
            break;
        }
        if (len > cap) {
            uint8_t *grown = rkv_realloc(buf, len);

            if (grown == NULL) {
                rv = -ENOMEM;
                break;
            }
            buf = grown;
            cap = len;
        }
        buf[0] = (uint8_t)(pair->key.len >> 8);
        buf[1] = (uint8_t)pair->key.len;
        memcpy(buf + 2, pair->key.data, pair->key.len);
        if (pair->value.len > 0) {
            memcpy(buf + 2 + pair->key.len, pair->value.data, pair->value.len);
        }
        rkv_put_be64(key, range_id);
        rkv_put_be32(key + 8, chunk->seq);
        rkv_put_be32(key + 12, (uint32_t)i);
        rv =
            rkv_range__put(tx, tx->store->dbi_snap, key, sizeof(key), buf, len);
    }
    rkv_free(buf);
    return rv;
}

/* Reads the header fields of chunk 0, or checks a later chunk's place. */
static int snap_stage_header(struct rkv_range__tx *tx, uint64_t range_id,
                             const RkvRange__SnapshotChunk *chunk,
                             struct snap_header *header)
{
    int rv;

    if (chunk->seq == 0) {
        if (chunk->desc == NULL || !chunk->has_index || !chunk->has_term) {
            return RKV_EMALFORMED;
        }
        rv = rkv_range__desc_from_msg(chunk->desc, &header->desc);
        if (rv != 0 || header->desc.range_id != range_id) {
            return RKV_EMALFORMED;
        }
        header->index = chunk->index;
        header->term = chunk->term;
        header->next_seq = 0;
        header->last = false;
        return snap_clear(tx, range_id);
    }
    rv = snap_header_load(tx, range_id, header);
    if (rv != 0) {
        return rv;
    }
    if (header->last || chunk->seq != header->next_seq) {
        return RKV_EMALFORMED;
    }
    return 0;
}

int rkv_range__snapshot_stage(struct rkv_range__tx *tx, uint64_t range_id,
                              const uint8_t *data, size_t data_len)
{
    RkvRange__SnapshotChunk *chunk;
    struct snap_header header;
    int rv;

    chunk = rkv_range__snapshot_chunk__unpack(NULL, data_len, data);
    if (chunk == NULL) {
        return RKV_EMALFORMED;
    }
    if (chunk->range_id != range_id) {
        rv = RKV_EMALFORMED;
        goto out;
    }
    rv = snap_stage_header(tx, range_id, chunk, &header);
    if (rv == 0) {
        rv = snap_stage_pairs(tx, range_id, &header, chunk);
    }
    if (rv == 0) {
        header.next_seq = chunk->seq + 1;
        header.last = chunk->last;
        rv = snap_header_save(tx, range_id, &header);
    }
out:
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "snapshot chunk rejected range=%llu error=%s",
                (unsigned long long)range_id, rkv_errname(rv));
    }
    rkv_range__snapshot_chunk__free_unpacked(chunk, NULL);
    return rv;
}

/* ---- finishing ---------------------------------------------------------- */

static bool snap_spans_overlap(const struct rkv_range_desc *a,
                               const struct rkv_range_desc *b)
{
    bool a_before_b = a->end_key_len > 0 &&
                      rkv_range__key_cmp(a->end_key, a->end_key_len,
                                         b->start_key, b->start_key_len) <= 0;
    bool b_before_a = b->end_key_len > 0 &&
                      rkv_range__key_cmp(b->end_key, b->end_key_len,
                                         a->start_key, a->start_key_len) <= 0;

    return !a_before_b && !b_before_a;
}

static int snap_check_overlap(struct rkv_range__tx *tx,
                              const struct rkv_range_desc *desc)
{
    struct rkv_range_rtxn view = {.tx = *tx};
    struct rkv_range_desc *descs;
    size_t n;
    int rv;

    rv = rkv_range_desc_list(&view, &descs, &n);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (descs[i].range_id != desc->range_id &&
            snap_spans_overlap(&descs[i], desc)) {
            RKV_LOG(RKV_INFO,
                    "snapshot overlaps range=%llu other_range=%llu; retry "
                    "after its split applies",
                    (unsigned long long)desc->range_id,
                    (unsigned long long)descs[i].range_id);
            rv = RKV_EBUSY;
        }
    }
    rkv_free(descs);
    return rv;
}

/* Deletes a descriptor's stored span from the data database. */
static int snap_clear_span(struct rkv_range__tx *tx,
                           const struct rkv_range_desc *desc)
{
    uint8_t lower[RKV_RANGE__STORED_KEY_MAX];
    uint8_t upper[RKV_RANGE__STORED_KEY_MAX];
    size_t lower_len;
    size_t upper_len;

    rkv_range__stored_span(desc, lower, &lower_len, upper, &upper_len);
    return rkv_range__del_span(tx, tx->store->dbi_data, lower, lower_len,
                               upper_len > 0 ? upper : NULL, upper_len);
}

/* Copies staged pairs into the data database and counts their stats. */
static int snap_copy_pairs(struct rkv_range__tx *tx, uint64_t range_id,
                           struct rkv_range_stats *stats)
{
    uint8_t lower[SNAP_PAIR_KEY_LEN] = {0};
    uint8_t upper[8];
    MDB_cursor *cursor;
    MDB_val k = {.mv_size = sizeof(lower), .mv_data = lower};
    MDB_val v;
    int rv;

    memset(stats, 0, sizeof(*stats));
    rkv_put_be64(lower, range_id);
    rkv_put_be64(upper, range_id + 1);
    rv = rkv_range__mdb_error(
        mdb_cursor_open(tx->txn, tx->store->dbi_snap, &cursor));
    if (rv != 0) {
        return rv;
    }
    for (rv = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rv == MDB_SUCCESS;
         rv = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        size_t key_len;

        if (rkv_range__key_cmp(k.mv_data, k.mv_size, upper, 8) >= 0) {
            break;
        }
        key_len = ((size_t)p[0] << 8) | p[1];
        if (v.mv_size < 2 + key_len || key_len == 0) {
            rv = RKV_ECORRUPT;
            break;
        }
        if (p[2] == RKV_RANGE__PREFIX_USER) {
            stats->key_count++;
            stats->key_bytes += key_len - 1;
            stats->value_bytes += v.mv_size - 2 - key_len;
        }
        rv = rkv_range__put(tx, tx->store->dbi_data, p + 2, key_len,
                            p + 2 + key_len, v.mv_size - 2 - key_len);
        if (rv != 0) {
            break;
        }
    }
    mdb_cursor_close(cursor);
    if (rv == MDB_NOTFOUND) {
        return 0;
    }
    return rv < 0 ? rv : rkv_range__mdb_error(rv);
}

/* Writes the Raft and applied state of the installed snapshot. */
static int snap_write_state(struct rkv_range__tx *tx,
                            const struct snap_header *header,
                            const struct rkv_range_stats *stats)
{
    uint64_t range_id = header->desc.range_id;
    struct rkv_range_hard_state hs = {0};
    struct rkv_range__applied applied = {
        .index = header->index, .term = header->term, .stats = *stats};
    struct rkv_range__log_bounds bounds = {.compacted_index = header->index,
                                           .compacted_term = header->term};
    int rv;

    rv = rkv_range__hard_state_load(tx, range_id, &hs);
    if (rv != 0 && rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    hs.term = RKV_MAX(hs.term, header->term);
    hs.commit = RKV_MAX(hs.commit, header->index);
    rv = rkv_range__hard_state_write(tx, range_id, &hs);
    if (rv == 0) {
        rv = rkv_range__log_clear(tx, range_id);
    }
    if (rv == 0) {
        rv = rkv_range__bounds_save(tx, range_id, &bounds);
    }
    if (rv == 0) {
        rv = rkv_range__applied_save(tx, range_id, &applied);
    }
    if (rv == 0) {
        rv = rkv_range__desc_save(tx, &header->desc);
    }
    return rv;
}

/* Checks that the staged snapshot may replace the current replica. */
static int snap_check_finish(struct rkv_range__tx *tx, uint64_t range_id,
                             const struct snap_header *header,
                             struct rkv_range_desc *old_desc, bool *had_desc)
{
    struct rkv_range__applied applied;
    int rv;

    if (!header->last) {
        return RKV_EMALFORMED;
    }
    rv = rkv_range__applied_load(tx, range_id, &applied);
    if (rv == 0 && header->index <= applied.index) {
        return RKV_ESTALE;
    }
    if (rv != 0 && rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    rv = rkv_range__desc_load(tx, range_id, old_desc);
    *had_desc = rv == 0;
    if (rv != 0 && rv != RKV_ERANGENOTFOUND) {
        return rv;
    }
    return snap_check_overlap(tx, &header->desc);
}

/* Returns whether rv means that the snapshot cannot be installed, as opposed
 * to a storage failure. */
static bool snap_is_refusal(int rv)
{
    return rv == RKV_EMALFORMED || rv == RKV_ESTALE || rv == RKV_EBUSY;
}

int rkv_range__snapshot_finish(struct rkv_range__tx *tx, uint64_t range_id,
                               struct rkv_range_install_result *result)
{
    struct snap_header header;
    struct rkv_range_desc old_desc;
    struct rkv_range_stats stats;
    bool had_desc = false;
    int rv;

    rv = snap_header_load(tx, range_id, &header);
    if (rv == 0) {
        rv = snap_check_finish(tx, range_id, &header, &old_desc, &had_desc);
    }
    if (snap_is_refusal(rv) && result != NULL) {
        RKV_LOG(RKV_INFO, "snapshot not installed range=%llu error=%s",
                (unsigned long long)range_id, rkv_errname(rv));
        result->rv = rv;
        return snap_clear(tx, range_id);
    }
    if (rv == 0 && had_desc) {
        rv = snap_clear_span(tx, &old_desc);
    }
    if (rv == 0) {
        rv = snap_clear_span(tx, &header.desc);
    }
    if (rv == 0) {
        rv = snap_copy_pairs(tx, range_id, &stats);
    }
    if (rv == 0) {
        rv = snap_write_state(tx, &header, &stats);
    }
    if (rv == 0) {
        rv = snap_clear(tx, range_id);
    }
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "snapshot install failed range=%llu error=%s",
                (unsigned long long)range_id, rkv_errname(rv));
        return rv;
    }
    RKV_LOG(RKV_INFO,
            "snapshot installed range=%llu index=%llu term=%llu keys=%llu",
            (unsigned long long)range_id, (unsigned long long)header.index,
            (unsigned long long)header.term,
            (unsigned long long)stats.key_count);
    if (result != NULL) {
        result->rv = 0;
        result->meta.desc = header.desc;
        result->meta.index = header.index;
        result->meta.term = header.term;
        result->meta.stats = stats;
    }
    return 0;
}
