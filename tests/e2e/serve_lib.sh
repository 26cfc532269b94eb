# Helpers for the `slm serve` end-to-end tests (sourced after lib.sh).
#
#   serve_start [flags...]   starts `slm serve --port 0 ...` in the background;
#                            sets SERVE_PID, URL (http://127.0.0.1:PORT) and
#                            SERVE_OUT / SERVE_ERR (its stdout and stderr)
#   serve_stop [SIGNAL]      stops the server in SERVE_PID (SIGTERM by default);
#                            fails unless it exits with 0 within 10 s
#   make_stories NAME        creates model NAME in $SLM_HOME from stories260K
# Every server started is killed on exit.

SERVE_PID=
SERVE_ALL=
SERVE_N=0
SERVE_DIR=$(mktemp -d /tmp/slm-e2e-serve-XXXXXX)
serve_cleanup() {
    local pid
    for pid in $SERVE_ALL; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SERVE_DIR" "$SLM_HOME"
}
trap serve_cleanup EXIT

serve_start() {
    SERVE_N=$((SERVE_N + 1))
    SERVE_OUT=$SERVE_DIR/out.$SERVE_N
    SERVE_ERR=$SERVE_DIR/err.$SERVE_N
    "$SLM" serve --port 0 "$@" >"$SERVE_OUT" 2>"$SERVE_ERR" &
    SERVE_PID=$!
    SERVE_ALL="$SERVE_ALL $SERVE_PID"
    for _ in $(seq 200); do
        URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$SERVE_OUT" | head -n 1 || true)
        [ -n "$URL" ] && return 0
        kill -0 "$SERVE_PID" 2>/dev/null || fail "slm serve exited: $(cat "$SERVE_ERR")"
        sleep 0.05
    done
    fail "slm serve did not print its URL: $(cat "$SERVE_ERR")"
}

serve_stop() {
    local sig=${1:-TERM}
    kill -"$sig" "$SERVE_PID"
    local waited=0
    while kill -0 "$SERVE_PID" 2>/dev/null; do
        sleep 0.1
        waited=$((waited + 1))
        [ "$waited" -lt 100 ] || fail "slm serve did not exit within 10 s of SIG$sig"
    done
    local code=0
    wait "$SERVE_PID" || code=$?
    [ "$code" = 0 ] || fail "slm serve exited with $code after SIG$sig: $(tail -n 5 "$SERVE_ERR")"
    SERVE_PID=
}

make_stories() {
    printf 'FROM %s\n' "$MODEL" >"$SERVE_DIR/Modelfile"
    "$SLM" create "$1" -f "$SERVE_DIR/Modelfile" >/dev/null
}
