#!/usr/bin/env python3
"""The bound on hints over all targets (--hints-max-total-bytes), with real
processes (issues #9, #10):

- 4 nodes, RF 4, W 2, --hints-max-bytes 1MiB, --hints-max-total-bytes 8KiB,
  no scheduled pass: n2 and n3 are killed with -9 and a batch of pushes goes
  through n0 and n1, each of which stores a hint for both down replicas of
  every write. Each coordinator's stored hints stay within the total bound
  (flamedb_hints_pending_bytes summed over its targets), the hints past it
  are dropped as at a full target (flamedb_hints_dropped_full_total), and
  both targets are marked for repair (listed in hints_for) rather than
  read as complete. Back, each down replica gets its hints and its pass;
  once the marks are lifted n2 answers the exact totals on its own (the
  three others killed). Before, each target had its own bound only: with
  two targets down a node's hints could take twice --hints-max-bytes.

Every wait is bounded; the seed is printed (cluster.py) and replayed with
FLAMEDB_TEST_SEED.
"""
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_repair import add, hints_for, push, query, totals

TOTAL = 8192


def test_hints_bounded_over_all_targets():
    services = [harness.unique("ht%d" % k) for k in range(3)]
    t0 = int(time.time()) - 3600
    args = ["--write-timeout", "1s", "--repair-interval", "0", "--hint-replay-interval", "200ms",
            "--hints-max-bytes", "1MiB", "--hints-max-total-bytes", str(TOTAL)] + FAST_FORMATION
    with Cluster(4, rf=4, write_quorum=2, args=args) as c:
        want = push(c, [0, 1, 2, 3], services, t0, 0, 8)
        c.kill(2)
        c.kill(3)
        for i in (2, 3):
            c.wait_state(i, "down", observers=[0, 1])
        want = add(want, push(c, [0, 1], services, t0, 8, 128))
        for i in (0, 1):
            held = c.nodes[i].metric("flamedb_hints_pending_bytes")
            stored = c.nodes[i].metric("flamedb_hints_stored_total")
            dropped = c.nodes[i].metric("flamedb_hints_dropped_full_total")
            listed = hints_for(c, i)
            print("    n%d: %d hints stored (%d bytes held, bound %d), %d dropped; hints_for %s" %
                  (i, stored, held, TOTAL, dropped, listed))
            assert 0 < held <= TOTAL, "n%d holds %d hint bytes, bound %d" % (i, held, TOTAL)
            assert stored > 0 and dropped > 0, (stored, dropped)
            assert "n2" in listed and "n3" in listed, "n%d lists %s" % (i, listed)
        t_back = time.monotonic()
        c.restart(2)
        c.restart(3)
        wait_for("the marks of n2 and n3 lifted",
                 lambda: not any(hints_for(c, i) for i in range(4)), timeout=120)
        print("    n2 and n3 repaired %.2fs after they came back" % (time.monotonic() - t_back))
        for i in (0, 1, 3):
            c.kill(i)
            c.wait_state(i, "down", observers=[2])
        r = c.nodes[2].render(query(services[0]), t0 - 10, t0 + 4000)
        assert r.status == 200 and "x-flamedb-partial" not in r.headers, r
        got = totals(c, 2, want, t0)
        assert got == want, "n2 alone: %s, want %s" % (got, want)
        print("    n2 alone (n0, n1, n3 killed): exact %s" % got)


if __name__ == "__main__":
    harness.run_tests(globals())
