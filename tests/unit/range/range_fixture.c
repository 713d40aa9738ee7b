/* Scenario helpers for the range store tests (range_fixture.h). */
#define RKV_LOG_SUBSYS "test"
#include "tests/unit/range/range_fixture.h"

#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/test.h"

void fx_open(struct fixture *f, const char *name, uint64_t split_bytes)
{
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    int rv;

    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s/%s", rkv_test_tmpdir(), name);
    f->options.path = f->path;
    f->options.no_sync = true;
    f->options.map_size = 4u << 20;
    f->options.split_bytes = split_bytes;
    f->term = 1;
    rv = rkv_range_store_open(&f->options, &f->store, errmsg);
    if (rv != 0) {
        rkv_test_fail(__FILE__, __LINE__, "open %s: %s", f->path, errmsg);
    }
}

void fx_close(struct fixture *f)
{
    rkv_range_store_close(f->store);
    f->store = NULL;
}

void fx_reopen(struct fixture *f)
{
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    int rv;

    fx_close(f);
    rv = rkv_range_store_open(&f->options, &f->store, errmsg);
    if (rv != 0) {
        rkv_test_fail(__FILE__, __LINE__, "reopen %s: %s", f->path, errmsg);
    }
}

void fx_bootstrap(struct fixture *f)
{
    struct rkv_range_replica replica = {.node_id = 1, .replica_id = 1};
    struct rkv_range_wtxn *wtxn;

    ASSERT_OK(rkv_range_wtxn_begin(f->store, &wtxn));
    ASSERT_OK(rkv_range_bootstrap(wtxn, &replica, 1));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
}

uint64_t fx_applied(struct fixture *f, uint64_t range_id)
{
    struct rkv_range_state state;

    ASSERT_OK(rkv_range_state_load(f->store, range_id, &state));
    return state.applied_index;
}

int fx_apply(struct fixture *f, uint64_t range_id, const uint8_t *cmd,
             size_t cmd_len, struct rkv_range_apply_result *result)
{
    struct rkv_range_entry entry = {
        .index = fx_applied(f, range_id) + 1,
        .term = f->term,
        .type = RKV_RANGE_ENTRY_NORMAL,
        .data = cmd,
        .data_len = cmd_len,
    };
    struct rkv_range_wtxn *wtxn;

    ASSERT_OK(rkv_range_wtxn_begin(f->store, &wtxn));
    ASSERT_OK(rkv_range_log_append(wtxn, range_id, &entry, 1));
    ASSERT_OK(rkv_range_apply(wtxn, range_id, &entry, result));
    return rkv_range_wtxn_commit(wtxn);
}

void fx_put(struct fixture *f, uint64_t range_id, const char *key,
            const char *value, int expected_rv)
{
    struct rkv_range_apply_result result;
    uint8_t *cmd;
    size_t len;

    ASSERT_OK(rkv_range_encode_put(f->store, key, strlen(key), value,
                                   strlen(value), &cmd, &len, NULL));
    ASSERT_OK(fx_apply(f, range_id, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.kind, RKV_RANGE_CMD_PUT);
    ASSERT_INT_EQ(result.rv, expected_rv);
    rkv_range_apply_result_free(&result);
}

void fx_del(struct fixture *f, uint64_t range_id, const char *key,
            bool expected_existed)
{
    struct rkv_range_apply_result result;
    uint8_t *cmd;
    size_t len;

    ASSERT_OK(
        rkv_range_encode_delete(f->store, key, strlen(key), &cmd, &len, NULL));
    ASSERT_OK(fx_apply(f, range_id, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    ASSERT_INT_EQ(result.found, expected_existed);
}

uint64_t fx_split(struct fixture *f, uint64_t range_id, const void *key,
                  size_t key_len)
{
    struct rkv_range_apply_result result;
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;
    uint64_t new_id;
    uint8_t *cmd;
    size_t len;

    ASSERT_OK(rkv_range_encode_alloc_range_id(&cmd, &len));
    ASSERT_OK(fx_apply(f, RKV_RANGE_ID_FIRST, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    new_id = result.new_range_id;
    ASSERT_UINT_GT(new_id, RKV_RANGE_ID_FIRST);

    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    ASSERT_OK(rkv_range_desc_get(rtxn, range_id, &desc));
    rkv_range_rtxn_end(rtxn);
    ASSERT_OK(rkv_range_encode_split(f->store, &desc, key, key_len, new_id,
                                     &cmd, &len, NULL));
    ASSERT_OK(fx_apply(f, range_id, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    ASSERT_INT_EQ(result.kind, RKV_RANGE_CMD_SPLIT);
    ASSERT_UINT_EQ(result.right.range_id, new_id);

    if (range_id != RKV_RANGE_ID_FIRST) {
        struct rkv_range_desc left = result.desc;
        struct rkv_range_desc right = result.right;

        ASSERT_OK(rkv_range_encode_meta_update(&left, &right, &cmd, &len));
        ASSERT_OK(fx_apply(f, RKV_RANGE_ID_FIRST, cmd, len, &result));
        rkv_free(cmd);
        ASSERT_INT_EQ(result.rv, 0);
    }
    return new_id;
}

char *fx_get(struct fixture *f, uint64_t range_id, const char *key)
{
    struct rkv_range_rtxn *rtxn;
    const uint8_t *value;
    size_t value_len;
    char *copy = NULL;
    int rv;

    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    rv = rkv_range_get(rtxn, range_id, key, strlen(key), &value, &value_len);
    if (rv == 0) {
        copy = malloc(value_len + 1);
        ASSERT_TRUE(copy != NULL);
        memcpy(copy, value, value_len);
        copy[value_len] = '\0';
    } else {
        ASSERT_INT_EQ(rv, RKV_ENOTFOUND);
    }
    rkv_range_rtxn_end(rtxn);
    return copy;
}

void fx_recount(struct fixture *f, uint64_t range_id,
                struct rkv_range_stats *out)
{
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;
    struct rkv_range_scan_result scan;
    uint8_t start[RKV_RANGE_KEY_MAX];
    size_t start_len;

    memset(out, 0, sizeof(*out));
    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    ASSERT_OK(rkv_range_desc_get(rtxn, range_id, &desc));
    memcpy(start, desc.start_key, desc.start_key_len);
    start_len = desc.start_key_len;
    for (;;) {
        ASSERT_OK(rkv_range_scan(rtxn, range_id, start, start_len, NULL, 0, 100,
                                 &scan));
        for (size_t i = 0; i < scan.n_pairs; i++) {
            ASSERT_TRUE(rkv_range_desc_contains_key(&desc, scan.pairs[i].key,
                                                    scan.pairs[i].key_len));
            out->key_count++;
            out->key_bytes += scan.pairs[i].key_len;
            out->value_bytes += scan.pairs[i].value_len;
        }
        /* A resume key at the range end means the next range. */
        if (!scan.more_after ||
            !rkv_range_desc_contains_key(&desc, scan.resume_key,
                                         scan.resume_key_len)) {
            rkv_range_scan_result_free(&scan);
            break;
        }
        memcpy(start, scan.resume_key, scan.resume_key_len);
        start_len = scan.resume_key_len;
        rkv_range_scan_result_free(&scan);
    }
    rkv_range_rtxn_end(rtxn);
}

void fx_assert_stats_exact(struct fixture *f, uint64_t range_id)
{
    struct rkv_range_stats counted;
    struct rkv_range_stats stored;
    struct rkv_range_rtxn *rtxn;

    fx_recount(f, range_id, &counted);
    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    ASSERT_OK(rkv_range_stats_get(rtxn, range_id, &stored));
    rkv_range_rtxn_end(rtxn);
    ASSERT_UINT_EQ(stored.key_count, counted.key_count);
    ASSERT_UINT_EQ(stored.key_bytes, counted.key_bytes);
    ASSERT_UINT_EQ(stored.value_bytes, counted.value_bytes);
}

uint64_t fx_hash(struct fixture *f, uint64_t range_id)
{
    struct rkv_range_rtxn *rtxn;
    uint64_t hash;

    ASSERT_OK(rkv_range_rtxn_begin(f->store, &rtxn));
    ASSERT_OK(rkv_range_content_hash(rtxn, range_id, &hash));
    rkv_range_rtxn_end(rtxn);
    return hash;
}
