#!/usr/bin/env python3
"""Hints that expire before they are delivered, with real processes (issue #10):

- 3 nodes, RF 3, W 2, --hint-expiry 4s, no scheduled pass: a replica killed
  with -9 misses a batch of pushes (the other two acknowledge and store hints
  for it) and stays down past the hints' expiry. Its coordinators drop
  every hint for it undelivered (as they expire, before it is back: the
  second test); they must mark it for
  repair (listed in their hints_for, asking it for a pass) instead of
  letting it be read as complete. Once its pass fetched what it lacks and
  the marks are lifted, it answers the exact totals on its own (the other
  two killed). Without the mark it answers them short, and not partial.

- The same with the replica still down when its hints expire: they are
  dropped on expiry (their disk freed) and it is marked while it is down;
  a coordinator restarted (-9) meanwhile reads the mark back and lists it;
  the replica back later answers exact on its own after its pass. Before,
  hints for an unreachable target were only looked at when it was
  reachable again: kept past their expiry for as long as it stayed away,
  holding its share of --hints-max-bytes.

Every wait is bounded; the seed is printed (cluster.py) and replayed with
FLAMEDB_TEST_SEED.
"""
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_repair import add, hints_for, push, query, totals

EXPIRY_S = 4


def pending(c, nodes):
    return sum(c.nodes[i].metric("flamedb_hints_pending") for i in nodes)


def metric_sum(c, nodes, name):
    return sum(c.nodes[i].metric(name) for i in nodes)


# hints expire after EXPIRY_S; no scheduled repair pass
ARGS = ["--write-timeout", "1s", "--hint-expiry", "%ds" % EXPIRY_S, "--repair-interval", "0",
        "--hint-replay-interval", "200ms"] + FAST_FORMATION


def push_with_n2_killed(c, services, t0):
    """12 pushes of each service through every node, then n2 killed and 12
    more through n0 and n1 (hinted for n2). Returns the totals pushed."""
    want = push(c, [0, 1, 2], services, t0, 0, 12)
    c.kill(2)
    c.wait_state(2, "down")
    return add(want, push(c, [0, 1], services, t0, 12, 24))


def test_expired_hints_mark_their_target():
    services = [harness.unique("hx%d" % k) for k in range(3)]
    t0 = int(time.time()) - 3600
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = push_with_n2_killed(c, services, t0)
        stored = metric_sum(c, (0, 1), "flamedb_hints_stored_total")
        assert stored >= 24, "hints stored for n2: %s" % stored
        assert pending(c, (0, 1)) >= 24, pending(c, (0, 1))
        time.sleep(EXPIRY_S + 1)  # every hint for n2 is past its expiry now
        c.restart(2)
        t_back = time.monotonic()
        wait_for("the expired hints for n2 dropped", lambda: pending(c, (0, 1)) == 0, timeout=30)
        dropped = metric_sum(c, (0, 1), "flamedb_hints_dropped_expired_total")
        replayed = metric_sum(c, (0, 1), "flamedb_hints_replayed_total")
        assert dropped >= 24 and replayed == 0, "dropped %s, replayed %s" % (dropped, replayed)
        listed = any("n2" in hints_for(c, i) for i in (0, 1))
        print("    %d hints for n2 dropped on expiry %.2fs after it came back; n2 %s" %
              (dropped, time.monotonic() - t_back,
               "marked for repair" if listed else "NOT marked: read as complete"))
        # n2 is asked for a pass once the slack after the drop passed; the
        # pass fetches what it lacks and the marks are lifted
        healed, streamed, got = alone_after_repair(c, services, want, t0, t_back,
                                                   "n2 alone after its hints expired")
        assert listed, "n2 answered exactly, but was never marked"
        assert streamed >= 24, "n2 fetched %s series by repair, missed 24" % streamed
        print("    n2 repaired %.2fs after it came back (%d series fetched); alone, n0 and n1 "
              "killed: exact %s" % (healed, streamed, got))


def alone_after_repair(c, services, want, t0, t_back, what):
    """Waits until no node lists n2 (its marks lifted by the pass it was
    asked for), then kills n0 and n1 and checks n2 alone answers want,
    unflagged. Returns the seconds since t_back until the marks went, the
    series n2 fetched by repair, and its totals."""
    wait_for("the marks of n2 lifted",
             lambda: not any(hints_for(c, i) for i in (0, 1, 2)), timeout=90)
    healed = time.monotonic() - t_back
    streamed = c.nodes[2].metric("flamedb_repair_series_streamed_total")
    c.kill(0)
    c.kill(1)
    c.wait_state(0, "down", observers=[2])
    c.wait_state(1, "down", observers=[2])
    r = c.nodes[2].render(query(services[0]), t0 - 10, t0 + 4000)
    assert r.status == 200, r
    flagged = "x-flamedb-partial" in r.headers
    got = totals(c, 2, want, t0)
    assert got == want and not flagged, (
        "%s: %s, want %s (%s)" % (what, got, want, "partial" if flagged else "short and unflagged"))
    return healed, streamed, got


def own_hints_for(c, i):
    """The nodes node i itself lists in its hints_for (held hints, marks)."""
    return [h for m in c.status(i)["nodes"] if m["id"] == c.ids[i] for h in m.get("hints_for", [])]


def test_hints_expire_while_target_down():
    services = [harness.unique("hd%d" % k) for k in range(3)]
    t0 = int(time.time()) - 3600
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = push_with_n2_killed(c, services, t0)
        assert pending(c, (0, 1)) >= 24, pending(c, (0, 1))
        held = metric_sum(c, (0, 1), "flamedb_hints_pending_bytes")
        t_stored = time.monotonic()
        # n2 stays down: its hints are dropped once expired, not when it is back
        wait_for("the expired hints for n2 (down) dropped",
                 lambda: pending(c, (0, 1)) == 0, timeout=EXPIRY_S + 30)
        took = time.monotonic() - t_stored
        dropped = metric_sum(c, (0, 1), "flamedb_hints_dropped_expired_total")
        assert dropped >= 24, "dropped %s" % dropped
        assert metric_sum(c, (0, 1), "flamedb_hints_pending_bytes") == 0
        for i in (0, 1):
            assert "n2" in own_hints_for(c, i), "n%d does not mark n2: %s" % (i, own_hints_for(c, i))
        print("    n2 down: %d hints (%d bytes) dropped on expiry %.2fs after they were stored; "
              "n0 and n1 mark n2" % (dropped, held, took))
        # a coordinator restarted meanwhile reads its mark back
        c.restart(0)
        c.wait_state(0, "active", observers=[1])
        wait_for("restarted n0 listing n2", lambda: "n2" in own_hints_for(c, 0), timeout=20)
        print("    n0 restarted (-9): still marks n2")
        c.restart(2)
        t_back = time.monotonic()
        healed, streamed, got = alone_after_repair(
            c, services, want, t0, t_back, "n2 alone after its hints expired while it was down")
        assert streamed >= 24, "n2 fetched %s series by repair, missed 24" % streamed
        print("    n2 back: repaired %.2fs later (%d series fetched); alone: exact %s" %
              (healed, streamed, got))


if __name__ == "__main__":
    harness.run_tests(globals())
