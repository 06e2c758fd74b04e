#!/usr/bin/env python3
"""Acknowledged writes that a replica missed, with no repair mark left
anywhere, with real processes (issue #10, docs/cluster.md "The window
check", "what is covered").

A coordinator marks a replica that missed a write it acknowledged; if the
coordinator then loses its data (kill -9, then removed for good, or
restarted with an empty data dir) the mark goes with it, and nothing but
anti-entropy can tell the replica is short. Profiles two hours old are
older than the seen span (--seen-retention 60s), so only the window check
(per range, a count and order-free hash of the profile tree entries) finds
them. Hinted handoff is off (--hints-max-bytes 0), except in the two
tests of a hint witnessed by the write (HINTS_ON).

- test_acknowledged_misses_coordinators_removed: 4 nodes RF 4 write
  quorum 2; n3 misses old profiles acknowledged through n0, n0 is killed
  and removed for good, n3 restarted (and repaired: n1 and n2 marked it);
  n2 misses others acknowledged
  through n1, n1 is killed and removed, n2 restarted: the survivors'
  copies are mixed. After `flamectl cluster repair` n2 and n3 each alone
  answer exactly the acknowledged totals;
- test_missed_write_found_without_repair: 3 nodes RF 3, default schedules,
  no flamectl: n2 misses acknowledged old profiles, their coordinator n0
  is killed and removed through the HTTP route (no repair round). The
  removal must not make n1 (which acknowledged them) take n2's copy, and
  the window check that follows a member's loss must make n2 whole: each
  alone answers exactly;
- test_voided_mark_not_read_before_check: as the one before, but n2 runs
  window checks only on demand and n1 (the only other replica) is stopped
  when n0 is removed through n2: the removal voids n0's mark on n2, and n2
  must not answer from its copy until a window check after the removal
  compared it with n1. Polled from the removal on, every answer through n2
  is flagged partial or refused, never short and unflagged; once n1 runs
  again n2 is read again and ends exact;
- test_voided_mark_kept_across_restart: n2 waits for its check after
  n0's removal voided its mark (a long settle margin) and is killed and
  started again: the wait is kept (DATA_DIR/regain.void), so n2 is still
  not read until its check;
- test_removed_while_down_not_read_before_check: n0, holding the mark
  on n2, is removed while n2 is down; n2 starts again (window checks on
  demand): it is not read until its own window check compared its copy,
  and then answers exactly alone;
- test_mark_outlives_its_coordinator: n2 is down when a write is
  acknowledged through n0, which marks n2 and is killed before a gossip
  round carries the mark; n1, which acknowledged the write, marked n2 too
  (the write named n2 as missing it), so n2 alone answers flagged partial,
  never short and unflagged, and exactly once it repaired itself;
- test_hint_outlives_its_coordinator: the same with hinted handoff on (the
  defaults): n0 holds a hint for n2, not a mark, and is killed before a
  gossip round carries its hints_for; n1, which acknowledged the write,
  holds n2 unread until n0's word arrives, and marks n2 itself once it sees
  n0 down first, so n2 alone answers flagged partial, never short and
  unflagged, and exactly once it repaired itself;
- test_hint_witness_lifted_by_its_coordinator: hinted handoff on, n2 down
  for a batch of pushes through n0, which survives: n1's hold on n2 ends
  with n0's word, no mark and no repair pass, and n2 is read again once
  n0's hints are delivered, exact alone;
- test_replica_restarts_empty: n2 loses its data dir (kill -9, wiped) and
  restarts with the same id: every answer through every node, polled all
  along, is exact, flagged partial or refused, never short and unflagged,
  and n2 ends exact on its own.
"""
import os
import shutil
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_join import big_body, metric
from test_cluster_old_windows import ARGS, SCALE, answers, preload, push_ok, sel
from test_cluster_repair import ctl, hints_for

RECOVER_S = 90


def repair_via(c, i):
    p, took = ctl(c, i, "cluster", "repair", timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "converged" in p.stdout, p.stdout
    return took


def ack_missed(c, via, missing, svcs, seed, t):
    """One old profile per service acknowledged through `via` while node
    `missing` is stopped (SIGSTOP), which is then killed (-9) still stopped:
    the writes queued for it die with it. {service: samples}."""
    out = {}
    c.nodes[missing].proc.send_signal(signal.SIGSTOP)
    try:
        for k, svc in enumerate(sorted(svcs)):
            body, v = big_body(seed + k, lines=8)
            push_ok(c, via, body, svc, t + k)
            out[svc] = v
    finally:
        c.kill(missing)
    return out


def add(want, more):
    for s, v in more.items():
        want[s] += v


def poll(c, nodes, want, frm, until):
    """[(node, service, got, want)] answered short (or long) and not flagged
    partial; (flagged, refused, asked)."""
    bad, flagged, refused, asked = [], 0, 0, 0
    for i in nodes:
        for svc in want:
            try:
                r = c.nodes[i].render(sel(svc), frm, until)
            except Exception:  # the node not listening yet
                refused += 1
                continue
            asked += 1
            if r.status != 200:
                refused += 1
                continue
            if "x-flamedb-partial" in r.headers:
                flagged += 1
                continue
            got = r.json()["flamebearer"]["numTicks"] // SCALE
            if got != want[svc]:
                bad.append((c.ids[i], svc, got, want[svc]))
    return bad, (flagged, refused, asked)


def alone_exact(c, nodes, want, frm, until):
    for i in nodes:
        others = [j for j in nodes if j != i]
        got = _alone(c, i, others, want, frm, until)
        short = sorted((s, got[s], want[s]) for s in want if got[s] != want[s])
        print("    %s alone: %s" % (c.ids[i], "exact" if not short else short))
        assert not short, "%s alone answers %r" % (c.ids[i], short)


def _alone(c, i, others, want, frm, until):
    """Node i's answers with `others` stopped (SIGSTOP, seen down)."""
    with c.paused(others, i):
        return answers(c, i, want, frm, until)


def marks(c, i):
    """The nodes that members other than `left` ones list in hints_for, as
    node i sees them (a removed node's entry keeps its last lists, which no
    read plan counts)."""
    return sorted({h for m in c.status(i)["nodes"] if m["state"] != "left"
                   for h in m.get("hints_for", [])})


def wait_no_marks(c, nodes, timeout=90):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not any(marks(c, i) for i in nodes):
            return
        time.sleep(0.2)
    raise AssertionError("marks stay: %r" % [
        {m["id"]: (m["state"], m.get("hints_for")) for m in c.status(i)["nodes"]} for i in nodes])


def remove(c, gone, via, back=None):
    """kill -9 node `gone` (the coordinator, with its marks), restart node
    `back` (the replica that missed its writes), then flamectl cluster
    remove through node `via`."""
    c.kill(gone)
    c.wait_state(gone, "down", observers=c.live(), timeout=60)
    if back is not None:
        c.restart(back)
        c.wait_state(gone, "down", observers=[back], timeout=60)
    p, _ = ctl(c, via, "cluster", "remove", "--node", c.ids[gone], timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr


def test_acknowledged_misses_coordinators_removed():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(4, rf=4, write_quorum=2, args=ARGS) as c:
        want = preload(c, 0, "akr", now, 40, 4)
        wait_no_marks(c, [0, 1, 2, 3])
        add(want, ack_missed(c, 0, 3, want, 9100, now - 7100))  # n3 misses them
        remove(c, 0, 2, back=3)
        # n1 and n2 were told n3 was slow (a notice) and marked it when n0
        # died: n3 repairs itself before n2 misses writes in turn (two
        # replicas each marked by the other, the third gone, are not
        # compared with each other: docs/cluster.md)
        wait_no_marks(c, [1, 2, 3])
        add(want, ack_missed(c, 1, 2, want, 9200, now - 7000))  # n2 misses these
        remove(c, 1, 3, back=2)
        c.wait_converged(among=[2, 3], timeout=60)
        print("    marks after the removals: n2 %r, n3 %r (with the tombstones: %r)"
              % (marks(c, 2), marks(c, 3), hints_for(c, 2)))
        took = repair_via(c, 2)
        print("    flamectl cluster repair took %.2f s" % took)
        wait_no_marks(c, [2, 3])
        fetched = [metric(c, i, "flamedb_repair_window_profiles_fetched_total") for i in (2, 3)]
        print("    fetched by id: n2 %d, n3 %d" % tuple(fetched))
        alone_exact(c, [2, 3], want, frm, until)


def test_missed_write_found_without_repair():
    """No flamectl, default schedules (a pass an hour, a window check a
    day): n2 misses acknowledged old writes, their coordinator n0 is killed
    and n2 restarts; n0's mark on n2 keeps n2 unread while n0 is down, and
    goes when n0 is removed through the HTTP route (POST /cluster/remove,
    which runs no repair round). Every node, on seeing a member go down,
    come back or leave the ring, runs a pass with its window check a settle
    margin later: n2 fetches what it lacks by profile id, and answers
    exactly on its own (n1 stopped). Before, n2 was read again as soon as
    the removal's regain ended and answered short and unflagged until the
    next scheduled window check, a day later."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = preload(c, 0, "akf", now, 24, 4)
        wait_no_marks(c, [0, 1, 2])
        add(want, ack_missed(c, 0, 2, want, 9300, now - 7100))
        c.kill(0)
        c.restart(2)
        c.wait_state(0, "down", observers=[1, 2], timeout=60)
        checks = lambda: metric(c, 2, "flamedb_repair_window_checks_total")
        before = checks()
        r = c.nodes[1].request("POST", "/cluster/remove?node=n0")
        assert r.status == 200, r
        t0 = time.monotonic()
        wait_for("n1 and n2 read again", lambda: not marks(c, 1) and not marks(c, 2)
                 and all(c.status(i).get("regaining", 0) == 0 for i in (1, 2)), timeout=60)
        print("    n2 read again %.1f s after the removal" % (time.monotonic() - t0))
        for attempt in range(4):  # a check left for later retries a settle margin on
            time.sleep(3)
            got = _alone(c, 2, [1], want, frm, until)
            short = sorted((s, got[s], want[s]) for s in want if got[s] != want[s])
            if not short:
                break
        print("    n2 alone, %.1f s after the removal: %s; %d window check(s) since, %d "
              "profile(s) fetched by id" % (time.monotonic() - t0, "exact" if not short else short,
                                             checks() - before,
                                             metric(c, 2, "flamedb_repair_window_profiles_fetched_total")))
        assert not short, "n2 alone answers short, unflagged: %r" % short
        g1 = _alone(c, 1, [2], want, frm, until)
        lost = sorted((s, g1[s], want[s]) for s in want if g1[s] != want[s])
        print("    n1 alone: %s" % ("exact" if not lost else lost))
        assert not lost, "n1, which acknowledged them, lost writes: %r" % lost


def mark_on(c, i, holder, target):
    """Whether node i sees `holder`'s entry list `target` in its hints_for."""
    return any(m["id"] == c.ids[holder] and c.ids[target] in m.get("hints_for", [])
               for m in c.status(i)["nodes"])


def watch(c, i, want, frm, until, seconds):
    """Polls node i for `seconds`: [short unflagged answers], (flagged,
    refused, asked)."""
    t0, bad, seen = time.monotonic(), [], [0, 0, 0]
    while time.monotonic() - t0 < seconds:
        wrong, counts = poll(c, [i], want, frm, until)
        bad += wrong
        seen = [a + b for a, b in zip(seen, counts)]
        time.sleep(0.1)
    return bad, seen


def test_voided_mark_not_read_before_check():
    """n2 misses acknowledged old writes through n0, whose mark on n2 is
    gossiped; n0 is killed and n2 restarted with window checks only on
    demand (--repair-windows-interval 0), so no check runs when it sees n0
    down. n1 is stopped (seen down by n2), then n0 removed through n2: the
    removal voids the only word that n2 is short. n2 must not serve its copy
    as whole until a window check after the removal compared it with n1:
    while n1 is stopped every answer through n2 is flagged partial or
    refused; once n1 runs again n2 fetches what it lacks and answers
    exactly. Before, n2 was read as whole from the removal on (with
    default schedules for a settle margin, until the check that follows a
    member's loss; here until the next flamectl cluster repair)."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = preload(c, 0, "akv", now, 24, 4)
        wait_no_marks(c, [0, 1, 2])
        add(want, ack_missed(c, 0, 2, want, 9400, now - 7100))
        wait_for("n1 hears n0's mark on n2", lambda: mark_on(c, 1, 0, 2), timeout=60)
        c.kill(0)
        c.restart(2, extra=["--repair-windows-interval", "0"])
        c.wait_state(0, "down", observers=[1, 2], timeout=60)
        wait_for("n2 hears n0's mark on it", lambda: mark_on(c, 2, 0, 2), timeout=60)
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(1, "down", observers=[2], timeout=60)
            r = c.nodes[2].request("POST", "/cluster/remove?node=n0")
            assert r.status == 200, r
            bad, seen = watch(c, 2, want, frm, until, 8)
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        print("    n1 away, 8 s after the removal: %d answers through n2 flagged partial, "
              "%d refused, of %d; %d short and unflagged%s"
              % (seen[0], seen[1], seen[2], len(bad), (": %r" % bad[:4]) if bad else ""))
        assert not bad, "n2 answered short, unflagged: %r" % bad[:10]
        c.wait_state(1, "active", observers=[2], timeout=30)
        t0 = time.monotonic()
        wait_for("n2 read again", lambda: not marks(c, 2) and not marks(c, 1), timeout=60)
        print("    n2 read again %.1f s after n1 ran again" % (time.monotonic() - t0))
        took = watch_until_exact(c, [1, 2], want, frm, until, 2)
        print("    every node exact %.1f s later" % took)
        alone_exact(c, [1, 2], want, frm, until)


def test_voided_mark_kept_across_restart():
    """n2 misses acknowledged old writes through n0, whose mark on n2 is
    gossiped; n0 is killed, n2 restarted with window checks on demand and a
    long settle margin (--join-settle 20s: the check after a voided mark
    comes 20 s later), and n0 removed through n1: n2 waits for its check.
    n2 is killed meanwhile and started again: the wait is kept in
    DATA_DIR/regain.void, so with n1 stopped (seen down) every answer
    through n2 in the seconds after its start is flagged partial or
    refused; it is read again once its check compared its copy, and then
    answers exactly alone. Before, the restart forgot the wait and n2
    answered short and unflagged as soon as it had heard from n1."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    slow = ["--repair-windows-interval", "0", "--join-settle", "20s"]
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = preload(c, 0, "akk", now, 24, 4)
        wait_no_marks(c, [0, 1, 2])
        add(want, ack_missed(c, 0, 2, want, 9600, now - 7100))
        wait_for("n1 hears n0's mark on n2", lambda: mark_on(c, 1, 0, 2), timeout=60)
        c.kill(0)
        c.restart(2, extra=slow)
        c.wait_state(0, "down", observers=[1, 2], timeout=60)
        wait_for("n2 hears n0's mark on it", lambda: mark_on(c, 2, 0, 2), timeout=60)
        r = c.nodes[1].request("POST", "/cluster/remove?node=n0")
        assert r.status == 200, r
        wait_for("n2 waits for its check", lambda: any(
            "left the ring with a mark" in x for x in c.nodes[2].log), timeout=30)
        c.kill(2)
        c.restart(2, extra=slow)
        t0 = time.monotonic()
        with c.paused([1], 2):
            bad, seen = watch(c, 2, want, frm, until, 4)
        print("    n2 started again, n1 away: %d answers through n2 flagged partial, %d "
              "refused, of %d; %d short and unflagged%s (%.1f s after the start)"
              % (seen[0], seen[1], seen[2], len(bad), (": %r" % bad[:4]) if bad else "",
                 time.monotonic() - t0))
        assert not bad, "n2 answered short, unflagged: %r" % bad[:10]
        wait_for("n2 read again", lambda: not marks(c, 2) and not marks(c, 1), timeout=90)
        print("    n2 read again %.1f s after its start" % (time.monotonic() - t0))
        alone_exact(c, [1, 2], want, frm, until)


def test_removed_while_down_not_read_before_check():
    """n2 misses acknowledged old writes through n0, whose mark on n2 is
    gossiped; n2 stays down (killed) while n0 is killed and removed through
    n1. n2 then starts with window checks only on demand: no member lists
    it, and it cannot tell whether n0 held a mark on it, so it is not read
    until a window check of its own after the start compared its copy with
    n1's. Polled from its start, every answer through n2 is exact, flagged
    partial or refused; once read again, n2 answers exactly alone. Before,
    n2 was read as whole once it had heard from n1, and alone answered short
    until the next flamectl cluster repair."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = preload(c, 0, "akd", now, 24, 4)
        wait_no_marks(c, [0, 1, 2])
        add(want, ack_missed(c, 0, 2, want, 9500, now - 7100))
        wait_for("n1 hears n0's mark on n2", lambda: mark_on(c, 1, 0, 2), timeout=60)
        c.kill(0)
        c.wait_state(0, "down", observers=[1], timeout=60)
        r = c.nodes[1].request("POST", "/cluster/remove?node=n0")
        assert r.status == 200, r
        c.wait_state(0, "left", observers=[1], timeout=60)
        c.restart(2, extra=["--repair-windows-interval", "0"], ready=False)
        t0 = time.monotonic()
        took = watch_until_exact(c, [2], want, frm, until, 2)
        wait_for("n2 read again", lambda: not marks(c, 2) and not marks(c, 1), timeout=60)
        print("    n2 exact through itself %.1f s after its start, read again after %.1f s"
              % (took, time.monotonic() - t0))
        alone_exact(c, [1, 2], want, frm, until)


def wipe(data_dir):
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def watch_until_exact(c, nodes, want, frm, until, back, timeout=RECOVER_S):
    """Polls every node until node `back` is active in every view and each
    node answers every total exactly unflagged; asserts no answer was short
    and unflagged meanwhile."""
    t0 = time.monotonic()
    bad, polls, seen = [], 0, [0, 0, 0]
    while time.monotonic() - t0 < timeout:
        wrong, counts = poll(c, nodes, want, frm, until)
        polls += 1
        bad += wrong
        seen = [a + b for a, b in zip(seen, counts)]
        if counts == (0, 0, counts[2]) and not wrong and counts[2] == len(nodes) * len(want) \
                and all(c.states(i).get(c.ids[back]) == "active" for i in nodes):
            break
        time.sleep(0.3)
    took = time.monotonic() - t0
    print("    %d polls over %.1f s: %d answers flagged partial, %d refused, of %d; "
          "%d short and unflagged%s" % (polls, took, seen[0], seen[1], seen[2], len(bad),
                                        (": %r" % bad[:6]) if bad else ""))
    assert not bad, "short unflagged answers: %r" % bad[:10]
    return took


def show_log(c, i):
    for x in c.nodes[i].log:
        if any(w in x for w in ("identity", "join", "view", "regain", "full repair")):
            print("      " + x.split(" ", 1)[1])


def coordinator_lost_after_ack(args, now, prefix, seed, told, note=lambda c: ""):
    """The steps of the *_outlives_its_coordinator tests on a cluster run
    with args: n2 stopped and seen down, one old profile (seed) pushed
    through n0 and n0 killed at once (told: what of n0's word reached n1),
    then n1 stopped: n2 must answer flagged partial; once n1 runs again, n2
    repairs itself and each alone answers exactly (note(c): more to print
    then). Services are named after prefix."""
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=args) as c:
        want = preload(c, 0, prefix, now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        svc = sorted(want)[0]
        body, v = big_body(seed, lines=8)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(2, "down", observers=[0, 1], timeout=60)
            push_ok(c, 0, body, svc, now - 7100)
            c.kill(0)
            heard = mark_on(c, 1, 0, 2)
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        want[svc] += v
        print("    n0 killed right after the push; %s: %s" % (told, heard))
        c.wait_state(0, "down", observers=[1, 2], timeout=60)
        c.wait_state(2, "active", observers=[1], timeout=60)
        time.sleep(0.5)  # a few gossip rounds: n2 hears n1's entry
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(1, "down", observers=[2], timeout=60)
            bad, seen = watch(c, 2, want, frm, until, 5)
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        print("    n0 dead, n1 stopped, 5 s: %d answers through n2 flagged partial, %d refused, "
              "of %d; %d short and unflagged%s"
              % (seen[0], seen[1], seen[2], len(bad), (": %r" % bad[:4]) if bad else ""))
        assert not bad, "n2 answered short, unflagged: %r" % bad[:10]
        c.wait_state(1, "active", observers=[2], timeout=30)
        nodes = [1, 2]
        if any(mark_on(c, i, 0, 2) for i in nodes):
            # n0's word listing n2 reached the others before the kill (the
            # race this test means to lose): they keep n2 unread while n0
            # is down, by design (docs/cluster.md, a node killed with hints
            # or marks queued), so n0 runs again and its word lifts it
            print("    n0's entry listing n2 reached the others before the kill: n0 started again")
            c.restart(0)
            c.wait_state(0, "active", observers=[1, 2], timeout=60)
            nodes = [0, 1, 2]
        t0 = time.monotonic()
        wait_for("n2 read again", lambda: not any(mark_on(c, i, h, 2)
                                                  for i in nodes for h in nodes), timeout=120)
        print("    n2 repaired and read again %.1f s after n1 ran again%s"
              % (time.monotonic() - t0, note(c)))
        watch_until_exact(c, nodes, want, frm, until, 2)
        alone_exact(c, nodes, want, frm, until)


def test_mark_outlives_its_coordinator():
    """n2 is stopped (SIGSTOP) and seen down; one old profile is
    acknowledged through n0 (n0 and n1 store it, n0 marks n2), and n0 is
    killed (-9) at once, before a gossip round carries its mark. n2 runs
    again, then n1 is stopped: n2, the only replica up, must answer flagged
    partial, not short and unflagged, because n1 marked n2 too when it
    acknowledged the write (the write named n2 as missing it). Once n1 runs
    again, n2 repairs itself and each alone answers exactly. Before, nobody
    but the dead n0 knew of the miss: every answer through n2 was short and
    unflagged (window checks on demand here; with the defaults until the
    check a settle margin after n0's loss)."""
    coordinator_lost_after_ack(ARGS + ["--repair-windows-interval", "0"], int(time.time()),
                               "mdc", 9700, "its mark on n2 reached n1")


HINTS_ON = [a for a in ARGS if a not in ("--hints-max-bytes", "0")]
assert len(HINTS_ON) == len(ARGS) - 2


def test_hint_outlives_its_coordinator():
    """As test_mark_outlives_its_coordinator, with hinted handoff on (the
    default): n0 stores a hint for n2 (down), not a mark, and lists n2 in
    its hints_for; killed (-9) right after the push, before a gossip round
    carries that list, its hint waits on the dead node and nobody else knew
    n2 missed the write. n1 acknowledged the write, which named n2 as
    missing it: n1 holds n2 unread until n0's own word (its entry at or past
    the heartbeat the write carried) arrives, and seeing n0 down first, it
    marks n2 for repair itself. So with n1 stopped, n2, the only replica up,
    answers flagged partial, never short and unflagged; once n1 runs again
    n2 repairs itself and each alone answers exactly. Before, every answer
    through n2 for the service that missed the write was short and
    unflagged (until the window check after n0's loss)."""
    coordinator_lost_after_ack(HINTS_ON + ["--repair-windows-interval", "0"],
                               int(time.time()), "hdc", 9800,
                               "its hint for n2 reached n1's view",
                               lambda c: "; n1 marked n2 %d time(s)"
                               % metric(c, 1, "flamedb_hint_witnesses_marked_total"))


def test_hint_witness_lifted_by_its_coordinator():
    """Hinted handoff on, n2 down (SIGSTOP) for a batch of pushes through
    n0, which survives. n1 acknowledges each and holds n2 unread until n0's
    word arrives: n0 lists n2 itself, so that costs nothing, and it must
    not cost the recovery anything either: no mark on n1 (no repair pass of
    n2), n1's hold gone while n2 is still away, and n2 read again once n0
    delivered its hints, exact alone."""
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=HINTS_ON) as c:
        want = preload(c, 0, "hwl", now, 12, 3)
        wait_no_marks(c, [0, 1, 2])
        passes = metric(c, 2, "flamedb_repair_passes_total")
        # the preload's pushes may have named a replica slower than the
        # grace to n1 (a notice): counted from here
        held0 = metric(c, 1, "flamedb_hint_witnesses_total")
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(2, "down", observers=[0, 1], timeout=60)
            for k, svc in enumerate(sorted(want)):
                body, v = big_body(9900 + k, lines=8)
                push_ok(c, 0, body, svc, now - 300 + k)  # preload's times end at now - 589
                want[svc] += v
            held = metric(c, 1, "flamedb_hint_witnesses_total") - held0
            t_hold = time.monotonic()
            wait_for("n1's hold on n2 ends", lambda: not mark_on(c, 1, 1, 2), timeout=30)
            hold = time.monotonic() - t_hold
            assert mark_on(c, 1, 0, 2), "n0 does not list n2 while its hints wait"
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        c.wait_state(2, "active", observers=[0, 1], timeout=60)
        wait_no_marks(c, [0, 1, 2])
        print("    n1 held n2 for %d write(s), ended %.1f s after the last one; n2 read again "
              "%.1f s after it ran again; n1 marked n2 %d time(s); n2 ran %d repair pass(es) "
              "meanwhile" % (held, hold, time.monotonic() - t0,
                             metric(c, 1, "flamedb_hint_witnesses_marked_total"),
                             metric(c, 2, "flamedb_repair_passes_total") - passes))
        assert held == len(want), held
        assert metric(c, 1, "flamedb_hint_witnesses_marked_total") == 0
        watch_until_exact(c, [0, 1, 2], want, frm, until, 2)
        alone_exact(c, [2], want, frm, until)


def test_replica_restarts_empty():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=ARGS) as c:
        want = preload(c, 0, "rse", now, 40, 4)
        wait_no_marks(c, [0, 1, 2])
        c.kill(2)
        wipe(c.nodes[2].data_dir)
        c.restart(2, ready=False)
        took = watch_until_exact(c, [0, 1, 2], want, frm, until, 2)
        print("    every node exact and n2 active %.1f s after n2 restarted empty" % took)
        show_log(c, 2)
        alone_exact(c, [0, 1, 2], want, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
