/*
 * The client library against a fake cluster of scripted nodes on real TCP:
 * framing, request matching, routing and the cache, retries on each typed
 * error, the unknown-outcome rule for writes, deadlines, scans across
 * ranges, the async path and close.
 */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "rangekv/client.h"
#include "tests/lib/test.h"
#include "tests/unit/client/fake_cluster.h"

struct fixture {
    struct fake_cluster *cluster;
    struct rkv_client *client;
};

static void setup_with(struct fixture *f, int n_nodes, uint32_t timeout_ms,
                       uint32_t inflight_max)
{
    struct rkv_client_options options = {0};
    const char *hosts[1];

    f->cluster = fake_start(n_nodes);
    hosts[0] = fake_addr(f->cluster, 0);
    options.hosts = hosts;
    options.n_hosts = 1;
    options.timeout_ms = timeout_ms;
    options.inflight_max = inflight_max;
    ASSERT_OK(rkv_client_open(&options, &f->client));
}

static void setup(struct fixture *f, int n_nodes)
{
    setup_with(f, n_nodes, 5000, 0);
}

static void teardown(struct fixture *f)
{
    rkv_client_close(f->client);
    fake_stop(f->cluster);
}

static int put_str(struct fixture *f, const char *key, const char *value)
{
    return rkv_client_put(f->client, key, strlen(key), value, strlen(value));
}

static int do_op(struct fixture *f, enum rkv_client_op op, const char *key,
                 struct rkv_client_result *result)
{
    struct rkv_client_request request = {0};

    request.op = op;
    request.key = key;
    request.key_len = strlen(key);
    return rkv_client_do(f->client, &request, result);
}

#define ASSERT_GET(f, key, expected)                                           \
    do {                                                                       \
        uint8_t *value_;                                                       \
        size_t value_len_;                                                     \
        ASSERT_OK(rkv_client_get((f)->client, (key), strlen(key), &value_,     \
                                 &value_len_));                                \
        ASSERT_MEM_EQ(value_, value_len_, (expected), strlen(expected));       \
        free(value_);                                                          \
    } while (0)

/* A put, a get, a missing get and deletes go through one node. */
TEST(client, put_get_delete)
{
    struct fixture f;
    struct rkv_client_result result;
    uint8_t *value;
    size_t value_len;

    setup(&f, 1);
    ASSERT_OK(put_str(&f, "apple", "red"));
    ASSERT_GET(&f, "apple", "red");
    ASSERT_INT_EQ(rkv_client_get(f.client, "pear", 4, &value, &value_len),
                  RKV_ENOTFOUND);
    ASSERT_TRUE(value == NULL);

    ASSERT_OK(do_op(&f, RKV_CLIENT_DELETE, "apple", &result));
    ASSERT_TRUE(result.found);
    ASSERT_UINT_EQ(result.n_retries, 0);
    rkv_client_result_free(&result);
    ASSERT_OK(do_op(&f, RKV_CLIENT_DELETE, "apple", &result));
    ASSERT_FALSE(result.found);
    rkv_client_result_free(&result);
    teardown(&f);
}

/* The cache is filled by one RangesRequest and then reused. */
TEST(client, cache_filled_once)
{
    struct fixture f;

    setup(&f, 1);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%02d", i);
        ASSERT_OK(put_str(&f, key, "v"));
    }
    fake_lock(f.cluster);
    ASSERT_UINT_EQ(f.cluster->n_ranges_requests, 1);
    fake_unlock(f.cluster);
    teardown(&f);
}

/* A not-leader reply with a hint sends the request to the hinted node,
 * and later requests go there directly. */
TEST(client, not_leader_follows_hint)
{
    struct fixture f;
    struct rkv_client_result result;

    setup(&f, 3);
    ASSERT_OK(put_str(&f, "a", "1")); /* fills the cache: leader is node 1 */
    fake_lock(f.cluster);
    fake_set_leader_locked(f.cluster, 2);
    fake_unlock(f.cluster);

    ASSERT_OK(do_op(&f, RKV_CLIENT_GET, "a", &result));
    ASSERT_TRUE(result.found);
    ASSERT_UINT_EQ(result.n_retries, 1);
    rkv_client_result_free(&result);
    ASSERT_OK(do_op(&f, RKV_CLIENT_GET, "a", &result));
    ASSERT_UINT_EQ(result.n_retries, 0);
    rkv_client_result_free(&result);

    fake_lock(f.cluster);
    ASSERT_UINT_EQ(f.cluster->nodes[0].n_keyed, 2);
    ASSERT_UINT_EQ(f.cluster->nodes[1].n_keyed, 2);
    fake_unlock(f.cluster);
    teardown(&f);
}

/* A key-mismatch reply installs the descriptor it carries. When that
 * places the key (a node that sends the key's range), the retry names the
 * new range; when it does not (the named range's new bounds, as rangekv
 * nodes send) and the meta span lags the split, the retry goes with range
 * id 0 and the node routes it. Either way no extra RangesRequest is sent. */
TEST(client, key_mismatch_installs_descriptors)
{
    static const struct {
        bool sends_key_range;
        uint64_t zebra_range_id; /* what the retry named */
    } cases[] = {
        {true, 2},
        {false, 0},
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        struct fixture f;
        struct rkv_client_result result;

        setup(&f, 1);
        ASSERT_OK(put_str(&f, "a", "1"));
        fake_lock(f.cluster);
        f.cluster->meta_is_stale = true; /* RANGES keeps one range */
        f.cluster->mismatch_sends_key_range = cases[i].sends_key_range;
        fake_split_locked(f.cluster, "m");
        fake_unlock(f.cluster);

        ASSERT_OK(do_op(&f, RKV_CLIENT_GET, "zebra", &result));
        ASSERT_FALSE(result.found);
        ASSERT_UINT_EQ(result.n_retries, 1);
        rkv_client_result_free(&result);
        fake_lock(f.cluster);
        ASSERT_UINT_EQ(f.cluster->last_range_id_seen, cases[i].zebra_range_id);
        ASSERT_UINT_EQ(f.cluster->n_ranges_requests, 1);
        fake_unlock(f.cluster);
        teardown(&f);
    }
}

/* When the meta span lags a split, the stale descriptor it reports cannot
 * replace the newer bounds learned from a reply, and a key that no cached
 * descriptor places is routed by the node. */
TEST(client, stale_meta_routes_by_key)
{
    struct fixture f;
    struct rkv_client_range *ranges;
    struct rkv_client_request request = {0};
    struct rkv_client_result result;
    size_t n_ranges;

    setup(&f, 1);
    ASSERT_OK(put_str(&f, "a", "1"));
    ASSERT_OK(put_str(&f, "x", "2"));
    fake_lock(f.cluster);
    f.cluster->meta_is_stale = true;
    fake_split_locked(f.cluster, "m");
    fake_unlock(f.cluster);

    /* "x" learns range 1's new bounds [ "", "m" ) and goes by key. */
    for (int round = 0; round < 2; round++) {
        ASSERT_GET(&f, "x", "2");
        fake_lock(f.cluster);
        ASSERT_UINT_EQ(f.cluster->last_range_id_seen, 0);
        fake_unlock(f.cluster);
        ASSERT_GET(&f, "a", "1");
        fake_lock(f.cluster);
        ASSERT_UINT_EQ(f.cluster->last_range_id_seen, 1);
        fake_unlock(f.cluster);
        /* A refresh reports the stale [ "", "" ) of generation 1. */
        ASSERT_OK(rkv_client_ranges(f.client, &ranges, &n_ranges));
        ASSERT_UINT_EQ(n_ranges, 1);
        rkv_client_ranges_free(ranges, n_ranges);
    }

    /* A scan crosses from the cached range into the one only nodes know. */
    request.op = RKV_CLIENT_SCAN;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_UINT_EQ(result.n_pairs, 2);
    ASSERT_MEM_EQ(result.pairs[0].key, result.pairs[0].key_len, "a", 1);
    ASSERT_MEM_EQ(result.pairs[1].key, result.pairs[1].key_len, "x", 1);
    rkv_client_result_free(&result);
    teardown(&f);
}

/* RKV_EUNAVAILABLE is retried with backoff until the node recovers. */
TEST(client, unavailable_retried)
{
    struct fixture f;
    struct rkv_client_result result;
    struct rkv_client_request request = {0};

    setup(&f, 1);
    fake_lock(f.cluster);
    f.cluster->n_unavailable = 3;
    fake_unlock(f.cluster);
    request.op = RKV_CLIENT_PUT;
    request.key = "k";
    request.key_len = 1;
    request.value = "v";
    request.value_len = 1;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_UINT_EQ(result.n_retries, 3);
    rkv_client_result_free(&result);
    ASSERT_GET(&f, "k", "v");
    teardown(&f);
}

/* A put whose connection drops after sending is RKV_EUNKNOWN, whether or
 * not the node applied it, and it is not re-sent. */
TEST(client, dropped_write_is_unknown)
{
    static const bool applies[] = {false, true};
    struct fixture f;
    struct rkv_client_result result;
    struct rkv_client_request request = {0};

    for (size_t i = 0; i < RKV_ARRAY_SIZE(applies); i++) {
        setup(&f, 1);
        ASSERT_OK(put_str(&f, "warm", "up"));
        fake_lock(f.cluster);
        f.cluster->n_drop_put = 1;
        f.cluster->drop_put_applies = applies[i];
        fake_unlock(f.cluster);

        request.op = RKV_CLIENT_PUT;
        request.key = "k";
        request.key_len = 1;
        request.value = "v";
        request.value_len = 1;
        ASSERT_INT_EQ(rkv_client_do(f.client, &request, &result), RKV_EUNKNOWN);
        ASSERT_UINT_EQ(result.n_retries, 0);
        ASSERT_TRUE(strstr(result.error_message, "outcome unknown") != NULL);
        rkv_client_result_free(&result);
        fake_lock(f.cluster);
        ASSERT_UINT_EQ(f.cluster->nodes[0].n_keyed, 2);
        fake_unlock(f.cluster);
        teardown(&f);
    }
}

/* A get whose connection drops is re-sent on a new connection. */
TEST(client, dropped_read_is_retried)
{
    struct fixture f;
    struct rkv_client_result result;

    setup(&f, 1);
    ASSERT_OK(put_str(&f, "k", "v"));
    fake_lock(f.cluster);
    f.cluster->n_drop_get = 2;
    fake_unlock(f.cluster);
    ASSERT_OK(do_op(&f, RKV_CLIENT_GET, "k", &result));
    ASSERT_TRUE(result.found);
    ASSERT_UINT_EQ(result.n_retries, 2);
    rkv_client_result_free(&result);
    ASSERT_UINT_EQ(script_server_stats(f.cluster->nodes[0].server).n_accepts,
                   3);
    teardown(&f);
}

/* A reply frame that breaks the protocol (a length over the limit or of
 * zero, a payload that does not decode, an unknown or positive error)
 * closes the connection; the read is then re-sent and succeeds. */
TEST(client, bad_frame_drops_connection)
{
    static const uint8_t oversize[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t just_over[] = {0x01, 0x00, 0x00, 0x01};
    static const uint8_t zero_len[] = {0x00, 0x00, 0x00, 0x00};
    static const uint8_t garbage[] = {0x00, 0x00, 0x00, 0x03, 0xff, 0xff, 0xff};
    /* Response{id: 1, error: +5}: a positive error is not a rangekv code. */
    static const uint8_t positive_error[] = {0x00, 0x00, 0x00, 0x04,
                                             0x08, 0x01, 0x10, 0x0a};
    static const struct {
        const uint8_t *bytes;
        size_t len;
    } frames[] = {
        {oversize, sizeof(oversize)},
        {just_over, sizeof(just_over)},
        {zero_len, sizeof(zero_len)},
        {garbage, sizeof(garbage)},
        {positive_error, sizeof(positive_error)},
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(frames); i++) {
        struct fixture f;

        setup(&f, 1);
        ASSERT_OK(put_str(&f, "k", "v"));
        fake_lock(f.cluster);
        f.cluster->bad_frame = frames[i].bytes;
        f.cluster->bad_frame_len = frames[i].len;
        f.cluster->n_bad_frame_get = 1;
        fake_unlock(f.cluster);
        ASSERT_GET(&f, "k", "v");
        ASSERT_UINT_EQ(
            script_server_stats(f.cluster->nodes[0].server).n_accepts, 2);
        teardown(&f);
    }
}

/* With no reply, a read times out and a sent write is RKV_EUNKNOWN. */
TEST(client, deadline_read_timeout_write_unknown)
{
    struct fixture f;
    struct rkv_client_result result;
    uint64_t start_ms;

    setup_with(&f, 1, 300, 0);
    ASSERT_OK(put_str(&f, "k", "v"));
    fake_lock(f.cluster);
    f.cluster->hold_all = true;
    fake_unlock(f.cluster);

    start_ms = rkv_monotonic_ms();
    ASSERT_INT_EQ(do_op(&f, RKV_CLIENT_GET, "k", &result), RKV_ETIMEOUT);
    ASSERT_UINT_GE(rkv_monotonic_ms() - start_ms, 300);
    rkv_client_result_free(&result);
    ASSERT_INT_EQ(put_str(&f, "k", "w"), RKV_EUNKNOWN);
    teardown(&f);
}

/* A cluster that cannot be reached gives RKV_ETIMEOUT naming the cause. */
TEST(client, unreachable_cluster_times_out)
{
    struct rkv_client_options options = {0};
    struct rkv_client *client;
    struct rkv_client_result result;
    struct rkv_client_request request = {0};
    struct fake_cluster *cluster = fake_start(1);
    char addr[64];
    const char *hosts[1] = {addr};

    /* A port that was just listening and is now closed. */
    snprintf(addr, sizeof(addr), "%s", fake_addr(cluster, 0));
    fake_stop(cluster);
    options.hosts = hosts;
    options.n_hosts = 1;
    options.timeout_ms = 300;
    ASSERT_OK(rkv_client_open(&options, &client));
    request.op = RKV_CLIENT_PUT;
    request.key = "k";
    request.key_len = 1;
    request.value = "v";
    request.value_len = 1;
    ASSERT_INT_EQ(rkv_client_do(client, &request, &result), RKV_ETIMEOUT);
    ASSERT_TRUE(strstr(result.error_message, "unavailable") != NULL);
    rkv_client_result_free(&result);
    rkv_client_close(client);
}

/* Scans continue across ranges, honour the limit and stop at the end key. */
TEST(client, scan_across_ranges)
{
    static const struct {
        const char *start;
        const char *end;
        uint32_t limit;
        const char *first;
        const char *last;
        size_t n_pairs;
    } cases[] = {
        {"", NULL, 0, "a0", "z9", 260},  {"", NULL, 15, "a0", "b4", 15},
        {"f5", "g5", 0, "f5", "g4", 10}, {"m0", "m1", 0, "m0", "m0", 1},
        {"h", "h", 0, NULL, NULL, 0},    {"zz", NULL, 0, NULL, NULL, 0},
    };
    struct fixture f;

    setup(&f, 1);
    for (char c = 'a'; c <= 'z'; c++) {
        for (int d = 0; d < 10; d++) {
            char key[3] = {c, (char)('0' + d), '\0'};
            ASSERT_OK(put_str(&f, key, key));
        }
    }
    fake_lock(f.cluster);
    fake_split_locked(f.cluster, "c");
    fake_split_locked(f.cluster, "g");
    fake_split_locked(f.cluster, "m0");
    fake_split_locked(f.cluster, "m1");
    fake_unlock(f.cluster);

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        struct rkv_client_request request = {0};
        struct rkv_client_result result;

        request.op = RKV_CLIENT_SCAN;
        request.key = cases[i].start;
        request.key_len = strlen(cases[i].start);
        request.end_key = cases[i].end;
        request.end_key_len = cases[i].end ? strlen(cases[i].end) : 0;
        request.limit = cases[i].limit;
        ASSERT_OK(rkv_client_do(f.client, &request, &result));
        ASSERT_UINT_EQ(result.n_pairs, cases[i].n_pairs);
        if (cases[i].n_pairs > 0) {
            struct rkv_client_kv *first = &result.pairs[0];
            struct rkv_client_kv *last = &result.pairs[result.n_pairs - 1];
            ASSERT_MEM_EQ(first->key, first->key_len, cases[i].first,
                          strlen(cases[i].first));
            ASSERT_MEM_EQ(last->key, last->key_len, cases[i].last,
                          strlen(cases[i].last));
        }
        for (size_t p = 1; p < result.n_pairs; p++) {
            ASSERT_INT_LT(
                memcmp(result.pairs[p - 1].key, result.pairs[p].key, 2), 0);
        }
        rkv_client_result_free(&result);
    }
    teardown(&f);
}

struct async_state {
    struct fake_cluster *cluster;
    struct rkv_client *client;
    atomic_int n_done;
    atomic_int n_bad;
};

struct async_get {
    struct async_state *state;
    int index; /* key kNNN has value vNNN */
};

static void async_get_done_cb(void *data, struct rkv_client_result *result)
{
    struct async_get *get = data;
    char expected[8];

    snprintf(expected, sizeof(expected), "v%03d", get->index);
    if (result->rv != 0 || !result->found || result->value_len != 4 ||
        memcmp(result->value, expected, 4) != 0) {
        atomic_fetch_add(&get->state->n_bad, 1);
    }
    rkv_client_result_free(result);
    atomic_fetch_add(&get->state->n_done, 1);
    free(get);
}

static void async_submit_get(struct async_state *state, int index)
{
    struct rkv_client_request request = {0};
    struct async_get *get = malloc(sizeof(*get));
    char key[8];

    snprintf(key, sizeof(key), "k%03d", index);
    get->state = state;
    get->index = index;
    request.op = RKV_CLIENT_GET;
    request.key = key;
    request.key_len = 4;
    ASSERT_OK(
        rkv_client_submit(state->client, &request, async_get_done_cb, get));
}

/* Runs on the loop thread: queues 100 gets whose replies the fake nodes
 * send back in reverse order. */
static void async_starter_done_cb(void *data, struct rkv_client_result *result)
{
    struct async_state *state = data;

    rkv_client_result_free(result);
    fake_lock(state->cluster);
    state->cluster->reverse_batch = 100;
    fake_unlock(state->cluster);
    for (int i = 0; i < 100; i++) {
        async_submit_get(state, i);
    }
    atomic_fetch_add(&state->n_done, 1);
}

/* Many requests in flight on one connection: submitted from a callback
 * they leave in coalesced writes, and replies in reverse order still reach
 * the right callers. */
TEST(client, many_in_flight_out_of_order)
{
    struct fixture f;
    struct async_state state;
    struct rkv_client_request request = {0};
    uint64_t deadline_ms;

    setup(&f, 1);
    for (int i = 0; i < 100; i++) {
        char key[8];
        char value[8];
        snprintf(key, sizeof(key), "k%03d", i);
        snprintf(value, sizeof(value), "v%03d", i);
        ASSERT_OK(put_str(&f, key, value));
    }
    state.cluster = f.cluster;
    state.client = f.client;
    atomic_init(&state.n_done, 0);
    atomic_init(&state.n_bad, 0);
    request.op = RKV_CLIENT_GET;
    request.key = "k000";
    request.key_len = 4;
    ASSERT_OK(
        rkv_client_submit(f.client, &request, async_starter_done_cb, &state));

    deadline_ms = rkv_monotonic_ms() + 20000;
    while (atomic_load(&state.n_done) < 101 &&
           rkv_monotonic_ms() < deadline_ms) {
        usleep(1000);
    }
    ASSERT_INT_EQ(atomic_load(&state.n_done), 101);
    ASSERT_INT_EQ(atomic_load(&state.n_bad), 0);
    ASSERT_UINT_GT(
        script_server_stats(f.cluster->nodes[0].server).max_frames_per_read, 1);
    teardown(&f);
}

struct close_state {
    atomic_int n_done;
    int rvs[2];
};

static void close_done_cb(void *data, struct rkv_client_result *result)
{
    struct close_state *state = data;
    int index = atomic_fetch_add(&state->n_done, 1);

    state->rvs[index] = result->rv;
    rkv_client_result_free(result);
}

/* Close completes a pending read with RKV_ESHUTDOWN and a sent write with
 * RKV_EUNKNOWN; submits after close would be refused. */
TEST(client, close_fails_pending)
{
    struct fixture f;
    struct close_state state;
    struct rkv_client_request get = {0};
    struct rkv_client_request put = {0};

    setup(&f, 1);
    ASSERT_OK(put_str(&f, "k", "v"));
    fake_lock(f.cluster);
    f.cluster->hold_all = true;
    fake_unlock(f.cluster);
    atomic_init(&state.n_done, 0);
    get.op = RKV_CLIENT_GET;
    get.key = "k";
    get.key_len = 1;
    ASSERT_OK(rkv_client_submit(f.client, &get, close_done_cb, &state));
    /* Let the get reach the node before the put, so the order is known. */
    while (script_server_stats(f.cluster->nodes[0].server).n_requests < 3) {
        usleep(1000);
    }
    put.op = RKV_CLIENT_PUT;
    put.key = "k";
    put.key_len = 1;
    put.value = "w";
    put.value_len = 1;
    ASSERT_OK(rkv_client_submit(f.client, &put, close_done_cb, &state));
    while (script_server_stats(f.cluster->nodes[0].server).n_requests < 4) {
        usleep(1000);
    }
    rkv_client_close(f.client);
    ASSERT_INT_EQ(atomic_load(&state.n_done), 2);
    ASSERT_INT_EQ(state.rvs[0], RKV_ESHUTDOWN);
    ASSERT_INT_EQ(state.rvs[1], RKV_EUNKNOWN);
    fake_stop(f.cluster);
}

static void ignore_done_cb(void *data, struct rkv_client_result *result)
{
    (void)data;
    rkv_client_result_free(result);
}

/* Past inflight_max, submit returns RKV_EBUSY and never calls back. */
TEST(client, inflight_max_busy)
{
    struct fixture f;
    struct rkv_client_request get = {0};

    setup_with(&f, 1, 5000, 2);
    fake_lock(f.cluster);
    f.cluster->hold_all = true;
    fake_unlock(f.cluster);
    get.op = RKV_CLIENT_GET;
    get.key = "k";
    get.key_len = 1;
    ASSERT_OK(rkv_client_submit(f.client, &get, ignore_done_cb, NULL));
    ASSERT_OK(rkv_client_submit(f.client, &get, ignore_done_cb, NULL));
    ASSERT_INT_EQ(rkv_client_submit(f.client, &get, ignore_done_cb, NULL),
                  RKV_EBUSY);
    teardown(&f);
}

/* Invalid requests are rejected before anything is sent. */
TEST(client, invalid_requests)
{
    static char big_key[RKV_CLIENT_KEY_MAX + 1];
    struct fixture f;
    struct rkv_client_result result;
    struct rkv_client_request request = {0};

    setup(&f, 1);
    ASSERT_INT_EQ(put_str(&f, "", "v"), -EINVAL);
    memset(big_key, 'k', sizeof(big_key));
    ASSERT_INT_EQ(rkv_client_put(f.client, big_key, sizeof(big_key), "v", 1),
                  RKV_ETOOLARGE);
    ASSERT_OK(rkv_client_put(f.client, big_key, RKV_CLIENT_KEY_MAX, "v", 1));
    request.op = RKV_CLIENT_BATCH;
    ASSERT_INT_EQ(rkv_client_do(f.client, &request, &result), -EINVAL);
    rkv_client_result_free(&result);
    request.op = (enum rkv_client_op)42;
    ASSERT_INT_EQ(rkv_client_do(f.client, &request, &result), -EINVAL);
    rkv_client_result_free(&result);
    ASSERT_INT_EQ(rkv_client_submit(f.client, &request, NULL, NULL), -EINVAL);
    teardown(&f);
}

/* A batch inside one range applies atomically; one spanning two ranges is
 * rejected with RKV_EKEYMISMATCH before it is sent. */
TEST(client, batch_within_one_range)
{
    struct fixture f;
    struct rkv_client_result result;
    struct rkv_client_request request = {0};
    struct rkv_client_batch_op ops[3] = {
        {false, "b1", 2, "x", 1},
        {false, "b2", 2, "y", 1},
        {true, "a", 1, NULL, 0},
    };
    uint8_t *value;
    size_t value_len;

    setup(&f, 1);
    ASSERT_OK(put_str(&f, "a", "1"));
    request.op = RKV_CLIENT_BATCH;
    request.ops = ops;
    request.n_ops = 3;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    rkv_client_result_free(&result);
    ASSERT_GET(&f, "b1", "x");
    ASSERT_GET(&f, "b2", "y");
    ASSERT_INT_EQ(rkv_client_get(f.client, "a", 1, &value, &value_len),
                  RKV_ENOTFOUND);

    ASSERT_OK(rkv_client_split(f.client, "b2", 2));
    ASSERT_INT_EQ(rkv_client_do(f.client, &request, &result), RKV_EKEYMISMATCH);
    rkv_client_result_free(&result);
    teardown(&f);
}

/* Compare-and-swap swaps on a match and returns the current value
 * otherwise; an absent expected value means "must not exist". */
TEST(client, cas_semantics)
{
    struct fixture f;
    struct rkv_client_result result;
    struct rkv_client_request request = {0};

    setup(&f, 1);
    request.op = RKV_CLIENT_CAS;
    request.key = "c";
    request.key_len = 1;
    request.value = "1";
    request.value_len = 1;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_TRUE(result.found);
    rkv_client_result_free(&result);

    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_FALSE(result.found);
    ASSERT_MEM_EQ(result.value, result.value_len, "1", 1);
    rkv_client_result_free(&result);

    request.expected = "1";
    request.expected_len = 1;
    request.value = "2";
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_TRUE(result.found);
    rkv_client_result_free(&result);
    ASSERT_GET(&f, "c", "2");
    teardown(&f);
}

/* ranges, node addresses, status and split reach the cluster. */
TEST(client, cluster_information)
{
    struct fixture f;
    struct rkv_client_range *ranges;
    size_t n_ranges;
    char **addrs;
    size_t n_addrs;
    struct rkv_client_node_status status;

    setup(&f, 3);
    ASSERT_OK(rkv_client_split(f.client, "m", 1));
    ASSERT_INT_EQ(rkv_client_split(f.client, "m", 1), -EINVAL);
    ASSERT_OK(rkv_client_ranges(f.client, &ranges, &n_ranges));
    ASSERT_UINT_EQ(n_ranges, 2);
    ASSERT_UINT_EQ(ranges[0].start_key_len, 0);
    ASSERT_MEM_EQ(ranges[0].end_key, ranges[0].end_key_len, "m", 1);
    ASSERT_MEM_EQ(ranges[1].start_key, ranges[1].start_key_len, "m", 1);
    ASSERT_UINT_EQ(ranges[1].end_key_len, 0);
    ASSERT_UINT_EQ(ranges[1].n_replicas, 3);
    ASSERT_UINT_EQ(ranges[1].leader_node_id, 1);
    rkv_client_ranges_free(ranges, n_ranges);

    ASSERT_OK(rkv_client_node_addrs(f.client, &addrs, &n_addrs));
    ASSERT_UINT_EQ(n_addrs, 3);
    ASSERT_STR_EQ(addrs[2], fake_addr(f.cluster, 2));
    ASSERT_OK(rkv_client_node_status(f.client, addrs[2], &status));
    ASSERT_UINT_EQ(status.node_id, 3);
    ASSERT_UINT_EQ(status.cluster_id, 7);
    ASSERT_UINT_EQ(status.n_ranges, 2);
    rkv_client_strings_free(addrs, n_addrs);
    teardown(&f);
}

/* Blocking calls from several threads at once all complete. */
struct thread_arg {
    struct fixture *f;
    int index;
    int rv;
};

static void *put_thread_main(void *data)
{
    struct thread_arg *arg = data;

    arg->rv = 0;
    for (int i = 0; i < 50 && arg->rv == 0; i++) {
        char key[16];
        snprintf(key, sizeof(key), "t%d-%02d", arg->index, i);
        arg->rv = put_str(arg->f, key, key);
    }
    return NULL;
}

TEST(client, blocking_from_many_threads)
{
    struct fixture f;
    pthread_t threads[8];
    struct thread_arg args[8];
    struct rkv_client_request request = {0};
    struct rkv_client_result result;

    setup(&f, 1);
    for (int i = 0; i < 8; i++) {
        args[i].f = &f;
        args[i].index = i;
        ASSERT_INT_EQ(
            pthread_create(&threads[i], NULL, put_thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        ASSERT_OK(args[i].rv);
    }
    request.op = RKV_CLIENT_SCAN;
    request.key = "t";
    request.key_len = 1;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_UINT_EQ(result.n_pairs, 400);
    rkv_client_result_free(&result);
    teardown(&f);
}

/* Open fails cleanly, without leaks, when any allocation fails. */
TEST(client, open_allocation_failures)
{
    struct rkv_client_options options = {0};
    const char *hosts[2] = {"127.0.0.1:1", "127.0.0.1:2"};
    struct rkv_client *client;
    int n_ok = 0;

    options.hosts = hosts;
    options.n_hosts = 2;
    for (long n = 0; n < 20; n++) {
        int rv;
        rkv_alloc_fail_after(n);
        rv = rkv_client_open(&options, &client);
        rkv_alloc_fail_after(-1);
        if (rv == 0) {
            n_ok++;
            rkv_client_close(client);
        } else {
            ASSERT_INT_EQ(rv, -ENOMEM);
        }
    }
    ASSERT_INT_GT(n_ok, 0);
    options.n_hosts = 0;
    ASSERT_INT_EQ(rkv_client_open(&options, &client), -EINVAL);
}

/* With n_connections, requests spread over that many connections to the
 * node, each opened on first use. */
TEST(client, connections_per_node)
{
    struct rkv_client_options options = {0};
    struct fake_cluster *cluster = fake_start(1);
    const char *hosts[1] = {fake_addr(cluster, 0)};
    struct rkv_client *client;

    options.hosts = hosts;
    options.n_hosts = 1;
    options.n_connections = 3;
    ASSERT_OK(rkv_client_open(&options, &client));
    for (int i = 0; i < 12; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i);
        ASSERT_OK(rkv_client_put(client, key, strlen(key), "v", 1));
    }
    ASSERT_UINT_EQ(script_server_stats(cluster->nodes[0].server).n_accepts, 3);
    rkv_client_close(client);
    fake_stop(cluster);
}

/* Status of a node that refuses connections fails with RKV_EUNAVAILABLE
 * after a few attempts, well before the request timeout. */
TEST(client, status_of_dead_node_fails_fast)
{
    struct fixture f;
    struct fake_cluster *dead = fake_start(1);
    char addr[64];
    struct rkv_client_node_status status;

    snprintf(addr, sizeof(addr), "%s", fake_addr(dead, 0));
    fake_stop(dead);
    setup_with(&f, 1, 60000, 0);
    ASSERT_INT_EQ(rkv_client_node_status(f.client, addr, &status),
                  RKV_EUNAVAILABLE);
    ASSERT_OK(
        rkv_client_node_status(f.client, fake_addr(f.cluster, 0), &status));
    teardown(&f);
}

/* Node errors after a proposal: RKV_EDROPPED (the write can never apply)
 * is re-sent, RKV_ETIMEOUT and RKV_ESHUTDOWN make a write RKV_EUNKNOWN,
 * and a read is re-sent after any of them. */
TEST(client, node_errors_after_proposal)
{
    static const struct {
        int error;
        int put_rv;
    } cases[] = {
        {RKV_EDROPPED, 0},
        {RKV_ETIMEOUT, RKV_EUNKNOWN},
        {RKV_ESHUTDOWN, RKV_EUNKNOWN},
    };

    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        struct fixture f;
        struct rkv_client_result result;

        setup(&f, 1);
        ASSERT_OK(put_str(&f, "k", "v"));
        fake_lock(f.cluster);
        f.cluster->put_error = cases[i].error;
        f.cluster->n_put_error = 1;
        f.cluster->get_error = cases[i].error;
        f.cluster->n_get_error = 1;
        fake_unlock(f.cluster);
        ASSERT_INT_EQ(put_str(&f, "k", "w"), cases[i].put_rv);
        ASSERT_OK(do_op(&f, RKV_CLIENT_GET, "k", &result));
        ASSERT_UINT_EQ(result.n_retries, 1);
        ASSERT_MEM_EQ(result.value, result.value_len,
                      cases[i].put_rv == 0 ? "w" : "v", 1);
        rkv_client_result_free(&result);
        teardown(&f);
    }
}

/* Init through a node already in a cluster reports RKV_ESTALE at once. */
TEST(client, init_already_initialized)
{
    struct fixture f;
    uint64_t cluster_id;

    setup(&f, 1);
    fake_lock(f.cluster);
    f.cluster->init_error = RKV_ESTALE;
    fake_unlock(f.cluster);
    ASSERT_INT_EQ(
        rkv_client_init_cluster(f.client, fake_addr(f.cluster, 0), &cluster_id),
        RKV_ESTALE);
    fake_lock(f.cluster);
    f.cluster->init_error = 0;
    fake_unlock(f.cluster);
    ASSERT_OK(rkv_client_init_cluster(f.client, fake_addr(f.cluster, 0),
                                      &cluster_id));
    ASSERT_UINT_EQ(cluster_id, 7);
    teardown(&f);
}

/* Allocation failures anywhere in a request's path (submit copies, frame
 * buffers, cache installs, results) end the request with an error or
 * succeed, never crash or leak, and the client keeps working after. */
TEST(client, allocation_failures_in_requests)
{
    struct fixture f;
    uint8_t *value;
    size_t value_len;
    int n_nomem = 0;
    int n_ok = 0;

    setup_with(&f, 1, 500, 0);
    for (long n = 0; n < 40; n++) {
        struct rkv_client_request request = {0};
        struct rkv_client_result result;
        int rv;

        request.op = n % 2 == 0 ? RKV_CLIENT_PUT : RKV_CLIENT_SCAN;
        request.key = "k";
        request.key_len = 1;
        request.value = "v";
        request.value_len = 1;
        rkv_alloc_fail_after(n);
        rv = rkv_client_do(f.client, &request, &result);
        rkv_alloc_fail_after(-1);
        rkv_client_result_free(&result);
        n_nomem += rv == -ENOMEM;
        n_ok += rv == 0;
        if (rv != 0) {
            ASSERT_TRUE(rv == -ENOMEM || rv == RKV_EUNKNOWN ||
                        rv == RKV_ETIMEOUT);
        }
    }
    /* Both outcomes occurred, so the injection reached the client. */
    ASSERT_INT_GT(n_nomem, 0);
    ASSERT_INT_GT(n_ok, 0);
    ASSERT_OK(put_str(&f, "after", "ok"));
    ASSERT_OK(rkv_client_get(f.client, "after", 5, &value, &value_len));
    ASSERT_MEM_EQ(value, value_len, "ok", 2);
    free(value);
    teardown(&f);
}
