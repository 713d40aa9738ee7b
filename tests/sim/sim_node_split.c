/*
 * Splits, the internal proposals they are made of, leadership transfers
 * and membership changes of the simulated nodes (see sim_node.c for the
 * rest of the glue). Splits run as in node/split.c:
 *   IDLE  -> ALLOC  sim_split_maybe(): ALLOC_RANGE_ID proposed to range 1,
 *                   forwarded to its leader as a PROPOSE message when that
 *                   is another node
 *   ALLOC -> APPLY  split_step_done(): the split proposed to the range
 *   APPLY -> META   split_step_done(): the meta update proposed to range 1
 *                   (skipped for range 1, whose split writes its records)
 *   META  -> IDLE   split_step_done()
 * Any failure returns to IDLE, and the check retries after
 * RKV_SIM_SPLIT_RETRY_MS.
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim_node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* ---- internal proposals and splits -------------------------------------- */

static void split_step_done(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_iprop *p, int rv,
                            uint64_t new_range_id,
                            const struct rkv_range_apply_result *result);

static struct sim_iprop *iprop_new(struct rkv_sim_world *w,
                                   struct sim_node *node, uint64_t range_id,
                                   enum sim_iprop_step step)
{
    struct sim_iprop *p = sim_alloc(sizeof(*p));

    p->id = ++w->next_iprop_id;
    p->range_id = range_id;
    p->step = step;
    p->deadline_ms = w->now_ms + RKV_SIM_IPROP_TIMEOUT_MS;
    p->next = node->iprops;
    node->iprops = p;
    return p;
}

static void iprop_unlink(struct sim_node *node, struct sim_iprop *p)
{
    struct sim_iprop **link = &node->iprops;

    while (*link != p) {
        link = &(*link)->next;
    }
    *link = p->next;
}

/* Completes p (unlinked) and frees it. result is NULL unless p applied
 * on this node. */
static void iprop_finish(struct rkv_sim_world *w, struct sim_node *node,
                         struct sim_iprop *p, int rv, uint64_t new_range_id,
                         const struct rkv_range_apply_result *result)
{
    if (p->step == SIM_IPROP_FOR_PEER) {
        struct sim_msg *msg = sim_msg_new(SIM_MSG_PROPOSE_RESULT,
                                          (unsigned)node->id, p->reply_to);

        msg->iprop_id = p->id;
        msg->rv = rv;
        msg->new_range_id = new_range_id;
        sim_net_send(w, msg);
    } else {
        split_step_done(w, node, p, rv, new_range_id, result);
    }
    rkv_free(p);
}

/* Proposes cmd to range_id on its leader, here or on another node. */
static int iprop_submit(struct rkv_sim_world *w, struct sim_node *node,
                        uint64_t range_id, const uint8_t *cmd, size_t len,
                        enum sim_iprop_step step, uint64_t origin_range_id)
{
    struct sim_replica *r = sim_replica_find(node, range_id);
    struct sim_iprop *p;
    struct sim_msg *msg;
    int rv;

    if (r == NULL) {
        return RKV_ERANGENOTFOUND;
    }
    if (r->role != RKV_RAFT_LEADER &&
        (r->leader_id == 0 || r->leader_id == node->id)) {
        return RKV_EUNAVAILABLE;
    }
    p = iprop_new(w, node, range_id, step);
    p->origin_range_id = origin_range_id;
    if (r->role == RKV_RAFT_LEADER) {
        rv = rkv_raft_propose(r->raft, cmd, len, &p->index, &p->term);
        if (rv != 0) {
            iprop_unlink(node, p);
            rkv_free(p);
            return rv;
        }
        p->local = true;
        return 0;
    }
    msg = sim_msg_new(SIM_MSG_PROPOSE, (unsigned)node->id,
                      (unsigned)r->leader_id);
    msg->range_id = range_id;
    msg->iprop_id = p->id;
    msg->data = rkv_memdup(cmd, len);
    if (msg->data == NULL) {
        sim_fatal("copying a proposal", -ENOMEM);
    }
    msg->data_len = len;
    sim_net_send(w, msg);
    return 0;
}

/* Matches an applied entry against this node's local internal proposals. */
void sim_iprops_applied(struct rkv_sim_world *w, struct sim_node *node,
                           struct sim_replica *r, uint64_t index,
                           uint64_t term,
                           const struct rkv_range_apply_result *result)
{
    struct sim_iprop **link = &node->iprops;

    while (*link != NULL) {
        struct sim_iprop *p = *link;

        if (!p->local || p->range_id != r->range_id || p->index > index) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        if (p->index == index && p->term == term) {
            iprop_finish(w, node, p, result->rv, result->new_range_id,
                         result);
        } else {
            iprop_finish(w, node, p, RKV_EDROPPED, 0, NULL);
        }
        /* A finish may add or remove proposals; walk again. */
        link = &node->iprops;
    }
}

void sim_iprops_expire(struct rkv_sim_world *w, struct sim_node *node)
{
    struct sim_iprop **link = &node->iprops;

    while (*link != NULL) {
        struct sim_iprop *p = *link;

        if (p->deadline_ms > w->now_ms) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        iprop_finish(w, node, p, RKV_ETIMEOUT, 0, NULL);
        link = &node->iprops;
    }
}

static void split_reset(struct rkv_sim_world *w, struct sim_replica *r)
{
    r->split_state = SIM_SPLIT_IDLE;
    r->split_retry_ms = w->now_ms + RKV_SIM_SPLIT_RETRY_MS;
}

static void split_propose_meta(struct rkv_sim_world *w, struct sim_node *node,
                               struct sim_replica *r,
                               const struct rkv_range_apply_result *result)
{
    uint8_t *cmd;
    size_t len;
    int rv;

    if (r->range_id == RKV_RANGE_ID_FIRST) {
        r->split_state = SIM_SPLIT_IDLE; /* range 1 wrote its own records */
        return;
    }
    rv = rkv_range_encode_meta_update(&result->desc, &result->right, &cmd,
                                      &len);
    if (rv != 0) {
        sim_fatal("encoding a meta update", rv);
    }
    rv = iprop_submit(w, node, RKV_RANGE_ID_FIRST, cmd, len, SIM_IPROP_META,
                      r->range_id);
    rkv_free(cmd);
    /* A stale meta record only costs clients a RKV_EKEYMISMATCH round
     * trip, so a failed update is not retried (as in node/split.c). */
    r->split_state = rv == 0 ? SIM_SPLIT_META : SIM_SPLIT_IDLE;
}

static void split_propose_split(struct rkv_sim_world *w,
                                struct sim_node *node, struct sim_replica *r,
                                uint64_t new_range_id)
{
    uint8_t *cmd;
    size_t len;
    int rv;

    rv = rkv_range_encode_split(node->store, &r->desc, r->split_key,
                                r->split_key_len, new_range_id, &cmd, &len,
                                NULL);
    if (rv != 0) {
        split_reset(w, r);
        return;
    }
    r->split_state = SIM_SPLIT_APPLY;
    rv = iprop_submit(w, node, r->range_id, cmd, len, SIM_IPROP_SPLIT,
                      r->range_id);
    rkv_free(cmd);
    if (rv != 0) {
        split_reset(w, r);
    }
}

static void split_step_done(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_iprop *p, int rv,
                            uint64_t new_range_id,
                            const struct rkv_range_apply_result *result)
{
    struct sim_replica *r = sim_replica_find(node, p->origin_range_id);

    if (r == NULL) {
        return;
    }
    switch (p->step) {
    case SIM_IPROP_ALLOC:
        if (r->split_state != SIM_SPLIT_ALLOC) {
            return;
        }
        if (rv != 0 || r->role != RKV_RAFT_LEADER) {
            split_reset(w, r);
            return;
        }
        split_propose_split(w, node, r, new_range_id);
        return;
    case SIM_IPROP_SPLIT:
        if (r->split_state != SIM_SPLIT_APPLY) {
            return;
        }
        if (rv != 0 || result == NULL) {
            split_reset(w, r);
            return;
        }
        split_propose_meta(w, node, r, result);
        return;
    case SIM_IPROP_META:
        if (r->split_state == SIM_SPLIT_META) {
            r->split_state = SIM_SPLIT_IDLE;
        }
        return;
    case SIM_IPROP_FOR_PEER:
        break;
    }
}

/* Returns whether every node is a voter of r's group. Splits wait for it:
 * a node missing from the group would have no right-hand replica, and
 * adding it later needs a snapshot, which the simulator does not send. */
bool sim_replica_has_every_voter(struct rkv_sim_world *w,
                                    struct sim_replica *r)
{
    struct rkv_raft_conf conf;

    rkv_raft_conf_get(r->raft, &conf);
    if (conf.n_servers != w->options.n_nodes) {
        return false;
    }
    for (unsigned i = 0; i < conf.n_servers; i++) {
        if (conf.servers[i].learner) {
            return false;
        }
    }
    return true;
}

/* Starts a split of r when it leads and has grown past the threshold. */
void sim_split_maybe(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r)
{
    struct rkv_range_rtxn *rtxn;
    uint8_t *cmd;
    size_t len;
    int rv;

    if (r->role != RKV_RAFT_LEADER || !r->initialized ||
        r->split_state != SIM_SPLIT_IDLE || w->now_ms < r->split_retry_ms ||
        !rkv_range_should_split(node->store, &r->stats) ||
        !sim_replica_has_every_voter(w, r)) {
        return;
    }
    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        sim_fatal("beginning a read transaction", rv);
    }
    rv = rkv_range_pick_split_key(rtxn, r->range_id, r->split_key,
                                  &r->split_key_len);
    rkv_range_rtxn_end(rtxn);
    if (rv != 0) {
        split_reset(w, r);
        return;
    }
    rv = rkv_range_encode_alloc_range_id(&cmd, &len);
    if (rv != 0) {
        sim_fatal("encoding a range id allocation", rv);
    }
    r->split_state = SIM_SPLIT_ALLOC;
    rv = iprop_submit(w, node, RKV_RANGE_ID_FIRST, cmd, len, SIM_IPROP_ALLOC,
                      r->range_id);
    rkv_free(cmd);
    if (rv != 0) {
        split_reset(w, r);
    }
}

/* A committed split applied here: creates the right-hand replica. */
void sim_split_applied(struct rkv_sim_world *w, struct sim_node *node,
                          struct sim_replica *r,
                          const struct rkv_range_apply_result *result)
{
    struct sim_replica *right;
    struct rkv_range_state state;
    int rv;

    r->desc = result->desc;
    sim_trace(w, "split node=%llu range=%llu right=%llu",
              (unsigned long long)node->id, (unsigned long long)r->range_id,
              (unsigned long long)result->right.range_id);
    right = sim_replica_find(node, result->right.range_id);
    if (right != NULL) {
        /* An uninitialized replica: the split initialized its records, so
         * its core restarts from them (range.h). */
        right->needs_restart = true;
        return;
    }
    rv = rkv_range_state_load(node->store, result->right.range_id, &state);
    if (rv == 0) {
        rv = sim_replica_open(w, node, &state, &right);
    }
    if (rv != 0) {
        sim_fatal("creating a right-hand replica", rv);
    }
    /* The left leader campaigns at once for the right range, as node/
     * does, so leadership stays where the load was. */
    if (r->role == RKV_RAFT_LEADER) {
        rkv_raft_campaign(right->raft);
    }
}

void sim_receive_propose(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_msg *msg)
{
    struct sim_replica *r = sim_replica_find(node, msg->range_id);
    struct sim_iprop *p;
    struct sim_msg *reply;
    int rv = RKV_ENOTLEADER;

    if (r != NULL && r->role == RKV_RAFT_LEADER) {
        p = iprop_new(w, node, msg->range_id, SIM_IPROP_FOR_PEER);
        /* Reply under the requester's id. */
        p->id = msg->iprop_id;
        p->reply_to = msg->from;
        p->local = true;
        rv = rkv_raft_propose(r->raft, msg->data, msg->data_len, &p->index,
                              &p->term);
        if (rv == 0) {
            return;
        }
        iprop_unlink(node, p);
        rkv_free(p);
    }
    reply = sim_msg_new(SIM_MSG_PROPOSE_RESULT, (unsigned)node->id, msg->from);
    reply->iprop_id = msg->iprop_id;
    reply->rv = rv;
    sim_net_send(w, reply);
}

void sim_receive_propose_result(struct rkv_sim_world *w,
                                   struct sim_node *node,
                                   const struct sim_msg *msg)
{
    for (struct sim_iprop *p = node->iprops; p != NULL; p = p->next) {
        if (!p->local && p->id == msg->iprop_id) {
            iprop_unlink(node, p);
            iprop_finish(w, node, p, msg->rv, msg->new_range_id, NULL);
            return;
        }
    }
}

bool sim_node_transfer_some(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *node = w->nodes[i];
    struct sim_replica *chosen = NULL;
    unsigned n_leading = 0;
    uint64_t to;

    if (!w->up[i]) {
        return false;
    }
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (r->role == RKV_RAFT_LEADER) {
            n_leading++;
            if (rkv_sim_prng_below(&w->prng, n_leading) == 0) {
                chosen = r;
            }
        }
    }
    if (chosen == NULL || w->options.n_nodes < 2) {
        return false;
    }
    do {
        to = rkv_sim_prng_between(&w->prng, 1, w->options.n_nodes);
    } while (to == node->id);
    if (rkv_raft_transfer_leadership(chosen->raft, to) != 0) {
        return false;
    }
    sim_trace(w, "transfer leadership range=%llu from=%llu to=%llu",
              (unsigned long long)chosen->range_id,
              (unsigned long long)node->id, (unsigned long long)to);
    return true;
}

/* Picks the next membership step for a group with configuration conf:
 * promote a learner, add a missing node as a learner, or (unless
 * restoring) remove a voter while at least three are left. Returns false
 * when there is nothing to do. */
static bool membership_choose(struct rkv_sim_world *w,
                              const struct rkv_raft_conf *conf, bool restore,
                              enum rkv_raft_conf_change *change,
                              uint64_t *server_id)
{
    bool member[RKV_SIM_NODES_MAX + 1] = {false};

    for (unsigned i = 0; i < conf->n_servers; i++) {
        if (conf->servers[i].learner) {
            *change = RKV_RAFT_PROMOTE;
            *server_id = conf->servers[i].id;
            return true;
        }
        if (conf->servers[i].id <= RKV_SIM_NODES_MAX) {
            member[conf->servers[i].id] = true;
        }
    }
    for (uint64_t id = 1; id <= w->options.n_nodes; id++) {
        if (!member[id]) {
            *change = RKV_RAFT_ADD_LEARNER;
            *server_id = id;
            return true;
        }
    }
    if (restore || conf->n_servers < 3) {
        return false;
    }
    *change = RKV_RAFT_REMOVE;
    *server_id = conf->servers[rkv_sim_prng_below(&w->prng, conf->n_servers)]
                     .id;
    return true;
}

bool sim_node_change_membership(struct rkv_sim_world *w, unsigned i,
                                bool restore)
{
    static const char *const names[] = {"add-learner", "promote", "remove"};
    struct rkv_raft_conf conf;
    enum rkv_raft_conf_change change;
    uint64_t server_id;
    uint64_t index;
    uint64_t term;
    bool changed = false;

    if (!w->up[i]) {
        return false;
    }
    for (struct sim_replica *r = w->nodes[i]->replicas; r != NULL;
         r = r->next) {
        if (r->role != RKV_RAFT_LEADER) {
            continue;
        }
        rkv_raft_conf_get(r->raft, &conf);
        if (!membership_choose(w, &conf, restore, &change, &server_id)) {
            continue;
        }
        if (rkv_raft_propose_conf_change(r->raft, change, server_id, &index,
                                         &term) != 0) {
            continue;
        }
        sim_trace(w, "membership %s range=%llu server=%llu index=%llu",
                  names[change], (unsigned long long)r->range_id,
                  (unsigned long long)server_id, (unsigned long long)index);
        changed = true;
        if (!restore) {
            break; /* one change per fault */
        }
    }
    return changed;
}
