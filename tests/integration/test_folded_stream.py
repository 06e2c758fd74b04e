"""test_folded_stream.py — a large folded render is sent as it is written.

LEAVES stacks run through a chain of DEPTH long frames before a leaf of
their own: a merged tree of about 1,600 nodes and a folded answer of about
12 MB. With query-memory-bytes at 4 MiB the tree fits and the answer does
not: written whole into memory (query-stream-bytes 0, the old path) the
render is refused 413 naming query-memory-bytes; streamed, it answers 200
with exactly the bytes a node with room for the whole answer sends.

While a streamed answer is sent its merged tree stays on the query budget
(flamedb_scatter_memory_bytes above 0) and is given back with the last
byte: for a client that reads slowly (the answer arrives whole, the node
answers others meanwhile), one that stops reading (cut at request-timeout,
or at shutdown-timeout when the node stops) and one that closes the
connection in the middle of the body. Each time the
budget's gauge and the HTTP server's buffered bytes return to 0 and the
node renders the same bytes again."""
import socket
import time

from cluster import wait_for
from harness import CPU, Node, all_given_back, held, read_head, restart, run_tests

DEPTH, LEAVES, BATCH = 100, 1500, 250
T0 = int(time.time()) - 300


def frame(d):
    return "github.com/acme/svc/internal/layer%03d/handlers.(*Request%03d).ServeWithRetries" \
           "AndDeadlines" % (d, d)


def push(node):
    """Pushes the stacks; returns {folded path: count pushed}."""
    chain = ";".join(frame(d) for d in range(DEPTH))
    want = {}
    for b in range(0, LEAVES, BATCH):
        lines = []
        for i in range(b, b + BATCH):
            path = "%s;leaf.fn%05d" % (chain, i)
            want[path] = 1 + i % 7
            lines.append("%s %d\n" % (path, want[path]))
        r = node.ingest("".join(lines).encode(), name="app.cpu", **{"from": T0})
        assert r.status == 200, r
    return want


def render(node):
    return node.render(CPU + "{}", str(T0 - 60), str(T0 + 60), fmt="folded")


def request_bytes():
    return ("GET /pyroscope/render?query=%s&from=%d&until=%d&format=folded HTTP/1.1\r\n"
            "Host: x\r\nConnection: close\r\n\r\n"
            % (CPU.replace(":", "%3A") + "%7B%7D", T0 - 60, T0 + 60)).encode()


def open_render(node, rcvbuf=16384):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", node.port))
    s.sendall(request_bytes())
    return s


def test_streamed_answer_past_the_budget():
    with Node(args=["--query-memory-bytes", "64MiB", "--query-stream-bytes", "0"]) as n:
        want = push(n)
        whole = render(n)  # the old path with room for the answer: the reference bytes
        assert whole.status == 200, whole
        assert len(whole.body) > 10 * 1024 * 1024, len(whole.body)
        got = {}
        for line in whole.body.decode().splitlines():
            path, value = line.rsplit(" ", 1)
            got[path] = int(value)
        assert set(got) == set(want), "folded paths differ from the pushed stacks"
        ratio = got[next(iter(want))] // want[next(iter(want))]
        assert all(got[p] == v * ratio for p, v in want.items())

        restart(n, ["--query-memory-bytes", "4MiB", "--query-stream-bytes", "0"])
        r = render(n)
        assert r.status == 413, r
        assert b"query-memory-bytes" in r.body, r.body
        all_given_back(n)

        restart(n, ["--query-memory-bytes", "4MiB"])  # streamed by default (1 MiB)
        r = render(n)
        assert r.status == 200, r
        assert r.headers.get("content-type") == whole.headers.get("content-type"), r.headers
        assert int(r.headers["content-length"]) == len(whole.body)
        assert r.body == whole.body, "the streamed answer differs from the whole one"
        all_given_back(n)


def test_slow_stalled_and_leaving_readers():
    with Node(args=["--query-memory-bytes", "4MiB", "--request-timeout", "3s"]) as n:
        push(n)
        ref = render(n)
        assert ref.status == 200 and len(ref.body) > 10 * 1024 * 1024, ref
        all_given_back(n)

        # a slow reader: the tree stays charged while it reads; the node
        # answers others meanwhile; the answer arrives whole
        s = open_render(n)
        status, hdrs, body = read_head(s)
        assert status == 200, (status, hdrs)
        length = int(hdrs["content-length"])
        assert length == len(ref.body)
        assert held(n) > 0, "the streamed answer's tree is not counted"
        assert n.get("/ready").status == 200
        chunks = [body]
        got = len(body)
        for i in range(100000):
            if got >= length:
                break
            c = s.recv(256 * 1024)
            assert c, "closed after %d of %d bytes" % (got, length)
            chunks.append(c)
            got += len(c)
            if i % 20 == 0:
                time.sleep(0.01)
        s.close()
        assert b"".join(chunks) == ref.body
        all_given_back(n)

        # a reader that stops reading: cut at request-timeout, all given back
        s = open_render(n, rcvbuf=4096)
        status, _, _ = read_head(s)
        assert status == 200
        assert held(n) > 0
        time.sleep(1)
        assert held(n) > 0, "given back before the answer was sent or given up"
        all_given_back(n)
        s.close()

        # a reader that closes the connection in the middle of the body
        s = open_render(n)
        status, _, body = read_head(s)
        assert status == 200
        got = len(body)
        while got < 1024 * 1024:
            c = s.recv(65536)
            assert c
            got += len(c)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset
        all_given_back(n)

        again = render(n)
        assert again.status == 200 and again.body == ref.body
        all_given_back(n)
        assert n.alive()


def test_stream_holds_its_tenant_query_slot():
    """With tenant-max-queries 1, a query of the tenant is refused (429)
    while its streamed answer is still being sent, and admitted after."""
    with Node(args=["--query-memory-bytes", "4MiB", "--tenant-max-queries", "1"]) as n:
        push(n)
        s = open_render(n, rcvbuf=4096)
        status, hdrs, body = read_head(s)
        assert status == 200, (status, hdrs)
        length = int(hdrs["content-length"])
        r = n.get("/pyroscope/label-names")
        assert r.status == 429, (r.status, r.body[:200])
        got = len(body)
        for _ in range(100000):
            if got >= length:
                break
            c = s.recv(256 * 1024)
            assert c, "closed after %d of %d bytes" % (got, length)
            got += len(c)
        s.close()
        all_given_back(n)
        wait_for("the slot given back", lambda: n.get("/pyroscope/label-names").status == 200,
                 timeout=10)


def test_stop_while_a_reader_stalls():
    """SIGTERM while a streamed answer waits on a client that does not read:
    the connection is cut at shutdown-timeout and the node exits cleanly."""
    with Node(args=["--query-memory-bytes", "4MiB", "--request-timeout", "60s",
                    "--shutdown-timeout", "1s"]) as n:
        push(n)
        s = open_render(n, rcvbuf=4096)
        status, _, _ = read_head(s)
        assert status == 200
        assert held(n) > 0
        rc, took = n.stop(timeout=20)
        s.close()
        assert rc == 0, (rc, n.log_text())
        assert took < 10, took


if __name__ == "__main__":
    run_tests(globals())
