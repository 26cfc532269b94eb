#!/bin/bash
# test_eval.sh - `slm eval` with the real binary on the test model (lib.sh
# need_model): a generated labelled dataset rendered by a template, three
# local candidates (the model, the model through a route of a router.yaml,
# the model with a tuned adapter); the JSON report's shape (jq); the label
# accuracy equal to `slm tune eval`'s on the same rows; generation metrics
# (exact, regex, json); clear errors; and the HTML report opened in headless
# Chromium: its charts and tables render, with no console errors.
source "$(dirname "$0")/lib.sh"
need_model

W=$(mktemp -d /tmp/slm-e2e-eval-XXXXXX)
trap 'rm -rf "$W" "$SLM_HOME"' EXIT
export SLM_HOME=$W/home

# --- a generated labelled dataset: rows + a template, the label in `color`
names=(Lily Tom Sue Ben Mia Sam)
things=(kite ball hat car)
colors=(" red" " blue" " green")
for i in $(seq 0 23); do
    jq -cn --arg n "${names[i % 6]}" --arg t "${things[i % 4]}" --arg c "${colors[i % 3]}" \
        --arg id "$i" '{id: $id, name: $n, thing: $t, color: $c}'
done >"$W/rows.jsonl"
printf '%s' '{{ name }} had a {{ thing }}. The {{ thing }} was' >"$W/prompt.liquid"
printf '%s' '{{ input }}' >"$W/input.liquid"

# --- a tiny adapter tuned on the repository's colors set, as test_tune.sh does
DATA=$SLM_SRC/tests/data/tune/colors.jsonl
VALID=$SLM_SRC/tests/data/tune/colors-valid.jsonl
"$SLM" tune "$MODEL" "$DATA" --steps 30 --lr 1e-2 --rank 8 --ctx-size 128 --threads 1 -q \
    -o "$W/tuned.gguf" >/dev/null 2>&1 || fail "slm tune failed"

cat >"$W/router.yaml" <<EOF
local:
  colors:
    model: $MODEL
    template: input.liquid
    labels: [" red", " blue", " green"]
routes:
  - {name: colors, local: colors}
meter:
  ledger: off
EOF

cat >"$W/suite.yaml" <<EOF
name: colors
data:
  file: rows.jsonl
  template: prompt.liquid
  expected: color
candidates:
  - name: base
    gguf: $MODEL
  - name: via-route
    router: router.yaml
    route: colors
  - name: tuned
    model: $MODEL
    adapter: tuned.gguf
metrics: [label]
EOF

# --- the run, its table and its reports
out=$("$SLM" eval "$W/suite.yaml" --threads 1 -q --json "$W/r.json" --markdown "$W/r.md" \
    --html "$W/r.html") || fail "slm eval exited $?: $out"
contains "$out" "suite colors: 24 rows, 3 candidates" "table header"
contains "$out" "95% CI [" "table intervals"
contains "$out" "paired tests" "table pairs"
jq -e '.suite == "colors" and .rows == 24 and (.candidates | length) == 3
    and ([.candidates[].name] == ["base", "via-route", "tuned"])
    and all(.candidates[]; .n == 24 and .errors == 0
        and (.metrics.label.value | type) == "number"
        and .metrics.label.value >= 0 and .metrics.label.value <= 1
        and (.metrics.label.ci95 | length) == 2
        and .metrics.label.ci95[0] <= .metrics.label.value
        and .metrics.label.ci95[1] >= .metrics.label.value
        and .metrics.label.n == 24
        and (.latency_ms.p50 | type) == "number" and .latency_ms.p95 >= .latency_ms.p50
        and .cost_per_1k == 0 and .tokens.in > 0)
    and (.pairs | length) == 3
    and all(.pairs[]; .metric == "label" and .n == 24 and .p_value >= 0 and .p_value <= 1)
    and (.labels | sort) == [" blue", " green", " red"]' "$W/r.json" >/dev/null ||
    fail "JSON report shape: $(cat "$W/r.json")"
contains "$(cat "$W/r.md")" "| base | gguf | 24 | label |" "markdown table"
contains "$(cat "$W/r.md")" "## Paired tests (McNemar)" "markdown pairs"
# The same suite and seed give the same figures.
"$SLM" eval "$W/suite.yaml" --threads 1 -q --json "$W/r2.json" >/dev/null
[ "$(jq -c '[.candidates[].metrics]' "$W/r.json")" = "$(jq -c '[.candidates[].metrics]' "$W/r2.json")" ] ||
    fail "a second run gave other figures"
# --limit
"$SLM" eval "$W/suite.yaml" --threads 1 -q --limit 5 --json "$W/r5.json" >/dev/null
jq -e '.rows == 5 and all(.candidates[]; .n == 5)' "$W/r5.json" >/dev/null || fail "--limit 5"
# A limit cuts the rows, not the task: the first two rows hold two colors, the label set is
# still all three (as slm tune eval scores them).
"$SLM" eval "$W/suite.yaml" --threads 1 -q --limit 2 --json "$W/r2l.json" >/dev/null
jq -e '.rows == 2 and (.labels | length) == 3' "$W/r2l.json" >/dev/null ||
    fail "--limit 2 changed the label set: $(jq -c .labels "$W/r2l.json")"

# --- label accuracy: exactly `slm tune eval`'s on the same rows, base and tuned
cat >"$W/same.yaml" <<EOF
data: {file: $VALID}
candidates:
  - {name: base, gguf: $MODEL}
  - {name: tuned, gguf: $MODEL, adapter: tuned.gguf}
metrics: [label]
EOF
expect_exit 1 "$SLM" eval "$W/same.yaml" # adapter goes with model only
contains "$ERR" "same.yaml:4: candidates[1].adapter: goes with model only" "adapter error"
sed -i 's/gguf: \([^,]*\), adapter/model: \1, adapter/' "$W/same.yaml"
"$SLM" eval "$W/same.yaml" --threads 1 -q --json "$W/same.json" >/dev/null
"$SLM" eval "$W/same.yaml" --threads 1 -q --limit 6 --json "$W/same6.json" >/dev/null
for c in base tuned; do
    adapter=()
    [ $c = tuned ] && adapter=(--adapter "$W/tuned.gguf")
    # all rows, and the first 6 (slm eval --limit = slm tune eval --eval-batches)
    for n in all 6; do
        limit=()
        report=$W/same.json
        [ $n = 6 ] && { limit=(--eval-batches 6); report=$W/same6.json; }
        te=$("$SLM" tune eval "$MODEL" "$VALID" "${adapter[@]}" "${limit[@]}" --threads 1)
        want=$(sed -n 's/.*accuracy \([0-9.]*\)%.*/\1/p' <<<"$te")
        got=$(jq -r --arg c $c '.candidates[] | select(.name == $c) | .metrics.label.value * 100 |
            . * 100 | round / 100' "$report")
        [ -n "$want" ] && [ -n "$got" ] || fail "$c ($n rows): no accuracy to compare ('$te', '$got')"
        awk -v a="$want" -v b="$got" 'BEGIN { exit !(a - b < 0.005 && b - a < 0.005) }' ||
            fail "$c ($n rows): slm eval accuracy $got% differs from slm tune eval's $want% ($te)"
    done
done

# --- generation metrics through the one request path
jq -c '{p: .prompt, c: .completion, obj: {color: .completion}}' "$VALID" | head -n 4 >"$W/gen.jsonl"
printf '%s' '{{ p }}' >"$W/p.liquid"
cat >"$W/gen.yaml" <<EOF
data: {file: gen.jsonl, template: p.liquid, expected: c, limit: 3}
candidates:
  - {name: base, gguf: $MODEL}
metrics: [exact, {kind: regex, pattern: "\\\\S"}]
max-tokens: 4
EOF
"$SLM" eval "$W/gen.yaml" --threads 1 -q --json "$W/gen.json" >/dev/null || fail "exact/regex run"
jq -e '.rows == 3 and (.candidates[0].metrics | has("exact") and has("regex"))
    and .candidates[0].tokens.out > 0 and (.pairs | length) == 0' "$W/gen.json" >/dev/null ||
    fail "generation report: $(cat "$W/gen.json")"
cat >"$W/json.yaml" <<EOF
data: {file: gen.jsonl, template: p.liquid, expected: obj, limit: 2}
candidates:
  - {name: base, gguf: $MODEL}
metrics: [{kind: json, schema: {type: object}}]
max-tokens: 48
EOF
"$SLM" eval "$W/json.yaml" --threads 1 -q --json "$W/json.json" >/dev/null || fail "json run"
jq -e '.candidates[0].metrics | has("json_valid") and has("json_schema") and has("json_f1")
    and has("json_precision") and has("json_recall")' "$W/json.json" >/dev/null ||
    fail "json metrics: $(cat "$W/json.json")"

# --- clear errors
printf 'data:\n  file: rows.jsonl\ncandidates:\n  - gguf: %s\nmetrics: [lable]\n' "$MODEL" \
    >"$W/bad.yaml"
expect_exit 1 "$SLM" eval "$W/bad.yaml"
contains "$ERR" "bad.yaml:5: metrics[0]: unknown metric 'lable'" "bad metric"
printf 'data: {file: rows.jsonl, template: prompt.liquid, expected: color}\ncandidates:\n  - {base-url: "http://127.0.0.1:9/v1", model: m}\nmetrics: [label]\n' >"$W/up.yaml"
expect_exit 1 "$SLM" eval "$W/up.yaml"
contains "$ERR" "candidate 'm': every call failed (row 1:" "unreachable upstream"
expect_exit 1 "$SLM" eval "$W/missing.yaml" # exit 3 is the cost cap, as for slm label
expect_exit 2 "$SLM" eval "$W/suite.yaml" --frobnicate
expect_exit 2 "$SLM" eval
"$SLM" eval --help | grep -q -- "--markdown FILE" || fail "--help"

# --- the HTML report in headless Chromium
code=0
got=$(html_probe "$W/r.html" "$W/html") || code=$?
[ $code = 77 ] && exit 0
[ $code = 0 ] || exit $code
for want in "cost:shown:" "labels:shown:" "coverage:shown:" "summary:4" "pairs:4" "disagree:"; do
    contains "$got" "$want" "rendered report"
done
# Per-label bars: 3 labels x 3 candidates, plus the background and legend swatches.
n_rect=$(sed -n 's/.*labels:shown:\([0-9]*\).*/\1/p' <<<"$got")
[ "$n_rect" -ge 10 ] || fail "per-label chart has $n_rect shapes: $got"
echo "ok: slm eval"
