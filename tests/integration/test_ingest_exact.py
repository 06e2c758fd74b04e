"""test_ingest_exact.py — what one push stores, exactly: the profile id covers
the resolved time window (the README's curl example without `from`, pushed
twice, is stored twice; the same body with the same `from`/`until` once),
folded counts that are negative or not numbers are refused with 400 and a
reason, and nothing of a refused body is stored."""
import time

from harness import CPU, Node, run_tests, unique
from profiles import Pprof

NODE = Node(name="exact").start()
NOW = int(time.time())
NS = 10**9 // 100  # one folded .cpu sample at the default 100 Hz, in ns


def total(svc):
    return NODE.total(CPU + '{service_name="%s"}' % svc, frm="now-1h", until=str(int(time.time()) + 60))


def test_readme_example_without_from_is_stored_twice():
    # README: printf 'main;work;hash 60\nmain;idle 40\n' | curl --data-binary @- '...&format=folded'
    svc = unique("readme")
    body = b"main;work;hash 60\nmain;idle 40\n"
    for _ in range(2):
        r = NODE.ingest(body, name=svc + ".cpu{env=prod}", format="folded")
        assert r.status == 200, r
        time.sleep(1.1)  # the node's clock moves: another time window
    assert total(svc) == 2 * 100 * NS


def test_same_window_stays_once():
    svc = unique("window")
    body = b"main;work 7\n"
    for frm in (NOW - 30, NOW - 30, (NOW - 30) * 1000):  # the last in ms: the same time
        r = NODE.ingest(body, name=svc + ".cpu", until=str(NOW - 20), **{"from": frm})
        assert r.status == 200, r
    assert total(svc) == 7 * NS
    r = NODE.ingest(body, name=svc + ".cpu", until=str(NOW - 19), **{"from": NOW - 30})
    assert r.status == 200, r  # another window: another profile
    assert total(svc) == 2 * 7 * NS


def test_pprof_without_from_is_a_new_profile_each_time():
    svc = unique("pp")
    body = Pprof([("cpu", "nanoseconds")]).add(["main", "run"], [1000]).encode()
    for _ in range(2):
        r = NODE.ingest(body, name=svc, format="pprof")
        assert r.status == 200, r
        time.sleep(1.1)
    assert total(svc) == 2000


def test_time_parameter_overrides_time_nanos():
    """A pprof's time_nanos wins over from= (Pyroscope's order), so a saved
    profile could not be filed at another time (a backfill, a client with a
    wrong clock): time= sets it, over both; the same time pushed twice counts
    once; a bad time is a 400 naming the parameter."""
    svc = unique("timeparam")
    p = Pprof([("cpu", "nanoseconds")], time_ns=(NOW - 60) * 10**9)
    p.add(["main", "work"], [7])
    q = '%s{service_name="%s"}' % (CPU, svc)

    def times():
        r = NODE.query("/api/profiles", query=q, **{"from": str(NOW - 7200)}, until=str(NOW + 60))
        assert r.status == 200, r
        return sorted(x["time"] for x in r.json()["profiles"])

    r = NODE.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": NOW - 3000})
    assert r.status == 200, r
    assert times() == [NOW - 60], times()  # time_nanos, not from
    for _ in range(2):
        r = NODE.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": NOW - 3000}, time=NOW - 3600)
        assert r.status == 200, r
    assert times() == [NOW - 3600, NOW - 60], times()
    r = NODE.ingest(p.encode_gz(), name=svc, format="pprof", time="yesterday")
    assert r.status == 400 and "parameter 'time'" in r.body.decode(), r


def test_bad_folded_counts_400():
    svc = unique("neg")
    cases = {
        b"main;ok 5\nmain;bad -3\n": "line 2: the count is negative",
        b"main;ok five\n": "line 1: the count is not a decimal integer",
        b"main;ok\n": "line 1: the count is missing",
        b"main;ok 1.5\n": "line 1: the count is not a decimal integer",
    }
    for body, words in cases.items():
        r = NODE.ingest(body, name=svc + ".cpu", **{"from": NOW - 30})
        assert r.status == 400, (body, r)
        j = r.json()
        assert j["code"] == "invalid_parameter" and words in j["message"], (body, j)
    assert total(svc) == 0  # nothing of a refused body was stored


run_tests(globals())
