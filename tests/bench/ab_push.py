#!/usr/bin/env python3
"""ab_push.py — one node's HTTP ingest of two or more node binaries (or
settings), alternated.

For a change to a node's write path: each variant runs a fresh node in
turn, ROUNDS times (default 3); the profiles of a `flamedb-bench gen` index
are pushed over 2 keep-alive connections (as run.py's http step), and the
node's CPU (utime + stime) from the first push to the last acknowledgement
is printed per profile, then each variant's median. A variant is a binary,
optionally followed by `::` and settings, e.g.
`build/bin/flamedb::--shard-by-profile 0`. Every push must be acknowledged.

  tests/bench/ab_push.py INDEX.tsv VARIANT [VARIANT...] [--rounds N]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (Node, push_all, read_index)


def one_run(binary, extra, rows):
    work = tempfile.mkdtemp(prefix="flamedb-ab-push-")
    node = R.Node(binary, work, "1GiB", extra=extra)
    try:
        c0 = node.cpu_seconds()
        failures = R.push_all(node, rows)
        c1 = node.cpu_seconds()
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise RuntimeError("%s: %d pushes failed: %r" % (binary, len(failures), failures[:3]))
    return (c1 - c0) / len(rows) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index", help="a flamedb-bench gen index.tsv")
    ap.add_argument("variants", nargs="+", help="BINARY or BINARY::SETTINGS, alternated")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each variant (default 3)")
    a = ap.parse_args()
    rows = R.read_index(a.index)
    runs = {v: [] for v in a.variants}
    for _ in range(a.rounds):
        for v in a.variants:
            binary, _, settings = v.partition("::")
            us = one_run(binary, settings.split(), rows)
            runs[v].append(us)
            print("%s: %.0f us node CPU a profile" % (v, us), flush=True)
    for v in a.variants:
        print("%s: median %.0f us (%s)" % (v, statistics.median(runs[v]),
                                         " ".join("%.0f" % x for x in runs[v])))


if __name__ == "__main__":
    main()
