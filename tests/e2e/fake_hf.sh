# Helpers for tests that pull from the fake Hugging Face server
# (tests/tools/fake_hf.c). Sourced after lib.sh.

FAKE_HF=${SLM_TOOLS:-/nonexistent}/fake_hf
[ -x "$FAKE_HF" ] || skip "fake_hf not built (\$SLM_TOOLS/fake_hf)"

WORK=$(mktemp -d /tmp/slm-e2e-pull-XXXXXX)
FAKE_PID=
FAKE_LOG=$WORK/requests.log
cleanup() {
    if [ -n "$FAKE_PID" ]; then kill "$FAKE_PID" 2>/dev/null || true; wait "$FAKE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK" "$SLM_HOME"
}
trap cleanup EXIT

# Retry quickly in tests.
export SLM_PULL_BACKOFF_MS=20
unset SLM_MIRROR HF_TOKEN

# start_fake ROOT [faults...]: starts the server, sets SLM_HF_ENDPOINT and PORT.
start_fake() {
    stop_fake
    local root=$1
    shift
    : >"$FAKE_LOG"
    rm -f "$WORK/port"
    "$FAKE_HF" --root "$root" --port-file "$WORK/port" --log "$FAKE_LOG" "$@" \
        >/dev/null 2>"$WORK/fake.err" &
    FAKE_PID=$!
    for _ in $(seq 100); do
        [ -s "$WORK/port" ] && break
        sleep 0.05
    done
    [ -s "$WORK/port" ] || fail "fake_hf did not start: $(cat "$WORK/fake.err")"
    PORT=$(cat "$WORK/port")
    export SLM_HF_ENDPOINT=http://127.0.0.1:$PORT
}

stop_fake() {
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
        FAKE_PID=
    fi
}

# new_home: a fresh, empty store for the next scenario.
new_home() {
    rm -rf "$SLM_HOME"
    export SLM_HOME=$(mktemp -d /tmp/slm-e2e-home-XXXXXX)
}

# A file with a GGUF magic and random bytes (enough for pull; not loadable).
fake_gguf() { # path, bytes
    mkdir -p "$(dirname "$1")"
    { printf 'GGUF'; head -c "$2" /dev/urandom; } >"$1"
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

blob_count() {
    find "$SLM_HOME/blobs" -type f | wc -l
}

model_count() {
    "$SLM" list --json | grep -c '"name"' || true
}

# wait_for_partial BYTES: waits (up to 20 s) until a download in tmp/ holds
# at least BYTES bytes; prints its path.
wait_for_partial() {
    local want=$1 f size
    for _ in $(seq 400); do
        for f in "$SLM_HOME"/tmp/*.partial; do
            [ -f "$f" ] || continue
            size=$(stat -c %s "$f" 2>/dev/null || echo 0)
            if [ "$size" -ge "$want" ]; then
                echo "$f"
                return 0
            fi
        done
        sleep 0.05
    done
    fail "no download in $SLM_HOME/tmp reached $want bytes: $(ls -l "$SLM_HOME/tmp")"
}

# blobs_match_names: every blob's sha256 is its name (a blob under a name
# that is not its hash is the one thing the store must never hold).
blobs_match_names() {
    local b
    for b in "$SLM_HOME"/blobs/sha256-*; do
        [ -f "$b" ] || continue
        [ "sha256-$(sha256_of "$b")" = "$(basename "$b")" ] ||
            fail "blob $(basename "$b") does not hash to its name"
    done
}

# downloads_of FILE: how many GETs of FILE the fake server answered with bytes.
downloads_of() {
    grep -c "resolve/main/$1 range=.* status=20[06]" "$FAKE_LOG" || true
}
