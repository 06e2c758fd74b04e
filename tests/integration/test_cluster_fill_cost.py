#!/usr/bin/env python3
"""What the window check's fill of old windows costs on a large mixed range,
with real processes (issue #10, docs/cluster.md "Old windows no profile id
names", docs/benchmarks.md).

2 nodes RF 2 write quorum 2, hinted handoff off, --profile-retention 4h, so
no profile id names profiles days old: only their windows are left. Every
range holds, for N services (FLAMEDB_FILL_SERVICES, 96 by default):

- shared: acknowledged pushes 3 to 6 days old and recent ones, held alike
  by both nodes (the recent ones are past what a fill copies);
- one failed push (503, stored on its coordinator alone) of each of N/2
  services through n0 while n1 is stopped, and of N/2 others through n1
  while n0 is stopped: series only one node holds;
- one failed push of every shared service, 10 days old through n0 and 12
  days old through n1: series both hold, with windows only one holds.

Neither copy holds the other, so each node's window check fills from the
other every window it lacks. `flamectl cluster repair` is timed, with the
bytes each node received and stored and the windows it copied; then each
node alone answers every push, each counted once.
"""
import os
import re
import time

import harness
from cluster import Cluster
from test_cluster_join import big_body, metric
from test_cluster_old_windows import (ARGS, alone, no_marks, push_failing, push_ok,
                                      repair_printed)

DAY = 86400
SUMMARY_BYTES = 32  # a hashed summary: its key past the one before, a hash, framing
ID_BYTES = 160      # a window summarised again with its ids
CONVERGED_BYTES = 64 * 1024  # what a repair of two converged replicas may receive


def shared_pushes(c, svcs, now):
    """Per service four pushes 3 to 6 days old and four recent ones, both
    nodes up (acknowledged); {service: samples}."""
    jobs = [(k, svc, d) for k, svc in enumerate(svcs) for d in range(8)]

    def push(job):
        k, svc, d = job
        t = now - (3 + d) * DAY + 37 * k if d < 4 else now - 600 * (d - 3) + k
        body, v = big_body(k * 8 + d, lines=8)
        push_ok(c, 0, body, svc, t)
        return svc, v
    want = {svc: 0 for svc in svcs}
    for svc, v in harness.at_once(push, jobs):
        want[svc] += v
    return want


def counters(c):
    names = ("flamedb_repair_bytes_streamed_total", "flamedb_repair_bytes_stored_total",
             "flamedb_repair_window_windows_filled_total",
             "flamedb_repair_window_windows_inexact_total",
             "flamedb_repair_fill_summary_bytes_total", "flamedb_repair_fill_summaries_total",
             "flamedb_repair_fill_summary_ids_total", "flamedb_repair_fill_tree_alike_total")
    return [[metric(c, i, n) for n in names] for i in (0, 1)]


def first_round(out):
    """[(bytes received, ms)] of n0's and n1's passes in flamectl's first round."""
    got = {}
    for line in out.split("round 2:")[0].splitlines():
        m = re.match(r"\s+(n[01])\s+complete .*\((\d+) bytes\).* (\d+) ms$", line)
        if m:
            got[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    assert len(got) == 2, out
    return [got["n0"], got["n1"]]


def load_mixed(c, n, now):
    """The mixed range of the module's text for n shared services; {service:
    samples acknowledged or stored}."""
    shared = [harness.unique("fsh%d" % k) for k in range(n)]
    only = [[harness.unique("fo%d_%d" % (side, k)) for k in range(n // 2)] for side in (0, 1)]
    t0 = time.monotonic()
    want = shared_pushes(c, shared, now)
    no_marks(c)
    for side, (stopped, via) in enumerate(((1, 0), (0, 1))):
        at = {svc: now - (10 + 2 * side) * DAY + 53 * k for k, svc in enumerate(shared)}
        at.update({svc: now - (4 + side) * DAY + 61 * k for k, svc in enumerate(only[side])})
        failed, _ = push_failing(c, via, [stopped], shared + only[side], 8000 + 1000 * side,
                                 now, at=at, hold=1.2)
        for svc, v in failed.items():
            want[svc] = want.get(svc, 0) + v
        c.wait_state(stopped, "active", observers=[via], timeout=30)
        time.sleep(1.2)  # past the write timeout: the miss is marked by then
        no_marks(c)
    print("    %d services, %d series only one node holds; loaded in %.1f s"
          % (len(want), len(only[0]) + len(only[1]), time.monotonic() - t0))
    return want


def each_alone_exact(c, want, now):
    """Each node alone (the other stopped) answers every push, counted once."""
    for i, other in ((0, 1), (1, 0)):
        got = alone(c, i, other, sorted(want), now - 14 * DAY, now + 60)
        wrong = sorted((s, got[s], want[s]) for s in want if got[s] != want[s])
        print("    n%d alone: %s" % (i, "exact" if not wrong else wrong[:4]))
        assert not wrong, "n%d alone answers %r" % (i, wrong[:10])


def fill_mixed(n, extra=((), ())):
    """A 2-node cluster (node i started with extra[i] besides the module's
    arguments) loaded with load_mixed(n), repaired with flamectl cluster
    repair and checked exact; [[counters' deltas] per node], the first
    round's [(bytes, ms)] per node."""
    now = int(time.time())
    args = ARGS + ["--profile-retention", "4h", "--repair-windows-interval", "0"]
    with Cluster(2, rf=2, write_quorum=2, args=args, start=False) as c:
        for x in extra:
            c.add_node(extra=x)
        c.wait_converged()
        want = load_mixed(c, n, now)
        before = counters(c)
        took, out = repair_printed(c)
        after = counters(c)
        d = [[a - b for a, b in zip(after[i], before[i])] for i in (0, 1)]
        first = first_round(out)
        print("    flamectl cluster repair took %.2f s" % took)
        for i in (0, 1):
            print("    n%d: received %d bytes, stored %d bytes, %d window(s) copied, %d inexact; "
                  "its first pass received %d bytes in %d ms"
                  % (i, d[i][0], d[i][1], d[i][2], d[i][3], first[i][0], first[i][1]))
        summ = [d[0][k] + d[1][k] for k in (4, 5, 6)]
        print("    fill summaries: %d window(s) looked at (%d alike by the tree) in %d bytes "
              "(%.1f bytes a window), %d asked again by ids"
              % (summ[1], d[0][7] + d[1][7], summ[0], summ[0] / max(summ[1], 1), summ[2]))
        assert d[0][2] + d[1][2] > 0, d  # one fills; the other may then take its copy whole
        each_alone_exact(c, want, now)
        # converged: another repair finds the copies alike and exchanges
        # (almost) nothing: no fill runs, no window travels
        again = counters(c)
        _, out2 = repair_printed(c)
        conv = [[a - b for a, b in zip(counters(c)[i], again[i])] for i in (0, 1)]
        print("    converged, repaired again: n0 received %d bytes (%d of summaries), "
              "n1 %d (%d)" % (conv[0][0], conv[0][4], conv[1][0], conv[1][4]))
        assert all(conv[i][0] <= CONVERGED_BYTES and conv[i][2] == 0 for i in (0, 1)), out2
        return d, first


def test_fill_of_a_large_mixed_range():
    n = int(os.environ.get("FLAMEDB_FILL_SERVICES", "96"))
    d, first = fill_mixed(n)
    for i in (0, 1):
        # the fill asks for the windows it stores only: before, its two
        # walks of every old window received about ten times what it
        # stored (and the stores counted here include a regain's)
        if d[i][2] > 0:
            assert first[i][0] <= 4 * d[i][1], (i, first[i], d[i])
    # most old windows are held alike by both (the shared pushes): two
    # copies that agree on a window exchange its key (past the bytes it
    # shares with the one before) and a hash only; ids travel only for the
    # windows whose hashes differ (before, every summary carried its
    # tenant, parts, total and ids: 118 bytes a window here)
    summ = [d[0][k] + d[1][k] for k in (4, 5, 6)]
    assert summ[1] > 0 and summ[1] - summ[2] >= summ[1] // 2, summ
    assert summ[0] <= SUMMARY_BYTES * summ[1] + ID_BYTES * summ[2], summ


def few_missing(n, few, extra=((), ())):
    """A 2-node cluster (node i started with extra[i]) holding n services'
    old windows alike, but for one failed push 10 days old of each of `few`
    services through n0 while n1 was stopped: n1 lacks a few windows.
    Repaired and checked exact; [[counters' deltas] per node]."""
    now = int(time.time())
    args = ARGS + ["--profile-retention", "4h", "--repair-windows-interval", "0"]
    with Cluster(2, rf=2, write_quorum=2, args=args, start=False) as c:
        for x in extra:
            c.add_node(extra=x)
        c.wait_converged()
        shared = [harness.unique("fkw%d" % k) for k in range(n)]
        want = shared_pushes(c, shared, now)
        no_marks(c)
        at = {svc: now - 10 * DAY + 53 * k for k, svc in enumerate(shared[:few])}
        failed, _ = push_failing(c, 0, [1], shared[:few], 9000, now, at=at, hold=1.2)
        for svc, v in failed.items():
            want[svc] += v
        c.wait_state(1, "active", observers=[0], timeout=30)
        time.sleep(1.2)  # past the write timeout: the miss is marked by then
        no_marks(c)
        before = counters(c)
        took, _ = repair_printed(c)
        after = counters(c)
        d = [[a - b for a, b in zip(after[i], before[i])] for i in (0, 1)]
        summ = [d[0][k] + d[1][k] for k in (4, 5, 6)]
        alike = d[0][7] + d[1][7]
        print("    %d of %d services missing a window on n1; repair took %.2f s; fill summaries: "
              "%d window(s) looked at (%d alike by the tree) in %d bytes (%.1f bytes a window)"
              % (few, n, took, summ[1], alike, summ[0], summ[0] / max(summ[1], 1)))
        each_alone_exact(c, want, now)
        return d, alike


def test_fill_of_a_few_missing_windows():
    """Copies alike but for a few old windows one lacks (stream protocol 4):
    the hash tree finds most of the range's windows alike by their bucket,
    and only the buckets that differ send their windows' hashes; before
    (protocol 3) every window of the range sent a key and a hash."""
    n = int(os.environ.get("FLAMEDB_FILL_SERVICES", "96"))
    v = os.environ.get("FLAMEDB_FILL_STREAM_VERSION")  # "3": measure as before
    cap = ["--cluster-stream-version", v] if v else []
    # 8 tokens a node: the ranges holding a difference then hold 150 to 550 old
    # windows (4 to 10 bytes a window); with the default 128 they held 38 to
    # 180 as the tokens fell, and the tree's cost (growing as the square root
    # of a range's windows) came to 7 to 18 bytes a window
    few = ["--tokens", "8"] + cap
    d, alike = few_missing(n, 2, (few, few))
    summ = [d[0][k] + d[1][k] for k in (4, 5, 6)]
    assert summ[1] > 0, summ  # the holds probe (or a fill) looked at the ranges
    if not v:
        assert alike >= summ[1] // 2, (alike, summ)
        assert summ[0] <= 16 * summ[1], summ  # about 23 bytes a window before


def test_fill_in_small_key_batches():
    """--repair-fill-keys-batch 3: the fill asks for its windows three keys a
    request, and still ends exact."""
    d, _ = fill_mixed(8, (["--repair-fill-keys-batch", "3"], ["--repair-fill-keys-batch", "3"]))
    assert d[0][2] + d[1][2] > 3, d  # more windows than one batch


def test_fill_between_stream_versions():
    """A rolling upgrade: a node capped at an older stream protocol
    (--cluster-stream-version) fills from and for a node of the newest,
    exactly. Protocol 1 knows no fill fields (every window travels whole),
    protocol 2 summarises with ids, and neither side is sent hashes."""
    for old, who in ((1, 0), (2, 0), (1, 1), (3, 0), (3, 1)):
        print("    n%d at stream protocol %d, the other at the newest:" % (who, old))
        cap = ["--cluster-stream-version", str(old)]
        d, _ = fill_mixed(8, (cap, []) if who == 0 else ([], cap))
        hashed = d[0][5] + d[1][5]
        summ_bytes = d[0][4] + d[1][4]
        alike = d[0][7] + d[1][7]
        if old == 1:  # no summaries either way: every window looked at whole
            assert hashed == 0 and summ_bytes == 0, d
        elif old == 3:  # hashes both ways, no tree
            assert hashed > 0 and alike == 0, (d, alike)
        else:  # summaries with ids both ways, no second look
            assert hashed > 0 and d[0][6] + d[1][6] == 0, d
            assert summ_bytes > SUMMARY_BYTES * hashed, d


if __name__ == "__main__":
    harness.run_tests(globals())
