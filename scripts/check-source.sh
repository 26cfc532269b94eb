#!/usr/bin/env bash
# Keeps banned C functions out of our sources (STYLE.md: "a grep in CI keeps them out").
set -euo pipefail
cd "$(dirname "$0")/.."
banned='\b(strcpy|strcat|sprintf|vsprintf|strncpy|strtok|atoi|atol|atof|sscanf|gets)[[:space:]]*\('
if hits=$(grep -rnE "$banned" --include='*.c' --include='*.h' src include tests bench 2>/dev/null \
        | grep -v 'check-source: allow'); then
    echo "banned functions used (see STYLE.md):" >&2
    echo "$hits" >&2
    exit 1
fi
echo "source checks: ok"
