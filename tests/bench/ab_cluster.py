#!/usr/bin/env python3
"""ab_cluster.py — two node binaries as 3-node RF 1 clusters, side by side.

For a change to scatter-gather: each binary runs a 3-node RF 1 cluster (the
same node ids), and the new one a single node; the profiles of a
`flamedb-bench gen` index are pushed to each, then whole-fleet renders ask
every node of each deployment in turn, the deployments interleaved in every
round (2 untimed rounds first), so load from elsewhere on the machine hits
them alike. Every answer must be exact and the same bytes from every node.
Prints, per deployment, the median and fastest render and the node CPU per
render (every node of it, clock ticks, mean over the rounds; then the same
from the threads' schedstat in nanoseconds, and how many times a thread of
the deployment was put on a CPU per render: each hand-off between threads
wakes one).

  tests/bench/ab_cluster.py OLD_FLAMEDB NEW_FLAMEDB DIR/cpu/index.tsv [ROUNDS]
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (Node, read_index, log)
import bench_cluster as BC  # noqa: E402  (Deployment, ingest, settle, time_queries)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    old_bin, new_bin, index = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) == 5 else 40
    rows = R.read_index(index)
    lo = min(r["time"] for r in rows) // 10 * 10
    hi = (max(r["time"] for r in rows) // 10 + 1) * 10
    cpu_i = rows[0]["types"].index("cpu/nanoseconds")
    queries = [("whole fleet", BC.CPU + "{}", sum(r["totals"][cpu_i] for r in rows))]
    work = tempfile.mkdtemp(prefix="flamedb-ab-")
    os.symlink(os.path.dirname(index), os.path.join(work, "cpu"))
    deps = []
    try:
        for label, binary, n in (("old", old_bin, 3), ("new", new_bin, 3),
                                 ("single", new_bin, 1)):
            d = BC.Deployment(R, binary, work, n, 1, "1GiB", "rf1" if n == 3 else "single")
            d.name = label
            deps.append(d)
            BC.ingest(R, d, rows)
            BC.settle(R, d)
        threads = {}
        med = BC.time_queries(R, deps, queries, lo, hi, rounds, threads)
        for (name, q), (m, fastest, cpu) in sorted(med.items()):
            sc, runs = threads[(name, q)]
            print("%s: %s: median %.2f ms, min %.2f ms, node CPU %.2f ms per render "
                  "(schedstat %.2f ms, threads run %.1f times)" % (
                      name, q, m * 1e3, fastest * 1e3, cpu * 1e3, sc * 1e3, runs))
    finally:
        for d in deps:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
