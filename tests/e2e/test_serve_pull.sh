#!/usr/bin/env bash
# POST /api/pull on slm serve: an alias pulled from a folder mirror (no
# network), streamed NDJSON progress then success, the model usable at once;
# the whole answer with "stream": false; errors for unknown names. Then
# /api/create, /api/copy and /api/delete over the pulled model.
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
echo "ok"
