/*
 * End-to-end SQL tests. Each starts a real 3-node cluster of `rangekv`
 * processes on 127.0.0.1 (`rangekv cluster start`, OS-chosen ports, a low
 * split threshold) with `rangekv sql --listen` in front of it, and uses
 * psql as the client. So every statement crosses the PostgreSQL protocol,
 * the SQL layer, the client library and the nodes' ranges.
 *
 * The binary is $RKV_BUILD_DIR/cmd/rangekv; ctest sets RKV_BUILD_DIR.
 * Without the node runtime (CMake target rkv_node) the tests print why
 * they are skipped.
 */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rangekv/client.h"
#include "sql-lite-front/sql_internal.h"
#include "tests/lib/test.h"

#define NODES 3
#define ADDR_MAX 64
/* Low enough that the iso-codes tables span many ranges. */
#define SPLIT_BYTES "16384"
#define ISO_CODES_DIR "/usr/share/iso-codes/json"
#define OUTPUT_MAX (1024 * 1024)

struct fixture {
    char rangekv[4096];
    char dir[4096];
    char hosts_buf[NODES][ADDR_MAX];
    const char *hosts[NODES];
    size_t n_hosts;
    pid_t sql_pid; /* `rangekv sql --listen` */
    int sql_port;
    pid_t watchdog; /* cleans up if this test process dies */
};

static struct fixture fixture;
static char output[OUTPUT_MAX];

/* Fails unless text contains needle, printing both. */
#define ASSERT_CONTAINS(text, needle)                                          \
    do {                                                                       \
        if (strstr((text), (needle)) == NULL) {                                \
            rkv_test_fail(__FILE__, __LINE__, "expected \"%s\" in:\n%s",       \
                          (needle), (text));                                   \
        }                                                                      \
    } while (0)

static bool cluster_available(void)
{
#ifdef RKV_SQL_HAVE_NODE
    return true;
#else
    printf("skipped: the node runtime (CMake target rkv_node) is not built "
           "yet, so there is no cluster to run SQL against\n");
    return false;
#endif
}

static void cluster_stop(void)
{
    char command[8400];

    snprintf(command, sizeof(command),
             "'%s' cluster stop --dir '%s' >/dev/null 2>&1", fixture.rangekv,
             fixture.dir);
    if (system(command) != 0) {
        fprintf(stderr, "cluster stop --dir %s failed\n", fixture.dir);
    }
}

/* Forks a process that stops the SQL server and the cluster once this
 * test process is gone, because a failed assertion skips teardown. */
static pid_t start_watchdog(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0) {
        return pid;
    }
    signal(SIGTERM, SIG_DFL);
    while (getppid() == parent) {
        usleep(200 * 1000);
    }
    if (fixture.sql_pid > 0) {
        kill(fixture.sql_pid, SIGTERM);
    }
    cluster_stop();
    _exit(0);
}

static void cluster_start(void)
{
    char command[8400];
    char line[512];
    FILE *out;

    snprintf(command, sizeof(command),
             "'%s' cluster start -n %d --dir '%s' --split-bytes %s",
             fixture.rangekv, NODES, fixture.dir, SPLIT_BYTES);
    out = popen(command, "r");
    ASSERT_TRUE(out != NULL);
    while (fgets(line, sizeof(line), out) != NULL) {
        const char *client = strstr(line, " client ");
        size_t len;

        if (strncmp(line, "node ", 5) != 0 || client == NULL ||
            fixture.n_hosts == NODES) {
            continue;
        }
        client += strlen(" client ");
        len = strcspn(client, " \n");
        ASSERT_UINT_LT(len, ADDR_MAX);
        memcpy(fixture.hosts_buf[fixture.n_hosts], client, len);
        fixture.hosts[fixture.n_hosts] = fixture.hosts_buf[fixture.n_hosts];
        fixture.n_hosts++;
    }
    ASSERT_INT_EQ(pclose(out), 0);
    ASSERT_UINT_EQ(fixture.n_hosts, NODES);
}

/* Starts `rangekv sql --listen 127.0.0.1:0` and reads its port. */
static void sql_server_start(void)
{
    char line[256];
    int pipe_fds[2];
    FILE *out;

    ASSERT_INT_EQ(pipe(pipe_fds), 0);
    fixture.sql_pid = fork();
    ASSERT_INT_GE(fixture.sql_pid, 0);
    if (fixture.sql_pid == 0) {
        dup2(pipe_fds[1], STDOUT_FILENO);
        close(pipe_fds[0]);
        execl(fixture.rangekv, fixture.rangekv, "sql", "--host",
              fixture.hosts[0], "--host", fixture.hosts[1], "--listen",
              "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    close(pipe_fds[1]);
    out = fdopen(pipe_fds[0], "r");
    ASSERT_TRUE(out != NULL);
    ASSERT_TRUE(fgets(line, sizeof(line), out) != NULL);
    ASSERT_TRUE(strncmp(line, "sql: listening on 127.0.0.1:", 28) == 0);
    fixture.sql_port = atoi(line + 28);
    ASSERT_INT_GT(fixture.sql_port, 0);
    fclose(out);
}

static bool setup(void)
{
    const char *build_dir = getenv("RKV_BUILD_DIR");

    if (!cluster_available()) {
        return false;
    }
    if (system("psql --version > /dev/null 2>&1") != 0) {
        printf("skipped: psql is not installed (Debian postgresql-client)\n");
        return false;
    }
    memset(&fixture, 0, sizeof(fixture));
    ASSERT_TRUE(build_dir != NULL);
    snprintf(fixture.rangekv, sizeof(fixture.rangekv), "%s/cmd/rangekv",
             build_dir);
    snprintf(fixture.dir, sizeof(fixture.dir), "%s/cluster", rkv_test_tmpdir());
    cluster_start();
    sql_server_start();
    fixture.watchdog = start_watchdog();
    ASSERT_INT_GT(fixture.watchdog, 0);
    return true;
}

static void teardown(void)
{
    int status;

    kill(fixture.sql_pid, SIGTERM);
    ASSERT_INT_EQ(waitpid(fixture.sql_pid, &status, 0), fixture.sql_pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_INT_EQ(WEXITSTATUS(status), 0);
    fixture.sql_pid = 0;
    cluster_stop();
    kill(fixture.watchdog, SIGKILL);
    waitpid(fixture.watchdog, NULL, 0);
}

/* Runs psql with args (shell words) and returns its stdout and stderr. */
static const char *psql(const char *args)
{
    char command[4096];
    FILE *pipe;
    size_t used;

    snprintf(command, sizeof(command),
             "PGCONNECT_TIMEOUT=10 psql -X -h 127.0.0.1 -p %d %s 2>&1",
             fixture.sql_port, args);
    pipe = popen(command, "r");
    ASSERT_TRUE(pipe != NULL);
    used = fread(output, 1, sizeof(output) - 1, pipe);
    output[used] = '\0';
    pclose(pipe);
    return output;
}

/* Runs one query in psql's unaligned, tuples-only form: "a|b" lines. */
static const char *psql_rows(const char *sql)
{
    char args[2048];

    snprintf(args, sizeof(args), "-A -t -c \"%s\"", sql);
    return psql(args);
}

/* psql creates, fills, reads, updates and drops a table in the cluster,
 * and errors come back with PostgreSQL's wording. */
TEST(sql_cluster, psql_statements)
{
    if (!setup()) {
        return;
    }
    psql("-c 'CREATE TABLE pets(owner TEXT, name TEXT, age INTEGER NOT "
         "NULL, PRIMARY KEY (owner, name))' "
         "-c \"INSERT INTO pets VALUES ('ann', 'rex', 3), ('ann', 'tom', 5), "
         "('bo', 'kit', 1)\"");
    ASSERT_CONTAINS(output, "CREATE TABLE\nINSERT 0 3\n");
    ASSERT_STR_EQ(psql_rows("SELECT name, age FROM pets WHERE owner = "
                            "'ann' ORDER BY name"),
                  "rex|3\ntom|5\n");

    ASSERT_STR_EQ(psql_rows("UPSERT INTO pets VALUES ('bo', 'kit', 2)"),
                  "INSERT 0 1\n");
    ASSERT_STR_EQ(psql_rows("UPDATE pets SET age = age + 10 WHERE owner = "
                            "'ann'"),
                  "UPDATE 2\n");
    ASSERT_STR_EQ(psql_rows("SELECT owner, sum(age) FROM pets GROUP BY "
                            "owner"),
                  "ann|28\nbo|2\n");

    psql("-c \"INSERT INTO pets VALUES ('bo', 'kit', 4)\"");
    ASSERT_CONTAINS(output, "ERROR:  duplicate key value violates unique "
                            "constraint \"pets_pkey\"");
    psql("-c \"INSERT INTO pets(owner, name) VALUES ('cy', 'max')\"");
    ASSERT_CONTAINS(output, "ERROR:  null value in column \"age\"");

    ASSERT_STR_EQ(psql_rows("DELETE FROM pets WHERE owner = 'bo'"),
                  "DELETE 1\n");
    ASSERT_STR_EQ(psql_rows("SELECT count(*) FROM pets"), "2\n");
    psql("-c 'DROP TABLE pets' -c 'SELECT * FROM pets'");
    ASSERT_CONTAINS(output, "DROP TABLE\n");
    ASSERT_CONTAINS(output, "ERROR:  relation \"pets\" does not exist");
    teardown();
}

/* Runs `rangekv sql` against the fixture's cluster with args and stdin,
 * returning its stdout and stderr. */
static const char *rangekv_sql(const char *args, const char *input)
{
    char command[8400];
    FILE *pipe;
    size_t used;

    snprintf(command, sizeof(command),
             "printf '%s' | '%s' sql --host %s %s "
             "2>&1",
             input, fixture.rangekv, fixture.hosts[1], args);
    pipe = popen(command, "r");
    ASSERT_TRUE(pipe != NULL);
    used = fread(output, 1, sizeof(output) - 1, pipe);
    output[used] = '\0';
    pclose(pipe);
    return output;
}

/* Without --listen, `rangekv sql` runs statements from -e or from stdin,
 * a statement possibly spanning lines, and prints them as psql does. */
TEST(sql_cluster, shell_and_execute)
{
    if (!setup()) {
        return;
    }
    rangekv_sql("", "CREATE TABLE sh(k INTEGER PRIMARY KEY, v TEXT);\\n"
                    "INSERT INTO sh VALUES (1, NULL),\\n (22, '\\''b'\\'');\\n"
                    "SELECT * FROM sh;\\nSELECT nope;\\n");
    ASSERT_CONTAINS(output, "CREATE TABLE\nINSERT 0 2\n");
    ASSERT_CONTAINS(output, " k  | v \n----+---\n 1  | \n 22 | b\n(2 rows)\n");
    ASSERT_CONTAINS(output, "ERROR:  ");
    rangekv_sql("-e 'SELECT count(*) AS n FROM sh'", "");
    ASSERT_CONTAINS(output, " n \n---\n 2\n(1 row)\n");
    teardown();
}

/* Repeated -e options run in order, and the first that fails stops the
 * rest; -e with -f is a usage error. */
TEST(sql_cluster, repeated_execute)
{
    if (!setup()) {
        return;
    }
    rangekv_sql("-e 'CREATE TABLE ex(k INTEGER PRIMARY KEY)' "
                "-e 'INSERT INTO ex VALUES (1)' "
                "-e 'SELECT count(*) AS n FROM ex'",
                "");
    ASSERT_CONTAINS(output, "CREATE TABLE\nINSERT 0 1\n n \n---\n 1\n"
                            "(1 row)\n");
    rangekv_sql("-e 'SELECT nope FROM ex' -e 'INSERT INTO ex VALUES (2)'", "");
    ASSERT_CONTAINS(output, "ERROR:  ");
    ASSERT_TRUE(strstr(output, "INSERT") == NULL);
    rangekv_sql("-e 'SELECT count(*) AS n FROM ex'", "");
    ASSERT_CONTAINS(output, " n \n---\n 1\n(1 row)\n");
    rangekv_sql("-e 'SELECT 1' -f /dev/null", "");
    ASSERT_CONTAINS(output, "rangekv sql: give -e or -f, not both\n");
    teardown();
}

/* Four psql clients write at once through one listener, whose sessions
 * run on worker threads over one shared client; no write is lost and the
 * hidden row keys of concurrent sessions never collide. */
TEST(sql_cluster, concurrent_clients)
{
    char command[8400];

    if (!setup()) {
        return;
    }
    psql("-c 'CREATE TABLE log(client INTEGER, n INTEGER)'");
    ASSERT_CONTAINS(output, "CREATE TABLE\n");
    snprintf(command, sizeof(command),
             "for c in 1 2 3 4; do for n in $(seq 1 25); do "
             "echo \"INSERT INTO log VALUES ($c, $n);\"; done | "
             "PGCONNECT_TIMEOUT=10 psql -X -q -h 127.0.0.1 -p %d "
             "-v ON_ERROR_STOP=1 > /dev/null & done; wait",
             fixture.sql_port);
    ASSERT_INT_EQ(system(command), 0);
    ASSERT_STR_EQ(psql_rows("SELECT count(*), count(DISTINCT rowid_), "
                            "count(DISTINCT client) FROM log"),
                  "100|100|4\n");
    ASSERT_STR_EQ(psql_rows("SELECT client, sum(n) FROM log GROUP BY client"),
                  "1|325\n2|325\n3|325\n4|325\n");
    teardown();
}

/* Encodes the key where the row of table_id with integer key k starts. */
static void row_key(uint64_t table_id, int64_t k, struct rkv_sql_buf *key)
{
    struct rkv_sql_datum datum = {.type = RKV_SQL_INTEGER, .integer = k};

    key->len = 0;
    ASSERT_OK(rkv_sql__key_append_prefix(key, table_id, 1));
    ASSERT_OK(rkv_sql__key_append_datum(key, &datum, false));
}

/* Returns the range id on the SHOW RANGES line whose start key (the
 * second field of "range_id|start|end|..." lines) is start, or 0. */
static uint64_t range_starting_at(const char *rows, const char *start)
{
    size_t start_len = strlen(start);

    for (const char *line = rows; *line != '\0';) {
        const char *field = strchr(line, '|');
        const char *next = strchr(line, '\n');

        if (field != NULL && (next == NULL || field < next) &&
            strncmp(field + 1, start, start_len) == 0 &&
            field[1 + start_len] == '|') {
            return strtoull(line, NULL, 10);
        }
        if (next == NULL) {
            break;
        }
        line = next + 1;
    }
    return 0;
}

/* After forced splits, EXPLAIN shows that a point query touches only the
 * range holding its key and a range query only the two it overlaps. */
TEST(sql_cluster, point_and_range_queries_after_splits)
{
    static char ranges[OUTPUT_MAX];
    struct rkv_client_options options = {0};
    struct rkv_client *client;
    struct rkv_sql_buf key = {0};
    char expected[128];
    uint64_t middle;
    uint64_t right;
    uint64_t table_id;

    if (!setup()) {
        return;
    }
    psql("-c 'CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)' "
         "-c \"WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM "
         "s WHERE x < 300) INSERT INTO t SELECT x, 'v' || x FROM s\"");
    ASSERT_CONTAINS(output, "INSERT 0 300\n");
    ASSERT_STR_EQ(psql_rows("SHOW TABLES"), "t|100\n");
    table_id = RKV_SQL_FIRST_USER_TABLE_ID;
    ASSERT_UINT_GE(table_id, RKV_SQL_FIRST_USER_TABLE_ID);

    options.hosts = fixture.hosts;
    options.n_hosts = fixture.n_hosts;
    ASSERT_OK(rkv_client_open(&options, &client));
    row_key(table_id, 100, &key);
    ASSERT_OK(rkv_client_split(client, key.data, key.len));
    row_key(table_id, 200, &key);
    ASSERT_OK(rkv_client_split(client, key.data, key.len));
    rkv_client_close(client);
    rkv_sql__buf_free(&key);

    snprintf(ranges, sizeof(ranges), "%s",
             psql_rows("SHOW RANGES FROM TABLE t"));
    snprintf(expected, sizeof(expected), "/Table/%llu/1/100",
             (unsigned long long)table_id);
    middle = range_starting_at(ranges, expected);
    snprintf(expected, sizeof(expected), "/Table/%llu/1/200",
             (unsigned long long)table_id);
    right = range_starting_at(ranges, expected);
    ASSERT_UINT_NE(middle, 0);
    ASSERT_UINT_NE(right, 0);

    ASSERT_STR_EQ(psql_rows("SELECT v FROM t WHERE k = 150"), "v150\n");
    psql_rows("EXPLAIN SELECT v FROM t WHERE k = 150");
    snprintf(expected, sizeof(expected), "ranges touched: %llu\n",
             (unsigned long long)middle);
    ASSERT_CONTAINS(output, expected);

    ASSERT_STR_EQ(psql_rows("SELECT count(*) FROM t WHERE k >= 150 AND "
                            "k < 250"),
                  "100\n");
    psql_rows("EXPLAIN SELECT count(*) FROM t WHERE k >= 150 AND k < 250");
    snprintf(expected, sizeof(expected), "ranges touched: %llu, %llu\n",
             (unsigned long long)RKV_MIN(middle, right),
             (unsigned long long)RKV_MAX(middle, right));
    if (strstr(output, expected) == NULL) {
        rkv_test_fail(__FILE__, __LINE__,
                      "expected \"%s\" in:\n%s\nranges:\n%s", expected, output,
                      ranges);
    }
    teardown();
}

/* Renders a query's rows on a plain SQLite database as psql -A -t does:
 * "a|b" lines, NULL as an empty field. */
static void sqlite_rows(sqlite3 *db, const char *sql, char *out, size_t out_len)
{
    sqlite3_stmt *stmt;
    size_t used = 0;

    out[0] = '\0';
    ASSERT_INT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(stmt); i++) {
            size_t len;
            char *text =
                rkv_sql__value_text(sqlite3_column_value(stmt, i), &len);

            used +=
                (size_t)snprintf(out + used, out_len - used, "%s%s",
                                 i > 0 ? "|" : "", text != NULL ? text : "");
            sqlite3_free(text);
        }
        used += (size_t)snprintf(out + used, out_len - used, "\n");
    }
    sqlite3_finalize(stmt);
}

/* Loads the iso-codes JSON into plain SQLite tables shaped like the ones
 * `rangekv sql --load-iso-codes` creates. */
static void sqlite_load_iso_codes(sqlite3 *db)
{
    static const char sql[] =
        "CREATE TABLE countries(alpha_2 TEXT PRIMARY KEY, alpha_3 TEXT, "
        "numeric INTEGER, name TEXT, official_name TEXT);"
        "CREATE TABLE subdivisions(country TEXT, code TEXT, name TEXT, "
        "type TEXT, parent TEXT, PRIMARY KEY (country, code));"
        "CREATE TABLE languages(alpha_3 TEXT PRIMARY KEY, name TEXT, "
        "scope TEXT, type TEXT, alpha_2 TEXT, inverted_name TEXT);"
        "INSERT INTO countries SELECT value ->> 'alpha_2', "
        "value ->> 'alpha_3', CAST(value ->> 'numeric' AS INTEGER), "
        "value ->> 'name', value ->> 'official_name' FROM "
        "json_each(readfile('" ISO_CODES_DIR "/iso_3166-1.json'), "
        "'$.\"3166-1\"');"
        "INSERT INTO subdivisions SELECT substr(value ->> 'code', 1, 2), "
        "value ->> 'code', value ->> 'name', value ->> 'type', "
        "value ->> 'parent' FROM json_each(readfile('" ISO_CODES_DIR
        "/iso_3166-2.json'), '$.\"3166-2\"');"
        "INSERT INTO languages SELECT value ->> 'alpha_3', value ->> 'name', "
        "value ->> 'scope', value ->> 'type', value ->> 'alpha_2', "
        "value ->> 'inverted_name' FROM json_each(readfile('" ISO_CODES_DIR
        "/iso_639-3.json'), '$.\"639-3\"');";
    char *error = NULL;

    ASSERT_INT_EQ(sqlite3_exec(db, sql, NULL, NULL, &error), SQLITE_OK);
}

/* SQLite has no readfile() outside its shell; this is it. */
static void readfile_fn(sqlite3_context *context, int argc,
                        sqlite3_value **argv)
{
    const char *path = (const char *)sqlite3_value_text(argv[0]);
    FILE *in = fopen(path, "rb");
    static char data[2 * 1024 * 1024];
    size_t len;

    if (in == NULL) {
        sqlite3_result_error(context, "cannot open file", -1);
        return;
    }
    len = fread(data, 1, sizeof(data), in);
    fclose(in);
    sqlite3_result_text(context, data, (int)len, SQLITE_TRANSIENT);
}

/* The iso-codes data loaded through the SQL layer spans several ranges,
 * and joins, range predicates and aggregates return what SQLite returns
 * on the same data. */
TEST(sql_cluster, iso_codes_match_sqlite)
{
    static const char *const queries[] = {
        "SELECT count(*) FROM countries",
        "SELECT count(*), count(parent), count(DISTINCT type) FROM "
        "subdivisions",
        "SELECT c.name, count(*) AS n FROM countries c JOIN subdivisions s "
        "ON s.country = c.alpha_2 GROUP BY c.alpha_2 ORDER BY n DESC, "
        "c.name LIMIT 10",
        "SELECT code, name FROM subdivisions WHERE country = 'FR' AND code "
        "BETWEEN 'FR-6' AND 'FR-9' ORDER BY code",
        "SELECT alpha_3, name FROM languages WHERE alpha_3 >= 'fra' AND "
        "alpha_3 < 'frz'",
        "SELECT scope, type, count(*) FROM languages GROUP BY scope, type "
        "ORDER BY scope, type",
        "SELECT c.alpha_3, c.name FROM countries c WHERE NOT EXISTS "
        "(SELECT 1 FROM subdivisions s WHERE s.country = c.alpha_2) ORDER "
        "BY c.alpha_3",
        "SELECT l.name FROM languages l JOIN countries c ON "
        "lower(c.alpha_2) = l.alpha_2 WHERE c.alpha_2 IN ('DE', 'JP', "
        "'BR') ORDER BY l.name",
        "SELECT max(numeric), min(numeric), sum(numeric) FROM countries",
    };
    static char expected[OUTPUT_MAX];
    char command[8400];
    sqlite3 *db;
    int rv;

    if (!setup()) {
        return;
    }
    snprintf(command, sizeof(command),
             "'%s' sql --host %s --load-iso-codes %s > /dev/null",
             fixture.rangekv, fixture.hosts[2], ISO_CODES_DIR);
    rv = system(command);
    ASSERT_INT_EQ(rv, 0);

    psql_rows("SHOW RANGES FROM TABLE subdivisions");
    ASSERT_TRUE(strchr(strchr(strchr(output, '\n') + 1, '\n') + 1, '\n') !=
                NULL);

    ASSERT_INT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    sqlite3_create_function(db, "readfile", 1, SQLITE_UTF8, NULL, readfile_fn,
                            NULL, NULL);
    sqlite_load_iso_codes(db);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(queries); i++) {
        sqlite_rows(db, queries[i], expected, sizeof(expected));
        ASSERT_TRUE(expected[0] != '\0');
        ASSERT_STR_EQ(psql_rows(queries[i]), expected);
    }
    sqlite3_close(db);
    teardown();
}
