#!/usr/bin/env python3
"""Every pass asked for on demand runs the window check (docs/cluster.md,
"The window check", "When"), with real processes.

A cluster started new from nodes that all list each other (as
deploy/demo.sh starts one) begins with every node joining; each turns
active once it heard the others, with no active member to stream from.
The repair thread kept its own copy of "joining" and only a verifying pass
cleared it, so on such a node every pass counted as part of a move: none
ran the window check (`flamectl cluster repair` printed no `window check:`
line for those nodes, on demand or scheduled), and the thread ran a pass
every second for good, polling for a move that had ended. A node added
later (through an active one) was not affected.

test_nodes_started_together_check_windows: 2 nodes listing each other, RF
2, then a 3rd added; `flamectl cluster repair` must show a window check for
every node, and an idle node must not keep running passes.
"""
import re
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_join import metric
from test_cluster_repair import ctl

ARGS = ["--write-timeout", "1s"] + FAST_FORMATION


def test_nodes_started_together_check_windows():
    with Cluster(2, rf=2, args=ARGS, start=False) as c:
        for i in range(2):  # both list both, as deploy/demo.sh's nodes do
            c.add_node(start=False)
        for i in range(2):
            c.nodes[i].args = c.node_args(i, [0, 1])
            c.nodes[i].join = [0, 1]
        for i in range(2):
            c.nodes[i].start()
        c.wait_converged()
        n = c.add_node()
        c.wait_state(n, "active", observers=[0, 1, n], timeout=60)
        p, _ = ctl(c, 0, "cluster", "repair", timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        checked = re.findall(r"^\s+(n\d)\s+complete.*\n\s+window check:", p.stdout, re.M)
        assert checked == c.ids, "window check ran on %s of %s" % (checked, c.ids)
        before = [metric(c, i, "flamedb_repair_passes_total") for i in range(3)]
        time.sleep(3)  # --repair-interval 1h: no pass is due
        after = [metric(c, i, "flamedb_repair_passes_total") for i in range(3)]
        print("    passes over 3 idle seconds: %s" % [a - b for a, b in zip(after, before)])
        assert after == before, "idle nodes kept running passes: %s -> %s" % (before, after)


if __name__ == "__main__":
    harness.run_tests(globals())
