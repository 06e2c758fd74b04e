#!/usr/bin/env python3
"""The end of a full repair (docs/cluster.md, "When a node cannot tell what
it gained") when a removal during its converging pass gives the node
ranges, with real processes (issue #10), 5 nodes RF 3:

- n4 and n3 are killed and n4 is removed (n0, n1 and n2 regain its
  ranges); n0 is stopped and its DATA_DIR/regain damaged, so n0 restarts
  marked for a full repair: it clears and streams every interval it
  replicates;
- once that stream ended (the log line of its regain), n2 is stopped
  (SIGSTOP, for less than --failure-timeout), so n0's next pass, the one
  that would lift the mark, waits on n2's digest; 1.3 s later (that pass
  started: a move's passes are a second apart) n3 is removed, and once n0
  saw it n2 is continued. The mark must stay until the intervals n3's
  removal gave n0 are cleared and streamed too; then every remaining node
  answers exactly, and n0 also on its own (the RF - 1 = 2 others killed).

The profiles are older than the seen span (--seen-retention 1 h): only the
streams move them. Every wait is bounded; the seed is printed (cluster.py).
"""
import os
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_regain import regain_events
from test_cluster_regain_end import (ARGS, FAILURE_TIMEOUT, caught_up_exact_then_n0_alone,
                                     five_active_preloaded_two_killed,
                                     hold_converging_pass, removal)


def test_full_repair_end_outdated_by_a_removal():
    now = int(time.time())
    with Cluster(5, rf=3, failure_timeout=FAILURE_TIMEOUT, args=ARGS + FAST_FORMATION) as c:
        d, frm, until = five_active_preloaded_two_killed(c, "fe", now)
        r = c.nodes[1].request("POST", "/cluster/remove?node=n4")
        assert r.status == 200, r
        wait_for("n0, n1 and n2 regained n4's ranges",
                 lambda: all(c.status(i)["regaining"] == 0 and
                             c.states(i).get("n4") == "left" for i in (0, 1, 2)), timeout=60)
        code, _ = c.stop(0)
        assert code == 0, code
        with open(os.path.join(c.nodes[0].data_dir, "regain"), "w") as f:
            f.write("flamedb-regain 2\n0000000000000000 00000000000000zz\nend 1\n")
        c.restart(0)
        assert c.status(0)["full_repair"] == 1, c.status(0)
        wait_for("n0's full repair to stream every interval", lambda: any(
            "gained by a removal are streamed in" in x for x in c.nodes[0].log), timeout=60,
            interval=0.02)
        held = hold_converging_pass(c, 0, 2, removal(c, 0, 3, via=1),
                                    still=lambda: c.status(0)["full_repair"] == 1)
        print("    " + held)
        wait_for("n0's full repair to converge", lambda: c.status(0)["full_repair"] == 0,
                 timeout=90)
        # the node logs the lift before its status answers it, but this
        # process reads the node's log on a thread of its own: it may not
        # have the line yet when the status comes
        wait_for("n0's log of the lift", lambda: any(
            "the full repair converged" in x for x in c.nodes[0].log), timeout=10, interval=0.02)
        log = c.nodes[0].log
        gained = [k for k, x in enumerate(log) if "token interval(s) by the removal" in x]
        lifted = [k for k, x in enumerate(log) if "the full repair converged" in x]
        for x in log:
            if " pass: " in x or "token interval" in x or "full repair" in x:
                print("      n0: " + x[11:200])
        assert gained and lifted and lifted[0] > gained[-1], \
            "n0's mark was lifted before n3's removal was streamed in"
        ev = [k for k, _ in regain_events(c.nodes[0])]
        assert ev[-2:] == ["cleared", "done"], ev
        caught_up_exact_then_n0_alone(c, d, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
