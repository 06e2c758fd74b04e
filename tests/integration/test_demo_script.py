"""test_demo_script.py — deploy/demo.sh as a user runs it while its HTTP port
is taken: it moves to a free port, and what it prints to copy into a shell
reaches the demo node, not the program on the port it wanted; and the rate
flamedb-demo's summary line prints for slow live traffic; and the printed
diff of checkout v1 against v2 still finds v1 when it is over an hour old.

Runs the script with --nodes 1 --backfill 0 --no-install --no-build on the
built binaries (FLAMEDB_BUILD_DIR), reads its output up to "Press Ctrl-C",
then stops it with SIGINT. Skips, saying why, without the built flamedb-demo.
"""
import os
import re
import signal
import socket
import subprocess
import time

from harness import ROOT, Node, Skip, run_tests

BUILD = os.environ.get("FLAMEDB_BUILD_DIR", os.path.join(ROOT, "build"))


def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def run_demo(port, cport, deadline_s=90, backfill=0):
    """Starts the demo; returns (process, its output up to "Press Ctrl-C")."""
    cmd = ["bash", os.path.join(ROOT, "deploy", "demo.sh"), "--nodes", "1", "--backfill", str(backfill),
           "--port", str(port), "--cluster-port", str(cport), "--no-install", "--no-build",
           "--build-dir", BUILD]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, FLAMEDB_URL=""))
    out = b""
    deadline = time.monotonic() + deadline_s
    os.set_blocking(proc.stdout.fileno(), False)
    while b"Press Ctrl-C" not in out and time.monotonic() < deadline and proc.poll() is None:
        chunk = proc.stdout.read()
        if chunk:
            out += chunk
        else:
            time.sleep(0.1)
    return proc, out.decode("utf-8", "replace")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_printed_flamectl_setup_reaches_the_moved_demo():
    if not os.access(os.path.join(BUILD, "bin", "flamedb-demo"), os.X_OK):
        raise Skip("no %s/bin/flamedb-demo" % BUILD)
    taken, ctaken = listening_socket(), listening_socket()
    port, cport = taken.getsockname()[1], ctaken.getsockname()[1]
    proc, out = run_demo(port, cport)
    try:
        assert "Press Ctrl-C" in out, out[-3000:]
        m = re.search(r"^\s*export FLAMEDB_URL=(http://127\.0\.0\.1:(\d+))\s*$", out, re.M)
        assert m, ("no export FLAMEDB_URL line", out[-3000:])
        assert int(m.group(2)) != port, ("the demo kept the taken port", m.group(0))
        # and says so, naming both ports (the documents' examples use 4040)
        assert "port %d is taken: node1 serves HTTP on %s instead" % (port, m.group(2)) in out, out[:2000]
        # the printed line, pasted into a shell, makes plain flamectl reach the demo
        ctl = os.path.join(BUILD, "bin", "flamectl")
        r = subprocess.run(["bash", "-c", m.group(0).strip() + ' && "$0" ready', ctl],
                           capture_output=True, timeout=30, env=dict(os.environ, FLAMEDB_URL=""))
        assert r.returncode == 0, (r.stdout, r.stderr)
        # every printed flamectl command names the node it goes to
        for line in out.splitlines():
            if re.search(r"flamectl ", line) and "/flamectl" in line.split()[0]:
                assert "--url http://127.0.0.1:%s " % m.group(2) in line, line
    finally:
        stop(proc)
        taken.close()
        ctaken.close()


def test_printed_diff_finds_v1_past_an_hour():
    """v1 of checkout runs only in the first half of the history: with two
    hours of it (as after a default demo ran for an hour), the printed diff
    still has v1 on its left (it asked for now-1h: an empty baseline)."""
    if not os.access(os.path.join(BUILD, "bin", "flamedb-demo"), os.X_OK):
        raise Skip("no %s/bin/flamedb-demo" % BUILD)
    taken, ctaken = listening_socket(), listening_socket()
    proc, out = run_demo(taken.getsockname()[1], ctaken.getsockname()[1], deadline_s=240, backfill=7200)
    try:
        assert "Press Ctrl-C" in out, out[-3000:]
        line = [x for x in out.splitlines() if "/flamectl " in x and " diff " in x]
        assert len(line) == 1, out[-3000:]
        r = subprocess.run(["bash", "-c", line[0].strip()], capture_output=True, timeout=60)
        text = r.stdout.decode()
        assert r.returncode == 0, (line[0], r.stderr)
        m = re.search(r"^left ([\d.]+)s over \d+s .*, right ([\d.]+)s over", text, re.M)
        assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, (line[0], text[-800:])
        assert "pricing.applyDiscounts" in text, text[-800:]
    finally:
        stop(proc)
        taken.close()
        ctaken.close()


def test_slow_live_rate_is_not_printed_as_zero():
    """A live run below one profile a second (a 3-node demo's generators push
    14 profiles every 30 s) prints its real rate, not (0/s)."""
    demo = os.path.join(BUILD, "bin", "flamedb-demo")
    if not os.access(demo, os.X_OK):
        raise Skip("no %s" % demo)
    node = Node(name="demorate").start()
    try:
        t0 = time.monotonic()
        r = subprocess.run([demo, "--url", node.url(), "--rate", "0.4", "--count", "2",
                            "--no-spans"], capture_output=True, timeout=60)
        took = time.monotonic() - t0
        err = r.stderr.decode()
        assert r.returncode == 0, err
        m = re.search(r"2 profiles pushed .* in ([\d.]+) s \(([\d.]+)/s\), 0 failed", err)
        assert m, err
        rate = float(m.group(2))
        assert 0 < rate < 1, err  # 2 profiles in about 5 s
        assert abs(rate - 2 / float(m.group(1))) < 0.01 and float(m.group(1)) <= took, err
    finally:
        node.stop()


if __name__ == "__main__":
    run_tests(globals())
