/*
 * liquid/value.c - Liquid values: string forms (Ruby's to_s and inspect),
 * number formatting, equality, ordering, blank/empty, array-likes.
 *
 * Semantics follow Shopify Liquid on Ruby: only nil and false are falsy;
 * 1 == 1.0 but 1 != "1"; arrays print joined, hashes print as Ruby's inspect;
 * floats print the shortest round-trip form with at least one decimal
 * (5.0, 0.1, 1.0e+16).
 *
 * Memory, steps and errors go through the render's budget (budget.c); this
 * file calls nothing in the tree walker or the filters.
 */
#include "liquid/value.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arrays */

struct lq_arr *slm__lq_arr_new(struct lq_budget *bud, size_t n) {
    if (n > ((size_t)1 << 40)) {
        return NULL;
    }
    struct lq_arr *a = slm__lq_alloc(bud, sizeof(*a) + n * sizeof(struct lq_val));
    if (a) {
        a->n = n;
    }
    return a;
}

/* ---------------------------------------------------------------- numbers */

size_t slm__lq_fmt_int(int64_t i, char *buf) {
    char tmp[24];
    size_t n = 0;
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t k = 0;
    if (i < 0) {
        buf[k++] = '-';
    }
    while (n) {
        buf[k++] = tmp[--n];
    }
    buf[k] = '\0';
    return k;
}

/* Shortest digits that read back as `f` (f > 0, finite): digits without a
 * point, and the decimal exponent such that f = 0.DIGITS x 10^decpt. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Fast path: f = m / 10^k exactly-rounded for some m < 10^15 (most decimals
 * written by people). At most one such m per k exists at this precision, so
 * the first k found gives the shortest digits. */
static int short_digits_fast(double f, char *digits, int *decpt) {
    for (int k = 0; k <= 22; k++) {
        double scaled = f * pow10_exact[k];
        if (scaled >= 1e15) {
            return 0;
        }
        double r = floor(scaled + 0.5);
        if (fabs(scaled - r) > 1e-6 * (r > 1 ? r : 1)) {
            continue; /* not within rounding error of an integer: no m here */
        }
        for (int d = -1; d <= 1; d++) {
            double m = r + d;
            if (m >= 1 && m / pow10_exact[k] == f) {
                uint64_t u = (uint64_t)m;
                char tmp[24];
                int n = 0;
                while (u) {
                    tmp[n++] = (char)('0' + u % 10);
                    u /= 10;
                }
                int nd = 0;
                for (int i = n - 1; i >= 0; i--) {
                    digits[nd++] = tmp[i];
                }
                *decpt = n - k;
                while (nd > 1 && digits[nd - 1] == '0') {
                    nd--;
                }
                digits[nd] = '\0';
                return nd;
            }
        }
    }
    return 0;
}

int slm__lq_float_digits(double f, char *digits, int *decpt) {
    int fast = short_digits_fast(f, digits, decpt);
    if (fast) {
        return fast;
    }
    char buf[48];
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec, f);
        if (strtod(buf, NULL) == f) {
            break;
        }
    }
    int nd = 0;
    const char *p = buf;
    while (*p && *p != 'e') {
        if (*p >= '0' && *p <= '9') {
            digits[nd++] = *p;
        }
        p++;
    }
    int exp10 = *p == 'e' ? (int)strtol(p + 1, NULL, 10) : 0;
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    digits[nd] = '\0';
    *decpt = exp10 + 1;
    return nd;
}

size_t slm__lq_fmt_float(double f, char *buf) {
    if (isnan(f)) {
        memcpy(buf, "NaN", 4);
        return 3;
    }
    if (isinf(f)) {
        const char *s = f < 0 ? "-Infinity" : "Infinity";
        size_t n = strlen(s);
        memcpy(buf, s, n + 1);
        return n;
    }
    size_t k = 0;
    if (signbit(f)) {
        buf[k++] = '-';
        f = -f;
    }
    if (f == 0) {
        memcpy(buf + k, "0.0", 4);
        return k + 3;
    }
    char d[24];
    int decpt;
    int nd = slm__lq_float_digits(f, d, &decpt);
    if (decpt > 15 || decpt < -3) {
        /* Ruby switches to exponents from 1e15 up and below 1e-4: 1.0e+15, 1.5e-05 */
        buf[k++] = d[0];
        buf[k++] = '.';
        if (nd > 1) {
            memcpy(buf + k, d + 1, (size_t)nd - 1);
            k += (size_t)nd - 1;
        } else {
            buf[k++] = '0';
        }
        k += (size_t)snprintf(buf + k, 16, "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
        return k;
    }
    if (decpt <= 0) {
        buf[k++] = '0';
        buf[k++] = '.';
        for (int z = 0; z < -decpt; z++) {
            buf[k++] = '0';
        }
        memcpy(buf + k, d, (size_t)nd);
        k += (size_t)nd;
    } else if (decpt >= nd) {
        memcpy(buf + k, d, (size_t)nd);
        k += (size_t)nd;
        for (int z = nd; z < decpt; z++) {
            buf[k++] = '0';
        }
        buf[k++] = '.';
        buf[k++] = '0';
    } else {
        memcpy(buf + k, d, (size_t)decpt);
        k += (size_t)decpt;
        buf[k++] = '.';
        memcpy(buf + k, d + decpt, (size_t)(nd - decpt));
        k += (size_t)(nd - decpt);
    }
    buf[k] = '\0';
    return k;
}

int64_t slm__lq_str_to_i(const char *p, size_t n) {
    size_t i = 0;
    while (i < n && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r'))) {
        i++;
    }
    bool neg = false;
    if (i < n && (p[i] == '-' || p[i] == '+')) {
        neg = p[i] == '-';
        i++;
    }
    uint64_t v = 0;
    bool any = false;
    for (; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            unsigned d = (unsigned)(p[i] - '0');
            if (v > (UINT64_MAX - d) / 10) {
                v = UINT64_MAX;
            } else {
                v = v * 10 + d;
            }
            any = true;
        } else if (p[i] == '_' && any && i + 1 < n && p[i + 1] >= '0' && p[i + 1] <= '9') {
            continue;
        } else {
            break;
        }
    }
    if (neg) {
        return v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v;
    }
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

size_t slm__lq_utf8_len(const char *p, size_t n) {
    size_t c = 0, i = 0;
    /* count bytes that do not look like 10xxxxxx, eight at a time */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t cont = (w & 0x8080808080808080ull) & ((~w & 0x4040404040404040ull) << 1);
        c += 8 - (size_t)(((cont >> 7) * 0x0101010101010101ull) >> 56);
    }
    for (; i < n; i++) {
        c += ((unsigned char)p[i] & 0xC0) != 0x80;
    }
    return c;
}

/* ---------------------------------------------------------------- array-likes */

size_t slm__lq_seq_len(const struct lq_val *v) {
    switch (v->k) {
    case LQ_ARR: return v->u.a->n;
    case LQ_JARR: return json_array_size(v->u.j);
    case LQ_RANGE: {
        if (v->u.r.hi < v->u.r.lo) {
            return 0;
        }
        uint64_t span = (uint64_t)v->u.r.hi - (uint64_t)v->u.r.lo;
        return span >= (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)span + 1;
    }
    default: return 0;
    }
}

struct lq_val slm__lq_seq_get(const struct lq_val *v, size_t i) {
    switch (v->k) {
    case LQ_ARR: return v->u.a->v[i];
    case LQ_JARR: return lq_from_json(json_array_get(v->u.j, i));
    case LQ_RANGE: return lq_int((int64_t)((uint64_t)v->u.r.lo + (uint64_t)i));
    default: return lq_nil();
    }
}

/* ---------------------------------------------------------------- string forms */

static void put_num(struct lq_sb *sb, const struct lq_val *v) {
    char buf[48];
    size_t n = v->k == LQ_INT ? slm__lq_fmt_int(v->u.i, buf) : slm__lq_fmt_float(v->u.f, buf);
    slm__lq_sb_put(sb, buf, n);
}

static void inspect_str(struct lq_sb *sb, const char *p, size_t n) {
    slm__lq_sb_putc(sb, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\t': esc = "\\t"; break;
        case '\r': esc = "\\r"; break;
        case '\f': esc = "\\f"; break;
        case '\v': esc = "\\v"; break;
        case '\b': esc = "\\b"; break;
        case '\a': esc = "\\a"; break;
        case 27: esc = "\\e"; break;
        case '#':
            if (i + 1 < n && (p[i + 1] == '{' || p[i + 1] == '$' || p[i + 1] == '@')) {
                esc = "\\#";
            }
            break;
        default: break;
        }
        if (esc) {
            slm__lq_sb_put(sb, esc, strlen(esc));
        } else if (c < 0x20 || c == 0x7f) {
            char b[8];
            snprintf(b, sizeof(b), "\\u%04X", c);
            slm__lq_sb_put(sb, b, 6);
        } else {
            slm__lq_sb_putc(sb, (char)c);
        }
    }
    slm__lq_sb_putc(sb, '"');
}

static void inspect(struct lq_sb *sb, const struct lq_val *v, int depth);

static void inspect_seq(struct lq_sb *sb, const struct lq_val *v, int depth) {
    slm__lq_sb_putc(sb, '[');
    size_t n = slm__lq_seq_len(v);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            slm__lq_sb_put(sb, ", ", 2);
        }
        struct lq_val e = slm__lq_seq_get(v, i);
        inspect(sb, &e, depth + 1);
    }
    slm__lq_sb_putc(sb, ']');
}

static void inspect_obj(struct lq_sb *sb, const json_t *o, int depth) {
    slm__lq_sb_putc(sb, '{');
    const char *key;
    size_t klen;
    json_t *val;
    bool first = true;
    json_object_keylen_foreach((json_t *)o, key, klen, val) {
        if (!first) {
            slm__lq_sb_put(sb, ", ", 2);
        }
        first = false;
        inspect_str(sb, key, klen);
        slm__lq_sb_put(sb, "=>", 2);
        struct lq_val e = lq_from_json(val);
        inspect(sb, &e, depth + 1);
    }
    slm__lq_sb_putc(sb, '}');
}

static void inspect(struct lq_sb *sb, const struct lq_val *v, int depth) {
    if (depth > 64) {
        slm__lq_sb_put(sb, "...", 3);
        return;
    }
    switch (v->k) {
    case LQ_NIL: slm__lq_sb_put(sb, "nil", 3); break;
    case LQ_STR: inspect_str(sb, v->u.s.p, v->u.s.n); break;
    case LQ_ARR:
    case LQ_JARR: inspect_seq(sb, v, depth); break;
    case LQ_JOBJ: inspect_obj(sb, v->u.j, depth); break;
    default: slm__lq_write_val(sb, v, depth); break;
    }
}

void slm__lq_write_val(struct lq_sb *sb, const struct lq_val *v, int depth) {
    switch (v->k) {
    case LQ_NIL:
    case LQ_EMPTY:
    case LQ_BLANK:
    case LQ_LOOP: break;
    case LQ_BOOL:
        if (v->u.b) {
            slm__lq_sb_put(sb, "true", 4);
        } else {
            slm__lq_sb_put(sb, "false", 5);
        }
        break;
    case LQ_INT:
    case LQ_FLOAT: put_num(sb, v); break;
    case LQ_STR: slm__lq_sb_put(sb, v->u.s.p, v->u.s.n); break;
    case LQ_RANGE: {
        char buf[56];
        size_t n = slm__lq_fmt_int(v->u.r.lo, buf);
        buf[n++] = '.';
        buf[n++] = '.';
        n += slm__lq_fmt_int(v->u.r.hi, buf + n);
        slm__lq_sb_put(sb, buf, n);
        break;
    }
    case LQ_ARR:
    case LQ_JARR: {
        if (depth > 64) {
            break;
        }
        size_t n = slm__lq_seq_len(v);
        for (size_t i = 0; i < n; i++) {
            struct lq_val e = slm__lq_seq_get(v, i);
            if (e.k == LQ_JOBJ) {
                inspect(sb, &e, depth + 1);
            } else {
                slm__lq_write_val(sb, &e, depth + 1);
            }
        }
        break;
    }
    case LQ_JOBJ: inspect(sb, v, depth); break;
    default: break;
    }
}

int slm__lq_to_str(struct lq_budget *bud, const struct lq_val *v, struct slm_str *out) {
    if (v->k == LQ_STR) {
        *out = (struct slm_str){v->u.s.p, v->u.s.n};
        return SLM_OK;
    }
    if (v->k == LQ_NIL || v->k == LQ_EMPTY || v->k == LQ_BLANK) {
        *out = (struct slm_str){"", 0};
        return SLM_OK;
    }
    struct lq_sb sb;
    slm__lq_sb_begin(bud, &sb, 32);
    slm__lq_write_val(&sb, v, 0);
    return slm__lq_sb_end(&sb, out);
}

/* ---------------------------------------------------------------- predicates */

static bool all_space(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!(c == ' ' || (c >= '\t' && c <= '\r'))) {
            return false;
        }
    }
    return true;
}

bool slm__lq_is_empty(const struct lq_val *v) {
    switch (v->k) {
    case LQ_STR: return v->u.s.n == 0;
    case LQ_ARR:
    case LQ_JARR:
    case LQ_RANGE: return slm__lq_seq_len(v) == 0;
    case LQ_JOBJ: return json_object_size(v->u.j) == 0;
    default: return false;
    }
}

bool slm__lq_is_blank(const struct lq_val *v) {
    switch (v->k) {
    case LQ_NIL: return true;
    case LQ_BOOL: return !v->u.b;
    case LQ_STR: return all_space(v->u.s.p, v->u.s.n);
    default: return slm__lq_is_empty(v);
    }
}

static bool is_seq(const struct lq_val *v) {
    return v->k == LQ_ARR || v->k == LQ_JARR;
}

static bool num_eq(const struct lq_val *a, const struct lq_val *b) {
    if (a->k == LQ_INT && b->k == LQ_INT) {
        return a->u.i == b->u.i;
    }
    double x = a->k == LQ_INT ? (double)a->u.i : a->u.f;
    double y = b->k == LQ_INT ? (double)b->u.i : b->u.f;
    return x == y;
}

bool slm__lq_equal(const struct lq_val *a, const struct lq_val *b) {
    if (a->k == LQ_EMPTY || a->k == LQ_BLANK || b->k == LQ_EMPTY || b->k == LQ_BLANK) {
        if (a->k == b->k) {
            return false; /* `empty == empty` is not a question Liquid answers */
        }
        const struct lq_val *lit = (a->k == LQ_EMPTY || a->k == LQ_BLANK) ? a : b;
        const struct lq_val *other = lit == a ? b : a;
        if (other->k == LQ_EMPTY || other->k == LQ_BLANK) {
            return false;
        }
        return lit->k == LQ_EMPTY ? slm__lq_is_empty(other) : slm__lq_is_blank(other);
    }
    if (lq_is_num(a) && lq_is_num(b)) {
        return num_eq(a, b);
    }
    if (is_seq(a) && is_seq(b)) {
        size_t n = slm__lq_seq_len(a);
        if (n != slm__lq_seq_len(b)) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            struct lq_val x = slm__lq_seq_get(a, i), y = slm__lq_seq_get(b, i);
            if (!slm__lq_equal(&x, &y)) {
                return false;
            }
        }
        return true;
    }
    if (a->k != b->k) {
        return false;
    }
    switch (a->k) {
    case LQ_NIL: return true;
    case LQ_BOOL: return a->u.b == b->u.b;
    case LQ_STR: return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case LQ_RANGE: return a->u.r.lo == b->u.r.lo && a->u.r.hi == b->u.r.hi;
    case LQ_JOBJ: return a->u.j == b->u.j || json_equal(a->u.j, b->u.j);
    case LQ_LOOP: return a->u.loop == b->u.loop;
    default: return false;
    }
}

int slm__lq_cmp(const struct lq_val *a, const struct lq_val *b) {
    if (lq_is_num(a) && lq_is_num(b)) {
        if (a->k == LQ_INT && b->k == LQ_INT) {
            return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        }
        double x = a->k == LQ_INT ? (double)a->u.i : a->u.f;
        double y = b->k == LQ_INT ? (double)b->u.i : b->u.f;
        if (isnan(x) || isnan(y)) {
            return 2;
        }
        return x < y ? -1 : x > y;
    }
    if (a->k == LQ_STR && b->k == LQ_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (c) {
            return c < 0 ? -1 : 1;
        }
        return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
    }
    if (is_seq(a) && is_seq(b)) {
        size_t na = slm__lq_seq_len(a), nb = slm__lq_seq_len(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            struct lq_val x = slm__lq_seq_get(a, i), y = slm__lq_seq_get(b, i);
            int c = slm__lq_cmp(&x, &y);
            if (c) {
                return c;
            }
        }
        return na < nb ? -1 : na > nb;
    }
    if (slm__lq_equal(a, b) && a->k == b->k) {
        return 0;
    }
    return 2;
}

int slm__lq_compare(struct lq_budget *bud, uint32_t pos, const struct lq_val *l, int op,
                    const struct lq_val *r, bool *res) {
    switch (op) {
    case OP_EQ: *res = slm__lq_equal(l, r); return SLM_OK;
    case OP_NE: *res = !slm__lq_equal(l, r); return SLM_OK;
    case OP_CONTAINS:
        *res = false;
        if (!lq_truthy(l) || !lq_truthy(r)) {
            return SLM_OK;
        }
        if (l->k == LQ_STR) {
            struct slm_str needle;
            int rc = slm__lq_to_str(bud, r, &needle);
            if (rc != SLM_OK) {
                return rc;
            }
            *res = slm_str_find((struct slm_str){l->u.s.p, l->u.s.n}, needle, 0) != SIZE_MAX;
        } else if (is_seq(l) || l->k == LQ_RANGE) {
            size_t n = slm__lq_seq_len(l);
            int rc = slm__lq_charge(bud, n, pos);
            if (rc != SLM_OK) {
                return rc;
            }
            for (size_t i = 0; i < n && !*res; i++) {
                struct lq_val e = slm__lq_seq_get(l, i);
                *res = slm__lq_equal(&e, r);
            }
        } else if (l->k == LQ_JOBJ && r->k == LQ_STR) {
            *res = json_object_getn(l->u.j, r->u.s.p, r->u.s.n) != NULL;
        }
        return SLM_OK;
    default: break;
    }
    *res = false;
    bool ln = lq_is_num(l), rn = lq_is_num(r);
    bool ls = l->k == LQ_STR, rstr = r->k == LQ_STR;
    if ((ln && rstr) || (ls && rn)) {
        return slm__lq_rt_err(bud, pos, SLM_E_INVALID, "cannot compare %s with %s",
                              ln ? "a number" : "a string", rn ? "a number" : "a string");
    }
    if (!((ln && rn) || (ls && rstr))) {
        return SLM_OK; /* nil, booleans, arrays, empty/blank: never ordered */
    }
    int c = slm__lq_cmp(l, r);
    if (c == 2) {
        return SLM_OK;
    }
    switch (op) {
    case OP_LT: *res = c < 0; break;
    case OP_GT: *res = c > 0; break;
    case OP_LE: *res = c <= 0; break;
    case OP_GE: *res = c >= 0; break;
    default: break;
    }
    return SLM_OK;
}

bool slm__lq_lookup_key(const struct lq_val *v, struct slm_str key, struct lq_val *out) {
    if (v->k == LQ_JOBJ) {
        const json_t *j = json_object_getn(v->u.j, key.ptr, key.len);
        *out = j ? lq_from_json(j) : lq_nil();
        return true;
    }
    *out = lq_nil();
    return false;
}
