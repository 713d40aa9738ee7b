/*
 * The range cache, the node table and byte buffers of the client library.
 *
 * The cache is a sorted array of non-overlapping descriptors. Lookup is a
 * binary search on start keys. Ranges in rangekv only split (there are no
 * merges), and both halves of a split get a generation above their
 * parent's. So of two overlapping descriptors the one with the higher
 * generation is the newer: install evicts every overlapping entry unless
 * one of them (or the same range id) has a higher generation, in which
 * case the incoming descriptor is stale and ignored. A stale meta span,
 * which can lag a split, therefore cannot undo what a reply taught.
 *
 * Invariants:
 *   1. ranges[i].start_key < ranges[i + 1].start_key.
 *   2. ranges[i] ends at or before ranges[i + 1] starts; an entry with an
 *      empty end key is the last one.
 */
#define RKV_LOG_SUBSYS "client"
#include "client/client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ------------------------------------------------------------ */

int rkv_client__buf_reserve(struct rkv_client__buf *buf, size_t extra)
{
    size_t cap;
    uint8_t *data;

    if (buf->cap - buf->len >= extra) {
        return 0;
    }
    cap = buf->cap > 0 ? buf->cap : 4096;
    while (cap - buf->len < extra) {
        cap *= 2;
    }
    data = rkv_realloc(buf->data, cap);
    if (data == NULL) {
        return -ENOMEM;
    }
    buf->data = data;
    buf->cap = cap;
    return 0;
}

void rkv_client__buf_free(struct rkv_client__buf *buf)
{
    rkv_free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

/* ---- keys and ranges ---------------------------------------------------- */

int rkv_client__key_compare(const void *a, size_t a_len, const void *b,
                            size_t b_len)
{
    size_t n = RKV_MIN(a_len, b_len);
    int cmp = n > 0 ? memcmp(a, b, n) : 0;

    if (cmp != 0) {
        return cmp;
    }
    if (a_len == b_len) {
        return 0;
    }
    return a_len < b_len ? -1 : 1;
}

bool rkv_client__range_contains(const struct rkv_client__range *range,
                                const void *key, size_t key_len)
{
    if (rkv_client__key_compare(key, key_len, range->start_key,
                                range->start_key_len) < 0) {
        return false;
    }
    if (range->end_key_len == 0) {
        return true;
    }
    return rkv_client__key_compare(key, key_len, range->end_key,
                                   range->end_key_len) < 0;
}

/* True when [a.start, a.end) and [b.start, b.end) share a key. */
static bool cache_ranges_overlap(const struct rkv_client__range *a,
                                 const struct rkv_client__range *b)
{
    bool a_before_b =
        a->end_key_len > 0 &&
        rkv_client__key_compare(a->end_key, a->end_key_len, b->start_key,
                                b->start_key_len) <= 0;
    bool b_before_a =
        b->end_key_len > 0 &&
        rkv_client__key_compare(b->end_key, b->end_key_len, a->start_key,
                                a->start_key_len) <= 0;

    return !a_before_b && !b_before_a;
}

static void cache_range_free(struct rkv_client__range *range)
{
    rkv_free(range->start_key);
    rkv_free(range->end_key);
}

void rkv_client__cache_init(struct rkv_client__cache *cache)
{
    cache->ranges = NULL;
    cache->n_ranges = 0;
    cache->ranges_cap = 0;
}

void rkv_client__cache_free(struct rkv_client__cache *cache)
{
    for (size_t i = 0; i < cache->n_ranges; i++) {
        cache_range_free(&cache->ranges[i]);
    }
    rkv_free(cache->ranges);
    rkv_client__cache_init(cache);
}

/* Returns the index of the first range whose start key is above key. */
static size_t cache_upper_bound(const struct rkv_client__cache *cache,
                                const void *key, size_t key_len)
{
    size_t lo = 0;
    size_t hi = cache->n_ranges;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct rkv_client__range *r = &cache->ranges[mid];

        if (rkv_client__key_compare(r->start_key, r->start_key_len, key,
                                    key_len) <= 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

struct rkv_client__range *
rkv_client__cache_lookup(struct rkv_client__cache *cache, const void *key,
                         size_t key_len)
{
    size_t index = cache_upper_bound(cache, key, key_len);
    struct rkv_client__range *range;

    if (index == 0) {
        return NULL;
    }
    range = &cache->ranges[index - 1];
    if (!rkv_client__range_contains(range, key, key_len)) {
        return NULL;
    }
    return range;
}

static void cache_remove_at(struct rkv_client__cache *cache, size_t index)
{
    assert(index < cache->n_ranges);
    cache_range_free(&cache->ranges[index]);
    memmove(&cache->ranges[index], &cache->ranges[index + 1],
            (cache->n_ranges - index - 1) * sizeof(cache->ranges[0]));
    cache->n_ranges--;
}

/* Copies len bytes into an allocation of at least one byte, so an empty key
 * still has a non-NULL pointer. */
static uint8_t *cache_dup_key(const uint8_t *key, size_t key_len)
{
    uint8_t *copy = rkv_malloc(RKV_MAX(key_len, (size_t)1));

    if (copy != NULL && key_len > 0) {
        memcpy(copy, key, key_len);
    }
    return copy;
}

/* Fills copy with owned copies of desc's keys. */
static int cache_copy_range(struct rkv_client__range *copy,
                            const struct rkv_client__range *desc)
{
    *copy = *desc;
    copy->start_key = cache_dup_key(desc->start_key, desc->start_key_len);
    if (copy->start_key == NULL) {
        goto err;
    }
    copy->end_key = cache_dup_key(desc->end_key, desc->end_key_len);
    if (copy->end_key == NULL) {
        goto err_after_start_key;
    }
    return 0;

err_after_start_key:
    rkv_free(copy->start_key);
err:
    return -ENOMEM;
}

int rkv_client__cache_install(struct rkv_client__cache *cache,
                              const struct rkv_client__range *desc)
{
    struct rkv_client__range copy;
    uint64_t known_leader = 0;
    size_t index;
    int rv;

    assert(desc->end_key_len == 0 ||
           rkv_client__key_compare(desc->start_key, desc->start_key_len,
                                   desc->end_key, desc->end_key_len) < 0);

    for (size_t i = 0; i < cache->n_ranges; i++) {
        const struct rkv_client__range *r = &cache->ranges[i];
        bool is_same = r->range_id == desc->range_id;

        if (!is_same && !cache_ranges_overlap(r, desc)) {
            continue;
        }
        if (r->generation > desc->generation) {
            return 0;
        }
        if (is_same && r->generation == desc->generation) {
            known_leader = r->leader_node_id;
        }
    }
    if (cache->n_ranges == cache->ranges_cap) {
        size_t cap = cache->ranges_cap > 0 ? cache->ranges_cap * 2 : 16;
        struct rkv_client__range *ranges =
            rkv_realloc(cache->ranges, cap * sizeof(*ranges));
        if (ranges == NULL) {
            return -ENOMEM;
        }
        cache->ranges = ranges;
        cache->ranges_cap = cap;
    }
    rv = cache_copy_range(&copy, desc);
    if (rv != 0) {
        return rv;
    }
    /* Descriptors sent with a key mismatch may lack the leader; keep the
     * one already known for the same generation. */
    if (copy.leader_node_id == 0) {
        copy.leader_node_id = known_leader;
    }

    /* Evict every overlapping entry, then insert at the sorted position. */
    for (size_t i = cache->n_ranges; i > 0; i--) {
        if (cache_ranges_overlap(&cache->ranges[i - 1], desc) ||
            cache->ranges[i - 1].range_id == desc->range_id) {
            cache_remove_at(cache, i - 1);
        }
    }
    index = cache_upper_bound(cache, desc->start_key, desc->start_key_len);
    memmove(&cache->ranges[index + 1], &cache->ranges[index],
            (cache->n_ranges - index) * sizeof(cache->ranges[0]));
    cache->ranges[index] = copy;
    cache->n_ranges++;
    return 0;
}

void rkv_client__cache_evict(struct rkv_client__cache *cache, uint64_t range_id)
{
    for (size_t i = 0; i < cache->n_ranges; i++) {
        if (cache->ranges[i].range_id == range_id) {
            cache_remove_at(cache, i);
            return;
        }
    }
}

void rkv_client__cache_set_leader(struct rkv_client__cache *cache,
                                  uint64_t range_id, uint64_t leader_node_id)
{
    for (size_t i = 0; i < cache->n_ranges; i++) {
        if (cache->ranges[i].range_id == range_id) {
            cache->ranges[i].leader_node_id = leader_node_id;
            return;
        }
    }
}

/* ---- node table --------------------------------------------------------- */

struct rkv_client__node *rkv_client__node_by_id(struct rkv_client *client,
                                                uint64_t node_id)
{
    if (node_id == 0) {
        return NULL;
    }
    for (size_t i = 0; i < client->n_nodes; i++) {
        if (client->nodes[i]->node_id == node_id) {
            return client->nodes[i];
        }
    }
    return NULL;
}

static struct rkv_client__node *node_by_addr(struct rkv_client *client,
                                             const char *addr)
{
    for (size_t i = 0; i < client->n_nodes; i++) {
        if (strcmp(client->nodes[i]->addr, addr) == 0) {
            return client->nodes[i];
        }
    }
    return NULL;
}

static struct rkv_client__node *node_add(struct rkv_client *client,
                                         uint64_t node_id, const char *addr)
{
    struct rkv_client__node **nodes;
    struct rkv_client__node *node;

    nodes = rkv_realloc(client->nodes,
                        (client->n_nodes + 1) * sizeof(*client->nodes));
    if (nodes == NULL) {
        return NULL;
    }
    client->nodes = nodes;
    node = rkv_calloc(1, sizeof(*node));
    if (node == NULL) {
        return NULL;
    }
    node->conns = rkv_calloc(client->n_connections, sizeof(*node->conns));
    if (node->conns == NULL) {
        rkv_free(node);
        return NULL;
    }
    node->node_id = node_id;
    snprintf(node->addr, sizeof(node->addr), "%s", addr);
    for (uint32_t i = 0; i < client->n_connections; i++) {
        struct rkv_client__conn *conn = &node->conns[i];
        conn->client = client;
        conn->node = node;
        conn->state = RKV_CLIENT_CONN_IDLE;
        conn->reconnect_delay_ms = RKV_CLIENT_RECONNECT_MIN_MS;
        rkv_client__link_init(&conn->ops);
        rkv_client__link_init(&conn->flush_link);
    }
    client->nodes[client->n_nodes++] = node;
    RKV_LOG(RKV_DEBUG, "learned node=%llu addr=%s", (unsigned long long)node_id,
            addr);
    return node;
}

static bool node_is_idle(const struct rkv_client__node *node)
{
    for (uint32_t i = 0; i < node->conns[0].client->n_connections; i++) {
        if (node->conns[i].state != RKV_CLIENT_CONN_IDLE) {
            return false;
        }
    }
    return true;
}

struct rkv_client__node *rkv_client__node_learn(struct rkv_client *client,
                                                uint64_t node_id,
                                                const char *addr)
{
    struct rkv_client__node *node = rkv_client__node_by_id(client, node_id);

    assert(addr[0] != '\0');
    if (node != NULL) {
        /* A node restarted on a new port: follow it once no connection to
         * the old address is open. */
        if (strcmp(node->addr, addr) != 0 && node_is_idle(node)) {
            RKV_LOG(RKV_INFO, "node=%llu moved from addr=%s to addr=%s",
                    (unsigned long long)node_id, node->addr, addr);
            snprintf(node->addr, sizeof(node->addr), "%s", addr);
        }
        return node;
    }
    node = node_by_addr(client, addr);
    if (node != NULL) {
        /* A seed address turns out to be this node. */
        if (node->node_id == 0) {
            node->node_id = node_id;
        }
        return node;
    }
    return node_add(client, node_id, addr);
}

struct rkv_client__conn *rkv_client__node_conn(struct rkv_client__node *node,
                                               uint64_t now_ms)
{
    uint32_t n = node->conns[0].client->n_connections;

    for (uint32_t i = 0; i < n; i++) {
        struct rkv_client__conn *conn =
            &node->conns[(node->next_conn_index + i) % n];
        if (rkv_client__conn_is_usable(conn, now_ms)) {
            node->next_conn_index = (node->next_conn_index + i + 1) % n;
            return conn;
        }
    }
    return NULL;
}

void rkv_client__nodes_free(struct rkv_client *client)
{
    for (size_t i = 0; i < client->n_nodes; i++) {
        struct rkv_client__node *node = client->nodes[i];
        for (uint32_t c = 0; c < client->n_connections; c++) {
            assert(node->conns[c].state == RKV_CLIENT_CONN_IDLE);
            rkv_client__buf_free(&node->conns[c].out);
            rkv_client__buf_free(&node->conns[c].wbuf);
            rkv_client__buf_free(&node->conns[c].in);
        }
        rkv_free(node->conns);
        rkv_free(node);
    }
    rkv_free(client->nodes);
    client->nodes = NULL;
    client->n_nodes = 0;
}
