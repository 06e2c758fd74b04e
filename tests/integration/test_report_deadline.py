"""test_report_deadline.py — a regression report (GET /api/diff) has one
deadline as a whole, report-timeout: its bucket queries (30 a side here, 8
at a time, each with its own query-timeout) wait on a peer stopped with
SIGSTOP; without that deadline the report would hold its query slots for
five rounds of query-timeout. Past report-timeout the node answers 504
naming the setting and how many bucket queries had answered, the queries
still running are cancelled and the others never start: the node is idle
again at once."""
import signal
import subprocess
import tempfile
import time

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, FLAMEDB_BIN, run_tests

QUERY_TIMEOUT_S = 2
REPORT_TIMEOUT_S = 3
ARGS = ["--query-timeout", "%ds" % QUERY_TIMEOUT_S,
        "--report-timeout", "%ds" % REPORT_TIMEOUT_S] + FAST_FORMATION
WINDOWS = 30  # 30 buckets a side (the most): 60 bucket queries, 8 rounds of 8


def idle(node):
    return (node.metric("flamedb_http_requests_in_flight") == 1
            and node.metric("flamedb_scatter_queries_in_flight") == 0)


def test_report_deadline_cancels_the_buckets():
    now = int(time.time()) // 10 * 10
    t0 = now - 600
    until = t0 + 10 * WINDOWS
    # RF 1 and a long failure timeout: the stopped node stays "live", so each
    # bucket asks it and only its query-timeout would end that bucket's wait
    with Cluster(2, rf=1, failure_timeout="60s", args=ARGS) as c:
        n0 = c.nodes[0]
        for w in range(WINDOWS):
            for v in ("v1", "v2"):
                for svc in range(4):
                    r = n0.ingest(b"main;serve;handle 10\nmain;gc 2\n", tenant="t",
                                  name="app%d.cpu{version=%s}" % (svc, v),
                                  **{"from": t0 + 10 * w + 1, "until": t0 + 10 * w + 2})
                    assert r.status == 200, r
        params = {"leftQuery": CPU + '{version="v1"}', "rightQuery": CPU + '{version="v2"}',
                  "leftFrom": t0, "leftUntil": until, "rightFrom": t0, "rightUntil": until}
        r = n0.query("/api/diff", tenant="t", **params)
        assert r.status == 200, r
        assert r.json()["leftBuckets"] == WINDOWS, r.json()
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            r = n0.query("/api/diff", tenant="t", **params)
            took = time.monotonic() - start
            # without the deadline: 200 (partial) after 8 rounds of query-timeout
            assert r.status == 504, (r, took)
            body = r.body.decode()
            assert "report-timeout" in body and "of 60 queries had answered" in body, body
            assert took < REPORT_TIMEOUT_S + QUERY_TIMEOUT_S, took
            wait_for("the cancelled buckets gone", lambda: idle(n0), timeout=5)
            assert n0.metric("flamedb_scatter_cancelled_total") >= 1
            m = n0.get("/metrics").body.decode()
            assert 'flamedb_http_requests_total{route="diff_report",status="504"} 1' in m, m
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        # the deadline held nothing back: the same report is whole again
        r = n0.query("/api/diff", tenant="t", **params)
        assert r.status == 200 and "X-Flamedb-Partial" not in r.headers, r


def test_render_diff_and_groupby_deadline():
    """render-diff and a render with groupBy are each two queries through
    the cluster, joined into one answer: combined-query-timeout bounds the
    answer as a whole, and must be above query-timeout. Set at or under it,
    a peer stopped by SIGSTOP turned both into 504 where their queries
    answer partial: such a start is refused naming both settings. Above it,
    with the peer stopped, both are answered 200 and partial, named in
    X-Flamedb-Partial, before query-timeout; once the peer is back both are
    whole again."""
    qt, deadline = 4, 6
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([FLAMEDB_BIN, "--data-dir", d, "--http-listen", "127.0.0.1:0",
                            "--query-timeout", "%ds" % qt, "--combined-query-timeout", "1s"],
                           capture_output=True, timeout=30)
    assert p.returncode != 0, p.stderr
    assert b"combined-query-timeout (1000 ms) is not above query-timeout" in p.stderr, p.stderr
    args = ["--query-timeout", "%ds" % qt, "--combined-query-timeout", "%ds" % deadline]
    now = int(time.time()) // 10 * 10
    with Cluster(2, rf=1, failure_timeout="60s", args=args + FAST_FORMATION) as c:
        n0 = c.nodes[0]
        for svc in range(8):  # 32 shard tokens: some on each node
            for v in ("v1", "v2"):
                r = n0.ingest(b"main;serve;handle 10\nmain;gc 2\n", tenant="t",
                              name="app%d.cpu{version=%s,env=e%d}" % (svc, v, svc % 2),
                              **{"from": now - 60, "until": now - 50})
                assert r.status == 200, r
        diff = {"leftQuery": CPU + '{version="v1"}', "rightQuery": CPU + '{version="v2"}',
                "leftFrom": now - 600, "rightFrom": now - 600}

        def ask(route):
            if route == "render_diff":
                return n0.query("/pyroscope/render-diff", tenant="t", **diff)
            return n0.render(CPU + "{}", frm=now - 600, tenant="t", groupBy="env")
        for route in ("render_diff", "render"):
            r = ask(route)
            assert r.status == 200 and "x-flamedb-partial" not in r.headers, r
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            for route in ("render_diff", "render"):
                start = time.monotonic()
                r = ask(route)
                took = time.monotonic() - start
                assert r.status == 200 and "x-flamedb-partial" in r.headers, (route, r, took)
                assert took < deadline, took
            m = n0.get("/metrics").body.decode()
            for route in ("render_diff", "render"):
                assert 'route="%s",status="504"' % route not in m, m
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        for route in ("render_diff", "render"):
            r = ask(route)
            assert r.status == 200 and "x-flamedb-partial" not in r.headers, r


if __name__ == "__main__":
    run_tests(globals())
