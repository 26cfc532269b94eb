#!/usr/bin/env bash
# bench/run_loop.sh - the whole loop of docs/eval.md on banking77, with real output: a "cloud"
# (tests/tools/fake_cloud.c on loopback: right 90% of the time, 200 ms +-100 ms a call, a few
# 429s and 500s, priced like a small frontier model) labels rows of the training split;
# `slm data check` looks at them; `slm tune` trains stories260K on them (full fine-tune);
# `slm eval` compares base vs tuned vs cloud on DESIGN.md's dev split (1,039 rows) with an HTML
# report; `slm route calibrate` picks the escalation threshold; `slm serve` answers through the
# router and `slm cost` shows the meter. Every step's output lands in OUT/ (default
# bench-loop/), the timings in OUT/timings.txt.
#
#   bench/run_loop.sh [--rows N] [--epochs E] [--out DIR] [--dev-limit N] [--from STEP]
#
# --from label|check|tune|eval|calibrate|serve starts at that step, reusing what the earlier
# steps left in OUT/.
#
# Needs ../shared/data/banking77 and ../shared/models/stories260K.gguf (or SLM_SHARED).
# SLM_BIN / SLM_BENCH_BUILD as in bench/common.sh. About 15 minutes on 2 cores.
set -euo pipefail
BENCH_NAME=run_loop
. "$(dirname "$0")/common.sh"

rows=1000   # labelled by the cloud: the first 80% train, the rest calibrate the router
epochs=6
dev_limit=0 # 0 = the whole dev split
out=$PWD/bench-loop
from=label
while [ $# -gt 0 ]; do
    case $1 in
    --rows) rows=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --dev-limit) dev_limit=$2; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --from) from=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) bench_die "unknown option $1" ;;
    esac
done

bench_init
bench_slm fake_cloud
SHARED=${SLM_SHARED:-$SLM_ROOT/../shared}
DATA=$SHARED/data/banking77
MODEL=$SHARED/models/stories260K.gguf
[ -f "$DATA/train.csv" ] && [ -f "$MODEL" ] || bench_die "needs $DATA/train.csv and $MODEL"
SLM=$SLM_BIN
mkdir -p "$out"
cd "$out"
steps=(label check tune eval calibrate serve)
[[ " ${steps[*]} " == *" $from "* ]] || bench_die "--from: one of ${steps[*]}"
want() { # STEP: true when STEP is at or after --from
    local s
    for s in "${steps[@]}"; do
        [ "$s" = "$from" ] && return 0
        [ "$s" = "$1" ] && return 1
    done
}
if [ "$from" = label ]; then
    rm -rf home ./*.jsonl ./*.gguf ./*.db
    : >timings.txt
fi
export SLM_HOME=$out/home
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$BENCH_TMP"' EXIT
timed() { # name command... : runs it, its stdout+stderr in NAME.txt, wall seconds logged
    local name=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    "$@" >"$name.txt" 2>&1 || { echo "exit $? ($name):"; tail -20 "$name.txt"; } >&2
    t1=$(date +%s.%N)
    printf '%-12s %8.1f s\n' "$name" "$(echo "$t1 - $t0" | bc)" | tee -a timings.txt >&2
}

# --- the data: the training split (dev rows held out by valid-hash text:10), unlabelled
cp "$SLM_ROOT/tests/data/tune/banking77.liquid" intent.liquid
jq -r '.[]' "$DATA/categories.json" >labels.txt
python3 - "$DATA/train.csv" "$rows" <<'EOF'
import csv, hashlib, json, sys
rows = [r for r in csv.DictReader(open(sys.argv[1], newline=""))]
dev = lambda t: hashlib.sha256(t.encode()).digest()[0] % 10 == 0
train = [r for r in rows if not dev(r["text"])]
# a deterministic spread over the training split, not its first intents only
step = max(1, len(train) // int(sys.argv[2]))
pick = train[::step][: int(sys.argv[2])]
with open("unlabelled.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text"])
    for r in pick:
        w.writerow([r["text"]])
with open("gold.jsonl", "w") as f:
    for r in rows:  # the cloud knows every row, dev included (it answers the eval too)
        f.write(json.dumps({"input": r["text"], "answer": r["category"]}) + "\n")
EOF

# --- the cloud: right 90% of the time, 200 +- 100 ms, some 429s and 500s, $0.15 / $0.60 per 1M
bench_fake_cloud --gold gold.jsonl --accuracy 0.9 --seed 7 --latency-ms 150:100 \
    --mix 429:0.02,500:0.02 --retry-after 0 --price-in 0.15 --price-out 0.60 --tokens bytes4 \
    --log cloud.log
URL=http://127.0.0.1:$cloud_port/v1
CLOUD=(--base-url "$URL" --model gpt-4o-mini --price-in 0.15 --price-out 0.60)

# 1. label
want label && timed label "$SLM" label unlabelled.csv -o labelled.jsonl --labels "$DATA/categories.json" \
    --field category "${CLOUD[@]}" --max-cost 0.50 --concurrency 8 -q
n_train=$((rows * 8 / 10))
head -n "$n_train" labelled.jsonl >train.jsonl
tail -n +"$((n_train + 1))" labelled.jsonl |
    jq -c 'select(.category != null) | {input: .text, answer: .category}' >calibrate.jsonl

# 2. data check (exit 1 = it found errors; they are the point of looking)
if want check; then
    timed check "$SLM" data check train.jsonl --template intent.liquid \
        --completion-field category --labels labels.txt --model "$MODEL"
    "$SLM" data check train.jsonl --template intent.liquid --completion-field category \
        --labels labels.txt --fix train-clean.jsonl >/dev/null 2>&1 || true
    [ -s train-clean.jsonl ] || cp train.jsonl train-clean.jsonl
fi

# 3. tune (full fine-tune: the model is tiny)
want tune && timed tune "$SLM" tune "$MODEL" train-clean.jsonl --template intent.liquid \
    --completion-field category --method full --epochs "$epochs" --lr 2e-3 --batch-size 2 \
    --ctx-size 256 -q -o tuned.gguf

# 4. eval: base vs tuned vs cloud on the dev split
limit_line=""
[ "$dev_limit" -gt 0 ] && limit_line="  limit: $dev_limit"
cat >banking.yaml <<EOF
name: banking77-dev
data:
  file: $DATA/train.csv
  template: intent.liquid
  expected: category
  input: text
  valid-hash: text:10
$limit_line
candidates:
  - {name: base, gguf: $MODEL}
  - {name: tuned, gguf: tuned.gguf}
  - {name: cloud, base-url: "$URL", model: gpt-4o-mini, price-in: 0.15, price-out: 0.60}
metrics: [label]
max-tokens: 16
EOF
want eval && timed eval "$SLM" eval banking.yaml --json eval.json --markdown eval.md --html eval.html \
    --concurrency 8 -q
# the cloud candidate again: every answer from the cache, no call made
grep -v 'name: base\|name: tuned' banking.yaml >cloud-only.yaml
want eval && timed eval-again "$SLM" eval cloud-only.yaml --json eval2.json --concurrency 8 -q

# 5. calibrate the router: tuned locally, escalate to the cloud when unsure. The router's
# template gets the user's message as `input` (the training template read the row's `text`).
sed 's/{{ text }}/{{ input }}/' intent.liquid >route-intent.liquid
cat >router.yaml <<EOF
local:
  intent:
    model: $out/tuned.gguf
    template: route-intent.liquid
    labels: labels.txt
upstreams:
  - {name: cloud, base_url: "$URL", model: gpt-4o-mini, price_in: 0.15, price_out: 0.60}
routes:
  - name: banking-intent
    local: intent
    checks:
      label_prob: 0.5
    escalate: [cloud]
meter:
  ledger: $out/ledger.db
EOF
want calibrate && timed calibrate "$SLM" route calibrate --router router.yaml --data calibrate.jsonl \
    --target-accuracy 0.85 --cloud-accuracy 0.9 --svg calibrate.svg

# 6. serve through the router, ask a few questions, read the meter
grep -q '^include:' router.yaml || echo 'include: thresholds.yaml' >>router.yaml # calibrated
rm -f ledger.db ledger.db-wal ledger.db-shm # the meter shows this step's requests only
"$SLM" serve --router router.yaml --port 0 >serve.out 2>serve.err &
pids+=($!)
for _ in $(seq 200); do
    port=$(grep -ho 'http://127.0.0.1:[0-9]*' serve.out 2>/dev/null | head -1 | sed 's/.*://' || true)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
done
[ -n "${port:-}" ] || bench_die "slm serve did not start: $(cat serve.err)"
python3 - "$DATA/train.csv" <<'EOF' >questions.txt
import csv, hashlib, sys
rows = [r for r in csv.DictReader(open(sys.argv[1], newline=""))]
dev = [r["text"] for r in rows if hashlib.sha256(r["text"].encode()).digest()[0] % 10 == 0]
print("\n".join(dev[:20]))
EOF
: >served.jsonl
while IFS= read -r q; do
    jq -cn --arg q "$q" '{model: "banking-intent", messages: [{role: "user", content: $q}]}' |
        curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
            -d @- | jq -c --arg q "$q" '{q: $q, a: .choices[0].message.content, slm: .slm}' >>served.jsonl
done <questions.txt
"$SLM" cost --router router.yaml >cost.txt 2>&1 || true
kill "${pids[-1]}" 2>/dev/null || true
echo "done: $out (timings.txt, label.txt, check.txt, tune.txt, eval.txt, eval.html, calibrate.txt, served.jsonl, cost.txt)" >&2
