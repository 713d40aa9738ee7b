/*
 * Internals shared by the bench's files and its unit tests: the random
 * number generator, the key distributions and the workload mixes.
 *
 * None of these objects locks: each logical client owns its generator state,
 * and the shared parts (the zipfian constants) are read-only once built.
 */
#ifndef RKV_BENCH_INTERNAL_H
#define RKV_BENCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/bench.h"

/* ---- random numbers ----------------------------------------------------- */

/* xoshiro256** (Blackman and Vigna, 2018), seeded through splitmix64. */
struct rkv_bench_rng {
    uint64_t state[4];
};

void rkv_bench__rng_seed(struct rkv_bench_rng *rng, uint64_t seed);
uint64_t rkv_bench__rng_next(struct rkv_bench_rng *rng);
/* Returns a uniform double in [0, 1). */
double rkv_bench__rng_double(struct rkv_bench_rng *rng);
/* Returns a uniform integer in [0, bound); bound > 0. */
uint64_t rkv_bench__rng_below(struct rkv_bench_rng *rng, uint64_t bound);

/* Returns the 64-bit FNV-1a hash of value's 8 little-endian bytes, which
 * YCSB uses to scramble zipfian ranks and to name records. */
uint64_t rkv_bench__fnv64(uint64_t value);

/* ---- zipfian ------------------------------------------------------------ */

/* YCSB's zipfian constant. */
#define RKV_BENCH_ZIPF_THETA 0.99

/*
 * A zipfian generator over ranks 0 .. n_items - 1, rank 0 the most popular,
 * after Gray et al., "Quickly Generating Billion-Record Synthetic Databases"
 * (SIGMOD 1994), the method YCSB's ZipfianGenerator uses. Building one costs
 * O(n_items) to sum zeta(n); growing it costs O(added items).
 */
struct rkv_bench_zipf {
    uint64_t n_items; /* ranks drawn from [0, n_items) */
    double theta;     /* skew; 0.99 in YCSB */
    double alpha;     /* 1 / (1 - theta) */
    double zeta_n;    /* sum of 1 / i^theta for i = 1 .. n_items */
    double zeta_2;    /* the same sum for two items */
    double eta;       /* Gray's correction for ranks past 1 */
};

/* Builds z over n_items (>= 1) ranks. */
void rkv_bench__zipf_init(struct rkv_bench_zipf *z, uint64_t n_items,
                          double theta);
/* Extends z to n_items (>= its current count), adding the new terms of
 * zeta(n) instead of summing them all again. */
void rkv_bench__zipf_grow(struct rkv_bench_zipf *z, uint64_t n_items);
/* Returns a rank in [0, n_items). */
uint64_t rkv_bench__zipf_next(const struct rkv_bench_zipf *z,
                              struct rkv_bench_rng *rng);
/* Returns a rank scattered over [0, n_items) by FNV, so that popular keys
 * are not neighbours (YCSB's ScrambledZipfianGenerator). */
uint64_t rkv_bench__zipf_next_scrambled(const struct rkv_bench_zipf *z,
                                        struct rkv_bench_rng *rng);

/* ---- workload mixes ----------------------------------------------------- */

/* The share of each operation type in percent (they add up to 100) and the
 * distribution that picks keys. */
struct rkv_bench_mix {
    uint32_t percent[RKV_BENCH_N_OPS];
    enum rkv_bench_dist dist;
};

/* Fills mix for YCSB workload 'a' .. 'f'; returns RKV_ECONFIG for another
 * letter. */
int rkv_bench__mix_ycsb(char workload, struct rkv_bench_mix *mix);
/* Fills mix for the kv workload. */
void rkv_bench__mix_kv(uint32_t read_percent, enum rkv_bench_dist dist,
                       struct rkv_bench_mix *mix);
/* Draws an operation type with the mix's shares. */
enum rkv_bench_op rkv_bench__mix_pick(const struct rkv_bench_mix *mix,
                                      struct rkv_bench_rng *rng);

/* ---- keys --------------------------------------------------------------- */

/* Room for any key the bench builds, terminator included. */
#define RKV_BENCH_KEY_BUF 512

/* Writes the kv key of index: its decimal digits zero-padded to key_size
 * bytes, keeping the low digits when index has more (etcdload's keys).
 * Returns the key length, key_size. */
size_t rkv_bench__key_kv(uint64_t index, uint32_t key_size, char *buf);
/* Writes the YCSB key of record index, "user" and the decimal FNV hash of
 * index, and returns its length. */
size_t rkv_bench__key_ycsb(uint64_t index, char *buf);

/* Returns the distribution's display name ("zipfian"). */
const char *rkv_bench__dist_name(enum rkv_bench_dist dist);

#endif /* RKV_BENCH_INTERNAL_H */
