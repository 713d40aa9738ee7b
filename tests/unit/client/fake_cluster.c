/*
 * The fake cluster of fake_cluster.h. Each request gets its reply under the
 * cluster mutex from the shared truth, so the nodes always agree unless a
 * knob or a stale meta copy makes them differ.
 */
#include "tests/unit/client/fake_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/test.h"

#define FAKE_CLUSTER_ID 7

static char *fake_str(ProtobufCBinaryData bytes)
{
    char *s = malloc(bytes.len + 1);

    if (bytes.len > 0) {
        memcpy(s, bytes.data, bytes.len);
    }
    s[bytes.len] = '\0';
    return s;
}

static ProtobufCBinaryData fake_bytes(const char *s)
{
    ProtobufCBinaryData bytes = {strlen(s), (uint8_t *)s};

    return bytes;
}

static bool fake_range_has(const struct fake_range *r, const char *key)
{
    return strcmp(key, r->start) >= 0 &&
           (r->end[0] == '\0' || strcmp(key, r->end) < 0);
}

static struct fake_range *fake_range_for(struct fake_cluster *c,
                                         const char *key)
{
    for (int i = 0; i < c->n_ranges; i++) {
        if (fake_range_has(&c->ranges[i], key)) {
            return &c->ranges[i];
        }
    }
    return NULL;
}

static const struct fake_range *fake_range_by_id(struct fake_cluster *c,
                                                 uint64_t range_id)
{
    for (int i = 0; i < c->n_ranges; i++) {
        if (c->ranges[i].range_id == range_id) {
            return &c->ranges[i];
        }
    }
    return NULL;
}

/* ---- the key-value map ----------------------------------------------------
 */

static int fake_kv_find(struct fake_cluster *c, const char *key, bool *found)
{
    int lo = 0;
    int hi = c->n_kvs;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(c->kvs[mid].key, key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < c->n_kvs && strcmp(c->kvs[lo].key, key) == 0;
    return lo;
}

static void fake_kv_put(struct fake_cluster *c, const char *key,
                        const char *value)
{
    bool found;
    int i = fake_kv_find(c, key, &found);

    if (found) {
        free(c->kvs[i].value);
        c->kvs[i].value = strdup(value);
        return;
    }
    ASSERT_INT_LT(c->n_kvs, FAKE_KEYS_MAX);
    memmove(&c->kvs[i + 1], &c->kvs[i], (c->n_kvs - i) * sizeof(c->kvs[0]));
    c->kvs[i].key = strdup(key);
    c->kvs[i].value = strdup(value);
    c->n_kvs++;
}

static bool fake_kv_delete(struct fake_cluster *c, const char *key)
{
    bool found;
    int i = fake_kv_find(c, key, &found);

    if (!found) {
        return false;
    }
    free(c->kvs[i].key);
    free(c->kvs[i].value);
    memmove(&c->kvs[i], &c->kvs[i + 1], (c->n_kvs - i - 1) * sizeof(c->kvs[0]));
    c->n_kvs--;
    return true;
}

/* ---- replies ----------------------------------------------------------------
 */

/* RangeInfo messages with their replicas, allocated per reply. */
struct fake_infos {
    Rkv__Rpc__RangeInfo infos[FAKE_RANGES_MAX];
    Rkv__Rpc__RangeInfo *ptrs[FAKE_RANGES_MAX];
    Rkv__Rpc__Replica replicas[FAKE_RANGES_MAX][FAKE_NODES_MAX];
    Rkv__Rpc__Replica *replica_ptrs[FAKE_RANGES_MAX][FAKE_NODES_MAX];
    size_t n;
};

static void fake_info_add(struct fake_cluster *c, struct fake_infos *out,
                          const struct fake_range *r)
{
    size_t i = out->n++;
    Rkv__Rpc__RangeInfo *info = &out->infos[i];

    rkv__rpc__range_info__init(info);
    info->range_id = r->range_id;
    info->start_key = fake_bytes(r->start);
    info->end_key = fake_bytes(r->end);
    info->generation = r->generation;
    info->has_leader_node_id = true;
    info->leader_node_id = r->leader_node_id;
    info->has_key_count = true;
    for (int k = 0; k < c->n_kvs; k++) {
        info->key_count += fake_range_has(r, c->kvs[k].key);
    }
    for (int n = 0; n < c->n_nodes; n++) {
        rkv__rpc__replica__init(&out->replicas[i][n]);
        out->replicas[i][n].node_id = c->nodes[n].node_id;
        out->replicas[i][n].replica_id = c->nodes[n].node_id;
        out->replica_ptrs[i][n] = &out->replicas[i][n];
    }
    info->n_replicas = (size_t)c->n_nodes;
    info->replicas = out->replica_ptrs[i];
    out->ptrs[i] = info;
}

static void fake_reply_ranges(struct fake_cluster *c, struct fake_node *node,
                              int fd, Rkv__Rpc__Response *resp)
{
    Rkv__Rpc__RangesResponse ranges = RKV__RPC__RANGES_RESPONSE__INIT;
    Rkv__Rpc__NodeInfo nodes[FAKE_NODES_MAX];
    Rkv__Rpc__NodeInfo *node_ptrs[FAKE_NODES_MAX];
    struct fake_infos *infos = calloc(1, sizeof(*infos));
    const struct fake_range *list = c->meta_is_stale ? c->meta : c->ranges;
    int n_list = c->meta_is_stale ? c->n_meta : c->n_ranges;

    c->n_ranges_requests++;
    for (int i = 0; i < n_list; i++) {
        fake_info_add(c, infos, &list[i]);
    }
    for (int n = 0; n < c->n_nodes; n++) {
        rkv__rpc__node_info__init(&nodes[n]);
        nodes[n].node_id = c->nodes[n].node_id;
        nodes[n].client_addr = (char *)script_server_addr(c->nodes[n].server);
        nodes[n].peer_addr = "127.0.0.1:1";
        node_ptrs[n] = &nodes[n];
    }
    ranges.n_ranges = infos->n;
    ranges.ranges = infos->ptrs;
    ranges.n_nodes = (size_t)c->n_nodes;
    ranges.nodes = node_ptrs;
    resp->result_case = RKV__RPC__RESPONSE__RESULT_RANGES;
    resp->ranges = &ranges;
    script_server_reply(node->server, fd, resp);
    free(infos);
}

static void fake_reply_status(struct fake_cluster *c, struct fake_node *node,
                              int fd, Rkv__Rpc__Response *resp)
{
    Rkv__Rpc__StatusResponse status = RKV__RPC__STATUS_RESPONSE__INIT;

    status.node_id = node->node_id;
    status.cluster_id = FAKE_CLUSTER_ID;
    status.has_n_ranges = true;
    status.n_ranges = (uint64_t)c->n_ranges;
    status.has_n_puts = true;
    status.n_puts = node->n_keyed;
    resp->result_case = RKV__RPC__RESPONSE__RESULT_STATUS;
    resp->status = &status;
    script_server_reply(node->server, fd, resp);
}

static void fake_reply_error(struct fake_node *node, int fd,
                             Rkv__Rpc__Response *resp, int error,
                             const char *message)
{
    resp->error = error;
    resp->error_message = (char *)message;
    script_server_reply(node->server, fd, resp);
}

static void fake_reply_init(struct fake_cluster *c, struct fake_node *node,
                            int fd, Rkv__Rpc__Response *resp)
{
    Rkv__Rpc__InitResponse init = RKV__RPC__INIT_RESPONSE__INIT;

    if (c->init_error != 0) {
        fake_reply_error(node, fd, resp, c->init_error, "already a member");
        return;
    }
    init.cluster_id = FAKE_CLUSTER_ID;
    resp->result_case = RKV__RPC__RESPONSE__RESULT_INIT;
    resp->init = &init;
    script_server_reply(node->server, fd, resp);
}

void fake_split_locked(struct fake_cluster *c, const char *key)
{
    struct fake_range *r = fake_range_for(c, key);
    int i = (int)(r - c->ranges);

    ASSERT_TRUE(r != NULL);
    ASSERT_INT_LT(c->n_ranges, FAKE_RANGES_MAX);
    memmove(&c->ranges[i + 1], &c->ranges[i],
            (c->n_ranges - i) * sizeof(c->ranges[0]));
    c->n_ranges++;
    snprintf(c->ranges[i].end, sizeof(c->ranges[i].end), "%s", key);
    c->ranges[i].generation++;
    snprintf(c->ranges[i + 1].start, sizeof(c->ranges[i + 1].start), "%s", key);
    c->ranges[i + 1].generation = c->ranges[i].generation;
    c->ranges[i + 1].range_id = c->next_range_id++;
    if (!c->meta_is_stale) {
        memcpy(c->meta, c->ranges, sizeof(c->ranges));
        c->n_meta = c->n_ranges;
    }
}

void fake_set_leader_locked(struct fake_cluster *c, uint64_t node_id)
{
    for (int i = 0; i < c->n_ranges; i++) {
        c->ranges[i].leader_node_id = node_id;
    }
}

static void fake_reply_split(struct fake_cluster *c, struct fake_node *node,
                             int fd, const Rkv__Rpc__Request *req,
                             Rkv__Rpc__Response *resp)
{
    Rkv__Rpc__SplitResponse split = RKV__RPC__SPLIT_RESPONSE__INIT;
    struct fake_infos *infos = calloc(1, sizeof(*infos));
    char *key = fake_str(req->split->split_key);
    struct fake_range *r = fake_range_for(c, key);

    if (strcmp(r->start, key) == 0) {
        fake_reply_error(node, fd, resp, -EINVAL, "already a range boundary");
    } else {
        fake_split_locked(c, key);
        r = fake_range_for(c, key);
        fake_info_add(c, infos, r - 1);
        fake_info_add(c, infos, r);
        split.left = &infos->infos[0];
        split.right = &infos->infos[1];
        resp->result_case = RKV__RPC__RESPONSE__RESULT_SPLIT;
        resp->split = &split;
        script_server_reply(node->server, fd, resp);
    }
    free(infos);
    free(key);
}

/* ---- keyed requests -------------------------------------------------------
 */

static void fake_do_scan(struct fake_cluster *c, const struct fake_range *r,
                         const Rkv__Rpc__ScanRequest *scan,
                         Rkv__Rpc__Response *resp, Rkv__Rpc__ScanResponse *out,
                         Rkv__Rpc__KeyValue *kvs, Rkv__Rpc__KeyValue **ptrs)
{
    char *start = fake_str(scan->start_key);
    char *end = fake_str(scan->end_key);
    bool found;
    int i = fake_kv_find(c, start, &found);

    for (; i < c->n_kvs && fake_range_has(r, c->kvs[i].key); i++) {
        if (end[0] != '\0' && strcmp(c->kvs[i].key, end) >= 0) {
            break;
        }
        if (out->n_pairs == scan->limit) {
            out->more_after = true;
            out->has_resume_key = true;
            out->resume_key = fake_bytes(c->kvs[i].key);
            break;
        }
        rkv__rpc__key_value__init(&kvs[out->n_pairs]);
        kvs[out->n_pairs].key = fake_bytes(c->kvs[i].key);
        kvs[out->n_pairs].value = fake_bytes(c->kvs[i].value);
        ptrs[out->n_pairs] = &kvs[out->n_pairs];
        out->n_pairs++;
    }
    /* Cut by the range end rather than the limit or the request's end. */
    if (!out->more_after && r->end[0] != '\0' &&
        (end[0] == '\0' || strcmp(r->end, end) < 0)) {
        out->more_after = true;
        out->has_resume_key = true;
        out->resume_key = fake_bytes(r->end);
    }
    out->pairs = ptrs;
    resp->result_case = RKV__RPC__RESPONSE__RESULT_SCAN;
    resp->scan = out;
    free(start);
    free(end);
}

static void fake_do_cas(struct fake_cluster *c, const Rkv__Rpc__CasRequest *cas,
                        Rkv__Rpc__Response *resp, Rkv__Rpc__CasResponse *out)
{
    char *key = fake_str(cas->key);
    bool found;
    int i = fake_kv_find(c, key, &found);
    bool matches;

    if (cas->has_expected_value) {
        char *expected = fake_str(cas->expected_value);
        matches = found && strcmp(c->kvs[i].value, expected) == 0;
        free(expected);
    } else {
        matches = !found;
    }
    out->swapped = matches;
    if (matches && cas->has_new_value) {
        char *value = fake_str(cas->new_value);
        fake_kv_put(c, key, value);
        free(value);
    } else if (matches) {
        fake_kv_delete(c, key);
    } else if (found) {
        out->has_current_value = true;
        out->current_value = fake_bytes(c->kvs[i].value);
    }
    resp->result_case = RKV__RPC__RESPONSE__RESULT_CAS;
    resp->cas = out;
    free(key);
}

static void fake_do_batch(struct fake_cluster *c,
                          const Rkv__Rpc__BatchRequest *batch)
{
    for (size_t i = 0; i < batch->n_ops; i++) {
        char *key = fake_str(batch->ops[i]->key);
        if (batch->ops[i]->kind == RKV__RPC__BATCH_OP__KIND__DELETE) {
            fake_kv_delete(c, key);
        } else {
            char *value = fake_str(batch->ops[i]->value);
            fake_kv_put(c, key, value);
            free(value);
        }
        free(key);
    }
}

static ProtobufCBinaryData fake_routing_key(const Rkv__Rpc__Request *req)
{
    switch (req->op_case) {
    case RKV__RPC__REQUEST__OP_GET:
        return req->get->key;
    case RKV__RPC__REQUEST__OP_PUT:
        return req->put->key;
    case RKV__RPC__REQUEST__OP_DELETE:
        return req->delete_->key;
    case RKV__RPC__REQUEST__OP_CAS:
        return req->cas->key;
    case RKV__RPC__REQUEST__OP_SCAN:
        return req->scan->start_key;
    default:
        return req->batch->ops[0]->key;
    }
}

/* Sends resp now, or keeps it back for the reverse-order knob. */
static void fake_send(struct fake_cluster *c, struct fake_node *node, int fd,
                      Rkv__Rpc__Response *resp)
{
    size_t len;
    uint8_t *frame;

    if (c->reverse_batch == 0) {
        script_server_reply(node->server, fd, resp);
        return;
    }
    len = rkv__rpc__response__get_packed_size(resp);
    frame = malloc(4 + len);
    rkv_put_be32(frame, (uint32_t)len);
    rkv__rpc__response__pack(resp, frame + 4);
    c->held[c->n_held].server = node->server;
    c->held[c->n_held].fd = fd;
    c->held[c->n_held].frame = frame;
    c->held[c->n_held].frame_len = 4 + len;
    c->n_held++;
    if (c->n_held < c->reverse_batch) {
        return;
    }
    while (c->n_held > 0) {
        struct fake_held *h = &c->held[--c->n_held];
        script_server_write_raw(h->server, h->fd, h->frame, h->frame_len);
        free(h->frame);
    }
}

/* Applies a request the leader accepted. */
static void fake_apply(struct fake_cluster *c, struct fake_node *node, int fd,
                       const struct fake_range *r, const Rkv__Rpc__Request *req,
                       Rkv__Rpc__Response *resp)
{
    Rkv__Rpc__GetResponse get = RKV__RPC__GET_RESPONSE__INIT;
    Rkv__Rpc__DeleteResponse del = RKV__RPC__DELETE_RESPONSE__INIT;
    Rkv__Rpc__CasResponse cas = RKV__RPC__CAS_RESPONSE__INIT;
    Rkv__Rpc__ScanResponse scan = RKV__RPC__SCAN_RESPONSE__INIT;
    Rkv__Rpc__KeyValue *kvs = calloc(FAKE_KEYS_MAX, sizeof(*kvs));
    Rkv__Rpc__KeyValue **ptrs = calloc(FAKE_KEYS_MAX, sizeof(*ptrs));
    char *key = fake_str(fake_routing_key(req));
    char *value;
    bool found;
    int i;

    switch (req->op_case) {
    case RKV__RPC__REQUEST__OP_GET:
        i = fake_kv_find(c, key, &found);
        get.found = found;
        get.has_value = found;
        get.value = found ? fake_bytes(c->kvs[i].value) : get.value;
        resp->result_case = RKV__RPC__RESPONSE__RESULT_GET;
        resp->get = &get;
        break;
    case RKV__RPC__REQUEST__OP_PUT:
        value = fake_str(req->put->value);
        fake_kv_put(c, key, value);
        free(value);
        break;
    case RKV__RPC__REQUEST__OP_DELETE:
        del.existed = fake_kv_delete(c, key);
        resp->result_case = RKV__RPC__RESPONSE__RESULT_DELETE;
        resp->delete_ = &del;
        break;
    case RKV__RPC__REQUEST__OP_CAS:
        fake_do_cas(c, req->cas, resp, &cas);
        break;
    case RKV__RPC__REQUEST__OP_SCAN:
        fake_do_scan(c, r, req->scan, resp, &scan, kvs, ptrs);
        break;
    default:
        fake_do_batch(c, req->batch);
        break;
    }
    if (fd >= 0) {
        fake_send(c, node, fd, resp);
    }
    free(key);
    free(kvs);
    free(ptrs);
}

/* Applies the failure knobs; returns true when the request was handled. */
static bool fake_inject(struct fake_cluster *c, struct fake_node *node, int fd,
                        const struct fake_range *r,
                        const Rkv__Rpc__Request *req, Rkv__Rpc__Response *resp)
{
    bool is_get = req->op_case == RKV__RPC__REQUEST__OP_GET;
    bool is_put = req->op_case == RKV__RPC__REQUEST__OP_PUT;

    if (c->n_unavailable > 0) {
        c->n_unavailable--;
        fake_reply_error(node, fd, resp, RKV_EUNAVAILABLE, "no quorum");
        return true;
    }
    if (c->hold_all) {
        return true;
    }
    if (is_put && c->n_put_error > 0) {
        c->n_put_error--;
        fake_reply_error(node, fd, resp, c->put_error, "injected");
        return true;
    }
    if (is_get && c->n_get_error > 0) {
        c->n_get_error--;
        fake_reply_error(node, fd, resp, c->get_error, "injected");
        return true;
    }
    if (is_get && c->n_drop_get > 0) {
        c->n_drop_get--;
        script_server_drop(node->server, fd);
        return true;
    }
    if (is_get && c->n_bad_frame_get > 0) {
        c->n_bad_frame_get--;
        script_server_write_raw(node->server, fd, c->bad_frame,
                                c->bad_frame_len);
        return true;
    }
    if (is_put && c->n_drop_put > 0) {
        c->n_drop_put--;
        if (c->drop_put_applies) {
            fake_apply(c, node, -1, r, req, resp);
        }
        script_server_drop(node->server, fd);
        return true;
    }
    return false;
}

static void fake_keyed(struct fake_cluster *c, struct fake_node *node, int fd,
                       const Rkv__Rpc__Request *req, Rkv__Rpc__Response *resp)
{
    char *key = fake_str(fake_routing_key(req));
    struct fake_range *r = fake_range_for(c, key);
    struct fake_infos *infos = calloc(1, sizeof(*infos));

    node->n_keyed++;
    c->last_range_id_seen = req->has_range_id ? req->range_id : 0;
    if (req->has_range_id && req->range_id != 0 &&
        req->range_id != r->range_id) {
        /* Like a node: the descriptor of the range the request named, if
         * this node has it, or of the key's range when the knob says so. */
        const struct fake_range *named = fake_range_by_id(c, req->range_id);
        if (c->mismatch_sends_key_range || named == NULL) {
            named = r;
        }
        fake_info_add(c, infos, named);
        resp->n_descriptors = infos->n;
        resp->descriptors = infos->ptrs;
        fake_reply_error(node, fd, resp, RKV_EKEYMISMATCH, "key outside");
    } else if (r->leader_node_id != node->node_id) {
        struct fake_node *leader = &c->nodes[r->leader_node_id - 1];
        resp->has_leader_node_id = true;
        resp->leader_node_id = r->leader_node_id;
        resp->leader_client_addr = (char *)script_server_addr(leader->server);
        fake_reply_error(node, fd, resp, RKV_ENOTLEADER, "not leader");
    } else if (!fake_inject(c, node, fd, r, req, resp)) {
        fake_apply(c, node, fd, r, req, resp);
    }
    free(infos);
    free(key);
}

static void fake_handle(struct script_server *server, int fd,
                        const Rkv__Rpc__Request *req, void *data)
{
    struct fake_node *node = data;
    struct fake_cluster *c = node->cluster;
    Rkv__Rpc__Response resp = RKV__RPC__RESPONSE__INIT;

    (void)server;
    resp.id = req->id;
    pthread_mutex_lock(&c->mutex);
    switch (req->op_case) {
    case RKV__RPC__REQUEST__OP_RANGES:
        fake_reply_ranges(c, node, fd, &resp);
        break;
    case RKV__RPC__REQUEST__OP_STATUS:
        fake_reply_status(c, node, fd, &resp);
        break;
    case RKV__RPC__REQUEST__OP_SPLIT:
        fake_reply_split(c, node, fd, req, &resp);
        break;
    case RKV__RPC__REQUEST__OP_INIT:
        fake_reply_init(c, node, fd, &resp);
        break;
    default:
        fake_keyed(c, node, fd, req, &resp);
        break;
    }
    pthread_mutex_unlock(&c->mutex);
}

struct fake_cluster *fake_start(int n_nodes)
{
    struct fake_cluster *c = calloc(1, sizeof(*c));

    ASSERT_TRUE(c != NULL);
    ASSERT_INT_LE(n_nodes, FAKE_NODES_MAX);
    pthread_mutex_init(&c->mutex, NULL);
    c->n_nodes = n_nodes;
    c->n_ranges = 1;
    c->ranges[0].range_id = 1;
    c->ranges[0].generation = 1;
    c->ranges[0].leader_node_id = 1;
    c->next_range_id = 2;
    memcpy(c->meta, c->ranges, sizeof(c->ranges));
    c->n_meta = c->n_ranges;
    for (int i = 0; i < n_nodes; i++) {
        c->nodes[i].cluster = c;
        c->nodes[i].node_id = (uint64_t)i + 1;
    }
    for (int i = 0; i < n_nodes; i++) {
        c->nodes[i].server = script_server_start(fake_handle, &c->nodes[i]);
    }
    return c;
}

void fake_stop(struct fake_cluster *c)
{
    for (int i = 0; i < c->n_nodes; i++) {
        script_server_stop(c->nodes[i].server);
    }
    for (int i = 0; i < c->n_kvs; i++) {
        free(c->kvs[i].key);
        free(c->kvs[i].value);
    }
    for (int i = 0; i < c->n_held; i++) {
        free(c->held[i].frame);
    }
    pthread_mutex_destroy(&c->mutex);
    free(c);
}

void fake_lock(struct fake_cluster *c)
{
    pthread_mutex_lock(&c->mutex);
}

void fake_unlock(struct fake_cluster *c)
{
    pthread_mutex_unlock(&c->mutex);
}

const char *fake_addr(struct fake_cluster *c, int node_index)
{
    return script_server_addr(c->nodes[node_index].server);
}
