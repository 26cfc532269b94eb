/*
 * report.c - the terminal table, the JSON report and the Markdown report of
 * an evaluation (shapes in docs/eval.md). Every figure is printed with its
 * interval and the number of rows behind it. The HTML page is report_html.c.
 */
#include "slm/eval.h"

#include <math.h>
#include <string.h>

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != SLM_OK) {                                                                       \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static const char *test_name(const struct slm_eval_pair *p) {
    return p->only_a + p->only_b <= 25 ? "mcnemar-exact" : "mcnemar-chi2";
}

/* ---------------------------------------------------------------- text */

int slm_eval_report_text(const struct slm_eval_result *r, struct slm_buf *out) {
    TRY(slm_buf_printf(out, "suite %s: %zu rows, %zu candidates, %.1fs\n\n", r->suite->name,
                       r->n_rows, r->n_cands, r->wall_s));
    TRY(slm_buf_printf(out, "%-24s %-8s %6s %6s %9s %9s %15s %9s\n", "CANDIDATE", "KIND", "ROWS",
                       "ERRORS", "P50 MS", "P95 MS", "TOKENS IN/OUT", "$/1K"));
    for (size_t c = 0; c < r->n_cands; c++) {
        const struct slm_eval_cand_result *cr = &r->cands[c];
        char tok[48];
        snprintf(tok, sizeof(tok), "%lld/%lld", (long long)cr->tokens_in,
                 (long long)cr->tokens_out);
        TRY(slm_buf_printf(out, "%-24.24s %-8s %6zu %6zu %9.1f %9.1f %15s %9.4f\n", cr->cand->name,
                           slm_eval_cand_kind_name(cr->cand->kind), cr->n, cr->n_errors, cr->p50_ms,
                           cr->p95_ms, tok, cr->cost_per_1k));
        for (size_t k = 0; k < cr->n_values; k++) {
            const struct slm_eval_value *v = &cr->values[k];
            TRY(slm_buf_printf(out, "    %-16s %.3f  95%% CI [%.3f, %.3f]  n=%zu\n", v->key,
                               v->value, v->lo, v->hi, v->n));
        }
    }
    if (r->n_pairs) {
        TRY(slm_buf_puts(out, "\npaired tests (McNemar; ONLY A / ONLY B = rows right for one only; "
                              "judge_pairwise: rows the judge gave to one in both orders)\n"));
    }
    for (size_t i = 0; i < r->n_pairs; i++) {
        const struct slm_eval_pair *p = &r->pairs[i];
        TRY(slm_buf_printf(out, "    %s vs %s  %-12s only A %zu  only B %zu  p=%.4g  n=%zu\n",
                           r->cands[p->a].cand->name, r->cands[p->b].cand->name, p->key, p->only_a,
                           p->only_b, p->p_value, p->n));
    }
    const struct slm_eval_metric *j = slm_eval_suite_metric(r->suite, SLM_EVAL_JUDGE);
    if (j) {
        size_t split = 0;
        for (size_t k = 0; k < r->n_judged; k++) {
            split += r->judged[k].split;
        }
        TRY(slm_buf_printf(out, "\njudge (%s): %zu calls without a verdict",
                           slm_eval_judge_mode_name(j->mode), r->judge_errors));
        if (j->mode == SLM_EVAL_JUDGE_PAIRWISE) {
            TRY(slm_buf_printf(out, ", %zu rows where the two orders disagreed (ties)", split));
        }
        TRY(slm_buf_puts(out, "\n"));
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- JSON */

static json_t *num(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *cand_json(const struct slm_eval_cand_result *cr) {
    json_t *metrics = json_object(), *labels = json_object();
    for (size_t k = 0; metrics && k < cr->n_values; k++) {
        const struct slm_eval_value *v = &cr->values[k];
        json_object_set_new(metrics, v->key,
                            json_pack("{s:o, s:[o, o], s:I, s:b}", "value", num(v->value), "ci95",
                                      num(v->lo), num(v->hi), "n", (json_int_t)v->n, "paired",
                                      v->paired));
    }
    for (size_t k = 0; labels && k < cr->n_labels; k++) {
        const struct slm_eval_label_acc *l = &cr->labels[k];
        json_object_set_new(labels, l->label,
                            json_pack("{s:I, s:I, s:o}", "n", (json_int_t)l->n, "right",
                                      (json_int_t)l->right, "accuracy",
                                      num(l->n ? (double)l->right / (double)l->n : NAN)));
    }
    return json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:{s:o, s:o}, s:{s:I, s:I}, s:o}", "name",
                     cr->cand->name, "kind", slm_eval_cand_kind_name(cr->cand->kind), "n",
                     (json_int_t)cr->n, "errors", (json_int_t)cr->n_errors, "metrics", metrics,
                     "cost_per_1k", num(cr->cost_per_1k), "latency_ms", "p50", num(cr->p50_ms),
                     "p95", num(cr->p95_ms), "tokens", "in", (json_int_t)cr->tokens_in, "out",
                     (json_int_t)cr->tokens_out, "per_label", labels);
}

json_t *slm_eval_report_json(const struct slm_eval_result *r) {
    json_t *cands = json_array(), *pairs = json_array(), *labels = json_array();
    for (size_t c = 0; cands && c < r->n_cands; c++) {
        json_array_append_new(cands, cand_json(&r->cands[c]));
    }
    for (size_t i = 0; pairs && i < r->n_pairs; i++) {
        const struct slm_eval_pair *p = &r->pairs[i];
        json_array_append_new(pairs,
                              json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:s}", "a",
                                        r->cands[p->a].cand->name, "b", r->cands[p->b].cand->name,
                                        "metric", p->key, "n", (json_int_t)p->n, "only_a",
                                        (json_int_t)p->only_a, "only_b", (json_int_t)p->only_b,
                                        "p_value", num(p->p_value), "test", test_name(p)));
    }
    for (size_t k = 0; labels && k < r->n_labels; k++) {
        json_array_append_new(labels, json_string(r->labels[k]));
    }
    json_t *out = json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:I}", "suite", r->suite->name,
                            "file", r->suite->path, "rows", (json_int_t)r->n_rows, "wall_s",
                            num(r->wall_s), "labels", labels, "candidates", cands, "pairs", pairs,
                            "bootstrap", (json_int_t)r->suite->bootstrap);
    const struct slm_eval_metric *j = slm_eval_suite_metric(r->suite, SLM_EVAL_JUDGE);
    json_t *split = j && out ? json_array() : NULL;
    for (size_t k = 0; split && k < r->n_judged; k++) {
        json_array_append_new(split,
                              json_pack("{s:s, s:s, s:I}", "a", r->cands[r->judged[k].a].cand->name,
                                        "b", r->cands[r->judged[k].b].cand->name, "split",
                                        (json_int_t)r->judged[k].split));
    }
    if (split) {
        json_object_set_new(out, "judge",
                            json_pack("{s:s, s:I, s:o}", "mode", slm_eval_judge_mode_name(j->mode),
                                      "no_verdict", (json_int_t)r->judge_errors, "pairwise",
                                      split));
    }
    return out;
}

/* ---------------------------------------------------------------- Markdown */

/* Table cells cannot hold '|' or newlines. */
static int md_cell(struct slm_buf *out, const char *s) {
    for (; *s; s++) {
        int rc = *s == '|'                  ? slm_buf_puts(out, "\\|")
                 : *s == '\n' || *s == '\r' ? slm_buf_putc(out, ' ')
                                            : slm_buf_putc(out, *s);
        TRY(rc);
    }
    return SLM_OK;
}

int slm_eval_report_markdown(const struct slm_eval_result *r, struct slm_buf *out) {
    TRY(slm_buf_puts(out, "# Evaluation: "));
    TRY(md_cell(out, r->suite->name));
    TRY(slm_buf_printf(out,
                       "\n\n%zu rows, %zu candidates, %.1f s. Intervals are 95%% bootstrap "
                       "(%u resamples, seed %llu).\n\n",
                       r->n_rows, r->n_cands, r->wall_s, r->suite->bootstrap,
                       (unsigned long long)r->suite->seed));
    TRY(slm_buf_puts(out, "| candidate | kind | rows | metric | value | 95% CI | p50 ms | p95 ms "
                          "| tokens in/out | $ / 1k |\n|---|---|---:|---|---:|---|---:|---:|---:|"
                          "---:|\n"));
    for (size_t c = 0; c < r->n_cands; c++) {
        const struct slm_eval_cand_result *cr = &r->cands[c];
        for (size_t k = 0; k < cr->n_values; k++) {
            const struct slm_eval_value *v = &cr->values[k];
            TRY(slm_buf_puts(out, "| "));
            TRY(md_cell(out, k == 0 ? cr->cand->name : ""));
            TRY(slm_buf_printf(out, " | %s | %zu | %s | %.3f | [%.3f, %.3f] | ",
                               k == 0 ? slm_eval_cand_kind_name(cr->cand->kind) : "", v->n, v->key,
                               v->value, v->lo, v->hi));
            if (k == 0) {
                TRY(slm_buf_printf(out, "%.1f | %.1f | %lld/%lld | %.4f |\n", cr->p50_ms,
                                   cr->p95_ms, (long long)cr->tokens_in, (long long)cr->tokens_out,
                                   cr->cost_per_1k));
            } else {
                TRY(slm_buf_puts(out, " |  |  |  |\n"));
            }
        }
    }
    if (r->n_pairs) {
        TRY(slm_buf_puts(out, "\n## Paired tests (McNemar)\n\n| A | B | metric | rows | right "
                              "only for A | right only for B | p-value |\n|---|---|---|---:|---:|"
                              "---:|---:|\n"));
    }
    for (size_t i = 0; i < r->n_pairs; i++) {
        const struct slm_eval_pair *p = &r->pairs[i];
        TRY(slm_buf_puts(out, "| "));
        TRY(md_cell(out, r->cands[p->a].cand->name));
        TRY(slm_buf_puts(out, " | "));
        TRY(md_cell(out, r->cands[p->b].cand->name));
        TRY(slm_buf_printf(out, " | %s | %zu | %zu | %zu | %.4g |\n", p->key, p->n, p->only_a,
                           p->only_b, p->p_value));
    }
    return SLM_OK;
}
