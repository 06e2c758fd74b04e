#!/usr/bin/env python3
"""A restart of a node between its full repair's union by profile id and
the end of that full repair, with real processes (issue #10, docs/cluster.md
"A full repair that no replica serves whole"). The setting is that of
test_cluster_voided_source.py: 3 nodes RF 3 write quorum 2, profiles two
hours old (older than the seen span), hinted handoff on, window checks on
demand only.

- test_full_repair_killed_at_its_first_union, _at_its_last_union,
  _after_its_union_recorded: n2 misses old profiles
  acknowledged through n0 (n0 hints n2), n2 and n0 are killed, n2 started
  again, n1 restarted with a damaged DATA_DIR/regain.ring (a full repair),
  and n0 removed: no replica serves n1's intervals whole, so n1 unites
  them with n2's by profile id (`united instead` in its log). n1
  is killed with -9 at one of three moments: its first interval united
  (others still to unite), its last one united (before the full repair
  recorded them in DATA_DIR/regain.full), or right after that record
  (before its converging pass lifted the mark); then restarted as it was.
  n2's answers while n1 is down, and n1's and n2's after the restart, are
  exact or flagged partial, never short and unflagged; their marks go
  within a bound, and each then answers the exact totals alone.
"""
import os
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_ack_missed import HINTS_ON, add, alone_exact, marks, poll, wait_no_marks
from test_cluster_join import metric
from test_cluster_old_windows import preload
from test_cluster_voided_source import SETTLE_S, WAIT_S, miss, watch


def united(c, i):
    return sum(1 for x in c.nodes[i].log if "united instead" in x)


def recorded(c, i):
    return any("streamed and verified, recorded in" in x for x in c.nodes[i].log)


def regain_intervals(c, i):
    """How many intervals DATA_DIR/regain of node i lists (its full
    repair's: every interval it replicates)."""
    with open(os.path.join(c.nodes[i].data_dir, "regain")) as f:
        lines = f.read().split("\n")
    return sum(1 for x in lines if x and not x.startswith(("flamedb-regain", "end ")))


def killed_in_union(prefix, seed, when):
    """n1's full repair unites its intervals with n2's by id (n0 removed
    with the only word that n2 is short); n1 is killed (-9) at `when`:
    "first" (its first united interval logged), "last" (its last, before
    the full repair recorded them), "recorded" (after that record, before
    its converging pass lifted the mark); then restarted as it was."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    args = HINTS_ON + ["--repair-windows-interval", "0"]
    settle = ["--join-settle", "%ds" % SETTLE_S]
    with Cluster(3, rf=3, write_quorum=2, args=args) as c:
        want = preload(c, 0, prefix, now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        add(want, miss(c, 0, [2], want, seed, now - 7100, holder_seen=1))
        c.kill(0)
        c.restart(2)
        c.nodes[1].kill()
        with open(os.path.join(c.nodes[1].data_dir, "regain.ring"), "w") as f:
            f.write("damaged\n")
        c.restart(1, extra=settle)
        live = [1, 2]
        c.wait_state(0, "down", observers=live, timeout=60)
        assert any("this node cannot tell which ranges it holds short" in x
                   for x in c.nodes[1].log), "n1 is not in a full repair"
        r = c.nodes[2].request("POST", "/cluster/remove?node=%s" % c.ids[0])
        assert r.status == 200, r
        # short unflagged answers are looked for all along, the kill's
        # moment aside (every poll costs a round trip the kill must not wait)
        wait_for("n1 to unite an interval by id", lambda: united(c, 1) > 0,
                 timeout=WAIT_S, interval=0.005)
        total = regain_intervals(c, 1)
        if when == "last":
            wait_for("n1 to unite its %d intervals" % total, lambda: united(c, 1) >= total,
                     timeout=WAIT_S, interval=0.005)
        elif when == "recorded":
            wait_for("n1 to record its intervals", lambda: recorded(c, 1), timeout=WAIT_S,
                     interval=0.005)
        c.kill(1)
        before, rec = united(c, 1), recorded(c, 1)
        conv = any("the full repair converged" in x for x in c.nodes[1].log)
        print("    n0 removed; n1 killed (-9) after uniting %d of %d interval(s) of its full "
              "repair (recorded: %s, converged: %s)" % (before, total, rec, conv))
        assert not conv, "n1's full repair ended before the kill: nothing tested"
        down, counts = poll(c, [2], want, frm, until)  # n2 alone while n1 is down
        print("    through n2 while n1 was down: %d answered, %d flagged partial, %d refused, "
              "%d short unflagged" % (counts[2], counts[0], counts[1], len(down)))
        c.restart(1, extra=settle)
        assert c.status(1)["full_repair"] == 1, "n1 restarted out of its full repair"
        done = lambda: not any(marks(c, i) for i in live)
        bad, took, ok = watch(c, live, want, frm, until, done, WAIT_S)
        again = united(c, 1)
        cleared = metric(c, 1, "flamedb_repair_ranges_cleared_total")
        print("    restarted; every survivor read again after %.1f s (%s); %d short unflagged "
              "answers; after the restart n1 united %d interval(s), cleared %d"
              % (took, "yes" if ok else "no", len(bad), again, cleared))
        for x in c.nodes[1].log:
            if "full repair" in x:
                print("      n1: " + x[11:220])
        assert not down + bad, "short, unflagged: %r" % (down + bad)[:8]
        assert ok, "still unread: %r" % [marks(c, i) for i in live]
        alone_exact(c, live, want, frm, until)


def test_full_repair_killed_at_its_first_union():
    killed_in_union("fuf", 9770, "first")


def test_full_repair_killed_at_its_last_union():
    killed_in_union("ful", 9771, "last")


def test_full_repair_killed_after_its_union_recorded():
    killed_in_union("fur", 9772, "recorded")


if __name__ == "__main__":
    harness.run_tests(globals())
