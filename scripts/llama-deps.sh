#!/usr/bin/env bash
# Builds llama.cpp v0.5.0 (the release carried by npm node-llama-cpp@3.22.1) once
# into a cache outside the clone, and prints the install prefix on stdout.
#
#   scripts/llama-deps.sh            libraries only (what slm links)
#   scripts/llama-deps.sh --tools    also llama-bench, llama-server, llama-simple,
#                                    llama-finetune, llama-quantize (benchmark peers)
#
# GPU backend (docs/internals/portability.md): SLM_GPU=auto (default: Metal on macOS, CUDA when
# nvcc is on PATH and nvidia-smi sees a GPU, else the CPU), cpu, cuda, metal or vulkan (never
# chosen by auto). A CUDA build on a machine without a GPU needs CMAKE_CUDA_ARCHITECTURES
# (SLM_CUDA_ARCHS, default "75;80;86;89;90" there; "native" when a GPU is seen).
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/slm/deps/llama.cpp-de3ff815-<cc>-<native|generic>[-<gpu>][-tools]/
# holding src/, build/, prefix/ and a lock; a finished build leaves prefix/.done.
# Nothing here touches the network but the npm registry. Runs on Linux and macOS.
set -euo pipefail

NPM_PKG="node-llama-cpp@3.22.1"
NPM_INTEGRITY="sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=="
BUNDLE_SHA256="5f5d1105d5df040738d87b8290e5d17e7362131cdcfdb0831618e0ea528b4a51"
COMMIT="de3ff815ea7d559ee917f063901b8986f038abc6"

tools=0
[ "${1:-}" = "--tools" ] && tools=1

log() { printf 'llama-deps: %s\n' "$*" >&2; }

cc_id() {
    local cc=${CC:-cc}
    local v
    v=$("$cc" -dumpfullversion -dumpversion 2>/dev/null | head -n1 || true)
    local name
    if "$cc" --version 2>/dev/null | head -n1 | grep -qi clang; then name=clang; else name=gcc; fi
    printf '%s%s' "$name" "${v%%.*}"
}

# What Linux's coreutils/util-linux give and macOS lacks.
ncpu() { nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2; }
sha256_ok() { # SUM FILE
    if command -v sha256sum >/dev/null; then
        echo "$1  $2" | sha256sum -c --status
    else
        [ "$(shasum -a 256 "$2" | cut -d' ' -f1)" = "$1" ]
    fi
}

gpu=${SLM_GPU:-auto}
if [ "$gpu" = auto ]; then
    if [ "$(uname -s)" = Darwin ]; then
        gpu=metal
    elif command -v nvcc >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        gpu=cuda # a toolkit without a GPU (a build box) stays on the CPU unless asked
    else
        gpu=cpu
    fi
fi
case $gpu in
cpu | cuda | metal | vulkan) ;;
*) log "SLM_GPU=$gpu: expected auto, cpu, cuda, metal or vulkan"; exit 2 ;;
esac

arch_mode=${SLM_LLAMA_ARCH:-native}   # native | generic
cache=${XDG_CACHE_HOME:-$HOME/.cache}/slm/deps
key="llama.cpp-${COMMIT:0:8}-$(cc_id)-${arch_mode}"
[ "$gpu" != cpu ] && key="$key-$gpu" # the CPU key is unchanged: existing caches stay valid
[ $tools = 1 ] && key="$key-tools"
dir="$cache/$key"
prefix="$dir/prefix"

if [ -f "$prefix/.done" ]; then
    printf '%s\n' "$prefix"
    exit 0
fi

mkdir -p "$dir"
if command -v flock >/dev/null; then
    exec 9>"$dir/lock"
    if ! flock -w 3600 9; then
        log "could not take $dir/lock within an hour"
        exit 1
    fi
else # macOS: no flock(1); a lock directory, removed on exit
    for _ in $(seq 3600); do
        mkdir "$dir/lock.d" 2>/dev/null && break
        sleep 1
    done
    [ -d "$dir/lock.d" ] || { log "could not take $dir/lock.d within an hour"; exit 1; }
    trap 'rmdir "$dir/lock.d" 2>/dev/null' EXIT
fi
# Another process may have finished the build while we waited.
if [ -f "$prefix/.done" ]; then
    printf '%s\n' "$prefix"
    exit 0
fi

bundle_cache="$cache/node-llama-cpp-3.22.1-gitRelease.bundle"
if [ ! -f "$bundle_cache" ] || ! sha256_ok "$BUNDLE_SHA256" "$bundle_cache"; then
    log "fetching $NPM_PKG from the npm registry"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"; rmdir "$dir/lock.d" 2>/dev/null' EXIT
    (cd "$tmp" && npm pack "$NPM_PKG" --json --silent >pack.json 2>pack.err) || {
        cat "$tmp/pack.err" >&2
        log "npm pack failed"
        exit 1
    }
    got=$(grep -o '"integrity": *"[^"]*"' "$tmp/pack.json" | head -n1 | sed 's/.*"\(sha512-[^"]*\)"/\1/')
    if [ "$got" != "$NPM_INTEGRITY" ]; then
        log "integrity mismatch for $NPM_PKG: got '$got'"
        exit 1
    fi
    tar -xzf "$tmp"/node-llama-cpp-3.22.1.tgz -C "$tmp" package/llama/gitRelease.bundle
    if ! sha256_ok "$BUNDLE_SHA256" "$tmp/package/llama/gitRelease.bundle"; then
        log "sha256 mismatch for llama/gitRelease.bundle"
        exit 1
    fi
    mv "$tmp/package/llama/gitRelease.bundle" "$bundle_cache.tmp"
    mv "$bundle_cache.tmp" "$bundle_cache"
fi

rm -rf "$dir/src" "$dir/build" "$prefix"
# The bundle's only ref is a bare commit (no branch, no tag): a clone of it is
# a detached HEAD by design, so git's advice about that state is only noise.
git -c advice.detachedHead=false clone -q "$bundle_cache" "$dir/src"
(cd "$dir/src" && git -c advice.detachedHead=false checkout -q "$COMMIT")

native=ON
[ "$arch_mode" = generic ] && native=OFF
opts=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
      -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=$native -DLLAMA_CURL=OFF
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF)
case $gpu in
cuda)
    archs=${SLM_CUDA_ARCHS:-}
    if [ -z "$archs" ]; then
        archs="75;80;86;89;90"
        nvidia-smi -L 2>/dev/null | grep -q '^GPU' && archs=native
    fi
    opts+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$archs")
    ;;
metal) opts+=(-DGGML_METAL=ON -DGGML_METAL_EMBED_LIBRARY=ON) ;;
vulkan) opts+=(-DGGML_VULKAN=ON) ;;
cpu) opts+=(-DGGML_METAL=OFF) ;;
esac
if [ $tools = 1 ]; then
    opts+=(-DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON
           -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF)
else
    opts+=(-DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF)
fi
log "configuring $key (GPU backend: $gpu)"
cmake -S "$dir/src" -B "$dir/build" "${opts[@]}" >"$dir/configure.log" 2>&1 || {
    tail -n 30 "$dir/configure.log" >&2
    exit 1
}
log "building $key (a few minutes, once)"
jobs=$(ncpu)
if [ $tools = 1 ]; then
    targets=(--target llama llama-bench llama-server llama-simple llama-finetune llama-quantize llama-cli llama-gguf-split)
else
    targets=()
fi
cmake --build "$dir/build" -j "$jobs" "${targets[@]}" >"$dir/build.log" 2>&1 || {
    tail -n 40 "$dir/build.log" >&2
    exit 1
}
if [ $tools = 1 ]; then
    mkdir -p "$prefix/bin"
    cp "$dir/build/bin/"llama-* "$prefix/bin/"
    cp -r "$dir/src/models" "$prefix/vocab" 2>/dev/null || true
else
    cmake --install "$dir/build" >"$dir/install.log" 2>&1 || {
        tail -n 20 "$dir/install.log" >&2
        exit 1
    }
    # Keep the vocab-only GGUFs: the test model maker takes real vocabularies from them.
    mkdir -p "$prefix/share/slm-vocab"
    cp "$dir/src/models/"ggml-vocab-*.gguf "$prefix/share/slm-vocab/" 2>/dev/null || true
fi
rm -rf "$dir/build/CMakeFiles" 2>/dev/null || true
touch "$prefix/.done"
printf '%s\n' "$prefix"
