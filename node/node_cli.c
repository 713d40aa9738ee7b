/*
 * The node's `rangekv` subcommands:
 *   start  runs a node in the foreground until SIGINT or SIGTERM;
 *   init   bootstraps a cluster through one node's client port.
 * Both parse their flags here and call the embedding API
 * (include/rangekv/rangekv.h) or the client wire protocol (node/rpc.proto).
 */
#define RKV_LOG_SUBSYS "node"
#include "common/common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/rpc.pb-c.h"
#include "rangekv/rangekv.h"

/* Time `init` waits for the node's response. */
#define CLI_INIT_TIMEOUT_S 30

static void start_usage(FILE *out)
{
    fprintf(
        out,
        "usage: rangekv start --store DIR --join HOST:PORT[,HOST:PORT...]\n"
        "                     [options]\n\n"
        "Runs one node in the foreground until SIGINT or SIGTERM.\n\n"
        "options:\n"
        "  --store DIR                  data folder (created if missing)\n"
        "  --listen-addr HOST:PORT      peer (Raft) listener; port 0 picks\n"
        "                               one (default 127.0.0.1:0)\n"
        "  --client-addr HOST:PORT      client RPC listener (default\n"
        "                               127.0.0.1:0)\n"
        "  --advertise-addr HOST:PORT   peer address sent to other nodes\n"
        "                               (default: the bound listen address)\n"
        "  --advertise-client-addr HOST:PORT\n"
        "                               client address sent to clients\n"
        "                               (default: the bound client address)\n"
        "  --join LIST                  comma-separated peer addresses of\n"
        "                               all initial members, same order on\n"
        "                               every member\n"
        "  --node-id N                  node id (default: 1-based position\n"
        "                               of this node in --join)\n"
        "  --split-bytes N              range split threshold in bytes\n"
        "                               (default 536870912, 512 MiB)\n"
        "  --cluster-secret S           shared secret that authenticates\n"
        "                               peers (default: none); any local\n"
        "                               user can read it in the process\n"
        "                               list, so prefer the file option\n"
        "  --cluster-secret-file PATH   read the secret from the first line\n"
        "                               of PATH (which only the owner may\n"
        "                               read or write)\n"
        "  --log-level L                debug, info, warn or error\n"
        "                               (default info)\n"
        "  --tick-ms N                  Raft tick in milliseconds\n"
        "                               (default 100)\n"
        "  --log-compact-entries N      applied Raft log entries each range\n"
        "                               keeps for lagging followers; older\n"
        "                               ones are compacted (default 20000)\n"
        "  --no-sync                    skip fsync (tests only: a crash\n"
        "                               loses acknowledged writes)\n"
        "  --map-size-max BYTES         largest size the store's LMDB map\n"
        "                               may grow to; past it writes fail\n"
        "                               with RKV_EMAPFULL (default 1 TiB)\n\n"
        "Once both listeners are bound the node writes DIR/addresses:\n"
        "\"peer HOST:PORT\" and \"client HOST:PORT\".\n");
}

static int parse_log_level(const char *text, enum rkv_log_level *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};

    for (size_t i = 0; i < RKV_ARRAY_SIZE(names); i++) {
        if (strcasecmp(text, names[i]) == 0) {
            *level = (enum rkv_log_level)i;
            return 0;
        }
    }
    return RKV_ECONFIG;
}

static int parse_u64(const char *text, uint64_t *value)
{
    char *end;

    errno = 0;
    *value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        return RKV_ECONFIG;
    }
    return 0;
}

/* Splits the comma-separated join list in place into join[]. */
static int parse_join(char *list, const char **join, size_t *n_join)
{
    char *save = NULL;

    *n_join = 0;
    for (char *item = strtok_r(list, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        if (*n_join == RKV_NODE_JOIN_MAX) {
            return RKV_ECONFIG;
        }
        join[(*n_join)++] = item;
    }
    return 0;
}

enum start_option {
    OPT_STORE = 1,
    OPT_LISTEN,
    OPT_CLIENT,
    OPT_ADVERTISE,
    OPT_ADVERTISE_CLIENT,
    OPT_JOIN,
    OPT_NODE_ID,
    OPT_SPLIT_BYTES,
    OPT_SECRET,
    OPT_SECRET_FILE,
    OPT_LOG_LEVEL,
    OPT_TICK_MS,
    OPT_NO_SYNC,
    OPT_LOG_COMPACT,
    OPT_MAP_SIZE_MAX,
    OPT_HELP,
};

static const struct option start_options[] = {
    {"store", required_argument, NULL, OPT_STORE},
    {"listen-addr", required_argument, NULL, OPT_LISTEN},
    {"client-addr", required_argument, NULL, OPT_CLIENT},
    {"advertise-addr", required_argument, NULL, OPT_ADVERTISE},
    {"advertise-client-addr", required_argument, NULL, OPT_ADVERTISE_CLIENT},
    {"join", required_argument, NULL, OPT_JOIN},
    {"node-id", required_argument, NULL, OPT_NODE_ID},
    {"split-bytes", required_argument, NULL, OPT_SPLIT_BYTES},
    {"cluster-secret", required_argument, NULL, OPT_SECRET},
    {"cluster-secret-file", required_argument, NULL, OPT_SECRET_FILE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"tick-ms", required_argument, NULL, OPT_TICK_MS},
    {"no-sync", no_argument, NULL, OPT_NO_SYNC},
    {"log-compact-entries", required_argument, NULL, OPT_LOG_COMPACT},
    {"map-size-max", required_argument, NULL, OPT_MAP_SIZE_MAX},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Largest cluster secret read from a file, in bytes. */
#define CLI_SECRET_MAX 1024

/* Reads the first line of path into secret (cap bytes with the NUL) and
 * returns 0, or prints why the file cannot serve as a secret and returns
 * RKV_ECONFIG. A file that others may read or write is rejected, because
 * the secret is what keeps other local users off the peer port. */
static int read_secret_file(const char *path, char *secret, size_t cap)
{
    struct stat st;
    size_t len;
    FILE *file;

    file = fopen(path, "r");
    if (file == NULL) {
        fprintf(stderr,
                "rangekv start: cannot read --cluster-secret-file %s: %s\n",
                path, strerror(errno));
        return RKV_ECONFIG;
    }
    if (fstat(fileno(file), &st) != 0 || (st.st_mode & 077) != 0) {
        fprintf(stderr,
                "rangekv start: --cluster-secret-file %s may be read or "
                "written by other users; run `chmod 600 %s`\n",
                path, path);
        fclose(file);
        return RKV_ECONFIG;
    }
    if (fgets(secret, (int)cap, file) == NULL) {
        secret[0] = '\0';
    }
    fclose(file);
    len = strcspn(secret, "\r\n");
    secret[len] = '\0';
    if (len == 0) {
        fprintf(stderr,
                "rangekv start: --cluster-secret-file %s is empty; its "
                "first line must hold the secret\n",
                path);
        return RKV_ECONFIG;
    }
    return 0;
}

/* Applies one parsed option; returns 0 or RKV_ECONFIG with the option
 * named on stderr. */
static int start_apply_option(int opt, char *arg, struct rkv_node_config *cfg,
                              const char **join)
{
    enum rkv_log_level level;
    uint64_t value;

    switch (opt) {
    case OPT_STORE:
        cfg->store_dir = arg;
        return 0;
    case OPT_LISTEN:
        cfg->listen_addr = arg;
        return 0;
    case OPT_CLIENT:
        cfg->client_addr = arg;
        return 0;
    case OPT_ADVERTISE:
        cfg->advertise_addr = arg;
        return 0;
    case OPT_ADVERTISE_CLIENT:
        cfg->advertise_client_addr = arg;
        return 0;
    case OPT_JOIN:
        if (parse_join(arg, join, &cfg->n_join) != 0) {
            fprintf(stderr,
                    "rangekv start: --join lists more than %d "
                    "members\n",
                    RKV_NODE_JOIN_MAX);
            return RKV_ECONFIG;
        }
        cfg->join = join;
        return 0;
    case OPT_NODE_ID:
        if (parse_u64(arg, &value) != 0 || value == 0) {
            fprintf(stderr,
                    "rangekv start: invalid --node-id '%s': expected "
                    "a positive integer\n",
                    arg);
            return RKV_ECONFIG;
        }
        cfg->node_id = value;
        return 0;
    case OPT_SPLIT_BYTES:
        if (parse_u64(arg, &value) != 0 || value == 0) {
            fprintf(stderr,
                    "rangekv start: invalid --split-bytes '%s': "
                    "expected a positive number of bytes\n",
                    arg);
            return RKV_ECONFIG;
        }
        cfg->split_bytes = value;
        return 0;
    case OPT_SECRET:
        cfg->cluster_secret = arg;
        return 0;
    case OPT_SECRET_FILE: {
        /* Static: cfg borrows it until the node has copied it. */
        static char secret[CLI_SECRET_MAX + 1];

        if (read_secret_file(arg, secret, sizeof(secret)) != 0) {
            return RKV_ECONFIG;
        }
        cfg->cluster_secret = secret;
        return 0;
    }
    case OPT_LOG_LEVEL:
        if (parse_log_level(arg, &level) != 0) {
            fprintf(stderr,
                    "rangekv start: invalid --log-level '%s': "
                    "expected debug, info, warn or error\n",
                    arg);
            return RKV_ECONFIG;
        }
        rkv_log_set_level(level);
        return 0;
    case OPT_TICK_MS:
        if (parse_u64(arg, &value) != 0 || value == 0 || value > 10000) {
            fprintf(stderr,
                    "rangekv start: invalid --tick-ms '%s': expected "
                    "1 to 10000 milliseconds\n",
                    arg);
            return RKV_ECONFIG;
        }
        cfg->tick_ms = (uint32_t)value;
        return 0;
    case OPT_NO_SYNC:
        cfg->no_sync = true;
        return 0;
    case OPT_LOG_COMPACT:
        if (parse_u64(arg, &value) != 0 || value < 10) {
            fprintf(stderr,
                    "rangekv start: invalid --log-compact-entries "
                    "'%s': expected at least 10 entries\n",
                    arg);
            return RKV_ECONFIG;
        }
        cfg->log_compact_entries = value;
        return 0;
    case OPT_MAP_SIZE_MAX:
        if (parse_u64(arg, &value) != 0 || value < RKV_NODE_MAP_SIZE_MAX_MIN) {
            fprintf(stderr,
                    "rangekv start: invalid --map-size-max '%s': "
                    "expected at least %u bytes\n",
                    arg, (unsigned)RKV_NODE_MAP_SIZE_MAX_MIN);
            return RKV_ECONFIG;
        }
        cfg->map_size_max = value;
        return 0;
    default:
        return RKV_ECONFIG;
    }
}

static int start_main(int argc, char **argv)
{
    struct rkv_node_config cfg = {0};
    const char *join[RKV_NODE_JOIN_MAX];
    struct rkv_node *node;
    char errmsg[512];
    sigset_t signals;
    int signal_number;
    int opt;
    int rv;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", start_options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            start_usage(stdout);
            return 0;
        }
        if (opt == '?' || start_apply_option(opt, optarg, &cfg, join) != 0) {
            fprintf(stderr, "run `rangekv start --help` for the options\n");
            return 2;
        }
    }
    if (optind < argc || cfg.store_dir == NULL || cfg.n_join == 0) {
        fprintf(stderr, "rangekv start: --store and --join are required\n");
        start_usage(stderr);
        return 2;
    }

    /* Block the stop signals before the node's threads start, so they
     * inherit the mask and only sigwait() below receives them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    rv = rkv_node_start(&cfg, &node, errmsg, sizeof(errmsg));
    if (rv != 0) {
        fprintf(stderr, "rangekv start: %s\n", errmsg);
        return 1;
    }
    sigwait(&signals, &signal_number);
    RKV_LOG(RKV_INFO, "stopping on signal=%d", signal_number);
    rkv_node_stop(node);
    return 0;
}

/* ---- init --------------------------------------------------------------- */

static void init_usage(FILE *out)
{
    fprintf(out,
            "usage: rangekv init --host HOST:PORT\n\n"
            "Bootstraps a new cluster once all initial members run: the node\n"
            "at HOST:PORT (its client address) picks a cluster id and creates\n"
            "the first range on every member of its --join list.\n\n"
            "options:\n"
            "  --host HOST:PORT   a node's client address (required)\n");
}

/* Connects a blocking socket to host:port with a receive timeout. */
static int init_connect(const char *addr, int *fd_out)
{
    char host[RKV_NODE_ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints = {0};
    struct addrinfo *res;
    struct timeval timeout = {.tv_sec = CLI_INIT_TIMEOUT_S};
    int fd;
    int rv;

    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return RKV_ECONFIG;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rv = getaddrinfo(host, colon + 1, &hints, &res);
    if (rv != 0) {
        return RKV_ECONFIG;
    }
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        rv = -errno;
        freeaddrinfo(res);
        if (fd >= 0) {
            close(fd);
        }
        return rv;
    }
    freeaddrinfo(res);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    *fd_out = fd;
    return 0;
}

static int init_io_all(int fd, uint8_t *buf, size_t len, bool is_write)
{
    while (len > 0) {
        ssize_t n = is_write ? write(fd, buf, len) : read(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return -ECONNRESET;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends an InitRequest and reads its Response. */
static int init_call(int fd, Rkv__Rpc__Response **response_out)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__InitRequest init = RKV__RPC__INIT_REQUEST__INIT;
    uint8_t header[4];
    uint8_t *buf;
    size_t len;
    int rv;

    request.id = 1;
    request.op_case = RKV__RPC__REQUEST__OP_INIT;
    request.init = &init;
    len = rkv__rpc__request__get_packed_size(&request);
    buf = rkv_malloc(4 + len);
    if (buf == NULL) {
        return -ENOMEM;
    }
    rkv_put_be32(buf, (uint32_t)len);
    rkv__rpc__request__pack(&request, buf + 4);
    rv = init_io_all(fd, buf, 4 + len, true);
    rkv_free(buf);
    if (rv != 0) {
        return rv;
    }

    rv = init_io_all(fd, header, sizeof(header), false);
    if (rv != 0) {
        return rv;
    }
    len = rkv_get_be32(header);
    if (len == 0 || len > 1024 * 1024) {
        return RKV_EMALFORMED;
    }
    buf = rkv_malloc(len);
    if (buf == NULL) {
        return -ENOMEM;
    }
    rv = init_io_all(fd, buf, len, false);
    if (rv == 0) {
        *response_out = rkv__rpc__response__unpack(NULL, len, buf);
        rv = *response_out == NULL ? RKV_EMALFORMED : 0;
    }
    rkv_free(buf);
    return rv;
}

static int init_main(int argc, char **argv)
{
    static const struct option options[] = {
        {"host", required_argument, NULL, 'h'},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    const char *host = NULL;
    Rkv__Rpc__Response *response = NULL;
    int fd = -1;
    int opt;
    int rv;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'H') {
            init_usage(stdout);
            return 0;
        }
        if (opt != 'h') {
            init_usage(stderr);
            return 2;
        }
        host = optarg;
    }
    if (host == NULL || optind < argc) {
        fprintf(stderr, "rangekv init: --host is required\n");
        init_usage(stderr);
        return 2;
    }

    rv = init_connect(host, &fd);
    if (rv != 0) {
        fprintf(stderr, "rangekv init: cannot connect to %s: %s\n", host,
                rkv_strerror(rv));
        return 1;
    }
    rv = init_call(fd, &response);
    close(fd);
    if (rv != 0) {
        fprintf(stderr, "rangekv init: request to %s failed: %s\n", host,
                rkv_strerror(rv));
        return 1;
    }
    rv = response->error;
    if (rv != 0) {
        fprintf(stderr, "rangekv init: %s: %s\n", rkv_strerror(rv),
                response->error_message != NULL ? response->error_message : "");
    } else if (response->result_case == RKV__RPC__RESPONSE__RESULT_INIT) {
        printf("cluster initialized cluster_id=%" PRIu64 "\n",
               response->init->cluster_id);
    }
    rkv__rpc__response__free_unpacked(response, NULL);
    return rv == 0 ? 0 : 1;
}

const struct rkv_cli_command rkv_node_cli_commands[] = {
    {"start", "run a node in the foreground", start_main},
    {"init", "bootstrap a new cluster through one node", init_main},
    {NULL, NULL, NULL},
};
