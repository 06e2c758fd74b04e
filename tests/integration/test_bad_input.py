"""test_bad_input.py — malformed, hostile and oversized input gets a 4xx with a
JSON reason; the node keeps serving and stored totals stay unchanged."""
import gzip
import re
import socket
import time

from harness import CPU, Node, raw_exchange, run_tests, status_of, unique
from profiles import Pprof, f_bytes, f_varint, folded

NODE = Node(name="bad", args=["--max-body-bytes", "1MiB", "--request-timeout", "2s",
                              "--idle-timeout", "2s", "--max-connections", "16"]).start()
NOW = int(time.time())
SVC = unique("base")
QUERY = CPU + '{service_name="%s"}' % SVC
BASE_TOTAL = 42 * 10**7


def setup_baseline():
    r = NODE.ingest(folded({"main;ok": 42}), name=SVC + ".cpu", **{"from": NOW - 30})
    assert r.status == 200, r
    assert NODE.total(QUERY) == BASE_TOTAL


def still_intact():
    assert NODE.alive(), NODE.log_text()
    assert NODE.get("/ready").status == 200
    assert NODE.total(QUERY) == BASE_TOTAL


def expect(r, status, code=None, words=None):
    assert r.status == status, "want %d, got %r" % (status, r)
    j = r.json()
    assert set(j) >= {"code", "message"} and j["message"], j
    if code:
        assert j["code"] == code, j
    if words:
        assert words.lower() in j["message"].lower(), (words, j)


def test_bad_parameters_400():
    setup_baseline()
    expect(NODE.ingest(folded({"a": 1})), 400, "invalid_parameter", "name")
    expect(NODE.ingest(folded({"a": 1}), name=SVC + ".cpu", **{"from": "soon"}), 400, None, "from")
    expect(NODE.ingest(folded({"a": 1}), name=SVC + ".cpu{unclosed=1", ), 400)
    expect(NODE.render("not a selector{"), 400, "invalid_parameter", "query")
    expect(NODE.render(QUERY, maxNodes="-5"), 400, "invalid_parameter")
    expect(NODE.render(QUERY, frm="now", until="now-1h"), 400)
    still_intact()


def test_bad_integer_parameters_worded_alike():
    """Every route words a bad integer parameter the same way, naming the
    parameter, the value and the range it takes."""
    diff = dict(leftQuery=QUERY, rightQuery=QUERY, leftFrom="now-1h", rightFrom="now-1h")
    asks = [("/api/top", dict(query=QUERY), "limit"), ("/api/diff", diff, "limit"),
            ("/api/profiles", dict(query=QUERY), "limit"),
            ("/pyroscope/render", dict(query=QUERY), "maxNodes")]
    shape = re.compile(r"""^parameter '(\w+)': "([^"]*)" is not an integer """
                       r"(from \d+ to \d+|of \d+ or more)$")
    for path, params, name in asks:
        for bad in ("abc", "-1", "1e3", "99999999999999999999"):
            r = NODE.query(path, **dict(params, **{name: bad}))
            expect(r, 400, "invalid_parameter")
            m = shape.match(r.json()["message"])
            assert m and m.group(1) == name and m.group(2) == bad, (path, bad, r.json())
    for path, params, name in asks[:3]:  # 0 is below every limit's range
        r = NODE.query(path, **dict(params, limit="0"))
        expect(r, 400, "invalid_parameter")
        assert shape.match(r.json()["message"]), (path, r.json())


def test_unparseable_bodies_422():
    p = Pprof([("cpu", "nanoseconds")]).add(["main", "x"], [5])
    good = p.encode()
    cases = {
        "garbage": b"\x08\x96\x01 this is not a profile \xff\xfe",
        "truncated protobuf": good[: len(good) // 2],
        "truncated gzip": gzip.compress(good)[:20],
        "huge varint": f_bytes(2, b"\x12\x0a" + b"\xff" * 10) + b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        "bad string index": f_bytes(1, f_varint(1, 999) + f_varint(2, 998)) + f_bytes(6, b""),
    }
    for what, body in cases.items():
        r = NODE.ingest(body, name=SVC + ".cpu", format="pprof", **{"from": NOW - 25})
        assert 400 <= r.status < 500, (what, r)
        assert r.json()["message"], (what, r)
    # legacy text pprof and binary noise as folded text
    r = NODE.ingest(b"--- heapz 1 ---\n", name=SVC + ".cpu", format="pprof")
    assert 400 <= r.status < 500, r
    # folded lines without a numeric count: 400 naming the line (bad input, not a bad profile)
    r = NODE.ingest(b"main;foo\nmain;bar notanumber\n", name=SVC + ".cpu", **{"from": NOW - 25})
    expect(r, 400, "invalid_parameter", "line 1")
    still_intact()


def test_gzip_bomb_refused():
    bomb = gzip.compress(b"\0" * (200 << 20), 9)  # 200 MiB of zeros in ~200 KiB
    assert len(bomb) < (1 << 20)
    r = NODE.ingest(bomb, name=SVC + ".cpu", format="pprof", **{"from": NOW - 25})
    assert r.status in (413, 422), r
    assert "decompress" in r.json()["message"].lower() or r.status == 413, r
    still_intact()


def test_body_too_large_413_early():
    # Content-Length alone is enough: no body byte is sent
    raw = raw_exchange(NODE.port, b"POST /ingest?name=x.cpu HTTP/1.1\r\nHost: t\r\n"
                                  b"Content-Length: 5000000\r\n\r\n")
    assert status_of(raw) == 413, raw
    assert b'"code":"too_large"' in raw and b"max-body-bytes" in raw, raw
    # and a chunked body is counted as it arrives
    s = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    s.sendall(b"POST /ingest?name=x.cpu HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a;b 1\n" * 20000
    try:
        for _ in range(20):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:
        pass  # the server answered and closed while we were still sending
    got = b""
    for _ in range(100):
        try:
            c = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not c:
            break
        got += c
    s.close()
    assert status_of(got) == 413, got[:200]
    still_intact()


def test_huge_headers_431():
    raw = raw_exchange(NODE.port, b"GET /ready HTTP/1.1\r\nX-Big: " + b"h" * 100000 + b"\r\n\r\n")
    assert status_of(raw) == 431, raw[:200]
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    raw = raw_exchange(NODE.port, b"GET /ready HTTP/1.1\r\n" + many + b"\r\n")
    assert status_of(raw) == 431, raw[:200]
    still_intact()


def test_malformed_http_400():
    raw = raw_exchange(NODE.port, b"GET /ready HTTP/2.0\r\n\r\n")
    assert status_of(raw) == 505, raw[:200]
    for junk in (b"\x00\x01\x02\x03garbage\r\n\r\n", b"GET /ready HTTP/1.1 extra\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"):
        raw = raw_exchange(NODE.port, junk)
        assert status_of(raw) == 400, (junk, raw[:200])
    still_intact()


def test_slowloris_and_idle_connections():
    # A request trickled a byte at a time gets 408 at request-timeout (2 s),
    # and does not block anybody else meanwhile.
    slow = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    slow.sendall(b"GET /ready HTTP/1.1\r\nX-Slow: ")
    idle = socket.create_connection(("127.0.0.1", NODE.port), timeout=10)
    t0 = time.monotonic()
    got = b""
    for _ in range(60):
        assert NODE.get("/ready", timeout=2).status == 200  # others are served
        try:
            slow.sendall(b"a")
        except OSError:
            break
        slow.settimeout(0.1)
        try:
            c = slow.recv(4096)
            if not c:
                break
            got += c
            if b"\r\n\r\n" in got:
                break
        except socket.timeout:
            pass
    took = time.monotonic() - t0
    assert status_of(got) == 408, got
    assert 1.5 < took < 6, took
    # the idle connection was closed silently at idle-timeout (2 s)
    idle.settimeout(6)
    assert idle.recv(100) == b""
    slow.close()
    idle.close()
    still_intact()


def test_max_connections_503():
    # 20 connections held open at once: at most 16 (max-connections) are served,
    # the others get 503 naming the setting. (Connections of earlier requests
    # may still hold a slot for a moment, so the split is not exact.)
    socks = [socket.create_connection(("127.0.0.1", NODE.port), timeout=5) for _ in range(20)]
    time.sleep(0.2)
    statuses = []
    for s in socks:
        try:
            s.sendall(b"GET /ready HTTP/1.1\r\n\r\n")
            raw = s.recv(4096)
        except OSError:
            raw = b""
        statuses.append(status_of(raw))
        if statuses[-1] == 503:
            assert b"max-connections" in raw, raw
    for s in socks:
        s.close()
    assert statuses.count(200) <= 16 and statuses.count(503) >= 4, statuses
    assert set(statuses) <= {200, 503}, statuses
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the closes reach the node asynchronously
        if status_of(raw_exchange(NODE.port, b"GET /ready HTTP/1.1\r\n\r\n")) == 200:
            break
        time.sleep(0.05)
    still_intact()


def test_bad_tenant_and_errors_counted():
    r = NODE.ingest(folded({"a": 1}), tenant="../etc", name=SVC + ".cpu")
    expect(r, 400, "invalid_parameter", "X-Scope-OrgID")
    assert NODE.metric("flamedb_errors_total") > 0
    text = NODE.get("/metrics").body.decode()
    assert 'route="ingest",status="400"' in text
    assert "flamedb_http_too_large_total" in text
    still_intact()


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        NODE.cleanup()
