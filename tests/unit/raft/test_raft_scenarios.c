/*
 * Scenario tests for the Raft core, each driving an in-memory cluster
 * (tests/lib/raft_fixture.h) through one situation with explicit message
 * delivery, drops, partitions and crashes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "rangekv/error.h"
#include "raft/raft.h"
#include "tests/lib/raft_fixture.h"
#include "tests/lib/test.h"

struct fixture {
    struct rkv_raft_fixture *cluster;
};

static void setup(struct fixture *fx, unsigned n_nodes, unsigned n_voters)
{
    rkv_raft_fixture_new(n_nodes, n_voters, 1, &fx->cluster);
}

static void setup_started(struct fixture *fx, unsigned n_nodes,
                          unsigned n_voters)
{
    setup(fx, n_nodes, n_voters);
    for (unsigned i = 0; i < n_voters; i++) {
        rkv_raft_fixture_start(fx->cluster, i);
    }
}

static void teardown(struct fixture *fx)
{
    rkv_raft_fixture_free(fx->cluster);
}

#define CLUSTER fx.cluster
#define RAFT(i) rkv_raft_fixture_raft(CLUSTER, (i))
#define CLUSTER_ELECT(i) rkv_raft_fixture_elect(CLUSTER, (i))
#define CLUSTER_RUN(n) rkv_raft_fixture_run(CLUSTER, (n))
#define CLUSTER_FLUSH() rkv_raft_fixture_flush(CLUSTER, 100000)

/* Proposes a short string on replica i and asserts it was accepted. */
static uint64_t propose_ok(struct rkv_raft_fixture *cluster, unsigned i,
                           const char *text)
{
    uint64_t index = 0;

    ASSERT_OK(rkv_raft_fixture_propose(cluster, i, text, strlen(text),
                                       &index));
    return index;
}

/* A three-voter group elects the replica that campaigns and replicates a
 * proposal to every replica. */
TEST(raft, elects_and_replicates)
{
    struct fixture fx;
    uint64_t index;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    ASSERT_INT_EQ(rkv_raft_fixture_leader(CLUSTER), 0);
    ASSERT_UINT_EQ(rkv_raft_term(RAFT(0)), 1);

    index = propose_ok(CLUSTER, 0, "hello");
    CLUSTER_FLUSH();
    for (unsigned i = 0; i < 3; i++) {
        ASSERT_UINT_EQ(rkv_raft_fixture_applied(CLUSTER, i), index);
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, i), 1);
    }
    teardown(&fx);
}

/* Without an explicit campaign, randomized timeouts elect exactly one
 * leader within a few election timeouts. */
TEST(raft, election_by_timeout)
{
    struct fixture fx;

    setup_started(&fx, 5, 5);
    CLUSTER_RUN(60);
    ASSERT_INT_GE(rkv_raft_fixture_leader(CLUSTER), 0);
    teardown(&fx);
}

/* ---- selective delivery ------------------------------------------------- */

/* Returns true when the message should be dropped instead of delivered. */
typedef bool (*drop_fn)(struct rkv_raft_fixture *cluster,
                        const RkvRaft__Message *msg, void *arg);

/* Delivers messages oldest first, dropping those drop() selects, until
 * the network is empty or max messages were handled. */
static void deliver_filtered(struct rkv_raft_fixture *cluster, drop_fn drop,
                             void *arg, unsigned max)
{
    for (unsigned n = 0; n < max && rkv_raft_fixture_n_messages(cluster) > 0;
         n++) {
        RkvRaft__Message *msg = rkv_raft_fixture_peek(cluster, 0);
        bool dropped = drop(cluster, msg, arg);

        rkv_raft__message__free_unpacked(msg, NULL);
        if (dropped) {
            rkv_raft_fixture_drop(cluster, 0);
        } else {
            rkv_raft_fixture_deliver(cluster, 0);
        }
    }
}

/* Keeps campaigning on replica i (at most 5 rounds) until it leads. */
static void campaign_until_leader(struct rkv_raft_fixture *cluster,
                                  unsigned i, drop_fn drop, void *arg)
{
    for (int round = 0; round < 5; round++) {
        struct rkv_raft *r = rkv_raft_fixture_raft(cluster, i);

        if (rkv_raft_role(r) == RKV_RAFT_LEADER) {
            return;
        }
        ASSERT_OK(rkv_raft_campaign(r));
        rkv_raft_fixture_flush(cluster, 0);
        deliver_filtered(cluster, drop, arg, 100000);
    }
    ASSERT_INT_EQ(rkv_raft_role(rkv_raft_fixture_raft(cluster, i)),
                  RKV_RAFT_LEADER);
}

static bool drop_nothing(struct rkv_raft_fixture *cluster,
                         const RkvRaft__Message *msg, void *arg)
{
    return false;
}

static bool drop_appends(struct rkv_raft_fixture *cluster,
                         const RkvRaft__Message *msg, void *arg)
{
    return msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_APPEND;
}

/* Figure 8 step (c): the new leader's entry at index 3 must reach no
 * replica that would accept it, so that index 2 (term 1) spreads without
 * any entry of the leader's term. */
static bool drop_index3_where_accepted(struct rkv_raft_fixture *cluster,
                                       const RkvRaft__Message *msg, void *arg)
{
    struct rkv_raft *to = rkv_raft_fixture_raft(cluster,
                                                (unsigned)msg->to - 1);
    uint64_t term = 0;

    if (msg->type != RKV_RAFT__MESSAGE_TYPE__MSG_APPEND || to == NULL) {
        return false;
    }
    for (size_t k = 0; k < msg->n_entries; k++) {
        if (msg->entries[k]->index >= 3 &&
            rkv_raft_term_at(to, msg->prev_log_index, &term) == 0 &&
            term == msg->prev_log_term) {
            return true;
        }
    }
    return false;
}

static void disable_prevote_and_lease(struct rkv_raft_fixture *cluster,
                                      unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct rkv_raft_config *config = rkv_raft_fixture_config(cluster, i);

        config->pre_vote = false;
        config->check_quorum = false;
        /* One entry per append, so that entries travel separately. */
        config->append_bytes_max = 1;
    }
}

/* Figure 8 of the Raft paper (Ongaro and Ousterhout, "In Search of an
 * Understandable Consensus Algorithm", 2014): an entry of an earlier term
 * stored on a majority is not committed by counting replicas, and a later
 * leader may rightly overwrite it. */
TEST(raft, figure8_old_term_not_committed)
{
    struct fixture fx;
    uint64_t term = 0;

    setup(&fx, 5, 5);
    disable_prevote_and_lease(CLUSTER, 5);
    rkv_raft_fixture_start_all(CLUSTER);

    /* (a) S1 leads term 1 and puts index 2 on S2 only. */
    CLUSTER_ELECT(0);
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), 1);
    for (unsigned i = 2; i < 5; i++) {
        rkv_raft_fixture_cut(CLUSTER, 0, i, true);
    }
    propose_ok(CLUSTER, 0, "x");
    CLUSTER_FLUSH();
    rkv_raft_fixture_heal(CLUSTER);
    ASSERT_OK(rkv_raft_term_at(RAFT(1), 2, &term));
    ASSERT_UINT_EQ(term, 1);

    /* (b) S1 crashes; S5 wins with S3 and S4 and its no-op (index 2,
     * term 2) reaches no replica. */
    rkv_raft_fixture_crash(CLUSTER, 0);
    campaign_until_leader(CLUSTER, 4, drop_appends, NULL);
    ASSERT_UINT_EQ(rkv_raft_last_index(RAFT(4)), 2);
    rkv_raft_fixture_crash(CLUSTER, 4);

    /* (c) S1 restarts and leads a later term. Index 2 (term 1) spreads to
     * a majority, but without an entry of the current term it must not be
     * counted as committed. */
    rkv_raft_fixture_start(CLUSTER, 0);
    campaign_until_leader(CLUSTER, 0, drop_index3_where_accepted, NULL);
    rkv_raft_fixture_tick(CLUSTER, 0);
    deliver_filtered(CLUSTER, drop_index3_where_accepted, NULL, 100000);
    for (unsigned i = 0; i < 4; i++) {
        ASSERT_OK(rkv_raft_term_at(RAFT(i), 2, &term));
        ASSERT_UINT_EQ(term, 1);
    }
    ASSERT_UINT_GT(rkv_raft_term(RAFT(0)), 2);
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), 1);

    /* (d) S1 crashes; S5 restarts, wins (its last term 2 beats 1) and
     * overwrites index 2 everywhere; nothing committed changes. */
    rkv_raft_fixture_crash(CLUSTER, 0);
    while (rkv_raft_fixture_n_messages(CLUSTER) > 0) {
        rkv_raft_fixture_drop(CLUSTER, 0);
    }
    rkv_raft_fixture_start(CLUSTER, 4);
    campaign_until_leader(CLUSTER, 4, drop_nothing, NULL);
    CLUSTER_FLUSH();
    rkv_raft_fixture_start(CLUSTER, 0);
    CLUSTER_RUN(3);
    for (unsigned i = 0; i < 5; i++) {
        ASSERT_OK(rkv_raft_term_at(RAFT(i), 2, &term));
        ASSERT_UINT_EQ(term, 2);
        ASSERT_UINT_EQ(rkv_raft_fixture_applied(CLUSTER, i),
                       rkv_raft_last_index(RAFT(4)));
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, i), 0);
    }
    teardown(&fx);
}

/* A leader cut off from the majority cannot commit, steps down by
 * check-quorum within two election timeouts (the lease period in which it
 * last heard from followers, then one without), and its entry is
 * replaced. */
TEST(raft, partitioned_leader_steps_down)
{
    struct fixture fx;
    uint64_t index;
    uint64_t commit;
    int leader;
    uint64_t term = 0;

    setup_started(&fx, 5, 5);
    CLUSTER_ELECT(0);
    propose_ok(CLUSTER, 0, "before");
    CLUSTER_FLUSH();
    commit = rkv_raft_commit_index(RAFT(0));

    rkv_raft_fixture_isolate(CLUSTER, 0);
    index = propose_ok(CLUSTER, 0, "lost");
    for (unsigned t = 0; t < 20; t++) {
        CLUSTER_RUN(1);
        ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), commit);
    }
    ASSERT_INT_NE(rkv_raft_role(RAFT(0)), RKV_RAFT_LEADER);

    CLUSTER_RUN(40);
    leader = rkv_raft_fixture_leader(CLUSTER);
    ASSERT_INT_GT(leader, 0);
    propose_ok(CLUSTER, (unsigned)leader, "after");
    CLUSTER_FLUSH();

    rkv_raft_fixture_heal(CLUSTER);
    CLUSTER_RUN(5);
    ASSERT_INT_EQ(rkv_raft_fixture_leader(CLUSTER), leader);
    for (unsigned i = 0; i < 5; i++) {
        ASSERT_OK(rkv_raft_term_at(RAFT(i), index, &term));
        ASSERT_UINT_GT(term, 1);
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, i), 2);
    }
    teardown(&fx);
}

struct vote_count {
    unsigned n_pre_votes;
};

static bool count_pre_votes(struct rkv_raft_fixture *cluster,
                            const RkvRaft__Message *msg, void *arg)
{
    struct vote_count *count = arg;

    if (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE) {
        count->n_pre_votes++;
    }
    return false;
}

/* With pre-vote (and check-quorum's lease), a replica rejoining after a
 * partition requests votes for a higher term but neither raises anyone's
 * term nor deposes the stable leader. */
TEST(raft, prevote_rejoin_keeps_leader)
{
    struct fixture fx;
    struct vote_count count = {0};
    uint64_t term;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    term = rkv_raft_term(RAFT(0));

    rkv_raft_fixture_isolate(CLUSTER, 2);
    CLUSTER_RUN(100);
    ASSERT_UINT_EQ(rkv_raft_term(RAFT(2)), term);
    ASSERT_INT_EQ(rkv_raft_role(RAFT(2)), RKV_RAFT_PRE_CANDIDATE);

    /* Its pre-votes for term + 1 now reach the others. */
    rkv_raft_fixture_heal(CLUSTER);
    ASSERT_OK(rkv_raft_campaign(RAFT(2)));
    rkv_raft_fixture_flush(CLUSTER, 0);
    deliver_filtered(CLUSTER, count_pre_votes, &count, 100000);
    ASSERT_UINT_EQ(count.n_pre_votes, 2);
    CLUSTER_RUN(30);

    ASSERT_INT_EQ(rkv_raft_fixture_leader(CLUSTER), 0);
    for (unsigned i = 0; i < 3; i++) {
        ASSERT_UINT_EQ(rkv_raft_term(RAFT(i)), term);
        ASSERT_UINT_EQ(rkv_raft_leader(RAFT(i)), 1);
    }
    teardown(&fx);
}

/* A leader new in its term serves ReadIndex only after committing an
 * entry of that term: until then its commit index may be stale. */
TEST(raft, read_index_waits_for_term_commit)
{
    struct fixture fx;
    uint64_t ctx;
    uint64_t read_index = 0;
    uint64_t noop_index;

    setup(&fx, 3, 3);
    disable_prevote_and_lease(CLUSTER, 3);
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    propose_ok(CLUSTER, 0, "a");
    CLUSTER_FLUSH();

    /* S2 takes over, but its no-op is held back. */
    campaign_until_leader(CLUSTER, 1, drop_appends, NULL);
    noop_index = rkv_raft_last_index(RAFT(1));
    ASSERT_UINT_LT(rkv_raft_commit_index(RAFT(1)), noop_index);
    ASSERT_OK(rkv_raft_fixture_read(CLUSTER, 1, &ctx));
    for (int t = 0; t < 3; t++) {
        rkv_raft_fixture_tick(CLUSTER, 1);
        deliver_filtered(CLUSTER, drop_appends, NULL, 100000);
        ASSERT_FALSE(rkv_raft_fixture_read_done(CLUSTER, 1, ctx,
                                                &read_index));
    }

    /* Once the no-op commits, a quorum round releases the read. */
    CLUSTER_RUN(2);
    ASSERT_TRUE(rkv_raft_fixture_read_done(CLUSTER, 1, ctx, &read_index));
    ASSERT_UINT_EQ(read_index, noop_index);
    ASSERT_INT_EQ(rkv_raft_read_index(RAFT(0), 7), RKV_ENOTLEADER);
    teardown(&fx);
}

/* A follower that makes an append durable and crashes before its
 * acknowledgment leaves keeps the entry, and the leader commits it after
 * the restart. */
TEST(raft, follower_crash_before_ack)
{
    struct fixture fx;
    uint64_t index;
    uint64_t commit;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    commit = rkv_raft_commit_index(RAFT(0));
    rkv_raft_fixture_isolate(CLUSTER, 2);
    rkv_raft_fixture_set_auto_persist(CLUSTER, 1, false);

    index = propose_ok(CLUSTER, 0, "durable");
    CLUSTER_FLUSH();
    ASSERT_UINT_EQ(rkv_raft_fixture_n_pending(CLUSTER, 1), 1);
    ASSERT_UINT_EQ(rkv_raft_last_index(RAFT(1)), index);
    rkv_raft_fixture_persist_then_crash(CLUSTER, 1);
    CLUSTER_FLUSH();
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), commit);

    rkv_raft_fixture_set_auto_persist(CLUSTER, 1, true);
    rkv_raft_fixture_start(CLUSTER, 1);
    ASSERT_UINT_EQ(rkv_raft_last_index(RAFT(1)), index);
    CLUSTER_RUN(2);
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), index);
    ASSERT_UINT_EQ(rkv_raft_fixture_applied(CLUSTER, 1), index);
    teardown(&fx);
}

/* A follower that crashes before its append is durable loses it, never
 * acknowledged it, and receives it again. */
TEST(raft, follower_crash_before_persist)
{
    struct fixture fx;
    uint64_t index;
    uint64_t commit;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    commit = rkv_raft_commit_index(RAFT(0));
    rkv_raft_fixture_isolate(CLUSTER, 2);
    rkv_raft_fixture_set_auto_persist(CLUSTER, 1, false);

    index = propose_ok(CLUSTER, 0, "volatile");
    CLUSTER_FLUSH();
    rkv_raft_fixture_crash(CLUSTER, 1);
    rkv_raft_fixture_set_auto_persist(CLUSTER, 1, true);
    rkv_raft_fixture_start(CLUSTER, 1);
    ASSERT_UINT_EQ(rkv_raft_last_index(RAFT(1)), index - 1);
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), commit);

    CLUSTER_RUN(2);
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), index);
    ASSERT_UINT_EQ(rkv_raft_fixture_applied(CLUSTER, 1), index);
    teardown(&fx);
}

/* A leader sends its entries before they are durable locally, but counts
 * itself toward the commit only after its own ack. */
TEST(raft, leader_counts_itself_once_durable)
{
    struct fixture fx;
    uint64_t index;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_isolate(CLUSTER, 2);
    rkv_raft_fixture_set_auto_persist(CLUSTER, 0, false);

    index = propose_ok(CLUSTER, 0, "x");
    ASSERT_UINT_EQ(rkv_raft_fixture_n_pending(CLUSTER, 0), 1);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_messages(CLUSTER), 1);
    CLUSTER_FLUSH();
    ASSERT_UINT_EQ(rkv_raft_fixture_applied(CLUSTER, 1), index - 1);
    ASSERT_UINT_LT(rkv_raft_commit_index(RAFT(0)), index);

    ASSERT_TRUE(rkv_raft_fixture_persist(CLUSTER, 0));
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(0)), index);
    teardown(&fx);
}

/* Term and vote are durable before a vote request or a grant leaves. */
TEST(raft, vote_waits_for_durable_term)
{
    struct fixture fx;
    struct rkv_raft_hard_state before;

    setup_started(&fx, 3, 3);
    rkv_raft_fixture_set_auto_persist(CLUSTER, 0, false);
    rkv_raft_fixture_set_auto_persist(CLUSTER, 1, false);
    rkv_raft_fixture_isolate(CLUSTER, 2);
    before.term = rkv_raft_term(RAFT(0));

    ASSERT_OK(rkv_raft_campaign(RAFT(0)));
    rkv_raft_fixture_flush(CLUSTER, 0);
    /* The pre-vote round changes nothing durable; its requests go out
     * with the (empty) batch. */
    ASSERT_TRUE(rkv_raft_fixture_persist(CLUSTER, 0));
    ASSERT_UINT_EQ(rkv_raft_fixture_n_messages(CLUSTER), 1);
    rkv_raft_fixture_deliver(CLUSTER, 0);
    while (rkv_raft_fixture_persist(CLUSTER, 1)) {
    }
    rkv_raft_fixture_deliver(CLUSTER, 0);

    /* Now a candidate of term + 1: its vote request waits for the term. */
    ASSERT_UINT_EQ(rkv_raft_term(RAFT(0)), before.term + 1);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_messages(CLUSTER), 0);
    ASSERT_TRUE(rkv_raft_fixture_persist(CLUSTER, 0));
    ASSERT_UINT_EQ(rkv_raft_fixture_n_messages(CLUSTER), 1);

    /* The voter's grant waits for its vote to be durable too. */
    rkv_raft_fixture_deliver(CLUSTER, 0);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_messages(CLUSTER), 0);
    ASSERT_TRUE(rkv_raft_fixture_persist(CLUSTER, 1));
    ASSERT_UINT_EQ(rkv_raft_fixture_n_messages(CLUSTER), 1);
    rkv_raft_fixture_deliver(CLUSTER, 0);
    ASSERT_INT_EQ(rkv_raft_role(RAFT(0)), RKV_RAFT_LEADER);
    teardown(&fx);
}

static void set_chunk_bytes(struct rkv_raft_fixture *cluster, unsigned n,
                            uint64_t chunk_bytes)
{
    for (unsigned i = 0; i < n; i++) {
        rkv_raft_fixture_config(cluster, i)->chunk_bytes_max = chunk_bytes;
    }
}

/* A follower whose next entries were compacted away catches up by a
 * chunked snapshot. A crash in the middle of the install leaves a partial
 * staging area, and the transfer starts over and completes. */
TEST(raft, snapshot_catch_up_with_crash)
{
    struct fixture fx;
    char text[32];
    uint64_t applied;
    unsigned n_chunks_before;

    setup(&fx, 3, 3);
    set_chunk_bytes(CLUSTER, 3, 16);
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_crash(CLUSTER, 2);
    for (int k = 0; k < 20; k++) {
        snprintf(text, sizeof(text), "entry-%02d", k);
        propose_ok(CLUSTER, 0, text);
        CLUSTER_FLUSH();
    }
    rkv_raft_fixture_compact(CLUSTER, 0);
    rkv_raft_fixture_compact(CLUSTER, 1);
    applied = rkv_raft_fixture_applied(CLUSTER, 0);
    ASSERT_UINT_EQ(rkv_raft_first_index(RAFT(0)), applied + 1);

    /* Restart S3 and let a few chunks through, then crash it. */
    rkv_raft_fixture_start(CLUSTER, 2);
    for (int t = 0; t < 30 && rkv_raft_fixture_n_chunks(CLUSTER, 2) < 3;
         t++) {
        rkv_raft_fixture_tick_all(CLUSTER);
        while (rkv_raft_fixture_n_messages(CLUSTER) > 0 &&
               rkv_raft_fixture_n_chunks(CLUSTER, 2) < 3) {
            rkv_raft_fixture_deliver(CLUSTER, 0);
        }
    }
    ASSERT_UINT_EQ(rkv_raft_fixture_n_chunks(CLUSTER, 2), 3);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_installs(CLUSTER, 2), 0);
    rkv_raft_fixture_crash(CLUSTER, 2);
    n_chunks_before = rkv_raft_fixture_n_chunks(CLUSTER, 2);

    /* After the restart the transfer starts again from chunk 0. */
    rkv_raft_fixture_start(CLUSTER, 2);
    CLUSTER_RUN(40);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_installs(CLUSTER, 2), 1);
    ASSERT_UINT_GT(rkv_raft_fixture_n_chunks(CLUSTER, 2),
                   n_chunks_before + 3);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 2), 20);
    ASSERT_UINT_EQ(rkv_raft_fixture_applied(CLUSTER, 2),
                   rkv_raft_fixture_applied(CLUSTER, 0));

    /* Replication continues normally after the install. */
    propose_ok(CLUSTER, 0, "after");
    CLUSTER_FLUSH();
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 2), 21);
    teardown(&fx);
}

/* Proposes a membership change on i and asserts it was accepted. */
static void change_ok(struct rkv_raft_fixture *cluster, unsigned i,
                      enum rkv_raft_conf_change change, uint64_t id)
{
    uint64_t index;
    uint64_t term;

    ASSERT_OK(rkv_raft_propose_conf_change(rkv_raft_fixture_raft(cluster, i),
                                           change, id, &index, &term));
    rkv_raft_fixture_flush(cluster, 0);
}

static bool conf_has(struct rkv_raft *r, uint64_t id, bool learner)
{
    struct rkv_raft_conf conf;

    rkv_raft_conf_get(r, &conf);
    for (unsigned k = 0; k < conf.n_servers; k++) {
        if (conf.servers[k].id == id) {
            return conf.servers[k].learner == learner;
        }
    }
    return false;
}

/* A fourth replica joins as a learner (catching up by snapshot), is
 * promoted to voter, and then the leader removes itself and steps down
 * once that change commits. */
TEST(raft, learner_promote_remove_leader)
{
    struct fixture fx;
    uint64_t index;
    uint64_t term;
    int leader;

    setup_started(&fx, 4, 3);
    CLUSTER_ELECT(0);
    propose_ok(CLUSTER, 0, "one");
    CLUSTER_FLUSH();
    rkv_raft_fixture_compact(CLUSTER, 0);

    rkv_raft_fixture_start(CLUSTER, 3);
    change_ok(CLUSTER, 0, RKV_RAFT_ADD_LEARNER, 4);
    /* One change at a time: the next waits for this one to commit. */
    ASSERT_INT_EQ(rkv_raft_propose_conf_change(RAFT(0), RKV_RAFT_PROMOTE, 4,
                                               &index, &term),
                  RKV_ECONFCHANGE);
    CLUSTER_RUN(30);
    ASSERT_TRUE(conf_has(RAFT(3), 4, true));
    ASSERT_UINT_EQ(rkv_raft_fixture_n_installs(CLUSTER, 3), 1);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 3), 1);
    ASSERT_INT_EQ(rkv_raft_campaign(RAFT(3)), -EINVAL);

    change_ok(CLUSTER, 0, RKV_RAFT_PROMOTE, 4);
    CLUSTER_FLUSH();
    ASSERT_TRUE(conf_has(RAFT(3), 4, false));
    ASSERT_INT_EQ(rkv_raft_propose_conf_change(RAFT(0), RKV_RAFT_PROMOTE, 4,
                                               &index, &term),
                  -EINVAL);

    change_ok(CLUSTER, 0, RKV_RAFT_REMOVE, 1);
    CLUSTER_FLUSH();
    ASSERT_INT_NE(rkv_raft_role(RAFT(0)), RKV_RAFT_LEADER);
    for (unsigned i = 1; i < 4; i++) {
        ASSERT_FALSE(conf_has(RAFT(i), 1, false));
        ASSERT_FALSE(conf_has(RAFT(i), 1, true));
    }

    CLUSTER_RUN(50);
    leader = rkv_raft_fixture_leader(CLUSTER);
    ASSERT_INT_GT(leader, 0);
    propose_ok(CLUSTER, (unsigned)leader, "two");
    CLUSTER_FLUSH();
    for (unsigned i = 1; i < 4; i++) {
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, i), 2);
    }
    teardown(&fx);
}

/* ---- replicas that may not campaign ------------------------------------ */

/* A replica that the leader's appends and snapshot chunks do not reach. */
struct log_cut {
    uint64_t to; /* replica id whose log stays behind; 0 while no cut */
};

static bool drop_log_to_cut(struct rkv_raft_fixture *cluster,
                            const RkvRaft__Message *msg, void *arg)
{
    const struct log_cut *cut = arg;

    return msg->to == cut->to &&
           (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_APPEND ||
            msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT);
}

/* Ticks every live replica n times, delivering what the cut lets pass. */
static void run_with_cut(struct rkv_raft_fixture *cluster,
                         struct log_cut *cut, unsigned n_ticks)
{
    for (unsigned t = 0; t < n_ticks; t++) {
        rkv_raft_fixture_tick_all(cluster);
        rkv_raft_fixture_flush(cluster, 0);
        deliver_filtered(cluster, drop_log_to_cut, cut, 100000);
    }
}

/*
 * Builds a group whose voters are replicas 1, 2 and 3 in the leader's
 * configuration, while replica 3 cannot campaign. With as_learner false it
 * stays an empty placeholder because the log never reaches it. With
 * as_learner true it catches up as a learner and never receives its
 * promotion. Replica 3 hears the leader's heartbeats throughout.
 */
static void build_group_with_passive_voter(struct rkv_raft_fixture *cluster,
                                           struct log_cut *cut,
                                           bool as_learner)
{
    struct rkv_raft *passive;
    struct rkv_raft_conf conf;

    rkv_raft_fixture_start(cluster, 0);
    rkv_raft_fixture_start(cluster, 1);
    rkv_raft_fixture_elect(cluster, 0);
    rkv_raft_fixture_start(cluster, 2);
    cut->to = as_learner ? 0 : 3;

    change_ok(cluster, 0, RKV_RAFT_ADD_LEARNER, 3);
    run_with_cut(cluster, cut, 5);
    cut->to = 3;
    change_ok(cluster, 0, RKV_RAFT_PROMOTE, 3);
    run_with_cut(cluster, cut, 5);

    ASSERT_TRUE(conf_has(rkv_raft_fixture_raft(cluster, 0), 3, false));
    ASSERT_TRUE(conf_has(rkv_raft_fixture_raft(cluster, 1), 3, false));
    passive = rkv_raft_fixture_raft(cluster, 2);
    rkv_raft_conf_get(passive, &conf);
    if (as_learner) {
        ASSERT_TRUE(conf_has(passive, 3, true));
    } else {
        ASSERT_UINT_EQ(conf.n_servers, 0);
    }
    ASSERT_UINT_EQ(rkv_raft_leader(passive), 1);
    ASSERT_INT_EQ(rkv_raft_campaign(passive), -EINVAL);
}

/*
 * A voter wins its first election after the leader dies, even when the
 * only other live voter is a replica that may not campaign. That replica's
 * lease on the dead leader must run out one election timeout T after the
 * last heartbeat, not be renewed by its own expired timer. The voter's
 * first campaign starts at most 2T - 1 ticks after the crash (the largest
 * randomized timeout), so it leads within 2T ticks.
 */
TEST(raft, passive_voter_grants_after_lease)
{
    static const bool as_learner_cases[] = {false, true};

    for (size_t c = 0; c < 2; c++) {
        for (uint64_t seed = 1; seed <= 16; seed++) {
            struct rkv_raft_fixture *cluster;
            struct log_cut cut = {0};
            unsigned election_ticks;
            unsigned ticks = 0;

            rkv_raft_fixture_new(3, 2, seed, &cluster);
            election_ticks =
                rkv_raft_fixture_config(cluster, 0)->election_ticks;
            build_group_with_passive_voter(cluster, &cut,
                                           as_learner_cases[c]);

            rkv_raft_fixture_crash(cluster, 0);
            while (rkv_raft_role(rkv_raft_fixture_raft(cluster, 1)) !=
                       RKV_RAFT_LEADER &&
                   ticks < 10 * election_ticks) {
                run_with_cut(cluster, &cut, 1);
                ticks++;
            }
            if (ticks >= 2 * election_ticks) {
                printf("as_learner=%d seed=%llu: leader after %u ticks\n",
                       (int)as_learner_cases[c], (unsigned long long)seed,
                       ticks);
            }
            ASSERT_UINT_LT(ticks, 2 * election_ticks);
            ASSERT_INT_EQ(rkv_raft_fixture_leader(cluster), 1);
            rkv_raft_fixture_free(cluster);
        }
    }
}

/* A leader new in its term refuses a membership change until it has
 * committed an entry of that term, the rule that makes single-server
 * changes safe across leader changes. */
TEST(raft, conf_change_waits_for_term_commit)
{
    struct fixture fx;
    uint64_t index;
    uint64_t term;

    setup(&fx, 4, 3);
    disable_prevote_and_lease(CLUSTER, 3);
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    campaign_until_leader(CLUSTER, 1, drop_appends, NULL);
    ASSERT_INT_EQ(rkv_raft_propose_conf_change(RAFT(1), RKV_RAFT_ADD_LEARNER,
                                               4, &index, &term),
                  RKV_ECONFCHANGE);
    CLUSTER_RUN(2);
    ASSERT_UINT_EQ(rkv_raft_commit_index(RAFT(1)),
                   rkv_raft_last_index(RAFT(1)));
    change_ok(CLUSTER, 1, RKV_RAFT_ADD_LEARNER, 4);
    teardown(&fx);
}

/* Leadership moves to a chosen voter while proposals keep arriving: the
 * old leader refuses proposals during the transfer, the target catches up
 * first, and every accepted proposal survives. */
TEST(raft, transfer_under_load)
{
    struct fixture fx;
    char text[32];
    unsigned n_accepted = 0;
    unsigned n_busy = 0;
    uint64_t term;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    term = rkv_raft_term(RAFT(0));
    for (int k = 0; k < 40; k++) {
        uint64_t index;
        int rv;

        snprintf(text, sizeof(text), "load-%02d", k);
        if (k == 10) {
            ASSERT_OK(rkv_raft_transfer_leadership(RAFT(0), 2));
            ASSERT_INT_EQ(rkv_raft_transfer_leadership(RAFT(0), 3),
                          RKV_EBUSY);
        }
        rv = rkv_raft_fixture_propose(CLUSTER, 0, text, strlen(text), &index);
        if (rv == 0) {
            n_accepted++;
        } else if (rv == RKV_EBUSY) {
            n_busy++;
        } else {
            ASSERT_INT_EQ(rv, RKV_ENOTLEADER);
        }
        /* Deliver only part of the traffic per proposal. */
        for (int d = 0; d < 3 && rkv_raft_fixture_n_messages(CLUSTER) > 0;
             d++) {
            rkv_raft_fixture_deliver(CLUSTER, 0);
        }
    }
    CLUSTER_RUN(5);
    ASSERT_INT_EQ(rkv_raft_fixture_leader(CLUSTER), 1);
    ASSERT_UINT_EQ(rkv_raft_term(RAFT(1)), term + 1);
    ASSERT_UINT_GE(n_accepted, 10);
    ASSERT_UINT_GE(n_busy, 1);
    for (unsigned i = 0; i < 3; i++) {
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, i),
                       n_accepted);
    }
    teardown(&fx);
}

struct flow_case {
    uint64_t inflight_entries_max;
    uint64_t inflight_bytes_max;
    unsigned n_expected; /* entries a silent follower receives */
};

/* A leader pipelines appends to a follower that does not acknowledge,
 * but only up to the in-flight limits in entries and in bytes (each
 * 40-byte entry counts 56 bytes with its overhead). */
TEST(raft, append_flow_control)
{
    static const struct flow_case cases[] = {
        {1, 1 << 20, 1},
        {4, 1 << 20, 4},
        {1024, 100, 2},
        {1024, 57, 2},
        {1024, 56, 1},
    };
    char text[41];

    memset(text, 'x', 40);
    text[40] = '\0';
    for (size_t c = 0; c < RKV_ARRAY_SIZE(cases); c++) {
        struct fixture fx;
        uint64_t base;

        setup(&fx, 3, 3);
        rkv_raft_fixture_config(CLUSTER, 0)->inflight_entries_max =
            cases[c].inflight_entries_max;
        rkv_raft_fixture_config(CLUSTER, 0)->inflight_bytes_max =
            cases[c].inflight_bytes_max;
        rkv_raft_fixture_start_all(CLUSTER);
        CLUSTER_ELECT(0);
        base = rkv_raft_last_index(RAFT(1));

        /* S2 and S3 receive but their acknowledgments are lost. */
        rkv_raft_fixture_cut(CLUSTER, 1, 0, true);
        rkv_raft_fixture_cut(CLUSTER, 2, 0, true);
        for (int k = 0; k < 8; k++) {
            propose_ok(CLUSTER, 0, text);
            CLUSTER_FLUSH();
        }
        ASSERT_UINT_EQ(rkv_raft_last_index(RAFT(1)),
                       base + cases[c].n_expected);

        rkv_raft_fixture_heal(CLUSTER);
        CLUSTER_RUN(3);
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 1), 8);
        teardown(&fx);
    }
}

/* Proposals fail with RKV_EBUSY while uncommitted data reaches the
 * leader's limit, and succeed again once it commits. */
TEST(raft, uncommitted_limit)
{
    struct fixture fx;
    char text[41];
    uint64_t index;

    memset(text, 'y', 40);
    text[40] = '\0';
    setup(&fx, 3, 3);
    rkv_raft_fixture_config(CLUSTER, 0)->uncommitted_bytes_max = 100;
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_isolate(CLUSTER, 0);

    propose_ok(CLUSTER, 0, text);
    propose_ok(CLUSTER, 0, text);
    ASSERT_INT_EQ(rkv_raft_fixture_propose(CLUSTER, 0, text, 40, &index),
                  RKV_EBUSY);

    rkv_raft_fixture_heal(CLUSTER);
    CLUSTER_RUN(2);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 0), 2);
    propose_ok(CLUSTER, 0, text);
    teardown(&fx);
}

/* The leader reports the group idle once everything is replicated,
 * durable and applied, and busy while a proposal is in flight. */
TEST(raft, idle_when_fully_replicated)
{
    struct fixture fx;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    CLUSTER_FLUSH();
    ASSERT_TRUE(rkv_raft_is_idle(RAFT(0)));
    ASSERT_FALSE(rkv_raft_is_idle(RAFT(1)));

    rkv_raft_fixture_cut(CLUSTER, 0, 2, true);
    propose_ok(CLUSTER, 0, "z");
    CLUSTER_FLUSH();
    ASSERT_FALSE(rkv_raft_is_idle(RAFT(0)));

    rkv_raft_fixture_heal(CLUSTER);
    CLUSTER_RUN(1);
    ASSERT_TRUE(rkv_raft_is_idle(RAFT(0)));
    teardown(&fx);
}

/* A leader that can send but no longer receive steps down by
 * check-quorum, the others elect a new leader, and after the cut heals
 * the old leader follows it. */
TEST(raft, one_way_cut_leader_steps_down)
{
    struct fixture fx;
    int leader;

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_cut(CLUSTER, 1, 0, true);
    rkv_raft_fixture_cut(CLUSTER, 2, 0, true);
    CLUSTER_RUN(60);

    leader = rkv_raft_fixture_leader(CLUSTER);
    ASSERT_INT_GT(leader, 0);
    ASSERT_INT_NE(rkv_raft_role(RAFT(0)), RKV_RAFT_LEADER);
    ASSERT_UINT_GT(rkv_raft_term(RAFT((unsigned)leader)), 1);

    rkv_raft_fixture_heal(CLUSTER);
    propose_ok(CLUSTER, (unsigned)leader, "after");
    CLUSTER_RUN(2);
    ASSERT_UINT_EQ(rkv_raft_leader(RAFT(0)), (uint64_t)leader + 1);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 0), 1);
    teardown(&fx);
}

/* Duplicated and reordered messages change nothing: every message of a
 * replication round is delivered twice, newest first. */
TEST(raft, duplicate_and_reorder)
{
    struct fixture fx;
    char text[16];

    setup_started(&fx, 3, 3);
    CLUSTER_ELECT(0);
    for (int k = 0; k < 10; k++) {
        snprintf(text, sizeof(text), "dup-%d", k);
        propose_ok(CLUSTER, 0, text);
        for (int round = 0; round < 20; round++) {
            size_t n = rkv_raft_fixture_n_messages(CLUSTER);

            for (size_t m = 0; m < n; m++) {
                rkv_raft_fixture_duplicate(CLUSTER, m);
            }
            while (rkv_raft_fixture_n_messages(CLUSTER) > 0) {
                rkv_raft_fixture_deliver(
                    CLUSTER, rkv_raft_fixture_n_messages(CLUSTER) - 1);
            }
        }
    }
    CLUSTER_RUN(2);
    for (unsigned i = 0; i < 3; i++) {
        ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, i), 10);
    }
    teardown(&fx);
}

/* The single-server change bug (Ongaro, raft-dev, 2015) cannot happen:
 * S1 appends an uncommitted change promoting S5 and is cut off; S2 wins
 * term 2 with S3 and S4 but loses S4 right after. Removing S1 now, then
 * committing that with S3 alone (a quorum of {S2, S3, S4}), would let S1
 * (counting S5) later win with S4 and S5 and overwrite it. The rule that
 * a leader first commits an entry of its term refuses the removal, and
 * S1's later victory then overwrites nothing committed. */
TEST(raft, conf_change_safe_across_leader_change)
{
    struct fixture fx;
    uint64_t index;
    uint64_t term;

    setup(&fx, 5, 4);
    disable_prevote_and_lease(CLUSTER, 5);
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    change_ok(CLUSTER, 0, RKV_RAFT_ADD_LEARNER, 5);
    CLUSTER_RUN(3);
    ASSERT_TRUE(conf_has(RAFT(4), 5, true));

    /* Only S1 has the promotion of S5. */
    rkv_raft_fixture_isolate(CLUSTER, 0);
    change_ok(CLUSTER, 0, RKV_RAFT_PROMOTE, 5);
    ASSERT_TRUE(conf_has(RAFT(0), 5, false));

    /* S2 wins term 2 with S3 and S4, then loses S4; S5 hears nothing. */
    rkv_raft_fixture_isolate(CLUSTER, 4);
    campaign_until_leader(CLUSTER, 1, drop_appends, NULL);
    rkv_raft_fixture_cut(CLUSTER, 1, 3, true);
    rkv_raft_fixture_cut(CLUSTER, 3, 1, true);
    for (int t = 0; t < 3; t++) {
        ASSERT_INT_EQ(rkv_raft_propose_conf_change(RAFT(1), RKV_RAFT_REMOVE,
                                                   1, &index, &term),
                      RKV_ECONFCHANGE);
        CLUSTER_RUN(1);
    }
    ASSERT_UINT_LT(rkv_raft_commit_index(RAFT(1)),
                   rkv_raft_last_index(RAFT(1)));

    /* S1 restarts and wins with S4 and S5; nothing committed is lost. */
    rkv_raft_fixture_crash(CLUSTER, 0);
    rkv_raft_fixture_start(CLUSTER, 0);
    rkv_raft_fixture_heal(CLUSTER);
    rkv_raft_fixture_isolate(CLUSTER, 1);
    rkv_raft_fixture_isolate(CLUSTER, 2);
    campaign_until_leader(CLUSTER, 0, drop_nothing, NULL);
    rkv_raft_fixture_heal(CLUSTER);
    CLUSTER_RUN(5);
    for (unsigned i = 0; i < 5; i++) {
        ASSERT_TRUE(conf_has(RAFT(i), 1, false));
        ASSERT_TRUE(conf_has(RAFT(i), 5, false));
    }
    teardown(&fx);
}

/* A test's own state machine: a sum of the first byte of each entry. */
struct sum_fsm {
    uint64_t sum[3];
    unsigned n_restores;
};

static void sum_apply(void *ctx, unsigned i, const RkvRaft__Entry *entry)
{
    struct sum_fsm *fsm = ctx;

    if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_NORMAL &&
        entry->data.len > 0) {
        fsm->sum[i] += entry->data.data[0];
    }
}

static uint8_t *sum_snapshot(void *ctx, unsigned i, size_t *len)
{
    struct sum_fsm *fsm = ctx;
    uint8_t *buf = malloc(8);

    rkv_put_be64(buf, fsm->sum[i]);
    *len = 8;
    return buf;
}

static void sum_restore(void *ctx, unsigned i, const uint8_t *data,
                        size_t len)
{
    struct sum_fsm *fsm = ctx;

    ASSERT_UINT_EQ(len, 8);
    fsm->sum[i] = rkv_get_be64(data);
    fsm->n_restores++;
}

/* The fixture runs a test's own state machine through applies and a
 * snapshot install, as the store's tests do with the range. */
TEST(raft, fixture_runs_custom_fsm)
{
    struct fixture fx;
    struct sum_fsm sum = {0};
    struct rkv_raft_fixture_fsm hooks = {
        .ctx = &sum,
        .apply = sum_apply,
        .snapshot = sum_snapshot,
        .restore = sum_restore,
    };

    setup(&fx, 3, 3);
    rkv_raft_fixture_set_fsm(CLUSTER, &hooks);
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_crash(CLUSTER, 2);
    propose_ok(CLUSTER, 0, "\x05");
    propose_ok(CLUSTER, 0, "\x07");
    CLUSTER_FLUSH();
    rkv_raft_fixture_compact(CLUSTER, 0);
    rkv_raft_fixture_start(CLUSTER, 2);
    CLUSTER_RUN(5);
    for (unsigned i = 0; i < 3; i++) {
        ASSERT_UINT_EQ(sum.sum[i], 12);
    }
    ASSERT_UINT_EQ(sum.n_restores, 1);
    teardown(&fx);
}

/* Thesis 4.2.2: S1 leads {S1, S2} and appends its own removal, which S2
 * never receives before S1 restarts. S2 still needs S1's vote, and S1
 * refuses it because S1's log is longer. So S1, removed in its own view,
 * must campaign without counting itself, commit the removal and step
 * down. Then S2 leads alone. */
TEST(raft, removed_leader_finishes_its_removal)
{
    struct fixture fx;
    int leader = -1;

    setup_started(&fx, 2, 2);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_cut(CLUSTER, 0, 1, true);
    change_ok(CLUSTER, 0, RKV_RAFT_REMOVE, 1);
    ASSERT_FALSE(conf_has(RAFT(0), 1, false));
    ASSERT_TRUE(conf_has(RAFT(1), 1, false));
    rkv_raft_fixture_crash(CLUSTER, 0);
    rkv_raft_fixture_start(CLUSTER, 0);
    rkv_raft_fixture_heal(CLUSTER);

    for (int t = 0; t < 200 && leader != 1; t++) {
        CLUSTER_RUN(1);
        leader = rkv_raft_fixture_leader(CLUSTER);
    }
    ASSERT_INT_EQ(leader, 1);
    ASSERT_FALSE(conf_has(RAFT(1), 1, false));
    propose_ok(CLUSTER, 1, "alone");
    CLUSTER_FLUSH();
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 1), 1);
    teardown(&fx);
}

/* Delivers every message not sent by replica `from`, which stay queued. */
static void deliver_except_from(struct rkv_raft_fixture *cluster,
                                unsigned from)
{
    size_t k = 0;

    while (k < rkv_raft_fixture_n_messages(cluster)) {
        unsigned msg_from;
        unsigned msg_to;
        RkvRaft__MessageType type;

        rkv_raft_fixture_message(cluster, k, &msg_from, &msg_to, &type);
        if (msg_from == from || msg_to == from) {
            k++;
        } else {
            rkv_raft_fixture_deliver(cluster, k);
            k = 0;
        }
    }
}

/* When the leader compacts past the snapshot it is sending, the transfer
 * restarts from a newer snapshot instead of finishing one whose term and
 * configuration the leader no longer has. */
TEST(raft, compaction_restarts_snapshot_transfer)
{
    struct fixture fx;
    char text[32];

    setup(&fx, 3, 3);
    set_chunk_bytes(CLUSTER, 3, 16);
    rkv_raft_fixture_start_all(CLUSTER);
    CLUSTER_ELECT(0);
    rkv_raft_fixture_crash(CLUSTER, 2);
    for (int k = 0; k < 10; k++) {
        snprintf(text, sizeof(text), "first-%02d", k);
        propose_ok(CLUSTER, 0, text);
        CLUSTER_FLUSH();
    }
    rkv_raft_fixture_compact(CLUSTER, 0);

    /* S3 stages two chunks of that snapshot. */
    rkv_raft_fixture_start(CLUSTER, 2);
    for (int t = 0; t < 30 && rkv_raft_fixture_n_chunks(CLUSTER, 2) < 2;
         t++) {
        rkv_raft_fixture_tick(CLUSTER, 0);
        while (rkv_raft_fixture_n_messages(CLUSTER) > 0 &&
               rkv_raft_fixture_n_chunks(CLUSTER, 2) < 2) {
            rkv_raft_fixture_deliver(CLUSTER, 0);
        }
    }
    ASSERT_UINT_EQ(rkv_raft_fixture_n_chunks(CLUSTER, 2), 2);

    /* The leader moves on and compacts past the snapshot being sent,
     * while S3's acknowledgment of its last chunk is held back. */
    for (int k = 0; k < 5; k++) {
        snprintf(text, sizeof(text), "second-%02d", k);
        propose_ok(CLUSTER, 0, text);
        deliver_except_from(CLUSTER, 2);
    }
    rkv_raft_fixture_compact(CLUSTER, 0);
    ASSERT_UINT_GT(rkv_raft_first_index(RAFT(0)),
                   rkv_raft_fixture_applied(CLUSTER, 0) - 5);

    CLUSTER_RUN(40);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_installs(CLUSTER, 2), 1);
    ASSERT_UINT_EQ(rkv_raft_fixture_n_applied_normal(CLUSTER, 2), 15);
    teardown(&fx);
}
