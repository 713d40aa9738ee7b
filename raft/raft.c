/*
 * The replica object: creation from durable state, the public entry points
 * that dispatch to the election, replication, snapshot and membership
 * files, and the ready/ack batching that carries work to the caller.
 *
 * Ready/ack: every output accumulates in the replica until rkv_raft_ready()
 * moves it into a batch. Each batch that wrote log entries or a hard state
 * is remembered until rkv_raft_ack() reports it durable. Only then does
 * persisted_index advance, which a leader counts for itself and which
 * bounds what is applied. The same holds for durable_term, which decides
 * whether a leader's messages may leave before their batch is durable.
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

void rkv_raft_config_init(struct rkv_raft_config *config, uint64_t id,
                          uint64_t group_id, uint64_t seed)
{
    memset(config, 0, sizeof(*config));
    config->id = id;
    config->group_id = group_id;
    config->election_ticks = 10;
    config->heartbeat_ticks = 1;
    config->rand_state = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
    config->pre_vote = true;
    config->check_quorum = true;
    config->inflight_entries_max = 1024;
    config->inflight_bytes_max = 8 * 1024 * 1024;
    config->append_bytes_max = 1024 * 1024;
    config->chunk_bytes_max = RKV_RAFT_CHUNK_BYTES_DEFAULT;
    config->uncommitted_bytes_max = 64 * 1024 * 1024;
}

/* xorshift64* (Vigna, 2014): deterministic per replica, no global state. */
uint64_t rkv_raft__random(struct rkv_raft *r)
{
    uint64_t x = r->rand_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rand_state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static bool config_is_valid(const struct rkv_raft_config *config)
{
    return config->id != 0 && config->election_ticks > 0 &&
           config->heartbeat_ticks > 0 &&
           config->heartbeat_ticks < config->election_ticks &&
           config->rand_state != 0 && config->inflight_entries_max > 0 &&
           config->inflight_bytes_max > 0 && config->append_bytes_max > 0 &&
           config->chunk_bytes_max > 0 && config->uncommitted_bytes_max > 0;
}

static int new_load_entries(struct rkv_raft *r,
                            const struct rkv_raft_boot *boot)
{
    int rv;

    for (size_t i = 0; i < boot->n_entries; i++) {
        const RkvRaft__Entry *entry = boot->entries[i];

        if (entry->index != rkv_raft__last_index(r) + 1 ||
            entry->term < rkv_raft__last_term(r) ||
            entry->term > boot->hard_state.term) {
            return -EINVAL;
        }
        rv = rkv_raft__log_append(r, entry->term, entry->type,
                                  entry->data.data, entry->data.len);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int rkv_raft_new(const struct rkv_raft_config *config,
                 const struct rkv_raft_boot *boot, struct rkv_raft **out)
{
    struct rkv_raft *r;
    uint64_t last_index;
    int rv;

    assert(config != NULL);
    assert(boot != NULL);

    if (!config_is_valid(config)) {
        return -EINVAL;
    }
    r = rkv_calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->config = *config;
    r->rand_state = config->rand_state;
    r->log.snap_index = boot->snapshot.index;
    r->log.snap_term = boot->snapshot.term;
    r->log.snap_conf = boot->snapshot.conf;

    rv = new_load_entries(r, boot);
    if (rv != 0) {
        goto err_after_alloc;
    }
    last_index = rkv_raft__last_index(r);
    if (boot->applied < boot->snapshot.index || boot->applied > last_index ||
        boot->hard_state.commit > last_index) {
        rv = -EINVAL;
        goto err_after_alloc;
    }
    r->term = boot->hard_state.term;
    r->vote = boot->hard_state.vote;
    r->commit = RKV_MAX(boot->hard_state.commit, boot->applied);
    r->hs_emitted = boot->hard_state;
    r->applied = boot->applied;
    r->persisted_index = last_index;
    r->durable_term = r->term;
    r->unstable_index = last_index + 1;

    rv = rkv_raft__conf_reload(r);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rkv_raft__become_follower(r, r->term, 0);
    r->role_changed = false;
    RKV_LOG(RKV_DEBUG,
            "started range=%llu id=%llu term=%llu commit=%llu last=%llu",
            (unsigned long long)config->group_id,
            (unsigned long long)config->id, (unsigned long long)r->term,
            (unsigned long long)r->commit, (unsigned long long)last_index);
    *out = r;
    return 0;

err_after_alloc:
    rkv_raft__log_free(r);
    rkv_free(r);
    assert(rv != 0);
    return rv;
}

static void msgs_clear(struct rkv_raft_msgs *msgs)
{
    for (size_t i = 0; i < msgs->n; i++) {
        rkv_raft__msg_free(msgs->items[i]);
    }
    rkv_free(msgs->items);
    memset(msgs, 0, sizeof(*msgs));
}

static void chunks_free(struct rkv_raft_snapshot_chunk *chunks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rkv_free(chunks[i].data);
    }
    rkv_free(chunks);
}

void rkv_raft_free(struct rkv_raft *r)
{
    if (r == NULL) {
        return;
    }
    rkv_raft__log_free(r);
    rkv_raft__progress_free(r);
    msgs_clear(&r->msgs);
    msgs_clear(&r->msgs_after);
    chunks_free(r->chunks, r->n_chunks);
    rkv_free(r->reads);
    rkv_free(r->reads_done);
    rkv_free(r->snap_requests);
    rkv_free(r->batches);
    rkv_free(r);
}

/* ---- messages ----------------------------------------------------------- */

RkvRaft__Message *rkv_raft__msg_new(const struct rkv_raft *r,
                                    RkvRaft__MessageType type, uint64_t to)
{
    RkvRaft__Message *msg;

    msg = rkv_malloc(sizeof(*msg));
    if (msg == NULL) {
        return NULL;
    }
    rkv_raft__message__init(msg);
    msg->group_id = r->config.group_id;
    msg->type = type;
    msg->from = r->config.id;
    msg->to = to;
    msg->term = r->term;
    return msg;
}

void rkv_raft__msg_free(RkvRaft__Message *msg)
{
    if (msg == NULL) {
        return;
    }
    for (size_t i = 0; i < msg->n_entries; i++) {
        rkv_raft__entry_free(msg->entries[i]);
    }
    rkv_free(msg->entries);
    rkv_raft__conf_pb_free(msg->snap_conf);
    rkv_free(msg->chunk.data);
    rkv_free(msg);
}

static int msgs_push(struct rkv_raft_msgs *msgs, RkvRaft__Message *msg)
{
    if (msgs->n == msgs->cap) {
        size_t cap = msgs->cap == 0 ? 8 : msgs->cap * 2;
        RkvRaft__Message **grown;

        grown = rkv_realloc(msgs->items, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        msgs->items = grown;
        msgs->cap = cap;
    }
    msgs->items[msgs->n++] = msg;
    return 0;
}

/*
 * A leader's own requests may leave before the batch is durable, because
 * they depend only on its term, and that term is durable once an ack
 * covered it (the votes that elected it were sent after persisting). A
 * follower's heartbeat response depends on no more than that: it carries
 * the term and echoes the ReadIndex round, and acknowledges no entries.
 * Sending it at once spares a durable write per ReadIndex round on every
 * follower. All other messages acknowledge entries, grant votes or
 * request them, so they wait.
 */
static bool msg_may_precede_persist(const struct rkv_raft *r,
                                    const RkvRaft__Message *msg)
{
    if (r->durable_term != r->term) {
        return false;
    }
    switch (msg->type) {
    case RKV_RAFT__MESSAGE_TYPE__MSG_APPEND:
    case RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT:
    case RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT:
    case RKV_RAFT__MESSAGE_TYPE__MSG_TIMEOUT_NOW:
        return r->role == RKV_RAFT_LEADER;
    case RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT_RESP:
        return true;
    default:
        return false;
    }
}

int rkv_raft__send(struct rkv_raft *r, RkvRaft__Message *msg)
{
    struct rkv_raft_msgs *list;
    int rv;

    assert(msg->to != r->config.id);

    list = msg_may_precede_persist(r, msg) ? &r->msgs : &r->msgs_after;
    rv = msgs_push(list, msg);
    if (rv != 0) {
        rkv_raft__msg_free(msg);
    }
    return rv;
}

/* ---- configuration helpers ---------------------------------------------- */

const struct rkv_raft_server *rkv_raft__conf_find(
    const struct rkv_raft_conf *conf, uint64_t id)
{
    for (unsigned i = 0; i < conf->n_servers; i++) {
        if (conf->servers[i].id == id) {
            return &conf->servers[i];
        }
    }
    return NULL;
}

bool rkv_raft__is_voter(const struct rkv_raft_conf *conf, uint64_t id)
{
    const struct rkv_raft_server *server = rkv_raft__conf_find(conf, id);

    return server != NULL && !server->learner;
}

/*
 * Voters campaign, and so do servers that their latest configuration
 * removed: until that removal commits the group may still need them to
 * lead (thesis 4.2.2, the removal of S1 from a two-server cluster). They
 * do not count their own vote. Learners never campaign, and neither does
 * a new replica whose configuration is still empty.
 */
bool rkv_raft__may_campaign(const struct rkv_raft *r)
{
    const struct rkv_raft_server *self =
        rkv_raft__conf_find(&r->conf, r->config.id);

    if (self != NULL) {
        return !self->learner;
    }
    return rkv_raft__n_voters(&r->conf) > 0;
}

unsigned rkv_raft__n_voters(const struct rkv_raft_conf *conf)
{
    unsigned n = 0;

    for (unsigned i = 0; i < conf->n_servers; i++) {
        if (!conf->servers[i].learner) {
            n++;
        }
    }
    return n;
}

/* ---- inputs ------------------------------------------------------------- */

int rkv_raft_tick(struct rkv_raft *r)
{
    if (r->role == RKV_RAFT_LEADER) {
        return rkv_raft__tick_leader(r);
    }
    return rkv_raft__tick_election(r);
}

static bool msg_is_from_leader(const RkvRaft__Message *msg)
{
    return msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_APPEND ||
           msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT ||
           msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT ||
           msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_TIMEOUT_NOW;
}

/* A request from a leader of an older term gets a rejection carrying our
 * term, which makes that stale leader step down (thesis 3.4). */
static int step_stale(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    RkvRaft__MessageType type;
    RkvRaft__Message *resp;

    if (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE) {
        type = RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE_RESP;
    } else if (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_APPEND ||
               msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT) {
        type = RKV_RAFT__MESSAGE_TYPE__MSG_APPEND_RESP;
    } else {
        return 0;
    }
    resp = rkv_raft__msg_new(r, type, msg->from);
    if (resp == NULL) {
        return -ENOMEM;
    }
    resp->reject = true;
    resp->index = msg->prev_log_index;
    resp->last_log_index = rkv_raft__last_index(r);
    return rkv_raft__send(r, resp);
}

/* Applies the term rules every message goes through before its handler:
 * returns 1 when the message is to be dropped here. */
static int step_term(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    bool is_vote = msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_VOTE ||
                   msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE;
    int rv;

    if (msg->term > r->term) {
        /* Thesis 4.2.3: within the lease of a current leader a vote
         * request neither raises our term nor gets a vote. */
        if (is_vote && !msg->transfer && rkv_raft__in_lease(r)) {
            return 1;
        }
        if (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE) {
            return 0;
        }
        if (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE_RESP &&
            !msg->reject) {
            return 0;
        }
        if (msg_is_from_leader(msg) || r->role != RKV_RAFT_FOLLOWER) {
            rkv_raft__become_follower(
                r, msg->term, msg_is_from_leader(msg) ? msg->from : 0);
        } else {
            /* Thesis Figure 3.1: only a leader's message or a granted vote
             * resets a follower's election timer, so a candidate that
             * cannot win does not keep everyone else from campaigning. */
            rkv_raft__adopt_term(r, msg->term);
        }
        return 0;
    }
    if (msg->term < r->term) {
        rv = step_stale(r, msg);
        return rv != 0 ? rv : 1;
    }
    return 0;
}

int rkv_raft_step(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    int rv;

    assert(msg != NULL);

    if (msg->to != r->config.id || msg->from == 0 ||
        msg->from == r->config.id) {
        return RKV_EMALFORMED;
    }
    rv = step_term(r, msg);
    if (rv != 0) {
        return rv < 0 ? rv : 0;
    }
    switch (msg->type) {
    case RKV_RAFT__MESSAGE_TYPE__MSG_VOTE:
    case RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE:
        return rkv_raft__step_vote(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_VOTE_RESP:
    case RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE_RESP:
        return rkv_raft__step_vote_resp(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_APPEND:
        return rkv_raft__step_append(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_APPEND_RESP:
        return rkv_raft__step_append_resp(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT:
        return rkv_raft__step_heartbeat(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT_RESP:
        return rkv_raft__step_heartbeat_resp(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT:
        return rkv_raft__step_snapshot(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT_RESP:
        return rkv_raft__step_snapshot_resp(r, msg);
    case RKV_RAFT__MESSAGE_TYPE__MSG_TIMEOUT_NOW:
        return rkv_raft__step_timeout_now(r, msg);
    default:
        return RKV_EMALFORMED;
    }
}

int rkv_raft_propose(struct rkv_raft *r, const void *data, size_t len,
                     uint64_t *index, uint64_t *term)
{
    int rv;

    if (r->role != RKV_RAFT_LEADER) {
        return RKV_ENOTLEADER;
    }
    if (r->transfer_to != 0) {
        return RKV_EBUSY;
    }
    /* An empty backlog always takes one entry, however large. */
    if (r->uncommitted_bytes > 0 &&
        r->uncommitted_bytes + len > r->config.uncommitted_bytes_max) {
        return RKV_EBUSY;
    }
    rv = rkv_raft__log_append(r, r->term, RKV_RAFT__ENTRY_TYPE__ENTRY_NORMAL,
                              data, len);
    if (rv != 0) {
        return rv;
    }
    r->uncommitted_bytes += len;
    *index = rkv_raft__last_index(r);
    *term = r->term;

    /* The entry is in the log now, so the proposal succeeded even if no
     * append could be queued; heartbeat responses trigger the resend. */
    rv = rkv_raft__broadcast_append(r);
    if (rv != 0) {
        RKV_LOG(RKV_WARN,
                "queueing appends failed range=%llu index=%llu: %s",
                (unsigned long long)r->config.group_id,
                (unsigned long long)*index, rkv_strerror(rv));
    }
    return 0;
}

int rkv_raft_campaign(struct rkv_raft *r)
{
    if (!rkv_raft__may_campaign(r)) {
        return -EINVAL;
    }
    if (r->role == RKV_RAFT_LEADER) {
        return 0;
    }
    return rkv_raft__campaign(r, r->config.pre_vote, false);
}

int rkv_raft_compact(struct rkv_raft *r, uint64_t index)
{
    if (index > r->applied) {
        return -EINVAL;
    }
    if (index <= r->log.snap_index) {
        return 0;
    }
    rkv_raft__log_compact(r, index);
    RKV_LOG(RKV_DEBUG, "compacted range=%llu id=%llu index=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id, (unsigned long long)index);
    return 0;
}

/* ---- queries ------------------------------------------------------------ */

uint64_t rkv_raft_id(const struct rkv_raft *r)
{
    return r->config.id;
}

enum rkv_raft_role rkv_raft_role(const struct rkv_raft *r)
{
    return r->role;
}

uint64_t rkv_raft_term(const struct rkv_raft *r)
{
    return r->term;
}

uint64_t rkv_raft_leader(const struct rkv_raft *r)
{
    return r->leader_id;
}

uint64_t rkv_raft_commit_index(const struct rkv_raft *r)
{
    return r->commit;
}

uint64_t rkv_raft_applied_index(const struct rkv_raft *r)
{
    return r->applied;
}

uint64_t rkv_raft_last_index(const struct rkv_raft *r)
{
    return rkv_raft__last_index(r);
}

uint64_t rkv_raft_first_index(const struct rkv_raft *r)
{
    return r->log.snap_index + 1;
}

int rkv_raft_term_at(const struct rkv_raft *r, uint64_t index,
                     uint64_t *term)
{
    if (index < r->log.snap_index) {
        return RKV_ECOMPACTED;
    }
    if (index > rkv_raft__last_index(r)) {
        return RKV_ENOTFOUND;
    }
    *term = rkv_raft__term(r, index);
    return 0;
}

uint64_t rkv_raft_match_index(const struct rkv_raft *r, uint64_t id)
{
    if (r->role != RKV_RAFT_LEADER) {
        return 0;
    }
    if (id == r->config.id) {
        return r->persisted_index;
    }
    for (unsigned i = 0; i < r->n_progress; i++) {
        if (r->progress[i].id == id) {
            return r->progress[i].match_index;
        }
    }
    return 0;
}

void rkv_raft_conf_get(const struct rkv_raft *r, struct rkv_raft_conf *conf)
{
    *conf = r->conf;
}

bool rkv_raft_is_idle(const struct rkv_raft *r)
{
    uint64_t last_index = rkv_raft__last_index(r);

    if (r->role != RKV_RAFT_LEADER || r->transfer_to != 0 ||
        r->n_reads > 0 || r->commit != last_index ||
        r->applied != last_index || r->persisted_index != last_index) {
        return false;
    }
    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct rkv_raft_progress *pr = &r->progress[i];

        if (pr->id == r->config.id) {
            continue;
        }
        if (pr->match_index != last_index ||
            pr->state == RKV_RAFT_SNAPSHOT) {
            return false;
        }
    }
    return !rkv_raft_has_ready(r);
}
