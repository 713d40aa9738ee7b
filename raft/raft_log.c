/*
 * The in-memory log: every entry after the last compaction, kept so that
 * the core never reads storage (the approach of canonical/raft).
 *
 * Invariants:
 *   1. entries[i]->index == snap_index + 1 + i, and terms never decrease.
 *   2. Truncation never removes a committed entry (Raft thesis 3.5: only
 *      conflicting, uncommitted suffixes are replaced).
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

uint64_t rkv_raft__last_index(const struct rkv_raft *r)
{
    return r->log.snap_index + r->log.n_entries;
}

uint64_t rkv_raft__last_term(const struct rkv_raft *r)
{
    if (r->log.n_entries == 0) {
        return r->log.snap_term;
    }
    return r->log.entries[r->log.n_entries - 1]->term;
}

const RkvRaft__Entry *rkv_raft__entry(const struct rkv_raft *r,
                                      uint64_t index)
{
    if (index <= r->log.snap_index || index > rkv_raft__last_index(r)) {
        return NULL;
    }
    return r->log.entries[index - r->log.snap_index - 1];
}

uint64_t rkv_raft__term(const struct rkv_raft *r, uint64_t index)
{
    const RkvRaft__Entry *entry;

    if (index == r->log.snap_index) {
        return r->log.snap_term;
    }
    entry = rkv_raft__entry(r, index);
    return entry != NULL ? entry->term : 0;
}

RkvRaft__Entry *rkv_raft__entry_copy(const RkvRaft__Entry *entry)
{
    RkvRaft__Entry *copy;

    copy = rkv_malloc(sizeof(*copy));
    if (copy == NULL) {
        return NULL;
    }
    rkv_raft__entry__init(copy);
    copy->term = entry->term;
    copy->index = entry->index;
    copy->type = entry->type;
    if (entry->data.len > 0) {
        copy->data.data = rkv_memdup(entry->data.data, entry->data.len);
        if (copy->data.data == NULL) {
            rkv_free(copy);
            return NULL;
        }
        copy->data.len = entry->data.len;
    }
    return copy;
}

void rkv_raft__entry_free(RkvRaft__Entry *entry)
{
    if (entry == NULL) {
        return;
    }
    rkv_free(entry->data.data);
    rkv_free(entry);
}

int rkv_raft__log_append(struct rkv_raft *r, uint64_t term,
                         RkvRaft__EntryType type, const void *data,
                         size_t len)
{
    struct rkv_raft_log *log = &r->log;
    RkvRaft__Entry entry = RKV_RAFT__ENTRY__INIT;
    RkvRaft__Entry *copy;

    assert(term >= rkv_raft__last_term(r));

    if (log->n_entries == log->cap_entries) {
        size_t cap = log->cap_entries == 0 ? 16 : log->cap_entries * 2;
        RkvRaft__Entry **grown;

        grown = rkv_realloc(log->entries, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        log->entries = grown;
        log->cap_entries = cap;
    }
    entry.term = term;
    entry.index = rkv_raft__last_index(r) + 1;
    entry.type = type;
    entry.data.data = (uint8_t *)data;
    entry.data.len = len;
    copy = rkv_raft__entry_copy(&entry);
    if (copy == NULL) {
        return -ENOMEM;
    }
    log->entries[log->n_entries++] = copy;
    return 0;
}

void rkv_raft__log_truncate(struct rkv_raft *r, uint64_t index)
{
    struct rkv_raft_log *log = &r->log;

    assert(index > r->commit);
    assert(index > log->snap_index);

    while (rkv_raft__last_index(r) >= index) {
        rkv_raft__entry_free(log->entries[log->n_entries - 1]);
        log->n_entries--;
    }
    if (r->unstable_index > index) {
        r->unstable_index = index;
    }
    if (r->persisted_index >= index) {
        r->persisted_index = index - 1;
    }
}

void rkv_raft__log_compact(struct rkv_raft *r, uint64_t index)
{
    struct rkv_raft_log *log = &r->log;
    size_t n_drop;
    uint64_t term;

    assert(index > log->snap_index);
    assert(index <= rkv_raft__last_index(r));

    term = rkv_raft__term(r, index);
    rkv_raft__conf_at(r, index, &log->snap_conf, NULL);
    n_drop = (size_t)(index - log->snap_index);
    for (size_t i = 0; i < n_drop; i++) {
        rkv_raft__entry_free(log->entries[i]);
    }
    memmove(log->entries, log->entries + n_drop,
            (log->n_entries - n_drop) * sizeof(*log->entries));
    log->n_entries -= n_drop;
    log->snap_index = index;
    log->snap_term = term;
}

void rkv_raft__log_reset(struct rkv_raft *r, uint64_t index, uint64_t term,
                         const struct rkv_raft_conf *conf)
{
    struct rkv_raft_log *log = &r->log;

    for (size_t i = 0; i < log->n_entries; i++) {
        rkv_raft__entry_free(log->entries[i]);
    }
    log->n_entries = 0;
    log->snap_index = index;
    log->snap_term = term;
    log->snap_conf = *conf;
}

void rkv_raft__log_free(struct rkv_raft *r)
{
    struct rkv_raft_log *log = &r->log;

    for (size_t i = 0; i < log->n_entries; i++) {
        rkv_raft__entry_free(log->entries[i]);
    }
    rkv_free(log->entries);
    log->entries = NULL;
    log->n_entries = 0;
    log->cap_entries = 0;
}

void rkv_raft__conf_at(const struct rkv_raft *r, uint64_t index,
                       struct rkv_raft_conf *conf, uint64_t *conf_index)
{
    uint64_t i = RKV_MIN(index, rkv_raft__last_index(r));

    /* The log only contains entries that passed rkv_raft__conf_from_pb, so a
     * decode failure here would be memory corruption. */
    for (; i > r->log.snap_index; i--) {
        const RkvRaft__Entry *entry = rkv_raft__entry(r, i);

        if (entry->type == RKV_RAFT__ENTRY_TYPE__ENTRY_CONF) {
            int rv = rkv_raft_conf_decode(entry->data.data, entry->data.len,
                                          conf);
            assert(rv == 0);
            (void)rv;
            if (conf_index != NULL) {
                *conf_index = i;
            }
            return;
        }
    }
    *conf = r->log.snap_conf;
    if (conf_index != NULL) {
        *conf_index = r->log.snap_index;
    }
}
