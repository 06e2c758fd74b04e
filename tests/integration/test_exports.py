#!/usr/bin/env python3
"""test_exports.py — format=svg and format=speedscope of /pyroscope/render
against real nodes: folded stacks (names with <, >, &, quotes) pushed, both
exports read back independently (xml.etree for the SVG, json for speedscope)
with exact totals against the JSON and folded answers; maxNodes `other`
frames; flamectl --output svg|speedscope; and on a 3-node cluster the same
bytes from every node, then partial answers flagged in both formats."""
import json
import os
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import harness
from cluster import FAST_FORMATION, Cluster
from harness import CPU, Node, run_tests, unique
from profiles import folded

NOW = int(time.time())
SCALE = 10**7  # folded .cpu at the default 100 Hz: 1e9/100 ns per sample
SVG = "{http://www.w3.org/2000/svg}"
STACKS = {"main;work;parse": 70, "main;work": 20, "main;idle": 7, "gc;sweep": 3,
          "main;x<y>&\"q'": 5}
NODE = Node(name="exports").start()


def sel(service):
    return '%s{service_name="%s"}' % (CPU, service)


def push(node, svc, stacks=STACKS, at=NOW - 30):
    r = node.ingest(folded(stacks), name=svc + ".cpu{env=it}", **{"from": at}, until=at + 10)
    assert r.status == 200, r


def folded_lines(node, query):
    r = node.render(query, fmt="folded")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        stack, n = line.rsplit(" ", 1)
        out[stack] = int(n)
    return out


def svg_frames(body):
    """[(title, x, width, y, class)] of every frame <g>, in document order."""
    root = ET.fromstring(body)  # raises on anything not well-formed
    assert root.tag == SVG + "svg" and root.get("width") == "1200", root.attrib
    frames = []
    for g in root.iter(SVG + "g"):
        rect = g.find(SVG + "rect")
        frames.append((g.find(SVG + "title").text, float(rect.get("x")),
                       float(rect.get("width")), int(rect.get("y")), g.get("class")))
    return frames


def test_speedscope_totals_and_stacks():
    svc = unique("ss")
    push(NODE, svc)
    ticks = NODE.total(sel(svc))
    assert ticks == 105 * SCALE, ticks
    r = NODE.render(sel(svc), fmt="speedscope")
    assert r.status == 200 and r.headers["content-type"] == "application/json", r
    doc = json.loads(r.body)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["exporter"] == "flamedb" and len(doc["profiles"]) == 1
    p = doc["profiles"][0]
    frames = [f["name"] for f in doc["shared"]["frames"]]
    assert p["type"] == "sampled" and p["unit"] == "nanoseconds", p
    assert sum(p["weights"]) == ticks and p["endValue"] == ticks and p["startValue"] == 0
    got = {";".join(frames[i] for i in s): w for s, w in zip(p["samples"], p["weights"])}
    assert got == folded_lines(NODE, sel(svc)), got
    assert got["main;x<y>&\"q'"] == 5 * SCALE


def test_svg_frames_titles_and_escaping():
    svc = unique("svg")
    push(NODE, svc)
    r = NODE.render(sel(svc), fmt="svg")
    assert r.status == 200 and r.headers["content-type"] == "image/svg+xml", r
    assert b"<script" not in r.body and b"href" not in r.body
    assert b"x&lt;y&gt;&amp;&quot;q&apos;" in r.body
    frames = svg_frames(r.body)
    # one frame per tree node: the root and every distinct stack prefix
    prefixes = {";".join(s.split(";")[:i + 1]) for s in STACKS for i in range(s.count(";") + 1)}
    assert len(frames) == 1 + len(prefixes), (len(frames), prefixes)
    title, x, w, y, _ = frames[0]
    assert title.startswith("total\n%d nanoseconds (1.05 s), 100.00%%" % (105 * SCALE)), title
    assert x == 10 and w == 1180, (x, w)
    names = {f[0].split("\n")[0]: f for f in frames}
    t = names["main;x<y>&\"q'".split(";")[1]][0]
    assert t.endswith("\n%d nanoseconds (50.00 ms), 4.76%%" % (5 * SCALE)), t
    work = names["work"]
    assert "%d nanoseconds" % (90 * SCALE) in work[0] and "85.71%" in work[0], work
    parse = names["parse"]
    assert parse[3] == work[3] + 16 and work[1] <= parse[1]
    assert parse[1] + parse[2] <= work[1] + work[2] + 1e-9


def contrast(a, b):
    """WCAG contrast ratio of two "#rrggbb" colours."""
    def lum(c):
        v = [int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        v = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in v]
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def label_contrasts(body):
    """[(label, contrast of its text on its frame)] of every labelled frame."""
    out = []
    for g in ET.fromstring(body).iter(SVG + "g"):
        text = g.find(SVG + "text")
        if text is not None:
            out.append((text.text, contrast(g.find(SVG + "rect").get("fill"), text.get("fill", "#000000"))))
    return out


def test_svg_labels_readable():
    """Every frame label reads at 4.5:1 on its frame: the diff's strongest
    blue (black on it was 2.9:1) and the package palette's darkest reds."""
    left, right = unique("svgl"), unique("svgr")
    push(NODE, left, {"main;shrinks": 90, "main;grows": 10})
    push(NODE, right, {"main;shrinks": 10, "main;grows": 90})
    r = NODE.query("/pyroscope/render-diff", leftQuery=sel(left), rightQuery=sel(right), format="svg",
                   leftFrom="now-1h", rightFrom="now-1h")
    assert r.status == 200, r
    got = label_contrasts(r.body)
    assert {"shrinks", "grows"} <= {t for t, _ in got}, got
    bad = [(t, round(c, 2)) for t, c in got if c < 4.5]
    assert not bad, ("diff labels below 4.5:1", bad)
    svc = unique("svgpal")  # one deep stack of many packages: many colours, each frame labelled
    push(NODE, svc, {";".join(["main"] + ["pkg%d.work" % i for i in range(60)]): 10})
    r = NODE.render(sel(svc), fmt="svg")
    assert r.status == 200, r
    got = label_contrasts(r.body)
    assert len(got) > 60, len(got)
    bad = [(t, round(c, 2)) for t, c in got if c < 4.5]
    assert not bad, ("labels below 4.5:1", bad)


def test_svg_empty_says_so():
    """An SVG of a selection without samples says so under its title, as the
    web UI does, instead of a lone grey 'total' bar."""
    svc = unique("svgnone")
    r = NODE.render(sel(svc), fmt="svg")
    assert r.status == 200, r
    head = [t.text or "" for t in ET.fromstring(r.body).iter(SVG + "text")][:2]
    assert head[1] == "total 0 nanoseconds: no samples match this selection in this range", head
    r = NODE.query("/pyroscope/render-diff", leftQuery=sel(svc), rightQuery=sel(svc + "x"), format="svg")
    assert r.status == 200, r
    assert b"no samples match this selection in this range" in r.body, r.body[:600]
    push(NODE, svc)
    r = NODE.render(sel(svc), fmt="svg")
    assert r.status == 200 and b"no samples match" not in r.body, r.body[:600]


def test_svg_max_nodes_other():
    svc = unique("svgo")
    push(NODE, svc)
    r = NODE.render(sel(svc), fmt="svg", maxNodes="4")
    assert r.status == 200, r
    frames = svg_frames(r.body)
    assert len(frames) <= 4, len(frames)
    others = [f for f in frames if f[4] == "other"]
    assert others and all(f[0].startswith("other\n") for f in others), frames
    assert frames[0][2] == 1180
    # speedscope of the same truncation still adds up
    r = NODE.render(sel(svc), fmt="speedscope", maxNodes="4")
    p = json.loads(r.body)["profiles"][0]
    assert sum(p["weights"]) == 105 * SCALE


def test_one_pool_job_each():
    svc = unique("job")
    push(NODE, svc)
    for fmt in ("svg", "speedscope"):
        before = NODE.metric("flamedb_scatter_pool_jobs_total")
        assert NODE.render(sel(svc), fmt=fmt).status == 200
        # through the same gather as json/folded/pprof: one job, no bounce
        assert NODE.metric("flamedb_scatter_pool_jobs_total") - before == 1, fmt


def test_bad_format_names_the_choices():
    r = NODE.render(CPU + "{}", fmt="png")
    assert r.status == 400 and "svg or speedscope" in r.json()["message"], r


def test_flamectl_exports():
    ctl = os.environ.get("FLAMECTL_BIN") or os.path.join(
        os.path.dirname(harness.FLAMEDB_BIN), "flamectl")
    if not os.access(ctl, os.X_OK):
        print("    (flamectl not built: skipped)")
        return
    svc = unique("ctl")
    push(NODE, svc)
    with tempfile.TemporaryDirectory() as d:
        for fmt in ("svg", "speedscope"):
            path = os.path.join(d, "out." + fmt)
            p = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "query",
                                sel(svc), "--output", fmt, "-o", path],
                               capture_output=True, timeout=30)
            assert p.returncode == 0, p.stderr
            body = open(path, "rb").read()
            assert body == NODE.render(sel(svc), fmt=fmt).body, fmt
        p = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % NODE.port, "query", sel(svc),
                            "--output", "svg"], capture_output=True, timeout=30)
        assert p.returncode == 0 and p.stdout.startswith(b"<?xml"), p.stderr


def test_three_nodes_same_bytes():
    svc = unique("c3")
    stacks = [{"main;a;b": 3, "main;c": 1}, {"main;a": 2, "gc": 4}, {"main;a;b": 5, "x&y": 1}]
    with Cluster(3, rf=1, args=["--query-timeout", "3000ms"] + FAST_FORMATION) as c:
        for i, s in enumerate(stacks):
            push(c.nodes[i], svc, s, NOW - 60 + 10 * i)
        want = 16 * SCALE
        for fmt in ("svg", "speedscope"):
            bodies = []
            for n in c.nodes:
                r = n.render(sel(svc), fmt=fmt)
                assert r.status == 200 and r.headers.get("x-flamedb-partial") is None, r
                bodies.append(r.body)
            assert bodies[0] == bodies[1] == bodies[2], fmt
        p = json.loads(bodies[0])["profiles"][0]
        assert sum(p["weights"]) == want, sum(p["weights"])
        # rf 1 and one node gone: flagged partial in the header and in the body (the
        # whole ring is asked, so the dead node's ranges are missing whatever the tokens)
        c.kill(2)
        everything = CPU + "{}"
        r = c.nodes[0].render(everything, fmt="speedscope")
        assert r.status == 200 and r.headers.get("x-flamedb-partial"), r
        doc = json.loads(r.body)
        assert doc["partial"] is True and doc["missing"], doc.keys()
        assert sum(doc["profiles"][0]["weights"]) <= want
        r = c.nodes[0].render(everything, fmt="svg")
        assert r.status == 200 and r.headers.get("x-flamedb-partial"), r
        assert b"(partial: some token ranges did not answer)" in r.body
        svg_frames(r.body)


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        NODE.cleanup()
