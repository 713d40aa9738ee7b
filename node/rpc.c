/*
 * The client RPC server: node/rpc.proto on the node's client port.
 *
 * Happy path: a Request frame is decoded, routed to the local replica whose
 * span contains the key (or to range_id when the client names one), and
 * then:
 *   - writes (put, delete, cas, batch) are encoded as range commands and
 *     proposed; the request waits on the replica until its entry is
 *     committed, durable and applied (rkv_node__request_applied());
 *   - linearizable reads (get, scan) start a ReadIndex round and are served
 *     from an LMDB read transaction once the read index is applied;
 *     serializable reads are served at once from the local replica; a
 *     scan reply holds only the pairs that fit in one client frame and
 *     sets more_after and resume_key so the client continues from there;
 *   - ranges, status and init are answered at once; split waits for the
 *     split to apply.
 * Responses may leave in any order; each carries the request's id.
 *
 * Failure modes, each answered with a typed error:
 *   RKV_ENOTLEADER     this replica does not lead; leader_node_id and
 *                      leader_client_addr carry the hint when known;
 *   RKV_EKEYMISMATCH   the key is outside the named range; descriptors
 *                      carry the fresh descriptor;
 *   RKV_ERANGENOTFOUND no local replica holds the key or range id;
 *   RKV_ETOOLARGE      a key, value or batch over its limit;
 *   RKV_EUNAVAILABLE   the range has no leader right now, or the cluster
 *                      is not initialized yet;
 *   RKV_ETIMEOUT       the deadline passed (the write may still apply);
 *   RKV_EDROPPED       a leader change dropped the proposal.
 * A frame that does not decode closes the connection (logged), and a
 * connection past clients_max open ones is closed on accept (logged at a
 * limited rate).
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* ---- request lists ------------------------------------------------------ */

void rkv_node__request_list_remove(struct rkv_node__request_list *list,
                                   struct rkv_node__request *req)
{
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        list->head = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    } else {
        list->tail = req->prev;
    }
    req->prev = NULL;
    req->next = NULL;
}

void rkv_node__request_list_append(struct rkv_node__request_list *list,
                                   struct rkv_node__request *req)
{
    req->next = NULL;
    req->prev = list->tail;
    if (list->tail != NULL) {
        list->tail->next = req;
    } else {
        list->head = req;
    }
    list->tail = req;
}

/* Inserts a proposal in index order (invariant 2). An index at or below a
 * pending proposal's means this node's log was truncated under that one.
 * The truncated entry may still be committed by a later leader that has it
 * (the Raft paper's Figure 8 shows such histories), so the older proposal
 * keeps waiting. Whichever entry applies at its index then settles it: the
 * same term means it succeeded, another term that it was dropped. Failing
 * it as dropped at once would let the client retry a write that may still
 * apply. */
static void proposals_insert(struct rkv_node__request_list *list,
                             struct rkv_node__request *req)
{
    struct rkv_node__request *after = list->tail;

#ifdef RKV_NODE_BUGS
    if (req->node->bug == RKV_NODE_BUG_DROP_ON_TRUNCATE) {
        /* The injected bug: the older proposals are failed at once. */
        while (list->tail != NULL && list->tail->index >= req->index) {
            struct rkv_node__request *old = list->tail;

            rkv_node__request_list_remove(list, old);
            rkv_node__request_fail(old, RKV_EDROPPED, "dropped");
        }
        after = list->tail;
    }
#endif

    while (after != NULL && after->index > req->index) {
        after = after->prev;
    }
    if (after == list->tail) {
        rkv_node__request_list_append(list, req);
        return;
    }
    req->prev = after;
    req->next = after != NULL ? after->next : list->head;
    req->next->prev = req;
    if (after != NULL) {
        after->next = req;
    } else {
        list->head = req;
    }
}

/* ---- client connections ------------------------------------------------- */

static void client_unref(struct rkv_node__client *client)
{
    assert(client->refs > 0);
    client->refs--;
    if (client->refs == 0) {
        rkv_free(client);
    }
}

static void client_reply_release(struct rkv_node__reply_to *to)
{
    client_unref((struct rkv_node__client *)to);
}

/* Sends a response on the client's connection, if it is still open. */
static void client_reply_send(struct rkv_node__reply_to *to,
                              const Rkv__Rpc__Response *response)
{
    struct rkv_node__client *client = (struct rkv_node__client *)to;
    int rv;

    if (client->conn.closing) {
        return;
    }
    rv = rkv_node__conn_send_message(&client->conn, response);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "sending response failed request=%llu error=%s",
                (unsigned long long)response->id, rkv_strerror(rv));
        rkv_node__conn_close(&client->conn);
    }
}

static void request_free(struct rkv_node__request *req)
{
    struct rkv_node *node = req->node;

    if (req->all_prev != NULL) {
        req->all_prev->all_next = req->all_next;
    } else {
        node->all_head = req->all_next;
    }
    if (req->all_next != NULL) {
        req->all_next->all_prev = req->all_prev;
    } else {
        node->all_tail = req->all_prev;
    }
    node->n_requests--;
    rkv__rpc__request__free_unpacked(req->msg, NULL);
    req->reply->release(req->reply);
    rkv_free(req);
}

/* Sends response for req and frees req. */
static void request_respond(struct rkv_node__request *req,
                            Rkv__Rpc__Response *response)
{
    response->id = req->msg->id;
    req->reply->send(req->reply, response);
    request_free(req);
}

static void range_info_fill(Rkv__Rpc__RangeInfo *info,
                            Rkv__Rpc__Replica *replicas,
                            Rkv__Rpc__Replica **replica_ptrs,
                            const struct rkv_range_desc *desc)
{
    rkv__rpc__range_info__init(info);
    info->range_id = desc->range_id;
    info->start_key.data = (uint8_t *)desc->start_key;
    info->start_key.len = desc->start_key_len;
    info->end_key.data = (uint8_t *)desc->end_key;
    info->end_key.len = desc->end_key_len;
    info->generation = desc->generation;
    for (size_t i = 0; i < desc->n_replicas; i++) {
        rkv__rpc__replica__init(&replicas[i]);
        replicas[i].node_id = desc->replicas[i].node_id;
        replicas[i].replica_id = desc->replicas[i].replica_id;
        replicas[i].learner = desc->replicas[i].learner;
        replica_ptrs[i] = &replicas[i];
    }
    info->n_replicas = desc->n_replicas;
    info->replicas = replica_ptrs;
}

/* Fills leader, term and stats from the local replica of desc's range. */
static void range_info_fill_local(struct rkv_node *node,
                                  Rkv__Rpc__RangeInfo *info)
{
    struct rkv_node__replica *r = rkv_node__replica_find(node, info->range_id);

    if (r == NULL) {
        return;
    }
    info->has_leader_node_id = true;
    info->leader_node_id = r->leader_id;
    info->has_term = true;
    info->term = rkv_raft_term(r->raft);
    info->has_live_bytes = true;
    info->live_bytes = r->stats.key_bytes + r->stats.value_bytes;
    info->has_key_count = true;
    info->key_count = r->stats.key_count;
}

/* Fails req with rv, adding the hints that go with that error. */
static void request_fail_with_replica(struct rkv_node__request *req, int rv,
                                      const char *message,
                                      struct rkv_node__replica *replica)
{
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__RangeInfo info;
    Rkv__Rpc__RangeInfo *info_ptr = &info;
    Rkv__Rpc__Replica replicas[RKV_RANGE_REPLICAS_MAX];
    Rkv__Rpc__Replica *replica_ptrs[RKV_RANGE_REPLICAS_MAX];

    response.error = rv;
    response.error_message = (char *)message;
    if (rv == RKV_ENOTLEADER && replica != NULL && replica->leader_id != 0 &&
        replica->leader_id != req->node->node_id) {
        response.has_leader_node_id = true;
        response.leader_node_id = replica->leader_id;
        response.leader_client_addr =
            (char *)rkv_node__client_addr_of(req->node, replica->leader_id);
    }
    if (rv == RKV_EKEYMISMATCH && replica != NULL && replica->initialized) {
        range_info_fill(&info, replicas, replica_ptrs, &replica->desc);
        range_info_fill_local(req->node, &info);
        response.n_descriptors = 1;
        response.descriptors = &info_ptr;
    }
    request_respond(req, &response);
}

/* Fails a request sent to a replica that does not lead: RKV_ENOTLEADER
 * with the leader's address when one is known, RKV_EUNAVAILABLE while the
 * range has no leader (an election is running or no quorum is up). */
static void request_fail_not_leader(struct rkv_node__request *req,
                                    struct rkv_node__replica *r)
{
    if (r->leader_id == 0 || r->leader_id == req->node->node_id) {
        request_fail_with_replica(req, RKV_EUNAVAILABLE,
                                  "the range has no leader right now; retry",
                                  r);
        return;
    }
    request_fail_with_replica(req, RKV_ENOTLEADER,
                              "not the leader of the range", r);
}

void rkv_node__request_fail(struct rkv_node__request *req, int rv,
                            const char *message)
{
    request_fail_with_replica(req, rv, message,
                              rkv_node__replica_find(req->node, req->range_id));
}

/* ---- writes ------------------------------------------------------------- */

void rkv_node__request_applied(struct rkv_node__request *req,
                               const struct rkv_range_apply_result *result)
{
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__DeleteResponse del = RKV__RPC__DELETE_RESPONSE__INIT;
    Rkv__Rpc__CasResponse cas = RKV__RPC__CAS_RESPONSE__INIT;

    if (result->rv != 0) {
        struct rkv_node__replica *r =
            rkv_node__replica_find(req->node, req->range_id);

        if (result->rv == RKV_EKEYMISMATCH && r != NULL) {
            r->desc = result->desc;
        }
        request_fail_with_replica(req, result->rv, rkv_strerror(result->rv), r);
        return;
    }
    req->node->counters.n_puts++;
    switch (req->msg->op_case) {
    case RKV__RPC__REQUEST__OP_DELETE:
        del.existed = result->found;
        response.result_case = RKV__RPC__RESPONSE__RESULT_DELETE;
        response.delete_ = &del;
        break;
    case RKV__RPC__REQUEST__OP_CAS:
        cas.swapped = result->found;
        if (!result->found && result->value != NULL) {
            cas.has_current_value = true;
            cas.current_value.data = result->value;
            cas.current_value.len = result->value_len;
        }
        response.result_case = RKV__RPC__RESPONSE__RESULT_CAS;
        response.cas = &cas;
        break;
    default:
        break;
    }
    request_respond(req, &response);
}

static int request_encode(struct rkv_node *node, const Rkv__Rpc__Request *msg,
                          uint8_t **buf, size_t *len, char *errmsg)
{
    const struct rkv_range_store *store = node->store;

    switch (msg->op_case) {
    case RKV__RPC__REQUEST__OP_PUT:
        return rkv_range_encode_put(store, msg->put->key.data,
                                    msg->put->key.len, msg->put->value.data,
                                    msg->put->value.len, buf, len, errmsg);
    case RKV__RPC__REQUEST__OP_DELETE:
        return rkv_range_encode_delete(store, msg->delete_->key.data,
                                       msg->delete_->key.len, buf, len, errmsg);
    case RKV__RPC__REQUEST__OP_CAS: {
        const Rkv__Rpc__CasRequest *c = msg->cas;

        return rkv_range_encode_cas(
            store, c->key.data, c->key.len,
            c->has_expected_value ? c->expected_value.data : NULL,
            c->expected_value.len, c->has_new_value ? c->new_value.data : NULL,
            c->new_value.len, buf, len, errmsg);
    }
    default:
        break;
    }
    return -EINVAL;
}

static int request_encode_batch(struct rkv_node *node,
                                const Rkv__Rpc__BatchRequest *batch,
                                uint8_t **buf, size_t *len, char *errmsg)
{
    struct rkv_range_op *ops;
    int rv;

    if (batch->n_ops == 0) {
        snprintf(errmsg, RKV_RANGE_ERRMSG_SIZE, "invalid batch: no ops");
        return -EINVAL;
    }
    ops = rkv_calloc(batch->n_ops, sizeof(*ops));
    if (ops == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < batch->n_ops; i++) {
        const Rkv__Rpc__BatchOp *op = batch->ops[i];

        /* protobuf-c does not check proto2 enum values. */
        if (op->kind != RKV__RPC__BATCH_OP__KIND__PUT &&
            op->kind != RKV__RPC__BATCH_OP__KIND__DELETE) {
            snprintf(errmsg, RKV_RANGE_ERRMSG_SIZE,
                     "invalid batch op %zu: unknown kind %d", i, (int)op->kind);
            rkv_free(ops);
            return -EINVAL;
        }
        if (op->kind == RKV__RPC__BATCH_OP__KIND__PUT && !op->has_value) {
            snprintf(errmsg, RKV_RANGE_ERRMSG_SIZE,
                     "invalid batch op %zu: put without a value", i);
            rkv_free(ops);
            return -EINVAL;
        }
        ops[i].is_delete = op->kind == RKV__RPC__BATCH_OP__KIND__DELETE;
        ops[i].key = op->key.data;
        ops[i].key_len = op->key.len;
        ops[i].value = op->value.data;
        ops[i].value_len = op->value.len;
    }
    rv = rkv_range_encode_batch(node->store, ops, batch->n_ops, buf, len,
                                errmsg);
    rkv_free(ops);
    return rv;
}

/* Rejects a write while the writer cannot commit for lack of space. */
static void write_reject_stalled(struct rkv_node__request *req, int rv)
{
    char message[768];

    snprintf(message, sizeof(message),
             "%s: store %s cannot take more data; writes are stopped until "
             "space is freed, reads still work",
             rv == RKV_EMAPFULL
                 ? "the LMDB map is at its size limit (--map-size-max)"
                 : "the disk is full",
             req->node->store_dir);
    rkv_node__request_fail(req, rv, message);
}

static void handle_write(struct rkv_node__request *req,
                         struct rkv_node__replica *r)
{
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t index;
    uint64_t term;
    int rv;

    rv = rkv_node__writes_blocked(req->node);
    if (rv != 0) {
        write_reject_stalled(req, rv);
        return;
    }
    if (req->msg->op_case == RKV__RPC__REQUEST__OP_BATCH) {
        rv = request_encode_batch(req->node, req->msg->batch, &buf, &len,
                                  errmsg);
    } else {
        rv = request_encode(req->node, req->msg, &buf, &len, errmsg);
    }
    if (rv != 0) {
        rkv_node__request_fail(req, rv, errmsg[0] ? errmsg : rkv_strerror(rv));
        return;
    }
    rv = rkv_node__propose(r, buf, len, &index, &term);
    rkv_free(buf);
    if (rv != 0) {
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        return;
    }

    req->wait = RKV_NODE_WAIT_PROPOSAL;
    req->index = index;
    req->term = term;
#ifdef RKV_NODE_BUGS
    if (req->node->bug == RKV_NODE_BUG_EARLY_ACK &&
        req->msg->op_case == RKV__RPC__REQUEST__OP_PUT) {
        /* The injected bug: acknowledged before it is committed. */
        struct rkv_range_apply_result none = {0};

        rkv_node__request_applied(req, &none);
        return;
    }
#endif
    proposals_insert(&r->proposals, req);
}

/* ---- reads -------------------------------------------------------------- */

static void serve_get(struct rkv_node__request *req,
                      struct rkv_range_rtxn *rtxn)
{
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__GetResponse get = RKV__RPC__GET_RESPONSE__INIT;
    const Rkv__Rpc__GetRequest *g = req->msg->get;
    const uint8_t *value;
    size_t value_len;
    int rv;

    rv = rkv_range_get(rtxn, req->range_id, g->key.data, g->key.len, &value,
                       &value_len);
    if (rv != 0 && rv != RKV_ENOTFOUND) {
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        return;
    }
    get.found = rv == 0;
    if (rv == 0) {
        get.has_value = true;
        get.value.data = (uint8_t *)value;
        get.value.len = value_len;
    }
    response.result_case = RKV__RPC__RESPONSE__RESULT_GET;
    response.get = &get;
    request_respond(req, &response);
}

/* Bytes of a scan reply, besides its pairs: the response's id, error and
 * resume key (a key is at most RKV_RANGE_KEY_MAX bytes) and the frame
 * header, with room to spare. */
#define RPC_SCAN_REPLY_OVERHEAD (64u * 1024)

/* Returns how many of the n_pairs pairs in kvs fit in one client frame
 * (RKV_NODE_CLIENT_FRAME_MAX) together with the reply's other fields, and
 * at least one: a key and a value within their limits always fit. */
static size_t scan_pairs_within_frame(const Rkv__Rpc__KeyValue *kvs,
                                      size_t n_pairs)
{
    const size_t budget = RKV_NODE_CLIENT_FRAME_MAX - RPC_SCAN_REPLY_OVERHEAD;
    size_t used = 0;

    for (size_t i = 0; i < n_pairs; i++) {
        /* The field tag and length varint of the embedded message take at
         * most 1 + 10 bytes. */
        size_t pair_len = rkv__rpc__key_value__get_packed_size(&kvs[i]) + 11;

        if (i > 0 && used + pair_len > budget) {
            return i;
        }
        used += pair_len;
    }
    return n_pairs;
}

static void serve_scan(struct rkv_node__request *req,
                       struct rkv_range_rtxn *rtxn)
{
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__ScanResponse scan = RKV__RPC__SCAN_RESPONSE__INIT;
    const Rkv__Rpc__ScanRequest *s = req->msg->scan;
    struct rkv_range_scan_result result;
    Rkv__Rpc__KeyValue *kvs = NULL;
    Rkv__Rpc__KeyValue **kv_ptrs = NULL;
    int rv;

    rv =
        rkv_range_scan(rtxn, req->range_id, s->start_key.data, s->start_key.len,
                       s->end_key.data, s->end_key.len, s->limit, &result);
    if (rv != 0) {
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        return;
    }
    if (result.n_pairs > 0) {
        kvs = rkv_calloc(result.n_pairs, sizeof(*kvs));
        kv_ptrs = rkv_calloc(result.n_pairs, sizeof(*kv_ptrs));
        if (kvs == NULL || kv_ptrs == NULL) {
            rkv_free(kvs);
            rkv_free(kv_ptrs);
            rkv_range_scan_result_free(&result);
            rkv_node__request_fail(req, -ENOMEM, rkv_strerror(-ENOMEM));
            return;
        }
    }
    for (size_t i = 0; i < result.n_pairs; i++) {
        rkv__rpc__key_value__init(&kvs[i]);
        kvs[i].key.data = (uint8_t *)result.pairs[i].key;
        kvs[i].key.len = result.pairs[i].key_len;
        kvs[i].value.data = (uint8_t *)result.pairs[i].value;
        kvs[i].value.len = result.pairs[i].value_len;
        kv_ptrs[i] = &kvs[i];
    }
    scan.n_pairs = scan_pairs_within_frame(kvs, result.n_pairs);
    scan.pairs = kv_ptrs;
    if (scan.n_pairs < result.n_pairs) {
        /* Cut by the frame size: the client continues at the first pair
         * left out, which is inside this range. */
        scan.more_after = true;
        scan.has_resume_key = true;
        scan.resume_key = kvs[scan.n_pairs].key;
    } else if (result.more_after) {
        scan.more_after = true;
        scan.has_resume_key = true;
        scan.resume_key.data = result.resume_key;
        scan.resume_key.len = result.resume_key_len;
    }
    response.result_case = RKV__RPC__RESPONSE__RESULT_SCAN;
    response.scan = &scan;
    request_respond(req, &response);
    rkv_free(kvs);
    rkv_free(kv_ptrs);
    rkv_range_scan_result_free(&result);
}

void rkv_node__request_read(struct rkv_node__request *req)
{
    struct rkv_range_rtxn *rtxn;
    int rv;

    rv = rkv_range_rtxn_begin(req->node->store, &rtxn);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "starting read failed range=%llu error=%s",
                (unsigned long long)req->range_id, rkv_strerror(rv));
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        return;
    }
    if (req->msg->op_case == RKV__RPC__REQUEST__OP_GET) {
        serve_get(req, rtxn);
    } else {
        serve_scan(req, rtxn);
    }
    rkv_range_rtxn_end(rtxn);
}

static void handle_read(struct rkv_node__request *req,
                        struct rkv_node__replica *r, bool serializable)
{
    int rv;

#ifdef RKV_NODE_BUGS
    /* The injected bug: every replica reads its own state at once. */
    serializable = serializable || req->node->bug == RKV_NODE_BUG_STALE_READ;
#endif
    if (serializable) {
        rkv_node__request_read(req);
        return;
    }
    if (r->role != RKV_RAFT_LEADER) {
        request_fail_not_leader(req, r);
        return;
    }
    req->read_ctx = r->next_read_ctx++;
    rkv_node__replica_wake(r);
    rv = rkv_raft_read_index(r->raft, req->read_ctx);
    if (rv != 0) {
        request_fail_with_replica(req, rv, rkv_strerror(rv), r);
        return;
    }
    req->wait = RKV_NODE_WAIT_READ;
    req->index = 0;
    rkv_node__request_list_append(&r->reads, req);
    rkv_node__replica_mark(r);
}

/* ---- ranges, status, split, init ---------------------------------------- */

static void nodes_fill(struct rkv_node *node, Rkv__Rpc__NodeInfo *infos,
                       Rkv__Rpc__NodeInfo **ptrs, size_t *n_out)
{
    for (size_t i = 0; i < node->n_peers; i++) {
        struct rkv_node__peer *peer = &node->peers[i];
        bool self = peer->node_id == node->node_id;

        rkv__rpc__node_info__init(&infos[i]);
        infos[i].node_id = peer->node_id;
        infos[i].client_addr =
            (char *)rkv_node__client_addr_of(node, peer->node_id);
        infos[i].peer_addr = self ? node->advertise_addr : peer->peer_addr;
        infos[i].has_live = true;
        infos[i].live = self || peer->connected;
        ptrs[i] = &infos[i];
    }
    *n_out = node->n_peers;
}

/* Lists descriptors: the meta records, replaced by the local descriptor
 * where this node's replica has a newer generation. */
static int ranges_list(struct rkv_node *node, struct rkv_range_rtxn *rtxn,
                       struct rkv_range_desc **descs, size_t *n)
{
    int rv;

    rv = rkv_range_meta_list(rtxn, descs, n);
    if (rv == RKV_ERANGENOTFOUND || (rv == 0 && *n == 0)) {
        rkv_free(rv == 0 ? *descs : NULL);
        return rkv_range_desc_list(rtxn, descs, n);
    }
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < *n; i++) {
        struct rkv_node__replica *r =
            rkv_node__replica_find(node, (*descs)[i].range_id);

        if (r != NULL && r->initialized &&
            r->desc.generation > (*descs)[i].generation) {
            (*descs)[i] = r->desc;
        }
    }
    return 0;
}

static void handle_ranges(struct rkv_node__request *req)
{
    struct rkv_node *node = req->node;
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__RangesResponse ranges = RKV__RPC__RANGES_RESPONSE__INIT;
    Rkv__Rpc__NodeInfo nodes[RKV_NODE_JOIN_MAX];
    Rkv__Rpc__NodeInfo *node_ptrs[RKV_NODE_JOIN_MAX];
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc *descs = NULL;
    size_t n = 0;
    Rkv__Rpc__RangeInfo *infos = NULL;
    Rkv__Rpc__RangeInfo **info_ptrs = NULL;
    Rkv__Rpc__Replica *replicas = NULL;
    Rkv__Rpc__Replica **replica_ptrs = NULL;
    int rv;

    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        return;
    }
    rv = ranges_list(node, rtxn, &descs, &n);
    if (rv == 0 && n > 0) {
        infos = rkv_calloc(n, sizeof(*infos));
        info_ptrs = rkv_calloc(n, sizeof(*info_ptrs));
        replicas = rkv_calloc(n * RKV_RANGE_REPLICAS_MAX, sizeof(*replicas));
        replica_ptrs =
            rkv_calloc(n * RKV_RANGE_REPLICAS_MAX, sizeof(*replica_ptrs));
        if (infos == NULL || info_ptrs == NULL || replicas == NULL ||
            replica_ptrs == NULL) {
            rv = -ENOMEM;
        }
    }
    if (rv != 0) {
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        range_info_fill(&infos[i], &replicas[i * RKV_RANGE_REPLICAS_MAX],
                        &replica_ptrs[i * RKV_RANGE_REPLICAS_MAX], &descs[i]);
        range_info_fill_local(node, &infos[i]);
        info_ptrs[i] = &infos[i];
    }
    ranges.n_ranges = n;
    ranges.ranges = info_ptrs;
    nodes_fill(node, nodes, node_ptrs, &ranges.n_nodes);
    ranges.nodes = node_ptrs;
    response.result_case = RKV__RPC__RESPONSE__RESULT_RANGES;
    response.ranges = &ranges;
    request_respond(req, &response);

out:
    rkv_free(infos);
    rkv_free(info_ptrs);
    rkv_free(replicas);
    rkv_free(replica_ptrs);
    rkv_free(descs);
    rkv_range_rtxn_end(rtxn);
}

static uint64_t timeval_ms(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void handle_status(struct rkv_node__request *req)
{
    struct rkv_node *node = req->node;
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__StatusResponse status = RKV__RPC__STATUS_RESPONSE__INIT;
    Rkv__Rpc__NodeInfo nodes[RKV_NODE_JOIN_MAX];
    Rkv__Rpc__NodeInfo *node_ptrs[RKV_NODE_JOIN_MAX];
    struct rkv_range_store_counters counters;
    struct rusage usage;
    uint64_t n_leaders = 0;
    uint64_t n_quiesced = 0;

    rkv_range_store_counters(node->store, &counters);
    for (size_t i = 0; i < node->n_buckets; i++) {
        for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
             r = r->hash_next) {
            n_leaders += r->role == RKV_RAFT_LEADER;
            n_quiesced += r->quiesced;
        }
    }
    status.node_id = node->node_id;
    status.cluster_id = node->cluster_id;
#define STATUS_SET(field, value)                                               \
    do {                                                                       \
        status.has_##field = true;                                             \
        status.field = (value);                                                \
    } while (0)
    STATUS_SET(n_ranges, node->n_replicas);
    STATUS_SET(n_leaders, n_leaders);
    STATUS_SET(n_proposals, node->counters.n_proposals);
    STATUS_SET(n_commits, counters.n_commits);
    STATUS_SET(n_fsyncs, counters.n_fsyncs);
    STATUS_SET(n_entries_applied, counters.n_entries_applied);
    STATUS_SET(n_puts, node->counters.n_puts);
    STATUS_SET(uptime_ms, rkv_node__now_ms(node) - node->start_ms);
    STATUS_SET(n_bytes_sent, node->io.n_bytes_sent);
    STATUS_SET(n_bytes_received, node->io.n_bytes_received);
    STATUS_SET(n_quiesced, n_quiesced);
    STATUS_SET(n_peers_rejected, node->n_rejected);
    STATUS_SET(n_raft_rejected, node->n_raft_rejected);
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
        STATUS_SET(cpu_user_ms, timeval_ms(usage.ru_utime));
        STATUS_SET(cpu_system_ms, timeval_ms(usage.ru_stime));
    }
#undef STATUS_SET
    nodes_fill(node, nodes, node_ptrs, &status.n_nodes);
    status.nodes = node_ptrs;
    response.result_case = RKV__RPC__RESPONSE__RESULT_STATUS;
    response.status = &status;
    request_respond(req, &response);
}

static void handle_init(struct rkv_node__request *req)
{
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__InitResponse init = RKV__RPC__INIT_RESPONSE__INIT;
    uint64_t cluster_id = 0;
    int rv;

    rv = rkv_node__init_cluster(req->node, &cluster_id);
    if (rv == RKV_ESTALE) {
        rkv_node__request_fail(req, rv,
                               "the node already belongs to a cluster");
        return;
    }
    if (rv != 0) {
        rkv_node__request_fail(req, rv, rkv_strerror(rv));
        return;
    }
    init.cluster_id = cluster_id;
    response.result_case = RKV__RPC__RESPONSE__RESULT_INIT;
    response.init = &init;
    request_respond(req, &response);
}

void rkv_node__request_split_done(struct rkv_node__request *req,
                                  const struct rkv_range_desc *left,
                                  const struct rkv_range_desc *right)
{
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;
    Rkv__Rpc__SplitResponse split = RKV__RPC__SPLIT_RESPONSE__INIT;
    Rkv__Rpc__RangeInfo infos[2];
    Rkv__Rpc__Replica replicas[2][RKV_RANGE_REPLICAS_MAX];
    Rkv__Rpc__Replica *replica_ptrs[2][RKV_RANGE_REPLICAS_MAX];

    range_info_fill(&infos[0], replicas[0], replica_ptrs[0], left);
    range_info_fill(&infos[1], replicas[1], replica_ptrs[1], right);
    split.left = &infos[0];
    split.right = &infos[1];
    response.result_case = RKV__RPC__RESPONSE__RESULT_SPLIT;
    response.split = &split;
    request_respond(req, &response);
}

/* ---- dispatch ----------------------------------------------------------- */

/* The key a request routes by; false for requests without one. */
static bool request_key(const Rkv__Rpc__Request *msg, ProtobufCBinaryData *key)
{
    switch (msg->op_case) {
    case RKV__RPC__REQUEST__OP_GET:
        *key = msg->get->key;
        return true;
    case RKV__RPC__REQUEST__OP_PUT:
        *key = msg->put->key;
        return true;
    case RKV__RPC__REQUEST__OP_DELETE:
        *key = msg->delete_->key;
        return true;
    case RKV__RPC__REQUEST__OP_CAS:
        *key = msg->cas->key;
        return true;
    case RKV__RPC__REQUEST__OP_SCAN:
        *key = msg->scan->start_key;
        return true;
    case RKV__RPC__REQUEST__OP_BATCH:
        if (msg->batch->n_ops == 0) {
            return false;
        }
        *key = msg->batch->ops[0]->key;
        return true;
    case RKV__RPC__REQUEST__OP_SPLIT:
        *key = msg->split->split_key;
        return true;
    default:
        return false;
    }
}

/* Finds the replica for req. On failure it responds to req with the error
 * and returns NULL. */
static struct rkv_node__replica *request_route(struct rkv_node__request *req,
                                               ProtobufCBinaryData key)
{
    struct rkv_node *node = req->node;
    struct rkv_node__replica *r;

    if (node->cluster_id == 0) {
        rkv_node__request_fail(req, RKV_EUNAVAILABLE,
                               "the cluster is not initialized: run "
                               "`rangekv init`");
        return NULL;
    }
    if (req->msg->has_range_id && req->msg->range_id != 0) {
        r = rkv_node__replica_find(node, req->msg->range_id);
        if (r == NULL || !r->initialized) {
            rkv_node__request_fail(req, RKV_ERANGENOTFOUND,
                                   "no replica of the range on this node");
            return NULL;
        }
        req->range_id = r->range_id;
        if (!rkv_range_desc_contains_key(&r->desc, key.data, key.len)) {
            request_fail_with_replica(req, RKV_EKEYMISMATCH,
                                      "the key is outside the range", r);
            return NULL;
        }
        return r;
    }
    r = rkv_node__replica_for_key(node, key.data, key.len);
    if (r == NULL) {
        rkv_node__request_fail(req, RKV_ERANGENOTFOUND,
                               "no replica on this node holds the key");
        return NULL;
    }
    req->range_id = r->range_id;
    return r;
}

static void request_dispatch_keyed(struct rkv_node__request *req,
                                   ProtobufCBinaryData key)
{
    const Rkv__Rpc__Request *msg = req->msg;
    struct rkv_node__replica *r = request_route(req, key);
    int rv;

    if (r == NULL) {
        return;
    }
    switch (msg->op_case) {
    case RKV__RPC__REQUEST__OP_GET:
        handle_read(req, r,
                    msg->get->has_serializable && msg->get->serializable);
        return;
    case RKV__RPC__REQUEST__OP_SCAN:
        handle_read(req, r,
                    msg->scan->has_serializable && msg->scan->serializable);
        return;
    default:
        break;
    }
    if (r->role != RKV_RAFT_LEADER) {
        request_fail_not_leader(req, r);
        return;
    }
    if (msg->op_case == RKV__RPC__REQUEST__OP_SPLIT) {
        rv = rkv_node__split_start(r, key.data, key.len, req);
        if (rv != 0) {
            request_fail_with_replica(req, rv, rkv_strerror(rv), r);
        }
        return;
    }
    handle_write(req, r);
}

static void request_dispatch(struct rkv_node__request *req)
{
    ProtobufCBinaryData key;

    if (req->node->stopping) {
        rkv_node__request_fail(req, RKV_ESHUTDOWN, "the node is stopping");
        return;
    }
    switch (req->msg->op_case) {
    case RKV__RPC__REQUEST__OP_RANGES:
        handle_ranges(req);
        return;
    case RKV__RPC__REQUEST__OP_STATUS:
        handle_status(req);
        return;
    case RKV__RPC__REQUEST__OP_INIT:
        handle_init(req);
        return;
    default:
        break;
    }
    if (!request_key(req->msg, &key)) {
        rkv_node__request_fail(req, -EINVAL,
                               "invalid request: no operation or an empty "
                               "batch");
        return;
    }
    request_dispatch_keyed(req, key);
}

void rkv_node__requests_expire(struct rkv_node *node, uint64_t now_ms)
{
    while (node->all_head != NULL && node->all_head->deadline_ms <= now_ms) {
        struct rkv_node__request *req = node->all_head;
        struct rkv_node__replica *r =
            rkv_node__replica_find(node, req->range_id);

        /* Unlink from the list it waits on before responding. */
        if (r != NULL && req->wait == RKV_NODE_WAIT_PROPOSAL) {
            rkv_node__request_list_remove(&r->proposals, req);
        } else if (r != NULL && req->wait == RKV_NODE_WAIT_READ) {
            rkv_node__request_list_remove(&r->reads, req);
        } else if (r != NULL && req->wait == RKV_NODE_WAIT_SPLIT) {
            rkv_node__request_list_remove(&r->split_waiters, req);
        }
        RKV_LOG(RKV_DEBUG, "request timed out request=%llu range=%llu",
                (unsigned long long)req->msg->id,
                (unsigned long long)req->range_id);
        rkv_node__request_fail(req, RKV_ETIMEOUT,
                               "the request timed out; a write may still "
                               "apply");
    }
}

/* ---- connections -------------------------------------------------------- */

static int client_frame_cb(struct rkv_node__conn *conn, const uint8_t *payload,
                           size_t payload_len)
{
    struct rkv_node__client *client = conn->data;
    Rkv__Rpc__Request *msg;

    msg = rkv__rpc__request__unpack(NULL, payload_len, payload);
    if (msg == NULL) {
        enum rkv_log_level level = rkv_node__io_malformed_level(conn->io);

        RKV_LOG(level,
                "closing client connection error=malformed request "
                "bytes=%zu malformed=%llu",
                payload_len, (unsigned long long)conn->io->n_malformed);
        return RKV_EMALFORMED;
    }
    client->refs++;
    rkv_node__request_start(client->node, &client->reply, msg);
    return 0;
}

void rkv_node__request_start(struct rkv_node *node,
                             struct rkv_node__reply_to *reply,
                             Rkv__Rpc__Request *msg)
{
    struct rkv_node__request *req;
    uint64_t timeout_ms;
    Rkv__Rpc__Response response = RKV__RPC__RESPONSE__INIT;

    req = rkv_calloc(1, sizeof(*req));
    if (req == NULL) {
        response.id = msg->id;
        response.error = -ENOMEM;
        response.error_message = "out of memory";
        reply->send(reply, &response);
        reply->release(reply);
        rkv__rpc__request__free_unpacked(msg, NULL);
        return;
    }
    req->node = node;
    req->reply = reply;
    req->msg = msg;
    timeout_ms = msg->has_deadline_ms && msg->deadline_ms > 0
                     ? msg->deadline_ms
                     : RKV_NODE_REQUEST_TIMEOUT_MS;
    req->deadline_ms = rkv_node__now_ms(node) + timeout_ms;

    /* Every request joins the deadline list; deadlines are nearly in
     * arrival order, so expiry scans only the head. */
    req->all_prev = node->all_tail;
    if (node->all_tail != NULL) {
        node->all_tail->all_next = req;
    } else {
        node->all_head = req;
    }
    node->all_tail = req;
    node->n_requests++;

    if (node->n_requests > RKV_NODE_REQUESTS_MAX) {
        rkv_node__request_fail(req, RKV_EBUSY,
                               "too many requests in flight on this node");
        return;
    }
    request_dispatch(req);
}

static void client_close_cb(struct rkv_node__conn *conn)
{
    struct rkv_node__client *client = conn->data;
    struct rkv_node *node = client->node;

    node->n_clients--;
    if (client->prev != NULL) {
        client->prev->next = client->next;
    } else {
        node->clients = client->next;
    }
    if (client->next != NULL) {
        client->next->prev = client->prev;
    }
    client_unref(client);
}

static const struct rkv_node__conn_ops client_ops = {
    .frame_cb = client_frame_cb,
    .close_cb = client_close_cb,
};

static void client_listener_cb(uv_stream_t *server, int status)
{
    struct rkv_node *node = server->data;
    struct rkv_node__client *client;
    int rv;

    if (status != 0) {
        RKV_LOG(RKV_WARN, "accepting client failed error=%s",
                uv_strerror(status));
        return;
    }
    client = rkv_calloc(1, sizeof(*client));
    if (client == NULL) {
        return;
    }
    client->node = node;
    client->refs = 1;
    client->reply.send = client_reply_send;
    client->reply.release = client_reply_release;
    rv = rkv_node__conn_init(&client->conn, &node->io, &client_ops, client,
                             "client", RKV_NODE_CLIENT_FRAME_MAX,
                             RKV_NODE_CLIENT_OUT_MAX);
    if (rv != 0) {
        rkv_free(client);
        return;
    }
    client->next = node->clients;
    if (node->clients != NULL) {
        node->clients->prev = client;
    }
    node->clients = client;
    node->n_clients++;
    rv = uv_accept(server, (uv_stream_t *)&client->conn.tcp);
    if (rv == 0) {
        rv = rkv_node__conn_start(&client->conn);
    }
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "accepting client failed error=%s", uv_strerror(rv));
        rkv_node__conn_close(&client->conn);
        return;
    }
    /* Accepted and closed at once, so the backlog does not fill up. */
    if (node->n_clients > node->clients_max) {
        enum rkv_log_level level = rkv_node__refused_level(node);

        RKV_LOG(level,
                "closing connection kind=client error=more than %u client "
                "connections refused=%llu",
                (unsigned)node->clients_max,
                (unsigned long long)node->n_conns_refused);
        rkv_node__conn_close(&client->conn);
    }
}

int rkv_node__rpc_start(struct rkv_node *node)
{
    int rv;

    rv = rkv_node__listen(&node->loop, &node->client_listener,
                          node->client_listen_addr, node->advertise_client_addr,
                          client_listener_cb);
    node->client_listener.data = node;
    return rv;
}

void rkv_node__rpc_close(struct rkv_node *node)
{
    if (node->client_listener.loop != NULL &&
        !uv_is_closing((uv_handle_t *)&node->client_listener)) {
        uv_close((uv_handle_t *)&node->client_listener, NULL);
    }
    for (struct rkv_node__client *c = node->clients; c != NULL; c = c->next) {
        rkv_node__conn_close(&c->conn);
    }
}
