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
# The user's store, where test-model.sh looks for stories260k (read before
# SLM_HOME becomes a private store below).
export SLM_TEST_STORE=${SLM_TEST_STORE:-${SLM_HOME:-$HOME/.slm}}
TEST_MODEL_SH=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)/test-model.sh

# need_stories: the real stories260K in $STORIES (../shared, else the store),
# or skip: for tests that check what the model says.
need_stories() {
    local found code=0
    found=$("$TEST_MODEL_SH" stories 2>&1) || code=$?
    [ "$code" = 0 ] || skip "$found"
    STORIES=${found#* }
    MODEL=$STORIES
    MODEL_KIND=stories
}

# need_model: a model that loads and generates in $MODEL: stories260K when
# there is one, else a random-weight model made by mkmodel ($MODEL_KIND is
# `stories` or `random`). For tests of everything but the text itself.
need_model() {
    local found code=0
    found=$("$TEST_MODEL_SH" any 2>&1) || code=$?
    [ "$code" = 77 ] && skip "$found"
    [ "$code" = 0 ] || fail "test-model.sh: $found"
    MODEL=${found#* }
    MODEL_KIND=${found%% *}
}

# if coherent "what"; then ...; fi: true with stories260K; with a random model
# it says which checks it leaves out (scripts/test.sh collects these lines).
coherent() {
    [ "${MODEL_KIND:-}" = stories ] && return 0
    echo "SKIP-PART: $* (needs stories260K's coherent text; the model is random)" >&2
    return 1
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

# html_probe PAGE WORKDIR: opens PAGE (a self-contained HTML report) in headless
# Chromium as a user would, with a probe appended that lists each chart
# ("figure-id:shown|empty:shapes") and table ("table-id:rows"); prints that list.
# Fails when the page logs anything to the console; first proves, on a copy
# that logs an error, that such a message is caught. Returns 77 with a
# SKIP-PART line when chromium is not installed (a failed check exits 1).
html_probe() {
    local page=$1 w=$2 chrome
    chrome=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$chrome" ]; then
        echo "SKIP-PART: chromium is not installed (scripts/setup.sh installs it); HTML not rendered" >&2
        return 77
    fi
    grep -Eq '(src|href)=' "$page" && fail "$page refers to other files"
    grep -q '<script' "$page" && fail "$page has scripts"
    mkdir -p "$w"
    _html_render() {
        timeout 120 "$chrome" --headless --disable-gpu --no-sandbox --user-data-dir="$w/chrome" \
            --enable-logging=stderr --v=0 --dump-dom "file://$1" >"$w/dom.html" 2>"$w/chrome.log" ||
            fail "chromium exited $?: $(tail -5 "$w/chrome.log")"
    }
    { cat "$page"; echo '<script>console.error("probe-error")</script>'; } >"$w/control.html"
    _html_render "$w/control.html"
    grep -q 'CONSOLE.*probe-error' "$w/chrome.log" ||
        fail "the console check sees no error on a page that logs one"
    {
        cat "$page"
        cat <<'PROBE'
<script>
var out = [];
document.querySelectorAll("figure > svg").forEach(function (s) {
  var r = s.getBoundingClientRect();
  out.push(s.parentNode.id + ":" + (r.width > 100 && r.height > 100 ? "shown" : "empty") + ":" +
           s.querySelectorAll("rect, polyline, circle").length);
});
document.querySelectorAll("table").forEach(function (t) { out.push(t.id + ":" + t.rows.length); });
document.body.setAttribute("data-probe", out.join(" "));
</script>
PROBE
    } >"$w/probe.html"
    _html_render "$w/probe.html"
    if grep -E ':CONSOLE[:(]' "$w/chrome.log" | grep -v 'probe-error' | grep -q .; then
        fail "console messages: $(grep CONSOLE "$w/chrome.log")"
    fi
    grep -o 'data-probe="[^"]*"' "$w/dom.html" ||
        fail "the probe did not run: $(head -c 300 "$w/dom.html")"
}
