/*
 * fuzz_pull_range.c - libFuzzer harness for what `slm pull` does with the
 * answer to a resumed download (store/range.c): the Content-Range parser and
 * the decision to append, restart or reject.
 *
 * Input: 3 bytes of partial-file size (0 = no Range asked), 1 byte that picks
 * the status (206, 200, 203, 204), 3 bytes of expected total (0 = unknown),
 * then the Content-Range value. Invariants: a parsed range is ordered and
 * inside its complete length and reads back from its canonical form; bytes
 * are appended only where they continue the file (a 206 whose range starts
 * at the file's size and fits the total, or a whole file when nothing was
 * kept); a 206 is never taken for the whole file unless it starts at 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

static uint64_t u24(const uint8_t *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16;
}

static void check_parse(const char *v, size_t len, uint64_t *first, uint64_t *last,
                        uint64_t *complete, bool *ok) {
    *ok = slm__content_range_parse(v, len, first, last, complete) == SLM_OK;
    if (!*ok) {
        return;
    }
    if (*first > *last || (*complete != SLM_RANGE_UNKNOWN && *last >= *complete)) {
        abort();
    }
    char canon[96];
    if (*complete == SLM_RANGE_UNKNOWN) {
        snprintf(canon, sizeof(canon), "bytes %llu-%llu/*", (unsigned long long)*first,
                 (unsigned long long)*last);
    } else {
        snprintf(canon, sizeof(canon), "bytes %llu-%llu/%llu", (unsigned long long)*first,
                 (unsigned long long)*last, (unsigned long long)*complete);
    }
    uint64_t a, b, c;
    if (slm__content_range_parse(canon, strlen(canon), &a, &b, &c) != SLM_OK || a != *first ||
        b != *last || c != *complete) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const long statuses[] = {206, 200, 203, 204};
    if (size < 7) {
        return 0;
    }
    uint64_t offset = u24(data);
    long status = statuses[data[3] % 4];
    uint64_t total = u24(data + 4);
    const char *v = (const char *)data + 7;
    size_t len = size - 7;
    uint64_t first = 0, last = 0, complete = 0;
    bool ok;
    check_parse(v, len, &first, &last, &complete, &ok);
    enum slm__range_action act = slm__range_check(offset, status, v, len, total);
    bool fits =
        ok && (!total || ((complete == SLM_RANGE_UNKNOWN || complete == total) && last < total));
    switch (act) {
    case SLM__RANGE_APPEND:
        if (status == 206 ? !(fits && first == offset) : offset != 0) {
            abort();
        }
        break;
    case SLM__RANGE_RESTART:
        if (status == 206 ? !(fits && first == 0 && offset != 0) : offset == 0) {
            abort();
        }
        break;
    case SLM__RANGE_REJECT:
        if (status != 206 || (fits && (first == offset || first == 0))) {
            abort();
        }
        break;
    default: abort();
    }
    /* No Content-Range: a 206 is never placed. */
    if (slm__range_check(offset, 206, NULL, 0, total) != SLM__RANGE_REJECT) {
        abort();
    }
    /* The answer a correct server gives is appended. */
    if (total == 0 || offset < total) {
        char good[96];
        uint64_t end = total ? total - 1 : offset + 99;
        snprintf(good, sizeof(good), "bytes %llu-%llu/%llu", (unsigned long long)offset,
                 (unsigned long long)end, (unsigned long long)(total ? total : end + 1));
        if (slm__range_check(offset, 206, good, strlen(good), total) != SLM__RANGE_APPEND) {
            abort();
        }
    }
    return 0;
}
