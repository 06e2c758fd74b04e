#!/usr/bin/env python3
"""A replica whose mark went with a removed member (voided) as a stream
source, with real processes (issue #10, docs/cluster.md "A full repair
that no replica serves whole"). Profiles two hours old, older than the
seen span (--seen-retention 60s): only a window check, a copy streamed
whole or a union by profile id brings them to a replica. Hinted handoff
on; window checks on demand only (--repair-windows-interval 0), so the
voided replicas' checks are the ones their voided marks ask for.

- test_voided_copy_not_taken_whole: 3 nodes RF 3 write quorum 2. n2 is
  stopped (SIGSTOP) and misses old profiles acknowledged through n0, which
  hints n2; once n1 sees n0's hints_for list n2, n2 and n0 are killed (the
  writes queued for n2 die with it) and n2 started again. n1 is killed and
  started with a damaged DATA_DIR/regain.ring (a full repair: it cannot
  tell which ranges it holds short; its clear waits --join-settle 8s),
  then n0 is removed: its hint, the only word that n2 is short, goes with
  it and n2 waits for its window check (voided), listing itself. A node's
  listing of itself is no mark in the others' views, so before, n1's full
  repair cleared its copy, which held the writes, and streamed n2's short
  one whole: the writes were gone from every node and answers through n1
  and n2 were short and unflagged. With n2 refused as a source alone, n1
  waited for a whole source and n2's check for n1's sums (a full repair
  refuses them): both unread for good. Now n1 keeps its copy and unites it
  with n2's by profile id, its full repair converges, n2's check then
  compares with it, and both end exact alone;
- test_two_voided_replicas_converge: the same with 4 nodes RF 4 write
  quorum 2: n2 and n3 both miss the profiles (acknowledged by n0 and n1),
  so the removal of n0 voids two replicas of every range and n1 in its
  full repair has no whole source at all. Each answer is exact or flagged
  until all three are read again, then each alone is exact.
"""
import os
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_ack_missed import HINTS_ON, add, alone_exact, mark_on, marks, poll, wait_no_marks
from test_cluster_join import big_body, metric
from test_cluster_old_windows import preload, push_ok
from test_cluster_repair import ctl

SETTLE_S = 8
WAIT_S = 120


def miss(c, via, missing, svcs, seed, t, holder_seen):
    """One old profile per service acknowledged through `via` while the
    nodes `missing` are stopped (SIGSTOP); once node holder_seen's view
    shows via's hints_for listing each of them, they are killed (-9), so
    the writes queued for them die with them. {service: samples}."""
    out = {}
    for i in missing:
        c.nodes[i].proc.send_signal(signal.SIGSTOP)
    try:
        for k, svc in enumerate(sorted(svcs)):
            body, v = big_body(seed + k, lines=8)
            push_ok(c, via, body, svc, t + k)
            out[svc] = v
        for i in missing:
            wait_for("n%d hears n%d's hint for n%d" % (holder_seen, via, i),
                     lambda: mark_on(c, holder_seen, via, i), timeout=60)
    finally:
        for i in missing:
            c.kill(i)
    return out


def watch(c, nodes, want, frm, until, done, timeout):
    """Polls `nodes` until done() or timeout: [short unflagged answers],
    seconds taken, done()."""
    t0, bad = time.monotonic(), []
    while time.monotonic() - t0 < timeout:
        bad += poll(c, nodes, want, frm, until)[0]
        if done():
            return bad, time.monotonic() - t0, True
        time.sleep(0.3)
    return bad, time.monotonic() - t0, False


def voided_case(n, voided, prefix, seed):
    """n nodes RF n write quorum 2: the nodes `voided` miss old writes
    through n0 and lose n0's hints by its removal while n1 is in a full
    repair; every survivor must end exact alone, never short unflagged."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    args = HINTS_ON + ["--repair-windows-interval", "0"]
    with Cluster(n, rf=n, write_quorum=2, args=args) as c:
        want = preload(c, 0, prefix, now, 4 * n, n)
        wait_no_marks(c, list(range(n)))
        add(want, miss(c, 0, voided, want, seed, now - 7100, holder_seen=1))
        c.kill(0)
        for i in voided:
            c.restart(i)
        c.nodes[1].kill()
        with open(os.path.join(c.nodes[1].data_dir, "regain.ring"), "w") as f:
            f.write("damaged\n")
        c.restart(1, extra=["--join-settle", "%ds" % SETTLE_S])
        live = [1] + list(voided)
        c.wait_state(0, "down", observers=live, timeout=60)
        full = any("this node cannot tell which ranges it holds short" in x
                   for x in c.nodes[1].log)
        p, _ = ctl(c, voided[0], "cluster", "remove", "--node", c.ids[0], timeout=240)
        assert p.returncode == 0, p.stdout + p.stderr
        print("    n1 in a full repair: %s; n0 removed" % full)
        assert full
        done = lambda: not any(marks(c, i) for i in live)
        bad, took, ok = watch(c, live, want, frm, until, done, WAIT_S)
        cleared = metric(c, 1, "flamedb_repair_ranges_cleared_total")
        united = sum(1 for x in c.nodes[1].log if "united instead" in x)
        fetched = [metric(c, i, "flamedb_repair_window_profiles_fetched_total") for i in live]
        print("    every survivor read again after %.1f s (%s); %d short unflagged answers; "
              "n1 cleared %d range(s), united %d interval(s); fetched by id %r"
              % (took, "yes" if ok else "no", len(bad), cleared, united, fetched))
        assert not bad, "short, unflagged: %r" % bad[:8]
        assert ok, "still unread: %r" % [marks(c, i) for i in live]
        alone_exact(c, live, want, frm, until)


def test_voided_copy_not_taken_whole():
    voided_case(3, [2], "vct", 9990)


def test_two_voided_replicas_converge():
    voided_case(4, [2, 3], "tvc", 9900)


if __name__ == "__main__":
    harness.run_tests(globals())
