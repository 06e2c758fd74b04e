"""ports.py — free TCP ports on 127.0.0.1 for the nodes tests and benchmarks start.

A port is drawn at random below the kernel's ephemeral range (the ports
connect() and port-0 binds take), checked free by a bind a moment before it
is handed out, and never handed out twice by this process: a port drawn
from the ephemeral range may be taken by another process's (or another
node's) outgoing connection before the node given it binds it. No state
but the ports handed out; no side effect on import.
"""
import random
import socket

_used_ports = set()
_PORT_RNG = random.SystemRandom()  # not a seeded RNG: a replayed seed draws the same test data


def _port_range():
    """Ports to draw from: below the kernel's ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low - 1) if low > 12000 else (low, 65535)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (not handed out twice),
    drawn at random below the ephemeral range (_port_range)."""
    low, high = _port_range()
    for _ in range(100):
        port = _PORT_RNG.randint(low, high)
        if port in _used_ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise AssertionError("no free port found")
