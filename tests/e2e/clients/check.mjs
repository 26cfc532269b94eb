// Shared helpers for the client scripts: assertions that say what failed.
export function check(cond, what, detail) {
    if (!cond) {
        const d = detail === undefined ? "" : `: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
        throw new Error(`${what}${d}`);
    }
}

export async function rejects(promise, what, test) {
    try {
        await promise;
    } catch (e) {
        check(test(e), `${what}: unexpected error`, String(e));
        return e;
    }
    throw new Error(`${what}: no error`);
}

export const env = {
    url: process.env.SLM_URL,
    model: process.env.SLM_MODEL ?? "stories",
    keyUrl: process.env.SLM_KEY_URL,
};
check(env.url, "SLM_URL is not set");

export async function main(name, fn) {
    try {
        await fn();
        console.log(`${name}: ok`);
    } catch (e) {
        console.error(`${name}: FAIL: ${e.stack ?? e}`);
        process.exit(1);
    }
}
