"""test_ui.py — the web UI (issue #8, docs/ui.md) in a real headless browser.

Starts a node, pushes known profiles, opens the page that GET / serves in
Debian's chromium (driven through chromedriver, webdriver.py) with the query in
the URL, and checks what the page drew against values computed here from what
was pushed: the flame graph's frames and percentages, the top table, zoom,
search, the sandwich, the timeline drag, the diff view (colours, the
regression report with its significance marks, and the report's search
beyond the rows it loaded, answered from the report the node kept), the span view, the tag
explorer, the profile list, errors and themes. The page exposes what its
canvases drew through window.flamedbUI.snapshot() (node/ui/app.js).

Screenshots go to $FLAMEDB_BUILD_DIR/test-artifacts/ui/ (build/ by default).
Skips, saying why, when chromium or chromium-driver is not installed.
"""
import gzip
import json
import os
import re
import time
import urllib.parse

from cluster import FAST_FORMATION, Cluster
from harness import CPU, ROOT, Node, Skip, run_tests, unique
from profiles import Pprof, folded
from webdriver import shared_tab

ART = os.path.normpath(os.path.join(os.environ.get("FLAMEDB_BUILD_DIR", os.path.join(ROOT, "build")),
                   "test-artifacts", "ui"))
NOW = int(time.time())
SVC = unique("uiapp")
SPAN_SVC = SVC + "_spans"
NS = 10_000_000  # one folded sample at the default 100 Hz
CART = "github.com/acme/shop/cart.(*Cart).Add"
# One push every 10 s window for WINDOWS windows, per version: the report
# needs at least 5 windows with data on each side to test a change.
WINDOWS = 12
V1 = {"main;serve;db": 60, "main;serve;json": 20, "main;gc": 20}
V2 = {"main;serve;db": 30, "main;serve;json": 50, "main;gc": 20, "main;%s;runtime.mallocgc" % CART: 20}
SPAN = "00000000deadbeef"
SPAN_ROWS = [(["main", "serve", "db"], 700, SPAN), (["main", "serve", "json"], 300, SPAN),
             (["main", "gc"], 5000, "00000000000000aa")]

NODE = None
PUSHED = {"v1": {}, "v2": {}}


def setup():
    global NODE
    NODE = Node(name="ui").start()
    for version, stacks, region in (("v1", V1, "eu"), ("v2", V2, "us")):
        for i in range(WINDOWS):
            r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s,region=%s}" % (SVC, version, region),
                            **{"from": NOW - 10 * WINDOWS - 30 + 10 * i})
            assert r.status == 200, r
            for k, v in stacks.items():
                PUSHED[version][k] = PUSHED[version].get(k, 0) + v * NS
    p = Pprof([("cpu", "nanoseconds")])
    for stack, v, span in SPAN_ROWS:
        p.add(stack, [v], {"span_id": span})
    r = NODE.ingest(p.encode_gz(), name=SPAN_SVC, format="pprof", **{"from": NOW - 60})
    assert r.status == 200, r


setup()


def sel(service=SVC, **labels):
    pairs = ['service_name="%s"' % service] + ['%s="%s"' % kv for kv in labels.items()]
    return "%s{%s}" % (CPU, ",".join(pairs))


def page(**params):
    params.setdefault("from", "now-1h")
    return "http://127.0.0.1:%d/?%s" % (NODE.port, urllib.parse.urlencode(params))


def shares(stacks_list):
    """Expected total and self share (percent) of each function over the stacks."""
    total, tot, slf = 0, {}, {}
    for stacks in stacks_list:
        for stack, v in stacks.items():
            total += v
            frames = stack.split(";")
            for f in set(frames):
                tot[f] = tot.get(f, 0) + v
            slf[frames[-1]] = slf.get(frames[-1], 0) + v
    pct = lambda d: {k: 100.0 * x / total for k, x in d.items()}  # noqa: E731
    return total, pct(tot), pct(slf)


def snap(b):
    return b.js("return window.flamedbUI.snapshot()")


def open_page(b, url, what):
    b.get(url)
    b.wait_js("return document.body.dataset.ready === 'true' && window.flamedbUI", what=what)
    s = snap(b)
    assert s["error"] is None, s["error"]
    return s


def shot(b, name):
    return b.screenshot(os.path.join(ART, name + ".png"))


def need_browser():
    """A new tab of the browser the file's tests share (starting chromium is
    most of a short test's time); raises Skip, saying why, without chromium."""
    return shared_tab(1280, 800)


def no_exponents(b, where):
    """Numbers a reader has to decode (2.8e-5 cores) are not shown."""
    text = b.js("return document.querySelector(%s).innerText" % json.dumps(where))
    odd = re.findall(r"\d(?:\.\d+)?e[-+]\d+", text)
    assert not odd, ("numbers in exponent form in %s" % where, odd, text[:400])


def contrast(b, selector):
    """WCAG contrast ratio of an element's text colour on its background."""
    return b.js("""
      const e = document.querySelector(%s), cs = getComputedStyle(e);
      const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
      const lum = (c) => { const [r, g, b] = rgb(c).map((x) => { x /= 255;
        return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const [hi, lo] = [lum(cs.color), lum(cs.backgroundColor)].sort((a, b) => b - a);
      return (hi + 0.05) / (lo + 0.05);""" % json.dumps(selector))


def bar_contrast(b, selector):
    """[the strongest colour a bar cell draws against what is behind it,
    its text on the faintest one (the fill behind it)], as WCAG contrast ratios: each gradient
    colour of the cell's background is composited over the first opaque
    background of its ancestors."""
    return b.js("""
      const e = document.querySelector(%s);
      const rgba = (c) => { const v = c.match(/[\\d.]+/g).map(Number); return v.length > 3 ? v : v.concat([1]); };
      let p = e.parentElement, under = [255, 255, 255, 1];
      for (; p; p = p.parentElement) {
        const c = rgba(getComputedStyle(p).backgroundColor);
        if (c[3] > 0) { under = c; break; }
      }
      const over = (c) => c.slice(0, 3).map((x, i) => x * c[3] + under[i] * (1 - c[3]));
      const lum = (c) => { const [r, g, b] = c.map((x) => { x /= 255;
        return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const ratio = (a, b) => { const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
        return (hi + 0.05) / (lo + 0.05); };
      const cols = (getComputedStyle(e).backgroundImage.match(/rgba?\\([^)]*\\)/g) || [])
        .map(rgba).filter((c) => c[3] > 0).map(over);
      const text = rgba(getComputedStyle(e).color).slice(0, 3);
      const bg = under.slice(0, 3);
      const rs = cols.map((c) => ratio(c, bg)), faint = cols[rs.indexOf(Math.min(...rs))];
      return [Math.max(0, ...rs), ratio(text, faint)];""" % json.dumps(selector))


def frames_by_name(s):
    out = {}
    for f in s["frames"]:
        out.setdefault(f["name"], []).append(f)
    return out


def canvas_point(b, css, frame):
    """Viewport coordinates of the middle of a drawn frame."""
    r = b.js("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
             "return [r.left, r.top];", css)
    return r[0] + frame["x"] + frame["width"] / 2, r[1] + frame["depth"] * 22 + 11


def test_serving():
    r = NODE.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status == 200 and b'<script type="module" src="/ui/app.js">' in r.body, r
    etag = r.headers["etag"]
    r2 = NODE.get("/", headers={"Accept": "text/html", "If-None-Match": etag})
    assert r2.status == 304 and r2.body == b"", r2
    r = NODE.get("/ui/state/url.js")
    assert r.status == 200 and r.headers["content-type"].startswith("text/javascript"), r
    assert r.headers["cache-control"] == "no-cache" and r.headers["etag"].startswith('"'), r.headers
    r = NODE.get("/ui/style.css")
    assert r.status == 200 and r.headers["content-type"].startswith("text/css"), r
    r = NODE.get("/ui/nope.js")
    assert r.status == 404 and r.json()["code"] == "not_found", r
    r = NODE.get("/ui/")
    assert r.status == 404, r
    r = NODE.get("/ui/../routes.c")
    assert r.status == 404, r
    r = NODE.request("POST", "/ui/app.js", body=b"x")
    assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", r
    r = NODE.get("/")  # curl: the list of endpoints
    assert r.status == 200 and b"/pyroscope/render" in r.body and b"/ui/app.js" not in r.body, r


def test_flame_graph_and_table():
    total, tot, slf = shares([V1, V2])
    with need_browser() as b:
        s = open_page(b, page(query=sel()), "the single view")
        assert s["numTicks"] == total * NS * WINDOWS, (s["numTicks"], total)
        assert b.js("return document.documentElement.scrollWidth") <= 1280, "fits 1280 px"
        # the profile type picker shows the whole type id, not a cut one
        text_w, box_w = b.js(
            "const s = document.getElementById('q-type'), c = document.createElement('canvas').getContext('2d');"
            "c.font = getComputedStyle(s).font; return [c.measureText(s.selectedOptions[0].text).width, s.clientWidth]")
        assert text_w + 28 <= box_w, ("the type is cut", text_w, box_w)
        opt = b.js("const o = document.getElementById('q-type').selectedOptions[0]; return [o.text, o.value, o.title]")
        assert opt == ["process_cpu · cpu", CPU, CPU], opt
        fr = frames_by_name(s)
        for name in ("main", "serve", "db", "json", "gc", CART, "runtime.mallocgc"):
            assert name in fr, (name, sorted(fr))
            got = sum(f["percent"] for f in fr[name])
            assert abs(got - tot[name]) < 0.01, (name, got, tot[name])
        root = fr["total"][0]
        db = fr["db"][0]
        assert abs(db["width"] - root["width"] * tot["db"] / 100) <= 1, (db, root)
        assert fr["db"][0]["depth"] == 3 and fr["serve"][0]["depth"] == 2
        rows = {r["name"]: r for r in s["table"]}
        assert set(rows) == set(tot), sorted(rows)
        for name, want in slf.items():
            cell = rows[name]["cells"][1]  # "0.0033 · 37.5%": cores of a CPU type, share
            assert re.match(r"^[\d.e-]+ · [\d.]+%$", cell) and "(cores)" in s["table_head"][1], cell
            got = float(re.search(r"([\d.]+)%", cell).group(1))
            assert abs(got - want) < 0.1, (name, cell, want)
        # the default order is self, largest first
        assert s["table"][0]["name"] == max(slf, key=slf.get), s["table"][0]
        # hover: the tooltip gives total and self with their share and cores
        x, y = canvas_point(b, "#view-single canvas.flamegraph", db)
        b.mouse([("move", x, y)])
        tip = b.wait_js("const t = document.getElementById('tooltip'); return !t.hidden && [...t.children].map(c => c.textContent).join(\"\\n\")", what="tooltip")
        want = ("%.2f" % tot["db"]).rstrip("0").rstrip(".")
        assert tip.startswith("db\nTotal: ") and "(%s%%, " % want in tip and "cores)" in tip, tip
        shot(b, "single")
        # at 1024 px the top table shows its total column without scrolling sideways
        b.set_window(1024, 800)
        box = b.wait_js("const t = document.querySelector('#view-single .table-box');"
                        "return t.clientWidth < 500 && [t.scrollWidth, t.clientWidth]", what="1024 px")
        assert box[0] <= box[1], ("the top table scrolls sideways at 1024 px", box)
        b.set_window(1280, 800)
        # every export link answers with its format
        links = b.js("return [...document.querySelectorAll('#view-single .exports a')].map(a => a.getAttribute('href'))")
        assert len(links) == 4, links
        for href in links:
            r = NODE.get(href)
            assert r.status == 200 and len(r.body) > 0, (href, r)

        # click on "serve": zoom; db now spans db/serve of the width
        sv = frames_by_name(s)["serve"][0]
        x, y = canvas_point(b, "#view-single canvas.flamegraph", sv)
        b.mouse([("move", x, y), ("down",), ("up",)])
        z = b.wait_js("const s = window.flamedbUI.snapshot(); return s.focus === 'serve' && s", what="zoom")
        zf = frames_by_name(z)
        assert "gc" not in zf and CART not in zf, sorted(zf)
        want = root["width"] * tot["db"] / tot["serve"]
        assert abs(zf["db"][0]["width"] - want) <= 1, (zf["db"], want)
        shot(b, "zoomed")
        b.keys("\ue00c")  # Escape resets the zoom
        b.wait_js("return window.flamedbUI.snapshot().focus === 'total'", what="reset zoom")

        # search: "/" focuses the box; matched share is the frames' total share
        b.keys("/")
        b.wait_js("return document.activeElement.classList.contains('search')", what="search focus")
        b.keys("json")
        m = b.wait_js("const s = window.flamedbUI.snapshot(); return s.matched && s.state.search === 'json' && s",
                      what="search")
        assert m["matched"]["total"] * 100.0 / m["numTicks"] - tot["json"] < 1e-6, m["matched"]
        hl = [f["name"] for f in m["frames"] if f["highlighted"]]
        assert hl == ["json"], hl
        assert [r["name"] for r in m["table"]] == ["json"], m["table"]
        assert "json" in b.js("return location.search")
        shot(b, "search")


def test_other_frame():
    with need_browser() as b:
        s = open_page(b, page(query=sel(), maxNodes=4), "a truncated graph")
        fr = frames_by_name(s)
        assert "other" in fr, sorted(fr)
        note = b.js("return document.querySelector('#view-single .footnote').textContent")
        assert "maxNodes=4" in note, note
        assert s["numTicks"] == sum(f["total"] for f in fr["main"]), "totals stay exact"
        x, y = canvas_point(b, "#view-single canvas.flamegraph", fr["other"][0])
        b.mouse([("move", x, y)])
        tip = b.wait_js("const t = document.getElementById('tooltip'); return !t.hidden && t.textContent",
                        what="other tooltip")
        assert tip.startswith("other") and "maxNodes" in tip, tip


def test_answer_time_shown():
    """The flame graph's footnote says how long the node took to answer (its
    Server-Timing total), and its steps on hover."""
    with need_browser() as b:
        open_page(b, page(query=sel()), "a flame graph")
        note = b.wait_js("const n = document.querySelector('#view-single .footnote');"
                         "return n.textContent.includes('answered in') && [n.textContent, n.title]",
                         what="the answer's time")
        text, title = note
        assert re.search(r"answered in \d+\.\d\d ms$", text), text
        for step in ("queue", "share", "encode"):
            assert re.search(step + r" \d+\.\d\d ms", title), title
        shot(b, "answer-time")


def test_large_tree():
    """More than 10,000 frames: drawn from one canvas, quickly, exact."""
    svc = unique("uibig")
    stacks = {}
    for i in range(12000):  # distinct stacks: 12,000 leaves under 120 x 10 callers
        stacks["main;mod%d.handler;mod%d.step%d;leaf%d" % (i % 120, i % 120, i % 1200, i)] = 1 + i % 7
    r = NODE.ingest(folded(stacks), name=svc + ".cpu", **{"from": NOW - 30})
    assert r.status == 200, r
    with need_browser() as b:
        s = open_page(b, page(query=sel(svc), maxNodes=16384), "a large tree")
        assert s["numTicks"] == sum(stacks.values()) * NS, s["numTicks"]
        assert s["nodes"] == 1 + 1 + 120 + 1200 + 12000, s["nodes"]
        assert "other" not in frames_by_name(s)
        assert s["drawMs"] < 1000, s["drawMs"]  # ~10 ms here; generous for a shared machine
        # the 12,000 leaves are each far narrower than half a pixel: side by
        # side they are one plain block as wide as the graph, not a blank row
        root = frames_by_name(s)["total"][0]
        leaves = [n for n in s["narrow"] if n["depth"] == 4]
        assert abs(sum(n["width"] for n in leaves) - root["width"]) <= 2, (leaves, root)
        assert not any(f["depth"] == 4 for f in s["frames"]), "no leaf is drawn alone"
        b.keys("/")
        b.keys("step7")
        m = b.wait_js("const s = window.flamedbUI.snapshot(); return s.matched && s.state.search === 'step7' && s",
                      what="search")
        want = sum(v for k, v in stacks.items() if "step7" in k.split(";")[2])
        assert m["matched"]["total"] == want * NS, (m["matched"], want)
        # the table loaded the top 5000 by self (all leaves): the step
        # functions are beyond them, so its search asks the node for them
        check_table_search(b, stacks, "step7")
        shot(b, "large")
        b.keys("7")  # typing on: the new search replaces the last one
        check_table_search(b, stacks, "step77")
        b.keys("\ue003" * 6 + "STEP11")  # Backspace it all, then capitals: A-Z match a-z
        check_table_search(b, stacks, "STEP11")
        shot(b, "large-search")


def test_large_cpu_table_search():
    """A real profile of ~22,000 functions (large.cpu of $FLAMEDB_TESTDATA, as
    folded stacks: the pprof's own time is years old): the table's search
    finds functions beyond the 5000 it loaded."""
    data = os.environ.get("FLAMEDB_TESTDATA", "")
    path = os.path.join(data, "folded", "derived", "large.cpu.samples.folded.txt.gz")
    if not data or not os.path.isfile(path):
        raise Skip("large.cpu.samples.folded.txt.gz not found (set FLAMEDB_TESTDATA to the test corpus)")
    svc = unique("uilargecpu")
    with gzip.open(path, "rb") as f:
        r = NODE.ingest(f.read(), name=svc + ".cpu", **{"from": NOW - 60})
    assert r.status == 200, r
    r = NODE.render(sel(svc), fmt="folded")  # untruncated: every function and its stacks
    assert r.status == 200, r
    stacks = {}
    for line in r.body.decode().splitlines():
        k, v = line.rsplit(" ", 1)
        stacks[k] = stacks.get(k, 0) + int(v)
    names = {f for k in stacks for f in k.split(";")}
    loaded = {f["name"] for f in NODE.query("/api/top", query=sel(svc), limit=5000).json()["functions"]}
    assert len(names) > 5000 and len(loaded) == 5000, (len(names), len(loaded))
    term = None
    for name in sorted(names - loaded):  # a name part that only functions beyond the 5000 have
        part = name.rsplit(".", 1)[-1]
        found = {f for f in names if part.lower() in f.lower()}
        if 1 <= len(found) <= 50 and not found & loaded:
            term = part.upper()  # typed in capitals: A-Z match a-z
            break
    assert term, "no function of large.cpu beyond the loaded 5000 to search for"
    with need_browser() as b:
        open_page(b, page(query=sel(svc)), "large.cpu")
        b.keys("/")
        b.keys(term)
        check_table_search(b, stacks, term, graph=False)
        shot(b, "large-cpu-search")


def check_table_search(b, stacks, term, graph=True):
    """The table lists every function whose name contains term (A-Z as a-z),
    with its total share, and counts them out of all the profile's."""
    total, tot = sum(stacks.values()), {}
    for k, v in stacks.items():
        for f in set(k.split(";")):
            tot[f] = tot.get(f, 0) + v
    want = {f for f in tot if term.lower() in f.lower()}
    foot = '%d of %d functions matching "%s"' % (len(want), len(tot), term)
    s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && "
                  "s.state.search === arguments[0] && s.table_foot.startsWith(arguments[1]) && s"
                  .replace("arguments[0]", json.dumps(term)).replace("arguments[1]", json.dumps(foot)),
                  what="the table's search for %s (%s)" % (term, foot))
    rows = {r["name"]: r for r in s["table"]}
    assert set(rows) == want, (term, sorted(set(rows) ^ want)[:10])
    for name, r in rows.items():
        got = float(re.search(r"([\d.]+)%", r["cells"][2]).group(1))
        assert abs(got - 100.0 * tot[name] / total) < 0.1, (name, r["cells"], tot[name])
    hl = {f["name"] for f in s["frames"] if f["highlighted"]}
    assert hl <= want and (hl or not graph), sorted(hl - want)  # the graph finds the same ones


def test_js_modules():
    """The modules' pure parts, run in the page: decoding, names, sandwich."""
    with need_browser() as b:
        open_page(b, page(query=sel()), "the single view")
        out = b.js_async("""
          const done = arguments[arguments.length - 1];
          Promise.all([import('/ui/tree.js'), import('/ui/format.js'), import('/ui/state/url.js'),
                       import('/ui/timeline.js'), import('/ui/querybar.js')])
            .then(([tree, fmt, url, tl, bar]) => {
              // a -> b -> a (recursion) and a -> c; offsets delta-encoded per level
              const fb = {names: ['total', 'a', 'b', 'c'], levels: [
                [0, 10, 0, 0], [0, 10, 1, 1], [0, 6, 2, 2, 1, 3, 3, 3], [0, 4, 4, 1]]};
              const root = tree.fromFlamebearer(fb);
              const sw = tree.sandwich(root, 'a');
              const d = tree.fromDiff({names: ['total', 'x', 'y', 'z'], levels: [
                [0, 4, 0, 0, 6, 0, 0], [0, 4, 1, 0, 6, 2, 1], [0, 3, 3, 0, 0, 0, 2, 0, 0, 0, 0, 4, 4, 3]]});
              done({
                kids: root.children[0].children.map((c) => [c.name, c.total, c.self]),
                callees: sw.callees.total, calls: sw.calls,
                matched: tree.matchedTotal(root, (n) => n === 'a'),
                diffKids: d.children[0].children.map((c) => [c.name, c.lt, c.rt]),
                short: fmt.shortNames('github.com/acme/shop/cart.(*Cart).Add'),
                fit: fmt.fit('runtime.mallocgc', 8), v: [fmt.value(1.5e9, 'nanoseconds'), fmt.value(2048, 'bytes')],
                cores: [2.5, 0.0123, 2.8e-5, 1e-6, 3.2e-7, 9.99e-5].map(fmt.cores),
                q: url.withMatcher('T{service_name="api",env="x"}', 'service_name', 'web'),
                parsed: url.parseQuery('T{a=~"x|y",b!="q\\\\"z"}'),
                // the search's comparison, the node's too: only A-Z fold, no regex
                found: ['xABy', 'Ab', 'a.b', '\u00e4b', '\u00c4B', '\u0130b', 'ib'].filter(fmt.nameMatcher('aB')),
                foundUmlaut: ['\u00e4b', '\u00c4b'].filter(fmt.nameMatcher('\u00c4')),
                foundDot: ['a.b', 'axb'].filter(fmt.nameMatcher('A.')),
                noSearch: fmt.nameMatcher(''),
                // the timeline's top: 1-2-5 steps in the units its caption shows
                axis: [[0.95e9, 'bytes'], [3000, 'bytes'], [700 * 2 ** 20, 'bytes'], [0.95e9, 'count'],
                       [0.3, '']].map(([v, u]) => fmt.value(tl.niceMax(v, u), u === 'bytes' ? u : 'count')),
                // the type picker's names: short, with the unit only where two would read the same
                types: ['a:cpu:nanoseconds:cpu:nanoseconds', 'a:cpu:count:cpu:nanoseconds',
                        'memory:alloc_space:bytes:space:bytes', 'odd'].map((t, _, all) => bar.typeLabel(t, all)),
                // the times the node takes in from/until, UTC without a zone
                times: ['20231114', '2023-11-14', '2023-11-14 22:13:20', '2023-11-14T22:13:20Z',
                        '2023-11-14T23:13:20+01:00', '2023-11-14T22:13:20.5', '1700000000123',
                        '20230229'].map((v) => bar.toSeconds(v)),
              });
            }).catch((e) => done({error: String(e)}));
        """)
        assert "error" not in out, out
        assert out["kids"] == [["b", 6, 2], ["c", 3, 3]], out["kids"]
        assert out["callees"] == 10 and out["calls"] == 1, out  # the inner a is inside the outer
        assert out["matched"] == {"total": 10, "frames": 2}, out["matched"]
        assert out["diffKids"] == [["y", 3, 0], ["z", 0, 4]], out["diffKids"]  # left only, right only
        assert out["short"] == ["github.com/acme/shop/cart.(*Cart).Add", "g.c/a/s/cart.(*Cart).Add",
                                "cart.(*Cart).Add", "(*Cart).Add", "Add"], out["short"]
        assert out["fit"] == "mallocgc", out["fit"]
        assert out["v"] == ["1.5 s", "2 KiB"], out["v"]
        # a traced request or a quiet service: millionths of a core, written out
        assert out["cores"] == ["2.5 cores", "0.0123 cores", "0.000028 cores", "0.000001 cores",
                                "0.00000032 cores", "0.0001 cores"], out["cores"]
        assert out["q"] == 'T{service_name="web",env="x"}', out["q"]
        assert out["parsed"] == {"type": "T", "matchers": [{"name": "a", "op": "=~", "value": "x|y"},
                                                            {"name": "b", "op": "!=", "value": 'q"z'}]}, out
        assert out["found"] == ["xABy", "Ab"], out["found"]
        assert out["foundUmlaut"] == ["\u00c4b"] and out["foundDot"] == ["a.b"], out
        assert out["noSearch"] is None, out
        assert out["axis"] == ["1 GiB", "5 KiB", "1 GiB", "1 G", "0.5"], out["axis"]
        assert out["types"] == ["a · cpu (nanoseconds:cpu:nanoseconds)", "a · cpu (count:cpu:nanoseconds)",
                                "memory · alloc_space", "odd"], out["types"]
        assert out["times"] == [1699920000, 1699920000, 1700000000, 1700000000, 1700000000, 1700000000,
                                1700000000, 20230229], out["times"]


def test_busy_answer_asked_again():
    """A 503 with Retry-After (a node whose query memory is full for a
    moment) is asked again after that many seconds, up to four times, and
    the page gets the answer; one still busy the fourth time is an error with
    the node's reason. The busy answers are made in the page (fetch wrapped):
    the node serves the rest."""
    with need_browser() as b:
        open_page(b, page(query=sel()), "the single view")
        out = b.js_async("""
          const done = arguments[arguments.length - 1];
          const real = window.fetch;
          let busyLeft = 0, calls = 0;
          window.fetch = (u, o) => {
            calls++;
            if (busyLeft-- > 0)
              return Promise.resolve(new Response(
                '{"code":"unavailable","message":"server busy: test"}',
                {status: 503, headers: {'Retry-After': '0.2', 'Content-Type': 'application/json'}}));
            return real(u, o);
          };
          const q = {query: arguments[0], from: 'now-1h', until: 'now', limit: 5};
          import('/ui/api.js').then(async (api) => {
            const t0 = performance.now();
            busyLeft = 2; calls = 0;
            const top = await api.top(q);
            const first = {calls, ms: performance.now() - t0, n: top.functions.length};
            busyLeft = 4; calls = 0;
            let err = null;
            try { await api.top(q); } catch (e) { err = [e.status, e.code, e.message]; }
            window.fetch = real;
            done({first, err, calls});
          }).catch((e) => { window.fetch = real; done({error: String(e)}); });
        """, sel())
        assert "error" not in out, out
        assert out["first"]["calls"] == 3 and out["first"]["n"] > 0, out
        assert out["first"]["ms"] >= 350, out  # two waits of 0.2 s
        assert out["calls"] == 4 and out["err"] == [503, "unavailable", "server busy: test"], out


def test_query_bar():
    with need_browser() as b:
        open_page(b, page(query=sel()), "the single view")
        # autocomplete: label names after ',' and values after name="
        b.js("const e = document.getElementById('q-selector'); e.focus();"
             "e.setSelectionRange(e.value.length - 1, e.value.length - 1);")
        b.keys(",ver")
        items = b.wait_js("const u = document.getElementById('q-suggest');"
                          "return !u.hidden && [...u.children].map(l => l.textContent)", what="names")
        assert items == ["version"], items
        b.keys("\ue004")  # Tab picks it: version="
        vals = b.wait_js("const u = document.getElementById('q-suggest');"
                         "return !u.hidden && [...u.children].map(l => l.textContent)", what="values")
        assert vals == ["v1", "v2"], vals
        b.keys("\ue015\ue007")  # ArrowDown, Enter: v2
        sel_text = b.js("return document.getElementById('q-selector').value")
        assert sel_text == '{service_name="%s",version="v2"}' % SVC, sel_text
        b.click("#q-apply")
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.state.query.includes('v2') && s",
                      what="apply")
        assert s["numTicks"] == sum(V2.values()) * NS * WINDOWS, s["numTicks"]
        # a preset writes now-6h into the URL
        b.js("const r = document.getElementById('q-range'); r.value = '6h'; r.dispatchEvent(new Event('change'));")
        b.wait_js("return location.search.includes('from=now-6h')", what="preset")
        # Back returns to the previous view, inputs included
        b.js("history.back()")
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.state.from === 'now-1h' && s",
                      what="back")
        assert b.js("return document.getElementById('q-range').value") == "1h"
        assert 'version="v2"' in b.js("return document.getElementById('q-selector').value")


def test_table_click_and_sandwich():
    with need_browser() as b:
        open_page(b, page(query=sel()), "the single view")
        b.click('#view-single tr[data-name="runtime.mallocgc"]')
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.state.fn && s", what="row click")
        assert s["state"]["fn"] == "runtime.mallocgc"
        assert [f["name"] for f in s["frames"] if f["highlighted"]] == ["runtime.mallocgc"]
        assert [r["name"] for r in s["table"] if r["selected"]] == ["runtime.mallocgc"]
        b.click('#view-single tr[data-name="runtime.mallocgc"] button.icon')
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.sandwich && s", what="sandwich")
        callers = [f["name"] for f in s["sandwich"]["callers"]]
        assert callers == ["runtime.mallocgc", CART, "main"], callers
        assert [f["name"] for f in s["sandwich"]["callees"]] == ["runtime.mallocgc"]
        shot(b, "sandwich")


def test_timeline_drag_narrows_range():
    with need_browser() as b:
        open_page(b, page(query=sel()), "the single view")
        r = b.js("const r = document.querySelector('#view-single canvas.timeline').getBoundingClientRect();"
                 "return [r.left, r.top, r.width, r.height];")
        x0, y = r[0] + r[2] * 0.5, r[1] + r[3] / 2
        b.mouse([("move", x0, y), ("down",), ("move", x0 + r[2] * 0.3, y), ("up",)])
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && /^\\d+$/.test(s.state.from) && s",
                      what="drag")
        f, u = int(s["state"]["from"]), int(s["state"]["until"])
        span = 3600 * 0.3
        assert abs((u - f) - span) < 60, (f, u)
        assert NOW - 3600 - 60 < f < u <= NOW + 120, (f, u, NOW)


def test_diff_view():
    _, lt, _ = shares([V1])
    _, rt, _ = shares([V2])
    with need_browser() as b:
        # a range just around the pushes: the report splits each side into at
        # most 30 buckets, and only tests functions with 5 non-empty ones
        rng = {"from": NOW - 10 * WINDOWS - 40, "until": NOW + 10}
        s = open_page(b, page(view="diff", query=sel(version="v1"), rightQuery=sel(version="v2"), **rng),
                      "the diff view")
        assert s["leftTicks"] == sum(V1.values()) * NS * WINDOWS, s["leftTicks"]
        assert b.js("return document.documentElement.scrollWidth") <= 1280, "fits 1280 px"
        assert s["rightTicks"] == sum(V2.values()) * NS * WINDOWS, s["rightTicks"]
        # the comparison's query is readable to its end (version="v2" tells the sides apart)
        q = b.js("const i = document.querySelector('#view-diff .right-q');"
                 "return {value: i.value, scroll: i.scrollWidth, client: i.clientWidth}")
        assert q["value"] == sel(version="v2") and q["scroll"] <= q["client"], ("the comparison is cut", q)
        # the baseline's selector too, with the absolute range's date boxes in the row
        q = b.js("const i = document.getElementById('q-selector');"
                 "return {value: i.value, scroll: i.scrollWidth, client: i.clientWidth}")
        assert q["value"].endswith('version="v1"}') and q["scroll"] <= q["client"], ("the selector is cut", q)
        # in narrower windows the row wraps, each label staying beside its input
        apart = []
        for width in range(900, 1281, 20):
            b.set_window(width, 800)
            tops = b.js(
                "const row = document.querySelector('#view-diff .right-q').parentElement, out = [];"
                "const w = document.createTreeWalker(row, NodeFilter.SHOW_TEXT);"
                "for (let t = w.nextNode(); t; t = w.nextNode()) {"
                "  const word = t.textContent.trim(); if (word !== 'from' && word !== 'until') continue;"
                "  const r = document.createRange(); r.selectNodeContents(t);"
                "  const i = row.querySelector('.right-' + word).getBoundingClientRect(), l = r.getBoundingClientRect();"
                "  out.push([word, (l.top + l.bottom) / 2, (i.top + i.bottom) / 2]); }"
                "return out;")
            assert len(tops) == 2, tops
            apart += [(width, word) for word, lt, it in tops if abs(lt - it) >= 8]
        assert not apart, ("a label on another line than its input", apart)
        b.set_window(1280, 800)
        fr = frames_by_name(s)
        red = lambda c: [int(x) for x in re.findall(r"\d+", c)]  # noqa: E731
        json_c, db_c, gc_c = red(fr["json"][0]["color"]), red(fr["db"][0]["color"]), red(fr["gc"][0]["color"])
        assert json_c[0] > json_c[1], ("json grew: red", json_c)
        assert db_c[1] > db_c[0], ("db shrank: green", db_c)
        assert fr[CART][0]["color"] == "rgb(200,0,0)", ("new: full red", fr[CART])
        # report: change in pp, computed from what was pushed; significance marks
        rep = {f["name"]: f for f in s["report"]}
        for name in ("json", "db", "gc"):
            want = rt[name] - lt[name]
            assert abs(rep[name]["change"] - want) < 0.01, (name, rep[name]["change"], want)
        rows = {r["name"]: r["cells"] for r in s["table"]}
        assert rows["json"][0] == "★" and rows["db"][0] == "★", rows
        assert rows["json"][4].startswith("+%.2f" % (rt["json"] - lt["json"])), rows["json"]
        assert s["table"][0]["name"] == max(rep, key=lambda n: abs(rep[n]["change"])), s["table"][0]
        x, y = canvas_point(b, "#view-diff canvas.flamegraph", fr["json"][0])
        b.mouse([("move", x, y)])
        tip = b.wait_js("const t = document.getElementById('tooltip');"
                        "return !t.hidden && [...t.children].map(c => c.textContent).join('\\n')", what="diff tooltip")
        want = "Change: +%.2f pp" % (rt["json"] - lt["json"])
        assert tip.startswith("json\nBaseline: ") and want in tip, tip
        # the colour key: each chip with its own label, in the colours the graph draws
        keys = b.js("return [...document.querySelectorAll('#view-diff .legend .key')].map((k) =>"
                    " [getComputedStyle(k.querySelector('i')).backgroundColor, k.textContent.trim()])")
        assert [k[1] for k in keys] == ["\u2212100% (shrank)", "\u221250%", "unchanged", "+50%",
                                        "+100% (grew, new)"], keys
        assert keys[0][0] == "rgb(0, 170, 0)" and keys[2][0] == "rgb(148, 142, 142)", keys
        assert keys[4][0] == fr[CART][0]["color"].replace(",", ", "), (keys, fr[CART])
        for chip in (".base-chip", ".comp-chip"):  # white on the chips' pink and blue was about 3:1
            assert contrast(b, "#view-diff " + chip) >= 4.5, (chip, contrast(b, "#view-diff " + chip))
        shot(b, "diff")


def test_diff_report_narrow_window():
    """At 1024 px the regression report keeps its last column (p) in view:
    long Go names give way instead of pushing it out of the table's box."""
    svc = unique("uinarrow")
    long_fn = "github.com/acme/checkout/internal/pricing.(*DiscountEngine).applyCustomerDiscounts"
    for version, stacks in (("v1", {"main;%s" % long_fn: 30, "main;gc": 70}),
                            ("v2", {"main;%s" % long_fn: 60, "main;gc": 40})):
        r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s}" % (svc, version), **{"from": NOW - 60})
        assert r.status == 200, r
    with need_browser() as b:
        b.set_window(1024, 800)
        s = open_page(b, page(view="diff", query=sel(svc, version="v1"), rightQuery=sel(svc, version="v2")),
                      "the diff view at 1024 px")
        assert long_fn in {f["name"] for f in s["report"]}, s["report"]
        box = b.js("const t = document.querySelector('#view-diff .table-box');"
                   "return [t.scrollWidth, t.clientWidth]")
        assert box[0] <= box[1], ("the report scrolls sideways at 1024 px", box)
        shot(b, "diff-1024")


def test_narrow_window():
    """At 760 px a table beside the graph cut its last column (Total, p):
    below 900 px the table goes above the graph, no column cut, the graph
    as wide as the page and nothing scrolling sideways."""
    with need_browser() as b:
        b.set_window(760, 800)
        for view, url in (("single", page(query=sel())),
                          ("diff", page(view="diff", query=sel(version="v1"), rightQuery=sel(version="v2")))):
            open_page(b, url, view + " at 760 px")
            m = b.js("""
              const v = document.querySelector('#view-%s'), box = v.querySelector('.table-box');
              const r = box.getBoundingClientRect(), g = v.querySelector('canvas.flamegraph');
              return {scroll: box.scrollWidth, client: box.clientWidth, page: document.documentElement.scrollWidth,
                      inner: window.innerWidth, graph: g.getBoundingClientRect().width,
                      cut: [...box.querySelectorAll('th')].filter((h) =>
                        h.getBoundingClientRect().right > r.right + 1).map((h) => h.textContent)};""" % view)
            assert m["cut"] == [] and m["scroll"] <= m["client"], ("columns cut at 760 px", view, m)
            assert m["page"] <= m["inner"] and m["graph"] >= 0.9 * (m["inner"] - 40), (view, m)
            shot(b, "narrow-" + view)


def test_diff_controls_phone_width():
    """At 600 px the baseline's query (one long word of a selector) ran past
    the diff controls' box and the page scrolled sideways: it wraps inside
    the box, as the comparison's input does."""
    with need_browser() as b:
        b.set_window(600, 800)
        open_page(b, page(view="diff", query=sel(version="v1"), rightQuery=sel(version="v2")),
                  "the diff view at 600 px")
        m = b.js("""
          const box = document.querySelector('#view-diff .diff-controls').getBoundingClientRect();
          const q = document.querySelector('#view-diff .left-q').getBoundingClientRect();
          return {box: box.right, q: q.right, page: document.documentElement.scrollWidth,
                  inner: window.innerWidth};""")
        assert m["q"] <= m["box"] + 0.5, ("the baseline query runs past its box at 600 px", m)
        assert m["page"] <= m["inner"], ("the page scrolls sideways at 600 px", m)
        shot(b, "narrow-diff-600")


def test_diff_report_search():
    """A report of more functions than the 200 the diff view loads: its
    table's search asks the node (/api/diff?search=) and finds functions
    beyond them, with their shares and the `N of M` count."""
    svc = unique("uidiffbig")
    left, right = {}, {}
    # 400 leaves under 4 handlers; each leaf's weight trades places with its
    # mirror in the same handler from v1 to v2: the leaves move, the handlers
    # keep their shares exactly, so the 200 loaded rows (largest change
    # first) never hold them
    for i in range(400):
        g, k = i % 4, i // 4
        stack = "main;shop/api.Handler%d;shop/store.step%03d" % (g, i)
        left[stack] = 50 + i
        right[stack] = 50 + g + 4 * (99 - k)
    for version, stacks in (("v1", left), ("v2", right)):
        for i in range(6):
            r = NODE.ingest(folded(stacks), name="%s.cpu{version=%s}" % (svc, version),
                            **{"from": NOW - 90 + 10 * i})
            assert r.status == 200, r
    _, lt, _ = shares([left])
    _, rt, _ = shares([right])
    with need_browser() as b:
        rng = {"from": NOW - 130, "until": NOW + 10}
        s = open_page(b, page(view="diff", query=sel(svc, version="v1"), rightQuery=sel(svc, version="v2"),
                              **rng), "the diff view of 405 functions")
        loaded = {f["name"] for f in s["report"]}
        assert len(loaded) == 200 and not any("Handler" in n for n in loaded), sorted(loaded)[:5]
        hits = NODE.metric("flamedb_report_cache_hits_total")
        misses = NODE.metric("flamedb_report_cache_misses_total")
        b.keys("/")
        b.keys("HANDLER")  # capitals: A-Z match a-z
        check_report_search(b, lt, rt, "HANDLER", loaded)
        b.keys("2")  # typing on: the new search replaces the last one
        check_report_search(b, lt, rt, "HANDLER2", loaded)
        b.keys("\ue003" * 8 + "step25")  # leaves that moved, but less than the loaded ones
        check_report_search(b, lt, rt, "step25", loaded)
        shot(b, "diff-search")
        b.keys("\ue003" * 2)  # more match than the 200 listed
        s = check_report_search(b, lt, rt, "step", loaded)
        assert s["table_foot"].endswith("(the top 200 by change listed)"), s["table_foot"]
        # every search named the report loaded, and the node listed its rows from it
        assert NODE.metric("flamedb_report_cache_hits_total") >= hits + 4
        assert NODE.metric("flamedb_report_cache_misses_total") == misses
        # a search the node refuses (1200 bytes of UTF-8 > 1024) is said in the footer
        b.js("window.flamedbUI.setState({search: '\u00e4'.repeat(600)})")
        foot = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && "
                         "s.table_foot.includes('failed') && s.table_foot", what="the refused search")
        assert "searching all 405 functions failed: parameter 'search': 1200 bytes, longer than 1024" \
            in foot, foot


def check_report_search(b, lt, rt, term, loaded):
    """The report's table lists the functions whose name contains term (A-Z
    as a-z), the first 200 by change, with both shares, and counts them out
    of all the report's."""
    want = {f for f in lt if term.lower() in f.lower()}
    foot = '%d of %d functions matching "%s"' % (len(want), len(lt), term)
    s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && "
                  "s.state.search === arguments[0] && s.table_foot && s.table_foot.startsWith(arguments[1]) && s"
                  .replace("arguments[0]", json.dumps(term)).replace("arguments[1]", json.dumps(foot)),
                  what="the report's search for %s (%s)" % (term, foot))
    rows = {r["name"]: r["cells"] for r in s["table"]}
    assert len(rows) == min(len(want), 200) and set(rows) <= want, (term, sorted(set(rows) - want)[:10])
    if len(want) <= 200:
        assert set(rows) - loaded, "found beyond the loaded rows"
    for name, cells in rows.items():
        assert cells[2] == "%.2f%%" % lt[name] and cells[3] == "%.2f%%" % rt[name], (name, cells)
        assert cells[4].endswith(" pp"), cells
    return s


def test_span_view():
    with need_browser() as b:
        s = open_page(b, page(view="spans", query=sel(SPAN_SVC), span=SPAN), "the span view")
        want = sum(v for _, v, sp in SPAN_ROWS if sp == SPAN)
        assert s["numTicks"] == want, (s["numTicks"], want)
        fr = frames_by_name(s)
        assert "gc" not in fr, sorted(fr)
        assert abs(fr["db"][0]["percent"] - 70.0) < 0.01, fr["db"]
        # one request reads as its CPU time, not as cores averaged over the range
        assert [h.rstrip(" ▲▼") for h in s["table_head"][1:]] == ["Self", "Total"], s["table_head"]
        db = [r for r in s["table"] if r["name"] == "db"][0]
        assert db["cells"][1].startswith("700 ns"), db
        foot = b.js("return document.querySelector('#span-panel .footnote').textContent")
        assert re.fullmatch(r"CPU time of the samples with this id: 1 µs · answered in "
                            r"\d+\.\d\d ms", foot), foot
        # pasting another id into the form shows that span
        b.js("document.getElementById('span-id').value = ''")
        b.type("#span-id", "00000000000000aa")
        b.click("#span-go")
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.state.span === '00000000000000aa' && s",
                      what="second span")
        assert s["numTicks"] == 5000 and "gc" in frames_by_name(s), s["numTicks"]
        no_exponents(b, "#view-spans")  # the timeline's top was "max 1.0e-6 cores"
        shot(b, "span")
        # the ids that have profiles are listed (one could not find them but
        # by pasting); clicking one shows it
        ids = sorted({sp for _, _, sp in SPAN_ROWS})
        assert s["spanIds"] == ids, s["spanIds"]
        assert s["spanIdsNote"] == "2 span_ids with profiles:", s["spanIdsNote"]
        b.js("[...document.querySelectorAll('#span-ids button')].find((x) => x.textContent === %s).click()"
             % json.dumps(SPAN))
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.state.span === %s && s"
                      % json.dumps(SPAN), what="the listed span")
        assert s["numTicks"] == want, s["numTicks"]
        # at phone width the list wraps inside the window
        b.set_window(390, 800)
        # the flame graph's canvas is sized again by the page's resize
        # handler, which a loaded machine may run a little after the resize
        m = b.wait_js("const m = [document.documentElement.scrollWidth, window.innerWidth];"
                      "return window.innerWidth <= 400 && m[0] <= m[1] && m",
                      timeout=10, what="the span view within 390 px (no sideways scroll)")
        assert m[0] <= m[1], ("the span view scrolls sideways at 390 px", m)
        shot(b, "span-ids-390")


def test_tags_and_profiles():
    t1, t2 = sum(V1.values()), sum(V2.values())
    with need_browser() as b:
        s = open_page(b, page(view="tags", query=sel(), label="version"), "the tag explorer")
        vals = {v["value"]: v for v in s["values"]}
        assert set(vals) == {"v1", "v2"}, vals
        assert abs(vals["v2"]["share"] - t2 / (t1 + t2)) < 1e-5, vals
        # the footer ("2 of 2 rows") is as wide as the table above it
        widths = b.js("return ['table', '.table-foot'].map(s => "
                      "document.querySelector('#view-tags .table-box > ' + s).getBoundingClientRect().width)")
        assert abs(widths[0] - widths[1]) <= 2, ("the footer is wider than the table", widths)
        shot(b, "tags")
        # the share bars are graphics a reader must see: at least 3:1 on the
        # table in both themes (the dark theme's faint fill was 1.5:1), and
        # the share on them stays readable text (4.5:1)
        theme = snap(b)["theme"]
        for t in ("dark", "light"):
            b.js("document.documentElement.setAttribute('data-theme', %s)" % json.dumps(t))
            if t == "dark":
                shot(b, "tags-dark")
            got = bar_contrast(b, '#view-tags tr[data-name="v2"] .bar-cell')
            assert got[0] >= 3 and got[1] >= 4.5, ("share bar contrast", t, got)
        b.js("document.documentElement.setAttribute('data-theme', %s)" % json.dumps(theme))
        b.click('#view-tags tr[data-name="v1"] button')  # "open"
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.view === 'single' && s.ready && s", what="open")
        assert 'version="v1"' in s["state"]["query"], s["state"]
        assert s["numTicks"] == t1 * NS * WINDOWS, s["numTicks"]
        s = open_page(b, page(view="profiles", query=sel()), "the profile list")
        assert len(s["profiles"]) == 2 * WINDOWS, len(s["profiles"])
        # with no profile opened the list takes the page, not a third of it
        rows, box = b.js("const t = document.querySelector('#view-profiles > .table-box');"
                         "return [t.querySelectorAll('tbody tr').length, t.getBoundingClientRect().height]")
        assert rows == 2 * WINDOWS and box >= 0.6 * 800, ("the list is cut short", rows, box)
        href = b.js("return document.querySelector('#view-profiles td a').getAttribute('href')")
        assert href.startswith("/api/profiles/") and href.endswith("?format=json"), href
        # clicking an id opens exactly that stored profile below the list
        pid = b.js("return document.querySelector('#view-profiles td a').dataset.id")
        row = [p for p in s["profiles"] if p["id"] == pid][0]
        b.click("#view-profiles td a")
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.opened && "
                      "s.state.profile && s", what="an opened profile")
        assert s["state"]["profile"] == pid, s["state"]
        assert s["opened"]["numTicks"] == row["total"], (s["opened"]["numTicks"], row)
        assert row["total"] in (t1 * NS, t2 * NS), row  # one push, never a window's sum
        shot(b, "profile")
        names = {r["name"] for r in s["opened"]["table"]}
        assert "db" in names and "main" in names, (s["error"], s["opened"]["table_head"])
        # the sandwich of a function opens over this profile, in place
        b.click('#view-profiles .profile-panel tr[data-name="serve"] button.icon')
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.opened && "
                      "s.opened.sandwich && s", what="the opened profile's sandwich")
        assert s["view"] == "profiles" and s["state"]["profile"] == pid, s["state"]
        assert [f["name"] for f in s["opened"]["sandwich"]["callers"]] == ["serve", "main"], s["opened"]
        callees = {f["name"] for f in s["opened"]["sandwich"]["callees"]}
        assert {"serve", "db", "json"} <= callees, callees
        shot(b, "profile-sandwich")


def test_tables_phone_width():
    """At 390 px (a phone) the profile list and the cluster table ran past
    the window and the page scrolled sideways: each table scrolls inside its
    box, which stays within the window, so every column is reachable and the
    rest of the page stays put."""
    with need_browser() as b:
        b.set_window(390, 800)
        for view, url in (("profiles", page(view="profiles", query=sel())),
                          ("cluster", page(view="cluster", query=sel()))):
            open_page(b, url, "the %s view at 390 px" % view)
            b.wait_js("return document.querySelector('#view-%s .table-box tbody tr')" % view,
                      what="the %s table's rows" % view)
            m = b.js("""
              const box = document.querySelector('#view-%s .table-box');
              const t = box.querySelector('table'), r = box.getBoundingClientRect();
              box.scrollLeft = box.scrollWidth;
              const last = [...t.querySelectorAll('th')].pop().getBoundingClientRect();
              const out = {page: document.documentElement.scrollWidth, inner: window.innerWidth,
                           left: r.left, right: r.right, table: t.getBoundingClientRect().width,
                           scroll: box.scrollWidth, client: box.clientWidth,
                           overflow: getComputedStyle(box).overflowX,
                           lastIn: last.right <= r.right + 1 && last.left >= r.left - 1};
              box.scrollLeft = 0;
              return out;""" % view)
            assert m["page"] <= m["inner"], ("the page scrolls sideways at 390 px", view, m)
            assert m["left"] >= 0 and m["right"] <= m["inner"] + 0.5, ("the table box leaves the window", view, m)
            assert m["overflow"] in ("auto", "scroll"), ("the table cannot scroll inside its box", view, m)
            assert m["scroll"] >= m["table"] - 1 and m["lastIn"], ("a column cannot be reached", view, m)
            shot(b, "phone-" + view)


def test_tags_empty():
    """The tag explorer says why it has nothing to show: a range without
    samples, and a node nothing was pushed to (no label to pick)."""
    with need_browser() as b:
        open_page(b, page(view="tags", query=sel(), label="version", **{"from": "20010101", "until": "20010102"}),
                  "the tag explorer over an empty range")
        text = b.js("return document.querySelector('#view-tags .tags-total').textContent")
        assert text.startswith("no samples match this selection in this range"), text
        with Node(name="ui-empty") as empty:
            b.get("http://127.0.0.1:%d/?%s" % (empty.port, urllib.parse.urlencode({"view": "tags", "query": sel()})))
            b.wait_js("return document.body.dataset.ready === 'true'", what="the empty node's tag explorer")
            text = b.js("return document.querySelector('#view-tags .tags-total').textContent")
            assert text.startswith("no labels yet: push a profile"), text
            shot(b, "tags-empty")


def test_cluster_view():
    """The cluster tab: GET /cluster/status as a table, through the page's own
    calls (so a token goes along), not a raw JSON link."""
    with need_browser() as b:
        s = open_page(b, page(query=sel(), view="cluster"), "the cluster view")
        assert s["view"] == "cluster", s
        st = NODE.get("/cluster/status").json()
        assert s["members"] == [{"id": st["self"], "state": "active", "self": True}], s["members"]
        assert s["summary"] == "cluster '%s': 1 node(s), rf 1, write quorum 1 (as seen by %s)" % (
            st["cluster"], st["self"]), s["summary"]
        assert s["table"][0]["cells"][:2] == [st["self"] + " (this node)", "active"], s["table"]
        # the tab is there in every view, and works before anything was pushed
        b.get("http://127.0.0.1:%d/" % NODE.port)
        b.wait_js("return document.body.dataset.ready === 'true'", what="the page")
        b.click('#tabs a[data-view="cluster"]')
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.view === 'cluster' && s",
                      what="the cluster tab")
        assert s["error"] is None and len(s["members"]) == 1, s
        shot(b, "cluster")


def test_empty_selection():
    """A selection with no samples in the range says so where a graph would
    be, and its timeline does not draw an empty plot captioned "max 0 cores"."""
    with need_browser() as b:
        s = open_page(b, page(query=sel(unique("uinothing"))), "an empty selection")
        assert s["numTicks"] == 0, s["numTicks"]
        got = b.js("const v = document.getElementById('view-single');"
                   "return [v.querySelector('.timeline-caption').textContent,"
                   "        v.querySelector('.footnote').textContent]")
        assert got[0] == "no data in this range", got
        assert got[1].startswith("no samples match this selection in this range"), got
        shot(b, "empty")


def test_gauge_caption():
    """In-use memory is a gauge: its timeline reads in bytes (each bucket's
    average profile), never "bytes / s", and the footnote names the average
    profile in use rather than a total over the range."""
    svc = unique("uigauge")
    for k, t in enumerate((NOW - 300, NOW - 290, NOW - 120)):
        p = Pprof([("inuse_objects", "count"), ("inuse_space", "bytes")],
                  period_type=("space", "bytes"), period=524288)
        p.add(["main", "cache.Put"], [1, (k + 1) << 20])
        r = NODE.ingest(p.encode_gz(), name="%s{pod=a}" % svc, format="pprof", **{"from": t})
        assert r.status == 200, r
    query = 'memory:inuse_space:bytes:space:bytes{service_name="%s"}' % svc
    with need_browser() as b:
        s = open_page(b, page(query=query), "a gauge")
        assert s["numTicks"] == (1 + 2 + 3 << 20) // 3, s["numTicks"]  # the average of three
        got = b.js("const v = document.getElementById('view-single');"
                   "return [v.querySelector('.timeline-caption').textContent,"
                   "        v.querySelector('.footnote').textContent]")
        assert "/ s" not in got[0] and got[0].startswith("bytes in use"), got
        assert "(max 5 MiB)" in got[0], got  # 3 MiB alone in its bucket, on 1-2-5 steps
        assert got[1].startswith("in use: 2 MiB, the average profile"), got
        shot(b, "gauge")
        # the tag explorer: pod a's average profile, in bytes, no "/ s" either
        s = open_page(b, page(view="tags", query=query, label="pod"), "a gauge's tags")
        assert [(v["value"], v["total"]) for v in s["values"]] == [("a", (1 + 2 + 3 << 20) // 3)]
        got = b.js("const v = document.getElementById('view-tags');"
                   "return [v.querySelector('.timeline-caption').textContent,"
                   "        v.querySelector('.tags-total').textContent,"
                   "        v.querySelector('th[data-key=total]').textContent]")
        assert "/ s" not in got[0] and got[0].startswith("bytes in use"), got
        assert got[1] == "1 value of pod, average profile in use 2 MiB", got  # not "1 values"
        assert got[2].startswith("Average in use"), got
        # two pods: the selection's average profile is 4 MiB, each pod's share
        # is of the pods' averages together (8 MiB), which the caption says
        two = unique("uigauge2")
        for pod, mib in (("a", 2), ("b", 6)):
            p = Pprof([("inuse_objects", "count"), ("inuse_space", "bytes")],
                      period_type=("space", "bytes"), period=524288)
            p.add(["main", "cache.Put"], [1, mib << 20])
            r = NODE.ingest(p.encode_gz(), name="%s{pod=%s}" % (two, pod), format="pprof", **{"from": NOW - 200})
            assert r.status == 200, r
        q2 = 'memory:inuse_space:bytes:space:bytes{service_name="%s"}' % two
        s = open_page(b, page(view="tags", query=q2, label="pod"), "a gauge's tags, two pods")
        assert [(v["value"], v["total"]) for v in s["values"]] == [("b", 6 << 20), ("a", 2 << 20)], s["values"]
        got = b.js("return document.querySelector('#view-tags .tags-total').textContent")
        assert got == ("2 values of pod, average profile in use 4 MiB; "
                       "shares of the values' averages, 8 MiB together"), got
        shot(b, "gauge-tags")


def test_errors_theme_and_defaults():
    with need_browser() as b:
        b.get(page(query=CPU + '{service_name=~"("}'))
        b.wait_js("return document.body.dataset.ready === 'true'", what="error")
        s = snap(b)
        assert s["error"] and "invalid_parameter" in s["error"], s["error"]
        # a failed query leaves no empty table, and no "no data in this range" beside the error
        shown = b.js("return [...document.querySelectorAll('#view-single > *')]"
                     ".filter((e) => e.getClientRects().length).map((e) => e.className)")
        assert shown == [], ("parts of the view shown under the error", shown)
        assert "no data" not in b.js("return document.querySelector('main').innerText"), "no data"
        # the selector the node refused stays in the bar as written: a missing
        # '}' showed as {service_name="..."}, a selector that would work
        for bad in ('{service_name="%s"' % SVC, '{service_name=="%s"}' % SVC):
            b.get(page(query=CPU + bad))
            b.wait_js("return document.body.dataset.ready === 'true'", what="error " + bad)
            assert snap(b)["error"], bad
            got = b.js("return document.getElementById('q-selector').value")
            assert got == bad, ("the bar does not show the selector that failed", bad, got)
        # in the diff view the forms that change the comparison stay
        b.get(page(view="diff", query=sel(version="v1"), rightQuery=CPU + '{service_name=~"("}'))
        b.wait_js("return document.body.dataset.ready === 'true'", what="diff error")
        assert snap(b)["error"], "the bad comparison is an error"
        shown = b.js("return [...document.querySelectorAll('#view-diff > *')]"
                     ".filter((e) => e.getClientRects().length).map((e) => e.className)")
        assert shown == ["diff-controls"], shown
        shot(b, "error-diff")
        # no query: the page picks a CPU type and a service and writes them in the URL
        s = open_page(b, "http://127.0.0.1:%d/" % NODE.port, "defaults")
        assert s["state"]["query"].startswith(CPU + "{service_name="), s["state"]
        assert "query=" in b.js("return location.search")
        b.get(page(query=sel()))
        b.wait_js("return document.body.dataset.ready === 'true'")
        theme = snap(b)["theme"]
        b.keys("t")
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.theme !== %s && s" % json.dumps(theme),
                      what="theme toggle")
        shot(b, "single-" + s["theme"])
        # text on the accent colour stays readable in both themes (white on the
        # dark theme's light blue was 2.4:1)
        for t in (s["theme"], theme):
            b.js("window.flamedbUI && document.documentElement.setAttribute('data-theme', %s)" % json.dumps(t))
            for el in ("#q-apply", "#tabs a.active"):
                c = contrast(b, el)
                assert c >= 4.5, ("low contrast", t, el, round(c, 2))
        b.js("document.documentElement.setAttribute('data-theme', %s)" % json.dumps(s["theme"]))
        bg = b.js("return getComputedStyle(document.body).backgroundColor")
        assert bg == ("rgb(22, 24, 29)" if s["theme"] == "dark" else "rgb(255, 255, 255)"), bg
        # the 400s of the bad query above are expected; script errors are not
        errs = [e for e in b.console_errors() if e.get("source") != "network"]
        assert not errs, errs


def test_sign_in():
    """A node with --auth-file: the page loads, asks for a token in its own
    form (no browser dialog), and shows the tenant's data once signed in."""
    import hashlib
    import tempfile
    tok = "ui-reader-token-1"
    fd, path = tempfile.mkstemp(prefix="flamedb-auth-")
    with os.fdopen(fd, "w") as f:
        f.write("acme read %s\nacme write %s\n" % (hashlib.sha256(tok.encode()).hexdigest(),
                                                    hashlib.sha256(b"ui-writer-token-1").hexdigest()))
    svc = unique("uiauth")
    try:
        with need_browser() as b, Node(name="uiauth", args=["--auth-file", path]) as n:
            r = n.request("POST", "/ingest?" + urllib.parse.urlencode(
                {"name": svc + ".cpu", "from": NOW - 60}), folded({"main;work": 7}),
                {"Authorization": "Bearer ui-writer-token-1"})
            assert r.status == 200, r
            url = "http://127.0.0.1:%d/?%s" % (n.port, urllib.parse.urlencode(
                {"query": sel(svc), "from": "now-1h"}))
            b.get(url)
            b.wait_js("return !document.getElementById('signin').hidden", what="the sign-in form")
            # behind the form: the 401, not an empty view saying "no data in this range"
            shown = b.js("return [...document.querySelectorAll('#view-single > *')]"
                         ".filter((e) => e.getClientRects().length).map((e) => e.className)")
            assert shown == [], ("an empty view behind the sign-in form", shown)
            shot(b, "sign-in")
            b.type("#signin-token", "wrong-token")
            b.click("#signin button[type=submit]")
            b.wait_js("return !document.getElementById('signin').hidden && "
                      "document.getElementById('signin-why').textContent.includes('refused')", what="refused")
            b.js("document.getElementById('signin-token').value = ''")
            b.type("#signin-token", tok)
            b.click("#signin button[type=submit]")
            s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.numTicks && s",
                          what="signed in")
            assert s["numTicks"] == 7 * NS and s["error"] is None, s
            assert b.js("return document.getElementById('signin').hidden")
            assert not b.js("return document.getElementById('signout').hidden")
            # an export link downloads through fetch, with the token (the
            # blob it would save is caught here)
            got = b.js_async("const done = arguments[arguments.length - 1];"
                             "const orig = URL.createObjectURL;"
                             "URL.createObjectURL = (blob) => { URL.createObjectURL = orig;"
                             "  blob.text().then(done); return 'about:blank'; };"
                             "document.querySelector('#view-single a[data-format=folded]').click();")
            assert got.strip() == "main;work %d" % (7 * NS), got
    finally:
        os.unlink(path)


def test_partial_warning():
    """A cluster that answers partially: the page says so, above the graph."""
    args = ["--query-timeout", "3000ms"] + FAST_FORMATION
    with need_browser() as b, Cluster(2, rf=1, args=args) as c:
        svc = unique("uipart")
        for i, node in enumerate(c.nodes):
            r = node.ingest(folded({"main;work": 5}), name=svc + ".cpu", **{"from": NOW - 60 + 10 * i})
            assert r.status == 200, r
        c.kill(1)
        url = "http://127.0.0.1:%d/?%s" % (c.nodes[0].port, urllib.parse.urlencode(
            {"query": CPU + "{}", "from": "now-1h"}))
        s = open_page(b, url, "a partial answer")
        assert s["partial"] and "partial answer" in s["partial"] and "n1" in s["partial"], s["partial"]
        no_exponents(b, "#view-single")  # 0.1 s over an hour was "2.8e-5 cores"
        shot(b, "partial")
        # the cluster view says which member is down
        b.get(url + "&view=cluster")
        s = b.wait_js("const s = window.flamedbUI.snapshot(); return s.ready && s.members && "
                      "s.members.length === 2 && s", what="the cluster view")
        states = {m["id"]: (m["state"], m["self"]) for m in s["members"]}
        assert states == {"n0": ("active", True), "n1": ("down", False)}, states
        rows = {r["name"]: r["cells"] for r in s["table"]}
        assert rows["n1"][1] == "down" and rows["n0"][3] == "self", rows
        shot(b, "cluster-down")


if __name__ == "__main__":
    print("  screenshots in %s" % ART, flush=True)
    run_tests(globals())
