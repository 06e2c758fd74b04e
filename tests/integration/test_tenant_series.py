"""test_tenant_series.py — --tenant-max-series: a push that would store a
tenant's series beyond the limit on this node gets 429 naming the setting
and stores nothing; pushes to the series the tenant has go on, other
tenants have their own count, and the count survives a restart (it is
rebuilt from the store)."""
import shutil
import tempfile
import time

from harness import CPU, Node, run_tests

ARGS = ["--tenant-max-series", "2"]


def test_series_limit_per_tenant():
    t = int(time.time()) - 120
    data = tempfile.mkdtemp(prefix="flamedb-it-series-")
    try:
        run(data, t)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def run(data, t):
    with Node(data_dir=data, args=ARGS, name="series") as n:
        for svc in ("a", "b"):
            r = n.ingest(b"main;x 1\n", tenant="t", name="%s.cpu" % svc, **{"from": t})
            assert r.status == 200, r
        r = n.ingest(b"main;x 1\n", tenant="t", name="c.cpu", **{"from": t})
        assert r.status == 429 and b"tenant-max-series" in r.body, r
        r = n.ingest(b"main;y 2\n", tenant="t", name="a.cpu", **{"from": t + 1})
        assert r.status == 200, r
        r = n.ingest(b"main;x 1\n", tenant="other", name="c.cpu", **{"from": t})
        assert r.status == 200, r
        # nothing of the refused push was stored
        assert n.total(CPU + '{service_name="c"}', str(t - 60), str(t + 60), tenant="t") == 0
    with Node(data_dir=data, args=ARGS, name="series-again") as n:
        r = n.ingest(b"main;x 1\n", tenant="t", name="c.cpu", **{"from": t + 2})
        assert r.status == 429 and b"tenant-max-series" in r.body, r
        r = n.ingest(b"main;z 1\n", tenant="t", name="b.cpu", **{"from": t + 2})
        assert r.status == 200, r
        assert n.total(CPU + '{service_name="a"}', str(t - 60), str(t + 60), tenant="t") == 3 * 10**7


if __name__ == "__main__":
    run_tests(globals())
