/*
 * Helpers over the key-value vtable (sql_kv.h): single puts and deletes,
 * freeing results, and rkv_sql__kv_apply(), which turns a sorted list of
 * writes into one atomic batch per range.
 *
 * rkv_sql__kv_apply, happy path: list the ranges, walk the ops in key
 * order, cut a batch whenever the next op falls into another range or the
 * batch reaches RKV_SQL_BATCH_OPS_MAX ops or RKV_SQL_BATCH_BYTES_MAX bytes,
 * and send each batch. Failure modes:
 *   - a batch fails with RKV_EKEYMISMATCH or RKV_ERANGENOTFOUND because a
 *     range split after the listing, or the listing lags a split (its meta
 *     record is not written yet): wait with exponential backoff, list the
 *     ranges again and resume at the first op not yet committed, at most
 *     APPLY_RETRIES_MAX times;
 *   - any other failure stops the walk; the report says how many batches
 *     and ops were committed before it, so the caller can tell the user.
 */
#include "sql-lite-front/sql_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RKV_LOG_SUBSYS "sql"
#include "common/common.h"

/* Range-list refreshes one apply makes before it gives up, and the wait
 * before each, doubling from the minimum to the maximum. That is about 6 s
 * in all, longer than the 2 s between a leader's checks of its meta record. */
#define APPLY_RETRIES_MAX 16
#define APPLY_BACKOFF_MIN_MS 10
#define APPLY_BACKOFF_MAX_MS 500

int rkv_sql_kv_put(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len, char *message)
{
    struct rkv_sql_kv_op op = {
        .is_delete = false,
        .key = key,
        .key_len = key_len,
        .value = value,
        .value_len = value_len,
    };

    return kv->vtable->batch(kv, &op, 1, message);
}

int rkv_sql_kv_delete(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len,
                      char *message)
{
    struct rkv_sql_kv_op op = {
        .is_delete = true,
        .key = key,
        .key_len = key_len,
    };

    return kv->vtable->batch(kv, &op, 1, message);
}

void rkv_sql_kv_pairs_free(struct rkv_sql_kv_pair *pairs, size_t n_pairs)
{
    for (size_t i = 0; i < n_pairs; i++) {
        rkv_free(pairs[i].key);
        rkv_free(pairs[i].value);
    }
    rkv_free(pairs);
}

void rkv_sql_kv_ranges_free(struct rkv_sql_kv_range *ranges, size_t n_ranges)
{
    for (size_t i = 0; i < n_ranges; i++) {
        rkv_free(ranges[i].start_key);
        rkv_free(ranges[i].end_key);
    }
    rkv_free(ranges);
}

int rkv_sql__key_compare(const uint8_t *a, size_t a_len, const uint8_t *b,
                         size_t b_len)
{
    size_t n = RKV_MIN(a_len, b_len);
    int cmp = n == 0 ? 0 : memcmp(a, b, n);

    if (cmp != 0) {
        return cmp;
    }
    return (a_len > b_len) - (a_len < b_len);
}

/* Tells whether key lies before the exclusive end of a range. */
static bool range_end_is_after(const struct rkv_sql_kv_range *range,
                               const uint8_t *key, size_t key_len)
{
    if (range->end_key_len == 0) {
        return true;
    }
    return rkv_sql__key_compare(key, key_len, range->end_key,
                                range->end_key_len) < 0;
}

size_t rkv_sql__range_find(const struct rkv_sql_kv_range *ranges,
                           size_t n_ranges, const uint8_t *key, size_t key_len)
{
    size_t low = 0;
    size_t high = n_ranges;

    assert(n_ranges > 0);

    /* Find the last range whose start is <= key. */
    while (high - low > 1) {
        size_t mid = low + (high - low) / 2;

        if (rkv_sql__key_compare(ranges[mid].start_key,
                                 ranges[mid].start_key_len, key,
                                 key_len) <= 0) {
            low = mid;
        } else {
            high = mid;
        }
    }
    return low;
}

/* Returns how many ops from first go into the next batch: all in the same
 * range and within the batch limits. */
static size_t apply_batch_len(const struct rkv_sql_kv_range *range,
                              const struct rkv_sql_kv_op *ops, size_t n_ops)
{
    size_t bytes = 0;
    size_t n = 0;

    while (n < n_ops && n < RKV_SQL_BATCH_OPS_MAX) {
        size_t op_bytes = ops[n].key_len + ops[n].value_len;

        if (!range_end_is_after(range, ops[n].key, ops[n].key_len)) {
            break;
        }
        if (n > 0 && bytes + op_bytes > RKV_SQL_BATCH_BYTES_MAX) {
            break;
        }
        bytes += op_bytes;
        n++;
    }
    return n;
}

/* Sends batches from ops[*next] on with one range listing; advances *next
 * past every committed batch. */
static int apply_with_ranges(struct rkv_sql_kv *kv,
                             const struct rkv_sql_kv_op *ops, size_t n_ops,
                             size_t *next, struct rkv_sql_apply_report *report,
                             char *message)
{
    struct rkv_sql_kv_range *ranges = NULL;
    size_t n_ranges = 0;
    int rv;

    rv = kv->vtable->ranges(kv, &ranges, &n_ranges, message);
    if (rv != 0) {
        return rv;
    }
    if (n_ranges == 0) {
        rv = RKV_EUNAVAILABLE;
        snprintf(message, RKV_SQL_KV_MESSAGE_MAX, "the store has no ranges");
        goto err_after_ranges;
    }
    while (*next < n_ops) {
        const struct rkv_sql_kv_op *first = &ops[*next];
        size_t index =
            rkv_sql__range_find(ranges, n_ranges, first->key, first->key_len);
        size_t n = apply_batch_len(&ranges[index], first, n_ops - *next);

        if (n == 0) {
            /* The listing has a gap or a stale range here, for example
             * when it was read from a node in the middle of a split, so
             * the caller lists the ranges again. */
            rv = RKV_ERANGENOTFOUND;
            report->failed_range_id = ranges[index].range_id;
            snprintf(message, RKV_SQL_KV_MESSAGE_MAX,
                     "the range listing has no range for a key after the "
                     "start of range %llu",
                     (unsigned long long)ranges[index].range_id);
            goto err_after_ranges;
        }
        rv = kv->vtable->batch(kv, first, n, message);
        if (rv != 0) {
            report->failed_range_id = ranges[index].range_id;
            goto err_after_ranges;
        }
        report->n_batches++;
        report->n_ops_applied += n;
        *next += n;
    }
    rkv_sql_kv_ranges_free(ranges, n_ranges);
    return 0;

err_after_ranges:
    rkv_sql_kv_ranges_free(ranges, n_ranges);
    assert(rv != 0);
    return rv;
}

int rkv_sql__kv_apply(struct rkv_sql_kv *kv, const struct rkv_sql_kv_op *ops,
                      size_t n_ops, struct rkv_sql_apply_report *report,
                      char *message)
{
    size_t next = 0;
    unsigned backoff_ms = APPLY_BACKOFF_MIN_MS;
    int rv = 0;

    assert(kv != NULL);
    assert(report != NULL);

    memset(report, 0, sizeof(*report));
    for (unsigned attempt = 0; attempt <= APPLY_RETRIES_MAX; attempt++) {
        if (attempt > 0) {
            usleep(backoff_ms * 1000);
            backoff_ms = RKV_MIN(backoff_ms * 2, APPLY_BACKOFF_MAX_MS);
        }
        rv = apply_with_ranges(kv, ops, n_ops, &next, report, message);
        if (rv != RKV_EKEYMISMATCH && rv != RKV_ERANGENOTFOUND) {
            break;
        }
        RKV_LOG(RKV_DEBUG,
                "batch crossed a range boundary range=%llu, "
                "listing ranges again attempt=%u",
                (unsigned long long)report->failed_range_id, attempt + 1);
        report->failed_range_id = 0;
    }
    return rv;
}
