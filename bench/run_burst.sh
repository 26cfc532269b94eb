#!/usr/bin/env bash
# bench/run_burst.sh - time to first token for a burst of requests that share
# a long few-shot prefix: slm's scheduler against llama-server, same model
# file, same thread count, same token ids.
#
#   bench/run_burst.sh [--requests 16] [--prefix 1000] [--suffix 16] [--gen 8]
#                      [--threads 2] [--reps 3] [--quant Q8_0]
#
# Each repetition sends `requests` prompts at once: one random prefix of
# `prefix` tokens (fresh every repetition, so nothing is cached from the last
# one) plus a random suffix of `suffix` tokens per request; each generates
# `gen` tokens (greedy, end-of-generation ignored). Time to first token is
# measured per request from the moment the burst starts; the table gives its
# mean and maximum over the burst, averaged over repetitions.
#
#   llama-server  -np REQUESTS, a context of REQUESTS x (prefix + suffix + gen
#                 + 16), -t THREADS; POST /completion with the token ids,
#                 "stream": true, "cache_prompt": true; the first SSE event
#                 carrying a token is the first token (client: python3, stdlib)
#   slm           tests/tools/sched_burst: the same ids through
#                 include/slm/sched.h with n_parallel = REQUESTS, n_batch 512,
#                 no HTTP (until `slm serve` lands; localhost HTTP adds ~1 ms)
# Both sides run one warm-up burst first that is not counted.
#
# Target: slm's mean time to first token >= 3x faster. The shared prefix is
# what makes the difference: slm evaluates it once and copies its KV cells to
# the other sequences; llama-server evaluates it once per slot.
#
# Output: a Markdown table on stdout; progress on stderr. No network beyond
# 127.0.0.1.
set -euo pipefail

BENCH_NAME=run_burst
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

requests=16
prefix=1000
suffix=16
gen=8
threads=2
reps=3
quant=Q8_0

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --requests) requests=${2:?}; shift 2 ;;
    --prefix) prefix=${2:?}; shift 2 ;;
    --suffix) suffix=${2:?}; shift 2 ;;
    --gen) gen=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --reps) reps=${2:?}; shift 2 ;;
    --quant) quant=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
for v in "$requests" "$prefix" "$suffix" "$gen" "$threads" "$reps"; do
    [[ $v =~ ^[0-9]+$ ]] || bench_die "numeric options want non-negative integers, got '$v'"
done
command -v python3 >/dev/null || bench_die "python3 is not installed (the llama-server client)"

bench_init
bench_slm
bench_peers
build=${SLM_BENCH_BUILD:-$SLM_ROOT/build-bench}
bench_log "building sched_burst in $build"
cmake --build "$build" -j "${SLM_BENCH_JOBS:-2}" --target sched_burst >"$BENCH_TMP/build2.log" 2>&1 ||
    bench_die "building sched_burst failed ($BENCH_TMP/build2.log)"
model=$(bench_model "smollm2-135m-shape-$quant" --preset smollm2-135m --seed 1 --quantize "$quant")

# ---------------------------------------------------------------- slm

bench_log "slm: $reps bursts of $requests x ($prefix + $suffix) tokens"
"$SLM_TOOLS/sched_burst" "$model" --requests "$requests" --prefix "$prefix" --suffix "$suffix" \
    --gen "$gen" --threads "$threads" --reps "$reps" --dump "$BENCH_TMP/prompts.json" \
    >"$BENCH_TMP/slm.out" 2>"$BENCH_TMP/slm.err" || {
    tail -n 20 "$BENCH_TMP/slm.err" >&2
    bench_die "sched_burst failed"
}
cat "$BENCH_TMP/slm.out" >&2
slm_line=$(tail -n 1 "$BENCH_TMP/slm.out")
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
slm_mean=$(field ttft_mean_ms "$slm_line")
slm_max=$(field ttft_max_ms "$slm_line")
slm_total=$(field total_ms "$slm_line")

# ---------------------------------------------------------------- llama-server

port=$((20000 + RANDOM % 20000))
ctx=$((requests * (prefix + suffix + gen + 16)))
bench_log "llama-server on 127.0.0.1:$port (-np $requests -c $ctx -t $threads)"
"$PEER_BIN/llama-server" -m "$model" -np "$requests" -c "$ctx" -t "$threads" \
    --host 127.0.0.1 --port "$port" >"$BENCH_TMP/server.log" 2>&1 &
server_pid=$!
# shellcheck disable=SC2064 # expand now
trap "kill $server_pid 2>/dev/null || true; rm -rf '$BENCH_TMP'" EXIT
bench_wait_health "$port" "$server_pid" "$BENCH_TMP/server.log"

cat >"$BENCH_TMP/client.py" <<'EOF'
import http.client, json, random, sys, threading, time
port, path, n_gen = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def one(prompt, t0, out, i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    body = {"prompt": prompt, "n_predict": n_gen, "stream": True, "cache_prompt": True,
            "temperature": 0, "ignore_eos": True}
    c.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    ttft = None
    for line in r:
        if ttft is None and line.startswith(b"data: "):
            d = json.loads(line[6:])
            if d.get("content") or d.get("tokens"):
                ttft = time.monotonic() - t0
    out[i] = (ttft if ttft is not None else float("nan"), time.monotonic() - t0)

def burst(prompts):
    out = [None] * len(prompts)
    t0 = time.monotonic()
    th = [threading.Thread(target=one, args=(p, t0, out, i)) for i, p in enumerate(prompts)]
    for t in th: t.start()
    for t in th: t.join()
    tt = [o[0] for o in out]
    return sum(tt) / len(tt), max(tt), max(o[1] for o in out)

reps = json.load(open(path))
# Warm-up: the first burst's tokens shuffled (nothing in common with what follows).
rnd = random.Random(7)
warm = [rnd.sample(p, len(p)) for p in reps[0]]
burst(warm)
acc = [0.0, 0.0, 0.0]
for k, prompts in enumerate(reps):
    m, x, t = burst(prompts)
    print("rep %d: ttft_mean_ms=%.1f ttft_max_ms=%.1f total_ms=%.1f" % (k, m * 1e3, x * 1e3, t * 1e3),
          file=sys.stderr, flush=True)
    acc = [acc[0] + m, acc[1] + x, acc[2] + t]
n = len(reps)
print("ttft_mean_ms=%.1f ttft_max_ms=%.1f total_ms=%.1f" % (acc[0] / n * 1e3, acc[1] / n * 1e3, acc[2] / n * 1e3))
EOF
bench_log "llama-server: the same $reps bursts"
peer_line=$(python3 "$BENCH_TMP/client.py" "$port" "$BENCH_TMP/prompts.json" "$gen") ||
    bench_die "the llama-server client failed"
kill "$server_pid" 2>/dev/null || true
peer_mean=$(field ttft_mean_ms "$peer_line")
peer_max=$(field ttft_max_ms "$peer_line")
peer_total=$(field total_ms "$peer_line")

# ---------------------------------------------------------------- table

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
printf 'Burst: %s requests sharing a %s-token prefix (+%s own tokens), %s generated, %s threads, %s reps; SmolLM2-135M shape, %s\n\n' \
    "$requests" "$prefix" "$suffix" "$gen" "$threads" "$reps" "$quant"
printf '%s\n\n' "$(bench_machine)"
printf '| ms | llama-server | slm | llama-server / slm |\n'
printf '|---|---:|---:|---:|\n'
printf '| time to first token, mean | %s | %s | %s |\n' "$peer_mean" "$slm_mean" "$(ratio "$peer_mean" "$slm_mean")"
printf '| time to first token, max | %s | %s | %s |\n' "$peer_max" "$slm_max" "$(ratio "$peer_max" "$slm_max")"
printf '| whole burst | %s | %s | %s |\n' "$peer_total" "$slm_total" "$(ratio "$peer_total" "$slm_total")"
