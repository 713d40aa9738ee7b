/*
 * The simulation's only source of randomness: xoshiro256** seeded with
 * splitmix64, both by Blackman and Vigna (https://prng.di.unimi.it/).
 */
#include "tests/sim/sim.h"

#include <assert.h>

static uint64_t splitmix64_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rkv_sim_prng_seed(struct rkv_sim_prng *prng, uint64_t seed)
{
    uint64_t x = seed;

    for (int i = 0; i < 4; i++) {
        prng->s[i] = splitmix64_next(&x);
    }
    /* splitmix64 outputs are a bijection of distinct inputs, so the four
     * words are never all zero. */
    assert((prng->s[0] | prng->s[1] | prng->s[2] | prng->s[3]) != 0);
}

uint64_t rkv_sim_prng_next(struct rkv_sim_prng *prng)
{
    uint64_t *s = prng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rkv_sim_prng_below(struct rkv_sim_prng *prng, uint64_t bound)
{
    uint64_t limit;
    uint64_t x;

    assert(bound != 0);
    /* Rejection sampling removes the modulo bias. */
    limit = UINT64_MAX - UINT64_MAX % bound;
    do {
        x = rkv_sim_prng_next(prng);
    } while (x >= limit);
    return x % bound;
}

uint64_t rkv_sim_prng_between(struct rkv_sim_prng *prng, uint64_t low,
                              uint64_t high)
{
    assert(low <= high);
    if (high - low == UINT64_MAX) {
        return rkv_sim_prng_next(prng);
    }
    return low + rkv_sim_prng_below(prng, high - low + 1);
}

bool rkv_sim_prng_chance(struct rkv_sim_prng *prng, unsigned per_mille)
{
    return rkv_sim_prng_below(prng, 1000) < per_mille;
}
