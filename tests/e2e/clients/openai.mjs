// The official OpenAI SDK (openai@5) against slm serve: models, chat
// (whole, streamed, aborted), legacy completions with logprobs, embeddings
// (the SDK asks for base64), JSON schema output, a required tool call,
// errors as the SDK's typed exceptions, and API keys.
import OpenAI from "openai";
import { check, env, main, rejects } from "./check.mjs";

const client = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: "unused", maxRetries: 0 });
const model = env.model;
const user = (content) => [{ role: "user", content }];

await main("openai", async () => {
    const models = await client.models.list();
    check(models.data.some((m) => m.id === `${model}:latest`), "models.list", models.data);

    const req = { model, messages: user("Once upon a time"), temperature: 0, max_tokens: 24 };
    const a = await client.chat.completions.create(req);
    const text = a.choices[0].message.content;
    check(typeof text === "string" && text.length > 0, "chat content", a);
    check(a.choices[0].finish_reason === "length", "finish_reason", a.choices[0]);
    check(a.usage.completion_tokens === 24, "usage", a.usage);

    let streamed = "";
    let usage = null;
    const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) {
        streamed += chunk.choices[0]?.delta?.content ?? "";
        usage = chunk.usage ?? usage;
    }
    check(streamed === text, "stream equals the whole answer", { streamed, text });
    check(usage && usage.completion_tokens === 24, "stream usage", usage);

    // A client that gives up mid-stream: the SDK aborts, the server carries on.
    const ac = new AbortController();
    const long = await client.chat.completions.create({ model, messages: user("Tell a long story"), max_tokens: 200, stream: true }, { signal: ac.signal });
    let n = 0;
    try {
        for await (const _ of long) {
            if (++n === 3) ac.abort();
        }
    } catch (e) {
        check(e.name === "APIUserAbortError" || e.name === "AbortError", "abort", String(e));
    }
    check(n >= 3 && n < 20, "the stream stopped when aborted", n);

    const c = await client.completions.create({ model, prompt: "Lily had a", max_tokens: 5, logprobs: 2, temperature: 0 });
    check(c.choices[0].logprobs.tokens.length === 5, "completion logprobs", c.choices[0].logprobs);
    check(c.choices[0].logprobs.token_logprobs.every((x) => x <= 0), "log-probabilities", c.choices[0].logprobs);

    const e = await client.embeddings.create({ model, input: ["Lily has a ball.", "Tom runs."] });
    check(e.data.length === 2 && e.data[0].embedding.length === 64, "embeddings", e.data.map((d) => d.embedding.length));
    const norm = Math.sqrt(e.data[0].embedding.reduce((s, x) => s + x * x, 0));
    check(Math.abs(norm - 1) < 1e-3, "unit embedding", norm);

    const schema = { type: "object", properties: { mood: { enum: ["happy", "sad"] }, age: { type: "integer" } }, required: ["mood", "age"], additionalProperties: false };
    const j = await client.chat.completions.create({
        model, messages: user("Lily was"), temperature: 1, seed: 5, max_tokens: 200,
        response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } },
    });
    const v = JSON.parse(j.choices[0].message.content);
    check(["happy", "sad"].includes(v.mood) && Number.isInteger(v.age), "json_schema output", v);

    // Two tools, a call required: whichever the model picks, its arguments
    // validate against that tool's schema (the grammar allows nothing else).
    const tools = [
        { type: "function", function: { name: "set_mood", description: "Record a mood", parameters: { type: "object", properties: { mood: { enum: ["happy", "sad"] } }, required: ["mood"], additionalProperties: false } } },
        { type: "function", function: { name: "add_friend", description: "Add a friend", parameters: { type: "object", properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer", minimum: 1, maximum: 12 } }, required: ["name", "age"], additionalProperties: false } } },
    ];
    const valid = {
        set_mood: (a) => Object.keys(a).length === 1 && ["happy", "sad"].includes(a.mood),
        add_friend: (a) => Object.keys(a).length === 2 && typeof a.name === "string" && a.name.length <= 12 && Number.isInteger(a.age) && a.age >= 1 && a.age <= 12,
    };
    const picked = new Set();
    let t, call;
    for (const seed of [2, 3, 4, 5, 6, 7]) {
        t = await client.chat.completions.create({ model, messages: user("Lily was"), tools, tool_choice: "required", temperature: 1, seed, max_tokens: 200 });
        call = t.choices[0].message.tool_calls?.[0];
        check(t.choices[0].finish_reason === "tool_calls" && call && valid[call.function.name], "tool call", t.choices[0]);
        check(valid[call.function.name](JSON.parse(call.function.arguments)), `arguments valid for ${call.function.name}`, call);
        picked.add(call.function.name);
    }
    console.log(`openai: required tool calls picked ${[...picked].join(" and ")}; every call's arguments validate`);
    // The result goes back in the conversation.
    const r = await client.chat.completions.create({
        model, max_tokens: 8, tools,
        messages: [...user("Lily was"), t.choices[0].message, { role: "tool", tool_call_id: call.id, content: "recorded" }],
    });
    check(typeof r.choices[0].message.content === "string" || r.choices[0].message.tool_calls, "answer after a tool result", r.choices[0]);

    await rejects(client.chat.completions.create({ model: "no-such-model", messages: user("x") }), "unknown model",
        (err) => err instanceof OpenAI.NotFoundError && /no-such-model/.test(err.message));
    await rejects(client.chat.completions.create({ model, messages: user("x"), max_tokens: 1, temperature: -5 }), "bad temperature",
        (err) => err instanceof OpenAI.BadRequestError && err.param === "temperature");

    if (env.keyUrl) {
        const keyed = new OpenAI({ baseURL: `${env.keyUrl}/v1`, apiKey: "wrong", maxRetries: 0 });
        await rejects(keyed.models.list(), "wrong key", (err) => err instanceof OpenAI.AuthenticationError);
        const good = new OpenAI({ baseURL: `${env.keyUrl}/v1`, apiKey: "e2e-key", maxRetries: 0 });
        check((await good.models.list()).data.length > 0, "right key");
    }
});
