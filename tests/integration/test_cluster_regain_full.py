#!/usr/bin/env python3
"""A node that cannot tell what it gained while it was down repairs every
range it replicates on its own, and is not read from until that repair
converged (issue #10; docs/cluster.md, "When a node cannot tell what it
gained"), with real processes, 4 nodes RF 3:

- n2 is killed, then n3 is killed and removed (`/cluster/remove`), so n0
  and n1 regain n3's ranges; n2 gains its share of them too but is down;
- n3's tombstone is forgotten before n2 comes back: with a short
  --forget-left-after (3 s) where the binary has that setting, or by
  stopping n0 and n1 together and starting them again (the members table
  lives in memory: the only other way to lose a tombstone; the second test,
  and the first on a binary without the setting);
- n2 is restarted. It cannot account for n3 (no member knows it), and in
  the first test has been down longer than tombstones are kept: it must list
  itself as possibly short (answers through it are exact, read from the
  others), and with n0 and n1 stopped answer partial, never short and
  unflagged; run anti-entropy passes by itself (no flamectl) until one
  converges; then answer exactly on its own (n0 and n1 stopped), profiles
  older than the seen span (--seen-retention 2h) included: only the full
  repair's stream of every interval n2 replicates restores those.

A node that joined and was removed while n2 was down
(test_joined_and_removed_while_down) leaves n2's kept ring equal to the
current one; its incarnation, later than when n2 was last up, gives it
away, and n2 repairs the same way.

A member whose incarnation is later than when n2 was last up (its clock
ahead of n2's, or raised by refutations and restarts) and that n2 watched
leave since its restart (test_watched_leaving_is_no_missed_node) is not such
a node: n2 accounted for its leaving and takes no full repair. Before, a
view after the removal within n2's start wait found it in neither the ring
n2 kept nor the current one and began one.

A damaged DATA_DIR/regain (test_damaged_regain_file_falls_back): while no
interval was cleared (no regain.progress) the node starts, keeps the file as
regain.damaged and runs the same full repair (DATA_DIR/regain is then its
own list of intervals to stream); with regain.progress present
it refuses to start, naming both files. A binary without the fallback
refuses to start in both cases.

A restart after the full repair's stream finished but before the mark was
lifted (test_restart_after_stream_streams_nothing_again): n2 is killed
(kill -9) once its stream started (regain.progress written), restarted with
--join-settle 120s, so the stream resumes and finishes but the mark cannot
be lifted for two minutes, killed again as soon as that stream finished and
restarted with the others' short settle margin (300 ms): it must clear and stream nothing
again (no interval handed, flamedb_repair_windows_streamed_total and
flamedb_repair_ranges_cleared_total 0 in that process), lift the mark, and
answer exactly on its own, old profiles included. A binary that keeps the
intervals already streamed in memory only hands every interval again.

A binary without the full repair serves the ranges it gained from its own
empty copy: a short answer not flagged partial, which stays short. Every
wait is bounded; the seed is printed (cluster.py).
"""
import os
import signal
import subprocess
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SCALE = 10000000  # folded samples are 10 ms each

# Every node forms the cluster, joins and regains a removed node's ranges
# with the short settle margin (FAST_FORMATION): nothing is written while a
# node joins or a removal settles. n2, the node each test restarts while it
# cannot tell what it gained, is restarted with MARK_SETTLE: its mark lasts
# at least that margin, so the checks made while it is marked (through it
# with every node up, and alone) find it marked.
ARGS = ["--write-timeout", "1s", "--query-timeout", "4s", "--repair-interval", "0"] + \
    FAST_FORMATION
MARK_SETTLE = ["--join-settle", "8s"]


# --seen-retention 2h: anti-entropy compares profiles from about now - 1 h on
# (the seen span less its margin), so the "old" profiles, pushed 2.8 to 3 h
# ago, are outside it: only the full repair's stream of whole windows
# restores them on a node that gained their range unseen.
SEEN_ARGS = ["--seen-retention", "2h"]
OLD_S = 9000


START_WAIT_OVER = "the start's wait for the member table is over"


def start_wait_over(c, i, timeout=30):
    """Waits until node i logged the end of the start's wait (--failure-timeout
    + 10 gossip intervals after it started): the view that wait's end rebuilt,
    and what it decided about the ring kept from before the restart (a full
    repair, or staying marked), is in place once the line is out."""
    wait_for("%s's start's wait to be over (its log line)" % c.ids[i],
             lambda: any(START_WAIT_OVER in line for line in c.nodes[i].log), timeout,
             interval=0.05)


def has_setting(name):
    p = subprocess.run([harness.FLAMEDB_BIN, "--help"], capture_output=True, text=True,
                       timeout=30)
    return ("--" + name) in (p.stdout + p.stderr)


def sel(svc):
    return '%s{service_name="%s"}' % (CPU, svc)


def preload(c, node, prefix, now, count, nservices=24):
    """count small profiles (their trees are kept, so anti-entropy can move
    them) over nservices services from now - 1800 on (recent enough for the
    seen comparison unless now lies in the past), a few at once
    (harness.at_once); returns {service: samples}."""
    svcs = [harness.unique("%s%d" % (prefix, k)) for k in range(nservices)]

    def push(seq):
        svc = svcs[seq % nservices]
        lines = ["main;%s;h%d;leaf%d %d" % (svc, seq % 7, k, 1 + (seq + k) % 4)
                 for k in range(6)]
        t = now - 1800 + 7 * seq
        r = c.nodes[node].ingest(("\n".join(lines) + "\n").encode(), name=svc + ".cpu",
                                 **{"from": t, "until": t + 10})
        assert r.status == 200, "push %s at %d: %r" % (svc, t, r)
        return svc, sum(1 + (seq + k) % 4 for k in range(6))
    want = {}
    for svc, v in harness.at_once(push, range(count)):
        want[svc] = want.get(svc, 0) + v
    return want


def answers(c, i, want, frm, until):
    """[(service, got, want, partial)] through node i."""
    out = []
    for svc, w in sorted(want.items()):
        r = c.nodes[i].render(sel(svc), frm, until)
        assert r.status == 200, r
        got = r.json()["flamebearer"]["numTicks"] // SCALE
        out.append((svc, got, w, "x-flamedb-partial" in r.headers))
    return out


def never_silently_short(c, i, want, frm, until, what):
    """Every answer through node i is exact, or flagged partial; returns
    how many were partial."""
    partial = 0
    for svc, got, w, part in answers(c, i, want, frm, until):
        assert part or got == w, \
            "%s: %s through %s is %d, want %d, and not flagged partial" % (
                what, svc, c.ids[i], got, w)
        partial += part
    return partial


LAST_BAD = []


def exact(c, i, want, frm, until):
    """Every answer through node i exact and not partial; the others are
    kept in LAST_BAD for the failure message."""
    bad = [(s, g, w, p) for s, g, w, p in answers(c, i, want, frm, until) if p or g != w]
    LAST_BAD[:] = bad
    return not bad


def stopped(c, nodes, observer):
    for k in nodes:
        c.nodes[k].proc.send_signal(signal.SIGSTOP)
    for k in nodes:
        c.wait_state(k, "down", observers=[observer])


def resumed(c, nodes, observers):
    for k in nodes:
        c.nodes[k].proc.send_signal(signal.SIGCONT)
    for k in nodes:
        c.wait_state(k, "active", observers=observers, timeout=30)


def alone_exact(c, i, want, frm, until):
    """The other two nodes stopped: every answer through node i exact within
    20 s (the bad ones printed on failure); the others run again in any
    case."""
    others = [k for k in range(3) if k != i]
    stopped(c, others, i)
    try:
        try:
            wait_for("n%d alone exact" % i, lambda: exact(c, i, want, frm, until), timeout=20)
        except AssertionError:
            print("    (service, got, want, partial) %r" % LAST_BAD)
            raise
    finally:
        resumed(c, others, [i])


def n2_alone_exact(c, want, frm, until, what):
    """n0 and n1 stopped: every answer through n2 exact (alone_exact);
    prints `what` after "n2 alone (n0, n1 stopped) answers exactly"."""
    alone_exact(c, 2, want, frm, until)
    print("    n2 alone (n0, n1 stopped) answers exactly" + what)


def test_down_past_tombstones_repairs_fully():
    """Tombstones forgotten by --forget-left-after 3s (n2 was down longer)."""
    full_repair_after_lost_tombstone(has_setting("forget-left-after"))


def test_tombstone_lost_repairs_fully():
    """Tombstones kept 72 h, lost by restarting every node that had them:
    n2 was not down long, but no member knows n3."""
    full_repair_after_lost_tombstone(False)


def full_repair_after_lost_tombstone(short_setting):
    args = ARGS + SEEN_ARGS + (["--forget-left-after", "3s"] if short_setting else [])
    now = int(time.time())
    with Cluster(4, rf=3, args=args) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        want = preload(c, 0, "full", now, 240)
        want.update(preload(c, 0, "fullold", now - OLD_S, 96, nservices=12))
        frm, until = now - OLD_S - 3600, now + 60
        # hints stored before the answer settle first: a kill before gossip
        # told of their cancels leaves a stale hints_for (no stream source)
        c.wait_hints_settled()
        c.kill_then_remove([2, 3], 3)
        wait_for("n3 left on n0 and n1", lambda: all(
            c.states(i).get("n3") == "left" or c.status(i)["regaining"] > 0 for i in (0, 1)),
            timeout=20)
        wait_for("n0 and n1 regained n3's ranges",
                 lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1)), timeout=60)
        if short_setting:
            wait_for("n3's tombstone forgotten on n0 and n1",
                     lambda: all("n3" not in c.states(i) for i in (0, 1)), timeout=30)
            print("    n3's tombstone forgotten after --forget-left-after 3s")
        else:
            for i in (0, 1):  # both down at once: neither learns it back from the other
                c.stop(i)
            for i in (0, 1):
                c.restart(i)
            for i in (0, 1):
                c.wait_state(i, "active", observers=[0, 1], timeout=30)
            assert all("n3" not in c.states(i) for i in (0, 1))
            print("    n3's tombstone forgotten by restarting n0 and n1")
        t_back = time.monotonic()
        c.restart(2, extra=MARK_SETTLE)
        c.wait_state(2, "active", observers=[0, 1], timeout=30)
        wait_for("n2 to see n0 and n1", lambda: all(
            c.states(2).get(k) == "active" for k in ("n0", "n1")), timeout=30)
        start_wait_over(c, 2)
        marked = c.status(2).get("full_repair")
        print("    n2 back: full_repair %s" % marked)
        never_silently_short(c, 2, want, frm, until, "all up, n2 just back")
        print("    through n2 with every node up: exact or flagged")
        if c.status(2).get("full_repair", 1):
            stopped(c, [0, 1], 2)
            try:
                part = never_silently_short(c, 2, want, frm, until, "n2 alone, marked")
                print("    n2 alone while marked: %d of %d answers flagged partial, the rest "
                      "exact" % (part, len(want)))
            finally:
                resumed(c, [0, 1], [2])
        wait_for("n2's full repair to converge",
                 lambda: c.status(2).get("full_repair") == 0 and any(
                     "full repair converged" in line for line in c.nodes[2].log), timeout=90)
        took = time.monotonic() - t_back
        done = [line for line in c.nodes[2].log if "full repair converged" in line]
        why = [line for line in c.nodes[2].log if "cannot tell which ranges" in line]
        assert why, c.nodes[2].log_text()
        print("    " + why[0].split("WARN ", 1)[-1][:200])
        print("    " + done[0].split("INFO ", 1)[-1])
        print("    converged %.1f s after n2 was restarted (--join-settle 8s)" % took)
        streamed = [line for line in c.nodes[2].log if "to clear and stream whole" in line]
        if streamed:
            print("    " + streamed[0].split("INFO ", 1)[-1][:160])
        n2_alone_exact(c, want, frm, until, ", the %d services with profiles older than the "
                       "seen span included" % sum(1 for s in want if "fullold" in s))


def lose_tombstone_and_restart(c):
    """n2 killed, n3 killed and removed, n3's tombstone forgotten
    (--forget-left-after 3s), n2 started again: it is marked. The pushes'
    hints settle first: a kill before gossip told of their cancels leaves
    the replicas named no stream source until n2 or n3 is back."""
    c.wait_hints_settled()
    c.kill_then_remove([2, 3], 3)
    wait_for("n0 and n1 regained n3's ranges", lambda: all(
        c.states(i).get("n3") in ("left", None) and c.status(i)["regaining"] == 0
        for i in (0, 1)), timeout=60)
    wait_for("n3's tombstone forgotten on n0 and n1",
             lambda: all("n3" not in c.states(i) for i in (0, 1)), timeout=30)
    c.restart(2, extra=MARK_SETTLE)


def full_streamed(node):
    """Whether the full repair's regain finished in node's current process."""
    return any("are streamed in: serving reads again" in x for x in node.log)


def test_restart_after_stream_streams_nothing_again():
    if not has_setting("forget-left-after"):
        print("    skipped: no --forget-left-after")
        return
    args = ARGS + SEEN_ARGS + ["--forget-left-after", "3s"]
    now = int(time.time())
    with Cluster(4, rf=3, args=args) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        want = preload(c, 0, "rs", now, 160, nservices=16)
        want.update(preload(c, 0, "rsold", now - OLD_S, 64, nservices=8))
        frm, until = now - OLD_S - 3600, now + 60
        lose_tombstone_and_restart(c)
        progress = os.path.join(c.nodes[2].data_dir, "regain.progress")
        full = os.path.join(c.nodes[2].data_dir, "regain.full")
        # its stream started: the clear is done and recorded (8 s settle margin)
        wait_for("n2's full repair to clear and record its intervals",
                 lambda: os.path.exists(progress), timeout=60, interval=0.01)
        c.kill(2)
        assert os.path.exists(progress) and os.path.exists(full), \
            "n2 finished its stream before it was killed:\n" + c.nodes[2].log_text()
        print("    n2 killed once its stream started")
        # a settle margin of 2 minutes: the mark cannot be lifted before the
        # stream resumed from its cursors has finished
        c.restart(2, extra=["--join-settle", "120s"])
        wait_for("n2's resumed stream to finish", lambda: full_streamed(c.nodes[2]), timeout=90)
        assert c.status(2).get("full_repair") == 1, c.nodes[2].log_text()
        windows = c.nodes[2].metric("flamedb_repair_windows_streamed_total")
        c.kill(2)
        assert os.path.exists(full)
        print("    resumed stream finished (%d windows), n2 killed again while marked" % windows)
        t_back = time.monotonic()
        c.restart(2, extra=[])
        c.wait_state(2, "active", observers=[0, 1], timeout=30)
        wait_for("n2's full repair to converge",
                 lambda: c.status(2).get("full_repair") == 0 and any(
                     "full repair converged" in x for x in c.nodes[2].log), timeout=90)
        print("    converged %.1f s after the last restart" % (time.monotonic() - t_back))
        log = c.nodes[2].log
        again = [x for x in log if "to clear and stream whole" in x or
                 "before receiving them whole" in x]
        streamed = c.nodes[2].metric("flamedb_repair_windows_streamed_total")
        cleared = c.nodes[2].metric("flamedb_repair_ranges_cleared_total")
        print("    after the last restart: %d windows streamed, %d intervals cleared" % (
            streamed, cleared))
        assert not again and streamed == 0 and cleared == 0, \
            "n2 cleared and streamed again what it had streamed before:\n" + "\n".join(again)
        assert not os.path.exists(full)
        n2_alone_exact(c, want, frm, until, ", old profiles included")


def test_joined_and_removed_while_down():
    """n2 is killed; n4 joins (taking ranges from the others, n2's among
    them), gets writes, and is killed and removed, giving those ranges back:
    n2's kept ring equals the current one, but n4 started after n2 was last
    up and is gone again, so n2 cannot tell what it missed and repairs."""
    now = int(time.time())
    with Cluster(4, rf=3, args=ARGS) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        c.kill(2)
        c.wait_state(2, "down", observers=[0, 1, 3])
        j = c.add_node(join=[0, 1, 3])
        c.wait_state(j, "active", observers=[0, 1, 3], timeout=90)
        want = preload(c, 0, "jl", now, 240)  # while n4 holds ranges n2 gave it
        c.wait_hints_settled(down=[2])  # n4 killed with a stale hint: no source
        c.kill(j)
        c.wait_state(j, "down", observers=[0, 1, 3])
        r = c.nodes[0].request("POST", "/cluster/remove?node=%s" % c.ids[j])
        assert r.status == 200, r
        wait_for("n4 left", lambda: all(c.states(i).get(c.ids[j]) == "left"
                                        for i in (0, 1, 3)), timeout=20)
        wait_for("the others regained n4's ranges",
                 lambda: all(c.status(i)["regaining"] == 0 for i in (0, 1, 3)), timeout=60)
        t_back = time.monotonic()
        c.restart(2, extra=MARK_SETTLE)
        c.wait_state(2, "active", observers=[0, 1, 3], timeout=30)
        wait_for("n2 to see the others", lambda: all(
            c.states(2).get(k) == "active" for k in ("n0", "n1", "n3")), timeout=30)
        start_wait_over(c, 2)
        never_silently_short(c, 2, want, frm=now - 3600, until=now + 60,
                             what="all up, n2 just back")
        print("    through n2 with every node up: exact or flagged")
        wait_for("n2's full repair to converge",
                 lambda: c.status(2).get("full_repair") == 0 and any(
                     "full repair converged" in x for x in c.nodes[2].log), timeout=90)
        why = [x for x in c.nodes[2].log if "joined and left while" in x]
        assert why, c.nodes[2].log_text()
        print("    " + why[0].split("WARN ", 1)[-1][:150])
        print("    converged %.1f s after n2 was restarted" % (time.monotonic() - t_back))
        # with 4 nodes RF 3, n2 is the only live replica of a range it holds
        # when that range's two other replicas are stopped: each pair in turn
        for pair in ((0, 1), (0, 3), (1, 3)):
            stopped(c, pair, 2)
            try:
                try:
                    wait_for("n2 exact with n%d and n%d stopped" % pair,
                             lambda: exact(c, 2, want, now - 3600, now + 60), timeout=20)
                except AssertionError:
                    print("    (service, got, want, partial) %r" % LAST_BAD)
                    raise
            finally:
                resumed(c, pair, [2])
        print("    n2 with any two others stopped answers exactly")


def test_watched_leaving_is_no_missed_node():
    """n0 starts with an incarnation 30 s ahead of the clock (as a clock 30 s
    ahead gives); n0 and n2 are killed, n2 is restarted (--failure-timeout
    4s: a start wait of 5 s, so the removal surely lands within it), and n0
    is removed: n2 sees it leave, and a view change after (n1 paused and
    resumed) must not take n0 for a node that joined and left while n2 was
    down."""
    with Cluster(3, rf=3, args=ARGS, start=False) as c:
        c.add_node(start=False)
        with open(os.path.join(c.nodes[0].data_dir, "incarnation"), "w") as f:
            f.write("%d\n" % (int(time.time()) + 30))
        c.nodes[0].start()
        c.add_node()
        c.add_node()
        c.wait_converged()
        c.kill(0)
        c.kill(2)
        c.wait_state(0, "down", observers=[1])
        c.restart(2, extra=["--failure-timeout", "4s"])
        r = c.nodes[1].request("POST", "/cluster/remove?node=n0")
        assert r.status == 200, r
        wait_for("n2 sees n0 left", lambda: c.states(2).get("n0") == "left", timeout=20)
        c.nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            c.wait_state(1, "down", observers=[2])
        finally:
            c.nodes[1].proc.send_signal(signal.SIGCONT)
        c.wait_state(1, "active", observers=[2])
        start_wait_over(c, 2)
        why = [x for x in c.nodes[2].log if "joined and left while" in x or
               "cannot tell which ranges" in x]
        assert not why, why
        assert c.status(2).get("full_repair") == 0, c.status(2)
        print("    n2 watched n0 leave: no full repair")


def test_restart_alone_stays_marked():
    """n2 is killed, profiles are pushed (hinted for it), and n2 is started
    again while n0 and n1 are stopped, so no seed answers: alone it cannot
    account for the ring it kept, so it keeps itself listed as possibly
    short (answers partial, never short and unflagged) past the start's
    wait, until it hears from the others; then it is exact."""
    now = int(time.time())
    with Cluster(3, rf=3, args=ARGS) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        c.kill(2)
        c.wait_state(2, "down", observers=[0, 1])
        want = preload(c, 0, "al", now, 120)
        for k in (0, 1):
            c.nodes[k].proc.send_signal(signal.SIGSTOP)
        try:
            c.restart(2, extra=MARK_SETTLE)  # ready once --failure-timeout passed, no seed
            start_wait_over(c, 2)  # it stays marked past it
            part = never_silently_short(c, 2, want, now - 3600, now + 60, "n2 alone")
            print("    n2 alone, no seed answering: %d of %d answers flagged partial, the "
                  "rest exact" % (part, len(want)))
        finally:
            for k in (0, 1):
                c.nodes[k].proc.send_signal(signal.SIGCONT)
        c.wait_state(2, "active", observers=[0, 1], timeout=30)
        wait_for("n2 exact once it heard from the others",
                 lambda: exact(c, 2, want, now - 3600, now + 60), timeout=30)
        print("    exact through n2 once it heard from n0 and n1")


def test_a_members_first_word_is_not_its_whole_table():
    """n0 is killed (down, not removed) and n2 stopped (SIGSTOP); n1 is
    restarted, waits out the start's wait with no member answering, and
    then n2 continues. n2's first gossip makes it a member of n1's table
    before the entries it names (n0's among them) arrive: n1 must not take
    n0 as known to no member from that, and so not mark itself for a full
    repair (clearing and streaming every range it replicates). It accounts
    for its ring once n2's table reached it: n0 down, nothing gained. The
    build before marked it (logged `n0 was in the ring when this node last
    saw it and no member knows it now`, 2 ms before n0's entry arrived)."""
    now = int(time.time())
    with Cluster(3, rf=3, args=ARGS) as c:
        for i in range(3):
            c.wait_state(i, "active", observers=[0, 1, 2], timeout=30)
        want = preload(c, 0, "fw", now, 60)
        # every copy stored (a write still in flight to n1 when n0 dies
        # would mark n1 through n2's witness: correct, but another test)
        wait_for("n1 and n2 exact", lambda: all(
            c.nodes[i].total(sel(s), now - 3600, now + 60) // SCALE == w
            for i in (1, 2) for s, w in want.items()), timeout=30)
        c.kill(0)
        c.wait_state(0, "down", observers=[1, 2])
        c.nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            c.restart(1, ready=False)
            start_wait_over(c, 1)
        finally:
            c.nodes[2].proc.send_signal(signal.SIGCONT)
        wait_for("n1 accounting for its ring",
                 lambda: any("accounted for every node of the ring before the restart" in line
                             for line in c.nodes[1].log), timeout=30)
        time.sleep(1.0)  # a later wrong decision would be out by now
        unknown = [line for line in c.nodes[1].log if "no member knows it now" in line]
        assert not unknown, "n1 took a member's first word for its table: %s" % unknown[0]
        assert c.status(1)["full_repair"] == 0, c.status(1)
        assert c.nodes[1].metric("flamedb_repair_ranges_cleared_total") == 0
        wait_for("n1 exact", lambda: exact(c, 1, want, now - 3600, now + 60), timeout=30)
        print("    n1 accounted for its ring once n2's table arrived: no full repair, exact")


def damage(path, cleared):
    with open(path, "w") as f:  # not a list of token intervals
        f.write("flamedb-regain 2\n0000000000000000 00000000000000zz\nend 1\n")
    if cleared:  # an interval was cleared already
        with open(path + ".progress", "w") as f:
            f.write("flamedb-regain-progress 2\nend 0\n")


def test_damaged_regain_file_falls_back():
    now = int(time.time())
    with Cluster(4, rf=3, args=ARGS) as c:
        for i in range(4):
            c.wait_state(i, "active", observers=[0, 1, 2, 3], timeout=30)
        want = preload(c, 0, "dmg", now, 120)
        frm, until = now - 3600, now + 60
        code, _ = c.stop(2)
        assert code == 0, code
        path = os.path.join(c.nodes[2].data_dir, "regain")
        damage(path, cleared=False)
        t0 = time.monotonic()
        c.restart(2, extra=MARK_SETTLE)  # a binary without the fallback exits 1 here
        wait_for("n2 to fall back", lambda: any(
            "falls back to a full repair" in x for x in c.nodes[2].log), timeout=10)
        assert os.path.exists(path + ".damaged")
        if os.path.exists(path):  # the full repair's own list of intervals to stream
            with open(path) as f:
                fresh = f.read()
            assert fresh.startswith("flamedb-regain 2\n") and "zz" not in fresh, fresh[:200]
        assert c.status(2)["full_repair"] == 1
        print("    " + [x for x in c.nodes[2].log
                         if "falls back" in x][0].split("ERROR ", 1)[-1][:200])
        c.wait_state(2, "active", observers=[0, 1], timeout=30)
        never_silently_short(c, 2, want, frm, until, "n2 marked")
        wait_for("n2's full repair to converge",
                 lambda: c.status(2).get("full_repair") == 0, timeout=90)
        print("    full repair converged %.1f s after the start" % (time.monotonic() - t0))
        n2_alone_exact(c, want, frm, until, "")
        code, _ = c.stop(2)
        assert code == 0, code
        damage(path, cleared=True)
        try:
            c.restart(2)
            refused = None
        except AssertionError as e:
            refused = str(e)
        assert refused is not None and "cleared already" in refused, \
            "with regain.progress present the start must be refused: %s" % refused
        line = [x for x in refused.splitlines() if "cleared already" in x][0]
        print("    with regain.progress: refused, " + line.split("ERROR ", 1)[-1][:160] + "...")


if __name__ == "__main__":
    harness.run_tests(globals())
