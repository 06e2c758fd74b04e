#!/usr/bin/env python3
"""Every replica of a range in a full repair at once recovers by itself
where a copy can be shown whole (docs/cluster.md, "Only a whole copy is a
source", "A mark lifted by its evidence"), with real processes, 3 nodes
RF 3, profiles older than the seen span (--seen-retention 2h) too:

n2 is killed, then n0 and n1 are stopped and started again together, so
neither can account for n2 (no member knows it): both are marked for a full
repair, and each refuses to serve the other (only a whole copy is a
source): every answer is flagged partial. n2 then comes back with its data
gone (only DATA_DIR/identity kept, so the same id and tokens) and a damaged
DATA_DIR/regain.ring, so it is marked too: no replica serves a whole copy.

n0 and n1 were marked only because n2 was unknown, and n2 is back with the
tokens they last saw it with: they gained nothing, and nothing of their
copies was cleared, so their marks are lifted by that evidence. n2's copy
is really empty and nothing shows it whole: it stays marked until it has
streamed everything from n0 and n1. Throughout, every answer through every
node is exact or flagged partial, never short and unflagged; within a
bounded time every node answers every total exactly on its own, without an
operator step. A binary without the lift keeps all three marks for good
(every answer flagged partial); one that lifted n2 as well would answer
short through it.

Every wait is bounded; the seed is printed (cluster.py).
"""
import os
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_regain_full import (ARGS, LAST_BAD, OLD_S, SEEN_ARGS, answers, exact,
                                      preload, resumed, stopped)

# From n2's start until every mark is lifted: n2's start's wait, the lift
# of n0's and n1's marks (a repair pass each), n2's settle margin (300 ms),
# its stream and a converging pass, with room for a loaded 2-core machine.
RECOVER_S = 40


def logged(node, text):
    return any(text in x for x in node.log)


def wipe_but_identity(data_dir):
    """Everything of the node's data dir gone but its identity (id and
    tokens), and a regain.ring that does not parse."""
    for name in os.listdir(data_dir):
        if name != "identity":
            path = os.path.join(data_dir, name)
            if os.path.isdir(path):
                for root, dirs, files in os.walk(path, topdown=False):
                    for f in files:
                        os.unlink(os.path.join(root, f))
                    for d in dirs:
                        os.rmdir(os.path.join(root, d))
                os.rmdir(path)
            else:
                os.unlink(path)
    with open(os.path.join(data_dir, "regain.ring"), "w") as f:
        f.write("flamedb-regain-ring 2\nn2 zz\nend 1\n")


def poll(c, nodes, want, frm, until):
    """Every total through each of `nodes`: ([(node, service, got, want)]
    answered wrong and not flagged partial, how many were flagged, how many
    were asked)."""
    bad, flagged, asked = [], 0, 0
    for i in nodes:
        for svc, got, w, part in answers(c, i, want, frm, until):
            if not part and got != w:
                bad.append((c.ids[i], svc, got, w))
            flagged += part
            asked += 1
    return bad, flagged, asked


def marks(c):
    return [c.status(i).get("full_repair") for i in range(3)]


def test_all_marked_lift_by_evidence():
    args = ARGS + SEEN_ARGS
    now = int(time.time())
    with Cluster(3, rf=3, args=args) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        want = preload(c, 0, "lift", now, 60, nservices=6)
        want.update(preload(c, 0, "liftold", now - OLD_S, 36, nservices=6))
        frm, until = now - OLD_S - 3600, now + 60
        c.kill(2)
        c.wait_state(2, "down", observers=[0, 1])
        for i in (0, 1):  # both down at once: neither learns n2 from the other
            c.stop(i)
        for i in (0, 1):
            c.restart(i)
        wait_for("n0 and n1 marked, n2 unknown to both", lambda: all(
            logged(c.nodes[i], "no member knows it now") and
            c.status(i).get("full_repair") == 1 for i in (0, 1)), timeout=30)
        flagged = [p for i in (0, 1) for _, _, _, p in answers(c, i, want, frm, until)]
        assert all(flagged), "an answer not flagged while every live replica is marked"
        print("    n0 and n1 marked (n2 unknown), n2 down: %d of %d answers flagged partial"
              % (sum(flagged), len(flagged)))

        wipe_but_identity(c.nodes[2].data_dir)
        c.restart(2)
        t0 = time.monotonic()
        bad, seen_marks, lifted = [], [], None
        for _ in range(10000):  # bounded by RECOVER_S
            wrong, flagged, asked = poll(c, (0, 1, 2), want, frm, until)
            bad += wrong
            m = marks(c)
            if m not in seen_marks:
                seen_marks.append(m)
            if m == [0, 0, 0]:
                lifted = time.monotonic() - t0
                break
            if time.monotonic() - t0 > RECOVER_S:
                break
            time.sleep(0.2)
        print("    marks (n0, n1, n2) seen after n2's start: %r; last poll: %d of %d "
              "answers flagged partial" % (seen_marks, flagged, asked))
        assert not bad, "short and unflagged: %r" % bad[:5]
        assert lifted is not None, \
            "marks still %r %d s after n2's start: nobody recovers by itself" % (
                seen_marks[-1], RECOVER_S)
        print("    every mark lifted %.1f s after n2's start, every answer exact or "
              "flagged meanwhile" % lifted)
        for i in (0, 1):
            assert logged(c.nodes[i], "the full repair is lifted"), \
                "n%d's mark was not lifted by its evidence" % i
        assert not logged(c.nodes[2], "the full repair is lifted"), \
            "n2's mark (nothing shows its copy whole) was lifted by evidence"
        assert logged(c.nodes[2], "before receiving them whole") and \
            logged(c.nodes[2], "the full repair converged"), \
            "n2 did not stream its copy from the others"
        print("    n0 and n1 lifted by the evidence (n2 back with its tokens); n2 streamed "
              "its empty copy whole and converged")

        for i in range(3):
            others = [k for k in range(3) if k != i]
            stopped(c, others, i)
            try:
                try:
                    wait_for("n%d alone exact" % i,
                             lambda: exact(c, i, want, frm, until), timeout=20)
                except AssertionError:
                    print("    (service, got, want, partial) %r" % LAST_BAD)
                    raise
            finally:
                resumed(c, others, [i])
        print("    each node alone answers every total exactly (%d services, the old "
              "profiles included)" % len(want))


if __name__ == "__main__":
    harness.run_tests(globals())
