"""Reads tests/style/modules.conf for the style checks (check_*.sh)."""
import fnmatch
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _list(col):
    return [] if col == "-" else col.split(",")


class Module:
    def __init__(self, cols):
        self.name, self.folder = cols[0], cols[1].rstrip("/")
        self.public = _list(cols[2])
        self.prefixes = _list(cols[3])
        self.deps = _list(cols[4])
        self.library = cols[5]

    def is_public(self, header):
        """header: a path relative to the repository root."""
        rel = os.path.relpath(header, self.folder)
        if rel.endswith("_int.h"):
            return False
        return any(fnmatch.fnmatchcase(rel, p) and ("/" in p or "/" not in rel)
                   for p in self.public)


def load(path=None):
    """-> (modules, known, generated): modules in file order; known maps
    prefix -> reason; generated maps a module name -> generated-code prefixes."""
    modules, known, generated = [], {}, {}
    with open(path or os.path.join(HERE, "modules.conf")) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = line.split(None, 2) if line.startswith("known ") else line.split()
            if cols[0] == "known" and len(cols) == 3:
                known[cols[1]] = cols[2]
            elif cols[0] == "generated" and len(cols) == 3:
                generated.setdefault(cols[1], []).extend(_list(cols[2]))
            elif len(cols) == 6:
                modules.append(Module(cols))
            else:
                raise SystemExit("modules.conf:%d: expected 6 columns, 'known PREFIX REASON' "
                                 "or 'generated MODULE PREFIXES'" % n)
    return modules, known, generated


def module_of(modules, path):
    """The module owning a repository-relative path (longest folder), or None."""
    best = None
    for m in modules:
        if path.startswith(m.folder + "/") and (best is None or len(m.folder) > len(best.folder)):
            best = m
    return best
