/*
 * Tests of the linearizability checker on hand-written register histories:
 * linearizable ones are accepted, the classic violations are rejected, and
 * operations with unknown outcomes may take effect late or never.
 */
#include "tests/lib/test.h"
#include "tests/sim/sim.h"

#include <stdarg.h>

/* A history under construction; every op is on key 0. */
struct fixture {
    struct rkv_sim_history history;
};

static void setup(struct fixture *f)
{
    rkv_sim_history_init(&f->history);
}

static void teardown(struct fixture *f)
{
    rkv_sim_history_free(&f->history);
}

static void add(struct fixture *f, const struct rkv_sim_op *op)
{
    ASSERT_OK(rkv_sim_history_add(&f->history, op));
}

/* [call, ret] put value; ret 0 means unknown outcome. */
static void put(struct fixture *f, uint64_t call, uint64_t ret,
                const char *value)
{
    struct rkv_sim_op op = {.kind = RKV_SIM_OP_PUT, .call_seq = call};

    snprintf(op.value, sizeof(op.value), "%s", value);
    op.return_seq = ret;
    op.unknown = ret == 0;
    add(f, &op);
}

/* [call, ret] get returning value, or absent when value is NULL. */
static void get(struct fixture *f, uint64_t call, uint64_t ret,
                const char *value)
{
    struct rkv_sim_op op = {.kind = RKV_SIM_OP_GET, .call_seq = call};

    op.return_seq = ret;
    op.found = value != NULL;
    if (value != NULL) {
        snprintf(op.output, sizeof(op.output), "%s", value);
    }
    add(f, &op);
}

/* [call, ret] cas expected (NULL: absent) -> value; ret 0: unknown. */
static void cas(struct fixture *f, uint64_t call, uint64_t ret,
                const char *expected, const char *value, bool swapped)
{
    struct rkv_sim_op op = {.kind = RKV_SIM_OP_CAS, .call_seq = call};

    op.expect_absent = expected == NULL;
    if (expected != NULL) {
        snprintf(op.expected, sizeof(op.expected), "%s", expected);
    }
    snprintf(op.value, sizeof(op.value), "%s", value);
    op.return_seq = ret;
    op.unknown = ret == 0;
    op.found = swapped;
    add(f, &op);
}

static enum rkv_sim_check_result check(struct fixture *f)
{
    enum rkv_sim_check_result result;

    ASSERT_OK(rkv_sim_check_key(&f->history, 0, 0, 0, &result, NULL));
    return result;
}

/* An empty history is linearizable. */
TEST(sim_check, empty_history_ok)
{
    struct fixture f;

    setup(&f);
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* Sequential put then get of the same value is accepted. */
TEST(sim_check, sequential_put_get_ok)
{
    struct fixture f;

    setup(&f);
    get(&f, 1, 2, NULL);
    put(&f, 3, 4, "a");
    get(&f, 5, 6, "a");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* A read concurrent with a put may see the old or the new value. */
TEST(sim_check, concurrent_read_either_ok)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 2, "a");
    put(&f, 3, 8, "b");
    get(&f, 4, 5, "b");
    get(&f, 6, 7, "a");
    /* b then a inside b's window: b must be linearized before the first
     * read and after the second, which is impossible. */
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);

    setup(&f);
    put(&f, 1, 2, "a");
    put(&f, 3, 8, "b");
    get(&f, 4, 5, "a");
    get(&f, 6, 7, "b");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* A read that starts after a put completed must not return the older
 * value (a stale read). */
TEST(sim_check, stale_read_rejected)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 2, "a");
    put(&f, 3, 4, "b");
    get(&f, 5, 6, "a");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}

/* The detail of a stale read names the read as the blocked operation,
 * after the two puts linearized. */
TEST(sim_check, violation_detail_names_op)
{
    struct fixture f;
    struct rkv_sim_check_detail detail;
    enum rkv_sim_check_result result;

    setup(&f);
    put(&f, 1, 2, "a");
    put(&f, 3, 4, "b");
    get(&f, 5, 6, "a");
    ASSERT_OK(rkv_sim_check_key(&f.history, 0, 0, 0, &result, &detail));
    ASSERT_INT_EQ(result, RKV_SIM_CHECK_VIOLATION);
    ASSERT_UINT_EQ(detail.n_ops, 3);
    ASSERT_UINT_EQ(detail.n_linearized_max, 2);
    ASSERT_UINT_EQ(detail.blocked_call_seq, 5);
    teardown(&f);
}

/* A read of a value no operation wrote is rejected. */
TEST(sim_check, phantom_value_rejected)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 2, "a");
    get(&f, 3, 4, "z");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}

/* Two concurrent CAS from the same expected value cannot both swap (a lost
 * update). */
TEST(sim_check, lost_update_cas_rejected)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 2, "a");
    cas(&f, 3, 6, "a", "a,x", true);
    cas(&f, 4, 5, "a", "a,y", true);
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);

    /* One swap and one failure is fine. */
    setup(&f);
    put(&f, 1, 2, "a");
    cas(&f, 3, 6, "a", "a,x", true);
    cas(&f, 4, 5, "a", "a,y", false);
    get(&f, 7, 8, "a,x");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* A CAS that reports failure although the value matched is rejected. */
TEST(sim_check, cas_false_failure_rejected)
{
    struct fixture f;

    setup(&f);
    cas(&f, 1, 2, NULL, "a", false);
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}

/* An unknown put may take effect long after its call... */
TEST(sim_check, unknown_put_applies_late_ok)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 0, "a");
    get(&f, 2, 3, NULL);
    put(&f, 4, 5, "b");
    get(&f, 6, 7, "a");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* ...or never. */
TEST(sim_check, unknown_put_never_applies_ok)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 0, "a");
    get(&f, 2, 3, NULL);
    get(&f, 4, 5, NULL);
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* An unknown put cannot take effect before it was called. */
TEST(sim_check, unknown_put_before_call_rejected)
{
    struct fixture f;

    setup(&f);
    get(&f, 1, 2, "a");
    put(&f, 3, 0, "a");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}

/* An unknown put takes effect at most once: a value that came back after
 * being overwritten needs a second write. */
TEST(sim_check, unknown_put_applies_once)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 0, "a");
    get(&f, 2, 3, "a");
    put(&f, 4, 5, "b");
    get(&f, 6, 7, "b");
    get(&f, 8, 9, "a");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}

/* An unknown CAS takes the branch the state selects when it applies. */
TEST(sim_check, unknown_cas_branches)
{
    struct fixture f;

    setup(&f);
    put(&f, 1, 2, "a");
    cas(&f, 3, 0, "a", "a,x", false);
    get(&f, 4, 5, "a,x");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);

    /* It cannot produce its value from a state it does not match. */
    setup(&f);
    put(&f, 1, 2, "b");
    cas(&f, 3, 0, "a", "a,x", false);
    get(&f, 4, 5, "a,x");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}

/* Operations on other keys do not constrain key 0. */
TEST(sim_check, other_keys_ignored)
{
    struct fixture f;
    struct rkv_sim_op op = {.kind = RKV_SIM_OP_GET, .key = 1};

    setup(&f);
    put(&f, 1, 2, "a");
    op.call_seq = 3;
    op.return_seq = 4;
    op.found = true;
    snprintf(op.output, sizeof(op.output), "zzz");
    add(&f, &op);
    get(&f, 5, 6, "a");
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* Many concurrent unknown writes make the search large: a tiny budget
 * gives up with "unknown" instead of running on. */
TEST(sim_check, budget_gives_unknown)
{
    struct fixture f;
    enum rkv_sim_check_result result;
    char value[16];

    setup(&f);
    for (unsigned i = 0; i < 40; i++) {
        snprintf(value, sizeof(value), "v%u", i);
        put(&f, 1 + i, 0, value);
    }
    get(&f, 100, 101, "v0");
    get(&f, 102, 103, "nobody");
    ASSERT_OK(rkv_sim_check_key(&f.history, 0, 50, 0, &result, NULL));
    ASSERT_INT_EQ(result, RKV_SIM_CHECK_UNKNOWN);
    teardown(&f);
}

/* A search too large to finish stops at its time budget with "unknown"
 * instead of hanging, whatever its step budget. Without the time budget
 * this test would run until its process is killed. */
TEST(sim_check, time_budget_gives_unknown)
{
    struct fixture f;
    enum rkv_sim_check_result result;
    char value[16];

    setup(&f);
    /* 60 overlapping writes, each seen by a read, then a read of a value
     * nobody wrote: proving the violation means trying every order. */
    for (unsigned i = 0; i < 60; i++) {
        snprintf(value, sizeof(value), "v%u", i);
        put(&f, 1 + i, 0, value);
        get(&f, 100 + i, 1000, value);
    }
    get(&f, 2000, 2001, "nobody");
    ASSERT_OK(rkv_sim_check_key(&f.history, 0, UINT64_MAX, 20, &result, NULL));
    ASSERT_INT_EQ(result, RKV_SIM_CHECK_UNKNOWN);
    teardown(&f);
}

/* A long concurrent history of appends by CAS checks quickly. */
TEST(sim_check, long_append_history_ok)
{
    struct fixture f;
    char cur[RKV_SIM_VALUE_MAX] = "s";
    char next[RKV_SIM_VALUE_MAX];
    uint64_t t = 1;

    setup(&f);
    put(&f, t, t + 1, "s");
    t += 2;
    for (unsigned i = 0; i < 30; i++) {
        snprintf(next, sizeof(next), "%s,%u", i % 10 == 0 ? "s" : cur, i);
        /* Overlapping pairs: a read and a CAS that both span t..t+3. */
        get(&f, t, t + 3, cur);
        cas(&f, t + 1, t + 2, cur, next, true);
        snprintf(cur, sizeof(cur), "%s", next);
        t += 4;
    }
    get(&f, t, t + 1, cur);
    ASSERT_INT_EQ(check(&f), RKV_SIM_CHECK_OK);
    teardown(&f);
}

/* The PRNG replays the same sequence for the same seed and stays in
 * bounds. */
TEST(sim_prng, replays_and_bounds)
{
    struct rkv_sim_prng a;
    struct rkv_sim_prng b;

    rkv_sim_prng_seed(&a, 42);
    rkv_sim_prng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) {
        ASSERT_UINT_EQ(rkv_sim_prng_next(&a), rkv_sim_prng_next(&b));
        ASSERT_UINT_LT(rkv_sim_prng_below(&a, 7), 7);
        ASSERT_UINT_GE(rkv_sim_prng_between(&b, 3, 5), 3);
    }
    rkv_sim_prng_seed(&b, 43);
    ASSERT_UINT_NE(rkv_sim_prng_next(&a), rkv_sim_prng_next(&b));
}

/* Many concurrent unknown writes that no operation read are pruned, so the
 * check passes within a budget that the unpruned search would exceed. Pruning
 * never hides a violation: the whole history is searched again. */
TEST(sim_check, unobserved_unknowns_pruned)
{
    struct fixture f;
    enum rkv_sim_check_result result;
    char value[16];

    setup(&f);
    put(&f, 1, 2, "a");
    for (unsigned i = 0; i < 40; i++) {
        snprintf(value, sizeof(value), "v%u", i);
        put(&f, 3 + i, 0, value);
    }
    get(&f, 100, 101, "a");
    get(&f, 102, 103, "v7");
    ASSERT_OK(rkv_sim_check_key(&f.history, 0, 500, 0, &result, NULL));
    ASSERT_INT_EQ(result, RKV_SIM_CHECK_OK);

    /* After v7 was read, reading a again needs a second write of a. With
     * 40 unknown writes in the way, the budget may run out first, but the
     * result is never "linearizable". */
    get(&f, 104, 105, "a");
    ASSERT_OK(rkv_sim_check_key(&f.history, 0, 0, 0, &result, NULL));
    ASSERT_INT_NE(result, RKV_SIM_CHECK_OK);
    teardown(&f);

    /* With 8 unknown writes the whole search finishes and finds it. */
    setup(&f);
    put(&f, 1, 2, "a");
    for (unsigned i = 0; i < 8; i++) {
        snprintf(value, sizeof(value), "v%u", i);
        put(&f, 3 + i, 0, value);
    }
    get(&f, 100, 101, "v7");
    get(&f, 102, 103, "a");
    ASSERT_OK(rkv_sim_check_key(&f.history, 0, 0, 0, &result, NULL));
    ASSERT_INT_EQ(result, RKV_SIM_CHECK_VIOLATION);
    teardown(&f);
}
