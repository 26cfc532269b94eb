/*
 * liquid/filters_num.c - the math filters: plus minus times divided_by
 * modulo abs ceil floor round at_least at_most, and the sum filter's adding.
 *
 * Liquid's integer/float rules: integers stay integers (divided_by floors,
 * modulo takes the divisor's sign), a float anywhere makes a float. Like
 * Shopify Liquid (which uses BigDecimal), floats are computed on their
 * shortest decimal form, so 10.1 | minus: 2.2 is 7.9 and 10.1 | modulo: 7.0 is
 * 3.1, not 7.8999999999999995 and 3.0999999999999996. Numeric strings count
 * as numbers ("3.5" as a float, "12" as an integer, "abc" as 0); nil and
 * other values are 0. Integer overflow falls back to floats.
 */
#include "liquid/filters.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

enum { NK_INT, NK_DEC, NK_DBL };

/* NK_INT: i. NK_DEC: m * 10^e. NK_DBL: d (NaN, infinities, huge exponents). */
struct num {
    int kind;
    int64_t i;
    i128 m;
    int e;
    double d;
};

#define I128_MAX ((i128)(((u128)1 << 127) - 1))

static struct num from_double(double d) {
    struct num n = {NK_DBL, 0, 0, 0, d};
    if (!isfinite(d)) {
        return n;
    }
    if (d == 0) {
        n.kind = NK_DEC;
        n.m = 0;
        return n;
    }
    char digits[32];
    int decpt;
    int nd = slm__lq_float_digits(fabs(d), digits, &decpt);
    i128 m = 0;
    for (int k = 0; k < nd; k++) {
        m = m * 10 + (digits[k] - '0');
    }
    n.kind = NK_DEC;
    n.m = d < 0 ? -m : m;
    n.e = decpt - nd;
    return n;
}

static struct num to_number(const struct lq_val *v) {
    struct num n = {NK_INT, 0, 0, 0, 0};
    switch (v->k) {
    case LQ_INT: n.i = v->u.i; return n;
    case LQ_FLOAT: return from_double(v->u.f);
    case LQ_STR: break;
    default: return n;
    }
    struct slm_str s = slm_str_trim((struct slm_str){v->u.s.p, v->u.s.n});
    size_t i = 0;
    bool neg = false;
    if (i < s.len && s.ptr[i] == '-') {
        neg = true;
        i++;
    }
    size_t d0 = i;
    while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9') {
        i++;
    }
    size_t ip = i - d0;
    if (ip == 0 || i >= s.len || s.ptr[i] != '.') {
        n.i = slm__lq_str_to_i(v->u.s.p, v->u.s.n);
        return n;
    }
    size_t f0 = ++i;
    while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9') {
        i++;
    }
    if (i != s.len || i == f0) {
        n.i = slm__lq_str_to_i(v->u.s.p, v->u.s.n);
        return n;
    }
    if (s.len - d0 > 36) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%.*s", (int)SLM_MIN(s.len, 120), s.ptr);
        n.kind = NK_DBL;
        n.d = strtod(buf, NULL);
        return n;
    }
    i128 m = 0;
    for (size_t k = d0; k < s.len; k++) {
        if (s.ptr[k] != '.') {
            m = m * 10 + (s.ptr[k] - '0');
        }
    }
    n.kind = NK_DEC;
    n.m = neg ? -m : m;
    n.e = -(int)(s.len - f0);
    return n;
}

static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static double to_double(const struct num *n) {
    if (n->kind == NK_INT) {
        return (double)n->i;
    }
    if (n->kind == NK_DBL) {
        return n->d;
    }
    /* Clinger's fast path: both operands exact, one correctly rounded op. */
    if (n->m > -((i128)1 << 53) && n->m < ((i128)1 << 53) && n->e >= -22 && n->e <= 22) {
        double m = (double)n->m;
        return n->e >= 0 ? m * p10[n->e] : m / p10[-n->e];
    }
    char buf[80];
    char tmp[48];
    size_t k = 0;
    i128 m = n->m;
    bool neg = m < 0;
    u128 u = neg ? (u128)0 - (u128)m : (u128)m;
    do {
        tmp[k++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    size_t j = 0;
    if (neg) {
        buf[j++] = '-';
    }
    while (k) {
        buf[j++] = tmp[--k];
    }
    snprintf(buf + j, sizeof(buf) - j, "e%d", n->e);
    return strtod(buf, NULL);
}

static struct lq_val num_val(const struct num *n) {
    if (n->kind == NK_INT) {
        return lq_int(n->i);
    }
    return lq_float(to_double(n));
}

static struct num as_dec(const struct num *n) {
    if (n->kind == NK_INT) {
        struct num d = {NK_DEC, 0, n->i, 0, 0};
        return d;
    }
    return *n;
}

/* Brings a and b (decimals) to the same exponent; false on overflow. */
static bool align(struct num *a, struct num *b) {
    while (a->e > b->e) {
        if (a->m > I128_MAX / 10 || a->m < -(I128_MAX / 10) || a->e - b->e > 80) {
            return false;
        }
        a->m *= 10;
        a->e--;
    }
    while (b->e > a->e) {
        if (b->m > I128_MAX / 10 || b->m < -(I128_MAX / 10) || b->e - a->e > 80) {
            return false;
        }
        b->m *= 10;
        b->e--;
    }
    return true;
}

static struct num dbl(double d) {
    struct num n = {NK_DBL, 0, 0, 0, d};
    return n;
}

enum { OP_ADD, OP_SUB, OP_MUL };

static struct num arith(const struct num *x, const struct num *y, int op) {
    if (x->kind == NK_INT && y->kind == NK_INT) {
        int64_t r;
        bool ovf = op == OP_ADD   ? __builtin_add_overflow(x->i, y->i, &r)
                   : op == OP_SUB ? __builtin_sub_overflow(x->i, y->i, &r)
                                  : __builtin_mul_overflow(x->i, y->i, &r);
        if (!ovf) {
            struct num n = {NK_INT, r, 0, 0, 0};
            return n;
        }
        double a = (double)x->i, b = (double)y->i;
        return dbl(op == OP_ADD ? a + b : op == OP_SUB ? a - b : a * b);
    }
    if (x->kind != NK_DBL && y->kind != NK_DBL) {
        struct num a = as_dec(x), b = as_dec(y);
        struct num r = {NK_DEC, 0, 0, 0, 0};
        if (op == OP_MUL) {
            if (!__builtin_mul_overflow(a.m, b.m, &r.m) && abs(a.e) < 10000 && abs(b.e) < 10000) {
                r.e = a.e + b.e;
                return r;
            }
        } else if (align(&a, &b)) {
            bool ovf = op == OP_ADD ? __builtin_add_overflow(a.m, b.m, &r.m)
                                    : __builtin_sub_overflow(a.m, b.m, &r.m);
            if (!ovf) {
                r.e = a.e;
                return r;
            }
        }
    }
    double a = to_double(x), b = to_double(y);
    return dbl(op == OP_ADD ? a + b : op == OP_SUB ? a - b : a * b);
}

static int arith_filter(struct lq_budget *bud, struct lq_val *v, const struct lq_val *arg, int op) {
    (void)bud;
    struct num a = to_number(v), b = to_number(arg);
    struct num r = arith(&a, &b, op);
    *v = num_val(&r);
    return SLM_OK;
}

LQ_FILTER(plus) {
    (void)f;
    return arith_filter(fe->bud, v, &args[0], OP_ADD);
}

LQ_FILTER(minus) {
    (void)f;
    return arith_filter(fe->bud, v, &args[0], OP_SUB);
}

LQ_FILTER(times) {
    (void)f;
    return arith_filter(fe->bud, v, &args[0], OP_MUL);
}

static bool is_zero(const struct num *n) {
    return n->kind == NK_INT ? n->i == 0 : n->kind == NK_DEC ? n->m == 0 : n->d == 0;
}

static int div_zero(struct lq_budget *bud, const struct lq_filter *f) {
    return slm__lq_rt_err(bud, f->pos, SLM_E_INVALID, "%s: divided by 0", f->name);
}

LQ_FILTER(divided_by) {
    struct num a = to_number(v), b = to_number(&args[0]);
    if (is_zero(&b)) {
        return div_zero(fe->bud, f);
    }
    if (a.kind == NK_INT && b.kind == NK_INT) {
        if (a.i == INT64_MIN && b.i == -1) {
            *v = lq_float(-(double)INT64_MIN);
            return SLM_OK;
        }
        int64_t q = a.i / b.i;
        if ((a.i % b.i != 0) && ((a.i < 0) != (b.i < 0))) {
            q--;
        }
        *v = lq_int(q);
        return SLM_OK;
    }
    *v = lq_float(to_double(&a) / to_double(&b));
    return SLM_OK;
}

LQ_FILTER(modulo) {
    struct num a = to_number(v), b = to_number(&args[0]);
    if (is_zero(&b)) {
        return div_zero(fe->bud, f);
    }
    if (a.kind == NK_INT && b.kind == NK_INT) {
        if (b.i == -1) {
            *v = lq_int(0);
            return SLM_OK;
        }
        int64_t r = a.i % b.i;
        if (r != 0 && ((r < 0) != (b.i < 0))) {
            r += b.i;
        }
        *v = lq_int(r);
        return SLM_OK;
    }
    if (a.kind != NK_DBL && b.kind != NK_DBL) {
        struct num x = as_dec(&a), y = as_dec(&b);
        if (align(&x, &y)) {
            i128 r = x.m % y.m;
            if (r != 0 && ((r < 0) != (y.m < 0))) {
                r += y.m;
            }
            struct num n = {NK_DEC, 0, r, x.e, 0};
            *v = num_val(&n);
            return SLM_OK;
        }
    }
    double x = to_double(&a), y = to_double(&b);
    double r = fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) {
        r += y;
    }
    *v = lq_float(r);
    return SLM_OK;
}

LQ_FILTER(abs) {
    (void)fe;
    (void)f;
    (void)args;
    struct num a = to_number(v);
    if (a.kind == NK_INT) {
        *v = a.i == INT64_MIN ? lq_float(-(double)INT64_MIN) : lq_int(a.i < 0 ? -a.i : a.i);
    } else if (a.kind == NK_DEC) {
        a.m = a.m < 0 ? -a.m : a.m;
        *v = num_val(&a);
    } else {
        *v = lq_float(fabs(a.d));
    }
    return SLM_OK;
}

static i128 pow10_128(int k) {
    i128 p = 1;
    while (k-- > 0) {
        p *= 10;
    }
    return p;
}

/* floor (dir < 0) or ceil (dir > 0) as an integer value. */
static struct lq_val round_dir(const struct num *a, int dir) {
    if (a->kind == NK_INT) {
        return lq_int(a->i);
    }
    if (a->kind == NK_DEC && a->e > -38 && a->e < 19) {
        i128 q;
        if (a->e >= 0) {
            q = a->m;
            for (int k = 0; k < a->e; k++) {
                if (q > I128_MAX / 10 || q < -(I128_MAX / 10)) {
                    goto use_double;
                }
                q *= 10;
            }
        } else {
            i128 p = pow10_128(-a->e);
            q = a->m / p;
            i128 r = a->m % p;
            if (dir < 0 && r < 0) {
                q--;
            } else if (dir > 0 && r > 0) {
                q++;
            }
        }
        if (q >= INT64_MIN && q <= INT64_MAX) {
            return lq_int((int64_t)q);
        }
    }
use_double : {
    double d = to_double(a);
    d = dir < 0 ? floor(d) : ceil(d);
    if (d >= -9.2e18 && d <= 9.2e18) {
        return lq_int((int64_t)d);
    }
    return lq_float(d);
}
}

LQ_FILTER(ceil) {
    (void)fe;
    (void)f;
    (void)args;
    struct num a = to_number(v);
    *v = round_dir(&a, 1);
    return SLM_OK;
}

LQ_FILTER(floor) {
    (void)fe;
    (void)f;
    (void)args;
    struct num a = to_number(v);
    *v = round_dir(&a, -1);
    return SLM_OK;
}

/* Rounds m*10^e to `digits` decimals, half away from zero. */
static struct num round_dec(struct num a, int64_t digits) {
    if (a.e >= -digits) {
        return a;
    }
    int64_t k = -digits - a.e;
    if (k > 38) {
        a.m = 0;
        a.e = (int)(digits > 0 ? -digits : 0);
        return a;
    }
    i128 p = pow10_128((int)k);
    i128 q = a.m / p, r = a.m % p;
    i128 ar = r < 0 ? -r : r;
    if (ar * 2 >= p) {
        q += a.m < 0 ? -1 : 1;
    }
    a.m = q;
    a.e = (int)-digits;
    return a;
}

LQ_FILTER(round) {
    (void)fe;
    (void)f;
    int64_t digits = 0;
    if (f->npos > 0) {
        struct num d = to_number(&args[0]);
        if (d.kind == NK_INT) {
            digits = d.i;
        } else {
            double x = to_double(&d);
            digits = x != x ? 0 : x > 1e6 ? 1000000 : x < -1e6 ? -1000000 : (int64_t)x;
        }
    }
    if (digits > 1000000 || digits < -1000000) {
        digits = digits > 0 ? 1000000 : -1000000;
    }
    struct num a = to_number(v);
    if (a.kind == NK_INT && digits >= 0) {
        *v = lq_int(a.i);
        return SLM_OK;
    }
    if (a.kind == NK_DBL) {
        double p = pow(10.0, (double)digits);
        double r = round(a.d * p) / p;
        *v = digits <= 0 && fabs(r) < 9.2e18 ? lq_int((int64_t)r) : lq_float(r);
        return SLM_OK;
    }
    struct num r = round_dec(as_dec(&a), digits);
    if (digits <= 0) {
        struct lq_val iv = round_dir(&r, -1);
        *v = iv;
        return SLM_OK;
    }
    *v = num_val(&r);
    return SLM_OK;
}

static int num_cmp(const struct num *a, const struct num *b) {
    if (a->kind == NK_INT && b->kind == NK_INT) {
        return a->i < b->i ? -1 : a->i > b->i;
    }
    if (a->kind != NK_DBL && b->kind != NK_DBL) {
        struct num x = as_dec(a), y = as_dec(b);
        if (align(&x, &y)) {
            return x.m < y.m ? -1 : x.m > y.m;
        }
    }
    double x = to_double(a), y = to_double(b);
    return x < y ? -1 : x > y;
}

LQ_FILTER(at_least) {
    (void)fe;
    (void)f;
    struct num a = to_number(v), m = to_number(&args[0]);
    *v = num_cmp(&m, &a) > 0 ? num_val(&m) : num_val(&a);
    return SLM_OK;
}

LQ_FILTER(at_most) {
    (void)fe;
    (void)f;
    struct num a = to_number(v), m = to_number(&args[0]);
    *v = num_cmp(&m, &a) < 0 ? num_val(&m) : num_val(&a);
    return SLM_OK;
}

int slm__lq_sum_numbers(struct lq_budget *bud, uint32_t pos, const struct lq_val *items, size_t n,
                        struct lq_val *out) {
    (void)bud;
    (void)pos;
    struct num acc = {NK_INT, 0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        struct num x = to_number(&items[i]);
        acc = arith(&acc, &x, OP_ADD);
    }
    *out = num_val(&acc);
    return SLM_OK;
}
