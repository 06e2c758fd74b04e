#!/usr/bin/env python3
"""Ranges a node gains again or anew, with real processes (issue #10):

- a node removed for good (`flamectl cluster remove` after kill -9) under
  continuous ingest, 4 nodes RF 3: every remaining node gains part of its
  ranges and streams them whole from a surviving replica, old data included
  (the short --seen-retention of test_cluster_stream.py keeps the seen
  comparison from moving anything, so only the stream can); flamectl waits
  for it; then every node answers exactly on its own (any RF - 1 = 2 others
  stopped);
- a node that gains ranges by a removal is killed (-9) while it streams
  them and restarted: it goes on after its cursors (DATA_DIR/regain,
  regain.progress) into ranges still being received, no stream check
  keeps disagreeing (no piece mended by a clear), exact;
- a node joins (taking ranges from old owners, which keep their copies) and
  is decommissioned again, so those ranges return to their old owners: each
  clears its old copy before streaming them in, so nothing counts twice, the
  decommission completes (the totals check does not hold it), and every
  remaining node answers exactly, also with any one other node stopped.

Every wait is bounded; the seed is printed (cluster.py).
"""
import signal
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from test_cluster_join import metric
from test_cluster_repair import ctl
from test_cluster_stream import ARGS, check_exact, finish_pusher, preload, start_pusher


def alone_exact(c, nodes, d, frm, until, live):
    """With all but one of nodes stopped (SIGSTOP), that one answers
    exactly, for each of them in turn: each round starts once no member
    lists a node in its hints_for (a holder stopped with the node in its
    list keeps it unread, by design; on a loaded machine a regain's or a
    window check's self-listing can outlast the waits before)."""
    for i in nodes:
        others = [k for k in nodes if k != i]
        c.wait_unlisted(nodes)  # a holder stopped with node i in its list keeps i unread
        for k in others:
            c.nodes[k].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(others[0], "down", observers=[i])
            c.wait_state(others[-1], "down", observers=[i])
            try:
                wait_for("exact through %s alone" % c.ids[i],
                         lambda: check_exact(c, i, d, frm, until, live) or True, timeout=20)
            except AssertionError as e:
                lists = {m["id"]: (m["state"], m.get("hints_for")) for m in c.status(i)["nodes"]}
                raise AssertionError("%s; members' hints_for as %s sees them: %r, regaining %r"
                                     % (e, c.ids[i], lists, c.status(i)["regaining"])) from e
        finally:
            for k in others:
                c.nodes[k].proc.send_signal(signal.SIGCONT)
        for k in others:
            c.wait_state(k, "active", observers=nodes, timeout=30)
        print("    %s alone (the others stopped) answers exactly" % c.ids[i])


def test_remove_streams_old_data():
    now = int(time.time())
    with Cluster(4, rf=3, args=ARGS) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        d = preload(c, "rm", now, 240)
        frm, until = now - 8000, now + 60
        live = harness.unique("rmlive")
        p, th = start_pusher(c, live, now - 600, [0, 1, 2])
        c.kill(3)
        c.wait_state(3, "down", observers=[0, 1, 2])
        proc, took = ctl(c, 0, "cluster", "remove", "--node", "n3")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = finish_pusher(p, th, [0, 1, 2], until)
        assert "every node streamed in the ranges it gained" in proc.stdout, proc.stdout
        windows = sum(metric(c, i, "flamedb_repair_windows_streamed_total") for i in (0, 1, 2))
        print("    remove took %.2f s; the three streamed %d windows" % (took, windows))
        # the last acknowledged pushes (W 2 of RF 3) may still be on their
        # way to the third replica: bounded wait until each node is exact
        for i in (0, 1, 2):
            wait_for("%s exact" % c.ids[i],
                     lambda i=i: check_exact(c, i, d, frm, until, (live, got)) is None,
                     timeout=10)
        alone_exact(c, [0, 1, 2], d, frm, until, (live, got))
        for i in (0, 1, 2):
            assert c.status(i)["regaining"] == 0, c.status(i)
            assert metric(c, i, "flamedb_repair_regains_total") >= 1, c.ids[i]
        assert windows > 0


def test_remove_resumes_after_kill():
    """A node that gains ranges by a removal is killed (-9) while it streams
    them (throttled) and restarted: DATA_DIR/regain makes it stream them
    again, and every node then answers exactly on its own."""
    now = int(time.time())
    # nothing is written while the cluster forms or n3's removal settles:
    # the short settle margin (FAST_FORMATION) changes nothing checked
    with Cluster(4, rf=3, args=ARGS + FAST_FORMATION + ["--stream-max-mb-per-s", "1"]) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        d = preload(c, "rk", now, 1200, nservices=12)
        frm, until = now - 8000, now + 60
        c.kill(3)
        c.wait_state(3, "down", observers=[0, 1, 2])
        r = c.nodes[0].request("POST", "/cluster/remove?node=n3")
        assert r.status == 200, r

        def streaming():  # a node that stored windows of its gained ranges and is not done
            for i in (0, 1, 2):
                if metric(c, i, "flamedb_repair_windows_streamed_total") > 0 and \
                        c.status(i)["regaining"] > 0:
                    return i + 1
            return 0

        k = wait_for("a node streaming the ranges it gained", streaming, timeout=30,
                     interval=0.02) - 1
        before = metric(c, k, "flamedb_repair_windows_streamed_total")
        c.kill(k)
        c.restart(k)
        left = c.status(k)["regaining"]
        assert left > 0, c.status(k)
        assert any("resuming:" in line for line in c.nodes[k].log), c.nodes[k].log_text()
        # its store still has the cleared ranges as being received (else
        # retention drops what the stream recorded and the stream ends short)
        assert any("still being received" in line for line in c.nodes[k].log), \
            c.nodes[k].log_text()
        print("    %s killed while it streamed (%d windows stored); restarted with %d "
              "interval(s) to stream" % (c.ids[k], before, left))
        wait_for("every node caught up",
                 lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1, 2)), timeout=120)
        # it went on after its cursors: nothing cleared again (that would
        # drop what it streamed and stream it all once more)
        cleared = metric(c, k, "flamedb_repair_ranges_cleared_total")
        after = metric(c, k, "flamedb_repair_windows_streamed_total")
        # the resumed stream ends equal to the source (its ranges were still
        # being received: retention kept what the stream recorded), so no
        # check kept disagreeing and no piece was mended by a clear
        differed = [line for line in c.nodes[k].log if "stream check of" in line]
        heals = metric(c, k, "flamedb_repair_stream_heals_total")
        print("    after the restart: %d interval(s) cleared again, %d windows streamed, "
              "%d stream check(s) that differed, %d piece(s) mended" %
              (cleared, after, len(differed), heals))
        assert heals == 0, differed[:3]
        assert cleared == 0, "%s cleared %d interval(s) again after its restart" % (c.ids[k],
                                                                                   cleared)
        assert any("resuming the regain:" in line for line in c.nodes[k].log), \
            c.nodes[k].log_text()
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until)
        alone_exact(c, [0, 1, 2], d, frm, until, None)


def test_regain_after_join_and_decommission():
    now = int(time.time())
    with Cluster(3, rf=2, args=ARGS) as c:
        for i in (0, 1, 2):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        d = preload(c, "rg", now, 240)
        frm, until = now - 8000, now + 60
        live = harness.unique("rglive")
        p, th = start_pusher(c, live, now - 600, [0, 1, 2])
        n = c.add_node()
        c.wait_state(n, "active", observers=[0, 1, 2, n], timeout=60)
        check_exact(c, n, d, frm, until)
        t1 = time.monotonic()
        r = c.nodes[n].request("POST", "/cluster/decommission?node=%s" % c.ids[n])
        assert r.status == 200, r
        rc = c.nodes[n].proc.wait(timeout=60)  # held by the totals check without the clear
        assert rc == 0, "%s exited %s" % (c.ids[n], rc)
        print("    %s joined, then left %.2f s after its decommission" %
              (c.ids[n], time.monotonic() - t1))
        got = finish_pusher(p, th, [0, 1, 2], until)
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until, (live, got))
        cleared = sum(metric(c, i, "flamedb_repair_ranges_cleared_total") for i in (0, 1, 2))
        assert cleared > 0, "no old owner cleared a range it regained"
        for i in (0, 1, 2):  # RF 2: any one node lost, the other two hold everything
            others = [k for k in (0, 1, 2) if k != i]
            c.nodes[i].proc.send_signal(signal.SIGSTOP)
            try:
                c.wait_state(i, "down", observers=others)
                for k in others:
                    check_exact(c, k, d, frm, until, (live, got))
            finally:
                c.nodes[i].proc.send_signal(signal.SIGCONT)
            c.wait_state(i, "active", observers=others, timeout=30)
            print("    %s stopped: the other two answer exactly" % c.ids[i])


def regain_events(node):
    """A node's regain log lines in order: ("gained", n), ("cleared", n), ("done", n)."""
    out = []
    for line in node.log:
        if "token interval(s) by the removal" in line and "gained " in line:
            out.append(("gained", int(line.split("gained ", 1)[1].split(" ", 1)[0])))
        elif "token interval(s) before receiving them whole" in line:
            out.append(("cleared", int(line.split("cleared ", 1)[1].split(" ", 1)[0])))
        elif "gained by a removal are streamed in" in line:
            out.append(("done", int(line.split("the ", 1)[1].split(" ", 1)[0])))
    return out


def caught_mid_regain(ev):
    """Whether the events show a second removal after the first one's clear
    and before that regain was done."""
    kinds = [k for k, _ in ev]
    if kinds.count("gained") != 2:
        return False
    between = kinds[kinds.index("gained") + 1:len(kinds) - kinds[::-1].index("gained") - 1]
    return "cleared" in between and "done" not in between


# the passes of a regain that can start between the second node's kill and
# its being marked down each wait out one timeout for it
MAX_DEAD_SOURCE_WAITS = 2


def test_second_removal_continues():
    """A second removal while nodes stream what they gained by a first one
    (throttled): the regain goes on with the first intervals where they
    stand and adds the new ones, each cleared once; every node then answers
    exactly on its own."""
    now = int(time.time())
    # the pass that streams the first gains asks the second node killed for
    # each interval it planned from it and waits out a query timeout each time:
    # 2 s instead of ARGS' 4 s halves that wait (it changes nothing checked)
    args = [("2s" if a == "4s" and ARGS[k - 1] == "--query-timeout" else a)
            for k, a in enumerate(ARGS)]
    assert args != ARGS
    # nothing is written while the cluster forms or either removal settles:
    # the short settle margin (FAST_FORMATION) changes nothing checked; the
    # second removal still lands mid-regain (the first streams at 1 MB/s)
    with Cluster(5, rf=3, args=args + FAST_FORMATION + ["--stream-max-mb-per-s", "1"]) as c:
        for i in range(5):
            c.wait_state(i, "active", observers=[0, 1, 2, 3, 4], timeout=30)
        d = preload(c, "r2", now, 1200, nservices=12)
        frm, until = now - 8000, now + 60
        # hints stored before the answer settle first: a kill before gossip
        # told of their cancels leaves a stale hints_for (no stream source)
        c.wait_hints_settled()
        # the joins that formed the cluster cleared what the joiners gained
        cleared0 = [metric(c, i, "flamedb_repair_ranges_cleared_total") for i in range(5)]
        c.kill(4)
        c.wait_state(4, "down", observers=[0, 1, 2, 3])
        r = c.nodes[0].request("POST", "/cluster/remove?node=n4")
        assert r.status == 200, r

        def streaming():  # a node of 0..3 that stored windows of its gains and is not done
            for i in range(4):
                if metric(c, i, "flamedb_repair_windows_streamed_total") > 0 and \
                        c.status(i)["regaining"] > 0:
                    return i + 1
            return 0

        # the preload's services sit on a few tokens: n4's removal may give
        # the ranges that hold data to one node alone, which must not be the
        # one removed next
        streamer = wait_for("a node streaming the ranges it gained", streaming, timeout=30,
                            interval=0.02) - 1
        gone = 3 if streamer != 3 else 2
        rest = [i for i in range(4) if i != gone]
        c.kill(gone)
        c.wait_state(gone, "down", observers=rest)
        r = c.nodes[0].request("POST", "/cluster/remove?node=%s" % c.ids[gone])
        assert r.status == 200, r
        print("    %s streaming its gains when %s was removed" % (c.ids[streamer], c.ids[gone]))
        wait_for("every node caught up",
                 lambda: all(c.status(i)["regaining"] == 0 for i in rest), timeout=180)
        caught = 0
        for i in rest:
            ev = regain_events(c.nodes[i])
            cleared = metric(c, i, "flamedb_repair_ranges_cleared_total") - cleared0[i]
            gained = sum(n for k, n in ev if k == "gained")
            mid = caught_mid_regain(ev)
            caught += mid
            print("    %s: %s; %d interval(s) cleared for %d gained%s" %
                  (c.ids[i], " ".join("%s %d" % e for e in ev), cleared, gained,
                   " (second removal mid-regain)" if mid else ""))
            assert cleared == gained, "%s cleared %d interval(s) for %d gained" % (
                c.ids[i], cleared, gained)
        assert caught > 0, "no node was caught by the second removal in the middle of a regain"
        # a regain pass that finds the killed node silent asks the other
        # replicas for the rest of its pieces: one timeout per pass at most,
        # not one for every piece planned from it
        silent = "regain stream from %s: no answer" % c.ids[gone]
        waits = [sum(silent in line for line in c.nodes[i].log) for i in rest]
        print("    regain requests to the dead %s that timed out: %s" % (c.ids[gone], waits))
        assert max(waits) <= MAX_DEAD_SOURCE_WAITS, waits
        for i in rest:
            check_exact(c, i, d, frm, until)
        alone_exact(c, rest, d, frm, until, None)


def listed_by_itself(c, i):
    """Whether node i's own entry lists it in its hints_for (not read from)."""
    return any(m["id"] == c.ids[i] and c.ids[i] in m.get("hints_for", [])
               for m in c.status(i)["nodes"])


def named_by_n2(c):
    """Which of n0 and n1 the last entry of n2 (down) lists in its hints_for,
    as n0 sees it: their copies may be short until n2 is back."""
    for m in c.status(0)["nodes"]:
        if m["id"] == c.ids[2]:
            return [j for j in (0, 1) if c.ids[j] in m.get("hints_for", [])]
    return []


def voided(c, j):
    """Whether node j logged that its mark went with a member that left."""
    return any("left the ring with a mark of writes this node missed" in line
               for line in c.nodes[j].log)


def test_down_node_regains_after_restart():
    """A node that is down while another is removed learns what it gained
    when it comes back (DATA_DIR/regain.ring: the ring it last saw), streams
    it in, is read from again once its window check compared its copy (the
    removed node may have held a mark on it), and then answers exactly on
    its own. A node n2's last hints_for names (a write it hinted before the
    answer, or a notice of a slow replica) is no source for the others'
    gained ranges until n2 is back."""
    now = int(time.time())
    # nothing is written while the cluster forms, n3's removal settles or n2
    # comes back: the short settle margin (FAST_FORMATION) changes nothing checked
    with Cluster(4, rf=3, args=ARGS + FAST_FORMATION) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        d = preload(c, "rd", now, 240)
        frm, until = now - 8000, now + 60
        c.kill_then_remove([2, 3], 3)
        wait_for("n3 left on n0 and n1",
                 lambda: all(c.states(i).get("n3") == "left" for i in (0, 1)), timeout=30)
        # n0 and n1 stream what they gained from each other, unless n2's last
        # word names one of them: a write n2 coordinated may be missing there
        # (its hint before the answer, or a slow replica's notice) and n2 alone
        # holds it; then the other waits for n2 rather than copy a short copy
        wait_for("n0 and n1 caught up, or held for n2",
                 lambda: named_by_n2(c) or voided(c, 0) or voided(c, 1) or
                 all(c.status(i)["regaining"] == 0 for i in (0, 1)), timeout=60)
        held = named_by_n2(c)
        if held:
            time.sleep(2)
            for j in held:
                k = 1 - j
                assert c.status(k)["regaining"] > 0, \
                    "n%d regained from %s while n2, holding its mark, was down" % (k, c.ids[j])
            print("    n2 down still names %s (hints_for): the other waited for n2" %
                  " ".join(c.ids[j] for j in held))
        c.restart(2)
        c.wait_state(2, "active", observers=[0, 1], timeout=30)
        wait_for("n2 to stream in what it gained",
                 lambda: any("gained by a removal are streamed in" in line
                             for line in c.nodes[2].log), timeout=60)
        wait_for("n2 caught up", lambda: c.status(2)["regaining"] == 0, timeout=30)
        wait_for("n0 and n1 caught up",
                 lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1)), timeout=60)
        # n3 may have held a mark on n2: n2 is read once its own window check
        # after the start compared its copy with the others' (cluster_void.c)
        wait_for("n2 read from again", lambda: not listed_by_itself(c, 2), timeout=30)
        gone = [line for line in c.nodes[2].log if "is gone from the ring" in line]
        assert gone and "n3" in gone[0], c.nodes[2].log_text()
        print("    " + gone[0].split("INFO ", 1)[-1])
        ev = regain_events(c.nodes[2])
        print("    n2 after its restart: %s" % " ".join("%s %d" % e for e in ev))
        assert ev and ev[0][0] == "gained" and ev[0][1] > 0, ev
        for i in (0, 1, 2):
            check_exact(c, i, d, frm, until)
        alone_exact(c, [0, 1, 2], d, frm, until, None)


def view_state(line, node_id):
    """The state of node_id in a 'view N: ...' log line, with its marker."""
    body = line.split(": ", 2)[-1].rsplit(" (rf ", 1)[0]
    for part in body.split(", "):
        if part.split(" ", 1)[0] == node_id:
            return part.split(" ", 1)[1]
    return None


def test_gainer_down_past_its_margin():
    """A coordinator does not read from a node that gains ranges by a
    removal it saw while that node was down (stopped) for longer than the
    gainer margin (twice the settle margin): from when the node is up again
    until its own hints_for says it is catching up, the coordinator's views
    show it 'gaining: no reads', never as readable."""
    now = int(time.time())
    # --join-settle 1s: the margin is 2 s (the default, 10 gossip intervals +
    # --write-timeout, would make it 4 s and the wait below that much longer)
    with Cluster(4, rf=3, args=ARGS + ["--join-settle", "1s"]) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        preload(c, "rp", now, 60)
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(2, "down", observers=[0, 1, 3])
            c.kill(3)
            c.wait_state(3, "down", observers=[0, 1])
            r = c.nodes[0].request("POST", "/cluster/remove?node=n3")
            assert r.status == 200, r
            wait_for("n3 left on n0", lambda: c.states(0).get("n3") == "left", timeout=20)
            time.sleep(3.5)  # past the margin: 2 x --join-settle = 2 s
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        wait_for("n2 to stream in what it gained",
                 lambda: any("gained by a removal are streamed in" in line
                             for line in c.nodes[2].log), timeout=60)
        seq = []  # n2's states in n0's views since the removal, repeats folded
        for line in c.nodes[0].log:
            if " view " in line and "n3 left" in line:
                st = view_state(line, "n2")
                if st is not None and (not seq or seq[-1] != st):
                    seq.append(st)
        print("    n2 in n0's views after the removal: %s" % " -> ".join(seq))
        assert "down" in seq, seq
        back = seq[seq.index("down") + 1:]
        assert back and back[0] != "active", \
            "n0 read from n2 as soon as it was up again, before it caught up: %s" % seq
        said = [k for k, st in enumerate(back) if "hinted" in st]
        assert said, seq
        assert "active" not in back[:said[0]], seq


if __name__ == "__main__":
    harness.run_tests(globals())
