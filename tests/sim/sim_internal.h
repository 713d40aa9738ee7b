/*
 * Internals shared by the files of the simulator: the world, its network,
 * its nodes and its clients.
 *
 * Addresses: node i (0-based) has node id and Raft replica id i + 1, as in
 * node/ (replica_id == node_id in every descriptor). Client c has address
 * RKV_SIM_CLIENT_ADDR_BASE + c. A message goes from one address to another.
 *
 * Time: world->now_ms is the simulated clock. world->seq is a counter that
 * orders client calls and returns strictly; each event takes the next value.
 *
 * Invariants:
 *   1. Every random choice comes from world->prng, taken in an order fixed
 *      by the seed, so a run replays exactly.
 *   2. A node that is down owns no store, replica or disk batch; messages
 *      to it are dropped on delivery.
 */
#ifndef RKV_SIM_INTERNAL_H
#define RKV_SIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"
#include "range/range.h"
#include "tests/sim/sim.h"

#define RKV_SIM_CLIENT_ADDR_BASE 100
/* Client responses a scripted world keeps. */
#define SIM_SCRIPT_RESPONSES_MAX 64
/* Raft tick length in simulated ms; each node's clock is off by up to
 * 1 ms per tick. */
#define RKV_SIM_TICK_MS 10
/* Bounds of the deadline a client gives each request (drawn per attempt).
 * The client waits RKV_SIM_CLIENT_GRACE_MS longer for the node's response
 * before it takes the outcome as unknown. */
#define RKV_SIM_CLIENT_TIMEOUT_MIN_MS 200
#define RKV_SIM_CLIENT_TIMEOUT_MAX_MS 3000
#define RKV_SIM_CLIENT_GRACE_MS 50
/* Attempts of one operation that fail definitely before the client gives
 * it up (not recorded, since it took no effect). */
#define RKV_SIM_CLIENT_ATTEMPTS_MAX 8
/* A value grows by CAS appends until it is this long; then a put resets
 * it, so values stay under RKV_SIM_VALUE_MAX. */
#define RKV_SIM_APPEND_LEN_MAX 160

struct rkv_sim_world;
struct sim_node;

/* ---- messages ----------------------------------------------------------- */

enum sim_msg_kind {
    SIM_MSG_PEER = 0, /* node -> node: a packed Rkv__Peer__Frame */
    SIM_MSG_REQUEST,  /* client -> node */
    SIM_MSG_RESPONSE, /* node -> client */
};

/* A client request as it travels to a node. */
struct sim_request {
    uint64_t req_id;     /* unique per client */
    uint64_t timeout_ms; /* the node gives up after this */
    enum rkv_sim_op_kind kind;
    unsigned key;
    char value[RKV_SIM_VALUE_MAX];
    bool expect_absent;
    char expected[RKV_SIM_VALUE_MAX];
};

/* A node's response to a client request. */
struct sim_response {
    uint64_t req_id;
    int rv;                        /* 0, or why it failed */
    bool found;                    /* GET: present; CAS: swapped */
    char value[RKV_SIM_VALUE_MAX]; /* GET: the value */
    uint64_t leader_hint;          /* RKV_ENOTLEADER: node id or 0 */
};

struct sim_msg {
    enum sim_msg_kind kind;
    unsigned from; /* address */
    unsigned to;   /* address */
    uint64_t deliver_ms;
    uint64_t order; /* random tie-break among equals */
    uint8_t *data;  /* owned; PEER payload */
    size_t data_len;
    uint64_t epoch;               /* PEER: the sender's incarnation */
    struct sim_request request;   /* REQUEST */
    struct sim_response response; /* RESPONSE */
};

/* ---- network (sim_net.c) ------------------------------------------------ */

struct sim_net {
    struct sim_msg **heap; /* min-heap by (deliver_ms, order) */
    size_t n_heap;
    size_t cap;
    /* blocked[a][b]: messages from node a to node b are lost (0-based). */
    bool blocked[RKV_SIM_NODES_MAX][RKV_SIM_NODES_MAX];
    unsigned drop_per_mille;
    unsigned dup_per_mille;
    uint64_t delay_min_ms;
    uint64_t delay_max_ms;
    unsigned slow_per_mille; /* chance of a long delay */
    uint64_t slow_max_ms;
};

/* Sends msg (takes ownership) with the network's faults applied: it may be
 * dropped (freed), delayed, or duplicated. */
void sim_net_send(struct rkv_sim_world *w, struct sim_msg *msg);
/* Removes and returns the next message due at or before now, or NULL. */
struct sim_msg *sim_net_next_due(struct rkv_sim_world *w);
void sim_msg_free(struct sim_msg *msg);
/* Frees every message in flight. */
void sim_net_free(struct sim_net *net);
/* Returns a new zeroed message, aborting the run on allocation failure. */
struct sim_msg *sim_msg_new(enum sim_msg_kind kind, unsigned from, unsigned to);

/* ---- nodes (sim_node.c) ------------------------------------------------- */

/* Starts node i: the production node code (rkv_node__new()) on its store,
 * wired to the simulated clock, network and disk, and bootstrapped into
 * cluster 1 when the store is new. */
int sim_node_start(struct rkv_sim_world *w, unsigned i);
/* Crashes node i: drops its uncommitted disk writes, frees the node and
 * closes its store. */
void sim_node_crash(struct rkv_sim_world *w, unsigned i);
/* Runs one millisecond of node i: commits its batch when due, ticks, and
 * collects the Raft work of every replica. */
int sim_node_step(struct rkv_sim_world *w, unsigned i);
/* Handles a message delivered to node i. */
int sim_node_receive(struct rkv_sim_world *w, unsigned i,
                     const struct sim_msg *msg);
/* Starts a leadership transfer of a range led by node i, if any. Returns
 * whether one started. */
bool sim_node_transfer_some(struct rkv_sim_world *w, unsigned i);
/* Proposes a membership change on one range node i leads: promote a
 * learner, add a missing node as a learner, or remove a voter. With
 * restore, on every range it leads, and never a removal. Returns whether
 * a change was proposed. */
bool sim_node_change_membership(struct rkv_sim_world *w, unsigned i,
                                bool restore);
/* Makes node i's next write (after `skip` more successful ones) fail. */
void sim_node_fail_write(struct rkv_sim_world *w, unsigned i, unsigned skip);
/* Makes node i's disk full for duration_ms: its commits fail with ENOSPC
 * and are retried. */
void sim_node_fill_disk(struct rkv_sim_world *w, unsigned i,
                        uint64_t duration_ms);

/* What the convergence check needs to know about one replica. */
struct sim_replica_view {
    bool present;
    bool full_conf; /* every node is a voter of the group */
    bool initialized;
    bool is_leader;
    uint64_t applied_index;
    uint64_t commit_index;
    uint64_t last_index;
    uint64_t term;
    int role;                 /* enum rkv_raft_role */
    uint64_t leader_id;       /* who it follows; 0: unknown */
    bool quiesced;            /* not ticking until woken */
    uint64_t compacted_index; /* the log starts after it */
    char conf_text[64];       /* "1,2,3L": ids, L marks a learner */
};

/* Fills view for range_id on node i. */
void sim_node_view(struct rkv_sim_world *w, unsigned i, uint64_t range_id,
                   struct sim_replica_view *view);
/* Returns whether node i has disk work queued. */
bool sim_node_disk_busy(struct rkv_sim_world *w, unsigned i);
/* Lists node i's range ids into ids (at most max); returns the count. */
size_t sim_node_range_ids(struct rkv_sim_world *w, unsigned i, uint64_t *ids,
                          size_t max);
/* Returns the store of node i (NULL when down). Borrowed. */
struct rkv_range_store *sim_node_store(struct rkv_sim_world *w, unsigned i);
/* Frees everything of every node (end of run). */
void sim_nodes_free(struct rkv_sim_world *w);

/* ---- the world (sim.c) -------------------------------------------------- */

/* A map from (range id, number) to a value, for the safety checks. */
struct sim_map {
    struct sim_map_slot *slots; /* owned */
    size_t n;
    size_t cap; /* a power of two, or 0 */
};

struct sim_client {
    bool waiting;         /* an operation is outstanding */
    struct rkv_sim_op op; /* the outstanding operation */
    struct sim_request request;
    uint64_t deadline_ms; /* of the current attempt */
    uint64_t retry_ms;    /* 0, or when to send the next
                             attempt after a definite failure */
    unsigned n_attempts;
    unsigned target;     /* node index it sends to */
    uint64_t next_op_ms; /* think time ends */
    uint64_t next_req_id;
    /* The last value read per key, used as the CAS expectation. */
    bool known[RKV_SIM_KEYS_MAX];
    bool known_absent[RKV_SIM_KEYS_MAX];
    char known_value[RKV_SIM_KEYS_MAX][RKV_SIM_VALUE_MAX];
    uint64_t n_ops; /* operations started */
};

struct rkv_sim_world {
    struct rkv_sim_options options; /* defaults filled in */
    struct rkv_sim_prng prng;
    uint64_t now_ms;
    uint64_t seq;
    bool faults_on; /* phase 1 */
    bool clients_on;
    struct sim_net net;
    struct sim_node *nodes[RKV_SIM_NODES_MAX]; /* owned */
    bool up[RKV_SIM_NODES_MAX];
    uint64_t restart_ms[RKV_SIM_NODES_MAX]; /* when down: restart time */
    struct sim_client clients[RKV_SIM_CLIENTS_MAX];
    struct rkv_sim_history history;
    uint64_t disk_latency_max_ms;  /* a disk write takes 1..this ms */
    struct sim_map leaders;        /* (range, term) -> leader node id */
    struct sim_map applied;        /* (range, index) -> applied term */
    struct rkv_sim_report *report; /* borrowed */
    char errmsg[256];              /* harness failure */
    /* A scripted world (sim_script.c): no faults, clients or restarts of
     * its own, partitions that also lose messages in flight, and client
     * responses kept for the script. */
    bool scripted;
    struct sim_response script_responses[SIM_SCRIPT_RESPONSES_MAX];
    size_t n_script_responses;
};

/* Prints a schedule line ("t=120 crash node=2") when verbose. */
void sim_trace(struct rkv_sim_world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Delivers a response to a client (from the network). */
void sim_client_receive(struct rkv_sim_world *w, unsigned client,
                        const struct sim_response *response);
/* Creates a world for options (checked, defaults filled) with no node
 * started; report (borrowed) is zeroed. Free with sim_world_free(). */
int sim_world_new(const struct rkv_sim_options *options,
                  struct rkv_sim_report *report, struct rkv_sim_world **out);
/* Runs one simulated millisecond (see sim.c). */
int sim_world_step(struct rkv_sim_world *w);
/* Stops every node, frees the world and removes the node folders. */
void sim_world_free(struct rkv_sim_world *w);

/* ---- scripted runs (sim_script.c) --------------------------------------- */

/* Starts a scripted world with the nodes, seed, split threshold, bug and
 * folder of options: every message and disk write takes 1 ms, and nothing
 * fails unless the script makes it fail. */
int sim_script_new(const struct rkv_sim_options *options,
                   struct rkv_sim_report *report, struct rkv_sim_world **out);
/* Runs until done(w, arg) returns true (checked after every millisecond) or
 * max_ms passed; returns whether it did. */
bool sim_script_run_until(struct rkv_sim_world *w,
                          bool (*done)(struct rkv_sim_world *w, void *arg),
                          void *arg, uint64_t max_ms);
/* Runs for ms milliseconds. */
void sim_script_run(struct rkv_sim_world *w, uint64_t ms);
/* Cuts (or restores) the link from node `from` to node `to` (0-based). */
void sim_script_block(struct rkv_sim_world *w, unsigned from, unsigned to,
                      bool blocked);
/* Cuts (or restores) every link between node i and the others. */
void sim_script_isolate(struct rkv_sim_world *w, unsigned i, bool isolated);
/* Sends a put of key number `key` from the script to node i; returns the
 * request id. */
uint64_t sim_script_put(struct rkv_sim_world *w, unsigned i, unsigned key,
                        const char *value);
/* Returns whether the response to req_id arrived, and copies it to out
 * (may be NULL). */
bool sim_script_response(struct rkv_sim_world *w, uint64_t req_id,
                         struct sim_response *out);
/* Keeps a response that reached the script's client. */
void sim_script_receive(struct rkv_sim_world *w,
                        const struct sim_response *response);
/* Returns the node (0-based) that leads range_id in the highest term, or
 * -1 when none does. */
int sim_script_leader(struct rkv_sim_world *w, uint64_t range_id);

/* Bytes of a scenario's step name. */
#define SIM_SCENARIO_STEP_MAX 128

/* What the truncated-proposal scenario saw. */
struct sim_truncate_outcome {
    bool reached; /* every step reached the state it waits for */
    char step[SIM_SCENARIO_STEP_MAX]; /* the step that did not, when !reached */
    bool responded_early; /* the truncated write got a response as soon as a
                            new proposal took its log index */
    int early_rv;         /* that response */
    bool applied_later;   /* the truncated write's entry committed later,
                             under another leader */
};

/*
 * Runs the scenario of a write whose log entry is truncated on the node
 * that proposed it while other replicas keep it (options: 5 nodes, a seed,
 * a bug, a folder):
 *   1. leader A appends writes P1..P3 that reach only follower C;
 *   2. A and C are cut off; B wins term t+1 with D and E, and its no-op
 *      reaches only A, which truncates P1..P3;
 *   3. B crashes; A wins term t+2 with D and E, its entries reach no one,
 *      and a new write Q takes P3's index on A;
 *   4. A crashes; C, whose log is the most complete, wins with D and E and
 *      commits P1..P3.
 * A must not fail P3 as dropped at step 3, because P3 still commits at
 * step 4. Returns 0 (see out) or a harness error.
 */
int sim_scenario_truncated_proposal(const struct rkv_sim_options *options,
                                    struct sim_truncate_outcome *out);

/* What the snapshot-past-proposal scenario saw. */
struct sim_snapshot_outcome {
    bool reached; /* every step reached the state it waits for */
    char step[SIM_SCENARIO_STEP_MAX]; /* the step that did not, when !reached */
    bool responded;                   /* the write got a response */
    int rv;                           /* that response */
    bool applied; /* the write's value is in the proposer's store */
};

/*
 * Runs the scenario of a write whose entry commits while the node that
 * proposed it hears nothing back, and reaches that node only inside a
 * snapshot (options: 3 nodes with compaction, a seed, a folder):
 *   1. leader A appends write P, which reaches B and C, but nothing
 *      reaches A any more;
 *   2. B or C takes over, commits P and enough writes after it that its
 *      log is compacted past P;
 *   3. A hears again and catches up by snapshot.
 * P's response must not be RKV_EDROPPED, because P applied; the node
 * cannot know its result, so RKV_EUNKNOWN is expected. Returns 0 (see out)
 * or a harness error.
 */
int sim_scenario_snapshot_past_proposal(const struct rkv_sim_options *options,
                                        struct sim_snapshot_outcome *out);

/* What the lagging-follower scenario saw. */
struct sim_quiesce_outcome {
    bool reached;                     /* the script reached its states */
    char step[SIM_SCENARIO_STEP_MAX]; /* the step that did not */
    bool lagged;    /* the leader quiesced while one follower missed the
                       commit of the last write and did not quiesce */
    bool caught_up; /* that follower applied the write once its link came
                       back, within 3 s */
};

/*
 * Runs the scenario of a leader that quiesces while a follower missed the
 * commit index of the last write (options: 3 nodes, a seed, a folder).
 * The follower did not quiesce, so it times out and requests votes; the
 * quiesced leader must wake and bring it up to date instead of the range
 * staying split for ever. Returns 0 (see out) or a harness error.
 */
int sim_scenario_quiesce_lagging_follower(const struct rkv_sim_options *options,
                                          struct sim_quiesce_outcome *out);
/* ---- safety checks (sim_safety.c) --------------------------------------- */

/* Records that node_id became leader of range_id in term; fails the run
 * when another node led that term. */
void sim_safety_leader(struct rkv_sim_world *w, uint64_t range_id,
                       uint64_t term, uint64_t node_id);
/* Records that node_id applied the entry (index, term) of range_id; fails
 * the run when another replica applied another term at that index. */
void sim_safety_applied(struct rkv_sim_world *w, uint64_t range_id,
                        uint64_t index, uint64_t term, uint64_t node_id);
void sim_safety_free(struct rkv_sim_world *w);

/* Stops the process on an impossible harness state (out of memory). */
void sim_fatal(const char *what, int rv) __attribute__((noreturn));

#endif /* RKV_SIM_INTERNAL_H */
