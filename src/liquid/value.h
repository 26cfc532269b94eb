/*
 * liquid/value.h - Liquid values and what can be done with them without a
 * template: string forms (Ruby's to_s and inspect), number formatting,
 * equality, ordering, blank/empty, array-likes (private to the Liquid engine).
 *
 * A `struct lq_val` (24 bytes) never owns what it points at: strings and
 * JSON point into the template, the variables or a render's scratch memory;
 * arrays made while rendering live in scratch memory. Functions that need
 * memory, charge work or report an error take the render's budget.
 *
 * Depends on budget.h; calls nothing in the tree, the filters or render.c.
 */
#ifndef SLM_LIQUID_VALUE_H
#define SLM_LIQUID_VALUE_H

#include "slm/liquid.h"

#include "liquid/budget.h"

#include <stdbool.h>
#include <stdint.h>

enum lq_kind {
    LQ_NIL = 0,
    LQ_BOOL,
    LQ_INT,
    LQ_FLOAT,
    LQ_STR,   /* u.s: bytes, borrowed (template, vars or scratch) */
    LQ_RANGE, /* u.r: lo..hi inclusive */
    LQ_ARR,   /* u.a: an array made while rendering (scratch) */
    LQ_JARR,  /* u.j: a jansson array (borrowed from vars) */
    LQ_JOBJ,  /* u.j: a jansson object */
    LQ_EMPTY, /* the literal `empty` */
    LQ_BLANK, /* the literal `blank` */
    LQ_LOOP,  /* u.loop: forloop / tablerowloop */
};

struct lq_arr;
struct lq_loop; /* render.c's loop state; values only point at it */

struct lq_val {
    uint8_t k;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            int64_t lo, hi;
        } r;
        const json_t *j;
        const struct lq_arr *a;
        const struct lq_loop *loop;
    } u;
};

struct lq_arr {
    size_t n;
    struct lq_val v[];
};

static inline struct lq_val lq_nil(void) {
    struct lq_val v;
    v.k = LQ_NIL;
    v.u.i = 0;
    return v;
}
static inline struct lq_val lq_int(int64_t i) {
    struct lq_val v;
    v.k = LQ_INT;
    v.u.i = i;
    return v;
}
static inline struct lq_val lq_float(double f) {
    struct lq_val v;
    v.k = LQ_FLOAT;
    v.u.f = f;
    return v;
}
static inline struct lq_val lq_bool(bool b) {
    struct lq_val v;
    v.k = LQ_BOOL;
    v.u.i = 0;
    v.u.b = b;
    return v;
}
static inline struct lq_val lq_str(const char *p, size_t n) {
    struct lq_val v;
    v.k = LQ_STR;
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline bool lq_truthy(const struct lq_val *v) {
    return !(v->k == LQ_NIL || (v->k == LQ_BOOL && !v->u.b));
}
/* double -> int64 without undefined behaviour: NaN is 0, out of range clamps. */
static inline int64_t lq_f2i(double f) {
    if (!(f == f)) {
        return 0;
    }
    if (f >= 9.2e18) {
        return INT64_MAX;
    }
    if (f <= -9.2e18) {
        return INT64_MIN;
    }
    return (int64_t)f;
}
/* A count as a Liquid integer (clamped: a range can hold 2^64 numbers). */
static inline struct lq_val lq_count(size_t n) {
    return lq_int(n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n);
}
static inline bool lq_is_num(const struct lq_val *v) {
    return v->k == LQ_INT || v->k == LQ_FLOAT;
}

/* A jansson value as a Liquid value (no allocation). */
static inline struct lq_val lq_from_json(const json_t *j) {
    struct lq_val v;
    v.u.i = 0;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v.k = LQ_JOBJ;
        v.u.j = j;
        break;
    case JSON_ARRAY:
        v.k = LQ_JARR;
        v.u.j = j;
        break;
    case JSON_STRING:
        v.k = LQ_STR;
        v.u.s.p = json_string_value(j);
        v.u.s.n = json_string_length(j);
        break;
    case JSON_INTEGER:
        v.k = LQ_INT;
        v.u.i = (int64_t)json_integer_value(j);
        break;
    case JSON_REAL:
        v.k = LQ_FLOAT;
        v.u.f = json_real_value(j);
        break;
    case JSON_TRUE:
        v.k = LQ_BOOL;
        v.u.b = true;
        break;
    case JSON_FALSE:
        v.k = LQ_BOOL;
        v.u.b = false;
        break;
    default: v.k = LQ_NIL; break;
    }
    return v;
}

static inline struct lq_val lq_arr_val(const struct lq_arr *a) {
    struct lq_val v;
    v.k = LQ_ARR;
    v.u.a = a;
    return v;
}

/* Comparison operators of conditions (the lexer reads them, the parser stores
 * them, slm__lq_compare applies them). */
enum lq_op { OP_NONE, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_CONTAINS };

/* Appends the Liquid string form of `v` (arrays joined, objects inspected). */
void slm__lq_write_val(struct lq_sb *sb, const struct lq_val *v, int depth);
/* The string form of `v` as a view (no copy for strings; scratch otherwise).
 * Returns SLM_OK or SLM_E_LIMIT. */
int slm__lq_to_str(struct lq_budget *bud, const struct lq_val *v, struct slm_str *out);
/* Formats numbers as Ruby does (5, 5.0, 0.1, 1.0e+16). Returns length. */
size_t slm__lq_fmt_int(int64_t i, char *buf);  /* buf >= 24 */
size_t slm__lq_fmt_float(double f, char *buf); /* buf >= 40 */
/* Shortest round-trip digits of f (> 0, finite) into digits (>= 24 bytes):
 * f = 0.DIGITS x 10^decpt. Returns the number of digits. */
int slm__lq_float_digits(double f, char *digits, int *decpt);
bool slm__lq_equal(const struct lq_val *a, const struct lq_val *b);
/* Ruby's <=>: -1/0/1, or 2 when the values cannot be compared. */
int slm__lq_cmp(const struct lq_val *a, const struct lq_val *b);
/* `left op right` for conditions; SLM_E_INVALID for string vs number. */
int slm__lq_compare(struct lq_budget *bud, uint32_t pos, const struct lq_val *l, int op,
                    const struct lq_val *r, bool *res);
/* blank? / empty? in Shopify's sense. */
bool slm__lq_is_blank(const struct lq_val *v);
bool slm__lq_is_empty(const struct lq_val *v);
/* Length and items of array-likes (LQ_ARR, LQ_JARR, LQ_RANGE); 0 otherwise. */
size_t slm__lq_seq_len(const struct lq_val *v);
struct lq_val slm__lq_seq_get(const struct lq_val *v, size_t i);
/* Number of UTF-8 code points. */
size_t slm__lq_utf8_len(const char *p, size_t n);
/* Ruby's String#to_i (leading integer, else 0). */
int64_t slm__lq_str_to_i(const char *p, size_t n);
/* A fresh scratch array of n items (n may be 0). */
struct lq_arr *slm__lq_arr_new(struct lq_budget *bud, size_t n);
/* Looks `key` up in `v` as a filter would (item[key]): an object's member or
 * nil. False when `v` is not an object. */
bool slm__lq_lookup_key(const struct lq_val *v, struct slm_str key, struct lq_val *out);

#endif /* SLM_LIQUID_VALUE_H */
