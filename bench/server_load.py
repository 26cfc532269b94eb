#!/usr/bin/env python3
"""Load generator for bench/run_server.sh (stdlib only).

    server_load.py PORT MODEL --requests R --concurrency C --prompt P --gen G [--seed S]
                   [--shared-prefix N]

Sends R streamed POST /v1/completions requests, at most C at a time, each with
its own P random token ids (ids 1000..30999, the same for every server given
the seed), "max_tokens": G, "ignore_eos": true, "temperature": 0. Time to
first token is measured from the moment a request is sent to its first SSE
event with a choice (servers send one per token or group of tokens); latency
to the end of its stream.

With --shared-prefix N every request's prompt starts with the same N random
ids (new for each seed: a prefix no server has seen) followed by its own P ids:
the classification workload, one few-shot template and many inputs.

Prints one line: wall_s= tok_s= ttft_mean_ms= ttft_p50_ms= ttft_p95_ms= ttft_p99_ms=
lat_p50_ms= lat_p95_ms= lat_p99_ms=
(tok_s = R x G / wall time). Checks first that a whole (non-streamed) answer
has exactly G tokens.
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time


def post(port, body, stream):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, r.read()[:300]))
    return c, r


def one(port, body, out, i):
    t0 = time.monotonic()
    c, r = post(port, body, True)
    ttft = None
    for line in r:
        if ttft is None and line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
            d = json.loads(line[6:])
            if d.get("choices"):
                ttft = time.monotonic() - t0
    c.close()
    out[i] = (ttft if ttft is not None else float("nan"), time.monotonic() - t0)


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("model")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shared-prefix", type=int, default=0)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    prefix = [rnd.randrange(1000, 31000) for _ in range(a.shared_prefix)]
    prompts = [prefix + [rnd.randrange(1000, 31000) for _ in range(a.prompt)]
               for _ in range(a.requests)]

    def body(p, stream):
        return {"model": a.model, "prompt": p, "max_tokens": a.gen, "temperature": 0,
                "ignore_eos": True, "stream": stream}

    # Warm-up and check: a whole answer of exactly G tokens.
    c, r = post(a.port, body([rnd.randrange(1000, 31000) for _ in range(a.prompt)], False), False)
    got = json.loads(r.read())["usage"]["completion_tokens"]
    c.close()
    if got != a.gen:
        raise SystemExit("the server generated %d tokens, not %d" % (got, a.gen))

    out = [None] * a.requests
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.requests:
                return
            one(a.port, body(prompts[i], True), out, i)

    t0 = time.monotonic()
    th = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.monotonic() - t0
    ttft = [o[0] * 1e3 for o in out]
    lat = [o[1] * 1e3 for o in out]
    print("wall_s=%.3f tok_s=%.1f ttft_mean_ms=%.1f ttft_p50_ms=%.1f ttft_p95_ms=%.1f "
          "ttft_p99_ms=%.1f lat_p50_ms=%.1f lat_p95_ms=%.1f lat_p99_ms=%.1f"
          % (wall, a.requests * a.gen / wall, sum(ttft) / len(ttft), pct(ttft, 50), pct(ttft, 95),
             pct(ttft, 99), pct(lat, 50), pct(lat, 95), pct(lat, 99)))


if __name__ == "__main__":
    sys.exit(main())
