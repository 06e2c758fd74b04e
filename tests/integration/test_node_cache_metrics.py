"""test_node_cache_metrics.py — the stack-node table cache (--node-cache-bytes)
seen through /metrics: pushes to more services than the cache holds count
misses and evictions and keep the bytes held within the bound; pushes and
renders over a set that fits count hits and no further miss or eviction; a
push that misses an indexed table that fits --node-whole-read-percent of the
cache reads it whole (counted) and reads no index entry."""
import time

from harness import CPU, Node, run_tests, unique
from profiles import Pprof

# 1 MiB: the tables get 768 KiB; one shard per service, so a service is one table;
# no stack cache, so every push reaches its table, and no shard unions (both are
# taken out of node-cache-bytes; a union is of several shards, which these have not)
NODE = Node(name="nodecache", args=["--node-cache-bytes", "1MiB", "--ingest-stack-cache-bytes", "0",
                                    "--union-cache-bytes", "0", "--shards-per-service", "1"]).start()
NOW = int(time.time())
WIDE = 3000  # distinct stacks of depth 3 per big service: 6,001 nodes, ~150 KiB or more
# every table indexed; a 6,001-node table takes about 330 KiB whole: within half
# of the 768 KiB the tables get, so two fit at once
WHOLE = Node(name="nodewhole", args=["--node-cache-bytes", "1MiB", "--shards-per-service", "1",
                                     "--ingest-stack-cache-bytes", "0", "--union-cache-bytes", "0",
                                     "--node-index-min-nodes", "1",
                                     "--node-whole-read-percent", "50"]).start()


def counters():
    names = ("hits_total", "misses_total", "evictions_total", "bytes", "limit_bytes")
    return {n: NODE.metric("flamedb_storage_node_cache_" + n) for n in names}


def push(svc, stacks, at, node=NODE):
    p = Pprof([("cpu", "nanoseconds")])
    for k in range(stacks):
        p.add(["main", "h%d" % k, "w%d" % k], [k + 1])
    r = node.ingest(p.encode(), name=svc, format="pprof", **{"from": at})
    assert r.status == 200, (svc, r)
    return stacks * (stacks + 1) // 2


def test_too_many_services_miss_and_evict():
    before = counters()
    assert before["limit_bytes"] == 768 * 1024, before
    svcs = [unique("big%d" % i) for i in range(10)]  # ten tables of ~150 KiB: past 768 KiB
    for i, svc in enumerate(svcs):
        push(svc, WIDE, NOW - 300 + i)
    for svc in svcs:  # a render reads a table whole: those evicted are read again
        assert NODE.total(CPU + '{service_name="%s"}' % svc) == WIDE * (WIDE + 1) // 2
    after = counters()
    # each new table is a miss, and at most five fit: the renders read some again
    assert after["misses_total"] >= before["misses_total"] + len(svcs) + 1, (before, after)
    assert after["evictions_total"] >= before["evictions_total"] + len(svcs) - 5, (before, after)
    assert 0 < after["bytes"] <= after["limit_bytes"], after


def test_fitting_set_hits_without_misses():
    svcs = [unique("small%d" % i) for i in range(3)]
    want = {svc: 0 for svc in svcs}
    for i, svc in enumerate(svcs):  # first pushes: new tables, each a miss
        want[svc] += push(svc, 50, NOW - 200 + i)
    warm = counters()
    for rnd in range(3):  # the three tables (a few KiB) fit: every use is a hit
        for i, svc in enumerate(svcs):
            want[svc] += push(svc, 50, NOW - 100 + rnd * 10 + i)
            assert NODE.total(CPU + '{service_name="%s"}' % svc) == want[svc]
    after = counters()
    assert after["misses_total"] == warm["misses_total"], (warm, after)
    assert after["evictions_total"] == warm["evictions_total"], (warm, after)
    assert after["hits_total"] >= warm["hits_total"] + 2 * 3 * len(svcs), (warm, after)



def test_missed_indexed_table_read_whole():
    def metric(n):
        return WHOLE.metric("flamedb_storage_node_" + n)
    svcs = [unique("idx%d" % i) for i in range(4)]
    for i, svc in enumerate(svcs):  # four tables of ~330 KiB: two fit
        push(svc, WIDE, NOW - 300 + i, node=WHOLE)
    whole0, index0 = metric("table_whole_reads_total"), metric("index_reads_total")
    misses0 = metric("cache_misses_total")
    for i, svc in enumerate(svcs):  # in turn again: each evicted, missed, read whole
        push(svc, WIDE + 10, NOW - 200 + i, node=WHOLE)
    assert metric("cache_misses_total") >= misses0 + 2
    assert metric("table_whole_reads_total") >= whole0 + 2
    assert metric("index_reads_total") == index0
    want = WIDE * (WIDE + 1) // 2 + (WIDE + 10) * (WIDE + 11) // 2
    for svc in svcs:
        assert WHOLE.total(CPU + '{service_name="%s"}' % svc) == want, svc
    assert 0 < metric("cache_bytes") <= metric("cache_limit_bytes")


run_tests(globals())
