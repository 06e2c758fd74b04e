#!/usr/bin/env bash
# tests/style/check_format.sh — clang-format (.clang-format at the root) over the
# product and test C files: *.c and *.h under common ring storage query node
# client tests, not generated code (*.pb-c.*) nor build directories. Changes
# nothing: lists each file that clang-format would change and exits 1 if any.
# Fix one with `clang-format -i FILE`.
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
command -v clang-format >/dev/null || { echo "check_format: clang-format not installed"; exit 2; }

mapfile -t files < <(find common ring storage query node client tests \
    \( -name 'build*' -o -name CMakeFiles -o -name corpus \) -prune -o \
    -type f \( -name '*.c' -o -name '*.h' \) ! -name '*.pb-c.*' -print 2>/dev/null | sort)
bad=0
for f in "${files[@]}"; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        n=$(clang-format --dry-run "$f" 2>&1 | grep -c ': warning:')
        echo "$f: not clang-formatted ($n places; clang-format -i $f)"
        bad=$((bad + 1))
    fi
done
echo "check_format: ${#files[@]} files, $bad not formatted ($(clang-format --version | head -1))"
[ "$bad" = 0 ]
