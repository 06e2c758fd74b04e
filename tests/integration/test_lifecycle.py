"""test_lifecycle.py — start-up settings, clean shutdown on SIGTERM/SIGINT,
restart on the same data dir, and refusing to start on bad settings."""
import os
import signal
import socket
import subprocess
import tempfile
import time

from harness import CPU, FLAMEDB_BIN, ROOT, Node, raw_exchange, run_tests, status_of, unique
from profiles import folded

NOW = int(time.time())


def run_bin(args, env=None, timeout=20):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([FLAMEDB_BIN] + args, capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_restart_keeps_data_and_sigterm_exits_0():
    svc = unique("rs")
    q = CPU + '{service_name="%s"}' % svc
    data = tempfile.mkdtemp(prefix="flamedb-it-restart-")
    node = Node(data_dir=data, name="first").start()
    try:
        assert node.ingest(folded({"a;b": 5, "a": 2}), name=svc + ".cpu{v=1}",
                           **{"from": NOW - 60}).status == 200
        assert node.total(q) == 7 * 10**7
        rc, took = node.stop(signal.SIGTERM)
        assert rc == 0, (rc, node.log_text())
        assert took < 5, took
        assert "stopped cleanly" in node.log_text()
    finally:
        node.kill()
    node = Node(data_dir=data, name="second").start()
    try:
        assert node.total(q) == 7 * 10**7
        assert node.label_values("v", match='{service_name="%s"}' % svc) == ["1"]
        rc, took = node.stop(signal.SIGINT)
        assert rc == 0 and took < 5, (rc, took)
    finally:
        node.kill()
        subprocess.run(["rm", "-rf", data])


def test_shutdown_waits_for_requests_but_is_bounded():
    with Node(args=["--shutdown-timeout", "1s", "--request-timeout", "30s"], name="drain") as node:
        idle = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        half = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        half.sendall(b"POST /ingest?name=x.cpu HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.2)
        rc, took = node.stop(signal.SIGTERM)
        assert rc == 0, (rc, node.log_text())
        assert 0.8 < took < 5, took  # waited for the half-sent request, then cut it
        idle.settimeout(2)
        assert idle.recv(10) == b""
        idle.close()
        half.close()


def test_bad_settings_exit_2():
    for args, env, needle in (
        (["--bogus"], None, "unknown option '--bogus'"),
        (["--max-body-bytes", "lots"], None, "--max-body-bytes: invalid value 'lots'"),
        (["--http-listen", "example.com:80"], None, "expected IP:PORT"),
        ([], {"FLAMEDB_WORKER_THREADS": "0"}, "FLAMEDB_WORKER_THREADS"),
        (["--memory-limit", "128MiB", "--block-cache-bytes", "100MiB"], None, "memory-limit"),
    ):
        rc, out, err = run_bin(args, env)
        assert rc == 2, (args, rc, err)
        assert needle in err, (needle, err)


def test_help_lists_every_setting_with_default():
    rc, out, err = run_bin(["--help"])
    assert rc == 0, err
    for needle in ("--data-dir PATH", "[FLAMEDB_HTTP_LISTEN]", "default: 127.0.0.1:4040",
                   "--max-body-bytes SIZE", "default: 16MiB", "--worker-threads",
                   "--retention-1d", "--max-decompressed-bytes", "--query-max-nodes"):
        assert needle in out, needle
    rc, out, err = run_bin(["--version"])
    assert rc == 0 and out.startswith("flamedb "), out


def test_config_doc_matches_docs():
    rc, out, err = run_bin(["--print-config-doc"])
    assert rc == 0, err
    path = os.path.join(ROOT, "docs", "configuration.md")
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    assert out == doc, "docs/configuration.md is stale: regenerate with flamedb --print-config-doc"


def test_environment_settings_apply():
    with Node(env={"FLAMEDB_MAX_BODY_BYTES": "2KiB"}, name="env") as node:
        r = node.ingest(b"a;b 1\n" * 1000, name="e.cpu")
        assert r.status == 413 and "2048" in r.json()["message"], r
        rc, out, err = run_bin(["--print-config"], {"FLAMEDB_MAX_BODY_BYTES": "2KiB"})
        assert "max-body-bytes = 2KiB" in out, out


def test_start_failures_exit_1():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    data = tempfile.mkdtemp(prefix="flamedb-it-port-")
    rc, out, err = run_bin(["--data-dir", data, "--http-listen", "127.0.0.1:%d" % port])
    holder.close()
    subprocess.run(["rm", "-rf", data])
    assert rc == 1 and "address already in use" in err.lower(), (rc, err)
    with tempfile.NamedTemporaryFile() as f:  # a file where a directory should be
        rc, out, err = run_bin(["--data-dir", f.name, "--http-listen", "127.0.0.1:0"])
        assert rc == 1 and err.strip(), (rc, err)


def test_placement_is_recorded_and_kept():
    """The data directory records its placement policy at the first start:
    a restart with another --shard-by-profile (flag or environment) is
    refused while it holds series, naming the setting and both values; one
    without the flag takes the recorded value, and the data is still there."""
    svc = unique("pl")
    q = CPU + '{service_name="%s"}' % svc
    data = tempfile.mkdtemp(prefix="flamedb-it-placement-")
    try:
        node = Node(data_dir=data, name="place1").start()
        try:
            assert "placement shards=4;by_profile=1;services= (recorded now)" in \
                node.log_text(200), node.log_text()
            assert node.ingest(folded({"a;b": 3}), name=svc + ".cpu",
                               **{"from": NOW - 60}).status == 200
            assert node.stop(signal.SIGTERM)[0] == 0
        finally:
            node.kill()
        for args, env in ((["--shard-by-profile", "0"], None),
                          ([], {"FLAMEDB_SHARD_BY_PROFILE": "0"}),
                          (["--shards-per-service", "8"], None)):
            rc, out, err = run_bin(["--data-dir", data, "--http-listen", "127.0.0.1:0"] + args,
                                   env)
            assert rc == 1, (args, env, rc, err)
            assert "were placed with" in err and data in err, err
            assert ("--shards-per-service is '8'" in err if args[:1] == ["--shards-per-service"]
                    else "--shard-by-profile is '0'" in err), err
        node = Node(data_dir=data, name="place2", args=["--shard-by-profile", "1"]).start()
        try:
            assert "(recorded in the data directory)" in node.log_text(200), node.log_text()
            assert node.total(q) == 3 * 10**7
        finally:
            node.kill()
    finally:
        subprocess.run(["rm", "-rf", data])


def test_ready_is_served_on_first_listen():
    with Node(name="ready") as node:
        raw = raw_exchange(node.port, b"GET /ready HTTP/1.1\r\n\r\n")
        assert status_of(raw) == 200 and raw.endswith(b"ready\n"), raw


if __name__ == "__main__":
    run_tests(globals())
