/*
 * The `rangekv` binary: dispatches argv[1] to the subcommand tables that the
 * modules export (node: start, init; client: cluster, put, get, ...; bench;
 * sql). This file sits above every module, so it is the only place that
 * links them all together.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

#ifdef RKV_HAVE_NODE_CLI
extern const struct rkv_cli_command rkv_node_cli_commands[];
#endif
#ifdef RKV_HAVE_CLIENT_CLI
extern const struct rkv_cli_command rkv_client_cli_commands[];
#endif
#ifdef RKV_HAVE_BENCH_CLI
extern const struct rkv_cli_command rkv_bench_cli_commands[];
#endif
#ifdef RKV_HAVE_SQL_CLI
extern const struct rkv_cli_command rkv_sql_cli_commands[];
#endif

static const struct rkv_cli_command *const command_tables[] = {
#ifdef RKV_HAVE_NODE_CLI
    rkv_node_cli_commands,
#endif
#ifdef RKV_HAVE_CLIENT_CLI
    rkv_client_cli_commands,
#endif
#ifdef RKV_HAVE_BENCH_CLI
    rkv_bench_cli_commands,
#endif
#ifdef RKV_HAVE_SQL_CLI
    rkv_sql_cli_commands,
#endif
    NULL,
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: rangekv COMMAND [OPTIONS]\n\n"
                 "A distributed, range-partitioned key-value store.\n\n"
                 "commands:\n");
    for (size_t t = 0; command_tables[t] != NULL; t++) {
        for (const struct rkv_cli_command *c = command_tables[t];
             c->name != NULL; c++) {
            fprintf(out, "  %-10s %s\n", c->name, c->summary);
        }
    }
    fprintf(out, "\nrun `rangekv COMMAND --help` for the options of one "
                 "command.\n");
}

static const struct rkv_cli_command *find_command(const char *name)
{
    for (size_t t = 0; command_tables[t] != NULL; t++) {
        for (const struct rkv_cli_command *c = command_tables[t];
             c->name != NULL; c++) {
            if (strcmp(c->name, name) == 0) {
                return c;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const struct rkv_cli_command *command;

    /* A peer or client that goes away mid-write must not kill the
     * process; write errors are handled where they happen. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    command = find_command(argv[1]);
    if (command == NULL) {
        fprintf(stderr, "rangekv: unknown command '%s'\n\n", argv[1]);
        print_usage(stderr);
        return 2;
    }
    return command->main(argc - 1, argv + 1);
}
