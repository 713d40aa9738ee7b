/*
 * A fake cluster for client unit tests: up to FAKE_NODES_MAX scripted
 * servers sharing one in-memory sorted key-value map and one list of
 * ranges, replying to node/rpc.proto requests as the node contract requires
 * (leader routing, typed errors, scans cut at range ends). Knobs make nodes
 * fail in the ways the client must survive.
 *
 * All state is guarded by the cluster's mutex; tests change knobs through
 * fake_lock()/fake_unlock().
 */
#ifndef RKV_TEST_FAKE_CLUSTER_H
#define RKV_TEST_FAKE_CLUSTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tests/unit/client/script_server.h"

#define FAKE_NODES_MAX 3
#define FAKE_RANGES_MAX 16
#define FAKE_KEYS_MAX 4096

struct fake_range {
    uint64_t range_id;
    char start[64]; /* inclusive; "" is the keyspace start */
    char end[64];   /* exclusive; "" is the keyspace end */
    uint64_t generation;
    uint64_t leader_node_id;
};

struct fake_kv {
    char *key;
    char *value;
};

/* A reply held back by the reverse_batch knob. */
struct fake_held {
    struct script_server *server;
    int fd;
    uint8_t *frame; /* length prefix and payload, malloc'd */
    size_t frame_len;
};

struct fake_node {
    struct fake_cluster *cluster;
    uint64_t node_id;
    struct script_server *server;
    uint64_t n_keyed; /* keyed requests that reached this node */
};

struct fake_cluster {
    pthread_mutex_t mutex;
    struct fake_node nodes[FAKE_NODES_MAX];
    int n_nodes;
    struct fake_range ranges[FAKE_RANGES_MAX]; /* the truth, sorted */
    int n_ranges;
    /* What RANGES replies report; a stale copy when meta_is_stale. */
    struct fake_range meta[FAKE_RANGES_MAX];
    int n_meta;
    bool meta_is_stale;
    struct fake_kv kvs[FAKE_KEYS_MAX]; /* sorted by key */
    int n_kvs;
    uint64_t next_range_id;

    /* Knobs. */
    int n_unavailable;     /* reply UNAVAILABLE to this many keyed requests */
    int n_drop_put;        /* drop the connection on this many PUTs */
    bool drop_put_applies; /* apply a dropped PUT first */
    int n_drop_get;        /* drop the connection on this many GETs */
    int put_error;         /* reply this code to the next n_put_error PUTs */
    int n_put_error;
    int get_error; /* reply this code to the next n_get_error GETs */
    int n_get_error;
    int n_bad_frame_get;           /* reply to this many GETs with bad_frame */
    int init_error;                /* reply this code to InitRequests, or 0 */
    bool mismatch_sends_key_range; /* KEYMISMATCH carries the key's range
                                      rather than the named one */
    const uint8_t *bad_frame;      /* raw bytes sent in place of a reply */
    size_t bad_frame_len;
    bool hold_all;     /* never reply to keyed requests */
    int reverse_batch; /* hold replies until this many, then reverse */
    struct fake_held held[FAKE_KEYS_MAX];
    int n_held;

    /* Counters. */
    uint64_t n_ranges_requests;
    uint64_t last_range_id_seen; /* range_id of the last keyed request */
};

/* Starts n_nodes servers over one range [ "", "" ) led by node 1. */
struct fake_cluster *fake_start(int n_nodes);
void fake_stop(struct fake_cluster *cluster);
void fake_lock(struct fake_cluster *cluster);
void fake_unlock(struct fake_cluster *cluster);

/* Splits the truth at key (caller holds the lock); the meta copy follows
 * unless meta_is_stale. */
void fake_split_locked(struct fake_cluster *cluster, const char *key);
/* Sets the leader of every range (caller holds the lock). */
void fake_set_leader_locked(struct fake_cluster *cluster, uint64_t node_id);
const char *fake_addr(struct fake_cluster *cluster, int node_index);

#endif /* RKV_TEST_FAKE_CLUSTER_H */
