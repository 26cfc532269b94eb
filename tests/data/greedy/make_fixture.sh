#!/usr/bin/env bash
# Regenerates tests/data/greedy/stories260k.json: llama.cpp's own greedy output
# for a few prompts on stories260K, which tests/e2e/test_greedy.sh compares
# `slm run --temperature 0` against.
#
#   tests/data/greedy/make_fixture.sh [MODEL]   (default $SLM_SHARED/models/stories260K.gguf,
#                                                SLM_SHARED defaulting to ../shared)
#
# Everything in the fixture comes from llama.cpp's binaries, built from the same
# source as slm's libraries by scripts/llama-deps.sh --tools; nothing from slm:
#   - text: examples/simple (llama-simple -n 64 PROMPT). It is greedy
#     (llama_sampler_init_greedy), adds BOS and parses special tokens, and prints
#     the prompt's pieces, then each generated piece, then "\n";
#   - ids:  llama-server's /completion with "return_tokens": true at temperature
#     0 (only the most likely token survives the chain), because llama-simple
#     prints text only and the tools build has no other binary that prints
#     generated ids.
# The two must agree: llama-simple's output must be the echoed prompt, then
# exactly the server's "content", then "\n"; and the server's content must be
# its ids detokenized (/detokenize). A disagreement stops the script.
#
# Needs: curl, jq, sha256sum. Network: 127.0.0.1 only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
shared=${SLM_SHARED:-$root/../shared}
model=${1:-$shared/models/stories260K.gguf}
out=$here/stories260k.json
n_predict=64
prompts=(
    "Once upon a time"
    "The little dog"
    "Lily wanted to"
    "One day, a boy named Tom"
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball under a tree and"
)

die() {
    printf 'make_fixture: %s\n' "$*" >&2
    exit 1
}
for tool in curl jq sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -f "$model" ] || die "model not found: $model (pass its path, or set SLM_SHARED)"

peer=$("$root/scripts/llama-deps.sh" --tools)
simple=$peer/bin/llama-simple
server=$peer/bin/llama-server
if [ ! -x "$simple" ] || [ ! -x "$server" ]; then
    die "llama-simple/llama-server missing under $peer/bin"
fi

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# llama-server on a free port of 127.0.0.1; one slot, the model's context.
start_server() {
    local port
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        "$server" -m "$model" --host 127.0.0.1 --port "$port" -t 2 -c 2048 -np 1 \
            --no-webui >"$tmp/server.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 1 100); do
            if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
                base=http://127.0.0.1:$port
                return 0
            fi
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    done
    tail -n 20 "$tmp/server.log" >&2
    die "llama-server did not start"
}
start_server

cases=()
for prompt in "${prompts[@]}"; do
    # Text from llama-simple (greedy). Its stdout is the prompt's pieces, the
    # generated pieces, then "\n".
    "$simple" -m "$model" -n "$n_predict" "$prompt" >"$tmp/simple.out" 2>"$tmp/simple.err" ||
        { cat "$tmp/simple.err" >&2; die "llama-simple failed on: $prompt"; }

    # Ids from llama-server.
    jq -n --arg p "$prompt" --argjson n "$n_predict" \
        '{prompt: $p, n_predict: $n, temperature: 0, top_k: 1, return_tokens: true,
          cache_prompt: false, seed: 0}' >"$tmp/req.json"
    curl -sf "$base/completion" -H 'Content-Type: application/json' \
        --data-binary @"$tmp/req.json" >"$tmp/resp.json" || die "/completion failed on: $prompt"
    jq -j .content "$tmp/resp.json" >"$tmp/content.txt"
    # The server keeps a final end-of-generation token in "tokens"; llama-simple
    # stops before it, and so does the fixture (ids are the printed tokens).
    stop=$(jq -r .stop_type "$tmp/resp.json")
    if [ "$stop" = eos ]; then
        jq '.tokens[:-1]' "$tmp/resp.json" >"$tmp/ids.json"
    else
        jq '.tokens' "$tmp/resp.json" >"$tmp/ids.json"
    fi

    # Check 1: llama-simple printed <prompt echo> + content + "\n".
    printf '\n' >>"$tmp/content.txt"
    sz_out=$(stat -c %s "$tmp/simple.out")
    sz_content=$(stat -c %s "$tmp/content.txt")
    [ "$sz_out" -ge "$sz_content" ] || die "llama-simple printed less than llama-server for: $prompt"
    tail -c "$sz_content" "$tmp/simple.out" | cmp -s - "$tmp/content.txt" ||
        die "llama-simple and llama-server disagree on: $prompt"
    head -c $((sz_out - sz_content)) "$tmp/simple.out" >"$tmp/echo.txt"
    case "$(cat "$tmp/echo.txt")" in
    *"$prompt") ;;
    *) die "llama-simple's echo '$(cat "$tmp/echo.txt")' does not end with the prompt" ;;
    esac
    truncate -s $((sz_content - 1)) "$tmp/content.txt"

    # Check 2: the ids detokenize to the text.
    jq -n --slurpfile t "$tmp/ids.json" '{tokens: $t[0]}' >"$tmp/detok.json"
    curl -sf "$base/detokenize" -H 'Content-Type: application/json' \
        --data-binary @"$tmp/detok.json" | jq -j .content >"$tmp/detok.txt"
    cmp -s "$tmp/detok.txt" "$tmp/content.txt" || die "ids do not detokenize to the text for: $prompt"

    cases+=("$(jq -n --arg p "$prompt" --slurpfile ids "$tmp/ids.json" \
        --rawfile text "$tmp/content.txt" --arg stop "$stop" \
        '{prompt: $p, ids: $ids[0], text: $text, stop: $stop}')")
    printf 'make_fixture: %s -> %s tokens (%s)\n' "$prompt" "$(jq length "$tmp/ids.json")" \
        "$stop" >&2
done

sha=$(sha256sum "$model" | cut -d' ' -f1)
version=$("$server" --version 2>&1 | grep -m1 -o 'version: .*' || true)
generator="llama.cpp ${version#version: }: text from llama-simple, ids from llama-server /completion (return_tokens, temperature 0)"
# One case per line, so a regenerated fixture diffs case by case.
{
    printf '{\n  "model_sha256": %s,\n  "n_predict": %s,\n  "generator": %s,\n  "cases": [\n' \
        "$(jq -n --arg v "$sha" '$v')" "$n_predict" "$(jq -n --arg v "$generator" '$v')"
    for i in "${!cases[@]}"; do
        printf '    %s%s\n' "$(jq -c . <<<"${cases[i]}")" "$([ "$i" -lt $((${#cases[@]} - 1)) ] && echo ,)"
    done
    printf '  ]\n}\n'
} >"$tmp/fixture.json"
jq -e '.cases | length > 0' "$tmp/fixture.json" >/dev/null || die "made an invalid fixture"
mv "$tmp/fixture.json" "$out"
printf 'make_fixture: wrote %s\n' "$out" >&2
