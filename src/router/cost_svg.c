/*
 * router/cost_svg.c - the `slm cost --svg` chart: cumulative actual spend against
 * what the same requests would have cost all-cloud, over time, drawn with the
 * chart writer (slm/svg.h).
 *
 * Pure: renders caller-given points into a caller-given buffer.
 */
#include "slm/ledger.h"

#include <stdio.h>

#include "slm/svg.h"

static const struct slm_svg_style CLOUD = {"#c0392b", 2, "6 4"};
static const struct slm_svg_style SPEND = {"#2471a3", 2, NULL};

/* Dates along x; with the time of day too when the span is under four days. */
static size_t time_label(double v, char *out, size_t cap, void *user) {
    const bool with_time = *(const bool *)user;
    int64_t ms = (int64_t)v;
    size_t n = slm_cost_format_day(ms, out, cap);
    if (with_time && n < cap) {
        int64_t in_day = ((ms % 86400000) + 86400000) % 86400000 / 60000;
        n += (size_t)snprintf(out + n, cap - n, " %02d:%02d", (int)(in_day / 60),
                              (int)(in_day % 60));
    }
    return n;
}

/* One series; `cloud` picks the all-cloud one, else actual spend. Both start at
 * zero at the first point's time, so the area between them is the spend avoided. */
static int series(struct slm_buf *o, const struct slm_svg_chart *c,
                  const struct slm_cost_point *pts, size_t n, bool cloud) {
    int rc = slm_svg_line_begin(o, cloud ? &CLOUD : &SPEND);
    rc = rc ? rc : slm_svg_line_point(o, c, (double)pts[0].time_ms, 0);
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        rc = slm_svg_line_point(o, c, (double)pts[i].time_ms, cloud ? pts[i].cloud : pts[i].spend);
    }
    return rc ? rc : slm_svg_line_end(o);
}

static int legend(struct slm_buf *o, const struct slm_svg_chart *c,
                  const struct slm_cost_point *last) {
    char text[3][64];
    snprintf(text[0], sizeof(text[0]), "all-cloud: %.4f", last->cloud);
    snprintf(text[1], sizeof(text[1]), "actual spend: %.4f", last->spend);
    snprintf(text[2], sizeof(text[2]), "avoided: %.4f", last->cloud - last->spend);
    int rc = slm_svg_legend(o, c, 0, &CLOUD, text[0]);
    rc = rc ? rc : slm_svg_legend(o, c, 190, &SPEND, text[1]);
    return rc ? rc : slm_svg_legend(o, c, 390, NULL, text[2]);
}

int slm_cost_svg(const struct slm_cost_point *pts, size_t n, const char *title, struct slm_buf *out,
                 struct slm_err *err) {
    double t0 = 0, t1 = 1, ymax = 1; /* ms as doubles: any int64 times subtract safely */
    if (n > 0) {
        t0 = (double)pts[0].time_ms;
        t1 = (double)pts[n - 1].time_ms > t0 ? (double)pts[n - 1].time_ms : t0 + 1;
        ymax = slm_svg_nice_max(SLM_MAX(pts[n - 1].cloud, pts[n - 1].spend));
    }
    bool with_time = t1 - t0 < 4 * 86400000.0;
    struct slm_svg_chart c = {
        .width = 800,
        .height = 420,
        .margin = {80, 24, 48, 64},
        .font_size = 11,
        .title = title ? title : "slm cost",
        .x = {.min = t0, .max = t1, .ticks = 4, .label = time_label, .user = &with_time},
        .y = {.min = 0, .max = ymax, .ticks = 5, .fmt = "%.4g", .title = "cumulative spend"}};
    int rc = slm_svg_begin(out, &c);
    if (n == 0) {
        rc = rc ? rc
                : slm_svg_text(out, slm_svg_px(&c, 0.5), slm_svg_py(&c, 0.5), "middle",
                               "no requests in the ledger");
    } else {
        rc = rc ? rc : series(out, &c, pts, n, true);
        rc = rc ? rc : series(out, &c, pts, n, false);
        rc = rc ? rc : legend(out, &c, &pts[n - 1]);
    }
    rc = rc ? rc : slm_svg_end(out);
    if (rc != SLM_OK) {
        return slm_err_set(err, rc, "rendering the chart: %s", slm_strerror(rc));
    }
    return SLM_OK;
}
