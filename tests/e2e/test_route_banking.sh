#!/usr/bin/env bash
# banking77 through the router: a label-set route (77 intents scored by stories260K) with a
# fake cloud answering at 92% accuracy. The threshold comes from `slm route calibrate` on other
# dev rows (written to the thresholds file router.yaml includes); then ~150 dev rows go through
# `slm route`, and the ledger's accounting (requests, escalations, costs) must match the fake
# cloud's own log. Dev split per DESIGN.md: first byte of sha256(text) divisible by 10.
source "$(dirname "$0")/lib.sh"
need_stories
B77=${SLM_SHARED:-/nonexistent}/data/banking77
[ -f "$B77/train.csv" ] || skip "banking77 not found under \$SLM_SHARED/data"
FAKE=${SLM_TOOLS:-build/tools}/fake_cloud
[ -x "$FAKE" ] || skip "fake_cloud not built"
command -v jq >/dev/null || skip "jq not installed"
command -v python3 >/dev/null || skip "python3 not installed"

# ~150 rows keep it to a few minutes; a sanitizer build is 3x slower, so it routes 50
rows=150
if ldd "$SLM" 2>/dev/null | grep -q 'libasan'; then
    rows=50
fi
work=$(mktemp -d /tmp/slm-route-b77-XXXXXX)
cloud_pid=
cleanup() {
    [ -z "$cloud_pid" ] || kill "$cloud_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work" "$SLM_HOME"
}
trap cleanup EXIT

python3 - "$B77" "$work" "$rows" <<'EOF'
import csv, hashlib, json, sys
src, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
dev = []
with open(f"{src}/train.csv", newline="") as f:
    for row in csv.DictReader(f):
        if hashlib.sha256(row["text"].encode()).digest()[0] % 10 == 0:
            dev.append(row)
labels = json.load(open(f"{src}/categories.json"))
open(f"{out}/labels.txt", "w").write("\n".join(labels) + "\n")
with open(f"{out}/gold.jsonl", "w") as g:
    for r in dev:
        g.write(json.dumps({"input": r["text"], "answer": r["category"]}) + "\n")
# every 4th dev row: 40 for calibration, the next 150 for the run (disjoint)
sample = dev[::4]
with open(f"{out}/calib.jsonl", "w") as c:
    for r in sample[:40]:
        c.write(json.dumps({"input": r["text"], "answer": r["category"]}) + "\n")
with open(f"{out}/in.jsonl", "w") as i:
    for n, r in enumerate(sample[40:40 + rows]):
        i.write(json.dumps({"id": f"b{n}", "model": "banking",
                            "messages": [{"role": "user", "content": r["text"]}]}) + "\n")
EOF

fake_cloud_start "$work/cloud" --gold "$work/gold.jsonl" --accuracy 0.92 --seed 7 \
    --price-in 150 --price-out 600 --log "$work/cloud.log"
cloud_pid=$FAKE_PID
port=$FAKE_PORT

cp "$STORIES" "$work/stories.gguf"
printf 'Text: {{ input }}\nIntent:' >"$work/intent.liquid"
cat >"$work/router.yaml" <<EOF
# banking77 intents: stories260K scores every label, the fake cloud takes the hard ones
local:
  intent:
    model: ./stories.gguf
    template: intent.liquid
    labels: labels.txt
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$port/v1", model: big, price_in: 150, price_out: 600}
routes:
  - name: banking
    local: intent
    checks: {label_prob: 0.5}
    escalate: [cloud]
meter:
  ledger: ledger.db
include: thresholds.yaml
EOF
printf 'routes: {}\n' >"$work/thresholds.yaml"

# calibrate: a target between local-only and all-cloud accuracy forces a real choice
"$SLM" route calibrate --router "$work/router.yaml" --data "$work/calib.jsonl" \
    --target-accuracy 0.6 --cloud-accuracy 0.92 --svg "$work/curve.svg" >"$work/calib.txt" \
    2>"$work/calib.err" || fail "calibrate failed: $(cat "$work/calib.err")"
grep -q 'AUROC' "$work/calib.txt" || fail "calibrate prints AUROC: $(cat "$work/calib.txt")"
grep -q 'label_prob' "$work/thresholds.yaml" || fail "thresholds written: $(cat "$work/thresholds.yaml")"
grep -q '^# banking77 intents' "$work/router.yaml" || fail "router.yaml untouched"
grep -q '<svg' "$work/curve.svg" || fail "curve.svg"
[ ! -s "$work/cloud.log" ] || fail "calibration must not call the cloud"

"$SLM" route --router "$work/router.yaml" "$work/in.jsonl" -o "$work/out.jsonl" \
    2>"$work/route.err" || fail "slm route failed: $(cat "$work/route.err")"
n=$(wc -l <"$work/in.jsonl")
[ "$(wc -l <"$work/out.jsonl")" = "$n" ] || fail "one answer per row"

"$SLM" cost --router "$work/router.yaml" --json >"$work/cost.json" || fail "slm cost --router"
total() { jq ".total.$1" "$work/cost.json"; }
[ "$(total requests)" = "$n" ] || fail "ledger requests $(total requests), want $n"
answered=$(jq -s '[.[] | select(.status == 200)] | length' "$work/cloud.log")
[ "$(total escalated)" = "$answered" ] || fail "ledger escalated $(total escalated), cloud log $answered"
[ "$(jq -r .route "$work/out.jsonl" | grep -c '^escalated$' || true)" = "$answered" ] ||
    fail "outputs marked escalated vs cloud log"
charges=$(jq -s '[.[].charge] | add // 0' "$work/cloud.log")
jq -en --argjson a "$(total spend)" --argjson b "$charges" '($a - $b) | fabs < 1e-9' >/dev/null ||
    fail "ledger spend $(total spend) != cloud charges $charges"
tin=$(jq -s '[.[] | select(.status == 200) | .prompt_tokens] | add // 0' "$work/cloud.log")
esc_in=$(jq -s '[.[] | select(.response.slm.route == "escalated") | .response.usage.prompt_tokens] | add // 0' "$work/out.jsonl")
[ "$tin" = "$esc_in" ] || fail "escalated prompt tokens: outputs $esc_in, cloud log $tin"

# accuracy of what the router returned, against the gold labels
acc=$(python3 - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
gold = {}
for l in open(f"{w}/gold.jsonl"):
    r = json.loads(l); gold[r["input"]] = r["answer"]
inp = {}
for l in open(f"{w}/in.jsonl"):
    r = json.loads(l); inp[r["id"]] = r["messages"][0]["content"]
ok = n = 0
for l in open(f"{w}/out.jsonl"):
    r = json.loads(l)
    ans = r["response"]["choices"][0]["message"]["content"].strip()
    ok += ans == gold[inp[r["id"]]]; n += 1
print(f"{ok / n:.3f}")
EOF
)
echo "banking77 route: $n rows, $answered escalated, accuracy $acc, spend $(total spend)," \
    "all-cloud $(total cloud_cost)"
sed -n '1p;/^chosen/p' "$work/calib.txt"
