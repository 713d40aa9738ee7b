/*
 * The simulated network: messages in flight in a min-heap ordered by
 * delivery time and a random tie-break, with the faults of the current
 * phase applied when a message is sent.
 *
 * Faults: a message between two nodes that a partition separates (in that
 * direction) is lost. Any message may be lost (drop_per_mille), and a node
 * to node message may be duplicated (dup_per_mille, the copy with its own
 * delay). A message may be held back for a long delay (slow_per_mille), and
 * random delays reorder messages. Loss of client traffic models a client
 * that never hears back. Client traffic is never duplicated, since it
 * rides TCP in node/ and a client relies on that when it retries.
 */
#include "tests/sim/sim_internal.h"

#include <errno.h>
#include <string.h>

#include "common/common.h"

struct sim_msg *sim_msg_new(enum sim_msg_kind kind, unsigned from, unsigned to)
{
    struct sim_msg *msg = rkv_calloc(1, sizeof(*msg));

    if (msg == NULL) {
        sim_fatal("allocating a message", -ENOMEM);
    }
    msg->kind = kind;
    msg->from = from;
    msg->to = to;
    return msg;
}

void sim_msg_free(struct sim_msg *msg)
{
    if (msg == NULL) {
        return;
    }
    rkv_free(msg->data);
    rkv_free(msg);
}

static bool msg_before(const struct sim_msg *a, const struct sim_msg *b)
{
    if (a->deliver_ms != b->deliver_ms) {
        return a->deliver_ms < b->deliver_ms;
    }
    return a->order < b->order;
}

static void heap_push(struct sim_net *net, struct sim_msg *msg)
{
    size_t i;

    if (net->n_heap == net->cap) {
        size_t cap = net->cap == 0 ? 256 : net->cap * 2;
        struct sim_msg **heap = rkv_realloc(net->heap, cap * sizeof(*heap));

        if (heap == NULL) {
            sim_fatal("growing the network queue", -ENOMEM);
        }
        net->heap = heap;
        net->cap = cap;
    }
    i = net->n_heap++;
    net->heap[i] = msg;
    while (i > 0 && msg_before(net->heap[i], net->heap[(i - 1) / 2])) {
        struct sim_msg *tmp = net->heap[i];

        net->heap[i] = net->heap[(i - 1) / 2];
        net->heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static struct sim_msg *heap_pop(struct sim_net *net)
{
    struct sim_msg *top = net->heap[0];
    size_t i = 0;

    net->heap[0] = net->heap[--net->n_heap];
    for (;;) {
        size_t left = 2 * i + 1;
        size_t right = left + 1;
        size_t least = i;
        struct sim_msg *tmp;

        if (left < net->n_heap &&
            msg_before(net->heap[left], net->heap[least])) {
            least = left;
        }
        if (right < net->n_heap &&
            msg_before(net->heap[right], net->heap[least])) {
            least = right;
        }
        if (least == i) {
            break;
        }
        tmp = net->heap[i];
        net->heap[i] = net->heap[least];
        net->heap[least] = tmp;
        i = least;
    }
    return top;
}

static bool net_is_blocked(const struct sim_net *net, unsigned from,
                           unsigned to)
{
    if (from >= RKV_SIM_NODES_MAX || to >= RKV_SIM_NODES_MAX) {
        return false; /* partitions separate nodes, not clients */
    }
    return net->blocked[from][to];
}

static uint64_t net_delay(struct rkv_sim_world *w)
{
    struct sim_net *net = &w->net;

    if (w->faults_on && net->slow_per_mille > 0 &&
        rkv_sim_prng_chance(&w->prng, net->slow_per_mille)) {
        return rkv_sim_prng_between(&w->prng, net->delay_max_ms,
                                    net->slow_max_ms);
    }
    return rkv_sim_prng_between(&w->prng, net->delay_min_ms, net->delay_max_ms);
}

static struct sim_msg *msg_copy(const struct sim_msg *msg)
{
    struct sim_msg *copy = sim_msg_new(msg->kind, msg->from, msg->to);

    *copy = *msg;
    copy->data = NULL;
    if (msg->data_len > 0) {
        copy->data = rkv_memdup(msg->data, msg->data_len);
        if (copy->data == NULL) {
            sim_fatal("copying a message", -ENOMEM);
        }
    }
    return copy;
}

void sim_net_send(struct rkv_sim_world *w, struct sim_msg *msg)
{
    struct sim_net *net = &w->net;
    /* Node addresses are 1-based node ids; index them from 0. */
    unsigned from = msg->from - 1;
    unsigned to = msg->to - 1;

    w->report->n_messages++;
    if (net_is_blocked(net, from, to) ||
        (w->faults_on && rkv_sim_prng_chance(&w->prng, net->drop_per_mille))) {
        sim_msg_free(msg);
        return;
    }
    /* Client traffic rides TCP in node/: never duplicated. */
    if (w->faults_on && net->dup_per_mille > 0 &&
        msg->kind != SIM_MSG_REQUEST && msg->kind != SIM_MSG_RESPONSE &&
        rkv_sim_prng_chance(&w->prng, net->dup_per_mille)) {
        struct sim_msg *copy = msg_copy(msg);

        copy->deliver_ms = w->now_ms + net_delay(w);
        copy->order = rkv_sim_prng_next(&w->prng);
        heap_push(net, copy);
    }
    msg->deliver_ms = w->now_ms + net_delay(w);
    msg->order = rkv_sim_prng_next(&w->prng);
    heap_push(net, msg);
}

struct sim_msg *sim_net_next_due(struct rkv_sim_world *w)
{
    struct sim_net *net = &w->net;

    if (net->n_heap == 0 || net->heap[0]->deliver_ms > w->now_ms) {
        return NULL;
    }
    return heap_pop(net);
}

void sim_net_free(struct sim_net *net)
{
    for (size_t i = 0; i < net->n_heap; i++) {
        sim_msg_free(net->heap[i]);
    }
    rkv_free(net->heap);
    net->heap = NULL;
    net->n_heap = 0;
    net->cap = 0;
}
