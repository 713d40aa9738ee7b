/*
 * The `rangekv sql` subcommand: a PostgreSQL-protocol server (--listen),
 * a one-shot runner (-e, -f), an ISO code loader (--load-iso-codes) or,
 * with none of those, an interactive shell reading statements from stdin.
 *
 * The shell prints results as psql's aligned format does: a header, a
 * separator, the rows, then "(N rows)". Other statements print their
 * command tag, and errors print "ERROR:  message" on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sql-lite-front/sql.h"
#include "sql-lite-front/sql_internal.h"

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

#define HOSTS_MAX 16
/* -e options of one command line. */
#define EXECUTES_MAX 64
/* Bytes of one statement typed into the shell, or of a -f file. */
#define SCRIPT_MAX (64 * 1024 * 1024)

struct cli_options {
    const char *hosts[HOSTS_MAX];
    size_t n_hosts;
    const char *listen_addr;
    const char *password;
    const char *executes[EXECUTES_MAX]; /* -e texts in command line order */
    size_t n_executes;
    const char *file;
    const char *iso_codes_dir;
    uint32_t connections_max;
};

static void print_usage(FILE *out)
{
    fprintf(
        out,
        "usage: rangekv sql [--host HOST:PORT]... [--listen HOST:PORT]\n"
        "                   [-e SQL... | -f FILE | --load-iso-codes DIR]\n\n"
        "Runs SQL over the cluster: SQLite parses and plans, tables live "
        "in ranges.\n\n"
        "options:\n"
        "  --host HOST:PORT     a node's client address; repeat for more "
        "(default\n"
        "                       $RANGEKV_HOST or 127.0.0.1:26257)\n"
        "  --listen HOST:PORT   serve the PostgreSQL protocol v3 there "
        "(port 0: any\n"
        "                       free port); prints \"sql: listening on "
        "ADDR\"\n"
        "  --password TEXT      require this cleartext password "
        "(default: trust,\n"
        "                       or $RANGEKV_SQL_PASSWORD)\n"
        "  --connections-max N  concurrent sessions (default 64). As many more\n"
        "                       connections may wait in startup; a new one past\n"
        "                       that closes the oldest, and one that has not\n"
        "                       finished startup and authentication after %d s\n"
        "                       is closed\n"
        "  -e, --execute SQL    run SQL, print the results, exit; repeat "
        "to run several\n"
        "                       in order, up to %d (the first that "
        "fails stops the\n"
        "                       rest)\n"
        "  -f, --file PATH      run the statements in PATH, exit\n"
        "  --load-iso-codes DIR load countries, subdivisions and "
        "languages from\n"
        "                       iso-codes JSON (/usr/share/iso-codes/"
        "json)\n"
        "Without --listen, -e, -f or --load-iso-codes it reads "
        "statements from stdin.\n",
        RKV_SQL_PG_STARTUP_TIMEOUT_MS_DEFAULT / 1000, EXECUTES_MAX);
}

static int parse_options(int argc, char **argv, struct cli_options *options)
{
    enum { OPT_HOST = 256, OPT_LISTEN, OPT_PASSWORD, OPT_ISO, OPT_CONNS };
    static const struct option long_options[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"password", required_argument, NULL, OPT_PASSWORD},
        {"connections-max", required_argument, NULL, OPT_CONNS},
        {"execute", required_argument, NULL, 'e'},
        {"file", required_argument, NULL, 'f'},
        {"load-iso-codes", required_argument, NULL, OPT_ISO},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "e:f:h", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_HOST:
            if (options->n_hosts == HOSTS_MAX) {
                fprintf(stderr, "rangekv sql: at most %d --host options\n",
                        HOSTS_MAX);
                return 2;
            }
            options->hosts[options->n_hosts++] = optarg;
            break;
        case OPT_LISTEN:
            options->listen_addr = optarg;
            break;
        case OPT_PASSWORD:
            options->password = optarg;
            break;
        case OPT_CONNS:
            options->connections_max = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'e':
            if (options->n_executes == EXECUTES_MAX) {
                fprintf(stderr, "rangekv sql: at most %d -e options\n",
                        EXECUTES_MAX);
                return 2;
            }
            options->executes[options->n_executes++] = optarg;
            break;
        case 'f':
            if (options->file != NULL) {
                fprintf(stderr, "rangekv sql: -f can be given once; put the "
                                "statements in one file\n");
                return 2;
            }
            options->file = optarg;
            break;
        case OPT_ISO:
            options->iso_codes_dir = optarg;
            break;
        case 'h':
            print_usage(stdout);
            return 1;
        default:
            print_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rangekv sql: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    if (options->n_executes > 0 && options->file != NULL) {
        fprintf(stderr, "rangekv sql: give -e or -f, not both\n");
        return 2;
    }
    if (options->n_hosts == 0) {
        const char *host = getenv("RANGEKV_HOST");

        options->hosts[options->n_hosts++] =
            host != NULL ? host : "127.0.0.1:26257";
    }
    if (options->password == NULL) {
        options->password = getenv("RANGEKV_SQL_PASSWORD");
    }
    return 0;
}

/* ---- printing results ---------------------------------------------------- */

/* One statement's result, buffered to compute column widths. */
struct printer {
    FILE *out;
    size_t n_columns;
    char **names;
    char **cells; /* n_rows * n_columns, NULL for SQL NULL */
    size_t n_rows;
    size_t cells_cap;
    bool failed;
};

static void printer_clear(struct printer *printer)
{
    for (size_t i = 0; i < printer->n_columns; i++) {
        rkv_free(printer->names[i]);
    }
    for (size_t i = 0; i < printer->n_rows * printer->n_columns; i++) {
        rkv_free(printer->cells[i]);
    }
    rkv_free(printer->names);
    rkv_free(printer->cells);
    printer->names = NULL;
    printer->cells = NULL;
    printer->n_columns = 0;
    printer->n_rows = 0;
    printer->cells_cap = 0;
}

static size_t text_width(const char *text)
{
    size_t width = 0;

    /* Count UTF-8 code points, not bytes, so accents line up. */
    for (const char *c = text; *c != '\0'; c++) {
        width += ((unsigned char)*c & 0xC0) != 0x80;
    }
    return width;
}

/* Prints text in a cell of width characters with one space each side, as
 * psql does; centered for headers, and left-aligned otherwise. The last
 * column of a data row gets no trailing padding. */
static void print_cell(FILE *out, const char *text, size_t width, bool centered,
                       bool last)
{
    size_t text_len = text_width(text);
    size_t left = centered ? (width - text_len) / 2 : 0;
    size_t right = width - text_len - left;

    fputc(' ', out);
    for (size_t i = 0; i < left; i++) {
        fputc(' ', out);
    }
    fputs(text, out);
    if (last && !centered) {
        return;
    }
    for (size_t i = 0; i < right + 1; i++) {
        fputc(' ', out);
    }
}

static void printer_flush(struct printer *printer)
{
    size_t widths[RKV_SQL_COLUMNS_MAX] = {0};
    size_t n = printer->n_columns;

    for (size_t c = 0; c < n; c++) {
        widths[c] = text_width(printer->names[c]);
        for (size_t r = 0; r < printer->n_rows; r++) {
            const char *cell = printer->cells[r * n + c];

            widths[c] = RKV_MAX(widths[c], text_width(cell ? cell : ""));
        }
    }
    for (size_t c = 0; c < n; c++) {
        fputs(c > 0 ? "|" : "", printer->out);
        print_cell(printer->out, printer->names[c], widths[c], true,
                   c + 1 == n);
    }
    fputc('\n', printer->out);
    for (size_t c = 0; c < n; c++) {
        fputs(c > 0 ? "+" : "", printer->out);
        for (size_t i = 0; i < widths[c] + 2; i++) {
            fputc('-', printer->out);
        }
    }
    fputc('\n', printer->out);
    for (size_t r = 0; r < printer->n_rows; r++) {
        for (size_t c = 0; c < n; c++) {
            const char *cell = printer->cells[r * n + c];

            fputs(c > 0 ? "|" : "", printer->out);
            print_cell(printer->out, cell ? cell : "", widths[c], false,
                       c + 1 == n);
        }
        fputc('\n', printer->out);
    }
    fprintf(printer->out, "(%zu row%s)\n\n", printer->n_rows,
            printer->n_rows == 1 ? "" : "s");
    printer_clear(printer);
}

static int printer_add_row(struct printer *printer,
                           const struct rkv_sql_event *event)
{
    size_t needed = (printer->n_rows + 1) * printer->n_columns;

    if (needed > printer->cells_cap) {
        size_t cap = RKV_MAX(needed, printer->cells_cap * 2);
        char **cells = rkv_realloc(printer->cells, cap * sizeof(*cells));

        if (cells == NULL) {
            return -ENOMEM;
        }
        printer->cells = cells;
        printer->cells_cap = cap;
    }
    for (size_t c = 0; c < printer->n_columns; c++) {
        char **cell = &printer->cells[printer->n_rows * printer->n_columns + c];

        *cell = NULL;
        if (event->values[c] != NULL) {
            *cell = rkv_malloc(event->value_lens[c] + 1);
            if (*cell == NULL) {
                return -ENOMEM;
            }
            memcpy(*cell, event->values[c], event->value_lens[c]);
            (*cell)[event->value_lens[c]] = '\0';
        }
    }
    printer->n_rows++;
    return 0;
}

static int printer_event_cb(void *data, const struct rkv_sql_event *event)
{
    struct printer *printer = data;

    switch (event->kind) {
    case RKV_SQL_EVENT_COLUMNS:
        printer_clear(printer);
        printer->names = rkv_calloc(event->n_columns + 1, sizeof(char *));
        if (printer->names == NULL) {
            return -ENOMEM;
        }
        printer->n_columns = event->n_columns;
        for (size_t i = 0; i < event->n_columns; i++) {
            printer->names[i] =
                rkv_memdup(event->names[i], strlen(event->names[i]) + 1);
        }
        return 0;
    case RKV_SQL_EVENT_ROW:
        return printer_add_row(printer, event);
    case RKV_SQL_EVENT_COMPLETE:
        if (printer->names != NULL) {
            printer_flush(printer);
        } else {
            fprintf(printer->out, "%s\n", event->command_tag);
        }
        return 0;
    case RKV_SQL_EVENT_ERROR:
        printer_clear(printer);
        printer->failed = true;
        fprintf(stderr, "ERROR:  %s\n", event->message);
        return 0;
    case RKV_SQL_EVENT_EMPTY:
        return 0;
    }
    return 0;
}

/* ---- modes --------------------------------------------------------------- */

static int run_sql(struct rkv_sql_session *session, const char *sql)
{
    struct printer printer = {.out = stdout};
    int rv = rkv_sql_session_exec(session, sql, printer_event_cb, &printer);

    printer_clear(&printer);
    fflush(stdout);
    if (rv != 0 && rv != RKV_ESQL) {
        fprintf(stderr, "ERROR:  %s\n", rkv_strerror(rv));
    }
    return rv != 0 || printer.failed ? 1 : 0;
}

/* Runs the -e texts in order until one fails. */
static int run_executes(struct rkv_sql_session *session,
                        const struct cli_options *options)
{
    for (size_t i = 0; i < options->n_executes; i++) {
        int status = run_sql(session, options->executes[i]);

        if (status != 0) {
            return status;
        }
    }
    return 0;
}

/* Reads a whole file into a new NUL-terminated string. */
static char *read_file(const char *path)
{
    FILE *in = fopen(path, "rb");
    char *text;
    long len;

    if (in == NULL) {
        fprintf(stderr, "rangekv sql: cannot open %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    if (fseek(in, 0, SEEK_END) != 0 || (len = ftell(in)) < 0 ||
        len > SCRIPT_MAX || fseek(in, 0, SEEK_SET) != 0) {
        fprintf(stderr,
                "rangekv sql: cannot read %s, or it is over %d "
                "bytes\n",
                path, SCRIPT_MAX);
        fclose(in);
        return NULL;
    }
    text = rkv_malloc((size_t)len + 1);
    if (text != NULL && fread(text, 1, (size_t)len, in) != (size_t)len) {
        rkv_free(text);
        text = NULL;
    }
    if (text != NULL) {
        text[len] = '\0';
    }
    fclose(in);
    return text;
}

/* The iso-codes datasets: file, JSON key, then the statements, where %Q
 * receives the file's text as an SQL string literal. */
static const char *const iso_codes[][2] = {
    {"iso_3166-1.json",
     "CREATE TABLE IF NOT EXISTS countries(alpha_2 TEXT PRIMARY KEY, "
     "alpha_3 TEXT NOT NULL, numeric INTEGER, name TEXT NOT NULL, "
     "official_name TEXT);"
     "UPSERT INTO countries SELECT value ->> 'alpha_2', value ->> 'alpha_3', "
     "CAST(value ->> 'numeric' AS INTEGER), value ->> 'name', "
     "value ->> 'official_name' FROM json_each(%Q, '$.\"3166-1\"');"},
    {"iso_3166-2.json",
     "CREATE TABLE IF NOT EXISTS subdivisions(country TEXT, code TEXT, "
     "name TEXT NOT NULL, type TEXT, parent TEXT, "
     "PRIMARY KEY (country, code));"
     "UPSERT INTO subdivisions SELECT substr(value ->> 'code', 1, 2), "
     "value ->> 'code', value ->> 'name', value ->> 'type', "
     "value ->> 'parent' FROM json_each(%Q, '$.\"3166-2\"');"},
    {"iso_639-3.json",
     "CREATE TABLE IF NOT EXISTS languages(alpha_3 TEXT PRIMARY KEY, "
     "name TEXT NOT NULL, scope TEXT, type TEXT, alpha_2 TEXT, "
     "inverted_name TEXT);"
     "UPSERT INTO languages SELECT value ->> 'alpha_3', value ->> 'name', "
     "value ->> 'scope', value ->> 'type', value ->> 'alpha_2', "
     "value ->> 'inverted_name' FROM json_each(%Q, '$.\"639-3\"');"},
};

static int load_iso_codes(struct rkv_sql_session *session, const char *dir)
{
    for (size_t i = 0; i < RKV_ARRAY_SIZE(iso_codes); i++) {
        char path[4096];
        char *json;
        char *sql;
        int status;

        snprintf(path, sizeof(path), "%s/%s", dir, iso_codes[i][0]);
        json = read_file(path);
        if (json == NULL) {
            return 1;
        }
        sql = sqlite3_mprintf(iso_codes[i][1], json);
        rkv_free(json);
        if (sql == NULL) {
            fprintf(stderr, "rangekv sql: out of memory\n");
            return 1;
        }
        printf("loading %s\n", path);
        status = run_sql(session, sql);
        sqlite3_free(sql);
        if (status != 0) {
            return status;
        }
    }
    return 0;
}

/* Reads statements from stdin until EOF, running each once complete. */
static int run_shell(struct rkv_sql_session *session)
{
    struct rkv_sql_buf pending = {0};
    bool interactive = isatty(STDIN_FILENO);
    char line[4096];
    int status = 0;

    for (;;) {
        size_t len;

        if (interactive) {
            fputs(pending.len == 0 ? "rangekv> " : "      -> ", stdout);
            fflush(stdout);
        }
        if (fgets(line, sizeof(line), stdin) == NULL) {
            break;
        }
        if (rkv_sql__buf_append(&pending, line, strlen(line) + 1) != 0 ||
            pending.len > SCRIPT_MAX) {
            fprintf(stderr, "rangekv sql: statement too long\n");
            status = 1;
            break;
        }
        pending.len--; /* keep the NUL out of the length */
        len = rkv_sql__statement_len((const char *)pending.data);
        if (len == pending.len && pending.data[len - 1] != ';' &&
            strchr(line, ';') == NULL) {
            continue; /* the statement goes on */
        }
        status |= run_sql(session, (const char *)pending.data);
        pending.len = 0;
    }
    if (pending.len > 0) {
        pending.data[pending.len] = '\0';
        status |= run_sql(session, (const char *)pending.data);
    }
    rkv_sql__buf_free(&pending);
    return status;
}

static int run_server(struct rkv_sql_kv *kv, const struct cli_options *options)
{
    struct rkv_sql_server_options server_options = {
        .listen_addr = options->listen_addr,
        .password = options->password,
        .connections_max = options->connections_max,
    };
    struct rkv_sql_server *server;
    char address[64];
    sigset_t signals;
    int signal_number;
    int rv;

    /* Block the stop signals before any thread starts, so that only
     * sigwait below receives them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    rv = rkv_sql_server_start(&server_options, kv, &server);
    if (rv != 0) {
        fprintf(stderr, "rangekv sql: cannot listen on %s: %s\n",
                options->listen_addr, rkv_strerror(rv));
        return 1;
    }
    rkv_sql_server_address(server, address, sizeof(address));
    printf("sql: listening on %s\n", address);
    fflush(stdout);
    sigwait(&signals, &signal_number);
    rkv_sql_server_stop(server);
    return 0;
}

static int sql_main(int argc, char **argv)
{
    struct cli_options options = {0};
    struct rkv_sql_session *session = NULL;
    struct rkv_sql_kv *kv = NULL;
    char *script = NULL;
    int status;
    int rv;

    status = parse_options(argc, argv, &options);
    if (status != 0) {
        return status == 1 ? 0 : status;
    }
    rv = rkv_sql_kv_client_open(options.hosts, options.n_hosts, &kv);
    if (rv != 0) {
        fprintf(stderr, "rangekv sql: cannot open a client: %s\n",
                rkv_strerror(rv));
        return 1;
    }
    if (options.listen_addr != NULL) {
        status = run_server(kv, &options);
        kv->vtable->close(kv);
        return status;
    }
    rv = rkv_sql_session_open(kv, &session);
    if (rv != 0) {
        fprintf(stderr, "rangekv sql: cannot open a session: %s\n",
                rkv_strerror(rv));
        kv->vtable->close(kv);
        return 1;
    }
    if (options.iso_codes_dir != NULL) {
        status = load_iso_codes(session, options.iso_codes_dir);
    } else if (options.n_executes > 0) {
        status = run_executes(session, &options);
    } else if (options.file != NULL) {
        script = read_file(options.file);
        status = script != NULL ? run_sql(session, script) : 1;
        rkv_free(script);
    } else {
        status = run_shell(session);
    }
    rkv_sql_session_close(session);
    kv->vtable->close(kv);
    return status;
}

const struct rkv_cli_command rkv_sql_cli_commands[] = {
    {"sql", "run SQL: a PostgreSQL-protocol server or a shell", sql_main},
    {NULL, NULL, NULL},
};
