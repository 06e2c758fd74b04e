#!/usr/bin/env python3
"""The end of a move when the ring changes during its converging pass, with
real processes (issue #10; docs/cluster.md, "Decommissioning a node", the
end of the other moves):

- a regain (ranges gained by a removal, 5 nodes RF 3): n4 and n3 are killed,
  n4 is removed; n0 streams what it gained (throttled). Once its pass that
  streamed the last of it ended (the log line of a complete pass), n2 is
  stopped (SIGSTOP, for less than --failure-timeout: it is not marked down),
  so n0's next pass, the converging one that would end the regain, waits on
  n2's digest; 1.3 s later (that pass started: a move's passes are a second
  apart) n3 is removed, and once n0 saw it n2 is continued. The regain must
  not end with that pass: it goes on with the intervals n3's removal gave
  n0, each cleared once and streamed. Every remaining node then answers
  exactly, and n0 also on its own (the RF - 1 = 2 others killed).

The profiles are two hours old and --seen-retention is 1 h: the seen
comparison (whose span lies in the future, so that each pass asks every
peer for a digest) moves none of them, only the regain's streams do. Every
wait is bounded; the seed is printed (cluster.py).
"""
import signal
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_join import metric
from test_cluster_regain import regain_events
from test_cluster_stream import ARGS as STREAM_ARGS
from test_cluster_stream import check_exact, preload

# the seen span one hour long (in the future): every pass asks each peer
# for its digest, so a pass waits on a stopped peer
ARGS = [("1h" if a == "60s" and STREAM_ARGS[k - 1] == "--seen-retention" else a)
        for k, a in enumerate(STREAM_ARGS)]
assert ARGS != STREAM_ARGS
# a stopped node is marked down after this: n2 is stopped for less
FAILURE_TIMEOUT = "4s"
# a move's passes start a second apart (REPAIR_MOVE_GAP_MS): past it, the
# pass after the one whose end was seen has started
NEXT_PASS_S = 1.3


def complete_passes(c, i):
    """The complete anti-entropy passes node i ended so far."""
    return (metric(c, i, "flamedb_repair_passes_total") -
            metric(c, i, "flamedb_repair_incomplete_passes_total"))


def last_streaming_pass(c, mark, others):
    """Waits until n0 ended the pass that streamed the last of what a
    removal gave it (its first complete pass since its clear after log line
    mark); the nodes `others` must have finished their own regains by then
    (else their digests leave those out, and no pass of n0 is complete)."""
    wait_for("n0 clearing what the removal gave it", lambda: any(
        "before receiving them whole" in x for x in c.nodes[0].log[mark:]), timeout=30,
        interval=0.02)
    base = complete_passes(c, 0)  # the pass under way clears and streams

    def ended():
        if complete_passes(c, 0) == base:
            return False
        for i in others:
            if not any("gained by a removal are streamed in" in x for x in c.nodes[i].log):
                raise RuntimeError("%s still regained when n0's regain streamed" % c.ids[i])
        return True
    wait_for("n0's pass that streamed the last of its regain", ended, timeout=60, interval=0.02)


def five_active_preloaded_two_killed(c, tag, now):
    """Waits until every node of the started 5-node cluster c is active,
    preloads 600 profiles two hours old over 24 services (tag names them),
    then kills n4 and n3 (once the preload's hints settled: a stale one in
    n3's last hints_for would keep the replica it names from being a source
    while n3 is down) and waits until n0-n2 see both down. Returns the
    preload's totals and the query range (from, until) that covers them."""
    for i in range(5):
        c.wait_state(i, "active", observers=[0, 1, 2, 3, 4], timeout=30)
    d = preload(c, tag, now, 600, nservices=24)
    c.wait_hints_settled()
    c.kill(4)
    c.kill(3)
    c.wait_state(4, "down", observers=[0, 1, 2])
    c.wait_state(3, "down", observers=[0, 1, 2])
    return d, now - 8000, now + 60


def start_with_n0_late(c):
    """Starts cluster c (5 nodes) with n0's regains settling later than the
    others' (--join-settle 5 s for it alone: its clear and stream wait that
    long), so the others have finished theirs when n0's converging pass asks
    them."""
    for i in range(5):
        c.add_node(extra=["--join-settle", "5s"] if i == 0 else [])
    c.wait_converged()
    for i in range(5):
        c.wait_state(i, "active", observers=[0, 1, 2, 3, 4], timeout=30)


def alone_exact_killed(c, k, others, d, frm, until):
    """The nodes `others` killed (-9; RF - 1 of them): node k alone answers
    every total exactly (bounded wait)."""
    for i in others:
        c.kill(i)
    for i in others:
        c.wait_state(i, "down", observers=[k])
    wait_for("exact through %s alone" % c.ids[k],
             lambda: check_exact(c, k, d, frm, until) or True, timeout=20)
    print("    %s alone (%s killed) answers exactly" % (
        c.ids[k], " and ".join(c.ids[i] for i in others)))


def caught_up_exact_then_n0_alone(c, d, frm, until):
    """Waits until n0, n1 and n2 regain nothing, checks each answers every
    total of d exactly, then n0 alone with n1 and n2 killed."""
    wait_for("every node caught up",
             lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1, 2)), timeout=60)
    for i in (0, 1, 2):
        check_exact(c, i, d, frm, until)
    alone_exact_killed(c, 0, [1, 2], d, frm, until)


def removal(c, k, removed, via):
    """(change, seen, what) for hold_converging_pass: node `removed` (down)
    removed through node `via`; seen once node k has it left."""
    def change():
        r = c.nodes[via].request("POST", "/cluster/remove?node=%s" % c.ids[removed])
        assert r.status == 200, r
    return (change, lambda: c.states(k).get(c.ids[removed]) == "left",
            "%s's removal" % c.ids[removed])


def hold_converging_pass(c, k, stopped, ring_change, still):
    """Right after node k ended the pass before its converging one, stops
    node `stopped` (SIGSTOP) so that k's next pass waits on its digest;
    once that pass started, changes the ring (ring_change: change, seen,
    what), waits until k saw it, and continues `stopped` (before it could
    be marked down). still(): k's move did not end before (else the race
    was missed). Returns what happened, once k's held pass ended."""
    change, seen, what = ring_change
    c.nodes[stopped].proc.send_signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        passes = metric(c, k, "flamedb_repair_passes_total")
        incomplete = metric(c, k, "flamedb_repair_incomplete_passes_total")
        if not still():
            raise RuntimeError("%s's move ended before %s was stopped" % (c.ids[k],
                                                                           c.ids[stopped]))
        time.sleep(NEXT_PASS_S)  # k's converging pass started, waits on `stopped`
        change()
        wait_for("%s on %s" % (what, c.ids[k]), seen, timeout=5, interval=0.02)
        during = metric(c, k, "flamedb_repair_passes_total")
        took = time.monotonic() - t_stop
    finally:
        c.nodes[stopped].proc.send_signal(signal.SIGCONT)
    assert during == passes, "a pass of %s ended while %s was stopped" % (c.ids[k],
                                                                      c.ids[stopped])
    assert took < 3.0, "%s was stopped for %.2f s: maybe marked down" % (c.ids[stopped], took)
    wait_for("%s's held pass to end" % c.ids[k],
             lambda: metric(c, k, "flamedb_repair_passes_total") > passes, timeout=10,
             interval=0.02)
    ended = "incomplete" if metric(
        c, k, "flamedb_repair_incomplete_passes_total") > incomplete else "complete"
    return ("%s stopped %.2f s; %s's pass that waited on it spanned %s and ended %s" %
            (c.ids[stopped], took, c.ids[k], what, ended))


def test_regain_end_outdated_by_a_removal():
    now = int(time.time())
    c = Cluster(5, rf=3, failure_timeout=FAILURE_TIMEOUT, args=ARGS + FAST_FORMATION,
                start=False)
    with c:
        start_with_n0_late(c)
        d = preload(c, "re", now, 600, nservices=24)
        frm, until = now - 8000, now + 60
        # n3 killed with a hint in its last hints_for (a replica slow to ack a
        # push) keeps the replica it names from being a source while n3 is
        # down: n0 would rightly wait for n3 rather than clear the removal's gains
        c.wait_hints_settled()
        cleared0 = [metric(c, i, "flamedb_repair_ranges_cleared_total") for i in range(3)]
        c.kill(4)
        c.kill(3)
        c.wait_state(4, "down", observers=[0, 1, 2])
        c.wait_state(3, "down", observers=[0, 1, 2])
        mark = len(c.nodes[0].log)
        r = c.nodes[1].request("POST", "/cluster/remove?node=n4")
        assert r.status == 200, r
        last_streaming_pass(c, mark, others=(1, 2))
        held = hold_converging_pass(c, 0, 2, removal(c, 0, 3, via=1),
                                    still=lambda: c.status(0)["regaining"] > 0)
        print("    " + held)
        wait_for("every node caught up",
                 lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1, 2)), timeout=90)
        for i in (0, 1, 2):
            ev = regain_events(c.nodes[i])
            cleared = metric(c, i, "flamedb_repair_ranges_cleared_total") - cleared0[i]
            gained = sum(n for k, n in ev if k == "gained")
            print("    %s: %s; %d interval(s) cleared for %d gained" %
                  (c.ids[i], " ".join("%s %d" % e for e in ev), cleared, gained))
            assert cleared == gained, "%s cleared %d interval(s) for %d gained" % (
                c.ids[i], cleared, gained)
        for x in c.nodes[0].log[mark:]:
            if " pass: " in x or "token interval" in x or " was removed" in x:
                print("      n0: " + x[11:220])
        ev = [k for k, _ in regain_events(c.nodes[0])]
        assert ev.count("gained") == 2, ev
        second = len(ev) - ev[::-1].index("gained") - 1
        assert "done" not in ev[:second], "n0's regain ended before n3's removal: %s" % ev
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until)
        alone_exact_killed(c, 0, [1, 2], d, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
