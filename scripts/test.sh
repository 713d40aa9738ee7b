#!/usr/bin/env bash
# Builds rangekv twice and runs the whole test suite on each build:
#   build/       -O2 with assertions, warnings as errors
#   build-asan/  the same with AddressSanitizer and UndefinedBehaviorSanitizer
# Usage: scripts/test.sh [ctest -R regex]
# Exits non-zero on any build error or failing test.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/deps.sh

jobs=$(nproc)
filter=()
if [ $# -gt 0 ]; then
    filter=(-R "$1")
fi

run_suite() {
    local dir=$1
    shift
    echo "== configure and build $dir ($*)"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== test $dir"
    (cd "$dir" && ctest --output-on-failure "${filter[@]}")
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_suite build -DRKV_SANITIZE=OFF
run_suite build-asan -DRKV_SANITIZE=ON
echo "== all tests passed in build/ and build-asan/"
