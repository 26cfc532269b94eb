/*
 * liquid/errors.h - positions in a unit's source and the
 * "name:line:col: message" errors that the parser and the renderer report
 * (private to the Liquid engine). Depends on base only.
 */
#ifndef SLM_LIQUID_ERRORS_H
#define SLM_LIQUID_ERRORS_H

#include "slm/base.h"

#include <stddef.h>

/* Line (1-based) and column (1-based, bytes) of byte offset `pos` in `src`
 * (`len` bytes; a `pos` past the end is taken as the end). */
void slm__lq_linecol(const char *src, size_t len, size_t pos, int *line, int *col);

/* Sets `err` (may be NULL) to "name:line:col: <fmt>" for byte offset `pos` in
 * `src` ("template" when `name` is NULL). Returns `code`. */
int slm__lq_errf(struct slm_err *err, int code, const char *name, const char *src, size_t len,
                 size_t pos, const char *fmt, ...) SLM_PRINTF(7, 8);

#endif /* SLM_LIQUID_ERRORS_H */
