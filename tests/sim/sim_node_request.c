/*
 * Client requests on the simulated nodes: writes proposed on the leader and
 * completed when their entry applies, and reads served after ReadIndex
 * (see sim_node.c for the rest of the glue).
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim_node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* ---- reads -------------------------------------------------------------- */

/* Reads the request's key from the node's store and responds to the client. */
static void serve_read(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r, unsigned client_addr,
                       const struct sim_request *req)
{
    struct rkv_range_rtxn *rtxn;
    struct sim_response resp;
    const uint8_t *value;
    size_t value_len;
    uint8_t key[16];
    size_t key_len;
    int rv;

    memset(&resp, 0, sizeof(resp));
    resp.req_id = req->req_id;
    sim_key_format(req->key, key, &key_len);
    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        sim_fatal("beginning a read transaction", rv);
    }
    rv = rkv_range_get(rtxn, r->range_id, key, key_len, &value, &value_len);
    if (rv == 0) {
        resp.found = true;
        if (value_len >= sizeof(resp.value)) {
            sim_fatal("reading an oversized value", RKV_ETOOLARGE);
        }
        memcpy(resp.value, value, value_len);
        resp.value[value_len] = '\0';
    } else if (rv != RKV_ENOTFOUND) {
        resp.rv = rv; /* RKV_EKEYMISMATCH after a split: no effect */
    }
    rkv_range_rtxn_end(rtxn);
    sim_respond(w, node, client_addr, &resp);
}

/* Serves every read whose index is known and applied. */
void sim_serve_reads(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r)
{
    struct sim_pending **link = &r->reads;

    while (*link != NULL) {
        struct sim_pending *p = *link;

        if (p->index == 0 || p->index > r->applied_index) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        serve_read(w, node, r, p->client_addr, &p->request);
        rkv_free(p);
    }
}

void sim_fail_reads(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r)
{
    while (r->reads != NULL) {
        struct sim_pending *p = r->reads;

        r->reads = p->next;
        sim_respond_error(w, node, p->client_addr, p->request.req_id,
                      RKV_ENOTLEADER, r->leader_id);
        rkv_free(p);
    }
}

void sim_finish_proposals(struct rkv_sim_world *w, struct sim_node *node,
                             struct sim_replica *r, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result)
{
    while (r->proposals != NULL && r->proposals->index <= index) {
        struct sim_pending *p = r->proposals;
        struct sim_response resp;

        r->proposals = p->next;
        memset(&resp, 0, sizeof(resp));
        resp.req_id = p->request.req_id;
        if (p->index == index && p->term == term) {
            resp.rv = result->rv;
            resp.found = result->found;
        } else {
            resp.rv = RKV_EDROPPED;
        }
        sim_respond(w, node, p->client_addr, &resp);
        rkv_free(p);
    }
}

/* ---- client requests ---------------------------------------------------- */

/* Fails every pending proposal of r at index or later with RKV_EDROPPED,
 * as node/rpc.c does when a new proposal gets a lower or equal index. */
static void drop_truncated(struct rkv_sim_world *w, struct sim_node *node,
                           struct sim_replica *r, uint64_t index)
{
    struct sim_pending **link = &r->proposals;

    while (*link != NULL && (*link)->index < index) {
        link = &(*link)->next;
    }
    while (*link != NULL) {
        struct sim_pending *old = *link;

        *link = old->next;
        sim_respond_error(w, node, old->client_addr, old->request.req_id,
                          RKV_EDROPPED, 0);
        rkv_free(old);
    }
}

static int propose_request(struct rkv_sim_world *w, struct sim_node *node,
                           struct sim_replica *r, unsigned client_addr,
                           const struct sim_request *req)
{
    struct sim_pending *p;
    struct sim_pending **link;
    uint8_t key[16];
    size_t key_len;
    uint8_t *cmd;
    size_t len;
    int rv;

    sim_key_format(req->key, key, &key_len);
    if (req->kind == RKV_SIM_OP_PUT) {
        rv = rkv_range_encode_put(node->store, key, key_len, req->value,
                                  strlen(req->value), &cmd, &len, NULL);
    } else {
        rv = rkv_range_encode_cas(
            node->store, key, key_len,
            req->expect_absent ? NULL : req->expected,
            req->expect_absent ? 0 : strlen(req->expected), req->value,
            strlen(req->value), &cmd, &len, NULL);
    }
    if (rv != 0) {
        return rv;
    }
    p = sim_alloc(sizeof(*p));
    rv = rkv_raft_propose(r->raft, cmd, len, &p->index, &p->term);
    rkv_free(cmd);
    if (rv != 0) {
        rkv_free(p);
        return rv;
    }
    if (w->options.bug == RKV_SIM_BUG_EARLY_ACK &&
        req->kind == RKV_SIM_OP_PUT) {
        /* The injected bug: acknowledged before it is committed. */
        sim_respond_error(w, node, client_addr, req->req_id, 0, 0);
        rkv_free(p);
        return 0;
    }
    p->client_addr = client_addr;
    p->request = *req;

    /* Keep the list sorted by index. A pending proposal at this index or
     * later lost its entry from this log, but it is completed only when its
     * index applies. An entry from an older term that this leader's log
     * lacks may still commit, if another node holding it is elected before
     * this term commits anything (figure 8 of Ongaro and Ousterhout's "In
     * Search of an Understandable Consensus Algorithm"). node/rpc.c fails
     * such proposals at once (RKV_SIM_BUG_DROP_ON_TRUNCATE mimics it). */
    link = &r->proposals;
    while (*link != NULL && (*link)->index <= p->index) {
        link = &(*link)->next;
    }
    if (w->options.bug == RKV_SIM_BUG_DROP_ON_TRUNCATE) {
        drop_truncated(w, node, r, p->index);
        link = &r->proposals;
        while (*link != NULL) {
            link = &(*link)->next;
        }
    }
    p->next = *link;
    *link = p;
    return 0;
}

static int start_read(struct sim_replica *r, unsigned client_addr,
                      const struct sim_request *req)
{
    struct sim_pending *p = sim_alloc(sizeof(*p));
    int rv;

    p->ctx = r->next_read_ctx++;
    rv = rkv_raft_read_index(r->raft, p->ctx);
    if (rv != 0) {
        rkv_free(p);
        return rv;
    }
    p->client_addr = client_addr;
    p->request = *req;
    p->next = r->reads;
    r->reads = p;
    return 0;
}

void sim_receive_request(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_msg *msg)
{
    const struct sim_request *req = &msg->request;
    struct sim_replica *r;
    uint8_t key[16];
    size_t key_len;
    int rv;

    sim_key_format(req->key, key, &key_len);
    r = sim_replica_for_key(node, key, key_len);
    if (r == NULL) {
        sim_respond_error(w, node, msg->from, req->req_id, RKV_ERANGENOTFOUND, 0);
        return;
    }
    if (req->kind == RKV_SIM_OP_GET && w->options.bug == RKV_SIM_BUG_STALE_READ) {
        /* The injected bug: any replica serves reads from its own state. */
        serve_read(w, node, r, msg->from, req);
        return;
    }
    if (r->role != RKV_RAFT_LEADER) {
        sim_respond_error(w, node, msg->from, req->req_id, RKV_ENOTLEADER,
                      r->leader_id);
        return;
    }
    if (req->kind == RKV_SIM_OP_GET) {
        rv = start_read(r, msg->from, req);
    } else {
        rv = propose_request(w, node, r, msg->from, req);
    }
    if (rv != 0) {
        sim_respond_error(w, node, msg->from, req->req_id, rv, r->leader_id);
    }
}
