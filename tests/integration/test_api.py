"""test_api.py — the HTTP API of one node: ingest folded and pprof (raw, gzip,
multipart), render as JSON/folded/pprof with exact totals, labels, time
ranges, tenants, retries counted once, and the small endpoints."""
import json
import os
import subprocess
import tempfile
import time
from xml.etree import ElementTree

import harness
from harness import CPU, Node, folded_sum, run_tests, unique
from profiles import Pprof, folded, multipart, pprof_totals

NODE = Node(name="api").start()
NOW = int(time.time())
SCALE = 10**7  # folded .cpu at the default 100 Hz: 1e9/100 ns per sample
CTL = os.environ.get("FLAMECTL_BIN", os.path.join(harness.ROOT, "build", "bin", "flamectl"))


def flamectl(*args):
    """flamectl against NODE: (exit status, stdout), or None when it is not built."""
    if not os.access(CTL, os.X_OK):
        print("    flamectl not built: skipped")
        return None
    out = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % NODE.port] + list(args),
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def sel(service, **labels):
    pairs = ['service_name="%s"' % service] + ['%s="%s"' % kv for kv in labels.items()]
    return "%s{%s}" % (CPU, ",".join(pairs))


def test_small_endpoints():
    r = NODE.get("/ready")
    assert r.status == 200 and r.body == b"ready\n", r
    r = NODE.get("/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    for link in (b"/metrics", b"/ready", b"/pyroscope/label-names", b"/pyroscope/render"):
        assert link in r.body, link
    r = NODE.get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
    text = r.body.decode()
    for family in ("flamedb_http_requests_total{", "flamedb_storage_disk_bytes",
                   'flamedb_storage_sst_bytes{cf="blocks"}', 'flamedb_storage_sst_bytes{cf="nodes"}',
                   "flamedb_http_connections_open", "flamedb_ingest_profiles_total",
                   "flamedb_http_requests_in_flight", "flamedb_ready 1"):
        assert family in text, family
    # flamectl cluster status: a node of its own is a cluster of one; an
    # --output it does not have is bad usage (2), not a table printed anyway
    got = flamectl("cluster", "status", "--output", "json")
    if got is not None:
        assert got[0] == 0 and json.loads(got[1])["nodes"], got
        rc, text = flamectl("cluster", "status", "--output", "yaml")
        assert rc == 2 and "--output must be table or json, not 'yaml'" in text, (rc, text)
        # an option the command does not take is bad usage, not ignored (labels
        # printed its plain list for --output json, exit 0)
        for args, opt in ((["labels", "--output", "json"], "labels takes no --output"),
                          (["ready", "--limit", "5"], "ready takes no --limit"),
                          (["cluster", "repair", "--output", "json"], "cluster repair takes no --output"),
                          (["cluster", "status", "--node", "x"], "cluster status takes no --node"),
                          (["query", CPU + "{}", "--left-from", "now-2h"], "query takes no --left-from")):
            rc, text = flamectl(*args)
            assert rc == 2 and opt in text and "usage: flamectl" in text, (args, rc, text)
        # and so is one of query's that the output asked for does not use
        # (-o with the top table wrote nothing to the file, exit 0)
        for args, why in ((["-o", os.devnull], "the top table goes to stdout"),
                          (["--max-nodes", "5"], "--max-nodes truncates a flame graph"),
                          (["--output", "folded", "--limit", "3"], "need --output top, not --output folded"),
                          (["--output", "json", "--by", "total"], "need --output top, not --output json")):
            rc, text = flamectl("query", CPU + "{}", *args)
            assert rc == 2 and why in text, (args, rc, text)
        rc, text = flamectl("labels", "__profile_type__", "--match", "{}", "--from", "now-1h", "--until", "now")
        assert rc == 0, (rc, text)
        # push --from takes now-N as query --from does (it took unix seconds only)
        svc = unique("pushrel")
        f = tempfile.NamedTemporaryFile("w", suffix=".folded", delete=False)
        f.write("main;work 3\n")
        f.close()
        path = f.name
        rc, text = flamectl("push", path, "--name", svc + ".cpu", "--from", "now-2h", "--until", "now-2h")
        assert rc == 0, (rc, text)
        r = NODE.render(sel(svc), frm="now-3h", until="now-90m", fmt="folded")
        assert r.status == 200 and r.body.decode() == "main;work %d\n" % (3 * SCALE), r.body
        rc, text = flamectl("push", path, "--name", svc + ".cpu", "--from", "now-2x")
        assert rc == 2 and "not unix seconds, now or now-1h" in text, (rc, text)
        os.unlink(path)
        # a node that does not answer: the reason names what failed, not
        # another command ("cluster status failed" after cluster repair)
        out = subprocess.run([CTL, "--url", "http://127.0.0.1:1", "cluster", "repair"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "cluster status failed" not in out.stderr, out.stderr
        assert "reading the cluster's status (GET /cluster/status) failed: connect" in out.stderr, out.stderr
        # --version, as flamedb has (it was an unknown option)
        rc, text = flamectl("--version")
        node_version = subprocess.run([harness.FLAMEDB_BIN, "--version"], capture_output=True,
                                      text=True, timeout=30).stdout.split()[-1]
        assert rc == 0 and text == "flamectl %s\n" % node_version, (rc, text, node_version)


def metric(name):
    for line in NODE.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("no metric " + name)


def test_render_on_one_node_is_one_pool_job():
    svc = unique("onejob")
    r = NODE.ingest(folded({"main;work": 5}), name=svc + ".cpu", **{"from": NOW - 30},
                    until=NOW - 20)
    assert r.status == 200, r
    for fmt in ("json", "folded", "pprof"):
        before = metric("flamedb_scatter_pool_jobs_total")
        r = NODE.render(sel(svc), fmt=fmt)
        assert r.status == 200, r
        # select, merge, truncate and encode in one job: no bounce to the loop
        assert metric("flamedb_scatter_pool_jobs_total") - before == 1, fmt


def test_render_wakes_its_helper_other_queries_do_not():
    # the node's render helper (query-assist-threads 1) sleeps 0.25 ms after
    # its last part: a render starting wakes it ahead of its first part, a
    # label query (which has no parts) leaves it asleep
    svc = unique("wake")
    r = NODE.ingest(folded({"main;work": 5}), name=svc + ".cpu", **{"from": NOW - 30},
                    until=NOW - 20)
    assert r.status == 200, r
    time.sleep(0.3)
    before = metric("flamedb_query_assist_woken_total")
    for _ in range(3):
        r = NODE.get("/pyroscope/label-values?label=service_name")
        assert r.status == 200, r
        time.sleep(0.3)
    assert metric("flamedb_query_assist_woken_total") == before
    for _ in range(3):
        r = NODE.render(sel(svc))
        assert r.status == 200, r
        time.sleep(0.3)
    woken = metric("flamedb_query_assist_woken_total") - before
    assert woken == 3, woken


def pin_threads(pid, cpus):
    """Every thread of process pid onto cpus; returns their earlier sets."""
    was = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            was[int(tid)] = os.sched_getaffinity(int(tid))
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass
    return was


def test_render_beside_busy_cpu_stops_spinning():
    # the render's waits for its helper spin only while the CPU is theirs:
    # with every thread of the node and a CPU-bound process on one CPU, a
    # wait whose yield let that process run stops spinning and sleeps
    # (counted), and the answers stay exact
    svc = unique("busycpu")
    stacks = {"main;f%d;g%d" % (i, i % 7): 1 + i % 5 for i in range(300)}
    r = NODE.ingest(folded(stacks), name=svc + ".cpu", **{"from": NOW - 30}, until=NOW - 20)
    assert r.status == 200, r
    cpu = {min(os.sched_getaffinity(0))}
    was = pin_threads(NODE.proc.pid, cpu)
    hog = subprocess.Popen(["python3", "-c", "import os, time\nos.sched_setaffinity(0, %r)\n"
                            "end = time.time() + 60\nwhile time.time() < end: pass" % cpu])
    try:
        before, busy = metric("flamedb_query_assist_busy_total"), 0
        for _ in range(100):  # at most 100 renders
            r = NODE.render(sel(svc))
            assert r.status == 200, r
            assert json.loads(r.body)["flamebearer"]["numTicks"] == sum(stacks.values()) * SCALE
            busy = metric("flamedb_query_assist_busy_total") - before
            if busy > 0:
                break
        assert busy > 0, "no wait stopped spinning beside a CPU-bound process"
    finally:
        hog.kill()
        hog.wait()
        for tid, cpus in was.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


def server_timing(r):
    """{step: ms} of a response's Server-Timing header (None without one)."""
    h = r.headers.get("server-timing")
    if h is None:
        return None
    out = {}
    for part in h.split(","):
        name, dur = part.strip().split(";")
        assert dur.startswith("dur="), h
        out[name] = float(dur[4:])
    return out


def test_render_server_timing():
    # a render says where its time went on the node (Server-Timing): the
    # wait for a pool thread, the share (series read and merged), the
    # finish (cut, names, encoding) and the total; every format, and no
    # header on an error
    svc = unique("timing")
    r = NODE.ingest(folded({"main;work": 5, "main;idle": 2}), name=svc + ".cpu",
                    **{"from": NOW - 30}, until=NOW - 20)
    assert r.status == 200, r
    for fmt in ("json", "folded", "pprof", "svg"):
        r = NODE.render(sel(svc), fmt=fmt)
        assert r.status == 200, (fmt, r)
        t = server_timing(r)
        steps = ["queue", "share", "cut", "names", "encode", "total"]
        assert t is not None and list(t) == steps, (fmt, t)
        assert all(v >= 0 for v in t.values()), t
        # the steps follow one another within the total (each rounded down)
        assert sum(t[k] for k in steps[:-1]) <= t["total"] + 0.005, t
    # a query other than a flame graph: its finish as one step
    r = NODE.get("/pyroscope/label-values?label=service_name")
    assert r.status == 200 and list(server_timing(r)) == ["queue", "share", "finish", "total"], r
    r = NODE.render(sel(svc) + "{", fmt="json")
    assert r.status == 400 and server_timing(r) is None, r


def diff_nodes(doc):
    """{(level, name): (left total, left self, right total, right self)} of a
    double flamebearer, checking each row's x offsets as it goes."""
    fb = doc["flamebearer"]
    out = {}
    for d, row in enumerate(fb["levels"]):
        lx = rx = 0
        for i in range(0, len(row), 7):
            lx += row[i]
            rx += row[i + 3]
            assert row[i] >= 0 and row[i + 3] >= 0, row
            name = fb["names"][row[i + 6]]
            out[(d, name)] = (row[i + 1], row[i + 2], row[i + 4], row[i + 5])
            lx += row[i + 1]
            rx += row[i + 4]
    return out


def test_render_diff():
    svc = unique("diff")
    for version, stacks in (("v1", {"main;a": 10, "main;b": 20}),
                            ("v2", {"main;a": 30, "main;c": 5})):
        r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s}" % (svc, version),
                        **{"from": NOW - 30}, until=NOW - 20)
        assert r.status == 200, r
    params = {"leftQuery": sel(svc, version="v1"), "rightQuery": sel(svc, version="v2"),
              "leftFrom": "now-1h", "rightFrom": "now-1h"}
    r = NODE.query("/pyroscope/render-diff", **params)
    assert r.status == 200 and r.headers["content-type"].startswith("application/json"), r
    doc = r.json()
    assert doc["metadata"]["format"] == "double"
    assert doc["leftTicks"] == 30 * SCALE and doc["rightTicks"] == 35 * SCALE, doc
    assert doc["flamebearer"]["numTicks"] == 65 * SCALE
    n = diff_nodes(doc)
    assert n[(0, "total")][0] == 30 * SCALE and n[(0, "total")][2] == 35 * SCALE
    assert n[(2, "a")] == (10 * SCALE, 10 * SCALE, 30 * SCALE, 30 * SCALE), n
    assert n[(2, "b")] == (20 * SCALE, 20 * SCALE, 0, 0), n
    assert n[(2, "c")] == (0, 0, 5 * SCALE, 5 * SCALE), n
    # refusals with reasons
    r = NODE.query("/pyroscope/render-diff", **dict(params, rightQuery="memory:alloc_space:bytes:space:bytes{}"))
    assert r.status == 400 and "same profile type" in r.json()["message"], r
    r = NODE.query("/pyroscope/render-diff", **dict(params, format="pprof"))
    assert r.status == 400 and "render?format=pprof" in r.json()["message"], r
    r = NODE.query("/pyroscope/render-diff", leftQuery=sel(svc))
    assert r.status == 400 and "rightQuery" in r.json()["message"], r
    r = NODE.query("/pyroscope/render-diff", **dict(params, leftFrom="yesterday-ish"))
    assert r.status == 400 and "left side" in r.json()["message"], r


def test_label_shares():
    svc = unique("shares")
    for env, stacks in (("a", {"main;x": 5, "main;y": 3}), ("a", {"main;x": 2}),
                        ("b", {"main;x": 4}), (None, {"main;z": 6})):
        labels = "{env=%s}" % env if env else ""
        r = NODE.ingest(folded(stacks), name=svc + ".cpu" + labels, **{"from": NOW - 30},
                        until=NOW - 20)
        assert r.status == 200, r
    r = NODE.query("/api/label-shares", query=sel(svc), label="env")
    assert r.status == 200 and r.headers["content-type"].startswith("application/json"), r
    doc = r.json()
    assert doc["label"] == "env" and doc["total"] == 20 * SCALE, doc
    got = [(v["value"], v["total"]) for v in doc["values"]]
    assert got == [("a", 10 * SCALE), ("", 6 * SCALE), ("b", 4 * SCALE)], got  # largest first
    assert abs(doc["values"][0]["share"] - 0.5) < 1e-6
    assert doc["total"] == NODE.total(sel(svc))  # the render's numTicks
    # each value's timeline is on the render's grid; per bucket they add up to it
    tl = NODE.render(sel(svc)).json()["timeline"]
    sums = [0] * len(tl["samples"])
    for v in doc["values"]:
        vt = v["timeline"]
        assert (vt["startTime"], vt["durationDelta"]) == (tl["startTime"], tl["durationDelta"])
        assert len(vt["samples"]) == len(sums) and sum(vt["samples"]) == v["total"], v
        sums = [a + b for a, b in zip(sums, vt["samples"])]
    assert sums == tl["samples"], (sums, tl)
    # flamectl shares: the same values as a table (units as query --output top prints them)
    got = flamectl("shares", sel(svc), "env")
    if got is not None:
        assert got == (0, "       TOTAL   SHARE  VALUE\n"
                          "       0.10s  50.00%  a\n"
                          "       0.06s  30.00%  (none)\n"
                          "       0.04s  20.00%  b\n"
                          "total 0.20s in 3 values of env\n"), got
        rc, text = flamectl("shares", sel(svc), "env", "--output", "json")
        assert rc == 0 and json.loads(text) == doc, text
        rc, text = flamectl("shares", '{service_name="%s"}' % svc, "env")
        assert rc == 1 and "profile type" in text, text  # the node's reason
        # one value is "1 value", not "1 values"
        rc, text = flamectl("shares", sel(svc, env="b"), "env")
        assert rc == 0 and text.endswith("total 0.04s in 1 value of env\n"), text
    r = NODE.query("/api/label-shares", query=sel(svc))
    assert r.status == 400 and "label" in r.json()["message"], r
    r = NODE.query("/api/label-shares", query='{service_name="%s"}' % svc, label="env")
    assert r.status == 400 and "profile type" in r.json()["message"], r


def test_render_group_by():
    svc = unique("groupby")
    t = (NOW - 600) // 60 * 60  # on the 10 s grid; buckets of 10 s below
    for env, at, stacks in (("a", t, {"main;x": 5}), ("a", t + 20, {"main;y": 2}),
                            ("b", t + 20, {"main;x": 3}), (None, t + 40, {"main;z": 4})):
        labels = "{env=%s}" % env if env else ""
        r = NODE.ingest(folded(stacks), name=svc + ".cpu" + labels, **{"from": at},
                        until=at + 10)
        assert r.status == 200, r
    frm, until = t - 100, t + 200  # 300 s: 30 buckets of 10 s from t - 100
    r = NODE.render(sel(svc), frm=frm, until=until, groupBy="env")
    assert r.status == 200 and "x-flamedb-partial" not in r.headers, r
    doc = r.json()
    assert doc["flamebearer"]["numTicks"] == 14 * SCALE and "partial" not in doc, doc

    def series(*points):
        out = [0] * 30
        for bucket, n in points:
            out[bucket] += n * SCALE
        return {"startTime": frm, "samples": out, "durationDelta": 10}

    want = {"": series((14, 4)), "a": series((10, 5), (12, 2)), "b": series((12, 3))}
    assert doc["groups"] == want, doc["groups"]
    assert doc["timeline"] == series((10, 5), (12, 5), (14, 4)), doc["timeline"]
    # the same render without groupBy is the same answer without the member
    plain = NODE.render(sel(svc), frm=frm, until=until).json()
    del doc["groups"]
    assert doc == plain
    # a label no series has: every series under ""
    r = NODE.render(sel(svc), frm=frm, until=until, groupBy="no_such")
    assert r.json()["groups"] == {"": plain["timeline"]}, r
    got = flamectl("query", sel(svc), "--from", str(frm), "--until", str(until), "--output",
                   "json", "--group-by", "env")
    if got is not None:
        assert got[0] == 0 and json.loads(got[1])["groups"] == want, got
        assert flamectl("query", sel(svc), "--group-by", "env")[0] == 2  # json only
    # an empty selection: no groups
    r = NODE.render(sel(unique("none")), frm=frm, until=until, groupBy="env")
    assert r.status == 200 and r.json()["groups"] == {}, r
    for fmt in ("folded", "pprof", "svg"):
        r = NODE.render(sel(svc), frm=frm, until=until, fmt=fmt, groupBy="env")
        assert r.status == 400 and "groupBy" in r.json()["message"], (fmt, r)
    r = NODE.render(sel(svc), frm=frm, until=until, groupBy="x" * 2000)
    assert r.status == 400 and "groupBy" in r.json()["message"], r
    r = NODE.render('%s{span_id="00000000000000ab"}' % CPU, groupBy="env")
    assert r.status == 400 and "groupBy" in r.json()["message"], r


def test_render_diff_svg_and_folded():
    svc = unique("diffsvg")
    for version, stacks in (("v1", {"main;a": 10, "main;b": 20}),
                            ("v2", {"main;a": 30, "main;c": 5})):
        r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s}" % (svc, version),
                        **{"from": NOW - 30}, until=NOW - 20)
        assert r.status == 200, r
    params = {"leftQuery": sel(svc, version="v1"), "rightQuery": sel(svc, version="v2"),
              "leftFrom": "now-1h", "rightFrom": "now-1h"}
    r = NODE.query("/pyroscope/render-diff", **dict(params, format="folded"))
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
    assert r.body.decode() == "main;a %d %d\nmain;b %d 0\nmain;c 0 %d\n" % (
        10 * SCALE, 30 * SCALE, 20 * SCALE, 5 * SCALE), r.body
    r = NODE.query("/pyroscope/render-diff", **dict(params, format="svg"))
    assert r.status == 200 and r.headers["content-type"] == "image/svg+xml", r
    root = ElementTree.fromstring(r.body)  # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    frames = {}
    for g in root.iter(ns + "g"):
        title = g.find(ns + "title").text
        frames[title.split("\n")[0]] = (title, g.find(ns + "rect"))
    assert sorted(frames) == ["a", "b", "c", "main", "total"], frames.keys()
    title, rect = frames["a"]  # 33.33% -> 85.71%: grew
    assert "left: %d nanoseconds" % (10 * SCALE) in title, title
    assert "right: %d nanoseconds" % (30 * SCALE) in title and "+52.38 pp" in title, title
    fill = rect.get("fill")
    assert int(fill[1:3], 16) > int(fill[5:7], 16), fill  # red
    title, rect = frames["b"]  # 66.67% -> gone: blue, no width on the right
    assert "(gone: left only)" in title and float(rect.get("width")) == 0, title
    fill = rect.get("fill")
    assert int(fill[5:7], 16) > int(fill[1:3], 16), fill
    title, rect = frames["c"]
    assert "(new: right only)" in title and rect.get("fill") == "#d040c0", title
    # widths are the right side's: c is 5 of 35
    assert abs(float(rect.get("width")) - 1180 * 5 / 35) < 0.02, rect.get("width")
    r = NODE.query("/pyroscope/render-diff", **dict(params, format="speedscope"))
    assert r.status == 200 and r.headers["content-type"] == "application/json", r
    doc = r.json()
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert sorted(names) == ["a", "b", "c", "main"], names  # one table for both
    left, right = doc["profiles"]
    assert left["name"] == "left: " + params["leftQuery"], left["name"]
    assert right["name"] == "right: " + params["rightQuery"], right["name"]
    for prof, want in ((left, {"main;a": 10, "main;b": 20}), (right, {"main;a": 30, "main;c": 5})):
        got = {";".join(names[i] for i in s): w for s, w in zip(prof["samples"], prof["weights"])}
        assert got == {k: v * SCALE for k, v in want.items()}, got
        assert prof["endValue"] == sum(want.values()) * SCALE and prof["unit"] == "nanoseconds"


def test_profiles_list():
    svc = unique("plist")
    pushes = ((NOW - 300, "", {"main;a": 3}), (NOW - 200, "{env=x}", {"main;b": 5}),
              (NOW - 100, "", {"main;a": 2, "main;c": 1}))
    for t, labels, stacks in pushes:
        for _ in range(3 if t == NOW - 200 else 1):  # a retried push lists once
            r = NODE.ingest(folded(stacks), name=svc + ".cpu" + labels, **{"from": t},
                            until=t + 10)
            assert r.status == 200, r

    def listing(**extra):
        r = NODE.query("/api/profiles", query=sel(svc), **{"from": "now-1h"}, until="now",
                       **extra)
        assert r.status == 200 and r.headers["content-type"].startswith("application/json"), r
        return r.json()

    doc = listing()
    got = [(p["time"], p["total"], p["labels"].get("env")) for p in doc["profiles"]]
    assert got == [(NOW - 100, 3 * SCALE, None), (NOW - 200, 5 * SCALE, "x"),
                   (NOW - 300, 3 * SCALE, None)], got  # newest first
    assert doc["truncated"] is False and "partial" not in doc, doc
    ids = [p["id"] for p in doc["profiles"]]
    assert len(set(ids)) == 3 and all(len(i) == 80 and int(i, 16) >= 0 for i in ids), ids
    # the id opens the profile: token, series id, time, then the profile id
    assert all(p["id"].endswith(p["profile_id"]) and len(p["profile_id"]) == 32
               for p in doc["profiles"]), doc
    for p in doc["profiles"]:
        assert p["labels"]["service_name"] == svc and p["labels"]["__profile_type__"] == CPU, p
    assert listing() == doc  # the same ids every time
    r = NODE.ingest(folded({"main;b": 5}), name=svc + ".cpu{env=x}", **{"from": NOW - 200},
                    until=NOW - 190)
    assert r.status == 200, r
    assert listing() == doc  # one more retry: still listed once
    two = listing(limit="2")
    assert two["profiles"] == doc["profiles"][:2] and two["truncated"] is True, two
    r = NODE.query("/api/profiles", query='{service_name="%s"}' % svc)
    assert r.status == 400 and "profile type" in r.json()["message"], r
    for bad in ("0", "10001", "x"):
        r = NODE.query("/api/profiles", query=sel(svc), limit=bad)
        assert r.status == 400 and "limit" in r.json()["message"], r


def test_route_errors_are_json():
    r = NODE.get("/no/such/route")
    assert r.status == 404 and r.json()["code"] == "not_found", r
    assert "/no/such/route" in r.json()["message"]
    r = NODE.get("/ingest")
    assert r.status == 405 and r.headers.get("allow") == "POST", r
    assert r.json()["code"] == "method_not_allowed"
    r = NODE.request("POST", "/pyroscope/render", b"")
    assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", r


def test_folded_render_json_folded_pprof():
    svc = unique("fold")
    stacks = {"main;work;parse": 70, "main;work": 20, "main;idle": 7, "gc;sweep": 3}
    r = NODE.ingest(folded(stacks), name=svc + ".cpu{env=it,region=eu}", **{"from": NOW - 30},
                    until=NOW - 20)
    assert r.status == 200 and r.body == b"", r
    want = 100 * SCALE
    r = NODE.render(sel(svc))
    assert r.status == 200, r
    fb = r.json()["flamebearer"]
    assert fb["numTicks"] == want, fb["numTicks"]
    assert fb["names"][0] == "total"
    assert "parse" in fb["names"] and fb["maxSelf"] == 70 * SCALE
    r = NODE.render(sel(svc), fmt="folded")
    assert r.status == 200, r
    assert folded_sum(r.body.decode()) == want
    assert "main;work;parse %d" % (70 * SCALE) in r.body.decode()
    r = NODE.render(sel(svc), fmt="pprof")
    assert r.status == 200 and r.body[:2] == b"\x1f\x8b", r
    assert sum(pprof_totals(r.body).values()) == want
    # maxNodes truncation changes the shape, never the total
    r = NODE.render(sel(svc), maxNodes=2)
    assert r.status == 200 and r.json()["flamebearer"]["numTicks"] == want, r
    # selectors: a label the series has, and one it lacks
    assert NODE.total(sel(svc, env="it")) == want
    assert NODE.total(sel(svc, env="other")) == 0


def test_pprof_raw_gzip_multipart():
    svc = unique("pp")
    p = Pprof([("samples", "count"), ("cpu", "nanoseconds")])
    p.add(["main", "a", "b"], [3, 30000000]).add(["main", "c"], [2, 20000000])
    cnt = "process_cpu:samples:count:cpu:nanoseconds{service_name=\"%s\"}" % svc
    cpu = CPU + "{service_name=\"%s\"}" % svc
    name = svc + "{kind=raw}"
    # raw, gzipped (different from/until so each is a distinct profile), multipart
    assert NODE.ingest(p.encode(), name=name, format="pprof", **{"from": NOW - 100}).status == 200
    assert NODE.ingest(p.encode_gz(), name=name, format="pprof", **{"from": NOW - 90}).status == 200
    body, ctype = multipart([("profile", "profile", "application/octet-stream", p.encode_gz())])
    r = NODE.ingest(body, content_type=ctype, name=name, **{"from": NOW - 80})
    assert r.status == 200, r
    assert NODE.total(cnt) == 3 * 5
    assert NODE.total(cpu) == 3 * 50000000
    types = NODE.label_values("__profile_type__", match='{service_name="%s"}' % svc)
    assert "process_cpu:samples:count:cpu:nanoseconds" in types and CPU in types, types


def test_sample_labels_split_series_span_ids_do_not():
    svc = unique("lbl")
    p = Pprof([("cpu", "nanoseconds")])
    p.add(["main", "h1"], [100], {"handler": "a", "span_id": "00000000000000aa"})
    p.add(["main", "h2"], [40], {"handler": "b", "span_id": "00000000000000bb"})
    p.add(["main", "h3"], [1], {})
    assert NODE.ingest(p.encode_gz(), name=svc, format="pprof", **{"from": NOW - 50}).status == 200
    assert NODE.total(sel(svc)) == 141
    assert NODE.total(sel(svc, handler="a")) == 100
    assert NODE.total(sel(svc, handler="b")) == 40
    names = NODE.get("/pyroscope/label-names").json()
    assert "handler" in names and "span_id" not in names, names
    assert NODE.label_values("handler", match='{service_name="%s"}' % svc) == ["a", "b"]


def test_label_names_and_values():
    svc = unique("lv")
    r = NODE.ingest(folded({"x;y": 1}), name=svc + ".cpu{team=core,version=v1}", **{"from": NOW - 40})
    assert r.status == 200, r
    names = NODE.get("/pyroscope/label-names").json()
    for n in ("service_name", "team", "version", "__profile_type__"):
        assert n in names, (n, names)
    assert svc in NODE.label_values("service_name")
    assert NODE.label_values("version", match='{service_name="%s"}' % svc) == ["v1"]
    r = NODE.query("/pyroscope/label-values")
    assert r.status == 400 and r.json()["code"] == "invalid_parameter", r


def test_time_ranges():
    svc = unique("tr")
    base = (NOW // 10) * 10 - 1800
    a = NODE.ingest(folded({"old;a": 5}), name=svc + ".cpu", **{"from": base - 1200})
    b = NODE.ingest(folded({"new;b": 7}), name=svc + ".cpu", **{"from": base})
    assert a.status == 200 and b.status == 200, (a, b)
    q = sel(svc)
    assert NODE.total(q, base - 1300, base - 100) == 5 * SCALE
    assert NODE.total(q, base - 10, base + 10) == 7 * SCALE
    assert NODE.total(q, base - 3600, NOW) == 12 * SCALE
    assert NODE.total(q, str((base - 3600) * 1000), str(NOW * 1000)) == 12 * SCALE  # ms
    assert NODE.total(q, base + 10, NOW) == 0
    r = NODE.render(q, frm="yesterday-ish")
    assert r.status == 400 and "from" in r.json()["message"], r


def test_tenants_are_sealed():
    svc = unique("ten")
    r = NODE.ingest(folded({"t;x": 9}), tenant="team-a", name=svc + ".cpu", **{"from": NOW - 20})
    assert r.status == 200, r
    assert NODE.total(sel(svc), tenant="team-a") == 9 * SCALE
    assert NODE.total(sel(svc)) == 0  # anonymous sees nothing of team-a
    assert NODE.total(sel(svc), tenant="team-b") == 0
    assert svc not in NODE.label_values("service_name")
    for bad in ("..", "a/b", "x" * 151, "sp ace"):
        r = NODE.ingest(folded({"a": 1}), tenant=bad, name=svc + ".cpu")
        assert r.status == 400 and "X-Scope-OrgID" in r.json()["message"], (bad, r)
        r = NODE.render(sel(svc), tenant=bad)
        assert r.status == 400, (bad, r)


def test_retry_counts_once():
    svc = unique("idem")
    body = folded({"r;s": 11})
    for _ in range(3):
        r = NODE.ingest(body, name=svc + ".cpu", **{"from": NOW - 60}, until=NOW - 50)
        assert r.status == 200, r
    assert NODE.total(sel(svc)) == 11 * SCALE
    assert NODE.metric("flamedb_ingest_series_duplicate_total") >= 2


def test_url_encoding_of_parameters():
    svc = unique("enc")
    # spaces as '+' and '%20', braces and '=' percent-encoded
    path = "/ingest?name=%s.cpu%%7Bnote%%3Da+b%%7D&from=%d" % (svc, NOW - 15)
    r = NODE.request("POST", path, folded({"u;v": 2}))
    assert r.status == 200, r
    assert NODE.label_values("note", match='{service_name="%s"}' % svc) == ["a b"]
    r = NODE.request("POST", "/ingest?name=%zz", b"a 1\n")
    assert r.status == 400 and r.json()["code"] == "invalid_parameter", r


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        NODE.cleanup()
