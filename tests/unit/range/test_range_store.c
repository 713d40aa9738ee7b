/* Checks the LMDB store: open, identity, Raft log and state persistence,
 * group commit counters, map growth and error translation. */
#define RKV_LOG_SUBSYS "test"
#include "range/range_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/test.h"
#include "tests/unit/range/range_fixture.h"

static void append_entries(struct fixture *f, uint64_t range_id, uint64_t first,
                           uint64_t n, uint64_t term)
{
    struct rkv_range_entry entries[64];
    char data[64][32];
    struct rkv_range_wtxn *wtxn;

    ASSERT_TRUE(n <= RKV_ARRAY_SIZE(entries));
    for (uint64_t i = 0; i < n; i++) {
        snprintf(data[i], sizeof(data[i]), "e%llu",
                 (unsigned long long)(first + i));
        entries[i].index = first + i;
        entries[i].term = term;
        entries[i].type = RKV_RANGE_ENTRY_NORMAL;
        entries[i].data = (const uint8_t *)data[i];
        entries[i].data_len = strlen(data[i]);
    }
    ASSERT_OK(rkv_range_wtxn_begin(f->store, &wtxn));
    ASSERT_OK(rkv_range_log_append(wtxn, range_id, entries, n));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
}

static uint64_t term_at(struct fixture *f, uint64_t index)
{
    uint64_t term = 0;

    ASSERT_OK(rkv_range_log_term(f->store, RKV_RANGE_ID_FIRST, index, &term));
    return term;
}

/* The identity record persists and a different identity is rejected. */
TEST(store, identity_persists)
{
    struct fixture f;
    struct rkv_range_ident ident = {.node_id = 7, .cluster_id = 99};
    struct rkv_range_ident other = {.node_id = 8, .cluster_id = 99};
    struct rkv_range_ident loaded;

    fx_open(&f, "s", 0);
    ASSERT_INT_EQ(rkv_range_ident_load(f.store, &loaded), RKV_ENOTFOUND);
    ASSERT_OK(rkv_range_ident_save(f.store, &ident));
    fx_reopen(&f);
    ASSERT_OK(rkv_range_ident_load(f.store, &loaded));
    ASSERT_UINT_EQ(loaded.node_id, 7);
    ASSERT_UINT_EQ(loaded.cluster_id, 99);
    ASSERT_OK(rkv_range_ident_save(f.store, &ident));
    ASSERT_INT_EQ(rkv_range_ident_save(f.store, &other), RKV_ECLUSTERID);
    fx_close(&f);
}

/* Open fails with a message naming the path when it is a file. */
TEST(store, open_error_names_path)
{
    struct rkv_range_store_options options = {0};
    struct rkv_range_store *store = NULL;
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    char path[600];
    FILE *file;

    snprintf(path, sizeof(path), "%s/file", rkv_test_tmpdir());
    file = fopen(path, "w");
    ASSERT_TRUE(file != NULL);
    fclose(file);
    options.path = path;
    ASSERT_INT_NE(rkv_range_store_open(&options, &store, errmsg), 0);
    ASSERT_TRUE(store == NULL);
    ASSERT_TRUE(strstr(errmsg, path) != NULL);
}

/* Bootstrap creates range 1 over the whole keyspace, only once. */
TEST(store, bootstrap_creates_first_range)
{
    struct fixture f;
    struct rkv_range_state *states;
    size_t n;
    struct rkv_range_replica replica = {.node_id = 1, .replica_id = 1};
    struct rkv_range_wtxn *wtxn;

    fx_open(&f, "s", 0);
    ASSERT_OK(rkv_range_store_load(f.store, &states, &n));
    ASSERT_UINT_EQ(n, 0);
    fx_bootstrap(&f);
    fx_reopen(&f);
    ASSERT_OK(rkv_range_store_load(f.store, &states, &n));
    ASSERT_UINT_EQ(n, 1);
    ASSERT_TRUE(states[0].initialized);
    ASSERT_UINT_EQ(states[0].desc.range_id, RKV_RANGE_ID_FIRST);
    ASSERT_UINT_EQ(states[0].desc.start_key_len, 0);
    ASSERT_UINT_EQ(states[0].desc.end_key_len, 0);
    ASSERT_UINT_EQ(states[0].desc.n_replicas, 1);
    ASSERT_UINT_EQ(states[0].applied_index, 0);
    ASSERT_UINT_EQ(states[0].last_index, 0);
    rkv_free(states);

    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_bootstrap(wtxn, &replica, 1));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), RKV_ESTALE);
    fx_close(&f);
}

/* Appending over a conflicting suffix replaces it; terms survive restart. */
TEST(log, append_replaces_conflicting_suffix)
{
    struct fixture f;
    struct rkv_range_entry *entries;
    struct rkv_range_state state;
    size_t n;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    append_entries(&f, RKV_RANGE_ID_FIRST, 1, 10, 1);
    append_entries(&f, RKV_RANGE_ID_FIRST, 6, 2, 2);
    fx_reopen(&f);

    ASSERT_OK(rkv_range_state_load(f.store, RKV_RANGE_ID_FIRST, &state));
    ASSERT_UINT_EQ(state.last_index, 7);
    ASSERT_UINT_EQ(state.last_term, 2);
    ASSERT_UINT_EQ(term_at(&f, 5), 1);
    ASSERT_UINT_EQ(term_at(&f, 6), 2);
    ASSERT_UINT_EQ(term_at(&f, 0), 0);
    ASSERT_INT_EQ(rkv_range_log_term(f.store, 1, 8, &state.last_term),
                  RKV_ENOTFOUND);

    ASSERT_OK(rkv_range_log_load(f.store, 1, 1, 100, 0, &entries, &n));
    ASSERT_UINT_EQ(n, 7);
    for (size_t i = 0; i < n; i++) {
        char expected[32];

        snprintf(expected, sizeof(expected), "e%zu", i + 1);
        ASSERT_UINT_EQ(entries[i].index, i + 1);
        ASSERT_MEM_EQ(entries[i].data, entries[i].data_len, expected,
                      strlen(expected));
    }
    rkv_range_entries_free(entries, n);

    /* bytes_max stops early but returns at least one entry. */
    ASSERT_OK(rkv_range_log_load(f.store, 1, 3, 7, 1, &entries, &n));
    ASSERT_UINT_EQ(n, 1);
    ASSERT_UINT_EQ(entries[0].index, 3);
    rkv_range_entries_free(entries, n);
    fx_close(&f);
}

/* An append that leaves a gap fails the whole transaction. */
TEST(log, append_gap_rejected)
{
    struct fixture f;
    struct rkv_range_entry entry = {.index = 5, .term = 1};
    struct rkv_range_hard_state hs = {.term = 9, .vote = 1, .commit = 0};
    struct rkv_range_hard_state loaded;
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    append_entries(&f, 1, 1, 2, 1);
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_hard_state_save(wtxn, 1, &hs));
    ASSERT_OK(rkv_range_log_append(wtxn, 1, &entry, 1));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), -EINVAL);

    /* Nothing of the failed transaction is visible. */
    ASSERT_OK(rkv_range_state_load(f.store, 1, &state));
    loaded = state.hard_state;
    ASSERT_UINT_EQ(loaded.term, 0);
    ASSERT_UINT_EQ(state.last_index, 2);
    fx_close(&f);
}

/* Truncation and compaction move the log bounds, which survive restart. */
TEST(log, truncate_and_compact)
{
    struct fixture f;
    struct rkv_range_state state;
    struct rkv_range_entry *entries;
    struct rkv_range_wtxn *wtxn;
    uint64_t term;
    size_t n;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    append_entries(&f, 1, 1, 10, 3);

    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_log_truncate(wtxn, 1, 9));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));

    /* Compaction past the applied index is refused. */
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_log_compact(wtxn, 1, 4));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), -EINVAL);

    /* Apply entries 1..4 (their data is not a command: each fails to
     * decode and still counts as applied). */
    ASSERT_OK(rkv_range_log_load(f.store, 1, 1, 4, 0, &entries, &n));
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(rkv_range_apply(wtxn, 1, &entries[i], NULL));
    }
    ASSERT_OK(rkv_range_log_compact(wtxn, 1, 4));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    rkv_range_entries_free(entries, n);

    fx_reopen(&f);
    ASSERT_OK(rkv_range_state_load(f.store, 1, &state));
    ASSERT_UINT_EQ(state.compacted_index, 4);
    ASSERT_UINT_EQ(state.compacted_term, 3);
    ASSERT_UINT_EQ(state.applied_index, 4);
    ASSERT_UINT_EQ(state.last_index, 8);
    ASSERT_INT_EQ(rkv_range_log_term(f.store, 1, 3, &term), RKV_ECOMPACTED);
    ASSERT_OK(rkv_range_log_term(f.store, 1, 4, &term));
    ASSERT_UINT_EQ(term, 3);
    ASSERT_INT_EQ(rkv_range_log_load(f.store, 1, 4, 8, 0, &entries, &n),
                  RKV_ECOMPACTED);
    ASSERT_OK(rkv_range_log_load(f.store, 1, 5, 8, 0, &entries, &n));
    ASSERT_UINT_EQ(n, 4);
    rkv_range_entries_free(entries, n);

    /* Appending at or below the compacted index is refused. */
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_log_truncate(wtxn, 1, 4));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), -EINVAL);
    fx_close(&f);
}

/* Hard state of several ranges commits in one transaction, one fsync. */
TEST(store, group_commit_counts_one_fsync)
{
    struct fixture f;
    struct rkv_range_store_counters before;
    struct rkv_range_store_counters after;
    struct rkv_range_hard_state hs = {.term = 4, .vote = 2, .commit = 0};
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;
    char errmsg[RKV_RANGE_ERRMSG_SIZE];

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_split(&f, 1, "m", 1);
    /* Reopen in sync mode, where every commit is durable. */
    fx_close(&f);
    f.options.no_sync = false;
    ASSERT_OK(rkv_range_store_open(&f.options, &f.store, errmsg));

    rkv_range_store_counters(f.store, &before);
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_hard_state_save(wtxn, 1, &hs));
    ASSERT_OK(rkv_range_hard_state_save(wtxn, 2, &hs));
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));
    rkv_range_store_counters(f.store, &after);
    ASSERT_UINT_EQ(after.n_commits, before.n_commits + 1);
    ASSERT_UINT_EQ(after.n_fsyncs, before.n_fsyncs + 1);

    fx_reopen(&f);
    ASSERT_OK(rkv_range_state_load(f.store, 2, &state));
    ASSERT_UINT_EQ(state.hard_state.term, 4);
    ASSERT_UINT_EQ(state.hard_state.vote, 2);

    /* A Raft operation on a range this node lacks fails the commit. */
    ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
    ASSERT_OK(rkv_range_hard_state_save(wtxn, 77, &hs));
    ASSERT_INT_EQ(rkv_range_wtxn_commit(wtxn), RKV_ERANGENOTFOUND);
    fx_close(&f);
}

/* A transaction larger than the map grows it instead of failing. */
TEST(store, map_grows_when_full)
{
    struct fixture f;
    struct rkv_range_store_counters counters;
    struct rkv_range_op ops[64];
    static char value[64 * 1024];
    char keys[64][8];
    char *read;
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    memset(value, 'v', sizeof(value));
    for (size_t i = 0; i < RKV_ARRAY_SIZE(ops); i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%02zu", i);
        ops[i] = (struct rkv_range_op){.key = keys[i],
                                       .key_len = 3,
                                       .value = value,
                                       .value_len = sizeof(value)};
    }
    /* Four batches of 4 MiB each overflow the initial 4 MiB map. */
    for (int round = 0; round < 4; round++) {
        ASSERT_OK(rkv_range_encode_batch(f.store, ops, RKV_ARRAY_SIZE(ops),
                                         &cmd, &len, NULL));
        ASSERT_OK(fx_apply(&f, 1, cmd, len, NULL));
        rkv_free(cmd);
        value[0]++;
    }
    rkv_range_store_counters(f.store, &counters);
    ASSERT_UINT_GE(counters.n_map_grows, 1);
    ASSERT_UINT_GT(counters.map_size, 4u << 20);
    read = fx_get(&f, 1, "k63");
    ASSERT_TRUE(read != NULL);
    ASSERT_INT_EQ(read[0], 'v' + 3);
    free(read);
    fx_assert_stats_exact(&f, 1);
    fx_close(&f);
}

/* At map_size_max the commit fails with RKV_EMAPFULL and writes nothing. */
TEST(store, map_full_at_limit)
{
    struct fixture f;
    struct rkv_range_op ops[32];
    static char value[64 * 1024];
    char keys[32][8];
    uint64_t applied;
    uint8_t *cmd;
    size_t len;
    int rv = 0;

    fx_open(&f, "s", 0);
    fx_close(&f);
    f.options.map_size_max = 8u << 20;
    fx_reopen(&f);
    fx_bootstrap(&f);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(ops); i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%02zu", i);
        ops[i] = (struct rkv_range_op){.key = keys[i],
                                       .key_len = 3,
                                       .value = value,
                                       .value_len = sizeof(value)};
    }
    for (int round = 0; round < 16 && rv == 0; round++) {
        snprintf(value, sizeof(value), "round %d", round);
        ASSERT_OK(rkv_range_encode_batch(f.store, ops, RKV_ARRAY_SIZE(ops),
                                         &cmd, &len, NULL));
        applied = fx_applied(&f, 1);
        rv = fx_apply(&f, 1, cmd, len, NULL);
        rkv_free(cmd);
    }
    ASSERT_INT_EQ(rv, RKV_EMAPFULL);
    ASSERT_UINT_EQ(fx_applied(&f, 1), applied);
    fx_assert_stats_exact(&f, 1);
    fx_close(&f);
}

/* A write failure at any point of a transaction leaves no trace. */
TEST(store, write_failure_commits_nothing)
{
    struct fixture f;
    struct rkv_range_hard_state hs = {.term = 2, .vote = 1, .commit = 1};
    struct rkv_range_entry entry = {.index = 1, .term = 2};
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;
    int rv = -EIO;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    for (long n = 0; rv != 0; n++) {
        ASSERT_INT_LT(n, 100);
        rkv_range__fail_writes_after(f.store, n);
        ASSERT_OK(rkv_range_wtxn_begin(f.store, &wtxn));
        ASSERT_OK(rkv_range_hard_state_save(wtxn, 1, &hs));
        ASSERT_OK(rkv_range_log_append(wtxn, 1, &entry, 1));
        ASSERT_OK(rkv_range_apply(wtxn, 1, &entry, NULL));
        rv = rkv_range_wtxn_commit(wtxn);
        rkv_range__fail_writes_after(f.store, -1);
        ASSERT_OK(rkv_range_state_load(f.store, 1, &state));
        if (rv != 0) {
            ASSERT_INT_EQ(rv, -EIO);
            ASSERT_UINT_EQ(state.hard_state.term, 0);
            ASSERT_UINT_EQ(state.last_index, 0);
            ASSERT_UINT_EQ(state.applied_index, 0);
        }
    }
    ASSERT_UINT_EQ(state.hard_state.term, 2);
    ASSERT_UINT_EQ(state.last_index, 1);
    ASSERT_UINT_EQ(state.applied_index, 1);
    fx_close(&f);
}

/* LMDB's codes become negative errno or the project's codes. */
TEST(store, lmdb_errors_translated)
{
    ASSERT_INT_EQ(rkv_range__mdb_error(0), 0);
    ASSERT_INT_EQ(rkv_range__mdb_error(ENOSPC), -ENOSPC);
    ASSERT_INT_EQ(rkv_range__mdb_error(EIO), -EIO);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_NOTFOUND), RKV_ENOTFOUND);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_MAP_FULL), RKV_EMAPFULL);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_CORRUPTED), RKV_ECORRUPT);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_PAGE_NOTFOUND), RKV_ECORRUPT);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_TXN_FULL), RKV_ETOOLARGE);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_BAD_VALSIZE), RKV_ETOOLARGE);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_READERS_FULL), RKV_EBUSY);
    ASSERT_INT_EQ(rkv_range__mdb_error(MDB_BAD_TXN), -EINVAL);
}

/* Allocation failures during open and load return -ENOMEM and leak
 * nothing. */
TEST(store, allocation_failures)
{
    struct fixture f;
    struct rkv_range_state *states = NULL;
    struct rkv_range_store *store;
    size_t n;
    int rv = -ENOMEM;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    fx_split(&f, 1, "k", 1);
    fx_close(&f);
    for (long i = 0; rv != 0; i++) {
        ASSERT_INT_LT(i, 100);
        rkv_alloc_fail_after(i);
        rv = rkv_range_store_open(&f.options, &store, NULL);
        rkv_alloc_fail_after(-1);
        if (rv == 0) {
            rkv_range_store_close(store);
        } else {
            ASSERT_INT_EQ(rv, -ENOMEM);
        }
    }
    fx_reopen(&f);
    rv = -ENOMEM;
    for (long i = 0; rv != 0; i++) {
        ASSERT_INT_LT(i, 100);
        rkv_alloc_fail_after(i);
        rv = rkv_range_store_load(f.store, &states, &n);
        rkv_alloc_fail_after(-1);
        if (rv != 0) {
            ASSERT_INT_EQ(rv, -ENOMEM);
        }
    }
    ASSERT_UINT_EQ(n, 2);
    rkv_free(states);
    fx_close(&f);
}

struct reader_args {
    struct rkv_range_store *store;
    atomic_bool stop;
    long n_reads;
    long n_errors;
};

static void *reader_main(void *data)
{
    struct reader_args *args = data;

    while (!atomic_load(&args->stop)) {
        struct rkv_range_rtxn *rtxn;
        const uint8_t *value;
        size_t value_len;
        int rv;

        if (rkv_range_rtxn_begin(args->store, &rtxn) != 0) {
            args->n_errors++;
            continue;
        }
        rv = rkv_range_get(rtxn, 1, "k00", 3, &value, &value_len);
        if (rv != 0 && rv != RKV_ENOTFOUND) {
            args->n_errors++;
        }
        if (rv == 0 && value_len != 64 * 1024) {
            args->n_errors++;
        }
        rkv_range_rtxn_end(rtxn);
        args->n_reads++;
    }
    return NULL;
}

/* Readers on another thread keep working while the map grows under them. */
TEST(store, map_grows_under_concurrent_reads)
{
    struct fixture f;
    struct reader_args args = {0};
    struct rkv_range_store_counters counters;
    struct rkv_range_op ops[64];
    static char value[64 * 1024];
    char keys[64][8];
    pthread_t thread;
    uint8_t *cmd;
    size_t len;

    fx_open(&f, "s", 0);
    fx_bootstrap(&f);
    args.store = f.store;
    ASSERT_INT_EQ(pthread_create(&thread, NULL, reader_main, &args), 0);
    for (size_t i = 0; i < RKV_ARRAY_SIZE(ops); i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%02zu", i);
        ops[i] = (struct rkv_range_op){.key = keys[i],
                                       .key_len = 3,
                                       .value = value,
                                       .value_len = sizeof(value)};
    }
    for (int round = 0; round < 6; round++) {
        memset(value, 'a' + round, sizeof(value));
        ASSERT_OK(rkv_range_encode_batch(f.store, ops, RKV_ARRAY_SIZE(ops),
                                         &cmd, &len, NULL));
        ASSERT_OK(fx_apply(&f, 1, cmd, len, NULL));
        rkv_free(cmd);
    }
    atomic_store(&args.stop, true);
    ASSERT_INT_EQ(pthread_join(thread, NULL), 0);
    rkv_range_store_counters(f.store, &counters);
    ASSERT_UINT_GE(counters.n_map_grows, 2);
    ASSERT_INT_GT(args.n_reads, 0);
    ASSERT_INT_EQ(args.n_errors, 0);
    fx_assert_stats_exact(&f, 1);
    fx_close(&f);
}
