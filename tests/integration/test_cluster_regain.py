#!/usr/bin/env python3
"""Ranges a node gains again or anew, with real processes (issue #10):

- a node removed for good (`flamectl cluster remove` after kill -9) under
  continuous ingest, 4 nodes RF 3: every remaining node gains part of its
  ranges and streams them whole from a surviving replica, old data included
  (the short --seen-retention of test_cluster_stream.py keeps the seen
  comparison from moving anything, so only the stream can); flamectl waits
  for it; then every node answers exactly on its own (any RF - 1 = 2 others
  stopped);
- a node that gains ranges by a removal is killed (-9) while it streams
  them and restarted: it streams them again (DATA_DIR/regain), exact;
- a node joins (taking ranges from old owners, which keep their copies) and
  is decommissioned again, so those ranges return to their old owners: each
  clears its old copy before streaming them in, so nothing counts twice, the
  decommission completes (the totals check does not hold it), and every
  remaining node answers exactly, also with any one other node stopped.

Every wait is bounded; the seed is printed (cluster.py).
"""
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_join import metric
from test_cluster_repair import ctl
from test_cluster_stream import ARGS, check_exact, finish_pusher, preload, start_pusher


def alone_exact(c, nodes, d, frm, until, live):
    """With all but one of nodes stopped (SIGSTOP), that one answers
    exactly, for each of them in turn."""
    for i in nodes:
        others = [k for k in nodes if k != i]
        for k in others:
            c.nodes[k].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(others[0], "down", observers=[i])
            c.wait_state(others[-1], "down", observers=[i])
            wait_for("exact through %s alone" % c.ids[i],
                     lambda: check_exact(c, i, d, frm, until, live) or True, timeout=20)
        finally:
            for k in others:
                c.nodes[k].proc.send_signal(signal.SIGCONT)
        for k in others:
            c.wait_state(k, "active", observers=nodes, timeout=30)
        print("    %s alone (the others stopped) answers exactly" % c.ids[i])


def test_remove_streams_old_data():
    now = int(time.time())
    with Cluster(4, rf=3, args=ARGS) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        d = preload(c, "rm", now, 240)
        frm, until = now - 8000, now + 60
        live = harness.unique("rmlive")
        p, th = start_pusher(c, live, now - 600, [0, 1, 2])
        c.kill(3)
        c.wait_state(3, "down", observers=[0, 1, 2])
        proc, took = ctl(c, 0, "cluster", "remove", "--node", "n3")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = finish_pusher(p, th, [0, 1, 2])
        assert "every node streamed in the ranges it gained" in proc.stdout, proc.stdout
        windows = sum(metric(c, i, "flamedb_repair_windows_streamed_total") for i in (0, 1, 2))
        print("    remove took %.2f s; the three streamed %d windows" % (took, windows))
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until, (live, got))
        alone_exact(c, [0, 1, 2], d, frm, until, (live, got))
        for i in (0, 1, 2):
            assert c.status(i)["regaining"] == 0, c.status(i)
            assert metric(c, i, "flamedb_repair_regains_total") >= 1, c.ids[i]
        assert windows > 0


def test_remove_resumes_after_kill():
    """A node that gains ranges by a removal is killed (-9) while it streams
    them (throttled) and restarted: DATA_DIR/regain makes it stream them
    again, and every node then answers exactly on its own."""
    now = int(time.time())
    with Cluster(4, rf=3, args=ARGS + ["--stream-max-mb-per-s", "1"]) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        d = preload(c, "rk", now, 1200, nservices=12)
        frm, until = now - 8000, now + 60
        c.kill(3)
        c.wait_state(3, "down", observers=[0, 1, 2])
        r = c.nodes[0].request("POST", "/cluster/remove?node=n3")
        assert r.status == 200, r

        def streaming():  # a node that stored windows of its gained ranges and is not done
            for i in (0, 1, 2):
                if metric(c, i, "flamedb_repair_windows_streamed_total") > 0 and \
                        c.status(i)["regaining"] > 0:
                    return i + 1
            return 0

        k = wait_for("a node streaming the ranges it gained", streaming, timeout=30,
                     interval=0.02) - 1
        c.kill(k)
        c.restart(k)
        left = c.status(k)["regaining"]
        assert left > 0, c.status(k)
        assert any("resuming:" in line for line in c.nodes[k].log), c.nodes[k].log_text()
        print("    %s killed while it streamed; restarted with %d interval(s) to stream" %
              (c.ids[k], left))
        wait_for("every node caught up",
                 lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1, 2)), timeout=120)
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until)
        alone_exact(c, [0, 1, 2], d, frm, until, None)


def test_regain_after_join_and_decommission():
    now = int(time.time())
    with Cluster(3, rf=2, args=ARGS) as c:
        for i in (0, 1, 2):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        d = preload(c, "rg", now, 240)
        frm, until = now - 8000, now + 60
        live = harness.unique("rglive")
        p, th = start_pusher(c, live, now - 600, [0, 1, 2])
        n = c.add_node()
        c.wait_state(n, "active", observers=[0, 1, 2, n], timeout=60)
        check_exact(c, n, d, frm, until)
        t1 = time.monotonic()
        r = c.nodes[n].request("POST", "/cluster/decommission?node=%s" % c.ids[n])
        assert r.status == 200, r
        rc = c.nodes[n].proc.wait(timeout=60)  # held by the totals check without the clear
        assert rc == 0, "%s exited %s" % (c.ids[n], rc)
        print("    %s joined, then left %.2f s after its decommission" %
              (c.ids[n], time.monotonic() - t1))
        got = finish_pusher(p, th, [0, 1, 2])
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until, (live, got))
        cleared = sum(metric(c, i, "flamedb_repair_ranges_cleared_total") for i in (0, 1, 2))
        assert cleared > 0, "no old owner cleared a range it regained"
        for i in (0, 1, 2):  # RF 2: any one node lost, the other two hold everything
            others = [k for k in (0, 1, 2) if k != i]
            c.nodes[i].proc.send_signal(signal.SIGSTOP)
            try:
                c.wait_state(i, "down", observers=others)
                for k in others:
                    check_exact(c, k, d, frm, until, (live, got))
            finally:
                c.nodes[i].proc.send_signal(signal.SIGCONT)
            c.wait_state(i, "active", observers=others, timeout=30)
            print("    %s stopped: the other two answer exactly" % c.ids[i])


if __name__ == "__main__":
    harness.run_tests(globals())
