/*
 * Chunked snapshot transfer (Raft thesis 5.1, InstallSnapshot), for
 * followers whose next entries the leader has compacted away.
 *
 * Leader side, per follower in the SNAPSHOT progress state:
 *   1. The core requests chunk 0 from the caller (a snapshot request in
 *      ready). The caller opens a snapshot at its applied index and
 *      responds with rkv_raft_snapshot_chunk(), which sends MSG_SNAPSHOT.
 *   2. The follower acks each chunk once it is durable, and the core then
 *      requests the next one. One chunk is in flight at a time.
 *   3. The ack of the last chunk (or a "done" reply from a follower that
 *      already has the snapshot's entries) moves the progress to PROBE with
 *      match_index at the snapshot index.
 *   Failure: a rejection, or no progress for two election timeouts,
 *   restarts at chunk 0 with a fresh snapshot.
 *
 * Follower side: chunk 0 starts staging, each chunk in sequence is handed
 * to the caller through ready->chunks, and the last one installs: the log
 * is replaced by the snapshot. Any chunk out of sequence (after a crash,
 * a loss or a leader change) is rejected, which restarts the transfer, so
 * a crash mid-install only leaves a staging area that chunk 0 discards.
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

/* ---- leader ------------------------------------------------------------- */

static int requests_push(struct rkv_raft *r,
                         const struct rkv_raft_snapshot_request *req)
{
    size_t n_kept = 0;

    /* A newer request for the same peer replaces an unanswered one. */
    for (size_t i = 0; i < r->n_snap_requests; i++) {
        if (r->snap_requests[i].to != req->to) {
            r->snap_requests[n_kept++] = r->snap_requests[i];
        }
    }
    r->n_snap_requests = n_kept;
    if (r->n_snap_requests == r->cap_snap_requests) {
        size_t cap = r->cap_snap_requests == 0 ? 4 : r->cap_snap_requests * 2;
        struct rkv_raft_snapshot_request *grown;

        grown = rkv_realloc(r->snap_requests, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        r->snap_requests = grown;
        r->cap_snap_requests = cap;
    }
    r->snap_requests[r->n_snap_requests++] = *req;
    return 0;
}

int rkv_raft__snapshot_request(struct rkv_raft *r,
                               struct rkv_raft_progress *pr, uint32_t seq)
{
    struct rkv_raft_snapshot_request req;

    if (seq == 0) {
        pr->snap_index = 0;
    }
    pr->snap_chunk_seq = seq;
    pr->snap_chunk_sent = false;
    pr->snap_last_sent = false;
    pr->snap_idle_ticks = 0;
    req.to = pr->id;
    req.chunk_seq = seq;
    req.index = pr->snap_index;
    return requests_push(r, &req);
}

int rkv_raft__snapshot_start(struct rkv_raft *r, struct rkv_raft_progress *pr)
{
    RKV_LOG(RKV_INFO,
            "sending snapshot range=%llu id=%llu to=%llu next=%llu "
            "compacted=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id, (unsigned long long)pr->id,
            (unsigned long long)pr->next_index,
            (unsigned long long)r->log.snap_index);
    pr->state = RKV_RAFT_SNAPSHOT;
    pr->n_inflight = 0;
    pr->inflight_bytes_total = 0;
    return rkv_raft__snapshot_request(r, pr, 0);
}

int rkv_raft__tick_snapshot(struct rkv_raft *r, struct rkv_raft_progress *pr)
{
    if (pr->state != RKV_RAFT_SNAPSHOT) {
        return 0;
    }
    if (++pr->snap_idle_ticks < 2 * r->config.election_ticks) {
        return 0;
    }
    RKV_LOG(RKV_DEBUG, "snapshot stalled, restarting range=%llu to=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)pr->id);
    return rkv_raft__snapshot_request(r, pr, 0);
}

static int chunk_message(struct rkv_raft *r, struct rkv_raft_progress *pr,
                         const void *data, size_t len, bool last)
{
    RkvRaft__Message *msg;
    struct rkv_raft_conf conf;

    msg = rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT, pr->id);
    if (msg == NULL) {
        return -ENOMEM;
    }
    msg->snap_index = pr->snap_index;
    msg->snap_term = rkv_raft__term(r, pr->snap_index);
    rkv_raft__conf_at(r, pr->snap_index, &conf, NULL);
    msg->snap_conf = rkv_raft__conf_to_pb(&conf);
    if (msg->snap_conf == NULL) {
        rkv_raft__msg_free(msg);
        return -ENOMEM;
    }
    msg->chunk_seq = pr->snap_chunk_seq;
    msg->last_chunk = last;
    if (len > 0) {
        msg->chunk.data = rkv_memdup(data, len);
        if (msg->chunk.data == NULL) {
            rkv_raft__msg_free(msg);
            return -ENOMEM;
        }
        msg->chunk.len = len;
    }
    return rkv_raft__send(r, msg);
}

int rkv_raft_snapshot_chunk(struct rkv_raft *r, uint64_t to,
                            uint64_t snap_index, uint32_t chunk_seq,
                            const void *data, size_t len, bool last)
{
    struct rkv_raft_progress *pr;
    int rv;

    if (r->role != RKV_RAFT_LEADER) {
        return RKV_ENOTLEADER;
    }
    pr = rkv_raft__progress(r, to);
    if (pr == NULL || pr->state != RKV_RAFT_SNAPSHOT ||
        pr->snap_chunk_sent || chunk_seq != pr->snap_chunk_seq) {
        return RKV_ESTALE;
    }
    if (len > r->config.chunk_bytes_max) {
        return -EINVAL;
    }
    if (chunk_seq == 0) {
        if (snap_index < r->log.snap_index || snap_index > r->applied) {
            return -EINVAL;
        }
        pr->snap_index = snap_index;
    } else if (snap_index != pr->snap_index) {
        return -EINVAL;
    } else if (snap_index < r->log.snap_index) {
        /* Compaction passed the snapshot being sent, so its term and
         * configuration are gone: start over with a newer snapshot. */
        rv = rkv_raft__snapshot_request(r, pr, 0);
        return rv != 0 ? rv : RKV_ESTALE;
    }
    rv = chunk_message(r, pr, data, len, last);
    if (rv != 0) {
        return rv;
    }
    pr->snap_chunk_sent = true;
    pr->snap_last_sent = last;
    pr->snap_idle_ticks = 0;
    return 0;
}

int rkv_raft__step_snapshot_resp(struct rkv_raft *r,
                                 const RkvRaft__Message *msg)
{
    struct rkv_raft_progress *pr;

    assert(msg->term == r->term);

    if (r->role != RKV_RAFT_LEADER) {
        return 0;
    }
    pr = rkv_raft__progress(r, msg->from);
    if (pr == NULL) {
        return 0;
    }
    pr->recent_active = true;
    if (msg->last_chunk && !msg->reject) {
        /* The follower has stored everything up to msg->index, so this is
         * safe to record whenever it arrives. */
        if (msg->index > rkv_raft__last_index(r)) {
            return RKV_EMALFORMED;
        }
        pr->match_index = RKV_MAX(pr->match_index, msg->index);
        if (pr->state != RKV_RAFT_SNAPSHOT) {
            return 0;
        }
        RKV_LOG(RKV_INFO, "snapshot sent range=%llu to=%llu index=%llu",
                (unsigned long long)r->config.group_id,
                (unsigned long long)pr->id,
                (unsigned long long)pr->match_index);
        rkv_raft__progress_probe(pr, pr->match_index + 1);
        return rkv_raft__send_append(r, pr);
    }
    if (pr->state != RKV_RAFT_SNAPSHOT) {
        return 0;
    }
    if (msg->reject) {
        return rkv_raft__snapshot_request(r, pr, 0);
    }
    if (!pr->snap_chunk_sent || msg->snap_index != pr->snap_index ||
        msg->chunk_seq != pr->snap_chunk_seq || pr->snap_last_sent) {
        return 0; /* stale or duplicate */
    }
    return rkv_raft__snapshot_request(r, pr, pr->snap_chunk_seq + 1);
}

/* ---- follower ----------------------------------------------------------- */

static int chunks_push(struct rkv_raft *r, const RkvRaft__Message *msg,
                       const struct rkv_raft_conf *conf)
{
    struct rkv_raft_snapshot_chunk *chunk;

    if (r->n_chunks == r->cap_chunks) {
        size_t cap = r->cap_chunks == 0 ? 4 : r->cap_chunks * 2;
        struct rkv_raft_snapshot_chunk *grown;

        grown = rkv_realloc(r->chunks, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        r->chunks = grown;
        r->cap_chunks = cap;
    }
    chunk = &r->chunks[r->n_chunks];
    memset(chunk, 0, sizeof(*chunk));
    if (msg->chunk.len > 0) {
        chunk->data = rkv_memdup(msg->chunk.data, msg->chunk.len);
        if (chunk->data == NULL) {
            return -ENOMEM;
        }
        chunk->data_len = msg->chunk.len;
    }
    chunk->meta.index = msg->snap_index;
    chunk->meta.term = msg->snap_term;
    chunk->meta.conf = *conf;
    chunk->chunk_seq = msg->chunk_seq;
    chunk->last = msg->last_chunk;
    r->n_chunks++;
    return 0;
}

/* Replaces the log with the snapshot whose last chunk was just staged. */
static int snapshot_install(struct rkv_raft *r, const RkvRaft__Message *msg,
                            const struct rkv_raft_conf *conf)
{
    RKV_LOG(RKV_INFO,
            "installing snapshot range=%llu id=%llu index=%llu term=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id,
            (unsigned long long)msg->snap_index,
            (unsigned long long)msg->snap_term);
    rkv_raft__log_reset(r, msg->snap_index, msg->snap_term, conf);
    r->commit = msg->snap_index;
    r->applied = msg->snap_index;
    r->persisted_index = msg->snap_index;
    r->unstable_index = msg->snap_index + 1;
    r->recv_snap_index = 0;
    r->recv_next_chunk = 0;
    return rkv_raft__conf_reload(r);
}

/* Returns whether the follower already has the snapshot's entries. It then
 * keeps its log, which may contain entries it acknowledged past the
 * snapshot, and only advances commit (as etcd raft does).
 * NOTE: chunks staged before this point stay in the caller's staging area
 * until the next chunk 0 replaces them, because no batch signals the caller
 * to drop them earlier. Only disk space is at stake. */
static bool snapshot_is_redundant(struct rkv_raft *r,
                                  const RkvRaft__Message *msg)
{
    if (msg->snap_index <= r->commit) {
        return true;
    }
    if (msg->snap_index <= rkv_raft__last_index(r) &&
        rkv_raft__term(r, msg->snap_index) == msg->snap_term) {
        r->commit = msg->snap_index;
        return true;
    }
    return false;
}

static int snapshot_accept(struct rkv_raft *r, const RkvRaft__Message *msg,
                           RkvRaft__Message *resp)
{
    struct rkv_raft_conf conf;
    int rv;

    if (msg->snap_conf == NULL) {
        return RKV_EMALFORMED;
    }
    rv = rkv_raft__conf_from_pb(msg->snap_conf, &conf);
    if (rv != 0) {
        return rv;
    }
    rv = chunks_push(r, msg, &conf);
    if (rv != 0) {
        return rv;
    }
    r->recv_snap_index = msg->snap_index;
    r->recv_next_chunk = msg->chunk_seq + 1;
    if (!msg->last_chunk) {
        return 0;
    }
    resp->last_chunk = true;
    resp->index = msg->snap_index;
    return snapshot_install(r, msg, &conf);
}

int rkv_raft__step_snapshot(struct rkv_raft *r, const RkvRaft__Message *msg)
{
    bool in_sequence;
    RkvRaft__Message *resp;
    int rv;

    assert(msg->term == r->term);

    if (r->role != RKV_RAFT_FOLLOWER || r->leader_id != msg->from) {
        rkv_raft__become_follower(r, r->term, msg->from);
    } else {
        r->election_elapsed = 0;
    }
    resp = rkv_raft__msg_new(r, RKV_RAFT__MESSAGE_TYPE__MSG_SNAPSHOT_RESP,
                             msg->from);
    if (resp == NULL) {
        return -ENOMEM;
    }
    resp->snap_index = msg->snap_index;
    resp->chunk_seq = msg->chunk_seq;
    in_sequence = msg->chunk_seq == 0 ||
                  (msg->snap_index == r->recv_snap_index &&
                   msg->chunk_seq == r->recv_next_chunk);
    if (snapshot_is_redundant(r, msg)) {
        resp->last_chunk = true;
        resp->index = r->commit;
        r->recv_snap_index = 0;
    } else if (in_sequence) {
        rv = snapshot_accept(r, msg, resp);
        if (rv != 0) {
            rkv_raft__msg_free(resp);
            return rv;
        }
    } else if (msg->snap_index != r->recv_snap_index ||
               msg->chunk_seq > r->recv_next_chunk) {
        resp->reject = true;
    }
    /* A duplicate of a chunk already staged is acked again, unchanged. */
    return rkv_raft__send(r, resp);
}
