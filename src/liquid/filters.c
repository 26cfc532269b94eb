/*
 * liquid/filters.c - the filter table and the string filters.
 *
 * Semantics follow Shopify Liquid 5 (Ruby) unless docs/templates.md says
 * otherwise: inputs and arguments are converted with to_s, lengths and
 * offsets count characters (UTF-8 code points), case mapping covers Latin,
 * Greek, Cyrillic and Armenian letters. Results are built in the render's
 * scratch memory.
 */
#include "liquid/filters.h"

#include <string.h>

#include "liquid/date.h"

/* ---------------------------------------------------------------- table */

static int pass_through(const struct lq_fenv *fe, const struct lq_filter *f, struct lq_val *v,
                        const struct lq_val *args) {
    (void)fe;
    (void)f;
    (void)v;
    (void)args;
    return SLM_OK;
}

#define F(n, lo, hi)                                                                               \
    { #n, lo, hi, false, slm__lqf_##n }

/* Sorted by name after the first entry (the pass-through for unknown filters
 * in lax mode). */
const struct lq_filter_def slm__lq_filters[] = {
    {"(unknown)", 0, 0, true, pass_through},
    F(abs, 0, 0),
    F(append, 1, 1),
    F(at_least, 1, 1),
    F(at_most, 1, 1),
    F(base64_decode, 0, 0),
    F(base64_encode, 0, 0),
    F(base64_url_safe_decode, 0, 0),
    F(base64_url_safe_encode, 0, 0),
    F(capitalize, 0, 0),
    F(ceil, 0, 0),
    F(compact, 0, 1),
    F(concat, 1, 1),
    F(date, 1, 1),
    {"default", 0, 1, true, slm__lqf_default},
    F(divided_by, 1, 1),
    F(downcase, 0, 0),
    F(escape, 0, 0),
    F(escape_once, 0, 0),
    F(find, 1, 2),
    F(find_index, 1, 2),
    F(first, 0, 0),
    F(floor, 0, 0),
    {"h", 0, 0, false, slm__lqf_escape},
    F(has, 1, 2),
    F(join, 0, 1),
    F(json, 0, 1),
    F(last, 0, 0),
    F(lstrip, 0, 0),
    F(map, 1, 1),
    F(minus, 1, 1),
    F(modulo, 1, 1),
    F(newline_to_br, 0, 0),
    F(plus, 1, 1),
    F(prepend, 1, 1),
    F(reject, 1, 2),
    F(remove, 1, 1),
    F(remove_first, 1, 1),
    F(remove_last, 1, 1),
    F(replace, 1, 2),
    F(replace_first, 1, 2),
    F(replace_last, 2, 2),
    F(reverse, 0, 0),
    F(round, 0, 1),
    F(rstrip, 0, 0),
    F(size, 0, 0),
    F(slice, 1, 2),
    F(sort, 0, 1),
    F(sort_natural, 0, 1),
    F(split, 1, 1),
    F(strip, 0, 0),
    F(strip_html, 0, 0),
    F(strip_newlines, 0, 0),
    F(sum, 0, 1),
    F(times, 1, 1),
    F(truncate, 0, 2),
    F(truncatewords, 0, 2),
    F(uniq, 0, 1),
    F(upcase, 0, 0),
    F(url_decode, 0, 0),
    F(url_encode, 0, 0),
    F(where, 1, 2),
};

const size_t slm__lq_nfilters = SLM_ARRAY_LEN(slm__lq_filters);

int slm__lq_filter_find(const char *p, size_t n) {
    size_t lo = 1, hi = slm__lq_nfilters;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *s = slm__lq_filters[mid].name;
        size_t sn = strlen(s);
        int c = memcmp(s, p, sn < n ? sn : n);
        if (c == 0) {
            c = sn < n ? -1 : sn > n;
        }
        if (c == 0) {
            return (int)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- helpers */

static int fail_mem(struct lq_budget *bud, const struct lq_filter *f) {
    return slm__lq_rt_err(bud, f->pos, SLM_E_LIMIT,
                          "%s: render needs more than %zu bytes of memory", f->name, bud->mem.max);
}

static int done(struct lq_budget *bud, const struct lq_filter *f, struct lq_sb *sb,
                struct lq_val *v) {
    struct slm_str s;
    int rc = slm__lq_sb_end(sb, &s);
    *v = lq_str(s.ptr, s.len);
    return rc == SLM_OK ? SLM_OK : fail_mem(bud, f);
}

static int str_of(struct lq_budget *bud, const struct lq_filter *f, const struct lq_val *v,
                  struct slm_str *s) {
    return slm__lq_to_str(bud, v, s) == SLM_OK ? SLM_OK : fail_mem(bud, f);
}

static bool is_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0;
}

/* ASCII whitespace as Ruby's split(" ") sees it (no NUL). */
static const uint8_t ws_table[256] = {
    [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1};

static inline bool ws_byte(unsigned char c) {
    return ws_table[c];
}

/* Index of the first whitespace at or after i (or n): eight bytes at a time,
 * looking for the first byte below 0x21 (whitespace is ' ' and \t..\r). */
static inline size_t find_ws(const char *p, size_t i, size_t n) {
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t m = (w - 0x2121212121212121ull) & ~w & 0x8080808080808080ull;
        if (!m) {
            i += 8;
            continue;
        }
        size_t k = i + (size_t)(__builtin_ctzll(m) >> 3);
        if (ws_byte((unsigned char)p[k])) {
            return k;
        }
        i = k + 1; /* a control character that is not whitespace */
    }
    while (i < n && !ws_byte((unsigned char)p[i])) {
        i++;
    }
    return i;
}

static inline size_t skip_ws(const char *p, size_t i, size_t n) {
    while (i < n && ws_byte((unsigned char)p[i])) {
        i++;
    }
    return i;
}

/* Ruby's Integer() for filter arguments (slice, truncate, json): SLM_E_INVALID
 * with a message naming the filter otherwise. */
static int arg_int(struct lq_budget *bud, const struct lq_filter *f, const struct lq_val *v,
                   int64_t *out) {
    if (v->k == LQ_INT) {
        *out = v->u.i;
        return SLM_OK;
    }
    if (v->k == LQ_STR) {
        struct slm_str s = slm_str_trim((struct slm_str){v->u.s.p, v->u.s.n});
        if (slm_parse_i64(s, out) == SLM_OK) {
            return SLM_OK;
        }
    }
    return slm__lq_rt_err(bud, f->pos, SLM_E_INVALID, "%s: expected an integer argument", f->name);
}

/* ---------------------------------------------------------------- UTF-8 and case */

static size_t u8_dec(const unsigned char *p, size_t n, uint32_t *cp) {
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (len == 1 || len > n) {
        *cp = 0xFFFFFFFF;
        return 1;
    }
    uint32_t v = c & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *cp = 0xFFFFFFFF;
            return 1;
        }
        v = (v << 6) | (p[i] & 0x3F);
    }
    *cp = v;
    return len;
}

static size_t u8_enc(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static uint32_t cp_lower(uint32_t c) {
    if (c < 0x80) {
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    }
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3AB && c != 0x3A2) ||
        (c >= 0x410 && c <= 0x42F) || (c >= 0xFF21 && c <= 0xFF3A)) {
        return c + 32;
    }
    if (c >= 0x400 && c <= 0x40F) {
        return c + 80;
    }
    if (c >= 0x531 && c <= 0x556) {
        return c + 48;
    }
    if (c == 0x178) {
        return 0xFF;
    }
    if (c == 0x386) {
        return 0x3AC;
    }
    if (c >= 0x388 && c <= 0x38A) {
        return c + 37;
    }
    if (c == 0x38C) {
        return 0x3CC;
    }
    if (c == 0x38E || c == 0x38F) {
        return c + 63;
    }
    if (((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177) || (c >= 0x460 && c <= 0x481) ||
         (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F) || (c >= 0x1E00 && c <= 0x1E95) ||
         (c >= 0x1EA0 && c <= 0x1EFF)) &&
        c % 2 == 0) {
        return c + 1;
    }
    if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E) || (c >= 0x4C1 && c <= 0x4CE)) &&
        c % 2 == 1) {
        return c + 1;
    }
    return c;
}

static uint32_t cp_upper(uint32_t c) {
    if (c < 0x80) {
        return (c >= 'a' && c <= 'z') ? c - 32 : c;
    }
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) ||
        (c >= 0x430 && c <= 0x44F) || (c >= 0xFF41 && c <= 0xFF5A)) {
        return c - 32;
    }
    if (c == 0x3C2) {
        return 0x3A3;
    }
    if (c >= 0x450 && c <= 0x45F) {
        return c - 80;
    }
    if (c >= 0x561 && c <= 0x586) {
        return c - 48;
    }
    if (c == 0xFF) {
        return 0x178;
    }
    if (c == 0xB5) {
        return 0x39C;
    }
    if (c == 0x3AC) {
        return 0x386;
    }
    if (c >= 0x3AD && c <= 0x3AF) {
        return c - 37;
    }
    if (c == 0x3CC) {
        return 0x38C;
    }
    if (c == 0x3CD || c == 0x3CE) {
        return c - 63;
    }
    if (((c >= 0x101 && c <= 0x137) || (c >= 0x14B && c <= 0x177) || (c >= 0x461 && c <= 0x481) ||
         (c >= 0x48B && c <= 0x4BF) || (c >= 0x4D1 && c <= 0x52F) || (c >= 0x1E01 && c <= 0x1E95) ||
         (c >= 0x1EA1 && c <= 0x1EFF)) &&
        c % 2 == 1) {
        return c - 1;
    }
    if (((c >= 0x13A && c <= 0x148) || (c >= 0x17A && c <= 0x17E) || (c >= 0x4C2 && c <= 0x4CE)) &&
        c % 2 == 0) {
        return c - 1;
    }
    return c;
}

enum { CASE_LOWER, CASE_UPPER, CASE_CAPITAL };

static int map_case(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v, int mode) {
    struct slm_str s;
    int rc = str_of(bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    const unsigned char *p = (const unsigned char *)s.ptr;
    /* ASCII fast path: the first character may map differently (capitalize) */
    unsigned char first = mode == CASE_LOWER ? 'A' : 'a';
    unsigned char rest = mode == CASE_UPPER ? 'a' : 'A';
    size_t i = 0;
    unsigned flips = 0;
    if (s.len && p[0] < 0x80) {
        flips = (unsigned char)(p[0] - first) < 26;
        i = 1;
    }
    if (i) {
        for (; i < s.len && p[i] < 0x80; i++) {
            flips |= (unsigned char)(p[i] - rest) < 26;
        }
    }
    if (i == s.len && !flips) {
        *v = lq_str(s.ptr, s.len);
        return SLM_OK;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(bud, &sb, s.len + 8);
    if (i == s.len && sb.cap >= s.len) {
        char *o = sb.p;
        o[0] = (char)(p[0] ^ (((unsigned char)(p[0] - first) < 26) << 5));
        for (size_t k = 1; k < s.len; k++) {
            o[k] = (char)(p[k] ^ (((unsigned char)(p[k] - rest) < 26) << 5));
        }
        sb.n = s.len;
        return done(bud, f, &sb, v);
    }
    for (i = 0; i < s.len;) {
        if (p[i] < 0x80) {
            unsigned char c = p[i];
            bool up = mode == CASE_UPPER || (mode == CASE_CAPITAL && i == 0);
            if (up && c >= 'a' && c <= 'z') {
                c = (unsigned char)(c - 32);
            } else if (!up && c >= 'A' && c <= 'Z') {
                c = (unsigned char)(c + 32);
            }
            slm__lq_sb_putc(&sb, (char)c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = u8_dec(p + i, s.len - i, &cp);
        if (cp == 0xFFFFFFFF) {
            slm__lq_sb_putc(&sb, (char)p[i]);
            i++;
            continue;
        }
        bool up = mode == CASE_UPPER || (mode == CASE_CAPITAL && i == 0);
        if (up && cp == 0xDF) {
            slm__lq_sb_put(&sb, "SS", 2);
        } else {
            char o[4];
            size_t m = u8_enc(up ? cp_upper(cp) : cp_lower(cp), o);
            slm__lq_sb_put(&sb, o, m);
        }
        i += k;
    }
    return done(bud, f, &sb, v);
}

LQ_FILTER(downcase) {
    (void)args;
    return map_case(fe->bud, f, v, CASE_LOWER);
}

LQ_FILTER(upcase) {
    (void)args;
    return map_case(fe->bud, f, v, CASE_UPPER);
}

LQ_FILTER(capitalize) {
    (void)args;
    return map_case(fe->bud, f, v, CASE_CAPITAL);
}

/* Byte offset of character `ci` (clamped to the end). */
static size_t char_off(struct slm_str s, size_t ci) {
    size_t i = 0;
    for (; i < s.len && ci; ci--) {
        i++;
        while (i < s.len && ((unsigned char)s.ptr[i] & 0xC0) == 0x80) {
            i++;
        }
    }
    return i;
}

/* ---------------------------------------------------------------- concatenation */

static int concat2(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                   struct slm_str a, struct slm_str b) {
    struct lq_sb sb;
    slm__lq_sb_begin(bud, &sb, a.len + b.len);
    slm__lq_sb_put(&sb, a.ptr, a.len);
    slm__lq_sb_put(&sb, b.ptr, b.len);
    return done(bud, f, &sb, v);
}

LQ_FILTER(append) {
    struct slm_str a, b;
    int rc = str_of(fe->bud, f, v, &a);
    if (rc == SLM_OK) {
        rc = str_of(fe->bud, f, &args[0], &b);
    }
    return rc == SLM_OK ? concat2(fe->bud, f, v, a, b) : rc;
}

LQ_FILTER(prepend) {
    struct slm_str a, b;
    int rc = str_of(fe->bud, f, v, &a);
    if (rc == SLM_OK) {
        rc = str_of(fe->bud, f, &args[0], &b);
    }
    return rc == SLM_OK ? concat2(fe->bud, f, v, b, a) : rc;
}

/* ---------------------------------------------------------------- HTML and URLs */

static int escape_html(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                       bool once) {
    struct slm_str s;
    int rc = str_of(bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t i = 0;
    while (i < s.len && s.ptr[i] != '&' && s.ptr[i] != '<' && s.ptr[i] != '>' && s.ptr[i] != '"' &&
           s.ptr[i] != '\'') {
        i++;
    }
    if (i == s.len) {
        *v = lq_str(s.ptr, s.len);
        return SLM_OK;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(bud, &sb, s.len + 32);
    slm__lq_sb_put(&sb, s.ptr, i);
    for (; i < s.len; i++) {
        char c = s.ptr[i];
        switch (c) {
        case '<': slm__lq_sb_put(&sb, "&lt;", 4); break;
        case '>': slm__lq_sb_put(&sb, "&gt;", 4); break;
        case '"': slm__lq_sb_put(&sb, "&quot;", 6); break;
        case '\'': slm__lq_sb_put(&sb, "&#39;", 5); break;
        case '&': {
            bool entity = false;
            if (once) {
                size_t j = i + 1;
                if (j < s.len && s.ptr[j] == '#') {
                    j++;
                    size_t d = j;
                    while (j < s.len && s.ptr[j] >= '0' && s.ptr[j] <= '9') {
                        j++;
                    }
                    entity = j > d && j < s.len && s.ptr[j] == ';';
                } else {
                    size_t d = j;
                    while (j < s.len && ((s.ptr[j] | 32) >= 'a' && (s.ptr[j] | 32) <= 'z')) {
                        j++;
                    }
                    entity = j > d && j < s.len && s.ptr[j] == ';';
                }
            }
            if (entity) {
                slm__lq_sb_putc(&sb, '&');
            } else {
                slm__lq_sb_put(&sb, "&amp;", 5);
            }
            break;
        }
        default: slm__lq_sb_putc(&sb, c); break;
        }
    }
    return done(bud, f, &sb, v);
}

LQ_FILTER(escape) {
    (void)args;
    if (v->k == LQ_NIL) {
        return SLM_OK;
    }
    return escape_html(fe->bud, f, v, false);
}

LQ_FILTER(escape_once) {
    (void)args;
    return escape_html(fe->bud, f, v, true);
}

LQ_FILTER(url_encode) {
    (void)args;
    if (v->k == LQ_NIL) {
        return SLM_OK;
    }
    struct slm_str s;
    int rc = str_of(fe->bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    static const char hex[] = "0123456789ABCDEF";
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, s.len * 3);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '.' || c == '-' || c == '~') {
            slm__lq_sb_putc(&sb, (char)c);
        } else if (c == ' ') {
            slm__lq_sb_putc(&sb, '+');
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            slm__lq_sb_put(&sb, e, 3);
        }
    }
    return done(fe->bud, f, &sb, v);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 32);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

LQ_FILTER(url_decode) {
    (void)args;
    if (v->k == LQ_NIL) {
        return SLM_OK;
    }
    struct slm_str s;
    int rc = str_of(fe->bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, s.len);
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '+') {
            slm__lq_sb_putc(&sb, ' ');
        } else if (c == '%' && i + 2 < s.len && hexval(s.ptr[i + 1]) >= 0 &&
                   hexval(s.ptr[i + 2]) >= 0) {
            slm__lq_sb_putc(&sb, (char)(hexval(s.ptr[i + 1]) * 16 + hexval(s.ptr[i + 2])));
            i += 2;
        } else {
            slm__lq_sb_putc(&sb, c);
        }
    }
    return done(fe->bud, f, &sb, v);
}

LQ_FILTER(strip_html) {
    (void)args;
    struct slm_str s;
    int rc = str_of(fe->bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, s.len);
    static const struct {
        const char *open, *close;
    } blocks[] = {{"<script", "</script>"}, {"<!--", "-->"}, {"<style", "</style>"}};
    /* pass 1: script, comment and style blocks; pass 2: any <...> */
    size_t i = 0;
    char *tmp = NULL;
    size_t tn = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *p = pass == 0 ? s.ptr : tmp;
        size_t n = pass == 0 ? s.len : tn;
        sb.n = 0;
        for (i = 0; i < n;) {
            if (p[i] != '<') {
                slm__lq_sb_putc(&sb, p[i++]);
                continue;
            }
            size_t end = 0;
            if (pass == 0) {
                for (size_t b = 0; b < SLM_ARRAY_LEN(blocks) && !end; b++) {
                    size_t ol = strlen(blocks[b].open), cl = strlen(blocks[b].close);
                    if (n - i >= ol && memcmp(p + i, blocks[b].open, ol) == 0) {
                        size_t k = slm_str_find((struct slm_str){p, n},
                                                (struct slm_str){blocks[b].close, cl}, i + ol);
                        if (k != SIZE_MAX) {
                            end = k + cl;
                        }
                    }
                }
            } else {
                const char *gt = memchr(p + i + 1, '>', n - i - 1);
                if (gt) {
                    end = (size_t)(gt - p) + 1;
                }
            }
            if (end) {
                i = end;
            } else {
                slm__lq_sb_putc(&sb, p[i++]);
            }
        }
        if (pass == 0) {
            struct lq_val mid;
            rc = done(fe->bud, f, &sb, &mid);
            if (rc != SLM_OK) {
                return rc;
            }
            tmp = (char *)mid.u.s.p;
            tn = mid.u.s.n;
            slm__lq_sb_begin(fe->bud, &sb, tn);
        }
    }
    return done(fe->bud, f, &sb, v);
}

LQ_FILTER(newline_to_br) {
    (void)args;
    struct slm_str s;
    int rc = str_of(fe->bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, s.len + 32);
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '\r' && i + 1 < s.len && s.ptr[i + 1] == '\n') {
            continue;
        }
        if (s.ptr[i] == '\n') {
            slm__lq_sb_put(&sb, "<br />\n", 7);
        } else {
            slm__lq_sb_putc(&sb, s.ptr[i]);
        }
    }
    return done(fe->bud, f, &sb, v);
}

LQ_FILTER(strip_newlines) {
    (void)args;
    struct slm_str s;
    int rc = str_of(fe->bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, s.len);
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '\r' && i + 1 < s.len && s.ptr[i + 1] == '\n') {
            continue;
        }
        if (s.ptr[i] != '\n') {
            slm__lq_sb_putc(&sb, s.ptr[i]);
        }
    }
    return done(fe->bud, f, &sb, v);
}

/* ---------------------------------------------------------------- strip */

static int strip(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v, bool l,
                 bool r) {
    struct slm_str s;
    int rc = str_of(bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t a = 0, b = s.len;
    while (l && a < b && is_space((unsigned char)s.ptr[a])) {
        a++;
    }
    while (r && b > a && is_space((unsigned char)s.ptr[b - 1])) {
        b--;
    }
    *v = lq_str(s.ptr + a, b - a);
    return SLM_OK;
}

LQ_FILTER(strip) {
    (void)args;
    return strip(fe->bud, f, v, true, true);
}

LQ_FILTER(lstrip) {
    (void)args;
    return strip(fe->bud, f, v, true, false);
}

LQ_FILTER(rstrip) {
    (void)args;
    return strip(fe->bud, f, v, false, true);
}

/* ---------------------------------------------------------------- replace / remove */

enum { REP_ALL, REP_FIRST, REP_LAST };

static int replace(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                   const struct lq_val *pat, const struct lq_val *rep, int mode) {
    struct slm_str s, p, r = {"", 0};
    int rc = str_of(bud, f, v, &s);
    if (rc == SLM_OK) {
        rc = str_of(bud, f, pat, &p);
    }
    if (rc == SLM_OK && rep) {
        rc = str_of(bud, f, rep, &r);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_sb sb;
    if (mode == REP_LAST) {
        size_t at = SIZE_MAX;
        if (p.len == 0) {
            at = s.len;
        } else {
            for (size_t i = s.len - (s.len >= p.len ? p.len : s.len) + 1; i-- > 0;) {
                if (s.len >= p.len && memcmp(s.ptr + i, p.ptr, p.len) == 0) {
                    at = i;
                    break;
                }
            }
        }
        if (at == SIZE_MAX) {
            *v = lq_str(s.ptr, s.len);
            return SLM_OK;
        }
        slm__lq_sb_begin(bud, &sb, s.len + r.len);
        slm__lq_sb_put(&sb, s.ptr, at);
        slm__lq_sb_put(&sb, r.ptr, r.len);
        slm__lq_sb_put(&sb, s.ptr + at + p.len, s.len - at - p.len);
        return done(bud, f, &sb, v);
    }
    slm__lq_sb_begin(bud, &sb, s.len + r.len);
    if (p.len == 0) {
        /* Ruby: an empty pattern matches before every character and at the end */
        size_t i = 0;
        slm__lq_sb_put(&sb, r.ptr, r.len);
        while (i < s.len) {
            size_t k = char_off((struct slm_str){s.ptr + i, s.len - i}, 1);
            slm__lq_sb_put(&sb, s.ptr + i, k);
            i += k;
            if (mode == REP_FIRST) {
                slm__lq_sb_put(&sb, s.ptr + i, s.len - i);
                break;
            }
            slm__lq_sb_put(&sb, r.ptr, r.len);
        }
        return done(bud, f, &sb, v);
    }
    size_t i = 0;
    size_t first = slm_str_find(s, p, 0);
    if (first == SIZE_MAX) {
        sb.n = 0;
        slm__lq_sb_end(&sb, &(struct slm_str){0});
        *v = lq_str(s.ptr, s.len);
        return SLM_OK;
    }
    while (i < s.len) {
        size_t k = i == 0 ? first : slm_str_find(s, p, i);
        if (k == SIZE_MAX) {
            break;
        }
        slm__lq_sb_put(&sb, s.ptr + i, k - i);
        slm__lq_sb_put(&sb, r.ptr, r.len);
        i = k + p.len;
        if (mode == REP_FIRST) {
            break;
        }
        if (sb.failed) {
            break;
        }
    }
    slm__lq_sb_put(&sb, s.ptr + i, s.len - i);
    return done(bud, f, &sb, v);
}

LQ_FILTER(replace) {
    return replace(fe->bud, f, v, &args[0], &args[1], REP_ALL);
}

LQ_FILTER(replace_first) {
    return replace(fe->bud, f, v, &args[0], &args[1], REP_FIRST);
}

LQ_FILTER(replace_last) {
    return replace(fe->bud, f, v, &args[0], &args[1], REP_LAST);
}

LQ_FILTER(remove) {
    return replace(fe->bud, f, v, &args[0], NULL, REP_ALL);
}

LQ_FILTER(remove_first) {
    return replace(fe->bud, f, v, &args[0], NULL, REP_FIRST);
}

LQ_FILTER(remove_last) {
    return replace(fe->bud, f, v, &args[0], NULL, REP_LAST);
}

/* ---------------------------------------------------------------- slice / truncate */

LQ_FILTER(slice) {
    int64_t off, len = 1;
    int rc = arg_int(fe->bud, f, &args[0], &off);
    if (rc == SLM_OK && f->npos > 1 && args[1].k != LQ_NIL) {
        rc = arg_int(fe->bud, f, &args[1], &len);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (v->k == LQ_ARR || v->k == LQ_JARR) {
        int64_t n = (int64_t)slm__lq_seq_len(v);
        if (off < 0) {
            off += n;
        }
        struct lq_arr *a;
        if (off < 0 || off > n || len < 0) {
            a = slm__lq_arr_new(fe->bud, 0);
        } else {
            int64_t cnt = len > n - off ? n - off : len;
            a = slm__lq_arr_new(fe->bud, (size_t)cnt);
            for (int64_t i = 0; a && i < cnt; i++) {
                a->v[i] = slm__lq_seq_get(v, (size_t)(off + i));
            }
        }
        if (!a) {
            return fail_mem(fe->bud, f);
        }
        *v = lq_arr_val(a);
        return SLM_OK;
    }
    struct slm_str s;
    rc = str_of(fe->bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    int64_t n = (int64_t)slm__lq_utf8_len(s.ptr, s.len);
    if (off < 0) {
        off += n;
    }
    if (off < 0 || off > n || len < 0) {
        *v = lq_str("", 0);
        return SLM_OK;
    }
    int64_t cnt = len > n - off ? n - off : len;
    size_t b0 = char_off(s, (size_t)off);
    size_t b1 = b0 + char_off((struct slm_str){s.ptr + b0, s.len - b0}, (size_t)cnt);
    *v = lq_str(s.ptr + b0, b1 - b0);
    return SLM_OK;
}

LQ_FILTER(truncate) {
    if (v->k == LQ_NIL) {
        return SLM_OK;
    }
    int64_t len = 50;
    int rc = SLM_OK;
    if (f->npos > 0) {
        rc = arg_int(fe->bud, f, &args[0], &len);
    }
    struct slm_str s, end = {"...", 3};
    if (rc == SLM_OK) {
        rc = str_of(fe->bud, f, v, &s);
    }
    if (rc == SLM_OK && f->npos > 1) {
        rc = str_of(fe->bud, f, &args[1], &end);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    int64_t n = (int64_t)slm__lq_utf8_len(s.ptr, s.len);
    if (n <= len) {
        *v = lq_str(s.ptr, s.len);
        return SLM_OK;
    }
    int64_t l = len - (int64_t)slm__lq_utf8_len(end.ptr, end.len);
    if (l < 0) {
        l = 0;
    }
    return concat2(fe->bud, f, v, (struct slm_str){s.ptr, char_off(s, (size_t)l)}, end);
}

LQ_FILTER(truncatewords) {
    if (v->k == LQ_NIL) {
        return SLM_OK;
    }
    int64_t words = 15;
    int rc = SLM_OK;
    if (f->npos > 0) {
        rc = arg_int(fe->bud, f, &args[0], &words);
    }
    struct slm_str s, end = {"...", 3};
    if (rc == SLM_OK) {
        rc = str_of(fe->bud, f, v, &s);
    }
    if (rc == SLM_OK && f->npos > 1) {
        rc = str_of(fe->bud, f, &args[1], &end);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (words <= 0) {
        words = 1;
    }
    /* One pass over the words; runs of words separated by exactly one space
     * are copied at once, other whitespace becomes one space. Like Ruby's
     * split(" ", words + 1), the text counts as longer than `words` words
     * when anything (even whitespace) follows the last word kept. */
    const char *p = s.ptr;
    size_t n = s.len;
    size_t i = skip_ws(p, 0, n), seg = i, last_end = 0;
    int64_t count = 0;
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, n + end.len);
    while (i < n) {
        size_t j = find_ws(p, i, n);
        last_end = j;
        if (++count == words) {
            break;
        }
        size_t k = skip_ws(p, j, n);
        if (k >= n) {
            break;
        }
        if (!(k == j + 1 && p[j] == ' ')) {
            slm__lq_sb_put(&sb, p + seg, j - seg);
            slm__lq_sb_putc(&sb, ' ');
            seg = k;
        }
        i = k;
    }
    if (count < words || last_end >= n) {
        *v = lq_str(s.ptr, s.len); /* not truncated: the builder is dropped */
        return sb.failed ? fail_mem(fe->bud, f) : SLM_OK;
    }
    slm__lq_sb_put(&sb, p + seg, last_end - seg);
    slm__lq_sb_put(&sb, end.ptr, end.len);
    return done(fe->bud, f, &sb, v);
}

/* ---------------------------------------------------------------- split */

LQ_FILTER(split) {
    struct slm_str s, p;
    int rc = str_of(fe->bud, f, v, &s);
    if (rc == SLM_OK) {
        rc = str_of(fe->bud, f, &args[0], &p);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    size_t cap = 8, n = 0;
    struct lq_arr *a = slm__lq_arr_new(fe->bud, cap);
    if (!a) {
        return fail_mem(fe->bud, f);
    }
    size_t i = 0;
    while (i < s.len) {
        struct slm_str piece;
        if (p.len == 1 && p.ptr[0] == ' ') {
            i = skip_ws(s.ptr, i, s.len);
            if (i >= s.len) {
                break;
            }
            size_t b = i;
            i = find_ws(s.ptr, i, s.len);
            piece = (struct slm_str){s.ptr + b, i - b};
        } else if (p.len == 0) {
            size_t k = char_off((struct slm_str){s.ptr + i, s.len - i}, 1);
            piece = (struct slm_str){s.ptr + i, k};
            i += k;
        } else {
            size_t k = slm_str_find(s, p, i);
            if (k == SIZE_MAX) {
                k = s.len;
            }
            piece = (struct slm_str){s.ptr + i, k - i};
            i = k == s.len ? s.len : k + p.len;
        }
        if (n == cap) {
            struct lq_arr *b = slm__lq_arr_new(fe->bud, cap * 2);
            if (!b) {
                return fail_mem(fe->bud, f);
            }
            memcpy(b->v, a->v, n * sizeof(struct lq_val));
            a = b;
            cap *= 2;
        }
        a->v[n++] = lq_str(piece.ptr, piece.len);
    }
    while (n > 0 && a->v[n - 1].u.s.n == 0) {
        n--;
    }
    a->n = n;
    rc = slm__lq_charge(fe->bud, n, f->pos);
    *v = lq_arr_val(a);
    return rc;
}

/* ---------------------------------------------------------------- base64 */

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_encode(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                      const char *alpha) {
    struct slm_str s;
    int rc = str_of(bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(bud, &sb, (s.len + 2) / 3 * 4);
    const unsigned char *p = (const unsigned char *)s.ptr;
    for (size_t i = 0; i < s.len; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16;
        size_t left = s.len - i;
        if (left > 1) {
            x |= (uint32_t)p[i + 1] << 8;
        }
        if (left > 2) {
            x |= p[i + 2];
        }
        char o[4] = {alpha[x >> 18], alpha[(x >> 12) & 63], left > 1 ? alpha[(x >> 6) & 63] : '=',
                     left > 2 ? alpha[x & 63] : '='};
        slm__lq_sb_put(&sb, o, 4);
    }
    return done(bud, f, &sb, v);
}

static int b64_val(char c, bool url) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == (url ? '-' : '+')) {
        return 62;
    }
    if (c == (url ? '_' : '/')) {
        return 63;
    }
    return -1;
}

static int b64_decode(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                      bool url) {
    struct slm_str s;
    int rc = str_of(bud, f, v, &s);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t n = s.len;
    size_t pad = 0;
    if (url && n % 4 && !(n && s.ptr[n - 1] == '=')) {
        pad = 4 - n % 4;
    }
    if ((n + pad) % 4) {
        goto bad;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(bud, &sb, (n + pad) / 4 * 3);
    for (size_t i = 0; i < n + pad; i += 4) {
        int q[4];
        size_t eq = 0;
        for (int k = 0; k < 4; k++) {
            char c = i + (size_t)k < n ? s.ptr[i + (size_t)k] : '=';
            if (c == '=') {
                q[k] = 0;
                eq++;
                if (i + 4 < n + pad || k < 2) {
                    goto bad;
                }
            } else {
                if (eq) {
                    goto bad;
                }
                q[k] = b64_val(c, url);
                if (q[k] < 0) {
                    goto bad;
                }
            }
        }
        uint32_t x =
            (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12 | (uint32_t)q[2] << 6 | (uint32_t)q[3];
        char o[3] = {(char)(x >> 16), (char)(x >> 8), (char)x};
        if ((eq == 1 && (x & 0xFF)) || (eq == 2 && (x & 0xFFFF))) {
            goto bad;
        }
        slm__lq_sb_put(&sb, o, 3 - eq);
    }
    return done(bud, f, &sb, v);
bad:
    return slm__lq_rt_err(bud, f->pos, SLM_E_INVALID, "%s: invalid base64", f->name);
}

LQ_FILTER(base64_encode) {
    (void)args;
    return b64_encode(fe->bud, f, v, b64std);
}

LQ_FILTER(base64_url_safe_encode) {
    (void)args;
    return b64_encode(fe->bud, f, v, b64url);
}

LQ_FILTER(base64_decode) {
    (void)args;
    return b64_decode(fe->bud, f, v, false);
}

LQ_FILTER(base64_url_safe_decode) {
    (void)args;
    return b64_decode(fe->bud, f, v, true);
}

/* ---------------------------------------------------------------- misc */

LQ_FILTER(size) {
    (void)fe;
    (void)f;
    (void)args;
    switch (v->k) {
    case LQ_STR: *v = lq_int((int64_t)slm__lq_utf8_len(v->u.s.p, v->u.s.n)); break;
    case LQ_ARR:
    case LQ_JARR:
    case LQ_RANGE: *v = lq_count(slm__lq_seq_len(v)); break;
    case LQ_JOBJ: *v = lq_int((int64_t)json_object_size(v->u.j)); break;
    default: *v = lq_int(0); break;
    }
    return SLM_OK;
}

LQ_FILTER(default) {
    bool allow_false = false;
    for (unsigned i = 0; i < f->nkw; i++) {
        if (slm_str_eq_c(f->kw[i].name, "allow_false")) {
            struct lq_val a;
            int rc = fe->eval(fe->eval_ctx, &f->kw[i].val, &a);
            if (rc != SLM_OK) {
                return rc;
            }
            allow_false = lq_truthy(&a);
        }
    }
    bool use = allow_false ? v->k == LQ_NIL : !lq_truthy(v);
    if (!use) {
        switch (v->k) {
        case LQ_STR:
        case LQ_ARR:
        case LQ_JARR:
        case LQ_JOBJ: use = slm__lq_is_empty(v); break;
        default: break;
        }
    }
    if (use) {
        *v = f->npos > 0 ? args[0] : lq_str("", 0);
    }
    return SLM_OK;
}

LQ_FILTER(date) {
    struct slm_str fmt;
    int rc = str_of(fe->bud, f, &args[0], &fmt);
    if (rc != SLM_OK || fmt.len == 0) {
        return rc;
    }
    int64_t t;
    int off;
    bool has_off;
    if (!slm__lq_parse_date(v, fe->now, &t, &off, &has_off)) {
        return SLM_OK;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, fmt.len * 2 + 16);
    slm__lq_strftime(&sb, fmt.ptr, fmt.len, t, off, has_off);
    return done(fe->bud, f, &sb, v);
}

/* ---------------------------------------------------------------- json (extension) */

static void json_str(struct lq_sb *sb, const char *p, size_t n) {
    static const char hex[] = "0123456789abcdef";
    slm__lq_sb_putc(sb, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        slm__lq_sb_put(sb, p + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': slm__lq_sb_put(sb, "\\\"", 2); break;
        case '\\': slm__lq_sb_put(sb, "\\\\", 2); break;
        case '\n': slm__lq_sb_put(sb, "\\n", 2); break;
        case '\r': slm__lq_sb_put(sb, "\\r", 2); break;
        case '\t': slm__lq_sb_put(sb, "\\t", 2); break;
        case '\b': slm__lq_sb_put(sb, "\\b", 2); break;
        case '\f': slm__lq_sb_put(sb, "\\f", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            slm__lq_sb_put(sb, e, 6);
        }
        }
    }
    slm__lq_sb_put(sb, p + run, n - run);
    slm__lq_sb_putc(sb, '"');
}

static void json_nl(struct lq_sb *sb, int indent, int depth) {
    if (indent <= 0) {
        return;
    }
    slm__lq_sb_putc(sb, '\n');
    for (int i = 0; i < indent * depth; i++) {
        slm__lq_sb_putc(sb, ' ');
    }
}

/* Charges the render one step per item so that huge ranges stop at the step
 * limit; returns false once the builder or the budget has failed. */
static bool json_val(struct lq_budget *bud, struct lq_sb *sb, const struct lq_val *v, int indent,
                     int depth) {
    if (sb->failed || bud->steps > bud->max_steps) {
        return false;
    }
    if (depth > 64) {
        slm__lq_sb_put(sb, "null", 4);
        return true;
    }
    switch (v->k) {
    case LQ_STR: json_str(sb, v->u.s.p, v->u.s.n); return true;
    case LQ_INT: slm__lq_write_val(sb, v, 0); return true;
    case LQ_FLOAT:
        if (v->u.f != v->u.f || v->u.f - v->u.f != 0) {
            slm__lq_sb_put(sb, "null", 4);
        } else {
            slm__lq_write_val(sb, v, 0);
        }
        return true;
    case LQ_BOOL: slm__lq_write_val(sb, v, 0); return true;
    case LQ_EMPTY:
    case LQ_BLANK: slm__lq_sb_put(sb, "\"\"", 2); return true;
    case LQ_ARR:
    case LQ_JARR:
    case LQ_RANGE: {
        size_t n = slm__lq_seq_len(v);
        bud->steps += n;
        if (bud->steps > bud->max_steps) {
            return false;
        }
        slm__lq_sb_putc(sb, '[');
        for (size_t i = 0; i < n; i++) {
            if (i) {
                slm__lq_sb_putc(sb, ',');
            }
            json_nl(sb, indent, depth + 1);
            struct lq_val e = slm__lq_seq_get(v, i);
            if (!json_val(bud, sb, &e, indent, depth + 1)) {
                return false;
            }
        }
        if (n) {
            json_nl(sb, indent, depth);
        }
        slm__lq_sb_putc(sb, ']');
        return true;
    }
    case LQ_JOBJ: {
        const char *key;
        size_t klen;
        json_t *val;
        bool first = true;
        bud->steps += json_object_size(v->u.j);
        slm__lq_sb_putc(sb, '{');
        json_object_keylen_foreach((json_t *)v->u.j, key, klen, val) {
            if (!first) {
                slm__lq_sb_putc(sb, ',');
            }
            first = false;
            json_nl(sb, indent, depth + 1);
            json_str(sb, key, klen);
            slm__lq_sb_put(sb, indent > 0 ? ": " : ":", indent > 0 ? 2 : 1);
            struct lq_val e = lq_from_json(val);
            if (!json_val(bud, sb, &e, indent, depth + 1)) {
                return false;
            }
        }
        if (!first) {
            json_nl(sb, indent, depth);
        }
        slm__lq_sb_putc(sb, '}');
        return true;
    }
    default: slm__lq_sb_put(sb, "null", 4); return true;
    }
}

LQ_FILTER(json) {
    int64_t indent = 0;
    if (f->npos > 0 && args[0].k != LQ_NIL) {
        int rc = arg_int(fe->bud, f, &args[0], &indent);
        if (rc != SLM_OK) {
            return rc;
        }
        if (indent > 16) {
            indent = 16;
        }
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, 64);
    if (!json_val(fe->bud, &sb, v, (int)indent, 0) && !sb.failed) {
        return slm__lq_charge(fe->bud, 0, f->pos);
    }
    return done(fe->bud, f, &sb, v);
}
