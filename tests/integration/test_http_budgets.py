"""test_http_budgets.py — the HTTP side of the memory budget and the
per-client connection cap: bodies are charged as their bytes arrive (sockets
that announce large bodies and stall do not turn other pushes into 503), and
one client IP cannot hold more than max-connections-per-client connections."""
import os
import socket
import sys
import time

import harness
from harness import Node, raw_exchange, run_tests, status_of, unique


def test_announced_bytes_are_not_charged():
    args = ["--max-buffered-bytes", "4MiB", "--max-body-bytes", "1MiB",
            "--request-timeout", "60s"]
    with Node(args=args) as n:
        stalled = []
        try:
            # 16 sockets announce 1 MiB each (4 times the budget) and send 10 bytes
            for _ in range(16):
                s = socket.create_connection(("127.0.0.1", n.port), timeout=10)
                s.sendall(b"POST /ingest?name=slow.cpu HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 1048576\r\n\r\nmain;a 1\n\n")
                stalled.append(s)
            time.sleep(0.3)
            for i in range(3):
                r = n.ingest(b"main;ok 1\n", name=unique("budget") + ".cpu",
                             **{"from": int(time.time()) - 60 - i})
                assert r.status == 200, r
            # bytes that did arrive are charged: 4 bodies of 1 MiB sent in full
            # would exceed the budget with the 16 x 10 bytes held
            big = b"x" * (1024 * 1024 - 100)
            for s in stalled[:4]:
                s.sendall(big)
            time.sleep(0.5)
            raw = raw_exchange(n.port, b"POST /ingest?name=x.cpu HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 1000000\r\n\r\n" + b"y" * 1000000)
            assert status_of(raw) == 503 and b"max-buffered-bytes" in raw, raw[:300]
        finally:
            for s in stalled:
                s.close()


def test_connections_per_client():
    with Node(args=["--max-connections-per-client", "4"]) as n:
        conns = []
        try:
            for _ in range(4):
                conns.append(socket.create_connection(("127.0.0.1", n.port), timeout=10))
            time.sleep(0.2)
            raw = raw_exchange(n.port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(raw) == 503 and b"max-connections-per-client" in raw, raw
            conns.pop().close()
            time.sleep(0.2)
            raw = raw_exchange(n.port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(raw) == 200, raw
        finally:
            for s in conns:
                s.close()


def _ipv6_loopback():
    """None when ::1 can be listened on and dialled, else why not."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return None
    except OSError as e:
        return "no IPv6 loopback (::1): %s" % e


def test_connections_per_client_ipv6_loopback():
    """The cap holds for IPv6 clients too (here ::1, one /64)."""
    why = _ipv6_loopback()
    if why:
        raise harness.Skip(why)
    n = Node(args=["--max-connections-per-client", "2"], host="[::1]").start(ready=False)
    conns = []
    try:
        for _ in range(200):  # the harness's own checks speak IPv4
            try:
                if status_of(_exchange6("::1", n.port)) == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        for _ in range(2):
            conns.append(socket.create_connection(("::1", n.port), timeout=10))
        time.sleep(0.2)
        raw = _exchange6("::1", n.port)
        assert status_of(raw) == 503 and b"max-connections-per-client" in raw, raw
        conns.pop().close()
        time.sleep(0.2)
        assert status_of(_exchange6("::1", n.port)) == 200
    finally:
        for s in conns:
            s.close()
        n.cleanup()


def _exchange6(host, port):
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        for _ in range(1000):
            try:
                c = s.recv(65536)
            except ConnectionResetError:  # a refused connection may end so
                break
            if not c:
                break
            out += c
        return out
    finally:
        s.close()


# Run in the namespace: connects from each source address (IP_FREEBIND: the
# addresses are local through an "anyip" route, not configured one by one),
# holding every connection, then asks /ready on each; prints the statuses.
_CLIENTS = r"""
import json, socket, sys, time
dst, port, srcs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
deadline = time.monotonic() + 20
while True:  # the node listens before it is ready
    try:
        s = socket.create_connection((dst, port), timeout=2)
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if s.recv(100).startswith(b"HTTP/1.1 200"):
            s.close(); break
        s.close()
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("node not ready")
    time.sleep(0.1)
time.sleep(0.2)
conns = []
for a in srcs:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
    s.bind((a, 0))
    s.settimeout(10)
    s.connect((dst, port))
    conns.append(s)
    time.sleep(0.1)  # accepted (and counted) in this order
out = []
for s in conns:
    try:
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        out.append(int(s.recv(100).split()[1]))
    except (OSError, IndexError):
        out.append(0)
print(json.dumps(out))
"""


def _netns_v6(prefixes):
    """A network namespace whose loopback owns each /64 of prefixes (anyip);
    raises harness.Skip when that cannot be made (not root, no iproute2, no
    IPv6)."""
    import subprocess
    ns = "flamedb-it-%d-v6" % os.getpid()

    def ip(*args):
        p = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
        if p.returncode != 0:
            raise RuntimeError("ip %s: %s" % (" ".join(args), p.stderr.strip()))
    try:
        ip("netns", "add", ns)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        raise harness.Skip("no network namespace for IPv6 prefixes: %s" % e)
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        for p in prefixes:
            ip("-n", ns, "-6", "addr", "add", p + "1/64", "dev", "lo", "nodad")
            ip("-n", ns, "-6", "route", "add", "local", p + "/64", "dev", "lo")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)
        raise harness.Skip("no IPv6 prefixes on the namespace's loopback: %s" % e)
    return ns


def test_connections_per_client_by_ipv6_prefix():
    """A client with many IPv6 addresses in its /64 (privacy addresses, or
    any address it picks: the /64 routes to it) counts as one client: with
    max-connections-per-client 2, connections from ::10 .. ::13 of one /64
    get 200, 200, 503, 503 (each address apart, all four got in), one from
    another /64 is another client; with client-ipv6-prefix 128 each address
    counts apart again."""
    import json
    import subprocess
    a, b = "fd00:f1a:db0::", "fd00:f1a:db1::"
    ns = _netns_v6([a, b])
    try:
        srcs = [a + "10", a + "11", a + "12", a + "13", b + "10"]
        for extra, want in (([], [200, 200, 503, 503, 200]),
                            (["--client-ipv6-prefix", "128"], [200] * 5)):
            args = ["--max-connections-per-client", "2"] + extra
            # ready=False: only the namespace reaches it (the clients wait)
            n = Node(args=args, netns=ns, host="[%s1]" % a).start(ready=False)
            try:
                p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _CLIENTS,
                                    a + "1", str(n.port)] + srcs,
                                   capture_output=True, text=True, timeout=60)
                assert p.returncode == 0, p.stderr
                assert json.loads(p.stdout) == want, (extra, p.stdout)
            finally:
                n.cleanup()
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)


def _limit_fds(soft, hard):
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_cannot_take_storage_descriptors():
    """Started with the common soft limit of 1,024 open files, the node used
    to keep it: a client opening a thousand idle connections (within
    max-connections) took every descriptor, RocksDB could not open its next
    write-ahead log, and every push failed from then on, also after the
    connections closed. The node raises its soft limit to the hard one at
    start, and refuses to start when max-connections plus fd-reserve do not
    fit in it."""
    import subprocess
    from harness import FLAMEDB_BIN
    n = Node(args=["--write-buffer-bytes", "1MiB"])
    real_popen = subprocess.Popen

    def popen(*a, **kw):
        kw["preexec_fn"] = _limit_fds(1024, 8192)
        return real_popen(*a, **kw)
    subprocess.Popen = popen
    try:
        n.start()
    finally:
        subprocess.Popen = real_popen
    try:
        w = n.connection()
        w.connect()
        idle = []
        for _ in range(1015):
            idle.append(socket.create_connection(("127.0.0.1", n.port), timeout=5))
        now = int(time.time())
        for k in range(200):  # enough to switch write-ahead logs a few times
            body = "".join("main;s%d;f%d;g%d 1\n" % (k, i, 7 * k + i)
                           for i in range(300)).encode()
            w.request("POST", "/ingest?name=fd%d.cpu&from=%d" % (k % 20, now - 300 + k), body=body)
            r = w.getresponse()
            data = r.read()
            assert r.status == 200, (k, data)
        for s in idle:
            s.close()
        w.close()
    finally:
        n.cleanup()
    # a hard limit below max-connections plus fd-reserve: refused at start, naming both
    p = subprocess.run([FLAMEDB_BIN, "--data-dir", n.data_dir + "-x", "--http-listen",
                        "127.0.0.1:0"], capture_output=True, timeout=30,
                       preexec_fn=_limit_fds(1024, 1024))
    assert p.returncode != 0, p.stderr
    assert b"max-connections" in p.stderr and b"fd-reserve" in p.stderr, p.stderr


def _rocksdb_option(data_dir, name):
    """The value of a DBOptions entry in the newest OPTIONS file RocksDB wrote."""
    files = sorted((f for f in os.listdir(data_dir) if f.startswith("OPTIONS-")),
                   key=lambda f: int(f.split("-")[1]))
    assert files, os.listdir(data_dir)
    with open(os.path.join(data_dir, files[-1])) as fh:
        for line in fh:
            key, _, value = line.strip().partition("=")
            if key == name:
                return value
    raise AssertionError("%s not in %s" % (name, files[-1]))


def _sst_fds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith(".sst")
        except OSError:
            pass
    return n


def test_open_sst_files_are_bounded():
    """RocksDB kept every SST file open (max_open_files -1), so the
    descriptors a node needed grew with its database past any fd-reserve:
    once they passed the open-file limit, writes failed. max-open-files
    bounds them: by default what the open-file limit leaves besides
    max-connections and a quarter of fd-reserve; set, it must fit there."""
    import subprocess
    from harness import FLAMEDB_BIN
    real_popen = subprocess.Popen

    def start(node, soft, hard):
        def popen(*a, **kw):
            kw["preexec_fn"] = _limit_fds(soft, hard)
            return real_popen(*a, **kw)
        subprocess.Popen = popen
        try:
            node.start()
        finally:
            subprocess.Popen = real_popen
    # derived: 4096 - 1024 connections - 1024 / 4 for the other files
    n = Node(args=["--write-buffer-bytes", "1MiB"])
    start(n, 4096, 4096)
    try:
        assert _rocksdb_option(n.data_dir, "max_open_files") == "2816"
        assert "max-open-files 2816" in n.log_text(200), n.log_text(200)
    finally:
        n.cleanup()
    # set (here RocksDB's least): pushes and reads work with that table
    # cache (tiny memtables: a flush every few pushes, files compacted)
    n = Node(args=["--write-buffer-bytes", "1MiB", "--max-open-files", "20"])
    start(n, 4096, 4096)
    try:
        assert _rocksdb_option(n.data_dir, "max_open_files") == "20"
        now = int(time.time())
        most = 0
        for k in range(150):
            body = "".join("main;s%d;f%d;g%d 1\n" % (k, i, 7 * k + i) for i in range(400)).encode()
            r = n.ingest(body, name="sst%d.cpu" % (k % 30), **{"from": now - 3100 + 20 * k})
            assert r.status == 200, (k, r)
            most = max(most, _sst_fds(n.proc.pid))
        files = sum(f.endswith(".sst") for f in os.listdir(n.data_dir))
        for k in range(30):
            assert n.total(harness.CPU + '{service_name="sst%d"}' % k, frm=str(now - 3600),
                           until=str(now)) > 0
        most = max(most, _sst_fds(n.proc.pid))
        print("SST files %d, at most %d open" % (files, most))
    finally:
        n.cleanup()
    # set to more than fits: refused at start, naming the settings
    p = subprocess.run([FLAMEDB_BIN, "--data-dir", n.data_dir + "-x", "--http-listen",
                        "127.0.0.1:0", "--max-open-files", "3000"], capture_output=True,
                       timeout=30, preexec_fn=_limit_fds(4096, 4096))
    assert p.returncode != 0, p.stderr
    assert b"max-open-files" in p.stderr and b"fd-reserve" in p.stderr, p.stderr


def test_minimum_memory_limit_starts_with_defaults():
    """--memory-limit at its minimum (64 MiB) with no other flag used to be
    refused at start: max-body-bytes (16 MiB) was larger than the
    max-buffered-bytes it derives (8 MiB). The body limit follows the
    buffer budget down; such a node takes pushes and answers queries."""
    with Node(args=["--memory-limit", "64MiB"]) as n:
        svc = unique("small")
        now = int(time.time())
        for i in range(3):
            r = n.ingest(b"main;a;b 5\nmain;c 2\n", name=svc + ".cpu", **{"from": now - 60 + i})
            assert r.status == 200, r
        assert n.total(harness.CPU + '{service_name="%s"}' % svc) == 21 * 10**7  # folded .cpu at 100 Hz
        m = n.get("/metrics")
        assert m.status == 200, m


if __name__ == "__main__":
    run_tests(globals())
