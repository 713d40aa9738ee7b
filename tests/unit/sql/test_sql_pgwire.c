/* Checks the PostgreSQL protocol listener byte by byte with a raw client,
 * and with psql, over the in-process store. */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sql-lite-front/sql.h"
#include "tests/lib/test.h"
#include "tests/unit/sql/kv_local.h"

struct fixture {
    struct rkv_sql_kv *kv;
    struct rkv_sql_server *server;
    int port;
};

/* One server message: its type and body. */
struct message {
    char type;
    uint8_t body[4096];
    size_t body_len;
};

static struct fixture fixture;

static void setup_options(const struct rkv_sql_server_options *options)
{
    char address[64];
    const char *colon;

    /* A client that hangs up mid-write must not kill the test process,
     * as it does not kill `rangekv`. */
    signal(SIGPIPE, SIG_IGN);
    memset(&fixture, 0, sizeof(fixture));
    fixture.kv = kv_local_open();
    ASSERT_TRUE(fixture.kv != NULL);
    ASSERT_OK(rkv_sql_server_start(options, fixture.kv, &fixture.server));
    rkv_sql_server_address(fixture.server, address, sizeof(address));
    colon = strrchr(address, ':');
    ASSERT_TRUE(colon != NULL);
    fixture.port = atoi(colon + 1);
    ASSERT_INT_GT(fixture.port, 0);
}

static void setup(const char *password, uint32_t connections_max)
{
    struct rkv_sql_server_options options = {
        .listen_addr = "127.0.0.1:0",
        .password = password,
        .connections_max = connections_max,
    };

    setup_options(&options);
}

static void teardown(void)
{
    rkv_sql_server_stop(fixture.server);
    fixture.kv->vtable->close(fixture.kv);
}

static int raw_connect(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ASSERT_INT_GE(fd, 0);
    addr.sin_port = htons((uint16_t)fixture.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_INT_EQ(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    ASSERT_INT_EQ(write(fd, data, len), (long long)len);
}

static void read_exact(int fd, uint8_t *out, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, out + got, len - got);

        if (n <= 0) {
            rkv_test_fail(__FILE__, __LINE__,
                          "connection ended after %zu of "
                          "%zu bytes",
                          got, len);
        }
        got += (size_t)n;
    }
}

static void read_message(int fd, struct message *message)
{
    uint8_t header[5];
    uint32_t length;

    read_exact(fd, header, 5);
    message->type = (char)header[0];
    length = rkv_get_be32(header + 1);
    ASSERT_UINT_GE(length, 4);
    ASSERT_UINT_LE(length - 4, sizeof(message->body));
    message->body_len = length - 4;
    read_exact(fd, message->body, message->body_len);
}

/* Returns the value of one field ('C' code, 'M' message) of an error. */
static const char *error_field(const struct message *message, char field)
{
    size_t pos = 0;

    while (pos < message->body_len && message->body[pos] != 0) {
        const char *value = (const char *)message->body + pos + 1;

        if ((char)message->body[pos] == field) {
            return value;
        }
        pos += 2 + strlen(value);
    }
    return "";
}

/* Sends a startup packet for protocol 3.0 with user and database. */
static void send_startup(int fd, const char *user)
{
    uint8_t packet[256];
    size_t len = 8;

    rkv_put_be32(packet + 4, 196608);
    len += (size_t)sprintf((char *)packet + len, "user") + 1;
    len += (size_t)sprintf((char *)packet + len, "%s", user) + 1;
    len += (size_t)sprintf((char *)packet + len, "database") + 1;
    len += (size_t)sprintf((char *)packet + len, "postgres") + 1;
    packet[len++] = 0;
    rkv_put_be32(packet, (uint32_t)len);
    send_all(fd, packet, len);
}

static void send_message(int fd, char type, const void *body, size_t len)
{
    uint8_t header[5];

    header[0] = (uint8_t)type;
    rkv_put_be32(header + 1, (uint32_t)(len + 4));
    send_all(fd, header, 5);
    if (len > 0) {
        send_all(fd, body, len);
    }
}

static void send_query(int fd, const char *sql)
{
    send_message(fd, 'Q', sql, strlen(sql) + 1);
}

/* Reads messages until ReadyForQuery, failing on an unexpected type. */
static void expect_ready(int fd)
{
    struct message message;

    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'Z');
    ASSERT_UINT_EQ(message.body_len, 1);
    ASSERT_INT_EQ(message.body[0], 'I');
}

/* Reads the startup reply: AuthenticationOk, parameters, key data and
 * ReadyForQuery. */
static void expect_startup_done(int fd)
{
    struct message message;
    bool saw_version = false;

    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'R');
    ASSERT_UINT_EQ(rkv_get_be32(message.body), 0);
    for (;;) {
        read_message(fd, &message);
        if (message.type != 'S') {
            break;
        }
        saw_version = saw_version ||
                      strcmp((const char *)message.body, "server_version") == 0;
    }
    ASSERT_TRUE(saw_version);
    ASSERT_INT_EQ(message.type, 'K');
    expect_ready(fd);
}

/* An SSL request is refused with 'N', then startup and a query follow
 * the protocol message by message. */
TEST(sql_pgwire, startup_and_simple_query)
{
    static const uint8_t ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    struct message message;
    uint8_t answer;
    int fd;

    setup(NULL, 0);
    fd = raw_connect();
    send_all(fd, ssl_request, sizeof(ssl_request));
    read_exact(fd, &answer, 1);
    ASSERT_INT_EQ(answer, 'N');
    send_startup(fd, "tester");
    expect_startup_done(fd);

    send_query(fd, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); "
                   "INSERT INTO t VALUES (1, NULL), (2, 'two')");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'C');
    ASSERT_STR_EQ((const char *)message.body, "CREATE TABLE");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'C');
    ASSERT_STR_EQ((const char *)message.body, "INSERT 0 2");
    expect_ready(fd);

    send_query(fd, "SELECT k, v FROM t");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'T');
    ASSERT_UINT_EQ((message.body[0] << 8) | message.body[1], 2);
    ASSERT_STR_EQ((const char *)message.body + 2, "k");
    /* The first field's type OID follows its name, table oid and attnum. */
    ASSERT_UINT_EQ(rkv_get_be32(message.body + 2 + 2 + 4 + 2), 20);
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'D');
    ASSERT_UINT_EQ(rkv_get_be32(message.body + 2), 1);
    ASSERT_INT_EQ(message.body[6], '1');
    ASSERT_UINT_EQ(rkv_get_be32(message.body + 7), UINT32_MAX); /* NULL */
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'D');
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'C');
    ASSERT_STR_EQ((const char *)message.body, "SELECT 2");
    expect_ready(fd);

    send_query(fd, "");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'I');
    expect_ready(fd);

    send_query(fd, "SELECT * FROM missing");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'S'), "ERROR");
    ASSERT_STR_EQ(error_field(&message, 'C'), "42P01");
    ASSERT_STR_EQ(error_field(&message, 'M'),
                  "relation \"missing\" does not exist");
    expect_ready(fd);

    send_message(fd, 'X', NULL, 0);
    ASSERT_INT_EQ(read(fd, &answer, 1), 0);
    close(fd);
    teardown();
}

/* Extended-protocol messages get one error, then Sync recovers. */
TEST(sql_pgwire, extended_protocol_rejected)
{
    struct message message;
    int fd;

    setup(NULL, 0);
    fd = raw_connect();
    send_startup(fd, "tester");
    expect_startup_done(fd);
    send_message(fd, 'P', "\0SELECT 1\0\0\0", 13);
    send_message(fd, 'B', "\0\0\0\0\0\0\0\0", 8);
    send_message(fd, 'S', NULL, 0);
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), "0A000");
    expect_ready(fd);
    send_query(fd, "SELECT 1");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'T');
    close(fd);
    teardown();
}

/* A message length over the limit is a protocol violation and closes. */
TEST(sql_pgwire, oversized_message_closes)
{
    uint8_t header[5] = {'Q', 0x7f, 0xff, 0xff, 0xff};
    struct message message;
    uint8_t byte;
    int fd;

    setup(NULL, 0);
    fd = raw_connect();
    send_startup(fd, "tester");
    expect_startup_done(fd);
    send_all(fd, header, sizeof(header));
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), "08P01");
    ASSERT_INT_EQ(read(fd, &byte, 1), 0);
    close(fd);
    teardown();
}

/* Warning lines the server logged, captured by capture_log_cb. */
static struct {
    pthread_mutex_t lock;
    char text[8192];
    size_t len;
} captured_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void capture_log_cb(void *data, enum rkv_log_level level,
                           uint64_t node_id, const char *subsys,
                           const char *file, int line, const char *message)
{
    (void)data;
    (void)node_id;
    (void)subsys;
    (void)file;
    (void)line;
    if (level < RKV_WARN) {
        return;
    }
    pthread_mutex_lock(&captured_log.lock);
    captured_log.len += (size_t)snprintf(
        captured_log.text + captured_log.len,
        sizeof(captured_log.text) - captured_log.len, "%s\n", message);
    captured_log.len = RKV_MIN(captured_log.len, sizeof(captured_log.text) - 1);
    pthread_mutex_unlock(&captured_log.lock);
}

/* Counts the captured lines that contain needle. */
static int count_log_lines(const char *needle)
{
    int n = 0;

    pthread_mutex_lock(&captured_log.lock);
    for (const char *pos = strstr(captured_log.text, needle); pos != NULL;
         pos = strstr(pos + 1, needle)) {
        n++;
    }
    pthread_mutex_unlock(&captured_log.lock);
    return n;
}

/* A protocol violation is logged with the user and the error; a second
 * one within the log interval is counted, not logged again. */
TEST(sql_pgwire, protocol_errors_logged)
{
    struct message message;
    uint8_t byte;
    int fd;

    rkv_log_set_emitter(capture_log_cb, NULL);
    setup(NULL, 0);
    fd = raw_connect();
    send_startup(fd, "mallory");
    expect_startup_done(fd);
    send_message(fd, '?', NULL, 0);
    read_message(fd, &message);
    ASSERT_STR_EQ(error_field(&message, 'C'), "08P01");
    ASSERT_INT_EQ(read(fd, &byte, 1), 0);
    close(fd);

    fd = raw_connect();
    send_startup(fd, "mallory");
    expect_startup_done(fd);
    send_message(fd, '?', NULL, 0);
    read_message(fd, &message);
    ASSERT_STR_EQ(error_field(&message, 'C'), "08P01");
    ASSERT_INT_EQ(read(fd, &byte, 1), 0);
    close(fd);
    teardown();
    rkv_log_set_emitter(NULL, NULL);

    ASSERT_INT_EQ(count_log_lines("pg protocol error, closing the connection "
                                  "user=mallory error=\"unknown message "
                                  "type\" closed=1"),
                  1);
    ASSERT_INT_EQ(count_log_lines("pg protocol error"), 1);
}

/* With a password, a wrong one is rejected with 28P01 and the right one
 * is accepted. */
TEST(sql_pgwire, password_authentication)
{
    struct message message;
    int fd;

    setup("s3cret", 0);
    fd = raw_connect();
    send_startup(fd, "alice");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'R');
    ASSERT_UINT_EQ(rkv_get_be32(message.body), 3);
    send_message(fd, 'p', "s3cre", 6);
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), "28P01");
    ASSERT_STR_EQ(error_field(&message, 'M'),
                  "password authentication failed for user \"alice\"");
    close(fd);

    fd = raw_connect();
    send_startup(fd, "alice");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'R');
    send_message(fd, 'p', "s3cret", 7);
    expect_startup_done(fd);
    close(fd);
    teardown();
}

/* Past connections_max sessions a client's startup gets 53300 and a
 * close; once a session ends, a new client gets in. */
TEST(sql_pgwire, connection_limit)
{
    struct message message;
    uint8_t byte;
    int first;
    int second;

    setup(NULL, 1);
    first = raw_connect();
    send_startup(first, "one");
    expect_startup_done(first);
    second = raw_connect();
    send_startup(second, "two");
    read_message(second, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), "53300");
    ASSERT_STR_EQ(error_field(&message, 'M'),
                  "sorry, too many clients already");
    ASSERT_INT_EQ(read(second, &byte, 1), 0);
    close(second);

    /* The slot frees when the server has seen the first client go. */
    send_message(first, 'X', NULL, 0);
    ASSERT_INT_EQ(read(first, &byte, 1), 0);
    close(first);
    second = raw_connect();
    send_startup(second, "two");
    expect_startup_done(second);
    close(second);
    teardown();
}

/* Reads the error a pending connection gets at the startup timeout, then
 * the close. */
static void expect_startup_timeout(int fd)
{
    struct message message;
    uint8_t byte;

    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), "08P01");
    ASSERT_STR_EQ(error_field(&message, 'M'),
                  "startup not completed within 1000 ms; closing the "
                  "connection");
    ASSERT_INT_EQ(read(fd, &byte, 1), 0);
}

/* Connections that never finish startup get 08P01 and a close at the
 * startup timeout: a session opened before them keeps working past the
 * timeout, and a new client gets in afterwards. */
TEST(sql_pgwire, idle_connections_time_out)
{
    struct rkv_sql_server_options options = {
        .listen_addr = "127.0.0.1:0",
        .connections_max = 2,
        .pending_max = 3,
        .startup_timeout_ms = 1000,
    };
    static const uint8_t partial_startup[6] = {0, 0, 0, 40, 0, 3};
    struct message message;
    int session;
    int idle[3];
    int late;

    setup_options(&options);
    session = raw_connect();
    send_startup(session, "early");
    expect_startup_done(session);

    /* Two send nothing, one sends half a startup packet. */
    idle[0] = raw_connect();
    idle[1] = raw_connect();
    send_all(idle[1], partial_startup, sizeof(partial_startup));
    idle[2] = raw_connect();
    for (size_t i = 0; i < 3; i++) {
        expect_startup_timeout(idle[i]);
        close(idle[i]);
    }

    /* The session that started before the timeout still runs queries. */
    send_query(session, "SELECT 1");
    read_message(session, &message);
    ASSERT_INT_EQ(message.type, 'T');
    read_message(session, &message);
    ASSERT_INT_EQ(message.type, 'D');
    read_message(session, &message);
    ASSERT_INT_EQ(message.type, 'C');
    expect_ready(session);

    late = raw_connect();
    send_startup(late, "late");
    expect_startup_done(late);
    close(late);
    close(session);
    teardown();
}

/* Reads the 53300 error a pending connection gets when a newer one
 * pushes it out, then the close. */
static void expect_pushed_out(int fd)
{
    struct message message;
    uint8_t byte;

    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), "53300");
    ASSERT_STR_EQ(error_field(&message, 'M'),
                  "sorry, too many connections are starting; this one, the "
                  "oldest, was closed");
    ASSERT_INT_EQ(read(fd, &byte, 1), 0);
}

/* With every pending slot taken by idle connections, a new client still
 * gets in at once: each new connection closes the oldest pending one. */
TEST(sql_pgwire, new_connection_closes_oldest_pending)
{
    struct rkv_sql_server_options options = {
        .listen_addr = "127.0.0.1:0",
        .pending_max = 2,
    };
    struct message message;
    int idle[3];
    int client;
    int second;

    setup_options(&options);
    idle[0] = raw_connect();
    idle[1] = raw_connect();

    client = raw_connect();
    expect_pushed_out(idle[0]);
    close(idle[0]);
    send_startup(client, "client");
    expect_startup_done(client);

    /* The session no longer counts as pending: with idle[1] and idle[2]
     * pending, the next connection pushes out idle[1], not the session. */
    idle[2] = raw_connect();
    second = raw_connect();
    expect_pushed_out(idle[1]);
    close(idle[1]);
    send_startup(second, "second");
    expect_startup_done(second);
    send_query(client, "SELECT 1");
    read_message(client, &message);
    ASSERT_INT_EQ(message.type, 'T');
    read_message(client, &message);
    ASSERT_INT_EQ(message.type, 'D');
    read_message(client, &message);
    ASSERT_STR_EQ((const char *)message.body, "SELECT 1");
    expect_ready(client);
    close(idle[2]);
    close(second);
    close(client);
    teardown();
}

/* With a password, a client that never answers the password request is
 * closed at the startup timeout too. */
TEST(sql_pgwire, password_wait_times_out)
{
    struct rkv_sql_server_options options = {
        .listen_addr = "127.0.0.1:0",
        .password = "s3cret",
        .startup_timeout_ms = 1000,
    };
    struct message message;
    int fd;

    setup_options(&options);
    fd = raw_connect();
    send_startup(fd, "alice");
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'R');
    ASSERT_UINT_EQ(rkv_get_be32(message.body), 3);
    expect_startup_timeout(fd);
    close(fd);
    teardown();
}

/* Runs psql against the fixture and returns its output (stderr too). */
static void run_psql(const char *args, char *out, size_t out_len)
{
    char command[1024];
    FILE *pipe;
    size_t used = 0;

    snprintf(command, sizeof(command),
             "PGCONNECT_TIMEOUT=10 psql -X -h 127.0.0.1 -p %d %s 2>&1",
             fixture.port, args);
    pipe = popen(command, "r");
    ASSERT_TRUE(pipe != NULL);
    used = fread(out, 1, out_len - 1, pipe);
    out[used] = '\0';
    pclose(pipe);
}

/* psql 15 connects with its default user and database names, runs
 * statements, and shows errors as it does for PostgreSQL. */
TEST(sql_pgwire, psql_session)
{
    static char out[8192];

    if (system("psql --version > /dev/null 2>&1") != 0) {
        printf("skipped: psql is not installed (Debian postgresql-client)\n");
        return;
    }
    setup(NULL, 0);
    run_psql("-c 'CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT)' "
             "-c \"INSERT INTO p VALUES (1, 'ada'), (2, 'bob')\" "
             "-c 'SELECT name FROM p WHERE id >= 2' "
             "-c 'SELECT * FROM nowhere'",
             out, sizeof(out));
    ASSERT_TRUE(strstr(out, "CREATE TABLE\n") != NULL);
    ASSERT_TRUE(strstr(out, "INSERT 0 2\n") != NULL);
    ASSERT_TRUE(strstr(out, " name \n------\n bob\n(1 row)\n") != NULL);
    ASSERT_TRUE(strstr(out, "ERROR:  relation \"nowhere\" does not exist") !=
                NULL);
    run_psql("-A -t -c 'SELECT count(*), max(name) FROM p'", out, sizeof(out));
    ASSERT_STR_EQ(out, "2|bob\n");
    teardown();
}

/* Reads the messages of SELECT count(*) and checks the count. */
static void expect_count(int fd, char expected)
{
    struct message message;

    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'T');
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'D');
    ASSERT_UINT_EQ(rkv_get_be32(message.body + 2), 1);
    ASSERT_INT_EQ(message.body[6], expected);
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'C');
    expect_ready(fd);
}

/* Sends one query and checks that it fails with sqlstate. */
static void expect_query_fails(int fd, const char *sql, const char *sqlstate)
{
    struct message message;

    send_query(fd, sql);
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'E');
    ASSERT_STR_EQ(error_field(&message, 'C'), sqlstate);
    expect_ready(fd);
}

/* Sends one query and checks its only command tag. */
static void expect_query_tag(int fd, const char *sql, const char *tag)
{
    struct message message;

    send_query(fd, sql);
    read_message(fd, &message);
    ASSERT_INT_EQ(message.type, 'C');
    ASSERT_STR_EQ((const char *)message.body, tag);
    expect_ready(fd);
}

/* In one simple query, the first failing statement stops the rest: after
 * the rejected BEGIN, the INSERT and ROLLBACK do not run, and the session
 * rejects statements until a ROLLBACK of its own. */
TEST(sql_pgwire, error_skips_rest_of_query)
{
    int fd;

    setup(NULL, 0);
    fd = raw_connect();
    send_startup(fd, "tester");
    expect_startup_done(fd);
    expect_query_tag(fd, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)",
                     "CREATE TABLE");

    expect_query_fails(fd, "BEGIN; INSERT INTO t VALUES (3, 'c'); ROLLBACK",
                       "0A000");
    expect_query_fails(fd, "SELECT count(*) FROM t", "25P02");
    expect_query_tag(fd, "ROLLBACK", "ROLLBACK");
    send_query(fd, "SELECT count(*) FROM t");
    expect_count(fd, '0');
    close(fd);
    teardown();
}

/* psql sends a script's statements one query each: after the rejected
 * BEGIN, the INSERT is rejected with 25P02 and stores nothing, and the
 * ROLLBACK ends the block. */
TEST(sql_pgwire, rejected_begin_blocks_statements)
{
    int fd;

    setup(NULL, 0);
    fd = raw_connect();
    send_startup(fd, "tester");
    expect_startup_done(fd);
    expect_query_tag(fd, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)",
                     "CREATE TABLE");

    expect_query_fails(fd, "begin;", "0A000");
    expect_query_fails(fd, "insert into t values (3, 'c');", "25P02");
    expect_query_tag(fd, "rollback;", "ROLLBACK");
    send_query(fd, "SELECT count(*) FROM t");
    expect_count(fd, '0');

    /* Statements commit on their own again after the block. */
    expect_query_tag(fd, "insert into t values (3, 'c')", "INSERT 0 1");
    send_query(fd, "SELECT count(*) FROM t");
    expect_count(fd, '1');
    close(fd);
    teardown();
}

/* A psql script that wraps an INSERT in BEGIN and ROLLBACK stores
 * nothing: psql sends each statement as its own query, and the INSERT
 * after the rejected BEGIN is rejected too. */
TEST(sql_pgwire, psql_script_rejected_begin)
{
    static char out[8192];
    char path[512];
    char args[600];
    FILE *script;

    if (system("psql --version > /dev/null 2>&1") != 0) {
        printf("skipped: psql is not installed (Debian postgresql-client)\n");
        return;
    }
    setup(NULL, 0);
    snprintf(path, sizeof(path), "%s/block.sql", rkv_test_tmpdir());
    script = fopen(path, "w");
    ASSERT_TRUE(script != NULL);
    fputs("create table b (k integer primary key, v text);\n"
          "begin;\n"
          "insert into b values (3, 'c');\n"
          "rollback;\n"
          "select count(*) as n from b;\n",
          script);
    ASSERT_INT_EQ(fclose(script), 0);
    snprintf(args, sizeof(args), "-f %s", path);
    run_psql(args, out, sizeof(out));
    ASSERT_TRUE(strstr(out, "transaction blocks are not supported") != NULL);
    ASSERT_TRUE(strstr(out, "ERROR:  current transaction is aborted") != NULL);
    ASSERT_TRUE(strstr(out, "ROLLBACK\n") != NULL);
    ASSERT_TRUE(strstr(out, " n \n---\n 0\n(1 row)\n") != NULL);
    teardown();
}
