#!/usr/bin/env bash
# The model maker writes GGUFs that llama.cpp loads and generates from, the
# same bytes for the same flags, and its presets have the real shapes.
. "$(dirname "$0")/lib.sh"
mk=${SLM_TOOLS:?}/mkmodel
[ -x "$mk" ] || skip "mkmodel not built"
vocab=${SLM_VOCAB_DIR:-}
[ -f "$vocab/ggml-vocab-llama-spm.gguf" ] || skip "llama.cpp vocab files not found (\$SLM_VOCAB_DIR)"
export SLM_VOCAB_DIR=$vocab
dir=$(mktemp -d /tmp/slm-e2e-mk-XXXXXX)
trap 'rm -rf "$dir" "$SLM_HOME"' EXIT

"$mk" --preset tiny -o "$dir/a.gguf" >/dev/null 2>&1 || fail "mkmodel --preset tiny failed"
"$mk" --preset tiny -o "$dir/b.gguf" >/dev/null 2>&1
cmp -s "$dir/a.gguf" "$dir/b.gguf" || fail "same flags gave different bytes"
"$mk" --preset tiny --seed 7 -o "$dir/c.gguf" >/dev/null 2>&1
cmp -s "$dir/a.gguf" "$dir/c.gguf" && fail "a different seed gave the same bytes"

info=$("$SLM" show "$dir/a.gguf")
contains "$info" "llama" "show of a made model"
ids=$("$SLM" run "$dir/a.gguf" "hello world" --temperature 0 -n 16 --ignore-eos --token-ids)
[ "$(echo "$ids" | wc -w)" = 16 ] || fail "expected 16 tokens from the made model: $ids"

"$mk" --preset tiny --arch qwen2 --quantize Q8_0 -o "$dir/q.gguf" >/dev/null 2>&1 ||
    fail "mkmodel qwen2 Q8_0 failed"
info=$("$SLM" show "$dir/q.gguf")
contains "$info" "qwen2" "show of a qwen2 model"
contains "$info" "Q8_0" "show of a quantized model"
"$SLM" run "$dir/q.gguf" "hello" --temperature 0 -n 8 --ignore-eos >/dev/null || fail "qwen2 run"
echo "ok: mkmodel"
