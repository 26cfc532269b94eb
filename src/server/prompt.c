/*
 * server/prompt.c - from a parsed request to tokens ready for the scheduler.
 * The prompt itself is built by the turn module (slm/turn.h), as for
 * `slm run` and the router; what is the server's own is here:
 *
 *   1. the model name resolves through the store (never a file path: a
 *      client cannot make the server open files);
 *   2. the request's options over the model's, and the server's token cap;
 *   3. the request's kind, messages, tools and format as a turn request,
 *      with the tool family and prompt picked from the model's header;
 *   4. the model pinned in the backend with its adapters;
 *   5. one item per prompt x choice: text -> tokens (or the client's token
 *      ids), checked against the context.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#include "slm/json.h"

uint32_t srv_job_n_ctx(const struct srv_job *j) {
    if (j->srv->p.n_ctx_seq > 0) {
        return j->srv->p.n_ctx_seq;
    }
    /* The scheduler's default (slm/sched.h): the training context, at most 4096. */
    int32_t train = j->facts.info.n_ctx_train;
    return train > 0 && train < 4096 ? (uint32_t)train : 4096;
}

/* ---------------------------------------------------------------- model and options */

/* The same 404 for every name the store does not hold: a path, a path after
 * '+', a missing model or a malformed name read alike, so a client learns
 * nothing about the server's files. */
int srv_model_not_found(struct srv_error *e, const char *name) {
    return srv_error_set(e, SLM_E_NOT_FOUND, 404, "invalid_request_error", "model_not_found",
                         "model '%.200s' not found: the server serves the models of its store "
                         "by name, not files (see GET /v1/models)",
                         name);
}

static int resolve(struct srv_job *j, struct srv_error *e) {
    struct slm_server *s = j->srv;
    const char *name = j->g->model ? j->g->model : s->p.default_model;
    if (!name) {
        return srv_bad(e, "model",
                       "'model' is required: the name of a model in the store (see GET "
                       "/v1/models), or start the server with slm serve --model NAME for "
                       "clients that name none");
    }
    struct slm_err err = {0};
    struct slm_turn_params tp = slm_turn_params_default();
    tp.resolve_flags = SLM_RESOLVE_STORE_ONLY;
    pthread_mutex_lock(&s->store_lock);
    int rc = slm_turn_open(s->store, name, &tp, &j->turn, &err);
    pthread_mutex_unlock(&s->store_lock);
    if (rc == SLM_E_NOT_FOUND || rc == SLM_E_INVALID) {
        return srv_model_not_found(e, name);
    }
    if (rc != SLM_OK) {
        return srv_fail(e, rc, &err);
    }
    rc = srv_model_facts(s, j->turn->manifest->model_path, &j->facts, &err);
    if (rc != SLM_OK) {
        return srv_fail(e, rc == SLM_E_INVALID ? SLM_E_CORRUPT : rc, &err);
    }
    j->model_name = strdup(name);
    return j->model_name ? SLM_OK : srv_fail(e, SLM_E_NOMEM, NULL);
}

static int options(struct srv_job *j, struct srv_error *e) {
    struct slm_err err = {0};
    slm_options_free(&j->opt);
    if (slm_turn_options(j->turn, j->g->options, &j->opt, &err) != SLM_OK) {
        return srv_bad(e, NULL, "%s", err.msg); /* checked by parse.c already */
    }
    int32_t cap = j->srv->p.max_tokens;
    if (cap > 0 && j->opt.num_predict > cap) {
        const char *param = j->g->api == SRV_API_OLLAMA ? "options.num_predict"
                            : j->g->fim.llama_api       ? "n_predict"
                                                        : "max_tokens";
        return srv_bad(e, param,
                       "at most %d tokens can be generated per request on this server (asked "
                       "for %d)",
                       cap, j->opt.num_predict);
    }
    if (cap > 0 && j->opt.num_predict < 0) {
        j->opt.num_predict = cap;
    }
    return SLM_OK;
}

/* The request as the turn module reads it; `input` for the prompt kinds. */
static struct slm_turn_req turn_req(const struct srv_job *j, struct slm_str input) {
    const struct srv_gen_req *g = j->g;
    struct slm_turn_req r = {0};
    switch (g->kind) {
    case SRV_KIND_CHAT: r.kind = SLM_TURN_CHAT; break;
    case SRV_KIND_GENERATE: r.kind = g->raw ? SLM_TURN_RAW : SLM_TURN_GENERATE; break;
    case SRV_KIND_COMPLETION: r.kind = SLM_TURN_COMPLETION; break;
    case SRV_KIND_EMBED: r.kind = SLM_TURN_RAW; break;
    }
    r.messages = g->messages;
    r.prompt = input;
    r.system = g->system;
    r.variables = g->variables;
    r.format = g->format;
    r.schema = g->schema;
    r.tools = g->tools;
    r.tool_choice = g->tool_choice;
    r.tool_name = g->tool_name;
    r.parallel_tool_calls = g->parallel_tool_calls;
    r.family = j->family;
    r.tool_prompt = j->srv->tool_tmpl;
    const struct slm_tool_family *fams = slm_tool_families();
    for (size_t i = 0; !r.tool_prompt && j->family && fams[i].name; i++) {
        if (&fams[i] == j->family) {
            r.tool_prompt = j->srv->family_tmpl[i];
        }
    }
    return r;
}

static int grammar(struct srv_job *j, struct srv_error *e) {
    const struct srv_gen_req *g = j->g;
    struct slm_turn_req r = turn_req(j, SLM_STR_NULL);
    const char *param = g->api == SRV_API_OLLAMA ? "format" : "response_format";
    if (g->format == SLM_TURN_FORMAT_TEXT) {
        param = "tools";
    }
    struct slm_err err = {0};
    int rc = slm_turn_grammar(&r, j->family, &j->grammar, &err);
    if (rc != SLM_OK) {
        if (g->format == SLM_TURN_FORMAT_SCHEMA) {
            slm_err_prefix(&err, "%s: schema", param);
        }
        srv_fail(e, rc == SLM_E_NOMEM ? rc : (rc == SLM_E_UNSUPPORTED ? rc : SLM_E_INVALID), &err);
        snprintf(e->param, sizeof(e->param), "%s", param);
        return rc;
    }
    return SLM_OK;
}

/* Adds one adapter (`what` names it in errors) to the job's set. */
static int add_adapter(struct srv_job *j, const char *path, float scale, const char *what,
                       struct srv_error *e) {
    const struct slm_server_backend *b = &j->srv->p.backend;
    if (j->n_adapters == SRV_MAX_ADAPTERS) {
        return srv_bad(e, "lora", "at most %d adapters apply to one request", SRV_MAX_ADAPTERS);
    }
    struct slm_err err = {0};
    int rc = b->adapter(b->user, j->model, path, &j->adapters[j->n_adapters], &err);
    if (rc == SLM_E_INVALID) {
        return srv_bad(e, "lora", "%s does not fit model '%s': %s", what, j->model_name, err.msg);
    }
    if (rc != SLM_OK) {
        return srv_fail(e, SLM_E_BACKEND, &err);
    }
    j->scales[j->n_adapters++] = scale;
    return SLM_OK;
}

/* The request's "lora": the server's --lora adapters by id, a store model's adapters by
 * name (each at its own scale times the request's). */
static int request_adapters(struct srv_job *j, struct srv_error *e) {
    struct slm_server *s = j->srv;
    const struct srv_gen_req *g = j->g;
    int rc = SLM_OK;
    for (size_t i = 0; i < g->n_lora && rc == SLM_OK; i++) {
        const struct srv_lora_req *l = &g->lora[i];
        char what[160];
        if (l->id >= 0) {
            if ((size_t)l->id >= s->n_lora) {
                return s->n_lora ? srv_bad(e, "lora",
                                           "lora id %d is not one of the server's %zu adapters "
                                           "(GET /lora-adapters lists them)",
                                           (int)l->id, s->n_lora)
                                 : srv_bad(e, "lora",
                                           "lora id %d: the server has no adapters (start it "
                                           "with slm serve --lora FILE)",
                                           (int)l->id);
            }
            snprintf(what, sizeof(what), "lora id %d", (int)l->id);
            rc = add_adapter(j, s->lora[l->id].path, l->scale, what, e);
            continue;
        }
        struct slm_manifest *m = NULL;
        struct slm_err err = {0};
        pthread_mutex_lock(&s->store_lock);
        rc = slm_store_resolve_flags(s->store, l->name, SLM_RESOLVE_STORE_ONLY, &m, &err);
        pthread_mutex_unlock(&s->store_lock);
        if (rc == SLM_E_NOT_FOUND || rc == SLM_E_INVALID) {
            return srv_bad(e, "lora", "lora name '%s' is not a model of the store (slm list)",
                           l->name);
        }
        if (rc != SLM_OK) {
            return srv_fail(e, rc, &err);
        }
        if (m->n_adapters == 0) {
            rc = srv_bad(e, "lora", "lora name '%s' has no adapters (slm show %s)", l->name,
                         l->name);
        }
        for (size_t k = 0; k < m->n_adapters && rc == SLM_OK; k++) {
            snprintf(what, sizeof(what), "the adapter of '%s'", l->name);
            rc = add_adapter(j, m->adapters[k].path, l->scale * m->adapters[k].scale, what, e);
        }
        slm_manifest_free(m);
    }
    return rc;
}

static int acquire(struct srv_job *j, struct srv_error *e) {
    struct slm_server *s = j->srv;
    const struct slm_server_backend *b = &s->p.backend;
    const struct slm_turn *t = j->turn;
    struct slm_err err = {0};
    double t0 = slm_time_mono();
    int rc = b->acquire(b->user, t->manifest->model_path, j->g->keep_alive_ms, &j->sched, &j->model,
                        &err);
    j->t_load = slm_time_mono() - t0;
    if (rc != SLM_OK) {
        return srv_fail(e, rc == SLM_E_INVALID ? SLM_E_BACKEND : rc, &err);
    }
    j->pinned = true;
    srv_note_name(s, t->manifest->model_path, t->manifest->name ? t->manifest->name : j->model_name,
                  t->manifest->model_digest);
    for (size_t i = 0; i < t->n_adapters && i < SRV_MAX_ADAPTERS; i++) {
        rc = b->adapter(b->user, j->model, t->adapter_paths[i], &j->adapters[i], &err);
        if (rc != SLM_OK) {
            return srv_fail(e, SLM_E_BACKEND, &err);
        }
        j->scales[i] = t->adapter_scales[i];
        j->n_adapters = i + 1;
    }
    return request_adapters(j, e);
}

/* The prompt text of one input (or of the conversation), through the turn. */
static int prompt_text(struct srv_job *j, struct slm_str input, struct slm_buf *out,
                       struct srv_error *e) {
    struct slm_turn_req r = turn_req(j, input);
    struct slm_err err = {0};
    int rc = slm_turn_prompt(j->turn, j->model, &r, out, NULL, &err);
    if (rc == SLM_E_UNSUPPORTED) {
        rc = SLM_E_BACKEND;
    }
    if (rc == SLM_E_INVALID && strncmp(err.msg, "too many messages", 17) == 0) {
        return srv_bad(e, "messages", "too many messages");
    }
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, &err);
}

/* ---------------------------------------------------------------- tokens and items */

static int tokenize(struct srv_job *j, struct slm_str text, int32_t **toks, size_t *n,
                    struct srv_error *e) {
    struct slm_err err = {0};
    int rc = slm_tokenize_alloc(j->model, text, true, toks, n, 0, &err);
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, &err);
}

/* Token ids given by the client: checked against the vocabulary. */
static int copy_ids(struct srv_job *j, const json_t *ids, int32_t **toks, size_t *n,
                    struct srv_error *e) {
    size_t m = json_array_size(ids);
    int32_t vocab = slm_model_n_vocab(j->model);
    *toks = malloc(m * sizeof(**toks));
    if (!*toks) {
        return srv_fail(e, SLM_E_NOMEM, NULL);
    }
    for (size_t i = 0; i < m; i++) {
        json_int_t t = json_integer_value(json_array_get(ids, i));
        if (t < 0 || t >= vocab) {
            return srv_bad(e, "prompt", "token id %lld is outside the vocabulary (0..%d)",
                           (long long)t, vocab - 1);
        }
        (*toks)[i] = (int32_t)t;
    }
    *n = m;
    return SLM_OK;
}

/* A fill-in-the-middle prompt, as llama-server's /infill builds it (slm_fim_tokens): the
 * model's template and system message do not apply. */
static int fim_tokens(struct srv_job *j, int32_t **toks, size_t *n, struct srv_error *e) {
    const struct srv_fim *f = &j->g->fim;
    struct slm_fim_chunk extra[SRV_MAX_FIM_EXTRA];
    size_t n_extra = 0;
    size_t i;
    const json_t *c;
    json_array_foreach(f->extra, i, c) {
        const json_t *name = json_object_get(c, "filename");
        extra[n_extra++] =
            (struct slm_fim_chunk){.filename = name ? slm_json_str(name) : SLM_STR_NULL,
                                   .text = slm_json_str(json_object_get(c, "text"))};
    }
    struct slm_fim_params p = slm_fim_params_default();
    p.prefix = f->prefix;
    p.suffix = f->suffix;
    p.prompt = f->prompt;
    p.extra = extra;
    p.n_extra = n_extra;
    uint32_t n_ctx = srv_job_n_ctx(j);
    p.n_ctx = n_ctx ? (int32_t)SLM_MIN(n_ctx, (uint32_t)INT32_MAX) : p.n_ctx;
    struct slm_err err = {0};
    int rc = slm_fim_tokens(j->model, &p, toks, n, &err);
    if (rc == SLM_E_UNSUPPORTED) {
        return srv_error_set(e, rc, 400, "invalid_request_error", "fim_unsupported",
                             "model '%s' cannot fill in the middle: %s", j->model_name, err.msg);
    }
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, &err);
}

static int fit(struct srv_job *j, struct srv_item *it, struct srv_error *e) {
    uint32_t n_ctx = srv_job_n_ctx(j);
    if (n_ctx == 0 || it->n_toks < n_ctx) {
        return SLM_OK;
    }
    if (j->g->kind == SRV_KIND_EMBED && j->g->truncate) {
        it->n_toks = n_ctx - 1;
        return SLM_OK;
    }
    return srv_error_set(e, SLM_E_OVERFLOW, 400, "invalid_request_error", "context_length_exceeded",
                         "the prompt has %zu tokens; this model's context holds %u per request "
                         "(prompt and answer)",
                         it->n_toks, n_ctx);
}

static int add_item(struct srv_job *j, int prompt_index, int index, int32_t *toks, size_t n,
                    const char *echo, size_t echo_len, struct srv_error *e) {
    struct srv_item *it = &j->items[j->n_items++];
    it->index = index;
    it->prompt_index = prompt_index;
    it->toks = toks;
    it->n_toks = n;
    slm_buf_init(&it->text, SRV_MAX_TEXT);
    it->fresh = calloc(256, sizeof(*it->fresh));
    if (!it->fresh) {
        return srv_fail(e, SLM_E_NOMEM, NULL);
    }
    if (echo) {
        it->prompt_text = slm_str_dup(slm_str_n(echo, echo_len));
        if (!it->prompt_text) {
            return srv_fail(e, SLM_E_NOMEM, NULL);
        }
    }
    return fit(j, it, e);
}

/* Builds one item per prompt x choice. */
static int build_items(struct srv_job *j, struct srv_error *e) {
    const struct srv_gen_req *g = j->g;
    size_t n_prompts = g->kind == SRV_KIND_CHAT ? 1 : json_array_size(g->inputs);
    size_t n_items = n_prompts * (size_t)(g->n > 0 ? g->n : 1);
    j->items = calloc(n_items ? n_items : 1, sizeof(*j->items));
    if (!j->items) {
        return srv_fail(e, SLM_E_NOMEM, NULL);
    }
    int rc = SLM_OK;
    for (size_t p = 0; rc == SLM_OK && p < n_prompts; p++) {
        const json_t *in = g->kind == SRV_KIND_CHAT ? NULL : json_array_get(g->inputs, p);
        struct slm_buf text = {0};
        slm_buf_init(&text, SRV_MAX_PROMPT_TEXT);
        int32_t *toks = NULL;
        size_t n = 0;
        if (g->fim.on) {
            rc = fim_tokens(j, &toks, &n, e);
        } else if (g->kind == SRV_KIND_CHAT || json_is_string(in)) {
            rc = prompt_text(j, json_is_string(in) ? slm_json_str(in) : SLM_STR_NULL, &text, e);
        }
        if (rc == SLM_OK && !g->fim.on) {
            rc = in && json_is_array(in) ? copy_ids(j, in, &toks, &n, e)
                                         : tokenize(j, slm_buf_str(&text), &toks, &n, e);
        }
        struct slm_str echo = json_is_string(in) ? slm_json_str(in) : SLM_STR_NULL;
        for (int c = 0; rc == SLM_OK && c < g->n; c++) {
            int32_t *copy = c + 1 < g->n ? malloc((n ? n : 1) * sizeof(*copy)) : toks;
            if (!copy) {
                rc = srv_fail(e, SLM_E_NOMEM, NULL);
                break;
            }
            if (copy != toks) {
                memcpy(copy, toks, n * sizeof(*copy));
            }
            rc = add_item(j, (int)p, (int)(p * (size_t)g->n + (size_t)c), copy, n,
                          g->echo ? echo.ptr : NULL, echo.len, e);
            if (copy == toks) {
                toks = NULL;
            }
        }
        free(toks);
        slm_buf_free(&text);
    }
    return rc;
}

/* ---------------------------------------------------------------- prepare */

int srv_job_prepare(struct slm_server *s, struct srv_conn *rc, struct srv_gen_req *g,
                    struct srv_job **out, struct srv_error *e) {
    *out = NULL;
    struct srv_job *j = calloc(1, sizeof(*j));
    if (!j) {
        srv_gen_req_free(g);
        free(g);
        return srv_fail(e, SLM_E_NOMEM, NULL);
    }
    j->srv = s;
    j->conn = rc;
    j->g = g;
    j->t_start = slm_time_mono();
    j->created = slm_time_unix_ms() / 1000;
    slm_options_init(&j->opt);
    if (s->p.request_timeout > 0) {
        j->deadline = j->t_start + s->p.request_timeout;
    }
    int r = resolve(j, e);
    if (rc && r == SLM_OK) {
        snprintf(rc->model, sizeof(rc->model), "%s", j->model_name);
    }
    if (r == SLM_OK) {
        struct slm_turn_req tr = turn_req(j, SLM_STR_NULL);
        j->tools_on = slm_turn_uses_tools(&tr);
        j->family = slm_tool_family_for(j->facts.info.arch, j->facts.chat_template);
        r = options(j, e);
    }
    if (r == SLM_OK && g->kind != SRV_KIND_EMBED) {
        r = grammar(j, e);
    }
    if (r == SLM_OK) {
        r = acquire(j, e);
    }
    if (r == SLM_OK && !g->load_only) {
        r = build_items(j, e);
    }
    if (r != SLM_OK) {
        srv_job_free(j);
        return r;
    }
    *out = j;
    return SLM_OK;
}
