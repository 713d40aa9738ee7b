/*
 * An in-process sorted store behind the sql-lite-front key-value vtable,
 * for the unit tests of the virtual-table logic only. The end-to-end tests
 * use the client library and a real cluster instead.
 *
 * It keeps every pair in one sorted array and cuts the keyspace into
 * ranges at split keys the test chooses, so tests can check which ranges a
 * query touched: every get, scan and batch counts a touch on each range it
 * reads or writes. A batch whose keys straddle a split fails with
 * RKV_EKEYMISMATCH, as the cluster's does.
 */
#ifndef RKV_TEST_SQL_KV_LOCAL_H
#define RKV_TEST_SQL_KV_LOCAL_H

#include <stdint.h>

#include "sql-lite-front/sql_kv.h"

/* Opens an empty store with one range (id 1). Close with its vtable. */
struct rkv_sql_kv *kv_local_open(void);

/* Splits the range holding key at key; the new right-hand range gets the
 * next id. Returns -EINVAL when key is already a boundary. */
int kv_local_split(struct rkv_sql_kv *kv, const uint8_t *key, size_t key_len);

/* Returns how often the range with range_id was touched since the last
 * reset. */
uint64_t kv_local_touches(struct rkv_sql_kv *kv, uint64_t range_id);
void kv_local_reset_touches(struct rkv_sql_kv *kv);

/* Makes every batch after the next n fail with -EIO (n < 0: never). */
void kv_local_fail_batches_after(struct rkv_sql_kv *kv, long n);

/* Makes the next n range listings leave out the last range, as a listing
 * read from a node that has not yet learned of a split can. */
void kv_local_omit_last_range(struct rkv_sql_kv *kv, long n);

/* Counts stored pairs. */
size_t kv_local_count(struct rkv_sql_kv *kv);

#endif /* RKV_TEST_SQL_KV_LOCAL_H */
