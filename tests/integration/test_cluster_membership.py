#!/usr/bin/env python3
"""Cluster membership across real processes: convergence of 3 and 5 nodes,
failure detection after kill -9, restart with the same identity, a node of
another cluster kept out, hostile bytes on the cluster port, SIGTERM, and an
identity that does not match --node-id."""
import os
import signal
import socket
import struct
import subprocess
import time

import harness
from cluster import FAST_FORMATION, RNG, Cluster, free_port, wait_for

SETTLE = FAST_FORMATION  # no data moves and no writes during a join here


def test_three_nodes_converge():
    t0 = time.monotonic()
    with Cluster(3, rf=3, args=SETTLE) as c:
        took = time.monotonic() - t0
        for i in range(3):
            st = c.status(i)
            assert st["self"] == c.ids[i], st
            assert st["cluster"] == "it" and st["rf"] == 3 and st["quorum"] == 2, st
            nodes = {m["id"]: m for m in st["nodes"]}
            assert sorted(nodes) == c.ids, nodes
            for j, nid in enumerate(c.ids):
                m = nodes[nid]
                assert m["tokens"] == 32 and m["state"] == "active", m
                assert m["self"] == (i == j), m
                assert m["cluster"] == "tcp://127.0.0.1:%d" % c.cluster_ports[j], m
                assert m["http"] == "http://127.0.0.1:%d" % c.nodes[j].port, m
        print("    3 nodes started and converged in %.2fs" % took)
        flamectl = os.path.join(os.path.dirname(harness.FLAMEDB_BIN), "flamectl")
        if os.access(flamectl, os.X_OK):
            p = subprocess.run([flamectl, "--url", "http://127.0.0.1:%d" % c.nodes[1].port,
                                "cluster", "status"], capture_output=True, timeout=30)
            out = p.stdout.decode()
            assert p.returncode == 0, (p.returncode, out, p.stderr)
            assert "cluster 'it': 3 node(s), rf 3, write quorum 2 (as seen by n1)" in out, out
            rows = [l for l in out.splitlines() if " active " in l]
            assert len(rows) == 3 and sum(l.startswith("* n1 ") for l in rows) == 1, out
            assert all(l.split()[-2] == "no" for l in rows), out  # FULL REPAIR
            # a member that does not answer holds the table 5 s at most
            c.nodes[2].proc.send_signal(signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                p = subprocess.run([flamectl, "--url", "http://127.0.0.1:%d" % c.nodes[1].port,
                                    "cluster", "status"], capture_output=True, timeout=30)
                took = time.monotonic() - t0
            finally:
                c.nodes[2].proc.send_signal(signal.SIGCONT)
            out = p.stdout.decode()
            row = [l for l in out.splitlines() if l.startswith("  n2 ")]
            assert p.returncode == 0 and row and row[0].split()[-2] in ("?", "-"), out
            assert took < 10, took
            print("    cluster status with n2 stopped: %.1f s" % took)
            p = subprocess.run([flamectl, "--url", "http://127.0.0.1:%d" % free_port(),
                                "cluster", "status"], capture_output=True, timeout=30)
            assert p.returncode == 1, p


def test_five_nodes_converge_and_rf_caps():
    t0 = time.monotonic()
    with Cluster(5, rf=3, write_quorum=3, args=SETTLE) as c:
        print("    5 nodes started and converged in %.2fs" % (time.monotonic() - t0))
        st = c.status(4)
        assert st["rf"] == 3 and st["quorum"] == 3, st
    # a cluster smaller than RF: rf and quorum are capped at the node count
    with Cluster(2, rf=3, write_quorum=3, args=SETTLE) as c:
        st = c.status(0)
        assert st["rf"] == 2 and st["quorum"] == 2, st


def identity_text(c, i):
    with open(os.path.join(c.nodes[i].data_dir, "identity")) as f:
        return f.read()


def test_kill_detect_and_restart():
    with Cluster(3, rf=2, failure_timeout="1s", args=SETTLE) as c:
        before = identity_text(c, 1)
        fingerprint = c.status(0)["ring_fingerprint"]
        c.kill(1)
        took = c.wait_state(1, "down", timeout=1.0 + 4.0)
        print("    kill -9: seen down by every other node after %.2fs (failure timeout 1s)" % took)
        assert c.status(0)["ring_fingerprint"] == fingerprint  # a down node keeps its ranges
        c.restart(1)
        took = c.wait_state(1, "active", timeout=10)
        c.wait_converged()
        print("    restart: active everywhere after %.2fs" % took)
        assert identity_text(c, 1) == before, "the identity file changed on restart"
        for i in range(3):
            assert c.status(i)["ring_fingerprint"] == fingerprint, "tokens moved on restart"
        st = c.status(1)
        assert st["self"] == "n1", st


def test_restart_on_another_port():
    """A node that comes back at another cluster address is found there, and
    the others stop dialling the old one."""
    with Cluster(2, rf=2, args=SETTLE) as c:
        old = c.cluster_ports[1]
        c.kill(1)
        c.cluster_ports[1] = free_port()
        c.restart(1)
        c.wait_converged()
        nodes = {m["id"]: m for m in c.status(0)["nodes"]}
        assert nodes["n1"]["cluster"] == "tcp://127.0.0.1:%d" % c.cluster_ports[1], nodes
        wait_for("n0 to forget the old address",
                 lambda: any("forgetting tcp://127.0.0.1:%d" % old in line
                             for line in c.nodes[0].log), 5)


def test_other_cluster_not_admitted():
    with Cluster(2, rf=2, args=SETTLE) as c:
        port = free_port()
        stranger = harness.Node(name="stranger", args=[
            "--node-id", "stranger", "--cluster-listen", "tcp://127.0.0.1:%d" % port,
            "--join", "tcp://127.0.0.1:%d" % c.cluster_ports[0], "--cluster-name", "other",
            "--gossip-interval", "100ms", "--failure-timeout", "1s"])
        with stranger:
            refused0 = c.status(0)["transport"]["refused_messages"]
            wait_for("the stranger's gossip to be refused",
                     lambda: c.status(0)["transport"]["refused_messages"] > refused0 + 3, 10)
            for i in range(2):
                assert "stranger" not in c.states(i), c.states(i)
            r = stranger.get("/cluster/status").json()
            assert [m["id"] for m in r["nodes"]] == ["stranger"], r
        assert c.converged()


def test_other_placement_not_admitted():
    """A node placing series by another policy (here --shard-by-profile 0
    against the cluster's default 1) is kept out like one of another
    cluster: its gossip is refused, counted and logged as an error naming
    both policies, and it never becomes a member; each node's status names
    its own policy."""
    with Cluster(2, rf=2, args=SETTLE) as c:
        for i in range(2):
            assert c.status(i)["placement"] == "shards=4;by_profile=1;services=", c.status(i)
        port = free_port()
        stranger = harness.Node(name="placed", args=[
            "--node-id", "placed", "--cluster-listen", "tcp://127.0.0.1:%d" % port,
            "--join", "tcp://127.0.0.1:%d" % c.cluster_ports[0], "--cluster-name", "it",
            "--shard-by-profile", "0", "--gossip-interval", "100ms", "--failure-timeout", "1s"])
        with stranger:
            wait_for("the placed node's gossip to be refused",
                     lambda: c.status(0)["transport"]["gossip_refused_placement"] > 3, 10)
            assert "by_profile=0" in c.nodes[0].log_text(400), c.nodes[0].log_text()
            for i in range(2):
                assert "placed" not in c.states(i), c.states(i)
            r = stranger.get("/cluster/status").json()
            assert r["placement"] == "shards=4;by_profile=0;services=", r
            assert [m["id"] for m in r["nodes"]] == ["placed"], r
            assert c.nodes[0].metric("flamedb_cluster_gossip_placement_refused_total") > 3
        assert c.converged()


def sp_header(proto):
    """nanomsg SP protocol header (protocol ids: PUSH 0x50, PULL 0x51)."""
    return b"\x00SP\x00" + struct.pack(">H", proto) + b"\x00\x00"


def send_raw(port, data, wait=0.3):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            time.sleep(wait)
    except OSError:
        pass  # the node may drop the connection at once: that is fine


def test_hostile_bytes_on_cluster_port():
    with Cluster(2, rf=2, args=SETTLE + ["--max-message-bytes", "64KiB"]) as c:
        port = c.cluster_ports[0]
        r0 = c.status(0)["transport"]
        rnd = bytes(RNG.getrandbits(8) for _ in range(4096))
        cases = [
            rnd,                                                    # not even a handshake
            sp_header(0x50) + rnd,                                  # handshake, then noise
            sp_header(0x50) + struct.pack(">Q", 1 << 40) + rnd,     # a 1 TiB length
            sp_header(0x50) + struct.pack(">Q", 200000) + rnd,      # over max-message-bytes
            sp_header(0x51) + struct.pack(">Q", 10) + rnd[:10],     # wrong peer protocol
        ]
        for k in range(20):                                         # framed, random bodies
            body = bytes(RNG.getrandbits(8) for _ in range(RNG.randint(0, 300)))
            cases.append(sp_header(0x50) + struct.pack(">Q", len(body)) + body)
        for data in cases:
            send_raw(port, data, wait=0.05)
        # a well-framed envelope of another protocol version and truncated ones
        for k in range(1, 30):
            body = bytes([0x08, k, 0x10, 0x01, 0x1a, 0x02]) + b"it"
            send_raw(port, sp_header(0x50) + struct.pack(">Q", len(body)) + body, wait=0.01)
        assert c.nodes[0].alive(), c.nodes[0].log_text()
        wait_for("framed garbage to be refused and counted",
                 lambda: c.status(0)["transport"]["refused_messages"] >= r0["refused_messages"] + 20,
                 10)
        c.wait_converged()
        assert c.nodes[0].get("/ready").status == 200
        r1 = c.status(0)["transport"]
        print("    refused messages %d, connections dropped %d, broken %d"
              % (r1["refused_messages"] - r0["refused_messages"],
                 r1["connections_dropped"] - r0["connections_dropped"],
                 r1["connections_broken"] - r0["connections_broken"]))
        assert r1["connections_dropped"] + r1["connections_broken"] > \
            r0["connections_dropped"] + r0["connections_broken"], r1


def test_sigterm_closes_cleanly():
    with Cluster(2, rf=2, args=SETTLE) as c:
        rc, took = c.stop(1, signal.SIGTERM)
        assert rc == 0, c.nodes[1].log_text()
        assert took < 5, took
        assert any("stopped cleanly" in line for line in c.nodes[1].log), c.nodes[1].log_text()
        c.wait_state(1, "down", observers=[0])


def test_ready_waits_for_a_seed():
    """A node whose seeds do not answer is not ready (its view would be a
    cluster of one, RF 1) until failure-timeout passes; then it goes on alone."""
    port = free_port()
    node = harness.Node(name="lonely", args=[
        "--node-id", "lonely", "--cluster-listen", "tcp://127.0.0.1:%d" % port,
        "--join", "tcp://127.0.0.1:%d" % free_port(), "--failure-timeout", "2s",
        "--gossip-interval", "100ms"])
    t0 = time.monotonic()
    with node:
        took = time.monotonic() - t0
        assert 1.8 <= took < 15, took
        # the log line and /ready race by a few milliseconds: wait for it
        wait_for("the 'going on alone' log line",
                 lambda: any("going on alone" in line for line in node.log), timeout=5.0)
    # with a live seed it is ready as soon as the seed answered
    with Cluster(1, rf=1, args=SETTLE) as c:
        t0 = time.monotonic()
        c.add_node()
        assert time.monotonic() - t0 < 1.5
        c.wait_converged()


def test_identity_must_match_node_id():
    with Cluster(1, rf=1, args=SETTLE) as c:
        c.stop(0)
        cmd = [harness.FLAMEDB_BIN, "--data-dir", c.nodes[0].data_dir, "--http-listen",
               "127.0.0.1:0", "--node-id", "someone-else", "--cluster-listen",
               "tcp://127.0.0.1:%d" % free_port()]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=30)
        err = p.stderr.decode()
        assert p.returncode == 1, (p.returncode, err)
        assert "belongs to node 'n0'" in err and "someone-else" in err, err


if __name__ == "__main__":
    harness.run_tests(dict(globals()))
