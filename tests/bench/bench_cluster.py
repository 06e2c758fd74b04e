"""bench_cluster.py — the cluster figures of tests/bench/run.py (issue #3 targets).

Step `cluster` of run.py. The same generated CPU fleet (the `ingest` step's
640 profiles, 4 services) is pushed over HTTP to three deployments started
side by side on this machine:

  single   one node, no cluster port (a cluster of one, RF 1);
  rf3      3 nodes, --replication-factor 3 (write quorum: the default majority, 2);
  rf1      3 nodes, --replication-factor 1: every series on one node, so every
           query really scatters over the three.

Figures, all ratios of this run:
  1. total CPU per ingested profile (utime + stime of every node process, from
     /proc/PID/stat, summed over the nodes) of rf3 ÷ single (target <= 3.5x),
     counted from the first push until 2 s after the last acknowledgement, so
     the replica that was not waited for has written too; rf1 ÷ single shows
     the cost of forwarding alone;
  2. median wall time of GET /pyroscope/render (JSON) on rf1 and rf3, asked of
     every node in turn, ÷ the single node's, for the whole fleet and for one
     service (target <= 1.3x): each of the fleet's services is rendered on its
     own and the figure is the median of their ratios, each listed (where a
     service's shards fall on the run's new ring moves its own ratio by more
     than most changes do). Every answer's numTicks is checked against the
     generator's sum and must not be partial, and every answer to a query must
     be the same bytes from every node of every deployment: a wrong or
     different answer fails the step;
  3. node CPU per render (utime + stime of every node of the deployment from
     the request until the answer, mean over the timed rounds) of rf1 ÷
     single: what a scatter-gather costs the cluster beyond one node's work;
  4. the slowest of 600 whole-fleet renders through rf1 (its nodes asked in
     turn, back to back) ÷ their median, with the p99 and how many took over
     30 ms: the tail a median hides (no target).

Pushes use 3 keep-alive connections in both cases: all to the single node, one
per node of a cluster (a load balancer's spread).
"""
import hashlib
import json
import os
import re
import statistics
import threading
import time
import urllib.parse

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
CONNECTIONS = 3
TAIL_S = 2.0  # CPU still counted after the last acknowledgement


class Deployment:
    """One node (n == 1, no cluster flags) or a cluster of n nodes on loopback."""

    def __init__(self, rt, binary, work, n, rf, memory_limit, name, extra=(), identities=None):
        """identities: per node, the identity file (node id and ring tokens) of
        another deployment's node of the same name, so both have one ring."""
        self.rt, self.name, self.nodes = rt, name, []
        self_extra = list(extra)
        cports = []
        while len(cports) < n:
            p = rt.free_port()
            if p not in cports:
                cports.append(p)
        seeds = ",".join("tcp://127.0.0.1:%d" % p for p in cports)
        try:
            for i in range(n):
                extra = []
                if n > 1:
                    extra = ["--node-id", "%s-%d" % (name, i), "--cluster-listen",
                             "tcp://127.0.0.1:%d" % cports[i], "--join", seeds,
                             "--cluster-name", "bench-" + name, "--replication-factor", str(rf)]
                extra += list(self_extra)
                files = {"identity": identities[i]} if identities else None
                self.nodes.append(rt.Node(binary, work, memory_limit, extra, wait=False,
                                          files=files))
            for node in self.nodes:
                node.wait_ready()
            if n > 1:
                self.wait_converged(n)
        except BaseException:
            self.stop()
            raise

    def wait_converged(self, n, seconds=30):
        deadline, seen = time.time() + seconds, None
        while time.time() < deadline:
            prints, ok = set(), True
            for node in self.nodes:
                st, body = node.get("/cluster/status")
                doc = json.loads(body) if st == 200 else {"nodes": []}
                active = [m for m in doc["nodes"] if m["state"] == "active"]
                ok = ok and len(active) == n
                prints.add(doc.get("ring_fingerprint"))
                seen = doc
            if ok and len(prints) == 1:
                self.rt.log("%s: %d nodes active, ring %s, rf %s, quorum %s" % (
                    self.name, n, seen["ring_fingerprint"], seen["rf"], seen["quorum"]))
                return
            time.sleep(0.2)
        raise RuntimeError("%s: cluster did not converge in %d s (last: %r)" % (self.name, seconds,
                                                                                seen))

    def cpu_seconds(self):
        return sum(node.cpu_seconds() for node in self.nodes)

    def identities(self):
        """Each node's identity file (node id and ring tokens), in order."""
        out = []
        for node in self.nodes:
            with open(os.path.join(node.data, "identity"), "rb") as f:
                out.append(f.read())
        return out

    def stop(self):
        for node in self.nodes:
            node.stop()


def push_spread(rt, dep, rows):
    """Pushes rows over CONNECTIONS connections spread round-robin over the
    deployment's nodes; returns the failures."""
    failures, lock, it = [], threading.Lock(), iter(rows)

    def worker(node):
        c = node.conn()
        while True:
            with lock:
                row = next(it, None)
            if row is None:
                break
            st, data = rt.push(node, c, row["name"], row["body"], row["time"])
            if st != 200:
                with lock:
                    failures.append((row["path"], st, data[:200]))
        c.close()

    ts = [threading.Thread(target=worker, args=(dep.nodes[k % len(dep.nodes)],))
          for k in range(CONNECTIONS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return failures


def ingest(rt, dep, rows):
    """Pushes every row; returns (cpu s per profile at the last ack, with the
    tail, wall s)."""
    cpu0, w0 = dep.cpu_seconds(), time.time()
    failures = push_spread(rt, dep, rows)
    wall = time.time() - w0
    cpu1 = dep.cpu_seconds()
    time.sleep(TAIL_S)
    cpu2 = dep.cpu_seconds()
    if failures:
        for f in failures[:5]:
            rt.log("push failed: %s -> %s %r" % f)
        raise RuntimeError("%s: %d of %d pushes failed" % (dep.name, len(failures), len(rows)))
    n = len(rows)
    rt.log("%s_ingest: %d profiles in %.2f s (%.0f/s); node CPU %.0f us per profile at the "
           "last ack, %.0f us with %.0f s after" % (dep.name, n, wall, n / wall,
                                                    (cpu1 - cpu0) / n * 1e6,
                                                    (cpu2 - cpu0) / n * 1e6, TAIL_S))
    return (cpu1 - cpu0) / n, (cpu2 - cpu0) / n, wall


def settle(rt, dep, seconds=30):
    """Waits until the nodes are idle (under 20 ms of CPU in 0.5 s: flushes and
    compactions done), so every deployment is queried in the same state."""
    t0, prev = time.time(), dep.cpu_seconds()
    while time.time() - t0 < seconds:
        time.sleep(0.5)
        cur = dep.cpu_seconds()
        if cur - prev < 0.02:
            break
        prev = cur
    rt.log("%s: idle after %.1f s" % (dep.name, time.time() - t0))


def render(node, c, query, frm, until, raw=False):
    """(wall s, the answer parsed, or its bytes with raw)."""
    path = "/pyroscope/render?" + urllib.parse.urlencode(
        {"query": query, "from": frm, "until": until, "format": "json"})
    t0 = time.time()
    st, body = node.get(path, c)
    dt = time.time() - t0
    if st != 200:
        raise RuntimeError("render %d from port %d: %r" % (st, node.port, body[:300]))
    return dt, body if raw else json.loads(body)


def same_bytes(first, dep, node, query, body):
    """The answer must be the same bytes as the first one to the query
    (first: query -> (digest, which node gave it))."""
    here = "%s, node port %d" % (dep.name, node.port)
    digest = hashlib.sha256(body).hexdigest()
    want, where = first.setdefault(query, (digest, here))
    if digest != want:
        raise RuntimeError("%s: %s answered other bytes (%d) than %s" % (here, query, len(body),
                                                                        where))


def check(dep, node, query, expect, fb):
    got = fb["flamebearer"]["numTicks"]
    if got != expect or fb.get("partial"):
        raise RuntimeError("%s, node port %d: %s numTicks %d (expected %d)%s" % (
            dep.name, node.port, query, got, expect, ", partial" if fb.get("partial") else ""))


def sched(dep):
    """(CPU seconds, times run) of every thread of every node (Node.sched)."""
    got = [node.sched() for node in dep.nodes]
    return sum(g[0] for g in got), sum(g[1] for g in got)


def timing_steps(header):
    """[(step, ms)] of a Server-Timing header ([] without one)."""
    out = []
    for part in (header or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out.append((name, float(dur)))
    return out


def steps_text(steps):
    """The median of each step of the renders' Server-Timing, in their order."""
    return ", ".join("%s %.3f" % (name, statistics.median(v)) for name, v in steps.items())


def time_queries(rt, deps, queries, frm, until, runs, threads=None, steps=None):
    """{(deployment, query name): (median, min) wall s, mean node CPU s}.
    Rounds interleave the deployments (each node of each asked once per
    round, 2 untimed rounds first), so load from elsewhere on the machine
    hits all of them alike. The CPU of a render is that of every node of its
    deployment from the request until the answer (utime + stime, clock ticks:
    only its mean over the rounds is meaningful). Every answer must be exact
    and complete, and the same bytes from every node of every deployment.
    threads, when a dict, gets per (deployment, query name) the mean node CPU
    from the threads' schedstat (nanoseconds, not ticks) and the mean number
    of times a thread of the deployment was put on a CPU, per render. steps,
    when a dict, gets per (deployment, query name) {step: [ms]} of the
    answers' Server-Timing (the asked node's steps: docs/api.md)."""
    conns = {(d.name, i): node.conn() for d in deps for i, node in enumerate(d.nodes)}
    times = {(d.name, q[0]): [] for d in deps for q in queries}
    cpu = {(d.name, q[0]): 0.0 for d in deps for q in queries}
    first = {}
    try:
        for k in range(runs + 2):
            for d in deps:
                for i, node in enumerate(d.nodes):
                    for qname, q, expect in queries:
                        s0 = sched(d) if threads is not None else None
                        c0 = d.cpu_seconds()
                        dt, body = render(node, conns[(d.name, i)], q, frm, until, raw=True)
                        c1 = d.cpu_seconds()
                        s1 = sched(d) if threads is not None else None
                        check(d, node, q, expect, json.loads(body))
                        same_bytes(first, d, node, q, body)
                        if k >= 2:
                            times[(d.name, qname)].append(dt)
                            cpu[(d.name, qname)] += c1 - c0
                            if steps is not None:
                                per = steps.setdefault((d.name, qname), {})
                                for name, ms in timing_steps(node.last_timing):
                                    per.setdefault(name, []).append(ms)
                            if threads is not None:
                                t = threads.setdefault((d.name, qname), [0.0, 0, 0])
                                t[0] += s1[0] - s0[0]
                                t[1] += s1[1] - s0[1]
                                t[2] += 1
    finally:
        for c in conns.values():
            c.close()
    if threads is not None:
        for key, t in threads.items():
            threads[key] = (t[0] / t[2], t[1] / t[2])
    return {key: (statistics.median(v), min(v), cpu[key] / len(v)) for key, v in times.items()}


def time_round_trip(deps, frm, until, runs):
    """{deployment: (median wall s, median Server-Timing total ms)} of a
    query with next to nothing to read or merge (the label values of
    service_name), every node of each deployment asked in turn, rounds
    interleaved, 2 untimed rounds first: what a scatter-gather costs on
    this machine besides its shares' and its merge's work (the hand-offs
    between threads and nodes, the messages)."""
    path = "/pyroscope/label-values?" + urllib.parse.urlencode(
        {"label": "service_name", "from": frm, "until": until})
    conns = {(d.name, i): node.conn() for d in deps for i, node in enumerate(d.nodes)}
    walls = {d.name: [] for d in deps}
    totals = {d.name: [] for d in deps}
    try:
        for k in range(runs + 2):
            for d in deps:
                for i, node in enumerate(d.nodes):
                    t0 = time.time()
                    st, body = node.get(path, conns[(d.name, i)])
                    dt = time.time() - t0
                    if st != 200:
                        raise RuntimeError("label values %d from port %d: %r" % (st, node.port,
                                                                                body[:300]))
                    if k < 2:
                        continue
                    walls[d.name].append(dt)
                    for name, ms in timing_steps(node.last_timing):
                        if name == "total":
                            totals[d.name].append(ms)
    finally:
        for c in conns.values():
            c.close()
    return {n: (statistics.median(walls[n]), statistics.median(totals[n]) if totals[n] else 0.0)
            for n in walls}


TAIL_RENDERS = 600  # whole-fleet renders through the RF 1 cluster for its tail
TAIL_SLOW_MS = 30   # a render over this waited for something (a held message: 40 ms)


def time_tail(dep, query, frm, until, renders):
    """Sorted wall times (s) of renders of query asked of dep's nodes in
    turn, back to back, each exact: what a user of a busy dashboard sees,
    its slowest ones included (a message held by the transport, a thread
    not woken, shows here and not in a median)."""
    qname, q, expect = query
    conns = [node.conn() for node in dep.nodes]
    walls = []
    try:
        for k in range(renders + 6):
            node = dep.nodes[k % len(dep.nodes)]
            dt, body = render(node, conns[k % len(dep.nodes)], q, frm, until, raw=True)
            check(dep, node, q, expect, json.loads(body))
            if k >= 6:
                walls.append(dt)
    finally:
        for c in conns:
            c.close()
    return sorted(walls)


HINT_ROWS = 40  # pushes measured while an rf3 node is down


def hint_size(rt, dep, rows):
    """Kills the last node of a deployment, pushes rows through the others
    and returns (hint bytes they hold for it, gzipped bytes pushed)."""
    dead = dep.nodes[-1]
    dead.proc.kill()
    dead.proc.wait()
    live = dep.nodes[:-1]
    deadline = time.time() + 30
    while time.time() < deadline:
        docs = [json.loads(n.get("/cluster/status")[1]) for n in live]
        if all(any(m["state"] == "down" for m in d["nodes"]) for d in docs):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("%s: the killed node was not seen down" % dep.name)
    gz, conns = 0, [n.conn() for n in live]
    for i, row in enumerate(rows):
        st, data = rt.push(live[i % len(live)], conns[i % len(live)], row["name"], row["body"],
                           row["time"])
        if st != 200:
            raise RuntimeError("push with a node down: %d %r" % (st, data[:200]))
        gz += len(row["body"])
    for c in conns:
        c.close()
    held = 0.0
    for n in live:
        for line in n.get("/metrics")[1].decode().splitlines():
            if line.startswith("flamedb_hints_pending_bytes"):
                held += float(line.split()[-1])
    rt.log("%s_hints: %d pushes with a node down left %.0f hint bytes for %d gzipped bytes" % (
        dep.name, len(rows), held, gz))
    return held, gz


def down_ingest(a, rt, node_bin, work, rows, name, extra):
    """3 nodes RF 3, the last one killed and seen down: every push through
    the two others names it (missed_by) to the replica that acknowledges it.
    With hinted handoff off (rf3m: --hints-max-bytes 0) both mark it; with
    hinted handoff on (rf3h, the defaults) the coordinator keeps a hint and
    the replica holds it unread until the coordinator's word arrives.
    Returns ingest()'s figures over the two live nodes."""
    dep = Deployment(rt, node_bin, work, 3, 3, a.memory_limit, name, extra=extra)
    try:
        dead = dep.nodes[-1]
        dead.proc.kill()
        dead.proc.wait()
        dep.nodes = dep.nodes[:-1]
        deadline = time.time() + 30
        while time.time() < deadline:
            docs = [json.loads(n.get("/cluster/status")[1]) for n in dep.nodes]
            if all(any(m["state"] == "down" for m in d["nodes"]) for d in docs):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("%s: the killed node was not seen down" % name)
        return ingest(rt, dep, rows)
    finally:
        dep.stop()


def services_of(rows):
    """The fleet's services, the first profile's first (the one service the
    step rendered alone before 2026-12-08), the others in name order."""
    first = rows[0]["name"].split("{")[0]
    rest = sorted({r["name"].split("{")[0] for r in rows} - {first})
    return [first] + rest


def bench_cluster(a, rt, node_bin, work):
    rows = rt.read_index(os.path.join(work, "cpu", "index.tsv"))
    lo = min(r["time"] for r in rows) // 10 * 10
    hi = (max(r["time"] for r in rows) // 10 + 1) * 10
    cpu_i = rows[0]["types"].index("cpu/nanoseconds")
    queries = [("whole fleet, %d profiles" % len(rows), CPU + "{}",
                sum(r["totals"][cpu_i] for r in rows))]
    for svc in services_of(rows):
        svc_rows = [r for r in rows if r["name"].startswith(svc + "{")]
        queries.append(("service %s, %d profiles" % (svc, len(svc_rows)),
                        CPU + '{service_name="%s"}' % svc,
                        sum(r["totals"][cpu_i] for r in svc_rows)))
    deps, ing = [], {}
    try:
        for name, n, rf in (("single", 1, 1), ("rf3", 3, 3), ("rf1", 3, 1)):
            rt.log("\n- %s: %d node(s), rf %d" % (name, n, rf))
            deps.append(Deployment(rt, node_bin, work, n, rf, a.memory_limit, name))
            ing[name] = ingest(rt, deps[-1], rows)
            settle(rt, deps[-1])
        rt.log("\n- queries, %d interleaved rounds" % a.query_runs)
        threads, steps = {}, {}
        med = time_queries(rt, deps, queries, lo, hi, a.query_runs, threads, steps)
        trip = time_round_trip([deps[0], deps[2]], lo, hi, 4 * a.query_runs)
        tail = time_tail(deps[2], queries[0], lo, hi, TAIL_RENDERS)
        for d in deps:
            rt.log("%s_rss_mib: %s (VmRSS of each node after ingest and queries)" % (
                d.name, ", ".join("%.0f" % (node.rss_kib() / 1024) for node in d.nodes)))
        hints = hint_size(rt, deps[1], rows[:HINT_ROWS])
    finally:
        for d in deps:
            d.stop()
    rt.log("\n- rf3m: 3 nodes, rf 3, hinted handoff off, one node down")
    marked = down_ingest(a, rt, node_bin, work, rows, "rf3m", ["--hints-max-bytes", "0"])
    rt.log("\n- rf3h: 3 nodes, rf 3, hinted handoff on, one node down")
    hinted = down_ingest(a, rt, node_bin, work, rows, "rf3h", [])
    for (name, qname), (m, lo_t, c) in sorted(med.items()):
        sc, runs = threads[(name, qname)]
        rt.log("%s_query: %s: median %.2f ms, min %.2f ms, node CPU %.2f ms per render (schedstat "
               "%.2f ms, threads run %.1f times), numTicks exact, the same bytes from every node"
               % (name, qname, m * 1e3, lo_t * 1e3, c * 1e3, sc * 1e3, runs))
        rt.log("%s_query_steps: %s: %s (ms, medians of the asked node's Server-Timing)"
               % (name, qname, steps_text(steps[(name, qname)])))
    report(rt, ing, med, queries, len(rows), threads)
    (w1, t1), (ws, ts) = trip["rf1"], trip["single"]
    rt.log("round_trip: label values: 3 nodes RF 1 median %.3f ms (Server-Timing total %.3f), "
           "one node %.3f ms (%.3f)" % (w1 * 1e3, t1, ws * 1e3, ts))
    rt.RESULTS.append((
        "cluster round trip: a query with next to nothing to merge (label values), 3 nodes RF 1 "
        "less one node, ms", "%.2f" % ((w1 - ws) * 1e3), "-",
        "median %.3f vs %.3f ms: the hand-offs and messages a scatter-gather adds on this machine "
        "to every query, whatever it reads (the wall ratios above include them)"
        % (w1 * 1e3, ws * 1e3)))
    med_t, p99, slowest = tail[len(tail) // 2], tail[len(tail) * 99 // 100], tail[-1]
    slow = sum(1 for t in tail if t * 1e3 > TAIL_SLOW_MS)
    rt.log("tail: %s, 3 nodes RF 1, %d renders: median %.2f ms, p99 %.2f ms, slowest %.2f ms, "
           "%d over %d ms" % (queries[0][0], len(tail), med_t * 1e3, p99 * 1e3, slowest * 1e3,
                              slow, TAIL_SLOW_MS))
    rt.RESULTS.append((
        "cluster render tail (%s), 3 nodes RF 1: slowest / median of %d renders back to back"
        % (queries[0][0], len(tail)), "%.1f" % (slowest / med_t), "-",
        "median %.2f ms, p99 %.2f ms, slowest %.2f ms; %d over %d ms (a message held for the "
        "receiver's delayed acknowledgement took 40 ms more before the cluster's connections "
        "sent without Nagle's delay)" % (med_t * 1e3, p99 * 1e3, slowest * 1e3, slow,
                                        TAIL_SLOW_MS)))
    rt.RESULTS.append((
        "cluster ingest, one node down and hinted handoff off: node CPU per profile, 3 nodes RF 3 "
        "(2 up) / all up", "%.2f" % (marked[1] / ing["rf3"][1]), "-",
        "%.0f us vs %.0f us per profile (until 2 s after the last ack), %.0f vs %.0f profiles/s: "
        "every push marks the down node on its coordinator and on the replica that "
        "acknowledged it" % (marked[1] * 1e6, ing["rf3"][1] * 1e6, len(rows) / marked[2],
                             len(rows) / ing["rf3"][2])))
    rt.RESULTS.append((
        "cluster ingest, one node down and hinted handoff on: node CPU per profile, 3 nodes RF 3 "
        "(2 up) / all up", "%.2f" % (hinted[1] / ing["rf3"][1]), "-",
        "%.0f us vs %.0f us per profile (until 2 s after the last ack), %.0f vs %.0f profiles/s: "
        "every push stores a hint on its coordinator, and the replica that acknowledged it "
        "holds the down node unread until the coordinator's word arrives"
        % (hinted[1] * 1e6, ing["rf3"][1] * 1e6, len(rows) / hinted[2],
           len(rows) / ing["rf3"][2])))
    pair_rows(rt, node_bin, work, svc)
    rt.RESULTS.append((
        "hinted handoff: hint bytes held for a down node / gzipped bytes pushed (3 nodes RF 3)",
        "%.2f" % (hints[0] / hints[1]), "-",
        "%d pushes of the fleet while one node was down: %.0f hint bytes for %d gzipped bytes "
        "(zstd-compressed WriteRequests); sizes --hints-max-bytes" % (HINT_ROWS, hints[0],
                                                                      hints[1])))


def pair_rows(rt, node_bin, work, svc):
    """The coordinator's side of a render in process (flamedb-bench query
    --pair-only): its local share, the gather over a shipped share's forests and
    the answer, against one node's render of every token; steadier than the
    clusters' wall times, and without the hops."""
    tool = os.path.join(os.path.dirname(node_bin), "flamedb-bench")
    for label, service in (("one service", svc), ("whole fleet", "")):
        out = rt.run_tool([tool, "query", "--index", os.path.join(work, "cpu", "index.tsv"),
                           "--service", service, "--type", CPU, "--type-unit",
                           "cpu/nanoseconds", "--pair-only", "1"])
        pair_row(rt, out, "query_forests_pair_ms",
                 r"([0-9.]+) over two halves of the ring \((\d+) local forest nodes, "
                 r"(\d+) shipped in \d+ forests\), ([0-9.]+) over one node's",
                 "coordinator's render in process (%s)" % label,
                 "its local share (%s forest nodes), a shipped share's forests (%s nodes, "
                 "encoding 5) and the JSON, against one node rendering every token")
        pair_row(rt, out, "query_ids_pair_ms",
                 r"([0-9.]+) over two halves of the ring by id \((\d+) ids, (\d+) bytes of "
                 r"structure sent once\), ([0-9.]+) over one node's",
                 "coordinator's render in process by id (%s)" % label,
                 "its local share's union added by id, a share's answer by id (%s ids, its %s "
                 "bytes of structure sent once, before the timed rounds), one forest cut, the "
                 "JSON")


def pair_row(rt, out, key, pattern, title, what):
    """A --pair-only figure (key: the pair's ms, two counts, one node's ms)
    as a row of RESULTS; its answers must have been the same bytes."""
    text = out.get(key, "")
    m = re.match(pattern, text)
    if m is None or "the same bytes" not in text:
        raise RuntimeError("%s: %r" % (key, text))
    pair, one = float(m.group(1)), float(m.group(4))
    rt.RESULTS.append((
        title + ": CPU over two halves of the ring / one node's", "%.2f" % (pair / one), "-",
        "%.2f vs %.2f ms (medians of 7, alternated): %s; the same bytes"
        % (pair, one, what % (m.group(2), m.group(3)))))


def report(rt, ing, med, queries, nrows, threads):
    s, r3, r1 = ing["single"], ing["rf3"], ing["rf1"]
    rt.RESULTS.append((
        "cluster ingest: total node CPU per profile, 3 nodes RF 3 (W 2) / one node",
        "%.2f" % (r3[1] / s[1]), "<= 3.5",
        "%.0f us vs %.0f us per profile (until %.0f s after the last ack; at the last ack "
        "%.2fx); %d profiles over HTTP, %d connections, %.0f vs %.0f profiles/s" % (
            r3[1] * 1e6, s[1] * 1e6, TAIL_S, r3[0] / s[0], nrows, CONNECTIONS, nrows / r3[2],
            nrows / s[2])))
    rt.RESULTS.append((
        "cluster ingest: total node CPU per profile, 3 nodes RF 1 / one node",
        "%.2f" % (r1[1] / s[1]), "-",
        "%.0f us vs %.0f us: forwarding to the owner without replicas" % (r1[1] * 1e6,
                                                                          s[1] * 1e6)))
    whole, services = queries[:1], queries[1:]
    for qname, _, _ in whole:
        (_, _, c), (_, _, sc) = med[("rf1", qname)], med[("single", qname)]
        (t, runs), (st, sruns) = threads[("rf1", qname)], threads[("single", qname)]
        rt.RESULTS.append((
            "cluster query (%s): node CPU per render, 3 nodes RF 1 / one node" % qname,
            "%.2f" % (t / st) if st > 0 else "-", "<= 1.3",
            "%.2f ms vs %.2f ms: every thread of every node of the deployment from the request "
            "to the answer (schedstat, mean over the timed rounds; in clock ticks %.2f vs %.2f "
            "ms), threads put on a CPU %.1f vs %.1f times a render" % (
                t * 1e3, st * 1e3, c * 1e3, sc * 1e3, runs, sruns)))
        for name, label in (("rf1", "3 nodes RF 1 (every query scatters)"),
                            ("rf3", "3 nodes RF 3 (each node holds every range)")):
            (m, lo_t, _), (sm, slo, _) = med[(name, qname)], med[("single", qname)]
            rt.RESULTS.append((
                "cluster query (%s): render wall time, %s / one node" % (qname, label),
                "%.2f" % (m / sm), "<= 1.3",
                "median %.2f ms vs %.2f ms (fastest %.2f vs %.2f ms: %.2fx), every node asked "
                "in turn, numTicks exact" % (m * 1e3, sm * 1e3, lo_t * 1e3, slo * 1e3,
                                             lo_t / slo)))
    report_services(rt, med, threads, services)


def service_name(qname):
    return qname.split(",")[0][len("service "):]


def report_services(rt, med, threads, services):
    """A one-service render's ratios: the median over the fleet's services
    of each one's ratio (each service's four shards fall on the nodes of
    the run's new ring in their own way: one service alone moved the
    figure by more than a change does), every service's listed."""
    what = "one service, the median of the fleet's %d" % len(services)
    cpu = []
    for qname, _, _ in services:
        (t, _), (st, _) = threads[("rf1", qname)], threads[("single", qname)]
        cpu.append((t / st if st > 0 else 0.0, "%s %.2f (%.2f vs %.2f ms)" % (
            service_name(qname), t / st if st > 0 else 0.0, t * 1e3, st * 1e3)))
    rt.RESULTS.append((
        "cluster query (%s): node CPU per render, 3 nodes RF 1 / one node" % what,
        "%.2f" % statistics.median(r for r, _ in cpu), "<= 1.3",
        "%s: every thread of every node of the deployment from the request to the answer "
        "(schedstat, mean over the timed rounds)" % ", ".join(t for _, t in cpu)))
    for name, label in (("rf1", "3 nodes RF 1 (every query scatters)"),
                        ("rf3", "3 nodes RF 3 (each node holds every range)")):
        wall = []
        for qname, _, _ in services:
            (m, _, _), (sm, _, _) = med[(name, qname)], med[("single", qname)]
            wall.append((m / sm, "%s %.2fx (%.2f vs %.2f ms)" % (service_name(qname), m / sm,
                                                                 m * 1e3, sm * 1e3)))
        rt.RESULTS.append((
            "cluster query (%s): render wall time, %s / one node" % (what, label),
            "%.2f" % statistics.median(r for r, _ in wall), "<= 1.3",
            "%s (medians, every node asked in turn, numTicks exact; the first is the one "
            "service rendered alone before 2026-12-08)" % ", ".join(t for _, t in wall)))
