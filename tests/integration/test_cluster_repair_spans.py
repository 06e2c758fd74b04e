#!/usr/bin/env python3
"""Span trees of profiles that anti-entropy fetches (issue #10, "never a
silent short answer"), with real processes: 2 nodes RF 2, hinted handoff off
(--hints-max-bytes 0). n1 is killed; profiles whose samples carry span_id /
trace_id labels are pushed through n0 (one span id also in a profile both
nodes stored before, in the same 10 s window, so the fetched member joins a
stored span tree); n1 restarts and `flamectl cluster repair` converges. With
n0 killed, n1 alone must answer every span and trace query with exactly the
pushed total (the flame graph of each service too), or flag it partial: a
short unflagged answer is the bug. A second repair streams nothing, and the
span totals stay exact (nothing counted twice)."""
import time

import harness
from cluster import FAST_FORMATION, Cluster, wait_for
from profiles import Pprof
from test_cluster_repair import ctl, hints_for

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def sel(service, **labels):
    pairs = ['service_name="%s"' % service] + ['%s="%s"' % kv for kv in labels.items()]
    return "%s{%s}" % (CPU, ",".join(pairs))


def push(node, svc, t, seq, spans, want):
    """One pprof at time t whose samples carry the given span ids (and a
    trace id per profile); adds what it pushed to want[(svc, label, id)]."""
    p = Pprof([("cpu", "nanoseconds")])
    trace = "trace-%d" % seq
    rows = []
    for k, span in enumerate(spans):
        rows.append((["main", "serve", "f%d" % (seq % 5)], 100 + 10 * seq + k,
                     {"span_id": span, "trace_id": trace}))
    rows.append((["main", "idle"], 3 + seq % 4, {}))
    for stack, v, labels in rows:
        p.add(stack, [v], labels)
        want[(svc, "", "")] = want.get((svc, "", ""), 0) + v
        for label, value in labels.items():
            want[(svc, label, value)] = want.get((svc, label, value), 0) + v
    r = None
    for _ in range(100):  # a node just back may not be seen up everywhere yet: 503
        r = node.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": t})
        if r.status != 503:
            break
        time.sleep(0.1)
    assert r.status == 200, "push %d: %r" % (seq, r)


def answers(node, want, t0):
    """For every pushed (service, label, id): (total, partial) through node."""
    out = {}
    for (svc, label, value) in sorted(want):
        q = sel(svc) if not label else sel(svc, **{label: value})
        r = node.render(q, str(t0 - 60), str(t0 + 600))
        assert r.status == 200, "%s: %r" % (q, r)
        j = r.json()
        out[(svc, label, value)] = (j["flamebearer"]["numTicks"], bool(j.get("partial")))
    return out


def silent_short(got, want):
    return ["%s %s=%s: %d of %d, unflagged" % (k[0], k[1] or "(all)", k[2], got[k][0], want[k])
            for k in sorted(want) if got[k][0] != want[k] and not got[k][1]]


def repaired(extra, check, many=0):
    """Pushes while n1 is down, repairs, and calls check(got, want) with the
    answers of n1 alone; then repairs again (nothing to fetch) and checks
    that n1 alone answers the same (nothing counted twice). many: span ids
    more per fetched profile."""
    services = [harness.unique("rsp%d" % k) for k in range(3)]
    t0 = int(time.time()) - 300
    args = ["--write-timeout", "1s", "--hints-max-bytes", "0"] + FAST_FORMATION + extra
    with Cluster(2, rf=2, write_quorum=1, args=args) as c:
        want = {}
        shared = "00000000cafe0001"
        # both replicas store this one: its span tree is on n1 already
        push(c.nodes[0], services[0], t0, 0, [shared], want)
        # acknowledged by n0 alone (W 1): n1's copy may land after the answer
        wait_for("n1 stored push 0",
                 lambda: c.nodes[1].metric("flamedb_replica_writes_total") >= 1, 10)
        c.kill(1)
        c.wait_state(1, "down")
        for seq in range(1, 13):
            spans = ["%016x" % (0xbeef0000 + seq), "req-%d" % seq]
            spans += ["m%d-%d" % (seq, k) for k in range(many)]
            if seq == 1:
                spans.append(shared)  # the same 10 s window and series as push 0
            t = t0 if seq == 1 else t0 + 11 * seq
            push(c.nodes[0], services[(seq - 1) % len(services)] if seq > 1 else services[0],
                 t, seq, spans, want)
        c.restart(1)
        c.wait_converged(timeout=30)
        p, took = ctl(c, 0, "cluster", "repair")
        assert p.returncode == 0 and "converged" in p.stdout, p.stdout + p.stderr
        fetched = c.nodes[1].metric("flamedb_repair_series_streamed_total")
        assert fetched >= 12, "n1 fetched %s series, missed 12" % fetched
        # n0 lifts its repair mark on n1 (gossiped): until then n1 alone
        # would rightly flag everything partial
        wait_for("repair marks lifted", lambda: not any(hints_for(c, i) for i in (0, 1)), 30)

        c.kill(0)
        c.wait_state(0, "down", observers=[1])
        got = answers(c.nodes[1], want, t0)
        short = silent_short(got, want)
        flagged = sum(1 for k in want if got[k][1])
        exact = sum(1 for k in want if got[k] == (want[k], False))
        print("    n1 alone after repair: %d exact, %d flagged partial, %d short unflagged of %d"
              % (exact, flagged, len(short), len(want)))
        assert not short, "silent short answers through the repaired node:\n  " + \
            "\n  ".join(short)
        check(got, want)

        # a second round fetches nothing, and nothing counts twice
        c.restart(0)
        c.wait_converged(timeout=30)
        p2, _ = ctl(c, 1, "cluster", "repair")
        assert p2.returncode == 0 and "streamed 0 series" in p2.stdout, p2.stdout + p2.stderr
        wait_for("no repair marks", lambda: not any(hints_for(c, i) for i in (0, 1)), 30)
        c.kill(0)
        c.wait_state(0, "down", observers=[1])
        again = answers(c.nodes[1], want, t0)
        assert again == got, "after a second repair: %s" % silent_short(again, want)


def test_fetched_profiles_bring_their_span_trees():
    def check(got, want):
        partial = [k for k in want if got[k][1]]
        assert not partial, "fetched span trees should be whole; flagged: %s" % partial

    repaired([], check)


def test_unknown_span_members_are_flagged_partial():
    """--max-span-members 0: every span value holds its profiles in an
    anonymous rest, so the source cannot tell a fetched profile's member:
    it names the tree, and n1 flags those span queries partial (never short
    and unflagged); flame graphs stay exact. The trace only n1's own write
    made keeps its total, flagged too: it shares its series and window with
    a fetched profile that it might hold unlisted."""
    def check(got, want):
        for k in want:
            svc, label, value = k
            if not label:
                assert got[k] == (want[k], False), "%s: %s, want %d exact" % (k, got[k], want[k])
            elif value == "trace-0":
                assert got[k][0] == want[k], "%s: %s, want %d" % (k, got[k], want[k])
            else:
                assert got[k][1], "%s: %s, want flagged partial" % (k, got[k])

    repaired(["--max-span-members", "0"], check)


def test_span_trees_past_the_answer_budget_are_fetched_later():
    """--max-message-bytes 64KiB and 200 more span ids per profile (about
    12 KiB of span trees each, four profiles per service and token): one
    FETCH answer cannot hold a whole token's profiles with their trees, so
    the answer ends early and the rest is asked again; every span still
    comes out exact and unflagged."""
    def check(got, want):
        wrong = [k for k in want if got[k] != (want[k], False)]
        assert not wrong, "not exact: %s" % ["%s %s" % (k, got[k]) for k in wrong[:10]]

    repaired(["--max-message-bytes", "64KiB"], check, many=200)


if __name__ == "__main__":
    harness.run_tests(globals())
