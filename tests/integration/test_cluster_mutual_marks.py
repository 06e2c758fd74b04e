#!/usr/bin/env python3
"""Replicas whose copies are each short of what the other holds, in a full
repair (issue #10, docs/cluster.md "Two replicas each marked by the
other"), with real processes and fixed SIGSTOP/kill sequences. Profiles are
two hours old, older than the seen span (--seen-retention 60s): only a
window check or a copy streamed whole can bring them to a replica.

- test_voided_copy_not_taken_whole: 3 nodes RF 3 W 2, hinted handoff on.
  n2 is stopped and misses old profiles acknowledged through n0 (n0 hints
  n2; n1, told by a notice, holds n2 until n0's hints_for reaches it, which
  the test waits for, so n1 keeps no mark of its own). n0 and n2 are
  killed (the queued writes die with n2), n2 started again, n1 started
  again with a damaged DATA_DIR/regain.ring (it cannot tell which ranges it
  holds: a full repair, whose clear waits --join-settle 8s), then n0 is
  removed: its hint, the only word that n2 is short, goes with it (n2 waits
  for its window check, unread, but nobody lists it as marked). Before,
  n1's full repair cleared its copy, which held the writes, and streamed
  n2's whole: the writes were gone from every node, and 12 answers through
  n1 and n2 were short and unflagged. Now n2 serves no copy to be taken
  whole until its check compared it, n1 keeps its copy (no whole one is to
  be had: it takes n2's profiles by id instead), and both end exact alone;
- test_mutual_marks_converge: 4 nodes RF 4 W 2, hinted handoff off. n3
  misses old profiles acknowledged through n0 (n1 and n2 mark n3) and is
  started again with --join-settle 20s, then n2 misses others acknowledged
  through n1 (n0, n1 and n3 mark n2). n0 and n1 are killed and removed
  through the HTTP route (no repair round): n2 and n3 hold the only copies,
  each short of what the other holds. Before, 204 answers through them
  were short and unflagged (a copy taken whole from the other, and the
  marks lifted); now none is, each fetches what it lacks by id, the marks
  end (20 s, the settle margin) and each alone answers exactly.
"""
import os
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_ack_missed import (HINTS_ON, add, alone_exact, mark_on, marks, poll,
                                     wait_no_marks)
from test_cluster_join import big_body, metric
from test_cluster_old_windows import ARGS, preload, push_ok
from test_cluster_repair import ctl

SETTLE_S = 8


def miss(c, via, missing, svcs, seed, t, before_kill=None):
    """One old profile per service acknowledged through `via` while node
    `missing` is stopped (SIGSTOP); before_kill() runs while it is still
    stopped, then it is killed (-9): the writes queued for it die with it.
    {service: samples}."""
    out = {}
    c.nodes[missing].proc.send_signal(signal.SIGSTOP)
    try:
        for k, svc in enumerate(sorted(svcs)):
            body, v = big_body(seed + k, lines=8)
            push_ok(c, via, body, svc, t + k)
            out[svc] = v
        if before_kill is not None:
            before_kill()
    finally:
        c.kill(missing)
    return out


def watch_both(c, nodes, want, frm, until, done, timeout):
    """Polls `nodes` until done() or timeout: [short unflagged answers],
    seconds taken, done()."""
    t0, bad = time.monotonic(), []
    while time.monotonic() - t0 < timeout:
        wrong, _ = poll(c, nodes, want, frm, until)
        bad += wrong
        if done():
            return bad, time.monotonic() - t0, True
        time.sleep(0.3)
    return bad, time.monotonic() - t0, False


def full_repair(c, i):
    return any("this node cannot tell which ranges it holds short" in x for x in c.nodes[i].log)


def test_voided_copy_not_taken_whole():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=HINTS_ON + ["--repair-windows-interval", "0"]) as c:
        want = preload(c, 0, "mvc", now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        word = lambda: wait_for("n1 hears n0's hint for n2", lambda: mark_on(c, 1, 0, 2),
                                timeout=60)
        add(want, miss(c, 0, 2, want, 9990, now - 7100, before_kill=word))
        c.kill(0)
        c.restart(2)
        c.nodes[1].kill()
        with open(os.path.join(c.nodes[1].data_dir, "regain.ring"), "w") as f:
            f.write("damaged\n")
        c.restart(1, extra=["--join-settle", "%ds" % SETTLE_S])
        c.wait_state(0, "down", observers=[1, 2], timeout=60)
        p, _ = ctl(c, 2, "cluster", "remove", "--node", c.ids[0], timeout=240)
        assert p.returncode == 0, p.stdout + p.stderr
        print("    n1 in a full repair: %s" % full_repair(c, 1))
        done = lambda: not marks(c, 1) and not marks(c, 2)
        bad, took, ok = watch_both(c, [1, 2], want, frm, until, done, 90)
        cleared = [x.split(" ", 3)[-1] for x in c.nodes[1].log if "cleared" in x
                   and "token interval" in x]
        united = metric(c, 1, "flamedb_repair_window_profiles_fetched_total")
        print("    n1 and n2 read again after %.1f s (%s); %d short unflagged answers; n1 "
              "cleared: %s; fetched by id on n1: %d"
              % (took, "yes" if ok else "no", len(bad), cleared[:1] or "nothing", united))
        assert not bad, "short, unflagged: %r" % bad[:8]
        assert ok, "still unread: %r" % [marks(c, i) for i in (1, 2)]
        alone_exact(c, [1, 2], want, frm, until)


def test_mutual_marks_converge():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(4, rf=4, write_quorum=2, args=ARGS + ["--repair-windows-interval", "0"]) as c:
        want = preload(c, 0, "mmc", now, 16, 4)
        wait_no_marks(c, [0, 1, 2, 3])
        add(want, miss(c, 0, 3, want, 9900, now - 7100))  # n1 and n2 mark n3
        c.restart(3, extra=["--join-settle", "20s"])
        c.wait_state(3, "active", observers=[0, 1, 2], timeout=60)
        add(want, miss(c, 1, 2, want, 9910, now - 7000))  # n0, n1 and n3 mark n2
        c.kill(0)
        c.kill(1)
        c.restart(2)
        c.wait_state(0, "down", observers=[2, 3], timeout=60)
        c.wait_state(1, "down", observers=[2, 3], timeout=60)
        for gone in (0, 1):  # the HTTP route: no repair round
            r = c.nodes[3].request("POST", "/cluster/remove?node=%s" % c.ids[gone])
            assert r.status == 200, r
        print("    after the removals: n2 lists %r, n3 lists %r; full repairs: n2 %s, n3 %s"
              % (marks(c, 2), marks(c, 3), full_repair(c, 2), full_repair(c, 3)))
        done = lambda: not marks(c, 2) and not marks(c, 3)
        bad, took, ok = watch_both(c, [2, 3], want, frm, until, done, 120)
        fetched = [metric(c, i, "flamedb_repair_window_profiles_fetched_total") for i in (2, 3)]
        print("    marks and full repairs ended after %.1f s (%s); fetched by id: n2 %d, n3 %d; "
              "%d short unflagged answers" % (took, "yes" if ok else "no", fetched[0],
                                              fetched[1], len(bad)))
        assert not bad, "short, unflagged: %r" % bad[:8]
        assert ok, "each waits for the other: %r" % [marks(c, i) for i in (2, 3)]
        alone_exact(c, [2, 3], want, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
