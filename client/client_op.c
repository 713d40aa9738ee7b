/*
 * The life of one op on the loop thread: routing to a range's leader,
 * retries with backoff, scans across ranges, deadlines and completion.
 *
 * Happy path: op_start() looks up the range holding the op's key in the
 * cache, picks the connection of its leader and queues the frame there
 * (INFLIGHT). The reply arrives through rkv_client__op_on_reply(), the
 * result is filled and rkv_client__op_complete() hands it to the caller. A
 * scan that reaches the end of one range goes through op_start() again from
 * the next key, until its limit or its end key.
 *
 * Failure modes and what each does:
 *   - no cached range for the key: the op waits in cache_wait while one
 *     RangesRequest (the refresh op) reloads the cache from any node. When
 *     the refresh does not place the key either (the meta span lags a
 *     split), the op is routed by key: sent with range id 0 to any node,
 *     which finds the range itself. Within RKV_CLIENT_REFRESH_INTERVAL_MS
 *     of a refresh, a key the cache cannot place goes by key at once;
 *   - RKV_ENOTLEADER: the hinted leader is recorded and the op goes there at
 *     once; without a new hint it backs off (an election is running);
 *   - RKV_EKEYMISMATCH: the descriptors in the reply replace the cached
 *     ones and the op is routed again at once, by key when they do not
 *     place it (a node sends the new bounds of the range that was named);
 *   - RKV_ERANGENOTFOUND, RKV_ESTALE: the range is evicted and the op
 *     backs off;
 *   - RKV_EUNAVAILABLE, RKV_ESPLITTING, RKV_EBUSY: backoff;
 *   - RKV_EDROPPED: backoff, for writes too, because the node sends it only
 *     when another entry took the proposal's log index;
 *   - RKV_ETIMEOUT or RKV_ESHUTDOWN from the node: a read backs off, but a
 *     write may have been applied, so it ends as RKV_EUNKNOWN;
 *   - RKV_EUNKNOWN from the node (its replica caught up past the write's
 *     log entry by snapshot): the write ends as RKV_EUNKNOWN;
 *   - the connection drops: a read backs off and is re-routed, and so does a
 *     write whose frame never reached the socket. A sent write ends as
 *     RKV_EUNKNOWN;
 *   - the deadline passes: RKV_ETIMEOUT, except for a write whose frame
 *     was queued or sent, which ends as RKV_EUNKNOWN because the frame
 *     still reaches the node.
 * Redirects are followed at once at most RKV_CLIENT_REDIRECTS_MAX times in
 * a row; past that the op backs off, so two nodes that disagree about the
 * leader cannot spin the loop.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void op_retry_later(struct rkv_client__op *op, int reason);
static const uint8_t *op_routing_key(const struct rkv_client__op *op,
                                     size_t *key_len);

static bool op_is_write(const struct rkv_client__op *op)
{
    switch (op->kind) {
    case RKV_CLIENT_PUT:
    case RKV_CLIENT_DELETE:
    case RKV_CLIENT_CAS:
    case RKV_CLIENT_BATCH:
    case RKV_CLIENT__OP_SPLIT:
    case RKV_CLIENT__OP_INIT:
        return true;
    default:
        return false;
    }
}

/* True when the op's frame was handed to the socket. */
static bool op_was_sent(const struct rkv_client__op *op)
{
    assert(op->conn != NULL);
    return op->frame_seq <= op->conn->n_frames_handed;
}

/* ---- id table ----------------------------------------------------------- */

static struct rkv_client__op **id_slot(struct rkv_client *client, uint64_t id)
{
    return &client->id_table[id & (RKV_CLIENT_ID_BUCKETS - 1)];
}

static void id_insert(struct rkv_client__op *op)
{
    struct rkv_client__op **slot = id_slot(op->client, op->id);

    op->id_next = *slot;
    *slot = op;
}

static void id_remove(struct rkv_client__op *op)
{
    struct rkv_client__op **slot = id_slot(op->client, op->id);

    while (*slot != NULL) {
        if (*slot == op) {
            *slot = op->id_next;
            op->id_next = NULL;
            return;
        }
        slot = &(*slot)->id_next;
    }
    assert(false);
}

struct rkv_client__op *rkv_client__id_take(struct rkv_client *client,
                                           uint64_t id,
                                           const struct rkv_client__conn *c)
{
    struct rkv_client__op *op;

    for (op = *id_slot(client, id); op != NULL; op = op->id_next) {
        if (op->id == id) {
            break;
        }
    }
    if (op == NULL || op->conn != c) {
        return NULL;
    }
    id_remove(op);
    return op;
}

/* ---- completion --------------------------------------------------------- */

void rkv_client__op_free(struct rkv_client__op *op)
{
    rkv_client_result_free(&op->result);
    if (op->ranges != NULL) {
        rkv_client_ranges_free(op->ranges, op->n_ranges);
    }
    if (op->node_addrs != NULL) {
        rkv_client_strings_free(op->node_addrs, op->n_node_addrs);
    }
    rkv_free(op->cursor);
    rkv_free(op->arena);
    rkv_free(op);
}

/* Takes op off whatever list its state puts it on. */
static void op_detach(struct rkv_client__op *op)
{
    switch (op->state) {
    case RKV_CLIENT_OP_INFLIGHT:
        id_remove(op);
        rkv_client__list_remove(&op->link);
        break;
    case RKV_CLIENT_OP_SUBMITTED:
    case RKV_CLIENT_OP_WAIT_CACHE:
    case RKV_CLIENT_OP_BACKOFF:
        rkv_client__list_remove(&op->link);
        break;
    case RKV_CLIENT_OP_ROUTING:
        break;
    case RKV_CLIENT_OP_DONE:
        assert(false);
    }
    op->conn = NULL;
    rkv_client__list_remove(&op->all_link);
}

/* Routes the ops that waited for the cache refresh that just ended. */
static void op_resume_cache_waiters(struct rkv_client *client, int rv)
{
    struct rkv_client__link waiters;
    const uint8_t *key;
    size_t key_len;

    rkv_client__link_init(&waiters);
    rkv_client__list_splice(&waiters, &client->cache_wait);
    while (!rkv_client__list_is_empty(&waiters)) {
        struct rkv_client__op *op =
            RKV_CLIENT_CONTAINER(waiters.next, struct rkv_client__op, link);
        rkv_client__list_remove(&op->link);
        op->state = RKV_CLIENT_OP_ROUTING;
        if (rv != 0) {
            op_retry_later(op, rv);
            continue;
        }
        /* The meta span can lag a split, so the refresh may not cover the
         * key. A node still routes it by its own descriptors. */
        key = op_routing_key(op, &key_len);
        if (rkv_client__cache_lookup(&client->cache, key, key_len) == NULL) {
            op->is_routed_by_key = true;
        }
        rkv_client__op_start(op);
    }
}

void rkv_client__op_complete(struct rkv_client__op *op, int rv)
{
    struct rkv_client *client = op->client;
    struct rkv_client_result *result = &op->result;

    op_detach(op);
    op->state = RKV_CLIENT_OP_DONE;
    result->rv = rv;
    if (rv != 0 && result->error_message[0] == '\0') {
        snprintf(result->error_message, sizeof(result->error_message), "%s",
                 rkv_strerror(rv));
    }

    if (op->is_refresh) {
        assert(client->refresh == op);
        client->refresh = NULL;
        if (rv == 0) {
            client->refreshed_at_ms = rkv_monotonic_ms();
        }
        rkv_client__op_free(op);
        op_resume_cache_waiters(client, rv);
        return;
    }
    atomic_fetch_sub(&client->n_live, 1);
    if (op->done != NULL) {
        op->done(op->done_data, result);
        /* The callback owns what the result points to now. */
        memset(result, 0, sizeof(*result));
        rkv_client__op_free(op);
        return;
    }
    assert(op->waiter != NULL);
    pthread_mutex_lock(&op->waiter->mutex);
    op->waiter->is_done = true;
    pthread_cond_signal(&op->waiter->cond);
    pthread_mutex_unlock(&op->waiter->mutex);
}

/* Completes op with rv and a formatted message. */
static void op_fail(struct rkv_client__op *op, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void op_fail(struct rkv_client__op *op, int rv, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    vsnprintf(op->result.error_message, sizeof(op->result.error_message), fmt,
              args);
    va_end(args);
    rkv_client__op_complete(op, rv);
}

/* ---- retries ------------------------------------------------------------ */

/* Inserts op into the backoff list, which is sorted by retry_at_ms. */
static void op_backoff_insert(struct rkv_client__op *op)
{
    struct rkv_client__link *head = &op->client->backoff;
    struct rkv_client__link *pos = head->prev;

    while (pos != head) {
        struct rkv_client__op *other =
            RKV_CLIENT_CONTAINER(pos, struct rkv_client__op, link);
        if (other->retry_at_ms <= op->retry_at_ms) {
            break;
        }
        pos = pos->prev;
    }
    /* Insert after pos. */
    op->link.prev = pos;
    op->link.next = pos->next;
    pos->next->prev = &op->link;
    pos->next = &op->link;
}

/* Parks op for its next backoff pause; reason is kept for the timeout
 * message. */
static void op_retry_later(struct rkv_client__op *op, int reason)
{
    uint64_t now_ms = rkv_monotonic_ms();
    uint32_t pause_ms = op->backoff_ms;

    assert(op->state == RKV_CLIENT_OP_ROUTING);
    op->last_rv = reason;
    op->n_redirects = 0;
    op->is_resend = true;
    /* Up to a quarter of jitter, from the id, so ops that failed together
     * do not retry together. */
    pause_ms +=
        (uint32_t)((op->id * 0x9e3779b97f4a7c15ULL) >> 32) % (pause_ms / 4 + 1);
    op->backoff_ms =
        RKV_MIN(op->backoff_ms * 2, (uint32_t)RKV_CLIENT_BACKOFF_MAX_MS);
    op->retry_at_ms = now_ms + pause_ms;
    op->state = RKV_CLIENT_OP_BACKOFF;
    op_backoff_insert(op);
    RKV_LOG(RKV_DEBUG, "retry id=%llu kind=%d range=%llu in=%ums: %s",
            (unsigned long long)op->id, op->kind,
            (unsigned long long)op->range_id, pause_ms, rkv_errname(reason));
}

/* Routes op again at once after a redirect, or backs off after too many. */
static void op_redirect(struct rkv_client__op *op, int reason)
{
    if (op->n_redirects >= RKV_CLIENT_REDIRECTS_MAX) {
        op_retry_later(op, reason);
        return;
    }
    op->n_redirects++;
    op->is_resend = true;
    op->last_rv = reason;
    rkv_client__op_start(op);
}

/* ---- routing ------------------------------------------------------------ */

/* Queues op's frame on conn. */
static void op_send(struct rkv_client__op *op, struct rkv_client__conn *conn,
                    uint64_t range_id, uint64_t generation)
{
    struct rkv_client *client = op->client;
    int rv;

    op->id = client->next_id++;
    op->range_id = range_id;
    op->n_attempts++;
    if (op->is_resend) {
        op->result.n_retries++;
        op->is_resend = false;
    }
    rv = rkv_client__conn_send(conn, op, range_id, generation);
    if (rv == RKV_EUNAVAILABLE) {
        op_retry_later(op, rv);
        return;
    }
    if (rv != 0) {
        op_fail(op, rv, "cannot send the request: %s", rkv_strerror(rv));
        return;
    }
    op->state = RKV_CLIENT_OP_INFLIGHT;
    id_insert(op);
}

/* Sends op to any node, preferring preferred (0: none). */
static void op_route_any(struct rkv_client__op *op, uint64_t preferred)
{
    struct rkv_client *client = op->client;
    uint64_t now_ms = rkv_monotonic_ms();
    struct rkv_client__node *node = rkv_client__node_by_id(client, preferred);
    struct rkv_client__conn *conn = NULL;

    if (node != NULL) {
        conn = rkv_client__node_conn(node, now_ms);
    }
    for (size_t i = 0; conn == NULL && i < client->n_nodes; i++) {
        node = client->nodes[(client->next_node_index + i) % client->n_nodes];
        conn = rkv_client__node_conn(node, now_ms);
        if (conn != NULL) {
            client->next_node_index =
                (client->next_node_index + i + 1) % client->n_nodes;
        }
    }
    if (conn == NULL) {
        op_retry_later(op, RKV_EUNAVAILABLE);
        return;
    }
    op_send(op, conn, 0, 0);
}

/* Sends op to the range's leader, or to a replica that will redirect it
 * when the leader is unknown or unreachable. */
static void op_route_range(struct rkv_client__op *op,
                           const struct rkv_client__range *range)
{
    struct rkv_client *client = op->client;
    uint64_t now_ms = rkv_monotonic_ms();
    struct rkv_client__node *node;
    struct rkv_client__conn *conn = NULL;
    bool is_any_known = false;

    node = rkv_client__node_by_id(client, range->leader_node_id);
    if (node != NULL) {
        conn = rkv_client__node_conn(node, now_ms);
    }
    for (size_t i = 0; conn == NULL && i < range->n_replicas; i++) {
        size_t index = (op->n_attempts + i) % range->n_replicas;
        node = rkv_client__node_by_id(client, range->replica_node_ids[index]);
        if (node != NULL) {
            is_any_known = true;
            conn = rkv_client__node_conn(node, now_ms);
        }
    }
    if (conn != NULL) {
        op_send(op, conn, range->range_id, range->generation);
        return;
    }
    if (!is_any_known) {
        /* No address for any replica: let any node route it by key. */
        op_route_any(op, 0);
        return;
    }
    op_retry_later(op, RKV_EUNAVAILABLE);
}

/* Starts the cache refresh unless one is running. */
static void op_refresh_cache(struct rkv_client *client)
{
    struct rkv_client__op *refresh;

    if (client->refresh != NULL) {
        return;
    }
    refresh = rkv_calloc(1, sizeof(*refresh));
    if (refresh == NULL) {
        /* The waiters back off and try again. */
        op_resume_cache_waiters(client, -ENOMEM);
        return;
    }
    refresh->client = client;
    refresh->kind = RKV_CLIENT__OP_RANGES;
    refresh->is_refresh = true;
    refresh->deadline_ms = rkv_monotonic_ms() + client->timeout_ms;
    refresh->backoff_ms = RKV_CLIENT_BACKOFF_MIN_MS;
    refresh->state = RKV_CLIENT_OP_ROUTING;
    rkv_client__link_init(&refresh->link);
    rkv_client__list_push_back(&client->ops, &refresh->all_link);
    client->refresh = refresh;
    rkv_client__op_start(refresh);
}

static void op_wait_cache(struct rkv_client__op *op)
{
    struct rkv_client *client = op->client;

    op->state = RKV_CLIENT_OP_WAIT_CACHE;
    rkv_client__list_push_back(&client->cache_wait, &op->link);
    op_refresh_cache(client);
}

/* The key that decides the op's range. */
static const uint8_t *op_routing_key(const struct rkv_client__op *op,
                                     size_t *key_len)
{
    if (op->kind == RKV_CLIENT_SCAN) {
        *key_len = op->cursor_len;
        return op->cursor;
    }
    if (op->kind == RKV_CLIENT_BATCH) {
        *key_len = op->batch_ops[0].key_len;
        return op->batch_ops[0].key;
    }
    *key_len = op->key_len;
    return op->key;
}

/* True when every key of the batch lies in range. */
static bool op_batch_fits(const struct rkv_client__op *op,
                          const struct rkv_client__range *range)
{
    for (size_t i = 0; i < op->n_batch_ops; i++) {
        if (!rkv_client__range_contains(range, op->batch_ops[i].key,
                                        op->batch_ops[i].key_len)) {
            return false;
        }
    }
    return true;
}

/* True when a scan's cursor reached its end key. */
static bool op_scan_is_finished(const struct rkv_client__op *op)
{
    if (op->result.n_pairs >= op->limit) {
        return true;
    }
    return op->end_key_len > 0 &&
           rkv_client__key_compare(op->cursor, op->cursor_len, op->end_key,
                                   op->end_key_len) >= 0;
}

/* Sends a STATUS or INIT op to the one node it names. */
static void op_route_target(struct rkv_client__op *op)
{
    struct rkv_client__node *node;
    struct rkv_client__conn *conn = NULL;

    /* One node and no alternative: a dead node should not cost the whole
     * timeout of a status sweep. */
    if (op->result.n_retries >= RKV_CLIENT_TARGET_RETRIES_MAX &&
        op->last_rv == RKV_EUNAVAILABLE) {
        op_fail(op, RKV_EUNAVAILABLE, "node at %s is unreachable",
                op->target_addr);
        return;
    }
    node = rkv_client__node_learn(op->client, 0, op->target_addr);
    if (node != NULL) {
        conn = rkv_client__node_conn(node, rkv_monotonic_ms());
    }
    if (conn == NULL) {
        op_retry_later(op, node != NULL ? RKV_EUNAVAILABLE : -ENOMEM);
        return;
    }
    op_send(op, conn, 0, 0);
}

/* Sends a keyed op to its range as the cache places it, by key when the
 * cache cannot, or waits for a cache refresh. */
static void op_route_key(struct rkv_client__op *op)
{
    struct rkv_client *client = op->client;
    struct rkv_client__range *range;
    const uint8_t *key;
    size_t key_len;

    if (op->is_routed_by_key) {
        op_route_any(op, op->preferred_node_id);
        return;
    }
    key = op_routing_key(op, &key_len);
    range = rkv_client__cache_lookup(&client->cache, key, key_len);
    if (range == NULL && client->refreshed_at_ms != 0 &&
        rkv_monotonic_ms() - client->refreshed_at_ms <
            RKV_CLIENT_REFRESH_INTERVAL_MS) {
        /* The last refresh is recent and did not place the key either. */
        op->is_routed_by_key = true;
        op_route_any(op, op->preferred_node_id);
        return;
    }
    if (range == NULL) {
        op_wait_cache(op);
        return;
    }
    if (op->kind == RKV_CLIENT_BATCH && !op_batch_fits(op, range)) {
        op_fail(
            op, RKV_EKEYMISMATCH,
            "batch keys span more than one range (range %llu holds the first key)",
            (unsigned long long)range->range_id);
        return;
    }
    op_route_range(op, range);
}

void rkv_client__op_start(struct rkv_client__op *op)
{
    struct rkv_client *client = op->client;

    op->state = RKV_CLIENT_OP_ROUTING;
    if (client->is_stopping) {
        rkv_client__op_complete(op, RKV_ESHUTDOWN);
        return;
    }
    if (rkv_monotonic_ms() >= op->deadline_ms) {
        op_fail(op, RKV_ETIMEOUT, "timed out after %u ms; last error: %s",
                client->timeout_ms, rkv_strerror(op->last_rv));
        return;
    }

    switch (op->kind) {
    case RKV_CLIENT__OP_STATUS:
    case RKV_CLIENT__OP_INIT:
        op_route_target(op);
        return;
    case RKV_CLIENT__OP_RANGES:
        op_route_any(op, op->preferred_node_id);
        return;
    case RKV_CLIENT_SCAN:
        if (op_scan_is_finished(op)) {
            rkv_client__op_complete(op, 0);
            return;
        }
        op_route_key(op);
        return;
    default:
        op_route_key(op);
        return;
    }
}

/* ---- replies ------------------------------------------------------------ */

/* Moves a scan on to the next range after a successful reply. */
static void op_scan_continue(struct rkv_client__op *op, const uint8_t *next,
                             size_t next_len, bool more)
{
    struct rkv_client__range *range;
    uint8_t *cursor;

    if (op->result.n_pairs >= op->limit) {
        rkv_client__op_complete(op, 0);
        return;
    }
    if (!more || next == NULL) {
        /* The node's range ended; continue at the end of the cached one. */
        range = rkv_client__cache_lookup(&op->client->cache, op->cursor,
                                         op->cursor_len);
        if (range == NULL || range->end_key_len == 0) {
            rkv_client__op_complete(op, 0);
            return;
        }
        next = range->end_key;
        next_len = range->end_key_len;
    }
    if (rkv_client__key_compare(next, next_len, op->cursor, op->cursor_len) <=
        0) {
        op_fail(op, RKV_EPROTO, "scan resume key does not advance");
        return;
    }
    cursor = rkv_memdup(next, next_len);
    if (cursor == NULL) {
        rkv_client__op_complete(op, -ENOMEM);
        return;
    }
    rkv_free(op->cursor);
    op->cursor = cursor;
    op->cursor_len = next_len;
    op->is_routed_by_key = false;
    op->preferred_node_id = 0;
    op->n_redirects = 0;
    op->backoff_ms = RKV_CLIENT_BACKOFF_MIN_MS;
    rkv_client__op_start(op);
}

static void op_on_success(struct rkv_client__op *op,
                          const struct rkv_client__reply *reply)
{
    const uint8_t *next = NULL;
    size_t next_len = 0;
    bool more = false;
    int rv;

    if (op->kind == RKV_CLIENT__OP_RANGES || op->kind == RKV_CLIENT__OP_SPLIT) {
        rv = rkv_client__wire_learn(op->client, reply);
        if (rv < 0) {
            rkv_client__op_complete(op, rv);
            return;
        }
        if (op->kind == RKV_CLIENT__OP_RANGES) {
            op->client->refreshed_at_ms = rkv_monotonic_ms();
        }
    }
    rv = rkv_client__wire_take_result(op, reply, &next, &next_len, &more);
    if (rv != 0) {
        op_fail(op, rv, "invalid reply from node: %s", rkv_strerror(rv));
        return;
    }
    if (op->kind == RKV_CLIENT_SCAN) {
        op_scan_continue(op, next, next_len, more);
        return;
    }
    rkv_client__op_complete(op, 0);
}

/* Follows a not-leader reply's hint. */
static void op_on_not_leader(struct rkv_client__op *op,
                             const struct rkv_client__reply *reply,
                             uint64_t from_node_id)
{
    struct rkv_client *client = op->client;
    uint64_t hint = reply->leader_node_id;

    if (hint != 0 && reply->leader_addr != NULL &&
        reply->leader_addr[0] != '\0') {
        rkv_client__node_learn(client, hint, reply->leader_addr);
    }
    if (hint == 0 || hint == from_node_id) {
        /* No leader known: forget this one, so the retry rotates over the
         * replicas instead of asking the same node again. */
        op->preferred_node_id = 0;
        if (op->range_id != 0) {
            rkv_client__cache_set_leader(&client->cache, op->range_id, 0);
        }
        op_retry_later(op, RKV_ENOTLEADER);
        return;
    }
    if (op->kind == RKV_CLIENT__OP_RANGES || op->is_routed_by_key) {
        op->preferred_node_id = hint;
    } else {
        rkv_client__cache_set_leader(&client->cache, op->range_id, hint);
    }
    op_redirect(op, RKV_ENOTLEADER);
}

void rkv_client__op_on_reply(struct rkv_client__conn *conn,
                             struct rkv_client__op *op, void *reply_ptr)
{
    const struct rkv_client__reply *reply = reply_ptr;
    const uint8_t *key;
    size_t key_len;
    int rv;

    assert(op->state == RKV_CLIENT_OP_INFLIGHT);
    op->state = RKV_CLIENT_OP_ROUTING;
    op->conn = NULL;
    if (reply->error == 0) {
        op_on_success(op, reply);
        return;
    }
    if (reply->error_message != NULL) {
        snprintf(op->result.error_message, sizeof(op->result.error_message),
                 "%s", reply->error_message);
    }

    switch (reply->error) {
    case RKV_ENOTLEADER:
        op_on_not_leader(op, reply, conn->node->node_id);
        return;
    case RKV_EKEYMISMATCH:
        rv = rkv_client__wire_learn(op->client, reply);
        if (rv <= 0) {
            rkv_client__cache_evict(&op->client->cache, op->range_id);
        }
        /* The node sends the descriptor of the range the request named;
         * when that does not place the key, let a node route it. */
        key = op_routing_key(op, &key_len);
        if (rkv_client__cache_lookup(&op->client->cache, key, key_len) ==
            NULL) {
            op->is_routed_by_key = true;
        }
        op_redirect(op, RKV_EKEYMISMATCH);
        return;
    case RKV_ERANGENOTFOUND:
        rkv_client__cache_evict(&op->client->cache, op->range_id);
        op_retry_later(op, reply->error);
        return;
    case RKV_ESTALE:
        if (op->kind == RKV_CLIENT__OP_INIT) {
            break; /* the node already belongs to a cluster */
        }
        rkv_client__cache_evict(&op->client->cache, op->range_id);
        op_retry_later(op, reply->error);
        return;
    case RKV_EUNAVAILABLE:
    case RKV_ESPLITTING:
    case RKV_EBUSY:
    case RKV_EDROPPED:
        /* EDROPPED: the node sends it only once another entry took the
         * proposal's log index, so the write can never apply. */
        op_retry_later(op, reply->error);
        return;
    case RKV_ETIMEOUT:
    case RKV_ESHUTDOWN:
        /* A stopping node also fails proposals that may already be
         * committed, and a timed-out proposal may still apply. */
        if (op_is_write(op)) {
            op_fail(op, RKV_EUNKNOWN, "outcome unknown: node %llu replied %s",
                    (unsigned long long)conn->node->node_id,
                    rkv_strerror(reply->error));
            return;
        }
        op_retry_later(op, reply->error);
        return;
    case RKV_ECONDFAILED:
        if (op->kind == RKV_CLIENT_CAS) {
            /* Some nodes report a failed comparison as an error. */
            op->result.error_message[0] = '\0';
            op->result.found = false;
            rkv_client__op_complete(op, 0);
            return;
        }
        break;
    default:
        break;
    }
    rkv_client__op_complete(op, reply->error);
}

void rkv_client__op_on_conn_lost(struct rkv_client__op *op, int reason)
{
    bool was_sent = op_was_sent(op);
    uint64_t node_id = op->conn->node->node_id;

    assert(op->state == RKV_CLIENT_OP_INFLIGHT);
    id_remove(op);
    op->conn = NULL;
    op->state = RKV_CLIENT_OP_ROUTING;
    if (was_sent && op_is_write(op)) {
        op_fail(
            op, RKV_EUNKNOWN,
            "outcome unknown: connection to node %llu lost after the request was sent (%s)",
            (unsigned long long)node_id, rkv_strerror(reason));
        return;
    }
    if (op->client->is_stopping) {
        rkv_client__op_complete(op, RKV_ESHUTDOWN);
        return;
    }
    op_retry_later(op, RKV_EUNAVAILABLE);
}

/* ---- deadlines ------------------------------------------------------------
 */

static void op_expire(struct rkv_client__op *op)
{
    struct rkv_client__op *refresh = op->client->refresh;
    uint32_t timeout_ms = op->client->timeout_ms;

    if (op->state == RKV_CLIENT_OP_INFLIGHT && op_is_write(op)) {
        op_fail(op, RKV_EUNKNOWN,
                "outcome unknown: no reply within %u ms from node %llu",
                timeout_ms, (unsigned long long)op->conn->node->node_id);
        return;
    }
    if (op->state == RKV_CLIENT_OP_WAIT_CACHE && refresh != NULL) {
        op_fail(
            op, RKV_ETIMEOUT,
            "timed out after %u ms looking up the range of the key; last error: %s",
            timeout_ms, rkv_strerror(refresh->last_rv));
        return;
    }
    if (op->last_rv != 0) {
        op_fail(op, RKV_ETIMEOUT, "timed out after %u ms; last error: %s",
                timeout_ms, rkv_strerror(op->last_rv));
        return;
    }
    op_fail(op, RKV_ETIMEOUT, "timed out after %u ms waiting for a reply",
            timeout_ms);
}

void rkv_client__timer_cb(uv_timer_t *timer)
{
    struct rkv_client *client = timer->data;
    uint64_t now_ms = rkv_monotonic_ms();

    client->timer_due_ms = UINT64_MAX;
    while (!rkv_client__list_is_empty(&client->ops)) {
        struct rkv_client__op *op = RKV_CLIENT_CONTAINER(
            client->ops.next, struct rkv_client__op, all_link);
        if (op->deadline_ms > now_ms) {
            break;
        }
        op_expire(op);
    }
    while (!rkv_client__list_is_empty(&client->backoff)) {
        struct rkv_client__op *op = RKV_CLIENT_CONTAINER(
            client->backoff.next, struct rkv_client__op, link);
        if (op->retry_at_ms > now_ms) {
            break;
        }
        rkv_client__list_remove(&op->link);
        rkv_client__op_start(op);
    }
    rkv_client__after_event(client);
}

void rkv_client__timer_arm(struct rkv_client *client)
{
    uint64_t due_ms = UINT64_MAX;
    uint64_t now_ms;

    if (client->is_stopping) {
        return;
    }
    if (!rkv_client__list_is_empty(&client->ops)) {
        due_ms = RKV_CLIENT_CONTAINER(client->ops.next, struct rkv_client__op,
                                      all_link)
                     ->deadline_ms;
    }
    if (!rkv_client__list_is_empty(&client->backoff)) {
        uint64_t retry_ms = RKV_CLIENT_CONTAINER(client->backoff.next,
                                                 struct rkv_client__op, link)
                                ->retry_at_ms;
        due_ms = RKV_MIN(due_ms, retry_ms);
    }
    if (due_ms == client->timer_due_ms) {
        return;
    }
    client->timer_due_ms = due_ms;
    if (due_ms == UINT64_MAX) {
        uv_timer_stop(&client->timer);
        return;
    }
    now_ms = rkv_monotonic_ms();
    uv_timer_start(&client->timer, rkv_client__timer_cb,
                   due_ms > now_ms ? due_ms - now_ms : 0, 0);
}

void rkv_client__fail_all(struct rkv_client *client)
{
    while (!rkv_client__list_is_empty(&client->ops)) {
        struct rkv_client__op *op = RKV_CLIENT_CONTAINER(
            client->ops.next, struct rkv_client__op, all_link);
        if (op->state == RKV_CLIENT_OP_INFLIGHT && op_is_write(op) &&
            op_was_sent(op)) {
            op_fail(
                op, RKV_EUNKNOWN,
                "outcome unknown: client closed after the request was sent");
            continue;
        }
        rkv_client__op_complete(op, RKV_ESHUTDOWN);
    }
}
