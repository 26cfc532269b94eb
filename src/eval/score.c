/*
 * score.c - from answers to figures: per candidate every metric's value with
 * its bootstrap interval and row count, per-label accuracy, latency
 * percentiles, tokens, cost per 1,000 requests; per pair of candidates the
 * McNemar test on each right/wrong metric. A row whose answer failed counts
 * as wrong (and as invalid JSON): dropping it would flatter the candidate.
 */
#include "slm/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per row of one candidate: right/wrong for each paired value, counts for F1. */
struct scratch {
    uint8_t *right[SLM_EVAL_MAX_VALUES];
    size_t *tp, *pred, *expected;
    double *x;
};

static void scratch_free(struct scratch *sc) {
    for (size_t k = 0; k < SLM_EVAL_MAX_VALUES; k++) {
        free(sc->right[k]);
    }
    free(sc->tp);
    free(sc->pred);
    free(sc->expected);
    free(sc->x);
}

static uint64_t seed_of(const struct slm_eval_result *r, size_t ci, size_t vi) {
    (void)ci; /* the same resamples for every candidate: their intervals compare */
    return r->suite->seed + (uint64_t)vi * 7919u;
}

/* A right/wrong value: mean with interval, and its row flags kept. */
static int add_paired(const struct slm_eval_result *r, size_t ci, struct slm_eval_cand_result *cr,
                      struct scratch *sc, const char *key, uint8_t *right) {
    size_t vi = cr->n_values++;
    struct slm_eval_value *v = &cr->values[vi];
    double sum = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        sc->x[i] = right[i];
        sum += right[i];
    }
    v->key = key;
    v->n = r->n_rows;
    v->paired = true;
    v->value = r->n_rows ? sum / (double)r->n_rows : NAN;
    slm_eval_bootstrap_mean(sc->x, r->n_rows, r->suite->bootstrap, seed_of(r, ci, vi), &v->lo,
                            &v->hi);
    sc->right[vi] = right;
    return SLM_OK;
}

static int add_ratio(const struct slm_eval_result *r, size_t ci, struct slm_eval_cand_result *cr,
                     const struct scratch *sc, const char *key, int which) {
    size_t n = r->n_rows, vi = cr->n_values++;
    struct slm_eval_value *v = &cr->values[vi];
    double t = 0, p = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        t += (double)sc->tp[i];
        p += (double)sc->pred[i];
        e += (double)sc->expected[i];
    }
    double num = which == 2 ? 2 * t : t, den = which == 0 ? p : which == 1 ? e : p + e;
    v->key = key;
    v->n = n;
    v->value = den > 0 ? num / den : (n ? 0 : NAN);
    /* precision = tp/pred, recall = tp/expected, F1 = 2tp/(pred+expected): the
     * bootstrap resamples rows, and F1's with only pred or only expected
     * zeroed is precision's or recall's. */
    uint64_t seed = seed_of(r, ci, vi);
    if (which == 2) {
        slm_eval_bootstrap_f1(sc->tp, sc->pred, sc->expected, n, r->suite->bootstrap, seed, &v->lo,
                              &v->hi);
    } else {
        /* 2tp / (2 * den): the same ratio through the F1 resampler. */
        size_t *den2 = malloc((n ? n : 1) * sizeof(size_t));
        if (!den2) {
            return SLM_E_NOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            den2[i] = which == 0 ? sc->pred[i] : sc->expected[i];
        }
        slm_eval_bootstrap_f1(sc->tp, den2, den2, n, r->suite->bootstrap, seed, &v->lo, &v->hi);
        free(den2);
    }
    return SLM_OK;
}

static uint8_t *flags(size_t n) {
    return calloc(n ? n : 1, 1);
}

static bool ok(const struct slm_eval_answer *a) {
    return a->status == SLM_OK && a->text;
}

static int score_json(const struct slm_eval_result *r, size_t ci, struct slm_eval_cand_result *cr,
                      struct scratch *sc, const struct slm_eval_metric *m) {
    uint8_t *valid = flags(r->n_rows), *schema = flags(r->n_rows), *exact = flags(r->n_rows);
    if (!valid || !schema || !exact) {
        free(valid);
        free(schema);
        free(exact);
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        struct slm_eval_json_score js;
        const struct slm_eval_answer *a = &cr->answers[i];
        slm_eval_json(ok(a) ? a->text : NULL, r->rows[i].expected, m->schema, &js);
        valid[i] = js.valid;
        schema[i] = js.valid && js.schema_valid;
        exact[i] = js.exact;
        sc->tp[i] = js.tp;
        sc->pred[i] = js.n_pred;
        sc->expected[i] = js.n_expected;
    }
    add_paired(r, ci, cr, sc, "json_valid", valid);
    if (m->schema) {
        add_paired(r, ci, cr, sc, "json_schema", schema);
    } else {
        free(schema);
    }
    add_paired(r, ci, cr, sc, "json_exact", exact);
    int rc = add_ratio(r, ci, cr, sc, "json_precision", 0);
    if (rc == SLM_OK) {
        rc = add_ratio(r, ci, cr, sc, "json_recall", 1);
    }
    return rc == SLM_OK ? add_ratio(r, ci, cr, sc, "json_f1", 2) : rc;
}

static int per_label(const struct slm_eval_result *r, struct slm_eval_cand_result *cr,
                     const uint8_t *right) {
    cr->labels = calloc(r->n_labels ? r->n_labels : 1, sizeof(*cr->labels));
    if (!cr->labels) {
        return SLM_E_NOMEM;
    }
    for (size_t k = 0; k < r->n_labels; k++) {
        if (!(cr->labels[k].label = strdup(r->labels[k]))) {
            return SLM_E_NOMEM;
        }
        cr->n_labels++;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        for (size_t k = 0; k < r->n_labels; k++) {
            if (strcmp(r->labels[k], r->rows[i].expected) == 0) {
                cr->labels[k].n++;
                cr->labels[k].right += right[i];
                break;
            }
        }
    }
    return SLM_OK;
}

/* The judge's mean score (1..5) over the rows it gave a verdict on. */
static void score_judge_mean(const struct slm_eval_result *r, size_t ci,
                             struct slm_eval_cand_result *cr, struct scratch *sc) {
    size_t vi = cr->n_values++, n = 0;
    struct slm_eval_value *v = &cr->values[vi];
    double sum = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        if (!isnan(cr->answers[i].judge)) {
            sc->x[n++] = cr->answers[i].judge;
            sum += cr->answers[i].judge;
        }
    }
    *v = (struct slm_eval_value){.key = "judge_score", .n = n, .value = n ? sum / (double)n : NAN};
    slm_eval_bootstrap_mean(sc->x, n, r->suite->bootstrap, seed_of(r, ci, vi), &v->lo, &v->hi);
}

static int score_metric(const struct slm_eval_result *r, size_t ci, struct slm_eval_cand_result *cr,
                        struct scratch *sc, const struct slm_eval_metric *m) {
    if (m->kind == SLM_EVAL_JSON) {
        return score_json(r, ci, cr, sc, m);
    }
    if (m->kind == SLM_EVAL_JUDGE && m->mode == SLM_EVAL_JUDGE_PAIRWISE) {
        return SLM_OK; /* a figure of pairs, not of one candidate (add_pairs) */
    }
    if (m->kind == SLM_EVAL_JUDGE && m->mode == SLM_EVAL_JUDGE_SCORE) {
        score_judge_mean(r, ci, cr, sc);
        return SLM_OK;
    }
    uint8_t *right = flags(r->n_rows);
    if (!right) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct slm_eval_answer *a = &cr->answers[i];
        if (!ok(a)) {
            continue;
        }
        if (m->kind == SLM_EVAL_JUDGE) {
            right[i] = a->judge == 1; /* pass; no verdict counts as a fail */
        } else if (m->kind == SLM_EVAL_LABEL) {
            right[i] = strcmp(a->text, r->rows[i].expected) == 0 ||
                       (cr->cand->kind >= SLM_EVAL_CAND_ROUTE &&
                        slm_eval_exact(a->text, r->rows[i].expected, false));
        } else if (m->kind == SLM_EVAL_EXACT) {
            right[i] = slm_eval_exact(a->text, r->rows[i].expected, m->ignore_case);
        } else {
            right[i] = slm_eval_regex(m->regex, m->ignore_case, a->text, NULL) == 1;
        }
    }
    int rc = m->kind == SLM_EVAL_LABEL ? per_label(r, cr, right) : SLM_OK;
    add_paired(r, ci, cr, sc,
               m->kind == SLM_EVAL_JUDGE ? "judge_pass" : slm_eval_metric_name(m->kind), right);
    return rc;
}

static int score_candidate(struct slm_eval_result *r, size_t ci, struct scratch *sc) {
    struct slm_eval_cand_result *cr = &r->cands[ci];
    size_t n = r->n_rows;
    double cost = 0;
    size_t n_lat = 0;
    for (size_t i = 0; i < n; i++) {
        const struct slm_eval_answer *a = &cr->answers[i];
        cr->n_errors += a->status != SLM_OK;
        cr->tokens_in += a->n_in;
        cr->tokens_out += a->n_out;
        cost += a->cost_usd;
        if (a->status == SLM_OK) {
            sc->x[n_lat++] = a->latency_ms;
        }
    }
    cr->n = n;
    cr->p50_ms = slm_eval_percentile(sc->x, n_lat, 50);
    cr->p95_ms = slm_eval_percentile(sc->x, n_lat, 95);
    cr->cost_per_1k = cr->cand->cost_per_1k + (n ? 1000.0 * cost / (double)n : 0);
    int rc = SLM_OK;
    for (size_t k = 0; rc == SLM_OK && k < r->suite->n_metrics; k++) {
        rc = score_metric(r, ci, cr, sc, &r->suite->metrics[k]);
    }
    for (size_t k = 0; rc == SLM_OK && k < cr->n_values && !cr->right; k++) {
        if (cr->values[k].paired && (cr->right = flags(n))) {
            memcpy(cr->right, sc->right[k], n);
        }
    }
    return rc;
}

static int add_pairs(struct slm_eval_result *r, struct scratch *all) {
    size_t cap = 0;
    for (size_t a = 0; a < r->n_cands; a++) {
        cap += r->cands[a].n_values * r->n_cands;
    }
    r->pairs = calloc(cap + r->n_judged + 1, sizeof(*r->pairs));
    if (!r->pairs) {
        return SLM_E_NOMEM;
    }
    for (size_t a = 0; a < r->n_cands; a++) {
        for (size_t b = a + 1; b < r->n_cands; b++) {
            for (size_t k = 0; k < r->cands[a].n_values; k++) {
                const struct slm_eval_value *v = &r->cands[a].values[k];
                if (!v->paired || !all[a].right[k] || !all[b].right[k]) {
                    continue;
                }
                struct slm_eval_pair *p = &r->pairs[r->n_pairs++];
                *p = (struct slm_eval_pair){.a = a, .b = b, .key = v->key, .n = r->n_rows};
                for (size_t i = 0; i < r->n_rows; i++) {
                    p->only_a += all[a].right[k][i] && !all[b].right[k][i];
                    p->only_b += !all[a].right[k][i] && all[b].right[k][i];
                }
                p->p_value = slm_eval_mcnemar(p->only_a, p->only_b);
            }
        }
    }
    /* The judge's pairwise wins: the sign test on wins is McNemar's on discordant rows. */
    for (size_t k = 0; k < r->n_judged; k++) {
        const struct slm_eval_judged_pair *jp = &r->judged[k];
        struct slm_eval_pair *p = &r->pairs[r->n_pairs++];
        *p =
            (struct slm_eval_pair){.a = jp->a, .b = jp->b, .key = "judge_pairwise", .n = r->n_rows};
        for (size_t i = 0; i < r->n_rows; i++) {
            p->only_a += jp->verdict[i] > 0;
            p->only_b += jp->verdict[i] < 0;
        }
        p->p_value = slm_eval_mcnemar(p->only_a, p->only_b);
    }
    return SLM_OK;
}

int slm_eval_score(struct slm_eval_result *r, struct slm_err *err) {
    struct scratch *sc = calloc(r->n_cands ? r->n_cands : 1, sizeof(*sc));
    int rc = sc ? SLM_OK : SLM_E_NOMEM;
    size_t n = r->n_rows ? r->n_rows : 1;
    for (size_t c = 0; rc == SLM_OK && c < r->n_cands; c++) {
        sc[c].tp = calloc(n, sizeof(size_t));
        sc[c].pred = calloc(n, sizeof(size_t));
        sc[c].expected = calloc(n, sizeof(size_t));
        sc[c].x = calloc(n, sizeof(double));
        rc = sc[c].tp && sc[c].pred && sc[c].expected && sc[c].x ? SLM_OK : SLM_E_NOMEM;
        if (rc == SLM_OK) {
            rc = score_candidate(r, c, &sc[c]);
        }
    }
    if (rc == SLM_OK) {
        rc = add_pairs(r, sc);
    }
    for (size_t c = 0; sc && c < r->n_cands; c++) {
        scratch_free(&sc[c]);
    }
    free(sc);
    return rc == SLM_OK ? rc : slm_err_set(err, rc, "scoring: %s", slm_strerror(rc));
}
