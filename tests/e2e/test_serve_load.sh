#!/usr/bin/env bash
# slm serve under load, through the real binary on stories260K:
#   - 16 concurrent greedy streams each get their own prompt's continuation
#     (compared with the prompt run alone; a divergence must be a near-tie)
#   - an abandoned stream frees its slot: with one slot, the next request is
#     served at once
#   - /metrics is Prometheus text and its counters move with that traffic
#   - the memory budget unloads the least recently used of two models
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_model
command -v curl >/dev/null || skip "curl is needed"
command -v jq >/dev/null || skip "jq is needed"
command -v node >/dev/null || skip "node is not installed"
LOAD=$(cd "$(dirname "$0")" && pwd)/serve_load.mjs

make_stories stories

# --- no cross-talk: 16 streams in one batch. The f32 KV cache makes a
# sequence's numbers independent of its batch neighbours to ~1e-6 (f16 with
# flash attention differs by up to ~1e-2 in log-probability, which turns
# ordinary top-2 gaps into divergences that say nothing about cross-talk).
serve_start --parallel 16 --ctx-size 256 --kv-type f32
node "$LOAD" crosstalk "$URL" stories || fail "cross-talk check failed"

# --- /metrics after that traffic: well-formed, and the counters moved.
metrics=$(curl -sf "$URL/metrics") || fail "GET /metrics failed"
bad=$(printf '%s\n' "$metrics" | grep -v '^#' | grep -v -E '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfa]+$' | grep -v '^$' || true)
[ -z "$bad" ] || fail "not Prometheus text: $bad"
for name in $(printf '%s\n' "$metrics" | sed -n 's/^# TYPE \([^ ]*\) .*/\1/p'); do
    grep -q "^$name" <<<"$metrics" || fail "# TYPE $name without samples"
done
sum_metric() { printf '%s\n' "$metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { print s + 0 }'; }
reqs=$(sum_metric slm_http_requests_total)
[ "${reqs%.*}" -ge 32 ] || fail "slm_http_requests_total is $reqs after 32 requests"
gen=$(sum_metric slm_generated_tokens_total)
[ "${gen%.*}" -ge 16 ] || fail "slm_generated_tokens_total is $gen"
curl -sf "$URL/v1/completions" -d '{"model":"stories","prompt":"Tom","max_tokens":4}' >/dev/null
metrics=$(curl -sf "$URL/metrics")
[ "$(sum_metric slm_http_requests_total | cut -d. -f1)" -gt "${reqs%.*}" ] || fail "requests counter did not move"
serve_stop

# --- an abandoned stream frees the only slot.
# (30000 tokens asked for: past the default --max-tokens 4096, so the cap is off here)
serve_start --parallel 1 --ctx-size 32768 --max-tokens 0
node "$LOAD" cancel "$URL" stories || fail "cancel check failed"
serve_stop

# --- the memory budget: two models that do not fit together.
"$SLM" quantize "$MODEL" "$SERVE_DIR/s16.gguf" F16 >/dev/null 2>&1 || fail "quantize failed"
printf 'FROM %s\n' "$SERVE_DIR/s16.gguf" >"$SERVE_DIR/Modelfile16"
"$SLM" create stories16 -f "$SERVE_DIR/Modelfile16" >/dev/null
gen1() { curl -sf "$URL/api/generate" -d "{\"model\":\"$1\",\"prompt\":\"Tom\",\"stream\":false,\"options\":{\"num_predict\":2}}" >/dev/null || fail "generate with $1 failed"; }
loaded() { curl -sf "$URL/api/ps" | jq -r '[.models[].name] | sort | join(",")'; }
serve_start --parallel 1 --ctx-size 256
gen1 stories
gen1 stories16
[ "$(loaded)" = "stories16:latest,stories:latest" ] || fail "both models should be loaded: $(loaded)"
sizes=$(curl -sf "$URL/api/ps" | jq '[.models[].size]')
serve_stop
budget=$(jq -n --argjson s "$sizes" '($s | max) + (($s | min) / 2) | floor')
serve_start --parallel 1 --ctx-size 256 --memory-budget "$budget"
gen1 stories
[ "$(loaded)" = "stories:latest" ] || fail "after stories: $(loaded)"
gen1 stories16
[ "$(loaded)" = "stories16:latest" ] || fail "the budget ($budget bytes of $sizes) did not unload stories: $(loaded)"
gen1 stories
[ "$(loaded)" = "stories:latest" ] || fail "the least recently used model was not the one unloaded: $(loaded)"
serve_stop
echo "ok"
