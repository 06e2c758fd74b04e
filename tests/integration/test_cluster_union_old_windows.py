#!/usr/bin/env python3
"""A full repair that unites its intervals also unites their old windows
(issue #10, docs/cluster.md "A full repair that no replica serves whole"),
with real processes. The setting of test_cluster_voided_source.py (3 nodes
RF 3 write quorum 2, hinted handoff on, window checks on demand only,
--seen-retention 60s) with --profile-retention 4h: profiles two hours old
are named by their ids, a profile three days old only by the windows it
went into (no tree, no seen entry).

- test_union_takes_old_windows: n2 is stopped (SIGSTOP) and misses old
  profiles (two hours old) acknowledged through n0, which hints n2; n2 and
  n0 are killed (the writes queued for n2 die with it). n2 is started
  again with hinted handoff off, n1 is killed and one profile three days
  old is pushed through n2: no quorum (503), but n2 stored it (and marks
  n1). n1 is started with a damaged DATA_DIR/regain.ring (a full repair),
  then n0 is removed: its hint goes with it and n2 is voided, so no
  replica serves n1's intervals whole and n1 unites them. The union by
  profile id fetched the two-hour-old profiles but not the three-day-old
  one, which only n2 holds and no id names: n1's full repair converged
  and n1 was read again without it, until its next window check found n2
  holding more old windows and streamed that range whole from n2 (1 range
  in each run). Now the union also fills those old windows from each other
  replica (a window n1 lacks entirely is n2's copy of it): n1 holds them
  when it is read again, no window check streams anything afterwards, and
  every survivor ends exact alone.
"""
import os
import time

import harness
from cluster import Cluster
from test_cluster_ack_missed import HINTS_ON, add, alone_exact, marks, wait_no_marks
from test_cluster_join import big_body, metric
from test_cluster_old_windows import preload
from test_cluster_repair import ctl
from test_cluster_voided_source import SETTLE_S, WAIT_S, miss, watch

OLD_S = 3 * 86400


def test_union_takes_old_windows():
    now = int(time.time())
    frm, until = now - OLD_S - 86400, now + 60
    args = HINTS_ON + ["--repair-windows-interval", "0", "--profile-retention", "4h"]
    with Cluster(3, rf=3, write_quorum=2, args=args) as c:
        want = preload(c, 0, "uow", now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        add(want, miss(c, 0, [2], want, 9700, now - 7100, holder_seen=1))
        c.kill(0)
        c.restart(2, extra=["--hints-max-bytes", "0"])
        c.wait_state(2, "active", observers=[1], timeout=60)
        old = harness.unique("uowold")
        c.kill(1)  # nothing queued for it: the write to it fails at once
        body, v = big_body(9800, lines=8)
        r = c.nodes[2].ingest(body, name=old + ".cpu", **{"from": now - OLD_S},
                              until=now - OLD_S + 10)
        print("    n1 killed: one profile three days old pushed through n2, answered %d"
              % r.status)
        assert r.status != 200, r  # no quorum: stored on n2 alone
        want[old] = v
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
        # n2's list names n0 (down when B failed): no read plan counts a removed node
        done = lambda: not any(set(marks(c, i)) - {c.ids[0]} for i in live)
        bad, took, ok = watch(c, live, want, frm, until, done, WAIT_S)
        united = sum(1 for x in c.nodes[1].log if "united instead" in x)
        fetched = [metric(c, i, "flamedb_repair_window_profiles_fetched_total") for i in live]
        print("    every survivor read again after %.1f s (%s); %d short unflagged answers; "
              "n1 united %d interval(s); fetched by id %r"
              % (took, "yes" if ok else "no", len(bad), united, fetched))
        # what the union left out, n1's next window check streamed whole from
        # n2 after n1 was read again (its full repair converged): read short
        # in between
        late = [x for x in c.nodes[1].log
                if "holds more windows older than the seen span than this node" in x]
        print("    n1 streamed old windows whole after its full repair: %d range(s)" % len(late))
        assert united > 0, "n1 did not unite"
        assert not late, "the union left old windows out: %r" % late[:2]
        assert not bad, "short, unflagged: %r" % bad[:8]
        assert ok, "still unread: %r" % [marks(c, i) for i in live]
        alone_exact(c, live, want, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
