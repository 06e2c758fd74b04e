"""test_ingest_inflight.py — ingest-inflight-bytes bounds the memory all the
pushes in progress on a node hold at once (decoded bodies and call trees),
whatever worker-threads is: many concurrent pushes of about 10 MiB of call
trees each against a 24 MiB budget. The gauge never shows more than the
budget, every push answered 200 is stored exactly, the others get 503 with
Retry-After naming the setting, and once they are done the node holds
nothing. A push that alone needs more than the budget gets 413."""
import threading
import time

from harness import CPU, Node, run_tests, unique

MiB = 1 << 20
BUDGET = 24 * MiB
LINES = 50000  # about 100,000 call-tree nodes: 10 MB charged
NODE = Node(name="inflight", args=[
    "--ingest-inflight-bytes", "24MiB", "--worker-threads", "8", "--max-write-jobs", "8",
    "--max-body-bytes", "8MiB", "--max-samples", "200000"]).start()
NOW = int(time.time())


def body_of(k, lines=LINES):
    return "".join("main;p%d;f%d;g%d %d\n" % (k, i, i, 1 + i % 3) for i in range(lines)).encode()


def total_of(lines=LINES):
    return sum(1 + i % 3 for i in range(lines))


def test_concurrent_pushes_within_the_budget():
    svc = unique("inflight")
    bodies = [body_of(k) for k in range(4)]
    answers, peak, done = [], [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], NODE.metric("flamedb_ingest_inflight_bytes"))
            time.sleep(0.01)

    def push(i):
        name = "%s%d.cpu" % (svc, i)
        r = NODE.ingest(bodies[i % 4], name=name, **{"from": NOW - 60})
        answers.append((name, i % 4, r))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for round_ in range(3):  # bounded: 3 rounds of 12 concurrent pushes
        threads = [threading.Thread(target=push, args=(round_ * 12 + i,), daemon=True)
                   for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if any(r.status == 503 for _, _, r in answers):
            break
    done.set()
    watcher.join(10)
    ok = [a for a in answers if a[2].status == 200]
    busy = [a for a in answers if a[2].status == 503]
    print("    %d pushes: %d stored, %d refused (503); gauge peak %.1f MiB of %d MiB"
          % (len(answers), len(ok), len(busy), peak[0] / MiB, BUDGET // MiB))
    assert len(ok) + len(busy) == len(answers), [a[2] for a in answers]
    assert ok and busy, "expected both stored and refused pushes"
    assert peak[0] <= BUDGET, peak
    for _, _, r in busy:
        assert b"ingest-inflight-bytes" in r.body, r
        assert r.headers.get("retry-after") == "1", r.headers
    for name, _, _ in ok:  # every accepted push is stored exactly (a sample is 10 ms)
        assert NODE.total('%s{service_name="%s"}' % (CPU, name[:-4])) == total_of() * 10**7
    assert NODE.metric("flamedb_ingest_inflight_refused_total") >= len(busy)
    assert wait_zero(), NODE.metric("flamedb_ingest_inflight_bytes")


def wait_zero():
    for _ in range(100):
        if NODE.metric("flamedb_ingest_inflight_bytes") == 0:
            return True
        time.sleep(0.05)
    return False


def test_push_alone_over_the_budget_is_413():
    svc = unique("alone")
    # 600,000 nodes and as many symbols: more than the 24 MiB budget, less
    # than the push's own cap (ingest-request-memory-per-byte x its 5.4 MB);
    # 150,000 lines, so the node allows more than the default max-samples
    body = "".join("main;f%d;g%d;h%d;k%d 1\n" % (i, i, i, i) for i in range(150000)).encode()
    r = NODE.ingest(body, name=svc + ".cpu", **{"from": NOW - 60})
    assert r.status == 413, r
    assert b"ingest-inflight-bytes" in r.body and b"alone" in r.body, r
    assert wait_zero()


run_tests(globals())
