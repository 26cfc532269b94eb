/*
 * schema_validate.c - checks a JSON value against a schema of slm's subset
 * (slm/grammar.h), and checks the text a constrained generation produced.
 *
 * The schema is checked once (slm__schema_check), then the value is walked
 * with the schema; the first failure wins and its message names the value's
 * JSON pointer and the rule. Patterns run on PCRE2 with a match limit, so a
 * pathological pattern costs bounded time. Compiled patterns are cached for
 * the length of one call. Reentrant.
 */
#include "slm/grammar.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"
#include "slm/json.h"

#define RX_CACHE 16
#define RX_MATCH_LIMIT 1000000u
#define RX_DEPTH_LIMIT 10000u

struct rx_entry {
    const json_t *pattern;
    pcre2_code *code;
};

struct vstate {
    const json_t *root;
    struct slm__jptr ptr; /* the value's pointer */
    struct slm_err *err;
    struct rx_entry cache[RX_CACHE];
    size_t n_cache;
    pcre2_match_context *mctx;
};

static int validate(struct vstate *v, const json_t *s, const json_t *val, int depth);

/* ---------------------------------------------------------------- messages */

/* A short preview of a value for messages. */
static void preview(const json_t *val, char *out, size_t cap) {
    char *text = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        snprintf(out, cap, "the value");
        return;
    }
    if (strlen(text) > 40) {
        snprintf(out, cap, "%.37s...", text);
    } else {
        snprintf(out, cap, "%s", text);
    }
    free(text);
}

static int failv(struct vstate *v, const char *fmt, ...) SLM_PRINTF(2, 3);
static int failv(struct vstate *v, const char *fmt, ...) {
    if (!v->err) {
        return SLM_E_INVALID;
    }
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return slm_err_set(v->err, SLM_E_INVALID, "%s: %s", v->ptr.buf, what);
}

static void type_list(const json_t *s, char *out, size_t cap) {
    const json_t *t = json_object_get(s, "type");
    if (json_is_string(t)) {
        snprintf(out, cap, "%s", json_string_value(t));
        return;
    }
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(t) && n < cap; i++) {
        int w = snprintf(out + n, cap - n, "%s%s", i ? " or " : "",
                         json_string_value(json_array_get(t, i)));
        n += w > 0 ? (size_t)w : 0;
    }
}

static const char *value_type_name(const json_t *val) {
    unsigned t = slm__value_types(val);
    if (t & SLM__T_INTEGER) {
        return "integer";
    }
    for (unsigned bit = 1; bit < SLM__T_ALL; bit <<= 1) {
        if (t & bit) {
            return slm__type_name(bit);
        }
    }
    return "?";
}

/* ---------------------------------------------------------------- strings */

static size_t utf8_count(const char *p, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += ((unsigned char)p[i] & 0xC0) != 0x80;
    }
    return count;
}

static bool digits(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }
    return true;
}

static int num2(const char *p) {
    return (p[0] - '0') * 10 + (p[1] - '0');
}

static bool is_date(const char *p, size_t n) {
    if (n != 10 || p[4] != '-' || p[7] != '-' || !digits(p, 4) || !digits(p + 5, 2) ||
        !digits(p + 8, 2)) {
        return false;
    }
    int year = num2(p) * 100 + num2(p + 2);
    int month = num2(p + 5);
    int day = num2(p + 8);
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1) {
        return false;
    }
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int max = days[month - 1] + (month == 2 && leap ? 1 : 0);
    return day <= max;
}

static bool is_time(const char *p, size_t n) {
    if (n < 9 || p[2] != ':' || p[5] != ':' || !digits(p, 2) || !digits(p + 3, 2) ||
        !digits(p + 6, 2)) {
        return false;
    }
    if (num2(p) > 23 || num2(p + 3) > 59 || num2(p + 6) > 60) {
        return false;
    }
    size_t i = 8;
    if (p[i] == '.') {
        size_t start = ++i;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            i++;
        }
        if (i == start) {
            return false;
        }
    }
    if (i < n && (p[i] == 'Z' || p[i] == 'z')) {
        return i + 1 == n;
    }
    if (i + 6 != n || (p[i] != '+' && p[i] != '-') || p[i + 3] != ':' || !digits(p + i + 1, 2) ||
        !digits(p + i + 4, 2)) {
        return false;
    }
    return num2(p + i + 1) <= 23 && num2(p + i + 4) <= 59;
}

static bool is_uuid(const char *p, size_t n) {
    if (n != 36) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (dash ? c != '-' : !hex) {
            return false;
        }
    }
    return true;
}

static bool format_ok(enum slm__format f, const char *p, size_t n) {
    switch (f) {
    case SLM__FMT_DATE: return is_date(p, n);
    case SLM__FMT_TIME: return is_time(p, n);
    case SLM__FMT_DATE_TIME:
        return n > 11 && (p[10] == 'T' || p[10] == 't') && is_date(p, 10) &&
               is_time(p + 11, n - 11);
    case SLM__FMT_UUID: return is_uuid(p, n);
    default: return true;
    }
}

static int compile(struct vstate *v, const json_t *pat, pcre2_code **out) {
    for (size_t i = 0; i < v->n_cache; i++) {
        if (v->cache[i].pattern == pat) {
            *out = v->cache[i].code;
            return SLM_OK;
        }
    }
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)json_string_value(pat), json_string_length(pat),
                      PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_DOLLAR_ENDONLY, &ec, &off, NULL);
    if (!code) {
        return slm_err_set(v->err, SLM_E_INVALID, "%s: the pattern does not compile", v->ptr.buf);
    }
    if (v->n_cache == RX_CACHE) {
        pcre2_code_free(v->cache[0].code);
        memmove(v->cache, v->cache + 1, (RX_CACHE - 1) * sizeof(v->cache[0]));
        v->n_cache--;
    }
    v->cache[v->n_cache++] = (struct rx_entry){pat, code};
    *out = code;
    return SLM_OK;
}

static int check_pattern(struct vstate *v, const json_t *pat, const json_t *val) {
    pcre2_code *code;
    int rc = compile(v, pat, &code);
    if (rc != SLM_OK) {
        return rc;
    }
    if (!v->mctx) {
        v->mctx = pcre2_match_context_create(NULL);
        if (!v->mctx) {
            return slm_err_set(v->err, SLM_E_NOMEM, "out of memory");
        }
        pcre2_set_match_limit(v->mctx, RX_MATCH_LIMIT);
        pcre2_set_depth_limit(v->mctx, RX_DEPTH_LIMIT);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    if (!md) {
        return slm_err_set(v->err, SLM_E_NOMEM, "out of memory");
    }
    int m = pcre2_match(code, (PCRE2_SPTR)json_string_value(val), json_string_length(val), 0, 0, md,
                        v->mctx);
    pcre2_match_data_free(md);
    if (m >= 0) {
        return SLM_OK;
    }
    if (m == PCRE2_ERROR_MATCHLIMIT || m == PCRE2_ERROR_DEPTHLIMIT || m == PCRE2_ERROR_HEAPLIMIT) {
        return slm_err_set(v->err, SLM_E_LIMIT,
                           "%s: matching the pattern '%.60s' hit its step limit", v->ptr.buf,
                           json_string_value(pat));
    }
    char pv[48];
    preview(val, pv, sizeof(pv));
    return failv(v, "%s does not match the pattern '%.80s'", pv, json_string_value(pat));
}

static int check_string(struct vstate *v, const json_t *s, const json_t *val) {
    const char *p = json_string_value(val);
    size_t n = json_string_length(val);
    size_t count = utf8_count(p, n);
    uint64_t lim;
    if (slm__schema_uint(s, "minLength", &lim) && count < lim) {
        return failv(v, "%zu characters, fewer than the minLength %llu", count,
                     (unsigned long long)lim);
    }
    if (slm__schema_uint(s, "maxLength", &lim) && count > lim) {
        return failv(v, "%zu characters, more than the maxLength %llu", count,
                     (unsigned long long)lim);
    }
    const json_t *fmt = json_object_get(s, "format");
    if (fmt && !format_ok(slm__format_parse(json_string_value(fmt)), p, n)) {
        char pv[48];
        preview(val, pv, sizeof(pv));
        return failv(v, "%s is not a valid %s", pv, json_string_value(fmt));
    }
    const json_t *pat = json_object_get(s, "pattern");
    return pat ? check_pattern(v, pat, val) : SLM_OK;
}

/* ---------------------------------------------------------------- numbers */

/* -1, 0, 1 as a < b, a == b, a > b. */
static int num_cmp(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    long double x = json_is_integer(a) ? (long double)json_integer_value(a) : json_real_value(a);
    long double y = json_is_integer(b) ? (long double)json_integer_value(b) : json_real_value(b);
    return x < y ? -1 : x > y;
}

static int check_number(struct vstate *v, const json_t *s, const json_t *val) {
    const json_t *mn = json_object_get(s, "minimum");
    const json_t *mx = json_object_get(s, "maximum");
    const json_t *emn = json_object_get(s, "exclusiveMinimum");
    const json_t *emx = json_object_get(s, "exclusiveMaximum");
    char pv[48], bv[48];
    preview(val, pv, sizeof(pv));
    if (mn) {
        bool excl = json_is_true(emn); /* draft 4 */
        int c = num_cmp(val, mn);
        if (c < 0 || (excl && c == 0)) {
            preview(mn, bv, sizeof(bv));
            return failv(v, "%s is %s the minimum %s", pv, excl ? "not above" : "less than", bv);
        }
    }
    if (mx) {
        bool excl = json_is_true(emx);
        int c = num_cmp(val, mx);
        if (c > 0 || (excl && c == 0)) {
            preview(mx, bv, sizeof(bv));
            return failv(v, "%s is %s the maximum %s", pv, excl ? "not below" : "greater than", bv);
        }
    }
    if (json_is_number(emn) && num_cmp(val, emn) <= 0) {
        preview(emn, bv, sizeof(bv));
        return failv(v, "%s is not greater than the exclusiveMinimum %s", pv, bv);
    }
    if (json_is_number(emx) && num_cmp(val, emx) >= 0) {
        preview(emx, bv, sizeof(bv));
        return failv(v, "%s is not less than the exclusiveMaximum %s", pv, bv);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- objects and arrays */

static bool declared(const json_t *props, const char *key, size_t len) {
    return json_is_object(props) && json_object_getn(props, key, len) != NULL;
}

static int check_object(struct vstate *v, const json_t *s, const json_t *val, int depth) {
    const json_t *req = json_object_get(s, "required");
    for (size_t i = 0; i < json_array_size(req); i++) {
        const json_t *k = json_array_get(req, i);
        if (!json_object_getn(val, json_string_value(k), json_string_length(k))) {
            return failv(v, "the required property '%.60s' is missing", json_string_value(k));
        }
    }
    const json_t *props = json_object_get(s, "properties");
    const json_t *ap = json_object_get(s, "additionalProperties");
    for (void *it = json_object_iter((json_t *)val); it;
         it = json_object_iter_next((json_t *)val, it)) {
        const char *key = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        const json_t *sub = declared(props, key, kl) ? json_object_getn(props, key, kl) : ap;
        if (!sub) {
            continue;
        }
        size_t old = slm__jptr_push(&v->ptr, key, kl);
        int rc;
        if (sub == ap && json_is_false(ap)) {
            rc = failv(v, "the property is not allowed (additionalProperties is false)");
        } else {
            rc = validate(v, sub, json_object_iter_value(it), depth + 1);
        }
        if (rc != SLM_OK) {
            return rc;
        }
        slm__jptr_pop(&v->ptr, old);
    }
    return SLM_OK;
}

static int check_array(struct vstate *v, const json_t *s, const json_t *val, int depth) {
    size_t n = json_array_size(val);
    uint64_t lim;
    if (slm__schema_uint(s, "minItems", &lim) && n < lim) {
        return failv(v, "%zu items, fewer than the minItems %llu", n, (unsigned long long)lim);
    }
    if (slm__schema_uint(s, "maxItems", &lim) && n > lim) {
        return failv(v, "%zu items, more than the maxItems %llu", n, (unsigned long long)lim);
    }
    const json_t *items = json_object_get(s, "items");
    for (size_t i = 0; items && i < n; i++) {
        size_t old = slm__jptr_push_index(&v->ptr, i);
        int rc = validate(v, items, json_array_get(val, i), depth + 1);
        if (rc != SLM_OK) {
            return rc;
        }
        slm__jptr_pop(&v->ptr, old);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- combinators */

static int check_union(struct vstate *v, const json_t *s, const char *key, const json_t *val,
                       int depth) {
    const json_t *list = json_object_get(s, key);
    bool one = key[0] == 'o';
    struct slm_err first = {0};
    struct slm_err *saved = v->err;
    size_t matched = 0, which[2] = {0, 0};
    struct slm__jptr at = v->ptr;
    for (size_t i = 0; i < json_array_size(list); i++) {
        struct slm_err e = {0};
        v->err = &e;
        int rc = validate(v, json_array_get(list, i), val, depth + 1);
        v->err = saved;
        v->ptr = at;
        if (rc == SLM_OK) {
            if (matched < 2) {
                which[matched] = i;
            }
            matched++;
            if (!one) {
                return SLM_OK;
            }
        } else if (rc != SLM_E_INVALID && rc != SLM_E_UNSUPPORTED) {
            if (saved) {
                *saved = e;
            }
            return rc;
        } else if (first.code == 0) {
            first = e;
        }
    }
    if (matched == 1) {
        return SLM_OK;
    }
    if (matched > 1) {
        return failv(v, "matches alternatives %zu and %zu of 'oneOf'; exactly one must match",
                     which[0], which[1]);
    }
    return failv(v, "matches none of the '%s' alternatives (the first: %.120s)", key, first.msg);
}

/* ---------------------------------------------------------------- the walk */

static int validate(struct vstate *v, const json_t *s, const json_t *val, int depth) {
    if (depth > SLM_SCHEMA_MAX_DEPTH) {
        return slm_err_set(v->err, SLM_E_LIMIT, "%s: nested deeper than %d levels", v->ptr.buf,
                           SLM_SCHEMA_MAX_DEPTH);
    }
    if (json_is_true(s)) {
        return SLM_OK;
    }
    if (json_is_false(s)) {
        return failv(v, "no value is allowed here (the schema is false)");
    }
    const json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        const json_t *target =
            slm__schema_resolve_ref(v->root, json_string_value(ref), json_string_length(ref));
        int rc = validate(v, target, val, depth + 1);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    unsigned vt = slm__value_types(val);
    if (json_object_get(s, "type") && !(slm__schema_types(s) & vt)) {
        char want[80];
        type_list(s, want, sizeof(want));
        return failv(v, "expected %s, got %s", want, value_type_name(val));
    }
    const json_t *ev = json_object_get(s, "enum");
    if (ev) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(ev) && !found; i++) {
            found = slm__json_equal(val, json_array_get(ev, i), 0);
        }
        if (!found) {
            char pv[48];
            preview(val, pv, sizeof(pv));
            return failv(v, "%s is not one of the 'enum' values", pv);
        }
    }
    const json_t *cv = json_object_get(s, "const");
    if (cv && !slm__json_equal(val, cv, 0)) {
        char pv[48], want[48];
        preview(val, pv, sizeof(pv));
        preview(cv, want, sizeof(want));
        return failv(v, "%s is not the 'const' value %s", pv, want);
    }
    int rc = SLM_OK;
    if (json_is_string(val)) {
        rc = check_string(v, s, val);
    } else if (json_is_number(val)) {
        rc = check_number(v, s, val);
    } else if (json_is_object(val)) {
        rc = check_object(v, s, val, depth);
    } else if (json_is_array(val)) {
        rc = check_array(v, s, val, depth);
    }
    if (rc == SLM_OK && json_object_get(s, "anyOf")) {
        rc = check_union(v, s, "anyOf", val, depth);
    }
    if (rc == SLM_OK && json_object_get(s, "oneOf")) {
        rc = check_union(v, s, "oneOf", val, depth);
    }
    const json_t *all = json_object_get(s, "allOf");
    for (size_t i = 0; rc == SLM_OK && i < json_array_size(all); i++) {
        rc = validate(v, json_array_get(all, i), val, depth + 1);
    }
    return rc;
}

int slm_json_schema_validate(const json_t *schema, const json_t *value, struct slm_err *err) {
    if (!value) {
        return slm_err_set(err, SLM_E_INVALID, "no value");
    }
    int rc = slm__schema_check(schema, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct vstate v = {.root = schema, .err = err};
    slm__jptr_init(&v.ptr);
    rc = validate(&v, schema, value, 0);
    for (size_t i = 0; i < v.n_cache; i++) {
        pcre2_code_free(v.cache[i].code);
    }
    pcre2_match_context_free(v.mctx);
    return rc;
}

int slm_json_output_check(const json_t *schema, const char *text, size_t len, bool truncated,
                          json_t **out, struct slm_err *err) {
    json_t *v = NULL;
    struct slm_err perr = {0};
    int rc = slm_json_parse(text ? text : "", text ? len : 0, "output", &v, &perr);
    if (rc != SLM_OK) {
        if (truncated) {
            return slm_err_set(err, SLM_E_INCOMPLETE,
                               "the output was cut at max_tokens before the JSON was complete");
        }
        return slm_err_set(err, SLM_E_INVALID, "the output is not valid JSON: %s", perr.msg);
    }
    if (truncated && json_is_number(v)) {
        json_decref(v);
        return slm_err_set(err, SLM_E_INCOMPLETE,
                           "the output was cut at max_tokens and may be an incomplete number");
    }
    if (!schema && !json_is_object(v)) {
        rc = slm_err_set(err, SLM_E_INVALID, "the output is JSON but not an object");
    } else if (schema) {
        rc = slm_json_schema_validate(schema, v, err);
    }
    if (rc == SLM_OK && out) {
        *out = v;
    } else {
        json_decref(v);
    }
    return rc;
}
