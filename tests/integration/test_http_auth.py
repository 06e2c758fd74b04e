"""test_http_auth.py — --auth-file: tokens, roles, tenants, SIGHUP reload,
flamectl's token, libflamedb's token from $FLAMEDB_TOKEN; and the header rules that keep a gateway's checks honest
(duplicate singleton headers, chunked trailers)."""
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness
from harness import CPU, Node, raw_exchange, run_tests, status_of, unique

# a folded sample at the default sample rate (100 Hz) is 10 ms of CPU
TICK = 10_000_000
CTL = os.environ.get("FLAMECTL_BIN", os.path.join(harness.ROOT, "build", "bin", "flamectl"))

TOKENS = {
    "r": ("acme", "read", "reader-token-1"),
    "w": ("acme", "write", "writer-token-1"),
    "a": ("acme", "admin", "admin-token-1"),
    "o": ("other", "write", "other-writer-1"),
}


def sha(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def auth_file(entries, extra=""):
    fd, path = tempfile.mkstemp(prefix="flamedb-auth-")
    with os.fdopen(fd, "w") as f:
        f.write("# tenant role sha256\n\n")
        for tenant, role, tok in entries:
            f.write("%s %s %s\n" % (tenant, role, sha(tok)))
        f.write(extra)
    return path


def bearer(key):
    return {"Authorization": "Bearer " + TOKENS[key][2]}


_pushes = [0]


def push(node, headers, name):
    """Pushes 7 samples; each push has its own time, so none is a retry of another."""
    _pushes[0] += 1
    t = int(time.time()) - 600 + _pushes[0]
    return node.request("POST", "/ingest?name=%s&from=%d&until=%d" % (name, t, t + 1),
                        b"main;work 7\n", headers)


def render(node, headers, name):
    q = "%s{service_name=\"%s\"}" % (CPU, name)
    import urllib.parse
    return node.get("/pyroscope/render?" + urllib.parse.urlencode(
        {"query": q, "from": "now-1h", "until": "now", "format": "json"}), headers)


def test_roles_and_tenants():
    path = auth_file(TOKENS.values())
    try:
        with Node(args=["--auth-file", path]) as n:
            app = unique("authapp")
            r = push(n, {}, app)
            assert r.status == 401, r
            assert "www-authenticate" in r.headers, r.headers
            raw = raw_exchange(n.port, b"GET /api/top HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(raw) == 401 and b"WWW-Authenticate: Bearer" in raw, raw
            assert b"WWW-Authenticate: Basic" in raw, raw
            assert push(n, {"Authorization": "Bearer nope"}, app).status == 401
            assert push(n, {"Authorization": "Token x"}, app).status == 401
            r = push(n, bearer("r"), app)
            assert r.status == 403 and b"read" in r.body, r
            r = push(n, dict(bearer("w"), **{"X-Scope-OrgID": "other"}), app)
            assert r.status == 403 and b"other" in r.body, r
            assert push(n, bearer("w"), app).status == 200
            # Basic auth with the token as password (Pyroscope SDKs)
            basic = base64.b64encode(b"12345:" + TOKENS["w"][2].encode()).decode()
            assert push(n, {"Authorization": "Basic " + basic}, app).status == 200
            assert push(n, bearer("o"), app).status == 200  # another tenant's data
            # reads: the read token sees acme's two pushes, not other's one
            assert render(n, bearer("w"), app).status == 403
            r = render(n, bearer("r"), app)
            assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == 14 * TICK, r
            r = render(n, dict(bearer("a"), **{"X-Scope-OrgID": "acme"}), app)
            assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == 14 * TICK, r
            assert render(n, {}, app).status == 401
            # open and admin routes
            assert n.get("/ready").status == 200
            assert n.get("/metrics").status == 200
            assert n.get("/cluster/status").status == 401
            assert n.get("/cluster/status", bearer("r")).status == 403
            assert n.get("/cluster/status", bearer("a")).status == 200
            acc = "/cluster/accept-copy?node=" + n.get("/cluster/status", bearer("a")).json()["self"]
            assert n.request("POST", acc, headers=bearer("w")).status == 403
            r = n.request("POST", acc, headers=bearer("a"))  # not in a full repair
            assert r.status == 409 and r.json()["code"] == "conflict", r
            assert n.get("/no/such/route").status == 401  # no route probing
            # the web UI's page and files are open (they hold no data); its
            # calls get only the Bearer challenge, so the page's own sign-in
            # form asks for the token instead of the browser's dialog
            assert n.get("/").status == 200
            assert n.get("/ui/app.js").status == 200
            assert n.get("/ui/../api/top").status in (400, 404)
            assert n.get("/uix").status == 401
            raw = raw_exchange(n.port, b"GET /api/top HTTP/1.1\r\nHost: x\r\nX-Flamedb-UI: 1\r\n\r\n")
            assert status_of(raw) == 401 and b"WWW-Authenticate: Bearer" in raw, raw
            assert b"WWW-Authenticate: Basic" not in raw, raw
        with Node(args=["--auth-file", path, "--open-metrics", "0"]) as n:
            assert n.get("/metrics").status == 401
            assert n.get("/metrics", bearer("r")).status == 200
            assert n.get("/ready").status == 200
    finally:
        os.unlink(path)


def test_flamectl_token():
    path = auth_file(TOKENS.values())
    try:
        with Node(args=["--auth-file", path]) as n:
            url = "http://127.0.0.1:%d" % n.port
            app = unique("ctlapp")
            fd, folded = tempfile.mkstemp(suffix=".txt")
            os.write(fd, b"main;f 3\n")
            os.close(fd)
            env = dict(os.environ)
            env.pop("FLAMEDB_TOKEN", None)
            cmd = [CTL, "--url", url, "push", folded, "--name", app, "--format", "folded"]
            p = subprocess.run(cmd, env=env, capture_output=True, timeout=30)
            assert p.returncode == 1, p
            p = subprocess.run(cmd[:3] + ["--token", TOKENS["w"][2]] + cmd[3:], env=env,
                               capture_output=True, timeout=30)
            assert p.returncode == 0, p
            env["FLAMEDB_TOKEN"] = TOKENS["r"][2]
            q = [CTL, "--url", url, "query", "%s{service_name=\"%s\"}" % (CPU, app),
                 "--output", "folded"]
            p = subprocess.run(q, env=env, capture_output=True, timeout=30)
            assert p.returncode == 0 and b"main;f 3" in p.stdout, p
            os.unlink(folded)
    finally:
        os.unlink(path)


# A program that embeds the built libflamedb and sets no bearer_token: what
# it sends is up to the library. Exits with the negated FLAMEDB_ERR_* code.
LIB_PUSH = r"""
#include <stdio.h>
#include "flamedb.h"
int main(int argc, char **argv)
{
    flamedb_client_t *c;
    char err[256];
    int rc = flamedb_client_new(argv[1], NULL, &c, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "new: %s\n", err);
        return -rc;
    }
    rc = flamedb_push_folded(c, argv[2], "main;lib 5\n", 11, 0, 0, 100);
    if (rc != 0) fprintf(stderr, "push: %d %s\n", flamedb_http_status(c), flamedb_errmsg(c));
    flamedb_client_free(c);
    return -rc;
}
"""


def build_lib_push(tmp):
    return harness.build_c_program(tmp, "push", LIB_PUSH)


def test_library_token_from_environment():
    """A program on libflamedb that sets no token pushes with $FLAMEDB_TOKEN;
    without it the node answers 401 (FLAMEDB_ERR_UNAUTHORIZED)."""
    path = auth_file(TOKENS.values())
    tmp = tempfile.mkdtemp(prefix="flamedb-libtoken-")
    try:
        exe = build_lib_push(tmp)
        with Node(args=["--auth-file", path]) as n:
            url = "http://127.0.0.1:%d" % n.port
            app = unique("libapp")
            env = dict(os.environ)
            env.pop("FLAMEDB_TOKEN", None)
            p = subprocess.run([exe, url, app + ".cpu"], env=env, capture_output=True, timeout=60)
            assert p.returncode == 14 and b"push: 401 " in p.stderr, p  # FLAMEDB_ERR_UNAUTHORIZED
            env["FLAMEDB_TOKEN"] = TOKENS["r"][2]  # a read token may not push
            p = subprocess.run([exe, url, app + ".cpu"], env=env, capture_output=True, timeout=60)
            assert p.returncode == 14 and b"push: 403 " in p.stderr, p
            assert TOKENS["r"][2].encode() not in p.stderr, p
            env["FLAMEDB_TOKEN"] = TOKENS["w"][2]
            p = subprocess.run([exe, url, app + ".cpu"], env=env, capture_output=True, timeout=60)
            assert p.returncode == 0, p
            r = render(n, bearer("r"), app)
            assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == 5 * TICK, r
    finally:
        os.unlink(path)
        shutil.rmtree(tmp, ignore_errors=True)


def test_bad_file_at_start():
    for bad in ["acme read xyz\n", "acme owner " + sha("t") + "\n", "acme read\n",
                "acme read %s\nacme write %s\n" % (sha("t"), sha("t"))]:
        fd, path = tempfile.mkstemp()
        os.write(fd, bad.encode())
        os.close(fd)
        d = tempfile.mkdtemp()
        p = subprocess.run([harness.FLAMEDB_BIN, "--data-dir", d, "--http-listen", "127.0.0.1:0",
                            "--auth-file", path], capture_output=True, timeout=30)
        os.unlink(path)
        assert p.returncode != 0 and (b":1:" in p.stderr or b":2:" in p.stderr), (bad, p)
    p = subprocess.run([harness.FLAMEDB_BIN, "--data-dir", tempfile.mkdtemp(), "--auth-file",
                        "/nonexistent/auth"], capture_output=True, timeout=30)
    assert p.returncode != 0 and b"/nonexistent/auth" in p.stderr, p


def test_sighup_reload():
    path = auth_file([TOKENS["w"]])
    try:
        with Node(args=["--auth-file", path]) as n:
            app = unique("hupapp")
            conn = n.connection()  # a keep-alive connection must survive reloads
            conn.request("GET", "/ready")
            assert conn.getresponse().read() == b"ready\n"
            assert push(n, bearer("r"), app).status == 401
            with open(path, "a") as f:
                f.write("acme read %s\n" % sha(TOKENS["r"][2]))
            n.proc.send_signal(signal.SIGHUP)
            harness_wait(lambda: render(n, bearer("r"), app).status == 200, "reader accepted")
            with open(path, "w") as f:
                f.write("acme sometimes %s\n" % sha("x"))
            n.proc.send_signal(signal.SIGHUP)
            harness_wait(lambda: any("keeping the 2 tokens" in line for line in n.log),
                         "reload error logged")
            assert render(n, bearer("r"), app).status == 200  # the old table stays
            assert push(n, bearer("w"), app).status == 200
            conn.request("GET", "/ready")
            assert conn.getresponse().read() == b"ready\n"
            conn.close()
    finally:
        os.unlink(path)


def harness_wait(fn, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_duplicate_headers():
    with Node() as n:
        for h in [b"X-Scope-OrgID: a\r\nX-Scope-OrgID: b\r\n",
                  b"x-scope-orgid: a\r\nX-SCOPE-ORGID: a\r\n",
                  b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"]:
            raw = raw_exchange(n.port, b"GET /pyroscope/label-names HTTP/1.1\r\nHost: x\r\n" + h +
                               b"\r\n")
            assert status_of(raw) == 400 and b"given 2 times" in raw, raw
        raw = raw_exchange(n.port, b"POST /ingest?name=x HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 9\r\nContent-Length: 9\r\n\r\nmain;a 1\n")
        body = raw.lower().split(b"\r\n\r\n")[1]
        assert status_of(raw) == 400 and b"content-length" in body, raw
        # "Name : value": a proxy may trim the space, so it is refused too
        raw = raw_exchange(n.port, b"GET /pyroscope/label-names HTTP/1.1\r\nHost: x\r\n"
                           b"X-Scope-OrgID : evil\r\n\r\n")
        assert status_of(raw) == 400 and b"whitespace" in raw, raw
        raw = raw_exchange(n.port, b"GET /ready HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
        assert status_of(raw) == 400 and b"Host given 2 times" in raw, raw
        # both framings: the request could be read two ways, so it is refused
        raw = raw_exchange(n.port, b"POST /ingest?name=x HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"9\r\nmain;a 1\n\r\n0\r\n\r\n")
        assert status_of(raw) == 400, raw


def test_chunked_trailers():
    with Node() as n:
        # a trailer naming a tenant is not a header: the push lands in the head's
        # tenant (none given: anonymous), not in the trailer's
        app = unique("trailer")
        body = b"main;t 5\n"
        t = b"%d" % (int(time.time()) - 60)
        req = (b"POST /ingest?name=" + app.encode() + b"&from=" + t + b" HTTP/1.1\r\n"
               b"Host: x\r\nTransfer-Encoding: chunked\r\n"
               b"Trailer: X-Scope-OrgID\r\n\r\n" + (b"%x\r\n" % len(body)) + body +
               b"\r\n0\r\nX-Scope-OrgID: trailer\r\n\r\n")
        raw = raw_exchange(n.port, req)
        assert status_of(raw) == 200, raw
        q = "%s{service_name=\"%s\"}" % (CPU, app)
        assert n.total(q) == 5 * TICK
        r = n.render(q, tenant="trailer")
        assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == 0, r


def _send_head_and_part(port, head, part):
    """Opens a connection, sends a request head and part of its body; returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head)
    s.sendall(part)
    return s


def _answer_now(s, wait=3.0):
    """What the node answered so far (up to `wait` seconds), without sending more."""
    s.settimeout(wait)
    got = b""
    try:
        for _ in range(100):
            c = s.recv(65536)
            if not c:
                break
            got += c
            if b"\r\n\r\n" in got:
                break
    except socket.timeout:
        pass
    return got


def test_no_token_holds_no_body_bytes():
    """Without a valid token a request is refused from its head: its body is
    never read into memory, so clients without a token cannot fill
    max-buffered-bytes and turn every authenticated push into 503 (nor get a
    100 Continue to upload one)."""
    path = auth_file([TOKENS["r"], TOKENS["w"]])
    args = ["--auth-file", path, "--max-buffered-bytes", "1MiB", "--max-body-bytes", "1MiB"]
    with Node(args=args) as n:
        socks = []
        try:
            head = (b"POST /ingest?name=x.cpu HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 1000000\r\n")
            for auth in [b"", b"Authorization: Bearer wrong-token\r\n",
                         b"Authorization: Bearer " + TOKENS["r"][2].encode() + b"\r\n"]:
                s = _send_head_and_part(n.port, head + auth + b"\r\n", b"a;b 1\n" * 60000)
                socks.append(s)
                raw = _answer_now(s)
                want = 403 if b"reader" in auth else 401
                assert status_of(raw) == want, (auth, raw)
            # the routes open without a token (/ready, /metrics, the UI) take no body
            for route in [b"GET /ready", b"GET /metrics", b"GET /ui/app.js", b"POST /ready"]:
                s = _send_head_and_part(n.port, route + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Length: 1000000\r\n\r\n", b"x" * 300000)
                socks.append(s)
                raw = _answer_now(s)
                assert status_of(raw) == 413 and b"takes no body" in raw, (route, raw)
            s = _send_head_and_part(n.port, b"GET /ready HTTP/1.1\r\nHost: x\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n", b"10000\r\n" + b"x" * 60000)
            socks.append(s)
            raw = _answer_now(s)
            assert status_of(raw) == 413 and b"takes no body" in raw, raw
            assert n.metric("flamedb_http_buffered_body_bytes") == 0
            # Expect: 100-continue without a token: the refusal, never a 100
            s = _send_head_and_part(n.port, head + b"Expect: 100-continue\r\n\r\n", b"")
            socks.append(s)
            raw = _answer_now(s)
            assert status_of(raw) == 401 and b"100 Continue" not in raw, raw
            # a writer's push still fits in the budget
            r = push(n, bearer("w"), unique("budget"))
            assert r.status == 200, r
        finally:
            for s in socks:
                s.close()
        os.unlink(path)


def test_metrics_name_tenants_only_to_admins():
    """/metrics is open with --auth-file (for Prometheus), but the names of the
    node's tenants and their series counts are another tenant's business:
    flamedb_tenant_series{tenant} is listed only to an admin token; without
    one the family is summed into flamedb_tenant_series_others."""
    path = auth_file([TOKENS["r"], TOKENS["w"], TOKENS["a"], TOKENS["o"]])
    with Node(args=["--auth-file", path]) as n:
        assert push(n, {"Authorization": "Bearer " + TOKENS["o"][2]}, unique("m")).status == 200
        assert push(n, bearer("w"), unique("m")).status == 200
        for headers in [{}, bearer("r"), bearer("w"),
                        {"Authorization": "Bearer no-such-token"}]:
            r = n.get("/metrics", headers)
            assert r.status == 200, r
            text = r.body.decode()
            assert 'tenant="other"' not in text and 'tenant="acme"' not in text, headers
            assert "flamedb_tenant_series_others 2" in text, text[-400:]
        text = n.get("/metrics", bearer("a")).body.decode()
        assert 'flamedb_tenant_series{tenant="other"} 1' in text, text[-400:]
        assert 'flamedb_tenant_series{tenant="acme"} 1' in text, text[-400:]
    os.unlink(path)


if __name__ == "__main__":
    run_tests(globals())
