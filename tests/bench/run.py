#!/usr/bin/env python3
"""tests/bench/run.py — flamedb's benchmarks (issue #2 targets), figures printed.

Every figure is a ratio of two things measured in this same run, on this
machine; nothing is asserted (a wrong answer — an inexact flame graph, a failed
push — does fail the run, because then the figure would mean nothing).

  ingest   flamedb-bench ingest: ingest_parse + storage_write_profile into a real
           RocksDB vs only gunzip + protobuf-decode, same profiles (library path),
           and bytes on disk / gzipped bytes after storage_compact;
  ingest-real  the library-path ratio over ../shared/testdata's pprof files;
  http     the same profiles pushed over HTTP to a real node: node process CPU
           (/proc/PID/stat) per profile vs the decode-only CPU per profile, over
           two connections (the target) and again over one;
  real-fleet  the ingest and http ratios over a fleet built from
           ../shared/testdata's large pprof profiles (each a service of 4 pods
           pushing it 6 times), when present;
  query    120 heap profiles of one service: flame graph in process and over HTTP
           vs `go tool pprof -proto f1 ... f120 > /dev/null`;
  rss      node RSS (/proc/PID/status VmRSS) under sustained ingest with
           concurrent queries, against the configured --memory-limit;
  cluster  (issue #3, bench_cluster.py) the ingest fleet pushed over HTTP to one
           node, a 3-node RF 3 cluster and a 3-node RF 1 cluster: total node CPU
           per profile, and render wall time from every node, numTicks exact,
           of the whole fleet and of each service (one service's figure: the
           median of the services'); the slowest of 600 whole-fleet renders
           through the RF 1 cluster.
  fleet    flamedb-bench fleet: one service of 100, 300 and 1,000 pods (18
           profiles each, library path): flame graph of the service vs of one
           pod, in process, as the pods grow.
  load     (bench_load.py) a 3-node cluster under 12 pushing and 3 querying
           connections for 60 s (600 s with --soak): RSS of every node under
           --memory-limit, no answer but 200 (and the greedy tenant's 429s),
           flame graphs exact afterwards.
  move     (issue #10, bench_move.py) a 4th node joins a 3-node RF 2 cluster
           preloaded with the ingest fleet while one pusher goes on over HTTP,
           then is decommissioned: MB/s streamed (the new node's
           flamedb_repair_bytes_streamed_total over its start to active), push
           p50/p99 during each move ÷ the same pusher's with no move, totals
           exact on every node after each.
  nodecliff  (not in the default list: long) flamedb-bench nodecliff: one service
           grown to --nodecliff-pushes x --nodecliff-stacks distinct stacks with
           two other services interleaved and a small node cache; the cost of a
           push late in the run ÷ early in it (flat: about 1). With
           --nodecliff-callgrind it runs under valgrind's callgrind and the
           cost is the instructions of the writing thread.
  diffsearch  (not in the default list) GET /api/diff of the real large.cpu
           ($FLAMEDB_TESTDATA) pushed 6 times per version: the report, a search
           within it computed again, and one naming its reportId (answered
           from the report the node kept).

Usage: run.py [--build-dir build]
              [--only ingest,ingest-real,http,real-fleet,query,fleet,rss,cluster,load,move]
              [--only diffsearch]
              [--soak] [--rss-seconds N] [--memory-limit 1GiB] [--query-runs N] [--keep]
              [--only nodecliff [--nodecliff-pushes N] [--nodecliff-stacks N]
               [--nodecliff-callgrind]]
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ports import free_port  # noqa: E402  (below the ephemeral range, as the tests draw them)
import bench_cluster
import bench_load
import bench_move

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULTS = []  # (figure, value, target, note)


def log(msg):
    print(msg, flush=True)


def run_tool(args, timeout=1800):
    """Runs flamedb-bench; returns its `key: value` lines as a dict."""
    log("$ " + " ".join(args))
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    out = {}
    for line in p.stdout.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out[k.strip()] = v.strip()
    if p.returncode != 0:
        raise RuntimeError("%s exited %d" % (args[1], p.returncode))
    return out


def num(s):
    return float(s.split()[0])


def read_index(path):
    rows = []
    base = os.path.dirname(path)
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            rel, name, t, raw, types, totals = line.rstrip("\n").split("\t")
            with open(os.path.join(base, rel), "rb") as pf:
                body = pf.read()
            rows.append({"path": os.path.join(base, rel), "name": name, "time": int(t),
                         "body": body, "types": types.split(","),
                         "totals": [int(x) for x in totals.split(",")]})
    return rows


# ---- a real node ----------------------------------------------------------------
class Node:
    def __init__(self, binary, workdir, memory_limit, extra=(), wait=True, port=None, files=None):
        """Starts a node; with wait=False the caller calls wait_ready() (a node
        with --join is not ready before another member answers). files: {name:
        bytes} written into its data directory first (another node's identity:
        its node id and ring tokens)."""
        self.data = tempfile.mkdtemp(prefix="node-", dir=workdir)
        for name, data in (files or {}).items():
            with open(os.path.join(self.data, name), "wb") as f:
                f.write(data)
        self.port = port or free_port()
        self.last_timing = None  # the Server-Timing of the last answer (get)
        self.log = open(os.path.join(workdir, "node-%d.log" % self.port), "w")
        args = [binary, "--data-dir", self.data, "--http-listen", "127.0.0.1:%d" % self.port,
                "--memory-limit", memory_limit, "--log-level", "warn"] + list(extra)
        log("$ " + " ".join(args))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("node exited %d at start (log %s)" % (self.proc.returncode,
                                                                       self.log.name))
            try:
                st, _ = self.get("/ready")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("node not ready after %d s (log %s)" % (seconds, self.log.name))

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def get(self, path, c=None):
        own = c is None
        c = c or self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            self.last_timing = r.getheader("Server-Timing")  # a render's steps (docs/api.md)
            return r.status, r.read()
        finally:
            if own:
                c.close()

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def sched(self):
        """(CPU seconds, times run) of all the node's threads so far, from
        their schedstat: nanoseconds on a CPU, and how many times a thread
        was put on one, so each hand-off between threads (a wakeup) counts
        at least once. A thread that exits between two reads drops out."""
        cpu, runs, task = 0, 0, "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(task):
            try:
                with open(os.path.join(task, tid, "schedstat")) as f:
                    fields = f.read().split()
            except OSError:
                continue
            cpu += int(fields[0])
            runs += int(fields[2])
        return cpu * 1e-9, runs

    def thread_cpu_seconds(self):
        """CPU seconds of the node's threads in three groups: the event loop
        (the main thread: HTTP, dispatch, answers), RocksDB's own threads
        (flushes, compactions), and the rest (the thread pool: decoding and
        writes). Each thread's time on a CPU in nanoseconds from its
        schedstat (clock ticks of 10 ms would leave the loop's few tens of
        milliseconds a run a few ticks), from its stat where there is none.
        A thread that exits between two reads drops out of both."""
        out = {"loop": 0.0, "rocksdb": 0.0, "pool": 0.0}
        task = "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(task):
            try:
                with open(os.path.join(task, tid, "comm")) as f:
                    comm = f.read().strip()
                try:
                    with open(os.path.join(task, tid, "schedstat")) as f:
                        seconds = int(f.read().split()[0]) * 1e-9
                except OSError:
                    with open(os.path.join(task, tid, "stat")) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
            except OSError:
                continue
            group = ("loop" if int(tid) == self.proc.pid else
                     "rocksdb" if comm.startswith("rocksdb:") else "pool")
            out[group] += seconds
        return out

    def rss_kib(self, field="VmRSS:"):
        """The node's resident set (VmHWM: its peak so far), KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def push(node, c, name, body, t):
    q = urllib.parse.urlencode({"name": name, "from": t, "until": t + 10, "format": "pprof",
                                "spyName": "gospy"})
    c.request("POST", "/ingest?" + q, body=body,
              headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    data = r.read()
    return r.status, data


def push_all(node, rows, threads=2):
    """Pushes rows over `threads` keep-alive connections; returns failures."""
    failures = []
    lock = threading.Lock()
    it = iter(rows)

    def worker():
        c = node.conn()
        while True:
            with lock:
                row = next(it, None)
            if row is None:
                break
            st, data = push(node, c, row["name"], row["body"], row["time"])
            if st != 200:
                with lock:
                    failures.append((row["path"], st, data[:200]))
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return failures


# ---- the benchmarks ---------------------------------------------------------------
def bench_ingest(a, tool, work):
    out = run_tool([tool, "ingest", "--index", os.path.join(work, "cpu", "index.tsv")])
    r = out["RATIO ingest_over_decode_cpu"].split()[0]
    RESULTS.append(("ingest CPU / decode-only CPU (library: ingest_parse + storage_write_profile)",
                    r, "<= 2", "%s us vs %s us per profile; calling thread alone %s" % (
                        out["ingest_cpu_per_profile_us"].split()[0],
                        out["decode_cpu_per_profile_us"], out["RATIO ingest_over_decode_cpu"]
                        .split("only: ")[-1].rstrip(")"))))
    RESULTS.append(disk_row("bytes on disk / gzipped pprof bytes (after storage_compact)", out))
    hour = os.path.join(work, "cpu-hour")
    run_tool([tool, "gen", "--kind", "cpu", "--services", "4", "--pods", "2", "--profiles", "360",
              "--seed", str(a.seed), "--out", hour])
    out = run_tool([tool, "ingest", "--rounds", "1", "--index", os.path.join(hour, "index.tsv")])
    RESULTS.append(disk_row("bytes on disk / gzipped pprof bytes, one hour of 8 pods", out))


def disk_row(name, out):
    """A result row of the disk ratio, with the three largest column families."""
    cfs = sorted(((int(v), k[len("disk_cf_"):-len("_per_profile_bytes")])
                  for k, v in out.items() if k.startswith("disk_cf_")), reverse=True)
    top = ", ".join("%s %d" % (cf, b) for b, cf in cfs[:3])
    return (name, out["RATIO disk_over_gz"].split()[0], "<= 0.10",
            "%s B/profile on disk (%s) vs %s B gzipped; %s profiles, %s series" % (
                out["disk_per_profile_bytes"], top, out["gz_per_profile_bytes"],
                out["ingested_ok"], out["series_written"]))


def bench_ingest_real(a, tool):
    """The same library-path ratio over the shared real-profile corpus, when present."""
    corpus = os.environ.get("FLAMEDB_TESTDATA") or os.path.join(os.path.dirname(ROOT), "shared",
                                                                "testdata")
    if not os.path.isfile(os.path.join(corpus, "MANIFEST.tsv")):
        log("real corpus not found at %s (set FLAMEDB_TESTDATA): skipped" % corpus)
        return
    out = run_tool([tool, "ingest", "--real", corpus])
    # no target: each profile pushed once, every stack new to its table (issue #11's
    # targets are the bench fleet and the fleet of the large real profiles)
    RESULTS.append(("ingest CPU / decode-only CPU, library path, real corpus (%s pprof files "
                    "go tool pprof accepts; each once, every stack new: no target)"
                    % out["profiles"],
                    out["RATIO ingest_over_decode_cpu"].split()[0], "-",
                    "%s us vs %s us per profile; %s refused" % (
                        out["ingest_cpu_per_profile_us"].split()[0],
                        out["decode_cpu_per_profile_us"], out["ingest_failed"])))


def folded_whole(node, rows, memory_limit, runs=5):
    """The whole fleet's CPU flame graph as folded text without maxNodes
    (every path written out whole: tens of MB) from a node at --memory-limit:
    answered 200 with the generator's exact sum, or the step fails. Its
    result row: node CPU per render (median of runs) and the answer's size."""
    lo = min(r["time"] for r in rows) - 60
    hi = max(r["time"] for r in rows) + 60
    want = sum(r["totals"][r["types"].index("cpu/nanoseconds")] for r in rows)
    path = "/pyroscope/render?" + urllib.parse.urlencode(
        {"query": "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}", "from": lo, "until": hi,
         "format": "folded"})
    c, cpus = node.conn(), []
    for _ in range(runs):
        cpu0 = node.cpu_seconds()
        st, body = node.get(path, c)
        cpus.append(node.cpu_seconds() - cpu0)
        if st != 200:
            raise RuntimeError("whole-fleet folded render %d: %r" % (st, body[:300]))
    c.close()
    got = sum(int(line.rsplit(b" ", 1)[1]) for line in body.splitlines())
    if got != want:
        raise RuntimeError("whole-fleet folded render: sum %d, generated %d" % (got, want))
    ms = statistics.median(cpus) * 1e3
    log("http_folded_whole_bytes: %d\nhttp_folded_whole_cpu_ms: %.0f" % (len(body), ms))
    return ("whole-fleet folded render, no maxNodes (node CPU per render)", "%.0f ms" % ms,
            "answered", "%.1f MB of folded text, exact, at --memory-limit %s"
            % (len(body) / 1e6, memory_limit))


def corpus_dir():
    """The shared real-profile corpus, or None when absent."""
    corpus = os.environ.get("FLAMEDB_TESTDATA") or os.path.join(os.path.dirname(ROOT), "shared",
                                                                "testdata")
    if not os.path.isfile(os.path.join(corpus, "MANIFEST.tsv")):
        log("real corpus not found at %s (set FLAMEDB_TESTDATA): skipped" % corpus)
        return None
    return corpus


REAL_FLEET_MIN_GZ = 64 << 10  # the corpus's large profiles: gzipped pprof of 64 KiB and more
REAL_FLEET_PODS = 4
REAL_FLEET_PUSHES = 6


def without_time(raw):
    """A pprof message without its time_nanos (field 9), so that a push's
    time is the one it names (the corpus's profiles are years old)."""
    out, i = bytearray(), 0

    def varint(i):
        v, shift = 0, 0
        while True:
            b = raw[i]
            v |= (b & 0x7f) << shift
            i += 1
            shift += 7
            if b < 0x80:
                return v, i
    while i < len(raw):
        start = i
        tag, i = varint(i)
        kind = tag & 7
        if kind == 0:
            _, i = varint(i)
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        elif kind == 2:
            n, i = varint(i)
            i += n
        else:
            raise ValueError("pprof field of wire type %d" % kind)
        if tag >> 3 != 9:
            out += raw[start:i]
    return bytes(out)


def real_fleet_index(corpus, work):
    """index.tsv of a fleet built from the corpus's large pprof profiles
    (MANIFEST: gzip, go tool pprof accepts it, at least REAL_FLEET_MIN_GZ
    bytes): one service per profile, REAL_FLEET_PODS pods each pushing it
    every 10 s, REAL_FLEET_PUSHES times; the totals per MANIFEST. Returns
    (index path, number of profiles used)."""
    import gzip
    out = os.path.join(work, "realfleet")
    os.makedirs(out, exist_ok=True)
    files = []
    with open(os.path.join(corpus, "MANIFEST.tsv")) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            r = dict(zip(head, line.rstrip("\n").split("\t")))
            if (r["file"].startswith("pprof/") and r["encoding"] == "gzip" and
                    r["go_tool_pprof"] == "ok" and int(r["bytes"]) >= REAL_FLEET_MIN_GZ):
                files.append(r)
    t0 = (int(time.time()) - 3600) // 10 * 10
    lines = []
    for i, r in enumerate(files):
        rel = "f%02d.pb.gz" % i
        with open(os.path.join(corpus, r["file"]), "rb") as f:
            raw = without_time(gzip.decompress(f.read()))
        raw_len = len(raw)
        with open(os.path.join(out, rel), "wb") as f:
            f.write(gzip.compress(raw, 6))
        types = r["sample_types"].split(",")
        tot = dict(kv.split("=", 1) for kv in r["totals"].split(","))
        totals = ",".join(tot[t] for t in types)
        for k in range(REAL_FLEET_PUSHES):
            for pod in range(REAL_FLEET_PODS):
                lines.append((k, i, "%s\treal%02d{pod=real%02d-%d}\t%d\t%d\t%s\t%s" % (
                    rel, i, i, pod, t0 + 10 * k, raw_len, ",".join(types), totals)))
    index = os.path.join(out, "index.tsv")
    with open(index, "w") as f:
        f.write("# path\tname\ttime_s\traw_len\ttypes\ttotals\n")
        for _, _, line in sorted(lines, key=lambda x: (x[0], x[1])):
            f.write(line + "\n")
    log("real fleet: %d profiles of the corpus x %d pods x %d pushes" % (
        len(files), REAL_FLEET_PODS, REAL_FLEET_PUSHES))
    return index, len(files)


def bench_real_fleet(a, tool, node_bin, work):
    """The library and HTTP ingest ratios over a fleet of the corpus's large
    real profiles, pushed again and again as pods do."""
    corpus = corpus_dir()
    if corpus is None:
        return
    index, nfiles = real_fleet_index(corpus, work)
    what = "fleet of the corpus's %d large real profiles x %d pods x %d pushes" % (
        nfiles, REAL_FLEET_PODS, REAL_FLEET_PUSHES)
    out = run_tool([tool, "ingest", "--index", index])
    RESULTS.append(("ingest CPU / decode-only CPU, library path, %s" % what,
                    out["RATIO ingest_over_decode_cpu"].split()[0], "<= 2",
                    "%s us vs %s us per profile" % (out["ingest_cpu_per_profile_us"].split()[0],
                                                    out["decode_cpu_per_profile_us"])))
    bench_http(a, tool, node_bin, work, index, ", " + what)


# Rounds of the HTTP ingest step. This machine's speed moves by a third
# and more within a minute, and not alike for both sides: the node's work
# (hash tables, the memtable) waits on memory where the decode-only floor
# computes, so a neighbour's load slows the node more (the same binary
# measured 1,906-1,938 us a profile while three floors a minute apart took
# 679, 992 and 1,021 us). Each round is a fresh node's CPU over the fleet
# pushed, between two floors (each one pass over the same profiles, the one
# between two rounds shared): its ratio is to the mean of the two floors
# around it, and the figure is the median round's.
INGEST_ROUNDS = 3


def first_pushes(rows):
    """How many rows come before every series has had its first push (rows
    in push order): what a node met for the first time."""
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r["name"], i)
    return max(first.values()) + 1 if first else 0


def http_ingest_round(a, node_bin, work, rows, keep_folded):
    """One node of node_bin fed rows over 2 connections: its CPU per profile
    (all rows, and those after every series' first push), by thread group,
    the peak RSS, the wall time, and (keep_folded) the whole-fleet folded
    render's row."""
    node = Node(node_bin, work, a.memory_limit)
    k = first_pushes(rows)
    try:
        cpu0, th0, w0 = node.cpu_seconds(), node.thread_cpu_seconds(), time.time()
        failures = push_all(node, rows[:k])
        cpu_k = node.cpu_seconds()
        failures += push_all(node, rows[k:])
        wall = time.time() - w0
        cpu1, th1 = node.cpu_seconds(), node.thread_cpu_seconds()
        peak_kib = node.rss_kib("VmHWM:")
        time.sleep(2)
        cpu2 = node.cpu_seconds()
        folded = None
        if keep_folded and not failures:
            folded = folded_whole(node, rows, a.memory_limit)
    finally:
        node.stop()
    if failures:
        for f in failures[:5]:
            log("push failed: %s -> %s %r" % f)
        raise RuntimeError("%d of %d pushes failed" % (len(failures), len(rows)))
    n = len(rows)
    return {"per": (cpu1 - cpu0) / n, "after": (cpu2 - cpu1) / n, "wall": wall,
            "warm": (cpu1 - cpu_k) / (n - k) if n > k else None, "nwarm": n - k,
            "threads": {k: (th1[k] - th0[k]) / n for k in th0}, "peak_kib": peak_kib,
            "folded": folded}


def bench_http(a, tool, node_bin, work, index=None, what=""):
    bench_fleet = index is None  # the whole-fleet folded render is the bench fleet's step
    index = index or os.path.join(work, "cpu", "index.tsv")
    rows = read_index(index)

    def floor():
        dec = run_tool([tool, "decode", "--rounds", "1", "--index", index])
        return num(dec["decode_cpu_per_profile_us"]) * 1e-6

    floors, rounds = [floor()], []
    for r in range(INGEST_ROUNDS):
        rounds.append(http_ingest_round(a, node_bin, work, rows, bench_fleet and r == 0))
        floors.append(floor())
    if rounds[0]["folded"] is not None:
        RESULTS.append(rounds[0]["folded"])
    for r, x in enumerate(rounds):  # the floor around the round
        x["floor"] = (floors[r] + floors[r + 1]) / 2
        x["ratio"] = x["per"] / x["floor"]
    mid = sorted(rounds, key=lambda x: x["ratio"])[len(rounds) // 2]
    per, per_decode, th = mid["per"], mid["floor"], mid["threads"]
    log("http_profiles: %d\nhttp_wall_s: %.2f (%.0f profiles/s)" % (len(rows), mid["wall"],
                                                                   len(rows) / mid["wall"]))
    log("http_node_cpu_per_profile_us: %.1f (rounds %s; +%.1f in the 2 s after the last ack)" % (
        per * 1e6, ", ".join("%.0f" % (x["per"] * 1e6) for x in rounds), mid["after"] * 1e6))
    log("http_decode_cpu_per_profile_us: %.1f (floors %s)" % (
        per_decode * 1e6, ", ".join("%.0f" % (f * 1e6) for f in floors)))
    peak = max(x["peak_kib"] for x in rounds)
    log("http_node_peak_rss_mib: %.0f (--memory-limit %s)" % (peak / 1024, a.memory_limit))
    log("http_loop_cpu_per_profile_us: %.1f\nhttp_pool_cpu_per_profile_us: %.1f\n"
        "http_rocksdb_cpu_per_profile_us: %.1f" % (th["loop"] * 1e6, th["pool"] * 1e6,
                                                  th["rocksdb"] * 1e6))
    RESULTS.append(("ingest over HTTP: node CPU / decode-only CPU" + what,
                    "%.2f" % mid["ratio"],
                    "<= 2", "%.0f us vs %.0f us per profile (event loop %.0f us), %.0f profiles/s, "
                    "2 connections, peak RSS %.0f MiB; median of %d rounds, each to the floors "
                    "around it (rounds %s)" % (per * 1e6, per_decode * 1e6, th["loop"] * 1e6,
                                               len(rows) / mid["wall"], peak / 1024,
                                               INGEST_ROUNDS,
                                               " / ".join("%.2f" % x["ratio"] for x in rounds))))
    if rounds[0]["warm"] is not None:  # the same rounds and floors, the later pushes alone
        warm = sorted(x["warm"] / x["floor"] for x in rounds)
        log("http_warm_node_cpu_per_profile_us: %s (the %d pushes after every series' first)" % (
            ", ".join("%.0f" % (x["warm"] * 1e6) for x in rounds), rounds[0]["nwarm"]))
        RESULTS.append(("ingest over HTTP after every series' first push (no target; the first "
                        "pushes make the tables and caches): node CPU / decode-only CPU" + what,
                        "%.2f" % warm[len(warm) // 2], "-",
                        "the last %d of %d pushes; median of the same %d rounds (%s)" % (
                            rounds[0]["nwarm"], len(rows), INGEST_ROUNDS,
                            " / ".join("%.2f" % (x["warm"] / x["floor"]) for x in rounds))))
    one = http_one_connection(a, node_bin, work, rows)
    RESULTS.append(("ingest over HTTP, one connection (no target; what two at once add): node "
                    "CPU / decode-only CPU" + what, "%.2f" % (one / per_decode), "-",
                    "%.0f us vs %.0f us per profile" % (one * 1e6, per_decode * 1e6)))


def http_one_connection(a, node_bin, work, rows):
    """Node CPU per profile for rows pushed over one connection to a fresh
    node: the same code and instructions per push as two connections, one
    push at a time (two pool threads at once cost more CPU each: caches and
    memory shared)."""
    node = Node(node_bin, work, a.memory_limit)
    try:
        cpu0 = node.cpu_seconds()
        failures = push_all(node, rows, threads=1)
        cpu1 = node.cpu_seconds()
    finally:
        node.stop()
    if failures:
        raise RuntimeError("%d of %d pushes failed (one connection)" % (len(failures), len(rows)))
    per = (cpu1 - cpu0) / len(rows)
    log("http_one_connection_node_cpu_per_profile_us: %.1f" % (per * 1e6))
    return per


def go_pprof_once(go, files):
    """Seconds of one `go tool pprof -proto` merge of files."""
    t0 = time.time()
    p = subprocess.run([go, "tool", "pprof", "-proto"] + files, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("go tool pprof failed: %s" % p.stderr[-500:])
    return time.time() - t0


# Rounds of the query step: each a batch of renders over HTTP and one go
# tool pprof run, in turn. This machine's speed moves by a third and more
# from one second to the next (a node's render median 1.2 ms, then 1.8 ms a
# few seconds later, the same process and data): each side's best round is
# compared with the other's, both taken in the same seconds.
QUERY_ROUNDS = 3
IDLE_RENDERS, IDLE_GAP_MS = 40, 50  # the query step's renders of an idle node
BUSY_RENDERS = 200  # and of a node beside a CPU-bound process


def http_render(node, query, frm, until, runs):
    """Median seconds of runs renders on one connection (with 30 the median
    moved by 15 % between runs), and the last answer."""
    c = node.conn()
    path = "/pyroscope/render?" + urllib.parse.urlencode(
        {"query": query, "from": frm, "until": until, "format": "json"})
    times, body = [], None
    for _ in range(runs):
        t0 = time.time()
        st, body = node.get(path, c)
        times.append(time.time() - t0)
        if st != 200:
            raise RuntimeError("render %d: %r" % (st, body[:300]))
    c.close()
    return statistics.median(times), json.loads(body)


def lib_render(tool, node, query, frm, until, runs, gap_ms=0):
    """Median seconds of runs renders timed by `flamedb-bench render` (the
    client library, one keep-alive connection; gap_ms apart, else back to
    back), and the answer's numTicks."""
    p = subprocess.run([tool, "render", "--url", "http://127.0.0.1:%d" % node.port, "--query",
                        query, "--from", str(frm), "--until", str(until), "--runs", str(runs),
                        "--gap-ms", str(gap_ms)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    out = dict(line.split(": ", 1) for line in p.stdout.splitlines() if ": " in line)
    if p.returncode != 0 or "render_http_median_ms" not in out:
        raise RuntimeError("flamedb-bench render failed: %s" % p.stderr.strip()[-300:])
    return float(out["render_http_median_ms"]) / 1e3, int(out["render_http_numTicks"])


def http_render_rounds(tool, node, query, frm, until, files=None):
    """QUERY_ROUNDS rounds, each a batch of 100 renders timed by the client
    library (lib_render), one timed by Python's http.client (http_render:
    the answer is checked from it) and one go tool pprof run of files when go
    is installed and files given: ([library medians], [Python medians], the
    last answer, [go seconds] or None, [library numTicks])."""
    go = shutil.which("go") if files else None
    meds, pys, ticks, gos, fb = [], [], [], [] if go else None, None
    for _ in range(QUERY_ROUNDS):
        med, tick = lib_render(tool, node, query, frm, until, 100)
        meds.append(med)
        ticks.append(tick)
        py, fb = http_render(node, query, frm, until, runs=100)
        pys.append(py)
        if go:
            gos.append(go_pprof_once(go, files))
    return meds, pys, fb, gos, ticks


def folded_windows(node):
    """The node's count of windows its window fold folded so far."""
    st, body = node.get("/metrics")
    m = re.search(rb"^flamedb_storage_folded_windows_total (\d+)", body, re.M)
    return int(m.group(1)) if st == 200 and m else 0


def wait_folded(node, seconds=60):
    """Waits until the node's window fold (window-fold-interval) has folded
    windows and a pass after that found nothing more; the seconds waited."""
    t0, deadline, last = time.time(), time.time() + seconds, -1
    while time.time() < deadline:
        n = folded_windows(node)
        if n > 0 and n == last:
            return time.time() - t0
        last = n if n > 0 else last
        time.sleep(11 if n > 0 else 0.5)  # one more pass: every ended window folded
    raise RuntimeError("no window fold within %d s" % seconds)


def bench_diffsearch(a, node_bin, work):
    """GET /api/diff on the real large.cpu (23,038 functions) pushed 6 times
    per version, one push per 10 s window: the report, then searches within
    it as the diff view types them, naming the report (reportId: answered
    from the report the node kept) and not naming it (computed again); and
    GET /api/top of the whole service beside its flame graph."""
    corpus = os.environ.get("FLAMEDB_TESTDATA") or os.path.join(os.path.dirname(ROOT), "shared",
                                                                "testdata")
    path = os.path.join(corpus, "folded", "derived", "large.cpu.samples.folded.txt.gz")
    if not os.path.isfile(path):
        log("large.cpu not found under %s (set FLAMEDB_TESTDATA): skipped" % corpus)
        return
    with open(path, "rb") as f:
        body = f.read()
    node = Node(node_bin, work, a.memory_limit)
    try:
        now = int(time.time()) // 10 * 10
        c = node.conn()
        for v in ("v1", "v2"):
            for i in range(6):
                q = urllib.parse.urlencode({"name": "big.cpu{version=%s}" % v,
                                            "from": now - 90 + 10 * i})
                c.request("POST", "/ingest?" + q, body=body,
                          headers={"Content-Type": "application/octet-stream"})
                r = c.getresponse()
                if r.status != 200:
                    raise RuntimeError("push %d: %r" % (r.status, r.read()[:300]))
                r.read()
        cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        sel = lambda v: '%s{service_name="big",version="%s"}' % (cpu, v)  # noqa: E731
        base = {"leftQuery": sel("v1"), "rightQuery": sel("v2"), "limit": 200,
                "leftFrom": now - 120, "leftUntil": now, "rightFrom": now - 120, "rightUntil": now}

        def diff(**extra):
            t0 = time.time()
            st, data = node.get("/api/diff?" + urllib.parse.urlencode({**base, **extra}), c)
            if st != 200:
                raise RuntimeError("diff %d: %r" % (st, data[:300]))
            return time.time() - t0, json.loads(data)

        def timed(path, **q):
            t0 = time.time()
            st, data = node.get(path + "?" + urllib.parse.urlencode(q), c)
            if st != 200:
                raise RuntimeError("%s %d: %r" % (path, st, data[:300]))
            return time.time() - t0

        whole = {"query": '%s{service_name="big"}' % cpu, "from": now - 120, "until": now}
        tops = {lim: statistics.median(timed("/api/top", limit=lim, **whole) for _ in range(5))
                for lim in (100, 5000)}
        graph = statistics.median(timed("/pyroscope/render", format="json", **whole)
                                  for _ in range(5))
        RESULTS.append(("/api/top of large.cpu x 12 pushes, limit 100 / 5000",
                        "%.1f / %.1f ms" % (1000 * tops[100], 1000 * tops[5000]), "",
                        "its flame graph %.1f ms; the table %.1fx the graph (limit 100)"
                        % (1000 * graph, tops[100] / graph)))
        full = [diff() for _ in range(3)]
        rid = full[-1][1].get("reportId")
        terms = ["f", "fu", "func", "func1", "func12", "func123", "func1234"]
        fresh = [diff(search=t)[0] for t in terms[:3]]
        kept = [diff(search=t, reportId=rid)[0] for t in terms] if rid else []
        c.close()
        RESULTS.append(("/api/diff of large.cpu (%d functions, 6+6 buckets)" %
                        full[-1][1]["functionCount"],
                        "%.2f s" % statistics.median([t for t, _ in full]), "",
                        "median of 3"))
        RESULTS.append(("/api/diff search within it, computed again", "%.2f s" %
                        statistics.median(fresh), "", "median of 3 searches"))
        if kept:
            RESULTS.append(("/api/diff search within it, naming its reportId", "%.1f ms" %
                            (1000 * statistics.median(kept)), "", "median of %d searches, max "
                            "%.1f ms" % (len(kept), 1000 * max(kept))))
    finally:
        node.stop()


def bench_query(a, tool, node_bin, work):
    index = os.path.join(work, "heap", "index.tsv")
    out = run_tool([tool, "query", "--index", index])
    rows = read_index(index)
    files = [r["path"] for r in rows]
    q_ing = num(out["query_as_ingested_median_ms"]) / 1e3
    q_cmp = num(out["query_compacted_median_ms"]) / 1e3
    q_fold = num(out["query_folded_median_ms"]) / 1e3
    RESULTS.append(("30-day query / query of the stored range (%s s)" % out["query_range_s"],
                    out["RATIO query_30d_over_range"].split()[0], "<= 2", ""))
    # the path the server serves: the same flame graph over HTTP from a real node
    node = Node(node_bin, work, a.memory_limit)
    try:
        failures = push_all(node, rows)
        if failures:
            raise RuntimeError("heap push failed: %r" % (failures[:3],))
        svc = rows[0]["name"].split("{")[0]
        lo, hi = min(r["time"] for r in rows), max(r["time"] for r in rows)
        sel = 'memory:inuse_space:bytes:space:bytes{service_name="%s"}' % svc
        frm, until = lo // 10 * 10, (hi // 10 + 1) * 10
        meds, pys, fb, gos, ticks = http_render_rounds(tool, node, sel, frm, until, files)
        folded_early = folded_windows(node)  # the fold had begun: not as ingested any more
        # a few seconds later the node has folded the ended windows' operands
        waited = wait_folded(node)
        meds_f, pys_f, fb_f, _, ticks_f = http_render_rounds(tool, node, sel, frm, until)
        # as an interactive user finds a node: idle between renders, its
        # threads asleep (the rounds above run back to back)
        idle, tick_idle = lib_render(tool, node, sel, frm, until, IDLE_RENDERS, IDLE_GAP_MS)
        ticks_f.append(tick_idle)
        # beside a neighbour that wants a CPU all the time (another process
        # on the machine): the helpers' waits must not spin against it
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.2)
            busy, tick_busy = lib_render(tool, node, sel, frm, until, BUSY_RENDERS)
        finally:
            hog.kill()
            hog.wait()
        ticks_f.append(tick_busy)
    finally:
        node.stop()
    med, med_f, py, py_f = min(meds), min(meds_f), min(pys), min(pys_f)
    # in-use memory renders the average profile (docs/api.md): one profile a row
    expect = sum(r["totals"][r["types"].index("inuse_space/bytes")] for r in rows) // len(rows)
    got = fb["flamebearer"]["numTicks"]
    log("http_query_median_ms: %.2f (best of %s; Python's http.client %s)\n"
        "http_query_numTicks: %d (expected %d)" % (
            med * 1e3, ", ".join("%.2f" % (m * 1e3) for m in meds),
            ", ".join("%.2f" % (m * 1e3) for m in pys), got, expect))
    log("http_query_folded_median_ms: %.2f (best of %s; Python's http.client %s; window fold "
        "seen after %.1f s)" % (med_f * 1e3, ", ".join("%.2f" % (m * 1e3) for m in meds_f),
                                ", ".join("%.2f" % (m * 1e3) for m in pys_f), waited))
    log("http_query_idle_median_ms: %.2f (%d renders %d ms apart, after the fold)" % (
        idle * 1e3, IDLE_RENDERS, IDLE_GAP_MS))
    log("http_query_busy_median_ms: %.2f (%d renders beside a CPU-bound process)" % (
        busy * 1e3, BUSY_RENDERS))
    if (got != expect or fb_f["flamebearer"]["numTicks"] != expect or fb_f != fb or
            any(t != expect for t in ticks + ticks_f)):
        raise RuntimeError("HTTP flame graph not exact: numTicks %d (library %r), expected %d"
                           % (got, ticks + ticks_f, expect))
    early = " (%d windows folded by its end)" % folded_early if folded_early else ""
    RESULTS.append(("flame graph of %d heap profiles: over HTTP (one node's render path) / in "
                    "process (query_render)" % len(rows), "%.2f" % (med / q_ing), "-",
                    "%.2f ms vs %.2f ms as ingested" % (med * 1e3, q_ing * 1e3)))
    # what this machine alone makes work pay after a sleep, beside the idle
    # node's renders (a shared VM's idle vCPU gives its caches away)
    m = run_tool([tool, "idle", "--gap-ms", str(IDLE_GAP_MS)])
    RESULTS.append(("the machine alone: a pointer chase through %s KiB after %d ms asleep / "
                    "back to back (no flamedb code: what work after a pause pays here; "
                    "no target)" % (m["idle_kib"], IDLE_GAP_MS), m["idle_ratio"], "-",
                    "%s ms vs %s ms, medians of %s runs (flamedb-bench idle); the idle node's "
                    "renders %.2f ms vs %.2f ms back to back (%.2fx)"
                    % (m["idle_after_gap_ms"], m["idle_back_to_back_ms"], m["idle_runs"],
                       idle * 1e3, med_f * 1e3, idle / med_f)))
    RESULTS.append(("flame graph of %d heap profiles over HTTP beside one CPU-bound process "
                    "(a neighbour wanting a CPU all the time) / alone, back to back (no target)"
                    % len(rows), "%.2f" % (busy / med_f), "-",
                    "%.2f ms vs %.2f ms, median of %d; the render's thread and its helper "
                    "share %d CPUs with it (flamedb_query_assist_busy_total counts the waits "
                    "that stopped spinning for it)" % (busy * 1e3, med_f * 1e3, BUSY_RENDERS,
                                                       os.cpu_count() or 0)))
    if gos is None:
        log("go not found (apt-get install golang-go): go tool pprof baseline skipped")
        return
    go_min = min(gos)
    log("go_pprof_merge_s: %.3f (min of %s)" % (go_min, ", ".join("%.3f" % t for t in gos)))
    RESULTS.append(("flame graph of %d heap profiles (in process, as ingested) vs go tool pprof"
                    % len(rows), "%.0fx" % (go_min / q_ing), ">= 1000x (#11)",
                    "%.2f ms vs %.0f ms; after the window fold %.2f ms (%.0fx); after compaction "
                    "%.2f ms (%.0fx); cold after reopen %s ms"
                    % (q_ing * 1e3, go_min * 1e3, q_fold * 1e3, go_min / q_fold, q_cmp * 1e3,
                       go_min / q_cmp, out["query_cold_after_reopen_ms"])))
    RESULTS.append(("flame graph of %d heap profiles over HTTP (GET /pyroscope/render, timed by "
                    "the client library) vs go tool pprof" % len(rows), "%.0fx" % (go_min / med),
                    ">= 1000x (#11)",
                    "%.2f ms vs %.0f ms, exact numTicks; right after the pushes%s; best of %d "
                    "rounds each, taken in turn (per round %s); timed by Python's http.client "
                    "%.2f ms (%.0fx)" % (
                        med * 1e3, go_min * 1e3, early, QUERY_ROUNDS,
                        " / ".join("%.0fx" % (g / m) for g, m in zip(gos, meds)), py * 1e3,
                        go_min / py)))
    RESULTS.append(("the same over HTTP once the node folded the ended windows "
                    "(window-fold-interval)", "%.0fx" % (go_min / med_f), ">= 1000x (#11)",
                    "%.2f ms vs %.0f ms, the same answer; Python's http.client %.2f ms"
                    % (med_f * 1e3, go_min * 1e3, py_f * 1e3)))
    RESULTS.append(("the same, the node idle between renders (one every %d ms: its threads "
                    "asleep, as an interactive user finds it; no target)" % IDLE_GAP_MS,
                    "%.0fx" % (go_min / idle), "-",
                    "%.2f ms vs %.0f ms, median of %d; back to back %.2f ms"
                    % (idle * 1e3, go_min * 1e3, IDLE_RENDERS, med_f * 1e3)))


def bench_fleet(tool):
    out = run_tool([tool, "fleet", "--pods", "100,300,1000", "--profiles", "18"])
    steps = [100, 300, 1000]
    for n in steps:
        svc, pod = num(out["fleet_pods_%d_service_ms" % n]), num(out["fleet_pods_%d_pod_ms" % n])
        RESULTS.append(("flame graph of one service of %d pods ÷ of one of its pods, in process"
                        % n, "%.1f×" % (svc / pod), "≤ 3× at 1,000 pods",
                        "%.1f ms vs %.1f ms; the service costs %.2f× its cost at 100 pods" % (
                            svc, pod, svc / num(out["fleet_pods_100_service_ms"]))))


def callgrind_costs(out_dir):
    """{(round, what): instructions} from the per-write dumps of the writing
    thread (callgrind --separate-threads=yes names its files *-01)."""
    costs = {}
    for name in os.listdir(out_dir):
        if not name.endswith("-01"):
            continue
        label, total = None, None
        with open(os.path.join(out_dir, name)) as f:
            for line in f:
                if line.startswith("desc: Trigger: Client Request: nodecliff "):
                    label = line.split("nodecliff ", 1)[1].split()
                elif line.startswith("totals:") or (total is None and line.startswith("summary:")):
                    total = int(line.split()[1])
        if label and total is not None:
            costs[(int(label[0]), label[1])] = total
    return costs


def bench_nodecliff(a, tool, work):
    args = [tool, "nodecliff", "--pushes", str(a.nodecliff_pushes), "--stacks",
            str(a.nodecliff_stacks), "--other-stacks", str(max(1, a.nodecliff_stacks // 2)),
            "--node-cache-bytes", str(a.nodecliff_cache)]
    unit = None
    if a.nodecliff_callgrind:
        cg = os.path.join(work, "callgrind")
        os.makedirs(cg, exist_ok=True)
        args = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--separate-threads=yes",
                "--callgrind-out-file=" + os.path.join(cg, "cg.out")] + args + ["--callgrind"]
    out = run_tool(args, timeout=6 * 3600)
    n = a.nodecliff_pushes
    q = max(1, n // 4)
    early, late = range(1 if n > 2 else 0, (1 if n > 2 else 0) + q), range(n - q, n)
    if a.nodecliff_callgrind:
        costs = callgrind_costs(cg)
        unit = "instructions"
        for r in range(1, n + 1):
            log("nodecliff_instructions: round %d push_per_new_stack=%.0f probe_known=%d "
                "probe_new=%d" % (r, costs[(r, "push")] / a.nodecliff_stacks,
                                  costs[(r, "probe_known")], costs[(r, "probe_new")]))
        figs = {}
        for what, div in (("push", a.nodecliff_stacks), ("probe_known", 1), ("probe_new", 1)):
            e = statistics.median(costs[(r + 1, what)] for r in early) / div
            l = statistics.median(costs[(r + 1, what)] for r in late) / div
            figs[what] = (e, l)
    else:
        unit = out["nodecliff_unit"]
        figs = {w: (num(out["nodecliff_%s_early" % k]), num(out["nodecliff_%s_late" % k]))
                for w, k in (("push", "push_per_new_stack"), ("probe_known", "probe_known"),
                             ("probe_new", "probe_new"))}
    stacks = out["nodecliff_table_stacks"]
    for what, label in (("probe_known", "a push of 8 known stacks"),
                        ("probe_new", "a push of 8 new stacks"),
                        ("push", "a push of new stacks, per stack")):
        e, l = figs[what]
        RESULTS.append(("%s, late ÷ early, as one service grows to %s stacks past the node cache"
                        % (label, stacks), "%.2f×" % (l / e if e else 0), "about 1× (flat)",
                        "%.0f vs %.0f %s" % (l, e, unit)))


def parse_size(s):
    """'1GiB', '512MiB', '1g', '1048576' -> bytes."""
    import re
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", s.lower())
    if not m:
        raise ValueError("not a size: %r" % s)
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
                                     "t": 1 << 40}[m.group(2)])


RSS_METRICS = (("memtables", "flamedb_storage_memtable_bytes"),
               ("block_cache", "flamedb_storage_block_cache_bytes"),
               ("node_cache", "flamedb_storage_node_cache_bytes"),
               ("report_cache", "flamedb_report_cache_bytes"),
               ("ingest_inflight", "flamedb_ingest_inflight_bytes"),
               ("sst", "flamedb_storage_sst_bytes"))


def node_memory_mib(node):
    """The node's own accounting of its memory from /metrics, MiB per part
    (a metric with labels summed over them); sst is on disk, for scale."""
    try:
        st, body = node.get("/metrics")
    except (OSError, http.client.HTTPException):
        return {}
    out = {}
    for name, metric in RSS_METRICS:
        vals = re.findall(rb"^%s(?:\{[^}]*\})? (\S+)$" % metric.encode(), body, re.M)
        if st == 200 and vals:
            out[name] = sum(float(v) for v in vals) / (1 << 20)
    return out


def bench_rss(a, tool, node_bin, work):
    seconds = a.rss_seconds or (600 if a.soak else 60)
    pool_dir = os.path.join(work, "pool")
    run_tool([tool, "gen", "--kind", "cpu", "--no-time", "--services", "4", "--pods", "8",
              "--profiles", "4", "--seed", "7", "--out", pool_dir])
    pool = read_index(os.path.join(pool_dir, "index.tsv"))
    node = Node(node_bin, work, a.memory_limit, ["--max-past", "2d"])
    bound_kib = parse_size(a.memory_limit) // 1024
    stop = threading.Event()
    stats = {"pushed": 0, "failed": 0, "queries": 0, "qfailed": 0, "qtimes": [], "errors": []}
    lock = threading.Lock()
    now = int(time.time()) // 10 * 10
    t_first = min(r["time"] for r in pool)
    per_pod = len({r["time"] for r in pool})  # profiles per pod in the pool
    cycles = 23 * 360 // per_pod  # stay within the last 23 hours

    def pusher(k):
        c = node.conn()
        i = k
        while not stop.is_set():
            row = pool[i % len(pool)]
            # a distinct 10 s window for every push of a pod: distinct profile ids
            t = now - 10 * per_pod * ((i // len(pool)) % cycles) - (row["time"] - t_first)
            try:
                st, data = push(node, c, row["name"], row["body"], t)
            except (OSError, http.client.HTTPException) as e:
                st, data = 0, str(e).encode()
                c.close()
                c = node.conn()
            with lock:
                if st == 200:
                    stats["pushed"] += 1
                else:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 5:
                        stats["errors"].append((st, data[:200]))
            i += 2
        c.close()

    def querier():
        c = node.conn()
        rnd = random.Random(1)
        while not stop.is_set():
            svc = rnd.choice(["checkout", "cart", "catalog", "payments"])
            rng = rnd.choice(["now-1h", "now-6h", "now-24h"])
            path = "/pyroscope/render?" + urllib.parse.urlencode({
                "query": 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="%s"}' % svc,
                "from": rng, "until": "now"})
            t0 = time.time()
            try:
                st, _ = node.get(path, c)
            except (OSError, http.client.HTTPException):
                st = 0
                c.close()
                c = node.conn()
            with lock:
                stats["queries"] += 1
                stats["qtimes"].append(time.time() - t0)
                if st != 200:
                    stats["qfailed"] += 1
            time.sleep(0.05)
        c.close()

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(2)]
    threads.append(threading.Thread(target=querier))
    samples, mem = [], []
    try:
        for t in threads:
            t.start()
        t0 = time.time()
        next_mem = 0.0
        while time.time() - t0 < seconds:
            samples.append((time.time() - t0, node.rss_kib()))
            if node.proc.poll() is not None:
                raise RuntimeError("node died during the RSS run (log %s)" % node.log.name)
            if samples[-1][0] >= next_mem:  # the memory the node accounts for, every minute
                mem.append((samples[-1][0], samples[-1][1], node_memory_mib(node)))
                next_mem += 60
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        samples.append((time.time() - t0, node.rss_kib()))
        mem.append((samples[-1][0], samples[-1][1], node_memory_mib(node)))
    finally:
        stop.set()
        node.stop()
    rss = [s[1] for s in samples]
    half = len(rss) // 2
    log("rss_seconds: %d\nrss_samples: %d" % (seconds, len(rss)))
    log("rss_mib: min %.0f, max %.0f, last %.0f (first half max %.0f, second half max %.0f)" % (
        min(rss) / 1024, max(rss) / 1024, rss[-1] / 1024, max(rss[:half] or [0]) / 1024,
        max(rss[half:]) / 1024))
    marks = [samples[min(len(samples) - 1, k * (len(samples) - 1) // 10)] for k in range(11)]
    log("rss_trajectory_mib: " + ", ".join("%ds %.0f" % (t, r / 1024) for t, r in marks))
    for t, r, m in mem:
        log("rss_series: %4ds rss %4.0f MiB; %s" % (
            t, r / 1024, ", ".join("%s %.0f" % kv for kv in m.items())))
    qt = sorted(stats["qtimes"]) or [0]
    log("rss_pushed: %d (%.0f/s), failed %d; queries %d (failed %d), p50 %.1f ms, p99 %.1f ms" % (
        stats["pushed"], stats["pushed"] / seconds, stats["failed"], stats["queries"],
        stats["qfailed"], qt[len(qt) // 2] * 1e3, qt[int(len(qt) * 0.99)] * 1e3))
    for e in stats["errors"]:
        log("rss push error: %r" % (e,))
    under = max(rss) < bound_kib
    RESULTS.append(("node RSS, %d s sustained ingest + concurrent queries" % seconds,
                    "max %.0f MiB" % (max(rss) / 1024), "< %s" % a.memory_limit,
                    "%s the bound; min %.0f, last %.0f MiB; %d profiles pushed (%.0f/s, %d "
                    "refused), %d queries (p50 %.0f ms)" % (
                        "UNDER" if under else "OVER", min(rss) / 1024, rss[-1] / 1024,
                        stats["pushed"], stats["pushed"] / seconds, stats["failed"],
                        stats["queries"], qt[len(qt) // 2] * 1e3)))
    if stats["pushed"] == 0:
        raise RuntimeError("no push succeeded during the RSS run")


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "%d cores (nproc), %s" % (os.cpu_count(), model)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--only",
                    default="ingest,ingest-real,http,real-fleet,query,fleet,rss,cluster,load,move")
    ap.add_argument("--soak", action="store_true")
    ap.add_argument("--rss-seconds", type=int, default=0)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--profiles", type=int, default=20, help="profiles per pod, ingest fleet")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--query-runs", type=int, default=20,
                    help="cluster step: timed renders per node and query")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--nodecliff-pushes", type=int, default=20)
    ap.add_argument("--nodecliff-stacks", type=int, default=250000,
                    help="new stacks per push of the grown service (others: half)")
    ap.add_argument("--nodecliff-cache", type=int, default=16 << 20,
                    help="--node-cache-bytes of the nodecliff store")
    ap.add_argument("--nodecliff-callgrind", action="store_true",
                    help="count instructions under valgrind (slow: shorten the run)")
    a = ap.parse_args()
    tool = os.path.join(a.build_dir, "bin", "flamedb-bench")
    node_bin = os.path.join(a.build_dir, "bin", "flamedb")
    only = set(a.only.split(","))
    work = tempfile.mkdtemp(prefix="flamedb-bench-")
    log("bench: work dir %s, seed %d, machine %s" % (work, a.seed, machine()))
    failed = []
    try:
        run_tool([tool, "gen", "--kind", "cpu", "--services", "4", "--pods", "8", "--profiles",
                  str(a.profiles), "--seed", str(a.seed), "--out", os.path.join(work, "cpu")])
        run_tool([tool, "gen", "--kind", "heap", "--services", "1", "--pods", "4", "--profiles",
                  "30", "--step", "120", "--seed", str(a.seed), "--out",
                  os.path.join(work, "heap")])
        steps = [("ingest", lambda: bench_ingest(a, tool, work)),
                 ("ingest-real", lambda: bench_ingest_real(a, tool)),
                 ("http", lambda: bench_http(a, tool, node_bin, work)),
                 ("real-fleet", lambda: bench_real_fleet(a, tool, node_bin, work)),
                 ("query", lambda: bench_query(a, tool, node_bin, work)),
                 ("fleet", lambda: bench_fleet(tool)),
                 ("rss", lambda: bench_rss(a, tool, node_bin, work)),
                 ("cluster", lambda: bench_cluster.bench_cluster(a, sys.modules[__name__],
                                                                 node_bin, work)),
                 ("load", lambda: bench_load.bench_load(a, sys.modules[__name__], node_bin,
                                                        work)),
                 ("move", lambda: bench_move.bench_move(a, sys.modules[__name__], node_bin,
                                                        work)),
                 ("nodecliff", lambda: bench_nodecliff(a, tool, work)),
                 ("diffsearch", lambda: bench_diffsearch(a, node_bin, work))]
        for name, fn in steps:
            if name not in only:
                continue
            log("\n--- bench %s ---" % name)
            t0 = time.time()
            try:
                fn()
            except Exception as e:  # report and go on with the other figures
                log("bench %s FAILED: %s" % (name, e))
                failed.append(name)
            log("--- bench %s: %.1f s" % (name, time.time() - t0))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    log("\n=== benchmark figures (%s, %s) ===" % (time.strftime("%Y-%m-%d"), machine()))
    log("| figure | measured | target | detail |\n|---|---|---|---|")
    for fig, val, target, note in RESULTS:
        log("| %s | %s | %s | %s |" % (fig, val, target, note))
    if failed:
        log("bench steps that failed: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
