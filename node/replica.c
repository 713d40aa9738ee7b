/*
 * Multi-raft driving: collecting the ready batches of every replica with
 * work, and finishing them once the writer made them durable.
 *
 * Happy path, once per loop iteration (node's uv_check handle):
 *   1. rkv_node__collect_ready() takes each marked replica's ready batch
 *      and sends its messages at once. A leader's appends thus go out while
 *      its own write runs (Ongaro's Raft thesis, 10.2.1). It then records
 *      role changes, matches ReadIndex results to waiting reads, and adds
 *      the batch to the next writer batch.
 *   2. When the writer is idle the next batch is submitted.
 *   3. rkv_node__batch_done() runs when the writer finished. For each item
 *      it calls rkv_raft_ack() and sends the messages that needed the batch
 *      durable (vote grants, append acknowledgments). It then hands the
 *      apply results to the waiting client requests and internal proposals
 *      and serves the reads whose index is now applied.
 *
 * Failure modes: a proposal whose index was applied with another term was
 * dropped by a leader change (RKV_EDROPPED to the client, which retries).
 * A replica that stops leading fails its waiting reads with RKV_ENOTLEADER.
 * A writer commit that fails for lack of space is retried by the writer
 * (node/writer.c); any other commit failure stops the node (see
 * batch_done_failed()).
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *role_name(enum rkv_raft_role role)
{
    switch (role) {
    case RKV_RAFT_FOLLOWER:
        return "follower";
    case RKV_RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RKV_RAFT_CANDIDATE:
        return "candidate";
    case RKV_RAFT_LEADER:
        return "leader";
    }
    return "unknown";
}

/* Fails every request in list with rv. */
static void fail_request_list(struct rkv_node__request_list *list, int rv,
                              const char *message)
{
    while (list->head != NULL) {
        struct rkv_node__request *req = list->head;

        rkv_node__request_list_remove(list, req);
        rkv_node__request_fail(req, rv, message);
    }
}

static void replica_role_changed(struct rkv_node__replica *replica,
                                 const struct rkv_raft_ready *rd)
{
    enum rkv_raft_role old_role = replica->role;

    replica->role = rd->role;
    if (rd->role == RKV_RAFT_LEADER) {
        RKV_LOG(RKV_INFO, "became leader range=%llu term=%llu",
                (unsigned long long)replica->range_id,
                (unsigned long long)rkv_raft_term(replica->raft));
    } else if (old_role == RKV_RAFT_LEADER) {
        RKV_LOG(RKV_INFO, "lost leadership range=%llu term=%llu role=%s",
                (unsigned long long)replica->range_id,
                (unsigned long long)rkv_raft_term(replica->raft),
                role_name(rd->role));
        fail_request_list(&replica->reads, RKV_ENOTLEADER,
                          "leadership lost before the read was confirmed");
        replica->split_state = RKV_NODE_SPLIT_IDLE;
        fail_request_list(&replica->split_waiters, RKV_ENOTLEADER,
                          "leadership lost during the split");
    } else {
        RKV_LOG(RKV_DEBUG, "role changed range=%llu term=%llu role=%s",
                (unsigned long long)replica->range_id,
                (unsigned long long)rkv_raft_term(replica->raft),
                role_name(rd->role));
    }
}

static struct rkv_node__request *find_read(struct rkv_node__replica *replica,
                                           uint64_t ctx)
{
    for (struct rkv_node__request *req = replica->reads.head; req != NULL;
         req = req->next) {
        if (req->read_ctx == ctx) {
            return req;
        }
    }
    return NULL;
}

/* Serves every read whose index is known and applied. */
static void serve_reads(struct rkv_node__replica *replica)
{
    struct rkv_node__request *req = replica->reads.head;

    while (req != NULL) {
        struct rkv_node__request *next = req->next;

        if (req->index != 0 && req->index <= replica->applied_index) {
            rkv_node__request_list_remove(&replica->reads, req);
            rkv_node__request_read(req);
        }
        req = next;
    }
}

/* Fails the reads that wait for committed entries the writer cannot apply
 * for lack of space: they would wait until space is freed, which is
 * usually past their deadline. */
static void fail_reads_stalled(struct rkv_node__replica *replica)
{
    struct rkv_node__request *req = replica->reads.head;
    struct rkv_node *node = replica->node;
    int rv = node->storage.ops->stalled(node->storage.data);

    while (rv != 0 && req != NULL) {
        struct rkv_node__request *next = req->next;

        if (req->index != 0) {
            rkv_node__request_list_remove(&replica->reads, req);
            rkv_node__request_fail(req, rv,
                                   "the read waits for committed writes "
                                   "that cannot be applied until space is "
                                   "freed on the store");
        }
        req = next;
    }
}

static void replica_take_reads(struct rkv_node__replica *replica,
                               const struct rkv_raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_reads; i++) {
        struct rkv_node__request *req = find_read(replica, rd->reads[i].ctx);

        if (req != NULL) {
            /* index 0 would mean "unknown"; the first entry is index 1. */
            req->index = RKV_MAX(rd->reads[i].index, 1);
        }
    }
    serve_reads(replica);
    fail_reads_stalled(replica);
}

static size_t peer_slot(uint64_t node_id)
{
    assert(node_id >= 1);
    assert(node_id <= RKV_NODE_JOIN_MAX);
    return (size_t)(node_id - 1);
}

static void snapshot_reader_close(struct rkv_node__replica *r, size_t slot)
{
    if (r->snap_readers[slot] != NULL) {
        rkv_range_snapshot_close(r->snap_readers[slot]);
        r->snap_readers[slot] = NULL;
    }
}

/* Opens a snapshot of the replica's applied state for one peer. */
static int snapshot_reader_open(struct rkv_node__replica *r, size_t slot)
{
    struct rkv_range_snapshot_meta meta;
    int rv;

    snapshot_reader_close(r, slot);
    rv = rkv_range_snapshot_open(r->node->store, r->range_id,
                                 RKV_NODE_SNAPSHOT_CHUNK_BYTES,
                                 &r->snap_readers[slot], &meta);
    if (rv != 0) {
        return rv;
    }
    r->snap_indexes[slot] = meta.index;
    r->snap_next_seqs[slot] = 0;
    RKV_LOG(RKV_INFO, "sending snapshot range=%llu peer=%zu index=%llu",
            (unsigned long long)r->range_id, slot + 1,
            (unsigned long long)meta.index);
    return 0;
}

/* Leader side of a snapshot transfer: produces the requested chunk from the
 * peer's open reader (chunk 0 opens a new one at the applied index). A
 * request out of sequence is ignored, because the core restarts the
 * transfer at chunk 0 after two election timeouts without progress. */
static void replica_serve_snapshot(struct rkv_node__replica *r,
                                   const struct rkv_raft_snapshot_request *sr)
{
    size_t slot = peer_slot(sr->to);
    uint8_t *chunk = NULL;
    size_t chunk_len = 0;
    bool last = false;
    int rv = 0;

    if (sr->chunk_seq == 0) {
        rv = snapshot_reader_open(r, slot);
    } else if (r->snap_readers[slot] == NULL ||
               r->snap_next_seqs[slot] != sr->chunk_seq) {
        RKV_LOG(RKV_DEBUG,
                "ignored snapshot chunk request range=%llu "
                "peer=%llu chunk=%u",
                (unsigned long long)r->range_id, (unsigned long long)sr->to,
                (unsigned)sr->chunk_seq);
        return;
    }
    if (rv == 0) {
        rv = rkv_range_snapshot_next(r->snap_readers[slot], &chunk, &chunk_len,
                                     &last);
    }
    if (rv == 0) {
        rv = rkv_raft_snapshot_chunk(r->raft, sr->to, r->snap_indexes[slot],
                                     sr->chunk_seq, chunk, chunk_len, last);
        rkv_free(chunk);
    }
    if (rv != 0) {
        RKV_LOG(rv == RKV_ESTALE ? RKV_DEBUG : RKV_WARN,
                "snapshot chunk failed range=%llu peer=%llu chunk=%u "
                "error=%s",
                (unsigned long long)r->range_id, (unsigned long long)sr->to,
                (unsigned)sr->chunk_seq, rkv_strerror(rv));
        snapshot_reader_close(r, slot);
        return;
    }
    r->snap_next_seqs[slot] = sr->chunk_seq + 1;
    if (last) {
        snapshot_reader_close(r, slot);
    }
    rkv_node__replica_mark(r);
}

static bool ready_needs_writer(const struct rkv_node__replica *r,
                               const struct rkv_raft_ready *rd)
{
    return rd->has_hard_state || rd->n_entries > 0 || rd->n_chunks > 0 ||
           rd->n_committed > 0 || rd->n_messages_after_persist > 0 ||
           r->compact_pending != 0;
}

/* Adds an empty item to the next writer batch; NULL when out of memory. */
static struct rkv_node__witem *batch_new_item(struct rkv_node *node)
{
    struct rkv_node__wbatch *b = node->next_batch;
    struct rkv_node__witem *item;

    if (b == NULL) {
        b = rkv_calloc(1, sizeof(*b));
        if (b == NULL) {
            return NULL;
        }
        node->next_batch = b;
    }
    item = rkv_calloc(1, sizeof(*item));
    if (item == NULL) {
        return NULL;
    }
    if (b->tail != NULL) {
        b->tail->next = item;
    } else {
        b->head = item;
    }
    b->tail = item;
    b->n_items++;
    return item;
}

int rkv_node__batch_add_create(struct rkv_node *node, uint64_t range_id)
{
    struct rkv_node__witem *item = batch_new_item(node);

    if (item == NULL) {
        return -ENOMEM;
    }
    item->create_range_id = range_id;
    return 0;
}

static int batch_append(struct rkv_node *node, struct rkv_node__replica *r,
                        struct rkv_raft_ready *rd)
{
    struct rkv_node__witem *item = batch_new_item(node);

    if (item == NULL) {
        return -ENOMEM;
    }
    item->replica = r;
    item->rd = rd;
    item->compact_index = r->compact_pending;
    r->compact_pending = 0;
    return 0;
}

static void collect_one(struct rkv_node *node, struct rkv_node__replica *r)
{
    struct rkv_raft_ready *rd;
    int rv;

    rv = rkv_raft_ready(r->raft, &rd);
    if (rv != 0) {
        RKV_LOG(RKV_ERROR, "taking raft work failed range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
        abort();
    }
    if (rd->role_changed) {
        replica_role_changed(r, rd);
    }
    r->leader_id = rkv_raft_leader(r->raft);
    for (size_t i = 0; i < rd->n_messages; i++) {
        rkv_node__send_raft(node, rd->messages[i]);
    }
    replica_take_reads(r, rd);
    for (size_t i = 0; i < rd->n_snapshot_requests; i++) {
        replica_serve_snapshot(r, &rd->snapshot_requests[i]);
    }
    if (!ready_needs_writer(r, rd)) {
        rkv_raft_ready_free(rd);
        return;
    }
#ifdef RKV_NODE_BUGS
    if (node->bug == RKV_NODE_BUG_ACK_BEFORE_PERSIST) {
        /* The injected bug: votes and append acknowledgments go out before
         * the batch is durable, so a crash loses what a quorum counted. */
        rv = rkv_raft_ack(r->raft, rd->seq);
        assert(rv == 0);
        for (size_t i = 0; i < rd->n_messages_after_persist; i++) {
            rkv_node__send_raft(node, rd->messages_after_persist[i]);
        }
    }
#endif
    rv = batch_append(node, r, rd);
    if (rv != 0) {
        /* Raft handed the batch out; losing it would lose the log. */
        RKV_LOG(RKV_ERROR, "queueing raft work failed range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
        abort();
    }
}

/* Returns whether a batch carries anything to write. A follower's response
 * to a heartbeat (the ReadIndex confirmation of read-only workloads) only
 * waits for the earlier batches of its replica, and needs no commit. */
static bool batch_needs_commit(const struct rkv_node__wbatch *b)
{
    for (const struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        const struct rkv_raft_ready *rd = item->rd;

        if (item->create_range_id != 0 || item->compact_index != 0 ||
            rd->has_hard_state || rd->n_entries > 0 || rd->n_chunks > 0 ||
            rd->n_committed > 0) {
            return true;
        }
    }
    return false;
}

/* Takes the ready batch of every replica on the work list. */
static void collect_marked(struct rkv_node *node)
{
    while (node->work_head != NULL) {
        struct rkv_node__replica *r = node->work_head;

        node->work_head = r->work_next;
        r->work_next = NULL;
        r->on_work_list = false;
        if (rkv_raft_has_ready(r->raft)) {
            collect_one(node, r);
        }
    }
}

void rkv_node__collect_ready(struct rkv_node *node)
{
    /* A batch with nothing to write completes at once, in order, since no
     * earlier batch is in flight while the writer is idle. Its replicas may
     * have new work then, hence one more pass. */
    for (int pass = 0; pass < 2; pass++) {
        struct rkv_node__wbatch *b;

        collect_marked(node);
        if (node->batch_in_flight || node->next_batch == NULL) {
            return;
        }
        b = node->next_batch;
        node->next_batch = NULL;
        if (batch_needs_commit(b)) {
            node->counters.n_batches++;
            node->batch_in_flight = true;
            node->storage.ops->submit(node->storage.data, b);
            return;
        }
        rkv_node__batch_done(node, b);
    }
}

/* Completes the client proposals up to index, where this replica applied
 * the entry (index, term). A proposal at index with the same term
 * succeeded, and one with another term was dropped, because another entry
 * took its index. A proposal below index is settled as unknown: this
 * replica did not apply the entry at its index (settle_skipped() handles
 * the snapshots and restarts that skip entries, so none is expected). */
static void finish_proposals(struct rkv_node__replica *r, uint64_t index,
                             uint64_t term,
                             const struct rkv_range_apply_result *result)
{
    if (r->proposals.head != NULL && r->proposals.head->index < index) {
        rkv_node__settle_skipped(r, index - 1, 0);
    }
    while (r->proposals.head != NULL && r->proposals.head->index <= index) {
        struct rkv_node__request *req = r->proposals.head;

        rkv_node__request_list_remove(&r->proposals, req);
        if (req->term == term) {
            rkv_node__request_applied(req, result);
        } else {
            rkv_node__request_fail(req, RKV_EDROPPED,
                                   "the proposal was dropped by a leader "
                                   "change; retry");
        }
    }
}

void rkv_node__settle_skipped(struct rkv_node__replica *r, uint64_t index,
                              uint64_t term)
{
    while (r->proposals.head != NULL && r->proposals.head->index <= index) {
        struct rkv_node__request *req = r->proposals.head;

        rkv_node__request_list_remove(&r->proposals, req);
        if (term != 0 && req->term > term) {
            /* Terms never decrease along a log, so every entry up to index
             * has a term of at most `term`: this one never committed. */
            rkv_node__request_fail(req, RKV_EDROPPED,
                                   "the proposal was dropped by a leader "
                                   "change; retry");
        } else {
            rkv_node__request_fail(req, RKV_EUNKNOWN,
                                   "the range caught up past the write's log "
                                   "entry without applying it here, so "
                                   "whether it applied is unknown");
        }
    }
}

/* Schedules a compaction once the log contains too many applied entries. */
static void replica_maybe_compact(struct rkv_node__replica *r)
{
    uint64_t keep = r->node->log_compact_entries;
    uint64_t step = RKV_MAX(keep / RKV_NODE_LOG_STEP_DIVISOR, 1);

    if (r->compact_pending != 0 ||
        r->applied_index <= r->compacted_index + keep + step) {
        return;
    }
    r->compact_pending = r->applied_index - keep;
    rkv_node__replica_mark(r);
}

/* Bookkeeping after a snapshot installed: the replica now starts at the
 * snapshot's index, with the snapshot's descriptor (read back by
 * batch_refresh_stats()). */
static void item_installed(struct rkv_node *node,
                           const struct rkv_node__witem *item)
{
    struct rkv_node__replica *r = item->replica;
    const struct rkv_raft_ready *rd = item->rd;

    for (size_t i = 0; i < rd->n_chunks; i++) {
        const struct rkv_raft_snapshot_chunk *chunk = &rd->chunks[i];

        if (!chunk->last) {
            continue;
        }
        r->applied_index = chunk->meta.index;
        r->compacted_index = chunk->meta.index;
        node->by_key_stale = true;
        rkv_node__settle_skipped(r, chunk->meta.index, chunk->meta.term);
        RKV_LOG(RKV_INFO,
                "installed snapshot range=%llu index=%llu term=%llu "
                "generation=%llu",
                (unsigned long long)r->range_id,
                (unsigned long long)chunk->meta.index,
                (unsigned long long)chunk->meta.term,
                (unsigned long long)r->desc.generation);
    }
}

static void item_applied(struct rkv_node *node, struct rkv_node__witem *item)
{
    struct rkv_node__replica *r = item->replica;
    struct rkv_raft_ready *rd = item->rd;

    if (item->compact_index != 0) {
        int rv = rkv_raft_compact(r->raft, item->compact_index);

        if (rv != 0) {
            RKV_LOG(RKV_WARN,
                    "compacting raft log failed range=%llu "
                    "index=%llu error=%s",
                    (unsigned long long)r->range_id,
                    (unsigned long long)item->compact_index, rkv_strerror(rv));
        } else {
            r->compacted_index = item->compact_index;
        }
    }
    item_installed(node, item);

    for (size_t i = 0; i < rd->n_committed; i++) {
        const RkvRaft__Entry *entry = rd->committed[i];
        const struct rkv_range_apply_result *result = &item->results[i];

        r->applied_index = entry->index;
        if (result->kind == RKV_RANGE_CMD_SPLIT && result->rv == 0) {
            rkv_node__split_applied(r, entry->index, entry->term, result);
        }
        rkv_node__iprop_applied(r, entry->index, entry->term, result);
        finish_proposals(r, entry->index, entry->term, result);
    }
}

/* Returns whether an item carries Raft work whose core goes on (not a
 * placeholder creation, not a replica whose snapshot was refused). */
static bool item_is_live(const struct rkv_node__witem *item)
{
    return item->replica != NULL && !item->replica->restarting;
}

/* Refreshes the stats of replicas that applied entries. */
static void batch_refresh_stats(struct rkv_node *node,
                                struct rkv_node__wbatch *b)
{
    struct rkv_range_rtxn *rtxn;
    int rv;

    rv = rkv_range_rtxn_begin(node->store, &rtxn);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "reading stats failed error=%s", rkv_strerror(rv));
        return;
    }
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        struct rkv_node__replica *r = item->replica;

        if (!item_is_live(item) ||
            (item->rd->n_committed == 0 && item->rd->n_chunks == 0)) {
            continue;
        }
        rkv_range_stats_get(rtxn, r->range_id, &r->stats);
        if (rkv_range_desc_get(rtxn, r->range_id, &r->desc) == 0 &&
            !r->initialized) {
            r->initialized = true;
            node->by_key_stale = true;
        }
    }
    rkv_range_rtxn_end(rtxn);
}

/* Handles a batch that was not written. Its work was never acknowledged to
 * Raft. At stop (the writer gave up waiting for space) it is dropped, as a
 * crash would drop it. Otherwise the store failed in a way a retry does not
 * cure (-EIO, RKV_ECORRUPT, -ENOMEM), and the Raft cores, which consider the
 * work handed out, cannot go on: the storage stops the node (production
 * exits the process), and a restart recovers from the last commit. */
static void batch_done_failed(struct rkv_node *node, struct rkv_node__wbatch *b)
{
    if (node->stopping && rkv_node__is_space_error(b->rv)) {
        rkv_node__wbatch_free(b);
        return;
    }
    RKV_LOG(RKV_ERROR,
            "writing raft work to store %s failed, stopping the node; a "
            "restart recovers from the last commit error=%s",
            node->store_dir, rkv_strerror(b->rv));
    node->storage.ops->failed(node->storage.data, b->rv);
    rkv_node__wbatch_free(b);
}

/* Marks the replicas whose snapshot install the store refused. Their
 * batches are neither acknowledged nor applied: the store skipped their
 * later operations, and their cores restart from the store instead. */
static void batch_mark_refused(struct rkv_node__wbatch *b)
{
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        if (!item->has_install || item->install.rv == 0) {
            continue;
        }
        /* UNTESTED: the placeholder rules keep installs from overlapping a
         * local range, so no test reaches a refusal. */
        RKV_LOG(RKV_WARN,
                "snapshot install refused, restarting raft group range=%llu "
                "error=%s",
                (unsigned long long)item->replica->range_id,
                rkv_strerror(item->install.rv));
        item->replica->restarting = true;
    }
}

/* Opens created placeholders and restarts refused replicas. */
static void batch_finish_replicas(struct rkv_node *node,
                                  struct rkv_node__wbatch *b)
{
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        if (item->create_range_id != 0) {
            rkv_node__placeholder_created(node, item->create_range_id);
        } else if (item->replica->restarting) {
            rkv_node__replica_restart(item->replica);
        }
    }
}

void rkv_node__batch_done(struct rkv_node *node, struct rkv_node__wbatch *b)
{
    node->batch_in_flight = false;
    if (b->rv != 0) {
        batch_done_failed(node, b);
        return;
    }
    batch_mark_refused(b);
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        struct rkv_node__replica *r = item->replica;
        struct rkv_raft_ready *rd = item->rd;
        int rv;

        if (!item_is_live(item)) {
            continue;
        }
#ifdef RKV_NODE_BUGS
        if (node->bug == RKV_NODE_BUG_ACK_BEFORE_PERSIST) {
            rkv_node__replica_mark(r);
            continue;
        }
#endif
        rv = rkv_raft_ack(r->raft, rd->seq);
        assert(rv == 0);
        (void)rv;
        for (size_t i = 0; i < rd->n_messages_after_persist; i++) {
            rkv_node__send_raft(node, rd->messages_after_persist[i]);
        }
        node->counters.n_ready++;
        rkv_node__replica_mark(r);
    }
    batch_refresh_stats(node, b);
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        if (item_is_live(item)) {
            item_applied(node, item);
        }
    }
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        struct rkv_node__replica *r = item->replica;

        if (item_is_live(item) && item->rd->n_committed > 0) {
            serve_reads(r);
            rkv_node__split_maybe(r);
            replica_maybe_compact(r);
        }
    }
    batch_finish_replicas(node, b);
    rkv_node__wbatch_free(b);
}

int rkv_node__propose(struct rkv_node__replica *replica, const uint8_t *data,
                      size_t len, uint64_t *index, uint64_t *term)
{
    int rv;

    rv = rkv_raft_propose(replica->raft, data, len, index, term);
    if (rv != 0) {
        return rv;
    }
    replica->node->counters.n_proposals++;
    rkv_node__replica_wake(replica);
    rkv_node__replica_mark(replica);
    return 0;
}

int rkv_node__transfer_leadership(struct rkv_node__replica *replica,
                                  uint64_t to)
{
    int rv;

    rkv_node__replica_wake(replica);
    rv = rkv_raft_transfer_leadership(replica->raft, to);
    if (rv == 0) {
        rkv_node__replica_mark(replica);
    }
    return rv;
}

int rkv_node__change_replicas(struct rkv_node__replica *replica,
                              enum rkv_raft_conf_change change,
                              uint64_t node_id, uint64_t *index)
{
    struct rkv_raft_conf conf;
    uint64_t term;
    int rv;

    /* A range descriptor has room for fewer servers than a Raft
     * configuration, and a committed configuration the store cannot record
     * would stop the node at every apply. */
    rkv_raft_conf_get(replica->raft, &conf);
    if (change == RKV_RAFT_ADD_LEARNER &&
        conf.n_servers >= RKV_RANGE_REPLICAS_MAX) {
        return RKV_ETOOLARGE;
    }
    rv = rkv_raft_propose_conf_change(replica->raft, change, node_id, index,
                                      &term);
    if (rv != 0) {
        return rv;
    }
    RKV_LOG(RKV_INFO,
            "proposed membership change range=%llu change=%d "
            "node=%llu index=%llu",
            (unsigned long long)replica->range_id, (int)change,
            (unsigned long long)node_id, (unsigned long long)*index);
    rkv_node__replica_wake(replica);
    rkv_node__replica_mark(replica);
    return 0;
}

/* Returns whether msg carries a term no real member can have reached: one
 * at which no election could follow (term + 1 would wrap), or one more than
 * RKV_NODE_TERM_JUMP_MAX ahead of the local term. Each election adds one to
 * the term, so a real member is never that far ahead. Such a term comes
 * from a forged or corrupt message. Adopting it would persist it and stop
 * the range from ever electing a leader again. */
static bool replica_term_is_absurd(const struct rkv_node__replica *replica,
                                   const RkvRaft__Message *msg)
{
    uint64_t term = rkv_raft_term(replica->raft);

    if (msg->term == UINT64_MAX) {
        return true;
    }
    return msg->term > term && msg->term - term > RKV_NODE_TERM_JUMP_MAX;
}

void rkv_node__replica_step(struct rkv_node__replica *replica,
                            const RkvRaft__Message *msg, uint64_t from)
{
    struct rkv_node *node = replica->node;
    int rv;

    if (replica_term_is_absurd(replica, msg)) {
        /* WARN on the first and every RKV_NODE_TERM_WARN_EVERY-th. */
        RKV_LOG(node->n_raft_rejected % RKV_NODE_TERM_WARN_EVERY == 0
                    ? RKV_WARN
                    : RKV_DEBUG,
                "dropped raft message with an impossible term range=%llu "
                "peer=%llu type=%d term=%llu local_term=%llu dropped=%llu",
                (unsigned long long)replica->range_id, (unsigned long long)from,
                (int)msg->type, (unsigned long long)msg->term,
                (unsigned long long)rkv_raft_term(replica->raft),
                (unsigned long long)node->n_raft_rejected + 1);
        node->n_raft_rejected++;
        return;
    }
    rv = rkv_raft_step(replica->raft, msg);
    if (rv != 0) {
        RKV_LOG(RKV_DEBUG, "raft step failed range=%llu peer=%llu error=%s",
                (unsigned long long)replica->range_id, (unsigned long long)from,
                rkv_strerror(rv));
    }
    /* A message that leaves work (a response to send, entries to write)
     * wakes a quiesced range. A late heartbeat response to a leader that
     * just quiesced leaves none, so it does not undo the quiescence. A vote
     * request may leave none either, because a replica in its lease ignores
     * it. It comes from a replica that did not quiesce, such as a follower
     * that missed the last commit index. The range wakes so that the
     * leader's heartbeats reach that follower and the next quiesce includes
     * it. Otherwise the follower would campaign for ever. */
    if (rkv_raft_has_ready(replica->raft) ||
        (replica->quiesced &&
         (msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_PRE_VOTE ||
          msg->type == RKV_RAFT__MESSAGE_TYPE__MSG_VOTE))) {
        rkv_node__replica_wake(replica);
        rkv_node__replica_mark(replica);
    }
}

void rkv_node__deliver_raft(struct rkv_node *node, const RkvRaft__Message *msg)
{
    struct rkv_node__replica *replica =
        rkv_node__replica_find(node, msg->group_id);

    if (replica == NULL) {
        rkv_node__placeholder_maybe_create(node, msg->group_id);
        rkv_node__hold_message(node, msg);
        return;
    }
    rkv_node__replica_step(replica, msg, msg->from);
}

/* ---- messages for ranges not created yet -------------------------------- */

static void held_pop(struct rkv_node *node)
{
    struct rkv_node__held *h = node->held_head;

    node->held_head = h->next;
    if (node->held_head == NULL) {
        node->held_tail = NULL;
    }
    node->n_held--;
    node->held_bytes -= h->len;
    rkv_free(h);
}

void rkv_node__hold_message(struct rkv_node *node, const RkvRaft__Message *msg)
{
    size_t len = rkv_raft__message__get_packed_size(msg);
    struct rkv_node__held *h;

    if (len > RKV_NODE_HELD_BYTES_MAX) {
        return;
    }
    while (node->held_head != NULL &&
           (node->n_held >= RKV_NODE_HELD_MAX ||
            node->held_bytes + len > RKV_NODE_HELD_BYTES_MAX)) {
        held_pop(node);
    }
    h = rkv_malloc(sizeof(*h) + len);
    if (h == NULL) {
        return; /* Raft resends a dropped message. */
    }
    h->range_id = msg->group_id;
    h->expire_ms = rkv_node__now_ms(node) + RKV_NODE_HELD_TTL_MS;
    h->len = len;
    h->next = NULL;
    rkv_raft__message__pack(msg, h->packed);
    if (node->held_tail != NULL) {
        node->held_tail->next = h;
    } else {
        node->held_head = h;
    }
    node->held_tail = h;
    node->n_held++;
    node->held_bytes += len;
    RKV_TRACEF("held message for absent range=%llu held=%zu",
               (unsigned long long)msg->group_id, node->n_held);
}

void rkv_node__held_expire(struct rkv_node *node, uint64_t now_ms)
{
    while (node->held_head != NULL && node->held_head->expire_ms <= now_ms) {
        held_pop(node);
    }
}

void rkv_node__replay_held(struct rkv_node__replica *replica)
{
    struct rkv_node *node = replica->node;
    struct rkv_node__held **link = &node->held_head;
    struct rkv_node__held *prev = NULL;

    while (*link != NULL) {
        struct rkv_node__held *h = *link;
        RkvRaft__Message *msg;

        if (h->range_id != replica->range_id) {
            prev = h;
            link = &h->next;
            continue;
        }
        *link = h->next;
        if (node->held_tail == h) {
            node->held_tail = prev;
        }
        node->n_held--;
        node->held_bytes -= h->len;
        msg = rkv_raft__message__unpack(NULL, h->len, h->packed);
        if (msg != NULL) {
            rkv_node__replica_step(replica, msg, msg->from);
            rkv_raft__message__free_unpacked(msg, NULL);
        }
        rkv_free(h);
    }
}

void rkv_node__replica_wake(struct rkv_node__replica *replica)
{
    replica->n_ticks_idle = 0;
    if (replica->quiesced) {
        replica->quiesced = false;
        RKV_TRACEF("woke range=%llu", (unsigned long long)replica->range_id);
    }
}

/* Stops ticking an idle leader's range and sends a Quiesce, with the commit
 * index a follower must have to stop too, to every other replica's node. */
static void replica_quiesce(struct rkv_node__replica *r)
{
    Rkv__Peer__Quiesce quiesce = RKV__PEER__QUIESCE__INIT;

    quiesce.range_id = r->range_id;
    quiesce.term = rkv_raft_term(r->raft);
    quiesce.commit = rkv_raft_commit_index(r->raft);
    for (size_t i = 0; i < r->desc.n_replicas; i++) {
        rkv_node__send_quiesce(r->node, r->desc.replicas[i].node_id, &quiesce);
    }
    r->quiesced = true;
}

/* Returns whether one of r's replicas is on node_id. */
static bool replica_has_node(const struct rkv_node__replica *r,
                             uint64_t node_id)
{
    for (size_t i = 0; i < r->desc.n_replicas; i++) {
        if (r->desc.replicas[i].node_id == node_id) {
            return true;
        }
    }
    return false;
}

void rkv_node__wake_ranges_of(struct rkv_node *node, uint64_t peer_id)
{
    for (size_t i = 0; i < node->n_buckets; i++) {
        for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
             r = r->hash_next) {
            if (!r->quiesced) {
                continue;
            }
            if (r->role == RKV_RAFT_LEADER ? replica_has_node(r, peer_id)
                                           : r->leader_id == peer_id) {
                rkv_node__replica_wake(r);
            }
        }
    }
}

void rkv_node__quiesce_recv(struct rkv_node *node, uint64_t from_node_id,
                            const Rkv__Peer__Quiesce *quiesce)
{
    struct rkv_node__replica *r =
        rkv_node__replica_find(node, quiesce->range_id);

    /* Only a follower that has everything the leader has may stop: it then
     * needs nothing until the next proposal, which wakes it. */
    if (r == NULL || r->role != RKV_RAFT_FOLLOWER ||
        r->leader_id != from_node_id ||
        rkv_raft_term(r->raft) != quiesce->term ||
        rkv_raft_commit_index(r->raft) != quiesce->commit ||
        rkv_raft_last_index(r->raft) != quiesce->commit) {
        return;
    }
    r->quiesced = true;
}

/* Returns whether a leader's range has been idle through this tick. The
 * check runs before the tick, because a tick queues heartbeats and a core
 * with work queued is never idle. */
static bool replica_idle_tick(struct rkv_node__replica *r)
{
    if (r->role != RKV_RAFT_LEADER || !r->initialized ||
        r->split_state != RKV_NODE_SPLIT_IDLE || r->compact_pending != 0 ||
        !rkv_raft_is_idle(r->raft)) {
        r->n_ticks_idle = 0;
        return false;
    }
    r->n_ticks_idle++;
    return true;
}

/* Ticks one awake replica, or quiesces a leader idle for long enough. */
static void replica_tick(struct rkv_node__replica *r)
{
    int rv;

    if (replica_idle_tick(r) && r->n_ticks_idle >= RKV_NODE_QUIESCE_TICKS) {
        replica_quiesce(r);
        return;
    }
    rv = rkv_raft_tick(r->raft);
    if (rv != 0) {
        RKV_LOG(RKV_WARN, "tick failed range=%llu error=%s",
                (unsigned long long)r->range_id, rkv_strerror(rv));
    }
    rkv_node__replica_mark(r);
}

void rkv_node__tick_replicas(struct rkv_node *node)
{
    uint64_t election_ms = (uint64_t)RKV_NODE_ELECTION_TICKS * node->tick_ms;

    for (size_t i = 0; i < node->n_buckets; i++) {
        for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
             r = r->hash_next) {
            /* A quiesced follower wakes when its leader's node has been
             * silent for an election timeout, so that a dead leader is
             * replaced as if the range had never quiesced. */
            if (r->quiesced && r->role != RKV_RAFT_LEADER &&
                !rkv_node__peer_is_live(node, r->leader_id, election_ms)) {
                rkv_node__replica_wake(r);
            }
            if (!r->quiesced) {
                replica_tick(r);
            }
            if (r->role == RKV_RAFT_LEADER) {
                rkv_node__split_meta_tick(r);
            }
        }
    }
}

void rkv_node__replica_fail_waiting(struct rkv_node__replica *replica, int rv,
                                    const char *message)
{
    fail_request_list(&replica->reads, rv, message);
    fail_request_list(&replica->split_waiters, rv, message);
    replica->split_state = RKV_NODE_SPLIT_IDLE;
    for (size_t i = 0; i < RKV_NODE_JOIN_MAX; i++) {
        snapshot_reader_close(replica, i);
    }
}

void rkv_node__replica_stop(struct rkv_node__replica *replica)
{
    fail_request_list(&replica->proposals, RKV_ESHUTDOWN,
                      "node stopping; the write may still apply");
    rkv_node__replica_fail_waiting(replica, RKV_ESHUTDOWN, "node stopping");
}

void rkv_node__replica_free(struct rkv_node__replica *replica)
{
    assert(replica->proposals.head == NULL);
    assert(replica->reads.head == NULL);
    assert(replica->split_waiters.head == NULL);
    rkv_raft_free(replica->raft);
    rkv_free(replica);
}
