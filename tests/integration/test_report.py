#!/usr/bin/env python3
"""test_report.py — GET /api/diff (the regression report) against real nodes
(issue #7, regression report and significance):

- one node, v1 and v2 folded CPU profiles pushed over 20 windows of 10 s each,
  with noise: `handle` grows from about 30% to about 60% of the samples,
  `gc` stays at about 10%. The report ranks handle first and flags it, does
  not flag gc; whole-range totals equal the renders and brute-force sums;
  change is 100 * (rightTotal/rightTicks - leftTotal/leftTicks); ranges of
  different lengths get per-second rates; bad parameters are 400s;
- two samples of the same version flag nothing;
- search: the functions whose name contains the text (A-Z as a-z, nothing
  else folded, as /api/top's search) out of all of them, not only the first
  `limit`, with matchCount; bad searches are 400s;
- a search naming its report (reportId) answers from the report the node
  kept, the very answer computed afresh; a wrong, stale or evicted id
  computes it again; report-cache-bytes bounds the reports kept, 0 keeps none;
- flamectl diff prints the table, and --search the matching rows;
- 3 nodes RF 2: the same bytes from every node; with two nodes down the
  answer is flagged partial (body and X-Flamedb-Partial).
"""
import os
import random
import subprocess
import time
import urllib.parse

import harness
from cluster import FAST_FORMATION, Cluster
from harness import CPU, Node, run_tests, unique
from profiles import folded

NODE = Node(name="report").start()
NOW = int(time.time()) // 10 * 10
FROM = NOW - 600
WINDOWS = 20
UNTIL = FROM + 10 * WINDOWS
SCALE = 10**7  # folded .cpu at the default 100 Hz


def window_stacks(rng, handle_share):
    """One window's stacks: about handle_share of 1000 samples in handle,
    10% in gc, the rest in parse, auth and log alike, each jittered."""
    n = 1000
    handle = int(n * handle_share * rng.uniform(0.9, 1.1))
    gc = int(n * 0.10 * rng.uniform(0.9, 1.1))
    rest = n - handle - gc
    parse, auth = int(rest / 3 * rng.uniform(0.9, 1.1)), int(rest / 3 * rng.uniform(0.9, 1.1))
    return {"main;serve;handle": handle, "main;gc": gc, "main;serve;parse": parse,
            "main;serve;auth": auth, "main;serve;log": rest - parse - auth}


def push_version(svc, version, handle_share, seed, start=FROM, windows=WINDOWS):
    """Pushes one profile per window; returns {stack: total count}."""
    rng = random.Random(seed)
    sums = {}
    for w in range(windows):
        stacks = window_stacks(rng, handle_share)
        t = start + 10 * w
        r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s}" % (svc, version),
                        **{"from": t + 1}, until=t + 2)
        assert r.status == 200, r
        for k, v in stacks.items():
            sums[k] = sums.get(k, 0) + v
    return sums


def q(svc, version):
    return '%s{service_name="%s",version="%s"}' % (CPU, svc, version)


def report(node, left, right, lf=FROM, lu=UNTIL, rf=FROM, ru=UNTIL, **extra):
    r = node.query("/api/diff", leftQuery=left, rightQuery=right, leftFrom=lf, leftUntil=lu,
                   rightFrom=rf, rightUntil=ru, **extra)
    assert r.status == 200, r
    return r.json()


def totals(sums):
    """{function: total} by brute force over the stacks (once per stack)."""
    out = {}
    for stack, v in sums.items():
        for f in set(stack.split(";")):
            out[f] = out.get(f, 0) + v * SCALE
    return out


SVC = unique("rep")
V1 = push_version(SVC, "v1", 0.30, seed=1)
V2 = push_version(SVC, "v2", 0.60, seed=2)


def test_regression_ranked_first_and_flagged():
    doc = report(NODE, q(SVC, "v1"), q(SVC, "v2"))
    lt, rt = NODE.total(q(SVC, "v1"), FROM, UNTIL), NODE.total(q(SVC, "v2"), FROM, UNTIL)
    assert doc["leftTicks"] == lt == sum(V1.values()) * SCALE, (doc["leftTicks"], lt)
    assert doc["rightTicks"] == rt == sum(V2.values()) * SCALE
    assert doc["unit"] == "nanoseconds"
    assert doc["leftBuckets"] == doc["rightBuckets"] == WINDOWS, doc
    assert doc["leftSeconds"] == doc["rightSeconds"] == UNTIL - FROM
    fns = {f["name"]: f for f in doc["functions"]}
    first = doc["functions"][0]
    assert first["name"] == "handle" and first["significant"] is True, first
    assert 25 < first["change"] < 35, first
    assert fns["gc"]["significant"] is False, fns["gc"]
    assert fns["main"]["change"] == 0 and fns["main"]["significant"] is False
    want_l, want_r = totals(V1), totals(V2)
    for name, f in fns.items():
        assert f["leftTotal"] == want_l[name] and f["rightTotal"] == want_r[name], f
        change = 100.0 * (f["rightTotal"] / rt - f["leftTotal"] / lt)
        assert abs(f["change"] - change) < 1e-9, (f, change)
        assert "leftTotalPerSecond" not in f  # same lengths: shares say it all
    changes = [abs(f["change"]) for f in doc["functions"]]
    assert changes == sorted(changes, reverse=True)
    assert report(NODE, q(SVC, "v1"), q(SVC, "v2"), limit=2)["functions"] == \
        doc["functions"][:2]


def test_same_behaviour_flags_nothing():
    svc = unique("same")
    push_version(svc, "a", 0.30, seed=11)
    push_version(svc, "b", 0.30, seed=12)
    doc = report(NODE, q(svc, "a"), q(svc, "b"))
    assert doc["tested"] == 7, doc  # main, serve, handle, gc, parse, auth, log
    assert not any(f["significant"] for f in doc["functions"]), doc


def test_different_lengths_give_rates():
    half = FROM + 100  # the left side reads 10 windows, the right 20
    doc = report(NODE, q(SVC, "v1"), q(SVC, "v2"), lu=half)
    assert doc["leftSeconds"] == 100 and doc["rightSeconds"] == 200, doc
    assert doc["leftBuckets"] == 10
    for f in doc["functions"]:
        assert abs(f["leftTotalPerSecond"] - f["leftTotal"] / 100) < 1e-6, f
        assert abs(f["rightTotalPerSecond"] - f["rightTotal"] / 200) < 1e-6, f


def test_bad_parameters():
    base = dict(leftQuery=q(SVC, "v1"), rightQuery=q(SVC, "v2"), leftFrom=FROM,
                leftUntil=UNTIL, rightFrom=FROM, rightUntil=UNTIL)
    for bad in [dict(limit="0"), dict(limit="1001"), dict(limit="x"),
                dict(rightQuery="memory:alloc_space:bytes:space:bytes{}"),
                dict(leftQuery=""), dict(rightQuery="{")]:
        r = NODE.query("/api/diff", **dict(base, **bad))
        assert r.status == 400, (bad, r)


def fold(name):
    """/api/top's and the web UI's comparison: A-Z as a-z, nothing else."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in name)


def push_search_service():
    """300 leaves under 3 handlers whose weights trade places within each
    handler between v1 and v2: the leaves change, the handlers (and main)
    keep their shares exactly, so the default 50 rows never list them."""
    svc = unique("find")
    left, right = {}, {}
    for i in range(300):
        g, k = i % 3, i // 3
        stack = "main;mod.Handler%d;leaf%03d" % (g, i)
        left[stack] = 50 + i
        right[stack] = 50 + g + 3 * (99 - k)
    for side in (left, right):
        side["main;mod.Handler0;\u00c4rger.parse"] = 1
        side["main;mod.Handler1;\u00e4rger.PARSE"] = 1
    for version, stacks in (("v1", left), ("v2", right)):
        for w in range(6):
            t = FROM + 10 * w
            r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s}" % (svc, version),
                            **{"from": t + 1}, until=t + 2)
            assert r.status == 200, r
    return svc


FIND = push_search_service()


def test_search_finds_functions_beyond_the_limit():
    left, right = q(FIND, "v1"), q(FIND, "v2")
    every = report(NODE, left, right, limit=1000)
    assert every["functionCount"] == 1 + 3 + 300 + 2 and "matchCount" not in every, every
    assert len(every["functions"]) == every["functionCount"]
    names = [f["name"] for f in report(NODE, left, right)["functions"]]
    assert len(names) == 50 and "mod.Handler0" not in names, names  # the default 50
    for search in ("handler", "HANDLER1", "mod.h", "\u00e4rger", "\u00c4RGER", "parse",
                   "leaf07", "leaf", "r.p", ".", "leaf0*", "nothing-like-it"):
        doc = report(NODE, left, right, search=search)
        want = [f for f in every["functions"] if fold(search) in fold(f["name"])]
        assert doc["matchCount"] == len(want), (search, doc["matchCount"], len(want))
        for k in ("functionCount", "tested", "leftTicks", "rightTicks", "leftBuckets"):
            assert doc[k] == every[k], (search, k, doc[k], every[k])
        # the same rows, values, p values and marks as without a search, in its order
        assert doc["functions"] == want[:50], (search, doc["functions"][:3], want[:3])
    # only A-Z fold: the umlauts match as they are
    assert [f["name"] for f in report(NODE, left, right, search="\u00e4")["functions"]] == \
        ["\u00e4rger.PARSE"]
    doc = report(NODE, left, right, search="leaf", limit=3)
    assert doc["matchCount"] == 300 and len(doc["functions"]) == 3, doc
    assert doc["functions"] == [f for f in every["functions"] if "leaf" in f["name"]][:3]
    assert report(NODE, left, right, search="") == report(NODE, left, right)  # empty: none


def test_search_within_a_kept_report():
    """A search naming its report (reportId) is answered from the report the
    node kept, with exactly the answer computed afresh; an id that is not
    the request's own (another range, made up) or a report no longer kept
    computes it again, and the answer names the request's own report."""
    left, right = q(FIND, "v1"), q(FIND, "v2")
    first = report(NODE, left, right, limit=200)
    rid = first["reportId"]
    assert len(rid) == 16 and int(rid, 16) >= 0, rid
    assert report(NODE, left, right, limit=200)["reportId"] == rid  # the same inputs, the same id
    other = report(NODE, left, right, lu=FROM + 50)["reportId"]  # another range: another report
    assert other != rid
    hits = NODE.metric("flamedb_report_cache_hits_total")
    misses = NODE.metric("flamedb_report_cache_misses_total")
    searches = ("handler", "HANDLER1", "leaf07", "leaf", "\u00e4rger", "nothing-like-it", "")
    for search in searches:
        for limit in ("3", "200", "1000"):
            fresh = report(NODE, left, right, search=search, limit=limit)
            kept = report(NODE, left, right, search=search, limit=limit, reportId=rid)
            assert kept == fresh, (search, limit)
            assert kept["reportId"] == rid
    assert NODE.metric("flamedb_report_cache_hits_total") == hits + 3 * len(searches)
    assert NODE.metric("flamedb_report_cache_misses_total") == misses
    # an id of other inputs, or of nothing: computed afresh, named as its own
    for wrong in (other, "0123456789abcdef", "x"):
        doc = report(NODE, left, right, search="leaf", reportId=wrong)
        assert doc == report(NODE, left, right, search="leaf") and doc["reportId"] == rid, wrong
    assert NODE.metric("flamedb_report_cache_hits_total") == hits + 3 * len(searches)
    assert NODE.metric("flamedb_report_cache_bytes") > 0
    assert NODE.metric("flamedb_report_cache_entries") >= 2


def push_small(node):
    rng = random.Random(3)
    for version, share in (("v1", 0.3), ("v2", 0.6)):
        for w in range(6):
            t = FROM + 10 * w
            r = node.ingest(folded(window_stacks(rng, share)), name="svc.cpu{version=%s}" % version,
                            **{"from": t + 1}, until=t + 2)
            assert r.status == 200, r


def test_report_cache_bounded_and_off():
    """report-cache-bytes bounds what a node keeps: at 0 nothing (every
    search computes the report again, with the same answer); with room for
    one report, the next one evicts it and a search naming it is computed
    again, transparently."""
    left, right = q("svc", "v1"), q("svc", "v2")
    with Node(name="cachesize") as node:  # how many bytes one report takes
        push_small(node)
        report(node, left, right)
        one = int(node.metric("flamedb_report_cache_bytes"))
        assert 0 < one < 64 * 1024, one
    for size, kept in ((0, 0), (one * 3 // 2, 1)):
        with Node(name="cache%d" % size, args=["--report-cache-bytes", str(size)]) as node:
            push_small(node)
            a = report(node, left, right)
            b = report(node, left, right, lu=FROM + 50)  # a second report: evicts the first
            assert node.metric("flamedb_report_cache_entries") == kept
            assert node.metric("flamedb_report_cache_bytes") <= size
            again = report(node, left, right, search="handle", reportId=a["reportId"])
            assert again == report(node, left, right, search="handle"), again
            assert node.metric("flamedb_report_cache_hits_total") == 0
            assert node.metric("flamedb_report_cache_misses_total") == 1
            if kept:  # a, computed again, evicted b; now a is found
                assert node.metric("flamedb_report_cache_evictions_total") == 2
                doc = report(node, left, right, search="handle", reportId=a["reportId"])
                assert doc == again and node.metric("flamedb_report_cache_hits_total") == 1
                doc = report(node, left, right, lu=FROM + 50, search="gc", reportId=b["reportId"])
                assert doc["reportId"] == b["reportId"]
                assert node.metric("flamedb_report_cache_misses_total") == 2


def test_bad_search_is_400():
    base = dict(leftQuery=q(FIND, "v1"), rightQuery=q(FIND, "v2"), leftFrom=FROM,
                leftUntil=UNTIL, rightFrom=FROM, rightUntil=UNTIL)
    r = NODE.query("/api/diff", search="x" * 1025, **base)
    assert r.status == 400 and "'search'" in r.json()["message"], r
    assert "longer than 1024" in r.json()["message"], r
    assert NODE.query("/api/diff", search="x" * 1024, **base).status == 200
    path = "/api/diff?" + urllib.parse.urlencode(base)
    for raw in ("%FF", "ab%C3", "%ED%A0%80"):  # not UTF-8; a surrogate
        r = NODE.get(path + "&search=" + raw)
        assert r.status == 400 and "UTF-8" in r.json()["message"], (raw, r)


def test_flamectl_diff():
    ctl = os.environ.get("FLAMECTL_BIN", os.path.join(harness.ROOT, "build", "bin", "flamectl"))
    if not os.access(ctl, os.X_OK):
        print("    flamectl not built: skipped")
        return
    out = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "diff", q(SVC, "v1"),
                          q(SVC, "v2"), "--from", str(FROM), "--until", str(UNTIL),
                          "--limit", "3"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["CHANGE", "LEFT%", "RIGHT%", "LEFT", "RIGHT", "P", "SIG",
                                "FUNCTION"], out.stdout
    row = lines[1].split()
    assert row[0].startswith("+") and row[0].endswith("pp"), out.stdout
    assert row[-2:] == ["yes", "handle"], out.stdout
    assert len(lines) == 5 and "(20 buckets)" in lines[-1], out.stdout  # header, 3 rows, summary
    out = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "diff", q(SVC, "v1"),
                          q(SVC, "v2"), "--left-from", str(FROM), "--left-until",
                          str(FROM + 100), "--right-from", str(FROM), "--right-until",
                          str(UNTIL)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "over 100s (10 buckets)" in out.stdout, out.stdout
    out = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "diff", q(FIND, "v1"),
                          q(FIND, "v2"), "--from", str(FROM), "--until", str(UNTIL), "--search",
                          "HANDLER", "--limit", "2"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4, out.stdout  # header, 2 rows, summary
    assert [ln.split()[-1] for ln in lines[1:3]] == ["mod.Handler0", "mod.Handler1"], out.stdout
    assert "; 306 functions, 3 matching the search, " in lines[-1], out.stdout


def test_three_nodes_same_answer():
    with Cluster(3, rf=2, args=FAST_FORMATION) as c:
        rng = random.Random(5)
        for version, share in (("v1", 0.3), ("v2", 0.6)):
            for w in range(12):
                node = c.nodes[w % 3]
                t = FROM + 10 * w
                r = node.ingest(folded(window_stacks(rng, share)),
                                name="svc.cpu{version=%s,pod=p%d}" % (version, w % 2),
                                **{"from": t + 1}, until=t + 2)
                assert r.status == 200, r
        left, right = q("svc", "v1"), q("svc", "v2")
        bodies = set()
        for node in c.nodes:
            r = node.query("/api/diff", leftQuery=left, rightQuery=right, leftFrom=FROM,
                           leftUntil=FROM + 120, rightFrom=FROM, rightUntil=FROM + 120)
            assert r.status == 200, r
            bodies.add(r.body)
        assert len(bodies) == 1, bodies
        found = {node.query("/api/diff", leftQuery=left, rightQuery=right, leftFrom=FROM,
                            leftUntil=FROM + 120, rightFrom=FROM, rightUntil=FROM + 120,
                            search="A").body for node in c.nodes}
        assert len(found) == 1, found  # the search runs where the report is made
        doc = report(c.nodes[0], left, right, lu=FROM + 120, ru=FROM + 120)
        assert doc["functions"][0]["name"] == "handle" and doc["functions"][0]["significant"]
        assert "partial" not in doc
        c.kill(1)
        c.kill(2)
        c.wait_state(1, "down", observers=[0])
        c.wait_state(2, "down", observers=[0])
        r = c.nodes[0].query("/api/diff", leftQuery=left, rightQuery=right, leftFrom=FROM,
                             leftUntil=FROM + 120, rightFrom=FROM, rightUntil=FROM + 120)
        assert r.status == 200, r
        h = r.headers.get("x-flamedb-partial")
        # The service's few shard tokens may all have a replica on n0 (the ring is
        # random): then the answer is complete and must be exact; otherwise it says
        # which side is partial. Never silently short.
        if h is None:
            assert "partial" not in r.json() and r.body == bodies.pop(), r.headers
        else:
            assert "left: ranges=" in h and "right: " in h, (r, r.headers)
            assert r.json()["partial"] is True
            # a missing shard token may hold none of these few series: at most the total
            assert r.json()["leftTicks"] <= doc["leftTicks"]


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        NODE.cleanup()
