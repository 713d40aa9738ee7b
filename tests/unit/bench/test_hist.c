/* Checks the bench's log-linear latency histogram against exact
 * percentiles. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <math.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "bench/bench_internal.h"
#include "tests/lib/test.h"

struct fixture {
    struct rkv_bench_hist *hist;
};

static void setup(struct fixture *f)
{
    f->hist = malloc(sizeof(*f->hist));
    ASSERT_TRUE(f->hist != NULL);
    rkv_bench_hist_init(f->hist);
}

static void teardown(struct fixture *f)
{
    free(f->hist);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Returns the exact nearest-rank percentile of sorted values. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n,
                                 double percent)
{
    size_t rank = (size_t)ceil(percent / 100.0 * (double)n - 1e-9);

    if (rank < 1) {
        rank = 1;
    }
    return sorted[rank - 1];
}

static void assert_within_percent(uint64_t got, uint64_t want, double percent)
{
    double error = fabs((double)got - (double)want) / (double)want * 100.0;

    if (error > percent) {
        rkv_test_fail(__FILE__, __LINE__,
                      "got %llu, want %llu: error %.3f%% over %.3f%%",
                      (unsigned long long)got, (unsigned long long)want, error,
                      percent);
    }
}

/* Every value lies in its bucket, and no bucket is wider than 1/128 of its
 * lower bound. */
TEST(bench_hist, buckets_cover_values)
{
    static const uint64_t values[] = {0,    1,        255,        256,
                                      257,  511,      512,        1000,
                                      4095, 4096,     123456789,  1ULL << 39,
                                      (1ULL << 40) - 1};
    size_t previous = 0;

    for (size_t i = 0; i < RKV_ARRAY_SIZE(values); i++) {
        size_t index = rkv_bench_hist_bucket_index(values[i]);
        uint64_t low = rkv_bench_hist_bucket_low(index);
        uint64_t width = rkv_bench_hist_bucket_width(index);

        ASSERT_UINT_LT(index, RKV_BENCH_HIST_N_BUCKETS);
        ASSERT_UINT_LE(low, values[i]);
        ASSERT_UINT_LT(values[i], low + width);
        if (values[i] >= 256) {
            ASSERT_UINT_LE(width * 128, low);
        }
        ASSERT_UINT_GE(index, previous);
        previous = index;
    }
    ASSERT_UINT_EQ(rkv_bench_hist_bucket_index((1ULL << 40) - 1),
                   RKV_BENCH_HIST_N_BUCKETS - 1);
}

/* Adjacent buckets tile the value range with no gap or overlap. */
TEST(bench_hist, buckets_are_contiguous)
{
    for (size_t i = 0; i + 1 < RKV_BENCH_HIST_N_BUCKETS; i++) {
        uint64_t end = rkv_bench_hist_bucket_low(i) +
                       rkv_bench_hist_bucket_width(i);

        ASSERT_UINT_EQ(end, rkv_bench_hist_bucket_low(i + 1));
        ASSERT_UINT_EQ(rkv_bench_hist_bucket_index(end), i + 1);
        ASSERT_UINT_EQ(rkv_bench_hist_bucket_index(end - 1), i);
    }
}

/* Below 256 every value has its own bucket, so percentiles are exact. */
TEST(bench_hist, small_values_exact)
{
    struct fixture f;

    setup(&f);
    for (uint64_t v = 1; v <= 5; v++) {
        rkv_bench_hist_record(f.hist, v);
    }
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 20.0), 1);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 40.0), 2);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 50.0), 3);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 99.0), 5);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 100.0), 5);
    ASSERT_UINT_EQ(f.hist->n_values, 5);
    ASSERT_UINT_EQ(f.hist->min_value, 1);
    ASSERT_UINT_EQ(f.hist->max_value, 5);
    ASSERT_TRUE(fabs(rkv_bench_hist_mean(f.hist) - 3.0) < 1e-9);
    teardown(&f);
}

/* An empty histogram reports zeros rather than garbage. */
TEST(bench_hist, empty_reports_zero)
{
    struct fixture f;

    setup(&f);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 50.0), 0);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 100.0), 0);
    ASSERT_TRUE(rkv_bench_hist_mean(f.hist) == 0.0);
    ASSERT_UINT_EQ(f.hist->n_values, 0);
    teardown(&f);
}

/* Latencies of 1 us .. 100 ms in 1 us steps: p50 is 50 ms, p99 is 99 ms,
 * each within 1%, and the maximum is exact. */
TEST(bench_hist, uniform_latencies)
{
    static const double percents[] = {50.0, 90.0, 99.0, 99.9};
    struct fixture f;

    setup(&f);
    for (uint64_t us = 1; us <= 100000; us++) {
        rkv_bench_hist_record(f.hist, us * 1000);
    }
    for (size_t i = 0; i < RKV_ARRAY_SIZE(percents); i++) {
        uint64_t want = (uint64_t)(percents[i] * 1000.0) * 1000;

        assert_within_percent(rkv_bench_hist_percentile(f.hist, percents[i]),
                              want, 1.0);
    }
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 100.0), 100000000);
    ASSERT_UINT_EQ(f.hist->min_value, 1000);
    assert_within_percent((uint64_t)rkv_bench_hist_mean(f.hist), 50000500,
                          0.001);
    teardown(&f);
}

/* Log-uniform random values from 1 us to 10 s: every percentile is within
 * 1% of the exact nearest-rank percentile. */
TEST(bench_hist, random_within_one_percent)
{
    enum { N = 200000 };
    static const double percents[] = {1.0, 10.0, 50.0, 75.0, 90.0,
                                      99.0, 99.9, 99.99, 100.0};
    struct fixture f;
    struct rkv_bench_rng rng;
    uint64_t *values = malloc(N * sizeof(*values));

    ASSERT_TRUE(values != NULL);
    setup(&f);
    rkv_bench__rng_seed(&rng, 7);
    for (size_t i = 0; i < N; i++) {
        double exponent = 3.0 + 7.0 * rkv_bench__rng_double(&rng);

        values[i] = (uint64_t)pow(10.0, exponent);
        rkv_bench_hist_record(f.hist, values[i]);
    }
    qsort(values, N, sizeof(*values), compare_u64);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(percents); i++) {
        assert_within_percent(rkv_bench_hist_percentile(f.hist, percents[i]),
                              exact_percentile(values, N, percents[i]), 1.0);
    }
    free(values);
    teardown(&f);
}

/* Merging two histograms equals recording every value into one. */
TEST(bench_hist, merge_equals_single)
{
    struct fixture a;
    struct fixture b;
    struct fixture all;

    setup(&a);
    setup(&b);
    setup(&all);
    for (uint64_t v = 100; v < 100000; v += 37) {
        rkv_bench_hist_record(v % 2 == 0 ? a.hist : b.hist, v * 11);
        rkv_bench_hist_record(all.hist, v * 11);
    }
    rkv_bench_hist_merge(a.hist, b.hist);
    ASSERT_UINT_EQ(a.hist->n_values, all.hist->n_values);
    ASSERT_UINT_EQ(a.hist->min_value, all.hist->min_value);
    ASSERT_UINT_EQ(a.hist->max_value, all.hist->max_value);
    ASSERT_UINT_EQ(a.hist->sum, all.hist->sum);
    ASSERT_INT_EQ(memcmp(a.hist->counts, all.hist->counts,
                         sizeof(a.hist->counts)),
                  0);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(a.hist, 99.0),
                   rkv_bench_hist_percentile(all.hist, 99.0));
    teardown(&a);
    teardown(&b);
    teardown(&all);
}

/* Merging an empty histogram changes nothing, not even the minimum. */
TEST(bench_hist, merge_empty_is_noop)
{
    struct fixture a;
    struct fixture empty;

    setup(&a);
    setup(&empty);
    rkv_bench_hist_record(a.hist, 5000);
    rkv_bench_hist_merge(a.hist, empty.hist);
    ASSERT_UINT_EQ(a.hist->n_values, 1);
    ASSERT_UINT_EQ(a.hist->min_value, 5000);
    rkv_bench_hist_merge(empty.hist, a.hist);
    ASSERT_UINT_EQ(empty.hist->min_value, 5000);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(empty.hist, 50.0), 5000);
    teardown(&a);
    teardown(&empty);
}

/* Values past 2^40 are counted in the last bucket and flagged, and the
 * maximum stays exact. */
TEST(bench_hist, huge_values_clamp)
{
    struct fixture f;
    uint64_t huge = 1ULL << 45;

    setup(&f);
    rkv_bench_hist_record(f.hist, 10);
    rkv_bench_hist_record(f.hist, huge);
    ASSERT_UINT_EQ(f.hist->n_clamped, 1);
    ASSERT_UINT_EQ(f.hist->counts[RKV_BENCH_HIST_N_BUCKETS - 1], 1);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 100.0), huge);
    ASSERT_UINT_EQ(rkv_bench_hist_percentile(f.hist, 50.0), 10);
    teardown(&f);
}
