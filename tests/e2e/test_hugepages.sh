#!/usr/bin/env bash
# Commands that run a model re-execute themselves with glibc's large
# allocations on transparent huge pages (src/cli/hugepages.c): the running
# process's environment shows the tunable when the kernel's THP mode is
# "madvise" and glibc is 2.35+, keeps what the user had in GLIBC_TUNABLES,
# and SLM_HUGEPAGES=0 turns it off. Commands that run no model never re-exec.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

environ_of() { # pid -> its environment, one variable a line
    tr '\0' '\n' <"/proc/$1/environ"
}

thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || true)
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}' || true)
expect=0
case $thp in *"[madvise]"*) expect=1 ;; esac
if [ -z "$glibc" ] || [ "$(printf '%s\n2.35\n' "$glibc" | sort -V | head -n 1)" != 2.35 ]; then
    expect=0
fi

serve_start
env_now=$(environ_of "$SERVE_PID")
if [ $expect = 1 ]; then
    contains "$env_now" "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" "slm serve's environment"
else
    case $env_now in *glibc.malloc.hugetlb*) fail "THP is '$thp', glibc '$glibc': no re-exec expected" ;; esac
fi
serve_stop

# The user's own tunables stay, the hugetlb one is added after them.
GLIBC_TUNABLES=glibc.malloc.check=0 serve_start
env_now=$(environ_of "$SERVE_PID")
# (glibc may cut the variable at the ':' in place when it parses it, and
# /proc/PID/environ shows that memory: look for both parts.)
contains "$env_now" "GLIBC_TUNABLES=glibc.malloc.check=0" "the environment"
if [ $expect = 1 ]; then
    contains "$env_now" "glibc.malloc.hugetlb=1" "the environment"
fi
serve_stop

# Set by the user already (to anything): left alone, no second exec.
GLIBC_TUNABLES=glibc.malloc.hugetlb=0 serve_start
contains "$(environ_of "$SERVE_PID")" "GLIBC_TUNABLES=glibc.malloc.hugetlb=0" "the environment"
serve_stop

SLM_HUGEPAGES=0 serve_start
case $(environ_of "$SERVE_PID") in *glibc.malloc.hugetlb*) fail "SLM_HUGEPAGES=0 still re-executed" ;; esac
serve_stop

# A command that runs no model does not re-exec (and still works).
"$SLM" list >/dev/null || fail "slm list failed"
echo "ok (THP '$thp', glibc '$glibc', expected re-exec: $expect)"
