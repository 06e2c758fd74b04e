#!/usr/bin/env bash
# deploy/demo.sh — flamedb on one machine in one command.
#
# Installs the missing Debian packages of deploy/packages.txt (apt-get, with
# sudo when not root), builds a Release into build/, starts one node with its
# data in a temporary folder (or DIR), pushes an hour of backfilled demo
# profiles plus live ones every 10 s, prints what to query, and runs until
# Ctrl-C, which stops the traffic and the node cleanly.
#
#   deploy/demo.sh [DIR] [--data-dir DIR] [--port PORT] [--no-install] [--no-build]
#                  [--backfill SECONDS]
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR="" PORT=4040 INSTALL=1 BUILD=1 BACKFILL=3600
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --data-dir) DATA_DIR="${2:?--data-dir needs a folder}"; shift ;;
    --port) PORT="${2:?--port needs a number}"; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --backfill) BACKFILL="${2:?--backfill needs seconds}"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "demo.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    *) DATA_DIR="$1" ;;
    esac
    shift
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }

install_packages() {
    command -v dpkg-query >/dev/null || { echo "not Debian: install deploy/packages.txt yourself"; return 0; }
    local missing=() p
    for p in $(sed -e 's/#.*//' "$ROOT/deploy/packages.txt"); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" != 0 ] && sudo="sudo"
    $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" ||
        die "apt-get failed"
}

build() {
    say "building (Release) into build/ (log: build/demo-build.log)"
    mkdir -p "$ROOT/build"
    local log="$ROOT/build/demo-build.log"
    if ! { cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$ROOT/build" -j"$(nproc)" --target flamedb flamectl flamedb-demo; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "build failed (full log: $log)"
    fi
}

[ "$INSTALL" = 1 ] && install_packages
[ "$BUILD" = 1 ] && build
BIN="$ROOT/build/bin"
for b in flamedb flamectl flamedb-demo; do
    [ -x "$BIN/$b" ] || die "$BIN/$b missing: run without --no-build"
done

TEMP_DATA=0
if [ -z "$DATA_DIR" ]; then
    DATA_DIR=$(mktemp -d /tmp/flamedb-demo.XXXXXX)
    TEMP_DATA=1
fi
mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"
URL="http://127.0.0.1:$PORT"
export FLAMEDB_URL="$URL"
NODE_PID="" GEN_PID=""

cleanup() {
    # finish even when the terminal or a pipe reading our output is gone
    trap '' INT TERM PIPE
    trap - EXIT
    echo 2>/dev/null
    [ -n "$GEN_PID" ] && kill "$GEN_PID" 2>/dev/null && wait "$GEN_PID" 2>/dev/null
    if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
        say "stopping the node (SIGTERM)" 2>/dev/null
        kill -TERM "$NODE_PID"
        wait "$NODE_PID"
    fi
    if [ "$TEMP_DATA" = 1 ]; then
        rm -rf "$DATA_DIR" "$DATA_DIR.log"
    else
        say "data kept in $DATA_DIR" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "starting flamedb on $URL (data: $DATA_DIR)"
"$BIN/flamedb" --data-dir "$DATA_DIR" --http-listen "127.0.0.1:$PORT" >"$DATA_DIR.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 100); do
    "$BIN/flamectl" ready >/dev/null 2>&1 && break
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$DATA_DIR.log" >&2; die "the node exited"; }
    sleep 0.1
done
"$BIN/flamectl" ready >/dev/null || die "the node did not become ready (log: $DATA_DIR.log)"

# v2 rolls out half way through the backfill (or 5 minutes from now without one)
V2_AT=$(($(date +%s) + (BACKFILL > 0 ? -BACKFILL / 2 : 300)))
if [ "$BACKFILL" -gt 0 ]; then
    say "pushing $((BACKFILL / 60)) minutes of history (v1 -> v2 rollout half way)"
    "$BIN/flamedb-demo" --backfill "$BACKFILL" --no-live --v2-at "$V2_AT" --quiet ||
        echo "demo.sh: some backfill pushes failed (see above)" >&2
fi
"$BIN/flamedb-demo" --v2-at "$V2_AT" --quiet &
GEN_PID=$!

CPU='process_cpu:cpu:nanoseconds:cpu:nanoseconds'
CTL="build/bin/flamectl"
[ "$PORT" != 4040 ] && CTL="build/bin/flamectl --url $URL"
cat <<EOF

flamedb is running at $URL with live demo traffic (services api, checkout,
worker; labels env, region, pod, version). Node log: $DATA_DIR.log

Query it in a browser or with curl:
  $URL/pyroscope/render?query=$CPU%7Bservice_name%3D%22api%22%7D&from=now-1h&until=now
  $URL/pyroscope/render?query=$CPU%7Bservice_name%3D%22checkout%22%7D&from=now-1h&format=folded
  $URL/pyroscope/label-names
  $URL/pyroscope/label-values?label=__profile_type__

Or with flamectl:
  $CTL query '$CPU{service_name="api"}' --from now-1h
  $CTL query '$CPU{service_name="checkout",version="v1"}' --from now-1h --limit 8
  $CTL query '$CPU{service_name="checkout",version="v2"}' --from now-1h --limit 8
  $CTL query 'memory:alloc_space:bytes:space:bytes{service_name="worker"}' --output folded
  $CTL query '$CPU{}' --output pprof -o cpu.pb.gz   # then: go tool pprof -top cpu.pb.gz
  $CTL labels pod

Compare v1 and v2 of checkout: pricing.applyDiscounts got slower in v2.
Press Ctrl-C to stop.
EOF
wait "$NODE_PID"
NODE_PID=""
die "the node stopped unexpectedly (log: $DATA_DIR.log)"
