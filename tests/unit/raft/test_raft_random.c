/*
 * Randomized fault runs over the in-memory cluster. Each seed builds a
 * 3- or 5-voter group, plus one spare replica for membership changes, and
 * applies a bounded number of random steps. Steps are ticks, deliveries in
 * any order, drops, duplicates, one-way cuts, crashes that lose
 * unpersisted batches, proposals, reads, compaction, leadership transfers
 * and membership changes. A quarter of the seeds also make the core's
 * allocations fail at random steps. The fixture checks the safety
 * invariants after every step. At the end the faults stop, and the group
 * must elect a leader and commit a last proposal on every replica in its
 * configuration.
 *
 * Environment:
 *   RKV_RAFT_SEEDS  number of seeds (default 1000), run from 1 upward
 *   RKV_RAFT_SEED   run only this seed (for replaying a failure)
 *   RKV_RAFT_STEPS  steps per seed (default 1000)
 * A failure prints the command that replays its seed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "raft/raft.h"
#include "tests/lib/raft_fixture.h"
#include "tests/lib/test.h"

#define STEPS_DEFAULT 1000
#define SEEDS_DEFAULT 1000
#define FINAL_TICKS_MAX 400

struct run {
    struct rkv_raft_fixture *cluster;
    char hint[1024]; /* the replay command, printed on failure */
    uint64_t rand_state;
    unsigned n_nodes; /* voters plus the spare */
    unsigned n_voters;
    bool guarded; /* pre-vote and check-quorum on for every replica */
    bool faulty;  /* allocations in the core fail at random steps */
};

static uint64_t run_random(struct run *run)
{
    uint64_t x = run->rand_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    run->rand_state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static unsigned run_pick(struct run *run, unsigned n)
{
    return (unsigned)(run_random(run) % n);
}

static unsigned long env_count(const char *name, unsigned long fallback)
{
    const char *value = getenv(name);

    if (value == NULL || value[0] == '\0') {
        return fallback;
    }
    return strtoul(value, NULL, 10);
}

static void run_setup(struct run *run, uint64_t seed, unsigned long n_steps)
{
    char exe[512];
    ssize_t len;

    memset(run, 0, sizeof(*run));
    run->rand_state = seed * 0x9e3779b97f4a7c15ULL + 1;
    run->n_voters = seed % 2 == 0 ? 3 : 5;
    run->n_nodes = run->n_voters + 1;
    rkv_raft_fixture_new(run->n_nodes, run->n_voters, seed, &run->cluster);

    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[len > 0 ? len : 0] = '\0';
    snprintf(run->hint, sizeof(run->hint),
             "raft random run failed at seed %llu; replay with:\n"
             "  RKV_RAFT_SEED=%llu RKV_RAFT_STEPS=%lu %s raft_random/",
             (unsigned long long)seed, (unsigned long long)seed, n_steps,
             exe);
    rkv_raft_fixture_set_hint(run->cluster, run->hint);
    run->guarded = run_pick(run, 4) != 0;
    run->faulty = run_pick(run, 4) == 0;
    rkv_raft_fixture_tolerate_enomem(run->cluster, run->faulty);

    for (unsigned i = 0; i < run->n_nodes; i++) {
        struct rkv_raft_config *config =
            rkv_raft_fixture_config(run->cluster, i);

        /* Small limits, so that batching, flow control and chunking are
         * all exercised within a few hundred steps. */
        config->chunk_bytes_max = 1 + run_pick(run, 64);
        config->append_bytes_max = 1 + run_pick(run, 32);
        config->inflight_entries_max = 1 + run_pick(run, 8);
        config->uncommitted_bytes_max = 16 + run_pick(run, 256);
        config->pre_vote = run->guarded;
        config->check_quorum = run->guarded;
        config->election_ticks = 3 + run_pick(run, 6);
        config->heartbeat_ticks = 1 + run_pick(run, 2);
        rkv_raft_fixture_start(run->cluster, i);
        rkv_raft_fixture_set_auto_persist(run->cluster, i,
                                          run_pick(run, 2) == 0);
    }
}

static void step_propose(struct run *run)
{
    int leader = rkv_raft_fixture_leader(run->cluster);
    char text[32];
    uint64_t index;
    unsigned target;

    target = leader >= 0 && run_pick(run, 4) != 0 ? (unsigned)leader
                                                  : run_pick(run, run->n_nodes);
    snprintf(text, sizeof(text), "v%llu",
             (unsigned long long)run_random(run) % 100000);
    rkv_raft_fixture_propose(run->cluster, target, text, strlen(text),
                             &index);
}

static void step_conf_change(struct run *run)
{
    int leader = rkv_raft_fixture_leader(run->cluster);
    struct rkv_raft_conf conf;
    struct rkv_raft *r;
    uint64_t index;
    uint64_t term;
    uint64_t id;

    /* A removed replica that missed its removal keeps campaigning, and
     * only pre-vote and the leader lease keep it from disrupting the group
     * (thesis 4.2.3). Unguarded seeds therefore keep their membership. */
    if (leader < 0 || !run->guarded) {
        return;
    }
    r = rkv_raft_fixture_raft(run->cluster, (unsigned)leader);
    rkv_raft_conf_get(r, &conf);
    id = 1 + run_pick(run, run->n_nodes);
    for (unsigned k = 0; k < conf.n_servers; k++) {
        if (conf.servers[k].id != id) {
            continue;
        }
        if (conf.servers[k].learner) {
            rkv_raft_propose_conf_change(r, RKV_RAFT_PROMOTE, id, &index,
                                         &term);
        } else if (conf.n_servers > 3) {
            rkv_raft_propose_conf_change(r, RKV_RAFT_REMOVE, id, &index,
                                         &term);
        }
        rkv_raft_fixture_flush(run->cluster, 0);
        return;
    }
    rkv_raft_propose_conf_change(r, RKV_RAFT_ADD_LEARNER, id, &index, &term);
    rkv_raft_fixture_flush(run->cluster, 0);
}

static void step_network(struct run *run, unsigned choice)
{
    size_t n_msgs = rkv_raft_fixture_n_messages(run->cluster);
    size_t k;

    if (n_msgs == 0) {
        return;
    }
    k = run_pick(run, (unsigned)n_msgs);
    if (choice < 80) {
        rkv_raft_fixture_deliver(run->cluster, k);
    } else if (choice < 92) {
        rkv_raft_fixture_drop(run->cluster, k);
    } else {
        rkv_raft_fixture_duplicate(run->cluster, k);
    }
}

static void step_node(struct run *run, unsigned choice)
{
    struct rkv_raft_fixture *cluster = run->cluster;
    unsigned i = run_pick(run, run->n_nodes);
    int leader = rkv_raft_fixture_leader(cluster);
    uint64_t ctx;

    if (!rkv_raft_fixture_alive(cluster, i)) {
        if (choice < 30) {
            rkv_raft_fixture_start(cluster, i);
        }
        return;
    }
    if (choice < 4) {
        rkv_raft_fixture_crash(cluster, i);
    } else if (choice < 6 && rkv_raft_fixture_n_pending(cluster, i) > 0) {
        rkv_raft_fixture_persist_then_crash(cluster, i);
    } else if (choice < 30) {
        rkv_raft_fixture_compact(cluster, i);
    } else if (choice < 55) {
        rkv_raft_fixture_read(cluster, i, &ctx);
    } else if (choice < 62 && leader >= 0) {
        rkv_raft_transfer_leadership(
            rkv_raft_fixture_raft(cluster, (unsigned)leader), i + 1);
        rkv_raft_fixture_flush(cluster, 0);
    } else if (choice < 70) {
        step_conf_change(run);
    } else if (choice < 85) {
        rkv_raft_fixture_cut(cluster, i, run_pick(run, run->n_nodes), true);
    } else {
        rkv_raft_fixture_heal(cluster);
    }
}

static void run_step(struct run *run)
{
    unsigned choice = run_pick(run, 100);
    bool inject = run->faulty && run_pick(run, 10) == 0;

    /* The step's allocations in the core fail after a random few. */
    if (inject) {
        rkv_alloc_fail_after((long)run_pick(run, 8));
    }

    if (choice < 40) {
        step_network(run, run_pick(run, 100));
    } else if (choice < 55) {
        rkv_raft_fixture_persist(run->cluster, run_pick(run, run->n_nodes));
    } else if (choice < 65) {
        step_propose(run);
    } else if (choice < 75) {
        rkv_raft_fixture_tick(run->cluster, run_pick(run, run->n_nodes));
    } else if (choice < 80) {
        rkv_raft_fixture_tick_all(run->cluster);
    } else {
        step_node(run, run_pick(run, 100));
    }
    rkv_alloc_fail_after(-1);
}

/* Prints the replay command before an assertion of the final phase. */
/* Prints every replica's state, to diagnose a failed final phase. */
static void run_dump(struct run *run)
{
    for (unsigned i = 0; i < run->n_nodes; i++) {
        struct rkv_raft *r = rkv_raft_fixture_raft(run->cluster, i);
        struct rkv_raft_conf conf;

        if (r == NULL) {
            fprintf(stderr, "replica %u: crashed\n", i + 1);
            continue;
        }
        rkv_raft_conf_get(r, &conf);
        fprintf(stderr,
                "replica %u: role=%d term=%llu leader=%llu commit=%llu "
                "applied=%llu first=%llu last=%llu conf:",
                i + 1, (int)rkv_raft_role(r),
                (unsigned long long)rkv_raft_term(r),
                (unsigned long long)rkv_raft_leader(r),
                (unsigned long long)rkv_raft_commit_index(r),
                (unsigned long long)rkv_raft_fixture_applied(run->cluster, i),
                (unsigned long long)rkv_raft_first_index(r),
                (unsigned long long)rkv_raft_last_index(r));
        for (unsigned k = 0; k < conf.n_servers; k++) {
            fprintf(stderr, " %llu%s",
                    (unsigned long long)conf.servers[k].id,
                    conf.servers[k].learner ? "(learner)" : "");
        }
        fprintf(stderr, "\n");
    }
}

#define RUN_ASSERT(run, cond, assertion)                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            run_dump(run);                                                     \
            fprintf(stderr, "%s\n", (run)->hint);                              \
        }                                                                      \
        assertion;                                                             \
    } while (0)

/* Returns whether every replica of the leader's configuration applied
 * the entry at index. */
static bool run_all_applied(struct run *run, unsigned leader, uint64_t index)
{
    struct rkv_raft_conf conf;

    rkv_raft_conf_get(rkv_raft_fixture_raft(run->cluster, leader), &conf);
    for (unsigned k = 0; k < conf.n_servers; k++) {
        unsigned i = (unsigned)conf.servers[k].id - 1;

        if (rkv_raft_fixture_applied(run->cluster, i) < index) {
            return false;
        }
    }
    return true;
}

/* Returns whether the leader still has the proposal at index in term (a
 * leader change may have replaced it, which Raft allows). */
static bool run_proposal_alive(struct rkv_raft *leader, uint64_t index,
                               uint64_t term)
{
    uint64_t term_now = 0;

    return index != 0 && rkv_raft_term_at(leader, index, &term_now) == 0 &&
           term_now == term;
}

/* Stops the faults and requires, within FINAL_TICKS_MAX ticks, a leader
 * that commits one more entry and gets it applied on every replica of
 * its configuration. A proposal lost to a leader change is proposed
 * again. */
static void run_finish(struct run *run)
{
    struct rkv_raft_fixture *cluster = run->cluster;
    uint64_t index = 0;
    uint64_t term = 0;
    bool done = false;

    if (getenv("RKV_RAFT_VERBOSE") != NULL) {
        rkv__log_min_level = RKV_DEBUG;
    }
    rkv_raft_fixture_tolerate_enomem(cluster, false);
    rkv_raft_fixture_heal(cluster);
    for (unsigned i = 0; i < run->n_nodes; i++) {
        if (!rkv_raft_fixture_alive(cluster, i)) {
            rkv_raft_fixture_start(cluster, i);
        }
        rkv_raft_fixture_set_auto_persist(cluster, i, true);
    }
    for (unsigned t = 0; t < FINAL_TICKS_MAX && !done; t++) {
        int leader;
        struct rkv_raft *r;

        rkv_raft_fixture_run(cluster, 1);
        leader = rkv_raft_fixture_leader(cluster);
        if (leader < 0) {
            continue;
        }
        r = rkv_raft_fixture_raft(cluster, (unsigned)leader);
        if (!run_proposal_alive(r, index, term) &&
            rkv_raft_propose(r, "final", 5, &index, &term) != 0) {
            index = 0;
        }
        rkv_raft_fixture_flush(cluster, 10000);
        done = index != 0 && rkv_raft_commit_index(r) >= index &&
               run_proposal_alive(r, index, term) &&
               run_all_applied(run, (unsigned)leader, index);
    }
    RUN_ASSERT(run, done, ASSERT_TRUE(done));
}

/* What the seeds exercised, summed over a whole run. */
struct coverage {
    uint64_t n_committed;
    uint64_t n_installs;
    uint64_t n_reads;
    uint64_t n_leaders;
    uint64_t n_enomem;
};

static void coverage_add(struct coverage *cov, const struct run *run)
{
    cov->n_committed += rkv_raft_fixture_committed(run->cluster);
    cov->n_leaders += rkv_raft_fixture_n_leaders(run->cluster);
    cov->n_enomem += rkv_raft_fixture_n_enomem(run->cluster);
    for (unsigned i = 0; i < run->n_nodes; i++) {
        cov->n_installs += rkv_raft_fixture_n_installs(run->cluster, i);
        cov->n_reads += rkv_raft_fixture_n_reads(run->cluster, i);
    }
}

static void run_seed(uint64_t seed, unsigned long n_steps,
                     struct coverage *cov)
{
    struct run run;

    run_setup(&run, seed, n_steps);
    for (unsigned long s = 0; s < n_steps; s++) {
        run_step(&run);
    }
    run_finish(&run);
    coverage_add(cov, &run);
    rkv_raft_fixture_free(run.cluster);
}

/* Every seed keeps the safety invariants under random faults and ends
 * with a live group. A run of 100 seeds or more must also have exercised
 * elections, commits, snapshots, reads and allocation failures, so that a
 * change making the faults ineffective fails here. */
TEST(raft_random, seeds)
{
    unsigned long n_seeds = env_count("RKV_RAFT_SEEDS", SEEDS_DEFAULT);
    unsigned long n_steps = env_count("RKV_RAFT_STEPS", STEPS_DEFAULT);
    unsigned long only = env_count("RKV_RAFT_SEED", 0);
    struct coverage cov = {0};

    rkv__log_min_level = RKV_WARN;
    if (only != 0) {
        run_seed(only, n_steps, &cov);
        return;
    }
    for (unsigned long seed = 1; seed <= n_seeds; seed++) {
        run_seed(seed, n_steps, &cov);
    }
    printf("raft random: %lu seeds of %lu steps passed: %llu leaders, "
           "%llu committed, %llu snapshots installed, %llu reads, "
           "%llu allocation failures\n",
           n_seeds, n_steps, (unsigned long long)cov.n_leaders,
           (unsigned long long)cov.n_committed,
           (unsigned long long)cov.n_installs,
           (unsigned long long)cov.n_reads,
           (unsigned long long)cov.n_enomem);
    if (n_seeds >= 100 && n_steps >= STEPS_DEFAULT) {
        ASSERT_UINT_GT(cov.n_leaders, n_seeds);
        ASSERT_UINT_GT(cov.n_committed, 6 * n_seeds);
        ASSERT_UINT_GT(cov.n_installs, n_seeds / 4);
        ASSERT_UINT_GT(cov.n_reads, n_seeds);
        ASSERT_UINT_GT(cov.n_enomem, n_seeds);
    }
}
