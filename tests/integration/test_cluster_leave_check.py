#!/usr/bin/env python3
"""A leaving node's digest check whose own view goes stale during its
exchange with a taker, with real processes (issue #10; docs/cluster.md,
"Decommissioning a node"), 4 nodes RF 2, profiles older than the seen span
(--seen-retention 1 h: only the takers' streams move them):

- n3 is decommissioned; n2 (a taker) is stopped (SIGSTOP) before the leave
  settled, so it announces no pass that counts; once n0 and n1 did, n0 is
  stopped until it is marked down and n2 continued: n2's pass counts, and
  n3's check fails at n0 (down) once a second;
- right after such a failure n0 is continued and n1 stopped (for less than
  --failure-timeout: not marked down), so the next check (a second later)
  waits on n1's digest; 1.3 s later a 5th node starts (a join: the pending
  ring changes), and once n3 saw it joining n1 is continued. That check ran
  with the move before the join: it must not let n3 leave ("the ring
  changed during the check"). n3 leaves once the takers of the new move
  streamed, and every remaining node answers exactly, also with any one of
  them killed (RF - 1).

Every wait is bounded; the seed is printed (cluster.py).
"""
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_join import ARGS, exact_everywhere, preload

FAILURE_TIMEOUT = "4s"
# n3 asks again a second after a check failed (MOVE_VERIFY_GAP_MS): past
# it, the check after the failure seen has started
NEXT_CHECK_S = 1.3
NOT_VERIFIED = "leave not verified yet"


def takers_waiting(c):
    """n3's count of takers whose pass does not count yet (a decommission
    asked again answers with the move's state)."""
    r = c.nodes[3].request("POST", "/cluster/decommission?node=n3")
    assert r.status == 200, r
    return r.json()["takers_waiting"]


def test_leave_check_outdated_by_a_join():
    t0 = int(time.time()) - 7200
    with Cluster(4, rf=2, failure_timeout=FAILURE_TIMEOUT,
                 args=ARGS + ["--seen-retention", "1h"]) as c:
        want = preload(c, [0, 1, 2, 3], "lc", t0, 400, lines=60)
        frm, until = t0 - 10, t0 + 100000
        r = c.nodes[3].request("POST", "/cluster/decommission?node=n3")
        assert r.status == 200, r
        c.nodes[2].proc.send_signal(signal.SIGSTOP)  # before the leave settled (2 s)
        stopped = [2]
        try:
            wait_for("n0 and n1 counted, n2 not", lambda: takers_waiting(c) == 1, timeout=30,
                     interval=0.05)
            c.nodes[0].proc.send_signal(signal.SIGSTOP)
            stopped.append(0)
            c.wait_state(0, "down", observers=[1, 3])
            c.nodes[2].proc.send_signal(signal.SIGCONT)
            stopped.remove(2)
            mark = len(c.nodes[3].log)
            wait_for("n3's check failing at n0", lambda: any(
                NOT_VERIFIED in x for x in c.nodes[3].log[mark:]), timeout=30, interval=0.02)
            c.nodes[0].proc.send_signal(signal.SIGCONT)
            stopped.remove(0)
            c.nodes[1].proc.send_signal(signal.SIGSTOP)
            stopped.append(1)
            t_stop = time.monotonic()
            fails = sum(NOT_VERIFIED in x for x in c.nodes[3].log[mark:])
            time.sleep(NEXT_CHECK_S)  # n3's next check started, waits on n1
            assert c.nodes[3].alive(), "n3 left before the check that waits on n1"
            n = c.add_node(join=[0, 3], start=False)
            c.nodes[n].start(ready=False)  # ready waits for every member: n1 is stopped
            wait_for("n4 joining on n3", lambda: c.states(3).get("n4") == "joining",
                     timeout=5, interval=0.02)
            during = sum(NOT_VERIFIED in x for x in c.nodes[3].log[mark:])
            held = time.monotonic() - t_stop
        finally:
            for i in stopped:
                c.nodes[i].proc.send_signal(signal.SIGCONT)
        print("    n1 stopped %.2f s while n3's check waited on it and n4 started joining" %
              held)
        assert during == fails, "n3's check ended while n1 was stopped"
        assert held < 3.0, "n1 was stopped for %.2f s: maybe marked down" % held
        wait_for("n3's check to end", lambda: sum(
            NOT_VERIFIED in x for x in c.nodes[3].log[mark:]) > fails or
            not c.nodes[3].alive(), timeout=10, interval=0.02)
        rc = c.nodes[3].proc.wait(timeout=120)
        assert rc == 0, "n3 exited %s" % rc
        log = c.nodes[3].log[mark:]
        stale = [x for x in log if "the ring changed during the check" in x]
        changed = [x for x in log if "ring changed during the move" in x]
        print("    n3: %d check(s) outdated by the join, %d move change(s); then it left" %
              (len(stale), len(changed)))
        assert stale, "the check that ran with the move before n4's join let n3 leave"
        c.wait_state(n, "active", observers=[0, 1, 2, n], timeout=60)
        nodes = [0, 1, 2, n]
        for i in nodes:
            wait_for("n3 left on %s" % c.ids[i], lambda: c.states(i)["n3"] == "left", timeout=30)
        exact_everywhere(c, nodes, want, frm, until, timeout=60)
        for k in nodes:
            rest = [i for i in nodes if i != k]
            c.kill(k)
            c.wait_state(k, "down", observers=rest)
            exact_everywhere(c, rest, want, frm, until, timeout=30)
            c.restart(k)
            c.wait_state(k, "active", observers=rest)
        print("    exact on n0, n1, n2, n4, and with each of them killed")


if __name__ == "__main__":
    harness.run_tests(globals())
