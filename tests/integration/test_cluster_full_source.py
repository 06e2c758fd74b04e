#!/usr/bin/env python3
"""Only a whole copy is a source (docs/cluster.md, "Only a whole copy is a
source"), with real processes, 3 nodes RF 3, the setup of
test_cluster_regain_full.py (--join-settle 8s, --seen-retention 2h, profiles
older than the seen span):

Replicas of a range in a full repair at once (test_no_short_copy_as_source,
3 nodes): n0 and n1 are restarted together while n2 is down, so both are
marked, each with the other as the only reachable replica; neither may clear
its copy and stream the other's (short, or cleared too) as a whole one: a
marked node refuses to serve, an interval is cleared only once a replica
serves it, so both wait for n2 and stream from it, and each node alone then
answers exactly. A binary that clears and streams from any reachable
replica leaves n0 and n1 with each other's empty copy, "converged":
answers short and unflagged. Every replica marked at once (n2 marked as
well) is test_cluster_full_lift.py: marks lifted by their evidence, or,
with none, kept until the operator step.

Every wait is bounded; the seed is printed (cluster.py).
"""
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_regain_full import (ARGS, LAST_BAD, OLD_S, SEEN_ARGS, exact,
                                      never_silently_short, preload, stopped, resumed)


def logged(node, text):
    return any(text in x for x in node.log)


def cleared_or_waiting(node):
    """Whether node's full repair cleared its intervals, or found no replica
    to serve them as a whole copy and waits without clearing."""
    return logged(node, "before receiving them whole") or logged(
        node, "no other replica that serves them as a whole copy")


def test_no_short_copy_as_source():
    """3 nodes RF 3: n2 is killed, then n0 and n1 are stopped and started
    again together, so neither can account for n2 (no member knows it): both
    begin a full repair at once and hand every interval, each with the
    other as the only reachable replica. n1 is stopped while n0's settle
    margin runs out, then n0 while n1's does, and both run again: each
    comes to its clear with its only source marked itself (or stopped).
    n2, whole all along, is started last. Neither may take the other's
    copy, cleared or short, as a whole one: an interval is cleared only once
    a replica serves it, a marked node refuses to serve, so n0 and n1 wait
    for n2 and stream from it (or, having cleared nothing, are lifted once
    n2 is back with its tokens: test_cluster_full_lift.py); each of the
    three nodes alone then answers exactly, the profiles older than the
    seen span included. A binary that clears first and streams from any
    reachable replica leaves n0 and n1 with each other's empty copy of the
    old windows, checked against each other and "converged": short
    answers, unflagged."""
    short_copies()


def short_copies():
    args = ARGS + SEEN_ARGS
    now = int(time.time())
    with Cluster(3, rf=3, args=args) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        want = preload(c, 0, "src", now, 120, nservices=12)
        want.update(preload(c, 0, "srcold", now - OLD_S, 72, nservices=12))
        frm, until = now - OLD_S - 3600, now + 60
        c.kill(2)
        c.wait_state(2, "down", observers=[0, 1])
        for i in (0, 1):  # both down at once: neither learns n2 from the other
            c.stop(i)
        for i in (0, 1):
            c.restart(i)
        wait_for("n0 and n1 to hand every interval to their full repair", lambda: all(
            logged(c.nodes[i], "to clear and stream whole") for i in (0, 1)), timeout=30)
        assert all(c.status(i).get("full_repair") == 1 for i in (0, 1))
        print("    n0 and n1 both in a full repair (n2 unknown to both)")
        try:
            c.nodes[1].proc.send_signal(signal.SIGSTOP)
            wait_for("n0 at its clear", lambda: cleared_or_waiting(c.nodes[0]), timeout=60)
            c.nodes[0].proc.send_signal(signal.SIGSTOP)
            c.nodes[1].proc.send_signal(signal.SIGCONT)
            wait_for("n1 at its clear", lambda: cleared_or_waiting(c.nodes[1]), timeout=60)
        finally:
            for i in (0, 1):
                c.nodes[i].proc.send_signal(signal.SIGCONT)
        for i in (0, 1):
            print("    n%d at its clear: %s" % (i, "cleared" if logged(
                c.nodes[i], "before receiving them whole") else "no source, waits"))
        c.restart(2)
        c.wait_state(2, "active", observers=[0, 1], timeout=30)
        nodes = (0, 1)
        try:
            wait_for("the marked nodes to converge", lambda: all(
                c.status(i).get("full_repair") == 0 for i in nodes), timeout=90)
            converged = True
        except AssertionError:
            converged = False
        print("    %s converged: %s" % (", ".join("n%d" % i for i in nodes), converged))
        for i in nodes:
            print("    n%d: %s" % (i, "lifted by its evidence (n2 back with its tokens)" if logged(
                c.nodes[i], "the full repair is lifted") else "streamed from n2"))
        # a node another holds hints for is not read from until they are
        # delivered: with their holders stopped it could only answer partial
        # (n1, stopped above while n0 ran, can be hinted by n0's repair)
        if converged:
            c.wait_hints_settled(timeout=60)
        for i in range(3):
            others = [k for k in range(3) if k != i]
            stopped(c, others, i)
            try:
                # never short and unflagged, converged or not
                part = never_silently_short(c, i, want, frm, until, "n%d alone" % i)
                if converged:
                    try:
                        wait_for("n%d alone exact" % i,
                                 lambda: exact(c, i, want, frm, until), timeout=20)
                    except AssertionError:
                        print("    (service, got, want, partial) %r" % LAST_BAD)
                        raise
                print("    n%d alone: %d of %d answers flagged partial, the rest exact" % (
                    i, part, len(want)))
            finally:
                resumed(c, others, [i])
        assert converged, "n0 and n1 did not converge once n2 was back"
        print("    each node alone answers exactly, the old profiles included")


if __name__ == "__main__":
    harness.run_tests(globals())
