#!/usr/bin/env bash
# deploy/demo.sh — a local 3-node flamedb cluster in one command.
#
# Installs the missing Debian packages of deploy/packages.txt (apt-get, with
# sudo when not root), builds a Release into build/, starts NODES nodes on
# 127.0.0.1 (each with its own data folder under DIR, or a temporary one; HTTP
# ports 4040, 4041, ..., cluster ports 7946, 7947, ...; a free port instead of
# each one that is taken), joined through --join, waits until every node sees
# all of them active, pushes an hour of backfilled demo profiles plus live ones
# every 10 s spread over the nodes, prints what to query, and runs until Ctrl-C,
# which stops the traffic and the nodes cleanly.
#
#   deploy/demo.sh [DIR] [--data-dir DIR] [--nodes N] [--rf N] [--write-quorum W]
#                  [--port PORT] [--cluster-port PORT] [--backfill SECONDS]
#                  [--build-dir DIR] [--no-install] [--no-build]
#
# Defaults: 3 nodes, --rf 3, --write-quorum 2 (capped at RF), backfill 3600 s.
# --nodes 1 starts a single node without a cluster port.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR="" PORT=4040 CPORT=7946 NODES=3 RF=3 W=2 W_SET=0 INSTALL=1 BUILD=1 BACKFILL=3600
BUILD_DIR="$ROOT/build"
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "demo.sh: $*" >&2; exit 1; }
number() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 needs a number, not '$2'"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --data-dir) DATA_DIR="${2:?--data-dir needs a folder}"; shift ;;
    --port) number "$1" "${2:-}"; PORT="$2"; shift ;;
    --cluster-port) number "$1" "${2:-}"; CPORT="$2"; shift ;;
    --nodes) number "$1" "${2:-}"; NODES="$2"; shift ;;
    --rf) number "$1" "${2:-}"; RF="$2"; shift ;;
    --write-quorum) number "$1" "${2:-}"; W="$2"; W_SET=1; shift ;;
    --build-dir) BUILD_DIR="${2:?--build-dir needs a folder}"; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --backfill) number "$1" "${2:-}"; BACKFILL="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "demo.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    *) DATA_DIR="$1" ;;
    esac
    shift
done
[ "$NODES" -ge 1 ] && [ "$NODES" -le 9 ] || die "--nodes must be 1 to 9"
[ "$RF" -ge 1 ] || die "--rf must be at least 1"
[ "$RF" -gt "$NODES" ] && RF=$NODES
[ "$W_SET" = 0 ] && [ "$W" -gt "$RF" ] && W=$RF
[ "$W" -ge 1 ] && [ "$W" -le "$RF" ] || die "--write-quorum must be 1 to RF ($RF)"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

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
    say "building (Release) into $BUILD_DIR (log: $BUILD_DIR/demo-build.log)"
    mkdir -p "$BUILD_DIR"
    local log="$BUILD_DIR/demo-build.log"
    if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$BUILD_DIR" -j"$(nproc)" --target flamedb flamectl flamedb-demo; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "build failed (full log: $log)"
    fi
}

[ "$INSTALL" = 1 ] && install_packages
[ "$BUILD" = 1 ] && build
BIN="$BUILD_DIR/bin"
for b in flamedb flamectl flamedb-demo; do
    [ -x "$BIN/$b" ] || die "$BIN/$b missing: run without --no-build"
done
command -v python3 >/dev/null || die "python3 missing (deploy/packages.txt)"
UTIL=(python3 "$ROOT/deploy/demo_util.py")

TEMP_DATA=0
if [ -z "$DATA_DIR" ]; then
    DATA_DIR=$(mktemp -d /tmp/flamedb-demo.XXXXXX)
    TEMP_DATA=1
fi
mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)

# ---- ports, names, addresses -------------------------------------------------------
read -r -a HTTP_PORTS <<<"$("${UTIL[@]}" ports "$PORT" "$NODES")" || die "no HTTP ports"
read -r -a CL_PORTS <<<"$("${UTIL[@]}" ports "$CPORT" "$NODES" "${HTTP_PORTS[@]}")" || die "no cluster ports"
IDS=() URLS=() SEEDS=""
for i in $(seq 0 $((NODES - 1))); do
    IDS+=("node$((i + 1))")
    URLS+=("http://127.0.0.1:${HTTP_PORTS[$i]}")
    SEEDS="$SEEDS${SEEDS:+,}tcp://127.0.0.1:${CL_PORTS[$i]}"
    # the documents' examples use 4040: say when a node could not have its port
    [ "${HTTP_PORTS[$i]}" = $((PORT + i)) ] ||
        echo "demo.sh: port $((PORT + i)) is taken: node$((i + 1)) serves HTTP on ${HTTP_PORTS[$i]} instead" >&2
done
export FLAMEDB_URL="${URLS[0]}"
NODE_PIDS=() GEN_PIDS=()

cleanup() {
    # finish even when the terminal or a pipe reading our output is gone
    trap '' INT TERM PIPE
    trap - EXIT
    echo 2>/dev/null
    local p
    for p in "${GEN_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${GEN_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    local live=()
    for p in "${NODE_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && live+=("$p"); done
    if [ ${#live[@]} -gt 0 ]; then
        say "stopping ${#live[@]} node(s) (SIGTERM)" 2>/dev/null
        for p in "${live[@]}"; do kill -TERM "$p" 2>/dev/null; done
        for p in "${live[@]}"; do wait "$p" 2>/dev/null; done
    fi
    if [ "$TEMP_DATA" = 1 ]; then
        rm -rf "$DATA_DIR"
    else
        say "data and logs kept in $DATA_DIR" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

node_args() { # index -> the node's flags, one per line
    local i=$1
    printf '%s\n' --data-dir "$DATA_DIR/${IDS[$i]}" --http-listen "127.0.0.1:${HTTP_PORTS[$i]}"
    [ "$NODES" = 1 ] && return
    printf '%s\n' --node-id "${IDS[$i]}" --cluster-listen "tcp://127.0.0.1:${CL_PORTS[$i]}" \
        --join "$SEEDS" --cluster-name demo --replication-factor "$RF" --write-quorum "$W"
}

start_nodes() {
    local i args
    for i in $(seq 0 $((NODES - 1))); do
        mapfile -t args < <(node_args "$i")
        "$BIN/flamedb" "${args[@]}" >"$DATA_DIR/${IDS[$i]}.log" 2>&1 &
        NODE_PIDS+=($!)
    done
    for i in $(seq 0 $((NODES - 1))); do
        for _ in $(seq 1 300); do
            "$BIN/flamectl" --url "${URLS[$i]}" ready >/dev/null 2>&1 && break
            kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || {
                tail -n 20 "$DATA_DIR/${IDS[$i]}.log" >&2
                die "${IDS[$i]} exited (log: $DATA_DIR/${IDS[$i]}.log)"
            }
            sleep 0.1
        done
        "$BIN/flamectl" --url "${URLS[$i]}" ready >/dev/null ||
            die "${IDS[$i]} did not become ready in 30 s (log: $DATA_DIR/${IDS[$i]}.log)"
    done
}

if [ "$NODES" = 1 ]; then
    say "starting one flamedb node on ${URLS[0]} (data: $DATA_DIR)"
else
    say "starting $NODES flamedb nodes (RF $RF, write quorum $W; data: $DATA_DIR)"
fi
start_nodes
if [ "$NODES" -gt 1 ]; then
    say "waiting until every node sees $NODES active nodes"
    "${UTIL[@]}" wait-cluster "$NODES" 30 "${URLS[@]}" || die "the cluster did not form (logs: $DATA_DIR/*.log)"
fi

# ---- traffic ---------------------------------------------------------------------------
# One fleet, spread over the nodes: node k gets the k-th slice of the backfill
# and every NODES-th live round (the generators are staggered by one 10 s
# window). The same seed and times give the same profiles as one generator.
NOW=$(date +%s)
START=$((NOW - NOW % 10))
V2_AT=$((START + (BACKFILL > 0 ? -BACKFILL / 2 : 300))) # v2 rolls out half way
FIRST=$((START - BACKFILL))
# v1 runs only before V2_AT and the traced request is at the history's end:
# what is printed below about them starts at the history's start, not at
# now-1h, so they stay in range however long the demo runs and whatever
# --backfill is
SINCE=$FIRST
CPU='process_cpu:cpu:nanoseconds:cpu:nanoseconds'
if [ "$BACKFILL" -gt 0 ]; then
    WHERE=""
    [ "$NODES" -gt 1 ] && WHERE=", a slice through each node"
    say "pushing $((BACKFILL / 60)) minutes of history$WHERE (v1 -> v2 half way)"
    STEP=30
    SLICE=$((((BACKFILL + STEP - 1) / STEP + NODES - 1) / NODES * STEP))
    BF_PIDS=()
    for i in $(seq 0 $((NODES - 1))); do
        from=$((FIRST + i * SLICE)) to=$((FIRST + (i + 1) * SLICE))
        [ "$to" -gt "$START" ] && to=$START
        [ "$from" -ge "$to" ] && continue
        "$BIN/flamedb-demo" --url "${URLS[$i]}" --start "$to" --backfill $((to - from)) \
            --backfill-step "$STEP" --no-live --v2-at "$V2_AT" --quiet &
        BF_PIDS+=($!)
    done
    BF_FAILED=0
    for p in "${BF_PIDS[@]}"; do wait "$p" || BF_FAILED=1; done
    [ "$BF_FAILED" = 1 ] && echo "demo.sh: some backfill pushes failed (see above)" >&2
    # the slow traced request of the first api pod in the newest backfilled round
    # (the generator names it: same seed, same window, same ids)
    SPAN_AT=$((FIRST + (BACKFILL - 1) / STEP * STEP))
    read -r SPAN TRACE SPAN_NAME < <("$BIN/flamedb-demo" --slow-span "$SPAN_AT" --v2-at "$V2_AT") ||
        SPAN=""
    if [ "$NODES" -gt 1 ]; then
        say "the same query on every node (CPU of the whole backfill):"
        "${UTIL[@]}" ticks 10 "$CPU{}" "$FIRST" "$START" "${URLS[@]}" ||
            echo "demo.sh: the nodes disagree (see the node logs)" >&2
    fi
fi
# live rounds: start in the middle of a 10 s window so staggered generators never share one
sleep $(((15 - $(date +%s) % 10) % 10))
for i in $(seq 0 $((NODES - 1))); do
    (
        sleep $((10 * i))
        exec "$BIN/flamedb-demo" --url "${URLS[$i]}" --interval $((10 * NODES)) --v2-at "$V2_AT" --quiet
    ) &
    GEN_PIDS+=($!)
done

# ---- what to try ------------------------------------------------------------------------
CTL="$BIN/flamectl"
case "$BIN" in "$PWD"/*) CTL="${BIN#"$PWD"/}/flamectl" ;; esac
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
Q_API=$(enc "$CPU{service_name=\"api\"}")
Q_CHK=$(enc "$CPU{service_name=\"checkout\"}")
Q_V1=$(enc "$CPU{service_name=\"checkout\",version=\"v1\"}")
Q_V2=$(enc "$CPU{service_name=\"checkout\",version=\"v2\"}")
SPAN=${SPAN:-}
[ -n "$SPAN" ] && Q_SPAN=$(enc "$CPU{service_name=\"api\",span_id=\"$SPAN\"}")
echo
echo "Web UI (served by every node): ${URLS[0]}/?query=$Q_API&from=now-1h"
echo "  checkout v1 against v2: ${URLS[0]}/?view=diff&query=$Q_V1&rightQuery=$Q_V2&from=$SINCE"
[ -n "$SPAN" ] && echo "  one traced request: ${URLS[0]}/?view=spans&query=$Q_API&span=$SPAN&from=$SINCE"
echo
if [ "$NODES" = 1 ]; then
    echo "flamedb is running at ${URLS[0]} with live demo traffic"
else
    echo "A $NODES-node flamedb cluster is running (RF $RF, write quorum $W) with live demo"
    echo "traffic spread over every node. Any node answers any query, with the same totals."
fi
echo "(services api, checkout, worker; labels env, region, pod, version)."
for i in $(seq 0 $((NODES - 1))); do
    U=${URLS[$i]}
    echo
    echo "${IDS[$i]}: $U  (pid ${NODE_PIDS[$i]}, log $DATA_DIR/${IDS[$i]}.log)"
    echo "  $U/  (web UI)"
    echo "  $U/pyroscope/render?query=$Q_API&from=now-1h&until=now"
    echo "  $U/pyroscope/render?query=$Q_CHK&from=now-1h&format=folded"
    echo "  $U/pyroscope/render-diff?leftQuery=$Q_V1&leftFrom=$SINCE&rightQuery=$Q_V2&rightFrom=$SINCE"
    echo "  $U/api/diff?leftQuery=$Q_V1&leftFrom=$SINCE&rightQuery=$Q_V2&rightFrom=$SINCE&limit=10"
    [ -n "$SPAN" ] && echo "  $U/pyroscope/render?query=$Q_SPAN&from=$SINCE&until=now"
    echo "  $U/pyroscope/label-names"
    [ "$NODES" -gt 1 ] && echo "  $U/cluster/status"
done
U2=${URLS[$((NODES > 1 ? 1 : 0))]}
cat <<EOF

Or with flamectl (--url picks the node; without it flamectl asks \$FLAMEDB_URL,
else http://127.0.0.1:4040, which may be another program: set it in your shell):
  export FLAMEDB_URL=${URLS[0]}
  $CTL --url ${URLS[0]} query '$CPU{service_name="api"}' --from now-1h
  $CTL --url $U2 query '$CPU{service_name="checkout",version="v1"}' --from $SINCE --limit 8
  $CTL --url $U2 query '$CPU{service_name="checkout",version="v2"}' --from $SINCE --limit 8
  $CTL --url $U2 diff '$CPU{service_name="checkout",version="v1"}' '$CPU{service_name="checkout",version="v2"}' --from $SINCE --limit 8
  $CTL --url ${URLS[$((NODES - 1))]} query 'memory:alloc_space:bytes:space:bytes{service_name="worker"}' --output folded
  $CTL --url ${URLS[0]} query '$CPU{}' --output pprof -o cpu.pb.gz   # then: go tool pprof -top cpu.pb.gz
  $CTL --url $U2 labels pod
EOF
if [ -n "$SPAN" ]; then
    cat <<EOF
  $CTL --url $U2 query '$CPU{service_name="api",span_id="$SPAN"}' --from $SINCE
  $CTL --url $U2 query '$CPU{service_name="api",trace_id="$TRACE"}' --from $SINCE --output folded
EOF
fi
if [ "$NODES" -gt 1 ]; then
    cat <<EOF
  $CTL --url $U2 cluster status

Try a failure: kill -9 ${NODE_PIDS[$((NODES - 1))]} (${IDS[$((NODES - 1))]}). Its generator's pushes fail (it has no
other node to go to), the others mark it down within seconds (cluster status),
pushes through the other nodes go on with quorum $W of $RF and leave hints for it,
and queries on the other nodes give the same totals. This script then prints how
to start it again; it catches up from the hints. See docs/operations.md.
EOF
fi
cat <<EOF

Compare v1 and v2 of checkout: pricing.applyDiscounts got slower in v2.
EOF
if [ -n "$SPAN" ]; then
    cat <<EOF
Each api CPU profile carries four traced requests (sample labels span_id and trace_id).
Span $SPAN (trace $TRACE) is the slow one of
$SPAN_NAME at $(date -d "@$SPAN_AT" +%H:%M:%S):
its flame graph is mostly GetProduct's database query.
EOF
fi
echo "Press Ctrl-C to stop."

# Runs until Ctrl-C (the trap) or until a node stops on its own.
while :; do
    for i in "${!NODE_PIDS[@]}"; do
        if ! kill -0 "${NODE_PIDS[$i]}" 2>/dev/null; then
            wait "${NODE_PIDS[$i]}" 2>/dev/null
            echo "demo.sh: ${IDS[$i]} stopped (log: $DATA_DIR/${IDS[$i]}.log)" >&2
            if [ "$NODES" -gt 1 ]; then
                mapfile -t args < <(node_args "$i")
                echo "  to bring it back with the same data, id and tokens (Ctrl-C here will" >&2
                echo "  not stop a node started by hand):" >&2
                echo "  $BIN/flamedb ${args[*]} >>$DATA_DIR/${IDS[$i]}.log 2>&1 &" >&2
            fi
            unset 'NODE_PIDS[i]'
            [ ${#NODE_PIDS[@]} -eq 0 ] && die "every node stopped"
        fi
    done
    sleep 1
done
