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

# A model that cannot fit (docs/memory.md) is pulled with a warning, not refused.
# (its own store: the model counts below stay as they are)
fit_home=$(mktemp -d /tmp/slm-e2e-home-XXXXXX)
err=$(SLM_HOME=$fit_home SLM_MEMORY_AVAILABLE=2097152 "$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_L 2>&1 >/dev/null) ||
    fail "pull refused a model that does not fit: $err"
contains "$err" "warning: tiny-Q4_K_L.gguf will not fit" "pull under a 2 MiB limit"
contains "$err" "2 MiB is available" "pull under a 2 MiB limit"
err=$(SLM_HOME=$fit_home SLM_MEMORY_AVAILABLE=2097152 "$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_L 2>&1 >/dev/null)
case "$err" in *"will not fit"*) fail "warned about a model already present: $err" ;; esac
rm -rf "$fit_home"

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

# --- Two pulls of the same model at once (issue 14, hole 5). The file comes
# slowly (about 1.5 s), so the second pull starts while the first is
# downloading. Both must succeed with a blob that hashes to its name; the
# second waits on the first's lock and then finds the blob in place, so the
# file is downloaded once.
new_home
start_fake "$ROOT" --slow-bytes-per-sec 1500000
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >"$WORK/a.out" 2>"$WORK/a.err" &
pid_a=$!
wait_for_partial 100000 >/dev/null
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >"$WORK/b.out" 2>"$WORK/b.err" &
pid_b=$!
code_a=0 code_b=0
wait "$pid_a" || code_a=$?
wait "$pid_b" || code_b=$?
[ "$code_a" = 0 ] || fail "first of two pulls failed ($code_a): $(cat "$WORK/a.err")"
[ "$code_b" = 0 ] || fail "second of two pulls failed ($code_b): $(cat "$WORK/b.err")"
contains "$(cat "$WORK/b.err")" "waiting for another pull of tiny-Q4_K_M.gguf" "second pull"
contains "$(cat "$WORK/b.out")" "already present" "second pull"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "no blob after two pulls"
blobs_match_names
[ "$(downloads_of tiny-Q4_K_M.gguf)" = 1 ] || fail "two pulls downloaded the file $(downloads_of tiny-Q4_K_M.gguf) times"
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "tmp/ not empty after two pulls: $(ls -A "$SLM_HOME/tmp")"
[ "$(model_count)" = 1 ] || fail "expected one model after two pulls"

# --- kill -9 during a pull: nothing gets a name, the partial file stays, and
# the next pull resumes it with Range and verifies the whole file.
new_home
start_fake "$ROOT" --slow-bytes-per-sec 1000000
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >/dev/null 2>&1 &
pid_a=$!
wait_for_partial 300000 >/dev/null
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
[ "$(model_count)" = 0 ] || fail "a killed pull left a name"
[ "$(blob_count)" = 0 ] || fail "a killed pull left a blob"
partial=$(find "$SLM_HOME/tmp" -name '*.partial')
[ -n "$partial" ] || fail "a killed pull left no partial file"
have=$(stat -c %s "$partial")
start_fake "$ROOT"
err=$("$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M 2>&1 >/dev/null) || fail "pull after kill -9: $err"
contains "$err" "resuming tiny-Q4_K_M.gguf at byte $have" "resume after kill -9"
grep -q "range=bytes=$have- status=206" "$FAKE_LOG" || fail "no Range after kill -9: $(cat "$FAKE_LOG")"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "resumed download not stored after kill -9"
blobs_match_names
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "tmp/ not empty after the resumed pull: $(ls -A "$SLM_HOME/tmp")"

# ... and when the puller is killed while a second one waits for it, the
# lock dies with it: the second takes over the partial file where the first
# left it (one Range request from that byte) and finishes.
new_home
start_fake "$ROOT" --slow-bytes-per-sec 1500000
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >/dev/null 2>&1 &
pid_a=$!
partial=$(wait_for_partial 200000)
"$SLM" pull hf.co/acme/tiny-GGUF:Q4_K_M >"$WORK/b.out" 2>"$WORK/b.err" &
pid_b=$!
sleep 0.3
before=$(stat -c %s "$partial")
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
code_b=0
wait "$pid_b" || code_b=$?
[ "$code_b" = 0 ] || fail "the waiting pull failed after the first was killed: $(cat "$WORK/b.err")"
have=$(sed -n 's/.*resuming tiny-Q4_K_M.gguf at byte \([0-9]*\).*/\1/p' "$WORK/b.err" | head -n 1)
[ -n "$have" ] && [ "$have" -ge "$before" ] ||
    fail "the second pull did not take over at byte >= $before: $(cat "$WORK/b.err")"
grep -q "range=bytes=$have- status=206" "$FAKE_LOG" ||
    fail "the second pull did not resume at byte $have: $(cat "$FAKE_LOG")"
[ -f "$SLM_HOME/blobs/sha256-$Q4" ] || fail "no blob after the takeover"
blobs_match_names
[ -z "$(ls -A "$SLM_HOME/tmp")" ] || fail "tmp/ not empty after the takeover: $(ls -A "$SLM_HOME/tmp")"

# --- Stale files in tmp/ are removed by the next pull: a partial download
# not touched for more than 7 days, other files (imports, locks) not touched
# for more than an hour, unless a live process holds their lock. Younger
# partial files stay (they are resumable), and so do young imports.
new_home
TMPD=$SLM_HOME/tmp
mkdir -p "$TMPD"
old_partial=$(printf 'a%.0s' $(seq 64)).partial
young_partial=$(printf 'b%.0s' $(seq 64)).partial
held_partial=$(printf 'c%.0s' $(seq 64)).partial
held_lock=$(printf 'c%.0s' $(seq 64)).lock
orphan_lock=$(printf 'd%.0s' $(seq 64)).lock
for f in "$old_partial" "$young_partial" "$held_partial" "$held_lock" "$orphan_lock" \
    import-Old123 import-New456 import-Held78 text-1-2; do
    echo junk >"$TMPD/$f"
done
touch -d '8 days ago' "$TMPD/$old_partial" "$TMPD/$held_partial"
touch -d '2 days ago' "$TMPD/$young_partial"
touch -d '2 hours ago' "$TMPD/import-Old123" "$TMPD/import-Held78" "$TMPD/text-1-2" \
    "$TMPD/$orphan_lock" "$TMPD/$held_lock"
# This shell holds two locks, as a live pull and a live import would.
exec {lock_fd1}<"$TMPD/$held_lock"
exec {lock_fd2}<"$TMPD/import-Held78"
flock -n "$lock_fd1" || fail "cannot lock $held_lock"
flock -n "$lock_fd2" || fail "cannot lock import-Held78"
start_fake "$ROOT"
"$SLM" pull -q hf.co/acme/tiny-GGUF:Q8_0 >/dev/null
exec {lock_fd1}<&- {lock_fd2}<&-
left=$(ls "$TMPD" | sort | tr '\n' ' ')
want=$(printf '%s\n' "$young_partial" "$held_partial" "$held_lock" import-New456 import-Held78 | sort | tr '\n' ' ')
[ "$left" = "$want" ] || fail "tmp/ after cleaning: got [$left], want [$want]"

echo "test_pull: ok"
