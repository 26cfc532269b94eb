#!/usr/bin/env bash
# bench/run_contention.sh - two slm processes on one machine (issue 18, part 4): ggml's compute
# threads wait for each other at a spinning barrier after every op, so two processes that each
# take every core slow each other down many times over. slm's default thread count leaves the
# CPUs another job keeps busy to it (slm_default_threads: physical cores minus the CPUs busy
# when the context is made). This prints, on the SmolLM2-135M-shaped Q8_0 model, greedy
# decode tokens/s of:
#   idle:  one `slm run` with the default threads, and with --threads = every core;
#   busy:  a second `slm run` started while a first (every core, a long generation) runs,
#          with --threads = every core (the old default) and with the default.
#
#   bench/run_contention.sh [--rounds N] [--tokens N]
#
# SLM_BIN / SLM_BENCH_BUILD as in bench/common.sh.
set -euo pipefail
BENCH_NAME=run_contention
. "$(dirname "$0")/common.sh"

rounds=2
tokens=96
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) bench_die "unknown option $1" ;;
    esac
done

bench_init
bench_slm
model=$(bench_model smollm2-135m-shape-Q8_0 --preset smollm2-135m --seed 1 --quantize Q8_0)
cores=$(getconf _NPROCESSORS_ONLN)
bench_log "$(bench_machine)"

tps() { # slm run flags... -> tokens/s of its generation
    "$SLM_BIN" run "$model" "Once upon a time there was" --temperature 0 -n "$tokens" \
        --ignore-eos --verbose "$@" 2>&1 >/dev/null | grep -o '[0-9.]* tokens/s' | tail -1 |
        cut -d' ' -f1
}

# busy FLAGS...: the foreground run's tokens/s while a background run holds every core.
busy() {
    "$SLM_BIN" run "$model" "Once upon a time" --temperature 0 -n 100000 --ignore-eos \
        --threads "$cores" >/dev/null 2>&1 &
    local bg=$!
    sleep 2 # let it reach steady decoding
    local t
    t=$(tps "$@")
    kill "$bg" 2>/dev/null || true
    wait "$bg" 2>/dev/null || true
    echo "$t"
}

printf '| round | idle, default | idle, --threads %s | busy, --threads %s (old default) | busy, default | busy: default / old |\n' "$cores" "$cores"
printf '|---:|---:|---:|---:|---:|---:|\n'
for r in $(seq 1 "$rounds"); do
    a=$(tps)
    b=$(tps --threads "$cores")
    c=$(busy --threads "$cores")
    d=$(busy)
    printf '| %d | %s | %s | %s | %s | %sx |\n' "$r" "$a" "$b" "$c" "$d" \
        "$(python3 -c "print(round($d / $c, 2))")"
done
