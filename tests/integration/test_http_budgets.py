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


if __name__ == "__main__":
    run_tests(globals())
