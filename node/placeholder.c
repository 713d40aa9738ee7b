/*
 * Placeholder replicas: a node whose snapshot of a range skipped a split
 * never applies that split, so it never creates the right-hand range. When
 * Raft messages arrive for such a range, the node creates an uninitialized
 * replica (no span, empty configuration) that the range's leader then fills
 * with a snapshot.
 *
 * A placeholder is scheduled only when this node's copy of the meta records
 * lists the range and no initialized local replica overlaps its span. An
 * overlapping replica is behind on its log and will create the range itself
 * when it applies the split, so messages then wait in the held queue.
 */
#define RKV_LOG_SUBSYS "node"
#include "node/node_internal.h"

/* Returns whether an attempt for range_id was made recently; records this
 * one otherwise. */
static bool placeholder_recently_tried(struct rkv_node *node, uint64_t range_id,
                                       uint64_t now_ms)
{
    for (size_t i = 0; i < RKV_NODE_UNINIT_SLOTS; i++) {
        if (node->uninit_attempts[i].range_id == range_id &&
            now_ms <
                node->uninit_attempts[i].at_ms + RKV_NODE_UNINIT_RETRY_MS) {
            return true;
        }
    }
    node->uninit_attempts[node->uninit_next].range_id = range_id;
    node->uninit_attempts[node->uninit_next].at_ms = now_ms;
    node->uninit_next = (node->uninit_next + 1) % RKV_NODE_UNINIT_SLOTS;
    return false;
}

static bool spans_overlap(const struct rkv_range_desc *a,
                          const struct rkv_range_desc *b)
{
    /* [a.start, a.end) and [b.start, b.end) overlap unless one ends at or
     * before the other starts; an empty end key is the keyspace end. */
    bool a_ends_first =
        a->end_key_len > 0 &&
        rkv_node__compare_keys(a->end_key, a->end_key_len, b->start_key,
                               b->start_key_len) <= 0;
    bool b_ends_first =
        b->end_key_len > 0 &&
        rkv_node__compare_keys(b->end_key, b->end_key_len, a->start_key,
                               a->start_key_len) <= 0;

    return !a_ends_first && !b_ends_first;
}

/* Looks range_id up in this node's copy of the meta records. A placeholder
 * is due only when no initialized local replica that may be an ancestor
 * overlaps its span, because that one creates the range itself when it
 * applies the split. Range ids grow with each split, so only a replica with
 * a smaller id can be an ancestor. A newer overlapping one is a descendant
 * of range_id, seen through a meta record that its split has not updated
 * yet (range_id may have no leader to update it), and it never creates
 * range_id. */
static bool placeholder_is_due(struct rkv_node *node, uint64_t range_id)
{
    struct rkv_range_rtxn *rtxn;
    struct rkv_range_desc *descs = NULL;
    size_t n_descs = 0;
    const struct rkv_range_desc *meta = NULL;
    bool due = false;

    if (rkv_range_rtxn_begin(node->store, &rtxn) != 0) {
        return false;
    }
    if (rkv_range_meta_list(rtxn, &descs, &n_descs) == 0) {
        for (size_t i = 0; i < n_descs && meta == NULL; i++) {
            if (descs[i].range_id == range_id) {
                meta = &descs[i];
            }
        }
    }
    if (meta != NULL) {
        due = true;
        for (size_t i = 0; i < node->n_buckets && due; i++) {
            for (struct rkv_node__replica *r = node->buckets[i]; r != NULL;
                 r = r->hash_next) {
                if (r->initialized && r->range_id < range_id &&
                    spans_overlap(&r->desc, meta)) {
                    due = false;
                    break;
                }
            }
        }
    }
    rkv_free(descs);
    rkv_range_rtxn_end(rtxn);
    return due;
}

void rkv_node__placeholder_maybe_create(struct rkv_node *node,
                                        uint64_t range_id)
{
    int rv;

    if (node->cluster_id == 0 ||
        placeholder_recently_tried(node, range_id, rkv_node__now_ms(node)) ||
        !placeholder_is_due(node, range_id)) {
        return;
    }

    /* The writer thread creates it: a commit on the loop thread could wait
     * for map growth while this thread holds a snapshot reader, which
     * would deadlock (range.h). */
    rv = rkv_node__batch_add_create(node, range_id);
    if (rv != 0) {
        RKV_LOG(RKV_WARN,
                "creating placeholder replica failed range=%llu error=%s",
                (unsigned long long)range_id, rkv_strerror(rv));
    }
}

/* Opens the placeholder the writer created and delivers the messages held
 * for it. */
void rkv_node__placeholder_created(struct rkv_node *node, uint64_t range_id)
{
    struct rkv_node__replica *r = NULL;
    struct rkv_range_state state;
    int rv;

    if (rkv_node__replica_find(node, range_id) != NULL) {
        return; /* a split applied in the same batch created it */
    }
    rv = rkv_range_state_load(node->store, range_id, &state);
    if (rv == 0) {
        rv = rkv_node__replica_open(node, &state, &r);
    }
    if (rv != 0) {
        RKV_LOG(RKV_WARN,
                "opening placeholder replica failed range=%llu error=%s",
                (unsigned long long)range_id, rkv_strerror(rv));
        return;
    }
    RKV_LOG(RKV_INFO,
            "created placeholder replica range=%llu, waiting for a snapshot",
            (unsigned long long)range_id);
    rkv_node__replay_held(r);
}
