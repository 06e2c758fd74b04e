#!/usr/bin/env python3
"""ab_ingest.py — the cluster ingest of two or more node binaries, alternated.

For a change to the write path of a cluster: each binary runs a fresh
cluster of 3 nodes at RF (default 3) in turn, ROUNDS times (default 2); the
profiles of a `flamedb-bench gen` index are pushed over 3 connections spread
over the nodes (as bench_cluster.py's ingest step), the first 40 untimed,
and the node CPU of every node (utime + stime) from the first timed push
until 2 s after the last acknowledgement is printed per profile. Every push
must be acknowledged.

  tests/bench/ab_ingest.py INDEX.tsv [--rf N] [--rounds N] FLAMEDB [FLAMEDB...]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (read_index, Node)
import bench_cluster as BC  # noqa: E402  (Deployment, push_spread)

UNTIMED = 40


def one_run(binary, rows, rf):
    work = tempfile.mkdtemp(prefix="flamedb-ab-ingest-")
    dep = BC.Deployment(R, binary, work, 3, rf, "1GiB", "ab%d" % rf)
    try:
        failures = BC.push_spread(R, dep, rows[:UNTIMED])
        time.sleep(1)
        c0 = dep.cpu_seconds()
        failures += BC.push_spread(R, dep, rows[UNTIMED:])
        time.sleep(BC.TAIL_S)
        c1 = dep.cpu_seconds()
    finally:
        dep.stop()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise RuntimeError("%s: %d pushes failed: %r" % (binary, len(failures), failures[:3]))
    return (c1 - c0) / (len(rows) - UNTIMED) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index", help="a flamedb-bench gen index.tsv")
    ap.add_argument("binaries", nargs="+", help="flamedb binaries, alternated")
    ap.add_argument("--rf", type=int, default=3, help="replication factor (default 3)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each binary (default 2)")
    a = ap.parse_args()
    rows = R.read_index(a.index)
    if len(rows) <= UNTIMED:
        sys.exit("ab_ingest: the index needs more than %d profiles" % UNTIMED)
    for r in rows:
        with open(r["path"], "rb") as f:
            r["body"] = f.read()
    for _ in range(a.rounds):
        for b in a.binaries:
            us = one_run(b, rows, a.rf)
            print("%s: 3 nodes RF %d, %.0f us node CPU a profile" % (b, a.rf, us), flush=True)


if __name__ == "__main__":
    main()
