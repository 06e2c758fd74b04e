#!/usr/bin/env python3
"""What a peer without the cluster secret can make a node hold, across real
processes on 127.0.0.1:

- several raw TCP connections to the cluster port, each announcing a message
  of almost max-message-bytes and sending a third of it, then holding the
  connection open: the node's resident memory must stay within two frames
  per connection (max-frame-bytes) and the node must keep serving
  pushes, replication and queries meanwhile;
- the same with frames just under the limit, sent but for their last byte
  (what the limit still lets such a peer hold: about a frame each);
- the same connections sending, again and again, unsigned messages just
  under the frame limit (which the transport accepts and the MAC check
  refuses): the same bound, and each of them counted as unauthorized;
- with frames of 64 KiB, replicated writes (both ways) and the stream
  answers of a join larger than a frame travel in signed pieces and every
  total stays exact, through each node and through the joined node alone;
- a node whose chunk-receive-max-bytes is below a write in pieces drops it
  (logged, counted) and the write fails (503), never answered short;
- with FLAMEDB_OLD_BIN naming a flamedb built before frames existed (skipped
  otherwise): beside such a node, a new node at its defaults (and one with
  64 KiB frames) replicates writes larger than a frame both ways, its frame
  limit at max-message-bytes while the old node is listed; once the old
  node is upgraded, both lower it to max-frame-bytes and cut such writes
  into pieces.

Every wait is bounded; the seed is printed (cluster.py).
"""
import os
import socket
import struct
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from profiles import f_bytes, f_varint
from test_cluster_auth import secret_file
from test_cluster_join import big_body
from test_cluster_membership import sp_header
from test_cluster_stream import ARGS, check_exact, preload, push

MiB = 1 << 20
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
CONNECTIONS = 6
FRAME = 1 * MiB  # cluster-max-frame-bytes (the default)
MESSAGE = 16 * MiB  # max-message-bytes (the default at memory-limit 1 GiB)
BIG_LINES = 48000  # a profile whose replicated write is larger than a frame
ANNOUNCED = 64 * MiB - 4096  # under the largest max-message-bytes a default allows (64 MiB)
SENT = 24 * MiB  # of each announced message
# Resident growth allowed: the transport holds at most about two frames per
# connection (one being received, one waiting to be read); the rest is room
# for the allocator and the pushes of the check.
BOUND = CONNECTIONS * 2 * FRAME + 24 * MiB


def rss(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %s" % node.name)


def unsigned_envelope(cluster_name, size):
    """A well-formed gossip Envelope of about size bytes without a MAC."""
    head = (f_varint(1, 1) + f_varint(2, 1) + f_bytes(3, cluster_name.encode())
            + f_bytes(4, b"forger") + f_varint(5, int(time.time() * 1000) + 600000))
    return head + f_bytes(6, b"\x5a" * (size - len(head) - 8))


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(sp_header(0x50))  # a PUSH socket, as a peer's
    return s


def send_some(s, data):
    """Sends data; 0 when the node dropped the connection first."""
    try:
        s.sendall(data)
        return len(data)
    except OSError:
        return 0


def serving(c, svc, count):
    """A push to node 0 replicates to node 1 and both answer the query."""
    now = int(time.time())
    r = c.nodes[0].ingest(b"main;work %d\n" % count, name=svc + ".cpu",
                          **{"from": now - 5, "until": now})
    assert r.status == 200, r
    q = '%s{service_name="%s"}' % (CPU, svc)
    wait_for("both nodes to answer the push",
             lambda: all(c.nodes[i].total(q) == count * 10**7 for i in range(2)), 20)


def test_unsigned_large_messages_bounded():
    key = secret_file("a long enough cluster secret\n")
    try:
        with Cluster(2, rf=2, args=["--cluster-secret-file", key] + FAST_FORMATION) as c:
            node, port = c.nodes[0], c.cluster_ports[0]
            serving(c, "portmem0", 3)
            # max-message-bytes for the first failure-timeout, until every
            # member is known to take pieces
            wait_for("the frame limit to come down",
                     lambda: frame_limits(c, (0, 1)) == [FRAME, FRAME], 30)
            time.sleep(0.5)
            before = rss(node)
            socks = [connect(port) for _ in range(CONNECTIONS)]
            try:
                sent = 0
                piece = b"\xa5" * MiB
                for s in socks:
                    if send_some(s, struct.pack(">Q", ANNOUNCED)) == 0:
                        continue
                    for _ in range(SENT // MiB):
                        n = send_some(s, piece)
                        sent += n
                        if n == 0:
                            break
                time.sleep(1.0)
                grew = rss(node) - before
                print("    %d connections announcing %d MiB: %d MiB sent, RSS %+.1f MiB "
                      "(bound %.0f MiB)" % (CONNECTIONS, ANNOUNCED // MiB, sent // MiB,
                                            grew / MiB, BOUND / MiB))
                assert grew < BOUND, (grew, BOUND)
                serving(c, "portmem1", 5)  # with the connections still open
            finally:
                for s in socks:
                    s.close()

            # frames within the limit, all but their last byte sent, held open:
            # what is left to a peer without the secret, about a frame each
            socks = [connect(port) for _ in range(CONNECTIONS)]
            try:
                held = FRAME - 4096
                for s in socks:
                    send_some(s, struct.pack(">Q", held) + b"\x3c" * (held - 1))
                time.sleep(1.0)
                grew = rss(node) - before
                open_now = c.status(0)["transport"]["connections_current"]
                assert open_now >= CONNECTIONS + 1, open_now  # + n1's
                print("    %d connections holding a frame of %d KiB but its last byte: RSS "
                      "%+.1f MiB" % (CONNECTIONS, held // 1024, grew / MiB))
                assert grew < BOUND, (grew, BOUND)
                serving(c, "portmem3", 4)
            finally:
                for s in socks:
                    s.close()

            # messages the transport takes whole, refused by the MAC check
            r0 = c.status(0)["transport"]["refused_unauthorized"]
            socks = [connect(port) for _ in range(CONNECTIONS)]
            env = unsigned_envelope(c.cluster_name, FRAME - 64 * 1024)
            msg = struct.pack(">Q", len(env)) + env
            rounds = 8
            try:
                worst = 0
                for _ in range(rounds):
                    for s in socks:
                        send_some(s, msg)
                    worst = max(worst, rss(node) - before)
                wait_for("the unsigned messages to be refused",
                         lambda: c.status(0)["transport"]["refused_unauthorized"]
                         >= r0 + CONNECTIONS * rounds, 20)
                worst = max(worst, rss(node) - before)
                print("    %d connections x %d unsigned messages of %d KiB: RSS at most "
                      "%+.1f MiB" % (CONNECTIONS, rounds, len(env) // 1024, worst / MiB))
                assert worst < BOUND, (worst, BOUND)
                serving(c, "portmem2", 9)
            finally:
                for s in socks:
                    s.close()
    finally:
        os.unlink(key)


def test_messages_in_pieces_exact():
    key = secret_file("a long enough cluster secret\n")
    now = int(time.time())
    frm, until = now - 8000, now + 60
    args = ARGS + ["--cluster-secret-file", key, "--max-frame-bytes", "64KiB"]
    try:
        with Cluster(1, rf=2, args=args) as c:
            d = preload(c, "pc", now, 120)
            for k in range(2):  # windows that stream to the joining node in pieces
                svc = harness.unique("pcwin%d" % k)
                body, v = big_body(20 + k, lines=6000)
                push(c, 0, d, body, svc, now - 2400 - 100 * k)
                d.services[svc] = v
            n = c.add_node()
            c.wait_state(n, "active", observers=[0, n], timeout=60)
            for k, via in enumerate((0, n)):  # WriteRequests larger than a frame, both ways
                svc = harness.unique("pcbig%d" % k)
                body, v = big_body(7 + k, lines=6000)
                push(c, via, d, body, svc, now - 100)
                d.services[svc] = v
            wait_for("exact through both nodes",
                     lambda: [check_exact(c, i, d, frm, until) for i in (0, n)] and True, 30)
            t = [c.status(i)["transport"] for i in (0, n)]
            print("    %d and %d messages put back together from %d and %d pieces" %
                  (t[0]["chunked_messages"], t[1]["chunked_messages"], t[0]["chunk_pieces"],
                   t[1]["chunk_pieces"]))
            # n1: the stream answer(s) of the big windows and n0's write; n0: n1's write
            assert t[1]["chunked_messages"] >= 2 and t[0]["chunked_messages"] >= 1, t
            assert t[0]["chunk_bytes_held"] == 0 and t[1]["chunk_bytes_held"] == 0, t
            assert t[0]["chunked_dropped"] == 0 and t[1]["chunked_dropped"] == 0, t
            c.kill(0)
            c.wait_state(0, "down", observers=[n])
            check_exact(c, n, d, frm, until)
    finally:
        os.unlink(key)


def big_pushes(c, tag, nodes):
    """A push of a profile larger than a frame through each of nodes: the
    status of each, and whether every node of nodes then answers it exactly."""
    got = []
    now = int(time.time())
    for k, via in enumerate(nodes):
        svc = harness.unique("%s%d" % (tag, k))
        body, v = big_body(3 + k, lines=BIG_LINES)
        r = c.nodes[via].ingest(body, name=svc + ".cpu", **{"from": now - 50, "until": now - 40})
        q = '%s{service_name="%s"}' % (CPU, svc)
        both = r.status == 200 and bool(wait_for(
            "every node to answer", lambda: all(c.nodes[i].total(q) == v * 10**7
                                                for i in nodes), 20))
        got.append((r.status, both))
    return got


def frame_limits(c, nodes):
    return [c.status(i)["transport"]["frame_limit_bytes"] for i in nodes]


def mixed_cluster():
    """An empty two-replica cluster for an old node beside a new one
    (add_old_and_new); skips unless FLAMEDB_OLD_BIN names a flamedb from
    before frames."""
    if not os.environ.get("FLAMEDB_OLD_BIN"):
        raise harness.Skip("FLAMEDB_OLD_BIN (a flamedb without --max-frame-bytes) not set")
    return Cluster(0, rf=2, args=FAST_FORMATION + ["--write-timeout", "5s"], start=False)


def add_old_and_new(c, new_extra=()):
    """Adds n0 running FLAMEDB_OLD_BIN and n1 running this build (with
    new_extra), and waits for the two to converge."""
    new_bin = harness.FLAMEDB_BIN
    try:
        harness.FLAMEDB_BIN = os.environ["FLAMEDB_OLD_BIN"]
        c.add_node()
    finally:
        harness.FLAMEDB_BIN = new_bin
    c.add_node(extra=new_extra)
    c.wait_converged(timeout=30)


def test_mixed_versions_defaults():
    """An old node (n0, before frames) beside a new one (n1), both at their
    defaults: writes larger than a frame replicate both ways (the new node
    sends the old one whole messages and takes whole ones, its frame limit
    at max-message-bytes while the old node is listed); once n0 runs the new
    binary, both lower their frame limit to max-frame-bytes and the same
    writes go in pieces."""
    with mixed_cluster() as c:
        add_old_and_new(c)
        mixed = big_pushes(c, "mixed", (0, 1))
        print("    old + new at the defaults: pushes via old, via new: %s" % mixed)
        assert mixed == [(200, True), (200, True)], mixed
        limit = frame_limits(c, [1])[0]
        assert limit == MESSAGE, limit  # the old node is listed
        members = {m["id"]: m for m in c.status(1)["nodes"]}
        assert members[c.ids[0]]["max_frame_bytes"] == 0, members
        assert members[c.ids[1]]["max_frame_bytes"] == FRAME, members
        assert "takes and sends only whole messages" in c.nodes[1].log_text()

        c.restart(0)  # the upgrade: n0 runs the new binary
        wait_for("both nodes to lower their frame limit",
                 lambda: frame_limits(c, (0, 1)) == [FRAME, FRAME], 60)
        pieces0 = [c.status(i)["transport"]["chunked_messages"] for i in (0, 1)]
        upgraded = big_pushes(c, "upgraded", (0, 1))
        pieces = [c.status(i)["transport"]["chunked_messages"] - pieces0[i] for i in (0, 1)]
        print("    both new: %s, messages put back together %s" % (upgraded, pieces))
        assert upgraded == [(200, True), (200, True)], upgraded
        assert pieces[0] >= 1 and pieces[1] >= 1, pieces


def test_mixed_versions_small_frames():
    """The same mix with the new node's frames at 64 KiB: still both ways."""
    with mixed_cluster() as c:
        add_old_and_new(c, ["--max-frame-bytes", "64KiB"])
        got = big_pushes(c, "mixsmall", (0, 1))
        print("    old + new with 64 KiB frames: pushes via old, via new: %s" % got)
        assert got == [(200, True), (200, True)], got


def test_pieces_over_budget_refused():
    """A node whose chunk-receive-max-bytes is below a replicated write in
    pieces drops it (logged, counted) and the write fails as when its
    message is lost: never a 200 for fewer replicas than the quorum."""
    with Cluster(2, rf=2, args=FAST_FORMATION + ["--write-timeout", "2s"]) as c:
        c.restart(1, extra=["--chunk-receive-max-bytes", "64KiB", "--max-message-bytes", "16MiB"])
        c.wait_converged(timeout=30)
        wait_for("the frame limits to come down",
                 lambda: frame_limits(c, (0, 1)) == [FRAME, FRAME], 30)
        before = c.status(1)["transport"]["chunked_over_budget"]
        got = big_pushes(c, "overbudget", (0,))
        t = c.status(1)["transport"]
        print("    a write of about 1.5 MB to a node holding 64 KiB of pieces: %s, "
              "over budget %d" % (got, t["chunked_over_budget"] - before))
        assert got[0][0] != 200, got
        assert t["chunked_over_budget"] > before and t["chunk_bytes_reserved"] == 0, t
        assert "(chunk-receive-max-bytes)" in c.nodes[1].log_text()


if __name__ == "__main__":
    harness.run_tests(globals())
