"""test_storage_bounds.py — bounded storage seen through the API: a service
whose stack-node table is full (--max-stack-nodes) keeps taking pushes, its
new stacks folded into "other" nodes with the total exact; a span id named
by many pushes keeps a bounded tree (--max-span-nodes) that renders with its
exact total. Both are counted in /metrics."""
import time

from harness import CPU, Node, run_tests, unique
from profiles import Pprof

NODE = Node(name="bounds", args=["--max-stack-nodes", "1024", "--max-span-nodes", "32",
                                 "--shards-per-service", "1"]).start()
NOW = int(time.time())
SPAN = "00000000000000ab"


def names(r):
    return r.json()["flamebearer"]["names"]


def test_full_stack_table_folds_never_refuses():
    svc = unique("full")
    want = 0
    for push in range(40):  # 40 x 60 fresh stacks of depth 3: far past 1,024 nodes
        p = Pprof([("cpu", "nanoseconds")])
        for k in range(60):
            p.add(["main", "h%d" % (push % 4), "w%d_%d" % (push, k)], [k + 1])
            want += k + 1
        r = NODE.ingest(p.encode(), name=svc, format="pprof", **{"from": NOW - 300 + push})
        assert r.status == 200, (push, r)
    sel = CPU + '{service_name="%s"}' % svc
    assert NODE.total(sel) == want
    assert "other" in names(NODE.render(sel))
    assert NODE.metric("flamedb_storage_folded_stacks_total") > 0


def test_span_tree_capped_total_exact():
    svc = unique("spancap")
    want = 0
    for push in range(20):
        p = Pprof([("cpu", "nanoseconds")])
        for k in range(10):
            p.add(["main", "s%d_%d" % (push, k)], [k + 1], labels={"span_id": SPAN})
            want += k + 1
        r = NODE.ingest(p.encode(), name=svc, format="pprof", **{"from": NOW - 100})
        assert r.status == 200, r
    sel = CPU + '{service_name="%s",span_id="%s"}' % (svc, SPAN)
    r = NODE.render(sel)
    assert r.status == 200, r
    assert r.json()["flamebearer"]["numTicks"] == want
    assert len(names(r)) <= 32 + 1, len(names(r))  # names: distinct symbols of <= 32 nodes
    assert "other" in names(r)


run_tests(globals())
