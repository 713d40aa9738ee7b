/*
 * The simulator catches known bugs: each bug that the node code built with
 * RKV_NODE_BUGS can switch on (enum rkv_node__bug) must make a run fail
 * within the first few seeds. This proves that the checks can fail.
 */
#include "tests/lib/test.h"
#include "tests/sim/sim.h"

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
