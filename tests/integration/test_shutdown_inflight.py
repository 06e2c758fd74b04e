"""test_shutdown_inflight.py — SIGTERM ends a node within --shutdown-timeout
whatever is in flight: a query waiting on a peer that stopped answering
(SIGSTOP, with a long query deadline) and a replicated push waiting for that
peer's acknowledgement. Their connections are cut at the timeout; the push's
replica becomes a hint (replayed to the peer after a restart) or fails."""
import signal
import threading
import time

import harness
from cluster import Cluster, wait_for

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SLOW = ["--query-timeout", "120s", "--write-timeout", "120s", "--shutdown-timeout", "1s",
        "--join-settle", "1s"]  # the join's margin would otherwise follow the write timeout


def in_thread(fn):
    out = {}

    def run():
        try:
            out["r"] = fn()
        except Exception as e:  # noqa: BLE001 - the connection is cut on purpose
            out["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_sigterm_with_requests_outliving_the_timeout():
    t0 = int(time.time()) - 300
    # RF 1: the query must ask the stopped node for its ranges; a long failure
    # timeout keeps it "live", so only the (long) deadline would end the wait
    with Cluster(2, rf=1, failure_timeout="60s", args=SLOW) as c:
        for i in range(8):
            r = c.nodes[0].ingest(b"main;w%d 1\n" % i, name="app%d.cpu" % i, **{"from": t0 + i})
            assert r.status == 200, r
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            q, qout = in_thread(lambda: c.nodes[0].render(CPU + "{}", str(t0 - 60),
                                                          str(t0 + 60), timeout=200))
            time.sleep(0.5)
            assert q.is_alive(), ("the query should be waiting on the stopped node", qout)
            rc, took = c.nodes[0].stop(signal.SIGTERM, timeout=20)
            assert rc == 0, (rc, c.nodes[0].log_text())
            assert took < 5, "SIGTERM took %.1fs with --shutdown-timeout 1s" % took
            q.join(10)
            assert not q.is_alive()
            assert "r" not in qout or qout["r"].status != 200, qout
            assert any("stopped cleanly" in line for line in c.nodes[0].log), c.nodes[0].log_text()
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)


def test_sigterm_with_a_push_waiting_for_acks():
    t0 = int(time.time()) - 300
    with Cluster(2, rf=2, write_quorum=2, failure_timeout="60s", args=SLOW) as c:
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            p, pout = in_thread(lambda: c.nodes[0].ingest(b"main;hint 3\n", name="hinted.cpu",
                                                          **{"from": t0}))
            time.sleep(0.5)
            assert p.is_alive(), ("the push should be waiting for the stopped replica", pout)
            rc, took = c.nodes[0].stop(signal.SIGTERM, timeout=20)
            assert rc == 0, (rc, c.nodes[0].log_text())
            assert took < 5, "SIGTERM took %.1fs with --shutdown-timeout 1s" % took
            p.join(10)
            assert not p.is_alive()
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        # the local replica was written before the wait and survives the restart
        # (the client saw no 200, so a retry would count once: same profile id)
        c.restart(0)
        q = '%s{service_name="hinted"}' % CPU
        wait_for("the push readable after the restart",
                 lambda: c.nodes[0].total(q, str(t0 - 60), str(t0 + 60)) == 3 * 10**7,
                 timeout=30)
        # n1's replica became a hint at the shutdown, replayed once n0 is back
        wait_for("the hint stored at shutdown replayed to n1",
                 lambda: c.nodes[0].metric("flamedb_hints_replayed_total") >= 1, timeout=30)


if __name__ == "__main__":
    harness.run_tests(globals())
