/*
 * The client object: its loop thread, the submit path from any thread, the
 * blocking calls and the convenience wrappers of include/rangekv/client.h.
 *
 * Submit path: rkv_client_submit() copies the request into an op, stamps its
 * deadline and appends it to submit_queue under the mutex, then wakes the
 * loop with uv_async_send(). Called on the loop thread itself (from a done
 * callback), it skips the mutex and the wakeup and appends to local_queue,
 * which rkv_client__after_event() drains before the callback's event ends,
 * so a closed-loop caller costs no thread hop per request.
 *
 * Blocking calls submit an op carrying a waiter (mutex and condition
 * variable on the caller's stack) and sleep on it; the loop thread signals
 * it on completion and the caller frees the op.
 *
 * Close: rkv_client_close() sets is_closing and wakes the loop; the loop
 * completes every op (RKV_ESHUTDOWN, or RKV_EUNKNOWN for sent writes),
 * closes every handle and returns from uv_run(), and the closing thread
 * joins it and frees the client.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_TIMEOUT_DEFAULT_MS 10000
#define CLIENT_INFLIGHT_DEFAULT 4096
#define CLIENT_SCAN_LIMIT_DEFAULT 1000
/* Connections per node at most, whatever the options ask. */
#define CLIENT_CONNECTIONS_MAX 64

bool rkv_client__on_loop_thread(const struct rkv_client *client)
{
    uv_thread_t self = uv_thread_self();

    return uv_thread_equal(&self, &client->thread) != 0;
}

/* Puts a newly drained op on the live list and routes it. */
static void client_admit(struct rkv_client *client, struct rkv_client__op *op)
{
    rkv_client__list_push_back(&client->ops, &op->all_link);
    op->state = RKV_CLIENT_OP_ROUTING;
    rkv_client__op_start(op);
}

void rkv_client__after_event(struct rkv_client *client)
{
    while (!rkv_client__list_is_empty(&client->local_queue)) {
        struct rkv_client__op *op = RKV_CLIENT_CONTAINER(
            client->local_queue.next, struct rkv_client__op, link);
        rkv_client__list_remove(&op->link);
        client_admit(client, op);
    }
    rkv_client__conn_flush_all(client);
    rkv_client__timer_arm(client);
}

static void client_close_handle_cb(uv_handle_t *handle)
{
    (void)handle;
}

/* Completes every op and closes every handle, so uv_run() returns. */
static void client_stop(struct rkv_client *client)
{
    client->is_stopping = true;
    rkv_client__fail_all(client);
    while (!rkv_client__list_is_empty(&client->local_queue)) {
        struct rkv_client__op *op = RKV_CLIENT_CONTAINER(
            client->local_queue.next, struct rkv_client__op, link);
        rkv_client__list_remove(&op->link);
        rkv_client__list_push_back(&client->ops, &op->all_link);
        op->state = RKV_CLIENT_OP_ROUTING;
        rkv_client__op_complete(op, RKV_ESHUTDOWN);
    }
    for (size_t i = 0; i < client->n_nodes; i++) {
        for (uint32_t c = 0; c < client->n_connections; c++) {
            rkv_client__conn_close(&client->nodes[i]->conns[c]);
        }
    }
    uv_close((uv_handle_t *)&client->timer, client_close_handle_cb);
    uv_close((uv_handle_t *)&client->wakeup, client_close_handle_cb);
}

static void client_wakeup_cb(uv_async_t *async)
{
    struct rkv_client *client = async->data;
    struct rkv_client__link queue;
    bool is_closing;

    if (client->is_stopping) {
        return;
    }
    rkv_client__link_init(&queue);
    pthread_mutex_lock(&client->mutex);
    rkv_client__list_splice(&queue, &client->submit_queue);
    is_closing = client->is_closing;
    pthread_mutex_unlock(&client->mutex);

    if (is_closing) {
        /* Queue the drained ops so that client_stop() fails them too. */
        rkv_client__list_splice(&client->local_queue, &queue);
        client_stop(client);
        return;
    }
    while (!rkv_client__list_is_empty(&queue)) {
        struct rkv_client__op *op =
            RKV_CLIENT_CONTAINER(queue.next, struct rkv_client__op, link);
        rkv_client__list_remove(&op->link);
        client_admit(client, op);
    }
    rkv_client__after_event(client);
}

static void client_thread_main(void *arg)
{
    struct rkv_client *client = arg;

    uv_run(&client->loop, UV_RUN_DEFAULT);
}

static int client_check_options(const struct rkv_client_options *options)
{
    if (options == NULL || options->hosts == NULL || options->n_hosts == 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < options->n_hosts; i++) {
        const char *host = options->hosts[i];
        if (host == NULL || strlen(host) >= RKV_CLIENT_ADDR_MAX ||
            strrchr(host, ':') == NULL) {
            return -EINVAL;
        }
    }
    if (options->n_connections > CLIENT_CONNECTIONS_MAX) {
        return -EINVAL;
    }
    return 0;
}

static void client_init_lists(struct rkv_client *client)
{
    rkv_client__link_init(&client->submit_queue);
    rkv_client__link_init(&client->local_queue);
    rkv_client__link_init(&client->ops);
    rkv_client__link_init(&client->backoff);
    rkv_client__link_init(&client->cache_wait);
    rkv_client__link_init(&client->flush_list);
    rkv_client__cache_init(&client->cache);
}

int rkv_client_open(const struct rkv_client_options *options,
                    struct rkv_client **out)
{
    struct rkv_client *client;
    int rv;

    rv = client_check_options(options);
    if (rv != 0) {
        goto err;
    }
    client = rkv_calloc(1, sizeof(*client));
    if (client == NULL) {
        rv = -ENOMEM;
        goto err;
    }
    client->timeout_ms = options->timeout_ms > 0 ? options->timeout_ms
                                                 : CLIENT_TIMEOUT_DEFAULT_MS;
    client->n_connections =
        options->n_connections > 0 ? options->n_connections : 1;
    client->inflight_max = options->inflight_max > 0 ? options->inflight_max
                                                     : CLIENT_INFLIGHT_DEFAULT;
    client->next_id = 1;
    client->timer_due_ms = UINT64_MAX;
    atomic_init(&client->n_live, 0);
    client_init_lists(client);
    for (size_t i = 0; i < options->n_hosts; i++) {
        if (rkv_client__node_learn(client, 0, options->hosts[i]) == NULL) {
            rv = -ENOMEM;
            goto err_after_alloc;
        }
    }

    rv = pthread_mutex_init(&client->mutex, NULL);
    if (rv != 0) {
        rv = -rv;
        goto err_after_alloc;
    }
    rv = uv_loop_init(&client->loop);
    if (rv != 0) {
        goto err_after_mutex;
    }
    rv = uv_async_init(&client->loop, &client->wakeup, client_wakeup_cb);
    if (rv != 0) {
        goto err_after_loop;
    }
    client->wakeup.data = client;
    uv_timer_init(&client->loop, &client->timer);
    client->timer.data = client;
    rv = uv_thread_create(&client->thread, client_thread_main, client);
    if (rv != 0) {
        goto err_after_handles;
    }
    *out = client;
    return 0;

err_after_handles:
    uv_close((uv_handle_t *)&client->wakeup, NULL);
    uv_close((uv_handle_t *)&client->timer, NULL);
    uv_run(&client->loop, UV_RUN_DEFAULT);
err_after_loop:
    uv_loop_close(&client->loop);
err_after_mutex:
    pthread_mutex_destroy(&client->mutex);
err_after_alloc:
    rkv_client__nodes_free(client);
    rkv_free(client);
err:
    assert(rv != 0);
    return rv;
}

void rkv_client_close(struct rkv_client *client)
{
    int rv;

    if (client == NULL) {
        return;
    }
    assert(!rkv_client__on_loop_thread(client));
    pthread_mutex_lock(&client->mutex);
    client->is_closing = true;
    pthread_mutex_unlock(&client->mutex);
    uv_async_send(&client->wakeup);
    uv_thread_join(&client->thread);

    assert(rkv_client__list_is_empty(&client->ops));
    assert(atomic_load(&client->n_live) == 0);
    rv = uv_loop_close(&client->loop);
    assert(rv == 0);
    (void)rv;
    rkv_client__nodes_free(client);
    rkv_client__cache_free(&client->cache);
    pthread_mutex_destroy(&client->mutex);
    rkv_free(client);
}

/* ---- requests ------------------------------------------------------------ */

/* Checks one key: 1 to RKV_CLIENT_KEY_MAX bytes (0 allowed when may_be_empty).
 */
static int client_check_key(const void *key, size_t key_len, bool may_be_empty)
{
    if (key_len == 0) {
        return may_be_empty ? 0 : -EINVAL;
    }
    if (key == NULL) {
        return -EINVAL;
    }
    return key_len > RKV_CLIENT_KEY_MAX ? RKV_ETOOLARGE : 0;
}

static int client_check_value(const void *value, size_t value_len)
{
    if (value == NULL && value_len > 0) {
        return -EINVAL;
    }
    return value_len > RKV_CLIENT_VALUE_MAX ? RKV_ETOOLARGE : 0;
}

static int client_check_batch(const struct rkv_client_request *request)
{
    int rv;

    if (request->ops == NULL || request->n_ops == 0) {
        return -EINVAL;
    }
    if (request->n_ops > RKV_CLIENT_BATCH_OPS_MAX) {
        return RKV_ETOOLARGE;
    }
    for (size_t i = 0; i < request->n_ops; i++) {
        const struct rkv_client_batch_op *b = &request->ops[i];
        rv = client_check_key(b->key, b->key_len, false);
        if (rv == 0 && !b->is_delete) {
            rv = client_check_value(b->value, b->value_len);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int client_check_request(const struct rkv_client_request *request)
{
    int rv;

    switch (request->op) {
    case RKV_CLIENT_GET:
    case RKV_CLIENT_DELETE:
        return client_check_key(request->key, request->key_len, false);
    case RKV_CLIENT_PUT:
        rv = client_check_key(request->key, request->key_len, false);
        return rv != 0 ? rv
                       : client_check_value(request->value, request->value_len);
    case RKV_CLIENT_CAS:
        rv = client_check_key(request->key, request->key_len, false);
        if (rv == 0) {
            rv = client_check_value(request->value, request->value_len);
        }
        return rv != 0 ? rv
                       : client_check_value(request->expected,
                                            request->expected_len);
    case RKV_CLIENT_SCAN:
        rv = client_check_key(request->key, request->key_len, true);
        return rv != 0 ? rv
                       : client_check_key(request->end_key,
                                          request->end_key_len, true);
    case RKV_CLIENT_BATCH:
        return client_check_batch(request);
    default:
        return -EINVAL;
    }
}

/* Bytes the op's arena needs for copies of the request's buffers. */
static size_t client_arena_len(const struct rkv_client_request *r)
{
    size_t len = r->key_len + r->value_len + r->expected_len + r->end_key_len;

    if (r->op == RKV_CLIENT_BATCH) {
        len += r->n_ops * sizeof(struct rkv_client_batch_op);
        for (size_t i = 0; i < r->n_ops; i++) {
            len += r->ops[i].key_len;
            len += r->ops[i].is_delete ? 0 : r->ops[i].value_len;
        }
    }
    return len;
}

/* Copies len bytes at *pos and advances it; returns the copy. */
static uint8_t *client_arena_put(uint8_t **pos, const void *src, size_t len)
{
    uint8_t *copy = *pos;

    if (len > 0) {
        memcpy(copy, src, len);
    }
    *pos += len;
    return copy;
}

static void client_copy_batch(struct rkv_client__op *op,
                              const struct rkv_client_request *r, uint8_t **pos)
{
    /* The op array comes first, so it stays aligned. */
    op->batch_ops = (struct rkv_client_batch_op *)(void *)*pos;
    op->n_batch_ops = r->n_ops;
    *pos += r->n_ops * sizeof(struct rkv_client_batch_op);
    for (size_t i = 0; i < r->n_ops; i++) {
        const struct rkv_client_batch_op *src = &r->ops[i];
        struct rkv_client_batch_op *dst = &op->batch_ops[i];

        dst->is_delete = src->is_delete;
        dst->key = client_arena_put(pos, src->key, src->key_len);
        dst->key_len = src->key_len;
        dst->value = NULL;
        dst->value_len = 0;
        if (!src->is_delete) {
            dst->value = client_arena_put(pos, src->value, src->value_len);
            dst->value_len = src->value_len;
        }
    }
}

/* Copies the request's buffers into op->arena. */
static int client_copy_request(struct rkv_client__op *op,
                               const struct rkv_client_request *r)
{
    uint8_t *pos;

    op->arena = rkv_malloc(client_arena_len(r) + 1);
    if (op->arena == NULL) {
        return -ENOMEM;
    }
    pos = op->arena;
    if (r->op == RKV_CLIENT_BATCH) {
        client_copy_batch(op, r, &pos);
    }
    op->key = client_arena_put(&pos, r->key, r->key_len);
    op->key_len = r->key_len;
    op->value = client_arena_put(&pos, r->value, r->value_len);
    op->value_len = r->value_len;
    op->expected = client_arena_put(&pos, r->expected, r->expected_len);
    op->expected_len = r->expected_len;
    op->end_key = client_arena_put(&pos, r->end_key, r->end_key_len);
    op->end_key_len = r->end_key_len;
    op->has_value = r->op != RKV_CLIENT_CAS || r->value != NULL;
    op->has_expected = r->expected != NULL;
    op->serializable = r->serializable;
    op->limit = r->limit > 0 ? r->limit : CLIENT_SCAN_LIMIT_DEFAULT;
    if (r->op == RKV_CLIENT_SCAN) {
        op->cursor = rkv_memdup(r->key_len > 0 ? r->key : "", r->key_len);
        if (op->cursor == NULL && r->key_len > 0) {
            return -ENOMEM;
        }
        op->cursor_len = r->key_len;
    }
    return 0;
}

static struct rkv_client__op *client_op_new(struct rkv_client *client, int kind)
{
    struct rkv_client__op *op = rkv_calloc(1, sizeof(*op));

    if (op == NULL) {
        return NULL;
    }
    op->client = client;
    op->kind = kind;
    op->state = RKV_CLIENT_OP_SUBMITTED;
    op->backoff_ms = RKV_CLIENT_BACKOFF_MIN_MS;
    rkv_client__link_init(&op->link);
    rkv_client__link_init(&op->all_link);
    return op;
}

/* Hands op to the loop thread. Fails with RKV_ESHUTDOWN when the client is
 * closing or RKV_EBUSY at inflight_max; op is then still the caller's. */
static int client_enqueue(struct rkv_client *client, struct rkv_client__op *op)
{
    unsigned n_live = atomic_fetch_add(&client->n_live, 1);

    if (n_live >= client->inflight_max) {
        atomic_fetch_sub(&client->n_live, 1);
        return RKV_EBUSY;
    }
    if (rkv_client__on_loop_thread(client)) {
        if (client->is_stopping) {
            atomic_fetch_sub(&client->n_live, 1);
            return RKV_ESHUTDOWN;
        }
        op->deadline_ms = rkv_monotonic_ms() + client->timeout_ms;
        rkv_client__list_push_back(&client->local_queue, &op->link);
        return 0;
    }
    pthread_mutex_lock(&client->mutex);
    if (client->is_closing) {
        pthread_mutex_unlock(&client->mutex);
        atomic_fetch_sub(&client->n_live, 1);
        return RKV_ESHUTDOWN;
    }
    /* Stamped under the mutex, so queue order is deadline order. */
    op->deadline_ms = rkv_monotonic_ms() + client->timeout_ms;
    rkv_client__list_push_back(&client->submit_queue, &op->link);
    pthread_mutex_unlock(&client->mutex);
    uv_async_send(&client->wakeup);
    return 0;
}

/* Builds an op for request; *op_out is freed with rkv_client__op_free. */
static int client_op_from_request(struct rkv_client *client,
                                  const struct rkv_client_request *request,
                                  struct rkv_client__op **op_out)
{
    struct rkv_client__op *op;
    int rv;

    if (client == NULL || request == NULL) {
        return -EINVAL;
    }
    rv = client_check_request(request);
    if (rv != 0) {
        return rv;
    }
    op = client_op_new(client, (int)request->op);
    if (op == NULL) {
        return -ENOMEM;
    }
    rv = client_copy_request(op, request);
    if (rv != 0) {
        rkv_client__op_free(op);
        return rv;
    }
    *op_out = op;
    return 0;
}

int rkv_client_submit(struct rkv_client *client,
                      const struct rkv_client_request *request,
                      rkv_client_done_cb done, void *data)
{
    struct rkv_client__op *op;
    int rv;

    if (done == NULL) {
        return -EINVAL;
    }
    rv = client_op_from_request(client, request, &op);
    if (rv != 0) {
        return rv;
    }
    op->done = done;
    op->done_data = data;
    rv = client_enqueue(client, op);
    if (rv != 0) {
        rkv_client__op_free(op);
        return rv;
    }
    return 0;
}

/* Submits op with a waiter and sleeps until the loop completes it. The op
 * stays the caller's: it is freed by the caller afterwards. */
static int client_run(struct rkv_client *client, struct rkv_client__op *op)
{
    struct rkv_client__waiter waiter;
    int rv;

    if (rkv_client__on_loop_thread(client)) {
        /* Waiting here would stop the loop that must wake us. */
        return -EDEADLK;
    }
    pthread_mutex_init(&waiter.mutex, NULL);
    pthread_cond_init(&waiter.cond, NULL);
    waiter.is_done = false;
    op->waiter = &waiter;
    rv = client_enqueue(client, op);
    if (rv == 0) {
        pthread_mutex_lock(&waiter.mutex);
        while (!waiter.is_done) {
            pthread_cond_wait(&waiter.cond, &waiter.mutex);
        }
        pthread_mutex_unlock(&waiter.mutex);
        rv = op->result.rv;
    }
    pthread_cond_destroy(&waiter.cond);
    pthread_mutex_destroy(&waiter.mutex);
    return rv;
}

int rkv_client_do(struct rkv_client *client,
                  const struct rkv_client_request *request,
                  struct rkv_client_result *result)
{
    struct rkv_client__op *op;
    int rv;

    memset(result, 0, sizeof(*result));
    rv = client_op_from_request(client, request, &op);
    if (rv != 0) {
        goto err;
    }
    rv = client_run(client, op);
    if (op->state != RKV_CLIENT_OP_DONE) {
        /* Never submitted: -EDEADLK, RKV_EBUSY or RKV_ESHUTDOWN. */
        rkv_client__op_free(op);
        goto err;
    }
    *result = op->result;
    memset(&op->result, 0, sizeof(op->result));
    rkv_client__op_free(op);
    return result->rv;

err:
    result->rv = rv;
    snprintf(result->error_message, sizeof(result->error_message), "%s",
             rkv_strerror(rv));
    return rv;
}

void rkv_client_result_free(struct rkv_client_result *result)
{
    if (result == NULL) {
        return;
    }
    for (size_t i = 0; i < result->n_pairs; i++) {
        rkv_free(result->pairs[i].key);
        rkv_free(result->pairs[i].value);
    }
    rkv_free(result->pairs);
    rkv_free(result->value);
    result->pairs = NULL;
    result->n_pairs = 0;
    result->value = NULL;
    result->value_len = 0;
}

/* ---- convenience wrappers ------------------------------------------------ */

int rkv_client_put(struct rkv_client *client, const void *key, size_t key_len,
                   const void *value, size_t value_len)
{
    struct rkv_client_request request = {0};
    struct rkv_client_result result;
    int rv;

    request.op = RKV_CLIENT_PUT;
    request.key = key;
    request.key_len = key_len;
    request.value = value;
    request.value_len = value_len;
    rv = rkv_client_do(client, &request, &result);
    rkv_client_result_free(&result);
    return rv;
}

int rkv_client_get(struct rkv_client *client, const void *key, size_t key_len,
                   uint8_t **value_out, size_t *value_len_out)
{
    struct rkv_client_request request = {0};
    struct rkv_client_result result;
    int rv;

    *value_out = NULL;
    *value_len_out = 0;
    request.op = RKV_CLIENT_GET;
    request.key = key;
    request.key_len = key_len;
    rv = rkv_client_do(client, &request, &result);
    if (rv == 0 && !result.found) {
        rv = RKV_ENOTFOUND;
    }
    if (rv == 0) {
        *value_out = result.value;
        *value_len_out = result.value_len;
        result.value = NULL;
    }
    rkv_client_result_free(&result);
    return rv;
}

int rkv_client_delete(struct rkv_client *client, const void *key,
                      size_t key_len)
{
    struct rkv_client_request request = {0};
    struct rkv_client_result result;
    int rv;

    request.op = RKV_CLIENT_DELETE;
    request.key = key;
    request.key_len = key_len;
    rv = rkv_client_do(client, &request, &result);
    rkv_client_result_free(&result);
    return rv;
}

/* ---- cluster information ------------------------------------------------- */

/* Runs an internal op and frees it unless the caller takes outputs first;
 * returns the op through *op_out only on success. */
static int client_run_internal(struct rkv_client *client,
                               struct rkv_client__op *op,
                               struct rkv_client__op **op_out)
{
    int rv = client_run(client, op);

    if (rv != 0) {
        rkv_client__op_free(op);
        return rv;
    }
    *op_out = op;
    return 0;
}

/* Runs a RangesRequest. On success *op_out contains the ranges and the node
 * addresses, and the caller frees it with rkv_client__op_free(). */
static int client_fetch_ranges(struct rkv_client *client,
                               struct rkv_client__op **op_out)
{
    struct rkv_client__op *op;

    if (client == NULL) {
        return -EINVAL;
    }
    op = client_op_new(client, RKV_CLIENT__OP_RANGES);
    if (op == NULL) {
        return -ENOMEM;
    }
    return client_run_internal(client, op, op_out);
}

int rkv_client_ranges(struct rkv_client *client,
                      struct rkv_client_range **ranges_out,
                      size_t *n_ranges_out)
{
    struct rkv_client__op *op;
    int rv;

    rv = client_fetch_ranges(client, &op);
    if (rv != 0) {
        return rv;
    }
    *ranges_out = op->ranges;
    *n_ranges_out = op->n_ranges;
    op->ranges = NULL;
    op->n_ranges = 0;
    rkv_client__op_free(op);
    return 0;
}

void rkv_client_ranges_free(struct rkv_client_range *ranges, size_t n_ranges)
{
    if (ranges == NULL) {
        return;
    }
    for (size_t i = 0; i < n_ranges; i++) {
        rkv_free(ranges[i].start_key);
        rkv_free(ranges[i].end_key);
    }
    rkv_free(ranges);
}

int rkv_client_split(struct rkv_client *client, const void *split_key,
                     size_t split_key_len)
{
    struct rkv_client__op *op;
    int rv;

    if (client == NULL) {
        return -EINVAL;
    }
    rv = client_check_key(split_key, split_key_len, false);
    if (rv != 0) {
        return rv;
    }
    op = client_op_new(client, RKV_CLIENT__OP_SPLIT);
    if (op == NULL) {
        return -ENOMEM;
    }
    op->arena = rkv_memdup(split_key, split_key_len);
    if (op->arena == NULL) {
        rkv_client__op_free(op);
        return -ENOMEM;
    }
    op->key = op->arena;
    op->key_len = split_key_len;
    rv = client_run_internal(client, op, &op);
    if (rv != 0) {
        return rv;
    }
    rkv_client__op_free(op);
    return 0;
}

int rkv_client_node_status(struct rkv_client *client, const char *host,
                           struct rkv_client_node_status *status_out)
{
    struct rkv_client__op *op;
    int rv;

    if (client == NULL || host == NULL || strrchr(host, ':') == NULL ||
        strlen(host) >= RKV_CLIENT_ADDR_MAX) {
        return -EINVAL;
    }
    op = client_op_new(client, RKV_CLIENT__OP_STATUS);
    if (op == NULL) {
        return -ENOMEM;
    }
    snprintf(op->target_addr, sizeof(op->target_addr), "%s", host);
    rv = client_run_internal(client, op, &op);
    if (rv != 0) {
        return rv;
    }
    *status_out = op->status;
    rkv_client__op_free(op);
    return 0;
}

int rkv_client_init_cluster(struct rkv_client *client, const char *host,
                            uint64_t *cluster_id_out)
{
    struct rkv_client__op *op;
    int rv;

    if (client == NULL || host == NULL || strrchr(host, ':') == NULL ||
        strlen(host) >= RKV_CLIENT_ADDR_MAX) {
        return -EINVAL;
    }
    op = client_op_new(client, RKV_CLIENT__OP_INIT);
    if (op == NULL) {
        return -ENOMEM;
    }
    snprintf(op->target_addr, sizeof(op->target_addr), "%s", host);
    rv = client_run_internal(client, op, &op);
    if (rv != 0) {
        return rv;
    }
    *cluster_id_out = op->status.cluster_id;
    rkv_client__op_free(op);
    return 0;
}

int rkv_client_node_addrs(struct rkv_client *client, char ***addrs_out,
                          size_t *n_addrs_out)
{
    struct rkv_client__op *op;
    int rv;

    rv = client_fetch_ranges(client, &op);
    if (rv != 0) {
        return rv;
    }
    *addrs_out = op->node_addrs;
    *n_addrs_out = op->n_node_addrs;
    op->node_addrs = NULL;
    op->n_node_addrs = 0;
    rkv_client__op_free(op);
    return 0;
}

void rkv_client_strings_free(char **strings, size_t n_strings)
{
    if (strings == NULL) {
        return;
    }
    for (size_t i = 0; i < n_strings; i++) {
        free(strings[i]);
    }
    rkv_free(strings);
}
