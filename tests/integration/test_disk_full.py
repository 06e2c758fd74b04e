"""test_disk_full.py — a data directory whose disk fills: pushes are refused
(503) while it is full, the node stays up, and once room is made writes go
on by themselves (RocksDB resumes), without a restart.

Debian's librocksdb is built with assertions on: a write to RocksDB's own
LOG file after one failed for lack of space aborted the whole process (the
node died after about a dozen pushes into a full disk). The node now keeps
that LOG to its header (rocksdb-log-level 5).

Needs root (a small tmpfs is mounted for the data directory); skipped
elsewhere. Every wait is bounded."""
import os
import subprocess
import tempfile
import time

from harness import CPU, Node, Skip, run_tests


def test_full_disk_refuses_writes_and_recovers():
    mnt = tempfile.mkdtemp(prefix="flamedb-it-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        os.rmdir(mnt)
        raise Skip("cannot mount a tmpfs here (not root)")
    try:
        n = Node(data_dir=os.path.join(mnt, "d"), args=["--write-buffer-bytes", "2MiB"])
        with n:
            filler = os.path.join(mnt, "filler")
            subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"],
                           capture_output=True)  # until the disk is full
            now = int(time.time())
            statuses = []
            for k in range(60):
                body = "".join("main;s%d;f%d;g%d_%d 1\n" % (k % 13, i, k, i)
                               for i in range(2000)).encode()
                try:
                    statuses.append(n.ingest(body, name="full%d.cpu" % (k % 5),
                                             **{"from": now - 300 + k}).status)
                except OSError:
                    statuses.append(0)
                assert n.alive(), "died after %d pushes into a full disk:\n%s" % (
                    k + 1, n.log_text(5))
            assert 503 in statuses and 0 not in statuses, statuses
            assert n.get("/ready").status == 200
            os.unlink(filler)
            deadline = time.monotonic() + 60
            for _ in range(600):
                r = n.ingest(b"main;after 3\n", name="afterfull.cpu", **{"from": now})
                if r.status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert r.status == 200, r
            assert n.total(CPU + '{service_name="afterfull"}') == 3 * 10**7
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        os.rmdir(mnt)


if __name__ == "__main__":
    run_tests(globals())
