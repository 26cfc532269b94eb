/*
 * slm/signals.h - the router's signals and the calibration math behind its
 * thresholds.
 *
 *  - token confidence: mean, minimum and a low quantile of the probabilities
 *    of the generated tokens (from their log-probs);
 *  - input signals: size and messiness of the input text (the cheap "this
 *    input is unusual" test);
 *  - label sets: the exact probability of each allowed label, normalised
 *    over the set, every label scored after the prompt in one decode
 *    (slm/score.h), with a correction against short-label bias;
 *  - calibration: AUROC and ECE of a confidence for predicting a correct local
 *    answer, and the threshold that reaches a target accuracy at the lowest
 *    cost (with the whole accuracy/cost curve and the oracle router).
 *
 * Everything but the label set is pure (no model, no I/O). A label set uses
 * the engine (tokenizer, scorer) but renders nothing: the caller renders the
 * prompt template (with the request's input, and once with an empty input for
 * the prior) and hands over the text.
 *
 * Thread safety: pure functions are reentrant. A label set belongs to one
 * thread at a time (it keeps scratch and the prior cache).
 */
#ifndef SLM_SIGNALS_H
#define SLM_SIGNALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"

struct slm_model;
struct slm_scorer;

/* ---------------------------------------------------------------- tokens */

struct slm_token_conf {
    double mean_prob; /* arithmetic mean of exp(logprob) */
    double min_prob;  /* lowest token probability */
    double q_prob;    /* the `quantile` quantile of token probability (linear interpolation
                         between order statistics, numpy's default) */
    double geo_prob;  /* exp(mean logprob): the per-token perplexity's inverse */
    size_t n;
};

/*
 * Confidence of a generated answer from its tokens' log-probs (natural log).
 * `quantile` in [0, 1] (e.g. 0.1; clamped). With n == 0 every probability is
 * NAN, so a threshold check on it fails (an empty answer is not confident).
 */
void slm_signal_token_conf(const float *logprobs, size_t n, double quantile,
                           struct slm_token_conf *out);

/* ---------------------------------------------------------------- input */

struct slm_input_signals {
    size_t n_chars; /* code points; each byte of an invalid UTF-8 sequence counts as one */
    size_t n_bytes;
    size_t n_lines;       /* '\n'-separated lines (0 for empty text) */
    size_t max_line;      /* longest line in chars, without its '\n' (a '\r' before it too) */
    size_t n_nontext;     /* chars counted as non-text (below) */
    double nontext_share; /* n_nontext / n_chars; 0 for empty text */
};

/*
 * Size and messiness of `text` (`len` bytes, need not be NUL-terminated; a NUL
 * byte is a control character). Non-text: control characters other than
 * \n \t \r (C0, DEL, C1 U+0080..U+009F), each byte of invalid UTF-8 (bad
 * lead or continuation bytes, overlong forms, surrogates, > U+10FFFF, a cut
 * sequence) and U+FFFD (what a lossy decoder left behind). Input tokens are
 * counted by the caller, who has the tokenizer.
 */
void slm_signal_input(const char *text, size_t len, struct slm_input_signals *out);

/* ---------------------------------------------------------------- labels */

/*
 * How summed label log-likelihoods are corrected before normalising. Summed
 * log-probs favour short labels (each extra token multiplies in a p < 1): an
 * untuned model picks the shortest label for everything.
 *
 *  - PRIOR: subtract each label's log-likelihood after the same template
 *    rendered with an EMPTY input (what the model says before it has read
 *    anything), i.e. score by pointwise mutual information between input and
 *    label. Costs one extra scoring of the labels per distinct empty prompt
 *    (cached in the set).
 *  - LENGTH: divide each label's log-likelihood by its token count (mean
 *    per-token log-prob).
 *
 * The default is NONE, by measurement: on banking77's dev split with
 * stories260K tuned by `slm tune` on the same template, NONE gives 84%
 * accuracy, AUROC 0.885 and ECE 0.035 for the chosen label's probability;
 * PRIOR 64% / 0.804 / 0.162 (a tuned model's preference before reading the
 * input is the learned label frequency, which is information, not bias);
 * LENGTH 84% / 0.800 / 0.805 (it flattens every distribution towards 1/n).
 * PRIOR is for untuned models prompted with few-shot examples, where the
 * short-label bias dominates. Measurements and reasoning:
 * docs/internals/labels.md.
 */
enum slm_label_correction {
    SLM_LABEL_CORR_NONE = 0,
    SLM_LABEL_CORR_PRIOR,
    SLM_LABEL_CORR_LENGTH,
};

#define SLM_LABEL_CORR_DEFAULT SLM_LABEL_CORR_NONE

const char *
slm_label_correction_name(enum slm_label_correction c); /* "none" | "prior" | "length" */
/* Parses a name above; SLM_E_INVALID for anything else. */
int slm_label_correction_parse(const char *name, enum slm_label_correction *out);

struct slm_label_set_params {
    enum slm_label_correction correction;
    bool add_eos;       /* each label ends with the model's EOS token (as tuned completions do:
                           "card" then stops, rather than going on to "card_arrival") */
    bool add_bos;       /* the prompt starts with BOS when the model wants one (default true) */
    bool parse_special; /* special tokens in the prompt text ("<|im_start|>") (default true) */
    /* How a label's tokens follow the prompt. false (default): the label is
     * tokenized alone and its tokens appended to the prompt's, exactly as
     * `slm tune` builds a prompt + completion example, so a model tuned on the
     * same template scores its labels the way it learned them (on banking77
     * with stories260K tuned by slm tune: 82% against 16% the other way).
     * true: the tokens the label has as a continuation of the prompt's text
     * (SentencePiece "Intent: card" -> "▁card"), for models that were not
     * tuned by slm and read the label as running text. */
    bool continuation;
    size_t max_prompt_tokens; /* 0 = 1 << 20 */
    /* With correction none, labels are found best first (slm_scorer_best): scoring stops once
     * the labels not scored can hold at most this share of the mass of those that were, so
     * `prob` and `margin` are exact to that fraction; the unscored labels get probs 0 and
     * their bound as logp. 0: score every label (the default of the params is 1e-2). */
    double max_rest;
};

/* correction = SLM_LABEL_CORR_DEFAULT, add_eos = true, add_bos = true, parse_special = true,
 * max_rest = 1e-2. */
struct slm_label_set_params slm_label_set_params_default(void);

struct slm_label_set;

/*
 * A set of `n_labels` distinct labels (strings copied) bound to `model` (borrowed;
 * it outlives the set). SLM_E_INVALID for no labels, an empty or duplicate label.
 * If init fails nothing is owed; on success one slm_label_set_free().
 */
int slm_label_set_init(struct slm_model *model, const char *const *labels, size_t n_labels,
                       const struct slm_label_set_params *params, struct slm_label_set **out,
                       struct slm_err *err);
void slm_label_set_free(struct slm_label_set *ls);
size_t slm_label_set_size(const struct slm_label_set *ls);
const char *slm_label_set_label(const struct slm_label_set *ls, size_t i); /* borrowed */

struct slm_label_result {
    size_t best;         /* index of the most probable label (after correction) */
    double prob;         /* probs[best] */
    double margin;       /* probs[best] - the second highest (prob when one label) */
    const double *probs; /* n labels, normalised, after correction; owned by the set until the
                            next call; 0 for a label the search left unscored */
    const double *logp;  /* n labels: raw summed log-likelihoods after the prompt (for an
                            unscored label, an upper bound) */
    size_t n_scored;     /* labels scored exactly (n unless the search stopped early) */
    const double *prior; /* n labels: log-likelihoods after the empty prompt (NULL unless PRIOR) */
    const size_t *n_tokens; /* n labels: tokens scored per label (EOS included) */
};

/*
 * Scores every label as a continuation of `prompt` (the rendered template
 * text; tokenized with BOS/special handling from the params) with `scorer`
 * (over the same model). Each label's tokens are those it has after the
 * prompt's text: prompt+label is tokenized and, when the prompt's tokens are a
 * prefix of that, the rest is the label's; otherwise the label is tokenized
 * alone (a BPE merge across the boundary). With the PRIOR correction,
 * `empty_prompt` is the template rendered with an empty input (required,
 * SLM_E_INVALID when NULL); the priors are computed on first use and cached
 * while the empty prompt stays the same. With correction none and max_rest > 0
 * the labels are found best first and scoring stops early (see max_rest).
 * Errors from the scorer pass through (SLM_E_OVERFLOW when prompt plus a
 * label does not fit).
 */
int slm_label_set_score(struct slm_label_set *ls, struct slm_scorer *scorer, struct slm_str prompt,
                        struct slm_str empty_prompt, struct slm_label_result *out,
                        struct slm_err *err);

/* The label whose text equals `text` exactly, or SIZE_MAX. */
size_t slm_label_set_find(const struct slm_label_set *ls, struct slm_str text);

/* ---------------------------------------------------------------- calibration */

/*
 * AUROC of `conf` for predicting `correct`: the probability that a random
 * correct item has a higher confidence than a random wrong one, ties counting
 * one half (Mann-Whitney U with mid-ranks). NAN when n is 0, when every item
 * is correct or every item wrong, or when memory runs out.
 */
double slm_calib_auroc(const double *conf, const bool *correct, size_t n);

/*
 * Expected calibration error with `bins` equal-width bins over [0, 1]
 * (bins <= 0: 10): sum over bins of (items in bin / n) * |accuracy in bin -
 * mean confidence in bin|. Confidence 1 falls in the last bin; values outside
 * [0, 1] are clamped. NAN when n is 0.
 */
double slm_calib_ece(const double *conf, const bool *correct, size_t n, int bins);

/* Costs and the cloud's accuracy for the threshold chooser. */
struct slm_calib_params {
    double cloud_accuracy;  /* probability the cloud answers an escalated item correctly,
                               used when `cloud_correct` is NULL */
    double local_cost;      /* cost of answering one item locally (about 0) */
    double cloud_cost;      /* cost of escalating one item, used when `cloud_costs` is NULL */
    double target_accuracy; /* the accuracy to reach, absolute (e.g. 0.98 * all-cloud accuracy) */
    double z;               /* how many standard errors below the measured accuracy the chooser
                               looks: 0 = the point estimate, 1.645 = a one-sided 95% bound */
};

/* One point of the curve: escalate every item with confidence < threshold. */
struct slm_calib_point {
    double threshold; /* INFINITY = escalate everything */
    size_t n_escalated;
    double share_escalated;
    double accuracy;     /* expected: local correct kept + cloud correct escalated, over n */
    double accuracy_low; /* accuracy - z standard errors (see slm_calib_curve) */
    double cost;         /* total: local_cost per kept item + cloud cost per escalated item */
};

/*
 * The accuracy/cost curve over every distinct threshold: one point per
 * distinct confidence value (escalate what is below it; the lowest escalates
 * nothing) plus INFINITY (escalate all), in increasing threshold order.
 * `cloud_correct` (per item, may be NULL: use cloud_accuracy) and
 * `cloud_costs` (per item, may be NULL: use cloud_cost) make it exact when the
 * cloud's answers were measured.
 *
 * accuracy_low is the accuracy less p->z standard errors of a set of n items
 * answered the same way: kept items are Bernoulli at the kept rows' rate,
 * escalated ones at the cloud's, each rate smoothed by one success and one
 * failure (so a handful of rows that all happened to be right still count
 * as uncertain). Choosing on it keeps a threshold that only just reaches the
 * target on the calibration rows (by luck, most often) from falling short on
 * the rows that follow. Writes at most `cap` points to `out` (may be
 * NULL with cap 0); returns the number of points (<= n + 1), or a negative
 * status (SLM_E_NOMEM, SLM_E_INVALID for a NaN confidence or n == 0).
 */
int64_t slm_calib_curve(const double *conf, const bool *correct, const bool *cloud_correct,
                        const double *cloud_costs, size_t n, const struct slm_calib_params *p,
                        struct slm_calib_point *out, size_t cap);

/*
 * The cheapest point of the curve whose accuracy_low reaches
 * p->target_accuracy (ties: the lower threshold). SLM_E_NOT_FOUND when no threshold reaches it
 * (then *chosen is the most accurate point, the cheaper among equals).
 * `oracle` (may be NULL) receives the oracle router, which escalates exactly
 * the items answered wrong locally (threshold NAN).
 */
int slm_calib_choose(const double *conf, const bool *correct, const bool *cloud_correct,
                     const double *cloud_costs, size_t n, const struct slm_calib_params *p,
                     struct slm_calib_point *chosen, struct slm_calib_point *oracle);

#endif /* SLM_SIGNALS_H */
