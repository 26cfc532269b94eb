/*
 * engine/sample.c - sampler chains, drawing a token, log-probs: shared by
 * slm_generate and the scheduler so that one request gives the same tokens
 * through either.
 */
#include "engine/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

int slm__chain_init(const struct slm_model *model, const struct slm_sample_params *sp,
                    int32_t n_ctx, struct llama_sampler **out, struct slm_err *err) {
    struct llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    struct llama_sampler *ch = llama_sampler_chain_init(cp);
    if (!ch) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    bool penalties =
        sp->repeat_penalty != 1.0f || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f;
    if (penalties && sp->repeat_last_n != 0) {
        int32_t last_n = sp->repeat_last_n < 0 ? n_ctx : sp->repeat_last_n;
        llama_sampler_chain_add(ch, llama_sampler_init_penalties(llama_vocab_n_tokens(model->vocab),
                                                                 last_n, sp->repeat_penalty,
                                                                 sp->frequency_penalty,
                                                                 sp->presence_penalty));
    }
    if (sp->grammar && sp->grammar[0]) {
        struct llama_sampler *g = llama_sampler_init_grammar(model->vocab, sp->grammar, "root");
        if (!g) {
            llama_sampler_free(ch);
            return slm_err_set(err, SLM_E_INVALID,
                               "the grammar did not parse (SLM_LOG=debug shows where)");
        }
        llama_sampler_chain_add(ch, g);
    }
    if (sp->temperature <= 0.0f) {
        if (sp->infill) {
            llama_sampler_chain_add(ch, llama_sampler_init_infill(model->vocab));
        }
        llama_sampler_chain_add(ch, llama_sampler_init_greedy());
    } else {
        if (sp->top_k > 0) {
            llama_sampler_chain_add(ch, llama_sampler_init_top_k(sp->top_k));
        }
        if (sp->top_p > 0.0f && sp->top_p < 1.0f) {
            llama_sampler_chain_add(ch, llama_sampler_init_top_p(sp->top_p, 1));
        }
        if (sp->min_p > 0.0f) {
            llama_sampler_chain_add(ch, llama_sampler_init_min_p(sp->min_p, 1));
        }
        if (sp->infill) {
            llama_sampler_chain_add(ch, llama_sampler_init_infill(model->vocab));
        }
        llama_sampler_chain_add(ch, llama_sampler_init_temp(sp->temperature));
        uint32_t seed = sp->seed == SLM_SEED_RANDOM ? LLAMA_DEFAULT_SEED : sp->seed;
        llama_sampler_chain_add(ch, llama_sampler_init_dist(seed));
    }
    *out = ch;
    return SLM_OK;
}

int slm__eog_ids(const struct slm_model *model, int32_t **out, size_t *n_out) {
    int32_t n_vocab = llama_vocab_n_tokens(model->vocab);
    size_t n = 0;
    for (int32_t t = 0; t < n_vocab; t++) {
        n += llama_vocab_is_eog(model->vocab, t);
    }
    *out = NULL;
    *n_out = 0;
    if (n == 0) {
        return SLM_OK;
    }
    int32_t *ids = malloc(n * sizeof(*ids));
    if (!ids) {
        return SLM_E_NOMEM;
    }
    size_t j = 0;
    for (int32_t t = 0; t < n_vocab && j < n; t++) {
        if (llama_vocab_is_eog(model->vocab, t)) {
            ids[j++] = t;
        }
    }
    *out = ids;
    *n_out = j;
    return SLM_OK;
}

/* The first highest logit, skipping end-of-generation tokens when asked
 * (as the greedy sampler would see them at -inf); -1 when there is none. */
static int32_t argmax(const float *logits, int32_t n_vocab, const int32_t *eog, size_t n_eog,
                      bool ignore_eos) {
    int32_t best = -1;
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (logits[i] > max) {
            bool skip = false;
            for (size_t k = 0; ignore_eos && k < n_eog && !skip; k++) {
                skip = eog[k] == i;
            }
            if (!skip) {
                best = i;
                max = logits[i];
            }
        }
    }
    return best;
}

int32_t slm__sample_token(struct llama_sampler *chain, const float *logits, int32_t n_vocab,
                          llama_token_data *cand, const int32_t *eog, size_t n_eog,
                          bool ignore_eos) {
    /* A chain that is the greedy sampler alone (temperature 0, no penalties,
     * no grammar) picks what argmax picks: one pass over the logits instead
     * of filling and scanning the candidate array (~1% of a token's time on
     * a 135M model with a 49k vocabulary). */
    if (llama_sampler_chain_n(chain) == 1 &&
        strcmp(llama_sampler_name(llama_sampler_chain_get(chain, 0)), "greedy") == 0) {
        int32_t tok = argmax(logits, n_vocab, eog, n_eog, ignore_eos);
        if (tok >= 0) {
            llama_sampler_accept(chain, tok);
            return tok;
        }
    }
    for (int32_t i = 0; i < n_vocab; i++) {
        cand[i].id = i;
        cand[i].logit = logits[i];
        cand[i].p = 0.0f;
    }
    if (ignore_eos) {
        for (size_t i = 0; i < n_eog; i++) {
            cand[eog[i]].logit = -INFINITY;
        }
    }
    llama_token_data_array arr = {cand, (size_t)n_vocab, -1, false};
    llama_sampler_apply(chain, &arr);
    /* No token allowed: a grammar that is complete allows only the end of
     * generation, which ignore_eos masked. The answer is done; accepting a
     * token the grammar refused would throw inside llama.cpp. */
    if (arr.selected < 0 || !(arr.data[arr.selected].logit > -INFINITY)) {
        return n_eog ? eog[0] : -1;
    }
    int32_t tok = arr.data[arr.selected].id;
    llama_sampler_accept(chain, tok);
    return tok;
}

double slm__log_norm(const float *logits, int32_t n) {
    float mx = logits[0];
    for (int32_t i = 1; i < n; i++) {
        mx = logits[i] > mx ? logits[i] : mx;
    }
    /* Seeded with the first term so the sum is visibly positive for log()
     * (n >= 1: a vocabulary has a token, and logits[0] was read above). */
    double s = exp((double)(logits[0] - mx));
    for (int32_t i = 1; i < n; i++) {
        s += exp((double)(logits[i] - mx));
    }
    return (double)mx + log(s);
}

void slm__top_logprobs(const float *logits, int32_t n, float lse, int k,
                       struct slm_top_logprob *top) {
    for (int j = 0; j < k; j++) {
        top[j].token = -1;
        top[j].logprob = -INFINITY;
    }
    for (int32_t i = 0; i < n; i++) {
        float lp = logits[i] - lse;
        if (lp <= top[k - 1].logprob) {
            continue;
        }
        int j = k - 1;
        while (j > 0 && top[j - 1].logprob < lp) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].token = i;
        top[j].logprob = lp;
    }
}

float slm__token_logprob(const float *logits, int32_t n_vocab, int32_t tok, int k,
                         struct slm_top_logprob *top) {
    float lse = (float)slm__log_norm(logits, n_vocab);
    if (k > 0) {
        slm__top_logprobs(logits, n_vocab, lse, SLM_MIN(k, SLM_MAX_TOP_LOGPROBS), top);
    }
    return logits[tok] - lse;
}
