#!/usr/bin/env python3
"""run.py — runs every tests/integration/test_*.py, each in its own process
with a time limit, and exits non-zero when any fails.

    FLAMEDB_BIN=build/bin/flamedb python3 tests/integration/run.py [-k substring] [--timeout S]
"""
import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="only test files whose name contains this")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per test file")
    a = ap.parse_args()
    sys.path.insert(0, HERE)
    import harness  # noqa: E402 - after the path is set

    if not os.access(harness.FLAMEDB_BIN, os.X_OK):
        print("run.py: flamedb binary not found at %s (set FLAMEDB_BIN)" % harness.FLAMEDB_BIN)
        return 1
    files = sorted(f for f in glob.glob(os.path.join(HERE, "test_*.py"))
                   if a.k in os.path.basename(f))
    failed = []
    t_all = time.monotonic()
    for path in files:
        name = os.path.basename(path)
        print("== %s" % name, flush=True)
        t0 = time.monotonic()
        try:
            rc = subprocess.run([sys.executable, path], cwd=HERE, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            print("   %s: timed out after %.0fs" % (name, a.timeout))
            rc = -1
        print("== %s %s (%.1fs)" % (name, "passed" if rc == 0 else "FAILED", time.monotonic() - t0),
              flush=True)
        if rc != 0:
            failed.append(name)
    print("\nintegration: %d files, %d failed%s (%.1fs)"
          % (len(files), len(failed), (": " + ", ".join(failed)) if failed else "",
             time.monotonic() - t_all))
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
