"""test_demo_spans.py — the demo generator's traced requests through a real
node: flamedb-demo pushes one round of the fleet; every span_id and trace_id
of the api CPU profiles (read back from the same round written with --out-dir,
decoded here) selects exactly its samples' total; the whole service keeps its
total; and the request --slow-span names is the largest one, mostly under
store.(*DB).Product, which is what deploy/demo.sh prints to try."""
import gzip
import os
import shutil
import subprocess
import tempfile
import time

import harness
from harness import CPU, Node, Skip, run_tests
from profiles import _fields, _read_varint, _signed

DEMO = os.path.join(os.path.dirname(harness.FLAMEDB_BIN), "flamedb-demo")
NODE = Node(name="demospans").start()
NOW = int(time.time())
T = NOW - NOW % 10 - 120  # one round, two minutes ago
V2_AT = str(T + 3600)
SLOW_PATH = "github.com/acme/api/store.(*DB).Product"


def packed(w, x):
    if w != 2:
        return [x]
    out, j = [], 0
    while j < len(x):
        v, j = _read_varint(x, j)
        out.append(v)
    return out


def decode(path):
    """[(stack leaf first, cpu ns, {label: value})] of a demo CPU profile."""
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    strings, samples, funcs, locs = [], [], {}, {}
    for num, w, v in _fields(data):
        if num == 6:
            strings.append(bytes(v).decode())
        elif num == 2:
            samples.append(v)
        elif num == 5:
            f = {n: x for n, _, x in _fields(v)}
            funcs[f[1]] = f[2]
        elif num == 4:
            f = {n: x for n, _, x in _fields(v)}
            line = {n: x for n, _, x in _fields(f[4])}
            locs[f[1]] = line[1]
    out = []
    for s in samples:
        ids, values, labels = [], [], {}
        for n, w, x in _fields(s):
            if n == 1:
                ids += packed(w, x)
            elif n == 2:
                values += [_signed(y) for y in packed(w, x)]
            elif n == 3:
                lab = {k: y for k, _, y in _fields(x)}
                labels[strings[lab[1]]] = strings[lab.get(2, 0)]
        stack = [strings[funcs[locs[i]]] for i in ids]
        out.append((stack, values[1], labels))
    return out


def demo(*args):
    r = subprocess.run([DEMO, "--v2-at", V2_AT, "--quiet"] + list(args),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def sel(**labels):
    pairs = ['service_name="api"'] + ['%s="%s"' % kv for kv in labels.items()]
    return "%s{%s}" % (CPU, ",".join(pairs))


def total(query):
    return NODE.total(query, frm=str(T - 60), until=str(T + 60))


def test_demo_spans_through_a_node():
    if not os.access(DEMO, os.X_OK):
        raise Skip("flamedb-demo not built next to flamedb")
    out = tempfile.mkdtemp(prefix="flamedb-demo-it-")
    try:
        demo("--url", "http://127.0.0.1:%d" % NODE.port, "--start", str(T + 10),
             "--backfill", "10", "--backfill-step", "10", "--no-live")
        demo("--out-dir", out, "--count", "14", "--start", str(T))  # the same round, as files
        rows = [line.split("\t") for line in open(os.path.join(out, "manifest.tsv"))][1:]
        api = [r for r in rows if r[1].startswith("api{") and r[4] == "cpu"]
        assert len(api) == 3, rows
        spans, traces, whole, first_pod = {}, {}, 0, set()
        for r in api:
            for stack, v, labels in decode(os.path.join(out, r[0])):
                whole += v
                if "span_id" in labels:
                    spans.setdefault(labels["span_id"], []).append((stack, v))
                    if r is api[0]:
                        first_pod.add(labels["span_id"])
                    traces[labels["trace_id"]] = traces.get(labels["trace_id"], 0) + v
        assert len(spans) == 12 and len(traces) == 12, (spans.keys(), traces)
        assert total(sel()) == whole
        for span, samples in spans.items():
            assert total(sel(span_id=span)) == sum(v for _, v in samples), span
        for trace, want in traces.items():
            assert total(sel(trace_id=trace)) == want, trace
        span, trace, name = demo("--slow-span", str(T + 3)).split()
        assert name == api[0][1], (name, api[0])
        slow = sum(v for _, v in spans[span])
        on_path = sum(v for stack, v in spans[span] if SLOW_PATH in stack)
        # the slowest request of its profile (each pod's profile has its own slow one)
        assert span in first_pod, (span, first_pod)
        assert slow == max(sum(v for _, v in spans[s]) for s in first_pod)
        assert on_path * 10 >= slow * 9, (on_path, slow)
        r = NODE.render(sel(span_id=span), frm=str(T - 60), until=str(T + 60), fmt="folded")
        assert r.status == 200, r
        got = {}
        for line in r.body.decode().splitlines():
            stack, v = line.rsplit(" ", 1)
            got[stack] = got.get(stack, 0) + int(v)
        want = {}
        for stack, v in spans[span]:
            key = ";".join(reversed(stack))
            want[key] = want.get(key, 0) + v
        assert got == want, (got, want)
        assert total(sel(trace_id=trace)) == slow
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_demo_util_ticks_readable():
    """What deploy/demo.sh prints to show every node answers the same total:
    the CPU as seconds (a bare numTicks of 13849300000000 said nothing to a
    reader), with the exact numTicks beside it, and complete or partial."""
    svc = harness.unique("demoticks")
    r = NODE.ingest(b"main;work 1234\nmain;idle 66\n", name=svc + ".cpu", format="folded",
                    **{"from": str(T)})
    assert r.status == 200, r
    ticks = 1300 * 10_000_000  # 100 Hz: 10 ms a sample
    url = "http://127.0.0.1:%d" % NODE.port
    q = '%s{service_name="%s"}' % (CPU, svc)
    util = os.path.join(harness.ROOT, "deploy", "demo_util.py")
    out = subprocess.run(["python3", util, "ticks", "10", q, str(T - 60), str(T + 60), url, url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out
    want = "  %s  13.00 s of CPU (numTicks %d), complete" % (url, ticks)
    assert out.stdout.splitlines() == [want, want], (out.stdout, want)


if __name__ == "__main__":
    run_tests(globals())
