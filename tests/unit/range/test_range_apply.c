/* Checks the range state machine: each command's effect and result, the
 * limits, exact stats, and exactly-once apply across failures and
 * restarts. */
#define RKV_LOG_SUBSYS "test"
#include "range/range_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/test.h"
#include "tests/unit/range/range_fixture.h"

static void cas(struct fixture *f, const char *key, const char *expected,
                const char *new_value, bool expected_swapped,
                const char *expected_current)
{
    struct rkv_range_apply_result result;
    uint8_t *cmd;
    size_t len;

    ASSERT_OK(rkv_range_encode_cas(
        f->store, key, strlen(key), expected,
        expected != NULL ? strlen(expected) : 0, new_value,
        new_value != NULL ? strlen(new_value) : 0, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.kind, RKV_RANGE_CMD_CAS);
    ASSERT_INT_EQ(result.rv, 0);
    ASSERT_INT_EQ(result.found, expected_swapped);
    if (expected_current == NULL) {
        ASSERT_TRUE(result.value == NULL);
    } else {
        ASSERT_MEM_EQ(result.value, result.value_len, expected_current,
                      strlen(expected_current));
    }
    rkv_range_apply_result_free(&result);
}

static void assert_value(struct fixture *f, const char *key,
                         const char *expected)
{
    char *value = fx_get(f, 1, key);

    if (expected == NULL) {
        ASSERT_TRUE(value == NULL);
        return;
    }
    ASSERT_TRUE(value != NULL);
    ASSERT_STR_EQ(value, expected);
    free(value);
}

/* Put, get and delete; deleting reports whether the key existed. */
TEST(apply, put_get_delete)
{
    struct fixture f;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_put(&f, 1, "a", "1", 0);
    fx_put(&f, 1, "a", "22", 0);
    assert_value(&f, "a", "22");
    fx_del(&f, 1, "a", true);
    fx_del(&f, 1, "a", false);
    assert_value(&f, "a", NULL);
    fx_put(&f, 1, "b", "", 0);
    assert_value(&f, "b", "");
    fx_assert_stats_exact(&f, 1);
    fx_reopen(&f);
    assert_value(&f, "b", "");
    ASSERT_UINT_EQ(fx_applied(&f, 1), 5);
    fx_close(&f);
}

/* Compare-and-swap: each combination of expected and new value. */
TEST(apply, cas_cases)
{
    struct fixture f;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    /* Absent expected on an absent key swaps. */
    cas(&f, "k", NULL, "v1", true, NULL);
    assert_value(&f, "k", "v1");
    /* Absent expected on a present key fails and returns the value. */
    cas(&f, "k", NULL, "v2", false, "v1");
    /* A matching value swaps. */
    cas(&f, "k", "v1", "v2", true, NULL);
    /* A different value fails. */
    cas(&f, "k", "v1", "v3", false, "v2");
    /* An expected value on an absent key fails without a value. */
    cas(&f, "x", "v1", "v3", false, NULL);
    assert_value(&f, "x", NULL);
    /* No new value deletes on a match. */
    cas(&f, "k", "v2", NULL, true, NULL);
    assert_value(&f, "k", NULL);
    /* Absent expected with no new value on an absent key is a no-op. */
    cas(&f, "k", NULL, NULL, true, NULL);
    assert_value(&f, "k", NULL);
    fx_assert_stats_exact(&f, 1);
    fx_close(&f);
}

/* A batch with one key outside the range writes nothing. */
TEST(apply, batch_all_or_nothing)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    struct rkv_range_op ops[3] = {
        {.key = "b", .key_len = 1, .value = "1", .value_len = 1},
        {.is_delete = true, .key = "a", .key_len = 1},
        {.key = "q", .key_len = 1, .value = "3", .value_len = 1},
    };
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_put(&f, 1, "a", "0", 0);
    fx_split(&f, 1, "m", 1);

    ASSERT_OK(rkv_range_encode_batch(f.store, ops, 3, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    ASSERT_INT_EQ(result.kind, RKV_RANGE_CMD_BATCH);
    ASSERT_INT_EQ(result.rv, RKV_EKEYMISMATCH);
    ASSERT_UINT_EQ(result.desc.range_id, 1);
    ASSERT_MEM_EQ(result.desc.end_key, result.desc.end_key_len, "m", 1);
    assert_value(&f, "a", "0");
    assert_value(&f, "b", NULL);

    rkv_free(cmd);

    /* Without the outside key the batch applies in order. */
    ASSERT_OK(rkv_range_encode_batch(f.store, ops, 2, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, 0);
    assert_value(&f, "a", NULL);
    assert_value(&f, "b", "1");
    fx_assert_stats_exact(&f, 1);
    fx_close(&f);
}

/* A key that left the range by the time its entry applies is reported
 * with the current descriptor, and the entry still counts as applied. */
TEST(apply, key_outside_range_at_apply)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    uint8_t *cmd;
    size_t len;
    uint64_t applied;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    ASSERT_OK(rkv_range_encode_put(f.store, "z", 1, "v", 1, &cmd, &len, NULL));
    fx_split(&f, 1, "m", 1);
    applied = fx_applied(&f, 1);
    ASSERT_OK(fx_apply(&f, 1, cmd, len, &result));
    rkv_free(cmd);
    ASSERT_INT_EQ(result.rv, RKV_EKEYMISMATCH);
    ASSERT_UINT_EQ(result.desc.generation, 2);
    ASSERT_UINT_EQ(fx_applied(&f, 1), applied + 1);
    ASSERT_TRUE(fx_get(&f, 2, "z") == NULL);
    fx_close(&f);
}

/* Keys at the size limit work everywhere, one byte more is rejected with
 * a message naming both sizes. */
TEST(apply, key_size_limits)
{
    struct fixture f;
    char key[RKV_RANGE_KEY_MAX + 2];
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;
    uint8_t *cmd;
    size_t len;
    char *value;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    memset(key, 'k', sizeof(key));
    key[RKV_RANGE_KEY_MAX] = '\0';
    fx_put(&f, 1, key, "max", 0);
    value = fx_get(&f, 1, key);
    ASSERT_STR_EQ(value, "max");
    free(value);

    /* A maximum-size split key makes a maximum-size meta record key. */
    fx_split(&f, 1, key, RKV_RANGE_KEY_MAX);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, key, RKV_RANGE_KEY_MAX, &desc));
    ASSERT_UINT_EQ(desc.range_id, 2);
    rkv_range_rtxn_end(rtxn);
    value = fx_get(&f, 2, key);
    ASSERT_STR_EQ(value, "max");
    free(value);

    ASSERT_INT_EQ(rkv_range_encode_put(f.store, key, RKV_RANGE_KEY_MAX + 1, "v",
                                       1, &cmd, &len, errmsg),
                  RKV_ETOOLARGE);
    ASSERT_TRUE(strstr(errmsg, "510") != NULL);
    ASSERT_TRUE(strstr(errmsg, "509") != NULL);
    ASSERT_INT_EQ(rkv_range_encode_delete(f.store, key, RKV_RANGE_KEY_MAX + 1,
                                          &cmd, &len, NULL),
                  RKV_ETOOLARGE);
    ASSERT_INT_EQ(
        rkv_range_encode_put(f.store, "", 0, "v", 1, &cmd, &len, errmsg),
        -EINVAL);
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_INT_EQ(rkv_range_get(rtxn, 2, key, RKV_RANGE_KEY_MAX + 1,
                                (const uint8_t **)&value, &len),
                  RKV_ETOOLARGE);
    rkv_range_rtxn_end(rtxn);
    fx_close(&f);
}

/* Values and batches at their limits pass, one over is rejected. */
TEST(apply, value_and_batch_limits)
{
    struct fixture f;
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    static char value[1001];
    struct rkv_range_op ops[5];
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_close(&f);
    f.options.value_max = 1000;
    f.options.batch_ops_max = 4;
    f.options.batch_bytes_max = 2000;
    fx_reopen(&f);
    fx_bootstrap(&f);

    ASSERT_OK(
        rkv_range_encode_put(f.store, "k", 1, value, 1000, &cmd, &len, NULL));
    ASSERT_OK(fx_apply(&f, 1, cmd, len, NULL));
    rkv_free(cmd);
    ASSERT_INT_EQ(
        rkv_range_encode_put(f.store, "k", 1, value, 1001, &cmd, &len, errmsg),
        RKV_ETOOLARGE);
    ASSERT_TRUE(strstr(errmsg, "1001") != NULL);
    ASSERT_TRUE(strstr(errmsg, "1000") != NULL);
    ASSERT_INT_EQ(rkv_range_encode_cas(f.store, "k", 1, NULL, 0, value, 1001,
                                       &cmd, &len, NULL),
                  RKV_ETOOLARGE);

    for (size_t i = 0; i < RKV_ARRAY_SIZE(ops); i++) {
        ops[i] = (struct rkv_range_op){
            .key = "k", .key_len = 1, .value = value, .value_len = 10};
    }
    ASSERT_OK(rkv_range_encode_batch(f.store, ops, 4, &cmd, &len, NULL));
    rkv_free(cmd);
    ASSERT_INT_EQ(rkv_range_encode_batch(f.store, ops, 5, &cmd, &len, errmsg),
                  RKV_ETOOLARGE);
    ASSERT_TRUE(strstr(errmsg, "5 operations") != NULL);
    ASSERT_INT_EQ(rkv_range_encode_batch(f.store, ops, 0, &cmd, &len, NULL),
                  -EINVAL);
    /* Three values of 1000 bytes pass each check but not the total. */
    for (size_t i = 0; i < 3; i++) {
        ops[i].value_len = 1000;
    }
    ASSERT_INT_EQ(rkv_range_encode_batch(f.store, ops, 3, &cmd, &len, errmsg),
                  RKV_ETOOLARGE);
    ASSERT_TRUE(strstr(errmsg, "2000") != NULL);
    fx_close(&f);
}

/* No-op and configuration entries advance the applied index only. */
TEST(apply, noop_and_conf_entries)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    struct rkv_range_entry entries[2] = {
        {.index = 1, .term = 2, .type = RKV_RANGE_ENTRY_NOOP},
        {.index = 2,
         .term = 2,
         .type = RKV_RANGE_ENTRY_CONF,
         .data = (const uint8_t *)"conf",
         .data_len = 4},
    };
    struct rkv_range_replica replicas[2] = {
        {.node_id = 1, .replica_id = 1},
        {.node_id = 2, .replica_id = 2, .learner = true},
    };
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc meta;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_apply(wtxn, 1, &entries[0], &result));
    ASSERT_OK(rkv_range_apply(wtxn, 1, &entries[1], NULL));
    ASSERT_OK(rkv_range_replicas_set(wtxn, 1, replicas, 2));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    ASSERT_INT_EQ(result.kind, RKV_RANGE_CMD_NONE);
    ASSERT_INT_EQ(result.rv, 0);

    ASSERT_OK(rkv_range_state_load(f.store, 1, &state));
    ASSERT_UINT_EQ(state.applied_index, 2);
    ASSERT_UINT_EQ(state.applied_term, 2);
    ASSERT_UINT_EQ(state.desc.n_replicas, 2);
    ASSERT_TRUE(state.desc.replicas[1].learner);
    ASSERT_UINT_EQ(state.desc.generation, 2);
    /* Range 1's meta record follows its own replica change. */
    ASSERT_OK(rkv_range_rtxn_begin(f.store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, "a", 1, &meta));
    ASSERT_UINT_EQ(meta.generation, 2);
    rkv_range_rtxn_end(rtxn);
    fx_close(&f);
}

/* An entry that is not the next index fails the commit. */
TEST(apply, out_of_order_rejected)
{
    struct fixture f;
    struct rkv_range_entry entry = {
        .index = 2, .term = 1, .type = RKV_RANGE_ENTRY_NOOP};
    struct rkv_range_wtxn *wtxn;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_apply(wtxn, 1, &entry, NULL));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), -EINVAL);
    entry.index = 1;
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_apply(wtxn, 1, &entry, NULL));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    /* Applying the same index twice is refused too. */
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_apply(wtxn, 1, &entry, NULL));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), -EINVAL);
    ASSERT_UINT_EQ(fx_applied(&f, 1), 1);
    fx_close(&f);
}

/* An entry whose data does not decode counts as applied with
 * RKV_EMALFORMED, the same verdict on every replica. */
TEST(apply, undecodable_entry)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    ASSERT_OK(fx_apply(&f, 1, garbage, sizeof(garbage), &result));
    ASSERT_INT_EQ(result.rv, RKV_EMALFORMED);
    ASSERT_UINT_EQ(fx_applied(&f, 1), 1);
    fx_close(&f);
}

/* ---- exactly-once apply across injected failures ------------------------ */

#define MODEL_KEYS 16

/* The expected content of range 1: values of keys "k00".."k15". */
struct model {
    char *values[MODEL_KEYS];
};

static void model_set(struct model *m, int key, const char *value)
{
    free(m->values[key]);
    m->values[key] = value != NULL ? strdup(value) : NULL;
}

static void model_free(struct model *m)
{
    for (int i = 0; i < MODEL_KEYS; i++) {
        model_set(m, i, NULL);
    }
}

/* One random command; its bytes, and its effect on the model. */
struct command {
    uint8_t *bytes;
    size_t len;
    int keys[3];
    const char *values[3]; /* NULL: delete */
    int n_keys;
    bool is_cas;
    const char *expected; /* CAS: NULL means absent */
};

static const char *const command_values[] = {"x", "yy", "zzz", "", "wwww"};

static void key_name(char *buf, int key)
{
    snprintf(buf, 4, "k%02d", key);
}

static void command_make(struct fixture *f, struct command *c)
{
    struct rkv_range_op ops[3];
    char names[3][4];
    int kind = rand() % 4;

    memset(c, 0, sizeof(*c));
    c->n_keys = kind == 3 ? 3 : 1;
    for (int i = 0; i < c->n_keys; i++) {
        c->keys[i] = rand() % MODEL_KEYS;
        c->values[i] = rand() % 4 == 0 ? NULL : command_values[rand() % 5];
        key_name(names[i], c->keys[i]);
        ops[i] = (struct rkv_range_op){
            .is_delete = c->values[i] == NULL,
            .key = names[i],
            .key_len = 3,
            .value = c->values[i],
            .value_len = c->values[i] ? strlen(c->values[i]) : 0};
    }
    if (kind == 2) {
        c->is_cas = true;
        c->expected = rand() % 3 == 0 ? NULL : command_values[rand() % 5];
        ASSERT_OK(rkv_range_encode_cas(
            f->store, names[0], 3, c->expected,
            c->expected ? strlen(c->expected) : 0, c->values[0],
            c->values[0] ? strlen(c->values[0]) : 0, &c->bytes, &c->len, NULL));
    } else {
        ASSERT_OK(rkv_range_encode_batch(f->store, ops, c->n_keys, &c->bytes,
                                         &c->len, NULL));
    }
}

static void model_apply(struct model *m, const struct command *c)
{
    if (c->is_cas) {
        const char *current = m->values[c->keys[0]];
        bool matches =
            c->expected == NULL
                ? current == NULL
                : current != NULL && strcmp(current, c->expected) == 0;

        if (matches) {
            model_set(m, c->keys[0], c->values[0]);
        }
        return;
    }
    for (int i = 0; i < c->n_keys; i++) {
        model_set(m, c->keys[i], c->values[i]);
    }
}

static void assert_matches_model(struct fixture *f, const struct model *m)
{
    char name[4];

    for (int i = 0; i < MODEL_KEYS; i++) {
        key_name(name, i);
        assert_value(f, name, m->values[i]);
    }
    fx_assert_stats_exact(f, 1);
}

/* Every write of every apply is made to fail once, followed by a restart.
 * The store then contains exactly the entries before it, and the retried
 * entry applies once. */
TEST(apply, exactly_once_across_failures)
{
    struct fixture f;
    struct model model = {0};
    struct command command;
    int n_failures = 0;

    srand(7);
    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    for (uint64_t index = 1; index <= 60; index++) {
        struct rkv_range_entry entry;
        int rv = -EIO;

        command_make(&f, &command);
        entry = (struct rkv_range_entry){.index = index,
                                         .term = 1,
                                         .data = command.bytes,
                                         .data_len = command.len};
        for (long n = 0; rv != 0; n++) {
            struct rkv_range_wtxn *wtxn;

            ASSERT_INT_LT(n, 1000);
            ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
            ASSERT_OK(rkv_range_log_append(wtxn, 1, &entry, 1));
            ASSERT_OK(rkv_range_apply(wtxn, 1, &entry, NULL));
            rkv_range__fail_writes_after(f.store, n);
            rv = rkv_range_wtxn_commit(wtxn);
            rkv_range__fail_writes_after(f.store, -1);
            fx_reopen(&f);
            if (rv != 0) {
                ASSERT_INT_EQ(rv, -EIO);
                n_failures++;
                ASSERT_UINT_EQ(fx_applied(&f, 1), index - 1);
                assert_matches_model(&f, &model);
            }
        }
        model_apply(&model, &command);
        ASSERT_UINT_EQ(fx_applied(&f, 1), index);
        assert_matches_model(&f, &model);
        rkv_free(command.bytes);
    }
    ASSERT_INT_GT(n_failures, 60);
    model_free(&model);
    fx_close(&f);
}

/* Allocation failures during an apply fail the commit cleanly. */
TEST(apply, allocation_failures)
{
    struct fixture f;
    struct rkv_range_apply_result result;
    uint8_t *cmd;
    size_t len;
    int rv = -ENOMEM;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_put(&f, 1, "k", "old", 0);
    ASSERT_OK(rkv_range_encode_cas(f.store, "k", 1, "x", 1, "new", 3, &cmd,
                                   &len, NULL));
    for (long n = 0; rv != 0; n++) {
        struct rkv_range_entry entry = {
            .index = 2, .term = 1, .data = cmd, .data_len = len};
        struct rkv_range_wtxn *wtxn;

        ASSERT_INT_LT(n, 100);
        ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
        ASSERT_OK(rkv_range_apply(wtxn, 1, &entry, &result));
        rkv_alloc_fail_after(n);
        rv = rkv_range_wtxn_commit(wtxn);
        rkv_alloc_fail_after(-1);
        if (rv != 0) {
            ASSERT_INT_EQ(rv, -ENOMEM);
            ASSERT_TRUE(result.value == NULL);
            ASSERT_UINT_EQ(fx_applied(&f, 1), 1);
        }
    }
    ASSERT_INT_EQ(result.found, false);
    ASSERT_MEM_EQ(result.value, result.value_len, "old", 3);
    rkv_range_apply_result_free(&result);
    rkv_free(cmd);
    fx_close(&f);
}
