"""test_http_budgets.py — the HTTP side of the memory budget and the
per-client connection cap: bodies are charged as their bytes arrive (sockets
that announce large bodies and stall do not turn other pushes into 503), and
one client IP cannot hold more than max-connections-per-client connections."""
import socket
import time

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


if __name__ == "__main__":
    run_tests(globals())
