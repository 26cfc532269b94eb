#!/usr/bin/env bash
# bench/run_router.sh - the small-first router, measured (issue 5).
#
#   bench/run_router.sh [--limit N] [--overhead N] [--overhead-only] [--model GGUF]
#                       [--correction none|prior|length]
#                       [--cloud-accuracy 0.92] [--price-in 2.5] [--price-out 10] [--threads 2]
#
# 1. Overhead: `slm serve --router` with a route whose local target is
#    stories260K (greedy, 8 tokens, no checks: always local) against the same
#    model asked directly on the same server, N requests each, alternating,
#    one keep-alive connection each. Added latency = router - direct, at p50
#    and p99. And in-process (tests/tools/router_overhead): the router's own
#    work per request (slm_router_chat's wall time minus the time inside the
#    local target), which machine load does not blur. Target: p99 < 1 ms.
# 2. banking77 (../shared/data/banking77, the dev split of DESIGN.md, cut in
#    two halves by the second byte of the same hash): a label route over the
#    local model (every one of the 77 labels scored) and the fake cloud
#    (tests/tools/fake_cloud: 92% accurate, priced per token, on loopback).
#    `slm route calibrate` chooses the label_prob threshold on the calibration
#    half for a target of 98% of the cloud's accuracy; `slm route` then runs
#    the test half four ways: all-local, all-cloud, small-first at that
#    threshold, and the oracle router (escalates exactly the requests the local
#    model gets wrong; computed from the all-local and all-cloud runs). Cost is
#    what the fake cloud itself logged as charged. Also the AUROC and ECE of
#    the label probability for "the local answer is right".
#    Targets: small-first reaches >= 98% of all-cloud accuracy at <= 1.25x the
#    oracle's cost; AUROC >= 0.85.
#
# The local model is stories260K fully fine-tuned on banking77's training
# rows with `slm tune` (docs/tuning.md's command), made once and cached as
# ${SLM_BENCH_MODELS:-~/.cache/slm/bench-models}/b77-full.gguf (about 20
# minutes of one core); --model uses another file.
#
# --overhead-only measures part 1 and stops (no tuned model, no banking77 runs).
#
# Output: a Markdown table on stdout; progress on stderr. No network beyond
# 127.0.0.1.
set -euo pipefail

BENCH_NAME=run_router
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

limit=0
n_overhead=300
model=
correction=none
cloud_acc=0.92
price_in=2.5
price_out=10
threads=2
overhead_only=0

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --limit) limit=${2:?}; shift 2 ;;
    --overhead) n_overhead=${2:?}; shift 2 ;;
    --overhead-only) overhead_only=1; shift ;;
    --model) model=${2:?}; shift 2 ;;
    --correction) correction=${2:?}; shift 2 ;;
    --cloud-accuracy) cloud_acc=${2:?}; shift 2 ;;
    --price-in) price_in=${2:?}; shift 2 ;;
    --price-out) price_out=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
command -v python3 >/dev/null || bench_die "python3 is not installed (the client and scorer)"
command -v curl >/dev/null || bench_die "curl is not installed"

bench_init
SHARED=${SLM_SHARED:-$SLM_ROOT/../shared}
STORIES=$SHARED/models/stories260K.gguf
B77=$SHARED/data/banking77
[ -f "$STORIES" ] || bench_die "no $STORIES (set SLM_SHARED)"
[ -f "$B77/train.csv" ] || bench_die "no banking77 data in $B77 (set SLM_SHARED)"
bench_slm fake_cloud router_overhead
[ -x "$SLM_TOOLS/fake_cloud" ] || bench_die "fake_cloud not built in $SLM_TOOLS"
eval_py=$SLM_ROOT/bench/router_eval.py
models=${SLM_BENCH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/slm/bench-models}
tmpl=$SLM_ROOT/tests/data/tune/banking77.liquid # what the model was tuned on (a row's `text`)
export SLM_HOME=$BENCH_TMP/home
pids=()
# shellcheck disable=SC2064 # expand now
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$BENCH_TMP"' EXIT

if [ -z "$model" ] && [ "$overhead_only" = 0 ]; then
    model=$models/b77-full.gguf
    if [ ! -f "$model" ]; then
        mkdir -p "$models"
        bench_log "tuning stories260K on banking77 (full fine-tune, once; ~20 min of one core)"
        "$SLM_BIN" tune "$STORIES" "$B77/train.csv" --template "$tmpl" --completion-field category \
            --valid-hash text:10 --ctx-size 256 --batch-size 2 --epochs 6 --lr 2e-3 --method full \
            --threads "$threads" -o "$model.tmp" >"$BENCH_TMP/tune.log" 2>&1 ||
            { tail -n 20 "$BENCH_TMP/tune.log" >&2; bench_die "slm tune failed"; }
        mv "$model.tmp" "$model"
    fi
fi

start_cloud() { # log -> cloud_port
    bench_fake_cloud --gold "$BENCH_TMP/gold.jsonl" --accuracy "$cloud_acc" --seed 7 \
        --price-in "$price_in" --price-out "$price_out" --log "$1"
}

# ---------------------------------------------------------------- 1. overhead

python3 "$eval_py" prepare "$B77/train.csv" "$B77/categories.json" "$BENCH_TMP" --limit "$limit" >&2
start_cloud "$BENCH_TMP/cloud_overhead.log"
cat >"$BENCH_TMP/overhead.yaml" <<EOF
local:
  story: {model: $STORIES, parameters: {temperature: 0, num_predict: 8}}
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$cloud_port/v1", model: frontier, price_in: $price_in, price_out: $price_out}
routes:
  - {name: story-routed, local: story, escalate: [cloud]}
meter: {ledger: $BENCH_TMP/overhead.db}
EOF
printf 'FROM %s\n' "$STORIES" >"$BENCH_TMP/Modelfile"
"$SLM_BIN" create story -f "$BENCH_TMP/Modelfile" >/dev/null || bench_die "slm create failed"
SLM_LOG=warn "$SLM_BIN" serve --port 0 --threads "$threads" --router "$BENCH_TMP/overhead.yaml" \
    --keep-alive -1 >"$BENCH_TMP/serve.out" 2>"$BENCH_TMP/serve.err" &
pids+=($!)
for _ in $(seq 200); do
    grep -q 'http://' "$BENCH_TMP/serve.out" && break
    sleep 0.05
done
port=$(grep -o 'http://127.0.0.1:[0-9]*' "$BENCH_TMP/serve.out" | head -n 1 | sed 's/.*://')
[ -n "$port" ] || bench_die "slm serve did not start: $(cat "$BENCH_TMP/serve.err")"
bench_log "overhead: $n_overhead requests via the router and directly"
ov=$(python3 "$eval_py" overhead "$port" story-routed story "$n_overhead") ||
    bench_die "overhead client failed"
bench_log "overhead: $ov"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
bench_log "overhead in process: $n_overhead requests"
"$SLM_TOOLS/router_overhead" "$BENCH_TMP/overhead.yaml" story-routed "$n_overhead" "Once upon a time" \
    >"$BENCH_TMP/overhead_inproc.txt" 2>&1 || { cat "$BENCH_TMP/overhead_inproc.txt" >&2; bench_die "router_overhead failed"; }

# ---------------------------------------------------------------- table, part 1

j() { jq -r "$1" <<<"$2"; }
f() { awk -v v="$1" -v d="${2:-3}" 'BEGIN { printf "%.*f", d, v }'; }
overhead_table() {
    printf '\nslm router, %s threads; %s\n\n' "$threads" "$(bench_machine)"
    printf '| router overhead (%s requests, stories260K, 8 tokens) | p50 | p99 |\n|---|---:|---:|\n' "$n_overhead"
    printf '| direct to the model, ms | %s | %s |\n' "$(f "$(j .direct_p50_ms "$ov")")" "$(f "$(j .direct_p99_ms "$ov")")"
    printf '| through the router, ms | %s | %s |\n' "$(f "$(j .router_p50_ms "$ov")")" "$(f "$(j .router_p99_ms "$ov")")"
    printf '| **added by the router, ms** (target p99 < 1) | %s | %s |\n' "$(f "$(j .added_p50_ms "$ov")")" "$(f "$(j .added_p99_ms "$ov")")"
    printf '| paired difference per request, ms | %s | %s |\n\n' "$(f "$(j .paired_diff_p50_ms "$ov")")" "$(f "$(j .paired_diff_p99_ms "$ov")")"
    printf 'in process (tests/tools/router_overhead, the router'"'"'s own work per request):\n\n```\n%s\n```\n\n' "$(cat "$BENCH_TMP/overhead_inproc.txt")"
}
if [ "$overhead_only" = 1 ]; then
    overhead_table
    exit 0
fi

# ---------------------------------------------------------------- 2. banking77

# The router renders a request's last user message as `input`; the tuning
# template names the CSV column `text`. The same prompt, byte for byte:
sed 's/{{ *text *}}/{{ input }}/' "$tmpl" >"$BENCH_TMP/intent.liquid"
write_router() { # cloud port, ledger
    cat >"$BENCH_TMP/router.yaml" <<EOF
local:
  b77:
    model: $model
    template: $BENCH_TMP/intent.liquid
    labels: $BENCH_TMP/labels.txt
    label_correction: $correction
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$1/v1", model: frontier, price_in: $price_in, price_out: $price_out, max_attempts: 3}
routes:
  - {name: all_local, local: b77, checks: {label_prob: 0}, escalate: [cloud]}
  - {name: all_cloud, local: b77, checks: {input_chars: 1}, escalate: [cloud]}
  - {name: small_first, local: b77, checks: {label_prob: 0.5}, escalate: [cloud]}
meter: {ledger: $2}
include: $BENCH_TMP/thresholds.yaml
EOF
}

target=$(awk -v a="$cloud_acc" 'BEGIN { printf "%.4f", 0.98 * a }')
printf 'routes: {}\n' >"$BENCH_TMP/thresholds.yaml"
start_cloud "$BENCH_TMP/cloud_calib.log"
write_router "$cloud_port" "$BENCH_TMP/calib.db"
bench_log "calibrate: small_first on $(wc -l <"$BENCH_TMP/calib.jsonl") rows, target accuracy $target"
"$SLM_BIN" route calibrate --router "$BENCH_TMP/router.yaml" --route small_first \
    --data "$BENCH_TMP/calib.jsonl" --target-accuracy "$target" --cloud-accuracy "$cloud_acc" \
    --out "$BENCH_TMP/thresholds.yaml" >"$BENCH_TMP/calibrate.txt" 2>"$BENCH_TMP/calibrate.err" ||
    { cat "$BENCH_TMP/calibrate.err" >&2; bench_die "slm route calibrate failed"; }
threshold=$(sed -n 's/.*label_prob: *\([0-9.eE+-]*\).*/\1/p' "$BENCH_TMP/thresholds.yaml" | head -n 1)
bench_log "calibrated label_prob threshold: ${threshold:-?}"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()

for r in all_local all_cloud small_first; do
    start_cloud "$BENCH_TMP/cloud_$r.log"
    write_router "$cloud_port" "$BENCH_TMP/$r.db"
    bench_log "slm route: $r on $(wc -l <"$BENCH_TMP/test_$r.jsonl") test rows"
    t0=$(date +%s.%N)
    "$SLM_BIN" route --router "$BENCH_TMP/router.yaml" "$BENCH_TMP/test_$r.jsonl" \
        -o "$BENCH_TMP/out_$r.jsonl" 2>"$BENCH_TMP/route_$r.err" ||
        { tail -n 5 "$BENCH_TMP/route_$r.err" >&2; bench_die "slm route ($r) failed"; }
    bench_log "$r: $(awk -v t="$t0" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f s", n - t }')"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
done
sc=$(python3 "$eval_py" score "$BENCH_TMP") || bench_die "scoring failed"
bench_log "score: $sc"

# ---------------------------------------------------------------- table
overhead_table

printf 'banking77 test half (%s rows), local: %s (label_correction %s), cloud: fake at %s accuracy, %s/%s per 1M tokens in/out\n\n' \
    "$(j .n "$sc")" "$(basename "$model")" "$correction" "$cloud_acc" "$price_in" "$price_out"
printf '| policy | accuracy | escalated | cloud cost | cost vs all-cloud |\n|---|---:|---:|---:|---:|\n'
allc=$(j .all_cloud.cost "$sc")
for p in all_local all_cloud small_first oracle; do
    label=$p
    [ "$p" = small_first ] && label="small_first (label_prob >= ${threshold:-?})"
    printf '| %s | %s%% | %s%% | %s | %s |\n' "$label" "$(f "$(j ".$p.accuracy * 100" "$sc")" 1)" \
        "$(f "$(j ".$p.escalated * 100" "$sc")" 1)" "$(f "$(j ".$p.cost" "$sc")" 5)" \
        "$(awk -v a="$(j ".$p.cost" "$sc")" -v b="$allc" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }')"
done
printf '\nsmall_first accuracy / all-cloud accuracy: %s (target >= 0.98)\n' "$(f "$(j .small_first_vs_cloud_accuracy "$sc")")"
printf 'small_first cost / oracle cost: %s (target <= 1.25)\n' "$(f "$(j .small_first_vs_oracle_cost "$sc")" 2)"
printf 'label_prob as a predictor of a right local answer: AUROC %s (target >= 0.85), ECE %s\n' \
    "$(f "$(j .auroc "$sc")")" "$(f "$(j .ece "$sc")")"
printf '\ncalibration (slm route calibrate on the other half):\n\n```\n%s\n```\n' "$(tail -n 25 "$BENCH_TMP/calibrate.txt")"
