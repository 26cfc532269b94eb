/*
 * engine/ctx.c - contexts, sampling and single-sequence generation with
 * prompt reuse, stop strings and token log-probs.
 *
 * The token loop allocates nothing: the batch, the candidate array for the
 * sampler and the output buffers are sized when the context is made or before
 * the loop starts.
 */
#include "slm/engine.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/sample.h"
#include "slm/sys.h"

struct slm_ctx_params slm_ctx_params_default(void) {
    return (struct slm_ctx_params){0};
}

int slm__decode_status(int32_t rc, struct slm_err *err) {
    switch (rc) {
    case 0: return SLM_OK;
    case 1:
        return slm_err_set(err, SLM_E_OVERFLOW,
                           "no room in the KV cache for this batch (context full)");
    case 2: return slm_err_set(err, SLM_E_ABORTED, "generation aborted");
    default: return slm_err_set(err, SLM_E_BACKEND, "llama_decode failed (%d)", (int)rc);
    }
}

/* One throwaway decode, as llama.cpp's own tools do when they load a model:
 * the first decode pays for touching the (mmap'ed) weights, creating the
 * compute threads and sizing buffers; done here, the user's first prompt
 * does not. The cache is cleared afterwards, so nothing of it stays. */
static void warm_up(struct slm_ctx *c) {
    const struct llama_vocab *v = c->model->vocab;
    llama_token t = llama_vocab_bos(v);
    if (t == LLAMA_TOKEN_NULL) {
        t = 0;
    }
    struct llama_batch b = llama_batch_get_one(&t, 1);
    (void)llama_decode(c->lc, b);
    llama_synchronize(c->lc);
    llama_memory_clear(llama_get_memory(c->lc), true);
}

int slm_ctx_init(struct slm_model *model, const struct slm_ctx_params *params, struct slm_ctx **out,
                 struct slm_err *err) {
    struct slm_ctx_params p = params ? *params : slm_ctx_params_default();
    int32_t n_train = llama_model_n_ctx_train(model->lm);
    if (p.n_ctx == 0) {
        p.n_ctx = (uint32_t)(n_train > 0 && n_train < 4096 ? n_train : 4096);
    }
    if (p.n_batch == 0) {
        p.n_batch = 512;
    }
    if (p.n_batch > p.n_ctx) {
        p.n_batch = p.n_ctx;
    }
    if (p.n_ubatch == 0) {
        p.n_ubatch = SLM_MIN(p.n_batch, 512u);
    }
    if (p.n_seq_max == 0) {
        p.n_seq_max = 1;
    }
    if (p.n_threads <= 0) {
        p.n_threads = slm_default_threads();
    }
    if (p.n_threads_batch <= 0) {
        p.n_threads_batch = p.n_threads;
    }
    struct slm_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    c->model = model;
    struct llama_context_params lp = llama_context_default_params();
    lp.n_ctx = p.n_ctx;
    lp.n_batch = p.n_batch;
    lp.n_ubatch = p.n_ubatch;
    lp.n_seq_max = p.n_seq_max;
    lp.n_threads = p.n_threads;
    lp.n_threads_batch = p.n_threads_batch;
    lp.embeddings = p.embeddings;
    lp.no_perf = true;
    if (p.kv_f32) {
        lp.type_k = GGML_TYPE_F32;
        lp.type_v = GGML_TYPE_F32;
        /* Flash attention would cast the cache back to F16 (and Q with it). */
        lp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    c->lc = llama_init_from_model(model->lm, lp);
    if (!c->lc) {
        free(c);
        return slm_err_set(err, SLM_E_BACKEND,
                           "could not create a context of %u tokens (out of memory?)", p.n_ctx);
    }
    c->n_batch = p.n_batch;
    c->batch = llama_batch_init((int32_t)p.n_batch, 0, 1);
    c->n_vocab = llama_vocab_n_tokens(model->vocab);
    c->cand = malloc((size_t)c->n_vocab * sizeof(*c->cand));
    c->cached = malloc((size_t)llama_n_ctx(c->lc) * sizeof(*c->cached));
    int erc = slm__eog_ids(model, &c->eog, &c->n_eog);
    if (!c->cand || !c->cached || !c->batch.token || erc != SLM_OK) {
        slm_ctx_free(c);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    warm_up(c);
    *out = c;
    return SLM_OK;
}

void slm_ctx_free(struct slm_ctx *ctx) {
    if (!ctx) {
        return;
    }
    llama_batch_free(ctx->batch);
    if (ctx->lc) {
        llama_free(ctx->lc);
    }
    free(ctx->cand);
    free(ctx->eog);
    free(ctx->cached);
    free(ctx->adapters);
    free(ctx->scales);
    free(ctx);
}

uint32_t slm_ctx_n_ctx(const struct slm_ctx *ctx) {
    return llama_n_ctx(ctx->lc);
}

struct slm_model *slm_ctx_model(const struct slm_ctx *ctx) {
    return ctx->model;
}

void slm_ctx_reset(struct slm_ctx *ctx) {
    llama_memory_clear(llama_get_memory(ctx->lc), true);
    ctx->n_cached = 0;
}

int slm_ctx_set_adapters(struct slm_ctx *ctx, struct slm_adapter *const *adapters,
                         const float *scales, size_t n, struct slm_err *err) {
    bool same = n == ctx->n_adapters;
    for (size_t i = 0; same && i < n; i++) {
        same = adapters[i] == ctx->adapters[i] && scales[i] == ctx->scales[i];
    }
    if (same) {
        return SLM_OK;
    }
    struct llama_adapter_lora *la[64];
    float sc[64];
    if (n > SLM_ARRAY_LEN(la)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "at most %zu adapters at once", SLM_ARRAY_LEN(la));
    }
    for (size_t i = 0; i < n; i++) {
        if (adapters[i]->model != ctx->model) {
            return slm_err_set(err, SLM_E_INVALID, "adapter %zu was loaded for another model", i);
        }
        la[i] = adapters[i]->la;
        sc[i] = scales[i];
    }
    if (llama_set_adapters_lora(ctx->lc, n ? la : NULL, n, n ? sc : NULL) != 0) {
        return slm_err_set(err, SLM_E_BACKEND, "llama.cpp refused the adapter set");
    }
    struct slm_adapter **a2 = n ? malloc(n * sizeof(*a2)) : NULL;
    float *s2 = n ? malloc(n * sizeof(*s2)) : NULL;
    if (n && (!a2 || !s2)) {
        free(a2);
        free(s2);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (n) {
        memcpy(a2, adapters, n * sizeof(*a2));
        memcpy(s2, scales, n * sizeof(*s2));
    }
    free(ctx->adapters);
    free(ctx->scales);
    ctx->adapters = a2;
    ctx->scales = s2;
    ctx->n_adapters = n;
    slm_ctx_reset(ctx); /* cached KV was computed with other weights */
    return SLM_OK;
}

/* ---------------------------------------------------------------- sampling */

struct slm_sample_params slm_sample_params_default(void) {
    return (struct slm_sample_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.9f,
        .min_p = 0.0f,
        .seed = SLM_SEED_RANDOM,
        .repeat_penalty = 1.1f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .grammar = NULL,
    };
}

struct slm_gen_params slm_gen_params_default(void) {
    return (struct slm_gen_params){
        .sample = slm_sample_params_default(),
        .max_tokens = -1,
    };
}

const char *slm_finish_name(enum slm_finish f) {
    switch (f) {
    case SLM_FINISH_STOP: return "stop";
    case SLM_FINISH_LENGTH: return "length";
    case SLM_FINISH_CONTEXT: return "length";
    case SLM_FINISH_ABORTED: return "aborted";
    default: return "none";
    }
}

/* ---------------------------------------------------------------- generation */

/* Decodes tokens[0..n) at positions pos.. on sequence 0, asking for logits of
 * the last one only. */
static int decode_run(struct slm_ctx *ctx, const int32_t *tokens, size_t n, int32_t pos,
                      struct slm_err *err) {
    for (size_t off = 0; off < n; off += ctx->n_batch) {
        size_t m = SLM_MIN((size_t)ctx->n_batch, n - off);
        struct llama_batch *b = &ctx->batch;
        b->n_tokens = (int32_t)m;
        for (size_t i = 0; i < m; i++) {
            b->token[i] = tokens[off + i];
            b->pos[i] = pos + (int32_t)(off + i);
            b->n_seq_id[i] = 1;
            b->seq_id[i][0] = 0;
            b->logits[i] = (off + i == n - 1);
        }
        int rc = slm__decode_status(llama_decode(ctx->lc, *b), err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

/* Reuses the cached prefix; returns how many prompt tokens must still be
 * evaluated (at least one, so there are logits to sample from). */
static size_t reuse_prefix(struct slm_ctx *ctx, const int32_t *prompt, size_t n_prompt) {
    size_t common = 0;
    while (common < ctx->n_cached && common < n_prompt && ctx->cached[common] == prompt[common]) {
        common++;
    }
    if (common == n_prompt && common > 0) {
        common--; /* re-evaluate the last token to get its logits */
    }
    llama_memory_t mem = llama_get_memory(ctx->lc);
    if (!llama_memory_seq_rm(mem, 0, (llama_pos)common, -1)) {
        llama_memory_clear(mem, true);
        common = 0;
    }
    ctx->n_cached = common;
    return common;
}

struct gen_state {
    struct slm_ctx *ctx;
    const struct slm_gen_params *p;
    slm_token_cb cb;
    void *user;
    struct slm_stop_filter stop;
    struct slm_buf piece;
    struct slm_buf text;
    struct slm_top_logprob top[SLM_MAX_TOP_LOGPROBS];
};

/* Sample one token from the logits of the last decoded position. */
static int32_t sample_next(struct gen_state *st, struct llama_sampler *chain, float *lp_out,
                           int *n_top) {
    struct slm_ctx *ctx = st->ctx;
    const float *logits = llama_get_logits_ith(ctx->lc, -1);
    int32_t tok = slm__sample_token(chain, logits, ctx->n_vocab, ctx->cand, ctx->eog, ctx->n_eog,
                                    st->p->ignore_eos);
    *n_top = 0;
    *lp_out = 0.0f;
    if (tok >= 0 && (st->p->logprobs || st->p->n_top_logprobs > 0)) {
        int k = SLM_MIN(st->p->n_top_logprobs, SLM_MAX_TOP_LOGPROBS);
        *lp_out = slm__token_logprob(logits, ctx->n_vocab, tok, k, st->top);
        *n_top = SLM_MAX(k, 0);
    }
    return tok;
}

static int emit(struct gen_state *st, int32_t tok, float lp, int n_top, bool *stop_now) {
    slm_buf_clear(&st->piece);
    slm_buf_clear(&st->text);
    int rc = slm_token_to_piece(st->ctx->model, tok, false, &st->piece);
    if (rc == SLM_OK) {
        rc = slm_stop_filter_push(&st->stop, st->piece.ptr, st->piece.len, &st->text);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    *stop_now = st->stop.stopped;
    if (st->cb) {
        struct slm_token_event ev = {
            slm_buf_cstr(&st->text), st->text.len, tok, lp, st->top, n_top};
        if (st->cb(&ev, st->user) != 0) {
            return SLM_E_ABORTED;
        }
    }
    return SLM_OK;
}

static int flush_tail(struct gen_state *st) {
    slm_buf_clear(&st->text);
    int rc = slm_stop_filter_flush(&st->stop, &st->text);
    if (rc == SLM_OK && st->text.len > 0 && st->cb) {
        struct slm_token_event ev = {st->text.ptr, st->text.len, -1, 0.0f, NULL, 0};
        st->cb(&ev, st->user);
    }
    return rc;
}

int slm_generate(struct slm_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                 const struct slm_gen_params *params, slm_token_cb cb, void *user,
                 struct slm_gen_stats *stats, struct slm_err *err) {
    struct slm_gen_params p = params ? *params : slm_gen_params_default();
    struct slm_gen_stats s_local = {0};
    struct slm_gen_stats *s = stats ? stats : &s_local;
    memset(s, 0, sizeof(*s));
    s->n_prompt = (int32_t)n_prompt;
    uint32_t n_ctx = llama_n_ctx(ctx->lc);
    if (n_prompt == 0) {
        return slm_err_set(err, SLM_E_INVALID, "empty prompt");
    }
    if (n_prompt >= n_ctx) {
        return slm_err_set(err, SLM_E_OVERFLOW,
                           "the prompt is %zu tokens but the context holds %u (raise --ctx-size "
                           "or shorten the input)",
                           n_prompt, n_ctx);
    }
    struct gen_state st = {.ctx = ctx, .p = &p, .cb = cb, .user = user};
    slm_stop_filter_init(&st.stop, p.stop, p.n_stop);
    struct llama_sampler *chain = NULL;
    int rc = slm__chain_init(ctx->model, &p.sample, (int32_t)n_ctx, &chain, err);
    if (rc != SLM_OK) {
        goto done;
    }
    /* Sized before the loop: a piece is rarely more than a few bytes. */
    if (slm_buf_reserve(&st.piece, 256) != SLM_OK || slm_buf_reserve(&st.text, 512) != SLM_OK) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }

    double t0 = slm_time_mono();
    size_t reused = reuse_prefix(ctx, prompt, n_prompt);
    s->n_cached = (int32_t)reused;
    rc = decode_run(ctx, prompt + reused, n_prompt - reused, (int32_t)reused, err);
    if (rc != SLM_OK) {
        ctx->n_cached = 0;
        llama_memory_clear(llama_get_memory(ctx->lc), true);
        goto done;
    }
    memcpy(ctx->cached, prompt, n_prompt * sizeof(*prompt));
    ctx->n_cached = n_prompt;
    double t1 = slm_time_mono();
    s->t_prompt = t1 - t0;

    int32_t pos = (int32_t)n_prompt;
    for (;;) {
        if (p.max_tokens >= 0 && s->n_gen >= p.max_tokens) {
            s->finish = SLM_FINISH_LENGTH;
            break;
        }
        float lp;
        int n_top;
        int32_t tok = sample_next(&st, chain, &lp, &n_top);
        if (tok < 0 || llama_vocab_is_eog(ctx->model->vocab, tok)) {
            s->finish = SLM_FINISH_STOP;
            break;
        }
        s->n_gen++;
        if (p.logprobs) {
            s->logprob_sum += lp;
            s->logprob_min = s->n_gen == 1 ? lp : SLM_MIN(s->logprob_min, lp);
        }
        bool stop_now = false;
        rc = emit(&st, tok, lp, n_top, &stop_now);
        if (rc == SLM_E_ABORTED) {
            s->finish = SLM_FINISH_ABORTED;
            rc = SLM_OK;
            break;
        }
        if (rc != SLM_OK) {
            slm_err_set(err, rc, "streaming output: %s", slm_strerror(rc));
            break;
        }
        if (stop_now) {
            s->finish = SLM_FINISH_STOP;
            break;
        }
        if ((uint32_t)pos + 1 >= n_ctx) {
            s->finish = SLM_FINISH_CONTEXT;
            break;
        }
        rc = decode_run(ctx, &tok, 1, pos, err);
        if (rc != SLM_OK) {
            break;
        }
        ctx->cached[ctx->n_cached++] = tok;
        pos++;
    }
    if (rc == SLM_OK && s->finish != SLM_FINISH_ABORTED) {
        rc = flush_tail(&st);
    }
    s->t_gen = slm_time_mono() - t1;
done:
    llama_sampler_free(chain);
    slm_stop_filter_free(&st.stop);
    slm_buf_free(&st.piece);
    slm_buf_free(&st.text);
    return rc;
}
