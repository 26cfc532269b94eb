// LangChain's OpenAI integration (@langchain/openai 0.6) against slm serve:
// invoke, stream, bound tools with a required call, structured output from
// a JSON schema, and embeddings.
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { check, env, main } from "./check.mjs";

const configuration = { baseURL: `${env.url}/v1` };
const base = { model: env.model, apiKey: "unused", configuration, maxRetries: 0 };

await main("langchain", async () => {
    const llm = new ChatOpenAI({ ...base, temperature: 0, maxTokens: 20 });
    const msg = await llm.invoke("Once upon a time");
    check(typeof msg.content === "string" && msg.content.length > 0, "invoke", msg);
    let streamed = "";
    for await (const chunk of await llm.stream("Once upon a time")) {
        streamed += chunk.content;
    }
    check(streamed === msg.content, "stream", { streamed, invoked: msg.content });

    const tool = {
        type: "function",
        function: { name: "set_mood", description: "Record a mood", parameters: { type: "object", properties: { mood: { enum: ["happy", "sad"] } }, required: ["mood"] } },
    };
    const withTools = new ChatOpenAI({ ...base, temperature: 1, maxTokens: 200 }).bindTools([tool], { tool_choice: "required" });
    const t = await withTools.invoke("Lily was");
    check(t.tool_calls?.[0]?.name === "set_mood" && ["happy", "sad"].includes(t.tool_calls[0].args.mood), "tool call", t.tool_calls);

    const schema = { title: "person", type: "object", properties: { name: { type: "string", maxLength: 16 }, happy: { type: "boolean" } }, required: ["name", "happy"], additionalProperties: false };
    const structured = new ChatOpenAI({ ...base, temperature: 1, maxTokens: 200 }).withStructuredOutput(schema, { method: "jsonSchema" });
    const out = await structured.invoke("Tell me about Lily.");
    check(typeof out.name === "string" && typeof out.happy === "boolean", "structured output", out);

    const emb = new OpenAIEmbeddings({ model: env.model, apiKey: "unused", configuration });
    const v = await emb.embedQuery("Lily has a ball.");
    check(v.length === 64, "embedQuery", v.length);
});
