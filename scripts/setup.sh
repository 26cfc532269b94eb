#!/usr/bin/env bash
# The first README command: install what is missing, build llama.cpp (once,
# cached outside the clone) and slm, then run the main job on the default model.
#
#   scripts/setup.sh            set up, build, run the main job
#   SLM_SKIP_APT=1 ...          never call apt-get / brew (you installed the packages)
#   SLM_GPU=cpu|cuda|metal|vulkan  llama.cpp's backend (default: what the machine has;
#                               scripts/llama-deps.sh)
#
# Debian/Ubuntu (apt-get) is what CI runs. macOS with Homebrew takes the brew branch below:
# written from Homebrew's package names, not run here (no Mac to test on).
#   SLM_LLAMA_PREFIX=DIR ...    use this llama.cpp install instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ------------------------------------------------------------------ packages
APT_PACKAGES=(build-essential cmake pkg-config git ca-certificates nodejs npm jq
    libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev libpcre2-dev
    libyaml-dev libedit-dev libcriterion-dev
    clang libclang-rt-14-dev clang-format cppcheck chromium graphviz)

BREW_PACKAGES=(cmake pkg-config git jq node libmicrohttpd curl jansson sqlite pcre2 libyaml
    libedit criterion llvm graphviz)

ncpu() { nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2; }

missing=()
if [ "$(uname -s)" = Darwin ]; then
    if [ -z "${SLM_SKIP_APT:-}" ]; then
        command -v brew >/dev/null || { say "install Homebrew first (https://brew.sh)"; exit 1; }
        say "brew install ${BREW_PACKAGES[*]}"
        brew install -q "${BREW_PACKAGES[@]}"
        export PKG_CONFIG_PATH="$(brew --prefix)/lib/pkgconfig:$(brew --prefix libedit)/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
    fi
    APT_PACKAGES=()
fi
for p in "${APT_PACKAGES[@]+"${APT_PACKAGES[@]}"}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and npm may come from elsewhere than Debian (e.g. a preinstalled build).
if command -v node >/dev/null && command -v npm >/dev/null; then
    filtered=()
    for p in "${missing[@]}"; do
        [ "$p" = nodejs ] || [ "$p" = npm ] || filtered+=("$p")
    done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ] && [ -z "${SLM_SKIP_APT:-}" ]; then
    say "installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# ------------------------------------------------------------------ llama.cpp
llama_prefix=${SLM_LLAMA_PREFIX:-}
if [ -z "$llama_prefix" ]; then
    for d in /usr/local /usr; do
        f=$(ls "$d"/lib*/cmake/llama/llama-version.cmake "$d"/lib/*/cmake/llama/llama-version.cmake 2>/dev/null | head -n1 || true)
        if [ -n "$f" ] && grep -q 'PACKAGE_VERSION "0\.5\.0' "$f"; then
            llama_prefix=$d
            say "using the system llama.cpp 0.5.0 in $d"
            break
        fi
    done
fi
if [ -z "$llama_prefix" ]; then
    say "llama.cpp v0.5.0 (built once into ~/.cache/slm/deps)"
    llama_prefix=$(scripts/llama-deps.sh)
fi
printf '%s\n' "$llama_prefix" > .llama-prefix 2>/dev/null || true

# ------------------------------------------------------------------ slm
say "building slm"
werror=OFF
[ "${CI:-}" = true ] && werror=ON
mkdir -p build
if ! cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$llama_prefix" \
        -DSLM_WERROR=$werror >build/configure.log 2>&1; then
    cat build/configure.log >&2
    exit 1
fi
cmake --build build -j "$(ncpu)" --target slm
slm="$root/build/slm"

# ------------------------------------------------------------------ main job
model=""
shared="$root/../shared/models/stories260K.gguf"
if [ -f "$shared" ]; then
    model=$shared
elif [ -n "${SLM_MIRROR:-}" ] || "$slm" show stories260k >/dev/null 2>&1; then
    "$slm" pull stories260k
    model=stories260k
else
    say "pulling the default model (stories260k)"
    "$slm" pull stories260k
    model=stories260k
fi
say "main job: slm run $(basename "$model") \"Once upon a time\" (greedy, 96 tokens)"
"$slm" run "$model" "Once upon a time" --temperature 0 --max-tokens 96 --verbose
say "done: $slm (add build/ to PATH, or run build/slm --help)"
