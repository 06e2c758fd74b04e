"""test_serve_memory.py — the shares a node builds for other nodes' queries
count in its query-memory-bytes: n1 (64 KiB) refuses the shares whose
result would not fit (flamedb_scatter_partials_memory_refused_total), the
coordinator asks the other replica of those ranges, and the answer is whole
and exact; with no other replica (rf 1) the query answers 503 naming n1 (a
busy node is not a missing one: asked again once it has room, the answer is
whole), never a partial answer and never a crash."""
import time

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, run_tests

# A service's share is about 32 bytes a stack node: 1,500 stacks make any share n1
# serves larger than its 64 KiB, whichever services the plan gives it. Each service
# is one series on one token, placed by the tokens each node drew: with 60 of them
# the ranges the plan gives n1 (about a sixth of the ring at rf 2 from n0) hold at
# least one (30 left that to chance: it failed once, n1 asked for empty ranges).
SERVICES, STACKS = 60, 1500


def load(node, t0):
    for s in range(SERVICES):
        body = "".join("main;s%d;f%d;g%d 1\n" % (s, i, i) for i in range(STACKS)).encode()
        r = node.ingest(body, tenant="t", name="svc%d.cpu" % s, **{"from": t0 + s})
        assert r.status == 200, r


def refused(node):
    return node.metric("flamedb_scatter_partials_memory_refused_total")


def views(c):
    """{node: {member: (state, hints_for)}} as each running node sees it."""
    return {c.ids[i]: {m["id"]: (m["state"], m.get("hints_for", []))
                       for m in c.status(i)["nodes"]} for i in c.live()}


def settled(c):
    """Every running node sees every member active and nobody listed in a
    hints_for: a coordinator asks only such replicas for a share. A
    restarted node lists itself until it heard every member since its start,
    and a hint kept for a write acknowledged late lists its target until it
    is delivered; the others learn either change by gossip."""
    v = views(c)
    return all(state == "active" and not hints
               for seen in v.values() for state, hints in seen.values()) and v


def wait_settled(c, what):
    wait_for("every node active and unmarked on every node (%s)" % what, lambda: settled(c),
             timeout=30)


def seen(c, r):
    """What a failed check saw: n1's served and refused shares, the answer, the views."""
    return "n1 served %d shares, refused %d; answer %d, partial %r; views %s" % (
        c.nodes[1].metric("flamedb_scatter_partials_served_total"), refused(c.nodes[1]),
        r.status, r.headers.get("x-flamedb-partial"), views(c))


def test_share_over_budget_goes_to_another_replica():
    t0 = int(time.time()) - 300
    with Cluster(3, rf=2, args=FAST_FORMATION) as c:
        c.restart(1, extra=["--query-memory-bytes", "64KiB"])
        c.wait_converged()
        wait_settled(c, "after n1's restart")
        load(c.nodes[0], t0)
        wait_settled(c, "after the pushes")
        r = c.nodes[0].render(CPU + "{}", str(t0 - 60), str(t0 + 60), tenant="t")
        print("    " + seen(c, r))
        assert refused(c.nodes[1]) >= 1, seen(c, r)
        assert r.status == 200 and "x-flamedb-partial" not in r.headers, seen(c, r)
        assert r.json()["flamebearer"]["numTicks"] == SERVICES * STACKS * 10**7, seen(c, r)
        assert c.nodes[1].metric("flamedb_scatter_memory_bytes") == 0  # given back


def test_share_over_budget_without_replica_is_refused():
    t0 = int(time.time()) - 300
    with Cluster(2, rf=1, args=FAST_FORMATION) as c:
        c.restart(1, extra=["--query-memory-bytes", "64KiB"])
        c.wait_converged()
        wait_settled(c, "after n1's restart")
        load(c.nodes[0], t0)
        wait_settled(c, "after the pushes")
        r = c.nodes[0].render(CPU + "{}", str(t0 - 60), str(t0 + 60), tenant="t")
        print("    " + seen(c, r))
        assert refused(c.nodes[1]) >= 1, seen(c, r)
        assert r.status == 503 and r.headers.get("retry-after") == "1", seen(c, r)
        assert r.json()["code"] == "unavailable", r.body
        assert ("node %s had no room" % c.ids[1]).encode() in r.body, r.body
        assert c.nodes[0].metric("flamedb_scatter_busy_ranges_refused_total") >= 1
        assert c.nodes[1].alive()  # still serving
        # with room, the same query is whole
        c.restart(1, extra=[])
        c.wait_converged()
        wait_settled(c, "after n1's second restart")
        r = c.nodes[0].render(CPU + "{}", str(t0 - 60), str(t0 + 60), tenant="t")
        assert r.status == 200 and "x-flamedb-partial" not in r.headers, seen(c, r)
        assert r.json()["flamebearer"]["numTicks"] == SERVICES * STACKS * 10**7, seen(c, r)


run_tests(globals())
