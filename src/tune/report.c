/*
 * tune/report.c - the loss curves of a run as a self-contained SVG chart
 * (training loss per step, validation loss at its steps), drawn with the
 * chart writer (slm/svg.h).
 */
#include "slm/tune.h"

#include <math.h>

#include "slm/svg.h"

static const struct slm_svg_style TRAIN = {"#1f77b4", 1.5, NULL};
static const struct slm_svg_style VALID = {"#d62728", 1.5, NULL};

struct range {
    double lo, hi;
};

static void extend(struct range *r, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isfinite(v[i])) {
            r->lo = v[i] < r->lo ? v[i] : r->lo;
            r->hi = v[i] > r->hi ? v[i] : r->hi;
        }
    }
}

/* One curve; `steps` NULL means the values are steps 1, 2, ... */
static int curve(struct slm_buf *b, const struct slm_svg_chart *c, const float *v,
                 const uint32_t *steps, size_t n, const struct slm_svg_style *s) {
    int rc = slm_svg_line_begin(b, s);
    for (size_t i = 0; i < n && rc == SLM_OK; i++) {
        rc = slm_svg_line_point(b, c, steps ? steps[i] : (double)(i + 1), v[i]);
    }
    return rc ? rc : slm_svg_line_end(b);
}

int slm_tune_write_svg(const char *path, const float *train, size_t n_train, const float *valid,
                       const uint32_t *valid_step, size_t n_valid, struct slm_err *err) {
    struct range r = {INFINITY, -INFINITY};
    extend(&r, train, n_train);
    extend(&r, valid, n_valid);
    if (!isfinite(r.lo)) {
        r.lo = 0;
        r.hi = 1;
    }
    if (r.hi - r.lo < 1e-6) {
        r.hi = r.lo + 1;
    }
    double n_steps = (double)n_train;
    for (size_t i = 0; i < n_valid; i++) {
        n_steps = valid_step[i] > n_steps ? valid_step[i] : n_steps;
    }
    struct slm_svg_chart c = {
        .width = 720,
        .height = 360,
        .margin = {72, 20, 36, 45},
        .x = {.min = 0,
              .max = n_steps > 0 ? n_steps : 1,
              .ticks = 4,
              .fmt = "%.0f",
              .title = "step"},
        .y = {.min = r.lo, .max = r.hi, .ticks = 4, .fmt = "%.3g", .title = "loss"}};
    struct slm_buf b = {0};
    int rc = slm_svg_begin(&b, &c);
    rc = rc ? rc : slm_svg_legend(&b, &c, 0, &TRAIN, "training loss");
    rc = rc ? rc : slm_svg_legend(&b, &c, 130, &VALID, "validation loss");
    rc = rc ? rc : curve(&b, &c, train, NULL, n_train, &TRAIN);
    rc = rc ? rc : curve(&b, &c, valid, valid_step, n_valid, &VALID);
    rc = rc ? rc : slm_svg_end(&b);
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(path, b.ptr, b.len, err);
    } else {
        rc = slm_err_set(err, rc, "chart too large");
    }
    slm_buf_free(&b);
    return rc;
}
