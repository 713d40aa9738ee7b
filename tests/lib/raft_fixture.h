/*
 * A deterministic in-memory cluster for the Raft core. It runs N replicas
 * in one process over a network whose every message is delivered,
 * dropped, duplicated or reordered explicitly. Storage survives crashes
 * with only what was persisted, and each replica has a small state
 * machine.
 *
 * Each replica i (0-based) has id i + 1. The first n_voters replicas start
 * as the group's voters; the others start with an empty configuration and
 * only take part once added as learners.
 *
 * Persistence: by default each ready batch is persisted and acked at once
 * (auto-persist). With auto-persist off for a replica, its batches queue
 * up and rkv_raft_fixture_persist() makes the oldest one durable, which
 * lets tests crash a replica between writing and acknowledging.
 *
 * The state machine: every applied normal entry is appended to a byte log
 * and folded into a running hash of (index, term, type, data). A snapshot
 * is that byte log plus index and hash, transferred in chunks of
 * config.chunk_bytes_max bytes.
 *
 * Safety checks, run after every operation that changes a replica (a
 * violation fails the test and prints the fixture's replay hint):
 *   1. At most one leader per term, over the whole history.
 *   2. A leader's log only grows while it leads in a term.
 *   3. A committed entry never changes (same term at that index on every
 *      replica, forever).
 *   4. Every replica applies the same sequence: each index at most once,
 *      in order, with the same running hash. An installed snapshot matches
 *      the hash, term and configuration recorded at its index.
 *   5. A released ReadIndex read covers every entry committed before the
 *      read was requested.
 *   6. Each replica keeps compacted <= applied <= commit <= last index.
 */
#ifndef RKV_RAFT_FIXTURE_H
#define RKV_RAFT_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define RKV_RAFT_FIXTURE_MAX_NODES 8

struct rkv_raft_fixture;

/* Creates a cluster of n_nodes replicas (none started) and returns it in
 * *out; free with rkv_raft_fixture_free(). seed drives every replica's
 * election PRNG. Fails the test on invalid arguments. */
void rkv_raft_fixture_new(unsigned n_nodes, unsigned n_voters, uint64_t seed,
                          struct rkv_raft_fixture **out);
void rkv_raft_fixture_free(struct rkv_raft_fixture *f);

/* Sets the text printed before a failed check (for example the command
 * that replays a random seed). Copied. */
void rkv_raft_fixture_set_hint(struct rkv_raft_fixture *f, const char *hint);

/*
 * Hooks that run a test's own state machine beside the fixture's, for
 * example the range state machine over real LMDB. Each callback gets the
 * replica index i. apply() receives every committed entry in order (after the
 * fixture's checks accepted it). snapshot() returns a new buffer, freed
 * with free(), with replica i's state at its applied index; restore()
 * replaces replica i's state with such a buffer when a snapshot installs.
 * The test keeps that state durable across rkv_raft_fixture_crash(),
 * because applying is durable in the fixture's model.
 */
struct rkv_raft_fixture_fsm {
    void *ctx; /* passed back to every callback */
    void (*apply)(void *ctx, unsigned i, const RkvRaft__Entry *entry);
    uint8_t *(*snapshot)(void *ctx, unsigned i, size_t *len);
    void (*restore)(void *ctx, unsigned i, const uint8_t *data, size_t len);
};

/* Installs fsm (copied); call before starting replicas. */
void rkv_raft_fixture_set_fsm(struct rkv_raft_fixture *f,
                              const struct rkv_raft_fixture_fsm *fsm);

/* While on, -ENOMEM from the core is not a failure: the fixture carries
 * on as if the call's outgoing messages were lost (a failed start leaves
 * the replica crashed). Tests turn it on around injected allocation
 * failures (rkv_alloc_fail_after). */
void rkv_raft_fixture_tolerate_enomem(struct rkv_raft_fixture *f, bool on);

/* Returns replica i's configuration, used at its next start; edit it
 * before rkv_raft_fixture_start(). Borrowed, valid until free. */
struct rkv_raft_config *rkv_raft_fixture_config(struct rkv_raft_fixture *f,
                                                unsigned i);

/* Starts (or restarts) replica i from its durable state. */
void rkv_raft_fixture_start(struct rkv_raft_fixture *f, unsigned i);
void rkv_raft_fixture_start_all(struct rkv_raft_fixture *f);
/* Crashes replica i: unpersisted batches are lost, the core is freed,
 * messages to it are dropped on delivery until it restarts. */
void rkv_raft_fixture_crash(struct rkv_raft_fixture *f, unsigned i);
bool rkv_raft_fixture_alive(const struct rkv_raft_fixture *f, unsigned i);
/* Returns replica i's core (NULL when crashed); borrowed. */
struct rkv_raft *rkv_raft_fixture_raft(struct rkv_raft_fixture *f,
                                       unsigned i);

/* Ticks one replica, or every live one, then processes ready batches. */
void rkv_raft_fixture_tick(struct rkv_raft_fixture *f, unsigned i);
void rkv_raft_fixture_tick_all(struct rkv_raft_fixture *f);
/* Processes ready batches of every replica and delivers messages in FIFO
 * order until nothing is left or max_rounds deliveries were made. */
void rkv_raft_fixture_flush(struct rkv_raft_fixture *f, unsigned max_rounds);
/* n times: tick every live replica, then flush. */
void rkv_raft_fixture_run(struct rkv_raft_fixture *f, unsigned n_ticks);
/* Makes replica i campaign and flushes; fails unless it leads after. */
void rkv_raft_fixture_elect(struct rkv_raft_fixture *f, unsigned i);
/* Returns the live leader of the highest term, or -1. */
int rkv_raft_fixture_leader(const struct rkv_raft_fixture *f);

/* Proposes len bytes on replica i and processes its ready batches. Returns
 * the core's status; *index receives the entry's index on success. */
int rkv_raft_fixture_propose(struct rkv_raft_fixture *f, unsigned i,
                             const void *data, size_t len, uint64_t *index);
/* Starts a ReadIndex round on i; returns the core's status. ctx is
 * assigned by the fixture and returned in *ctx. */
int rkv_raft_fixture_read(struct rkv_raft_fixture *f, unsigned i,
                          uint64_t *ctx);
/* Returns whether replica i has released read ctx, and its index. */
bool rkv_raft_fixture_read_done(const struct rkv_raft_fixture *f, unsigned i,
                                uint64_t ctx, uint64_t *index);
/* Snapshots replica i's state machine at its applied index, makes it
 * durable and compacts the core's log there. */
void rkv_raft_fixture_compact(struct rkv_raft_fixture *f, unsigned i);

/* Network: messages in flight, oldest first. */
size_t rkv_raft_fixture_n_messages(const struct rkv_raft_fixture *f);
/* Describes message k: sender, receiver and type. */
void rkv_raft_fixture_message(const struct rkv_raft_fixture *f, size_t k,
                              unsigned *from, unsigned *to,
                              RkvRaft__MessageType *type);
/* Decodes message k; a new message the caller frees with
 * rkv_raft__message__free_unpacked(msg, NULL). */
RkvRaft__Message *rkv_raft_fixture_peek(const struct rkv_raft_fixture *f,
                                        size_t k);
void rkv_raft_fixture_deliver(struct rkv_raft_fixture *f, size_t k);
void rkv_raft_fixture_drop(struct rkv_raft_fixture *f, size_t k);
void rkv_raft_fixture_duplicate(struct rkv_raft_fixture *f, size_t k);
/* Drops every message of type `type` in flight. */
void rkv_raft_fixture_drop_type(struct rkv_raft_fixture *f,
                                RkvRaft__MessageType type);
/* Cuts or restores the one-way link from -> to; messages across a cut are
 * dropped when sent and when delivered. */
void rkv_raft_fixture_cut(struct rkv_raft_fixture *f, unsigned from,
                          unsigned to, bool cut);
/* Cuts both directions between i and every other replica. */
void rkv_raft_fixture_isolate(struct rkv_raft_fixture *f, unsigned i);
void rkv_raft_fixture_heal(struct rkv_raft_fixture *f);

/* Persistence control for replica i (see the header comment). */
void rkv_raft_fixture_set_auto_persist(struct rkv_raft_fixture *f,
                                       unsigned i, bool on);
size_t rkv_raft_fixture_n_pending(const struct rkv_raft_fixture *f,
                                  unsigned i);
/* Makes replica i's oldest pending batch durable, acks it and sends its
 * after-persist messages. Returns false when none is pending. */
bool rkv_raft_fixture_persist(struct rkv_raft_fixture *f, unsigned i);
/* Writes the oldest pending batch durably, then crashes i before the ack
 * and before its after-persist messages leave. */
void rkv_raft_fixture_persist_then_crash(struct rkv_raft_fixture *f,
                                         unsigned i);

/* Returns replica i's applied index (from its state machine). */
uint64_t rkv_raft_fixture_applied(const struct rkv_raft_fixture *f,
                                  unsigned i);
/* Returns the number of normal entries replica i has applied. */
uint64_t rkv_raft_fixture_n_applied_normal(const struct rkv_raft_fixture *f,
                                           unsigned i);
/* Returns the highest index known committed anywhere. */
uint64_t rkv_raft_fixture_committed(const struct rkv_raft_fixture *f);
/* Returns how many snapshots replica i installed. */
unsigned rkv_raft_fixture_n_installs(const struct rkv_raft_fixture *f,
                                     unsigned i);
/* Returns how many snapshot chunks replica i staged. */
unsigned rkv_raft_fixture_n_chunks(const struct rkv_raft_fixture *f,
                                   unsigned i);
/* Returns how many -ENOMEM results were tolerated. */
unsigned rkv_raft_fixture_n_enomem(const struct rkv_raft_fixture *f);
/* Returns how many terms had a leader so far. */
unsigned rkv_raft_fixture_n_leaders(const struct rkv_raft_fixture *f);
/* Returns how many reads replica i released. */
size_t rkv_raft_fixture_n_reads(const struct rkv_raft_fixture *f, unsigned i);
/* Runs the safety checks now (they also run after every operation). */
void rkv_raft_fixture_check(struct rkv_raft_fixture *f);

#endif /* RKV_RAFT_FIXTURE_H */
