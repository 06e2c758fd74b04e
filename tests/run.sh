#!/usr/bin/env bash
# tests/run.sh — the one test command: installs missing Debian packages, builds,
# and runs every test stage. Exits non-zero when any stage fails and ends with a
# summary of each stage and its duration. docs/testing.md describes each stage.
#
#   tests/run.sh            deps, style, release (+ctest), style-build, asan (+ctest),
#                           integration, fuzz
#   tests/run.sh --quick    deps, style, release, style-build, integration (no ASan, no fuzz)
#   tests/run.sh --bench    ... and the benchmarks (tests/bench/run.sh)
#   tests/run.sh --soak     long runs: fuzz 5 min per target, 10 min RSS bench,
#                           FLAMEDB_SOAK=1 for the integration suite
#   tests/run.sh --fuzz-long  only deps and the fuzzers, 30 min per target
#                           (--fuzz-seconds still wins)
# Other flags: --stages a,b,c (run only these), --no-install, --jobs N,
# --fuzz-seconds N (per target), --fuzz-budget N (the default pass: N target-seconds
# split evenly among the targets, default 160), --build-prefix P (build dirs P,
# P-asan, P-fuzz; default build; a relative P lies in the checkout),
# --no-werror (let compiler warnings pass the release build; by default they fail it).
# FLAMEDB_TEST_JOBS (default 4): integration test files run at once (1: one after another).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

QUICK=0 BENCH=0 SOAK=0 FUZZ_LONG=0 INSTALL=1 STAGES="" PREFIX=build
JOBS=$(nproc 2>/dev/null || echo 2)
# The default fuzz pass: FUZZ_BUDGET target-seconds split evenly among the
# targets (tests/fuzz/run.sh --budget), so a new target does not lengthen the
# stage; --fuzz-seconds N (and --soak, --fuzz-long) give each target N s instead.
FUZZ_SECONDS=""
FUZZ_BUDGET=160
# The release stage builds with FLAMEDB_WERROR (-Werror) so warnings cannot come
# back. Release (-O3) is where gcc's -Wmaybe-uninitialized and
# -Wformat-truncation find most, so that is the build that must be clean.
WERROR=ON

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --bench) BENCH=1 ;;
    --soak) SOAK=1 ;;
    --fuzz-long) FUZZ_LONG=1 ;;
    --no-install) INSTALL=0 ;;
    --stages) STAGES="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    --fuzz-seconds) FUZZ_SECONDS="$2"; shift ;;
    --fuzz-budget) FUZZ_BUDGET="$2"; shift ;;
    --build-prefix) PREFIX="$2"; shift ;;
    --werror) WERROR=ON ;;
    --no-werror) WERROR=OFF ;;
    -h | --help) usage; exit 0 ;;
    *) echo "tests/run.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$SOAK" = 1 ] && [ -z "$FUZZ_SECONDS" ] && FUZZ_SECONDS=300
if [ "$FUZZ_LONG" = 1 ]; then
    [ -z "$FUZZ_SECONDS" ] && FUZZ_SECONDS=1800
    [ -z "$STAGES" ] && STAGES=deps,fuzz
fi

case "$PREFIX" in /*) ;; *) PREFIX="$ROOT/$PREFIX" ;; esac # relative: to the checkout
BUILD="$PREFIX"
BUILD_ASAN="$PREFIX-asan"
BUILD_FUZZ="$PREFIX-fuzz"
export FLAMEDB_TESTDATA="${FLAMEDB_TESTDATA:-$(cd "$ROOT/.." && pwd)/shared/testdata}"

# ---- stage bookkeeping -------------------------------------------------------
SUMMARY=()
FAILED=0

stage_wanted() { # name -> 0 if the stage should run
    if [ -n "$STAGES" ]; then
        case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac
    fi
    case "$1" in
    asan | fuzz) [ "$QUICK" = 0 ] ;;
    bench) [ "$BENCH" = 1 ] ;;
    *) return 0 ;;
    esac
}

# run_stage NAME FUNCTION: runs FUNCTION, records PASS/FAIL/SKIP and duration.
# A function returns 0 (pass), 77 (skip; reason in STAGE_NOTE) or other (fail).
run_stage() {
    local name="$1" fn="$2" start rc status
    if ! stage_wanted "$name"; then
        SUMMARY+=("$(printf '%-12s %-5s %7s  %s' "$name" SKIP "-" "not selected")")
        return
    fi
    echo
    echo "=== stage $name ($(date -u +%H:%M:%S) UTC) ==="
    STAGE_NOTE=""
    start=$(date +%s)
    "$fn"
    rc=$?
    case $rc in
    0) status=PASS ;;
    77) status=SKIP ;;
    *) status=FAIL; FAILED=1 ;;
    esac
    local dur=$(($(date +%s) - start))
    echo "=== stage $name: $status in ${dur}s ${STAGE_NOTE:+($STAGE_NOTE)}"
    SUMMARY+=("$(printf '%-12s %-5s %6ss  %s' "$name" "$status" "$dur" "$STAGE_NOTE")")
}

# ---- deps ---------------------------------------------------------------------
wanted_packages() {
    local list="$ROOT/deploy/packages.txt"
    if [ -f "$list" ]; then
        sed -e 's/#.*//' "$list" | tr -s ' \t' '\n\n' | sed '/^$/d'
    else
        echo "build-essential cmake pkg-config libuv1-dev libnanomsg-dev librocksdb-dev" \
            "libzstd-dev libprotobuf-c-dev protobuf-c-compiler libhttp-parser-dev" \
            "libdeflate-dev libxxhash-dev zlib1g-dev python3 clang" | tr ' ' '\n'
    fi
    # Stage-only extras: libFuzzer's runtime (only a Recommends of clang),
    # clang-format for the format check (Debian 12's, version 14: another
    # version formats differently) and Go for the `go tool pprof` baseline of
    # the benchmarks.
    stage_wanted fuzz && echo libclang-rt-dev
    stage_wanted style && echo clang-format
    stage_wanted bench && echo golang-go
    return 0
}

stage_deps() {
    if ! command -v dpkg-query >/dev/null; then
        STAGE_NOTE="not a Debian system: install the packages of deploy/packages.txt yourself"
        return 77
    fi
    local missing=() p
    for p in $(wanted_packages); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        STAGE_NOTE="all packages present, apt skipped"
        return 0
    fi
    echo "missing packages: ${missing[*]}"
    if [ "$INSTALL" = 0 ]; then
        STAGE_NOTE="missing ${missing[*]} (--no-install)"
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { STAGE_NOTE="need root or sudo to install ${missing[*]}"; return 1; }
        sudo=sudo
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || return 1
    STAGE_NOTE="installed ${missing[*]}"
}

# ---- style ---------------------------------------------------------------------------
# Every tests/style/check_*.sh is a check (docs/code-style.md); a new one runs as
# soon as it exists. One whose header has the line "# style-check: after-build"
# needs the release build and runs in style-build with the build dir as its
# argument; the others run in style, before anything is built.
style_checks() { # after-build 0|1 -> the matching check scripts
    local f
    for f in "$ROOT"/tests/style/check_*.sh; do
        [ -f "$f" ] || continue
        if grep -q '^# style-check: after-build' "$f"; then
            [ "$1" = 1 ] && echo "$f"
        else
            [ "$1" = 0 ] && echo "$f"
        fi
    done
    return 0
}

run_style_checks() { # after-build 0|1, args for each check...
    local which="$1" f out rc failed=() n=0; shift
    for f in $(style_checks "$which"); do
        n=$((n + 1))
        echo "--- ${f#"$ROOT"/} $*"
        out=$(bash "$f" "$@" 2>&1)
        rc=$?
        printf '%s\n' "$out"
        [ $rc != 0 ] && failed+=("$(printf '%s\n' "$out" | tail -1)")
    done
    if [ $n = 0 ]; then
        STAGE_NOTE="no tests/style/check_*.sh"
        return 77
    fi
    if [ ${#failed[@]} -gt 0 ]; then
        STAGE_NOTE="$(printf '%s; ' "${failed[@]}")"
        STAGE_NOTE="${STAGE_NOTE%; }"
        return 1
    fi
    STAGE_NOTE="$n checks"
}

stage_style() { run_style_checks 0; }

stage_style_build() {
    case "$RELEASE_BUILD" in
    ok) run_style_checks 1 "$BUILD" ;;
    failed) STAGE_NOTE="release build failed"; return 1 ;;
    *) STAGE_NOTE="needs the release stage (--stages release,style-build)"; return 77 ;;
    esac
}

# ---- builds and unit tests ------------------------------------------------------
configure_build() { # dir, cmake args... ; target list in BUILD_TARGETS (empty = all)
    local dir="$1"; shift
    cmake -S "$ROOT" -B "$dir" "$@" || return 1
    if [ -n "${BUILD_TARGETS:-}" ]; then
        # shellcheck disable=SC2086
        cmake --build "$dir" -j "$JOBS" --target $BUILD_TARGETS
    else
        cmake --build "$dir" -j "$JOBS"
    fi
}

run_ctest() { # dir
    local n log="$1/ctest-run.log"
    n=$(ctest --test-dir "$1" -N 2>/dev/null | sed -n 's/^Total Tests: //p')
    if ! ctest --test-dir "$1" --output-on-failure --no-tests=error -j "$JOBS" --timeout 300 2>&1 |
        tee "$log"; then
        STAGE_NOTE="failed: $(sed -n '/tests FAILED:/,$p' "$log" | sed -n 's/.* - \([^ ]*\) .*/\1/p' |
            tr '\n' ' ')"
        return 1
    fi
    STAGE_NOTE="${n:-?} unit tests"
}

# Compiler diagnostics ("file:line:col: warning: ... [-Wname]") in a build log.
count_warnings() { grep -c -E '(warning|error): .*\[-W' "$1"; }
first_warning() { grep -m1 -o -E '^[^ :]+:[0-9]+:[0-9]+: (warning|error): .*\[-W[^]]*\]' "$1"; }

RELEASE_BUILD=untried # untried | ok | failed: later stages must not use a stale binary
stage_release() {
    RELEASE_BUILD=failed
    mkdir -p "$BUILD" || return 1
    local log="$BUILD/release-build.log" nwarn
    BUILD_TARGETS="" configure_build "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFLAMEDB_TESTS=ON \
        -DFLAMEDB_SANITIZE=OFF -DFLAMEDB_FUZZ=OFF -DFLAMEDB_WERROR="$WERROR" 2>&1 | tee "$log"
    local rc=$?
    nwarn=$(count_warnings "$log")
    if [ $rc != 0 ]; then
        STAGE_NOTE="build failed"
        [ "$nwarn" -gt 0 ] &&
            STAGE_NOTE="build failed, $nwarn warnings (FLAMEDB_WERROR=$WERROR): $(first_warning "$log")"
        return 1
    fi
    RELEASE_BUILD=ok
    run_ctest "$BUILD" || return 1
    [ "$nwarn" -gt 0 ] && STAGE_NOTE="$STAGE_NOTE; $nwarn compiler warnings (see $log)"
    return 0
}

stage_asan() {
    BUILD_TARGETS="" configure_build "$BUILD_ASAN" -DCMAKE_BUILD_TYPE=Debug -DFLAMEDB_TESTS=ON \
        -DFLAMEDB_SANITIZE=ON -DFLAMEDB_FUZZ=OFF || { STAGE_NOTE="build failed"; return 1; }
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1}" \
        UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
        run_ctest "$BUILD_ASAN"
}

# ---- integration ------------------------------------------------------------------
stage_integration() {
    local runner="$ROOT/tests/integration/run.py"
    if [ ! -f "$runner" ]; then
        STAGE_NOTE="tests/integration/run.py does not exist yet"
        return 77
    fi
    if [ "$RELEASE_BUILD" = failed ]; then
        STAGE_NOTE="release build failed, not running a stale binary"
        return 1
    fi
    if [ ! -x "$BUILD/bin/flamedb" ]; then
        STAGE_NOTE="$BUILD/bin/flamedb missing (release stage must build it)"
        return 1
    fi
    local log="$BUILD/integration-run.log" rc
    # Four files at once on any number of cores: a file mostly waits on its
    # nodes' timers (settle margins, failure timeouts, throttled streams), about
    # a tenth of a core each (docs/testing.md).
    FLAMEDB_BIN="$BUILD/bin/flamedb" FLAMECTL_BIN="$BUILD/bin/flamectl" \
        FLAMEDB_BUILD_DIR="$BUILD" FLAMEDB_SOAK="$SOAK" \
        timeout --kill-after=30 $((SOAK == 1 ? 3600 : 900)) python3 "$runner" \
        --jobs "${FLAMEDB_TEST_JOBS:-4}" --timeout 420 2>&1 | tee "$log"
    rc=$?
    [ $rc = 124 ] && echo "integration suite timed out"
    STAGE_NOTE=$(grep -E '^integration:' "$log" | tail -1)
    return $rc
}

# ---- fuzz ---------------------------------------------------------------------------
stage_fuzz() {
    local args=(--build-dir "$BUILD_FUZZ" --jobs "$JOBS")
    if [ -n "$FUZZ_SECONDS" ]; then
        args+=(--seconds "$FUZZ_SECONDS")
    else
        args+=(--budget "$FUZZ_BUDGET")
    fi
    local log rc
    log=$(mktemp "${TMPDIR:-/tmp}/flamedb-fuzz-stage.XXXXXX")
    "$ROOT/tests/fuzz/run.sh" "${args[@]}" 2>&1 | tee "$log"
    rc=$?
    STAGE_NOTE=$(sed -n 's/^fuzz result: //p' "$log" | tail -1)
    [ $rc = 77 ] && STAGE_NOTE="no fuzz targets (tests/fuzz/fuzz_*.c) yet"
    [ $rc != 0 ] && [ $rc != 77 ] && [ -z "$STAGE_NOTE" ] && STAGE_NOTE="build or runner failed"
    rm -f "$log"
    return $rc
}

# ---- bench ----------------------------------------------------------------------------
stage_bench() {
    [ "$RELEASE_BUILD" = failed ] && { STAGE_NOTE="release build failed"; return 1; }
    local args=(--build-dir "$BUILD" --jobs "$JOBS")
    [ "$SOAK" = 1 ] && args+=(--soak)
    "$ROOT/tests/bench/run.sh" "${args[@]}"
}

echo "flamedb tests: root $ROOT, jobs $JOBS, testdata $FLAMEDB_TESTDATA, CI=${CI:-false}"
TOTAL_START=$(date +%s)
run_stage deps stage_deps
if [ "$FAILED" = 1 ]; then
    echo "dependencies missing; not building" >&2
else
    run_stage style stage_style
    run_stage release stage_release
    run_stage style-build stage_style_build
    run_stage asan stage_asan
    run_stage integration stage_integration
    run_stage fuzz stage_fuzz
    run_stage bench stage_bench
fi

echo
echo "=== summary ($(($(date +%s) - TOTAL_START))s total) ==="
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if [ "$FAILED" = 1 ]; then
    echo "RESULT: FAIL"
    exit 1
fi
echo "RESULT: PASS"
