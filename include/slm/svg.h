/*
 * slm/svg.h - the one chart writer behind every picture slm draws (`slm cost
 * --svg`, tuning's loss curves, `slm route calibrate --svg`, evaluation
 * reports): a line chart with a frame, gridlines, tick labels, axis titles,
 * series, markers and a legend, written as standalone SVG (no scripts, no
 * external fonts) that any browser shows.
 *
 * What it is not: a plotting library. Two linear axes, one plot area; the
 * caller picks ranges, colours and what to label.
 *
 * Use: fill a struct slm_svg_chart, slm_svg_begin(), draw series with
 * slm_svg_line_begin() / _point() / _end() and anything else, then
 * slm_svg_end(). Everything appends to a caller-owned struct slm_buf and
 * returns SLM_OK or the buffer's error (SLM_E_NOMEM, SLM_E_TOO_LARGE); after
 * an error the buffer holds a partial picture. Text is XML-escaped.
 *
 * Pure: no I/O, no globals; thread-safe on distinct buffers. Part of base: it
 * needs libc only.
 */
#ifndef SLM_SVG_H
#define SLM_SVG_H

#include <stddef.h>

#include "slm/base.h"

/* Writes a tick's label for value `v` (snprintf semantics). */
typedef size_t (*slm_svg_label_fn)(double v, char *out, size_t cap, void *user);

struct slm_svg_axis {
    double min, max; /* the data range across the plot area; max <= min is taken as min + 1 */
    int ticks;       /* labelled positions: ticks + 1 from min to max; 0 = no labels */
    const char *fmt; /* printf format of a label's value, one double ("%.3g"); NULL = "%g" */
    slm_svg_label_fn label; /* when set, writes the labels instead of fmt */
    void *user;             /* passed to label */
    const char *title;      /* axis title; NULL = none */
};

/* Room around the plot area for labels, legend and titles, in px. */
struct slm_svg_margins {
    int left, right, top, bottom;
};

struct slm_svg_chart {
    int width, height;             /* the picture in px; 0 = 720 x 400 */
    struct slm_svg_margins margin; /* all 0: 72, 20, 48, 56 */
    int font_size;                 /* px; 0 = 12 */
    const char *title;             /* heading and <title>; NULL = none */
    struct slm_svg_axis x, y;      /* y gets gridlines at its ticks */
};

/* How a series or a legend swatch is drawn. */
struct slm_svg_style {
    const char *color; /* any SVG colour ("#2471a3") */
    double width;      /* stroke width in px; 0 = 2 */
    const char *dash;  /* stroke-dasharray ("6 4"); NULL = solid */
};

/* The picture's opening: XML declaration, <svg>, <title>, white background,
 * heading, frame, gridlines, tick labels and axis titles. */
int slm_svg_begin(struct slm_buf *out, const struct slm_svg_chart *c) SLM_NODISCARD;
/* Closes the picture ("</svg>\n"). */
int slm_svg_end(struct slm_buf *out) SLM_NODISCARD;

/* Pixel position of a data value along x / y (may fall outside the plot). */
double slm_svg_px(const struct slm_svg_chart *c, double x);
double slm_svg_py(const struct slm_svg_chart *c, double y);

/* A series as one polyline, point by point; points with a non-finite
 * coordinate are left out. */
int slm_svg_line_begin(struct slm_buf *out, const struct slm_svg_style *s) SLM_NODISCARD;
int slm_svg_line_point(struct slm_buf *out, const struct slm_svg_chart *c, double x,
                       double y) SLM_NODISCARD;
int slm_svg_line_end(struct slm_buf *out) SLM_NODISCARD;

/* A filled dot of radius `r` px at a data point. */
int slm_svg_marker(struct slm_buf *out, const struct slm_svg_chart *c, double x, double y, double r,
                   const char *color) SLM_NODISCARD;

/* A filled bar: the rectangle between data points (x0, y0) and (x1, y1) (in
 * any order), with an optional <title> tooltip `tip` (NULL = none). */
int slm_svg_bar(struct slm_buf *out, const struct slm_svg_chart *c, double x0, double y0, double x1,
                double y1, const char *color, const char *tip) SLM_NODISCARD;

/* A straight segment between two data points (error bars, whiskers). */
int slm_svg_segment(struct slm_buf *out, const struct slm_svg_chart *c, double x0, double y0,
                    double x1, double y1, const struct slm_svg_style *s) SLM_NODISCARD;

/* A legend entry in the band above the plot, `dx` px right of its left edge:
 * a swatch in style `s` (NULL = text only), then the text. */
int slm_svg_legend(struct slm_buf *out, const struct slm_svg_chart *c, double dx,
                   const struct slm_svg_style *s, const char *text) SLM_NODISCARD;

/* Text at pixel position (x, y); `anchor` is "start", "middle" or "end". */
int slm_svg_text(struct slm_buf *out, double x, double y, const char *anchor,
                 const char *text) SLM_NODISCARD;

/* Appends `s` with XML's five special characters escaped (control bytes
 * become spaces: XML 1.0 text cannot hold them). */
int slm_svg_escape(struct slm_buf *out, const char *s) SLM_NODISCARD;

/* A round axis maximum at or above v: 1, 2 or 5 times a power of ten (1 when
 * v is not positive). */
double slm_svg_nice_max(double v);

#endif /* SLM_SVG_H */
