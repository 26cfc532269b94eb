/*
 * engine/sample.h - the sampling pieces that single-sequence generation
 * (ctx.c) and the scheduler (sched.c) share: the sampler chain, drawing a
 * token from one row of logits, and log-probs under the model.
 *
 * Nothing here allocates but slm__chain_init() and slm__eog_ids(); the
 * per-token functions work in caller-owned scratch sized at init. Never
 * included outside src/engine/.
 */
#ifndef SLM_ENGINE_SAMPLE_H
#define SLM_ENGINE_SAMPLE_H

#include <llama.h>

#include "slm/engine.h"

/* Builds the sampler chain in llama.cpp's usual order: penalties, grammar,
 * top-k, top-p, min-p, temperature, then draw (greedy at temperature 0).
 * `n_ctx` is how far back repeat_last_n = -1 looks. SLM_E_INVALID when the
 * grammar does not parse. On success *out is owed one llama_sampler_free(). */
int slm__chain_init(const struct slm_model *model, const struct slm_sample_params *sp,
                    int32_t n_ctx, struct llama_sampler **out, struct slm_err *err);

/* The end-of-generation token ids of `model` (for ignore_eos), malloc'd into
 * *out (NULL when there are none). SLM_E_NOMEM on allocation failure. */
int slm__eog_ids(const struct slm_model *model, int32_t **out, size_t *n_out);

/* Draws one token from `logits` (n_vocab floats) with `chain` and accepts it
 * into the chain. `cand` is n_vocab entries of scratch. With `ignore_eos`
 * the `eog` ids are masked out first. When the chain allows no token (a
 * complete grammar under ignore_eos) it returns an end-of-generation id, or
 * -1 when the model has none: either way, the answer ends there. */
int32_t slm__sample_token(struct llama_sampler *chain, const float *logits, int32_t n_vocab,
                          llama_token_data *cand, const int32_t *eog, size_t n_eog,
                          bool ignore_eos);

/* log-sum-exp of the raw logits, for log-probs under the model: subtracting
 * it from a logit gives that token's log-prob. */
double slm__log_norm(const float *logits, int32_t n);

/* The `k` (1..SLM_MAX_TOP_LOGPROBS) most likely tokens, best first. */
void slm__top_logprobs(const float *logits, int32_t n, float lse, int k,
                       struct slm_top_logprob *top);

/* The log-prob of `tok` and, when k > 0, the k best alternatives (written to
 * `top`); log-probs are of the raw logits, before temperature. */
float slm__token_logprob(const float *logits, int32_t n_vocab, int32_t tok, int k,
                         struct slm_top_logprob *top);

#endif
