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
 * bytes, keeping the low digits when index has more, the key format of
 * the etcd comparison's load generator.
 * Returns the key length, key_size. */
size_t rkv_bench__key_kv(uint64_t index, uint32_t key_size, char *buf);
/* Writes the YCSB key of record index, "user" and the decimal FNV hash of
 * index, and returns its length. */
size_t rkv_bench__key_ycsb(uint64_t index, char *buf);

/* Returns the distribution's display name ("zipfian"). */
const char *rkv_bench__dist_name(enum rkv_bench_dist dist);

/* ---- operation accounting ----------------------------------------------- */

enum rkv_bench__outcome {
    RKV_BENCH__SUCCEEDED = 0,
    RKV_BENCH__FAILED,
    RKV_BENCH__UNKNOWN, /* RKV_EUNKNOWN: the write may have been applied */
};

/* Returns how an operation of type op that ended with rv counts. A get of a
 * missing key (RKV_ENOTFOUND) succeeded. */
enum rkv_bench__outcome rkv_bench__classify(enum rkv_bench_op op, int rv);

void rkv_bench__stats_init(struct rkv_bench_op_stats *stats);
/* Counts one issued operation with its outcome; latency_ns goes into the
 * histogram when it succeeded, rv into the error table when it did not. */
void rkv_bench__stats_add(struct rkv_bench_op_stats *stats, int rv,
                          enum rkv_bench__outcome outcome,
                          uint64_t latency_ns);
/* Adds src's counts, errors and histogram to dst. */
void rkv_bench__stats_merge(struct rkv_bench_op_stats *dst,
                            const struct rkv_bench_op_stats *src);

/* Returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t rkv_bench__now_ns(void);

/* ---- cluster figures ----------------------------------------------------- */

struct rkv_client;

/* Reads every node's status counters into out. out->rv is the error of
 * the first node that could not be read, which is left out, or 0. */
void rkv_bench__nodes_sample(struct rkv_client *client,
                             struct rkv_bench_nodes *out);
/* Sums the CPU time of the config's server_pids from /proc; returns false
 * when one could not be read. */
bool rkv_bench__proc_cpu_total(const struct rkv_bench_config *config,
                               uint64_t *cpu_ms_out);
/* Fills report->server_cpu_ms and server_cpu_known at the end of a run:
 * from /proc when the config has server_pids (proc_start_ms read at the
 * start, proc_start_ok false if that failed), else from the status
 * counters in nodes_start and nodes_end. */
void rkv_bench__report_server_cpu(struct rkv_bench_report *report,
                                  bool proc_start_ok, uint64_t proc_start_ms);
/* Returns the cluster's range count, or -1 when it cannot be read. */
int64_t rkv_bench__count_ranges(struct rkv_client *client);

/* ---- output -------------------------------------------------------------- */

/* Figures for one progress line, over the interval since the last one. */
struct rkv_bench__progress {
    double elapsed_s;  /* since the run phase (or the load) started */
    double interval_s; /* length of the interval */
    const struct rkv_bench_op_stats *interval; /* RKV_BENCH_N_OPS entries */
    uint64_t cum_succeeded; /* measured successes so far */
    double cum_s;           /* measured seconds so far; 0 in warm-up */
    int64_t n_ranges;       /* -1 when unknown */
    const char *phase;      /* "load", "warmup" or "run" */
};

/* Prints the column header of the progress lines. */
void rkv_bench__progress_header(FILE *out);
/* Prints one progress line, in the manner of `cockroach workload`. */
void rkv_bench__progress_line(FILE *out,
                              const struct rkv_bench__progress *progress);

#endif /* RKV_BENCH_INTERNAL_H */
