# shellcheck shell=bash
# bench/common.sh - helpers shared by the bench/*.sh scripts (sourced, not run).
#
# What it gives a benchmark script:
#   bench_init                 checks the tools it needs; sets SLM_ROOT, BENCH_TMP (removed on exit)
#   bench_slm [TARGET...]      builds slm + mkmodel (+ TARGETs) (Release, own build dir); sets SLM_BIN, SLM_TOOLS
#   bench_peers                builds llama.cpp's tools once (scripts/llama-deps.sh --tools);
#                              sets PEER_BIN (llama-bench, llama-server, ...) and SLM_VOCAB_DIR
#   bench_model NAME ARGS...   prints the path of a cached synthetic model, making it with
#                              mkmodel ARGS the first time
#   bench_fake_cloud ARGS...   starts tests/tools/fake_cloud ARGS on a free loopback port;
#                              sets cloud_port, appends its pid to the caller's pids array
#   bench_wait_health P PID LOG  waits for a server's GET /health on port P
#   bench_stats V...           prints "mean stddev" (sample stddev, as llama-bench reports)
#   bench_machine              prints one line describing the CPU and the load
#   bench_log / bench_die      messages on stderr
#
# Environment:
#   SLM_BIN              use this slm binary instead of building one
#   SLM_BENCH_BUILD      build directory (default: <repo>/build-bench)
#   SLM_BENCH_MODELS     model cache (default: ${XDG_CACHE_HOME:-$HOME/.cache}/slm/bench-models)
#   SLM_BENCH_JOBS       build parallelism (default 2)
#
# No network: llama.cpp comes from the cached npm bundle (scripts/llama-deps.sh)
# and the models are made locally.

bench_log() {
    printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2
}

bench_die() {
    printf '%s: error: %s\n' "${BENCH_NAME:-bench}" "$*" >&2
    exit 1
}

bench_init() {
    local tool
    SLM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    for tool in cmake jq awk sha256sum; do
        command -v "$tool" >/dev/null || bench_die "$tool is not installed"
    done
    BENCH_TMP=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "rm -rf '$BENCH_TMP'" EXIT
}

# The llama.cpp libraries slm links (built once, cached) and their vocab files.
bench_llama_prefix() {
    if [ -z "${LLAMA_PREFIX:-}" ]; then
        LLAMA_PREFIX=$("$SLM_ROOT/scripts/llama-deps.sh") || bench_die "scripts/llama-deps.sh failed"
    fi
    SLM_VOCAB_DIR=${SLM_VOCAB_DIR:-$LLAMA_PREFIX/share/slm-vocab}
    export SLM_VOCAB_DIR
}

bench_slm() {
    bench_llama_prefix
    local build=${SLM_BENCH_BUILD:-$SLM_ROOT/build-bench}
    local jobs=${SLM_BENCH_JOBS:-2}
    local targets=(mkmodel "$@")
    [ -n "${SLM_BIN:-}" ] || targets+=(slm)
    if [ ! -f "$build/CMakeCache.txt" ]; then
        bench_log "configuring $build (Release)"
        cmake -S "$SLM_ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_PREFIX_PATH="$LLAMA_PREFIX" >"$BENCH_TMP/configure.log" 2>&1 || {
            tail -n 30 "$BENCH_TMP/configure.log" >&2
            bench_die "configuring $build failed"
        }
    fi
    bench_log "building ${targets[*]} in $build"
    cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$BENCH_TMP/build.log" 2>&1 || {
        grep -v '^\[' "$BENCH_TMP/build.log" | tail -n 30 >&2
        bench_die "building ${targets[*]} failed (log above; another engineer's file in progress? retry)"
    }
    SLM_BIN=${SLM_BIN:-$build/slm}
    SLM_TOOLS=$build/tools
    [ -x "$SLM_BIN" ] || bench_die "slm binary not found: $SLM_BIN"
    [ -x "$SLM_TOOLS/mkmodel" ] || bench_die "mkmodel not found in $SLM_TOOLS"
}

# llama.cpp's own tools, from the same source (a few minutes the first time).
bench_peers() {
    bench_llama_prefix
    local prefix
    bench_log "locating llama.cpp's tools (scripts/llama-deps.sh --tools; builds once)"
    prefix=$("$SLM_ROOT/scripts/llama-deps.sh" --tools) ||
        bench_die "building llama.cpp's tools failed (scripts/llama-deps.sh --tools)"
    PEER_BIN=$prefix/bin
    [ -x "$PEER_BIN/llama-bench" ] || bench_die "llama-bench missing in $PEER_BIN"
}

# bench_model NAME MKMODEL-ARGS... -> prints the cached model's path.
# The cache key is NAME plus the arguments, so changing either makes a new file.
bench_model() {
    local name=$1
    shift
    local dir=${SLM_BENCH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/slm/bench-models}
    local key
    key=$(printf '%s\n' "$@" | sha256sum | cut -c1-8)
    local path=$dir/$name-$key.gguf
    if [ ! -f "$path" ]; then
        mkdir -p "$dir" || bench_die "cannot create $dir"
        bench_log "making $path"
        "$SLM_TOOLS/mkmodel" "$@" -o "$path" >&2 || bench_die "mkmodel $* failed"
    fi
    printf '%s\n' "$path"
}

# bench_fake_cloud ARGS... -> cloud_port (the caller kills "${pids[@]}" on exit)
bench_fake_cloud() {
    local out=$BENCH_TMP/cloud.out err=$BENCH_TMP/cloud.err
    "$SLM_TOOLS/fake_cloud" --port 0 "$@" >"$out" 2>"$err" &
    pids+=($!)
    for _ in $(seq 200); do
        grep -q '^port=' "$out" 2>/dev/null && break
        sleep 0.05
    done
    cloud_port=$(sed -n 's/^port=//p' "$out")
    [ -n "$cloud_port" ] || bench_die "fake_cloud did not start: $(cat "$err")"
}

# bench_wait_health PORT PID LOG: waits (up to 2 minutes) until GET /health on 127.0.0.1:PORT
# answers 200; dies with LOG's tail when PID exits first.
bench_wait_health() {
    local port=$1 pid=$2 log=$3
    for _ in $(seq 1 120); do
        if python3 - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/health")
sys.exit(0 if c.getresponse().status == 200 else 1)
EOF
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; bench_die "the server on port $port exited"; }
        sleep 1
    done
    bench_die "the server on port $port did not answer /health in 2 minutes"
}

# bench_stats V1 V2 ... -> "mean stddev" (stddev with n-1, 0 for one value)
bench_stats() {
    printf '%s\n' "$@" | awk '
        { x[NR] = $1; s += $1 }
        END {
            if (NR == 0) { print "nan nan"; exit }
            m = s / NR; v = 0
            for (i = 1; i <= NR; i++) v += (x[i] - m) ^ 2
            sd = NR > 1 ? sqrt(v / (NR - 1)) : 0
            printf "%.2f %.2f\n", m, sd
        }'
}

bench_machine() {
    local cpu load
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
    printf '%s, %s logical CPUs, load average %s\n' "${cpu:-unknown CPU}" "$(nproc)" "$load"
}
