"""test_ingest_empty.py — a push without a sample (an SDK that sampled
nothing in its interval) is answered 200 and stores nothing, whatever its
format, as Pyroscope's distributor does (docs/api.md, POST /ingest):

- an empty folded body, blank lines only, folded lines of count 0, and a
  pprof with sample types but no sample (raw and gzipped), on one node and through a 2-node cluster
  (RF 2): 200, counted in flamedb_ingest_empty_profiles_total, and the
  service is unknown afterwards (no series, no label value). Before, the
  pprof was refused with 400 "the profile has no series" (a client retries
  it for good) while the folded body was stored as a 0-total profile whose
  series was listed;
- samples that are all 0 are no sample either (Pyroscope drops them), but
  one sample type with a value keeps the whole push, all-zero types
  included.
"""
import os
import subprocess
import tempfile
import time

from cluster import FAST_FORMATION, Cluster
from harness import CPU, ROOT, Node, run_tests, unique
from profiles import Pprof

NODE = Node(name="empty").start()
NOW = int(time.time())


def empty_pushes(node):
    """(service, body, params) of each kind of empty push."""
    p = Pprof([("cpu", "nanoseconds"), ("samples", "count")])
    return [(unique("emptyf"), b"", {}),
            (unique("emptyb"), b"\n\n  \n", {}),
            (unique("emptyzero"), b"main;idle 0\nmain;work 0\n", {}),
            (unique("emptyp"), p.encode(), {"format": "pprof"}),
            (unique("emptyz"), p.encode_gz(), {"format": "pprof"})]


def listed(node, svc):
    """The profiles GET /api/profiles lists for the service."""
    r = node.query("/api/profiles", query='%s{service_name="%s"}' % (CPU, svc),
                   **{"from": str(NOW - 600)}, until=str(NOW + 60))
    assert r.status == 200, r
    return r.json()["profiles"]


def check_empty_pushes(node):
    before = node.metric("flamedb_ingest_empty_profiles_total")
    pushes = empty_pushes(node)
    for svc, body, params in pushes:
        r = node.ingest(body, name=svc + ".cpu", **{"from": NOW - 60}, **params)
        assert r.status == 200, "%s: %r" % (svc, r)
        # said to a client that looks (flamectl exits 1 on it)
        assert r.headers.get("x-flamedb-stored") == "nothing", (svc, r.headers)
    after = node.metric("flamedb_ingest_empty_profiles_total")
    assert after - before == len(pushes), (before, after)
    names = node.label_values("service_name", **{"from": str(NOW - 600)})
    for svc, _, _ in pushes:
        assert svc not in names, "%s: an empty push left a series: %r" % (svc, names)
        assert listed(node, svc) == [], "%s: an empty push was stored" % svc


def test_empty_push_is_accepted_and_not_stored():
    check_empty_pushes(NODE)


def test_flamectl_says_the_node_stored_nothing():
    """flamectl push of a profile without a sample of any value (folded
    counts of 0, a pprof without samples) exited 0 after 'pushed N bytes':
    the node's answer says it stored nothing, and flamectl exits 1 saying
    so; a push with values still exits 0."""
    ctl = os.environ.get("FLAMECTL_BIN", os.path.join(ROOT, "build", "bin", "flamectl"))
    with tempfile.TemporaryDirectory(prefix="flamedb-empty-") as d:
        p = Pprof([("cpu", "nanoseconds")])
        cases = [("zero.txt", b"main;idle 0\n", unique("ctlzero") + ".cpu", 1),
                 ("empty.pb", p.encode_gz(), unique("ctlpb"), 1),
                 ("work.txt", b"main;work 3\n", unique("ctlwork") + ".cpu", 0)]
        for fname, body, name, want in cases:
            path = os.path.join(d, fname)
            with open(path, "wb") as f:
                f.write(body)
            r = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "push", path,
                                "--name", name], capture_output=True, text=True, timeout=60)
            assert r.returncode == want, (fname, r.returncode, r.stderr)
            if want:
                assert "has no sample with a value" in r.stderr and "stored nothing" in r.stderr, r.stderr
            else:
                assert r.stderr.startswith("pushed "), r.stderr


def test_one_type_with_values_keeps_the_push_whole():
    svc = unique("onetype")
    p = Pprof([("cpu", "nanoseconds"), ("samples", "count")])
    p.add(["main", "work"], [0, 5])
    r = NODE.ingest(p.encode(), name=svc + ".cpu", format="pprof", **{"from": NOW - 60})
    assert r.status == 200, r
    assert r.headers.get("x-flamedb-stored") is None, r.headers
    got = listed(NODE, svc)  # the all-zero cpu type is stored too
    assert len(got) == 1 and got[0]["total"] == 0, got


def test_empty_push_through_a_cluster():
    with Cluster(2, rf=2, args=FAST_FORMATION) as c:
        check_empty_pushes(c.nodes[1])


run_tests(globals())
