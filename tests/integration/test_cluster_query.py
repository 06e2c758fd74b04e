#!/usr/bin/env python3
"""Scatter-gather queries across real processes (issue #3;
exact answers, or partial ones that say what is missing):

- 3 nodes RF 2 and 5 nodes RF 3: a generated dataset pushed through
  different nodes; flame graphs (json, folded, pprof; whole ring and a
  pinned service) and label answers are the same bytes from every node and
  from a single node holding everything, with exact totals;
- nodes killed until some range has no live replica: while RF-1 or fewer
  are down the answers stay exact; then they are flagged partial
  ("partial": true, "missing", X-Flamedb-Partial) and never silently short;
- series alone on their token (a single-series token): their trees are
  counted once whichever replica answers, with a node down or joined;
- a truncated render over every node takes two pool jobs on its
  coordinator (the local share merges itself, one job takes every answer);
- one node stopped with SIGSTOP (slow, not yet seen down): the query still
  finishes by the query timeout, re-planned (exact) or flagged partial;
- 3 nodes RF 1: shares answer renders by the ids of their shard unions;
  the coordinator's maps take the structure once, its tail as paths are
  added, afresh from a restarted node; answers the same bytes as one node;
- with FLAMEDB_OLD_BIN, a node of an older binary beside two new ones: the
  same answers whichever node coordinates (forest encodings negotiated).

Every wait is bounded; the seed is printed (cluster.py) and replayed with
FLAMEDB_TEST_SEED.
"""
import json
import os
import signal
import time

import harness
from cluster import FAST_FORMATION, RNG, Cluster, wait_for

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SCALE = 10**7  # folded .cpu at the default 100 Hz: 1e9/100 ns per sample
SERVICES = ["checkout", "search", "cart", "auth"]
QUERY_TIMEOUT = 3.0
ARGS = ["--query-timeout", "%dms" % int(QUERY_TIMEOUT * 1000)] + FAST_FORMATION


def dataset(n, t0):
    """n small folded profiles with random stacks, one per second from t0:
    [(name, from, body, samples)]."""
    frames = ["main", "serve", "handle", "db.query", "json.encode", "gc", "alloc", "parse"]
    out = []
    for i in range(n):
        svc = SERVICES[i % len(SERVICES)]
        name = "%s.cpu{env=%s,pod=%s-%d}" % (svc, "prod" if i % 3 else "dev", svc, i % 5)
        lines, samples = [], 0
        for _ in range(1 + RNG.randrange(4)):
            depth = 1 + RNG.randrange(5)
            stack = ["main"] + [RNG.choice(frames[1:]) for _ in range(depth)]
            v = 1 + RNG.randrange(50)
            samples += v
            lines.append("%s %d" % (";".join(stack), v))
        out.append((name, t0 + i, ("\n".join(lines) + "\n").encode(), samples))
    return out


def push_all(nodes, data):
    """Pushes each profile to nodes[i % len(nodes)]; every push must be acked."""
    for i, (name, frm, body, _) in enumerate(data):
        node = nodes[i % len(nodes)]
        r = node.ingest(body, name=name, **{"from": frm}, until=frm + 10)
        assert r.status == 200, "push %d to %s: %r" % (i, node.name, r)


def push_settled(c, data):
    """push_all through every node of c, then waits until no member holds
    hints: a replica that missed --hint-ack-grace (a loaded machine) serves
    no reads until its hints are delivered, and a range whose every replica
    is hinted is answered partial, rightly. The checks of exact answers
    with every node up start from a settled cluster."""
    push_all(c.nodes, data)
    c.wait_hints_settled()


def header(r, name):
    return r.headers.get(name.lower())


def queries(frm, until):
    """(label, path, params) of every answer compared across nodes."""
    q = []
    for fmt in ("json", "folded", "pprof"):
        q.append(("render all %s" % fmt, "/pyroscope/render",
                  {"query": CPU + "{}", "from": frm, "until": until, "format": fmt}))
    q.append(("render service", "/pyroscope/render",
              {"query": CPU + '{service_name="search"}', "from": frm, "until": until}))
    q.append(("render env", "/pyroscope/render",
              {"query": CPU + '{env="dev"}', "from": frm, "until": until, "format": "folded",
               "maxNodes": "6"}))
    q.append(("render all json maxNodes", "/pyroscope/render",  # kept nodes and `other`
              {"query": CPU + "{}", "from": frm, "until": until, "maxNodes": "5"}))
    q.append(("render-diff dev vs prod", "/pyroscope/render-diff",
              {"leftQuery": CPU + '{env="dev"}', "leftFrom": frm, "leftUntil": until,
               "rightQuery": CPU + '{env="prod"}', "rightFrom": frm, "rightUntil": until,
               "maxNodes": "8"}))
    q.append(("label shares env", "/api/label-shares",
              {"query": CPU + "{}", "label": "env", "from": frm, "until": until}))
    q.append(("render groupBy pod", "/pyroscope/render",
              {"query": CPU + '{env="dev"}', "groupBy": "pod", "from": frm, "until": until}))
    for fmt in ("svg", "folded", "speedscope"):
        q.append(("render-diff dev vs prod " + fmt, "/pyroscope/render-diff",
                  {"leftQuery": CPU + '{env="dev"}', "leftFrom": frm, "leftUntil": until,
                   "rightQuery": CPU + '{env="prod"}', "rightFrom": frm, "rightUntil": until,
                   "format": fmt}))
    q.append(("profiles all", "/api/profiles",
              {"query": CPU + "{}", "from": frm, "until": until, "limit": "10000"}))
    q.append(("profiles dev cut", "/api/profiles",
              {"query": CPU + '{env="dev"}', "from": frm, "until": until, "limit": "7"}))
    q.append(("label names", "/pyroscope/label-names", {"from": frm, "until": until}))
    q.append(("label values pod", "/pyroscope/label-values", {"label": "pod"}))
    q.append(("label values match", "/pyroscope/label-values",
              {"label": "pod", "match": '{service_name="cart"}', "from": frm, "until": until}))
    return q


def answers(node, frm, until):
    out = {}
    for label, path, params in queries(frm, until):
        r = node.query(path, **params)
        assert r.status == 200, "%s from %s: %r" % (label, node.name, r)
        assert header(r, "X-Flamedb-Partial") is None, (label, node.name, r.headers)
        out[label] = r.body
    fb = json.loads(out["render all json maxNodes"])["flamebearer"]  # truncated: `other`
    assert "other" in fb["names"] and len(fb["levels"]) > 1, fb["names"]
    cut = json.loads(out["profiles dev cut"])  # the cut really cuts
    assert len(cut["profiles"]) == 7 and cut["truncated"] is True, cut
    return out


def expected_total(data, service=None):
    return sum(s for (name, _, _, s) in data if service is None or name.startswith(service + "."))


def check_identical(c, among, reference, data, frm, until):
    for i in among:
        got = answers(c.nodes[i], frm, until)
        for label, body in reference.items():
            assert got[label] == body, "%s differs on %s (%d vs %d bytes)" % (
                label, c.ids[i], len(got[label]), len(body))
        t = c.nodes[i].render(CPU + "{}", frm, until).json()["flamebearer"]["numTicks"]
        assert t == expected_total(data) * SCALE, (c.ids[i], t, expected_total(data) * SCALE)
        t = c.nodes[i].render(CPU + '{service_name="search"}', frm, until).json()
        assert t["flamebearer"]["numTicks"] == expected_total(data, "search") * SCALE, c.ids[i]


def in_range(token, rng):
    """Whether token (int) lies in a missing range {"start", "end"}, (start, end]
    on the ring (the range wraps when start >= end)."""
    start, end = int(rng["start"], 16), int(rng["end"], 16)
    if start < end:
        return start < token <= end
    return token > start or token <= end


def total_outside(reference, missing):
    """The CPU total of the reference's profiles whose series' placement
    token (the first 16 hex digits of a listed id) lies in none of the
    missing ranges: what a partial answer missing exactly those has. The
    dataset's series sit on few tokens (4 services x 4 shards), so whether
    any lies in a missing range depends on the run's ring."""
    listed = json.loads(reference["profiles all"])
    assert listed["truncated"] is False and listed["profiles"], listed.get("truncated")
    return sum(p["total"] for p in listed["profiles"]
               if not any(in_range(int(p["id"][:16], 16), m) for m in missing))


def single_node_reference(data, frm, until):
    with harness.Node(name="single") as single:
        push_all([single], data)
        return answers(single, frm, until)


def test_three_nodes_rf2_identical_then_partial():
    t0 = int(time.time()) - 1800
    frm, until = str(t0 - 600), str(t0 + 1200)
    data = dataset(60, t0)
    reference = single_node_reference(data, frm, until)
    with Cluster(3, rf=2, args=ARGS) as c:
        push_settled(c, data)
        check_identical(c, [0, 1, 2], reference, data, frm, until)
        print("    3 nodes: %d answers identical from every node and to one node" % len(reference))
        c.kill(2)
        c.wait_state(2, "down")
        check_identical(c, [0, 1], reference, data, frm, until)
        print("    n2 down: answers still exact")
        c.kill(1)
        c.wait_state(1, "down", observers=[0])
        for fmt in ("json", "folded", "pprof"):
            r = c.nodes[0].render(CPU + "{}", frm, until, fmt=fmt)
            assert r.status == 200, r
            h = header(r, "X-Flamedb-Partial")
            assert h is not None and "ranges=" in h, (fmt, r.headers)
        r = c.nodes[0].render(CPU + "{}", frm, until)
        doc = r.json()
        assert doc["partial"] is True and doc["missing"], doc.get("missing")
        assert set(doc["missing_nodes"]) <= {"n1", "n2"} and doc["missing_nodes"], doc
        assert 0 < doc["missing_share"] < 1, doc["missing_share"]
        answered = total_outside(reference, doc["missing"])
        if len(doc["missing"]) == doc["missing_ranges"]:  # every missing range listed
            assert doc["flamebearer"]["numTicks"] == answered, (doc["flamebearer"]["numTicks"],
                                                                 answered)
        else:
            assert doc["flamebearer"]["numTicks"] <= answered, doc["flamebearer"]["numTicks"]
        r = c.nodes[0].query("/pyroscope/render-diff", leftQuery=CPU + "{}", leftFrom=frm,
                             leftUntil=until, rightQuery=CPU + '{env="dev"}', rightFrom=frm,
                             rightUntil=until)
        h = header(r, "X-Flamedb-Partial")
        assert r.status == 200 and h and "left: ranges=" in h, (r, r.headers)
        assert r.json()["partial"] is True
        g = c.nodes[0].render(CPU + "{}", frm, until, groupBy="env")
        gh = header(g, "X-Flamedb-Partial")
        assert g.status == 200 and gh and "render: ranges=" in gh and "groupBy: ranges=" in gh, (
            g, g.headers)
        gdoc = g.json()
        assert gdoc["partial"] is True and gdoc["missing"] and gdoc["groups"], gdoc.keys()
        r = c.nodes[0].query("/pyroscope/label-values", label="pod")
        assert r.status == 200 and header(r, "X-Flamedb-Partial"), r.headers
        assert c.nodes[0].metric("flamedb_scatter_partial_answers_total") >= 5
        print("    n1, n2 down: partial, %d range(s) missing, share %.3f, %d of %d ticks, "
              "header '%s'" % (doc["missing_ranges"], doc["missing_share"],
                               doc["flamebearer"]["numTicks"], expected_total(data) * SCALE, h))


def test_five_nodes_rf3():
    t0 = int(time.time()) - 1200
    frm, until = str(t0 - 600), str(t0 + 1200)
    data = dataset(50, t0)
    reference = single_node_reference(data, frm, until)
    with Cluster(5, rf=3, args=ARGS) as c:
        push_settled(c, data)
        check_identical(c, range(5), reference, data, frm, until)
        c.kill(0)
        c.kill(3)
        c.wait_state(0, "down", observers=[1, 2, 4])
        c.wait_state(3, "down", observers=[1, 2, 4])
        check_identical(c, [1, 2, 4], reference, data, frm, until)
        print("    5 nodes RF 3, 2 down: answers exact and identical")
        c.kill(4)
        c.wait_state(4, "down", observers=[1, 2])
        r = c.nodes[1].render(CPU + "{}", frm, until)
        assert r.status == 200 and r.json().get("partial") is True, r
        assert header(r, "X-Flamedb-Partial"), r.headers


def test_service_shard_override_rf1():
    """--service-shards spreads one service over more shards. With RF 1 every
    shard lives on exactly one node, so a query pinned to the service finds
    all its data only if the coordinator plans with the same override as
    ingest placed it (the default 4 shards would miss some)."""
    t0 = int(time.time()) - 1800
    frm, until = str(t0 - 600), str(t0 + 1200)
    data = []
    for i in range(64):  # 64 pods of one service: series spread over 16 shards
        name = "search.cpu{pod=search-%d}" % i
        v = 1 + RNG.randrange(40)
        data.append((name, t0 + i, ("main;search;s%d %d\n" % (i % 7, v)).encode(), v))
    with Cluster(3, rf=1, args=ARGS + ["--service-shards", "search=16"]) as c:
        push_settled(c, data)
        want = expected_total(data, "search") * SCALE
        bodies = set()
        for node in c.nodes:
            r = node.render(CPU + '{service_name="search"}', frm, until, fmt="folded")
            assert r.status == 200 and header(r, "X-Flamedb-Partial") is None, r
            bodies.add(r.body)
            t = node.render(CPU + '{service_name="search"}', frm, until).json()
            assert t["flamebearer"]["numTicks"] == want, (node.name, t["flamebearer"]["numTicks"],
                                                         want)
        assert len(bodies) == 1
        print("    search over 16 shards, RF 1: exact and identical from every node")


def id_space_renders(node, frm, until):
    """The truncated renders a coordinator gathers by id: label -> body."""
    out = {}
    for label, query, extra in (("all", CPU + "{}", {}),
                                ("search", CPU + '{service_name="search"}', {}),
                                ("all cut", CPU + "{}", {"maxNodes": "5"}),
                                ("search folded cut", CPU + '{service_name="search"}',
                                 {"fmt": "folded", "maxNodes": "6"}),
                                ("nothing", CPU + '{service_name="none"}', {}),
                                ("nothing in env", CPU + '{env="none"}', {})):
        r = node.render(query, frm, until, **extra)
        assert r.status == 200 and header(r, "X-Flamedb-Partial") is None, (label, r)
        out[label] = r.body
    return out


def new_paths(n, t0):
    """Profiles whose call paths no dataset() profile has (frames of their own)."""
    out = []
    for i in range(n):
        svc = SERVICES[i % len(SERVICES)]
        name = "%s.cpu{env=prod,pod=%s-new}" % (svc, svc)
        v = 1 + RNG.randrange(30)
        body = "main;serve;cache.get%d;cache.fill%d %d\n" % (i, i % 3, v)
        out.append((name, t0 + 100 + i, body.encode(), v))
    return out


def test_renders_gathered_by_id():
    """3 nodes RF 1, so every render scatters: its shares answer the values
    of their shard unions by id (PartialResult.space), and the coordinator
    adds them through its maps of their ids. The first render of a scope
    brings the unions' structure, a second one none; call paths pushed
    between renders come as the structure's tail; a restarted node's union
    is a new one (a new nonce) and brings its structure again. Every answer
    is the same bytes as a single node's holding the same profiles."""
    t0 = int(time.time()) - 1800
    frm, until = str(t0 - 600), str(t0 + 1200)
    first, more = dataset(48, t0), new_paths(12, t0)
    with harness.Node(name="single") as single:
        push_all([single], first)
        want1 = id_space_renders(single, frm, until)
        push_all([single], more)
        want2 = id_space_renders(single, frm, until)
    ids = "flamedb_scatter_space_ids_received_total"
    answered = "flamedb_scatter_space_answers_total"
    with Cluster(3, rf=1, args=ARGS) as c:
        push_settled(c, first)
        co = c.nodes[0]
        assert id_space_renders(co, frm, until) == want1
        got_ids, got_answers = co.metrics(ids, answered)
        assert got_ids > 0 and got_answers > 0, (got_ids, got_answers)
        assert id_space_renders(co, frm, until) == want1
        again_ids, again_answers = co.metrics(ids, answered)
        assert again_ids == got_ids and again_answers > got_answers, (again_ids, got_ids)
        print("    first renders: %d ids' structure, %d answers by id; again: none sent"
              % (got_ids, got_answers))
        push_settled(c, more)
        assert id_space_renders(co, frm, until) == want2
        grown = co.metric(ids)
        assert grown > again_ids, (grown, again_ids)
        c.restart(1)
        c.wait_converged(timeout=30)
        c.wait_unlisted([0, 1, 2])  # n1's own restart mark lifted: it serves reads again
        assert id_space_renders(co, frm, until) == want2
        restarted = co.metric(ids)
        assert restarted > grown, (restarted, grown)
        print("    new paths: %d ids more; n1 restarted: %d more; answers exact"
              % (grown - again_ids, restarted - grown))


def test_forest_render_two_pool_jobs():
    """A truncated render over 3 nodes RF 1 (every node asked) takes two pool
    jobs on its coordinator, whatever order the answers come in: the local
    share merges its own forests, and one job merges both remote answers
    and finishes once neither is outstanding (before: a job for the local
    partial and one per answer that came alone). The answers stay exact
    and the same bytes from every node."""
    t0 = int(time.time()) - 1800
    frm, until = str(t0 - 600), str(t0 + 1200)
    data = dataset(64, t0)
    renders = 6
    with Cluster(3, rf=1, args=ARGS) as c:
        push_settled(c, data)
        bodies = set()
        rested = [n.metric("flamedb_query_assist_rested_total") for n in c.nodes]
        for node in c.nodes:
            before = node.metric("flamedb_scatter_pool_jobs_total")
            for _ in range(renders):
                r = node.render(CPU + "{}", frm, until)
                assert r.status == 200 and header(r, "X-Flamedb-Partial") is None, r
                assert r.json()["flamebearer"]["numTicks"] == expected_total(data) * SCALE
                bodies.add(r.body)
                # Server-Timing: the coordinator's share, the wait for the
                # other nodes' answers, their merge and the finish
                t = dict(p.split(";dur=") for p in r.headers["server-timing"].split(", "))
                assert list(t) == ["queue", "share", "peers", "merge", "cut", "names", "encode",
                                   "total"], t
                assert float(t["peers"]) + float(t["merge"]) <= float(t["total"]) + 0.002, t
            jobs = node.metric("flamedb_scatter_pool_jobs_total") - before
            assert jobs == 2 * renders, (node.name, jobs, renders)
        assert len(bodies) == 1
        # the shares' answers (one frame each, to an idle connection) were
        # sent by the pool threads that wrote them, not through the loop
        served = [n.metrics("flamedb_scatter_partials_served_total",
                            "flamedb_scatter_partials_sent_from_pool_total") for n in c.nodes]
        assert all(s == 2 * renders and 0 < p <= s for s, p in served), served
        assert sum(p for _, p in served) >= 3 * renders, served
        # a share answered to another node ends its helper's parts, and so
        # does a coordinator's filing of the forest of its shares' values:
        # the helper that ran the last sleeps at once (one a share and one a
        # coordinator's finish at most; none when the job's own thread ran
        # it, no helper being idle)
        rested = [n.metric("flamedb_query_assist_rested_total") - r
                  for n, r in zip(c.nodes, rested)]
        assert 0 < sum(rested) <= 3 * (2 + 1) * renders, rested
        print("    3 nodes RF 1: a truncated render is two pool jobs on its coordinator; "
              "helpers asleep at once after a remote share: %s; shares served, sent from "
              "the pool: %s" % (rested, served))


def test_old_node_beside_new():
    """A node of an older binary (FLAMEDB_OLD_BIN: one that reads forest
    encodings up to 4; skipped when unset) beside two of this build, RF 1:
    every answer, truncated renders over the shares' forests among them, is
    the same bytes from every node and from a single node, whichever node
    coordinates (the new ones ask for encoding 5 and read the old node's 4;
    the old one asks for 4 and gets it)."""
    if not os.environ.get("FLAMEDB_OLD_BIN"):
        raise harness.Skip("FLAMEDB_OLD_BIN (a flamedb of an older forest encoding) not set")
    t0 = int(time.time()) - 1800
    frm, until = str(t0 - 600), str(t0 + 1200)
    data = dataset(96, t0)
    reference = single_node_reference(data, frm, until)
    with Cluster(0, rf=1, args=ARGS, start=False) as c:
        new_bin = harness.FLAMEDB_BIN
        try:
            harness.FLAMEDB_BIN = os.environ["FLAMEDB_OLD_BIN"]
            c.add_node()
        finally:
            harness.FLAMEDB_BIN = new_bin
        c.add_node()
        c.add_node()
        c.wait_converged(timeout=30)
        push_settled(c, data)
        check_identical(c, range(3), reference, data, frm, until)
        print("    old node + 2 new, RF 1: %d answers identical from every node and to one node"
              % len(reference))


def test_slow_node_bounded_by_deadline():
    t0 = int(time.time()) - 900
    frm, until = str(t0 - 600), str(t0 + 1200)
    data = dataset(40, t0)
    # a long failure timeout: the stopped node stays "live" in every view,
    # so only the query deadline protects the answer
    with Cluster(3, rf=2, failure_timeout="30s", args=ARGS) as c:
        push_settled(c, data)
        want = expected_total(data) * SCALE
        assert c.nodes[0].total(CPU + "{}", frm, until) == want
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            for i in (0, 1):
                t = time.monotonic()
                r = c.nodes[i].render(CPU + "{}", frm, until)
                took = time.monotonic() - t
                assert r.status == 200, r
                doc = r.json()
                assert took < QUERY_TIMEOUT + 1.5, took
                if doc.get("partial"):
                    assert header(r, "X-Flamedb-Partial"), r.headers
                    assert doc["flamebearer"]["numTicks"] <= want
                else:
                    assert doc["flamebearer"]["numTicks"] == want, (doc["flamebearer"], want)
                print("    n2 stopped: %s answered in %.2fs (%s)"
                      % (c.ids[i], took, "partial" if doc.get("partial") else "re-planned, exact"))
            assert sum(c.nodes[i].metric("flamedb_scatter_replans_total") for i in (0, 1)) >= 1
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        wait_for("n2 answering again", lambda: c.nodes[2].total(CPU + "{}", frm, until) == want,
                 timeout=20)


def solo_dataset(t0):
    """Series that each end in a frame of their own, over several windows:
    "solo" has one pod, so its series is alone on its token; "duo" and
    "crowd" put 2 and 6 pods on their 4 shard tokens (some alone, some
    not). Returns (pushes, {folded stack: samples})."""
    pods = [("solo", 0)] + [("duo", k) for k in range(2)] + [("crowd", k) for k in range(6)]
    pushes, want = [], {}
    for w in range(4):  # four 10 s windows a series: the token sums them
        for svc, k in pods:
            name = "%s.cpu{pod=%s-%d}" % (svc, svc, k)
            lines = []
            for stack in (["main", "serve", "%s_%d" % (svc, k)], ["main", "gc"]):
                v = 1 + RNG.randrange(30)
                lines.append("%s %d" % (";".join(stack), v))
                key = ";".join(stack)
                want[key] = want.get(key, 0) + v * SCALE
            pushes.append((name, t0 + 10 * w, ("\n".join(lines) + "\n").encode(), 0))
    return pushes, want


def folded_map(node, frm, until):
    """The whole ring's folded render through the coordinator's forests
    (maxNodes asked, nothing cut): {stack: value}, asserting an exact answer."""
    r = node.render(CPU + "{}", frm, until, fmt="folded", maxNodes="1000")
    assert r.status == 200 and header(r, "X-Flamedb-Partial") is None, (node.name, r)
    out = {}
    for line in r.body.decode().splitlines():
        stack, v = line.rsplit(" ", 1)
        out[stack] = out.get(stack, 0) + int(v)
    return out


def test_single_series_tokens_counted_once():
    """A token that holds a single series ships its tree once, whichever
    replica the coordinator picks for it: with every node up, with one
    down (RF 2: the other replica answers) and with a node joining, each
    series' own frame has exactly its samples (none dropped, none twice)."""
    t0 = int(time.time()) - 1800
    t0 -= t0 % 10
    frm, until = str(t0 - 600), str(t0 + 1200)
    data, want = solo_dataset(t0)
    with Cluster(3, rf=2, args=ARGS) as c:
        push_settled(c, data)
        for i in range(3):
            assert folded_map(c.nodes[i], frm, until) == want, c.ids[i]
        n = c.add_node()
        c.wait_converged()
        for i in range(n + 1):
            assert folded_map(c.nodes[i], frm, until) == want, c.ids[i]
        c.kill(1)
        c.wait_state(1, "down")
        for i in (0, 2, n):
            assert folded_map(c.nodes[i], frm, until) == want, c.ids[i]
        print("    %d series (one alone on its token): exact from every node, "
              "with a node joined and with one down" % (len(data) // 4))


def bench(n_profiles=3000, rounds=60):
    """Median render time (JSON, whole ring) of one node vs 3-node clusters
    holding the same data: RF 1 (every query fans out to all three) and RF 3
    (every node holds everything and answers locally). The single node keeps
    running and is timed alternately with the cluster, so both see the same
    machine load."""
    t0 = int(time.time()) - 3000
    frm, until = str(t0 - 600), str(t0 + 3000)
    data = dataset(n_profiles, t0)

    def once(node):
        t = time.perf_counter()
        r = node.render(CPU + "{}", frm, until)
        ms = (time.perf_counter() - t) * 1000
        assert r.status == 200 and header(r, "X-Flamedb-Partial") is None, r
        return ms

    with harness.Node(name="single") as single:
        push_all([single], data)
        for rf in (1, 3):
            with Cluster(3, rf=rf, args=ARGS) as c:
                push_settled(c, data)
                time.sleep(3)  # let flushes and compactions of the pushes settle
                a, b = [], []
                for i in range(rounds):
                    a.append(once(single))
                    b.append(once(c.nodes[i % 3]))
                ma, mb = sorted(a)[rounds // 2], sorted(b)[rounds // 2]
                print("%d profiles: single node %.2f ms, 3 nodes rf %d %.2f ms (%.2fx)"
                      % (n_profiles, ma, rf, mb, mb / ma))


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "bench":
        bench(*(int(a) for a in sys.argv[2:3]))
    else:
        harness.run_tests(dict(globals()))
