#!/usr/bin/env bash
# slm serve --lora and llama-server's per-request "lora" field, with curl on the test model:
# GET /lora-adapters; a request applies an adapter by id (the same text as the model created
# with that ADAPTER) or a store model's adapters by name; no "lora" applies none; scale 0
# is the base model; requests with different adapter sets at once each get their own; and
# the errors (unknown id, a name without adapters, an adapter of another model, bad flags).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_model
command -v curl >/dev/null || skip "curl is needed"
command -v jq >/dev/null || skip "jq is needed"
W=$SERVE_DIR

# --- two small adapters tuned on the repository's colors set, as test_tune.sh does
DATA=$SLM_SRC/tests/data/tune/colors.jsonl
for s in 1 2; do
    "$SLM" tune "$MODEL" "$DATA" --steps $((20 * s)) --lr 1e-2 --rank 8 --ctx-size 128 \
        --threads 1 --seed "$s" -q -o "$W/a$s.gguf" >/dev/null 2>&1 || fail "slm tune failed"
done
make_stories base
printf 'FROM %s\nADAPTER %s\n' "$MODEL" "$W/a1.gguf" >"$W/Modelfile.tuned"
"$SLM" create tuned -f "$W/Modelfile.tuned" >/dev/null

# --- flags: checked before anything starts
expect_exit 3 "$SLM" serve --lora "$W/missing.gguf"
contains "$ERR" "missing.gguf"
expect_exit 2 "$SLM" serve --lora "$MODEL"
contains "$ERR" "not a LoRA adapter"
expect_exit 2 "$SLM" serve --lora "$W/a1.gguf:lots"

serve_start --lora "$W/a1.gguf" --lora "$W/a2.gguf:0.5" --kv-type f32 --parallel 2

list=$(curl -sf "$URL/lora-adapters")
[ "$(jq length <<<"$list")" = 2 ] || fail "/lora-adapters: $list"
[ "$(jq -r '.[1].id, .[1].path, .[1].scale' <<<"$list" | tr '\n' ' ')" = "1 $W/a2.gguf 0.5 " ] ||
    fail "/lora-adapters[1]: $list"

PROMPT=$(head -n 1 "$DATA" | jq -r .prompt)
ask() { # model, lora JSON (or ""), -> the completion's text
    local body
    body=$(jq -cn --arg m "$1" --arg p "$PROMPT" '{model: $m, prompt: $p, max_tokens: 12,
        temperature: 0}')
    [ -z "$2" ] || body=$(jq -c --argjson l "$2" '. + {lora: $l}' <<<"$body")
    curl -sf "$URL/v1/completions" -d "$body" | jq -r '.choices[0].text'
}
base=$(ask base "")
tuned=$(ask tuned "")
[ "$base" != "$tuned" ] || fail "the adapter should change the text: '$base'"
[ "$(ask base '[{"id": 0, "scale": 1.0}]')" = "$tuned" ] || fail "lora id 0 != the created model"
[ "$(ask base '[{"name": "tuned"}]')" = "$tuned" ] || fail "lora name 'tuned' != the created model"
[ "$(ask base '[{"id": 0, "scale": 0}]')" = "$base" ] || fail "scale 0 should be the base model"
[ "$(ask base '[]')" = "$base" ] || fail "an empty lora list should be the base model"
mixed=$(ask base '[{"id": 0, "scale": 1}, {"id": 1, "scale": 1}]')
[ -n "$mixed" ] || fail "two adapters at once gave nothing"

# Different adapter sets at the same time: each request gets its own.
pids=()
for i in 1 2 3 4; do
    case $i in
    1 | 3) l='[{"id": 0, "scale": 1}]' ;;
    *) l='' ;;
    esac
    ask base "$l" >"$W/par.$i" &
    pids+=($!)
done
wait "${pids[@]}"
for i in 1 3; do [ "$(cat "$W/par.$i")" = "$tuned" ] || fail "parallel $i: $(cat "$W/par.$i")"; done
for i in 2 4; do [ "$(cat "$W/par.$i")" = "$base" ] || fail "parallel $i: $(cat "$W/par.$i")"; done

# Ollama's /api/generate takes the same field.
o=$(curl -sf "$URL/api/generate" -d "$(jq -cn --arg p "$PROMPT" '{model: "base", prompt: $p,
    raw: true, stream: false, lora: [{id: 0, scale: 1}], options: {temperature: 0,
    num_predict: 12}}')" | jq -r .response)
[ "$o" = "$tuned" ] || fail "/api/generate with lora: '$o' vs '$tuned'"

# Errors: 400s that say what is wrong.
err() { # body -> "status message"
    curl -s -o "$W/e.json" -w '%{http_code}' "$URL/v1/completions" -d "$1"
    printf ' %s' "$(jq -r .error.message "$W/e.json")"
}
out=$(err '{"model": "base", "prompt": "a", "lora": [{"id": 7, "scale": 1}]}')
contains "$out" "400 lora id 7 is not one of the server's 2 adapters" "unknown id"
out=$(err '{"model": "base", "prompt": "a", "lora": [{"name": "base"}]}')
contains "$out" "400 lora name 'base' has no adapters" "a name without adapters"
out=$(err '{"model": "base", "prompt": "a", "lora": [{"name": "nope"}]}')
contains "$out" "400 lora name 'nope' is not a model of the store" "unknown name"
out=$(err '{"model": "base", "prompt": "a", "lora": {"id": 0}}')
contains "$out" "400 'lora' must be an array" "not an array"
out=$(err '{"model": "base", "prompt": "a", "lora": [{"id": 0, "name": "tuned"}]}')
contains "$out" "400 lora[0] must be an object with an \"id\" or a \"name\"" "both"
# An adapter made for another model: a model of another shape made by mkmodel.
if [ -x "$SLM_TOOLS/mkmodel" ]; then
    "$SLM_TOOLS/mkmodel" --preset tiny --seed 3 -o "$W/other.gguf" >/dev/null 2>&1 ||
        fail "mkmodel failed"
    printf 'FROM %s\n' "$W/other.gguf" >"$W/Modelfile.other"
    "$SLM" create other -f "$W/Modelfile.other" >/dev/null
    out=$(err '{"model": "other", "prompt": "a", "lora": [{"id": 0, "scale": 1}]}')
    contains "$out" "400 lora id 0 does not fit model 'other'" "an adapter of another model"
fi
serve_stop
echo "ok"
