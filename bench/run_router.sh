#!/bin/bash
# bench/run_router.sh - the small-first router (docs/router.md). Prints two tables.
#
# (a) Overhead: the same request N times through the local target directly and through the
#     router (checks, response, ledger row), interleaved (tests/tools/router_overhead);
#     p50/p99 of the router's own work per request (wall time minus the time inside the local
#     target, from struct slm_router_info). Target: p99 < 1 ms.
# (b) banking77 dev split (DESIGN.md): stories260K scores the 77 labels, the fake cloud
#     (tests/tools/fake_cloud) answers at 92% accuracy and charges per token. The dev rows are
#     split in two: `slm route calibrate` picks the threshold on the first half for a target of
#     98% of all-cloud accuracy; the second half is routed four ways and measured against the
#     fake cloud's own log: all-local, all-cloud, small-first (calibrated threshold), and the
#     oracle router (escalates exactly the rows the local model gets wrong; computed from the
#     all-local answers and the all-cloud charges). Targets: small-first cost <= 1.25x the
#     oracle's at >= 98% of all-cloud accuracy; AUROC of label_prob >= 0.85.
#
# Usage: bench/run_router.sh [BUILD_DIR]   (env: ROWS=200 per half, N=200 overhead requests,
#        ADAPTER=path/to/banking.lora.gguf to route with a tuned stories260K)
# Needs: $SLM_SHARED (or ../shared) with models/stories260K.gguf and data/banking77, the
# build's slm, tools/fake_cloud and tools/router_overhead, jq and python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$HERE/build}
SLM=$BUILD/slm
SHARED=${SLM_SHARED:-$HERE/../shared}
STORIES=$SHARED/models/stories260K.gguf
B77=$SHARED/data/banking77
ROWS=${ROWS:-200}
N=${N:-200}
for f in "$SLM" "$BUILD/tools/fake_cloud" "$BUILD/tools/router_overhead"; do
    [ -x "$f" ] || { echo "missing $f (build first)" >&2; exit 1; }
done
[ -f "$STORIES" ] && [ -f "$B77/train.csv" ] || { echo "needs $STORIES and $B77" >&2; exit 1; }
W=$(mktemp -d /tmp/slm-bench-router-XXXXXX)
export SLM_HOME=$W/home
cloud_pid=
trap '[ -z "$cloud_pid" ] || kill $cloud_pid 2>/dev/null; rm -rf "$W"' EXIT
log() { echo "run_router: $*" >&2; }

python3 - "$B77" "$W" "$ROWS" <<'EOF'
import csv, hashlib, json, sys
src, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
dev = [r for r in csv.DictReader(open(f"{src}/train.csv", newline=""))
       if hashlib.sha256(r["text"].encode()).digest()[0] % 10 == 0]
open(f"{out}/labels.txt", "w").write("\n".join(json.load(open(f"{src}/categories.json"))) + "\n")
with open(f"{out}/gold.jsonl", "w") as g:
    for r in dev:
        g.write(json.dumps({"input": r["text"], "answer": r["category"]}) + "\n")
with open(f"{out}/calib.jsonl", "w") as c:
    for r in dev[0::2][:rows]:
        c.write(json.dumps({"input": r["text"], "answer": r["category"]}) + "\n")
with open(f"{out}/test.jsonl", "w") as t:
    for n, r in enumerate(dev[1::2][:rows]):
        t.write(json.dumps({"id": f"t{n}", "model": "ROUTE",
                            "messages": [{"role": "user", "content": r["text"]}]}) + "\n")
EOF

"$BUILD/tools/fake_cloud" --port 0 --gold "$W/gold.jsonl" --accuracy 0.92 --seed 11 \
    --price-in 150 --price-out 600 --log "$W/cloud.log" >"$W/cloud.out" 2>"$W/cloud.err" &
cloud_pid=$!
for _ in $(seq 100); do grep -q '^port=' "$W/cloud.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/^port=//p' "$W/cloud.out")
[ -n "$port" ] || { cat "$W/cloud.err" >&2; exit 1; }

cp "$STORIES" "$W/stories.gguf"
printf 'Text: {{ input }}\nIntent:' >"$W/intent.liquid"
adapter=
[ -z "${ADAPTER:-}" ] || adapter="    adapters: [{path: $(realpath "$ADAPTER")}]"
cat >"$W/router.yaml" <<EOF
local:
  intent:
    model: ./stories.gguf
    template: intent.liquid
    labels: labels.txt
$adapter
  story:
    model: ./stories.gguf
    parameters: {temperature: 0, num_predict: 4}
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$port/v1", model: big, price_in: 150, price_out: 600}
routes:
  - {name: overhead, local: story, checks: {output_chars_max: 100000}}
  - {name: all_local, local: intent}
  - {name: all_cloud, local: intent, checks: {input_chars: 1}, escalate: [cloud]}
  - {name: small_first, local: intent, checks: {label_prob: 0.5}, escalate: [cloud]}
meter: {ledger: ledger.db}
include: thresholds.yaml
EOF
printf 'routes: {}\n' >"$W/thresholds.yaml"

log "overhead: $N requests"
"$BUILD/tools/router_overhead" "$W/router.yaml" overhead "$N" "Once upon a time" >"$W/overhead.txt"

log "calibrating on $ROWS dev rows"
all_cloud_acc=0.92
"$SLM" route calibrate --router "$W/router.yaml" --route small_first --data "$W/calib.jsonl" \
    --target-accuracy "$(awk "BEGIN { print 0.98 * $all_cloud_acc }")" --cloud-accuracy "$all_cloud_acc" \
    >"$W/calib.txt"

run_route() { # route name
    sed "s/\"ROUTE\"/\"$1\"/" "$W/test.jsonl" >"$W/in-$1.jsonl"
    : >"$W/cloud.log"
    log "routing $ROWS dev rows: $1"
    "$SLM" route --router "$W/router.yaml" "$W/in-$1.jsonl" -o "$W/out-$1.jsonl" 2>/dev/null
    cp "$W/cloud.log" "$W/cloud-$1.log"
}
for r in all_local all_cloud small_first; do run_route "$r"; done

echo "## Router overhead ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
echo
echo '```'
cat "$W/overhead.txt"
echo '```'
echo
echo "## banking77 dev: stories260K${ADAPTER:+ + $(basename "$ADAPTER")} + fake cloud at 92%, $ROWS rows"
echo
python3 - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
gold = {json.loads(l)["input"]: json.loads(l)["answer"] for l in open(f"{w}/gold.jsonl")}
def load(route):
    rows = [json.loads(l) for l in open(f"{w}/out-{route}.jsonl")]
    inp = {json.loads(l)["id"]: json.loads(l)["messages"][0]["content"]
           for l in open(f"{w}/in-{route}.jsonl")}
    log = [json.loads(l) for l in open(f"{w}/cloud-{route}.log")]
    out = []
    for r in rows:
        text = inp[r["id"]]
        ans = r["response"]["choices"][0]["message"]["content"].strip()
        out.append((text, ans == gold[text], r["route"] == "escalated"))
    return out, sum(e["charge"] for e in log), log
print("| router | accuracy | escalated | cost | cost / oracle |")
print("|---|---|---|---|---|")
loc, _, _ = load("all_local")
cloud, cloud_cost, cloud_log = load("all_cloud")
sf, sf_cost, _ = load("small_first")
charge = {e["input"]: e["charge"] for e in cloud_log}
cloud_ok = {t: ok for t, ok, _ in cloud}
n = len(loc)
oracle_cost = sum(charge.get(t, 0) for t, ok, _ in loc if not ok)
oracle_acc = sum(1 if ok else cloud_ok.get(t, False) for t, ok, _ in loc) / n
def row(name, acc, esc, cost):
    ratio = f"{cost / oracle_cost:.2f}" if oracle_cost else "-"
    print(f"| {name} | {acc:.3f} | {esc:.1%} | {cost:.4f} | {ratio} |")
row("all-local", sum(ok for _, ok, _ in loc) / n, 0, 0)
row("all-cloud", sum(ok for _, ok, _ in cloud) / n, 1, cloud_cost)
row("small-first (calibrated)", sum(ok for _, ok, _ in sf) / n, sum(e for _, _, e in sf) / n, sf_cost)
row("oracle", oracle_acc, sum(not ok for _, ok, _ in loc) / n, oracle_cost)
EOF
echo
echo '```'
grep -E '^(rows|oracle|chosen)' "$W/calib.txt"
echo '```'
