/*
 * Measures the throughput of the Raft core alone. Three replicas run in
 * one thread, messages are handed over in memory without packing, and
 * every batch is acknowledged as soon as it is taken. The figure is thus
 * the core's own cost per entry, without disk or network. Not a test: it
 * prints a number.
 *
 * Usage: bench_raft_core [entries [batch]]
 *   entries  entries of 100 bytes to commit (default 1000000)
 *   batch    proposals between two message exchanges (default 64)
 * The replicas compact their logs every 16 batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "raft/raft.h"

#define N_REPLICAS 3
#define ENTRY_BYTES 100

struct bench {
    struct rkv_raft *rafts[N_REPLICAS];
    RkvRaft__Message **queue; /* borrowed from the batches in held */
    size_t n_queue;
    size_t cap_queue;
    struct rkv_raft_ready **held; /* owned until the queue is delivered */
    size_t n_held;
    size_t cap_held;
};

static void *grow(void *array, size_t *cap, size_t elem)
{
    void *grown;

    *cap = *cap == 0 ? 64 : *cap * 2;
    grown = realloc(array, *cap * elem);
    if (grown == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return grown;
}

static void check(int rv, const char *what)
{
    if (rv != 0) {
        fprintf(stderr, "%s failed: %s\n", what, rkv_strerror(rv));
        exit(1);
    }
}

/* Takes one replica's batches, acks them and queues their messages. */
static bool bench_take(struct bench *b, struct rkv_raft *r)
{
    bool busy = false;

    while (rkv_raft_has_ready(r)) {
        struct rkv_raft_ready *rd;
        size_t n_msgs;

        check(rkv_raft_ready(r, &rd), "rkv_raft_ready");
        check(rkv_raft_ack(r, rd->seq), "rkv_raft_ack");
        n_msgs = rd->n_messages + rd->n_messages_after_persist;
        for (size_t k = 0; k < n_msgs; k++) {
            if (b->n_queue == b->cap_queue) {
                b->queue = grow(b->queue, &b->cap_queue, sizeof(*b->queue));
            }
            b->queue[b->n_queue++] =
                k < rd->n_messages
                    ? rd->messages[k]
                    : rd->messages_after_persist[k - rd->n_messages];
        }
        if (b->n_held == b->cap_held) {
            b->held = grow(b->held, &b->cap_held, sizeof(*b->held));
        }
        b->held[b->n_held++] = rd;
        busy = true;
    }
    return busy;
}

/* Exchanges batches and messages until every replica is quiet. */
static void bench_pump(struct bench *b)
{
    bool busy = true;

    while (busy) {
        busy = false;
        for (int i = 0; i < N_REPLICAS; i++) {
            busy |= bench_take(b, b->rafts[i]);
        }
        for (size_t k = 0; k < b->n_queue; k++) {
            const RkvRaft__Message *msg = b->queue[k];

            check(rkv_raft_step(b->rafts[msg->to - 1], msg), "rkv_raft_step");
        }
        b->n_queue = 0;
        for (size_t k = 0; k < b->n_held; k++) {
            rkv_raft_ready_free(b->held[k]);
        }
        b->n_held = 0;
    }
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n_entries = argc > 1 ? atol(argv[1]) : 1000000;
    long batch = argc > 2 ? atol(argv[2]) : 64;
    struct bench b = {0};
    char data[ENTRY_BYTES];
    uint64_t index;
    uint64_t term;
    double start;
    double elapsed;

    if (n_entries <= 0 || batch <= 0) {
        fprintf(stderr,
                "invalid arguments: entries and batch must be positive\n"
                "usage: %s [entries [batch]]\n",
                argv[0]);
        return 2;
    }
    rkv__log_min_level = RKV_WARN;
    memset(data, 'x', sizeof(data));
    for (int i = 0; i < N_REPLICAS; i++) {
        struct rkv_raft_config config;
        struct rkv_raft_boot boot = {0};

        rkv_raft_config_init(&config, (uint64_t)i + 1, 1, 7 + (uint64_t)i);
        boot.snapshot.conf.n_servers = N_REPLICAS;
        for (int j = 0; j < N_REPLICAS; j++) {
            boot.snapshot.conf.servers[j].id = (uint64_t)j + 1;
        }
        check(rkv_raft_new(&config, &boot, &b.rafts[i]), "rkv_raft_new");
    }
    check(rkv_raft_campaign(b.rafts[0]), "rkv_raft_campaign");
    bench_pump(&b);

    start = now_s();
    for (long k = 0; k < n_entries; k += batch) {
        for (long j = 0; j < batch; j++) {
            check(rkv_raft_propose(b.rafts[0], data, sizeof(data), &index,
                                   &term),
                  "rkv_raft_propose");
        }
        bench_pump(&b);
        if ((k / batch) % 16 == 15) {
            for (int i = 0; i < N_REPLICAS; i++) {
                check(rkv_raft_compact(b.rafts[i],
                                       rkv_raft_applied_index(b.rafts[i])),
                      "rkv_raft_compact");
            }
        }
    }
    elapsed = now_s() - start;

    printf("%ld entries of %d bytes in batches of %ld, committed and "
           "applied on %d replicas in %.2f s: %.0f entries/s\n",
           n_entries, ENTRY_BYTES, batch, N_REPLICAS, elapsed,
           (double)n_entries / elapsed);
    for (int i = 0; i < N_REPLICAS; i++) {
        rkv_raft_free(b.rafts[i]);
    }
    free(b.queue);
    free(b.held);
    return 0;
}
