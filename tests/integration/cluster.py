"""cluster.py — start a cluster of real flamedb nodes on loopback.

A Cluster starts N `flamedb` processes (harness.Node) on 127.0.0.1, each with
its own data dir, a free HTTP port (port 0, read from the log) and a free
cluster port (nanomsg cannot bind port 0: a random port below the kernel's
ephemeral range that a TCP socket could bind a moment ago). Node i gets
--node-id n<i>, --cluster-listen tcp://127.0.0.1:PORT and --join with the
addresses of the nodes started before it (node 0 joins nobody), plus the
cluster-wide flags given.

    with Cluster(3, rf=3) as c:          # starts and waits for convergence
        c.nodes[0].ingest(...)
        c.kill(1)                         # kill -9
        c.wait_state(1, "down")           # every other node sees it down
        c.restart(1)                      # same data dir, id and ports
        c.wait_converged()

Every wait is bounded and names what it waited for when it fails. Fast
defaults (gossip 100 ms, failure timeout 1 s) keep tests short; pass
gossip_interval / failure_timeout to change them. The random seed (test
data) is printed and read back from FLAMEDB_TEST_SEED; cluster ports are
drawn apart from it, below the kernel's ephemeral range (free_port).

With net (a netns.NetNS), node i instead runs in network namespace
net.ns(i) and listens on net.addr(i) for HTTP and cluster traffic (cluster
port net.cluster_port: nothing else listens there), so a test can cut it off
with net.partition(i). Without it, everything stays on loopback.
"""
import contextlib
import os
import random
import signal
import time

import harness
from ports import free_port  # noqa: F401  (test files import it from here)

SEED = int(os.environ.get("FLAMEDB_TEST_SEED", str(int(time.time() * 1000) % 1000000)))
print("cluster tests: seed %d (replay with FLAMEDB_TEST_SEED=%d)" % (SEED, SEED), flush=True)
RNG = random.Random(SEED)


# A node that joins turns active only after its settle margin, by default 10
# gossip intervals + the write timeout (5 s unless a test sets it): each
# cluster start waits that long per join. A test that writes nothing while a
# node joins and neither joins, decommissions nor removes a node later passes
# these flags, so its cluster forms in a fraction of a second; a test of moves
# must keep the margin it is about, unless nothing is written while the move
# settles. A later --join-settle wins, so restart(i, extra=[...]) can give one
# node a longer margin than the others (docs/testing.md).
FAST_FORMATION = ["--join-settle", "300ms"]
# A node added later to a cluster formed with FAST_FORMATION gets the
# automatic margin back with these (the later flag wins): a test of a join
# under ingest forms its cluster fast and keeps the margin for the join it is
# about. Only the joining node reads its margin for its own join; the nodes
# that form the cluster read theirs when they gain ranges (a removal, a
# decommission's takers), so a test that removes or decommissions a node
# keeps the automatic margin on every node.
JOIN_SETTLE_AUTO = ["--join-settle", "0s"]


def wait_for(what, fn, timeout=20.0, interval=0.1):
    """Polls fn() until it returns a true value (returned); fails naming `what`
    with the last value or exception seen."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(100000):
        try:
            last = fn()
            if last:
                return last
        except (OSError, ValueError, KeyError, AssertionError) as e:
            last = e
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


class Cluster:
    """N flamedb nodes forming one cluster. Extra flags go to every node."""

    def __init__(self, n, rf=3, write_quorum=0, tokens=32, gossip_interval="100ms",
                 failure_timeout="1s", cluster_name="it", args=(), start=True, converge=True,
                 net=None):
        self.n = n
        self.net = net
        self.cluster_name = cluster_name
        self.common = ["--replication-factor", str(rf), "--tokens", str(tokens),
                       "--gossip-interval", gossip_interval, "--failure-timeout",
                       failure_timeout, "--cluster-name", cluster_name]
        if write_quorum:
            self.common += ["--write-quorum", str(write_quorum)]
        self.common += list(args)
        self.failure_timeout_s = harness_duration(failure_timeout)
        self.nodes = []
        self.cluster_ports = []
        self.ids = []
        self._start = start
        self._converge = converge

    # ---- lifetime ----
    def addr(self, i):
        """Node i's address for HTTP and cluster traffic."""
        return self.net.addr(i) if self.net else "127.0.0.1"

    def placement(self, i):
        """harness.Node arguments placing node i (its namespace and address)."""
        return {"netns": self.net.ns(i), "host": self.net.addr(i)} if self.net else {}

    def node_args(self, i, join):
        a = ["--node-id", self.ids[i],
             "--cluster-listen", "tcp://%s:%d" % (self.addr(i), self.cluster_ports[i])]
        if join:
            a += ["--join", ",".join("tcp://%s:%d" % (self.addr(j), self.cluster_ports[j])
                                     for j in join)]
        return a + self.common

    def add_node(self, join=None, extra=(), start=True):
        """Adds (and starts) one more node joining through `join` (indexes;
        default: every node added before). Returns its index."""
        i = len(self.nodes)
        self.ids.append("n%d" % i)
        if self.net and i >= self.net.n:
            raise AssertionError("node %d: the network has %d namespaces" % (i, self.net.n))
        self.cluster_ports.append(self.net.cluster_port if self.net else free_port())
        if join is None:
            join = list(range(i))
        node = harness.Node(args=self.node_args(i, join) + list(extra), name=self.ids[i],
                            **self.placement(i))
        node.join = join
        node.extra = list(extra)
        self.nodes.append(node)
        if start:
            node.start()
        return i

    def start(self):
        for _ in range(self.n):
            self.add_node()
        if self._converge:
            self.wait_converged()
        return self

    def __enter__(self):
        if self._start:
            try:
                self.start()
            except BaseException:
                self.print_logs()  # a start that fails (say, never converges) shows why
                self.cleanup()
                raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.print_logs()
        self.cleanup()
        return False

    def print_logs(self):
        """A failing test's nodes: how each ended and its last log lines (stderr),
        printed before cleanup takes the processes away."""
        for node in self.nodes:
            if node.proc is None:
                continue
            state = "running" if node.alive() else "exited %s" % node.proc.returncode
            print("  --- %s (%s), last log lines:\n%s" % (node.name, state, node.failure_log_text()),
                  flush=True)

    def cleanup(self):
        for node in self.nodes:
            node.cleanup()

    def kill(self, i):
        """kill -9 node i (its data dir stays)."""
        self.nodes[i].kill()

    def stop(self, i, sig=signal.SIGTERM, timeout=20.0):
        """Signals node i and waits for it to exit; returns (exit code, seconds)."""
        return self.nodes[i].stop(sig, timeout)

    def restart(self, i, extra=None, ready=True):
        """Starts node i again with the same data dir, id and ports; with
        ready false, returns once it listens (before GET /ready says 200)."""
        old = self.nodes[i]
        if old.alive():
            old.kill()
        node = harness.Node(data_dir=old.data_dir, name=self.ids[i],
                            args=self.node_args(i, old.join or [j for j in range(self.n) if j != i])
                            + (old.extra if extra is None else list(extra)), **self.placement(i))
        node.owns_dir = True  # the cluster owns the dirs: removed at cleanup
        node.join, node.extra = old.join, old.extra if extra is None else list(extra)
        old.owns_dir = False
        self.nodes[i] = node
        node.start(ready=ready)
        return node

    def kill_then_remove(self, killed, removed, via=0):
        """kill -9 each node of `killed` in turn, each waited for down by
        the nodes still running, then POST /cluster/remove of node `removed`
        (one of them) through node `via`."""
        for i in killed:
            self.kill(i)
            self.wait_state(i, "down", observers=self.live())
        r = self.nodes[via].request("POST", "/cluster/remove?node=%s" % self.ids[removed])
        assert r.status == 200, r

    @contextlib.contextmanager
    def paused(self, nodes, observer):
        """Within the block the nodes `nodes` are stopped (SIGSTOP) and node
        `observer` has seen them down; after it they run again (SIGCONT) and
        `observer` sees them active."""
        for j in nodes:
            self.nodes[j].proc.send_signal(signal.SIGSTOP)
        try:
            for j in nodes:
                self.wait_state(j, "down", observers=[observer])
            yield
        finally:
            for j in nodes:
                self.nodes[j].proc.send_signal(signal.SIGCONT)
            for j in nodes:
                self.wait_state(j, "active", observers=[observer], timeout=30)

    # ---- membership ----
    def live(self):
        return [i for i, node in enumerate(self.nodes) if node.alive()]

    def wait_hints_settled(self, timeout=30, down=()):
        """Waits until no running node's view has a member listing another
        in its hints_for: every hint of the pushes so far (those stored
        before the answer for a replica slower than --hint-ack-grace
        included) delivered or cancelled, and gossip told so. A node killed
        before its cancels were gossiped leaves its last list standing: the
        replicas it names are no stream source until it is back (their
        copies may lack a write only its hint holds). Hints for the nodes
        `down` (indexes: they wait for them to come back) are left alone."""
        def settled():
            for i in self.live():
                for m in self.status(i)["nodes"]:
                    if set(m.get("hints_for", [])) - {m["id"]} - {self.ids[j] for j in down}:
                        return False
            return True
        wait_for("every hint delivered or cancelled, as gossip tells", settled, timeout=timeout)

    def wait_unlisted(self, among, timeout=60):
        """Waits until no node of `among` sees a member that has not left
        list any node in its hints_for, itself included (a hint or mark
        waiting, a regain, a voided mark's window check, a start not yet
        heard by all): each node of `among` is then read from, and stopping
        the others leaves none of them listed by a stopped holder. On
        timeout the lists as each node sees them are in the message."""
        def lists(i):
            return {m["id"]: m["hints_for"] for m in self.status(i)["nodes"]
                    if m["state"] != "left" and m.get("hints_for")}
        try:
            wait_for("no member listing a node in its hints_for",
                     lambda: not any(lists(i) for i in among), timeout=timeout)
        except AssertionError as e:
            raise AssertionError("%s; lists: %r" % (e, {self.ids[i]: lists(i) for i in among})) \
                from e

    def status(self, i, timeout=5):
        r = self.nodes[i].get("/cluster/status", timeout=timeout)
        assert r.status == 200, "%s /cluster/status: %r" % (self.ids[i], r)
        return r.json()

    def states(self, i):
        """{node id: state} as node i sees it."""
        return {m["id"]: m["state"] for m in self.status(i)["nodes"]}

    def converged(self, among=None):
        """True when every running node in `among` sees exactly those nodes, all
        active, with one ring fingerprint."""
        among = self.live() if among is None else among
        want = {self.ids[i]: "active" for i in among}
        prints = set()
        for i in among:
            st = self.status(i)
            seen = {m["id"]: m["state"] for m in st["nodes"]}
            if {k: v for k, v in seen.items() if k in want} != want:
                return False
            if any(v == "active" for k, v in seen.items() if k not in want):
                return False
            prints.add(st["ring_fingerprint"])
        return len(prints) == 1

    def wait_converged(self, among=None, timeout=30.0):
        """Waits until every running node (or `among`) sees the others active."""
        wait_for("cluster convergence of %s" % [self.ids[i] for i in (among or self.live())],
                 lambda: self.converged(among), timeout)

    def wait_state(self, target, state, observers=None, timeout=None):
        """Waits until every running node other than `target` (or `observers`)
        reports node `target` in `state`; returns the seconds it took."""
        observers = [i for i in self.live() if i != target] if observers is None else observers
        tid = self.ids[target]
        timeout = timeout or self.failure_timeout_s * 3 + 10
        t0 = time.monotonic()
        wait_for("%s to be %s on %s" % (tid, state, [self.ids[i] for i in observers]),
                 lambda: all(self.states(i).get(tid) == state for i in observers), timeout,
                 interval=0.05)
        return time.monotonic() - t0


def harness_duration(s):
    """Seconds of a duration flag value (ms, s, m)."""
    s = str(s).strip()
    for suffix, mul in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mul
    return float(s)
