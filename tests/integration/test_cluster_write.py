#!/usr/bin/env python3
"""Replicated writes and hinted handoff across real processes (issue #3;
exact answers, and a profile counted once however often it is delivered):

- 3 nodes, RF=3, W=2, continuous ingest through every node while one node
  is killed with -9: every push that got 200 is counted exactly, from every
  node; pushes that failed during the kill are retried by the client and
  then count exactly once;
- the killed node comes back and catches up through hints (the hint gauges
  of every node go to 0), after which killing another node still leaves
  exact answers;
- W=3 with a node down: 503 with a reason that counts the replicas.

Every wait is bounded; the seed is printed (cluster.py) and replayed with
FLAMEDB_TEST_SEED.
"""
import threading
import time

import harness
from cluster import FAST_FORMATION, RNG, Cluster, wait_for

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SCALE = 10**7  # folded .cpu at the default 100 Hz: 1e9/100 ns per sample
FAST = ["--write-timeout", "1s", "--hint-replay-interval", "200ms"] + FAST_FORMATION


def query(service):
    return '%s{service_name="%s"}' % (CPU, service)


class Pusher:
    """Pushes distinct small profiles of one service to the live nodes in
    turn; remembers what was acknowledged and what failed (to retry)."""

    def __init__(self, cluster, service, t0):
        self.c = cluster
        self.service = service
        self.t0 = t0
        self.seq = 0
        self.acked = {}  # seq -> samples
        self.failed = {}  # seq -> (body, from)
        self.statuses = {}
        self.stop = threading.Event()
        self.targets = list(range(cluster.n))
        self.lock = threading.Lock()
        # push seq's `from` is t0 + seq * step, in seconds (unit 1) or
        # milliseconds (unit 1000); its `until` is 10 s later. One second of
        # history per push (a distinct id each) runs ahead of the clock at up
        # to 100 pushes a second: a pusher whose pushes must stay inside a
        # query range that ends near now takes unit 1000, step 10 (it sleeps
        # 10 ms between pushes, so its times never pass t0 + the time it ran)
        self.unit = 1
        self.step = 1

    def body(self, seq):
        v = 1 + RNG.randrange(9)
        stacks = "main;work;f%d %d\nmain;idle %d\n" % (seq % 7, v, seq % 3 + 1)
        return stacks.encode(), v + seq % 3 + 1

    def push(self, seq, body, frm, node):
        try:
            r = self.c.nodes[node].ingest(body, name=self.service + ".cpu", **{"from": frm},
                                          until=frm + 10 * self.unit)
            status = r.status
        except OSError:
            status = "conn"
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        return status

    def run(self):
        while not self.stop.is_set() and self.seq < 100000:
            seq = self.seq
            self.seq += 1
            body, samples = self.body(seq)
            frm = self.t0 * self.unit + seq * self.step  # a distinct id each
            with self.lock:
                node = self.targets[seq % len(self.targets)]
            if self.push(seq, body, frm, node) == 200:
                self.acked[seq] = samples
            else:
                self.failed[seq] = (body, frm, samples)
            time.sleep(0.01)

    def retry_failed(self, nodes):
        """Retries every failed push until it is acknowledged (bounded)."""
        for seq, (body, frm, samples) in sorted(self.failed.items()):
            wait_for("retry of push %d" % seq,
                     lambda: self.push(seq, body, frm, RNG.choice(nodes)) == 200, timeout=20)
            self.acked[seq] = samples
        self.failed.clear()


def totals_equal(c, nodes, service, want, frm, until):
    got = {c.ids[i]: c.nodes[i].total(query(service), frm, until) // SCALE for i in nodes}
    return got if all(v == want for v in got.values()) else False


def hints_pending(c, i):
    return c.nodes[i].metric("flamedb_hints_pending")


def test_kill_restart_catch_up_kill_another():
    service = harness.unique("repl")
    t0 = int(time.time()) - 3000
    with Cluster(3, rf=3, write_quorum=2, args=FAST) as c:
        p = Pusher(c, service, t0)
        th = threading.Thread(target=p.run, daemon=True)
        th.start()
        time.sleep(1.5)
        c.kill(2)
        died = p.seq
        time.sleep(1.0)
        with p.lock:
            p.targets = [0, 1]
        c.wait_state(2, "down")
        time.sleep(1.0)  # writes while it is known down: hinted at once
        p.stop.set()
        th.join(timeout=30)
        assert not th.is_alive(), "pusher did not stop"
        failed_during_kill = len(p.failed)
        p.retry_failed([0, 1])
        want = sum(p.acked.values())
        frm, until = t0 - 10, t0 + p.seq + 20
        print("    %d pushes (%d before the kill), statuses %s, %d retried, %d samples"
              % (p.seq, died, p.statuses, failed_during_kill, want))
        got = wait_for("exact totals on n0 and n1",
                       lambda: totals_equal(c, [0, 1], service, want, frm, until), timeout=20)
        print("    exact on the survivors: %s" % got)
        stored = sum(c.nodes[i].metric("flamedb_hints_stored_total") for i in (0, 1))
        assert stored > 0, "no hint was stored for the killed node"
        assert hints_pending(c, 0) + hints_pending(c, 1) > 0

        c.restart(2)
        c.wait_converged(timeout=30)
        t1 = time.monotonic()
        wait_for("hints delivered to n2",
                 lambda: hints_pending(c, 0) + hints_pending(c, 1) == 0, timeout=30)
        replayed = sum(c.nodes[i].metric("flamedb_hints_replayed_total") for i in (0, 1))
        print("    %d hints stored, %d replayed in %.2fs after the restart"
              % (stored, replayed, time.monotonic() - t1))
        assert replayed > 0
        # the emptied hint lists reach every node with the next gossip rounds
        wait_for("no hints_for in any node's status",
                 lambda: all(not m.get("hints_for") for i in range(3)
                             for m in c.status(i)["nodes"]), timeout=10)
        got = wait_for("exact totals on every node after catch-up",
                       lambda: totals_equal(c, [0, 1, 2], service, want, frm, until), timeout=20)
        print("    exact everywhere after catch-up: %s" % got)

        c.kill(0)
        c.wait_state(0, "down")
        got = totals_equal(c, [1, 2], service, want, frm, until)
        assert got, "after losing n0: %s" % {
            c.ids[i]: c.nodes[i].total(query(service), frm, until) // SCALE for i in (1, 2)}
        print("    exact after losing n0 too: %s" % got)


def test_write_quorum_three_with_a_node_down():
    service = harness.unique("w3")
    now = int(time.time())
    with Cluster(3, rf=3, write_quorum=3, args=FAST) as c:
        r = c.nodes[1].ingest(b"a;b 5\n", name=service + ".cpu", **{"from": now - 30})
        assert r.status == 200, r
        c.kill(2)
        c.wait_state(2, "down")
        r = c.nodes[0].ingest(b"a;c 7\n", name=service + ".cpu", **{"from": now - 20})
        assert r.status == 503, r
        body = r.json()
        assert body["code"] == "unavailable", body
        assert "2 of the 3 replicas" in body["message"] and "quorum is 3" in body["message"], body
        assert r.headers.get("retry-after") == "1", r.headers
        print("    503: %s" % body["message"])
        # nothing of the refused push was stored: the total is the first push only
        assert c.nodes[0].total(query(service), now - 60, now) // SCALE == 5


def test_write_quorum_three_with_a_silent_node():
    """A node that is killed but not yet known down: the write waits for the
    deadline, answers 503 naming the acks, and stores a hint for it."""
    service = harness.unique("silent")
    now = int(time.time())
    with Cluster(3, rf=3, write_quorum=3,
                 args=["--write-timeout", "500ms", "--hint-replay-interval", "200ms"]
                 + FAST_FORMATION,
                 failure_timeout="10s") as c:
        c.kill(2)
        t = time.monotonic()
        r = c.nodes[0].ingest(b"a;c 7\n", name=service + ".cpu", **{"from": now - 20})
        took = time.monotonic() - t
        assert r.status == 503, r
        msg = r.json()["message"]
        assert "2 of 3 replicas acknowledged, 3 needed" in msg and "n2 (timed out)" in msg, msg
        assert took < 5, took
        print("    503 after %.2fs: %s" % (took, msg))
        wait_for("a hint for n2", lambda: c.nodes[0].metric("flamedb_hints_pending") == 1,
                 timeout=10)
        # the client retries once n2 is back: counted once everywhere
        c.restart(2)
        c.wait_converged(timeout=30)
        wait_for("hint delivered", lambda: c.nodes[0].metric("flamedb_hints_pending") == 0,
                 timeout=20)
        r = c.nodes[1].ingest(b"a;c 7\n", name=service + ".cpu", **{"from": now - 20})
        assert r.status == 200, r
        for i in range(3):
            assert c.nodes[i].total(query(service), now - 60, now) // SCALE == 7, i


if __name__ == "__main__":
    harness.run_tests(globals())
