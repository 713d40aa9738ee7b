/*
 * Internals of the Raft cluster fixture shared by raft_fixture.c (the
 * cluster: replicas, network, persistence) and raft_fixture_check.c (the
 * safety checks and queries). Tests include only raft_fixture.h.
 */
#ifndef RKV_RAFT_FIXTURE_INTERNAL_H
#define RKV_RAFT_FIXTURE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/lib/raft_fixture.h"

/* The replicated state machine of one replica. */
struct fsm {
    uint64_t index;    /* last applied index */
    uint64_t hash;     /* running hash of everything applied */
    uint64_t n_normal; /* normal entries applied */
    struct rkv_raft_conf conf; /* from the last applied ENTRY_CONF */
    uint8_t *data;     /* applied normal entries, length-prefixed */
    size_t len;
    size_t cap;
};

/* A snapshot being sent by a leader to one peer. */
struct outgoing_snapshot {
    uint8_t *data; /* the state machine bytes at index; owned */
    size_t len;
    uint64_t index;
};

struct node {
    struct rkv_raft_config config;
    struct rkv_raft *raft; /* NULL while crashed */

    /* Durable state. */
    struct rkv_raft_hard_state hs;
    struct rkv_raft_snapshot_meta snap_meta;
    uint8_t *snap_data; /* state machine bytes at snap_meta.index */
    size_t snap_len;
    RkvRaft__Entry **log; /* entries after snap_meta.index */
    size_t n_log;
    uint8_t *staging; /* chunks staged for an incoming snapshot */
    size_t staging_len;
    uint32_t staging_next_chunk;
    struct fsm fsm;

    /* Volatile. */
    bool auto_persist;
    struct rkv_raft_ready **pending;
    size_t n_pending;
    struct outgoing_snapshot out_snap[RKV_RAFT_FIXTURE_MAX_NODES];
    struct rkv_raft_read_state *reads;
    size_t n_reads;

    /* Checker state: the log while leading lead_term. */
    uint64_t lead_term;
    uint64_t lead_first;
    uint64_t *lead_terms;
    size_t n_lead_terms;

    unsigned n_installs;
    unsigned n_chunks;
};

struct net_msg {
    unsigned from;
    unsigned to;
    RkvRaft__MessageType type;
    uint8_t *buf;
    size_t len;
};

struct rkv_raft_fixture {
    unsigned n_nodes;
    unsigned n_voters;
    struct node nodes[RKV_RAFT_FIXTURE_MAX_NODES];
    bool cut[RKV_RAFT_FIXTURE_MAX_NODES][RKV_RAFT_FIXTURE_MAX_NODES];
    struct net_msg *net;
    size_t n_net;
    size_t cap_net;
    char hint[512];
    struct rkv_raft_fixture_fsm user_fsm; /* the test's hooks, or zeroes */
    bool tolerate_enomem; /* allocation faults are being injected */
    unsigned n_enomem;    /* -ENOMEM results tolerated */

    /* History for the checks. */
    uint64_t *leader_of_term; /* id per term, 0 none; grows */
    size_t n_terms;
    uint64_t *committed_terms; /* [index] term of committed entry */
    size_t n_committed;        /* indexes 1..n_committed-1 known */
    uint64_t *hash_at;         /* [index] state machine hash, 0 unknown */
    size_t n_hash;
    uint64_t *read_floor; /* [ctx] commit known when the read started */
    size_t n_read_floor;
};

/* Prints the hint and fails the test with a formatted message. */
void rkv_raft_fixture__fail(struct rkv_raft_fixture *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* realloc() that aborts on failure: the fixture's memory is not under
 * test, only the core's. */
void *rkv_raft_fixture__xrealloc(void *ptr, size_t size);
/* Grows *array (of elem bytes each) to hold at least n, zeroing new. */
void rkv_raft_fixture__grow_zeroed(void **array, size_t *n_have, size_t n,
                                   size_t elem);

#endif /* RKV_RAFT_FIXTURE_INTERNAL_H */
