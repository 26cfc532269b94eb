/*
 * base/svg.c - the chart writer (slm/svg.h): hand-written SVG appended to a
 * caller's buffer. Layout is fixed on purpose (frame, gridlines along y,
 * labels outside the plot, legend in the band above it) so every chart slm
 * draws looks like the others.
 */
#include "slm/svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The chart with its zero fields given their defaults. */
static struct slm_svg_chart resolved(const struct slm_svg_chart *c) {
    struct slm_svg_chart r = *c;
    if (r.width <= 0 || r.height <= 0) {
        r.width = 720;
        r.height = 400;
    }
    if (!r.margin.left && !r.margin.right && !r.margin.top && !r.margin.bottom) {
        r.margin = (struct slm_svg_margins){72, 20, 48, 56};
    }
    r.font_size = r.font_size > 0 ? r.font_size : 12;
    if (!(r.x.max > r.x.min)) {
        r.x.max = r.x.min + 1;
    }
    if (!(r.y.max > r.y.min)) {
        r.y.max = r.y.min + 1;
    }
    return r;
}

static double plot_w(const struct slm_svg_chart *c) {
    return (double)(c->width - c->margin.left - c->margin.right);
}

static double plot_h(const struct slm_svg_chart *c) {
    return (double)(c->height - c->margin.top - c->margin.bottom);
}

double slm_svg_px(const struct slm_svg_chart *c, double x) {
    struct slm_svg_chart r = resolved(c);
    return r.margin.left + (x - r.x.min) / (r.x.max - r.x.min) * plot_w(&r);
}

double slm_svg_py(const struct slm_svg_chart *c, double y) {
    struct slm_svg_chart r = resolved(c);
    return r.margin.top + plot_h(&r) - (y - r.y.min) / (r.y.max - r.y.min) * plot_h(&r);
}

int slm_svg_escape(struct slm_buf *out, const char *s) {
    int rc = SLM_OK;
    for (; rc == SLM_OK && *s; s++) {
        switch (*s) {
        case '&': rc = slm_buf_puts(out, "&amp;"); break;
        case '<': rc = slm_buf_puts(out, "&lt;"); break;
        case '>': rc = slm_buf_puts(out, "&gt;"); break;
        case '"': rc = slm_buf_puts(out, "&quot;"); break;
        case '\'': rc = slm_buf_puts(out, "&apos;"); break;
        default: rc = slm_buf_putc(out, (unsigned char)*s < 0x20 ? ' ' : *s);
        }
    }
    return rc;
}

int slm_svg_text(struct slm_buf *out, double x, double y, const char *anchor, const char *text) {
    int rc = slm_buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y,
                            anchor ? anchor : "start");
    rc = rc ? rc : slm_svg_escape(out, text);
    return rc ? rc : slm_buf_puts(out, "</text>\n");
}

static void tick_label(const struct slm_svg_axis *a, double v, char *out, size_t cap) {
    if (a->label) {
        a->label(v, out, cap, a->user);
        return;
    }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(out, cap, a->fmt ? a->fmt : "%g", v);
#pragma GCC diagnostic pop
}

static int y_axis(struct slm_buf *o, const struct slm_svg_chart *c) {
    int rc = SLM_OK;
    for (int i = 0; rc == SLM_OK && i <= c->y.ticks && c->y.ticks > 0; i++) {
        double v = c->y.min + (c->y.max - c->y.min) * i / c->y.ticks, y = slm_svg_py(c, v);
        char label[64];
        tick_label(&c->y, v, label, sizeof(label));
        rc =
            slm_buf_printf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>",
                           c->margin.left, y, c->width - c->margin.right, y);
        rc = rc ? rc : slm_svg_text(o, c->margin.left - 6, y + 4, "end", label);
    }
    if (rc == SLM_OK && c->y.title) {
        double mid = c->margin.top + plot_h(c) / 2;
        rc = slm_buf_printf(o,
                            "<text x=\"16\" y=\"%.1f\" transform=\"rotate(-90 16 %.1f)\" "
                            "text-anchor=\"middle\">",
                            mid, mid);
        rc = rc ? rc : slm_svg_escape(o, c->y.title);
        rc = rc ? rc : slm_buf_puts(o, "</text>\n");
    }
    return rc;
}

static int x_axis(struct slm_buf *o, const struct slm_svg_chart *c) {
    int rc = SLM_OK;
    for (int i = 0; rc == SLM_OK && i <= c->x.ticks && c->x.ticks > 0; i++) {
        double v = c->x.min + (c->x.max - c->x.min) * i / c->x.ticks;
        char label[64];
        tick_label(&c->x, v, label, sizeof(label));
        /* The end labels stay inside the picture. */
        const char *anchor = i == 0 ? "start" : i == c->x.ticks ? "end" : "middle";
        rc = slm_svg_text(o, slm_svg_px(c, v), c->height - c->margin.bottom + 18, anchor, label);
    }
    if (rc == SLM_OK && c->x.title) {
        rc = slm_svg_text(o, c->margin.left + plot_w(c) / 2, c->height - 8, "middle", c->x.title);
    }
    return rc;
}

int slm_svg_begin(struct slm_buf *out, const struct slm_svg_chart *chart) {
    struct slm_svg_chart c = resolved(chart);
    int rc = slm_buf_printf(out,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"%d\">\n",
                            c.width, c.height, c.width, c.height, c.font_size);
    if (rc == SLM_OK && c.title) {
        rc = slm_buf_puts(out, "<title>");
        rc = rc ? rc : slm_svg_escape(out, c.title);
        rc = rc ? rc : slm_buf_puts(out, "</title>\n");
    }
    rc = rc ? rc : slm_buf_puts(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    if (rc == SLM_OK && c.title) {
        rc = slm_buf_printf(out, "<text x=\"%d\" y=\"20\" font-size=\"%d\">", c.margin.left,
                            c.font_size + 4);
        rc = rc ? rc : slm_svg_escape(out, c.title);
        rc = rc ? rc : slm_buf_puts(out, "</text>\n");
    }
    rc = rc ? rc
            : slm_buf_printf(out,
                             "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                             "stroke=\"#999\"/>\n",
                             c.margin.left, c.margin.top, plot_w(&c), plot_h(&c));
    rc = rc ? rc : y_axis(out, &c);
    return rc ? rc : x_axis(out, &c);
}

int slm_svg_end(struct slm_buf *out) {
    return slm_buf_puts(out, "</svg>\n");
}

static int stroke(struct slm_buf *out, const struct slm_svg_style *s) {
    int rc = slm_buf_printf(out, "fill=\"none\" stroke=\"%s\" stroke-width=\"%g\"",
                            s && s->color ? s->color : "black", s && s->width > 0 ? s->width : 2.0);
    if (rc == SLM_OK && s && s->dash) {
        rc = slm_buf_printf(out, " stroke-dasharray=\"%s\"", s->dash);
    }
    return rc;
}

int slm_svg_line_begin(struct slm_buf *out, const struct slm_svg_style *s) {
    int rc = slm_buf_puts(out, "<polyline ");
    rc = rc ? rc : stroke(out, s);
    return rc ? rc : slm_buf_puts(out, " points=\"");
}

int slm_svg_line_point(struct slm_buf *out, const struct slm_svg_chart *c, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) {
        return SLM_OK;
    }
    return slm_buf_printf(out, "%.1f,%.1f ", slm_svg_px(c, x), slm_svg_py(c, y));
}

int slm_svg_line_end(struct slm_buf *out) {
    return slm_buf_puts(out, "\"/>\n");
}

int slm_svg_marker(struct slm_buf *out, const struct slm_svg_chart *c, double x, double y, double r,
                   const char *color) {
    return slm_buf_printf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%g\" fill=\"%s\"/>\n",
                          slm_svg_px(c, x), slm_svg_py(c, y), r, color ? color : "black");
}

int slm_svg_bar(struct slm_buf *out, const struct slm_svg_chart *c, double x0, double y0, double x1,
                double y1, const char *color, const char *tip) {
    double px0 = slm_svg_px(c, x0), px1 = slm_svg_px(c, x1);
    double py0 = slm_svg_py(c, y0), py1 = slm_svg_py(c, y1);
    int rc =
        slm_buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"",
                       fmin(px0, px1), fmin(py0, py1), fabs(px1 - px0), fabs(py1 - py0));
    if (rc == SLM_OK) {
        rc = slm_svg_escape(out, color ? color : "black");
    }
    if (rc == SLM_OK && tip) {
        rc = slm_buf_puts(out, "\"><title>");
        rc = rc == SLM_OK ? slm_svg_escape(out, tip) : rc;
        rc = rc == SLM_OK ? slm_buf_puts(out, "</title></rect>\n") : rc;
    } else if (rc == SLM_OK) {
        rc = slm_buf_puts(out, "\"/>\n");
    }
    return rc;
}

int slm_svg_segment(struct slm_buf *out, const struct slm_svg_chart *c, double x0, double y0,
                    double x1, double y1, const struct slm_svg_style *s) {
    int rc = slm_buf_printf(out,
                            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                            "stroke-width=\"%g\" stroke=\"",
                            slm_svg_px(c, x0), slm_svg_py(c, y0), slm_svg_px(c, x1),
                            slm_svg_py(c, y1), s && s->width > 0 ? s->width : 2);
    if (rc == SLM_OK) {
        rc = slm_svg_escape(out, s && s->color ? s->color : "black");
    }
    return rc == SLM_OK ? slm_buf_puts(out, "\"/>\n") : rc;
}

int slm_svg_legend(struct slm_buf *out, const struct slm_svg_chart *chart, double dx,
                   const struct slm_svg_style *s, const char *text) {
    struct slm_svg_chart c = resolved(chart);
    double x = c.margin.left + dx, y = c.margin.top - 12;
    int rc = SLM_OK;
    if (s) {
        rc = slm_buf_printf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" ", x, y,
                            x + 24, y);
        rc = rc ? rc : stroke(out, s);
        rc = rc ? rc : slm_buf_puts(out, "/>");
        x += 30;
    }
    return rc ? rc : slm_svg_text(out, x, y + 4, "start", text);
}

double slm_svg_nice_max(double v) {
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
