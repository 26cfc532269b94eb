#!/usr/bin/env bash
# "Will it fit?" (docs/memory.md): slm show prints the memory estimate next to
# the memory available; slm run and slm serve refuse a model that does not fit
# with the numbers and a context that would, and load it with --force. The
# available memory is set with SLM_MEMORY_AVAILABLE (bytes), the override the
# estimate's callers all read, so the limits here do not depend on the machine.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_model

# --- slm show: the estimate, its parts, the memory available.
json=$("$SLM" show "$MODEL" --json --ctx-size 2048)
total=$(jq '.memory.total' <<<"$json")
[ "$(jq '.memory.n_ctx' <<<"$json")" = 2048 ] || fail "show --ctx-size 2048: $(jq -c .memory <<<"$json")"
[ "$(jq '.memory | .baseline + .weights + .kv_cache + .compute + .output + .tokenizer + .adapters == .total' <<<"$json")" = true ] ||
    fail "the parts do not add up: $(jq -c .memory <<<"$json")"
[ "$(jq '.memory.weights > 0 and .memory.kv_cache > 0 and .memory.available > 0' <<<"$json")" = true ] ||
    fail "empty estimate: $(jq -c .memory <<<"$json")"
# Twice the context, twice the KV cache; four sequences share the same cells.
kv=$(jq '.memory.kv_cache' <<<"$json")
kv2=$("$SLM" show "$MODEL" --json --ctx-size 4096 | jq '.memory.kv_cache')
[ "$kv2" = $((kv * 2)) ] || fail "KV cache at 4096 ($kv2) is not twice that at 2048 ($kv)"
kv4=$("$SLM" show "$MODEL" --json --ctx-size 2048 --parallel 4 | jq '.memory.kv_cache')
[ "$kv4" = "$kv" ] || fail "--parallel 4 changed the KV cache of 2048 cells: $kv4 vs $kv"
text=$(SLM_MEMORY_AVAILABLE=$((total - 1)) "$SLM" show "$MODEL" --ctx-size 2048)
contains "$text" "KV cache" "show"
contains "$text" "(SLM_MEMORY_AVAILABLE;" "show"
contains "$text" "fits                 no" "show"
text=$(SLM_MEMORY_AVAILABLE=$((total + 1)) "$SLM" show "$MODEL" --ctx-size 2048)
contains "$text" "fits                 yes" "show"
expect_exit 2 "$SLM" show "$MODEL" --ctx-size abc

# --- slm run: refused with the numbers and a context that fits, or --force.
expect_exit 1 env SLM_MEMORY_AVAILABLE=$((total - 1)) "$SLM" run "$MODEL" "Once" -n 2 --ctx-size 2048
contains "$ERR" "needs about $(((total + 524288) / 1048576)) MiB" "refusal"
contains "$ERR" "KV cache" "refusal"
contains "$ERR" "for ctx 2048" "refusal"
contains "$ERR" "try --ctx-size " "refusal"
contains "$ERR" "or --force" "refusal"
ctx=$(sed -n 's/.*try --ctx-size \([0-9]*\) .*/\1/p' <<<"$ERR")
[ -n "$ctx" ] && [ "$ctx" -lt 2048 ] || fail "no smaller context suggested: $ERR"
# The suggested context runs under the same limit.
SLM_MEMORY_AVAILABLE=$((total - 1)) "$SLM" run "$MODEL" "Once" -n 2 --ctx-size "$ctx" >/dev/null ||
    fail "the suggested --ctx-size $ctx was refused"
out=$(SLM_MEMORY_AVAILABLE=$((total - 1)) "$SLM" run "$MODEL" "Once" -n 2 --ctx-size 2048 --force 2>&1) ||
    fail "--force did not load: $out"
contains "$out" "warning:" "--force"
# Too little for any context: only a smaller quantization is suggested.
expect_exit 1 env SLM_MEMORY_AVAILABLE=1000 "$SLM" run "$MODEL" "Once" -n 2
contains "$ERR" "try a smaller quantization" "refusal"

# The chat's /set parameter num_ctx makes a new context: checked the same way, with the
# current context's memory counted as coming back. Refused, the old context stays.
total512=$("$SLM" show "$MODEL" --json --ctx-size 512 | jq '.memory.total')
out=$(printf '/set parameter num_ctx 1000000\n/set parameter num_ctx 1024\n/bye\n' |
    SLM_MEMORY_AVAILABLE=$total512 "$SLM" run "$MODEL" --interactive --ctx-size 512 -n 2 2>&1) ||
    fail "chat exited $?: $out"
contains "$out" "Error: $MODEL needs about" "chat /set parameter num_ctx 1000000"
contains "$out" "for ctx 1000192" "chat /set parameter num_ctx 1000000"
contains "$out" "Set parameter 'num_ctx' to '1024'" "chat /set parameter num_ctx 1024"

# --- slm serve: the pool refuses a model larger than its budget (503 with the
# numbers), and loads it with --force.
make_stories tiny
req='{"model":"tiny","prompt":"Once","stream":false,"options":{"num_predict":2}}'
SLM_MEMORY_AVAILABLE=1000000 serve_start --parallel 1 --ctx-size 512
code=$(curl -s -o "$SERVE_DIR/body" -w '%{http_code}' "$URL/api/generate" -d "$req")
[ "$code" = 503 ] || fail "serve under a 1 MB budget answered $code: $(cat "$SERVE_DIR/body")"
contains "$(jq -r .error "$SERVE_DIR/body")" "needs about" "Ollama error"
code=$(curl -s -o "$SERVE_DIR/body" -w '%{http_code}' "$URL/v1/chat/completions" \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}')
[ "$code" = 503 ] || fail "OpenAI route answered $code"
[ "$(jq -r .error.code "$SERVE_DIR/body")" = insufficient_memory ] ||
    fail "OpenAI error: $(cat "$SERVE_DIR/body")"
serve_stop
SLM_MEMORY_AVAILABLE=1000000 serve_start --parallel 1 --ctx-size 512 --force
curl -sf "$URL/api/generate" -d "$req" >/dev/null || fail "serve --force did not load the model"
serve_stop
echo "ok"
