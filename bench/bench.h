/*
 * The bench client behind `rangekv bench`: workloads, latency histograms and
 * reports, driven through the asynchronous client library.
 *
 * A run has up to two phases:
 *   load     (kv --preload, ycsb unless --skip-load) writes every key of the
 *            keyspace once, unmeasured;
 *   run      issues the workload's operation mix for warm-up plus duration.
 * Operations started during warm-up are executed but not recorded. An
 * operation is recorded when its start time (closed loop) or intended start
 * time (open loop) falls inside the measured window. The run ends when
 * every recorded operation has completed.
 *
 * Invariants:
 *  1. Every recorded operation is exactly one of succeeded, failed or unknown
 *     (RKV_EUNKNOWN: a write whose outcome the client cannot know), so
 *     n_issued == n_succeeded + n_failed + n_unknown for every operation type.
 *  2. A logical client has at most one operation in flight (a
 *     read-modify-write is one operation made of two requests).
 *  3. Latency is counted from the request's send time in a closed loop and
 *     from its intended start time in an open loop (--rate), so a stall is
 *     charged to every request it delayed (coordinated omission corrected).
 *
 * Threads: rkv_bench_run() runs on the caller's thread, which prints the
 * progress lines; completions run on the client libraries' loop threads.
 */
#ifndef RKV_BENCH_H
#define RKV_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- latency histogram -------------------------------------------------- */

/*
 * A log-linear histogram of non-negative integers (nanoseconds here), in the
 * manner of HdrHistogram. Each value below 256 has its own bucket. Above
 * 256, every power of two is cut into 128 equal buckets, so a bucket is at
 * most 1/128 of its lower bound wide. A percentile reports its bucket's midpoint, clamped to
 * the exact minimum and maximum, so its relative error is below 0.4%.
 * Values of 2^40 (about 18 minutes in ns) and above land in the last bucket
 * and are counted in n_clamped.
 */
#define RKV_BENCH_HIST_SUB_BITS 7                          /* 128 per octave */
#define RKV_BENCH_HIST_EXACT_MAX 256                       /* exact below */
#define RKV_BENCH_HIST_EXP_MAX 40                          /* 2^40 clamps */
#define RKV_BENCH_HIST_N_BUCKETS                                               \
    (RKV_BENCH_HIST_EXACT_MAX +                                                \
     (RKV_BENCH_HIST_EXP_MAX - 8) * (1 << RKV_BENCH_HIST_SUB_BITS))

struct rkv_bench_hist {
    uint64_t counts[RKV_BENCH_HIST_N_BUCKETS]; /* values per bucket */
    uint64_t n_values;                         /* values recorded */
    uint64_t n_clamped;                        /* values >= 2^40 */
    uint64_t min_value;                        /* exact; UINT64_MAX if empty */
    uint64_t max_value;                        /* exact; 0 if empty */
    uint64_t sum;                              /* for the mean; wraps past
                                                  2^64 (584 years of ns) */
};

/* Empties h. */
void rkv_bench_hist_init(struct rkv_bench_hist *h);

/* Adds one value to h. */
void rkv_bench_hist_record(struct rkv_bench_hist *h, uint64_t value);

/* Adds every value of src to dst; src is only read. */
void rkv_bench_hist_merge(struct rkv_bench_hist *dst,
                          const struct rkv_bench_hist *src);

/* Returns the value at percentile percent (0 < percent <= 100) by nearest
 * rank: the smallest recorded value such that at least percent% of the
 * values are at or below it, up to the bucket error. Returns 0 when h is
 * empty. */
uint64_t rkv_bench_hist_percentile(const struct rkv_bench_hist *h,
                                   double percent);

/* Returns the arithmetic mean, or 0 when h is empty. */
double rkv_bench_hist_mean(const struct rkv_bench_hist *h);

/* Returns the bucket index of value; exposed for tests. */
size_t rkv_bench_hist_bucket_index(uint64_t value);

/* Returns the smallest value that falls in bucket index. */
uint64_t rkv_bench_hist_bucket_low(size_t index);

/* Returns the number of values that fall in bucket index (1 below 256). */
uint64_t rkv_bench_hist_bucket_width(size_t index);

/* ---- configuration ------------------------------------------------------ */

/* Operation types, each with its own counters and histogram. YCSB's read is
 * RKV_BENCH_OP_GET and its update RKV_BENCH_OP_PUT. */
enum rkv_bench_op {
    RKV_BENCH_OP_GET = 0, /* a point read */
    RKV_BENCH_OP_PUT,     /* a write of an existing or random key */
    RKV_BENCH_OP_INSERT,  /* a write of a new key past the keyspace */
    RKV_BENCH_OP_SCAN,    /* a short scan from a key */
    RKV_BENCH_OP_RMW,     /* a get then a put of the same key */
    RKV_BENCH_N_OPS,
};

enum rkv_bench_dist {
    RKV_BENCH_DIST_UNIFORM = 0, /* every key equally likely */
    RKV_BENCH_DIST_ZIPFIAN,     /* theta 0.99, scrambled over the keyspace */
    RKV_BENCH_DIST_SEQUENTIAL,  /* one shared counter, wrapping */
    RKV_BENCH_DIST_LATEST,      /* zipfian, most recent insert first */
};

enum rkv_bench_workload {
    RKV_BENCH_WORKLOAD_KV = 0, /* get/put mix with --read-percent */
    RKV_BENCH_WORKLOAD_YCSB,   /* YCSB core workloads A to F */
};

/* The largest --concurrency, --client-threads and --connections accepted. */
#define RKV_BENCH_CONCURRENCY_MAX 4096
#define RKV_BENCH_CLIENT_THREADS_MAX 64
#define RKV_BENCH_CONNECTIONS_MAX 64
/* Maximum number of --server-pids processes. */
#define RKV_BENCH_PIDS_MAX 16
/* Maximum --max-scan-length, in pairs. */
#define RKV_BENCH_SCAN_LENGTH_MAX 1000

struct rkv_bench_config {
    const char *const *hosts; /* "host:port" client addresses, borrowed */
    size_t n_hosts;           /* at least 1 */

    enum rkv_bench_workload workload;
    char ycsb_workload;         /* 'a' .. 'f' for RKV_BENCH_WORKLOAD_YCSB */
    uint32_t read_percent;      /* kv: 0 .. 100 */
    enum rkv_bench_dist dist;   /* kv; ycsb: overrides the request dist */
    bool dist_set;              /* ycsb: dist was given on the command line */
    uint32_t key_size;          /* kv: bytes, 1 .. RKV_CLIENT_KEY_MAX */
    uint32_t value_size;        /* bytes */
    uint64_t keyspace;          /* kv: keys; ycsb: records loaded */
    bool preload;               /* write every key once before the run */
    uint32_t scan_length_max;   /* ycsb e: scans are 1 .. this long */
    bool serializable;          /* reads skip ReadIndex */

    uint32_t concurrency;      /* logical clients, one operation in flight
                                  each */
    uint32_t n_client_threads; /* client library instances, each with its
                                  own loop thread; clients are spread over
                                  them round-robin */
    uint32_t n_connections;    /* TCP connections per node, per instance */
    uint64_t duration_ms;   /* measured window */
    uint64_t warmup_ms;     /* unmeasured time before it */
    double rate;            /* open loop: requests/s in total; 0: closed */
    uint32_t timeout_ms;    /* per request, retries included; 0: 10000 */
    uint64_t seed;          /* PRNG seed; the same seed, the same keys */

    FILE *out;              /* progress and summary; NULL: no output */
    bool progress;          /* print one line per second */
    const char *label;      /* prefix of the peer lines; NULL: "rangekv" */
    int server_pids[RKV_BENCH_PIDS_MAX]; /* read CPU from /proc when set */
    size_t n_server_pids;
};

/* Fills config with the documented defaults (see `rangekv bench --help`). */
void rkv_bench_config_init(struct rkv_bench_config *config);

/* Returns 0 when config is usable, or RKV_ECONFIG with a message naming the
 * bad setting written to errmsg (errmsg_len bytes). */
int rkv_bench_config_check(const struct rkv_bench_config *config,
                           char *errmsg, size_t errmsg_len);

/* ---- results ------------------------------------------------------------ */

/* Maximum number of distinct error codes counted per operation type; later
 * codes go into n_other_errors. */
#define RKV_BENCH_ERROR_KINDS_MAX 8

struct rkv_bench_error_count {
    int code;       /* negative error code */
    uint64_t count; /* operations that ended with it */
};

struct rkv_bench_op_stats {
    uint64_t n_issued;    /* recorded operations started */
    uint64_t n_succeeded; /* completed without error (a missing key too) */
    uint64_t n_failed;    /* completed with an error other than unknown */
    uint64_t n_unknown;   /* RKV_EUNKNOWN */
    struct rkv_bench_error_count errors[RKV_BENCH_ERROR_KINDS_MAX];
    size_t n_error_kinds;
    uint64_t n_other_errors; /* failures whose code did not fit errors[] */
    uint64_t n_not_found;    /* GET: succeeded, but the key was missing */
    struct rkv_bench_hist hist; /* latency of succeeded operations, ns */
};

/* The counters of one node, as rkv_client_node_status() reports them. */
struct rkv_bench_node_sample {
    uint64_t node_id;
    uint64_t n_ranges;
    uint64_t n_leaders;
    uint64_t n_proposals;
    uint64_t n_commits;
    uint64_t n_fsyncs;
    uint64_t n_entries_applied;
    uint64_t n_puts;
    uint64_t cpu_ms; /* user plus system */
};

#define RKV_BENCH_NODES_MAX 64

/* Node counters at one moment. */
struct rkv_bench_nodes {
    struct rkv_bench_node_sample nodes[RKV_BENCH_NODES_MAX];
    size_t n_nodes;
    int rv; /* 0, or why the counters could not be read */
};

struct rkv_bench_report {
    struct rkv_bench_config config; /* hosts and out are not owned */
    struct rkv_bench_op_stats ops[RKV_BENCH_N_OPS];
    uint64_t measured_ns;  /* measure start to the last completion */
    uint64_t total_ns;     /* load, warm-up and run */
    uint64_t n_warmup_ops; /* operations started during warm-up */
    uint64_t n_load_ops;   /* load phase writes */
    uint64_t n_load_failed;
    uint64_t n_ranges_end; /* ranges after the run, 0 when unknown */
    struct rkv_bench_nodes nodes_start;   /* before the load phase */
    struct rkv_bench_nodes nodes_measure; /* at the measure start */
    struct rkv_bench_nodes nodes_end;     /* after the last completion */
    uint64_t server_cpu_ms; /* CPU of the servers over total_ns; from
                               /proc with server_pids, else status */
    bool server_cpu_known;
};

/* Runs the benchmark that config describes and returns its figures in a new
 * report, freed by rkv_bench_report_free(). Prints progress to config->out
 * when set. Returns 0, RKV_ECONFIG for a bad config (message in errmsg), or
 * the error that stopped the run (-ENOMEM, a client open failure). Failed
 * operations do not fail the run; they are counted in the report. */
int rkv_bench_run(const struct rkv_bench_config *config,
                  struct rkv_bench_report **report_out, char *errmsg,
                  size_t errmsg_len);

void rkv_bench_report_free(struct rkv_bench_report *report);

/* Returns the display name of an operation type ("get", "put", ...). */
const char *rkv_bench_op_name(enum rkv_bench_op op);

/* Prints the summary table, the node counters and one peer line per
 * operation type that ran:
 *   rangekv put: N ops/s p50=X ms p99=Y ms p90=.. ops_per_cpu_s=N */
void rkv_bench_report_print(const struct rkv_bench_report *report, FILE *out);

/* Writes the same figures as one JSON object to path. Returns 0 or a
 * negated errno. */
int rkv_bench_report_write_json(const struct rkv_bench_report *report,
                                const char *path);

#endif /* RKV_BENCH_H */
