#!/usr/bin/env python3
"""The end of a regain when a node starts joining during its converging
pass, with real processes (issue #10; docs/cluster.md, "Removing a node"),
5 nodes RF 3, profiles older than the seen span (--seen-retention 1 h: only
streams move them):

- n4 is killed and removed; once n0 ended its pass that streamed the last
  of what it gained, n2 is stopped (SIGSTOP, under --failure-timeout) so
  that n0's next pass, the converging one, waits on n2's digest; 1.3 s
  later a 6th node (n5) starts joining, and once n0 saw it n2 is
  continued. A join gives n0 nothing: its regain ends with the intervals it
  had, streamed; n5 streams what it gains and turns active; every node
  answers exactly, also with two of them (RF - 1) killed.

Every wait is bounded; the seed is printed (cluster.py).
"""
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_regain import regain_events
from test_cluster_regain_end import (ARGS, FAILURE_TIMEOUT, hold_converging_pass,
                                     last_streaming_pass, start_with_n0_late)
from test_cluster_stream import check_exact, preload


def test_regain_end_with_a_join_meanwhile():
    now = int(time.time())
    c = Cluster(5, rf=3, failure_timeout=FAILURE_TIMEOUT, args=ARGS + FAST_FORMATION,
                start=False)
    with c:
        start_with_n0_late(c)
        d = preload(c, "rj", now, 600, nservices=24)
        frm, until = now - 8000, now + 60
        # hints stored before the answer settle first: a kill before gossip
        # told of their cancels leaves a stale hints_for (no stream source)
        c.wait_hints_settled()
        c.kill(4)
        c.wait_state(4, "down", observers=[0, 1, 2, 3])
        mark = len(c.nodes[0].log)
        r = c.nodes[1].request("POST", "/cluster/remove?node=n4")
        assert r.status == 200, r
        last_streaming_pass(c, mark, others=(1, 2, 3))
        added = []

        def join():
            added.append(c.add_node(join=[0, 1], start=False))
            c.nodes[added[0]].start(ready=False)  # ready waits for every member: n2 is stopped
        held = hold_converging_pass(
            c, 0, 2, (join, lambda: c.states(0).get("n5") == "joining", "n5's join"),
            still=lambda: c.status(0)["regaining"] > 0)
        print("    " + held)
        n = added[0]
        nodes = [0, 1, 2, 3, n]
        c.wait_state(n, "active", observers=nodes, timeout=60)
        wait_for("every node caught up",
                 lambda: all(c.status(i)["regaining"] == 0 for i in nodes), timeout=60)
        ev = regain_events(c.nodes[0])
        print("    n0: %s" % " ".join("%s %d" % e for e in ev))
        assert [k for k, _ in ev] == ["gained", "cleared", "done"], ev
        assert ev[0][1] == ev[1][1] == ev[2][1], ev
        for i in nodes:
            check_exact(c, i, d, frm, until)
        for k in (1, 2):  # RF - 1 = 2 nodes killed: every range keeps a replica
            c.kill(k)
        rest = [0, 3, n]
        c.wait_state(1, "down", observers=rest)
        c.wait_state(2, "down", observers=rest)
        for i in rest:
            wait_for("exact through %s with n1 and n2 killed" % c.ids[i],
                     lambda: check_exact(c, i, d, frm, until) or True, timeout=20)
        print("    exact on n0, n1, n2, n3, n5, and on n0, n3, n5 with n1 and n2 killed")


if __name__ == "__main__":
    harness.run_tests(globals())
