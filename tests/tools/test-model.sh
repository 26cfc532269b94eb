#!/usr/bin/env bash
# tests/tools/test-model.sh - the one place tests find a model, the way a
# user's machine has one. Used by tests/e2e/lib.sh (need_model, need_stories)
# and tests/unit/test_stories.h.
#
#   test-model.sh stories   the real stories260K, for tests that need coherent text
#   test-model.sh any       the same, else a small random-weight llama model
#
# Prints "KIND PATH" on stdout, KIND being `stories` or `random`, and exits 0;
# when there is none, prints why on stderr and exits 77 (a CTest skip).
#
# Looked up in this order:
#   1. $SLM_SHARED/models/stories260K.gguf (default: ../shared beside the clone)
#   2. stories260k in the user's store: $SLM_TEST_STORE, else $SLM_HOME, else
#      ~/.slm (scripts/setup.sh pulls it there when the network allows)
#   3. (any) $SLM_TEST_MODELS/random-tiny.gguf, made once by tests/tools/mkmodel
#      (--preset tiny: 2 layers, llama-spm vocab; noise weights, real shapes)
#
# Environment: SLM_BIN (the slm binary), SLM_TOOLS (where mkmodel is),
# SLM_VOCAB_DIR (llama.cpp's vocab GGUFs), SLM_TEST_MODELS (cache folder,
# default $SLM_TOOLS/../test-models), SLM_TEST_NO_STORIES=1 (skip 1 and 2: try
# the random model as a contributor without ../shared or network has it).
set -euo pipefail
want=${1:-any}
case "$want" in
stories | any) ;;
*)
    echo "usage: test-model.sh stories|any" >&2
    exit 2
    ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
shared=${SLM_SHARED:-$(cd "$here/../.." && pwd)/../shared}
store=${SLM_TEST_STORE:-${SLM_HOME:-$HOME/.slm}}

if [ -z "${SLM_TEST_NO_STORIES:-}" ]; then
    if [ -f "$shared/models/stories260K.gguf" ]; then
        echo "stories $shared/models/stories260K.gguf"
        exit 0
    fi
    if [ -x "${SLM_BIN:-}" ] && [ -d "$store" ]; then # (slm would create a missing store)
        from=$(SLM_HOME=$store "$SLM_BIN" show --modelfile stories260k 2>/dev/null |
            sed -n 's/^FROM //p' | head -n 1) || true
        if [ -n "$from" ] && [ -f "$from" ]; then
            echo "stories $from"
            exit 0
        fi
    fi
fi
no_stories="no stories260K in $shared/models nor in the store $store (slm pull stories260k)"
[ -z "${SLM_TEST_NO_STORIES:-}" ] || no_stories="no stories260K (SLM_TEST_NO_STORIES is set)"
if [ "$want" = stories ]; then
    echo "$no_stories; this test needs stories260K itself (its text, tokenizer or shapes)" >&2
    exit 77
fi

tools=${SLM_TOOLS:-}
models=${SLM_TEST_MODELS:-${tools:+$tools/../test-models}}
out=$models/random-tiny.gguf
if [ -n "$models" ] && [ -f "$out" ]; then
    echo "random $out"
    exit 0
fi
[ -x "$tools/mkmodel" ] || {
    echo "$no_stories, and tests/tools/mkmodel is not built (\$SLM_TOOLS) to make a random one" >&2
    exit 77
}
[ -f "${SLM_VOCAB_DIR:-}/ggml-vocab-llama-spm.gguf" ] || {
    echo "$no_stories, and llama.cpp's vocab files (\$SLM_VOCAB_DIR) are missing for a random one" >&2
    exit 77
}
mkdir -p "$models"
# Tests run in parallel: each makes its own file and renames it into place.
tmp=$models/random-tiny.$$.gguf
if ! SLM_VOCAB_DIR=$SLM_VOCAB_DIR "$tools/mkmodel" --preset tiny -o "$tmp" >"$tmp.log" 2>&1; then
    echo "mkmodel failed: $(tail -n 3 "$tmp.log")" >&2
    rm -f "$tmp" "$tmp.log"
    exit 1
fi
rm -f "$tmp.log"
mv -f "$tmp" "$out"
echo "random $out"
