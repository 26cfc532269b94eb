#!/usr/bin/env python3
"""Data preparation and scoring for bench/run_router.sh (stdlib only).

    router_eval.py prepare TRAIN_CSV CATEGORIES_JSON OUTDIR [--limit N]
        banking77's dev split (DESIGN.md: first byte of sha256(text) divisible
        by 10), cut in two halves by the second byte of the same hash:
        calib.jsonl ({"input","answer"}) to choose thresholds on, and the test
        half as requests for `slm route` (test_<route>.jsonl, one per route)
        plus test_gold.jsonl; gold.jsonl (the whole dev split) for the fake
        cloud; labels.txt.
    router_eval.py score OUTDIR
        reads out_all_local.jsonl, out_all_cloud.jsonl, out_small_first.jsonl
        and the fake cloud's log; prints one JSON object: accuracy, share
        escalated and cost of all-local, all-cloud, small-first and the oracle
        router, AUROC and ECE of the local label probability.
    router_eval.py overhead PORT ROUTE MODEL N
        N alternating requests to the router route and to the model directly
        (same prompt, greedy, 8 tokens) over one keep-alive connection each;
        prints p50/p99 latency of both and of the difference.
"""
import csv
import hashlib
import http.client
import json
import os
import sys
import time

ROUTES = ("all_local", "all_cloud", "small_first")


def prepare(train_csv, categories, out, limit):
    labels = json.load(open(categories))
    dev = []
    with open(train_csv, newline="") as f:
        for row in csv.DictReader(f):
            h = hashlib.sha256(row["text"].encode()).digest()
            if h[0] % 10 == 0:
                dev.append((row["text"], row["category"], h[1] % 2))
    calib = [d for d in dev if d[2] == 0]
    test = [d for d in dev if d[2] == 1]
    if limit:
        calib, test = calib[:limit], test[:limit]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("".join(l + "\n" for l in labels))
    with open(os.path.join(out, "gold.jsonl"), "w") as f:
        for t, c, _ in dev:
            f.write(json.dumps({"input": t, "answer": c}) + "\n")
    with open(os.path.join(out, "calib.jsonl"), "w") as f:
        for t, c, _ in calib:
            f.write(json.dumps({"input": t, "answer": c}) + "\n")
    with open(os.path.join(out, "test_gold.jsonl"), "w") as f:
        for i, (t, c, _) in enumerate(test):
            f.write(json.dumps({"id": "t%04d" % i, "input": t, "answer": c}) + "\n")
    for r in ROUTES:
        with open(os.path.join(out, "test_%s.jsonl" % r), "w") as f:
            for i, (t, c, _) in enumerate(test):
                f.write(json.dumps({"id": "t%04d" % i, "model": r,
                                    "messages": [{"role": "user", "content": t}]}) + "\n")
    print("dev %d rows: calib %d, test %d, labels %d" % (len(dev), len(calib), len(test), len(labels)))


def load_out(path):
    res = {}
    for line in open(path):
        o = json.loads(line)
        resp = o.get("response") or {}
        ch = (resp.get("choices") or [{}])[0]
        text = ((ch.get("message") or {}).get("content") or "").strip()
        lp = ((resp.get("slm") or {}).get("checks") or {}).get("label_prob") or {}
        res[o["id"]] = {"text": text, "route": o.get("route"), "conf": lp.get("value")}
    return res


def auroc(conf, ok):
    pos = [c for c, k in zip(conf, ok) if k]
    neg = [c for c, k in zip(conf, ok) if not k]
    if not pos or not neg:
        return float("nan")
    # Mann-Whitney U with mid-ranks for ties.
    allv = sorted((c, i) for i, c in enumerate(conf))
    ranks = [0.0] * len(conf)
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1][0] == allv[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[allv[k][1]] = (i + j) / 2.0 + 1
        i = j + 1
    rp = sum(r for r, k in zip(ranks, ok) if k)
    return (rp - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


def ece(conf, ok, bins=10):
    n = len(conf)
    tot = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if (lo <= c < hi) or (b == bins - 1 and c == 1.0)]
        if idx:
            acc = sum(ok[i] for i in idx) / len(idx)
            mc = sum(conf[i] for i in idx) / len(idx)
            tot += len(idx) / n * abs(acc - mc)
    return tot


def cloud_charges(log):
    """Per input text: the charge of the last 200 answer the fake cloud gave."""
    by_input = {}
    if not os.path.exists(log):  # no request reached the cloud
        return by_input
    for line in open(log):
        o = json.loads(line)
        if o.get("status") == 200:
            by_input.setdefault(o["input"], []).append(o["charge"])
    return by_input


def score(out):
    gold = [json.loads(l) for l in open(os.path.join(out, "test_gold.jsonl"))]
    runs = {r: load_out(os.path.join(out, "out_%s.jsonl" % r)) for r in ROUTES}
    # Charges from the fake cloud's own log, run by run (the log is split by run).
    charges = {r: cloud_charges(os.path.join(out, "cloud_%s.log" % r)) for r in ROUTES}
    n = len(gold)
    res = {"n": n}
    per = {}
    for r in ROUTES:
        ok = [runs[r][g["id"]]["text"] == g["answer"] for g in gold]
        esc = [runs[r][g["id"]]["route"] != "local" for g in gold]
        cost = sum(sum(v) for v in charges[r].values())
        per[r] = ok
        res[r] = {"accuracy": sum(ok) / n, "escalated": sum(esc) / n, "cost": cost,
                  "cloud_calls": sum(len(v) for v in charges[r].values())}
    # The oracle escalates exactly the requests the local model gets wrong;
    # what the cloud answers and charges for them is what it did in all_cloud.
    lok, cok = per["all_local"], per["all_cloud"]
    cc = charges["all_cloud"]
    o_ok = [l or c for l, c in zip(lok, cok)]
    o_cost = sum(cc[g["input"]][0] for g, l in zip(gold, lok) if not l and g["input"] in cc)
    res["oracle"] = {"accuracy": sum(o_ok) / n, "escalated": lok.count(False) / n, "cost": o_cost}
    conf = [runs["all_local"][g["id"]]["conf"] for g in gold]
    if all(c is not None for c in conf):
        res["auroc"] = auroc(conf, lok)
        res["ece"] = ece(conf, lok)
    sf = res["small_first"]
    res["small_first_vs_cloud_accuracy"] = sf["accuracy"] / res["all_cloud"]["accuracy"]
    res["small_first_vs_oracle_cost"] = sf["cost"] / o_cost if o_cost > 0 else float("nan")
    print(json.dumps(res))


def post(conn, body):
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, data[:300]))
    return time.perf_counter() - t0, json.loads(data)


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(-(-p / 100.0 * len(xs) // 1)) - 1))
    return xs[k]


def overhead(port, route, model, n):
    a = http.client.HTTPConnection("127.0.0.1", port)
    b = http.client.HTTPConnection("127.0.0.1", port)
    msgs = [{"role": "user", "content": "Once upon a time"}]
    ra, rb = [], []
    for i in range(n + 10):
        ta, ja = post(a, {"model": route, "messages": msgs, "temperature": 0, "max_tokens": 8})
        tb, jb = post(b, {"model": model, "messages": msgs, "temperature": 0, "max_tokens": 8})
        if i == 0:
            if (ja.get("slm") or {}).get("route") != "local":
                raise SystemExit("the router route did not answer locally: %s" % ja)
            if ja["choices"][0]["message"]["content"] != jb["choices"][0]["message"]["content"]:
                raise SystemExit("router and direct answers differ: %r vs %r" % (ja, jb))
        if i >= 10:  # warm-up
            ra.append(ta * 1e3)
            rb.append(tb * 1e3)
    d = [x - y for x, y in zip(ra, rb)]
    print(json.dumps({"n": n, "router_p50_ms": pct(ra, 50), "router_p99_ms": pct(ra, 99),
                      "direct_p50_ms": pct(rb, 50), "direct_p99_ms": pct(rb, 99),
                      "added_p50_ms": pct(ra, 50) - pct(rb, 50),
                      "added_p99_ms": pct(ra, 99) - pct(rb, 99),
                      "paired_diff_p50_ms": pct(d, 50), "paired_diff_p99_ms": pct(d, 99)}))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "prepare":
        limit = 0
        if "--limit" in sys.argv:
            limit = int(sys.argv[sys.argv.index("--limit") + 1])
        prepare(sys.argv[2], sys.argv[3], sys.argv[4], limit)
    elif cmd == "score":
        score(sys.argv[2])
    elif cmd == "overhead":
        overhead(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
