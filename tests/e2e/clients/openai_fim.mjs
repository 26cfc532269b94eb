// The official OpenAI SDK's legacy completions with a suffix (fill in the middle) against
// slm serve on a model with FIM tokens: the same text as POST /infill builds for the same
// prefix and suffix at temperature 0, and streamed the same as whole.
import OpenAI from "openai";
import { check, env, main } from "./check.mjs";

const client = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: "unused", maxRetries: 0 });
const prompt = "def add(a, b):\n    return";
const suffix = "\n\nprint(add(1, 2))\n";

await main("openai fim", async () => {
    const req = { model: env.model, prompt, suffix, max_tokens: 12, temperature: 0, repeat_penalty: 1 };
    const a = await client.completions.create(req);
    const text = a.choices[0].text;
    check(a.choices[0].finish_reason === "length", "finish_reason", a.choices[0]);
    check(a.usage.completion_tokens === 12, "usage", a.usage);
    const infill = await (await fetch(`${env.url}/infill`, {
        method: "POST",
        body: JSON.stringify({ model: env.model, input_prefix: prompt, input_suffix: suffix, n_predict: 12,
                               temperature: 0 }),
    })).json();
    check(infill.content === text, "completions.create with suffix = /infill", { text, infill: infill.content });
    let streamed = "";
    for await (const c of await client.completions.create({ ...req, stream: true })) {
        streamed += c.choices[0]?.text ?? "";
    }
    check(streamed === text, "streamed = whole", { streamed, text });
    const plain = await client.completions.create({ ...req, suffix: undefined });
    check(plain.usage.prompt_tokens !== a.usage.prompt_tokens, "a suffix changes the prompt", plain.usage);
});
