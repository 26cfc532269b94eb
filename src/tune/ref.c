/*
 * tune/ref.c - reference logits from libllama itself, for checking that the
 * training graph computes the same function llama.cpp serves (tests) and that
 * a saved adapter does the same at inference.
 *
 * The context uses an F32 KV cache and no flash attention: libllama's default
 * F16 cache alone differs from an exact forward pass by about 1e-2.
 */
#include <stdlib.h>
#include <string.h>

#include <llama.h>

#include "slm/engine.h"
#include "slm/score.h"
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

/* A thin owner of what the engine scorer borrows: the model and the adapter
 * it loads from paths. */
struct slm_tune_scorer {
    struct slm_model *model;
    struct slm_adapter *ad;
    struct slm_scorer *sc;
};

int slm_tune_scorer_init(const char *model, const char *adapter, uint32_t n_ctx,
                         uint32_t n_candidates, int32_t n_threads, struct slm_tune_scorer **out,
                         struct slm_err *err) {
    struct slm_tune_scorer *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_model_params mp = slm_model_params_default();
    mp.n_gpu_layers = 0;
    int rc = slm_model_load(model, &mp, &s->model, err);
    if (rc == SLM_OK && adapter) {
        rc = slm_adapter_load(s->model, adapter, &s->ad, err);
    }
    if (rc == SLM_OK) {
        float one = 1.0f;
        struct slm_scorer_params sp = slm_scorer_params_default();
        sp.n_ctx = n_ctx < 64 ? 64 : n_ctx;
        sp.max_candidates = n_candidates ? n_candidates : 1;
        struct slm_model_info mi;
        slm_model_get_info(s->model, &mi);
        sp.n_threads = slm__tune_threads(mi.n_params, n_threads);
        rc = slm_scorer_init_params(s->model, &s->ad, &one, s->ad ? 1 : 0, &sp, &s->sc, err);
    }
    if (rc != SLM_OK) {
        slm_tune_scorer_free(s);
        return rc;
    }
    *out = s;
    return SLM_OK;
}

void slm_tune_scorer_free(struct slm_tune_scorer *s) {
    if (!s) {
        return;
    }
    slm_scorer_free(s->sc);
    slm_adapter_free(s->ad);
    slm_model_free(s->model);
    free(s);
}

int slm_tune_scorer_score(struct slm_tune_scorer *s, const int32_t *prompt, size_t n_prompt,
                          const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                          float *scores, struct slm_err *err) {
    return slm_scorer_score(s->sc, prompt, n_prompt, cand, cand_len, n_cand, scores, err);
}
