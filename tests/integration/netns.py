"""netns.py — a private network of Linux network namespaces for cluster tests.

    with NetNS(3) as net:                 # harness.Skip when namespaces are unavailable
        with Cluster(3, net=net) as c:    # node i runs in net.ns(i) on net.addr(i)
            net.partition(2)              # node 2's bridge port down: nothing passes
            net.heal(2)                   # up again
            net.cut_link(0, 2)            # only n0 <-> n2 cut (frames to a lost MAC)
            net.heal_link(0, 2)

The layout, all made by this module and torn down by close() (names carry a
random suffix, so concurrent runs do not meet):

    flamedb-it-PID-SFX-br      a namespace holding bridge `br0`
    flamedb-it-PID-SFX-nI      one per node: `eth0` (ADDR_I/24), lo up; its
                               veth peer `pI` is a port of br0
    host namespace             `fdbhSFX` (.254/24), veth peer `host` on br0,
                               so the test process reaches the nodes' HTTP ports

The /24 is a 10.x.y.0/24 drawn at random and checked against the host's
routes. Traffic stays inside these namespaces (and the host end of the one
veth). Nodes are started with `ip netns exec NS flamedb ...` (ip execs the
binary: the child's pid is the node's). A partition sets node i's port on the
bridge down (`ip -n BR link set pI down`): its packets are dropped, its TCP
connections neither close nor answer, as when a switch port or cable fails.

Needs root and iproute2's `ip`; otherwise, or when `ip netns add` fails, the
constructor raises harness.Skip saying why. Every command is bounded (10 s).
"""
import os
import re
import secrets
import shutil
import subprocess

import harness

PREFIX = "flamedb-it-"
CMD_TIMEOUT = 10.0
# A locally administered unicast address no interface of the test network has.
LOST_MAC = "02:00:5e:00:53:01"


def _ip(*args, check=True):
    """Runs `ip ARGS` (bounded); returns stdout, raises RuntimeError on failure."""
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                       timeout=CMD_TIMEOUT)
    if check and p.returncode != 0:
        raise RuntimeError("ip %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                   p.stderr.strip()))
    return p.stdout


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale():
    """Deletes namespaces this module made in a run whose process is gone
    (a test killed before its teardown); returns their names."""
    gone = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(re.escape(PREFIX) + r"(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))):
            _ip("netns", "del", name, check=False)
            gone.append(name)
    return gone


def _pick_subnet():
    """A 10.x.y.0/24 prefix ("10.x.y") no host route or address overlaps."""
    used = _ip("-4", "route", "show", "table", "all", check=False)
    used += _ip("-4", "addr", check=False)
    taken = set()
    for m in re.finditer(r"\b10\.(\d+)\.(\d+)\.\d+(?:/(\d+))?", used):
        taken.add((int(m.group(1)), int(m.group(2))))
        if m.group(3) and int(m.group(3)) < 24:
            taken.add((int(m.group(1)), None))  # a wider route: keep off its /16
    if re.search(r"\b10\.0\.0\.0/8\b", used) or re.search(r"\b10\.0\.0\.0/[0-7]\b", used):
        raise harness.Skip("the host routes all of 10.0.0.0/8: no private /24 to use")
    for _ in range(200):
        x, y = 64 + secrets.randbelow(128), secrets.randbelow(256)
        if (x, y) not in taken and (x, None) not in taken:
            return "10.%d.%d" % (x, y)
    raise harness.Skip("no free 10.x.y.0/24 found for the test network")


class NetNS:
    """n node namespaces on one bridge, reachable from the host (see module doc)."""

    def __init__(self, n):
        if os.geteuid() != 0:
            raise harness.Skip("network namespaces need root (running as uid %d)" % os.geteuid())
        if shutil.which("ip") is None:
            raise harness.Skip("iproute2's `ip` is not installed")
        self.n = n
        self.sfx = secrets.token_hex(3)
        base = "%s%d-%s" % (PREFIX, os.getpid(), self.sfx)
        self.bridge_ns = base + "-br"
        self.node_ns = ["%s-n%d" % (base, i) for i in range(n)]
        self.host_if = "fdbh" + self.sfx
        self.made = []  # namespaces created so far, deleted by close()
        self.host_link = False
        self.cluster_port = 7946  # each node has its own namespace: no port clash
        stale = sweep_stale()
        if stale:
            print("    removed stale test namespaces: %s" % ", ".join(stale), flush=True)
        try:
            _ip("netns", "add", self.bridge_ns)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            raise harness.Skip("`ip netns add` failed: %s" % e)
        self.made.append(self.bridge_ns)
        try:
            self.prefix = _pick_subnet()
            self._build()
        except harness.Skip:
            self.close()
            raise
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            self.close()
            raise harness.Skip("could not build the test network: %s" % e)
        print("    network namespaces: bridge %s, nodes on %s.0/24 (%s)"
              % (self.bridge_ns, self.prefix, ", ".join(self.addr(i) for i in range(n))),
              flush=True)

    def _build(self):
        br = self.bridge_ns
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        _ip("-n", br, "link", "set", "lo", "up")
        for i, ns in enumerate(self.node_ns):
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "p%d" % i,
                "netns", br)
            _ip("-n", ns, "addr", "add", "%s/24" % self.addr(i), "dev", "eth0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", br, "link", "set", "p%d" % i, "master", "br0")
            _ip("-n", br, "link", "set", "p%d" % i, "up")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", "host", "netns", br)
        self.host_link = True
        _ip("addr", "add", "%s.254/24" % self.prefix, "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", br, "link", "set", "host", "master", "br0")
        _ip("-n", br, "link", "set", "host", "up")

    # ---- what Cluster reads ----
    def ns(self, i):
        return self.node_ns[i]

    def addr(self, i):
        return "%s.%d" % (self.prefix, 10 + i)

    # ---- faults ----
    def partition(self, i):
        """Cuts node i off from every other node and from the test process."""
        _ip("-n", self.bridge_ns, "link", "set", "p%d" % i, "down")

    def heal(self, i):
        _ip("-n", self.bridge_ns, "link", "set", "p%d" % i, "up")

    def cut_link(self, i, j):
        """Cuts only the path between nodes i and j (a partial partition):
        each sends what it has for the other to a hardware address nobody
        has (a permanent neighbour entry), so the frames leave and are lost
        on the bridge as on a failed link, and TCP in i and j notices nothing
        but silence. Both still reach every other node and the test process."""
        for a, b in ((i, j), (j, i)):
            _ip("-n", self.ns(a), "neigh", "replace", self.addr(b), "lladdr", LOST_MAC,
                "nud", "permanent", "dev", "eth0")

    def heal_link(self, i, j):
        for a, b in ((i, j), (j, i)):
            _ip("-n", self.ns(a), "neigh", "del", self.addr(b), "dev", "eth0")

    # ---- teardown ----
    def close(self):
        """Deletes everything made (the nodes must be stopped first); returns
        the errors met, also printed. Safe to call twice."""
        errors = []
        if self.host_link:
            try:
                # gone already when the bridge namespace went (veth pairs die together)
                if _ip("link", "show", self.host_if, check=False):
                    _ip("link", "del", self.host_if)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(str(e))
            self.host_link = False
        for ns in reversed(self.made):
            try:
                _ip("netns", "del", ns)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(str(e))
        self.made = []
        for e in errors:
            print("    netns teardown: %s" % e, flush=True)
        return errors

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
