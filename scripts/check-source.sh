#!/usr/bin/env bash
# Keeps banned C functions out of our sources (STYLE.md: "a grep in CI keeps them out").
set -euo pipefail
cd "$(dirname "$0")/.."
banned='\b(strcpy|strcat|sprintf|vsprintf|strncpy|strtok|atoi|atol|atof|sscanf|gets)[[:space:]]*\('
if hits=$(grep -rnE "$banned" --include='*.c' --include='*.h' src include tests bench 2>/dev/null \
        | grep -v 'check-source: allow'); then
    echo "banned functions used (see STYLE.md):" >&2
    echo "$hits" >&2
    exit 1
fi
# Portability (docs/internals/portability.md): the tree builds with _POSIX_C_SOURCE=200809L and
# nothing more; a file that needs more says so itself, and only for a system-specific path
# guarded by #if (these two), or XSI (_XOPEN_SOURCE: realpath), which every Unix has.
if grep -nE '_GNU_SOURCE|_DEFAULT_SOURCE|_BSD_SOURCE' CMakeLists.txt >&2; then
    echo "CMakeLists.txt: only _POSIX_C_SOURCE=200809L is defined for every file" >&2
    exit 1
fi
if hits=$(grep -rlE '^#define _(GNU|DEFAULT|BSD)_SOURCE' --include='*.c' --include='*.h' src include \
        | grep -vxE 'src/base/sys.c|src/cli/hugepages.c'); then
    echo "feature macros beyond POSIX outside src/base/sys.c (put the system call there):" >&2
    echo "$hits" >&2
    exit 1
fi
linux_only='\b(accept4|pipe2|getrandom|epoll_[a-z]+|eventfd|signalfd|timerfd_[a-z]+|pthread_condattr_setclock|sched_[gs]etaffinity)[[:space:]]*\('
if hits=$(grep -rnE "$linux_only" --include='*.c' src tests bench 2>/dev/null \
        | grep -vE '^src/base/(sys|sync)\.c:'); then
    echo "system-specific calls outside src/base/sys.c and src/base/sync.c (use slm/sys.h, slm/sync.h):" >&2
    echo "$hits" >&2
    exit 1
fi
echo "source checks: ok"
