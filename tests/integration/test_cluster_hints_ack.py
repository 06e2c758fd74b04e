#!/usr/bin/env python3
"""Hints stored before the answer, with real processes (issue #10):

- 3 nodes, RF 3, W 2, anti-entropy off: one replica is slow but reachable
  (SIGSTOP, not yet known down), pushes through a coordinator get 200 from
  the other two, and the coordinator is killed with -9 right after the last
  200, well before the write deadline. The replica is continued after that
  deadline (the copies sent to it are dropped on arrival as expired) and the
  coordinator restarted: the hints it stored before answering deliver the
  writes, so the slow replica answers the exact totals on its own (the other
  two killed), with no repair pass. Without the hints before the answer the
  coordinator died holding nothing for it, and it would stay short;
- --hint-ack-grace 0: the hints pushes store before their answer are all
  deleted again by the late acks; nothing is left or replayed, totals exact;
- a replica that let the grace run out is hinted at once on the next pushes
  instead of costing each the grace, until it acknowledges within it again.

Every wait is bounded; the seed is printed (cluster.py) and replayed with
FLAMEDB_TEST_SEED.
"""
import signal
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_repair import add, hints_for, push, query, totals

WRITE_TIMEOUT_S = 3


def test_slow_replica_gets_its_hint_though_the_coordinator_died():
    services = [harness.unique("ack%d" % k) for k in range(2)]
    t0 = int(time.time()) - 3600
    args = ["--write-timeout", "%ds" % WRITE_TIMEOUT_S, "--repair-interval", "0",
            "--hint-replay-interval", "200ms", "--query-timeout", "2s"] + FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, failure_timeout="6s", args=args) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 10)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        t_first = time.monotonic()
        want = add(want, push(c, [0], services, t0, 10, 12))  # n0 and n1 acknowledge
        before_ack = c.nodes[0].metric("flamedb_hints_stored_before_ack_total")
        c.kill(0)  # right after the last 200, before any of these writes' deadlines
        took = time.monotonic() - t_first
        assert took < WRITE_TIMEOUT_S, "pushes too slow (%.2fs) to beat the write deadline" % took
        print("    12 pushes acknowledged in %.2fs with n2 stopped; %d hints stored before the "
              "answers; n0 killed" % (took, before_ack))
        time.sleep(WRITE_TIMEOUT_S + 0.5)  # the copies sent to n2 are past their deadline
        c.nodes[2].proc.send_signal(signal.SIGCONT)
        c.restart(0)
        t_back = time.monotonic()
        wait_for("n0's hints for n2 delivered",
                 lambda: c.nodes[0].metric("flamedb_hints_pending") == 0
                 and not any(hints_for(c, i) for i in (0, 1, 2)), timeout=30)
        replayed = c.nodes[0].metric("flamedb_hints_replayed_total")
        print("    %d hints replayed %.2fs after n0 restarted" % (replayed, time.monotonic() - t_back))
        c.kill(0)
        c.kill(1)
        c.wait_state(0, "down", observers=[2])
        c.wait_state(1, "down", observers=[2])
        r = c.nodes[2].render(query(services[0]), t0 - 10, t0 + 4000)
        assert r.status == 200 and "x-flamedb-partial" not in r.headers, r.headers
        got = totals(c, 2, want, t0)
        assert got == want, "n2 alone: %s, want %s" % (got, want)
        streamed = c.nodes[2].metric("flamedb_repair_series_streamed_total")
        assert streamed == 0, "n2 fetched %s series by repair: the hints did not deliver" % streamed
        print("    n2 alone, n0 and n1 killed: exact %s, nothing fetched by repair" % got)
        assert before_ack >= 12, "hints stored before the answers: %s" % before_ack
        assert replayed >= 12, replayed


def test_zero_grace_hints_and_cancels_every_late_ack():
    """--hint-ack-grace 0: the last replica's ack comes after the quorum, so
    pushes store a hint before their answer and the late ack deletes it again:
    every such hint is cancelled, none is left or replayed; the replicas
    that acknowledged were told of each (a notice) and hold the late one
    unread until its coordinator's word arrives, then the totals are exact
    on every node, and the nodes stop cleanly (SIGTERM, exit 0)."""
    services = [harness.unique("zg%d" % k) for k in range(2)]
    t0 = int(time.time()) - 3600
    with Cluster(3, rf=3, write_quorum=2, args=["--hint-ack-grace", "0"] + FAST_FORMATION) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 30)
        stored = lambda: sum(c.nodes[i].metric("flamedb_hints_stored_before_ack_total")
                             for i in range(3))
        cancelled = lambda: sum(c.nodes[i].metric("flamedb_hints_cancelled_total")
                                for i in range(3))
        wait_for("every hint stored before an answer cancelled by its ack",
                 lambda: stored() == cancelled()
                 and sum(c.nodes[i].metric("flamedb_hints_pending") for i in range(3)) == 0,
                 timeout=20)
        t_held = time.monotonic()
        # each hinted replica was named to the replicas that acknowledged (a
        # notice): they hold it unread until its coordinator's word arrives
        wait_for("the holds of the late replicas ended",
                 lambda: not any(hints_for(c, i) for i in range(3)), timeout=20)
        notices = sum(c.nodes[i].metric("flamedb_slow_replica_notices_total") for i in range(3))
        print("    30 pushes: %d hints stored before the answer, all cancelled by the late ack; "
              "%d notices, the last hold ended %.1f s later"
              % (stored(), notices, time.monotonic() - t_held))
        assert notices > 0, "no replica that acknowledged was told of a hinted one"
        assert stored() > 0, "no push was answered before its last replica's ack"
        assert sum(c.nodes[i].metric("flamedb_hints_replayed_total") for i in range(3)) == 0
        for i in range(3):
            assert totals(c, i, want, t0) == want, "n%d: %s, want %s" % (
                i, totals(c, i, want, t0), want)
        for i in range(3):
            rc, took = c.stop(i)
            assert rc == 0, "n%d exited %s" % (i, rc)


GRACE_S = 0.5


def test_slow_replica_hinted_at_once_until_it_catches_up():
    """--hint-ack-grace 500ms, n2 stopped (slow but reachable: the failure
    timeout is 10 s): the first push through n0 waits the grace for n2, the
    next ones are answered at their quorum with n2 hinted at once, each well
    under the grace. Once n2 continues and acknowledges within the grace
    again, pushes store no more hints for it; every node answers exactly."""
    services = [harness.unique("sg")]
    t0 = int(time.time()) - 3600
    args = ["--hint-ack-grace", "%dms" % (GRACE_S * 1000), "--repair-interval", "0"]
    args += FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, failure_timeout="10s", args=args) as c:
        want = push(c, [0], services, t0, 0, 3)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        took = []
        for k in range(8):
            t = time.monotonic()
            want = add(want, push(c, [0], services, t0, 10 + k, 1))
            took.append(time.monotonic() - t)
        skipped = c.nodes[0].metric("flamedb_hint_ack_grace_skipped_total")
        print("    n2 stopped, pushes through n0 took %s s; %d skipped the grace"
              % (" ".join("%.3f" % x for x in took), skipped))
        assert took[0] >= GRACE_S, "the first push did not wait the grace: %.3fs" % took[0]
        assert all(x < GRACE_S for x in took[1:]), "pushes waited the grace again: %s" % took
        assert skipped == 7, skipped
        c.nodes[2].proc.send_signal(signal.SIGCONT)
        stored = lambda: c.nodes[0].metric("flamedb_hints_stored_before_ack_total")
        seq, calm = 20, 0
        for _ in range(40):  # until 3 pushes in a row stored no hint (bounded)
            before = stored()
            want = add(want, push(c, [0], services, t0, seq, 1))
            seq += 1
            calm = calm + 1 if stored() == before else 0
            if calm == 3:
                break
        assert calm == 3, "n2 continued, yet pushes still hint it (%d pushes)" % (seq - 20)
        print("    n2 continued: no more hints after %d pushes" % (seq - 23))
        for i in range(3):
            wait_for("n%d exact" % i, lambda: totals(c, i, want, t0) == want, timeout=20)


if __name__ == "__main__":
    harness.run_tests(globals())
