/*
 * Random numbers, key distributions and key names for the bench.
 *
 * Invariants:
 *  1. A generator seeded with the same value returns the same sequence, so a
 *     run's keys repeat with --seed.
 *  2. Every rank a zipfian generator returns is below its n_items.
 */
#include "bench/bench_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

#define FNV_OFFSET_BASIS_64 0xcbf29ce484222325ULL
#define FNV_PRIME_64 1099511628211ULL

static uint64_t splitmix64_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rkv_bench__rng_seed(struct rkv_bench_rng *rng, uint64_t seed)
{
    uint64_t x = seed;

    for (int i = 0; i < 4; i++) {
        rng->state[i] = splitmix64_next(&x);
    }
}

uint64_t rkv_bench__rng_next(struct rkv_bench_rng *rng)
{
    uint64_t *s = rng->state;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double rkv_bench__rng_double(struct rkv_bench_rng *rng)
{
    /* The top 53 bits fill a double's mantissa exactly. */
    return (double)(rkv_bench__rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t rkv_bench__rng_below(struct rkv_bench_rng *rng, uint64_t bound)
{
    uint64_t threshold;
    uint64_t x;

    assert(bound > 0);

    /* Reject the few values that would make the modulo uneven. */
    threshold = (0 - bound) % bound;
    do {
        x = rkv_bench__rng_next(rng);
    } while (x < threshold);
    return x % bound;
}

uint64_t rkv_bench__fnv64(uint64_t value)
{
    uint64_t hash = FNV_OFFSET_BASIS_64;

    for (int i = 0; i < 8; i++) {
        hash ^= value & 0xff;
        hash *= FNV_PRIME_64;
        value >>= 8;
    }
    return hash;
}

static double zeta_add(double zeta, uint64_t from, uint64_t to, double theta)
{
    for (uint64_t i = from + 1; i <= to; i++) {
        zeta += 1.0 / pow((double)i, theta);
    }
    return zeta;
}

static void zipf_update_eta(struct rkv_bench_zipf *z)
{
    z->eta = (1.0 - pow(2.0 / (double)z->n_items, 1.0 - z->theta)) /
             (1.0 - z->zeta_2 / z->zeta_n);
}

void rkv_bench__zipf_init(struct rkv_bench_zipf *z, uint64_t n_items,
                          double theta)
{
    assert(n_items >= 1);
    assert(theta > 0.0);
    assert(theta < 1.0);

    z->n_items = n_items;
    z->theta = theta;
    z->alpha = 1.0 / (1.0 - theta);
    z->zeta_2 = zeta_add(0.0, 0, 2, theta);
    z->zeta_n = zeta_add(0.0, 0, n_items, theta);
    zipf_update_eta(z);
}

void rkv_bench__zipf_grow(struct rkv_bench_zipf *z, uint64_t n_items)
{
    assert(n_items >= z->n_items);

    if (n_items == z->n_items) {
        return;
    }
    z->zeta_n = zeta_add(z->zeta_n, z->n_items, n_items, z->theta);
    z->n_items = n_items;
    zipf_update_eta(z);
}

uint64_t rkv_bench__zipf_next(const struct rkv_bench_zipf *z,
                              struct rkv_bench_rng *rng)
{
    double u = rkv_bench__rng_double(rng);
    double uz = u * z->zeta_n;
    uint64_t rank;

    /* Ranks 0 and 1 take their exact shares; the rest follow Gray's
     * closed-form approximation of the inverse distribution. */
    if (uz < 1.0) {
        return 0;
    }
    if (uz < 1.0 + pow(0.5, z->theta)) {
        return RKV_MIN(1, z->n_items - 1);
    }
    rank = (uint64_t)((double)z->n_items *
                      pow(z->eta * u - z->eta + 1.0, z->alpha));
    return RKV_MIN(rank, z->n_items - 1);
}

uint64_t rkv_bench__zipf_next_scrambled(const struct rkv_bench_zipf *z,
                                        struct rkv_bench_rng *rng)
{
    return rkv_bench__fnv64(rkv_bench__zipf_next(z, rng)) % z->n_items;
}

size_t rkv_bench__key_kv(uint64_t index, uint32_t key_size, char *buf)
{
    char digits[RKV_BENCH_KEY_BUF + 32];
    int n;

    assert(key_size >= 1);
    assert(key_size < RKV_BENCH_KEY_BUF);

    n = snprintf(digits, sizeof(digits), "%0*" PRIu64, (int)key_size, index);
    assert(n >= (int)key_size);
    memcpy(buf, digits + (n - (int)key_size), key_size);
    buf[key_size] = '\0';
    return key_size;
}

size_t rkv_bench__key_ycsb(uint64_t index, char *buf)
{
    int n = snprintf(buf, RKV_BENCH_KEY_BUF, "user%" PRIu64,
                     rkv_bench__fnv64(index));

    assert(n > 0);
    return (size_t)n;
}

const char *rkv_bench__dist_name(enum rkv_bench_dist dist)
{
    switch (dist) {
    case RKV_BENCH_DIST_UNIFORM:
        return "uniform";
    case RKV_BENCH_DIST_ZIPFIAN:
        return "zipfian";
    case RKV_BENCH_DIST_SEQUENTIAL:
        return "sequential";
    case RKV_BENCH_DIST_LATEST:
        return "latest";
    }
    return "unknown";
}
