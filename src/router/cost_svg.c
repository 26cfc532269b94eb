/*
 * router/cost_svg.c - the `slm cost --svg` chart: cumulative actual spend against
 * what the same requests would have cost all-cloud, over time. Hand-written SVG
 * (no dependencies), standalone, viewable in any browser.
 *
 * Pure: renders caller-given points into a caller-given buffer.
 */
#include "slm/ledger.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { SVG_W = 800, SVG_H = 420, LEFT = 80, RIGHT = 24, TOP = 48, BOTTOM = 64 };

#define PLOT_W ((double)(SVG_W - LEFT - RIGHT))
#define PLOT_H ((double)(SVG_H - TOP - BOTTOM))

/* Appends `s` with XML's five special characters escaped. */
static int put_escaped(struct slm_buf *out, const char *s) {
    int rc = SLM_OK;
    for (; rc == SLM_OK && *s; s++) {
        switch (*s) {
        case '&': rc = slm_buf_puts(out, "&amp;"); break;
        case '<': rc = slm_buf_puts(out, "&lt;"); break;
        case '>': rc = slm_buf_puts(out, "&gt;"); break;
        case '"': rc = slm_buf_puts(out, "&quot;"); break;
        case '\'': rc = slm_buf_puts(out, "&apos;"); break;
        default:
            /* Control bytes are not allowed in XML 1.0 text. */
            rc = slm_buf_putc(out, (unsigned char)*s < 0x20 ? ' ' : *s);
        }
    }
    return rc;
}

/* A "nice" axis maximum (1, 2 or 5 times a power of ten) at or above v. */
static double nice_max(double v) {
    if (!(v > 0)) {
        return 1;
    }
    double p = pow(10, floor(log10(v)));
    static const double steps[] = {1, 2, 5, 10};
    for (size_t i = 0; i < SLM_ARRAY_LEN(steps); i++) {
        if (v <= steps[i] * p * (1 + 1e-12)) {
            return steps[i] * p;
        }
    }
    return 10 * p;
}

struct frame {
    double t0, t1; /* ms; doubles so any int64 times subtract safely */
    double ymax;
};

static double px(const struct frame *f, int64_t t) {
    return LEFT + ((double)t - f->t0) / (f->t1 - f->t0) * PLOT_W;
}

static double py(const struct frame *f, double v) {
    return TOP + PLOT_H - v / f->ymax * PLOT_H;
}

static void time_label(int64_t ms, bool with_time, char *out, size_t cap) {
    size_t n = slm_cost_format_day(ms, out, cap);
    if (with_time && n < cap) {
        int64_t in_day = ((ms % 86400000) + 86400000) % 86400000 / 60000;
        snprintf(out + n, cap - n, " %02d:%02d", (int)(in_day / 60), (int)(in_day % 60));
    }
}

static int axes(struct slm_buf *o, const struct frame *f) {
    int rc = slm_buf_printf(o,
                            "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                            "stroke=\"#999\"/>\n",
                            LEFT, TOP, PLOT_W, PLOT_H);
    for (int i = 0; rc == SLM_OK && i <= 5; i++) {
        double v = f->ymax * i / 5, y = py(f, v);
        rc = slm_buf_printf(o,
                            "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                            "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
                            LEFT, y, LEFT + PLOT_W, y, LEFT - 6, y + 4, v);
    }
    bool with_time = f->t1 - f->t0 < 4 * 86400000.0;
    for (int i = 0; rc == SLM_OK && i <= 4; i++) {
        int64_t t = (int64_t)(f->t0 + (f->t1 - f->t0) * i / 4);
        char label[32];
        time_label(t, with_time, label, sizeof(label));
        /* The end labels stay inside the picture. */
        const char *anchor = i == 0 ? "start" : i == 4 ? "end" : "middle";
        rc = slm_buf_printf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">%s</text>\n", px(f, t),
                            SVG_H - BOTTOM + 20, anchor, label);
    }
    return rc;
}

/* One polyline; `cloud` picks the all-cloud series, else actual spend. Both start at
 * zero at the first point's time, so the area between them is the spend avoided. */
static int line(struct slm_buf *o, const struct frame *f, const struct slm_cost_point *pts,
                size_t n, bool cloud, const char *style) {
    int rc = slm_buf_printf(o, "<polyline %s points=\"%.1f,%.1f", style, px(f, pts[0].time_ms),
                            py(f, 0));
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        rc = slm_buf_printf(o, " %.1f,%.1f", px(f, pts[i].time_ms),
                            py(f, cloud ? pts[i].cloud : pts[i].spend));
    }
    return rc ? rc : slm_buf_puts(o, "\"/>\n");
}

static int legend(struct slm_buf *o, const struct slm_cost_point *last) {
    return slm_buf_printf(
        o,
        "<g font-size=\"12\">"
        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#c0392b\" stroke-width=\"2\" "
        "stroke-dasharray=\"6 4\"/><text x=\"%d\" y=\"%d\">all-cloud: %.4f</text>"
        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#2471a3\" stroke-width=\"2\"/>"
        "<text x=\"%d\" y=\"%d\">actual spend: %.4f</text>"
        "<text x=\"%d\" y=\"%d\">avoided: %.4f</text></g>\n",
        LEFT, TOP - 12, LEFT + 24, TOP - 12, LEFT + 30, TOP - 8, last->cloud, LEFT + 190, TOP - 12,
        LEFT + 214, TOP - 12, LEFT + 220, TOP - 8, last->spend, LEFT + 390, TOP - 8,
        last->cloud - last->spend);
}

int slm_cost_svg(const struct slm_cost_point *pts, size_t n, const char *title, struct slm_buf *out,
                 struct slm_err *err) {
    struct frame f = {0, 1, 1};
    if (n > 0) {
        f.t0 = (double)pts[0].time_ms;
        f.t1 = (double)pts[n - 1].time_ms > f.t0 ? (double)pts[n - 1].time_ms : f.t0 + 1;
        f.ymax = nice_max(SLM_MAX(pts[n - 1].cloud, pts[n - 1].spend));
    }
    int rc = slm_buf_printf(out,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
                            "<title>",
                            SVG_W, SVG_H, SVG_W, SVG_H);
    rc = rc ? rc : put_escaped(out, title ? title : "slm cost");
    rc = rc ? rc
            : slm_buf_printf(out,
                             "</title>\n<rect width=\"100%%\" height=\"100%%\" "
                             "fill=\"white\"/>\n<text x=\"%d\" y=\"20\" font-size=\"15\">",
                             LEFT);
    rc = rc ? rc : put_escaped(out, title ? title : "slm cost");
    rc = rc ? rc : slm_buf_puts(out, "</text>\n");
    rc = rc ? rc : axes(out, &f);
    rc = rc ? rc
            : slm_buf_printf(out,
                             "<text x=\"16\" y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" "
                             "text-anchor=\"middle\">cumulative spend</text>\n",
                             TOP + PLOT_H / 2, TOP + PLOT_H / 2);
    if (n == 0) {
        rc = rc ? rc
                : slm_buf_printf(out,
                                 "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no requests "
                                 "in the ledger</text>\n",
                                 LEFT + PLOT_W / 2, TOP + PLOT_H / 2);
    } else {
        rc = rc ? rc
                : line(out, &f, pts, n, true,
                       "fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" "
                       "stroke-dasharray=\"6 4\"");
        rc = rc ? rc
                : line(out, &f, pts, n, false,
                       "fill=\"none\" stroke=\"#2471a3\" stroke-width=\"2\"");
        rc = rc ? rc : legend(out, &pts[n - 1]);
    }
    rc = rc ? rc : slm_buf_puts(out, "</svg>\n");
    if (rc != SLM_OK) {
        return slm_err_set(err, rc, "rendering the chart: %s", slm_strerror(rc));
    }
    return SLM_OK;
}
