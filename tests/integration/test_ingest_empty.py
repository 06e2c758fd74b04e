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
import time

from cluster import FAST_FORMATION, Cluster
from harness import CPU, Node, run_tests, unique
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
    after = node.metric("flamedb_ingest_empty_profiles_total")
    assert after - before == len(pushes), (before, after)
    names = node.label_values("service_name", **{"from": str(NOW - 600)})
    for svc, _, _ in pushes:
        assert svc not in names, "%s: an empty push left a series: %r" % (svc, names)
        assert listed(node, svc) == [], "%s: an empty push was stored" % svc


def test_empty_push_is_accepted_and_not_stored():
    check_empty_pushes(NODE)


def test_one_type_with_values_keeps_the_push_whole():
    svc = unique("onetype")
    p = Pprof([("cpu", "nanoseconds"), ("samples", "count")])
    p.add(["main", "work"], [0, 5])
    r = NODE.ingest(p.encode(), name=svc + ".cpu", format="pprof", **{"from": NOW - 60})
    assert r.status == 200, r
    got = listed(NODE, svc)  # the all-zero cpu type is stored too
    assert len(got) == 1 and got[0]["total"] == 0, got


def test_empty_push_through_a_cluster():
    with Cluster(2, rf=2, args=FAST_FORMATION) as c:
        check_empty_pushes(c.nodes[1])


run_tests(globals())
