/* Checks the bench's random numbers, key distributions, workload mixes,
 * key names and configuration checks. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <math.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "bench/bench_internal.h"
#include "rangekv/client.h"
#include "tests/lib/test.h"

/* Fails unless observed, a count out of n draws, is within 5 standard
 * deviations of the binomial expectation for share p. */
static void assert_share(uint64_t observed, uint64_t n, double p)
{
    double expected = p * (double)n;
    double sigma = sqrt((double)n * p * (1.0 - p));

    if (fabs((double)observed - expected) > 5.0 * sigma + 1.0) {
        rkv_test_fail(__FILE__, __LINE__,
                      "observed %llu of %llu, expected %.1f (share %.4f)",
                      (unsigned long long)observed, (unsigned long long)n,
                      expected, p);
    }
}

/* The same seed gives the same sequence; another seed does not. */
TEST(bench_rng, seed_repeats)
{
    struct rkv_bench_rng a;
    struct rkv_bench_rng b;
    struct rkv_bench_rng c;
    bool differs = false;

    rkv_bench__rng_seed(&a, 42);
    rkv_bench__rng_seed(&b, 42);
    rkv_bench__rng_seed(&c, 43);
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rkv_bench__rng_next(&a);

        ASSERT_UINT_EQ(x, rkv_bench__rng_next(&b));
        differs = differs || x != rkv_bench__rng_next(&c);
    }
    ASSERT_TRUE(differs);
}

/* Bounded draws stay in range and hit every value about equally. */
TEST(bench_rng, below_is_uniform)
{
    enum { BOUND = 10, N = 100000 };
    struct rkv_bench_rng rng;
    uint64_t counts[BOUND] = {0};

    rkv_bench__rng_seed(&rng, 1);
    for (int i = 0; i < N; i++) {
        uint64_t x = rkv_bench__rng_below(&rng, BOUND);

        ASSERT_UINT_LT(x, BOUND);
        counts[x]++;
    }
    for (int i = 0; i < BOUND; i++) {
        assert_share(counts[i], N, 1.0 / BOUND);
    }
    for (int i = 0; i < 1000; i++) {
        double d = rkv_bench__rng_double(&rng);

        ASSERT_TRUE(d >= 0.0);
        ASSERT_TRUE(d < 1.0);
    }
    ASSERT_UINT_EQ(rkv_bench__rng_below(&rng, 1), 0);
}

/* Ranks 0 and 1 come up with their exact zipfian shares 1/zeta(n) and
 * 2^-theta/zeta(n), and every rank is below n. */
TEST(bench_zipf, head_shares)
{
    enum { N_ITEMS = 1000, N = 400000 };
    struct rkv_bench_zipf z;
    struct rkv_bench_rng rng;
    uint64_t rank0 = 0;
    uint64_t rank1 = 0;
    uint64_t top10 = 0;
    double zeta = 0.0;
    double top10_share = 0.0;

    for (int i = 1; i <= N_ITEMS; i++) {
        zeta += 1.0 / pow(i, RKV_BENCH_ZIPF_THETA);
    }
    for (int i = 1; i <= 10; i++) {
        top10_share += 1.0 / pow(i, RKV_BENCH_ZIPF_THETA) / zeta;
    }
    rkv_bench__zipf_init(&z, N_ITEMS, RKV_BENCH_ZIPF_THETA);
    ASSERT_TRUE(fabs(z.zeta_n - zeta) < 1e-9);
    rkv_bench__rng_seed(&rng, 3);
    for (int i = 0; i < N; i++) {
        uint64_t rank = rkv_bench__zipf_next(&z, &rng);

        ASSERT_UINT_LT(rank, N_ITEMS);
        rank0 += rank == 0;
        rank1 += rank == 1;
        top10 += rank < 10;
    }
    assert_share(rank0, N, 1.0 / zeta);
    assert_share(rank1, N, pow(0.5, RKV_BENCH_ZIPF_THETA) / zeta);
    /* Gray's formula approximates ranks past 1, so allow 5% here. */
    ASSERT_TRUE(fabs((double)top10 / N - top10_share) < 0.05 * top10_share);
}

/* Growing a generator gives the same constants as building it at the new
 * size, as the "latest" distribution relies on. */
TEST(bench_zipf, grow_matches_init)
{
    struct rkv_bench_zipf grown;
    struct rkv_bench_zipf built;

    rkv_bench__zipf_init(&grown, 100, RKV_BENCH_ZIPF_THETA);
    rkv_bench__zipf_grow(&grown, 100);
    rkv_bench__zipf_grow(&grown, 5000);
    rkv_bench__zipf_init(&built, 5000, RKV_BENCH_ZIPF_THETA);
    ASSERT_UINT_EQ(grown.n_items, 5000);
    ASSERT_TRUE(fabs(grown.zeta_n - built.zeta_n) < 1e-9);
    ASSERT_TRUE(fabs(grown.eta - built.eta) < 1e-12);
}

/* One and two items are edge cases of Gray's formula. */
TEST(bench_zipf, tiny_keyspaces)
{
    struct rkv_bench_zipf one;
    struct rkv_bench_zipf two;
    struct rkv_bench_rng rng;
    uint64_t ones = 0;

    rkv_bench__zipf_init(&one, 1, RKV_BENCH_ZIPF_THETA);
    rkv_bench__zipf_init(&two, 2, RKV_BENCH_ZIPF_THETA);
    rkv_bench__rng_seed(&rng, 5);
    for (int i = 0; i < 10000; i++) {
        uint64_t rank = rkv_bench__zipf_next(&two, &rng);

        ASSERT_UINT_EQ(rkv_bench__zipf_next(&one, &rng), 0);
        ASSERT_UINT_LT(rank, 2);
        ones += rank;
    }
    assert_share(ones, 10000, pow(0.5, RKV_BENCH_ZIPF_THETA) / two.zeta_n);
}

/* Scrambling keeps the skew but moves the hottest key away from index 0. */
TEST(bench_zipf, scrambled_keeps_skew)
{
    enum { N_ITEMS = 1000, N = 200000 };
    struct rkv_bench_zipf z;
    struct rkv_bench_rng rng;
    uint64_t *counts = calloc(N_ITEMS, sizeof(*counts));
    uint64_t hottest = 0;
    uint64_t hot_key = 0;

    ASSERT_TRUE(counts != NULL);
    rkv_bench__zipf_init(&z, N_ITEMS, RKV_BENCH_ZIPF_THETA);
    rkv_bench__rng_seed(&rng, 9);
    for (int i = 0; i < N; i++) {
        uint64_t key = rkv_bench__zipf_next_scrambled(&z, &rng);

        ASSERT_UINT_LT(key, N_ITEMS);
        counts[key]++;
    }
    for (uint64_t k = 0; k < N_ITEMS; k++) {
        if (counts[k] > hottest) {
            hottest = counts[k];
            hot_key = k;
        }
    }
    ASSERT_UINT_EQ(hot_key, rkv_bench__fnv64(0) % N_ITEMS);
    ASSERT_UINT_GE(hottest, (uint64_t)(0.9 * N / z.zeta_n));
    free(counts);
}

struct mix_case {
    char letter;
    uint32_t percent[RKV_BENCH_N_OPS]; /* get put insert scan rmw */
    enum rkv_bench_dist dist;
};

static const struct mix_case mix_cases[] = {
    {'a', {50, 50, 0, 0, 0}, RKV_BENCH_DIST_ZIPFIAN},
    {'b', {95, 5, 0, 0, 0}, RKV_BENCH_DIST_ZIPFIAN},
    {'c', {100, 0, 0, 0, 0}, RKV_BENCH_DIST_ZIPFIAN},
    {'d', {95, 0, 5, 0, 0}, RKV_BENCH_DIST_LATEST},
    {'e', {0, 0, 5, 95, 0}, RKV_BENCH_DIST_ZIPFIAN},
    {'f', {50, 0, 0, 0, 50}, RKV_BENCH_DIST_ZIPFIAN},
};

/* Each YCSB workload has its standard operation shares and distribution,
 * and drawing from it reproduces those shares. */
TEST(bench_mix, ycsb_shares)
{
    enum { N = 100000 };
    struct rkv_bench_rng rng;

    rkv_bench__rng_seed(&rng, 11);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(mix_cases); i++) {
        const struct mix_case *c = &mix_cases[i];
        struct rkv_bench_mix mix;
        uint64_t counts[RKV_BENCH_N_OPS] = {0};

        ASSERT_OK(rkv_bench__mix_ycsb(c->letter, &mix));
        ASSERT_INT_EQ(mix.dist, c->dist);
        for (int n = 0; n < N; n++) {
            counts[rkv_bench__mix_pick(&mix, &rng)]++;
        }
        for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
            ASSERT_UINT_EQ(mix.percent[op], c->percent[op]);
            assert_share(counts[op], N, c->percent[op] / 100.0);
        }
    }
}

/* Letters other than a to f are rejected. */
TEST(bench_mix, ycsb_unknown_letter)
{
    struct rkv_bench_mix mix;

    ASSERT_INT_EQ(rkv_bench__mix_ycsb('g', &mix), RKV_ECONFIG);
    ASSERT_INT_EQ(rkv_bench__mix_ycsb('A', &mix), RKV_ECONFIG);
}

/* The kv mix splits reads and writes by --read-percent, 0 and 100 too. */
TEST(bench_mix, kv_read_percent)
{
    static const uint32_t read_percents[] = {0, 1, 50, 95, 100};
    struct rkv_bench_rng rng;

    rkv_bench__rng_seed(&rng, 13);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(read_percents); i++) {
        struct rkv_bench_mix mix;
        uint64_t gets = 0;

        rkv_bench__mix_kv(read_percents[i], RKV_BENCH_DIST_UNIFORM, &mix);
        for (int n = 0; n < 50000; n++) {
            enum rkv_bench_op op = rkv_bench__mix_pick(&mix, &rng);

            ASSERT_TRUE(op == RKV_BENCH_OP_GET || op == RKV_BENCH_OP_PUT);
            gets += op == RKV_BENCH_OP_GET;
        }
        assert_share(gets, 50000, read_percents[i] / 100.0);
    }
}

/* kv keys are zero-padded decimals of exactly key_size bytes. */
TEST(bench_keys, kv_padding)
{
    char buf[RKV_BENCH_KEY_BUF];

    ASSERT_UINT_EQ(rkv_bench__key_kv(42, 5, buf), 5);
    ASSERT_STR_EQ(buf, "00042");
    ASSERT_UINT_EQ(rkv_bench__key_kv(123456, 3, buf), 3);
    ASSERT_STR_EQ(buf, "456");
    ASSERT_UINT_EQ(rkv_bench__key_kv(0, 1, buf), 1);
    ASSERT_STR_EQ(buf, "0");
    ASSERT_UINT_EQ(rkv_bench__key_kv(7, 16, buf), 16);
    ASSERT_STR_EQ(buf, "0000000000000007");
    ASSERT_UINT_EQ(rkv_bench__key_kv(UINT64_MAX, 20, buf), 20);
    ASSERT_STR_EQ(buf, "18446744073709551615");
    ASSERT_UINT_EQ(rkv_bench__key_kv(1, 400, buf), 400);
    ASSERT_INT_EQ(buf[398], '0');
    ASSERT_INT_EQ(buf[399], '1');
}

/* YCSB keys read "user<hash>" and differ for different records. */
TEST(bench_keys, ycsb_names)
{
    char a[RKV_BENCH_KEY_BUF];
    char b[RKV_BENCH_KEY_BUF];
    size_t len;

    len = rkv_bench__key_ycsb(0, a);
    ASSERT_UINT_EQ(len, strlen(a));
    ASSERT_TRUE(strncmp(a, "user", 4) == 0);
    for (uint64_t i = 1; i < 2000; i++) {
        rkv_bench__key_ycsb(i, b);
        ASSERT_TRUE(strcmp(a, b) != 0);
    }
    rkv_bench__key_ycsb(0, b);
    ASSERT_STR_EQ(a, b);
}

static void config_for_test(struct rkv_bench_config *config)
{
    static const char *const hosts[] = {"127.0.0.1:1"};

    rkv_bench_config_init(config);
    config->hosts = hosts;
    config->n_hosts = 1;
}

/* The defaults pass, and each out-of-range setting is rejected with a
 * message naming its option. */
TEST(bench_config, rejects_bad_settings)
{
    struct rkv_bench_config config;
    char errmsg[256];

    config_for_test(&config);
    ASSERT_OK(rkv_bench_config_check(&config, errmsg, sizeof(errmsg)));

#define CHECK_REJECTED(field, bad, option)                                     \
    do {                                                                       \
        config_for_test(&config);                                              \
        config.field = bad;                                                    \
        ASSERT_INT_EQ(rkv_bench_config_check(&config, errmsg, sizeof(errmsg)), \
                      RKV_ECONFIG);                                            \
        ASSERT_TRUE(strstr(errmsg, option) != NULL);                           \
    } while (0)

    CHECK_REJECTED(n_hosts, 0, "--host");
    CHECK_REJECTED(concurrency, 0, "--concurrency");
    CHECK_REJECTED(concurrency, RKV_BENCH_CONCURRENCY_MAX + 1, "--concurrency");
    CHECK_REJECTED(n_client_threads, 0, "--client-threads");
    CHECK_REJECTED(n_connections, 0, "--connections");
    CHECK_REJECTED(duration_ms, 0, "--duration");
    CHECK_REJECTED(rate, -1.0, "--rate");
    CHECK_REJECTED(key_size, 0, "--key-size");
    CHECK_REJECTED(key_size, RKV_CLIENT_KEY_MAX + 1, "--key-size");
    CHECK_REJECTED(keyspace, 0, "--keyspace");
    CHECK_REJECTED(read_percent, 101, "--read-percent");
    CHECK_REJECTED(dist, RKV_BENCH_DIST_LATEST, "latest");
    CHECK_REJECTED(scan_length_max, 0, "--max-scan-length");
#undef CHECK_REJECTED

    config_for_test(&config);
    config.workload = RKV_BENCH_WORKLOAD_YCSB;
    config.ycsb_workload = 'z';
    ASSERT_INT_EQ(rkv_bench_config_check(&config, errmsg, sizeof(errmsg)),
                  RKV_ECONFIG);
    ASSERT_TRUE(strstr(errmsg, "--workload") != NULL);
}

/* A keyspace that exactly fills the key's digits is accepted, and one more
 * key is rejected. */
TEST(bench_config, keyspace_boundary)
{
    struct rkv_bench_config config;
    char errmsg[256];

    config_for_test(&config);
    config.key_size = 3;
    config.keyspace = 1000;
    ASSERT_OK(rkv_bench_config_check(&config, errmsg, sizeof(errmsg)));
    config.keyspace = 1001;
    ASSERT_INT_EQ(rkv_bench_config_check(&config, errmsg, sizeof(errmsg)),
                  RKV_ECONFIG);
    ASSERT_TRUE(strstr(errmsg, "--keyspace") != NULL);
    config.key_size = 30;
    config.keyspace = UINT64_MAX;
    ASSERT_OK(rkv_bench_config_check(&config, errmsg, sizeof(errmsg)));
}
