"""bench_move.py — the move step of tests/bench/run.py (issue #10): a node
joins a cluster that keeps taking pushes.

A 3-node cluster (RF 2, gossip every 100 ms, write timeout 1 s, so the join
settle margin is 10 x 100 ms + 1 s = 2 s) is preloaded over HTTP with the
`ingest` step's generated CPU fleet. One pusher then pushes profiles of a
second generated pool, paced to PUSH_HZ a second over one keep-alive
connection per old node in turn (every push a distinct 10 s window of its
pod: a distinct profile id), for BASE_S seconds with no move, and goes on
while a 4th node starts with the same --join list and joins: it streams the
ranges it gains from their replicas and turns active. Then, under a second
pusher like the first, that node is decommissioned (POST
/cluster/decommission) until every other node sees it left and it exited 0.

Figures, all of this run:
  1. the join's streaming rate: the bytes the new node fetched
     (flamedb_repair_bytes_streamed_total of its /metrics) over the time from
     its start until it is active on every node (settle margin included),
     and over the time until its last streamed byte (sampled every
     SAMPLE_S);
  2. push latency (request to answer, acknowledged pushes) p50 and p99 while
     the node joined ÷ the same pusher's in the BASE_S seconds before it;
  3. the same for the decommission: the bytes the three that stay streamed
     over the request to left, and the push latency ratios;
  4. after each move every node (the new one included after the join, the
     three that stay after the decommission) answers every service's flame
     graph with exactly the preloaded plus the acknowledged totals
     (numTicks, not partial); anything else fails the step.

A push answered other than 200 during the move (503: a replica did not
answer within the write timeout) is counted and pushed again after the move
until acknowledged: the same profile id counts once.
"""
import http.client
import json
import os
import threading
import time

import bench_cluster

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
RF = 2
CLUSTER_ARGS = ["--gossip-interval", "100ms", "--failure-timeout", "2s", "--write-timeout", "1s",
                "--max-past", "2d"]
PUSH_HZ = 20
BASE_S = 10.0  # the pusher's latency with no move, before the join
SAMPLE_S = 0.1
JOIN_TIMEOUT_S = 300
EXACT_TIMEOUT_S = 60


def cpu_total(row):
    return row["totals"][row["types"].index("cpu/nanoseconds")]


def service_of(name):
    return name.split("{", 1)[0]


def metric(node, name):
    st, body = node.get("/metrics")
    if st != 200:
        raise RuntimeError("/metrics of port %d: %d" % (node.port, st))
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def state_of(node, node_id):
    st, body = node.get("/cluster/status")
    if st != 200:
        return None
    for m in json.loads(body)["nodes"]:
        if m["id"] == node_id:
            return m["state"]
    return None


def quantiles(v):
    v = sorted(v)
    if not v:
        raise RuntimeError("no acknowledged push to measure")
    return v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.99))], len(v)


class Pusher:
    """Pushes pool rows, paced, through the nodes of `targets` in turn;
    records (start time, latency) of each acknowledged push."""

    def __init__(self, rt, targets, pool, t_top=None):
        self.rt, self.targets, self.pool = rt, targets, pool
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # service -> exact CPU total acknowledged
        self.lat = []  # (monotonic start, seconds)
        self.failed = []  # (row, t) answered other than 200
        self.status = {}
        self.per_pod = len({r["time"] for r in pool})
        self.t_first = min(r["time"] for r in pool)
        # distinct windows going back from an hour ago (the preload is newer)
        self.t_top = t_top or (int(time.time()) - 3600) // 10 * 10
        self.lowest = self.t_top

    def when(self, i):
        row = self.pool[i % len(self.pool)]
        return row, (self.t_top - 10 * self.per_pod * (i // len(self.pool)) -
                     (row["time"] - self.t_first))

    def run(self):
        conns = [n.conn() for n in self.targets]
        i = 0
        while not self.stop.is_set():
            row, t = self.when(i)
            k = i % len(self.targets)
            t0 = time.monotonic()
            try:
                st, data = self.rt.push(self.targets[k], conns[k], row["name"], row["body"], t)
            except (OSError, http.client.HTTPException) as e:
                st, data = 0, str(e).encode()
                conns[k].close()
                conns[k] = self.targets[k].conn()
            dt = time.monotonic() - t0
            with self.lock:
                self.status[st] = self.status.get(st, 0) + 1
                self.lowest = min(self.lowest, t)
                if st == 200:
                    self.lat.append((t0, dt))
                    svc = service_of(row["name"])
                    self.acked[svc] = self.acked.get(svc, 0) + cpu_total(row)
                else:
                    self.failed.append((row, t))
            i += 1
            self.stop.wait(max(0.0, 1.0 / PUSH_HZ - dt))
        for c in conns:
            c.close()

    def retry_failed(self, nodes, seconds=60):
        """Pushes every refused profile again until acknowledged."""
        deadline = time.time() + seconds
        left = list(self.failed)
        while left and time.time() < deadline:
            row, t = left[0]
            node = nodes[len(left) % len(nodes)]
            c = node.conn()
            try:
                st, data = self.rt.push(node, c, row["name"], row["body"], t)
            finally:
                c.close()
            if st == 200:
                svc = service_of(row["name"])
                self.acked[svc] = self.acked.get(svc, 0) + cpu_total(row)
                left.pop(0)
            else:
                time.sleep(0.5)
        if left:
            raise RuntimeError("%d refused pushes still refused after %d s" % (len(left), seconds))

    def between(self, a, b):
        with self.lock:
            return [dt for t0, dt in self.lat if a <= t0 < b]


def check_exact(dep_nodes, want, frm, until, timeout=EXACT_TIMEOUT_S):
    """Waits until every node answers every service's total exactly, not
    partial; returns the seconds waited."""
    t0, last = time.time(), None
    while True:
        bad = None
        for node in dep_nodes:
            c = node.conn()
            try:
                for svc, w in sorted(want.items()):
                    _, fb = bench_cluster.render(node, c, '%s{service_name="%s"}' % (CPU, svc),
                                                 frm, until)
                    got = fb["flamebearer"]["numTicks"]
                    if got != w or fb.get("partial"):
                        bad = "port %d, %s: numTicks %d, expected %d%s" % (
                            node.port, svc, got, w, " (partial)" if fb.get("partial") else "")
                        break
            finally:
                c.close()
            if bad:
                break
        if bad is None:
            return time.time() - t0
        last = bad
        if time.time() - t0 > timeout:
            raise RuntimeError("not exact after %d s: %s" % (timeout, last))
        time.sleep(0.5)


def dir_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


def arg_of(node, flag):
    args = node.proc.args
    return args[args.index(flag) + 1]


def add_node(rt, binary, work, dep, memory_limit):
    """Starts a 4th node with the deployment's --join list; returns it
    (ready: every member knows it) and its id."""
    seeds = arg_of(dep.nodes[0], "--join")
    port = rt.free_port()
    while ("127.0.0.1:%d" % port) in seeds:
        port = rt.free_port()
    node_id = "%s-%d" % (dep.name, len(dep.nodes))
    extra = ["--node-id", node_id, "--cluster-listen", "tcp://127.0.0.1:%d" % port, "--join",
             seeds, "--cluster-name", "bench-" + dep.name, "--replication-factor", str(RF)]
    node = rt.Node(binary, work, memory_limit, extra + CLUSTER_ARGS, wait=False)
    return node, node_id


def watch_join(rt, dep, node, node_id, t_start):
    """Samples the new node's streamed bytes every SAMPLE_S until it is
    active on every node; returns (seconds to active, bytes, seconds to
    its last streamed byte, series)."""
    last_bytes, t_last, marks = 0.0, t_start, []
    while True:
        now = time.monotonic()
        if now - t_start > JOIN_TIMEOUT_S:
            raise RuntimeError("the new node was not active after %d s" % JOIN_TIMEOUT_S)
        if node.proc.poll() is not None:
            raise RuntimeError("the new node exited %d (log %s)" % (node.proc.returncode,
                                                                   node.log.name))
        try:
            b = metric(node, "flamedb_repair_bytes_streamed_total")
            states = [state_of(n, node_id) for n in dep.nodes + [node]]
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(SAMPLE_S)
            continue
        if b > last_bytes:
            last_bytes, t_last = b, now
        if not marks or now - marks[-1][0] >= 1.0:
            marks.append((now, b))
        if all(s == "active" for s in states):
            series = metric(node, "flamedb_repair_series_streamed_total")
            windows = metric(node, "flamedb_repair_windows_streamed_total")
            rt.log("move_stream_trajectory_mb: " + ", ".join(
                "%.0fs %.1f" % (t - t_start, v / 1e6) for t, v in marks + [(now, b)]))
            return now - t_start, last_bytes, t_last - t_start, series, windows
        time.sleep(SAMPLE_S)


def decommission(rt, dep, node, node_id):
    """Asks the node to leave; waits until every other node sees it left
    and it exited 0. Returns (seconds, bytes the others streamed)."""
    before = sum(metric(n, "flamedb_repair_bytes_streamed_total") for n in dep.nodes)
    t0 = time.monotonic()
    c = node.conn()
    try:
        c.request("POST", "/cluster/decommission?node=" + node_id)
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    if r.status != 200:
        raise RuntimeError("decommission: %d %r" % (r.status, body[:300]))
    while True:
        if time.monotonic() - t0 > JOIN_TIMEOUT_S:
            raise RuntimeError("%s not left after %d s" % (node_id, JOIN_TIMEOUT_S))
        if all(state_of(n, node_id) == "left" for n in dep.nodes):
            break
        time.sleep(SAMPLE_S)
    took = time.monotonic() - t0
    rc = node.proc.wait(timeout=60)
    if rc != 0:
        raise RuntimeError("%s exited %d after it left (log %s)" % (node_id, rc, node.log.name))
    after = sum(metric(n, "flamedb_repair_bytes_streamed_total") for n in dep.nodes)
    return took, after - before


def run_pusher(rt, targets, pool, t_top=None):
    p = Pusher(rt, targets, pool, t_top)
    th = threading.Thread(target=p.run)
    th.start()
    return p, th


def finish_pusher(p, th, nodes, want):
    """Stops the pusher, pushes its refused profiles again and adds what it
    pushed to want; returns how many were refused."""
    p.stop.set()
    th.join(60)
    refused = len(p.failed)
    p.retry_failed(nodes)
    for svc, v in p.acked.items():
        want[svc] = want.get(svc, 0) + v
    return refused


def bench_move(a, rt, node_bin, work):
    rows = rt.read_index(os.path.join(work, "cpu", "index.tsv"))
    pool_dir = os.path.join(work, "move-pool")
    if not os.path.isdir(pool_dir):
        rt.run_tool([os.path.join(a.build_dir, "bin", "flamedb-bench"), "gen", "--kind", "cpu",
                     "--no-time", "--services", "2", "--pods", "4", "--profiles", "4", "--seed",
                     "11", "--out", pool_dir])
    pool = rt.read_index(os.path.join(pool_dir, "index.tsv"))
    want = {}
    for r in rows:
        want[service_of(r["name"])] = want.get(service_of(r["name"]), 0) + cpu_total(r)
    gz = sum(len(r["body"]) for r in rows) / 1e6
    rt.log("- 3 nodes, rf %d, preloaded with %d profiles (%.1f MB gzipped)" % (RF, len(rows), gz))
    dep = bench_cluster.Deployment(rt, node_bin, work, 3, RF, a.memory_limit, "move",
                                   CLUSTER_ARGS)
    new, pushers = None, []
    try:
        t0 = time.time()
        failures = bench_cluster.push_spread(rt, dep, rows)
        if failures:
            raise RuntimeError("%d of %d preload pushes failed: %r" % (len(failures), len(rows),
                                                                       failures[:3]))
        rt.log("move_preload: %d profiles in %.1f s" % (len(rows), time.time() - t0))
        bench_cluster.settle(rt, dep)
        # the join: BASE_S of pushes with no move, then a 4th node joins
        p, th = run_pusher(rt, dep.nodes, pool)
        pushers.append((p, th))
        tb = time.monotonic()
        time.sleep(BASE_S)
        tj = time.monotonic()
        new, new_id = add_node(rt, node_bin, work, dep, a.memory_limit)
        new.wait_ready(60)
        joined_s, nbytes, stream_s, series, windows = watch_join(rt, dep, new, new_id, tj)
        ta = time.monotonic()
        disk = dir_bytes(new.data)
        everyone = dep.nodes + [new]
        refused = finish_pusher(p, th, everyone, want)
        base, move = p.between(tb, tj), p.between(tj, ta)
        frm = min(p.lowest, min(r["time"] for r in rows)) - 20
        waited = check_exact(everyone, want, frm, int(time.time()) + 60)
        rt.log("move_join: active on every node %.2f s after the start of the new node; "
               "streamed %.0f bytes (%d series, %d whole windows), the last %.2f s after the "
               "start" % (joined_s, nbytes, series, windows, stream_s))
        rt.log("move_new_node_disk_mb: %.1f (its data dir once active)" % (disk / 1e6))
        rt.log("move_exact: every node of 4 answers %d services exactly (%.1f s after the join)"
               % (len(want), waited))
        # the decommission of the new node, under the same pushes
        p2, th2 = run_pusher(rt, dep.nodes, pool, p.lowest - 10 * p.per_pod - 10)
        pushers.append((p2, th2))
        time.sleep(1.0)
        td = time.monotonic()
        left_s, left_bytes = decommission(rt, dep, new, new_id)
        tl = time.monotonic()
        refused2 = finish_pusher(p2, th2, dep.nodes, want)
        leave = p2.between(td, tl)
        frm = min(frm, p2.lowest - 20)
        waited2 = check_exact(dep.nodes, want, frm, int(time.time()) + 60)
        rt.log("move_exact: every node of 3 answers %d services exactly (%.1f s after the "
               "decommission)" % (len(want), waited2))
    finally:
        for p_, th_ in pushers:
            p_.stop.set()
            th_.join(60)
        if new:
            new.stop()
        dep.stop()
    report(rt, len(rows), gz, (joined_s, nbytes, stream_s, series, windows, disk),
           (left_s, left_bytes), quantiles(base), quantiles(move), quantiles(leave),
           (refused, p.status), (refused2, p2.status))


def report(rt, nrows, gz, join, leave, base, move, dec, ref_join, ref_leave):
    joined_s, nbytes, stream_s, series, windows, disk = join
    mb = nbytes / 1e6
    rt.log("move_stream_mb_per_s: %.2f over the join, %.2f until the last streamed byte" % (
        mb / joined_s, mb / stream_s if stream_s > 0 else 0))
    rt.log("move_decommission: left on every node %.2f s after the request; the others streamed "
           "%.0f bytes (%.2f MB/s)" % (leave[0], leave[1], leave[1] / 1e6 / leave[0]))
    for label, q, ref in (("no_move", base, None), ("during_join", move, ref_join),
                          ("during_decommission", dec, ref_leave)):
        rt.log("move_push_%s: %d pushes, p50 %.1f ms, p99 %.1f ms%s" % (
            label, q[2], q[0] * 1e3, q[1] * 1e3, "" if ref is None else
            "; refused %d (statuses %r), pushed again until acknowledged" % ref))
    rt.RESULTS.append((
        "join under ingest (3 nodes RF %d + 1): streaming MB/s, start of the new node to active"
        % RF, "%.2f MB/s" % (mb / joined_s), "-",
        "%.1f MB of stream answers (%d series, %d windows) in %.1f s (settle margin 2 s "
        "included); %.2f MB/s until the last streamed byte at %.1f s; %d profiles (%.1f MB "
        "gzipped) preloaded; the new node's data dir %.1f MB once active" % (
            mb, series, windows, joined_s, mb / stream_s if stream_s > 0 else 0, stream_s,
            nrows, gz, disk / 1e6)))
    for what, q, ref in (("the join", move, ref_join), ("the decommission", dec, ref_leave)):
        rt.RESULTS.append((
            "push latency during %s / with no move, p50 and p99 (same pusher, %d/s)"
            % (what, PUSH_HZ), "%.2f, %.2f" % (q[0] / base[0], q[1] / base[1]), "-",
            "p50 %.1f vs %.1f ms, p99 %.1f vs %.1f ms (%d vs %d pushes); %d refused and pushed "
            "again; totals exact on every node after" % (
                q[0] * 1e3, base[0] * 1e3, q[1] * 1e3, base[1] * 1e3, q[2], base[2], ref[0])))
    rt.RESULTS.append((
        "decommission under ingest (4 nodes RF %d - 1): streaming MB/s, request to left" % RF,
        "%.2f MB/s" % (leave[1] / 1e6 / leave[0]), "-",
        "%.1f MB streamed by the 3 that stay in %.1f s (settle margin included)" % (
            leave[1] / 1e6, leave[0])))
