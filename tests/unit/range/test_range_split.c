/* Checks splits: the choice of split key, the split apply on descriptors,
 * stats and Raft state, addressing through the meta span, and stats that
 * stay exact through random operations and splits. */
#define RKV_LOG_SUBSYS "test"
#include "range/range_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/test.h"
#include "tests/unit/range/range_fixture.h"

static void put_n(struct fixture *f, uint64_t range_id, int first, int n,
                  size_t value_len)
{
    static char value[4096];
    char key[16];
    uint8_t *cmd;
    size_t len;

    memset(value, 'v', sizeof(value));
    for (int i = first; i < first + n; i++) {
        snprintf(key, sizeof(key), "key%04d", i);
        ASSERT_OK(rkv_range_encode_put(f->store, key, strlen(key), value,
                                       value_len, &cmd, &len, NULL));
        ASSERT_OK(fx_apply(f, range_id, cmd, len, NULL));
        rkv_free(cmd);
    }
}

static int pick(struct fixture *f, uint64_t range_id, char *key_out)
{
    struct rkv_range_rtxn *rtxn;
    uint8_t key[RKV_RANGE_KEY_MAX];
    size_t key_len = 0;
    int rv;

    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    rv = rkv_range_pick_split_key(rtxn, range_id, key, &key_len);
    rkv_range_rtxn_end(rtxn);
    if (rv == 0) {
        memcpy(key_out, key, key_len);
        key_out[key_len] = '\0';
    }
    return rv;
}

static struct rkv_range_desc desc_of(struct fixture *f, uint64_t range_id)
{
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;

    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    ASSERT_OK(rkv_range_desc_get(rtxn, range_id, &desc));
    rkv_range_rtxn_end(rtxn);
    return desc;
}

/* The split key halves the bytes and keeps both sides non-empty. */
TEST(split, pick_key_cases)
{
    struct fixture f;
    char key[RKV_RANGE_KEY_MAX + 1];

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    /* Empty range and single key: nothing to split. */
    ASSERT_INT_EQ(pick(&f, 1, key), RKV_ENOTFOUND);
    put_n(&f, 1, 0, 1, 100);
    ASSERT_INT_EQ(pick(&f, 1, key), RKV_ENOTFOUND);
    /* Two keys: the second one, whatever the sizes. */
    put_n(&f, 1, 1, 1, 1);
    ASSERT_OK(pick(&f, 1, key));
    ASSERT_STR_EQ(key, "key0001");
    /* Equal pairs: the middle key. */
    put_n(&f, 1, 1, 99, 100);
    ASSERT_OK(pick(&f, 1, key));
    ASSERT_STR_EQ(key, "key0050");
    fx_close(&f);

    /* A pair heavier than all others together: split right after it. */
    fx_open(&f, "heavy", 0);
    fx_bootstrap(&f);
    put_n(&f, 1, 0, 1, 4000);
    put_n(&f, 1, 1, 4, 10);
    ASSERT_OK(pick(&f, 1, key));
    ASSERT_STR_EQ(key, "key0001");
    /* And a heavy last pair: split right before it. */
    put_n(&f, 1, 0, 1, 10);
    put_n(&f, 1, 4, 1, 4000);
    ASSERT_OK(pick(&f, 1, key));
    ASSERT_STR_EQ(key, "key0004");
    fx_close(&f);
}

/* A split shrinks the left side, creates the right side with the same
 * replicas and divides the stats; keys at the boundary go right. */
TEST(split, apply_divides_range)
{
    struct fixture f;
    struct rkv_range_desc left;
    struct rkv_range_desc right;
    struct rkv_range_state state;
    struct rkv_range_stats stats;
    struct rkv_range_rtxn *rtxn;
    const uint8_t *value;
    size_t value_len;
    uint64_t id;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    put_n(&f, 1, 0, 10, 10);
    id = fx_split(&f, 1, "key0005", 7);
    ASSERT_UINT_EQ(id, 2);

    left = desc_of(&f, 1);
    right = desc_of(&f, 2);
    ASSERT_UINT_EQ(left.generation, 2);
    ASSERT_UINT_EQ(right.generation, 2);
    ASSERT_MEM_EQ(left.end_key, left.end_key_len, "key0005", 7);
    ASSERT_MEM_EQ(right.start_key, right.start_key_len, "key0005", 7);
    ASSERT_UINT_EQ(right.end_key_len, 0);
    ASSERT_UINT_EQ(right.n_replicas, left.n_replicas);
    ASSERT_UINT_EQ(right.replicas[0].replica_id, 1);

    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_stats_get(rtxn, 1, &stats));
    ASSERT_UINT_EQ(stats.key_count, 5);
    ASSERT_OK(rkv_range_stats_get(rtxn, 2, &stats));
    ASSERT_UINT_EQ(stats.key_count, 5);
    ASSERT_UINT_EQ(stats.key_bytes, 35);
    ASSERT_UINT_EQ(stats.value_bytes, 50);
    /* The split key itself belongs to the right side. */
    ASSERT_INT_EQ(rkv_range_get(rtxn, 1, "key0005", 7, &value, &value_len),
                  RKV_EKEYMISMATCH);
    ASSERT_OK(rkv_range_get(rtxn, 2, "key0005", 7, &value, &value_len));
    ASSERT_OK(rkv_range_get(rtxn, 1, "key0004", 7, &value, &value_len));
    ASSERT_INT_EQ(rkv_range_get(rtxn, 2, "key0004", 7, &value, &value_len),
                  RKV_EKEYMISMATCH);
    rkv_range_rtxn_end(rtxn);

    /* The right side's Raft state starts at the agreed position. */
    fx_reopen(&f);
    ASSERT_OK(rkv_range_state_load(f.store, 2, &state));
    ASSERT_TRUE(state.initialized);
    ASSERT_UINT_EQ(state.applied_index, RKV_RANGE_SPLIT_INDEX);
    ASSERT_UINT_EQ(state.applied_term, RKV_RANGE_SPLIT_TERM);
    ASSERT_UINT_EQ(state.compacted_index, RKV_RANGE_SPLIT_INDEX);
    ASSERT_UINT_EQ(state.compacted_term, RKV_RANGE_SPLIT_TERM);
    ASSERT_UINT_EQ(state.last_index, RKV_RANGE_SPLIT_INDEX);
    ASSERT_UINT_EQ(state.hard_state.term, RKV_RANGE_SPLIT_TERM);
    ASSERT_UINT_EQ(state.hard_state.commit, RKV_RANGE_SPLIT_INDEX);
    ASSERT_UINT_EQ(state.hard_state.vote, 0);
    fx_assert_stats_exact(&f, 1);
    fx_assert_stats_exact(&f, 2);

    /* The right side takes writes as its own range. */
    put_n(&f, 2, 20, 1, 3);
    ASSERT_UINT_EQ(fx_applied(&f, 2), RKV_RANGE_SPLIT_INDEX + 1);
    fx_assert_stats_exact(&f, 2);
    fx_close(&f);
}

/* Splits of empty ranges and of a range with all keys on one side. */
TEST(split, empty_sides)
{
    struct fixture f;
    struct rkv_range_stats stats;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_split(&f, 1, "m", 1);
    fx_split(&f, 2, "t", 1);
    fx_put(&f, 3, "z", "1", 0);
    fx_split(&f, 3, "u", 1);
    for (uint64_t id = 1; id <= 4; id++) {
        fx_assert_stats_exact(&f, id);
    }
    fx_recount(&f, 4, &stats);
    ASSERT_UINT_EQ(stats.key_count, 1);
    fx_close(&f);
}

/* A split proposed against an old generation or at an invalid key changes
 * nothing and returns the reason. */
TEST(split, rejected_commands)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    struct rkv_range_desc old;
    struct rkv_range_desc now;
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    old = desc_of(&f, 1);
    fx_split(&f, 1, "m", 1);

    ASSERT_OK(
        rkv_range_encode_split(f.store, &old, "f", 1, 9, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, RKV_ESTALE);
    ASSERT_UINT_EQ(result.desc.generation, 2);

    /* The encoder refuses keys outside or at the start of the range. */
    now = desc_of(&f, 2);
    ASSERT_INT_EQ(
        rkv_range_encode_split(f.store, &now, "m", 1, 9, &cmd, &len, NULL),
        -EINVAL);
    ASSERT_INT_EQ(
        rkv_range_encode_split(f.store, &now, "a", 1, 9, &cmd, &len, NULL),
        -EINVAL);
    ASSERT_INT_EQ(
        rkv_range_encode_split(f.store, &now, "n", 1, 1, &cmd, &len, NULL),
        -EINVAL);

    /* A split reusing an existing range id is refused at apply. */
    now = desc_of(&f, 1);
    ASSERT_OK(
        rkv_range_encode_split(f.store, &now, "c", 1, 2, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, -EINVAL);
    ASSERT_UINT_EQ(desc_of(&f, 1).generation, 2);

    /* Range id allocation and meta updates belong to range 1. */
    ASSERT_OK(rkv_range_encode_alloc_range_id(&cmd, &len));
    ASSERT_OK(fx_apply(&f, 2, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, -EINVAL);
    fx_close(&f);
}

/* Meta lookups find the range of every key, and a late meta update never
 * replaces a newer record. */
TEST(split, meta_addressing)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    struct rkv_range_desc *descs;
    struct rkv_range_desc found;
    struct rkv_range_desc stale_left;
    struct rkv_range_desc stale_right;
    struct rkv_range_rtxn *rtxn;
    static const char *const keys[] = {"", "a", "f", "fa", "m", "t", "zz"};
    uint8_t *cmd;
    size_t len;
    size_t n;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_split(&f, 1, "m", 1);
    stale_left = desc_of(&f, 2);
    fx_split(&f, 2, "t", 1);
    fx_split(&f, 1, "f", 1);
    stale_right = desc_of(&f, 3);

    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    for (size_t i = 0; i < RKV_ARRAY_SIZE(keys); i++) {
        struct rkv_range_desc local;

        ASSERT_OK(
            rkv_range_meta_lookup(rtxn, keys[i], strlen(keys[i]), &found));
        ASSERT_TRUE(
            rkv_range_desc_contains_key(&found, keys[i], strlen(keys[i])));
        ASSERT_OK(rkv_range_desc_get(rtxn, found.range_id, &local));
        ASSERT_UINT_EQ(local.generation, found.generation);
    }
    ASSERT_OK(rkv_range_meta_list(rtxn, &descs, &n));
    rkv_range_rtxn_end(rtxn);
    ASSERT_UINT_EQ(n, 4);
    ASSERT_UINT_EQ(descs[0].start_key_len, 0);
    for (size_t i = 0; i + 1 < n; i++) {
        ASSERT_MEM_EQ(descs[i].end_key, descs[i].end_key_len,
                      descs[i + 1].start_key, descs[i + 1].start_key_len);
    }
    ASSERT_UINT_EQ(descs[n - 1].end_key_len, 0);
    rkv_free(descs);

    /* Replay the first split's meta update (range 2 before its split). */
    stale_left.generation = 1;
    ASSERT_OK(
        rkv_range_encode_meta_update(&stale_left, &stale_right, &cmd, &len));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, "u", 1, &found));
    ASSERT_UINT_EQ(found.range_id, 3);
    ASSERT_OK(rkv_range_meta_lookup(rtxn, "n", 1, &found));
    ASSERT_UINT_EQ(found.range_id, 2);
    ASSERT_MEM_EQ(found.end_key, found.end_key_len, "t", 1);
    rkv_range_rtxn_end(rtxn);
    fx_close(&f);
}

/* A replica change of another range reaches the meta span through a
 * one-descriptor meta update. */
TEST(split, meta_update_after_replica_change)
{
    struct fixture f;
    struct rkv_range_replica replicas[2] = {
        {.node_id = 1, .replica_id = 1},
        {.node_id = 4, .replica_id = 2, .learner = true},
    };
    struct rkv_range_apply_result result;
    struct rkv_range_wtxn *wtxn;
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;
    struct rkv_range_desc found;
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_split(&f, 1, "m", 1);
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_replicas_set(wtxn, 2, replicas, 2));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    desc = desc_of(&f, 2);
    ASSERT_UINT_EQ(desc.generation, 3);

    ASSERT_OK(rkv_range_encode_meta_update(&desc, NULL, &cmd, &len));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, "x", 1, &found));
    rkv_range_rtxn_end(rtxn);
    ASSERT_UINT_EQ(found.range_id, 2);
    ASSERT_UINT_EQ(found.generation, 3);
    ASSERT_UINT_EQ(found.n_replicas, 2);
    ASSERT_UINT_EQ(found.replicas[1].node_id, 4);
    ASSERT_TRUE(found.replicas[1].learner);
    fx_close(&f);
}

/* An uninitialized replica keeps its vote when the split creates it. */
TEST(split, initializes_uninit_replica)
{
    struct fixture f;
    struct rkv_range_hard_state hs = {.term = 7, .vote = 3, .commit = 0};
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_create_uninit(wtxn, 2));
    ASSERT_OK(rkv_range_hard_state_save(wtxn, 2, &hs));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));

    ASSERT_OK(rkv_range_state_load(f.store, 2, &state));
    ASSERT_FALSE(state.initialized);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_INT_EQ(rkv_range_desc_get(rtxn, 2, &desc), RKV_ERANGENOTFOUND);
    rkv_range_rtxn_end(rtxn);

    fx_split(&f, 1, "m", 1);
    ASSERT_OK(rkv_range_state_load(f.store, 2, &state));
    ASSERT_TRUE(state.initialized);
    ASSERT_UINT_EQ(state.hard_state.term, 7);
    ASSERT_UINT_EQ(state.hard_state.vote, 3);
    ASSERT_UINT_EQ(state.hard_state.commit, RKV_RANGE_SPLIT_INDEX);
    ASSERT_UINT_EQ(state.applied_index, RKV_RANGE_SPLIT_INDEX);
    fx_close(&f);
}

/* The split threshold is a setting compared against key plus value
 * bytes. */
TEST(split, threshold_setting)
{
    struct fixture f;
    struct rkv_range_stats stats = {
        .key_bytes = 400, .value_bytes = 624, .key_count = 3};

    fx_open(&f, "s", 0);
    ASSERT_UINT_EQ(rkv_range_store_split_bytes(f.store),
                   RKV_RANGE_SPLIT_BYTES_DEFAULT);
    ASSERT_UINT_EQ(RKV_RANGE_SPLIT_BYTES_DEFAULT, 512ull << 20);
    ASSERT_FALSE(rkv_range_should_split(f.store, &stats));
    rkv_range_store_set_split_bytes(f.store, 1024);
    ASSERT_FALSE(rkv_range_should_split(f.store, &stats));
    stats.value_bytes++;
    ASSERT_TRUE(rkv_range_should_split(f.store, &stats));
    fx_close(&f);
}

/* Finds the local range holding a key through the meta span. */
static uint64_t route(struct fixture *f, const void *key, size_t key_len)
{
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;

    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, key, key_len, &desc));
    rkv_range_rtxn_end(rtxn);
    return desc.range_id;
}

/* Random puts, deletes and batches with automatic splits keep every
 * range's stats equal to a full recount, also after restart. */
TEST(split, stats_exact_after_random_ops)
{
    struct fixture f;
    struct rkv_range_desc *descs;
    struct rkv_range_stats total = {0};
    struct rkv_range_rtxn *rtxn;
    static char value[300];
    int n_splits = 0;
    size_t n;

    srand(11);
    memset(value, 'r', sizeof(value));
    fx_open(&f, "s", 4096);
    fx_bootstrap(&f);
    for (int i = 0; i < 1500; i++) {
        char key[RKV_RANGE_KEY_MAX];
        size_t key_len = 1 + (size_t)rand() % 12;
        struct rkv_range_op op;
        struct rkv_range_apply_result result;
        struct rkv_range_stats stats;
        uint64_t id;
        uint8_t *cmd;
        size_t len;
        char split_key[RKV_RANGE_KEY_MAX + 1];

        for (size_t j = 0; j < key_len; j++) {
            key[j] = (char)('a' + rand() % 4);
        }
        op = (struct rkv_range_op){.is_delete = rand() % 4 == 0,
                                   .key = key,
                                   .key_len = key_len,
                                   .value = value,
                                   .value_len = (size_t)rand() % 300};
        id = route(&f, key, key_len);
        ASSERT_OK(rkv_range_encode_batch(f.store, &op, 1, &cmd, &len, NULL));
        ASSERT_OK(fx_apply(&f, id, cmd, len, &result));
        rkv_free(cmd);
        ASSERT_INT_EQ(result.rv, 0);

        ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
        ASSERT_OK(rkv_range_stats_get(rtxn, id, &stats));
        rkv_range_rtxn_end(rtxn);
        if (rkv_range_should_split(f.store, &stats) &&
            pick(&f, id, split_key) == 0) {
            fx_split(&f, id, split_key, strlen(split_key));
            n_splits++;
        }
    }
    ASSERT_INT_GE(n_splits, 20);
    fx_reopen(&f);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_desc_list(rtxn, &descs, &n));
    rkv_range_rtxn_end(rtxn);
    ASSERT_UINT_EQ(n, (size_t)n_splits + 1);
    for (size_t i = 0; i < n; i++) {
        struct rkv_range_stats stats;

        fx_assert_stats_exact(&f, descs[i].range_id);
        fx_recount(&f, descs[i].range_id, &stats);
        total.key_count += stats.key_count;
    }
    rkv_free(descs);
    ASSERT_UINT_GT(total.key_count, 100);
    fx_close(&f);
}

/* A split whose meta update was lost shows up as stale meta records until
 * the update is proposed again. */
TEST(split, meta_check_finds_lost_update)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    struct rkv_range_desc desc;
    struct rkv_range_desc left;
    struct rkv_range_desc right;
    struct rkv_range_rtxn *rtxn;
    bool stale = false;
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_split(&f, 1, "m", 1);
    desc = desc_of(&f, 2);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_check(rtxn, &desc, &stale));
    rkv_range_rtxn_end(rtxn);
    ASSERT_FALSE(stale);

    /* Split range 2 without the meta update, as if its leader crashed. */
    ASSERT_OK(
        rkv_range_encode_split(f.store, &desc, "t", 1, 3, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(&f, 2, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    left = result.desc;
    right = result.right;
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_check(rtxn, &left, &stale));
    ASSERT_TRUE(stale);
    ASSERT_OK(rkv_range_meta_check(rtxn, &right, &stale));
    ASSERT_TRUE(stale);
    rkv_range_rtxn_end(rtxn);

    ASSERT_OK(rkv_range_encode_meta_update(&left, &right, &cmd, &len));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_check(rtxn, &left, &stale));
    ASSERT_FALSE(stale);
    ASSERT_OK(rkv_range_meta_check(rtxn, &right, &stale));
    ASSERT_FALSE(stale);
    rkv_range_rtxn_end(rtxn);
    fx_close(&f);

    /* A node without range 1 cannot tell. */
    fx_open(&f, "empty", 0);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_INT_EQ(rkv_range_meta_check(rtxn, &right, &stale),
                  RKV_ERANGENOTFOUND);
    rkv_range_rtxn_end(rtxn);
    fx_close(&f);
}

/* Scans stop at the limit or at the range end and return where to
 * resume, and an end inside the range needs no resume. */
TEST(split, scan_boundaries)
{
    struct fixture f;
    struct rkv_range_scan_result scan;
    struct rkv_range_rtxn *rtxn;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    put_n(&f, 1, 0, 10, 5);
    fx_split(&f, 1, "key0005", 7);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));

    /* The limit cuts the scan and resumes at the next key. */
    ASSERT_OK(rkv_range_scan(rtxn, 1, "", 0, NULL, 0, 3, &scan));
    ASSERT_UINT_EQ(scan.n_pairs, 3);
    ASSERT_TRUE(scan.more_after);
    ASSERT_MEM_EQ(scan.resume_key, scan.resume_key_len, "key0003", 7);
    rkv_range_scan_result_free(&scan);

    /* The range end cuts the scan and resumes in the next range. */
    ASSERT_OK(rkv_range_scan(rtxn, 1, "key0003", 7, NULL, 0, 100, &scan));
    ASSERT_UINT_EQ(scan.n_pairs, 2);
    ASSERT_MEM_EQ(scan.pairs[1].key, scan.pairs[1].key_len, "key0004", 7);
    ASSERT_TRUE(scan.more_after);
    ASSERT_MEM_EQ(scan.resume_key, scan.resume_key_len, "key0005", 7);
    rkv_range_scan_result_free(&scan);

    /* An end inside the range is exclusive and final. */
    ASSERT_OK(rkv_range_scan(rtxn, 2, "key0005", 7, "key0007", 7, 100, &scan));
    ASSERT_UINT_EQ(scan.n_pairs, 2);
    ASSERT_FALSE(scan.more_after);
    rkv_range_scan_result_free(&scan);

    /* An end exactly at the range end is final too. */
    ASSERT_OK(rkv_range_scan(rtxn, 1, "key0000", 7, "key0005", 7, 100, &scan));
    ASSERT_UINT_EQ(scan.n_pairs, 5);
    ASSERT_FALSE(scan.more_after);
    rkv_range_scan_result_free(&scan);

    /* A huge limit is capped, and the last range has no resume. */
    ASSERT_OK(
        rkv_range_scan(rtxn, 2, "key0005", 7, NULL, 0, UINT32_MAX, &scan));
    ASSERT_UINT_EQ(scan.n_pairs, 5);
    ASSERT_FALSE(scan.more_after);
    rkv_range_scan_result_free(&scan);

    /* A start outside the range is a key mismatch. */
    ASSERT_INT_EQ(rkv_range_scan(rtxn, 2, "a", 1, NULL, 0, 10, &scan),
                  RKV_EKEYMISMATCH);
    rkv_range_rtxn_end(rtxn);
    fx_close(&f);
}
