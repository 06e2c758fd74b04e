"""test_cluster_inflight.py — replica writes share ingest-inflight-bytes with
pushes: a replica whose budget is full refuses a write as unavailable (a
retryable refusal), the coordinator hints it, and the hint replays once the
replica has room, so the replica ends up with every accepted push exactly.
Node n1 has a 6 MiB budget: one push's call trees fit it, ten at once do
not; they go to n0 (rf 2, write quorum 1)."""
import threading
import time

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, run_tests

LINES = 50000  # about 100,000 call-tree nodes a push


def body_of(k):
    return "".join("main;q%d;f%d;g%d %d\n" % (k, i, i, 1 + i % 3) for i in range(LINES)).encode()


def total():
    return sum(1 + i % 3 for i in range(LINES)) * 10**7  # a sample is 10 ms


def view_lines(node):
    return [line for line in node.log_text().splitlines() if "cluster: view" in line] or [""]


def test_replica_over_budget_hinted_then_exact():
    t0 = int(time.time()) - 120
    with Cluster(2, rf=2, write_quorum=1, failure_timeout="3s", args=FAST_FORMATION) as c:
        c.restart(1, extra=["--ingest-inflight-bytes", "6MiB", "--worker-threads", "8",
                            "--max-write-jobs", "8"])
        c.wait_converged()
        n0, n1 = c.nodes
        bodies = [body_of(k) for k in range(4)]
        answers = []

        def push(i):
            r = n0.ingest(bodies[i % 4], tenant="t", name="rep%d.cpu" % i, **{"from": t0 + i})
            answers.append((i, r))

        for round_ in range(3):  # bounded: until the replica refused once
            threads = [threading.Thread(target=push, args=(round_ * 10 + i,), daemon=True)
                       for i in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            if n1.metric("flamedb_ingest_inflight_refused_total") > 0:
                break
        refused = n1.metric("flamedb_ingest_inflight_refused_total")
        stored = [i for i, r in answers if r.status == 200]
        print("    %d pushes, %d stored; the replica refused %d writes, %d hints stored"
              % (len(answers), len(stored), refused, n0.metric("flamedb_hints_stored_total")))
        assert refused > 0, "the replica never ran out of its budget"
        assert all(r.status in (200, 503) for _, r in answers), answers
        assert n0.metric("flamedb_hints_stored_total") > 0  # retryable: hinted, not dropped
        wait_for("the hints replayed", lambda: n0.metric("flamedb_hints_pending") == 0,
                 timeout=60)
        # n1 serves reads again once n0 gossiped that it holds no hint for it
        wait_for("n1 readable again", lambda: "hinted" not in view_lines(n1)[-1], timeout=30)
        c.kill(0)
        c.wait_state(0, "down", observers=[1])
        got = {i: n1.total('%s{service_name="rep%d"}' % (CPU, i), tenant="t",
                           frm=str(t0 - 60), until=str(t0 + 120)) for i in stored}
        # n1 alone answers every range: it holds every accepted push
        assert all(v == total() for v in got.values()), (total(), got)


run_tests(globals())
