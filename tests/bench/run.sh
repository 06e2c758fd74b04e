#!/usr/bin/env bash
# tests/bench/run.sh — builds the Release node and flamedb-bench, then runs the
# benchmarks (tests/bench/run.py) and prints their figures. Figures are ratios
# measured in this run, never asserted; see docs/benchmarks.md.
#
#   tests/bench/run.sh [--build-dir DIR] [--jobs N] [--soak] [run.py flags...]
#   e.g. tests/bench/run.sh --only query      (ingest, ingest-real, http, query, fleet, rss, cluster, load, move)
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD="$ROOT/build"
JOBS=$(nproc 2>/dev/null || echo 2)
PASS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) BUILD="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; python3 "$ROOT/tests/bench/run.py" --help; exit 0 ;;
    *) PASS+=("$1") ;;
    esac
    shift
done
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
command -v go >/dev/null || echo "bench: 'go' not found: the go tool pprof baseline will be skipped (apt-get install golang-go)"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFLAMEDB_SANITIZE=OFF -DFLAMEDB_FUZZ=OFF >/dev/null &&
    cmake --build "$BUILD" -j "$JOBS" --target flamedb flamedb-bench || { echo "bench: build failed" >&2; exit 1; }
exec python3 "$ROOT/tests/bench/run.py" --build-dir "$BUILD" "${PASS[@]}"
