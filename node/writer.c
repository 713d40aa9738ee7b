/*
 * The writer thread: group commit of the Raft work of every range.
 *
 * Happy path: the loop thread collects the ready batches of all replicas
 * with work into one struct rkv_node__wbatch and submits it when the writer
 * is idle. The writer records, per item and in order, the staged snapshot
 * chunks, the log appends, the hard state and the applies of committed
 * entries into one rkv_range_wtxn, commits it with one fsync, and wakes the
 * loop through writer.async. While it writes, the loop keeps collecting the
 * next batch, so under load every fsync carries the work of many requests
 * and many ranges.
 *
 * Failure: a failed commit leaves nothing committed. Raft has already handed
 * out the batch and cannot take it back. The loop therefore logs the error
 * and aborts the process (see rkv_node__batch_done()), and a restart
 * recovers from the last commit.
 *
 * Invariant: at most one batch is between submit and completion.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <string.h>

static void witem_free(struct rkv_node__witem *item)
{
    if (item->results != NULL) {
        assert(item->rd != NULL);
        for (size_t i = 0; i < item->rd->n_committed; i++) {
            rkv_range_apply_result_free(&item->results[i]);
        }
    }
    rkv_free(item->results);
    rkv_free(item->entries);
    rkv_free(item->committed);
    rkv_raft_ready_free(item->rd);
    rkv_free(item);
}

void rkv_node__wbatch_free(struct rkv_node__wbatch *b)
{
    struct rkv_node__witem *item;

    if (b == NULL) {
        return;
    }
    item = b->head;
    while (item != NULL) {
        struct rkv_node__witem *next = item->next;

        witem_free(item);
        item = next;
    }
    rkv_free(b);
}

static void writer_convert_entries(RkvRaft__Entry **in, size_t n,
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

/* Records one snapshot chunk, and the install when it is the last. A
 * refused install (install->rv at commit) skips only this range's later
 * operations; the loop then restarts its Raft core. */
static int writer_record_chunk(struct rkv_range_wtxn *wtxn,
                               struct rkv_node__witem *item,
                               const struct rkv_raft_snapshot_chunk *chunk)
{
    uint64_t range_id = item->replica->range_id;
    int rv;

    rv = rkv_range_snapshot_install_chunk(wtxn, range_id, chunk->data,
                                          chunk->data_len);
    if (rv != 0 || !chunk->last) {
        return rv;
    }
    item->has_install = true;
    return rkv_range_snapshot_install_finish(wtxn, range_id, &item->install);
}

/* Records the operations of one item, in the order raft.h prescribes:
 * chunks, entries, hard state, then applies, then compaction. */
static int writer_record_item(struct rkv_range_wtxn *wtxn,
                              struct rkv_node__witem *item)
{
    struct rkv_raft_ready *rd = item->rd;
    uint64_t range_id;
    int rv;

    if (item->create_range_id != 0) {
        return rkv_range_create_uninit(wtxn, item->create_range_id);
    }
    range_id = item->replica->range_id;
    for (size_t i = 0; i < rd->n_chunks; i++) {
        rv = writer_record_chunk(wtxn, item, &rd->chunks[i]);
        if (rv != 0) {
            return rv;
        }
    }
    if (rd->n_entries > 0) {
        rv = rkv_range_log_append(wtxn, range_id, item->entries, rd->n_entries);
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
    for (size_t i = 0; i < rd->n_committed; i++) {
        rv = rkv_range_apply(wtxn, range_id, &item->committed[i],
                             &item->results[i]);
        if (rv != 0) {
            return rv;
        }
    }
    if (item->compact_index != 0) {
        return rkv_range_log_compact(wtxn, range_id, item->compact_index);
    }
    return 0;
}

/* Allocates the converted arrays of an item (writer thread). */
static int writer_prepare_item(struct rkv_node__witem *item)
{
    struct rkv_raft_ready *rd = item->rd;

    if (rd == NULL) {
        return 0;
    }
    if (rd->n_entries > 0) {
        item->entries = rkv_calloc(rd->n_entries, sizeof(*item->entries));
        if (item->entries == NULL) {
            return -ENOMEM;
        }
        writer_convert_entries(rd->entries, rd->n_entries, item->entries);
    }
    if (rd->n_committed > 0) {
        item->committed = rkv_calloc(rd->n_committed, sizeof(*item->committed));
        item->results = rkv_calloc(rd->n_committed, sizeof(*item->results));
        if (item->committed == NULL || item->results == NULL) {
            return -ENOMEM;
        }
        writer_convert_entries(rd->committed, rd->n_committed, item->committed);
    }
    return 0;
}

static int writer_commit_batch(struct rkv_range_store *store,
                               struct rkv_node__wbatch *b)
{
    struct rkv_range_wtxn *wtxn;
    int rv;

    rv = rkv_range_wtxn_begin(store, &wtxn);
    if (rv != 0) {
        goto err;
    }
    for (struct rkv_node__witem *item = b->head; item != NULL;
         item = item->next) {
        rv = writer_prepare_item(item);
        if (rv != 0) {
            goto err_after_begin;
        }
        rv = writer_record_item(wtxn, item);
        if (rv != 0) {
            goto err_after_begin;
        }
    }
    return rkv_range_wtxn_commit(wtxn);

err_after_begin:
    rkv_range_wtxn_abort(wtxn);
err:
    assert(rv != 0);
    return rv;
}

static void *writer_main(void *arg)
{
    struct rkv_node *node = arg;
    struct rkv_node__writer *w = &node->writer;

    rkv_log_set_thread_node_id(node->node_id);
    pthread_mutex_lock(&w->mutex);
    for (;;) {
        struct rkv_node__wbatch *b;

        while (w->submitted == NULL && !w->stop) {
            pthread_cond_wait(&w->cond, &w->mutex);
        }
        if (w->submitted == NULL) {
            break;
        }
        b = w->submitted;
        w->submitted = NULL;
        pthread_mutex_unlock(&w->mutex);

        b->rv = writer_commit_batch(w->store, b);

        pthread_mutex_lock(&w->mutex);
        w->done = b;
        uv_async_send(&w->async);
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

int rkv_node__writer_start(struct rkv_node *node)
{
    struct rkv_node__writer *w = &node->writer;
    int rv;

    w->store = node->store;
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->cond, NULL);
    rv = pthread_create(&w->thread, NULL, writer_main, node);
    if (rv != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mutex);
        return -rv;
    }
    return 0;
}

void rkv_node__writer_submit(struct rkv_node__writer *w,
                             struct rkv_node__wbatch *b)
{
    assert(!w->busy);
    pthread_mutex_lock(&w->mutex);
    assert(w->submitted == NULL);
    w->submitted = b;
    w->busy = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
}

void rkv_node__writer_stop(struct rkv_node__writer *w)
{
    pthread_mutex_lock(&w->mutex);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    pthread_join(w->thread, NULL);
    rkv_node__wbatch_free(w->done);
    w->done = NULL;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mutex);
}
