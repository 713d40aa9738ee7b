/*
 * Fixture for the range store tests: a store in a fresh temporary folder
 * and scenario helpers that encode a command, apply it as the next Raft
 * entry of a range in its own write transaction, and check the result.
 *
 * Every helper fails the test on an unexpected error, so test bodies read
 * as the scenario they check.
 */
#ifndef RKV_TEST_RANGE_FIXTURE_H
#define RKV_TEST_RANGE_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "range/range.h"

struct fixture {
    struct rkv_range_store *store;
    struct rkv_range_store_options options; /* path points into path[] */
    char path[512];
    uint64_t term; /* term given to applied entries */
};

/* Opens a store in "<tmpdir>/<name>" with no_sync and the given split
 * threshold (0: default). */
void fx_open(struct fixture *f, const char *name, uint64_t split_bytes);
void fx_close(struct fixture *f);
/* Closes and opens the store again, as a restart. */
void fx_reopen(struct fixture *f);
/* Creates range 1 with one replica (node 1, replica 1). */
void fx_bootstrap(struct fixture *f);

/* Applies cmd as the next entry of range_id; result may be NULL. Returns
 * the commit's status. */
int fx_apply(struct fixture *f, uint64_t range_id, const uint8_t *cmd,
             size_t cmd_len, struct rkv_range_apply_result *result);
/* Applies a put, a delete or a CAS and asserts the command's own rv. */
void fx_put(struct fixture *f, uint64_t range_id, const char *key,
            const char *value, int expected_rv);
void fx_del(struct fixture *f, uint64_t range_id, const char *key,
            bool expected_existed);
/* Splits range_id at key through the full protocol: a range id from range
 * 1, the split, and the meta update on range 1. Returns the new id. */
uint64_t fx_split(struct fixture *f, uint64_t range_id, const void *key,
                  size_t key_len);

/* Reads a key; returns a new NUL-terminated copy (free()) or NULL when
 * absent. */
char *fx_get(struct fixture *f, uint64_t range_id, const char *key);
/* Counts the user data of a range with a full scan. */
void fx_recount(struct fixture *f, uint64_t range_id,
                struct rkv_range_stats *out);
/* Asserts that stored stats equal a full recount. */
void fx_assert_stats_exact(struct fixture *f, uint64_t range_id);
/* Returns the range's applied index. */
uint64_t fx_applied(struct fixture *f, uint64_t range_id);
/* Returns the content hash of a range. */
uint64_t fx_hash(struct fixture *f, uint64_t range_id);

#endif /* RKV_TEST_RANGE_FIXTURE_H */
