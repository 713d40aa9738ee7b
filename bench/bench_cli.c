/*
 * The `rangekv bench` subcommand: parses the command line into a
 * struct rkv_bench_config, runs the benchmark and prints its report.
 *
 *   rangekv bench kv --host ADDR --duration 30s --read-percent 95
 *   rangekv bench ycsb --workload a --host ADDR
 *
 * Exit status: 0 when at least one operation succeeded, 1 when the run
 * failed or nothing succeeded, 2 for a usage error.
 */
#define RKV_LOG_SUBSYS "bench"
#include "bench/bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_internal.h"
#include "common/common.h"

#define BENCH_DEFAULT_HOST "127.0.0.1:26257"
/* Most --host addresses accepted, counting each comma-separated one. */
#define BENCH_HOSTS_MAX 64
/* Records a YCSB run loads when --record-count is not given. */
#define BENCH_YCSB_RECORDS_DEFAULT 10000

static const char bench_usage[] =
    "usage: rangekv bench kv [OPTIONS]\n"
    "       rangekv bench ycsb --workload a|b|c|d|e|f [OPTIONS]\n"
    "\n"
    "Runs a workload against a cluster and prints one progress line per\n"
    "second, then per operation type: ops/s, latency percentiles, and\n"
    "succeeded, failed and unknown counts, followed by the nodes' counters.\n"
    "\n"
    "connection:\n"
    "  --host HOST:PORT[,...]   client address of any node (repeatable;\n"
    "                           default $RANGEKV_HOST or " BENCH_DEFAULT_HOST
    ")\n"
    "  --concurrency N          logical clients, one operation in flight\n"
    "                           each (default 64)\n"
    "  --client-threads N       client library instances, each with its own\n"
    "                           loop thread (default 1)\n"
    "  --connections N          TCP connections per node, per instance\n"
    "                           (default 1)\n"
    "  --timeout DURATION       per request, retries included (default 10s)\n"
    "\n"
    "timing (DURATION is a number with ms, s, m or h; bare means s):\n"
    "  --duration DURATION      measured time (default 30s)\n"
    "  --warmup DURATION        unmeasured time before it (default 0s)\n"
    "  --rate N                 open loop at N requests/s in total, latency\n"
    "                           from each request's intended start (default\n"
    "                           0: closed loop)\n"
    "\n"
    "kv workload:\n"
    "  --read-percent N         share of gets in percent, the rest puts\n"
    "                           (default 0)\n"
    "  --distribution D         uniform, zipfian (theta 0.99, scrambled) or\n"
    "                           sequential (default uniform)\n"
    "  --key-size BYTES         keys are decimal numbers zero-padded to this\n"
    "                           length (default 16)\n"
    "  --keyspace N             distinct keys (default 100000)\n"
    "  --preload                write every key once before the run\n"
    "\n"
    "ycsb workload (a: 50% get 50% put; b: 95/5; c: 100% get; d: 95% get\n"
    "of the latest records, 5% insert; e: 95% scan, 5% insert; f: 50% get,\n"
    "50% read-modify-write; all zipfian except d):\n"
    "  --workload a..f          the YCSB core workload (required)\n"
    "  --record-count N         records loaded before the run (default "
    "10000)\n"
    "  --skip-load              do not load them (they exist already)\n"
    "  --distribution D         replace the workload's request distribution\n"
    "                           (uniform, zipfian, sequential or latest)\n"
    "  --max-scan-length N      scans read 1 to N pairs (default 100)\n"
    "\n"
    "both:\n"
    "  --value-size BYTES       value length (default 256)\n"
    "  --consistency l|s        gets and scans: l linearizable (default) or\n"
    "                           s serializable (may be stale)\n"
    "  --seed N                 random seed (default 1)\n"
    "  --json FILE              also write the figures as JSON to FILE\n"
    "  --label NAME             first word of the summary lines \"NAME put:\n"
    "                           N ops/s ...\" (default rangekv)\n"
    "  --server-pids PID,...    measure server CPU from /proc/PID/stat of\n"
    "                           these processes instead of node status\n"
    "  --no-progress            print only the summary\n"
    "  --help                   print this help\n";

enum bench_cli_option {
    OPT_HOST = 256,
    OPT_CONCURRENCY,
    OPT_CLIENT_THREADS,
    OPT_CONNECTIONS,
    OPT_TIMEOUT,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_RATE,
    OPT_READ_PERCENT,
    OPT_DISTRIBUTION,
    OPT_KEY_SIZE,
    OPT_KEYSPACE,
    OPT_PRELOAD,
    OPT_WORKLOAD,
    OPT_RECORD_COUNT,
    OPT_SKIP_LOAD,
    OPT_MAX_SCAN_LENGTH,
    OPT_VALUE_SIZE,
    OPT_CONSISTENCY,
    OPT_SEED,
    OPT_JSON,
    OPT_LABEL,
    OPT_SERVER_PIDS,
    OPT_NO_PROGRESS,
    OPT_HELP,
};

static const struct option bench_options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"client-threads", required_argument, NULL, OPT_CLIENT_THREADS},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"rate", required_argument, NULL, OPT_RATE},
    {"read-percent", required_argument, NULL, OPT_READ_PERCENT},
    {"distribution", required_argument, NULL, OPT_DISTRIBUTION},
    {"key-size", required_argument, NULL, OPT_KEY_SIZE},
    {"keyspace", required_argument, NULL, OPT_KEYSPACE},
    {"preload", no_argument, NULL, OPT_PRELOAD},
    {"workload", required_argument, NULL, OPT_WORKLOAD},
    {"record-count", required_argument, NULL, OPT_RECORD_COUNT},
    {"skip-load", no_argument, NULL, OPT_SKIP_LOAD},
    {"max-scan-length", required_argument, NULL, OPT_MAX_SCAN_LENGTH},
    {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
    {"consistency", required_argument, NULL, OPT_CONSISTENCY},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", required_argument, NULL, OPT_JSON},
    {"label", required_argument, NULL, OPT_LABEL},
    {"server-pids", required_argument, NULL, OPT_SERVER_PIDS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parsed command line; the host strings point into hosts_buf. */
struct bench_cli {
    struct rkv_bench_config config;
    const char *hosts[BENCH_HOSTS_MAX];
    char hosts_buf[4096];  /* every --host argument, comma-split */
    size_t hosts_buf_len;
    const char *json_path; /* NULL: no JSON file */
    bool keyspace_set;     /* --keyspace or --record-count was given */
    bool skip_load;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "rangekv bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun `rangekv bench --help` for the options\n");
    return 2;
}

static bool parse_u64(const char *arg, uint64_t *out)
{
    char *end;
    unsigned long long value;

    if (arg[0] == '\0' || arg[0] == '-') {
        return false;
    }
    errno = 0;
    value = strtoull(arg, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = value;
    return true;
}

static bool parse_u32(const char *arg, uint32_t *out)
{
    uint64_t value;

    if (!parse_u64(arg, &value) || value > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)value;
    return true;
}

/* Parses "30s", "500ms", "2m", "1h" or a bare number of seconds, possibly
 * fractional ("2.5s"), into milliseconds. */
static bool parse_duration_ms(const char *arg, uint64_t *out)
{
    char *end;
    double value;
    double scale;

    errno = 0;
    value = strtod(arg, &end);
    if (errno != 0 || end == arg || !(value >= 0.0)) {
        return false;
    }
    if (strcmp(end, "ms") == 0) {
        scale = 1.0;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        scale = 1000.0;
    } else if (strcmp(end, "m") == 0) {
        scale = 60000.0;
    } else if (strcmp(end, "h") == 0) {
        scale = 3600000.0;
    } else {
        return false;
    }
    if (value * scale > 1e15) {
        return false;
    }
    *out = (uint64_t)(value * scale + 0.5);
    return true;
}

static bool parse_distribution(const char *arg, enum rkv_bench_dist *out)
{
    static const enum rkv_bench_dist dists[] = {
        RKV_BENCH_DIST_UNIFORM, RKV_BENCH_DIST_ZIPFIAN,
        RKV_BENCH_DIST_SEQUENTIAL, RKV_BENCH_DIST_LATEST};

    for (size_t i = 0; i < RKV_ARRAY_SIZE(dists); i++) {
        if (strcmp(arg, rkv_bench__dist_name(dists[i])) == 0) {
            *out = dists[i];
            return true;
        }
    }
    return false;
}

/* Appends the comma-separated addresses of arg to cli->hosts. */
static int add_hosts(struct bench_cli *cli, const char *arg)
{
    size_t len = strlen(arg);
    char *copy = cli->hosts_buf + cli->hosts_buf_len;
    char *saveptr = NULL;

    if (cli->hosts_buf_len + len + 1 > sizeof(cli->hosts_buf)) {
        return usage_error("too many --host addresses: '%s'", arg);
    }
    memcpy(copy, arg, len + 1);
    cli->hosts_buf_len += len + 1;
    for (char *host = strtok_r(copy, ",", &saveptr); host != NULL;
         host = strtok_r(NULL, ",", &saveptr)) {
        if (cli->config.n_hosts == BENCH_HOSTS_MAX) {
            return usage_error("too many --host addresses: '%s'", arg);
        }
        cli->hosts[cli->config.n_hosts++] = host;
    }
    return 0;
}

static int add_server_pids(struct bench_cli *cli, const char *arg)
{
    char copy[1024];
    char *saveptr = NULL;
    uint32_t pid;

    if (strlen(arg) >= sizeof(copy)) {
        return usage_error("invalid --server-pids '%s': too long", arg);
    }
    strcpy(copy, arg);
    for (char *item = strtok_r(copy, ",", &saveptr); item != NULL;
         item = strtok_r(NULL, ",", &saveptr)) {
        if (!parse_u32(item, &pid) || pid == 0 || pid > INT32_MAX ||
            cli->config.n_server_pids == RKV_BENCH_PIDS_MAX) {
            return usage_error("invalid --server-pids '%s': expected up to "
                               "16 process ids separated by commas",
                               arg);
        }
        cli->config.server_pids[cli->config.n_server_pids++] = (int)pid;
    }
    return 0;
}

/* Applies one option to cli; returns 0, or 2 after printing a usage error. */
static int apply_option(struct bench_cli *cli, int option, const char *arg)
{
    struct rkv_bench_config *config = &cli->config;
    uint64_t ms;
    char *end;

    switch (option) {
    case OPT_HOST:
        return add_hosts(cli, arg);
    case OPT_CONCURRENCY:
        return parse_u32(arg, &config->concurrency)
                   ? 0
                   : usage_error("invalid --concurrency '%s'", arg);
    case OPT_CLIENT_THREADS:
        return parse_u32(arg, &config->n_client_threads)
                   ? 0
                   : usage_error("invalid --client-threads '%s'", arg);
    case OPT_CONNECTIONS:
        return parse_u32(arg, &config->n_connections)
                   ? 0
                   : usage_error("invalid --connections '%s'", arg);
    case OPT_TIMEOUT:
        if (!parse_duration_ms(arg, &ms) || ms == 0 || ms > UINT32_MAX) {
            return usage_error("invalid --timeout '%s': expected a duration "
                               "such as 10s",
                               arg);
        }
        config->timeout_ms = (uint32_t)ms;
        return 0;
    case OPT_DURATION:
        return parse_duration_ms(arg, &config->duration_ms)
                   ? 0
                   : usage_error("invalid --duration '%s': expected a "
                                 "duration such as 30s",
                                 arg);
    case OPT_WARMUP:
        return parse_duration_ms(arg, &config->warmup_ms)
                   ? 0
                   : usage_error("invalid --warmup '%s': expected a "
                                 "duration such as 2s",
                                 arg);
    case OPT_RATE:
        errno = 0;
        config->rate = strtod(arg, &end);
        return errno == 0 && end != arg && *end == '\0'
                   ? 0
                   : usage_error("invalid --rate '%s': expected requests/s",
                                 arg);
    case OPT_READ_PERCENT:
        return parse_u32(arg, &config->read_percent)
                   ? 0
                   : usage_error("invalid --read-percent '%s'", arg);
    case OPT_DISTRIBUTION:
        config->dist_set = true;
        return parse_distribution(arg, &config->dist)
                   ? 0
                   : usage_error("invalid --distribution '%s': expected "
                                 "uniform, zipfian, sequential or latest",
                                 arg);
    case OPT_KEY_SIZE:
        return parse_u32(arg, &config->key_size)
                   ? 0
                   : usage_error("invalid --key-size '%s'", arg);
    case OPT_KEYSPACE:
    case OPT_RECORD_COUNT:
        cli->keyspace_set = true;
        return parse_u64(arg, &config->keyspace)
                   ? 0
                   : usage_error("invalid key count '%s'", arg);
    case OPT_PRELOAD:
        config->preload = true;
        return 0;
    case OPT_WORKLOAD:
        if (strlen(arg) != 1) {
            return usage_error("invalid --workload '%s': expected a, b, c, "
                               "d, e or f",
                               arg);
        }
        config->ycsb_workload = (char)(arg[0] | 0x20); /* lowercase */
        return 0;
    case OPT_SKIP_LOAD:
        cli->skip_load = true;
        return 0;
    case OPT_MAX_SCAN_LENGTH:
        return parse_u32(arg, &config->scan_length_max)
                   ? 0
                   : usage_error("invalid --max-scan-length '%s'", arg);
    case OPT_VALUE_SIZE:
        return parse_u32(arg, &config->value_size)
                   ? 0
                   : usage_error("invalid --value-size '%s'", arg);
    case OPT_CONSISTENCY:
        if (strcmp(arg, "l") != 0 && strcmp(arg, "s") != 0) {
            return usage_error("invalid --consistency '%s': expected l "
                               "(linearizable) or s (serializable)",
                               arg);
        }
        config->serializable = arg[0] == 's';
        return 0;
    case OPT_SEED:
        return parse_u64(arg, &config->seed)
                   ? 0
                   : usage_error("invalid --seed '%s'", arg);
    case OPT_JSON:
        cli->json_path = arg;
        return 0;
    case OPT_LABEL:
        config->label = arg;
        return 0;
    case OPT_SERVER_PIDS:
        return add_server_pids(cli, arg);
    case OPT_NO_PROGRESS:
        config->progress = false;
        return 0;
    }
    return usage_error("unknown option%s", "");
}

/* Parses argv (argv[0] "bench", argv[1] the workload) into cli. Returns 0,
 * 1 after printing --help, or 2 after a usage error. */
static int parse_args(int argc, char **argv, struct bench_cli *cli)
{
    int option;
    int rv;

    rkv_bench_config_init(&cli->config);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(bench_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 1;
    }
    if (strcmp(argv[1], "kv") == 0) {
        cli->config.workload = RKV_BENCH_WORKLOAD_KV;
    } else if (strcmp(argv[1], "ycsb") == 0) {
        cli->config.workload = RKV_BENCH_WORKLOAD_YCSB;
        cli->config.ycsb_workload = '\0';
    } else {
        return usage_error("unknown workload '%s': expected kv or ycsb",
                           argv[1]);
    }

    optind = 2;
    opterr = 1;
    while ((option = getopt_long(argc, argv, "h", bench_options, NULL)) !=
           -1) {
        if (option == OPT_HELP || option == 'h') {
            fputs(bench_usage, stdout);
            return 1;
        }
        if (option == '?') {
            return usage_error("invalid command line%s", "");
        }
        rv = apply_option(cli, option, optarg);
        if (rv != 0) {
            return rv;
        }
    }
    if (optind < argc) {
        return usage_error("unexpected argument '%s'", argv[optind]);
    }
    return 0;
}

static const char *env_host_or_default(void)
{
    const char *env_host = getenv("RANGEKV_HOST");

    return env_host != NULL && env_host[0] != '\0' ? env_host
                                                   : BENCH_DEFAULT_HOST;
}

/* Fills the defaults that depend on the workload and the environment. */
static int finish_config(struct bench_cli *cli)
{
    struct rkv_bench_config *config = &cli->config;

    if (config->n_hosts == 0) {
        int rv = add_hosts(cli, env_host_or_default());

        if (rv != 0) {
            return rv;
        }
    }
    config->hosts = cli->hosts;
    if (config->workload == RKV_BENCH_WORKLOAD_YCSB) {
        if (config->ycsb_workload == '\0') {
            return usage_error("missing --workload%s: expected a, b, c, d, e "
                               "or f",
                               "");
        }
        if (!cli->keyspace_set) {
            config->keyspace = BENCH_YCSB_RECORDS_DEFAULT;
        }
        config->preload = !cli->skip_load;
    }
    return 0;
}

static void print_config(const struct rkv_bench_config *config, FILE *out)
{
    fprintf(out, "bench %s", config->workload == RKV_BENCH_WORKLOAD_YCSB
                                  ? "ycsb"
                                  : "kv");
    if (config->workload == RKV_BENCH_WORKLOAD_YCSB) {
        fprintf(out, " workload=%c records=%" PRIu64, config->ycsb_workload,
                config->keyspace);
    } else {
        fprintf(out, " read_percent=%" PRIu32 " distribution=%s keyspace=%" PRIu64
                     " key_size=%" PRIu32,
                config->read_percent, rkv_bench__dist_name(config->dist),
                config->keyspace, config->key_size);
    }
    fprintf(out,
            " value_size=%" PRIu32 " concurrency=%" PRIu32
            " client_threads=%" PRIu32 " connections=%" PRIu32
            " duration=%.1fs warmup=%.1fs host=%s",
            config->value_size, config->concurrency,
            config->n_client_threads, config->n_connections,
            (double)config->duration_ms / 1000.0,
            (double)config->warmup_ms / 1000.0, config->hosts[0]);
    if (config->rate > 0.0) {
        fprintf(out, " rate=%.1f/s (open loop)\n", config->rate);
    } else {
        fprintf(out, " (closed loop)\n");
    }
}

static uint64_t report_succeeded(const struct rkv_bench_report *report)
{
    uint64_t total = 0;

    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        total += report->ops[op].n_succeeded;
    }
    return total;
}

static int bench_main(int argc, char **argv)
{
    struct bench_cli *cli;
    struct rkv_bench_report *report = NULL;
    char errmsg[256] = "";
    int status;
    int rv;

    /* The parsed command line contains 4 KiB of host names: heap, not
     * stack. */
    cli = rkv_calloc(1, sizeof(*cli));
    if (cli == NULL) {
        fprintf(stderr, "rangekv bench: out of memory\n");
        return 1;
    }
    status = parse_args(argc, argv, cli);
    if (status == 0) {
        status = finish_config(cli);
    }
    if (status != 0) {
        rkv_free(cli);
        return status == 1 ? 0 : status;
    }
    cli->config.out = stdout;
    rv = rkv_bench_config_check(&cli->config, errmsg, sizeof(errmsg));
    if (rv != 0) {
        rkv_free(cli);
        return usage_error("%s", errmsg);
    }

    print_config(&cli->config, stdout);
    rv = rkv_bench_run(&cli->config, &report, errmsg, sizeof(errmsg));
    if (rv != 0) {
        fprintf(stderr, "rangekv bench: %s (%s)\n",
                errmsg[0] != '\0' ? errmsg : "the run failed",
                rkv_strerror(rv));
        rkv_free(cli);
        return 1;
    }
    rkv_bench_report_print(report, stdout);
    status = 0;
    if (cli->json_path != NULL) {
        rv = rkv_bench_report_write_json(report, cli->json_path);
        if (rv != 0) {
            fprintf(stderr, "rangekv bench: writing %s failed: %s\n",
                    cli->json_path, rkv_strerror(rv));
            status = 1;
        }
    }
    if (report_succeeded(report) == 0) {
        fprintf(stderr, "rangekv bench: no operation succeeded; check "
                        "--host and that the cluster is running\n");
        status = 1;
    }
    rkv_bench_report_free(report);
    rkv_free(cli);
    return status;
}

const struct rkv_cli_command rkv_bench_cli_commands[] = {
    {"bench", "run a kv or YCSB workload and report throughput and latency",
     bench_main},
    {NULL, NULL, NULL},
};
