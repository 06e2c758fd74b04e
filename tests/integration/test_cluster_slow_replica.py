#!/usr/bin/env python3
"""A replica that is slow but reachable when a push is acknowledged, and the
coordinator dies right after the 200, with real processes (issue #10,
docs/replication.md "A slow replica named after the grace", "A hint
witnessed by the write").

3 nodes, RF 3, write quorum 2, window checks on demand only
(--repair-windows-interval 0), so only a mark or a hold can keep a short
replica from being read.

- test_slow_replica_outlives_its_coordinator: n2 is stopped (SIGSTOP)
  but not yet seen down, and one old profile is pushed through n0: n1
  acknowledges, n2 does not within --hint-ack-grace, so n0 stores a hint
  for it before the 200. n0 is killed (-9) at once, before a gossip round
  carries its hints_for, and n2 is killed while still stopped (the write
  queued for it dies with it) and started again: it never got the write.
  n1 must have been told before the 200 (the notice) and hold n2 unread,
  then mark it on seeing n0 down: with n1 stopped, every answer through n2
  is flagged partial or refused, never short and unflagged; once n1 runs
  again n2 repairs itself and each alone answers exactly. Before, only the
  dead n0 knew: n2 answered short and unflagged. When a gossip round
  carried n0's hints_for to n1 before the kill (a loaded machine), n1's
  hold ends on that word and n0's list, a down member's, keeps n2 unread
  for as long as n0 is neither back nor removed: n2 alone then answers
  flagged partial, never short, and n1 alone exactly;
- test_slow_replica_marked_outlives_its_coordinator: the same with hinted
  handoff off (--hints-max-bytes 0): n0 marks n2 instead of hinting it;
- test_witness_outlives_a_restart: hinted handoff on, n2 stopped and seen
  down, one old profile pushed through n0 (which names n2 to n1: n1 holds
  n2), then n0 and n1 are killed (-9) at once and n1 started again: the
  hold is read back from n1's data dir, and n1 marks n2 on seeing n0 down,
  so n2 answers flagged partial with n1 stopped, never short and
  unflagged, and exactly once repaired. Before, the hold lived in memory
  only and the restart forgot it;
- test_no_notice_to_an_older_node: a rolling upgrade, n1 runs as the
  release before notices (--cluster-member-version 0: it drops a notice
  unanswered, as that release refused a write with no series) and
  advertises so in its member entry; n2 is stopped but not yet seen down
  and pushes go through n0 with a write timeout of 4 s. n0 sends n1 no
  notice and answers each push once n2's hint is stored, in milliseconds.
  Before, n0 sent the notice anyway and each push that found n2 slow
  waited the whole write timeout for n1's answer.
"""
import signal
import time

import harness
from cluster import Cluster
from test_cluster_ack_missed import (HINTS_ON, alone_exact, mark_on, poll, wait_for,
                                     wait_no_marks, watch, watch_until_exact)
from test_cluster_join import big_body, metric
from test_cluster_old_windows import ARGS, preload, push_ok

ON_DEMAND = ["--repair-windows-interval", "0"]


def short_replica_read(c, want, frm, until, note):
    """n0 dead, n2 short: n2 answers with n1 stopped (never short and
    unflagged), then repairs itself once n1 runs again and each of n1 and
    n2 alone answers exactly."""
    c.wait_state(0, "down", observers=[1, 2], timeout=60)
    c.wait_state(2, "active", observers=[1], timeout=60)
    c.wait_state(1, "active", observers=[2], timeout=60)
    time.sleep(0.5)  # a few gossip rounds: n2 hears n1's entry
    c.nodes[1].proc.send_signal(signal.SIGSTOP)
    try:
        c.wait_state(1, "down", observers=[2], timeout=60)
        bad, seen = watch(c, 2, want, frm, until, 5)
    finally:
        c.nodes[1].proc.send_signal(signal.SIGCONT)
    print("    n0 dead, n1 stopped, 5 s: %d answers through n2 flagged partial, %d refused, "
          "of %d; %d short and unflagged%s"
          % (seen[0], seen[1], seen[2], len(bad), (": %r" % bad[:4]) if bad else ""))
    assert not bad, "n2 answered short, unflagged: %r" % bad[:10]
    c.wait_state(1, "active", observers=[2], timeout=30)
    t0 = time.monotonic()
    wait_for("n2 read again", lambda: not any(mark_on(c, i, h, 2)
                                              for i in (1, 2) for h in (1, 2)), timeout=120)
    print("    n2 repaired and read again %.1f s after n1 ran again; n1 marked n2 %d time(s)%s"
          % (time.monotonic() - t0, metric(c, 1, "flamedb_hint_witnesses_marked_total"), note))
    watch_until_exact(c, [1, 2], want, frm, until, 2)
    if not listed_by_dead(c):
        alone_exact(c, [1, 2], want, frm, until)
        return
    # n0's hints_for listing n2 reached the others before the kill (a gossip
    # round on a loaded machine): a down member's list counts, so n2 is
    # read from nowhere while n0 is neither back nor removed, and answers
    # alone flagged partial, never short
    alone_exact(c, [1], want, frm, until)
    with c.paused([1], 2):
        bad, seen = poll(c, [2], want, frm, until)
    print("    n0's list (n2 in it) reached the others before the kill: n2 alone, %d of %d "
          "answers flagged partial, %d short and unflagged" % (seen[0], seen[2], len(bad)))
    assert not bad and seen[0] == seen[2] == len(want), (bad, seen)


def listed_by_dead(c):
    """Whether n1 or n2 holds an entry of the dead n0 that lists n2."""
    return any(mark_on(c, i, 0, 2) for i in (1, 2))


def slow_then_coordinator_lost(args, prefix, seed):
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=args + ON_DEMAND) as c:
        want = preload(c, 0, prefix, now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        svc = sorted(want)[0]
        body, v = big_body(seed, lines=8)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            push_ok(c, 0, body, svc, now - 7100)
            took = time.monotonic() - t0
            c.kill(0)
            heard = mark_on(c, 1, 0, 2)
        finally:
            c.kill(2)  # still stopped: the write queued for it dies with it
        want[svc] += v
        print("    push answered in %.0f ms with n2 stopped; n0 killed at once; its hints_for "
              "reached n1: %s; n1 held n2 for %d write(s)"
              % (took * 1000, heard, metric(c, 1, "flamedb_hint_witnesses_total")))
        c.restart(2)
        short_replica_read(c, want, frm, until, "")


def test_slow_replica_outlives_its_coordinator():
    slow_then_coordinator_lost(HINTS_ON, "srh", 9950)


def test_slow_replica_marked_outlives_its_coordinator():
    slow_then_coordinator_lost(ARGS, "srm", 9960)


def test_witness_outlives_a_restart():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=HINTS_ON + ON_DEMAND) as c:
        want = preload(c, 0, "wor", now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        svc = sorted(want)[0]
        body, v = big_body(9970, lines=8)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(2, "down", observers=[0, 1], timeout=60)
            push_ok(c, 0, body, svc, now - 7100)
            c.kill(0)
            c.kill(1)
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        want[svc] += v
        c.restart(1)
        held = [x.split(" ", 1)[1] for x in c.nodes[1].log if "stored before a restart" in x]
        print("    n0 and n1 killed right after the push; n1 started again: %s"
              % (held[0] if held else "no hold read back"))
        short_replica_read(c, want, frm, until, "; the hold read back: %s" % bool(held))


def test_no_notice_to_an_older_node():
    now = int(time.time())
    timeout_s = 4.0
    args = HINTS_ON + ON_DEMAND + ["--write-timeout", "%ds" % timeout_s]
    with Cluster(3, rf=3, write_quorum=2, args=args, start=False) as c:
        for i in range(3):
            c.add_node(extra=["--cluster-member-version", "0"] if i == 1 else [])
        c.wait_converged()
        wait_for("n0 hears each member's version",
                 lambda: {m["id"]: m.get("member_version") for m in c.status(0)["nodes"]}
                 == {"n0": 1, "n1": 0, "n2": 1}, timeout=30)
        want = preload(c, 0, "non", now, 6, 2)
        svc = sorted(want)[0]
        took = []
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            for k in range(3):
                body, v = big_body(9980 + k, lines=8)
                t0 = time.monotonic()
                push_ok(c, 0, body, svc, now - 7100 + k)
                took.append(time.monotonic() - t0)
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        skipped = metric(c, 0, "flamedb_slow_replica_notices_skipped_total")
        sent = metric(c, 0, "flamedb_slow_replica_notices_total")
        print("    n2 stopped, n1 an older node: pushes through n0 answered in %s ms (write "
              "timeout %.0f ms); notices sent %d, passed over %d"
              % ([round(t * 1000) for t in took], timeout_s * 1000, sent, skipped))
        assert max(took) < timeout_s / 2, \
            "a push waited for a notice an older node never answers: %r s" % took
        assert sent == 0 and skipped >= 1, (sent, skipped)


if __name__ == "__main__":
    harness.run_tests(globals())
