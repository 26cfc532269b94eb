/*
 * server/internal.h - the server's shared core: the server and connection
 * structs, replies, jobs, streams and routes; never included outside
 * src/server/ (and the server's tests and fuzz harness). Concepts with a
 * header of their own: error.h (errors as clients see them), request.h
 * (parsed request bodies), metrics.h, headers.h (header values read before
 * the body).
 *
 * The files, in the order a request meets them:
 *   conns.c          accepting: connection limits (all, per client), header deadlines
 *   server.c         libmicrohttpd daemon, bodies and their budget, auth, routing, logs
 *   parse.c          request bodies (OpenAI and Ollama) -> struct srv_gen_req (request.h)
 *   routed.c         `slm serve --router`: chat requests that name a route
 *   prompt.c         the request as a turn (slm/turn.h builds the prompt),
 *                    tokens, items; the model pinned
 *   job.c            submitting to the backend and reading answers back
 *   openai.c         the /v1 routes: responses and SSE chunks
 *   ollama.c         the /api generation routes: NDJSON lines
 *   ollama_models.c  /api/tags, show, ps, version, copy, delete
 *   ollama_admin.c   /api/pull, create
 *   embed.c          embeddings (OpenAI and Ollama)
 *   stream.c         the content reader behind every streamed response
 *   reply.c          JSON replies and errors in each API's shape
 *   metrics.c        counters and histograms for /metrics (metrics.h)
 *   backend_pool.c   the backend over the engine's model pool
 */
#ifndef SLM_SERVER_INTERNAL_H
#define SLM_SERVER_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "server/error.h"
#include "server/metrics.h"
#include "server/request.h"
#include "slm/liquid.h"
#include "slm/options.h"
#include "slm/server.h"
#include "slm/store.h"
#include "slm/turn.h"

/* ---------------------------------------------------------------- limits */

#define SRV_DEFAULT_MAX_BODY ((size_t)8 << 20)
#define SRV_DEFAULT_MAX_BODY_TOTAL ((size_t)64 << 20)
#define SRV_DEFAULT_MAX_CONNECTIONS 1024u
#define SRV_DEFAULT_MAX_CLIENT_CONNECTIONS 256u
#define SRV_DEFAULT_HEADER_TIMEOUT 30.0
#define SRV_MAX_CHOICES 16 /* n x prompts of one request */
#define SRV_MAX_EMBED_INPUTS 2048
#define SRV_MAX_MESSAGES 4096
/* Inputs of one embedding request in the scheduler's queue at once. */
#define SRV_EMBED_WINDOW 8
#define SLM_MAX_TOOLS 128
#define SRV_MAX_ADAPTERS 16
#define SRV_MAX_TEXT ((size_t)16 << 20) /* generated text kept per choice */
#define SRV_MAX_PROMPT_TEXT ((size_t)64 << 20)
#define SRV_MAX_LOGPROB_RECORDS ((size_t)1 << 17)
#define SRV_POLL_MS 50 /* how often waiting threads look at the client and the clock */

/* ---------------------------------------------------------------- server */

/* Facts about a model file, cached by path (read from the GGUF header). */
struct srv_model_facts {
    struct slm_model_info info;
    char *chat_template; /* owned, "" when none */
};

struct srv_loaded_name {
    char path[1024];
    char name[SLM_NAME_MAX + 80];
    char digest[72];
};

/* One thread watches every routed request in flight (routed.c): started on
 * the first, stopped at close. */
struct srv_watch;
struct srv_watcher {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct srv_watch *head; /* the requests in flight, guarded by mu */
    pthread_t th;
    bool started, stop;
};

struct slm_server {
    struct slm_server_params p;
    char *host;
    char *api_key;
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_bool stopping;
    atomic_uint_fast64_t next_id;
    atomic_int active;        /* requests between arrival and completion */
    atomic_size_t body_bytes; /* request bytes held, against p.max_body_total */
    /* Served on loopback without a key: requests must name a loopback Host
     * and come from no foreign Origin (DNS rebinding, cross-site posts). */
    bool local_only;
    char hostname[256]; /* this machine's name, also a loopback Host */
    struct srv_metrics *metrics;
    struct srv_conns *conns;

    pthread_mutex_t store_lock; /* guards store, facts, names */
    struct slm_store *store;
    struct {
        char path[1024];
        int64_t mtime;
        struct srv_model_facts f;
    } facts[64];
    size_t n_facts, next_fact;
    struct srv_loaded_name names[64]; /* path -> the name it was last asked for (/api/ps) */
    size_t n_names, next_name;

    struct slm_liquid_template *tool_tmpl;      /* --tool-template, or NULL */
    struct slm_liquid_template *family_tmpl[8]; /* built-in, parsed at open */
    struct srv_watcher watcher;
    struct slm_server_lora *lora; /* --lora, owned (paths too) */
    size_t n_lora;
};

/* Per-request state (MHD's con_cls). */
struct srv_conn {
    struct slm_server *srv;
    struct MHD_Connection *conn;
    struct slm_buf body;
    size_t reserved; /* of the server's body_bytes */
    bool too_large;
    bool over_budget; /* the server holds as many body bytes as it may: 503 */
    json_t *doc;      /* the body parsed (srv_conn_doc), or NULL */
    bool doc_done;
    struct srv_error doc_err;
    bool is_stream;
    char id[24];
    const char *route; /* for metrics and logs (static) */
    enum srv_api api;
    int status; /* what was queued */
    double t0;
    char model[128]; /* for the log line */
    int32_t prompt_tokens, gen_tokens;
    char x_route[24];   /* router: x-slm-route ("" = not routed) */
    char x_reason[256]; /* router: x-slm-reason */
};

/* Copies the cached facts of the model at `path` (reading the GGUF header the
 * first time). out->chat_template is a new copy the caller frees. */
int srv_model_facts(struct slm_server *s, const char *path, struct srv_model_facts *out,
                    struct slm_err *err);
void srv_model_facts_free(struct srv_model_facts *f);
/* Remembers that `path` was loaded as `name` (for /api/ps). */
void srv_note_name(struct slm_server *s, const char *path, const char *name, const char *digest);
bool srv_lookup_name(struct slm_server *s, const char *path, struct srv_loaded_name *out);

/* True when the client of `conn` has closed its side (checked without
 * blocking). */
bool srv_client_gone(struct MHD_Connection *conn);

/* conns.c: the accepting thread and the connection limits. Start takes the
 * listening socket (closed by stop, or left to the caller when start fails);
 * stop ends accepting; free (after MHD_stop_daemon) the rest. */
struct srv_conns;
int srv_conns_start(struct slm_server *s, int lfd, struct srv_conns **out, struct slm_err *err);
void srv_conns_stop(struct srv_conns *c);
void srv_conns_free(struct srv_conns *c);
/* libmicrohttpd closed `conn` (NOTIFY_CONNECTION CLOSED, before its socket). */
void srv_conns_closed(struct srv_conns *c, struct MHD_Connection *conn);
/* A request's headers are in (begins) or its answer is done (!begins). */
void srv_conns_request(struct srv_conns *c, struct MHD_Connection *conn, bool begins);
size_t srv_conns_open(struct srv_conns *c);
struct sockaddr;
bool srv_addr_is_loopback(const struct sockaddr *sa);

/* `slm serve --router`: answers POST /v1/chat/completions through the router
 * when the body's "model" names a route (*handled set); otherwise returns
 * with *handled false and the usual path serves the request. */
enum MHD_Result srv_router_chat(struct srv_conn *rc, bool *handled);
/* llama-server's POST /infill (llama.c). */
enum MHD_Result srv_llama_infill(struct srv_conn *rc);
/* The routed requests' watcher: init at open (nothing started), free at close
 * once no request is in flight (joins the thread if it started). */
void srv_watcher_init(struct srv_watcher *w);
void srv_watcher_free(struct srv_watcher *w);
/* The same for Ollama's /api/chat and /api/generate (`gen`). */
enum MHD_Result srv_router_ollama(struct srv_conn *rc, enum srv_route_id gen, bool *handled);

/* ---------------------------------------------------------------- replies */

/* Queues a JSON reply (takes ownership of `body`). */
enum MHD_Result srv_reply_json(struct srv_conn *rc, int status, json_t *body);
/* Queues an error in the shape of `api`. */
enum MHD_Result srv_reply_error(struct srv_conn *rc, enum srv_api api, const struct srv_error *e);
enum MHD_Result srv_reply_text(struct srv_conn *rc, int status, const char *content_type,
                               const char *text, size_t len);
/* The body of an error in each API's shape (new reference). */
json_t *srv_error_json(enum srv_api api, const struct srv_error *e);
/* Compact JSON (floats with 9 significant digits) appended to `out`. */
int srv_json_dump(const json_t *v, struct slm_buf *out);
/* Model text as a JSON string: invalid UTF-8 becomes U+FFFD (new reference). */
json_t *srv_json_text(const char *p, size_t n);
/* Adds the headers every reply carries (request id). */
void srv_add_common_headers(struct srv_conn *rc, struct MHD_Response *r);

/* ---------------------------------------------------------------- routes */

enum MHD_Result srv_openai_generate(struct srv_conn *rc, enum srv_route_id route);
enum MHD_Result srv_openai_models(struct srv_conn *rc, const char *one);
enum MHD_Result srv_ollama_generate(struct srv_conn *rc, enum srv_route_id route);
enum MHD_Result srv_ollama_tags(struct srv_conn *rc);
enum MHD_Result srv_ollama_show(struct srv_conn *rc);
enum MHD_Result srv_ollama_ps(struct srv_conn *rc);
enum MHD_Result srv_ollama_version(struct srv_conn *rc);
enum MHD_Result srv_ollama_pull(struct srv_conn *rc);
enum MHD_Result srv_ollama_create(struct srv_conn *rc);
enum MHD_Result srv_ollama_copy(struct srv_conn *rc);
enum MHD_Result srv_ollama_delete(struct srv_conn *rc);
enum MHD_Result srv_metrics_route(struct srv_conn *rc);

/* Embeddings (OpenAI and Ollama share the job). */
enum MHD_Result srv_embed(struct srv_conn *rc, enum srv_route_id route);

/* ---------------------------------------------------------------- helpers */

/* A random id with `prefix` ("chatcmpl-" + 24 hex digits). */
void srv_make_id(const char *prefix, char *out, size_t cap);
/* RFC 3339 UTC with nanoseconds, as Ollama writes times. */
void srv_format_time(int64_t unix_ms, char *out, size_t cap);
/* Parses a JSON body into an object; 400 when it is not one. */
/* The request body parsed as a JSON object, once per request (every later
 * call gets the same document, or the same error): a new reference. */
int srv_conn_doc(struct srv_conn *rc, json_t **out, struct srv_error *e);
/* The one 404 for a model name the store does not hold (whatever the
 * reason), so that a client learns nothing about the server's files. */
int srv_model_not_found(struct srv_error *e, const char *name);
/* "292.80K", "135.00M", "1.54B" as Ollama shows parameter counts. */
void srv_format_params(uint64_t n, char *out, size_t cap);

/* ---------------------------------------------------------------- jobs */

/* One sequence of a job: one prompt x one choice. */
struct srv_item {
    int index; /* choice index in the response */
    int prompt_index;
    int32_t *toks; /* prompt tokens (owned) */
    size_t n_toks;
    char *prompt_text; /* for echo (owned) or NULL */
    struct slm_request *req;
    struct slm_buf text;         /* all released text */
    size_t new_from;             /* where the last poll's text starts */
    struct slm_req_token *fresh; /* token records of the last poll */
    size_t n_fresh;
    struct slm_req_token *recs; /* every record, when logprobs are wanted */
    size_t n_recs, cap_recs;
    size_t sent;    /* bytes of text already streamed as content */
    bool started;   /* first output arrived (it left the queue) */
    bool role_sent; /* streaming: the first chunk went out */
    bool done;
    int rc;
    struct slm_err err;
    struct slm_gen_stats stats;
    float *embedding; /* EMBED: copied vector (owned) */
    int32_t n_embd;
};

struct srv_job {
    struct slm_server *srv;
    struct srv_conn *conn;
    struct srv_gen_req *g; /* owned */
    char id[48];
    int64_t created;       /* unix seconds */
    char *model_name;      /* as the client named it */
    struct slm_turn *turn; /* the model resolved: manifest, options, TEMPLATE (slm/turn.h) */
    struct srv_model_facts facts;
    struct slm_sched *sched;
    struct slm_model *model;
    bool pinned;
    struct slm_adapter *adapters[SRV_MAX_ADAPTERS];
    float scales[SRV_MAX_ADAPTERS];
    size_t n_adapters;
    struct slm_options opt;
    char *grammar;
    const struct slm_tool_family *family;
    bool tools_on;
    struct srv_item *items;
    size_t n_items;
    /* Items are submitted at most `window` at a time (embedding batches: one
     * job holds a few queue places, however many inputs it has); items from
     * next_submit on are not submitted yet. */
    size_t window, next_submit;
    struct slm_req_params rp; /* what every item is submitted with */
    double t_start, t_load, t_first;
    double deadline; /* slm_time_mono() seconds, 0 = none */
    bool finished;   /* every item done and results read */
    bool counted;    /* metrics recorded */
};

/* Resolves the model, applies options, builds and tokenizes the prompts,
 * pins the scheduler. Takes ownership of `g` (even on failure). On success
 * one srv_job_free() is owed. */
int srv_job_prepare(struct slm_server *s, struct srv_conn *rc, struct srv_gen_req *g,
                    struct srv_job **out, struct srv_error *e);
/* The body of `rc` parsed for `route` (srv_parse_request) and prepared
 * (srv_job_prepare): the job, or NULL with the error reply in `api`'s shape
 * already queued and its result in *reply. */
struct srv_job *srv_job_from_body(struct srv_conn *rc, enum srv_route_id route, enum srv_api api,
                                  enum MHD_Result *reply);
/* Submits the first `window` items (the rest follow as those finish, in
 * srv_job_poll). A full queue now is SLM_E_LIMIT (429); later, it only
 * delays the rest. */
int srv_job_submit(struct srv_job *j, struct srv_error *e);
/* Reads what is new for every unfinished item, waiting up to `timeout_ms` for
 * the first; sets item->new_from / fresh. Marks items done (results read).
 * *changed says whether anything arrived. */
int srv_job_poll(struct srv_job *j, int timeout_ms, bool *changed);
/* Polls until every item is done; cancels on client disconnect
 * (SLM_E_ABORTED), shutdown (SLM_E_ABORTED, 503) or deadline (SLM_E_TIMEOUT). */
int srv_job_wait(struct srv_job *j, struct srv_error *e);
/* Checks client, shutdown and deadline; cancels and fills `e` when one hits. */
int srv_job_check_alive(struct srv_job *j, struct srv_error *e);
void srv_job_cancel(struct srv_job *j);
void srv_job_free(struct srv_job *j);
/* The first failed item's status as an error (or SLM_OK). */
int srv_job_item_error(struct srv_job *j, struct srv_error *e);
/* finish_reason for an item: "stop", "length", "tool_calls" (decided by caller). */
const char *srv_finish_reason(const struct srv_item *it);
/* Checks JSON output (format json / schema). SLM_OK, SLM_E_INCOMPLETE (cut by
 * the length limit) or SLM_E_INVALID with `err`. */
int srv_job_check_json(const struct srv_job *j, const struct srv_item *it, struct slm_err *err);
/* Sum of prompt/generated/cached tokens over items. */
void srv_job_usage(const struct srv_job *j, int64_t *prompt, int64_t *gen, int64_t *cached);
/* The text of token `tok` (raw piece) appended to out. */
int srv_job_token_text(const struct srv_job *j, int32_t tok, struct slm_buf *out);
/* [{token, logprob, bytes, top_logprobs: [...]}] for token records. */
json_t *srv_logprobs_content(const struct srv_job *j, const struct slm_req_token *recs, size_t n);
/* Streaming: how much of an item's text may go out now (tool calls are held
 * back until they can be parsed whole). */
size_t srv_job_releasable(const struct srv_job *j, const struct srv_item *it);
/* The model's context per sequence as configured (0 = unknown). */
uint32_t srv_job_n_ctx(const struct srv_job *j);

/* ---------------------------------------------------------------- streams */

struct srv_stream;
typedef int (*srv_stream_step_fn)(struct srv_stream *st);
typedef void (*srv_stream_free_fn)(void *ctx);

struct srv_stream {
    struct slm_server *srv;
    struct srv_conn *rc;
    struct slm_buf out; /* formatted bytes not yet handed to MHD */
    size_t off;
    bool finished;           /* nothing more will be added to `out` */
    srv_stream_step_fn step; /* adds to `out` (may wait ~SRV_POLL_MS) or sets finished */
    srv_stream_free_fn free_ctx;
    void *ctx;
};

/* Appends one SSE event, "data: <v>\n\n", to `out`; takes ownership of v (NULL: SLM_E_NOMEM). */
int srv_sse_event(struct slm_buf *out, json_t *v);

/* One poll of a streaming step: reads what is new (waiting up to SRV_POLL_MS) and, while
 * the job runs, looks at the client, the server and the clock. SLM_E_ABORTED when the
 * client left (the stream just ends); e->status set when the step must send e as its last
 * event; otherwise what srv_job_poll returned. */
int srv_stream_poll(struct srv_job *j, bool *changed, struct srv_error *e);

/* Queues a streamed reply (chunked) of `content_type`, produced by `step`.
 * Takes ownership of ctx (freed with free_ctx) even on failure. */
enum MHD_Result srv_reply_stream(struct srv_conn *rc, const char *content_type,
                                 srv_stream_step_fn step, void *ctx, srv_stream_free_fn free_ctx);

#endif /* SLM_SERVER_INTERNAL_H */
