/* Checks rkv_bench_run()'s error paths that need no cluster: a bad
 * configuration and allocation failures before any client is opened. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>

#include "bench/bench.h"
#include "tests/lib/test.h"

static void config_unreachable(struct rkv_bench_config *config)
{
    static const char *const hosts[] = {"127.0.0.1:1"};

    rkv_bench_config_init(config);
    config->hosts = hosts;
    config->n_hosts = 1;
    config->concurrency = 4;
    config->duration_ms = 100;
    config->timeout_ms = 100;
}

/* A bad configuration fails with RKV_ECONFIG and a message, and no report
 * is returned. */
TEST(bench_run, bad_config)
{
    struct rkv_bench_config config;
    struct rkv_bench_report *report = NULL;
    char errmsg[256] = "";

    config_unreachable(&config);
    config.concurrency = 0;
    ASSERT_INT_EQ(rkv_bench_run(&config, &report, errmsg, sizeof(errmsg)),
                  RKV_ECONFIG);
    ASSERT_TRUE(report == NULL);
    ASSERT_TRUE(strstr(errmsg, "--concurrency") != NULL);
}

/* Each of the allocations made before the clients open can fail: the run
 * returns -ENOMEM and frees what it had (ASan checks the leaks). */
TEST(bench_run, allocation_failures)
{
    struct rkv_bench_config config;
    char errmsg[256];

    config_unreachable(&config);
    /* The report, the progress state, the bench, its value, workers,
     * clients and delay heap: seven allocations. */
    for (long n = 0; n < 7; n++) {
        struct rkv_bench_report *report = NULL;
        int rv;

        rkv_alloc_fail_after(n);
        rv = rkv_bench_run(&config, &report, errmsg, sizeof(errmsg));
        rkv_alloc_fail_after(-1);
        ASSERT_INT_EQ(rv, -ENOMEM);
        ASSERT_TRUE(report == NULL);
    }
}

/* Against an address where nothing listens every operation fails, and the
 * counts still add up. */
TEST(bench_run, unreachable_counts_add_up)
{
    struct rkv_bench_config config;
    struct rkv_bench_report *report = NULL;
    const struct rkv_bench_op_stats *puts;
    char errmsg[256] = "";

    config_unreachable(&config);
    ASSERT_OK(rkv_bench_run(&config, &report, errmsg, sizeof(errmsg)));
    puts = &report->ops[RKV_BENCH_OP_PUT];
    ASSERT_UINT_GT(puts->n_issued, 0);
    ASSERT_UINT_EQ(puts->n_succeeded, 0);
    ASSERT_UINT_EQ(puts->n_issued,
                   puts->n_succeeded + puts->n_failed + puts->n_unknown);
    ASSERT_UINT_EQ(report->ops[RKV_BENCH_OP_GET].n_issued, 0);
    ASSERT_INT_NE(report->nodes_end.rv, 0);
    rkv_bench_report_free(report);
}
