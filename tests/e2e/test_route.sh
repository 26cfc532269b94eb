#!/usr/bin/env bash
# The router end to end: the real slm binary (`slm route`), stories260K as the local model and
# fake clouds on loopback (build/tools/fake_cloud). Checks: local answers; escalation on every
# check kind; retries through 429/500/timeout; fallback down the chain; local_fallback when
# every upstream fails; shadow sampling at the configured rate; resume of `slm route`; bad input
# lines; and the ledger's accounting checked against the fake clouds' OWN logs.
source "$(dirname "$0")/lib.sh"
need_model
FAKE=${SLM_TOOLS:-build/tools}/fake_cloud
[ -x "$FAKE" ] || skip "fake_cloud not built"
command -v jq >/dev/null || skip "jq not installed"

work=$(mktemp -d /tmp/slm-route-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work" "$SLM_HOME"
}
trap cleanup EXIT

# start_cloud NAME ARGS...: starts a fake cloud logging to $work/NAME.log; sets PORT_NAME.
start_cloud() {
    local name=$1
    shift
    fake_cloud_start "$work/$name" --log "$work/$name.log" --gold "$work/gold.jsonl" \
        --price-in 1000 --price-out 2000 "$@"
    pids+=("$FAKE_PID")
    eval "PORT_$name=$FAKE_PORT"
    touch "$work/$name.log"
}

printf '%s\n' '{"input": "Once upon a time", "answer": "cloud says hi"}' \
    '{"input": "tell me a story", "answer": "cloud story"}' >"$work/gold.jsonl"

start_cloud main
start_cloud flaky --faults 429,500,timeout,ok --hang-s 3 --retry-after 0
start_cloud down --faults 500x1000
start_cloud shadow

cp "$MODEL" "$work/stories.gguf"
printf 'Story: {{ input }}\n' >"$work/story.liquid"
printf 'Text: {{ input }}\nAnswer:' >"$work/label.liquid"
printf 'happy\nsad\nangry\n' >"$work/labels.txt"

gen_route() { # name, checks (inline yaml mapping), escalate list
    printf '  - name: %s\n    local: gen\n    checks: %s\n    escalate: %s\n' "$1" "$2" "$3"
}

{
    cat <<EOF
# router for the e2e test
local:
  gen:
    model: ./stories.gguf
    template: story.liquid
    parameters: {temperature: 0, num_predict: 8, seed: 1}
  slow:
    model: ./stories.gguf
    template: story.liquid
    parameters: {temperature: 0, num_predict: 400}
    timeout: 0.001
  label:
    model: ./stories.gguf
    template: label.liquid
    labels: labels.txt
  genlabels:
    model: ./stories.gguf
    template: story.liquid
    labels: labels.txt
    label_mode: generate
    parameters: {temperature: 0, num_predict: 4}
upstreams:
  - {name: main, base_url: "http://127.0.0.1:$PORT_main/v1", model: m1, price_in: 1000, price_out: 2000, backoff_base: 0.01}
  - {name: flaky, base_url: "http://127.0.0.1:$PORT_flaky/v1", model: m2, price_in: 1000, price_out: 2000, timeout: 1, max_attempts: 4, backoff_base: 0.01, backoff_max: 0.05}
  - {name: down, base_url: "http://127.0.0.1:$PORT_down/v1", model: m3, price_in: 1000, price_out: 2000, max_attempts: 2, backoff_base: 0.01, breaker_failures: 1000}
  - {name: shadow, base_url: "http://127.0.0.1:$PORT_shadow/v1", model: m4, price_in: 1000, price_out: 2000}
routes:
EOF
    gen_route local '{}' '[main]'
    gen_route token_mean '{token_mean: 1.0}' '[main]'
    gen_route token_min '{token_min: 1.0}' '[main]'
    gen_route token_quantile '{token_quantile: 1.0}' '[main]'
    gen_route input_chars '{input_chars: 3}' '[main]'
    gen_route input_nontext '{input_nontext: 0.01}' '[main]'
    gen_route input_line '{input_line: 4}' '[main]'
    gen_route input_tokens '{input_tokens: 2}' '[main]'
    gen_route json '{json: true}' '[main]'
    gen_route json_schema '{json_schema: {type: object}}' '[main]'
    gen_route regex "{regex: '^NEVER\$'}" '[main]'
    gen_route liquid "{liquid: 'output.size > 100000'}" '[main]'
    gen_route output_chars_min '{output_chars_min: 100000}' '[main]'
    gen_route output_tokens_max '{output_tokens_max: 1}' '[main]'
    printf '  - {name: local_error, local: gen, escalate: [main]}\n'
    printf '  - {name: local_timeout, local: slow, escalate: [main]}\n'
    printf '  - {name: label_prob, local: label, checks: {label_prob: 0.999}, escalate: [main]}\n'
    printf '  - {name: in_labels, local: genlabels, checks: {in_labels: true}, escalate: [main]}\n'
    gen_route retries '{token_mean: 1.0}' '[flaky]'
    gen_route chain '{token_mean: 1.0}' '[down, main]'
    gen_route fallback '{token_mean: 1.0}' '[down]'
    printf '  - {name: shadowed, local: gen, escalate: [shadow], shadow: 0.5}\n'
    printf 'meter:\n  ledger: ledger.db\n'
} >"$work/router.yaml"

req() { # id, route, content
    jq -cn --arg id "$1" --arg m "$2" --arg c "$3" \
        '{id: $id, model: $m, messages: [{role: "user", content: $c}]}'
}

# ---- 1. local answers and escalation on every check kind
{
    req l1 local "Once upon a time"
    req l2 local "tell me a story"
    for k in token_mean token_min token_quantile input_chars input_line input_tokens json \
        json_schema regex liquid output_chars_min output_tokens_max label_prob in_labels; do
        req "e-$k" "$k" "Once upon a time"
    done
    req e-input_nontext input_nontext $'Once\x01\x02 upon a time'
    req e-local_timeout local_timeout "Once upon a time"
    req e-local_error local_error "$(printf 'Once upon a time there was a girl %.0s' $(seq 600))"
} >"$work/in1.jsonl"
"$SLM" route --router "$work/router.yaml" "$work/in1.jsonl" -o "$work/out1.jsonl" \
    2>"$work/route1.err" || fail "slm route failed: $(cat "$work/route1.err")"
[ "$(wc -l <"$work/out1.jsonl")" = "$(wc -l <"$work/in1.jsonl")" ] || fail "one output per input"
for id in l1 l2; do
    line=$(jq -c "select(.id == \"$id\")" "$work/out1.jsonl")
    [ "$(jq -r .route <<<"$line")" = local ] || fail "$id should be local: $line"
    [ "$(jq -r .response.slm.route <<<"$line")" = local ] || fail "$id slm field: $line"
    [ -n "$(jq -r '.response.choices[0].message.content' <<<"$line")" ] || fail "$id content"
done
for k in token_mean token_min token_quantile input_chars input_nontext input_line input_tokens \
    json json_schema regex liquid output_chars_min output_tokens_max label_prob in_labels \
    local_error local_timeout; do
    line=$(jq -c "select(.id == \"e-$k\")" "$work/out1.jsonl")
    [ "$(jq -r .route <<<"$line")" = escalated ] || fail "e-$k should escalate: $line"
    case $k in
    output_chars_min) want=output_chars ;;
    output_tokens_max) want=output_tokens_max ;;
    local_error) want=local_error:overflow ;;
    local_timeout) want=local_error:timeout ;;
    *) want=$k ;;
    esac
    contains "$(jq -r .reason <<<"$line")" "$want" "reason of e-$k"
    [ "$(jq -r '.response.slm.target' <<<"$line")" = main/m1 ] || fail "e-$k target: $line"
done
[ "$(jq -r 'select(.id == "e-token_mean") | .response.choices[0].message.content' \
    "$work/out1.jsonl")" = "cloud says hi" ] || fail "the cloud's answer is returned"

# ---- 2. fault paths: retries through 429/500/timeout; fallback down the chain; local_fallback
{
    req f1 retries "Once upon a time"
    req f2 chain "tell me a story"
    req f3 fallback "Once upon a time"
} >"$work/in2.jsonl"
"$SLM" route --router "$work/router.yaml" "$work/in2.jsonl" -o "$work/out2.jsonl" \
    2>"$work/route2.err" || fail "slm route (faults) failed: $(cat "$work/route2.err")"
f1=$(jq -c 'select(.id == "f1")' "$work/out2.jsonl")
[ "$(jq -r .route <<<"$f1")" = escalated ] || fail "retries should end escalated: $f1"
[ "$(jq -r '.response.choices[0].message.content' <<<"$f1")" = "cloud says hi" ] || fail "f1"
[ "$(jq -s 'length' "$work/flaky.log")" = 4 ] || fail "flaky cloud saw $(jq -s length \
    "$work/flaky.log") attempts, want 4 (429, 500, timeout, ok)"
f2=$(jq -c 'select(.id == "f2")' "$work/out2.jsonl")
[ "$(jq -r .route <<<"$f2")" = escalated ] || fail "chain should reach main: $f2"
[ "$(jq -r .response.slm.target <<<"$f2")" = main/m1 ] || fail "f2 target: $f2"
[ "$(jq -r .reason <<<"$f2")" = "token_mean<1,upstream:server_error" ] || fail "f2 reason: $f2"
f3=$(jq -c 'select(.id == "f3")' "$work/out2.jsonl")
[ "$(jq -r .route <<<"$f3")" = local_fallback ] || fail "every upstream failed: $f3"
[ "$(jq -r .response.slm.route <<<"$f3")" = local_fallback ] || fail "f3 marked: $f3"
contains "$(jq -r .reason <<<"$f3")" "token_mean<1" "f3 reason"

# ---- 3. shadow sampling at the configured rate (0.5 of 40)
for i in $(seq 40); do req "s$i" shadowed "Once upon a time"; done >"$work/in3.jsonl"
"$SLM" route --router "$work/router.yaml" "$work/in3.jsonl" -o "$work/out3.jsonl" \
    2>"$work/route3.err" || fail "slm route (shadow) failed: $(cat "$work/route3.err")"
[ "$(jq -r .route "$work/out3.jsonl" | sort -u)" = local ] || fail "shadow answers are local"
n_shadow=$(jq -s 'length' "$work/shadow.log")
[ "$n_shadow" -ge 8 ] && [ "$n_shadow" -le 32 ] || fail "shadowed $n_shadow of 40 at rate 0.5"

# ---- 4. resume: cut the output after 2 lines plus half a line, rerun
for i in $(seq 6); do req "r$i" local "Once upon a time"; done >"$work/in4.jsonl"
"$SLM" route --router "$work/router.yaml" "$work/in4.jsonl" -o "$work/out4.jsonl" 2>/dev/null ||
    fail "slm route (resume, first run)"
full=$(jq -c '.response.choices[0].message.content' "$work/out4.jsonl")
{ head -n 2 "$work/out4.jsonl"; sed -n 3p "$work/out4.jsonl" | head -c 20; } >"$work/cut.jsonl"
mv "$work/cut.jsonl" "$work/out4.jsonl"
"$SLM" route --router "$work/router.yaml" "$work/in4.jsonl" -o "$work/out4.jsonl" 2>/dev/null ||
    fail "slm route (resume)"
[ "$(jq -r .id "$work/out4.jsonl" | tr '\n' ' ')" = "r1 r2 r3 r4 r5 r6 " ] ||
    fail "resume: ids $(jq -r .id "$work/out4.jsonl" | tr '\n' ' ')"
[ "$(jq -c '.response.choices[0].message.content' "$work/out4.jsonl")" = "$full" ] ||
    fail "resumed answers differ"
"$SLM" route --router "$work/router.yaml" "$work/in4.jsonl" -o "$work/out4.jsonl" 2>/dev/null ||
    fail "slm route (nothing left)"
[ "$(wc -l <"$work/out4.jsonl")" = 6 ] || fail "a finished run stays finished"

# ---- 5. bad input lines: reported with their line number, skipped or fatal
{ req b1 local "Once upon a time"; echo '{not json'; echo '{"model": "local"}'; req b2 local "hi"; } \
    >"$work/in5.jsonl"
"$SLM" route --router "$work/router.yaml" "$work/in5.jsonl" -o "$work/out5.jsonl" \
    2>"$work/route5.err" || fail "bad lines are skipped by default"
contains "$(cat "$work/route5.err")" "in5.jsonl:2:" "bad line report"
contains "$(cat "$work/route5.err")" "in5.jsonl:3:" "missing id report"
[ "$(jq -r .id "$work/out5.jsonl" | tr '\n' ' ')" = "b1 b2 " ] || fail "skip keeps the rest"
expect_exit 1 "$SLM" route --router "$work/router.yaml" "$work/in5.jsonl" -o "$work/out5b.jsonl" \
    --on-error fail
[ "$(jq -r .id "$work/out5b.jsonl")" = b1 ] || fail "--on-error fail keeps what was written"
expect_exit 2 "$SLM" route --router "$work/router.yaml" "$work/in5.jsonl"

# ---- 6. the ledger against the fake clouds' own logs
"$SLM" cost --ledger "$work/ledger.db" --json >"$work/cost.json" || fail "slm cost"
total() { jq ".total.$1" "$work/cost.json"; }
want_rows=$(($(wc -l <"$work/out1.jsonl") + 3 + 40 + 6 + 4 + 2 + 1))
[ "$(total requests)" = "$want_rows" ] || fail "ledger requests $(total requests), want $want_rows"
cloud_ok=$(cat "$work/main.log" "$work/flaky.log" "$work/down.log" | jq -s '[.[] | select(.status == 200)] | length')
[ "$(total escalated)" = "$cloud_ok" ] ||
    fail "ledger escalated $(total escalated), clouds answered $cloud_ok"
[ "$(total local_fallback)" = 1 ] || fail "ledger local_fallback $(total local_fallback)"
[ "$(total shadowed)" = "$(jq -s '[.[] | select(.status == 200)] | length' "$work/shadow.log")" ] ||
    fail "ledger shadowed $(total shadowed) vs shadow cloud log $n_shadow"
charges=$(cat "$work"/*.log | jq -s '[.[].charge] | add')
jq -en --argjson a "$(total spend)" --argjson b "$charges" '($a - $b) | fabs < 1e-9' >/dev/null ||
    fail "ledger spend $(total spend) != clouds' charges $charges"
shadow_charges=$(jq -s '[.[].charge] | add' "$work/shadow.log")
jq -en --argjson a "$(total shadow_cost)" --argjson b "$shadow_charges" '($a - $b) | fabs < 1e-9' \
    >/dev/null || fail "ledger shadow_cost $(total shadow_cost) != $shadow_charges"
echo "route e2e: ok ($want_rows requests, $cloud_ok escalated, $n_shadow shadowed)"
