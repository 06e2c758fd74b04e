"""test_limit_status.py — a push that can never succeed as it is answers 422
(`over_limit`, naming the setting), never 429: retrying it would fail the
same way; so does a query over a query limit (query-max-series here). 429 stays for what a retry can pass (tenant-ingest-rate and
tenant-max-queries, tested in test_tenant_limits.py). A bad request itself
(labels of the name parameter over their limits, a time outside
max-past/max-future) is 400, as the settings' help says."""
import time

from harness import CPU, Node, run_tests, unique
from profiles import Pprof

NODE = Node(name="limits", args=["--max-samples", "100", "--max-stack-depth", "64",
                                 "--max-series-per-profile", "4",
                                 "--ingest-max-tree-nodes", "1000",
                                 "--query-max-series", "2", "--max-symbol-len", "32",
                                 "--max-labels-per-series", "6", "--max-label-name-len", "24",
                                 "--max-label-value-len", "40", "--max-past", "1h"]).start()
NOW = int(time.time())


def refused_422(body, setting, **params):
    r = NODE.ingest(body, name=unique("lim") + ".cpu", **{"from": NOW - 60}, **params)
    assert r.status == 422, r
    j = r.json()
    assert j["code"] == "over_limit" and setting in j["message"], j
    assert "retry-after" not in r.headers, r.headers


def test_per_profile_limits_are_422():
    refused_422("".join("main;f%d 1\n" % i for i in range(200)).encode(), "max-samples")
    refused_422((";".join("f%d" % i for i in range(100)) + " 1\n").encode(), "max-stack-depth")
    deep = "".join(";".join("f%d_%d" % (i, k) for k in range(20)) + " 1\n" for i in range(99))
    refused_422(deep.encode(), "ingest-max-tree-nodes")  # 1,980 nodes in one series
    p = Pprof([("cpu", "nanoseconds")])
    for i in range(8):  # one series per distinct value of the label
        p.add(["main"], [1], labels={"k": "v%d" % i})
    refused_422(p.encode(), "max-series-per-profile", format="pprof")
    refused_422(b"main;" + b"f" * 40 + b" 1\n", "max-symbol-len")
    for setting, labels in (("max-labels-per-series", {"k%d" % i: "v" for i in range(8)}),
                            ("max-label-name-len", {"n" * 30: "v"}),
                            ("max-label-value-len", {"k": "v" * 50})):
        p = Pprof([("cpu", "nanoseconds")])
        p.add(["main"], [1], labels=labels)
        refused_422(p.encode(), setting, format="pprof")


def refused_400(setting, name, frm):
    r = NODE.ingest(b"main;f 1\n", name=name, **{"from": frm})
    assert r.status == 400, r
    j = r.json()
    assert j["code"] == "invalid_parameter" and setting in j["message"], j


def test_bad_request_limits_are_400():
    svc = unique("bad")
    refused_400("max-labels-per-series", svc + ".cpu{" + ",".join("k%d=v" % i for i in range(8)) + "}",
                NOW - 60)
    refused_400("max-label-value-len", svc + ".cpu{k=" + "v" * 50 + "}", NOW - 60)
    refused_400("max-past", svc + ".cpu", NOW - 2 * 3600)
    refused_400("max-future", svc + ".cpu", NOW + 3600)
    # a pprof's own time_nanos wins over from=: the reason says whose time it
    # is (a saved pprof pushed with a recent from= was refused naming only a
    # 'profile time' the user had not given)
    p = Pprof([("cpu", "nanoseconds")], time_ns=(NOW - 2 * 3600) * 10**9)
    p.add(["main", "f"], [10])
    r = NODE.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": NOW - 60})
    assert r.status == 400 and "max-past" in r.json()["message"], r
    assert "time_nanos" in r.json()["message"], r.json()


def test_query_limits_are_422():
    svc = unique("q")
    for i in range(3):  # three series of one service
        r = NODE.ingest(b"main;f 1\n", name="%s.cpu{k=v%d}" % (svc, i), **{"from": NOW - 60})
        assert r.status == 200, r
    r = NODE.render('%s{service_name="%s"}' % (CPU, svc), str(NOW - 120), str(NOW))
    assert r.status == 422, r
    assert r.json()["code"] == "over_limit" and "(query-max-series)" in r.json()["message"], r.json()
    r = NODE.render('%s{service_name="%s",k="v0"}' % (CPU, svc), str(NOW - 120), str(NOW))
    assert r.status == 200, r


def test_within_the_limits_is_stored():
    r = NODE.ingest(b"main;work 3\n", name=unique("ok") + ".cpu", **{"from": NOW - 60})
    assert r.status == 200, r


run_tests(globals())
