/*
 * slm/server.h - `slm serve`: the models of the store behind the HTTP APIs
 * clients already speak, many requests at once.
 *
 *   OpenAI   POST /v1/chat/completions, /v1/completions, /v1/embeddings
 *            GET  /v1/models, /v1/models/{model}
 *   Ollama   POST /api/chat, /api/generate, /api/embed, /api/embeddings,
 *                 /api/show, /api/pull, /api/create, /api/copy
 *            GET  /api/tags, /api/ps, /api/version;  DELETE /api/delete
 *   slm      GET  /metrics (Prometheus text), /health, /
 *
 * docs/api.md is the user's reference (fields, errors, limits);
 * docs/internals/server.md the design.
 *
 * Threading (stated once, here and in docs/internals/server.md): libmicrohttpd
 * runs one thread per connection, capped by max_connections. An HTTP thread
 * parses, authenticates, resolves the model through the store, renders and
 * tokenizes the prompt, then submits it to the model's scheduler through the
 * backend and reads the answer back from the request's channel. HTTP threads
 * never touch a llama_context: the scheduler's thread owns every context.
 *
 * The server does not know how models are loaded or batched: that is the
 * backend's job (struct slm_server_backend). slm_server_backend_pool() is the
 * one `slm serve` uses (the model pool and schedulers of slm/sched.h); tests
 * and the router plug in their own.
 *
 * Library code: never prints, never exits; logs go to SLM_LOG as key=value
 * lines with a request id (prompts and outputs are never logged at INFO).
 */
#ifndef SLM_SERVER_H
#define SLM_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "slm/base.h"
#include "slm/sched.h"

/* The port `slm serve` listens on unless told otherwise (DESIGN.md). */
#define SLM_SERVER_DEFAULT_PORT 11435
/* Limits on by default (docs/security.md): tokens one request may generate,
 * seconds it may run, seconds of grammar-constrained sampling it may use. */
#define SLM_SERVER_DEFAULT_MAX_TOKENS 4096
#define SLM_SERVER_DEFAULT_TIMEOUT 600.0
#define SLM_SERVER_DEFAULT_GRAMMAR_BUDGET 30.0

/*
 * What generates the answers. Every function is called from HTTP threads,
 * concurrently; `user` is passed back unchanged. The signatures and
 * contracts are those of the slm_sched / slm_pool functions with the same
 * names (slm/sched.h). Every pointer must be set.
 */
struct slm_server_backend {
    void *user;
    /* slm_pool_acquire: pins the model at `path` (loading it if needed). */
    int (*acquire)(void *user, const char *path, int64_t keep_alive_ms, struct slm_sched **sched,
                   struct slm_model **model, struct slm_err *err);
    /* slm_pool_release: unpins what acquire returned. */
    void (*release)(void *user, struct slm_sched *sched);
    /* slm_pool_adapter: a LoRA adapter for a pinned model. */
    int (*adapter)(void *user, struct slm_model *model, const char *path, struct slm_adapter **out,
                   struct slm_err *err);
    int (*submit)(void *user, struct slm_sched *sched, const int32_t *prompt, size_t n_prompt,
                  const struct slm_req_params *params, struct slm_request **out,
                  struct slm_err *err);
    int (*read)(void *user, struct slm_request *r, int timeout_ms, struct slm_buf *text,
                struct slm_req_token *toks, size_t cap, size_t *n_toks, bool *done);
    int (*result)(void *user, struct slm_request *r, struct slm_gen_stats *stats,
                  struct slm_err *err);
    const float *(*embedding)(void *user, struct slm_request *r, int32_t *n_embd);
    void (*cancel)(void *user, struct slm_request *r);
    void (*request_free)(void *user, struct slm_request *r);
    /* slm_pool_list: the loaded models, for /api/ps. */
    size_t (*list)(void *user, struct slm_pool_entry *out, size_t cap);
};

/* The backend over a model pool (borrowed: it must outlive the server). */
struct slm_server_backend slm_server_backend_pool(struct slm_pool *pool);

struct slm_router;
struct slm_pull_params;

/* An adapter of `slm serve --lora FILE[:SCALE]`. */
struct slm_server_lora {
    const char *path; /* a GGUF LoRA adapter */
    float scale;      /* what GET /lora-adapters reports as its scale */
};

struct slm_server_params {
    const char *host; /* address to bind; NULL = "127.0.0.1" */
    uint16_t port;    /* 0 = any free port (see slm_server_port) */
    /* Clients must send "Authorization: Bearer <api_key>"; NULL or "" = no
     * authentication. Binding anything but a loopback address needs an
     * api_key or `insecure` (DESIGN.md). */
    const char *api_key;
    bool insecure;
    size_t max_body; /* bytes of one request body; 0 = 8 MiB. Past it: 413 */
    /* Bytes of request bodies held at once, all connections together; 0 =
     * 64 MiB (at least max_body). Past it: 503 with Retry-After. */
    size_t max_body_total;
    /* Open connections (each has an HTTP thread), all clients together and
     * from one client address; 0 = 1024 and 256. Past either: a 503 with
     * Retry-After and the connection closed. */
    uint32_t max_connections;
    uint32_t max_client_connections;
    /* Seconds a client has to send a request's headers (a "slowloris" holds
     * its thread no longer); 0 = 30. Past it: 408 and the connection closed. */
    double header_timeout;
    /* Generated tokens one request may ask for; 0 = no cap beyond the
     * context. Asking for more is a 400; asking for nothing gets this cap.
     * slm_server_params_default() sets SLM_SERVER_DEFAULT_MAX_TOKENS. */
    int32_t max_tokens;
    /* Tokens one sequence holds (prompt + answer), as the scheduler was
     * configured (its n_ctx / n_parallel): prompts longer than that are a 400
     * before they reach the scheduler, embedding inputs are cut to it when
     * asked, /api/show reports it. 0 = the scheduler's default: the model's
     * training context, at most 4096. */
    uint32_t n_ctx_seq;
    /* Seconds a generation may run; 0 = no limit. Past it: 504.
     * slm_server_params_default() sets SLM_SERVER_DEFAULT_TIMEOUT. */
    double request_timeout;
    /* Seconds of grammar-constrained sampling (JSON, schema, tools) one
     * request may use; 0 = no budget. Past it: 504. Default
     * SLM_SERVER_DEFAULT_GRAMMAR_BUDGET. */
    double grammar_budget;
    const char *store_home; /* the model store; NULL = $SLM_HOME or ~/.slm */
    /* A Liquid file that renders the tool prompt for every model; NULL = the
     * built-in template of the model's family (templates/tools/). */
    const char *tool_template;
    struct slm_server_backend backend; /* copied */
    /* `slm serve --router`: chat requests whose "model" names one of its
     * routes go through it (slm/router.h); everything else is served as
     * usual. Borrowed (must outlive the server); NULL = no router. */
    struct slm_router *router;
    /* POST /api/pull starts from these (endpoint, mirror, token, backoff;
     * the server sets its own callbacks). Borrowed (must outlive the
     * server); NULL = slm_pull_params_default(). */
    const struct slm_pull_params *pull;
    /* `slm serve --lora`: adapters a request applies by index with llama-server's
     * "lora": [{"id": i, "scale": s}] (to whichever model it names: an adapter made for
     * another model is a 400), listed at GET /lora-adapters. A request without "lora"
     * applies none of them (llama-server, serving one model, applies them all). Copied
     * at open (paths too). */
    const struct slm_server_lora *lora;
    size_t n_lora;
    /* `slm serve --model NAME`: the model of requests that name none (llama-server's
     * clients, e.g. llama.vim's POST /infill). Borrowed; NULL = "model" is required. */
    const char *default_model;
};

/* Defaults as documented above; `backend` is zeroed and must be set. */
struct slm_server_params slm_server_params_default(void);

struct slm_server;

/*
 * Opens the store, loads the tool template, binds host:port and starts
 * serving. Errors: SLM_E_INVALID (a non-loopback host without api_key or
 * insecure, a host that does not resolve, a backend with a NULL function),
 * SLM_E_IO (the address is in use or cannot be bound; the message names
 * it), SLM_E_NOT_FOUND / SLM_E_INVALID from the tool template. If open fails
 * nothing is owed; on success one slm_server_close() is owed.
 */
int slm_server_open(const struct slm_server_params *params, struct slm_server **out,
                    struct slm_err *err);

/* The port actually bound (the one asked for, or the one picked for 0). */
uint16_t slm_server_port(const struct slm_server *s);

/* "http://127.0.0.1:11435" style base URL into `out` (snprintf semantics). */
size_t slm_server_url(const struct slm_server *s, char *out, size_t cap);

/*
 * Stops accepting connections, cancels the requests in flight (streams end,
 * waiting clients get 503), joins every HTTP thread, releases the models and
 * frees. The backend is not freed (it is borrowed). NULL is a no-op.
 */
void slm_server_close(struct slm_server *s);

#endif /* SLM_SERVER_H */
