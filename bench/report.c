/*
 * Operation accounting and the bench's output: progress lines, the summary
 * table, node counters, the peer lines and the JSON file.
 *
 * The peer lines follow the format that the etcd comparison harness parses:
 *   <label> <op>: N ops/s p50=X ms p99=Y ms p90=.. p999=.. max=.. ...
 * with ops_per_cpu_s = (ops/s) / (server CPU seconds per second), the CPU
 * counted over the whole run (load and warm-up included), as the harness
 * does for etcd.
 */
#include "bench/bench_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

#define NS_PER_MS 1e6
#define NS_PER_S 1e9

/* ---- accounting --------------------------------------------------------- */

enum rkv_bench__outcome rkv_bench__classify(enum rkv_bench_op op, int rv)
{
    if (rv == 0) {
        return RKV_BENCH__SUCCEEDED;
    }
    /* A read of a missing key is a result, not an error. */
    if (rv == RKV_ENOTFOUND &&
        (op == RKV_BENCH_OP_GET || op == RKV_BENCH_OP_RMW)) {
        return RKV_BENCH__SUCCEEDED;
    }
    if (rv == RKV_EUNKNOWN) {
        return RKV_BENCH__UNKNOWN;
    }
    return RKV_BENCH__FAILED;
}

void rkv_bench__stats_init(struct rkv_bench_op_stats *stats)
{
    memset(stats, 0, offsetof(struct rkv_bench_op_stats, hist));
    rkv_bench_hist_init(&stats->hist);
}

static void stats_count_error(struct rkv_bench_op_stats *stats, int rv,
                              uint64_t count)
{
    for (size_t i = 0; i < stats->n_error_kinds; i++) {
        if (stats->errors[i].code == rv) {
            stats->errors[i].count += count;
            return;
        }
    }
    if (stats->n_error_kinds < RKV_BENCH_ERROR_KINDS_MAX) {
        stats->errors[stats->n_error_kinds].code = rv;
        stats->errors[stats->n_error_kinds].count = count;
        stats->n_error_kinds++;
        return;
    }
    stats->n_other_errors += count;
}

void rkv_bench__stats_add(struct rkv_bench_op_stats *stats, int rv,
                          enum rkv_bench__outcome outcome, uint64_t latency_ns)
{
    stats->n_issued++;
    switch (outcome) {
    case RKV_BENCH__SUCCEEDED:
        stats->n_succeeded++;
        rkv_bench_hist_record(&stats->hist, latency_ns);
        break;
    case RKV_BENCH__FAILED:
        stats->n_failed++;
        stats_count_error(stats, rv, 1);
        break;
    case RKV_BENCH__UNKNOWN:
        stats->n_unknown++;
        stats_count_error(stats, rv, 1);
        break;
    }
    assert(stats->n_issued ==
           stats->n_succeeded + stats->n_failed + stats->n_unknown);
}

void rkv_bench__stats_merge(struct rkv_bench_op_stats *dst,
                            const struct rkv_bench_op_stats *src)
{
    dst->n_issued += src->n_issued;
    dst->n_succeeded += src->n_succeeded;
    dst->n_failed += src->n_failed;
    dst->n_unknown += src->n_unknown;
    for (size_t i = 0; i < src->n_error_kinds; i++) {
        stats_count_error(dst, src->errors[i].code, src->errors[i].count);
    }
    dst->n_other_errors += src->n_other_errors;
    dst->n_not_found += src->n_not_found;
    rkv_bench_hist_merge(&dst->hist, &src->hist);
}

/* ---- progress ----------------------------------------------------------- */

static double ns_to_ms(uint64_t ns)
{
    return (double)ns / NS_PER_MS;
}

void rkv_bench__progress_header(FILE *out)
{
    fprintf(out, "_elapsed___errors__unknown__ops/sec(inst)___ops/sec(cum)"
                 "__p50(ms)__p99(ms)_pMax(ms)__ranges_phase\n");
}

void rkv_bench__progress_line(FILE *out,
                              const struct rkv_bench__progress *progress)
{
    struct rkv_bench_op_stats all;
    double inst = 0.0;
    double cum = 0.0;
    char ranges[32];

    rkv_bench__stats_init(&all);
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        rkv_bench__stats_merge(&all, &progress->interval[op]);
    }
    if (progress->interval_s > 0.0) {
        inst = (double)all.n_succeeded / progress->interval_s;
    }
    if (progress->cum_s > 0.0) {
        cum = (double)progress->cum_succeeded / progress->cum_s;
    }
    if (progress->n_ranges >= 0) {
        snprintf(ranges, sizeof(ranges), "%" PRId64, progress->n_ranges);
    } else {
        snprintf(ranges, sizeof(ranges), "?");
    }
    fprintf(out,
            "%7.1fs %8" PRIu64 " %8" PRIu64 " %14.1f %14.1f %8.2f %8.2f "
            "%8.2f %7s %s\n",
            progress->elapsed_s, all.n_failed, all.n_unknown, inst, cum,
            ns_to_ms(rkv_bench_hist_percentile(&all.hist, 50.0)),
            ns_to_ms(rkv_bench_hist_percentile(&all.hist, 99.0)),
            ns_to_ms(all.hist.max_value), ranges, progress->phase);
    fflush(out);
}

/* ---- node counters ------------------------------------------------------ */

static const struct rkv_bench_node_sample *
nodes_find(const struct rkv_bench_nodes *nodes, uint64_t node_id)
{
    for (size_t i = 0; i < nodes->n_nodes; i++) {
        if (nodes->nodes[i].node_id == node_id) {
            return &nodes->nodes[i];
        }
    }
    return NULL;
}

/* Fills delta with end minus start for the node of end; returns false when
 * start has no sample of that node. */
static bool node_delta(const struct rkv_bench_nodes *start,
                       const struct rkv_bench_node_sample *end,
                       struct rkv_bench_node_sample *delta)
{
    const struct rkv_bench_node_sample *begin =
        nodes_find(start, end->node_id);

    if (begin == NULL) {
        return false;
    }
    delta->node_id = end->node_id;
    delta->n_ranges = end->n_ranges;
    delta->n_leaders = end->n_leaders;
    delta->n_proposals = end->n_proposals - begin->n_proposals;
    delta->n_commits = end->n_commits - begin->n_commits;
    delta->n_fsyncs = end->n_fsyncs - begin->n_fsyncs;
    delta->n_entries_applied = end->n_entries_applied -
                               begin->n_entries_applied;
    delta->n_puts = end->n_puts - begin->n_puts;
    delta->cpu_ms = end->cpu_ms - begin->cpu_ms;
    return true;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b > 0 ? (double)a / (double)b : 0.0;
}

static void print_node_row(FILE *out, const char *name,
                           const struct rkv_bench_node_sample *d)
{
    fprintf(out,
            "%6s %7" PRIu64 " %8" PRIu64 " %9" PRIu64 " %10" PRIu64
            " %8" PRIu64 " %8" PRIu64 " %10.3f %14.2f %8.2f\n",
            name, d->n_ranges, d->n_leaders, d->n_puts, d->n_proposals,
            d->n_commits, d->n_fsyncs, ratio(d->n_fsyncs, d->n_puts),
            ratio(d->n_proposals, d->n_commits), (double)d->cpu_ms / 1000.0);
}

static void print_nodes(const struct rkv_bench_report *report, FILE *out)
{
    struct rkv_bench_node_sample total;
    struct rkv_bench_node_sample delta;
    char name[32];

    if (report->nodes_measure.rv != 0 || report->nodes_end.rv != 0) {
        fprintf(out, "node counters: not available (%s)\n",
                rkv_strerror(report->nodes_end.rv != 0
                                 ? report->nodes_end.rv
                                 : report->nodes_measure.rv));
        return;
    }
    memset(&total, 0, sizeof(total));
    fprintf(out, "node counters over the measured window (puts: client "
                 "writes served as leader; fsyncs/put: per put led; "
                 "props/commit: proposals per LMDB write transaction):\n");
    fprintf(out, "__node__ranges__leaders_____puts__proposals__commits"
                 "___fsyncs_fsyncs/put__props/commit___cpu_s\n");
    for (size_t i = 0; i < report->nodes_end.n_nodes; i++) {
        if (!node_delta(&report->nodes_measure, &report->nodes_end.nodes[i],
                        &delta)) {
            continue;
        }
        snprintf(name, sizeof(name), "%" PRIu64, delta.node_id);
        print_node_row(out, name, &delta);
        total.n_ranges += delta.n_ranges;
        total.n_leaders += delta.n_leaders;
        total.n_puts += delta.n_puts;
        total.n_proposals += delta.n_proposals;
        total.n_commits += delta.n_commits;
        total.n_fsyncs += delta.n_fsyncs;
        total.cpu_ms += delta.cpu_ms;
    }
    print_node_row(out, "total", &total);
}

/* ---- summary ------------------------------------------------------------ */

static double report_ops_per_s(const struct rkv_bench_report *report,
                               const struct rkv_bench_op_stats *stats)
{
    if (report->measured_ns == 0) {
        return 0.0;
    }
    return (double)stats->n_succeeded / ((double)report->measured_ns / NS_PER_S);
}

/* Returns the servers' average CPU use in cores, or 0 when unknown. */
static double report_server_cores(const struct rkv_bench_report *report)
{
    if (!report->server_cpu_known || report->total_ns == 0) {
        return 0.0;
    }
    return ((double)report->server_cpu_ms / 1000.0) /
           ((double)report->total_ns / NS_PER_S);
}

static void print_op_row(const struct rkv_bench_report *report, FILE *out,
                         enum rkv_bench_op op)
{
    const struct rkv_bench_op_stats *s = &report->ops[op];

    fprintf(out,
            "%7.1fs %6s %10" PRIu64 " %11" PRIu64 " %8" PRIu64 " %8" PRIu64
            " %10.1f %8.2f %8.2f %8.2f %9.2f %9.2f\n",
            (double)report->measured_ns / NS_PER_S, rkv_bench_op_name(op),
            s->n_issued, s->n_succeeded, s->n_failed, s->n_unknown,
            report_ops_per_s(report, s),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 50.0)),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 90.0)),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 99.0)),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 99.9)),
            ns_to_ms(s->hist.max_value));
    if (s->n_not_found > 0) {
        fprintf(out, "  %s: %" PRIu64 " of %" PRIu64 " reads found no key\n",
                rkv_bench_op_name(op), s->n_not_found, s->n_succeeded);
    }
    if (s->n_error_kinds == 0) {
        return;
    }
    fprintf(out, "  errors %s:", rkv_bench_op_name(op));
    for (size_t i = 0; i < s->n_error_kinds; i++) {
        fprintf(out, " %s=%" PRIu64, rkv_errname(s->errors[i].code),
                s->errors[i].count);
    }
    if (s->n_other_errors > 0) {
        fprintf(out, " other=%" PRIu64, s->n_other_errors);
    }
    fprintf(out, "\n");
}

static void print_peer_line(const struct rkv_bench_report *report, FILE *out,
                            enum rkv_bench_op op)
{
    const struct rkv_bench_op_stats *s = &report->ops[op];
    const char *label = report->config.label;
    double ops_per_s = report_ops_per_s(report, s);
    double cores = report_server_cores(report);

    fprintf(out,
            "%s %s: %.0f ops/s p50=%.2f ms p99=%.2f ms p90=%.2f p999=%.2f "
            "max=%.2f mean=%.2f n=%" PRIu64 " err=%" PRIu64
            " unknown=%" PRIu64 " secs=%.1f clients=%" PRIu32
            " conns=%" PRIu32,
            label != NULL ? label : "rangekv", rkv_bench_op_name(op),
            ops_per_s, ns_to_ms(rkv_bench_hist_percentile(&s->hist, 50.0)),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 99.0)),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 90.0)),
            ns_to_ms(rkv_bench_hist_percentile(&s->hist, 99.9)),
            ns_to_ms(s->hist.max_value), rkv_bench_hist_mean(&s->hist) / 1e6,
            s->n_succeeded, s->n_failed, s->n_unknown,
            (double)report->measured_ns / NS_PER_S, report->config.concurrency,
            report->config.n_client_threads * report->config.n_connections);
    if (cores > 0.0) {
        fprintf(out, " srv_cpu=%.2f cores ops_per_cpu_s=%.0f", cores,
                ops_per_s / cores);
    }
    fprintf(out, "\n");
}

void rkv_bench_report_print(const struct rkv_bench_report *report, FILE *out)
{
    fprintf(out, "\n_elapsed_____op_____issued___succeeded___failed__unknown"
                 "______ops/s__p50(ms)__p90(ms)__p99(ms)_p99.9(ms)_pMax(ms)\n");
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        if (report->ops[op].n_issued > 0) {
            print_op_row(report, out, (enum rkv_bench_op)op);
        }
    }
    fprintf(out,
            "not counted above: %" PRIu64 " warm-up operations, %" PRIu64
            " load writes (%" PRIu64 " failed)\n",
            report->n_warmup_ops, report->n_load_ops, report->n_load_failed);
    if (report->n_ranges_end > 0) {
        fprintf(out, "ranges at the end: %" PRIu64 "\n", report->n_ranges_end);
    }
    print_nodes(report, out);
    if (report->server_cpu_known) {
        fprintf(out, "server cpu: %.2f cores over %.1f s (load, warm-up and "
                     "run)\n",
                report_server_cores(report),
                (double)report->total_ns / NS_PER_S);
    }
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        if (report->ops[op].n_issued > 0) {
            print_peer_line(report, out, (enum rkv_bench_op)op);
        }
    }
    fflush(out);
}
