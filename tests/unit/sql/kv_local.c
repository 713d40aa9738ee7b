/*
 * The in-process sorted store for the sql-lite-front unit tests; see
 * kv_local.h. Lookups are binary searches over one sorted array, inserts
 * move the tail: fine for the few thousand rows the tests write.
 */
#include "tests/unit/sql/kv_local.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RKV_LOG_SUBSYS "test"
#include "common/common.h"

#define LOCAL_RANGES_MAX 64

struct local_pair {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
};

struct local_split {
    uint8_t *key; /* start key of range index i + 1 */
    size_t key_len;
};

struct kv_local {
    struct rkv_sql_kv base;
    struct local_pair *pairs;
    size_t n_pairs;
    size_t pairs_cap;
    struct local_split splits[LOCAL_RANGES_MAX - 1];
    size_t n_splits;
    uint64_t range_ids[LOCAL_RANGES_MAX]; /* id of range index i */
    uint64_t touches[LOCAL_RANGES_MAX];
    long batches_before_failure; /* -1: never fail */
    long stale_listings;         /* next listings that omit the last range */
};

/* The store allocates with the C library, not rkv_malloc, so that
 * allocation-failure tests fail only the code under test. Buffers it
 * returns are still freed with rkv_free(), which calls free(). */
static void *local_memdup(const void *src, size_t len)
{
    void *copy = malloc(len > 0 ? len : 1);

    if (copy != NULL && len > 0) {
        memcpy(copy, src, len);
    }
    return copy;
}

static int compare(const uint8_t *a, size_t a_len, const uint8_t *b,
                   size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    int cmp = n == 0 ? 0 : memcmp(a, b, n);

    if (cmp != 0) {
        return cmp;
    }
    return (a_len > b_len) - (a_len < b_len);
}

/* Index of the first pair with key >= the given key. */
static size_t lower_bound(const struct kv_local *local, const uint8_t *key,
                          size_t key_len)
{
    size_t low = 0;
    size_t high = local->n_pairs;

    while (low < high) {
        size_t mid = low + (high - low) / 2;

        if (compare(local->pairs[mid].key, local->pairs[mid].key_len, key,
                    key_len) < 0) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    return low;
}

/* Index of the range holding key. */
static size_t range_index(const struct kv_local *local, const uint8_t *key,
                          size_t key_len)
{
    size_t index = 0;

    while (index < local->n_splits &&
           compare(local->splits[index].key, local->splits[index].key_len, key,
                   key_len) <= 0) {
        index++;
    }
    return index;
}

static struct kv_local *local_of(struct rkv_sql_kv *kv)
{
    return (struct kv_local *)kv;
}

static int local_get(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                     uint8_t **value_out, size_t *value_len_out, char *message)
{
    struct kv_local *local = local_of(kv);
    size_t index = lower_bound(local, key, key_len);

    local->touches[range_index(local, key, key_len)]++;
    *value_out = NULL;
    *value_len_out = 0;
    if (index == local->n_pairs ||
        compare(local->pairs[index].key, local->pairs[index].key_len, key,
                key_len) != 0) {
        return RKV_ENOTFOUND;
    }
    *value_out = local_memdup(local->pairs[index].value,
                              local->pairs[index].value_len + 1);
    if (*value_out == NULL) {
        return -ENOMEM;
    }
    *value_len_out = local->pairs[index].value_len;
    return 0;
}

/* Counts a touch on every range overlapping [start, last], or [start, end)
 * when last is NULL. */
static void touch_span(struct kv_local *local, const uint8_t *start,
                       size_t start_len, const uint8_t *last, size_t last_len,
                       const uint8_t *end, size_t end_len)
{
    size_t first = range_index(local, start, start_len);
    size_t final = local->n_splits;

    if (last != NULL) {
        final = range_index(local, last, last_len);
    } else if (end_len > 0) {
        final = first;
        while (final < local->n_splits &&
               compare(local->splits[final].key, local->splits[final].key_len,
                       end, end_len) < 0) {
            final++;
        }
    }
    for (size_t i = first; i <= final; i++) {
        local->touches[i]++;
    }
}

static int local_scan(struct rkv_sql_kv *kv, const uint8_t *start,
                      size_t start_len, const uint8_t *end, size_t end_len,
                      uint32_t limit, struct rkv_sql_kv_pair **pairs_out,
                      size_t *n_pairs_out, char *message)
{
    struct kv_local *local = local_of(kv);
    size_t index = lower_bound(local, start, start_len);
    struct rkv_sql_kv_pair *pairs;
    size_t n = 0;

    pairs = calloc(limit > 0 ? limit : 1, sizeof(*pairs));
    if (pairs == NULL) {
        return -ENOMEM;
    }
    while (index < local->n_pairs && n < limit &&
           (end_len == 0 ||
            compare(local->pairs[index].key, local->pairs[index].key_len, end,
                    end_len) < 0)) {
        const struct local_pair *pair = &local->pairs[index++];

        pairs[n].key = local_memdup(pair->key, pair->key_len);
        pairs[n].value = local_memdup(pair->value, pair->value_len + 1);
        pairs[n].key_len = pair->key_len;
        pairs[n].value_len = pair->value_len;
        n++;
    }
    if (n == limit && n > 0) {
        touch_span(local, start, start_len, pairs[n - 1].key,
                   pairs[n - 1].key_len, NULL, 0);
    } else {
        touch_span(local, start, start_len, NULL, 0, end, end_len);
    }
    *pairs_out = pairs;
    *n_pairs_out = n;
    return 0;
}

static int local_put_one(struct kv_local *local, const struct rkv_sql_kv_op *op)
{
    size_t index = lower_bound(local, op->key, op->key_len);
    bool exists = index < local->n_pairs &&
                  compare(local->pairs[index].key, local->pairs[index].key_len,
                          op->key, op->key_len) == 0;
    uint8_t *value;

    if (op->is_delete) {
        if (exists) {
            free(local->pairs[index].key);
            free(local->pairs[index].value);
            memmove(&local->pairs[index], &local->pairs[index + 1],
                    (local->n_pairs - index - 1) * sizeof(*local->pairs));
            local->n_pairs--;
        }
        return 0;
    }
    value = malloc(op->value_len + 1);
    if (value == NULL) {
        return -ENOMEM;
    }
    memcpy(value, op->value, op->value_len);
    if (exists) {
        free(local->pairs[index].value);
        local->pairs[index].value = value;
        local->pairs[index].value_len = op->value_len;
        return 0;
    }
    if (local->n_pairs == local->pairs_cap) {
        size_t cap = local->pairs_cap == 0 ? 64 : local->pairs_cap * 2;
        struct local_pair *grown = realloc(local->pairs, cap * sizeof(*grown));

        if (grown == NULL) {
            free(value);
            return -ENOMEM;
        }
        local->pairs = grown;
        local->pairs_cap = cap;
    }
    memmove(&local->pairs[index + 1], &local->pairs[index],
            (local->n_pairs - index) * sizeof(*local->pairs));
    local->pairs[index].key = local_memdup(op->key, op->key_len);
    local->pairs[index].key_len = op->key_len;
    local->pairs[index].value = value;
    local->pairs[index].value_len = op->value_len;
    local->n_pairs++;
    return 0;
}

static int local_batch(struct rkv_sql_kv *kv, const struct rkv_sql_kv_op *ops,
                       size_t n_ops, char *message)
{
    struct kv_local *local = local_of(kv);
    size_t range;

    if (n_ops == 0) {
        return 0;
    }
    range = range_index(local, ops[0].key, ops[0].key_len);
    for (size_t i = 1; i < n_ops; i++) {
        if (range_index(local, ops[i].key, ops[i].key_len) != range) {
            snprintf(message, RKV_SQL_KV_MESSAGE_MAX,
                     "batch spans ranges %llu and more",
                     (unsigned long long)local->range_ids[range]);
            return RKV_EKEYMISMATCH;
        }
    }
    if (local->batches_before_failure == 0) {
        snprintf(message, RKV_SQL_KV_MESSAGE_MAX, "injected batch failure");
        return -EIO;
    }
    if (local->batches_before_failure > 0) {
        local->batches_before_failure--;
    }
    local->touches[range]++;
    for (size_t i = 0; i < n_ops; i++) {
        int rv = local_put_one(local, &ops[i]);

        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int local_cas(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                     const uint8_t *expected, size_t expected_len,
                     const uint8_t *value, size_t value_len, bool *swapped,
                     char *message)
{
    struct kv_local *local = local_of(kv);
    size_t index = lower_bound(local, key, key_len);
    bool exists = index < local->n_pairs &&
                  compare(local->pairs[index].key, local->pairs[index].key_len,
                          key, key_len) == 0;
    struct rkv_sql_kv_op op = {
        .is_delete = value == NULL,
        .key = key,
        .key_len = key_len,
        .value = value,
        .value_len = value_len,
    };

    local->touches[range_index(local, key, key_len)]++;
    *swapped = false;
    if (expected == NULL ? exists
                         : !exists || compare(local->pairs[index].value,
                                              local->pairs[index].value_len,
                                              expected, expected_len) != 0) {
        return 0;
    }
    *swapped = true;
    return local_put_one(local, &op);
}

static int local_ranges(struct rkv_sql_kv *kv,
                        struct rkv_sql_kv_range **ranges_out,
                        size_t *n_ranges_out, char *message)
{
    struct kv_local *local = local_of(kv);
    size_t n = local->n_splits + 1;
    struct rkv_sql_kv_range *ranges = calloc(n, sizeof(*ranges));

    if (ranges == NULL) {
        return -ENOMEM;
    }
    if (local->stale_listings > 0 && n > 1) {
        /* The array keeps its size; the caller sees one range less. */
        local->stale_listings--;
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        ranges[i].range_id = local->range_ids[i];
        ranges[i].leader_node_id = 1;
        ranges[i].replica_node_ids[0] = 1;
        ranges[i].n_replicas = 1;
        if (i > 0) {
            ranges[i].start_key = local_memdup(local->splits[i - 1].key,
                                               local->splits[i - 1].key_len);
            ranges[i].start_key_len = local->splits[i - 1].key_len;
        }
        if (i < local->n_splits) {
            ranges[i].end_key =
                local_memdup(local->splits[i].key, local->splits[i].key_len);
            ranges[i].end_key_len = local->splits[i].key_len;
        }
    }
    for (size_t p = 0; p < local->n_pairs; p++) {
        const struct local_pair *pair = &local->pairs[p];
        size_t index = range_index(local, pair->key, pair->key_len);

        if (index >= n) {
            continue;
        }
        ranges[index].key_count++;
        ranges[index].live_bytes += pair->key_len + pair->value_len;
    }
    *ranges_out = ranges;
    *n_ranges_out = n;
    return 0;
}

static void local_close(struct rkv_sql_kv *kv)
{
    struct kv_local *local = local_of(kv);

    for (size_t i = 0; i < local->n_pairs; i++) {
        free(local->pairs[i].key);
        free(local->pairs[i].value);
    }
    for (size_t i = 0; i < local->n_splits; i++) {
        free(local->splits[i].key);
    }
    free(local->pairs);
    free(local);
}

static const struct rkv_sql_kv_vtable local_vtable = {
    .get = local_get,
    .scan = local_scan,
    .batch = local_batch,
    .cas = local_cas,
    .ranges = local_ranges,
    .close = local_close,
};

struct rkv_sql_kv *kv_local_open(void)
{
    struct kv_local *local = calloc(1, sizeof(*local));

    if (local == NULL) {
        return NULL;
    }
    local->base.vtable = &local_vtable;
    local->range_ids[0] = 1;
    local->batches_before_failure = -1;
    return &local->base;
}

int kv_local_split(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len)
{
    struct kv_local *local = local_of(kv);
    size_t index = range_index(local, key, key_len);
    uint64_t next_id = 1;

    if (local->n_splits + 1 == LOCAL_RANGES_MAX || key_len == 0 ||
        (index > 0 &&
         compare(local->splits[index - 1].key, local->splits[index - 1].key_len,
                 key, key_len) == 0)) {
        return -EINVAL;
    }
    for (size_t i = 0; i <= local->n_splits; i++) {
        next_id = RKV_MAX(next_id, local->range_ids[i] + 1);
    }
    memmove(&local->splits[index + 1], &local->splits[index],
            (local->n_splits - index) * sizeof(local->splits[0]));
    memmove(&local->range_ids[index + 2], &local->range_ids[index + 1],
            (local->n_splits - index) * sizeof(local->range_ids[0]));
    local->splits[index].key = local_memdup(key, key_len);
    local->splits[index].key_len = key_len;
    local->range_ids[index + 1] = next_id;
    local->n_splits++;
    return 0;
}

uint64_t kv_local_touches(struct rkv_sql_kv *kv, uint64_t range_id)
{
    struct kv_local *local = local_of(kv);

    for (size_t i = 0; i <= local->n_splits; i++) {
        if (local->range_ids[i] == range_id) {
            return local->touches[i];
        }
    }
    return 0;
}

void kv_local_reset_touches(struct rkv_sql_kv *kv)
{
    memset(local_of(kv)->touches, 0, sizeof(local_of(kv)->touches));
}

void kv_local_fail_batches_after(struct rkv_sql_kv *kv, long n)
{
    local_of(kv)->batches_before_failure = n < 0 ? -1 : n;
}

void kv_local_omit_last_range(struct rkv_sql_kv *kv, long n)
{
    local_of(kv)->stale_listings = n;
}

size_t kv_local_count(struct rkv_sql_kv *kv)
{
    return local_of(kv)->n_pairs;
}
