#!/usr/bin/env bash
# `slm flow check` and `slm flow graph` on the real binary: the example flows load, a broken
# flow is refused with file:line: key, the Mermaid output has the expected nodes and edges,
# Graphviz accepts the DOT output (`dot -Tsvg`, Debian graphviz; that part is skipped with a
# message when dot is missing), and the diagrams in docs/flows.md are what the command prints.
# Needs no model: nothing runs.
source "$(dirname "$0")/lib.sh"
SRC=${SLM_SRC:?}
EX=$SRC/examples/flows
work=$(mktemp -d /tmp/slm-flow-XXXXXX)
trap 'rm -rf "$work"' EXIT

"$SLM" flow --help | grep -q 'slm flow graph' || fail "slm flow --help lacks graph"
"$SLM" flow check --help >/dev/null || fail "slm flow check --help"
expect_exit 2 "$SLM" flow
expect_exit 2 "$SLM" flow run "$EX/triage.yaml"
contains "$ERR" "not built yet"
expect_exit 2 "$SLM" flow graph "$EX/triage.yaml" --format svg
expect_exit 2 "$SLM" flow check "$EX/triage.yaml" --format dot
expect_exit 3 "$SLM" flow check "$work/missing.yaml"

# ---------------------------------------------------------------- check
out=$("$SLM" flow check "$EX/triage.yaml") || fail "triage.yaml: $out"
[ "$out" = "$EX/triage.yaml: ok: 6 nodes, 11 edges, 1 tool, 5 state keys, 0 sub-flows" ] ||
    fail "triage summary: $out"
out=$("$SLM" flow check "$EX/booking.yaml") || fail "booking.yaml: $out"
[ "$out" = "$EX/booking.yaml: ok: 5 nodes, 8 edges, 0 tools, 3 state keys, 0 sub-flows" ] ||
    fail "booking summary: $out"

# A typo in a copy of the example: refused, naming the file, the line and the key.
cp -r "$EX" "$work/ex"
sed 's/^    kind: branch$/    kind: brnch/' "$EX/triage.yaml" >"$work/ex/triage.yaml"
line=$(grep -n 'kind: brnch' "$work/ex/triage.yaml" | cut -d: -f1)
expect_exit 1 "$SLM" flow check "$work/ex/triage.yaml"
contains "$ERR" "triage.yaml:$line: nodes.route_card.kind: unknown kind 'brnch' (did you mean 'branch'?)"
sed 's/next: lookup_card/next: lookup_crd/' "$EX/triage.yaml" >"$work/ex/triage.yaml"
expect_exit 1 "$SLM" flow check "$work/ex/triage.yaml"
contains "$ERR" "nodes.extract_card.next: no node 'lookup_crd' (did you mean 'lookup_card'?)"
sed 's/    max_iterations: 1 .*//' "$EX/booking.yaml" >"$work/ex/booking.yaml"
expect_exit 1 "$SLM" flow check "$work/ex/booking.yaml"
contains "$ERR" "a loop without a bound (check_booking -> ask_cloud -> check_booking)"

# ---------------------------------------------------------------- mermaid
mm=$("$SLM" flow graph "$EX/triage.yaml") || fail "graph: $mm"
[ "$(head -n1 <<<"$mm")" = "flowchart TD" ] || fail "mermaid header: $mm"
for want in '__start__((start))' '__end__(((end)))' 'classify(["classify<br/>(classify)"])' \
    'ask_cloud("ask_cloud<br/>(generate)")' 'route_card{"route_card<br/>(branch)"}' \
    'lookup_card[["lookup_card<br/>(tool)"]]' 'reply[/"reply<br/>(template)"/]' \
    '__start__ --> classify' 'classify -->|"unsure"| ask_cloud' \
    'classify -->|"otherwise"| route_card' 'ask_cloud -.->|"on_error"| reply' \
    'route_card -->|"card issue"| extract_card' 'extract_card --> lookup_card' \
    'reply --> __end__'; do
    grep -qxF "    $want" <<<"$mm" || fail "mermaid lacks '$want':"$'\n'"$mm"
done
# one line per node and per edge: 2 markers + 6 nodes + 1 start edge + 11 edges, and the header
[ "$(wc -l <<<"$mm")" = 21 ] || fail "mermaid has $(wc -l <<<"$mm") lines:"$'\n'"$mm"

# The diagrams in docs/flows.md are the command's output for the examples.
for f in triage booking; do
    doc=$(awk -v f="examples/flows/$f.yaml" '
        $0 ~ "<!-- slm flow graph " f " -->" { want = 1; next }
        want && /^```mermaid/ { on = 1; next }
        on && /^```/ { exit }
        on' "$SRC/docs/flows.md")
    [ -n "$doc" ] || fail "docs/flows.md has no diagram for examples/flows/$f.yaml"
    [ "$doc" = "$("$SLM" flow graph "$EX/$f.yaml")" ] ||
        fail "docs/flows.md's diagram of $f.yaml differs from slm flow graph (regenerate it)"
done

# ---------------------------------------------------------------- dot
"$SLM" flow graph "$EX/booking.yaml" --format dot -o "$work/booking.dot" || fail "graph -o"
grep -q '^digraph "booking-extraction" {$' "$work/booking.dot" || fail "dot header"
grep -qF 'check_booking -> ask_cloud [label="fail", style=dashed];' "$work/booking.dot" ||
    fail "dot fail edge: $(cat "$work/booking.dot")"
if command -v dot >/dev/null; then
    for f in triage booking; do
        "$SLM" flow graph "$EX/$f.yaml" --format dot >"$work/$f.dot"
        dot -Tsvg "$work/$f.dot" -o "$work/$f.svg" 2>"$work/dot.err" ||
            fail "dot -Tsvg refused $f: $(cat "$work/dot.err")"
        [ ! -s "$work/dot.err" ] || fail "dot -Tsvg warned on $f: $(cat "$work/dot.err")"
        grep -q '<svg' "$work/$f.svg" || fail "no svg for $f"
        grep -q '>lookup_card<\|>ask_cloud<' "$work/$f.svg" || fail "svg of $f lacks its nodes"
    done
else
    echo "SKIP-PART: dot -Tsvg on the DOT output (graphviz is not installed; scripts/setup.sh installs it)" >&2
fi
echo "flow: ok"
