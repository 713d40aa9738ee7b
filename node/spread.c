/*
 * Leadership spread: every node that leads more than its share of the
 * ranges transfers some leaderships to other voters (see
 * rkv_node__spread_leadership()). A node that rejects writes for lack of
 * space has a share of zero, and no leadership goes to it, so that its
 * ranges keep taking writes on the nodes that have space.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

/* Returns whether node_id is a connected voter of r's range with space for
 * writes. */
static bool spread_target_ok(struct rkv_node *node,
                             const struct rkv_node__replica *r,
                             uint64_t node_id)
{
    for (size_t i = 0; i < r->desc.n_replicas; i++) {
        const struct rkv_range_replica *rep = &r->desc.replicas[i];

        if (rep->node_id == node_id && !rep->learner) {
            return node->peers[node_id - 1].connected &&
                   !node->peers[node_id - 1].writes_blocked;
        }
    }
    return false;
}

/* Leadership spread: a node leading more than its share of ranges hands
 * some to other voters. Leaders, and with them the write load, then do not
 * pile up on the node that won the elections or drove the splits. It runs
 * every RKV_NODE_SPREAD_INTERVAL_MS and moves at most
 * RKV_NODE_SPREAD_MOVES_MAX ranges per run, so leadership moves gradually
 * and the nodes converge without coordination. */
void rkv_node__spread_leadership(struct rkv_node *node)
{
    size_t n_leaders = 0;
    size_t share;
    size_t n_moves = 0;
    uint64_t next_target = node->spread_next_target;

    for (size_t i = 0; i < node->n_buckets; i++) {
        for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
             r = r->hash_next) {
            n_leaders += r->role == RKV_RAFT_LEADER;
        }
    }
    /* Every member has a replica of every range, so each one's fair share
     * is the range count over the member count, rounded up. */
    share = (node->n_replicas + node->n_peers - 1) / node->n_peers;
    if (rkv_node__writes_blocked(node) != 0) {
        share = 0;
    }
    if (n_leaders <= share) {
        return;
    }
    for (size_t i = 0; i < node->n_buckets && n_moves < n_leaders - share &&
                       n_moves < RKV_NODE_SPREAD_MOVES_MAX;
         i++) {
        for (struct rkv_node__replica *r = node->buckets[i];
             r != NULL && n_moves < n_leaders - share; r = r->hash_next) {
            uint64_t to;

            if (r->role != RKV_RAFT_LEADER ||
                r->split_state != RKV_NODE_SPLIT_IDLE || !r->initialized) {
                continue;
            }
            next_target = next_target % node->n_peers + 1;
            to = next_target;
            if (to == node->node_id) {
                next_target = next_target % node->n_peers + 1;
                to = next_target;
            }
            if (to == node->node_id || !spread_target_ok(node, r, to)) {
                continue;
            }
            if (rkv_node__transfer_leadership(r, to) == 0) {
                RKV_LOG(RKV_INFO,
                        "spreading leadership range=%llu to=%llu leaders=%zu "
                        "share=%zu",
                        (unsigned long long)r->range_id, (unsigned long long)to,
                        n_leaders, share);
                n_moves++;
            }
        }
    }
    node->spread_next_target = next_target;
}
