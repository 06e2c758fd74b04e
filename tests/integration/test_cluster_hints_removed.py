#!/usr/bin/env python3
"""A node that holds hints dies with them, with real processes (issue #10,
docs/cluster.md "A mark that leaves with its holder", docs/operations.md
"Removing a dead node").

Hinted handoff on (the defaults): a push acknowledged while a replica is
slow (stopped with SIGSTOP, not yet seen down) is hinted durably before the
client's 200, and the coordinator lists that replica in its hints_for; every
node then reads nothing from it ("hinted: no reads") until the hints are
delivered or cancelled and gossip says so. Here the coordinator is killed
(-9) with the hints still queued, while the replica is still stopped; the
replica then runs again (SIGCONT) and the coordinator's last hints_for
stands in every view. 3 nodes RF 3 write quorum 2; per service one profile
two hours old (older than the seen span, --seen-retention 60s: only a
window check finds it) and one recent.

- test_hint_holder_removed: the coordinator is removed for good (flamectl
  cluster remove). Its hints, the only copy of those writes for the
  replica, are gone, and its list goes with its entry: the replica must not
  be read until a window check after the removal compared its copy, and
  then must be read again on its own. Polled from the kill on, every answer
  through every running node is exact, flagged partial or refused, never
  short and unflagged; within WAIT_S no view lists anybody and every node
  answers exactly, and each survivor alone answers exactly;
- test_hint_holder_restarted: the coordinator is started again with its
  data dir: its hints (stored before the 200) are delivered and its list
  empties; the same bounded convergence, every node exact alone.
"""
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_ack_missed import HINTS_ON, add, alone_exact, mark_on, marks, poll, wait_no_marks
from test_cluster_join import big_body, metric
from test_cluster_old_windows import preload, push_ok
from test_cluster_repair import ctl

WAIT_S = 120


def miss_then_kill_holder(c, holder, slow, seen_by, svcs, seed, now):
    """Node `slow` stopped (SIGSTOP) while an old and a recent profile per
    service are pushed through `holder`, which hints them, first before
    and then after `holder` and `seen_by` see it down (those never reach
    it: the hints are their only way there); once node
    `seen_by` sees holder's hints_for list `slow`, holder is killed (-9)
    and then `slow` continues (SIGCONT). {service: samples}."""
    out = {svc: 0 for svc in svcs}

    def batch(n):
        for k, svc in enumerate(sorted(svcs)):
            for t in (now - 7100 + 10 * n + k, now - 300 + 10 * n + k):
                body, v = big_body(seed + 4 * k + 2 * n + (t > now - 3600), lines=8)
                push_ok(c, holder, body, svc, t)
                out[svc] += v
    c.nodes[slow].proc.send_signal(signal.SIGSTOP)
    try:
        batch(0)  # slow but not seen down: hinted before the 200, sent as well
        c.wait_state(slow, "down", observers=[holder, seen_by], timeout=60)
        batch(1)  # seen down: hinted only, never sent to it
        wait_for("%s hears %s's hints_for list %s" % (c.ids[seen_by], c.ids[holder], c.ids[slow]),
                 lambda: mark_on(c, seen_by, holder, slow), timeout=60)
        c.kill(holder)
    finally:
        c.nodes[slow].proc.send_signal(signal.SIGCONT)
    return out


def polled_wait(c, nodes, want, frm, until, what, cond, timeout=60):
    """Polls answers through `nodes` until cond() (fails naming `what`
    after timeout): [short unflagged answers], (flagged, refused, asked)."""
    bad, seen = [], [0, 0, 0]
    deadline = time.monotonic() + timeout
    while True:
        wrong, counts = poll(c, nodes, want, frm, until)
        bad += wrong
        seen = [a + b for a, b in zip(seen, counts)]
        try:
            if cond():
                return bad, seen
        except (OSError, ValueError, KeyError, AssertionError):
            pass
        assert time.monotonic() < deadline, "timed out after %d s waiting for %s" % (timeout, what)
        time.sleep(0.1)


def holding(c, nodes, wrong, counts):
    """What keeps `nodes` from having converged, as one string ('' when
    nothing does)."""
    why = []
    for i in nodes:
        try:
            st = c.status(i)
        except (OSError, AssertionError) as e:
            why.append("%s: %s" % (c.ids[i], type(e).__name__))
            continue
        listed = {m["id"]: m.get("hints_for") for m in st["nodes"]
                  if m["state"] != "left" and m.get("hints_for")}
        if listed:
            why.append("%s sees hints_for %r" % (c.ids[i], listed))
        if st.get("regaining", 0):
            why.append("%s regains" % c.ids[i])
    if wrong or counts[0] or counts[1]:
        why.append("answers: %d short, %d flagged, %d refused" % (len(wrong), counts[0], counts[1]))
    return "; ".join(why)


def converge(c, nodes, want, frm, until, t0, timeout=WAIT_S):
    """Polls `nodes` until no view lists anybody, nobody regains, and every
    answer is exact and unflagged, or timeout. ([short unflagged answers],
    (flagged, refused, asked) summed, seconds since t0, done, [(seconds,
    what held it)] as it changed)."""
    bad, seen, held = [], [0, 0, 0], []
    while time.monotonic() - t0 < timeout:
        wrong, counts = poll(c, nodes, want, frm, until)
        bad += wrong
        seen = [a + b for a, b in zip(seen, counts)]
        why = holding(c, nodes, wrong, counts)
        if not held or held[-1][1] != why:
            held.append((time.monotonic() - t0, why))
        if not why:
            return bad, seen, time.monotonic() - t0, True, held
        time.sleep(0.3)
    return bad, seen, time.monotonic() - t0, False, held


def report(c, nodes, bad, seen, took, done, held, what):
    print("    %s: %s after %.1f s; answers flagged %d, refused %d, of %d; %d short and "
          "unflagged%s" % (what, "converged" if done else "NOT converged", took, seen[0], seen[1],
                           seen[2], len(bad), (": %r" % bad[:4]) if bad else ""))
    for t, why in held:
        print("      %5.1f s  %s" % (t, why or "converged"))
    assert not bad, "short, unflagged: %r" % bad[:8]
    assert done, "no convergence within %d s: marks %r" % (WAIT_S, [marks(c, i) for i in nodes])


def setup(c, prefix, now):
    want = preload(c, 0, prefix, now, 12, 3)
    c.wait_hints_settled(timeout=60)
    wait_no_marks(c, [0, 1, 2])
    return want


def test_hint_holder_removed():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=HINTS_ON) as c:
        want = setup(c, "hhr", now)
        add(want, miss_then_kill_holder(c, 0, 2, 1, want, 9700, now))
        t0 = time.monotonic()
        live = [1, 2]
        bad, seen = polled_wait(c, live, want, frm, until, "n0 down and its list on n2",
                                lambda: all(c.states(i)["n0"] == "down" for i in live)
                                and mark_on(c, 2, 0, 2))
        p, took = ctl(c, 1, "cluster", "remove", "--node", c.ids[0], timeout=240)
        assert p.returncode == 0, p.stdout + p.stderr
        print("    flamectl cluster remove took %.2f s" % took)
        bad2, seen2, took, done, held = converge(c, live, want, frm, until, t0)
        seen = [a + b for a, b in zip(seen, seen2)]
        report(c, live, bad + bad2, seen, took, done, held, "n0 removed with its hints for n2")
        voided = any("left the ring with a mark" in x for x in c.nodes[2].log)
        print("    n2 waited for a window check after the removal: %s; profiles it fetched by "
              "id: %d" % (voided, metric(c, 2, "flamedb_repair_window_profiles_fetched_total")))
        alone_exact(c, live, want, frm, until)


def test_hint_holder_restarted():
    now = int(time.time())
    frm, until = now - 8000, now + 60
    with Cluster(3, rf=3, write_quorum=2, args=HINTS_ON) as c:
        want = setup(c, "hhs", now)
        add(want, miss_then_kill_holder(c, 0, 2, 1, want, 9800, now))
        t0 = time.monotonic()
        bad, seen = polled_wait(c, [1, 2], want, frm, until, "n0 down",
                                lambda: all(c.states(i)["n0"] == "down" for i in (1, 2)))
        c.restart(0, ready=False)
        bad2, seen2, took, done, held = converge(c, [0, 1, 2], want, frm, until, t0)
        seen = [a + b for a, b in zip(seen, seen2)]
        report(c, [0, 1, 2], bad + bad2, seen, took, done, held,
               "n0 restarted with its hints for n2")
        alone_exact(c, [0, 1, 2], want, frm, until)


if __name__ == "__main__":
    harness.run_tests(globals())
