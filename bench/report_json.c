/*
 * The bench report as one JSON object (--json FILE): the configuration, per
 * operation type the counts, throughput and latency percentiles in ms, the
 * node counters over the measured window and the servers' CPU use.
 * Every string written is an identifier or an error name, so nothing needs
 * escaping beyond what json_string() does for the label.
 */
#include "bench/bench_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\') {
            fprintf(out, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(out, "\\u%04x", ch);
        } else {
            fputc(ch, out);
        }
    }
    fputc('"', out);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void json_config(FILE *out, const struct rkv_bench_config *c)
{
    fprintf(out, "\"workload\":\"%s\",",
            c->workload == RKV_BENCH_WORKLOAD_YCSB ? "ycsb" : "kv");
    if (c->workload == RKV_BENCH_WORKLOAD_YCSB) {
        fprintf(out, "\"ycsb_workload\":\"%c\",", c->ycsb_workload);
    } else {
        fprintf(out, "\"read_percent\":%" PRIu32 ",\"distribution\":\"%s\",",
                c->read_percent, rkv_bench__dist_name(c->dist));
    }
    fprintf(out, "\"label\":");
    json_string(out, c->label != NULL ? c->label : "rangekv");
    fprintf(out,
            ",\"key_size\":%" PRIu32 ",\"value_size\":%" PRIu32
            ",\"keyspace\":%" PRIu64 ",\"concurrency\":%" PRIu32
            ",\"client_threads\":%" PRIu32 ",\"connections\":%" PRIu32
            ",\"duration_s\":%.3f,\"warmup_s\":%.3f,\"rate\":%.1f,"
            "\"serializable\":%s,",
            c->key_size, c->value_size, c->keyspace, c->concurrency,
            c->n_client_threads, c->n_connections,
            (double)c->duration_ms / 1000.0, (double)c->warmup_ms / 1000.0,
            c->rate, c->serializable ? "true" : "false");
}

static void json_op(FILE *out, const struct rkv_bench_report *report,
                    enum rkv_bench_op op)
{
    const struct rkv_bench_op_stats *s = &report->ops[op];
    double secs = (double)report->measured_ns / 1e9;

    fprintf(out,
            "\"%s\":{\"issued\":%" PRIu64 ",\"succeeded\":%" PRIu64
            ",\"failed\":%" PRIu64 ",\"unknown\":%" PRIu64
            ",\"not_found\":%" PRIu64 ",\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
            "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
            "\"mean_ms\":%.3f,\"errors\":{",
            rkv_bench_op_name(op), s->n_issued, s->n_succeeded, s->n_failed,
            s->n_unknown, s->n_not_found, secs > 0 ? (double)s->n_succeeded / secs : 0.0,
            ms(rkv_bench_hist_percentile(&s->hist, 50.0)),
            ms(rkv_bench_hist_percentile(&s->hist, 90.0)),
            ms(rkv_bench_hist_percentile(&s->hist, 99.0)),
            ms(rkv_bench_hist_percentile(&s->hist, 99.9)),
            ms(s->hist.max_value), rkv_bench_hist_mean(&s->hist) / 1e6);
    for (size_t i = 0; i < s->n_error_kinds; i++) {
        fprintf(out, "%s\"%s\":%" PRIu64, i > 0 ? "," : "",
                rkv_errname(s->errors[i].code), s->errors[i].count);
    }
    if (s->n_other_errors > 0) {
        fprintf(out, "%s\"other\":%" PRIu64, s->n_error_kinds > 0 ? "," : "",
                s->n_other_errors);
    }
    fprintf(out, "}}");
}

static void json_nodes(FILE *out, const struct rkv_bench_report *report)
{
    const struct rkv_bench_nodes *start = &report->nodes_measure;
    const struct rkv_bench_nodes *end = &report->nodes_end;
    bool first = true;

    fprintf(out, "\"nodes\":[");
    for (size_t i = 0; start->rv == 0 && end->rv == 0 && i < end->n_nodes;
         i++) {
        const struct rkv_bench_node_sample *e = &end->nodes[i];
        const struct rkv_bench_node_sample *b = NULL;

        for (size_t j = 0; j < start->n_nodes; j++) {
            if (start->nodes[j].node_id == e->node_id) {
                b = &start->nodes[j];
            }
        }
        if (b == NULL) {
            continue;
        }
        fprintf(out,
                "%s{\"node_id\":%" PRIu64 ",\"ranges\":%" PRIu64
                ",\"leaders\":%" PRIu64 ",\"puts\":%" PRIu64
                ",\"proposals\":%" PRIu64 ",\"commits\":%" PRIu64
                ",\"fsyncs\":%" PRIu64 ",\"entries_applied\":%" PRIu64
                ",\"cpu_ms\":%" PRIu64 "}",
                first ? "" : ",", e->node_id, e->n_ranges, e->n_leaders,
                e->n_puts - b->n_puts, e->n_proposals - b->n_proposals,
                e->n_commits - b->n_commits, e->n_fsyncs - b->n_fsyncs,
                e->n_entries_applied - b->n_entries_applied,
                e->cpu_ms - b->cpu_ms);
        first = false;
    }
    fprintf(out, "]");
}

int rkv_bench_report_write_json(const struct rkv_bench_report *report,
                                const char *path)
{
    FILE *out = fopen(path, "w");
    bool first = true;

    if (out == NULL) {
        return -errno;
    }
    fputc('{', out);
    json_config(out, &report->config);
    fprintf(out,
            "\"measured_s\":%.3f,\"total_s\":%.3f,\"warmup_ops\":%" PRIu64
            ",\"load_ops\":%" PRIu64 ",\"load_failed\":%" PRIu64
            ",\"ranges_end\":%" PRIu64 ",\"ops\":{",
            (double)report->measured_ns / 1e9, (double)report->total_ns / 1e9,
            report->n_warmup_ops, report->n_load_ops, report->n_load_failed,
            report->n_ranges_end);
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        if (report->ops[op].n_issued == 0) {
            continue;
        }
        fprintf(out, "%s", first ? "" : ",");
        json_op(out, report, (enum rkv_bench_op)op);
        first = false;
    }
    fprintf(out, "},");
    json_nodes(out, report);
    if (report->server_cpu_known) {
        fprintf(out, ",\"server_cpu_ms\":%" PRIu64, report->server_cpu_ms);
    }
    fprintf(out, "}\n");
    if (ferror(out)) {
        fclose(out);
        return -EIO;
    }
    if (fclose(out) != 0) {
        return -errno;
    }
    return 0;
}
