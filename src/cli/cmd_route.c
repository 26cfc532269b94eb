/*
 * cli/cmd_route.c - `slm route`: batch requests through the router, and
 * `slm route calibrate`: choose check thresholds from labelled data.
 *
 * Batch: input lines are OpenAI chat bodies with an "id"; output lines are
 * {"id", "response", "route", "reason"} (or {"id", "error", "route": "error"})
 * in input order, flushed one by one, so a rerun resumes after the last id
 * written (a half-written last line from a kill is cut off first).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "slm/json.h"
#include "slm/router.h"
#include "slm/yaml.h"

static const char *const CMD = "route";

#define MAX_LINE ((size_t)16 << 20)

static void usage(void) {
    printf("Usage: slm route --router ROUTER.yaml IN.jsonl -o OUT.jsonl [--on-error skip|fail]\n"
           "       slm route calibrate --router ROUTER.yaml --data LABELLED.jsonl\n"
           "                 --target-accuracy X [--route NAME] [--cloud-accuracy P]\n"
           "                 [--confidence C] [--out thresholds.yaml] [--svg curve.svg]\n"
           "                 [--limit N]\n"
           "\n"
           "Batch: every input line is an OpenAI chat request body with an \"id\" and a\n"
           "\"model\" naming a route; every output line is {\"id\", \"response\", \"route\",\n"
           "\"reason\"}. A rerun with the same OUT resumes after the last id written.\n"
           "A bad input line is reported with its line number and skipped (--on-error skip,\n"
           "the default) or stops the run (--on-error fail); output already written stays.\n"
           "\n"
           "Calibrate: runs the route's local target once per labelled row ({\"input\" or\n"
           "\"messages\", \"answer\"}), reads its confidence (label probability, or mean token\n"
           "probability), prints the accuracy/cost curve and writes the cheapest threshold that\n"
           "reaches the target accuracy to the thresholds file router.yaml includes.\n"
           "  --cloud-accuracy P  accuracy assumed for escalated rows (default 0.92)\n"
           "  --confidence C      reach the target with this one-sided confidence, not just on\n"
           "                      these rows (default 0.95; 0.5 = the measured accuracy)\n"
           "  --out FILE          default: router.yaml's include, else thresholds.yaml beside it\n"
           "See docs/router.md.\n");
}

/* ---------------------------------------------------------------- progress */

/* A one-line bar counted in requests (cli/progress.h counts bytes), redrawn at
 * most ten times a second, only on a terminal. */
struct line_progress {
    bool enabled, drawn;
    double t_start, t_last;
};

static void lp_init(struct line_progress *p) {
    memset(p, 0, sizeof(*p));
    p->enabled = slm_cli_stderr_tty();
    p->t_start = slm_time_mono();
}

static void lp_update(struct line_progress *p, const char *label, size_t done, size_t total,
                      bool force) {
    double now = slm_time_mono();
    if (!p->enabled || (!force && now - p->t_last < 0.1)) {
        return;
    }
    p->t_last = now;
    double rate = now > p->t_start ? (double)done / (now - p->t_start) : 0;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 0;
    char bar[21];
    for (int i = 0; i < 20; i++) {
        bar[i] = i < pct / 5 ? '=' : ' ';
    }
    bar[20] = '\0';
    double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r%s %3d%% [%s] %zu/%zu  %.1f/s  ETA %.0fs\033[K", label, pct, bar, done,
            total, rate, eta);
    p->drawn = true;
}

static void lp_finish(struct line_progress *p) {
    if (p->drawn) {
        fputc('\n', stderr);
        p->drawn = false;
    }
}

/* ---------------------------------------------------------------- resume */

/* Cuts a partial last line off OUT and returns the last id written (heap), or
 * NULL when the file is empty or missing. */
static int resume_point(const char *path, char **last_id, struct slm_err *err) {
    *last_id = NULL;
    if (!slm_file_exists(path)) {
        return SLM_OK;
    }
    struct slm_buf b = {0};
    int rc = slm_file_read(path, 0, &b, err);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t end = b.len;
    while (end > 0 && b.ptr[end - 1] != '\n') {
        end--; /* a half-written line from an interrupted run */
    }
    if (end != b.len && truncate(path, (off_t)end) != 0) {
        slm_buf_free(&b);
        return slm_err_set(err, SLM_E_IO, "%s: cannot cut the partial last line: %s", path,
                           strerror(errno));
    }
    if (end > 0) {
        size_t start = end - 1;
        while (start > 0 && b.ptr[start - 1] != '\n') {
            start--;
        }
        json_t *line = NULL;
        rc = slm_json_parse(b.ptr + start, end - start, path, &line, err);
        const json_t *id = json_object_get(line, "id");
        if (rc == SLM_OK && json_is_string(id)) {
            *last_id = strdup(json_string_value(id));
        } else if (rc == SLM_OK) {
            rc = slm_err_set(err, SLM_E_INVALID, "%s: the last line has no string \"id\"", path);
        }
        json_decref(line);
    }
    slm_buf_free(&b);
    return rc;
}

static size_t count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int c;
    while (f && (c = getc(f)) != EOF) {
        n += c == '\n';
    }
    if (f) {
        fclose(f);
    }
    return n;
}

/* ---------------------------------------------------------------- batch */

struct batch {
    struct slm_router *r;
    FILE *out;
    size_t ok, escalated, fallback, failed, bad;
};

static int write_line(struct batch *b, json_t *line) {
    struct slm_buf s = {0};
    int rc = slm_json_dump(line, &s);
    if (rc == SLM_OK && (fwrite(s.ptr, 1, s.len, b->out) != s.len || fputc('\n', b->out) == EOF ||
                         fflush(b->out) != 0)) {
        rc = SLM_E_IO;
    }
    slm_buf_free(&s);
    return rc;
}

static int route_one(struct batch *b, json_t *req, const char *id) {
    json_t *resp = NULL;
    struct slm_router_info info;
    memset(&info, 0, sizeof(info));
    struct slm_err err = {0};
    int rc = slm_router_chat(b->r, req, &slm_cli_interrupted, &resp, &info, &err);
    if (rc == SLM_E_ABORTED) {
        return rc;
    }
    json_t *line;
    if (rc == SLM_OK) {
        line = json_pack("{s:s, s:o, s:s, s:s}", "id", id, "response", resp, "route", info.route,
                         "reason", info.reason);
        b->ok++;
        b->escalated += strcmp(info.route, "escalated") == 0;
        b->fallback += strcmp(info.route, "local_fallback") == 0;
    } else {
        json_decref(resp);
        line = json_pack("{s:s, s:{s:s, s:s}, s:s, s:s}", "id", id, "error", "code",
                         slm_strerror(rc), "message", err.msg, "route", "error", "reason", err.msg);
        b->failed++;
    }
    rc = line ? write_line(b, line) : SLM_E_NOMEM;
    json_decref(line);
    return rc;
}

static int batch_run(struct batch *b, const char *in_path, const char *out_path, bool fail_bad) {
    char *resume = NULL;
    struct slm_err err = {0};
    int rc = resume_point(out_path, &resume, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    FILE *in = fopen(in_path, "r");
    if (!in) {
        free(resume);
        slm_cli_error(CMD, "cannot open %s: %s", in_path, strerror(errno));
        return SLM_EXIT_NOT_FOUND;
    }
    b->out = fopen(out_path, "a");
    if (!b->out) {
        fclose(in);
        free(resume);
        slm_cli_error(CMD, "cannot open %s: %s", out_path, strerror(errno));
        return SLM_EXIT_ERROR;
    }
    size_t total = count_lines(in_path), lineno = 0;
    struct line_progress prog;
    lp_init(&prog);
    bool skipping = resume != NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int code = SLM_EXIT_OK;
    while (code == SLM_EXIT_OK && !slm_cli_interrupted && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        lp_update(&prog, "route", lineno, total, false);
        struct slm_str s = slm_str_trim(slm_str_n(line, (size_t)n));
        if (s.len == 0) {
            continue;
        }
        json_t *req = NULL;
        char where[64];
        snprintf(where, sizeof(where), "%s:%zu", in_path, lineno);
        rc = (size_t)n > MAX_LINE ? slm_err_set(&err, SLM_E_TOO_LARGE, "%s: line too long", where)
                                  : slm_json_parse(s.ptr, s.len, where, &req, &err);
        const json_t *idv = json_object_get(req, "id");
        if (rc == SLM_OK && !json_is_string(idv)) {
            rc = slm_err_set(&err, SLM_E_INVALID, "%s: a string \"id\" is required", where);
        }
        if (rc != SLM_OK) {
            json_decref(req);
            lp_finish(&prog);
            slm_cli_error(CMD, "%s%s", err.msg, fail_bad ? "" : " (skipped)");
            b->bad++;
            code = fail_bad ? SLM_EXIT_ERROR : SLM_EXIT_OK;
            continue;
        }
        char *id = strdup(json_string_value(idv));
        if (skipping) {
            skipping = strcmp(id, resume) != 0;
        } else if (id) {
            rc = route_one(b, req, id);
            if (rc != SLM_OK && rc != SLM_E_ABORTED) {
                slm_cli_error(CMD, "cannot write %s: %s", out_path, slm_strerror(rc));
                code = SLM_EXIT_ERROR;
            }
        }
        free(id);
        json_decref(req);
    }
    lp_update(&prog, "route", lineno, total, true);
    lp_finish(&prog);
    if (skipping && code == SLM_EXIT_OK) {
        slm_cli_error(CMD, "%s ends with id '%s', which is not in %s: not resuming", out_path,
                      resume, in_path);
        code = SLM_EXIT_ERROR;
    }
    free(line);
    free(resume);
    fclose(in);
    if (fclose(b->out) != 0 && code == SLM_EXIT_OK) {
        slm_cli_error(CMD, "cannot write %s", out_path);
        code = SLM_EXIT_ERROR;
    }
    if (slm_cli_interrupted) {
        return SLM_EXIT_INTERRUPTED;
    }
    fprintf(stderr,
            "route: %zu answered (%zu escalated, %zu local_fallback), %zu failed, %zu bad lines\n",
            b->ok, b->escalated, b->fallback, b->failed, b->bad);
    return code;
}

/* ---------------------------------------------------------------- calibrate */

struct calib_args {
    const char *router, *data, *route, *out, *svg;
    double target, cloud_accuracy, confidence;
    long long limit;
};

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

static int write_svg(const char *path, const struct slm_calib_point *pts, size_t n,
                     const struct slm_calib_point *chosen) {
    double max_cost = 0;
    for (size_t i = 0; i < n; i++) {
        max_cost = SLM_MAX(max_cost, pts[i].cost);
    }
    max_cost = max_cost > 0 ? max_cost : 1;
    struct slm_buf b = {0};
    int rc = slm_buf_puts(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" "
                              "height=\"400\" font-family=\"sans-serif\" font-size=\"12\">\n"
                              "<rect width=\"640\" height=\"400\" fill=\"white\"/>\n"
                              "<text x=\"320\" y=\"20\" text-anchor=\"middle\">accuracy vs cost "
                              "(slm route calibrate)</text>\n"
                              "<line x1=\"60\" y1=\"360\" x2=\"620\" y2=\"360\" stroke=\"black\"/>"
                              "<line x1=\"60\" y1=\"40\" x2=\"60\" y2=\"360\" stroke=\"black\"/>\n"
                              "<text x=\"340\" y=\"390\" text-anchor=\"middle\">cost</text>"
                              "<text x=\"15\" y=\"200\" transform=\"rotate(-90 15 200)\">"
                              "accuracy</text>\n<polyline fill=\"none\" stroke=\"#2060c0\" "
                              "stroke-width=\"2\" points=\"");
    for (size_t i = 0; i < n && rc == SLM_OK; i++) {
        rc = slm_buf_printf(&b, "%.1f,%.1f ", 60 + 560 * pts[i].cost / max_cost,
                            360 - 320 * pts[i].accuracy);
    }
    if (rc == SLM_OK) {
        rc = slm_buf_printf(&b,
                            "\"/>\n<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#c03020\"/>\n"
                            "<text x=\"70\" y=\"55\">chosen: threshold %.4f, accuracy %.3f, "
                            "cost %.4f</text>\n</svg>\n",
                            60 + 560 * chosen->cost / max_cost, 360 - 320 * chosen->accuracy,
                            chosen->threshold, chosen->accuracy, chosen->cost);
    }
    struct slm_err err = {0};
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(path, b.ptr, b.len, &err);
    }
    slm_buf_free(&b);
    return rc;
}

/* Keeps the other routes of an existing thresholds file, replaces this one. */
static int write_thresholds(const char *path, const char *route, const char *key, double value,
                            const char *comment, struct slm_err *err) {
    json_t *routes = json_object();
    if (slm_file_exists(path)) {
        struct slm_yaml_doc *doc = NULL;
        int rc = slm_yaml_load_file(path, NULL, &doc, err);
        if (rc != SLM_OK) {
            json_decref(routes);
            return rc;
        }
        json_t *old = json_object_get(slm_yaml_root(doc), "routes");
        if (json_is_object(old)) {
            json_object_update(routes, old);
        }
        slm_yaml_free(doc);
    }
    json_t *mine = json_object_get(routes, route);
    if (!json_is_object(mine)) {
        mine = json_object();
        json_object_set_new(routes, route, mine);
    }
    json_object_set_new(mine, key, json_real(value));
    struct slm_buf b = {0};
    int rc = slm_buf_printf(&b, "# %s\nroutes:\n", comment);
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
    }
    slm_buf_free(&b);
    json_decref(routes);
    return rc;
}

struct calib_data {
    double *conf, *cost;
    bool *correct;
    size_t n, cap;
};

static int calib_collect(struct slm_router *r, const struct calib_args *a,
                         const struct slm_router_route *route, struct calib_data *d) {
    const struct slm_router_config *cfg = slm_router_get_config(r);
    const struct slm_router_local *t = &cfg->locals[route->local];
    const struct slm_upstream_member *base = &cfg->pools[route->escalate[0]].members[0];
    FILE *f = fopen(a->data, "r");
    if (!f) {
        slm_cli_error(CMD, "cannot open %s: %s", a->data, strerror(errno));
        return SLM_EXIT_NOT_FOUND;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0, total = count_lines(a->data);
    ssize_t n;
    struct line_progress prog;
    lp_init(&prog);
    int code = SLM_EXIT_OK;
    while (code == SLM_EXIT_OK && !slm_cli_interrupted && (n = getline(&line, &cap, f)) >= 0 &&
           (a->limit <= 0 || (long long)d->n < a->limit)) {
        lineno++;
        lp_update(&prog, "calibrate", lineno, total, false);
        struct slm_str s = slm_str_trim(slm_str_n(line, (size_t)n));
        json_t *row = NULL;
        struct slm_err err = {0};
        if (s.len == 0 || slm_json_parse(s.ptr, s.len, a->data, &row, &err) != SLM_OK) {
            continue;
        }
        const char *answer = NULL;
        json_t *req = row_request(row, route->name, &answer);
        struct slm_router_local_result res;
        int rc = req ? slm_router_run_local(r, route->name, req, &slm_cli_interrupted, &res, &err)
                     : SLM_E_INVALID;
        if (rc == SLM_OK && d->n == d->cap) {
            d->cap = d->cap * 2 + 64;
            d->conf = realloc(d->conf, d->cap * sizeof(double));
            d->cost = realloc(d->cost, d->cap * sizeof(double));
            d->correct = realloc(d->correct, d->cap * sizeof(bool));
            rc = d->conf && d->cost && d->correct ? SLM_OK : SLM_E_NOMEM;
        }
        if (rc == SLM_OK) {
            bool ok = res.status == SLM_OK;
            double conf = !ok ? 0.0 : t->score_labels ? res.label_prob : res.tok.mean_prob;
            d->conf[d->n] = isnan(conf) ? 0.0 : conf;
            d->correct[d->n] = ok && same_answer(slm_buf_cstr(&res.text), answer);
            d->cost[d->n] = slm_upstream_price(base, res.n_prompt, res.n_gen);
            d->n++;
        } else if (rc != SLM_E_ABORTED) {
            lp_finish(&prog);
            slm_cli_error(CMD, "%s:%zu: %s", a->data, lineno,
                          err.msg[0] ? err.msg : "needs \"answer\" and \"input\" or \"messages\"");
        }
        if (req) {
            slm_router_local_result_free(&res);
        }
        json_decref(req);
        json_decref(row);
    }
    lp_finish(&prog);
    free(line);
    fclose(f);
    return slm_cli_interrupted ? SLM_EXIT_INTERRUPTED : code;
}

static void print_curve(const struct slm_calib_point *pts, size_t n) {
    printf("%10s %10s %10s %10s %10s\n", "THRESHOLD", "ESCALATED", "ACCURACY", "AT LEAST", "COST");
    size_t step = n > 20 ? n / 20 : 1;
    for (size_t i = 0; i < n; i++) {
        if (i % step == 0 || i + 1 == n) {
            printf("%10.4f %9.1f%% %9.1f%% %9.1f%% %10.6f\n", pts[i].threshold,
                   100 * pts[i].share_escalated, 100 * pts[i].accuracy, 100 * pts[i].accuracy_low,
                   pts[i].cost);
        }
    }
}

static int calib_report(const struct calib_args *a, const struct slm_router_config *cfg,
                        const struct slm_router_route *route, const struct calib_data *d) {
    if (d->n == 0) {
        slm_cli_error(CMD, "no usable rows in %s", a->data);
        return SLM_EXIT_ERROR;
    }
    double mean_cost = 0;
    for (size_t i = 0; i < d->n; i++) {
        mean_cost += d->cost[i] / (double)d->n;
    }
    struct slm_calib_params cp = {a->cloud_accuracy, 0.0, mean_cost, a->target,
                                  normal_quantile(a->confidence)};
    int64_t np = slm_calib_curve(d->conf, d->correct, NULL, d->cost, d->n, &cp, NULL, 0);
    struct slm_calib_point *pts = np > 0 ? calloc((size_t)np, sizeof(*pts)) : NULL;
    if (!pts) {
        slm_cli_error(CMD, "cannot compute the curve");
        return SLM_EXIT_ERROR;
    }
    slm_calib_curve(d->conf, d->correct, NULL, d->cost, d->n, &cp, pts, (size_t)np);
    struct slm_calib_point chosen, oracle;
    int rc = slm_calib_choose(d->conf, d->correct, NULL, d->cost, d->n, &cp, &chosen, &oracle);
    size_t n_ok = 0;
    for (size_t i = 0; i < d->n; i++) {
        n_ok += d->correct[i];
    }
    printf("rows %zu, local accuracy %.1f%%, AUROC %.3f, ECE %.3f, cloud accuracy %.1f%%\n", d->n,
           100.0 * (double)n_ok / (double)d->n, slm_calib_auroc(d->conf, d->correct, d->n),
           slm_calib_ece(d->conf, d->correct, d->n, 10), 100 * a->cloud_accuracy);
    print_curve(pts, (size_t)np);
    printf("oracle: escalates %.1f%%, accuracy %.1f%%, cost %.6f\n", 100 * oracle.share_escalated,
           100 * oracle.accuracy, oracle.cost);
    if (rc == SLM_E_NOT_FOUND) {
        printf("no threshold reaches %.1f%%; the most accurate point is used\n", 100 * a->target);
    }
    double th = isinf(chosen.threshold) ? 1.0 : chosen.threshold;
    const char *key = cfg->locals[route->local].score_labels ? "label_prob" : "token_mean";
    printf("chosen: %s %.4f: escalates %.1f%%, accuracy %.1f%% (at least %.1f%% with confidence "
           "%.2f), cost %.6f\n",
           key, th, 100 * chosen.share_escalated, 100 * chosen.accuracy, 100 * chosen.accuracy_low,
           a->confidence, chosen.cost);
    int code = SLM_EXIT_OK;
    char out[4096];
    if (a->out) {
        snprintf(out, sizeof(out), "%s", a->out);
    } else if (cfg->include_path) {
        snprintf(out, sizeof(out), "%s", cfg->include_path);
    } else {
        slm_path_join(out, sizeof(out), cfg->dir, "thresholds.yaml");
    }
    char comment[512];
    snprintf(comment, sizeof(comment),
             "written by slm route calibrate: target accuracy %.4f on %zu rows of %s", a->target,
             d->n, a->data);
    struct slm_err err = {0};
    if (write_thresholds(out, route->name, key, th, comment, &err) != SLM_OK) {
        code = slm_cli_fail(CMD, err.code, &err);
    } else {
        printf("wrote %s%s\n", out,
               cfg->include_path ? "" : " (add `include: thresholds.yaml` to router.yaml)");
    }
    if (a->svg && write_svg(a->svg, pts, (size_t)np, &chosen) != SLM_OK) {
        slm_cli_error(CMD, "cannot write %s", a->svg);
        code = SLM_EXIT_ERROR;
    }
    free(pts);
    return code;
}

static int calibrate(int argc, char **argv) {
    struct calib_args a = {.cloud_accuracy = 0.92, .target = NAN, .confidence = 0.95};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (slm_cli_is_help(f)) {
            usage();
            return SLM_EXIT_OK;
        }
        if (f[0] != '-') {
            slm_cli_error(CMD, "unexpected argument '%s' (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            slm_cli_error(CMD, "%s needs a value (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(f, "--router") == 0) {
            a.router = v;
        } else if (strcmp(f, "--data") == 0) {
            a.data = v;
        } else if (strcmp(f, "--route") == 0) {
            a.route = v;
        } else if (strcmp(f, "--out") == 0) {
            a.out = v;
        } else if (strcmp(f, "--svg") == 0) {
            a.svg = v;
        } else if (strcmp(f, "--target-accuracy") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1, &a.target);
        } else if (strcmp(f, "--cloud-accuracy") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1, &a.cloud_accuracy);
        } else if (strcmp(f, "--confidence") == 0) {
            ok = slm_cli_float(CMD, f, v, 0.5, 0.9999, &a.confidence);
        } else if (strcmp(f, "--limit") == 0) {
            ok = slm_cli_int(CMD, f, v, 1, 1000000000, &a.limit);
        } else {
            slm_cli_error(CMD, "unknown option '%s' (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (!ok) {
            return SLM_EXIT_USAGE;
        }
    }
    if (!a.router || !a.data || isnan(a.target)) {
        slm_cli_error(CMD, "calibrate needs --router, --data and --target-accuracy");
        return SLM_EXIT_USAGE;
    }
    struct slm_router_params p = slm_router_params_default();
    struct slm_router *r = NULL;
    struct slm_err err = {0};
    int rc = slm_router_load(a.router, &p, &r, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    const struct slm_router_config *cfg = slm_router_get_config(r);
    const struct slm_router_route *route =
        a.route ? slm_router_config_route(cfg, a.route) : &cfg->routes[0];
    int code = SLM_EXIT_OK;
    if (!route) {
        slm_cli_error(CMD, "no route named '%s' in %s", a.route, a.router);
        code = SLM_EXIT_NOT_FOUND;
    } else if (route->n_escalate == 0) {
        slm_cli_error(CMD, "route '%s' has no upstream to escalate to", route->name);
        code = SLM_EXIT_USAGE;
    }
    struct calib_data d = {0};
    if (code == SLM_EXIT_OK) {
        slm_cli_trap_signals();
        code = calib_collect(r, &a, route, &d);
    }
    if (code == SLM_EXIT_OK) {
        code = calib_report(&a, cfg, route, &d);
    }
    free(d.conf);
    free(d.cost);
    free(d.correct);
    slm_router_free(r);
    return code;
}

/* ---------------------------------------------------------------- entry */

static int run(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "calibrate") == 0) {
        return calibrate(argc - 1, argv + 1);
    }
    const char *router = NULL, *in = NULL, *out = NULL;
    bool fail_bad = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (slm_cli_is_help(f)) {
            usage();
            return SLM_EXIT_OK;
        }
        bool has_val = i + 1 < argc;
        if ((strcmp(f, "--router") == 0 || strcmp(f, "-o") == 0 || strcmp(f, "--output") == 0 ||
             strcmp(f, "--on-error") == 0) &&
            !has_val) {
            slm_cli_error(CMD, "%s needs a value", f);
            return SLM_EXIT_USAGE;
        }
        if (strcmp(f, "--router") == 0) {
            router = argv[++i];
        } else if (strcmp(f, "-o") == 0 || strcmp(f, "--output") == 0) {
            out = argv[++i];
        } else if (strcmp(f, "--on-error") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "skip") != 0 && strcmp(v, "fail") != 0) {
                slm_cli_error(CMD, "--on-error expects skip or fail, got '%s'", v);
                return SLM_EXIT_USAGE;
            }
            fail_bad = v[0] == 'f';
        } else if (f[0] == '-' && f[1] != '\0') {
            slm_cli_error(CMD, "unknown option '%s' (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        } else if (!in) {
            in = f;
        } else {
            slm_cli_error(CMD, "unexpected argument '%s'", f);
            return SLM_EXIT_USAGE;
        }
    }
    if (!router || !in || !out) {
        slm_cli_error(CMD, "needs --router ROUTER.yaml IN.jsonl -o OUT.jsonl (see --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_router_params p = slm_router_params_default();
    struct batch b;
    memset(&b, 0, sizeof(b));
    struct slm_err err = {0};
    int rc = slm_router_load(router, &p, &b.r, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    slm_cli_trap_signals();
    int code = batch_run(&b, in, out, fail_bad);
    slm_router_free(b.r);
    return code;
}

const struct slm_cli_command slm_cli_cmd_route = {
    "route", "Answer a JSONL batch through the small-first router, or calibrate it", run, 58};
