#!/usr/bin/env python3
"""compare_renders.py — the same flame graphs from two node binaries, byte for byte.

For a change that must not move any answer (a faster read path): push the
profiles of one or more `flamedb-bench gen` index files to a node of each
binary, then GET /pyroscope/render for every service and the whole tenant,
three sample types, four formats, several maxNodes and two time ranges, and
compare the status and body of every answer; then list the stored profiles
(GET /api/profiles) of each service and type and open every listed one
(GET /api/profiles/ID, two formats), which reads the single stored trees;
and GET /api/top of every service and the whole tenant (limits, by total,
a search).
Exits 1 on any difference.

  tests/bench/compare_renders.py OLD_FLAMEDB NEW_FLAMEDB INDEX.tsv [INDEX.tsv...]

FLAMEDB_COMPARE_NEW_ARGS adds flags to the new node's command line (a
setting that must not move any answer, e.g. --shard-by-profile 1).
"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (Node, push_all, read_index)

TYPES = ["memory:inuse_space:bytes:space:bytes", "memory:alloc_objects:count:space:bytes",
         "process_cpu:cpu:nanoseconds:cpu:nanoseconds"]


def render(node, q, path="/pyroscope/render"):
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=120)
    c.request("GET", path + "?" + urllib.parse.urlencode(q))
    r = c.getresponse()
    out = (r.status, r.read())
    c.close()
    return out


def compare_profiles(nodes, sels, lo, hi):
    """Lists of stored profiles and every listed profile opened: (count, different).
    An entry's `id` holds its placement token, so the lists are compared
    without it and each node opens its own ids (placement may differ)."""
    n = diff = 0
    for t in TYPES:
        for sel in sels:
            q = {"query": t + sel, "from": lo, "until": hi, "limit": 40}
            a, b = render(nodes[0], q, "/api/profiles"), render(nodes[1], q, "/api/profiles")
            la = json.loads(a[1]).get("profiles", []) if a[0] == 200 else []
            lb = json.loads(b[1]).get("profiles", []) if b[0] == 200 else []
            strip = lambda l: [{k: v for k, v in e.items() if k != "id"} for e in l]  # noqa: E731
            n += 1
            if a[0] != b[0] or strip(la) != strip(lb):
                diff += 1
                print("DIFFERENT listing: %r" % q)
                continue
            for pa, pb in zip(la, lb):
                for fmt in ["json", "folded"]:
                    ra = render(nodes[0], {"format": fmt}, "/api/profiles/" + pa["id"])
                    rb = render(nodes[1], {"format": fmt}, "/api/profiles/" + pb["id"])
                    n += 1
                    if ra != rb or ra[0] != 200:
                        diff += 1
                        print("DIFFERENT: profile %s %s: %d vs %d"
                              % (pa["profile_id"], fmt, ra[0], rb[0]))
    return n, diff


def compare_tops(nodes, sels, lo, hi, third):
    """GET /api/top of every selector and type, by self and by total, a
    few limits and a search: (count, different)."""
    n = diff = 0
    for t in TYPES:
        for sel in sels + ["{}"]:
            for extra in [{}, {"limit": "10000"}, {"limit": "3", "by": "total"},
                          {"limit": "20", "search": "a"}]:
                for frm, until in [(lo, hi), (lo + third, hi - third)]:
                    q = dict({"query": t + sel, "from": frm, "until": until}, **extra)
                    a, b = render(nodes[0], q, "/api/top"), render(nodes[1], q, "/api/top")
                    n += 1
                    if a != b:
                        diff += 1
                        print("DIFFERENT top: %r: %d (%d bytes) vs %d (%d bytes)"
                              % (q, a[0], len(a[1]), b[0], len(b[1])))
    return n, diff


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    work = tempfile.mkdtemp(prefix="flamedb-compare-")
    extra = os.environ.get("FLAMEDB_COMPARE_NEW_ARGS", "").split()
    nodes = [R.Node(sys.argv[1], work, "1GiB"), R.Node(sys.argv[2], work, "1GiB", extra)]
    try:
        rows = []
        for index in sys.argv[3:]:
            part = R.read_index(index)
            rows += part
            for n in nodes:
                if R.push_all(n, part):
                    raise RuntimeError("push failed")
        lo = min(r["time"] for r in rows) // 10 * 10
        hi = (max(r["time"] for r in rows) // 10 + 1) * 10
        third = (hi - lo) // 3 // 10 * 10
        sels = ['{service_name="%s"}' % s for s in sorted({r["name"].split("{")[0] for r in rows})]
        n = diff = 0
        for t in TYPES:
            for sel in sels + ["{}"]:
                for fmt in ["json", "folded", "svg", "pprof"]:
                    for mx in ["", "2", "50", "1000", "8192"]:
                        for frm, until in [(lo, hi), (lo + third, hi - third)]:
                            q = {"query": t + sel, "from": frm, "until": until, "format": fmt}
                            if mx:
                                q["maxNodes"] = mx
                            a, b = render(nodes[0], q), render(nodes[1], q)
                            n += 1
                            if a != b:
                                diff += 1
                                print("DIFFERENT: %r: %d (%d bytes) vs %d (%d bytes)"
                                      % (q, a[0], len(a[1]), b[0], len(b[1])))
        tn, tdiff = compare_tops(nodes, sels, lo, hi, third)
        m, mdiff = compare_profiles(nodes, sels, lo, hi)
        print("renders compared: %d, different: %d" % (n, diff))
        print("top tables compared: %d, different: %d" % (tn, tdiff))
        diff += tdiff
        print("single profiles compared: %d, different: %d" % (m, mdiff))
        diff += mdiff
        return 1 if diff else 0
    finally:
        for nd in nodes:
            nd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
