#!/usr/bin/env bash
# bench/run_speed.sh - `slm run` against llama.cpp's llama-bench on the same
# model files, same thread count: prompt processing (512 tokens) and generation
# (128 tokens), mean ± stddev over repetitions, and the ratio slm / llama.cpp.
#
#   bench/run_speed.sh [--reps N] [--threads N] [--quant "Q8_0 Q4_K_M"] [--no-slm]
#
# Models: synthetic SmolLM2-135M-shaped files (tests/tools/mkmodel --preset
# smollm2-135m: 30 layers, 576 embd, tied, real 49,152-token vocabulary;
# ~145 MB at Q8_0, ~105 MB at Q4_K_M like the real files), made once and cached
# in ${XDG_CACHE_HOME:-$HOME/.cache}/slm/bench-models/. Random weights run at
# the real model's speed: the work is the same matrix products.
#
# What is compared (target: slm >= 0.97x llama.cpp on both):
#   pp512  llama-bench -p 512 (512 random ids, the first one BOS if the model
#          adds one, in one batch) vs slm run with a prompt that tokenizes to
#          exactly 512 tokens, BOS included if added (the SmolLM2 vocabulary adds
#          none), checked on the `prompt:` line of --verbose, -n 1
#   tg128  llama-bench -n 128 (128 single-token decodes from an empty context)
#          vs slm run with a one-word prompt, -n 128 --ignore-eos (`generate:` line)
# Both sides run a warm-up first that is not counted (llama-bench does its own),
# with the context llama-bench gives each test (n_ctx = the test's tokens: slm
# gets --ctx-size 513 for pp512 and 130 for tg128; a larger context costs
# llama.cpp a few percent on pp at this size, on both sides alike).
# slm runs: slm run MODEL PROMPT --threads T --temperature 0 --raw --verbose ...
#
# Output: a Markdown table on stdout; progress on stderr. No network.
set -euo pipefail

BENCH_NAME=run_speed
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

reps=5
threads=2
quants="Q8_0 Q4_K_M"
run_slm=1
n_prompt=512
n_gen=128

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=${2:?--reps needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --quant) quants=${2:?--quant needs a value}; shift 2 ;;
    --no-slm) run_slm=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || bench_die "--reps wants a positive integer, got '$reps'"
[[ $threads =~ ^[1-9][0-9]*$ ]] || bench_die "--threads wants a positive integer, got '$threads'"

bench_init
bench_slm
bench_peers

if [ $run_slm = 1 ] && ! "$SLM_BIN" run --help 2>&1 | grep -q -- '--ignore-eos'; then
    bench_log "slm run (with --ignore-eos and --verbose) is not available yet: llama.cpp side only"
    run_slm=0
fi

# ---------------------------------------------------------------- llama.cpp

# peer_bench MODEL -> writes "pp_mean pp_sd tg_mean tg_sd size_bytes" to stdout
peer_bench() {
    local model=$1 out=$BENCH_TMP/llama-bench.json
    "$PEER_BIN/llama-bench" -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r "$reps" \
        -o json >"$out" 2>"$BENCH_TMP/llama-bench.err" || {
        tail -n 20 "$BENCH_TMP/llama-bench.err" >&2
        bench_die "llama-bench failed on $model"
    }
    jq -r --argjson p "$n_prompt" --argjson g "$n_gen" '
        (map(select(.n_prompt == $p and .n_gen == 0))[0]) as $pp |
        (map(select(.n_prompt == 0 and .n_gen == $g))[0]) as $tg |
        if $pp == null or $tg == null then error("llama-bench output lacks pp/tg rows")
        else "\($pp.avg_ts) \($pp.stddev_ts) \($tg.avg_ts) \($tg.stddev_ts) \($pp.model_size)"
        end' "$out" || bench_die "cannot parse llama-bench's JSON ($out)"
}

# ---------------------------------------------------------------- slm

# slm_verbose MODEL PROMPT-FILE ARGS... -> slm's --verbose lines (stderr) in $BENCH_TMP/slm.err
slm_verbose() {
    local model=$1 prompt_file=$2
    shift 2
    "$SLM_BIN" run "$model" "$(cat "$prompt_file")" --threads "$threads" --temperature 0 \
        --raw --verbose "$@" >/dev/null 2>"$BENCH_TMP/slm.err" || {
        tail -n 20 "$BENCH_TMP/slm.err" >&2
        bench_die "slm run failed on $model"
    }
}

# verbose_field KIND FIELD: from `KIND: N tokens, T s, R tokens/s`, field 2 = N, 6 = R
verbose_field() {
    awk -v k="$1:" -v f="$2" '$1 == k { v = $f } END { if (v == "") exit 1; print v }' \
        "$BENCH_TMP/slm.err" || {
        tail -n 20 "$BENCH_TMP/slm.err" >&2
        bench_die "no '$1:' line in slm run --verbose output"
    }
}

# make_prompt MODEL N FILE: writes text that slm tokenizes to exactly N tokens
# (BOS included when the model adds one). Common words, each one token in
# the usual BPE vocabularies; the count is measured by slm and corrected.
make_prompt() {
    local model=$1 want=$2 file=$3
    local words=(the of and to in is it that was for on are with as his they at be this from
        have or by one had not but what all were when we there can an your which their said
        will each about how up out them she many some so these would other into)
    local n=$want got i text
    for _ in 1 2 3 4 5 6; do
        text=${words[0]}
        for ((i = 1; i < n; i++)); do
            text+=" ${words[i % ${#words[@]}]}"
        done
        printf '%s' "$text" >"$file"
        slm_verbose "$model" "$file" -n 1
        got=$(verbose_field prompt 2)
        [ "$got" = "$want" ] && return 0
        n=$((n + want - got))
        [ $n -gt 0 ] || break
    done
    bench_die "could not make a prompt of exactly $want tokens (last try: $got)"
}

# slm_bench MODEL -> "pp_mean pp_sd tg_mean tg_sd"
slm_bench() {
    local model=$1 pp=() tg=() r
    local long=$BENCH_TMP/prompt-$n_prompt.txt short=$BENCH_TMP/prompt-short.txt
    make_prompt "$model" "$n_prompt" "$long"
    printf 'The' >"$short"
    slm_verbose "$model" "$short" -n "$n_gen" --ignore-eos # warm-up, not counted
    for ((r = 1; r <= reps; r++)); do
        slm_verbose "$model" "$long" -n 1 --ctx-size $((n_prompt + 1))
        [ "$(verbose_field prompt 2)" = "$n_prompt" ] || bench_die "prompt was not $n_prompt tokens"
        pp+=("$(verbose_field prompt 6)")
        slm_verbose "$model" "$short" -n "$n_gen" --ignore-eos --ctx-size $((n_gen + 2))
        [ "$(verbose_field generate 2)" = "$n_gen" ] ||
            bench_die "slm generated $(verbose_field generate 2) tokens, not $n_gen"
        tg+=("$(verbose_field generate 6)")
    done
    printf '%s %s\n' "$(bench_stats "${pp[@]}")" "$(bench_stats "${tg[@]}")"
}

# ---------------------------------------------------------------- table

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'
}

rows=()
for q in $quants; do
    model=$(bench_model "smollm2-135m-shape-$q" --preset smollm2-135m --seed 1 --quantize "$q")
    size=$(awk -v b="$(stat -c %s "$model")" 'BEGIN { printf "%.1f MB", b / 1e6 }')
    bench_log "$q: llama-bench -t $threads -p $n_prompt -n $n_gen -r $reps ($model)"
    res=$(peer_bench "$model")
    read -r l_pp l_pp_sd l_tg l_tg_sd _ <<<"$res"
    s_pp=n/a s_pp_sd='' s_tg=n/a s_tg_sd=''
    if [ $run_slm = 1 ]; then
        bench_log "$q: slm run x $reps (pp$n_prompt, tg$n_gen)"
        res=$(slm_bench "$model")
        read -r s_pp s_pp_sd s_tg s_tg_sd <<<"$res"
    fi
    for t in pp tg; do
        if [ $t = pp ]; then
            test=pp$n_prompt lm=$l_pp lsd=$l_pp_sd sm=$s_pp ssd=$s_pp_sd
        else
            test=tg$n_gen lm=$l_tg lsd=$l_tg_sd sm=$s_tg ssd=$s_tg_sd
        fi
        lcell=$(awk -v m="$lm" -v s="$lsd" 'BEGIN { printf "%.2f ± %.2f", m, s }')
        if [ "$sm" = n/a ]; then
            scell=n/a rcell=n/a
        else
            scell="$sm ± $ssd"
            rcell=$(ratio "$sm" "$lm")
        fi
        rows+=("| SmolLM2-135M shape $q | $size | $test | $lcell | $scell | $rcell |")
    done
done

printf '\n'
printf 'slm run vs llama-bench, %s thread(s), %s repetitions, %s\n' "$threads" "$reps" \
    "$(bench_machine)"
printf '\n| model | size | test | llama.cpp t/s | slm t/s | slm / llama.cpp |\n'
printf '|---|---|---|---:|---:|---:|\n'
printf '%s\n' "${rows[@]}"
[ $run_slm = 1 ] || printf '\nslm columns: n/a (slm run with --verbose/--ignore-eos not available)\n'
