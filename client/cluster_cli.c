/*
 * `rangekv cluster`: a local cluster of `rangekv start` processes of this
 * same binary, for tests, benchmarks and the demo.
 *
 * Layout of DIR:
 *   DIR/nodeK/           the store of node K (--store), K = 1..N
 *   DIR/nodeK/node.log   its stdout and stderr
 *   DIR/nodeK/pid        its process id while it runs
 *   DIR/nodeK/args       its `rangekv start` arguments, one per line, so
 *                        `restart-node` and a later `start` reuse them
 *   DIR/nodeK/addresses  written by the node once it listens
 *   DIR/initialized      present once `init` succeeded
 *
 * start: picks 2N ports (OS-chosen by binding port 0, or from --base-port),
 * spawns every node with setsid (so it outlives this command and a Ctrl-C
 * of the terminal), waits until each listens, bootstraps the cluster with an
 * InitRequest to node 1 (skipped when DIR/initialized exists), then waits
 * until a put, get and delete of a probe key succeed, and prints one line
 * per node. A later `start` on the same DIR reuses each node's ports, since
 * the members know one another by those addresses.
 *
 * stop: SIGTERM to every pid, SIGKILL after --timeout, pid files removed. A
 * pid is signalled only when /proc/PID/cmdline shows `rangekv start` with
 * this node's store, so a recycled pid is never hit.
 *
 * NOTE: free ports are found by binding port 0 and closing the socket, so
 * another process may take one before the node binds it; the node then
 * fails to start and `start` reports its log.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_cli.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rangekv/client.h"

#define CLUSTER_NODES_MAX 32
#define CLUSTER_ARGS_MAX 24
#define CLUSTER_START_TIMEOUT_DEFAULT_S 60
#define CLUSTER_STOP_TIMEOUT_DEFAULT_S 10
#define CLUSTER_POLL_MS 50
#define CLUSTER_PROBE_KEY "rangekv-cluster-probe"

/* Everything known about one node of the cluster. */
struct cluster_node {
    int index;                 /* K, 1-based */
    char dir[PATH_MAX];        /* DIR/nodeK, absolute */
    char peer_addr[64];        /* 127.0.0.1:PORT */
    char client_addr[64];      /* 127.0.0.1:PORT */
    pid_t pid;                 /* 0 when not running */
};

/* Options of `cluster start` and `restart-node`. */
struct cluster_opts {
    int n_nodes;
    const char *dir;
    uint64_t base_port;        /* 0: OS-chosen */
    const char *split_bytes;   /* passed through, or NULL */
    const char *log_level;     /* passed through, or NULL */
    uint64_t timeout_s;
};

static void cluster_usage(FILE *out)
{
    fprintf(out,
            "usage: rangekv cluster start -n N --dir DIR [options]\n"
            "       rangekv cluster stop --dir DIR [--timeout S]\n"
            "       rangekv cluster status --dir DIR\n"
            "       rangekv cluster restart-node K --dir DIR [--timeout S]\n\n"
            "Runs a local cluster of N `rangekv start` processes in the\n"
            "background, one store, log and pid file per node under DIR/nodeK.\n"
            "start prints \"node K client HOST:PORT peer HOST:PORT pid P\" per\n"
            "node once the cluster serves requests.\n\n"
            "options:\n"
            "  -n, --nodes N        number of nodes, 1 to %d (start; required)\n"
            "  --dir DIR            cluster folder, created if missing (required)\n"
            "  --base-port P        node K gets client port P+K-1 and peer port\n"
            "                       P+N+K-1 (default: ports chosen by the OS)\n"
            "  --split-bytes N      range split threshold in bytes (default:\n"
            "                       the node's, 536870912)\n"
            "  --log-level L        node log level: debug, info, warn or error\n"
            "                       (default: the node's, info)\n"
            "  --timeout S          seconds to wait: for the cluster to serve\n"
            "                       (start, restart-node; default %d) or for\n"
            "                       nodes to exit before SIGKILL (stop; default\n"
            "                       %d)\n"
            "  --help               show this help\n",
            CLUSTER_NODES_MAX, CLUSTER_START_TIMEOUT_DEFAULT_S,
            CLUSTER_STOP_TIMEOUT_DEFAULT_S);
}

static int cluster_usage_error(const char *message)
{
    fprintf(stderr, "rangekv cluster: %s\nrun `rangekv cluster --help` for the options\n",
            message);
    return 2;
}

static void cluster_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- files ----------------------------------------------------------------- */

static int cluster_write_file(const char *path, const char *text)
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

static void cluster_node_path(const struct cluster_node *node,
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
static void cluster_print_log_tail(const struct cluster_node *node)
{
    char path[PATH_MAX + 16];
    static char buf[1 << 16];
    FILE *f;
    long size;
    size_t n;
    const char *start;
    int n_lines = 0;

    cluster_node_path(node, "node.log", path, sizeof(path));
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

/* ---- processes ------------------------------------------------------------- */

/* True when pid runs `rangekv start` with this node's store. */
static bool cluster_pid_is_node(pid_t pid, const struct cluster_node *node)
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
static bool cluster_pid_is_alive(pid_t pid)
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
static void cluster_load_pid(struct cluster_node *node)
{
    char path[PATH_MAX + 16];
    char text[32];

    node->pid = 0;
    cluster_node_path(node, "pid", path, sizeof(path));
    if (cluster_read_file(path, text, sizeof(text)) != 0) {
        return;
    }
    node->pid = (pid_t)atoi(text);
    if (node->pid <= 0 || !cluster_pid_is_alive(node->pid) ||
        !cluster_pid_is_node(node->pid, node)) {
        node->pid = 0;
    }
}

/* Reads the args file of node into argv (pointers into buf). */
static int cluster_read_args(const struct cluster_node *node, char *buf,
                             size_t buf_len, char **argv, int *argc)
{
    char path[PATH_MAX + 16];
    char *line;
    char *save;
    int rv;

    cluster_node_path(node, "args", path, sizeof(path));
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
static int cluster_spawn(struct cluster_node *node, const char *exe)
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
        fprintf(stderr, "rangekv cluster: cannot read %s/args: %s\n",
                node->dir, strerror(-rv));
        return rv;
    }
    argv[0] = (char *)exe;
    cluster_node_path(node, "addresses", path, sizeof(path));
    unlink(path);
    cluster_node_path(node, "node.log", path, sizeof(path));

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
    cluster_node_path(node, "pid", path, sizeof(path));
    return cluster_write_file(path, pid_text);
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
static int cluster_wait_listening(struct cluster_node *node,
                                  uint64_t deadline_ms)
{
    char path[PATH_MAX + 16];
    char text[512];

    cluster_node_path(node, "addresses", path, sizeof(path));
    while (rkv_monotonic_ms() < deadline_ms) {
        int status;

        if (waitpid(node->pid, &status, WNOHANG) == node->pid) {
            fprintf(stderr, "rangekv cluster: node %d exited with status %d before listening\n",
                    node->index,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
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
        cluster_sleep_ms(CLUSTER_POLL_MS);
    }
    fprintf(stderr, "rangekv cluster: node %d did not listen in time\n",
            node->index);
    cluster_print_log_tail(node);
    return RKV_ETIMEOUT;
}

/* ---- ports and arguments ----------------------------------------------------- */

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
static bool cluster_previous_addrs(struct cluster_node *node)
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
static int cluster_write_args(const struct cluster_node *node,
                              const struct cluster_node *nodes, int n_nodes,
                              const struct cluster_opts *opts)
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
    if (opts->log_level != NULL && pos < sizeof(text)) {
        pos += (size_t)snprintf(text + pos, sizeof(text) - pos,
                                "\n--log-level\n%s", opts->log_level);
    }
    if (pos + 2 >= sizeof(text)) {
        return -ENAMETOOLONG;
    }
    text[pos++] = '\n';
    text[pos] = '\0';
    cluster_node_path(node, "args", path, sizeof(path));
    return cluster_write_file(path, text);
}

/* Fills nodes[i].dir for DIR (made absolute), creating the folders when
 * create is set. */
static int cluster_load_nodes(const char *dir, int n_nodes, bool create,
                              struct cluster_node *nodes)
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
static int cluster_count_nodes(const char *dir)
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
static int cluster_pick_addrs(struct cluster_node *nodes,
                              const struct cluster_opts *opts)
{
    uint16_t ports[2 * CLUSTER_NODES_MAX];
    int n = opts->n_nodes;
    bool reuse = true;
    int rv;

    for (int i = 0; i < n && reuse; i++) {
        reuse = cluster_previous_addrs(&nodes[i]);
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
        snprintf(nodes[i].peer_addr, sizeof(nodes[i].peer_addr),
                 "127.0.0.1:%u", ports[n + i]);
    }
    return 0;
}

/* ---- init and probe -------------------------------------------------------- */

static int cluster_open_client(struct cluster_node *nodes, int n_nodes,
                               uint32_t timeout_ms,
                               struct rkv_client **client)
{
    const char *hosts[CLUSTER_NODES_MAX];
    struct rkv_client_options options = {0};

    for (int i = 0; i < n_nodes; i++) {
        hosts[i] = nodes[i].client_addr;
    }
    options.hosts = hosts;
    options.n_hosts = (size_t)n_nodes;
    options.timeout_ms = timeout_ms;
    return rkv_client_open(&options, client);
}

/* Bootstraps the cluster through node 1, retrying until the deadline while
 * members are still connecting. RKV_ESTALE means it already is. */
static int cluster_init(struct cluster_node *nodes, int n_nodes,
                        uint64_t deadline_ms)
{
    struct rkv_client *client;
    uint64_t cluster_id = 0;
    int rv;

    rv = cluster_open_client(nodes, n_nodes, 5000, &client);
    if (rv != 0) {
        return rv;
    }
    do {
        rv = rkv_client_init_cluster(client, nodes[0].client_addr,
                                     &cluster_id);
        if (rv == 0 || rv == RKV_ESTALE || rv == RKV_EUNKNOWN) {
            break;
        }
        cluster_sleep_ms(200);
    } while (rkv_monotonic_ms() < deadline_ms);
    rkv_client_close(client);
    if (rv == 0) {
        /* stdout carries only the node lines that scripts parse. */
        fprintf(stderr, "cluster initialized cluster_id=%" PRIu64 "\n",
                cluster_id);
    }
    /* A lost reply is settled by the probe that follows. */
    if (rv == RKV_ESTALE || rv == RKV_EUNKNOWN) {
        rv = 0;
    }
    if (rv != 0) {
        fprintf(stderr, "rangekv cluster: init through %s failed: %s\n",
                nodes[0].client_addr, rkv_strerror(rv));
    }
    return rv;
}

/* One put, get and delete of the probe key. */
static int cluster_probe_once(struct rkv_client *client)
{
    static const char key[] = CLUSTER_PROBE_KEY;
    uint8_t *value;
    size_t value_len;
    int rv;

    rv = rkv_client_put(client, key, sizeof(key) - 1, "ok", 2);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_client_get(client, key, sizeof(key) - 1, &value, &value_len);
    if (rv != 0) {
        return rv;
    }
    rv = value_len == 2 && memcmp(value, "ok", 2) == 0 ? 0 : RKV_ECORRUPT;
    free(value);
    if (rv != 0) {
        return rv;
    }
    return rkv_client_delete(client, key, sizeof(key) - 1);
}

/* Waits until the cluster serves a probe write and read. */
static int cluster_probe(struct cluster_node *nodes, int n_nodes,
                         uint64_t deadline_ms)
{
    struct rkv_client *client;
    int rv;

    rv = cluster_open_client(nodes, n_nodes, 5000, &client);
    if (rv != 0) {
        return rv;
    }
    do {
        rv = cluster_probe_once(client);
        if (rv == 0) {
            break;
        }
        cluster_sleep_ms(100);
    } while (rkv_monotonic_ms() < deadline_ms);
    rkv_client_close(client);
    if (rv != 0) {
        fprintf(stderr, "rangekv cluster: the cluster did not serve a probe write and read in time: %s\n",
                rkv_strerror(rv));
    }
    return rv;
}

static void cluster_print_node(const struct cluster_node *node)
{
    printf("node %d client %s peer %s pid %d\n", node->index,
           node->client_addr, node->peer_addr, (int)node->pid);
}

/* ---- subcommands ----------------------------------------------------------- */

static int cluster_exe(char *exe, size_t exe_len)
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

/* Spawns every node and waits until all listen. */
static int cluster_spawn_all(struct cluster_node *nodes,
                             const struct cluster_opts *opts,
                             uint64_t deadline_ms)
{
    char exe[PATH_MAX];
    int rv;

    rv = cluster_exe(exe, sizeof(exe));
    if (rv != 0) {
        return rv;
    }
    for (int i = 0; i < opts->n_nodes; i++) {
        rv = cluster_write_args(&nodes[i], nodes, opts->n_nodes, opts);
        if (rv == 0) {
            rv = cluster_spawn(&nodes[i], exe);
        }
        if (rv != 0) {
            fprintf(stderr, "rangekv cluster: cannot start node %d: %s\n",
                    i + 1, strerror(-rv));
            return rv;
        }
    }
    for (int i = 0; i < opts->n_nodes; i++) {
        rv = cluster_wait_listening(&nodes[i], deadline_ms);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int cluster_start(const struct cluster_opts *opts)
{
    struct cluster_node nodes[CLUSTER_NODES_MAX];
    uint64_t deadline_ms = rkv_monotonic_ms() + opts->timeout_s * 1000;
    char marker[PATH_MAX + 16];
    struct stat st;
    int n_previous = cluster_count_nodes(opts->dir);
    int rv;

    if (n_previous > 0 && n_previous != opts->n_nodes) {
        fprintf(stderr, "rangekv cluster: %s has a cluster of %d nodes; use -n %d or another --dir\n",
                opts->dir, n_previous, n_previous);
        return 1;
    }
    rv = cluster_load_nodes(opts->dir, opts->n_nodes, true, nodes);
    if (rv != 0) {
        return 1;
    }
    for (int i = 0; i < opts->n_nodes; i++) {
        if (nodes[i].pid != 0) {
            fprintf(stderr, "rangekv cluster: node %d already runs (pid %d); run `rangekv cluster stop --dir %s` first\n",
                    i + 1, (int)nodes[i].pid, opts->dir);
            return 1;
        }
    }
    if (cluster_pick_addrs(nodes, opts) != 0 ||
        cluster_spawn_all(nodes, opts, deadline_ms) != 0) {
        fprintf(stderr, "rangekv cluster: start failed; nodes that did start keep running: run `rangekv cluster stop --dir %s`\n",
                opts->dir);
        return 1;
    }

    snprintf(marker, sizeof(marker), "%s/initialized", opts->dir);
    if (stat(marker, &st) != 0) {
        if (cluster_init(nodes, opts->n_nodes, deadline_ms) != 0) {
            return 1;
        }
        cluster_write_file(marker, "yes\n");
    }
    if (cluster_probe(nodes, opts->n_nodes, deadline_ms) != 0) {
        fprintf(stderr, "see %s/nodeK/node.log; stop with `rangekv cluster stop --dir %s`\n",
                opts->dir, opts->dir);
        return 1;
    }
    for (int i = 0; i < opts->n_nodes; i++) {
        cluster_print_node(&nodes[i]);
    }
    return 0;
}

/* Sends sig to every running node of nodes. */
static void cluster_signal_all(struct cluster_node *nodes, int n_nodes,
                               int sig)
{
    for (int i = 0; i < n_nodes; i++) {
        if (nodes[i].pid != 0 && cluster_pid_is_alive(nodes[i].pid)) {
            kill(nodes[i].pid, sig);
        }
    }
}

/* Waits until no node of nodes is alive; returns true when none is. */
static bool cluster_wait_exit(struct cluster_node *nodes, int n_nodes,
                              uint64_t deadline_ms)
{
    for (;;) {
        bool any_alive = false;

        for (int i = 0; i < n_nodes; i++) {
            any_alive = any_alive ||
                        (nodes[i].pid != 0 &&
                         cluster_pid_is_alive(nodes[i].pid));
        }
        if (!any_alive) {
            return true;
        }
        if (rkv_monotonic_ms() >= deadline_ms) {
            return false;
        }
        cluster_sleep_ms(CLUSTER_POLL_MS);
    }
}

static int cluster_stop(const char *dir, uint64_t timeout_s)
{
    struct cluster_node nodes[CLUSTER_NODES_MAX];
    int n_nodes = cluster_count_nodes(dir);

    if (cluster_load_nodes(dir, n_nodes, false, nodes) != 0) {
        return 1;
    }
    cluster_signal_all(nodes, n_nodes, SIGTERM);
    if (!cluster_wait_exit(nodes, n_nodes,
                           rkv_monotonic_ms() + timeout_s * 1000)) {
        for (int i = 0; i < n_nodes; i++) {
            if (nodes[i].pid != 0 && cluster_pid_is_alive(nodes[i].pid)) {
                fprintf(stderr, "rangekv cluster: node %d (pid %d) did not exit within %" PRIu64 " s; sending SIGKILL\n",
                        i + 1, (int)nodes[i].pid, timeout_s);
            }
        }
        cluster_signal_all(nodes, n_nodes, SIGKILL);
        cluster_wait_exit(nodes, n_nodes, rkv_monotonic_ms() + 5000);
    }
    for (int i = 0; i < n_nodes; i++) {
        char path[PATH_MAX + 16];

        if (nodes[i].pid != 0) {
            printf("node %d stopped (pid %d)\n", i + 1, (int)nodes[i].pid);
        }
        cluster_node_path(&nodes[i], "pid", path, sizeof(path));
        unlink(path);
    }
    return 0;
}

static int cluster_status(const char *dir)
{
    struct cluster_node nodes[CLUSTER_NODES_MAX];
    int n_nodes = cluster_count_nodes(dir);

    if (n_nodes == 0) {
        fprintf(stderr, "rangekv cluster: no cluster in %s\n", dir);
        return 1;
    }
    if (cluster_load_nodes(dir, n_nodes, false, nodes) != 0) {
        return 1;
    }
    for (int i = 0; i < n_nodes; i++) {
        cluster_previous_addrs(&nodes[i]);
        printf("node %d %s client %s peer %s", i + 1,
               nodes[i].pid != 0 ? "running" : "stopped",
               nodes[i].client_addr, nodes[i].peer_addr);
        if (nodes[i].pid != 0) {
            printf(" pid %d", (int)nodes[i].pid);
        }
        printf("\n");
    }
    return 0;
}

static int cluster_restart_node(const char *dir, int index,
                                uint64_t timeout_s)
{
    struct cluster_node nodes[CLUSTER_NODES_MAX];
    int n_nodes = cluster_count_nodes(dir);
    char exe[PATH_MAX];
    struct cluster_node *node;

    if (index < 1 || index > n_nodes) {
        fprintf(stderr, "rangekv cluster: no node %d in %s (it has %d)\n",
                index, dir, n_nodes);
        return 1;
    }
    if (cluster_load_nodes(dir, n_nodes, false, nodes) != 0 ||
        cluster_exe(exe, sizeof(exe)) != 0) {
        return 1;
    }
    node = &nodes[index - 1];
    if (node->pid != 0) {
        fprintf(stderr, "rangekv cluster: node %d already runs (pid %d)\n",
                index, (int)node->pid);
        return 1;
    }
    if (cluster_spawn(node, exe) != 0 ||
        cluster_wait_listening(node, rkv_monotonic_ms() +
                                         timeout_s * 1000) != 0) {
        return 1;
    }
    cluster_print_node(node);
    return 0;
}

/* ---- argument parsing ------------------------------------------------------ */

enum {
    OPT_DIR = 256,
    OPT_BASE_PORT,
    OPT_SPLIT_BYTES,
    OPT_LOG_LEVEL,
    OPT_TIMEOUT,
    OPT_HELP,
};

static int cluster_apply_option(int opt, const char *arg,
                                struct cluster_opts *opts)
{
    uint64_t value;

    switch (opt) {
    case 'n':
        if (rkv_client__cli_parse_u64(arg, 1, CLUSTER_NODES_MAX, &value) !=
            0) {
            return cluster_usage_error("invalid -n: expected 1 to 32 nodes");
        }
        opts->n_nodes = (int)value;
        return 0;
    case OPT_DIR:
        opts->dir = arg;
        return 0;
    case OPT_BASE_PORT:
        if (rkv_client__cli_parse_u64(arg, 1, 65535 - 2 * CLUSTER_NODES_MAX,
                                      &value) != 0) {
            return cluster_usage_error("invalid --base-port: expected a port from 1 to 65471");
        }
        opts->base_port = value;
        return 0;
    case OPT_SPLIT_BYTES:
        if (rkv_client__cli_parse_u64(arg, 1, UINT64_MAX, &value) != 0) {
            return cluster_usage_error("invalid --split-bytes: expected a positive number of bytes");
        }
        opts->split_bytes = arg;
        return 0;
    case OPT_LOG_LEVEL:
        if (strcmp(arg, "debug") != 0 && strcmp(arg, "info") != 0 &&
            strcmp(arg, "warn") != 0 && strcmp(arg, "error") != 0) {
            return cluster_usage_error("invalid --log-level: expected debug, info, warn or error");
        }
        opts->log_level = arg;
        return 0;
    case OPT_TIMEOUT:
        if (rkv_client__cli_parse_u64(arg, 1, 86400, &value) != 0) {
            return cluster_usage_error("invalid --timeout: expected 1 to 86400 seconds");
        }
        opts->timeout_s = value;
        return 0;
    default:
        return 2;
    }
}

/* Parses the options after the action. Returns -1 to go on, or an exit
 * status (0 after --help). */
static int cluster_parse(int argc, char **argv, struct cluster_opts *opts)
{
    static const struct option options[] = {
        {"nodes", required_argument, NULL, 'n'},
        {"dir", required_argument, NULL, OPT_DIR},
        {"base-port", required_argument, NULL, OPT_BASE_PORT},
        {"split-bytes", required_argument, NULL, OPT_SPLIT_BYTES},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "n:h", options, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            cluster_usage(stdout);
            return 0;
        }
        if (opt == '?') {
            char message[128];
            snprintf(message, sizeof(message),
                     "unknown option or missing value: %s", argv[optind - 1]);
            return cluster_usage_error(message);
        }
        if (cluster_apply_option(opt, optarg, opts) != 0) {
            return 2;
        }
    }
    if (opts->dir == NULL) {
        return cluster_usage_error("--dir is required");
    }
    return -1;
}

int rkv_client__cluster_main(int argc, char **argv)
{
    struct cluster_opts opts = {0};
    const char *action;
    uint64_t index = 0;
    int status;

    if (argc < 2) {
        return cluster_usage_error("missing action: start, stop, status or restart-node");
    }
    action = argv[1];
    if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0 ||
        strcmp(action, "help") == 0) {
        cluster_usage(stdout);
        return 0;
    }
    /* The action is argv[0] of the option parser. */
    status = cluster_parse(argc - 1, argv + 1, &opts);
    if (status >= 0) {
        return status;
    }
    if (strcmp(action, "restart-node") == 0) {
        if (optind + 1 != argc - 1 ||
            rkv_client__cli_parse_u64(argv[1 + optind], 1, CLUSTER_NODES_MAX,
                                      &index) != 0) {
            return cluster_usage_error("restart-node expects one node number K");
        }
    } else if (optind != argc - 1) {
        return cluster_usage_error("unexpected argument");
    }

    if (strcmp(action, "start") == 0) {
        if (opts.n_nodes == 0) {
            return cluster_usage_error("start needs -n N");
        }
        if (opts.timeout_s == 0) {
            opts.timeout_s = CLUSTER_START_TIMEOUT_DEFAULT_S;
        }
        return cluster_start(&opts);
    }
    if (strcmp(action, "stop") == 0) {
        return cluster_stop(opts.dir, opts.timeout_s != 0
                                          ? opts.timeout_s
                                          : CLUSTER_STOP_TIMEOUT_DEFAULT_S);
    }
    if (strcmp(action, "status") == 0) {
        return cluster_status(opts.dir);
    }
    if (strcmp(action, "restart-node") == 0) {
        return cluster_restart_node(opts.dir, (int)index,
                                    opts.timeout_s != 0
                                        ? opts.timeout_s
                                        : CLUSTER_START_TIMEOUT_DEFAULT_S);
    }
    return cluster_usage_error("unknown action: expected start, stop, status or restart-node");
}
