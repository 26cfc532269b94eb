#!/usr/bin/env bash
# bench/run_liquid.sh - slm's Liquid engine against Shopify's Ruby Liquid
# (Debian ruby-liquid 5.4, with and without ruby-liquid-c, with and without
# YJIT) and liquidjs (npm) on the same realistic prompt template and data.
#
#   bench/run_liquid.sh [--renders N] [--no-ruby] [--no-node]
#
# The template (bench/liquid/prompt.liquid: 20 few-shot examples in a for
# loop, several filters, if/elsif/else, assign, capture; 9.8 KB of output) is
# parsed once and rendered N times (default 10,000) with bench/liquid/data.json
# by each engine in its own process, TZ=UTC. Before timing anything the script
# checks that slm's output is byte-identical to Ruby Liquid's (both with and
# without liquid-c). liquidjs escapes and formats some values differently
# (72% vs 72.0%), so it is compared on speed only.
#
# The rate that counts is renders per CPU-second of the rendering process
# (so a busy machine does not favour one engine); wall-clock rates are shown
# too. Target: slm >= 20x the fastest peer.
#
# Installs what is missing: ruby-liquid and ruby-liquid-c with apt-get (sudo
# when not root), liquidjs with `npm ci` in bench/liquid/ (package-lock.json).
# slm's side is tests/tools/liquid_bench, built Release in build-bench/.
# Output: a Markdown table on stdout; progress on stderr.
set -euo pipefail

BENCH_NAME=run_liquid
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

renders=10000
run_ruby=1
run_node=1

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --renders) renders=${2:?--renders needs a value}; shift 2 ;;
    --no-ruby) run_ruby=0; shift ;;
    --no-node) run_node=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
[[ $renders =~ ^[1-9][0-9]*$ ]] || bench_die "--renders wants a positive integer, got '$renders'"

bench_init
dir=$SLM_ROOT/bench/liquid
tpl=$dir/prompt.liquid
data=$dir/data.json
export TZ=UTC

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- peers --------------------------------------------------------------------
if [ $run_ruby = 1 ]; then
    command -v ruby >/dev/null || bench_die "ruby is not installed (apt-get install ruby)"
    missing=()
    ruby -e 'require "liquid"' 2>/dev/null || missing+=(ruby-liquid)
    ruby -e 'require "liquid"; require "liquid/c"' 2>/dev/null || missing+=(ruby-liquid-c)
    if [ ${#missing[@]} -gt 0 ]; then
        bench_log "installing ${missing[*]} with apt-get"
        as_root apt-get install -y "${missing[@]}" >&2 || bench_die "apt-get install ${missing[*]} failed"
    fi
fi
if [ $run_node = 1 ]; then
    command -v node >/dev/null || bench_die "node is not installed"
    if [ ! -f "$dir/node_modules/liquidjs/package.json" ]; then
        bench_log "installing liquidjs (npm ci in bench/liquid)"
        (cd "$dir" && npm ci --no-audit --no-fund >&2) || bench_die "npm ci in bench/liquid failed"
    fi
fi

# --- slm's side -------------------------------------------------------------
bench_llama_prefix
build=${SLM_BENCH_BUILD:-$SLM_ROOT/build-bench}
if [ ! -f "$build/CMakeCache.txt" ]; then
    bench_log "configuring $build (Release)"
    cmake -S "$SLM_ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$LLAMA_PREFIX" >"$BENCH_TMP/configure.log" 2>&1 || {
        tail -n 30 "$BENCH_TMP/configure.log" >&2
        bench_die "configuring $build failed"
    }
fi
bench_log "building liquid_bench in $build"
cmake --build "$build" -j "${SLM_BENCH_JOBS:-2}" --target liquid_bench >"$BENCH_TMP/build.log" 2>&1 || {
    grep -E 'error|Error' "$BENCH_TMP/build.log" | head -n 30 >&2
    bench_die "building liquid_bench failed (log above)"
}
slm_bench=$build/tools/liquid_bench

# --- runs --------------------------------------------------------------------
# Each runner prints one line of key=value pairs; field VALUE extracts one.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

declare -a names cpu wall
run() { # NAME COMMAND... (the command's last line is its result)
    local name=$1 line
    shift
    bench_log "rendering $renders times: $name"
    line=$("$@" | tail -n 1) || bench_die "$name failed"
    names+=("$name")
    cpu+=("$(field "$line" cpu_renders_per_second)")
    wall+=("$(field "$line" renders_per_second)")
}

# The outputs first: slm must match Ruby Liquid byte for byte.
"$slm_bench" "$tpl" "$data" 1 "$BENCH_TMP/slm.txt" >/dev/null || bench_die "slm failed"
if [ $run_ruby = 1 ]; then
    ruby "$dir/run_ruby.rb" "$tpl" "$data" 1 "$BENCH_TMP/ruby.txt" >/dev/null
    ruby "$dir/run_ruby.rb" "$tpl" "$data" 1 "$BENCH_TMP/ruby-c.txt" --liquid-c >/dev/null
    for f in ruby ruby-c; do
        cmp -s "$BENCH_TMP/slm.txt" "$BENCH_TMP/$f.txt" || {
            diff "$BENCH_TMP/$f.txt" "$BENCH_TMP/slm.txt" | head -n 20 >&2
            bench_die "slm's output differs from Ruby Liquid's ($f)"
        }
    done
    bench_log "outputs identical: slm = Ruby Liquid = Ruby Liquid + liquid-c ($(wc -c <"$BENCH_TMP/slm.txt") bytes)"
fi

run "slm (C)" "$slm_bench" "$tpl" "$data" "$renders" "$BENCH_TMP/out.txt"
if [ $run_ruby = 1 ]; then
    yjit=0
    ruby --yjit -e 'exit(defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled? ? 0 : 1)' 2>/dev/null && yjit=1
    rv=$(ruby -e 'print RUBY_VERSION')
    run "Ruby $rv Liquid 5.4" ruby "$dir/run_ruby.rb" "$tpl" "$data" "$renders" "$BENCH_TMP/out.txt"
    [ $yjit = 1 ] && run "Ruby $rv Liquid 5.4, YJIT" ruby --yjit "$dir/run_ruby.rb" "$tpl" "$data" "$renders" "$BENCH_TMP/out.txt"
    run "Ruby $rv Liquid 5.4 + liquid-c" ruby "$dir/run_ruby.rb" "$tpl" "$data" "$renders" "$BENCH_TMP/out.txt" --liquid-c
    [ $yjit = 1 ] && run "Ruby $rv Liquid 5.4 + liquid-c, YJIT" ruby --yjit "$dir/run_ruby.rb" "$tpl" "$data" "$renders" "$BENCH_TMP/out.txt" --liquid-c
fi
if [ $run_node = 1 ]; then
    ver=$(cd "$dir" && node -p 'require("./node_modules/liquidjs/package.json").version' 2>/dev/null || echo '?')
    run "liquidjs $ver (node $(node -p process.versions.node))" node "$dir/run_node.mjs" "$tpl" "$data" "$renders" "$BENCH_TMP/out.txt"
fi

# --- table -------------------------------------------------------------------
best=0
best_name=
for i in "${!names[@]}"; do
    [ "$i" = 0 ] && continue
    if awk -v a="${cpu[$i]}" -v b="$best" 'BEGIN { exit !(a > b) }'; then
        best=${cpu[$i]}
        best_name=${names[$i]}
    fi
done

echo "Liquid render speed: bench/liquid/prompt.liquid ($(wc -c <"$BENCH_TMP/slm.txt") bytes out), $renders renders each, TZ=UTC"
echo "Machine: $(bench_machine)"
echo
echo "| engine | renders/s (CPU time) | renders/s (wall) | slm is ×faster (CPU) |"
echo "|---|---:|---:|---:|"
for i in "${!names[@]}"; do
    ratio=$(awk -v s="${cpu[0]}" -v p="${cpu[$i]}" 'BEGIN { printf "%.1f", s / p }')
    printf '| %s | %.0f | %.0f | %s |\n' "${names[$i]}" "${cpu[$i]}" "${wall[$i]}" "$ratio"
done
if [ -n "$best_name" ]; then
    ratio=$(awk -v s="${cpu[0]}" -v p="$best" 'BEGIN { printf "%.1f", s / p }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 20 ? "met" : "NOT met") }')
    echo
    echo "slm vs the fastest peer ($best_name): ${ratio}x (target >= 20x: $verdict)"
fi
