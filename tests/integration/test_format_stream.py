"""test_format_stream.py — large SVG, pprof, JSON and speedscope renders,
large answers of one stored profile, a large folded, speedscope, SVG or
JSON render-diff, a large groupBy render, label-values list and
/api/profiles listing are sent as they are written.

Two services: "deep" is one push of LEAVES stacks through a chain of DEPTH
frames (a small tree, but a pprof of 2,000,000 stack entries and a folded
text of about 10 MB, as its render-diff with itself, and a speedscope file
of about as much, twice that for the diff), "wide" is WIDE leaves
with long names under a few frames (an SVG of about 4 MB, a JSON flame
graph of 2.2 MB at maxNodes=65536, an SVG render-diff of it with itself of
5.7 MB, refused whole at 20 MiB). A third, "dense", has a JSON render-diff
of 4.3 MB refused whole at 22 MiB. With a small query-memory-bytes the
trees fit and the answers do not: written whole into memory
(query-stream-bytes 0) each is refused naming query-memory-bytes; streamed
each answers 200 with exactly the bytes a node with room for the whole
answer sends: folded texts with their Content-Length, the SVG, the JSON,
the speedscope files and the gzipped pprof (gzip members, one per 256 KiB of the packed profile) in
chunks. The streamed pprof decompresses with gzip and ingests back as the
same stacks.

A client of each answer that resets the connection after its first bytes
gives the answer's tree back to the budget (flamedb_scatter_memory_bytes
back to 0); chunks are framed as HTTP/1.1 says; an HTTP/1.0 client, which
cannot read chunks, gets the same bytes ended by the connection's close."""
import gzip
import socket
import time
import urllib.parse

from harness import CPU, Node, all_given_back, held, read_head, restart, run_tests
from profiles import Pprof

DEPTH, LEAVES = 1000, 2000
WIDE, WIDE_BATCH = 20000, 5000
T0 = int(time.time()) - 300
DEEP_Q = CPU + '{service_name="deep"}'
WIDE_Q = CPU + '{service_name="wide"}'
BIG, SMALL = "64MiB", "8MiB"
STREAM = "256KiB"  # the JSON answer (2.2 MB) streams from a lower bound of 0.5 MB


def push(node):
    chain = ";".join("c%03d" % d for d in range(DEPTH))
    lines = ["%s;leaf%05d %d\n" % (chain, i, 1 + i % 5) for i in range(LEAVES)]
    r = node.ingest("".join(lines).encode(), name="deep.cpu", **{"from": T0})
    assert r.status == 200, r
    for b in range(0, WIDE, WIDE_BATCH):
        lines = ["main;serve;github.com/acme/widget/internal/handlers/v%05d.(*Server).Handle"
                 "RequestWithRetries %d\n" % (i, 1 + i % 3) for i in range(b, b + WIDE_BATCH)]
        r = node.ingest("".join(lines).encode(), name="wide.cpu", **{"from": T0})
        assert r.status == 200, r


def window():
    return {"from": str(T0 - 60), "until": str(T0 + 60)}


def profile_id(node):
    r = node.query("/api/profiles", query=DEEP_Q, **window())
    assert r.status == 200, r
    profiles = r.json()["profiles"]
    assert len(profiles) == 1, profiles
    return profiles[0]["id"]


def answers(node, pid):
    """name -> (path, params) of each large answer."""
    return {
        "render pprof": ("/pyroscope/render", dict(query=DEEP_Q, format="pprof", **window())),
        "render svg": ("/pyroscope/render",
                       dict(query=WIDE_Q, format="svg", maxNodes="65536", **window())),
        "render json": ("/pyroscope/render",
                        dict(query=WIDE_Q, format="json", maxNodes="65536", **window())),
        "render speedscope": ("/pyroscope/render",
                              dict(query=DEEP_Q, format="speedscope", **window())),
        "profile speedscope": ("/api/profiles/" + pid, dict(format="speedscope")),
        "profile folded": ("/api/profiles/" + pid, dict(format="folded")),
        "profile pprof": ("/api/profiles/" + pid, dict(format="pprof")),
        "render-diff folded": ("/pyroscope/render-diff", dict(
            leftQuery=DEEP_Q, leftFrom=str(T0 - 60), leftUntil=str(T0 + 60),
            rightQuery=DEEP_Q, rightFrom=str(T0 - 60), rightUntil=str(T0 + 1),
            format="folded")),
        "render-diff speedscope": ("/pyroscope/render-diff", dict(
            leftQuery=DEEP_Q, leftFrom=str(T0 - 60), leftUntil=str(T0 + 60),
            rightQuery=DEEP_Q, rightFrom=str(T0 - 60), rightUntil=str(T0 + 1),
            format="speedscope")),
    }


# "wide" with itself: both sides' trees are larger than one render's, so the
# budget is larger too (DIFF_SMALL: the joined trees fit, the SVG of 5.7 MB
# written whole beside its frames does not)
DIFF_SVG = ("/pyroscope/render-diff", dict(
    leftQuery=WIDE_Q, leftFrom=str(T0 - 60), leftUntil=str(T0 + 60),
    rightQuery=WIDE_Q, rightFrom=str(T0 - 60), rightUntil=str(T0 + 1),
    format="svg", maxNodes="65536"))
DIFF_SMALL = "20MiB"
# "dense": DENSE leaves with short names and values of 8 to 9 digits
# (14 in nanoseconds) under one frame, whose double flamebearer (4.3 MB, its
# levels as large as the joined trees) fits JSON_SMALL streamed, not whole
DENSE, JSON_SMALL = 50000, "22MiB"
DENSE_Q = CPU + '{service_name="dense"}'
DIFF_JSON = ("/pyroscope/render-diff", dict(
    leftQuery=DENSE_Q, leftFrom=str(T0 - 60), leftUntil=str(T0 + 60),
    rightQuery=DENSE_Q, rightFrom=str(T0 - 60), rightUntil=str(T0 + 1),
    format="json", maxNodes="65536"))


def push_dense(node):
    for b in range(0, DENSE, 10000):
        lines = ["m;f%05d %d\n" % (i, 1000000 + i * 7919) for i in range(b, b + 10000)]
        r = node.ingest("".join(lines).encode(), name="dense.cpu", **{"from": T0})
        assert r.status == 200, r


def fetch(node, what):
    path, params = what
    return node.query(path, **params)


def folded_lines(body):
    return sorted(body.decode().splitlines())


def test_large_answers_past_the_budget():
    with Node(args=["--query-memory-bytes", BIG, "--query-stream-bytes", "0"]) as n:
        push(n)
        pid = profile_id(n)
        todo = answers(n, pid)
        ref = {}
        for name, what in todo.items():
            r = fetch(n, what)
            assert r.status == 200, (name, r)
            assert "transfer-encoding" not in r.headers, (name, r.headers)
            assert int(r.headers["content-length"]) == len(r.body)
            assert len(r.body) > 1024 * 1024 or name.endswith("pprof"), (name, len(r.body))
            ref[name] = r
        all_given_back(n)

        restart(n, ["--query-memory-bytes", SMALL, "--query-stream-bytes", "0"])
        for name, what in todo.items():
            r = fetch(n, what)
            assert r.status in (413, 503), (name, r)
            assert b"query-memory-bytes" in r.body, (name, r.body)
            all_given_back(n)

        restart(n, ["--query-memory-bytes", SMALL, "--query-stream-bytes", STREAM])
        for name, what in todo.items():
            r = fetch(n, what)
            assert r.status == 200, (name, r)
            assert r.headers.get("content-type") == ref[name].headers.get("content-type")
            if name.endswith("folded"):
                assert int(r.headers["content-length"]) == len(ref[name].body)
            else:
                assert r.headers.get("transfer-encoding") == "chunked", (name, r.headers)
                assert "content-length" not in r.headers, (name, r.headers)
            assert r.body == ref[name].body, "%s: the streamed answer differs" % name
            all_given_back(n)

        # the pprof: several gzip members (a gzip file), the profile's stacks
        raw = gzip.decompress(ref["profile pprof"].body)
        assert len(raw) > 256 * 1024, len(raw)
        assert ref["profile pprof"].body.count(b"\x1f\x8b\x08") >= 2
        r = n.ingest(ref["profile pprof"].body, name="again.cpu", format="pprof",
                     **{"from": T0})
        assert r.status == 200, r
        want = fetch(n, todo["profile folded"])
        got = n.render(CPU + '{service_name="again"}', str(T0 - 60), str(T0 + 60), fmt="folded")
        assert got.status == 200 and want.status == 200, (got, want)
        assert folded_lines(got.body) == folded_lines(want.body)
        all_given_back(n)


def svg_request(version="1.1", keep_alive=False):
    q = "&".join("%s=%s" % kv for kv in [("query", WIDE_Q.replace(":", "%3A").replace(
        "{", "%7B").replace("}", "%7D").replace('"', "%22").replace("=", "%3D")),
        ("format", "svg"), ("maxNodes", "65536")] + sorted(window().items()))
    return ("GET /pyroscope/render?%s HTTP/%s\r\nHost: x\r\n%s\r\n"
            % (q, version, "" if keep_alive else "Connection: close\r\n")).encode()


def open_svg(node, version="1.1", rcvbuf=16384):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", node.port))
    s.sendall(svg_request(version))
    return s


def read_all(s, data):
    for _ in range(1000000):
        c = s.recv(256 * 1024)
        if not c:
            return data
        data += c
    raise AssertionError("the answer never ended")


def unchunk(data):
    """The body of chunked data, asserting its framing and its last chunk."""
    body, pos = b"", 0
    for _ in range(1000000):
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            assert data[pos:] == b"\r\n", data[pos:pos + 40]
            return body
        body += data[pos:pos + size]
        assert data[pos + size:pos + size + 2] == b"\r\n"
        pos += size + 2
    raise AssertionError("too many chunks")


def raw_request(node, what, version="1.1", rcvbuf=16384):
    """A socket that asked for what (path, params) and reads slowly."""
    path, params = what
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", node.port))
    s.sendall(("GET %s?%s HTTP/%s\r\nHost: x\r\nConnection: close\r\n\r\n"
               % (path, urllib.parse.urlencode(params), version)).encode())
    return s


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_reset_mid_stream_gives_back():
    """A client of each streamed answer that resets the connection after its
    first bytes: the answer's tree goes back to the budget; the node answers
    the same bytes after."""
    with Node(args=["--query-memory-bytes", SMALL, "--query-stream-bytes", STREAM]) as n:
        push(n)
        todo = answers(n, profile_id(n))
        for name, what in todo.items():
            ref = fetch(n, what)
            assert ref.status == 200, (name, ref)
            all_given_back(n)
            s = raw_request(n, what, rcvbuf=4096)
            status, _, body = read_head(s)
            assert status == 200, name
            if len(ref.body) > 4 * 1024 * 1024:  # more than the sockets hold: still being sent
                assert held(n) > 0, "%s: the streamed answer's tree is not counted" % name
            got = len(body)
            while got < min(256 * 1024, len(ref.body) // 2):
                c = s.recv(65536)
                assert c, name
                got += len(c)
            reset(s)
            all_given_back(n)
            again = fetch(n, what)
            assert again.status == 200 and again.body == ref.body, name
            all_given_back(n)
        assert n.alive()


def refused_whole_then_streamed(n, path, small, ref, content_type=None):
    """The render-diff (or groupBy render) at path: refused whole at small,
    then streamed there (chunked) with ref's bytes; a reset mid-stream gives
    what it holds back."""
    restart(n, ["--query-memory-bytes", small, "--query-stream-bytes", "0"])
    r = fetch(n, path)
    assert r.status in (413, 503), r
    assert b"query-memory-bytes" in r.body, r.body
    all_given_back(n)

    restart(n, ["--query-memory-bytes", small, "--query-stream-bytes", STREAM])
    r = fetch(n, path)
    assert r.status == 200, r
    if content_type is not None:
        assert r.headers.get("content-type") == content_type, r.headers
    assert r.headers.get("transfer-encoding") == "chunked", r.headers
    assert "content-length" not in r.headers, r.headers
    assert r.body == ref.body, "the streamed answer differs from the whole one"
    all_given_back(n)

    s = raw_request(n, path, rcvbuf=4096)
    status, _, body = read_head(s)
    assert status == 200, status
    assert held(n) > 0, "what the streamed answer is written from is not counted"
    got = len(body)
    while got < 256 * 1024:
        c = s.recv(65536)
        assert c
        got += len(c)
    reset(s)
    all_given_back(n)
    again = fetch(n, path)
    assert again.status == 200 and again.body == ref.body
    all_given_back(n)
    assert n.alive()


def test_svg_render_diff_past_the_budget():
    """The SVG render-diff: refused whole at DIFF_SMALL, streamed there with
    the bytes of the whole answer; a reset mid-stream gives its trees and
    colouring back."""
    with Node(args=["--query-memory-bytes", BIG, "--query-stream-bytes", "0"]) as n:
        push(n)
        ref = fetch(n, DIFF_SVG)
        assert ref.status == 200, ref
        assert int(ref.headers["content-length"]) == len(ref.body) > 4 * 1024 * 1024
        assert ref.body.count(b"<g") > WIDE and b"change: " in ref.body
        all_given_back(n)

        refused_whole_then_streamed(n, DIFF_SVG, DIFF_SMALL, ref, "image/svg+xml")


def test_json_render_diff_streamed():
    """The double flamebearer of a render-diff: refused whole at JSON_SMALL,
    streamed there with the bytes of the whole answer; a reset mid-stream
    gives its trees back."""
    with Node(args=["--query-memory-bytes", BIG, "--query-stream-bytes", "0"]) as n:
        push_dense(n)
        ref = fetch(n, DIFF_JSON)
        assert ref.status == 200, ref
        assert int(ref.headers["content-length"]) == len(ref.body) > 4 * 1024 * 1024
        assert ref.json()["metadata"]["format"] == "double", ref.body[-200:]
        all_given_back(n)

        refused_whole_then_streamed(n, DIFF_JSON, JSON_SMALL, ref)


# "wider": three times "wide"'s leaves, a JSON flame graph of 6.6 MB (more
# than the sockets' buffers hold, so a slow reader holds it mid-answer),
# whose groupBy render is refused whole at DIFF_SMALL
WIDER = 60000
WIDER_Q = CPU + '{service_name="wider"}'
GROUP_JSON = ("/pyroscope/render", dict(query=WIDER_Q, format="json", maxNodes="65536",
                                       groupBy="service_name", **window()))


def push_wider(node):
    for b in range(0, WIDER, WIDE_BATCH):
        lines = ["main;serve;github.com/acme/widget/internal/handlers/v%05d.(*Server).Handle"
                 "RequestWithRetries %d\n" % (i, 1 + i % 3) for i in range(b, b + WIDE_BATCH)]
        r = node.ingest("".join(lines).encode(), name="wider.cpu", **{"from": T0})
        assert r.status == 200, r


def test_group_by_render_streamed():
    """A groupBy render of "wider"'s JSON flame graph: refused whole at
    DIFF_SMALL, streamed there (the render's stream, then the groups
    member, never copied into one buffer) with the bytes of the whole
    answer; a reset mid-stream gives the render's tree and the member
    back."""
    with Node(args=["--query-memory-bytes", BIG, "--query-stream-bytes", "0"]) as n:
        push_wider(n)
        ref = fetch(n, GROUP_JSON)
        assert ref.status == 200, ref
        assert int(ref.headers["content-length"]) == len(ref.body) > 6 * 1024 * 1024
        assert list(ref.json()["groups"]) == ["wider"], ref.body[-300:]
        plain = dict(GROUP_JSON[1])
        del plain["groupBy"]
        alone = fetch(n, (GROUP_JSON[0], plain))
        assert alone.status == 200 and ref.body.startswith(alone.body[:-1] + b',"groups":{')
        all_given_back(n)

        top = ("/api/top", dict(query=WIDER_Q, limit="10000", **window()))
        top_ref = fetch(n, top)
        assert top_ref.status == 200 and len(top_ref.json()["functions"]) == 10000, top_ref

        refused_whole_then_streamed(n, GROUP_JSON, DIFF_SMALL, ref, "application/json")

        # the top table (at most 10,000 rows) stays whole: complete where it
        # fits, else refused naming the budget, charged before it is made
        restart(n, ["--query-memory-bytes", "32MiB"])
        r = fetch(n, top)
        assert r.status == 200 and r.body == top_ref.body, r
        for small in ("12MiB", "4MiB"):  # refused, never short nor partial: no node is down
            restart(n, ["--query-memory-bytes", small])
            r = fetch(n, top)
            assert r.status in (413, 503) and b"query-memory-bytes" in r.body, (small, r)
            all_given_back(n)
        assert n.alive()


# "pods": PODS series, each its own value of the label pod (250 bytes), a
# label-values answer of 5 MB: the merged values fit VALUES_SMALL, the values
# and their JSON written whole beside them do not
PODS, PODS_PER_PUSH, VALUES_SMALL = 20000, 1000, "14MiB"
POD_VALUES = ("/pyroscope/label-values", dict(label="pod"))


def push_pods(node):
    for b in range(0, PODS, PODS_PER_PUSH):
        p = Pprof([("cpu", "nanoseconds")], time_ns=T0 * 10**9, duration_ns=10**9)
        for i in range(b, b + PODS_PER_PUSH):
            p.add(["main", "work"], [10], {"pod": "pod-%06d-" % i + "x" * 240})
        r = node.ingest(p.encode(), name="pods.cpu", format="pprof", **{"from": T0})
        assert r.status == 200, r


# 10,000 of them (at most query-max-series), each one profile: a listing of
# 5.5 MB, refused whole at VALUES_SMALL too
POD_PROFILES = ("/api/profiles", dict(query=CPU + '{service_name="pods",pod=~"pod-00.*"}',
                                      limit="10000", **window()))


def test_label_values_and_listing_streamed():
    """A long label-values list and a long /api/profiles listing: each
    refused whole at VALUES_SMALL, streamed there from the merged values or
    entries (never their JSON whole) with the bytes of the whole answer; a
    reset mid-stream gives them back."""
    with Node(args=["--query-memory-bytes", BIG, "--query-stream-bytes", "0"]) as n:
        push_pods(n)
        ref = fetch(n, POD_VALUES)
        assert ref.status == 200, ref
        assert int(ref.headers["content-length"]) == len(ref.body) > 5 * 1000 * 1000
        values = ref.json()
        assert len(values) == PODS and values == sorted(values), values[:3]
        all_given_back(n)

        listing = fetch(n, POD_PROFILES)
        assert listing.status == 200, listing
        assert int(listing.headers["content-length"]) == len(listing.body) > 5 * 1000 * 1000
        doc = listing.json()
        assert len(doc["profiles"]) == 10000 and doc["truncated"] is False, listing.body[-200:]
        all_given_back(n)

        refused_whole_then_streamed(n, POD_VALUES, VALUES_SMALL, ref, "application/json")
        refused_whole_then_streamed(n, POD_PROFILES, VALUES_SMALL, listing, "application/json")

        # the same budget derived from a small memory-limit (a sixteenth), the
        # other settings at their defaults: both answers complete
        restart(n, ["--memory-limit", "224MiB"])
        for what, want in ((POD_VALUES, ref), (POD_PROFILES, listing)):
            r = fetch(n, what)
            assert r.status == 200 and r.body == want.body, (what[0], r)
            all_given_back(n)
        assert n.alive()


def test_chunked_readers():
    with Node(args=["--query-memory-bytes", SMALL]) as n:
        push(n)
        ref = n.render(WIDE_Q, str(T0 - 60), str(T0 + 60), fmt="svg", maxNodes="65536")
        assert ref.status == 200 and len(ref.body) > 2 * 1024 * 1024, ref
        assert ref.headers.get("transfer-encoding") == "chunked"
        assert ref.body.startswith(b"<?xml") and ref.body.endswith(b"</svg>\n")
        all_given_back(n)

        # read as the raw bytes: chunks, then the last chunk
        s = open_svg(n)
        status, hdrs, body = read_head(s)
        assert status == 200 and hdrs.get("transfer-encoding") == "chunked", hdrs
        assert unchunk(read_all(s, body)) == ref.body
        s.close()
        all_given_back(n)

        # HTTP/1.0 has no chunks: the body ends when the connection closes
        s = open_svg(n, version="1.0")
        status, hdrs, body = read_head(s)
        assert status == 200, hdrs
        assert "transfer-encoding" not in hdrs and "content-length" not in hdrs, hdrs
        assert read_all(s, body) == ref.body
        s.close()
        all_given_back(n)

        # a client that resets the connection in the middle of the chunks
        s = open_svg(n, rcvbuf=4096)
        status, _, body = read_head(s)
        assert status == 200
        got = len(body)
        while got < 512 * 1024:
            c = s.recv(65536)
            assert c
            got += len(c)
        assert held(n) > 0, "the streamed answer's tree is not counted"
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset
        all_given_back(n)

        again = n.render(WIDE_Q, str(T0 - 60), str(T0 + 60), fmt="svg", maxNodes="65536")
        assert again.status == 200 and again.body == ref.body
        all_given_back(n)
        assert n.alive()


if __name__ == "__main__":
    run_tests(globals())
