#!/usr/bin/env python3
"""Cluster authentication with --cluster-secret-file across real processes:

- nodes sharing a secret form a cluster, replicate and answer queries;
- a node without the secret, or with another one, is never admitted: its
  messages are refused as unauthorized (counted in refused_unauthorized)
  and the members never list it;
- a hand-made, well-framed but unsigned envelope on the cluster port is
  refused the same way;
- a node refuses to start with a secret file others can read or a secret
  too short to be one;
- a node whose cluster port other hosts can reach and that has no secret
  says so in a warning at start (a loopback port, or a secret, does not).

Every wait is bounded; the seed is printed (cluster.py).
"""
import os
import shutil
import struct
import subprocess
import tempfile
import time

import harness
from cluster import FAST_FORMATION, Cluster, free_port, wait_for
from profiles import f_bytes, f_varint
from test_cluster_membership import send_raw, sp_header

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def secret_file(text, mode=0o600):
    fd, path = tempfile.mkstemp(prefix="flamedb-it-secret-")
    os.write(fd, text.encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


def unsigned_gossip_envelope(cluster_name, sender):
    """Envelope{protocol_version 1, type GOSSIP, cluster, sender, body SYN}."""
    body = f_varint(1, 1)  # Gossip.phase = SYN
    return (f_varint(1, 1) + f_varint(2, 1) + f_bytes(3, cluster_name.encode())
            + f_bytes(4, sender.encode()) + f_varint(5, int(time.time() * 1000) + 60000)
            + f_bytes(6, body))


def test_shared_secret_admits_only_its_holders():
    good = secret_file("a long enough cluster secret\n")
    other = secret_file("another long enough secret")
    try:
        with Cluster(2, rf=2, args=["--cluster-secret-file", good] + FAST_FORMATION) as c:
            now = int(time.time())
            r = c.nodes[0].ingest(b"main;work 7\n", name="auth.cpu",
                                  **{"from": now - 5, "until": now})
            assert r.status == 200, r
            q = '%s{service_name="auth"}' % CPU
            wait_for("both nodes to answer the push",
                     lambda: all(c.nodes[i].total(q) == 7 * 10**7 for i in range(2)), 10)
            before = c.status(0)["transport"]
            strangers = []
            for name, args in (("nosecret", []), ("wrongsecret", ["--cluster-secret-file", other])):
                port = free_port()
                strangers.append(harness.Node(name=name, args=[
                    "--node-id", name, "--cluster-listen", "tcp://127.0.0.1:%d" % port,
                    "--join", "tcp://127.0.0.1:%d" % c.cluster_ports[0], "--cluster-name",
                    c.cluster_name, "--gossip-interval", "100ms", "--failure-timeout", "1s"] + args))
            for s in strangers:
                s.start()
            try:
                send_raw(c.cluster_ports[0], sp_header(0x50)
                         + struct.pack(">Q", len(env := unsigned_gossip_envelope(
                             c.cluster_name, "forger"))) + env, wait=0.1)
                wait_for("the strangers' messages to be refused as unauthorized",
                         lambda: c.status(0)["transport"]["refused_unauthorized"]
                         >= before["refused_unauthorized"] + 6, 15)
                time.sleep(0.5)
                for i in range(2):
                    ids = set(c.states(i))
                    assert ids == {"n0", "n1"}, ids
                for s in strangers:
                    ids = [m["id"] for m in s.get("/cluster/status").json()["nodes"]]
                    assert ids == [s.name], ids
                    # it learned nothing of the cluster's data; new and never admitted,
                    # it stays joining (no member heard), so it answers no query
                    r = s.render(q)
                    assert r.status == 503 and b"no active node" in r.body, r
            finally:
                for s in strangers:
                    s.cleanup()
            assert c.converged()
            assert c.nodes[1].total(q) == 7 * 10**7
    finally:
        os.unlink(good)
        os.unlink(other)


def run_bin(args):
    p = subprocess.run([harness.FLAMEDB_BIN] + args, capture_output=True, timeout=20)
    return p.returncode, p.stderr.decode()


def test_bad_secret_files_refused_at_start():
    data = tempfile.mkdtemp(prefix="flamedb-it-auth-")
    base = ["--data-dir", data, "--http-listen", "127.0.0.1:0",
            "--cluster-listen", "tcp://127.0.0.1:%d" % free_port()]
    readable = secret_file("a long enough cluster secret", mode=0o644)
    short = secret_file("short\n")
    try:
        rc, err = run_bin(base + ["--cluster-secret-file", readable])
        assert rc == 1 and "readable by others" in err, (rc, err)
        rc, err = run_bin(base + ["--cluster-secret-file", short])
        assert rc == 1 and "at least 16" in err, (rc, err)
        rc, err = run_bin(base + ["--cluster-secret-file", data + "/absent"])
        assert rc == 1 and "cannot read" in err, (rc, err)
        # the reader's own reason, not a guess ("cannot read X (or over 4096 bytes)")
        os.mkdir(data + "/adir", 0o700)
        rc, err = run_bin(base + ["--cluster-secret-file", data + "/adir"])
        assert rc == 1 and "Is a directory" in err, (rc, err)
        check_secret_of_another_user(data)
    finally:
        os.unlink(readable)
        os.unlink(short)
        subprocess.run(["rm", "-rf", data])


def check_secret_of_another_user(data):
    """A secret chmod 600 by root, read by a node running as another user (as
    under systemd's DynamicUser=): refused with the reason and the user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        print("  (not root or no setpriv: the other-user secret case is skipped)")
        return
    secret = secret_file("a long enough cluster secret")
    node_dir = tempfile.mkdtemp(prefix="flamedb-it-auth-nobody-")
    os.chmod(node_dir, 0o777)
    try:
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            harness.FLAMEDB_BIN, "--data-dir", node_dir, "--http-listen", "127.0.0.1:0",
                            "--cluster-listen", "tcp://127.0.0.1:%d" % free_port(),
                            "--cluster-secret-file", secret], capture_output=True, timeout=20)
        err = p.stderr.decode()
        assert p.returncode == 1, (p.returncode, err)
        assert "Permission denied" in err and "runs as uid 65534" in err, err
        assert "LoadCredential=" in err, err
    finally:
        os.unlink(secret)
        shutil.rmtree(node_dir, ignore_errors=True)


UNSIGNED_WARNING = "is not a loopback address and --cluster-secret-file is not set"


def started_log(args):
    """Starts a single node with args, returns its log once it listens on
    its cluster port (the warning comes right after that line)."""
    node = harness.Node(name="unsigned", args=args)
    node.start()
    try:
        wait_for("the cluster port's log line",
                 lambda: any("listening on tcp://" in line for line in node.log), 10)
        time.sleep(0.2)  # the reader thread has the lines that follow it
        return "\n".join(node.log)
    finally:
        node.stop()


def test_unsigned_reachable_port_warned_at_start():
    port = free_port()
    wide = ["--cluster-listen", "tcp://0.0.0.0:%d" % port,
            "--advertise", "tcp://127.0.0.1:%d" % port]
    log = started_log(wide)
    assert UNSIGNED_WARNING in log, log
    log = started_log(["--cluster-listen", "tcp://127.0.0.1:%d" % free_port()])
    assert "listening on tcp://" in log and UNSIGNED_WARNING not in log, log
    good = secret_file("a long enough cluster secret\n")
    try:
        log = started_log(wide + ["--cluster-secret-file", good])
        assert "listening on tcp://" in log and UNSIGNED_WARNING not in log, log
    finally:
        os.unlink(good)


if __name__ == "__main__":
    harness.run_tests(globals())
