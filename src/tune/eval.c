/*
 * tune/eval.c - measuring a model (with or without an adapter) on a dataset
 * through libllama's inference path: mean loss over completion tokens and,
 * when the completions form a small label set, accuracy of picking the label
 * with the highest log-probability (every label scored after every prompt).
 */
#include "slm/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/engine.h"
#include "slm/turn.h"
#include "tune/internal.h"

struct slm_tune_eval_params slm_tune_eval_params_default(void) {
    return (struct slm_tune_eval_params){.max_examples = 0,
                                         .max_labels = 256,
                                         .n_threads = 0,
                                         .add_eos = true,
                                         .chat_template = NULL,
                                         .on_example = NULL,
                                         .user = NULL,
                                         .no_loss = false,
                                         .max_rest = HUGE_VAL};
}

struct toks {
    int32_t *t;
    size_t n;
};

static int tokenize(const struct slm_model *vocab, const char *text, bool bos, bool special,
                    int32_t eos, struct toks *out, struct slm_err *err) {
    struct slm_str s = slm_str_c(text);
    size_t cap = s.len + 8;
    out->t = malloc(cap * sizeof(int32_t));
    if (!out->t) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int64_t n = slm_tokenize(vocab, s, bos, special, out->t, cap - 1);
    if (n < 0 || (size_t)n > cap - 1) {
        return slm_err_set(err, SLM_E_BACKEND, "tokenizing failed");
    }
    out->n = (size_t)n;
    if (eos >= 0) {
        out->t[out->n++] = eos;
    }
    return SLM_OK;
}

/* The prompt text of a record (messages: rendered up to the last assistant
 * turn through the turn module, as training rendered it). */
static int prompt_text(const struct slm_model *vocab, const struct slm_data_record *r,
                       const char *tmpl, struct slm_buf *out, struct slm_err *err) {
    slm_buf_clear(out);
    if (!r->messages) {
        return slm_buf_puts(out, r->prompt) == SLM_OK ? SLM_OK
                                                      : slm_err_set(err, SLM_E_NOMEM, "no memory");
    }
    size_t last = 0;
    for (size_t i = 0; i < json_array_size(r->messages); i++) {
        const char *role =
            json_string_value(json_object_get(json_array_get(r->messages, i), "role"));
        last = strcmp(role, "assistant") == 0 ? i : last;
    }
    return slm_turn_chat_format(vocab, tmpl, r->messages, last, true, out, err);
}

struct labels {
    char **text;
    struct toks *tok;
    size_t n;
};

static void labels_free(struct labels *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->text[i]);
        free(l->tok[i].t);
    }
    free(l->text);
    free(l->tok);
}

/* The distinct completions, when there are at most `max` of them. */
static int collect_labels(const struct slm_data_records *recs, size_t n_use, size_t max,
                          struct labels *l) {
    l->text = calloc(max + 1, sizeof(char *));
    l->tok = calloc(max + 1, sizeof(struct toks));
    if (!l->text || !l->tok) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < n_use; i++) {
        const char *c = recs->items[i].completion;
        bool seen = false;
        for (size_t k = 0; k < l->n && !seen; k++) {
            seen = strcmp(l->text[k], c) == 0;
        }
        if (!seen) {
            if (l->n == max) {
                return SLM_E_TOO_LARGE;
            }
            if (!(l->text[l->n] = strdup(c))) {
                return SLM_E_NOMEM;
            }
            l->n++;
        }
    }
    return SLM_OK;
}

static int eval_records(struct slm_tune_scorer *sc, const struct slm_model *vocab,
                        const struct slm_data_records *recs, size_t n_use, const struct labels *lb,
                        int32_t eos, const struct slm_tune_eval_params *p,
                        struct slm_tune_eval_result *res, struct slm_err *err) {
    const int32_t **cand = calloc(lb->n + 1, sizeof(*cand));
    size_t *clen = calloc(lb->n + 1, sizeof(*clen));
    float *scores = calloc(lb->n + 1, sizeof(*scores));
    bool *exact = calloc(lb->n + 1, sizeof(*exact));
    struct slm_buf pt = {0};
    double nll = 0;
    uint64_t ntok = 0;
    size_t correct = 0;
    int rc =
        cand && clen && scores && exact ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    for (size_t k = 0; k < lb->n; k++) {
        cand[k] = lb->tok[k].t;
        clen[k] = lb->tok[k].n;
    }
    for (size_t i = 0; i < n_use && rc == SLM_OK; i++) {
        const struct slm_data_record *r = &recs->items[i];
        struct toks prompt = {0}, truth = {0};
        rc = prompt_text(vocab, r, p->chat_template, &pt, err);
        if (rc == SLM_OK) {
            rc = tokenize(vocab, slm_buf_cstr(&pt), true, true, -1, &prompt, err);
        }
        if (rc == SLM_OK) {
            rc = tokenize(vocab, r->completion, false, false, eos, &truth, err);
        }
        if (rc == SLM_OK && prompt.n > 0 && truth.n > 0 && !p->no_loss) {
            const int32_t *tc = truth.t;
            float s = 0;
            rc = slm_tune_scorer_score(sc, prompt.t, prompt.n, &tc, &truth.n, 1, &s, err);
            nll -= s;
            ntok += truth.n;
        }
        if (rc == SLM_OK && lb->n > 0 && prompt.n > 0) {
            size_t best = 0;
            rc = slm_tune_scorer_best(sc, prompt.t, prompt.n, cand, clen, lb->n, p->max_rest, &best,
                                      scores, exact, err);
            for (size_t k = 0; k < lb->n; k++) {
                scores[k] = exact[k] ? scores[k] : -INFINITY;
            }
            correct += rc == SLM_OK && strcmp(lb->text[best], r->completion) == 0;
            if (rc == SLM_OK && p->on_example &&
                p->on_example(p->user, i, (const char *const *)lb->text, scores, lb->n, best,
                              prompt.n) != 0) {
                rc = slm_err_set(err, SLM_E_ABORTED, "interrupted");
            }
        }
        free(prompt.t);
        free(truth.t);
        res->n++;
    }
    res->loss = ntok ? nll / (double)ntok : NAN;
    res->accuracy = lb->n && res->n ? (double)correct / (double)res->n : NAN;
    res->n_labels = lb->n;
    slm_buf_free(&pt);
    free(cand);
    free(clen);
    free(scores);
    free(exact);
    return rc;
}

int slm_tune_evaluate(const char *model, const char *adapter, const struct slm_data_records *recs,
                      const struct slm_tune_eval_params *params, struct slm_tune_eval_result *res,
                      struct slm_err *err) {
    struct slm_tune_eval_params p = params ? *params : slm_tune_eval_params_default();
    memset(res, 0, sizeof(*res));
    size_t n_use = p.max_examples && p.max_examples < recs->n ? p.max_examples : recs->n;
    struct slm_model *vocab = NULL;
    struct slm_tune_scorer *sc = NULL;
    struct labels lb = {0};
    struct slm_model_params mp = slm_model_params_default();
    mp.vocab_only = true;
    int32_t eos = p.add_eos ? slm_tune_gguf_eos(model) : -1;
    int rc = slm_model_load(model, &mp, &vocab, err);
    if (rc == SLM_OK && recs->format != SLM_DATA_TEXT) {
        /* The label set comes from every record, even when fewer are scored. */
        int lrc = collect_labels(recs, recs->n, p.max_labels ? p.max_labels : 256, &lb);
        if (lrc == SLM_E_NOMEM) {
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        } else if (lrc == SLM_E_TOO_LARGE) {
            labels_free(&lb);
            memset(&lb, 0, sizeof(lb));
        }
    }
    size_t max_label = 0, sum_label = 0;
    for (size_t k = 0; rc == SLM_OK && k < lb.n; k++) {
        rc = tokenize(vocab, lb.text[k], false, false, eos, &lb.tok[k], err);
        sum_label += lb.tok[k].n;
        max_label = lb.tok[k].n > max_label ? lb.tok[k].n : max_label;
    }
    if (rc == SLM_OK) {
        uint32_t n_ctx = p.n_ctx ? p.n_ctx : 1024;
        rc = slm_tune_scorer_init(model, adapter, n_ctx + (uint32_t)sum_label, (uint32_t)lb.n + 1,
                                  p.n_threads, &sc, err);
    }
    if (rc == SLM_OK) {
        rc = eval_records(sc, vocab, recs, n_use, &lb, eos, &p, res, err);
    }
    (void)max_label;
    labels_free(&lb);
    slm_tune_scorer_free(sc);
    slm_model_free(vocab);
    return rc;
}
