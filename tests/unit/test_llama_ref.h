/*
 * test_llama_ref.h - reference logits from libllama itself, for the tune
 * tests that check the training graph computes the same function llama.cpp
 * serves, and that a saved adapter or a fused model does the same at
 * inference. A test helper, not library code: src/ outside engine/ never
 * includes llama.h (scripts/check-layers.sh), so it lives here.
 *
 * The context uses an F32 KV cache and no flash attention: libllama's default
 * F16 cache alone differs from an exact forward pass by about 1e-2.
 */
#ifndef SLM_TEST_LLAMA_REF_H
#define SLM_TEST_LLAMA_REF_H

#include <llama.h>
#include <stdint.h>
#include <string.h>

#include "slm/base.h"
#include "slm/engine.h"

static inline int test_llama_decode_all(struct llama_context *lc, const int32_t *tokens, size_t n,
                                        int32_t n_vocab, float *logits, struct slm_err *err) {
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

/* Logits for every position of `tokens` (n * n_vocab floats into `logits`),
 * with an optional adapter at `adapter_scale`; `n_threads` 0 means 1. */
static inline int test_llama_logits(const char *model_path, const char *adapter_path,
                                    float adapter_scale, const int32_t *tokens, size_t n,
                                    float *logits, int32_t n_threads, struct slm_err *err) {
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
    cp.n_threads = n_threads > 0 ? n_threads : 1;
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
    rc = test_llama_decode_all(lc, tokens, n, llama_vocab_n_tokens(llama_model_get_vocab(lm)),
                               logits, err);
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

#endif
