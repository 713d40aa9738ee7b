/*
 * Ready batches: moving the replica's pending output into a batch the
 * caller owns, and rkv_raft_ack() which reports batches durable.
 *
 * Invariants:
 *   1. Batch seqs increase by one; the caller acks them in order.
 *   2. A batch's entries start at the first index not handed out before,
 *      so the caller deletes stored entries from entries[0]->index on.
 *   3. Committed entries are handed out only up to persisted_index.
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

static bool hard_state_changed(const struct rkv_raft *r)
{
    return r->term != r->hs_emitted.term || r->vote != r->hs_emitted.vote ||
           r->commit != r->hs_emitted.commit;
}

static uint64_t apply_limit(const struct rkv_raft *r)
{
    return RKV_MIN(r->commit, r->persisted_index);
}

bool rkv_raft_has_ready(const struct rkv_raft *r)
{
    return r->role_changed || hard_state_changed(r) || r->n_chunks > 0 ||
           r->unstable_index <= rkv_raft__last_index(r) || r->msgs.n > 0 ||
           r->msgs_after.n > 0 || apply_limit(r) > r->applied ||
           r->n_reads_done > 0 || r->n_snap_requests > 0;
}

static void entries_free(RkvRaft__Entry **entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rkv_raft__entry_free(entries[i]);
    }
    rkv_free(entries);
}

/* Copies entries first..last into a new array; NULL only on failure or
 * when the range is empty (then *n is 0). */
static int copy_entries(const struct rkv_raft *r, uint64_t first,
                        uint64_t last, RkvRaft__Entry ***out, size_t *n)
{
    RkvRaft__Entry **entries;
    size_t count;

    *out = NULL;
    *n = 0;
    if (first > last) {
        return 0;
    }
    count = (size_t)(last - first + 1);
    entries = rkv_calloc(count, sizeof(*entries));
    if (entries == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        entries[i] = rkv_raft__entry_copy(rkv_raft__entry(r, first + i));
        if (entries[i] == NULL) {
            entries_free(entries, i);
            return -ENOMEM;
        }
    }
    *out = entries;
    *n = count;
    return 0;
}

static int batch_push(struct rkv_raft *r, const struct rkv_raft_batch *batch)
{
    if (r->n_batches == r->cap_batches) {
        size_t cap = r->cap_batches == 0 ? 8 : r->cap_batches * 2;
        struct rkv_raft_batch *grown;

        grown = rkv_realloc(r->batches, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        r->batches = grown;
        r->cap_batches = cap;
    }
    r->batches[r->n_batches++] = *batch;
    return 0;
}

/* Moves the queued outputs into rd; only pointers move, so it cannot
 * fail. */
static void ready_take_queues(struct rkv_raft *r, struct rkv_raft_ready *rd)
{
    rd->chunks = r->chunks;
    rd->n_chunks = r->n_chunks;
    r->chunks = NULL;
    r->n_chunks = 0;
    r->cap_chunks = 0;

    rd->messages = r->msgs.items;
    rd->n_messages = r->msgs.n;
    rd->messages_after_persist = r->msgs_after.items;
    rd->n_messages_after_persist = r->msgs_after.n;
    memset(&r->msgs, 0, sizeof(r->msgs));
    memset(&r->msgs_after, 0, sizeof(r->msgs_after));

    rd->reads = r->reads_done;
    rd->n_reads = r->n_reads_done;
    r->reads_done = NULL;
    r->n_reads_done = 0;
    r->cap_reads_done = 0;

    rd->snapshot_requests = r->snap_requests;
    rd->n_snapshot_requests = r->n_snap_requests;
    r->snap_requests = NULL;
    r->n_snap_requests = 0;
    r->cap_snap_requests = 0;
}

static bool ready_has_install(const struct rkv_raft_ready *rd)
{
    return rd->n_chunks > 0 && rd->chunks[rd->n_chunks - 1].last;
}

int rkv_raft_ready(struct rkv_raft *r, struct rkv_raft_ready **out)
{
    struct rkv_raft_ready *rd;
    struct rkv_raft_batch batch = {0};
    uint64_t last_index = rkv_raft__last_index(r);
    int rv;

    rd = rkv_calloc(1, sizeof(*rd));
    if (rd == NULL) {
        return -ENOMEM;
    }
    rv = copy_entries(r, r->unstable_index, last_index, &rd->entries,
                      &rd->n_entries);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = copy_entries(r, r->applied + 1, apply_limit(r), &rd->committed,
                      &rd->n_committed);
    if (rv != 0) {
        goto err_after_entries;
    }
    batch.seq = r->ready_seq + 1;
    batch.has_term = hard_state_changed(r);
    batch.term = r->term;
    batch.has_log = rd->n_entries > 0 || r->n_chunks > 0;
    batch.last_index = last_index;
    batch.last_term = rkv_raft__last_term(r);
    if (batch.has_log || batch.has_term) {
        rv = batch_push(r, &batch);
        if (rv != 0) {
            goto err_after_committed;
        }
    }

    /* Nothing below fails: commit the hand-over. */
    rd->seq = ++r->ready_seq;
    rd->role_changed = r->role_changed;
    rd->role = r->role;
    rd->leader_id = r->leader_id;
    r->role_changed = false;
    rd->has_hard_state = batch.has_term;
    rd->hard_state.term = r->term;
    rd->hard_state.vote = r->vote;
    rd->hard_state.commit = r->commit;
    r->hs_emitted = rd->hard_state;
    r->unstable_index = last_index + 1;
    if (rd->n_committed > 0) {
        r->applied = rd->committed[rd->n_committed - 1]->index;
    }
    ready_take_queues(r, rd);
    assert(!ready_has_install(rd) || rd->n_committed == 0 ||
           rd->committed[0]->index > rd->chunks[rd->n_chunks - 1].meta.index);
    *out = rd;
    return 0;

err_after_committed:
    entries_free(rd->committed, rd->n_committed);
err_after_entries:
    entries_free(rd->entries, rd->n_entries);
err_after_alloc:
    rkv_free(rd);
    assert(rv != 0);
    return rv;
}

int rkv_raft_ack(struct rkv_raft *r, uint64_t seq)
{
    size_t n_done = 0;

    if (seq > r->ready_seq) {
        return -EINVAL;
    }
    while (n_done < r->n_batches && r->batches[n_done].seq <= seq) {
        const struct rkv_raft_batch *batch = &r->batches[n_done];

        /* Log matching (thesis 3.5): if the batch's last entry is still
         * in the log with the same term, every entry before it is too. */
        if (batch->has_log && batch->last_index > r->persisted_index &&
            rkv_raft__term(r, batch->last_index) == batch->last_term) {
            r->persisted_index = batch->last_index;
        }
        if (batch->has_term && batch->term > r->durable_term) {
            r->durable_term = batch->term;
        }
        n_done++;
    }
    if (n_done > 0) {
        memmove(r->batches, r->batches + n_done,
                (r->n_batches - n_done) * sizeof(*r->batches));
        r->n_batches -= n_done;
    }

    if (r->role == RKV_RAFT_LEADER) {
        return rkv_raft__maybe_commit(r);
    }
    return 0;
}

void rkv_raft_ready_free(struct rkv_raft_ready *rd)
{
    if (rd == NULL) {
        return;
    }
    for (size_t i = 0; i < rd->n_chunks; i++) {
        rkv_free(rd->chunks[i].data);
    }
    rkv_free(rd->chunks);
    entries_free(rd->entries, rd->n_entries);
    for (size_t i = 0; i < rd->n_messages; i++) {
        rkv_raft__msg_free(rd->messages[i]);
    }
    rkv_free(rd->messages);
    for (size_t i = 0; i < rd->n_messages_after_persist; i++) {
        rkv_raft__msg_free(rd->messages_after_persist[i]);
    }
    rkv_free(rd->messages_after_persist);
    entries_free(rd->committed, rd->n_committed);
    rkv_free(rd->reads);
    rkv_free(rd->snapshot_requests);
    rkv_free(rd);
}
