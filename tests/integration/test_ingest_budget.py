"""test_ingest_budget.py — one hostile push cannot sink a node: a ~1 MB pprof
made here with many sample types, a deep inlined location every sample
shares, a fresh root location and a fresh span_id per sample and up to 1,000
series is refused with 413 naming the setting, within a second, and the
node's resident memory stays bounded; the node keeps serving and a real-sized
push still passes. Also: a message of empty repeated entries is refused by
the decode cap that follows its size."""
import re
import time

from harness import CPU, Node, run_tests, unique
from profiles import Pprof, f_bytes, f_packed, f_varint

NODE = Node(name="budget").start()
NOW = int(time.time())
MiB = 1 << 20
# A refused push may raise the node's peak resident memory by at most what it
# was charged (ingest-request-memory-per-byte x its payload, read from the
# answer) plus its body (the HTTP buffer, counted in max-buffered-bytes) and
# PEAK_SLACK of allocator overhead; measured 7.8 MiB for the hostile push
# (charge 6.8 MiB, body 0.85 MiB) and 4.9 MiB for the span trees (charge
# 4 MiB, body 0.5 MiB). After the answer it keeps at most its body plus
# KEPT_SLACK, however many pushes and on whichever workers (measured
# 1.4 MiB and 0.8 MiB, about half of it the body buffer's arena on the event
# loop, reused by the next body; the hostile push's kept 2.2-2.4 MiB in all
# over a dozen clean-clone runs, 1.5 MiB past its body once): the freed
# memory goes back to the system (ingest-trim-refused-bytes). Without that
# each worker's malloc arena kept a push's charge: 15.0 MiB and 9.4 MiB
# after three pushes, 17x the body.
PEAK_SLACK = 2 * MiB
KEPT_SLACK = 2 * MiB
PUSHES = 3  # on as many of the 4 workers as the pool hands them to


def hostile_pprof(samples=15000, types=8, depth=2000, groups=125):
    """types x groups series (1,000 by default); every sample asks for
    types x (1 + 1 span tree) x (depth + 1) fresh nodes."""
    strings = [""]

    def s(text):
        strings.append(text)
        return len(strings) - 1

    out = bytearray()
    for t in range(types):
        out += f_bytes(1, f_varint(1, s("alloc_t%d" % t)) + f_varint(2, s("count")))
    k_span, k_grp = s("span_id"), s("g")
    grp = [s("v%d" % g) for g in range(groups)]
    deep_id = 1
    lines = b"".join(f_bytes(4, f_varint(1, i + 1)) for i in range(depth))
    out += f_bytes(4, f_varint(1, deep_id) + lines)  # one location, depth inlined lines
    for i in range(depth):
        out += f_bytes(5, f_varint(1, i + 1) + f_varint(2, s("inl%d" % i)))
    for i in range(samples):
        root = 2 + i
        out += f_bytes(4, f_varint(1, root) + f_varint(3, 0x1000 + i))  # address only
        span = s("%016x" % i)
        body = f_packed(1, [deep_id, root]) + f_packed(2, [1] * types)
        body += f_bytes(3, f_varint(1, k_span) + f_varint(2, span))
        body += f_bytes(3, f_varint(1, k_grp) + f_varint(2, grp[i % groups]))
        out += f_bytes(2, body)
    for text in strings:
        out += f_bytes(6, text.encode())
    return bytes(out)


def hostile_spans_pprof(samples=4000, types=8, labels=8, groups=125):
    """Cheap samples that each open `labels` fresh span trees in each of
    `types` series: many small trees rather than deep ones."""
    strings = [""]

    def s(text):
        strings.append(text)
        return len(strings) - 1

    out = bytearray()
    for t in range(types):
        out += f_bytes(1, f_varint(1, s("alloc_t%d" % t)) + f_varint(2, s("count")))
    k_span, k_grp = s("span_id"), s("g")
    grp = [s("v%d" % g) for g in range(groups)]
    out += f_bytes(4, f_varint(1, 1) + f_bytes(4, f_varint(1, 1)))
    out += f_bytes(5, f_varint(1, 1) + f_varint(2, s("main")))
    for i in range(samples):
        body = f_packed(1, [1]) + f_packed(2, [1] * types)
        for k in range(labels):
            body += f_bytes(3, f_varint(1, k_span) + f_varint(2, s("%x" % (i * labels + k))))
        body += f_bytes(3, f_varint(1, k_grp) + f_varint(2, grp[i % groups]))
        out += f_bytes(2, body)
    for text in strings:
        out += f_bytes(6, text.encode())
    return bytes(out)


def rss(node=None):
    return (node or NODE).metric("process_resident_memory_bytes")


def reset_peak(node):
    """Sets the process's peak resident memory (VmHWM) to what it holds now."""
    with open("/proc/%d/clear_refs" % node.proc.pid, "w") as f:
        f.write("5")


def peak(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


def charged(message):
    """The memory cap the 413 names: what the push was allowed to hold."""
    return int(re.search(r"more than (\d+) bytes of memory", message).group(1))


def pushes_bounded(node, svc, body, what):
    """Pushes body PUSHES times (each refused with 413 naming the setting,
    within a second) and checks the node's peak and kept memory."""
    before = rss(node)
    reset_peak(node)
    kept, took = 0, []
    for _ in range(PUSHES):
        t0 = time.monotonic()
        r = node.ingest(body, name=svc, format="pprof", **{"from": NOW - 20})
        took.append(time.monotonic() - t0)
        assert r.status == 413, r
        msg = r.json()["message"]
        assert "ingest-request-memory-per-byte" in msg, msg  # the setting is named
        kept = max(kept, rss(node) - before)
    grown = peak(node) - before
    cap = charged(msg)
    print("    %s: %d bytes, charge %.1f MiB, %s ms each; peak RSS +%.1f MiB, kept +%.1f MiB"
          % (what, len(body), cap / MiB, "/".join("%.0f" % (t * 1000) for t in took),
             grown / MiB, kept / MiB))
    assert max(took) < 1.0, took
    assert grown < cap + len(body) + PEAK_SLACK, (grown, cap, len(body))
    assert kept < len(body) + KEPT_SLACK, (kept, len(body))


def test_hostile_push_refused_bounded():
    svc = unique("hostile")
    ok = Pprof([("cpu", "nanoseconds")]).add(["main", "work"], [10]).encode()
    assert NODE.ingest(ok, name=svc, format="pprof", **{"from": NOW - 30}).status == 200
    body = hostile_pprof()
    assert 700 * 1024 < len(body) < 1536 * 1024, len(body)
    pushes_bounded(NODE, svc, body, "hostile push")
    assert NODE.total(CPU + '{service_name="%s"}' % svc) == 10  # nothing else stored


def test_many_small_span_trees_bounded():
    body = hostile_spans_pprof()
    assert len(body) < 1536 * 1024, len(body)
    fresh = Node(name="budget-spans").start()  # its own heap: nothing to reuse
    try:
        pushes_bounded(fresh, unique("spans"), body, "span-tree push")
    finally:
        fresh.cleanup()


def test_empty_entries_refused_by_decode_cap():
    body = f_bytes(6, b"") + b"\x12\x00" * (512 * 1024)  # 512 Ki empty samples
    r = NODE.ingest(body, name=unique("empty"), format="pprof", **{"from": NOW - 20})
    assert r.status == 413, r
    assert "ingest-decoded-per-byte" in r.json()["message"], r


def test_node_still_serves():
    svc = unique("after")
    p = Pprof([("cpu", "nanoseconds")])
    for i in range(2000):
        p.add(["main", "f%d" % (i % 50), "g%d" % i], [1])
    assert NODE.ingest(p.encode(), name=svc, format="pprof", **{"from": NOW - 10}).status == 200
    assert NODE.total(CPU + '{service_name="%s"}' % svc) == 2000


run_tests(globals())
