/*
 * The simulator catches known bugs: each bug that the node and Raft code
 * built with RKV_NODE_BUGS and RKV_RAFT_BUGS can switch on (enum
 * rkv_node__bug) must make a run fail within the first seeds. This proves
 * that the checks can fail. With no bug on, that build must run exactly as
 * production does.
 *
 * bugs_build_matches_production runs $RKV_BUILD_DIR/tests/sim/rkv-sim;
 * ctest sets RKV_BUILD_DIR.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rangekv/error.h"
#include "tests/lib/test.h"
#include "tests/sim/sim.h"
#include "tests/sim/sim_internal.h"

#include "rangekv/log.h"

/* Seeds the bug tests try before they give up on catching the bug. */
#define BUG_SEEDS_MAX 20

/* Returns the first seed (1-based) among the first `n_seeds` whose run on
 * n_nodes with bug injected ends with `verdict`, or 0 when none does. */
static uint64_t first_seed_caught(enum rkv_sim_bug bug, unsigned n_nodes,
                                  uint64_t n_seeds,
                                  enum rkv_sim_verdict verdict)
{
    rkv_log_set_level(RKV_ERROR);
    for (uint64_t seed = 1; seed <= n_seeds; seed++) {
        struct rkv_sim_options o;
        struct rkv_sim_report r;

        rkv_sim_options_init(&o, seed, n_nodes);
        o.dir = rkv_test_tmpdir();
        o.bug = bug;
        /* Runs that stall (message storms after lost acknowledged writes)
         * give up sooner. */
        o.heal_ms = 2000;
        ASSERT_OK(rkv_sim_run(&o, &r));
        if (r.verdict == verdict) {
            return seed;
        }
    }
    return 0;
}

/* Follower reads without ReadIndex are caught as stale reads. */
TEST(sim, stale_read_bug_caught)
{
    ASSERT_UINT_NE(first_seed_caught(RKV_SIM_BUG_STALE_READ, 3, BUG_SEEDS_MAX,
                                     RKV_SIM_FAIL_LINEARIZABILITY),
                   0);
}

/* Acknowledging a put before it commits is caught. */
TEST(sim, early_ack_bug_caught)
{
    ASSERT_UINT_NE(first_seed_caught(RKV_SIM_BUG_EARLY_ACK, 3, BUG_SEEDS_MAX,
                                     RKV_SIM_FAIL_LINEARIZABILITY),
                   0);
}

/* Acknowledging Raft batches before they are on disk is caught once a
 * crash loses acknowledged entries: replicas then apply different entries
 * at one index. It takes more seeds than the bugs above, because the
 * crash must fall inside the disk latency of a quorum's writes. */
TEST(sim, ack_before_persist_bug_caught)
{
    ASSERT_UINT_NE(first_seed_caught(RKV_SIM_BUG_ACK_BEFORE_PERSIST, 3,
                                     10 * BUG_SEEDS_MAX, RKV_SIM_FAIL_SAFETY),
                   0);
}

/* A new leader that serves ReadIndex before an entry of its term committed
 * reads at a commit index that may lag writes its predecessor
 * acknowledged. It takes a leader change right after an acknowledged write
 * whose commit index the new leader had not heard yet, so it shows up in
 * about one run in a hundred. */
TEST(sim, read_before_noop_bug_caught)
{
    ASSERT_UINT_NE(first_seed_caught(RKV_SIM_BUG_READ_BEFORE_NOOP, 3,
                                     110 * BUG_SEEDS_MAX,
                                     RKV_SIM_FAIL_LINEARIZABILITY),
                   0);
}

/* Returns the history hash that the production simulator (rkv-sim, which
 * links node/ and raft/ without the bug switches) prints for one seed. */
static uint64_t production_history_hash(uint64_t seed, unsigned n_nodes,
                                        bool compact)
{
    const char *build_dir = getenv("RKV_BUILD_DIR");
    char command[1024];
    char line[2048];
    uint64_t hash = 0;
    FILE *out;

    ASSERT_TRUE(build_dir != NULL);
    snprintf(command, sizeof(command),
             "%s/tests/sim/rkv-sim --seed %llu --nodes %u%s -v", build_dir,
             (unsigned long long)seed, n_nodes, compact ? " --compact" : "");
    out = popen(command, "r");
    ASSERT_TRUE(out != NULL);
    while (fgets(line, sizeof(line), out) != NULL) {
        const char *at = strstr(line, " history=");

        if (strncmp(line, "seed=", 5) == 0 && at != NULL) {
            hash = strtoull(at + strlen(" history="), NULL, 16);
        }
    }
    ASSERT_INT_EQ(pclose(out), 0);
    return hash;
}

/* With no bug switched on, the bugs build runs exactly as production: the
 * same seeds give the same histories, so a failing seed of test_sim
 * replays in either build. */
TEST(sim, bugs_build_matches_production)
{
    static const struct {
        uint64_t seed;
        unsigned n_nodes;
        bool compact;
    } cases[] = {{3, 3, false}, {17, 5, false}, {44, 3, true}, {101, 5, true}};

    rkv_log_set_level(RKV_ERROR);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rkv_sim_options o;
        struct rkv_sim_report r;

        rkv_sim_options_init(&o, cases[i].seed, cases[i].n_nodes);
        o.dir = rkv_test_tmpdir();
        o.compact = cases[i].compact;
        ASSERT_OK(rkv_sim_run(&o, &r));
        ASSERT_INT_EQ(r.verdict, RKV_SIM_PASS);
        ASSERT_UINT_EQ(r.history_hash,
                       production_history_hash(cases[i].seed, cases[i].n_nodes,
                                               cases[i].compact));
    }
}

/* Failing a pending write as dropped as soon as a newer proposal takes its
 * log index is caught: in the scripted scenario that write gets
 * RKV_EDROPPED and then commits under another leader. */
TEST(sim, drop_on_truncate_bug_caught)
{
    struct rkv_sim_options o;
    struct sim_truncate_outcome out;

    rkv_log_set_level(RKV_ERROR);
    rkv_sim_options_init(&o, 1, 5);
    o.dir = rkv_test_tmpdir();
    o.split_bytes = 1u << 30;
    o.bug = RKV_SIM_BUG_DROP_ON_TRUNCATE;
    ASSERT_OK(sim_scenario_truncated_proposal(&o, &out));
    ASSERT_TRUE(out.reached);
    ASSERT_TRUE(out.responded_early);
    ASSERT_INT_EQ(out.early_rv, RKV_EDROPPED);
    ASSERT_TRUE(out.applied_later);
}
