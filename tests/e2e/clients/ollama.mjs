// The official Ollama JS client (ollama@0.6) against slm serve: list, show,
// chat and generate (whole and streamed), JSON format, tool calls, embed,
// ps, load/unload with keep_alive, copy/create/delete, errors.
import { Ollama } from "ollama";
import { check, env, main, rejects } from "./check.mjs";

const ollama = new Ollama({ host: env.url });
const model = env.model;

await main("ollama", async () => {
    const list = await ollama.list();
    check(list.models.some((m) => m.name === `${model}:latest` && m.details.family === "llama"), "list", list);

    const show = await ollama.show({ model });
    check(show.details.format === "gguf" && show.model_info["llama.context_length"] === 2048, "show", show);

    const options = { temperature: 0, num_predict: 20 };
    const messages = [{ role: "user", content: "Once upon a time" }];
    const whole = await ollama.chat({ model, messages, options });
    check(whole.done && whole.message.role === "assistant" && whole.message.content.length > 0, "chat", whole);
    check(whole.eval_count === 20 && whole.done_reason === "length", "chat stats", whole);
    let streamed = "";
    let last = null;
    for await (const part of await ollama.chat({ model, messages, options, stream: true })) {
        streamed += part.message.content;
        last = part;
    }
    check(streamed === whole.message.content && last.done, "chat stream", { streamed, whole: whole.message.content });

    const g = await ollama.generate({ model, prompt: "Lily had a", options: { temperature: 0, num_predict: 10 } });
    check(g.done && g.response.length > 0, "generate", g);
    let gs = "";
    for await (const part of await ollama.generate({ model, prompt: "Lily had a", options: { temperature: 0, num_predict: 10 }, stream: true })) {
        gs += part.response;
    }
    check(gs === g.response, "generate stream", { gs, g: g.response });

    const j = await ollama.chat({ model, messages: [{ role: "user", content: "Lily" }], format: "json", options: { num_predict: 300, seed: 1 } });
    const obj = JSON.parse(j.message.content);
    check(typeof obj === "object" && !Array.isArray(obj), "format json", j.message.content);

    const schema = { type: "object", properties: { name: { type: "string", maxLength: 12 } }, required: ["name"] };
    const s = await ollama.generate({ model, prompt: "Her name was", format: schema, options: { num_predict: 300, seed: 3 } });
    check(typeof JSON.parse(s.response).name === "string", "format schema", s.response);

    const tools = [{ type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string", maxLength: 20 } }, required: ["city"] } } }];
    // Ollama has no tool_choice; slm accepts it as an extension, which forces a call here.
    const t = await ollama.chat({ model, messages: [{ role: "user", content: "Weather in Paris?" }], tools, tool_choice: "required", options: { seed: 4, num_predict: 200 } });
    const call = t.message.tool_calls?.[0];
    check(call?.function.name === "get_weather" && typeof call.function.arguments.city === "string", "tool call", t.message);

    const e = await ollama.embed({ model, input: ["Lily", "Tom"] });
    check(e.embeddings.length === 2 && e.embeddings[0].length === 64, "embed", e.embeddings.length);
    const legacy = await ollama.embeddings({ model, prompt: "Lily" });
    check(legacy.embedding.length === 64, "embeddings", legacy.embedding.length);

    const ps = await ollama.ps();
    check(ps.models.some((m) => m.name === `${model}:latest`), "ps", ps);
    await ollama.generate({ model, prompt: "", keep_alive: 0 });
    check((await ollama.ps()).models.length === 0, "unloaded with keep_alive 0");

    await ollama.copy({ source: model, destination: "copied" });
    await ollama.create({ model: "pirate", from: model, system: "Talk like a pirate.", parameters: { temperature: 0.1 } });
    check((await ollama.show({ model: "pirate" })).system === "Talk like a pirate.", "create");
    await ollama.delete({ model: "copied" });
    await ollama.delete({ model: "pirate" });
    check((await ollama.list()).models.length === 1, "delete");

    await rejects(ollama.chat({ model: "no-such-model", messages }), "unknown model",
        (err) => err.status_code === 404 && /no-such-model/.test(err.error));
});
