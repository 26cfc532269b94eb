#!/usr/bin/env bash
# POST /api/pull on slm serve: an alias pulled from a folder mirror (no
# network), streamed NDJSON progress then success, the model usable at once;
# the whole answer with "stream": false; errors for unknown names. Then
# /api/create, /api/copy and /api/delete over the pulled model. Last, two
# pulls of one model at once, `slm pull` beside /api/pull (fake_hf).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_stories
command -v curl >/dev/null || skip "curl is needed"

MIRROR=$SERVE_DIR/mirror
mkdir -p "$MIRROR/ggml-org/models/resolve/main/tinyllamas"
cp "$STORIES" "$MIRROR/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf"
export SLM_MIRROR=$MIRROR
export SLM_HF_ENDPOINT=http://127.0.0.1:9 # nothing listens there: the mirror must serve
export SLM_PULL_BACKOFF_MS=20

serve_start

out=$(curl -sS -N "$URL/api/pull" -d '{"model":"stories260k"}')
contains "$out" '{"status":"pulling manifest"}'
contains "$out" '"completed":'
contains "$(printf '%s\n' "$out" | tail -n 1)" '{"status":"success"}'
out=$(curl -sS "$URL/api/tags")
contains "$out" '"name":"stories260k:latest"'

out=$(curl -sS "$URL/api/chat" -d '{"model":"stories260k","stream":false,"messages":[{"role":"user","content":"Hi"}],"options":{"num_predict":4}}')
contains "$out" '"eval_count":4'

# Again, whole: already there, verified.
out=$(curl -sS "$URL/api/pull" -d '{"model":"stories260k","stream":false}')
[ "$out" = '{"status":"success"}' ] || fail "pull without streaming: $out"

# Unknown names: an error line in the stream, a 404 without.
out=$(curl -sS -N "$URL/api/pull" -d '{"model":"no-such-alias"}')
contains "$(printf '%s\n' "$out" | tail -n 1)" '"error":'
code=$(curl -sS -o "$SERVE_DIR/body" -w '%{http_code}' "$URL/api/pull" -d '{"model":"no-such-alias","stream":false}')
[ "$code" = 404 ] || fail "unknown model: $code $(cat "$SERVE_DIR/body")"

# Create, copy, delete.
out=$(curl -sS "$URL/api/create" -d '{"model":"teller","from":"stories260k","system":"Tell stories.","parameters":{"num_predict":8,"stop":["The end"]}}')
contains "$out" '{"status":"success"}'
out=$(curl -sS "$URL/api/show" -d '{"model":"teller"}')
contains "$out" '"system":"Tell stories."'
contains "$out" 'The end'
code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/api/copy" -d '{"source":"teller","destination":"teller2"}')
[ "$code" = 200 ] || fail "copy: $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$URL/api/delete" -d '{"model":"teller"}')
[ "$code" = 200 ] || fail "delete: $code"
out=$("$SLM" list)
contains "$out" "teller2:latest"
case "$out" in *"teller:latest"*) fail "teller was not deleted: $out" ;; esac

serve_stop TERM

# --- Two pulls of one model at once (issue 14, hole 5): `slm pull` and
# POST /api/pull, overlapping on a slow fake Hugging Face server, in both
# orders. Both must succeed with a blob that hashes to its name, and the file
# is downloaded once (the later pull waits on the earlier one's lock).
FAKE_HF=${SLM_TOOLS:-/nonexistent}/fake_hf
[ -x "$FAKE_HF" ] || skip "fake_hf not built (\$SLM_TOOLS/fake_hf)"
ROOT=$SERVE_DIR/hf
REPO=$ROOT/acme/tiny-GGUF/resolve/main
mkdir -p "$REPO"
for q in Q4_K_M Q8_0; do
    { printf 'GGUF'; head -c 1500000 /dev/urandom; } >"$REPO/tiny-$q.gguf"
done
"$FAKE_HF" --root "$ROOT" --port-file "$SERVE_DIR/hf.port" --log "$SERVE_DIR/hf.log" \
    --slow-bytes-per-sec 1000000 >/dev/null 2>"$SERVE_DIR/hf.err" &
SERVE_ALL="$SERVE_ALL $!" # stopped with the servers
for _ in $(seq 100); do
    [ -s "$SERVE_DIR/hf.port" ] && break
    sleep 0.05
done
[ -s "$SERVE_DIR/hf.port" ] || fail "fake_hf did not start: $(cat "$SERVE_DIR/hf.err")"
unset SLM_MIRROR
export SLM_HF_ENDPOINT=http://127.0.0.1:$(cat "$SERVE_DIR/hf.port")
serve_start

# wait_partial: until a download in tmp/ has bytes.
wait_partial() {
    for _ in $(seq 200); do
        find "$SLM_HOME/tmp" -name '*.partial' -size +100k 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    fail "no download started in $SLM_HOME/tmp"
}
check_blob() { # sha256
    [ -f "$SLM_HOME/blobs/sha256-$1" ] || fail "no blob sha256-$1"
    [ "$(sha256sum "$SLM_HOME/blobs/sha256-$1" | cut -d' ' -f1)" = "$1" ] ||
        fail "blob sha256-$1 does not hash to its name"
    [ "$(grep -c "resolve/main/$2 range=.* status=20[06]" "$SERVE_DIR/hf.log")" = 1 ] ||
        fail "$2 downloaded more than once: $(cat "$SERVE_DIR/hf.log")"
}

# The server first, then the CLI.
curl -sS -N "$URL/api/pull" -d '{"model":"hf.co/acme/tiny-GGUF:Q4_K_M"}' >"$SERVE_DIR/api.out" &
pid_api=$!
wait_partial
code=0
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >"$SERVE_DIR/cli.out" 2>"$SERVE_DIR/cli.err" || code=$?
wait "$pid_api" || fail "curl /api/pull failed"
[ "$code" = 0 ] || fail "slm pull beside /api/pull failed ($code): $(cat "$SERVE_DIR/cli.err")"
contains "$(tail -n 1 "$SERVE_DIR/api.out")" '{"status":"success"}' "/api/pull beside slm pull"
check_blob "$(sha256sum "$REPO/tiny-Q4_K_M.gguf" | cut -d' ' -f1)" tiny-Q4_K_M.gguf

# The CLI first, then the server (which says it waits).
"$SLM" pull hf.co/acme/tiny-GGUF:Q8_0 >"$SERVE_DIR/cli.out" 2>"$SERVE_DIR/cli.err" &
pid_cli=$!
wait_partial
out=$(curl -sS -N "$URL/api/pull" -d '{"model":"hf.co/acme/tiny-GGUF:Q8_0"}')
code=0
wait "$pid_cli" || code=$?
[ "$code" = 0 ] || fail "slm pull beside /api/pull failed ($code): $(cat "$SERVE_DIR/cli.err")"
contains "$(printf '%s\n' "$out" | tail -n 1)" '{"status":"success"}' "/api/pull beside slm pull"
contains "$out" "waiting for another pull" "/api/pull waiting"
check_blob "$(sha256sum "$REPO/tiny-Q8_0.gguf" | cut -d' ' -f1)" tiny-Q8_0.gguf
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "tmp/ not empty after the pulls: $(ls -A "$SLM_HOME/tmp")"
out=$("$SLM" list)
contains "$out" "hf.co/acme/tiny-GGUF:Q4_K_M"
contains "$out" "hf.co/acme/tiny-GGUF:Q8_0"

serve_stop TERM
echo "ok"
