/*
 * tune/report.c - the loss curves of a run as a self-contained SVG chart
 * (training loss per step, validation loss at its steps), readable in any
 * browser; no scripts, no external fonts.
 */
#include "slm/tune.h"

#include <math.h>
#include <string.h>

#define W 720.0
#define H 360.0
#define ML 72.0 /* margins */
#define MR 20.0
#define MT 30.0
#define MB 45.0

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

static double px(double step, double n_steps) {
    return ML + (W - ML - MR) * (n_steps > 0 ? step / n_steps : 0);
}

static double py(double v, struct range r) {
    return MT + (H - MT - MB) * (1.0 - (v - r.lo) / (r.hi - r.lo));
}

static int axes(struct slm_buf *b, struct range r, double n_steps) {
    int rc = slm_buf_printf(b,
                            "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' "
                            "stroke='#999'/>\n",
                            ML, MT, W - ML - MR, H - MT - MB);
    for (int k = 0; k <= 4 && rc == SLM_OK; k++) {
        double v = r.lo + (r.hi - r.lo) * k / 4.0, y = py(v, r);
        rc = slm_buf_printf(b,
                            "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#eee'/>"
                            "<text x='%.0f' y='%.1f' text-anchor='end'>%.3g</text>\n",
                            ML, W - MR, y, y, ML - 6, y + 4, v);
    }
    for (int k = 0; k <= 4 && rc == SLM_OK; k++) {
        double s = n_steps * k / 4.0;
        rc = slm_buf_printf(b, "<text x='%.1f' y='%.0f' text-anchor='middle'>%.0f</text>\n",
                            px(s, n_steps), H - MB + 18, s);
    }
    if (rc == SLM_OK) {
        rc = slm_buf_printf(b,
                            "<text x='%.0f' y='%.0f' text-anchor='middle'>step</text>"
                            "<text x='14' y='%.0f' transform='rotate(-90 14 %.0f)' "
                            "text-anchor='middle'>loss</text>\n",
                            (W + ML) / 2, H - 8, (H - MB + MT) / 2, (H - MB + MT) / 2);
    }
    return rc;
}

static int polyline(struct slm_buf *b, const float *v, const uint32_t *steps, size_t n,
                    double n_steps, struct range r, const char *color) {
    int rc =
        slm_buf_printf(b, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", color);
    for (size_t i = 0; i < n && rc == SLM_OK; i++) {
        if (isfinite(v[i])) {
            double s = steps ? steps[i] : (double)(i + 1);
            rc = slm_buf_printf(b, "%.1f,%.1f ", px(s, n_steps), py(v[i], r));
        }
    }
    return rc ? rc : slm_buf_puts(b, "'/>\n");
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
    struct slm_buf b = {0};
    int rc = slm_buf_printf(&b,
                            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
                            "font-family='sans-serif' font-size='12'>\n"
                            "<rect width='100%%' height='100%%' fill='white'/>\n"
                            "<text x='%.0f' y='18'>training loss</text>"
                            "<line x1='%.0f' x2='%.0f' y1='14' y2='14' stroke='#1f77b4' "
                            "stroke-width='2'/>"
                            "<text x='%.0f' y='18'>validation loss</text>"
                            "<line x1='%.0f' x2='%.0f' y1='14' y2='14' stroke='#d62728' "
                            "stroke-width='2'/>\n",
                            W, H, ML + 30, ML, ML + 25, ML + 160, ML + 130, ML + 155);
    rc = rc ? rc : axes(&b, r, n_steps);
    rc = rc ? rc : polyline(&b, train, NULL, n_train, n_steps, r, "#1f77b4");
    rc = rc ? rc : polyline(&b, valid, valid_step, n_valid, n_steps, r, "#d62728");
    rc = rc ? rc : slm_buf_puts(&b, "</svg>\n");
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(path, b.ptr, b.len, err);
    } else {
        rc = slm_err_set(err, rc, "chart too large");
    }
    slm_buf_free(&b);
    return rc;
}
