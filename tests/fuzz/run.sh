#!/usr/bin/env bash
# tests/fuzz/run.sh — builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with
# clang, ASan and UBSan, and runs each for a bounded time.
#
#   tests/fuzz/run.sh [--seconds N | --budget N] [--seed N] [--build-dir DIR]
#                     [--jobs N] [--no-build] [TARGET...]
#   tests/fuzz/run.sh --repro TARGET FILE...   run saved inputs once (reproduce a crash)
#
# --seconds N runs each target N s (default 20); --budget N splits N
# target-seconds evenly among the targets run (at least 10 s each), so
# the pass takes about N / JOBS s however many targets there are.
# Each run starts from the seed corpus tests/fuzz/corpus/<target>/ (or
# corpus/<target without fuzz_>/), COPIED to a temporary directory so new inputs
# never land in the repository; a dictionary tests/fuzz/<target>.dict is used
# when present. Crashes, leaks and timeouts are saved under DIR/artifacts/<target>/
# and the exact command to reproduce them is printed. The random seed is printed
# and can be given back with --seed (or FUZZ_SEED). Exit: 0 all clean,
# 1 a crash or build failure, 77 no fuzz targets exist.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=20
BUDGET=""
MIN_SECONDS=10
SEED="${FUZZ_SEED:-}"
BUILD_DIR="$ROOT/build-fuzz"
JOBS=$(nproc 2>/dev/null || echo 2)
BUILD=1
REPRO=0
TARGETS=()

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) SECONDS_EACH="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --seed) SEED="$2"; shift ;;
    --build-dir) BUILD_DIR="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --repro) REPRO=1 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz/run.sh: unknown flag '$1'" >&2; exit 2 ;;
    *) TARGETS+=("$1") ;;
    esac
    shift
done
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac

all_targets() {
    local f
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        [ -e "$f" ] && basename "$f" .c
    done
}

build() { # targets...
    command -v clang >/dev/null || { echo "fuzz: clang not found (apt-get install clang)" >&2; return 1; }
    # Every library gets coverage instrumentation (fuzzer-no-link), so the fuzzer
    # sees inside the parsers it drives; only the fuzz_* executables link libFuzzer.
    # Debug keeps assertions on; -O1 keeps the executions per second useful.
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
        -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" \
        -DFLAMEDB_SANITIZE=ON -DFLAMEDB_FUZZ=ON -DFLAMEDB_TESTS=ON >/dev/null || return 1
    cmake --build "$BUILD_DIR" -j "$JOBS" --target "$@"
}

seed_dir() { # target -> seed corpus directory or empty
    local t="$1" d
    for d in "$ROOT/tests/fuzz/corpus/$t" "$ROOT/tests/fuzz/corpus/${t#fuzz_}"; do
        [ -d "$d" ] && { echo "$d"; return; }
    done
}

dict_file() { # target -> dictionary or empty
    local t="$1" f
    for f in "$ROOT/tests/fuzz/$t.dict" "$ROOT/tests/fuzz/${t#fuzz_}.dict"; do
        [ -f "$f" ] && { echo "$f"; return; }
    done
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

fuzz_one() { # target -> 0 clean, 1 finding
    local t="$1" bin="$BUILD_DIR/fuzz/$1" work art log seeds dict rc
    work=$(mktemp -d "${TMPDIR:-/tmp}/flamedb-fuzz-$t.XXXXXX")
    art="$BUILD_DIR/artifacts/$t"
    log="$BUILD_DIR/logs/$t.log"
    mkdir -p "$art" "$(dirname "$log")"
    seeds=$(seed_dir "$t")
    [ -n "$seeds" ] && cp -R "$seeds"/. "$work"/
    local n_seeds
    n_seeds=$(find "$work" -type f | wc -l)
    dict=$(dict_file "$t")
    local cmd=("$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048
        -malloc_limit_mb=2048 -seed="$SEED" -artifact_prefix="$art/" -print_final_stats=1)
    [ -n "$dict" ] && cmd+=(-dict="$dict")
    # the outer timeout only guards against a hung fuzzer; libFuzzer stops itself
    timeout --kill-after=10 $((SECONDS_EACH + 120)) "${cmd[@]}" "$work" >"$log" 2>&1
    rc=$?
    local execs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc = 0 ]; then
        printf '  %-24s ok     %ss, %s seeds, %s execs, cov %s\n' "$t" "$SECONDS_EACH" \
            "$n_seeds" "${execs:-?}" "${cov:-?}"
        rm -rf "$work"
        return 0
    fi
    printf '  %-24s FAIL   exit %s after %s execs (log %s)\n' "$t" "$rc" "${execs:-?}" "$log"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|deadly signal' "$log" | head -20 | sed 's/^/    /'
    tail -40 "$log" | sed 's/^/    | /'
    local a
    for a in "$art"/*; do
        [ -f "$a" ] && echo "    reproduce: tests/fuzz/run.sh --build-dir $BUILD_DIR --repro $t $a"
    done
    echo "    (seed $SEED; working corpus kept in $work)"
    return 1
}

[ ${#TARGETS[@]} -eq 0 ] && mapfile -t TARGETS < <(all_targets)
if [ "$REPRO" = 1 ]; then
    [ ${#TARGETS[@]} -ge 2 ] || { echo "usage: --repro TARGET FILE..." >&2; exit 2; }
    t="${TARGETS[0]}"
    [ "$BUILD" = 1 ] && { build "$t" || exit 1; }
    exec "$BUILD_DIR/fuzz/$t" -runs=1 "${TARGETS[@]:1}"
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
    echo "fuzz: no targets: tests/fuzz/fuzz_*.c do not exist yet"
    exit 77
fi
if [ -n "$BUDGET" ]; then
    SECONDS_EACH=$((BUDGET / ${#TARGETS[@]}))
    [ "$SECONDS_EACH" -ge "$MIN_SECONDS" ] || SECONDS_EACH=$MIN_SECONDS
fi
[ -n "$SEED" ] || SEED=$(( ($(date +%s) * 7919 + $$) % 2147483647 + 1 ))

if [ "$BUILD" = 1 ]; then
    build "${TARGETS[@]}" || { echo "fuzz: build failed" >&2; exit 1; }
fi
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_EACH}s each, seed $SEED (repeat with --seed $SEED)"
status=0
failed=()
# up to JOBS targets at once (each fuzzer is one process on one core); each
# target's lines are printed in the targets' order once it is done
outdir=$(mktemp -d "${TMPDIR:-/tmp}/flamedb-fuzz-out.XXXXXX")
declare -A pid_of
for t in "${TARGETS[@]}"; do
    if [ ! -x "$BUILD_DIR/fuzz/$t" ]; then
        echo "  $t: binary missing in $BUILD_DIR/fuzz" >&2
        failed+=("$t")
        continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-1}" ]; do
        wait -n || true
    done
    fuzz_one "$t" >"$outdir/$t.out" 2>&1 &
    pid_of[$t]=$!
done
for t in "${TARGETS[@]}"; do
    [ -n "${pid_of[$t]:-}" ] || continue
    wait "${pid_of[$t]}" || failed+=("$t")
    cat "$outdir/$t.out"
done
rm -rf "$outdir"
if [ ${#failed[@]} -gt 0 ]; then
    status=1
    echo "fuzz result: ${#TARGETS[@]} targets x ${SECONDS_EACH}s, findings in: ${failed[*]} (seed $SEED)"
else
    echo "fuzz result: ${#TARGETS[@]} targets x ${SECONDS_EACH}s, no findings (seed $SEED)"
fi
exit $status
