#!/usr/bin/env bash
# Builds llama.cpp v0.5.0 (the release carried by npm node-llama-cpp@3.22.1) once
# into a cache outside the clone, and prints the install prefix on stdout.
#
#   scripts/llama-deps.sh            libraries only (what slm links)
#   scripts/llama-deps.sh --tools    also llama-bench, llama-server, llama-simple,
#                                    llama-finetune, llama-quantize (benchmark peers)
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/slm/deps/llama.cpp-de3ff815-<cc>-<native|generic>[-tools]/
# holding src/, build/, prefix/ and a lock; a finished build leaves prefix/.done.
# Nothing here touches the network but the npm registry.
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

arch_mode=${SLM_LLAMA_ARCH:-native}   # native | generic
cache=${XDG_CACHE_HOME:-$HOME/.cache}/slm/deps
key="llama.cpp-${COMMIT:0:8}-$(cc_id)-${arch_mode}"
[ $tools = 1 ] && key="$key-tools"
dir="$cache/$key"
prefix="$dir/prefix"

if [ -f "$prefix/.done" ]; then
    printf '%s\n' "$prefix"
    exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/lock"
if ! flock -w 3600 9; then
    log "could not take $dir/lock within an hour"
    exit 1
fi
# Another process may have finished the build while we waited.
if [ -f "$prefix/.done" ]; then
    printf '%s\n' "$prefix"
    exit 0
fi

bundle_cache="$cache/node-llama-cpp-3.22.1-gitRelease.bundle"
if [ ! -f "$bundle_cache" ] || ! echo "$BUNDLE_SHA256  $bundle_cache" | sha256sum -c --status; then
    log "fetching $NPM_PKG from the npm registry"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
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
    if ! echo "$BUNDLE_SHA256  $tmp/package/llama/gitRelease.bundle" | sha256sum -c --status; then
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
if [ $tools = 1 ]; then
    opts+=(-DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON
           -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF)
else
    opts+=(-DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF)
fi
log "configuring $key"
cmake -S "$dir/src" -B "$dir/build" "${opts[@]}" >"$dir/configure.log" 2>&1 || {
    tail -n 30 "$dir/configure.log" >&2
    exit 1
}
log "building $key (a few minutes, once)"
jobs=$(nproc 2>/dev/null || echo 2)
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
