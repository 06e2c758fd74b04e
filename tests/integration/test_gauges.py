#!/usr/bin/env python3
"""test_gauges.py — in-use memory is a gauge (docs/api.md, "Averaged
types"): heap profiles with known `inuse_space` values pushed at known
times from several pods; the render's timeline shows each bucket's average
profile (exact sum / exact count of profiles, rounded down) and its flame
graph the average profile of the range, with `aggregationType` "average"
in the metadata, while `alloc_space` of the same pushes still sums. The
same answers from one node, and from every node of a 3-node cluster (RF 2)
whose partials carry sums and counts, never averages. /api/label-shares of
an in-use type averages each label value's profiles the same way, per
bucket and over the range."""
import os
import subprocess
import time

from cluster import FAST_FORMATION, Cluster
from harness import Node, run_tests, unique
from profiles import Pprof

TYPES = [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"),
         ("inuse_space", "bytes")]
INUSE = "memory:inuse_space:bytes:space:bytes"
ALLOC = "memory:alloc_space:bytes:space:bytes"
T0 = (int(time.time()) - 7200) // 600 * 600  # a 10-minute boundary, two hours ago
PODS = ["p0", "p1", "p2"]
ZONES = {"p0": "a", "p1": "a", "p2": "b"}  # zone a: two series, whose profiles average together


def pushes():
    """[(pod, t, {stack: (alloc_space, inuse_space)})]: every pod every 10 s
    for a minute, except p2 which skips every other push (so buckets count
    different numbers of profiles)."""
    out = []
    for k in range(6):
        for j, pod in enumerate(PODS):
            if pod == "p2" and k % 2:
                continue
            out.append((pod, T0 + 10 * k, {
                ("main", "cache.Put"): (1000 + k, 7000 * (j + 1) + 13 * k),
                ("main", "serve", "buf.Grow"): (500, 1001 * (k + 1) + j),
            }))
    return out


def push(node, svc, pod, t, stacks):
    p = Pprof(TYPES, period_type=("space", "bytes"), period=524288)
    for stack, (alloc, inuse) in stacks.items():
        p.add(list(stack), [1, alloc, 1, inuse])
    r = node.ingest(p.encode_gz(), name="%s{pod=%s,zone=%s}" % (svc, pod, ZONES[pod]),
                    format="pprof",
                    **{"from": t, "until": t + 10})
    assert r.status == 200, r


def expected(data, frm, until, step):
    """Hand-computed answers: the timeline of averages per bucket, the
    flame graph's numTicks and cache.Put's total (averaged), and the sums."""
    buckets = {}
    tot_in = put_in = n = tot_alloc = 0
    for _, t, stacks in data:
        if not frm <= t < until:
            continue
        inuse = sum(v[1] for v in stacks.values())
        b = buckets.setdefault((t - frm) // step, [0, 0])
        b[0] += inuse
        b[1] += 1
        tot_in += inuse
        put_in += stacks[("main", "cache.Put")][1]
        tot_alloc += sum(v[0] for v in stacks.values())
        n += 1
    nb = (until - frm + step - 1) // step
    tl = [buckets[i][0] // buckets[i][1] if i in buckets else 0 for i in range(nb)]
    return tl, tot_in // n, put_in // n, tot_alloc


def shares_expected(data, frm, until, step, key):
    """Hand-computed label shares of inuse_space: per value of key(pod), its
    profiles' sum / their number over the range and per bucket (rounded
    down); the selection's total is all profiles' sum / their number; a
    value's share its average over the sum of the values' averages."""
    per = {}
    nb = (until - frm + step - 1) // step
    all_sum = all_n = 0
    for pod, t, stacks in data:
        if not frm <= t < until:
            continue
        inuse = sum(v[1] for v in stacks.values())
        v = per.setdefault(key(pod), {"sum": 0, "n": 0, "b": [[0, 0] for _ in range(nb)]})
        v["sum"] += inuse
        v["n"] += 1
        v["b"][(t - frm) // step][0] += inuse
        v["b"][(t - frm) // step][1] += 1
        all_sum += inuse
        all_n += 1
    out = {k: (v["sum"] // v["n"], [s // c if c else 0 for s, c in v["b"]]) for k, v in per.items()}
    return all_sum // all_n, out


def check_shares(node, svc, data, frm, until):
    q = INUSE + "{service_name=\"%s\"}" % svc
    for label, key in (("pod", lambda p: p), ("zone", lambda p: ZONES[p])):
        r = node.query("/api/label-shares", query=q, label=label, **{"from": frm}, until=until)
        assert r.status == 200, r
        j = r.json()
        whole, want = shares_expected(data, frm, until, 10, key)
        assert j["aggregationType"] == "average" and j["total"] == whole, (j["total"], whole)
        got = {v["value"]: (v["total"], v["timeline"]["samples"]) for v in j["values"]}
        assert got == want, (label, got, want)
        assert [v["total"] for v in j["values"]] == sorted(got[k][0] for k in got)[::-1]
        den = sum(t for t, _ in want.values())
        for v in j["values"]:
            assert abs(v["share"] - v["total"] / den) < 1e-5, (v, den)
        # a groupBy render's groups are the same averaged timelines
        r = node.render(q, frm=frm, until=until, groupBy=label)
        assert r.status == 200, r
        groups = {k: v["samples"] for k, v in r.json()["groups"].items()}
        assert groups == {k: v[1] for k, v in want.items()}, (groups, want)
    # p2 pushed at T0, T0+20, T0+40: (22003 + 24031 + 26059) / 3
    r = node.query("/api/label-shares", query=q, label="pod", **{"from": frm}, until=until)
    p2 = [v for v in r.json()["values"] if v["value"] == "p2"][0]
    assert p2["total"] == 24031 and p2["timeline"]["samples"] == [22003, 0, 24031, 0, 26059, 0]
    # the allocations of the same pushes still sum per value
    r = node.query("/api/label-shares", query=ALLOC + "{service_name=\"%s\"}" % svc,
                   label="zone", **{"from": frm}, until=until)
    j = r.json()
    assert j["aggregationType"] == "sum" and j["total"] == expected(data, frm, until, 10)[3], j


def node_total(fb, name):
    """Total of the first node named name in a flamebearer."""
    idx = fb["names"].index(name)
    for level in fb["levels"]:
        for i in range(0, len(level), 4):
            if level[i + 3] == idx:
                return level[i + 1]
    raise AssertionError("%s not in the flame graph" % name)


def check(node, svc, data):
    frm, until = T0, T0 + 60
    r = node.render(INUSE + "{service_name=\"%s\"}" % svc, frm=frm, until=until)
    assert r.status == 200, r
    j = r.json()
    tl, ticks, put, tot_alloc = expected(data, frm, until, 10)
    assert j["metadata"]["aggregationType"] == "average", j["metadata"]
    assert j["timeline"]["durationDelta"] == 10 and j["timeline"]["startTime"] == frm, j["timeline"]
    assert j["timeline"]["samples"] == tl, (j["timeline"]["samples"], tl)
    assert j["flamebearer"]["numTicks"] == ticks, (j["flamebearer"]["numTicks"], ticks)
    assert node_total(j["flamebearer"], "cache.Put") == put
    check_shares(node, svc, data, frm, until)
    # other formats divide each stack's self value by the profiles
    want = {}
    for _, t, stacks in data:
        for stack, v in stacks.items():
            want[stack] = want.get(stack, 0) + v[1]
    n = len([d for d in data if frm <= d[1] < until])
    r = node.render(INUSE + "{service_name=\"%s\"}" % svc, frm=frm, until=until, fmt="folded")
    assert r.status == 200, r
    got = {tuple(line.rsplit(" ", 1)[0].split(";")): int(line.rsplit(" ", 1)[1])
           for line in r.body.decode().splitlines() if line}
    assert got == {k: v // n for k, v in want.items()}, (got, want, n)
    r = node.query("/api/top", query=INUSE + "{service_name=\"%s\"}" % svc, **{"from": frm},
                   until=until)
    assert r.status == 200, r
    top = {f["name"]: f["self"] for f in r.json()["functions"]}
    assert top["cache.Put"] == want[("main", "cache.Put")] // n, (top, n)
    # flamectl says the values are the average profile in use, not a total
    ctl = os.environ.get("FLAMECTL_BIN")
    if ctl and os.access(ctl, os.X_OK):
        out = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % node.port, "query",
                              INUSE + "{service_name=\"%s\"}" % svc, "--from", str(frm),
                              "--until", str(until)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        last = out.stdout.splitlines()[-1]
        assert last.startswith("in use ") and "average profile" in last, out.stdout
        out = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % node.port, "shares",
                              INUSE + "{service_name=\"%s\"}" % svc, "pod", "--from", str(frm),
                              "--until", str(until)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        last = out.stdout.splitlines()[-1]
        assert last.startswith("in use ") and "average profile" in last, out.stdout
        # the shares are of the values' averages together, which it prints
        r = node.query("/api/label-shares", query=INUSE + "{service_name=\"%s\"}" % svc, label="pod",
                       **{"from": frm}, until=until)
        values = r.json()["values"]
        assert len(values) > 1, values
        together = sum(v["total"] for v in values)
        assert last.endswith("; shares of the values' averages, %s together" % mib(together)), (last, together)
        assert out.stdout.startswith("  AVG IN USE   SHARE  VALUE\n"), out.stdout
    # a diff compares the average profiles of its two ranges
    q = INUSE + "{service_name=\"%s\"}" % svc
    r = node.query("/pyroscope/render-diff", leftQuery=q, rightQuery=q, leftFrom=frm,
                   leftUntil=until, rightFrom=frm, rightUntil=frm + 30)
    assert r.status == 200, r
    assert r.json()["leftTicks"] == ticks, (r.json()["leftTicks"], ticks)
    assert r.json()["rightTicks"] == expected(data, frm, frm + 30, 10)[1]
    # one pod alone: its own average
    one = [d for d in data if d[0] == "p2"]
    r = node.render(INUSE + "{service_name=\"%s\",pod=\"p2\"}" % svc, frm=frm, until=until)
    tl1, ticks1, _, _ = expected(one, frm, until, 10)
    assert r.json()["timeline"]["samples"] == tl1 and r.json()["flamebearer"]["numTicks"] == ticks1
    # a day: 60 s buckets read from the 1-minute windows, one bucket holds all
    r = node.render(INUSE + "{service_name=\"%s\"}" % svc, frm=T0 - 86400 + 600, until=T0 + 600)
    j = r.json()
    step = j["timeline"]["durationDelta"]
    assert step == 60, step
    tl, ticks, _, _ = expected(data, j["timeline"]["startTime"], T0 + 600, step)
    assert j["timeline"]["samples"] == tl and j["flamebearer"]["numTicks"] == ticks
    # the allocations of the same pushes sum, as before
    r = node.render(ALLOC + "{service_name=\"%s\"}" % svc, frm=frm, until=until)
    j = r.json()
    assert j["metadata"]["aggregationType"] == "sum", j["metadata"]
    assert j["flamebearer"]["numTicks"] == tot_alloc
    assert sum(j["timeline"]["samples"]) == tot_alloc


def mib(v):
    """Bytes as flamectl prints them (1024-based, one decimal past B)."""
    units, d, i = ["B", "KiB", "MiB", "GiB", "TiB"], float(v), 0
    while d >= 1024 and i < 4:
        d, i = d / 1024, i + 1
    return ("%.1f %s" if i else "%.0f %s") % (d, units[i])


def test_one_node_averages_in_use_memory():
    # one anchor: the service aggregate holds two of the three pods, and the
    # whole-service render reads it while counting the members' profiles
    node = Node(name="gauges", args=["--aggregate-anchors", "1"]).start()
    svc = unique("gauge")
    data = pushes()
    for pod, t, stacks in data:
        push(node, svc, pod, t, stacks)
    check(node, svc, data)
    node.stop()


def test_uncounted_buckets_are_flagged():
    """A span selection keeps no profile counts: its buckets show sums, and
    the answer says how many buckets hold values it could not average."""
    node = Node(name="gaugespan").start()
    svc = unique("gaugespan")
    span = "00000000cafef00d"
    for k in range(3):
        p = Pprof(TYPES, period_type=("space", "bytes"), period=524288)
        p.add(["main", "cache.Put"], [1, 10, 1, 1000 * (k + 1)], {"span_id": span})
        r = node.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": T0 + 10 * k})
        assert r.status == 200, r
    r = node.render(INUSE + "{service_name=\"%s\",span_id=\"%s\"}" % (svc, span), frm=T0,
                    until=T0 + 60)
    assert r.status == 200, r
    j = r.json()
    assert j.get("uncountedBuckets") == 3, j.get("uncountedBuckets")
    assert j["timeline"]["samples"] == [1000, 2000, 3000, 0, 0, 0], j["timeline"]
    assert j["flamebearer"]["numTicks"] == 6000
    r = node.render(INUSE + "{service_name=\"%s\"}" % svc, frm=T0, until=T0 + 60)
    assert "uncountedBuckets" not in r.json() and r.json()["flamebearer"]["numTicks"] == 2000
    node.stop()


def test_averages_exact_past_profile_retention():
    """Profiles two hours old with a profile-retention of one hour keep no
    profile tree, but each window counts the profiles it holds (storage
    format 14): every bucket and the flame graph are averaged exactly, as
    within the retention, and no bucket is flagged. Before, all 6 buckets
    were `uncountedBuckets` and the flame graph showed the sum."""
    node = Node(name="gaugeold", args=["--profile-retention", "1h"]).start()
    svc = unique("gaugeold")
    data = pushes()
    for pod, t, stacks in data:
        push(node, svc, pod, t, stacks)
    r = node.query("/api/profiles", query=INUSE + "{service_name=\"%s\"}" % svc,
                   **{"from": T0, "until": T0 + 60})
    assert r.status == 200 and not r.json().get("profiles"), r.body[:300]  # no tree kept
    r = node.render(INUSE + "{service_name=\"%s\"}" % svc, frm=T0, until=T0 + 60)
    assert r.status == 200, r
    assert "uncountedBuckets" not in r.json(), r.json().get("uncountedBuckets")
    check(node, svc, data)
    node.stop()


def test_cluster_averages_from_exact_sums_and_counts():
    with Cluster(3, rf=2, args=FAST_FORMATION) as c:
        svc = unique("gaugec")
        data = pushes()
        for i, (pod, t, stacks) in enumerate(data):
            push(c.nodes[i % 3], svc, pod, t, stacks)
        for node in c.nodes:
            check(node, svc, data)


if __name__ == "__main__":
    run_tests(globals())
