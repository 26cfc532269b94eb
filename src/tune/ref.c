/*
 * tune/ref.c - reference logits from libllama itself, for checking that the
 * training graph computes the same function llama.cpp serves (tests) and that
 * a saved adapter does the same at inference.
 *
 * The context uses an F32 KV cache and no flash attention: libllama's default
 * F16 cache alone differs from an exact forward pass by about 1e-2.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llama.h>

#include "slm/engine.h"
#include "tune/internal.h"

static int decode_all(struct llama_context *lc, const int32_t *tokens, size_t n, int32_t n_vocab,
                      float *logits, struct slm_err *err) {
    struct llama_batch batch = llama_batch_init((int32_t)n, 0, 1);
    for (size_t i = 0; i < n; i++) {
        batch.token[i] = tokens[i];
        batch.pos[i] = (llama_pos)i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = (int32_t)n;
    int32_t rc = llama_decode(lc, batch);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            const float *row = llama_get_logits_ith(lc, (int32_t)i);
            memcpy(logits + i * (size_t)n_vocab, row, (size_t)n_vocab * sizeof(float));
        }
    }
    llama_batch_free(batch);
    return rc == 0 ? SLM_OK : slm_err_set(err, SLM_E_BACKEND, "llama_decode failed (%d)", (int)rc);
}

int slm__llama_logits(const char *model_path, const char *adapter_path, float adapter_scale,
                      const int32_t *tokens, size_t n, float *logits, int32_t n_threads,
                      struct slm_err *err) {
    slm_engine_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.use_extra_bufts = false;
    struct llama_model *lm = llama_model_load_from_file(model_path, mp);
    if (!lm) {
        return slm_err_set(err, SLM_E_INVALID, "%s: libllama could not load the model", model_path);
    }
    int rc = SLM_OK;
    struct llama_adapter_lora *ad = NULL;
    struct llama_context *lc = NULL;
    if (adapter_path) {
        ad = llama_adapter_lora_init(lm, adapter_path);
        if (!ad) {
            rc = slm_err_set(err, SLM_E_INVALID, "%s: libllama could not load the adapter",
                             adapter_path);
            goto done;
        }
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n < 16 ? 16 : n);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.n_threads = n_threads > 0 ? n_threads : slm__default_threads();
    cp.n_threads_batch = cp.n_threads;
    lc = llama_init_from_model(lm, cp);
    if (!lc) {
        rc = slm_err_set(err, SLM_E_BACKEND, "cannot create a llama context");
        goto done;
    }
    if (ad && llama_set_adapters_lora(lc, &ad, 1, &adapter_scale) != 0) {
        rc = slm_err_set(err, SLM_E_BACKEND, "cannot apply the adapter");
        goto done;
    }
    rc = decode_all(lc, tokens, n, llama_vocab_n_tokens(llama_model_get_vocab(lm)), logits, err);
done:
    if (lc) {
        llama_free(lc);
    }
    if (ad) {
        llama_adapter_lora_free(ad);
    }
    llama_model_free(lm);
    return rc;
}

/* ---------------------------------------------------------------- scorer */

struct slm_tune_scorer {
    struct llama_model *lm;
    struct llama_adapter_lora *ad;
    struct llama_context *lc;
    struct llama_batch batch;
    uint32_t n_ctx, n_seq;
    int32_t n_vocab;
};

int slm_tune_scorer_init(const char *model, const char *adapter, uint32_t n_ctx,
                         uint32_t n_candidates, int32_t n_threads, struct slm_tune_scorer **out,
                         struct slm_err *err) {
    slm_engine_init();
    struct slm_tune_scorer *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = SLM_OK;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    s->lm = llama_model_load_from_file(model, mp);
    if (!s->lm) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: libllama could not load the model", model);
        goto fail;
    }
    if (adapter && !(s->ad = llama_adapter_lora_init(s->lm, adapter))) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: not a LoRA adapter for %s", adapter, model);
        goto fail;
    }
    s->n_ctx = n_ctx < 64 ? 64 : n_ctx;
    s->n_seq = n_candidates + 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = s->n_ctx;
    cp.n_batch = s->n_ctx;
    cp.n_ubatch = s->n_ctx;
    cp.n_seq_max = s->n_seq;
    cp.kv_unified = true;
    cp.n_threads = n_threads > 0 ? n_threads : slm__default_threads();
    cp.n_threads_batch = cp.n_threads;
    s->lc = llama_init_from_model(s->lm, cp);
    if (!s->lc) {
        rc = slm_err_set(err, SLM_E_BACKEND, "cannot create a llama context of %u tokens",
                         s->n_ctx);
        goto fail;
    }
    float one = 1.0f;
    if (s->ad && llama_set_adapters_lora(s->lc, &s->ad, 1, &one) != 0) {
        rc = slm_err_set(err, SLM_E_BACKEND, "cannot apply the adapter");
        goto fail;
    }
    s->batch = llama_batch_init((int32_t)s->n_ctx, 0, 1);
    s->n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(s->lm));
    *out = s;
    return SLM_OK;
fail:
    slm_tune_scorer_free(s);
    return rc;
}

void slm_tune_scorer_free(struct slm_tune_scorer *s) {
    if (!s) {
        return;
    }
    if (s->lc) {
        llama_batch_free(s->batch);
        llama_free(s->lc);
    }
    if (s->ad) {
        llama_adapter_lora_free(s->ad);
    }
    if (s->lm) {
        llama_model_free(s->lm);
    }
    free(s);
}

static void batch_add(struct llama_batch *b, int32_t tok, int32_t pos, int32_t seq, bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = logits;
}

static float log_softmax_at(const float *row, int32_t n, int32_t tok) {
    float mx = row[0];
    for (int32_t v = 1; v < n; v++) {
        mx = row[v] > mx ? row[v] : mx;
    }
    double z = 0;
    for (int32_t v = 0; v < n; v++) {
        z += exp((double)(row[v] - mx));
    }
    return (float)((double)(row[tok] - mx) - log(z));
}

static int decode_prompt(struct slm_tune_scorer *s, const int32_t *prompt, size_t n,
                         struct slm_err *err) {
    llama_memory_clear(llama_get_memory(s->lc), true);
    s->batch.n_tokens = 0;
    for (size_t i = 0; i < n; i++) {
        batch_add(&s->batch, prompt[i], (int32_t)i, 0, i + 1 == n);
    }
    int32_t rc = llama_decode(s->lc, s->batch);
    return rc == 0 ? SLM_OK : slm_err_set(err, SLM_E_BACKEND, "llama_decode failed (%d)", (int)rc);
}

int slm_tune_scorer_score(struct slm_tune_scorer *s, const int32_t *prompt, size_t n_prompt,
                          const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                          float *scores, struct slm_err *err) {
    size_t total = n_prompt;
    for (size_t k = 0; k < n_cand; k++) {
        total += cand_len[k];
    }
    if (n_prompt == 0 || total > s->n_ctx || n_cand + 1 > s->n_seq) {
        return slm_err_set(err, SLM_E_OVERFLOW,
                           "scoring needs %zu tokens and %zu sequences; the scorer has %u and %u",
                           total, n_cand + 1, s->n_ctx, s->n_seq);
    }
    int rc = decode_prompt(s, prompt, n_prompt, err);
    if (rc != SLM_OK) {
        return rc;
    }
    const float *last = llama_get_logits_ith(s->lc, -1);
    llama_memory_t mem = llama_get_memory(s->lc);
    s->batch.n_tokens = 0;
    for (size_t k = 0; k < n_cand; k++) {
        scores[k] = cand_len[k] ? log_softmax_at(last, s->n_vocab, cand[k][0]) : 0.0f;
        llama_memory_seq_cp(mem, 0, (llama_seq_id)(k + 1), -1, -1);
        /* The last token's logits predict nothing we score. */
        for (size_t j = 0; j + 1 < cand_len[k]; j++) {
            batch_add(&s->batch, cand[k][j], (int32_t)(n_prompt + j), (int32_t)(k + 1), true);
        }
    }
    if (s->batch.n_tokens > 0) {
        int32_t drc = llama_decode(s->lc, s->batch);
        if (drc != 0) {
            return slm_err_set(err, SLM_E_BACKEND, "llama_decode failed (%d)", (int)drc);
        }
    }
    int32_t i = 0;
    for (size_t k = 0; k < n_cand; k++) {
        for (size_t j = 0; j + 1 < cand_len[k]; j++, i++) {
            scores[k] += log_softmax_at(llama_get_logits_ith(s->lc, i), s->n_vocab, cand[k][j + 1]);
        }
    }
    return SLM_OK;
}

int slm_tune_scorer_logits(struct slm_tune_scorer *s, const int32_t *tokens, size_t n,
                           const float **logits, int32_t *n_vocab, struct slm_err *err) {
    if (n == 0 || n > s->n_ctx) {
        return slm_err_set(err, SLM_E_OVERFLOW, "%zu tokens do not fit the scorer's %u", n,
                           s->n_ctx);
    }
    int rc = decode_prompt(s, tokens, n, err);
    if (rc == SLM_OK) {
        *logits = llama_get_logits_ith(s->lc, -1);
        *n_vocab = s->n_vocab;
    }
    return rc;
}
