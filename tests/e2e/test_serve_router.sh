#!/usr/bin/env bash
# `slm serve --router`: the router behind the same OpenAI API, a drop-in base
# URL. A route answered locally and one that escalates to a fake cloud (on
# loopback), each whole and streamed; x-slm-route / x-slm-reason headers and
# the "slm" field; routes listed by /v1/models; a store model on the same
# server still served as usual; a bad router.yaml refused with file:line; the
# ledger's rows against the fake cloud's own log; the npm openai client on a
# route when the clients are installed (test_serve_clients installs them).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_model
command -v curl >/dev/null || skip "curl is needed"
command -v jq >/dev/null || skip "jq is needed"
FAKE=${SLM_TOOLS:-build/tools}/fake_cloud
[ -x "$FAKE" ] || skip "fake_cloud not built"

work=$SERVE_DIR
printf '%s\n' '{"input": "Once upon a time", "answer": "cloud says hi"}' >"$work/gold.jsonl"
fake_cloud_start "$work/cloud" --log "$work/cloud.log" --gold "$work/gold.jsonl" --price-in 1000 \
    --price-out 2000
SERVE_ALL="$SERVE_ALL $FAKE_PID"
port=$FAKE_PORT

cp "$MODEL" "$work/stories.gguf"
printf 'Story: {{ input }}\n' >"$work/story.liquid"
cat >"$work/router.yaml" <<EOF
# two routes over stories260K: one always local, one that always escalates
local:
  gen:
    model: ./stories.gguf
    template: story.liquid
    parameters: {temperature: 0, num_predict: 8}
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$port/v1", model: big, price_in: 1000, price_out: 2000}
routes:
  - {name: easy, local: gen, escalate: [cloud]}
  - {name: hard, local: gen, checks: {token_mean: 1.0}, escalate: [cloud]}
meter:
  ledger: ledger.db
EOF

# A broken config is refused before the server starts, naming file and line.
printf 'routes:\n  - {name: x, local: nope}\n' >"$work/bad.yaml"
expect_exit 1 "$SLM" serve --port 0 --router "$work/bad.yaml"
contains "$ERR" "bad.yaml:1: local"

make_stories stories
serve_start --parallel 2 --ctx-size 512 --router "$work/router.yaml"
contains "$(cat "$SERVE_OUT")" "2 routes (easy, hard)"

chat() { # model, extra json, curl flags...
    local m=$1 extra=$2
    shift 2
    curl -s -D "$work/headers" "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$m\",\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}]$extra}" "$@"
}
header() { tr -d '\r' <"$work/headers" | sed -n "s/^$1: //Ip"; }

# Issue 14, hole 4: the server's limits hold on routes too. --max-tokens
# (default 4096): asking for more is a 400 naming the field, on either name
# of it; more than 4096 messages is a 400.
r=$(chat easy ',"max_tokens":5000')
[ "$(jq -r .error.param <<<"$r")" = max_tokens ] || fail "max_tokens 5000 on a route: $r"
contains "$(jq -r .error.message <<<"$r")" "at most 4096 tokens"
r=$(chat easy ',"max_completion_tokens":5000,"max_tokens":10')
[ "$(jq -r .error.param <<<"$r")" = max_completion_tokens ] || fail "max_completion_tokens on a route: $r"
many=$(jq -cn '[range(4097) | {role: "user", content: "hi"}]')
r=$(curl -s "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"easy\",\"messages\":$many}")
[ "$(jq -r .error.param <<<"$r")" = messages ] || fail "4097 messages on a route: $r"
# ... and a request that asks for no number keeps the route's own num_predict
# (8 here), not the server's cap.
r=$(chat easy "")
[ "$(jq .usage.completion_tokens <<<"$r")" -le 8 ] || fail "a route's num_predict was overridden: $r"

# Local: answered by stories260K, marked local.
r=$(chat easy "")
[ "$(jq -r .slm.route <<<"$r")" = local ] || fail "easy should be local: $r"
[ "$(header x-slm-route)" = local ] || fail "x-slm-route: $(cat "$work/headers")"
[ "$(jq -r .object <<<"$r")" = chat.completion ] || fail "not a chat.completion: $r"
[ -n "$(jq -r '.choices[0].message.content' <<<"$r")" ] || fail "empty local answer: $r"
header content-type | grep -q application/json || fail "content type: $(cat "$work/headers")"

# Escalated: the cloud's answer, with the reason.
r=$(chat hard "")
[ "$(jq -r .slm.route <<<"$r")" = escalated ] || fail "hard should escalate: $r"
[ "$(header x-slm-route)" = escalated ] || fail "x-slm-route: $(cat "$work/headers")"
contains "$(header x-slm-reason)" "token_mean"
[ "$(jq -r '.choices[0].message.content' <<<"$r")" = "cloud says hi" ] || fail "cloud answer: $r"

# Streamed: SSE chunks, role first, finish_reason, usage chunk, [DONE].
s=$(chat hard ',"stream":true,"stream_options":{"include_usage":true}' -N)
header content-type | grep -q text/event-stream || fail "stream content type: $(cat "$work/headers")"
[ "$(header x-slm-route)" = escalated ] || fail "stream x-slm-route"
[ "$(printf '%s\n' "$s" | grep -v "^$" | tail -n 1)" = "data: [DONE]" ] || fail "no [DONE] last: $s"
events=$(printf '%s\n' "$s" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$')
[ "$(jq -sr '.[0].choices[0].delta.role' <<<"$events")" = assistant ] || fail "first delta: $s"
[ "$(jq -sr '[.[].choices[0].delta.content // empty] | join("")' <<<"$events")" = "cloud says hi" ] ||
    fail "streamed content: $s"
[ "$(jq -sr '[.[] | select(.choices | length > 0) | .choices[0].finish_reason] | last' <<<"$events")" = stop ] ||
    fail "finish_reason: $s"
[ "$(jq -sr '.[-1].choices | length' <<<"$events")" = 0 ] || fail "usage chunk: $s"
[ "$(jq -sr '.[-1].usage.total_tokens > 0' <<<"$events")" = true ] || fail "usage: $s"

# The routes are models; the store's models are still served as usual.
models=$(curl -s "$URL/v1/models")
for m in easy hard stories:latest; do
    jq -e --arg m "$m" 'any(.data[]; .id == $m)' <<<"$models" >/dev/null || fail "/v1/models lacks $m: $models"
done
r=$(chat stories ',"max_tokens":4')
[ "$(jq -r '.slm // "none"' <<<"$r")" = none ] || fail "a store model went through the router: $r"
[ -z "$(header x-slm-route)" ] || fail "x-slm-route on a store model"

# The npm openai client, unchanged but for the base URL.
CLIENTS=$(cd "$(dirname "$0")/clients" && pwd)
if command -v node >/dev/null && [ -f "$CLIENTS/node_modules/openai/package.json" ]; then
    (cd "$CLIENTS" && SLM_URL=$URL node --input-type=module -e '
        import OpenAI from "openai";
        const c = new OpenAI({ baseURL: `${process.env.SLM_URL}/v1`, apiKey: "x", maxRetries: 0 });
        const r = await c.chat.completions.create({ model: "hard", messages: [{ role: "user", content: "Once upon a time" }] });
        if (r.choices[0].message.content !== "cloud says hi" || r.slm.route !== "escalated") throw new Error(JSON.stringify(r));
        let text = "";
        for await (const ch of await c.chat.completions.create({ model: "easy", stream: true, messages: [{ role: "user", content: "Once upon a time" }] }))
            text += ch.choices[0]?.delta?.content ?? "";
        if (!text) throw new Error("empty stream");
    ') || fail "openai client through the router"
fi

serve_stop

# The ledger against the cloud's own log: every escalation charged as billed.
billed=$(jq -s 'map(select(.status == 200)) | length' "$work/cloud.log")
charged=$(jq -s 'map(select(.status == 200) | .charge) | add' "$work/cloud.log")
"$SLM" cost --ledger "$work/ledger.db" --json >"$work/cost.json" || fail "slm cost failed"
esc=$(jq .total.escalated "$work/cost.json")
spend=$(jq .total.spend "$work/cost.json")
reqs=$(jq .total.requests "$work/cost.json")
[ "$esc" = "$billed" ] || fail "ledger says $esc escalations, the cloud billed $billed calls"
awk -v a="$spend" -v b="$charged" 'BEGIN { d = a - b; exit !(d < 1e-9 && d > -1e-9) }' ||
    fail "ledger spend $spend != cloud charges $charged ($billed calls)"
echo "ok ($reqs routed requests, $billed cloud calls, $charged charged)"
