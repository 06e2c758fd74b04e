#!/usr/bin/env python3
"""deploy/demo_util.py — small helpers of deploy/demo.sh (standard library only).

  ports FIRST COUNT [AVOID...]   prints COUNT ports, FIRST, FIRST+1, ... or a free
                                 port instead of each one that is taken (or in AVOID)
  wait-cluster N SECONDS URL...  waits until every node's GET /cluster/status lists
                                 N active nodes with one ring fingerprint; exit 1
                                 (with what was seen last) when SECONDS pass
  ticks SECONDS QUERY FROM UNTIL URL...
                                 polls until every node answers the same numTicks
                                 for the query (replicas settle within moments),
                                 then prints per node its URL, the total in the
                                 query's unit (CPU as seconds), the exact numTicks
                                 and complete or partial; exit 1 when they still
                                 differ after SECONDS
"""
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def any_free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def cmd_ports(first, count, *avoid):
    taken = {int(p) for p in avoid}
    out = []
    for i in range(int(count)):
        p = int(first) + i
        for _ in range(100):
            if 0 < p < 65536 and p not in taken and bindable(p):
                break
            p = any_free_port()
        else:
            sys.exit("demo_util: no free port found")
        taken.add(p)
        out.append(str(p))
    print(" ".join(out))


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def cluster_seen(urls, n):
    """(ok, description) of what every node reports."""
    prints, seen = set(), []
    for u in urls:
        st = get_json(u + "/cluster/status")
        active = sorted(m["id"] for m in st["nodes"] if m["state"] == "active")
        seen.append("%s sees %s" % (st["self"], ",".join(active) or "nobody active"))
        if len(active) != n:
            return False, "; ".join(seen)
        prints.add(st["ring_fingerprint"])
    return len(prints) == 1, "; ".join(seen) + "; fingerprints %s" % sorted(prints)


def cmd_wait_cluster(n, seconds, *urls):
    deadline = time.monotonic() + float(seconds)
    last = "no answer yet"
    while True:
        try:
            ok, last = cluster_seen(urls, int(n))
            if ok:
                print(last)
                return 0
        except (OSError, ValueError, KeyError) as e:
            last = repr(e)
        if time.monotonic() > deadline:
            print("cluster not formed after %s s: %s" % (seconds, last), file=sys.stderr)
            return 1
        time.sleep(0.2)


def render_ticks(url, query, frm, until):
    q = urllib.parse.urlencode({"query": query, "from": frm, "until": until, "format": "json"})
    try:
        fb = get_json(url + "/pyroscope/render?" + q, timeout=60)
    except urllib.error.HTTPError as e:
        return "HTTP %d" % e.code, False
    return fb["flamebearer"]["numTicks"], bool(fb.get("partial", False))


def readable(ticks, query):
    """numTicks as a reader takes it in: CPU nanoseconds as seconds of CPU,
    bytes in GiB/MiB/KiB, anything else as the count it is."""
    if not isinstance(ticks, int):
        return str(ticks)
    fields = query.split("{", 1)[0].split(":")
    unit = fields[2] if len(fields) >= 3 else ""
    if unit == "nanoseconds":
        what = "of CPU" if fields[1] == "cpu" else ""
        return ("%.2f s %s" % (ticks / 1e9, what)).strip()
    if unit == "bytes":
        for div, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if ticks >= div:
                return "%.2f %s" % (ticks / div, name)
        return "%d B" % ticks
    return "%d %s" % (ticks, unit or "")


def cmd_ticks(seconds, query, frm, until, *urls):
    deadline = time.monotonic() + float(seconds)
    while True:
        got = [render_ticks(u, query, frm, until) for u in urls]
        if len({t for t, _ in got}) == 1 and not any(p for _, p in got):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    width = max(len(u) for u in urls)
    for u, (t, p) in zip(urls, got):
        print("  %-*s  %s (numTicks %s), %s" % (width, u, readable(t, query), t,
                                              "partial" if p else "complete"))
    return 0 if len({t for t, _ in got}) == 1 else 1


def main(argv):
    cmds = {"ports": cmd_ports, "wait-cluster": cmd_wait_cluster, "ticks": cmd_ticks}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.exit(__doc__)
    return cmds[argv[1]](*argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
