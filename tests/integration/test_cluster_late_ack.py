#!/usr/bin/env python3
"""Repair marks lifted by a late acknowledgement, with real processes
(issue #10; docs/cluster.md "Read correctness: repair marks"):

- hinted handoff off (--hints-max-bytes 0), 3 nodes RF 3 W 2, anti-entropy
  schedule off: n2 is stopped (SIGSTOP) for longer than --hint-ack-grace
  and much shorter than --write-timeout, and one push through n0 is
  answered 200 by n0 and n1 with n2 marked short. Continued, n2 stores that
  write and acknowledges it late: the mark goes within LIFT_BOUND_S of the
  continue, on every node's view, counted in
  flamedb_repair_marks_lifted_late_ack_total, with no repair pass (without
  this the mark waited for a pass, asked no earlier than --write-timeout +
  1 s after the miss: more than 9 s after the continue here); the lift is
  stored: n0 restarted right after it does not read the mark back (it
  listed n2 again until n2's next pass);
- a real miss still waits for a pass: n2 stopped past the write deadline, so
  the copy sent to it expires and is never acknowledged; the mark stays
  after the continue until n2's own pass, and no late-ack lift is counted.

Every wait is bounded; the seed is printed (cluster.py) and replayed with
FLAMEDB_TEST_SEED.
"""
import signal
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_repair import add, hints_for, push, totals

LIFT_BOUND_S = 4.0


def marks_on(c, node_id):
    """Nodes whose view lists node_id in some member's hints_for."""
    return [i for i in range(3) if node_id in hints_for(c, i)]


def test_late_ack_lifts_the_mark_it_caused():
    services = [harness.unique("la%d" % k) for k in range(2)]
    t0 = int(time.time()) - 3600
    args = ["--hints-max-bytes", "0", "--write-timeout", "10s", "--hint-ack-grace", "100ms",
            "--repair-interval", "0"] + FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, failure_timeout="8s", args=args) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 10)
        # a loaded machine may have let a warm-up ack miss the grace
        wait_for("no marks after the warm-up", lambda: not any(hints_for(c, i) for i in range(3)),
                 timeout=60)
        lifted0 = c.nodes[0].metric("flamedb_repair_marks_lifted_late_ack_total")
        passes0 = c.nodes[2].metric("flamedb_repair_passes_total")
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        want = add(want, push(c, [0], services, t0, 10, 1))  # n0 and n1 acknowledge
        assert "n2" in hints_for(c, 0), "n2 not marked by n0: %s" % c.status(0)
        assert c.nodes[0].metric("flamedb_repair_marked_nodes") == 1
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t_stop)))
        c.nodes[2].proc.send_signal(signal.SIGCONT)
        t_cont = time.monotonic()
        print("    n2 stopped %.2fs; one push through n0 marked it" % (t_cont - t_stop))
        wait_for("n2's mark lifted everywhere", lambda: not marks_on(c, "n2"), timeout=30)
        took = time.monotonic() - t_cont
        lifted = c.nodes[0].metric("flamedb_repair_marks_lifted_late_ack_total") - lifted0
        passes = c.nodes[2].metric("flamedb_repair_passes_total") - passes0
        print("    mark lifted on every node %.2fs after n2 continued (%d by late ack, %d passes "
              "of n2)" % (took, lifted, passes))
        assert took < LIFT_BOUND_S, "the mark took %.2fs to lift after the late ack" % took
        assert lifted >= 1, "not lifted by the late ack"
        assert passes == 0, "n2 ran %d passes: the mark was not left to the late ack" % passes
        assert c.nodes[0].metric("flamedb_repair_marked_nodes") == 0
        for i in range(3):
            got = totals(c, i, want, t0)
            assert got == want, "n%d: %s, want %s" % (i, got, want)
        # n0 restarted well inside the slack (--write-timeout + 1 s) after
        # the miss, so no pass of n2 could lift a mark read back from disk
        c.stop(0)
        c.restart(0)
        wait_for("n0 back and every node active", c.converged, timeout=30)
        seen = []
        for _ in range(10):  # a second: the stored mark would be listed at start
            seen.append((hints_for(c, 0), c.nodes[0].metric("flamedb_repair_marked_nodes")))
            time.sleep(0.1)
        print("    n0 restarted %.2fs after n2 continued: lists %s"
              % (time.monotonic() - t_cont, seen[0]))
        assert all("n2" not in h and marked == 0 for h, marked in seen), \
            "n0 restarted marks n2 again: %s" % seen
        assert c.nodes[2].metric("flamedb_repair_passes_total") == passes0, "n2 ran a pass"
        for i in range(3):
            got = totals(c, i, want, t0)
            assert got == want, "n%d: %s, want %s" % (i, got, want)


def test_real_miss_still_waits_for_a_pass():
    services = [harness.unique("lr")]
    t0 = int(time.time()) - 3600
    args = ["--hints-max-bytes", "0", "--write-timeout", "2s", "--hint-ack-grace", "100ms",
            "--repair-interval", "0", "--query-timeout", "2s"] + FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, failure_timeout="8s", args=args) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 6)
        wait_for("no marks after the warm-up", lambda: not any(hints_for(c, i) for i in range(3)),
                 timeout=60)
        lifted0 = c.nodes[0].metric("flamedb_repair_marks_lifted_late_ack_total")
        streamed0 = c.nodes[2].metric("flamedb_repair_series_streamed_total")
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        want = add(want, push(c, [0], services, t0, 6, 1))
        assert "n2" in hints_for(c, 0), "n2 not marked by n0"
        time.sleep(max(0.0, 3.0 - (time.monotonic() - t_stop)))  # past the 2 s deadline
        c.nodes[2].proc.send_signal(signal.SIGCONT)
        t_cont = time.monotonic()
        time.sleep(1.0)  # long enough for a late ack to have lifted it
        assert "n2" in hints_for(c, 0), "a write never acknowledged lost its mark"
        wait_for("n2's mark lifted by its pass", lambda: not marks_on(c, "n2"), timeout=40)
        took = time.monotonic() - t_cont
        lifted = c.nodes[0].metric("flamedb_repair_marks_lifted_late_ack_total") - lifted0
        streamed = c.nodes[2].metric("flamedb_repair_series_streamed_total") - streamed0
        print("    a miss past the deadline: mark lifted by n2's pass %.2fs after it continued "
              "(%d series fetched)" % (took, streamed))
        assert lifted == 0, "a real miss was lifted by a late ack"
        assert streamed >= 1, "n2 fetched nothing: the expired write reached it after all"
        for i in range(3):
            got = totals(c, i, want, t0)
            assert got == want, "n%d: %s, want %s" % (i, got, want)


if __name__ == "__main__":
    harness.run_tests(globals())
