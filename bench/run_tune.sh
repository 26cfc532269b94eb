#!/bin/bash
# bench/run_tune.sh - training throughput of `slm tune`, side by side with
# llama.cpp's own tools, in one run with the same threads. Prints a table.
#
# (a) stories260K, the same raw text: slm tune (LoRA r=16, all 7 projections,
#     {"text"} records, no masking) vs llama-finetune (full FP32), same
#     context length. Tokens/s = training tokens processed per second;
#     peak RSS from /usr/bin/time.
# (b) a synthetic SmolLM2-135M-shaped model (tests/tools/mkmodel), Q8_0 base
#     and F32 base, T=256: slm tune tokens/s as a ratio of llama-bench's
#     prompt-processing tokens/s on the same model (a training step costs
#     about three forward passes: 0.33 is the practical ceiling).
#
# Usage: bench/run_tune.sh [BUILD_DIR]   (env: THREADS=2, STEPS=40, CTX=256,
#        ROUNDS=3; STEPS_A, default 5*STEPS: (a)'s steps, so slm's tokens/s is
#        measured over seconds, not a load spike)
#
# A shared VM's speed swings by 20-30% within minutes, so each comparison runs
# ROUNDS times, the peer and slm back to back in each round; the table shows
# each side's best round and the ratio of the bests (every round's ratio is
# printed too).
# Needs: $SLM_SHARED/models/stories260K.gguf (or ../shared), the build's slm and
# tools/mkmodel, and llama.cpp's tools from scripts/llama-deps.sh --tools.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$HERE/build}
SLM=$BUILD/slm
MKMODEL=$BUILD/tools/mkmodel
SHARED=${SLM_SHARED:-$HERE/../shared}
STORIES=$SHARED/models/stories260K.gguf
THREADS=${THREADS:-2}
STEPS=${STEPS:-40}
STEPS_A=${STEPS_A:-$((STEPS * 5))}
ROUNDS=${ROUNDS:-3}
CTX=${CTX:-256}
[ -x "$SLM" ] || { echo "no slm binary at $SLM (build first)" >&2; exit 1; }
[ -f "$STORIES" ] || { echo "no $STORIES" >&2; exit 1; }
TOOLS=$("$HERE/scripts/llama-deps.sh" --tools)/bin
LIB=$("$HERE/scripts/llama-deps.sh")
export SLM_VOCAB_DIR=${SLM_VOCAB_DIR:-$LIB/share/slm-vocab}
W=$(mktemp -d /tmp/slm-bench-tune-XXXXXX)
trap 'rm -rf "$W"' EXIT

# The larger of two numbers (tokens/s, RSS).
max() { python3 -c "print(max(float('$1'), float('$2')))" | sed 's/\.0$//'; }
ratio() { python3 -c "print(round($1 / $2, 3))"; }

# Runs a command under /usr/bin/time; sets SECS and RSS_MB.
measure() {
    /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out" 2>"$W/err" || {
        cat "$W/err" >&2
        return 1
    }
    read -r SECS RSS_KB <"$W/time"
    RSS_MB=$((RSS_KB / 1024))
}

# slm tune's own tokens/s (training steps only, from its last progress line).
slm_toks() { grep -o '[0-9]* tok/s' "$W/err" | tail -1 | cut -d' ' -f1; }

echo "machine: $(nproc) cores, threads=$THREADS (shared machine: numbers vary with load)"
echo

# ---------------------------------------------------------------- (a)
# The same raw text for both: banking77's messages when present, else this repo's docs.
if [ -f "$SHARED/data/banking77/train.csv" ]; then
    awk 'NR > 1 && NR <= 3001' "$SHARED/data/banking77/train.csv" |
        sed 's/,[a-z_]*$//; s/^"//; s/"$//' >"$W/raw.txt"
else
    cat "$HERE"/docs/*.md >"$W/raw.txt"
fi
python3 - "$W/raw.txt" "$W/raw.jsonl" <<'EOF' 2>/dev/null || jq -R -c '{text: .}' <"$W/raw.txt" >"$W/raw.jsonl"
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for line in f:
        line = line.rstrip("\n")
        if line:
            o.write(json.dumps({"text": line}) + "\n")
EOF

RAW_TOK=$("$SLM" data check "$W/raw.jsonl" --model "$STORIES" --ctx-size 100000 |
    sed -n 's/token lengths: mean \([0-9.]*\).*/\1/p')
N_LINES=$(wc -l <"$W/raw.jsonl")
# llama-finetune trains on windows of CTX tokens with stride CTX/2 and holds 5% out.
FT_TOK=$(python3 -c "
n=int(float('$RAW_TOK')*$N_LINES); c=$CTX
nd=(n-c-1)//(c//2); print(int(nd*0.95)*c)")
FT_TPS=0 FT_RSS=0 SLM_TPS=0 SLM_RSS=0 RATIOS=""
for _ in $(seq "$ROUNDS"); do
    measure "$TOOLS/llama-finetune" -m "$STORIES" -f "$W/raw.txt" -c "$CTX" -b "$CTX" -ub "$CTX" \
        -t "$THREADS" -ngl 0 --epochs 1 -o "$W/ft.gguf"
    ft=$(python3 -c "print(round($FT_TOK/$SECS))")
    FT_TPS=$(max "$FT_TPS" "$ft") FT_RSS=$(max "$FT_RSS" "$RSS_MB")
    measure "$SLM" tune "$STORIES" "$W/raw.jsonl" --ctx-size "$CTX" --rank 16 --no-eos \
        --steps "$STEPS_A" --threads "$THREADS" -o "$W/a.gguf"
    st=$(slm_toks)
    SLM_TPS=$(max "$SLM_TPS" "$st") SLM_RSS=$(max "$SLM_RSS" "$RSS_MB")
    RATIOS="$RATIOS $(ratio "$st" "$ft")"
done

printf '(a) stories260K, raw text, ctx %s, best of %s rounds\n' "$CTX" "$ROUNDS"
printf '| %-40s | %10s | %12s |\n' "trainer" "tokens/s" "peak RSS MB"
printf '| %-40s | %10s | %12s |\n' "llama-finetune (full FP32, 1 epoch)" "$FT_TPS" "$FT_RSS"
printf '| %-40s | %10s | %12s |\n' "slm tune (LoRA r16, 7 proj, $STEPS_A steps)" "$SLM_TPS" "$SLM_RSS"
printf 'ratio slm/llama-finetune: %s (target >= 1.0 at <= its RSS; each round:%s)\n\n' \
    "$(ratio "$SLM_TPS" "$FT_TPS")" "$RATIOS"

# ---------------------------------------------------------------- (b)
if [ ! -x "$MKMODEL" ]; then
    echo "(b) skipped: no $MKMODEL"
    exit 0
fi
"$MKMODEL" --preset smollm2-135m --type f32 -o "$W/smol-f32.gguf" >/dev/null
"$MKMODEL" --preset smollm2-135m --type f32 --quantize Q8_0 -o "$W/smol-q8.gguf" >/dev/null
# Synthetic text in the model's vocabulary: the same raw lines.
printf '(b) SmolLM2-135M shape, T=%s, LoRA r16 on 7 projections, best of %s rounds\n' "$CTX" "$ROUNDS"
printf '| %-10s | %12s | %14s | %6s | %12s | %-20s |\n' "base" "train tok/s" "llama-bench pp" "ratio" "peak RSS MB" "each round"
for base in q8 f32; do
    m="$W/smol-$base.gguf"
    PP=0 TPS=0 RSS=0 RATIOS=""
    for _ in $(seq "$ROUNDS"); do
        "$TOOLS/llama-bench" -m "$m" -p "$CTX" -n 0 -t "$THREADS" -r 2 -o csv >"$W/bench.csv" 2>/dev/null
        pp=$(python3 -c "
import csv
rows=list(csv.DictReader(open('$W/bench.csv')))
print(round(float(rows[-1]['avg_ts'])))")
        measure "$SLM" tune "$m" "$W/raw.jsonl" --ctx-size "$CTX" --rank 16 --no-eos \
            --steps "$((STEPS / 4 > 4 ? STEPS / 4 : 4))" --threads "$THREADS" -o "$W/s.gguf"
        st=$(slm_toks)
        PP=$(max "$PP" "$pp") TPS=$(max "$TPS" "$st") RSS=$(max "$RSS" "$RSS_MB")
        RATIOS="$RATIOS $(ratio "$st" "$pp")"
    done
    printf '| %-10s | %12s | %14s | %6s | %12s | %-20s |\n' "$base" "$TPS" "$PP" \
        "$(ratio "$TPS" "$PP")" "$RSS" "$RATIOS"
done
echo "(target: ratio >= 0.25, peak RSS <= 1536 MB)"
