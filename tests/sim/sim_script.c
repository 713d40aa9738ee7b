/*
 * Scripted runs: the simulated cluster of sim.c driven step by step by a
 * test instead of by the fault schedule, for scenarios that random runs
 * seldom reach. The script cuts links, crashes and restarts nodes, sends
 * puts and waits for conditions; the nodes run the production node code
 * as in every simulation.
 */
#include "tests/sim/sim_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

int sim_script_new(const struct rkv_sim_options *options,
                   struct rkv_sim_report *report, struct rkv_sim_world **out)
{
    struct rkv_sim_world *w;
    int rv;

    rv = sim_world_new(options, report, &w);
    if (rv != 0) {
        return rv;
    }
    /* n_clients 0 selects the default; a script has none of its own. */
    w->options.n_clients = 0;
    w->scripted = true;
    w->net.delay_min_ms = 1;
    w->net.delay_max_ms = 1;
    w->disk_latency_max_ms = 1;
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        rv = sim_node_start(w, i);
        if (rv != 0) {
            sim_world_free(w);
            return rv;
        }
    }
    *out = w;
    return 0;
}

bool sim_script_run_until(struct rkv_sim_world *w,
                          bool (*done)(struct rkv_sim_world *w, void *arg),
                          void *arg, uint64_t max_ms)
{
    for (uint64_t t = 0; t < max_ms; t++) {
        if (sim_world_step(w) != 0) {
            return false;
        }
        if (done(w, arg)) {
            return true;
        }
    }
    return false;
}

void sim_script_run(struct rkv_sim_world *w, uint64_t ms)
{
    for (uint64_t t = 0; t < ms; t++) {
        sim_world_step(w);
    }
}

void sim_script_block(struct rkv_sim_world *w, unsigned from, unsigned to,
                      bool blocked)
{
    w->net.blocked[from][to] = blocked;
}

void sim_script_isolate(struct rkv_sim_world *w, unsigned i, bool isolated)
{
    for (unsigned k = 0; k < w->options.n_nodes; k++) {
        if (k != i) {
            w->net.blocked[i][k] = isolated;
            w->net.blocked[k][i] = isolated;
        }
    }
}

uint64_t sim_script_put(struct rkv_sim_world *w, unsigned i, unsigned key,
                        const char *value)
{
    struct sim_msg *msg =
        sim_msg_new(SIM_MSG_REQUEST, RKV_SIM_CLIENT_ADDR_BASE, i + 1);

    msg->request.req_id = ++w->seq;
    msg->request.timeout_ms = 60000;
    msg->request.kind = RKV_SIM_OP_PUT;
    msg->request.key = key;
    snprintf(msg->request.value, sizeof(msg->request.value), "%s", value);
    sim_net_send(w, msg);
    return w->seq;
}

void sim_script_receive(struct rkv_sim_world *w,
                        const struct sim_response *response)
{
    if (w->n_script_responses < SIM_SCRIPT_RESPONSES_MAX) {
        w->script_responses[w->n_script_responses++] = *response;
    }
}

bool sim_script_response(struct rkv_sim_world *w, uint64_t req_id,
                         struct sim_response *out)
{
    for (size_t k = 0; k < w->n_script_responses; k++) {
        if (w->script_responses[k].req_id == req_id) {
            if (out != NULL) {
                *out = w->script_responses[k];
            }
            return true;
        }
    }
    return false;
}

int sim_script_leader(struct rkv_sim_world *w, uint64_t range_id)
{
    int leader = -1;
    uint64_t term = 0;

    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        struct sim_replica_view view;

        sim_node_view(w, i, range_id, &view);
        if (view.is_leader && view.term >= term) {
            leader = (int)i;
            term = view.term;
        }
    }
    return leader;
}

/* ---- the truncated-proposal scenario ------------------------------------ */

/* The nodes of the scenario, 0-based, and the log indexes it watches. */
struct truncate_cast {
    unsigned a, b, c, d, e; /* b: the one of b, d, e that wins term t+1 */
    uint64_t p1_index;      /* P1's index; P3 is at p1_index + 2 */
};

static struct sim_replica_view view_of(struct rkv_sim_world *w, unsigned i)
{
    struct sim_replica_view view;

    sim_node_view(w, i, RKV_RANGE_ID_FIRST, &view);
    return view;
}

/* Every node applied range 1's whole log under one leader. */
static bool settled(struct rkv_sim_world *w, void *arg)
{
    int leader = sim_script_leader(w, RKV_RANGE_ID_FIRST);
    struct sim_replica_view lv;

    (void)arg;
    if (leader < 0) {
        return false;
    }
    lv = view_of(w, (unsigned)leader);
    if (lv.commit_index != lv.last_index) {
        return false;
    }
    for (unsigned i = 0; i < w->options.n_nodes; i++) {
        if (view_of(w, i).applied_index != lv.last_index) {
            return false;
        }
    }
    return true;
}

static bool c_has_p3(struct rkv_sim_world *w, void *arg)
{
    const struct truncate_cast *cast = arg;

    return view_of(w, cast->c).last_index >= cast->p1_index + 2;
}

/* One of b, d and e leads in a term above A's. */
static bool new_leader_elected(struct rkv_sim_world *w, void *arg)
{
    struct truncate_cast *cast = arg;
    unsigned candidates[3] = {cast->b, cast->d, cast->e};
    uint64_t a_term = view_of(w, cast->a).term;

    for (unsigned k = 0; k < 3; k++) {
        struct sim_replica_view v = view_of(w, candidates[k]);

        if (v.is_leader && v.term > a_term) {
            cast->b = candidates[k];
            cast->d = candidates[(k + 1) % 3];
            cast->e = candidates[(k + 2) % 3];
            return true;
        }
    }
    return false;
}

/* A took B's entry at P1's index, which truncated P1..P3. */
static bool a_truncated(struct rkv_sim_world *w, void *arg)
{
    const struct truncate_cast *cast = arg;
    struct sim_replica_view v = view_of(w, cast->a);

    return v.last_index == cast->p1_index && v.term == view_of(w, cast->b).term;
}

static bool a_leads(struct rkv_sim_world *w, void *arg)
{
    const struct truncate_cast *cast = arg;

    return view_of(w, cast->a).is_leader;
}

static bool c_applied_p3(struct rkv_sim_world *w, void *arg)
{
    const struct truncate_cast *cast = arg;
    struct sim_replica_view v = view_of(w, cast->c);

    return v.is_leader && v.applied_index >= cast->p1_index + 2;
}

/* Reads key number `key` from node i's store into value (NUL-terminated,
 * "" when absent). */
static void read_key(struct rkv_sim_world *w, unsigned i, unsigned key,
                     char *value, size_t value_size)
{
    struct rkv_range_rtxn *rtxn;
    const uint8_t *data = NULL;
    size_t len = 0;
    char text[16];

    value[0] = '\0';
    snprintf(text, sizeof(text), "k%02u", key);
    if (rkv_range_rtxn_begin(sim_node_store(w, i), &rtxn) != 0) {
        return;
    }
    if (rkv_range_get(rtxn, RKV_RANGE_ID_FIRST, text, strlen(text), &data,
                      &len) == 0) {
        snprintf(value, value_size, "%.*s", (int)len, (const char *)data);
    }
    rkv_range_rtxn_end(rtxn);
}

/* Names in step (SIM_SCENARIO_STEP_MAX bytes) the state a scenario did not
 * reach, and returns false. */
static bool step_missed(char *step, const char *what)
{
    snprintf(step, SIM_SCENARIO_STEP_MAX, "%s", what);
    return false;
}

/* Runs run(w, out) in a new scripted world for options; *reached is what
 * run returned. */
static int scenario_world(const struct rkv_sim_options *options,
                          bool (*run)(struct rkv_sim_world *w, void *out),
                          void *out, bool *reached)
{
    struct rkv_sim_report report;
    struct rkv_sim_world *w;
    int rv;

    rv = sim_script_new(options, &report, &w);
    if (rv != 0) {
        return rv;
    }
    *reached = run(w, out);
    sim_world_free(w);
    return 0;
}

static bool truncate_run(struct rkv_sim_world *w, void *arg)
{
    struct sim_truncate_outcome *out = arg;
    struct truncate_cast cast;
    struct sim_response response;
    uint64_t p3_req;
    char value[RKV_SIM_VALUE_MAX];
    int leader;

    if (!sim_script_run_until(w, settled, NULL, 5000)) {
        return step_missed(out->step, "first leader and settled log");
    }
    leader = sim_script_leader(w, RKV_RANGE_ID_FIRST);
    cast.a = (unsigned)leader;
    cast.c = (cast.a + 1) % 5;
    cast.b = (cast.a + 2) % 5;
    cast.d = (cast.a + 3) % 5;
    cast.e = (cast.a + 4) % 5;
    cast.p1_index = view_of(w, cast.a).last_index + 1;

    /* 1. P1..P3 reach C only. */
    sim_script_block(w, cast.a, cast.b, true);
    sim_script_block(w, cast.a, cast.d, true);
    sim_script_block(w, cast.a, cast.e, true);
    /* One per millisecond, so that they take their indexes in order. */
    sim_script_put(w, cast.a, 1, "p1");
    sim_script_run(w, 1);
    sim_script_put(w, cast.a, 2, "p2");
    sim_script_run(w, 1);
    p3_req = sim_script_put(w, cast.a, 3, "p3");
    if (!sim_script_run_until(w, c_has_p3, &cast, 200) ||
        view_of(w, cast.a).last_index != cast.p1_index + 2) {
        return step_missed(out->step, "P1..P3 appended on A and C only");
    }

    /* 2. B wins with D and E; only A hears from it. */
    sim_script_isolate(w, cast.a, true);
    sim_script_isolate(w, cast.c, true);
    if (!sim_script_run_until(w, new_leader_elected, &cast, 5000)) {
        return step_missed(out->step, "B elected with D and E");
    }
    sim_script_isolate(w, cast.b, true);
    sim_script_block(w, cast.b, cast.a, false);
    sim_script_block(w, cast.a, cast.b, false);
    if (!sim_script_run_until(w, a_truncated, &cast, 2000)) {
        return step_missed(out->step, "A took B's entry at P1's index");
    }

    /* 3. A wins with D and E, reaches no one, and Q takes P3's index. */
    sim_node_crash(w, cast.b);
    sim_script_isolate(w, cast.a, false);
    sim_script_isolate(w, cast.c, true);
    if (!sim_script_run_until(w, a_leads, &cast, 5000)) {
        return step_missed(out->step, "A elected with D and E");
    }
    sim_script_isolate(w, cast.a, true);
    sim_script_put(w, cast.a, 4, "q");
    sim_script_run(w, 5);
    if (view_of(w, cast.a).last_index < cast.p1_index + 2) {
        return step_missed(out->step, "Q appended at P3's index on A");
    }
    out->responded_early = sim_script_response(w, p3_req, &response);
    out->early_rv = out->responded_early ? response.rv : 0;

    /* 4. C, with P1..P3, wins with D and E and commits them. */
    sim_node_crash(w, cast.a);
    sim_script_isolate(w, cast.c, false);
    if (!sim_script_run_until(w, c_applied_p3, &cast, 5000)) {
        return step_missed(out->step, "C elected and P3 applied");
    }
    read_key(w, cast.c, 3, value, sizeof(value));
    out->applied_later = strcmp(value, "p3") == 0;
    return true;
}

int sim_scenario_truncated_proposal(const struct rkv_sim_options *options,
                                    struct sim_truncate_outcome *out)
{
    memset(out, 0, sizeof(*out));
    if (options->n_nodes != 5) {
        return -EINVAL;
    }
    return scenario_world(options, truncate_run, out, &out->reached);
}

/* ---- the snapshot-past-proposal scenario -------------------------------- */

struct snapshot_cast {
    unsigned a, b, c; /* b: whichever of b and c leads after A */
    uint64_t p_index; /* P's log index */
    uint64_t p_req;   /* P's request id */
};

static bool others_have_p(struct rkv_sim_world *w, void *arg)
{
    const struct snapshot_cast *cast = arg;

    return view_of(w, cast->b).last_index >= cast->p_index &&
           view_of(w, cast->c).last_index >= cast->p_index;
}

/* B or C leads in a newer term and committed P. */
static bool successor_committed_p(struct rkv_sim_world *w, void *arg)
{
    struct snapshot_cast *cast = arg;
    unsigned candidates[2] = {cast->b, cast->c};

    for (unsigned k = 0; k < 2; k++) {
        struct sim_replica_view v = view_of(w, candidates[k]);

        if (v.is_leader && v.term > view_of(w, cast->a).term &&
            v.commit_index >= cast->p_index) {
            cast->b = candidates[k];
            cast->c = candidates[1 - k];
            return true;
        }
    }
    return false;
}

static bool compacted_past_p(struct rkv_sim_world *w, void *arg)
{
    const struct snapshot_cast *cast = arg;

    return view_of(w, cast->b).compacted_index > cast->p_index &&
           view_of(w, cast->c).compacted_index > cast->p_index;
}

static bool a_installed_snapshot(struct rkv_sim_world *w, void *arg)
{
    const struct snapshot_cast *cast = arg;

    return view_of(w, cast->a).compacted_index > cast->p_index;
}

/* A applied an entry after its snapshot, and P got its response. */
static bool a_applied_after(struct rkv_sim_world *w, void *arg)
{
    const struct snapshot_cast *cast = arg;

    return view_of(w, cast->a).applied_index >=
               view_of(w, cast->b).commit_index &&
           sim_script_response(w, cast->p_req, NULL);
}

static bool snapshot_run(struct rkv_sim_world *w, void *arg)
{
    struct sim_snapshot_outcome *out = arg;
    struct snapshot_cast cast;
    struct sim_response response;
    char value[RKV_SIM_VALUE_MAX];
    char filler[16];

    if (!sim_script_run_until(w, settled, NULL, 5000)) {
        return step_missed(out->step, "first leader");
    }
    cast.a = (unsigned)sim_script_leader(w, RKV_RANGE_ID_FIRST);
    cast.b = (cast.a + 1) % 3;
    cast.c = (cast.a + 2) % 3;
    cast.p_index = view_of(w, cast.a).last_index + 1;

    /* 1. P reaches B and C; their acknowledgments never reach A. */
    cast.p_req = sim_script_put(w, cast.a, 1, "p");
    if (!sim_script_run_until(w, others_have_p, &cast, 200)) {
        return step_missed(out->step, "P appended on B and C");
    }
    sim_script_block(w, cast.b, cast.a, true);
    sim_script_block(w, cast.c, cast.a, true);

    /* 2. A successor commits P and compacts its log past it. */
    if (!sim_script_run_until(w, successor_committed_p, &cast, 5000)) {
        return step_missed(out->step, "successor committed P");
    }
    for (unsigned k = 0; k < 40; k++) {
        snprintf(filler, sizeof(filler), "f%u", k);
        sim_script_put(w, cast.b, 2 + k % 4, filler);
        sim_script_run(w, 2);
    }
    if (!sim_script_run_until(w, compacted_past_p, &cast, 5000)) {
        return step_missed(out->step, "logs compacted past P");
    }

    /* 3. A hears again, catches up by snapshot, and applies one more
     * entry after it. */
    sim_script_block(w, cast.b, cast.a, false);
    sim_script_block(w, cast.c, cast.a, false);
    if (!sim_script_run_until(w, a_installed_snapshot, &cast, 5000)) {
        return step_missed(out->step, "A installed a snapshot");
    }
    sim_script_put(w, cast.b, 2, "after");
    if (!sim_script_run_until(w, a_applied_after, &cast, 5000)) {
        return step_missed(out->step, "A applied an entry after the snapshot");
    }
    out->responded = sim_script_response(w, cast.p_req, &response);
    out->rv = out->responded ? response.rv : 0;
    read_key(w, cast.a, 1, value, sizeof(value));
    out->applied = strcmp(value, "p") == 0;
    return true;
}

int sim_scenario_snapshot_past_proposal(const struct rkv_sim_options *options,
                                        struct sim_snapshot_outcome *out)
{
    memset(out, 0, sizeof(*out));
    if (options->n_nodes != 3 || !options->compact) {
        return -EINVAL;
    }
    return scenario_world(options, snapshot_run, out, &out->reached);
}

/* ---- the lagging-follower scenario -------------------------------------- */

struct quiesce_cast {
    unsigned leader;
    unsigned lagging;
    unsigned other;
    uint64_t w_index; /* the write's log index */
};

static bool lagging_has_w(struct rkv_sim_world *w, void *arg)
{
    const struct quiesce_cast *cast = arg;

    return view_of(w, cast->lagging).last_index >= cast->w_index;
}

static bool other_applied_w(struct rkv_sim_world *w, void *arg)
{
    const struct quiesce_cast *cast = arg;

    return view_of(w, cast->other).applied_index >= cast->w_index;
}

static bool leader_quiesced(struct rkv_sim_world *w, void *arg)
{
    const struct quiesce_cast *cast = arg;

    return view_of(w, cast->leader).quiesced;
}

static bool lagging_applied_w(struct rkv_sim_world *w, void *arg)
{
    const struct quiesce_cast *cast = arg;

    return view_of(w, cast->lagging).applied_index >= cast->w_index;
}

static bool quiesce_run(struct rkv_sim_world *w, void *arg)
{
    struct sim_quiesce_outcome *out = arg;
    struct quiesce_cast cast;
    struct sim_replica_view lagging;

    if (!sim_script_run_until(w, settled, NULL, 5000)) {
        return step_missed(out->step, "first leader");
    }
    cast.leader = (unsigned)sim_script_leader(w, RKV_RANGE_ID_FIRST);
    cast.lagging = (cast.leader + 1) % 3;
    cast.other = (cast.leader + 2) % 3;
    cast.w_index = view_of(w, cast.leader).last_index + 1;

    /* 1. W reaches both followers, but no commit index reaches the lagging
     * one: not the one of W, nor the Quiesce that carries it. */
    sim_script_put(w, cast.leader, 1, "w");
    if (!sim_script_run_until(w, lagging_has_w, &cast, 200)) {
        return step_missed(out->step, "W appended on the lagging follower");
    }
    sim_script_block(w, cast.leader, cast.lagging, true);
    if (!sim_script_run_until(w, other_applied_w, &cast, 200)) {
        return step_missed(out->step, "W applied on the other follower");
    }
    if (!sim_script_run_until(w, leader_quiesced, &cast, 2000)) {
        return step_missed(out->step, "leader quiesced");
    }
    lagging = view_of(w, cast.lagging);
    out->lagged = lagging.commit_index < cast.w_index && !lagging.quiesced;

    /* 2. The link comes back; the range must settle by itself. */
    sim_script_block(w, cast.leader, cast.lagging, false);
    out->caught_up = sim_script_run_until(w, lagging_applied_w, &cast, 3000);
    return true;
}

int sim_scenario_quiesce_lagging_follower(const struct rkv_sim_options *options,
                                          struct sim_quiesce_outcome *out)
{
    memset(out, 0, sizeof(*out));
    if (options->n_nodes != 3) {
        return -EINVAL;
    }
    return scenario_world(options, quiesce_run, out, &out->reached);
}
