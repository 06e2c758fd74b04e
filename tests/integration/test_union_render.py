"""test_union_render.py — shard unions in a running node: a service spread
over several shards renders through one union (built by the first render,
found by the next, extended when new stacks arrive), with the same flame
graph, byte for byte, as a node that makes none (--union-cache-bytes 0);
/metrics counts the builds and hits."""
import time

from harness import CPU, Node, run_tests, unique

SHARDS = ["--shards-per-service", "4"]
WITH = Node(name="unions", args=SHARDS).start()
WITHOUT = Node(name="nounions", args=SHARDS + ["--union-cache-bytes", "0"]).start()
NOW = int(time.time())
NS_PER_SAMPLE = 10_000_000  # folded samples at the default 100 Hz, as CPU nanoseconds


def push_all(svc, pods, stacks_from, at):
    """Folded pushes of pods series of svc to both nodes; returns their total."""
    total = 0
    for pod in range(pods):
        lines = []
        for k in range(stacks_from, stacks_from + 30):
            v = 1 + (k * 7 + pod) % 13
            lines.append("main;mod%d;fn%d;leaf%d %d" % (k % 4, k, (k + pod) % 5, v))
            total += v
        body = ("\n".join(lines) + "\n").encode()
        for node in (WITH, WITHOUT):
            r = node.ingest(body, name="%s{pod=p%d}" % (svc, pod), **{"from": at + pod})
            assert r.status == 200, r
    return total


def render(node, svc):
    r = node.render(CPU + '{service_name="%s"}' % svc, frm=str(NOW - 600), until=str(NOW + 60))
    assert r.status == 200, r
    return r


def union(name):
    return WITH.metric("flamedb_storage_union_" + name)


def test_one_union_same_answer():
    svc = unique("sharded")
    want = push_all(svc, 12, 0, NOW - 300)
    builds0, hits0 = union("builds_total"), union("hits_total")
    a, b = render(WITH, svc), render(WITHOUT, svc)
    assert a.json()["flamebearer"]["numTicks"] == want * NS_PER_SAMPLE
    assert a.body == b.body  # the same flame graph, byte for byte
    assert union("builds_total") == builds0 + 1
    assert render(WITH, svc).body == a.body
    assert union("hits_total") >= hits0 + 1
    assert union("cache_bytes") > 0
    assert WITHOUT.metric("flamedb_storage_union_builds_total") == 0
    # new stacks after the union was made: it is extended, not rebuilt
    want += push_all(svc, 12, 20, NOW - 200)
    a, b = render(WITH, svc), render(WITHOUT, svc)
    assert a.json()["flamebearer"]["numTicks"] == want * NS_PER_SAMPLE
    assert a.body == b.body
    assert union("builds_total") == builds0 + 1
    assert union("refused_total") == 0


run_tests(globals())
