/* Checks the bench's operation accounting and its output formats (summary,
 * peer lines, JSON) on reports built by hand, without a cluster. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "bench/bench_internal.h"
#include "tests/lib/test.h"

struct fixture {
    struct rkv_bench_report *report;
    char *output; /* what rkv_bench_report_print() wrote; owned */
    size_t output_len;
};

static void setup(struct fixture *f)
{
    static const char *const hosts[] = {"127.0.0.1:1"};

    memset(f, 0, sizeof(*f));
    f->report = calloc(1, sizeof(*f->report));
    ASSERT_TRUE(f->report != NULL);
    rkv_bench_config_init(&f->report->config);
    f->report->config.hosts = hosts;
    f->report->config.n_hosts = 1;
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        rkv_bench__stats_init(&f->report->ops[op]);
    }
}

static void teardown(struct fixture *f)
{
    free(f->report);
    free(f->output);
}

static void print_report(struct fixture *f)
{
    FILE *out = open_memstream(&f->output, &f->output_len);

    ASSERT_TRUE(out != NULL);
    rkv_bench_report_print(f->report, out);
    ASSERT_INT_EQ(fclose(out), 0);
}

/* Returns the line of f's output that starts with prefix, or NULL. */
static const char *find_line(const struct fixture *f, const char *prefix)
{
    const char *line = f->output;

    while (line != NULL && *line != '\0') {
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            return line;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return NULL;
}

/* Each result code counts as exactly one outcome, and a get of a missing
 * key is a success. */
TEST(bench_report, classify_outcomes)
{
    ASSERT_INT_EQ(rkv_bench__classify(RKV_BENCH_OP_PUT, 0),
                  RKV_BENCH__SUCCEEDED);
    ASSERT_INT_EQ(rkv_bench__classify(RKV_BENCH_OP_GET, RKV_ENOTFOUND),
                  RKV_BENCH__SUCCEEDED);
    ASSERT_INT_EQ(rkv_bench__classify(RKV_BENCH_OP_PUT, RKV_ENOTFOUND),
                  RKV_BENCH__FAILED);
    ASSERT_INT_EQ(rkv_bench__classify(RKV_BENCH_OP_PUT, RKV_EUNKNOWN),
                  RKV_BENCH__UNKNOWN);
    ASSERT_INT_EQ(rkv_bench__classify(RKV_BENCH_OP_GET, RKV_ETIMEOUT),
                  RKV_BENCH__FAILED);
    ASSERT_INT_EQ(rkv_bench__classify(RKV_BENCH_OP_SCAN, RKV_EUNAVAILABLE),
                  RKV_BENCH__FAILED);
}

/* Counts add up after any sequence of outcomes, errors are tallied by code
 * with an overflow bucket, and merging keeps both. */
TEST(bench_report, stats_add_up)
{
    struct rkv_bench_op_stats a;
    struct rkv_bench_op_stats b;

    rkv_bench__stats_init(&a);
    rkv_bench__stats_init(&b);
    for (int i = 0; i < 100; i++) {
        rkv_bench__stats_add(&a, 0, RKV_BENCH__SUCCEEDED, 1000 + i);
    }
    rkv_bench__stats_add(&a, RKV_EUNKNOWN, RKV_BENCH__UNKNOWN, 5);
    rkv_bench__stats_add(&a, RKV_ETIMEOUT, RKV_BENCH__FAILED, 5);
    rkv_bench__stats_add(&a, RKV_ETIMEOUT, RKV_BENCH__FAILED, 5);
    /* Ten distinct codes: eight get a slot, two go to n_other_errors. */
    for (int code = RKV_EMALFORMED; code > RKV_EMALFORMED - 10; code--) {
        rkv_bench__stats_add(&b, code, RKV_BENCH__FAILED, 5);
    }

    ASSERT_UINT_EQ(a.n_issued, 103);
    ASSERT_UINT_EQ(a.n_succeeded, 100);
    ASSERT_UINT_EQ(a.n_failed, 2);
    ASSERT_UINT_EQ(a.n_unknown, 1);
    ASSERT_UINT_EQ(a.hist.n_values, 100);
    ASSERT_UINT_EQ(a.n_error_kinds, 2);
    ASSERT_UINT_EQ(b.n_error_kinds, RKV_BENCH_ERROR_KINDS_MAX);
    ASSERT_UINT_EQ(b.n_other_errors, 2);

    rkv_bench__stats_merge(&a, &b);
    ASSERT_UINT_EQ(a.n_issued, 113);
    ASSERT_UINT_EQ(a.n_failed, 12);
    ASSERT_UINT_EQ(a.n_issued, a.n_succeeded + a.n_failed + a.n_unknown);
    ASSERT_UINT_EQ(a.n_error_kinds, RKV_BENCH_ERROR_KINDS_MAX);
    ASSERT_UINT_EQ(a.errors[1].code, RKV_ETIMEOUT);
    ASSERT_UINT_EQ(a.errors[1].count, 2);
    /* a had 2 kinds; 6 of b's 10 codes fit beside them. */
    ASSERT_UINT_EQ(a.n_other_errors, 4);
}

/* 10,000 puts of 1 ms to 10 ms in 20 s read 500 ops/s with p50 about 5 ms
 * in the peer line, and the server CPU gives ops per CPU-second. */
TEST(bench_report, peer_line_figures)
{
    struct fixture f;
    const char *line;
    double ops = 0.0;
    double p50 = 0.0;
    double p99 = 0.0;
    double cores = 0.0;
    double per_cpu = 0.0;

    setup(&f);
    for (uint64_t i = 1; i <= 10000; i++) {
        rkv_bench__stats_add(&f.report->ops[RKV_BENCH_OP_PUT], 0,
                             RKV_BENCH__SUCCEEDED, 1000000 + i * 900);
    }
    rkv_bench__stats_add(&f.report->ops[RKV_BENCH_OP_PUT], RKV_EUNKNOWN,
                         RKV_BENCH__UNKNOWN, 0);
    f.report->measured_ns = 20000000000ull;
    f.report->total_ns = 25000000000ull;
    f.report->server_cpu_ms = 12500; /* 0.5 cores over 25 s */
    f.report->server_cpu_known = true;
    print_report(&f);

    line = find_line(&f, "rangekv put: ");
    ASSERT_TRUE(line != NULL);
    ASSERT_INT_EQ(sscanf(line, "rangekv put: %lf ops/s p50=%lf ms p99=%lf ms",
                         &ops, &p50, &p99),
                  3);
    ASSERT_TRUE(ops == 500.0);
    ASSERT_TRUE(p50 > 5.5 * 0.99);
    ASSERT_TRUE(p50 < 5.5 * 1.01);
    ASSERT_TRUE(p99 > 9.91 * 0.99);
    ASSERT_TRUE(p99 < 9.91 * 1.01);
    ASSERT_TRUE(strstr(line, " unknown=1 ") != NULL);
    ASSERT_TRUE(strstr(line, " n=10000 ") != NULL);
    ASSERT_INT_EQ(sscanf(strstr(line, "srv_cpu="),
                         "srv_cpu=%lf cores ops_per_cpu_s=%lf", &cores,
                         &per_cpu),
                  2);
    ASSERT_TRUE(cores == 0.5);
    ASSERT_TRUE(per_cpu == 1000.0);
    /* Only operation types that ran get a line. */
    ASSERT_TRUE(find_line(&f, "rangekv get: ") == NULL);
    teardown(&f);
}

/* Without server CPU figures the peer line leaves ops_per_cpu_s out rather
 * than print a made-up value, and --label renames the line. */
TEST(bench_report, peer_line_without_cpu)
{
    struct fixture f;
    const char *line;

    setup(&f);
    f.report->config.label = "mine";
    rkv_bench__stats_add(&f.report->ops[RKV_BENCH_OP_GET], 0,
                         RKV_BENCH__SUCCEEDED, 1000000);
    f.report->measured_ns = 1000000000ull;
    print_report(&f);
    line = find_line(&f, "mine get: 1 ops/s ");
    ASSERT_TRUE(line != NULL);
    ASSERT_TRUE(strstr(line, "ops_per_cpu_s") == NULL);
    teardown(&f);
}

/* The node table shows deltas over the measured window and fsyncs per
 * put on the leader. */
TEST(bench_report, node_counters)
{
    struct fixture f;
    const char *line;
    struct rkv_bench_node_sample *before;
    struct rkv_bench_node_sample *after;

    setup(&f);
    f.report->nodes_measure.n_nodes = 1;
    f.report->nodes_end.n_nodes = 1;
    before = &f.report->nodes_measure.nodes[0];
    after = &f.report->nodes_end.nodes[0];
    before->node_id = 7;
    before->n_puts = 100;
    before->n_fsyncs = 50;
    before->n_proposals = 100;
    before->n_commits = 50;
    *after = *before;
    after->n_ranges = 3;
    after->n_leaders = 2;
    after->n_puts += 1000;
    after->n_proposals += 1000;
    after->n_fsyncs += 250;
    after->n_commits += 250;
    print_report(&f);
    line = find_line(&f, "     7 ");
    ASSERT_TRUE(line != NULL);
    ASSERT_TRUE(strstr(line, " 1000 ") != NULL);
    ASSERT_TRUE(strstr(line, " 250 ") != NULL);
    ASSERT_TRUE(strstr(line, " 0.250 ") != NULL);
    ASSERT_TRUE(strstr(line, " 4.00 ") != NULL);
    teardown(&f);
}

/* The JSON file carries the counts, percentiles, errors and node deltas. */
TEST(bench_report, json_file)
{
    struct fixture f;
    char path[4200];
    char buf[8192];
    size_t n;
    FILE *in;

    setup(&f);
    rkv_bench__stats_add(&f.report->ops[RKV_BENCH_OP_SCAN], 0,
                         RKV_BENCH__SUCCEEDED, 2000000);
    rkv_bench__stats_add(&f.report->ops[RKV_BENCH_OP_SCAN], RKV_ETIMEOUT,
                         RKV_BENCH__FAILED, 0);
    f.report->measured_ns = 1000000000ull;
    f.report->config.label = "quote\"d";
    snprintf(path, sizeof(path), "%s/out.json", rkv_test_tmpdir());
    ASSERT_OK(rkv_bench_report_write_json(f.report, path));

    in = fopen(path, "r");
    ASSERT_TRUE(in != NULL);
    n = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[n] = '\0';
    ASSERT_TRUE(buf[0] == '{');
    ASSERT_TRUE(strstr(buf, "\"label\":\"quote\\\"d\"") != NULL);
    ASSERT_TRUE(strstr(buf, "\"scan\":{\"issued\":2,\"succeeded\":1,"
                            "\"failed\":1,\"unknown\":0") != NULL);
    ASSERT_TRUE(strstr(buf, "\"p50_ms\":2.000") != NULL);
    ASSERT_TRUE(strstr(buf, "\"errors\":{\"RKV_ETIMEOUT\":1}") != NULL);
    ASSERT_TRUE(strstr(buf, "\"get\":") == NULL);
    ASSERT_TRUE(strstr(buf, "\"nodes\":[]") != NULL);
    ASSERT_INT_EQ(rkv_bench_report_write_json(f.report, "/nonexistent/x.json"),
                  -ENOENT);
    teardown(&f);
}
