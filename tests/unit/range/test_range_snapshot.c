/* Checks range snapshots: chunked streaming from one read transaction and
 * the atomic install that replaces a range's span. */
#define RKV_LOG_SUBSYS "test"
#include "range/range_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/test.h"
#include "tests/unit/range/range_fixture.h"

/* A snapshot held in memory as its chunks. */
struct snapshot {
    uint8_t *chunks[4096];
    size_t lens[4096];
    size_t n_chunks;
    struct rkv_range_snapshot_meta meta;
};

static void snapshot_read_all(struct rkv_range_snapshot_reader *reader,
                              struct snapshot *s)
{
    bool last = false;

    while (!last) {
        ASSERT_UINT_LT(s->n_chunks, RKV_ARRAY_SIZE(s->chunks));
        ASSERT_OK(rkv_range_snapshot_next(reader, &s->chunks[s->n_chunks],
                                          &s->lens[s->n_chunks], &last));
        s->n_chunks++;
    }
}

static void snapshot_take(struct fixture *f, uint64_t range_id,
                          size_t chunk_bytes, struct snapshot *s)
{
    struct rkv_range_snapshot_reader *reader;

    memset(s, 0, sizeof(*s));
    ASSERT_OK(rkv_range_snapshot_open(f->store, range_id, chunk_bytes, &reader,
                                      &s->meta));
    snapshot_read_all(reader, s);
    rkv_range_snapshot_close(reader);
}

static void snapshot_free(struct snapshot *s)
{
    for (size_t i = 0; i < s->n_chunks; i++) {
        rkv_free(s->chunks[i]);
    }
    s->n_chunks = 0;
}

/* Installs chunks [0, n) and finishes when finish is set. */
static int snapshot_install(struct fixture *f, uint64_t range_id,
                            const struct snapshot *s, size_t n, bool finish,
                            struct rkv_range_install_result *result)
{
    struct rkv_range_wtxn *wtxn;

    ASSERT_OK(rkv_range_wtxn_begin(f->store, &wtxn));
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(rkv_range_snapshot_install_chunk(wtxn, range_id, s->chunks[i],
                                                   s->lens[i]));
    }
    if (finish) {
        ASSERT_OK(rkv_range_snapshot_install_finish(wtxn, range_id, result));
    }
    return rkv_range_wtxn_commit(wtxn);
}

static void put_keys(struct fixture *f, uint64_t range_id, const char *prefix,
                     int n, size_t value_len)
{
    static char value[2000];
    char key[32];
    uint8_t *cmd;
    size_t len;

    memset(value, 'p', sizeof(value));
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%03d", prefix, i);
        ASSERT_OK(rkv_range_encode_put(f->store, key, strlen(key), value,
                                       value_len, &cmd, &len, NULL));
        ASSERT_OK(fx_apply(f, range_id, cmd, len, NULL));
        rkv_free(cmd);
    }
}

/* A snapshot of range 1 and of a split-off range installs on an empty
 * node with the same content hash, over many small chunks. */
TEST(snapshot, roundtrip_to_empty_node)
{
    struct fixture a;
    struct fixture b;
    struct snapshot s;
    struct rkv_range_install_result result;
    struct rkv_range_state state;
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc found;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    put_keys(&a, 1, "k", 200, 100);
    fx_split(&a, 1, "k100", 4);
    fx_open(&b, "b", 0);

    snapshot_take(&a, 2, 1000, &s);
    ASSERT_UINT_GT(s.n_chunks, 10);
    ASSERT_UINT_EQ(s.meta.index, RKV_RANGE_SPLIT_INDEX);
    ASSERT_OK(snapshot_install(&b, 2, &s, s.n_chunks, true, &result));
    ASSERT_INT_EQ(result.rv, 0);
    ASSERT_UINT_EQ(result.meta.stats.key_count, 100);
    ASSERT_UINT_EQ(result.meta.index, RKV_RANGE_SPLIT_INDEX);
    snapshot_free(&s);
    ASSERT_UINT_EQ(fx_hash(&a, 2), fx_hash(&b, 2));

    /* Range 1 brings the system span: meta records and the counter. */
    snapshot_take(&a, 1, 1000, &s);
    ASSERT_OK(snapshot_install(&b, 1, &s, s.n_chunks, true, NULL));
    snapshot_free(&s);
    ASSERT_UINT_EQ(fx_hash(&a, 1), fx_hash(&b, 1));
    fx_assert_stats_exact(&b, 1);
    fx_assert_stats_exact(&b, 2);

    fx_reopen(&b);
    ASSERT_OK(rkv_range_state_load(b.store, 1, &state));
    ASSERT_UINT_EQ(state.applied_index, fx_applied(&a, 1));
    ASSERT_UINT_EQ(state.compacted_index, state.applied_index);
    ASSERT_UINT_EQ(state.last_index, state.applied_index);
    ASSERT_UINT_EQ(state.hard_state.commit, state.applied_index);
    ASSERT_OK(rkv_range_rtxn_begin(b.store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, "k150", 4, &found));
    ASSERT_UINT_EQ(found.range_id, 2);
    rkv_range_rtxn_end(rtxn);
    /* The next split on b allocates the same id as on a. */
    ASSERT_UINT_EQ(fx_split(&b, 2, "k150", 4), fx_split(&a, 2, "k150", 4));
    fx_close(&a);
    fx_close(&b);
}

/* Installing replaces the whole span: keys the snapshot lacks are gone,
 * the log is deleted, and keys outside the span are untouched. */
TEST(snapshot, install_replaces_span)
{
    struct fixture a;
    struct fixture b;
    struct snapshot s;
    struct rkv_range_state state;
    char *value;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    fx_split(&a, 1, "m", 1);
    put_keys(&a, 2, "n", 5, 10);
    put_keys(&a, 2, "o", 5, 10);

    fx_open(&b, "b", 0);
    fx_bootstrap(&b);
    fx_split(&b, 1, "m", 1);
    put_keys(&b, 1, "a", 3, 10);
    put_keys(&b, 2, "x", 7, 10);

    snapshot_take(&a, 2, 0, &s);
    ASSERT_UINT_EQ(s.n_chunks, 1);
    ASSERT_OK(snapshot_install(&b, 2, &s, s.n_chunks, true, NULL));
    snapshot_free(&s);
    ASSERT_UINT_EQ(fx_hash(&a, 2), fx_hash(&b, 2));
    ASSERT_TRUE(fx_get(&b, 2, "x000") == NULL);
    value = fx_get(&b, 1, "a000");
    ASSERT_TRUE(value != NULL);
    free(value);
    fx_assert_stats_exact(&b, 1);
    fx_assert_stats_exact(&b, 2);
    ASSERT_OK(rkv_range_state_load(b.store, 2, &state));
    ASSERT_UINT_EQ(state.last_index, state.compacted_index);
    fx_close(&a);
    fx_close(&b);
}

/* Chunks out of order, a missing last chunk, a stale snapshot and a chunk
 * for another range each fail the transaction. */
TEST(snapshot, install_rejections)
{
    struct fixture a;
    struct fixture b;
    struct snapshot s;
    struct rkv_range_wtxn *wtxn;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    put_keys(&a, 1, "k", 50, 100);
    fx_open(&b, "b", 0);
    snapshot_take(&a, 1, 500, &s);
    ASSERT_UINT_GT(s.n_chunks, 3);

    /* Chunk 1 without chunk 0. */
    ASSERT_OK(rkv_range_wtxn_begin(b.store, &wtxn));
    ASSERT_OK(
        rkv_range_snapshot_install_chunk(wtxn, 1, s.chunks[1], s.lens[1]));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), RKV_EMALFORMED);
    /* A chunk sent to another range id. */
    ASSERT_OK(rkv_range_wtxn_begin(b.store, &wtxn));
    ASSERT_OK(
        rkv_range_snapshot_install_chunk(wtxn, 5, s.chunks[0], s.lens[0]));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), RKV_EMALFORMED);
    /* Bytes that do not decode. */
    ASSERT_OK(rkv_range_wtxn_begin(b.store, &wtxn));
    ASSERT_OK(rkv_range_snapshot_install_chunk(wtxn, 1,
                                               (const uint8_t *)"\xff\xff", 2));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), RKV_EMALFORMED);
    /* Finishing before the last chunk. */
    ASSERT_INT_EQ(snapshot_install(&b, 1, &s, 2, true, NULL), RKV_EMALFORMED);
    /* Staged across transactions, then finished: that works. */
    ASSERT_OK(snapshot_install(&b, 1, &s, 2, false, NULL));
    ASSERT_OK(rkv_range_wtxn_begin(b.store, &wtxn));
    for (size_t i = 2; i < s.n_chunks; i++) {
        ASSERT_OK(
            rkv_range_snapshot_install_chunk(wtxn, 1, s.chunks[i], s.lens[i]));
    }
    ASSERT_OK(rkv_range_snapshot_install_finish(wtxn, 1, NULL));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    ASSERT_UINT_EQ(fx_hash(&a, 1), fx_hash(&b, 1));
    /* The same snapshot again is at the applied index: stale. */
    ASSERT_INT_EQ(snapshot_install(&b, 1, &s, s.n_chunks, true, NULL),
                  RKV_ESTALE);
    snapshot_free(&s);
    fx_close(&a);
    fx_close(&b);
}

/* A reader sees the range as of its open, whatever is written later. */
TEST(snapshot, reader_is_one_read_view)
{
    struct fixture a;
    struct fixture b;
    struct rkv_range_snapshot_reader *reader;
    struct snapshot s;
    uint64_t hash_before;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    put_keys(&a, 1, "k", 30, 100);
    hash_before = fx_hash(&a, 1);
    memset(&s, 0, sizeof(s));
    ASSERT_OK(rkv_range_snapshot_open(a.store, 1, 300, &reader, &s.meta));
    put_keys(&a, 1, "k", 30, 50);
    put_keys(&a, 1, "z", 10, 50);
    snapshot_read_all(reader, &s);
    rkv_range_snapshot_close(reader);
    ASSERT_UINT_NE(fx_hash(&a, 1), hash_before);

    fx_open(&b, "b", 0);
    ASSERT_OK(snapshot_install(&b, 1, &s, s.n_chunks, true, NULL));
    snapshot_free(&s);
    ASSERT_UINT_EQ(fx_hash(&b, 1), hash_before);
    fx_close(&a);
    fx_close(&b);
}

/* A node behind on a split: the right range's snapshot overlaps the
 * unsplit left range until the left range's snapshot narrows it. */
TEST(snapshot, right_range_waits_for_left)
{
    struct fixture a;
    struct fixture b;
    struct snapshot left;
    struct snapshot right;
    struct rkv_range_wtxn *wtxn;
    struct rkv_range_state state;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    put_keys(&a, 1, "k", 20, 10);
    fx_open(&b, "b", 0);
    fx_bootstrap(&b);
    put_keys(&b, 1, "k", 20, 10);

    fx_split(&a, 1, "k010", 4);
    put_keys(&a, 2, "q", 3, 10);
    snapshot_take(&a, 1, 0, &left);
    snapshot_take(&a, 2, 0, &right);

    /* b learns of range 2 from its Raft traffic before the split. */
    ASSERT_OK(rkv_range_wtxn_begin(b.store, &wtxn));
    ASSERT_OK(rkv_range_create_uninit(wtxn, 2));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    ASSERT_INT_EQ(snapshot_install(&b, 2, &right, right.n_chunks, true, NULL),
                  RKV_EBUSY);
    ASSERT_OK(rkv_range_state_load(b.store, 2, &state));
    ASSERT_FALSE(state.initialized);

    ASSERT_OK(snapshot_install(&b, 1, &left, left.n_chunks, true, NULL));
    ASSERT_OK(snapshot_install(&b, 2, &right, right.n_chunks, true, NULL));
    ASSERT_UINT_EQ(fx_hash(&a, 1), fx_hash(&b, 1));
    ASSERT_UINT_EQ(fx_hash(&a, 2), fx_hash(&b, 2));
    snapshot_free(&left);
    snapshot_free(&right);
    fx_close(&a);
    fx_close(&b);
}

/* With an install result, a refused snapshot skips only its own range's
 * later work in the transaction, and the other ranges' work commits. */
TEST(snapshot, refusal_skips_only_its_range)
{
    struct fixture a;
    struct fixture b;
    struct snapshot right;
    struct rkv_range_install_result install;
    struct rkv_range_apply_result applied;
    struct rkv_range_hard_state hs = {.term = 9, .vote = 0, .commit = 0};
    struct rkv_range_entry after = {.index = RKV_RANGE_SPLIT_INDEX + 1,
                                    .term = RKV_RANGE_SPLIT_TERM,
                                    .type = RKV_RANGE_ENTRY_NOOP};
    struct rkv_range_entry other = {
        .index = 1, .term = 1, .type = RKV_RANGE_ENTRY_NOOP};
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    fx_split(&a, 1, "m", 1);
    snapshot_take(&a, 2, 0, &right);
    fx_open(&b, "b", 0);
    fx_bootstrap(&b);

    /* Range 2 overlaps b's unsplit range 1, so its snapshot is refused. */
    ASSERT_OK(rkv_range_wtxn_begin(b.store, &wtxn));
    ASSERT_OK(rkv_range_create_uninit(wtxn, 2));
    ASSERT_OK(rkv_range_snapshot_install_chunk(wtxn, 2, right.chunks[0],
                                               right.lens[0]));
    ASSERT_OK(rkv_range_snapshot_install_finish(wtxn, 2, &install));
    ASSERT_OK(rkv_range_log_append(wtxn, 2, &after, 1));
    ASSERT_OK(rkv_range_hard_state_save(wtxn, 2, &hs));
    ASSERT_OK(rkv_range_apply(wtxn, 2, &after, &applied));
    ASSERT_OK(rkv_range_apply(wtxn, 1, &other, NULL));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));

    ASSERT_INT_EQ(install.rv, RKV_EBUSY);
    ASSERT_INT_EQ(applied.rv, RKV_EBUSY);
    ASSERT_INT_EQ(applied.kind, RKV_RANGE_CMD_NONE);
    ASSERT_OK(rkv_range_state_load(b.store, 2, &state));
    ASSERT_FALSE(state.initialized);
    ASSERT_UINT_EQ(state.last_index, 0);
    ASSERT_UINT_EQ(state.hard_state.term, 0);
    ASSERT_UINT_EQ(fx_applied(&b, 1), 1);
    snapshot_free(&right);
    fx_close(&a);
    fx_close(&b);
}

/* A write failure anywhere in an install leaves the old replica intact. */
TEST(snapshot, install_write_failures)
{
    struct fixture a;
    struct fixture b;
    struct snapshot s;
    uint64_t hash_before;
    long n_failures = 0;
    int rv = -EIO;

    fx_open(&a, "a", 0);
    fx_bootstrap(&a);
    put_keys(&a, 1, "k", 40, 50);
    fx_open(&b, "b", 0);
    fx_bootstrap(&b);
    put_keys(&b, 1, "old", 5, 50);
    hash_before = fx_hash(&b, 1);
    snapshot_take(&a, 1, 800, &s);

    for (long n = 0; rv != 0; n++) {
        ASSERT_INT_LT(n, 10000);
        rkv_range__fail_writes_after(b.store, n);
        rv = snapshot_install(&b, 1, &s, s.n_chunks, true, NULL);
        rkv_range__fail_writes_after(b.store, -1);
        if (rv != 0) {
            ASSERT_INT_EQ(rv, -EIO);
            ASSERT_UINT_EQ(fx_hash(&b, 1), hash_before);
            n_failures++;
        }
    }
    /* Staging, clearing and copying 40 pairs take well over 80 writes. */
    ASSERT_INT_GT(n_failures, 80);
    ASSERT_UINT_EQ(fx_hash(&b, 1), fx_hash(&a, 1));
    fx_assert_stats_exact(&b, 1);
    snapshot_free(&s);
    fx_close(&a);
    fx_close(&b);
}
