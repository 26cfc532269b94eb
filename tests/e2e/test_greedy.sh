#!/usr/bin/env bash
# Greedy equality with llama.cpp: `slm run --temperature 0` on stories260K must
# produce exactly the token ids and the text that llama.cpp's own binaries
# produced for the same prompts (tests/data/greedy/stories260k.json, made by
# tests/data/greedy/make_fixture.sh from llama-simple and llama-server).
#
# For each case: `slm run MODEL PROMPT --temperature 0 -n N --raw --token-ids`
# prints the generated ids (space-separated), and the same without
# --token-ids prints the continuation text (one trailing newline from slm is
# allowed). At temperature 0 slm's default repeat penalty is off, so this is
# the model's own argmax, as llama-simple's greedy sampler.
# Skips (77) when stories260K (tests/tools/test-model.sh), jq, or `slm run` is missing.
set -euo pipefail

skip() {
    printf 'SKIP: %s\n' "$*"
    exit 77
}
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

: "${SLM_BIN:?SLM_BIN must name the slm binary}"
data=${SLM_TEST_DATA:-$(cd "$(dirname "$0")/../data" && pwd)}
fixture=$data/greedy/stories260k.json
[ -f "$fixture" ] || fail "fixture missing: $fixture"
found=$("$(dirname "$0")/../tools/test-model.sh" stories 2>&1) || skip "$found"
model=${found#* }
command -v jq >/dev/null || skip "jq is not installed (apt-get install jq)"
if ! help=$("$SLM_BIN" run --help 2>&1) || ! grep -q -- '--token-ids' <<<"$help"; then
    skip "slm run (with --token-ids) is not available yet"
fi

want_sha=$(jq -r .model_sha256 "$fixture")
got_sha=$(sha256sum "$model" | cut -d' ' -f1)
[ "$got_sha" = "$want_sha" ] ||
    fail "$model has sha256 $got_sha, the fixture was made from $want_sha"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n_predict=$(jq -r .n_predict "$fixture")
n_cases=$(jq '.cases | length' "$fixture")
greedy=(--temperature 0 -n "$n_predict" --raw)
[ "$n_cases" -gt 0 ] || fail "no cases in $fixture"
failed=0

for ((i = 0; i < n_cases; i++)); do
    prompt=$(jq -r ".cases[$i].prompt" "$fixture")
    want_ids=$(jq -r ".cases[$i].ids | map(tostring) | join(\" \")" "$fixture")
    jq -j ".cases[$i].text" "$fixture" >"$tmp/want.txt"

    if ! "$SLM_BIN" run "$model" "$prompt" "${greedy[@]}" --token-ids \
        >"$tmp/ids.out" 2>"$tmp/ids.err"; then
        cat "$tmp/ids.err" >&2
        fail "slm run --token-ids failed on case $i ('$prompt')"
    fi
    # Any whitespace between ids is fine; the sequence must be identical.
    got_ids=$(tr -s ' \t\n' ' ' <"$tmp/ids.out" | sed 's/^ //; s/ $//')
    if [ "$got_ids" != "$want_ids" ]; then
        printf 'case %d (%s): token ids differ\n  want: %s\n  got:  %s\n' \
            "$i" "$prompt" "$want_ids" "${got_ids:0:400}" >&2
        read -r -a w <<<"$want_ids"
        read -r -a g <<<"$got_ids"
        for ((k = 0; k < ${#w[@]} || k < ${#g[@]}; k++)); do
            if [ "${w[k]:-}" != "${g[k]:-}" ]; then
                printf '  first difference at generated token %d: want %s, got %s\n' \
                    "$k" "${w[k]:-<end>}" "${g[k]:-<end>}" >&2
                break
            fi
        done
        failed=1
    fi

    if ! "$SLM_BIN" run "$model" "$prompt" "${greedy[@]}" \
        >"$tmp/text.out" 2>"$tmp/text.err"; then
        cat "$tmp/text.err" >&2
        fail "slm run failed on case $i ('$prompt')"
    fi
    cp "$tmp/want.txt" "$tmp/want_nl.txt"
    printf '\n' >>"$tmp/want_nl.txt"
    if ! cmp -s "$tmp/text.out" "$tmp/want.txt" && ! cmp -s "$tmp/text.out" "$tmp/want_nl.txt"; then
        printf 'case %d (%s): text differs\n' "$i" "$prompt" >&2
        diff <(fold -w 80 "$tmp/want.txt") <(fold -w 80 "$tmp/text.out") | head -n 20 >&2 || true
        failed=1
    fi
done

[ "$failed" = 0 ] || fail "slm's greedy output differs from llama.cpp's (see above)"
printf 'ok: %d cases match llama.cpp token for token\n' "$n_cases"
