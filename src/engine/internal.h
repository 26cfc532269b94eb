/*
 * engine/internal.h - what the engine's files share; never included outside
 * src/engine/.
 */
#ifndef SLM_ENGINE_INTERNAL_H
#define SLM_ENGINE_INTERNAL_H

#include <llama.h>

#include "slm/engine.h"

struct slm_model {
    struct llama_model *lm;
    const struct llama_vocab *vocab;
    char *chat_template; /* owned copy, NULL when the model has none */
    char path[4096];
};

struct slm_adapter {
    struct llama_adapter_lora *la;
    struct slm_model *model;
};

struct slm_ctx {
    struct slm_model *model;
    struct llama_context *lc;
    struct llama_batch batch; /* n_batch tokens, sized at init */
    uint32_t n_batch;
    /* Tokens whose KV sequence 0 holds, for prompt reuse across calls. */
    int32_t *cached;
    size_t n_cached;
    /* Sampling scratch, sized at init: no allocation in the token loop. */
    llama_token_data *cand;
    int32_t n_vocab;
    int32_t *eog; /* end-of-generation token ids, for ignore_eos */
    size_t n_eog;
    /* Current adapter set, to notice changes. */
    struct slm_adapter **adapters;
    float *scales;
    size_t n_adapters;
};

/* Converts a llama.cpp decode status into an slm status with a message. */
int slm__decode_status(int32_t rc, struct slm_err *err);

#endif
