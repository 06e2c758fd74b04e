#!/usr/bin/env python3
"""A full repair that unites its intervals also unites their old windows
(issue #10, docs/cluster.md "A full repair that no replica serves whole"),
with real processes. The setting of test_cluster_voided_source.py (3 nodes
RF 3 write quorum 2, hinted handoff on, window checks on demand only,
--seen-retention 60s) with --profile-retention 4h: profiles two hours old
are named by their ids, a profile three days old only by the windows it
went into (no tree, no seen entry).

- test_union_takes_old_windows: n0 is restarted with --hint-replay-interval
  10m, so the hints it stores are not replayed within the test. n2 is
  stopped (SIGSTOP) and misses old profiles (two hours old) acknowledged
  through n0 (n0 hints n2); then n2 runs again and n1 is stopped and misses
  one profile three days old, acknowledged through n0 by n0 and n2 (n0
  hints n1). n1 and n2 are killed, then n0; n2 is started again and n1 with
  a damaged DATA_DIR/regain.ring (a full repair); n0 is removed, and its
  hints, the only word of what each missed, go with it. n2 is voided, so
  no replica serves n1's intervals whole and n1 unites them. The union by
  profile id fetched the two-hour-old profiles from n1's peers but not the
  three-day-old one, which only n2 holds and no id names: once n1's full
  repair lifted its mark, n1 alone answered its service short and
  unflagged (0 of its samples). Now the union also fills those old windows
  from each other replica (a window n1 lacks entirely is n2's copy of it),
  and every survivor ends exact alone.
"""
import os
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_ack_missed import HINTS_ON, add, alone_exact, mark_on, marks, wait_no_marks
from test_cluster_join import big_body, metric
from test_cluster_old_windows import preload, push_ok
from test_cluster_repair import ctl
from test_cluster_voided_source import SETTLE_S, WAIT_S, watch

OLD_S = 3 * 86400


def stopped_miss(c, via, missing, holder_seen, svcs, seed, t):
    """One profile per service at t + k acknowledged through `via` while
    node `missing` is stopped (SIGSTOP), until node holder_seen sees via's
    hints_for list it; `missing` stays stopped. {service: samples}."""
    out = {}
    c.nodes[missing].proc.send_signal(signal.SIGSTOP)
    for k, svc in enumerate(sorted(svcs)):
        body, v = big_body(seed + k, lines=8)
        push_ok(c, via, body, svc, t + k)
        out[svc] = v
    wait_for("n%d hears n%d's hint for n%d" % (holder_seen, via, missing),
             lambda: mark_on(c, holder_seen, via, missing), timeout=60)
    return out


def test_union_takes_old_windows():
    now = int(time.time())
    frm, until = now - OLD_S - 86400, now + 60
    args = HINTS_ON + ["--repair-windows-interval", "0", "--profile-retention", "4h"]
    with Cluster(3, rf=3, write_quorum=2, args=args) as c:
        want = preload(c, 0, "uow", now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        c.restart(0, extra=["--hint-replay-interval", "10m"])
        c.wait_state(0, "active", observers=[1, 2], timeout=60)
        try:
            add(want, stopped_miss(c, 0, 2, 1, list(want), 9700, now - 7100))
            old = harness.unique("uowold")
            c.nodes[2].proc.send_signal(signal.SIGCONT)
            c.wait_state(2, "active", observers=[0], timeout=60)
            want.update(stopped_miss(c, 0, 1, 2, [old], 9800, now - OLD_S))
        finally:
            c.kill(1)
            c.kill(2)
        c.kill(0)
        c.restart(2)
        with open(os.path.join(c.nodes[1].data_dir, "regain.ring"), "w") as f:
            f.write("damaged\n")
        c.restart(1, extra=["--join-settle", "%ds" % SETTLE_S])
        live = [1, 2]
        c.wait_state(0, "down", observers=live, timeout=60)
        full = any("this node cannot tell which ranges it holds short" in x
                   for x in c.nodes[1].log)
        p, _ = ctl(c, 2, "cluster", "remove", "--node", c.ids[0], timeout=240)
        assert p.returncode == 0, p.stdout + p.stderr
        print("    n1 in a full repair: %s; n0 removed" % full)
        assert full
        done = lambda: not any(marks(c, i) for i in live)
        bad, took, ok = watch(c, live, want, frm, until, done, WAIT_S)
        united = sum(1 for x in c.nodes[1].log if "united instead" in x)
        filled = metric(c, 1, "flamedb_repair_window_windows_filled_total")
        fetched = [metric(c, i, "flamedb_repair_window_profiles_fetched_total") for i in live]
        print("    every survivor read again after %.1f s (%s); %d short unflagged answers; "
              "n1 united %d interval(s), filled %d old window(s); fetched by id %r"
              % (took, "yes" if ok else "no", len(bad), united, filled, fetched))
        assert united > 0, "n1 did not unite"
        assert not bad, "short, unflagged: %r" % bad[:8]
        assert ok, "still unread: %r" % [marks(c, i) for i in live]
        alone_exact(c, live, want, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
