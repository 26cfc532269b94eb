/*
 * liquid/errors.c - line/column of a source offset and the
 * "name:line:col: message" form of parse and render errors. Positions are
 * kept as byte offsets everywhere else; lines are counted only here, when a
 * message is made.
 */
#include "liquid/errors.h"

#include <stdarg.h>
#include <stdio.h>

void slm__lq_linecol(const char *src, size_t len, size_t pos, int *line, int *col) {
    int l = 1;
    size_t ls = 0;
    if (pos > len) {
        pos = len;
    }
    for (size_t i = 0; i < pos; i++) {
        if (src[i] == '\n') {
            l++;
            ls = i + 1;
        }
    }
    *line = l;
    *col = (int)(pos - ls) + 1;
}

int slm__lq_errf(struct slm_err *err, int code, const char *name, const char *src, size_t len,
                 size_t pos, const char *fmt, ...) {
    if (!err) {
        return code;
    }
    int line, col;
    slm__lq_linecol(src, len, pos, &line, &col);
    char msg[224];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return slm_err_set(err, code, "%s:%d:%d: %s", name ? name : "template", line, col, msg);
}
