/*
 * Runs the bench against a real 3-node cluster of `rangekv` processes on
 * 127.0.0.1 (started with `rangekv cluster start`, OS-chosen ports, a low
 * split threshold so that ranges split during the runs) and checks the
 * operation accounting of every workload.
 *
 * The binary is $RKV_BUILD_DIR/cmd/rangekv; ctest sets RKV_BUILD_DIR.
 */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "tests/lib/test.h"

#define CLUSTER_NODES 3
#define CLUSTER_SPLIT_BYTES "65536"
#define CLUSTER_ADDR_MAX 64

struct fixture {
    char rangekv[4096];   /* path of the binary */
    char dir[4096];       /* the cluster's folder */
    char hosts_buf[CLUSTER_NODES][CLUSTER_ADDR_MAX];
    const char *hosts[CLUSTER_NODES];
    size_t n_hosts;
    pid_t watchdog;       /* stops the cluster if this test dies */
    struct rkv_bench_report *report;
};

/* Runs `rangekv cluster stop --dir DIR`, quietly. */
static void cluster_stop(const char *rangekv, const char *dir)
{
    char command[8400];

    snprintf(command, sizeof(command),
             "'%s' cluster stop --dir '%s' >/dev/null 2>&1", rangekv, dir);
    if (system(command) != 0) {
        fprintf(stderr, "cluster stop --dir %s failed\n", dir);
    }
}

/* Forks a process that stops the cluster once this test process exits,
 * because a failed assertion ends the test with _exit() and skips the
 * teardown. */
static pid_t start_watchdog(const char *rangekv, const char *dir)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0) {
        return pid;
    }
    /* Let ctest see end of output as soon as the test exits. */
    if (freopen("/dev/null", "w", stdout) == NULL ||
        freopen("/dev/null", "w", stderr) == NULL) {
        _exit(1);
    }
    signal(SIGTERM, SIG_DFL);
    while (getppid() == parent) {
        usleep(200 * 1000);
    }
    cluster_stop(rangekv, dir);
    _exit(0);
}

/* Reads "node K client HOST:PORT peer ..." lines from `cluster start`. */
static void parse_cluster_output(struct fixture *f, FILE *out)
{
    char line[512];

    while (fgets(line, sizeof(line), out) != NULL) {
        const char *client = strstr(line, " client ");
        size_t len;

        if (strncmp(line, "node ", 5) != 0 || client == NULL ||
            f->n_hosts == CLUSTER_NODES) {
            continue;
        }
        client += strlen(" client ");
        len = strcspn(client, " \n");
        ASSERT_UINT_LT(len, CLUSTER_ADDR_MAX);
        memcpy(f->hosts_buf[f->n_hosts], client, len);
        f->hosts_buf[f->n_hosts][len] = '\0';
        f->hosts[f->n_hosts] = f->hosts_buf[f->n_hosts];
        f->n_hosts++;
    }
}

static void setup(struct fixture *f)
{
    const char *build_dir = getenv("RKV_BUILD_DIR");
    char command[8400];
    FILE *out;

    memset(f, 0, sizeof(*f));
    ASSERT_TRUE(build_dir != NULL);
    snprintf(f->rangekv, sizeof(f->rangekv), "%s/cmd/rangekv", build_dir);
    snprintf(f->dir, sizeof(f->dir), "%s/cluster", rkv_test_tmpdir());
    f->watchdog = start_watchdog(f->rangekv, f->dir);
    ASSERT_INT_GT(f->watchdog, 0);

    snprintf(command, sizeof(command),
             "'%s' cluster start -n %d --dir '%s' --split-bytes %s",
             f->rangekv, CLUSTER_NODES, f->dir, CLUSTER_SPLIT_BYTES);
    out = popen(command, "r");
    ASSERT_TRUE(out != NULL);
    parse_cluster_output(f, out);
    ASSERT_INT_EQ(pclose(out), 0);
    ASSERT_UINT_EQ(f->n_hosts, CLUSTER_NODES);
}

static void teardown(struct fixture *f)
{
    rkv_bench_report_free(f->report);
    cluster_stop(f->rangekv, f->dir);
    kill(f->watchdog, SIGKILL);
    waitpid(f->watchdog, NULL, 0);
}

/* A short, quiet run against the fixture's cluster. */
static void config_short(struct fixture *f, struct rkv_bench_config *config)
{
    rkv_bench_config_init(config);
    config->hosts = f->hosts;
    config->n_hosts = f->n_hosts;
    config->concurrency = 8;
    config->duration_ms = 1500;
    config->keyspace = 500;
    config->value_size = 200;
    config->out = NULL;
    config->progress = false;
}

static void run_bench(struct fixture *f, const struct rkv_bench_config *config)
{
    char errmsg[256] = "";
    int rv;

    rkv_bench_report_free(f->report);
    f->report = NULL;
    rv = rkv_bench_run(config, &f->report, errmsg, sizeof(errmsg));
    if (rv != 0) {
        rkv_test_fail(__FILE__, __LINE__, "rkv_bench_run: %s (%s)", errmsg,
                      rkv_errname(rv));
    }
}

/* Checks invariant 1 of bench.h for every operation type, and that the
 * types with a share in the mix ran and succeeded while the others did not
 * run at all. */
static void assert_accounting(const struct rkv_bench_report *report,
                              const uint32_t percent[RKV_BENCH_N_OPS])
{
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        const struct rkv_bench_op_stats *s = &report->ops[op];

        ASSERT_UINT_EQ(s->n_issued,
                       s->n_succeeded + s->n_failed + s->n_unknown);
        ASSERT_UINT_EQ(s->hist.n_values, s->n_succeeded);
        if (percent[op] == 0) {
            ASSERT_UINT_EQ(s->n_issued, 0);
            continue;
        }
        ASSERT_UINT_GT(s->n_succeeded, 0);
        ASSERT_UINT_EQ(s->n_failed, 0);
    }
    ASSERT_UINT_GT(report->measured_ns, 0);
}

/* A kv run with a preload: counts add up, the load wrote every key, and
 * the nodes' counters cover the writes the bench made. */
TEST(bench_cluster, kv_counts_add_up)
{
    static const uint32_t percent[RKV_BENCH_N_OPS] = {50, 50, 0, 0, 0};
    struct rkv_bench_config config;
    struct fixture f;
    uint64_t node_puts = 0;

    setup(&f);
    config_short(&f, &config);
    config.read_percent = 50;
    config.preload = true;
    run_bench(&f, &config);

    assert_accounting(f.report, percent);
    ASSERT_UINT_EQ(f.report->n_load_ops, 500);
    ASSERT_UINT_EQ(f.report->n_load_failed, 0);
    ASSERT_UINT_EQ(f.report->n_warmup_ops, 0);
    ASSERT_UINT_GE(f.report->n_ranges_end, 1);
    ASSERT_INT_EQ(f.report->nodes_end.rv, 0);
    ASSERT_UINT_EQ(f.report->nodes_end.n_nodes, CLUSTER_NODES);
    ASSERT_INT_EQ(f.report->nodes_measure.rv, 0);
    for (size_t i = 0; i < f.report->nodes_end.n_nodes; i++) {
        uint64_t end = f.report->nodes_end.nodes[i].n_puts;

        for (size_t j = 0; j < f.report->nodes_measure.n_nodes; j++) {
            if (f.report->nodes_measure.nodes[j].node_id ==
                f.report->nodes_end.nodes[i].node_id) {
                node_puts += end - f.report->nodes_measure.nodes[j].n_puts;
            }
        }
    }
    ASSERT_UINT_GE(node_puts, f.report->ops[RKV_BENCH_OP_PUT].n_succeeded);
    /* Every key was preloaded and none is deleted, so every get finds its
     * key. */
    ASSERT_UINT_EQ(f.report->ops[RKV_BENCH_OP_GET].n_not_found, 0);
    teardown(&f);
}

/* Zipfian and sequential keys, and warm-up operations that are executed
 * but not counted. */
TEST(bench_cluster, kv_distributions_and_warmup)
{
    static const enum rkv_bench_dist dists[] = {RKV_BENCH_DIST_ZIPFIAN,
                                                RKV_BENCH_DIST_SEQUENTIAL};
    static const uint32_t percent[RKV_BENCH_N_OPS] = {20, 80, 0, 0, 0};
    struct rkv_bench_config config;
    struct fixture f;

    setup(&f);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(dists); i++) {
        config_short(&f, &config);
        config.read_percent = 20;
        config.dist = dists[i];
        /* The preload opens the connections and fills the range cache, so
         * that the first operations do not outlast the warm-up. */
        config.preload = true;
        config.warmup_ms = 500;
        config.duration_ms = 2000;
        run_bench(&f, &config);
        assert_accounting(f.report, percent);
        ASSERT_UINT_GT(f.report->n_warmup_ops, 0);
    }
    teardown(&f);
}

/* An open loop issues no more than its schedule allows: rate times
 * duration, plus one operation per client for rounding. */
TEST(bench_cluster, kv_open_loop)
{
    static const uint32_t percent[RKV_BENCH_N_OPS] = {0, 100, 0, 0, 0};
    struct rkv_bench_config config;
    struct fixture f;
    const struct rkv_bench_op_stats *puts;

    setup(&f);
    config_short(&f, &config);
    config.concurrency = 4;
    config.rate = 100.0;
    config.duration_ms = 2000;
    run_bench(&f, &config);
    puts = &f.report->ops[RKV_BENCH_OP_PUT];
    assert_accounting(f.report, percent);
    ASSERT_UINT_LE(puts->n_issued, 200 + 4);
    teardown(&f);
}

/* Every YCSB core workload runs its operation mix after loading the
 * records. */
TEST(bench_cluster, ycsb_workloads)
{
    static const struct {
        char letter;
        uint32_t percent[RKV_BENCH_N_OPS]; /* get put insert scan rmw */
    } cases[] = {
        {'a', {50, 50, 0, 0, 0}}, {'b', {95, 5, 0, 0, 0}},
        {'c', {100, 0, 0, 0, 0}}, {'d', {95, 0, 5, 0, 0}},
        {'e', {0, 0, 5, 95, 0}},  {'f', {50, 0, 0, 0, 50}},
    };
    struct rkv_bench_config config;
    struct fixture f;

    setup(&f);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(cases); i++) {
        config_short(&f, &config);
        config.workload = RKV_BENCH_WORKLOAD_YCSB;
        config.ycsb_workload = cases[i].letter;
        config.keyspace = 300;
        config.preload = true;
        config.duration_ms = 2000;
        run_bench(&f, &config);
        ASSERT_UINT_EQ(f.report->n_load_ops, 300);
        ASSERT_UINT_EQ(f.report->n_load_failed, 0);
        assert_accounting(f.report, cases[i].percent);
    }
    teardown(&f);
}

/* The command line prints the peer lines that the etcd harness parses and
 * writes the JSON file. */
TEST(bench_cluster, cli_peer_lines)
{
    struct fixture f;
    char command[12800];
    char json_path[4200];
    char line[1024];
    bool put_line = false;
    bool get_line = false;
    FILE *out;

    setup(&f);
    snprintf(json_path, sizeof(json_path), "%s/bench.json", rkv_test_tmpdir());
    snprintf(command, sizeof(command),
             "'%s' bench kv --host %s,%s --duration 1s --concurrency 4 "
             "--read-percent 50 --keyspace 200 --preload --json '%s' 2>&1",
             f.rangekv, f.hosts[0], f.hosts[1], json_path);
    out = popen(command, "r");
    ASSERT_TRUE(out != NULL);
    while (fgets(line, sizeof(line), out) != NULL) {
        double ops = 0.0;
        double p50 = 0.0;
        double p99 = 0.0;

        if (sscanf(line, "rangekv put: %lf ops/s p50=%lf ms p99=%lf ms", &ops,
                   &p50, &p99) == 3) {
            put_line = ops > 0.0 && p50 > 0.0 && p99 >= p50;
        }
        if (sscanf(line, "rangekv get: %lf ops/s p50=%lf ms p99=%lf ms", &ops,
                   &p50, &p99) == 3) {
            get_line = ops > 0.0 && p50 > 0.0 && p99 >= p50;
        }
    }
    ASSERT_INT_EQ(pclose(out), 0);
    ASSERT_TRUE(put_line);
    ASSERT_TRUE(get_line);
    out = fopen(json_path, "r");
    ASSERT_TRUE(out != NULL);
    ASSERT_TRUE(fgets(line, sizeof(line), out) != NULL);
    fclose(out);
    ASSERT_TRUE(strstr(line, "\"workload\":\"kv\"") != NULL);
    teardown(&f);
}

/* A bad option is a usage error with exit status 2. */
TEST(bench_cluster, cli_usage_error)
{
    const char *build_dir = getenv("RKV_BUILD_DIR");
    char command[4200];
    int status;

    ASSERT_TRUE(build_dir != NULL);
    snprintf(command, sizeof(command),
             "'%s/cmd/rangekv' bench kv --read-percent 101 >/dev/null 2>&1",
             build_dir);
    status = system(command);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_INT_EQ(WEXITSTATUS(status), 2);
    snprintf(command, sizeof(command),
             "'%s/cmd/rangekv' bench ycsb --workload g >/dev/null 2>&1",
             build_dir);
    status = system(command);
    ASSERT_INT_EQ(WEXITSTATUS(status), 2);
}
