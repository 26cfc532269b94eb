#!/usr/bin/env bash
# `slm serve --router`: the router behind the same OpenAI API, a drop-in base
# URL. A route answered locally and one that escalates to a fake cloud (on
# loopback), each whole and streamed; x-slm-route / x-slm-reason headers and
# the "slm" field; routes listed by /v1/models; a store model on the same
# server still served as usual; a bad router.yaml refused with file:line; the
# ledger's rows against the fake cloud's own log; the npm openai client on a
# route when the clients are installed (test_serve_clients installs them).
# Issue 14 (holes 6 and 7): the client gets reason codes, never the upstream's
# URL or error body (a 401's key hint), and the log has the details masked;
# a request the client abandons gets its ledger row; shadow calls to a hanging
# upstream neither hold back rows (50 shadowed answers, kill -9, 50 rows) nor
# shutdown (SIGTERM exits within 5 s); kill -9 during a load leaves a row for
# every answer a client received.
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
# The router's shadow counters are on /metrics.
contains "$(curl -s "$URL/metrics")" 'slm_router_shadows_total{outcome="skipped_at_cap"}'

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

CLIENTS=$(cd "$(dirname "$0")/clients" && pwd)
# Ollama's /api/chat and /api/generate are routed too (issue 17): the same checks, escalation
# and ledger, answered in Ollama's shape with the router's "slm" field and headers.
ollama() { # path, json, curl flags...
    local path=$1 json=$2
    shift 2
    curl -s -D "$work/headers" "$URL$path" -H 'Content-Type: application/json' -d "$json" "$@"
}
r=$(ollama /api/chat '{"model":"easy","stream":false,"messages":[{"role":"user","content":"Once upon a time"}]}')
[ "$(jq -r .slm.route <<<"$r")" = local ] || fail "/api/chat easy should be local: $r"
[ "$(header x-slm-route)" = local ] || fail "/api/chat x-slm-route: $(cat "$work/headers")"
jq -e '.done == true and .message.role == "assistant" and (.message.content | length) > 0
    and .eval_count > 0 and .prompt_eval_count > 0 and .model == "easy"' <<<"$r" >/dev/null ||
    fail "/api/chat shape: $r"
r=$(ollama /api/generate '{"model":"hard","stream":false,"prompt":"Once upon a time","options":{"num_predict":8}}')
[ "$(jq -r .response <<<"$r")" = "cloud says hi" ] || fail "/api/generate hard: $r"
[ "$(jq -r .slm.route <<<"$r")" = escalated ] || fail "/api/generate should escalate: $r"
contains "$(header x-slm-reason)" "token_mean"
# Ollama streams by default: NDJSON, the text first, then the final object with the counts.
s=$(ollama /api/chat '{"model":"hard","messages":[{"role":"user","content":"Once upon a time"}]}' -N)
header content-type | grep -q application/x-ndjson || fail "ndjson content type: $(cat "$work/headers")"
[ "$(jq -sr '[.[].message.content] | join("")' <<<"$s")" = "cloud says hi" ] || fail "streamed: $s"
[ "$(jq -sr '.[-1].done' <<<"$s")" = true ] && [ "$(jq -sr '.[0].done' <<<"$s")" = false ] ||
    fail "done flags: $s"
[ "$(jq -sr '.[-1].done_reason' <<<"$s")" = stop ] || fail "done_reason: $s"
# What a route cannot answer is a 400 naming the field; a store model is not routed.
r=$(ollama /api/generate '{"model":"easy","prompt":"x","raw":true}')
[ "$(jq -r .error <<<"$r")" != null ] && contains "$(jq -r .error <<<"$r")" "raw" "raw refused"
r=$(ollama /api/chat '{"model":"easy","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":5000}}')
contains "$(jq -r .error <<<"$r")" "at most 4096 tokens" "num_predict over the cap on a route"
r=$(ollama /api/generate '{"model":"stories","stream":false,"prompt":"Once","options":{"num_predict":4}}')
[ "$(jq -r '.slm // "none"' <<<"$r")" = none ] || fail "a store model went through the router: $r"
# The ollama npm client, unchanged but for the host.
if command -v node >/dev/null && [ -f "$CLIENTS/node_modules/ollama/package.json" ]; then
    (cd "$CLIENTS" && SLM_URL=$URL node --input-type=module -e '
        import { Ollama } from "ollama";
        const o = new Ollama({ host: process.env.SLM_URL });
        const r = await o.chat({ model: "hard", messages: [{ role: "user", content: "Once upon a time" }] });
        if (r.message.content !== "cloud says hi") throw new Error(JSON.stringify(r));
        let text = "";
        for await (const p of await o.generate({ model: "easy", prompt: "Once upon a time", stream: true }))
            text += p.response;
        if (!text) throw new Error("empty stream");
    ') || fail "ollama client through the router"
fi

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

# ---- issue 14: reason codes and secrets, rows with the answer, bounded shadows
command -v sqlite3 >/dev/null || skip "sqlite3 is needed for the ledger checks below"
rows() { sqlite3 "$1" "$2"; } # ledger, query

fake_cloud_start "$work/hang" --faults timeoutx100000 --hang-s 600 --log "$work/hang.log"
SERVE_ALL="$SERVE_ALL $FAKE_PID"
hang=$FAKE_PORT
fake_cloud_start "$work/locked" --api-key sk-right-key-00000000000000 --log "$work/locked.log"
SERVE_ALL="$SERVE_ALL $FAKE_PID"
locked=$FAKE_PORT
export SLM_TEST_CLOUD_KEY=sk-test-wrongkey-0123456789abcdef
cat >"$work/router2.yaml" <<EOF
local:
  gen: {model: ./stories.gguf, template: story.liquid, parameters: {temperature: 0, num_predict: 8}}
upstreams:
  - {name: hang, base_url: "http://127.0.0.1:$hang/v1", model: big, timeout: 600, max_attempts: 1}
  - {name: locked, base_url: "http://127.0.0.1:$locked/v1", api_key_env: SLM_TEST_CLOUD_KEY}
routes:
  - {name: shadowed, local: gen, escalate: [hang], shadow: 1.0}
  - {name: locked, local: gen, checks: {token_mean: 1.0}, escalate: [locked]}
  - {name: stuck, local: gen, checks: {token_mean: 1.0}, escalate: [hang]}
meter:
  ledger: ledger2.db
EOF
serve_start --parallel 2 --ctx-size 512 --router "$work/router2.yaml"

# The cloud refuses the key: the client gets the local answer and reason codes only.
r=$(chat locked "")
[ "$(jq -r .slm.route <<<"$r")" = local_fallback ] || fail "locked should fall back: $r"
[ "$(header x-slm-reason)" = "token_mean<1,upstream:unauthorized" ] ||
    fail "x-slm-reason is not the codes: $(header x-slm-reason)"
[ "$(jq -r .slm.reason <<<"$r")" = "token_mean<1,upstream:unauthorized" ] || fail "slm.reason: $r"
for leak in 127.0.0.1 ":$locked" Incorrect sk-test "****" cdef http; do
    case "$r$(cat "$work/headers")" in
    *"$leak"*) fail "'$leak' reached the client: $r $(cat "$work/headers")" ;;
    esac
done
sleep 0.2
contains "$(cat "$SERVE_ERR")" "HTTP 401" "the server log (the details go there)"
for leak in sk-test-wrongkey "****cdef" "wrongkey-0123"; do
    case "$(cat "$SERVE_ERR")" in
    *"$leak"*) fail "'$leak' reached the log: $(grep -F -- "$leak" "$SERVE_ERR")" ;;
    esac
done

# A client that gives up on a hanging escalation still leaves a row.
code=0
chat stuck ',"id":"gone-1"' --max-time 1 -o /dev/null || code=$?
[ "$code" = 28 ] || fail "curl should time out on the stuck route (exit $code)"

# 50 shadowed answers while every shadow call hangs, then kill -9: 50 rows.
for i in $(seq 50); do
    r=$(chat shadowed ",\"id\":\"sh-$i\"")
    [ "$(jq -r .slm.route <<<"$r")" = local ] || fail "shadowed request $i: $r"
done
sleep 1 # the abandoned request's row is written once its watcher sees the client gone
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null || true
SERVE_PID=
db=$work/ledger2.db
n=$(rows "$db" "SELECT count(*) FROM requests WHERE request_id LIKE 'sh-%'")
[ "$n" = 50 ] || fail "kill -9 after 50 shadowed answers: $n rows, want 50"
got=$(rows "$db" "SELECT where_ran || ' ' || reason FROM requests WHERE request_id = 'gone-1'")
case $got in # the failed checks come first when the client left after them
"error client_aborted" | "error token_mean<1,client_aborted") ;;
*) fail "the abandoned request's row: '$got'" ;;
esac
got=$(rows "$db" "SELECT reason FROM requests WHERE route = 'locked'")
[ "$got" = "token_mean<1,upstream:unauthorized" ] || fail "the ledger's reason: $got"

# SIGTERM with shadows and an escalation hanging: the server exits within 5 s.
serve_start --parallel 2 --ctx-size 512 --router "$work/router2.yaml"
for i in $(seq 5); do chat shadowed "" >/dev/null; done
chat stuck "" -o "$work/stuck.out" &
stuck=$!
sleep 0.5
kill -TERM "$SERVE_PID"
term_steps=0
for _ in $(seq 50); do
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
    term_steps=$((term_steps + 1))
done
kill -0 "$SERVE_PID" 2>/dev/null && fail "slm serve still running 5 s after SIGTERM (hanging shadows)"
code=0
wait "$SERVE_PID" || code=$?
[ "$code" = 0 ] || fail "slm serve exited with $code after SIGTERM: $(tail -n 5 "$SERVE_ERR")"
SERVE_PID=
wait "$stuck" || true
contains "$(cat "$work/stuck.out")" "shutting_down" "the hanging escalation's answer"

# kill -9 during a load (local, escalated and shadowed requests from 4 clients): every answer a
# client received has its row.
cat >"$work/router3.yaml" <<EOF
local:
  gen: {model: ./stories.gguf, template: story.liquid, parameters: {temperature: 0, num_predict: 8}}
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$port/v1", model: big}
  - {name: hang, base_url: "http://127.0.0.1:$hang/v1", model: big}
routes:
  - {name: easy, local: gen, escalate: [cloud]}
  - {name: hard, local: gen, checks: {token_mean: 1.0}, escalate: [cloud]}
  - {name: sampled, local: gen, escalate: [hang], shadow: 1.0}
meter:
  ledger: ledger3.db
EOF
serve_start --parallel 2 --ctx-size 512 --router "$work/router3.yaml"
chat easy "" >/dev/null # loads the model (seconds under ASan) before the load starts
load() { # client number: sends until the server is gone; ids answered go to load.N
    local n=0 id routes=(easy hard sampled)
    while :; do
        n=$((n + 1))
        id="load-$1-$n"
        chat "${routes[$((n % 3))]}" ",\"id\":\"$id\"" -f -o "$work/ans.$1" 2>/dev/null || break
        if jq -e .choices "$work/ans.$1" >/dev/null 2>&1; then echo "$id" >>"$work/load.$1"; fi
    done
}
clients=()
for c in 1 2 3 4; do
    : >"$work/load.$c"
    load "$c" &
    clients+=($!)
done
for _ in $(seq 600); do # until a dozen answers are in (0.1 s steps, 60 s at most), mid-load
    [ "$(cat "$work"/load.? | wc -l)" -lt 12 ] || break
    sleep 0.1
done
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null || true
SERVE_PID=
wait "${clients[@]}"
answered=$(cat "$work"/load.? | sort)
n=$(grep -c . <<<"$answered" || true)
[ "$n" -ge 8 ] || fail "too few answers before kill -9 ($n): $(tail -n 5 "$SERVE_ERR")"
have=$(rows "$work/ledger3.db" "SELECT request_id FROM requests WHERE request_id LIKE 'load-%'" | sort)
missing=$(comm -23 <(echo "$answered") <(echo "$have"))
[ -z "$missing" ] || fail "answered, but no ledger row after kill -9: $missing"
echo "ok (kill -9 under load: $n answers, each with its row; 50 hanging shadows: 50 rows;" \
    "SIGTERM with hanging shadows: exited within $(((term_steps + 1) / 10)).$(((term_steps + 1) % 10)) s)"
