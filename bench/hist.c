/*
 * The log-linear latency histogram (see bench/bench.h for its error bound).
 *
 * Bucket layout, with S = RKV_BENCH_HIST_SUB_BITS = 7:
 *   index v               for v < 256 (one value per bucket);
 *   256 + (e - 8) * 128 + (v >> (e - 7)) - 128
 *                         for 2^e <= v < 2^(e + 1), 8 <= e < 40.
 * A bucket in octave e is 2^(e - 7) wide and starts at or above 2^e, so its
 * width is at most 1/128 of any value in it.
 */
#include "bench/bench.h"

#include <math.h>
#include <string.h>

#include "common/common.h"

#define HIST_SUB_COUNT (1u << RKV_BENCH_HIST_SUB_BITS)

static_assert(RKV_BENCH_HIST_EXACT_MAX == 2 * HIST_SUB_COUNT,
              "the exact range must end where octave 8 starts");

void rkv_bench_hist_init(struct rkv_bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_value = UINT64_MAX;
}

size_t rkv_bench_hist_bucket_index(uint64_t value)
{
    unsigned exp;
    uint64_t sub;

    if (value < RKV_BENCH_HIST_EXACT_MAX) {
        return (size_t)value;
    }
    exp = 63u - (unsigned)__builtin_clzll(value);
    if (exp >= RKV_BENCH_HIST_EXP_MAX) {
        return RKV_BENCH_HIST_N_BUCKETS - 1;
    }
    sub = (value >> (exp - RKV_BENCH_HIST_SUB_BITS)) - HIST_SUB_COUNT;
    assert(sub < HIST_SUB_COUNT);
    return RKV_BENCH_HIST_EXACT_MAX + (size_t)(exp - 8) * HIST_SUB_COUNT +
           (size_t)sub;
}

uint64_t rkv_bench_hist_bucket_low(size_t index)
{
    size_t octave_index;
    unsigned exp;
    uint64_t sub;

    assert(index < RKV_BENCH_HIST_N_BUCKETS);
    if (index < RKV_BENCH_HIST_EXACT_MAX) {
        return index;
    }
    octave_index = index - RKV_BENCH_HIST_EXACT_MAX;
    exp = 8 + (unsigned)(octave_index / HIST_SUB_COUNT);
    sub = HIST_SUB_COUNT + octave_index % HIST_SUB_COUNT;
    return sub << (exp - RKV_BENCH_HIST_SUB_BITS);
}

uint64_t rkv_bench_hist_bucket_width(size_t index)
{
    unsigned exp;

    assert(index < RKV_BENCH_HIST_N_BUCKETS);
    if (index < RKV_BENCH_HIST_EXACT_MAX) {
        return 1;
    }
    exp = 8 + (unsigned)((index - RKV_BENCH_HIST_EXACT_MAX) / HIST_SUB_COUNT);
    return (uint64_t)1 << (exp - RKV_BENCH_HIST_SUB_BITS);
}

void rkv_bench_hist_record(struct rkv_bench_hist *h, uint64_t value)
{
    size_t index = rkv_bench_hist_bucket_index(value);

    h->counts[index]++;
    h->n_values++;
    if (index == RKV_BENCH_HIST_N_BUCKETS - 1 &&
        value >= ((uint64_t)1 << RKV_BENCH_HIST_EXP_MAX)) {
        h->n_clamped++;
    }
    h->min_value = RKV_MIN(h->min_value, value);
    h->max_value = RKV_MAX(h->max_value, value);
    h->sum += value;
}

void rkv_bench_hist_merge(struct rkv_bench_hist *dst,
                          const struct rkv_bench_hist *src)
{
    if (src->n_values == 0) {
        return;
    }
    for (size_t i = 0; i < RKV_BENCH_HIST_N_BUCKETS; i++) {
        dst->counts[i] += src->counts[i];
    }
    dst->n_values += src->n_values;
    dst->n_clamped += src->n_clamped;
    dst->min_value = RKV_MIN(dst->min_value, src->min_value);
    dst->max_value = RKV_MAX(dst->max_value, src->max_value);
    dst->sum += src->sum;
}

uint64_t rkv_bench_hist_percentile(const struct rkv_bench_hist *h,
                                   double percent)
{
    uint64_t rank;
    uint64_t seen = 0;
    uint64_t mid;

    assert(percent > 0.0);
    assert(percent <= 100.0);
    if (h->n_values == 0) {
        return 0;
    }

    /* Nearest rank: the ceil(p/100 * n)-th smallest value, at least the
     * first. The epsilon keeps 99.9% of 1000 values at rank 999 despite
     * binary rounding. */
    rank = (uint64_t)ceil(percent / 100.0 * (double)h->n_values - 1e-9);
    rank = RKV_MAX(rank, 1);
    if (rank >= h->n_values) {
        return h->max_value;
    }

    for (size_t i = 0; i < RKV_BENCH_HIST_N_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            mid = rkv_bench_hist_bucket_low(i) +
                  (rkv_bench_hist_bucket_width(i) - 1) / 2;
            return RKV_MIN(RKV_MAX(mid, h->min_value), h->max_value);
        }
    }
    return h->max_value;
}

double rkv_bench_hist_mean(const struct rkv_bench_hist *h)
{
    if (h->n_values == 0) {
        return 0.0;
    }
    return (double)h->sum / (double)h->n_values;
}
