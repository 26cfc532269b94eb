/*
 * engine/score.c - scoring candidate continuations of one prompt in one
 * decode (slm/score.h).
 *
 * Sequence 0 holds the prompt. For a chunk of candidates, llama_memory_seq_cp
 * adds each candidate's sequence id to the prompt's cells (in a unified KV
 * cache a cell carries a set of sequence ids, so nothing is copied), then one
 * batch carries every candidate's tokens but the last (whose logits predict
 * nothing we score), each at the positions after the prompt in its own
 * sequence. Afterwards the candidate sequences are removed, which frees their
 * own cells and leaves the prompt's cells to sequence 0 alone, ready for the
 * next chunk or the next call's prefix reuse.
 *
 * The first token of every candidate is scored from the prompt's last logits,
 * so a one-token label costs no decode at all.
 */
#include "slm/score.h"

#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/sample.h"

struct slm_scorer {
    struct slm_model *model;
    struct llama_context *lc;
    struct llama_batch batch; /* n_batch tokens: the largest single decode we make */
    uint32_t n_ctx;           /* KV cells (llama.cpp may pad the n_ctx asked for) */
    uint32_t n_batch;         /* tokens per llama_decode */
    uint32_t n_seq;           /* sequences of the context, sequence 0 (the prompt) included */
    int32_t n_vocab;
    int32_t *cached; /* the tokens sequence 0 holds */
    size_t n_cached;
    size_t *chunk; /* candidate indices of the chunk being decoded, n_seq - 1 */
    struct slm_scorer_stats stats;
};

struct slm_scorer_params slm_scorer_params_default(void) {
    return (struct slm_scorer_params){.n_ctx = 2048, .max_candidates = 255};
}

static int apply_adapters(struct slm_scorer *s, struct slm_adapter *const *adapters,
                          const float *scales, size_t n, struct slm_err *err) {
    struct llama_adapter_lora *la[64];
    float sc[64];
    if (n > SLM_ARRAY_LEN(la)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "at most %zu adapters at once", SLM_ARRAY_LEN(la));
    }
    for (size_t i = 0; i < n; i++) {
        if (!adapters[i] || adapters[i]->model != s->model) {
            return slm_err_set(err, SLM_E_INVALID, "adapter %zu was loaded for another model", i);
        }
        la[i] = adapters[i]->la;
        sc[i] = scales ? scales[i] : 1.0f;
    }
    if (n && llama_set_adapters_lora(s->lc, la, n, sc) != 0) {
        return slm_err_set(err, SLM_E_BACKEND, "llama.cpp refused the adapter set");
    }
    return SLM_OK;
}

int slm_scorer_init_params(struct slm_model *model, struct slm_adapter *const *adapters,
                           const float *scales, size_t n_adapters,
                           const struct slm_scorer_params *params, struct slm_scorer **out,
                           struct slm_err *err) {
    slm_engine_init();
    struct slm_scorer_params p = params ? *params : slm_scorer_params_default();
    p.n_ctx = p.n_ctx ? SLM_MAX(p.n_ctx, 16u) : 2048;
    p.max_candidates = p.max_candidates ? p.max_candidates : 255;
    struct slm_scorer *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    s->model = model;
    size_t max_seq = llama_max_parallel_sequences();
    s->n_seq = (uint32_t)SLM_MIN((size_t)p.max_candidates + 1, max_seq);
    struct llama_context_params lp = llama_context_default_params();
    lp.n_ctx = p.n_ctx;
    lp.n_batch = p.n_ctx; /* every candidate of a chunk in one llama_decode */
    lp.n_ubatch = SLM_MIN(p.n_ctx, 512u);
    lp.n_seq_max = s->n_seq;
    lp.kv_unified = true; /* the prompt's cells are shared by every sequence */
    lp.n_threads = p.n_threads > 0 ? p.n_threads : slm__physical_cores();
    lp.n_threads_batch = lp.n_threads;
    lp.no_perf = true;
    if (p.kv_f32) {
        lp.type_k = GGML_TYPE_F32;
        lp.type_v = GGML_TYPE_F32;
        lp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    int rc = SLM_OK;
    s->lc = llama_init_from_model(model->lm, lp);
    if (!s->lc) {
        rc = slm_err_set(err, SLM_E_BACKEND,
                         "could not create a scoring context of %u tokens and %u sequences",
                         p.n_ctx, s->n_seq);
        goto fail;
    }
    s->n_ctx = llama_n_ctx(s->lc);
    s->n_batch = llama_n_batch(s->lc);
    s->n_vocab = llama_vocab_n_tokens(model->vocab);
    s->batch = llama_batch_init((int32_t)s->n_batch, 0, 1);
    s->cached = malloc(s->n_ctx * sizeof(*s->cached));
    s->chunk = malloc(s->n_seq * sizeof(*s->chunk));
    if (!s->batch.token || !s->cached || !s->chunk) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = apply_adapters(s, adapters, scales, n_adapters, err)) != SLM_OK) {
        goto fail;
    }
    *out = s;
    return SLM_OK;
fail:
    slm_scorer_free(s);
    return rc;
}

void slm_scorer_free(struct slm_scorer *s) {
    if (!s) {
        return;
    }
    if (s->lc) {
        llama_batch_free(s->batch);
        llama_free(s->lc);
    }
    free(s->cached);
    free(s->chunk);
    free(s);
}

struct slm_model *slm_scorer_model(const struct slm_scorer *s) {
    return s->model;
}

uint32_t slm_scorer_n_ctx(const struct slm_scorer *s) {
    return s->n_ctx;
}

void slm_scorer_last_stats(const struct slm_scorer *s, struct slm_scorer_stats *out) {
    *out = s->stats;
}

void slm_scorer_reset(struct slm_scorer *s) {
    llama_memory_clear(llama_get_memory(s->lc), true);
    s->n_cached = 0;
}

static void batch_add(struct llama_batch *b, int32_t tok, size_t pos, size_t seq, bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = (llama_pos)pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = (llama_seq_id)seq;
    b->logits[i] = logits;
}

static int check_tokens(const struct slm_scorer *s, const int32_t *t, size_t n, const char *what,
                        struct slm_err *err) {
    for (size_t i = 0; i < n; i++) {
        if (t[i] < 0 || t[i] >= s->n_vocab) {
            return slm_err_set(err, SLM_E_INVALID, "%s token %zu (%d) is not in the vocabulary",
                               what, i, (int)t[i]);
        }
    }
    return SLM_OK;
}

/* Leaves the prompt's KV on sequence 0 (and nothing else in the cache) with
 * the logits of its last token as the context's last output. */
static int decode_prompt(struct slm_scorer *s, const int32_t *prompt, size_t n,
                         struct slm_err *err) {
    llama_memory_t mem = llama_get_memory(s->lc);
    size_t keep = 0;
    while (keep < s->n_cached && keep < n && s->cached[keep] == prompt[keep]) {
        keep++;
    }
    /* The last token is decoded again even when cached: its logits are not kept. */
    keep = keep == n ? n - 1 : keep;
    for (uint32_t q = 1; q < s->n_seq; q++) {
        llama_memory_seq_rm(mem, (llama_seq_id)q, -1, -1);
    }
    if (!llama_memory_seq_rm(mem, 0, (llama_pos)keep, -1)) {
        llama_memory_clear(mem, true);
        keep = 0;
    }
    s->n_cached = keep;
    s->stats.n_prompt_reused = keep;
    int rc = SLM_OK;
    for (size_t i = keep; i < n && rc == SLM_OK;) {
        s->batch.n_tokens = 0;
        for (; i < n && (uint32_t)s->batch.n_tokens < s->n_batch; i++) {
            batch_add(&s->batch, prompt[i], i, 0, i + 1 == n);
        }
        rc = slm__decode_status(llama_decode(s->lc, s->batch), err);
    }
    if (rc != SLM_OK) {
        slm_scorer_reset(s);
        return rc;
    }
    memcpy(s->cached + keep, prompt + keep, (n - keep) * sizeof(*prompt));
    s->n_cached = n;
    s->stats.n_prompt_decoded = n - keep;
    return SLM_OK;
}

static int check_prompt(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                        size_t longest, struct slm_err *err) {
    if (n_prompt == 0) {
        return slm_err_set(err, SLM_E_INVALID, "nothing to score after an empty prompt");
    }
    size_t need = n_prompt + (longest ? longest - 1 : 0);
    if (need > s->n_ctx || (longest > 1 && longest - 1 > s->n_batch)) {
        return slm_err_set(err, SLM_E_OVERFLOW,
                           "scoring needs %zu tokens (prompt %zu + longest candidate %zu) but the "
                           "scorer's context holds %u",
                           need, n_prompt, longest, s->n_ctx);
    }
    return check_tokens(s, prompt, n_prompt, "prompt", err);
}

int slm_scorer_logits(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                      const float **logits, int32_t *n_vocab, struct slm_err *err) {
    memset(&s->stats, 0, sizeof(s->stats));
    int rc = check_prompt(s, prompt, n_prompt, 0, err);
    if (rc == SLM_OK) {
        rc = decode_prompt(s, prompt, n_prompt, err);
    }
    if (rc == SLM_OK) {
        *logits = llama_get_logits_ith(s->lc, -1);
        *n_vocab = s->n_vocab;
    }
    return rc;
}

/* Decodes one chunk (candidate indices in s->chunk[0..n)) and adds the
 * log-probs of their tokens after the first to logp. */
static int score_chunk(struct slm_scorer *s, size_t n_prompt, const int32_t *const *cand,
                       const size_t *cand_len, size_t n, float *logp, struct slm_err *err) {
    llama_memory_t mem = llama_get_memory(s->lc);
    s->batch.n_tokens = 0;
    for (size_t c = 0; c < n; c++) {
        size_t k = s->chunk[c];
        llama_memory_seq_cp(mem, 0, (llama_seq_id)(c + 1), -1, -1);
        for (size_t j = 0; j + 1 < cand_len[k]; j++) {
            batch_add(&s->batch, cand[k][j], n_prompt + j, c + 1, true);
        }
    }
    s->stats.n_cand_decoded += (size_t)s->batch.n_tokens;
    s->stats.n_chunks++;
    int rc = slm__decode_status(llama_decode(s->lc, s->batch), err);
    int32_t i = 0;
    for (size_t c = 0; c < n && rc == SLM_OK; c++) {
        size_t k = s->chunk[c];
        double sum = 0;
        for (size_t j = 0; j + 1 < cand_len[k]; j++, i++) {
            const float *row = llama_get_logits_ith(s->lc, i);
            sum += (double)row[cand[k][j + 1]] - slm__log_norm(row, s->n_vocab);
        }
        logp[k] = (float)((double)logp[k] + sum);
    }
    for (size_t c = 0; c < n; c++) {
        llama_memory_seq_rm(mem, (llama_seq_id)(c + 1), -1, -1);
    }
    return rc;
}

int slm_scorer_score(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                     const int32_t *const *cand, const size_t *cand_len, size_t n_cand, float *logp,
                     struct slm_err *err) {
    memset(&s->stats, 0, sizeof(s->stats));
    size_t longest = 0;
    int rc = SLM_OK;
    for (size_t k = 0; k < n_cand && rc == SLM_OK; k++) {
        longest = SLM_MAX(longest, cand_len[k]);
        rc = check_tokens(s, cand[k], cand_len[k], "candidate", err);
    }
    if (rc == SLM_OK) {
        rc = check_prompt(s, prompt, n_prompt, longest, err);
    }
    if (rc == SLM_OK) {
        rc = decode_prompt(s, prompt, n_prompt, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    /* First tokens from the prompt's last logits, before a chunk overwrites them. */
    const float *last = llama_get_logits_ith(s->lc, -1);
    double z = slm__log_norm(last, s->n_vocab);
    for (size_t k = 0; k < n_cand; k++) {
        logp[k] = cand_len[k] ? (float)((double)last[cand[k][0]] - z) : 0.0f;
    }
    /* Chunks: as many candidates as there are sequences, free cells and room
     * in one batch. */
    size_t free_cells = SLM_MIN(s->n_ctx - n_prompt, (size_t)s->n_batch), n = 0, used = 0;
    for (size_t k = 0; k <= n_cand && rc == SLM_OK; k++) {
        size_t need = k < n_cand && cand_len[k] > 1 ? cand_len[k] - 1 : 0;
        bool flush = k == n_cand || n + 1 >= s->n_seq || used + need > free_cells;
        if (flush && n > 0 && (k == n_cand || need > 0)) {
            rc = score_chunk(s, n_prompt, cand, cand_len, n, logp, err);
            n = 0;
            used = 0;
        }
        if (k < n_cand && need > 0) {
            s->chunk[n++] = k;
            used += need;
        }
    }
    if (rc != SLM_OK) {
        slm_scorer_reset(s);
    }
    return rc;
}
