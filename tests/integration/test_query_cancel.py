"""test_query_cancel.py — a query whose client goes away is cancelled at
once, not when its answer would be written: a render (and a render-diff, two
queries in one answer) waits on a peer stopped with SIGSTOP under a long
--query-timeout; its client closes the connection; the node counts the
cancellation, its in-flight gauges return to idle, and the tenant's query
slot (--tenant-max-queries 1) is free again for the next query."""
import signal
import socket
import time
import urllib.parse

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, run_tests

ARGS = ["--tenant-max-queries", "1", "--query-timeout", "120s"] + FAST_FORMATION


def open_query(port, path, params, tenant):
    """Sends a GET and returns the socket without reading the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    req = "GET %s?%s HTTP/1.1\r\nHost: x\r\nX-Scope-OrgID: %s\r\n\r\n" % (
        path, urllib.parse.urlencode(params), tenant)
    s.sendall(req.encode())
    return s


def metric(node, name):
    return node.metric(name)


def query_lane(node, family):
    r = node.get("/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(family + '{lane="query"} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no %s for the query lane" % family)


def idle(node):
    """The node holds no request but the /metrics one asking, and no query job."""
    return (metric(node, "flamedb_http_requests_in_flight") == 1
            and metric(node, "flamedb_scatter_queries_in_flight") == 0
            and metric(node, "flamedb_scatter_memory_bytes") == 0
            and query_lane(node, "flamedb_pool_jobs_running") == 0
            and query_lane(node, "flamedb_pool_jobs_waiting") == 0)


def test_client_close_cancels_the_query():
    t0 = int(time.time()) - 300
    # RF 1 and a long failure timeout: the stopped node stays "live", so its
    # ranges are asked and only the 120 s deadline would end the wait
    with Cluster(2, rf=1, failure_timeout="60s", args=ARGS) as c:
        n0 = c.nodes[0]
        for i in range(8):
            r = n0.ingest(b"main;w%d 1\n" % i, tenant="t", name="app%d.cpu" % i,
                          **{"from": t0 + i})
            assert r.status == 200, r
        render = {"query": CPU + "{}", "from": str(t0 - 60), "until": str(t0 + 60)}
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            s = open_query(n0.port, "/pyroscope/render", render, "t")
            wait_for("the render waiting on the stopped node, holding its local share",
                     lambda: metric(n0, "flamedb_http_requests_in_flight") == 2
                     and metric(n0, "flamedb_scatter_memory_bytes") > 0, timeout=10)
            # the tenant's one slot is taken: a second query is refused
            r = n0.render(CPU + "{}", str(t0 - 60), str(t0 + 60), tenant="t")
            assert r.status == 429 and b"tenant-max-queries" in r.body, r
            s.close()
            wait_for("the closed render cancelled",
                     lambda: metric(n0, "flamedb_scatter_cancelled_total") == 1, timeout=10)
            wait_for("the node idle again", lambda: idle(n0), timeout=10)
            assert metric(n0, "flamedb_http_client_gone_total") == 1
            r = n0.get("/metrics")
            assert b'flamedb_http_requests_total{route="render",status="499"} 1' in r.body, r
            # the slot came back at once: the next query is admitted (it waits)
            s = open_query(n0.port, "/pyroscope/render", render, "t")
            s.settimeout(1.5)
            try:
                got = s.recv(4096)
            except socket.timeout:
                got = b""
            assert got == b"", ("admitted, so it waits on the stopped node", got)
            s.close()
            wait_for("the second render cancelled",
                     lambda: metric(n0, "flamedb_scatter_cancelled_total") == 2, timeout=10)
            # a render-diff (two queries, one answer): both are cancelled
            diff = {"leftQuery": CPU + "{}", "rightQuery": CPU + "{}",
                    "leftFrom": str(t0 - 60), "leftUntil": str(t0 + 60),
                    "rightFrom": str(t0 - 60), "rightUntil": str(t0 + 60)}
            s = open_query(n0.port, "/pyroscope/render-diff", diff, "t")
            wait_for("the diff waiting on the stopped node",
                     lambda: metric(n0, "flamedb_http_requests_in_flight") == 2, timeout=10)
            s.close()
            wait_for("both queries of the diff cancelled",
                     lambda: metric(n0, "flamedb_scatter_cancelled_total") == 4, timeout=10)
            wait_for("the node idle again", lambda: idle(n0), timeout=10)
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        # the resumed node drops the shares it was told to cancel (or, when one
        # finished first, its late answer is dropped); the next render is exact
        wait_for("the stopped node's shares cancelled or their answers dropped",
                 lambda: metric(c.nodes[1], "flamedb_scatter_shares_cancelled_total")
                 + metric(n0, "flamedb_scatter_late_answers_total") >= 1, timeout=20)
        assert n0.total(CPU + "{}", str(t0 - 60), str(t0 + 60), tenant="t") == 8 * 10**7
        assert n0.alive()


if __name__ == "__main__":
    run_tests(globals())
