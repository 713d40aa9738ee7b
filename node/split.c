/*
 * Splits, driven by the leader of the range, and the internal proposals
 * they are made of.
 *
 * A split of range R at key K runs through these states (R's replica):
 *   IDLE  -> ALLOC  split_begin(): propose ALLOC_RANGE_ID to range 1 (on
 *                   whichever node leads it) for a new range id
 *   ALLOC -> APPLY  split_alloc_cb(): propose the split of R's current
 *                   descriptor at K with that id to R
 *   APPLY -> META   split_apply_cb(): the split applied; propose the meta
 *                   records of both sides to range 1 (skipped when R is
 *                   range 1, whose split writes them itself)
 *   META  -> IDLE   split_meta_cb()
 * Any failure (leadership lost, a stale generation, a timeout) returns to
 * IDLE and the automatic check retries after RKV_NODE_SPLIT_RETRY_MS. A
 * range id allocated by an abandoned attempt is never used, which is
 * harmless.
 *
 * Meta repair: a meta update can fail after its split applied (range 1
 * busy, its leader changed, the proposing leader crashed), and no later
 * step would rewrite that record. So every leader checks its own record in
 * this node's copy of range 1 from the tick loop: soon after it takes
 * office, every RKV_NODE_META_AUDIT_MS after that, and every
 * RKV_NODE_META_CHECK_MS while a failed update is pending. A missing or
 * older record is proposed again (IDLE -> META -> IDLE,
 * split_meta_repair()). Duplicates are harmless: range 1 applies a record
 * only over a lower generation.
 *
 * Every replica, leader or not, creates the right-hand range's replica when
 * it applies the split entry (rkv_node__split_applied()); Raft messages for
 * it that arrive earlier are dropped by the transport and resent.
 *
 * Internal proposals (struct rkv_node__iprop) are proposed locally when this
 * node leads the target range. Otherwise they are sent to the leader as a
 * Propose frame, and its ProposeResult completes them. Each waits at most
 * RKV_NODE_SPLIT_TIMEOUT_MS; its callback runs exactly once.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Wait after a failed or skipped split before checking again. */
#define RKV_NODE_SPLIT_RETRY_MS 1000
/* Wait between two checks of one range's meta record by its leader while
 * an update is pending, and between two routine checks. */
#define RKV_NODE_META_CHECK_MS 2000
#define RKV_NODE_META_AUDIT_MS 10000

/* Returns true for the first N meta updates after a split when the
 * environment sets RKV_TEST_FAIL_META_UPDATES=N, so that tests reach the
 * repair path. The count is per process. */
static bool split_meta_fault(void)
{
    static long remaining = -1;

    if (remaining < 0) {
        const char *env = getenv("RKV_TEST_FAIL_META_UPDATES");

        remaining = env != NULL ? strtol(env, NULL, 10) : 0;
        if (remaining < 0) {
            remaining = 0;
        }
    }
    if (remaining == 0) {
        return false;
    }
    remaining--;
    return true;
}

/* ---- internal proposals ------------------------------------------------- */

static void iprop_unlink(struct rkv_node *node, struct rkv_node__iprop *p)
{
    struct rkv_node__iprop **link = &node->iprops;

    while (*link != p) {
        link = &(*link)->next;
    }
    *link = p->next;
}

/* Completes p with rv and result, then frees it. p must be unlinked. */
static void iprop_finish(struct rkv_node *node, struct rkv_node__iprop *p,
                         int rv, const struct rkv_range_apply_result *result)
{
    if (p->cb != NULL) {
        p->cb(p->data, rv, rv == 0 ? result : NULL);
    } else {
        Rkv__Peer__ProposeResult reply = RKV__PEER__PROPOSE_RESULT__INIT;

        reply.request_id = p->peer_request_id;
        reply.error = rv;
        if (rv == 0 && result != NULL) {
            reply.error = result->rv;
            reply.has_new_range_id = true;
            reply.new_range_id = result->new_range_id;
        }
        rkv_node__send_propose_result(node, p->from_node_id, &reply);
    }
    rkv_free(p);
}

static struct rkv_node__iprop *iprop_new(struct rkv_node *node,
                                         uint64_t range_id)
{
    struct rkv_node__iprop *p = rkv_calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    p->range_id = range_id;
    p->deadline_ms = rkv_node__now_ms(node) + RKV_NODE_SPLIT_TIMEOUT_MS;
    p->next = node->iprops;
    node->iprops = p;
    return p;
}

int rkv_node__iprop_submit(struct rkv_node *node, uint64_t range_id,
                           const uint8_t *command, size_t command_len,
                           rkv_node__propose_cb cb, void *data)
{
    struct rkv_node__replica *r = rkv_node__replica_find(node, range_id);
    Rkv__Peer__Propose propose = RKV__PEER__PROPOSE__INIT;
    struct rkv_node__iprop *p;
    int rv;

    if (r == NULL) {
        return RKV_ERANGENOTFOUND;
    }
    if (r->role != RKV_RAFT_LEADER &&
        (r->leader_id == 0 || r->leader_id == node->node_id)) {
        return RKV_EUNAVAILABLE;
    }
    p = iprop_new(node, range_id);
    if (p == NULL) {
        return -ENOMEM;
    }
    p->cb = cb;
    p->data = data;
    if (r->role == RKV_RAFT_LEADER) {
        rv = rkv_node__propose(r, command, command_len, &p->index, &p->term);
    } else {
        p->id = node->next_iprop_id++;
        propose.request_id = p->id;
        propose.range_id = range_id;
        propose.command.data = (uint8_t *)command;
        propose.command.len = command_len;
        rv = rkv_node__send_propose(node, r->leader_id, &propose);
    }
    if (rv != 0) {
        iprop_unlink(node, p);
        rkv_free(p);
        return rv;
    }
    return 0;
}

void rkv_node__iprop_applied(struct rkv_node__replica *replica, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result)
{
    struct rkv_node *node = replica->node;
    struct rkv_node__iprop **link = &node->iprops;

    while (*link != NULL) {
        struct rkv_node__iprop *p = *link;

        if (p->id != 0 || p->range_id != replica->range_id ||
            p->index > index) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        if (p->index == index && p->term == term) {
            iprop_finish(node, p, 0, result);
        } else {
            iprop_finish(node, p, RKV_EDROPPED, NULL);
        }
    }
}

void rkv_node__iprop_recv(struct rkv_node *node, uint64_t from_node_id,
                          const Rkv__Peer__Propose *propose)
{
    struct rkv_node__replica *r =
        rkv_node__replica_find(node, propose->range_id);
    Rkv__Peer__ProposeResult reply = RKV__PEER__PROPOSE_RESULT__INIT;
    struct rkv_node__iprop *p;
    int rv;

    reply.request_id = propose->request_id;
    if (r == NULL || r->role != RKV_RAFT_LEADER) {
        reply.error = r == NULL ? RKV_ERANGENOTFOUND : RKV_ENOTLEADER;
        rkv_node__send_propose_result(node, from_node_id, &reply);
        return;
    }
    p = iprop_new(node, propose->range_id);
    if (p == NULL) {
        reply.error = -ENOMEM;
        rkv_node__send_propose_result(node, from_node_id, &reply);
        return;
    }
    p->from_node_id = from_node_id;
    p->peer_request_id = propose->request_id;
    rv = rkv_node__propose(r, propose->command.data, propose->command.len,
                           &p->index, &p->term);
    if (rv != 0) {
        iprop_unlink(node, p);
        rkv_free(p);
        reply.error = rv;
        rkv_node__send_propose_result(node, from_node_id, &reply);
    }
}

void rkv_node__iprop_recv_result(struct rkv_node *node,
                                 const Rkv__Peer__ProposeResult *result)
{
    struct rkv_range_apply_result applied;
    struct rkv_node__iprop **link = &node->iprops;

    while (*link != NULL && (*link)->id != result->request_id) {
        link = &(*link)->next;
    }
    if (*link == NULL) {
        return; /* timed out already */
    }
    {
        struct rkv_node__iprop *p = *link;

        *link = p->next;
        memset(&applied, 0, sizeof(applied));
        applied.kind = RKV_RANGE_CMD_ALLOC_RANGE_ID;
        applied.rv = result->error;
        applied.new_range_id = result->new_range_id;
        iprop_finish(node, p, result->error, &applied);
    }
}

void rkv_node__iprops_expire(struct rkv_node *node, uint64_t now_ms)
{
    struct rkv_node__iprop **link = &node->iprops;

    while (*link != NULL) {
        struct rkv_node__iprop *p = *link;

        if (p->deadline_ms > now_ms) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        iprop_finish(node, p, RKV_ETIMEOUT, NULL);
    }
}

void rkv_node__iprops_free(struct rkv_node *node)
{
    while (node->iprops != NULL) {
        struct rkv_node__iprop *p = node->iprops;

        node->iprops = p->next;
        rkv_free(p);
    }
}

/* ---- the split driver --------------------------------------------------- */

static void split_reset(struct rkv_node__replica *r, int rv)
{
    r->split_state = RKV_NODE_SPLIT_IDLE;
    r->split_check_after_ms =
        rkv_node__now_ms(r->node) + RKV_NODE_SPLIT_RETRY_MS;
    while (r->split_waiters.head != NULL) {
        struct rkv_node__request *req = r->split_waiters.head;

        rkv_node__request_list_remove(&r->split_waiters, req);
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
    }
}

static void split_fail(struct rkv_node__replica *r, const char *step, int rv)
{
    RKV_LOG(RKV_WARN, "split failed, will retry range=%llu step=%s error=%s",
            (unsigned long long)r->range_id, step, rkv_strerror(rv));
    split_reset(r, rv);
}

static void split_meta_cb(void *data, int rv,
                          const struct rkv_range_apply_result *result)
{
    struct rkv_node__replica *r = data;

    if (r->split_state != RKV_NODE_SPLIT_META) {
        return;
    }
    if (rv == 0 && result->rv != 0 && result->rv != RKV_ESTALE) {
        rv = result->rv;
    }
    if (rv != 0) {
        /* The split itself is done. Until the repair on a later tick
         * rewrites the record, a stale one costs clients a
         * RKV_EKEYMISMATCH round trip. */
        RKV_LOG(RKV_WARN, "meta update failed, will retry range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
    }
    r->split_state = RKV_NODE_SPLIT_IDLE;
    r->meta_check_after_ms = rkv_node__now_ms(r->node) + RKV_NODE_META_CHECK_MS;
}

static void split_apply_cb(void *data, int rv,
                           const struct rkv_range_apply_result *result)
{
    struct rkv_node__replica *r = data;
    uint8_t *cmd;
    size_t cmd_len;

    if (r->split_state != RKV_NODE_SPLIT_APPLY) {
        return;
    }
    if (rv == 0 && result->rv != 0) {
        rv = result->rv;
    }
    if (rv != 0) {
        split_fail(r, "apply", rv);
        return;
    }
    while (r->split_waiters.head != NULL) {
        struct rkv_node__request *req = r->split_waiters.head;

        rkv_node__request_list_remove(&r->split_waiters, req);
        rkv_node__request_split_done(req, &result->desc, &result->right);
    }
    r->split_state = RKV_NODE_SPLIT_IDLE;
    if (r->range_id == RKV_RANGE_ID_FIRST) {
        return;
    }
    if (split_meta_fault()) {
        rv = RKV_EUNAVAILABLE;
        goto meta_failed;
    }
    rv = rkv_range_encode_meta_update(&result->desc, &result->right, &cmd,
                                      &cmd_len);
    if (rv == 0) {
        rv = rkv_node__iprop_submit(r->node, RKV_RANGE_ID_FIRST, cmd, cmd_len,
                                    split_meta_cb, r);
        rkv_free(cmd);
    }
    if (rv == 0) {
        r->split_state = RKV_NODE_SPLIT_META;
        return;
    }

meta_failed:
    RKV_LOG(RKV_WARN, "meta update failed, will retry range=%llu error=%s",
            (unsigned long long)r->range_id, rkv_strerror(rv));
    r->meta_check_after_ms = rkv_node__now_ms(r->node) + RKV_NODE_META_CHECK_MS;
}

static void split_alloc_cb(void *data, int rv,
                           const struct rkv_range_apply_result *result)
{
    struct rkv_node__replica *r = data;
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    uint8_t *cmd;
    size_t cmd_len;

    if (r->split_state != RKV_NODE_SPLIT_ALLOC) {
        return;
    }
    if (rv == 0 && result->rv != 0) {
        rv = result->rv;
    }
    if (rv == 0 && r->role != RKV_RAFT_LEADER) {
        rv = RKV_ENOTLEADER;
    }
    if (rv != 0) {
        split_fail(r, "allocate range id", rv);
        return;
    }
    r->split_new_range_id = result->new_range_id;
    rv = rkv_range_encode_split(r->node->store, &r->desc, r->split_key,
                                r->split_key_len, r->split_new_range_id, &cmd,
                                &cmd_len, errmsg);
    if (rv != 0) {
        split_fail(r, "encode", rv);
        return;
    }
    r->split_state = RKV_NODE_SPLIT_APPLY;
    rv = rkv_node__iprop_submit(r->node, r->range_id, cmd, cmd_len,
                                split_apply_cb, r);
    rkv_free(cmd);
    if (rv != 0) {
        split_fail(r, "propose", rv);
    }
}

static int split_begin(struct rkv_node__replica *r, const uint8_t *key,
                       size_t key_len)
{
    uint8_t *cmd;
    size_t cmd_len;
    int rv;

    assert(r->split_state == RKV_NODE_SPLIT_IDLE);
    assert(key_len > 0);
    assert(key_len <= sizeof(r->split_key));
    memcpy(r->split_key, key, key_len);
    r->split_key_len = key_len;
    rv = rkv_range_encode_alloc_range_id(&cmd, &cmd_len);
    if (rv != 0) {
        return rv;
    }
    r->split_state = RKV_NODE_SPLIT_ALLOC;
    rv = rkv_node__iprop_submit(r->node, RKV_RANGE_ID_FIRST, cmd, cmd_len,
                                split_alloc_cb, r);
    rkv_free(cmd);
    if (rv != 0) {
        r->split_state = RKV_NODE_SPLIT_IDLE;
        return rv;
    }
    RKV_LOG(RKV_DEBUG, "starting split range=%llu generation=%llu",
            (unsigned long long)r->range_id,
            (unsigned long long)r->desc.generation);
    return 0;
}

/* Proposes this range's meta record again when this node's copy of range 1
 * lacks it or has an older generation (see "Meta repair" above). */
static void split_meta_repair(struct rkv_node__replica *r)
{
    struct rkv_range_rtxn *rtxn;
    bool stale = false;
    uint8_t *cmd;
    size_t cmd_len;
    int rv;

    /* Until a check shows the record fresh, retry soon. */
    r->meta_check_after_ms = rkv_node__now_ms(r->node) + RKV_NODE_META_CHECK_MS;
    rv = rkv_range_rtxn_begin(r->node->store, &rtxn);
    if (rv != 0) {
        return;
    }
    rv = rkv_range_meta_check(rtxn, &r->desc, &stale);
    rkv_range_rtxn_end(rtxn);
    if (rv != 0) {
        return;
    }
    if (!stale) {
        r->meta_check_after_ms =
            rkv_node__now_ms(r->node) + RKV_NODE_META_AUDIT_MS;
        return;
    }

    rv = rkv_range_encode_meta_update(&r->desc, NULL, &cmd, &cmd_len);
    if (rv == 0) {
        rv = rkv_node__iprop_submit(r->node, RKV_RANGE_ID_FIRST, cmd, cmd_len,
                                    split_meta_cb, r);
        rkv_free(cmd);
    }
    if (rv != 0) {
        RKV_LOG(RKV_DEBUG, "meta repair not proposed range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
        return;
    }
    RKV_LOG(RKV_INFO,
            "meta record stale, proposing it again range=%llu "
            "generation=%llu",
            (unsigned long long)r->range_id,
            (unsigned long long)r->desc.generation);
    r->split_state = RKV_NODE_SPLIT_META;
}

void rkv_node__split_meta_tick(struct rkv_node__replica *r)
{
    if (r->role == RKV_RAFT_LEADER && r->initialized &&
        r->split_state == RKV_NODE_SPLIT_IDLE &&
        r->range_id != RKV_RANGE_ID_FIRST &&
        rkv_node__now_ms(r->node) >= r->meta_check_after_ms) {
        split_meta_repair(r);
    }
}

void rkv_node__split_maybe(struct rkv_node__replica *r)
{
    struct rkv_node *node = r->node;
    uint8_t key[RKV_RANGE_KEY_MAX];
    size_t key_len;
    struct rkv_range_rtxn *rtxn;
    int rv;

    if (r->role != RKV_RAFT_LEADER || !r->initialized ||
        r->split_state != RKV_NODE_SPLIT_IDLE ||
        rkv_node__now_ms(r->node) < r->split_check_after_ms ||
        !rkv_range_should_split(node->store, &r->stats)) {
        return;
    }
    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        return;
    }
    rv = rkv_range_pick_split_key(rtxn, r->range_id, key, &key_len);
    rkv_range_rtxn_end(rtxn);
    if (rv == 0) {
        rv = split_begin(r, key, key_len);
    }
    if (rv != 0) {
        RKV_LOG(RKV_DEBUG, "split not started range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
        r->split_check_after_ms =
            rkv_node__now_ms(r->node) + RKV_NODE_SPLIT_RETRY_MS;
    }
}

int rkv_node__split_start(struct rkv_node__replica *r, const uint8_t *key,
                          size_t key_len, struct rkv_node__request *req)
{
    int rv;

    if (r->split_state != RKV_NODE_SPLIT_IDLE) {
        return RKV_ESPLITTING;
    }
    /* The empty key starts the keyspace, so it never splits a range. */
    if (key_len == 0 || key_len > RKV_RANGE_KEY_MAX ||
        (key_len == r->desc.start_key_len &&
         memcmp(key, r->desc.start_key, key_len) == 0)) {
        return -EINVAL;
    }
    rv = split_begin(r, key, key_len);
    if (rv != 0) {
        return rv;
    }
    req->wait = RKV_NODE_WAIT_SPLIT;
    rkv_node__request_list_append(&r->split_waiters, req);
    return 0;
}

void rkv_node__split_applied(struct rkv_node__replica *r, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result)
{
    struct rkv_node *node = r->node;
    struct rkv_node__replica *right;
    struct rkv_range_state state;
    int rv;

    r->desc = result->desc;
    node->by_key_stale = true;
    RKV_LOG(RKV_INFO,
            "split range range=%llu right=%llu index=%llu generation=%llu",
            (unsigned long long)r->range_id,
            (unsigned long long)result->right.range_id,
            (unsigned long long)index,
            (unsigned long long)result->desc.generation);

    right = rkv_node__replica_find(node, result->right.range_id);
    if (right != NULL) {
        right->desc = result->right;
        right->initialized = true;
        return;
    }
    rv = rkv_range_state_load(node->store, result->right.range_id, &state);
    if (rv == 0) {
        rv = rkv_node__replica_open(node, &state, &right);
    }
    if (rv != 0) {
        RKV_LOG(RKV_ERROR,
                "creating right-hand replica failed range=%llu "
                "error=%s",
                (unsigned long long)result->right.range_id, rkv_strerror(rv));
        return;
    }
    /* The left leader campaigns at once for the right range, so it does not
     * wait an election timeout and leadership stays where the load was. A
     * follower that applies the split later finds the campaign's messages
     * held for it. */
    if (r->role == RKV_RAFT_LEADER) {
        rkv_raft_campaign(right->raft);
        rkv_node__replica_mark(right);
    }
    rkv_node__replay_held(right);
}
