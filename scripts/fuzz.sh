#!/usr/bin/env bash
# Runs the libFuzzer harnesses that `make fuzz` builds into build-fuzz/fuzz/:
# each replays its seed corpus (tests/fuzz/corpus/<name>/) and then fuzzes for
# a fixed time; at the end a table gives seconds, executions and crashes per
# harness. Exit status 1 when any harness crashed (or failed its corpus).
#
#   scripts/fuzz.sh                  15 s each, $(nproc) at once (scripts/test.sh)
#   scripts/fuzz.sh 600              10 minutes each (make fuzz-long)
#   scripts/fuzz.sh 0                the seed corpora only
#   scripts/fuzz.sh 60 gguf resolve  only these harnesses
#   FUZZ_JOBS=N scripts/fuzz.sh      N harnesses at once
#
# New inputs go to build-fuzz/fuzz-corpus/<name>/ (kept between runs so
# coverage grows; not committed: copy an input that found a bug into
# tests/fuzz/corpus/<name>/), crash inputs to build-fuzz/fuzz-crashes/, each
# harness's log to build-fuzz/fuzz-logs/<name>.log. An input that takes over
# 10 s, or 2 GB, counts as a crash. docs/internals/fuzzing.md has the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-15}
[ $# -gt 0 ] && shift
jobs=${FUZZ_JOBS:-$(nproc)}
dir=build-fuzz
[ -d "$dir/fuzz" ] || {
    echo "fuzz: no $dir/fuzz/: build the harnesses first (make fuzz)" >&2
    exit 1
}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$dir"/fuzz/fuzz_*; do
        names+=("$(basename "$f" | sed 's/^fuzz_//')")
    done
fi
mkdir -p "$dir/fuzz-logs" "$dir/fuzz-crashes"

# One harness: corpus replay, then `secs` seconds of fuzzing; writes
# "name seconds executions crashes" to its .result file.
run_one() {
    local name=$1 bin=$dir/fuzz/fuzz_$1 seeds=tests/fuzz/corpus/$1
    local log=$dir/fuzz-logs/$name.log out=$dir/fuzz-corpus/$name
    local crashes=$dir/fuzz-crashes/$name-
    mkdir -p "$out"
    [ -d "$seeds" ] || seeds=""
    rm -f "$crashes"*
    local t0=$SECONDS rc=0
    # the seed corpus is read-only here: new units go to `out`
    local limit=-max_total_time=$secs
    [ "$secs" != 0 ] || limit=-runs=0
    timeout $((secs + 120)) "$bin" "$limit" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes" "$out" ${seeds:+"$seeds"} >"$log" 2>&1 || rc=$?
    local took=$((SECONDS - t0))
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    local n
    n=$(find "$dir/fuzz-crashes" -name "$name-*" | wc -l)
    if [ "$rc" != 0 ] && [ "$n" = 0 ]; then
        n=1 # died without writing an input (e.g. killed by the timeout)
    fi
    echo "$name $took ${execs:-0} $n" >"$dir/fuzz-logs/$name.result"
}

for name in "${names[@]}"; do
    [ -x "$dir/fuzz/fuzz_$name" ] || {
        echo "fuzz: no harness $dir/fuzz/fuzz_$name" >&2
        exit 1
    }
    rm -f "$dir/fuzz-logs/$name.result"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    run_one "$name" &
done
wait

failed=0
printf '%-16s %8s %12s %8s\n' harness seconds executions crashes
for name in "${names[@]}"; do
    read -r n took execs crashes <"$dir/fuzz-logs/$name.result"
    printf '%-16s %8s %12s %8s\n' "$n" "$took" "$execs" "$crashes"
    if [ "$crashes" != 0 ]; then
        failed=1
    fi
done
if [ "$failed" != 0 ]; then
    for name in "${names[@]}"; do
        read -r _ _ _ crashes <"$dir/fuzz-logs/$name.result"
        [ "$crashes" = 0 ] && continue
        echo "fuzz: fuzz_$name crashed; its log ($dir/fuzz-logs/$name.log) ends:" >&2
        grep -E 'ERROR|SUMMARY|#[0-9]+ .* in |artifact|Test unit written' \
            "$dir/fuzz-logs/$name.log" | head -n 20 >&2 || tail -n 20 "$dir/fuzz-logs/$name.log" >&2
        echo "fuzz: reproduce with $dir/fuzz/fuzz_$name $dir/fuzz-crashes/$name-*" >&2
    done
    exit 1
fi
