/*
 * local.c - running a route's local target: the model, its options and the
 * prompt come from the turn module (slm/turn.h: the target's Liquid
 * template renders the whole prompt, else the chat template); then either
 * generate through the model's scheduler with token log-probs, or score
 * every label of the target's label set.
 *
 * A local failure (prompt too long, timeout, a template error) is a result,
 * not an error: the policy turns it into a failed check and escalates.
 */
#include "router_internal.h"

#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/signals.h"

#define READ_SLICE_MS 50
#define TOK_CAP 64

/* ---------------------------------------------------------------- requests */

char *slm__message_text(const json_t *content) {
    if (json_is_string(content)) {
        return slm_str_dup(slm_json_str(content));
    }
    struct slm_buf b = {0};
    size_t i;
    json_t *part;
    if (json_is_array(content)) {
        json_array_foreach(content, i, part) {
            const json_t *t = json_object_get(part, "text");
            if (json_is_string(t) && slm_buf_append_str(&b, slm_json_str(t)) != SLM_OK) {
                slm_buf_free(&b);
                return NULL;
            }
        }
    }
    return slm_buf_take(&b);
}

int slm__req_view_init(const json_t *request, struct slm__req_view *v, struct slm_err *err) {
    memset(v, 0, sizeof(*v));
    if (!json_is_object(request)) {
        return slm_err_set(err, SLM_E_INVALID, "the request must be a JSON object");
    }
    v->model = json_string_value(json_object_get(request, "model"));
    if (!v->model) {
        return slm_err_set(err, SLM_E_INVALID, "'model' (the route name) is required");
    }
    v->messages = json_object_get(request, "messages");
    if (!json_is_array(v->messages) || json_array_size(v->messages) == 0) {
        return slm_err_set(err, SLM_E_INVALID, "'messages' must be a non-empty array");
    }
    const json_t *last_user = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(v->messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            return slm_err_set(err, SLM_E_INVALID, "messages[%zu]: 'role' is required", i);
        }
        if (strcmp(role, "user") == 0) {
            last_user = m;
        } else if (strcmp(role, "system") == 0 && !v->system) {
            v->system = json_string_value(json_object_get(m, "content"));
        }
    }
    v->input = slm__message_text(last_user ? json_object_get(last_user, "content") : NULL);
    if (!v->input) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    v->variables = json_object_get(request, "variables");
    if (v->variables && !json_is_object(v->variables) && !json_is_null(v->variables)) {
        free(v->input);
        v->input = NULL;
        return slm_err_set(err, SLM_E_INVALID, "'variables' must be an object");
    }
    v->id = json_string_value(json_object_get(request, "id"));
    return SLM_OK;
}

void slm__req_view_free(struct slm__req_view *v) {
    free(v->input);
    v->input = NULL;
}

/* ---------------------------------------------------------------- resolution */

static int resolve(struct slm_router *r, struct slm__local_rt *lt, struct slm_err *err) {
    const struct slm_router_local *c = lt->cfg;
    const char *paths[SLM_TURN_MAX_ADAPTERS];
    float scales[SLM_TURN_MAX_ADAPTERS];
    if (c->n_adapters > SLM_TURN_MAX_ADAPTERS) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "local target '%s': at most %d adapters", c->name,
                           SLM_TURN_MAX_ADAPTERS);
    }
    for (size_t i = 0; i < c->n_adapters; i++) {
        paths[i] = c->adapters[i].path;
        scales[i] = c->adapters[i].scale;
    }
    struct slm_turn_params tp = slm_turn_params_default();
    tp.template_path = c->template_path;
    tp.system = c->system;
    tp.parameters = c->parameters;
    tp.adapter_paths = paths;
    tp.adapter_scales = scales;
    tp.n_adapters = c->n_adapters;
    int rc = slm_turn_open(r->store, c->model, &tp, &lt->turn, err);
    return rc == SLM_OK ? SLM_OK : slm_err_prefix(err, "local target '%s'", c->name);
}

/* Label targets keep their model pinned and own a scorer + label set. */
static int setup_labels(struct slm_router *r, struct slm__local_rt *lt, struct slm_err *err) {
    const struct slm_turn *t = lt->turn;
    int rc = slm_pool_acquire(r->pool, t->manifest->model_path, -2, &lt->pinned_sched,
                              &lt->pinned_model, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_adapter *ads[SLM_TURN_MAX_ADAPTERS + 1] = {0};
    for (size_t i = 0; i < t->n_adapters && rc == SLM_OK; i++) {
        rc = slm_pool_adapter(r->pool, lt->pinned_model, t->adapter_paths[i], &ads[i], err);
    }
    struct slm_scorer_params sp = slm_scorer_params_default();
    sp.n_threads = r->n_threads;
    if (t->options.num_ctx > 0) {
        sp.n_ctx = (uint32_t)t->options.num_ctx;
    }
    if (rc == SLM_OK) {
        rc = slm_scorer_init_params(lt->pinned_model, ads, t->adapter_scales, t->n_adapters, &sp,
                                    &lt->scorer, err);
    }
    struct slm_label_set_params lp = slm_label_set_params_default();
    lp.correction = lt->cfg->correction;
    if (rc == SLM_OK) {
        rc = slm_label_set_init(lt->pinned_model, (const char *const *)lt->cfg->labels,
                                lt->cfg->n_labels, &lp, &lt->labels, err);
    }
    return rc;
}

static int ensure_resolved(struct slm_router *r, struct slm__local_rt *lt, struct slm_err *err) {
    pthread_mutex_lock(&lt->mu);
    int rc = SLM_OK;
    if (!lt->resolved) {
        rc = resolve(r, lt, err);
        if (rc == SLM_OK && lt->cfg->score_labels) {
            rc = setup_labels(r, lt, err);
        }
        if (rc == SLM_OK) {
            lt->resolved = true;
        } else {
            /* try again from scratch on the next request (the store may change) */
            slm__local_rt_free(r, lt);
            lt->labels = NULL;
            lt->scorer = NULL;
            lt->pinned_sched = NULL;
            lt->pinned_model = NULL;
            lt->turn = NULL;
        }
    }
    pthread_mutex_unlock(&lt->mu);
    return rc;
}

void slm__local_rt_free(struct slm_router *r, struct slm__local_rt *lt) {
    slm_label_set_free(lt->labels);
    slm_scorer_free(lt->scorer);
    if (lt->pinned_sched) {
        slm_pool_release(r->pool, lt->pinned_sched);
    }
    slm_turn_free(lt->turn);
}

/* ---------------------------------------------------------------- prompts */

/* The request's messages with their content as text (parts joined). */
static json_t *text_messages(const json_t *messages) {
    json_t *out = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        char *text = slm__message_text(json_object_get(m, "content"));
        json_t *c = json_deep_copy(m);
        if (!out || !text || !c) {
            free(text);
            json_decref(c);
            json_decref(out);
            return NULL;
        }
        json_object_set_new(c, "content", json_string(text));
        free(text);
        json_array_append_new(out, c);
    }
    return out;
}

/* The prompt through the turn (slm/turn.h): the target's template renders
 * the whole prompt, as `slm tune` renders training prompts; without one, the
 * chat template. `input` replaces the last user message's text. */
static int render_prompt(const struct slm__local_rt *lt, const struct slm_model *model,
                         const struct slm__req_view *rv, const char *input, struct slm_buf *out,
                         struct slm_err *err) {
    json_t *msgs = text_messages(rv->messages);
    if (!msgs) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_turn_req tr = {0};
    tr.kind = SLM_TURN_PROMPT;
    tr.messages = msgs;
    tr.input = input;
    tr.variables = rv->variables;
    int rc = slm_turn_prompt(lt->turn, model, &tr, out, NULL, err);
    json_decref(msgs);
    return rc;
}

/* ---------------------------------------------------------------- runs */

/* The request may set the sampling fields the option table names for OpenAI
 * (temperature, top_p, max_tokens, seed, stop, ...). */
static int request_options(const struct slm__local_rt *lt, const json_t *request,
                           struct slm_options *o, struct slm_err *err) {
    json_t *named = json_object();
    const char *bad = NULL;
    int rc = named ? slm_options_from_openai(request, named, &bad, err)
                   : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    if (rc == SLM_OK) {
        rc = slm_turn_options(lt->turn, named, o, err);
    } else {
        slm_options_init(o);
        slm_err_prefix(err, "request");
    }
    json_decref(named);
    return rc;
}

static int wait_request(struct slm_request *req, const volatile int *cancel, double deadline,
                        struct slm_router_local_result *out, struct slm_err *err) {
    struct slm_req_token *toks = calloc(TOK_CAP, sizeof(*toks));
    size_t cap_lp = 0;
    int rc = toks ? SLM_OK : SLM_E_NOMEM;
    for (bool done = false; !done && rc == SLM_OK;) {
        if (cancel && *cancel) {
            rc = slm_err_set(err, SLM_E_ABORTED, "cancelled");
            break;
        }
        if (deadline > 0 && slm_time_mono() > deadline) {
            rc = slm_err_set(err, SLM_E_TIMEOUT, "the local target passed its timeout");
            break;
        }
        size_t n = 0;
        rc = slm_request_read(req, READ_SLICE_MS, &out->text, toks, TOK_CAP, &n, &done);
        if (rc == SLM_OK && (size_t)out->n_gen + n > cap_lp) {
            cap_lp = ((size_t)out->n_gen + n) * 2 + 16;
            float *nl = realloc(out->logprobs, cap_lp * sizeof(*nl));
            rc = nl ? SLM_OK : SLM_E_NOMEM;
            out->logprobs = nl ? nl : out->logprobs;
        }
        for (size_t i = 0; rc == SLM_OK && i < n; i++) {
            out->logprobs[out->n_gen++] = toks[i].logprob;
        }
    }
    free(toks);
    if (rc != SLM_OK) {
        slm_request_cancel(req);
        return rc;
    }
    struct slm_gen_stats st;
    rc = slm_request_result(req, &st, err);
    out->n_prompt = st.n_prompt;
    out->finish = slm_finish_name(st.finish);
    return rc;
}

static int run_generate(struct slm_router *r, struct slm__local_rt *lt,
                        const struct slm__req_view *rv, const json_t *request,
                        const volatile int *cancel, double deadline,
                        struct slm_router_local_result *out, struct slm_err *err) {
    const struct slm_turn *t = lt->turn;
    struct slm_sched *sched = NULL;
    struct slm_model *model = NULL;
    int rc = slm_pool_acquire(r->pool, t->manifest->model_path, -2, &sched, &model, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_options o;
    struct slm_buf prompt = {0};
    int32_t *toks = NULL;
    size_t n_toks = 0;
    struct slm_adapter *ads[SLM_TURN_MAX_ADAPTERS + 1] = {0};
    struct slm_request *req = NULL;
    rc = request_options(lt, request, &o, err);
    for (size_t i = 0; i < t->n_adapters && rc == SLM_OK; i++) {
        rc = slm_pool_adapter(r->pool, model, t->adapter_paths[i], &ads[i], err);
    }
    if (rc == SLM_OK) {
        rc = render_prompt(lt, model, rv, rv->input, &prompt, err);
    }
    if (rc == SLM_OK) {
        rc = slm_tokenize_alloc(model, slm_buf_str(&prompt), true, &toks, &n_toks, 0, err);
    }
    out->n_prompt = (int64_t)n_toks;
    if (rc == SLM_OK) {
        struct slm_req_params rp = {0};
        rp.gen = slm_options_gen_params(&o);
        rp.gen.logprobs = true;
        rp.adapters = ads;
        rp.scales = t->adapter_scales;
        rp.n_adapters = t->n_adapters;
        rc = slm_sched_submit(sched, toks, n_toks, &rp, &req, err);
    }
    if (rc == SLM_OK) {
        rc = wait_request(req, cancel, deadline, out, err);
    }
    slm_request_free(req);
    free(toks);
    slm_buf_free(&prompt);
    slm_options_free(&o);
    slm_pool_release(r->pool, sched);
    return rc;
}

static int run_labels(struct slm__local_rt *lt, const struct slm__req_view *rv,
                      struct slm_router_local_result *out, struct slm_err *err) {
    struct slm_buf prompt = {0}, empty = {0};
    int rc = render_prompt(lt, lt->pinned_model, rv, rv->input, &prompt, err);
    if (rc == SLM_OK) {
        rc = render_prompt(lt, lt->pinned_model, rv, "", &empty, err);
    }
    int32_t *toks = NULL;
    size_t n_toks = 0;
    if (rc == SLM_OK) {
        rc = slm_tokenize_alloc(lt->pinned_model, slm_buf_str(&prompt), true, &toks, &n_toks, 0,
                                err);
        out->n_prompt = (int64_t)n_toks;
        free(toks);
    }
    if (rc == SLM_OK) {
        struct slm_label_result lr;
        pthread_mutex_lock(&lt->mu);
        rc = slm_label_set_score(lt->labels, lt->scorer, slm_buf_str(&prompt), slm_buf_str(&empty),
                                 &lr, err);
        if (rc == SLM_OK) {
            out->has_label = true;
            out->label_index = lr.best;
            out->label_prob = lr.prob;
            out->label_margin = lr.margin;
            out->n_gen = (int64_t)lr.n_tokens[lr.best];
            rc = slm_buf_puts(&out->text, slm_label_set_label(lt->labels, lr.best));
        }
        pthread_mutex_unlock(&lt->mu);
        out->finish = "stop";
    }
    slm_buf_free(&prompt);
    slm_buf_free(&empty);
    return rc;
}

int slm__local_run(struct slm_router *r, size_t local, const struct slm__req_view *rv,
                   const json_t *request, const volatile int *cancel,
                   struct slm_router_local_result *out, struct slm_err *err) {
    (void)err;
    struct slm__local_rt *lt = &r->locals[local];
    double t0 = slm_time_mono();
    slm_signal_input(rv->input, strlen(rv->input), &out->input);
    struct slm_err lerr = {0};
    int rc = ensure_resolved(r, lt, &lerr);
    double deadline = lt->cfg->timeout_s > 0 ? t0 + lt->cfg->timeout_s : 0;
    if (rc == SLM_OK) {
        rc = lt->cfg->score_labels ? run_labels(lt, rv, out, &lerr)
                                   : run_generate(r, lt, rv, request, cancel, deadline, out, &lerr);
    }
    if (rc == SLM_OK && !lt->cfg->score_labels) {
        slm_signal_token_conf(out->logprobs, (size_t)out->n_gen, 0.1, &out->tok);
    }
    out->status = rc;
    if (rc != SLM_OK) {
        snprintf(out->error, sizeof(out->error), "%s", lerr.msg[0] ? lerr.msg : slm_strerror(rc));
    }
    out->latency_ms = (slm_time_mono() - t0) * 1000.0;
    return rc == SLM_E_ABORTED ? slm_err_set(err, rc, "cancelled") : SLM_OK;
}

void slm_router_local_result_free(struct slm_router_local_result *res) {
    slm_buf_free(&res->text);
    free(res->logprobs);
    memset(res, 0, sizeof(*res));
}
