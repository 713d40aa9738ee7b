/*
 * Log replication on the leader (progress tracking, pipelined appends,
 * heartbeats, commit) and its follower side (append handling with
 * conflict truncation), plus ReadIndex and the leader's tick.
 *
 * Per-follower progress moves between three states:
 *   PROBE      -> REPLICATE  an append succeeds (step_append_resp)
 *   REPLICATE  -> PROBE      an append is rejected (step_append_resp)
 *   PROBE/REPLICATE -> SNAPSHOT  the entries it needs are compacted
 *                               (rkv_raft__snapshot_start)
 *   SNAPSHOT   -> PROBE      the snapshot is installed (raft_snapshot.c)
 * In PROBE one append is outstanding at a time; in REPLICATE appends are
 * pipelined until inflight_entries_max entries or inflight_bytes_max bytes
 * are unacknowledged (the flow control of etcd raft's Inflights, counted
 * in entries).
 *
 * Invariants:
 *   1. match_index <= next_index - 1 for every progress.
 *   2. commit only advances to an index of the current term stored on a
 *      quorum of voters, the leader counting itself only up to what its
 *      own storage acknowledged (thesis 3.6.2 and 10.2.1).
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

/* Per-entry byte charge beyond its data, so that empty entries count. */
#define ENTRY_OVERHEAD_BYTES 16

unsigned rkv_raft__quorum(const struct rkv_raft *r)
{
    return rkv_raft__n_voters(&r->conf) / 2 + 1;
}

/* ---- progress ----------------------------------------------------------- */

struct rkv_raft_progress *rkv_raft__progress(struct rkv_raft *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n_progress; i++) {
        if (r->progress[i].id == id) {
            return &r->progress[i];
        }
    }
    return NULL;
}

static void progress_init(struct rkv_raft *r, struct rkv_raft_progress *pr,
                          uint64_t id)
{
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->next_index = rkv_raft__last_index(r) + 1;
    pr->state = RKV_RAFT_PROBE;
}

static void progress_release(struct rkv_raft_progress *pr)
{
    rkv_free(pr->inflight);
    pr->inflight = NULL;
    pr->cap_inflight = 0;
    pr->n_inflight = 0;
}

void rkv_raft__progress_free(struct rkv_raft *r)
{
    for (unsigned i = 0; i < r->n_progress; i++) {
        progress_release(&r->progress[i]);
    }
    r->n_progress = 0;
}

/* Makes progress[] list exactly the servers of conf, keeping what is
 * known about servers already present. */
int rkv_raft__progress_reset(struct rkv_raft *r)
{
    struct rkv_raft_progress kept[RKV_RAFT_MAX_SERVERS];
    unsigned n_kept = 0;

    for (unsigned i = 0; i < r->n_progress; i++) {
        if (rkv_raft__conf_find(&r->conf, r->progress[i].id) != NULL) {
            kept[n_kept++] = r->progress[i];
        } else {
            progress_release(&r->progress[i]);
        }
    }
    r->n_progress = 0;
    for (unsigned i = 0; i < r->conf.n_servers; i++) {
        uint64_t id = r->conf.servers[i].id;
        struct rkv_raft_progress *pr = &r->progress[r->n_progress++];
        bool found = false;

        for (unsigned j = 0; j < n_kept; j++) {
            if (kept[j].id == id) {
                *pr = kept[j];
                found = true;
            }
        }
        if (!found) {
            progress_init(r, pr, id);
        }
    }
    return 0;
}

static bool inflight_full(const struct rkv_raft *r,
                          const struct rkv_raft_progress *pr)
{
    return pr->inflight_entries >= r->config.inflight_entries_max ||
           pr->inflight_bytes_total >= r->config.inflight_bytes_max;
}

/* Doubles the ring, moving its contents to the start. */
static int inflight_grow(struct rkv_raft_progress *pr)
{
    unsigned cap = pr->cap_inflight == 0 ? 8 : pr->cap_inflight * 2;
    struct rkv_raft_inflight *grown;

    grown = rkv_calloc(cap, sizeof(*grown));
    if (grown == NULL) {
        return -ENOMEM;
    }
    for (unsigned k = 0; k < pr->n_inflight; k++) {
        grown[k] = pr->inflight[(pr->inflight_head + k) % pr->cap_inflight];
    }
    rkv_free(pr->inflight);
    pr->inflight = grown;
    pr->cap_inflight = cap;
    pr->inflight_head = 0;
    return 0;
}

static int inflight_add(struct rkv_raft_progress *pr, uint64_t last_index,
                        uint64_t n_entries, uint64_t bytes)
{
    struct rkv_raft_inflight *slot;
    int rv;

    if (pr->n_inflight == pr->cap_inflight) {
        rv = inflight_grow(pr);
        if (rv != 0) {
            return rv;
        }
    }
    slot =
        &pr->inflight[(pr->inflight_head + pr->n_inflight) % pr->cap_inflight];
    slot->last_index = last_index;
    slot->n_entries = n_entries;
    slot->bytes = bytes;
    pr->n_inflight++;
    pr->inflight_entries += n_entries;
    pr->inflight_bytes_total += bytes;
    return 0;
}

static void inflight_pop(struct rkv_raft_progress *pr)
{
    const struct rkv_raft_inflight *oldest = &pr->inflight[pr->inflight_head];

    assert(pr->n_inflight > 0);

    pr->inflight_entries -= oldest->n_entries;
    pr->inflight_bytes_total -= oldest->bytes;
    pr->inflight_head = (pr->inflight_head + 1) % pr->cap_inflight;
    pr->n_inflight--;
}

/* Frees the appends whose entries the follower acknowledged. */
static void inflight_free_to(struct rkv_raft_progress *pr, uint64_t index)
{
    while (pr->n_inflight > 0 &&
           pr->inflight[pr->inflight_head].last_index <= index) {
        inflight_pop(pr);
    }
}

static void inflight_reset(struct rkv_raft_progress *pr)
{
    pr->inflight_head = 0;
    pr->n_inflight = 0;
    pr->inflight_entries = 0;
    pr->inflight_bytes_total = 0;
}

void rkv_raft__progress_probe(struct rkv_raft_progress *pr, uint64_t next_index)
{
    pr->state = RKV_RAFT_PROBE;
    pr->probe_sent = false;
    pr->next_index = RKV_MAX(next_index, pr->match_index + 1);
    inflight_reset(pr);
}

static void progress_replicate(struct rkv_raft_progress *pr)
{
    pr->state = RKV_RAFT_REPLICATE;
    pr->next_index = pr->match_index + 1;
    inflight_reset(pr);
}

/* ---- sending ------------------------------------------------------------ */

/* Copies into msg the entries from next_index on, at most max_entries and
 * append_bytes_max bytes (but at least one); stores the charged bytes in
 * *bytes. */
static int append_fill(struct rkv_raft *r, RkvRaft__Message *msg,
                       uint64_t next_index, uint64_t max_entries,
                       uint64_t *bytes)
{
    uint64_t last_index = rkv_raft__last_index(r);

    *bytes = 0;
    if (next_index > last_index) {
        return 0;
    }
    last_index = RKV_MIN(last_index, next_index + max_entries - 1);
    max_entries = last_index - next_index + 1;
    msg->entries = rkv_calloc(max_entries, sizeof(*msg->entries));
    if (msg->entries == NULL) {
        return -ENOMEM;
    }
    for (uint64_t i = next_index; i <= last_index; i++) {
        const RkvRaft__Entry *entry = rkv_raft__entry(r, i);

        /* Always send one entry, even one past the budget. */
        if (msg->n_entries > 0 &&
            *bytes + entry->data.len > r->config.append_bytes_max) {
            break;
        }
        msg->entries[msg->n_entries] = rkv_raft__entry_copy(entry);
        if (msg->entries[msg->n_entries] == NULL) {
            return -ENOMEM;
        }
        msg->n_entries++;
        *bytes += entry->data.len + ENTRY_OVERHEAD_BYTES;
    }
    return 0;
}

/* Sends one append to pr if its state allows, setting *sent when one with
 * entries was queued. With allow_empty, an append without entries goes out
 * when there is nothing new, to carry the commit index or to probe after
 * lost messages. */
static int send_append_once(struct rkv_raft *r, struct rkv_raft_progress *pr,
                            bool allow_empty, bool *sent)
{
    uint64_t prev_index = pr->next_index - 1;
    uint64_t window;
    uint64_t bytes;
    RkvRaft__Message *msg;
    int rv;

    *sent = false;
    if (pr->id == r->config.id || pr->state == RKV_RAFT_SNAPSHOT) {
        return 0;
    }
    if (pr->state == RKV_RAFT_PROBE && pr->probe_sent) {
        return 0;
    }
    if (pr->state == RKV_RAFT_REPLICATE && inflight_full(r, pr)) {
        return 0;
    }
    if (prev_index < r->log.snap_index) {
        /* The entries it needs are compacted (thesis 5.1). */
        return rkv_raft__snapshot_start(r, pr);
    }
    if (pr->next_index > rkv_raft__last_index(r) && !allow_empty &&
        pr->state == RKV_RAFT_REPLICATE) {
        return 0;
    }
    msg = rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_APPEND, pr->id);
    if (msg == NULL) {
        return -ENOMEM;
    }
    msg->prev_log_index = prev_index;
    msg->prev_log_term = rkv_raft__term(r, prev_index);
    msg->commit = r->commit;
    /* In REPLICATE an append takes at most the window left. */
    window = pr->state == RKV_RAFT_REPLICATE
                 ? r->config.inflight_entries_max - pr->inflight_entries
                 : r->config.inflight_entries_max;
    rv = append_fill(r, msg, pr->next_index, RKV_MAX(window, 1), &bytes);
    if (rv != 0) {
        rkv_raft__msg_free(msg);
        return rv;
    }
    if (pr->state == RKV_RAFT_REPLICATE && msg->n_entries > 0) {
        rv = inflight_add(pr, prev_index + msg->n_entries, msg->n_entries,
                          bytes);
        if (rv != 0) {
            rkv_raft__msg_free(msg);
            return rv;
        }
        pr->next_index = prev_index + msg->n_entries + 1;
    } else if (pr->state == RKV_RAFT_PROBE) {
        pr->probe_sent = true;
    }
    *sent = msg->n_entries > 0;
    return rkv_raft__send(r, msg);
}

static int send_appends(struct rkv_raft *r, struct rkv_raft_progress *pr,
                        bool allow_empty)
{
    bool sent = true;
    int rv;

    /* Pipelining: keep sending while REPLICATE has window left. */
    rv = send_append_once(r, pr, allow_empty, &sent);
    while (rv == 0 && sent && pr->state == RKV_RAFT_REPLICATE) {
        rv = send_append_once(r, pr, false, &sent);
    }
    return rv;
}

int rkv_raft__send_append(struct rkv_raft *r, struct rkv_raft_progress *pr)
{
    return send_appends(r, pr, false);
}

int rkv_raft__broadcast_append(struct rkv_raft *r)
{
    int rv;

    for (unsigned i = 0; i < r->n_progress; i++) {
        rv = send_appends(r, &r->progress[i], false);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* After commit advances, followers learn it from an append (empty when
 * nothing new is queued), so they can apply without waiting for the next
 * heartbeat. */
static int broadcast_commit(struct rkv_raft *r)
{
    int rv;

    for (unsigned i = 0; i < r->n_progress; i++) {
        rv = send_appends(r, &r->progress[i], true);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int rkv_raft__broadcast_heartbeat(struct rkv_raft *r)
{
    int rv;

    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct rkv_raft_progress *pr = &r->progress[i];
        RkvRaft__Message *msg;

        if (pr->id == r->config.id) {
            continue;
        }
        msg =
            rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT, pr->id);
        if (msg == NULL) {
            return -ENOMEM;
        }
        /* The follower may not have entries past its match index, so the
         * commit it learns here is capped there (as in etcd raft). */
        msg->commit = RKV_MIN(pr->match_index, r->commit);
        msg->read_seq = r->read_seq;
        rv = rkv_raft__send(r, msg);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* ---- commit ------------------------------------------------------------- */

static int compare_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? 1 : (x > y ? -1 : 0);
}

/* Returns the highest index stored on a quorum of voters. */
static uint64_t quorum_match_index(const struct rkv_raft *r)
{
    uint64_t matches[RKV_RAFT_MAX_SERVERS];
    unsigned n = 0;

    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct rkv_raft_progress *pr = &r->progress[i];

        if (!rkv_raft__is_voter(&r->conf, pr->id)) {
            continue;
        }
        /* The leader counts only what its own storage acknowledged. */
        matches[n++] =
            pr->id == r->config.id ? r->persisted_index : pr->match_index;
    }
    if (n == 0) {
        return 0;
    }
    qsort(matches, n, sizeof(matches[0]), compare_desc);
    return matches[rkv_raft__quorum(r) - 1];
}

/* Returns the data bytes of entries up to index to the proposal budget;
 * entries of earlier leaders were never charged, hence the floor at 0. */
static void commit_release_bytes(struct rkv_raft *r, uint64_t index)
{
    for (uint64_t i = r->commit + 1; i <= index; i++) {
        const RkvRaft__Entry *entry = rkv_raft__entry(r, i);
        uint64_t len = entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_NORMAL
                           ? entry->data.len
                           : 0;

        r->uncommitted_bytes -= RKV_MIN(len, r->uncommitted_bytes);
    }
}

int rkv_raft__maybe_commit(struct rkv_raft *r)
{
    uint64_t index;
    int rv;

    assert(r->role == RKV_RAFT_LEADER);

    index = quorum_match_index(r);
    /* Thesis 3.6.2 (Figure 3.7): an entry of an earlier term is never
     * committed by counting replicas, only one of the current term. */
    if (index <= r->commit || rkv_raft__term(r, index) != r->term) {
        return 0;
    }
    commit_release_bytes(r, index);
    r->commit = index;
    rkv_raft__conf_check_removed(r);
    if (r->role != RKV_RAFT_LEADER) {
        return 0;
    }
    rv = rkv_raft__reads_on_commit(r);
    if (rv != 0) {
        return rv;
    }
    return broadcast_commit(r);
}

/* ---- follower side ------------------------------------------------------ */

static void follow(struct rkv_raft *r, uint64_t leader_id)
{
    if (r->role != RKV_RAFT_FOLLOWER || r->leader_id != leader_id) {
        rkv_raft__become_follower(r, r->term, leader_id);
    } else {
        r->election_elapsed = 0;
    }
}

/* Returns the index to retry from: the last one at or below index whose
 * term is not above term (etcd raft's findConflictByTerm). */
static uint64_t reject_hint(const struct rkv_raft *r, uint64_t index,
                            uint64_t term)
{
    uint64_t i = RKV_MIN(index, rkv_raft__last_index(r));

    while (i > r->log.snap_index && rkv_raft__term(r, i) > term) {
        i--;
    }
    return i;
}

static int append_entry(struct rkv_raft *r, const RkvRaft__Entry *entry)
{
    struct rkv_raft_conf conf;
    int rv;

    if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_CONF) {
        rv = rkv_raft_conf_decode(entry->data.data, entry->data.len, &conf);
        if (rv != 0) {
            return rv;
        }
    }
    rv = rkv_raft__log_append(r, entry->term, entry->type, entry->data.data,
                              entry->data.len);
    if (rv != 0) {
        return rv;
    }
    if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_CONF) {
        return rkv_raft__conf_apply(r, &conf, entry->index);
    }
    return 0;
}

/* Thesis 3.5: skip entries already present, truncate at the first
 * conflict, append the rest. */
static int append_entries(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    int rv;

    for (size_t i = 0; i < msg->n_entries; i++) {
        const RkvRaft__Entry *entry = msg->entries[i];

        if (entry->index != msg->prev_log_index + 1 + i ||
            entry->term > msg->term) {
            return RKV_EMALFORMED;
        }
        if (entry->index <= rkv_raft__last_index(r)) {
            if (rkv_raft__term(r, entry->index) == entry->term) {
                continue;
            }
            rkv_raft__log_truncate(r, entry->index);
            if (r->conf_index >= entry->index) {
                rv = rkv_raft__conf_reload(r);
                if (rv != 0) {
                    return rv;
                }
            }
        }
        rv = append_entry(r, entry);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int rkv_raft__step_append(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    uint64_t prev_index = msg->prev_log_index;
    RkvRaft__Message *resp;
    int rv;

    assert(msg->term == r->term);

    follow(r, msg->from);
    resp = rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_APPEND_RESP,
                             msg->from);
    if (resp == NULL) {
        return -ENOMEM;
    }
    if (prev_index < r->commit) {
        /* Everything up to commit already matches the leader. */
        resp->index = r->commit;
    } else if (prev_index > rkv_raft__last_index(r) ||
               rkv_raft__term(r, prev_index) != msg->prev_log_term) {
        resp->reject = true;
        resp->index = prev_index;
        resp->last_log_index = reject_hint(r, prev_index, msg->prev_log_term);
    } else {
        uint64_t last_new = prev_index + msg->n_entries;

        rv = append_entries(r, msg);
        if (rv != 0) {
            rkv_raft__msg_free(resp);
            return rv;
        }
        if (msg->commit > r->commit) {
            r->commit = RKV_MAX(r->commit, RKV_MIN(msg->commit, last_new));
        }
        resp->index = last_new;
    }
    return rkv_raft__send(r, resp);
}

int rkv_raft__step_heartbeat(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    RkvRaft__Message *resp;

    assert(msg->term == r->term);

    follow(r, msg->from);
    if (msg->commit > r->commit) {
        r->commit = RKV_MIN(msg->commit, rkv_raft__last_index(r));
    }
    resp = rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_HEARTBEAT_RESP,
                             msg->from);
    if (resp == NULL) {
        return -ENOMEM;
    }
    resp->read_seq = msg->read_seq;
    return rkv_raft__send(r, resp);
}

/* ---- leader side of responses ------------------------------------------ */

static int append_rejected(struct rkv_raft *r, struct rkv_raft_progress *pr,
                           const RkvRaft__Message *msg)
{
    uint64_t next_index = RKV_MIN(msg->index, msg->last_log_index + 1);

    if (pr->state == RKV_RAFT_SNAPSHOT) {
        return 0;
    }
    if (pr->state == RKV_RAFT_REPLICATE && msg->index <= pr->match_index) {
        return 0; /* stale */
    }
    if (pr->state == RKV_RAFT_PROBE && msg->index != pr->next_index - 1) {
        return 0; /* stale */
    }
    rkv_raft__progress_probe(pr, next_index);
    return rkv_raft__send_append(r, pr);
}

int rkv_raft__step_append_resp(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    struct rkv_raft_progress *pr;
    int rv;

    assert(msg->term == r->term);

    if (r->role != RKV_RAFT_LEADER) {
        return 0;
    }
    pr = rkv_raft__progress(r, msg->from);
    if (pr == NULL) {
        return 0;
    }
    pr->recent_active = true;
    if (msg->reject) {
        return append_rejected(r, pr, msg);
    }
    if (msg->index > rkv_raft__last_index(r)) {
        return RKV_EMALFORMED;
    }
    if (msg->index >= pr->match_index) {
        pr->match_index = msg->index;
        if (pr->next_index <= pr->match_index) {
            pr->next_index = pr->match_index + 1;
        }
        if (pr->state == RKV_RAFT_PROBE ||
            (pr->state == RKV_RAFT_SNAPSHOT &&
             pr->match_index >= pr->snap_index)) {
            progress_replicate(pr);
        }
        inflight_free_to(pr, msg->index);
    }
    rv = rkv_raft__maybe_commit(r);
    if (rv != 0 || r->role != RKV_RAFT_LEADER) {
        return rv;
    }
    if (r->transfer_to == pr->id &&
        pr->match_index == rkv_raft__last_index(r)) {
        return rkv_raft__send_timeout_now(r, pr->id);
    }
    return rkv_raft__send_append(r, pr);
}

int rkv_raft__step_heartbeat_resp(struct rkv_raft *r,
                                  const RkvRaft__Message *msg)
{
    struct rkv_raft_progress *pr;
    int rv;

    assert(msg->term == r->term);

    if (r->role != RKV_RAFT_LEADER) {
        return 0;
    }
    pr = rkv_raft__progress(r, msg->from);
    if (pr == NULL) {
        return 0;
    }
    pr->recent_active = true;
    if (msg->read_seq > pr->read_seq_acked && msg->read_seq <= r->read_seq) {
        pr->read_seq_acked = msg->read_seq;
        rv = rkv_raft__reads_release(r);
        if (rv != 0) {
            return rv;
        }
    }
    if (pr->state == RKV_RAFT_PROBE) {
        pr->probe_sent = false;
    }
    if (pr->state == RKV_RAFT_REPLICATE && inflight_full(r, pr)) {
        /* Appends may be lost; free one slot so that the next append
         * exposes the gap and the follower's rejection resets progress. */
        inflight_pop(pr);
    }
    if (pr->match_index < rkv_raft__last_index(r)) {
        return send_appends(r, pr, true);
    }
    return 0;
}

/* ---- ReadIndex (thesis 6.4) --------------------------------------------- */

static int reads_done_push(struct rkv_raft *r,
                           const struct rkv_raft_pending_read *read)
{
    if (r->n_reads_done == r->cap_reads_done) {
        size_t cap = r->cap_reads_done == 0 ? 8 : r->cap_reads_done * 2;
        struct rkv_raft_read_state *grown;

        grown = rkv_realloc(r->reads_done, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        r->reads_done = grown;
        r->cap_reads_done = cap;
    }
    r->reads_done[r->n_reads_done].ctx = read->ctx;
    r->reads_done[r->n_reads_done].index = read->index;
    r->n_reads_done++;
    return 0;
}

static unsigned read_acks(const struct rkv_raft *r, uint64_t read_seq)
{
    unsigned n = 0;

    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct rkv_raft_progress *pr = &r->progress[i];

        if (!rkv_raft__is_voter(&r->conf, pr->id)) {
            continue;
        }
        if (pr->id == r->config.id || pr->read_seq_acked >= read_seq) {
            n++;
        }
    }
    return n;
}

/* Releases, oldest first, the reads whose heartbeat round a quorum has
 * acknowledged, because that confirmed leadership after they arrived. */
int rkv_raft__reads_release(struct rkv_raft *r)
{
    size_t n_done = 0;
    int rv;

    while (n_done < r->n_reads) {
        const struct rkv_raft_pending_read *read = &r->reads[n_done];

        if (read->read_seq == 0 ||
            read_acks(r, read->read_seq) < rkv_raft__quorum(r)) {
            break;
        }
        rv = reads_done_push(r, read);
        if (rv != 0) {
            return rv;
        }
        n_done++;
    }
    if (n_done > 0) {
        memmove(r->reads, r->reads + n_done,
                (r->n_reads - n_done) * sizeof(*r->reads));
        r->n_reads -= n_done;
    }
    return 0;
}

/* Admits the waiting reads once the leader has committed an entry of its
 * term: before that its commit index may lag the true one (thesis 6.4). */
int rkv_raft__reads_on_commit(struct rkv_raft *r)
{
    bool admitted = false;
    int rv;

    bool term_committed = rkv_raft__term(r, r->commit) == r->term;

#ifdef RKV_RAFT_BUGS
    term_committed = term_committed || r->config.bug_read_before_noop;
#endif
    if (!term_committed) {
        return 0;
    }
    for (size_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].read_seq == 0) {
            if (!admitted) {
                r->read_seq++;
                admitted = true;
            }
            r->reads[i].index = r->commit;
            r->reads[i].read_seq = r->read_seq;
        }
    }
    if (!admitted) {
        return 0;
    }
    rv = rkv_raft__broadcast_heartbeat(r);
    if (rv != 0) {
        return rv;
    }
    return rkv_raft__reads_release(r);
}

int rkv_raft_read_index(struct rkv_raft *r, uint64_t ctx)
{
    struct rkv_raft_pending_read *read;
    int rv;

    if (r->role != RKV_RAFT_LEADER) {
        return RKV_ENOTLEADER;
    }
    if (r->n_reads >= RKV_RAFT_READS_MAX) {
        return RKV_EBUSY;
    }
    if (r->n_reads == r->cap_reads) {
        size_t cap = r->cap_reads == 0 ? 8 : r->cap_reads * 2;
        struct rkv_raft_pending_read *grown;

        grown = rkv_realloc(r->reads, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        r->reads = grown;
        r->cap_reads = cap;
    }
    read = &r->reads[r->n_reads++];
    read->ctx = ctx;
    read->index = 0;
    read->read_seq = 0;

    /* The read is queued now; should its heartbeats fail to queue, the
     * next heartbeat tick carries its round. */
    rv = rkv_raft__reads_on_commit(r);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "queueing read heartbeats failed range=%llu: %s",
                (unsigned long long)r->config.group_id, rkv_strerror(rv));
    }
    return 0;
}

/* ---- leader tick -------------------------------------------------------- */

/* Thesis 6.2: a leader that has not heard from a quorum within an election
 * timeout steps down, so a partitioned leader stops serving. */
static bool check_quorum_passes(struct rkv_raft *r)
{
    unsigned n_active = 0;

    for (unsigned i = 0; i < r->n_progress; i++) {
        struct rkv_raft_progress *pr = &r->progress[i];

        if (rkv_raft__is_voter(&r->conf, pr->id) &&
            (pr->id == r->config.id || pr->recent_active)) {
            n_active++;
        }
        pr->recent_active = false;
    }
    return n_active >= rkv_raft__quorum(r);
}

int rkv_raft__tick_leader(struct rkv_raft *r)
{
    int rv;

    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->config.election_ticks) {
        r->election_elapsed = 0;
        if (r->config.check_quorum && !check_quorum_passes(r)) {
            RKV_LOG(RKV_INFO,
                    "lost quorum, stepping down range=%llu id=%llu term=%llu",
                    (unsigned long long)r->config.group_id,
                    (unsigned long long)r->config.id,
                    (unsigned long long)r->term);
            rkv_raft__become_follower(r, r->term, 0);
            return 0;
        }
    }
    if (r->transfer_to != 0 &&
        ++r->transfer_elapsed >= r->config.election_ticks) {
        RKV_LOG(RKV_INFO, "leadership transfer timed out range=%llu to=%llu",
                (unsigned long long)r->config.group_id,
                (unsigned long long)r->transfer_to);
        r->transfer_to = 0;
    }
    for (unsigned i = 0; i < r->n_progress; i++) {
        rv = rkv_raft__tick_snapshot(r, &r->progress[i]);
        if (rv != 0) {
            return rv;
        }
    }
    if (r->heartbeat_elapsed >= r->config.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        return rkv_raft__broadcast_heartbeat(r);
    }
    return 0;
}
