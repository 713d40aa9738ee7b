/*
 * The simulated nodes: each one is the production node code of node/
 * (rkv_node__new(): replicas, writer batches, splits, snapshots, client
 * requests), wired to the simulator instead of libuv:
 *   - clock: the world's simulated milliseconds;
 *   - transport: every peer message is packed into the same
 *     Rkv__Peer__Frame that TCP carries and queued on the simulated
 *     network, which may delay, drop, duplicate or reorder it. Each node
 *     also sends the per-tick liveness heartbeat of node/transport.c;
 *   - storage: a submitted writer batch waits on the simulated disk for a
 *     random latency, then commits with rkv_node__wbatch_commit() into the
 *     node's real LMDB store (opened without fsync) and goes back through
 *     rkv_node__batch_done(), as the writer thread's completion does;
 *   - clients: a request is packed into an Rkv__Rpc__Request, unpacked on
 *     delivery and handed to rkv_node__request_start(); the response comes
 *     back packed as an Rkv__Rpc__Response.
 *
 * Faults owned here:
 *   - a crash frees the node without flushing anything. The batch on the
 *     simulated disk and the batch being collected are lost, and since
 *     they were never committed, nothing in them was acknowledged;
 *   - a write error fails the Nth commit with -EIO. The node then stops
 *     through the storage's failed(), where production exits;
 *   - a full disk makes commits fail with -ENOSPC until it ends. The node
 *     finds its storage stalled and rejects new writes meanwhile.
 *
 * Every random choice comes from the world's PRNG, so a seed replays.
 */
#define RKV_LOG_SUBSYS "sim"
#include "node/node_internal.h"
#include "tests/sim/sim_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Log compaction when options.compact: entries kept below the applied
 * index (node/ compacts in steps of a tenth of it). */
#define SIM_COMPACT_KEEP 16
/* A full disk's commit is retried after this long. */
#define SIM_DISK_FULL_RETRY_MS 20
/* last_heard_ms of a peer not heard from since the node started. */
#define SIM_NEVER UINT64_MAX

struct sim_node {
    struct rkv_sim_world *w;
    unsigned index; /* 0-based */
    uint64_t id;    /* index + 1 */
    char dir[512];
    struct rkv_node *node;         /* owned; NULL when down */
    bool stopping;                 /* crash in progress: send nothing */
    bool failed;                   /* the storage stopped the node */
    struct rkv_node__wbatch *disk; /* the submitted batch; owned */
    uint64_t disk_due_ms;          /* when it commits (or retries) */
    bool stalled;                  /* its commit failed for space */
    uint64_t full_until_ms;        /* the disk is full until then */
    uint64_t n_writes;             /* commits attempted */
    uint64_t fail_write_at;        /* 0, or the commit that fails */
    unsigned tick_ms;              /* this node's clock: 9..11 ms */
    uint64_t next_tick_ms;
    uint64_t last_heard_ms[RKV_SIM_NODES_MAX]; /* by peer index */
    uint64_t epoch;                            /* incarnation: starts so far */
    uint64_t peer_epochs[RKV_SIM_NODES_MAX];   /* newest seen, by peer */
};

/* The reply target of one client request. */
struct sim_reply {
    struct rkv_node__reply_to base; /* first: the node points here */
    struct sim_node *sn;
    unsigned client_addr;
};

void sim_fatal(const char *what, int rv)
{
    fprintf(stderr, "sim: %s failed: %s\n", what, rkv_strerror(rv));
    fflush(stderr);
    abort();
}

static void *sim_alloc(size_t size)
{
    void *p = rkv_calloc(1, size);

    if (p == NULL) {
        sim_fatal("allocation", -ENOMEM);
    }
    return p;
}

static bool sim_node_is_live(const struct sim_node *sn)
{
    return sn->node != NULL && !sn->stopping && !sn->failed;
}

/* ---- clock -------------------------------------------------------------- */

static uint64_t sim_clock_now(void *data)
{
    struct sim_node *sn = data;

    return sn->w->now_ms;
}

/* ---- transport ---------------------------------------------------------- */

/* Packs frame and queues it from sn to node to_id. */
static void send_frame(struct sim_node *sn, uint64_t to_id,
                       const Rkv__Peer__Frame *frame)
{
    struct sim_msg *msg;

    if (!sim_node_is_live(sn) || to_id == 0 || to_id > sn->w->options.n_nodes ||
        to_id == sn->id) {
        return;
    }
    msg = sim_msg_new(SIM_MSG_PEER, (unsigned)sn->id, (unsigned)to_id);
    msg->epoch = sn->epoch;
    msg->data_len = rkv__peer__frame__get_packed_size(frame);
    msg->data = sim_alloc(msg->data_len + 1);
    rkv__peer__frame__pack(frame, msg->data);
    sim_net_send(sn->w, msg);
}

static void sim_send_raft(void *data, const RkvRaft__Message *msg)
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    RkvRaft__Message *messages[1] = {(RkvRaft__Message *)msg};

    frame.n_messages = 1;
    frame.messages = messages;
    send_frame(data, msg->to, &frame);
}

static int sim_send_propose(void *data, uint64_t to_node_id,
                            const Rkv__Peer__Propose *propose)
{
    struct sim_node *sn = data;
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Propose *proposes[1] = {(Rkv__Peer__Propose *)propose};

    /* As over TCP: a peer that is down has no connection to send on. */
    if (to_node_id == 0 || to_node_id > sn->w->options.n_nodes ||
        !sn->w->up[to_node_id - 1]) {
        return RKV_EUNAVAILABLE;
    }
    frame.n_proposes = 1;
    frame.proposes = proposes;
    send_frame(data, to_node_id, &frame);
    return 0;
}

static void sim_send_propose_result(void *data, uint64_t to_node_id,
                                    const Rkv__Peer__ProposeResult *result)
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__ProposeResult *results[1] = {(Rkv__Peer__ProposeResult *)result};

    frame.n_propose_results = 1;
    frame.propose_results = results;
    send_frame(data, to_node_id, &frame);
}

static void sim_send_quiesce(void *data, uint64_t to_node_id,
                             const Rkv__Peer__Quiesce *quiesce)
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Quiesce *quiesces[1] = {(Rkv__Peer__Quiesce *)quiesce};

    frame.n_quiesces = 1;
    frame.quiesces = quiesces;
    send_frame(data, to_node_id, &frame);
}

static bool sim_peer_is_live(void *data, uint64_t node_id, uint64_t within_ms)
{
    struct sim_node *sn = data;

    if (node_id == sn->id) {
        return true;
    }
    if (node_id == 0 || node_id > sn->w->options.n_nodes ||
        sn->last_heard_ms[node_id - 1] == SIM_NEVER) {
        return false;
    }
    return sn->w->now_ms < sn->last_heard_ms[node_id - 1] + within_ms;
}

static const struct rkv_node__transport_ops sim_transport_ops = {
    .send_raft = sim_send_raft,
    .send_propose = sim_send_propose,
    .send_propose_result = sim_send_propose_result,
    .send_quiesce = sim_send_quiesce,
    .peer_is_live = sim_peer_is_live,
};

/* Sends the per-tick liveness heartbeat to every other node. */
static void send_heartbeats(struct sim_node *sn)
{
    Rkv__Peer__Frame frame = RKV__PEER__FRAME__INIT;
    Rkv__Peer__Heartbeat heartbeat;
    Rkv__Peer__Heartbeat *heartbeats[1] = {&heartbeat};

    rkv_node__heartbeat_fill(sn->node, sn->node->n_ticks + 1, &heartbeat);
    frame.n_heartbeats = 1;
    frame.heartbeats = heartbeats;
    for (uint64_t id = 1; id <= sn->w->options.n_nodes; id++) {
        send_frame(sn, id, &frame);
    }
}

/* ---- storage ------------------------------------------------------------ */

static void sim_storage_submit(void *data, struct rkv_node__wbatch *b)
{
    struct sim_node *sn = data;

    assert(sn->disk == NULL);
    sn->disk = b;
    sn->disk_due_ms =
        sn->w->now_ms +
        rkv_sim_prng_between(&sn->w->prng, 1, sn->w->disk_latency_max_ms);
}

static int sim_storage_stalled(void *data)
{
    struct sim_node *sn = data;

    return sn->stalled ? RKV_ENOSPACE : 0;
}

static void sim_storage_failed(void *data, int rv)
{
    struct sim_node *sn = data;

    sim_trace(sn->w, "node=%llu stops: a disk write failed: %s",
              (unsigned long long)sn->id, rkv_strerror(rv));
    sn->failed = true;
}

static const struct rkv_node__storage_ops sim_storage_ops = {
    .submit = sim_storage_submit,
    .stalled = sim_storage_stalled,
    .failed = sim_storage_failed,
};

/* Records, for the safety checks, every entry the committed batch b
 * applied. */
static void disk_record_applied(struct sim_node *sn,
                                const struct rkv_node__wbatch *b)
{
    for (const struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        const struct rkv_raft_ready *rd = item->rd;

        if (item->replica == NULL ||
            (item->has_install && item->install.rv != 0)) {
            continue;
        }
        if (rd->n_chunks > 0 && item->has_install) {
            sn->w->report->n_snapshots++;
        }
        if (item->compact_index != 0) {
            sn->w->report->n_compactions++;
        }
        for (size_t i = 0; i < rd->n_committed; i++) {
            sim_safety_applied(sn->w, item->replica->range_id,
                               rd->committed[i]->index, rd->committed[i]->term,
                               sn->id);
        }
    }
}

/* Commits b into the node's store and records what it applied. */
static int disk_commit(struct sim_node *sn, struct rkv_node__wbatch *b)
{
    int rv = rkv_node__wbatch_commit(sn->node->store, b);

    if (rv == 0) {
        disk_record_applied(sn, b);
    }
    return rv;
}

/* Commits the submitted batch once its disk time came, and hands it back
 * to the node. */
static void disk_step(struct sim_node *sn)
{
    struct rkv_sim_world *w = sn->w;
    struct rkv_node__wbatch *b = sn->disk;

    if (b == NULL || w->now_ms < sn->disk_due_ms) {
        return;
    }
    if (w->now_ms < sn->full_until_ms) {
        /* As the writer thread does: the same batch is retried, and new
         * writes are rejected meanwhile. */
        if (!sn->stalled) {
            sim_trace(w, "node=%llu disk full: commits fail with ENOSPC",
                      (unsigned long long)sn->id);
        }
        sn->stalled = true;
        sn->disk_due_ms = w->now_ms + SIM_DISK_FULL_RETRY_MS;
        return;
    }
    if (sn->stalled) {
        sim_trace(w, "node=%llu disk has space again",
                  (unsigned long long)sn->id);
        sn->stalled = false;
    }
    sn->disk = NULL;
    sn->n_writes++;
    if (sn->fail_write_at != 0 && sn->n_writes == sn->fail_write_at) {
        sn->fail_write_at = 0;
        w->report->n_disk_errors++;
        /* The error comes either before anything reached the disk, or
         * after the commit did, as an fsync error can. */
        if (rkv_sim_prng_chance(&w->prng, 500)) {
            disk_commit(sn, b);
        }
        sim_trace(w, "disk write fails node=%llu", (unsigned long long)sn->id);
        b->rv = -EIO;
    } else {
        b->rv = disk_commit(sn, b);
    }
    rkv_node__batch_done(sn->node, b);
}

/* ---- clients ------------------------------------------------------------ */

static void sim_reply_send(struct rkv_node__reply_to *to,
                           const Rkv__Rpc__Response *response)
{
    struct sim_reply *reply = (struct sim_reply *)to;
    struct sim_node *sn = reply->sn;
    struct sim_msg *msg;
    struct sim_response *out;

    if (!sim_node_is_live(sn)) {
        return; /* a crashed node sends nothing */
    }
    msg = sim_msg_new(SIM_MSG_RESPONSE, (unsigned)sn->id, reply->client_addr);
    out = &msg->response;
    out->req_id = response->id;
    out->rv = response->error;
    out->leader_hint =
        response->has_leader_node_id ? response->leader_node_id : 0;
    if (response->result_case == RKV__RPC__RESPONSE__RESULT_GET) {
        out->found = response->get->found;
        if (response->get->has_value) {
            memcpy(out->value, response->get->value.data,
                   RKV_MIN(response->get->value.len, sizeof(out->value) - 1));
        }
    } else if (response->result_case == RKV__RPC__RESPONSE__RESULT_CAS) {
        out->found = response->cas->swapped;
    }
    sim_net_send(sn->w, msg);
}

static void sim_reply_release(struct rkv_node__reply_to *to)
{
    rkv_free(to);
}

/* Turns a simulated client request into the wire request a client would
 * send, and hands its decoded copy to the node. */
static void receive_request(struct sim_node *sn, const struct sim_msg *m)
{
    const struct sim_request *in = &m->request;
    Rkv__Rpc__Request request = RKV__RPC__REQUEST__INIT;
    Rkv__Rpc__GetRequest get = RKV__RPC__GET_REQUEST__INIT;
    Rkv__Rpc__PutRequest put = RKV__RPC__PUT_REQUEST__INIT;
    Rkv__Rpc__CasRequest cas = RKV__RPC__CAS_REQUEST__INIT;
    char key[16];
    ProtobufCBinaryData key_data;
    struct sim_reply *reply;
    Rkv__Rpc__Request *decoded;
    uint8_t *buf;
    size_t len;

    snprintf(key, sizeof(key), "k%02u", in->key);
    key_data.data = (uint8_t *)key;
    key_data.len = strlen(key);
    request.id = in->req_id;
    request.has_deadline_ms = true;
    request.deadline_ms = in->timeout_ms;
    switch (in->kind) {
    case RKV_SIM_OP_GET:
        get.key = key_data;
        request.op_case = RKV__RPC__REQUEST__OP_GET;
        request.get = &get;
        break;
    case RKV_SIM_OP_PUT:
        put.key = key_data;
        put.value.data = (uint8_t *)in->value;
        put.value.len = strlen(in->value);
        request.op_case = RKV__RPC__REQUEST__OP_PUT;
        request.put = &put;
        break;
    case RKV_SIM_OP_CAS:
        cas.key = key_data;
        cas.has_expected_value = !in->expect_absent;
        cas.expected_value.data = (uint8_t *)in->expected;
        cas.expected_value.len = strlen(in->expected);
        cas.has_new_value = true;
        cas.new_value.data = (uint8_t *)in->value;
        cas.new_value.len = strlen(in->value);
        request.op_case = RKV__RPC__REQUEST__OP_CAS;
        request.cas = &cas;
        break;
    }
    len = rkv__rpc__request__get_packed_size(&request);
    buf = sim_alloc(len + 1);
    rkv__rpc__request__pack(&request, buf);
    decoded = rkv__rpc__request__unpack(NULL, len, buf);
    rkv_free(buf);
    if (decoded == NULL) {
        sim_fatal("decoding a client request", -ENOMEM);
    }
    reply = sim_alloc(sizeof(*reply));
    reply->base.send = sim_reply_send;
    reply->base.release = sim_reply_release;
    reply->sn = sn;
    reply->client_addr = m->from;
    rkv_node__request_start(sn->node, &reply->base, decoded);
}

/* ---- peers -------------------------------------------------------------- */

/* Handles a peer frame as node/transport.c does once the peer is
 * authenticated. Each incarnation of a node talks over a connection of its
 * own: the first frame of a new one stands for the accepted Hello (which
 * wakes the quiesced ranges that peer leads or follows there), and frames
 * of an older one are lost with its connection. */
static void receive_frame(struct sim_node *sn, const struct sim_msg *m)
{
    struct rkv_node *node = sn->node;
    Rkv__Peer__Frame *frame;
    uint64_t from = m->from;

    if (m->epoch < sn->peer_epochs[from - 1]) {
        return;
    }
    if (m->epoch > sn->peer_epochs[from - 1]) {
        sn->peer_epochs[from - 1] = m->epoch;
        rkv_node__wake_ranges_of(node, from);
    }

    frame = rkv__peer__frame__unpack(NULL, m->data_len, m->data);
    if (frame == NULL) {
        sim_fatal("decoding a peer frame", RKV_EMALFORMED);
    }
    sn->last_heard_ms[from - 1] = sn->w->now_ms;
    for (size_t i = 0; i < frame->n_heartbeats; i++) {
        node->peers[from - 1].writes_blocked =
            frame->heartbeats[i]->writes_blocked;
    }
    for (size_t i = 0; i < frame->n_messages; i++) {
        const RkvRaft__Message *msg = frame->messages[i];

        if (msg->to == sn->id && msg->from == from) {
            rkv_node__deliver_raft(node, msg);
        }
    }
    for (size_t i = 0; i < frame->n_quiesces; i++) {
        rkv_node__quiesce_recv(node, from, frame->quiesces[i]);
    }
    for (size_t i = 0; i < frame->n_proposes; i++) {
        rkv_node__iprop_recv(node, from, frame->proposes[i]);
    }
    for (size_t i = 0; i < frame->n_propose_results; i++) {
        rkv_node__iprop_recv_result(node, frame->propose_results[i]);
    }
    rkv__peer__frame__free_unpacked(frame, NULL);
}

/* ---- lifecycle ---------------------------------------------------------- */

int sim_node_start(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *sn = w->nodes[i];
    char names[RKV_SIM_NODES_MAX][16];
    const char *join[RKV_SIM_NODES_MAX];
    struct rkv_node_config config;
    char errmsg[256] = "";
    int rv;

    if (sn == NULL) {
        sn = sim_alloc(sizeof(*sn));
        sn->w = w;
        sn->index = i;
        sn->id = i + 1;
        snprintf(sn->dir, sizeof(sn->dir), "%s/node-%u", w->options.dir, i + 1);
        sn->tick_ms = (unsigned)rkv_sim_prng_between(&w->prng, 9, 11);
        w->nodes[i] = sn;
    }
    assert(!w->up[i]);
    assert(sn->node == NULL);
    for (unsigned k = 0; k < w->options.n_nodes; k++) {
        snprintf(names[k], sizeof(names[k]), "sim:%u", k + 1);
        join[k] = names[k];
    }
    memset(&config, 0, sizeof(config));
    config.store_dir = sn->dir;
    config.join = join;
    config.n_join = w->options.n_nodes;
    config.node_id = sn->id;
    config.split_bytes = w->options.split_bytes;
    config.tick_ms = RKV_SIM_TICK_MS;
    config.log_compact_entries =
        w->options.compact ? SIM_COMPACT_KEEP : UINT64_MAX / 2;
    config.no_sync = true;
    rkv_log_set_thread_node_id(sn->id);
    rv = rkv_node__new(&config, rkv_sim_prng_next(&w->prng), &sn->node, errmsg,
                       sizeof(errmsg));
    if (rv != 0) {
        snprintf(w->errmsg, sizeof(w->errmsg), "starting node %llu: %.200s",
                 (unsigned long long)sn->id, errmsg);
        return rv;
    }
    sn->node->clock.now_ms = sim_clock_now;
    sn->node->clock.data = sn;
    sn->node->transport.ops = &sim_transport_ops;
    sn->node->transport.data = sn;
    sn->node->storage.ops = &sim_storage_ops;
    sn->node->storage.data = sn;
#ifdef RKV_NODE_BUGS
    sn->node->bug = (enum rkv_node__bug)w->options.bug;
#endif
    if (sn->node->cluster_id == 0) {
        /* As a Hello from a member of cluster 1 does (node/transport.c). */
        rv = rkv_node__bootstrap(sn->node, 1);
        if (rv != 0) {
            snprintf(w->errmsg, sizeof(w->errmsg), "bootstrapping node %llu",
                     (unsigned long long)sn->id);
            rkv_node__free(sn->node);
            sn->node = NULL;
            return rv;
        }
    }
    sn->stopping = false;
    sn->failed = false;
    sn->stalled = false;
    sn->full_until_ms = 0;
    sn->fail_write_at = 0;
    sn->next_tick_ms = w->now_ms + sn->tick_ms;
    for (unsigned k = 0; k < RKV_SIM_NODES_MAX; k++) {
        sn->last_heard_ms[k] = SIM_NEVER;
    }
    memset(sn->peer_epochs, 0, sizeof(sn->peer_epochs));
    sn->epoch++;
    w->up[i] = true;
    return 0;
}

/* Frees the node as a crash leaves it: what was not committed is gone. */
static void node_stop(struct sim_node *sn)
{
    sn->stopping = true;
    rkv_log_set_thread_node_id(sn->id);
    rkv_node__wbatch_free(sn->disk);
    sn->disk = NULL;
    rkv_node__free(sn->node);
    sn->node = NULL;
}

void sim_node_crash(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *sn = w->nodes[i];

    if (sn == NULL || !w->up[i]) {
        return;
    }
    /* A crash may also come after the batch on the disk committed and
     * before the node learned it: durable, but nothing acknowledged. */
    if (sn->disk != NULL && !sn->failed && w->now_ms >= sn->full_until_ms &&
        rkv_sim_prng_chance(&w->prng, 300)) {
        sim_trace(w, "node=%llu crashes after its last write committed",
                  (unsigned long long)sn->id);
        disk_commit(sn, sn->disk);
    }
    node_stop(sn);
    w->up[i] = false;
    w->restart_ms[i] = w->now_ms + rkv_sim_prng_between(&w->prng, 20, 400);
}

/* Records every leader for the one-leader-per-term check. */
static void check_leaders(struct sim_node *sn)
{
    struct rkv_node *node = sn->node;

    for (size_t b = 0; b < node->n_buckets; b++) {
        for (struct rkv_node__replica *r = node->buckets[b]; r != NULL;
             r = r->hash_next) {
            if (rkv_raft_role(r->raft) == RKV_RAFT_LEADER) {
                sim_safety_leader(sn->w, r->range_id, rkv_raft_term(r->raft),
                                  sn->id);
            }
        }
    }
}

/* A node whose storage failed stops, and restarts later like a crashed
 * one. */
static void stop_if_failed(struct rkv_sim_world *w, unsigned i)
{
    if (w->up[i] && w->nodes[i]->failed) {
        sim_node_crash(w, i);
        w->report->n_crashes++;
    }
}

int sim_node_step(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *sn = w->nodes[i];

    if (!w->up[i]) {
        return 0;
    }
    rkv_log_set_thread_node_id(sn->id);
    disk_step(sn);
    if (!sn->failed && w->now_ms >= sn->next_tick_ms) {
        sn->next_tick_ms += sn->tick_ms;
        send_heartbeats(sn);
        rkv_node__tick(sn->node);
    }
    if (!sn->failed) {
        rkv_node__collect_ready(sn->node);
        check_leaders(sn);
    }
    stop_if_failed(w, i);
    return 0;
}

int sim_node_receive(struct rkv_sim_world *w, unsigned i,
                     const struct sim_msg *msg)
{
    struct sim_node *sn = w->nodes[i];

    if (!w->up[i] || sn->failed) {
        return 0;
    }
    rkv_log_set_thread_node_id(sn->id);
    if (msg->kind == SIM_MSG_PEER) {
        receive_frame(sn, msg);
    } else if (msg->kind == SIM_MSG_REQUEST) {
        receive_request(sn, msg);
    }
    stop_if_failed(w, i);
    return 0;
}

void sim_node_fail_write(struct rkv_sim_world *w, unsigned i, unsigned skip)
{
    struct sim_node *sn = w->nodes[i];

    sn->fail_write_at = sn->n_writes + skip + 1;
}

void sim_node_fill_disk(struct rkv_sim_world *w, unsigned i,
                        uint64_t duration_ms)
{
    w->nodes[i]->full_until_ms = w->now_ms + duration_ms;
}

void sim_nodes_free(struct rkv_sim_world *w)
{
    for (unsigned i = 0; i < RKV_SIM_NODES_MAX; i++) {
        struct sim_node *sn = w->nodes[i];

        if (sn == NULL) {
            continue;
        }
        if (sn->node != NULL) {
            node_stop(sn);
        }
        rkv_free(sn);
        w->nodes[i] = NULL;
        w->up[i] = false;
    }
}

/* ---- leadership and membership ------------------------------------------ */

/* Calls fn on every replica of node i that leads an initialized range, in
 * a fixed order, until it returns true. */
static bool for_each_led(struct rkv_sim_world *w, unsigned i,
                         bool (*fn)(struct rkv_sim_world *w,
                                    struct rkv_node__replica *r, void *arg),
                         void *arg)
{
    struct rkv_node *node = w->up[i] ? w->nodes[i]->node : NULL;
    bool done = false;

    if (node == NULL || w->nodes[i]->failed) {
        return false;
    }
    rkv_log_set_thread_node_id(node->node_id);
    for (size_t b = 0; b < node->n_buckets && !done; b++) {
        for (struct rkv_node__replica *r = node->buckets[b]; r != NULL && !done;
             r = r->hash_next) {
            if (r->initialized && rkv_raft_role(r->raft) == RKV_RAFT_LEADER) {
                done = fn(w, r, arg);
            }
        }
    }
    return done;
}

static bool transfer_one(struct rkv_sim_world *w, struct rkv_node__replica *r,
                         void *arg)
{
    struct rkv_raft_conf conf;
    uint64_t voters[RKV_RAFT_MAX_SERVERS];
    size_t n_voters = 0;
    uint64_t to;

    (void)arg;
    rkv_raft_conf_get(r->raft, &conf);
    for (unsigned k = 0; k < conf.n_servers; k++) {
        if (!conf.servers[k].learner &&
            conf.servers[k].id != r->node->node_id) {
            voters[n_voters++] = conf.servers[k].id;
        }
    }
    if (n_voters == 0) {
        return false;
    }
    to = voters[rkv_sim_prng_below(&w->prng, n_voters)];
    if (rkv_node__transfer_leadership(r, to) != 0) {
        return false;
    }
    sim_trace(w, "transfer leadership range=%llu from=%llu to=%llu",
              (unsigned long long)r->range_id,
              (unsigned long long)r->node->node_id, (unsigned long long)to);
    return true;
}

bool sim_node_transfer_some(struct rkv_sim_world *w, unsigned i)
{
    return for_each_led(w, i, transfer_one, NULL);
}

/* Picks the next membership step for a group with configuration conf:
 * promote a learner, add a missing node as a learner, or (unless
 * restoring) remove a voter while at least three are left. Returns false
 * when there is nothing to do. */
static bool membership_choose(struct rkv_sim_world *w,
                              const struct rkv_raft_conf *conf, bool restore,
                              enum rkv_raft_conf_change *change,
                              uint64_t *server_id)
{
    bool member[RKV_SIM_NODES_MAX + 1] = {false};

    for (unsigned i = 0; i < conf->n_servers; i++) {
        if (conf->servers[i].learner) {
            *change = RKV_RAFT_PROMOTE;
            *server_id = conf->servers[i].id;
            return true;
        }
        if (conf->servers[i].id <= RKV_SIM_NODES_MAX) {
            member[conf->servers[i].id] = true;
        }
    }
    for (uint64_t id = 1; id <= w->options.n_nodes; id++) {
        if (!member[id]) {
            *change = RKV_RAFT_ADD_LEARNER;
            *server_id = id;
            return true;
        }
    }
    if (restore || conf->n_servers < 3) {
        return false;
    }
    *change = RKV_RAFT_REMOVE;
    *server_id =
        conf->servers[rkv_sim_prng_below(&w->prng, conf->n_servers)].id;
    return true;
}

static bool change_one(struct rkv_sim_world *w, struct rkv_node__replica *r,
                       void *arg)
{
    static const char *const names[] = {"add-learner", "promote", "remove"};
    bool restore = *(bool *)arg;
    struct rkv_raft_conf conf;
    enum rkv_raft_conf_change change;
    uint64_t server_id;
    uint64_t index;

    rkv_raft_conf_get(r->raft, &conf);
    if (!membership_choose(w, &conf, restore, &change, &server_id) ||
        rkv_node__change_replicas(r, change, server_id, &index) != 0) {
        return false;
    }
    sim_trace(w, "membership %s range=%llu server=%llu index=%llu",
              names[change], (unsigned long long)r->range_id,
              (unsigned long long)server_id, (unsigned long long)index);
    /* One change per fault; when restoring, one per range. */
    return !restore;
}

bool sim_node_change_membership(struct rkv_sim_world *w, unsigned i,
                                bool restore)
{
    return for_each_led(w, i, change_one, &restore);
}

/* ---- what the checks see ------------------------------------------------ */

void sim_node_view(struct rkv_sim_world *w, unsigned i, uint64_t range_id,
                   struct sim_replica_view *view)
{
    struct rkv_node *node = w->up[i] ? w->nodes[i]->node : NULL;
    struct rkv_node__replica *r;
    struct rkv_raft_conf conf;
    size_t len = 0;
    unsigned n_voters = 0;

    memset(view, 0, sizeof(*view));
    r = node != NULL ? rkv_node__replica_find(node, range_id) : NULL;
    if (r == NULL) {
        return;
    }
    view->present = true;
    view->initialized = r->initialized;
    view->role = (int)rkv_raft_role(r->raft);
    view->is_leader = view->role == RKV_RAFT_LEADER;
    view->applied_index = r->applied_index;
    view->commit_index = rkv_raft_commit_index(r->raft);
    view->last_index = rkv_raft_last_index(r->raft);
    view->term = rkv_raft_term(r->raft);
    view->leader_id = rkv_raft_leader(r->raft);
    view->quiesced = r->quiesced;
    view->compacted_index = r->compacted_index;
    rkv_raft_conf_get(r->raft, &conf);
    for (unsigned k = 0; k < conf.n_servers; k++) {
        n_voters += !conf.servers[k].learner;
        len += (size_t)snprintf(
            view->conf_text + len, sizeof(view->conf_text) - len, "%s%llu%s",
            k == 0 ? "" : ",", (unsigned long long)conf.servers[k].id,
            conf.servers[k].learner ? "L" : "");
        if (len >= sizeof(view->conf_text)) {
            len = sizeof(view->conf_text) - 1;
        }
    }
    view->full_conf =
        n_voters == w->options.n_nodes && conf.n_servers == n_voters;
}

bool sim_node_disk_busy(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *sn = w->nodes[i];

    return w->up[i] && (sn->disk != NULL || sn->node->next_batch != NULL);
}

static int compare_ids(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

size_t sim_node_range_ids(struct rkv_sim_world *w, unsigned i, uint64_t *ids,
                          size_t max)
{
    struct rkv_node *node = w->up[i] ? w->nodes[i]->node : NULL;
    size_t n = 0;

    if (node == NULL) {
        return 0;
    }
    for (size_t b = 0; b < node->n_buckets; b++) {
        for (struct rkv_node__replica *r = node->buckets[b]; r != NULL;
             r = r->hash_next) {
            if (r->initialized && n < max) {
                ids[n++] = r->range_id;
            }
        }
    }
    qsort(ids, n, sizeof(*ids), compare_ids);
    return n;
}

struct rkv_range_store *sim_node_store(struct rkv_sim_world *w, unsigned i)
{
    return w->up[i] ? w->nodes[i]->node->store : NULL;
}
