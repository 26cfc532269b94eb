#!/usr/bin/env bash
# The second README command: the whole test suite, in a normal build and in an
# ASan+UBSan build, plus the source checks (banned functions, includes
# against the module arrows, clang-format, cppcheck) and the fuzz harnesses:
# each replays its seed corpus, then fuzzes for 15 s (scripts/fuzz.sh; about
# two minutes for all of them on 2 cores). After each suite it says which
# tests, test cases and checks skipped, and why.
#
#   scripts/test.sh             everything
#   SLM_TEST_QUICK=1 ...        normal build only (for a fast local loop)
#   SLM_FUZZ_TIME=N ...         N seconds of fuzzing per harness (0: replay only)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

llama_prefix=${SLM_LLAMA_PREFIX:-}
if [ -z "$llama_prefix" ] && [ -f .llama-prefix ]; then
    llama_prefix=$(cat .llama-prefix)
fi
[ -n "$llama_prefix" ] || llama_prefix=$(scripts/llama-deps.sh)

jobs=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
werror=OFF
[ "${CI:-}" = true ] && werror=ON

say "source checks"
scripts/check-source.sh
scripts/check-layers.sh
say "format and lint"
scripts/lint.sh

run_suite() { # name, build dir, extra cmake args...
    local name=$1 dir=$2
    shift 2
    say "$name build"
    cmake -S . -B "$dir" -DCMAKE_PREFIX_PATH="$llama_prefix" -DSLM_WERROR=$werror "$@" \
        >/dev/null
    cmake --build "$dir" -j "$jobs"
    say "$name tests"
    rm -rf "$dir/Testing/tap" && mkdir -p "$dir/Testing/tap"
    local rc=0
    (cd "$dir" && ctest --output-on-failure -j "$jobs") || rc=$?
    summaries+="$name build: $(tests/tools/skip-summary.sh "$dir" 2>&1 || true)"$'\n'
    if [ "$rc" != 0 ]; then
        printf '%s' "$summaries" >&2
        return "$rc"
    fi
}
summaries=""

run_suite "normal" build -DCMAKE_BUILD_TYPE=Release
if [ -z "${SLM_TEST_QUICK:-}" ]; then
    run_suite "ASan+UBSan" build-asan -DCMAKE_BUILD_TYPE=Debug -DSLM_SANITIZE=ON
    if command -v clang >/dev/null && ls tests/fuzz/fuzz_*.c >/dev/null 2>&1; then
        fuzz_time=${SLM_FUZZ_TIME:-15}
        say "fuzz harnesses: seed corpora, then ${fuzz_time}s of fuzzing each"
        CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug \
            -DCMAKE_PREFIX_PATH="$llama_prefix" -DSLM_FUZZ=ON -DSLM_TESTS=OFF >/dev/null
        cmake --build build-fuzz -j "$jobs"
        scripts/fuzz.sh "$fuzz_time"
    fi
fi
say "all tests passed; what did not run, and why:"
printf '%s' "$summaries"
