"""test_query_memory.py — query-memory-bytes bounds the partial results the
queries a node coordinates hold at once. 80 concurrent renders wait on a
peer stopped with SIGSTOP, each holding its local share (the values by id
of a render truncated to maxNodes, summed over its scope's call paths: about
250 KB here, 7.4-9 MB for 32 of them in every run measured) against a
12 MiB budget (one query alone needs about 8 MB at its peak, its selection
counted): the ones that would pass it are answered 503 with Retry-After
naming the setting, the gauge never shows more than the budget, and once
the peer is back and everything is answered the node holds nothing and a
query alone is exact."""
import signal
import threading
import time

from cluster import FAST_FORMATION, Cluster, wait_for
from harness import CPU, run_tests

BUDGET = 12 * 1024 * 1024
# A query alone needs about 8 MB at its peak: both nodes' forests, the remote
# answer being merged, and the maxNodes selection over the forests (each of
# the 32 service nodes hides 1,000 children, all of them in its frontier),
# counted while it runs. Each waiting query holds its local share's values
# by id, 8 bytes a call path of the services this node holds: 230-280 KB in
# every placement measured. 32 of them stayed under the budget in some
# placements (then only a merge's passing working memory could be refused,
# and sometimes none was); 80 need more than 157 KB each to pass it.
QUERIES = 80
# nothing is written while the cluster forms: FAST_FORMATION
ARGS = ["--query-memory-bytes", "12MiB", "--query-timeout", "60s"] + FAST_FORMATION
# With RF 1 the coordinator's local share holds only the services its own
# tokens place on it (random tokens): many services keep that near half of
# them (8 services once left it too few in some runs).
SERVICES, STACKS = 32, 1000


def n1_idle(n1, samples=3):
    """No query memory held on n1 over a few samples taken 0.1 s apart."""
    for _ in range(samples):
        if n1.metric("flamedb_scatter_memory_bytes") != 0:
            return False
        time.sleep(0.1)
    return True


def test_concurrent_queries_over_the_budget():
    t0 = int(time.time()) - 300
    with Cluster(2, rf=1, failure_timeout="60s", args=ARGS) as c:
        n0 = c.nodes[0]
        for s in range(SERVICES):
            body = "".join("main;svc%d;f%d_%d;g%d 1\n" % (s, s, i, i)
                           for i in range(STACKS)).encode()
            r = n0.ingest(body, tenant="t", name="big%d.cpu" % s, **{"from": t0 + s})
            assert r.status == 200, r
        frm, until = str(t0 - 60), str(t0 + 60)
        assert n0.metric("flamedb_scatter_memory_bytes") == 0
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        answers = []
        try:
            def one():
                answers.append(n0.render(CPU + "{}", frm, until, tenant="t"))
            threads = [threading.Thread(target=one, daemon=True) for _ in range(QUERIES)]
            for t in threads:
                t.start()
            # refused: a query by the partials it holds (answered 503 at once,
            # flamedb_scatter_memory_refused_total), or its local share by the
            # working memory of its merge (flamedb_scatter_partials_memory_refused_total):
            # that query keeps waiting on the stopped node and is answered 503 once
            # it is back (rf 1: no other replica has the refused ranges), so which
            # of the two shows first depends on how the pool interleaves the shares
            wait_for("the queries over the budget refused",
                     lambda: any(r.status == 503 for r in list(answers))
                     or n0.metric("flamedb_scatter_partials_memory_refused_total") >= 1,
                     timeout=20)
            wait_for("the others waiting on the stopped node, holding their share",
                     lambda: n0.metric("flamedb_scatter_queries_in_flight") >= 1
                     and len(answers) + n0.metric("flamedb_scatter_queries_in_flight") == QUERIES,
                     timeout=20)
            held = n0.metric("flamedb_scatter_memory_bytes")
            assert 0 < held <= BUDGET, held
            for r in list(answers):
                assert r.status == 503, r
                assert b"query-memory-bytes" in r.body, r
                assert r.headers.get("retry-after") == "1", r.headers
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        for t in threads:
            t.join(60)
        assert len(answers) == QUERIES
        # a waiting query whose remote answer would pass the budget also gets 503
        assert all(r.status in (200, 503) for r in answers), answers
        for r in answers:  # never short unsaid: whole, refused, or flagged partial
            if r.status == 200 and "x-flamedb-partial" not in r.headers:
                assert r.json()["flamebearer"]["numTicks"] == SERVICES * STACKS * 10**7
        # n1 serves the shares of all of them at once once resumed: those its
        # own query-memory-bytes cannot hold are refused (as may be n0's own
        # shares, whose merges' working memory counts too), and with rf 1 their
        # queries answer 503 naming the node, never partial: no node was down
        assert not any("x-flamedb-partial" in r.headers for r in answers), answers
        for r in answers:
            if r.status == 503:
                assert b"query-memory-bytes" in r.body, r.body
        # the budget refused something: a whole query, or a share of one
        assert (sum(r.status == 503 for r in answers) >= 1
                or n0.metric("flamedb_scatter_partials_memory_refused_total") >= 1), answers
        print("statuses %s, held %d bytes while waiting"
              % (sorted(r.status for r in answers), held))
        wait_for("every partial result released",
                 lambda: n0.metric("flamedb_scatter_memory_bytes") == 0
                 and n0.metric("flamedb_scatter_queries_in_flight") == 0, timeout=20)
        # the queries answered 503 while n1 was stopped had asked it for
        # their shares, and n1 still serves them once resumed (their answers
        # are dropped as late on n0)
        n1m = {k: c.nodes[1].metric("flamedb_scatter_" + k) for k in (
            "partials_served_total", "partials_refused_total",
            "partials_memory_refused_total", "shares_cancelled_total")}
        print("n1 while answering: %s; n0 late answers %d"
              % (n1m, n0.metric("flamedb_scatter_late_answers_total")))
        # until n1 is done with the shares it still serves, its budget may
        # refuse the share of a new query, then answered 503
        wait_for("n1 done serving the shares of the earlier queries",
                 lambda: n1_idle(c.nodes[1]), timeout=60)
        # alone, the same query fits and is exact; an answer not flagged
        # partial is always exact (checked on every try, never retried over)
        for _ in range(50):
            r = n0.render(CPU + "{}", frm, until, tenant="t")
            assert r.status in (200, 503), r
            if r.status == 200 and "x-flamedb-partial" not in r.headers:
                break
            time.sleep(0.2)
        assert r.status == 200 and "x-flamedb-partial" not in r.headers, r
        assert r.json()["flamebearer"]["numTicks"] == SERVICES * STACKS * 10**7
        # a render-diff holds both sides' bodies until it joins them, counted
        # in the same budget and given back once answered
        r = n0.query("/pyroscope/render-diff", "t", leftQuery=CPU + '{service_name="big0"}',
                     rightQuery=CPU + '{service_name="big1"}', leftFrom=frm, leftUntil=until,
                     rightFrom=frm, rightUntil=until)
        assert r.status == 200, r
        assert n0.metric("flamedb_scatter_memory_bytes") == 0
        assert n0.alive()


def test_diff_report_decoded_buckets_count():
    """GET /api/diff decodes up to 60 bucket trees at once, several times
    the size of the encoded answers query-memory-bytes holds for it: the
    decoded trees count in the budget too. Here the bodies (30 buckets a side
    of 1,500 stacks) fit in 4 MiB, their decoded trees do not: 503 naming
    the setting (at the decode, or at the other side's merge when one side's
    decoded trees took the budget first), and nothing held after; with room the same report is 200."""
    from harness import Node
    t0 = (int(time.time()) // 600) * 600 - 1200
    body = "".join("main;m%d;f%d;leaf%d 1\n" % (i % 7, i % 101, i) for i in range(1500)).encode()
    q = CPU + '{service_name="rep"}'
    params = {"leftQuery": q, "rightQuery": q, "leftFrom": str(t0), "leftUntil": str(t0 + 300),
              "rightFrom": str(t0), "rightUntil": str(t0 + 300)}
    d = None
    for budget, want in (("4MiB", 503), ("64MiB", 200)):
        n = Node(data_dir=d, args=["--query-memory-bytes", budget, "--report-cache-bytes", "0"])
        n.owns_dir = budget == "64MiB"
        with n:
            d = n.data_dir
            if want == 503:
                for k in range(30):
                    r = n.ingest(body, name="rep.cpu", **{"from": t0 + 10 * k})
                    assert r.status == 200, r
            r = n.query("/api/diff", None, **params)
            assert r.status == want, r
            if want == 503:
                # the decoded buckets of one side may take the budget while
                # the other side still merges: either refusal names the limit
                assert b"query-memory-bytes" in r.body, r
                assert (b"decoded buckets" in r.body or
                        b"merging the answer does not fit" in r.body), r
            else:
                assert r.json()["leftTicks"] == 30 * 1500 * 10**7, r.body[:200]
            assert n.metric("flamedb_scatter_memory_bytes") == 0


def test_render_diff_decoded_trees_count():
    """A render-diff joins the two sides' merged trees: decoded into their
    union, with each side's values per node and the answer's shape, several
    times the encoded answers the budget holds for it. They count in
    query-memory-bytes too: here (30,000 stacks a side) the sides fit in
    8 MiB (each side's merge, about 4.4 MB, counts while it runs; the two
    run at once, and one refused beside the other is asked again alone),
    the join does not, and since nothing else holds the budget the request
    could never fit: 413 naming the setting, never 503 (a retry would get
    the same). In 5 MiB a side's merge does not fit beside the other side's
    answer, which the same request holds, or (when the second side merges
    once the first one's query gave back its room) the join does not: 413
    too, whichever comes first, never 503. With 12 MiB the same diff is 200,
    and nothing is held after."""
    from harness import Node
    t0 = int(time.time()) - 300
    params = {"leftQuery": CPU + '{service_name="rdx",version="v1"}',
              "rightQuery": CPU + '{service_name="rdx",version="v2"}',
              "leftFrom": str(t0 - 60), "leftUntil": str(t0 + 60),
              "rightFrom": str(t0 - 60), "rightUntil": str(t0 + 60)}
    body = "".join("main;m%d;f%d;leaf%d 1\n" % (i % 7, i % 101, i) for i in range(30000)).encode()
    d = None
    cases = (("5MiB", 413, (b"merging the answer does not fit", b"the two sides and their join")),
             ("8MiB", 413, (b"the two sides and their join",)), ("12MiB", 200, None))
    for budget, want, why in cases:
        n = Node(data_dir=d, args=["--query-memory-bytes", budget])
        n.owns_dir = budget == "12MiB"
        with n:
            if d is None:
                for v in ("v1", "v2"):
                    r = n.ingest(body, name="rdx.cpu{version=%s}" % v, **{"from": t0})
                    assert r.status == 200, r
            d = n.data_dir
            r = n.query("/pyroscope/render-diff", None, **params)
            assert r.status == want, (budget, r)
            if want == 413:
                assert any(w in r.body for w in why), r
                assert b"query-memory-bytes" in r.body and r.json()["code"] == "too_large", r
            else:
                assert r.json()["leftTicks"] == 30000 * 10**7, r.body[:200]
            assert n.metric("flamedb_scatter_memory_bytes") == 0


def test_render_diff_symbols_values_and_answer_count():
    """Beside the union, a render-diff's join holds the symbol names of both
    sides, each side's values per node, the sorted tree a folded answer is
    written from and the answer itself. They count in query-memory-bytes
    too (the union and its values are given back before the answer is
    written): 30,000 stacks a side, none shared, answered as folded lines
    (60,000 nodes, none cut), do not fit in 12 MiB (413 naming the setting;
    the sides alone fit), and fit in 20 MiB with nothing held after."""
    from harness import Node
    t0 = int(time.time()) - 300
    params = {"leftQuery": CPU + '{service_name="rdy",version="v1"}',
              "rightQuery": CPU + '{service_name="rdy",version="v2"}',
              "leftFrom": str(t0 - 60), "leftUntil": str(t0 + 60),
              "rightFrom": str(t0 - 60), "rightUntil": str(t0 + 60), "format": "folded"}
    d = None
    for budget, want in (("12MiB", 413), ("20MiB", 200)):
        n = Node(data_dir=d, args=["--query-memory-bytes", budget])
        n.owns_dir = budget == "20MiB"
        with n:
            d = n.data_dir
            if want == 413:
                for v in ("v1", "v2"):
                    body = "".join("main;m%d;f%d;leaf%d_%s 1\n" % (i % 7, i % 101, i, v)
                                   for i in range(30000)).encode()
                    r = n.ingest(body, name="rdy.cpu{version=%s}" % v, **{"from": t0})
                    assert r.status == 200, r
            r = n.query("/pyroscope/render-diff", None, **params)
            assert r.status == want, r
            if want == 413:
                assert b"query-memory-bytes" in r.body, r
            else:
                lines = r.body.decode().splitlines()
                assert len(lines) == 60000, len(lines)
            assert n.metric("flamedb_scatter_memory_bytes") == 0


if __name__ == "__main__":
    run_tests(globals())
