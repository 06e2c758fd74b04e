"""test_keepalive.py — several requests on one connection, pipelining,
chunked and 100-continue bodies."""
import socket
import time

from harness import CPU, Node, run_tests, status_of, unique
from profiles import folded

NODE = Node(name="ka").start()
NOW = int(time.time())


def test_many_requests_one_connection():
    svc = unique("ka")
    conn = NODE.connection()
    conn.connect()
    first = conn.sock
    for i in range(5):
        conn.request("POST", "/ingest?name=%s.cpu&from=%d" % (svc, NOW - 100 + 10 * i),
                     body=folded({"k;a": i + 1}))
        r = conn.getresponse()
        assert r.status == 200, (i, r.status, r.read())
        r.read()
    q = "/pyroscope/render?query=%s%%7Bservice_name%%3D%%22%s%%22%%7D&from=now-1h" % (CPU, svc)
    conn.request("GET", q)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200 and b'"numTicks":150000000' in body, body[:300]
    for path in ("/ready", "/nope", "/metrics"):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.status in (200, 404), (path, r.status)
        assert r.getheader("Connection") == "keep-alive"
    assert conn.sock is first, "the connection was replaced"
    conn.close()


def read_responses(sock, n, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    out = []
    for _ in range(1000):
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                break
            out.append((status_of(head), rest[:length]))
            buf = rest[length:]
            if len(out) == n:
                return out
        c = sock.recv(65536)
        if not c:
            break
        buf += c
    return out


def test_pipelined_requests_answer_in_order():
    s = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    s.sendall(b"GET /ready HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
              b"POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /ready HTTP/1.1\r\n\r\n")
    got = read_responses(s, 4)
    s.close()
    assert [st for st, _ in got] == [200, 404, 405, 200], got


def test_chunked_and_expect_continue():
    svc = unique("chunk")
    body = folded({"c;h;u;n;k": 3, "c;h": 4})
    s = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    head = b"POST /ingest?name=%s.cpu&from=%d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" % (
        svc.encode(), NOW - 30)
    s.sendall(head + b"".join(b"%x\r\n%s\r\n" % (1, body[i:i + 1]) for i in range(len(body))) +
              b"0\r\n\r\n")
    assert read_responses(s, 1)[0][0] == 200
    # Expect: 100-continue (curl does this for bodies over 1 MiB)
    svc2 = unique("cont")
    s.sendall(b"POST /ingest?name=%s.cpu&from=%d HTTP/1.1\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % (svc2.encode(), NOW - 30, len(body)))
    s.settimeout(5)
    interim = s.recv(25)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
    s.sendall(body)
    assert read_responses(s, 1)[0][0] == 200
    s.close()
    for svc_name in (svc, svc2):
        assert NODE.total(CPU + '{service_name="%s"}' % svc_name) == 7 * 10**7


def read_heads(s, n, tail, timeout=5):
    """Reads n answers' header blocks plus tail (the last answer's body)."""
    got = b""
    deadline = time.monotonic() + timeout
    while got.count(b"HTTP/1.1 ") < n or not got.endswith(tail):
        if time.monotonic() > deadline:
            break
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            c = s.recv(65536)
        except socket.timeout:
            break
        if not c:
            break
        got += c
    return got


def test_head_answers_carry_no_body():
    """HEAD is answered as GET on the read routes (RFC 9110 9.3.2) with the
    header block alone (RFC 9112 6.3): a body after it would be read by the
    client, or by a proxy reusing the connection, as the start of the next
    response (the request after it fails, possibly another client's)."""
    svc = unique("head")
    r = NODE.ingest(folded({"h;e;a;d": 5}), name=svc + ".cpu", **{"from": NOW - 60})
    assert r.status == 200, r
    q = "/pyroscope/render?query=%s%%7Bservice_name%%3D%%22%s%%22%%7D&from=now-1h" % (CPU, svc)
    heads = ["/ready", "/metrics", "/ui/app.js", "/", q, "/no-such-route", "/ingest"]
    s = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    s.sendall(b"".join(b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in heads)
              + b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
    got = read_heads(s, len(heads) + 1, b"ready\n")
    s.close()
    # each answer's header block is followed at once by the next status line
    parts = got.split(b"\r\n\r\n")
    assert len(parts) == len(heads) + 2, got
    for path, part in zip(heads[:5], parts):
        assert part.startswith(b"HTTP/1.1 200 "), (path, part)
        if path == "/ready":
            assert b"\r\nContent-Length: 6\r\n" in part + b"\r\n", part
    assert parts[5].startswith(b"HTTP/1.1 404 "), got
    assert parts[6].startswith(b"HTTP/1.1 405 ") and b"Allow: POST" in parts[6], got
    assert parts[7].startswith(b"HTTP/1.1 200 ") and parts[8] == b"ready\n", got
    # a GET route's 405 names HEAD among its methods
    r = NODE.request("DELETE", "/ready")
    assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", r.headers


def test_connection_close_is_honoured():
    s = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    s.sendall(b"GET /ready HTTP/1.1\r\nConnection: close\r\n\r\n")
    got = read_responses(s, 1)
    assert got and got[0][0] == 200
    assert s.recv(10) == b""  # closed by the server
    s.close()
    # HTTP/1.0 without keep-alive closes too
    s = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    s.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
    got = read_responses(s, 1)
    assert got and got[0][0] == 200
    assert s.recv(10) == b""
    s.close()


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        NODE.cleanup()
