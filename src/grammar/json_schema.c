/*
 * json_schema.c - JSON Schema -> GBNF for llama.cpp's grammar sampler.
 *
 * Walks a schema (already accepted by slm__schema_check) and writes one GBNF
 * rule per object, array, constrained string, enum and $ref, named after the
 * schema path ("address-city-kv", "item", "ref-defs-Node"), plus the fixed
 * rules it uses (string, number, space, ...). `root` comes first, then rules
 * in the order they were made, then the fixed rules.
 *
 * The grammar may allow less than the schema (it never writes optional extra
 * properties unless additionalProperties asks for them, and it writes each
 * character one canonical way) but never more, except where slm/grammar.h
 * says validation has to finish the job.
 *
 * Memory: one arena per call; the output goes to the caller's buffer.
 * Reentrant.
 */
#include "slm/grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/internal.h"

/* ---------------------------------------------------------------- fixed rules */

#define G_SPACE "| \" \" | \"\\n\" ([ \\t]{0,20})"
#define G_CHAR "[^\"\\\\\\x00-\\x1F\\x7F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" char-esc)"
/* \u escapes, but not \u0000 nor surrogates: jansson rejects both. */
#define G_CHAR_ESC                                                                                 \
    "\"000\" [1-9a-fA-F] | \"00\" [1-9a-fA-F] [0-9a-fA-F] | \"0\" [1-9a-fA-F] ([0-9a-fA-F]{2}) "   \
    "| [1-9a-cA-Ce-fE-F] ([0-9a-fA-F]{3}) | [dD] [0-7] ([0-9a-fA-F]{2})"
#define G_STRING "\"\\\"\" char* \"\\\"\""
#define G_INTEGRAL "[0] | [1-9] ([0-9]{0,15})"
#define G_DECIMAL "([0-9]{1,16})"
#define G_EXPONENT "[eE] [-+]? ([0-9]{1,2})"
#define G_NUMBER "\"-\"? integral-part (\".\" decimal-part)? (" G_EXPONENT ")?"
#define G_UNUMBER "integral-part (\".\" decimal-part)? (" G_EXPONENT ")?"
#define G_INTEGER "\"-\"? integral-part"
#define G_BOOLEAN "\"true\" | \"false\""
#define G_NULL "\"null\""
#define G_VALUE "object | array | string | number | boolean | null"
#define G_OBJECT                                                                                   \
    "\"{\" space (string \":\" space value (\",\" space string \":\" space value)* space)? \"}\""
#define G_ARRAY "\"[\" space (value (\",\" space value)* space)? \"]\""
#define G_HEX "[0-9a-fA-F]"
#define G_UUID                                                                                     \
    "\"\\\"\" (" G_HEX "{8}) \"-\" (" G_HEX "{4}) \"-\" (" G_HEX "{4}) \"-\" (" G_HEX              \
    "{4}) \"-\" (" G_HEX "{12}) \"\\\"\""
/* Days never past the end of the month (February stops at 28): a subset of
 * RFC 3339 full-date that validation always accepts. */
#define G_DATE                                                                                     \
    "([0-9]{4}) \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" "      \
    "[01]) | (\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02\" \"-\" "     \
    "(\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))"
#define G_TIME                                                                                     \
    "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" ([0-9]{3}))? (\"Z\" "   \
    "| [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"

#define GR(name, body) name " ::= " body "\n"

/* clang-format off */
const char slm_grammar_json_object[] =
    GR("root", "object")
    GR("value", G_VALUE)
    GR("object", G_OBJECT)
    GR("array", G_ARRAY)
    GR("string", G_STRING)
    GR("char", G_CHAR)
    GR("char-esc", G_CHAR_ESC)
    GR("number", G_NUMBER)
    GR("integral-part", G_INTEGRAL)
    GR("decimal-part", G_DECIMAL)
    GR("boolean", G_BOOLEAN)
    GR("null", G_NULL)
    GR("space", G_SPACE);
/* clang-format on */

enum builtin {
    B_SPACE,
    B_CHAR,
    B_CHAR_ESC,
    B_STRING,
    B_INTEGRAL,
    B_DECIMAL,
    B_NUMBER,
    B_UNUMBER,
    B_INTEGER,
    B_BOOLEAN,
    B_NULL,
    B_VALUE,
    B_OBJECT,
    B_ARRAY,
    B_UUID,
    B_DATE,
    B_TIME,
    B_DATE_TIME,
    B_DATE_STRING,
    B_TIME_STRING,
    B_DATE_TIME_STRING,
    B_COUNT,
};

static const struct {
    const char *name;
    const char *body;
    unsigned deps; /* bit set of builtins */
} builtins[B_COUNT] = {
    [B_SPACE] = {"space", G_SPACE, 0},
    [B_CHAR] = {"char", G_CHAR, 1u << B_CHAR_ESC},
    [B_CHAR_ESC] = {"char-esc", G_CHAR_ESC, 0},
    [B_STRING] = {"string", G_STRING, 1u << B_CHAR},
    [B_INTEGRAL] = {"integral-part", G_INTEGRAL, 0},
    [B_DECIMAL] = {"decimal-part", G_DECIMAL, 0},
    [B_NUMBER] = {"number", G_NUMBER, (1u << B_INTEGRAL) | (1u << B_DECIMAL)},
    [B_UNUMBER] = {"unsigned-number", G_UNUMBER, (1u << B_INTEGRAL) | (1u << B_DECIMAL)},
    [B_INTEGER] = {"integer", G_INTEGER, 1u << B_INTEGRAL},
    [B_BOOLEAN] = {"boolean", G_BOOLEAN, 0},
    [B_NULL] = {"null", G_NULL, 0},
    [B_VALUE] = {"value", G_VALUE,
                 (1u << B_OBJECT) | (1u << B_ARRAY) | (1u << B_STRING) | (1u << B_NUMBER) |
                     (1u << B_BOOLEAN) | (1u << B_NULL)},
    [B_OBJECT] = {"object", G_OBJECT, (1u << B_SPACE) | (1u << B_STRING) | (1u << B_VALUE)},
    [B_ARRAY] = {"array", G_ARRAY, (1u << B_SPACE) | (1u << B_VALUE)},
    [B_UUID] = {"uuid", G_UUID, 0},
    [B_DATE] = {"date", G_DATE, 0},
    [B_TIME] = {"time", G_TIME, 0},
    [B_DATE_TIME] = {"date-time", "date \"T\" time", (1u << B_DATE) | (1u << B_TIME)},
    [B_DATE_STRING] = {"date-string", "\"\\\"\" date \"\\\"\"", 1u << B_DATE},
    [B_TIME_STRING] = {"time-string", "\"\\\"\" time \"\\\"\"", 1u << B_TIME},
    [B_DATE_TIME_STRING] = {"date-time-string", "\"\\\"\" date-time \"\\\"\"", 1u << B_DATE_TIME},
};

/* ---------------------------------------------------------------- converter state */

struct rule {
    const char *name;
    const char *body; /* NULL while reserved (a $ref being written) */
};

struct ref_memo {
    const json_t *target;
    const char *name;
    bool open; /* its body is being written */
    int level; /* conv.consume_level when it opened */
};

struct conv {
    const json_t *root;
    struct slm_arena arena;
    struct rule *rules;
    size_t n_rules, cap_rules;
    size_t *index; /* open addressing over rules by name: rule index + 1, 0 = empty */
    size_t index_cap;
    struct ref_memo *refs;
    size_t n_refs, cap_refs;
    unsigned builtins;
    bool root_taken;
    /* Objects and arrays on the current path: each writes text ("{", "[")
     * before anything nested, so a $ref met again at the same level would
     * be left recursion, which llama.cpp refuses. */
    int consume_level;
    struct slm__jptr ptr;
    struct slm_err *err;
};

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != SLM_OK) {                                                                       \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

/* Turns a buffer status into one with a message. */
static int buf_rc(struct conv *c, int rc) {
    if (rc == SLM_OK) {
        return rc;
    }
    if (rc == SLM_E_TOO_LARGE) {
        return slm_err_set(c->err, rc, "%s: the grammar grew past its size cap", c->ptr.buf);
    }
    return slm_err_set(c->err, rc, "%s: %s while writing the grammar", c->ptr.buf,
                       slm_strerror(rc));
}

static int put(struct conv *c, struct slm_buf *b, const char *s) {
    return buf_rc(c, slm_buf_puts(b, s));
}

static int putf(struct conv *c, struct slm_buf *b, const char *fmt, ...) SLM_PRINTF(3, 4);
static int putf(struct conv *c, struct slm_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = slm_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return buf_rc(c, rc);
}

static int nomem(struct conv *c) {
    return slm_err_set(c->err, SLM_E_NOMEM, "out of memory while writing the grammar");
}

static int use_builtin(struct conv *c, enum builtin b, struct slm_buf *expr) {
    c->builtins |= 1u << b;
    return expr ? put(c, expr, builtins[b].name) : SLM_OK;
}

/* ---------------------------------------------------------------- rule table */

static size_t name_hash(const char *s) {
    size_t h = 1469598103934665603ull & SIZE_MAX;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * (1099511628211ull & SIZE_MAX);
    }
    return h;
}

static struct rule *find_rule(struct conv *c, const char *name) {
    if (!c->index_cap) {
        return NULL;
    }
    for (size_t h = name_hash(name) & (c->index_cap - 1);; h = (h + 1) & (c->index_cap - 1)) {
        if (!c->index[h]) {
            return NULL;
        }
        struct rule *r = &c->rules[c->index[h] - 1];
        if (strcmp(r->name, name) == 0) {
            return r;
        }
    }
}

static int index_insert(struct conv *c, size_t idx) {
    if ((c->n_rules + 1) * 2 > c->index_cap) {
        size_t ncap = c->index_cap ? c->index_cap * 2 : 64;
        size_t *ni = calloc(ncap, sizeof(*ni));
        if (!ni) {
            return nomem(c);
        }
        free(c->index);
        c->index = ni;
        c->index_cap = ncap;
        for (size_t i = 0; i < c->n_rules; i++) {
            if (i == idx) {
                continue;
            }
            size_t h = name_hash(c->rules[i].name) & (ncap - 1);
            while (ni[h]) {
                h = (h + 1) & (ncap - 1);
            }
            ni[h] = i + 1;
        }
    }
    size_t h = name_hash(c->rules[idx].name) & (c->index_cap - 1);
    while (c->index[h]) {
        h = (h + 1) & (c->index_cap - 1);
    }
    c->index[h] = idx + 1;
    return SLM_OK;
}

static bool is_reserved(const char *name) {
    if (strcmp(name, "root") == 0) {
        return true;
    }
    for (size_t i = 0; i < B_COUNT; i++) {
        if (strcmp(name, builtins[i].name) == 0) {
            return true;
        }
    }
    return false;
}

/* Rule names are [a-zA-Z0-9-]: other bytes become '-', runs collapse. */
static void sanitize(const char *base, char *out, size_t cap) {
    size_t n = 0;
    bool dash = false;
    for (const char *p = base; *p && n + 1 < cap; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (ok) {
            out[n++] = ch;
            dash = false;
        } else if (!dash && n > 0) {
            out[n++] = '-';
            dash = true;
        }
    }
    while (n > 0 && out[n - 1] == '-') {
        n--;
    }
    if (n == 0) {
        out[n++] = 'r';
    }
    out[n] = '\0';
}

/*
 * Adds a rule made from `base` with `body` (NULL reserves the name for a body
 * set later) and returns its final name through *out. An existing rule of the
 * same base and body is reused. `want_root` gives the top-level rule the name
 * `root`.
 */
static int add_rule(struct conv *c, const char *base, const char *body, bool want_root,
                    const char **out) {
    char name[80];
    char cand[96];
    if (want_root && !c->root_taken) {
        memcpy(name, "root", 5);
    } else {
        sanitize(base, name, 64);
    }
    for (unsigned i = 0;; i++) {
        if (i == 0) {
            snprintf(cand, sizeof(cand), "%s", name);
        } else {
            snprintf(cand, sizeof(cand), "%s-%u", name, i);
        }
        bool root_ok = want_root && !c->root_taken && i == 0;
        if (is_reserved(cand) && !root_ok) {
            continue;
        }
        struct rule *r = find_rule(c, cand);
        if (!r) {
            break;
        }
        if (body && r->body && strcmp(r->body, body) == 0) {
            *out = r->name;
            return SLM_OK;
        }
    }
    if (want_root && strcmp(cand, "root") == 0) {
        c->root_taken = true;
    }
    if (c->n_rules == c->cap_rules) {
        size_t ncap = c->cap_rules ? c->cap_rules * 2 : 32;
        struct rule *nr = realloc(c->rules, ncap * sizeof(*nr));
        if (!nr) {
            return nomem(c);
        }
        c->rules = nr;
        c->cap_rules = ncap;
    }
    struct rule *r = &c->rules[c->n_rules];
    r->name = slm_arena_strndup(&c->arena, cand, strlen(cand));
    r->body = body ? slm_arena_strndup(&c->arena, body, strlen(body)) : NULL;
    if (!r->name || (body && !r->body)) {
        return nomem(c);
    }
    TRY(index_insert(c, c->n_rules));
    c->n_rules++;
    *out = r->name;
    return SLM_OK;
}

static int set_rule_body(struct conv *c, const char *name, const char *body) {
    struct rule *r = find_rule(c, name);
    r->body = slm_arena_strndup(&c->arena, body, strlen(body));
    return r->body ? SLM_OK : nomem(c);
}

/* Adds a rule from a buffer and appends its name to `expr`. */
static int emit_rule(struct conv *c, const char *base, const struct slm_buf *body, bool top,
                     struct slm_buf *expr) {
    const char *name;
    TRY(add_rule(c, base, slm_buf_cstr(body), top, &name));
    return put(c, expr, name);
}

/* "parent-child" (or "child" at the top) in the arena. */
static const char *child_name(struct conv *c, const char *parent, const char *child, size_t n) {
    size_t lp = strcmp(parent, "root") == 0 ? 0 : strlen(parent);
    size_t ln = SLM_MIN(n, (size_t)64);
    char *s = slm_arena_alloc(&c->arena, lp + ln + 2);
    if (!s) {
        return NULL;
    }
    if (lp) {
        memcpy(s, parent, lp);
        s[lp] = '-';
        lp++;
    }
    for (size_t i = 0; i < ln; i++) {
        s[lp + i] = child[i] ? child[i] : '-';
    }
    s[lp + ln] = '\0';
    return s;
}

/* ---------------------------------------------------------------- literals */

/* A JSON value as the exact text the model must write, as a GBNF literal. */
static int put_json_literal(struct conv *c, const json_t *v, struct slm_buf *out) {
    if (json_is_real(v)) {
        /* Shortest text that reads back as the same double. */
        double d = json_real_value(v);
        char num[40];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof(num), "%.*g", prec, d);
            if (strtod(num, NULL) == d) {
                break;
            }
        }
        return putf(c, out, "\"%s\"", num);
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        return nomem(c);
    }
    int rc = put(c, out, "\"");
    if (rc == SLM_OK) {
        rc = buf_rc(c, slm__gbnf_put_literal_bytes(out, text, strlen(text)));
    }
    if (rc == SLM_OK) {
        rc = put(c, out, "\"");
    }
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- repetition */

/* Writes `item` repeated lo..hi times (hi SIZE_MAX = unbounded). Counted
 * repeats get their own parentheses: llama.cpp multiplies the counts of all
 * repeats within one sequence against a limit. */
static int put_repeat(struct conv *c, struct slm_buf *b, const char *item, uint64_t lo,
                      uint64_t hi) {
    if (hi == 0) {
        return SLM_OK;
    }
    if (lo == 0 && hi == 1) {
        return putf(c, b, "%s?", item);
    }
    if (hi == UINT64_MAX && lo <= 1) {
        return putf(c, b, "%s%c", item, lo ? '+' : '*');
    }
    if (lo == 1 && hi == 1) {
        return put(c, b, item);
    }
    if (hi == UINT64_MAX) {
        return putf(c, b, "(%s{%llu,})", item, (unsigned long long)lo);
    }
    if (lo == hi) {
        return putf(c, b, "(%s{%llu})", item, (unsigned long long)lo);
    }
    return putf(c, b, "(%s{%llu,%llu})", item, (unsigned long long)lo, (unsigned long long)hi);
}

/* Reads a min/max pair for a grammar: an upper bound past
 * SLM_GRAMMAR_MAX_REPEAT is left to validation, a lower one is refused. */
static int read_bounds(struct conv *c, const json_t *s, const char *kmin, const char *kmax,
                       uint64_t *lo, uint64_t *hi) {
    *lo = 0;
    *hi = UINT64_MAX;
    slm__schema_uint(s, kmin, lo);
    slm__schema_uint(s, kmax, hi);
    if (*hi != UINT64_MAX && *hi > SLM_GRAMMAR_MAX_REPEAT) {
        *hi = UINT64_MAX;
    }
    if (*lo > SLM_GRAMMAR_MAX_REPEAT) {
        return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                           "%s: %s %llu is above %d, the most a grammar counts", c->ptr.buf, kmin,
                           (unsigned long long)*lo, SLM_GRAMMAR_MAX_REPEAT);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- visiting */

static int gen(struct conv *c, const json_t *s, const char *name, int depth, struct slm_buf *expr);

/* gen() for a sub-schema at pointer segment(s) `k1`/`k2`. */
static int gen_at(struct conv *c, const json_t *s, const char *name, int depth,
                  struct slm_buf *expr, const char *k1, const char *k2, size_t k2_len) {
    size_t a = slm__jptr_push_c(&c->ptr, k1);
    size_t b = k2 ? slm__jptr_push(&c->ptr, k2, k2_len) : c->ptr.len;
    int rc = gen(c, s, name, depth + 1, expr);
    if (rc == SLM_OK) {
        slm__jptr_pop(&c->ptr, b);
        slm__jptr_pop(&c->ptr, a);
    }
    return rc;
}

/* True when `s` has a keyword other than annotations, $defs and `except`. */
static const char *other_keyword(const json_t *s, const char *except) {
    for (void *it = json_object_iter((json_t *)s); it;
         it = json_object_iter_next((json_t *)s, it)) {
        const char *k = json_object_iter_key(it);
        if (strcmp(k, except) != 0 && !slm__schema_is_annotation(k) && strcmp(k, "$defs") != 0 &&
            strcmp(k, "definitions") != 0) {
            return k;
        }
    }
    return NULL;
}

static int gen_ref(struct conv *c, const json_t *s, int depth, struct slm_buf *expr) {
    const json_t *ref = json_object_get(s, "$ref");
    const json_t *target =
        slm__schema_resolve_ref(c->root, json_string_value(ref), json_string_length(ref));
    for (size_t i = 0; i < c->n_refs; i++) {
        if (c->refs[i].target == target) {
            if (c->refs[i].open && c->refs[i].level == c->consume_level) {
                return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                                   "%s: '$ref' '%.80s' refers to itself before any text is "
                                   "written (left recursion cannot be a grammar)",
                                   c->ptr.buf, json_string_value(ref));
            }
            return put(c, expr, c->refs[i].name);
        }
    }
    /* Chains of plain refs that loop would make a rule that only names itself. */
    const json_t *t = target;
    for (int hops = 0; json_is_object(t) && json_object_get(t, "$ref"); hops++) {
        const json_t *r = json_object_get(t, "$ref");
        t = slm__schema_resolve_ref(c->root, json_string_value(r), json_string_length(r));
        if (t == target || hops > SLM_SCHEMA_MAX_DEPTH) {
            return slm_err_set(c->err, SLM_E_INVALID, "%s: '$ref' '%.80s' refers to itself",
                               c->ptr.buf, json_string_value(ref));
        }
    }
    char base[96];
    snprintf(base, sizeof(base), "ref-%.80s", json_string_value(ref) + 1);
    const char *name;
    TRY(add_rule(c, base, NULL, false, &name));
    if (c->n_refs == c->cap_refs) {
        size_t ncap = c->cap_refs ? c->cap_refs * 2 : 8;
        struct ref_memo *nr = realloc(c->refs, ncap * sizeof(*nr));
        if (!nr) {
            return nomem(c);
        }
        c->refs = nr;
        c->cap_refs = ncap;
    }
    size_t memo = c->n_refs++;
    c->refs[memo] = (struct ref_memo){target, name, true, c->consume_level};
    struct slm_buf body = {0};
    struct slm__jptr save;
    slm__jptr_set(&c->ptr, json_string_value(ref), json_string_length(ref), &save);
    int rc = gen(c, target, name, depth + 1, &body);
    c->refs[memo].open = false;
    if (rc == SLM_OK) {
        slm__jptr_restore(&c->ptr, &save);
        rc = set_rule_body(c, name, slm_buf_cstr(&body));
    }
    slm_buf_free(&body);
    return rc == SLM_OK ? put(c, expr, name) : rc;
}

static int gen_union(struct conv *c, const json_t *s, const char *key, const char *name, int depth,
                     struct slm_buf *expr) {
    const json_t *list = json_object_get(s, key);
    int rc = put(c, expr, "(");
    for (size_t i = 0; rc == SLM_OK && i < json_array_size(list); i++) {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        const char *sub = child_name(c, strcmp(name, "root") == 0 ? "alt" : name, idx, strlen(idx));
        if (!sub) {
            return nomem(c);
        }
        if (i > 0) {
            rc = put(c, expr, " | ");
        }
        if (rc == SLM_OK) {
            rc = gen_at(c, json_array_get(list, i), sub, depth, expr, key, idx, strlen(idx));
        }
    }
    return rc == SLM_OK ? put(c, expr, ")") : rc;
}

/* enum or const: the values whose type the schema allows, as literals. */
static int gen_values(struct conv *c, const json_t *s, const char *name, bool top,
                      struct slm_buf *expr) {
    const json_t *cv = json_object_get(s, "const");
    const json_t *ev = json_object_get(s, "enum");
    unsigned types = slm__schema_types(s);
    struct slm_buf body = {0};
    size_t n = 0;
    int rc = SLM_OK;
    size_t count = cv ? 1 : json_array_size(ev);
    for (size_t i = 0; rc == SLM_OK && i < count; i++) {
        const json_t *v = cv ? cv : json_array_get(ev, i);
        if (!(slm__value_types(v) & types)) {
            continue;
        }
        if (cv && ev) {
            bool in_enum = false;
            for (size_t j = 0; j < json_array_size(ev) && !in_enum; j++) {
                in_enum = slm__json_equal(cv, json_array_get(ev, j), 0);
            }
            if (!in_enum) {
                continue;
            }
        }
        if (n++ > 0) {
            rc = put(c, &body, " | ");
        }
        if (rc == SLM_OK) {
            rc = put_json_literal(c, v, &body);
        }
    }
    if (rc == SLM_OK && n == 0) {
        rc = slm_err_set(c->err, SLM_E_INVALID,
                         "%s: no '%s' value fits the schema's other rules, so nothing can match",
                         c->ptr.buf, cv ? "const" : "enum");
    }
    if (rc == SLM_OK) {
        rc = emit_rule(c, name, &body, top, expr);
    }
    slm_buf_free(&body);
    return rc;
}

/* ---------------------------------------------------------------- strings */

static int gen_string(struct conv *c, const json_t *s, const char *name, bool top,
                      struct slm_buf *expr) {
    const json_t *pat = json_object_get(s, "pattern");
    enum slm__format fmt = slm__format_parse(json_string_value(json_object_get(s, "format")));
    if (pat) {
        struct slm_buf body = {0};
        unsigned uses = 0;
        int rc = put(c, &body, "\"\\\"\" (");
        if (rc == SLM_OK) {
            rc = slm__regex_to_gbnf(json_string_value(pat), json_string_length(pat), &body, &uses,
                                    c->err);
            if (rc != SLM_OK) {
                slm_err_prefix(c->err, "%s", c->ptr.buf);
            }
        }
        if (rc == SLM_OK) {
            rc = put(c, &body, ") \"\\\"\"");
        }
        if (rc == SLM_OK && (uses & SLM__RX_USES_CHAR)) {
            rc = use_builtin(c, B_CHAR, NULL);
        }
        if (rc == SLM_OK) {
            rc = emit_rule(c, name, &body, top, expr);
        }
        slm_buf_free(&body);
        return rc;
    }
    switch (fmt) {
    case SLM__FMT_DATE: return use_builtin(c, B_DATE_STRING, expr);
    case SLM__FMT_TIME: return use_builtin(c, B_TIME_STRING, expr);
    case SLM__FMT_DATE_TIME: return use_builtin(c, B_DATE_TIME_STRING, expr);
    case SLM__FMT_UUID: return use_builtin(c, B_UUID, expr);
    default: break;
    }
    uint64_t lo, hi;
    TRY(read_bounds(c, s, "minLength", "maxLength", &lo, &hi));
    if (lo == 0 && hi == UINT64_MAX) {
        return use_builtin(c, B_STRING, expr);
    }
    struct slm_buf body = {0};
    int rc = use_builtin(c, B_CHAR, NULL);
    if (rc == SLM_OK) {
        rc = put(c, &body, "\"\\\"\" ");
    }
    if (rc == SLM_OK) {
        rc = put_repeat(c, &body, "char", lo, hi);
    }
    if (rc == SLM_OK) {
        rc = put(c, &body, hi == 0 ? "\"\\\"\"" : " \"\\\"\"");
    }
    if (rc == SLM_OK) {
        rc = emit_rule(c, name, &body, top, expr);
    }
    slm_buf_free(&body);
    return rc;
}

/* ---------------------------------------------------------------- numbers */

#define MAX_MAG 9999999999999999LL /* 16 digits: what `integer` writes */

static void digits_of(int64_t v, char *out, size_t cap) {
    snprintf(out, cap, "%lld", (long long)v);
}

static int put_digit_range(struct conv *c, struct slm_buf *b, char lo, char hi) {
    return lo == hi ? putf(c, b, "[%c]", lo) : putf(c, b, "[%c-%c]", lo, hi);
}

static int put_any_digits(struct conv *c, struct slm_buf *b, size_t n) {
    if (n == 0) {
        return SLM_OK;
    }
    return n == 1 ? put(c, b, " [0-9]") : putf(c, b, " ([0-9]{%zu})", n);
}

/* Numbers from lo to hi, both strings of the same length (no leading zeros
 * unless the length is 1). */
static int put_uniform(struct conv *c, struct slm_buf *b, const char *lo, const char *hi,
                       size_t len) {
    size_t i = 0;
    while (i < len && lo[i] == hi[i]) {
        i++;
    }
    if (i > 0) {
        TRY(putf(c, b, "\"%.*s\"", (int)i, lo));
        if (i == len) {
            return SLM_OK;
        }
        TRY(put(c, b, " "));
    }
    size_t rest = len - i - 1;
    if (rest == 0) {
        return put_digit_range(c, b, lo[i], hi[i]);
    }
    bool lo_zeros = strspn(lo + i + 1, "0") == rest;
    bool hi_nines = strspn(hi + i + 1, "9") == rest;
    char start = lo_zeros ? lo[i] : (char)(lo[i] + 1);
    char end = hi_nines ? hi[i] : (char)(hi[i] - 1);
    bool first = true;
    TRY(put(c, b, "("));
    if (!lo_zeros) {
        char nines[24];
        memset(nines, '9', rest);
        nines[rest] = '\0';
        TRY(putf(c, b, "[%c] (", lo[i]));
        TRY(put_uniform(c, b, lo + i + 1, nines, rest));
        TRY(put(c, b, ")"));
        first = false;
    }
    if (start <= end) {
        TRY(put(c, b, first ? "" : " | "));
        TRY(put_digit_range(c, b, start, end));
        TRY(put_any_digits(c, b, rest));
        first = false;
    }
    if (!hi_nines) {
        char zeros[24];
        memset(zeros, '0', rest);
        zeros[rest] = '\0';
        TRY(put(c, b, first ? "" : " | "));
        TRY(putf(c, b, "[%c] (", hi[i]));
        TRY(put_uniform(c, b, zeros, hi + i + 1, rest));
        TRY(put(c, b, ")"));
    }
    return put(c, b, ")");
}

/* Non-negative integers lo..hi (hi <= MAX_MAG) as alternatives. */
static int put_urange(struct conv *c, struct slm_buf *b, int64_t lo, int64_t hi, bool *first) {
    int64_t pow = 1;
    for (size_t d = 1; d <= 16; d++, pow *= 10) {
        int64_t seg_lo = d == 1 ? 0 : pow;
        int64_t seg_hi = pow * 10 - 1;
        seg_lo = SLM_MAX(seg_lo, lo);
        seg_hi = SLM_MIN(seg_hi, hi);
        if (seg_lo > seg_hi) {
            continue;
        }
        char a[24], z[24];
        digits_of(seg_lo, a, sizeof(a));
        digits_of(seg_hi, z, sizeof(z));
        TRY(put(c, b, *first ? "" : " | "));
        *first = false;
        TRY(put_uniform(c, b, a, z, strlen(a)));
    }
    return SLM_OK;
}

/* Integer bounds from minimum/maximum/exclusive*, clamped to what the
 * `integer` rule can write. */
static int int_bounds(struct conv *c, const json_t *s, int64_t *lo, int64_t *hi) {
    double l = -(double)MAX_MAG, h = (double)MAX_MAG;
    const json_t *mn = json_object_get(s, "minimum");
    const json_t *mx = json_object_get(s, "maximum");
    const json_t *emn = json_object_get(s, "exclusiveMinimum");
    const json_t *emx = json_object_get(s, "exclusiveMaximum");
    if (json_is_number(mn)) {
        double v = json_number_value(mn);
        l = SLM_MAX(l, json_is_true(emn) ? floor(v) + 1 : ceil(v));
    }
    if (json_is_number(emn)) {
        l = SLM_MAX(l, floor(json_number_value(emn)) + 1);
    }
    if (json_is_number(mx)) {
        double v = json_number_value(mx);
        h = SLM_MIN(h, json_is_true(emx) ? ceil(v) - 1 : floor(v));
    }
    if (json_is_number(emx)) {
        h = SLM_MIN(h, ceil(json_number_value(emx)) - 1);
    }
    if (!(l <= h) || l > (double)MAX_MAG || h < -(double)MAX_MAG) {
        return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                           "%s: no integer of at most 16 digits lies between minimum and maximum",
                           c->ptr.buf);
    }
    *lo = (int64_t)SLM_MAX(l, -(double)MAX_MAG);
    *hi = (int64_t)SLM_MIN(h, (double)MAX_MAG);
    return SLM_OK;
}

static bool has_bounds(const json_t *s) {
    return json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
           json_is_number(json_object_get(s, "exclusiveMinimum")) ||
           json_is_number(json_object_get(s, "exclusiveMaximum"));
}

static int gen_integer(struct conv *c, const json_t *s, const char *name, bool top,
                       struct slm_buf *expr) {
    if (!has_bounds(s)) {
        return use_builtin(c, B_INTEGER, expr);
    }
    int64_t lo = 0, hi = 0;
    TRY(int_bounds(c, s, &lo, &hi));
    struct slm_buf body = {0};
    bool first = true;
    int rc = SLM_OK;
    if (lo < 0) {
        rc = put(c, &body, "\"-\" (");
        bool f2 = true;
        if (rc == SLM_OK) {
            rc = put_urange(c, &body, hi < 0 ? -hi : 1, -lo, &f2);
        }
        if (rc == SLM_OK) {
            rc = put(c, &body, ")");
        }
        first = false;
    }
    if (rc == SLM_OK && hi >= 0) {
        rc = put_urange(c, &body, SLM_MAX(lo, 0), hi, &first);
    }
    if (rc == SLM_OK) {
        rc = emit_rule(c, name, &body, top, expr);
    }
    slm_buf_free(&body);
    return rc;
}

static int gen_number(struct conv *c, const json_t *s, struct slm_buf *expr) {
    /* Only the sign is enforced; the exact bounds are validation's. */
    const json_t *mn = json_object_get(s, "minimum");
    const json_t *emn = json_object_get(s, "exclusiveMinimum");
    const json_t *mx = json_object_get(s, "maximum");
    const json_t *emx = json_object_get(s, "exclusiveMaximum");
    bool nonneg = (json_is_number(mn) && json_number_value(mn) >= 0) ||
                  (json_is_number(emn) && json_number_value(emn) >= 0);
    bool neg = (json_is_number(mx) && json_number_value(mx) < 0) ||
               (json_is_number(emx) && json_number_value(emx) <= 0);
    if (nonneg && !neg) {
        return use_builtin(c, B_UNUMBER, expr);
    }
    if (neg && !nonneg) {
        TRY(put(c, expr, "(\"-\" "));
        TRY(use_builtin(c, B_UNUMBER, expr));
        return put(c, expr, ")");
    }
    return use_builtin(c, B_NUMBER, expr);
}

/* ---------------------------------------------------------------- arrays */

static int gen_array(struct conv *c, const json_t *s, const char *name, int depth, bool top,
                     struct slm_buf *expr) {
    const json_t *items = json_object_get(s, "items");
    uint64_t lo, hi;
    TRY(read_bounds(c, s, "minItems", "maxItems", &lo, &hi));
    if ((!items || json_is_true(items)) && lo == 0 && hi == UINT64_MAX) {
        return use_builtin(c, B_ARRAY, expr);
    }
    TRY(use_builtin(c, B_SPACE, NULL));
    struct slm_buf item = {0};
    struct slm_buf body = {0};
    struct slm_buf sep = {0};
    int rc = SLM_OK;
    if (hi > 0) {
        if (items && json_is_false(items)) {
            /* items: false allows only the empty array. */
            hi = 0;
            if (lo > 0) {
                rc = slm_err_set(c->err, SLM_E_INVALID,
                                 "%s: items is false but minItems is %llu: nothing can match",
                                 c->ptr.buf, (unsigned long long)lo);
            }
        } else if (items) {
            const char *sub = child_name(c, name, "item", 4);
            rc = sub ? gen_at(c, items, sub, depth, &item, "items", NULL, 0) : nomem(c);
        } else {
            rc = use_builtin(c, B_VALUE, &item);
        }
    }
    if (rc == SLM_OK) {
        rc = put(c, &body, "\"[\" space ");
    }
    if (rc == SLM_OK && hi > 0) {
        rc = putf(c, &sep, "(\",\" space %s)", slm_buf_cstr(&item));
        if (rc == SLM_OK) {
            rc = putf(c, &body, "%s%s ", lo == 0 ? "(" : "", slm_buf_cstr(&item));
        }
        if (rc == SLM_OK) {
            rc = put_repeat(c, &body, slm_buf_cstr(&sep), lo ? lo - 1 : 0,
                            hi == UINT64_MAX ? hi : hi - 1);
        }
        if (rc == SLM_OK) {
            rc = put(c, &body, lo == 0 ? " space)? " : " space ");
        }
    }
    if (rc == SLM_OK) {
        rc = put(c, &body, "\"]\"");
    }
    if (rc == SLM_OK) {
        rc = emit_rule(c, name, &body, top, expr);
    }
    slm_buf_free(&item);
    slm_buf_free(&body);
    slm_buf_free(&sep);
    return rc;
}

/* ---------------------------------------------------------------- objects */

struct prop {
    const char *key;
    size_t key_len;
    const json_t *schema; /* NULL: any value (required but not described) */
    bool required;
    const char *kv; /* rule name of `"key": value` */
};

/* Keys that are not one of the declared names: a trie over their code
 * points, written as nested alternatives. */
struct trie_node {
    uint32_t cp;
    bool terminal;
    size_t first_child, next_sibling; /* index + 1, 0 = none */
};

struct trie {
    struct trie_node *n;
    size_t count, cap;
};

static int trie_add(struct conv *c, struct trie *t, const char *key, size_t len) {
    size_t cur = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t used = slm__utf8_decode(key + i, len - i, &cp);
        if (used == 0) {
            return slm_err_set(c->err, SLM_E_INVALID, "%s: a property name is not UTF-8",
                               c->ptr.buf);
        }
        i += used;
        size_t ch = t->n[cur].first_child;
        while (ch && t->n[ch - 1].cp != cp) {
            ch = t->n[ch - 1].next_sibling;
        }
        if (!ch) {
            if (t->count == t->cap) {
                size_t ncap = t->cap * 2;
                struct trie_node *nn = realloc(t->n, ncap * sizeof(*nn));
                if (!nn) {
                    return nomem(c);
                }
                t->n = nn;
                t->cap = ncap;
            }
            t->n[t->count] = (struct trie_node){.cp = cp, .next_sibling = t->n[cur].first_child};
            t->n[cur].first_child = t->count + 1;
            ch = ++t->count;
        }
        cur = ch - 1;
    }
    t->n[cur].terminal = true;
    return SLM_OK;
}

static int put_trie(struct conv *c, const struct trie *t, size_t idx, struct slm_buf *b,
                    int depth) {
    const struct trie_node *nd = &t->n[idx];
    if (!nd->first_child) {
        return put(c, b, "char+");
    }
    if (depth > 256) {
        return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                           "%s: property names longer than 256 characters are not supported "
                           "with additionalProperties",
                           c->ptr.buf);
    }
    TRY(put(c, b, "([^\"\\\\\\x00-\\x1F\\x7F"));
    for (size_t ch = nd->first_child; ch; ch = t->n[ch - 1].next_sibling) {
        TRY(buf_rc(c, slm__gbnf_put_class_cp(b, t->n[ch - 1].cp)));
    }
    TRY(put(c, b, "] char*"));
    for (size_t ch = nd->first_child; ch; ch = t->n[ch - 1].next_sibling) {
        TRY(put(c, b, " | \""));
        TRY(buf_rc(c, slm__gbnf_put_json_cp(b, t->n[ch - 1].cp)));
        TRY(put(c, b, "\" "));
        TRY(put_trie(c, t, ch - 1, b, depth + 1));
    }
    return put(c, b, nd->terminal ? ")" : ")?");
}

/* The rule for an extra key: any string but the declared names. */
static int gen_extra_key(struct conv *c, const struct prop *props, size_t n, const char *name,
                         struct slm_buf *expr) {
    TRY(use_builtin(c, B_CHAR, NULL));
    if (n == 0) {
        return use_builtin(c, B_STRING, expr);
    }
    struct trie t = {.n = calloc(16, sizeof(struct trie_node)), .count = 1, .cap = 16};
    if (!t.n) {
        return nomem(c);
    }
    struct slm_buf body = {0};
    int rc = SLM_OK;
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        rc = trie_add(c, &t, props[i].key, props[i].key_len);
    }
    if (rc == SLM_OK) {
        rc = put(c, &body, "\"\\\"\" ");
    }
    if (rc == SLM_OK) {
        rc = put_trie(c, &t, 0, &body, 0);
    }
    if (rc == SLM_OK) {
        rc = put(c, &body, " \"\\\"\"");
    }
    const char *kname = child_name(c, name, "additional-key", 14);
    if (rc == SLM_OK) {
        rc = kname ? emit_rule(c, kname, &body, false, expr) : nomem(c);
    }
    free(t.n);
    slm_buf_free(&body);
    return rc;
}

struct objgen {
    struct conv *c;
    const char *name;
    struct prop *props;
    size_t n;
    size_t first_req;  /* index of the first required property, n when none */
    const char *extra; /* rule name of an extra `"key": value`, or NULL */
    const char **rest; /* rule names of "the rest from j on", by j */
};

/* Properties j.. each after a comma, written inline. */
static int put_tail(struct objgen *o, size_t j, struct slm_buf *b) {
    for (size_t k = j; k < o->n; k++) {
        TRY(putf(o->c, b, o->props[k].required ? " \",\" space %s" : " (\",\" space %s)?",
                 o->props[k].kv));
    }
    if (o->extra) {
        TRY(putf(o->c, b, " (\",\" space %s)*", o->extra));
    }
    return SLM_OK;
}

/* Properties j.. after at least one was written. Up to the first required
 * property this is a shared rule (several alternatives end with it). */
static int put_after(struct objgen *o, size_t j, struct slm_buf *b) {
    if (j > o->first_req || j == o->n) {
        return put_tail(o, j, b);
    }
    if (!o->rest[j]) {
        struct slm_buf body = {0};
        int rc = j < o->first_req ? putf(o->c, &body, "(\",\" space %s)?", o->props[j].kv)
                                  : putf(o->c, &body, "\",\" space %s", o->props[j].kv);
        if (rc == SLM_OK) {
            rc = j < o->first_req ? put_after(o, j + 1, &body) : put_tail(o, j + 1, &body);
        }
        char base[40];
        snprintf(base, sizeof(base), "rest-%zu", j);
        const char *rname = child_name(o->c, o->name, base, strlen(base));
        if (rc == SLM_OK && !rname) {
            rc = nomem(o->c);
        }
        if (rc == SLM_OK) {
            rc = add_rule(o->c, rname, slm_buf_cstr(&body), false, &o->rest[j]);
        }
        slm_buf_free(&body);
        TRY(rc);
    }
    return putf(o->c, b, " %s", o->rest[j]);
}

/* `{ ... }` with every subset of the optional properties, in order. */
static int put_object_body(struct objgen *o, struct slm_buf *b) {
    struct conv *c = o->c;
    bool may_be_empty = o->first_req == o->n;
    TRY(put(c, b, may_be_empty ? "\"{\" space ((" : "\"{\" space ("));
    size_t last = SLM_MIN(o->first_req, o->n ? o->n - 1 : 0);
    size_t alts = 0;
    for (size_t j = 0; o->n > 0 && j <= last; j++) {
        TRY(put(c, b, alts++ ? " | " : ""));
        TRY(put(c, b, o->props[j].kv));
        TRY(put_after(o, j + 1, b));
    }
    if (may_be_empty && o->extra) {
        TRY(put(c, b, alts++ ? " | " : ""));
        TRY(putf(c, b, "%s (\",\" space %s)*", o->extra, o->extra));
    }
    return put(c, b, may_be_empty ? ") space)? \"}\"" : ") space \"}\"");
}

static bool name_in(const json_t *arr, const char *key, size_t len) {
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        if (json_string_length(v) == len && memcmp(json_string_value(v), key, len) == 0) {
            return true;
        }
    }
    return false;
}

/* Declared properties in schema order, then required names not declared. */
static int collect_props(struct conv *c, const json_t *s, struct prop **out, size_t *n_out) {
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    size_t cap = json_object_size(props) + json_array_size(req);
    struct prop *p = slm_arena_alloc(&c->arena, (cap ? cap : 1) * sizeof(*p));
    if (!p) {
        return nomem(c);
    }
    size_t n = 0;
    for (void *it = json_object_iter((json_t *)props); it;
         it = json_object_iter_next((json_t *)props, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        p[n++] = (struct prop){k, kl, json_object_iter_value(it), name_in(req, k, kl), NULL};
    }
    for (size_t i = 0; i < json_array_size(req); i++) {
        const json_t *v = json_array_get(req, i);
        const char *k = json_string_value(v);
        size_t kl = json_string_length(v);
        bool dup = json_object_getn(props, k, kl) != NULL;
        for (size_t j = 0; j < n && !dup; j++) {
            dup = p[j].key_len == kl && memcmp(p[j].key, k, kl) == 0;
        }
        if (!dup) {
            p[n++] = (struct prop){k, kl, NULL, true, NULL};
        }
    }
    *out = p;
    *n_out = n;
    return SLM_OK;
}

static int gen_kv(struct conv *c, const char *name, int depth, struct prop *p) {
    const char *sub = child_name(c, name, p->key, p->key_len);
    if (!sub) {
        return nomem(c);
    }
    json_t *key = json_stringn(p->key, p->key_len);
    char *text = key ? json_dumps(key, JSON_ENCODE_ANY) : NULL;
    json_decref(key);
    if (!text) {
        return nomem(c);
    }
    struct slm_buf body = {0};
    int rc = put(c, &body, "\"");
    if (rc == SLM_OK) {
        rc = buf_rc(c, slm__gbnf_put_literal_bytes(&body, text, strlen(text)));
    }
    free(text);
    if (rc == SLM_OK) {
        rc = put(c, &body, ":\" space ");
    }
    if (rc == SLM_OK) {
        rc = p->schema ? gen_at(c, p->schema, sub, depth, &body, "properties", p->key, p->key_len)
                       : use_builtin(c, B_VALUE, &body);
    }
    const char *kvname = child_name(c, sub, "kv", 2);
    if (rc == SLM_OK && !kvname) {
        rc = nomem(c);
    }
    if (rc == SLM_OK) {
        rc = add_rule(c, kvname, slm_buf_cstr(&body), false, &p->kv);
    }
    slm_buf_free(&body);
    return rc;
}

static int gen_object(struct conv *c, const json_t *s, const char *name, int depth, bool top,
                      struct slm_buf *expr) {
    const json_t *ap = json_object_get(s, "additionalProperties");
    struct prop *props = NULL;
    size_t n = 0;
    TRY(collect_props(c, s, &props, &n));
    if (n == 0 && (!ap || json_is_true(ap))) {
        return use_builtin(c, B_OBJECT, expr);
    }
    TRY(use_builtin(c, B_SPACE, NULL));
    struct objgen o = {.c = c, .name = name, .props = props, .n = n, .first_req = n};
    for (size_t i = 0; i < n; i++) {
        TRY(gen_kv(c, name, depth, &props[i]));
        if (props[i].required && o.first_req == n) {
            o.first_req = i;
        }
    }
    struct slm_buf body = {0};
    int rc = SLM_OK;
    if (ap && !json_is_false(ap)) {
        struct slm_buf kv = {0};
        const char *vname = child_name(c, name, "additional-value", 16);
        const char *kvname = child_name(c, name, "additional-kv", 13);
        rc = vname && kvname ? gen_extra_key(c, props, n, name, &kv) : nomem(c);
        if (rc == SLM_OK) {
            rc = put(c, &kv, " \":\" space ");
        }
        if (rc == SLM_OK) {
            rc = json_is_true(ap)
                     ? use_builtin(c, B_VALUE, &kv)
                     : gen_at(c, ap, vname, depth, &kv, "additionalProperties", NULL, 0);
        }
        if (rc == SLM_OK) {
            rc = add_rule(c, kvname, slm_buf_cstr(&kv), false, &o.extra);
        }
        slm_buf_free(&kv);
    }
    if (rc == SLM_OK) {
        o.rest = slm_arena_alloc(&c->arena, (n + 1) * sizeof(*o.rest));
        rc = o.rest ? SLM_OK : nomem(c);
    }
    if (rc == SLM_OK) {
        rc = n == 0 && !o.extra ? put(c, &body, "\"{\" space \"}\"") : put_object_body(&o, &body);
    }
    if (rc == SLM_OK) {
        rc = emit_rule(c, name, &body, top, expr);
    }
    slm_buf_free(&body);
    return rc;
}

/* ---------------------------------------------------------------- dispatch */

/* The types to write when "type" is absent: from the keywords present. */
static unsigned inferred_types(const json_t *s) {
    static const struct {
        const char *key;
        unsigned bits;
    } hints[] = {
        {"properties", SLM__T_OBJECT},
        {"required", SLM__T_OBJECT},
        {"additionalProperties", SLM__T_OBJECT},
        {"items", SLM__T_ARRAY},
        {"minItems", SLM__T_ARRAY},
        {"maxItems", SLM__T_ARRAY},
        {"pattern", SLM__T_STRING},
        {"format", SLM__T_STRING},
        {"minLength", SLM__T_STRING},
        {"maxLength", SLM__T_STRING},
        {"minimum", SLM__T_NUMBER},
        {"maximum", SLM__T_NUMBER},
        {"exclusiveMinimum", SLM__T_NUMBER},
        {"exclusiveMaximum", SLM__T_NUMBER},
    };
    unsigned bits = 0;
    for (size_t i = 0; i < SLM_ARRAY_LEN(hints); i++) {
        if (json_object_get(s, hints[i].key)) {
            bits |= hints[i].bits;
        }
    }
    return bits;
}

static int gen_typed(struct conv *c, const json_t *s, unsigned type, const char *name, int depth,
                     bool top, struct slm_buf *expr) {
    switch (type) {
    case SLM__T_NULL: return use_builtin(c, B_NULL, expr);
    case SLM__T_BOOLEAN: return use_builtin(c, B_BOOLEAN, expr);
    case SLM__T_STRING: return gen_string(c, s, name, top, expr);
    case SLM__T_NUMBER: return gen_number(c, s, expr);
    case SLM__T_INTEGER: return gen_integer(c, s, name, top, expr);
    default: break;
    }
    c->consume_level++;
    int rc = type == SLM__T_ARRAY ? gen_array(c, s, name, depth, top, expr)
                                  : gen_object(c, s, name, depth, top, expr);
    c->consume_level--;
    return rc;
}

static int gen(struct conv *c, const json_t *s, const char *name, int depth, struct slm_buf *expr) {
    bool top = depth == 0;
    if (depth > SLM_SCHEMA_MAX_DEPTH) {
        return slm_err_set(c->err, SLM_E_LIMIT, "%s: the schema nests deeper than %d levels",
                           c->ptr.buf, SLM_SCHEMA_MAX_DEPTH);
    }
    if (json_is_true(s)) {
        return use_builtin(c, B_VALUE, expr);
    }
    if (json_is_false(s)) {
        return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                           "%s: the schema false allows no value, so no grammar can write one",
                           c->ptr.buf);
    }
    const char *comb = json_object_get(s, "$ref")    ? "$ref"
                       : json_object_get(s, "anyOf") ? "anyOf"
                       : json_object_get(s, "oneOf") ? "oneOf"
                       : json_object_get(s, "allOf") ? "allOf"
                                                     : NULL;
    if (comb) {
        const char *other = other_keyword(s, comb);
        if (other) {
            return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                               "%s: '%s' together with '%.40s' is not supported in a grammar "
                               "(move '%.40s' into the alternatives)",
                               c->ptr.buf, comb, other, other);
        }
        if (comb[0] == '$') {
            return gen_ref(c, s, depth, expr);
        }
        if (comb[1] != 'l') {
            return gen_union(c, s, comb, name, depth, expr);
        }
        /* allOf of one schema (how some generators attach a description to
         * a $ref) is that schema; an intersection is not a grammar. */
        const json_t *all = json_object_get(s, "allOf");
        if (json_array_size(all) != 1) {
            return slm_err_set(c->err, SLM_E_UNSUPPORTED,
                               "%s: 'allOf' with more than one schema is not supported in a "
                               "grammar",
                               c->ptr.buf);
        }
        return gen_at(c, json_array_get(all, 0), name, depth, expr, "allOf", "0", 1);
    }
    if (json_object_get(s, "const") || json_object_get(s, "enum")) {
        return gen_values(c, s, name, top, expr);
    }
    unsigned types = json_object_get(s, "type") ? slm__schema_types(s) : inferred_types(s);
    if (types & SLM__T_NUMBER) {
        types &= ~(unsigned)SLM__T_INTEGER;
    }
    if (types == 0) {
        return use_builtin(c, B_VALUE, expr);
    }
    unsigned n_types = 0;
    for (unsigned bit = 1; bit < SLM__T_ALL; bit <<= 1) {
        n_types += (types & bit) ? 1 : 0;
    }
    if (n_types == 1) {
        return gen_typed(c, s, types, name, depth, top, expr);
    }
    TRY(put(c, expr, "("));
    bool first = true;
    for (unsigned bit = 1; bit < SLM__T_ALL; bit <<= 1) {
        if (!(types & bit)) {
            continue;
        }
        TRY(put(c, expr, first ? "" : " | "));
        first = false;
        const char *tn = slm__type_name(bit);
        const char *sub =
            child_name(c, strcmp(name, "root") == 0 ? "root-type" : name, tn, strlen(tn));
        if (!sub) {
            return nomem(c);
        }
        TRY(gen_typed(c, s, bit, sub, depth, false, expr));
    }
    return put(c, expr, ")");
}

/* ---------------------------------------------------------------- output */

static int write_grammar(struct conv *c, const char *root_expr, struct slm_buf *out) {
    const struct rule *root = find_rule(c, "root");
    int rc =
        root ? putf(c, out, "root ::= %s\n", root->body) : putf(c, out, "root ::= %s\n", root_expr);
    for (size_t i = 0; rc == SLM_OK && i < c->n_rules; i++) {
        if (&c->rules[i] != root) {
            rc = putf(c, out, "%s ::= %s\n", c->rules[i].name, c->rules[i].body);
        }
    }
    /* Close the set of fixed rules over their dependencies. */
    unsigned used = c->builtins;
    for (unsigned prev = 0; prev != used;) {
        prev = used;
        for (unsigned b = 0; b < B_COUNT; b++) {
            if (used & (1u << b)) {
                used |= builtins[b].deps;
            }
        }
    }
    for (unsigned b = 0; rc == SLM_OK && b < B_COUNT; b++) {
        if (used & (1u << b)) {
            rc = putf(c, out, "%s ::= %s\n", builtins[b].name, builtins[b].body);
        }
    }
    return rc;
}

int slm_json_schema_to_gbnf(const json_t *schema, struct slm_buf *out, struct slm_err *err) {
    if (!out) {
        return slm_err_set(err, SLM_E_INVALID, "no output buffer");
    }
    int rc = slm__schema_check(schema, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct conv c = {.root = schema, .err = err};
    slm_arena_init(&c.arena, (size_t)256 << 20);
    slm__jptr_init(&c.ptr);
    struct slm_buf expr = {0};
    rc = gen(&c, schema, "root", 0, &expr);
    if (rc == SLM_OK) {
        rc = write_grammar(&c, slm_buf_cstr(&expr), out);
    }
    slm_buf_free(&expr);
    free(c.rules);
    free(c.index);
    free(c.refs);
    slm_arena_free(&c.arena);
    return rc;
}
