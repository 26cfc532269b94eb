/*
 * router/calibrate.c - `slm route calibrate` without the printing: run a
 * route's local target over labelled rows, measure confidence against
 * correctness, choose the threshold (calib.c's maths), and render the report,
 * the chart and the thresholds file.
 *
 * Not the maths of the curve itself (calib.c, pure) nor the flags (the CLI).
 * Reports progress and skipped rows through the params' callbacks; never
 * prints. One run at a time per router (it runs the local target).
 */
#include "slm/router.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "slm/json.h"
#include "slm/svg.h"
#include "slm/yaml.h"

struct slm_router_calib_params slm_router_calib_params_default(void) {
    struct slm_router_calib_params p;
    memset(&p, 0, sizeof(p));
    p.cloud_accuracy = 0.92;
    p.confidence = 0.95;
    return p;
}

/* ---------------------------------------------------------------- rows */

/* The measured rows: confidence, right or wrong locally, escalation cost. */
struct rows {
    double *conf, *cost;
    bool *correct;
    size_t n, cap;
};

static void rows_free(struct rows *d) {
    free(d->conf);
    free(d->cost);
    free(d->correct);
}

static int rows_add(struct rows *d, double conf, bool correct, double cost) {
    if (d->n == d->cap) {
        size_t cap = d->cap * 2 + 64;
        /* each array keeps its old block when growing it fails; cap grows
         * only when all three did */
        double *c = realloc(d->conf, cap * sizeof(double));
        if (!c) {
            return SLM_E_NOMEM;
        }
        d->conf = c;
        double *k = realloc(d->cost, cap * sizeof(double));
        if (!k) {
            return SLM_E_NOMEM;
        }
        d->cost = k;
        bool *ok = realloc(d->correct, cap * sizeof(bool));
        if (!ok) {
            return SLM_E_NOMEM;
        }
        d->correct = ok;
        d->cap = cap;
    }
    d->conf[d->n] = isnan(conf) ? 0.0 : conf;
    d->correct[d->n] = correct;
    d->cost[d->n] = cost;
    d->n++;
    return SLM_OK;
}

/* The chat request for a labelled row, and its answer; NULL without them. */
static json_t *row_request(const json_t *row, const char *route, const char **answer) {
    *answer = json_string_value(json_object_get(row, "answer"));
    if (!*answer) {
        *answer = json_string_value(json_object_get(row, "label"));
    }
    const json_t *msgs = json_object_get(row, "messages");
    const char *input = json_string_value(json_object_get(row, "input"));
    if (!*answer || (!json_is_array(msgs) && !input)) {
        return NULL;
    }
    if (json_is_array(msgs)) {
        return json_pack("{s:s, s:O}", "model", route, "messages", msgs);
    }
    return json_pack("{s:s, s:[{s:s, s:s}]}", "model", route, "messages", "role", "user", "content",
                     input);
}

static bool same_answer(const char *a, const char *b) {
    return slm_str_eq_nocase(slm_str_trim(slm_str_c(a)), slm_str_trim(slm_str_c(b)));
}

static bool cancelled(const struct slm_router_calib_params *p) {
    return p->cancel && *p->cancel;
}

static void note(const struct slm_router_calib_params *p, const char *data, size_t lineno,
                 const char *why) {
    if (p->note) {
        char line[512];
        snprintf(line, sizeof(line), "%s:%zu: %s", data, lineno, why);
        p->note(line, p->user);
    }
}

/* One row through the local target; SLM_OK also when the row was skipped. */
static int measure_row(struct slm_router *r, const struct slm_router_route *route, json_t *row,
                       const struct slm_router_calib_params *p, struct rows *d, const char *data,
                       size_t lineno) {
    const struct slm_router_config *cfg = slm_router_get_config(r);
    const struct slm_router_local *t = &cfg->locals[route->local];
    const struct slm_upstream_member *base = &cfg->pools[route->escalate[0]].members[0];
    const char *answer = NULL;
    json_t *req = row_request(row, route->name, &answer);
    if (!req) {
        note(p, data, lineno, "needs \"answer\" and \"input\" or \"messages\"");
        return SLM_OK;
    }
    struct slm_err err = {0};
    struct slm_router_local_result res;
    int rc = slm_router_run_local(r, route->name, req, p->cancel, &res, &err);
    if (rc == SLM_OK) {
        bool ok = res.status == SLM_OK;
        double conf = !ok ? 0.0 : t->score_labels ? res.label_prob : res.tok.mean_prob;
        rc = rows_add(d, conf, ok && same_answer(slm_buf_cstr(&res.text), answer),
                      slm_upstream_price(base, res.n_prompt, res.n_gen));
    } else if (rc != SLM_E_ABORTED) {
        note(p, data, lineno, err.msg[0] ? err.msg : slm_strerror(rc));
        rc = SLM_OK;
    }
    slm_router_local_result_free(&res);
    json_decref(req);
    return rc;
}

static int collect(struct slm_router *r, const struct slm_router_route *route, const char *data,
                   const struct slm_router_calib_params *p, struct rows *d, struct slm_err *err) {
    FILE *f = fopen(data, "r");
    if (!f) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "cannot open %s: %s", data, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = SLM_OK;
    while (rc == SLM_OK && !cancelled(p) && (p->limit == 0 || d->n < p->limit) &&
           (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (p->progress) {
            p->progress(lineno, p->user);
        }
        struct slm_str s = slm_str_trim(slm_str_n(line, (size_t)n));
        json_t *row = NULL;
        struct slm_err perr = {0};
        if (s.len == 0 || slm_json_parse(s.ptr, s.len, data, &row, &perr) != SLM_OK) {
            continue;
        }
        rc = measure_row(r, route, row, p, d, data, lineno);
        json_decref(row);
    }
    free(line);
    fclose(f);
    if (cancelled(p) || rc == SLM_E_ABORTED) {
        return slm_err_set(err, SLM_E_ABORTED, "calibration interrupted");
    }
    return rc == SLM_OK ? SLM_OK : slm_err_set(err, rc, "%s", slm_strerror(rc));
}

/* ---------------------------------------------------------------- choice */

/* The standard normal quantile of c in (0, 1), by bisection on erfc: the
 * number of standard errors a one-sided bound at confidence c lies below
 * the estimate. */
static double normal_quantile(double c) {
    double lo = -10, hi = 10;
    for (int i = 0; i < 100; i++) {
        double mid = (lo + hi) / 2;
        if (0.5 * erfc(-mid / sqrt(2.0)) < c) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return (lo + hi) / 2;
}

static int choose(const struct rows *d, struct slm_router_calib *c, struct slm_err *err) {
    double mean_cost = 0;
    for (size_t i = 0; i < d->n; i++) {
        mean_cost += d->cost[i] / (double)d->n;
        c->n_correct += d->correct[i];
    }
    struct slm_calib_params cp = {c->cloud_accuracy, 0.0, mean_cost, c->target_accuracy,
                                  normal_quantile(c->confidence)};
    int64_t np = slm_calib_curve(d->conf, d->correct, NULL, d->cost, d->n, &cp, NULL, 0);
    c->curve = np > 0 ? calloc((size_t)np, sizeof(*c->curve)) : NULL;
    if (!c->curve) {
        return slm_err_set(err, np < 0 ? (int)np : SLM_E_NOMEM, "cannot compute the curve");
    }
    c->n_curve = (size_t)slm_calib_curve(d->conf, d->correct, NULL, d->cost, d->n, &cp, c->curve,
                                         (size_t)np);
    int rc =
        slm_calib_choose(d->conf, d->correct, NULL, d->cost, d->n, &cp, &c->chosen, &c->oracle);
    if (rc != SLM_OK && rc != SLM_E_NOT_FOUND) {
        return slm_err_set(err, rc, "cannot choose a threshold: %s", slm_strerror(rc));
    }
    c->reached = rc == SLM_OK;
    c->threshold = isinf(c->chosen.threshold) ? 1.0 : c->chosen.threshold;
    c->auroc = slm_calib_auroc(d->conf, d->correct, d->n);
    c->ece = slm_calib_ece(d->conf, d->correct, d->n, 10);
    return SLM_OK;
}

int slm_router_calibrate(struct slm_router *r, const char *route_name, const char *data,
                         const struct slm_router_calib_params *params, struct slm_router_calib *out,
                         struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    struct slm_router_calib_params p = params ? *params : slm_router_calib_params_default();
    out->cloud_accuracy = p.cloud_accuracy;
    out->confidence = p.confidence > 0 ? p.confidence : 0.95;
    out->target_accuracy = p.target_accuracy;
    const struct slm_router_config *cfg = slm_router_get_config(r);
    const struct slm_router_route *route =
        route_name ? slm_router_config_route(cfg, route_name) : &cfg->routes[0];
    if (!route) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "no route named '%s' in %s", route_name,
                           cfg->path);
    }
    if (route->n_escalate == 0) {
        return slm_err_set(err, SLM_E_INVALID, "route '%s' has no upstream to escalate to",
                           route->name);
    }
    out->key = cfg->locals[route->local].score_labels ? "label_prob" : "token_mean";
    struct rows d = {0};
    int rc = collect(r, route, data, &p, &d, err);
    if (rc == SLM_OK && d.n == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "no usable rows in %s", data);
    }
    if (rc == SLM_OK) {
        out->n = d.n;
        rc = choose(&d, out, err);
    }
    rows_free(&d);
    if (rc != SLM_OK) {
        slm_router_calib_free(out);
    }
    return rc;
}

void slm_router_calib_free(struct slm_router_calib *c) {
    if (c) {
        free(c->curve);
        c->curve = NULL;
        c->n_curve = 0;
    }
}

/* ---------------------------------------------------------------- output */

int slm_router_calib_report(const struct slm_router_calib *c, struct slm_buf *o) {
    int rc = slm_buf_printf(
        o, "rows %zu, local accuracy %.1f%%, AUROC %.3f, ECE %.3f, cloud accuracy %.1f%%\n", c->n,
        c->n ? 100.0 * (double)c->n_correct / (double)c->n : 0.0, c->auroc, c->ece,
        100 * c->cloud_accuracy);
    rc = rc ? rc
            : slm_buf_printf(o, "%10s %10s %10s %10s %10s\n", "THRESHOLD", "ESCALATED", "ACCURACY",
                             "AT LEAST", "COST");
    size_t step = c->n_curve > 20 ? c->n_curve / 20 : 1;
    for (size_t i = 0; rc == SLM_OK && i < c->n_curve; i++) {
        const struct slm_calib_point *pt = &c->curve[i];
        if (i % step == 0 || i + 1 == c->n_curve) {
            rc = slm_buf_printf(o, "%10.4f %9.1f%% %9.1f%% %9.1f%% %10.6f\n", pt->threshold,
                                100 * pt->share_escalated, 100 * pt->accuracy,
                                100 * pt->accuracy_low, pt->cost);
        }
    }
    rc = rc ? rc
            : slm_buf_printf(o, "oracle: escalates %.1f%%, accuracy %.1f%%, cost %.6f\n",
                             100 * c->oracle.share_escalated, 100 * c->oracle.accuracy,
                             c->oracle.cost);
    if (rc == SLM_OK && !c->reached) {
        rc = slm_buf_printf(o, "no threshold reaches %.1f%%; the most accurate point is used\n",
                            100 * c->target_accuracy);
    }
    const struct slm_calib_point *ch = &c->chosen;
    return rc ? rc
              : slm_buf_printf(o,
                               "chosen: %s %.4f: escalates %.1f%%, accuracy %.1f%% (at least "
                               "%.1f%% with confidence %.2f), cost %.6f\n",
                               c->key, c->threshold, 100 * ch->share_escalated, 100 * ch->accuracy,
                               100 * ch->accuracy_low, c->confidence, ch->cost);
}

int slm_router_calib_svg(const struct slm_router_calib *c, struct slm_buf *out) {
    double max_cost = 0;
    for (size_t i = 0; i < c->n_curve; i++) {
        max_cost = SLM_MAX(max_cost, c->curve[i].cost);
    }
    struct slm_svg_chart ch = {
        .width = 640,
        .height = 400,
        .margin = {60, 20, 40, 40},
        .title = "accuracy vs cost (slm route calibrate)",
        .x = {.min = 0,
              .max = max_cost > 0 ? max_cost : 1,
              .ticks = 4,
              .fmt = "%.4g",
              .title = "cost"},
        .y = {.min = 0, .max = 1, .ticks = 5, .fmt = "%.1f", .title = "accuracy"}};
    static const struct slm_svg_style CURVE = {"#2060c0", 2, NULL};
    int rc = slm_svg_begin(out, &ch);
    rc = rc ? rc : slm_svg_line_begin(out, &CURVE);
    for (size_t i = 0; rc == SLM_OK && i < c->n_curve; i++) {
        rc = slm_svg_line_point(out, &ch, c->curve[i].cost, c->curve[i].accuracy);
    }
    rc = rc ? rc : slm_svg_line_end(out);
    rc = rc ? rc : slm_svg_marker(out, &ch, c->chosen.cost, c->chosen.accuracy, 5, "#c03020");
    char text[160];
    snprintf(text, sizeof(text), "chosen: threshold %.4f, accuracy %.3f, cost %.4f",
             c->chosen.threshold, c->chosen.accuracy, c->chosen.cost);
    rc = rc ? rc : slm_svg_legend(out, &ch, 0, NULL, text);
    return rc ? rc : slm_svg_end(out);
}

size_t slm_router_thresholds_path(const struct slm_router_config *cfg, char *out, size_t cap) {
    if (cfg->include_path) {
        int n = snprintf(out, cap, "%s", cfg->include_path);
        return n < 0 ? 0 : (size_t)n;
    }
    return slm_path_join(out, cap, cfg->dir, "thresholds.yaml");
}

/* The routes of an existing thresholds file (a new object when there is none). */
static int load_thresholds(const char *path, json_t **routes, struct slm_err *err) {
    *routes = json_object();
    if (!*routes) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (!slm_file_exists(path)) {
        return SLM_OK;
    }
    struct slm_yaml_doc *doc = NULL;
    int rc = slm_yaml_load_file(path, NULL, &doc, err);
    if (rc != SLM_OK) {
        json_decref(*routes);
        *routes = NULL;
        return rc;
    }
    json_t *old = json_object_get(slm_yaml_root(doc), "routes");
    if (json_is_object(old)) {
        json_object_update(*routes, old);
    }
    slm_yaml_free(doc);
    return SLM_OK;
}

int slm_router_write_thresholds(const char *path, const char *route, const char *key, double value,
                                const char *comment, struct slm_err *err) {
    json_t *routes = NULL;
    int rc = load_thresholds(path, &routes, err);
    if (rc != SLM_OK) {
        return rc;
    }
    json_t *mine = json_object_get(routes, route);
    if (!json_is_object(mine)) {
        mine = json_object();
        json_object_set_new(routes, route, mine);
    }
    json_object_set_new(mine, key, json_real(value));
    struct slm_buf b = {0};
    rc = slm_buf_printf(&b, "# %s\nroutes:\n", comment);
    const char *rname, *k;
    json_t *rv, *v;
    json_object_foreach(routes, rname, rv) {
        if (rc == SLM_OK) {
            rc = slm_buf_printf(&b, "  \"%s\":\n", rname);
        }
        json_object_foreach(rv, k, v) {
            if (rc == SLM_OK && json_is_number(v)) {
                rc = slm_buf_printf(&b, "    %s: %.17g\n", k, json_number_value(v));
            }
        }
    }
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(path, b.ptr, b.len, err);
    } else {
        rc = slm_err_set(err, rc, "%s: %s", path, slm_strerror(rc));
    }
    slm_buf_free(&b);
    json_decref(routes);
    return rc;
}
