/*
 * The bench runner: logical clients that each keep one operation in flight
 * through rkv_client_submit(), a scheduler thread for delayed starts, and
 * the caller's thread, which prints progress and gathers the report.
 *
 * Happy path of one logical client (closed loop):
 *   client_issue() picks an operation and a key and submits the request.
 *   client_done_cb() runs on the client library's loop thread. It records
 *   the outcome and calls client_issue() again at once.
 * In an open loop (--rate) client_done_cb() advances the client's intended
 * start by one interval and, when that time is still ahead, hands the client
 * to the scheduler thread (schedule_push), which issues it when due.
 *
 * Failure modes:
 *  - rkv_client_submit() fails (RKV_EBUSY, -ENOMEM, RKV_ESHUTDOWN): the
 *    operation counts as issued and failed, and the client retries after
 *    BENCH_SUBMIT_RETRY_NS through the scheduler, so it never spins.
 *  - A request fails or times out: it is counted failed (or unknown for
 *    RKV_EUNKNOWN); the client carries on.
 *  - The node counters cannot be read: the report carries the error and
 *    prints no counters.
 *
 * Client states, for a client c (guarded as noted):
 *   IDLE -> IN_FLIGHT          client_issue, submit succeeded
 *   IN_FLIGHT -> IDLE          client_done_cb (then issue or schedule)
 *   IDLE -> SCHEDULED          schedule_push (bench->lock)
 *   SCHEDULED -> IDLE          scheduler_main pops it (bench->lock)
 *   IDLE -> FINISHED           client_finish, past the phase's end
 * Exactly one thread acts for a client at a time: the one that moved it to
 * IDLE.
 */
#define RKV_LOG_SUBSYS "bench"
#include "bench/bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/bench_internal.h"
#include "common/common.h"
#include "rangekv/client.h"

/* Pause before a client whose submit failed tries again. */
#define BENCH_SUBMIT_RETRY_NS (1000ull * 1000)
/* Time between progress lines. */
#define BENCH_PROGRESS_NS (1000ull * 1000 * 1000)

enum bench_phase {
    BENCH_PHASE_LOAD = 0, /* writing every key once, unmeasured */
    BENCH_PHASE_RUN,      /* warm-up, then the measured window */
};

/* A delayed client start, kept in a binary min-heap by due time. */
struct bench_delay {
    uint64_t due_ns;
    struct bench_client *client;
};

/* One client library instance and the figures of the clients using it. */
struct bench_worker {
    struct rkv_client *client; /* owned; its own loop thread */
    pthread_mutex_t lock;      /* guards everything below */
    struct rkv_bench_op_stats total[RKV_BENCH_N_OPS];    /* measured */
    struct rkv_bench_op_stats interval[RKV_BENCH_N_OPS]; /* since the last
                                                            progress line */
    uint64_t n_warmup_ops;  /* run phase, started during warm-up */
    uint64_t n_load_ops;    /* load phase writes */
    uint64_t n_load_failed; /* load phase writes that did not succeed */
};

/* Logical client state; see the file comment for who touches it when. */
struct bench_client {
    struct rkv_bench *bench;      /* owner */
    struct bench_worker *worker;  /* the client instance it uses */
    struct rkv_bench_rng rng;     /* its own random sequence */
    struct rkv_bench_zipf latest; /* "latest" distribution; grows */
    enum rkv_bench_op op;         /* the operation in flight */
    bool loading;                 /* the operation is a load write */
    bool rmw_writing;             /* RMW: the get is done, the put runs */
    bool measured;                /* the operation counts in the report */
    uint64_t start_ns;            /* latency origin of the operation */
    uint64_t intended_ns;         /* open loop: the scheduled start */
    uint32_t scan_limit;          /* SCAN: pairs requested */
    char key[RKV_BENCH_KEY_BUF];  /* key of the operation in flight */
    size_t key_len;
};

struct rkv_bench {
    const struct rkv_bench_config *config; /* borrowed for the run */
    struct rkv_bench_mix mix;       /* operation shares and distribution */
    struct rkv_bench_zipf zipf;     /* over the keyspace; read-only */
    uint8_t *value;                 /* value_size letters; owned */
    struct bench_worker *workers;   /* n_client_threads; owned */
    uint32_t n_workers_open;        /* workers whose client is open */
    struct bench_client *clients;   /* concurrency entries; owned */

    _Atomic int phase;              /* enum bench_phase */
    uint64_t run_start_ns;          /* start of warm-up */
    uint64_t measure_start_ns;      /* end of warm-up */
    uint64_t end_ns;                /* nothing starts at or after it */
    uint64_t interval_ns;           /* open loop: per-client period */
    atomic_uint_fast64_t load_next; /* next key the load writes */
    atomic_uint_fast64_t seq_next;  /* sequential distribution */
    atomic_uint_fast64_t insert_next;     /* next record to insert */
    atomic_uint_fast64_t n_inserts_acked; /* inserts that succeeded */

    pthread_mutex_t lock;         /* guards the fields below */
    pthread_cond_t schedule_cond; /* the heap changed or stop was set */
    pthread_cond_t done_cond;     /* n_active reached 0 */
    struct bench_delay *heap;     /* concurrency entries at most; owned */
    size_t n_heap;
    uint32_t n_active;            /* clients not FINISHED in this phase */
    uint64_t finish_ns;           /* when the last client finished */
    bool stopping;                /* the scheduler thread should exit */
};

static void client_issue(struct bench_client *c, uint64_t now_ns);

uint64_t rkv_bench__now_ns(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static struct timespec deadline_timespec(uint64_t due_ns)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(due_ns / 1000000000ull);
    ts.tv_nsec = (long)(due_ns % 1000000000ull);
    return ts;
}

/* ---- the delay heap (bench->lock held) ---------------------------------- */

static void heap_swap(struct bench_delay *heap, size_t a, size_t b)
{
    struct bench_delay tmp = heap[a];

    heap[a] = heap[b];
    heap[b] = tmp;
}

static void heap_push(struct rkv_bench *bench, uint64_t due_ns,
                      struct bench_client *c)
{
    size_t i = bench->n_heap++;

    assert(bench->n_heap <= bench->config->concurrency);
    bench->heap[i].due_ns = due_ns;
    bench->heap[i].client = c;
    while (i > 0 && bench->heap[(i - 1) / 2].due_ns > bench->heap[i].due_ns) {
        heap_swap(bench->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static struct bench_client *heap_pop(struct rkv_bench *bench)
{
    struct bench_client *top = bench->heap[0].client;
    size_t i = 0;

    assert(bench->n_heap > 0);
    bench->heap[0] = bench->heap[--bench->n_heap];
    for (;;) {
        size_t left = 2 * i + 1;
        size_t smallest = i;

        if (left < bench->n_heap &&
            bench->heap[left].due_ns < bench->heap[smallest].due_ns) {
            smallest = left;
        }
        if (left + 1 < bench->n_heap &&
            bench->heap[left + 1].due_ns < bench->heap[smallest].due_ns) {
            smallest = left + 1;
        }
        if (smallest == i) {
            return top;
        }
        heap_swap(bench->heap, i, smallest);
        i = smallest;
    }
}

/* ---- client lifecycle --------------------------------------------------- */

static void client_finish(struct bench_client *c, uint64_t now_ns)
{
    struct rkv_bench *bench = c->bench;

    pthread_mutex_lock(&bench->lock);
    assert(bench->n_active > 0);
    bench->n_active--;
    if (bench->n_active == 0) {
        bench->finish_ns = now_ns;
        pthread_cond_broadcast(&bench->done_cond);
    }
    pthread_mutex_unlock(&bench->lock);
}

static void schedule_push(struct bench_client *c, uint64_t due_ns)
{
    struct rkv_bench *bench = c->bench;

    pthread_mutex_lock(&bench->lock);
    heap_push(bench, due_ns, c);
    if (bench->heap[0].client == c) {
        pthread_cond_signal(&bench->schedule_cond);
    }
    pthread_mutex_unlock(&bench->lock);
}

/* Starts c's next operation now or when it is due. after_error delays a
 * client whose submit failed by BENCH_SUBMIT_RETRY_NS at least, so that a
 * persistent failure cannot make it spin or recurse. */
static void client_schedule_next(struct bench_client *c, uint64_t now_ns,
                                 bool after_error)
{
    struct rkv_bench *bench = c->bench;
    bool running = atomic_load(&bench->phase) == BENCH_PHASE_RUN;
    uint64_t due_ns = now_ns;

    if (bench->interval_ns > 0 && running) {
        c->intended_ns += bench->interval_ns;
        due_ns = c->intended_ns;
    }
    if (after_error) {
        due_ns = RKV_MAX(due_ns, now_ns + BENCH_SUBMIT_RETRY_NS);
    }

    if (running && due_ns >= bench->end_ns) {
        client_finish(c, now_ns);
        return;
    }
    if (due_ns <= now_ns) {
        client_issue(c, now_ns);
        return;
    }
    schedule_push(c, due_ns);
}

static void *scheduler_main(void *arg)
{
    struct rkv_bench *bench = arg;

    pthread_mutex_lock(&bench->lock);
    while (!bench->stopping) {
        uint64_t now_ns = rkv_bench__now_ns();
        struct bench_client *c;

        if (bench->n_heap == 0) {
            pthread_cond_wait(&bench->schedule_cond, &bench->lock);
            continue;
        }
        if (bench->heap[0].due_ns > now_ns) {
            struct timespec ts = deadline_timespec(bench->heap[0].due_ns);

            pthread_cond_timedwait(&bench->schedule_cond, &bench->lock, &ts);
            continue;
        }
        c = heap_pop(bench);
        pthread_mutex_unlock(&bench->lock);
        client_issue(c, now_ns);
        pthread_mutex_lock(&bench->lock);
    }
    pthread_mutex_unlock(&bench->lock);
    return NULL;
}

/* ---- operations --------------------------------------------------------- */

static uint64_t client_pick_index(struct bench_client *c)
{
    struct rkv_bench *bench = c->bench;
    uint64_t keyspace = bench->config->keyspace;
    uint64_t n_items;

    switch (bench->mix.dist) {
    case RKV_BENCH_DIST_UNIFORM:
        return rkv_bench__rng_below(&c->rng, keyspace);
    case RKV_BENCH_DIST_ZIPFIAN:
        return rkv_bench__zipf_next_scrambled(&bench->zipf, &c->rng);
    case RKV_BENCH_DIST_SEQUENTIAL:
        return atomic_fetch_add(&bench->seq_next, 1) % keyspace;
    case RKV_BENCH_DIST_LATEST:
        /* The newest acknowledged record is rank 0. */
        n_items = keyspace + atomic_load(&bench->n_inserts_acked);
        rkv_bench__zipf_grow(&c->latest, n_items);
        return n_items - 1 - rkv_bench__zipf_next(&c->latest, &c->rng);
    }
    assert(false);
    return 0;
}

static void client_set_key(struct bench_client *c, uint64_t index)
{
    const struct rkv_bench_config *config = c->bench->config;

    if (config->workload == RKV_BENCH_WORKLOAD_YCSB) {
        c->key_len = rkv_bench__key_ycsb(index, c->key);
    } else {
        c->key_len = rkv_bench__key_kv(index, config->key_size, c->key);
    }
}

/* Chooses the next run-phase operation and its key. */
static void client_prepare_run(struct bench_client *c)
{
    struct rkv_bench *bench = c->bench;

    c->op = rkv_bench__mix_pick(&bench->mix, &c->rng);
    c->loading = false;
    c->rmw_writing = false;
    if (c->op == RKV_BENCH_OP_INSERT) {
        client_set_key(c, atomic_fetch_add(&bench->insert_next, 1));
        return;
    }
    client_set_key(c, client_pick_index(c));
    if (c->op == RKV_BENCH_OP_SCAN) {
        c->scan_limit = 1 + (uint32_t)rkv_bench__rng_below(
                                &c->rng, bench->config->scan_length_max);
    }
}

/* Chooses the next load write; returns false when the load is done. */
static bool client_prepare_load(struct bench_client *c)
{
    struct rkv_bench *bench = c->bench;
    uint64_t index = atomic_fetch_add(&bench->load_next, 1);

    if (index >= bench->config->keyspace) {
        return false;
    }
    c->op = RKV_BENCH_OP_PUT;
    c->loading = true;
    c->rmw_writing = false;
    client_set_key(c, index);
    return true;
}

static void client_build_request(const struct bench_client *c,
                                 struct rkv_client_request *request)
{
    const struct rkv_bench *bench = c->bench;
    bool read = c->op == RKV_BENCH_OP_GET ||
                (c->op == RKV_BENCH_OP_RMW && !c->rmw_writing);

    memset(request, 0, sizeof(*request));
    request->key = c->key;
    request->key_len = c->key_len;
    if (c->op == RKV_BENCH_OP_SCAN) {
        request->op = RKV_CLIENT_SCAN;
        request->limit = c->scan_limit;
        request->serializable = bench->config->serializable;
    } else if (read) {
        request->op = RKV_CLIENT_GET;
        request->serializable = bench->config->serializable;
    } else {
        request->op = RKV_CLIENT_PUT;
        request->value = bench->value;
        request->value_len = bench->config->value_size;
    }
}

/* Counts the finished operation of c in its worker's figures. found is
 * false for a get that succeeded without finding its key. */
static void client_record(struct bench_client *c, int rv, bool found,
                          uint64_t now_ns)
{
    struct bench_worker *worker = c->worker;
    enum rkv_bench__outcome outcome = rkv_bench__classify(c->op, rv);
    uint64_t latency_ns = now_ns > c->start_ns ? now_ns - c->start_ns : 0;

    pthread_mutex_lock(&worker->lock);
    rkv_bench__stats_add(&worker->interval[c->op], rv, outcome, latency_ns);
    if (c->loading) {
        worker->n_load_ops++;
        worker->n_load_failed += outcome != RKV_BENCH__SUCCEEDED;
    } else if (c->measured) {
        rkv_bench__stats_add(&worker->total[c->op], rv, outcome, latency_ns);
        if (c->op == RKV_BENCH_OP_GET && outcome == RKV_BENCH__SUCCEEDED &&
            !found) {
            worker->total[c->op].n_not_found++;
        }
    } else {
        worker->n_warmup_ops++;
    }
    pthread_mutex_unlock(&worker->lock);
}

static void client_done_cb(void *data, struct rkv_client_result *result);

static int client_submit(struct bench_client *c)
{
    struct rkv_client_request request;

    client_build_request(c, &request);
    return rkv_client_submit(c->worker->client, &request, client_done_cb, c);
}

static void client_done_cb(void *data, struct rkv_client_result *result)
{
    struct bench_client *c = data;
    uint64_t now_ns = rkv_bench__now_ns();
    int rv = result->rv;
    bool found = rv == 0 && result->found;

    rkv_client_result_free(result);

    /* A read-modify-write continues with its put once the get returned. */
    if (c->op == RKV_BENCH_OP_RMW && !c->rmw_writing &&
        rkv_bench__classify(RKV_BENCH_OP_GET, rv) == RKV_BENCH__SUCCEEDED) {
        c->rmw_writing = true;
        rv = client_submit(c);
        if (rv == 0) {
            return;
        }
        client_record(c, rv, true, now_ns);
        client_schedule_next(c, now_ns, true);
        return;
    }

    if (c->op == RKV_BENCH_OP_INSERT && rv == 0) {
        atomic_fetch_add(&c->bench->n_inserts_acked, 1);
    }
    client_record(c, rv, found, now_ns);
    client_schedule_next(c, now_ns, false);
}

static void client_issue(struct bench_client *c, uint64_t now_ns)
{
    struct rkv_bench *bench = c->bench;
    int rv;

    if (atomic_load(&bench->phase) == BENCH_PHASE_LOAD) {
        if (!client_prepare_load(c)) {
            client_finish(c, now_ns);
            return;
        }
        c->measured = false;
        c->start_ns = now_ns;
    } else {
        /* An open-loop operation is timed from its intended start. A
         * client that fell behind its schedule stops at the end too, so
         * the run cannot overrun by its backlog. */
        c->start_ns = bench->interval_ns > 0 ? c->intended_ns : now_ns;
        if (c->start_ns >= bench->end_ns || now_ns >= bench->end_ns) {
            client_finish(c, now_ns);
            return;
        }
        c->measured = c->start_ns >= bench->measure_start_ns;
        client_prepare_run(c);
    }

    rv = client_submit(c);
    if (rv != 0) {
        RKV_TRACEF("submit failed op=%s rv=%d", rkv_bench_op_name(c->op), rv);
        client_record(c, rv, true, now_ns);
        client_schedule_next(c, now_ns, true);
    }
}

/* ---- progress ----------------------------------------------------------- */

/* Progress-line state kept by the caller's thread. */
struct bench_progress_state {
    struct rkv_bench_op_stats interval[RKV_BENCH_N_OPS];
    uint64_t last_ns;   /* time of the previous line */
    uint32_t n_lines;   /* lines printed; the header repeats every 20 */
};

static void progress_tick(struct rkv_bench *bench,
                          struct bench_progress_state *state,
                          uint64_t phase_start_ns, uint64_t now_ns)
{
    const struct rkv_bench_config *config = bench->config;
    struct rkv_bench__progress progress;
    bool loading = atomic_load(&bench->phase) == BENCH_PHASE_LOAD;
    uint64_t cum_succeeded = 0;

    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        rkv_bench__stats_init(&state->interval[op]);
    }
    for (uint32_t w = 0; w < config->n_client_threads; w++) {
        struct bench_worker *worker = &bench->workers[w];

        pthread_mutex_lock(&worker->lock);
        for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
            rkv_bench__stats_merge(&state->interval[op],
                                   &worker->interval[op]);
            rkv_bench__stats_init(&worker->interval[op]);
            cum_succeeded += worker->total[op].n_succeeded;
        }
        pthread_mutex_unlock(&worker->lock);
    }

    progress.elapsed_s = (double)(now_ns - phase_start_ns) / 1e9;
    progress.interval_s = (double)(now_ns - state->last_ns) / 1e9;
    progress.interval = state->interval;
    progress.cum_succeeded = cum_succeeded;
    progress.cum_s = 0.0;
    if (!loading && now_ns > bench->measure_start_ns) {
        progress.cum_s = (double)(now_ns - bench->measure_start_ns) / 1e9;
    }
    progress.n_ranges = rkv_bench__count_ranges(bench->workers[0].client);
    progress.phase = loading                            ? "load"
                     : now_ns < bench->measure_start_ns ? "warmup"
                                                        : "run";
    if (state->n_lines % 20 == 0) {
        rkv_bench__progress_header(config->out);
    }
    rkv_bench__progress_line(config->out, &progress);
    state->n_lines++;
    state->last_ns = now_ns;
}

/* ---- phases ------------------------------------------------------------- */

static void bench_start_phase(struct rkv_bench *bench, enum bench_phase phase,
                              uint64_t now_ns)
{
    const struct rkv_bench_config *config = bench->config;

    /* The first progress line of a phase covers that phase only. */
    for (uint32_t w = 0; w < config->n_client_threads; w++) {
        struct bench_worker *worker = &bench->workers[w];

        pthread_mutex_lock(&worker->lock);
        for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
            rkv_bench__stats_init(&worker->interval[op]);
        }
        pthread_mutex_unlock(&worker->lock);
    }

    pthread_mutex_lock(&bench->lock);
    bench->n_active = config->concurrency;
    pthread_mutex_unlock(&bench->lock);
    atomic_store(&bench->phase, (int)phase);

    for (uint32_t i = 0; i < config->concurrency; i++) {
        struct bench_client *c = &bench->clients[i];

        if (phase == BENCH_PHASE_RUN && bench->interval_ns > 0) {
            /* Spread the clients' schedules evenly over one interval. */
            c->intended_ns = now_ns + bench->interval_ns * i /
                                          config->concurrency;
            schedule_push(c, c->intended_ns);
        } else {
            client_issue(c, now_ns);
        }
    }
}

/* Waits until every client finished the phase, printing progress each
 * second and sampling the node counters once the warm-up ends. */
static void bench_wait_phase(struct rkv_bench *bench,
                             struct rkv_bench_report *report,
                             struct bench_progress_state *state,
                             uint64_t phase_start_ns, bool *measure_sampled)
{
    bool printing = bench->config->out != NULL && bench->config->progress;
    uint64_t next_tick_ns = phase_start_ns + BENCH_PROGRESS_NS;

    state->last_ns = phase_start_ns;
    pthread_mutex_lock(&bench->lock);
    while (bench->n_active > 0) {
        uint64_t wake_ns = next_tick_ns;
        uint64_t now_ns;
        struct timespec ts;

        if (!*measure_sampled) {
            wake_ns = RKV_MIN(wake_ns, bench->measure_start_ns);
        }
        ts = deadline_timespec(wake_ns);
        pthread_cond_timedwait(&bench->done_cond, &bench->lock, &ts);
        if (bench->n_active == 0) {
            break;
        }
        pthread_mutex_unlock(&bench->lock);
        now_ns = rkv_bench__now_ns();
        if (!*measure_sampled && now_ns >= bench->measure_start_ns) {
            rkv_bench__nodes_sample(bench->workers[0].client, &report->nodes_measure);
            *measure_sampled = true;
        }
        if (now_ns >= next_tick_ns) {
            if (printing) {
                progress_tick(bench, state, phase_start_ns, now_ns);
            }
            next_tick_ns += BENCH_PROGRESS_NS;
        }
        pthread_mutex_lock(&bench->lock);
    }
    pthread_mutex_unlock(&bench->lock);
}

static void bench_run_load(struct rkv_bench *bench,
                           struct rkv_bench_report *report,
                           struct bench_progress_state *state)
{
    uint64_t start_ns = rkv_bench__now_ns();
    bool sampled = true; /* the measure-start sample belongs to the run */

    /* Far in the future, so that no load write counts as measured. */
    bench->measure_start_ns = UINT64_MAX;
    bench->end_ns = UINT64_MAX;
    bench_start_phase(bench, BENCH_PHASE_LOAD, start_ns);
    bench_wait_phase(bench, report, state, start_ns, &sampled);
}

static void bench_run_measured(struct rkv_bench *bench,
                               struct rkv_bench_report *report,
                               struct bench_progress_state *state)
{
    const struct rkv_bench_config *config = bench->config;
    bool sampled = false;

    bench->run_start_ns = rkv_bench__now_ns();
    bench->measure_start_ns = bench->run_start_ns + config->warmup_ms * 1000000;
    bench->end_ns = bench->measure_start_ns + config->duration_ms * 1000000;
    if (config->warmup_ms == 0) {
        rkv_bench__nodes_sample(bench->workers[0].client, &report->nodes_measure);
        sampled = true;
        bench->run_start_ns = rkv_bench__now_ns();
        bench->measure_start_ns = bench->run_start_ns;
        bench->end_ns = bench->measure_start_ns + config->duration_ms * 1000000;
    }
    if (config->rate > 0.0) {
        bench->interval_ns = (uint64_t)(1e9 * config->concurrency /
                                        config->rate);
        bench->interval_ns = RKV_MAX(bench->interval_ns, 1);
    }
    bench_start_phase(bench, BENCH_PHASE_RUN, bench->run_start_ns);
    bench_wait_phase(bench, report, state, bench->run_start_ns, &sampled);
    if (!sampled) {
        /* Every client finished before the warm-up ended. */
        report->nodes_measure = report->nodes_start;
    }
    report->measured_ns = bench->finish_ns > bench->measure_start_ns
                              ? bench->finish_ns - bench->measure_start_ns
                              : 0;
}

/* ---- setup and teardown ------------------------------------------------- */

static void bench_init_clients(struct rkv_bench *bench)
{
    const struct rkv_bench_config *config = bench->config;

    for (uint32_t i = 0; i < config->concurrency; i++) {
        struct bench_client *c = &bench->clients[i];

        c->bench = bench;
        c->worker = &bench->workers[i % config->n_client_threads];
        /* Distinct, reproducible sequences per client. */
        rkv_bench__rng_seed(&c->rng, config->seed * 0x9e3779b97f4a7c15ULL +
                                         i + 1);
        if (bench->mix.dist == RKV_BENCH_DIST_LATEST) {
            c->latest = bench->zipf;
        }
    }
}

static void bench_init_value(struct rkv_bench *bench)
{
    struct rkv_bench_rng rng;

    /* Random lowercase letters, the values of the etcd comparison's load
     * generator. */
    rkv_bench__rng_seed(&rng, bench->config->seed);
    for (uint32_t i = 0; i < bench->config->value_size; i++) {
        bench->value[i] = (uint8_t)('a' + rkv_bench__rng_below(&rng, 26));
    }
}

static void bench_init_mix(struct rkv_bench *bench)
{
    const struct rkv_bench_config *config = bench->config;
    int rv;

    if (config->workload == RKV_BENCH_WORKLOAD_YCSB) {
        rv = rkv_bench__mix_ycsb(config->ycsb_workload, &bench->mix);
        assert(rv == 0); /* rkv_bench_config_check() passed */
        (void)rv;
        if (config->dist_set) {
            bench->mix.dist = config->dist;
        }
    } else {
        rkv_bench__mix_kv(config->read_percent, config->dist, &bench->mix);
    }
    /* NOTE: zeta(n) is summed term by term, one pow() per key: 1.5 s for
     * 10^8 keys on a 2-vCPU VM, so a zipfian keyspace of 10^9 keys waits
     * about 15 s before the run. YCSB avoids this with a precomputed zeta
     * for a fixed huge item count. */
    if (bench->mix.dist == RKV_BENCH_DIST_ZIPFIAN ||
        bench->mix.dist == RKV_BENCH_DIST_LATEST) {
        rkv_bench__zipf_init(&bench->zipf, config->keyspace,
                             RKV_BENCH_ZIPF_THETA);
    }
    atomic_init(&bench->insert_next, config->keyspace);
}

static void bench_free(struct rkv_bench *bench)
{
    for (uint32_t w = 0; w < bench->n_workers_open; w++) {
        rkv_client_close(bench->workers[w].client);
        pthread_mutex_destroy(&bench->workers[w].lock);
    }
    pthread_cond_destroy(&bench->done_cond);
    pthread_cond_destroy(&bench->schedule_cond);
    pthread_mutex_destroy(&bench->lock);
    rkv_free(bench->heap);
    rkv_free(bench->clients);
    rkv_free(bench->workers);
    rkv_free(bench->value);
    rkv_free(bench);
}

static void bench_init_sync(struct rkv_bench *bench)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&bench->lock, NULL);
    /* Deadlines are CLOCK_MONOTONIC, like every time the bench takes. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&bench->schedule_cond, &attr);
    pthread_cond_init(&bench->done_cond, &attr);
    pthread_condattr_destroy(&attr);
}

static struct rkv_bench *bench_create(const struct rkv_bench_config *config)
{
    struct rkv_bench *bench = rkv_calloc(1, sizeof(*bench));

    if (bench == NULL) {
        return NULL;
    }
    bench->config = config;
    bench_init_sync(bench);
    bench->value = rkv_malloc(RKV_MAX(config->value_size, 1));
    bench->workers = rkv_calloc(config->n_client_threads,
                                sizeof(*bench->workers));
    bench->clients = rkv_calloc(config->concurrency, sizeof(*bench->clients));
    bench->heap = rkv_calloc(config->concurrency, sizeof(*bench->heap));
    if (bench->value == NULL || bench->workers == NULL ||
        bench->clients == NULL || bench->heap == NULL) {
        bench_free(bench);
        return NULL;
    }
    bench_init_mix(bench);
    bench_init_value(bench);
    bench_init_clients(bench);
    return bench;
}

static int bench_open_workers(struct rkv_bench *bench, char *errmsg,
                              size_t errmsg_len)
{
    const struct rkv_bench_config *config = bench->config;
    struct rkv_client_options options;
    int rv;

    memset(&options, 0, sizeof(options));
    options.hosts = config->hosts;
    options.n_hosts = config->n_hosts;
    options.n_connections = config->n_connections;
    options.timeout_ms = config->timeout_ms;

    for (uint32_t w = 0; w < config->n_client_threads; w++) {
        struct bench_worker *worker = &bench->workers[w];

        pthread_mutex_init(&worker->lock, NULL);
        for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
            rkv_bench__stats_init(&worker->total[op]);
            rkv_bench__stats_init(&worker->interval[op]);
        }
        rv = rkv_client_open(&options, &worker->client);
        if (rv != 0) {
            pthread_mutex_destroy(&worker->lock);
            snprintf(errmsg, errmsg_len, "opening the client failed: %s",
                     rkv_strerror(rv));
            return rv;
        }
        bench->n_workers_open++;
    }
    return 0;
}

static void bench_collect(struct rkv_bench *bench,
                          struct rkv_bench_report *report)
{
    for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
        rkv_bench__stats_init(&report->ops[op]);
    }
    for (uint32_t w = 0; w < bench->config->n_client_threads; w++) {
        struct bench_worker *worker = &bench->workers[w];

        pthread_mutex_lock(&worker->lock);
        for (int op = 0; op < RKV_BENCH_N_OPS; op++) {
            rkv_bench__stats_merge(&report->ops[op], &worker->total[op]);
        }
        report->n_warmup_ops += worker->n_warmup_ops;
        report->n_load_ops += worker->n_load_ops;
        report->n_load_failed += worker->n_load_failed;
        pthread_mutex_unlock(&worker->lock);
    }
}

static void scheduler_stop(struct rkv_bench *bench, pthread_t thread)
{
    pthread_mutex_lock(&bench->lock);
    bench->stopping = true;
    pthread_cond_signal(&bench->schedule_cond);
    pthread_mutex_unlock(&bench->lock);
    pthread_join(thread, NULL);
}

/* Runs the load (if any) and the measured phase, then fills the report. */
static void bench_execute(struct rkv_bench *bench,
                          struct rkv_bench_report *report,
                          struct bench_progress_state *state)
{
    const struct rkv_bench_config *config = bench->config;
    struct rkv_client *client = bench->workers[0].client;
    uint64_t start_ns = rkv_bench__now_ns();
    uint64_t proc_start_ms = 0;
    bool proc_start_ok = false;

    rkv_bench__nodes_sample(client, &report->nodes_start);
    if (config->n_server_pids > 0) {
        proc_start_ok = rkv_bench__proc_cpu_total(config, &proc_start_ms);
    }

    if (config->preload) {
        bench_run_load(bench, report, state);
    }
    bench_run_measured(bench, report, state);

    rkv_bench__nodes_sample(client, &report->nodes_end);
    report->total_ns = rkv_bench__now_ns() - start_ns;
    rkv_bench__report_server_cpu(report, proc_start_ok, proc_start_ms);
    report->n_ranges_end = (uint64_t)RKV_MAX(rkv_bench__count_ranges(client), 0);
    bench_collect(bench, report);
}

int rkv_bench_run(const struct rkv_bench_config *config,
                  struct rkv_bench_report **report_out, char *errmsg,
                  size_t errmsg_len)
{
    struct rkv_bench_report *report;
    struct bench_progress_state *state;
    struct rkv_bench *bench;
    pthread_t scheduler;
    int rv;

    rv = rkv_bench_config_check(config, errmsg, errmsg_len);
    if (rv != 0) {
        goto err;
    }
    report = rkv_calloc(1, sizeof(*report));
    if (report == NULL) {
        rv = -ENOMEM;
        goto err;
    }
    /* The progress state carries histograms, too big for the stack. */
    state = rkv_calloc(1, sizeof(*state));
    if (state == NULL) {
        rv = -ENOMEM;
        goto err_after_report;
    }
    report->config = *config;
    bench = bench_create(&report->config);
    if (bench == NULL) {
        rv = -ENOMEM;
        goto err_after_state;
    }
    rv = bench_open_workers(bench, errmsg, errmsg_len);
    if (rv != 0) {
        goto err_after_bench;
    }
    rv = -pthread_create(&scheduler, NULL, scheduler_main, bench);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "starting the scheduler thread failed");
        goto err_after_bench;
    }

    bench_execute(bench, report, state);

    scheduler_stop(bench, scheduler);
    bench_free(bench);
    rkv_free(state);
    *report_out = report;
    return 0;

err_after_bench:
    bench_free(bench);
err_after_state:
    rkv_free(state);
err_after_report:
    rkv_free(report);
err:
    assert(rv != 0);
    return rv;
}

void rkv_bench_report_free(struct rkv_bench_report *report)
{
    rkv_free(report);
}
