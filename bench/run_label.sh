#!/usr/bin/env bash
# bench/run_label.sh - `slm label` throughput against the fake cloud (tests/tools/fake_cloud.c)
# answering every call after a fixed latency: rows/s at each concurrency, every call made
# (--no-cache), plus a re-run from the cache. Prints a Markdown table.
#
#   bench/run_label.sh [--rows N] [--latency-ms MS] [--concurrency "1 8 16"]
#
# SLM_BIN / SLM_BENCH_BUILD as in bench/common.sh (SLM_BENCH_BUILD=build reuses a build).
set -euo pipefail
BENCH_NAME=run_label
. "$(dirname "$0")/common.sh"

rows=200
latency=200
levels="1 8 16"
while [ $# -gt 0 ]; do
    case $1 in
    --rows) rows=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    --concurrency) levels=$2; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) bench_die "unknown option $1" ;;
    esac
done

bench_init
bench_slm fake_cloud
FAKE=$SLM_TOOLS/fake_cloud
export SLM_HOME=$BENCH_TMP/home
cd "$BENCH_TMP"

labels='["card_lost","refund","balance","transfer"]'
echo "$labels" >labels.json
{
    echo "id,text"
    for i in $(seq 1 "$rows"); do echo "$i,\"customer message number $i\""; done
} >rows.csv
for i in $(seq 1 "$rows"); do
    jq -cn --arg t "customer message number $i" --argjson l "$labels" --argjson i "$i" \
        '{input: $t, answer: $l[$i % 4]}'
done >gold.jsonl

"$FAKE" --port 0 --gold gold.jsonl --latency-ms "$latency" --price-in 0.15 --price-out 0.6 \
    >fake.out 2>fake.err &
fake=$!
trap 'kill $fake 2>/dev/null || true; rm -rf "$BENCH_TMP"' EXIT
for _ in $(seq 100); do grep -q '^port=' fake.out && break; sleep 0.05; done
port=$(sed -n 's/^port=//p' fake.out)
[ -n "$port" ] || bench_die "fake cloud did not start: $(cat fake.err)"
url=http://127.0.0.1:$port/v1

label() { # concurrency cache-args...
    local c=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    "$SLM_BIN" label rows.csv -o out.jsonl --labels labels.json --base-url "$url" --model m \
        --price-in 0.15 --price-out 0.6 --concurrency "$c" -q "$@" >sum.txt 2>err.txt ||
        bench_die "slm label failed: $(cat err.txt)"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v n="$rows" 'BEGIN { printf "%.2f %.1f", b - a, n / (b - a) }'
}

bench_log "$(bench_machine)"
echo "| run | concurrency | rows | wall s | rows/s | speed-up vs 1 |"
echo "|---|---|---|---|---|---|"
base=""
for c in $levels; do
    bench_log "concurrency $c: $rows rows at ${latency} ms a call"
    read -r wall rps <<<"$(label "$c" --no-cache)"
    [ -n "$base" ] || base=$rps
    echo "| every call made | $c | $rows | $wall | $rps | $(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.1fx", a / b }') |"
done
label 8 --cache calls.db >/dev/null
read -r wall rps <<<"$(label 8 --cache calls.db)"
echo "| re-run from the cache | 8 | $rows | $wall | $rps | — |"
bench_log "summary of the last run: $(cat sum.txt)"
