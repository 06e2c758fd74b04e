#!/usr/bin/env bash
# tests/style/check_layering.sh — include layering of the product code.
# Every #include "dir/x.h" of a .c/.h file in a module folder (tests/style/modules.conf)
# must name a header of its own module (its own *_int.h included) or a public
# header of a module it may depend on; a *_int.h is never included from another
# module. Tests may include anything. Prints file:line: reason per violation and
# exits 1 if there is any. docs/code-style.md describes the layering.
STYLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) PYTHONDONTWRITEBYTECODE=1 exec python3 - "$@" <<'PY'
import os, re, sys
sys.path.insert(0, os.environ["STYLE_DIR"])
import style_conf

modules, _, _ = style_conf.load()
by_name = {m.name: m for m in modules}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')


def allowed(m, target, header):
    """Why m may not include header of module target, or None if it may."""
    if os.path.basename(header).endswith("_int.h"):
        return "%s is %s's internal header" % (header, target.name)
    if not target.is_public(header):
        return "%s is not a public header of %s (%s)" % (
            header, target.name, ", ".join(target.public))
    rel = os.path.relpath(header, target.folder)
    if target.name in m.deps or "%s:%s" % (target.name, rel) in m.deps:
        return None
    return "%s may not include %s (%s -> %s)" % (m.name, target.name, m.name,
                                                 ", ".join(m.deps) or "nothing")


def files():
    seen = set()
    for m in modules:
        top = os.path.join(style_conf.ROOT, m.folder)
        for d, _, names in os.walk(top):
            for n in sorted(names):
                p = os.path.relpath(os.path.join(d, n), style_conf.ROOT)
                if n.endswith((".c", ".h")) and p not in seen:
                    seen.add(p)
                    yield p


bad = 0
count = 0
for path in sorted(files()):
    m = style_conf.module_of(modules, path)
    count += 1
    with open(os.path.join(style_conf.ROOT, path), errors="replace") as f:
        for n, line in enumerate(f, 1):
            hit = INCLUDE.match(line)
            if not hit or "/" not in hit.group(1):
                continue
            header = hit.group(1)
            target = style_conf.module_of(modules, header)
            if target is None or target is m:
                continue
            why = allowed(m, target, header)
            if why:
                print("%s:%d: %s" % (path, n, why))
                bad += 1
print("check_layering: %d files, %d violations" % (count, bad))
sys.exit(1 if bad else 0)
PY
