/*
 * Internals of `rangekv cluster` shared by cluster_cli.c (the subcommands)
 * and cluster_node.c (node folders, processes, ports and argument files).
 * See cluster_cli.c for the layout of the cluster folder.
 */
#ifndef RKV_CLIENT_CLUSTER_INTERNAL_H
#define RKV_CLIENT_CLUSTER_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CLUSTER_NODES_MAX 32
#define CLUSTER_ARGS_MAX 24
#define CLUSTER_START_TIMEOUT_DEFAULT_S 60
#define CLUSTER_STOP_TIMEOUT_DEFAULT_S 10
#define CLUSTER_POLL_MS 50
#define CLUSTER_PROBE_KEY "rangekv-cluster-probe"
/* Fresh starts tried with new OS-chosen ports when a node finds one of its
 * ports taken by another process between the pick and its bind. */
#define CLUSTER_PORT_ATTEMPTS 3

/* Everything known about one node of the cluster. */
struct rkv_client__cluster_node {
    int index;            /* K, 1-based */
    char dir[PATH_MAX];   /* DIR/nodeK, absolute */
    char peer_addr[64];   /* 127.0.0.1:PORT */
    char client_addr[64]; /* 127.0.0.1:PORT */
    pid_t pid;            /* 0 when not running */
};

/* Options of `cluster start` and `restart-node`. */
struct rkv_client__cluster_opts {
    int n_nodes;
    const char *dir;
    uint64_t base_port;      /* 0: OS-chosen */
    const char *split_bytes; /* passed through, or NULL */
    const char *log_level;   /* passed through, or NULL */
    uint64_t timeout_s;
    const char *secret_file; /* absolute path of DIR/secret, or NULL */
};

/* Creates DIR/secret (mode 0600) holding a random cluster secret unless it
 * exists, and formats its absolute path into path. Every node of the
 * cluster reads it through --cluster-secret-file, so only processes that
 * can read the file may act as members on a peer port. Returns 0 or
 * -errno, with the cause printed on stderr. */
int rkv_client__cluster_ensure_secret(const char *dir, char *path,
                                      size_t path_len);

/* Sleeps for ms milliseconds. */
void rkv_client__cluster_sleep_ms(unsigned ms);

/* Replaces path with text through a temporary file and rename(2). Returns
 * 0 or -errno. */
int rkv_client__cluster_write_file(const char *path, const char *text);

/* Formats the path of file name in node's folder into out. */
void rkv_client__cluster_node_path(const struct rkv_client__cluster_node *node,
                                   const char *name, char *out, size_t out_len);

/* True while pid exists and is not a zombie. */
bool rkv_client__cluster_pid_is_alive(pid_t pid);

/* Starts node from its args file, in a new session with output to its
 * log, and writes its pid file. */
int rkv_client__cluster_spawn(struct rkv_client__cluster_node *node,
                              const char *exe);

/* Waits until node wrote its addresses and accepts client connections. */
int rkv_client__cluster_wait_listening(struct rkv_client__cluster_node *node,
                                       uint64_t deadline_ms);

/* Reuses the ports of a previous start from node's args file. */
bool rkv_client__cluster_previous_addrs(struct rkv_client__cluster_node *node);

/* Writes node's args file for the current options and addresses. */
int rkv_client__cluster_write_args(const struct rkv_client__cluster_node *node,
                                   const struct rkv_client__cluster_node *nodes,
                                   int n_nodes,
                                   const struct rkv_client__cluster_opts *opts);

/* Fills nodes[i].dir for DIR (made absolute), creating the folders when
 * create is set. */
int rkv_client__cluster_load_nodes(const char *dir, int n_nodes, bool create,
                                   struct rkv_client__cluster_node *nodes);

/* Counts DIR/node1, DIR/node2, ... that exist. */
int rkv_client__cluster_count_nodes(const char *dir);

/* Chooses both addresses of every node: those of a previous start, or
 * --base-port ones, or free ports. */
int rkv_client__cluster_pick_addrs(struct rkv_client__cluster_node *nodes,
                                   const struct rkv_client__cluster_opts *opts);

/* Reads the path of this binary from /proc/self/exe into exe. */
int rkv_client__cluster_exe(char *exe, size_t exe_len);

/* Sends sig to every running node of nodes. */
void rkv_client__cluster_signal_all(struct rkv_client__cluster_node *nodes,
                                    int n_nodes, int sig);

/* Waits until no node of nodes is alive; returns true when none is. */
bool rkv_client__cluster_wait_exit(struct rkv_client__cluster_node *nodes,
                                   int n_nodes, uint64_t deadline_ms);

/* True when node's log (its last 64 KiB) contains text. */
bool rkv_client__cluster_log_contains(
    const struct rkv_client__cluster_node *node, const char *text);

/* Undoes a fresh start that failed: kills every spawned node (SIGKILL,
 * reaped here since this process spawned it) and removes each node's pid,
 * args, addresses and store files, so the next attempt picks new ports
 * and starts empty. Only for a cluster that was never initialized. */
void rkv_client__cluster_discard(struct rkv_client__cluster_node *nodes,
                                 int n_nodes);

#endif /* RKV_CLIENT_CLUSTER_INTERNAL_H */
