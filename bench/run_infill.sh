#!/usr/bin/env bash
# bench/run_infill.sh - fill in the middle as editor plugins use it (issue 17): slm serve's
# POST /infill against llama-server's, same model, same threads, one run, both warm.
#
#   bench/run_infill.sh [--requests N] [--keys N] [--threads T] [--model GGUF]
#
# Model: the SmolLM2-135M-shaped random model of tests/tools/mkmodel (Q8_0; SmolLM2 uses
# StarCoder's vocabulary, which has FIM tokens), or --model.
# 1. Same tokens: N requests (default 20) cut from this repository's own C sources at
#    seeded random points (prefix: up to 60 lines before the cursor, suffix: up to 20 after,
#    prompt: the line up to the cursor, input_extra: a chunk of another file), greedy,
#    n_predict 24, return_tokens: the token ids of both servers compared.
# 2. Keystrokes: a line typed one character at a time (default 24 keys) into one of those
#    files; each key a streamed /infill of n_predict 8 after the previous one ended; TTFT =
#    time to the first event with content. The first key is reported apart (a cold prompt);
#    the rest reuse the cached prefix (p50 / p95).
# Servers: llama-server -m MODEL -np 1 -c 4096 -t T; slm serve --model MODEL --parallel 1
# --ctx-size 4096 --threads T. Output: a Markdown table on stdout, progress on stderr. No
# network beyond 127.0.0.1.
set -euo pipefail

BENCH_NAME=run_infill
# shellcheck source=bench/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

requests=20
keys=24
threads=2
model=

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
    --requests) requests=${2:?}; shift 2 ;;
    --keys) keys=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --model) model=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown option '$1' (--help lists them)" ;;
    esac
done
for v in "$requests" "$keys" "$threads"; do
    [[ $v =~ ^[0-9]+$ ]] || bench_die "numeric options want non-negative integers, got '$v'"
done
command -v python3 >/dev/null || bench_die "python3 is not installed (the client)"

bench_init
bench_slm
bench_peers
pids=()
# shellcheck disable=SC2064 # expand now
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$BENCH_TMP"' EXIT
[ -n "$model" ] || model=$(bench_model smollm2-135m-shape-Q8_0 --preset smollm2-135m --seed 1 --quantize Q8_0)

export SLM_HOME=$BENCH_TMP/home
printf 'FROM %s\n' "$model" >"$BENCH_TMP/Modelfile"
"$SLM_BIN" create coder -f "$BENCH_TMP/Modelfile" >/dev/null

port_a=$((20000 + RANDOM % 10000))
port_b=$((30000 + RANDOM % 10000))
bench_log "slm serve on 127.0.0.1:$port_a, llama-server on 127.0.0.1:$port_b ($threads threads each)"
"$SLM_BIN" serve --port "$port_a" --model coder --parallel 1 --ctx-size 4096 --threads "$threads" \
    >"$BENCH_TMP/slm.log" 2>&1 &
pids+=($!)
bench_wait_health "$port_a" "${pids[-1]}" "$BENCH_TMP/slm.log"
"$PEER_BIN/llama-server" -m "$model" -np 1 -c 4096 -t "$threads" --host 127.0.0.1 --port "$port_b" \
    >"$BENCH_TMP/peer.log" 2>&1 &
pids+=($!)
bench_wait_health "$port_b" "${pids[-1]}" "$BENCH_TMP/peer.log"

python3 - "$port_a" "$port_b" "$requests" "$keys" "$SLM_ROOT" <<'EOF'
import glob, http.client, json, random, statistics, sys, time
pa, pb, n_req, n_keys, root = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
files = sorted(glob.glob(root + "/src/*/*.c"))
rng = random.Random(7)
# A fresh connection per request, for both servers alike: one may close a connection
# after a stream, and a closed keep-alive connection is not what is measured.
def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=600)

def post(port, body):
    c = conn(port)
    c.request("POST", "/infill", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("server on port %d answered %d: %s" % (port, r.status, data[:300]))
    return json.loads(data)

def cut(path, line_no, col):
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    line_no = min(line_no, len(lines) - 1)
    cur = lines[line_no]
    col = min(col, len(cur))
    prefix = "\n".join(lines[max(0, line_no - 60):line_no]) + "\n"
    suffix = cur[col:] + "\n" + "\n".join(lines[line_no + 1:line_no + 21]) + "\n"
    return prefix, cur[:col], suffix

def extra(skip):
    other = files[(files.index(skip) + 1) % len(files)]
    text = "\n".join(open(other, encoding="utf-8", errors="replace").read().split("\n")[:40]) + "\n"
    return [{"filename": other[len(root) + 1:], "text": text}]

# 1. Same tokens, greedy.
same = 0
for i in range(n_req):
    path = rng.choice(files)
    n_lines = len(open(path, encoding="utf-8", errors="replace").read().split("\n"))
    ln = rng.randrange(5, max(6, n_lines - 5))
    prefix, prompt, suffix = cut(path, ln, rng.randrange(0, 40))
    body = {"input_prefix": prefix, "input_suffix": suffix, "prompt": prompt, "input_extra": extra(path),
            "n_predict": 24, "temperature": 0, "return_tokens": True, "cache_prompt": True}
    a, b = post(pa, body), post(pb, body)
    ta = a["tokens"]
    tb = [t for t in b["tokens"]]
    # llama-server lists the end-of-text token it stopped at; slm does not emit it.
    if b.get("stop_type") == "eos" and tb and len(tb) == len(ta) + 1:
        tb = tb[:-1]
    ok = ta == tb and a["tokens_evaluated"] == b["tokens_evaluated"]
    same += ok
    if not ok:
        print("request %d differs: slm %s (%d evaluated) vs llama-server %s (%d)" %
              (i, ta[:8], a["tokens_evaluated"], b["tokens"][:8], b["tokens_evaluated"]), file=sys.stderr)

# 2. Keystrokes: a line typed into a file, one request per key.
def ttft(port, body):
    c = conn(port)
    t0 = time.monotonic()
    c.request("POST", "/infill", json.dumps(dict(body, stream=True)), {"Content-Type": "application/json"})
    r = c.getresponse()
    first = None
    buf = b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        if first is None and b'"content":"' in buf and b'"content":""' not in buf.split(b"\n\n")[0]:
            first = time.monotonic() - t0
    return (first if first is not None else time.monotonic() - t0) * 1000.0

path = files[len(files) // 2]
lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
ln = len(lines) // 2
typed = "    size_t n_items = count_items(list, flags);"[:n_keys]
prefix = "\n".join(lines[max(0, ln - 60):ln]) + "\n"
suffix = "\n" + "\n".join(lines[ln:ln + 20]) + "\n"
res = {}
for port in (pa, pb):
    times = []
    for k in range(1, len(typed) + 1):
        body = {"input_prefix": prefix, "input_suffix": suffix, "prompt": typed[:k],
                "input_extra": extra(path), "n_predict": 8, "temperature": 0, "cache_prompt": True}
        times.append(ttft(port, body))
    res[port] = times

def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]

a, b = res[pa], res[pb]
print()
print("| | slm | llama-server | slm / llama-server |")
print("|---|---:|---:|---:|")
print("| same tokens, greedy (of %d requests) | %d | | |" % (n_req, same))
print("| TTFT, first key (cold prompt), ms | %.1f | %.1f | %.2fx |" % (a[0], b[0], a[0] / b[0]))
print("| TTFT, next %d keys, p50 ms | %.1f | %.1f | %.2fx |" % (len(a) - 1, q(a[1:], .5), q(b[1:], .5), q(a[1:], .5) / q(b[1:], .5)))
print("| TTFT, next %d keys, p95 ms | %.1f | %.1f | %.2fx |" % (len(a) - 1, q(a[1:], .95), q(b[1:], .95), q(a[1:], .95) / q(b[1:], .95)))
EOF
printf '\n%s\n' "$(bench_machine)"
