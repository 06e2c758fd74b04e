#!/usr/bin/env python3
"""test_api_top.py — GET /api/top against real nodes (issue #7, top functions):

- one node: folded CPU stacks with known totals (recursion included): per
  function self and total equal the brute-force sums over the pushed
  stacks, the selves add up to the render's numTicks, cores is
  total / 1e9 / rangeSeconds, maxNodes does not truncate it, limit and by
  work and are validated with 400s, a non-CPU type has no cores;
- search: the functions whose name contains the text (A-Z as a-z, nothing
  else folded, as the web UI's flame-graph search) out of all of them, not
  only the top `limit`, with matchCount; bad searches are 400s;
- flamectl query --output top prints the same functions and cores, and
  --search the matching ones;
- 3 nodes RF 2: the same bytes from every node, exact.
"""
import os
import subprocess
import time
import urllib.parse

import harness
from cluster import FAST_FORMATION, Cluster
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


def fold(name):
    """The UI's and the node's comparison: A-Z as a-z, nothing else."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in name)


def test_search_finds_functions_beyond_the_limit():
    svc = unique("find")
    # 400 leaves with selves far above the 3 Handler* frames (self 0), so
    # the top 100 by self never lists those
    stacks = {"main;mod.Handler%d;leaf%03d" % (i % 3, i): 50 + i for i in range(400)}
    stacks["main;mod.Handler0;\u00c4rger.parse"] = 1
    stacks["main;mod.Handler1;\u00e4rger.PARSE"] = 1
    push(svc, stacks)
    q = '%s{service_name="%s"}' % (CPU, svc)
    every = top(q, limit=10000)
    assert every["functionCount"] == 1 + 3 + 400 + 2 and "matchCount" not in every
    assert "mod.Handler0" not in {f["name"] for f in top(q)["functions"]}  # the default 100
    byname = {f["name"]: f for f in every["functions"]}
    for search in ("handler", "HANDLER1", "mod.h", "\u00e4rger", "\u00c4RGER", "parse",
                   "leaf07", "r.p", "nothing-like-it"):
        doc = top(q, search=search)
        want = [f for f in every["functions"] if fold(search) in fold(f["name"])]
        assert doc["matchCount"] == len(want), (search, doc["matchCount"], len(want))
        assert doc["functionCount"] == every["functionCount"] and doc["total"] == every["total"]
        assert doc["functions"] == want[:100], (search, doc["functions"][:3], want[:3])
        for f in doc["functions"]:  # the same rows, values and shares as without a search
            assert f == byname[f["name"]], f
    # only A-Z fold: the umlauts match as they are
    assert [f["name"] for f in top(q, search="\u00e4")["functions"]] == ["\u00e4rger.PARSE"]
    doc = top(q, search="Handler", by="total", limit=2)
    want = sorted((f for f in every["functions"] if "Handler" in f["name"]),
                  key=lambda f: (-f["total"], f["name"]))[:2]
    assert doc["functions"] == want and doc["matchCount"] == 3, doc
    # the render's format=top is the same answer
    r = NODE.query("/pyroscope/render", query=q, format="top", search="leaf1", limit=5,
                   **{"from": FROM}, until=UNTIL)
    assert r.status == 200 and r.json() == top(q, search="leaf1", limit=5), r
    # empty: no search
    assert top(q, search="") == top(q)


def test_bad_search_is_400():
    q = CPU + "{}"
    r = NODE.query("/api/top", query=q, search="x" * 1025)
    assert r.status == 400 and "'search'" in r.json()["message"], r
    assert "longer than 1024" in r.json()["message"], r
    assert NODE.query("/api/top", query=q, search="x" * 1024).status == 200
    for raw in ("%FF", "ab%C3", "%ED%A0%80"):  # not UTF-8; a surrogate
        r = NODE.get("/api/top?query=%s&search=%s" % (urllib.parse.quote(q), raw))
        assert r.status == 400 and "UTF-8" in r.json()["message"], (raw, r)


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
    base = [ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "query", q, "--from", str(FROM),
            "--until", str(UNTIL)]
    out = subprocess.run(base + ["--search", "PARSE"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and lines[1].split()[-1] == "parse", out.stdout
    assert "in 7 functions, 1 matching the search (1 shown)" in lines[2], out.stdout
    out = subprocess.run(base + ["--search", "x", "--output", "folded"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "--search" in out.stderr, out


def test_three_nodes_same_answer():
    svcs = ["a", "b", "c", "d"]
    with Cluster(3, rf=2, args=FAST_FORMATION) as c:
        for i, svc in enumerate(svcs):
            node = c.nodes[i % 3]
            r = node.ingest(folded(STACKS), name="%s.cpu{pod=p%d}" % (svc, i),
                            **{"from": FROM + 60}, until=FROM + 70)
            assert r.status == 200, r
        c.wait_hints_settled()  # a hinted replica serves no reads: the answer would be partial
        bodies = []
        for node in c.nodes:
            r = node.query("/api/top", query=CPU + "{}", **{"from": FROM}, until=UNTIL)
            assert r.status == 200 and r.headers.get("x-flamedb-partial") is None, r
            bodies.append(r.body)
        assert bodies[0] == bodies[1] == bodies[2]
        found = [node.query("/api/top", query=CPU + "{}", search="PARSE", **{"from": FROM},
                            until=UNTIL).body for node in c.nodes]
        assert found[0] == found[1] == found[2] and b'"matchCount":1,' in found[0], found
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
