#!/usr/bin/env bash
# `slm label` and `slm distill` against the fake cloud (tests/tools/fake_cloud.c), which logs
# every request it answers and what it charged:
#  1. clear errors: no upstream, bad labels file, unknown upstream in a router.yaml, unset key;
#  2. labels right (the fake's gold answers), the retry with the error shown, label_error;
#  3. output order = input order at concurrency 8 with jittered latency;
#  4. a re-run makes zero calls (the fake's log does not grow), same output;
#  5. the cost cap under faults (500/429/timeouts/malformed 200s that are billed): the sum of
#     what the fake charged never exceeds --max-cost; exit 3; rows done reported and written;
#  6. kill -9 mid-run, then a re-run: no answered call is paid twice (only calls in flight at
#     the kill, at most the concurrency, can be: their answers never arrived);
#  7. a router.yaml upstream with its key from api_key_env; votes;
#  8. distill: prompt/completion rows, --n, --check, --messages, read back by `slm data check`;
#  9. distill --docs; `slm data check --valid` finds a chunk shared with the validation set.
# `slm data check` reads what label writes: null labels are errors (--fix drops them), low
# agreement of --votes a warning.
# Needs no model.
source "$(dirname "$0")/lib.sh"

FAKE=${SLM_TOOLS:?}/fake_cloud
[ -x "$FAKE" ] || fail "fake_cloud not built ($FAKE)"
command -v jq >/dev/null || skip "jq not installed"

t=$SLM_HOME/work
mkdir -p "$t"
cd "$t" || exit 1
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$SLM_HOME"
}
trap cleanup EXIT

# 60 rows, 4 labels; rows 50..59 are not in the gold file ("I don't know." -> rejected).
labels='["card_lost","refund","balance","transfer"]'
echo "$labels" >labels.json
{
    echo "id,text"
    for i in $(seq 0 59); do echo "$i,\"message $i, about my account\""; done
} >rows.csv
for i in $(seq 0 49); do
    jq -cn --arg t "message $i, about my account" --argjson l "$labels" --argjson i "$i" \
        '{input: $t, answer: $l[$i % 4]}'
done >gold.jsonl

start_fake() { # name args...
    local name=$1
    shift
    fake_cloud_start "$t/$name" --gold gold.jsonl --price-in 1000 --price-out 2000 \
        --log "$t/$name.log" "$@"
    pids+=("$FAKE_PID")
    URL=http://127.0.0.1:$FAKE_PORT/v1
}
charged() { jq -s 'map(.charge) | add // 0' "$1"; }
data_check() { # exit code, args...: `slm data check` with its stdout and stderr in $OUT
    local want=$1 got=0
    shift
    OUT=$("$SLM" data check "$@" 2>&1) || got=$?
    [ "$got" = "$want" ] || fail "expected exit $want, got $got from data check $* ($OUT)"
}
ok_calls() { jq -s 'map(select(.status == 200)) | length' "$1"; }

# ---------------------------------------------------------------- 1. errors
expect_exit 1 "$SLM" label rows.csv -o out.jsonl --labels labels.json
contains "$ERR" "name an upstream: --router F --upstream NAME, or --base-url URL --model M"
echo '["a", "a"]' >dup.json
expect_exit 1 "$SLM" label rows.csv -o out.jsonl --labels dup.json --base-url http://127.0.0.1:9/v1 \
    --model m
contains "$ERR" "dup.json: [1]: duplicate label 'a'"
echo '["a", 3]' >bad.json
expect_exit 1 "$SLM" label rows.csv -o out.jsonl --labels bad.json --base-url http://127.0.0.1:9/v1 \
    --model m
contains "$ERR" "bad.json: [1]: expected a string label"
expect_exit 2 "$SLM" label rows.csv -o out.jsonl --base-url http://127.0.0.1:9/v1 --model m
contains "$ERR" "--labels FILE or --json-schema FILE"
expect_exit 1 "$SLM" label rows.csv -o out.jsonl --labels labels.json \
    --base-url http://127.0.0.1:9/v1 --model m --api-key-env SLM_TEST_NO_SUCH_KEY
contains "$ERR" "SLM_TEST_NO_SUCH_KEY"
expect_exit 1 "$SLM" label missing.csv -o out.jsonl --labels labels.json \
    --base-url http://127.0.0.1:9/v1 --model m
contains "$ERR" "missing.csv"
[ ! -e out.jsonl ] || fail "an error run wrote output"

# ---------------------------------------------------------------- 2. labels, retry
start_fake a --latency-ms 20:40 --seed 3
"$SLM" label rows.csv -o a.jsonl --labels labels.json --base-url "$URL" --model m \
    --price-in 1000 --price-out 2000 --concurrency 8 --cache a.db >a.sum 2>a.err ||
    fail "label: $(cat a.err)"
cat a.sum
contains "$(cat a.sum)" "rows 60, labelled 50, rejected 10, calls 70, from cache 0"
[ "$(wc -l <a.jsonl)" = 60 ] || fail "60 output rows"
# Every labelled row has its gold label; the input fields are kept.
jq -c 'select(.label != null)' a.jsonl | while read -r row; do
    text=$(jq -r .text <<<"$row")
    want=$(jq -r --arg t "$text" 'select(.input == $t) | .answer' gold.jsonl)
    [ "$(jq -r .label <<<"$row")" = "$want" ] || fail "wrong label: $row (want $want)"
done
[ "$(jq -s 'map(select(.label != null)) | length' a.jsonl)" = 50 ] || fail "50 labelled"
# The 10 unknown rows: asked twice (the retry shows the error), then null + label_error.
jq -e -s 'map(select(.label == null and (.label_error | test("not one of the allowed labels"))))
    | length == 10' a.jsonl >/dev/null || fail "10 rows with label null and label_error"
grep -q "Your answer was not accepted: 'I don't know' is not one of the allowed labels" a.log ||
    fail "the retry does not show the error to the model"
# `slm data check` reads them as `slm tune` would train on them: the 10 null labels are errors
# that name the line and the label_error; --fix keeps the 50 labelled rows.
echo 'Customer: {{ text }}' >intent.liquid
data_check 1 a.jsonl --template intent.liquid --completion-field label \
    --labels labels.json --fix a-fixed.jsonl
contains "$OUT" "error: 10 no label from the contractor"
contains "$OUT" "line 51: 'I don't know' is not one of the allowed labels"
contains "$OUT" "dropped 10"
[ "$(wc -l <a-fixed.jsonl)" = 50 ] || fail "--fix kept $(wc -l <a-fixed.jsonl) rows, not 50"
jq -e -s 'all(.label != null)' a-fixed.jsonl >/dev/null || fail "--fix kept a null label"
"$SLM" data check a-fixed.jsonl --template intent.liquid --completion-field label \
    --labels labels.json >af.out 2>&1 || fail "the fixed rows still fail: $(cat af.out)"
contains "$(cat af.out)" "0 errors"

# ---------------------------------------------------------------- 3. order at concurrency 8
[ "$(jq -r .id a.jsonl | tr '\n' ' ')" = "$(seq 0 59 | tr '\n' ' ')" ] ||
    fail "output order is not input order"

# ---------------------------------------------------------------- 4. re-run: zero calls
before=$(wc -l <a.log)
"$SLM" label rows.csv -o a2.jsonl --labels labels.json --base-url "$URL" --model m \
    --price-in 1000 --price-out 2000 --concurrency 8 --cache a.db >a2.sum 2>a2.err ||
    fail "re-run: $(cat a2.err)"
contains "$(cat a2.sum)" "calls 0, from cache 70, failed 0, cost \$0.000000"
[ "$(wc -l <a.log)" = "$before" ] || fail "the re-run called the cloud"
cmp -s a.jsonl a2.jsonl || fail "the re-run's output differs"
# --no-cache calls again; a different model is a different cache key.
"$SLM" label rows.csv -o a3.jsonl --labels labels.json --base-url "$URL" --model m \
    --no-cache --cache a.db >a3.sum 2>&1 || fail "--no-cache"
contains "$(cat a3.sum)" "calls 70, from cache 0"

# ---------------------------------------------------------------- 5. the cost cap
# Worst case of one call here: ~270 bytes of messages at 1000/M + 64 tokens at 2000/M, times 3
# attempts, about $1; the real calls cost about 3 cents each, $2.07 in all: these caps stop
# partway. Malformed 200s are billed by the fake and never seen by the client.
start_fake b --mix 500:0.08,429:0.05,timeout:0.02,malformed:0.05 --hang-s 0.2 --retry-after 0 \
    --seed 5
for cap in 2.0 1.5 1.1; do
    rm -f b.db b.jsonl "$t/b.log"
    touch "$t/b.log"
    code=0
    "$SLM" label rows.csv -o b.jsonl --labels labels.json --base-url "$URL" --model m \
        --price-in 1000 --price-out 2000 --concurrency 4 --cache b.db --max-cost "$cap" \
        >b.sum 2>b.err || code=$?
    cat b.err b.sum
    [ "$code" = 3 ] || fail "cap $cap: exit $code, want 3"
    spent=$(charged "$t/b.log")
    jq -en --argjson s "$spent" --argjson c "$cap" '$s <= $c' >/dev/null ||
        fail "cap $cap: the fake charged $spent"
    done_rows=$(sed -n 's/.*stopped at the cost cap: \([0-9]*\) of 60 rows done.*/\1/p' b.err)
    [ -n "$done_rows" ] || fail "cap $cap: no 'N of 60 rows done' in: $(cat b.err)"
    [ "$(wc -l <b.jsonl)" = "$done_rows" ] || fail "cap $cap: $done_rows done but file has $(wc -l <b.jsonl)"
    [ "$done_rows" -lt 60 ] || fail "cap $cap did not stop the run"
    [ "$(jq -r .id b.jsonl | tr '\n' ' ')" = "$(seq 0 $((done_rows - 1)) | tr '\n' ' ')" ] ||
        fail "cap $cap: the rows written are not the first $done_rows"
    reported=$(sed -n 's/.*spent \$\([0-9.]*\) of.*/\1/p' b.err)
    jq -en --argjson r "$reported" --argjson s "$spent" '$r + 1e-6 >= $s' >/dev/null ||
        fail "cap $cap: reported spend $reported < charged $spent"
    echo "cap $cap: $done_rows rows, charged $spent"
done
# Resuming with more money pays only for the rest: every call answered ("ok") once in all.
"$SLM" label rows.csv -o b.jsonl --labels labels.json --base-url "$URL" --model m \
    --price-in 1000 --price-out 2000 --concurrency 4 --cache b.db --max-cost 10 >b.sum 2>b.err ||
    fail "resume: $(cat b.err)"
contains "$(cat b.sum)" "rows 60, labelled 50, rejected 10"
[ "$(jq -s 'map(select(.fault == "ok")) | length' "$t/b.log")" = 70 ] ||
    fail "the capped run and its resume were answered $(jq -s 'map(select(.fault == "ok")) | length' "$t/b.log") times, not 70"

# ---------------------------------------------------------------- 6. kill -9, then resume
start_fake c --latency-ms 150
touch "$t/c.log"
"$SLM" label rows.csv -o c.jsonl --labels labels.json --base-url "$URL" --model m \
    --price-in 1000 --price-out 2000 --concurrency 4 --cache c.db >c.sum 2>c.err &
pid=$!
for _ in $(seq 200); do
    [ "$(ok_calls "$t/c.log" 2>/dev/null || echo 0)" -ge 20 ] && break
    sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
sleep 0.4 # let the calls in flight reach the fake's log
at_kill=$(ok_calls "$t/c.log")
{ [ "$at_kill" -ge 20 ] && [ "$at_kill" -lt 70 ]; } || fail "killed after $at_kill calls"
cached=$(sqlite3 c.db 'select count(*) from calls')
[ "$cached" -ge $((at_kill - 4)) ] || fail "$at_kill calls answered, only $cached cached"
"$SLM" label rows.csv -o c.jsonl --labels labels.json --base-url "$URL" --model m \
    --price-in 1000 --price-out 2000 --concurrency 4 --cache c.db >c.sum 2>c.err ||
    fail "re-run after kill -9: $(cat c.err)"
cat c.sum
contains "$(cat c.sum)" "from cache $cached"
# 70 calls are needed; only those in flight at the kill (at most 4) can be paid twice.
total=$(ok_calls "$t/c.log")
[ "$total" -le 74 ] || fail "after kill -9 and re-run the fake answered $total calls (70 needed)"
[ "$total" -ge 70 ] || fail "only $total calls"
echo "kill -9: $at_kill calls before the kill ($cached cached), $total in all"
cmp -s c.jsonl a.jsonl || fail "the resumed output differs from an uninterrupted run"

# Ctrl-C: no new rows, the rows in flight finish, what is done is written, exit 130.
"$SLM" label rows.csv -o i.jsonl --labels labels.json --base-url "$URL" --model m \
    --concurrency 4 --cache i.db >i.sum 2>i.err &
pid=$!
sleep 1
kill -INT "$pid"
code=0
wait "$pid" || code=$?
[ "$code" = 130 ] || fail "Ctrl-C: exit $code ($(cat i.err))"
n_int=$(sed -n 's/.*interrupted: \([0-9]*\) of 60 rows done.*/\1/p' i.err)
{ [ -n "$n_int" ] && [ "$n_int" -gt 0 ] && [ "$n_int" -lt 60 ]; } || fail "Ctrl-C: $(cat i.err)"
[ "$(wc -l <i.jsonl)" = "$n_int" ] || fail "Ctrl-C: $n_int rows done, $(wc -l <i.jsonl) written"

# ---------------------------------------------------------------- 7. router.yaml, votes
cat >router.yaml <<EOF
local:
  small: {model: /nonexistent/model.gguf}
upstreams:
  - {name: cloud, base_url: "http://127.0.0.1:$FAKE_PORT/v1", api_key_env: SLM_TEST_CLOUD_KEY,
     model: fake-model, price_in: 1000, price_out: 2000, max_concurrency: 3}
routes:
  - {name: r, local: small, escalate: [cloud]}
EOF
expect_exit 1 "$SLM" label rows.csv -o r.jsonl --labels labels.json --router router.yaml \
    --upstream nope
contains "$ERR" "no upstream named 'nope' (it has: cloud)"
expect_exit 1 env -u SLM_TEST_CLOUD_KEY "$SLM" label rows.csv -o r.jsonl --labels labels.json \
    --router router.yaml --upstream cloud
contains "$ERR" "SLM_TEST_CLOUD_KEY"
head -6 rows.csv >few.csv
SLM_TEST_CLOUD_KEY=sk-test "$SLM" label few.csv -o r.jsonl --labels labels.json \
    --router router.yaml --upstream cloud --votes 3 >r.sum 2>r.err ||
    fail "router upstream: $(cat r.err)"
[ "$(sqlite3 "$SLM_HOME/cache/calls.db" 'select count(*) from calls')" = 15 ] ||
    fail "the default cache is \$SLM_HOME/cache/calls.db"
contains "$(cat r.sum)" "rows 5, labelled 5, rejected 0, calls 15"
jq -e -s 'all(.agreement == 1)' r.jsonl >/dev/null || fail "agreement 1 for a deterministic fake"
"$SLM" data check r.jsonl --template intent.liquid --completion-field label \
    --min-agreement 1 >rc.out 2>&1 || fail "data check on votes: $(cat rc.out)"
contains "$(cat rc.out)" "0 errors, 0 warnings"
# The fake always agrees with itself; rows as --votes 3 writes them when it does not (the
# field renamed with --field intent): 3/3 and 2/3 pass the default 0.67, 1/3 has no label.
jq -c '{id, text, intent: .label, agreement}' r.jsonl | head -3 >v.jsonl
jq -cn '{id: "3", text: "message 3, about my account", intent: "refund", agreement: (2 / 3)}' \
    >>v.jsonl
jq -cn '{id: "4", text: "message 4, about my account", intent: null,
    intent_error: "no majority: 1 of 3 answers agree", agreement: (1 / 3)}' >>v.jsonl
data_check 1 v.jsonl --template intent.liquid --completion-field intent
contains "$OUT" "error: 1 no label from the contractor"
contains "$OUT" "line 5: no majority: 1 of 3 answers agree"
case $OUT in *"low agreement"*) fail "2 of 3 votes is not low agreement: $OUT" ;; esac
data_check 1 v.jsonl --template intent.liquid --completion-field intent \
    --min-agreement 0.8
contains "$OUT" "warning: 1 low agreement between votes (below 0.80, --min-agreement)"
contains "$OUT" "line 4: agreement 0.67 -> 'refund'"
[ "$(jq -r 'select(.model == "fake-model") | .model' "$t/c.log" | wc -l)" = 15 ] ||
    fail "the router upstream's model was not sent"

# A refused key ends the run at once (every row would fail the same way), key masked.
start_fake e --api-key sk-right-0123456789
SLM_TEST_WRONG_KEY=sk-wrong-0123456789 expect_exit 1 "$SLM" label rows.csv -o e.jsonl \
    --labels labels.json --base-url "$URL" --model m --api-key-env SLM_TEST_WRONG_KEY \
    --concurrency 2 --cache e.db
contains "$ERR" "401"
case $ERR in *sk-wrong-0123456789*) fail "the key leaked into the error: $ERR" ;; esac
[ "$(wc -l <"$t/e.log")" -le 2 ] || fail "a refused key did not stop the run"
[ "$(wc -l <e.jsonl)" = 0 ] || fail "rows written after a refused key"

# ---------------------------------------------------------------- 8. distill
printf '{"question": "message %d, about my account"}\n' 1 2 3 51 >prompts.jsonl
start_fake d
# The fake answers the last user message, so the template renders exactly the gold's input.
echo '{{ question }}' >q.liquid
"$SLM" distill prompts.jsonl -o d.jsonl --template q.liquid --base-url "$URL" --model m \
    --n 2 --check 'regex:^[a-z_]+$' --cache d.db >d.sum 2>d.err || fail "distill: $(cat d.err)"
cat d.sum
contains "$(cat d.sum)" "prompts 4, answers kept 6, dropped 2, calls 8, from cache 0"
jq -e -s 'length == 6 and all(has("prompt") and has("completion"))' d.jsonl >/dev/null ||
    fail "distill rows"
[ "$(jq -r .prompt d.jsonl | head -1)" = "message 1, about my account" ] || fail "first prompt"
"$SLM" data check d.jsonl >dc.out 2>&1 || fail "slm data check on distilled rows: $(cat dc.out)"
cat dc.out
"$SLM" distill prompts.jsonl -o m.jsonl --template q.liquid --base-url "$URL" --model m \
    --messages --system "Be brief." --cache d.db >m.sum 2>m.err || fail "distill --messages"
jq -e -s 'length == 4 and (.[0].messages | length == 3 and .[0].role == "system" and
    .[2].role == "assistant")' m.jsonl >/dev/null || fail "messages rows: $(head -1 m.jsonl)"

# ---------------------------------------------------------------- 9. distill --docs
mkdir -p docs/sub
printf '# Guide\n\nIntro paragraph.\n\n## Install\n\nRun make.\n\n```\n# not a heading\n```\n' \
    >docs/guide.md
printf 'plain notes\n' >docs/sub/notes.txt
printf 'ignored\n' >docs/image.png
start_fake f
"$SLM" distill --docs docs -o f.jsonl --base-url "$URL" --model m --pairs 2 --cache f.db \
    >f.sum 2>f.err || fail "distill --docs: $(cat f.err)"
contains "$(cat f.err)" "3 chunks from docs"
contains "$(cat f.sum)" "chunks 3, pairs kept 0"
# The fake answers what its gold says: teach it three pairs for each chunk's rendered prompt
# (two are kept: --pairs 2).
jq -c '{input: .input, answer: ({pairs: [{question: ("Q1 " + (.n | tostring)), answer: "A1"},
    {question: "Q2", answer: "A2"}, {question: "Q3", answer: "A3"}]} | tojson)}' "$t/f.log" \
    >docs-gold.jsonl
fake_cloud_start "$t/g" --gold docs-gold.jsonl --log "$t/g.log"
pids+=("$FAKE_PID")
"$SLM" distill --docs docs -o g.jsonl --base-url "http://127.0.0.1:$FAKE_PORT/v1" --model m \
    --pairs 2 --no-cache >g.sum 2>g.err || fail "distill --docs: $(cat g.err)"
contains "$(cat g.sum)" "chunks 3, pairs kept 6"
jq -e -s 'length == 6 and all(has("prompt") and has("completion") and has("source") and
    has("chunk") and has("heading"))' g.jsonl >/dev/null || fail "docs rows: $(head -2 g.jsonl)"
[ "$(jq -r '[.source, .chunk, .heading] | @tsv' g.jsonl | sort -u | tr '\t\n' '|;')" = \
    "guide.md|0|Guide;guide.md|1|Guide > Install;sub/notes.txt|0|;" ] ||
    fail "sources: $(jq -c '[.source, .chunk, .heading]' g.jsonl)"
grep -q 'not a heading' "$t/g.log" || fail "a fenced # line was taken for a heading"
"$SLM" data check g.jsonl >gc.out 2>&1 || fail "slm data check on --docs rows: $(cat gc.out)"
# A validation row cut from the chunk of training rows leaks its answer even when the questions
# differ: an error, dropped by --fix; the shared file a warning.
jq -c 'select(.source == "guide.md" and .chunk == 1 and (.prompt | startswith("Q1")))' g.jsonl \
    >g-valid.jsonl
jq -c 'select((.source == "guide.md" and .chunk == 1 and (.prompt | startswith("Q1"))) | not)' \
    g.jsonl >g-train.jsonl
[ "$(wc -l <g-valid.jsonl) $(wc -l <g-train.jsonl)" = "1 5" ] || fail "split: $(cat g-valid.jsonl)"
data_check 1 g-train.jsonl --valid g-valid.jsonl --fix g-fixed.jsonl
contains "$OUT" "error: 1 same document chunk as the validation set"
leak=$(jq -c '[.source, .chunk]' g-train.jsonl | grep -n '^\["guide.md",1\]$' | cut -d: -f1)
contains "$OUT" "line $leak: guide.md chunk 1 is line 1 of the validation set"
contains "$OUT" "warning: 1 source file also in the validation set"
contains "$OUT" "guide.md: 3 rows from line"
case $OUT in *"line $leak is line"*) fail "the questions differ, the inputs do not overlap: $OUT" ;; esac
# 5 rows - the leak - a repeated "Q2" (the fake asks it of every chunk) = 3.
[ "$(wc -l <g-fixed.jsonl)" = 3 ] || fail "--fix kept $(wc -l <g-fixed.jsonl) rows, not 3"
jq -e -s 'all((.source == "guide.md" and .chunk == 1) | not)' g-fixed.jsonl >/dev/null ||
    fail "--fix kept the leaked chunk"
expect_exit 2 "$SLM" distill prompts.jsonl --docs docs -o x.jsonl --base-url "$URL" --model m
expect_exit 1 "$SLM" distill --docs nowhere -o x.jsonl --base-url "$URL" --model m
contains "$ERR" "nowhere: no such folder"
echo "ok"
