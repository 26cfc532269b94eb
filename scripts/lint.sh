#!/usr/bin/env bash
# Format and static analysis, as scripts/test.sh and `make lint` run them:
#   clang-format --dry-run -Werror over every tracked .c/.h (.clang-format;
#     `make format` fixes what it reports)
#   cppcheck over src/ (warning and portability checks); a finding is fixed,
#     or suppressed where it stands with `// cppcheck-suppress ID` and a
#     comment saying why it is wrong
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null || {
        echo "lint: $1 is not installed (scripts/setup.sh installs it)" >&2
        exit 1
    }
}
need clang-format
need cppcheck

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files '*.c' '*.h')
else
    files=$(find src include tests bench -name '*.c' -o -name '*.h' | sort)
fi
# shellcheck disable=SC2086 # file names have no spaces (STYLE.md layout)
if ! out=$(clang-format --dry-run -Werror $files 2>&1); then
    head -n 40 <<<"$out" >&2
    echo "format: the files above differ from .clang-format: run 'make format'" >&2
    exit 1
fi
echo "format: ok ($(wc -w <<<"$files") files)"

cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability --inline-suppr \
    --suppress=missingIncludeSystem -j "$(nproc)" -Iinclude -Isrc src
echo "cppcheck: ok"
