/*
 * Tests of the Raft core driven directly, without the cluster fixture:
 * restart validation, message addressing, allocation failures, and the
 * ready/ack contract seen from the caller.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "raft/raft.h"
#include "tests/lib/test.h"

struct fixture {
    struct rkv_raft_config config;
    struct rkv_raft_boot boot;
    RkvRaft__Entry entries[3];
    RkvRaft__Entry *entry_ptrs[3];
};

/* A replica of a three-voter group (ids 1-3) whose log contains three
 * entries of term 1 after a snapshot at index 10. */
static void setup(struct fixture *fx, uint64_t group_id)
{
    memset(fx, 0, sizeof(*fx));
    rkv_raft_config_init(&fx->config, 1, group_id, 42);
    fx->boot.hard_state.term = 1;
    fx->boot.hard_state.commit = 11;
    fx->boot.snapshot.index = 10;
    fx->boot.snapshot.term = 1;
    fx->boot.snapshot.conf.n_servers = 3;
    for (unsigned i = 0; i < 3; i++) {
        fx->boot.snapshot.conf.servers[i].id = i + 1;
        rkv_raft__entry__init(&fx->entries[i]);
        fx->entries[i].term = 1;
        fx->entries[i].index = 11 + i;
        fx->entry_ptrs[i] = &fx->entries[i];
    }
    fx->boot.applied = 10;
    fx->boot.entries = fx->entry_ptrs;
    fx->boot.n_entries = 3;
}

/* Restart state is checked before the replica is built. */
TEST(raft_core, new_rejects_inconsistent_boot)
{
    struct fixture fx;
    struct rkv_raft *r = NULL;

    setup(&fx, 1);
    ASSERT_OK(rkv_raft_new(&fx.config, &fx.boot, &r));
    ASSERT_UINT_EQ(rkv_raft_last_index(r), 13);
    ASSERT_UINT_EQ(rkv_raft_first_index(r), 11);
    ASSERT_UINT_EQ(rkv_raft_commit_index(r), 11);
    rkv_raft_free(r);

    setup(&fx, 1);
    fx.entries[1].index = 14; /* a gap */
    ASSERT_INT_EQ(rkv_raft_new(&fx.config, &fx.boot, &r), -EINVAL);

    setup(&fx, 1);
    fx.boot.applied = 14; /* past the last entry */
    ASSERT_INT_EQ(rkv_raft_new(&fx.config, &fx.boot, &r), -EINVAL);

    setup(&fx, 1);
    fx.boot.applied = 9; /* before the snapshot */
    ASSERT_INT_EQ(rkv_raft_new(&fx.config, &fx.boot, &r), -EINVAL);

    setup(&fx, 1);
    fx.boot.hard_state.commit = 14;
    ASSERT_INT_EQ(rkv_raft_new(&fx.config, &fx.boot, &r), -EINVAL);

    setup(&fx, 1);
    fx.entries[2].term = 2; /* newer than the hard state's term */
    ASSERT_INT_EQ(rkv_raft_new(&fx.config, &fx.boot, &r), -EINVAL);

    setup(&fx, 1);
    fx.config.id = 0;
    ASSERT_INT_EQ(rkv_raft_new(&fx.config, &fx.boot, &r), -EINVAL);
}

/* Outgoing messages carry the group id, and a candidacy's requests wait
 * for the batch that persists its term and vote. */
TEST(raft_core, messages_carry_group_id)
{
    struct fixture fx;
    struct rkv_raft *r;
    struct rkv_raft_ready *rd;

    setup(&fx, 77);
    fx.config.pre_vote = false;
    ASSERT_OK(rkv_raft_new(&fx.config, &fx.boot, &r));
    ASSERT_OK(rkv_raft_campaign(r));
    ASSERT_TRUE(rkv_raft_has_ready(r));
    ASSERT_OK(rkv_raft_ready(r, &rd));

    ASSERT_TRUE(rd->has_hard_state);
    ASSERT_UINT_EQ(rd->hard_state.term, 2);
    ASSERT_UINT_EQ(rd->hard_state.vote, 1);
    ASSERT_UINT_EQ(rd->n_messages, 0);
    ASSERT_UINT_EQ(rd->n_messages_after_persist, 2);
    for (size_t i = 0; i < rd->n_messages_after_persist; i++) {
        const RkvRaft__Message *msg = rd->messages_after_persist[i];

        ASSERT_UINT_EQ(msg->group_id, 77);
        ASSERT_UINT_EQ(msg->from, 1);
        ASSERT_UINT_EQ(msg->to, i + 2);
        ASSERT_INT_EQ(msg->type, RKV_RAFT__MESSAGE_TYPE__MSG_VOTE);
        ASSERT_UINT_EQ(msg->last_log_index, 13);
    }
    ASSERT_OK(rkv_raft_ack(r, rd->seq));
    ASSERT_INT_EQ(rkv_raft_ack(r, rd->seq + 1), -EINVAL);
    rkv_raft_ready_free(rd);
    rkv_raft_free(r);
}

/* A message addressed to another replica or from itself is rejected. */
TEST(raft_core, step_rejects_misaddressed)
{
    struct fixture fx;
    struct rkv_raft *r;
    RkvRaft__Message msg = RKV_RAFT__MESSAGE__INIT;

    setup(&fx, 1);
    ASSERT_OK(rkv_raft_new(&fx.config, &fx.boot, &r));
    msg.type = RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT;
    msg.from = 2;
    msg.to = 3;
    msg.term = 1;
    ASSERT_INT_EQ(rkv_raft_step(r, &msg), RKV_EMALFORMED);
    msg.to = 1;
    msg.from = 1;
    ASSERT_INT_EQ(rkv_raft_step(r, &msg), RKV_EMALFORMED);
    msg.from = 2;
    msg.type = RKV_RAFT__MESSAGE_TYPE__MSG_NONE;
    ASSERT_INT_EQ(rkv_raft_step(r, &msg), RKV_EMALFORMED);
    rkv_raft_free(r);
}

/* A single-voter group elects itself, commits its no-op only once the
 * batch holding it is acked, and hands it out for apply after that. */
TEST(raft_core, single_voter_commits_after_ack)
{
    struct fixture fx;
    struct rkv_raft *r;
    struct rkv_raft_ready *rd;
    uint64_t index;
    uint64_t term;

    setup(&fx, 1);
    fx.boot.snapshot.conf.n_servers = 1;
    ASSERT_OK(rkv_raft_new(&fx.config, &fx.boot, &r));
    ASSERT_OK(rkv_raft_campaign(r));
    ASSERT_INT_EQ(rkv_raft_role(r), RKV_RAFT_LEADER);
    ASSERT_OK(rkv_raft_propose(r, "abc", 3, &index, &term));
    ASSERT_UINT_EQ(index, 15);
    ASSERT_UINT_EQ(term, 2);

    ASSERT_OK(rkv_raft_ready(r, &rd));
    ASSERT_UINT_EQ(rd->n_entries, 2);
    ASSERT_UINT_EQ(rd->entries[0]->index, 14);
    ASSERT_INT_EQ(rd->entries[0]->type, RKV_RAFT__ENTRY_TYPE__ENTRY_NOOP);
    ASSERT_UINT_EQ(rkv_raft_commit_index(r), 11);
    ASSERT_OK(rkv_raft_ack(r, rd->seq));
    rkv_raft_ready_free(rd);
    ASSERT_UINT_EQ(rkv_raft_commit_index(r), 15);

    ASSERT_OK(rkv_raft_ready(r, &rd));
    ASSERT_UINT_EQ(rd->n_committed, 4);
    ASSERT_UINT_EQ(rd->committed[0]->index, 12);
    ASSERT_MEM_EQ(rd->committed[3]->data.data, rd->committed[3]->data.len,
                  "abc", 3);
    ASSERT_OK(rkv_raft_ack(r, rd->seq));
    rkv_raft_ready_free(rd);
    ASSERT_TRUE(rkv_raft_is_idle(r));

    ASSERT_OK(rkv_raft_compact(r, 15));
    ASSERT_UINT_EQ(rkv_raft_first_index(r), 16);
    ASSERT_INT_EQ(rkv_raft_term_at(r, 12, &term), RKV_ECOMPACTED);
    ASSERT_INT_EQ(rkv_raft_compact(r, 16), -EINVAL);
    rkv_raft_free(r);
}

/* Steps a heartbeat of term 2 from leader 1 into replica 2. */
static void step_heartbeat(struct rkv_raft *r, uint64_t commit,
                           uint64_t read_seq)
{
    RkvRaft__Message msg = RKV_RAFT__MESSAGE__INIT;

    msg.type = RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT;
    msg.from = 1;
    msg.to = 2;
    msg.term = 2;
    msg.commit = commit;
    msg.read_seq = read_seq;
    ASSERT_OK(rkv_raft_step(r, &msg));
}

/* Asserts that msg is replica 2's heartbeat response for round read_seq. */
static void assert_heartbeat_resp(const RkvRaft__Message *msg,
                                  uint64_t read_seq)
{
    ASSERT_INT_EQ(msg->type, RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT_RESP);
    ASSERT_UINT_EQ(msg->from, 2);
    ASSERT_UINT_EQ(msg->to, 1);
    ASSERT_UINT_EQ(msg->term, 2);
    ASSERT_UINT_EQ(msg->read_seq, read_seq);
}

/* Asserts that rd gives the caller nothing to write or sync. */
static void assert_nothing_to_persist(const struct rkv_raft_ready *rd)
{
    ASSERT_FALSE(rd->has_hard_state);
    ASSERT_UINT_EQ(rd->n_entries, 0);
    ASSERT_UINT_EQ(rd->n_chunks, 0);
}

/* A follower's heartbeats with an unchanged commit index (ReadIndex rounds
 * of a read-only load) yield batches with nothing to persist. Their
 * responses wait while the term is not durable, and leave at once after. */
TEST(raft_core, heartbeat_batches_persist_nothing)
{
    struct fixture fx;
    struct rkv_raft *r;
    struct rkv_raft_ready *first;
    struct rkv_raft_ready *rd;

    setup(&fx, 1);
    fx.config.id = 2;
    ASSERT_OK(rkv_raft_new(&fx.config, &fx.boot, &r));

    /* The first heartbeat of term 2 changes the term: persist it. */
    step_heartbeat(r, 11, 0);
    ASSERT_OK(rkv_raft_ready(r, &first));
    ASSERT_TRUE(first->has_hard_state);
    ASSERT_UINT_EQ(first->hard_state.term, 2);
    ASSERT_UINT_EQ(first->hard_state.vote, 0);
    ASSERT_UINT_EQ(first->hard_state.commit, 11);
    ASSERT_UINT_EQ(first->leader_id, 1);
    ASSERT_UINT_EQ(first->n_messages, 0);
    ASSERT_UINT_EQ(first->n_messages_after_persist, 1);
    assert_heartbeat_resp(first->messages_after_persist[0], 0);

    /* While term 2 is being written, the next response waits for it. */
    step_heartbeat(r, 11, 1);
    ASSERT_OK(rkv_raft_ready(r, &rd));
    assert_nothing_to_persist(rd);
    ASSERT_UINT_EQ(rd->n_committed, 0);
    ASSERT_UINT_EQ(rd->n_messages, 0);
    ASSERT_UINT_EQ(rd->n_messages_after_persist, 1);
    assert_heartbeat_resp(rd->messages_after_persist[0], 1);
    ASSERT_OK(rkv_raft_ack(r, rd->seq));
    rkv_raft_ready_free(rd);
    rkv_raft_ready_free(first);
    ASSERT_FALSE(rkv_raft_has_ready(r));

    /* Read rounds with a durable term: nothing to persist, and each
     * response may leave before any write. */
    for (uint64_t read_seq = 2; read_seq <= 4; read_seq++) {
        step_heartbeat(r, 11, read_seq);
        ASSERT_TRUE(rkv_raft_has_ready(r));
        ASSERT_OK(rkv_raft_ready(r, &rd));
        assert_nothing_to_persist(rd);
        ASSERT_FALSE(rd->role_changed);
        ASSERT_UINT_EQ(rd->n_committed, 0);
        ASSERT_UINT_EQ(rd->n_messages_after_persist, 0);
        ASSERT_UINT_EQ(rd->n_messages, 1);
        assert_heartbeat_resp(rd->messages[0], read_seq);
        rkv_raft_ready_free(rd);
    }

    /* A heartbeat that advances the commit index changes the hard state. */
    step_heartbeat(r, 12, 5);
    ASSERT_OK(rkv_raft_ready(r, &rd));
    ASSERT_TRUE(rd->has_hard_state);
    ASSERT_UINT_EQ(rd->hard_state.term, 2);
    ASSERT_UINT_EQ(rd->hard_state.commit, 12);
    ASSERT_UINT_EQ(rd->n_entries, 0);
    ASSERT_UINT_EQ(rd->n_committed, 1);
    ASSERT_UINT_EQ(rd->committed[0]->index, 12);
    ASSERT_UINT_EQ(rd->n_messages, 1);
    assert_heartbeat_resp(rd->messages[0], 5);
    ASSERT_OK(rkv_raft_ack(r, rd->seq));
    rkv_raft_ready_free(rd);
    ASSERT_FALSE(rkv_raft_has_ready(r));
    rkv_raft_free(r);
}

/* Runs one election, proposal and two ready/ack rounds; every call either
 * succeeds or reports -ENOMEM. Returns whether the whole run succeeded. */
static bool alloc_run(struct fixture *fx)
{
    struct rkv_raft *r;
    struct rkv_raft_ready *rd;
    uint64_t index;
    uint64_t term;
    bool completed = false;
    int rv;

    rv = rkv_raft_new(&fx->config, &fx->boot, &r);
    if (rv != 0) {
        ASSERT_INT_EQ(rv, -ENOMEM);
        return false;
    }
    rv = rkv_raft_campaign(r);
    if (rv == 0) {
        rv = rkv_raft_propose(r, "payload", 7, &index, &term);
    }
    for (int round = 0; rv == 0 && round < 2; round++) {
        rv = rkv_raft_ready(r, &rd);
        if (rv == 0) {
            rv = rkv_raft_ack(r, rd->seq);
            rkv_raft_ready_free(rd);
        }
    }
    if (rv == 0) {
        completed = true;
    } else {
        ASSERT_INT_EQ(rv, -ENOMEM);
    }
    rkv_raft_free(r);
    return completed;
}

/* Every allocation the core makes can fail without a crash or a leak
 * (the sanitizer build checks the leaks). */
TEST(raft_core, allocation_failures)
{
    struct fixture fx;
    bool completed = false;
    long n;

    setup(&fx, 1);
    fx.boot.snapshot.conf.n_servers = 1;
    for (n = 0; n < 1000 && !completed; n++) {
        rkv_alloc_fail_after(n);
        completed = alloc_run(&fx);
        rkv_alloc_fail_after(-1);
    }
    ASSERT_TRUE(completed);
    ASSERT_INT_GT(n, 5);
}

/* A failed rkv_raft_ready() hands nothing out, so a retry returns the
 * same work. */
TEST(raft_core, ready_retry_after_failure)
{
    struct fixture fx;
    struct rkv_raft *r;
    struct rkv_raft_ready *rd;

    setup(&fx, 1);
    fx.boot.snapshot.conf.n_servers = 1;
    ASSERT_OK(rkv_raft_new(&fx.config, &fx.boot, &r));
    ASSERT_OK(rkv_raft_campaign(r));
    rkv_alloc_fail_after(1);
    ASSERT_INT_EQ(rkv_raft_ready(r, &rd), -ENOMEM);
    rkv_alloc_fail_after(-1);
    ASSERT_OK(rkv_raft_ready(r, &rd));
    ASSERT_UINT_EQ(rd->n_entries, 1);
    ASSERT_TRUE(rd->has_hard_state);
    ASSERT_TRUE(rd->role_changed);
    ASSERT_INT_EQ(rd->role, RKV_RAFT_LEADER);
    rkv_raft_ready_free(rd);
    rkv_raft_free(r);
}

/* Configurations survive their encoding, and invalid data is rejected. */
TEST(raft_core, conf_encoding)
{
    struct rkv_raft_conf conf = {0};
    struct rkv_raft_conf decoded;
    uint8_t *data;
    size_t len;
    const uint8_t garbage[] = {0xff, 0xff, 0xff};

    conf.n_servers = 2;
    conf.servers[0].id = 3;
    conf.servers[1].id = 9;
    conf.servers[1].learner = true;
    data = rkv_raft_conf_encode(&conf, &len);
    ASSERT_TRUE(data != NULL);
    ASSERT_OK(rkv_raft_conf_decode(data, len, &decoded));
    rkv_free(data);
    ASSERT_UINT_EQ(decoded.n_servers, 2);
    ASSERT_UINT_EQ(decoded.servers[0].id, 3);
    ASSERT_FALSE(decoded.servers[0].learner);
    ASSERT_UINT_EQ(decoded.servers[1].id, 9);
    ASSERT_TRUE(decoded.servers[1].learner);
    ASSERT_INT_EQ(rkv_raft_conf_decode(garbage, sizeof(garbage), &decoded),
                  RKV_EMALFORMED);

    /* A server listed twice is invalid. */
    conf.servers[1].id = 3;
    data = rkv_raft_conf_encode(&conf, &len);
    ASSERT_TRUE(data != NULL);
    ASSERT_INT_EQ(rkv_raft_conf_decode(data, len, &decoded), RKV_EMALFORMED);
    rkv_free(data);
}
