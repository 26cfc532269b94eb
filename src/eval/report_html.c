/*
 * report_html.c - the evaluation as one self-contained HTML page: inline CSS,
 * inline SVG drawn by the one chart writer (slm/svg.h), no scripts, nothing
 * fetched. Four pictures and tables: accuracy vs cost per candidate (with the
 * interval as a whisker), per-label accuracy, each confidence-bearing
 * candidate's accuracy over the share of rows it keeps when it answers only
 * its most confident ones, and the rows where candidates disagree. Every
 * text that comes from data or the suite is escaped.
 */
#include "slm/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/svg.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != SLM_OK) {                                                                       \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

#define MAX_DISAGREE 200 /* rows shown in the disagreement table */
#define MAX_CELL 400     /* bytes of an input or answer shown in a cell */

static const char *const COLORS[] = {"#2471a3", "#c0392b", "#27ae60", "#8e44ad",
                                     "#d35400", "#16a085", "#7f8c8d", "#2c3e50"};

static const char *color(size_t i) {
    return COLORS[i % (sizeof(COLORS) / sizeof(COLORS[0]))];
}

static int esc(struct slm_buf *out, const char *s) {
    return slm_svg_escape(out, s ? s : "");
}

/* At most MAX_CELL bytes, cut on a code point boundary. */
static int esc_cut(struct slm_buf *out, const char *s) {
    size_t n = strlen(s);
    if (n <= MAX_CELL) {
        return esc(out, s);
    }
    char tmp[MAX_CELL + 4];
    size_t k = slm_utf8_complete_len(s, MAX_CELL);
    memcpy(tmp, s, k);
    memcpy(tmp + k, "...", 4);
    return esc(out, tmp);
}

/* The SVG without its XML declaration (an HTML page holds the element). */
static int put_svg(struct slm_buf *out, const struct slm_buf *svg) {
    struct slm_str s = slm_buf_str(svg);
    size_t at = slm_str_find(s, slm_str_c("<svg"), 0);
    return slm_buf_append_str(out, slm_str_sub(s, at == SIZE_MAX ? 0 : at, s.len));
}

/* The value a candidate is ranked by: its first right/wrong metric. */
static const struct slm_eval_value *headline(const struct slm_eval_cand_result *cr) {
    for (size_t k = 0; k < cr->n_values; k++) {
        if (cr->values[k].paired) {
            return &cr->values[k];
        }
    }
    return cr->n_values ? &cr->values[0] : NULL;
}

static int chart_cost(const struct slm_eval_result *r, struct slm_buf *out) {
    double max_cost = 0;
    for (size_t c = 0; c < r->n_cands; c++) {
        max_cost = fmax(max_cost, r->cands[c].cost_per_1k);
    }
    const struct slm_eval_value *h = r->n_cands ? headline(&r->cands[0]) : NULL;
    struct slm_svg_chart ch = {
        .title = "Accuracy vs cost per 1,000 requests (whiskers: 95% CI)",
        .x = {.min = 0,
              .max = slm_svg_nice_max(max_cost * 1.1),
              .ticks = 5,
              .fmt = "$%.3g",
              .title = "cost per 1,000 requests (USD)"},
        .y = {.min = 0, .max = 1, .ticks = 5, .fmt = "%.1f", .title = h ? h->key : "score"}};
    struct slm_buf svg = {0};
    int rc = slm_svg_begin(&svg, &ch);
    for (size_t c = 0; rc == SLM_OK && c < r->n_cands; c++) {
        const struct slm_eval_cand_result *cr = &r->cands[c];
        const struct slm_eval_value *v = headline(cr);
        if (!v || !isfinite(v->value)) {
            continue;
        }
        struct slm_svg_style st = {.color = color(c), .width = 2};
        double x = cr->cost_per_1k;
        rc = slm_svg_segment(&svg, &ch, x, v->lo, x, v->hi, &st);
        if (rc == SLM_OK) {
            rc = slm_svg_marker(&svg, &ch, x, v->value, 5, color(c));
        }
        if (rc == SLM_OK) {
            rc = slm_svg_text(&svg, slm_svg_px(&ch, x) + 8,
                              slm_svg_py(&ch, v->value) + 4 + 14.0 * (double)(c % 3), "start",
                              cr->cand->name);
        }
    }
    rc = rc == SLM_OK ? slm_svg_end(&svg) : rc;
    rc = rc == SLM_OK ? put_svg(out, &svg) : rc;
    slm_buf_free(&svg);
    return rc;
}

static size_t label_tick(double v, char *out, size_t cap, void *user) {
    const struct slm_eval_result *r = user;
    double i = v - 0.5;
    if (i < 0 || i >= (double)r->n_labels || fabs(i - floor(i)) > 1e-9) {
        return (size_t)snprintf(out, cap, "%s", "");
    }
    return (size_t)snprintf(out, cap, "%.12s", r->labels[(size_t)i]);
}

static int chart_labels(const struct slm_eval_result *r, struct slm_buf *out) {
    size_t nl = r->n_labels, nc = r->n_cands;
    int width = (int)fmin(20000, fmax(720, 100 + (double)(nl * (nc * 12 + 8))));
    struct slm_svg_chart ch = {
        .width = width,
        .height = 420,
        .margin = {72, 20, 48, 90},
        .title = "Accuracy per expected label",
        .x =
            {.min = 0, .max = (double)nl, .ticks = (int)nl, .label = label_tick, .user = (void *)r},
        .y = {.min = 0, .max = 1, .ticks = 5, .fmt = "%.1f", .title = "accuracy"}};
    /* Ticks at 0..nl label nothing; the names sit under each group's middle. */
    ch.x.ticks = 0;
    struct slm_buf svg = {0};
    int rc = slm_svg_begin(&svg, &ch);
    double bw = 0.8 / (double)(nc ? nc : 1);
    for (size_t c = 0; rc == SLM_OK && c < nc; c++) {
        struct slm_svg_style st = {.color = color(c)};
        rc = slm_svg_legend(&svg, &ch, 120.0 * (double)c, &st, r->cands[c].cand->name);
        for (size_t k = 0; rc == SLM_OK && k < r->cands[c].n_labels; k++) {
            const struct slm_eval_label_acc *l = &r->cands[c].labels[k];
            double acc = l->n ? (double)l->right / (double)l->n : 0;
            char tip[256];
            snprintf(tip, sizeof(tip), "%s / %s: %zu of %zu right", r->cands[c].cand->name,
                     l->label, l->right, l->n);
            double x0 = (double)k + 0.1 + bw * (double)c;
            rc = slm_svg_bar(&svg, &ch, x0, 0, x0 + bw, acc, color(c), tip);
        }
    }
    for (size_t k = 0; rc == SLM_OK && k < nl; k++) {
        char name[40];
        label_tick((double)k + 0.5, name, sizeof(name), (void *)r);
        rc = slm_svg_text(&svg, slm_svg_px(&ch, (double)k + 0.5), slm_svg_py(&ch, 0) + 16, "middle",
                          name);
    }
    rc = rc == SLM_OK ? slm_svg_end(&svg) : rc;
    rc = rc == SLM_OK ? put_svg(out, &svg) : rc;
    slm_buf_free(&svg);
    return rc;
}

struct conf_row {
    double conf;
    uint8_t right;
};

static int cmp_conf(const void *a, const void *b) {
    double x = ((const struct conf_row *)a)->conf, y = ((const struct conf_row *)b)->conf;
    return (x < y) - (x > y); /* most confident first */
}

/* Accuracy of the k most confident answers against k / n, for k = 1..n. */
static int conf_curve(const struct slm_eval_result *r, size_t c, const struct slm_svg_chart *ch,
                      struct slm_buf *svg) {
    const struct slm_eval_cand_result *cr = &r->cands[c];
    struct conf_row *rows = calloc(r->n_rows ? r->n_rows : 1, sizeof(*rows));
    if (!rows) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        double cf = cr->answers[i].confidence;
        rows[i] = (struct conf_row){isfinite(cf) ? cf : -1, cr->right[i]};
    }
    qsort(rows, r->n_rows, sizeof(*rows), cmp_conf);
    struct slm_svg_style st = {.color = color(c)};
    int rc = slm_svg_line_begin(svg, &st);
    size_t right = 0;
    for (size_t k = 0; rc == SLM_OK && k < r->n_rows; k++) {
        right += rows[k].right;
        rc = slm_svg_line_point(svg, ch, (double)(k + 1) / (double)r->n_rows,
                                (double)right / (double)(k + 1));
    }
    rc = rc == SLM_OK ? slm_svg_line_end(svg) : rc;
    free(rows);
    return rc;
}

static bool has_conf(const struct slm_eval_result *r, size_t c) {
    for (size_t i = 0; r->cands[c].right && i < r->n_rows; i++) {
        if (isfinite(r->cands[c].answers[i].confidence)) {
            return true;
        }
    }
    return false;
}

static int chart_coverage(const struct slm_eval_result *r, struct slm_buf *out) {
    struct slm_svg_chart ch = {
        .title = "Confidence vs coverage: accuracy when answering only the most confident rows",
        .x = {.min = 0,
              .max = 1,
              .ticks = 5,
              .fmt = "%.1f",
              .title = "coverage (share of rows answered locally)"},
        .y = {.min = 0, .max = 1, .ticks = 5, .fmt = "%.1f", .title = "accuracy"}};
    struct slm_buf svg = {0};
    int rc = slm_svg_begin(&svg, &ch);
    double dx = 0;
    for (size_t c = 0; rc == SLM_OK && c < r->n_cands; c++) {
        if (!has_conf(r, c)) {
            continue;
        }
        struct slm_svg_style st = {.color = color(c)};
        rc = slm_svg_legend(&svg, &ch, dx, &st, r->cands[c].cand->name);
        dx += 140;
        rc = rc == SLM_OK ? conf_curve(r, c, &ch, &svg) : rc;
    }
    rc = rc == SLM_OK ? slm_svg_end(&svg) : rc;
    rc = rc == SLM_OK ? put_svg(out, &svg) : rc;
    slm_buf_free(&svg);
    return rc;
}

static int summary_table(const struct slm_eval_result *r, struct slm_buf *out) {
    TRY(slm_buf_puts(out, "<table id=\"summary\"><tr><th>candidate</th><th>kind</th><th>rows</th>"
                          "<th>metric</th><th>value</th><th>95% CI</th><th>p50 ms</th>"
                          "<th>p95 ms</th><th>tokens in/out</th><th>$ / 1k</th></tr>\n"));
    for (size_t c = 0; c < r->n_cands; c++) {
        const struct slm_eval_cand_result *cr = &r->cands[c];
        for (size_t k = 0; k < cr->n_values; k++) {
            const struct slm_eval_value *v = &cr->values[k];
            TRY(slm_buf_puts(out, "<tr><td>"));
            TRY(esc(out, k == 0 ? cr->cand->name : ""));
            TRY(slm_buf_printf(out,
                               "</td><td>%s</td><td>%zu</td><td>%s</td><td>%.3f</td>"
                               "<td>[%.3f, %.3f]</td>",
                               k == 0 ? slm_eval_cand_kind_name(cr->cand->kind) : "", v->n, v->key,
                               v->value, v->lo, v->hi));
            if (k == 0) {
                TRY(slm_buf_printf(out, "<td>%.1f</td><td>%.1f</td><td>%lld/%lld</td><td>%.4f</td>",
                                   cr->p50_ms, cr->p95_ms, (long long)cr->tokens_in,
                                   (long long)cr->tokens_out, cr->cost_per_1k));
            } else {
                TRY(slm_buf_puts(out, "<td></td><td></td><td></td><td></td>"));
            }
            TRY(slm_buf_puts(out, "</tr>\n"));
        }
    }
    TRY(slm_buf_puts(out, "</table>\n"));
    if (!r->n_pairs) {
        return SLM_OK;
    }
    TRY(slm_buf_puts(out, "<h2>Paired tests (McNemar)</h2>\n<table id=\"pairs\"><tr><th>A</th>"
                          "<th>B</th><th>metric</th><th>rows</th><th>right only for A</th>"
                          "<th>right only for B</th><th>p-value</th></tr>\n"));
    for (size_t i = 0; i < r->n_pairs; i++) {
        const struct slm_eval_pair *p = &r->pairs[i];
        TRY(slm_buf_puts(out, "<tr><td>"));
        TRY(esc(out, r->cands[p->a].cand->name));
        TRY(slm_buf_puts(out, "</td><td>"));
        TRY(esc(out, r->cands[p->b].cand->name));
        TRY(slm_buf_printf(out,
                           "</td><td>%s</td><td>%zu</td><td>%zu</td><td>%zu</td><td>%.4g</td>"
                           "</tr>\n",
                           p->key, p->n, p->only_a, p->only_b, p->p_value));
    }
    return slm_buf_puts(out, "</table>\n");
}

static bool disagree(const struct slm_eval_result *r, size_t i) {
    for (size_t c = 1; c < r->n_cands; c++) {
        if (r->cands[c].right && r->cands[0].right &&
            r->cands[c].right[i] != r->cands[0].right[i]) {
            return true;
        }
    }
    return false;
}

static int disagree_table(const struct slm_eval_result *r, struct slm_buf *out) {
    size_t shown = 0, total = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        total += disagree(r, i);
    }
    TRY(slm_buf_printf(out,
                       "<h2>Rows where candidates disagree</h2>\n<p>%zu of %zu rows have a "
                       "candidate right and another wrong%s.</p>\n<table id=\"disagree\"><tr>"
                       "<th>line</th><th>input</th><th>expected</th>",
                       total, r->n_rows, total > MAX_DISAGREE ? "; the first 200 are shown" : ""));
    for (size_t c = 0; c < r->n_cands; c++) {
        TRY(slm_buf_puts(out, "<th>"));
        TRY(esc(out, r->cands[c].cand->name));
        TRY(slm_buf_puts(out, "</th>"));
    }
    TRY(slm_buf_puts(out, "</tr>\n"));
    for (size_t i = 0; i < r->n_rows && shown < MAX_DISAGREE; i++) {
        if (!disagree(r, i)) {
            continue;
        }
        shown++;
        TRY(slm_buf_printf(out, "<tr><td>%zu</td><td class=\"in\">", r->rows[i].line));
        TRY(esc_cut(out, r->rows[i].input));
        TRY(slm_buf_puts(out, "</td><td>"));
        TRY(esc_cut(out, r->rows[i].expected));
        TRY(slm_buf_puts(out, "</td>"));
        for (size_t c = 0; c < r->n_cands; c++) {
            const struct slm_eval_answer *a = &r->cands[c].answers[i];
            bool ok = r->cands[c].right && r->cands[c].right[i];
            TRY(slm_buf_printf(out, "<td class=\"%s\">", ok ? "right" : "wrong"));
            TRY(esc_cut(out, a->text ? a->text : a->error ? a->error : ""));
            TRY(slm_buf_puts(out, "</td>"));
        }
        TRY(slm_buf_puts(out, "</tr>\n"));
    }
    return slm_buf_puts(out, "</table>\n");
}

static const char CSS[] =
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}td.in{max-width:40em;white-space:pre-wrap}"
    "td.right{background:#e8f6ec}td.wrong{background:#fbeaea}"
    "figure{margin:1em 0;overflow-x:auto}";

int slm_eval_report_html(const struct slm_eval_result *r, struct slm_buf *out) {
    TRY(slm_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                          "<title>slm eval: "));
    TRY(esc(out, r->suite->name));
    TRY(slm_buf_printf(out, "</title><style>%s</style></head><body>\n<h1>Evaluation: ", CSS));
    TRY(esc(out, r->suite->name));
    TRY(slm_buf_printf(out,
                       "</h1>\n<p>%zu rows, %zu candidates, %.1f s. Every value has its 95%% "
                       "bootstrap interval (%u resamples) and the rows behind it; pairs are "
                       "compared with McNemar's test.</p>\n",
                       r->n_rows, r->n_cands, r->wall_s, r->suite->bootstrap));
    TRY(summary_table(r, out));
    TRY(slm_buf_puts(out, "<h2>Accuracy vs cost</h2>\n<figure id=\"cost\">"));
    TRY(chart_cost(r, out));
    TRY(slm_buf_puts(out, "</figure>\n"));
    if (r->n_labels) {
        TRY(slm_buf_puts(out, "<h2>Per-label accuracy</h2>\n<figure id=\"labels\">"));
        TRY(chart_labels(r, out));
        TRY(slm_buf_puts(out, "</figure>\n"));
    }
    bool any_conf = false;
    for (size_t c = 0; c < r->n_cands; c++) {
        any_conf = any_conf || has_conf(r, c);
    }
    if (any_conf) {
        TRY(slm_buf_puts(out, "<h2>Confidence vs coverage</h2>\n<figure id=\"coverage\">"));
        TRY(chart_coverage(r, out));
        TRY(slm_buf_puts(out, "</figure>\n"));
    }
    TRY(disagree_table(r, out));
    return slm_buf_puts(out, "</body></html>\n");
}
