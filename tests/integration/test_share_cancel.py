"""test_share_cancel.py — a query whose client goes away stops its shares
while they run, on the coordinator (its local job) and on the other node (a
cancel message): a render over 10,000 series in 16 windows (a few tenths of a second of
merging per node here; a share's window for being stopped is what this merging takes) is opened and its connection closed once both shares run; both nodes count
a share stopped early (flamedb_scatter_shares_cancelled_total) and their
query lanes are idle again well before the query would have finished.

A query that one part ends early (here the coordinator's own share refuses
the query over its query-max-series, a 4xx) stops its other parts the same
way: the other node's share of the same render is cancelled, not run to its
end for an answer that would be dropped. The other node is stopped (SIGSTOP)
while the coordinator refuses, so the ask and its cancel reach it together
and the check does not depend on how long its share takes."""
import select
import signal
import socket
import time
import urllib.parse

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, run_tests
from profiles import Pprof

SERIES, PUSHES = 10000, 16
ARGS = ["--shards-per-service", "8", "--max-series-per-profile", str(SERIES),
        "--query-max-series", "1000000", "--ingest-request-memory-per-byte", "4000",
        "--query-timeout", "120s",
        # a push of 10,000 series: its replica write once outlived the
        # default write timeout on a loaded machine (503); writes are not
        # what this test is about
        "--write-timeout", "30s"] + FAST_FORMATION


def query_lane_running(node):
    r = node.get("/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith('flamedb_pool_jobs_running{lane="query"} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no flamedb_pool_jobs_running for the query lane")


def push_heavy(node, t0):
    """SERIES series in each of PUSHES windows of service heavy; returns the
    params of a render over all of them that merges them series by series."""
    for k in range(PUSHES):  # one series per label value, each push its own window
        p = Pprof([("cpu", "nanoseconds")])
        for i in range(SERIES):
            p.add(["main", "f%d" % (i % 100), "g%d" % (i % 1000)], [1], labels={"k": "v%d" % i})
        r = node.ingest(p.encode(), tenant="t", name="heavy.cpu", format="pprof",
                        **{"from": t0 + k * 250})
        assert r.status == 200, r
    # the k matcher keeps the merge per series: the whole service alone
    # would be read from its aggregates, far too fast to cancel
    return {"query": '%s{service_name="heavy",k=~"v.*"}' % CPU, "from": str(t0 - 60),
            "until": str(t0 + PUSHES * 250)}


def share_counters(node):
    return {k: node.metric("flamedb_scatter_" + k) for k in (
        "partials_served_total", "partials_refused_total", "shares_cancelled_total")}


def test_client_close_stops_running_shares():
    t0 = int(time.time()) - 250 * PUSHES - 600
    with Cluster(2, rf=1, failure_timeout="60s", args=ARGS) as c:
        n0, n1 = c.nodes
        params = push_heavy(n0, t0)
        start = time.monotonic()
        r = n0.query("/pyroscope/render", "t", **params)
        full = time.monotonic() - start
        assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == SERIES * PUSHES * 1
        s, before, attempts = open_render_while_both_run(n0, n1, params)
        s.close()
        closed = time.monotonic()
        wait_for("both query lanes idle",
                 lambda: query_lane_running(n0) == 0 and query_lane_running(n1) == 0,
                 timeout=30, interval=0.02)
        took = time.monotonic() - closed
        after = [n.metric("flamedb_scatter_shares_cancelled_total") for n in (n0, n1)]
        print("    full query %.2f s; after the client closed, shares stopped within %.2f s; "
              "stopped shares %s -> %s (query sent %d time(s))" % (full, took, before, after,
                                                                  attempts))
        assert after[0] == before[0] + 1, (before, after)  # the coordinator's local job
        assert after[1] == before[1] + 1, (before, after)  # the other node's share
        assert took < full * 0.7, (took, full)


def open_render_while_both_run(n0, n1, params, attempts=3):
    """Sends the render to n0 on a connection of its own and returns it once
    both nodes' query lanes are seen running, with the shares-cancelled
    counters read before and the number of times the render was sent. Each
    share runs a good part of the full query, but a poll can still miss them
    on a loaded machine: a render answered before both were seen (200) is
    sent again, up to attempts times; any other answer fails at once."""
    for attempt in range(1, attempts + 1):
        before = [n.metric("flamedb_scatter_shares_cancelled_total") for n in (n0, n1)]
        s = socket.create_connection(("127.0.0.1", n0.port), timeout=10)
        s.sendall(("GET /pyroscope/render?%s HTTP/1.1\r\nHost: x\r\nX-Scope-OrgID: t\r\n\r\n"
                   % urllib.parse.urlencode(params)).encode())
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if query_lane_running(n0) >= 1 and query_lane_running(n1) >= 1:
                return s, before, attempt
            if select.select([s], [], [], 0.005)[0]:
                break  # the answer (or its head) came first
        head = s.recv(64) if select.select([s], [], [], 0)[0] else b""
        s.close()
        assert head.startswith(b"HTTP/1.1 200"), \
            "both shares not seen running within 10 s; the render answered %r" % (
                head or "nothing")
    raise AssertionError("both shares not seen running in %d renders" % attempts)


def test_refusal_by_one_part_stops_the_others():
    t0 = int(time.time()) - 250 * PUSHES - 600
    with Cluster(2, rf=1, failure_timeout="60s", args=ARGS) as c:
        n0, n1 = c.nodes
        params = push_heavy(n0, t0)
        start = time.monotonic()
        r = n0.query("/pyroscope/render", "t", **params)
        full = time.monotonic() - start
        assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == SERIES * PUSHES * 1
        # n0 again, allowed far fewer series than its share selects: its
        # local share refuses the query at once (422), while n1's share would
        # merge its half of the series (a later flag wins)
        c.stop(0)
        c.restart(0, extra=["--query-max-series", "100"])
        n0 = c.nodes[0]
        wait_for("both nodes active again", c.converged, timeout=30)
        # once before the measured query: the restarted n0 reads its series
        # index cold the first time (0.6 s under load, as long as n1's whole
        # share), after which its refusal comes at once
        r = n0.query("/pyroscope/render", "t", **params)
        assert r.status == 422, r
        # that query's ask and cancel may still be on their way to n1 (its lane
        # idle before they came, the cancel then counted after `before` was
        # read): its counters settled first, alike over half a second
        before = settled_share_counters(n1)
        # n1 stopped (SIGSTOP) while n0 refuses: n1 finds the ask and the
        # cancel that follows it waiting together once it runs again, so its
        # share cannot end before the cancel comes, however fast it merges
        # (n1 is not seen down: the failure timeout is 60 s)
        n1.proc.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            r = n0.query("/pyroscope/render", "t", **params)
            refused = time.monotonic() - start
            time.sleep(0.3)  # the cancel goes out once n0's share refused
        finally:
            n1.proc.send_signal(signal.SIGCONT)
        # (over max_series=100, or over the candidates allowed for it)
        assert r.status == 422 and b"series" in r.body, r
        # the refusal may come before n1's request went out (then n1 is
        # never asked); a request that went out is cancelled, never served
        asked = wait_for_or_not(lambda: share_counters(n1) != before, 10)
        wait_for("n1's query lane idle", lambda: query_lane_running(n1) == 0, timeout=30,
                 interval=0.02)
        took = time.monotonic() - start
        after = share_counters(n1)
        print("    full query %.2f s; refused by n0's share in %.2f s, n1's share %s %.2f s "
              "after the query: %s -> %s" % (full, refused, "ended" if asked else "not asked",
                                             took, before, after))
        assert after["partials_served_total"] == before["partials_served_total"], (before, after)
        if asked:
            assert after["shares_cancelled_total"] == before["shares_cancelled_total"] + 1, \
                (before, after)
        else:
            assert after == before, (before, after)


def settled_share_counters(node, quiet=0.5, seconds=30):
    """share_counters(node) once they stayed the same over quiet seconds with
    its query lane idle (bounded by seconds)."""
    last = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = share_counters(node) if query_lane_running(node) == 0 else None
        if now is not None and now == last:
            return now
        last = now
        time.sleep(quiet)
    raise AssertionError("the share counters of %s did not settle in %d s" % (node.name, seconds))


def wait_for_or_not(cond, seconds):
    """Whether cond() turned true within seconds (polled every 10 ms)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


run_tests(globals())
