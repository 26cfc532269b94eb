// bench/soak.mjs - the traffic of bench/soak.sh (Node's standard library only).
//
//   node soak.mjs URL --duration S --concurrency N --model M --routes LOCAL,ESCALATE
//
// N workers send mixed requests back to back for S seconds, each kind with a
// weight (below): OpenAI and Ollama, streamed and whole, tool calls, JSON
// schemas, embeddings, clients that leave mid-stream, malformed JSON,
// oversized bodies, unknown models, and chat requests on the router's routes.
// Every answer is checked against what that kind must get (a 400 for
// malformed JSON, a 413 for an oversized body, ...). Prints one JSON object:
// requests, by_status, by_kind (status -> count), unexpected (count and the
// first examples), p50_ms, p99_ms, routed (requests on a route whose answer
// the client received, for the ledger check) and routed_statuses.
//
// "Unexpected" is any answer a kind must not get: a 5xx on a local model, a
// 500 anywhere, a 2xx for bad input, a reset. On a route, 502/503/504 are
// the cloud's failures passed on honestly (the fake cloud fails on purpose)
// and are counted, not flagged.
import http from "node:http";

const args = process.argv.slice(2);
const url = new URL(args[0]);
const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
};
const duration = Number(opt("duration", "60")) * 1000;
const concurrency = Number(opt("concurrency", "32"));
const model = opt("model", "stories");
const [routeLocal, routeEscalate] = opt("routes", "soak-local,soak-cloud").split(",");
const maxBody = Number(opt("max-body", String(64 * 1024)));

const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const messages = (text) => [{ role: "user", content: text }];
const prompts = ["Once upon a time", "The little dog", "Lily and Ben went", "One day, a bird",
    "Tom had a red ball", "The sun was hot", "Mom said", "There was a big tree"];
let seq = 0;
const prompt = () => prompts[seq++ % prompts.length];

// kind -> [weight, make request]; a request: {path, body (string), stream, abort, expect(status)}
const ok2xx = (s) => s === 200;
const routeOk = (s) => s === 200 || s === 502 || s === 503 || s === 504;
const kinds = {
    route_local: [14, () => ({ path: "/v1/chat/completions", routed: true, expect: routeOk,
        body: { model: routeLocal, messages: messages(prompt()), stream: seq % 2 === 0 } })],
    route_cloud: [8, () => ({ path: "/v1/chat/completions", routed: true, expect: routeOk,
        body: { model: routeEscalate, messages: messages(prompt()), stream: seq % 2 === 0 } })],
    openai_chat: [12, () => ({ path: "/v1/chat/completions", expect: ok2xx,
        body: { model, messages: messages(prompt()), max_tokens: 16, stream: seq % 2 === 0 } })],
    openai_completion: [6, () => ({ path: "/v1/completions", expect: ok2xx,
        body: { model, prompt: prompt(), max_tokens: 16, temperature: 0.7, stream: seq % 3 === 0 } })],
    ollama_chat: [8, () => ({ path: "/api/chat", expect: ok2xx,
        body: { model, messages: messages(prompt()), options: { num_predict: 16 } } })],
    ollama_generate: [6, () => ({ path: "/api/generate", expect: ok2xx,
        body: { model, prompt: prompt(), stream: false, options: { num_predict: 16 } } })],
    tools: [5, () => ({ path: "/v1/chat/completions", expect: ok2xx,
        body: { model, messages: messages("What is the weather in Paris?"), max_tokens: 48,
            tool_choice: "required", tools: [{ type: "function", function: { name: "weather",
                parameters: { type: "object", properties: { city: { type: "string" } },
                    required: ["city"] } } }] } })],
    json_schema: [5, () => ({ path: "/v1/chat/completions", expect: (s) => s === 200 || s === 422,
        body: { model, messages: messages(prompt()), max_tokens: 48,
            response_format: { type: "json_schema", json_schema: { name: "x", schema: {
                type: "object", properties: { name: { type: "string", maxLength: 8 } },
                required: ["name"] } } } } })],
    embeddings: [6, () => ({ path: "/v1/embeddings", expect: ok2xx,
        body: { model, input: [prompt(), prompt(), prompt(), prompt()] } })],
    leaves_mid_stream: [5, () => ({ path: "/v1/chat/completions", abort: true, expect: () => true,
        body: { model, messages: messages(prompt()), max_tokens: 64, stream: true } })],
    malformed_json: [5, () => ({ path: "/v1/chat/completions", expect: (s) => s === 400,
        raw: '{"model": "' + model + '", "messages": [{"role": "user", "content": "hi"' })],
    oversized: [3, () => ({ path: "/v1/chat/completions", expect: (s) => s === 413,
        raw: JSON.stringify({ model, messages: messages("x".repeat(maxBody + 1024)) }) })],
    unknown_model: [5, () => ({ path: "/v1/chat/completions", expect: (s) => s === 404,
        body: { model: "no-such-model-" + (seq++ % 100), messages: messages("hi") } })],
};
const table = Object.entries(kinds);
const total = table.reduce((a, [, [w]]) => a + w, 0);
function pick() {
    let r = Math.random() * total;
    for (const [name, [w, make]] of table) {
        if ((r -= w) < 0) return [name, make()];
    }
    return [table[0][0], table[0][1][1]()];
}

const stats = { requests: 0, by_status: {}, by_kind: {}, unexpected: 0, examples: [], routed: 0,
    routed_statuses: {}, latencies: [], kind_latencies: {} };
const bump = (o, k) => { o[k] = (o[k] || 0) + 1; };

function send(req) {
    return new Promise((resolve) => {
        const body = req.raw ?? JSON.stringify(req.body);
        const t0 = performance.now();
        let settled = false;
        const done = (status, text) => {
            if (settled) return;
            settled = true;
            resolve({ status, text, ms: performance.now() - t0 });
        };
        const r = http.request({ host: url.hostname, port: url.port, path: req.path, method: "POST",
            agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
            timeout: 300000 }, (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk) => {
                text += chunk;
                if (req.abort && text.length > 0) {
                    r.destroy(); // the client leaves mid-stream
                    done(res.statusCode, "left");
                }
            });
            res.on("end", () => done(res.statusCode, text));
            res.on("error", () => done(req.abort ? res.statusCode : -1, "response error"));
            res.on("aborted", () => done(req.abort ? res.statusCode : -1, "aborted"));
        });
        r.on("timeout", () => { r.destroy(); done(-2, "client timeout"); });
        r.on("error", (e) => done(req.abort && settled ? 0 : -1, String(e.code || e)));
        r.end(body);
    });
}

async function worker(end) {
    while (performance.now() < end) {
        const [kind, req] = pick();
        const { status, text, ms } = await send(req);
        stats.requests++;
        stats.latencies.push(ms);
        (stats.kind_latencies[kind] ??= []).push(ms);
        bump(stats.by_status, status);
        stats.by_kind[kind] ??= {};
        bump(stats.by_kind[kind], status);
        if (req.routed && status > 0) {
            stats.routed++;
            bump(stats.routed_statuses, status);
        }
        if (!req.expect(status)) {
            stats.unexpected++;
            if (stats.examples.length < 10) {
                stats.examples.push({ kind, status, body: String(text).slice(0, 300) });
            }
        }
    }
}

const end = performance.now() + duration;
await Promise.all(Array.from({ length: concurrency }, () => worker(end)));
agent.destroy();
const q = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]) : 0;
};
stats.p50_ms = q(stats.latencies, 0.5);
stats.p99_ms = q(stats.latencies, 0.99);
stats.kind_ms = Object.fromEntries(Object.entries(stats.kind_latencies).map(([k, v]) =>
    [k, { p50: q(v, 0.5), p99: q(v, 0.99) }]));
delete stats.latencies;
delete stats.kind_latencies;
console.log(JSON.stringify(stats));
