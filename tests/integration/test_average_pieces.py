#!/usr/bin/env python3
"""test_average_pieces.py — an averaged type (goroutines) whose pushes are
split by their samples' pprof labels into several series (pieces): every
push counts once in the average of any selection, whichever pieces it
names and wherever they are stored.

- one node: the real corpus goroutine profile (req_2.goroutine.pb.gz,
  goroutine/count=10 in three label sets) and a generated one, each pushed
  twice at recent times; the whole service, one piece and two pieces
  average exactly the pushes' values (10, not 10 / 3), in the flame graph
  (numTicks) and the timeline, over an hour (10 s windows, counted from the
  profile trees) and a week (coarser windows, counted from the windows'
  own profile ids), and /api/label-shares by each label averages each
  value's pushes the same way;
- three nodes, RF 1 and 64 shards per service: a service whose pieces land
  on different nodes (found by each node's series_written counter); the
  same selections and label shares give the same exact averages from every
  coordinator.

Without the corpus ($FLAMEDB_TESTDATA or ../shared/testdata) only the
generated profile runs. Every wait is bounded."""
import gzip
import os
import struct
import time

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import ROOT, Node, run_tests
from profiles import Pprof, _fields, _read_varint, f_bytes, f_varint, varint

CORPUS = os.environ.get("FLAMEDB_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")
GOROUTINE_FILE = os.path.join(CORPUS, "pprof", "grafana-pyroscope", "go", "req_2.goroutine.pb.gz")
TYPE = "goroutines:goroutine:count:goroutine:count"
WRITTEN = "flamedb_storage_series_written_total"


def with_time(data, time_ns):
    """The pprof data (maybe gzipped) with its time_nanos set to time_ns."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    out = bytearray()
    for num, wt, v in _fields(data):
        if num == 9:
            continue
        if wt == 0:
            out += f_varint(num, v)
        elif wt == 2:
            out += f_bytes(num, bytes(v))
        elif wt == 1:
            out += varint(num << 3 | 1) + struct.pack("<q", v)
        else:
            out += varint(num << 3 | 5) + struct.pack("<i", v)
    return bytes(out + f_varint(9, time_ns))


def pieces_of(data):
    """{frozenset of (label, value) string pairs: sum of the goroutine values}."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings, samples = [], []
    for num, _, v in _fields(data):
        if num == 6:
            strings.append(bytes(v).decode())
        elif num == 2:
            samples.append(v)
    out = {}
    for s in samples:
        value, labels = 0, []
        for n, w, x in _fields(s):
            if n == 2 and w == 2:
                value += _read_varint(x, 0)[0]
            elif n == 2:
                value += x
            elif n == 3:
                f = {k: y for k, _, y in _fields(x)}
                if f.get(2):
                    labels.append((strings[f[1]], strings[f[2]]))
        key = frozenset(labels)
        out[key] = out.get(key, 0) + value
    return out


def generated():
    """A goroutine profile in three label sets (7 + 4 + 2 goroutines)."""
    p = Pprof([("goroutine", "count")], period_type=("goroutine", "count"), period=1)
    p.add(["main", "serve", "wait"], [5])
    p.add(["main", "gc"], [2])
    p.add(["main", "serve", "handle"], [4], {"route": "/a"})
    p.add(["main", "serve", "handle", "db"], [2], {"route": "/b"})
    return p.encode()


def profiles():
    out = [("gen", generated())]
    if os.path.isfile(GOROUTINE_FILE):
        with open(GOROUTINE_FILE, "rb") as f:
            out.append(("corpus", f.read()))
    else:
        print("    corpus absent at %s: generated profile only" % CORPUS)
    return out


def selections(svc, pieces):
    """[(selector, expected average)]: the whole service, the pieces with one
    label pair of its smallest labelled piece, and every other piece."""
    labelled = sorted((k for k in pieces if k), key=lambda k: (pieces[k], sorted(k)))
    assert len(pieces) >= 3 and labelled, pieces
    one = labelled[0]
    name, value = sorted(one)[0]
    whole = sum(pieces.values())
    named = sum(v for k, v in pieces.items() if (name, value) in k)
    return [('%s{service_name="%s"}' % (TYPE, svc), whole),
            ('%s{service_name="%s",%s="%s"}' % (TYPE, svc, name, value), named),
            ('%s{service_name="%s",%s!="%s"}' % (TYPE, svc, name, value), whole - named)]


def check_averages(node, svc, pieces, where):
    for sel, want in selections(svc, pieces):
        for frm in ("now-1h", "now-7d"):
            r = node.render(sel, frm, "now")
            assert r.status == 200, (where, sel, r)
            j = r.json()
            got = j["flamebearer"]["numTicks"]
            buckets = [v for v in j["timeline"]["samples"] if v]
            assert got == want and buckets == [want] * len(buckets) and buckets, \
                "%s %s from %s: average %r, timeline %r, want %d (%r)" % (
                    where, sel, frm, got, buckets, want, j.get("uncountedBuckets"))
            assert "uncountedBuckets" not in j, (where, sel, frm, j["uncountedBuckets"])


def check_shares(node, svc, pieces):
    """/api/label-shares by each label of the pieces (and service_name):
    each value's average counts each push once, however many of its
    pieces carry the value, on one node or several."""
    labels = sorted({n for k in pieces for n, _ in k}) + ["service_name"]
    for label in labels:
        want = {}
        for k, v in pieces.items():
            value = svc if label == "service_name" else dict(k).get(label, "")
            want[value] = want.get(value, 0) + v
        for frm in ("now-1h", "now-7d"):
            r = node.query("/api/label-shares", query='%s{service_name="%s"}' % (TYPE, svc),
                           label=label, **{"from": frm}, until="now")
            assert r.status == 200, r
            j = r.json()
            got = {v["value"]: v["total"] for v in j["values"]}
            assert j["aggregationType"] == "average" and got == want, (label, frm, got, want)


def push_twice(node, svc, body, t0):
    """The same profile at two times 20 s apart (two pushes, two ids)."""
    for k in range(2):
        r = node.ingest(with_time(body, (t0 + 20 * k) * 10**9), name=svc, format="pprof")
        assert r.status == 200, r


def test_one_node():
    now = int(time.time())
    with Node(name="pieces") as node:
        for tag, body in profiles():
            svc = "pieces-" + tag
            push_twice(node, svc, body, now - 300)
            check_averages(node, svc, pieces_of(body), "one node")
            check_shares(node, svc, pieces_of(body))
        if os.path.isfile(GOROUTINE_FILE):
            got = node.render('%s{service_name="pieces-corpus"}' % TYPE, "now-1h", "now")
            assert got.json()["flamebearer"]["numTicks"] == 10, got.json()["flamebearer"]


def spread_service(c, tag, body, t0):
    """Pushes body as service gor-<tag>-<k> until one's pieces land on at
    least two nodes: that service."""
    for k in range(30):
        before = [n.metric(WRITTEN) for n in c.nodes]
        svc = "gor-%s-%d" % (tag, k)
        r = c.nodes[0].ingest(with_time(body, t0 * 10**9), name=svc, format="pprof")
        assert r.status == 200, r
        after = wait_for("series written of %s" % svc,
                         lambda: (lambda a: a if sum(a) - sum(before) >= 3 else None)(
                             [n.metric(WRITTEN) for n in c.nodes]))
        if sum(1 for a, b in zip(after, before) if a > b) >= 2:
            return svc
    raise AssertionError("no service's pieces spread over two nodes in 30 tries")


def test_three_nodes_pieces_apart():
    now = int(time.time())
    with Cluster(3, rf=1, args=FAST_FORMATION + ["--shards-per-service", "64"]) as c:
        for tag, body in profiles():
            svc = spread_service(c, tag, body, now - 300)
            r = c.nodes[1].ingest(with_time(body, (now - 280) * 10**9), name=svc, format="pprof")
            assert r.status == 200, r
            for i, node in enumerate(c.nodes):
                check_averages(node, svc, pieces_of(body), "%s via node %d" % (tag, i))
                check_shares(node, svc, pieces_of(body))


if __name__ == "__main__":
    run_tests(globals())
