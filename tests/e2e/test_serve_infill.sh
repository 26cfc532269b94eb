#!/usr/bin/env bash
# Fill in the middle through slm serve on a random-weight model with StarCoder's vocabulary
# (it has FIM tokens): llama.vim's own request bodies (read from its source) to POST /infill,
# response_fields, streaming without [DONE], n_indent, a keystroke that reuses the cached
# prefix, a client that leaves, a model without FIM tokens (400 naming it), bad requests;
# "suffix" on /v1/completions (the openai npm client when node is there) and /api/generate;
# slm run --suffix.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_model
command -v curl >/dev/null || skip "curl is needed"
command -v jq >/dev/null || skip "jq is needed"
[ -x "${SLM_TOOLS:-}/mkmodel" ] || skip "mkmodel is not built"
[ -f "${SLM_VOCAB_DIR:-}/ggml-vocab-starcoder.gguf" ] || skip "llama.cpp's StarCoder vocabulary is missing (SLM_VOCAB_DIR)"
W=$SERVE_DIR

"$SLM_TOOLS/mkmodel" --preset tiny --vocab ggml-vocab-starcoder.gguf --seed 5 -o "$W/coder.gguf" \
    >"$W/mk.log" 2>&1 || fail "mkmodel: $(cat "$W/mk.log")"
printf 'FROM %s\n' "$W/coder.gguf" >"$W/Modelfile.coder"
"$SLM" create coder -f "$W/Modelfile.coder" >/dev/null
make_stories stories

serve_start --model coder --parallel 2 --kv-type f32

# llama.vim's FIM request (autoload/llama.vim, llama#fim): no "model", its samplers, limits
# and response_fields.
cat >"$W/vim.json" <<'JSON'
{"input_prefix": "import os\n\ndef main():\n", "input_suffix": "\n    return 0\n\nmain()\n",
 "input_extra": [{"text": "def helper(x):\n    return x + 1\n", "time": 1733600000, "filename": "util.py"}],
 "prompt": "    path = ", "n_predict": 128, "n_indent": 4, "top_k": 40, "top_p": 0.99,
 "stream": false, "samplers": ["top_k", "top_p", "infill"], "cache_prompt": true,
 "t_max_prompt_ms": 500, "t_max_predict_ms": 1000,
 "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms", "timings/prompt_per_token_ms",
   "timings/prompt_per_second", "timings/predicted_n", "timings/predicted_ms",
   "timings/predicted_per_token_ms", "timings/predicted_per_second", "truncated", "tokens_cached"]}
JSON
out=$(curl -sf "$URL/infill" -d @"$W/vim.json") || fail "llama.vim's request: $(curl -s "$URL/infill" -d @"$W/vim.json")"
keys=$(jq -r 'keys | join(",")' <<<"$out")
[ "$keys" = "content,timings/predicted_ms,timings/predicted_n,timings/predicted_per_second,timings/predicted_per_token_ms,timings/prompt_ms,timings/prompt_n,timings/prompt_per_second,timings/prompt_per_token_ms,tokens_cached,truncated" ] ||
    fail "response_fields: got keys $keys"
[ "$(jq '."timings/prompt_n" > 10' <<<"$out")" = true ] || fail "prompt_n: $out"

# llama.vim's ring-buffer update: n_predict 0, response_fields [""] -> {}
out=$(curl -sf "$URL/infill" -d '{"id_slot": 0, "input_prefix": "", "input_suffix": "", "input_extra": [{"text": "x = 1\n", "time": 1, "filename": "a.py"}], "prompt": "", "n_predict": 0, "temperature": 0.0, "samplers": [], "stream": false, "cache_prompt": true, "t_max_prompt_ms": 1, "t_max_predict_ms": 1, "response_fields": [""]}') ||
    fail "llama.vim's ring update"
[ "$out" = "{}" ] || fail "ring update: $out"

# The whole reply, greedy: llama-server's shape; return_tokens lists the ids.
full=$(curl -sf "$URL/infill" -d '{"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n", "prompt": "return", "n_predict": 8, "temperature": 0, "return_tokens": true}')
for k in content tokens stop model tokens_predicted tokens_evaluated stop_type timings tokens_cached; do
    [ "$(jq "has(\"$k\")" <<<"$full")" = true ] || fail "/infill reply lacks $k: $full"
done
[ "$(jq -r '.model, .stop, .stop_type, .tokens_predicted, (.tokens | length)' <<<"$full" | tr '\n' ' ')" = "coder true limit 8 8 " ] ||
    fail "/infill reply: $full"

# Streamed: events with "stop": false, then the final object; the same text; no [DONE].
curl -sN "$URL/infill" -d '{"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n", "prompt": "return", "n_predict": 8, "temperature": 0, "stream": true}' >"$W/sse"
grep -q '^data: \[DONE\]' "$W/sse" && fail "llama-server's stream has no [DONE]"
streamed=$(sed -n 's/^data: //p' "$W/sse" | jq -rj 'select(.stop == false) | .content')
[ "$streamed" = "$(jq -r .content <<<"$full")" ] || fail "streamed '$streamed' vs whole '$(jq -r .content <<<"$full")'"
[ "$(sed -n 's/^data: //p' "$W/sse" | tail -n 1 | jq -r '.stop, .stop_type' | tr '\n' ' ')" = "true limit " ] ||
    fail "the stream's last event: $(tail -n 2 "$W/sse")"
# tokens_predicted counts up in the events, to the final's 8; tokens_evaluated is the prompt's.
[ "$(sed -n 's/^data: //p' "$W/sse" | jq -s '[.[] | select(.stop == false) | .tokens_predicted] | (. == sort) and .[-1] <= 8 and .[-1] >= 1')" = true ] ||
    fail "tokens_predicted in the events: $(cat "$W/sse")"
[ "$(sed -n 's/^data: //p' "$W/sse" | jq -s '(map(.tokens_evaluated) | unique | length) == 1')" = true ] ||
    fail "tokens_evaluated in the events: $(cat "$W/sse")"

# n_indent: no line after the first may start less indented, but a cut one left as its indent.
for seed in 1 2 3; do
    c=$(curl -sf "$URL/infill" -d "{\"input_prefix\": \"def f():\\n\", \"input_suffix\": \"\", \"prompt\": \"    \", \"n_predict\": 200, \"n_indent\": 4, \"temperature\": 1, \"seed\": $seed, \"ignore_eos\": true}" | jq -r .content)
    # (llama-server counts spaces and tabs alike)
    tail -n +2 <<<"$c" | while IFS= read -r line; do
        ind=${line%%[![:blank:]]*}
        [ "${#ind}" -ge 4 ] || [ "$ind" = "$line" ] || fail "n_indent 4 let through the line '$line' in: $c"
    done
done

# A keystroke later (the prefix one character longer) the cached prompt is reused.
body() { jq -cn --arg p "$1" '{input_prefix: "import sys\n\n", input_suffix: "\n", prompt: $p, n_predict: 4, temperature: 0}'; }
curl -sf "$URL/infill" -d "$(body 'print(sys.ar')" >/dev/null
c=$(curl -sf "$URL/infill" -d "$(body 'print(sys.arg')" | jq '.timings.cache_n')
[ "$c" -gt 5 ] || fail "the next keystroke reused $c cached tokens"

# A client that leaves frees its slot at once (the log says 499).
curl -s -m 0.5 "$URL/infill" -d '{"input_prefix": "a", "input_suffix": "b", "n_predict": 4000, "ignore_eos": true, "temperature": 0}' >/dev/null || true
for _ in $(seq 40); do grep -q 'route=/infill status=499' "$SERVE_ERR" && break; sleep 0.1; done
grep -q 'route=/infill status=499' "$SERVE_ERR" || fail "the abandoned /infill was not cancelled: $(tail -n 3 "$SERVE_ERR")"

# Errors.
err() { curl -s -o "$W/e.json" -w '%{http_code}' "$URL/infill" -d "$1"; printf ' %s' "$(jq -r .error.message "$W/e.json")"; }
contains "$(err '{"model": "stories", "input_prefix": "a", "input_suffix": "b"}')" "400 model 'stories' cannot fill in the middle: no fill-in-the-middle tokens" "no FIM tokens"
contains "$(err '{"input_suffix": "b"}')" "400 'input_prefix' is required" "no prefix"
contains "$(err '{"input_prefix": "a", "input_suffix": "b", "input_extra": [{"filename": "x"}]}')" "400 input_extra[0] needs a \"text\" string" "bad extra"
contains "$(err '{"input_prefix": "a", "input_suffix": "b", "response_fields": [1]}')" "400 'response_fields' must be an array of strings" "bad fields"
[ "$(curl -s "$URL/infill" -d '{"input_prefix": "a", "input_suffix": "b", "n_predict": 100000}' | jq -r .error.param)" = n_predict ] ||
    fail "a too large n_predict should name n_predict"

# "suffix" on the OpenAI and Ollama routes: the same prompt as /infill's.
i=$(curl -sf "$URL/infill" -d '{"input_prefix": "x = ", "input_suffix": "\ny = 2\n", "n_predict": 6, "temperature": 0}' | jq -r .content)
o=$(curl -sf "$URL/v1/completions" -d '{"model": "coder", "prompt": "x = ", "suffix": "\ny = 2\n", "max_tokens": 6, "temperature": 0, "repeat_penalty": 1}' | jq -r '.choices[0].text')
[ "$o" = "$i" ] || fail "/v1/completions with suffix '$o' vs /infill '$i'"
g=$(curl -sf "$URL/api/generate" -d '{"model": "coder", "prompt": "x = ", "suffix": "\ny = 2\n", "stream": false, "options": {"num_predict": 6, "temperature": 0, "repeat_penalty": 1}}' | jq -r .response)
[ "$g" = "$i" ] || fail "/api/generate with suffix '$g' vs /infill '$i'"
s=$(curl -s "$URL/v1/completions" -d '{"model": "coder", "prompt": ["a", "b"], "suffix": "c"}' | jq -r .error.message)
contains "$s" "'suffix' takes one prompt string" "suffix with two prompts"

# The openai npm client, where node and the pinned clients are installed.
CLIENTS=$(cd "$(dirname "$0")/clients" && pwd)
if command -v node >/dev/null && [ -d "$CLIENTS/node_modules/openai" ]; then
    SLM_URL=$URL SLM_MODEL=coder node "$CLIENTS/openai_fim.mjs" || fail "the openai client"
else
    echo "SKIP-PART: the openai npm client (node or tests/e2e/clients/node_modules missing)" >&2
fi
serve_stop

# slm run --suffix: the same text as the server's.
r=$("$SLM" run coder "x = " --suffix $'\ny = 2\n' -n 6 --temperature 0 --repeat-penalty 1)
[ "$r" = "$i" ] || fail "slm run --suffix '$r' vs /infill '$i'"
expect_exit 1 "$SLM" run stories "Once" --suffix "end" -n 2
contains "$ERR" "cannot fill in the middle"
echo "ok"
