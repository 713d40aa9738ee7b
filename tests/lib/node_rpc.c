/* The blocking test client of node/rpc.proto and the process fixture
 * (tests/lib/node_rpc.h). */
#include "tests/lib/node_rpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/lib/test.h"

/* Largest response the helper accepts. */
#define RPC_RESPONSE_MAX (64u * 1024 * 1024)
/* Socket receive timeout for one call. */
#define RPC_CALL_TIMEOUT_S 5

int rkv_test_rpc_connect(const char *addr)
{
    char host[RKV_TEST_ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {0};
    struct timeval timeout = {.tv_sec = RPC_CALL_TIMEOUT_S};
    int one = 1;
    int fd;

    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        return -EINVAL;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int rv = -errno;

        close(fd);
        return rv;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int rpc_io_all(int fd, uint8_t *buf, size_t len, bool is_write)
{
    while (len > 0) {
        ssize_t n =
            is_write ? send(fd, buf, len, MSG_NOSIGNAL) : read(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n == 0 ? -ECONNRESET : -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int rkv_test_rpc_send(int fd, Rkv__Rpc__Request *request)
{
    size_t len = rkv__rpc__request__get_packed_size(request);
    uint8_t *buf = malloc(4 + len);
    int rv;

    if (buf == NULL) {
        return -ENOMEM;
    }
    rkv_put_be32(buf, (uint32_t)len);
    rkv__rpc__request__pack(request, buf + 4);
    rv = rpc_io_all(fd, buf, 4 + len, true);
    free(buf);
    return rv;
}

Rkv__Rpc__Response *rkv_test_rpc_recv(int fd)
{
    Rkv__Rpc__Response *response = NULL;
    uint8_t header[4];
    uint8_t *buf;
    size_t len;

    if (rpc_io_all(fd, header, 4, false) != 0) {
        return NULL;
    }
    len = rkv_get_be32(header);
    if (len == 0 || len > RPC_RESPONSE_MAX) {
        return NULL;
    }
    buf = malloc(len);
    if (buf == NULL) {
        return NULL;
    }
    if (rpc_io_all(fd, buf, len, false) == 0) {
        response = rkv__rpc__response__unpack(NULL, len, buf);
    }
    free(buf);
    return response;
}

Rkv__Rpc__Response *rkv_test_rpc_call(int fd, Rkv__Rpc__Request *request)
{
    if (rkv_test_rpc_send(fd, request) != 0) {
        return NULL;
    }
    return rkv_test_rpc_recv(fd);
}

Rkv__Rpc__Response *rkv_test_rpc_call_addr(const char *addr,
                                           Rkv__Rpc__Request *request)
{
    Rkv__Rpc__Response *response;
    int fd = rkv_test_rpc_connect(addr);

    if (fd < 0) {
        return NULL;
    }
    response = rkv_test_rpc_call(fd, request);
    close(fd);
    return response;
}

static bool rpc_error_is_retried(int error)
{
    return error == RKV_ENOTLEADER || error == RKV_EUNAVAILABLE ||
           error == RKV_ERANGENOTFOUND || error == RKV_EKEYMISMATCH ||
           error == RKV_ESPLITTING || error == RKV_EDROPPED ||
           error == RKV_ETIMEOUT || error == RKV_EBUSY ||
           error == RKV_ESHUTDOWN;
}

static void rpc_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

Rkv__Rpc__Response *rkv_test_rpc_route(char addrs[][RKV_TEST_ADDR_MAX],
                                       size_t n_addrs,
                                       Rkv__Rpc__Request *request,
                                       uint32_t timeout_ms)
{
    uint64_t deadline = rkv_monotonic_ms() + timeout_ms;
    char target[RKV_TEST_ADDR_MAX];
    size_t next = 0;

    snprintf(target, sizeof(target), "%s", addrs[0]);
    while (rkv_monotonic_ms() < deadline) {
        Rkv__Rpc__Response *response = rkv_test_rpc_call_addr(target, request);
        bool follow_hint = false;

        if (response != NULL && !rpc_error_is_retried(response->error)) {
            return response;
        }
        if (response != NULL && response->error == RKV_ENOTLEADER &&
            response->leader_client_addr != NULL &&
            response->leader_client_addr[0] != '\0' &&
            strcmp(response->leader_client_addr, target) != 0) {
            snprintf(target, sizeof(target), "%s",
                     response->leader_client_addr);
            follow_hint = true;
        }
        if (response != NULL) {
            rkv__rpc__response__free_unpacked(response, NULL);
        }
        if (!follow_hint) {
            next = (next + 1) % n_addrs;
            snprintf(target, sizeof(target), "%s", addrs[next]);
            rpc_sleep_ms(50);
        }
    }
    return NULL;
}

int rkv_test_put(char addrs[][RKV_TEST_ADDR_MAX], size_t n_addrs,
                 const char *key, const char *value, uint32_t timeout_ms)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    int rv;

    put.key.data = (uint8_t *)key;
    put.key.len = strlen(key);
    put.value.data = (uint8_t *)value;
    put.value.len = strlen(value);
    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_PUT;
    request.put = &put;
    response = rkv_test_rpc_route(addrs, n_addrs, &request, timeout_ms);
    if (response == NULL) {
        return RKV_ETIMEOUT;
    }
    rv = response->error;
    rkv__rpc__response__free_unpacked(response, NULL);
    return rv;
}

int rkv_test_get(char addrs[][RKV_TEST_ADDR_MAX], size_t n_addrs,
                 const char *key, bool *found, char *value, size_t value_cap,
                 uint32_t timeout_ms)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__GetRequest get = RKV__RPC__GET_REQUEST__INIT;
    Rkv__Rpc__Response *response;
    int rv;

    get.key.data = (uint8_t *)key;
    get.key.len = strlen(key);
    request.id = 2;
    request.op_case = RKV__RPC__REQUEST__OP_GET;
    request.get = &get;
    response = rkv_test_rpc_route(addrs, n_addrs, &request, timeout_ms);
    if (response == NULL) {
        return RKV_ETIMEOUT;
    }
    rv = response->error;
    *found = false;
    value[0] = '\0';
    if (rv == 0 && response->result_case == RKV__RPC__RESPONSE__RESULT_GET) {
        *found = response->get->found;
        if (response->get->has_value) {
            size_t n = RKV_MIN(response->get->value.len, value_cap - 1);

            memcpy(value, response->get->value.data, n);
            value[n] = '\0';
        }
    }
    rkv__rpc__response__free_unpacked(response, NULL);
    return rv;
}

/* ---- processes ---------------------------------------------------------- */

uint16_t rkv_test_pick_port(void)
{
    struct sockaddr_in sa = {0};
    socklen_t sa_len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port;

    ASSERT_TRUE(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *)&sa, &sa_len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

void rkv_test_cluster_setup(struct rkv_test_cluster *cluster, size_t n,
                            const char *dir, uint64_t split_bytes)
{
    ASSERT_TRUE(n <= RKV_TEST_NODES_MAX);
    memset(cluster, 0, sizeof(*cluster));
    cluster->n_procs = n;
    snprintf(cluster->split_bytes, sizeof(cluster->split_bytes), "%llu",
             (unsigned long long)split_bytes);
    for (size_t i = 0; i < n; i++) {
        struct rkv_test_proc *proc = &cluster->procs[i];

        snprintf(proc->store, sizeof(proc->store), "%s/node%zu", dir, i + 1);
        snprintf(proc->peer_addr, sizeof(proc->peer_addr), "127.0.0.1:%u",
                 (unsigned)rkv_test_pick_port());
    }
}

/* Reads "client HOST:PORT" from STORE/addresses; false while missing. */
static bool cluster_read_addresses(struct rkv_test_proc *proc)
{
    char path[600];
    char line[128];
    FILE *f;
    bool found = false;

    snprintf(path, sizeof(path), "%s/addresses", proc->store);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "client ", 7) == 0) {
            line[strcspn(line, "\n")] = '\0';
            if (strlen(line + 7) >= sizeof(proc->client_addr)) {
                break;
            }
            memcpy(proc->client_addr, line + 7, strlen(line + 7) + 1);
            found = true;
        }
    }
    fclose(f);
    return found;
}

static const char *cluster_binary(void)
{
    static char path[600];
    const char *build = getenv("RKV_BUILD_DIR");

    if (build == NULL) {
        rkv_test_fail(__FILE__, __LINE__,
                      "RKV_BUILD_DIR is not set: run through ctest or set "
                      "it to the build folder");
    }
    snprintf(path, sizeof(path), "%s/cmd/rangekv", build);
    return path;
}

static void cluster_exec_node(struct rkv_test_cluster *cluster, size_t i)
{
    struct rkv_test_proc *proc = &cluster->procs[i];
    char join[RKV_TEST_NODES_MAX * RKV_TEST_ADDR_MAX] = "";
    char log_path[600];
    char node_id[16];
    int fd;

    for (size_t j = 0; j < cluster->n_procs; j++) {
        if (j > 0) {
            strcat(join, ",");
        }
        strcat(join, cluster->procs[j].peer_addr);
    }
    snprintf(node_id, sizeof(node_id), "%zu", i + 1);
    snprintf(log_path, sizeof(log_path), "%s/node.log", proc->store);
    fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
    if (cluster->log_compact_entries[0] != '\0') {
        execl(cluster_binary(), "rangekv", "start", "--store", proc->store,
              "--listen-addr", proc->peer_addr, "--client-addr", "127.0.0.1:0",
              "--join", join, "--node-id", node_id, "--split-bytes",
              cluster->split_bytes, "--tick-ms", "50", "--log-compact-entries",
              cluster->log_compact_entries, (char *)NULL);
    }
    execl(cluster_binary(), "rangekv", "start", "--store", proc->store,
          "--listen-addr", proc->peer_addr, "--client-addr", "127.0.0.1:0",
          "--join", join, "--node-id", node_id, "--split-bytes",
          cluster->split_bytes, "--tick-ms", "50", (char *)NULL);
    _exit(127);
}

void rkv_test_cluster_start_node(struct rkv_test_cluster *cluster, size_t i)
{
    struct rkv_test_proc *proc = &cluster->procs[i];
    char path[600];
    pid_t pid;

    mkdir(proc->store, 0755);
    snprintf(path, sizeof(path), "%s/addresses", proc->store);
    unlink(path);
    cluster_binary();
    pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        /* A test that fails exits at once; its nodes must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        cluster_exec_node(cluster, i);
    }
    proc->pid = pid;
    for (int tries = 0; tries < 1000; tries++) {
        if (cluster_read_addresses(proc)) {
            memcpy(cluster->client_addrs[i], proc->client_addr,
                   RKV_TEST_ADDR_MAX);
            return;
        }
        ASSERT_TRUE(rkv_test_cluster_node_alive(cluster, i));
        rpc_sleep_ms(10);
    }
    rkv_test_fail(__FILE__, __LINE__, "node %zu wrote no addresses in 10 s",
                  i + 1);
}

bool rkv_test_cluster_node_alive(struct rkv_test_cluster *cluster, size_t i)
{
    struct rkv_test_proc *proc = &cluster->procs[i];
    int status;

    if (proc->pid == 0) {
        return false;
    }
    if (waitpid(proc->pid, &status, WNOHANG) == proc->pid) {
        proc->pid = 0;
        return false;
    }
    return true;
}

void rkv_test_cluster_kill_node(struct rkv_test_cluster *cluster, size_t i)
{
    struct rkv_test_proc *proc = &cluster->procs[i];

    ASSERT_TRUE(proc->pid > 0);
    kill(proc->pid, SIGKILL);
    waitpid(proc->pid, NULL, 0);
    proc->pid = 0;
}

void rkv_test_cluster_init(struct rkv_test_cluster *cluster, size_t i)
{
    char command[1024];
    int status;

    snprintf(command, sizeof(command), "%s init --host %s", cluster_binary(),
             cluster->procs[i].client_addr);
    status = system(command);
    ASSERT_INT_EQ(status, 0);
}

bool rkv_test_cluster_log_contains(struct rkv_test_cluster *cluster, size_t i,
                                   const char *text)
{
    char path[600];
    char line[2048];
    bool found = false;
    FILE *f;

    snprintf(path, sizeof(path), "%s/node.log", cluster->procs[i].store);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strstr(line, text) != NULL;
    }
    fclose(f);
    return found;
}

void rkv_test_cluster_stop(struct rkv_test_cluster *cluster)
{
    for (size_t i = 0; i < cluster->n_procs; i++) {
        struct rkv_test_proc *proc = &cluster->procs[i];
        int status;

        if (proc->pid <= 0) {
            continue;
        }
        kill(proc->pid, SIGTERM);
        for (int tries = 0; tries < 1000; tries++) {
            if (waitpid(proc->pid, &status, WNOHANG) == proc->pid) {
                proc->pid = 0;
                break;
            }
            rpc_sleep_ms(10);
        }
        if (proc->pid > 0) {
            kill(proc->pid, SIGKILL);
            waitpid(proc->pid, NULL, 0);
            proc->pid = 0;
            rkv_test_fail(__FILE__, __LINE__,
                          "node %zu did not stop within 10 s of SIGTERM",
                          i + 1);
        }
        /* A clean stop exits 0; a sanitizer report (leak, overflow) makes
         * the status non-zero, and its text is in node.log. */
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            rkv_test_fail(__FILE__, __LINE__,
                          "node %zu exited with status %d: see %s/node.log",
                          i + 1, status, proc->store);
        }
    }
}
