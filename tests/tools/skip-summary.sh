#!/usr/bin/env bash
# tests/tools/skip-summary.sh BUILD_DIR - what the last ctest run in BUILD_DIR
# left out, and why; scripts/test.sh prints it after each suite, so "100% tests
# passed" never hides a test that did not run.
#
# Reads BUILD_DIR/Testing/Temporary/LastTest.log (every test's output) and the
# TAP files the unit tests write to BUILD_DIR/Testing/tap/ (tests/CMakeLists.txt):
#   whole tests skipped   an e2e test's "SKIP: reason" (exit 77), or a unit
#                         executable whose every case skipped ("Tested: 0")
#   test cases skipped    Criterion cases reported "# SKIP reason" in the TAP
#   checks left out       "SKIP-PART: what" from an e2e test that ran on a
#                         random-weight model (lib.sh `coherent`)
set -euo pipefail
build=${1:?usage: skip-summary.sh BUILD_DIR}
log=$build/Testing/Temporary/LastTest.log
[ -f "$log" ] || {
    echo "skip-summary: no $log (run ctest first)" >&2
    exit 1
}
tapdir=$build/Testing/tap

# One line per finding: KIND<TAB>TEST<TAB>DETAIL. KIND: test, case, part, total.
{
    awk '
        /^[0-9]+\/[0-9]+ Test: / { name = $3; n++ }
        /^SKIP: / { sub(/^SKIP: /, ""); print "test\t" name "\t" $0 }
        /^SKIP-PART: / { sub(/^SKIP-PART: /, ""); print "part\t" name "\t" $0 }
        /Synthesis: Tested: 0 \|/ { print "zero\t" name "\t" }
        END { print "total\t\t" n }' "$log"
    # Only executables this run started: a stale TAP file is not evidence.
    for name in $(awk '/^[0-9]+\/[0-9]+ Test: unit\// { sub(/^unit\//, "", $3); print $3 }' "$log"); do
        tap=$tapdir/$name.tap
        [ -f "$tap" ] || continue
        awk -v t="unit/$name" '
            /^1\.\./ { sub(/^1\.\./, ""); print "cases\t" t "\t" $0 }
            / # SKIP / {
                c = $0; sub(/^ok - /, "", c); sub(/ .*/, "", c)
                r = $0; sub(/.* # SKIP /, "", r)
                print "case\t" t "\t" r "\t" c
            }' "$tap"
    done
} | awk -F'\t' '
    $1 == "total" { total = $3; next }
    $1 == "test" { whole[$2] = $3; order[++no] = $2; next }
    $1 == "zero" { zero[$2] = 1; next }
    $1 == "cases" { ncases[$2] = $3; next }
    $1 == "case" {
        key = $2 SUBSEP $3
        if (!(key in cnt)) { reasons[$2] = reasons[$2] SUBSEP $3; if (!($2 in seen)) { seen[$2] = 1; corder[++nc] = $2 } }
        cnt[key]++; skipped[$2]++; next
    }
    $1 == "part" { parts[$2] = parts[$2] SUBSEP $3; if (!($2 in pseen)) { pseen[$2] = 1; porder[++np] = $2 }; npart++; next }
    END {
        # A unit executable with every case skipped is a whole skipped test.
        for (i = 1; i <= nc; i++) {
            t = corder[i]
            if (t in zero) {
                n = split(substr(reasons[t], 2), rs, SUBSEP)
                whole[t] = rs[1] (n > 1 ? " (and " n - 1 " more reasons)" : "")
                order[++no] = t; delete skipped[t]
            }
        }
        ncase = 0; ntc = 0
        for (t in skipped) { ncase += skipped[t]; ntc++ }
        if (no == 0 && ncase == 0 && npart == 0) {
            printf "skipped: nothing (%d tests ran every case and check)\n", total
            exit
        }
        printf "skipped: %d of %d tests; %d test cases in %d more; %d checks in %d more\n",
            no, total, ncase, ntc, npart + 0, np + 0
        for (i = 1; i <= no; i++) printf "  %-26s %s\n", order[i], whole[order[i]]
        for (i = 1; i <= nc; i++) {
            t = corder[i]
            if (!(t in skipped)) continue
            n = split(substr(reasons[t], 2), rs, SUBSEP)
            for (j = 1; j <= n; j++)
                printf "  %-26s %d of %s cases: %s\n", t, cnt[t SUBSEP rs[j]], ncases[t], rs[j]
        }
        for (i = 1; i <= np; i++) {
            t = porder[i]
            n = split(substr(parts[t], 2), rs, SUBSEP)
            for (j = 1; j <= n; j++) printf "  %-26s check left out: %s\n", t, rs[j]
        }
    }'
