#!/usr/bin/env bash
# Holds every #include in src/<module>/ and include/slm/ to DESIGN.md's arrows
# between modules (docs/internals/README.md explains them). Fails on:
#   - an include of another module's public header (include/slm/<h>.h) that
#     the including module may not use;
#   - an include of another module's private header ("engine/internal.h"
#     from outside src/engine/);
#   - a third-party header outside the modules that may use that library:
#     llama.h only in engine, ggml*.h / gguf.h only in engine and tune, and
#     each other library only where CMakeLists.txt links it;
#   - a public header, or a src/ folder, that the tables below do not name;
#   - CMakeLists.txt linking a module along other arrows than these;
#   - with --libs DIR (a build folder): a module's library calling an slm_
#     symbol that another module's library defines against the arrows, which
#     static libraries alone would let through to the final link.
# Test helpers that need libllama live under tests/, which is not checked.
#
#   scripts/check-layers.sh              the sources (README's test command)
#   scripts/check-layers.sh --libs DIR   the sources and DIR/libslm_*.a (ctest)
set -euo pipefail
libs=""
if [ "${1:-}" = --libs ]; then
    libs=$(cd "${2:?--libs needs a build folder}" && pwd)
fi
cd "$(dirname "$0")/.."

# ---------------------------------------------------------------- the arrows
# module: the modules it may use besides itself (DESIGN.md). cli is the slm
# executable (src/cli/ and src/main.c), not a library. A new module is a row
# here and a slm_module() line in CMakeLists.txt with the same arrows.
declare -A uses=(
    [base]=""
    [engine]="base"
    [grammar]="base"
    [liquid]="base"
    [store]="engine liquid base"
    [turn]="engine store liquid grammar base"
    [router]="turn engine liquid store grammar base"
    [tune]="turn engine liquid store grammar base"
    [flow]="router turn engine liquid store grammar base"
    [server]="flow tune router turn engine liquid store grammar base"
    [eval]="tune router turn engine liquid store grammar base"
    [cli]="server flow eval tune router turn engine liquid store grammar base"
)

# ---------------------------------------------------------------- public headers
# The module each include/slm/ header belongs to: written down here once.
declare -A owner=(
    [base.h]=base [json.h]=base [yaml.h]=base [svg.h]=base [sys.h]=base [sync.h]=base
    [engine.h]=engine [memory.h]=engine [options.h]=engine [sched.h]=engine [score.h]=engine
    [grammar.h]=grammar
    [liquid.h]=liquid
    [store.h]=store
    [turn.h]=turn
    [router.h]=router [ledger.h]=router [signals.h]=router [upstream.h]=router
    [server.h]=server
    [tune.h]=tune
    [contract.h]=eval
    [eval.h]=eval
    [flow.h]=flow
)

# ---------------------------------------------------------------- third-party headers
# Header (a glob on the name inside <>) -> the modules that may include it.
# Anything not listed is a system header and free to use; jansson is free
# too, since base's json.h exposes it.
third_party=(
    "llama.h engine"
    "llama-cpp.h engine"
    "ggml*.h engine tune"
    "gguf.h engine tune"
    "microhttpd.h server"
    "sqlite3.h router eval"
    "pcre2.h grammar router eval"
    "curl/* store router cli"
    "yaml.h base"
    "editline/* cli"
    "histedit.h cli"
    "readline/* cli"
)

# ---------------------------------------------------------------- checks
fails=()
fail() { fails+=("$1"); }

may_use() { # module other
    [ "$1" = "$2" ] && return 0
    local m
    for m in ${uses[$1]}; do
        [ "$m" = "$2" ] && return 0
    done
    return 1
}

check_includes() { # file module
    local file=$1 mod=$2 line n inc
    while IFS= read -r line; do
        n=${line%%:*}
        line=${line#*:}
        if [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
            inc=${BASH_REMATCH[1]}
            if [[ $inc == slm/* ]]; then
                local h=${inc#slm/} o
                o=${owner[$h]:-}
                if [ -z "$o" ]; then
                    fail "$file:$n: includes $inc, a header scripts/check-layers.sh does not place in a module"
                elif ! may_use "$mod" "$o"; then
                    fail "$file:$n: $mod may not use $o ($inc); $mod may use: ${uses[$mod]:-nothing}"
                fi
            elif [[ $inc == */* ]]; then
                local d=${inc%%/*}
                if [ -n "${uses[$d]+x}" ] && [ "$d" != "$mod" ]; then
                    fail "$file:$n: includes $inc, a private header of $d (use include/slm/ instead)"
                fi
            fi
        elif [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<([^\>]+)\> ]]; then
            inc=${BASH_REMATCH[1]}
            local entry pat mods ok
            for entry in "${third_party[@]}"; do
                pat=${entry%% *}
                mods=" ${entry#* } "
                # shellcheck disable=SC2053 # pat is a glob on purpose
                if [[ $inc == $pat ]]; then
                    ok=0
                    [[ $mods == *" $mod "* ]] && ok=1
                    if [ "$ok" = 0 ]; then
                        fail "$file:$n: <$inc> may be included only in:${mods% }"
                    fi
                    break
                fi
            done
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$file" || true)
}

for dir in src/*/; do
    mod=$(basename "$dir")
    if [ -z "${uses[$mod]+x}" ]; then
        fail "src/$mod/: a module scripts/check-layers.sh does not know (add its row of arrows there and a slm_module() line in CMakeLists.txt)"
        continue
    fi
    for f in "$dir"*.c "$dir"*.h; do
        [ -e "$f" ] && check_includes "$f" "$mod"
    done
done
for f in src/*.c; do
    [ -e "$f" ] && check_includes "$f" cli
done

for f in include/slm/*.h; do
    h=$(basename "$f")
    o=${owner[$h]:-}
    if [ -z "$o" ]; then
        fail "$f: a public header scripts/check-layers.sh does not place in a module (add it to 'owner')"
        continue
    fi
    check_includes "$f" "$o"
done

# CMakeLists.txt's slm_module(NAME USES a b c ...) must list the same arrows.
declare -A linked=()
while IFS= read -r call; do
    read -r -a words <<<"$call"
    name=${words[0]}
    deps=()
    in_uses=0
    for w in "${words[@]:1}"; do
        case $w in
            USES) in_uses=1 ;;
            PUBLIC | PRIVATE) in_uses=0 ;;
            *) [ "$in_uses" = 1 ] && deps+=("$w") ;;
        esac
    done
    linked[$name]="${deps[*]:-}"
done < <(sed 's/#.*//' CMakeLists.txt | tr '\n' ' ' | grep -oE 'slm_module\([^)]*\)' |
    sed -e 's/^slm_module(//' -e 's/)$//')
sorted() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort | tr '\n' ' '; }
for mod in "${!uses[@]}"; do
    [ "$mod" = cli ] && continue
    if [ -z "${linked[$mod]+x}" ]; then
        fail "CMakeLists.txt: no slm_module($mod ...) line"
    elif [ "$(sorted "${linked[$mod]}")" != "$(sorted "${uses[$mod]}")" ]; then
        fail "CMakeLists.txt: slm_module($mod) USES '${linked[$mod]}' but the arrows here say '${uses[$mod]}'"
    fi
done
for mod in "${!linked[@]}"; do
    [ -n "${uses[$mod]+x}" ] || fail "CMakeLists.txt: slm_module($mod) has no row of arrows here"
done

# The libraries: who defines each slm_ symbol, and who calls it.
if [ -n "$libs" ]; then
    declare -A defined_in=()
    for mod in "${!uses[@]}"; do
        a=$libs/libslm_$mod.a
        [ -e "$a" ] || continue
        while read -r sym; do
            defined_in[$sym]=$mod
        done < <(nm -g --defined-only "$a" 2>/dev/null | awk 'NF == 3 && $3 ~ /^slm_/ {print $3}')
    done
    for mod in "${!uses[@]}"; do
        a=$libs/libslm_$mod.a
        [ -e "$a" ] || continue
        while read -r sym; do
            o=${defined_in[$sym]:-}
            if [ -n "$o" ] && ! may_use "$mod" "$o"; then
                fail "libslm_$mod.a: calls $sym from $o; $mod may use: ${uses[$mod]:-nothing}"
            fi
        done < <(nm -u "$a" 2>/dev/null | awk '$1 == "U" && $2 ~ /^slm_/ {print $2}' | sort -u)
    done
fi

if [ "${#fails[@]}" -gt 0 ]; then
    echo "layer violations (see docs/internals/README.md):" >&2
    printf '  %s\n' "${fails[@]}" >&2
    exit 1
fi
echo "layer checks: ok"
