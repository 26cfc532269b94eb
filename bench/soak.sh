#!/usr/bin/env bash
# bench/soak.sh - a served day in minutes: does `slm serve` hold up?
#
#   bench/soak.sh [--duration S] [--concurrency N] [--json FILE]
#
# `slm serve --router` with the test model (stories260K, else a random-weight
# one: tests/tools/test-model.sh) and two routes over a fake cloud on
# loopback (tests/tools/fake_cloud) that fails 8% of calls with a 500,
# rate-limits 5% with a 429 and Retry-After, and hangs 2% until the
# upstream's deadline; one route answers locally and shadows 20% of its
# requests to the cloud, the other always escalates. bench/soak.mjs sends N
# concurrent connections of mixed traffic for S seconds (default 600 s, 32
# connections): OpenAI and Ollama, streamed and whole, tool calls, JSON
# schemas, embeddings, clients that leave mid-stream, malformed JSON,
# oversized bodies, unknown models, and the two routes.
#
# Every 10 s the server's RSS and open file descriptors are sampled. At the
# end: requests, answers by status, unexpected answers (goal 0: no 5xx from a
# local model, no 500, no resets, the right 4xx for bad input), p50/p99
# latency, RSS and fds over time (goal: flat, the last sample within 10% of
# the one at the 1-minute mark, for runs of 2 minutes or more), and the
# ledger's rows against the routed requests the clients were answered (goal:
# equal). Exits 1 when a goal is missed.
#
# Output: a Markdown report on stdout (and the raw figures as JSON with
# --json); progress on stderr. Uses SLM_BIN and SLM_TOOLS when both are set
# (the test suite's 60-second run: tests/e2e/test_soak.sh), else builds them.
set -euo pipefail

BENCH_NAME=soak
. "$(dirname "$0")/common.sh"

duration=600
concurrency=32
json_out=
while [ $# -gt 0 ]; do
    case $1 in
    --duration) duration=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bench_die "unknown argument '$1' (see --help)" ;;
    esac
done
command -v node >/dev/null || bench_die "node is needed (the load generator)"

bench_init
if [ -n "${SLM_BIN:-}" ] && [ -n "${SLM_TOOLS:-}" ]; then
    [ -x "$SLM_TOOLS/fake_cloud" ] || bench_die "fake_cloud not found in $SLM_TOOLS"
else
    bench_slm fake_cloud
fi
found=$("$SLM_ROOT/tests/tools/test-model.sh" any) || bench_die "no test model: $found"
model=${found#* }

work=$BENCH_TMP
export SLM_HOME=$work/home
mkdir -p "$SLM_HOME"
cp "$model" "$work/stories.gguf"
printf 'FROM %s\n' "$work/stories.gguf" >"$work/Modelfile"
"$SLM_BIN" create stories -f "$work/Modelfile" >/dev/null

pids=()
cleanup() {
    local p
    for p in "${pids[@]+"${pids[@]}"}"; do
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$BENCH_TMP"
}
trap cleanup EXIT

printf '%s\n' '{"input": "Once upon a time", "answer": "cloud says hi"}' >"$work/gold.jsonl"
bench_fake_cloud --gold "$work/gold.jsonl" --mix "500:0.08,429:0.05,timeout:0.02" --hang-s 30 \
    --retry-after 1 --latency-ms 20:40 --price-in 1000 --price-out 2000 --log "$work/cloud.log"

cat >"$work/router.yaml" <<EOF
local:
  gen:
    model: ./stories.gguf
    parameters: {temperature: 0, num_predict: 8}
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$cloud_port/v1", model: big, price_in: 1000,
     price_out: 2000, timeout: 5, max_attempts: 2, backoff_base: 0.05}
routes:
  - {name: soak-local, local: gen, escalate: [cloud], shadow: 0.2}
  - {name: soak-cloud, local: gen, checks: {token_mean: 1.0}, escalate: [cloud], deadline: 10}
meter:
  ledger: ledger.db
EOF

max_body=65536
"$SLM_BIN" serve --port 0 --parallel 4 --ctx-size 512 --max-body "$max_body" \
    --router "$work/router.yaml" >"$work/serve.out" 2>"$work/serve.err" &
server=$!
pids+=("$server")
url=
for _ in $(seq 200); do
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$work/serve.out" | head -n 1 || true)
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || bench_die "slm serve exited: $(cat "$work/serve.err")"
    sleep 0.05
done
[ -n "$url" ] || bench_die "slm serve did not start"

sample() { # seconds since start -> "t rss_kb fds"
    local rss fds
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status" 2>/dev/null || echo 0)
    fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    printf '%s %s %s\n' "$1" "$rss" "$fds"
}
start=$(date +%s)
(
    while kill -0 "$server" 2>/dev/null; do
        sample $(($(date +%s) - start))
        sleep 10
    done
) >"$work/samples" &
sampler=$!
pids+=("$sampler")

bench_log "$concurrency connections for $duration s against $url ($(bench_machine))"
node "$SLM_ROOT/bench/soak.mjs" "$url" --duration "$duration" --concurrency "$concurrency" \
    --model stories --routes soak-local,soak-cloud --max-body "$max_body" >"$work/soak.json"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sample $(($(date +%s) - start)) >>"$work/samples"

# SIGTERM must end the server promptly, even with shadow calls to a hanging cloud.
t0=$(date +%s%N)
kill -TERM "$server"
code=0
wait "$server" || code=$?
stop_ms=$((($(date +%s%N) - t0) / 1000000))

ledger_rows=$("$SLM_BIN" cost --router "$work/router.yaml" --json | jq '[.. | objects | select(has("key") and .key == "all") | .requests] | first // empty')
[ -n "$ledger_rows" ] || ledger_rows=$("$SLM_BIN" cost --router "$work/router.yaml" --json | jq '.total.requests // .requests // -1')

s=$work/soak.json
routed=$(jq .routed "$s")
unexpected=$(jq .unexpected "$s")
read -r rss_first fds_first < <(awk 'NR == 1 { print $2, $3 }' "$work/samples") || true
read -r rss_1m fds_1m < <(awk '$1 >= 60 { print $2, $3; exit }' "$work/samples") || true
read -r rss_end fds_end < <(tail -n 1 "$work/samples" | awk '{ print $2, $3 }') || true
rss_1m=${rss_1m:-$rss_first}
fds_1m=${fds_1m:-$fds_first}

goals=()
[ "$unexpected" = 0 ] || goals+=("unexpected answers: $unexpected")
[ "$ledger_rows" = "$routed" ] || goals+=("ledger rows $ledger_rows != routed requests answered $routed")
[ "$code" = 0 ] || goals+=("slm serve exited $code on SIGTERM")
[ "$stop_ms" -le 5000 ] || goals+=("SIGTERM took $stop_ms ms (goal: 5 s)")
if [ "$duration" -ge 120 ]; then
    awk -v a="$rss_1m" -v b="$rss_end" 'BEGIN { exit !(b <= a * 1.10) }' ||
        goals+=("RSS grew from $rss_1m kB at 1 min to $rss_end kB")
    [ "$fds_end" -le $((fds_1m + fds_1m / 10 + 2)) ] || goals+=("fds grew from $fds_1m to $fds_end")
fi

{
    echo "## slm serve soak: $duration s, $concurrency connections"
    echo
    echo "$(bench_machine); slm serve --parallel 4 --ctx-size 512 --router (2 routes); fake cloud:"
    echo "8% 500, 5% 429 + Retry-After, 2% hang, 20-60 ms latency"
    echo
    echo "| figure | value |"
    echo "|---|---|"
    echo "| requests | $(jq .requests "$s") ($(jq -r '.requests' "$s" | awk -v d="$duration" '{ printf "%.1f/s", $1 / d }')) |"
    echo "| answers by status | $(jq -r '.by_status | to_entries | map("\(.key): \(.value)") | join(", ")' "$s") |"
    echo "| unexpected answers (goal 0) | $unexpected |"
    echo "| latency p50 / p99 | $(jq .p50_ms "$s") ms / $(jq .p99_ms "$s") ms |"
    echo "| routed requests answered / ledger rows | $routed / $ledger_rows |"
    echo "| routed answers by status | $(jq -r '.routed_statuses | to_entries | map("\(.key): \(.value)") | join(", ")' "$s") |"
    echo "| RSS start / 1 min / end | $rss_first / $rss_1m / $rss_end kB |"
    echo "| open fds start / 1 min / end | $fds_first / $fds_1m / $fds_end |"
    echo "| SIGTERM to exit | $stop_ms ms (exit $code) |"
    echo
    echo "Per kind (status: count; latency):"
    echo
    jq -r '.by_kind as $k | .kind_ms | to_entries[] | "- \(.key): \($k[.key] | to_entries | map("\(.key): \(.value)") | join(", ")); p50 \(.value.p50) ms, p99 \(.value.p99) ms"' "$s"
    echo
    echo "RSS and fds every 10 s (t rss_kB fds): $(awk '{ printf "%s%s/%s/%s", (NR > 1 ? ", " : ""), $1, $2, $3 }' "$work/samples")"
    if [ "$unexpected" != 0 ]; then
        echo
        echo "Unexpected (first 10):"
        jq -c '.examples[]' "$s"
    fi
} | tee "$work/report.md"
if [ -n "$json_out" ]; then
    jq --argjson ledger "$ledger_rows" --argjson stop_ms "$stop_ms" \
        --arg samples "$(cat "$work/samples")" '. + {ledger_rows: $ledger, stop_ms: $stop_ms,
        samples: ($samples | split("\n") | map(select(length > 0) | split(" ") | map(tonumber)))}' \
        "$s" >"$json_out"
fi
if [ "${#goals[@]}" -gt 0 ]; then
    printf 'soak: goal missed: %s\n' "${goals[@]}" >&2
    tail -n 20 "$work/serve.err" >&2
    exit 1
fi
bench_log "all goals met"
