/*
 * Per-key linearizability checking of a register history.
 *
 * The search is Wing and Gong's, with the memoization from Lowe's "Testing
 * for Linearizability", run per key as in Horn and Kroening's "Faster
 * linearizability checking via P-compositionality". Porcupine
 * (github.com/anishathalye/porcupine) implements the same algorithm.
 *
 * The history becomes a doubly linked list of call and return events in
 * time order, and the search walks it. At a call, it tries to linearize
 * that operation next: the model must accept it in the current state, and
 * the pair (set of linearized operations, new state) must be new. Then the
 * call and its return are lifted out of the list. Meeting a return means
 * the operation it closes had to be linearized by now, so the search
 * backtracks to the last choice. The history is linearizable when the list
 * empties.
 *
 * Unknown outcomes: an operation whose outcome is unknown returns at
 * "infinity", so it can be linearized anywhere after its call; linearizing
 * it after every other operation is the same as it never taking effect,
 * because nothing observes it. Many unknown writes make the search
 * explode, so a first search leaves out those whose value no operation saw
 * (see rkv_sim_check_key() for why that is sound).
 *
 * The model: the state is the register's value, NULL when absent. GET must
 * return the state; PUT sets it; CAS sets it when the state equals the
 * expected value and must report the swap, otherwise it must report no
 * swap (an unknown CAS takes whichever branch the state selects).
 */
#include "tests/sim/sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

struct check_event {
    bool is_call;
    size_t op_index;           /* index into check.ops */
    uint64_t time;             /* call or return sequence number */
    struct check_event *match; /* call: its return; return: its call */
    struct check_event *prev;
    struct check_event *next;
};

/* A (linearized set, state) pair seen before; bits follow the header. */
struct check_seen {
    uint64_t hash;
    const char *state; /* borrowed from an op; NULL: absent */
    uint64_t bits[];
};

struct check_frame {
    struct check_event *call;
    const char *state; /* the state before the call */
};

struct check {
    const struct rkv_sim_op **ops; /* this key's ops; borrowed */
    size_t n_ops;
    size_t n_words;             /* 64-bit words in a linearized set */
    uint64_t *linearized;       /* the current set */
    struct check_event head;    /* list sentinel */
    struct check_event *events; /* 2 * n_ops */
    struct check_frame *stack;  /* n_ops frames */
    size_t n_stack;
    uint8_t *seen_pool; /* records of seen_size bytes */
    size_t seen_size;
    size_t n_seen;
    size_t seen_pool_cap;      /* in records */
    uint32_t *table;           /* 1-based record numbers; 0: empty */
    size_t table_cap;          /* a power of two */
    size_t best_depth;         /* most operations linearized at once */
    uint64_t blocked_call_seq; /* see struct rkv_sim_check_detail */
};

static bool state_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

/* Applies op to state. Returns whether the model accepts op's outcome;
 * *next_state is the state after it. */
static bool model_step(const char *state, const struct rkv_sim_op *op,
                       const char **next_state)
{
    bool matches;

    *next_state = state;
    switch (op->kind) {
    case RKV_SIM_OP_GET:
        if (!op->found) {
            return state == NULL;
        }
        return state_equal(state, op->output);
    case RKV_SIM_OP_PUT:
        *next_state = op->value;
        return true;
    case RKV_SIM_OP_CAS:
        matches = op->expect_absent ? state == NULL
                                    : state_equal(state, op->expected);
        if (matches) {
            *next_state = op->value;
        }
        return op->unknown || op->found == matches;
    }
    return false;
}

/* The splitmix64 finalizer: every input bit affects every output bit, so
 * the low bits that pick a table slot depend on the whole set. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t seen_hash(const uint64_t *bits, size_t n_words,
                          const char *state)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n_words; i++) {
        h = mix64(h ^ bits[i]);
    }
    if (state == NULL) {
        return mix64(h ^ 0xa5);
    }
    for (const char *p = state; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    return mix64(h);
}

static struct check_seen *seen_record(struct check *c, uint32_t number)
{
    return (struct check_seen *)(c->seen_pool +
                                 (size_t)(number - 1) * c->seen_size);
}

static int seen_grow_table(struct check *c)
{
    size_t cap = c->table_cap == 0 ? 1024 : c->table_cap * 2;
    uint32_t *table = rkv_calloc(cap, sizeof(*table));

    if (table == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < c->table_cap; i++) {
        uint32_t number = c->table[i];
        size_t slot;

        if (number == 0) {
            continue;
        }
        slot = seen_record(c, number)->hash & (cap - 1);
        while (table[slot] != 0) {
            slot = (slot + 1) & (cap - 1);
        }
        table[slot] = number;
    }
    rkv_free(c->table);
    c->table = table;
    c->table_cap = cap;
    return 0;
}

/* Adds (bits, state) to the seen set. Returns 1 when it was new, 0 when
 * seen before, or -ENOMEM. */
static int seen_add(struct check *c, const uint64_t *bits, const char *state)
{
    uint64_t hash = seen_hash(bits, c->n_words, state);
    struct check_seen *record;
    size_t slot;
    int rv;

    if ((c->n_seen + 1) * 2 > c->table_cap) {
        rv = seen_grow_table(c);
        if (rv != 0) {
            return rv;
        }
    }
    slot = hash & (c->table_cap - 1);
    while (c->table[slot] != 0) {
        record = seen_record(c, c->table[slot]);
        if (record->hash == hash && state_equal(record->state, state) &&
            memcmp(record->bits, bits, c->n_words * 8) == 0) {
            return 0;
        }
        slot = (slot + 1) & (c->table_cap - 1);
    }
    if (c->n_seen == c->seen_pool_cap) {
        size_t cap = c->seen_pool_cap == 0 ? 1024 : c->seen_pool_cap * 2;
        uint8_t *pool = rkv_realloc(c->seen_pool, cap * c->seen_size);

        if (pool == NULL) {
            return -ENOMEM;
        }
        c->seen_pool = pool;
        c->seen_pool_cap = cap;
    }
    c->n_seen++;
    record = seen_record(c, (uint32_t)c->n_seen);
    record->hash = hash;
    record->state = state;
    memcpy(record->bits, bits, c->n_words * 8);
    c->table[slot] = (uint32_t)c->n_seen;
    return 1;
}

static int compare_events(const void *a, const void *b)
{
    const struct check_event *x = a;
    const struct check_event *y = b;

    if (x->time != y->time) {
        return x->time < y->time ? -1 : 1;
    }
    /* Only returns at infinity tie; order them by operation. */
    return x->op_index < y->op_index ? -1 : (x->op_index > y->op_index);
}

/* Builds the sorted event list of c->ops. */
static int check_build_events(struct check *c)
{
    size_t n_events = 2 * c->n_ops;
    size_t *call_at;

    c->events = rkv_calloc(n_events + 1, sizeof(*c->events));
    call_at = rkv_calloc(c->n_ops + 1, sizeof(*call_at));
    if (c->events == NULL || call_at == NULL) {
        rkv_free(call_at);
        return -ENOMEM;
    }
    for (size_t i = 0; i < c->n_ops; i++) {
        const struct rkv_sim_op *op = c->ops[i];

        c->events[2 * i].is_call = true;
        c->events[2 * i].op_index = i;
        c->events[2 * i].time = op->call_seq;
        c->events[2 * i + 1].op_index = i;
        c->events[2 * i + 1].time = op->unknown ? UINT64_MAX : op->return_seq;
    }
    qsort(c->events, n_events, sizeof(*c->events), compare_events);

    /* Link calls to returns, then the list in sorted order. */
    for (size_t i = 0; i < n_events; i++) {
        if (c->events[i].is_call) {
            call_at[c->events[i].op_index] = i;
        }
    }
    for (size_t i = 0; i < n_events; i++) {
        if (!c->events[i].is_call) {
            struct check_event *call =
                &c->events[call_at[c->events[i].op_index]];

            call->match = &c->events[i];
            c->events[i].match = call;
        }
    }
    rkv_free(call_at);
    c->head.next = n_events > 0 ? &c->events[0] : NULL;
    for (size_t i = 0; i < n_events; i++) {
        c->events[i].prev = i == 0 ? &c->head : &c->events[i - 1];
        c->events[i].next = i + 1 < n_events ? &c->events[i + 1] : NULL;
    }
    return 0;
}

/* Removes a call and its return from the list. */
static void event_lift(struct check_event *call)
{
    struct check_event *ret = call->match;

    call->prev->next = call->next;
    call->next->prev = call->prev; /* a call is never last */
    ret->prev->next = ret->next;
    if (ret->next != NULL) {
        ret->next->prev = ret->prev;
    }
}

/* Puts back what event_lift() removed, in reverse order. */
static void event_unlift(struct check_event *call)
{
    struct check_event *ret = call->match;

    ret->prev->next = ret;
    if (ret->next != NULL) {
        ret->next->prev = ret;
    }
    call->prev->next = call;
    call->next->prev = call;
}

static void bit_set(uint64_t *bits, size_t i)
{
    bits[i / 64] |= 1ull << (i % 64);
}

static void bit_clear(uint64_t *bits, size_t i)
{
    bits[i / 64] &= ~(1ull << (i % 64));
}

/* Tries to linearize the call at *entry. Returns 1 when it did (the list
 * and state moved on), 0 when not, or -ENOMEM. */
static int search_try_call(struct check *c, struct check_event **entry,
                           const char **state)
{
    struct check_event *call = *entry;
    const char *next_state;
    int rv;

    if (!model_step(*state, c->ops[call->op_index], &next_state)) {
        return 0;
    }
    bit_set(c->linearized, call->op_index);
    rv = seen_add(c, c->linearized, next_state);
    if (rv <= 0) {
        bit_clear(c->linearized, call->op_index);
        return rv;
    }
    c->stack[c->n_stack].call = call;
    c->stack[c->n_stack].state = *state;
    c->n_stack++;
    *state = next_state;
    event_lift(call);
    *entry = c->head.next;
    return 1;
}

static uint64_t check_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads the clock once per this many steps. */
#define CHECK_CLOCK_EVERY 1024

static int check_search(struct check *c, uint64_t step_budget,
                        uint64_t deadline_ms, enum rkv_sim_check_result *result)
{
    struct check_event *entry = c->head.next;
    const char *state = NULL;
    uint64_t steps = 0;
    int rv;

    while (c->head.next != NULL) {
        if (++steps > step_budget ||
            (steps % CHECK_CLOCK_EVERY == 0 && check_now_ms() >= deadline_ms)) {
            *result = RKV_SIM_CHECK_UNKNOWN;
            return 0;
        }
        if (entry->is_call) {
            rv = search_try_call(c, &entry, &state);
            if (rv < 0) {
                return rv;
            }
            if (rv == 0) {
                entry = entry->next;
            }
            continue;
        }
        /* A return: its operation was not linearized in time. */
        if (c->n_stack >= c->best_depth) {
            c->best_depth = c->n_stack;
            c->blocked_call_seq = c->ops[entry->op_index]->call_seq;
        }
        if (c->n_stack == 0) {
            *result = RKV_SIM_CHECK_VIOLATION;
            return 0;
        }
        c->n_stack--;
        entry = c->stack[c->n_stack].call;
        state = c->stack[c->n_stack].state;
        bit_clear(c->linearized, entry->op_index);
        event_unlift(entry);
        entry = entry->next;
    }
    *result = RKV_SIM_CHECK_OK;
    return 0;
}

static void check_free(struct check *c)
{
    rkv_free(c->ops);
    rkv_free(c->linearized);
    rkv_free(c->events);
    rkv_free(c->stack);
    rkv_free(c->seen_pool);
    rkv_free(c->table);
}

/* Returns whether some operation of history on op's key saw op's value: a
 * read returned it, or a CAS expected it. */
static bool op_is_observed(const struct rkv_sim_history *history,
                           const struct rkv_sim_op *op)
{
    for (size_t i = 0; i < history->n_ops; i++) {
        const struct rkv_sim_op *other = &history->ops[i];

        if (other->key != op->key) {
            continue;
        }
        if (other->kind == RKV_SIM_OP_GET && other->found &&
            strcmp(other->output, op->value) == 0) {
            return true;
        }
        if (other->kind == RKV_SIM_OP_CAS && !other->expect_absent &&
            strcmp(other->expected, op->value) == 0) {
            return true;
        }
    }
    return false;
}

/* Runs one search over the operations of key; with prune, leaves out the
 * unknown writes whose value no operation saw. */
static int check_run(const struct rkv_sim_history *history, unsigned key,
                     bool prune, uint64_t step_budget, uint64_t deadline_ms,
                     enum rkv_sim_check_result *result,
                     struct rkv_sim_check_detail *detail)
{
    struct check c;
    int rv;

    memset(&c, 0, sizeof(c));
    c.ops = rkv_calloc(history->n_ops + 1, sizeof(*c.ops));
    if (c.ops == NULL) {
        rv = -ENOMEM;
        goto err;
    }
    for (size_t i = 0; i < history->n_ops; i++) {
        const struct rkv_sim_op *op = &history->ops[i];

        if (op->key != key) {
            continue;
        }
        if (prune && op->unknown && !op_is_observed(history, op)) {
            continue;
        }
        c.ops[c.n_ops++] = op;
    }
    c.n_words = c.n_ops / 64 + 1;
    c.seen_size = sizeof(struct check_seen) + c.n_words * 8;
    c.linearized = rkv_calloc(c.n_words, sizeof(*c.linearized));
    c.stack = rkv_calloc(c.n_ops + 1, sizeof(*c.stack));
    if (c.linearized == NULL || c.stack == NULL) {
        rv = -ENOMEM;
        goto err_after_alloc;
    }
    rv = check_build_events(&c);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = check_search(&c, step_budget, deadline_ms, result);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (detail != NULL) {
        detail->n_ops = c.n_ops;
        detail->n_linearized_max =
            *result == RKV_SIM_CHECK_OK ? c.n_ops : c.best_depth;
        detail->blocked_call_seq =
            *result == RKV_SIM_CHECK_OK ? 0 : c.blocked_call_seq;
    }
    check_free(&c);
    return 0;

err_after_alloc:
    check_free(&c);
err:
    assert(rv != 0);
    return rv;
}

int rkv_sim_check_key(const struct rkv_sim_history *history, unsigned key,
                      uint64_t step_budget, uint64_t time_budget_ms,
                      enum rkv_sim_check_result *result,
                      struct rkv_sim_check_detail *detail)
{
    uint64_t deadline_ms;
    int rv;

    if (step_budget == 0) {
        step_budget = RKV_SIM_CHECK_STEPS_DEFAULT;
    }
    if (time_budget_ms == 0) {
        time_budget_ms = RKV_SIM_CHECK_MS_DEFAULT;
    }
    deadline_ms = check_now_ms() + time_budget_ms;

    /* Pruning is sound in one direction only: an unknown write that no
     * operation saw can always be linearized last, where it changes nothing
     * observed, so a linearization without it extends to one with it. Without
     * it, a failed CAS might match a state the write would have hidden, so a
     * violation is confirmed on the whole history. */
    rv =
        check_run(history, key, true, step_budget, deadline_ms, result, detail);
    if (rv != 0 || *result == RKV_SIM_CHECK_OK) {
        return rv;
    }
    return check_run(history, key, false, step_budget, deadline_ms, result,
                     detail);
}
