/*
 * The node: lifecycle (start, init, stop), the loop thread, the replica
 * table and key routing, bootstrap and restart.
 *
 * States and transitions:
 *   starting   rkv_node_start(): open the store, bind both listeners,
 *              write STORE/addresses, open every stored replica, start the
 *              writer and loop threads -> running
 *   running    the loop serves; a cluster id is learned by init
 *              (rkv_node_init() or an InitRequest) or from a peer's Hello
 *              (rkv_node__bootstrap())
 *   stopping   rkv_node_stop() wakes stop_async. Listeners and connections
 *              close, and uncollected Raft work is dropped (as a crash
 *              would). The loop waits for the writer's batch in flight,
 *              closes its last handles and exits. The caller then joins it,
 *              stops the writer, fails what still waits and closes the
 *              store.
 *
 * Restart: every replica is rebuilt from its stored hard state, applied
 * index and log, so the node resumes with everything it acknowledged.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- replica table ------------------------------------------------------ */

static size_t bucket_of(const struct rkv_node *node, uint64_t range_id)
{
    return (size_t)(range_id * 0x9E3779B97F4A7C15ull) & (node->n_buckets - 1);
}

struct rkv_node__replica *rkv_node__replica_find(struct rkv_node *node,
                                                 uint64_t range_id)
{
    struct rkv_node__replica *r = node->buckets[bucket_of(node, range_id)];

    while (r != NULL && r->range_id != range_id) {
        r = r->hash_next;
    }
    return r;
}

static int replicas_grow(struct rkv_node *node)
{
    struct rkv_node__replica **old = node->buckets;
    size_t n_old = node->n_buckets;
    struct rkv_node__replica **buckets;

    buckets = rkv_calloc(n_old * 2, sizeof(*buckets));
    if (buckets == NULL) {
        return -ENOMEM;
    }
    node->buckets = buckets;
    node->n_buckets = n_old * 2;
    for (size_t i = 0; i < n_old; i++) {
        struct rkv_node__replica *r = old[i];

        while (r != NULL) {
            struct rkv_node__replica *next = r->hash_next;
            size_t b = bucket_of(node, r->range_id);

            r->hash_next = buckets[b];
            buckets[b] = r;
            r = next;
        }
    }
    rkv_free(old);
    return 0;
}

static int replicas_insert(struct rkv_node *node, struct rkv_node__replica *r)
{
    size_t b;
    int rv;

    if (node->n_replicas + 1 > node->n_buckets * 2) {
        rv = replicas_grow(node);
        if (rv != 0) {
            return rv;
        }
    }
    b = bucket_of(node, r->range_id);
    r->hash_next = node->buckets[b];
    node->buckets[b] = r;
    node->n_replicas++;
    node->by_key_stale = true;
    return 0;
}

int rkv_node__compare_keys(const uint8_t *a, size_t a_len, const uint8_t *b,
                           size_t b_len)
{
    size_t n = RKV_MIN(a_len, b_len);
    /* An empty key may come with a NULL pointer (protobuf-c's empty
     * bytes), which memcmp must not see even for 0 bytes. */
    int c = n > 0 ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    return (a_len > b_len) - (a_len < b_len);
}

static int compare_start_keys(const void *a, const void *b)
{
    const struct rkv_node__replica *ra = *(struct rkv_node__replica *const *)a;
    const struct rkv_node__replica *rb = *(struct rkv_node__replica *const *)b;

    return rkv_node__compare_keys(ra->desc.start_key, ra->desc.start_key_len,
                                  rb->desc.start_key, rb->desc.start_key_len);
}

static int by_key_rebuild(struct rkv_node *node)
{
    struct rkv_node__replica **by_key;
    size_t n = 0;

    by_key = rkv_realloc(node->by_key,
                         RKV_MAX(node->n_replicas, 1) * sizeof(*by_key));
    if (by_key == NULL) {
        return -ENOMEM;
    }
    node->by_key = by_key;
    for (size_t i = 0; i < node->n_buckets; i++) {
        for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
             r = r->hash_next) {
            if (r->initialized) {
                by_key[n++] = r;
            }
        }
    }
    qsort(by_key, n, sizeof(*by_key), compare_start_keys);
    node->n_by_key = n;
    node->by_key_stale = false;
    return 0;
}

struct rkv_node__replica *rkv_node__replica_for_key(struct rkv_node *node,
                                                    const uint8_t *key,
                                                    size_t key_len)
{
    size_t lo = 0;
    size_t hi;
    struct rkv_node__replica *r;

    if (node->by_key_stale && by_key_rebuild(node) != 0) {
        return NULL;
    }
    /* Find the last replica whose start key is <= key. */
    hi = node->n_by_key;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct rkv_range_desc *d = &node->by_key[mid]->desc;

        if (rkv_node__compare_keys(d->start_key, d->start_key_len, key,
                                   key_len) <= 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return NULL;
    }
    r = node->by_key[lo - 1];
    if (!rkv_range_desc_contains_key(&r->desc, key, key_len)) {
        return NULL;
    }
    return r;
}

void rkv_node__replica_mark(struct rkv_node__replica *replica)
{
    struct rkv_node *node = replica->node;

    if (replica->on_work_list) {
        return;
    }
    replica->on_work_list = true;
    replica->work_next = node->work_head;
    node->work_head = replica;
}

/* ---- opening replicas --------------------------------------------------- */

static void conf_from_desc(const struct rkv_range_desc *desc,
                           struct rkv_raft_conf *conf)
{
    memset(conf, 0, sizeof(*conf));
    for (size_t i = 0; i < desc->n_replicas && i < RKV_RAFT_MAX_SERVERS; i++) {
        conf->servers[i].id = desc->replicas[i].replica_id;
        conf->servers[i].learner = desc->replicas[i].learner;
        conf->n_servers++;
    }
    /* raft.h keeps servers sorted by id. */
    for (unsigned i = 1; i < conf->n_servers; i++) {
        for (unsigned j = i;
             j > 0 && conf->servers[j - 1].id > conf->servers[j].id; j--) {
            struct rkv_raft_server tmp = conf->servers[j];

            conf->servers[j] = conf->servers[j - 1];
            conf->servers[j - 1] = tmp;
        }
    }
}

/* Loads the stored log after the compaction point and converts it into the
 * Raft entries of boot. Frees with replica_boot_free(). */
struct replica_boot {
    struct rkv_range_entry *stored; /* owned by the store's allocator */
    size_t n_stored;
    RkvRaft__Entry *entries;   /* owned; data borrowed from stored */
    RkvRaft__Entry **pointers; /* owned */
};

static void replica_boot_free(struct replica_boot *rb)
{
    rkv_range_entries_free(rb->stored, rb->n_stored);
    rkv_free(rb->entries);
    rkv_free(rb->pointers);
}

static int replica_load_log(struct rkv_node *node,
                            const struct rkv_range_state *state,
                            struct replica_boot *rb)
{
    int rv;

    memset(rb, 0, sizeof(*rb));
    if (state->last_index <= state->compacted_index) {
        return 0;
    }
    rv = rkv_range_log_load(node->store, state->desc.range_id,
                            state->compacted_index + 1, state->last_index, 0,
                            &rb->stored, &rb->n_stored);
    if (rv != 0) {
        return rv;
    }
    rb->entries = rkv_calloc(rb->n_stored, sizeof(*rb->entries));
    rb->pointers = rkv_calloc(rb->n_stored, sizeof(*rb->pointers));
    if (rb->entries == NULL || rb->pointers == NULL) {
        replica_boot_free(rb);
        return -ENOMEM;
    }
    for (size_t i = 0; i < rb->n_stored; i++) {
        RkvRaft__Entry *e = &rb->entries[i];

        rkv_raft__entry__init(e);
        e->index = rb->stored[i].index;
        e->term = rb->stored[i].term;
        e->type = (RkvRaft__EntryType)rb->stored[i].type;
        e->data.data = (uint8_t *)rb->stored[i].data;
        e->data.len = rb->stored[i].data_len;
        rb->pointers[i] = e;
    }
    return 0;
}

static uint64_t node_random(struct rkv_node *node)
{
    /* xorshift64*: only seeds election timeouts, no security role. */
    node->rand_state ^= node->rand_state >> 12;
    node->rand_state ^= node->rand_state << 25;
    node->rand_state ^= node->rand_state >> 27;
    return node->rand_state * 0x2545F4914F6CDD1Dull;
}

static int replica_new_raft(struct rkv_node *node,
                            const struct rkv_range_state *state,
                            struct rkv_raft **out)
{
    struct rkv_raft_config cfg;
    struct rkv_raft_boot boot;
    struct replica_boot rb;
    int rv;

    rkv_raft_config_init(&cfg, node->node_id, state->desc.range_id,
                         node_random(node) | 1);
    cfg.election_ticks = RKV_NODE_ELECTION_TICKS;
    cfg.heartbeat_ticks = RKV_NODE_HEARTBEAT_TICKS;
    cfg.chunk_bytes_max = RKV_NODE_SNAPSHOT_CHUNK_MAX;
#ifdef RKV_NODE_BUGS
    cfg.bug_read_before_noop = node->bug == RKV_NODE_BUG_READ_BEFORE_NOOP;
#endif

    rv = replica_load_log(node, state, &rb);
    if (rv != 0) {
        return rv;
    }
    memset(&boot, 0, sizeof(boot));
    boot.hard_state.term = state->hard_state.term;
    boot.hard_state.vote = state->hard_state.vote;
    boot.hard_state.commit = state->hard_state.commit;
    boot.snapshot.index = state->compacted_index;
    boot.snapshot.term = state->compacted_term;
    if (state->initialized) {
        conf_from_desc(&state->desc, &boot.snapshot.conf);
    }
    boot.applied = state->applied_index;
    boot.entries = rb.pointers;
    boot.n_entries = rb.n_stored;
    rv = rkv_raft_new(&cfg, &boot, out);
    replica_boot_free(&rb);
    return rv;
}

int rkv_node__replica_open(struct rkv_node *node,
                           const struct rkv_range_state *state,
                           struct rkv_node__replica **out)
{
    struct rkv_node__replica *r;
    int rv;

    assert(rkv_node__replica_find(node, state->desc.range_id) == NULL);
    r = rkv_calloc(1, sizeof(*r));
    if (r == NULL) {
        rv = -ENOMEM;
        goto err;
    }
    r->node = node;
    r->range_id = state->desc.range_id;
    r->desc = state->desc;
    r->initialized = state->initialized;
    r->stats = state->stats;
    r->applied_index = state->applied_index;
    r->compacted_index = state->compacted_index;
    r->next_read_ctx = 1;
    rv = replica_new_raft(node, state, &r->raft);
    if (rv != 0) {
        goto err_after_alloc;
    }
    r->role = rkv_raft_role(r->raft);
    rv = replicas_insert(node, r);
    if (rv != 0) {
        goto err_after_raft;
    }
    rkv_node__replica_mark(r);
    RKV_LOG(RKV_INFO,
            "opened replica range=%llu term=%llu applied=%llu last=%llu "
            "initialized=%d",
            (unsigned long long)r->range_id,
            (unsigned long long)state->hard_state.term,
            (unsigned long long)state->applied_index,
            (unsigned long long)state->last_index, (int)state->initialized);
    if (out != NULL) {
        *out = r;
    }
    return 0;

err_after_raft:
    rkv_raft_free(r->raft);
err_after_alloc:
    rkv_free(r);
err:
    assert(rv != 0);
    return rv;
}

int rkv_node__replica_restart(struct rkv_node__replica *r)
{
    struct rkv_node *node = r->node;
    struct rkv_range_state state;
    struct rkv_raft *raft;
    int rv;

    r->restarting = false;
    rv = rkv_range_state_load(node->store, r->range_id, &state);
    if (rv == 0) {
        rv = replica_new_raft(node, &state, &raft);
    }
    if (rv != 0) {
        /* The old core stays; its next snapshot attempt retries. */
        RKV_LOG(RKV_ERROR, "restarting raft group failed range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
        return rv;
    }
    /* Work the old core handed out after the refused install was never
     * written; like a crash of this one group, it is dropped. */
    rkv_node__wbatch_drop_replica(node->next_batch, r);
    rkv_raft_free(r->raft);
    r->raft = raft;
    r->desc = state.desc;
    r->initialized = state.initialized;
    r->stats = state.stats;
    r->applied_index = state.applied_index;
    r->compacted_index = state.compacted_index;
    r->leader_id = 0;
    r->role = rkv_raft_role(raft);
    r->quiesced = false;
    node->by_key_stale = true;
    rkv_node__replica_fail_waiting(r, RKV_EUNAVAILABLE,
                                   "the range restarted; retry");
    rkv_node__settle_skipped(r, r->applied_index, 0);
    rkv_node__replica_mark(r);
    return 0;
}

static int node_open_replicas(struct rkv_node *node)
{
    struct rkv_range_state *states;
    size_t n_states;
    int rv;

    rv = rkv_range_store_load(node->store, &states, &n_states);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n_states; i++) {
        rv = rkv_node__replica_open(node, &states[i], NULL);
        if (rv != 0) {
            RKV_LOG(RKV_ERROR, "opening replica failed range=%llu error=%s",
                    (unsigned long long)states[i].desc.range_id,
                    rkv_strerror(rv));
            break;
        }
    }
    rkv_free(states);
    return rv;
}

/* ---- bootstrap and init ------------------------------------------------- */

int rkv_node__bootstrap(struct rkv_node *node, uint64_t cluster_id)
{
    struct rkv_range_replica replicas[RKV_NODE_JOIN_MAX];
    struct rkv_range_ident ident = {.node_id = node->node_id,
                                    .cluster_id = cluster_id};
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;
    int rv;

    assert(node->cluster_id == 0);
    assert(cluster_id != 0);
    for (size_t i = 0; i < node->n_peers; i++) {
        replicas[i].node_id = node->peers[i].node_id;
        replicas[i].replica_id = node->peers[i].node_id;
        replicas[i].learner = false;
    }

    /* The first range is the same on every member (same join list), so
     * each member creates it on its own without any exchange. */
    rv = rkv_range_wtxn_begin(node->store, &wtxn);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range_bootstrap(wtxn, replicas, node->n_peers);
    if (rv != 0) {
        rkv_range_wtxn_abort(wtxn);
        return rv;
    }
    rv = rkv_range_wtxn_commit(wtxn);
    if (rv != 0 && rv != RKV_ESTALE) {
        return rv;
    }
    rv = rkv_range_ident_save(node->store, &ident);
    if (rv != 0) {
        return rv;
    }
    node->cluster_id = cluster_id;

    if (rkv_node__replica_find(node, RKV_RANGE_ID_FIRST) == NULL) {
        rv = rkv_range_state_load(node->store, RKV_RANGE_ID_FIRST, &state);
        if (rv != 0) {
            return rv;
        }
        rv = rkv_node__replica_open(node, &state, NULL);
        if (rv != 0) {
            return rv;
        }
    }
    RKV_LOG(RKV_INFO, "bootstrapped cluster cluster=%llu members=%zu",
            (unsigned long long)cluster_id, node->n_peers);
    rkv_node__transport_reset(node);
    return 0;
}

/* Bootstraps a new cluster from this node (loop thread). */
int rkv_node__init_cluster(struct rkv_node *node, uint64_t *cluster_id_out)
{
    uint64_t cluster_id = 0;
    int rv;

    if (node->cluster_id != 0) {
        return RKV_ESTALE;
    }
    while (cluster_id == 0) {
        if (getrandom(&cluster_id, sizeof(cluster_id), 0) !=
            (ssize_t)sizeof(cluster_id)) {
            cluster_id = node_random(node);
        }
    }
    rv = rkv_node__bootstrap(node, cluster_id);
    if (rv != 0) {
        RKV_LOG(RKV_ERROR, "init failed error=%s", rkv_strerror(rv));
        return rv;
    }
    *cluster_id_out = cluster_id;
    return 0;
}

static void node_init_async_cb(uv_async_t *async)
{
    struct rkv_node *node = async->data;
    uint64_t cluster_id;
    int rv;

    pthread_mutex_lock(&node->init_mutex);
    if (!node->init_requested) {
        pthread_mutex_unlock(&node->init_mutex);
        return;
    }
    pthread_mutex_unlock(&node->init_mutex);

    rv = rkv_node__init_cluster(node, &cluster_id);

    pthread_mutex_lock(&node->init_mutex);
    node->init_requested = false;
    node->init_done = true;
    node->init_rv = rv;
    pthread_cond_broadcast(&node->init_cond);
    pthread_mutex_unlock(&node->init_mutex);
}

int rkv_node_init(struct rkv_node *node)
{
    int rv;

    pthread_mutex_lock(&node->init_mutex);
    node->init_requested = true;
    node->init_done = false;
    uv_async_send(&node->init_async);
    while (!node->init_done) {
        pthread_cond_wait(&node->init_cond, &node->init_mutex);
    }
    rv = node->init_rv;
    pthread_mutex_unlock(&node->init_mutex);
    return rv;
}

const char *rkv_node__client_addr_of(struct rkv_node *node, uint64_t node_id)
{
    if (node_id == node->node_id) {
        return node->advertise_client_addr;
    }
    if (node_id == 0 || node_id > node->n_peers) {
        return "";
    }
    return node->peers[node_id - 1].client_addr;
}

/* ---- loop handles ------------------------------------------------------- */

static void node_check_cb(uv_check_t *check)
{
    struct rkv_node *node = check->data;

    if (!node->stopping) {
        rkv_node__collect_ready(node);
    }
    rkv_node__io_flush(&node->io);
}

/* Closes the client and inbound peer connections that stopped inside a
 * frame. */
static void node_close_overdue(struct rkv_node *node, uint64_t now_ms)
{
    enum rkv_log_level level;

    for (struct rkv_node__client *c = node->clients; c != NULL; c = c->next) {
        if (c->conn.closing ||
            !rkv_node__conn_frame_overdue(&c->conn, now_ms,
                                          RKV_NODE_FRAME_TIMEOUT_MS)) {
            continue;
        }
        /* RKV_LOG may evaluate its level twice. */
        level = rkv_node__io_malformed_level(&node->io);
        RKV_LOG(level,
                "closing connection kind=client error=frame not received in "
                "full within %u ms",
                (unsigned)RKV_NODE_FRAME_TIMEOUT_MS);
        rkv_node__conn_close(&c->conn);
    }
    for (struct rkv_node__peer_in *in = node->peers_in; in != NULL;
         in = in->next) {
        if (in->conn.closing ||
            !rkv_node__conn_frame_overdue(&in->conn, now_ms,
                                          RKV_NODE_FRAME_TIMEOUT_MS)) {
            continue;
        }
        level = rkv_node__io_malformed_level(&node->io);
        RKV_LOG(level,
                "closing connection kind=peer peer=%llu error=frame not "
                "received in full within %u ms",
                (unsigned long long)in->node_id,
                (unsigned)RKV_NODE_FRAME_TIMEOUT_MS);
        rkv_node__conn_close(&in->conn);
    }
    rkv_node__transport_close_silent(node, now_ms);
}

void rkv_node__tick(struct rkv_node *node)
{
    uint64_t now_ms = rkv_node__now_ms(node);

    node->n_ticks++;
    rkv_node__tick_replicas(node);
    rkv_node__requests_expire(node, now_ms);
    rkv_node__iprops_expire(node, now_ms);
    rkv_node__held_expire(node, now_ms);
    if (now_ms >= node->spread_after_ms) {
        node->spread_after_ms = now_ms + RKV_NODE_SPREAD_INTERVAL_MS;
        rkv_node__spread_leadership(node);
    }
}

static void node_tick_cb(uv_timer_t *timer)
{
    struct rkv_node *node = timer->data;
    uint64_t now_ms = rkv_monotonic_ms();

    rkv_node__send_heartbeats(node, node->n_ticks + 1);
    rkv_node__tick(node);
    rkv_node__space_check(node, false);
    if (now_ms >= node->frame_check_after_ms) {
        node->frame_check_after_ms = now_ms + RKV_NODE_FRAME_CHECK_MS;
        node_close_overdue(node, now_ms);
    }
}

static void node_finish_stop(struct rkv_node *node)
{
    uv_close((uv_handle_t *)&node->writer.async, NULL);
    uv_close((uv_handle_t *)&node->check, NULL);
    uv_close((uv_handle_t *)&node->tick_timer, NULL);
    uv_close((uv_handle_t *)&node->stop_async, NULL);
    uv_close((uv_handle_t *)&node->init_async, NULL);
}

static void node_writer_async_cb(uv_async_t *async)
{
    struct rkv_node *node = async->data;
    struct rkv_node__writer *w = &node->writer;
    struct rkv_node__wbatch *b;

    pthread_mutex_lock(&w->mutex);
    b = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->mutex);
    if (b == NULL) {
        return;
    }
    rkv_node__batch_done(node, b);
    rkv_node__space_check(node, true);
    if (node->stopping) {
        node_finish_stop(node);
    }
}

static void node_stop_async_cb(uv_async_t *async)
{
    struct rkv_node *node = async->data;

    RKV_LOG(RKV_INFO, "stopping node");
    node->stopping = true;
    uv_timer_stop(&node->tick_timer);
    rkv_node__transport_close(node);
    rkv_node__rpc_close(node);
    /* Work not yet handed to the writer is dropped, as a crash would; none
     * of it was acknowledged. */
    rkv_node__wbatch_free(node->next_batch);
    node->next_batch = NULL;
    rkv_node__writer_give_up(&node->writer);
    if (!node->batch_in_flight) {
        node_finish_stop(node);
    }
}

static void *node_loop_main(void *arg)
{
    struct rkv_node *node = arg;

    rkv_log_set_thread_node_id(node->node_id);
    uv_run(&node->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- start and stop ----------------------------------------------------- */

static int copy_addr(char dst[RKV_NODE_ADDR_MAX], const char *src,
                     const char *fallback)
{
    const char *value = src != NULL ? src : fallback;

    if (value == NULL) {
        dst[0] = '\0';
        return 0;
    }
    if (strlen(value) >= RKV_NODE_ADDR_MAX || strchr(value, ':') == NULL) {
        return RKV_ECONFIG;
    }
    snprintf(dst, RKV_NODE_ADDR_MAX, "%s", value);
    return 0;
}

/* Copies the configuration and finds this node's id. */
static int node_configure(struct rkv_node *node,
                          const struct rkv_node_config *config, char *errmsg,
                          size_t errmsg_len)
{
    if (config->store_dir == NULL || config->store_dir[0] == '\0' ||
        strlen(config->store_dir) >= sizeof(node->store_dir)) {
        snprintf(errmsg, errmsg_len,
                 "invalid store folder: set store_dir "
                 "(--store) to a path under 512 bytes");
        return RKV_ECONFIG;
    }
    snprintf(node->store_dir, sizeof(node->store_dir), "%s", config->store_dir);
    if (config->n_join == 0 || config->n_join > RKV_NODE_JOIN_MAX) {
        snprintf(errmsg, errmsg_len,
                 "invalid join list: expected 1 to %d peer addresses",
                 RKV_NODE_JOIN_MAX);
        return RKV_ECONFIG;
    }
    if (copy_addr(node->listen_addr, config->listen_addr, "127.0.0.1:0") != 0 ||
        copy_addr(node->client_listen_addr, config->client_addr,
                  "127.0.0.1:0") != 0 ||
        copy_addr(node->advertise_addr, config->advertise_addr, NULL) != 0 ||
        copy_addr(node->advertise_client_addr, config->advertise_client_addr,
                  NULL) != 0) {
        snprintf(errmsg, errmsg_len,
                 "invalid address: expected HOST:PORT under %d bytes",
                 RKV_NODE_ADDR_MAX);
        return RKV_ECONFIG;
    }
    node->n_peers = config->n_join;
    for (size_t i = 0; i < config->n_join; i++) {
        struct rkv_node__peer *peer = &node->peers[i];

        peer->node = node;
        peer->node_id = i + 1;
        if (copy_addr(peer->peer_addr, config->join[i], NULL) != 0) {
            snprintf(errmsg, errmsg_len,
                     "invalid join address '%s': expected HOST:PORT",
                     config->join[i]);
            return RKV_ECONFIG;
        }
    }
    node->split_bytes = config->split_bytes != 0 ? config->split_bytes
                                                 : RKV_NODE_SPLIT_BYTES_DEFAULT;
    node->tick_ms = config->tick_ms != 0 ? config->tick_ms : 100;
    node->log_compact_entries = config->log_compact_entries != 0
                                    ? config->log_compact_entries
                                    : RKV_NODE_LOG_COMPACT_ENTRIES_DEFAULT;
    node->no_sync = config->no_sync;
    if (config->map_size_max != 0 &&
        config->map_size_max < RKV_NODE_MAP_SIZE_MAX_MIN) {
        snprintf(errmsg, errmsg_len,
                 "invalid map_size_max %llu: expected 0 or at least %u bytes",
                 (unsigned long long)config->map_size_max,
                 (unsigned)RKV_NODE_MAP_SIZE_MAX_MIN);
        return RKV_ECONFIG;
    }
    node->map_size_max = config->map_size_max;
    node->clients_max = config->clients_max != 0 ? config->clients_max
                                                 : RKV_NODE_CLIENTS_MAX_DEFAULT;
    node->peers_pending_max = config->peers_pending_max != 0
                                  ? config->peers_pending_max
                                  : RKV_NODE_PEERS_PENDING_MAX_DEFAULT;
    if (config->cluster_secret != NULL && config->cluster_secret[0] != '\0') {
        node->cluster_secret = strdup(config->cluster_secret);
        if (node->cluster_secret == NULL) {
            return -ENOMEM;
        }
    }

    node->node_id = config->node_id;
    if (node->node_id == 0) {
        const char *self = config->advertise_addr != NULL
                               ? config->advertise_addr
                               : node->listen_addr;

        for (size_t i = 0; i < config->n_join; i++) {
            if (strcmp(config->join[i], self) == 0) {
                node->node_id = i + 1;
            }
        }
    }
    if (node->node_id == 0 || node->node_id > config->n_join) {
        snprintf(errmsg, errmsg_len,
                 "cannot tell which join member this node is: list its "
                 "listen or advertise address in --join, or set --node-id "
                 "to its 1-based position");
        return RKV_ECONFIG;
    }
    return 0;
}

static int node_open_store(struct rkv_node *node, char *errmsg,
                           size_t errmsg_len)
{
    struct rkv_range_store_options options = {0};
    struct rkv_range_ident ident;
    char store_errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    int rv;

    if (mkdir(node->store_dir, 0755) != 0 && errno != EEXIST) {
        rv = -errno;
        snprintf(errmsg, errmsg_len, "creating store folder %s failed: %s",
                 node->store_dir, rkv_strerror(rv));
        return rv;
    }
    options.path = node->store_dir;
    options.no_sync = node->no_sync;
    options.map_size_max = node->map_size_max;
    options.split_bytes = node->split_bytes;
    rv = rkv_range_store_open(&options, &node->store, store_errmsg);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "opening store %s failed: %s",
                 node->store_dir, store_errmsg);
        return rv;
    }
    rv = rkv_range_ident_load(node->store, &ident);
    if (rv == RKV_ENOTFOUND) {
        return 0;
    }
    if (rv == 0 && ident.node_id != node->node_id) {
        rv = RKV_ECLUSTERID;
        snprintf(errmsg, errmsg_len,
                 "store %s belongs to node %llu, not node %llu: start it "
                 "with --node-id %llu or use another folder",
                 node->store_dir, (unsigned long long)ident.node_id,
                 (unsigned long long)node->node_id,
                 (unsigned long long)ident.node_id);
    } else if (rv != 0) {
        snprintf(errmsg, errmsg_len, "reading node identity failed: %s",
                 rkv_strerror(rv));
    }
    if (rv != 0) {
        rkv_range_store_close(node->store);
        node->store = NULL;
        return rv;
    }
    node->cluster_id = ident.cluster_id;
    return 0;
}

/* Writes STORE/addresses atomically (a temporary file, then rename). */
static int node_write_addresses(struct rkv_node *node)
{
    char path[600];
    char tmp[620];
    FILE *f;

    snprintf(path, sizeof(path), "%s/addresses", node->store_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        return -errno;
    }
    fprintf(f, "peer %s\nclient %s\n", node->advertise_addr,
            node->advertise_client_addr);
    if (fclose(f) != 0) {
        return -errno;
    }
    if (rename(tmp, path) != 0) {
        return -errno;
    }
    return 0;
}

static int node_init_handles(struct rkv_node *node)
{
    int rv;

    rv = uv_loop_init(&node->loop);
    if (rv != 0) {
        return rv;
    }
    rkv_node__io_init(&node->io, &node->loop);
    uv_async_init(&node->loop, &node->stop_async, node_stop_async_cb);
    node->stop_async.data = node;
    uv_async_init(&node->loop, &node->init_async, node_init_async_cb);
    node->init_async.data = node;
    uv_async_init(&node->loop, &node->writer.async, node_writer_async_cb);
    node->writer.async.data = node;
    uv_timer_init(&node->loop, &node->tick_timer);
    node->tick_timer.data = node;
    uv_check_init(&node->loop, &node->check);
    node->check.data = node;
    uv_check_start(&node->check, node_check_cb);
    uv_timer_start(&node->tick_timer, node_tick_cb, node->tick_ms,
                   node->tick_ms);
    return 0;
}

/* Closes every handle and runs the loop until they are gone; for failures
 * before the loop thread starts. */
static void node_close_handles(struct rkv_node *node)
{
    node->stopping = true;
    rkv_node__transport_close(node);
    rkv_node__rpc_close(node);
    node_finish_stop(node);
    uv_run(&node->loop, UV_RUN_DEFAULT);
    uv_loop_close(&node->loop);
}

/* Fails every pending request, then frees the replicas. Failing a request looks
 * replicas up, so it runs while all of them are still in the table. */
static void node_free_replicas(struct rkv_node *node)
{
    for (size_t i = 0; i < node->n_buckets; i++) {
        for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
             r = r->hash_next) {
            rkv_node__replica_stop(r);
        }
    }
    while (node->all_head != NULL) {
        /* A request that waits on no replica gets its response too. */
        rkv_node__request_fail(node->all_head, RKV_ESHUTDOWN, "node stopping");
    }
    for (size_t i = 0; i < node->n_buckets; i++) {
        struct rkv_node__replica *r = node->buckets[i];

        node->buckets[i] = NULL;
        while (r != NULL) {
            struct rkv_node__replica *next = r->hash_next;

            rkv_node__replica_free(r);
            r = next;
        }
    }
    node->n_replicas = 0;
    node->n_buckets = 0;
    rkv_free(node->buckets);
    node->buckets = NULL;
    rkv_free(node->by_key);
    node->by_key = NULL;
}

void rkv_node__free(struct rkv_node *node)
{
    rkv_node__wbatch_free(node->next_batch);
    rkv_node__held_expire(node, UINT64_MAX);
    rkv_node__iprops_free(node);
    node_free_replicas(node);
    if (node->store != NULL) {
        rkv_range_store_close(node->store);
    }
    pthread_cond_destroy(&node->init_cond);
    pthread_mutex_destroy(&node->init_mutex);
    free(node->cluster_secret);
    rkv_free(node);
}

static int node_start_threads(struct rkv_node *node)
{
    int rv;

    rv = rkv_node__writer_start(node);
    if (rv != 0) {
        return rv;
    }
    rv = pthread_create(&node->thread, NULL, node_loop_main, node);
    if (rv != 0) {
        rkv_node__writer_stop(&node->writer);
        return -rv;
    }
    return 0;
}

int rkv_node__new(const struct rkv_node_config *config, uint64_t seed,
                  struct rkv_node **out, char *errmsg, size_t errmsg_len)
{
    struct rkv_node *node;
    int rv;

    node = rkv_calloc(1, sizeof(*node));
    if (node == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&node->init_mutex, NULL);
    pthread_cond_init(&node->init_cond, NULL);
    node->next_iprop_id = 1;
    node->rand_state = seed != 0 ? seed : 1;
    node->buckets =
        rkv_calloc(RKV_NODE_REPLICAS_BUCKETS_MIN, sizeof(*node->buckets));
    if (node->buckets == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        rv = -ENOMEM;
        goto err;
    }
    node->n_buckets = RKV_NODE_REPLICAS_BUCKETS_MIN;
    rv = node_configure(node, config, errmsg, errmsg_len);
    if (rv != 0) {
        goto err;
    }
    rv = node_open_store(node, errmsg, errmsg_len);
    if (rv != 0) {
        goto err;
    }
    rv = node_open_replicas(node);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "opening replicas failed: %s",
                 rkv_strerror(rv));
        goto err;
    }
    *out = node;
    return 0;

err:
    rkv_node__free(node);
    assert(rv != 0);
    return rv;
}

static uint64_t node_clock_now(void *data)
{
    (void)data;
    return rkv_monotonic_ms();
}

int rkv_node_start(const struct rkv_node_config *config, struct rkv_node **out,
                   char *errmsg, size_t errmsg_len)
{
    char scratch[8];
    struct rkv_node *node;
    uint64_t seed = 0;
    int rv;

    if (errmsg == NULL) {
        errmsg = scratch;
        errmsg_len = sizeof(scratch);
    }
    errmsg[0] = '\0';
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        seed = rkv_monotonic_ms();
    }
    rv = rkv_node__new(config, seed, &node, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    node->clock.now_ms = node_clock_now;
    node->transport.ops = &rkv_node__tcp_ops;
    node->transport.data = node;
    node->storage.ops = &rkv_node__writer_ops;
    node->storage.data = &node->writer;
    node->start_ms = rkv_node__now_ms(node);
    rv = node_init_handles(node);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "starting the event loop failed: %s",
                 rkv_strerror(rv));
        goto err_after_new;
    }
    rv = rkv_node__transport_start(node);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "listening on %s failed: %s",
                 node->listen_addr, rkv_strerror(rv));
        goto err_after_handles;
    }
    rv = rkv_node__rpc_start(node);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "listening on %s failed: %s",
                 node->client_listen_addr, rkv_strerror(rv));
        goto err_after_handles;
    }
    rv = node_write_addresses(node);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "writing %s/addresses failed: %s",
                 node->store_dir, rkv_strerror(rv));
        goto err_after_handles;
    }
    rv = node_start_threads(node);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "starting threads failed: %s",
                 rkv_strerror(rv));
        goto err_after_handles;
    }
    RKV_LOG(RKV_INFO,
            "started node node=%llu cluster=%llu peer=%s client=%s "
            "replicas=%zu",
            (unsigned long long)node->node_id,
            (unsigned long long)node->cluster_id, node->advertise_addr,
            node->advertise_client_addr, node->n_replicas);
    *out = node;
    return 0;

err_after_handles:
    node_close_handles(node);
err_after_new:
    rkv_node__free(node);
    assert(rv != 0);
    return rv;
}

void rkv_node_addresses(const struct rkv_node *node,
                        char peer_addr[RKV_NODE_ADDR_MAX],
                        char client_addr[RKV_NODE_ADDR_MAX])
{
    memcpy(peer_addr, node->advertise_addr, RKV_NODE_ADDR_MAX);
    memcpy(client_addr, node->advertise_client_addr, RKV_NODE_ADDR_MAX);
}

uint64_t rkv_node_id(const struct rkv_node *node)
{
    return node->node_id;
}

void rkv_node_stop(struct rkv_node *node)
{
    uv_async_send(&node->stop_async);
    pthread_join(node->thread, NULL);
    rkv_node__writer_stop(&node->writer);
    uv_loop_close(&node->loop);
    RKV_LOG(RKV_INFO, "stopped node node=%llu",
            (unsigned long long)node->node_id);
    rkv_node__free(node);
}
