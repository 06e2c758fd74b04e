"""test_tenant_limits.py — per-tenant limits: tenant-ingest-rate and
tenant-ingest-burst (429 with Retry-After, 413 over the burst),
tenant-max-queries (429 while the tenant's queries run; other tenants go on)
and max-query-range (400 naming the setting)."""
import signal
import threading
import time
import urllib.parse

from cluster import FAST_FORMATION, Cluster
from harness import CPU, Node, run_tests, unique


def folded(nbytes, tag):
    """A folded body of about nbytes bytes (distinct per tag)."""
    line = ("main;%s;" % tag + "f" * 80 + " 1\n").encode()
    return line * max(1, nbytes // len(line))


def test_ingest_rate_and_burst():
    # a slow refill (200 B/s): the second push is refused unless 2 s pass in between
    args = ["--tenant-ingest-rate", "200", "--tenant-ingest-burst", "2000"]
    with Node(args=args) as n:
        t = int(time.time()) - 120
        body = folded(1200, "a")
        assert 1100 < len(body) <= 1300, len(body)
        r = n.ingest(body, tenant="t1", name="rate.cpu", **{"from": t})
        assert r.status == 200, r
        r = n.ingest(folded(1200, "b"), tenant="t1", name="rate.cpu", **{"from": t + 1})
        assert r.status == 429, r
        assert b"tenant-ingest-rate" in r.body, r
        retry = int(r.headers["retry-after"])
        assert 2 <= retry <= 4, retry  # (1200 - ~800 left) / 200 B/s, rounded up
        # another tenant has its own bucket
        r = n.ingest(folded(1200, "c"), tenant="t2", name="rate.cpu", **{"from": t})
        assert r.status == 200, r
        time.sleep(retry + 0.2)
        r = n.ingest(folded(1200, "b"), tenant="t1", name="rate.cpu", **{"from": t + 1})
        assert r.status == 200, r
        r = n.ingest(folded(3000, "d"), tenant="t3", name="rate.cpu", **{"from": t})
        assert r.status == 413 and b"tenant-ingest-burst" in r.body, r


def test_query_range():
    with Node(args=["--max-query-range", "1h"]) as n:
        r = n.render(CPU + "{}", frm="now-2h", until="now")
        assert r.status == 400 and b"max-query-range" in r.body, r
        assert n.render(CPU + "{}", frm="now-30m", until="now").status == 200
        r = n.get("/api/diff?" + urllib.parse.urlencode({
            "leftQuery": CPU + "{}", "rightQuery": CPU + "{}", "leftFrom": "now-3h",
            "leftUntil": "now-1h", "rightFrom": "now-30m", "rightUntil": "now"}))
        assert r.status == 400 and b"max-query-range" in r.body, r
        assert n.get("/pyroscope/label-names?from=now-7d").status == 400


def test_query_concurrency():
    # a query of tenant "busy" waits on a stopped node (RF 1: it must ask it)
    args = ["--tenant-max-queries", "1", "--query-timeout", "4s"] + FAST_FORMATION
    with Cluster(2, rf=1, failure_timeout="60s", args=args) as c:
        n0 = c.nodes[0]
        t = int(time.time()) - 120
        for i in range(8):
            assert n0.ingest(b"main;q 1\n", tenant="busy", name="svc%d.cpu" % i,
                             **{"from": t + i}).status == 200
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            out = {}
            th = threading.Thread(target=lambda: out.setdefault(
                "r", n0.render(CPU + "{}", str(t - 60), str(t + 60), tenant="busy")))
            th.start()
            time.sleep(0.5)
            r = n0.render(CPU + "{}", str(t - 60), str(t + 60), tenant="busy")
            assert r.status == 429 and b"tenant-max-queries" in r.body, r
            assert r.headers.get("retry-after") == "1", r.headers
            # another tenant is not held back by busy's slot
            r = n0.get("/pyroscope/label-names", {"X-Scope-OrgID": unique("idle")})
            assert r.status == 200, r
            th.join(20)
            assert out["r"].status == 200, out  # partial at the deadline
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        # the slot came back with the answer
        r = n0.render(CPU + "{}", str(t - 60), str(t + 60), tenant="busy")
        assert r.status == 200, r


if __name__ == "__main__":
    run_tests(globals())
