/*
 * server/prompt.c - from a parsed request to tokens ready for the scheduler,
 * the same way `slm run` does it (src/cli/session.c):
 *
 *   1. the model name resolves through the store (never a file path: a
 *      client cannot make the server open files);
 *   2. options: the model's PARAMETERs, then the request's fields;
 *   3. the system prompt: the request's, else the model's SYSTEM; the
 *      model's MESSAGEs follow it;
 *   4. the model's TEMPLATE (Liquid) renders the last user turn from the
 *      request's `variables` plus input, system and messages;
 *   5. tools: the family's tool prompt becomes the system message; earlier
 *      calls and results are replayed in the family's syntax;
 *   6. chat formatting with the model's template (ChatML when it has none),
 *      or the prompt as given (completions, raw generate);
 *   7. a grammar for json / json_schema / a required tool call;
 *   8. tokens, checked against the context.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#include "slm/grammar.h"
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

static int resolve(struct srv_job *j, struct srv_error *e) {
    struct slm_server *s = j->srv;
    const char *name = j->g->model;
    if (srv_name_is_path(name)) {
        return srv_error_set(e, SLM_E_NOT_FOUND, 404, "invalid_request_error", "model_not_found",
                             "model '%s' not found: the server serves models of its store by "
                             "name, not files (see GET /v1/models)",
                             name);
    }
    struct slm_err err = {0};
    pthread_mutex_lock(&s->store_lock);
    int rc = slm_store_resolve(s->store, name, &j->man, &err);
    pthread_mutex_unlock(&s->store_lock);
    if (rc != SLM_OK) {
        return srv_fail(e, rc == SLM_E_INVALID ? SLM_E_NOT_FOUND : rc, &err);
    }
    rc = srv_model_facts(s, j->man->model_path, &j->facts, &err);
    if (rc != SLM_OK) {
        return srv_fail(e, rc == SLM_E_INVALID ? SLM_E_CORRUPT : rc, &err);
    }
    j->model_name = strdup(name);
    return j->model_name ? SLM_OK : srv_fail(e, SLM_E_NOMEM, NULL);
}

static int options(struct srv_job *j, struct srv_error *e) {
    struct slm_err err = {0};
    slm_options_init(&j->opt);
    if (slm_options_apply(&j->opt, j->man->params, true, &err) != SLM_OK) {
        slm_err_prefix(&err, "the model's parameters");
        return srv_fail(e, SLM_E_CORRUPT, &err);
    }
    if (slm_options_apply(&j->opt, j->g->options, true, &err) != SLM_OK) {
        return srv_bad(e, NULL, "%s", err.msg); /* checked by parse.c already */
    }
    int32_t cap = j->srv->p.max_tokens;
    if (cap > 0 && j->opt.num_predict > cap) {
        return srv_bad(e, j->g->api == SRV_API_OLLAMA ? "options.num_predict" : "max_tokens",
                       "at most %d tokens can be generated per request on this server (asked "
                       "for %d)",
                       cap, j->opt.num_predict);
    }
    if (cap > 0 && j->opt.num_predict < 0) {
        j->opt.num_predict = cap;
    }
    return SLM_OK;
}

static int grammar(struct srv_job *j, struct srv_error *e) {
    const struct srv_gen_req *g = j->g;
    const char *param = g->api == SRV_API_OLLAMA ? "format" : "response_format";
    struct slm_err err = {0};
    struct slm_buf gb = {0};
    slm_buf_init(&gb, (size_t)4 << 20);
    int rc = SLM_OK;
    if (g->format == SRV_FMT_JSON) {
        rc = slm_buf_puts(&gb, slm_grammar_json_object);
    } else if (g->format == SRV_FMT_SCHEMA) {
        rc = slm_json_schema_to_gbnf(g->schema, &gb, &err);
        if (rc != SLM_OK) {
            slm_err_prefix(&err, "%s: schema", param);
        }
    } else if (j->tools_on && g->tool_choice >= SRV_TOOLS_REQUIRED) {
        param = "tools";
        rc =
            srv_tools_grammar(g->tools, g->tool_name, g->parallel_tool_calls, j->family, &gb, &err);
    } else {
        slm_buf_free(&gb);
        return SLM_OK;
    }
    if (rc != SLM_OK) {
        slm_buf_free(&gb);
        srv_fail(e, rc == SLM_E_NOMEM ? rc : (rc == SLM_E_UNSUPPORTED ? rc : SLM_E_INVALID), &err);
        snprintf(e->param, sizeof(e->param), "%s", param);
        return rc;
    }
    j->grammar = slm_buf_take(&gb);
    return j->grammar ? SLM_OK : srv_fail(e, SLM_E_NOMEM, NULL);
}

static int acquire(struct srv_job *j, struct srv_error *e) {
    struct slm_server *s = j->srv;
    const struct slm_server_backend *b = &s->p.backend;
    struct slm_err err = {0};
    double t0 = slm_time_mono();
    int rc =
        b->acquire(b->user, j->man->model_path, j->g->keep_alive_ms, &j->sched, &j->model, &err);
    j->t_load = slm_time_mono() - t0;
    if (rc != SLM_OK) {
        return srv_fail(e, rc == SLM_E_INVALID ? SLM_E_BACKEND : rc, &err);
    }
    j->pinned = true;
    srv_note_name(s, j->man->model_path, j->man->name ? j->man->name : j->model_name,
                  j->man->model_digest);
    for (size_t i = 0; i < j->man->n_adapters && i < SRV_MAX_ADAPTERS; i++) {
        rc = b->adapter(b->user, j->model, j->man->adapters[i].path, &j->adapters[i], &err);
        if (rc != SLM_OK) {
            return srv_fail(e, SLM_E_BACKEND, &err);
        }
        j->scales[i] = j->man->adapters[i].scale;
        j->n_adapters = i + 1;
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- prompt text */

/* The model's TEMPLATE renders `input` (the user turn). */
static int render_input(struct srv_job *j, const char *input, size_t len, const char *system,
                        const json_t *history, struct slm_buf *out, struct srv_error *e) {
    if (!j->man->template_path) {
        return slm_buf_append(out, input, len) == SLM_OK ? SLM_OK
                                                         : srv_fail(e, SLM_E_TOO_LARGE, NULL);
    }
    struct slm_err err = {0};
    struct slm_liquid_template *t = NULL;
    struct slm_liquid_params lp = slm_liquid_params_default();
    int rc = slm_liquid_parse_file(j->man->template_path, &lp, &t, &err);
    json_t *vars = j->g->variables ? json_deep_copy(j->g->variables) : json_object();
    if (rc == SLM_OK && !vars) {
        rc = slm_err_set(&err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK) {
        json_object_set_new(vars, "input", json_stringn(input, len));
        json_object_set_new(vars, "system", system ? json_string(system) : json_null());
        json_object_set_new(vars, "messages",
                            history ? json_incref((json_t *)history) : json_array());
        rc = slm_liquid_render(t, vars, out, &err);
    }
    json_decref(vars);
    slm_liquid_free(t);
    if (rc != SLM_OK) {
        slm_err_prefix(&err, "the model's template");
        return srv_fail(e, rc == SLM_E_NOMEM ? rc : SLM_E_INVALID, &err);
    }
    return SLM_OK;
}

static json_t *msg(const char *role, const char *content, size_t len) {
    return json_pack("{s:s,s:s%}", "role", role, "content", content ? content : "",
                     content ? len : 0);
}

/* The tool prompt, rendered from the current system text. */
static int tool_system(struct srv_job *j, const char *system, struct slm_buf *out,
                       struct srv_error *e) {
    struct slm_server *s = j->srv;
    const struct slm_liquid_template *t = s->tool_tmpl;
    const struct srv_tool_family *fams = srv_tool_families();
    for (size_t i = 0; !t && fams[i].name; i++) {
        if (&fams[i] == j->family) {
            t = s->family_tmpl[i];
        }
    }
    static const char *const choice[] = {"none", "auto", "required", "named"};
    struct slm_err err = {0};
    int rc = srv_tools_render(t, j->g->tools, choice[j->g->tool_choice], j->g->tool_name, system,
                              j->family, out, &err);
    if (rc != SLM_OK) {
        slm_err_prefix(&err, "tool template");
        return srv_fail(e, rc == SLM_E_NOMEM ? rc : SLM_E_INVALID, &err);
    }
    return SLM_OK;
}

/* A request message in the model's words: tool calls and results replayed in
 * the family's syntax. */
static json_t *replay(struct srv_job *j, const json_t *m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    struct slm_str content = slm_json_str(json_object_get(m, "content"));
    const json_t *calls = json_object_get(m, "tool_calls");
    const struct srv_tool_family *f = j->family;
    if (strcmp(role, "tool") == 0 && f) {
        struct slm_buf b = {0};
        slm_buf_init(&b, SRV_MAX_PROMPT_TEXT);
        json_t *out = NULL;
        if (slm_buf_puts(&b, f->result_open) == SLM_OK &&
            slm_buf_append_str(&b, content) == SLM_OK &&
            slm_buf_puts(&b, f->result_close) == SLM_OK) {
            out = msg(f->result_role, b.ptr, b.len);
        }
        slm_buf_free(&b);
        return out;
    }
    if (!calls || !f) {
        return msg(role, content.ptr, content.len);
    }
    struct slm_buf b = {0};
    slm_buf_init(&b, SRV_MAX_PROMPT_TEXT);
    int rc = slm_buf_append_str(&b, content);
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c) {
        if (rc == SLM_OK && b.len) {
            rc = slm_buf_putc(&b, '\n');
        }
        if (rc == SLM_OK) {
            rc = srv_tools_format_call(f, json_string_value(json_object_get(c, "name")),
                                       json_object_get(c, "arguments"), &b);
        }
    }
    json_t *out = rc == SLM_OK ? msg(role, b.ptr, b.len) : NULL;
    slm_buf_free(&b);
    return out;
}

/* The conversation as the model sees it: system (request's, or the model's),
 * the model's MESSAGEs, then the request's messages. */
static int conversation(struct srv_job *j, json_t *conv, struct srv_error *e) {
    const json_t *ms = j->g->messages;
    size_t n = json_array_size(ms);
    size_t lead = 0; /* leading system messages */
    while (lead < n && strcmp(json_string_value(json_object_get(json_array_get(ms, lead), "role")),
                              "system") == 0) {
        lead++;
    }
    bool has_system = false;
    for (size_t i = 0; i < n; i++) {
        has_system |= strcmp(json_string_value(json_object_get(json_array_get(ms, i), "role")),
                             "system") == 0;
    }
    if (!has_system && j->man->system) {
        json_array_append_new(conv, msg("system", j->man->system, strlen(j->man->system)));
    }
    for (size_t i = 0; i <= n; i++) {
        if (i == lead) {
            json_array_extend(conv, j->man->messages);
        }
        if (i == n) {
            break;
        }
        json_t *m = replay(j, json_array_get(ms, i));
        if (!m || json_array_append_new(conv, m) != 0) {
            return srv_fail(e, SLM_E_NOMEM, NULL);
        }
    }
    if (json_array_size(conv) > SRV_MAX_MESSAGES * 2) {
        return srv_bad(e, "messages", "too many messages");
    }
    return SLM_OK;
}

/* Tools: the system message becomes the tool prompt. */
static int apply_tools(struct srv_job *j, json_t *conv, struct srv_error *e) {
    json_t *first = json_array_get(conv, 0);
    bool sys = first && strcmp(json_string_value(json_object_get(first, "role")), "system") == 0;
    struct slm_buf b = {0};
    slm_buf_init(&b, SRV_MAX_PROMPT_TEXT);
    int rc =
        tool_system(j, sys ? json_string_value(json_object_get(first, "content")) : NULL, &b, e);
    if (rc == SLM_OK) {
        json_t *m = msg("system", b.ptr, b.len);
        rc = m ? SLM_OK : srv_fail(e, SLM_E_NOMEM, NULL);
        if (rc == SLM_OK && sys) {
            json_array_set_new(conv, 0, m);
        } else if (rc == SLM_OK) {
            json_array_insert_new(conv, 0, m);
        }
    }
    slm_buf_free(&b);
    return rc;
}

/* The last user turn goes through the model's TEMPLATE. */
static int template_last_user(struct srv_job *j, json_t *conv, struct srv_error *e) {
    size_t n = json_array_size(conv);
    if (!j->man->template_path || n == 0) {
        return SLM_OK;
    }
    json_t *last = json_array_get(conv, n - 1);
    if (strcmp(json_string_value(json_object_get(last, "role")), "user") != 0) {
        return SLM_OK;
    }
    json_t *first = json_array_get(conv, 0);
    const char *system = strcmp(json_string_value(json_object_get(first, "role")), "system") == 0
                             ? json_string_value(json_object_get(first, "content"))
                             : NULL;
    json_t *history = json_array();
    for (size_t i = system ? 1 : 0; history && i + 1 < n; i++) {
        json_array_append(history, json_array_get(conv, i));
    }
    struct slm_buf b = {0};
    slm_buf_init(&b, SRV_MAX_PROMPT_TEXT);
    struct slm_str in = slm_json_str(json_object_get(last, "content"));
    int rc = history ? render_input(j, in.ptr, in.len, system, history, &b, e)
                     : srv_fail(e, SLM_E_NOMEM, NULL);
    if (rc == SLM_OK) {
        json_object_set_new(last, "content", json_stringn(b.ptr ? b.ptr : "", b.len));
    }
    json_decref(history);
    slm_buf_free(&b);
    return rc;
}

static int format_chat(struct srv_job *j, const json_t *conv, struct slm_buf *out,
                       struct srv_error *e) {
    size_t n = json_array_size(conv);
    struct slm_chat_msg *cm = calloc(n ? n : 1, sizeof(*cm));
    if (!cm) {
        return srv_fail(e, SLM_E_NOMEM, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(conv, i);
        cm[i].role = json_string_value(json_object_get(m, "role"));
        cm[i].content = json_string_value(json_object_get(m, "content"));
    }
    struct slm_err err = {0};
    int rc = slm_chat_format(j->model, NULL, cm, n, true, out, &err);
    free(cm);
    j->chat_formatted = true;
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc == SLM_E_UNSUPPORTED ? SLM_E_BACKEND : rc, &err);
}

static int chat_prompt(struct srv_job *j, struct slm_buf *out, struct srv_error *e) {
    json_t *conv = json_array();
    int rc = conv ? conversation(j, conv, e) : srv_fail(e, SLM_E_NOMEM, NULL);
    if (rc == SLM_OK) {
        rc = template_last_user(j, conv, e);
    }
    if (rc == SLM_OK && j->tools_on) {
        rc = apply_tools(j, conv, e);
    }
    if (rc == SLM_OK) {
        rc = format_chat(j, conv, out, e);
    }
    json_decref(conv);
    return rc;
}

/* Ollama generate: the TEMPLATE renders the prompt, then the chat template
 * unless raw or the model has none (as `slm run` does). */
static int generate_prompt(struct srv_job *j, struct slm_str input, struct slm_buf *out,
                           struct srv_error *e) {
    const struct srv_gen_req *g = j->g;
    if (g->raw) {
        return slm_buf_append_str(out, input) == SLM_OK ? SLM_OK
                                                        : srv_fail(e, SLM_E_TOO_LARGE, NULL);
    }
    const char *system = g->system ? g->system : j->man->system;
    struct slm_buf turn = {0};
    slm_buf_init(&turn, SRV_MAX_PROMPT_TEXT);
    int rc = render_input(j, input.ptr, input.len, system, j->man->messages, &turn, e);
    if (rc == SLM_OK && j->facts.info.has_chat_template) {
        json_t *conv = json_array();
        if (system && system[0]) {
            json_array_append_new(conv, msg("system", system, strlen(system)));
        }
        json_array_extend(conv, j->man->messages);
        json_array_append_new(conv, msg("user", turn.ptr, turn.len));
        rc = format_chat(j, conv, out, e);
        json_decref(conv);
    } else if (rc == SLM_OK) {
        rc = slm_buf_append_str(out, slm_buf_str(&turn)) == SLM_OK
                 ? SLM_OK
                 : srv_fail(e, SLM_E_TOO_LARGE, NULL);
    }
    slm_buf_free(&turn);
    return rc;
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
        if (g->kind == SRV_KIND_CHAT) {
            rc = chat_prompt(j, &text, e);
        } else if (json_is_string(in) && g->kind == SRV_KIND_GENERATE) {
            rc = generate_prompt(j, slm_json_str(in), &text, e);
        } else if (json_is_string(in) && g->kind == SRV_KIND_COMPLETION) {
            struct slm_str s = slm_json_str(in);
            rc = render_input(j, s.ptr, s.len, j->man->system, j->man->messages, &text, e);
        } else if (json_is_string(in)) {
            rc = slm_buf_append_str(&text, slm_json_str(in)) == SLM_OK
                     ? SLM_OK
                     : srv_fail(e, SLM_E_TOO_LARGE, NULL);
        }
        if (rc == SLM_OK) {
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
        j->tools_on = g->tools && g->tool_choice != SRV_TOOLS_OFF && g->kind == SRV_KIND_CHAT;
        j->family = srv_tool_family_for(j->facts.info.arch, j->facts.chat_template);
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
