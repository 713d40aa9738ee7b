/*
 * Recording and printing client histories.
 */
#include "tests/sim/sim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

void rkv_sim_history_init(struct rkv_sim_history *history)
{
    memset(history, 0, sizeof(*history));
}

void rkv_sim_history_free(struct rkv_sim_history *history)
{
    rkv_free(history->ops);
    memset(history, 0, sizeof(*history));
}

int rkv_sim_history_add(struct rkv_sim_history *history,
                        const struct rkv_sim_op *op)
{
    if (history->n_ops == history->cap) {
        size_t cap = history->cap == 0 ? 64 : history->cap * 2;
        struct rkv_sim_op *ops =
            rkv_realloc(history->ops, cap * sizeof(*ops));

        if (ops == NULL) {
            return -ENOMEM;
        }
        history->ops = ops;
        history->cap = cap;
    }
    history->ops[history->n_ops++] = *op;
    return 0;
}

static void history_print_op(const struct rkv_sim_op *op, bool marked)
{
    char ret[32];

    if (op->unknown) {
        snprintf(ret, sizeof(ret), "?");
    } else {
        snprintf(ret, sizeof(ret), "%" PRIu64, op->return_seq);
    }
    printf("%s [%" PRIu64 ", %s] client=%u key=%u ", marked ? ">>" : "  ",
           op->call_seq, ret, op->client, op->key);
    switch (op->kind) {
    case RKV_SIM_OP_GET:
        printf("get -> %s\n", op->found ? op->output : "(absent)");
        break;
    case RKV_SIM_OP_PUT:
        printf("put %s -> %s\n", op->value, op->unknown ? "unknown" : "ok");
        break;
    case RKV_SIM_OP_CAS:
        printf("cas %s => %s -> %s\n",
               op->expect_absent ? "(absent)" : op->expected, op->value,
               op->unknown ? "unknown" : (op->found ? "swapped" : "failed"));
        break;
    }
}

static int compare_call_seq(const void *a, const void *b)
{
    const struct rkv_sim_op *x = *(const struct rkv_sim_op *const *)a;
    const struct rkv_sim_op *y = *(const struct rkv_sim_op *const *)b;

    return x->call_seq < y->call_seq ? -1 : (x->call_seq > y->call_seq);
}

void rkv_sim_history_print(const struct rkv_sim_history *history,
                           unsigned key, uint64_t marked_call_seq)
{
    const struct rkv_sim_op **sorted;
    size_t n = 0;

    sorted = rkv_calloc(history->n_ops + 1, sizeof(*sorted));
    if (sorted == NULL) {
        printf("  (history not printed: out of memory)\n");
        return;
    }
    for (size_t i = 0; i < history->n_ops; i++) {
        if (key == UINT32_MAX || history->ops[i].key == key) {
            sorted[n++] = &history->ops[i];
        }
    }
    qsort(sorted, n, sizeof(*sorted), compare_call_seq);
    for (size_t i = 0; i < n; i++) {
        history_print_op(sorted[i], marked_call_seq != 0 &&
                                        sorted[i]->call_seq ==
                                            marked_call_seq);
    }
    rkv_free(sorted);
}
