#!/usr/bin/env python3
"""A replica that missed writes of profiles older than the span a repair
pass compares (the seen span: --seen-retention less --max-future and an
hour) is not read as complete until those windows are restored
(docs/cluster.md, "Read correctness: repair marks"), with real processes,
3 nodes RF 3, hinted handoff off, --seen-retention 2h:

n2 is killed; recent profiles and profiles about 2.5 h old (a backfill,
outside the compared span) are pushed through n0 and n1, which mark n2
(no hint will deliver them). n2 is started again. Every answer through
n2 is exact or flagged partial throughout, and once no node lists n2 in
its hints_for any more, n2 alone (n0 and n1 stopped) answers every total
exactly, the old ones included. A binary whose marks are lifted by any
complete pass lifts them once n2's pass fetched the recent profiles: n2
then answers the old services short (0 of N), unflagged.

Every wait is bounded; the seed is printed (cluster.py).
"""
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_regain_full import OLD_S, alone_exact, answers, preload
from test_cluster_repair import hints_for

ARGS = ["--write-timeout", "1s", "--hints-max-bytes", "0", "--query-timeout", "4s",
        "--repair-interval", "0", "--seen-retention", "2h"] + FAST_FORMATION

# From n2's start until no node marks it: the start's wait, the slack after
# the last miss (write timeout + 1 s), a pass asked by the coordinators and
# whatever restores the old windows, with room for a loaded 2-core machine.
HEAL_S = 90


def test_old_missed_writes_are_restored_before_the_mark_goes():
    now = int(time.time())
    with Cluster(3, rf=3, args=ARGS) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        want = preload(c, 0, "before", now, 30, nservices=6)
        want.update(preload(c, 0, "beforeold", now - OLD_S, 18, nservices=6))
        c.kill(2)
        c.wait_state(2, "down", observers=[0, 1])
        missed = preload(c, 0, "missed", now, 30, nservices=6)
        missed.update(preload(c, 1, "missedold", now - OLD_S, 30, nservices=6))
        want.update(missed)
        frm, until = now - OLD_S - 3600, now + 60
        assert "n2" in hints_for(c, 0) + hints_for(c, 1), "n2 not marked"
        c.restart(2)
        t0 = time.monotonic()
        bad, lifted = [], None
        for _ in range(10000):  # bounded by HEAL_S
            for svc, got, w, part in answers(c, 2, want, frm, until):
                if not part and got != w:
                    bad.append((svc, got, w))
            if not any(hints_for(c, i) for i in (0, 1, 2)):
                lifted = time.monotonic() - t0
                break
            if time.monotonic() - t0 > HEAL_S:
                break
            time.sleep(0.3)
        assert not bad, "through n2, short and unflagged: %r" % bad[:5]
        assert lifted is not None, "n2 still marked %d s after its start: %r" % (
            HEAL_S, [hints_for(c, i) for i in range(3)])
        print("    no node marks n2 %.1f s after its start; every answer through it exact "
              "or flagged meanwhile" % lifted)
        for i, text in ((0, "it missed a write of a profile"), (1, "it missed a write of a profile"),
                        (2, "older than the span"),
                        (2, "full repair converged")):
            lines = [x for x in c.nodes[i].log if text in x]
            if lines:
                print("    %s: %s" % (c.ids[i], lines[0].split(" ", 2)[-1][:220]))
        alone_exact(c, 2, want, frm, until)
        print("    n2 alone answers every total exactly (%d services, %d with profiles "
              "older than the compared span)" % (len(want),
                                                 sum(1 for s in want if "old" in s)))


if __name__ == "__main__":
    harness.run_tests(globals())
