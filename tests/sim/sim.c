/*
 * The simulation loop: the world's clock, the fault schedule, the client
 * workload, and the checks at the end of a run (see sim.h for the phases).
 *
 * One simulated millisecond (world_step()):
 *   1. every message due is delivered (to a node, or to a client);
 *   2. every node commits its due disk jobs, ticks, and collects its Raft
 *      work (sim_node_step());
 *   3. crashed nodes whose restart time came are restarted;
 *   4. clients time out, or start their next operation;
 *   5. in phase 1, the fault schedule may inject its next fault.
 *
 * The workload: each client runs one operation at a time on a few hot keys.
 * An operation is a read, a put of a unique value, or an append. An append
 * is a CAS from the last value the client read to that value plus a unique
 * token. Writes go to the
 * client's guess of the leader and follow RKV_ENOTLEADER hints; an attempt
 * that failed definitely is retried (up to RKV_SIM_CLIENT_ATTEMPTS_MAX)
 * with a new request id, so a late response to an old attempt is ignored. A
 * timed-out write is recorded as unknown and never resent. Client traffic
 * is never duplicated by the network: with TCP a request reaches a node at
 * most once, and the client relies on that when it retries after a
 * definite failure.
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim_internal.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/* How often, in simulated ms, the heal phase checks for convergence. */
#define SIM_CONVERGE_CHECK_MS 10
/* How often, in simulated ms, the heal phase adds back every node that
 * membership changes removed. */
#define SIM_RESTORE_MEMBERSHIP_MS 50
/* Maximum ranges a run compares (the keys bound the splits well below). */
#define SIM_RANGES_MAX 64

void sim_trace(struct rkv_sim_world *w, const char *fmt, ...)
{
    va_list args;

    if (!w->options.verbose) {
        return;
    }
    printf("t=%" PRIu64 " ", w->now_ms);
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
    putchar('\n');
}

void rkv_sim_options_init(struct rkv_sim_options *options, uint64_t seed,
                          unsigned n_nodes)
{
    memset(options, 0, sizeof(*options));
    options->seed = seed;
    options->n_nodes = n_nodes;
    options->n_clients = 6;
    options->n_keys = 6;
    options->duration_ms = 2000;
    options->heal_ms = 10000;
    options->split_bytes = 48;
}

const char *rkv_sim_verdict_name(enum rkv_sim_verdict verdict)
{
    switch (verdict) {
    case RKV_SIM_PASS:
        return "pass";
    case RKV_SIM_FAIL_LINEARIZABILITY:
        return "linearizability";
    case RKV_SIM_FAIL_DIVERGED:
        return "diverged";
    case RKV_SIM_FAIL_NO_CONVERGENCE:
        return "no-convergence";
    case RKV_SIM_FAIL_CHECK_BUDGET:
        return "check-budget";
    case RKV_SIM_FAIL_SAFETY:
        return "safety";
    }
    return "unknown";
}

/* ---- clients ------------------------------------------------------------ */

static unsigned random_node(struct rkv_sim_world *w)
{
    return (unsigned)rkv_sim_prng_below(&w->prng, w->options.n_nodes);
}

static void client_send(struct rkv_sim_world *w, unsigned c)
{
    struct sim_client *client = &w->clients[c];
    struct sim_msg *msg;
    unsigned target = client->target;

    if (client->op.kind == RKV_SIM_OP_GET &&
        w->options.bug == RKV_SIM_BUG_STALE_READ) {
        target = random_node(w);
    }
    client->request.req_id = ++client->next_req_id;
    client->n_attempts++;
    client->request.timeout_ms = rkv_sim_prng_between(
        &w->prng, RKV_SIM_CLIENT_TIMEOUT_MIN_MS, RKV_SIM_CLIENT_TIMEOUT_MAX_MS);
    client->deadline_ms =
        w->now_ms + client->request.timeout_ms + RKV_SIM_CLIENT_GRACE_MS;
    msg =
        sim_msg_new(SIM_MSG_REQUEST, RKV_SIM_CLIENT_ADDR_BASE + c, target + 1);
    msg->request = client->request;
    sim_net_send(w, msg);
}

/* Picks the next operation: hot keys are chosen more often. */
static void client_choose_op(struct rkv_sim_world *w, unsigned c,
                             struct rkv_sim_op *op)
{
    struct sim_client *client = &w->clients[c];
    unsigned key;
    uint64_t dice;

    memset(op, 0, sizeof(*op));
    op->client = c;
    if (rkv_sim_prng_chance(&w->prng, 500)) {
        key = (unsigned)rkv_sim_prng_below(&w->prng,
                                           RKV_MIN(2u, w->options.n_keys));
    } else {
        key = (unsigned)rkv_sim_prng_below(&w->prng, w->options.n_keys);
    }
    op->key = key;
    dice = rkv_sim_prng_below(&w->prng, 100);
    if (dice < 40 || (dice >= 65 && !client->known[key])) {
        op->kind = RKV_SIM_OP_GET;
        return;
    }
    client->n_ops++;
    if (dice < 65 ||
        (!client->known_absent[key] &&
         strlen(client->known_value[key]) > RKV_SIM_APPEND_LEN_MAX)) {
        op->kind = RKV_SIM_OP_PUT;
        snprintf(op->value, sizeof(op->value), "c%u.%" PRIu64, c,
                 client->n_ops);
        return;
    }
    op->kind = RKV_SIM_OP_CAS;
    op->expect_absent = client->known_absent[key];
    if (op->expect_absent) {
        snprintf(op->value, sizeof(op->value), "c%u.%" PRIu64, c,
                 client->n_ops);
    } else {
        char token[32];

        memcpy(op->expected, client->known_value[key], sizeof(op->expected));
        snprintf(token, sizeof(token), ",c%u.%" PRIu64, c, client->n_ops);
        memcpy(op->value, op->expected, sizeof(op->value));
        /* Values stay below RKV_SIM_APPEND_LEN_MAX before an append. */
        assert(strlen(op->value) + strlen(token) < sizeof(op->value));
        strcat(op->value, token);
    }
}

static void client_start_op(struct rkv_sim_world *w, unsigned c)
{
    struct sim_client *client = &w->clients[c];

    client_choose_op(w, c, &client->op);
    client->op.call_seq = ++w->seq;
    memset(&client->request, 0, sizeof(client->request));
    client->request.kind = client->op.kind;
    client->request.key = client->op.key;
    memcpy(client->request.value, client->op.value, sizeof(client->op.value));
    client->request.expect_absent = client->op.expect_absent;
    memcpy(client->request.expected, client->op.expected,
           sizeof(client->op.expected));
    client->waiting = true;
    client->n_attempts = 0;
    client_send(w, c);
}

static void client_record(struct rkv_sim_world *w, unsigned c)
{
    int rv = rkv_sim_history_add(&w->history, &w->clients[c].op);

    if (rv != 0) {
        sim_fatal("recording an operation", rv);
    }
}

static void client_op_done(struct rkv_sim_world *w, unsigned c)
{
    struct sim_client *client = &w->clients[c];

    client->waiting = false;
    client->retry_ms = 0;
    client->next_op_ms = w->now_ms + rkv_sim_prng_between(&w->prng, 0, 20);
}

/* Remembers what the client now knows of the key's value. */
static void client_learn(struct sim_client *client, const struct rkv_sim_op *op)
{
    unsigned key = op->key;

    if (op->kind == RKV_SIM_OP_GET) {
        client->known[key] = true;
        client->known_absent[key] = !op->found;
        memcpy(client->known_value[key], op->output, sizeof(op->output));
    } else if (op->kind == RKV_SIM_OP_PUT || op->found) {
        client->known[key] = true;
        client->known_absent[key] = false;
        memcpy(client->known_value[key], op->value, sizeof(op->value));
    } else {
        client->known[key] = false; /* a failed CAS: read again first */
    }
}

/* Returns whether a failed request certainly took no effect: it was
 * refused before anything was proposed, or its entry's index was taken by
 * another entry. Any other error (a timeout) leaves a write's outcome
 * unknown. */
static bool error_is_definite(int rv)
{
    switch (rv) {
    case RKV_ENOTLEADER:
    case RKV_EUNAVAILABLE:
    case RKV_EDROPPED:
    case RKV_EKEYMISMATCH:
    case RKV_ERANGENOTFOUND:
    case RKV_ENOSPACE:
    case RKV_EMAPFULL:
    case RKV_EBUSY:
        return true;
    default:
        return false;
    }
}

void sim_client_receive(struct rkv_sim_world *w, unsigned c,
                        const struct sim_response *response)
{
    struct sim_client *client = &w->clients[c];
    struct rkv_sim_op *op = &client->op;

    if (!client->waiting || response->req_id != client->request.req_id) {
        return; /* a late response to an abandoned attempt */
    }
    if (response->rv == 0) {
        op->return_seq = ++w->seq;
        op->found = response->found;
        if (op->kind == RKV_SIM_OP_GET) {
            memcpy(op->output, response->value, sizeof(op->output));
        }
        client_record(w, c);
        client_learn(client, op);
        client_op_done(w, c);
        return;
    }
    if (response->rv == RKV_ENOSPACE) {
        w->report->n_full_rejects++;
    }
    if (!error_is_definite(response->rv)) {
        if (op->kind != RKV_SIM_OP_GET) {
            op->unknown = true;
            client_record(w, c);
            client->known[op->key] = false;
        }
        client->target = random_node(w);
        client_op_done(w, c);
        return;
    }
    /* A definite failure: this attempt took no effect. */
    if (response->rv == RKV_ENOTLEADER && response->leader_hint != 0) {
        client->target = (unsigned)response->leader_hint - 1;
    } else {
        client->target = random_node(w);
    }
    if (client->n_attempts >= RKV_SIM_CLIENT_ATTEMPTS_MAX) {
        client_op_done(w, c);
        return;
    }
    /* Back off when no leader is known, so an election can finish before
     * the attempts run out. */
    client->retry_ms = w->now_ms;
    if (response->leader_hint == 0) {
        client->retry_ms += rkv_sim_prng_between(&w->prng, 10, 40);
    }
}

static void clients_step(struct rkv_sim_world *w)
{
    for (unsigned c = 0; c < w->options.n_clients; c++) {
        struct sim_client *client = &w->clients[c];

        if (client->waiting && client->retry_ms == 0 &&
            w->now_ms >= client->deadline_ms) {
            /* A read that timed out had no effect; a write may have. */
            if (client->op.kind != RKV_SIM_OP_GET) {
                client->op.unknown = true;
                client_record(w, c);
                client->known[client->op.key] = false;
            }
            client->target = random_node(w);
            client_op_done(w, c);
        }
        if (client->waiting && client->retry_ms != 0 &&
            w->now_ms >= client->retry_ms) {
            client->retry_ms = 0;
            client_send(w, c);
        }
        if (!client->waiting && w->clients_on &&
            w->now_ms >= client->next_op_ms) {
            client_start_op(w, c);
        }
    }
}

static bool clients_idle(const struct rkv_sim_world *w)
{
    for (unsigned c = 0; c < w->options.n_clients; c++) {
        if (w->clients[c].waiting) {
            return false;
        }
    }
    return true;
}

/* ---- faults ------------------------------------------------------------- */

struct sim_faults {
    uint64_t next_fault_ms;
    uint64_t heal_partition_ms; /* 0: no partition */
};

static unsigned nodes_down(const struct rkv_sim_world *w)
{
    unsigned n = 0;

    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        n += !w->up[i];
    }
    return n;
}

static void partition_heal(struct rkv_sim_world *w, struct sim_faults *f)
{
    if (f->heal_partition_ms == 0) {
        return;
    }
    memset(w->net.blocked, 0, sizeof(w->net.blocked));
    f->heal_partition_ms = 0;
    sim_trace(w, "heal partition");
}

static void partition_start(struct rkv_sim_world *w, struct sim_faults *f)
{
    unsigned n = w->options.n_nodes;
    bool side[RKV_SIM_NODES_MAX];
    bool one_way = rkv_sim_prng_chance(&w->prng, 300);
    char text[64] = "";
    size_t len = 0;
    unsigned n_side = 0;

    memset(w->net.blocked, 0, sizeof(w->net.blocked));
    while (n_side == 0 || n_side == n) {
        n_side = 0;
        for (unsigned i = 0; i < n; i++) {
            side[i] = rkv_sim_prng_chance(&w->prng, 500);
            n_side += side[i];
        }
    }
    for (unsigned a = 0; a < n; a++) {
        for (unsigned b = 0; b < n; b++) {
            if (side[a] && !side[b]) {
                w->net.blocked[a][b] = true;
                w->net.blocked[b][a] = !one_way;
            }
        }
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%u",
                                a == 0 ? "" : ",", side[a] ? 1u : 0u);
    }
    f->heal_partition_ms = w->now_ms + rkv_sim_prng_between(&w->prng, 50, 600);
    w->report->n_partitions++;
    sim_trace(w, "partition %s sides=%s (1 cannot send to 0%s)",
              one_way ? "one-way" : "symmetric", text,
              one_way ? "" : " and back");
}

static void fault_crash(struct rkv_sim_world *w)
{
    unsigned i = random_node(w);

    /* Keep a majority up, except for a rare crash of anyone. */
    if (!w->up[i] || (nodes_down(w) >= (w->options.n_nodes - 1) / 2 &&
                      !rkv_sim_prng_chance(&w->prng, 100))) {
        return;
    }
    sim_node_crash(w, i);
    w->report->n_crashes++;
    sim_trace(w, "crash node=%u restart_at=%" PRIu64, i + 1, w->restart_ms[i]);
}

static void faults_step(struct rkv_sim_world *w, struct sim_faults *f)
{
    uint64_t dice;
    unsigned i;

    if (f->heal_partition_ms != 0 && w->now_ms >= f->heal_partition_ms) {
        partition_heal(w, f);
    }
    if (w->now_ms < f->next_fault_ms) {
        return;
    }
    f->next_fault_ms = w->now_ms + rkv_sim_prng_between(&w->prng, 20, 200);
    dice = rkv_sim_prng_below(&w->prng, 100);
    if (dice < 20) {
        /* A partition needs a node on each side. */
        if (w->options.n_nodes >= 2) {
            partition_start(w, f);
        }
    } else if (dice < 40) {
        fault_crash(w);
    } else if (dice < 50) {
        i = random_node(w);
        if (w->up[i]) {
            unsigned skip = (unsigned)rkv_sim_prng_below(&w->prng, 8);

            sim_node_fail_write(w, i, skip);
            sim_trace(w, "disk will fail node=%u after_writes=%u", i + 1, skip);
        }
    } else if (dice < 70) {
        /* Try the nodes from a random one until one leads something. */
        i = random_node(w);
        for (unsigned k = 0; k < w->options.n_nodes; k++) {
            if (sim_node_transfer_some(w, (i + k) % w->options.n_nodes)) {
                w->report->n_transfers++;
                break;
            }
        }
    } else if (dice < 85) {
        i = random_node(w);
        for (unsigned k = 0; k < w->options.n_nodes; k++) {
            unsigned j = (i + k) % w->options.n_nodes;

            if (sim_node_change_membership(w, j, false)) {
                w->report->n_conf_changes++;
                break;
            }
        }
    } else if (dice < 92) {
        i = random_node(w);
        if (w->up[i]) {
            uint64_t ms = rkv_sim_prng_between(&w->prng, 20, 300);

            sim_node_fill_disk(w, i, ms);
            w->report->n_disk_full++;
            sim_trace(w, "disk full node=%u for_ms=%" PRIu64, i + 1, ms);
        }
    }
}

/* Draws this seed's network profile. */
static void faults_profile(struct rkv_sim_world *w)
{
    struct sim_net *net = &w->net;

    net->drop_per_mille = (unsigned)rkv_sim_prng_below(&w->prng, 60);
    net->dup_per_mille = (unsigned)rkv_sim_prng_below(&w->prng, 40);
    net->delay_min_ms = 1;
    net->delay_max_ms = rkv_sim_prng_between(&w->prng, 2, 12);
    net->slow_per_mille = (unsigned)rkv_sim_prng_below(&w->prng, 40);
    net->slow_max_ms = rkv_sim_prng_between(&w->prng, 30, 300);
    w->disk_latency_max_ms = rkv_sim_prng_between(&w->prng, 1, 25);
    sim_trace(w,
              "network drop=%u/1000 dup=%u/1000 delay=%" PRIu64 "..%" PRIu64
              "ms slow=%u/1000 up to %" PRIu64 "ms disk=1..%" PRIu64 "ms",
              net->drop_per_mille, net->dup_per_mille, net->delay_min_ms,
              net->delay_max_ms, net->slow_per_mille, net->slow_max_ms,
              w->disk_latency_max_ms);
}

/* ---- the loop ----------------------------------------------------------- */

static void deliver(struct rkv_sim_world *w, struct sim_msg *msg)
{
    if (w->scripted && msg->to < RKV_SIM_CLIENT_ADDR_BASE &&
        msg->from < RKV_SIM_CLIENT_ADDR_BASE &&
        w->net.blocked[msg->from - 1][msg->to - 1]) {
        /* A scripted partition also loses what was in flight when it
         * started, so a script can cut a link right after a send. */
    } else if (msg->to >= RKV_SIM_CLIENT_ADDR_BASE && w->scripted) {
        sim_script_receive(w, &msg->response);
    } else if (msg->to >= RKV_SIM_CLIENT_ADDR_BASE) {
        sim_client_receive(w, msg->to - RKV_SIM_CLIENT_ADDR_BASE,
                           &msg->response);
    } else {
        sim_node_receive(w, msg->to - 1, msg);
    }
    sim_msg_free(msg);
}

static int world_step(struct rkv_sim_world *w, struct sim_faults *f)
{
    struct sim_msg *msg;
    int rv;

    w->now_ms++;
    while ((msg = sim_net_next_due(w)) != NULL) {
        deliver(w, msg);
    }
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        sim_node_step(w, i);
    }
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        if (!w->up[i] && !w->scripted &&
            (w->now_ms >= w->restart_ms[i] || !w->faults_on)) {
            rv = sim_node_start(w, i);
            if (rv != 0) {
                return rv;
            }
            sim_trace(w, "restart node=%u", i + 1);
        }
    }
    clients_step(w);
    if (w->faults_on) {
        faults_step(w, f);
    }
    return 0;
}

/* Lists, in ids (SIM_RANGES_MAX), the range ids that any node has an
 * initialized replica of, ascending; returns the count. */
static size_t world_range_ids(struct rkv_sim_world *w, uint64_t *ids)
{
    size_t n_ids = 0;

    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        uint64_t node_ids[SIM_RANGES_MAX];
        size_t n = sim_node_range_ids(w, i, node_ids, SIM_RANGES_MAX);

        for (size_t k = 0; k < n; k++) {
            size_t at = 0;

            while (at < n_ids && ids[at] < node_ids[k]) {
                at++;
            }
            if ((at < n_ids && ids[at] == node_ids[k]) ||
                n_ids == SIM_RANGES_MAX) {
                continue;
            }
            memmove(&ids[at + 1], &ids[at], (n_ids - at) * sizeof(*ids));
            ids[at] = node_ids[k];
            n_ids++;
        }
    }
    return n_ids;
}

/* Returns whether every range has a leader with every node as a voter,
 * whose whole log every replica applied. */
static bool world_converged(struct rkv_sim_world *w, uint64_t *ids,
                            size_t *n_ids)
{
    *n_ids = world_range_ids(w, ids);
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        /* Queued disk work may remain, because every heartbeat that
         * carries a newer commit index makes a hard-state write. The
         * applied indexes below are what must have settled. */
        if (!w->up[i]) {
            return false;
        }
    }
    for (size_t k = 0; k < *n_ids; k++) {
        struct sim_replica_view views[RKV_SIM_NODES_MAX];
        const struct sim_replica_view *leader = NULL;

        for (unsigned i = 0; i < w->options.n_nodes; i++) {
            sim_node_view(w, i, ids[k], &views[i]);
            if (!views[i].present || !views[i].initialized) {
                return false;
            }
            if (views[i].is_leader &&
                (leader == NULL || views[i].term > leader->term)) {
                leader = &views[i];
            }
        }
        if (leader == NULL || !leader->full_conf ||
            leader->commit_index != leader->last_index) {
            return false;
        }
        for (unsigned i = 0; i < w->options.n_nodes; i++) {
            if (views[i].applied_index != leader->last_index) {
                return false;
            }
        }
    }
    return true;
}

static void fail(struct rkv_sim_world *w, enum rkv_sim_verdict verdict,
                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct rkv_sim_world *w, enum rkv_sim_verdict verdict,
                 const char *fmt, ...)
{
    va_list args;

    if (w->report->verdict != RKV_SIM_PASS) {
        return; /* keep the first failure */
    }
    w->report->verdict = verdict;
    va_start(args, fmt);
    vsnprintf(w->report->detail, sizeof(w->report->detail), fmt, args);
    va_end(args);
}

/* Compares every range's content hash across the nodes. */
static void check_hashes(struct rkv_sim_world *w, const uint64_t *ids,
                         size_t n_ids)
{
    for (size_t k = 0; k < n_ids; k++) {
        uint64_t first = 0;

        for (unsigned i = 0; i < w->options.n_nodes; i++) {
            struct rkv_range_rtxn *rtxn;
            uint64_t hash = 0;
            int rv;

            rv = rkv_range_rtxn_begin(sim_node_store(w, i), &rtxn);
            if (rv == 0) {
                rv = rkv_range_content_hash(rtxn, ids[k], &hash);
                rkv_range_rtxn_end(rtxn);
            }
            if (rv != 0) {
                sim_fatal("hashing a range", rv);
            }
            if (i == 0) {
                first = hash;
            } else if (hash != first) {
                fail(w, RKV_SIM_FAIL_DIVERGED,
                     "range %llu differs: node 1 hash %016llx, node %u "
                     "hash %016llx",
                     (unsigned long long)ids[k], (unsigned long long)first,
                     i + 1, (unsigned long long)hash);
            }
        }
    }
}

/* Reads every key from node 1's converged store and records the reads
 * after every other operation, so the check proves each acknowledged write
 * is in the final state. */
static void final_reads(struct rkv_sim_world *w, const uint64_t *ids,
                        size_t n_ids)
{
    struct rkv_range_rtxn *rtxn;
    int rv;

    rv = rkv_range_rtxn_begin(sim_node_store(w, 0), &rtxn);
    if (rv != 0) {
        sim_fatal("beginning a read transaction", rv);
    }
    for (unsigned key = 0; key < w->options.n_keys; key++) {
        struct rkv_sim_op op;
        char key_text[16];
        const uint8_t *value = NULL;
        size_t value_len = 0;

        memset(&op, 0, sizeof(op));
        op.client = w->options.n_clients; /* the checker's own reader */
        op.key = key;
        op.kind = RKV_SIM_OP_GET;
        snprintf(key_text, sizeof(key_text), "k%02u", key);
        rv = RKV_EKEYMISMATCH;
        for (size_t k = 0; k < n_ids && rv == RKV_EKEYMISMATCH; k++) {
            rv = rkv_range_get(rtxn, ids[k], key_text, strlen(key_text), &value,
                               &value_len);
            if (rv == RKV_ERANGENOTFOUND) {
                rv = RKV_EKEYMISMATCH;
            }
        }
        if (rv != 0 && rv != RKV_ENOTFOUND) {
            sim_fatal("reading a key at the end", rv);
        }
        op.found = rv == 0;
        if (op.found) {
            memcpy(op.output, value, RKV_MIN(value_len, sizeof(op.output) - 1));
        }
        op.call_seq = ++w->seq;
        op.return_seq = ++w->seq;
        rv = rkv_sim_history_add(&w->history, &op);
        if (rv != 0) {
            sim_fatal("recording an operation", rv);
        }
    }
    rkv_range_rtxn_end(rtxn);
}

static int check_history(struct rkv_sim_world *w)
{
    for (unsigned key = 0; key < w->options.n_keys; key++) {
        struct rkv_sim_check_detail detail;
        enum rkv_sim_check_result result;
        int rv;

        rv = rkv_sim_check_key(&w->history, key, w->options.check_steps,
                               w->options.check_ms, &result, &detail);
        if (rv != 0) {
            return rv;
        }
        if (result == RKV_SIM_CHECK_VIOLATION) {
            fail(w, RKV_SIM_FAIL_LINEARIZABILITY,
                 "key k%02u: history is not linearizable", key);
        } else if (result == RKV_SIM_CHECK_UNKNOWN) {
            fail(w, RKV_SIM_FAIL_CHECK_BUDGET,
                 "key k%02u: check ran out of its step budget", key);
        }
        if (result != RKV_SIM_CHECK_OK && w->options.verbose) {
            printf("history of key k%02u ([call, return] sequence numbers; "
                   "? is an unknown outcome). At most %zu of its %zu "
                   "operations linearize; >> marks the operation that "
                   "could not take effect before it returned:\n",
                   key, detail.n_linearized_max, detail.n_ops);
            rkv_sim_history_print(&w->history, key, detail.blocked_call_seq);
        }
    }
    return 0;
}

/* Prints every replica's Raft position, to show why a run did not
 * settle. */
static void world_print_views(struct rkv_sim_world *w)
{
    uint64_t ids[SIM_RANGES_MAX];
    size_t n_ids = 0;

    n_ids = world_range_ids(w, ids);
    for (size_t k = 0; k < n_ids; k++) {
        for (unsigned i = 0; i < w->options.n_nodes; i++) {
            struct sim_replica_view v;

            sim_node_view(w, i, ids[k], &v);
            printf("range=%llu node=%u present=%d initialized=%d role=%d "
                   "leader=%llu term=%llu applied=%llu commit=%llu "
                   "last=%llu conf=%s quiesced=%d disk_busy=%d\n",
                   (unsigned long long)ids[k], i + 1, v.present, v.initialized,
                   v.role, (unsigned long long)v.leader_id,
                   (unsigned long long)v.term,
                   (unsigned long long)v.applied_index,
                   (unsigned long long)v.commit_index,
                   (unsigned long long)v.last_index, v.conf_text, v.quiesced,
                   sim_node_disk_busy(w, i));
        }
    }
}

/* Phase 2: stops the faults and runs until the cluster settles. */
static int world_heal(struct rkv_sim_world *w, struct sim_faults *f,
                      uint64_t *ids, size_t *n_ids)
{
    uint64_t deadline;
    int rv;

    w->faults_on = false;
    w->clients_on = false;
    memset(w->net.blocked, 0, sizeof(w->net.blocked));
    f->heal_partition_ms = 0;
    sim_trace(w, "heal: faults stop, crashed nodes restart");
    deadline = w->now_ms + w->options.heal_ms;
    while (w->now_ms < deadline) {
        rv = world_step(w, f);
        if (rv != 0) {
            return rv;
        }
        if (w->now_ms % SIM_RESTORE_MEMBERSHIP_MS == 0) {
            for (unsigned i = 0; i < w->options.n_nodes; i++) {
                sim_node_change_membership(w, i, true);
            }
        }
        if (w->now_ms % SIM_CONVERGE_CHECK_MS == 0 && clients_idle(w) &&
            world_converged(w, ids, n_ids)) {
            sim_trace(w, "converged ranges=%zu", *n_ids);
            return 0;
        }
    }
    if (w->options.verbose) {
        world_print_views(w);
    }
    fail(w, RKV_SIM_FAIL_NO_CONVERGENCE,
         "the cluster did not settle within %" PRIu64 " ms after healing",
         w->options.heal_ms);
    return 0;
}

static int world_run(struct rkv_sim_world *w)
{
    struct sim_faults faults = {0};
    uint64_t ids[SIM_RANGES_MAX];
    size_t n_ids = 0;
    int rv;

    faults_profile(w);
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        rv = sim_node_start(w, i);
        if (rv != 0) {
            return rv;
        }
    }
    w->faults_on = true;
    w->clients_on = true;
    faults.next_fault_ms = rkv_sim_prng_between(&w->prng, 100, 300);
    while (w->now_ms < w->options.duration_ms) {
        rv = world_step(w, &faults);
        if (rv != 0) {
            return rv;
        }
    }
    if (w->report->verdict != RKV_SIM_PASS) {
        return 0; /* a safety check failed during the run */
    }
    rv = world_heal(w, &faults, ids, &n_ids);
    if (rv != 0 || w->report->verdict != RKV_SIM_PASS) {
        return rv;
    }
    w->report->n_ranges = n_ids;
    check_hashes(w, ids, n_ids);
    final_reads(w, ids, n_ids);
    return check_history(w);
}

/* Receives the nodes' log lines during a run: printed into the schedule,
 * stamped with simulated time, when verbose, and dropped otherwise (an
 * injected disk error is logged at ERROR, as production logs it). */
static void log_emit(void *data, enum rkv_log_level level, uint64_t node_id,
                     const char *subsys, const char *file, int line,
                     const char *message)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    struct rkv_sim_world *w = data;

    (void)file;
    (void)line;
    if (w->options.verbose) {
        printf("t=%" PRIu64 " log node=%llu %s %s %s\n", w->now_ms,
               (unsigned long long)node_id, names[level], subsys, message);
    }
}

static int remove_entry_cb(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

/* Hashes what each operation did and saw, field by field (the struct has
 * padding, and strings are hashed up to their NUL). */
static uint64_t history_hash(const struct rkv_sim_history *history)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < history->n_ops; i++) {
        const struct rkv_sim_op *op = &history->ops[i];
        uint64_t numbers[] = {op->client,   op->key,       (uint64_t)op->kind,
                              op->unknown,  op->found,     op->expect_absent,
                              op->call_seq, op->return_seq};

        h = hash_bytes(h, numbers, sizeof(numbers));
        h = hash_bytes(h, op->value, strlen(op->value));
        h = hash_bytes(h, op->expected, strlen(op->expected));
        h = hash_bytes(h, op->output, strlen(op->output));
    }
    return h;
}

static void options_fill_defaults(struct rkv_sim_options *o)
{
    struct rkv_sim_options defaults;

    rkv_sim_options_init(&defaults, o->seed, o->n_nodes);
    if (o->n_clients == 0) {
        o->n_clients = defaults.n_clients;
    }
    if (o->n_keys == 0) {
        o->n_keys = defaults.n_keys;
    }
    if (o->duration_ms == 0) {
        o->duration_ms = defaults.duration_ms;
    }
    if (o->heal_ms == 0) {
        o->heal_ms = defaults.heal_ms;
    }
    if (o->split_bytes == 0) {
        o->split_bytes = defaults.split_bytes;
    }
}

int sim_world_step(struct rkv_sim_world *w)
{
    struct sim_faults none = {0};

    return world_step(w, &none);
}

int sim_world_new(const struct rkv_sim_options *options,
                  struct rkv_sim_report *report, struct rkv_sim_world **out)
{
    struct rkv_sim_world *w;

    memset(report, 0, sizeof(*report));
#ifndef RKV_NODE_BUGS
    if (options->bug != RKV_SIM_BUG_NONE) {
        snprintf(report->detail, sizeof(report->detail),
                 "this build has no injected bugs: use the simulator built "
                 "with RKV_NODE_BUGS (rkv-sim-bugs)");
        return -ENOTSUP;
    }
#endif
    if (options->n_nodes == 0 || options->n_nodes > RKV_SIM_NODES_MAX ||
        options->n_clients > RKV_SIM_CLIENTS_MAX ||
        options->n_keys > RKV_SIM_KEYS_MAX || options->dir == NULL) {
        snprintf(report->detail, sizeof(report->detail),
                 "invalid options: nodes 1..%d, clients up to %d, keys up "
                 "to %d, and a folder are required",
                 RKV_SIM_NODES_MAX, RKV_SIM_CLIENTS_MAX, RKV_SIM_KEYS_MAX);
        return -EINVAL;
    }
    w = rkv_calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    w->options = *options;
    options_fill_defaults(&w->options);
    w->report = report;
    rkv_sim_prng_seed(&w->prng, options->seed);
    rkv_sim_history_init(&w->history);
    for (unsigned c = 0; c < w->options.n_clients; c++) {
        w->clients[c].target = random_node(w);
    }
    rkv_log_set_emitter(log_emit, w);
    *out = w;
    return 0;
}

void sim_world_free(struct rkv_sim_world *w)
{
    char path[600];

    sim_nodes_free(w);
    rkv_log_set_emitter(NULL, NULL);
    sim_net_free(&w->net);
    rkv_sim_history_free(&w->history);
    sim_safety_free(w);
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        snprintf(path, sizeof(path), "%s/node-%u", w->options.dir, i + 1);
        nftw(path, remove_entry_cb, 8, FTW_DEPTH | FTW_PHYS);
    }
    rkv_free(w);
}

int rkv_sim_run(const struct rkv_sim_options *options,
                struct rkv_sim_report *report)
{
    struct rkv_sim_world *w;
    int rv;

    rv = sim_world_new(options, report, &w);
    if (rv != 0) {
        return rv;
    }
    rv = world_run(w);
    if (rv != 0) {
        snprintf(report->detail, sizeof(report->detail),
                 "harness failed: %s: %s", w->errmsg, rkv_strerror(rv));
    }
    report->end_ms = w->now_ms;
    report->n_ops = w->history.n_ops;
    report->history_hash = history_hash(&w->history);
    for (size_t i = 0; i < w->history.n_ops; i++) {
        report->n_unknown += w->history.ops[i].unknown;
    }
    sim_world_free(w);
    return rv;
}
