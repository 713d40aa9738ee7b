#!/usr/bin/env bash
# Our side of the etcd comparison: the OURS_CMD of the peer harness
# (etcd-bench.sh), run after its etcd members have stopped. It starts a
# 3-node rangekv cluster, runs a put workload and a get workload with the
# harness's knobs, prints one line for each on stdout,
#
#   rangekv put: N ops/s p50=X ms p99=Y ms ... ops_per_cpu_s=N
#   rangekv get: N ops/s p50=X ms p99=Y ms ... ops_per_cpu_s=N
#
# and stops the cluster. Everything else goes to stderr.
#
# Usage:
#   OURS_CMD="bash scripts/bench-peer.sh" bash ../shared/peers/etcd-bench.sh
#   bash scripts/bench-peer.sh            (our side alone)
# Knobs (environment, the harness's defaults): CLIENTS=64 CONNS=8
#   KEY_SIZE=16 VAL_SIZE=256 KEYSPACE=100000 GET_KEYSPACE=10000
#   DURATION_S=20 WARMUP_S=2 RATE=0 CONSISTENCY=l, BENCH_TMPDIR for the
#   cluster's folder, RKV_BUILD_DIR for a build other than build/.
# Mapping to etcdload:
#   - CONNS gRPC connections spread over 3 members become ceil(CONNS / 3)
#     connections to each node.
#   - Keys are decimal numbers zero-padded to KEY_SIZE, values random
#     letters.
#   - The get workload first writes its GET_KEYSPACE keys, unmeasured.
#   - Server CPU comes from /proc/PID/stat of the three nodes over the whole
#     workload, load and warm-up included, as the harness measures etcd.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS=${CLIENTS:-64}
CONNS=${CONNS:-8}
KEY_SIZE=${KEY_SIZE:-16}
VAL_SIZE=${VAL_SIZE:-256}
KEYSPACE=${KEYSPACE:-100000}
GET_KEYSPACE=${GET_KEYSPACE:-10000}
DURATION_S=${DURATION_S:-20}
WARMUP_S=${WARMUP_S:-2}
RATE=${RATE:-0}
CONSISTENCY=${CONSISTENCY:-l}

log() { echo "[bench-peer] $*" >&2; }

build_dir=${RKV_BUILD_DIR:-$root/build}
rangekv="$build_dir/cmd/rangekv"
if [ ! -x "$rangekv" ]; then
    log "building rangekv into $build_dir"
    cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
    cmake --build "$build_dir" -j "$(nproc)" --target rangekv >&2
fi

dir=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/rangekv-peer.XXXXXX")
cleanup() {
    "$rangekv" cluster stop --dir "$dir/cluster" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(stat -f -c %T "$dir")" = "tmpfs" ]; then
    log "warning: $dir is on tmpfs, fsync costs nothing there"
fi
"$rangekv" cluster start -n 3 --dir "$dir/cluster" >"$dir/cluster.txt"
cat "$dir/cluster.txt" >&2
hosts=$(awk '$1 == "node" { for (i = 1; i < NF; i++) if ($i == "client") print $(i + 1) }' \
    "$dir/cluster.txt" | paste -sd, -)
pids=$(awk '$1 == "node" { for (i = 1; i < NF; i++) if ($i == "pid") print $(i + 1) }' \
    "$dir/cluster.txt" | paste -sd, -)
[ -n "$hosts" ] || { log "cluster start printed no client address"; exit 1; }
conns_per_node=$(((CONNS + 2) / 3))
log "rangekv, 3 nodes on 127.0.0.1, clients=$CLIENTS connections/node=$conns_per_node key=$KEY_SIZE B val=$VAL_SIZE B duration=${DURATION_S}s warmup=${WARMUP_S}s rate=$RATE"

# Runs one workload; prints its summary on stderr and its peer line on
# stdout.
run_workload() {
    local op=$1
    shift
    local output
    output=$("$rangekv" bench kv --host "$hosts" --concurrency "$CLIENTS" \
        --connections "$conns_per_node" --key-size "$KEY_SIZE" \
        --value-size "$VAL_SIZE" --duration "${DURATION_S}s" \
        --warmup "${WARMUP_S}s" --rate "$RATE" --server-pids "$pids" \
        --label rangekv --no-progress --json "$dir/$op.json" "$@") || {
        echo "$output" >&2
        log "the $op workload failed"
        return 1
    }
    echo "$output" >&2
    echo "$output" | grep "^rangekv $op: "
}

run_workload put --read-percent 0 --keyspace "$KEYSPACE"
run_workload get --read-percent 100 --keyspace "$GET_KEYSPACE" --preload \
    --consistency "$CONSISTENCY"
