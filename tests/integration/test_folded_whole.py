"""test_folded_whole.py — a whole-fleet render in format=folded without
maxNodes answers within the default memory settings.

Folded text writes every stack's path out whole, so its answer is many
times the merged tree: here a fleet of SERVICES services × PODS pods whose
stacks run through a chain of DEPTH long frames before a leaf of their own
makes a tree of about 4,000 nodes and an answer of about 41 MB. The node
runs with no memory flag (memory-limit 1 GiB, query-memory-bytes 64 MiB).
While the answer was grown by doubling its buffer, its last growth held 32
MiB and 64 MiB at once, more than query-memory-bytes alone: the render was
refused 413 naming the setting. Measured first and reserved once, it
answers 200 with every stack's exact value, and afterwards the node holds
nothing on its query budget.

The same fleet on two nodes (RF 1, every render a scatter-gather) at the
same defaults: each node coordinating the render answers 200 with the same
bytes. The job that merged the last share and encoded the answer gave its
charge back only after the query had counted the same gather and answer,
so the query's check saw them twice and answered 503."""
import time

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, Node, run_tests
from profiles import Pprof

SERVICES, PODS, LEAVES, DEPTH = 4, 2, 500, 100
PERIOD = 10000000  # ns per sample


def frame(s, d):
    return "github.com/acme/svc%d/internal/layer%03d/handlers.(*Request%03d).ServeWithRetries" \
           "AndDeadlines_%02d" % (s, d, d, s)


def push_fleet(node, t0):
    """Pushes one profile per pod; returns {folded path: expected value}."""
    want = {}
    for s in range(SERVICES):
        chain = [frame(s, d) for d in range(DEPTH)]
        for p in range(PODS):
            prof = Pprof([("samples", "count"), ("cpu", "nanoseconds")], period=PERIOD)
            for i in range(LEAVES):
                n = 1 + (i * 7 + p) % 13
                stack = chain + ["leaf.svc%d.pod%d.fn%04d" % (s, p, i)]
                prof.add(stack, [n, n * PERIOD])
                want[";".join(stack)] = n * PERIOD
            r = node.ingest(prof.encode_gz(), name="svc%d{pod=p%d}" % (s, p), format="pprof",
                            **{"from": t0 + p}, until=t0 + p + 10)
            assert r.status == 200, r
    return want


def render_exact(n, t0, want):
    """The whole fleet's folded render from n: 200, every line as pushed."""
    r = n.render(CPU + "{}", str(t0 - 60), str(t0 + 60), fmt="folded")
    assert r.status == 200, r
    assert "x-flamedb-partial" not in r.headers, r.headers
    # large enough that a buffer grown by doubling passed the budget
    assert len(r.body) > 34 * 1024 * 1024, len(r.body)
    got = {}
    for line in r.body.decode().splitlines():
        path, value = line.rsplit(" ", 1)
        got[path] = int(value)
    assert len(got) == len(want), (len(got), len(want))
    assert got == want, "folded lines differ from the pushed stacks"
    assert sum(got.values()) == sum(want.values())
    wait_for("nothing held", lambda: n.metric("flamedb_scatter_memory_bytes") == 0, timeout=10)
    return r.body


def test_whole_fleet_folded_at_default_memory():
    t0 = int(time.time()) - 300
    with Node() as n:
        want = push_fleet(n, t0)
        render_exact(n, t0, want)


def test_whole_fleet_folded_scatter_gather_at_default_memory():
    t0 = int(time.time()) - 300
    with Cluster(2, rf=1, args=FAST_FORMATION) as c:
        want = push_fleet(c.nodes[0], t0)
        bodies = [render_exact(n, t0, want) for n in c.nodes]
        assert bodies[0] == bodies[1], "the nodes answered different bytes"


if __name__ == "__main__":
    run_tests(globals())
