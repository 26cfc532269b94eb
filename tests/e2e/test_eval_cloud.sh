#!/bin/bash
# test_eval_cloud.sh - `slm eval` with cloud candidates and a judge, against the fake cloud
# (tests/tools/fake_cloud.c: wrong sometimes, slow, failing, charging per token, logging every
# call it answered): a local model vs two clouds on the same rows; the cloud's accuracy and cost
# equal what the fake cloud logged; a re-run makes zero calls; the cost cap is never exceeded
# (checked against the fake's log) and exits 3; a run killed with -9 resumes without paying
# twice for an answered call (only calls in flight at the kill can be); the judge in pass mode agrees with exact match when the judge is always right,
# and in pairwise mode counts a win only when both orders agree; the HTML report with cloud
# candidates and the judge renders in headless Chromium.
source "$(dirname "$0")/lib.sh"
need_model
command -v jq >/dev/null || skip "jq not installed"
FAKE=${SLM_TOOLS:?}/fake_cloud
[ -x "$FAKE" ] || fail "fake_cloud not built ($FAKE)"

W=$(mktemp -d /tmp/slm-e2e-evalc-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$W" "$SLM_HOME"
}
trap cleanup EXIT
export SLM_HOME=$W/home
cd "$W" || exit 1

# --- 40 rows, 3 labels; the gold answers are what a right cloud says
names=(Lily Tom Sue Ben Mia Sam)
things=(kite ball hat car)
colors=(red blue green)
for i in $(seq 0 39); do
    jq -cn --arg n "${names[i % 6]}" --arg t "${things[i % 4]}" --arg c "${colors[i % 3]}" \
        --arg id "$i" '{id: $id, text: "\($n) had a \($t), number \($id). What color was it?",
                        color: $c}'
done >rows.jsonl
jq -c '{input: .text, answer: .color}' rows.jsonl >gold.jsonl
printf '%s' '{{ text }} It was' >prompt.liquid

start_fake() { # name args...
    local name=$1
    shift
    fake_cloud_start "$W/$name" --gold gold.jsonl --log "$W/$name.log" "$@"
    pids+=("$FAKE_PID")
}
charged() { jq -s 'map(.charge) | add // 0' "$1"; }
calls() { jq -s 'map(select(.status == 200)) | length' "$1"; }

# "big": right 80% of the time, 30 ms, $1000 / $2000 per 1M tokens (dear, so cents show).
start_fake big --accuracy 0.8 --seed 1 --latency-ms 30 --price-in 1000 --price-out 2000
BIG=http://127.0.0.1:$FAKE_PORT/v1
# "small": right half the time, free; also the judge (always right unless told otherwise).
start_fake small --accuracy 0.5 --seed 9
SMALL=http://127.0.0.1:$FAKE_PORT/v1
start_fake judge --judge-accuracy 0.75 --seed 4
JUDGE=http://127.0.0.1:$FAKE_PORT/v1

cat >suite.yaml <<EOF
name: colors-cloud
data: {file: rows.jsonl, template: prompt.liquid, expected: color, input: text}
candidates:
  - {name: base, gguf: $MODEL}
  - {name: big, base-url: "$BIG", model: big-1, price-in: 1000, price-out: 2000}
  - {name: small, base-url: "$SMALL", model: small-1, structured: false}
metrics: [label]
max-tokens: 8
EOF

# --- 1. the run: accuracy and cost are what the fake cloud logged
out=$("$SLM" eval suite.yaml --threads 1 -q --json r.json 2>err.txt) || fail "eval: $(cat err.txt)"
contains "$out" "suite colors-cloud: 40 rows, 3 candidates" "table"
contains "$(cat err.txt)" "cloud: calls 80, from cache 0, failed 0" "cloud summary"
[ "$(calls big.log)" = 40 ] && [ "$(calls small.log)" = 40 ] || fail "calls: big $(calls big.log), small $(calls small.log)"
# The fake logs every answer it gave: the right ones are the gold ones.
right_big=$(jq -s --slurpfile g gold.jsonl '($g | map({(.input): .answer}) | add) as $gold |
    map(select(.status == 200 and ((.answer | fromjson? // {label: .}) | .label) == $gold[.input])) |
    length' big.log)
jq -e --argjson rb "$right_big" --argjson ch "$(charged big.log)" '
    (.candidates[] | select(.name == "big")) as $b |
    ($b.metrics.label.value * 40 | round) == $rb
    and (($b.cost_per_1k * 40 / 1000) - $ch | fabs) < 1e-9
    and $b.latency_ms.p50 >= 30 and $b.tokens.in > 0 and $b.errors == 0
    and (.candidates[] | select(.name == "small") | .cost_per_1k == 0 and .metrics.label.n == 40)
    and (.pairs | length) == 3' r.json >/dev/null ||
    fail "report vs the fake's log (right $right_big, charged $(charged big.log)): $(jq -c . r.json)"
# The structured candidate sent the label set as an enum; the plain one did not.
jq -e 'select(.status == 200) | .answer | fromjson | .label' big.log >/dev/null ||
    fail "big's answers were not structured"

# --- 2. a re-run makes zero calls and reports the same figures, latency included
"$SLM" eval suite.yaml --threads 1 -q --json r2.json >/dev/null 2>err.txt || fail "re-run: $(cat err.txt)"
contains "$(cat err.txt)" "cloud: calls 0, from cache 80" "re-run summary"
[ "$(calls big.log)" = 40 ] || fail "the re-run called the cloud"
[ "$(jq -c '[.candidates[1:][] | [.metrics, .latency_ms, .cost_per_1k]]' r.json)" = \
    "$(jq -c '[.candidates[1:][] | [.metrics, .latency_ms, .cost_per_1k]]' r2.json)" ] ||
    fail "cached figures differ: $(jq -c '.candidates[1]' r.json) vs $(jq -c '.candidates[1]' r2.json)"

# --- 3. the cost cap: never a cent over what the fake cloud charged, exit 3, resumable
cap=1.0
: >big.log
expect_exit 3 "$SLM" eval suite.yaml --threads 1 -q --cache capped.db --max-cost $cap
spent=$(charged big.log)
awk -v s="$spent" -v cap=$cap 'BEGIN { exit !(s <= cap && s > 0) }' ||
    fail "spent $spent over the cap $cap (or nothing)"
n1=$(calls big.log)
[ "$n1" -lt 40 ] || fail "the cap let all 40 calls through"
"$SLM" eval suite.yaml --threads 1 -q --cache capped.db --json capped.json >/dev/null 2>&1 ||
    fail "the run after the cap"
[ "$(calls big.log)" = 40 ] || fail "capped + resumed made $(calls big.log) calls for 40 rows ($n1 before)"
[ "$(jq -s 'group_by(.input) | map(length) | max' big.log)" = 1 ] || fail "a row was paid twice"

# --- 4. kill -9 mid-run, then resume: no answered call paid twice
: >big.log
kill "${pids[0]}"
start_fake big --accuracy 0.8 --seed 1 --latency-ms 150 --price-in 1000 --price-out 2000
sed -i "s|$BIG|http://127.0.0.1:$FAKE_PORT/v1|" suite.yaml
BIG=http://127.0.0.1:$FAKE_PORT/v1
"$SLM" eval suite.yaml --threads 1 -q --cache killed.db --concurrency 2 >/dev/null 2>&1 &
victim=$!
# Up to 30 s: on a loaded machine the run takes a while to load its local candidate.
for _ in $(seq 600); do
    [ "$(calls big.log)" -ge 6 ] && break
    sleep 0.05
done
kill -9 $victim 2>/dev/null || true
wait $victim 2>/dev/null || true
sleep 0.4 # let the calls in flight reach the fake's log
n1=$(calls big.log)
[ "$n1" -gt 0 ] && [ "$n1" -lt 40 ] || fail "the kill came at $n1 of 40 calls"
cached=$(sqlite3 killed.db 'select count(*) from calls' 2>/dev/null || echo "?")
"$SLM" eval suite.yaml --threads 1 -q --cache killed.db --concurrency 4 >/dev/null 2>err.txt ||
    fail "the resumed run: $(cat err.txt)"
contains "$(cat err.txt)" "from cache $cached" "the resumed run used what was cached"
# 40 calls are needed; only those in flight at the kill (at most 2) can be paid twice: their
# answers never arrived.
total=$(calls big.log)
{ [ "$total" -ge 40 ] && [ "$total" -le 42 ]; } ||
    fail "after kill -9 and a re-run the fake answered $total calls (40 needed, $n1 before)"

# --- 5. the judge: pass mode agrees with exact match when the judge is right
cat >judged.yaml <<EOF
data: {file: rows.jsonl, template: prompt.liquid, expected: color, input: text}
candidates:
  - {name: big, base-url: "$BIG", model: big-1, price-in: 1000, price-out: 2000}
  - {name: small, base-url: "$SMALL", model: small-1, structured: false}
metrics:
  - exact
  - {kind: judge, mode: pass, base-url: "$SMALL", model: judge-1}
EOF
"$SLM" eval judged.yaml -q --json pass.json >/dev/null 2>err.txt || fail "judge pass: $(cat err.txt)"
jq -e 'all(.candidates[]; .metrics.judge_pass.value == .metrics.exact.value
        and .metrics.judge_pass.n == 40)
    and .judge.mode == "pass" and .judge.no_verdict == 0
    and any(.pairs[]; .metric == "judge_pass")' pass.json >/dev/null ||
    fail "judge pass vs exact: $(jq -c '[.candidates[].metrics]' pass.json)"
# score mode: a right answer scores 5, a wrong one 1
sed -i 's/mode: pass/mode: score/' judged.yaml
"$SLM" eval judged.yaml -q --json score.json >/dev/null 2>&1 || fail "judge score"
jq -e 'all(.candidates[]; (.metrics.judge_score.value - (1 + 4 * .metrics.exact.value) | fabs) < 1e-9
        and .metrics.judge_score.ci95[0] <= .metrics.judge_score.value)' score.json >/dev/null ||
    fail "judge score vs exact: $(jq -c '[.candidates[].metrics]' score.json)"

# --- 6. pairwise with a judge that is wrong a quarter of the time and then favours "A"
sed -i "s|mode: score, base-url: \"$SMALL\"|mode: pairwise, base-url: \"$JUDGE\"|" judged.yaml
"$SLM" eval judged.yaml -q --json pw.json --markdown pw.md --html pw.html >pw.txt 2>err.txt ||
    fail "pairwise: $(cat err.txt)"
contains "$(cat pw.txt)" "judge_pairwise" "pairwise table"
jq -e --argjson calls "$(calls judge.log)" '
    (.pairs[] | select(.metric == "judge_pairwise")) as $p |
    (.pairs[] | select(.metric == "exact")) as $e |
    $p.a == "big" and $p.b == "small" and $p.n == 40
    and $p.only_a <= $e.only_a and $p.only_b <= $e.only_b
    and .judge.pairwise[0].split > 0 and $p.p_value >= 0 and $p.p_value <= 1' pw.json >/dev/null ||
    fail "pairwise: $(jq -c '{pairs, judge}' pw.json)"
# Every row is asked in both orders, at most two calls a row (the same two answers in both
# orders are one request, asked once).
n=$(calls judge.log)
{ [ "$n" -gt 40 ] && [ "$n" -le 80 ]; } || fail "pairwise made $n judge calls for 40 rows"

# --- 7. errors: a judge upstream that does not exist in the router, a missing key variable
cat >router.yaml <<EOF
local:
  small: {model: /nonexistent/model.gguf}
upstreams:
  - {name: cloud, base_url: "$BIG", model: big-1}
routes:
  - {name: r, local: small, escalate: [cloud]}
EOF
sed -i "s|base-url: \"$JUDGE\", model: judge-1|router: router.yaml, upstream: nope|" judged.yaml
expect_exit 1 "$SLM" eval judged.yaml -q
contains "$ERR" "judged.yaml:7: judge" "judge error names file and line"
contains "$ERR" "nope" "judge error names the upstream"
printf 'data: {file: rows.jsonl, template: prompt.liquid, expected: color, input: text}\ncandidates:\n  - {base-url: "%s", model: m, api-key-env: SLM_TEST_NO_SUCH_KEY}\nmetrics: [exact]\n' \
    "$BIG" >nokey.yaml
expect_exit 1 "$SLM" eval nokey.yaml -q
contains "$ERR" "SLM_TEST_NO_SUCH_KEY" "missing key variable"

# --- 8. the report with clouds and a judge, in headless Chromium
contains "$(cat pw.md)" "judge_pairwise" "markdown pairs"
code=0
got=$(html_probe "$W/pw.html" "$W/html") || code=$?
[ $code = 77 ] && { echo "ok: slm eval (cloud; HTML not rendered)"; exit 0; }
[ $code = 0 ] || exit $code
for want in "cost:shown:" "summary:" "pairs:" "disagree:"; do
    contains "$got" "$want" "rendered report"
done
echo "ok: slm eval with cloud candidates and a judge"
