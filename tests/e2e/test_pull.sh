#!/usr/bin/env bash
# slm pull against the fake Hugging Face server (tests/tools/fake_hf.c):
# hf.co names and :QUANT choice, resume after truncation (Range), servers that
# ignore Range, 503 retries, corrupted files, 404/401, URLs with --sha256,
# redirects. Needs no real model: the files are random bytes behind a GGUF
# magic. Each scenario uses its own SLM_HOME.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_hf.sh"

ROOT=$WORK/root
REPO=$ROOT/acme/tiny-GGUF/resolve/main
fake_gguf "$REPO/tiny-Q4_K_M.gguf" 2000000
fake_gguf "$REPO/tiny-Q4_K_L.gguf" 1000
fake_gguf "$REPO/tiny-Q8_0.gguf" 3000
fake_gguf "$REPO/sub/deep-F16.gguf" 1500
echo "readme" >"$REPO/README.md"
Q4=$(sha256_of "$REPO/tiny-Q4_K_M.gguf")

# --- :QUANT picks the file, verifies it against the listing's lfs.oid.
new_home
start_fake "$ROOT"
out=$("$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M)
contains "$out" "pulled hf.co/acme/tiny-GGUF:Q4_K_M" "pull output"
contains "$out" "sha256 verified" "pull output"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "blob missing after pull"
[ -f "$SLM_HOME/manifests/hf.co/acme/tiny-GGUF/Q4_K_M.json" ] || fail "manifest missing"
grep -q "tiny-Q4_K_M.gguf" "$SLM_HOME/manifests/hf.co/acme/tiny-GGUF/Q4_K_M.json" ||
    fail "manifest does not name its source"
grep -q "api/models/acme/tiny-GGUF/tree/main" "$FAKE_LOG" || fail "no listing request"
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "tmp/ not empty after a pull"

# Pulling it again verifies and says so, without downloading.
: >"$FAKE_LOG"
out=$("$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M)
contains "$out" "already present" "second pull"
grep -q "resolve/main" "$FAKE_LOG" && fail "second pull downloaded again"

# Case-insensitive quant, a file by path (in a sub-folder), no tag = Q4_K_M.
"$SLM" pull hf.co/acme/tiny-GGUF:q8_0 >/dev/null
"$SLM" pull hf.co/acme/tiny-GGUF/sub/deep-F16.gguf >/dev/null
out=$("$SLM" pull hf.co/acme/tiny-GGUF)
contains "$out" "already present" "pull without a tag picks Q4_K_M"
[ "$(model_count)" = 4 ] || fail "expected 4 models, got $("$SLM" list)"

# Ambiguous and unmatched quants, missing repositories and files.
expect_exit 1 "$SLM" pull hf.co/acme/tiny-GGUF:Q4_K
contains "$ERR" "ambiguous" "ambiguous quant"
contains "$ERR" "tiny-Q4_K_M.gguf" "ambiguous quant lists candidates"
contains "$ERR" "tiny-Q4_K_L.gguf" "ambiguous quant lists candidates"
expect_exit 3 "$SLM" pull hf.co/acme/tiny-GGUF:Q3_K_S
contains "$ERR" "no .gguf file matches 'Q3_K_S'"
expect_exit 3 "$SLM" pull hf.co/acme/nothing-here:Q4_K_M
contains "$ERR" "not found"
expect_exit 3 "$SLM" pull hf.co/acme/tiny-GGUF/missing.gguf
contains "$ERR" "404"
expect_exit 1 "$SLM" pull "hf.co/acme/../etc:Q4"
contains "$ERR" "invalid model name"
expect_exit 3 "$SLM" pull llama-nonexistent
contains "$ERR" "unknown model"
expect_exit 2 "$SLM" pull
"$SLM" pull --help | grep -q "hf.co/ORG/REPO:QUANT" || fail "pull --help"
[ "$(model_count)" = 4 ] || fail "a failed pull changed the store"

# --- Truncated transfer: the partial file is kept and resumed with Range.
new_home
start_fake "$ROOT" --truncate-after 300000
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >/dev/null 2>"$WORK/err"
grep -q "range=bytes=300000- status=206" "$FAKE_LOG" || fail "no Range request: $(cat "$FAKE_LOG")"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "resumed download not stored"

# Across invocations: a pull that gives up leaves the partial file; the next
# pull continues it.
new_home
start_fake "$ROOT" --truncate-after 500000
expect_exit 1 "$SLM" pull --retries 0 hf.co/acme/tiny-GGUF:Q4_K_M
contains "$ERR" "pull again to resume"
[ "$(model_count)" = 0 ] || fail "a truncated download got a name"
partial=$(find "$SLM_HOME/tmp" -name '*.partial')
[ -n "$partial" ] || fail "no partial file kept"
[ "$(stat -c %s "$partial")" = 500000 ] || fail "partial file has $(stat -c %s "$partial") bytes"
start_fake "$ROOT"
err=$("$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M 2>&1 >/dev/null)
contains "$err" "resuming tiny-Q4_K_M.gguf at byte 500000" "resume note"
grep -q "range=bytes=500000- status=206" "$FAKE_LOG" || fail "no Range on the second pull"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "resumed download not stored"

# A server that ignores Range: the download restarts from zero and is right.
new_home
start_fake "$ROOT" --truncate-after 300000 --ignore-range
err=$("$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M 2>&1 >/dev/null)
contains "$err" "ignored the range request" "ignore-range note"
grep -q "range=bytes=300000- status=200" "$FAKE_LOG" || fail "expected a 200 to a Range request"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "restarted download not stored"

# Transient 503s are retried with backoff.
new_home
start_fake "$ROOT" --fail-first 2
err=$("$SLM" pull hf.co/acme/tiny-GGUF:Q8_0 2>&1 >/dev/null)
contains "$err" "HTTP 503; retrying" "retry note"
[ "$(grep -c 'status=503' "$FAKE_LOG")" = 2 ] || fail "expected two 503s"
[ "$(model_count)" = 1 ] || fail "pull after 503s failed"
start_fake "$ROOT" --fail-first 10
expect_exit 1 "$SLM" pull --retries 2 hf.co/acme/tiny-GGUF:Q4_K_M
contains "$ERR" "gave up after 2 retries"

# A corrupted file is rejected: nothing named, no blob, no partial file.
new_home
start_fake "$ROOT" --corrupt
expect_exit 1 "$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M
contains "$ERR" "sha256 mismatch"
[ "$(model_count)" = 0 ] || fail "a corrupted download got a name"
[ "$(blob_count)" = 0 ] || fail "a corrupted download left a blob"
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "a corrupted download left a partial file"
# ... also after a resume (the kept part is retried from zero once, then refused).
start_fake "$ROOT" --corrupt --truncate-after 100000
expect_exit 1 "$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M
contains "$ERR" "sha256 mismatch"
[ "$(model_count)" = 0 ] || fail "a corrupted download got a name"

# Gated repositories: 401 without the token, fine with HF_TOKEN.
new_home
start_fake "$ROOT" --token s3cret
expect_exit 1 "$SLM" pull hf.co/acme/tiny-GGUF:Q8_0
contains "$ERR" "HTTP 401"
contains "$ERR" "HF_TOKEN"
HF_TOKEN=s3cret "$SLM" pull hf.co/acme/tiny-GGUF:Q8_0 >/dev/null

# Redirects to a CDN are followed.
new_home
start_fake "$ROOT" --redirect
"$SLM" pull hf.co/acme/tiny-GGUF:Q8_0 >/dev/null
grep -q "status=302" "$FAKE_LOG" || fail "no redirect seen"
grep -q "GET /_cdn/" "$FAKE_LOG" || fail "redirect not followed"

# A plain URL needs --sha256; a wrong one is refused.
new_home
start_fake "$ROOT"
url=$SLM_HF_ENDPOINT/acme/tiny-GGUF/resolve/main/tiny-Q8_0.gguf
expect_exit 1 "$SLM" pull "$url"
contains "$ERR" "--sha256"
expect_exit 1 "$SLM" pull "$url" --sha256 "$Q4"
contains "$ERR" "sha256 mismatch"
out=$("$SLM" pull "$url" --sha256 "$(sha256_of "$REPO/tiny-Q8_0.gguf")")
contains "$out" "pulled tiny-Q8_0:latest" "URL pull"
"$SLM" pull "$url" --sha256 "$(sha256_of "$REPO/tiny-Q8_0.gguf")" --name mine/url:v1 >/dev/null
"$SLM" list | grep -q "mine/url:v1" || fail "--name not used"

# Mirrors: a folder (with or without listings) and a URL.
new_home
stop_fake
export SLM_HF_ENDPOINT=http://127.0.0.1:9 # nothing listens: the mirror must be used
out=$(SLM_MIRROR=$ROOT "$SLM" pull hf.co/acme/tiny-GGUF:Q8_0)
contains "$out" "pulled" "folder mirror"
contains "$out" "not published" "folder mirror without a listing"
mkdir -p "$ROOT/api/models/acme/tiny-GGUF/tree"
start_fake "$ROOT"
curl -sf "$SLM_HF_ENDPOINT/api/models/acme/tiny-GGUF/tree/main" >"$WORK/listing"
mv "$WORK/listing" "$ROOT/api/models/acme/tiny-GGUF/tree/main"
export SLM_HF_ENDPOINT=http://127.0.0.1:9
out=$("$SLM" pull --mirror "$ROOT" hf.co/acme/tiny-GGUF:Q4_K_M)
contains "$out" "sha256 verified" "folder mirror with a listing"
new_home
out=$("$SLM" pull --mirror "http://127.0.0.1:$PORT" hf.co/acme/tiny-GGUF:Q4_K_M)
contains "$out" "sha256 verified" "URL mirror"
expect_exit 3 "$SLM" pull --mirror "$WORK/no-such-dir" hf.co/acme/tiny-GGUF:Q4_K_M

echo "test_pull: ok"
