/*
 * Leader election: randomized timeouts, the pre-vote round, vote handling,
 * the leader lease that makes voters ignore disruptive candidates, and
 * leadership transfer.
 *
 * Invariants:
 *   1. A replica grants at most one vote per term, and only to a candidate
 *      whose log is at least as up to date as its own (thesis 3.6.1).
 *   2. The term and vote a grant or a candidacy depends on are persisted
 *      before the message leaves: vote messages always go on the
 *      messages_after_persist list.
 *   3. Pre-vote never changes the term of the candidate or of the voters
 *      (thesis 9.6), so a partitioned replica cannot inflate terms.
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

void rkv_raft__reset_election_timer(struct rkv_raft *r)
{
    unsigned base = r->config.election_ticks;

    r->election_elapsed = 0;
    /* Thesis 3.4: a timeout drawn from [T, 2T) makes split votes rare. */
    r->election_timeout = base + (unsigned)(rkv_raft__random(r) % base);
}

/*
 * Thesis 4.2.3: a replica that heard from a leader less than one election
 * timeout ago keeps that leader and ignores vote requests. On a follower
 * with leader_id set, election_elapsed counts the ticks since that leader
 * was last heard. Every other reset of the timer either clears leader_id
 * (a campaign, a step-down) or grants a repeated vote to that same leader,
 * and a replica that may not campaign never restarts its expired timer
 * (rkv_raft__tick_election).
 */
bool rkv_raft__in_lease(const struct rkv_raft *r)
{
    if (!r->config.check_quorum || r->leader_id == 0) {
        return false;
    }
    if (r->role == RKV_RAFT_LEADER) {
        return true;
    }
    return r->election_elapsed < r->config.election_ticks;
}

static void set_role(struct rkv_raft *r, enum rkv_raft_role role,
                     uint64_t leader_id)
{
    if (r->role != role || r->leader_id != leader_id) {
        r->role_changed = true;
    }
    r->role = role;
    r->leader_id = leader_id;
}

static void leader_state_clear(struct rkv_raft *r)
{
    rkv_raft__progress_free(r);
    r->transfer_to = 0;
    r->transfer_elapsed = 0;
    rkv_free(r->reads);
    r->reads = NULL;
    r->n_reads = 0;
    r->cap_reads = 0;
}

void rkv_raft__become_follower(struct rkv_raft *r, uint64_t term,
                               uint64_t leader_id)
{
    assert(term >= r->term);

    if (r->role == RKV_RAFT_LEADER) {
        RKV_LOG(RKV_INFO, "stepped down range=%llu id=%llu term=%llu",
                (unsigned long long)r->config.group_id,
                (unsigned long long)r->config.id,
                (unsigned long long)term);
    }
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
    }
    leader_state_clear(r);
    set_role(r, RKV_RAFT_FOLLOWER, leader_id);
    rkv_raft__reset_election_timer(r);
}

void rkv_raft__adopt_term(struct rkv_raft *r, uint64_t term)
{
    assert(r->role == RKV_RAFT_FOLLOWER);
    assert(term > r->term);

    r->term = term;
    r->vote = 0;
    set_role(r, RKV_RAFT_FOLLOWER, 0);
}

int rkv_raft__become_leader(struct rkv_raft *r)
{
    int rv;

    assert(r->role == RKV_RAFT_CANDIDATE);

    set_role(r, RKV_RAFT_LEADER, r->config.id);
    r->heartbeat_elapsed = 0;
    r->election_elapsed = 0;
    r->read_seq = 0;
    r->uncommitted_bytes = 0;
    rv = rkv_raft__progress_reset(r);
    if (rv != 0) {
        return rv;
    }
    RKV_LOG(RKV_INFO, "became leader range=%llu id=%llu term=%llu last=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id, (unsigned long long)r->term,
            (unsigned long long)rkv_raft__last_index(r));

    /* Thesis 6.4 and 3.6.2: a no-op of the new term lets the leader commit
     * the entries of earlier terms and learn its commit index. */
    rv = rkv_raft__log_append(r, r->term, RKV_RAFT__ENTRY_TYPE__ENTRY_NOOP,
                              NULL, 0);
    if (rv != 0) {
        return rv;
    }
    return rkv_raft__broadcast_append(r);
}

static void votes_reset(struct rkv_raft *r)
{
    r->n_votes_granted = 0;
    r->n_votes_rejected = 0;
    r->n_votes_from = 0;
}

/* Records one vote response; returns false for a duplicate. */
static bool votes_record(struct rkv_raft *r, uint64_t from, bool granted)
{
    for (unsigned i = 0; i < r->n_votes_from; i++) {
        if (r->votes_from[i] == from) {
            return false;
        }
    }
    assert(r->n_votes_from < RKV_RAFT_MAX_SERVERS);
    r->votes_from[r->n_votes_from++] = from;
    if (granted) {
        r->n_votes_granted++;
    } else {
        r->n_votes_rejected++;
    }
    return true;
}

/* Acts on the tally: a granted quorum moves on, a rejecting one gives up. */
static int votes_tally(struct rkv_raft *r)
{
    unsigned quorum = rkv_raft__n_voters(&r->conf) / 2 + 1;

    if (r->n_votes_granted >= quorum) {
        if (r->role == RKV_RAFT_PRE_CANDIDATE) {
            return rkv_raft__campaign(r, false, false);
        }
        return rkv_raft__become_leader(r);
    }
    if (r->n_votes_rejected >= quorum) {
        rkv_raft__become_follower(r, r->term, 0);
    }
    return 0;
}

static int campaign_send(struct rkv_raft *r, bool pre_vote, bool transfer)
{
    RkvRaft__MessageType type = pre_vote
                                    ? RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE
                                    : RKV_RAFT__MESSAGE_TYPE__MSG_VOTE;
    int rv;

    for (unsigned i = 0; i < r->conf.n_servers; i++) {
        const struct rkv_raft_server *server = &r->conf.servers[i];
        RkvRaft__Message *msg;

        if (server->learner || server->id == r->config.id) {
            continue;
        }
        msg = rkv_raft__msg_new(r, type, server->id);
        if (msg == NULL) {
            return -ENOMEM;
        }
        msg->term = pre_vote ? r->term + 1 : r->term;
        msg->last_log_index = rkv_raft__last_index(r);
        msg->last_log_term = rkv_raft__last_term(r);
        msg->transfer = transfer;
        rv = rkv_raft__send(r, msg);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int rkv_raft__campaign(struct rkv_raft *r, bool pre_vote, bool transfer)
{
    int rv;

    assert(rkv_raft__may_campaign(r));

    leader_state_clear(r);
    if (pre_vote) {
        set_role(r, RKV_RAFT_PRE_CANDIDATE, 0);
    } else {
        r->term++;
        r->vote = r->config.id;
        set_role(r, RKV_RAFT_CANDIDATE, 0);
        RKV_LOG(RKV_DEBUG, "campaigning range=%llu id=%llu term=%llu",
                (unsigned long long)r->config.group_id,
                (unsigned long long)r->config.id,
                (unsigned long long)r->term);
    }
    rkv_raft__reset_election_timer(r);
    votes_reset(r);
    if (rkv_raft__is_voter(&r->conf, r->config.id)) {
        votes_record(r, r->config.id, true);
    }
    rv = campaign_send(r, pre_vote, transfer);
    if (rv != 0) {
        return rv;
    }
    return votes_tally(r);
}

int rkv_raft__tick_election(struct rkv_raft *r)
{
    /* The count stops at the timeout, so it cannot wrap on a replica that
     * stays passive for years. */
    if (r->election_elapsed < r->election_timeout) {
        r->election_elapsed++;
    }
    if (r->election_elapsed < r->election_timeout) {
        return 0;
    }
    /* A replica that may not campaign (a learner, or an empty placeholder
     * configuration) leaves its timer expired instead of restarting it,
     * as tickElection in etcd raft (raft.go) does. Restarting it would
     * renew its lease on a leader it no longer hears, and it would then
     * ignore the votes of the replicas that must replace that leader. */
    if (!rkv_raft__may_campaign(r)) {
        return 0;
    }
    return rkv_raft__campaign(r, r->config.pre_vote, false);
}

static bool log_is_up_to_date(const struct rkv_raft *r, uint64_t last_index,
                              uint64_t last_term)
{
    uint64_t our_term = rkv_raft__last_term(r);

    return last_term > our_term ||
           (last_term == our_term && last_index >= rkv_raft__last_index(r));
}

int rkv_raft__step_vote(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    bool pre_vote = msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE;
    bool up_to_date =
        log_is_up_to_date(r, msg->last_log_index, msg->last_log_term);
    bool granted;
    RkvRaft__Message *resp;

    if (pre_vote) {
        /* A pre-vote is granted as the real vote would be, had the
         * candidate already raised its term (thesis 9.6). */
        granted = msg->term > r->term && up_to_date;
    } else {
        bool free_to_vote = r->vote == msg->from ||
                            (r->vote == 0 && r->leader_id == 0);

        granted = free_to_vote && up_to_date;
        if (granted) {
            r->vote = msg->from;
            rkv_raft__reset_election_timer(r);
        }
    }
    resp = rkv_raft__msg_new(r,
                             pre_vote
                                 ? RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE_RESP
                                 : RKV_RAFT__MESSAGE_TYPE__MSG_VOTE_RESP,
                             msg->from);
    if (resp == NULL) {
        return -ENOMEM;
    }
    if (granted && pre_vote) {
        resp->term = msg->term;
    }
    resp->reject = !granted;
    return rkv_raft__send(r, resp);
}

int rkv_raft__step_vote_resp(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    bool pre_vote = msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE_RESP;

    if (pre_vote) {
        if (r->role != RKV_RAFT_PRE_CANDIDATE) {
            return 0;
        }
        if (!msg->reject && msg->term != r->term + 1) {
            return 0;
        }
    } else if (r->role != RKV_RAFT_CANDIDATE || msg->term != r->term) {
        return 0;
    }
    if (!rkv_raft__is_voter(&r->conf, msg->from)) {
        return 0;
    }
    if (!votes_record(r, msg->from, !msg->reject)) {
        return 0;
    }
    return votes_tally(r);
}

int rkv_raft__step_timeout_now(struct rkv_raft *r,
                               const RkvRaft__Message *msg)
{
    assert(msg->term == r->term);

    if (r->role == RKV_RAFT_LEADER || !rkv_raft__may_campaign(r)) {
        return 0;
    }
    RKV_LOG(RKV_INFO,
            "campaigning for transfer range=%llu id=%llu from=%llu term=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id,
            (unsigned long long)msg->from, (unsigned long long)r->term);
    /* Thesis 3.10: the target starts a real election at once, without a
     * pre-vote round, and voters set aside their lease for it. */
    return rkv_raft__campaign(r, false, true);
}

int rkv_raft__send_timeout_now(struct rkv_raft *r, uint64_t to)
{
    RkvRaft__Message *msg;

    msg = rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_TIMEOUT_NOW, to);
    if (msg == NULL) {
        return -ENOMEM;
    }
    return rkv_raft__send(r, msg);
}

int rkv_raft_transfer_leadership(struct rkv_raft *r, uint64_t to)
{
    struct rkv_raft_progress *pr;
    int rv;

    if (r->role != RKV_RAFT_LEADER) {
        return RKV_ENOTLEADER;
    }
    if (r->transfer_to != 0) {
        return RKV_EBUSY;
    }
    if (to == r->config.id || !rkv_raft__is_voter(&r->conf, to)) {
        return -EINVAL;
    }
    pr = rkv_raft__progress(r, to);
    assert(pr != NULL);
    if (pr->match_index == rkv_raft__last_index(r)) {
        rv = rkv_raft__send_timeout_now(r, to);
    } else {
        rv = rkv_raft__send_append(r, pr);
    }
    if (rv != 0) {
        return rv;
    }
    r->transfer_to = to;
    r->transfer_elapsed = 0;
    RKV_LOG(RKV_INFO, "transferring leadership range=%llu id=%llu to=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id, (unsigned long long)to);
    return 0;
}
