/*
 * rkv-sim: runs deterministic simulations of a rangekv cluster: the
 * production node code on a simulated clock, network and disk (sim.h).
 * rkv-sim-bugs is the same program over the node and Raft code built with
 * RKV_NODE_BUGS and RKV_RAFT_BUGS, so that --bug can switch a known bug on;
 * rkv-sim rejects --bug.
 *
 *   rkv-sim --seed N --nodes 3 -v   replays seed N: prints its fault
 *                                   schedule, and the history of a key
 *                                   that fails its check
 *   rkv-sim --seeds 500             runs seeds 1..500 on 3 and 5 nodes
 *   rkv-sim --soak 600              runs seeds for 600 s of wall time
 *
 * Each failing seed prints the command that replays it. The exit status is
 * 0 when every run passed, 1 when one failed, 2 on a usage error.
 */
#define RKV_LOG_SUBSYS "sim"
#include "tests/sim/sim.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

struct runner {
    struct rkv_sim_options base; /* seed and nodes set per run */
    uint64_t n_seeds;            /* 0: one seed */
    uint64_t soak_s;             /* 0: no soak */
    bool both_sizes;             /* no --nodes: alternate 3 and 5 */
    uint64_t n_runs;
    uint64_t n_failed;
};

static const char *bug_name(enum rkv_sim_bug bug)
{
    switch (bug) {
    case RKV_SIM_BUG_NONE:
        return "none";
    case RKV_SIM_BUG_STALE_READ:
        return "stale-read";
    case RKV_SIM_BUG_EARLY_ACK:
        return "early-ack";
    case RKV_SIM_BUG_DROP_ON_TRUNCATE:
        return "drop-on-truncate";
    case RKV_SIM_BUG_ACK_BEFORE_PERSIST:
        return "ack-before-persist";
    case RKV_SIM_BUG_READ_BEFORE_NOOP:
        return "read-before-noop";
    }
    return "none";
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rkv-sim [options]\n"
            "  --seed N         first (or only) seed; default 1\n"
            "  --nodes N        nodes per cluster, 1..%d; default 3 for one\n"
            "                   seed, 3 and 5 alternately for many\n"
            "  --seeds N        run N consecutive seeds\n"
            "  --soak SECONDS   run consecutive seeds for SECONDS of wall "
            "time\n"
            "  --duration MS    simulated ms of load with faults; default "
            "2000\n"
            "  --clients N      concurrent clients, up to %d; default 6\n"
            "  --keys N         keys, up to %d; default 6\n"
            "  --split-bytes N  range split threshold in bytes; default 48\n"
            "  --compact        compact Raft logs; lagging replicas catch up "
            "by snapshot\n"
            "  --bug NAME       switch on a known bug (rkv-sim-bugs only):\n"
            "                   stale-read, early-ack, drop-on-truncate,\n"
            "                   ack-before-persist, read-before-noop\n"
            "  -v               print the fault schedule and failing "
            "histories\n",
            RKV_SIM_NODES_MAX, RKV_SIM_CLIENTS_MAX, RKV_SIM_KEYS_MAX);
}

static bool parse_u64(const char *text, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(text, &end, 10);
    return errno == 0 && end != text && *end == '\0';
}

static int parse_bug(const char *text, enum rkv_sim_bug *bug)
{
    if (strcmp(text, "stale-read") == 0) {
        *bug = RKV_SIM_BUG_STALE_READ;
    } else if (strcmp(text, "early-ack") == 0) {
        *bug = RKV_SIM_BUG_EARLY_ACK;
    } else if (strcmp(text, "ack-before-persist") == 0) {
        *bug = RKV_SIM_BUG_ACK_BEFORE_PERSIST;
    } else if (strcmp(text, "read-before-noop") == 0) {
        *bug = RKV_SIM_BUG_READ_BEFORE_NOOP;
    } else if (strcmp(text, "drop-on-truncate") == 0) {
        *bug = RKV_SIM_BUG_DROP_ON_TRUNCATE;
    } else if (strcmp(text, "none") == 0) {
        *bug = RKV_SIM_BUG_NONE;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* Parses the options with a value; returns 0, or -EINVAL. */
static int parse_value(struct runner *run, const char *name, const char *text)
{
    uint64_t v;

    if (strcmp(name, "--bug") == 0) {
        return parse_bug(text, &run->base.bug);
    }
    if (!parse_u64(text, &v)) {
        return -EINVAL;
    }
    if (strcmp(name, "--seed") == 0) {
        run->base.seed = v;
    } else if (strcmp(name, "--nodes") == 0 && v >= 1 &&
               v <= RKV_SIM_NODES_MAX) {
        run->base.n_nodes = (unsigned)v;
        run->both_sizes = false;
    } else if (strcmp(name, "--seeds") == 0) {
        run->n_seeds = v;
    } else if (strcmp(name, "--soak") == 0) {
        run->soak_s = v;
    } else if (strcmp(name, "--duration") == 0) {
        run->base.duration_ms = v;
    } else if (strcmp(name, "--clients") == 0 && v <= RKV_SIM_CLIENTS_MAX) {
        run->base.n_clients = (unsigned)v;
    } else if (strcmp(name, "--keys") == 0 && v <= RKV_SIM_KEYS_MAX) {
        run->base.n_keys = (unsigned)v;
    } else if (strcmp(name, "--split-bytes") == 0) {
        run->base.split_bytes = v;
    } else {
        return -EINVAL;
    }
    return 0;
}

static int parse_args(struct runner *run, int argc, char **argv)
{
    rkv_sim_options_init(&run->base, 1, 3);
    run->both_sizes = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            run->base.verbose = true;
            continue;
        }
        if (strcmp(argv[i], "--compact") == 0) {
            run->base.compact = true;
            continue;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "rkv-sim: option %s is missing its value\n",
                    argv[i]);
            usage(stderr);
            return -EINVAL;
        }
        if (parse_value(run, argv[i], argv[i + 1]) != 0) {
            fprintf(stderr,
                    "rkv-sim: invalid option or value: %s %s (see the "
                    "limits below)\n",
                    argv[i], argv[i + 1]);
            usage(stderr);
            return -EINVAL;
        }
        i++;
    }
    if (run->n_seeds == 0 && run->soak_s == 0) {
        run->both_sizes = false;
    }
    return 0;
}

/* Prints the command that replays o: every option that differs from the
 * defaults is spelled out. */
static void print_replay(const struct rkv_sim_options *o)
{
    struct rkv_sim_options d;

    rkv_sim_options_init(&d, o->seed, o->n_nodes);
    printf("replay: %s --seed %" PRIu64 " --nodes %u",
           o->bug != RKV_SIM_BUG_NONE ? "rkv-sim-bugs" : "rkv-sim", o->seed,
           o->n_nodes);
    if (o->duration_ms != 0 && o->duration_ms != d.duration_ms) {
        printf(" --duration %" PRIu64, o->duration_ms);
    }
    if (o->n_clients != 0 && o->n_clients != d.n_clients) {
        printf(" --clients %u", o->n_clients);
    }
    if (o->n_keys != 0 && o->n_keys != d.n_keys) {
        printf(" --keys %u", o->n_keys);
    }
    if (o->split_bytes != 0 && o->split_bytes != d.split_bytes) {
        printf(" --split-bytes %" PRIu64, o->split_bytes);
    }
    if (o->compact) {
        printf(" --compact");
    }
    if (o->bug != RKV_SIM_BUG_NONE) {
        printf(" --bug %s", bug_name(o->bug));
    }
    printf(" -v\n");
}

/* Runs one seed; returns 0 when it passed, 1 when it failed, or a
 * negative code when the harness failed. */
static int run_one(struct runner *run, uint64_t seed, unsigned n_nodes)
{
    struct rkv_sim_options o = run->base;
    struct rkv_sim_report report;
    int rv;

    o.seed = seed;
    o.n_nodes = n_nodes;
    rv = rkv_sim_run(&o, &report);
    run->n_runs++;
    if (rv != 0) {
        printf("seed=%" PRIu64 " nodes=%u harness error: %s\n", seed, n_nodes,
               report.detail);
        print_replay(&o);
        run->n_failed++;
        return rv;
    }
    if (report.verdict != RKV_SIM_PASS || o.verbose) {
        printf("seed=%" PRIu64 " nodes=%u verdict=%s ops=%" PRIu64
               " unknown=%" PRIu64 " ranges=%" PRIu64 " crashes=%" PRIu64
               " disk_errors=%" PRIu64 " disk_full=%" PRIu64
               " full_rejects=%" PRIu64 " partitions=%" PRIu64
               " transfers=%" PRIu64 " conf_changes=%" PRIu64
               " compactions=%" PRIu64 " snapshots=%" PRIu64
               " messages=%" PRIu64 " end_ms=%" PRIu64 " history=%016" PRIx64
               "%s%s\n",
               seed, n_nodes, rkv_sim_verdict_name(report.verdict),
               report.n_ops, report.n_unknown, report.n_ranges,
               report.n_crashes, report.n_disk_errors, report.n_disk_full,
               report.n_full_rejects, report.n_partitions, report.n_transfers,
               report.n_conf_changes, report.n_compactions, report.n_snapshots,
               report.n_messages, report.end_ms, report.history_hash,
               report.detail[0] != '\0' ? ": " : "", report.detail);
    }
    if (report.verdict != RKV_SIM_PASS) {
        print_replay(&o);
        run->n_failed++;
        fflush(stdout);
        return 1;
    }
    return 0;
}

static uint64_t wall_s(void)
{
    return rkv_monotonic_ms() / 1000;
}

static int remove_entry_cb(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int run_all(struct runner *run)
{
    uint64_t start_s = wall_s();
    uint64_t seed = run->base.seed;
    uint64_t n = 0;

    for (;;) {
        unsigned n_nodes = run->base.n_nodes;
        int rv;

        if (run->both_sizes) {
            n_nodes = n % 2 == 0 ? 3 : 5;
        }
        if (run->soak_s != 0 && wall_s() - start_s >= run->soak_s) {
            break;
        }
        if (run->soak_s == 0 && n >= RKV_MAX(run->n_seeds, 1)) {
            break;
        }
        rv = run_one(run, seed, n_nodes);
        if (rv < 0) {
            return rv;
        }
        n++;
        /* Both sizes run on the same seed before moving on. */
        if (!run->both_sizes || n % 2 == 0) {
            seed++;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct runner run;
    char dir[4096];
    const char *base;
    int rv;

    memset(&run, 0, sizeof(run));
    if (parse_args(&run, argc, argv) != 0) {
        return 2;
    }
    /* Injected faults make the modules log expected warnings (rejected
     * stale splits); -v shows them, and RKV_LOG_LEVEL, when set, chooses
     * the level instead. */
    if (getenv("RKV_LOG_LEVEL") == NULL) {
        rkv_log_set_level(run.base.verbose ? RKV_WARN : RKV_ERROR);
    }
    base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/rkv-sim-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "rkv-sim: creating a folder in %s failed: %s\n", dir,
                strerror(errno));
        return 1;
    }
    run.base.dir = dir;
    rv = run_all(&run);
    nftw(dir, remove_entry_cb, 8, FTW_DEPTH | FTW_PHYS);
    printf("%" PRIu64 " runs, %" PRIu64 " failed\n", run.n_runs, run.n_failed);
    return rv == 0 && run.n_failed == 0 ? 0 : 1;
}
