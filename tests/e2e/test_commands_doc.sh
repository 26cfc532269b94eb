#!/usr/bin/env bash
# docs/commands.md is the command reference README promises: it has a
# `## slm CMD` section for every command `slm --help` lists, and each section
# names every --flag that `slm CMD --help` (and `slm CMD SUB --help` for the
# subcommands its usage lines show, e.g. `slm route calibrate`) prints.
# The other way round, a flag the section lists in a synopsis block or in the
# first column of a flag table must still be printed by that help.
# Commands and subcommands are discovered from the binary, not listed here.
. "$(dirname "$0")/lib.sh"
DOC=${SLM_SRC:?}/docs/commands.md
[ -f "$DOC" ] || fail "$DOC is missing"

flags_of() { # text -> its --long-flags, one a line (--help left out: every command has it)
    grep -o -- '--[a-z][a-z0-9-]*' <<<"$1" | grep -vx -- '--help' | sort -u || true
}

# The text of every `## slm CMD ...` section of the document for CMD ($1);
# `### ` subsections belong to the section above them.
doc_section() {
    awk -v cmd="$1" '
        /^## / { on = ($2 == "slm" && $3 == cmd) }
        on' "$DOC"
}

# The flags a section declares: in its fenced synopsis blocks and in the first
# cell of its tables. Prose may mention other commands' flags; these may not.
doc_declared() {
    awk '
        /^```/ { code = !code; next }
        code { print; next }
        /^\| *`/ { split($0, cell, "|"); print cell[2] }' <<<"$1"
}

top=$("$SLM" --help) || fail "slm --help exited $?"
commands=$(awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }' \
    <<<"$top")
[ "$(wc -w <<<"$commands")" -ge 10 ] || fail "could not read the commands from slm --help: $top"

problems=()
for cmd in $commands; do
    help=$("$SLM" "$cmd" --help 2>&1) || fail "slm $cmd --help exited $?: $help"
    # Subcommands: lowercase words right after `slm CMD` in the help's usage lines.
    subs=$(grep -oE "slm $cmd [a-z][a-z0-9-]*( |$)" <<<"$help" | awk '{ print $3 }' | sort -u || true)
    for sub in $subs; do
        more=$("$SLM" "$cmd" "$sub" --help 2>&1) || fail "slm $cmd $sub --help exited $?: $more"
        help+=$'\n'"$more"
    done
    printed=$(flags_of "$help")

    section=$(doc_section "$cmd")
    if [ -z "$section" ]; then
        problems+=("slm $cmd: no '## slm $cmd' section in docs/commands.md")
        continue
    fi
    documented=$(flags_of "$section")
    for f in $(comm -23 <(echo "$printed") <(echo "$documented")); do
        problems+=("slm $cmd: $f is printed by 'slm $cmd${subs:+ [$(echo $subs | tr ' ' '|')]} --help' but missing from its section of docs/commands.md")
    done
    declared=$(flags_of "$(doc_declared "$section")")
    for f in $(comm -13 <(echo "$printed") <(echo "$declared")); do
        problems+=("slm $cmd: docs/commands.md lists $f, which 'slm $cmd --help' no longer prints")
    done
done

# A section for a command the binary does not have.
for cmd in $(awk '/^## slm / { print $3 }' "$DOC" | sort -u); do
    grep -qx -- "$cmd" <<<"$commands" ||
        problems+=("docs/commands.md has a section for 'slm $cmd', which slm --help does not list")
done

if [ ${#problems[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "ok: docs/commands.md covers $(wc -w <<<"$commands") commands and every flag their --help prints"
