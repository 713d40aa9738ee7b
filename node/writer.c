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
 * Failure: a failed commit leaves nothing committed, and Raft has already
 * handed out the batch, so the batch is never acknowledged until a commit
 * of it succeeds:
 *   - lack of space: -ENOSPC from a full disk, -EIO from a short write
 *     while the disk is within its reserve, or RKV_EMAPFULL from the map at
 *     its limit. The writer records the same batch again and retries it,
 *     with a backoff from RKV_NODE_STALL_RETRY_MIN_MS doubling to
 *     RKV_NODE_STALL_RETRY_MAX_MS. It publishes the error in stalled_rv, so
 *     the loop rejects new writes (RKV_ENOSPACE or RKV_EMAPFULL) and keeps
 *     serving reads. It warns once, then at most every
 *     RKV_NODE_STALL_WARN_MS. Once space is freed the retry commits and the
 *     node goes on by itself. At stop the writer gives up, and the batch is
 *     dropped unacknowledged, as a crash would drop it.
 *   - any other error (-EIO, RKV_ECORRUPT, -ENOMEM): the loop logs why and
 *     exits the process (see rkv_node__batch_done()); a restart recovers
 *     from the last commit.
 *
 * Invariant: at most one batch is between submit and completion.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

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

void rkv_node__wbatch_drop_replica(struct rkv_node__wbatch *b,
                                   const struct rkv_node__replica *replica)
{
    struct rkv_node__witem **link;
    struct rkv_node__witem *prev = NULL;

    if (b == NULL) {
        return;
    }
    link = &b->head;
    while (*link != NULL) {
        struct rkv_node__witem *item = *link;

        if (item->replica != replica) {
            prev = item;
            link = &item->next;
            continue;
        }
        *link = item->next;
        if (b->tail == item) {
            b->tail = prev;
        }
        b->n_items--;
        witem_free(item);
    }
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

/* Applies a committed configuration entry to the range's descriptor in the
 * same transaction (replica ids are node ids). */
static int writer_record_conf(struct rkv_range_wtxn *wtxn, uint64_t range_id,
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
        if (rv == 0 && item->committed[i].type == RKV_RANGE_ENTRY_CONF) {
            rv = writer_record_conf(wtxn, range_id, &item->committed[i]);
        }
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

    if (rd == NULL || item->prepared) {
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
    item->prepared = true;
    return 0;
}

int rkv_node__wbatch_commit(struct rkv_range_store *store,
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

bool rkv_node__is_space_error(int rv)
{
    return rv == -ENOSPC || rv == -EDQUOT || rv == RKV_EMAPFULL;
}

static uint64_t writer_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits delay_ms before the next attempt (mutex held). Returns false when
 * the node asked the writer to give up. */
static bool writer_backoff(struct rkv_node__writer *w, uint64_t delay_ms)
{
    uint64_t until_ms = writer_now_ms() + delay_ms;
    struct timespec ts = {
        .tv_sec = (time_t)(until_ms / 1000),
        .tv_nsec = (long)(until_ms % 1000) * 1000000,
    };

    while (!w->give_up && writer_now_ms() < until_ms) {
        pthread_cond_timedwait(&w->cond, &w->mutex, &ts);
    }
    return !w->give_up;
}

static const char *writer_space_reason(int rv)
{
    return rv == RKV_EMAPFULL ? "the LMDB map reached its size limit "
                                "(--map-size-max)"
                              : "the disk is full";
}

/* Returns the reserve kept free out of total bytes. */
static uint64_t space_reserve(uint64_t total)
{
    return RKV_MIN(total / RKV_NODE_SPACE_RESERVE_DIVISOR,
                   RKV_NODE_SPACE_RESERVE_MAX);
}

/* LMDB reports a short write, which is how a full file system often shows,
 * as EIO. An EIO while the store's file system is within its reserve is
 * taken for that and becomes -ENOSPC. */
static int writer_space_cause(struct rkv_node__writer *w, int rv)
{
    struct statvfs fs;

    if (rv != -EIO || statvfs(w->store_dir, &fs) != 0) {
        return rv;
    }
    if ((uint64_t)fs.f_bavail * fs.f_frsize <
        space_reserve((uint64_t)fs.f_blocks * fs.f_frsize)) {
        return -ENOSPC;
    }
    return rv;
}

/* Commits b, retrying for as long as the commit fails for lack of space
 * (mutex not held). Returns the commit's final status. */
static int writer_commit_retrying(struct rkv_node__writer *w,
                                  struct rkv_node__wbatch *b)
{
    uint64_t delay_ms = RKV_NODE_STALL_RETRY_MIN_MS;
    uint64_t warned_ms = 0;
    uint64_t n_attempts = 1;
    int rv;

    rv = writer_space_cause(w, rkv_node__wbatch_commit(w->store, b));
    while (rkv_node__is_space_error(rv)) {
        uint64_t now_ms = writer_now_ms();
        bool go_on;

        if (n_attempts == 1) {
            atomic_store(&w->stalled_rv, rv);
        }
        if (warned_ms == 0 || now_ms - warned_ms >= RKV_NODE_STALL_WARN_MS) {
            RKV_LOG(RKV_WARN,
                    "writes stopped: %s, store %s: retrying the pending "
                    "raft work until space is freed attempts=%llu "
                    "error=%s",
                    writer_space_reason(rv), w->store_dir,
                    (unsigned long long)n_attempts, rkv_strerror(rv));
            warned_ms = now_ms;
        }
        pthread_mutex_lock(&w->mutex);
        go_on = writer_backoff(w, delay_ms);
        pthread_mutex_unlock(&w->mutex);
        if (!go_on) {
            RKV_LOG(RKV_WARN,
                    "stopping with unwritten raft work, none of it was "
                    "acknowledged store=%s error=%s",
                    w->store_dir, rkv_strerror(rv));
            return rv;
        }
        delay_ms = RKV_MIN(delay_ms * 2, RKV_NODE_STALL_RETRY_MAX_MS);
        n_attempts++;
        rv = writer_space_cause(w, rkv_node__wbatch_commit(w->store, b));
    }
    if (n_attempts > 1) {
        atomic_store(&w->stalled_rv, 0);
        if (rv == 0) {
            RKV_LOG(RKV_INFO, "writes resumed store=%s attempts=%llu",
                    w->store_dir, (unsigned long long)n_attempts);
        }
    }
    return rv;
}

static int writer_stalled(void *data)
{
    struct rkv_node__writer *w = data;
    int rv = atomic_load(&w->stalled_rv);

    if (rv == 0) {
        return 0;
    }
    return rv == RKV_EMAPFULL ? RKV_EMAPFULL : RKV_ENOSPACE;
}

/* Returns RKV_ENOSPACE or RKV_EMAPFULL when the store is within its
 * reserve, 0 otherwise; fills a description for the log. */
static int space_measure(struct rkv_node *node, char *detail, size_t detail_len)
{
    struct rkv_range_store_space space;
    struct statvfs fs;

    if (statvfs(node->store_dir, &fs) == 0) {
        uint64_t total = (uint64_t)fs.f_blocks * fs.f_frsize;
        uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;

        if (avail < space_reserve(total)) {
            snprintf(detail, detail_len, "free=%llu reserve=%llu",
                     (unsigned long long)avail,
                     (unsigned long long)space_reserve(total));
            return RKV_ENOSPACE;
        }
    }
    rkv_range_store_space(node->store, &space);
    if (space.used_bytes + space_reserve(space.map_size_max) >
        space.map_size_max) {
        snprintf(detail, detail_len, "map_used=%llu map_size_max=%llu",
                 (unsigned long long)space.used_bytes,
                 (unsigned long long)space.map_size_max);
        return RKV_EMAPFULL;
    }
    return 0;
}

void rkv_node__space_check(struct rkv_node *node, bool force)
{
    uint64_t now_ms = rkv_monotonic_ms();
    char detail[128] = "";
    int rv;

    if (!force && now_ms < node->space_check_after_ms) {
        return;
    }
    node->space_check_after_ms = now_ms + RKV_NODE_SPACE_CHECK_MS;
    rv = space_measure(node, detail, sizeof(detail));
    if (rv == node->space_low_rv) {
        return;
    }
    if (rv != 0) {
        RKV_LOG(RKV_WARN,
                "writes stopped: %s, store %s: new writes are rejected until "
                "space is freed %s",
                rv == RKV_EMAPFULL
                    ? "the LMDB map is near its size limit (--map-size-max)"
                    : "the disk is nearly full",
                node->store_dir, detail);
    } else {
        RKV_LOG(RKV_INFO, "writes resumed, space is available store=%s",
                node->store_dir);
    }
    node->space_low_rv = rv;
}

int rkv_node__writes_blocked(struct rkv_node *node)
{
    int rv = node->storage.ops->stalled(node->storage.data);

    return rv != 0 ? rv : node->space_low_rv;
}

void rkv_node__writer_give_up(struct rkv_node__writer *w)
{
    pthread_mutex_lock(&w->mutex);
    w->give_up = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mutex);
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

        b->rv = writer_commit_retrying(w, b);

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
    pthread_condattr_t attr;
    int rv;

    w->store = node->store;
    w->store_dir = node->store_dir;
    atomic_store(&w->stalled_rv, 0);
    pthread_mutex_init(&w->mutex, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    rv = pthread_create(&w->thread, NULL, writer_main, node);
    if (rv != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mutex);
        return -rv;
    }
    return 0;
}

static void writer_submit(void *data, struct rkv_node__wbatch *b)
{
    struct rkv_node__writer *w = data;

    pthread_mutex_lock(&w->mutex);
    assert(w->submitted == NULL);
    assert(w->done == NULL);
    w->submitted = b;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
}

/* The store failed in a way a retry does not cure; the loop logged why.
 * The process exits, and a restart recovers from the last commit. */
static void writer_failed(void *data, int rv)
{
    (void)data;
    (void)rv;
    fflush(NULL);
    _exit(EXIT_FAILURE);
}

const struct rkv_node__storage_ops rkv_node__writer_ops = {
    .submit = writer_submit,
    .stalled = writer_stalled,
    .failed = writer_failed,
};

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
