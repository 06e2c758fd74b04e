#!/usr/bin/env bash
# tests/style/check_symbols.sh [BUILD_DIR] — exported-name prefixes.
# Runs `nm -g --defined-only` on each module's static library in BUILD_DIR
# (default: build) and checks that every global symbol starts with one of the
# module's prefixes (tests/style/modules.conf). Generated protobuf-c symbols are
# allowed only in the module the conf names. A module whose folder does not exist
# is skipped; a module whose folder exists but whose library is not in BUILD_DIR
# fails. Prints library: symbol (source object): reason per offender and exits 1
# if there is any; 2 if BUILD_DIR holds no build. docs/code-style.md explains.
# tests/run.sh runs it after the release build, with that build's directory:
# style-check: after-build
STYLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) PYTHONDONTWRITEBYTECODE=1 exec python3 - "${1:-build}" <<'PY'
import os, subprocess, sys
sys.path.insert(0, os.environ["STYLE_DIR"])
import style_conf

modules, known, generated = style_conf.load()
build = sys.argv[1]
if not os.path.isabs(build):
    build = os.path.join(os.getcwd(), build)
if not os.path.isfile(os.path.join(build, "CMakeCache.txt")):
    print("check_symbols: %s is not a build directory (run cmake --build first)" % build)
    sys.exit(2)

libs = {}
for d, dirs, names in os.walk(build):
    dirs[:] = [x for x in dirs if x != "CMakeFiles"]
    for n in names:
        if n.startswith("lib") and n.endswith(".a"):
            libs.setdefault(n[3:-2], os.path.join(d, n))

gen_all = [p for ps in generated.values() for p in ps]
bad = nsyms = nlibs = 0
for m in modules:
    if not os.path.isdir(os.path.join(style_conf.ROOT, m.folder)):
        continue
    lib = libs.get(m.library)
    if lib is None:
        print("%s: lib%s.a not found in %s (fix the library column of modules.conf?)"
              % (m.name, m.library, build))
        bad += 1
        continue
    nlibs += 1
    out = subprocess.run(["nm", "-g", "--defined-only", "-A", lib], check=True,
                         capture_output=True, text=True).stdout
    ok = m.prefixes + generated.get(m.name, [])
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        where, sym = parts[0], parts[2]
        obj = where.rsplit(":", 2)[-2] if where.count(":") >= 2 else where
        nsyms += 1
        if any(sym.startswith(p) for p in gen_all) and m.name not in generated:
            why = "generated protobuf-c symbol outside its module"
        elif any(sym.startswith(p) for p in ok):
            continue
        else:
            why = "no %s prefix (%s)" % (m.name, ",".join(m.prefixes))
            for p, reason in known.items():
                if sym.startswith(p):
                    why += "; known: " + reason
        print("lib%s.a: %s (%s): %s" % (m.library, sym, obj, why))
        bad += 1
print("check_symbols: %d libraries, %d global symbols, %d offenders" % (nlibs, nsyms, bad))
sys.exit(1 if bad else 0)
PY
