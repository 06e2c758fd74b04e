#!/usr/bin/env python3
"""ab_http.py — the flame graph over HTTP of two or more node binaries,
alternated.

For a change to how a node serves a render (its threads, its hand-offs):
each round starts a node of each binary in turn, pushes the profiles of a
`flamedb-bench gen` index to it (the heap set of run.py: `gen --kind heap
--services 1 --pods 4 --profiles 30 --step 120 --seed 1`), renders the
first service's in-use memory over its whole range RENDERS times on one
keep-alive connection (Python's http.client, as run.py's query step) after
30 untimed, and prints the median wall time of a render and the node's CPU
(utime + stime) per render. Every answer must be the same bytes as the
first binary's.

With --folded each node first folds the ended windows' operands
(window-fold-interval, as run.py's "once the node folded" figure): the
renders then all read the same stored state, where right after the pushes a
fold in the middle of the timed renders moves a round's median (the same
binary's ranged over 1.55-2.30 ms between rounds).

With --gap-ms the timed renders are that far apart (the node idle in
between and its threads asleep, as an interactive user's renders find it).

With --type another profile type is rendered (the first service's).

With --library the timed renders are made by the project's client library
(`flamedb-bench render`, next to the node binaries' build or on PATH), as
run.py's query step times them, and the median is the tool's; the node's
CPU and the answer's bytes are then not taken.

  tests/bench/ab_http.py INDEX.tsv [--rounds N] [--renders N] [--folded] [--gap-ms MS]
                         [--type TYPE] [--library] FLAMEDB [FLAMEDB...]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (Node, push_all, read_index)

UNTIMED = 30


def library_median(tool, node, query, frm, until, renders, gap_ms):
    """The median render time (s) of `flamedb-bench render` against node."""
    out = subprocess.run([tool, "render", "--url", "http://127.0.0.1:%d" % node.port, "--query",
                          query, "--from", str(frm), "--until", str(until), "--runs",
                          str(renders), "--gap-ms", str(int(gap_ms))],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("render_http_median_ms:"):
            return float(line.split()[1]) / 1e3
    raise RuntimeError("flamedb-bench render printed no median: %r" % out[-300:])


def one_run(binary, rows, renders, work, folded, gap_ms, ptype, tool=None):
    node = R.Node(binary, work, "1GiB")
    try:
        failures = R.push_all(node, rows)
        if failures:
            raise RuntimeError("%d pushes failed: %r" % (len(failures), failures[:3]))
        if folded:
            R.wait_folded(node)
        svc = rows[0]["name"].split("{")[0]
        lo, hi = min(r["time"] for r in rows), max(r["time"] for r in rows)
        path = "/pyroscope/render?" + urllib.parse.urlencode({
            "query": '%s{service_name="%s"}' % (ptype, svc),
            "from": lo // 10 * 10, "until": (hi // 10 + 1) * 10, "format": "json"})
        if tool is not None:
            query = "%s{service_name=\"%s\"}" % (ptype, svc)
            library_median(tool, node, query, lo // 10 * 10, (hi // 10 + 1) * 10, UNTIMED, 0)
            med = library_median(tool, node, query, lo // 10 * 10, (hi // 10 + 1) * 10, renders,
                                 gap_ms)
            return med, 0.0, None
        c = node.conn()
        for _ in range(UNTIMED):
            st, body = node.get(path, c)
            if st != 200:
                raise RuntimeError("render %d: %r" % (st, body[:300]))
        cpu0, times = node.cpu_seconds(), []
        for i in range(renders):
            if i > 0 and gap_ms > 0:
                time.sleep(gap_ms / 1000)  # the node idle in between
            t0 = time.time()
            st, body = node.get(path, c)
            times.append(time.time() - t0)
            if st != 200:
                raise RuntimeError("render %d: %r" % (st, body[:300]))
        cpu = node.cpu_seconds() - cpu0
        c.close()
        return statistics.median(times), cpu / renders, body
    finally:
        node.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index")
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--renders", type=int, default=300)
    ap.add_argument("--folded", action="store_true",
                    help="time the renders once the node folded the ended windows")
    ap.add_argument("--type", default="memory:inuse_space:bytes:space:bytes",
                    help="the profile type rendered (a CPU fleet's: "
                    "process_cpu:cpu:nanoseconds:cpu:nanoseconds)")
    ap.add_argument("--library", action="store_true",
                    help="time the renders with the client library (flamedb-bench render)")
    ap.add_argument("--gap-ms", type=float, default=0,
                    help="pause between timed renders: the node idle, its threads asleep, "
                    "as an interactive user's renders find it (0: back to back)")
    a = ap.parse_args()
    tool = None
    if a.library:
        near = os.path.join(os.path.dirname(os.path.abspath(a.binaries[0])), "flamedb-bench")
        tool = near if os.path.exists(near) else shutil.which("flamedb-bench")
        if tool is None:
            sys.exit("--library: flamedb-bench not found beside %s nor on PATH" % a.binaries[0])
    rows = R.read_index(os.path.abspath(a.index))
    work = tempfile.mkdtemp(prefix="flamedb-ab-http-")
    got = {b: [] for b in a.binaries}
    first = None
    try:
        for _ in range(a.rounds):
            for b in a.binaries:
                med, cpu, body = one_run(b, rows, a.renders, work, a.folded, a.gap_ms, a.type, tool)
                if body is None:
                    pass  # the library's renders: no body kept
                elif first is None:
                    first = body
                elif body != first:
                    raise RuntimeError("%s answered other bytes than %s" % (b, a.binaries[0]))
                got[b].append((med, cpu))
                cpu_text = "" if tool else ", node CPU %.3f ms a render" % (cpu * 1e3)
                print("%s: median %.3f ms%s" % (b, med * 1e3, cpu_text), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for b in a.binaries:
        cpus = "" if tool else "; CPU %s ms" % " / ".join("%.2f" % (c * 1e3) for _, c in got[b])
        print("%s: medians %s ms%s" % (b, " / ".join("%.3f" % (m * 1e3) for m, _ in got[b]), cpus))


if __name__ == "__main__":
    main()
