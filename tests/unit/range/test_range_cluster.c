/* Checks splits under replication. Three nodes in one process, each with
 * a real LMDB store and one Raft core per range, exchange Raft messages
 * over an in-memory network. A workload drives ranges through 20 and more
 * splits while one node is paused and resumed, and all replicas must end
 * with the same descriptors and content.
 *
 * The harness plays the node runtime. It persists each ready batch in one
 * write transaction and applies committed entries. It creates the
 * right-hand replica when a split applies, and an uninitialized replica
 * when a message arrives for a range it does not have. It streams
 * snapshots from the store and compacts logs, so the paused node must
 * catch up by snapshot. */
#define RKV_LOG_SUBSYS "test"
#include "range/range.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "raft/raft.h"
#include "tests/lib/test.h"
#include "tests/unit/range/range_fixture.h"

#define N_NODES 3
#define MAX_RANGES 128
#define N_RESULTS 512
#define SNAPSHOT_CHUNK_BYTES 4096
#define COMPACT_EVERY 40

/* A snapshot prepared by a leader for one peer, served chunk by chunk. */
struct peer_snapshot {
    uint8_t **chunks;
    size_t *lens;
    size_t n_chunks;
    uint64_t index;
};

struct replica {
    uint64_t range_id;
    struct rkv_raft *raft;
    struct peer_snapshot snapshots[N_NODES];
    uint64_t compacted_index;
};

/* What applying one entry produced, kept for the workload to read. */
struct applied_result {
    uint64_t range_id;
    uint64_t index;
    uint64_t term;
    struct rkv_range_apply_result result;
};

struct node {
    struct fixture fx;
    struct replica replicas[MAX_RANGES];
    size_t n_replicas;
    bool paused;
    struct applied_result results[N_RESULTS];
    size_t n_results;
};

struct message {
    unsigned to;
    uint8_t *buf;
    size_t len;
};

struct cluster {
    struct node nodes[N_NODES];
    struct message *queue;
    size_t n_queue;
    size_t queue_cap;
    uint64_t seed;
    unsigned n_splits;
    unsigned n_uninit_created;
    unsigned n_snapshots_installed;
    unsigned n_busy_snapshots;
};

static void replica_restart(struct cluster *c, unsigned n,
                            struct replica *replica);

/* ---- replicas --------------------------------------------------------- */

static struct replica *replica_find(struct node *node, uint64_t range_id)
{
    for (size_t i = 0; i < node->n_replicas; i++) {
        if (node->replicas[i].range_id == range_id) {
            return &node->replicas[i];
        }
    }
    return NULL;
}

static void peer_snapshot_free(struct peer_snapshot *s)
{
    for (size_t i = 0; i < s->n_chunks; i++) {
        rkv_free(s->chunks[i]);
    }
    free(s->chunks);
    free(s->lens);
    memset(s, 0, sizeof(*s));
}

/* Builds the Raft boot state of a range from the store. */
static void replica_boot(struct cluster *c, unsigned n, struct replica *replica)
{
    struct node *node = &c->nodes[n];
    struct rkv_range_state state;
    struct rkv_raft_config config;
    struct rkv_raft_boot boot = {0};
    struct rkv_range_entry *entries = NULL;
    RkvRaft__Entry *msgs = NULL;
    RkvRaft__Entry **ptrs = NULL;
    size_t n_entries = 0;

    ASSERT_OK(rkv_range_state_load(node->fx.store, replica->range_id, &state));
    rkv_raft_config_init(&config, n + 1, replica->range_id,
                         c->seed * 131 + n * 17 + replica->range_id);
    boot.hard_state.term = state.hard_state.term;
    boot.hard_state.vote = state.hard_state.vote;
    boot.hard_state.commit = state.hard_state.commit;
    boot.snapshot.index = state.compacted_index;
    boot.snapshot.term = state.compacted_term;
    if (state.initialized) {
        for (size_t i = 0; i < state.desc.n_replicas; i++) {
            boot.snapshot.conf.servers[i].id =
                state.desc.replicas[i].replica_id;
            boot.snapshot.conf.servers[i].learner =
                state.desc.replicas[i].learner;
        }
        boot.snapshot.conf.n_servers = (unsigned)state.desc.n_replicas;
    }
    boot.applied = state.applied_index;
    if (state.last_index > state.compacted_index) {
        ASSERT_OK(rkv_range_log_load(
            node->fx.store, replica->range_id, state.compacted_index + 1,
            state.last_index, 0, &entries, &n_entries));
        msgs = calloc(n_entries, sizeof(*msgs));
        ptrs = calloc(n_entries, sizeof(*ptrs));
        ASSERT_TRUE(msgs != NULL);
        ASSERT_TRUE(ptrs != NULL);
        for (size_t i = 0; i < n_entries; i++) {
            rkv_raft__entry__init(&msgs[i]);
            msgs[i].index = entries[i].index;
            msgs[i].term = entries[i].term;
            msgs[i].type = (RkvRaft__EntryType)entries[i].type;
            msgs[i].data.data = (uint8_t *)entries[i].data;
            msgs[i].data.len = entries[i].data_len;
            ptrs[i] = &msgs[i];
        }
    }
    boot.entries = ptrs;
    boot.n_entries = n_entries;
    ASSERT_OK(rkv_raft_new(&config, &boot, &replica->raft));
    replica->compacted_index = state.compacted_index;
    rkv_range_entries_free(entries, n_entries);
    free(msgs);
    free(ptrs);
}

static struct replica *replica_add(struct cluster *c, unsigned n,
                                   uint64_t range_id)
{
    struct node *node = &c->nodes[n];
    struct replica *replica;

    ASSERT_UINT_LT(node->n_replicas, MAX_RANGES);
    replica = &node->replicas[node->n_replicas++];
    memset(replica, 0, sizeof(*replica));
    replica->range_id = range_id;
    replica_boot(c, n, replica);
    return replica;
}

/* Drops the in-memory Raft state and boots again from the store, as a
 * crash and restart of this one group would. */
static void replica_restart(struct cluster *c, unsigned n,
                            struct replica *replica)
{
    rkv_raft_free(replica->raft);
    replica->raft = NULL;
    for (unsigned p = 0; p < N_NODES; p++) {
        peer_snapshot_free(&replica->snapshots[p]);
    }
    replica_boot(c, n, replica);
}

/* ---- network ------------------------------------------------------------ */

static void send_messages(struct cluster *c, unsigned from,
                          RkvRaft__Message **msgs, size_t n_msgs)
{
    for (size_t i = 0; i < n_msgs; i++) {
        struct message *m;

        if (c->nodes[from].paused) {
            continue;
        }
        if (c->n_queue == c->queue_cap) {
            c->queue_cap = c->queue_cap == 0 ? 256 : c->queue_cap * 2;
            c->queue = realloc(c->queue, c->queue_cap * sizeof(*c->queue));
            ASSERT_TRUE(c->queue != NULL);
        }
        m = &c->queue[c->n_queue++];
        ASSERT_UINT_GE(msgs[i]->to, 1);
        ASSERT_UINT_LE(msgs[i]->to, N_NODES);
        m->to = (unsigned)msgs[i]->to - 1;
        m->len = rkv_raft__message__get_packed_size(msgs[i]);
        m->buf = malloc(m->len > 0 ? m->len : 1);
        ASSERT_TRUE(m->buf != NULL);
        rkv_raft__message__pack(msgs[i], m->buf);
    }
}

/* ---- ready processing ---------------------------------------------------- */

/* Persists a batch's snapshot chunks, entries and hard state in one write
 * transaction. Returns the commit's status. */
static int persist_batch(struct node *node, struct replica *replica,
                         const struct rkv_raft_ready *rd,
                         struct rkv_range_install_result *install)
{
    struct rkv_range_entry *entries = NULL;
    struct rkv_range_hard_state hs;
    struct rkv_range_wtxn *wtxn;
    int rv;

    ASSERT_OK(rkv_range_wtxn_begin(node->fx.store, &wtxn));
    for (size_t i = 0; i < rd->n_chunks; i++) {
        ASSERT_OK(rkv_range_snapshot_install_chunk(wtxn, replica->range_id,
                                                   rd->chunks[i].data,
                                                   rd->chunks[i].data_len));
        if (rd->chunks[i].last) {
            ASSERT_OK(rkv_range_snapshot_install_finish(wtxn, replica->range_id,
                                                        install));
        }
    }
    if (rd->n_entries > 0) {
        entries = calloc(rd->n_entries, sizeof(*entries));
        ASSERT_TRUE(entries != NULL);
        for (size_t i = 0; i < rd->n_entries; i++) {
            entries[i].index = rd->entries[i]->index;
            entries[i].term = rd->entries[i]->term;
            entries[i].type = rd->entries[i]->type;
            entries[i].data = rd->entries[i]->data.data;
            entries[i].data_len = rd->entries[i]->data.len;
        }
        ASSERT_OK(rkv_range_log_append(wtxn, replica->range_id, entries,
                                       rd->n_entries));
    }
    if (rd->has_hard_state) {
        hs.term = rd->hard_state.term;
        hs.vote = rd->hard_state.vote;
        hs.commit = rd->hard_state.commit;
        ASSERT_OK(rkv_range_hard_state_save(wtxn, replica->range_id, &hs));
    }
    rv = rkv_range_wtxn_commit(wtxn);
    free(entries);
    return rv;
}

static void record_result(struct node *node, uint64_t range_id,
                          const RkvRaft__Entry *entry,
                          const struct rkv_range_apply_result *result)
{
    struct applied_result *slot = &node->results[node->n_results % N_RESULTS];

    rkv_range_apply_result_free(&slot->result);
    slot->range_id = range_id;
    slot->index = entry->index;
    slot->term = entry->term;
    slot->result = *result;
    node->n_results++;
}

/* Applies committed entries, then creates the replicas that splits made. */
static void apply_committed(struct cluster *c, unsigned n,
                            struct replica *replica,
                            const struct rkv_raft_ready *rd)
{
    struct node *node = &c->nodes[n];
    uint64_t range_id = replica->range_id;
    struct rkv_range_apply_result *results;
    struct rkv_range_entry *entries;
    struct rkv_range_wtxn *wtxn;

    if (rd->n_committed == 0) {
        return;
    }
    results = calloc(rd->n_committed, sizeof(*results));
    entries = calloc(rd->n_committed, sizeof(*entries));
    ASSERT_TRUE(results != NULL);
    ASSERT_TRUE(entries != NULL);
    ASSERT_OK(rkv_range_wtxn_begin(node->fx.store, &wtxn));
    for (size_t i = 0; i < rd->n_committed; i++) {
        entries[i].index = rd->committed[i]->index;
        entries[i].term = rd->committed[i]->term;
        entries[i].type = rd->committed[i]->type;
        entries[i].data = rd->committed[i]->data.data;
        entries[i].data_len = rd->committed[i]->data.len;
        ASSERT_OK(rkv_range_apply(wtxn, range_id, &entries[i], &results[i]));
    }
    ASSERT_OK(rkv_range_wtxn_commit(wtxn));

    for (size_t i = 0; i < rd->n_committed; i++) {
        if (results[i].kind == RKV_RANGE_CMD_SPLIT && results[i].rv == 0) {
            uint64_t right_id = results[i].right.range_id;
            struct replica *right = replica_find(node, right_id);

            if (right == NULL) {
                replica_add(c, n, right_id);
            } else {
                replica_restart(c, n, right);
            }
        }
        record_result(node, range_id, rd->committed[i], &results[i]);
    }
    free(results);
    free(entries);
}

/* Serves the leader's snapshot requests from the store. */
static void serve_snapshots(struct cluster *c, unsigned n,
                            struct replica *replica,
                            const struct rkv_raft_ready *rd)
{
    struct node *node = &c->nodes[n];

    for (size_t i = 0; i < rd->n_snapshot_requests; i++) {
        const struct rkv_raft_snapshot_request *req = &rd->snapshot_requests[i];
        struct peer_snapshot *s = &replica->snapshots[req->to - 1];
        int rv;

        if (req->chunk_seq == 0) {
            struct rkv_range_snapshot_reader *reader;
            struct rkv_range_snapshot_meta meta;
            bool last = false;

            peer_snapshot_free(s);
            ASSERT_OK(rkv_range_snapshot_open(node->fx.store, replica->range_id,
                                              SNAPSHOT_CHUNK_BYTES, &reader,
                                              &meta));
            s->index = meta.index;
            while (!last) {
                s->chunks =
                    realloc(s->chunks, (s->n_chunks + 1) * sizeof(*s->chunks));
                s->lens =
                    realloc(s->lens, (s->n_chunks + 1) * sizeof(*s->lens));
                ASSERT_TRUE(s->chunks != NULL);
                ASSERT_TRUE(s->lens != NULL);
                ASSERT_OK(
                    rkv_range_snapshot_next(reader, &s->chunks[s->n_chunks],
                                            &s->lens[s->n_chunks], &last));
                s->n_chunks++;
            }
            rkv_range_snapshot_close(reader);
        }
        if (req->chunk_seq >= s->n_chunks) {
            continue;
        }
        rv = rkv_raft_snapshot_chunk(replica->raft, req->to, s->index,
                                     req->chunk_seq, s->chunks[req->chunk_seq],
                                     s->lens[req->chunk_seq],
                                     req->chunk_seq + 1 == s->n_chunks);
        if (rv == RKV_ESTALE) {
            peer_snapshot_free(s);
        } else {
            ASSERT_OK(rv);
        }
    }
}

/* Processes every ready batch of one replica. Returns whether there was
 * work. */
static bool process_replica(struct cluster *c, unsigned n, size_t index)
{
    struct node *node = &c->nodes[n];
    bool worked = false;

    while (rkv_raft_has_ready(node->replicas[index].raft)) {
        struct replica *replica = &node->replicas[index];
        struct rkv_range_install_result install;
        struct rkv_raft_ready *rd;
        int rv;

        ASSERT_OK(rkv_raft_ready(replica->raft, &rd));
        worked = true;
        install.rv = 0;
        rv = persist_batch(node, replica, rd, &install);
        ASSERT_OK(rv);
        if (install.rv != 0) {
            /* The snapshot overlaps a range this node has not split yet.
             * The store skipped the rest of the batch, so forget it as
             * after a crash of this group, and the leader retries later. */
            ASSERT_INT_EQ(install.rv, RKV_EBUSY);
            c->n_busy_snapshots++;
            rkv_raft_ready_free(rd);
            replica_restart(c, n, replica);
            continue;
        }
        if (rd->n_chunks > 0 && rd->chunks[rd->n_chunks - 1].last) {
            c->n_snapshots_installed++;
        }
        ASSERT_OK(rkv_raft_ack(replica->raft, rd->seq));
        send_messages(c, n, rd->messages, rd->n_messages);
        send_messages(c, n, rd->messages_after_persist,
                      rd->n_messages_after_persist);
        apply_committed(c, n, replica, rd);
        replica = &node->replicas[index];
        serve_snapshots(c, n, replica, rd);
        rkv_raft_ready_free(rd);
    }
    return worked;
}

static bool process_node(struct cluster *c, unsigned n)
{
    bool worked = false;

    if (c->nodes[n].paused) {
        return false;
    }
    for (size_t i = 0; i < c->nodes[n].n_replicas; i++) {
        worked |= process_replica(c, n, i);
    }
    return worked;
}

static void deliver(struct cluster *c, struct message *m)
{
    struct node *node = &c->nodes[m->to];
    RkvRaft__Message *msg;
    struct replica *replica;

    msg = rkv_raft__message__unpack(NULL, m->len, m->buf);
    ASSERT_TRUE(msg != NULL);
    replica = replica_find(node, msg->group_id);
    if (replica == NULL) {
        struct rkv_range_wtxn *wtxn;

        /* A range this node has not created yet: keep an uninitialized
         * replica so the leader can bring it up by snapshot. */
        ASSERT_OK(rkv_range_wtxn_begin(node->fx.store, &wtxn));
        ASSERT_OK(rkv_range_create_uninit(wtxn, msg->group_id));
        ASSERT_OK(rkv_range_wtxn_commit(wtxn));
        replica = replica_add(c, m->to, msg->group_id);
        c->n_uninit_created++;
    }
    ASSERT_OK(rkv_raft_step(replica->raft, msg));
    rkv_raft__message__free_unpacked(msg, NULL);
}

/* Delivers messages in FIFO order and processes ready work until the
 * network is quiet. Messages to a paused node are lost. */
static void cluster_flush(struct cluster *c)
{
    for (unsigned round = 0; round < 10000; round++) {
        bool worked = false;
        struct message *batch;
        size_t n_batch;

        for (unsigned n = 0; n < N_NODES; n++) {
            worked |= process_node(c, n);
        }
        batch = c->queue;
        n_batch = c->n_queue;
        c->queue = NULL;
        c->n_queue = 0;
        c->queue_cap = 0;
        for (size_t i = 0; i < n_batch; i++) {
            if (!c->nodes[batch[i].to].paused) {
                deliver(c, &batch[i]);
            }
            free(batch[i].buf);
        }
        free(batch);
        if (!worked && n_batch == 0) {
            return;
        }
    }
    rkv_test_fail(__FILE__, __LINE__, "cluster did not settle");
}

static void cluster_tick(struct cluster *c, unsigned n_ticks)
{
    for (unsigned t = 0; t < n_ticks; t++) {
        for (unsigned n = 0; n < N_NODES; n++) {
            if (c->nodes[n].paused) {
                continue;
            }
            for (size_t i = 0; i < c->nodes[n].n_replicas; i++) {
                ASSERT_OK(rkv_raft_tick(c->nodes[n].replicas[i].raft));
            }
        }
        cluster_flush(c);
    }
}

/* ---- workload ------------------------------------------------------------ */

/* Finds the node leading a range, ticking until one is elected. */
static int cluster_leader(struct cluster *c, uint64_t range_id)
{
    for (unsigned t = 0; t < 200; t++) {
        uint64_t best_term = 0;
        int best = -1;

        for (unsigned n = 0; n < N_NODES; n++) {
            struct replica *r = replica_find(&c->nodes[n], range_id);

            if (c->nodes[n].paused || r == NULL ||
                rkv_raft_role(r->raft) != RKV_RAFT_LEADER) {
                continue;
            }
            if (rkv_raft_term(r->raft) >= best_term) {
                best_term = rkv_raft_term(r->raft);
                best = (int)n;
            }
        }
        if (best >= 0) {
            return best;
        }
        cluster_tick(c, 1);
    }
    rkv_test_fail(__FILE__, __LINE__, "range %llu elected no leader",
                  (unsigned long long)range_id);
}

static const struct applied_result *
find_result(struct node *node, uint64_t range_id, uint64_t index, uint64_t term)
{
    size_t first =
        node->n_results > N_RESULTS ? node->n_results - N_RESULTS : 0;

    for (size_t i = first; i < node->n_results; i++) {
        const struct applied_result *r = &node->results[i % N_RESULTS];

        if (r->range_id == range_id && r->index == index && r->term == term) {
            return r;
        }
    }
    return NULL;
}

/* Proposes a command to a range's leader and waits until the leader has
 * applied it. Returns the leader's result, or NULL when the proposal was
 * lost to a leader change (the caller retries). */
static const struct applied_result *cluster_propose(struct cluster *c,
                                                    uint64_t range_id,
                                                    const uint8_t *cmd,
                                                    size_t len)
{
    int leader = cluster_leader(c, range_id);
    struct replica *r = replica_find(&c->nodes[leader], range_id);
    uint64_t index;
    uint64_t term;

    ASSERT_OK(rkv_raft_propose(r->raft, cmd, len, &index, &term));
    for (unsigned t = 0; t < 100; t++) {
        const struct applied_result *result;

        cluster_flush(c);
        result = find_result(&c->nodes[leader], range_id, index, term);
        if (result != NULL) {
            return result;
        }
        cluster_tick(c, 1);
    }
    return NULL;
}

static uint64_t route(struct cluster *c, const void *key, size_t key_len)
{
    int leader = cluster_leader(c, RKV_RANGE_ID_FIRST);
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc desc;

    ASSERT_OK(rkv_range_rtxn_begin(c->nodes[leader].fx.store, &rtxn));
    ASSERT_OK(rkv_range_meta_lookup(rtxn, key, key_len, &desc));
    rkv_range_rtxn_end(rtxn);
    return desc.range_id;
}

/* Runs the split protocol for range_id if its leader finds it too big. */
static void maybe_split(struct cluster *c, uint64_t range_id)
{
    int leader = cluster_leader(c, range_id);
    struct rkv_range_store *store = c->nodes[leader].fx.store;
    const struct applied_result *result;
    struct rkv_range_desc desc;
    struct rkv_range_desc left;
    struct rkv_range_desc right;
    struct rkv_range_stats stats;
    struct rkv_range_rtxn *rtxn;
    uint8_t key[RKV_RANGE_KEY_MAX];
    size_t key_len;
    uint64_t new_id;
    uint8_t *cmd;
    size_t len;
    int rv;

    ASSERT_OK(rkv_range_rtxn_begin(store, &rtxn));
    ASSERT_OK(rkv_range_stats_get(rtxn, range_id, &stats));
    ASSERT_OK(rkv_range_desc_get(rtxn, range_id, &desc));
    rv = rkv_range_should_split(store, &stats)
             ? rkv_range_pick_split_key(rtxn, range_id, key, &key_len)
             : RKV_ENOTFOUND;
    rkv_range_rtxn_end(rtxn);
    if (rv != 0) {
        return;
    }

    ASSERT_OK(rkv_range_encode_alloc_range_id(&cmd, &len));
    result = cluster_propose(c, RKV_RANGE_ID_FIRST, cmd, len);
    rkv_free(cmd);
    if (result == NULL) {
        return;
    }
    new_id = result->result.new_range_id;
    ASSERT_OK(rkv_range_encode_split(store, &desc, key, key_len, new_id, &cmd,
                                     &len, NULL));
    result = cluster_propose(c, range_id, cmd, len);
    rkv_free(cmd);
    if (result == NULL || result->result.rv != 0) {
        return;
    }
    c->n_splits++;
    if (range_id == RKV_RANGE_ID_FIRST) {
        return;
    }
    left = result->result.desc;
    right = result->result.right;
    ASSERT_OK(rkv_range_encode_meta_update(&left, &right, &cmd, &len));
    while (cluster_propose(c, RKV_RANGE_ID_FIRST, cmd, len) == NULL) {
    }
    rkv_free(cmd);
}

/* Compacts every live replica's log at its applied index. */
static void cluster_compact(struct cluster *c)
{
    for (unsigned n = 0; n < N_NODES; n++) {
        struct node *node = &c->nodes[n];
        struct rkv_range_wtxn *wtxn;

        if (node->paused) {
            continue;
        }
        ASSERT_OK(rkv_range_wtxn_begin(node->fx.store, &wtxn));
        for (size_t i = 0; i < node->n_replicas; i++) {
            struct replica *r = &node->replicas[i];
            uint64_t applied = rkv_raft_applied_index(r->raft);

            if (applied > r->compacted_index) {
                ASSERT_OK(rkv_range_log_compact(wtxn, r->range_id, applied));
            }
        }
        ASSERT_OK(rkv_range_wtxn_commit(wtxn));
        for (size_t i = 0; i < node->n_replicas; i++) {
            struct replica *r = &node->replicas[i];
            uint64_t applied = rkv_raft_applied_index(r->raft);

            if (applied > r->compacted_index) {
                ASSERT_OK(rkv_raft_compact(r->raft, applied));
                r->compacted_index = applied;
            }
        }
    }
}

static void cluster_start(struct cluster *c, uint64_t seed)
{
    struct rkv_range_replica replicas[N_NODES];

    memset(c, 0, sizeof(*c));
    c->seed = seed;
    for (unsigned n = 0; n < N_NODES; n++) {
        replicas[n] =
            (struct rkv_range_replica){.node_id = n + 1, .replica_id = n + 1};
    }
    for (unsigned n = 0; n < N_NODES; n++) {
        struct rkv_range_wtxn *wtxn;
        char name[64];

        snprintf(name, sizeof(name), "seed%llu-node%u",
                 (unsigned long long)seed, n + 1);
        fx_open(&c->nodes[n].fx, name, 16 * 1024);
        ASSERT_OK(rkv_range_wtxn_begin(c->nodes[n].fx.store, &wtxn));
        ASSERT_OK(rkv_range_bootstrap(wtxn, replicas, N_NODES));
        ASSERT_OK(rkv_range_wtxn_commit(wtxn));
        replica_add(c, n, RKV_RANGE_ID_FIRST);
    }
}

static void cluster_stop(struct cluster *c)
{
    for (unsigned n = 0; n < N_NODES; n++) {
        struct node *node = &c->nodes[n];

        for (size_t i = 0; i < node->n_replicas; i++) {
            for (unsigned p = 0; p < N_NODES; p++) {
                peer_snapshot_free(&node->replicas[i].snapshots[p]);
            }
            rkv_raft_free(node->replicas[i].raft);
        }
        for (size_t i = 0; i < N_RESULTS; i++) {
            rkv_range_apply_result_free(&node->results[i].result);
        }
        fx_close(&node->fx);
    }
    for (size_t i = 0; i < c->n_queue; i++) {
        free(c->queue[i].buf);
    }
    free(c->queue);
}

/* Returns whether every node has every range at the same applied index
 * with the same content. */
static bool cluster_converged(struct cluster *c, bool fail)
{
    struct rkv_range_desc *descs[N_NODES];
    size_t n_descs[N_NODES];
    bool same = true;

    for (unsigned n = 0; n < N_NODES; n++) {
        struct rkv_range_rtxn *rtxn;

        ASSERT_OK(rkv_range_rtxn_begin(c->nodes[n].fx.store, &rtxn));
        ASSERT_OK(rkv_range_desc_list(rtxn, &descs[n], &n_descs[n]));
        rkv_range_rtxn_end(rtxn);
    }
    for (unsigned n = 1; n < N_NODES && same; n++) {
        same = n_descs[n] == n_descs[0];
        for (size_t i = 0; i < n_descs[0] && same; i++) {
            same = descs[n][i].range_id == descs[0][i].range_id &&
                   descs[n][i].generation == descs[0][i].generation;
            if (fail) {
                ASSERT_UINT_EQ(descs[n][i].range_id, descs[0][i].range_id);
                ASSERT_UINT_EQ(descs[n][i].generation, descs[0][i].generation);
                ASSERT_MEM_EQ(descs[n][i].start_key, descs[n][i].start_key_len,
                              descs[0][i].start_key, descs[0][i].start_key_len);
                ASSERT_MEM_EQ(descs[n][i].end_key, descs[n][i].end_key_len,
                              descs[0][i].end_key, descs[0][i].end_key_len);
            }
            same =
                same && fx_applied(&c->nodes[n].fx, descs[0][i].range_id) ==
                            fx_applied(&c->nodes[0].fx, descs[0][i].range_id);
            if (same || fail) {
                ASSERT_UINT_EQ(fx_hash(&c->nodes[n].fx, descs[0][i].range_id),
                               fx_hash(&c->nodes[0].fx, descs[0][i].range_id));
            }
        }
        if (fail) {
            ASSERT_UINT_EQ(n_descs[n], n_descs[0]);
        }
    }
    for (unsigned n = 0; n < N_NODES; n++) {
        rkv_free(descs[n]);
    }
    return same;
}

/* Stops node n (its Raft cores and store) and starts it again from what
 * its store loads, as a process restart would. */
static void node_restart(struct cluster *c, unsigned n)
{
    struct node *node = &c->nodes[n];
    struct rkv_range_state *states;
    size_t n_states;

    for (size_t i = 0; i < node->n_replicas; i++) {
        for (unsigned p = 0; p < N_NODES; p++) {
            peer_snapshot_free(&node->replicas[i].snapshots[p]);
        }
        rkv_raft_free(node->replicas[i].raft);
    }
    node->n_replicas = 0;
    fx_reopen(&node->fx);
    ASSERT_OK(rkv_range_store_load(node->fx.store, &states, &n_states));
    ASSERT_UINT_GT(n_states, 0);
    for (size_t i = 0; i < n_states; i++) {
        replica_add(c, n, states[i].desc.range_id);
    }
    rkv_free(states);
}

/* When the workload pauses, resumes and restarts nodes, in splits. */
struct scenario {
    unsigned pause_node;
    unsigned pause_at_split;
    unsigned resume_at_split;
    unsigned restart_node;
    unsigned restart_at_split; /* 0: never */
};

/* Proposes one put of a random key to the range that contains it. */
static void write_random_key(struct cluster *c, uint64_t *range_id_out)
{
    static char value[200];
    const struct applied_result *result;
    char key[16];
    uint8_t *cmd;
    size_t len;

    memset(value, 'c', sizeof(value));
    snprintf(key, sizeof(key), "k%06d", rand() % 1000000);
    *range_id_out = route(c, key, strlen(key));
    ASSERT_OK(rkv_range_encode_put(c->nodes[0].fx.store, key, strlen(key),
                                   value, 50 + (size_t)rand() % 150, &cmd, &len,
                                   NULL));
    result = cluster_propose(c, *range_id_out, cmd, len);
    rkv_free(cmd);
    if (result != NULL) {
        ASSERT_INT_EQ(result->result.rv, 0);
    }
}

/* Writes until ranges split 22 times, following the scenario, then waits
 * for convergence and checks descriptors, content and stats. */
static void run_scenario(const struct scenario *sc, uint64_t seed)
{
    struct cluster c;
    bool paused_once = false;
    bool restarted = false;
    unsigned n_writes = 0;
    unsigned n_ticks = 0;

    srand((unsigned)seed);
    cluster_start(&c, seed);
    ASSERT_OK(rkv_raft_campaign(c.nodes[0].replicas[0].raft));
    cluster_flush(&c);

    while (c.n_splits < 22) {
        uint64_t range_id;

        ASSERT_UINT_LT(n_writes, 20000);
        write_random_key(&c, &range_id);
        n_writes++;
        maybe_split(&c, range_id);

        if (c.n_splits >= sc->pause_at_split && !paused_once) {
            c.nodes[sc->pause_node].paused = true;
            paused_once = true;
        }
        if (c.n_splits >= sc->resume_at_split &&
            c.nodes[sc->pause_node].paused) {
            c.nodes[sc->pause_node].paused = false;
        }
        if (sc->restart_at_split > 0 && !restarted &&
            c.n_splits >= sc->restart_at_split) {
            node_restart(&c, sc->restart_node);
            restarted = true;
        }
        if (n_writes % COMPACT_EVERY == 0) {
            cluster_compact(&c);
        }
    }

    while (!cluster_converged(&c, false)) {
        ASSERT_UINT_LT(n_ticks, 2000);
        cluster_tick(&c, 1);
        n_ticks++;
    }
    cluster_converged(&c, true);
    ASSERT_UINT_GE(c.n_splits, 20);
    ASSERT_UINT_GT(c.n_snapshots_installed, 0);
    for (unsigned n = 0; n < N_NODES; n++) {
        for (size_t i = 0; i < c.nodes[n].n_replicas; i++) {
            fx_assert_stats_exact(&c.nodes[n].fx,
                                  c.nodes[n].replicas[i].range_id);
        }
    }
    RKV_LOG(RKV_INFO,
            "cluster done seed=%llu writes=%u splits=%u snapshots=%u "
            "uninit=%u busy_snapshots=%u ticks_to_converge=%u",
            (unsigned long long)seed, n_writes, c.n_splits,
            c.n_snapshots_installed, c.n_uninit_created, c.n_busy_snapshots,
            n_ticks);
    cluster_stop(&c);
}

/* Node 3 is paused from the 4th split to the 12th. Logs are compacted, so
 * it must catch up by snapshot, and all replicas then converge. */
TEST(cluster, splits_converge_with_paused_replica)
{
    static const struct scenario sc = {
        .pause_node = 2, .pause_at_split = 4, .resume_at_split = 12};

    run_scenario(&sc, 5);
}

/* As above, and node 2 also restarts from its store after the 16th
 * split, loading every replica with rkv_range_store_load(). */
TEST(cluster, splits_converge_after_node_restart)
{
    static const struct scenario sc = {.pause_node = 2,
                                       .pause_at_split = 4,
                                       .resume_at_split = 12,
                                       .restart_node = 1,
                                       .restart_at_split = 16};

    run_scenario(&sc, 9);
}

/* Other seeds move leaders, split keys and the pause around. */
TEST(cluster, splits_converge_more_seeds)
{
    static const struct scenario sc = {.pause_node = 0,
                                       .pause_at_split = 2,
                                       .resume_at_split = 9,
                                       .restart_node = 2,
                                       .restart_at_split = 12};

    for (uint64_t seed = 100; seed < 105; seed++) {
        run_scenario(&sc, seed);
    }
}
