"""test_ingest_stack_cache.py — a node alone gives the stacks of earlier
pushes to storage by stack-node id (ingest-stack-cache-bytes): the same
service pushed again and again, its samples shuffled, with new stacks
beside known ones, renders exactly what a node with the cache off renders
(folded text stack by stack, and the total), while the node with the cache
counts samples given by id (flamedb_ingest_stack_cache_hits_total) and the
other none.
"""
import random
import time

from harness import CPU, Node, run_tests, unique
from profiles import Pprof

ON = Node(name="stackcache").start()
OFF = Node(name="stackcache-off", args=["--ingest-stack-cache-bytes", "0"]).start()
NOW = int(time.time()) // 10 * 10


def push_body(k, nstacks):
    """Push k: nstacks stacks (the first ones the same in every push), shuffled by k."""
    p = Pprof([("cpu", "nanoseconds"), ("samples", "count")])
    order = list(range(nstacks))
    random.Random(k).shuffle(order)
    for s in order:
        stack = ["main", "f%d" % (s % 7), "g%d" % (s % 13)][: 1 + s % 3] + ["leaf%d" % s]
        p.add(stack, [10 * (1 + s % 5) + k, 1 + s % 5])
    return p.encode_gz()


def folded(node, svc):
    r = node.render('%s{service_name="%s"}' % (CPU, svc), frm=str(NOW - 600),
                    until=str(NOW + 60), fmt="folded")
    assert r.status == 200, r
    return sorted(r.body.decode().splitlines())


def test_known_stacks_by_id_render_the_same():
    svc = unique("stackcache")
    hits0 = ON.metric("flamedb_ingest_stack_cache_hits_total")
    off0 = OFF.metric("flamedb_ingest_stack_cache_hits_total")
    for k, n in enumerate([40, 60, 60, 80]):
        body = push_body(k, n)
        for node in (ON, OFF):
            r = node.ingest(body, name=svc + ".cpu", format="pprof",
                            **{"from": NOW - 300 + 10 * k})
            assert r.status == 200, r
    hits = ON.metric("flamedb_ingest_stack_cache_hits_total") - hits0
    assert hits >= 40 + 60 + 60, hits  # every stack of an earlier push, at least
    assert OFF.metric("flamedb_ingest_stack_cache_hits_total") == off0
    got, want = folded(ON, svc), folded(OFF, svc)
    assert got == want, (got[:5], want[:5])
    assert len(want) == 80
    q = '%s{service_name="%s"}' % (CPU, svc)
    assert ON.total(q, str(NOW - 600), str(NOW + 60)) == OFF.total(q, str(NOW - 600),
                                                                     str(NOW + 60))


run_tests(globals())
