"""test_cluster_admin_params.py — the operator routes (/cluster/*) refuse a
parameter they do not take with 400 naming it, before doing anything (a
mistyped `nod=` or a stray `dry-run=1` must not start a repair or remove a
node), while the Pyroscope-compatible routes stay lenient about extras."""
import harness
from cluster import FAST_FORMATION, Cluster

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def test_unknown_parameters_refused_on_operator_routes():
    with Cluster(2, rf=2, write_quorum=1, args=FAST_FORMATION) as c:
        node = c.nodes[0]
        other = c.ids[1]
        asks = [("POST", "/cluster/repair?bogus=1", "bogus"),
                ("POST", "/cluster/remove?node=%s&force=1" % other, "force"),
                ("POST", "/cluster/decommission?nod=%s" % other, "nod"),
                ("POST", "/cluster/accept-copy?node=%s&dry-run=1" % other, "dry-run"),
                ("GET", "/cluster/status?verbose=1", "verbose")]
        for method, path, name in asks:
            r = node.request(method, path)
            assert r.status == 400, (path, r)
            j = r.json()
            assert j["code"] == "invalid_parameter" and "'%s'" % name in j["message"], (path, j)
        # nothing happened: both nodes still active members
        st = node.get("/cluster/status").json()
        states = sorted(m["state"] for m in st["nodes"])
        assert states == ["active", "active"], st
        assert node.request("POST", "/cluster/repair").status == 200
        # Pyroscope clients send extras: still answered
        r = node.ingest(b"a;b 1\n", name="admparams.cpu", spyName="x", extra="1")
        assert r.status == 200, r
        r = node.query("/pyroscope/render", query=CPU + "{}", extra="1", **{"from": "now-1h"})
        assert r.status == 200, r


if __name__ == "__main__":
    harness.run_tests(globals())
