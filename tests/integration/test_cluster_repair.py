#!/usr/bin/env python3
"""Anti-entropy and removing a dead node, with real processes (issue #10):

- hinted handoff off (--hints-max-bytes 0), 3 nodes RF 3: a replica that was
  killed with -9 for a batch of pushes comes back short; after `flamectl
  cluster repair` it answers exactly on its own (the other two killed), and a
  second repair streams nothing (nothing counted twice);
- a partition simulated with SIGSTOP (no network namespaces needed) under
  continuous ingest, hinted handoff off: the stopped node misses writes, is
  marked, and once continued repairs itself while pushes go on; every node
  then answers the acknowledged total exactly on its own (time printed); the
  same with a real partition (network namespaces, where the machine allows
  them) is test_cluster_repair_netns.py;
- a miss nobody recorded (the coordinator was killed while it waited out
  the ack grace, before it stored a hint or answered, and the replica that
  witnessed it restarted): a pass finds and fetches it; passes run every
  --repair-interval;
- --repair-max-bytes-per-s: a pass's fetches keep to the rate;
- the routes are operator routes: with --auth-file only an admin token may
  repair or remove; bad parameters get 400/404;
- 4 nodes RF 2: a killed node is removed with `flamectl cluster remove`; the
  remaining nodes fetch its ranges, so with any one more node stopped every
  answer is still exact; restarted by mistake with its old data, the removed
  node rejoins marked short and is not read from until it repaired itself.

The time repair takes to converge is printed. Every wait is bounded; the seed
is printed (cluster.py) and replayed with FLAMEDB_TEST_SEED.
"""
import hashlib
import os
import signal
import subprocess
import tempfile
import time

import threading

import harness
from cluster import FAST_FORMATION, RNG, Cluster, wait_for
from test_cluster_write import Pusher

CTL = os.environ.get("FLAMECTL_BIN", os.path.join(harness.ROOT, "build", "bin", "flamectl"))
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SCALE = 10**7  # folded .cpu at the default 100 Hz


def query(service):
    return '%s{service_name="%s"}' % (CPU, service)


def url(c, i):
    return "http://127.0.0.1:%d" % c.nodes[i].port


def ctl(c, i, *args, timeout=120):
    t0 = time.monotonic()
    p = subprocess.run([CTL, "--url", url(c, i)] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    took = time.monotonic() - t0
    print("    $ flamectl %s  (exit %d, %.2fs)" % (" ".join(args), p.returncode, took))
    for line in (p.stdout + p.stderr).splitlines():
        print("      " + line)
    return p, took


def push(c, nodes, services, t0, first, count):
    """count distinct profiles (one per second of history) through nodes in
    turn, spread over services; returns {service: samples}, all acknowledged."""
    sent = {}
    for seq in range(first, first + count):
        svc = services[seq % len(services)]
        v = 1 + RNG.randrange(9)
        body = ("main;work;f%d %d\nmain;idle %d\n" % (seq % 7, v, seq % 3 + 1)).encode()
        node = nodes[seq % len(nodes)]
        for _ in range(100):  # a node just continued may not be seen up everywhere yet: 503
            r = c.nodes[node].ingest(body, name=svc + ".cpu", **{"from": t0 + seq},
                                     until=t0 + seq + 10)
            if r.status != 503:
                break
            time.sleep(0.1)
        assert r.status == 200, "push %d through %s: %r" % (seq, c.ids[node], r)
        sent[svc] = sent.get(svc, 0) + v + seq % 3 + 1
    return sent


def add(a, b):
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def hints_for(c, i):
    return sorted({h for m in c.status(i)["nodes"] for h in m.get("hints_for", [])})


def totals(c, i, want, t0):
    return {s: c.nodes[i].total(query(s), t0 - 10, t0 + 4000) // SCALE for s in want}


def totals_unless_partial(c, i, want, t0):
    """As totals, or None when an answer says it is partial (no live replica
    had some range: allowed while a node rejoins, never silently)."""
    out = {}
    for s in want:
        r = c.nodes[i].render(query(s), t0 - 10, t0 + 4000)
        assert r.status == 200, r
        j = r.json()
        if j.get("partial"):
            return None
        out[s] = j["flamebearer"]["numTicks"] // SCALE
    return out


def test_down_replica_answers_alone_after_repair():
    services = [harness.unique("rep%d" % k) for k in range(3)]
    t0 = int(time.time()) - 3600
    args = ["--write-timeout", "1s", "--hints-max-bytes", "0"] + FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, args=args) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 30)
        c.kill(2)
        c.wait_state(2, "down")
        want = add(want, push(c, [0, 1], services, t0, 30, 60))
        dropped = sum(c.nodes[i].metric("flamedb_hints_dropped_full_total") for i in (0, 1))
        assert dropped > 0, "hints were kept although hints-max-bytes is 0"
        # the coordinators marked n2 short: listed like a hint target, not read from
        for i in (0, 1):
            assert "n2" in hints_for(c, i), c.status(i)
            assert c.nodes[i].metric("flamedb_repair_marked_nodes") == 1
        c.restart(2)
        c.wait_converged(timeout=30)
        # n2 now asks its peers (they send it RUN); until its pass completed and
        # they lifted their marks, every answer through n2 is exact: n0 and n1
        # serve it, not n2's own short copy
        t1 = time.monotonic()
        answers = 0
        while time.monotonic() - t1 < 20:
            got = totals(c, 2, want, t0)
            assert got == want, "through n2 while it is marked: %s, want %s" % (got, want)
            answers += 1
            if not any(hints_for(c, i) for i in (0, 1, 2)):
                break
        healed = time.monotonic() - t1
        assert not any(hints_for(c, i) for i in (0, 1, 2)), "marks not lifted in 20 s"
        print("    %d exact answers through n2 until its own pass lifted the marks (%.2fs)"
              % (answers, healed))
        streamed = c.nodes[2].metric("flamedb_repair_series_streamed_total")
        # 60 missed while it was down, plus the last pushes before the kill
        # whose copy to n2 was still in flight (acknowledged by n0 and n1)
        assert 60 <= streamed <= 90, "n2 fetched %s series, missed at least 60" % streamed
        assert c.nodes[0].metric("flamedb_repair_marked_nodes") == 0

        p, took = ctl(c, 0, "cluster", "repair")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "converged" in p.stdout, p.stdout
        print("    flamectl cluster repair converged in %.2fs" % took)
        p2, _ = ctl(c, 1, "cluster", "repair")
        assert p2.returncode == 0 and "converged after 1 round(s)" in p2.stdout, p2.stdout
        assert "streamed 0 series" in p2.stdout, p2.stdout

        c.kill(0)
        c.kill(1)
        c.wait_state(0, "down", observers=[2])
        c.wait_state(1, "down", observers=[2])
        r = c.nodes[2].render(query(services[0]), t0 - 10, t0 + 4000)
        assert r.status == 200 and "x-flamedb-partial" not in r.headers, r.headers
        got = totals(c, 2, want, t0)
        assert got == want, "n2 alone after repair: %s, want %s" % (got, want)
        print("    n2 alone after repair, n0 and n1 killed: exact %s" % got)


def answers_through(c, i, services, want, t0, seconds, seen):
    """Asks node i for each service in turn for `seconds` (bounded); counts
    in seen what came back: 'exact', 'partial' (flagged), 'short' (neither:
    a silent short answer) or the status; returns the short ones."""
    short = []
    t1 = time.monotonic()
    for _ in range(100000):
        if time.monotonic() - t1 > seconds:
            break
        for s in services:
            r = c.nodes[i].render(query(s), t0 - 10, t0 + 4000)
            got = r.json()["flamebearer"]["numTicks"] // SCALE if r.status == 200 else None
            kind = (r.status if r.status != 200 else "partial" if "x-flamedb-partial" in r.headers
                    else "exact" if got == want[s] else "short")
            seen[kind] = seen.get(kind, 0) + 1
            if kind == "short":
                short.append("%.3fs %s: %d of %d" % (time.monotonic() - t1, s, got, want[s]))
    return short


def test_restarted_replica_waits_for_the_marks_word():
    """n2 restarts while n1, the only node that marked it short, is paused
    (SIGSTOP) right after the write n2 missed: n1 gossiped that mark to
    nobody yet, so the copy of n1's entry n0 hands n2 predates it. n2 must
    not read its own copy as complete before n1's own word since n2's start
    (a message naming n2's new incarnation) arrives; before, it did as soon
    as n0 told it the members, so every answer through it was short and
    unflagged (the same as when the transport hands a restarted node
    messages queued for its previous process)."""
    services = [harness.unique("mw%d" % k) for k in range(3)]
    t0 = int(time.time()) - 3600
    # a failure timeout the pause stays well inside: n1 stays a member all
    # along (a member seen down is not waited for, and nobody else knows its
    # mark); a query planned to the paused n1 waits half the query timeout
    args = ["--write-timeout", "1s", "--hints-max-bytes", "0", "--query-timeout", "2s"]
    with Cluster(3, rf=3, write_quorum=2, failure_timeout="5s",
                 args=args + FAST_FORMATION) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 30)
        c.kill(2)
        c.wait_state(2, "down")
        want = add(want, push(c, [1], services, t0, 30, 1))  # n1 marks n2, no one else
        n1 = c.nodes[1].proc
        n1.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        resumed = []

        def resume():
            n1.send_signal(signal.SIGCONT)
            resumed.append(time.monotonic() - paused)

        seen = {}
        timer = threading.Timer(0.6, resume)  # whatever the queries take
        try:
            c.restart(2, ready=False)
            timer.start()
            short = answers_through(c, 2, services, want, t0, 0.6, seen)
            timer.join(timeout=30)
        finally:
            timer.cancel()
            n1.send_signal(signal.SIGCONT)
        short += answers_through(c, 2, services, want, t0, 1.0, seen)
        print("    through n2 from its restart, n1 paused %.2f s (0.6 s after n2 listened): %s"
              % (resumed[0] if resumed else -1, seen))
        assert resumed and resumed[0] < 4, "n1 paused %s s: near the failure timeout" % resumed
        assert not short, "silent short answers through n2: %s" % short[:5]
        c.nodes[2].wait_ready()
        wait_for("n2 heard n1 and learnt its mark",
                 lambda: "n2" in [h for m in c.status(2)["nodes"] if m["id"] == "n1"
                                  for h in m.get("hints_for", [])] or not hints_for(c, 1),
                 timeout=20)
        wait_for("the marks of n2 lifted", lambda: not any(hints_for(c, i) for i in (0, 1, 2)),
                 timeout=30)
        got = totals(c, 2, want, t0)
        assert got == want, "through n2 once repaired: %s, want %s" % (got, want)


def test_partition_heals_under_ingest():
    service = harness.unique("part")
    t0 = int(time.time()) - 3600
    # a grace a loaded machine cannot miss by chance: with hints off every
    # push that leaves n2 behind its grace marks n2 again, and the marks are
    # checked to lift once nothing is missed any more
    args = ["--write-timeout", "1s", "--hints-max-bytes", "0", "--hint-ack-grace", "300ms"]
    with Cluster(3, rf=3, write_quorum=2, args=args + FAST_FORMATION) as c:
        p = Pusher(c, service, t0)
        p.targets = [0, 1]
        th = threading.Thread(target=p.run, daemon=True)
        th.start()
        time.sleep(1.0)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        c.wait_state(2, "down")
        time.sleep(1.5)  # writes n2 misses, with no hint kept
        assert "n2" in hints_for(c, 0) + hints_for(c, 1), "n2 not marked"
        c.nodes[2].proc.send_signal(signal.SIGCONT)
        healed = time.monotonic()
        c.wait_converged(timeout=30)
        # the pushes go on while n2 repairs itself; its marks go once a pass
        # that started after the last miss completed
        wait_for("the marks of n2 lifted",
                 lambda: not any(hints_for(c, i) for i in (0, 1, 2)), timeout=30)
        took = time.monotonic() - healed
        time.sleep(0.5)
        p.stop.set()
        th.join(timeout=30)
        assert not th.is_alive(), "pusher did not stop"
        p.retry_failed([0, 1])
        want = sum(p.acked.values())
        print("    %d pushes (statuses %s); n2 continued, repaired and read again after %.2fs"
              % (p.seq, p.statuses, took))
        # pushes acknowledged after the last pass may still be in flight to
        # n2 (W 2): wait until each node's own copy is exact
        frm, until = t0 - 10, t0 + p.seq + 20

        def alone_exact():
            return all(c.nodes[i].total('%s{service_name="%s"}' % (CPU, service), frm, until)
                       // SCALE == want for i in (0, 1, 2))
        wait_for("every node exact", alone_exact, timeout=20)
        p2, _ = ctl(c, 0, "cluster", "repair")
        assert p2.returncode == 0, p2.stdout
        for i in (0, 1):
            c.kill(i)
        c.wait_state(0, "down", observers=[2])
        c.wait_state(1, "down", observers=[2])
        got = c.nodes[2].total('%s{service_name="%s"}' % (CPU, service), frm, until) // SCALE
        assert got == want, "n2 alone: %d, want %d" % (got, want)
        print("    n2 alone after the others were killed: exact %d" % got)


def test_passes_run_on_the_schedule():
    """--repair-interval: an idle 2-node cluster in sync runs a pass on each
    node about every interval (1 s, delayed by up to a tenth at random),
    and none with 0 (nothing else asks for one there), so the passes
    counted are the schedule's."""
    for interval, lo, hi in (("1s", 3, 6), ("0", 0, 0)):
        args = ["--repair-interval", interval] + FAST_FORMATION
        with Cluster(2, rf=2, args=args) as c:
            for i in (0, 1):
                c.wait_state(i, "active", observers=[0, 1], timeout=30)
            time.sleep(1.5)  # past the first interval and anything the start ran
            before = [c.nodes[i].metric("flamedb_repair_passes_total") for i in (0, 1)]
            time.sleep(4.5)
            ran = [c.nodes[i].metric("flamedb_repair_passes_total") - b
                   for i, b in zip((0, 1), before)]
            print("    --repair-interval %s: %s passes in 4.5 s" % (interval, ran))
            assert all(lo <= n <= hi for n in ran), "passes %s, want %d to %d each" % (
                ran, lo, hi)


def test_unrecorded_miss_repaired_by_a_pass():
    """A write nobody recorded for a replica: n2 is stopped, n0 has the quorum
    (itself and n1) and waits out the ack grace for n2 before it would store
    n2's hint and answer; killed then, it leaves n1's copy and no hint or mark.
    n1 holds an in-memory witness of n2's miss until n0's word arrives (it
    would turn it into a repair mark once it sees n0 down): n1 is killed
    (-9) and restarted at once too, so the witness is gone with it, and the
    test checks that no node listed n2 as missing writes. Only a pass can
    give n2 that write: a scheduled one (every second here), or the one a
    node runs a settle margin after it sees a member go down, as n2 sees n0
    once continued; that one comes first (with --repair-interval 0 the test
    passes too: the schedule itself is test_passes_run_on_the_schedule)."""
    services = [harness.unique("sch%d" % k) for k in range(2)]
    t0 = int(time.time()) - 3600
    args = ["--write-timeout", "6s", "--query-timeout", "2s", "--repair-interval", "1s",
            "--hint-ack-grace", "10s"] + FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, failure_timeout="3s", args=args) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 20)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        t_push = time.monotonic()
        acks = c.nodes[0].metric("flamedb_replica_acks_total")
        body = b"main;work;lost 7\n"
        th = threading.Thread(target=lambda: _push_unanswered(c, body, services[0], t0 + 20),
                              daemon=True)
        th.start()
        # its own copy and n1's acknowledged: the quorum is met, n0 waits for n2
        wait_for("n0 holding a write with its quorum",
                 lambda: c.nodes[0].metric("flamedb_replica_acks_total") >= acks + 2, timeout=5)
        c.kill(0)  # before the grace and the 6 s deadline: no hint, no mark for n2
        c.kill(1)  # its witness of n2's miss lives in memory only
        c.restart(1, ready=False)
        th.join(timeout=10)
        want = add(want, {services[0]: 7})
        assert time.monotonic() - t_push < 5, "push too slow to beat the write deadline"
        time.sleep(6.5)  # the copy queued for n2 is past its deadline: dropped on arrival
        c.nodes[2].proc.send_signal(signal.SIGCONT)
        t1 = time.monotonic()
        marked = []

        def exact_unmarked():
            listed = [i for i in (1, 2) if "n2" in hints_for(c, i)]
            marked.extend(listed)
            return totals(c, 2, want, t0) == want and not any(hints_for(c, i) for i in (1, 2))
        # exact on its own: served by n2 itself, which nobody marked or hinted
        wait_for("n2 exact on its own, unmarked", exact_unmarked, timeout=30)
        took = time.monotonic() - t1
        assert not marked, "n2 listed as missing writes by %s: the miss was recorded" % marked
        assert c.nodes[1].metric("flamedb_hint_witnesses_marked_total") == 0
        print("    n2 exact on its own %.2fs after it continued, nobody having marked it" % took)
        assert c.nodes[2].metric("flamedb_repair_series_streamed_total") >= 1


def _push_unanswered(c, body, service, frm):
    """A push whose coordinator is killed before it answers (no 200)."""
    try:
        c.nodes[0].ingest(body, name=service + ".cpu", **{"from": frm}, until=frm + 10)
    except OSError:
        pass


def test_repair_fetches_are_throttled():
    """--repair-max-bytes-per-s holds an anti-entropy pass's fetches to the
    rate: a replica that missed 40 pushes (hints off) repairs itself no
    faster than their bytes at 2 KiB/s (unthrottled it takes about a second),
    and is exact afterwards."""
    services = [harness.unique("thr%d" % k) for k in range(2)]
    t0 = int(time.time()) - 3600
    rate = 2048
    args = ["--write-timeout", "1s", "--hints-max-bytes", "0", "--repair-interval", "0",
            "--repair-max-bytes-per-s", str(rate)] + FAST_FORMATION
    with Cluster(3, rf=3, write_quorum=2, args=args) as c:
        want = push(c, [0, 1, 2], services, t0, 0, 10)
        c.kill(2)
        c.wait_state(2, "down")
        want = add(want, push(c, [0, 1], services, t0, 10, 40))
        c.restart(2)
        t1 = time.monotonic()
        wait_for("the marks of n2 lifted",
                 lambda: not any(hints_for(c, i) for i in (0, 1, 2)), timeout=60)
        took = time.monotonic() - t1
        fetched = c.nodes[2].metric("flamedb_repair_bytes_streamed_total")
        print("    n2 fetched %d bytes and was read again %.2fs after its restart (%d bytes/s)"
              % (fetched, took, rate))
        assert fetched > 4 * rate, "too little fetched to see the throttle: %d bytes" % fetched
        assert took >= 0.9 * fetched / rate, "%d bytes in %.2fs: faster than %d/s" % (
            fetched, took, rate)
        waited = c.nodes[2].metric("flamedb_repair_throttled_milliseconds_total")
        assert waited >= 500 * fetched / rate, "waited %d ms for the throttle" % waited
        got = totals(c, 2, want, t0)
        assert got == want, "through n2 after repair: %s, want %s" % (got, want)


def test_routes_need_admin_and_check_parameters():
    fd, path = tempfile.mkstemp(prefix="flamedb-auth-")
    with os.fdopen(fd, "w") as f:
        for role, tok in (("read", "rd-token-1"), ("admin", "ad-token-1")):
            f.write("acme %s %s\n" % (role, hashlib.sha256(tok.encode()).hexdigest()))
    try:
        with harness.Node(args=["--auth-file", path]) as n:
            rd = {"Authorization": "Bearer rd-token-1"}
            ad = {"Authorization": "Bearer ad-token-1"}
            assert n.request("POST", "/cluster/repair").status == 401
            assert n.request("POST", "/cluster/repair", None, rd).status == 403
            r = n.request("POST", "/cluster/repair", None, ad)
            assert r.status == 200 and r.json()["complete"] is True, r
            assert n.request("POST", "/cluster/remove?node=n9", None, rd).status == 403
            assert n.request("POST", "/cluster/remove", None, ad).status == 400
            assert n.request("POST", "/cluster/remove?node=n9", None, ad).status == 404
            assert n.request("POST", "/cluster/remove?node=bad%20id", None, ad).status == 400
            assert n.request("GET", "/cluster/repair", None, ad).status == 405
    finally:
        os.unlink(path)


def test_round_after_an_incomplete_pass():
    """flamectl cluster repair does not stop at a round that streamed nothing
    but had a pass incomplete for a moment: n1 and n2 (of 3, RF 3) are
    stopped (SIGSTOP) as the command starts, so n0's pass gives them up once
    they are seen down (incomplete: fewer replicas than the write quorum
    answered), and they are continued before their own passes; a next round
    (a second later, once no node streams ranges in) completes and the
    command exits 0. Before, it stopped after the first round and exited 1
    (so a node still streaming in ranges of its full repair made a
    removal's repair fail)."""
    with Cluster(3, rf=3, failure_timeout="3s",
                 args=["--repair-interval", "0"] + FAST_FORMATION) as c:
        for i in (0, 1, 2):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        passes = c.nodes[0].metric("flamedb_repair_passes_total")
        for i in (1, 2):
            c.nodes[i].proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        p = subprocess.Popen([CTL, "--url", url(c, 0), "cluster", "repair"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for("n0's pass to end", lambda: c.nodes[0].metric(
                "flamedb_repair_passes_total") > passes, timeout=30)
        finally:
            for i in (1, 2):
                c.nodes[i].proc.send_signal(signal.SIGCONT)
        out, err = p.communicate(timeout=120)
        print("    $ flamectl cluster repair  (exit %d, %.2fs)" % (p.returncode,
                                                                 time.monotonic() - t0))
        for line in (out + err).splitlines():
            print("      " + line)
        first = out.split("round 2:")[0]
        assert "incomplete" in first and "another round" in first, out
        assert p.returncode == 0 and "round 2:" in out, out + err


def test_sigterm_during_a_pass_answers_and_exits():
    """A pass blocked on a peer that does not answer (SIGSTOP, not yet seen
    down) does not hold up the node's shutdown: the waiting request gets 503
    and the node exits well within shutdown-timeout."""
    with Cluster(2, rf=2, failure_timeout="10s", args=FAST_FORMATION) as c:
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        out = {}

        def ask():
            try:
                out["r"] = c.nodes[0].request("POST", "/cluster/repair", timeout=30)
            except OSError as e:
                out["r"] = e
        th = threading.Thread(target=ask, daemon=True)
        th.start()
        time.sleep(1.0)  # the pass now waits for n1's digest
        code, took = c.stop(0)
        th.join(timeout=10)
        c.nodes[1].proc.send_signal(signal.SIGCONT)
        r = out.get("r")
        assert code == 0 and took < 5, (code, took)
        assert getattr(r, "status", None) == 503 and b"stopping" in r.body, r
        print("    SIGTERM during a pass: 503 to its caller, exit 0 after %.2fs" % took)


def test_remove_dead_node_restores_rf():
    # one series per service: the 24 pushes while n3 is down name 24 series,
    # so some are n3's whatever share of the ring it drew (with 8 services
    # a run could push none of n3's series: no hint, and the wait failed)
    services = [harness.unique("rm%d" % k) for k in range(24)]
    t0 = int(time.time()) - 3600
    # write quorum 1: pushes go on while n3 is down, hinted for it
    with Cluster(4, rf=2, write_quorum=1, args=["--write-timeout", "1s"]) as c:
        want = push(c, [0, 1, 2, 3], services, t0, 0, 64)
        c.kill(3)
        c.wait_state(3, "down")
        want = add(want, push(c, [0, 1, 2], services, t0, 64, 24))  # hinted for n3
        # a write sent to n3 before its coordinator saw it down becomes a
        # hint only when the write times out (1 s), after the answer (W 1)
        wait_for("hints stored for the dead n3", lambda: sum(
            c.nodes[i].metric("flamedb_hints_stored_total") for i in (0, 1, 2)) > 0, timeout=10)
        p, took = ctl(c, 0, "cluster", "remove", "--node", "n3")
        assert p.returncode == 0, p.stdout + p.stderr
        print("    remove and re-replication took %.2fs" % took)
        for i in (0, 1, 2):
            assert c.states(i).get("n3") == "left", c.states(i)
        # the hints held for n3 are dropped on every node: they would never
        # be delivered (its ranges have other owners now)
        t1 = time.monotonic()
        while time.monotonic() - t1 < 15 and any(
                'target="n3"' in c.nodes[i].get("/metrics").body.decode() for i in (0, 1, 2)):
            time.sleep(0.2)
        for i in (0, 1, 2):
            body = c.nodes[i].get("/metrics").body.decode()
            assert 'flamedb_hints_pending{target="n3"}' not in body, body
        dropped = sum(c.nodes[i].metric("flamedb_hints_dropped_removed_total") for i in (0, 1, 2))
        # a hint stored before an answer whose replica acknowledged after the
        # grace was deleted again, one a live replica missed was replayed:
        # what was left to drop is the rest
        gone = sum(c.nodes[i].metric(m) for i in (0, 1, 2)
                   for m in ("flamedb_hints_cancelled_total", "flamedb_hints_replayed_total"))
        stored = sum(c.nodes[i].metric("flamedb_hints_stored_total") for i in (0, 1, 2))
        assert dropped == stored - gone, (dropped, stored, gone)
        print("    %d hints held for n3 dropped after its removal" % dropped)
        for i in (0, 1, 2):
            got = totals(c, i, want, t0)
            assert got == want, "after the removal %s answers %s, want %s" % (c.ids[i], got, want)
        # refused: removing a live node
        r = c.nodes[0].request("POST", "/cluster/remove?node=n1")
        assert r.status == 400, r
        for i in (0, 1, 2):  # any one node lost: RF 2 means the others still hold everything
            others = [k for k in (0, 1, 2) if k != i]
            c.nodes[i].proc.send_signal(signal.SIGSTOP)
            try:
                c.wait_state(i, "down", observers=others)
                for k in others:
                    got = totals(c, k, want, t0)
                    assert got == want, "%s stopped, %s answers %s, want %s" % (
                        c.ids[i], c.ids[k], got, want)
            finally:
                c.nodes[i].proc.send_signal(signal.SIGCONT)
            c.wait_state(i, "active", observers=others)
            print("    %s stopped: the other two answer exactly" % c.ids[i])

        # the removed node restarted with its old data by mistake: it rejoins,
        # lacks everything since, and is not read from until it repaired
        want = add(want, push(c, [0, 1, 2], services, t0, 88, 32))
        c.restart(3)
        c.wait_converged(timeout=30)
        t1 = time.monotonic()
        answers = partial = 0
        while time.monotonic() - t1 < 20:
            for i in range(4):
                got = totals_unless_partial(c, i, want, t0)
                if got is None:
                    partial += 1
                    continue
                assert got == want, "after n3 came back, %s answers %s, want %s" % (
                    c.ids[i], got, want)
                answers += 1
            if not any(hints_for(c, i) for i in range(4)):
                break
        assert not any(hints_for(c, i) for i in range(4)), "n3 still marked after 20 s"
        for i in range(4):
            assert totals(c, i, want, t0) == want
        print("    n3 came back: %d exact answers (%d flagged partial) until it repaired itself"
              " (%.2fs)" % (answers, partial, time.monotonic() - t1))
        p, _ = ctl(c, 0, "cluster", "repair")
        assert p.returncode == 0 and "converged after 1 round(s)" in p.stdout, p.stdout


if __name__ == "__main__":
    harness.run_tests(globals())
