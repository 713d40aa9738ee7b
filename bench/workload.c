/*
 * Workload definitions: the kv mix, the YCSB core workloads A to F with the
 * operation shares and request distributions of YCSB's workload files, and
 * the bench configuration's defaults and checks.
 */
#include "bench/bench_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "rangekv/client.h"

/* One YCSB core workload: shares in percent and the request distribution. */
struct ycsb_workload {
    char letter;
    uint32_t get;
    uint32_t put;
    uint32_t insert;
    uint32_t scan;
    uint32_t rmw;
    enum rkv_bench_dist dist;
};

/* From YCSB's workloads/workload[a-f]: readproportion, updateproportion,
 * insertproportion, scanproportion, readmodifywriteproportion and
 * requestdistribution. */
static const struct ycsb_workload ycsb_workloads[] = {
    {'a', 50, 50, 0, 0, 0, RKV_BENCH_DIST_ZIPFIAN},
    {'b', 95, 5, 0, 0, 0, RKV_BENCH_DIST_ZIPFIAN},
    {'c', 100, 0, 0, 0, 0, RKV_BENCH_DIST_ZIPFIAN},
    {'d', 95, 0, 5, 0, 0, RKV_BENCH_DIST_LATEST},
    {'e', 0, 0, 5, 95, 0, RKV_BENCH_DIST_ZIPFIAN},
    {'f', 50, 0, 0, 0, 50, RKV_BENCH_DIST_ZIPFIAN},
};

int rkv_bench__mix_ycsb(char workload, struct rkv_bench_mix *mix)
{
    const struct ycsb_workload *w = NULL;

    for (size_t i = 0; i < RKV_ARRAY_SIZE(ycsb_workloads); i++) {
        if (ycsb_workloads[i].letter == workload) {
            w = &ycsb_workloads[i];
        }
    }
    if (w == NULL) {
        return RKV_ECONFIG;
    }

    memset(mix, 0, sizeof(*mix));
    mix->percent[RKV_BENCH_OP_GET] = w->get;
    mix->percent[RKV_BENCH_OP_PUT] = w->put;
    mix->percent[RKV_BENCH_OP_INSERT] = w->insert;
    mix->percent[RKV_BENCH_OP_SCAN] = w->scan;
    mix->percent[RKV_BENCH_OP_RMW] = w->rmw;
    mix->dist = w->dist;
    return 0;
}

void rkv_bench__mix_kv(uint32_t read_percent, enum rkv_bench_dist dist,
                       struct rkv_bench_mix *mix)
{
    assert(read_percent <= 100);

    memset(mix, 0, sizeof(*mix));
    mix->percent[RKV_BENCH_OP_GET] = read_percent;
    mix->percent[RKV_BENCH_OP_PUT] = 100 - read_percent;
    mix->dist = dist;
}

enum rkv_bench_op rkv_bench__mix_pick(const struct rkv_bench_mix *mix,
                                      struct rkv_bench_rng *rng)
{
    uint32_t draw = (uint32_t)rkv_bench__rng_below(rng, 100);
    uint32_t upper = 0;

    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        upper += mix->percent[op];
        if (draw < upper) {
            return (enum rkv_bench_op)op;
        }
    }
    assert(false); /* the shares add up to 100 */
    return RKV_BENCH_OP_GET;
}

const char *rkv_bench_op_name(enum rkv_bench_op op)
{
    static const char *const names[RKV_BENCH_N_OPS] = {
        "get", "put", "insert", "scan", "rmw",
    };

    assert(op < RKV_BENCH_N_OPS);
    return names[op];
}

void rkv_bench_config_init(struct rkv_bench_config *config)
{
    memset(config, 0, sizeof(*config));
    config->workload = RKV_BENCH_WORKLOAD_KV;
    config->ycsb_workload = 'a';
    config->read_percent = 0;
    config->dist = RKV_BENCH_DIST_UNIFORM;
    config->key_size = 16;
    config->value_size = 256;
    config->keyspace = 100000;
    config->scan_length_max = 100;
    config->concurrency = 64;
    config->n_client_threads = 1;
    config->n_connections = 1;
    config->duration_ms = 30000;
    config->warmup_ms = 0;
    config->timeout_ms = 10000;
    config->seed = 1;
    config->progress = true;
    config->label = "rangekv";
}

/* Returns whether keyspace distinct indexes fit in key_size decimal
 * digits, so that no two kv keys collide. */
static bool config_keys_fit(uint64_t keyspace, uint32_t key_size)
{
    uint64_t limit = 1;

    for (uint32_t i = 0; i < key_size; i++) {
        if (limit > UINT64_MAX / 10) {
            return true;
        }
        limit *= 10;
    }
    return keyspace <= limit;
}

static int config_check_workload(const struct rkv_bench_config *config,
                                 char *errmsg, size_t errmsg_len)
{
    struct rkv_bench_mix mix;

    if (config->workload == RKV_BENCH_WORKLOAD_YCSB) {
        if (rkv_bench__mix_ycsb(config->ycsb_workload, &mix) != 0) {
            snprintf(errmsg, errmsg_len,
                     "invalid --workload '%c': expected a, b, c, d, e or f",
                     config->ycsb_workload);
            return RKV_ECONFIG;
        }
        return 0;
    }
    if (config->read_percent > 100) {
        snprintf(errmsg, errmsg_len,
                 "invalid --read-percent %" PRIu32 ": expected 0 to 100",
                 config->read_percent);
        return RKV_ECONFIG;
    }
    if (config->dist == RKV_BENCH_DIST_LATEST) {
        snprintf(errmsg, errmsg_len,
                 "invalid --distribution latest for kv: it needs inserts, "
                 "use ycsb --workload d");
        return RKV_ECONFIG;
    }
    if (!config_keys_fit(config->keyspace, config->key_size)) {
        snprintf(errmsg, errmsg_len,
                 "--keyspace %" PRIu64 " does not fit in --key-size %" PRIu32
                 " decimal digits; raise --key-size",
                 config->keyspace, config->key_size);
        return RKV_ECONFIG;
    }
    return 0;
}

static int config_check_sizes(const struct rkv_bench_config *config,
                              char *errmsg, size_t errmsg_len)
{
    if (config->key_size < 1 || config->key_size > RKV_CLIENT_KEY_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid --key-size %" PRIu32 ": expected 1 to %d bytes",
                 config->key_size, RKV_CLIENT_KEY_MAX);
        return RKV_ECONFIG;
    }
    if (config->value_size > RKV_CLIENT_VALUE_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid --value-size %" PRIu32 ": the maximum is %u bytes",
                 config->value_size, RKV_CLIENT_VALUE_MAX);
        return RKV_ECONFIG;
    }
    if (config->keyspace < 1) {
        snprintf(errmsg, errmsg_len, "invalid --keyspace 0: expected 1 or more");
        return RKV_ECONFIG;
    }
    if (config->scan_length_max < 1 ||
        config->scan_length_max > RKV_BENCH_SCAN_LENGTH_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid --max-scan-length %" PRIu32 ": expected 1 to %d",
                 config->scan_length_max, RKV_BENCH_SCAN_LENGTH_MAX);
        return RKV_ECONFIG;
    }
    return 0;
}

static int config_check_load(const struct rkv_bench_config *config,
                             char *errmsg, size_t errmsg_len)
{
    if (config->n_hosts < 1) {
        snprintf(errmsg, errmsg_len, "missing --host: give a node's client "
                                     "address HOST:PORT");
        return RKV_ECONFIG;
    }
    if (config->concurrency < 1 ||
        config->concurrency > RKV_BENCH_CONCURRENCY_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid --concurrency %" PRIu32 ": expected 1 to %d",
                 config->concurrency, RKV_BENCH_CONCURRENCY_MAX);
        return RKV_ECONFIG;
    }
    if (config->n_client_threads < 1 ||
        config->n_client_threads > RKV_BENCH_CLIENT_THREADS_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid --client-threads %" PRIu32 ": expected 1 to %d",
                 config->n_client_threads, RKV_BENCH_CLIENT_THREADS_MAX);
        return RKV_ECONFIG;
    }
    if (config->n_connections < 1 ||
        config->n_connections > RKV_BENCH_CONNECTIONS_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid --connections %" PRIu32 ": expected 1 to %d",
                 config->n_connections, RKV_BENCH_CONNECTIONS_MAX);
        return RKV_ECONFIG;
    }
    if (config->duration_ms < 1) {
        snprintf(errmsg, errmsg_len, "invalid --duration 0: expected a "
                                     "positive time such as 30s");
        return RKV_ECONFIG;
    }
    if (!(config->rate >= 0.0) || isinf(config->rate)) {
        snprintf(errmsg, errmsg_len,
                 "invalid --rate %g: expected requests/s >= 0", config->rate);
        return RKV_ECONFIG;
    }
    return 0;
}

int rkv_bench_config_check(const struct rkv_bench_config *config,
                           char *errmsg, size_t errmsg_len)
{
    int rv;

    rv = config_check_load(config, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    rv = config_check_sizes(config, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    return config_check_workload(config, errmsg, errmsg_len);
}
