"""harness.py — start real flamedb nodes on loopback and talk HTTP to them.

Standard library only. A Node runs `flamedb` with its own temporary data dir
on 127.0.0.1 with a free port (--http-listen 127.0.0.1:0; the port is read
from the node's "listening on" log line), waits for GET /ready, and is killed
when the test ends (context manager, plus an atexit safety net). Every wait
loop is bounded in count and in time.

The binary comes from $FLAMEDB_BIN (default build/bin/flamedb under the
repository root).
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FLAMEDB_BIN = os.environ.get("FLAMEDB_BIN", os.path.join(ROOT, "build", "bin", "flamedb"))
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

_live = []


def _kill_all():
    for node in list(_live):
        node.kill()


atexit.register(_kill_all)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Node:
    """One flamedb process. args are extra flags; env extra variables. By
    default it listens on 127.0.0.1 in this network namespace; with netns it
    runs there (`ip netns exec NETNS`) and listens on host, an address of it
    (netns.py)."""

    def __init__(self, data_dir=None, args=(), env=None, name="node", netns=None,
                 host="127.0.0.1"):
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="flamedb-it-")
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.name = name
        self.netns = netns
        self.host = host
        self.proc = None
        self.port = None
        self.log = []
        self._reader = None

    # ---- lifetime ----
    def start(self, timeout=30.0, ready=True):
        """Starts the process and waits until it listens; then, unless ready
        is false, until GET /ready answers 200."""
        cmd = [FLAMEDB_BIN, "--data-dir", self.data_dir, "--http-listen", self.host + ":0"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd  # ip execs flamedb: same pid
        self.proc = subprocess.Popen(cmd + self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=self.env)
        _live.append(self)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while self.port is None:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s before listening:\n%s"
                                     % (self.name, self.proc.returncode, self.log_text()))
            if time.monotonic() > deadline:
                raise AssertionError("%s did not listen within %.0fs:\n%s"
                                     % (self.name, timeout, self.log_text()))
            time.sleep(0.02)
        if ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def _read_log(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            if len(self.log) > 5000:
                del self.log[:1000]
            m = re.search(r"listening on http://[^ ]*:(\d+)", line)
            if m and self.port is None:
                self.port = int(m.group(1))

    def log_text(self, last=40):
        return "\n".join(self.log[-last:])

    def failure_log_text(self, last=60):
        """The last lines for a failure report, a run of lines that differ
        only in their time stamp folded into its last one with a count, so
        a message repeated every second does not hide what came before."""
        out = []
        for line in self.log:
            body = line.split(" ", 1)[-1]
            if out and out[-1][0] == body:
                out[-1][1], out[-1][2] = line, out[-1][2] + 1
            else:
                out.append([body, line, 1])
        return "\n".join(x[1] + ("  (x%d)" % x[2] if x[2] > 1 else "") for x in out[-last:])

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + max(timeout, 1.0)
        last = None
        for _ in range(2000):
            try:
                r = self.get("/ready", timeout=2)
                if r.status == 200:
                    return
                last = r
            except OSError as e:
                last = e
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError("%s not ready: %r\n%s" % (self.name, last, self.log_text()))

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Sends sig and waits; returns (exit code, seconds taken)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %.0fs of signal %d"
                                 % (self.name, timeout, sig))
        if self in _live:
            _live.remove(self)
        if self._reader:
            self._reader.join(timeout=5)
        return rc, time.monotonic() - t0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self in _live:
            _live.remove(self)

    def cleanup(self):
        self.kill()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # ---- HTTP ----
    def connection(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, headers=None, timeout=60):
        return self.request("GET", path, headers=headers, timeout=timeout)

    def ingest(self, body, tenant=None, content_type=None, **params):
        headers = {}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        if content_type:
            headers["Content-Type"] = content_type
        return self.request("POST", "/ingest?" + urllib.parse.urlencode(params), body, headers)

    def query(self, path, tenant=None, **params):
        headers = {"X-Scope-OrgID": tenant} if tenant else {}
        return self.get(path + "?" + urllib.parse.urlencode(params), headers)

    def render(self, query, frm="now-1h", until="now", tenant=None, fmt="json", **extra):
        return self.query("/pyroscope/render", tenant, query=query, **{"from": frm}, until=until,
                          format=fmt, **extra)

    def total(self, query, frm="now-1h", until="now", tenant=None):
        """numTicks of a render (the exact total), asserting 200."""
        r = self.render(query, frm, until, tenant)
        assert r.status == 200, "render %s: %r" % (query, r)
        return r.json()["flamebearer"]["numTicks"]

    def label_values(self, label, tenant=None, **params):
        r = self.query("/pyroscope/label-values", tenant, label=label, **params)
        assert r.status == 200, "label-values %s: %r" % (label, r)
        return r.json()

    def metric(self, name):
        """Sum of the samples of one metric family in /metrics."""
        return self.metrics(name)[0]

    def metrics(self, *names):
        """Sums of the samples of several metric families, read from one
        fetch of /metrics (so they are of the same moment)."""
        r = self.get("/metrics")
        assert r.status == 200, r
        totals = [0.0] * len(names)
        for line in r.body.decode().splitlines():
            for i, name in enumerate(names):
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    totals[i] += float(line.rsplit(" ", 1)[1])
        return totals


def raw_exchange(port, data, timeout=10.0, read_until_close=False):
    """Sends raw bytes on a fresh socket and returns what came back (bounded)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            chunks.append(c)
            if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
            if time.monotonic() > deadline:
                break
        return b"".join(chunks)
    finally:
        s.close()


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def folded_sum(text):
    """Sum of the counts of folded lines `a;b;c N`."""
    total = 0
    for line in text.splitlines():
        line = line.strip()
        if line:
            total += int(line.rsplit(" ", 1)[1])
    return total


# Preloads push this many requests at once: each push mostly waits for its
# replicas' writes and acks, so four at a time load a test's data in about a
# third of the time of one after another, well inside the nodes' limits
# (4 workers, the write timeout).
PRELOAD_AT_ONCE = 4


def at_once(fn, items, workers=PRELOAD_AT_ONCE):
    """[fn(item) for item in items], up to `workers` calls at once (threads),
    results in the items' order. Once a call raised, no other starts; the
    first exception is raised again when the calls running have ended."""
    items = list(items)
    results, errors = [None] * len(items), []
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                k = nxt[0]
                nxt[0] += 1
            if k >= len(items) or errors:
                return
            try:
                results[k] = fn(items[k])
            except BaseException as e:  # noqa: BLE001 - raised again by the caller's thread
                with lock:
                    errors.append(e)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def restart(node, args):
    """Stops node and starts it again with args, on a new HTTP port."""
    node.stop()
    node.args = list(args)
    node.port = None
    node.start()


def held(node):
    """Bytes node's scatter-gather queries hold of the query budget now."""
    return node.metric("flamedb_scatter_memory_bytes")


def all_given_back(node):
    """Waits (bounded) until node holds no query budget and no response bytes."""
    from cluster import wait_for  # cluster imports this module

    wait_for("the query budget back at 0", lambda: held(node) == 0, timeout=20)
    wait_for("no response bytes held",
             lambda: node.metric("flamedb_http_buffered_body_bytes") == 0, timeout=20)


def read_head(s):
    """Reads socket s up to the end of an answer's headers: (status, headers
    with lower-case names, first body bytes)."""
    data = b""
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            break
        c = s.recv(4096)
        assert c, "closed before the headers"
        data += c
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    hdrs = dict((k.lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:]))
    return int(lines[0].split()[1]), hdrs, rest


def unique(prefix):
    return "%s%d%04d" % (prefix, int(time.time() * 1000) % 10**9, os.getpid() % 10000)


def run_tests(namespace):
    """Runs every test_* function of a module in definition order; exits 1 on failure."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    failed = []
    for name, fn in tests:
        t0 = time.monotonic()
        try:
            fn()
            print("  ok    %-40s %6.2fs" % (name, time.monotonic() - t0), flush=True)
        except Skip as s:
            print("  skip  %-40s %s" % (name, s), flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed.append(name)
            print("  FAIL  %-40s %6.2fs" % (name, time.monotonic() - t0), flush=True)
            traceback.print_exc()
            for node in list(_live):
                state = "running" if node.alive() else "exited %s" % node.proc.returncode
                print("  --- %s (%s), last log lines:\n%s" % (node.name, state,
                                                             node.failure_log_text()))
    _kill_all()
    sys.exit(1 if failed else 0)


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. the corpus is absent)."""


def build_c_program(tmp, name, source, flags=(), cxx=False):
    """Compiles source (C text, or C++ with cxx) into tmp/name linked against
    the built libflamedb.so (FLAMEDB_BUILD_DIR/client), with the sanitizers
    when that build has them; raises Skip when the library or the compiler
    ($CC or cc, $CXX or g++) is absent. Returns the executable's path."""
    build = os.environ.get("FLAMEDB_BUILD_DIR", os.path.join(ROOT, "build"))
    lib = os.path.join(build, "client")
    if not os.path.exists(os.path.join(lib, "libflamedb.so")):
        raise Skip("no libflamedb.so in " + lib)
    cc = os.environ.get("CXX", "g++") if cxx else os.environ.get("CC", "cc")
    src, exe = os.path.join(tmp, name + (".cc" if cxx else ".c")), os.path.join(tmp, name)
    with open(src, "w") as f:
        f.write(source)
    cmd = [cc] + list(flags) + ["-o", exe, src, "-I", os.path.join(ROOT, "client"), "-L", lib,
                                "-Wl,-rpath," + lib, "-lflamedb"]
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            if "FLAMEDB_SANITIZE:BOOL=ON" in f.read():
                cmd[1:1] = ["-fsanitize=address,undefined"]
    except OSError:
        pass
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise Skip("no compiler (%s)" % cc)
    return exe
