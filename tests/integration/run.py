#!/usr/bin/env python3
"""run.py — runs every tests/integration/test_*.py, each in its own process
with a time limit, and exits non-zero when any fails.

    FLAMEDB_BIN=build/bin/flamedb python3 tests/integration/run.py [-k substring]
        [--timeout S] [--jobs N]

With --jobs N (default: FLAMEDB_TEST_JOBS, else 1) up to N files run at
once, the longest first: by the seconds each file took in the last run of
this build (FLAMEDB_BUILD_DIR/integration-times.tsv, written at the end of
every run), a file not in it by its size; each file's output is printed
whole when it ends. Files that build network namespaces (netns in the
name) never run beside each other: while one runs, a free slot takes the
next other file instead of waiting for it. Every test picks free ports and
its own data directories, so files do not share anything else.
"""
import argparse
import glob
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_file(path, timeout):
    """(rc, output, seconds) of one test file run in its own process."""
    name = os.path.basename(path)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, path], cwd=HERE, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        rc, out = p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        out += "   %s: timed out after %.0fs\n" % (name, timeout)
        rc = -1
    return rc, out, time.monotonic() - t0


def run_serial(files, timeout, failed, took_all):
    for path in files:
        name = os.path.basename(path)
        print("== %s" % name, flush=True)
        t0 = time.monotonic()
        try:
            rc = subprocess.run([sys.executable, path], cwd=HERE, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            print("   %s: timed out after %.0fs" % (name, timeout))
            rc = -1
        took_all[name] = time.monotonic() - t0
        print("== %s %s (%.1fs)" % (name, "passed" if rc == 0 else "FAILED", took_all[name]),
              flush=True)
        if rc != 0:
            failed.append(name)


def is_netns(path):
    return "netns" in os.path.basename(path)


TIMES = os.path.join(os.environ.get("FLAMEDB_BUILD_DIR", os.path.join(HERE, "..", "..", "build")),
                     "integration-times.tsv")


def read_times():
    """{file name: seconds} of the last run of this build (none on a clean clone)."""
    times = {}
    try:
        with open(TIMES) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) == 2:
                    times[parts[0]] = float(parts[1])
    except (OSError, ValueError):
        return {}
    return times


def write_times(took):
    """Adds this run's {file name: seconds} to the recorded ones."""
    times = read_times()
    times.update(took)
    try:
        with open(TIMES, "w") as f:
            for name in sorted(times):
                f.write("%s\t%.1f\n" % (name, times[name]))
    except OSError as e:
        print("run.py: cannot record the files' times in %s: %s" % (TIMES, e))


# A file the recorded times do not name yet is ordered as if it took this long.
UNTIMED_S = 60.0


def longest_first(files):
    """Files by their last recorded time, longest first, ties and files
    without one (UNTIMED_S) by size; on a clean clone by size alone."""
    times = read_times()
    return sorted(files, key=lambda p: (times.get(os.path.basename(p), UNTIMED_S),
                                        os.path.getsize(p)), reverse=True)


def run_parallel(files, timeout, jobs, failed, took_all):
    todo = longest_first(files)
    cond, out_lock = threading.Condition(), threading.Lock()
    netns_running = [False]

    def take():
        """The next file to run, or None when none is left. A file that builds
        network namespaces is passed over while another one runs (the next
        other file runs instead), so no slot sits idle waiting for it."""
        with cond:
            while todo:
                for k, path in enumerate(todo):
                    if not (is_netns(path) and netns_running[0]):
                        del todo[k]
                        if is_netns(path):
                            netns_running[0] = True
                        return path
                cond.wait()  # only netns files are left and one of them runs
            return None

    def worker():
        while True:
            path = take()
            if path is None:
                return
            rc, out, took = run_file(path, timeout)
            if is_netns(path):
                with cond:
                    netns_running[0] = False
                    cond.notify_all()
            name = os.path.basename(path)
            with out_lock:
                print("== %s" % name)
                sys.stdout.write(out)
                print("== %s %s (%.1fs)" % (name, "passed" if rc == 0 else "FAILED", took),
                      flush=True)
                if rc != 0:
                    failed.append(name)
                took_all[name] = took

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="only test files whose name contains this")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per test file")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("FLAMEDB_TEST_JOBS", "1")),
                    help="test files run at once (default FLAMEDB_TEST_JOBS, else 1)")
    a = ap.parse_args()
    sys.path.insert(0, HERE)
    import harness  # noqa: E402 - after the path is set

    if not os.access(harness.FLAMEDB_BIN, os.X_OK):
        print("run.py: flamedb binary not found at %s (set FLAMEDB_BIN)" % harness.FLAMEDB_BIN)
        return 1
    files = sorted(f for f in glob.glob(os.path.join(HERE, "test_*.py"))
                   if a.k in os.path.basename(f))
    failed, took = [], {}
    t_all = time.monotonic()
    if a.jobs > 1:
        run_parallel(files, a.timeout, a.jobs, failed, took)
    else:
        run_serial(files, a.timeout, failed, took)
    write_times(took)
    print("\nintegration: %d files, %d failed%s (%.1fs)"
          % (len(files), len(failed), (": " + ", ".join(sorted(failed))) if failed else "",
             time.monotonic() - t_all))
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
