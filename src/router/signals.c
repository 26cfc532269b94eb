/*
 * router/signals.c - token confidence, input signals and label sets
 * (slm/signals.h). The calibration math is in calib.c.
 *
 * By default a label is tokenized alone and appended to the prompt's tokens,
 * as `slm tune` builds its examples (see slm_label_set_params.continuation).
 * With `continuation`, label tokens are the tokens a label has after the
 * prompt's text, not the label tokenized alone: with SentencePiece "Intent: card" has a "▁card"
 * where "card" alone would start differently, and BPE may merge across the
 * boundary. Only the end of the prompt can interact with the label, so the
 * boundary is worked out on the prompt's last bytes (TAIL_BYTES, starting at a
 * code point) and cached while that tail stays the same - a template that
 * ends with fixed text ("\nIntent:") tokenizes its labels once.
 */
#include "slm/signals.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/engine.h"
#include "slm/score.h"

/* ---------------------------------------------------------------- tokens */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void slm_signal_token_conf(const float *logprobs, size_t n, double quantile,
                           struct slm_token_conf *out) {
    out->n = n;
    if (n == 0) {
        out->mean_prob = out->min_prob = out->q_prob = out->geo_prob = NAN;
        return;
    }
    double sum = 0, lsum = 0, mn = INFINITY;
    for (size_t i = 0; i < n; i++) {
        double p = exp((double)logprobs[i]);
        sum += p;
        lsum += (double)logprobs[i];
        mn = p < mn ? p : mn;
    }
    out->mean_prob = sum / (double)n;
    out->min_prob = mn;
    out->geo_prob = exp(lsum / (double)n);
    double stack[512];
    double *p = n <= SLM_ARRAY_LEN(stack) ? stack : malloc(n * sizeof(double));
    if (!p) {
        out->q_prob = mn; /* no memory: the most cautious answer */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = exp((double)logprobs[i]);
    }
    qsort(p, n, sizeof(double), cmp_double);
    double q = quantile < 0 || quantile != quantile ? 0 : quantile > 1 ? 1 : quantile;
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    out->q_prob = p[lo] + (h - (double)lo) * (p[hi] - p[lo]);
    if (p != stack) {
        free(p);
    }
}

/* ---------------------------------------------------------------- input */

/* Length of the valid UTF-8 sequence at s (n bytes left) and its code point,
 * or 0 when the bytes there are not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return 0;
    }
    *cp = v;
    return len;
}

static bool is_nontext(uint32_t cp) {
    if (cp == '\n' || cp == '\t' || cp == '\r') {
        return false;
    }
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0xFFFD;
}

void slm_signal_input(const char *text, size_t len, struct slm_input_signals *out) {
    memset(out, 0, sizeof(*out));
    out->n_bytes = len;
    const unsigned char *s = (const unsigned char *)text;
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t k = utf8_decode(s + i, len - i, &cp);
        bool bad = k == 0;
        i += bad ? 1 : k;
        out->n_chars++;
        out->n_nontext += bad || is_nontext(cp);
        if (!bad && cp == '\n') {
            /* A "\r\n" line ends before its '\r'. */
            line -= line > 0 && s[i - 2] == '\r';
            out->max_line = SLM_MAX(out->max_line, line);
            out->n_lines++;
            line = 0;
        } else {
            line++;
        }
    }
    if (len > 0 && s[len - 1] != '\n') {
        out->max_line = SLM_MAX(out->max_line, line);
        out->n_lines++;
    }
    out->nontext_share = out->n_chars ? (double)out->n_nontext / (double)out->n_chars : 0.0;
}

/* ---------------------------------------------------------------- labels */

#define TAIL_BYTES 64

struct toks {
    int32_t *t;
    size_t n, cap;
};

struct slm_label_set {
    struct slm_model *model;
    struct slm_label_set_params p;
    int32_t eos;
    char **text;
    size_t n;
    /* Label tokens as continuations of the cached tail (EOS appended). */
    struct toks *lt;
    char tail[TAIL_BYTES];
    size_t tail_len;
    bool tail_valid;
    bool alone_ready; /* lt holds the labels tokenized alone (continuation off) */
    size_t drop;      /* prompt tokens the labels' tokens start before (see bind_tail) */
    /* Scratch. */
    struct toks prompt, tmp, tail_tok;
    struct slm_buf buf;
    const int32_t **cand;
    size_t *cand_len;
    float *lp;
    bool *exact; /* the search scored the label exactly */
    double *logp, *prior, *probs, *score;
    size_t *n_tokens;
    /* The prior cache: keyed by the empty prompt's text. */
    char *prior_key;
    size_t prior_key_len;
    bool prior_valid;
};

struct slm_label_set_params slm_label_set_params_default(void) {
    return (struct slm_label_set_params){.correction = SLM_LABEL_CORR_DEFAULT,
                                         .add_eos = true,
                                         .add_bos = true,
                                         .parse_special = true,
                                         .max_rest = 1e-2};
}

const char *slm_label_correction_name(enum slm_label_correction c) {
    switch (c) {
    case SLM_LABEL_CORR_NONE: return "none";
    case SLM_LABEL_CORR_PRIOR: return "prior";
    case SLM_LABEL_CORR_LENGTH: return "length";
    }
    return "?";
}

int slm_label_correction_parse(const char *name, enum slm_label_correction *out) {
    static const enum slm_label_correction all[] = {SLM_LABEL_CORR_NONE, SLM_LABEL_CORR_PRIOR,
                                                    SLM_LABEL_CORR_LENGTH};
    for (size_t i = 0; name && i < SLM_ARRAY_LEN(all); i++) {
        if (strcmp(name, slm_label_correction_name(all[i])) == 0) {
            *out = all[i];
            return SLM_OK;
        }
    }
    return SLM_E_INVALID;
}

void slm_label_set_free(struct slm_label_set *ls) {
    if (!ls) {
        return;
    }
    for (size_t i = 0; ls->text && i < ls->n; i++) {
        free(ls->text[i]);
    }
    for (size_t i = 0; ls->lt && i < ls->n; i++) {
        free(ls->lt[i].t);
    }
    free(ls->text);
    free(ls->lt);
    free(ls->prompt.t);
    free(ls->tmp.t);
    free(ls->tail_tok.t);
    slm_buf_free(&ls->buf);
    free(ls->cand);
    free(ls->cand_len);
    free(ls->lp);
    free(ls->exact);
    free(ls->logp);
    free(ls->prior);
    free(ls->probs);
    free(ls->score);
    free(ls->n_tokens);
    free(ls->prior_key);
    free(ls);
}

static int check_labels(const char *const *labels, size_t n, struct slm_err *err) {
    if (n == 0) {
        return slm_err_set(err, SLM_E_INVALID, "a label set needs at least one label");
    }
    for (size_t i = 0; i < n; i++) {
        if (!labels[i] || !labels[i][0]) {
            return slm_err_set(err, SLM_E_INVALID, "label %zu is empty", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[i], labels[j]) == 0) {
                return slm_err_set(err, SLM_E_INVALID, "label '%s' appears twice", labels[i]);
            }
        }
    }
    return SLM_OK;
}

int slm_label_set_init(struct slm_model *model, const char *const *labels, size_t n_labels,
                       const struct slm_label_set_params *params, struct slm_label_set **out,
                       struct slm_err *err) {
    int rc = check_labels(labels, n_labels, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_label_set *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    ls->model = model;
    ls->p = params ? *params : slm_label_set_params_default();
    ls->p.max_prompt_tokens = ls->p.max_prompt_tokens ? ls->p.max_prompt_tokens : (size_t)1 << 20;
    ls->eos = ls->p.add_eos ? slm_model_eos(model) : -1;
    ls->n = n_labels;
    ls->text = calloc(n_labels, sizeof(*ls->text));
    ls->lt = calloc(n_labels, sizeof(*ls->lt));
    ls->cand = calloc(n_labels, sizeof(*ls->cand));
    ls->cand_len = calloc(n_labels, sizeof(*ls->cand_len));
    ls->lp = calloc(n_labels, sizeof(*ls->lp));
    ls->exact = calloc(n_labels, sizeof(*ls->exact));
    ls->logp = calloc(n_labels, sizeof(*ls->logp));
    ls->prior = calloc(n_labels, sizeof(*ls->prior));
    ls->probs = calloc(n_labels, sizeof(*ls->probs));
    ls->score = calloc(n_labels, sizeof(*ls->score));
    ls->n_tokens = calloc(n_labels, sizeof(*ls->n_tokens));
    bool ok = ls->text && ls->lt && ls->cand && ls->cand_len && ls->lp && ls->exact && ls->logp &&
              ls->prior && ls->probs && ls->score && ls->n_tokens;
    for (size_t i = 0; ok && i < n_labels; i++) {
        ok = (ls->text[i] = slm_str_dup(slm_str_c(labels[i]))) != NULL;
    }
    if (!ok) {
        slm_label_set_free(ls);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    *out = ls;
    return SLM_OK;
}

size_t slm_label_set_size(const struct slm_label_set *ls) {
    return ls->n;
}

const char *slm_label_set_label(const struct slm_label_set *ls, size_t i) {
    return i < ls->n ? ls->text[i] : NULL;
}

size_t slm_label_set_find(const struct slm_label_set *ls, struct slm_str text) {
    for (size_t i = 0; i < ls->n; i++) {
        if (slm_str_eq_c(text, ls->text[i])) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Tokenizes into `t`, growing it up to `max` tokens (+1 spare for an EOS). */
static int tokenize(const struct slm_model *m, struct slm_str text, bool bos, bool special,
                    struct toks *t, size_t max, struct slm_err *err) {
    for (;;) {
        int64_t n = slm_tokenize(m, text, bos, special, t->t, t->cap ? t->cap - 1 : 0);
        if (n < 0) {
            return slm_err_set(err, SLM_E_BACKEND, "tokenizing failed");
        }
        if ((size_t)n > max) {
            return slm_err_set(err, SLM_E_OVERFLOW, "the prompt has %lld tokens; at most %zu",
                               (long long)n, max);
        }
        if (t->cap && (size_t)n <= t->cap - 1) {
            t->n = (size_t)n;
            return SLM_OK;
        }
        size_t cap = (size_t)n + 16;
        int32_t *p = realloc(t->t, cap * sizeof(int32_t));
        if (!p) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        t->t = p;
        t->cap = cap;
    }
}

/* lt[k] = the label alone, EOS appended; nothing dropped from the prompt. */
static int labels_alone(struct slm_label_set *ls, struct slm_err *err) {
    ls->drop = 0;
    int rc = SLM_OK;
    for (size_t k = 0; k < ls->n && rc == SLM_OK; k++) {
        rc = tokenize(ls->model, slm_str_c(ls->text[k]), false, false, &ls->lt[k],
                      ls->p.max_prompt_tokens, err);
        if (rc == SLM_OK && ls->eos >= 0) {
            ls->lt[k].t[ls->lt[k].n++] = ls->eos; /* tokenize() leaves one spare slot */
        }
    }
    return rc;
}

static size_t common_prefix(const struct toks *a, const struct toks *b) {
    size_t i = 0;
    while (i < a->n && i < b->n && a->t[i] == b->t[i]) {
        i++;
    }
    return i;
}

/*
 * Makes ls->lt the labels' tokens after a prompt ending in `text`: the tail
 * alone (T0) and the tail followed by each label (Tk) are tokenized; where
 * they first differ (m, the smallest over the labels) is the boundary. The
 * prompt's tokens after m (T0[m..], usually none; a trailing "▁" that merges
 * into "▁card" is one) are dropped from the prompt and each label scores
 * Tk[m..]: the probability of the same text, tokenized as the model would
 * see it whole. The shared part is the same for every label, so it cancels
 * when the labels are normalised.
 */
static int bind_tail(struct slm_label_set *ls, struct slm_str text, struct slm_err *err) {
    size_t off = text.len > TAIL_BYTES ? text.len - TAIL_BYTES : 0;
    while (off < text.len && ((unsigned char)text.ptr[off] & 0xC0) == 0x80) {
        off++; /* start on a code point */
    }
    struct slm_str tail = slm_str_sub(text, off, text.len - off);
    if (ls->tail_valid && tail.len == ls->tail_len && memcmp(tail.ptr, ls->tail, tail.len) == 0) {
        return SLM_OK;
    }
    ls->tail_valid = false;
    size_t max = ls->p.max_prompt_tokens;
    bool sp = ls->p.parse_special;
    int rc = tokenize(ls->model, tail, false, sp, &ls->tail_tok, max, err);
    size_t m = ls->tail_tok.n;
    for (size_t k = 0; k < ls->n && rc == SLM_OK; k++) {
        slm_buf_clear(&ls->buf);
        if (slm_buf_append_str(&ls->buf, tail) != SLM_OK ||
            slm_buf_puts(&ls->buf, ls->text[k]) != SLM_OK) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        rc = tokenize(ls->model, slm_buf_str(&ls->buf), false, sp, &ls->lt[k], max, err);
        m = SLM_MIN(m, common_prefix(&ls->tail_tok, &ls->lt[k]));
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (m == 0) {
        rc = labels_alone(ls, err); /* no boundary inside the tail: no better guess */
    } else {
        for (size_t k = 0; k < ls->n; k++) {
            struct toks *lt = &ls->lt[k];
            memmove(lt->t, lt->t + m, (lt->n - m) * sizeof(int32_t));
            lt->n -= m;
            if (ls->eos >= 0) {
                lt->t[lt->n++] = ls->eos;
            }
        }
        ls->drop = ls->tail_tok.n - m;
    }
    if (rc == SLM_OK) {
        memcpy(ls->tail, tail.ptr, tail.len);
        ls->tail_len = tail.len;
        ls->tail_valid = true;
    }
    return rc;
}

/* True when the prompt's last `drop` tokens are the tail's (so dropping them
 * leaves the prompt the labels were tokenized after). */
static bool drop_matches(const struct slm_label_set *ls) {
    const struct toks *p = &ls->prompt, *t = &ls->tail_tok;
    if (ls->drop == 0) {
        return true;
    }
    if (ls->drop >= p->n) {
        return false;
    }
    return memcmp(p->t + p->n - ls->drop, t->t + t->n - ls->drop, ls->drop * sizeof(int32_t)) == 0;
}

/* Summed log-likelihood of every label after `text`, into `dst`; with
 * `search`, best first (ls->exact says which labels were scored). */
static int score_after(struct slm_label_set *ls, struct slm_scorer *sc, struct slm_str text,
                       bool search, double *dst, struct slm_err *err) {
    int rc = tokenize(ls->model, text, ls->p.add_bos, ls->p.parse_special, &ls->prompt,
                      ls->p.max_prompt_tokens, err);
    if (rc == SLM_OK && !ls->p.continuation) {
        if (!ls->alone_ready) {
            rc = labels_alone(ls, err);
            ls->alone_ready = rc == SLM_OK;
        }
    } else if (rc == SLM_OK) {
        rc = bind_tail(ls, text, err);
    }
    if (rc == SLM_OK && ls->p.continuation && !drop_matches(ls)) {
        ls->tail_valid = false;
        rc = labels_alone(ls, err);
    }
    if (rc == SLM_OK && ls->prompt.n == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "the prompt has no tokens to score labels after");
    }
    if (rc != SLM_OK) {
        return rc;
    }
    for (size_t k = 0; k < ls->n; k++) {
        ls->cand[k] = ls->lt[k].t;
        ls->cand_len[k] = ls->lt[k].n;
        ls->n_tokens[k] = ls->lt[k].n;
    }
    if (search) {
        struct slm_scorer_search how = slm_scorer_search_default();
        how.max_rest = ls->p.max_rest;
        size_t best;
        rc = slm_scorer_best(sc, ls->prompt.t, ls->prompt.n - ls->drop, ls->cand, ls->cand_len,
                             ls->n, &how, &best, ls->lp, ls->exact, err);
    } else {
        rc = slm_scorer_score(sc, ls->prompt.t, ls->prompt.n - ls->drop, ls->cand, ls->cand_len,
                              ls->n, ls->lp, err);
        for (size_t k = 0; k < ls->n; k++) {
            ls->exact[k] = true;
        }
    }
    for (size_t k = 0; rc == SLM_OK && k < ls->n; k++) {
        dst[k] = (double)ls->lp[k];
    }
    return rc;
}

static int ensure_prior(struct slm_label_set *ls, struct slm_scorer *sc, struct slm_str empty,
                        struct slm_err *err) {
    if (ls->prior_valid && empty.len == ls->prior_key_len &&
        memcmp(empty.ptr, ls->prior_key, empty.len) == 0) {
        return SLM_OK;
    }
    ls->prior_valid = false;
    char *key = slm_str_dup(empty);
    if (!key) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    free(ls->prior_key);
    ls->prior_key = key;
    ls->prior_key_len = empty.len;
    int rc = score_after(ls, sc, empty, false, ls->prior, err);
    ls->prior_valid = rc == SLM_OK;
    return rc;
}

/* probs = softmax(score) over the labels scored exactly (the others get 0);
 * fills best, prob and margin. */
static void normalise(struct slm_label_set *ls, struct slm_label_result *out) {
    double mx = -INFINITY;
    for (size_t k = 0; k < ls->n; k++) {
        mx = ls->exact[k] && ls->score[k] > mx ? ls->score[k] : mx;
    }
    double z = 0;
    size_t n_scored = 0;
    for (size_t k = 0; k < ls->n; k++) {
        ls->probs[k] = ls->exact[k] ? exp(ls->score[k] - mx) : 0;
        z += ls->probs[k];
        n_scored += ls->exact[k];
    }
    size_t best = 0;
    double second = 0;
    for (size_t k = 0; k < ls->n; k++) {
        ls->probs[k] /= z;
        best = ls->probs[k] > ls->probs[best] ? k : best;
    }
    for (size_t k = 0; k < ls->n; k++) {
        second = k != best && ls->probs[k] > second ? ls->probs[k] : second;
    }
    out->best = best;
    out->prob = ls->probs[best];
    out->margin = ls->probs[best] - second;
    out->n_scored = n_scored;
}

int slm_label_set_score(struct slm_label_set *ls, struct slm_scorer *scorer, struct slm_str prompt,
                        struct slm_str empty_prompt, struct slm_label_result *out,
                        struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    if (slm_scorer_model(scorer) != ls->model) {
        return slm_err_set(err, SLM_E_INVALID, "the scorer and the label set use other models");
    }
    bool prior = ls->p.correction == SLM_LABEL_CORR_PRIOR;
    if (prior && !empty_prompt.ptr) {
        return slm_err_set(err, SLM_E_INVALID,
                           "the prior correction needs the prompt rendered with an empty input");
    }
    int rc = prior ? ensure_prior(ls, scorer, empty_prompt, err) : SLM_OK;
    if (rc == SLM_OK) {
        /* Bounds hold for raw log-probs only: a correction scores every label. */
        bool search = ls->p.correction == SLM_LABEL_CORR_NONE && ls->p.max_rest > 0;
        rc = score_after(ls, scorer, prompt, search, ls->logp, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    for (size_t k = 0; k < ls->n; k++) {
        double s = ls->logp[k];
        if (prior) {
            s -= ls->prior[k];
        } else if (ls->p.correction == SLM_LABEL_CORR_LENGTH && ls->n_tokens[k] > 0) {
            s /= (double)ls->n_tokens[k];
        }
        ls->score[k] = s;
    }
    normalise(ls, out);
    out->probs = ls->probs;
    out->logp = ls->logp;
    out->prior = prior ? ls->prior : NULL;
    out->n_tokens = ls->n_tokens;
    return SLM_OK;
}
