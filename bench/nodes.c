/*
 * Cluster figures besides the bench's own operations: the nodes' status
 * counters, the range count, and the servers' CPU time (from status, or
 * from /proc/PID/stat of the --server-pids processes).
 * These calls block on the client library and run on the caller's thread.
 */
#define RKV_LOG_SUBSYS "bench"
#include "bench/bench_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "rangekv/client.h"

void rkv_bench__nodes_sample(struct rkv_client *client,
                         struct rkv_bench_nodes *out)
{
    char **addrs = NULL;
    size_t n_addrs = 0;
    int rv;

    memset(out, 0, sizeof(*out));
    rv = rkv_client_node_addrs(client, &addrs, &n_addrs);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "listing the nodes failed rv=%s", rkv_errname(rv));
        out->rv = rv;
        return;
    }
    for (size_t i = 0; i < n_addrs && out->n_nodes < RKV_BENCH_NODES_MAX;
         i++) {
        struct rkv_client_node_status status;
        struct rkv_bench_node_sample *sample = &out->nodes[out->n_nodes];

        rv = rkv_client_node_status(client, addrs[i], &status);
        if (rv != 0) {
            RKV_LOG(RKV_WARN, "reading node status failed host=%s rv=%s",
                    addrs[i], rkv_errname(rv));
            out->rv = rv;
            break;
        }
        sample->node_id = status.node_id;
        sample->n_ranges = status.n_ranges;
        sample->n_leaders = status.n_leaders;
        sample->n_proposals = status.n_proposals;
        sample->n_commits = status.n_commits;
        sample->n_fsyncs = status.n_fsyncs;
        sample->n_entries_applied = status.n_entries_applied;
        sample->n_puts = status.n_puts;
        sample->cpu_ms = status.cpu_user_ms + status.cpu_system_ms;
        out->n_nodes++;
    }
    rkv_client_strings_free(addrs, n_addrs);
}

/* Reads the user plus system CPU time of process pid, all threads, from
 * /proc/PID/stat (fields 14 and 15, in clock ticks). */
static int proc_cpu_ms(int pid, uint64_t *cpu_ms_out)
{
    char path[64];
    char buf[1024];
    unsigned long long utime;
    unsigned long long stime;
    const char *fields;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -errno;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';

    /* The command name may contain spaces; fields resume after its ')'. */
    fields = strrchr(buf, ')');
    if (fields == NULL ||
        sscanf(fields + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                           "%llu %llu",
               &utime, &stime) != 2) {
        return -EINVAL;
    }
    *cpu_ms_out = (utime + stime) * 1000 / (uint64_t)sysconf(_SC_CLK_TCK);
    return 0;
}

/* Sums the CPU time of the --server-pids processes; false if one failed. */
bool rkv_bench__proc_cpu_total(const struct rkv_bench_config *config,
                           uint64_t *cpu_ms_out)
{
    uint64_t total = 0;

    for (size_t i = 0; i < config->n_server_pids; i++) {
        uint64_t cpu_ms;
        int rv = proc_cpu_ms(config->server_pids[i], &cpu_ms);

        if (rv != 0) {
            RKV_LOG(RKV_WARN, "reading cpu time failed pid=%d rv=%s",
                    config->server_pids[i], rkv_errname(rv));
            return false;
        }
        total += cpu_ms;
    }
    *cpu_ms_out = total;
    return true;
}

/* Fills the report's server CPU from /proc when pids were given, else from
 * the nodes' status counters. */
void rkv_bench__report_server_cpu(struct rkv_bench_report *report,
                              bool proc_start_ok, uint64_t proc_start_ms)
{
    const struct rkv_bench_config *config = &report->config;
    uint64_t proc_end_ms;
    uint64_t total = 0;

    if (config->n_server_pids > 0) {
        report->server_cpu_known = proc_start_ok &&
                                   rkv_bench__proc_cpu_total(config, &proc_end_ms);
        report->server_cpu_ms = proc_end_ms - proc_start_ms;
        return;
    }
    if (report->nodes_start.rv != 0 || report->nodes_end.rv != 0) {
        return;
    }
    for (size_t i = 0; i < report->nodes_end.n_nodes; i++) {
        const struct rkv_bench_node_sample *end = &report->nodes_end.nodes[i];

        for (size_t j = 0; j < report->nodes_start.n_nodes; j++) {
            if (report->nodes_start.nodes[j].node_id == end->node_id) {
                total += end->cpu_ms - report->nodes_start.nodes[j].cpu_ms;
            }
        }
    }
    /* A node that does not report CPU time shows 0; treat it as unknown. */
    report->server_cpu_known = total > 0;
    report->server_cpu_ms = total;
}

int64_t rkv_bench__count_ranges(struct rkv_client *client)
{
    struct rkv_client_range *ranges = NULL;
    size_t n_ranges = 0;
    int rv;

    rv = rkv_client_ranges(client, &ranges, &n_ranges);
    if (rv != 0) {
        return -1;
    }
    rkv_client_ranges_free(ranges, n_ranges);
    return (int64_t)n_ranges;
}
