#!/usr/bin/env python3
"""render_time.py — where an in-process render's time goes, by phase.

Instruction counts (callgrind, docs/benchmarks.md) weigh an instruction the
same whether it hits L1 or waits on a far cache line, and count a `rep
stosb` a byte at a time: the render's selection and forest pass take more
of its time than of its instructions, the block read less. This samples
`flamedb-bench query` with perf (cpu-clock, DWARF stacks, so no hardware
counter is needed), keeps the samples taken within a render (under
render_once: the as-ingested, folded, compacted and 30-day phases, 200
renders each) and prints each phase's share of them and the functions the
samples landed in.

  tests/bench/render_time.py FLAMEDB_BENCH INDEX.tsv [--freq HZ] [--top N]

INDEX.tsv is a `flamedb-bench gen` index (run.py's heap set: `gen --kind
heap --services 1 --pods 4 --profiles 30 --step 120 --seed 1`). A build
with -g (`cmake -DCMAKE_C_FLAGS=-g`) names inlined functions too; a plain
Release build names those GCC kept.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile

# a render's phases, outermost first: a sample counts for the first one its
# stack holds
PHASES = [
    ("reading the blocks", "read_blocks"),
    ("the forests' pass", "storage_merger_tabs"),
    ("the selection", "query_keep_tabs"),
    ("the symbols", "query_load_symbols_kept"),
    ("the encoder", "query_encode_flamebearer_kept"),
]


def stacks(path):
    """Each sample's function names, innermost first."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym"], check=True,
                         capture_output=True, text=True).stdout
    for block in out.split("\n\n"):
        names = []
        for line in block.strip().splitlines():
            parts = line.strip().split(" ", 1)
            names.append(parts[1] if len(parts) == 2 else "?")
        if names:
            yield names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench", help="the flamedb-bench binary")
    ap.add_argument("index", help="a flamedb-bench gen index.tsv")
    ap.add_argument("--freq", type=int, default=1500, help="samples per second (default 1500)")
    ap.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="render-time-") as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(a.freq),
                        "--call-graph", "dwarf,32768", "-o", data, "--", a.bench, "query",
                        "--index", a.index], check=True, stdout=subprocess.DEVNULL)
        total, phase, leaf = 0, collections.Counter(), collections.Counter()
        for names in stacks(data):
            if not any(n.startswith("render_once") for n in names):
                continue
            total += 1
            leaf[names[0]] += 1
            held = set(n.split(" ")[0] for n in names)
            phase[next((label for label, fn in PHASES if fn in held), "the rest")] += 1
    if total == 0:
        sys.exit("render_time: no sample within render_once (perf without DWARF unwinding?)")
    print("samples within a render: %d" % total)
    print("| phase | share of the render's samples |")
    print("|---|---|")
    for label, _ in PHASES + [("the rest", None)]:
        print("| %s | %.1f %% |" % (label, 100.0 * phase[label] / total))
    print("\nfunctions the samples landed in (inlined ones named with -g):")
    for name, n in leaf.most_common(a.top):
        print("%6.1f %%  %s" % (100.0 * n / total, name))


if __name__ == "__main__":
    main()
