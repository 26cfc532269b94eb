/*
 * engine/fim.c - fill-in-the-middle prompts (slm/engine.h, slm_fim_tokens):
 * the tokens llama-server's /infill decodes for the same request, so editor
 * plugins written for it (llama.vim, llama.vscode) see the same completions.
 *
 * The layout is llama.cpp v0.5.0's format_prompt_infill (tools/server), the
 * repository-level pattern of Qwen2.5-Coder (arXiv 2409.12186):
 *
 *   [extra context] [BOS] FIM_PRE prefix prompt FIM_SUF suffix FIM_MID
 *
 * where the extra context is FIM_REP "myproject\n", then per chunk FIM_SEP
 * "filename\n" text (or a "--- snippet ---" separator for models without
 * FIM_SEP), then FIM_SEP "filename\n". Long inputs are cut as llama-server
 * cuts them: the prefix keeps its last 3/4 of a batch, the suffix its first
 * quarter of a batch less the prompt, and the extra context the tail that
 * fits what the context leaves after a batch and twice n_predict. Prefix,
 * suffix and extra text are tokenized as plain text (no special tokens, no
 * BOS); the prompt (the line being typed) with special tokens parsed.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

/* A growable token array, capped. */
struct tvec {
    int32_t *t;
    size_t n, cap;
};

static int tv_reserve(struct tvec *v, size_t more, struct slm_err *err) {
    if (v->n + more <= v->cap) {
        return SLM_OK;
    }
    if (v->n + more > SLM_FIM_MAX_TOKENS) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "the fill-in-the-middle input passes %d tokens",
                           SLM_FIM_MAX_TOKENS);
    }
    size_t cap = SLM_MAX(v->cap * 2, v->n + more + 64);
    int32_t *t = realloc(v->t, cap * sizeof(*t));
    if (!t) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    v->t = t;
    v->cap = cap;
    return SLM_OK;
}

static int tv_push(struct tvec *v, int32_t tok, struct slm_err *err) {
    int rc = tv_reserve(v, 1, err);
    if (rc == SLM_OK) {
        v->t[v->n++] = tok;
    }
    return rc;
}

static int tv_cat(struct tvec *v, const int32_t *t, size_t n, struct slm_err *err) {
    int rc = tv_reserve(v, n, err);
    if (rc == SLM_OK && n) {
        memcpy(v->t + v->n, t, n * sizeof(*t));
        v->n += n;
    }
    return rc;
}

/* Appends the tokens of `text` (no BOS; special tokens parsed or not). */
static int tv_text(struct tvec *v, const struct slm_model *m, struct slm_str text, bool special,
                   struct slm_err *err) {
    if (text.len == 0) {
        return SLM_OK;
    }
    int rc = tv_reserve(v, text.len + 8, err); /* a token is at least one byte */
    if (rc != SLM_OK) {
        return rc;
    }
    int64_t n = slm_tokenize(m, text, false, special, v->t + v->n, v->cap - v->n);
    if (n < 0 || (size_t)n > v->cap - v->n) {
        return slm_err_set(err, SLM_E_INVALID, "the fill-in-the-middle text does not tokenize");
    }
    v->n += (size_t)n;
    return SLM_OK;
}

size_t slm_fim_missing(const struct slm_model *m, char *out, size_t cap) {
    const struct llama_vocab *v = m->vocab;
    const char *pre = llama_vocab_fim_pre(v) == LLAMA_TOKEN_NULL ? " prefix" : "";
    const char *suf = llama_vocab_fim_suf(v) == LLAMA_TOKEN_NULL ? " suffix" : "";
    const char *mid = llama_vocab_fim_mid(v) == LLAMA_TOKEN_NULL ? " middle" : "";
    if (!*pre && !*suf && !*mid) {
        if (cap) {
            out[0] = '\0';
        }
        return 0;
    }
    int n = snprintf(out, cap, "no fill-in-the-middle tokens in its vocabulary (missing:%s%s%s)",
                     pre, suf, mid);
    return n < 0 ? 0 : (size_t)n;
}

struct slm_fim_params slm_fim_params_default(void) {
    return (struct slm_fim_params){.n_batch = 2048, .n_predict = -1, .n_ctx = 4096};
}

/* The extra context: FIM_REP "myproject\n", the chunks, FIM_SEP "filename\n". */
static int extra_tokens(const struct slm_model *m, const struct slm_fim_params *p, struct tvec *x,
                        struct slm_err *err) {
    const struct llama_vocab *v = m->vocab;
    llama_token rep = llama_vocab_fim_rep(v), sep = llama_vocab_fim_sep(v);
    int rc = SLM_OK;
    if (rep != LLAMA_TOKEN_NULL) {
        rc = tv_push(x, rep, err);
        rc = rc == SLM_OK ? tv_text(x, m, slm_str_c("myproject\n"), false, err) : rc;
    }
    for (size_t i = 0; rc == SLM_OK && i < p->n_extra; i++) {
        const struct slm_fim_chunk *c = &p->extra[i];
        if (sep != LLAMA_TOKEN_NULL) {
            struct slm_str name = c->filename.ptr ? c->filename : slm_str_c("tmp");
            rc = tv_push(x, sep, err);
            rc = rc == SLM_OK ? tv_text(x, m, name, false, err) : rc;
            rc = rc == SLM_OK ? tv_text(x, m, slm_str_c("\n"), false, err) : rc;
        } else {
            rc = tv_text(x, m, slm_str_c("\n\n--- snippet ---\n\n"), false, err);
        }
        rc = rc == SLM_OK ? tv_text(x, m, c->text, false, err) : rc;
    }
    if (rc == SLM_OK && sep != LLAMA_TOKEN_NULL) {
        rc = tv_push(x, sep, err);
        rc = rc == SLM_OK ? tv_text(x, m, slm_str_c("filename\n"), false, err) : rc;
    }
    return rc;
}

int slm_fim_tokens(const struct slm_model *m, const struct slm_fim_params *params, int32_t **out,
                   size_t *n_out, struct slm_err *err) {
    *out = NULL;
    *n_out = 0;
    char why[128];
    if (slm_fim_missing(m, why, sizeof(why))) {
        return slm_err_set(err, SLM_E_UNSUPPORTED, "%s", why);
    }
    struct slm_fim_params p = params ? *params : slm_fim_params_default();
    const struct llama_vocab *v = m->vocab;
    struct tvec x = {0}, pre = {0}, suf = {0}, prompt = {0}, all = {0};
    int rc = extra_tokens(m, &p, &x, err);
    rc = rc == SLM_OK ? tv_text(&pre, m, p.prefix, false, err) : rc;
    rc = rc == SLM_OK ? tv_text(&suf, m, p.suffix, false, err) : rc;
    rc = rc == SLM_OK ? tv_text(&prompt, m, p.prompt, true, err) : rc;
    if (rc == SLM_OK) {
        /* llama-server: the prefix and suffix fit a batch (3:1), the extra
         * context the rest of the context less a batch and 2 x n_predict. */
        int64_t nb = p.n_batch, np = p.n_predict;
        size_t take_pre = (size_t)SLM_MIN((int64_t)pre.n, 3 * (nb / 4));
        int64_t room_suf = SLM_MAX((int64_t)0, nb / 4 - (2 + (int64_t)prompt.n));
        size_t take_suf = (size_t)SLM_MIN((int64_t)suf.n, room_suf);
        int64_t room_x = SLM_MAX((int64_t)0, (int64_t)p.n_ctx - nb - 2 * np);
        size_t take_x = (size_t)SLM_MIN((int64_t)x.n, room_x);
        const int32_t *pre_t = pre.t + (pre.n - take_pre);
        /* [extra tail] [BOS] then PSM (or SPM) order, then FIM_MID. */
        rc = tv_cat(&all, x.t + (x.n - take_x), take_x, err);
        if (rc == SLM_OK && llama_vocab_get_add_bos(v)) {
            rc = tv_push(&all, llama_vocab_bos(v), err);
        }
        for (int part = 0; part < 2 && rc == SLM_OK; part++) {
            bool prefix_part = (part == 0) != p.spm;
            if (prefix_part) {
                rc = tv_push(&all, llama_vocab_fim_pre(v), err);
                rc = rc == SLM_OK ? tv_cat(&all, pre_t, take_pre, err) : rc;
                rc = rc == SLM_OK ? tv_cat(&all, prompt.t, prompt.n, err) : rc;
            } else {
                rc = tv_push(&all, llama_vocab_fim_suf(v), err);
                rc = rc == SLM_OK ? tv_cat(&all, suf.t, take_suf, err) : rc;
            }
        }
        rc = rc == SLM_OK ? tv_push(&all, llama_vocab_fim_mid(v), err) : rc;
    }
    free(x.t);
    free(pre.t);
    free(suf.t);
    free(prompt.t);
    if (rc != SLM_OK) {
        free(all.t);
        return rc;
    }
    *out = all.t;
    *n_out = all.n;
    return SLM_OK;
}
