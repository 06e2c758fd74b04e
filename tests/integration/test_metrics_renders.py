"""test_metrics_renders.py — GET /metrics renders in the write lane (so it
answers while queries hold theirs), at most metrics-max-renders at once:
32 connections asking at the same moment never put more than one render on
the pool or in the lane's queue ahead of pushes. Each answer's
flamedb_pool_jobs_{running,waiting}{lane="write"} is read on the loop just
before its own render starts, so with the cap every one of them shows an
empty lane (without it, the others' renders queue there). Requests whose
client goes away while they wait are dropped, and the rest are answered."""
import socket
import threading
import time

from harness import Node, run_tests

CONNS = 32


def lane(text, family):
    for line in text.splitlines():
        if line.startswith(family + '{lane="write"} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no %s for the write lane" % family)


def ask(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return s


def read_all(s):
    chunks = []
    for _ in range(100000):
        c = s.recv(65536)
        if not c:
            break
        chunks.append(c)
    s.close()
    return b"".join(chunks)


def test_metrics_renders_capped():
    with Node(args=["--metrics-max-renders", "1"]) as n:
        for rnd in range(3):
            socks = [ask(n.port) for _ in range(CONNS)]
            answers = [None] * CONNS

            def read(i):
                answers[i] = read_all(socks[i])
            ths = [threading.Thread(target=read, args=(i,)) for i in range(CONNS)]
            for t in ths:
                t.start()
            for t in ths:
                t.join(60)
            busy = []
            for a in answers:
                assert a is not None and a.startswith(b"HTTP/1.1 200"), a and a[:200]
                text = a.decode()
                busy.append(lane(text, "flamedb_pool_jobs_running")
                            + lane(text, "flamedb_pool_jobs_waiting"))
            # before the cap: the other renders ran or waited in the write lane
            assert max(busy) == 0, ("write lane busy when a render started", rnd, busy)
        # clients gone while waiting: dropped, the node answers the rest
        socks = [ask(n.port) for _ in range(CONNS)]
        for s in socks[1::2]:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        for s in socks[0::2]:
            assert read_all(s).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while n.metric("flamedb_http_requests_in_flight") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert n.metric("flamedb_http_requests_in_flight") == 1
        r = n.ingest(b"main;a 1\n", name="m.cpu")
        assert r.status == 200, r


if __name__ == "__main__":
    run_tests(globals())
