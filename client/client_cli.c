/*
 * The client subcommands of `rangekv`: put, get, del, scan, split, ranges
 * and status, plus the table that cmd/rangekv.c dispatches on (which also
 * names `cluster` from cluster_cli.c).
 *
 * Every command takes --host HOST:PORT (any node's client address; default
 * $RANGEKV_HOST or 127.0.0.1:26257) and --timeout MS. Keys and values on
 * the command line may contain "\xNN" escapes for arbitrary bytes and "\\"
 * for a backslash. Output prints keys and values with the same escapes.
 * Exit status: 0 success, 1 failure (the error on stderr), 2 wrong usage.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rangekv/client.h"

#define CLI_TIMEOUT_DEFAULT_MS 10000
#define CLI_SCAN_LIMIT_DEFAULT 1000
/* Widest key shown in the ranges table before it is cut with "...". */
#define CLI_KEY_COLUMN_MAX 24

int rkv_client__cluster_main(int argc, char **argv);

enum {
    OPT_HOST = 256,
    OPT_TIMEOUT,
    OPT_LIMIT,
    OPT_RAW,
    OPT_HELP,
};

/* The arguments and options of one command. */
struct cli_spec {
    const char *name;       /* "put" */
    const char *synopsis;   /* positional arguments, for the usage line */
    const char *summary;    /* one sentence on what it does */
    const char *extra_help; /* help lines of command-specific options */
    int n_args_min;
    int n_args_max;
    bool has_limit; /* accepts --limit */
    bool has_raw;   /* accepts --raw */
};

/* A parsed command line. */
struct cli_ctx {
    const struct cli_spec *spec;
    const char *host;
    uint32_t timeout_ms;
    uint32_t limit;
    bool raw;
    char **args; /* positional arguments, borrowed from argv */
    int n_args;
};

static void cli_usage(const struct cli_spec *spec, FILE *out)
{
    fprintf(out,
            "usage: rangekv %s %s%s[options]\n\n"
            "%s\n\n"
            "options:\n"
            "  --host HOST:PORT   client address of any node (default\n"
            "                     $RANGEKV_HOST, else %s)\n"
            "  --timeout MS       give up after MS milliseconds, retries\n"
            "                     included (default %d)\n"
            "%s  --help             show this help\n\n"
            "KEY and VALUE accept \\xNN escapes for any byte and \\\\ for a\n"
            "backslash; output uses the same escapes.\n",
            spec->name, spec->synopsis, spec->synopsis[0] != '\0' ? " " : "",
            spec->summary, RKV_CLIENT_CLI_HOST_DEFAULT, CLI_TIMEOUT_DEFAULT_MS,
            spec->extra_help);
}

/* Reports a usage error and returns exit status 2. */
static int cli_usage_error(const struct cli_spec *spec, const char *message)
{
    fprintf(stderr, "rangekv %s: %s\nrun `rangekv %s --help` for the options\n",
            spec->name, message, spec->name);
    return 2;
}

static int cli_apply_option(struct cli_ctx *ctx, int opt, const char *arg)
{
    uint64_t value;

    switch (opt) {
    case OPT_HOST:
        ctx->host = arg;
        return 0;
    case OPT_TIMEOUT:
        if (rkv_client__cli_parse_u64(arg, 1, UINT32_MAX, &value) != 0) {
            return cli_usage_error(
                ctx->spec,
                "invalid --timeout: expected a positive number of milliseconds");
        }
        ctx->timeout_ms = (uint32_t)value;
        return 0;
    case OPT_LIMIT:
        if (!ctx->spec->has_limit ||
            rkv_client__cli_parse_u64(arg, 1, UINT32_MAX, &value) != 0) {
            return cli_usage_error(
                ctx->spec,
                "invalid --limit: expected a positive number of pairs");
        }
        ctx->limit = (uint32_t)value;
        return 0;
    case OPT_RAW:
        if (!ctx->spec->has_raw) {
            return cli_usage_error(ctx->spec, "unknown option --raw");
        }
        ctx->raw = true;
        return 0;
    default:
        return 2;
    }
}

/* Parses argv. Returns -1 to go on, or an exit status (0 after --help). */
static int cli_parse(const struct cli_spec *spec, int argc, char **argv,
                     struct cli_ctx *ctx)
{
    static const struct option options[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"raw", no_argument, NULL, OPT_RAW},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;

    memset(ctx, 0, sizeof(*ctx));
    ctx->spec = spec;
    ctx->host = rkv_client__cli_default_host();
    ctx->timeout_ms = CLI_TIMEOUT_DEFAULT_MS;
    ctx->limit = CLI_SCAN_LIMIT_DEFAULT;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            cli_usage(spec, stdout);
            return 0;
        }
        if (opt == '?') {
            char message[128];
            snprintf(message, sizeof(message),
                     "unknown option or missing value: %s", argv[optind - 1]);
            return cli_usage_error(spec, message);
        }
        if (cli_apply_option(ctx, opt, optarg) != 0) {
            return 2;
        }
    }
    ctx->args = argv + optind;
    ctx->n_args = argc - optind;
    if (ctx->n_args < spec->n_args_min || ctx->n_args > spec->n_args_max) {
        char message[128];
        snprintf(message, sizeof(message), "expected %s", spec->synopsis);
        return cli_usage_error(spec, message);
    }
    return -1;
}

static int cli_open(const struct cli_ctx *ctx, struct rkv_client **out)
{
    struct rkv_client_options options = {0};
    const char *hosts[1] = {ctx->host};
    int rv;

    /* The command reports its own errors; library warnings about
     * reconnects would only repeat them. RKV_LOG_LEVEL still wins. */
    if (getenv("RKV_LOG_LEVEL") == NULL) {
        rkv_log_set_level(RKV_ERROR);
    }
    options.hosts = hosts;
    options.n_hosts = 1;
    options.timeout_ms = ctx->timeout_ms;
    rv = rkv_client_open(&options, out);
    if (rv != 0) {
        fprintf(stderr, "rangekv %s: invalid --host '%s': %s\n",
                ctx->spec->name, ctx->host, rkv_strerror(rv));
    }
    return rv;
}

/* Decodes argument index of ctx into a new buffer. */
static int cli_arg(const struct cli_ctx *ctx, int index, uint8_t **out,
                   size_t *out_len)
{
    int rv = rkv_client__cli_unescape(ctx->args[index], out, out_len);

    if (rv == -EINVAL) {
        fprintf(
            stderr,
            "rangekv %s: invalid escape in '%s': use \\xNN with two hex digits, or \\\\\n",
            ctx->spec->name, ctx->args[index]);
    }
    return rv;
}

/* Prints a failed request and returns exit status 1. */
static int cli_fail(const struct cli_ctx *ctx, int rv, const char *detail)
{
    fprintf(stderr, "rangekv %s: %s (%s)", ctx->spec->name, rkv_strerror(rv),
            rkv_errname(rv));
    if (detail != NULL && detail[0] != '\0' &&
        strcmp(detail, rkv_strerror(rv)) != 0) {
        fprintf(stderr, ": %s", detail);
    }
    if (rv == RKV_EUNKNOWN) {
        fprintf(stderr, "; the write may or may not have been applied");
    }
    fprintf(stderr, "\n");
    return 1;
}

/* ---- put, get, del --------------------------------------------------- */

static const struct cli_spec put_spec = {
    "put", "KEY VALUE", "Writes VALUE under KEY.", "", 2, 2, false, false,
};

static int put_main(int argc, char **argv)
{
    struct rkv_client_request request = {0};
    struct rkv_client_result result;
    struct rkv_client *client;
    struct cli_ctx ctx;
    uint8_t *key = NULL;
    uint8_t *value = NULL;
    size_t key_len;
    size_t value_len;
    int status = cli_parse(&put_spec, argc, argv, &ctx);
    int rv;

    if (status >= 0) {
        return status;
    }
    if (cli_arg(&ctx, 0, &key, &key_len) != 0 ||
        cli_arg(&ctx, 1, &value, &value_len) != 0) {
        rkv_free(key);
        return 2;
    }
    if (cli_open(&ctx, &client) != 0) {
        status = 2;
        goto out;
    }
    request.op = RKV_CLIENT_PUT;
    request.key = key;
    request.key_len = key_len;
    request.value = value;
    request.value_len = value_len;
    rv = rkv_client_do(client, &request, &result);
    status = rv == 0 ? 0 : cli_fail(&ctx, rv, result.error_message);
    rkv_client_result_free(&result);
    rkv_client_close(client);
out:
    rkv_free(key);
    rkv_free(value);
    return status;
}

static const struct cli_spec get_spec = {
    "get",
    "KEY",
    "Prints the value of KEY; exits 1 when KEY is not found.",
    "  --raw              print the value's bytes unescaped, without a\n"
    "                     newline\n",
    1,
    1,
    false,
    true,
};

/* Runs a GET or DELETE of the first argument into result. */
static int cli_do_key_op(const struct cli_ctx *ctx, enum rkv_client_op op,
                         struct rkv_client_result *result)
{
    struct rkv_client_request request = {0};
    struct rkv_client *client;
    uint8_t *key;
    size_t key_len;
    int rv;

    memset(result, 0, sizeof(*result));
    if (cli_arg(ctx, 0, &key, &key_len) != 0) {
        return 2;
    }
    if (cli_open(ctx, &client) != 0) {
        rkv_free(key);
        return 2;
    }
    request.op = op;
    request.key = key;
    request.key_len = key_len;
    rv = rkv_client_do(client, &request, result);
    rkv_client_close(client);
    rkv_free(key);
    return rv == 0 ? 0 : cli_fail(ctx, rv, result->error_message);
}

static int get_main(int argc, char **argv)
{
    struct rkv_client_result result;
    struct cli_ctx ctx;
    int status = cli_parse(&get_spec, argc, argv, &ctx);

    if (status >= 0) {
        return status;
    }
    status = cli_do_key_op(&ctx, RKV_CLIENT_GET, &result);
    if (status == 0 && !result.found) {
        fprintf(stderr, "rangekv get: key not found: %s\n", ctx.args[0]);
        status = 1;
    } else if (status == 0 && ctx.raw) {
        fwrite(result.value, 1, result.value_len, stdout);
    } else if (status == 0) {
        rkv_client__cli_escape(stdout, result.value, result.value_len);
        fputc('\n', stdout);
    }
    rkv_client_result_free(&result);
    return status;
}

static const struct cli_spec del_spec = {
    "del",
    "KEY",
    "Deletes KEY and prints whether it existed; a missing key is no error.",
    "",
    1,
    1,
    false,
    false,
};

static int del_main(int argc, char **argv)
{
    struct rkv_client_result result;
    struct cli_ctx ctx;
    int status = cli_parse(&del_spec, argc, argv, &ctx);

    if (status >= 0) {
        return status;
    }
    status = cli_do_key_op(&ctx, RKV_CLIENT_DELETE, &result);
    if (status == 0) {
        printf("%s\n", result.found ? "deleted" : "not found");
    }
    rkv_client_result_free(&result);
    return status;
}

/* ---- scan -------------------------------------------------------------- */

static const struct cli_spec scan_spec = {
    "scan",
    "[START [END]]",
    "Prints the pairs with START <= key < END in key order, one \"KEY\\tVALUE\"\n"
    "line each, across ranges (default: the whole keyspace).",
    "  --limit N          print at most N pairs (default 1000)\n",
    0,
    2,
    true,
    false,
};

static int scan_main(int argc, char **argv)
{
    struct rkv_client_request request = {0};
    struct rkv_client_result result = {0};
    struct rkv_client *client;
    struct cli_ctx ctx;
    uint8_t *start = NULL;
    uint8_t *end = NULL;
    size_t start_len = 0;
    size_t end_len = 0;
    int status = cli_parse(&scan_spec, argc, argv, &ctx);

    if (status >= 0) {
        return status;
    }
    if ((ctx.n_args > 0 && cli_arg(&ctx, 0, &start, &start_len) != 0) ||
        (ctx.n_args > 1 && cli_arg(&ctx, 1, &end, &end_len) != 0)) {
        rkv_free(start);
        return 2;
    }
    if (cli_open(&ctx, &client) != 0) {
        status = 2;
        goto out;
    }
    request.op = RKV_CLIENT_SCAN;
    request.key = start;
    request.key_len = start_len;
    request.end_key = end;
    request.end_key_len = end_len;
    request.limit = ctx.limit;
    status = rkv_client_do(client, &request, &result);
    rkv_client_close(client);
    if (status != 0) {
        status = cli_fail(&ctx, status, result.error_message);
        goto out;
    }
    for (size_t i = 0; i < result.n_pairs; i++) {
        rkv_client__cli_escape(stdout, result.pairs[i].key,
                               result.pairs[i].key_len);
        fputc('\t', stdout);
        rkv_client__cli_escape(stdout, result.pairs[i].value,
                               result.pairs[i].value_len);
        fputc('\n', stdout);
    }
out:
    rkv_client_result_free(&result);
    rkv_free(start);
    rkv_free(end);
    return status;
}

/* ---- split ------------------------------------------------------------- */

static const struct cli_spec split_spec = {
    "split",
    "KEY",
    "Splits the range holding KEY so that KEY starts a new range.",
    "",
    1,
    1,
    false,
    false,
};

static int split_main(int argc, char **argv)
{
    struct rkv_client *client;
    struct cli_ctx ctx;
    uint8_t *key;
    size_t key_len;
    int status = cli_parse(&split_spec, argc, argv, &ctx);
    int rv;

    if (status >= 0) {
        return status;
    }
    if (cli_arg(&ctx, 0, &key, &key_len) != 0) {
        return 2;
    }
    if (cli_open(&ctx, &client) != 0) {
        rkv_free(key);
        return 2;
    }
    rv = rkv_client_split(client, key, key_len);
    rkv_client_close(client);
    if (rv != 0) {
        status = cli_fail(
            &ctx, rv,
            rv == -EINVAL
                ? "the key is already a range boundary or inside the system span"
                : NULL);
    } else {
        printf("split at ");
        rkv_client__cli_escape(stdout, key, key_len);
        printf("\n");
        status = 0;
    }
    rkv_free(key);
    return status;
}

/* ---- ranges ------------------------------------------------------------ */

static const struct cli_spec ranges_spec = {
    "ranges",
    "",
    "Prints every range in key order: id, start key (inclusive), end key\n"
    "(exclusive; empty is the keyspace end), leader node, replica nodes,\n"
    "live bytes and key count. Keys are cut at 24 characters.",
    "",
    0,
    0,
    false,
    false,
};

/* Formats key for the table; an empty key shows as "-" (no bound). */
static const char *ranges_key(char *buf, size_t buf_len, const uint8_t *key,
                              size_t key_len)
{
    if (key_len == 0) {
        return "-";
    }
    rkv_client__cli_escape_str(buf, buf_len, key, key_len);
    if (strlen(buf) > CLI_KEY_COLUMN_MAX) {
        memcpy(buf + CLI_KEY_COLUMN_MAX - 3, "...", 4);
    }
    return buf;
}

static void ranges_print(const struct rkv_client_range *ranges, size_t n_ranges)
{
    printf("%-8s %-24s %-24s %-7s %-16s %12s %10s\n", "range", "start", "end",
           "leader", "replicas", "bytes", "keys");
    for (size_t i = 0; i < n_ranges; i++) {
        const struct rkv_client_range *r = &ranges[i];
        char start[CLI_KEY_COLUMN_MAX * 4 + 1];
        char end[CLI_KEY_COLUMN_MAX * 4 + 1];
        char replicas[64] = "";
        char leader[24] = "?";
        size_t pos = 0;

        for (size_t k = 0; k < r->n_replicas && pos < sizeof(replicas); k++) {
            int n =
                snprintf(replicas + pos, sizeof(replicas) - pos, "%s%" PRIu64,
                         k > 0 ? "," : "", r->replica_node_ids[k]);
            pos += n > 0 ? (size_t)n : 0;
        }
        if (r->leader_node_id != 0) {
            snprintf(leader, sizeof(leader), "%" PRIu64, r->leader_node_id);
        }
        printf("%-8" PRIu64 " %-24s %-24s %-7s %-16s %12" PRIu64 " %10" PRIu64
               "\n",
               r->range_id,
               ranges_key(start, sizeof(start), r->start_key, r->start_key_len),
               ranges_key(end, sizeof(end), r->end_key, r->end_key_len), leader,
               replicas, r->live_bytes, r->key_count);
    }
}

static int ranges_main(int argc, char **argv)
{
    struct rkv_client_range *ranges;
    struct rkv_client *client;
    struct cli_ctx ctx;
    size_t n_ranges;
    int status = cli_parse(&ranges_spec, argc, argv, &ctx);
    int rv;

    if (status >= 0) {
        return status;
    }
    if (cli_open(&ctx, &client) != 0) {
        return 2;
    }
    rv = rkv_client_ranges(client, &ranges, &n_ranges);
    rkv_client_close(client);
    if (rv != 0) {
        return cli_fail(&ctx, rv, NULL);
    }
    ranges_print(ranges, n_ranges);
    rkv_client_ranges_free(ranges, n_ranges);
    return 0;
}

/* ---- status ------------------------------------------------------------ */

static const struct cli_spec status_spec = {
    "status",
    "",
    "Prints the counters of every node of the cluster: ranges, leaders and\n"
    "quiesced ranges held, Raft proposals, LMDB commits and fsyncs, entries\n"
    "applied, client writes served, uptime (s) and CPU time (ms). A node\n"
    "that does not reply is listed as unreachable.",
    "",
    0,
    0,
    false,
    false,
};

static void status_print_header(void)
{
    printf("%-5s %-21s %7s %7s %8s %10s %10s %10s %10s %10s %9s %9s\n", "node",
           "address", "ranges", "leaders", "quiesced", "proposals", "commits",
           "fsyncs", "applied", "puts", "uptime_s", "cpu_ms");
}

static int status_main(int argc, char **argv)
{
    struct rkv_client *client;
    struct cli_ctx ctx;
    char **addrs;
    size_t n_addrs;
    int status = cli_parse(&status_spec, argc, argv, &ctx);
    int rv;

    if (status >= 0) {
        return status;
    }
    if (cli_open(&ctx, &client) != 0) {
        return 2;
    }
    rv = rkv_client_node_addrs(client, &addrs, &n_addrs);
    if (rv != 0) {
        rkv_client_close(client);
        return cli_fail(&ctx, rv, NULL);
    }
    status_print_header();
    for (size_t i = 0; i < n_addrs; i++) {
        struct rkv_client_node_status s;

        rv = rkv_client_node_status(client, addrs[i], &s);
        if (rv != 0) {
            printf("%-5s %-21s unreachable (%s)\n", "?", addrs[i],
                   rkv_errname(rv));
            status = 1;
            continue;
        }
        printf("%-5" PRIu64 " %-21s %7" PRIu64 " %7" PRIu64 " %8" PRIu64
               " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64
               " %10" PRIu64 " %9" PRIu64 " %9" PRIu64 "\n",
               s.node_id, addrs[i], s.n_ranges, s.n_leaders, s.n_quiesced,
               s.n_proposals, s.n_commits, s.n_fsyncs, s.n_entries_applied,
               s.n_puts, s.uptime_ms / 1000, s.cpu_user_ms + s.cpu_system_ms);
    }
    rkv_client_strings_free(addrs, n_addrs);
    rkv_client_close(client);
    return status < 0 ? 0 : status;
}

const struct rkv_cli_command rkv_client_cli_commands[] = {
    {"put", "write a value", put_main},
    {"get", "read a value", get_main},
    {"del", "delete a key", del_main},
    {"scan", "list pairs in key order", scan_main},
    {"split", "split the range holding a key", split_main},
    {"ranges", "list ranges with leaders and sizes", ranges_main},
    {"status", "show every node's counters", status_main},
    {"cluster", "start, stop or inspect a local cluster",
     rkv_client__cluster_main},
    {NULL, NULL, NULL},
};
