/*
 * The process and file side of `rangekv cluster`: node folders, pid and
 * argument files, spawning `rangekv start` in its own session, waiting
 * until a node listens, and picking ports.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/cluster_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "rangekv/client.h"

void rkv_client__cluster_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

int rkv_client__cluster_write_file(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        return -errno;
    }
    fputs(text, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        return -errno;
    }
    return 0;
}

/* Bytes of randomness in a generated cluster secret (hex-encoded). */
#define CLUSTER_SECRET_BYTES 32

/* Writes a new random secret to path, failing with -EEXIST when the file
 * exists. The file is created with mode 0600 and never replaced, so a
 * secret that nodes already use stays. */
static int cluster_create_secret(const char *path)
{
    uint8_t random[CLUSTER_SECRET_BYTES];
    char hex[2 * CLUSTER_SECRET_BYTES + 2];
    ssize_t n;
    int fd;
    int rv = 0;

    n = getrandom(random, sizeof(random), 0);
    if (n != (ssize_t)sizeof(random)) {
        return n < 0 ? -errno : -EIO;
    }
    for (size_t i = 0; i < sizeof(random); i++) {
        snprintf(hex + 2 * i, 3, "%02x", random[i]);
    }
    hex[2 * CLUSTER_SECRET_BYTES] = '\n';
    hex[2 * CLUSTER_SECRET_BYTES + 1] = '\0';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        return -errno;
    }
    if (write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex)) {
        rv = -EIO;
    }
    if (close(fd) != 0 && rv == 0) {
        rv = -errno;
    }
    if (rv != 0) {
        unlink(path);
    }
    return rv;
}

int rkv_client__cluster_ensure_secret(const char *dir, char *path,
                                      size_t path_len)
{
    char abs_dir[PATH_MAX];
    int rv;

    if (realpath(dir, abs_dir) == NULL) {
        rv = -errno;
        fprintf(stderr, "rangekv cluster: cannot open %s: %s\n", dir,
                strerror(-rv));
        return rv;
    }
    if ((size_t)snprintf(path, path_len, "%s/secret", abs_dir) >= path_len) {
        return -ENAMETOOLONG;
    }
    rv = cluster_create_secret(path);
    if (rv == -EEXIST) {
        return 0;
    }
    if (rv != 0) {
        fprintf(stderr, "rangekv cluster: cannot create %s: %s\n", path,
                strerror(-rv));
    }
    return rv;
}

/* Reads up to buf_len - 1 bytes of path into buf. Returns 0 or -errno. */
static int cluster_read_file(const char *path, char *buf, size_t buf_len)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        return -errno;
    }
    n = fread(buf, 1, buf_len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return 0;
}

void rkv_client__cluster_node_path(const struct rkv_client__cluster_node *node,
                                   const char *name, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s/%s", node->dir, name);
}

/* Reads the value after "key " on a line of text into out. */
static bool cluster_find_line(const char *text, const char *key, char *out,
                              size_t out_len)
{
    size_t key_len = strlen(key);
    const char *line = text;

    while (line != NULL && *line != '\0') {
        if (strncmp(line, key, key_len) == 0 && line[key_len] == ' ') {
            const char *value = line + key_len + 1;
            size_t len = strcspn(value, "\n");
            if (len >= out_len) {
                return false;
            }
            memcpy(out, value, len);
            out[len] = '\0';
            return true;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return false;
}

/* Prints the last lines of the node's log to stderr. */
static void cluster_print_log_tail(const struct rkv_client__cluster_node *node)
{
    char path[PATH_MAX + 16];
    static char buf[1 << 16];
    FILE *f;
    long size;
    size_t n;
    const char *start;
    int n_lines = 0;

    rkv_client__cluster_node_path(node, "node.log", path, sizeof(path));
    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0,
          SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    start = buf + n;
    while (start > buf && n_lines < 15) {
        start--;
        if (*start == '\n' && start + 1 < buf + n) {
            n_lines++;
        }
    }
    fprintf(stderr, "--- last lines of %s ---\n%s\n", path,
            start == buf ? start : start + 1);
}

/* True when pid runs `rangekv start` with this node's store. */
static bool cluster_pid_is_node(pid_t pid,
                                const struct rkv_client__cluster_node *node)
{
    char path[64];
    char cmdline[4096];
    size_t n;
    FILE *f;
    bool has_start = false;
    bool has_store = false;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    n = fread(cmdline, 1, sizeof(cmdline) - 1, f);
    fclose(f);
    cmdline[n] = '\0';
    /* Arguments are separated by NUL bytes. */
    for (size_t i = 0; i < n; i += strlen(cmdline + i) + 1) {
        has_start = has_start || strcmp(cmdline + i, "start") == 0;
        has_store = has_store || strcmp(cmdline + i, node->dir) == 0;
    }
    return has_start && has_store;
}

/* True while pid exists and is not a zombie. */
bool rkv_client__cluster_pid_is_alive(pid_t pid)
{
    char path[64];
    char stat[512];
    const char *state;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (cluster_read_file(path, stat, sizeof(stat)) != 0) {
        return false;
    }
    /* The state follows the ")" that closes the command name. */
    state = strrchr(stat, ')');
    return state != NULL && state[1] == ' ' && state[2] != 'Z' &&
           state[2] != 'X';
}

/* Loads node->pid from its pid file when that process is this node. */
static void cluster_load_pid(struct rkv_client__cluster_node *node)
{
    char path[PATH_MAX + 16];
    char text[32];

    node->pid = 0;
    rkv_client__cluster_node_path(node, "pid", path, sizeof(path));
    if (cluster_read_file(path, text, sizeof(text)) != 0) {
        return;
    }
    node->pid = (pid_t)atoi(text);
    if (node->pid <= 0 || !rkv_client__cluster_pid_is_alive(node->pid) ||
        !cluster_pid_is_node(node->pid, node)) {
        node->pid = 0;
    }
}

/* Reads the args file of node into argv (pointers into buf). */
static int cluster_read_args(const struct rkv_client__cluster_node *node,
                             char *buf, size_t buf_len, char **argv, int *argc)
{
    char path[PATH_MAX + 16];
    char *line;
    char *save;
    int rv;

    rkv_client__cluster_node_path(node, "args", path, sizeof(path));
    rv = cluster_read_file(path, buf, buf_len);
    if (rv != 0) {
        return rv;
    }
    *argc = 0;
    for (line = strtok_r(buf, "\n", &save);
         line != NULL && *argc < CLUSTER_ARGS_MAX;
         line = strtok_r(NULL, "\n", &save)) {
        argv[(*argc)++] = line;
    }
    argv[*argc] = NULL;
    return 0;
}

/* Starts node from its args file, in a new session with output to its
 * log, and writes its pid file. */
int rkv_client__cluster_spawn(struct rkv_client__cluster_node *node,
                              const char *exe)
{
    char args_buf[8192];
    char *argv[CLUSTER_ARGS_MAX + 2];
    char path[PATH_MAX + 16];
    char pid_text[32];
    int argc;
    pid_t pid;
    int rv;

    rv = cluster_read_args(node, args_buf, sizeof(args_buf), argv + 1, &argc);
    if (rv != 0) {
        fprintf(stderr, "rangekv cluster: cannot read %s/args: %s\n", node->dir,
                strerror(-rv));
        return rv;
    }
    argv[0] = (char *)exe;
    rkv_client__cluster_node_path(node, "addresses", path, sizeof(path));
    unlink(path);
    rkv_client__cluster_node_path(node, "node.log", path, sizeof(path));

    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        int log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null_fd = open("/dev/null", O_RDONLY);
        setsid();
        if (log_fd < 0 || null_fd < 0) {
            _exit(126);
        }
        dup2(null_fd, STDIN_FILENO);
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execv(exe, argv);
        dprintf(STDERR_FILENO, "rangekv cluster: exec %s failed: %s\n", exe,
                strerror(errno));
        _exit(127);
    }
    node->pid = pid;
    snprintf(pid_text, sizeof(pid_text), "%d\n", (int)pid);
    rkv_client__cluster_node_path(node, "pid", path, sizeof(path));
    return rkv_client__cluster_write_file(path, pid_text);
}

/* True when a TCP connection to addr succeeds. */
static bool cluster_can_connect(const char *addr)
{
    struct sockaddr_in sin;
    char host[64];
    const char *colon = strrchr(addr, ':');
    bool ok;
    int fd;

    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return false;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        return false;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    close(fd);
    return ok;
}

/* Waits until node wrote its addresses and accepts client connections. */
int rkv_client__cluster_wait_listening(struct rkv_client__cluster_node *node,
                                       uint64_t deadline_ms)
{
    char path[PATH_MAX + 16];
    char text[512];

    rkv_client__cluster_node_path(node, "addresses", path, sizeof(path));
    while (rkv_monotonic_ms() < deadline_ms) {
        int status;

        if (waitpid(node->pid, &status, WNOHANG) == node->pid) {
            fprintf(
                stderr,
                "rangekv cluster: node %d exited with status %d before listening\n",
                node->index, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            cluster_print_log_tail(node);
            node->pid = 0;
            return RKV_EUNAVAILABLE;
        }
        if (cluster_read_file(path, text, sizeof(text)) == 0 &&
            cluster_find_line(text, "client", node->client_addr,
                              sizeof(node->client_addr)) &&
            cluster_find_line(text, "peer", node->peer_addr,
                              sizeof(node->peer_addr)) &&
            cluster_can_connect(node->client_addr)) {
            return 0;
        }
        rkv_client__cluster_sleep_ms(CLUSTER_POLL_MS);
    }
    fprintf(stderr, "rangekv cluster: node %d did not listen in time\n",
            node->index);
    cluster_print_log_tail(node);
    return RKV_ETIMEOUT;
}

/* Picks n distinct free ports by binding port 0 on 127.0.0.1. */
static int cluster_free_ports(int n, uint16_t *ports)
{
    int fds[2 * CLUSTER_NODES_MAX];
    int rv = 0;
    int i;

    for (i = 0; i < n; i++) {
        struct sockaddr_in sin;
        socklen_t sin_len = sizeof(sin);

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 ||
            bind(fds[i], (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sin, &sin_len) != 0) {
            rv = -errno;
            if (fds[i] >= 0) {
                close(fds[i]);
            }
            break;
        }
        ports[i] = ntohs(sin.sin_port);
    }
    /* Every socket stays bound until all are picked, so none repeats. */
    while (i > 0) {
        close(fds[--i]);
    }
    return rv;
}

/* Reuses the ports of a previous start from node's args file. */
bool rkv_client__cluster_previous_addrs(struct rkv_client__cluster_node *node)
{
    char buf[8192];
    char *argv[CLUSTER_ARGS_MAX + 1];
    int argc;
    bool has_peer = false;
    bool has_client = false;

    if (cluster_read_args(node, buf, sizeof(buf), argv, &argc) != 0) {
        return false;
    }
    for (int i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--listen-addr") == 0) {
            snprintf(node->peer_addr, sizeof(node->peer_addr), "%s",
                     argv[i + 1]);
            has_peer = true;
        } else if (strcmp(argv[i], "--client-addr") == 0) {
            snprintf(node->client_addr, sizeof(node->client_addr), "%s",
                     argv[i + 1]);
            has_client = true;
        }
    }
    return has_peer && has_client;
}

/* Writes node's args file for the current options and addresses. */
int rkv_client__cluster_write_args(const struct rkv_client__cluster_node *node,
                                   const struct rkv_client__cluster_node *nodes,
                                   int n_nodes,
                                   const struct rkv_client__cluster_opts *opts)
{
    char text[8192];
    char path[PATH_MAX + 16];
    size_t pos;

    pos = (size_t)snprintf(text, sizeof(text),
                           "start\n--store\n%s\n--listen-addr\n%s\n"
                           "--client-addr\n%s\n--node-id\n%d\n--join\n",
                           node->dir, node->peer_addr, node->client_addr,
                           node->index);
    for (int i = 0; i < n_nodes && pos < sizeof(text); i++) {
        pos += (size_t)snprintf(text + pos, sizeof(text) - pos, "%s%s",
                                i > 0 ? "," : "", nodes[i].peer_addr);
    }
    if (opts->split_bytes != NULL && pos < sizeof(text)) {
        pos += (size_t)snprintf(text + pos, sizeof(text) - pos,
                                "\n--split-bytes\n%s", opts->split_bytes);
    }
    if (opts->secret_file != NULL && pos < sizeof(text)) {
        pos += (size_t)snprintf(text + pos, sizeof(text) - pos,
                                "\n--cluster-secret-file\n%s",
                                opts->secret_file);
    }
    if (opts->log_level != NULL && pos < sizeof(text)) {
        pos += (size_t)snprintf(text + pos, sizeof(text) - pos,
                                "\n--log-level\n%s", opts->log_level);
    }
    if (pos + 2 >= sizeof(text)) {
        return -ENAMETOOLONG;
    }
    text[pos++] = '\n';
    text[pos] = '\0';
    rkv_client__cluster_node_path(node, "args", path, sizeof(path));
    return rkv_client__cluster_write_file(path, text);
}

/* Fills nodes[i].dir for DIR (made absolute), creating the folders when
 * create is set. */
int rkv_client__cluster_load_nodes(const char *dir, int n_nodes, bool create,
                                   struct rkv_client__cluster_node *nodes)
{
    char abs_dir[PATH_MAX];

    if (create && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "rangekv cluster: cannot create %s: %s\n", dir,
                strerror(errno));
        return -errno;
    }
    if (realpath(dir, abs_dir) == NULL) {
        fprintf(stderr, "rangekv cluster: cannot open %s: %s\n", dir,
                strerror(errno));
        return -errno;
    }
    for (int i = 0; i < n_nodes; i++) {
        memset(&nodes[i], 0, sizeof(nodes[i]));
        nodes[i].index = i + 1;
        if ((size_t)snprintf(nodes[i].dir, sizeof(nodes[i].dir), "%s/node%d",
                             abs_dir, i + 1) >= sizeof(nodes[i].dir)) {
            return -ENAMETOOLONG;
        }
        if (create && mkdir(nodes[i].dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "rangekv cluster: cannot create %s: %s\n",
                    nodes[i].dir, strerror(errno));
            return -errno;
        }
        cluster_load_pid(&nodes[i]);
    }
    return 0;
}

/* Counts DIR/node1, DIR/node2, ... that exist. */
int rkv_client__cluster_count_nodes(const char *dir)
{
    char path[PATH_MAX + 32];
    struct stat st;
    int n = 0;

    while (n < CLUSTER_NODES_MAX) {
        snprintf(path, sizeof(path), "%s/node%d/args", dir, n + 1);
        if (stat(path, &st) != 0) {
            break;
        }
        n++;
    }
    return n;
}

/* Chooses both addresses of every node: those of a previous start, or
 * --base-port ones, or free ports. */
int rkv_client__cluster_pick_addrs(struct rkv_client__cluster_node *nodes,
                                   const struct rkv_client__cluster_opts *opts)
{
    uint16_t ports[2 * CLUSTER_NODES_MAX];
    int n = opts->n_nodes;
    bool reuse = true;
    int rv;

    for (int i = 0; i < n && reuse; i++) {
        reuse = rkv_client__cluster_previous_addrs(&nodes[i]);
    }
    if (reuse) {
        return 0;
    }
    if (opts->base_port != 0) {
        for (int i = 0; i < 2 * n; i++) {
            ports[i] = (uint16_t)(opts->base_port + (uint64_t)i);
        }
    } else {
        rv = cluster_free_ports(2 * n, ports);
        if (rv != 0) {
            fprintf(stderr, "rangekv cluster: cannot pick free ports: %s\n",
                    strerror(-rv));
            return rv;
        }
    }
    for (int i = 0; i < n; i++) {
        snprintf(nodes[i].client_addr, sizeof(nodes[i].client_addr),
                 "127.0.0.1:%u", ports[i]);
        snprintf(nodes[i].peer_addr, sizeof(nodes[i].peer_addr), "127.0.0.1:%u",
                 ports[n + i]);
    }
    return 0;
}

int rkv_client__cluster_exe(char *exe, size_t exe_len)
{
    ssize_t n = readlink("/proc/self/exe", exe, exe_len - 1);

    if (n < 0) {
        fprintf(stderr, "rangekv cluster: cannot find this binary: %s\n",
                strerror(errno));
        return -errno;
    }
    exe[n] = '\0';
    return 0;
}

/* Sends sig to every running node of nodes. */
void rkv_client__cluster_signal_all(struct rkv_client__cluster_node *nodes,
                                    int n_nodes, int sig)
{
    for (int i = 0; i < n_nodes; i++) {
        if (nodes[i].pid != 0 &&
            rkv_client__cluster_pid_is_alive(nodes[i].pid)) {
            kill(nodes[i].pid, sig);
        }
    }
}

/* Waits until no node of nodes is alive; returns true when none is. */
bool rkv_client__cluster_wait_exit(struct rkv_client__cluster_node *nodes,
                                   int n_nodes, uint64_t deadline_ms)
{
    for (;;) {
        bool any_alive = false;

        for (int i = 0; i < n_nodes; i++) {
            any_alive =
                any_alive || (nodes[i].pid != 0 &&
                              rkv_client__cluster_pid_is_alive(nodes[i].pid));
        }
        if (!any_alive) {
            return true;
        }
        if (rkv_monotonic_ms() >= deadline_ms) {
            return false;
        }
        rkv_client__cluster_sleep_ms(CLUSTER_POLL_MS);
    }
}

bool rkv_client__cluster_log_contains(
    const struct rkv_client__cluster_node *node, const char *text)
{
    char path[PATH_MAX + 16];
    static char buf[1 << 16];
    FILE *f;
    size_t n;

    rkv_client__cluster_node_path(node, "node.log", path, sizeof(path));
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    /* The last 64 KiB hold this start's messages. */
    fseek(f, 0, SEEK_END);
    if (ftell(f) > (long)sizeof(buf) - 1) {
        fseek(f, -((long)sizeof(buf) - 1), SEEK_END);
    } else {
        fseek(f, 0, SEEK_SET);
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

void rkv_client__cluster_discard(struct rkv_client__cluster_node *nodes,
                                 int n_nodes)
{
    static const char *const files[] = {"pid", "args", "addresses", "data.mdb",
                                        "lock.mdb"};

    rkv_client__cluster_signal_all(nodes, n_nodes, SIGKILL);
    for (int i = 0; i < n_nodes; i++) {
        if (nodes[i].pid != 0) {
            waitpid(nodes[i].pid, NULL, 0);
            nodes[i].pid = 0;
        }
        for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
            char path[PATH_MAX + 16];
            rkv_client__cluster_node_path(&nodes[i], files[k], path,
                                          sizeof(path));
            unlink(path);
        }
    }
}
