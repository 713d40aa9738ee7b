/*
 * The in-memory Raft cluster behind tests/lib/raft_fixture.h.
 *
 * Each replica has three layers:
 *   - durable: hard state, snapshot (metadata and state machine bytes),
 *     log entries after it, the snapshot staging area, and the state
 *     machine. Applying an entry is durable at once, as the store applies
 *     it and records the applied index in one transaction;
 *   - pending: ready batches handed out but not yet durable (lost on
 *     crash);
 *   - the core itself.
 * Messages travel packed with protobuf-c, so every delivery also checks
 * the wire encoding.
 */
#include "tests/lib/raft_fixture.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/lib/raft_fixture_internal.h"
#include "tests/lib/test.h"

/* Short local names for the internals shared with raft_fixture_check.c. */
#define fixture_fail rkv_raft_fixture__fail
#define xrealloc rkv_raft_fixture__xrealloc
#define grow_zeroed rkv_raft_fixture__grow_zeroed

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

void rkv_raft_fixture__fail(struct rkv_raft_fixture *f, const char *fmt, ...)
{
    char msg[512];
    va_list args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);
    if (f->hint[0] != '\0') {
        fprintf(stderr, "%s\n", f->hint);
    }
    rkv_test_fail(__FILE__, __LINE__, "raft fixture: %s", msg);
}

void *rkv_raft_fixture__xrealloc(void *ptr, size_t size)
{
    void *grown = realloc(ptr, size);

    if (grown == NULL) {
        abort();
    }
    return grown;
}

void rkv_raft_fixture__grow_zeroed(void **array, size_t *n_have, size_t n,
                                   size_t elem)
{
    if (n <= *n_have) {
        return;
    }
    *array = rkv_raft_fixture__xrealloc(*array, n * elem);
    memset((uint8_t *)*array + *n_have * elem, 0, (n - *n_have) * elem);
    *n_have = n;
}

/* ---- state machine ------------------------------------------------------ */

static uint64_t fnv_mix(uint64_t hash, const void *data, size_t len)
{
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++) {
        hash = (hash ^ p[i]) * FNV_PRIME;
    }
    return hash;
}

static void fsm_append(struct fsm *fsm, const void *data, size_t len)
{
    if (len == 0) {
        return;
    }
    if (fsm->len + len > fsm->cap) {
        fsm->cap = (fsm->len + len) * 2 + 64;
        fsm->data = xrealloc(fsm->data, fsm->cap);
    }
    memcpy(fsm->data + fsm->len, data, len);
    fsm->len += len;
}

static void record_hash(struct rkv_raft_fixture *f, unsigned i,
                        uint64_t index, uint64_t hash)
{
    grow_zeroed((void **)&f->hash_at, &f->n_hash, index + 1,
                sizeof(uint64_t));
    if (f->hash_at[index] == 0) {
        f->hash_at[index] = hash;
    } else if (f->hash_at[index] != hash) {
        fixture_fail(f,
                     "replica %u applied a different sequence: index=%llu "
                     "hash=%llx expected=%llx",
                     i + 1, (unsigned long long)index,
                     (unsigned long long)hash,
                     (unsigned long long)f->hash_at[index]);
    }
}

static void fsm_apply(struct rkv_raft_fixture *f, unsigned i,
                      const RkvRaft__Entry *entry)
{
    struct fsm *fsm = &f->nodes[i].fsm;
    uint8_t header[24];

    if (entry->index != fsm->index + 1) {
        fixture_fail(f, "replica %u applied index %llu after %llu", i + 1,
                     (unsigned long long)entry->index,
                     (unsigned long long)fsm->index);
    }
    rkv_put_be64(header, entry->index);
    rkv_put_be64(header + 8, entry->term);
    rkv_put_be64(header + 16, (uint64_t)entry->type);
    fsm->hash = fnv_mix(fsm->hash, header, sizeof(header));
    fsm->hash = fnv_mix(fsm->hash, entry->data.data, entry->data.len);
    fsm->index = entry->index;
    if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_CONF &&
        rkv_raft_conf_decode(entry->data.data, entry->data.len,
                             &fsm->conf) != 0) {
        fixture_fail(f, "replica %u applied an invalid configuration at "
                     "index %llu", i + 1, (unsigned long long)entry->index);
    }
    if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_NORMAL) {
        uint8_t len_be[4];

        rkv_put_be32(len_be, (uint32_t)entry->data.len);
        fsm_append(fsm, len_be, sizeof(len_be));
        fsm_append(fsm, entry->data.data, entry->data.len);
        fsm->n_normal++;
    }
    record_hash(f, i, fsm->index, fsm->hash);
    if (f->user_fsm.apply != NULL) {
        f->user_fsm.apply(f->user_fsm.ctx, i, entry);
    }
}

/* Serializes replica i's state: the length of the fixture's part, that
 * part (index, hash, n_normal, the configuration as raw bytes, then the
 * data), then the test's own state machine snapshot when hooks are set. */
static uint8_t *snapshot_encode(struct rkv_raft_fixture *f, unsigned i,
                                size_t *len)
{
    const struct fsm *fsm = &f->nodes[i].fsm;
    size_t own_len = 24 + sizeof(fsm->conf) + fsm->len;
    uint8_t *user = NULL;
    size_t user_len = 0;
    uint8_t *buf;

    if (f->user_fsm.snapshot != NULL) {
        user = f->user_fsm.snapshot(f->user_fsm.ctx, i, &user_len);
    }
    *len = 8 + own_len + user_len;
    buf = xrealloc(NULL, *len);
    rkv_put_be64(buf, own_len);
    rkv_put_be64(buf + 8, fsm->index);
    rkv_put_be64(buf + 16, fsm->hash);
    rkv_put_be64(buf + 24, fsm->n_normal);
    memcpy(buf + 32, &fsm->conf, sizeof(fsm->conf));
    if (fsm->len > 0) {
        memcpy(buf + 32 + sizeof(fsm->conf), fsm->data, fsm->len);
    }
    if (user_len > 0) {
        memcpy(buf + 8 + own_len, user, user_len);
    }
    free(user);
    return buf;
}

static void snapshot_decode(struct rkv_raft_fixture *f, unsigned i,
                            const uint8_t *buf, size_t len)
{
    struct fsm *fsm = &f->nodes[i].fsm;
    uint64_t own_len;

    own_len = len >= 8 ? rkv_get_be64(buf) : 0;
    if (len < 32 + sizeof(fsm->conf) || own_len < 24 + sizeof(fsm->conf) ||
        own_len > len - 8) {
        fixture_fail(f, "replica %u snapshot of %zu bytes is truncated",
                     i + 1, len);
    }
    free(fsm->data);
    memset(fsm, 0, sizeof(*fsm));
    fsm->index = rkv_get_be64(buf + 8);
    fsm->hash = rkv_get_be64(buf + 16);
    fsm->n_normal = rkv_get_be64(buf + 24);
    memcpy(&fsm->conf, buf + 32, sizeof(fsm->conf));
    fsm_append(fsm, buf + 32 + sizeof(fsm->conf),
               (size_t)own_len - 24 - sizeof(fsm->conf));
    if (f->user_fsm.restore != NULL) {
        f->user_fsm.restore(f->user_fsm.ctx, i, buf + 8 + own_len,
                            len - 8 - (size_t)own_len);
    }
}

/* ---- durable log -------------------------------------------------------- */

static RkvRaft__Entry *entry_dup(const RkvRaft__Entry *entry)
{
    RkvRaft__Entry *copy = xrealloc(NULL, sizeof(*copy));

    *copy = *entry;
    copy->data.data = NULL;
    if (entry->data.len > 0) {
        copy->data.data = xrealloc(NULL, entry->data.len);
        memcpy(copy->data.data, entry->data.data, entry->data.len);
    }
    return copy;
}

static void entry_free(RkvRaft__Entry *entry)
{
    free(entry->data.data);
    free(entry);
}

static void log_truncate(struct node *n, size_t keep)
{
    while (n->n_log > keep) {
        entry_free(n->log[--n->n_log]);
    }
}

static void log_store(struct rkv_raft_fixture *f, unsigned i,
                      RkvRaft__Entry **entries, size_t n_entries)
{
    struct node *n = &f->nodes[i];
    uint64_t first;

    if (n_entries == 0) {
        return;
    }
    first = entries[0]->index;
    if (first <= n->snap_meta.index ||
        first > n->snap_meta.index + n->n_log + 1) {
        fixture_fail(f, "replica %u stores index %llu over a log ending at "
                     "%llu", i + 1, (unsigned long long)first,
                     (unsigned long long)(n->snap_meta.index + n->n_log));
    }
    log_truncate(n, (size_t)(first - n->snap_meta.index - 1));
    n->log = xrealloc(n->log, (n->n_log + n_entries) * sizeof(*n->log));
    for (size_t k = 0; k < n_entries; k++) {
        n->log[n->n_log++] = entry_dup(entries[k]);
    }
}

/* ---- network ------------------------------------------------------------ */

static void net_send(struct rkv_raft_fixture *f, const RkvRaft__Message *msg)
{
    struct net_msg *m;
    unsigned from = (unsigned)msg->from - 1;
    unsigned to = (unsigned)msg->to - 1;

    if (msg->from == 0 || msg->to == 0 || to >= f->n_nodes) {
        return; /* addressed outside the cluster */
    }
    if (f->cut[from][to]) {
        return;
    }
    if (f->n_net == f->cap_net) {
        f->cap_net = f->cap_net == 0 ? 64 : f->cap_net * 2;
        f->net = xrealloc(f->net, f->cap_net * sizeof(*f->net));
    }
    m = &f->net[f->n_net++];
    m->from = from;
    m->to = to;
    m->type = msg->type;
    m->len = rkv_raft__message__get_packed_size(msg);
    m->buf = xrealloc(NULL, m->len + 1);
    rkv_raft__message__pack(msg, m->buf);
}

static void net_remove(struct rkv_raft_fixture *f, size_t k)
{
    free(f->net[k].buf);
    memmove(&f->net[k], &f->net[k + 1],
            (f->n_net - k - 1) * sizeof(*f->net));
    f->n_net--;
}

/* ---- ready processing --------------------------------------------------- */

static void check_raft_rv(struct rkv_raft_fixture *f, unsigned i, int rv,
                          const char *what)
{
    if (rv == -ENOMEM && f->tolerate_enomem) {
        f->n_enomem++;
        return;
    }
    if (rv != 0) {
        fixture_fail(f, "replica %u: %s failed: %s", i + 1, what,
                     rkv_strerror(rv));
    }
}

static void serve_snapshot_request(struct rkv_raft_fixture *f, unsigned i,
                                   const struct rkv_raft_snapshot_request *req)
{
    struct node *n = &f->nodes[i];
    struct outgoing_snapshot *out = &n->out_snap[req->to - 1];
    size_t chunk_bytes = (size_t)n->config.chunk_bytes_max;
    size_t offset;
    size_t len;
    int rv;

    if (req->chunk_seq == 0) {
        /* Like opening an LMDB read transaction at the applied index. */
        free(out->data);
        out->data = snapshot_encode(f, i, &out->len);
        out->index = n->fsm.index;
    }
    offset = (size_t)req->chunk_seq * chunk_bytes;
    if (out->data == NULL || offset > out->len) {
        fixture_fail(f, "replica %u: snapshot chunk %u requested for %llu "
                     "without a snapshot", i + 1, req->chunk_seq,
                     (unsigned long long)req->to);
    }
    len = RKV_MIN(chunk_bytes, out->len - offset);
    rv = rkv_raft_snapshot_chunk(n->raft, req->to, out->index, req->chunk_seq,
                                 out->data + offset, len,
                                 offset + len == out->len);
    if (rv == RKV_ESTALE || rv == RKV_ENOTLEADER) {
        return;
    }
    check_raft_rv(f, i, rv, "rkv_raft_snapshot_chunk");
}

static void record_reads(struct rkv_raft_fixture *f, unsigned i,
                         const struct rkv_raft_ready *rd)
{
    struct node *n = &f->nodes[i];

    for (size_t k = 0; k < rd->n_reads; k++) {
        const struct rkv_raft_read_state *read = &rd->reads[k];

        if (read->ctx < f->n_read_floor &&
            read->index < f->read_floor[read->ctx]) {
            fixture_fail(f,
                         "replica %u released read ctx=%llu at index=%llu "
                         "below commit %llu known when it started",
                         i + 1, (unsigned long long)read->ctx,
                         (unsigned long long)read->index,
                         (unsigned long long)f->read_floor[read->ctx]);
        }
        n->reads = xrealloc(n->reads, (n->n_reads + 1) * sizeof(*n->reads));
        n->reads[n->n_reads++] = *read;
    }
}

/* Handles what may happen before the batch is durable: sending, applying
 * committed entries, reads and snapshot requests. */
static void ready_handle_volatile(struct rkv_raft_fixture *f, unsigned i,
                                  const struct rkv_raft_ready *rd)
{
    for (size_t k = 0; k < rd->n_messages; k++) {
        net_send(f, rd->messages[k]);
    }
    for (size_t k = 0; k < rd->n_committed; k++) {
        fsm_apply(f, i, rd->committed[k]);
    }
    record_reads(f, i, rd);
    for (size_t k = 0; k < rd->n_snapshot_requests; k++) {
        serve_snapshot_request(f, i, &rd->snapshot_requests[k]);
    }
}

static bool conf_equal(const struct rkv_raft_conf *a,
                       const struct rkv_raft_conf *b)
{
    if (a->n_servers != b->n_servers) {
        return false;
    }
    for (unsigned k = 0; k < a->n_servers; k++) {
        if (a->servers[k].id != b->servers[k].id ||
            a->servers[k].learner != b->servers[k].learner) {
            return false;
        }
    }
    return true;
}

static void stage_chunk(struct rkv_raft_fixture *f, unsigned i,
                        const struct rkv_raft_snapshot_chunk *chunk)
{
    struct node *n = &f->nodes[i];

    if (chunk->chunk_seq == 0) {
        n->staging_len = 0;
        n->staging_next_chunk = 0;
    }
    if (chunk->chunk_seq != n->staging_next_chunk) {
        fixture_fail(f, "replica %u staged chunk %u, expected %u", i + 1,
                     chunk->chunk_seq, n->staging_next_chunk);
    }
    n->staging = xrealloc(n->staging, n->staging_len + chunk->data_len + 1);
    if (chunk->data_len > 0) {
        memcpy(n->staging + n->staging_len, chunk->data, chunk->data_len);
    }
    n->staging_len += chunk->data_len;
    n->staging_next_chunk++;
    n->n_chunks++;
    if (!chunk->last) {
        return;
    }

    /* Install: replace the state machine and the log atomically. */
    snapshot_decode(f, i, n->staging, n->staging_len);
    if (n->fsm.index != chunk->meta.index) {
        fixture_fail(f, "replica %u snapshot index %llu, metadata %llu",
                     i + 1, (unsigned long long)n->fsm.index,
                     (unsigned long long)chunk->meta.index);
    }
    record_hash(f, i, n->fsm.index, n->fsm.hash);
    if (!conf_equal(&chunk->meta.conf, &n->fsm.conf)) {
        fixture_fail(f,
                     "replica %u installed a snapshot at index %llu whose "
                     "configuration differs from the applied one",
                     i + 1, (unsigned long long)chunk->meta.index);
    }
    if (chunk->meta.index < f->n_committed &&
        f->committed_terms[chunk->meta.index] != 0 &&
        f->committed_terms[chunk->meta.index] != chunk->meta.term) {
        fixture_fail(f,
                     "replica %u installed a snapshot at index %llu with "
                     "term %llu, but term %llu is committed there",
                     i + 1, (unsigned long long)chunk->meta.index,
                     (unsigned long long)chunk->meta.term,
                     (unsigned long long)
                         f->committed_terms[chunk->meta.index]);
    }
    free(n->snap_data);
    n->snap_data = n->staging;
    n->snap_len = n->staging_len;
    n->staging = NULL;
    n->staging_len = 0;
    n->staging_next_chunk = 0;
    n->snap_meta = chunk->meta;
    log_truncate(n, 0);
    n->n_installs++;
}

/* Writes a batch's durable parts: chunks, entries, hard state. */
static void ready_write(struct rkv_raft_fixture *f, unsigned i,
                        const struct rkv_raft_ready *rd)
{
    struct node *n = &f->nodes[i];

    for (size_t k = 0; k < rd->n_chunks; k++) {
        stage_chunk(f, i, &rd->chunks[k]);
    }
    log_store(f, i, rd->entries, rd->n_entries);
    if (rd->has_hard_state) {
        n->hs = rd->hard_state;
    }
}

static void ready_finish(struct rkv_raft_fixture *f, unsigned i,
                         struct rkv_raft_ready *rd)
{
    struct node *n = &f->nodes[i];

    check_raft_rv(f, i, rkv_raft_ack(n->raft, rd->seq), "rkv_raft_ack");
    for (size_t k = 0; k < rd->n_messages_after_persist; k++) {
        net_send(f, rd->messages_after_persist[k]);
    }
    rkv_raft_ready_free(rd);
}

static bool pending_pop(struct node *n, struct rkv_raft_ready **rd)
{
    if (n->n_pending == 0) {
        return false;
    }
    *rd = n->pending[0];
    memmove(n->pending, n->pending + 1,
            (n->n_pending - 1) * sizeof(*n->pending));
    n->n_pending--;
    return true;
}

/* Takes every ready batch of replica i. */
static void node_process(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];

    while (n->raft != NULL && rkv_raft_has_ready(n->raft)) {
        struct rkv_raft_ready *rd;
        int rv;

        rv = rkv_raft_ready(n->raft, &rd);
        check_raft_rv(f, i, rv, "rkv_raft_ready");
        if (rv != 0) {
            break; /* retried at the next event */
        }
        ready_handle_volatile(f, i, rd);
        n->pending = xrealloc(n->pending,
                              (n->n_pending + 1) * sizeof(*n->pending));
        n->pending[n->n_pending++] = rd;
        while (n->auto_persist && n->raft != NULL &&
               rkv_raft_fixture_persist(f, i)) {
        }
    }
    rkv_raft_fixture_check(f);
}

bool rkv_raft_fixture_persist(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];
    struct rkv_raft_ready *rd;

    if (n->raft == NULL || !pending_pop(n, &rd)) {
        return false;
    }
    ready_write(f, i, rd);
    ready_finish(f, i, rd);
    return true;
}

void rkv_raft_fixture_persist_then_crash(struct rkv_raft_fixture *f,
                                         unsigned i)
{
    struct node *n = &f->nodes[i];
    struct rkv_raft_ready *rd;

    if (n->raft == NULL || !pending_pop(n, &rd)) {
        fixture_fail(f, "replica %u has no pending batch to persist", i + 1);
    }
    ready_write(f, i, rd);
    rkv_raft_ready_free(rd);
    rkv_raft_fixture_crash(f, i);
}

/* ---- lifecycle ---------------------------------------------------------- */

void rkv_raft_fixture_new(unsigned n_nodes, unsigned n_voters, uint64_t seed,
                          struct rkv_raft_fixture **out)
{
    struct rkv_raft_fixture *f;

    if (n_nodes == 0 || n_nodes > RKV_RAFT_FIXTURE_MAX_NODES ||
        n_voters == 0 || n_voters > n_nodes) {
        rkv_test_fail(__FILE__, __LINE__, "invalid cluster: %u nodes, %u "
                      "voters", n_nodes, n_voters);
    }
    f = xrealloc(NULL, sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->n_nodes = n_nodes;
    f->n_voters = n_voters;
    for (unsigned i = 0; i < n_nodes; i++) {
        struct node *n = &f->nodes[i];

        rkv_raft_config_init(&n->config, i + 1, 1,
                             seed * 0x9e3779b97f4a7c15ULL + i + 1);
        n->auto_persist = true;
        n->fsm.hash = FNV_OFFSET;
        for (unsigned j = 0; j < n_voters; j++) {
            n->fsm.conf.servers[j].id = j + 1;
        }
        n->fsm.conf.n_servers = n_voters;
        /* Voters bootstrap from the same configuration; spares start
         * empty and learn it from the leader's snapshot. */
        if (i < n_voters) {
            n->snap_meta.conf = n->fsm.conf;
        }
        n->snap_data = snapshot_encode(f, i, &n->snap_len);
    }
    *out = f;
}

void rkv_raft_fixture_free(struct rkv_raft_fixture *f)
{
    for (unsigned i = 0; i < f->n_nodes; i++) {
        struct node *n = &f->nodes[i];

        if (n->raft != NULL) {
            rkv_raft_fixture_crash(f, i);
        }
        log_truncate(n, 0);
        free(n->log);
        free(n->snap_data);
        free(n->staging);
        free(n->fsm.data);
        free(n->pending);
        free(n->reads);
        free(n->lead_terms);
        for (unsigned j = 0; j < RKV_RAFT_FIXTURE_MAX_NODES; j++) {
            free(n->out_snap[j].data);
        }
    }
    while (f->n_net > 0) {
        net_remove(f, f->n_net - 1);
    }
    free(f->net);
    free(f->leader_of_term);
    free(f->committed_terms);
    free(f->hash_at);
    free(f->read_floor);
    free(f);
}

void rkv_raft_fixture_set_fsm(struct rkv_raft_fixture *f,
                              const struct rkv_raft_fixture_fsm *fsm)
{
    f->user_fsm = *fsm;
}

void rkv_raft_fixture_tolerate_enomem(struct rkv_raft_fixture *f, bool on)
{
    f->tolerate_enomem = on;
}

void rkv_raft_fixture_set_hint(struct rkv_raft_fixture *f, const char *hint)
{
    snprintf(f->hint, sizeof(f->hint), "%s", hint);
}

struct rkv_raft_config *rkv_raft_fixture_config(struct rkv_raft_fixture *f,
                                                unsigned i)
{
    return &f->nodes[i].config;
}

void rkv_raft_fixture_start(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];
    struct rkv_raft_boot boot;
    int rv;

    if (n->raft != NULL) {
        fixture_fail(f, "replica %u is already running", i + 1);
    }
    /* The state machine is durable: restart from it, not the snapshot. */
    memset(&boot, 0, sizeof(boot));
    boot.hard_state = n->hs;
    boot.snapshot = n->snap_meta;
    boot.applied = n->fsm.index;
    boot.entries = n->log;
    boot.n_entries = n->n_log;
    rv = rkv_raft_new(&n->config, &boot, &n->raft);
    check_raft_rv(f, i, rv, "rkv_raft_new");
    if (rv != 0) {
        n->raft = NULL; /* stays crashed */
        return;
    }
    n->lead_term = 0;
    node_process(f, i);
}

void rkv_raft_fixture_start_all(struct rkv_raft_fixture *f)
{
    for (unsigned i = 0; i < f->n_nodes; i++) {
        rkv_raft_fixture_start(f, i);
    }
}

void rkv_raft_fixture_crash(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];
    struct rkv_raft_ready *rd;

    while (pending_pop(n, &rd)) {
        rkv_raft_ready_free(rd);
    }
    rkv_raft_free(n->raft);
    n->raft = NULL;
    n->lead_term = 0;
    for (unsigned j = 0; j < RKV_RAFT_FIXTURE_MAX_NODES; j++) {
        free(n->out_snap[j].data);
        n->out_snap[j].data = NULL;
    }
}

bool rkv_raft_fixture_alive(const struct rkv_raft_fixture *f, unsigned i)
{
    return f->nodes[i].raft != NULL;
}

struct rkv_raft *rkv_raft_fixture_raft(struct rkv_raft_fixture *f,
                                       unsigned i)
{
    return f->nodes[i].raft;
}

/* ---- driving ------------------------------------------------------------ */

void rkv_raft_fixture_tick(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];

    if (n->raft == NULL) {
        return;
    }
    check_raft_rv(f, i, rkv_raft_tick(n->raft), "rkv_raft_tick");
    node_process(f, i);
}

void rkv_raft_fixture_tick_all(struct rkv_raft_fixture *f)
{
    for (unsigned i = 0; i < f->n_nodes; i++) {
        rkv_raft_fixture_tick(f, i);
    }
}

void rkv_raft_fixture_deliver(struct rkv_raft_fixture *f, size_t k)
{
    struct net_msg m = f->net[k];
    struct node *n = &f->nodes[m.to];
    RkvRaft__Message *msg;
    int rv;

    f->net[k].buf = NULL;
    net_remove(f, k);
    if (n->raft == NULL || f->cut[m.from][m.to]) {
        free(m.buf);
        return;
    }
    msg = rkv_raft__message__unpack(NULL, m.len, m.buf);
    free(m.buf);
    if (msg == NULL) {
        fixture_fail(f, "message from %u to %u failed to decode", m.from + 1,
                     m.to + 1);
    }
    rv = rkv_raft_step(n->raft, msg);
    rkv_raft__message__free_unpacked(msg, NULL);
    check_raft_rv(f, m.to, rv, "rkv_raft_step");
    node_process(f, m.to);
}

void rkv_raft_fixture_flush(struct rkv_raft_fixture *f, unsigned max_rounds)
{
    for (unsigned i = 0; i < f->n_nodes; i++) {
        node_process(f, i);
    }
    for (unsigned round = 0; round < max_rounds && f->n_net > 0; round++) {
        rkv_raft_fixture_deliver(f, 0);
    }
}

void rkv_raft_fixture_run(struct rkv_raft_fixture *f, unsigned n_ticks)
{
    for (unsigned t = 0; t < n_ticks; t++) {
        rkv_raft_fixture_tick_all(f);
        rkv_raft_fixture_flush(f, 10000);
    }
}

void rkv_raft_fixture_elect(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];

    if (n->raft == NULL) {
        fixture_fail(f, "replica %u is not running", i + 1);
    }
    check_raft_rv(f, i, rkv_raft_campaign(n->raft), "rkv_raft_campaign");
    node_process(f, i);
    rkv_raft_fixture_flush(f, 10000);
    if (rkv_raft_role(n->raft) != RKV_RAFT_LEADER) {
        fixture_fail(f, "replica %u did not become leader", i + 1);
    }
}

int rkv_raft_fixture_leader(const struct rkv_raft_fixture *f)
{
    int leader = -1;
    uint64_t best_term = 0;

    for (unsigned i = 0; i < f->n_nodes; i++) {
        const struct rkv_raft *r = f->nodes[i].raft;

        if (r != NULL && rkv_raft_role(r) == RKV_RAFT_LEADER &&
            rkv_raft_term(r) >= best_term) {
            best_term = rkv_raft_term(r);
            leader = (int)i;
        }
    }
    return leader;
}

int rkv_raft_fixture_propose(struct rkv_raft_fixture *f, unsigned i,
                             const void *data, size_t len, uint64_t *index)
{
    struct node *n = &f->nodes[i];
    uint64_t term;
    int rv;

    if (n->raft == NULL) {
        return RKV_ENOTLEADER;
    }
    rv = rkv_raft_propose(n->raft, data, len, index, &term);
    node_process(f, i);
    return rv;
}

int rkv_raft_fixture_read(struct rkv_raft_fixture *f, unsigned i,
                          uint64_t *ctx)
{
    struct node *n = &f->nodes[i];
    int rv;

    *ctx = f->n_read_floor;
    grow_zeroed((void **)&f->read_floor, &f->n_read_floor, *ctx + 1,
                sizeof(uint64_t));
    f->read_floor[*ctx] = rkv_raft_fixture_committed(f);
    if (n->raft == NULL) {
        return RKV_ENOTLEADER;
    }
    rv = rkv_raft_read_index(n->raft, *ctx);
    node_process(f, i);
    return rv;
}

bool rkv_raft_fixture_read_done(const struct rkv_raft_fixture *f, unsigned i,
                                uint64_t ctx, uint64_t *index)
{
    const struct node *n = &f->nodes[i];

    for (size_t k = 0; k < n->n_reads; k++) {
        if (n->reads[k].ctx == ctx) {
            *index = n->reads[k].index;
            return true;
        }
    }
    return false;
}

void rkv_raft_fixture_compact(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];
    uint64_t index = n->fsm.index;
    size_t n_drop;
    int rv;

    if (n->raft == NULL || index <= n->snap_meta.index) {
        return;
    }
    /* The durable snapshot first, then the log prefix goes. */
    free(n->snap_data);
    n->snap_data = snapshot_encode(f, i, &n->snap_len);
    n_drop = (size_t)(index - n->snap_meta.index);
    if (n_drop > n->n_log) {
        fixture_fail(f, "replica %u applied %llu past its durable log",
                     i + 1, (unsigned long long)index);
    }
    /* The configuration as of index: the last change at or before it. */
    for (size_t k = 0; k < n_drop; k++) {
        const RkvRaft__Entry *entry = n->log[k];

        if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_CONF) {
            rv = rkv_raft_conf_decode(entry->data.data, entry->data.len,
                                      &n->snap_meta.conf);
            check_raft_rv(f, i, rv, "rkv_raft_conf_decode");
        }
    }
    n->snap_meta.index = index;
    n->snap_meta.term = n->log[n_drop - 1]->term;
    rv = rkv_raft_compact(n->raft, index);
    check_raft_rv(f, i, rv, "rkv_raft_compact");
    for (size_t k = 0; k < n_drop; k++) {
        entry_free(n->log[k]);
    }
    memmove(n->log, n->log + n_drop, (n->n_log - n_drop) * sizeof(*n->log));
    n->n_log -= n_drop;
}

/* ---- network control ---------------------------------------------------- */

size_t rkv_raft_fixture_n_messages(const struct rkv_raft_fixture *f)
{
    return f->n_net;
}

void rkv_raft_fixture_message(const struct rkv_raft_fixture *f, size_t k,
                              unsigned *from, unsigned *to,
                              RkvRaft__MessageType *type)
{
    *from = f->net[k].from;
    *to = f->net[k].to;
    *type = f->net[k].type;
}

RkvRaft__Message *rkv_raft_fixture_peek(const struct rkv_raft_fixture *f,
                                        size_t k)
{
    RkvRaft__Message *msg;

    msg = rkv_raft__message__unpack(NULL, f->net[k].len, f->net[k].buf);
    if (msg == NULL) {
        rkv_test_fail(__FILE__, __LINE__, "message %zu failed to decode", k);
    }
    return msg;
}

void rkv_raft_fixture_drop(struct rkv_raft_fixture *f, size_t k)
{
    net_remove(f, k);
}

void rkv_raft_fixture_duplicate(struct rkv_raft_fixture *f, size_t k)
{
    struct net_msg copy = f->net[k];

    copy.buf = xrealloc(NULL, copy.len + 1);
    memcpy(copy.buf, f->net[k].buf, copy.len);
    if (f->n_net == f->cap_net) {
        f->cap_net = f->cap_net * 2;
        f->net = xrealloc(f->net, f->cap_net * sizeof(*f->net));
    }
    f->net[f->n_net++] = copy;
}

void rkv_raft_fixture_drop_type(struct rkv_raft_fixture *f,
                                RkvRaft__MessageType type)
{
    size_t k = 0;

    while (k < f->n_net) {
        if (f->net[k].type == type) {
            net_remove(f, k);
        } else {
            k++;
        }
    }
}

void rkv_raft_fixture_cut(struct rkv_raft_fixture *f, unsigned from,
                          unsigned to, bool cut)
{
    f->cut[from][to] = cut;
}

void rkv_raft_fixture_isolate(struct rkv_raft_fixture *f, unsigned i)
{
    for (unsigned j = 0; j < f->n_nodes; j++) {
        if (j != i) {
            f->cut[i][j] = true;
            f->cut[j][i] = true;
        }
    }
}

void rkv_raft_fixture_heal(struct rkv_raft_fixture *f)
{
    memset(f->cut, 0, sizeof(f->cut));
}

void rkv_raft_fixture_set_auto_persist(struct rkv_raft_fixture *f,
                                       unsigned i, bool on)
{
    f->nodes[i].auto_persist = on;
    if (on) {
        while (rkv_raft_fixture_persist(f, i)) {
        }
        node_process(f, i);
    }
}

size_t rkv_raft_fixture_n_pending(const struct rkv_raft_fixture *f,
                                  unsigned i)
{
    return f->nodes[i].n_pending;
}
