#!/usr/bin/env bash
# The ledger and `slm cost` from outside:
#  1. kill -9 integrity: a writer (tests/tools/ledger_writer.c) appends rows from two
#     threads and prints each committed id; it is killed with -9 mid-run, several
#     times; every id it printed must be in the ledger and PRAGMA integrity_check ok,
#     and the ledger must reopen and keep growing.
#  2. `slm cost` table, --json (checked with jq against totals the writer summed
#     itself), --by, --since/--until, break-even flags, --svg (well-formed XML),
#     and clear errors for a missing ledger, a non-ledger file and bad flags.
# Needs no model.
source "$(dirname "$0")/lib.sh"

W=${SLM_TOOLS:?}/ledger_writer
[ -x "$W" ] || fail "ledger_writer not built ($W)"
command -v jq >/dev/null || skip "jq not installed"

tmp=$SLM_HOME/work
mkdir -p "$tmp"

# ---------------------------------------------------------------- 1. kill -9

db=$SLM_HOME/ledger.db
total_ids=0
for round in 1 2 3; do
    out=$tmp/ids-$round.txt
    "$W" write "$db" --threads 2 >"$out" 2>"$tmp/writer-$round.err" &
    pid=$!
    want=$((100 * round))
    for _ in $(seq 1 600); do
        [ "$(wc -l <"$out")" -ge "$want" ] && break
        kill -0 "$pid" 2>/dev/null || fail "writer exited early: $(cat "$tmp/writer-$round.err")"
        sleep 0.05
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    # A line cut by the kill is not a promise; whole lines are.
    if [ -s "$out" ] && [ "$(tail -c1 "$out" | od -An -c | tr -d ' ')" != '\n' ]; then
        sed -i '$d' "$out"
    fi
    n=$(wc -l <"$out")
    [ "$n" -ge "$want" ] || fail "round $round: the writer committed only $n rows in 30 s"
    total_ids=$((total_ids + n))
    cat "$tmp"/ids-*.txt >"$tmp/all-ids.txt"
    res=$("$W" check "$db" "$tmp/all-ids.txt") || fail "round $round: $res"
    contains "$res" "integrity=ok" "check after kill -9"
    contains "$res" "missing=0" "check after kill -9"
    echo "round $round: killed after $n ids: $res"
done
if command -v sqlite3 >/dev/null; then
    [ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || fail "sqlite3 integrity_check"
fi
# Ids are never reused, so the printed ids are all distinct.
[ "$(sort -u "$tmp/all-ids.txt" | wc -l)" = "$total_ids" ] || fail "an id was printed twice"

# The killed ledger reopens (WAL recovery) and keeps growing.
"$W" write "$db" --rows 10 >"$tmp/after.txt" || fail "writing after kill -9"
[ "$(wc -l <"$tmp/after.txt")" = 10 ] || fail "10 rows after kill -9"
rows=$("$SLM" cost --ledger "$db" --json | jq '.total.requests')
# Rows committed but killed before their id was printed may add a few.
[ "$rows" -ge $((total_ids + 10)) ] || fail "slm cost counts $rows rows, < $total_ids + 10"
# The default ledger is $SLM_HOME/ledger.db.
[ "$("$SLM" cost --json | jq '.total.requests')" = "$rows" ] || fail "default ledger path"

# ---------------------------------------------------------------- 2. slm cost

fdb=$tmp/filled.db
"$W" fill "$fdb" --start 2026-11-01 --days 5 --per-day 40 --seed 7 >"$tmp/expected.json" ||
    fail "fill"
jq -e . "$tmp/expected.json" >/dev/null || fail "expected.json"

table=$("$SLM" cost --ledger "$fdb")
echo "$table"
for s in DAY REQUESTS LOCAL SPEND ALL-CLOUD AVOIDED P50ms P95ms 2026-11-01 2026-11-05 total \
    "period: 2026-11-01 .. 2026-11-05" "break-even: pass --hardware-price"; do
    contains "$table" "$s" "slm cost table"
done
[ "$(echo "$table" | grep -c '^2026-11-')" = 5 ] || fail "5 day rows"

json=$("$SLM" cost --ledger "$fdb" --json)
echo "$json" | jq -e . >/dev/null || fail "slm cost --json is not JSON"
# Totals and every day match what the writer summed row by row (exact counts, money
# to 1e-9: the sums run in another order).
close='def close(a; b): ((a - b) | fabs) < 1e-9;'
echo "$json" | jq -e --slurpfile e "$tmp/expected.json" "$close"'
    . as $r | $e[0] as $x |
    $r.by == "day" and ($r.groups | length) == 5 and
    ([ "requests", "local", "escalated", "local_fallback", "errors" ] |
        all(. as $k | $r.total[$k] == $x.total[$k])) and
    close($r.total.spend; $x.total.spend) and close($r.total.cloud_cost; $x.total.cloud_cost) and
    close($r.total.avoided; $x.total.avoided) and
    ($r.groups | all(. as $g | $x.days[$g.key] as $d |
        $g.requests == $d.requests and $g.local == $d.local and
        close($g.spend; $d.spend) and close($g.cloud_cost; $d.cloud_cost))) and
    close($r.total.share_local; $x.total.local / $x.total.requests) and
    $r.total.p50_ms <= $r.total.p95_ms and $r.breakeven.computed == false
' >/dev/null || fail "slm cost --json does not match the writer's totals: $json"

# --by route / target: the groups partition the rows.
for by in route target; do
    j=$("$SLM" cost --ledger "$fdb" --by "$by" --json)
    echo "$j" | jq -e --arg by "$by" '.by == $by and
        ([.groups[].requests] | add) == .total.requests and (.groups | length) == 2' \
        >/dev/null || fail "--by $by: $j"
done
contains "$("$SLM" cost --ledger "$fdb" --by target)" "cloud/gpt" "--by target table"

# --since / --until select whole UTC days.
j=$("$SLM" cost --ledger "$fdb" --since 2026-11-03 --json)
echo "$j" | jq -e --slurpfile e "$tmp/expected.json" '
    .total.requests == ([$e[0].days["2026-11-03", "2026-11-04", "2026-11-05"].requests] | add)
    and .first_day == "2026-11-03"' >/dev/null || fail "--since: $j"
j=$("$SLM" cost --ledger "$fdb" --since 2026-11-02 --until 2026-11-03 --json)
echo "$j" | jq -e --slurpfile e "$tmp/expected.json" '
    .total.requests == ([$e[0].days["2026-11-02", "2026-11-03"].requests] | add) and
    (.groups | length) == 2' >/dev/null || fail "--since/--until: $j"
contains "$("$SLM" cost --ledger "$fdb" --since 2030-01-01)" "no requests" "empty period"

# Break-even: the JSON's months follow docs/cost.md from the JSON's own inputs.
j=$("$SLM" cost --ledger "$fdb" --hardware-price 1000 --power-watts 30 --kwh-price 0.25 --json)
echo "$j" | jq -e '
    .breakeven as $b | .period_days as $d |
    ($b.avoided_per_day - .total.avoided / $d | fabs) < 1e-9 and
    ($b.energy_per_day - .busy_hours / $d * 30 / 1000 * 0.25 | fabs) < 1e-9 and
    ($b.monthly_savings - ($b.avoided_per_day - $b.energy_per_day) * 30.44 | fabs) < 1e-9 and
    ($b.months - 1000 / $b.monthly_savings | fabs) < 1e-6 and $b.computed and ($b.never | not)
' >/dev/null || fail "break-even: $j"
t=$("$SLM" cost --ledger "$fdb" --hardware-price 1000 --power-watts 30 --kwh-price 0.25)
contains "$t" "months" "break-even line"
t=$("$SLM" cost --ledger "$fdb" --hardware-price 1000 --power-watts 1e6 --kwh-price 10)
contains "$t" "never pays for itself" "break-even when energy eats the savings"

# The chart.
"$SLM" cost --ledger "$fdb" --svg "$tmp/chart.svg" >/dev/null || fail "--svg"
[ -s "$tmp/chart.svg" ] || fail "no chart written"
if command -v xmllint >/dev/null; then
    xmllint --noout "$tmp/chart.svg" || fail "the chart is not well-formed XML"
else
    python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' \
        "$tmp/chart.svg" || fail "the chart is not well-formed XML"
fi
svg=$(cat "$tmp/chart.svg")
contains "$svg" "<svg xmlns=\"http://www.w3.org/2000/svg\"" "chart"
[ "$(grep -c '<polyline' "$tmp/chart.svg")" = 2 ] || fail "two lines in the chart"
all_cloud=$(echo "$json" | jq -r '.total.cloud_cost * 10000 | round / 10000')
contains "$svg" "all-cloud: $(printf '%.4f' "$all_cloud")" "chart legend"

# Errors are clear.
expect_exit 3 "$SLM" cost --ledger "$tmp/none.db"
contains "$ERR" "no ledger there" "missing ledger"
[ ! -e "$tmp/none.db" ] || fail "slm cost created a ledger"
echo "id,route" >"$tmp/not.db"
expect_exit 1 "$SLM" cost --ledger "$tmp/not.db"
contains "$ERR" "not a SQLite database" "non-ledger file"
[ "$(cat "$tmp/not.db")" = "id,route" ] || fail "slm cost modified a non-ledger file"
expect_exit 2 "$SLM" cost --ledger "$fdb" --since 2026-02-30
contains "$ERR" "--since expects a date YYYY-MM-DD" "bad --since"
expect_exit 2 "$SLM" cost --ledger "$fdb" --by week
expect_exit 2 "$SLM" cost --ledger "$fdb" --kwh-price -1
expect_exit 2 "$SLM" cost --ledger "$fdb" --since 2026-11-03 --until 2026-11-02
cp "$fdb" "$tmp/newer.db"
if command -v sqlite3 >/dev/null; then
    sqlite3 "$tmp/newer.db" 'UPDATE schema_version SET version = 42'
    expect_exit 1 "$SLM" cost --ledger "$tmp/newer.db"
    contains "$ERR" "schema version 42 is newer" "newer ledger"
fi
"$SLM" cost --help | grep -q -- "--hardware-price" || fail "--help"
echo "test_cost: ok"
