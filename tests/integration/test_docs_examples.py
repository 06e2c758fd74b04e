"""test_docs_examples.py — the shell examples a new user copies first, run as
they are written against a real node: README.md's "Trying the API" (curl,
then flamectl) and docs/api.md's POST /ingest examples; that api.md names
every suffix a folded push's name may carry, and what a name without one
means; that every flag
of deploy/demo.sh is named where operations.md describes the demo; that every
flamegraph.pl command the documents show uses options it has; and that
operations.md's `flamectl cluster repair` example shows every kind of line a
real repair of a 3-node cluster prints.

Each block is taken from the document, its address 127.0.0.1:4040 replaced
by the node's and `flamectl` by the built one, and run by bash in a
temporary folder holding the files the examples name (stacks.txt,
cpu.pb.gz) with -e and pipefail; every curl gets -f, so an example the node
refuses (a 4xx, say a `from` older than max-past) fails the test. The
answers are then checked: the pushed stacks come back from the queries.
Skips, saying why, without curl.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse

from harness import CPU, FLAMEDB_BIN, ROOT, Node, Skip, run_tests
from profiles import Pprof

CTL = os.environ.get("FLAMECTL_BIN", os.path.join(ROOT, "build", "bin", "flamectl"))


def sh_blocks(doc, after, contains=""):
    """The ```sh blocks of doc after the heading `after` (up to the next
    heading of its level or above) that contain `contains`."""
    level = len(after.split(" ")[0])
    blocks, block, inside, fence = [], None, False, False
    for line in open(os.path.join(ROOT, doc), encoding="utf-8").read().splitlines():
        if line.startswith("```"):
            fence = not fence
            if inside and fence and line == "```sh":
                block = []
            elif inside and block is not None:
                blocks.append("\n".join(block) + "\n")
                block = None
            continue
        if block is not None:
            block.append(line)
        elif not fence and line.startswith("#"):
            heading = len(line) - len(line.lstrip("#"))
            if line == after:
                inside = True
            elif inside and heading <= level:
                break
    return [b for b in blocks if contains in b]


def run_block(block, node, cwd):
    script = block.replace("http://127.0.0.1:4040", "http://127.0.0.1:%d" % node.port)
    script = re.sub(r"(?m)(^|\|\s*|\s)curl ", r"\1curl -sSf ", script)
    script = re.sub(r"(?m)^flamectl ", "'%s' " % CTL, script)
    p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=dict(os.environ, FLAMEDB_URL="http://127.0.0.1:%d" % node.port))
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "a documented example failed (exit %d):\n%s\n--- output:\n%s" % (
        p.returncode, script, out)
    return out


def workdir():
    d = tempfile.mkdtemp(prefix="flamedb-docs-")
    with open(os.path.join(d, "stacks.txt"), "w") as f:
        f.write("main;work;hash 60\nmain;idle 40\n")
    p = Pprof([("cpu", "nanoseconds")], time_ns=int(time.time()) * 1000000000)
    p.add(["main", "work"], [30000000])
    with open(os.path.join(d, "cpu.pb.gz"), "wb") as f:
        f.write(p.encode_gz())
    return d


def need_curl():
    if shutil.which("curl") is None:
        raise Skip("curl not installed")


def test_readme_trying_the_api():
    need_curl()
    blocks = sh_blocks("README.md", "## Trying the API")
    assert len(blocks) == 2 and "curl" in blocks[0] and "flamectl" in blocks[1], blocks
    d = workdir()
    try:
        with Node(name="docs") as n:
            out = run_block(blocks[0], n, d)
            # the folded push comes back from the folded render in the same block
            assert "main;work;hash 600000000" in out and "main;idle 400000000" in out, out
            assert CPU in out, out  # label-values of __profile_type__
            out = run_block(blocks[1], n, d)
            assert "hash" in out and "cluster '" in out, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_api_ingest_examples():
    need_curl()
    blocks = sh_blocks("docs/api.md", "## `POST /ingest`", contains="/ingest?")
    assert blocks, "no ingest example in docs/api.md"
    d = workdir()
    try:
        with Node(name="docs") as n:
            for b in blocks:
                run_block(b, n, d)
            r = n.get("/pyroscope/render?" + "format=folded&from=now-2h&query=" +
                      CPU.replace(":", "%3A") + "%7Bservice_name%3D%22myapp%22%7D")
            assert r.status == 200 and b"main;work;hash" in r.body, (r, r.body[:300])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_folded_suffixes_documented():
    """api.md names every suffix of a folded push's name that selects a type
    (node/ingest/ingest_request.c, folded_types), and what a name without one
    is: all service name, of type CPU."""
    src = open(os.path.join(ROOT, "node", "ingest", "ingest_request.c"), encoding="utf-8").read()
    table = src[src.index("folded_types[] = {"):]
    table = table[:table.index("};")]
    suffixes = re.findall(r'\{"([a-z_]+)", "[a-z_]+",', table)
    assert "cpu" in suffixes and "alloc_space" in suffixes and len(suffixes) > 20, suffixes
    api = open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8").read()
    section = api[api.index("## `POST /ingest`"):api.index("## `GET /pyroscope/render`")]
    missing = [x for x in suffixes if "`.%s`" % x not in section]
    assert not missing, ("suffixes missing in api.md's POST /ingest", missing)
    with Node(name="docs") as n:
        now = int(time.time())
        for name in ("plainsvc", "my.svc", "my.svc.alloc_space"):
            r = n.ingest(b"main;work 7\n", name=name, **{"from": now - 30})
            assert r.status == 200, (name, r)
        names = n.get("/pyroscope/label-values?label=service_name").json()
        assert {"plainsvc", "my.svc"} <= set(names), names
        for svc, typ, want in (("plainsvc", CPU, 70000000), ("my.svc", CPU, 70000000),
                               ("my.svc", "memory:alloc_space:bytes:space:bytes", 7)):
            r = n.get("/pyroscope/render?format=folded&from=now-1h&query=" +
                      urllib.parse.quote('%s{service_name="%s"}' % (typ, svc)))
            assert r.status == 200 and r.body.decode().strip() == "main;work %d" % want, (svc, typ, r.body)


def test_demo_flags_documented():
    """Every flag deploy/demo.sh takes is named in operations.md's section on
    the demo (and in the script's own --help)."""
    script = open(os.path.join(ROOT, "deploy", "demo.sh"), encoding="utf-8").read()
    flags = set(re.findall(r"(?m)^\s+(--[a-z][a-z-]*)(?: \| -h)?\)", script)) - {"--help"}
    assert {"--nodes", "--rf", "--no-build"} <= flags, flags
    ops = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
    section = ops[ops.index("## 9. The local demo"):ops.index("## 10. ")]
    usage = script[:script.index("set -u")]
    missing = sorted(f for f in flags if "`%s" % f not in section)
    assert not missing, ("flags of deploy/demo.sh missing in operations.md section 9", missing)
    missing = sorted(f for f in flags if f not in usage)
    assert not missing, ("flags of deploy/demo.sh missing in its --help", missing)


# The documents an operator or user reads (the testing and benchmark notes
# name the options of the test and benchmark scripts instead), and the few
# options of other programs they show in a code span (chromium's).
USER_DOCS = ["README.md"] + [os.path.join("docs", f) for f in (
    "api.md", "architecture.md", "client.md", "cluster-protocol.md", "cluster.md", "common.md",
    "configuration.md", "internals.md", "operations.md", "query.md", "replication.md",
    "scatter-gather.md", "storage-format.md", "ui.md")]
OTHER_PROGRAMS_OPTIONS = {"--headless"}


def help_options(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout + out.stderr))


def test_documented_options_exist():
    """Every option the user documents show in a code span (`--name ...`) is
    one of flamedb, flamectl, flamedb-demo or deploy/demo.sh (their --help):
    cluster.md named `--max-tree-nodes`, which no program has."""
    bins = os.path.dirname(FLAMEDB_BIN)
    known = OTHER_PROGRAMS_OPTIONS.copy()
    for argv in ([FLAMEDB_BIN, "--help"], [CTL, "--help"],
                 [os.path.join(bins, "flamedb-demo"), "--help"],
                 ["bash", os.path.join(ROOT, "deploy", "demo.sh"), "--help"]):
        got = help_options(argv)
        assert len(got) > 3, ("no options in the help of", argv)
        known |= got
    bad, seen = [], 0
    for doc in USER_DOCS:
        for i, line in enumerate(open(os.path.join(ROOT, doc), encoding="utf-8"), 1):
            for m in re.finditer(r"`(--[a-z][a-z0-9-]*)", line):
                seen += 1
                if m.group(1) not in known:
                    bad.append("%s:%d %s" % (doc, i, m.group(1)))
    assert seen > 100, ("few options found: the pattern no longer matches the documents", seen)
    assert not bad, ("options no program has", bad)


# The options of Brendan Gregg's flamegraph.pl (its --help). A folded file
# with two counts per line is a differential by itself: there is no --diff.
FLAMEGRAPH_PL_OPTIONS = {"--title", "--subtitle", "--width", "--height", "--encoding", "--fonttype",
                         "--fontsize", "--fontwidth", "--minwidth", "--countname", "--nametype",
                         "--colors", "--bgcolors", "--hash", "--random", "--cp", "--reverse",
                         "--inverted", "--flamechart", "--negate", "--notes", "--factor", "--help"}


def test_flamegraph_pl_options():
    """Every flamegraph.pl command the documents show uses options it has
    (the diff's folded export was shown as `flamegraph.pl --diff`, which
    flamegraph.pl refuses)."""
    docs = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs")))
                            if f.endswith(".md")]
    bad, seen = [], 0
    for doc in docs:
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        for m in re.finditer(r"flamegraph\.pl((?:\s+--[a-z]+)*)", text):
            seen += 1
            bad += [(doc, o) for o in m.group(1).split() if o not in FLAMEGRAPH_PL_OPTIONS]
    assert seen > 0, "no flamegraph.pl command found: the pattern no longer matches the documents"
    assert not bad, ("flamegraph.pl has no such option", bad)


def shape(line):
    """A line of flamectl's output with its numbers and node ids made generic."""
    line = re.sub(r"\b(db|n)\d+\b", "ID", line.strip())
    return re.sub(r"\d+(\.\d+)?", "N", line)


def test_repair_example_matches_flamectl():
    """operations.md's `flamectl cluster repair` example (section 11) shows
    every kind of line a real repair of a 3-node cluster prints: it lacked
    the window check line a pass asked for on demand always adds."""
    from cluster import FAST_FORMATION, Cluster
    ops = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
    section = ops[ops.index("## 11. Repair"):]
    example = section[section.index("$ flamectl --url http://10.0.0.1:4040 cluster repair"):]
    example = example[:example.index("```")]
    documented = {shape(line) for line in example.splitlines()[1:] if line.strip() != "..."}
    with Cluster(3, rf=3, args=FAST_FORMATION) as c:
        r = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % c.nodes[0].port, "cluster", "repair"],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r
    printed = {shape(line) for line in r.stdout.splitlines()}
    # a real repair's line kinds, each shown in the example (the example may show more)
    missing = sorted(printed - documented)
    assert not missing, ("lines flamectl prints that the example lacks", missing, r.stdout)


if __name__ == "__main__":
    run_tests(globals())
