/*
 * Deterministic simulation of whole rangekv replicas, and a per-key
 * linearizability checker for the histories it records.
 *
 * One simulation run (rkv_sim_run()) puts N nodes in one process. Each node
 * runs the production node code of node/ (replicas, writer batches,
 * splits, snapshots, client requests) over a real LMDB store opened
 * without fsync, with its clock, transport and storage interfaces wired
 * to the simulator (tests/sim/sim_node.c). The network, the clock, the
 * disk latency, the faults and the client workload are all driven by one
 * seeded PRNG, so a seed replays exactly: nothing in the simulation reads
 * the wall clock or calls rand().
 *
 * A run has three phases:
 *   1. load with faults for options.duration_ms of simulated time: message
 *      delay, drop, duplication and reordering, symmetric and one-way
 *      partitions, crashes that lose every queued but uncommitted disk
 *      write, disk write errors, full disks, leadership transfers and
 *      membership changes, with range splits (and, with options.compact, log
 *      compaction and snapshots) happening along the way;
 *   2. healing: faults stop, crashed nodes restart, clients finish, and the
 *      run waits (at most options.heal_ms) until every range has one leader
 *      and every replica applied its whole log;
 *   3. checks: the replicas of each range have the same content hash
 *      (rkv_range_content_hash()), a final read of every key joins the
 *      history, and the history of each key must be linearizable.
 *
 * Histories: every client operation is recorded with the sequence numbers
 * of its call and its return. An operation whose outcome the client cannot
 * know (its request or response was lost, it timed out, its node crashed)
 * is recorded as unknown: it may take effect at any point after its call,
 * or never. An operation that failed definitely (not leader, dropped by a
 * leader change, key outside the range) took no effect and is not recorded.
 *
 * The checker is Wing and Gong's search with the memoization of (linearized
 * set, state) pairs that Porcupine uses, run on each key alone
 * (linearizability is compositional). A step budget
 * makes it return RKV_SIM_CHECK_UNKNOWN instead of running for ever.
 *
 * Threads: everything is single-threaded, and a process runs one
 * simulation at a time: a run installs the process-wide log emitter
 * (rkv_log_set_emitter()) for its duration.
 */
#ifndef RKV_SIM_H
#define RKV_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- PRNG --------------------------------------------------------------- */

/* xoshiro256** (Blackman and Vigna, 2018), seeded with splitmix64. */
struct rkv_sim_prng {
    uint64_t s[4]; /* state; never all zero */
};

/* Seeds prng from seed (any value, 0 included). */
void rkv_sim_prng_seed(struct rkv_sim_prng *prng, uint64_t seed);
/* Returns the next 64 random bits. */
uint64_t rkv_sim_prng_next(struct rkv_sim_prng *prng);
/* Returns a value in [0, bound); bound must be nonzero. */
uint64_t rkv_sim_prng_below(struct rkv_sim_prng *prng, uint64_t bound);
/* Returns a value in [low, high]. */
uint64_t rkv_sim_prng_between(struct rkv_sim_prng *prng, uint64_t low,
                              uint64_t high);
/* Returns true with probability per_mille / 1000. */
bool rkv_sim_prng_chance(struct rkv_sim_prng *prng, unsigned per_mille);

/* ---- histories ---------------------------------------------------------- */

/* Maximum value size, NUL included, that a simulated client writes or
 * reads. */
#define RKV_SIM_VALUE_MAX 256

enum rkv_sim_op_kind {
    RKV_SIM_OP_GET = 0,
    RKV_SIM_OP_PUT = 1,
    RKV_SIM_OP_CAS = 2, /* compare-and-swap: expected -> value */
};

/* One client operation on one key of a register. Values are strings;
 * "absent" is a key with no value. */
struct rkv_sim_op {
    unsigned client; /* client number, for printing */
    unsigned key;    /* key number; ops are checked per key */
    enum rkv_sim_op_kind kind;
    char value[RKV_SIM_VALUE_MAX];    /* PUT and CAS: the value written */
    bool expect_absent;               /* CAS: expects the key absent */
    char expected[RKV_SIM_VALUE_MAX]; /* CAS: the expected value */
    bool unknown;                     /* outcome unknown (writes only) */
    bool found; /* GET: the key had a value; CAS: it swapped */
    char output[RKV_SIM_VALUE_MAX]; /* GET: the value read when found */
    uint64_t call_seq;              /* when the client sent the operation */
    uint64_t return_seq; /* when it learned the outcome; ignored if unknown */
};

/* A growable array of operations. */
struct rkv_sim_history {
    struct rkv_sim_op *ops; /* owned */
    size_t n_ops;
    size_t cap;
};

void rkv_sim_history_init(struct rkv_sim_history *history);
void rkv_sim_history_free(struct rkv_sim_history *history);
/* Appends a copy of op. Returns 0 or -ENOMEM. */
int rkv_sim_history_add(struct rkv_sim_history *history,
                        const struct rkv_sim_op *op);
/* Prints the operations of one key (all keys when key is UINT32_MAX) in
 * call order, one line each, to stdout. The operation called at
 * marked_call_seq (0: none) is marked as the one that could not be
 * linearized. */
void rkv_sim_history_print(const struct rkv_sim_history *history, unsigned key,
                           uint64_t marked_call_seq);

/* ---- checker ------------------------------------------------------------ */

enum rkv_sim_check_result {
    RKV_SIM_CHECK_OK = 0,        /* linearizable */
    RKV_SIM_CHECK_VIOLATION = 1, /* no linearization exists */
    RKV_SIM_CHECK_UNKNOWN = 2,   /* the step budget ran out */
};

/* Default step budget of one key's search. */
#define RKV_SIM_CHECK_STEPS_DEFAULT 2000000u
/* Default wall-clock budget of one key's search, in ms. The step budget
 * keeps a run deterministic; this one only stops a search that would run
 * for far longer than a seed should take. */
#define RKV_SIM_CHECK_MS_DEFAULT 10000u

/* Where the search got furthest, to explain a violation. */
struct rkv_sim_check_detail {
    size_t n_ops;            /* operations on the key */
    size_t n_linearized_max; /* most operations linearized at once */
    /* call_seq of the operation whose return ended that deepest attempt:
     * no order of the other operations let it take effect in time. */
    uint64_t blocked_call_seq;
};

/*
 * Checks the operations of `key` in history for linearizability against a
 * register that starts absent. step_budget bounds the search steps (0:
 * RKV_SIM_CHECK_STEPS_DEFAULT) and time_budget_ms its wall-clock time (0:
 * RKV_SIM_CHECK_MS_DEFAULT); past either, *result is
 * RKV_SIM_CHECK_UNKNOWN. On success *result is set, detail (may be NULL)
 * is filled, and 0 returned; errors: -ENOMEM.
 */
int rkv_sim_check_key(const struct rkv_sim_history *history, unsigned key,
                      uint64_t step_budget, uint64_t time_budget_ms,
                      enum rkv_sim_check_result *result,
                      struct rkv_sim_check_detail *detail);

/* ---- simulation runs ---------------------------------------------------- */

/* Known bugs that the node and Raft code built with RKV_NODE_BUGS and
 * RKV_RAFT_BUGS (the rkv_sim_bugs library, which rkv-sim-bugs and
 * test_sim_bugs use) can switch on, to prove that the checks catch them. The
 * values are those of enum rkv_node__bug in node/node_internal.h. Production
 * builds do not contain them, and the rkv_sim library rejects them (-ENOTSUP).
 */
enum rkv_sim_bug {
    RKV_SIM_BUG_NONE = 0,
    /* Any replica, follower or leader, serves reads from its local state
     * without ReadIndex, and clients send reads to a random node. */
    RKV_SIM_BUG_STALE_READ = 1,
    /* The leader acknowledges a put as soon as it is proposed, before it is
     * committed. */
    RKV_SIM_BUG_EARLY_ACK = 2,
    /* A leader whose new proposal lands at or below the index of a pending
     * one fails the pending one as dropped at once, instead of waiting for
     * its index to apply. Random runs do not reach what exposes it (the
     * old entry committed by another leader after the early failure); the
     * scripted scenario sim_scenario_truncated_proposal() does. */
    RKV_SIM_BUG_DROP_ON_TRUNCATE = 3,
    /* Each node acknowledges a Raft batch (rkv_raft_ack(), and sends its
     * vote grants and append acknowledgments) before the batch is on
     * disk, so a crash loses writes a quorum counted. */
    RKV_SIM_BUG_ACK_BEFORE_PERSIST = 4,
    /* A new leader serves ReadIndex at its commit index before its no-op
     * (or any entry of its term) committed, so it may miss writes its
     * predecessor acknowledged. */
    RKV_SIM_BUG_READ_BEFORE_NOOP = 5,
};

/* Maximum nodes in one run. */
#define RKV_SIM_NODES_MAX 7
/* Maximum clients and keys in one run. */
#define RKV_SIM_CLIENTS_MAX 16
#define RKV_SIM_KEYS_MAX 32

struct rkv_sim_options {
    uint64_t seed;
    unsigned n_nodes;     /* 1..RKV_SIM_NODES_MAX */
    unsigned n_clients;   /* 0: 6 */
    unsigned n_keys;      /* 0: 6 */
    uint64_t duration_ms; /* phase 1, simulated ms; 0: 2000 */
    uint64_t heal_ms;     /* phase 2 limit, simulated ms; 0: 10000 */
    uint64_t split_bytes; /* split threshold in bytes; 0: 48 */
    uint64_t check_steps; /* checker budget per key; 0: the default */
    uint64_t check_ms;    /* checker wall-clock budget per key in ms;
                             0: the default */
    enum rkv_sim_bug bug;
    bool compact;    /* compact Raft logs, so lagging replicas catch
                        up by snapshot */
    bool verbose;    /* print the fault schedule and the history */
    const char *dir; /* existing folder for the stores; borrowed */
};

enum rkv_sim_verdict {
    RKV_SIM_PASS = 0,
    RKV_SIM_FAIL_LINEARIZABILITY = 1, /* a key's history has a violation */
    RKV_SIM_FAIL_DIVERGED = 2,        /* replicas of a range differ */
    RKV_SIM_FAIL_NO_CONVERGENCE = 3,  /* not settled within heal_ms */
    RKV_SIM_FAIL_CHECK_BUDGET = 4,    /* a key's check ran out of steps */
    RKV_SIM_FAIL_SAFETY = 5,          /* two leaders in a term, or replicas
                                         that applied different entries */
};

/* What one run did and found. */
struct rkv_sim_report {
    enum rkv_sim_verdict verdict;
    char detail[512];   /* the first failure, one line */
    uint64_t n_ops;     /* operations recorded, final reads included */
    uint64_t n_unknown; /* of those, with unknown outcome */
    uint64_t n_ranges;  /* ranges at the end */
    uint64_t n_crashes;
    uint64_t n_disk_errors;
    uint64_t n_disk_full;    /* periods of a full disk */
    uint64_t n_full_rejects; /* writes the nodes rejected for lack of
                                space (RKV_ENOSPACE) */
    uint64_t n_partitions;
    uint64_t n_transfers;    /* leadership transfers started */
    uint64_t n_conf_changes; /* membership changes proposed */
    uint64_t n_compactions;  /* log compactions */
    uint64_t n_snapshots;    /* snapshots installed */
    uint64_t n_messages;     /* messages sent, Raft and client */
    uint64_t end_ms;         /* simulated time at the end */
    uint64_t history_hash;   /* FNV-1a of every recorded operation, to
                                compare replays */
};

/* Fills options with the defaults above for seed and n_nodes. */
void rkv_sim_options_init(struct rkv_sim_options *options, uint64_t seed,
                          unsigned n_nodes);

/*
 * Runs one simulation. options is borrowed for the call; options->dir must
 * exist, and the run creates and removes a folder per node inside it.
 * Returns 0 when the run finished (report->verdict is the outcome),
 * or a negative code when the harness itself failed (-ENOMEM, a store that
 * would not open), with report->detail naming the step.
 */
int rkv_sim_run(const struct rkv_sim_options *options,
                struct rkv_sim_report *report);

/* Returns a short name for a verdict ("pass", "linearizability"). */
const char *rkv_sim_verdict_name(enum rkv_sim_verdict verdict);

#endif /* RKV_SIM_H */
