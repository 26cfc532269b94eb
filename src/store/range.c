/*
 * store/range.c - what a resumed download does with the answer to its Range
 * request (store/internal.h): pure, so tests/fuzz/fuzz_pull_range.c drives
 * it without a server. pull.c asks it once per transfer, at the first byte.
 */
#include "store/internal.h"

#include <string.h>
#include <strings.h>

/* 1*DIGIT at *p, no overflow; advances *p. */
static bool parse_digits(const char **p, const char *end, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
        s++;
    }
    if (s == *p) {
        return false;
    }
    *p = s;
    *out = v;
    return true;
}

int slm__content_range_parse(const char *value, size_t len, uint64_t *first, uint64_t *last,
                             uint64_t *complete) {
    if (!value) {
        return SLM_E_INVALID;
    }
    struct slm_str s = slm_str_trim(slm_str_n(value, len));
    const char *p = s.ptr, *end = s.ptr + s.len;
    if (s.len < 6 || strncasecmp(p, "bytes ", 6) != 0) {
        return SLM_E_INVALID;
    }
    p += 6;
    uint64_t a, b, c = SLM_RANGE_UNKNOWN;
    if (!parse_digits(&p, end, &a) || p == end || *p++ != '-' || !parse_digits(&p, end, &b) ||
        p == end || *p++ != '/') {
        return SLM_E_INVALID;
    }
    if (p < end && *p == '*' && p + 1 == end) {
        p++;
    } else if (!parse_digits(&p, end, &c) || c == SLM_RANGE_UNKNOWN) {
        return SLM_E_INVALID;
    }
    if (p != end || b < a || (c != SLM_RANGE_UNKNOWN && b >= c)) {
        return SLM_E_INVALID;
    }
    *first = a;
    *last = b;
    *complete = c;
    return SLM_OK;
}

enum slm__range_action slm__range_check(uint64_t offset, long status, const char *content_range,
                                        size_t len, uint64_t total) {
    if (status != 206) {
        /* any other success carries the whole file */
        return offset == 0 ? SLM__RANGE_APPEND : SLM__RANGE_RESTART;
    }
    uint64_t first, last, complete;
    if (slm__content_range_parse(content_range, len, &first, &last, &complete) != SLM_OK ||
        (total && complete != SLM_RANGE_UNKNOWN && complete != total) || (total && last >= total)) {
        return SLM__RANGE_REJECT; /* not the file we asked for, or not a range we can place */
    }
    if (first == offset) {
        return SLM__RANGE_APPEND;
    }
    return first == 0 ? SLM__RANGE_RESTART : SLM__RANGE_REJECT;
}
