/*
 * The key-value vtable (sql_kv.h) over the rangekv client library, which
 * routes each request to the leader of its range and retries on stale
 * routing. Every call is one blocking rkv_client_do(), so sessions on
 * several threads may share one store; the client is thread-safe.
 *
 * Results are copied out of the client's result and the result freed,
 * because the SQL layer frees what it gets with rkv_free().
 */
#include "sql-lite-front/sql_kv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rangekv/client.h"

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

struct kv_client {
    struct rkv_sql_kv base;
    struct rkv_client *client; /* owned */
};

static struct rkv_client *client_of(struct rkv_sql_kv *kv)
{
    return ((struct kv_client *)kv)->client;
}

/* Runs a request; copies the error detail into message on failure. */
static int client_do(struct rkv_sql_kv *kv,
                     const struct rkv_client_request *request,
                     struct rkv_client_result *result, char *message)
{
    int rv;

    memset(result, 0, sizeof(*result));
    rv = rkv_client_do(client_of(kv), request, result);
    if (rv != 0 && message != NULL) {
        snprintf(message, RKV_SQL_KV_MESSAGE_MAX, "%s", result->error_message);
    }
    return rv;
}

static int client_get(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                      uint8_t **value_out, size_t *value_len_out, char *message)
{
    struct rkv_client_request request = {
        .op = RKV_CLIENT_GET,
        .key = key,
        .key_len = key_len,
    };
    struct rkv_client_result result;
    int rv = client_do(kv, &request, &result, message);

    *value_out = NULL;
    *value_len_out = 0;
    if (rv == 0 && !result.found) {
        rv = RKV_ENOTFOUND;
    }
    if (rv == 0) {
        *value_out =
            rkv_memdup(result.value != NULL ? result.value : (uint8_t *)"",
                       RKV_MAX(result.value_len, (size_t)1));
        *value_len_out = result.value_len;
        rv = *value_out == NULL ? -ENOMEM : 0;
    }
    rkv_client_result_free(&result);
    return rv;
}

static int copy_pairs(const struct rkv_client_result *result,
                      struct rkv_sql_kv_pair **pairs_out)
{
    struct rkv_sql_kv_pair *pairs =
        rkv_calloc(RKV_MAX(result->n_pairs, (size_t)1), sizeof(*pairs));

    if (pairs == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < result->n_pairs; i++) {
        const struct rkv_client_kv *pair = &result->pairs[i];

        pairs[i].key = rkv_memdup(pair->key, pair->key_len);
        pairs[i].value =
            rkv_memdup(pair->value != NULL ? pair->value : (uint8_t *)"",
                       RKV_MAX(pair->value_len, (size_t)1));
        pairs[i].key_len = pair->key_len;
        pairs[i].value_len = pair->value_len;
        if (pairs[i].key == NULL || pairs[i].value == NULL) {
            rkv_sql_kv_pairs_free(pairs, i + 1);
            return -ENOMEM;
        }
    }
    *pairs_out = pairs;
    return 0;
}

static int client_scan(struct rkv_sql_kv *kv, const uint8_t *start,
                       size_t start_len, const uint8_t *end, size_t end_len,
                       uint32_t limit, struct rkv_sql_kv_pair **pairs_out,
                       size_t *n_pairs_out, char *message)
{
    struct rkv_client_request request = {
        .op = RKV_CLIENT_SCAN,
        .key = start,
        .key_len = start_len,
        .end_key = end,
        .end_key_len = end_len,
        .limit = limit,
    };
    struct rkv_client_result result;
    int rv;

    assert(limit > 0);

    *pairs_out = NULL;
    *n_pairs_out = 0;
    rv = client_do(kv, &request, &result, message);
    if (rv == 0) {
        rv = copy_pairs(&result, pairs_out);
    }
    if (rv == 0) {
        *n_pairs_out = result.n_pairs;
    }
    rkv_client_result_free(&result);
    return rv;
}

static int client_batch(struct rkv_sql_kv *kv, const struct rkv_sql_kv_op *ops,
                        size_t n_ops, char *message)
{
    struct rkv_client_batch_op *batch;
    struct rkv_client_request request = {.op = RKV_CLIENT_BATCH};
    struct rkv_client_result result;
    int rv;

    batch = rkv_calloc(RKV_MAX(n_ops, (size_t)1), sizeof(*batch));
    if (batch == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n_ops; i++) {
        batch[i].is_delete = ops[i].is_delete;
        batch[i].key = ops[i].key;
        batch[i].key_len = ops[i].key_len;
        batch[i].value = ops[i].value;
        batch[i].value_len = ops[i].value_len;
    }
    request.ops = batch;
    request.n_ops = n_ops;
    rv = client_do(kv, &request, &result, message);
    rkv_client_result_free(&result);
    rkv_free(batch);
    return rv;
}

static int client_cas(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                      const uint8_t *expected, size_t expected_len,
                      const uint8_t *value, size_t value_len, bool *swapped,
                      char *message)
{
    struct rkv_client_request request = {
        .op = RKV_CLIENT_CAS,
        .key = key,
        .key_len = key_len,
        .value = value,
        .value_len = value_len,
        .expected = expected,
        .expected_len = expected_len,
    };
    struct rkv_client_result result;
    int rv = client_do(kv, &request, &result, message);

    *swapped = rv == 0 && result.found;
    rkv_client_result_free(&result);
    return rv;
}

static int client_ranges(struct rkv_sql_kv *kv,
                         struct rkv_sql_kv_range **ranges_out,
                         size_t *n_ranges_out, char *message)
{
    struct rkv_client_range *source = NULL;
    struct rkv_sql_kv_range *ranges;
    size_t n = 0;
    int rv;

    rv = rkv_client_ranges(client_of(kv), &source, &n);
    if (rv != 0) {
        snprintf(message, RKV_SQL_KV_MESSAGE_MAX, "listing ranges failed");
        return rv;
    }
    ranges = rkv_calloc(RKV_MAX(n, (size_t)1), sizeof(*ranges));
    rv = ranges == NULL ? -ENOMEM : 0;
    for (size_t i = 0; rv == 0 && i < n; i++) {
        ranges[i].range_id = source[i].range_id;
        ranges[i].start_key =
            rkv_memdup(source[i].start_key, source[i].start_key_len);
        ranges[i].start_key_len = source[i].start_key_len;
        ranges[i].end_key =
            rkv_memdup(source[i].end_key, source[i].end_key_len);
        ranges[i].end_key_len = source[i].end_key_len;
        ranges[i].leader_node_id = source[i].leader_node_id;
        ranges[i].n_replicas = RKV_MIN(source[i].n_replicas, (size_t)8);
        memcpy(ranges[i].replica_node_ids, source[i].replica_node_ids,
               sizeof(ranges[i].replica_node_ids));
        ranges[i].live_bytes = source[i].live_bytes;
        ranges[i].key_count = source[i].key_count;
        if ((source[i].start_key_len > 0 && ranges[i].start_key == NULL) ||
            (source[i].end_key_len > 0 && ranges[i].end_key == NULL)) {
            rv = -ENOMEM;
        }
    }
    rkv_client_ranges_free(source, n);
    if (rv != 0) {
        rkv_sql_kv_ranges_free(ranges, ranges != NULL ? n : 0);
        return rv;
    }
    *ranges_out = ranges;
    *n_ranges_out = n;
    return 0;
}

static void client_close(struct rkv_sql_kv *kv)
{
    rkv_client_close(client_of(kv));
    rkv_free(kv);
}

static const struct rkv_sql_kv_vtable client_vtable = {
    .get = client_get,
    .scan = client_scan,
    .batch = client_batch,
    .cas = client_cas,
    .ranges = client_ranges,
    .close = client_close,
};

int rkv_sql_kv_client_open(const char *const *hosts, size_t n_hosts,
                           struct rkv_sql_kv **out)
{
    struct rkv_client_options options = {
        .hosts = hosts,
        .n_hosts = n_hosts,
    };
    struct kv_client *kv;
    int rv;

    if (n_hosts == 0) {
        return -EINVAL;
    }
    kv = rkv_calloc(1, sizeof(*kv));
    if (kv == NULL) {
        return -ENOMEM;
    }
    kv->base.vtable = &client_vtable;
    rv = rkv_client_open(&options, &kv->client);
    if (rv != 0) {
        rkv_free(kv);
        return rv;
    }
    *out = &kv->base;
    return 0;
}
