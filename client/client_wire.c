/*
 * Encoding of client requests into node/rpc.proto frames and decoding of
 * replies into client results. This is the only file of the client library
 * that uses the generated protobuf-c types, so a change of the protocol
 * stays here.
 *
 * Frames: a 4-byte big-endian payload length, then one packed Request. The
 * payload is packed straight into the connection's output buffer, so a
 * request costs no intermediate copy.
 *
 * Pair checks: a request is checked against the op before encoding (the
 * oneof matches the kind), and a reply is checked after decoding (the result
 * case matches the kind, required sub-messages are present); a reply that
 * fails is RKV_EMALFORMED.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "node/rpc.pb-c.h"

static ProtobufCBinaryData wire_bytes(const uint8_t *data, size_t len)
{
    ProtobufCBinaryData bytes;

    bytes.data = (uint8_t *)data;
    bytes.len = len;
    return bytes;
}

/* Fills the batch request; ops and items are caller storage of n_ops. */
static void wire_fill_batch(const struct rkv_client__op *op,
                            Rkv__Rpc__BatchRequest *batch,
                            Rkv__Rpc__BatchOp *items,
                            Rkv__Rpc__BatchOp **item_ptrs)
{
    for (size_t i = 0; i < op->n_batch_ops; i++) {
        const struct rkv_client_batch_op *b = &op->batch_ops[i];

        rkv__rpc__batch_op__init(&items[i]);
        items[i].kind = b->is_delete ? RKV__RPC__BATCH_OP__KIND__DELETE
                                     : RKV__RPC__BATCH_OP__KIND__PUT;
        items[i].key = wire_bytes(b->key, b->key_len);
        if (!b->is_delete) {
            items[i].has_value = true;
            items[i].value = wire_bytes(b->value, b->value_len);
        }
        item_ptrs[i] = &items[i];
    }
    batch->n_ops = op->n_batch_ops;
    batch->ops = item_ptrs;
}

/* Sub-messages of one request; only the one for the op's kind is used. */
struct wire_request_parts {
    Rkv__Rpc__GetRequest get;
    Rkv__Rpc__PutRequest put;
    Rkv__Rpc__DeleteRequest del;
    Rkv__Rpc__CasRequest cas;
    Rkv__Rpc__ScanRequest scan;
    Rkv__Rpc__BatchRequest batch;
    Rkv__Rpc__RangesRequest ranges;
    Rkv__Rpc__SplitRequest split;
    Rkv__Rpc__StatusRequest status;
    Rkv__Rpc__InitRequest init;
};

/* Points request's oneof at the part for op->kind. The scan starts at the
 * op's cursor, which moves across ranges. */
static void wire_fill_op(const struct rkv_client__op *op,
                         Rkv__Rpc__Request *request,
                         struct wire_request_parts *p)
{
    switch (op->kind) {
    case RKV_CLIENT_GET:
        rkv__rpc__get_request__init(&p->get);
        p->get.key = wire_bytes(op->key, op->key_len);
        p->get.has_serializable = op->serializable;
        p->get.serializable = op->serializable;
        request->op_case = RKV__RPC__REQUEST__OP_GET;
        request->get = &p->get;
        break;
    case RKV_CLIENT_PUT:
        rkv__rpc__put_request__init(&p->put);
        p->put.key = wire_bytes(op->key, op->key_len);
        p->put.value = wire_bytes(op->value, op->value_len);
        request->op_case = RKV__RPC__REQUEST__OP_PUT;
        request->put = &p->put;
        break;
    case RKV_CLIENT_DELETE:
        rkv__rpc__delete_request__init(&p->del);
        p->del.key = wire_bytes(op->key, op->key_len);
        request->op_case = RKV__RPC__REQUEST__OP_DELETE;
        request->delete_ = &p->del;
        break;
    case RKV_CLIENT_CAS:
        rkv__rpc__cas_request__init(&p->cas);
        p->cas.key = wire_bytes(op->key, op->key_len);
        p->cas.has_expected_value = op->has_expected;
        p->cas.expected_value = wire_bytes(op->expected, op->expected_len);
        p->cas.has_new_value = op->has_value;
        p->cas.new_value = wire_bytes(op->value, op->value_len);
        request->op_case = RKV__RPC__REQUEST__OP_CAS;
        request->cas = &p->cas;
        break;
    case RKV_CLIENT_SCAN:
        rkv__rpc__scan_request__init(&p->scan);
        p->scan.start_key = wire_bytes(op->cursor, op->cursor_len);
        p->scan.end_key = wire_bytes(op->end_key, op->end_key_len);
        p->scan.limit = op->limit - (uint32_t)op->result.n_pairs;
        p->scan.has_serializable = op->serializable;
        p->scan.serializable = op->serializable;
        request->op_case = RKV__RPC__REQUEST__OP_SCAN;
        request->scan = &p->scan;
        break;
    case RKV_CLIENT_BATCH:
        /* The caller fills the items; only the case is set here. */
        rkv__rpc__batch_request__init(&p->batch);
        request->op_case = RKV__RPC__REQUEST__OP_BATCH;
        request->batch = &p->batch;
        break;
    case RKV_CLIENT__OP_RANGES:
        rkv__rpc__ranges_request__init(&p->ranges);
        request->op_case = RKV__RPC__REQUEST__OP_RANGES;
        request->ranges = &p->ranges;
        break;
    case RKV_CLIENT__OP_SPLIT:
        rkv__rpc__split_request__init(&p->split);
        p->split.split_key = wire_bytes(op->key, op->key_len);
        request->op_case = RKV__RPC__REQUEST__OP_SPLIT;
        request->split = &p->split;
        break;
    case RKV_CLIENT__OP_STATUS:
        rkv__rpc__status_request__init(&p->status);
        request->op_case = RKV__RPC__REQUEST__OP_STATUS;
        request->status = &p->status;
        break;
    case RKV_CLIENT__OP_INIT:
        rkv__rpc__init_request__init(&p->init);
        request->op_case = RKV__RPC__REQUEST__OP_INIT;
        request->init = &p->init;
        break;
    default:
        assert(false);
    }
}

/* Packs request with its length prefix at the end of out. */
static int wire_pack_frame(const Rkv__Rpc__Request *request,
                           struct rkv_client__buf *out)
{
    size_t len = rkv__rpc__request__get_packed_size(request);
    size_t packed_len;
    int rv;

    if (len > RKV_CLIENT_FRAME_MAX) {
        return RKV_ETOOLARGE;
    }
    rv = rkv_client__buf_reserve(out, RKV_CLIENT_FRAME_HEADER_LEN + len);
    if (rv != 0) {
        return rv;
    }
    rkv_put_be32(out->data + out->len, (uint32_t)len);
    packed_len = rkv__rpc__request__pack(
        request, out->data + out->len + RKV_CLIENT_FRAME_HEADER_LEN);
    assert(packed_len == len);
    out->len += RKV_CLIENT_FRAME_HEADER_LEN + len;
    return 0;
}

int rkv_client__wire_encode(const struct rkv_client__op *op, uint64_t id,
                            uint64_t range_id, uint64_t generation,
                            uint64_t deadline_ms, struct rkv_client__buf *out)
{
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    struct wire_request_parts parts;
    Rkv__Rpc__BatchOp *items = NULL;
    Rkv__Rpc__BatchOp **item_ptrs = NULL;
    int rv;

    assert(id != 0);
    assert(op->kind != RKV_CLIENT_SCAN || op->result.n_pairs < op->limit);

    request.id = id;
    request.has_range_id = range_id != 0;
    request.range_id = range_id;
    request.has_range_generation = range_id != 0;
    request.range_generation = generation;
    request.has_deadline_ms = true;
    request.deadline_ms = deadline_ms;
    wire_fill_op(op, &request, &parts);

    if (op->kind == RKV_CLIENT_BATCH) {
        items = rkv_malloc(op->n_batch_ops * sizeof(*items));
        item_ptrs = rkv_malloc(op->n_batch_ops * sizeof(*item_ptrs));
        if (items == NULL || item_ptrs == NULL) {
            rv = -ENOMEM;
            goto err_after_alloc;
        }
        wire_fill_batch(op, &parts.batch, items, item_ptrs);
    }

    rv = wire_pack_frame(&request, out);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rkv_free(items);
    rkv_free(item_ptrs);
    return 0;

err_after_alloc:
    rkv_free(items);
    rkv_free(item_ptrs);
    assert(rv != 0);
    return rv;
}

int rkv_client__wire_decode(const uint8_t *payload, size_t payload_len,
                            struct rkv_client__reply *reply)
{
    Rkv__Rpc__Response *msg;

    msg = rkv__rpc__response__unpack(NULL, payload_len, payload);
    if (msg == NULL) {
        return RKV_EMALFORMED;
    }
    /* A success carries no error text; an error is negative. */
    if (msg->error > 0) {
        rkv__rpc__response__free_unpacked(msg, NULL);
        return RKV_EMALFORMED;
    }
    reply->id = msg->id;
    reply->error = msg->error;
    reply->error_message = msg->error_message;
    reply->leader_node_id = msg->has_leader_node_id ? msg->leader_node_id : 0;
    reply->leader_addr = msg->leader_client_addr;
    reply->msg = msg;
    return 0;
}

void rkv_client__wire_reply_free(struct rkv_client__reply *reply)
{
    if (reply->msg != NULL) {
        rkv__rpc__response__free_unpacked(reply->msg, NULL);
        reply->msg = NULL;
    }
}

/* Converts a RangeInfo into a cache descriptor borrowing its keys. Returns
 * false when the descriptor is inconsistent. */
static bool wire_range_from_info(const Rkv__Rpc__RangeInfo *info,
                                 struct rkv_client__range *range)
{
    size_t n = 0;

    memset(range, 0, sizeof(*range));
    range->range_id = info->range_id;
    range->generation = info->generation;
    range->start_key = info->start_key.data;
    range->start_key_len = info->start_key.len;
    range->end_key = info->end_key.data;
    range->end_key_len = info->end_key.len;
    range->leader_node_id = info->has_leader_node_id ? info->leader_node_id : 0;
    /* Voters first: learners never lead, so they are the last resort. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < info->n_replicas; i++) {
            const Rkv__Rpc__Replica *r = info->replicas[i];
            if ((pass == 0) != !r->learner || n == RKV_CLIENT_REPLICAS_MAX) {
                continue;
            }
            range->replica_node_ids[n++] = r->node_id;
        }
    }
    range->n_replicas = n;
    if (range->end_key_len == 0) {
        return true;
    }
    return rkv_client__key_compare(range->start_key, range->start_key_len,
                                   range->end_key, range->end_key_len) < 0;
}

static int wire_learn_ranges(struct rkv_client *client,
                             Rkv__Rpc__RangeInfo **infos, size_t n_infos)
{
    for (size_t i = 0; i < n_infos; i++) {
        struct rkv_client__range range;
        int rv;

        if (!wire_range_from_info(infos[i], &range)) {
            RKV_LOG(RKV_WARN, "ignored invalid descriptor range=%llu",
                    (unsigned long long)infos[i]->range_id);
            continue;
        }
        rv = rkv_client__cache_install(&client->cache, &range);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int wire_learn_nodes(struct rkv_client *client,
                            Rkv__Rpc__NodeInfo **nodes, size_t n_nodes)
{
    for (size_t i = 0; i < n_nodes; i++) {
        /* A node whose address its peers do not know yet is skipped. */
        if (nodes[i]->client_addr == NULL || nodes[i]->client_addr[0] == '\0' ||
            nodes[i]->node_id == 0) {
            continue;
        }
        if (rkv_client__node_learn(client, nodes[i]->node_id,
                                   nodes[i]->client_addr) == NULL) {
            return -ENOMEM;
        }
    }
    return 0;
}

int rkv_client__wire_learn(struct rkv_client *client,
                           const struct rkv_client__reply *reply)
{
    const Rkv__Rpc__Response *msg = reply->msg;
    size_t n = msg->n_descriptors;
    int rv;

    rv = wire_learn_ranges(client, msg->descriptors, msg->n_descriptors);
    if (rv != 0) {
        return rv;
    }
    if (msg->result_case == RKV__RPC__RESPONSE__RESULT_RANGES) {
        /* Nodes first, so the leaders of the ranges have addresses. */
        rv = wire_learn_nodes(client, msg->ranges->nodes, msg->ranges->n_nodes);
        if (rv != 0) {
            return rv;
        }
        rv = wire_learn_ranges(client, msg->ranges->ranges,
                               msg->ranges->n_ranges);
        if (rv != 0) {
            return rv;
        }
        n += msg->ranges->n_ranges;
    }
    if (msg->result_case == RKV__RPC__RESPONSE__RESULT_SPLIT) {
        Rkv__Rpc__RangeInfo *sides[2] = {msg->split->left, msg->split->right};
        rv = wire_learn_ranges(client, sides, 2);
        if (rv != 0) {
            return rv;
        }
    }
    return (int)RKV_MIN(n, (size_t)INT32_MAX);
}

/* Copies len bytes into a new allocation the result owns. */
static uint8_t *wire_dup(const uint8_t *data, size_t len)
{
    uint8_t *copy = rkv_malloc(RKV_MAX(len, (size_t)1));

    if (copy != NULL && len > 0) {
        memcpy(copy, data, len);
    }
    return copy;
}

static int wire_take_scan(struct rkv_client__op *op,
                          const Rkv__Rpc__ScanResponse *scan)
{
    struct rkv_client_result *result = &op->result;

    if (result->n_pairs + scan->n_pairs > op->limit) {
        return RKV_EMALFORMED;
    }
    if (result->n_pairs + scan->n_pairs > op->pairs_cap) {
        size_t cap =
            RKV_MAX(op->pairs_cap * 2, result->n_pairs + scan->n_pairs);
        struct rkv_client_kv *pairs =
            rkv_realloc(result->pairs, cap * sizeof(*pairs));
        if (pairs == NULL) {
            return -ENOMEM;
        }
        result->pairs = pairs;
        op->pairs_cap = cap;
    }
    for (size_t i = 0; i < scan->n_pairs; i++) {
        const Rkv__Rpc__KeyValue *kv = scan->pairs[i];
        struct rkv_client_kv *out = &result->pairs[result->n_pairs];

        out->key = wire_dup(kv->key.data, kv->key.len);
        out->value = wire_dup(kv->value.data, kv->value.len);
        if (out->key == NULL || out->value == NULL) {
            rkv_free(out->key);
            rkv_free(out->value);
            return -ENOMEM;
        }
        out->key_len = kv->key.len;
        out->value_len = kv->value.len;
        result->n_pairs++;
    }
    return 0;
}

static int wire_take_ranges(struct rkv_client__op *op,
                            const Rkv__Rpc__RangesResponse *msg)
{
    op->ranges =
        rkv_calloc(RKV_MAX(msg->n_ranges, (size_t)1), sizeof(*op->ranges));
    op->node_addrs =
        rkv_calloc(RKV_MAX(msg->n_nodes, (size_t)1), sizeof(*op->node_addrs));
    if (op->ranges == NULL || op->node_addrs == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < msg->n_ranges; i++) {
        const Rkv__Rpc__RangeInfo *info = msg->ranges[i];
        struct rkv_client_range *out = &op->ranges[i];

        out->range_id = info->range_id;
        out->generation = info->generation;
        out->leader_node_id =
            info->has_leader_node_id ? info->leader_node_id : 0;
        out->live_bytes = info->live_bytes;
        out->key_count = info->key_count;
        out->n_replicas =
            RKV_MIN(info->n_replicas, RKV_ARRAY_SIZE(out->replica_node_ids));
        for (size_t r = 0; r < out->n_replicas; r++) {
            out->replica_node_ids[r] = info->replicas[r]->node_id;
        }
        out->start_key = wire_dup(info->start_key.data, info->start_key.len);
        out->end_key = wire_dup(info->end_key.data, info->end_key.len);
        op->n_ranges++;
        if (out->start_key == NULL || out->end_key == NULL) {
            return -ENOMEM;
        }
        out->start_key_len = info->start_key.len;
        out->end_key_len = info->end_key.len;
    }
    for (size_t i = 0; i < msg->n_nodes; i++) {
        op->node_addrs[i] = strdup(msg->nodes[i]->client_addr);
        if (op->node_addrs[i] == NULL) {
            return -ENOMEM;
        }
        op->n_node_addrs++;
    }
    return 0;
}

static void wire_take_status(struct rkv_client__op *op,
                             const Rkv__Rpc__StatusResponse *msg)
{
    struct rkv_client_node_status *s = &op->status;

    s->node_id = msg->node_id;
    s->cluster_id = msg->cluster_id;
    s->n_ranges = msg->n_ranges;
    s->n_leaders = msg->n_leaders;
    s->n_proposals = msg->n_proposals;
    s->n_commits = msg->n_commits;
    s->n_fsyncs = msg->n_fsyncs;
    s->n_entries_applied = msg->n_entries_applied;
    s->n_puts = msg->n_puts;
    s->uptime_ms = msg->uptime_ms;
    s->cpu_user_ms = msg->cpu_user_ms;
    s->cpu_system_ms = msg->cpu_system_ms;
    s->n_bytes_sent = msg->n_bytes_sent;
    s->n_bytes_received = msg->n_bytes_received;
    s->n_quiesced = msg->n_quiesced;
}

/* Fills the GET or CAS value of the result. */
static int wire_take_value(struct rkv_client__op *op, bool has_value,
                           const ProtobufCBinaryData *value)
{
    if (!has_value) {
        return 0;
    }
    op->result.value = wire_dup(value->data, value->len);
    if (op->result.value == NULL) {
        return -ENOMEM;
    }
    op->result.value_len = value->len;
    return 0;
}

int rkv_client__wire_take_result(struct rkv_client__op *op,
                                 const struct rkv_client__reply *reply,
                                 const uint8_t **scan_next,
                                 size_t *scan_next_len, bool *scan_more)
{
    const Rkv__Rpc__Response *msg = reply->msg;
    int rv;

    assert(reply->error == 0);

    switch (op->kind) {
    case RKV_CLIENT_GET:
        if (msg->result_case != RKV__RPC__RESPONSE__RESULT_GET) {
            return RKV_EMALFORMED;
        }
        op->result.found = msg->get->found;
        return wire_take_value(op, msg->get->found && msg->get->has_value,
                               &msg->get->value);
    case RKV_CLIENT_DELETE:
        /* A node may omit the body; the delete still happened. */
        op->result.found =
            msg->result_case == RKV__RPC__RESPONSE__RESULT_DELETE &&
            msg->delete_->existed;
        return 0;
    case RKV_CLIENT_CAS:
        if (msg->result_case != RKV__RPC__RESPONSE__RESULT_CAS) {
            return RKV_EMALFORMED;
        }
        op->result.found = msg->cas->swapped;
        return wire_take_value(op, msg->cas->has_current_value,
                               &msg->cas->current_value);
    case RKV_CLIENT_SCAN:
        if (msg->result_case != RKV__RPC__RESPONSE__RESULT_SCAN) {
            return RKV_EMALFORMED;
        }
        rv = wire_take_scan(op, msg->scan);
        if (rv != 0) {
            return rv;
        }
        *scan_more = msg->scan->more_after;
        *scan_next =
            msg->scan->has_resume_key ? msg->scan->resume_key.data : NULL;
        *scan_next_len = msg->scan->resume_key.len;
        return 0;
    case RKV_CLIENT__OP_RANGES:
        if (msg->result_case != RKV__RPC__RESPONSE__RESULT_RANGES) {
            return RKV_EMALFORMED;
        }
        return wire_take_ranges(op, msg->ranges);
    case RKV_CLIENT__OP_STATUS:
        if (msg->result_case != RKV__RPC__RESPONSE__RESULT_STATUS) {
            return RKV_EMALFORMED;
        }
        wire_take_status(op, msg->status);
        return 0;
    case RKV_CLIENT__OP_INIT:
        if (msg->result_case != RKV__RPC__RESPONSE__RESULT_INIT) {
            return RKV_EMALFORMED;
        }
        op->status.cluster_id = msg->init->cluster_id;
        return 0;
    default:
        /* PUT, BATCH and SPLIT succeed without a body. */
        return 0;
    }
}
