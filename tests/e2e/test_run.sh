#!/usr/bin/env bash
# slm run through the real binary on the test model (lib.sh need_model:
# stories260K, else a random one): output, flags, errors, exit
# codes, structured output, the line-mode chat.
. "$(dirname "$0")/lib.sh"
need_model

# Greedy output is deterministic and -n is exact.
a=$("$SLM" run "$MODEL" "Once upon a time" --temperature 0 -n 40)
b=$("$SLM" run "$MODEL" --temperature 0 --max-tokens 40 "Once upon a time")
[ "$a" = "$b" ] || fail "greedy output differs between runs"
[ -n "$a" ] || fail "no output"
ids=$("$SLM" run "$MODEL" "Once upon a time" --temperature 0 -n 25 --token-ids)
[ "$(echo "$ids" | wc -w)" = 25 ] || fail "expected 25 token ids, got: $ids"

# Piped text is the context for the prompt.
out=$(echo "Lily had a red ball." | "$SLM" run "$MODEL" "One day," --temperature 0 -n 10)
[ -n "$out" ] || fail "no output with piped input"
out2=$(printf 'Lily had a red ball.\n\nOne day,' | "$SLM" run "$MODEL" --temperature 0 -n 10)
[ "$out" = "$out2" ] || fail "stdin + prompt should equal '<stdin>\n\n<prompt>'"

# Stop strings cut the output before the match.
out=$("$SLM" run "$MODEL" "Once upon a time" --temperature 0 -n 60 --stop "Lily")
case "$out" in *Lily*) fail "stop string was printed: $out" ;; esac

# --verbose reports speeds on stderr.
err=$("$SLM" run "$MODEL" "Once" --temperature 0 -n 8 --verbose 2>&1 >/dev/null)
contains "$err" "load: " "verbose"
contains "$err" "prompt: " "verbose"
contains "$err" "generate: 8 tokens" "verbose"

# Errors: exit codes and messages.
expect_exit 2 "$SLM" run "$MODEL" -n abc "x"
contains "$ERR" "max-tokens"
expect_exit 2 "$SLM" run "$MODEL" --temperature -3 "x"
expect_exit 2 "$SLM" run "$MODEL" --bogus "x"
expect_exit 2 "$SLM" run
expect_exit 3 "$SLM" run no-such-model "x"
contains "$ERR" "slm pull"
notgguf=$(mktemp /tmp/slm-e2e-XXXXXX.gguf)
echo "not a model" >"$notgguf"
expect_exit 1 "$SLM" run "$notgguf" "x"
contains "$ERR" "not a GGUF"
rm -f "$notgguf"
long=$(for i in $(seq 300); do printf 'Once upon a time there was a girl. '; done)
expect_exit 5 "$SLM" run "$MODEL" --ctx-size 256 "$long"
contains "$ERR" "context holds 256"
expect_exit 0 "$SLM" run --help

# A Liquid template renders the turn from --vars and input; errors name the line.
tmpl=$(mktemp /tmp/slm-e2e-XXXXXX.liquid)
printf '%s\n%s\n%s\n%s\n%s' '{%- for ex in examples %}Q: {{ ex.q }}' 'A: {{ ex.a | upcase }}' \
    '{% endfor -%}' 'Q: {{ input | strip }}' 'A:' >"$tmpl"
vars='{"examples":[{"q":"Who is Lily?","a":"a girl"}]}'
a=$("$SLM" run "$MODEL" --template "$tmpl" --vars "$vars" "Who is Tom?" --temperature 0 -n 12)
b=$("$SLM" run "$MODEL" "$(printf 'Q: Who is Lily?\nA: A GIRL\nQ: Who is Tom?\nA:')" --temperature 0 -n 12)
[ "$a" = "$b" ] || fail "template output differs from the same prompt written by hand: '$a' vs '$b'"
printf '{%% if x %%}\n' >"$tmpl"
expect_exit 1 "$SLM" run "$MODEL" --template "$tmpl" "x"
contains "$ERR" ":1:1:"
expect_exit 1 "$SLM" run "$MODEL" --vars '{"a":1}' "x"
contains "$ERR" "needs a template"
rm -f "$tmpl"

# Structured output: a JSON object, and a schema with an enum.
command -v node >/dev/null || skip "node is needed to check JSON output"
out=$("$SLM" run "$MODEL" "Once upon a time" --format json --temperature 0 -n 200)
node -e 'const v = JSON.parse(process.argv[1]); if (typeof v !== "object" || Array.isArray(v)) process.exit(1)' "$out" \
    || fail "--format json output is not a JSON object: $out"
schema=$(mktemp /tmp/slm-e2e-XXXXXX.json)
cat >"$schema" <<'JSON'
{"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}, "age": {"type": "integer"}},
 "required": ["mood", "age"], "additionalProperties": false}
JSON
for seed in 1 2 3; do
    out=$("$SLM" run "$MODEL" "Lily was" --json-schema "$schema" --temperature 1 --seed $seed -n 300)
    node -e '
        const v = JSON.parse(process.argv[1]);
        const keys = Object.keys(v).sort().join(",");
        if (keys !== "age,mood" || !["happy", "sad"].includes(v.mood) || !Number.isInteger(v.age)) process.exit(1)' "$out" \
        || fail "schema output does not validate: $out"
done
expect_exit 4 "$SLM" run "$MODEL" "Lily was" --json-schema "$schema" --temperature 0 -n 3
contains "$ERR" "incomplete"
rm -f "$schema"

# The chat, line by line on a pipe: commands and two turns.
out=$(printf 'Hello there\n/show parameters\n/set parameter num_predict 5\n/set parameter bogus 1\nHi again\n/bye\n' |
    "$SLM" run "$MODEL" --interactive --temperature 0 -n 12)
contains "$out" '"num_predict": 12' "chat /show parameters"
contains "$out" "Set parameter 'num_predict' to '5'" "chat /set"
contains "$out" "unknown parameter 'bogus'" "chat /set with a bad name"
echo "ok: slm run"
