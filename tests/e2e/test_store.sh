#!/usr/bin/env bash
# The model store through the real binary: pull by alias, hf.co name and
# :QUANT from the fake Hugging Face server, a folder mirror, list/show/cp/rm,
# create from Modelfiles (and their errors), kill -9 during create, quantize
# to Q8_0 and Q4_K_M.
# The parts that read a real model need the pinned stories260K (lib.sh need_stories).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_hf.sh"

ROOT=$WORK/root
REPO=$ROOT/acme/tiny-GGUF/resolve/main
fake_gguf "$REPO/tiny-Q4_K_M.gguf" 50000
fake_gguf "$REPO/tiny-Q8_0.gguf" 60000

# --- list, cp and rm on pulled files (no real model needed).
new_home
start_fake "$ROOT"
out=$("$SLM" list)
contains "$out" "NAME" "empty list header"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "empty store lists models: $out"
"$SLM" pull -q hf.co/acme/tiny-GGUF:Q4_K_M hf.co/acme/tiny-GGUF:Q8_0 >/dev/null
out=$("$SLM" list)
contains "$out" "hf.co/acme/tiny-GGUF:Q4_K_M" "list"
contains "$out" "hf.co/acme/tiny-GGUF:Q8_0" "list"
contains "$out" "50 KB" "list size"
contains "$out" "ago" "list modified"
"$SLM" list --json | grep -q '"size": 50004' || fail "list --json size"

out=$("$SLM" cp hf.co/acme/tiny-GGUF:Q4_K_M mine/tiny:v1)
contains "$out" "copied" "cp"
id1=$("$SLM" list | awk '$1 == "hf.co/acme/tiny-GGUF:Q4_K_M" {print $2}')
id2=$("$SLM" list | awk '$1 == "mine/tiny:v1" {print $2}')
[ -n "$id1" ] && [ "$id1" = "$id2" ] || fail "cp should keep the ID ($id1 vs $id2)"
expect_exit 3 "$SLM" cp no-such-model x
expect_exit 1 "$SLM" cp hf.co/acme/tiny-GGUF:Q4_K_M "../escape"
contains "$ERR" "invalid model name"
expect_exit 2 "$SLM" cp onlyone

[ "$(blob_count)" = 2 ] || fail "expected 2 blobs"
out=$("$SLM" rm hf.co/acme/tiny-GGUF:Q4_K_M)
contains "$out" "deleted 'hf.co/acme/tiny-GGUF:Q4_K_M'" "rm"
[ "$(blob_count)" = 2 ] || fail "rm removed a blob still used by mine/tiny:v1"
out=$("$SLM" rm mine/tiny:v1 hf.co/acme/tiny-GGUF:Q8_0)
contains "$out" "freed" "rm frees blobs"
[ "$(blob_count)" = 0 ] || fail "blobs left after removing every model"
[ "$(model_count)" = 0 ] || fail "models left after rm"
[ -z "$(ls -A "$SLM_HOME/manifests")" ] || fail "empty manifest folders left"
expect_exit 3 "$SLM" rm hf.co/acme/tiny-GGUF:Q4_K_M
for c in pull list show rm cp create quantize; do
    "$SLM" "$c" --help >/dev/null || fail "slm $c --help"
done

# A damaged store: a missing blob is reported, not handed out.
"$SLM" pull -q hf.co/acme/tiny-GGUF:Q8_0 >/dev/null
rm -f "$SLM_HOME"/blobs/*
"$SLM" list | grep -q "damaged" || fail "list does not flag a missing blob"
expect_exit 3 "$SLM" show hf.co/acme/tiny-GGUF:Q8_0
contains "$ERR" "missing"
"$SLM" pull -q hf.co/acme/tiny-GGUF:Q8_0 >/dev/null # pulling repairs it
"$SLM" list | grep -q "damaged" && fail "pull did not repair the missing blob"

# --- kill -9 during `slm create` (issue 14): whenever the process dies, the
# store stays consistent: no half manifest, every blob hashes to its name,
# `slm list` works, and the same create succeeds afterwards. What the killed
# import left in tmp/ is removed by a later create once it is old (it is aged
# here instead of waiting an hour). A 128 MB file makes the import last long
# enough to be killed in the middle: once exactly while tmp/ holds the import,
# then after a few fixed delays that land in other phases.
new_home
MFK=$WORK/killcreate
mkdir -p "$MFK"
{ printf 'GGUF'; head -c 134217728 /dev/zero; } >"$MFK/big.gguf"
printf 'FROM ./big.gguf\nSYSTEM Be brief.\nTEMPLATE """{{ input }}"""\n' >"$MFK/Modelfile"
check_store() { # what
    out=$("$SLM" list) || fail "slm list failed after $1"
    case "$out" in *damaged*) fail "a damaged model after $1: $out" ;; esac
    find "$SLM_HOME/manifests" -name '*.json' | while read -r m; do
        jq -e .model.digest "$m" >/dev/null || fail "half manifest $m after $1"
    done
    blobs_match_names
}
killed_in_import=0
for delay in import 0.02 0.1 0.3 0.6; do
    "$SLM" create big -f "$MFK/Modelfile" >/dev/null 2>&1 &
    pid=$!
    if [ "$delay" = import ]; then
        for _ in $(seq 500); do
            ls "$SLM_HOME/tmp" 2>/dev/null | grep -q '^import-' && break
            sleep 0.01
        done
        ls "$SLM_HOME/tmp" 2>/dev/null | grep -q '^import-' && killed_in_import=1
    else
        sleep "$delay"
    fi
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    check_store "kill -9 of slm create ($delay)"
    "$SLM" rm big >/dev/null 2>&1 || true
done
[ "$killed_in_import" = 1 ] || echo "SKIP-PART: the create finished before its import was seen in tmp/" >&2
# Everything the killed runs left in tmp/ is now old; the next create cleans it.
find "$SLM_HOME/tmp" -type f -exec touch -d '2 hours ago' {} +
"$SLM" create big -f "$MFK/Modelfile" >/dev/null 2>&1 || fail "create after kill -9"
check_store "the create after kill -9"
[ "$(jq -r .system "$SLM_HOME/manifests/big/latest.json")" = "Be brief." ] ||
    fail "the re-created model lost its system message"
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "tmp/ still holds what killed creates left: $(ls -A "$SLM_HOME/tmp")"
rm -f "$MFK/big.gguf"

# --- The rest reads a real model.
need_stories
STORIES_SHA=270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d
[ "$(sha256_of "$STORIES")" = "$STORIES_SHA" ] || skip "stories260K.gguf is not the pinned file"
mkdir -p "$ROOT/ggml-org/models/resolve/main/tinyllamas" "$ROOT/acme/stories-GGUF/resolve/main"
cp "$STORIES" "$ROOT/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf"
cp "$STORIES" "$ROOT/acme/stories-GGUF/resolve/main/stories260K-F32.gguf"

new_home
out=$("$SLM" pull stories260k)
contains "$out" "pulled stories260k:latest" "alias pull"
contains "$out" "sha256 verified" "alias pull"
grep -q "tinyllamas/stories260K.gguf" "$FAKE_LOG" || fail "alias did not fetch its target"
[ -f "$SLM_HOME/blobs/sha256-$STORIES_SHA" ] || fail "alias blob"
"$SLM" pull -q hf.co/acme/stories-GGUF:F32 >/dev/null
[ "$(blob_count)" = 1 ] || fail "the same file pulled twice should be one blob"

out=$("$SLM" show stories260k)
contains "$out" "architecture" "show"
contains "$out" "llama" "show architecture"
contains "$out" "context length" "show"
contains "$out" "embedding length" "show"
contains "$out" "quantization" "show"
contains "$out" "none: chat requests use ChatML" "show chat template"
json=$("$SLM" show --json stories260k)
contains "$json" '"architecture": "llama"' "show --json"
contains "$json" '"has_chat_template": false' "show --json"
out=$("$SLM" show "$STORIES")
contains "$out" "llama" "show of a local path"
expect_exit 3 "$SLM" show nothing-like-this
contains "$ERR" "slm pull"

# A folder mirror with the alias.
new_home
stop_fake
out=$(SLM_MIRROR=$ROOT SLM_HF_ENDPOINT=http://127.0.0.1:9 "$SLM" pull stories260k)
contains "$out" "sha256 verified" "mirror alias pull (pinned digest)"

# --- create from Modelfiles.
MF=$WORK/mf
mkdir -p "$MF"
cat >"$MF/prompt.liquid" <<'LIQ'
{% if system %}{{ system }}
{% endif %}{{ input }}
LIQ
cp "$STORIES" "$MF/adapter-stand-in.gguf"
cat >"$MF/Modelfile" <<'MFEOF'
# A story model with a house style.
FROM stories260k
ADAPTER ./adapter-stand-in.gguf
PARAMETER temperature 0.2
parameter num_ctx 128
PARAMETER stop "</s>"
PARAMETER stop ###
SYSTEM """You tell short stories.
Always end happily."""
TEMPLATE prompt.liquid
MESSAGE user Tell me about a cat.
MESSAGE assistant "Once upon a time there was a cat."
LICENSE MIT
MFEOF
out=$("$SLM" create me/story -f "$MF/Modelfile" 2>/dev/null)
contains "$out" "created me/story:latest" "create"
show=$("$SLM" show me/story)
contains "$show" "temperature" "show params"
contains "$show" "0.2" "show params"
contains "$show" '"</s>"' "show stop"
contains "$show" "You tell short stories." "show system"
contains "$show" "Template (Liquid)" "show template"
contains "$show" "{{ input }}" "show template text"
contains "$show" "Tell me about a cat." "show messages"
contains "$show" "MIT" "show license"
contains "$show" "Adapters" "show adapters"
[ "$("$SLM" show --system me/story | head -1)" = "You tell short stories." ] || fail "show --system"
"$SLM" show --parameters me/story | grep -q "num_ctx *128" || fail "show --parameters"
"$SLM" show --license me/story | grep -q "^MIT$" || fail "show --license"

# show --modelfile prints a Modelfile that recreates the model.
"$SLM" show --modelfile me/story >"$MF/Modelfile.out"
grep -q "^FROM $SLM_HOME/blobs/sha256-$STORIES_SHA" "$MF/Modelfile.out" || fail "modelfile FROM"
grep -q '^PARAMETER stop "</s>"' "$MF/Modelfile.out" || fail "modelfile stop"
grep -q '^ADAPTER ' "$MF/Modelfile.out" || fail "modelfile adapter"
"$SLM" create me/story2 -f "$MF/Modelfile.out" >/dev/null 2>&1 || fail "create from show --modelfile"
a=$("$SLM" show --json me/story | grep -v '"name"')
b=$("$SLM" show --json me/story2 | grep -v '"name"' | sed 's/me\/story2/me\/story/g')
[ "$(echo "$a" | grep -c .)" = "$(echo "$b" | grep -c .)" ] || fail "recreated model differs"

# FROM another created model inherits and overrides; FROM a relative path.
printf 'FROM me/story\nPARAMETER temperature 0.9\n' >"$MF/Child"
"$SLM" create me/child -f "$MF/Child" >/dev/null 2>&1
out=$("$SLM" show me/child)
contains "$out" "0.9" "child overrides temperature"
contains "$out" "You tell short stories." "child inherits system"
cp "$STORIES" "$MF/local.gguf"
printf 'FROM ./local.gguf\nSYSTEM hi\n' >"$MF/Local"
(cd / && "$SLM" create me/local -f "$MF/Local" >/dev/null 2>&1) || fail "FROM a path relative to the Modelfile"
"$SLM" show me/local | grep -q "llama" || fail "show FROM-path model"
[ "$(blob_count)" -ge 2 ] || fail "expected model and template blobs"

# Errors name the Modelfile, the line and the directive.
printf 'FROM stories260k\nSYSTEM ok\nTEMPLATE """{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}"""\n' >"$MF/Go"
expect_exit 1 "$SLM" create me/go -f "$MF/Go"
contains "$ERR" "$MF/Go:3: TEMPLATE:" "Go template error"
contains "$ERR" "Go template" "Go template error"
contains "$ERR" "Liquid" "Go template error"
printf 'FROM stories260k\nTEMPLATE """Q: {{ input }}\n{%% if x %%}A:"""\n' >"$MF/BadLiquid"
expect_exit 1 "$SLM" create me/badliquid -f "$MF/BadLiquid"
contains "$ERR" "$MF/BadLiquid:2: TEMPLATE:" "Liquid syntax error"
contains "$ERR" "endif" "Liquid syntax error says what was expected"
printf 'FROM stories260k\n\nPARAMETER top_p 2\n' >"$MF/Bad"
expect_exit 1 "$SLM" create me/bad -f "$MF/Bad"
contains "$ERR" "$MF/Bad:3: PARAMETER: 'top_p' must be from 0 to 1" "param error"
printf 'FROM stories260k\nADAPTER ./prompt.liquid\n' >"$MF/NotGguf"
expect_exit 1 "$SLM" create me/bad -f "$MF/NotGguf"
contains "$ERR" "NotGguf:2: ADAPTER: ./prompt.liquid is not a GGUF file"
printf 'FROM no-such-base\n' >"$MF/NoBase"
expect_exit 3 "$SLM" create me/bad -f "$MF/NoBase"
contains "$ERR" "NoBase:1: FROM:"
printf 'FROM ./missing.gguf\n' >"$MF/NoFile"
expect_exit 3 "$SLM" create me/bad -f "$MF/NoFile"
contains "$ERR" "NoFile:1: FROM: file not found"
printf 'FROM stories260k\nTEMPLATE ./nope.liquid\n' >"$MF/NoTemplate"
expect_exit 3 "$SLM" create me/bad -f "$MF/NoTemplate"
contains "$ERR" "NoTemplate:2: TEMPLATE: template file not found"
expect_exit 3 "$SLM" create me/bad -f "$MF/none"
"$SLM" list | grep -q "me/bad" && fail "a failed create left a model"

# --- quantize: files and store models, loadable results.
Q8=$WORK/q8.gguf
out=$("$SLM" quantize stories260k "$Q8" Q8_0 2>/dev/null)
contains "$out" "wrote $Q8" "quantize"
"$SLM" show "$Q8" | grep -q "Q8_0" || fail "quantized file is not Q8_0: $("$SLM" show "$Q8")"
"$SLM" quantize "$STORIES" Q4_K_M --create me/story-q4 >/dev/null 2>&1 || fail "quantize --create"
"$SLM" show me/story-q4 | grep -q "Q4_K" || fail "store model is not Q4_K_M"
"$SLM" quantize me/story Q4_K_M --create me/story-q4b >/dev/null 2>&1
"$SLM" show me/story-q4b | grep -q "You tell short stories." || fail "quantize --create keeps the system"
expect_exit 1 "$SLM" quantize stories260k "$WORK/x.gguf" Q9_9
contains "$ERR" "Q4_K_M" "unknown type lists types"
[ -f "$WORK/x.gguf" ] && fail "a failed quantize left a file"
expect_exit 2 "$SLM" quantize stories260k
if "$SLM" run --help >/dev/null 2>&1; then
    for m in "$Q8" me/story-q4; do
        out=$("$SLM" run "$m" "Once upon a time" --temperature 0 -n 8) ||
            fail "slm run could not use $m"
        [ -n "$out" ] || fail "no output from $m"
    done
fi

echo "test_store: ok"
