"""test_durability.py — --sync-writes: with 1 every acknowledged push has had
its write-ahead log fsynced (the node's WAL sync count grows with the pushes),
with 0 (the default) it is never synced; in both modes a push acknowledged
before `kill -9` is there after the restart (docs/operations.md, Durability).
A power loss cannot be simulated here; the fsync count is what tells the two
modes apart."""
import shutil
import tempfile
import time

from harness import CPU, Node, run_tests, unique
from profiles import folded

NOW = int(time.time())
NS = 10**9 // 100


def run_mode(sync):
    data = tempfile.mkdtemp(prefix="flamedb-it-durable-")
    try:
        args = ["--sync-writes", "1"] if sync else []  # 0 is the default: no flag
        node = Node(data_dir=data, args=args, name="sync%d" % sync).start()
        svc = unique("durable")
        before = node.metric("flamedb_storage_wal_syncs_total")
        for i in range(5):
            r = node.ingest(folded({"main;work": 3}), name=svc + ".cpu", **{"from": NOW - 60 + i})
            assert r.status == 200, r
        syncs = node.metric("flamedb_storage_wal_syncs_total") - before
        writes = node.metric("flamedb_storage_wal_writes_total")
        node.kill()  # kill -9: no flush, no clean close
        node = Node(data_dir=data, name="sync%d-again" % sync).start()
        total = node.total(CPU + '{service_name="%s"}' % svc)
        node.cleanup()
        return syncs, writes, total
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_sync_writes_off_is_the_default_and_survives_kill9():
    syncs, writes, total = run_mode(0)
    assert writes >= 5, writes
    assert syncs == 0, syncs
    assert total == 5 * 3 * NS, total


def test_sync_writes_on_fsyncs_every_push():
    syncs, writes, total = run_mode(1)
    assert syncs >= 5, (syncs, writes)  # pushed one after another: one fsync each at least
    assert total == 5 * 3 * NS, total


run_tests(globals())
