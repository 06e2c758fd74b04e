"""test_tenant_series_metric.py — flamedb_tenant_series{tenant} gives the
series each tenant has on the node, for at most metrics-max-tenants tenants
(those with the most series; the rest summed in
flamedb_tenant_series_others), so its cardinality stays bounded; the counts
are rebuilt from the store at start; metrics-max-tenants 0 removes it."""
import time

from harness import Node, run_tests

NOW = int(time.time())
COUNTS = {"ta": 4, "tb": 3, "tc": 2, "td": 1}


def series_metrics(node):
    out = {}
    for line in node.get("/metrics").body.decode().splitlines():
        if line.startswith("flamedb_tenant_series{tenant=\""):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


def push_all(node):
    for tenant, n in COUNTS.items():
        for i in range(n):  # one series per service
            r = node.ingest(b"main;f 1\n", tenant=tenant, name="s%d.cpu" % i, **{"from": NOW - 60})
            assert r.status == 200, r


def test_listed_tenants_bounded_and_exact():
    with Node(args=["--metrics-max-tenants", "2"]) as n:
        push_all(n)
        assert series_metrics(n) == {"ta": 4, "tb": 3}
        assert n.metric("flamedb_tenant_series_others") == 3  # tc 2 + td 1
        assert n.metric("flamedb_tenants") == 4
        n.stop()
        again = Node(data_dir=n.data_dir, args=["--metrics-max-tenants", "2"]).start()
        try:  # rebuilt from the store
            assert series_metrics(again) == {"ta": 4, "tb": 3}
            assert again.metric("flamedb_tenant_series_others") == 3
        finally:
            again.cleanup()


def test_off_with_zero():
    with Node(args=["--metrics-max-tenants", "0"]) as n:
        push_all(n)
        body = n.get("/metrics").body
        assert b"flamedb_tenant_series" not in body and b"flamedb_tenants " not in body


run_tests(globals())
