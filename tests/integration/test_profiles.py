#!/usr/bin/env python3
"""Single stored profiles (issue #7, "Single profiles"):

- one node: two distinct profiles of one series pushed into the same 10 s
  window, plus one of another series; GET /api/profiles lists all three,
  newest first, with ids that GET /api/profiles/ID opens as exactly that
  push (folded stacks, JSON ticks, pprof totals), never the window's sum;
  unknown ids are 404, malformed ones 400; flamectl profiles prints the
  table and flamectl profile fetches one (pprof to a file that go tool pprof
  opens when go is installed, and the project's pprof reader otherwise);
- 3 nodes, RF 2: the same from every node, each profile listed exactly
  once, same bytes everywhere, one copy (never the sum of the replicas'),
  and still exact with one node killed (the other replica answers);
- 3 nodes, RF 1: a node that stored nothing at all (its storage wrote no
  series) opens every profile through the ring;
- 3 nodes, RF 2, --shard-by-profile 1: a CPU pprof's two sample types on
  one token, accepted by every replica, each opening exactly.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import harness
from cluster import FAST_FORMATION, Cluster
from profiles import Pprof, pprof_totals

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SCALE = 10**7  # folded .cpu at the default 100 Hz: 1e9/100 ns per sample
QUERY_TIMEOUT_ARGS = ["--query-timeout", "3000ms"] + FAST_FORMATION
CTL = os.environ.get("FLAMECTL_BIN", os.path.join(harness.ROOT, "build", "bin", "flamectl"))

PUSHES = [  # (series name, offset in the window, folded body)
    ("shop.cpu{pod=a}", 1, "main;handle;db.query 30\nmain;handle;json.encode 5\nmain;gc 2\n"),
    ("shop.cpu{pod=a}", 4, "main;handle;db.query 7\nmain;serve 40\n"),
    ("shop.cpu{pod=b}", 2, "main;serve 11\nmain;gc 3\n"),
]


def stacks(text, scale=1):
    """{stack: value} of folded text (values times scale)."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            stack, v = line.rsplit(" ", 1)
            out[stack] = out.get(stack, 0) + int(v) * scale
    return out


def window_start():
    """A 10 s window two minutes ago: inside every retention."""
    return (int(time.time()) - 120) // 10 * 10


def push(nodes, t0):
    for i, (name, off, body) in enumerate(PUSHES):
        node = nodes[i % len(nodes)]
        r = node.ingest(body.encode(), name=name, **{"from": t0 + off}, until=t0 + off + 10)
        assert r.status == 200, "push %d: %r" % (i, r)


def listing(node, t0):
    r = node.query("/api/profiles", query=CPU + '{service_name="shop"}', **{"from": t0 - 10},
                   until=t0 + 20)
    assert r.status == 200, r
    return r


def check_listing(doc, t0):
    """The entries, newest first, matched to PUSHES: [(push index, id)]."""
    got = doc["profiles"]
    assert len(got) == len(PUSHES) and doc["truncated"] is False, doc
    want = sorted(range(len(PUSHES)), key=lambda i: -PUSHES[i][1])
    out = []
    for e, i in zip(got, want):
        assert e["time"] == t0 + PUSHES[i][1], (e, i)
        assert re.fullmatch(r"[0-9a-f]{80}", e["id"]), e
        assert e["id"].endswith(e["profile_id"]), e
        assert e["total"] == sum(stacks(PUSHES[i][2], SCALE).values()), e
        assert e["labels"]["pod"] == re.search(r"pod=(\w)", PUSHES[i][0]).group(1), e
        out.append((i, e["id"]))
    return out


def open_profile(node, pid, fmt="folded"):
    return node.get("/api/profiles/%s?format=%s" % (pid, fmt))


def check_open(node, idx, pid):
    """The profile opens as exactly its own push, in every format."""
    want = stacks(PUSHES[idx][2], SCALE)
    r = open_profile(node, pid)
    assert r.status == 200, r
    assert stacks(r.body.decode()) == want, (idx, r.body)
    r = open_profile(node, pid, "json")
    assert r.status == 200, r
    fb = r.json()
    assert fb["flamebearer"]["numTicks"] == sum(want.values()), fb
    assert fb["metadata"]["name"] == "cpu", fb["metadata"]
    r = open_profile(node, pid, "pprof")
    assert r.status == 200 and r.body[:2] == b"\x1f\x8b", r
    assert pprof_totals(r.body) == {"cpu/nanoseconds": sum(want.values())}, pprof_totals(r.body)
    for fmt, marker in (("svg", b"<svg"), ("speedscope", b"speedscope")):
        r = open_profile(node, pid, fmt)
        assert r.status == 200 and marker in r.body[:400], (fmt, r.body[:200])
    return r


def check_bad_ids(node, pid):
    other = pid[:-1] + ("0" if pid[-1] != "0" else "1")
    r = open_profile(node, other)
    assert r.status == 404 and b"not stored" in r.body, r
    for bad in ("xyz", pid[:-1], pid + "0", "g" + pid[1:]):
        r = open_profile(node, bad)
        assert r.status == 400 and b"profile id" in r.body, (bad, r)
    r = open_profile(node, pid, "top")
    assert r.status == 400, r
    # the listing's profile_id (its last 32 digits, what the web UI's list
    # shows) is not the id to open: the reason says which one is
    r = open_profile(node, pid[-32:])
    assert r.status == 400 and b"profile_id" in r.body and b"80 hex digits" in r.body, r.body


def ctl(node, *args):
    p = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % node.port] + list(args),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout


def check_flamectl(node, t0, ids):
    out = ctl(node, "profiles", CPU + '{service_name="shop"}', "--from", str(t0 - 10),
              "--until", str(t0 + 20), "--limit", "10").decode()
    rows = [line for line in out.splitlines() if re.search(r"\b[0-9a-f]{80}\b", line)]
    assert [re.search(r"\b([0-9a-f]{80})\b", line).group(1) for line in rows] == \
        [pid for _, pid in ids], out
    assert "pod=a" in rows[0] and "3 profiles" in out, out
    # the time a row prints (UTC) is a time --from/--until take back: up to the
    # newest row's time the range holds the whole window, all three pushes
    printed = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s", rows[0]).group(1)
    folded = ctl(node, "query", CPU + '{service_name="shop"}', "--from", str(t0 - 10),
                 "--until", printed, "--output", "folded").decode()
    want = {}
    for _, _, body in PUSHES:
        for k, v in stacks(body, SCALE).items():
            want[k] = want.get(k, 0) + v
    assert stacks(folded) == want, (printed, folded)
    idx, pid = ids[0]
    assert stacks(ctl(node, "profile", pid).decode()) == stacks(PUSHES[idx][2], SCALE)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "one.pb.gz")
        ctl(node, "profile", pid, "--output", "pprof", "-o", path)
        with open(path, "rb") as f:
            data = f.read()
        total = sum(stacks(PUSHES[idx][2], SCALE).values())
        assert pprof_totals(data) == {"cpu/nanoseconds": total}
        go = shutil.which("go")
        if go is None:
            print("  (go not installed: pprof checked with the project's reader only)")
            return
        p = subprocess.run([go, "tool", "pprof", "-raw", path], capture_output=True, timeout=120,
                           env=dict(os.environ, HOME=d, GOCACHE=os.path.join(d, "gocache")))
        assert p.returncode == 0, p.stderr[-500:]
        assert b"db.query" in p.stdout and b"serve" in p.stdout, p.stdout[-500:]


def test_single_node():
    t0 = window_start()
    with harness.Node(name="single") as node:
        push([node], t0)
        ids = check_listing(listing(node, t0).json(), t0)
        for idx, pid in ids:
            check_open(node, idx, pid)
        # the window itself holds the sum of the two pushes of pod a
        r = node.render(CPU + '{pod="a"}', frm=t0, until=t0 + 10, fmt="folded")
        both = stacks(PUSHES[0][2], SCALE)
        for k, v in stacks(PUSHES[1][2], SCALE).items():
            both[k] = both.get(k, 0) + v
        assert stacks(r.body.decode()) == both, r.body
        check_bad_ids(node, ids[0][1])
        r = node.get("/api/profiles/%s" % ids[0][1], headers={"X-Scope-OrgID": "other"})
        assert r.status == 404, r  # tenants stay sealed: the id does not cross them
        limited = node.query("/api/profiles", query=CPU + "{}", **{"from": t0 - 10},
                             until=t0 + 20, limit=2).json()
        assert [e["id"] for e in limited["profiles"]] == [pid for _, pid in ids[:2]], limited
        assert limited["truncated"] is True, limited
        check_flamectl(node, t0, ids)


def written(node):
    return node.metric("flamedb_storage_series_written_total")


def test_three_nodes_rf2():
    t0 = window_start()
    with Cluster(3, rf=2, args=QUERY_TIMEOUT_ARGS) as c:
        push(c.nodes, t0)
        assert sum(written(n) for n in c.nodes) == 2 * len(PUSHES)  # two replicas each
        bodies = [listing(n, t0).body for n in c.nodes]
        assert bodies[0] == bodies[1] == bodies[2], bodies
        ids = check_listing(listing(c.nodes[0], t0).json(), t0)
        for node in c.nodes:
            for idx, pid in ids:
                check_open(node, idx, pid)  # one replica's copy, not the sum of two
            answers = {open_profile(node, pid).body for _, pid in ids}
            assert len(answers) == len(ids)
        check_bad_ids(c.nodes[2], ids[1][1])
        c.kill(0)  # every series keeps one live replica
        for node in c.nodes[1:]:
            for idx, pid in ids:
                check_open(node, idx, pid)


def test_three_nodes_rf1_from_a_node_without_data():
    t0 = window_start()
    with Cluster(3, rf=1, args=QUERY_TIMEOUT_ARGS) as c:
        push(c.nodes, t0)
        counts = [written(n) for n in c.nodes]
        assert sum(counts) == len(PUSHES), counts
        empty = [n for n, k in zip(c.nodes, counts) if k == 0]
        assert empty, counts  # two series, three nodes: one node holds none of them
        for node in empty + c.nodes:
            ids = check_listing(listing(node, t0).json(), t0)
            for idx, pid in ids:
                check_open(node, idx, pid)


def test_three_nodes_shard_by_profile():
    """--shard-by-profile 1 on every node, RF 2: a CPU pprof's two sample
    types land on one token, every replica accepts them (its token check
    places series the same way), and each profile opens on every node as
    its own push in both types (the nanoseconds tree stored as a factor of
    the samples tree)."""
    t0 = window_start()
    SAMPLES = "process_cpu:samples:count:cpu:nanoseconds"
    rows = [(["main", "handle", "db.query"], 3), (["main", "gc"], 1), (["main", "serve"], 9)]
    with Cluster(3, rf=2, args=QUERY_TIMEOUT_ARGS + ["--shard-by-profile", "1"]) as c:
        for i in range(4):
            p = Pprof([("samples", "count"), ("cpu", "nanoseconds")])
            for stack, n in rows:
                p.add(stack, [n + i, (n + i) * SCALE])
            r = c.nodes[i % 3].ingest(p.encode_gz(), name="shop{pod=a}", format="pprof",
                                      **{"from": t0 + 2 * i}, until=t0 + 2 * i + 1)
            assert r.status == 200, r
        assert sum(written(n) for n in c.nodes) == 2 * 2 * 4  # replicas x types x pushes
        tokens = set()
        for ptype, scale in ((CPU, SCALE), (SAMPLES, 1)):
            r = c.nodes[0].query("/api/profiles", query=ptype + '{service_name="shop"}',
                                 **{"from": t0 - 10}, until=t0 + 20)
            assert r.status == 200, r
            got = r.json()["profiles"]
            assert len(got) == 4, got
            for e in got:
                i = (e["time"] - t0) // 2
                tokens.add(e["id"][:16])
                want = {";".join(st): (n + i) * scale for st, n in rows}
                for node in c.nodes:
                    r = open_profile(node, e["id"])
                    assert r.status == 200, r
                    assert stacks(r.body.decode()) == want, (ptype, i, r.body)
        assert len(tokens) == 1, tokens  # both types of one pod: one token


if __name__ == "__main__":
    harness.run_tests(dict(globals()))
