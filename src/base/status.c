/*
 * status.c - status codes and the optional error-detail struct.
 */
#include "slm/base.h"

#include <stdio.h>
#include <string.h>

const char *slm_strerror(int code) {
    switch (code) {
    case SLM_OK: return "success";
    case SLM_E_NOMEM: return "out of memory";
    case SLM_E_INVALID: return "invalid argument";
    case SLM_E_TOO_LARGE: return "too large";
    case SLM_E_IO: return "input/output error";
    case SLM_E_NOT_FOUND: return "not found";
    case SLM_E_UPSTREAM: return "upstream error";
    case SLM_E_ABORTED: return "aborted";
    case SLM_E_UNSUPPORTED: return "not supported";
    case SLM_E_EXISTS: return "already exists";
    case SLM_E_CORRUPT: return "corrupt data";
    case SLM_E_OVERFLOW: return "context overflow";
    case SLM_E_LIMIT: return "resource limit reached";
    case SLM_E_TIMEOUT: return "timed out";
    case SLM_E_INCOMPLETE: return "incomplete output";
    case SLM_E_BACKEND: return "backend error";
    default: return "unknown error";
    }
}

int slm_err_set(struct slm_err *err, int code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

int slm_err_prefix(struct slm_err *err, const char *fmt, ...) {
    if (!err) {
        return SLM_E_INVALID;
    }
    char prefix[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    /* Truncation is acceptable: the message stays NUL-terminated. */
    char old[sizeof(err->msg)];
    memcpy(old, err->msg, sizeof(old));
    size_t lp = strlen(prefix);
    size_t lo = strnlen(old, sizeof(old) - 1);
    size_t cap = sizeof(err->msg) - 1;
    size_t n = 0;
    memcpy(err->msg, prefix, SLM_MIN(lp, cap));
    n = SLM_MIN(lp, cap);
    if (n + 2 <= cap) {
        err->msg[n++] = ':';
        err->msg[n++] = ' ';
    }
    size_t take = SLM_MIN(lo, cap - n);
    memcpy(err->msg + n, old, take);
    err->msg[n + take] = '\0';
    return err->code;
}

void slm_err_clear(struct slm_err *err) {
    if (err) {
        err->code = SLM_OK;
        err->msg[0] = '\0';
    }
}
