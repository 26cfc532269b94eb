/*
 * server/request.h - request bodies parsed and checked: generation and
 * embedding requests (struct srv_gen_req), the tools array, /api/create
 * bodies, durations. Untrusted input, fuzzed (tests/fuzz/fuzz_request.c).
 * Server-internal.
 */
#ifndef SLM_SERVER_REQUEST_H
#define SLM_SERVER_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/error.h"
#include "slm/turn.h"

/* ---------------------------------------------------------------- requests */

enum srv_kind {
    SRV_KIND_CHAT = 0,   /* messages, chat-formatted */
    SRV_KIND_COMPLETION, /* OpenAI /v1/completions: prompts as given */
    SRV_KIND_GENERATE,   /* Ollama /api/generate: chat-formatted unless raw or no template */
    SRV_KIND_EMBED,      /* embeddings of inputs */
};

#define SRV_KEEP_ALIVE_UNSET (-2)

/* A generation or embedding request, parsed and checked. Strings and JSON
 * marked borrowed point into `body`. */
#define SRV_MAX_LORA_REQ 8     /* "lora" entries one request may list */
#define SRV_MAX_FIM_EXTRA 1024 /* /infill input_extra chunks */

struct srv_gen_req {
    enum srv_api api;
    enum srv_kind kind;
    json_t *body;      /* owned reference */
    const char *model; /* borrowed */
    /* CHAT: [{role, content (string), tool_calls?, tool_call_id?, name?}] with
     * roles system/user/assistant/tool (developer -> system) and content
     * parts joined. Owned. */
    json_t *messages;
    /* COMPLETION / GENERATE / EMBED: array of strings or of token-id arrays.
     * Owned. */
    json_t *inputs;
    const char *system; /* GENERATE: the request's system prompt, borrowed, or NULL */
    bool raw;           /* GENERATE: no template, no chat formatting */
    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */
    json_t *options;    /* Ollama-named options to apply over the model's (owned) */
    bool logprobs;
    int top_logprobs; /* 0..SLM_MAX_TOP_LOGPROBS */
    enum slm_turn_format format;
    const json_t *schema; /* SLM_TURN_FORMAT_SCHEMA: borrowed */
    const json_t
        *tools; /* array of {type: function, function: {name, description, parameters}}, borrowed */
    enum slm_tool_choice tool_choice;
    const char *tool_name; /* SLM_TOOLS_NAMED, borrowed */
    bool parallel_tool_calls;
    int64_t keep_alive_ms;   /* SRV_KEEP_ALIVE_UNSET when not given; -1 = forever */
    int n;                   /* choices per prompt */
    bool echo;               /* COMPLETION: prepend the prompt */
    const json_t *variables; /* template variables (object) or NULL, borrowed */
    bool truncate;           /* EMBED: cut inputs to the context instead of failing */
    bool base64;             /* EMBED: OpenAI encoding_format base64 */
    int dimensions;          /* EMBED: 0 = all */
    bool load_only;          /* Ollama: no prompt/messages = load (or unload) the model */
    bool ignore_eos;         /* extension (as llama-server): never stop at end-of-generation */
    /* llama-server's per-request "lora": [{"id": N, "scale": S}] over the adapters the server
     * was started with (--lora), or {"name": MODEL, "scale": S} for the adapters of a model
     * of the store. Entries of scale 0 are dropped (they change nothing). */
    struct srv_lora_req {
        int32_t id;       /* -1 when by name */
        const char *name; /* borrowed from body, or NULL */
        float scale;
    } lora[SRV_MAX_LORA_REQ];
    size_t n_lora;
    /* Fill in the middle (POST /infill; "suffix" of /v1/completions and /api/generate): the
     * prompt is slm_fim_tokens() of these, not a template's text. Borrowed from body. */
    struct srv_fim {
        bool on;
        struct slm_str prefix, suffix, prompt;
        const json_t *extra;           /* /infill input_extra: [{"filename", "text"}], or NULL */
        int n_indent;                  /* /infill: stop at a line indented less (0 = off) */
        double t_max_predict_ms;       /* /infill: after a newline, stop past this time (0 = off) */
        bool return_tokens;            /* /infill: the reply lists the generated token ids */
        const json_t *response_fields; /* /infill: keep only these paths ("timings/prompt_n") */
        bool infill_sampler;           /* /infill: "infill" among "samplers" */
        bool llama_api;                /* the request came as llama-server's /infill */
    } fim;
};

enum srv_route_id {
    SRV_R_OPENAI_CHAT = 0,
    SRV_R_OPENAI_COMPLETIONS,
    SRV_R_OPENAI_EMBEDDINGS,
    SRV_R_OLLAMA_CHAT,
    SRV_R_OLLAMA_GENERATE,
    SRV_R_OLLAMA_EMBED,
    SRV_R_OLLAMA_EMBEDDINGS,
    SRV_R_LLAMA_INFILL, /* llama-server's POST /infill */
    SRV_R_COUNT_GEN,
};

/* Parses a request body for one of the generation/embedding routes. On
 * success one srv_gen_req_free() is owed; on failure nothing is owed and `e`
 * holds the 4xx to send. Untrusted input: fuzzed by tests/fuzz/fuzz_request.c. */
int srv_parse_request(enum srv_route_id route, const char *body, size_t len,
                      struct srv_gen_req *out, struct srv_error *e);
/* The same for a body already parsed (the server parses each body once:
 * srv_conn_doc); `doc` is borrowed. */
int srv_parse_request_doc(enum srv_route_id route, json_t *doc, struct srv_gen_req *out,
                          struct srv_error *e);
void srv_gen_req_free(struct srv_gen_req *g);

/* Ollama keep_alive: a number of seconds or a Go duration ("5m", "1h30m",
 * "300ms", "-1"). Negative means forever (-1). */
int srv_parse_duration_ms(const json_t *v, int64_t *out_ms);
int srv_parse_duration_text(const char *s, int64_t *out_ms);

/* ---------------------------------------------------------------- tools */

/* Checks `tools` (OpenAI/Ollama shape) and tool_choice; normalizes nothing.
 * Building tool prompts and grammars, and finding calls in the output, is
 * the turn module's (slm/turn.h). */
int srv_tools_check(const json_t *tools, struct srv_error *e);

/* ---------------------------------------------------------------- create */

/* The Modelfile an /api/create body means (FROM a store name, inline SYSTEM,
 * TEMPLATE, PARAMETER, MESSAGE, LICENSE), appended to `b`; every value is
 * checked so the text means only what the fields say, and nothing names a
 * server file. Untrusted input: fuzzed. */
int srv_create_modelfile(const json_t *body, struct slm_buf *b, struct srv_error *e);

#endif /* SLM_SERVER_REQUEST_H */
