#!/usr/bin/env bash
# The soak of bench/soak.sh for 60 s (issue 14): 32 concurrent connections
# of mixed traffic against `slm serve --router` over a fake cloud that fails,
# rate-limits and hangs. Fails on any unexpected answer (a 5xx from a local
# model, a 500, a reset, a wrong 4xx), on a ledger that misses a routed
# request the client was answered, or on a SIGTERM that takes over 5 s.
# (RSS and fds flatness is judged on runs of 2 minutes or more: bench/soak.sh.)
. "$(dirname "$0")/lib.sh"
need_model
command -v node >/dev/null || skip "node is needed"
command -v jq >/dev/null || skip "jq is needed"
[ -x "${SLM_TOOLS:-}/fake_cloud" ] || skip "fake_cloud not built"
export SLM_BIN=$SLM SLM_TOOLS
"$(dirname "$0")/../../bench/soak.sh" --duration "${SLM_SOAK_S:-60}" --concurrency 32
