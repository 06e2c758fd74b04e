#!/usr/bin/env bash
# tests/style/check_docs.sh — the docs stay true and self-contained:
#   1. the storage format version docs/storage-format.md states (its title and
#      the meta `format_version` row) is the code's STORAGE_FORMAT_VERSION;
#   2. no file of the repository points at documents outside it (the design,
#      reference, style or UI notes, or anything under ../shared) — the only
#      outside path allowed is the optional real-profile test corpus,
#      ../shared/testdata, which tests locate through FLAMEDB_TESTDATA;
#   3. docs/api.md's table of error statuses has a row for every status and
#      code an answer can carry: each error of common/err.h with its status,
#      each status node/ sets itself (fail, conn_refuse, http_respond_error
#      with a literal status; ROUTES_STATUS_CLIENT_GONE) with its error's code.
# Exits 1 with one line per problem, 0 when clean. Run from anywhere.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
FAIL=0
fail() { echo "check_docs: $*" >&2; FAIL=1; }

# ---- 1. format version ---------------------------------------------------------
HDR=storage/storage_int.h DOC=docs/storage-format.md
code=$(sed -n 's/^#define STORAGE_FORMAT_VERSION "\([0-9]*\)".*/\1/p' "$HDR")
[ -n "$code" ] || fail "$HDR: no STORAGE_FORMAT_VERSION \"N\" found"
title=$(sed -n '1s/.*(format version \([0-9]*\)).*/\1/p' "$DOC")
meta=$(sed -n 's/^| `format_version` | ASCII `\([0-9]*\)`.*/\1/p' "$DOC")
[ -n "$title" ] || fail "$DOC: the title does not state '(format version N)'"
[ -n "$meta" ] || fail "$DOC: the meta table has no '| \`format_version\` | ASCII \`N\`' row"
[ -n "$code" ] && [ -n "$title" ] && [ "$title" != "$code" ] &&
    fail "$DOC: the title says format version $title, $HDR says $code"
[ -n "$code" ] && [ -n "$meta" ] && [ "$meta" != "$code" ] &&
    fail "$DOC: the format_version row says $meta, $HDR says $code"

# ---- 2. no outside documents -----------------------------------------------------
# Tracked files plus new ones not yet added, without build output.
files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard
    else
        find . -path ./.git -prune -o -path './build*' -prune -o -type f -print0 | sed -z 's|^\./||'
    fi
}
SELF=tests/style/check_docs.sh
PAT='(DESIGN|REFERENCE|STYLE|UI-REFERENCE)\.md|\.\./shared'
while IFS= read -r hit; do
    # hit is file:line:text; ../shared/testdata (the test corpus) is allowed.
    text=${hit#*:*:}
    rest=$(printf '%s\n' "$text" | sed -E 's#\.\./shared/testdata##g')
    printf '%s\n' "$rest" | grep -Eq "$PAT" || continue
    fail "${hit%%:*}:$(echo "$hit" | cut -d: -f2): refers to a document outside the repository: $(echo "$text" | sed 's/^[[:space:]]*//' | cut -c1-120)"
done < <(files | grep -zv -e '^build' -e "^$SELF\$" | xargs -0 -r grep -nEI -H "$PAT" 2>/dev/null)

# ---- 3. every status and code in api.md ------------------------------------------
ERRH=common/err.h API=docs/api.md
declare -A CODE_OF=()
pairs=()
while read -r name c http; do
    CODE_OF[$name]=$c
    [ "$name" = OK ] || pairs+=("$http $c")
done < <(sed -nE 's/^ *X\(([A-Z_]+), *-?[0-9]+, *"([a-z_]+)", *([0-9]{3}),.*/\1 \2 \3/p' "$ERRH")
[ "${#pairs[@]}" -gt 10 ] || fail "$ERRH: could not read the error table"
while read -r st name; do
    pairs+=("$st ${CODE_OF[$name]:-?$name}")
done < <(grep -hoE '(fail|conn_refuse|http_respond_error)\(c, [0-9]{3}, ERR_[A-Z_]+' node/*.c |
    sed -E 's/.*\(c, ([0-9]{3}), ERR_([A-Z_]+)/\1 \2/')
gone=$(sed -nE 's/^#define ROUTES_STATUS_CLIENT_GONE ([0-9]{3}).*/\1/p' node/node_int.h)
[ -n "$gone" ] && pairs+=("$gone ${CODE_OF[UNAVAILABLE]}")
for p in $(printf '%s\n' "${pairs[@]}" | sort -u | tr ' ' '@'); do
    st=${p%@*} c=${p#*@}
    grep -qE "^ *\| $st \| [^|]*\`$c\`" "$API" ||
        fail "$API: the error table has no row for status $st with code \`$c\`"
done

if [ "$FAIL" = 0 ]; then
    echo "check_docs: ok (format version $code; no outside documents referenced; every error status in $API)"
fi
exit "$FAIL"
