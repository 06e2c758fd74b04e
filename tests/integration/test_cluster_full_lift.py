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
operator step. n0 is restarted while it is marked and before n2 is back:
its mark and the evidence that lifts it are kept in DATA_DIR/regain.full. A binary without the lift keeps all three marks for good
(every answer flagged partial); one that lifted n2 as well would answer
short through it.

Every wait is bounded; the seed is printed (cluster.py).
"""
import datetime
import os
import signal
import time

import harness
from cluster import Cluster, wait_for
from test_cluster_regain_full import ARGS, OLD_S, SEEN_ARGS, alone_exact, answers, preload
from test_cluster_repair import ctl

# From n2's start until every mark is lifted: n2's start's wait, the lift
# of n0's and n1's marks (a repair pass each), n2's settle margin (300 ms),
# its stream and a converging pass, with room for a loaded 2-core machine.
RECOVER_S = 40


def logged(node, text):
    return any(text in x for x in node.log)


def logged_at(node, text, after=""):
    """The wall time (s) of the first line of node's log holding text (at
    or after the first one holding `after`), from its timestamp."""
    started = not after
    for x in node.log:
        started = started or after in x
        if started and text in x:
            return datetime.datetime.strptime(x.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ") \
                .timestamp()
    return None


def lists_itself(c, i):
    """Whether node i lists itself in its own hints_for (not read from)."""
    return any(m["id"] == c.ids[i] and c.ids[i] in m.get("hints_for", [])
               for m in c.status(i)["nodes"])


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
        f.write(BAD_RING)


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
        c.stop(0)  # the mark and its evidence outlive a restart (DATA_DIR/regain.full)
        c.restart(0)
        wait_for("n0 marked again after its restart", lambda: logged(
            c.nodes[0], "resuming the full repair") and c.status(0).get("full_repair") == 1,
            timeout=30)

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
        n2_start = logged_at(c.nodes[2], "")
        for i in (0, 1):
            assert logged(c.nodes[i], "the full repair is lifted"), \
                "n%d's mark was not lifted by its evidence" % i
            print("    n%d lifted by its evidence %.2f s after n2's first log line" % (
                i, logged_at(c.nodes[i], "the full repair is lifted") - n2_start))
        assert not logged(c.nodes[2], "the full repair is lifted"), \
            "n2's mark (nothing shows its copy whole) was lifted by evidence"
        assert logged(c.nodes[2], "before receiving them whole") and \
            logged(c.nodes[2], "the full repair converged"), \
            "n2 did not stream its copy from the others"
        print("    n0 and n1 lifted by the evidence (n2 back with its tokens); n2 streamed "
              "its empty copy whole and converged")

        for i in range(3):
            alone_exact(c, i, want, frm, until)
        print("    each node alone answers every total exactly (%d services, the old "
              "profiles included)" % len(want))


BAD_RING = "flamedb-regain-ring 2\nn9 zz\nend 1\n"


def test_no_evidence_stays_flagged_until_the_operator_step():
    """As above, but n0 and n1 also come back with a damaged
    DATA_DIR/regain.ring (they start marked, with no ring to compare
    with) and n2 keeps its data: every replica is marked and no mark has
    evidence, so none is lifted and every answer stays flagged partial,
    never short; flamectl cluster repair reports every pass incomplete.
    flamectl cluster status shows every node in a full repair. The
    operator step of docs/operations.md, flamectl cluster accept-copy on
    the node whose copy is known whole (n0, which cleared nothing), lifts
    its mark at once, with no restart: asking another node or asking again
    is refused, the lift holds across a restart of n0, n1 and n2 stream
    from it and converge, and each node alone answers exactly."""
    args = ARGS + SEEN_ARGS
    now = int(time.time())
    with Cluster(3, rf=3, args=args) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        want = preload(c, 0, "noev", now, 60, nservices=6)
        want.update(preload(c, 0, "noevold", now - OLD_S, 36, nservices=6))
        frm, until = now - OLD_S - 3600, now + 60
        c.kill(2)
        c.wait_state(2, "down", observers=[0, 1])
        for i in (0, 1):
            c.stop(i)
        for i in range(3):
            with open(os.path.join(c.nodes[i].data_dir, "regain.ring"), "w") as f:
                f.write(BAD_RING)
        for i in (0, 1):
            c.restart(i)
        c.restart(2)
        wait_for("every node marked", lambda: marks(c) == [1, 1, 1], timeout=30)
        t0 = time.monotonic()
        bad = []
        while time.monotonic() - t0 < 8:  # passes run every second meanwhile
            wrong, flagged, asked = poll(c, (0, 1, 2), want, frm, until)
            bad += wrong
            time.sleep(0.2)
        m = marks(c)
        print("    no evidence: marks %r after 8 s, last poll %d of %d answers flagged partial"
              % (m, flagged, asked))
        assert not bad, "short and unflagged: %r" % bad[:5]
        assert m == [1, 1, 1], "a mark without evidence was lifted"
        assert flagged == asked
        p, _ = ctl(c, 0, "cluster", "status")
        rows = [ln.split() for ln in p.stdout.splitlines()[2:]]
        assert p.returncode == 0 and [r[-2] for r in rows] == ["yes"] * 3, p.stdout
        p, _ = ctl(c, 0, "cluster", "repair")
        assert p.returncode != 0, "cluster repair converged with every replica marked"

        # the operator step, on the node whose copy is known whole
        p, _ = ctl(c, 1, "cluster", "accept-copy", "--node", "nope")
        assert p.returncode != 0 and "not a member" in p.stderr, p.stderr
        r = c.nodes[1].request("POST", "/cluster/accept-copy?node=%s" % c.ids[0])
        assert r.status == 400 and ":%d" % c.nodes[0].port in r.body.decode(), r
        t1 = time.monotonic()
        p, took = ctl(c, 1, "cluster", "accept-copy", "--node", c.ids[0])
        assert p.returncode == 0, p.stderr
        assert marks(c)[0] == 0, "n0's mark stands after accept-copy answered"
        print("    accept-copy on n0 answered and lifted its mark in %.2f s" % took)
        d = c.nodes[0].data_dir
        for name in ("regain.full", "regain"):
            assert not os.path.exists(os.path.join(d, name)), name
        # the node logged it before it answered; the harness reads its log
        # on a thread of its own, which may not have caught up yet
        wait_for("n0's log of the operator's word",
                 lambda: logged(c.nodes[0], "the operator said its copy is whole"), timeout=10)
        m = c.nodes[0].request("GET", "/metrics").body.decode()
        assert "flamedb_cluster_copies_accepted_total 1" in m
        p, _ = ctl(c, 0, "cluster", "accept-copy", "--node", c.ids[0])
        assert p.returncode != 0 and "not in a full repair" in p.stderr, p.stderr
        c.stop(0)  # durable: a restart keeps the mark lifted
        c.restart(0)
        assert marks(c)[0] == 0, "n0 was marked again by its restart"
        t0 = time.monotonic()
        for _ in range(10000):  # bounded by RECOVER_S
            bad += poll(c, (0, 1, 2), want, frm, until)[0]
            if marks(c) == [0, 0, 0] or time.monotonic() - t0 > RECOVER_S:
                break
            time.sleep(0.2)
        assert not bad, "short and unflagged: %r" % bad[:5]
        assert marks(c) == [0, 0, 0], "n1 and n2 did not converge from n0"
        print("    after accept-copy on n0, every mark lifted %.1f s after it (%.1f s after "
              "n0's restart)" % (time.monotonic() - t1, time.monotonic() - t0))
        for i in range(3):
            alone_exact(c, i, want, frm, until)
        print("    each node alone answers every total exactly")


def test_accept_copy_refused_once_an_interval_was_cleared():
    """n0 alone is marked (a damaged DATA_DIR/regain.ring) while n1 and n2
    are whole, so its repair clears its intervals and streams them from
    them. Once a clear is recorded (DATA_DIR/regain.progress), n1 and n2
    are paused so the stream cannot finish: flamectl cluster accept-copy on
    n0 is refused (409, the reason named, counted) and the mark stays, for
    n0's copy is no longer whole. Resumed, n0 streams and converges by
    itself."""
    args = ARGS + SEEN_ARGS
    now = int(time.time())
    with Cluster(3, rf=3, args=args) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        preload(c, 0, "refuse", now - 1000, 300, nservices=24)
        c.stop(0)
        with open(os.path.join(c.nodes[0].data_dir, "regain.ring"), "w") as f:
            f.write(BAD_RING)
        c.restart(0, extra=["--join-settle", "3s"])
        progress = os.path.join(c.nodes[0].data_dir, "regain.progress")
        wait_for("n0's full repair to clear and record an interval",
                 lambda: os.path.exists(progress), timeout=60, interval=0.01)
        for k in (1, 2):
            c.nodes[k].proc.send_signal(signal.SIGSTOP)
        try:
            assert os.path.exists(progress), \
                "n0 finished its stream before n1 and n2 were paused:\n" + c.nodes[0].log_text()
            p, took = ctl(c, 0, "cluster", "accept-copy", "--node", c.ids[0])
            assert p.returncode == 1 and "409" in p.stderr and \
                "cleared an interval already" in p.stderr, p.stderr
            assert c.status(0).get("full_repair") == 1, "the mark went though a clear was made"
            assert c.nodes[0].metric("flamedb_cluster_copies_refused_total") == 1
            assert c.nodes[0].metric("flamedb_cluster_copies_accepted_total") == 0
            assert os.path.exists(os.path.join(c.nodes[0].data_dir, "regain.full"))
            print("    accept-copy refused after %.2f s: %s" % (took, p.stderr.strip()))
        finally:
            for k in (1, 2):
                c.nodes[k].proc.send_signal(signal.SIGCONT)
        wait_for("n0's full repair to converge by itself",
                 lambda: c.status(0).get("full_repair") == 0, timeout=90)


def test_accept_copy_refused_for_removal_gains_after_restart():
    """4 nodes RF 3. n2 alone is marked (a damaged DATA_DIR/regain.ring),
    with a settle margin of two minutes, so its repair clears nothing while
    the test runs. n3 is then killed and removed: n2 gains ranges of n3's
    that its copy never held. flamectl cluster accept-copy on n2 is refused
    (409, the removal named), and still is after n2 is stopped and started
    again (the gains kept in DATA_DIR/regain.full), though nothing was
    cleared. With the margin back to 300 ms n2 streams and converges by
    itself and then, once it lists itself no more, answers every total
    exactly on its own. A binary that kept the gains in memory only lifts
    the mark on that word after the restart (exit 0), and n2 then serves
    n3's ranges from its empty copy. A replica n3 marked (on a loaded
    machine, one slower than --hint-ack-grace, with notices) has that mark
    go with n3 (voided): the replica lists itself until its window check, and
    one that served streams meanwhile had n2 copy its short copy (two
    services at 0, unflagged, on n2 alone)."""
    args = ARGS + SEEN_ARGS
    now = int(time.time())
    with Cluster(4, rf=3, args=args) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        want = preload(c, 0, "gain", now, 120, nservices=12)
        want.update(preload(c, 0, "gainold", now - OLD_S, 48, nservices=6))
        frm, until = now - OLD_S - 3600, now + 60
        c.stop(2)
        with open(os.path.join(c.nodes[2].data_dir, "regain.ring"), "w") as f:
            f.write(BAD_RING)
        c.restart(2, extra=["--join-settle", "120s"])
        wait_for("n2 marked", lambda: c.status(2).get("full_repair") == 1, timeout=30)
        c.kill_then_remove([3], 3)
        wait_for("n2 to gain n3's ranges", lambda: logged(
            c.nodes[2], "by the removal: not read from until"), timeout=30)
        p, _ = ctl(c, 2, "cluster", "accept-copy", "--node", c.ids[2])
        assert p.returncode == 1 and "409" in p.stderr and "removal" in p.stderr, p.stderr
        print("    n2 marked, gained n3's ranges: accept-copy refused: %s" % p.stderr.strip())
        c.stop(2)
        full = os.path.join(c.nodes[2].data_dir, "regain.full")
        with open(full) as f:
            kept = [ln for ln in f if ln.startswith("gained ")]
        print("    n2 stopped; regain.full lists %d gained interval(s)" % len(kept))
        c.restart(2, extra=["--join-settle", "120s"])
        wait_for("n2 marked again after its restart", lambda: logged(
            c.nodes[2], "resuming the full repair") and c.status(2).get("full_repair") == 1,
            timeout=30)
        p, took = ctl(c, 2, "cluster", "accept-copy", "--node", c.ids[2])
        assert c.nodes[2].metric("flamedb_repair_ranges_cleared_total") == 0
        assert p.returncode == 1 and "409" in p.stderr and "removal" in p.stderr, \
            "accept-copy after n2's restart: exit %d, %s (mark %r)" % (
                p.returncode, p.stderr.strip() or p.stdout.strip(),
                c.status(2).get("full_repair"))
        assert c.status(2).get("full_repair") == 1 and os.path.exists(full)
        print("    after n2's restart (nothing cleared): accept-copy refused in %.2f s" % took)

        c.restart(2, extra=[])  # the short margin: it streams and converges by itself
        t0 = time.monotonic()
        wait_for("n2's full repair to converge", lambda: c.status(2).get("full_repair") == 0,
                 timeout=RECOVER_S + 50)
        print("    n2 converged %.1f s after its last restart" % (time.monotonic() - t0))
        # a replica n3 marked (a slow one, with notices) has that mark go with
        # n3 (voided): that replica lists itself until its window check
        # compared its copy, and is no stream source meanwhile
        wait_for("n2 to list itself no more (a voided mark's window check)",
                 lambda: not lists_itself(c, 2), timeout=RECOVER_S)
        print("    n2 read again %.1f s after its last restart" % (time.monotonic() - t0))
        alone_exact(c, 2, want, frm, until)
        print("    n2 alone answers every total exactly (%d services, old ones included)"
              % len(want))


if __name__ == "__main__":
    harness.run_tests(globals())
