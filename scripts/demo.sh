#!/usr/bin/env bash
# The main job. It installs what is missing, builds rangekv into build/ and
# starts a 3-node local cluster with a low split threshold. It then runs a
# zipfian kv workload and a short YCSB-A, prints the bench summaries and the
# range table (each range's leader and size), and stops the cluster.
#
# Usage: bash scripts/demo.sh [--short] [--build-dir DIR]
#   --short          a few seconds per workload (the ctest "demo_short")
#   --build-dir DIR  use the rangekv already built in DIR; skip deps and build
# Environment:
#   DEMO_SECONDS     seconds of the kv workload (default 30; 4 with --short)
#   TMPDIR           where the cluster's temporary folder is made
#
# The run fails (exit 1) if the cluster ends with fewer than 10 ranges.
# Ctrl-C or TERM at any point stops the cluster and removes its folder; no
# process is left behind.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
short=0
build_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
    --short) short=1 ;;
    --build-dir)
        [ $# -ge 2 ] || { echo "demo: --build-dir needs a folder" >&2; exit 2; }
        build_dir=$2
        shift
        ;;
    -h | --help)
        sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "demo: unknown argument '$1'; see --help" >&2
        exit 2
        ;;
    esac
    shift
done

# Sizes: the preload writes keyspace * (16 + value) bytes. A range contains
# between half the threshold and the threshold once it has split, so the
# cluster ends with 1 to 2 times data / split_bytes ranges: 32 or more in
# both modes.
if [ "$short" -eq 1 ]; then
    seconds=${DEMO_SECONDS:-4}
    ycsb_seconds=2
    keyspace=4000
    split_bytes=65536
else
    seconds=${DEMO_SECONDS:-30}
    ycsb_seconds=10
    keyspace=20000
    split_bytes=262144
fi
value_size=512
min_ranges=10

log() { echo "== demo: $*"; }

if [ -z "$build_dir" ]; then
    log "installing missing packages"
    bash "$root/scripts/deps.sh"
    log "building into build/"
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >/dev/null
    cmake --build "$root/build" -j "$(nproc)" --target rangekv
    build_dir="$root/build"
fi
rangekv="$build_dir/cmd/rangekv"
[ -x "$rangekv" ] || { echo "demo: $rangekv not found; build first" >&2; exit 1; }

# Returns whether process pid runs. An exited node may stay a zombie until
# init reaps it, and kill -0 succeeds on zombies, so read its state.
is_running() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) ||
        return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/rangekv-demo.XXXXXX")
pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    "$rangekv" cluster stop --dir "$dir/cluster" >/dev/null 2>&1 || true
    # cluster stop ends every node. A node still alive is a bug, so report
    # it and end it by its process id.
    for pid in "${pids[@]:-}"; do
        if [ -n "$pid" ] && is_running "$pid"; then
            echo "demo: node pid $pid survived cluster stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            status=1
        fi
    done
    rm -rf "$dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting a 3-node cluster in $dir/cluster (split threshold $split_bytes bytes)"
"$rangekv" cluster start -n 3 --dir "$dir/cluster" --split-bytes "$split_bytes" \
    | tee "$dir/cluster.txt"
hosts=$(awk '$1 == "node" { for (i = 1; i < NF; i++) if ($i == "client") print $(i + 1) }' \
    "$dir/cluster.txt" | paste -sd, -)
mapfile -t pids < <(awk '$1 == "node" { for (i = 1; i < NF; i++) if ($i == "pid") print $(i + 1) }' \
    "$dir/cluster.txt")
[ -n "$hosts" ] || { echo "demo: cluster start printed no client address" >&2; exit 1; }
first_host=${hosts%%,*}

log "kv workload: ${seconds}s, 50% reads, zipfian keys, $keyspace keys of $value_size-byte values preloaded"
"$rangekv" bench kv --host "$hosts" --duration "${seconds}s" --read-percent 50 \
    --distribution zipfian --keyspace "$keyspace" --value-size "$value_size" \
    --preload --concurrency 32 --json "$dir/kv.json"

log "YCSB-A: ${ycsb_seconds}s, 50% reads, 50% updates, zipfian"
"$rangekv" bench ycsb --workload a --host "$hosts" --duration "${ycsb_seconds}s" \
    --record-count 1000 --value-size "$value_size" --concurrency 32 \
    --json "$dir/ycsb.json"

log "range table"
"$rangekv" ranges --host "$first_host"

n_ranges=$(grep -o '"ranges_end":[0-9]*' "$dir/ycsb.json" | cut -d: -f2)
log "the cluster has ${n_ranges:-?} ranges"
if [ -z "$n_ranges" ] || [ "$n_ranges" -lt "$min_ranges" ]; then
    echo "demo: expected at least $min_ranges ranges, found ${n_ranges:-none}" >&2
    exit 1
fi

log "stopping the cluster"
"$rangekv" cluster stop --dir "$dir/cluster"
log "done"
