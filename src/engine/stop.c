/*
 * engine/stop.c - releases streamed text safely: never half a UTF-8 code
 * point, never the beginning of what may turn out to be a stop string.
 */
#include "slm/engine.h"

#include <string.h>

void slm_stop_filter_init(struct slm_stop_filter *f, const char *const *stop, size_t n_stop) {
    f->stop = stop;
    f->n_stop = n_stop;
    slm_buf_init(&f->pending, 0);
    f->stopped = false;
}

void slm_stop_filter_free(struct slm_stop_filter *f) {
    slm_buf_free(&f->pending);
}

/* Length of the longest suffix of `s` that is a proper prefix of a stop string. */
static size_t partial_stop_len(const struct slm_stop_filter *f, struct slm_str s) {
    size_t best = 0;
    for (size_t i = 0; i < f->n_stop; i++) {
        size_t sl = strlen(f->stop[i]);
        size_t maxk = SLM_MIN(sl - (sl > 0), s.len);
        for (size_t k = maxk; k > best; k--) {
            if (memcmp(s.ptr + s.len - k, f->stop[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

int slm_stop_filter_push(struct slm_stop_filter *f, const char *p, size_t n, struct slm_buf *out) {
    if (f->stopped) {
        return SLM_OK;
    }
    int rc = slm_buf_append(&f->pending, p, n);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_str pend = slm_buf_str(&f->pending);
    /* A full match: release what precedes the earliest one, drop the rest. */
    size_t cut = SIZE_MAX;
    for (size_t i = 0; i < f->n_stop; i++) {
        if (!f->stop[i][0]) {
            continue;
        }
        size_t at = slm_str_find(pend, slm_str_c(f->stop[i]), 0);
        cut = SLM_MIN(cut, at);
    }
    if (cut != SIZE_MAX) {
        rc = slm_buf_append(out, pend.ptr, cut);
        slm_buf_clear(&f->pending);
        f->stopped = true;
        return rc;
    }
    size_t hold = partial_stop_len(f, pend);
    size_t release = pend.len - hold;
    release = slm_utf8_complete_len(pend.ptr, release);
    if (release > 0) {
        rc = slm_buf_append(out, pend.ptr, release);
        slm_buf_consume(&f->pending, release);
    }
    return rc;
}

int slm_stop_filter_flush(struct slm_stop_filter *f, struct slm_buf *out) {
    if (f->stopped) {
        return SLM_OK;
    }
    int rc = slm_buf_append(out, f->pending.ptr ? f->pending.ptr : "", f->pending.len);
    slm_buf_clear(&f->pending);
    return rc;
}
