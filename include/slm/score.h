/*
 * slm/score.h - exact scoring of candidate continuations (labels) of one
 * prompt, over an already loaded model, in one decode.
 *
 * The prompt is decoded once on sequence 0; its KV cells are then made to
 * belong to every candidate's sequence (a unified KV cache, so sharing a cell
 * costs nothing), and the candidates follow in one batch as a token trie: a
 * prefix that several candidates share ("card_" of "card_arrival" and
 * "card_linking") is decoded once, in the sequences of all of them. 77
 * banking labels cost about one prompt plus one batch of their distinct
 * prefixes. llama.cpp caps the sequences of one context (LLAMA_MAX_SEQ, 256 in
 * v0.5.0, llama_max_parallel_sequences()); past it, and when the candidates'
 * prefixes do not fit the context at once, candidates are scored in chunks
 * over the same prompt cells (one extra decode per chunk, never the prompt
 * again).
 *
 * slm_scorer_best finds the best candidate without scoring them all: it
 * decodes the same trie a few rows at a time, most likely prefix first, and
 * stops once no open prefix can win.
 *
 * The prompt's KV stays after a call: the next call reuses its longest common
 * prefix with the new prompt (a label check after the same system prompt
 * decodes only the new input).
 *
 * Ownership: a scorer borrows its model and adapters; they outlive it. It owns
 * its own llama context, so it shares the weights with the server's model pool
 * without touching the pool's contexts.
 * Thread safety: one thread at a time per scorer; several scorers over one
 * model may run on different threads.
 */
#ifndef SLM_SCORE_H
#define SLM_SCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"

struct slm_model;
struct slm_adapter;

struct slm_scorer;

struct slm_scorer_params {
    uint32_t n_ctx;          /* KV cells: the prompt plus the candidates of a chunk; 0 = 2048 */
    uint32_t max_candidates; /* candidates scored side by side (sequences = this + 1, capped at
                                llama's maximum); more are scored in chunks; 0 = 255 */
    int32_t n_threads;       /* 0 = physical cores */
    bool kv_f32;             /* F32 KV cache, no flash attention: scores equal a one-by-one
                                evaluation to ~1e-6 (default F16 KV: ~1e-3); always so for
                                heads smaller than 32 (faster there) */
};

struct slm_scorer_params slm_scorer_params_default(void);

/*
 * Makes a scorer over `model` with `n_adapters` LoRA adapters applied at
 * `scales` (both arrays borrowed for the call only; the adapters themselves
 * must outlive the scorer). `params` NULL = defaults. SLM_E_INVALID for an
 * adapter of another model, SLM_E_BACKEND when llama.cpp cannot make the
 * context. If init fails nothing is owed; on success one slm_scorer_free().
 */
int slm_scorer_init_params(struct slm_model *model, struct slm_adapter *const *adapters,
                           const float *scales, size_t n_adapters,
                           const struct slm_scorer_params *params, struct slm_scorer **out,
                           struct slm_err *err);
void slm_scorer_free(struct slm_scorer *s);

struct slm_model *slm_scorer_model(const struct slm_scorer *s);
uint32_t slm_scorer_n_ctx(const struct slm_scorer *s);

/*
 * logp[k] = sum_j log p(cand[k][j] | prompt, cand[k][<j]) for k < n_cand
 * (natural log; 0 for an empty candidate). `prompt` must not be empty (it
 * holds the BOS when the model wants one). Arrays are borrowed for the call.
 * Reuses the KV of the longest common prefix with the previous call's prompt.
 * SLM_E_OVERFLOW (both numbers in the message) when the prompt plus the
 * longest candidate does not fit n_ctx; SLM_E_INVALID for an empty prompt or a
 * token outside the vocabulary. After an error the cached prompt is dropped.
 */
int slm_scorer_score(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                     const int32_t *const *cand, const size_t *cand_len, size_t n_cand, float *logp,
                     struct slm_err *err);

/* How slm_scorer_best stops. */
struct slm_scorer_search {
    /* Stop only when the candidates not scored exactly can hold at most this share of the
     * probability mass of those that were (their bounds summed): the best candidate's share
     * of the set is then exact to that fraction. HUGE_VAL: stop as soon as the best is known
     * (every other candidate's bound below it). 0: score every candidate. */
    double max_rest;
    uint32_t max_rows; /* trie rows per decode, at most (the first decodes take fewer); 0 = 16 */
};

/* max_rest = 1e-3, max_rows = 16. */
struct slm_scorer_search slm_scorer_search_default(void);

/*
 * The candidate of the highest log-prob after `prompt`, found best first
 * without scoring every candidate where the model is sure. Log-probs only
 * fall along a candidate's tokens, so a prefix's log-prob bounds every
 * candidate under it: the search decodes the trie's most likely prefixes a
 * few rows per decode (a chain of single children whole) and stops when the
 * best complete candidate beats every open prefix and the open prefixes'
 * mass is below `how->max_rest` (NULL = defaults).
 *
 * *best: the candidate's index (ties: the lowest, as an argmax of
 * slm_scorer_score's logp would pick). logp[k]: exactly slm_scorer_score's
 * value where exact[k] is true (both arrays of n_cand, caller-owned),
 * otherwise an upper bound (the log-prob of its longest scored prefix).
 * More candidates than the scorer's sequences or cells are all scored, as
 * slm_scorer_score does. Errors as slm_scorer_score; SLM_E_INVALID for no
 * candidates.
 */
int slm_scorer_best(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                    const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                    const struct slm_scorer_search *how, size_t *best, float *logp, bool *exact,
                    struct slm_err *err);

/*
 * Next-token logits after `prompt` (n_vocab floats, borrowed until the next
 * call on `s`), with the same prefix reuse. Errors as slm_scorer_score.
 */
int slm_scorer_logits(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                      const float **logits, int32_t *n_vocab, struct slm_err *err);

/* What the last call did (for tests and metrics). */
struct slm_scorer_stats {
    size_t n_prompt_reused;  /* prompt tokens whose KV was kept from the call before */
    size_t n_prompt_decoded; /* prompt tokens decoded */
    size_t n_cand_decoded;   /* candidate tokens decoded: distinct prefixes, one per trie node */
    size_t n_chunks;         /* decodes of candidate tokens (1 unless chunked; 0 if none needed;
                                slm_scorer_best: its rounds) */
};

void slm_scorer_last_stats(const struct slm_scorer *s, struct slm_scorer_stats *out);

/* Forgets the cached prompt (the next call decodes it all). */
void slm_scorer_reset(struct slm_scorer *s);

#endif /* SLM_SCORE_H */
