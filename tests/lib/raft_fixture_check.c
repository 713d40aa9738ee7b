/*
 * The safety checks of the Raft cluster fixture (listed in
 * tests/lib/raft_fixture.h), run after every operation that changes a
 * replica, and the queries tests make about the cluster. The checks keep
 * a history across the whole test: the leader of each term, the term of
 * every committed index, and each leader's log while it leads.
 */
#include "tests/lib/raft_fixture_internal.h"

#include <stdlib.h>

#include "common/common.h"

/* Short local names for the internals shared with raft_fixture.c. */
#define fixture_fail rkv_raft_fixture__fail
#define xrealloc rkv_raft_fixture__xrealloc
#define grow_zeroed rkv_raft_fixture__grow_zeroed

static void check_one_leader_per_term(struct rkv_raft_fixture *f, unsigned i)
{
    struct rkv_raft *r = f->nodes[i].raft;
    uint64_t term = rkv_raft_term(r);

    if (rkv_raft_role(r) != RKV_RAFT_LEADER) {
        return;
    }
    grow_zeroed((void **)&f->leader_of_term, &f->n_terms, term + 1,
                sizeof(uint64_t));
    if (f->leader_of_term[term] == 0) {
        f->leader_of_term[term] = i + 1;
    } else if (f->leader_of_term[term] != i + 1) {
        fixture_fail(f, "two leaders in term %llu: replicas %llu and %u",
                     (unsigned long long)term,
                     (unsigned long long)f->leader_of_term[term], i + 1);
    }
}

static void check_leader_log_grows(struct rkv_raft_fixture *f, unsigned i)
{
    struct node *n = &f->nodes[i];
    struct rkv_raft *r = n->raft;
    uint64_t first = rkv_raft_first_index(r);
    uint64_t last = rkv_raft_last_index(r);

    if (rkv_raft_role(r) != RKV_RAFT_LEADER) {
        n->lead_term = 0;
        return;
    }
    if (n->lead_term == rkv_raft_term(r)) {
        uint64_t prev_last = n->lead_first + n->n_lead_terms - 1;

        if (last < prev_last) {
            fixture_fail(f, "leader %u log shrank from %llu to %llu", i + 1,
                         (unsigned long long)prev_last,
                         (unsigned long long)last);
        }
        for (uint64_t k = RKV_MAX(first, n->lead_first); k <= prev_last;
             k++) {
            uint64_t term = 0;

            rkv_raft_term_at(r, k, &term);
            if (term != n->lead_terms[k - n->lead_first]) {
                fixture_fail(f, "leader %u rewrote index %llu", i + 1,
                             (unsigned long long)k);
            }
        }
    }
    n->lead_term = rkv_raft_term(r);
    n->lead_first = first;
    n->n_lead_terms = (size_t)(last - first + 1);
    n->lead_terms = xrealloc(n->lead_terms,
                             (n->n_lead_terms + 1) * sizeof(uint64_t));
    for (uint64_t k = first; k <= last; k++) {
        rkv_raft_term_at(r, k, &n->lead_terms[k - first]);
    }
}

static void check_committed_stable(struct rkv_raft_fixture *f, unsigned i)
{
    struct rkv_raft *r = f->nodes[i].raft;
    uint64_t commit = rkv_raft_commit_index(r);
    uint64_t first = rkv_raft_first_index(r);

    grow_zeroed((void **)&f->committed_terms, &f->n_committed, commit + 1,
                sizeof(uint64_t));
    for (uint64_t k = first; k <= commit; k++) {
        uint64_t term = 0;

        rkv_raft_term_at(r, k, &term);
        if (f->committed_terms[k] == 0) {
            f->committed_terms[k] = term;
        } else if (f->committed_terms[k] != term) {
            fixture_fail(f,
                         "committed index %llu changed: term %llu on "
                         "replica %u, %llu before",
                         (unsigned long long)k, (unsigned long long)term,
                         i + 1, (unsigned long long)f->committed_terms[k]);
        }
    }
}

/* The core's own bounds: compacted <= applied <= commit <= last. The
 * state machine is at the applied index unless a batch is pending or not
 * yet taken (after an injected allocation failure), because such a batch
 * may hold a snapshot install that the core counts as applied already. */
static void check_indexes(struct rkv_raft_fixture *f, unsigned i)
{
    struct rkv_raft *r = f->nodes[i].raft;
    uint64_t applied = rkv_raft_applied_index(r);

    if (rkv_raft_first_index(r) - 1 > applied ||
        applied > rkv_raft_commit_index(r) ||
        rkv_raft_commit_index(r) > rkv_raft_last_index(r) ||
        (f->nodes[i].n_pending == 0 && !rkv_raft_has_ready(r) &&
         applied != f->nodes[i].fsm.index)) {
        fixture_fail(f,
                     "replica %u indexes out of order: first=%llu "
                     "applied=%llu commit=%llu last=%llu fsm=%llu",
                     i + 1, (unsigned long long)rkv_raft_first_index(r),
                     (unsigned long long)applied,
                     (unsigned long long)rkv_raft_commit_index(r),
                     (unsigned long long)rkv_raft_last_index(r),
                     (unsigned long long)f->nodes[i].fsm.index);
    }
}

void rkv_raft_fixture_check(struct rkv_raft_fixture *f)
{
    for (unsigned i = 0; i < f->n_nodes; i++) {
        if (f->nodes[i].raft == NULL) {
            continue;
        }
        check_indexes(f, i);
        check_one_leader_per_term(f, i);
        check_leader_log_grows(f, i);
        check_committed_stable(f, i);
    }
}

/* ---- queries ------------------------------------------------------------ */

uint64_t rkv_raft_fixture_applied(const struct rkv_raft_fixture *f,
                                  unsigned i)
{
    return f->nodes[i].fsm.index;
}

uint64_t rkv_raft_fixture_n_applied_normal(const struct rkv_raft_fixture *f,
                                           unsigned i)
{
    return f->nodes[i].fsm.n_normal;
}

uint64_t rkv_raft_fixture_committed(const struct rkv_raft_fixture *f)
{
    return f->n_committed == 0 ? 0 : f->n_committed - 1;
}

unsigned rkv_raft_fixture_n_installs(const struct rkv_raft_fixture *f,
                                     unsigned i)
{
    return f->nodes[i].n_installs;
}

unsigned rkv_raft_fixture_n_chunks(const struct rkv_raft_fixture *f,
                                   unsigned i)
{
    return f->nodes[i].n_chunks;
}

unsigned rkv_raft_fixture_n_enomem(const struct rkv_raft_fixture *f)
{
    return f->n_enomem;
}

unsigned rkv_raft_fixture_n_leaders(const struct rkv_raft_fixture *f)
{
    unsigned n = 0;

    for (size_t term = 0; term < f->n_terms; term++) {
        if (f->leader_of_term[term] != 0) {
            n++;
        }
    }
    return n;
}

size_t rkv_raft_fixture_n_reads(const struct rkv_raft_fixture *f, unsigned i)
{
    return f->nodes[i].n_reads;
}

