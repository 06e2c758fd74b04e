"""test_corpus.py — the shared corpus of real profiles, POSTed file by file:
each pprof and folded file is ingested with exact totals (MANIFEST.tsv for
pprof, the file's own counts for folded) or refused with a 4xx that says why;
legacy formats are refused; the captured real-client requests are accepted.
Skips with a message when the corpus is absent ($FLAMEDB_TESTDATA or
../shared/testdata next to the repository)."""
import codecs
import csv
import glob
import gzip
import json
import os
import time

from harness import ROOT, Node, Skip, run_tests

CORPUS = os.environ.get("FLAMEDB_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")
HAVE = os.path.isfile(os.path.join(CORPUS, "MANIFEST.tsv"))
NOW = int(time.time())
# Corpus profiles carry their own (old) times: accept them and keep every window.
ARGS = ["--max-past", "3000000000", "--retention-10s", "0", "--retention-1m", "0",
        "--retention-10m", "0", "--retention-1h", "0", "--max-body-bytes", "32MiB"]
NODE = Node(name="corpus", args=ARGS).start() if HAVE else None
REFUSED = []
PROBLEMS = []


def need_corpus():
    if not HAVE:
        raise Skip("shared corpus not found at %s (set FLAMEDB_TESTDATA)" % CORPUS)


def manifest():
    with open(os.path.join(CORPUS, "MANIFEST.tsv"), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check_refusal(rel, r):
    assert 400 <= r.status < 500, "%s: status %d %r" % (rel, r.status, r.body[:300])
    j = r.json()
    assert j.get("code") and j.get("message"), (rel, j)
    REFUSED.append("%s -> %d %s" % (rel, r.status, j["message"][:120]))


def totals_by_type(svc):
    """{(sample_type, unit): total over all time} of one service."""
    out = {}
    types = NODE.label_values("__profile_type__", match='{service_name="%s"}' % svc,
                              **{"from": "1", "until": "now"})
    for t in types:
        parts = t.split(":")
        r = NODE.render('%s{service_name="%s"}' % (t, svc), "1", "now")
        if r.status != 200:
            PROBLEMS.append("%s: type %s listed but render answers %r" % (svc, t, r))
            continue
        total = r.json()["flamebearer"]["numTicks"]
        key = (parts[1], parts[2]) if len(parts) == 5 else (t, "")
        out[key] = out.get(key, 0) + total
    return out


def test_pprof_files_exact_or_refused():
    need_corpus()
    rows = [r for r in manifest() if r["file"].startswith("pprof/")]
    assert rows, "no pprof rows in MANIFEST.tsv"
    accepted = 0
    for i, row in enumerate(rows):
        rel = row["file"]
        with open(os.path.join(CORPUS, rel), "rb") as f:
            body = f.read()
        svc = "corpus%03d" % i
        r = NODE.ingest(body, name=svc + "{file=%s}" % os.path.basename(rel), format="pprof",
                        **{"from": NOW - 60})
        if r.status != 200:
            check_refusal(rel, r)
            continue
        accepted += 1
        got = totals_by_type(svc)
        for item in filter(None, row["totals"].split(",")):
            kind, want = item.rsplit("=", 1)
            stype, unit = kind.split("/", 1)
            # ingest spells sample types with '_' where older .NET agents
            # wrote '-' (alloc-samples), so both agent versions share series
            stype = stype.replace("-", "_")
            match = [v for (t, u), v in got.items()
                     if t.lower() == stype.lower() and u.lower() == unit.lower()]
            if match != [int(want)]:
                PROBLEMS.append("%s: %s want %s got %r" % (rel, kind, want, got))
    print("    pprof: %d accepted, %d refused, %d problems" % (accepted, len(rows) - accepted,
                                                          len(PROBLEMS)))
    assert not PROBLEMS, "\n".join(PROBLEMS)
    assert accepted >= len(rows) * 3 // 4, REFUSED


def test_legacy_formats_refused():
    need_corpus()
    for path in sorted(glob.glob(os.path.join(CORPUS, "legacy-nonproto", "*", "*"))):
        with open(path, "rb") as f:
            body = f.read()
        r = NODE.ingest(body, name="legacy", format="pprof", **{"from": NOW - 60})
        check_refusal(os.path.relpath(path, CORPUS), r)


def folded_expectation(raw):
    """(sum of counts, all lines valid) of a folded file, decoded as the spec allows."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        text = raw.decode("utf-16")
    else:
        text = raw.decode("utf-8", "replace")
    total, valid = 0, True
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            valid = False
            continue
        total += int(count)
    return total, valid


def test_folded_files_exact_or_refused():
    need_corpus()
    files = sorted(glob.glob(os.path.join(CORPUS, "folded", "*", "*")))
    assert files
    accepted = 0
    for i, path in enumerate(files):
        rel = os.path.relpath(path, CORPUS)
        with open(path, "rb") as f:
            raw = f.read()
        want, valid = folded_expectation(raw)
        svc = "folded%03d" % i
        r = NODE.ingest(raw, name=svc + ".cpu", **{"from": NOW - 120})
        if r.status != 200:
            check_refusal(rel, r)
            continue
        accepted += 1
        assert valid, "%s has lines without a count but was accepted" % rel
        got = NODE.total('process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="%s"}' % svc,
                         "now-1h", "now")
        assert got == want * 10**7, "%s: want %d got %d" % (rel, want * 10**7, got)
    print("    folded: %d accepted with exact totals, %d refused" % (accepted, len(files) - accepted))
    assert accepted >= len(files) * 3 // 4, REFUSED


def test_real_client_captures_accepted():
    need_corpus()
    metas = sorted(glob.glob(os.path.join(CORPUS, "ingest-captures", "*", "*.json")))
    assert metas
    for meta_path in metas:
        with open(meta_path) as f:
            meta = json.load(f)
        with open(meta_path[:-5] + ".body", "rb") as f:
            body = f.read()
        headers = {k: v for k, v in meta["headers"] if k.lower() not in ("host", "content-length")}
        headers["X-Scope-OrgID"] = "captures"
        r = NODE.request(meta["method"], meta["path"] + "?" + meta["raw_query"], body, headers)
        assert r.status == 200, (meta_path, r)
    assert NODE.label_values("service_name", tenant="captures", **{"from": "1"}), "nothing stored"


def test_node_survived_everything():
    need_corpus()
    assert NODE.alive() and NODE.get("/ready").status == 200
    if REFUSED:
        print("    refused (with reasons):\n      " + "\n      ".join(REFUSED))


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        if NODE:
            NODE.cleanup()
