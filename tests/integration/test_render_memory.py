"""test_render_memory.py — a render's maxNodes selection counts in
query-memory-bytes together with the merge's working memory it is built
beside. 200,000 distinct stacks rendered with maxNodes=200000 on one node:
the merge's own working memory (dense vectors and the forest of about
400,000 ids, with parents and least children) fits in 24 MiB (such a
render is answered whole from 20 MiB up when the selection is not counted),
but with the selection's arrays (the cut of query/cut.c: a chain link,
state, hidden count and path hash per id, and its answer with room for an
`other` per kept node: it needs 30 MiB) it does not, so the node's only
share is refused for its memory and the query answers 503 naming the node
(before the selection was counted it came back whole; before a busy node's
ranges were refused rather than missing, the answer was an empty partial
one); with
96 MiB the same render is whole and exact, and afterwards the node holds
nothing."""
import time

from cluster import wait_for
from harness import CPU, Node, run_tests

BATCHES, PER = 10, 20000
STACKS = BATCHES * PER
MAX_NODES = "200000"


def load(node, t0):
    for b in range(BATCHES):
        body = "".join("main;mod%d;fn_%d_%d;leaf_%d 1\n" % (i % 50, b, i, i)
                       for i in range(PER)).encode()
        r = node.ingest(body, tenant="t", name="app.cpu", **{"from": t0})
        assert r.status == 200, r


def render(node, t0):
    return node.render(CPU + "{}", str(t0 - 60), str(t0 + 60), tenant="t", maxNodes=MAX_NODES)


def refused(node):
    return node.metric("flamedb_scatter_partials_memory_refused_total")


def test_selection_counts_beside_the_merge():
    t0 = int(time.time()) - 300
    with Node(args=["--query-memory-bytes", "24MiB"]) as n:
        load(n, t0)
        r = render(n, t0)
        assert r.status == 503, r
        assert b"had no room for its share" in r.body and b"query-memory-bytes" in r.body, r.body
        assert refused(n) >= 1
        wait_for("nothing held", lambda: n.metric("flamedb_scatter_memory_bytes") == 0,
                 timeout=10)


def test_same_render_fits_a_larger_budget():
    t0 = int(time.time()) - 300
    # 96 MiB is more than the headroom the other budgets' defaults leave in
    # 1 GiB: the node gets 2 GiB so the start is not refused
    with Node(args=["--query-memory-bytes", "96MiB", "--memory-limit", "2GiB"]) as n:
        load(n, t0)
        r = render(n, t0)
        assert r.status == 200, r
        assert "x-flamedb-partial" not in r.headers, r.headers
        fb = r.json()["flamebearer"]
        assert fb["numTicks"] == STACKS * 10**7, fb["numTicks"]
        assert refused(n) == 0
        wait_for("nothing held", lambda: n.metric("flamedb_scatter_memory_bytes") == 0,
                 timeout=10)


if __name__ == "__main__":
    run_tests(globals())
