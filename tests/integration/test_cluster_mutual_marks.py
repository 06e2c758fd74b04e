#!/usr/bin/env python3
"""Replicas whose copies are each short of what the other holds (issue #10,
docs/cluster.md "Two replicas each marked by the other"), with real processes and fixed SIGSTOP/kill sequences. Profiles are
two hours old, older than the seen span (--seen-retention 60s): only a
window check or a copy streamed whole can bring them to a replica.

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
import signal
import time

import harness
from cluster import Cluster
from test_cluster_ack_missed import add, alone_exact, marks, poll, wait_no_marks
from test_cluster_join import big_body, metric
from test_cluster_old_windows import ARGS, preload, push_ok


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
