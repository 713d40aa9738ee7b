/*
 * The glue between the Raft cores and the range store of one simulated
 * node, kept apart so that it can later be replaced by node/'s own code
 * once node/ reaches I/O through transport, storage and clock interfaces.
 * It follows node/replica.c, node/writer.c and node/split.c.
 *
 * Happy path, every simulated millisecond (sim_node_step()):
 *   1. disk_commit_due(): the disk jobs whose latency has passed are
 *      recorded, in queue order, into one rkv_range_wtxn (chunks, entries,
 *      hard state, then the apply of committed entries, as raft.h
 *      prescribes) and committed. Then each job's batch is acknowledged
 *      with rkv_raft_ack(), its messages_after_persist are sent, and the
 *      apply results complete client proposals, internal proposals and
 *      splits. Reads whose ReadIndex is applied are served.
 *   2. Ticks every RKV_SIM_TICK_MS plus or minus 1 ms (clocks drift), at
 *      a per-node phase.
 *   3. collect_ready(): each replica's ready batch has its messages sent at
 *      once (a leader's appends go out while its own write is queued, Raft
 *      thesis 10.2.1) and becomes a disk job due after a random latency.
 *
 * Failure modes:
 *   - A crash (sim_node_crash()) drops every queued disk job (writes not
 *     yet committed are lost), every pending request and the Raft cores;
 *     a restart rebuilds the cores from what the store loads.
 *   - A failed disk write: the node stops at once, like node/ does, so it
 *     never acknowledges a batch it did not persist.
 *   - A proposal whose index applies with another term was dropped by a
 *     leader change: the client is told RKV_EDROPPED (no effect).
 *   - A replica that stops leading fails its waiting reads with
 *     RKV_ENOTLEADER. Client proposals keep waiting for their index.
 *   - A snapshot install the store refuses, or a split that initializes an
 *     uninitialized replica: that range's queued disk jobs are dropped and
 *     its core restarts from the store (replica_restart()).
 *
 * Splits, transfers and membership changes live in sim_node_split.c, and
 * client requests in sim_node_request.c.
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim_node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"

void sim_fatal(const char *what, int rv)
{
    fprintf(stderr, "sim: %s failed: %s\n", what, rkv_strerror(rv));
    fflush(stderr);
    abort();
}

void *sim_alloc(size_t size)
{
    void *p = rkv_calloc(1, size);

    if (p == NULL) {
        sim_fatal("allocation", -ENOMEM);
    }
    return p;
}

void sim_key_format(unsigned key, uint8_t *out, size_t *len)
{
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "k%02u", key);

    memcpy(out, buf, (size_t)n);
    *len = (size_t)n;
}

struct sim_replica *sim_replica_find(struct sim_node *node,
                                        uint64_t range_id)
{
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (r->range_id == range_id) {
            return r;
        }
    }
    return NULL;
}

struct sim_replica *sim_replica_for_key(struct sim_node *node,
                                           const uint8_t *key, size_t len)
{
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (r->initialized && rkv_range_desc_contains_key(&r->desc, key, len)) {
            return r;
        }
    }
    return NULL;
}

/* ---- sending ------------------------------------------------------------ */

static void send_raft(struct rkv_sim_world *w, struct sim_node *node,
                      const RkvRaft__Message *m)
{
    struct sim_msg *msg;

    if (m->to == 0 || m->to > w->options.n_nodes) {
        return;
    }
    msg = sim_msg_new(SIM_MSG_RAFT, (unsigned)node->id, (unsigned)m->to);
    msg->data_len = rkv_raft__message__get_packed_size(m);
    msg->data = rkv_malloc(msg->data_len + 1);
    if (msg->data == NULL) {
        sim_fatal("packing a raft message", -ENOMEM);
    }
    rkv_raft__message__pack(m, msg->data);
    sim_net_send(w, msg);
}

void sim_respond(struct rkv_sim_world *w, struct sim_node *node,
                    unsigned client_addr, const struct sim_response *resp)
{
    struct sim_msg *msg =
        sim_msg_new(SIM_MSG_RESPONSE, (unsigned)node->id, client_addr);

    msg->response = *resp;
    sim_net_send(w, msg);
}

void sim_respond_error(struct rkv_sim_world *w, struct sim_node *node,
                          unsigned client_addr, uint64_t req_id, int rv,
                          uint64_t leader_hint)
{
    struct sim_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.req_id = req_id;
    resp.rv = rv;
    resp.leader_hint = leader_hint;
    sim_respond(w, node, client_addr, &resp);
}

/* ---- replicas ----------------------------------------------------------- */

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

/* Builds a Raft core from a replica's stored state (node/node.c does the
 * same in replica_new_raft()). */
static int replica_new_raft(struct rkv_sim_world *w, struct sim_node *node,
                            const struct rkv_range_state *state,
                            struct rkv_raft **out)
{
    struct rkv_range_entry *stored = NULL;
    size_t n_stored = 0;
    RkvRaft__Entry *entries = NULL;
    RkvRaft__Entry **pointers = NULL;
    struct rkv_raft_config cfg;
    struct rkv_raft_boot boot;
    int rv;

    rkv_raft_config_init(&cfg, node->id, state->desc.range_id,
                         rkv_sim_prng_next(&w->prng) | 1);
    cfg.election_ticks = RKV_SIM_ELECTION_TICKS;
    cfg.heartbeat_ticks = RKV_SIM_HEARTBEAT_TICKS;
    /* Above the simulator's snapshot chunk size. */
    cfg.chunk_bytes_max = 64 * 1024;
    if (state->last_index > state->compacted_index) {
        rv = rkv_range_log_load(node->store, state->desc.range_id,
                                state->compacted_index + 1, state->last_index,
                                0, &stored, &n_stored);
        if (rv != 0) {
            return rv;
        }
    }
    entries = sim_alloc((n_stored + 1) * sizeof(*entries));
    pointers = sim_alloc((n_stored + 1) * sizeof(*pointers));
    for (size_t i = 0; i < n_stored; i++) {
        rkv_raft__entry__init(&entries[i]);
        entries[i].index = stored[i].index;
        entries[i].term = stored[i].term;
        entries[i].type = (RkvRaft__EntryType)stored[i].type;
        entries[i].data.data = (uint8_t *)stored[i].data;
        entries[i].data.len = stored[i].data_len;
        pointers[i] = &entries[i];
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
    boot.entries = pointers;
    boot.n_entries = n_stored;
    rv = rkv_raft_new(&cfg, &boot, out);
    rkv_range_entries_free(stored, n_stored);
    rkv_free(entries);
    rkv_free(pointers);
    return rv;
}

int sim_replica_open(struct rkv_sim_world *w, struct sim_node *node,
                        const struct rkv_range_state *state,
                        struct sim_replica **out)
{
    struct sim_replica *r = sim_alloc(sizeof(*r));
    struct sim_replica **link = &node->replicas;
    int rv;

    r->range_id = state->desc.range_id;
    r->desc = state->desc;
    r->initialized = state->initialized;
    r->stats = state->stats;
    r->applied_index = state->applied_index;
    r->compacted_index = state->compacted_index;
    r->next_read_ctx = 1;
    rv = replica_new_raft(w, node, state, &r->raft);
    if (rv != 0) {
        rkv_free(r);
        return rv;
    }
    r->role = rkv_raft_role(r->raft);
    /* Keep the list in range id order so every walk is deterministic. */
    while (*link != NULL && (*link)->range_id < r->range_id) {
        link = &(*link)->next;
    }
    r->next = *link;
    *link = r;
    if (out != NULL) {
        *out = r;
    }
    return 0;
}

static void pending_list_free(struct sim_pending **list)
{
    while (*list != NULL) {
        struct sim_pending *p = *list;

        *list = p->next;
        rkv_free(p);
    }
}

static void replica_free(struct sim_replica *r)
{
    pending_list_free(&r->proposals);
    pending_list_free(&r->reads);
    sim_snapshot_close_all(r);
    rkv_raft_free(r->raft);
    rkv_free(r);
}

/* ---- applying ----------------------------------------------------------- */


static void job_applied(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_disk_job *job)
{
    struct sim_replica *r = job->replica;
    struct rkv_raft_ready *rd = job->rd;

    for (size_t i = 0; i < rd->n_committed; i++) {
        const RkvRaft__Entry *entry = rd->committed[i];
        const struct rkv_range_apply_result *result = &job->results[i];

        r->applied_index = entry->index;
        sim_safety_applied(w, r->range_id, entry->index, entry->term,
                           node->id);
        if (result->kind == RKV_RANGE_CMD_SPLIT && result->rv == 0) {
            sim_split_applied(w, node, r, result);
        }
        sim_iprops_applied(w, node, r, entry->index, entry->term, result);
        sim_finish_proposals(w, node, r, entry->index, entry->term, result);
    }
}

static void jobs_refresh_stats(struct sim_node *node,
                               struct sim_disk_job *head, size_t n_jobs)
{
    struct rkv_range_rtxn *rtxn;
    struct sim_disk_job *job = head;
    int rv;

    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        sim_fatal("beginning a read transaction", rv);
    }
    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
        struct sim_replica *r = job->replica;

        if (job->rd->n_committed == 0 && job->rd->n_chunks == 0) {
            continue;
        }
        rkv_range_stats_get(rtxn, r->range_id, &r->stats);
        if (rkv_range_desc_get(rtxn, r->range_id, &r->desc) == 0) {
            r->initialized = true;
        }
    }
    rkv_range_rtxn_end(rtxn);
}

/* ---- the disk ----------------------------------------------------------- */

static void job_free(struct sim_disk_job *job)
{
    if (job->results != NULL) {
        for (size_t i = 0; i < job->rd->n_committed; i++) {
            rkv_range_apply_result_free(&job->results[i]);
        }
    }
    rkv_free(job->results);
    rkv_free(job->entries);
    rkv_free(job->committed);
    rkv_raft_ready_free(job->rd);
    rkv_free(job);
}

static void convert_entries(RkvRaft__Entry **in, size_t n,
                            struct rkv_range_entry *out)
{
    for (size_t i = 0; i < n; i++) {
        out[i].index = in[i]->index;
        out[i].term = in[i]->term;
        out[i].type = (uint32_t)in[i]->type;
        out[i].data = in[i]->data.data;
        out[i].data_len = in[i]->data.len;
    }
}

/* Records a committed configuration as the range's replicas, in the
 * transaction that applies its entry. Replica id == node id. */
static int job_record_conf(struct rkv_range_wtxn *wtxn, uint64_t range_id,
                           const struct rkv_range_entry *entry)
{
    struct rkv_range_replica replicas[RKV_RANGE_REPLICAS_MAX];
    struct rkv_raft_conf conf;
    int rv;

    rv = rkv_raft_conf_decode(entry->data, entry->data_len, &conf);
    if (rv != 0) {
        return rv;
    }
    if (conf.n_servers > RKV_RANGE_REPLICAS_MAX) {
        return RKV_ETOOLARGE;
    }
    for (unsigned i = 0; i < conf.n_servers; i++) {
        replicas[i].node_id = conf.servers[i].id;
        replicas[i].replica_id = conf.servers[i].id;
        replicas[i].learner = conf.servers[i].learner;
    }
    return rkv_range_replicas_set(wtxn, range_id, replicas, conf.n_servers);
}

/* Records one job into wtxn: entries, hard state, then applies. */
static int job_record(struct rkv_range_wtxn *wtxn, struct sim_disk_job *job)
{
    struct rkv_raft_ready *rd = job->rd;
    uint64_t range_id = job->replica->range_id;
    int rv;

    rv = sim_snapshot_record(wtxn, job);
    if (rv != 0) {
        return rv;
    }
    if (rd->n_entries > 0) {
        job->entries = sim_alloc(rd->n_entries * sizeof(*job->entries));
        convert_entries(rd->entries, rd->n_entries, job->entries);
        rv = rkv_range_log_append(wtxn, range_id, job->entries,
                                  rd->n_entries);
        if (rv != 0) {
            return rv;
        }
    }
    if (rd->has_hard_state) {
        struct rkv_range_hard_state hs = {
            .term = rd->hard_state.term,
            .vote = rd->hard_state.vote,
            .commit = rd->hard_state.commit,
        };

        rv = rkv_range_hard_state_save(wtxn, range_id, &hs);
        if (rv != 0) {
            return rv;
        }
    }
    if (rd->n_committed > 0) {
        job->committed = sim_alloc(rd->n_committed * sizeof(*job->committed));
        job->results = sim_alloc(rd->n_committed * sizeof(*job->results));
        convert_entries(rd->committed, rd->n_committed, job->committed);
    }
    for (size_t i = 0; i < rd->n_committed; i++) {
        rv = rkv_range_apply(wtxn, range_id, &job->committed[i],
                             &job->results[i]);
        if (rv != 0) {
            return rv;
        }
        if (job->committed[i].type == RKV_RANGE_ENTRY_CONF) {
            rv = job_record_conf(wtxn, range_id, &job->committed[i]);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

/* Commits the first n_jobs jobs in one transaction. Returns 0, the store's
 * error, or -EIO for an injected write error. */
static int disk_write(struct sim_node *node, size_t n_jobs)
{
    struct sim_disk_job *job = node->disk_head;
    struct rkv_range_wtxn *wtxn;
    int rv;

    rv = rkv_range_wtxn_begin(node->store, &wtxn);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
        rv = job_record(wtxn, job);
        if (rv != 0) {
            rkv_range_wtxn_abort(wtxn);
            return rv;
        }
    }
    if (node->fail_write_at != 0 && node->n_writes + 1 == node->fail_write_at) {
        /* The injected error: the write never reaches the disk. */
        node->fail_write_at = 0;
        rkv_range_wtxn_abort(wtxn);
        return -EIO;
    }
    rv = rkv_range_wtxn_commit(wtxn);
    if (rv == 0) {
        node->n_writes++;
    }
    return rv;
}

/* Drops r's queued (uncommitted) disk jobs and rebuilds its Raft core from
 * the store, as after a crash of that one group. */
static void replica_restart(struct rkv_sim_world *w, struct sim_node *node,
                            struct sim_replica *r)
{
    struct sim_disk_job **link = &node->disk_head;
    struct rkv_range_state state;
    int rv;

    node->disk_tail = NULL;
    while (*link != NULL) {
        struct sim_disk_job *job = *link;

        if (job->replica == r) {
            *link = job->next;
            job_free(job);
            continue;
        }
        node->disk_tail = job;
        link = &job->next;
    }
    pending_list_free(&r->proposals);
    pending_list_free(&r->reads);
    sim_snapshot_close_all(r);
    rkv_raft_free(r->raft);
    r->raft = NULL;

    rv = rkv_range_state_load(node->store, r->range_id, &state);
    if (rv == 0) {
        state.desc.range_id = r->range_id;
        rv = replica_new_raft(w, node, &state, &r->raft);
    }
    if (rv != 0) {
        sim_fatal("restarting a range's raft core", rv);
    }
    r->desc = state.desc;
    r->initialized = state.initialized;
    r->stats = state.stats;
    r->applied_index = state.applied_index;
    r->compacted_index = state.compacted_index;
    r->role = rkv_raft_role(r->raft);
    r->leader_id = 0;
    r->split_state = SIM_SPLIT_IDLE;
    r->needs_restart = false;
    sim_trace(w, "restart raft core node=%llu range=%llu applied=%llu",
              (unsigned long long)node->id, (unsigned long long)r->range_id,
              (unsigned long long)r->applied_index);
}

/* Acknowledges, sends and applies the first n_jobs jobs, now durable. A
 * replica whose snapshot the store refused skips all of that: the store
 * skipped the rest of its work in the transaction, so nothing may be
 * acknowledged, and its core restarts from the store instead. */
static void disk_finish(struct rkv_sim_world *w, struct sim_node *node,
                        size_t n_jobs)
{
    struct sim_disk_job *job = node->disk_head;
    int rv;

    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
        if (job->installed && job->install.rv != 0) {
            sim_snapshot_refused(w, node, job);
        }
    }
    job = node->disk_head;
    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
        if (job->replica->needs_restart || job->acked_early) {
            continue;
        }
        rv = rkv_raft_ack(job->replica->raft, job->rd->seq);
        if (rv != 0) {
            sim_fatal("acknowledging a raft batch", rv);
        }
        for (size_t m = 0; m < job->rd->n_messages_after_persist; m++) {
            send_raft(w, node, job->rd->messages_after_persist[m]);
        }
    }
    jobs_refresh_stats(node, node->disk_head, n_jobs);
    job = node->disk_head;
    /* In queue order: a batch that applies entries may come before or
     * after the batch that installs a snapshot. */
    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
        if (job->replica->needs_restart) {
            continue;
        }
        if (job->installed) {
            sim_snapshot_installed(w, node, job);
        }
        job_applied(w, node, job);
    }
    for (size_t i = 0; i < n_jobs; i++) {
        job = node->disk_head;
        node->disk_head = job->next;
        if (!job->replica->needs_restart &&
            (job->rd->n_committed > 0 || job->installed)) {
            sim_serve_reads(w, node, job->replica);
            sim_split_maybe(w, node, job->replica);
            sim_compact_maybe(w, node, job->replica);
        }
        job_free(job);
    }
    if (node->disk_head == NULL) {
        node->disk_tail = NULL;
    }
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (r->needs_restart) {
            replica_restart(w, node, r);
        }
    }
}

/* Commits every job whose latency has passed. Returns 1 when the node
 * stopped on a write error, else 0. */
static int disk_commit_due(struct rkv_sim_world *w, struct sim_node *node)
{
    size_t n_jobs = 0;
    int rv;

    for (struct sim_disk_job *job = node->disk_head;
         job != NULL && job->due_ms <= w->now_ms; job = job->next) {
        n_jobs++;
    }
    if (n_jobs == 0) {
        return 0;
    }
    rv = disk_write(node, n_jobs);
    if (rv != 0) {
        /* As node/ does on a failed commit: stop, never acknowledge. */
        sim_trace(w, "disk write failed, node stops node=%llu error=%s",
                  (unsigned long long)node->id, rkv_strerror(rv));
        w->report->n_disk_errors++;
        sim_node_crash(w, node->index);
        return 1;
    }
    disk_finish(w, node, n_jobs);
    return 0;
}

/* ---- collecting Raft work ----------------------------------------------- */

static bool ready_needs_disk(const struct rkv_raft_ready *rd)
{
    return rd->has_hard_state || rd->n_entries > 0 || rd->n_chunks > 0 ||
           rd->n_committed > 0 || rd->n_messages_after_persist > 0;
}

static void replica_role_changed(struct rkv_sim_world *w,
                                 struct sim_node *node, struct sim_replica *r,
                                 const struct rkv_raft_ready *rd)
{
    enum rkv_raft_role old_role = r->role;

    r->role = rd->role;
    if (rd->role == RKV_RAFT_LEADER) {
        sim_safety_leader(w, r->range_id, rkv_raft_term(r->raft), node->id);
        sim_trace(w, "leader node=%llu range=%llu term=%llu",
                  (unsigned long long)node->id,
                  (unsigned long long)r->range_id,
                  (unsigned long long)rkv_raft_term(r->raft));
    } else if (old_role == RKV_RAFT_LEADER) {
        sim_fail_reads(w, node, r);
        sim_snapshot_close_all(r);
        r->split_state = SIM_SPLIT_IDLE;
    }
}

static void take_reads(struct sim_replica *r, const struct rkv_raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_reads; i++) {
        for (struct sim_pending *p = r->reads; p != NULL; p = p->next) {
            if (p->ctx == rd->reads[i].ctx) {
                /* index 0 would mean "unknown"; the first entry is 1. */
                p->index = RKV_MAX(rd->reads[i].index, 1);
            }
        }
    }
}

static void disk_enqueue(struct rkv_sim_world *w, struct sim_node *node,
                         struct sim_replica *r, struct rkv_raft_ready *rd)
{
    struct sim_disk_job *job = sim_alloc(sizeof(*job));
    uint64_t due = w->now_ms + rkv_sim_prng_between(&w->prng, 1,
                                                     w->disk_latency_max_ms);

    job->replica = r;
    job->rd = rd;
    /* FIFO: a job is never due before the one queued ahead of it. */
    job->due_ms = RKV_MAX(due, node->disk_due_ms);
    node->disk_due_ms = job->due_ms;
    if (node->disk_tail != NULL) {
        node->disk_tail->next = job;
    } else {
        node->disk_head = job;
    }
    node->disk_tail = job;
}

static void collect_one(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r)
{
    struct rkv_raft_ready *rd;
    int rv;

    rv = rkv_raft_ready(r->raft, &rd);
    if (rv != 0) {
        sim_fatal("taking raft work", rv);
    }
    if (rd->role_changed) {
        replica_role_changed(w, node, r, rd);
    }
    r->leader_id = rkv_raft_leader(r->raft);
    for (size_t i = 0; i < rd->n_messages; i++) {
        send_raft(w, node, rd->messages[i]);
    }
    take_reads(r, rd);
    sim_serve_reads(w, node, r);
    sim_snapshot_serve(w, node, r, rd);
    if (!ready_needs_disk(rd)) {
        rkv_raft_ready_free(rd);
        return;
    }
    disk_enqueue(w, node, r, rd);
    if (w->options.bug == RKV_SIM_BUG_ACK_BEFORE_PERSIST) {
        /* The injected bug: votes and append acknowledgments go out, and
         * the core counts the batch durable, before the disk write. */
        node->disk_tail->acked_early = true;
        rv = rkv_raft_ack(r->raft, rd->seq);
        if (rv != 0) {
            sim_fatal("acknowledging a raft batch", rv);
        }
        for (size_t i = 0; i < rd->n_messages_after_persist; i++) {
            send_raft(w, node, rd->messages_after_persist[i]);
        }
    }
}

static void collect_ready(struct rkv_sim_world *w, struct sim_node *node)
{
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (rkv_raft_has_ready(r->raft)) {
            collect_one(w, node, r);
        }
    }
}

static struct sim_replica *replica_create_uninit(struct rkv_sim_world *w,
                                                 struct sim_node *node,
                                                 uint64_t range_id)
{
    struct rkv_range_state state;
    struct rkv_range_wtxn *wtxn;
    struct sim_replica *r;
    int rv;

    rv = rkv_range_wtxn_begin(node->store, &wtxn);
    if (rv == 0) {
        rv = rkv_range_create_uninit(wtxn, range_id);
        if (rv == 0) {
            rv = rkv_range_wtxn_commit(wtxn);
        } else {
            rkv_range_wtxn_abort(wtxn);
        }
    }
    if (rv == 0) {
        rv = rkv_range_state_load(node->store, range_id, &state);
    }
    if (rv == 0) {
        state.desc.range_id = range_id;
        rv = sim_replica_open(w, node, &state, &r);
    }
    if (rv != 0) {
        sim_fatal("creating an uninitialized replica", rv);
    }
    sim_trace(w, "uninitialized replica node=%llu range=%llu",
              (unsigned long long)node->id, (unsigned long long)range_id);
    return r;
}

static void receive_raft(struct rkv_sim_world *w, struct sim_node *node,
                         const struct sim_msg *msg)
{
    RkvRaft__Message *m;
    struct sim_replica *r;
    int rv;

    m = rkv_raft__message__unpack(NULL, msg->data_len, msg->data);
    if (m == NULL) {
        sim_fatal("decoding a raft message", RKV_EMALFORMED);
    }
    /* A range this node does not have yet: its split has not applied
     * here, or a snapshot of the left range skipped the split. Without
     * compaction only the first can happen, so drop it and Raft resends.
     * With compaction, create an uninitialized replica (range.h). */
    r = sim_replica_find(node, m->group_id);
    if (r == NULL && w->options.compact) {
        r = replica_create_uninit(w, node, m->group_id);
    }
    if (r != NULL) {
        rv = rkv_raft_step(r->raft, m);
        if (rv != 0 && rv != RKV_EMALFORMED) {
            sim_fatal("stepping a raft message", rv);
        }
    }
    rkv_raft__message__free_unpacked(m, NULL);
}

int sim_node_receive(struct rkv_sim_world *w, unsigned i,
                     const struct sim_msg *msg)
{
    struct sim_node *node = w->nodes[i];

    if (!w->up[i]) {
        return 0;
    }
    switch (msg->kind) {
    case SIM_MSG_RAFT:
        receive_raft(w, node, msg);
        break;
    case SIM_MSG_REQUEST:
        sim_receive_request(w, node, msg);
        break;
    case SIM_MSG_PROPOSE:
        sim_receive_propose(w, node, msg);
        break;
    case SIM_MSG_PROPOSE_RESULT:
        sim_receive_propose_result(w, node, msg);
        break;
    case SIM_MSG_RESPONSE:
        break;
    }
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int node_bootstrap(struct rkv_sim_world *w, struct sim_node *node)
{
    struct rkv_range_replica replicas[RKV_SIM_NODES_MAX];
    struct rkv_range_wtxn *wtxn;
    int rv;

    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        replicas[i].node_id = i + 1;
        replicas[i].replica_id = i + 1;
        replicas[i].learner = false;
    }
    rv = rkv_range_wtxn_begin(node->store, &wtxn);
    if (rv != 0) {
        return rv;
    }
    rv = rkv_range_bootstrap(wtxn, replicas, w->options.n_nodes);
    if (rv != 0) {
        rkv_range_wtxn_abort(wtxn);
        return rv;
    }
    rv = rkv_range_wtxn_commit(wtxn);
    return rv == RKV_ESTALE ? 0 : rv;
}

static int node_open_replicas(struct rkv_sim_world *w, struct sim_node *node)
{
    struct rkv_range_state *states;
    size_t n_states;
    int rv;

    rv = rkv_range_store_load(node->store, &states, &n_states);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n_states; i++) {
        rv = sim_replica_open(w, node, &states[i], NULL);
        if (rv != 0) {
            snprintf(w->errmsg, sizeof(w->errmsg),
                     "restoring range %llu on node %llu failed: %s",
                     (unsigned long long)states[i].desc.range_id,
                     (unsigned long long)node->id, rkv_strerror(rv));
            break;
        }
    }
    rkv_free(states);
    return rv;
}

int sim_node_start(struct rkv_sim_world *w, unsigned i)
{
    struct rkv_range_store_options so;
    struct sim_node *node = w->nodes[i];
    char errmsg[RKV_RANGE_ERRMSG_SIZE] = "";
    int rv;

    if (node == NULL) {
        node = sim_alloc(sizeof(*node));
        node->index = i;
        node->id = i + 1;
        snprintf(node->dir, sizeof(node->dir), "%s/node-%u", w->options.dir,
                 i + 1);
        if (mkdir(node->dir, 0700) != 0 && errno != EEXIST) {
            rkv_free(node);
            return -errno;
        }
        w->nodes[i] = node;
    }
    assert(!w->up[i]);
    memset(&so, 0, sizeof(so));
    so.path = node->dir;
    so.no_sync = true;
    /* Large enough never to grow in a run: growing waits for every read
     * transaction in the process to end. */
    so.map_size = 64u << 20;
    so.split_bytes = w->options.split_bytes;
    rv = rkv_range_store_open(&so, &node->store, errmsg);
    if (rv != 0) {
        snprintf(w->errmsg, sizeof(w->errmsg),
                 "opening the store of node %llu failed: %.200s",
                 (unsigned long long)node->id, errmsg);
        return rv;
    }
    rv = node_bootstrap(w, node);
    if (rv == 0) {
        rv = node_open_replicas(w, node);
    }
    if (rv != 0) {
        w->up[i] = true;
        sim_node_crash(w, i);
        return rv;
    }
    /* Clocks drift: each incarnation ticks at its own rate and phase. */
    node->tick_ms = (unsigned)rkv_sim_prng_between(&w->prng,
                                                   RKV_SIM_TICK_MS - 1,
                                                   RKV_SIM_TICK_MS + 1);
    node->tick_phase = (unsigned)rkv_sim_prng_below(&w->prng, node->tick_ms);
    node->disk_due_ms = 0;
    w->up[i] = true;
    return 0;
}

void sim_node_crash(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *node = w->nodes[i];

    if (node == NULL || !w->up[i]) {
        return;
    }
    /* Queued but uncommitted writes are lost. */
    while (node->disk_head != NULL) {
        struct sim_disk_job *job = node->disk_head;

        node->disk_head = job->next;
        job_free(job);
    }
    node->disk_tail = NULL;
    while (node->iprops != NULL) {
        struct sim_iprop *p = node->iprops;

        node->iprops = p->next;
        rkv_free(p);
    }
    while (node->replicas != NULL) {
        struct sim_replica *r = node->replicas;

        node->replicas = r->next;
        replica_free(r);
    }
    if (node->store != NULL) {
        rkv_range_store_close(node->store);
        node->store = NULL;
    }
    node->fail_write_at = 0;
    w->up[i] = false;
    w->restart_ms[i] = w->now_ms + rkv_sim_prng_between(&w->prng, 20, 400);
}

int sim_node_step(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *node = w->nodes[i];

    if (!w->up[i]) {
        return 0;
    }
    if (disk_commit_due(w, node) != 0) {
        return 0; /* stopped on a write error */
    }
    sim_iprops_expire(w, node);
    if ((w->now_ms + node->tick_phase) % node->tick_ms == 0) {
        for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
            int rv = rkv_raft_tick(r->raft);

            if (rv != 0) {
                sim_fatal("ticking", rv);
            }
            sim_split_maybe(w, node, r);
        }
    }
    collect_ready(w, node);
    return 0;
}

void sim_node_fail_write(struct rkv_sim_world *w, unsigned i, unsigned skip)
{
    struct sim_node *node = w->nodes[i];

    if (w->up[i]) {
        node->fail_write_at = node->n_writes + 1 + skip;
    }
}

void sim_node_view(struct rkv_sim_world *w, unsigned i, uint64_t range_id,
                   struct sim_replica_view *view)
{
    struct sim_replica *r = NULL;
    struct rkv_raft_conf conf;

    memset(view, 0, sizeof(*view));
    if (w->up[i]) {
        r = sim_replica_find(w->nodes[i], range_id);
    }
    if (r == NULL) {
        return;
    }
    view->present = true;
    view->initialized = r->initialized;
    view->is_leader = r->role == RKV_RAFT_LEADER;
    view->full_conf = sim_replica_has_every_voter(w, r);
    view->applied_index = r->applied_index;
    view->commit_index = rkv_raft_commit_index(r->raft);
    view->last_index = rkv_raft_last_index(r->raft);
    view->term = rkv_raft_term(r->raft);
    view->role = (int)rkv_raft_role(r->raft);
    view->leader_id = rkv_raft_leader(r->raft);
    rkv_raft_conf_get(r->raft, &conf);
    for (unsigned k = 0; k < conf.n_servers; k++) {
        size_t used = strlen(view->conf_text);

        snprintf(view->conf_text + used, sizeof(view->conf_text) - used,
                 "%s%llu%s", k == 0 ? "" : ",",
                 (unsigned long long)conf.servers[k].id,
                 conf.servers[k].learner ? "L" : "");
    }
}

bool sim_node_disk_busy(struct rkv_sim_world *w, unsigned i)
{
    return w->up[i] && w->nodes[i]->disk_head != NULL;
}

size_t sim_node_range_ids(struct rkv_sim_world *w, unsigned i, uint64_t *ids,
                          size_t max)
{
    size_t n = 0;

    if (!w->up[i]) {
        return 0;
    }
    for (struct sim_replica *r = w->nodes[i]->replicas; r != NULL && n < max;
         r = r->next) {
        ids[n++] = r->range_id;
    }
    return n;
}

struct rkv_range_store *sim_node_store(struct rkv_sim_world *w, unsigned i)
{
    return w->up[i] ? w->nodes[i]->store : NULL;
}

void sim_nodes_free(struct rkv_sim_world *w)
{
    for (unsigned i = 0; i < RKV_SIM_NODES_MAX; i++) {
        if (w->nodes[i] != NULL) {
            sim_node_crash(w, i);
            rkv_free(w->nodes[i]);
            w->nodes[i] = NULL;
        }
    }
}
