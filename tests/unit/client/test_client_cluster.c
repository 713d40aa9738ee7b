/*
 * The client library and the client subcommands against a real 3-node
 * cluster of `rangekv start` processes, started with `rangekv cluster
 * start` from $RKV_BUILD_DIR/cmd/rangekv on 127.0.0.1 with OS-chosen ports:
 * puts and gets across splits, scans across ranges, CAS, batch, and a node
 * killed mid-load, where every write must end as success or RKV_EUNKNOWN
 * and never as a failure that was in fact applied.
 *
 * Every fixture forks a guard process that runs `rangekv cluster stop` when
 * the test process exits for any reason (a failed assertion exits at once),
 * so no node outlives its test.
 */
#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rangekv/client.h"
#include "tests/lib/test.h"

#define N_NODES 3

struct fixture {
    char binary[4096];       /* the rangekv binary */
    char dir[4096];          /* the cluster folder */
    char addrs[N_NODES][64]; /* client addresses */
    int pids[N_NODES];
    struct rkv_client *client;
};

static void fixture_binary(struct fixture *f)
{
    const char *build_dir = getenv("RKV_BUILD_DIR");

    ASSERT_TRUE(build_dir != NULL);
    snprintf(f->binary, sizeof(f->binary), "%s/cmd/rangekv", build_dir);
    ASSERT_INT_EQ(access(f->binary, X_OK), 0);
}

/* Runs `rangekv ARGS` through the shell; returns its exit status, with its
 * stdout in out (may be NULL). */
static int run_rangekv(struct fixture *f, const char *args, char *out,
                       size_t out_len)
{
    char command[8192];
    FILE *pipe;
    size_t n = 0;
    int status;

    snprintf(command, sizeof(command), "%s %s", f->binary, args);
    pipe = popen(command, "r");
    ASSERT_TRUE(pipe != NULL);
    if (out != NULL) {
        n = fread(out, 1, out_len - 1, pipe);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), pipe) > 0) {
        }
    }
    status = pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Forks a process that stops the cluster once this test process is gone. */
static void fixture_guard(struct fixture *f)
{
    int fds[2];
    pid_t pid;

    /* Close-on-exec, so the nodes that `cluster start` spawns do not
     * inherit the write end and keep the guard waiting forever. */
    ASSERT_INT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pid = fork();
    ASSERT_INT_GE(pid, 0);
    if (pid == 0) {
        char byte;
        int null_fd = open("/dev/null", O_WRONLY);
        close(fds[1]);
        while (read(fds[0], &byte, 1) > 0) {
        }
        /* After a passing test the folder is gone and there is nothing to
         * stop; stay quiet about it. */
        dup2(null_fd, STDOUT_FILENO);
        dup2(null_fd, STDERR_FILENO);
        execl(f->binary, f->binary, "cluster", "stop", "--dir", f->dir,
              (char *)NULL);
        _exit(127);
    }
    /* The write end stays open, unused, until this process exits. */
    close(fds[0]);
}

static void setup_with(struct fixture *f, const char *extra_args)
{
    struct rkv_client_options options = {0};
    const char *hosts[N_NODES];
    char args[8192];
    char out[4096];
    const char *line;

    memset(f, 0, sizeof(*f));
    fixture_binary(f);
    snprintf(f->dir, sizeof(f->dir), "%s/cluster", rkv_test_tmpdir());
    fixture_guard(f);
    snprintf(args, sizeof(args), "cluster start -n %d --dir %s %s", N_NODES,
             f->dir, extra_args);
    ASSERT_INT_EQ(run_rangekv(f, args, out, sizeof(out)), 0);

    /* "node K client HOST:PORT peer HOST:PORT pid P" per node. */
    line = out;
    for (int i = 0; i < N_NODES; i++) {
        int index;
        line = strstr(line, "node ");
        ASSERT_TRUE(line != NULL);
        ASSERT_INT_EQ(sscanf(line, "node %d client %63s peer %*s pid %d",
                             &index, f->addrs[i], &f->pids[i]),
                      3);
        ASSERT_INT_EQ(index, i + 1);
        line++;
        hosts[i] = f->addrs[i];
    }
    options.hosts = hosts;
    options.n_hosts = N_NODES;
    options.timeout_ms = 10000;
    ASSERT_OK(rkv_client_open(&options, &f->client));
}

static void teardown(struct fixture *f)
{
    char args[8192];

    rkv_client_close(f->client);
    snprintf(args, sizeof(args), "cluster stop --dir %s", f->dir);
    ASSERT_INT_EQ(run_rangekv(f, args, NULL, 0), 0);
}

/* ---- asynchronous puts ------------------------------------------------- */

enum outcome {
    OUTCOME_PENDING = 0,
    OUTCOME_OK,
    OUTCOME_UNKNOWN,
    OUTCOME_FAILED,
};

struct load {
    struct rkv_client *client;
    int n_keys;
    atomic_int next; /* next key index to submit */
    atomic_int n_done;
    atomic_int *outcomes; /* enum outcome per key */
    int *errors;          /* rv per key */
    atomic_bool stop;
};

static void load_key(int index, char *key, size_t key_len)
{
    snprintf(key, key_len, "load-%06d", index);
}

static void load_submit_next(struct load *load);

static void load_done_cb(void *data, struct rkv_client_result *result)
{
    struct load *load = *(struct load **)data;
    int index = (int)(intptr_t)((struct load **)data)[1];
    enum outcome outcome = OUTCOME_OK;

    if (result->rv == RKV_EUNKNOWN) {
        outcome = OUTCOME_UNKNOWN;
    } else if (result->rv != 0) {
        outcome = OUTCOME_FAILED;
    }
    load->errors[index] = result->rv;
    atomic_store(&load->outcomes[index], outcome);
    rkv_client_result_free(result);
    free(data);
    atomic_fetch_add(&load->n_done, 1);
    load_submit_next(load);
}

/* Submits the next key's put; the value is the key. Closed loop: each
 * completion submits one more, on the client's loop thread. */
static void load_submit_next(struct load *load)
{
    struct rkv_client_request request = {0};
    char key[32];
    int index;
    void **data;

    if (atomic_load(&load->stop)) {
        return;
    }
    index = atomic_fetch_add(&load->next, 1);
    if (index >= load->n_keys) {
        return;
    }
    load_key(index, key, sizeof(key));
    data = malloc(2 * sizeof(void *));
    data[0] = load;
    data[1] = (void *)(intptr_t)index;
    request.op = RKV_CLIENT_PUT;
    request.key = key;
    request.key_len = strlen(key);
    request.value = key;
    request.value_len = strlen(key);
    if (rkv_client_submit(load->client, &request, load_done_cb, data) != 0) {
        free(data);
        load->errors[index] = -1;
        atomic_store(&load->outcomes[index], OUTCOME_FAILED);
        atomic_fetch_add(&load->n_done, 1);
    }
}

static void load_start(struct load *load, struct rkv_client *client, int n_keys,
                       int concurrency)
{
    load->client = client;
    load->n_keys = n_keys;
    atomic_init(&load->next, 0);
    atomic_init(&load->n_done, 0);
    atomic_init(&load->stop, false);
    load->outcomes = calloc((size_t)n_keys, sizeof(*load->outcomes));
    load->errors = calloc((size_t)n_keys, sizeof(*load->errors));
    for (int i = 0; i < concurrency; i++) {
        load_submit_next(load);
    }
}

/* Waits until every submitted put completed. */
static void load_wait(struct load *load, uint64_t timeout_ms)
{
    uint64_t deadline_ms = rkv_monotonic_ms() + timeout_ms;

    while (rkv_monotonic_ms() < deadline_ms &&
           atomic_load(&load->n_done) <
               RKV_MIN(atomic_load(&load->next), load->n_keys)) {
        usleep(10000);
    }
    ASSERT_INT_EQ(atomic_load(&load->n_done),
                  RKV_MIN(atomic_load(&load->next), load->n_keys));
}

static void load_free(struct load *load)
{
    free(load->outcomes);
    free(load->errors);
}

/* Reads key index back: returns true when it exists with the right value. */
static bool load_read_back(struct rkv_client *client, int index)
{
    char key[32];
    uint8_t *value;
    size_t value_len;
    int rv;

    load_key(index, key, sizeof(key));
    rv = rkv_client_get(client, key, strlen(key), &value, &value_len);
    if (rv == RKV_ENOTFOUND) {
        return false;
    }
    ASSERT_OK(rv);
    ASSERT_MEM_EQ(value, value_len, key, strlen(key));
    free(value);
    return true;
}

/* ---- tests --------------------------------------------------------------- */

/* Pipelined puts split the keyspace into many ranges, and every key reads
 * back through the refreshed cache. */
TEST(client_cluster, puts_gets_across_splits)
{
    struct fixture f;
    struct load load;
    struct rkv_client_range *ranges;
    size_t n_ranges;

    setup_with(&f, "--split-bytes 16384");
    load_start(&load, f.client, 3000, 64);
    load_wait(&load, 120000);
    for (int i = 0; i < load.n_keys; i++) {
        ASSERT_INT_EQ(load.errors[i], 0);
    }
    ASSERT_OK(rkv_client_ranges(f.client, &ranges, &n_ranges));
    ASSERT_UINT_GE(n_ranges, 4);
    for (size_t i = 1; i < n_ranges; i++) {
        ASSERT_MEM_EQ(ranges[i - 1].end_key, ranges[i - 1].end_key_len,
                      ranges[i].start_key, ranges[i].start_key_len);
    }
    rkv_client_ranges_free(ranges, n_ranges);
    for (int i = 0; i < load.n_keys; i++) {
        ASSERT_TRUE(load_read_back(f.client, i));
    }
    load_free(&load);
    teardown(&f);
}

/* Scans cross forced split points, respect limits and end keys, and return
 * keys in order. */
TEST(client_cluster, scan_across_splits)
{
    static const char *const split_keys[] = {"k0100", "k0250", "k0251",
                                             "k0400"};
    static const struct {
        const char *start;
        const char *end;
        uint32_t limit;
        size_t n_pairs;
        int first;
    } cases[] = {
        {"", NULL, 0, 500, 0},         {"k0099", "k0101", 0, 2, 99},
        {"k0250", "k0251", 0, 1, 250}, {"k0200", NULL, 120, 120, 200},
        {"k0499", NULL, 0, 1, 499},    {"k05", NULL, 0, 0, 0},
    };
    struct fixture f;

    setup_with(&f, "");
    for (int i = 0; i < 500; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%04d", i);
        ASSERT_OK(rkv_client_put(f.client, key, 5, key, 5));
    }
    for (size_t i = 0; i < RKV_ARRAY_SIZE(split_keys); i++) {
        ASSERT_OK(rkv_client_split(f.client, split_keys[i], 5));
    }

    for (size_t c = 0; c < RKV_ARRAY_SIZE(cases); c++) {
        struct rkv_client_request request = {0};
        struct rkv_client_result result;

        request.op = RKV_CLIENT_SCAN;
        request.key = cases[c].start;
        request.key_len = strlen(cases[c].start);
        request.end_key = cases[c].end;
        request.end_key_len = cases[c].end != NULL ? strlen(cases[c].end) : 0;
        request.limit = cases[c].limit;
        ASSERT_OK(rkv_client_do(f.client, &request, &result));
        ASSERT_UINT_EQ(result.n_pairs, cases[c].n_pairs);
        for (size_t p = 0; p < result.n_pairs; p++) {
            char key[16];
            snprintf(key, sizeof(key), "k%04d", cases[c].first + (int)p);
            ASSERT_MEM_EQ(result.pairs[p].key, result.pairs[p].key_len, key, 5);
        }
        rkv_client_result_free(&result);
    }
    teardown(&f);
}

/* CAS and batches on real nodes behave as the node contract requires. */
TEST(client_cluster, cas_and_batch)
{
    struct fixture f;
    struct rkv_client_request request = {0};
    struct rkv_client_result result;
    struct rkv_client_batch_op ops[3] = {
        {false, "b1", 2, "one", 3},
        {false, "b2", 2, "two", 3},
        {true, "b0", 2, NULL, 0},
    };
    uint8_t *value;
    size_t value_len;

    setup_with(&f, "");
    request.op = RKV_CLIENT_CAS;
    request.key = "c";
    request.key_len = 1;
    request.value = "1";
    request.value_len = 1;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_TRUE(result.found);
    rkv_client_result_free(&result);
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_FALSE(result.found);
    ASSERT_MEM_EQ(result.value, result.value_len, "1", 1);
    rkv_client_result_free(&result);
    request.expected = "1";
    request.expected_len = 1;
    request.value = "2";
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    ASSERT_TRUE(result.found);
    rkv_client_result_free(&result);
    ASSERT_OK(rkv_client_get(f.client, "c", 1, &value, &value_len));
    ASSERT_MEM_EQ(value, value_len, "2", 1);
    free(value);

    ASSERT_OK(rkv_client_put(f.client, "b0", 2, "zero", 4));
    memset(&request, 0, sizeof(request));
    request.op = RKV_CLIENT_BATCH;
    request.ops = ops;
    request.n_ops = 3;
    ASSERT_OK(rkv_client_do(f.client, &request, &result));
    rkv_client_result_free(&result);
    ASSERT_OK(rkv_client_get(f.client, "b2", 2, &value, &value_len));
    ASSERT_MEM_EQ(value, value_len, "two", 3);
    free(value);
    ASSERT_INT_EQ(rkv_client_get(f.client, "b0", 2, &value, &value_len),
                  RKV_ENOTFOUND);

    ASSERT_OK(rkv_client_split(f.client, "b2", 2));
    ASSERT_INT_EQ(rkv_client_do(f.client, &request, &result), RKV_EKEYMISMATCH);
    rkv_client_result_free(&result);
    teardown(&f);
}

/* Returns the index of the node leading the most ranges. */
static int busiest_leader(struct fixture *f)
{
    int best = 0;
    uint64_t best_leaders = 0;

    for (int i = 0; i < N_NODES; i++) {
        struct rkv_client_node_status status;
        ASSERT_OK(rkv_client_node_status(f->client, f->addrs[i], &status));
        if (status.n_leaders > best_leaders) {
            best_leaders = status.n_leaders;
            best = i;
        }
    }
    return best;
}

/* kill -9 of the leader during a put load: every put ends as success or
 * RKV_EUNKNOWN, a reported failure was never applied, every success reads
 * back, and the restarted node rejoins. */
TEST(client_cluster, leader_killed_mid_load)
{
    struct fixture f;
    struct load load;
    char args[8192];
    int victim;
    int n_ok = 0;
    int n_unknown = 0;
    int n_failed = 0;
    int n_ok_before_kill;

    setup_with(&f, "");
    victim = busiest_leader(&f);
    load_start(&load, f.client, 20000, 64);
    while (atomic_load(&load.n_done) < 2000) {
        usleep(10000);
    }
    n_ok_before_kill = atomic_load(&load.n_done);
    ASSERT_INT_EQ(kill(f.pids[victim], SIGKILL), 0);
    while (atomic_load(&load.n_done) < n_ok_before_kill + 4000) {
        usleep(10000);
    }
    atomic_store(&load.stop, true);
    load_wait(&load, 60000);

    for (int i = 0; i < RKV_MIN(atomic_load(&load.next), load.n_keys); i++) {
        switch (atomic_load(&load.outcomes[i])) {
        case OUTCOME_OK:
            n_ok++;
            ASSERT_TRUE(load_read_back(f.client, i));
            break;
        case OUTCOME_UNKNOWN:
            n_unknown++;
            break;
        default:
            /* A failure must be real: nothing was written. */
            n_failed++;
            ASSERT_FALSE(load_read_back(f.client, i));
            break;
        }
    }
    printf("after kill -9 of node %d: %d ok, %d unknown, %d failed\n",
           victim + 1, n_ok, n_unknown, n_failed);
    ASSERT_INT_GE(n_ok, 6000 - n_unknown - n_failed);
    ASSERT_INT_EQ(n_failed, 0);

    snprintf(args, sizeof(args), "cluster restart-node %d --dir %s", victim + 1,
             f.dir);
    ASSERT_INT_EQ(run_rangekv(&f, args, NULL, 0), 0);
    ASSERT_OK(rkv_client_put(f.client, "after-restart", 13, "v", 1));
    load_free(&load);
    teardown(&f);
}

/* The subcommands print what they did, take escapes, and exit 2 on wrong
 * usage with a message. */
TEST(client_cluster, subcommands)
{
    struct fixture f;
    char args[8192];
    char out[8192];

    setup_with(&f, "");
    snprintf(args, sizeof(args), "put --host %s 'k\\x01' 'hello world'",
             f.addrs[1]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), "get --host %s 'k\\x01'", f.addrs[2]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "hello world\n");
    snprintf(args, sizeof(args), "scan --host %s", f.addrs[0]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "k\\x01\thello world\n");
    snprintf(args, sizeof(args), "get --host %s missing 2>/dev/null",
             f.addrs[0]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 1);
    snprintf(args, sizeof(args), "split --host %s m", f.addrs[0]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), "ranges --host %s", f.addrs[0]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    ASSERT_TRUE(strstr(out, "range") == out);
    ASSERT_TRUE(strstr(out, "\n2 ") != NULL);
    snprintf(args, sizeof(args), "status --host %s", f.addrs[0]);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    ASSERT_TRUE(strstr(out, f.addrs[2]) != NULL);
    snprintf(args, sizeof(args), "cluster status --dir %s", f.dir);
    ASSERT_INT_EQ(run_rangekv(&f, args, out, sizeof(out)), 0);
    ASSERT_TRUE(strstr(out, "node 3 running") != NULL);

    ASSERT_INT_EQ(run_rangekv(&f, "put onlykey 2>/dev/null", NULL, 0), 2);
    ASSERT_INT_EQ(run_rangekv(&f, "scan --limit x 2>/dev/null", NULL, 0), 2);
    ASSERT_INT_EQ(run_rangekv(&f, "get --nope k 2>/dev/null", NULL, 0), 2);
    ASSERT_INT_EQ(run_rangekv(&f, "get 'bad\\x4' 2>/dev/null", NULL, 0), 2);
    ASSERT_INT_EQ(run_rangekv(&f, "cluster start 2>/dev/null", NULL, 0), 2);
    ASSERT_INT_EQ(run_rangekv(&f, "scan --help", out, sizeof(out)), 0);
    ASSERT_TRUE(strstr(out, "--limit N") != NULL);
    ASSERT_TRUE(strstr(out, "--host HOST:PORT") != NULL);
    teardown(&f);
}

/* cluster start authenticates its nodes: it writes a random secret that
 * only the owner can read and passes its path, not the secret, to every
 * node, and the nodes accept one another with it. */
TEST(client_cluster, start_writes_private_secret)
{
    struct fixture f;
    struct stat st;
    char path[PATH_MAX + 32];
    char expected[PATH_MAX + 64];
    char text[8192];
    FILE *file;
    size_t n;

    setup_with(&f, "");
    snprintf(path, sizeof(path), "%s/secret", f.dir);
    ASSERT_OK(stat(path, &st));
    ASSERT_INT_EQ(st.st_mode & 0777, 0600);
    ASSERT_INT_EQ(st.st_size, 65);
    snprintf(expected, sizeof(expected), "\n--cluster-secret-file\n%s\n", path);
    for (int i = 1; i <= N_NODES; i++) {
        snprintf(path, sizeof(path), "%s/node%d/args", f.dir, i);
        file = fopen(path, "r");
        ASSERT_TRUE(file != NULL);
        n = fread(text, 1, sizeof(text) - 1, file);
        fclose(file);
        text[n] = '\0';
        ASSERT_TRUE(strstr(text, expected) != NULL);
        ASSERT_TRUE(strstr(text, "--cluster-secret\n") == NULL);
    }
    ASSERT_OK(rkv_client_put(f.client, "secret-probe", 12, "1", 1));
    teardown(&f);
}

/* True when pid is gone or a zombie. */
static bool pid_is_gone(int pid)
{
    char path[64];
    char stat[512];
    FILE *file;
    size_t n;
    const char *state;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    file = fopen(path, "r");
    if (file == NULL) {
        return true;
    }
    n = fread(stat, 1, sizeof(stat) - 1, file);
    fclose(file);
    stat[n] = '\0';
    state = strrchr(stat, ')');
    return state != NULL && (state[2] == 'Z' || state[2] == 'X');
}

/* cluster stop ends a node that ignores SIGTERM (here: a stopped process)
 * with SIGKILL after --timeout, and removes every pid file. */
TEST(client_cluster, stop_escalates_to_sigkill)
{
    struct fixture f;
    char args[8192];
    char path[8192];

    setup_with(&f, "");
    rkv_client_close(f.client);
    ASSERT_INT_EQ(kill(f.pids[1], SIGSTOP), 0);
    snprintf(args, sizeof(args), "cluster stop --dir %s --timeout 1 2>&1",
             f.dir);
    ASSERT_INT_EQ(run_rangekv(&f, args, NULL, 0), 0);
    for (int i = 0; i < N_NODES; i++) {
        uint64_t deadline_ms = rkv_monotonic_ms() + 5000;
        while (!pid_is_gone(f.pids[i]) && rkv_monotonic_ms() < deadline_ms) {
            usleep(10000);
        }
        ASSERT_TRUE(pid_is_gone(f.pids[i]));
        snprintf(path, sizeof(path), "%s/node%d/pid", f.dir, i + 1);
        ASSERT_INT_NE(access(path, F_OK), 0);
    }
}
