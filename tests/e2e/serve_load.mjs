// Load checks against a running `slm serve` (no npm packages: Node's fetch).
//
//   node serve_load.mjs crosstalk URL MODEL   16 concurrent greedy streams, each
//       compared with its prompt run alone; a stream that diverges must do so
//       at a numerical near-tie (top-2 log-prob gap < 1e-3), never by taking
//       another request's tokens.
//   node serve_load.mjs cancel URL MODEL      with one slot (--parallel 1): a
//       long stream is abandoned by its client; the next request must be
//       served at once, not after the abandoned one would have finished.
//
// Exits 1 with a message on the first failure.

const [mode, url, model] = process.argv.slice(2);

function die(msg) {
    console.error(`serve_load ${mode}: ${msg}`);
    process.exit(1);
}

const PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "Tom had a big red ball.",
    "One day, a bird flew into the garden.",
    "The cat was very hungry.",
    "Sam and his mom went to the park.",
    "There was a small boat on the lake.",
    "Anna found a shiny key under a rock.",
    "The sun was hot and the sky was blue.",
    "Ben wanted to build a tall tower.",
    "A little dog lived in a big house.",
    "Mia liked to paint pictures of flowers.",
    "The old man had a magic hat.",
    "It was raining, so Tim stayed inside.",
    "The frog jumped into the pond.",
    "Lucy had a friend who was a bear.",
    "The car was stuck in the mud.",
];
const N_GEN = 48;

// Top-2 gap at one step of legacy completions logprobs ({text: logprob}).
function gap(top) {
    const v = Object.values(top || {}).sort((a, b) => b - a);
    return v.length >= 2 ? v[0] - v[1] : Infinity;
}

function body(prompt, stream) {
    return JSON.stringify({ model, prompt, max_tokens: N_GEN, temperature: 0, logprobs: 2, stream });
}

async function alone(prompt) {
    const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: body(prompt, false) });
    if (r.status !== 200) die(`alone: HTTP ${r.status}: ${await r.text()}`);
    const j = await r.json();
    const lp = j.choices[0].logprobs;
    return { tokens: lp.tokens, top: lp.top_logprobs, text: j.choices[0].text };
}

async function streamed(prompt) {
    const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: body(prompt, true) });
    if (r.status !== 200) die(`stream: HTTP ${r.status}: ${await r.text()}`);
    const raw = await r.text();
    const out = { tokens: [], top: [], text: "", done: false };
    for (const line of raw.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        if (line === "data: [DONE]") { out.done = true; continue; }
        const c = JSON.parse(line.slice(6));
        for (const ch of c.choices || []) {
            out.text += ch.text || "";
            if (ch.logprobs) {
                out.tokens.push(...ch.logprobs.tokens);
                out.top.push(...ch.logprobs.top_logprobs);
            }
        }
    }
    if (!out.done) die(`a stream ended without data: [DONE]`);
    return out;
}

async function crosstalk() {
    const solo = [];
    for (const p of PROMPTS) solo.push(await alone(p));
    // Every prompt's own answer differs from the others' (else cross-talk could hide).
    if (new Set(solo.map((s) => s.text)).size !== PROMPTS.length) die("two prompts gave the same answer; pick other prompts");
    const many = await Promise.all(PROMPTS.map((p) => streamed(p)));
    let diverged = 0;
    for (let i = 0; i < PROMPTS.length; i++) {
        const a = solo[i], b = many[i];
        if (b.tokens.length !== a.tokens.length && b.text === a.text) die(`prompt ${i}: token counts differ for the same text`);
        const n = Math.min(a.tokens.length, b.tokens.length);
        let step = -1;
        for (let t = 0; t < n; t++) {
            if (a.tokens[t] !== b.tokens[t]) { step = t; break; }
        }
        if (step < 0 && a.tokens.length !== b.tokens.length) step = n;
        if (step < 0) {
            if (a.text !== b.text) die(`prompt ${i}: same tokens, different text`);
            continue;
        }
        diverged++;
        const g = Math.min(gap(a.top[step]), gap(b.top[step]));
        console.log(`prompt ${i}: diverges at step ${step} (alone ${JSON.stringify(a.tokens[step])}, batched ${JSON.stringify(b.tokens[step])}), top-2 gap ${g.toExponential(2)}`);
        if (!(g < 1e-3)) die(`prompt ${i} diverged at step ${step} where the top-2 gap is ${g} (not a near-tie): cross-talk`);
        // Before the divergence the batched stream must follow its own prompt.
        for (let j = 0; j < PROMPTS.length; j++) {
            if (j !== i && b.text.length > 8 && solo[j].text.startsWith(b.text)) die(`prompt ${i} received prompt ${j}'s answer`);
        }
    }
    console.log(`crosstalk: ${PROMPTS.length} concurrent streams, ${PROMPTS.length - diverged} identical to their solo runs, ${diverged} near-tie divergences`);
}

async function cancel() {
    // A stream that would run for a long time (ignore_eos, many tokens)...
    const ctl = new AbortController();
    const long = JSON.stringify({ model, prompt: "Once upon a time", max_tokens: 30000, ignore_eos: true, temperature: 0, stream: true });
    const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: long, signal: ctl.signal });
    if (r.status !== 200) die(`long stream: HTTP ${r.status}`);
    const reader = r.body.getReader();
    let got = 0;
    while (got < 2000) {
        const { value, done } = await reader.read();
        if (done) die("the long stream ended by itself; make it longer");
        got += value.length;
    }
    const t_long = performance.now();
    ctl.abort();
    try { await reader.cancel(); } catch { /* aborted */ }
    // ...is abandoned; the only slot must be free for the next request at once.
    const t0 = performance.now();
    const s = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, prompt: "Tom had", max_tokens: 8, temperature: 0 }) });
    if (s.status !== 200) die(`follow-up: HTTP ${s.status}: ${await s.text()}`);
    await s.json();
    const dt = (performance.now() - t0) / 1000;
    console.log(`cancel: follow-up served ${dt.toFixed(2)} s after the abandoned stream (${((t0 - t_long) / 1000).toFixed(2)} s to abort)`);
    if (dt > 5) die(`the follow-up waited ${dt.toFixed(1)} s: the abandoned stream kept its slot`);
}

if (mode === "crosstalk") await crosstalk();
else if (mode === "cancel") await cancel();
else die("mode: crosstalk or cancel");
