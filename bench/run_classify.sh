#!/usr/bin/env bash
# bench/run_classify.sh - classification by label scoring (issue 18): requests/s of slm
# finding the best banking77 label after a prompt, against llama-server generating the
# label under a GBNF grammar that allows only the 77 labels. Same model, same threads.
#
#   bench/run_classify.sh [--rows N] [--rows-b N] [--threads T] [--epochs N] [--model GGUF]
#                         [--no-peer]
#
# Rows: the first N (default 100; --rows-b for model (b), default 10: seconds a row) of
# banking77's dev split (DESIGN.md: --valid-hash
# text:10), rendered with tests/data/tune/banking77.liquid; labels: categories.json, each
# tokenized as `slm tune eval` does (no BOS, EOS appended).
# Models: (a) stories260K fully fine-tuned on banking77's training rows with `slm tune
# --method full` (docs/tuning.md's command, --epochs 1 by default: a short run; made once
# and cached as ${SLM_BENCH_MODELS:-~/.cache/slm/bench-models}/b77-full-eN.gguf; --model
# uses another file, e.g. run_router.sh's b77-full.gguf); (b) the SmolLM2-135M-shaped
# random model of tests/tools/mkmodel (Q8_0, bench_model).
# slm: tests/tools/score_bench, one scorer (slm/score.h) over every row in file order, three
# ways: best first (slm_scorer_best stopping once the best label is known: `slm tune eval`),
# best first until the label's probability is exact to 1% (the router's label routes and
# `slm eval`'s label candidates), and every label scored (slm_scorer_score). requests/s =
# rows / time inside the scorer's call. Each best-first row is checked against scoring
# every label: "= every label" counts the rows whose chosen label is the same.
# llama-server (-np 1, -c 2048, -t T): one client, one request at a time, POST /completion
# {prompt, temperature 0, grammar}; requests/s = rows / wall time of the client. Its label
# is the greedy path under the grammar, not the most likely label: "same label as slm" is
# information, not a check. --no-peer measures slm only (no llama.cpp tools build).
#
# Output: a Markdown table on stdout; progress on stderr. No network beyond 127.0.0.1.
set -euo pipefail

BENCH_NAME=run_classify
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

rows=100
rows_b=10
threads=1
epochs=1
model_a=
peer=1

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --rows) rows=${2:?}; shift 2 ;;
    --rows-b) rows_b=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --epochs) epochs=${2:?}; shift 2 ;;
    --model) model_a=${2:?}; shift 2 ;;
    --no-peer) peer=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
for v in "$rows" "$rows_b" "$threads" "$epochs"; do
    [[ $v =~ ^[0-9]+$ ]] || bench_die "numeric options want non-negative integers, got '$v'"
done
command -v python3 >/dev/null || bench_die "python3 is not installed (the llama-server client)"

bench_init
SHARED=${SLM_SHARED:-$SLM_ROOT/../shared}
STORIES=$SHARED/models/stories260K.gguf
B77=$SHARED/data/banking77
[ -f "$STORIES" ] || bench_die "no $STORIES (set SLM_SHARED)"
[ -f "$B77/train.csv" ] || bench_die "no banking77 data in $B77 (set SLM_SHARED)"
bench_slm score_bench
[ -x "$SLM_TOOLS/score_bench" ] || bench_die "score_bench not built in $SLM_TOOLS"
[ "$peer" = 0 ] || bench_peers
models=${SLM_BENCH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/slm/bench-models}
tmpl=$SLM_ROOT/tests/data/tune/banking77.liquid
pids=()
# shellcheck disable=SC2064 # expand now
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$BENCH_TMP"' EXIT

if [ -z "$model_a" ]; then
    model_a=$models/b77-full-e$epochs.gguf
    if [ ! -f "$model_a" ]; then
        mkdir -p "$models"
        bench_log "tuning stories260K on banking77 (full fine-tune, $epochs epoch(s), once; ~3 min of one core each)"
        "$SLM_BIN" tune "$STORIES" "$B77/train.csv" --template "$tmpl" --completion-field category \
            --valid-hash text:10 --ctx-size 256 --batch-size 2 --epochs "$epochs" --lr 2e-3 \
            --method full --threads "$threads" -o "$model_a.tmp" >"$BENCH_TMP/tune.log" 2>&1 ||
            { tail -n 20 "$BENCH_TMP/tune.log" >&2; bench_die "slm tune failed"; }
        mv "$model_a.tmp" "$model_a"
    fi
fi
model_b=$(bench_model smollm2-135m-shape-Q8_0 --preset smollm2-135m --seed 1 --quantize Q8_0)

cat >"$BENCH_TMP/client.py" <<'EOF'
# One request at a time, the rendered prompts of score_bench --dump, the label under a
# grammar of the labels. Prints "rows=N rows_per_s=R same_as_slm=S accuracy=A".
import http.client, json, sys, time
port, dump, cats = int(sys.argv[1]), sys.argv[2], sys.argv[3]
labels = json.load(open(cats))
# A SentencePiece vocabulary tokenizes a label alone with its word-start mark, as the
# tuned completions were: the model writes " card_arrival", so the space is allowed.
grammar = 'root ::= " "? (' + " | ".join(json.dumps(l) for l in labels) + ")\n"
rows = [json.loads(l) for l in open(dump)]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
def ask(prompt):
    body = {"prompt": prompt, "n_predict": 64, "temperature": 0, "grammar": grammar,
            "cache_prompt": True}
    c.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    return json.loads(r.read())["content"].strip()
ask(rows[0]["prompt"])  # warm-up
same = right = 0
t0 = time.monotonic()
for r in rows:
    got = ask(r["prompt"])
    same += got == r["chosen"]
    right += got == r["label"]
dt = time.monotonic() - t0
n = len(rows)
print("rows=%d rows_per_s=%.1f same_as_slm=%d accuracy=%.4f" % (n, n / dt, same, right / n))
EOF

field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

score() { # model tag rows mode... -> $BENCH_TMP/tag.slm's last line in score_line
    local model=$1 tag=$2 n=$3
    shift 3
    "$SLM_TOOLS/score_bench" "$model" "$B77/train.csv" "$tmpl" category \
        --labels "$B77/categories.json" --valid-hash text:10 --max "$n" --threads "$threads" \
        --every 25 "$@" >"$BENCH_TMP/$tag.slm" 2>"$BENCH_TMP/$tag.err" ||
        { tail -n 20 "$BENCH_TMP/$tag.err" >&2; bench_die "score_bench failed"; }
    score_line=$(tail -n 1 "$BENCH_TMP/$tag.slm")
}

run_slm() { # model tag rows -> top_line, rest_line, all_line (and $BENCH_TMP/tag.jsonl)
    bench_log "slm ($2): best label first, $3 rows (and each checked against scoring all 77)"
    score "$1" "$2" "$3" --search top --check --dump "$BENCH_TMP/$2.jsonl"
    top_line=$score_line
    bench_log "slm ($2): best label first with its probability to 1% (the router's), $3 rows"
    score "$1" "$2.rest" "$3" --search 1e-2 --check
    rest_line=$score_line
    bench_log "slm ($2): every label scored, $3 rows"
    score "$1" "$2.all" "$3"
    all_line=$score_line
}

run_peer() { # model tag -> peer_line
    peer_line="rows_per_s=n/a same_as_slm=n/a accuracy=n/a"
    [ "$peer" = 1 ] || return 0
    local port=$((20000 + RANDOM % 20000))
    bench_log "llama-server ($2) on 127.0.0.1:$port (-np 1 -c 2048 -t $threads)"
    "$PEER_BIN/llama-server" -m "$1" -np 1 -c 2048 -t "$threads" --host 127.0.0.1 --port "$port" \
        >"$BENCH_TMP/$2.server.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    bench_wait_health "$port" "$pid" "$BENCH_TMP/$2.server.log"
    peer_line=$(python3 "$BENCH_TMP/client.py" "$port" "$BENCH_TMP/$2.jsonl" "$B77/categories.json") ||
        bench_die "the llama-server client failed"
    kill "$pid" 2>/dev/null || true
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
table_row() { # name top_line rest_line all_line peer_line
    local t r a p n
    t=$(field rows_per_s "$2")
    r=$(field rows_per_s "$3")
    a=$(field rows_per_s "$4")
    p=$(field rows_per_s "$5")
    n=$(field rows "$2")
    printf '| %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s / %s | %s/%s | %s | %s |\n' "$1" \
        "$t" "$r" "$a" "$p" "$(ratio "$t" "$p")" \
        "$((n - $(field disagree "$2")))" "$n" "$((n - $(field disagree "$3")))" "$n" \
        "$(field decoded_per_row "$2")" "$(field label_tokens "$2")" \
        "$(field same_as_slm "$5")" "$n" "$(field accuracy "$2")" "$(field accuracy "$5")"
}

run_slm "$model_a" a "$rows"
top_a=$top_line rest_a=$rest_line all_a=$all_line
run_peer "$model_a" a
peer_a=$peer_line
run_slm "$model_b" b "$rows_b"
top_b=$top_line rest_b=$rest_line all_b=$all_line
run_peer "$model_b" b
peer_b=$peer_line

printf '\nbanking77 dev, first %s rows (%s for the SmolLM2 shape), 77 labels, %s thread(s); %s\n\n' \
    "$rows" "$rows_b" "$threads" "$(bench_machine)"
printf '| model | slm best first, rows/s | slm best first + prob to 1%%, rows/s | slm every label, rows/s | llama-server, rows/s | slm best first / llama-server | best first = every label | + prob to 1%% = every label | trie rows decoded per row / label tokens | llama-server label = slm | slm accuracy | llama-server accuracy |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
table_row "stories260K tuned ($(basename "$model_a"))" "$top_a" "$rest_a" "$all_a" "$peer_a"
table_row "SmolLM2-135M shape, random, Q8_0" "$top_b" "$rest_b" "$all_b" "$peer_b"
printf '\nslm best first: decodes per row %s (a), %s (b); largest difference of an exact log-prob from scoring every label: %s (a), %s (b)\n' \
    "$(field decodes_per_row "$top_a")" "$(field decodes_per_row "$top_b")" \
    "$(field max_diff "$top_a")" "$(field max_diff "$top_b")"
