# Shared helpers for the end-to-end tests (sourced, not run).
set -euo pipefail

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

skip() {
    echo "SKIP: $*" >&2
    exit 77
}

# Asserts that a command exits with the given code; its stderr is kept in $ERR.
expect_exit() { # code, command...
    local want=$1
    shift
    local got=0
    ERR=$("$@" 2>&1 >/dev/null) || got=$?
    [ "$got" = "$want" ] || fail "expected exit $want, got $got from: $* ($ERR)"
}

contains() { # haystack, needle, what
    case "$1" in
    *"$2"*) ;;
    *) fail "${3:-output} does not contain '$2': $1" ;;
    esac
}

SLM=${SLM_BIN:?SLM_BIN must name the slm binary}
STORIES=${SLM_SHARED:-/nonexistent}/models/stories260K.gguf

need_stories() {
    [ -f "$STORIES" ] || skip "stories260K.gguf not found under \$SLM_SHARED/models"
}

# fake_cloud_start OUT ARGS...: starts tests/tools/fake_cloud ($FAKE) on a
# free loopback port with ARGS, its stdout and stderr in OUT.out and OUT.err;
# sets FAKE_PID and FAKE_PORT, fails when it does not come up. The caller
# stops FAKE_PID.
fake_cloud_start() {
    local out=$1
    shift
    "${FAKE:?FAKE must name the fake_cloud binary}" --port 0 "$@" >"$out.out" 2>"$out.err" &
    FAKE_PID=$!
    for _ in $(seq 100); do
        grep -q '^port=' "$out.out" 2>/dev/null && break
        sleep 0.05
    done
    FAKE_PORT=$(sed -n 's/^port=//p' "$out.out")
    [ -n "$FAKE_PORT" ] || fail "fake cloud did not start: $(cat "$out.err")"
}

# A private store for each test.
export SLM_HOME=$(mktemp -d /tmp/slm-e2e-home-XXXXXX)
trap 'rm -rf "$SLM_HOME"' EXIT
