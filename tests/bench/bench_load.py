"""bench_load.py — the load step of tests/bench/run.py (issue #9): a 3-node
cluster under many concurrent pushing clients and queries, for a minute (ten
with --soak).

A 3-node cluster (RF 3, signed messages, a per-tenant ingest rate of
RATE_BYTES/s per node) takes pushes from WRITERS keep-alive connections spread
over its nodes, each pushing generated CPU profiles of 4 services (tenant
`fleet`, each connection paced to WRITER_HZ pushes a second, every push a
distinct 10 s window of its pod: a distinct profile id), while GREEDY
connections of tenant `greedy` push large folded bodies to one node as fast
as it answers (over its rate: deliberate 429s) and QUERIERS connections
render random services over 1 h / 6 h / 24 h and ask /api/top and /api/diff.
Every second the RSS of every node is read from /proc.

The step fails (the figures would mean nothing) when a node dies, when the
resident memory of any node reaches --memory-limit, when any
answer to `fleet` or a query is not 200, when `greedy` gets anything but 200
or 429 with Retry-After (or no 429 at all), or when, after the load, a
service's flame graph from any node differs from the exact sum of the pushes
that were acknowledged (for both tenants). Figures: pushes/s, 429s, query
p50/p99, and the largest RSS of any node against --memory-limit.
"""
import http.client
import json
import os
import random
import threading
import time
import urllib.parse

import bench_cluster

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
WRITERS = 12
WRITER_HZ = 2
GREEDY = 2
QUERIERS = 3
RATE_BYTES = 1 << 20   # per tenant, per node
BURST_BYTES = 4 << 20
GREEDY_LINES = 20000   # about 0.6 MB of folded text per greedy push


def push(c, name, body, t, tenant, fmt):
    """One push as `tenant`; returns (status, body, Retry-After)."""
    q = urllib.parse.urlencode({"name": name, "from": t, "until": t + 10, "format": fmt})
    c.request("POST", "/ingest?" + q, body=body,
              headers={"Content-Type": "application/octet-stream", "X-Scope-OrgID": tenant})
    r = c.getresponse()
    return r.status, r.read(), r.getheader("Retry-After")


def service_of(name):
    return name.split("{", 1)[0].split(".", 1)[0]


def cpu_total(row):
    for t, v in zip(row["types"], row["totals"]):
        if t.startswith("cpu/"):
            return v
    raise RuntimeError("no cpu type in %s" % row["path"])


class Load:
    def __init__(self, rt, dep, pool, seconds):
        self.rt, self.dep, self.pool, self.seconds = rt, dep, pool, seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # service -> exact CPU total acknowledged
        self.status = {}  # (kind, status) -> count
        self.errors = []
        self.qtimes = []
        self.pushes = 0
        self.greedy_acked = 0  # exact CPU ns of greedy's acknowledged pushes
        self.greedy_status = {}
        self.retry_after_missing = 0
        self.now = int(time.time()) // 10 * 10
        self.per_pod = len({r["time"] for r in pool})
        self.t_first = min(r["time"] for r in pool)

    def count(self, kind, st, data):
        with self.lock:
            self.status[(kind, st)] = self.status.get((kind, st), 0) + 1
            if st != 200 and len(self.errors) < 8:
                self.errors.append((kind, st, data[:200]))

    def writer(self, k):
        node = self.dep.nodes[k % len(self.dep.nodes)]
        c = node.conn()
        i = k
        cycles = 23 * 360 // self.per_pod  # stay within the last 23 hours
        while not self.stop.is_set():
            row = self.pool[i % len(self.pool)]
            t = (self.now - 10 * self.per_pod * ((i // len(self.pool)) % cycles)
                 - (row["time"] - self.t_first))
            t_start = time.time()
            try:
                st, data, _ = push(c, row["name"], row["body"], t, "fleet", "pprof")
            except (OSError, http.client.HTTPException) as e:
                st, data = 0, str(e).encode()
                c.close()
                c = node.conn()
            self.count("push", st, data)
            if st == 200:
                with self.lock:
                    svc = service_of(row["name"])
                    self.acked[svc] = self.acked.get(svc, 0) + cpu_total(row)
                    self.pushes += 1
            i += WRITERS
            self.stop.wait(max(0.0, 1.0 / WRITER_HZ - (time.time() - t_start)))
        c.close()

    def greedy(self, k):
        node = self.dep.nodes[0]
        c = node.conn()
        i = 0
        while not self.stop.is_set():
            # distinct stacks per push: distinct content, so distinct profile ids
            body = "".join("main;greedy%d;f%d %d\n" % (k, (i * GREEDY_LINES + j) % 997, 1 + j % 3)
                           for j in range(GREEDY_LINES)).encode()
            t = self.now - 10 * (k * 100000 + i) % (23 * 3600)
            try:
                st, data, retry = push(c, "greedy.cpu", body, t - t % 10, "greedy", "folded")
            except (OSError, http.client.HTTPException) as e:
                st, data, retry = 0, str(e).encode(), None
                c.close()
                c = node.conn()
            with self.lock:
                self.greedy_status[st] = self.greedy_status.get(st, 0) + 1
                if st == 200:
                    self.greedy_acked += sum(1 + j % 3 for j in range(GREEDY_LINES)) * 10**7
                elif st == 429 and not retry:
                    self.retry_after_missing += 1
                elif st != 429 and len(self.errors) < 8:
                    self.errors.append(("greedy push", st, data[:200]))
            i += 1
        c.close()

    def querier(self, k):
        node = self.dep.nodes[k % len(self.dep.nodes)]
        c = node.conn()
        rnd = random.Random(k)
        services = sorted({service_of(r["name"]) for r in self.pool})
        while not self.stop.is_set():
            svc = rnd.choice(services)
            q = '%s{service_name="%s"}' % (CPU, svc)
            rng = rnd.choice(["now-1h", "now-6h", "now-24h"])
            kind = rnd.choice(["render", "render", "top", "diff"])
            if kind == "render":
                path = "/pyroscope/render?" + urllib.parse.urlencode(
                    {"query": q, "from": rng, "until": "now"})
            elif kind == "top":
                path = "/api/top?" + urllib.parse.urlencode(
                    {"query": q, "from": rng, "until": "now", "limit": 20})
            else:
                path = "/api/diff?" + urllib.parse.urlencode(
                    {"leftQuery": q, "leftFrom": "now-24h", "leftUntil": "now-12h",
                     "rightQuery": q, "rightFrom": "now-12h", "rightUntil": "now"})
            t0 = time.time()
            try:
                c.request("GET", path, headers={"X-Scope-OrgID": "fleet"})
                r = c.getresponse()
                st, data = r.status, r.read()
            except (OSError, http.client.HTTPException) as e:
                st, data = 0, str(e).encode()
                c.close()
                c = node.conn()
            with self.lock:
                self.qtimes.append(time.time() - t0)
            self.count(kind, st, data)
        c.close()

    def run(self):
        threads = [threading.Thread(target=self.writer, args=(k,)) for k in range(WRITERS)]
        threads += [threading.Thread(target=self.querier, args=(k,)) for k in range(QUERIERS)]
        threads += [threading.Thread(target=self.greedy, args=(k,)) for k in range(GREEDY)]
        rss = {i: [] for i in range(len(self.dep.nodes))}
        t0 = time.time()
        try:
            for t in threads:
                t.start()
            while time.time() - t0 < self.seconds:
                for i, node in enumerate(self.dep.nodes):
                    if node.proc.poll() is not None:
                        raise RuntimeError("node %d died under load (log %s)" % (i, node.log.name))
                    rss[i].append(node.rss_kib())
                time.sleep(1)
        finally:
            self.stop.set()
            for t in threads:
                t.join()
        return rss, time.time() - t0


def check_exact(dep, acked, tenant):
    """Every node answers every service's acknowledged total exactly."""
    for svc, want in sorted(acked.items()):
        q = '%s{service_name="%s"}' % (CPU, svc)
        path = "/pyroscope/render?" + urllib.parse.urlencode(
            {"query": q, "from": "now-24h", "until": str(int(time.time()) + 60)})
        for node in dep.nodes:
            c = node.conn()
            try:
                c.request("GET", path, headers={"X-Scope-OrgID": tenant})
                r = c.getresponse()
                body = r.read()
            finally:
                c.close()
            if r.status != 200:
                raise RuntimeError("render %d from port %d: %r" % (r.status, node.port, body[:300]))
            bench_cluster.check(dep, node, q, want, json.loads(body))


def bench_load(a, rt, node_bin, work):
    seconds = 600 if a.soak else 60
    pool_dir = os.path.join(work, "loadpool")
    rt.run_tool([os.path.join(a.build_dir, "bin", "flamedb-bench"), "gen", "--kind", "cpu",
                 "--no-time", "--services", "4", "--pods", "6", "--profiles", "3", "--seed", "11",
                 "--out", pool_dir])
    pool = rt.read_index(os.path.join(pool_dir, "index.tsv"))
    secret = os.path.join(work, "cluster.secret")
    with open(secret, "w") as f:
        f.write("a bench cluster secret of some length\n")
    os.chmod(secret, 0o600)
    dep = bench_cluster.Deployment(rt, node_bin, work, 3, 3, a.memory_limit, "load",
                                   extra=["--cluster-secret-file", secret, "--max-past", "2d",
                                          "--tenant-ingest-rate", str(RATE_BYTES),
                                          "--tenant-ingest-burst", str(BURST_BYTES)])
    try:
        load = Load(rt, dep, pool, seconds)
        rss, wall = load.run()
        bench_cluster.settle(rt, dep)
        check_exact(dep, load.acked, "fleet")
        check_exact(dep, {"greedy": load.greedy_acked}, "greedy")
    finally:
        dep.stop()
    bad = {k: v for k, v in load.status.items() if k[1] != 200}
    g = load.greedy_status
    if set(g) - {200, 429}:
        bad[("greedy", "not 200/429")] = {k: v for k, v in g.items() if k not in (200, 429)}
    if not g.get(429) or load.retry_after_missing:
        bad[("greedy", "429s with Retry-After")] = (g.get(429, 0), load.retry_after_missing)
    for e in load.errors:
        rt.log("load: %s answered %s: %r" % e)
    qt = sorted(load.qtimes) or [0]
    peak = max(max(v) for v in rss.values()) / 1024
    if peak * 1024 * 1024 >= rt.parse_size(a.memory_limit):
        bad[("rss", "over --memory-limit")] = "%.0f MiB >= %s" % (peak, a.memory_limit)
    rt.log("load_greedy: %s" % ", ".join("%s: %d" % kv for kv in sorted(g.items())))
    rt.log("load_seconds: %.0f\nload_pushes: %d (%.0f/s)\nload_queries: %d, p50 %.0f ms, "
           "p99 %.0f ms\nload_status: %s\nload_rss_max_mib: %s" % (
               wall, load.pushes, load.pushes / wall, len(load.qtimes), qt[len(qt) // 2] * 1e3,
               qt[int(len(qt) * 0.99)] * 1e3,
               ", ".join("%s %s: %d" % (k[0], k[1], v) for k, v in sorted(load.status.items())),
               ", ".join("%.0f" % (max(v) / 1024) for v in rss.values())))
    rt.RESULTS.append((
        "3 nodes RF 3 under %d pushing + %d greedy + %d querying connections, %.0f s" % (
            WRITERS, GREEDY, QUERIERS, wall),
        "max RSS %.0f MiB" % peak, "< %s; no errors" % a.memory_limit,
        "%d pushes (%.0f/s), %d queries (p50 %.0f ms, p99 %.0f ms); answers exact after; "
        "greedy tenant: %d accepted, %d deliberate 429s; other non-200: %s" % (
            load.pushes, load.pushes / wall, len(load.qtimes), qt[len(qt) // 2] * 1e3,
            qt[int(len(qt) * 0.99)] * 1e3, g.get(200, 0), g.get(429, 0), bad or "none")))
    if bad:
        raise RuntimeError("answers other than 200, or RSS over the limit, under load: %r" % bad)
