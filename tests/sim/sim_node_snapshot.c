/*
 * Log compaction and snapshot transfer on the simulated nodes (only with
 * options.compact; node/ does neither yet).
 *
 * Compaction: once a replica has applied RKV_SIM_COMPACT_LAG entries past
 * its compaction point, it compacts its stored log up to
 * RKV_SIM_COMPACT_KEEP entries below its applied index, in a write of its
 * own, then calls rkv_raft_compact(). A follower that
 * falls behind the leader's compaction point then needs a snapshot.
 *
 * Leader side: at chunk 0 of a transfer, every chunk of an
 * rkv_range_snapshot_reader (one LMDB read transaction at the applied
 * index) is read into memory, and the reader is closed at once. An open
 * reader would block a map growth in this single thread. Each
 * request is then served from memory with rkv_raft_snapshot_chunk(). The
 * chunks are freed after the last one, when the core rejects one, or when
 * the replica stops leading.
 *
 * Follower side: the chunks of a ready batch are staged with
 * rkv_range_snapshot_install_chunk() and the last one installed with
 * rkv_range_snapshot_install_finish(), in the same transaction as the rest
 * of the batch and before it, as raft.h prescribes. When the store refuses
 * the install (its span still overlaps the unsplit left range here), that
 * range's core restarts from the store as range.h asks, and the leader
 * sends the snapshot again.
 *
 * A snapshot of a left range can skip a split on a lagging node, which
 * then learns of the right-hand range only from its Raft messages: the
 * node creates an uninitialized replica for them (sim_node.c), filled
 * later by the split or by a snapshot of the right range.
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim_node_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

/* Entries applied past the compaction point before compacting again. */
#define RKV_SIM_COMPACT_LAG 24
/* Entries kept below the applied index at a compaction. */
#define RKV_SIM_COMPACT_KEEP 4
/* Snapshot chunk size in bytes: small, so transfers take several chunks. */
#define RKV_SIM_SNAPSHOT_CHUNK_BYTES 256

static struct sim_snapshot_out *snapshot_out_find(struct sim_replica *r,
                                                  uint64_t to)
{
    for (struct sim_snapshot_out *s = r->snapshots_out; s != NULL;
         s = s->next) {
        if (s->to == to) {
            return s;
        }
    }
    return NULL;
}

static void snapshot_out_close(struct sim_replica *r,
                               struct sim_snapshot_out *s)
{
    struct sim_snapshot_out **link = &r->snapshots_out;

    while (*link != s) {
        link = &(*link)->next;
    }
    *link = s->next;
    for (size_t i = 0; i < s->n_chunks; i++) {
        rkv_free(s->chunks[i]);
    }
    rkv_free(s->chunks);
    rkv_free(s->chunk_lens);
    rkv_free(s);
}

void sim_snapshot_close_all(struct sim_replica *r)
{
    while (r->snapshots_out != NULL) {
        snapshot_out_close(r, r->snapshots_out);
    }
}

/* Reads every chunk of a snapshot of r for peer `to`. */
static struct sim_snapshot_out *snapshot_out_open(struct sim_node *node,
                                                  struct sim_replica *r,
                                                  uint64_t to)
{
    struct rkv_range_snapshot_meta meta;
    struct rkv_range_snapshot_reader *reader;
    struct sim_snapshot_out *s = sim_alloc(sizeof(*s));
    bool last = false;
    int rv;

    rv = rkv_range_snapshot_open(node->store, r->range_id,
                                 RKV_SIM_SNAPSHOT_CHUNK_BYTES, &reader,
                                 &meta);
    if (rv != 0) {
        sim_fatal("opening a snapshot reader", rv);
    }
    s->to = to;
    s->index = meta.index;
    while (!last) {
        uint8_t *chunk;
        size_t len;

        rv = rkv_range_snapshot_next(reader, &chunk, &len, &last);
        if (rv != 0) {
            sim_fatal("reading a snapshot chunk", rv);
        }
        s->chunks = rkv_realloc(s->chunks,
                                (s->n_chunks + 1) * sizeof(*s->chunks));
        s->chunk_lens = rkv_realloc(
            s->chunk_lens, (s->n_chunks + 1) * sizeof(*s->chunk_lens));
        if (s->chunks == NULL || s->chunk_lens == NULL) {
            sim_fatal("keeping a snapshot chunk", -ENOMEM);
        }
        s->chunks[s->n_chunks] = chunk;
        s->chunk_lens[s->n_chunks] = len;
        s->n_chunks++;
    }
    rkv_range_snapshot_close(reader);
    s->next = r->snapshots_out;
    r->snapshots_out = s;
    return s;
}

static void snapshot_serve_one(struct sim_node *node, struct sim_replica *r,
                               const struct rkv_raft_snapshot_request *sr)
{
    struct sim_snapshot_out *s = snapshot_out_find(r, sr->to);
    bool last;
    int rv;

    if (sr->chunk_seq == 0) {
        if (s != NULL) {
            snapshot_out_close(r, s);
        }
        s = snapshot_out_open(node, r, sr->to);
    } else if (s == NULL || sr->chunk_seq >= s->n_chunks) {
        return; /* a transfer this replica no longer has; the core retries */
    }
    last = sr->chunk_seq + 1 == s->n_chunks;
    rv = rkv_raft_snapshot_chunk(r->raft, sr->to, s->index, sr->chunk_seq,
                                 s->chunks[sr->chunk_seq],
                                 s->chunk_lens[sr->chunk_seq], last);
    if (rv != 0 || last) {
        snapshot_out_close(r, s);
    }
}

void sim_snapshot_serve(struct rkv_sim_world *w, struct sim_node *node,
                        struct sim_replica *r,
                        const struct rkv_raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_snapshot_requests; i++) {
        snapshot_serve_one(node, r, &rd->snapshot_requests[i]);
    }
}

int sim_snapshot_record(struct rkv_range_wtxn *wtxn, struct sim_disk_job *job)
{
    struct rkv_raft_ready *rd = job->rd;
    uint64_t range_id = job->replica->range_id;
    int rv;

    for (size_t i = 0; i < rd->n_chunks; i++) {
        rv = rkv_range_snapshot_install_chunk(wtxn, range_id,
                                              rd->chunks[i].data,
                                              rd->chunks[i].data_len);
        if (rv != 0) {
            return rv;
        }
        if (rd->chunks[i].last) {
            rv = rkv_range_snapshot_install_finish(wtxn, range_id,
                                                   &job->install);
            if (rv != 0) {
                return rv;
            }
            job->installed = true;
        }
    }
    return 0;
}

void sim_snapshot_refused(struct rkv_sim_world *w, struct sim_node *node,
                          struct sim_disk_job *job)
{
    assert(job->install.rv != 0);
    sim_trace(w, "snapshot refused node=%llu range=%llu error=%s",
              (unsigned long long)node->id,
              (unsigned long long)job->replica->range_id,
              rkv_strerror(job->install.rv));
    job->replica->needs_restart = true;
}

void sim_snapshot_installed(struct rkv_sim_world *w, struct sim_node *node,
                            struct sim_disk_job *job)
{
    struct sim_replica *r = job->replica;
    const struct rkv_range_snapshot_meta *meta = &job->install.meta;

    assert(job->install.rv == 0);
    r->applied_index = meta->index;
    r->compacted_index = meta->index;
    r->desc = meta->desc;
    r->initialized = true;
    r->stats = meta->stats;
    w->report->n_snapshots++;
    sim_trace(w, "snapshot installed node=%llu range=%llu index=%llu",
              (unsigned long long)node->id, (unsigned long long)r->range_id,
              (unsigned long long)meta->index);

    /* Proposals covered by the snapshot have an outcome this node cannot
     * learn; their clients time out and record them as unknown. */
    while (r->proposals != NULL && r->proposals->index <= meta->index) {
        struct sim_pending *p = r->proposals;

        r->proposals = p->next;
        rkv_free(p);
    }
}

void sim_compact_maybe(struct rkv_sim_world *w, struct sim_node *node,
                       struct sim_replica *r)
{
    struct rkv_range_wtxn *wtxn;
    uint64_t target;
    int rv;

    if (!w->options.compact ||
        r->applied_index < r->compacted_index + RKV_SIM_COMPACT_LAG) {
        return;
    }
    target = r->applied_index - RKV_SIM_COMPACT_KEEP;
    rv = rkv_range_wtxn_begin(node->store, &wtxn);
    if (rv == 0) {
        rv = rkv_range_log_compact(wtxn, r->range_id, target);
        if (rv == 0) {
            rv = rkv_range_wtxn_commit(wtxn);
        } else {
            rkv_range_wtxn_abort(wtxn);
        }
    }
    if (rv != 0) {
        sim_fatal("compacting a log", rv);
    }
    rv = rkv_raft_compact(r->raft, target);
    if (rv != 0) {
        sim_fatal("compacting a raft log", rv);
    }
    r->compacted_index = target;
    w->report->n_compactions++;
}
