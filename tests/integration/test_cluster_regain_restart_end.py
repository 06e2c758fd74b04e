#!/usr/bin/env python3
"""The end of a regain on a node that restarted and whose member table
cannot yet tell what a removal during its downtime gave it, with real
processes (issue #10; docs/cluster.md, "Removing a node"), 5 nodes RF 3,
profiles older than the seen span (--seen-retention 1 h: only the regain's
streams move them):

- n4 and n3 are killed and n4 is removed; n0 is killed (-9) right after
  its pass that streamed the last of what it gained ended, before the pass
  that would end the regain (DATA_DIR/regain and regain.progress stay);
- n3 is removed while n0 is down; n1 and n2 are stopped (SIGSTOP) and n0
  restarted: it resumes its regain (every piece streamed already) but no
  member answers, so it cannot tell what n3's removal gave it. For 2 s it
  must not end the regain; once n1 and n2 are continued it learns n3's
  removal (DATA_DIR/regain.ring) before any pass ends the regain, and the
  regain ends only with the intervals n3's removal gave it streamed too.
  Every remaining node then answers exactly, and n0 also on its own (the
  RF - 1 = 2 others killed).

Every wait is bounded; the seed is printed (cluster.py).
"""
import os
import signal
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_join import metric
from test_cluster_regain import regain_events
from test_cluster_regain_end import (ARGS, FAILURE_TIMEOUT, caught_up_exact_then_n0_alone,
                                     five_active_preloaded_two_killed,
                                     complete_passes)

ALONE_S = 2.0  # n0 restarted with no member answering (under --failure-timeout)


def test_restarted_regain_end_waits_for_the_member_table():
    now = int(time.time())
    with Cluster(5, rf=3, failure_timeout=FAILURE_TIMEOUT, args=ARGS + FAST_FORMATION) as c:
        d, frm, until = five_active_preloaded_two_killed(c, "rr", now)
        mark = len(c.nodes[0].log)
        r = c.nodes[1].request("POST", "/cluster/remove?node=n4")
        assert r.status == 200, r
        wait_for("n0 clearing what n4's removal gave it", lambda: any(
            "before receiving them whole" in x for x in c.nodes[0].log[mark:]), timeout=30,
            interval=0.02)
        base = complete_passes(c, 0)  # the pass under way clears and streams
        wait_for("n0's pass that streamed the last of its regain",
                 lambda: complete_passes(c, 0) > base, timeout=60, interval=0.02)
        c.kill(0)
        data = c.nodes[0].data_dir
        assert os.path.exists(os.path.join(data, "regain")), "n0's regain ended before its kill"
        first = [e for e in regain_events(c.nodes[0]) if e[0] == "gained"][0][1]
        c.wait_state(0, "down", observers=[1, 2])
        r = c.nodes[1].request("POST", "/cluster/remove?node=n3")
        assert r.status == 200, r
        wait_for("n3 left on n1 and n2",
                 lambda: all(c.states(i).get("n3") == "left" for i in (1, 2)), timeout=10)
        for i in (1, 2):
            c.nodes[i].proc.send_signal(signal.SIGSTOP)
        try:
            c.restart(0, ready=False)
            time.sleep(ALONE_S)
            alone = list(c.nodes[0].log)
        finally:
            for i in (1, 2):
                c.nodes[i].proc.send_signal(signal.SIGCONT)
        assert any("resuming: " in x for x in alone), "\n".join(alone[-20:])
        assert not any("gained by a removal are streamed in" in x for x in alone), \
            "n0 ended its regain while it could not tell what n3's removal gave it"
        assert not any("is gone from the ring" in x for x in alone), "\n".join(alone[-20:])
        print("    n0 restarted alone for %.1f s: resumed %d interval(s), regain not ended" %
              (ALONE_S, first))
        wait_for("n0's regain to end", lambda: any(
            "gained by a removal are streamed in" in x for x in c.nodes[0].log), timeout=90)
        log = c.nodes[0].log
        for x in log:
            if (" pass: " in x or "token interval" in x or "gone from the ring" in x or
                    "resuming" in x or "accounted for" in x):
                print("      n0: " + x[11:200])
        gone = [k for k, x in enumerate(log) if "is gone from the ring" in x and "n3" in x]
        done = [k for k, x in enumerate(log) if "gained by a removal are streamed in" in x]
        assert gone and gone[0] < done[0], "n0's regain ended before it learnt n3's removal"
        ev = regain_events(c.nodes[0])
        gained = sum(n for k, n in ev if k == "gained")
        assert ev[-1] == ("done", first + gained), (first, ev)
        cleared = metric(c, 0, "flamedb_repair_ranges_cleared_total")
        assert cleared == gained, "n0 cleared %d interval(s) after its restart for %d gained" % (
            cleared, gained)
        caught_up_exact_then_n0_alone(c, d, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
