/*
 * The client's range cache on its own: lookups at boundaries, splits
 * replacing their parent, stale descriptors ignored, leaders kept.
 */
#define RKV_LOG_SUBSYS "test"
#include "client/client_internal.h"

#include "tests/lib/test.h"

struct fixture {
    struct rkv_client__cache cache;
};

static void setup(struct fixture *f)
{
    rkv_client__cache_init(&f->cache);
}

static void teardown(struct fixture *f)
{
    rkv_client__cache_free(&f->cache);
}

/* Installs [start, end) as range_id at generation with a leader. */
static void install(struct fixture *f, uint64_t range_id, const char *start,
                    const char *end, uint64_t generation, uint64_t leader)
{
    struct rkv_client__range range = {0};

    range.range_id = range_id;
    range.generation = generation;
    range.start_key = (uint8_t *)start;
    range.start_key_len = strlen(start);
    range.end_key = (uint8_t *)end;
    range.end_key_len = strlen(end);
    range.leader_node_id = leader;
    ASSERT_OK(rkv_client__cache_install(&f->cache, &range));
}

/* Returns the id of the range caching key, or 0. */
static uint64_t lookup(struct fixture *f, const char *key)
{
    struct rkv_client__range *range =
        rkv_client__cache_lookup(&f->cache, key, strlen(key));

    return range != NULL ? range->range_id : 0;
}

/* An empty cache finds nothing, even for the empty key. */
TEST(client_cache, empty)
{
    struct fixture f;

    setup(&f);
    ASSERT_UINT_EQ(lookup(&f, ""), 0);
    ASSERT_UINT_EQ(lookup(&f, "a"), 0);
    teardown(&f);
}

/* Keys at, just before and just after each boundary find the right range,
 * and a hole in the cache finds nothing. */
TEST(client_cache, boundaries)
{
    static const struct {
        const char *key;
        size_t key_len;
        uint64_t range_id;
    } cases[] = {
        {"", 0, 1},      {"a", 1, 1},    {"l\xff", 2, 1},    {"m", 1, 2},
        {"m\x00", 2, 2}, {"p", 1, 2},    {"q", 1, 0},        {"r", 1, 0},
        {"s", 1, 3},     {"zzzz", 4, 3}, {"\xff\xff", 2, 3},
    };
    struct fixture f;

    setup(&f);
    install(&f, 2, "m", "q", 1, 0);
    install(&f, 1, "", "m", 1, 0);
    install(&f, 3, "s", "", 1, 0);
    ASSERT_UINT_EQ(f.cache.n_ranges, 3);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        struct rkv_client__range *range =
            rkv_client__cache_lookup(&f.cache, cases[i].key, cases[i].key_len);
        ASSERT_UINT_EQ(range != NULL ? range->range_id : 0, cases[i].range_id);
    }
    teardown(&f);
}

/* The two halves of a split replace the parent, in either order. */
TEST(client_cache, split_replaces_parent)
{
    for (int order = 0; order < 2; order++) {
        struct fixture f;

        setup(&f);
        install(&f, 1, "", "", 1, 1);
        if (order == 0) {
            install(&f, 1, "", "k", 2, 0);
            install(&f, 5, "k", "", 2, 0);
        } else {
            install(&f, 5, "k", "", 2, 0);
            ASSERT_UINT_EQ(lookup(&f, "a"), 0);
            install(&f, 1, "", "k", 2, 0);
        }
        ASSERT_UINT_EQ(f.cache.n_ranges, 2);
        ASSERT_UINT_EQ(lookup(&f, "a"), 1);
        ASSERT_UINT_EQ(lookup(&f, "k"), 5);
        ASSERT_UINT_EQ(lookup(&f, "z"), 5);
        teardown(&f);
    }
}

/* A descriptor older than the cached one of the same range is ignored. */
TEST(client_cache, stale_generation_ignored)
{
    struct fixture f;

    setup(&f);
    install(&f, 1, "", "k", 3, 2);
    install(&f, 1, "", "", 2, 1);
    ASSERT_UINT_EQ(f.cache.n_ranges, 1);
    ASSERT_UINT_EQ(lookup(&f, "z"), 0);
    ASSERT_UINT_EQ(f.cache.ranges[0].leader_node_id, 2);
    teardown(&f);
}

/* Reinstalling the same generation without a leader keeps the leader;
 * set_leader and evict act on one range only. */
TEST(client_cache, leader_kept_and_evict)
{
    struct fixture f;

    setup(&f);
    install(&f, 1, "", "k", 1, 3);
    install(&f, 2, "k", "", 1, 2);
    install(&f, 1, "", "k", 1, 0);
    ASSERT_UINT_EQ(rkv_client__cache_lookup(&f.cache, "a", 1)->leader_node_id,
                   3);
    rkv_client__cache_set_leader(&f.cache, 2, 1);
    ASSERT_UINT_EQ(rkv_client__cache_lookup(&f.cache, "x", 1)->leader_node_id,
                   1);
    rkv_client__cache_evict(&f.cache, 1);
    ASSERT_UINT_EQ(lookup(&f, "a"), 0);
    ASSERT_UINT_EQ(lookup(&f, "x"), 2);
    teardown(&f);
}

/* Byte-string order is memcmp order with the shorter prefix first. */
TEST(client_cache, key_order)
{
    ASSERT_INT_LT(rkv_client__key_compare("a", 1, "b", 1), 0);
    ASSERT_INT_LT(rkv_client__key_compare("a", 1, "a\x00", 2), 0);
    ASSERT_INT_GT(rkv_client__key_compare("\xff", 1, "a", 1), 0);
    ASSERT_INT_EQ(rkv_client__key_compare("", 0, "", 0), 0);
    ASSERT_INT_LT(rkv_client__key_compare("", 0, "\x00", 1), 0);
}

/* A descriptor overlapping a cached range of a higher generation is stale
 * (the parent of a later split) even under another range id, so it is
 * ignored rather than evicting the newer half. */
TEST(client_cache, stale_parent_ignored)
{
    struct fixture f;

    setup(&f);
    install(&f, 5, "k", "", 4, 0);
    install(&f, 1, "", "", 3, 0);
    ASSERT_UINT_EQ(f.cache.n_ranges, 1);
    ASSERT_UINT_EQ(lookup(&f, "z"), 5);
    ASSERT_UINT_EQ(lookup(&f, "a"), 0);
    install(&f, 1, "", "k", 4, 0);
    ASSERT_UINT_EQ(f.cache.n_ranges, 2);
    ASSERT_UINT_EQ(lookup(&f, "a"), 1);
    teardown(&f);
}
