#!/usr/bin/env bash
# bench/run_server.sh - `slm serve` against llama-server under concurrent HTTP
# load: the same model file, threads, parallel slots and context per slot,
# the same token ids, the same client (bench/server_load.py).
#
#   bench/run_server.sh [--concurrency "1 4 16"] [--prompt 128] [--gen 64]
#                       [--parallel 16] [--threads 2] [--quant Q8_0] [--reps 3]
#                       [--burst-prefix 1000] [--burst-tail 30] [--no-burst]
#                       [--slm-flag FLAG]...   (extra flags for slm serve, e.g. --batch-size=1024)
#
# Throughput: for each concurrency C, max(8, 2C) streamed POST /v1/completions
# requests go out, at most C at a time; each has its own random prompt of
# `prompt` token ids (new ones for every run, so no server answers from its
# prompt cache) and generates `gen` tokens (greedy, end-of-generation
# ignored). Measured by the client: generated tokens per second over the run,
# time to first token and latency (p50, p95, p99).
#
#   llama-server  -np 16 -c 16384 -t 2       slm serve --parallel 16 --ctx-size 1024 --threads 2
#
# Shared-prefix burst (the classification workload: one few-shot template,
# many inputs): 16 concurrent requests whose prompts share a 1,000-token
# prefix neither server has seen and differ in their last 30 tokens, 8
# generated tokens each; mean time to first token. Both servers restart with
# twice the context (llama-server -c 32768, slm --ctx-size 2048) so each slot
# holds the prefix; prompt caching is on in both, as by default.
#
# Both servers run at once and take turns (slm, llama-server, slm, ...), so
# other load on the machine falls on both alike; each number is the median over
# `reps` runs. Each run starts with one request that is not measured. Model:
# the synthetic SmolLM2-135M-shaped file of bench/run_speed.sh.
#
# Targets (issue 3): throughput >= 1.0x llama-server's at 1, 4 and 16
# clients; mean time to first token on the burst >= 3x faster.
#
# Output: a Markdown table on stdout; progress on stderr. No network beyond
# 127.0.0.1.
set -euo pipefail

BENCH_NAME=run_server
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

concurrency="1 4 16"
prompt=128
gen=64
parallel=16
threads=2
quant=Q8_0
reps=3
burst_prefix=1000
burst_tail=30
burst=1
slm_flags=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --concurrency) concurrency=${2:?}; shift 2 ;;
    --burst-prefix) burst_prefix=${2:?}; shift 2 ;;
    --burst-tail) burst_tail=${2:?}; shift 2 ;;
    --no-burst) burst=0; shift ;;
    --prompt) prompt=${2:?}; shift 2 ;;
    --gen) gen=${2:?}; shift 2 ;;
    --parallel) parallel=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --slm-flag) slm_flags+=("${2:?}"); shift 2 ;;
    --quant) quant=${2:?}; shift 2 ;;
    --reps) reps=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
for v in $concurrency "$burst_prefix" "$burst_tail" "$prompt" "$gen" "$parallel" "$threads" "$reps"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || bench_die "numeric options want positive integers, got '$v'"
done
command -v python3 >/dev/null || bench_die "python3 is not installed (the load generator)"
command -v curl >/dev/null || bench_die "curl is not installed"

bench_init
bench_slm
bench_peers
model=$(bench_model "smollm2-135m-shape-$quant" --preset smollm2-135m --seed 1 --quantize "$quant")
load=$SLM_ROOT/bench/server_load.py
pids=()
# shellcheck disable=SC2064 # expand now
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$BENCH_TMP"' EXIT

wait_health() { # port pid log
    for _ in $(seq 1 240); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; bench_die "the server exited"; }
        sleep 0.5
    done
    bench_die "the server did not come up"
}

run_load() { # port model concurrency seed [more flags] -> the client's line
    local port=$1 name=$2 c=$3 seed=$4
    shift 4
    python3 "$load" "$port" "$name" --concurrency "$c" --prompt "$prompt" \
        --gen "$gen" --seed "$seed" "$@" || bench_die "the load generator failed on port $port"
}

field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# ---------------------------------------------------------------- servers

export SLM_HOME=$BENCH_TMP/home
printf 'FROM %s\n' "$model" >"$BENCH_TMP/Modelfile"
"$SLM_BIN" create bench -f "$BENCH_TMP/Modelfile" >/dev/null || bench_die "slm create failed"

start_servers() { # tokens per slot -> slm_port, peer_port
    local slot=$1 n=${#pids[@]}
    bench_log "slm serve --parallel $parallel --ctx-size $slot --threads $threads"
    SLM_LOG=warn "$SLM_BIN" serve --port 0 --parallel "$parallel" --ctx-size "$slot" \
        --threads "$threads" --keep-alive -1 ${slm_flags[@]+"${slm_flags[@]}"} \
        >"$BENCH_TMP/slm.out.$n" 2>"$BENCH_TMP/slm.err.$n" &
    pids+=($!)
    for _ in $(seq 1 200); do
        grep -q 'http://' "$BENCH_TMP/slm.out.$n" && break
        sleep 0.05
    done
    slm_port=$(grep -o 'http://127.0.0.1:[0-9]*' "$BENCH_TMP/slm.out.$n" | head -n 1 | sed 's/.*://')
    [ -n "$slm_port" ] || { cat "$BENCH_TMP/slm.err.$n" >&2; bench_die "slm serve did not start"; }
    wait_health "$slm_port" "${pids[n]}" "$BENCH_TMP/slm.err.$n"
    peer_port=$((20000 + RANDOM % 20000))
    bench_log "llama-server -np $parallel -c $((parallel * slot)) -t $threads"
    "$PEER_BIN/llama-server" -m "$model" -np "$parallel" -c "$((parallel * slot))" -t "$threads" \
        --host 127.0.0.1 --port "$peer_port" >"$BENCH_TMP/peer.log.$n" 2>&1 &
    pids+=($!)
    wait_health "$peer_port" "${pids[n + 1]}" "$BENCH_TMP/peer.log.$n"
}

stop_servers() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

# ---------------------------------------------------------------- runs

# The two servers take turns (slm, llama-server, slm, ...), so that other load
# on the machine falls on both alike; each metric is the median over reps.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
metrics="tok_s ttft_p50_ms ttft_p95_ms ttft_p99_ms lat_p50_ms lat_p95_ms lat_p99_ms"
declare -A res
start_servers $((prompt + gen + 16 > 1024 ? prompt + gen + 16 : 1024))
for c in $concurrency; do
    requests=$((2 * c > 8 ? 2 * c : 8))
    for ((r = 1; r <= reps; r++)); do
        for side in slm peer; do
            port=$slm_port
            [ $side = slm ] || port=$peer_port
            # Fresh prompts for every run (the same ones for both servers in a
            # round): neither server finds them in its prompt cache.
            line=$(run_load "$port" bench "$c" $((r * 1000 + c)) --requests "$requests")
            bench_log "$side, concurrency $c, rep $r: $line"
            for m in $metrics; do
                res[$side,$c,$m]="${res[$side,$c,$m]:-} $(field "$m" "$line")"
            done
        done
    done
done
stop_servers

if [ "$burst" = 1 ]; then
    start_servers $((2 * (burst_prefix + burst_tail + 8 + 16) > 2048 ? 2 * (burst_prefix + burst_tail + 8 + 16) : 2048))
    for ((r = 1; r <= reps; r++)); do
        for side in slm peer; do
            port=$slm_port
            [ $side = slm ] || port=$peer_port
            # A new prefix for every run (the same for both servers in a round).
            line=$(python3 "$load" "$port" bench --requests "$parallel" --concurrency "$parallel" \
                --prompt "$burst_tail" --gen 8 --shared-prefix "$burst_prefix" \
                --seed $((r * 7919)) || bench_die "the load generator failed on port $port")
            bench_log "$side, burst, rep $r: $line"
            res[$side,burst]="${res[$side,burst]:-} $(field ttft_mean_ms "$line")"
        done
    done
    stop_servers
fi

# ---------------------------------------------------------------- table

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
printf '\nslm serve vs llama-server: max(8, 2 x clients) requests of %s prompt + %s generated tokens, %s slots, %s threads, median of %s; SmolLM2-135M shape %s\n' \
    "$prompt" "$gen" "$parallel" "$threads" "$reps" "$quant"
printf '%s\n\n' "$(bench_machine)"
printf '| concurrency | metric | llama-server | slm | slm vs llama-server |\n'
printf '|---:|---|---:|---:|---:|\n'
for c in $concurrency; do
    for m in $metrics; do
        # shellcheck disable=SC2086 # word splitting wanted
        p=$(median ${res[peer,$c,$m]}) s=$(median ${res[slm,$c,$m]})
        case $m in
        tok_s) label="generated tokens/s" ;;
        *) label=${m%_ms} label=${label/ttft_/time to first token } label="${label/lat_/latency }, ms" ;;
        esac
        printf '| %s | %s | %s | %s | %s |\n' "$c" "$label" "$p" "$s" "$(ratio "$s" "$p")"
    done
done
if [ "$burst" = 1 ]; then
    # shellcheck disable=SC2086 # word splitting wanted
    p=$(median ${res[peer,burst]}) s=$(median ${res[slm,burst]})
    printf '| burst of %s, %s-token shared prefix + %s | mean time to first token, ms | %s | %s | %s (%s faster) |\n' \
        "$parallel" "$burst_prefix" "$burst_tail" "$p" "$s" "$(ratio "$s" "$p")" "$(ratio "$p" "$s")"
fi
printf '\nslm vs llama-server: above 1x is better for tokens/s, below 1x is better for times.\n'
