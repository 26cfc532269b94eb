/*
 * slm/turn.h - the one path from "a model reference plus a request" to what
 * the scheduler runs. Every caller that turns a request into tokens goes
 * through here: `slm run` and its chat, every server route (OpenAI and
 * Ollama), the router's local targets. Nothing else builds prompts.
 *
 * The steps, in order:
 *
 *   1. slm_turn_open(): the name resolves through the store (a name, an
 *      alias, `base+adapter`, or a local file where the caller allows it);
 *      the model's PARAMETERs, then the caller's (a route's `parameters`),
 *      become the options in force; the TEMPLATE (the caller's, else the
 *      model's) is parsed once; the system prompt in force is chosen; the
 *      adapters are listed (the model's ADAPTERs, then the caller's).
 *   2. slm_turn_options(): a request's own options (Ollama names) over them.
 *   3. slm_turn_grammar(): a GBNF for `json`, a JSON Schema, or a required
 *      tool call.
 *   4. slm_turn_prompt(): the prompt text. For a chat: the system prompt
 *      (the request's, else the model's SYSTEM), the model's MESSAGEs, the
 *      request's messages with tool calls and results replayed in the model
 *      family's words, the last user turn through the TEMPLATE, the tool
 *      prompt as the system message, then the chat template (ChatML for a
 *      model without one). For a prompt: the TEMPLATE renders it, and the
 *      chat template follows where the kind asks for it.
 *   5. slm_tokenize_alloc() (engine) turns the text into tokens.
 *
 * Template variables (DESIGN.md): the request's `variables`, then `input`
 * (the last user message or the prompt), `system` and `messages` (the
 * conversation before the last user turn).
 *
 * A turn is read-only after open and may be shared by threads; the request
 * side borrows everything it is given. Library code: prints nothing.
 */
#ifndef SLM_TURN_H
#define SLM_TURN_H

#include <jansson.h>

#include "slm/base.h"
#include "slm/engine.h"
#include "slm/liquid.h"
#include "slm/options.h"
#include "slm/store.h"

#define SLM_MAX_TOOLS 128
#define SLM_TURN_MAX_ADAPTERS 16
#define SLM_TURN_MAX_MESSAGES 8192             /* conversation, model MESSAGEs included */
#define SLM_TURN_MAX_PROMPT ((size_t)64 << 20) /* bytes of prompt text */

/* ---------------------------------------------------------------- the model side */

struct slm_turn_params {
    /* enum slm_resolve_flags (slm/store.h): SLM_RESOLVE_STORE_ONLY where a
     * network client names the model. */
    unsigned resolve_flags;
    /* A Liquid file that replaces the model's TEMPLATE, or NULL. Borrowed. */
    const char *template_path;
    /* Replaces the model's SYSTEM (a route's `system`, `slm run --system`),
     * or NULL. Borrowed. */
    const char *system;
    /* Options (Ollama names) over the model's PARAMETERs, or NULL: a route's
     * `parameters`. Unknown names are refused. Borrowed. */
    const json_t *parameters;
    /* Adapters after the model's own ADAPTERs. Borrowed. */
    const char *const *adapter_paths;
    const float *adapter_scales;
    size_t n_adapters;
};

struct slm_turn_params slm_turn_params_default(void);

/* A model reference resolved for requests. Fields are read-only. */
struct slm_turn {
    struct slm_manifest *manifest;    /* model path, digest, MESSAGEs, ... */
    char *system;                     /* in force, or NULL */
    struct slm_liquid_template *tmpl; /* TEMPLATE in force, or NULL */
    struct slm_options options;       /* model's PARAMETERs + params.parameters */
    char *adapter_paths[SLM_TURN_MAX_ADAPTERS];
    float adapter_scales[SLM_TURN_MAX_ADAPTERS];
    size_t n_adapters;
};

/*
 * Resolves `ref` through `store` and prepares it (steps 1 above). Errors:
 * SLM_E_NOT_FOUND (with the store's advice), SLM_E_CORRUPT when the model's
 * stored PARAMETERs are refused by the option table or its stored TEMPLATE
 * does not parse, SLM_E_INVALID for the caller's parameters, the Liquid
 * status of the caller's template (the message names the file), SLM_E_TOO_LARGE past
 * SLM_TURN_MAX_ADAPTERS, SLM_E_NOMEM. On success one slm_turn_free() is owed; on failure nothing
 * is.
 */
int slm_turn_open(struct slm_store *store, const char *ref, const struct slm_turn_params *p,
                  struct slm_turn **out, struct slm_err *err);
void slm_turn_free(struct slm_turn *t);

/* The options for one request: the turn's, then `request` (Ollama names;
 * NULL = none). Unknown names are ignored, as Ollama ignores them. `out` is
 * initialised here; one slm_options_free() is owed even on failure. */
int slm_turn_options(const struct slm_turn *t, const json_t *request, struct slm_options *out,
                     struct slm_err *err);

/* ---------------------------------------------------------------- tools */

/* How one model family writes tool calls and reads tool results. */
struct slm_tool_family {
    const char *name;         /* "hermes", "llama3", "mistral" */
    const char *template_src; /* built-in Liquid source (templates/tools/<name>.liquid) */
    const char *call_open;    /* text before a call's JSON ("<tool_call>\n"), "" for bare JSON */
    const char *call_close;   /* text after it */
    const char *args_key;     /* "arguments" or "parameters" */
    const char *result_role;  /* role tool results are sent as */
    const char *result_open;  /* text around a tool result */
    const char *result_close;
    bool array_calls; /* calls are written as one JSON array after call_open */
};

/* The built-in families, terminated by name == NULL. */
const struct slm_tool_family *slm_tool_families(void);
/* Picks the family for a model from its architecture and chat template. */
const struct slm_tool_family *slm_tool_family_for(const char *arch, const char *chat_template);

/* Renders the tool prompt (system text) with variables tools, tool_choice,
 * tool_name, system, family. */
int slm_tools_render(const struct slm_liquid_template *tmpl, const json_t *tools,
                     const char *tool_choice, const char *tool_name, const char *system,
                     const struct slm_tool_family *fam, struct slm_buf *out, struct slm_err *err);
/* GBNF that makes the model write exactly one call (or, with `parallel`, one
 * or more) of the tools (only `only_name` when not NULL), in the family's
 * syntax. */
int slm_tools_grammar(const json_t *tools, const char *only_name, bool parallel,
                      const struct slm_tool_family *fam, struct slm_buf *out, struct slm_err *err);
/*
 * Finds tool calls in model output: <tool_call>{...}</tool_call> blocks, a
 * bare JSON call or array of calls (optionally in a ```json fence),
 * [TOOL_CALLS][...]; "arguments" or "parameters". Only calls of declared
 * tools count; a bare JSON call counts only with `allow_bare` (the whole
 * answer is the call). *calls gets [{name, arguments (object)}] (new
 * reference, maybe empty) and `content` the text outside the calls (trimmed).
 * Untrusted input: fuzzed.
 */
int slm_tools_parse(const char *text, size_t len, const json_t *tools, bool allow_bare,
                    json_t **calls, struct slm_buf *content);
/* Where a tool call may start in `text` for streaming: returns the number of
 * leading bytes that are surely plain content (the rest is held back). */
size_t slm_tools_safe_prefix(const struct slm_tool_family *fam, const char *text, size_t len,
                             bool at_start);
/* The text an assistant tool call is replayed as in a conversation. */
int slm_tools_format_call(const struct slm_tool_family *fam, const char *name,
                          const json_t *arguments, struct slm_buf *out);

/* ---------------------------------------------------------------- the request side */

enum slm_turn_kind {
    /* `messages` -> conversation -> chat template (ChatML when the model has
     * none). */
    SLM_TURN_CHAT = 0,
    /* `prompt` -> TEMPLATE renders the user turn -> chat template when the
     * model has one (Ollama /api/generate, `slm run` on a chat model). */
    SLM_TURN_GENERATE,
    /* `prompt` -> TEMPLATE renders it; no chat template (OpenAI completions,
     * `slm run` on a model without a chat template). */
    SLM_TURN_COMPLETION,
    /* `prompt` as given (Ollama `raw`, `slm run --raw`). */
    SLM_TURN_RAW,
    /* `messages` -> the TEMPLATE renders the whole prompt, as `slm tune`
     * renders training prompts, with no chat template after it; without a
     * TEMPLATE, as SLM_TURN_CHAT (router targets). */
    SLM_TURN_PROMPT,
};

enum slm_turn_format { SLM_TURN_FORMAT_TEXT = 0, SLM_TURN_FORMAT_JSON, SLM_TURN_FORMAT_SCHEMA };

enum slm_tool_choice { SLM_TOOLS_OFF = 0, SLM_TOOLS_AUTO, SLM_TOOLS_REQUIRED, SLM_TOOLS_NAMED };

/* One request, everything borrowed. Zero-initialised = a text chat. */
struct slm_turn_req {
    enum slm_turn_kind kind;
    /* CHAT / PROMPT: [{role, content (string), tool_calls?}], roles system,
     * user, assistant, tool. */
    const json_t *messages;
    /* PROMPT: replaces the text of the last user message (the router scores
     * labels after an empty input too), or NULL. */
    const char *input;
    /* GENERATE / COMPLETION / RAW. */
    struct slm_str prompt;
    /* GENERATE: the request's system prompt over the turn's, or NULL. */
    const char *system;
    /* Template variables (object) or NULL. */
    const json_t *variables;
    /* Output shape: FORMAT_JSON = any JSON object, FORMAT_SCHEMA = `schema`. */
    enum slm_turn_format format;
    const json_t *schema;
    /* Tools (CHAT): OpenAI/Ollama `tools`, checked by the caller. */
    const json_t *tools;
    enum slm_tool_choice tool_choice;
    const char *tool_name; /* SLM_TOOLS_NAMED */
    bool parallel_tool_calls;
    const struct slm_tool_family *family;          /* from the model when NULL */
    const struct slm_liquid_template *tool_prompt; /* the family's built-in when NULL */
};

/* True when the request's tools are in play (a chat with tools, not off). */
bool slm_turn_uses_tools(const struct slm_turn_req *r);

/* The grammar the request asks for: GBNF in *out (owned, NULL when none).
 * SLM_E_INVALID / SLM_E_UNSUPPORTED with the schema's error. */
int slm_turn_grammar(const struct slm_turn_req *r, const struct slm_tool_family *fam, char **out,
                     struct slm_err *err);

/*
 * The prompt text of `r` for `model` (step 4 above), appended to `out`
 * (capped at SLM_TURN_MAX_PROMPT). When `rendered` is not NULL it gets the
 * last user turn as the TEMPLATE rendered it (what a chat keeps in its
 * history). Errors: SLM_E_INVALID (a template error, too many messages,
 * names the step), SLM_E_TOO_LARGE, SLM_E_UNSUPPORTED (a chat template
 * llama.cpp does not know), SLM_E_NOMEM.
 */
int slm_turn_prompt(const struct slm_turn *t, const struct slm_model *model,
                    const struct slm_turn_req *r, struct slm_buf *out, struct slm_buf *rendered,
                    struct slm_err *err);

/*
 * The chat template's rendering of messages[0..n) ({role, content} objects)
 * appended to `out`: the model's template, or `chat_template` when not NULL
 * (Jinja or a builtin name), ChatML for a model without one; with
 * `add_assistant` the text ends where the assistant's reply starts. The one
 * place JSON messages meet slm_chat_format(): prompts here, and `slm tune`'s
 * training and evaluation examples, so both see the same text.
 */
int slm_turn_chat_format(const struct slm_model *model, const char *chat_template,
                         const json_t *messages, size_t n, bool add_assistant, struct slm_buf *out,
                         struct slm_err *err);

#endif /* SLM_TURN_H */
