#!/usr/bin/env python3
"""ab_cluster.py — two node binaries as clusters (3 nodes RF 1 by default),
side by side.

For a change to scatter-gather: each binary runs a cluster of NODES nodes at
RF (the second with the first's node identities: the same ids and ring
tokens, so the same ring) and a single node; the profiles of a
`flamedb-bench gen` index are pushed to each, then renders (the whole fleet; with
--services also each service on its own) ask every node of each deployment
in turn, the deployments interleaved in every
round (2 untimed rounds first), so load from elsewhere on the machine hits
them alike. Every answer must be exact and the same bytes from every node.
Prints, per deployment, the median and fastest render and the node CPU per
render (every node of it, clock ticks, mean over the rounds; then the same
from the threads' schedstat in nanoseconds, and how many times a thread of
the deployment was put on a CPU per render: each hand-off between threads
wakes one), and each binary's cluster ÷ single node ratios of node CPU and
median wall time (a change that speeds one node more than the cluster
raises them), and the medians of each step of the answers' Server-Timing
(the asked node's: docs/api.md).

With --ring FILE the clusters' node identities (ids and ring tokens) are
kept in FILE: the first run writes them, later runs read them, so runs
compare on one ring (how a service's shards fall on the nodes moves a
service's figures by more than most changes do).

  tests/bench/ab_cluster.py OLD_FLAMEDB NEW_FLAMEDB DIR/cpu/index.tsv [ROUNDS [NODES RF]]
                           [--services] [--ring FILE]
"""
import base64
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (Node, read_index, log)
import bench_cluster as BC  # noqa: E402  (Deployment, ingest, settle, time_queries)


def ring_option(argv):
    """(argv without --ring FILE, FILE or None)."""
    if "--ring" not in argv:
        return argv, None
    i = argv.index("--ring")
    if i + 1 >= len(argv):
        sys.exit(__doc__)
    return argv[:i] + argv[i + 2:], argv[i + 1]


def read_ring(path):
    """The identities kept in path (a JSON list of base64 strings), or None."""
    if path is None or not os.path.exists(path):
        return None
    with open(path) as f:
        return [base64.b64decode(x) for x in json.load(f)]


def write_ring(path, identities):
    with open(path, "w") as f:
        json.dump([base64.b64encode(x).decode() for x in identities], f)


def main():
    argv, ring = ring_option(sys.argv[1:])
    args = [a for a in argv if a != "--services"]
    if len(args) not in (3, 4, 6):
        sys.exit(__doc__)
    old_bin, new_bin, index = args[0], args[1], os.path.abspath(args[2])
    rounds = int(args[3]) if len(args) >= 4 else 40
    nodes, rf = (int(args[4]), int(args[5])) if len(args) == 6 else (3, 1)
    rows = R.read_index(index)
    lo = min(r["time"] for r in rows) // 10 * 10
    hi = (max(r["time"] for r in rows) // 10 + 1) * 10
    cpu_i = rows[0]["types"].index("cpu/nanoseconds")
    queries = [("whole fleet", BC.CPU + "{}", sum(r["totals"][cpu_i] for r in rows))]
    if "--services" in sys.argv:
        for svc in sorted({r["name"].split("{")[0] for r in rows}):
            want = sum(r["totals"][cpu_i] for r in rows if r["name"].split("{")[0] == svc)
            queries.append((svc, BC.CPU + '{service_name="%s"}' % svc, want))
    work = tempfile.mkdtemp(prefix="flamedb-ab-")
    os.symlink(os.path.dirname(index), os.path.join(work, "cpu"))
    deps = []
    try:
        for label, binary, n in (("old", old_bin, nodes), ("new", new_bin, nodes),
                                 ("old_single", old_bin, 1), ("new_single", new_bin, 1)):
            # the new cluster takes the old one's identities: one ring for both
            ids = deps[0].identities() if label == "new" else None
            if label == "old":
                ids = read_ring(ring)
                if ids is not None and len(ids) != n:
                    sys.exit("%s holds %d identities, not %d" % (ring, len(ids), n))
            d = BC.Deployment(R, binary, work, n, rf if n > 1 else 1, "1GiB",
                              "rf%d" % rf if n > 1 else "single", identities=ids)
            if label == "old" and ring is not None and ids is None:
                write_ring(ring, d.identities())
            d.name = label
            deps.append(d)
            BC.ingest(R, d, rows)
            BC.settle(R, d)
        threads, steps = {}, {}
        med = BC.time_queries(R, deps, queries, lo, hi, rounds, threads, steps)
        for (name, q), (m, fastest, cpu) in sorted(med.items()):
            sc, runs = threads[(name, q)]
            print("%s: %s: median %.2f ms, min %.2f ms, node CPU %.2f ms per render "
                  "(schedstat %.2f ms, threads run %.1f times)" % (
                      name, q, m * 1e3, fastest * 1e3, cpu * 1e3, sc * 1e3, runs))
            print("%s: %s: steps (ms, medians of Server-Timing): %s" % (
                name, q, BC.steps_text(steps[(name, q)])))
        for name in ("old", "new"):
            for q, _, _ in queries:
                (m, _, _), (sm, _, _) = med[(name, q)], med[(name + "_single", q)]
                sc, ssc = threads[(name, q)][0], threads[(name + "_single", q)][0]
                print("%s: %s: cluster / single node: CPU %.2fx, wall %.2fx" % (
                    name, q, sc / ssc if ssc > 0 else 0, m / sm if sm > 0 else 0))
    finally:
        for d in deps:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
