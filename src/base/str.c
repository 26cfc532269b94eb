/*
 * str.c - string views (struct slm_str) and capped owned buffers (struct slm_buf).
 */
#include "slm/base.h"

#include <stdlib.h>
#include <string.h>

struct slm_str slm_str_c(const char *s) {
    return (struct slm_str){s ? s : "", s ? strlen(s) : 0};
}

struct slm_str slm_str_n(const char *p, size_t n) {
    return (struct slm_str){p, n};
}

bool slm_str_eq(struct slm_str a, struct slm_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool slm_str_eq_c(struct slm_str a, const char *s) {
    return slm_str_eq(a, slm_str_c(s));
}

bool slm_str_starts_with(struct slm_str s, struct slm_str prefix) {
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.ptr, prefix.ptr, prefix.len) == 0);
}

bool slm_str_ends_with(struct slm_str s, struct slm_str suffix) {
    return s.len >= suffix.len &&
           (suffix.len == 0 || memcmp(s.ptr + s.len - suffix.len, suffix.ptr, suffix.len) == 0);
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

struct slm_str slm_str_trim(struct slm_str s) {
    while (s.len > 0 && is_space(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && is_space(s.ptr[s.len - 1])) {
        s.len--;
    }
    return s;
}

struct slm_str slm_str_sub(struct slm_str s, size_t off, size_t len) {
    if (off > s.len) {
        off = s.len;
    }
    if (len > s.len - off) {
        len = s.len - off;
    }
    return (struct slm_str){s.ptr + off, len};
}

size_t slm_str_find_char(struct slm_str s, char c, size_t from) {
    if (from >= s.len) {
        return SIZE_MAX;
    }
    const char *p = memchr(s.ptr + from, c, s.len - from);
    return p ? (size_t)(p - s.ptr) : SIZE_MAX;
}

size_t slm_str_find(struct slm_str s, struct slm_str needle, size_t from) {
    if (needle.len == 0) {
        return from <= s.len ? from : SIZE_MAX;
    }
    while (from + needle.len <= s.len) {
        size_t i = slm_str_find_char(s, needle.ptr[0], from);
        if (i == SIZE_MAX || i + needle.len > s.len) {
            return SIZE_MAX;
        }
        if (memcmp(s.ptr + i, needle.ptr, needle.len) == 0) {
            return i;
        }
        from = i + 1;
    }
    return SIZE_MAX;
}

static char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool slm_str_eq_nocase(struct slm_str a, struct slm_str b) {
    if (a.len != b.len) {
        return false;
    }
    for (size_t i = 0; i < a.len; i++) {
        if (lower(a.ptr[i]) != lower(b.ptr[i])) {
            return false;
        }
    }
    return true;
}

bool slm_str_contains_nocase(struct slm_str hay, struct slm_str needle) {
    if (needle.len == 0) {
        return true;
    }
    for (size_t i = 0; i + needle.len <= hay.len; i++) {
        if (slm_str_eq_nocase(slm_str_n(hay.ptr + i, needle.len), needle)) {
            return true;
        }
    }
    return false;
}

char *slm_str_dup(struct slm_str s) {
    char *p = malloc(s.len + 1);
    if (!p) {
        return NULL;
    }
    if (s.len) {
        memcpy(p, s.ptr, s.len);
    }
    p[s.len] = '\0';
    return p;
}

/* ---------------------------------------------------------------- buffers */

void slm_buf_init(struct slm_buf *b, size_t max) {
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SLM_BUF_DEFAULT_MAX;
}

void slm_buf_free(struct slm_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

void slm_buf_clear(struct slm_buf *b) {
    b->len = 0;
    if (b->ptr) {
        b->ptr[0] = '\0';
    }
}

int slm_buf_reserve(struct slm_buf *b, size_t extra) {
    size_t max = b->max ? b->max : SLM_BUF_DEFAULT_MAX;
    if (extra > max || b->len > max - extra) {
        return SLM_E_TOO_LARGE;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return SLM_OK;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    if (cap > max + 1) {
        cap = max + 1;
    }
    char *p = realloc(b->ptr, cap);
    if (!p) {
        return SLM_E_NOMEM;
    }
    b->ptr = p;
    b->cap = cap;
    return SLM_OK;
}

int slm_buf_append(struct slm_buf *b, const void *p, size_t n) {
    int rc = slm_buf_reserve(b, n);
    if (rc != SLM_OK) {
        return rc;
    }
    if (n) {
        memcpy(b->ptr + b->len, p, n);
    }
    b->len += n;
    b->ptr[b->len] = '\0';
    return SLM_OK;
}

int slm_buf_append_str(struct slm_buf *b, struct slm_str s) {
    return slm_buf_append(b, s.ptr, s.len);
}

int slm_buf_puts(struct slm_buf *b, const char *s) {
    return slm_buf_append(b, s, strlen(s));
}

int slm_buf_putc(struct slm_buf *b, char c) {
    return slm_buf_append(b, &c, 1);
}

int slm_buf_vprintf(struct slm_buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return SLM_E_INVALID;
    }
    if ((size_t)n < sizeof(small)) {
        return slm_buf_append(b, small, (size_t)n);
    }
    int rc = slm_buf_reserve(b, (size_t)n);
    if (rc != SLM_OK) {
        return rc;
    }
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return SLM_OK;
}

int slm_buf_printf(struct slm_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = slm_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *slm_buf_take(struct slm_buf *b) {
    char *p = b->ptr;
    if (!p) {
        p = malloc(1);
        if (!p) {
            return NULL;
        }
        p[0] = '\0';
    }
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void slm_buf_consume(struct slm_buf *b, size_t n) {
    if (n >= b->len) {
        slm_buf_clear(b);
        return;
    }
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
    b->ptr[b->len] = '\0';
}

size_t slm_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) {
        return SIZE_MAX;
    }
    size_t row[41];
    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            row[j] = SLM_MIN(SLM_MIN(row[j] + 1, row[j - 1] + 1), prev + cost);
            prev = cur;
        }
    }
    return row[lb];
}

const char *slm_closest_name(const char *name, const char *const *names, size_t n,
                             size_t max_dist) {
    const char *best = NULL;
    size_t best_d = max_dist + 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = slm_edit_distance(name, names[i]);
        if (d > 0 && d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best;
}
