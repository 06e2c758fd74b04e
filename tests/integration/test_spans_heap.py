"""test_spans_heap.py — a traced service's labelled heap push through HTTP
(issue #9): a heap profile of four sample types, one sample per (stack,
span), 6,400 stacks and 16 span ids (about 900 KB gunzipped), pushed to a
node with the default limits, is accepted (it was refused with 413 at its
span trees), and each span's total of each sample type is exactly the sum
of its samples. Randomised: the seed is printed and read back from
FLAMEDB_TEST_SEED."""
import os
import random
import time

from harness import Node, run_tests, unique
from profiles import Pprof

NODE = Node(name="spansheap").start()
NOW = int(time.time())
SEED = int(os.environ.get("FLAMEDB_TEST_SEED", random.randrange(1 << 30)))
TYPES = [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"),
         ("inuse_space", "bytes")]
SPANS = ["%016x" % ((0x9E3779B97F4A7C15 * (i + 1)) & (2**64 - 1)) for i in range(16)]


def heap_push(rng):
    """The push and its totals by (type index, span id)."""
    p = Pprof(TYPES, period_type=("space", "bytes"), period=524288)
    funcs = ["github.com/acme/checkout/internal/pkg%d.(*T%d).Method%d" % (f // 20, f % 7, f)
             for f in range(400)]
    leaves = ["runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice"]
    sizes = [16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 4096, 32768]
    paths, want = [], {}
    for i in range(6400):
        stack = []
        if paths:  # a caller prefix of an earlier stack
            q = rng.choice(paths)[0]
            stack = q[:1 + rng.randrange(len(q) - 1)]
        stack = stack + [rng.choice(funcs) for _ in range(1 + rng.randrange(6))]
        paths.append((stack[:47] + [rng.choice(leaves)], rng.choice(sizes)))
    for stack, size in paths:
        first, n = rng.randrange(16), 1 + rng.randrange(6)
        for k in range(n):
            span = SPANS[(first + 5 * k) % 16]
            objs = 512 * (1 + rng.randrange(8))
            live = 0 if rng.randrange(4) == 0 else objs * rng.randrange(100) // 100
            values = [objs, objs * size, live, live * size]
            p.add(stack, values, {"span_id": span})
            for t, v in enumerate(values):
                want[(t, span)] = want.get((t, span), 0) + v
    return p, want


def test_labelled_heap_push_accepted_and_exact():
    print("    seed %d (FLAMEDB_TEST_SEED)" % SEED)
    svc = unique("heapspans")
    p, want = heap_push(random.Random(SEED))
    raw = p.encode()
    r = NODE.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": NOW - 60})
    print("    %d bytes gunzipped, %d samples: %d" % (len(raw), len(p.samples), r.status))
    assert r.status == 200, r
    for t, (st, unit) in enumerate(TYPES):
        q = "memory:%s:%s:space:bytes" % (st, unit)
        whole = sum(v for (ti, _), v in want.items() if ti == t)
        assert NODE.total('%s{service_name="%s"}' % (q, svc)) == whole, st
        for span in SPANS:
            got = NODE.total('%s{service_name="%s",span_id="%s"}' % (q, svc, span))
            assert got == want.get((t, span), 0), (st, span, got, want.get((t, span), 0))


if __name__ == "__main__":
    run_tests(globals())
