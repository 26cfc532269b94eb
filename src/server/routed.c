/*
 * server/routed.c - `slm serve --router router.yaml`: a POST
 * /v1/chat/completions, /api/chat or /api/generate whose "model" names a route
 * of the router goes through slm_router_chat() (slm/router.h): local model
 * first, checks, escalation, ledger. Ollama requests are translated to the
 * OpenAI request the router takes and its answer back to Ollama's shape.
 * Every other request (other models, other routes) is served as without a
 * router, so the router is a drop-in base URL for either API.
 *
 * The router answers whole: a streamed request gets the whole answer as SSE
 * events once the checks have passed (or the upstream has answered), because
 * an answer that may still escalate cannot be shown token by token. The
 * response carries x-slm-route / x-slm-reason headers and an "slm" field,
 * both reason codes only (the router keeps upstream details for the log).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/internal.h"
#include "slm/json.h"
#include "slm/router.h"
#include "slm/sync.h"

/* Watches the client and the server while the router works: a client that
 * leaves cancels (the router writes the row as client_aborted), and so does
 * a server that is stopping (SLM_ROUTER_CANCEL_SHUTDOWN: the client gets a
 * 503), so that a hanging upstream holds up neither. One thread watches every
 * routed request in flight, every SRV_POLL_MS, and sleeps while there is
 * none; a request registers before the router runs and leaves after, so the
 * answer waits for neither a thread's start nor its join. */
struct srv_watch {
    struct MHD_Connection *conn;
    double deadline; /* slm_time_mono(), 0 = none (--request-timeout) */
    volatile int cancel;
    struct srv_watch *prev, *next; /* the watcher's list, under its mutex */
};

static void *watch_main(void *arg) {
    struct slm_server *s = arg;
    struct srv_watcher *wr = &s->watcher;
    pthread_mutex_lock(&wr->mu);
    while (!wr->stop) {
        if (!wr->head) {
            pthread_cond_wait(&wr->cv, &wr->mu);
            continue;
        }
        slm_cond_wait_for(&wr->cv, &wr->mu, SRV_POLL_MS / 1000.0);
        bool stopping = atomic_load(&s->stopping);
        double now = slm_time_mono();
        for (struct srv_watch *w = wr->head; w && !wr->stop; w = w->next) {
            if (w->cancel) {
                continue;
            }
            if (srv_client_gone(w->conn)) {
                w->cancel = 1;
            } else if (stopping) {
                w->cancel = SLM_ROUTER_CANCEL_SHUTDOWN;
            } else if (w->deadline > 0 && now > w->deadline) {
                w->cancel = SLM_ROUTER_CANCEL_TIMEOUT;
            }
        }
    }
    pthread_mutex_unlock(&wr->mu);
    return NULL;
}

void srv_watcher_init(struct srv_watcher *wr) {
    memset(wr, 0, sizeof(*wr));
    pthread_mutex_init(&wr->mu, NULL);
    slm_cond_init_mono(&wr->cv);
}

void srv_watcher_free(struct srv_watcher *wr) {
    pthread_mutex_lock(&wr->mu);
    wr->stop = true;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
    if (wr->started) {
        pthread_join(wr->th, NULL);
    }
    pthread_cond_destroy(&wr->cv);
    pthread_mutex_destroy(&wr->mu);
}

/* Adds `w` to the watched requests, starting the watcher on first use. A
 * watcher that cannot start leaves requests unwatched (they run to their end;
 * logged once). */
static void watch_begin(struct slm_server *s, struct srv_watch *w) {
    struct srv_watcher *wr = &s->watcher;
    pthread_mutex_lock(&wr->mu);
    if (!wr->started && !wr->stop) {
        wr->started = pthread_create(&wr->th, NULL, watch_main, s) == 0;
        if (!wr->started) {
            wr->stop = true; /* no second try per request */
            SLM_LOG(SLM_LOG_WARN, "could not start the routed requests' watcher: a client that "
                                  "leaves will not cancel its request");
        }
    }
    w->prev = NULL;
    w->next = wr->head;
    if (wr->head) {
        wr->head->prev = w;
    }
    wr->head = w;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
}

static void watch_end(struct slm_server *s, struct srv_watch *w) {
    struct srv_watcher *wr = &s->watcher;
    pthread_mutex_lock(&wr->mu);
    if (w->prev) {
        w->prev->next = w->next;
    } else {
        wr->head = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&wr->mu);
}

/* The chat.completion `resp` as chat.completion.chunk events. */
static int to_sse(const json_t *resp, bool include_usage, struct slm_buf *out) {
    json_t *base = json_deep_copy(resp);
    if (!base) {
        return SLM_E_NOMEM;
    }
    json_t *choices = json_incref(json_object_get(base, "choices"));
    json_t *usage = json_incref(json_object_get(base, "usage"));
    json_object_del(base, "choices");
    json_object_del(base, "usage");
    json_object_set_new(base, "object", json_string("chat.completion.chunk"));
    int rc = SLM_OK;
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c) {
        const json_t *msg = json_object_get(c, "message");
        json_t *delta = json_pack("{s:s}", "role", "assistant");
        const json_t *content = json_object_get(msg, "content");
        json_object_set_new(delta, "content",
                            json_is_string(content) ? json_incref((json_t *)content)
                                                    : json_string(""));
        const json_t *calls = json_object_get(msg, "tool_calls");
        if (json_array_size(calls)) {
            json_t *cs = json_deep_copy(calls);
            size_t k;
            json_t *call;
            json_array_foreach(cs, k, call) {
                json_object_set_new(call, "index", json_integer((json_int_t)k));
            }
            json_object_set_new(delta, "tool_calls", cs);
        }
        json_t *lp = json_object_get(c, "logprobs");
        json_t *first = json_deep_copy(base);
        json_object_set_new(first, "choices",
                            json_pack("[{s:O,s:o,s:O,s:n}]", "index", json_object_get(c, "index"),
                                      "delta", delta, "logprobs", lp ? lp : json_null(),
                                      "finish_reason"));
        json_t *last = json_deep_copy(base);
        const json_t *fin = json_object_get(c, "finish_reason");
        json_object_set_new(last, "choices",
                            json_pack("[{s:O,s:{},s:n,s:O}]", "index", json_object_get(c, "index"),
                                      "delta", "logprobs", "finish_reason",
                                      fin ? fin : json_string("stop")));
        if (rc == SLM_OK) {
            rc = srv_sse_event(out, first);
            first = NULL;
        }
        if (rc == SLM_OK) {
            rc = srv_sse_event(out, last);
            last = NULL;
        }
        json_decref(first);
        json_decref(last);
    }
    if (rc == SLM_OK && include_usage && usage) {
        json_t *u = json_deep_copy(base);
        json_object_set_new(u, "choices", json_array());
        json_object_set(u, "usage", usage);
        rc = srv_sse_event(out, u);
    }
    rc = rc == SLM_OK ? slm_buf_puts(out, "data: [DONE]\n\n") : rc;
    json_decref(choices);
    json_decref(usage);
    json_decref(base);
    return rc;
}

/* The server's limits hold for routes as for models: the message count, and
 * --max-tokens (more is a 400). A request that asks for no number keeps the
 * route's own num_predict when that is within the cap; else it gets the cap,
 * so the local model stops there (the upstream too). */
static int route_limits(struct slm_server *s, const struct slm_router_route *route, json_t *body,
                        struct srv_error *e) {
    const json_t *ms = json_object_get(body, "messages");
    if (json_array_size(ms) > SRV_MAX_MESSAGES) {
        return srv_bad(e, "messages", "at most %d messages", SRV_MAX_MESSAGES);
    }
    int32_t cap = s->p.max_tokens;
    if (cap <= 0) {
        return SLM_OK;
    }
    const char *field = "max_completion_tokens";
    const json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v)) {
        field = "max_tokens";
        v = json_object_get(body, field);
    }
    if (v && json_is_integer(v) && json_integer_value(v) > cap) {
        return srv_bad(e, field,
                       "at most %d tokens can be generated per request on this server (asked "
                       "for %lld)",
                       cap, (long long)json_integer_value(v));
    }
    if (!v || json_is_null(v)) {
        const struct slm_router_config *cfg = slm_router_get_config(s->p.router);
        const json_t *np = json_object_get(cfg->locals[route->local].parameters, "num_predict");
        json_int_t own = json_is_integer(np) ? json_integer_value(np) : -1;
        if (own <= 0 || own > cap) {
            json_object_set_new(body, "max_tokens", json_integer(cap));
        }
    }
    return SLM_OK;
}

/* The route a request's "model" names, or NULL (then the usual path answers). */
static const struct slm_router_route *find_route(struct srv_conn *rc, json_t **body) {
    struct slm_server *s = rc->srv;
    struct srv_error pe = {0};
    *body = NULL;
    if (!s->p.router || srv_conn_doc(rc, body, &pe) != SLM_OK) {
        return NULL; /* not the router's: the usual path answers (or says what is wrong) */
    }
    const char *model = json_string_value(json_object_get(*body, "model"));
    const struct slm_router_route *route =
        model ? slm_router_config_route(slm_router_get_config(s->p.router), model) : NULL;
    if (!route) {
        json_decref(*body);
        *body = NULL;
        return NULL;
    }
    snprintf(rc->model, sizeof(rc->model), "%s", model);
    return route;
}

/*
 * Runs `body` (an OpenAI chat request, owned) through the router with the watcher. SLM_OK with
 * *resp and *info; otherwise the reply is made here (in `api`'s error shape) into *ret, or
 * *ret = MHD_NO when the client left.
 */
static int run_route(struct srv_conn *rc, const struct slm_router_route *route, json_t *body,
                     enum srv_api api, json_t **resp, struct slm_router_info *info,
                     enum MHD_Result *ret) {
    struct slm_server *s = rc->srv;
    *resp = NULL;
    struct srv_error le = {0};
    if (route_limits(s, route, body, &le) != SLM_OK) {
        json_decref(body);
        *ret = srv_reply_error(rc, api, &le);
        return SLM_E_INVALID;
    }
    struct srv_watch w = {.conn = rc->conn};
    w.deadline = s->p.request_timeout > 0 ? rc->t0 + s->p.request_timeout : 0;
    watch_begin(s, &w);
    struct slm_err err = {0};
    int r = slm_router_chat(s->p.router, body, &w.cancel, resp, info, &err);
    watch_end(s, &w);
    json_decref(body);
    if (r == SLM_OK) {
        snprintf(rc->x_route, sizeof(rc->x_route), "%s", info->route);
        snprintf(rc->x_reason, sizeof(rc->x_reason), "%s", info->reason);
        const json_t *u = json_object_get(*resp, "usage");
        rc->prompt_tokens = (int32_t)json_integer_value(json_object_get(u, "prompt_tokens"));
        rc->gen_tokens = (int32_t)json_integer_value(json_object_get(u, "completion_tokens"));
        return SLM_OK;
    }
    struct srv_error e = {0};
    if (r == SLM_E_ABORTED && w.cancel == SLM_ROUTER_CANCEL_TIMEOUT) {
        srv_error_set(&e, SLM_E_TIMEOUT, 504, "server_error", "timeout",
                      "the request took longer than %.0f s (slm serve --request-timeout)",
                      s->p.request_timeout);
    } else if (r == SLM_E_ABORTED && w.cancel == SLM_ROUTER_CANCEL_SHUTDOWN) {
        srv_error_set(&e, r, 503, "server_error", "shutting_down", "the server is shutting down");
    } else if (r == SLM_E_ABORTED && w.cancel) {
        *ret = MHD_NO; /* the client left */
        return r;
    } else {
        srv_fail(&e, r, &err);
    }
    *ret = srv_reply_error(rc, api, &e);
    return r;
}

enum MHD_Result srv_router_chat(struct srv_conn *rc, bool *handled) {
    json_t *body = NULL;
    const struct slm_router_route *route = find_route(rc, &body);
    *handled = route != NULL;
    if (!route) {
        return MHD_NO;
    }
    bool stream = json_is_true(json_object_get(body, "stream"));
    bool usage =
        json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    json_t *resp = NULL;
    struct slm_router_info info = {0};
    enum MHD_Result ret = MHD_NO;
    if (run_route(rc, route, body, SRV_API_OPENAI, &resp, &info, &ret) != SLM_OK) {
        return ret;
    }
    if (!stream) {
        return srv_reply_json(rc, 200, resp);
    }
    struct slm_buf out = {0};
    slm_buf_init(&out, SRV_MAX_TEXT * 4);
    int src = to_sse(resp, usage, &out);
    json_decref(resp);
    enum MHD_Result ok;
    if (src == SLM_OK) {
        ok = srv_reply_text(rc, 200, "text/event-stream", out.ptr, out.len);
    } else {
        struct srv_error e = {0};
        srv_fail(&e, src, NULL);
        ok = srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    slm_buf_free(&out);
    return ok;
}

/* ---------------------------------------------------------------- Ollama */

/* Ollama's request as the OpenAI chat request the router takes: messages (chat), or the
 * prompt with its system message (generate); options.num_predict, temperature, top_p, top_k,
 * seed, stop; format "json" or a schema. NULL with `e` set for what cannot be routed. */
static json_t *ollama_to_openai(const json_t *in, bool chat, struct srv_error *e) {
    json_t *out = json_pack("{s:O}", "model", json_object_get(in, "model"));
    json_t *msgs = json_array();
    if (!out || !msgs || json_object_set_new(out, "messages", msgs) != 0) {
        json_decref(out);
        srv_bad(e, "model", "out of memory");
        return NULL;
    }
    if (json_is_true(json_object_get(in, "raw")) || json_object_get(in, "suffix")) {
        srv_bad(e, json_object_get(in, "raw") ? "raw" : "suffix",
                "a route answers messages; raw prompts and suffixes cannot be routed");
        json_decref(out);
        return NULL;
    }
    if (chat) {
        size_t i;
        const json_t *m;
        const json_t *list = json_object_get(in, "messages");
        if (!json_is_array(list)) {
            srv_bad(e, "messages", "expected an array of messages");
            json_decref(out);
            return NULL;
        }
        json_array_foreach(list, i, m) {
            json_array_append_new(msgs, json_pack("{s:O, s:O}", "role", json_object_get(m, "role"),
                                                  "content", json_object_get(m, "content")));
        }
    } else {
        const char *sys = json_string_value(json_object_get(in, "system"));
        const char *prompt = json_string_value(json_object_get(in, "prompt"));
        if (!prompt) {
            srv_bad(e, "prompt", "expected a string");
            json_decref(out);
            return NULL;
        }
        if (sys) {
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", sys));
        }
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
    }
    const json_t *o = json_object_get(in, "options");
    static const char *const same[][2] = {{"num_predict", "max_tokens"},
                                          {"temperature", "temperature"},
                                          {"top_p", "top_p"},
                                          {"top_k", "top_k"},
                                          {"seed", "seed"},
                                          {"stop", "stop"}};
    for (size_t k = 0; k < SLM_ARRAY_LEN(same); k++) {
        const json_t *v = json_object_get(o, same[k][0]);
        if (v && !json_is_null(v)) {
            json_object_set(out, same[k][1], (json_t *)v);
        }
    }
    const json_t *fmt = json_object_get(in, "format");
    if (json_is_string(fmt) && strcmp(json_string_value(fmt), "json") == 0) {
        json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
    } else if (json_is_object(fmt)) {
        json_object_set_new(out, "response_format",
                            json_pack("{s:s, s:{s:s, s:O}}", "type", "json_schema", "json_schema",
                                      "name", "format", "schema", fmt));
    }
    return out;
}

/* The router's OpenAI answer as Ollama's: the message (chat) or "response" (generate), the
 * counts, done_reason, and the router's "slm" field. */
static json_t *openai_to_ollama(const json_t *resp, const char *model, bool chat, double t0) {
    const json_t *c = json_array_get(json_object_get(resp, "choices"), 0);
    const char *text = json_string_value(json_object_get(json_object_get(c, "message"), "content"));
    const char *fin = json_string_value(json_object_get(c, "finish_reason"));
    const json_t *u = json_object_get(resp, "usage");
    char t[64];
    srv_format_time(slm_time_unix_ms(), t, sizeof(t));
    json_t *v = json_pack("{s:s, s:s}", "model", model, "created_at", t);
    if (!v) {
        return NULL;
    }
    if (chat) {
        json_object_set_new(
            v, "message",
            json_pack("{s:s, s:s}", "role", "assistant", "content", text ? text : ""));
    } else {
        json_object_set_new(v, "response", json_string(text ? text : ""));
    }
    json_object_set_new(v, "done", json_true());
    json_object_set_new(v, "done_reason",
                        json_string(fin && strcmp(fin, "length") == 0 ? "length" : "stop"));
    json_object_set_new(v, "total_duration",
                        json_integer((json_int_t)((slm_time_mono() - t0) * 1e9)));
    json_object_set(v, "prompt_eval_count", json_object_get(u, "prompt_tokens"));
    json_object_set(v, "eval_count", json_object_get(u, "completion_tokens"));
    const json_t *slm = json_object_get(resp, "slm");
    if (slm) {
        json_object_set(v, "slm", (json_t *)slm);
    }
    return v;
}

enum MHD_Result srv_router_ollama(struct srv_conn *rc, enum srv_route_id gen, bool *handled) {
    json_t *in = NULL;
    const struct slm_router_route *route = find_route(rc, &in);
    *handled = route != NULL;
    if (!route) {
        return MHD_NO;
    }
    bool chat = gen == SRV_R_OLLAMA_CHAT;
    const json_t *sv = json_object_get(in, "stream");
    bool stream = !sv || json_is_true(sv); /* Ollama streams unless told not to */
    struct srv_error e = {0};
    json_t *body = ollama_to_openai(in, chat, &e);
    json_decref(in);
    if (!body) {
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    json_t *resp = NULL;
    struct slm_router_info info = {0};
    enum MHD_Result ret = MHD_NO;
    if (run_route(rc, route, body, SRV_API_OLLAMA, &resp, &info, &ret) != SLM_OK) {
        return ret;
    }
    json_t *done = openai_to_ollama(resp, rc->model, chat, rc->t0);
    json_decref(resp);
    if (!done) {
        srv_fail(&e, SLM_E_NOMEM, NULL);
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    if (!stream) {
        return srv_reply_json(rc, 200, done);
    }
    /* The whole answer at once, as Ollama streams it: the text, then the final object. */
    json_t *first = json_deep_copy(done);
    json_t *empty = json_string("");
    json_object_set_new(first, "done", json_false());
    static const char *const stats[] = {"done_reason", "total_duration", "prompt_eval_count",
                                        "eval_count", "slm"};
    for (size_t k = 0; k < SLM_ARRAY_LEN(stats); k++) {
        json_object_del(first, stats[k]);
    }
    if (chat) {
        json_object_set(json_object_get(done, "message"), "content", empty);
    } else {
        json_object_set(done, "response", empty);
    }
    json_decref(empty);
    struct slm_buf out = {0};
    slm_buf_init(&out, SRV_MAX_TEXT * 4);
    int src = srv_json_dump(first, &out);
    src = src == SLM_OK ? slm_buf_putc(&out, '\n') : src;
    src = src == SLM_OK ? srv_json_dump(done, &out) : src;
    src = src == SLM_OK ? slm_buf_putc(&out, '\n') : src;
    json_decref(first);
    json_decref(done);
    enum MHD_Result ok;
    if (src == SLM_OK) {
        ok = srv_reply_text(rc, 200, "application/x-ndjson", out.ptr, out.len);
    } else {
        srv_fail(&e, src, NULL);
        ok = srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    slm_buf_free(&out);
    return ok;
}
