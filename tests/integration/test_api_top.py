#!/usr/bin/env python3
"""test_api_top.py — GET /api/top against real nodes (issue #7, top functions):

- one node: folded CPU stacks with known totals (recursion included): per
  function self and total equal the brute-force sums over the pushed
  stacks, the selves add up to the render's numTicks, cores is
  total / 1e9 / rangeSeconds, maxNodes does not truncate it, limit and by
  work and are validated with 400s, a non-CPU type has no cores;
- flamectl query --output top prints the same functions and cores;
- 3 nodes RF 2: the same bytes from every node, exact.
"""
import os
import subprocess
import time

import harness
from cluster import Cluster
from harness import CPU, Node, run_tests, unique
from profiles import folded

NODE = Node(name="top").start()
NOW = int(time.time()) // 10 * 10
FROM, UNTIL = NOW - 600, NOW  # on the 10 s grid: rangeSeconds is exactly 600
SCALE = 10**7  # folded .cpu at the default 100 Hz: 1e9/100 ns per sample
STACKS = {
    "main;serve;parse;parse;parse": 40,  # recursion: parse counts once per stack
    "main;serve;handle;db.query": 25,
    "main;serve;handle;parse": 15,
    "main;gc": 12,
    "main": 8,
    "main;serve;handle;serve;json.encode": 30,
}


def expected(stacks, scale):
    """{function: (self, total)} by brute force over the stacks."""
    out = {}
    for stack, v in stacks.items():
        frames = stack.split(";")
        for f in set(frames):
            s, t = out.get(f, (0, 0))
            out[f] = (s, t + v * scale)
        s, t = out[frames[-1]]
        out[frames[-1]] = (s + v * scale, t)
    return out


def close(a, b):
    """Equal up to the 15 significant digits the answer prints."""
    return abs(a - b) <= 1e-13 * max(abs(a), abs(b), 1e-300)


def top(query, **params):
    r = NODE.query("/api/top", query=query, **{"from": FROM}, until=UNTIL, **params)
    assert r.status == 200, r
    return r.json()


def push(svc, stacks, suffix="cpu"):
    r = NODE.ingest(folded(stacks), name="%s.%s" % (svc, suffix), **{"from": FROM + 60},
                    until=FROM + 70)
    assert r.status == 200, r


def test_top_is_exact_and_sums_to_the_render():
    svc = unique("top")
    push(svc, STACKS)
    q = '%s{service_name="%s"}' % (CPU, svc)
    doc = top(q, limit=1000)
    ticks = NODE.total(q, FROM, UNTIL)
    assert doc["total"] == ticks == sum(STACKS.values()) * SCALE, (doc["total"], ticks)
    assert doc["unit"] == "nanoseconds" and doc["rangeSeconds"] == UNTIL - FROM, doc
    assert close(doc["cores"], ticks / 1e9 / (UNTIL - FROM)), doc["cores"]
    assert sum(f["self"] for f in doc["functions"]) == ticks
    want = expected(STACKS, SCALE)
    got = {f["name"]: (f["self"], f["total"]) for f in doc["functions"]}
    assert got == want, (got, want)
    assert doc["functionCount"] == len(want)
    for f in doc["functions"]:
        assert close(f["selfPercent"], 100.0 * f["self"] / ticks), f
        assert close(f["totalPercent"], 100.0 * f["total"] / ticks), f
        assert close(f["selfCores"], f["self"] / 1e9 / (UNTIL - FROM)), f
        assert close(f["totalCores"], f["total"] / 1e9 / (UNTIL - FROM)), f
    selves = [f["self"] for f in doc["functions"]]
    assert selves == sorted(selves, reverse=True), selves
    assert doc["functions"][0]["name"] == "parse"  # 40 + 15


def test_top_ignores_max_nodes_and_sorts_by_total():
    svc = unique("wide")
    stacks = {"main;f%03d" % i: 1 + i % 7 for i in range(300)}
    push(svc, stacks)
    q = '%s{service_name="%s"}' % (CPU, svc)
    ticks = NODE.total(q, FROM, UNTIL)
    doc = top(q, limit=10000, maxNodes=8)  # a flame graph would fold 290 frames into other
    assert doc["total"] == ticks and sum(f["self"] for f in doc["functions"]) == ticks
    assert doc["functionCount"] == 301 and len(doc["functions"]) == 301
    assert "other" not in {f["name"] for f in doc["functions"]}
    doc = top(q, by="total", limit=3)
    assert [f["name"] for f in doc["functions"]][0] == "main" and len(doc["functions"]) == 3
    assert doc["functions"][0]["total"] == ticks and doc["functionCount"] == 301
    assert len(top(q)["functions"]) == 100  # the default limit


def test_bad_parameters_are_400_with_reasons():
    q = CPU + "{}"
    for params, word in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
                         ({"limit": "10001"}, "limit"), ({"by": "name"}, "by"),
                         ({"from": "soon"}, "from")):
        r = NODE.query("/api/top", query=q, **params)
        assert r.status == 400 and word in r.json()["message"], (params, r)
    r = NODE.query("/api/top")
    assert r.status == 400 and "query" in r.json()["message"], r


def test_non_cpu_type_has_no_cores():
    svc = unique("mem")
    push(svc, {"main;alloc": 4096, "main": 1024}, suffix="alloc_space")
    doc = top('memory:alloc_space:bytes:space:bytes{service_name="%s"}' % svc)
    assert doc["unit"] == "bytes" and doc["cores"] is None and doc["total"] == 5120, doc
    assert all("selfCores" not in f for f in doc["functions"])


def test_flamectl_top():
    ctl = os.environ.get("FLAMECTL_BIN",
                         os.path.join(harness.ROOT, "build", "bin", "flamectl"))
    if not os.access(ctl, os.X_OK):
        print("    flamectl not built: skipped")
        return
    svc = unique("ctl")
    push(svc, STACKS)
    q = '%s{service_name="%s"}' % (CPU, svc)
    out = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "query", q, "--from",
                          str(FROM), "--until", str(UNTIL), "--limit", "3", "--by", "total"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "CORES" in lines[0] and lines[1].split()[-1] == "main", out.stdout
    cores = "%.4f" % (sum(STACKS.values()) * SCALE / 1e9 / (UNTIL - FROM))
    assert cores in lines[1] and cores in lines[-1], out.stdout  # main: total = everything
    assert len(lines) == 5, out.stdout  # header, 3 rows, summary


def test_three_nodes_same_answer():
    svcs = ["a", "b", "c", "d"]
    with Cluster(3, rf=2) as c:
        for i, svc in enumerate(svcs):
            node = c.nodes[i % 3]
            r = node.ingest(folded(STACKS), name="%s.cpu{pod=p%d}" % (svc, i),
                            **{"from": FROM + 60}, until=FROM + 70)
            assert r.status == 200, r
        bodies = []
        for node in c.nodes:
            r = node.query("/api/top", query=CPU + "{}", **{"from": FROM}, until=UNTIL)
            assert r.status == 200 and r.headers.get("x-flamedb-partial") is None, r
            bodies.append(r.body)
        assert bodies[0] == bodies[1] == bodies[2]
        doc = c.nodes[0].query("/api/top", query=CPU + "{}", **{"from": FROM},
                               until=UNTIL).json()
        want = expected(STACKS, SCALE * len(svcs))
        assert {f["name"]: (f["self"], f["total"]) for f in doc["functions"]} == want
        assert doc["total"] == c.nodes[1].total(CPU + "{}", FROM, UNTIL)


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        NODE.cleanup()
