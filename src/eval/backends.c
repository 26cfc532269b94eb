/*
 * backends.c - how each kind of local candidate answers a row (slm/eval.h's
 * struct slm_eval_backend):
 *  - label scoring: `slm tune eval`'s own code (slm_tune_evaluate with a
 *    per-example callback), so the accuracy here and there is one number;
 *  - generation: the one request path (slm/turn.h) on a model loaded here,
 *    greedy, with a JSON grammar when the `json` metric asks for JSON;
 *  - a route of a router.yaml: slm_router_chat() without HTTP.
 * Upstream candidates are opened by the caller (slm_eval_run_params).
 */
#include "eval/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/engine.h"
#include "slm/json.h"
#include "slm/router.h"
#include "slm/store.h"
#include "slm/tune.h"
#include "slm/turn.h"

/* ---------------------------------------------------------------- model reference */

/* The model file and the one adapter (or none) a local candidate runs. A
 * store model made with ADAPTER lines contributes its adapter, as `slm tune
 * eval` reads it; more than one, or a scale other than 1, is refused there and
 * here alike. */
int slm__eval_local_paths(const struct slm_eval_candidate *c, char **model, char **adapter,
                          struct slm_err *err) {
    *model = *adapter = NULL;
    if (c->kind == SLM_EVAL_CAND_GGUF) {
        *model = strdup(c->gguf);
        return *model ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_store *store = NULL;
    struct slm_manifest *m = NULL;
    int rc = slm_store_open(NULL, &store, err);
    if (rc == SLM_OK) {
        rc = slm_store_resolve(store, c->model, &m, err);
    }
    if (rc == SLM_OK && (m->n_adapters > 1 || (m->n_adapters == 1 && c->adapter) ||
                         (m->n_adapters == 1 && m->adapters[0].scale != 1.0f))) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "candidate '%s': %s already has adapters; label scoring applies one "
                         "adapter at scale 1 (name its model file and one adapter instead)",
                         c->name, c->model);
    }
    if (rc == SLM_OK) {
        *model = strdup(m->model_path);
        const char *a = c->adapter ? c->adapter : m->n_adapters ? m->adapters[0].path : NULL;
        *adapter = a ? strdup(a) : NULL;
        if (!*model || (a && !*adapter)) {
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    slm_manifest_free(m);
    slm_store_close(store);
    return rc;
}

/* ---------------------------------------------------------------- label scoring */

struct label_backend {
    char *model, *adapter;
    const struct slm_data_records *recs;
    int32_t n_threads;
    const volatile int *cancel;
    struct slm_eval_answer *out;
    double t_last;
    void (*progress)(size_t done, void *user);
    void *user;
};

static int on_example(void *user, size_t i, const char *const *labels, const float *logp,
                      size_t n_labels, size_t best, size_t n_prompt) {
    struct label_backend *lb = user;
    struct slm_eval_answer *a = &lb->out[i];
    double sum = 0;
    for (size_t k = 0; k < n_labels; k++) {
        sum += exp((double)logp[k] - (double)logp[best]);
    }
    double now = slm_time_mono();
    a->text = strdup(labels[best]);
    a->status = a->text ? SLM_OK : SLM_E_NOMEM;
    a->confidence = 1.0 / sum; /* softmax over the label set, as the router's label_prob */
    a->latency_ms = (now - lb->t_last) * 1000.0;
    a->n_in = (int64_t)n_prompt;
    lb->t_last = now;
    if (lb->progress) {
        lb->progress(i + 1, lb->user);
    }
    return lb->cancel && *lb->cancel ? 1 : 0;
}

static int label_batch(void *self, const struct slm_eval_row *rows, size_t n_rows,
                       const char *const *labels, size_t n_labels, struct slm_eval_answer *out,
                       void (*progress)(size_t done, void *user), void *user, struct slm_err *err) {
    (void)rows;
    (void)labels;
    struct label_backend *lb = self;
    struct slm_tune_eval_params ep = slm_tune_eval_params_default();
    ep.max_labels = n_labels + 1;
    ep.max_examples = n_rows;
    ep.n_threads = lb->n_threads;
    ep.no_loss = true;
    ep.max_rest = 1e-2; /* the confidence: exact to 1%, as the router's label_prob */
    ep.on_example = on_example;
    ep.user = lb;
    lb->out = out;
    lb->progress = progress;
    lb->user = user;
    lb->t_last = slm_time_mono();
    struct slm_tune_eval_result res;
    return slm_tune_evaluate(lb->model, lb->adapter, lb->recs, &ep, &res, err);
}

static void label_close(void *self) {
    struct label_backend *lb = self;
    free(lb->model);
    free(lb->adapter);
    free(lb);
}

int slm__eval_open_label(const struct slm_eval_candidate *c, const struct slm_data_records *recs,
                         int32_t n_threads, const volatile int *cancel,
                         struct slm_eval_backend *out, struct slm_err *err) {
    struct label_backend *lb = calloc(1, sizeof(*lb));
    if (!lb) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = slm__eval_local_paths(c, &lb->model, &lb->adapter, err);
    if (rc != SLM_OK) {
        label_close(lb);
        return rc;
    }
    lb->recs = recs;
    lb->n_threads = n_threads;
    lb->cancel = cancel;
    *out = (struct slm_eval_backend){.self = lb, .batch = label_batch, .close = label_close};
    return SLM_OK;
}

/* ---------------------------------------------------------------- generation */

struct gen_backend {
    struct slm_store *store;
    struct slm_turn *turn;
    struct slm_model *model;
    struct slm_adapter *adapters[SLM_TURN_MAX_ADAPTERS];
    size_t n_adapters;
    struct slm_ctx *ctx;
    struct slm_buf prompt, text;
};

static void gen_close(void *self) {
    struct gen_backend *g = self;
    slm_ctx_free(g->ctx);
    for (size_t i = 0; i < g->n_adapters; i++) {
        slm_adapter_free(g->adapters[i]);
    }
    slm_model_free(g->model);
    slm_turn_free(g->turn);
    slm_store_close(g->store);
    slm_buf_free(&g->prompt);
    slm_buf_free(&g->text);
    free(g);
}

static int on_token(const struct slm_token_event *ev, void *user) {
    struct slm_buf *b = user;
    return slm_buf_append(b, ev->text, ev->len) == SLM_OK ? 0 : 1;
}

/* One row: prompt as given (the suite's template already rendered it, as
 * `slm tune` renders training prompts), greedy, the JSON grammar if asked. */
static int gen_answer(void *self, const struct slm_eval_request *req, struct slm_eval_answer *out,
                      struct slm_err *err) {
    struct gen_backend *g = self;
    struct slm_turn_req r = {.kind = SLM_TURN_RAW, .prompt = slm_str_c(req->row->prompt)};
    r.format = req->schema      ? SLM_TURN_FORMAT_SCHEMA
               : req->want_json ? SLM_TURN_FORMAT_JSON
                                : SLM_TURN_FORMAT_TEXT;
    r.schema = req->schema;
    struct slm_options opt;
    char *gbnf = NULL;
    int32_t *toks = NULL;
    size_t n_toks = 0;
    struct slm_err e = {0};
    double t0 = slm_time_mono();
    slm_buf_clear(&g->prompt);
    slm_buf_clear(&g->text);
    int rc = slm_turn_options(g->turn, NULL, &opt, &e);
    if (rc == SLM_OK) {
        rc = slm_turn_grammar(&r, NULL, &gbnf, &e);
    }
    if (rc == SLM_OK) {
        rc = slm_turn_prompt(g->turn, g->model, &r, &g->prompt, NULL, &e);
    }
    if (rc == SLM_OK) {
        rc = slm_tokenize_alloc(g->model, slm_buf_str(&g->prompt), true, &toks, &n_toks, 0, &e);
    }
    struct slm_gen_stats st = {0};
    if (rc == SLM_OK) {
        struct slm_gen_params gp = slm_options_gen_params(&opt);
        gp.sample.temperature = 0;
        gp.sample.grammar = gbnf;
        gp.max_tokens = req->max_tokens;
        rc = slm_generate(g->ctx, toks, n_toks, &gp, on_token, &g->text, &st, &e);
    }
    out->latency_ms = (slm_time_mono() - t0) * 1000.0;
    out->n_in = st.n_prompt;
    out->n_out = st.n_gen;
    out->status = rc;
    if (rc == SLM_OK) {
        out->text = strdup(slm_buf_cstr(&g->text));
    } else {
        out->error = strdup(e.msg[0] ? e.msg : slm_strerror(rc));
    }
    slm_options_free(&opt);
    free(gbnf);
    free(toks);
    (void)err;
    return rc == SLM_E_NOMEM ? slm_err_set(err, rc, "out of memory") : SLM_OK;
}

int slm__eval_open_gen(const struct slm_eval_candidate *c, int32_t n_threads,
                       struct slm_eval_backend *out, struct slm_err *err) {
    struct gen_backend *g = calloc(1, sizeof(*g));
    if (!g) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    slm_buf_init(&g->prompt, SLM_TURN_MAX_PROMPT);
    slm_buf_init(&g->text, (size_t)16 << 20);
    struct slm_turn_params tp = slm_turn_params_default();
    const char *ap[1] = {c->adapter};
    float sc[1] = {1.0f};
    if (c->adapter) {
        tp.adapter_paths = ap;
        tp.adapter_scales = sc;
        tp.n_adapters = 1;
    }
    const char *ref = c->kind == SLM_EVAL_CAND_GGUF ? c->gguf : c->model;
    int rc = slm_store_open(NULL, &g->store, err);
    if (rc == SLM_OK) {
        rc = slm_turn_open(g->store, ref, &tp, &g->turn, err);
    }
    if (rc == SLM_OK) {
        struct slm_model_params mp = slm_model_params_default();
        rc = slm_model_load(g->turn->manifest->model_path, &mp, &g->model, err);
    }
    for (size_t i = 0; rc == SLM_OK && i < g->turn->n_adapters; i++) {
        rc = slm_adapter_load(g->model, g->turn->adapter_paths[i], &g->adapters[i], err);
        g->n_adapters += rc == SLM_OK;
    }
    if (rc == SLM_OK) {
        struct slm_ctx_params cp = slm_ctx_params_default();
        cp.n_threads = n_threads;
        rc = slm_ctx_init(g->model, &cp, &g->ctx, err);
    }
    if (rc == SLM_OK && g->n_adapters) {
        rc = slm_ctx_set_adapters(g->ctx, g->adapters, g->turn->adapter_scales, g->n_adapters, err);
    }
    if (rc != SLM_OK) {
        gen_close(g);
        return rc;
    }
    *out = (struct slm_eval_backend){.self = g, .answer = gen_answer, .close = gen_close};
    return SLM_OK;
}

/* ---------------------------------------------------------------- routes */

struct route_backend {
    struct slm_router *router;
    char *route;
};

static void route_close(void *self) {
    struct route_backend *rb = self;
    slm_router_free(rb->router);
    free(rb->route);
    free(rb);
}

static int route_answer(void *self, const struct slm_eval_request *req, struct slm_eval_answer *out,
                        struct slm_err *err) {
    struct route_backend *rb = self;
    json_t *body = json_pack("{s:s, s:[{s:s, s:s}], s:f, s:i}", "model", rb->route, "messages",
                             "role", "user", "content", req->row->input, "temperature", 0.0,
                             "max_tokens", (json_int_t)req->max_tokens);
    if (!body) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    json_t *resp = NULL;
    struct slm_router_info info = {0};
    struct slm_err e = {0};
    int rc = slm_router_chat(rb->router, body, NULL, &resp, &info, &e);
    json_decref(body);
    out->latency_ms = info.total_ms;
    out->status = rc;
    if (rc != SLM_OK) {
        out->error = strdup(e.msg[0] ? e.msg : slm_strerror(rc));
        return rc == SLM_E_NOT_FOUND ? slm_err_set(err, rc, "%s", e.msg) : SLM_OK;
    }
    const json_t *msg =
        json_object_get(json_array_get(json_object_get(resp, "choices"), 0), "message");
    const json_t *usage = json_object_get(resp, "usage");
    /* The label probability when the route checks it ({"value", "threshold", "pass"}). */
    const json_t *checks = json_object_get(json_object_get(resp, "slm"), "checks");
    const json_t *prob = json_object_get(json_object_get(checks, "label_prob"), "value");
    const char *content = json_string_value(json_object_get(msg, "content"));
    out->text = strdup(content ? content : "");
    out->n_in = json_integer_value(json_object_get(usage, "prompt_tokens"));
    out->n_out = json_integer_value(json_object_get(usage, "completion_tokens"));
    out->confidence = json_is_number(prob) ? json_number_value(prob) : NAN;
    json_decref(resp);
    return out->text ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

int slm__eval_open_route(const struct slm_eval_candidate *c, int32_t n_threads,
                         struct slm_eval_backend *out, struct slm_err *err) {
    struct route_backend *rb = calloc(1, sizeof(*rb));
    if (!rb || !(rb->route = strdup(c->route))) {
        free(rb);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_router_params rp = slm_router_params_default();
    rp.n_threads = n_threads;
    rp.seed = 42;
    int rc = slm_router_load(c->router, &rp, &rb->router, err);
    if (rc == SLM_OK && !slm_router_config_route(slm_router_get_config(rb->router), c->route)) {
        rc = slm_err_set(err, SLM_E_NOT_FOUND, "candidate '%s': %s has no route '%s'", c->name,
                         c->router, c->route);
    }
    if (rc != SLM_OK) {
        route_close(rb);
        return rc;
    }
    *out = (struct slm_eval_backend){.self = rb, .answer = route_answer, .close = route_close};
    return SLM_OK;
}
