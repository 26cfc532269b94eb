#!/usr/bin/env bash
# slm serve driven by real client libraries (tests/e2e/clients/: openai,
# ollama, @langchain/openai, versions pinned in package-lock.json) on
# stories260K. Skips when node is missing or npm cannot install the clients
# (offline).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
need_model
command -v node >/dev/null || skip "node is not installed"
command -v npm >/dev/null || skip "npm is not installed"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || skip "node $major is too old (the clients need node 20)"

CLIENTS=$(cd "$(dirname "$0")/clients" && pwd)
# npm ci when node_modules is missing or older than the lockfile.
if [ ! -f "$CLIENTS/node_modules/.package-lock.json" ] ||
    [ "$CLIENTS/package-lock.json" -nt "$CLIENTS/node_modules/.package-lock.json" ]; then
    (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error >"$SERVE_DIR/npm.log" 2>&1) ||
        skip "npm ci failed (offline?): $(tail -n 3 "$SERVE_DIR/npm.log")"
fi

make_stories stories
serve_start --parallel 4 --ctx-size 1024
main_url=$URL
main_pid=$SERVE_PID

# A second server with a key, for the clients' auth errors.
serve_start --api-key e2e-key --ctx-size 256 --parallel 1
key_url=$URL
key_pid=$SERVE_PID

export SLM_URL=$main_url SLM_KEY_URL=$key_url SLM_MODEL=stories
for client in openai ollama langchain; do
    node "$CLIENTS/$client.mjs" || fail "$client client (server log: $(tail -n 5 "$SERVE_DIR/err.1"))"
done

SERVE_PID=$key_pid
serve_stop TERM
SERVE_PID=$main_pid
serve_stop TERM
echo "ok"
