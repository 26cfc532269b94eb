/*
 * cli/session.c - model + context + options for `slm run`, one turn at a
 * time. The prompt of every turn is built by the turn module (slm/turn.h),
 * as the server's and the router's are.
 */
#include "cli/session.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/grammar.h"
#include "slm/json.h"

int slm_session_estimate(const struct slm_session *s, int32_t num_ctx, int32_t num_batch,
                         struct slm_mem_estimate *out, struct slm_err *err) {
    struct slm_mem_params mp = slm_mem_params_default();
    mp.n_ctx = (uint32_t)SLM_MAX(num_ctx, 0);
    mp.n_batch = (uint32_t)SLM_MAX(num_batch, 0);
    mp.adapter_paths = (const char *const *)s->turn->adapter_paths;
    mp.n_adapters = s->turn->n_adapters;
    return slm_mem_estimate(s->turn->manifest->model_path, &mp, out, NULL, err);
}

int slm_session_check_fit(const struct slm_session *s, int32_t num_ctx, int32_t num_batch,
                          const struct slm_mem_estimate *loaded, struct slm_err *err) {
    struct slm_mem_estimate est;
    int rc = slm_session_estimate(s, num_ctx, num_batch, &est, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_mem_avail avail;
    slm_mem_usable(&avail, NULL, NULL);
    uint64_t have = avail.available;
    if (loaded && have + loaded->total >= have) {
        have += loaded->total; /* what this process holds now is reused */
    }
    rc = slm_mem_check(s->name ? s->name : s->turn->manifest->model_path, &est, have, err);
    if (rc != SLM_OK && s->force) {
        slm_cli_error("run", "warning: %s; loading anyway", err->msg);
        return SLM_OK;
    }
    return rc;
}

int slm_session_reload_ctx(struct slm_session *s, struct slm_err *err) {
    slm_ctx_free(s->ctx);
    s->ctx = NULL;
    struct slm_ctx_params cp = slm_ctx_params_default();
    cp.n_ctx = (uint32_t)s->opt.num_ctx;
    cp.n_batch = (uint32_t)s->opt.num_batch;
    cp.n_threads = s->opt.num_thread;
    int rc = slm_ctx_init(s->model, &cp, &s->ctx, err);
    if (rc == SLM_OK && s->n_adapters) {
        rc = slm_ctx_set_adapters(s->ctx, s->adapters, s->turn->adapter_scales, s->n_adapters, err);
    }
    return rc;
}

int slm_session_open(struct slm_session *s, struct slm_err *err) {
    double t0 = slm_time_mono();
    struct slm_model_params mp = slm_model_params_default();
    int rc = slm_model_load(s->turn->manifest->model_path, &mp, &s->model, err);
    if (rc != SLM_OK) {
        return rc;
    }
    for (size_t i = 0; i < s->turn->n_adapters; i++) {
        rc = slm_adapter_load(s->model, s->turn->adapter_paths[i], &s->adapters[i], err);
        if (rc != SLM_OK) {
            return rc;
        }
        s->n_adapters = i + 1; /* free only what was loaded */
    }
    rc = slm_session_reload_ctx(s, err);
    s->t_load = slm_time_mono() - t0;
    return rc;
}

void slm_session_close(struct slm_session *s) {
    slm_ctx_free(s->ctx);
    for (size_t i = 0; i < s->n_adapters; i++) {
        slm_adapter_free(s->adapters[i]);
    }
    slm_model_free(s->model);
    slm_turn_free(s->turn);
    slm_options_free(&s->opt);
    free(s->system);
    free(s->grammar);
    json_decref(s->vars);
    json_decref(s->messages);
    json_decref(s->schema);
    memset(s, 0, sizeof(*s));
}

/* The prompt of the next turn (slm/turn.h); `turn` gets the user turn as the
 * template rendered it, which the history keeps. */
static int build_prompt(struct slm_session *s, const char *input, struct slm_buf *out,
                        struct slm_buf *turn, struct slm_err *err) {
    struct slm_turn_req r = {0};
    r.variables = s->vars;
    json_t *conv = NULL;
    if (s->chat_format) {
        conv = json_array();
        if (!conv) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        if (s->system && s->system[0]) {
            json_array_append_new(conv,
                                  json_pack("{s:s,s:s}", "role", "system", "content", s->system));
        }
        json_array_extend(conv, s->messages);
        json_array_append_new(conv, json_pack("{s:s,s:s}", "role", "user", "content", input));
        r.kind = SLM_TURN_CHAT;
        r.messages = conv;
    } else {
        r.kind = SLM_TURN_COMPLETION;
        r.prompt = slm_str_c(input);
    }
    int rc = slm_turn_prompt(s->turn, s->model, &r, out, turn, err);
    json_decref(conv);
    return rc;
}

struct stream {
    struct slm_session *s;
    FILE *out;
    struct slm_buf *answer;
    bool tty;
    int err;
    int n_ids;
};

static int on_token(const struct slm_token_event *ev, void *user) {
    struct stream *st = user;
    if (slm_cli_interrupted) {
        return 1;
    }
    if (ev->len && slm_buf_append(st->answer, ev->text, ev->len) != SLM_OK) {
        st->err = SLM_E_TOO_LARGE;
        return 1;
    }
    if (st->s->token_ids) {
        if (ev->token >= 0) {
            fprintf(st->out, "%s%d", st->n_ids++ ? " " : "", ev->token);
        }
    } else if (ev->len) {
        fwrite(ev->text, 1, ev->len, st->out);
    }
    if (st->tty) {
        fflush(st->out);
    }
    return 0;
}

static int check_json(struct slm_session *s, const struct slm_buf *answer, struct slm_err *err) {
    if (s->last.finish == SLM_FINISH_LENGTH || s->last.finish == SLM_FINISH_CONTEXT) {
        return slm_err_set(err, SLM_E_INCOMPLETE,
                           "output is incomplete JSON: generation stopped at %d tokens (%s); "
                           "raise --max-tokens",
                           s->last.n_gen,
                           s->last.finish == SLM_FINISH_LENGTH ? "--max-tokens" : "context full");
    }
    json_t *v = NULL;
    int rc = slm_json_parse(answer->ptr ? answer->ptr : "", answer->len, "output", &v, err);
    if (rc != SLM_OK) {
        return slm_err_set(err, SLM_E_INCOMPLETE, "output is not valid JSON: %s",
                           err ? err->msg : "");
    }
    if (s->schema) {
        rc = slm_json_schema_validate(s->schema, v, err);
        if (rc != SLM_OK) {
            json_decref(v);
            return slm_err_set(err, SLM_E_INCOMPLETE, "output does not match the schema: %s",
                               err ? err->msg : "");
        }
    }
    json_decref(v);
    return SLM_OK;
}

static int remember_turn(struct slm_session *s, const char *input, const struct slm_buf *answer) {
    json_t *u = json_pack("{s:s,s:s}", "role", "user", "content", input);
    json_t *a =
        json_pack("{s:s,s:s%}", "role", "assistant", "content", slm_buf_cstr(answer), answer->len);
    if (!u || !a) {
        json_decref(u);
        json_decref(a);
        return SLM_E_NOMEM;
    }
    json_array_append_new(s->messages, u);
    json_array_append_new(s->messages, a);
    return SLM_OK;
}

int slm_session_turn(struct slm_session *s, const char *input, FILE *out, struct slm_buf *answer,
                     struct slm_err *err) {
    struct slm_buf prompt = {0};
    struct slm_buf turn = {0};
    int32_t *toks = NULL;
    size_t n_toks = 0;
    slm_buf_clear(answer);
    int rc = SLM_OK;
    if (s->suffix) {
        struct slm_fim_params fp = slm_fim_params_default();
        fp.prefix = slm_str_c(input);
        fp.suffix = slm_str_c(s->suffix);
        fp.n_ctx = (int32_t)slm_ctx_n_ctx(s->ctx);
        rc = slm_fim_tokens(s->model, &fp, &toks, &n_toks, err);
        if (rc == SLM_E_UNSUPPORTED) {
            slm_err_prefix(err, "--suffix: this model cannot fill in the middle");
        }
    } else {
        rc = build_prompt(s, input, &prompt, &turn, err);
        if (rc == SLM_OK) {
            rc = slm_tokenize_alloc(s->model, slm_buf_str(&prompt), true, &toks, &n_toks, 0, err);
        }
    }
    if (rc != SLM_OK) {
        goto done;
    }
    struct slm_gen_params gp = slm_options_gen_params(&s->opt);
    gp.sample.grammar = s->grammar;
    gp.ignore_eos = s->ignore_eos;
    struct stream st = {s, out, answer, slm_cli_stdout_tty(), SLM_OK, 0};
    rc = slm_generate(s->ctx, toks, n_toks, &gp, on_token, &st, &s->last, err);
    if (rc == SLM_OK && st.err != SLM_OK) {
        rc = slm_err_set(err, st.err, "output too large");
    }
    if (rc == SLM_OK && s->last.finish == SLM_FINISH_ABORTED) {
        rc = slm_err_set(err, SLM_E_ABORTED, "interrupted");
    }
    if (rc == SLM_OK && s->want_json) {
        rc = check_json(s, answer, err);
    }
    if (rc == SLM_OK && s->chat_format) {
        rc = remember_turn(s, slm_buf_cstr(&turn), answer);
    }
done:
    free(toks);
    slm_buf_free(&turn);
    slm_buf_free(&prompt);
    return rc;
}

void slm_session_print_stats(const struct slm_session *s) {
    const struct slm_gen_stats *g = &s->last;
    int32_t evaluated = g->n_prompt - g->n_cached;
    fprintf(stderr, "load: %.3f s\n", s->t_load);
    fprintf(stderr, "prompt: %d tokens, %.3f s, %.2f tokens/s\n", evaluated, g->t_prompt,
            g->t_prompt > 0 ? evaluated / g->t_prompt : 0.0);
    fprintf(stderr, "generate: %d tokens, %.3f s, %.2f tokens/s\n", g->n_gen, g->t_gen,
            g->t_gen > 0 ? g->n_gen / g->t_gen : 0.0);
}
