/*
 * Safety checks run while a simulation runs, as each event happens:
 *   1. Election safety: at most one node becomes leader of a range in a
 *      term.
 *   2. State machine safety: every replica of a range applies the same
 *      entry (the same term) at each index.
 * A violation fails the run with RKV_SIM_FAIL_SAFETY; the first one is
 * kept in the report.
 *
 * Both are maps from a (range id, number) pair to a value, kept in one
 * open-addressing hash table per check.
 */
#include "tests/sim/sim_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

struct sim_map_slot {
    uint64_t range_id;  /* 0: empty slot (range ids start at 1) */
    uint64_t number;    /* term or index */
    uint64_t value;     /* node id or term */
};

static uint64_t map_hash(uint64_t range_id, uint64_t number)
{
    uint64_t h = range_id * 0x9e3779b97f4a7c15ull ^ number;

    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static void map_grow(struct sim_map *map)
{
    size_t cap = map->cap == 0 ? 1024 : map->cap * 2;
    struct sim_map_slot *slots = rkv_calloc(cap, sizeof(*slots));

    if (slots == NULL) {
        sim_fatal("growing a safety map", -ENOMEM);
    }
    for (size_t i = 0; i < map->cap; i++) {
        struct sim_map_slot *old = &map->slots[i];
        size_t k;

        if (old->range_id == 0) {
            continue;
        }
        k = map_hash(old->range_id, old->number) & (cap - 1);
        while (slots[k].range_id != 0) {
            k = (k + 1) & (cap - 1);
        }
        slots[k] = *old;
    }
    rkv_free(map->slots);
    map->slots = slots;
    map->cap = cap;
}

/* Stores value under (range_id, number) unless a value is there already.
 * Returns the value stored under the key after the call. */
static uint64_t map_put_first(struct sim_map *map, uint64_t range_id,
                              uint64_t number, uint64_t value)
{
    size_t k;

    assert(range_id != 0);
    if ((map->n + 1) * 2 > map->cap) {
        map_grow(map);
    }
    k = map_hash(range_id, number) & (map->cap - 1);
    while (map->slots[k].range_id != 0) {
        if (map->slots[k].range_id == range_id &&
            map->slots[k].number == number) {
            return map->slots[k].value;
        }
        k = (k + 1) & (map->cap - 1);
    }
    map->slots[k].range_id = range_id;
    map->slots[k].number = number;
    map->slots[k].value = value;
    map->n++;
    return value;
}

static void safety_fail(struct rkv_sim_world *w, const char *detail)
{
    if (w->report->verdict != RKV_SIM_PASS) {
        return;
    }
    w->report->verdict = RKV_SIM_FAIL_SAFETY;
    snprintf(w->report->detail, sizeof(w->report->detail), "%s", detail);
    sim_trace(w, "safety violation: %s", detail);
}

void sim_safety_leader(struct rkv_sim_world *w, uint64_t range_id,
                       uint64_t term, uint64_t node_id)
{
    uint64_t first = map_put_first(&w->leaders, range_id, term, node_id);
    char detail[160];

    if (first != node_id) {
        snprintf(detail, sizeof(detail),
                 "two leaders range=%llu term=%llu nodes=%llu,%llu",
                 (unsigned long long)range_id, (unsigned long long)term,
                 (unsigned long long)first, (unsigned long long)node_id);
        safety_fail(w, detail);
    }
}

void sim_safety_applied(struct rkv_sim_world *w, uint64_t range_id,
                        uint64_t index, uint64_t term, uint64_t node_id)
{
    uint64_t first = map_put_first(&w->applied, range_id, index, term);
    char detail[160];

    if (first != term) {
        snprintf(detail, sizeof(detail),
                 "different entries applied range=%llu index=%llu "
                 "terms=%llu,%llu node=%llu",
                 (unsigned long long)range_id, (unsigned long long)index,
                 (unsigned long long)first, (unsigned long long)term,
                 (unsigned long long)node_id);
        safety_fail(w, detail);
    }
}

void sim_safety_free(struct rkv_sim_world *w)
{
    rkv_free(w->leaders.slots);
    rkv_free(w->applied.slots);
    memset(&w->leaders, 0, sizeof(w->leaders));
    memset(&w->applied, 0, sizeof(w->applied));
}
