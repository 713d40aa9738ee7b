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
 *      apply results answer client proposals, internal proposals and
 *      splits. Reads whose ReadIndex is applied are served.
 *   2. Ticks every RKV_SIM_TICK_MS, at a per-node phase.
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
 *
 * Splits run as in node/split.c: IDLE -> ALLOC (ALLOC_RANGE_ID proposed to
 * range 1, forwarded to its leader as a PROPOSE message when that is
 * another node) -> APPLY (the split proposed to the range) -> META (the
 * meta update proposed to range 1, skipped for range 1) -> IDLE.
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"

/* A client request waiting on a replica: a proposal (by index) or a read
 * (by ReadIndex context). */
struct sim_pending {
    uint64_t index;       /* proposal: entry index; read: 0 until known */
    uint64_t term;        /* proposal: entry term */
    uint64_t ctx;         /* read: ReadIndex context */
    unsigned client_addr;
    struct sim_request request;
    struct sim_pending *next;
};

enum sim_split_state {
    SIM_SPLIT_IDLE = 0,
    SIM_SPLIT_ALLOC,
    SIM_SPLIT_APPLY,
    SIM_SPLIT_META,
};

struct sim_replica {
    uint64_t range_id;
    struct rkv_raft *raft;            /* owned */
    struct rkv_range_desc desc;
    bool initialized;
    struct rkv_range_stats stats;
    uint64_t applied_index;
    uint64_t leader_id;               /* node id; 0: unknown */
    enum rkv_raft_role role;
    struct sim_pending *proposals;    /* by index, owned */
    struct sim_pending *reads;        /* owned */
    uint64_t next_read_ctx;
    enum sim_split_state split_state;
    uint8_t split_key[RKV_RANGE_KEY_MAX];
    size_t split_key_len;
    uint64_t split_retry_ms;          /* earliest next automatic check */
    struct sim_replica *next;
};

/* The step an internal proposal performs. */
enum sim_iprop_step {
    SIM_IPROP_ALLOC = 0,  /* our split driver: allocate a range id */
    SIM_IPROP_SPLIT,      /* our split driver: the split itself */
    SIM_IPROP_META,       /* our split driver: the meta update */
    SIM_IPROP_FOR_PEER,   /* proposed here for another node's driver */
};

struct sim_iprop {
    uint64_t id;               /* world-unique */
    uint64_t range_id;         /* the range it is proposed to */
    bool local;                /* proposed here: index and term are set */
    uint64_t index;
    uint64_t term;
    enum sim_iprop_step step;
    uint64_t origin_range_id;  /* the split driver's range */
    unsigned reply_to;         /* FOR_PEER: the node address to answer */
    uint64_t deadline_ms;
    struct sim_iprop *next;
};

/* One ready batch waiting for the disk. */
struct sim_disk_job {
    struct sim_replica *replica;      /* borrowed */
    struct rkv_raft_ready *rd;        /* owned */
    uint64_t due_ms;
    struct rkv_range_entry *entries;  /* owned; converted rd->entries */
    struct rkv_range_entry *committed;           /* owned */
    struct rkv_range_apply_result *results;      /* owned */
    struct sim_disk_job *next;
};

struct sim_node {
    unsigned index;                   /* 0-based */
    uint64_t id;                      /* index + 1 */
    char dir[512];
    struct rkv_range_store *store;    /* owned; NULL when down */
    struct sim_replica *replicas;     /* owned */
    struct sim_disk_job *disk_head;   /* owned, FIFO */
    struct sim_disk_job *disk_tail;
    uint64_t disk_due_ms;             /* due time of the last job */
    uint64_t n_writes;                /* committed disk writes */
    uint64_t fail_write_at;           /* 0, or n_writes that fails */
    struct sim_iprop *iprops;         /* owned */
    unsigned tick_phase;
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

static void key_format(unsigned key, uint8_t *out, size_t *len)
{
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "k%02u", key);

    memcpy(out, buf, (size_t)n);
    *len = (size_t)n;
}

static struct sim_replica *replica_find(struct sim_node *node,
                                        uint64_t range_id)
{
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (r->range_id == range_id) {
            return r;
        }
    }
    return NULL;
}

static struct sim_replica *replica_for_key(struct sim_node *node,
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

static void respond(struct rkv_sim_world *w, struct sim_node *node,
                    unsigned client_addr, const struct sim_response *resp)
{
    struct sim_msg *msg =
        sim_msg_new(SIM_MSG_RESPONSE, (unsigned)node->id, client_addr);

    msg->response = *resp;
    sim_net_send(w, msg);
}

static void respond_error(struct rkv_sim_world *w, struct sim_node *node,
                          unsigned client_addr, uint64_t req_id, int rv,
                          uint64_t leader_hint)
{
    struct sim_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.req_id = req_id;
    resp.rv = rv;
    resp.leader_hint = leader_hint;
    respond(w, node, client_addr, &resp);
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

static int replica_open(struct rkv_sim_world *w, struct sim_node *node,
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
    rkv_raft_free(r->raft);
    rkv_free(r);
}

/* ---- reads -------------------------------------------------------------- */

/* Reads the request's key from the node's store and answers the client. */
static void serve_read(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r, unsigned client_addr,
                       const struct sim_request *req)
{
    struct rkv_range_rtxn *rtxn;
    struct sim_response resp;
    const uint8_t *value;
    size_t value_len;
    uint8_t key[16];
    size_t key_len;
    int rv;

    memset(&resp, 0, sizeof(resp));
    resp.req_id = req->req_id;
    key_format(req->key, key, &key_len);
    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        sim_fatal("beginning a read transaction", rv);
    }
    rv = rkv_range_get(rtxn, r->range_id, key, key_len, &value, &value_len);
    if (rv == 0) {
        resp.found = true;
        if (value_len >= sizeof(resp.value)) {
            sim_fatal("reading an oversized value", RKV_ETOOLARGE);
        }
        memcpy(resp.value, value, value_len);
        resp.value[value_len] = '\0';
    } else if (rv != RKV_ENOTFOUND) {
        resp.rv = rv; /* RKV_EKEYMISMATCH after a split: no effect */
    }
    rkv_range_rtxn_end(rtxn);
    respond(w, node, client_addr, &resp);
}

/* Serves every read whose index is known and applied. */
static void serve_reads(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r)
{
    struct sim_pending **link = &r->reads;

    while (*link != NULL) {
        struct sim_pending *p = *link;

        if (p->index == 0 || p->index > r->applied_index) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        serve_read(w, node, r, p->client_addr, &p->request);
        rkv_free(p);
    }
}

static void fail_reads(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r)
{
    while (r->reads != NULL) {
        struct sim_pending *p = r->reads;

        r->reads = p->next;
        respond_error(w, node, p->client_addr, p->request.req_id,
                      RKV_ENOTLEADER, r->leader_id);
        rkv_free(p);
    }
}

/* ---- internal proposals and splits -------------------------------------- */

static void split_step_done(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_iprop *p, int rv,
                            uint64_t new_range_id,
                            const struct rkv_range_apply_result *result);

static struct sim_iprop *iprop_new(struct rkv_sim_world *w,
                                   struct sim_node *node, uint64_t range_id,
                                   enum sim_iprop_step step)
{
    struct sim_iprop *p = sim_alloc(sizeof(*p));

    p->id = ++w->next_iprop_id;
    p->range_id = range_id;
    p->step = step;
    p->deadline_ms = w->now_ms + RKV_SIM_IPROP_TIMEOUT_MS;
    p->next = node->iprops;
    node->iprops = p;
    return p;
}

static void iprop_unlink(struct sim_node *node, struct sim_iprop *p)
{
    struct sim_iprop **link = &node->iprops;

    while (*link != p) {
        link = &(*link)->next;
    }
    *link = p->next;
}

/* Completes p (unlinked) and frees it. result is NULL unless p applied
 * on this node. */
static void iprop_finish(struct rkv_sim_world *w, struct sim_node *node,
                         struct sim_iprop *p, int rv, uint64_t new_range_id,
                         const struct rkv_range_apply_result *result)
{
    if (p->step == SIM_IPROP_FOR_PEER) {
        struct sim_msg *msg = sim_msg_new(SIM_MSG_PROPOSE_RESULT,
                                          (unsigned)node->id, p->reply_to);

        msg->iprop_id = p->id;
        msg->rv = rv;
        msg->new_range_id = new_range_id;
        sim_net_send(w, msg);
    } else {
        split_step_done(w, node, p, rv, new_range_id, result);
    }
    rkv_free(p);
}

/* Proposes cmd to range_id on its leader, here or on another node. */
static int iprop_submit(struct rkv_sim_world *w, struct sim_node *node,
                        uint64_t range_id, const uint8_t *cmd, size_t len,
                        enum sim_iprop_step step, uint64_t origin_range_id)
{
    struct sim_replica *r = replica_find(node, range_id);
    struct sim_iprop *p;
    struct sim_msg *msg;
    int rv;

    if (r == NULL) {
        return RKV_ERANGENOTFOUND;
    }
    if (r->role != RKV_RAFT_LEADER &&
        (r->leader_id == 0 || r->leader_id == node->id)) {
        return RKV_EUNAVAILABLE;
    }
    p = iprop_new(w, node, range_id, step);
    p->origin_range_id = origin_range_id;
    if (r->role == RKV_RAFT_LEADER) {
        rv = rkv_raft_propose(r->raft, cmd, len, &p->index, &p->term);
        if (rv != 0) {
            iprop_unlink(node, p);
            rkv_free(p);
            return rv;
        }
        p->local = true;
        return 0;
    }
    msg = sim_msg_new(SIM_MSG_PROPOSE, (unsigned)node->id,
                      (unsigned)r->leader_id);
    msg->range_id = range_id;
    msg->iprop_id = p->id;
    msg->data = rkv_memdup(cmd, len);
    if (msg->data == NULL) {
        sim_fatal("copying a proposal", -ENOMEM);
    }
    msg->data_len = len;
    sim_net_send(w, msg);
    return 0;
}

/* Matches an applied entry against this node's local internal proposals. */
static void iprops_applied(struct rkv_sim_world *w, struct sim_node *node,
                           struct sim_replica *r, uint64_t index,
                           uint64_t term,
                           const struct rkv_range_apply_result *result)
{
    struct sim_iprop **link = &node->iprops;

    while (*link != NULL) {
        struct sim_iprop *p = *link;

        if (!p->local || p->range_id != r->range_id || p->index > index) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        if (p->index == index && p->term == term) {
            iprop_finish(w, node, p, result->rv, result->new_range_id,
                         result);
        } else {
            iprop_finish(w, node, p, RKV_EDROPPED, 0, NULL);
        }
        /* A finish may add or remove proposals; walk again. */
        link = &node->iprops;
    }
}

static void iprops_expire(struct rkv_sim_world *w, struct sim_node *node)
{
    struct sim_iprop **link = &node->iprops;

    while (*link != NULL) {
        struct sim_iprop *p = *link;

        if (p->deadline_ms > w->now_ms) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        iprop_finish(w, node, p, RKV_ETIMEOUT, 0, NULL);
        link = &node->iprops;
    }
}

static void split_reset(struct rkv_sim_world *w, struct sim_replica *r)
{
    r->split_state = SIM_SPLIT_IDLE;
    r->split_retry_ms = w->now_ms + RKV_SIM_SPLIT_RETRY_MS;
}

static void split_propose_meta(struct rkv_sim_world *w, struct sim_node *node,
                               struct sim_replica *r,
                               const struct rkv_range_apply_result *result)
{
    uint8_t *cmd;
    size_t len;
    int rv;

    if (r->range_id == RKV_RANGE_ID_FIRST) {
        r->split_state = SIM_SPLIT_IDLE; /* range 1 wrote its own records */
        return;
    }
    rv = rkv_range_encode_meta_update(&result->desc, &result->right, &cmd,
                                      &len);
    if (rv != 0) {
        sim_fatal("encoding a meta update", rv);
    }
    rv = iprop_submit(w, node, RKV_RANGE_ID_FIRST, cmd, len, SIM_IPROP_META,
                      r->range_id);
    rkv_free(cmd);
    /* A stale meta record only costs clients a RKV_EKEYMISMATCH round
     * trip, so a failed update is not retried (as in node/split.c). */
    r->split_state = rv == 0 ? SIM_SPLIT_META : SIM_SPLIT_IDLE;
}

static void split_propose_split(struct rkv_sim_world *w,
                                struct sim_node *node, struct sim_replica *r,
                                uint64_t new_range_id)
{
    uint8_t *cmd;
    size_t len;
    int rv;

    rv = rkv_range_encode_split(node->store, &r->desc, r->split_key,
                                r->split_key_len, new_range_id, &cmd, &len,
                                NULL);
    if (rv != 0) {
        split_reset(w, r);
        return;
    }
    r->split_state = SIM_SPLIT_APPLY;
    rv = iprop_submit(w, node, r->range_id, cmd, len, SIM_IPROP_SPLIT,
                      r->range_id);
    rkv_free(cmd);
    if (rv != 0) {
        split_reset(w, r);
    }
}

static void split_step_done(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_iprop *p, int rv,
                            uint64_t new_range_id,
                            const struct rkv_range_apply_result *result)
{
    struct sim_replica *r = replica_find(node, p->origin_range_id);

    if (r == NULL) {
        return;
    }
    switch (p->step) {
    case SIM_IPROP_ALLOC:
        if (r->split_state != SIM_SPLIT_ALLOC) {
            return;
        }
        if (rv != 0 || r->role != RKV_RAFT_LEADER) {
            split_reset(w, r);
            return;
        }
        split_propose_split(w, node, r, new_range_id);
        return;
    case SIM_IPROP_SPLIT:
        if (r->split_state != SIM_SPLIT_APPLY) {
            return;
        }
        if (rv != 0 || result == NULL) {
            split_reset(w, r);
            return;
        }
        split_propose_meta(w, node, r, result);
        return;
    case SIM_IPROP_META:
        if (r->split_state == SIM_SPLIT_META) {
            r->split_state = SIM_SPLIT_IDLE;
        }
        return;
    case SIM_IPROP_FOR_PEER:
        break;
    }
}

/* Returns whether every node is a voter of r's group. Splits wait for it:
 * a node missing from the group would have no right-hand replica, and
 * adding it later needs a snapshot, which the simulator does not send. */
static bool replica_has_every_voter(struct rkv_sim_world *w,
                                    struct sim_replica *r)
{
    struct rkv_raft_conf conf;

    rkv_raft_conf_get(r->raft, &conf);
    if (conf.n_servers != w->options.n_nodes) {
        return false;
    }
    for (unsigned i = 0; i < conf.n_servers; i++) {
        if (conf.servers[i].learner) {
            return false;
        }
    }
    return true;
}

/* Starts a split of r when it leads and has grown past the threshold. */
static void split_maybe(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r)
{
    struct rkv_range_rtxn *rtxn;
    uint8_t *cmd;
    size_t len;
    int rv;

    if (r->role != RKV_RAFT_LEADER || !r->initialized ||
        r->split_state != SIM_SPLIT_IDLE || w->now_ms < r->split_retry_ms ||
        !rkv_range_should_split(node->store, &r->stats) ||
        !replica_has_every_voter(w, r)) {
        return;
    }
    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        sim_fatal("beginning a read transaction", rv);
    }
    rv = rkv_range_pick_split_key(rtxn, r->range_id, r->split_key,
                                  &r->split_key_len);
    rkv_range_rtxn_end(rtxn);
    if (rv != 0) {
        split_reset(w, r);
        return;
    }
    rv = rkv_range_encode_alloc_range_id(&cmd, &len);
    if (rv != 0) {
        sim_fatal("encoding a range id allocation", rv);
    }
    r->split_state = SIM_SPLIT_ALLOC;
    rv = iprop_submit(w, node, RKV_RANGE_ID_FIRST, cmd, len, SIM_IPROP_ALLOC,
                      r->range_id);
    rkv_free(cmd);
    if (rv != 0) {
        split_reset(w, r);
    }
}

/* A committed split applied here: creates the right-hand replica. */
static void split_applied(struct rkv_sim_world *w, struct sim_node *node,
                          struct sim_replica *r,
                          const struct rkv_range_apply_result *result)
{
    struct sim_replica *right;
    struct rkv_range_state state;
    int rv;

    r->desc = result->desc;
    sim_trace(w, "split node=%llu range=%llu right=%llu",
              (unsigned long long)node->id, (unsigned long long)r->range_id,
              (unsigned long long)result->right.range_id);
    right = replica_find(node, result->right.range_id);
    if (right != NULL) {
        right->desc = result->right;
        right->initialized = true;
        return;
    }
    rv = rkv_range_state_load(node->store, result->right.range_id, &state);
    if (rv == 0) {
        rv = replica_open(w, node, &state, &right);
    }
    if (rv != 0) {
        sim_fatal("creating a right-hand replica", rv);
    }
    /* The left leader campaigns at once for the right range, as node/
     * does, so leadership stays where the load was. */
    if (r->role == RKV_RAFT_LEADER) {
        rkv_raft_campaign(right->raft);
    }
}

/* ---- applying ----------------------------------------------------------- */

static void finish_proposals(struct rkv_sim_world *w, struct sim_node *node,
                             struct sim_replica *r, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result)
{
    while (r->proposals != NULL && r->proposals->index <= index) {
        struct sim_pending *p = r->proposals;
        struct sim_response resp;

        r->proposals = p->next;
        memset(&resp, 0, sizeof(resp));
        resp.req_id = p->request.req_id;
        if (p->index == index && p->term == term) {
            resp.rv = result->rv;
            resp.found = result->found;
        } else {
            resp.rv = RKV_EDROPPED;
        }
        respond(w, node, p->client_addr, &resp);
        rkv_free(p);
    }
}

static void job_applied(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_disk_job *job)
{
    struct sim_replica *r = job->replica;
    struct rkv_raft_ready *rd = job->rd;

    for (size_t i = 0; i < rd->n_committed; i++) {
        const RkvRaft__Entry *entry = rd->committed[i];
        const struct rkv_range_apply_result *result = &job->results[i];

        r->applied_index = entry->index;
        if (result->kind == RKV_RANGE_CMD_SPLIT && result->rv == 0) {
            split_applied(w, node, r, result);
        }
        iprops_applied(w, node, r, entry->index, entry->term, result);
        finish_proposals(w, node, r, entry->index, entry->term, result);
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

        if (job->rd->n_committed == 0) {
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

    /* No snapshot chunks: the simulated nodes never compact their logs. */
    assert(rd->n_chunks == 0);
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

/* Acknowledges, sends and applies the first n_jobs jobs, now durable. */
static void disk_finish(struct rkv_sim_world *w, struct sim_node *node,
                        size_t n_jobs)
{
    struct sim_disk_job *job = node->disk_head;
    int rv;

    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
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
    for (size_t i = 0; i < n_jobs; i++, job = job->next) {
        job_applied(w, node, job);
    }
    for (size_t i = 0; i < n_jobs; i++) {
        job = node->disk_head;
        node->disk_head = job->next;
        if (job->rd->n_committed > 0) {
            serve_reads(w, node, job->replica);
            split_maybe(w, node, job->replica);
        }
        job_free(job);
    }
    if (node->disk_head == NULL) {
        node->disk_tail = NULL;
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
        sim_trace(w, "leader node=%llu range=%llu term=%llu",
                  (unsigned long long)node->id,
                  (unsigned long long)r->range_id,
                  (unsigned long long)rkv_raft_term(r->raft));
    } else if (old_role == RKV_RAFT_LEADER) {
        fail_reads(w, node, r);
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
    uint64_t due = w->now_ms + rkv_sim_prng_between(&w->prng, 1, 4);

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
    serve_reads(w, node, r);
    /* NOTE: the simulated nodes never compact, so no snapshot is ever
     * requested; once compaction is simulated, chunks must be served. */
    assert(rd->n_snapshot_requests == 0);
    if (!ready_needs_disk(rd)) {
        rkv_raft_ready_free(rd);
        return;
    }
    disk_enqueue(w, node, r, rd);
}

static void collect_ready(struct rkv_sim_world *w, struct sim_node *node)
{
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (rkv_raft_has_ready(r->raft)) {
            collect_one(w, node, r);
        }
    }
}

/* ---- client requests ---------------------------------------------------- */

static int propose_request(struct rkv_sim_world *w, struct sim_node *node,
                           struct sim_replica *r, unsigned client_addr,
                           const struct sim_request *req)
{
    struct sim_pending *p;
    struct sim_pending **link;
    uint8_t key[16];
    size_t key_len;
    uint8_t *cmd;
    size_t len;
    int rv;

    key_format(req->key, key, &key_len);
    if (req->kind == RKV_SIM_OP_PUT) {
        rv = rkv_range_encode_put(node->store, key, key_len, req->value,
                                  strlen(req->value), &cmd, &len, NULL);
    } else {
        rv = rkv_range_encode_cas(
            node->store, key, key_len,
            req->expect_absent ? NULL : req->expected,
            req->expect_absent ? 0 : strlen(req->expected), req->value,
            strlen(req->value), &cmd, &len, NULL);
    }
    if (rv != 0) {
        return rv;
    }
    p = sim_alloc(sizeof(*p));
    rv = rkv_raft_propose(r->raft, cmd, len, &p->index, &p->term);
    rkv_free(cmd);
    if (rv != 0) {
        rkv_free(p);
        return rv;
    }
    if (w->options.bug == RKV_SIM_BUG_EARLY_ACK &&
        req->kind == RKV_SIM_OP_PUT) {
        /* The injected bug: acknowledged before it is committed. */
        respond_error(w, node, client_addr, req->req_id, 0, 0);
        rkv_free(p);
        return 0;
    }
    p->client_addr = client_addr;
    p->request = *req;
    link = &r->proposals;
    while (*link != NULL) {
        link = &(*link)->next;
    }
    *link = p;
    return 0;
}

static int start_read(struct sim_replica *r, unsigned client_addr,
                      const struct sim_request *req)
{
    struct sim_pending *p = sim_alloc(sizeof(*p));
    int rv;

    p->ctx = r->next_read_ctx++;
    rv = rkv_raft_read_index(r->raft, p->ctx);
    if (rv != 0) {
        rkv_free(p);
        return rv;
    }
    p->client_addr = client_addr;
    p->request = *req;
    p->next = r->reads;
    r->reads = p;
    return 0;
}

static void receive_request(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_msg *msg)
{
    const struct sim_request *req = &msg->request;
    struct sim_replica *r;
    uint8_t key[16];
    size_t key_len;
    int rv;

    key_format(req->key, key, &key_len);
    r = replica_for_key(node, key, key_len);
    if (r == NULL) {
        respond_error(w, node, msg->from, req->req_id, RKV_ERANGENOTFOUND, 0);
        return;
    }
    if (req->kind == RKV_SIM_OP_GET && w->options.bug == RKV_SIM_BUG_STALE_READ) {
        /* The injected bug: any replica serves reads from its own state. */
        serve_read(w, node, r, msg->from, req);
        return;
    }
    if (r->role != RKV_RAFT_LEADER) {
        respond_error(w, node, msg->from, req->req_id, RKV_ENOTLEADER,
                      r->leader_id);
        return;
    }
    if (req->kind == RKV_SIM_OP_GET) {
        rv = start_read(r, msg->from, req);
    } else {
        rv = propose_request(w, node, r, msg->from, req);
    }
    if (rv != 0) {
        respond_error(w, node, msg->from, req->req_id, rv, r->leader_id);
    }
}

static void receive_propose(struct rkv_sim_world *w, struct sim_node *node,
                            const struct sim_msg *msg)
{
    struct sim_replica *r = replica_find(node, msg->range_id);
    struct sim_iprop *p;
    struct sim_msg *reply;
    int rv = RKV_ENOTLEADER;

    if (r != NULL && r->role == RKV_RAFT_LEADER) {
        p = iprop_new(w, node, msg->range_id, SIM_IPROP_FOR_PEER);
        /* Answer under the requester's id. */
        p->id = msg->iprop_id;
        p->reply_to = msg->from;
        p->local = true;
        rv = rkv_raft_propose(r->raft, msg->data, msg->data_len, &p->index,
                              &p->term);
        if (rv == 0) {
            return;
        }
        iprop_unlink(node, p);
        rkv_free(p);
    }
    reply = sim_msg_new(SIM_MSG_PROPOSE_RESULT, (unsigned)node->id, msg->from);
    reply->iprop_id = msg->iprop_id;
    reply->rv = rv;
    sim_net_send(w, reply);
}

static void receive_propose_result(struct rkv_sim_world *w,
                                   struct sim_node *node,
                                   const struct sim_msg *msg)
{
    for (struct sim_iprop *p = node->iprops; p != NULL; p = p->next) {
        if (!p->local && p->id == msg->iprop_id) {
            iprop_unlink(node, p);
            iprop_finish(w, node, p, msg->rv, msg->new_range_id, NULL);
            return;
        }
    }
}

static void receive_raft(struct sim_node *node, const struct sim_msg *msg)
{
    RkvRaft__Message *m;
    struct sim_replica *r;
    int rv;

    m = rkv_raft__message__unpack(NULL, msg->data_len, msg->data);
    if (m == NULL) {
        sim_fatal("decoding a raft message", RKV_EMALFORMED);
    }
    /* A range this node does not have yet (its split has not applied
     * here): drop it, Raft resends. */
    r = replica_find(node, m->group_id);
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
        receive_raft(node, msg);
        break;
    case SIM_MSG_REQUEST:
        receive_request(w, node, msg);
        break;
    case SIM_MSG_PROPOSE:
        receive_propose(w, node, msg);
        break;
    case SIM_MSG_PROPOSE_RESULT:
        receive_propose_result(w, node, msg);
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
        rv = replica_open(w, node, &states[i], NULL);
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
    so.map_size = 8u << 20;
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
    node->tick_phase = (unsigned)rkv_sim_prng_below(&w->prng, RKV_SIM_TICK_MS);
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
    iprops_expire(w, node);
    if ((w->now_ms + node->tick_phase) % RKV_SIM_TICK_MS == 0) {
        for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
            int rv = rkv_raft_tick(r->raft);

            if (rv != 0) {
                sim_fatal("ticking", rv);
            }
            split_maybe(w, node, r);
        }
    }
    collect_ready(w, node);
    return 0;
}

bool sim_node_transfer_some(struct rkv_sim_world *w, unsigned i)
{
    struct sim_node *node = w->nodes[i];
    struct sim_replica *chosen = NULL;
    unsigned n_leading = 0;
    uint64_t to;

    if (!w->up[i]) {
        return false;
    }
    for (struct sim_replica *r = node->replicas; r != NULL; r = r->next) {
        if (r->role == RKV_RAFT_LEADER) {
            n_leading++;
            if (rkv_sim_prng_below(&w->prng, n_leading) == 0) {
                chosen = r;
            }
        }
    }
    if (chosen == NULL || w->options.n_nodes < 2) {
        return false;
    }
    do {
        to = rkv_sim_prng_between(&w->prng, 1, w->options.n_nodes);
    } while (to == node->id);
    if (rkv_raft_transfer_leadership(chosen->raft, to) != 0) {
        return false;
    }
    sim_trace(w, "transfer leadership range=%llu from=%llu to=%llu",
              (unsigned long long)chosen->range_id,
              (unsigned long long)node->id, (unsigned long long)to);
    return true;
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
    *server_id = conf->servers[rkv_sim_prng_below(&w->prng, conf->n_servers)]
                     .id;
    return true;
}

bool sim_node_change_membership(struct rkv_sim_world *w, unsigned i,
                                bool restore)
{
    static const char *const names[] = {"add-learner", "promote", "remove"};
    struct rkv_raft_conf conf;
    enum rkv_raft_conf_change change;
    uint64_t server_id;
    uint64_t index;
    uint64_t term;
    bool changed = false;

    if (!w->up[i]) {
        return false;
    }
    for (struct sim_replica *r = w->nodes[i]->replicas; r != NULL;
         r = r->next) {
        if (r->role != RKV_RAFT_LEADER) {
            continue;
        }
        rkv_raft_conf_get(r->raft, &conf);
        if (!membership_choose(w, &conf, restore, &change, &server_id)) {
            continue;
        }
        if (rkv_raft_propose_conf_change(r->raft, change, server_id, &index,
                                         &term) != 0) {
            continue;
        }
        sim_trace(w, "membership %s range=%llu server=%llu index=%llu",
                  names[change], (unsigned long long)r->range_id,
                  (unsigned long long)server_id, (unsigned long long)index);
        changed = true;
        if (!restore) {
            break; /* one change per fault */
        }
    }
    return changed;
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

    memset(view, 0, sizeof(*view));
    if (w->up[i]) {
        r = replica_find(w->nodes[i], range_id);
    }
    if (r == NULL) {
        return;
    }
    view->present = true;
    view->initialized = r->initialized;
    view->is_leader = r->role == RKV_RAFT_LEADER;
    view->full_conf = replica_has_every_voter(w, r);
    view->applied_index = r->applied_index;
    view->commit_index = rkv_raft_commit_index(r->raft);
    view->last_index = rkv_raft_last_index(r->raft);
    view->term = rkv_raft_term(r->raft);
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
