/*
 * schema_check.c - the one pass that decides whether a JSON Schema is inside
 * slm's structured-output subset (slm/grammar.h), plus the small helpers the
 * converter and the validator share: JSON pointers, $ref resolution, type
 * sets, equality, formats.
 *
 * The check walks the whole schema (and every $ref target) once, so the
 * converter and the validator report the same errors and can trust shapes
 * afterwards. No allocation survives a call; reentrant.
 */
#include "grammar/internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- pointers */

void slm__jptr_init(struct slm__jptr *p) {
    p->buf[0] = '#';
    p->buf[1] = '\0';
    p->len = 1;
}

/* Appends one byte, keeping room for "..." and the NUL at the end. */
static bool jptr_put(struct slm__jptr *p, char c) {
    if (p->len + 4 >= sizeof(p->buf)) {
        memcpy(p->buf + sizeof(p->buf) - 4, "...", 4);
        p->len = sizeof(p->buf) - 1;
        return false;
    }
    p->buf[p->len++] = c;
    p->buf[p->len] = '\0';
    return true;
}

size_t slm__jptr_push(struct slm__jptr *p, const char *seg, size_t n) {
    size_t old = p->len;
    if (p->len + 4 >= sizeof(p->buf)) {
        return old; /* already truncated */
    }
    bool ok = jptr_put(p, '/');
    for (size_t i = 0; ok && i < n; i++) {
        if (seg[i] == '~') {
            ok = jptr_put(p, '~') && jptr_put(p, '0');
        } else if (seg[i] == '/') {
            ok = jptr_put(p, '~') && jptr_put(p, '1');
        } else if (seg[i] == '\0') {
            ok = jptr_put(p, '\\') && jptr_put(p, '0');
        } else {
            ok = jptr_put(p, seg[i]);
        }
    }
    return old;
}

size_t slm__jptr_push_c(struct slm__jptr *p, const char *seg) {
    return slm__jptr_push(p, seg, strlen(seg));
}

size_t slm__jptr_push_index(struct slm__jptr *p, size_t i) {
    char num[32];
    int n = snprintf(num, sizeof(num), "%zu", i);
    return slm__jptr_push(p, num, (size_t)n);
}

void slm__jptr_pop(struct slm__jptr *p, size_t old_len) {
    if (old_len < sizeof(p->buf)) {
        p->len = old_len;
        p->buf[old_len] = '\0';
    }
}

void slm__jptr_set(struct slm__jptr *p, const char *s, size_t n, struct slm__jptr *save) {
    *save = *p;
    p->len = 0;
    p->buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!jptr_put(p, s[i] ? s[i] : '?')) {
            break;
        }
    }
}

void slm__jptr_restore(struct slm__jptr *p, const struct slm__jptr *save) {
    *p = *save;
}

/* ---------------------------------------------------------------- small helpers */

static const char *const annotations[] = {
    "description", "title",    "examples",   "default",  "$schema",
    "$id",         "$comment", "deprecated", "readOnly", "writeOnly",
};

bool slm__schema_is_annotation(const char *key) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(annotations); i++) {
        if (strcmp(key, annotations[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool json_uint(const json_t *v, uint64_t *out) {
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0.0 && d < 9.0e15 && d == (double)(int64_t)d) {
            *out = (uint64_t)d;
            return true;
        }
    }
    return false;
}

bool slm__schema_uint(const json_t *schema, const char *key, uint64_t *out) {
    const json_t *v = json_is_object(schema) ? json_object_get(schema, key) : NULL;
    return v && json_uint(v, out);
}

static const struct {
    const char *name;
    unsigned bits;
} type_names[] = {
    {"null", SLM__T_NULL},
    {"boolean", SLM__T_BOOLEAN},
    {"object", SLM__T_OBJECT},
    {"array", SLM__T_ARRAY},
    {"number", SLM__T_NUMBER | SLM__T_INTEGER},
    {"string", SLM__T_STRING},
    {"integer", SLM__T_INTEGER},
};

static unsigned type_bits(const json_t *name) {
    if (!json_is_string(name)) {
        return 0;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(type_names); i++) {
        if (strcmp(json_string_value(name), type_names[i].name) == 0) {
            return type_names[i].bits;
        }
    }
    return 0;
}

unsigned slm__schema_types(const json_t *schema) {
    const json_t *t = json_is_object(schema) ? json_object_get(schema, "type") : NULL;
    if (!t) {
        return SLM__T_ALL;
    }
    if (json_is_array(t)) {
        unsigned bits = 0;
        for (size_t i = 0; i < json_array_size(t); i++) {
            bits |= type_bits(json_array_get(t, i));
        }
        return bits;
    }
    return type_bits(t);
}

unsigned slm__value_types(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_NULL: return SLM__T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return SLM__T_BOOLEAN;
    case JSON_OBJECT: return SLM__T_OBJECT;
    case JSON_ARRAY: return SLM__T_ARRAY;
    case JSON_STRING: return SLM__T_STRING;
    case JSON_INTEGER: return SLM__T_NUMBER | SLM__T_INTEGER;
    case JSON_REAL: {
        double d = json_real_value(v);
        bool integral = d >= -9.0e18 && d <= 9.0e18 && d == (double)(int64_t)d;
        return SLM__T_NUMBER | (integral ? SLM__T_INTEGER : 0u);
    }
    }
    return 0;
}

const char *slm__type_name(unsigned bit) {
    switch (bit) {
    case SLM__T_NULL: return "null";
    case SLM__T_BOOLEAN: return "boolean";
    case SLM__T_OBJECT: return "object";
    case SLM__T_ARRAY: return "array";
    case SLM__T_NUMBER: return "number";
    case SLM__T_STRING: return "string";
    case SLM__T_INTEGER: return "integer";
    default: return "?";
    }
}

enum slm__format slm__format_parse(const char *s) {
    if (!s) {
        return SLM__FMT_NONE;
    }
    if (strcmp(s, "date") == 0) {
        return SLM__FMT_DATE;
    }
    if (strcmp(s, "time") == 0) {
        return SLM__FMT_TIME;
    }
    if (strcmp(s, "date-time") == 0) {
        return SLM__FMT_DATE_TIME;
    }
    if (strcmp(s, "uuid") == 0) {
        return SLM__FMT_UUID;
    }
    return SLM__FMT_UNKNOWN;
}

static bool num_equal(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b)) {
        return json_integer_value(a) == json_integer_value(b);
    }
    return json_number_value(a) == json_number_value(b);
}

bool slm__json_equal(const json_t *a, const json_t *b, int depth) {
    if (depth > 256) {
        return false;
    }
    if (json_is_number(a) && json_is_number(b)) {
        return num_equal(a, b);
    }
    if (json_typeof(a) != json_typeof(b)) {
        return false;
    }
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) {
            return false;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!slm__json_equal(json_array_get(a, i), json_array_get(b, i), depth + 1)) {
                return false;
            }
        }
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) {
            return false;
        }
        for (void *it = json_object_iter((json_t *)a); it;
             it = json_object_iter_next((json_t *)a, it)) {
            const json_t *bv =
                json_object_getn(b, json_object_iter_key(it), json_object_iter_key_len(it));
            if (!bv || !slm__json_equal(json_object_iter_value(it), bv, depth + 1)) {
                return false;
            }
        }
        return true;
    }
    default: return true; /* null, true, false */
    }
}

/* ---------------------------------------------------------------- $ref */

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes one pointer segment (%XX, then ~1 and ~0) into `out`. */
static bool decode_segment(const char *s, size_t n, char *out, size_t cap, size_t *out_len) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return false;
            }
            int hi = hexval(s[i + 1]);
            int lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (k >= cap) {
            return false;
        }
        out[k++] = c;
    }
    /* ~1 -> / and ~0 -> ~ after percent-decoding (RFC 6901 over RFC 3986). */
    size_t w = 0;
    for (size_t r = 0; r < k; r++) {
        if (out[r] == '~') {
            if (r + 1 >= k || (out[r + 1] != '0' && out[r + 1] != '1')) {
                return false;
            }
            out[w++] = out[r + 1] == '0' ? '~' : '/';
            r++;
        } else {
            out[w++] = out[r];
        }
    }
    *out_len = w;
    return true;
}

const json_t *slm__schema_resolve_ref(const json_t *root, const char *ref, size_t len) {
    if (len == 0 || ref[0] != '#') {
        return NULL;
    }
    const json_t *cur = root;
    size_t i = 1;
    if (i == len) {
        return root;
    }
    if (ref[i] != '/') {
        return NULL; /* "#name" anchors are not supported */
    }
    char seg[256];
    while (i < len) {
        i++; /* the '/' */
        size_t start = i;
        while (i < len && ref[i] != '/') {
            i++;
        }
        size_t n = 0;
        if (!decode_segment(ref + start, i - start, seg, sizeof(seg), &n)) {
            return NULL;
        }
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, seg, n);
        } else if (json_is_array(cur)) {
            uint64_t idx;
            if (n == 0 || (n > 1 && seg[0] == '0') ||
                slm_parse_u64(slm_str_n(seg, n), &idx) != SLM_OK) {
                return NULL;
            }
            cur = json_array_get(cur, (size_t)idx);
        } else {
            return NULL;
        }
        if (!cur) {
            return NULL;
        }
    }
    return cur;
}

/* ---------------------------------------------------------------- the check */

/* A set of schema nodes already walked, so $ref cycles terminate. */
struct seen {
    const json_t **slots;
    size_t cap, n;
};

static int seen_add(struct seen *s, const json_t *v, bool *added) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        const json_t **ns = calloc(ncap, sizeof(*ns));
        if (!ns) {
            return SLM_E_NOMEM;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i]) {
                size_t h = ((uintptr_t)s->slots[i] >> 4) & (ncap - 1);
                while (ns[h]) {
                    h = (h + 1) & (ncap - 1);
                }
                ns[h] = s->slots[i];
            }
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    size_t h = ((uintptr_t)v >> 4) & (s->cap - 1);
    while (s->slots[h]) {
        if (s->slots[h] == v) {
            *added = false;
            return SLM_OK;
        }
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h] = v;
    s->n++;
    *added = true;
    return SLM_OK;
}

struct check {
    const json_t *root;
    struct slm__jptr ptr;
    struct seen seen;
    struct slm_err *err;
};

static int check_schema(struct check *c, const json_t *s, int depth);

static int fail(struct check *c, int code, const char *key, const char *what) {
    if (key) {
        return slm_err_set(c->err, code, "%s/%s: %s", c->ptr.buf, key, what);
    }
    return slm_err_set(c->err, code, "%s: %s", c->ptr.buf, what);
}

static int check_sub(struct check *c, const char *key, const char *sub, size_t sub_len,
                     const json_t *s, int depth) {
    size_t a = slm__jptr_push_c(&c->ptr, key);
    size_t b = sub ? slm__jptr_push(&c->ptr, sub, sub_len) : c->ptr.len;
    int rc = check_schema(c, s, depth + 1);
    slm__jptr_pop(&c->ptr, b);
    slm__jptr_pop(&c->ptr, a);
    return rc;
}

static int check_map(struct check *c, const char *key, const json_t *v, int depth) {
    if (!json_is_object(v)) {
        return fail(c, SLM_E_INVALID, key, "must be an object of schemas");
    }
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
        int rc = check_sub(c, key, json_object_iter_key(it), json_object_iter_key_len(it),
                           json_object_iter_value(it), depth);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int check_list(struct check *c, const char *key, const json_t *v, int depth) {
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return fail(c, SLM_E_INVALID, key, "must be a non-empty array of schemas");
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        char idx[24];
        int n = snprintf(idx, sizeof(idx), "%zu", i);
        int rc = check_sub(c, key, idx, (size_t)n, json_array_get(v, i), depth);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int check_type(struct check *c, const json_t *v) {
    if (json_is_string(v)) {
        if (!type_bits(v)) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "unknown type '%.40s' (null, boolean, object, array, number, string, "
                     "integer)",
                     json_string_value(v));
            return fail(c, SLM_E_INVALID, "type", msg);
        }
        return SLM_OK;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return fail(c, SLM_E_INVALID, "type", "must be a type name or a non-empty array of them");
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        int rc = check_type(c, json_array_get(v, i));
        if (rc != SLM_OK) {
            return rc;
        }
        if (json_is_array(json_array_get(v, i))) {
            return fail(c, SLM_E_INVALID, "type", "must be a type name or an array of names");
        }
    }
    return SLM_OK;
}

static int check_pattern(struct check *c, const json_t *v) {
    if (!json_is_string(v)) {
        return fail(c, SLM_E_INVALID, "pattern", "must be a string");
    }
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)json_string_value(v), json_string_length(v),
                      PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_DOLLAR_ENDONLY, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR why[120];
        pcre2_get_error_message(ec, why, sizeof(why));
        char msg[200];
        snprintf(msg, sizeof(msg), "invalid regex at offset %zu: %s", (size_t)off, (char *)why);
        return fail(c, SLM_E_INVALID, "pattern", msg);
    }
    pcre2_code_free(re);
    return SLM_OK;
}

static int check_ref(struct check *c, const json_t *v, int depth) {
    if (!json_is_string(v)) {
        return fail(c, SLM_E_INVALID, "$ref", "must be a string");
    }
    const char *ref = json_string_value(v);
    size_t len = json_string_length(v);
    char msg[200];
    if (len == 0 || ref[0] != '#') {
        snprintf(msg, sizeof(msg),
                 "'%.80s' is not supported (only local references like #/$defs/Name)", ref);
        return fail(c, SLM_E_UNSUPPORTED, "$ref", msg);
    }
    const json_t *target = slm__schema_resolve_ref(c->root, ref, len);
    if (!target) {
        snprintf(msg, sizeof(msg), "'%.80s' does not resolve in this schema", ref);
        return fail(c, SLM_E_INVALID, "$ref", msg);
    }
    if (!json_is_object(target) && !json_is_boolean(target)) {
        snprintf(msg, sizeof(msg), "'%.80s' does not point to a schema", ref);
        return fail(c, SLM_E_INVALID, "$ref", msg);
    }
    /* Walk the target now unless it has been walked: it may lie outside the
     * places the tree walk reaches (e.g. a ref into "examples"). */
    struct slm__jptr save;
    slm__jptr_set(&c->ptr, ref, len, &save);
    int rc = check_schema(c, target, depth + 1);
    slm__jptr_restore(&c->ptr, &save);
    return rc;
}

static int check_uint(struct check *c, const json_t *s, const char *key) {
    const json_t *v = json_object_get(s, key);
    uint64_t n;
    if (v && !json_uint(v, &n)) {
        return fail(c, SLM_E_INVALID, key, "must be a non-negative integer");
    }
    return SLM_OK;
}

static int check_min_max(struct check *c, const json_t *s, const char *lo, const char *hi) {
    uint64_t a, b;
    int rc = check_uint(c, s, lo);
    if (rc == SLM_OK) {
        rc = check_uint(c, s, hi);
    }
    if (rc == SLM_OK && slm__schema_uint(s, lo, &a) && slm__schema_uint(s, hi, &b) && a > b) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s %llu is greater than %s %llu: nothing can match", lo,
                 (unsigned long long)a, hi, (unsigned long long)b);
        return fail(c, SLM_E_INVALID, NULL, msg);
    }
    return rc;
}

/* Keywords whose value is checked here one by one. */
static int check_keyword(struct check *c, const json_t *s, const char *key, const json_t *v,
                         int depth) {
    if (slm__schema_is_annotation(key)) {
        return SLM_OK;
    }
    if (strcmp(key, "type") == 0) {
        return check_type(c, v);
    }
    if (strcmp(key, "properties") == 0 || strcmp(key, "$defs") == 0 ||
        strcmp(key, "definitions") == 0) {
        return check_map(c, key, v, depth);
    }
    if (strcmp(key, "additionalProperties") == 0) {
        return check_sub(c, key, NULL, 0, v, depth);
    }
    if (strcmp(key, "items") == 0) {
        if (json_is_array(v)) {
            return fail(c, SLM_E_UNSUPPORTED, key,
                        "'items' as an array (a tuple) is not supported");
        }
        return check_sub(c, key, NULL, 0, v, depth);
    }
    if (strcmp(key, "anyOf") == 0 || strcmp(key, "oneOf") == 0 || strcmp(key, "allOf") == 0) {
        return check_list(c, key, v, depth);
    }
    if (strcmp(key, "required") == 0) {
        bool ok = json_is_array(v);
        for (size_t i = 0; ok && i < json_array_size(v); i++) {
            ok = json_is_string(json_array_get(v, i));
        }
        return ok ? SLM_OK : fail(c, SLM_E_INVALID, key, "must be an array of strings");
    }
    if (strcmp(key, "minItems") == 0 || strcmp(key, "maxItems") == 0) {
        return check_min_max(c, s, "minItems", "maxItems");
    }
    if (strcmp(key, "minLength") == 0 || strcmp(key, "maxLength") == 0) {
        return check_min_max(c, s, "minLength", "maxLength");
    }
    if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0) {
        return json_is_number(v) ? SLM_OK : fail(c, SLM_E_INVALID, key, "must be a number");
    }
    if (strcmp(key, "exclusiveMinimum") == 0 || strcmp(key, "exclusiveMaximum") == 0) {
        return json_is_number(v) || json_is_boolean(v)
                   ? SLM_OK
                   : fail(c, SLM_E_INVALID, key, "must be a number");
    }
    if (strcmp(key, "enum") == 0) {
        return json_is_array(v) && json_array_size(v) > 0
                   ? SLM_OK
                   : fail(c, SLM_E_INVALID, key, "must be a non-empty array");
    }
    if (strcmp(key, "const") == 0) {
        return SLM_OK;
    }
    if (strcmp(key, "pattern") == 0) {
        return check_pattern(c, v);
    }
    if (strcmp(key, "format") == 0) {
        if (!json_is_string(v)) {
            return fail(c, SLM_E_INVALID, key, "must be a string");
        }
        if (slm__format_parse(json_string_value(v)) == SLM__FMT_UNKNOWN) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "format '%.40s' is not supported (date, time, date-time and uuid are)",
                     json_string_value(v));
            return fail(c, SLM_E_UNSUPPORTED, NULL, msg);
        }
        return SLM_OK;
    }
    if (strcmp(key, "$ref") == 0) {
        return check_ref(c, v, depth);
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "'%.60s' is not supported", key);
    return fail(c, SLM_E_UNSUPPORTED, NULL, msg);
}

static int check_schema(struct check *c, const json_t *s, int depth) {
    if (json_is_boolean(s)) {
        return SLM_OK;
    }
    if (!json_is_object(s)) {
        return fail(c, SLM_E_INVALID, NULL, "a schema must be an object or a boolean");
    }
    if (depth > SLM_SCHEMA_MAX_DEPTH) {
        return slm_err_set(c->err, SLM_E_LIMIT, "%s: the schema nests deeper than %d levels",
                           c->ptr.buf, SLM_SCHEMA_MAX_DEPTH);
    }
    bool added = false;
    if (seen_add(&c->seen, s, &added) != SLM_OK) {
        return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
    }
    if (!added) {
        return SLM_OK;
    }
    for (void *it = json_object_iter((json_t *)s); it;
         it = json_object_iter_next((json_t *)s, it)) {
        const char *key = json_object_iter_key(it);
        if (strlen(key) != json_object_iter_key_len(it)) {
            return fail(c, SLM_E_UNSUPPORTED, NULL, "a keyword with a NUL byte is not supported");
        }
        int rc = check_keyword(c, s, key, json_object_iter_value(it), depth);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

int slm__schema_check(const json_t *root, struct slm_err *err) {
    if (!root) {
        return slm_err_set(err, SLM_E_INVALID, "no schema");
    }
    struct check c = {.root = root, .err = err};
    slm__jptr_init(&c.ptr);
    int rc = check_schema(&c, root, 0);
    free(c.seen.slots);
    return rc;
}
