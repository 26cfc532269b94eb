/*
 * regex_gbnf.c - translates a JSON Schema `pattern` into a GBNF expression for
 * the JSON-encoded content of a matching string, and the GBNF escaping the
 * converter shares.
 *
 * A pattern is parsed into a small tree (sets of code points, groups with
 * alternatives, each with a repeat count), then printed. Every atom is a set
 * of code points, so a literal, a class, `.` and `\d` are one case. Where the
 * regex dialects disagree (ECMAScript for JSON Schema, PCRE2 for validation)
 * the grammar takes the intersection, so whatever it lets a model write
 * matches under both. Anything outside the subset is refused with
 * SLM_E_UNSUPPORTED naming the construct, never approximated.
 *
 * Memory: one arena per call. Reentrant.
 */
#include "grammar/internal.h"

#include <stdlib.h>
#include <string.h>

#define RX_MAX_DEPTH 64
/* Grammar elements a pattern may expand to (counted repeats multiply). */
#define RX_MAX_COST 50000u
#define CP_MAX 0x10FFFFu
#define REP_INF UINT32_MAX

/* ---------------------------------------------------------------- GBNF escaping */

size_t slm__utf8_decode(const char *p, size_t n, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)p;
    if (n == 0) {
        return 0;
    }
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, c = s[0] & 0x1Fu, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, c = s[0] & 0x0Fu, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, c = s[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3Fu);
    }
    if (c < min || c > CP_MAX || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    *cp = c;
    return len;
}

static size_t utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int slm__gbnf_put_literal_bytes(struct slm_buf *out, const char *p, size_t n) {
    int rc = SLM_OK;
    for (size_t i = 0; i < n && rc == SLM_OK; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (c) {
        case '"': rc = slm_buf_puts(out, "\\\""); break;
        case '\\': rc = slm_buf_puts(out, "\\\\"); break;
        case '\n': rc = slm_buf_puts(out, "\\n"); break;
        case '\r': rc = slm_buf_puts(out, "\\r"); break;
        case '\t': rc = slm_buf_puts(out, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7F) {
                rc = slm_buf_printf(out, "\\x%02X", c);
            } else {
                rc = slm_buf_putc(out, (char)c);
            }
        }
    }
    return rc;
}

int slm__gbnf_put_json_cp(struct slm_buf *out, uint32_t cp) {
    switch (cp) {
    case '"': return slm_buf_puts(out, "\\\\\\\"");
    case '\\': return slm_buf_puts(out, "\\\\\\\\");
    case 0x08: return slm_buf_puts(out, "\\\\b");
    case 0x09: return slm_buf_puts(out, "\\\\t");
    case 0x0A: return slm_buf_puts(out, "\\\\n");
    case 0x0C: return slm_buf_puts(out, "\\\\f");
    case 0x0D: return slm_buf_puts(out, "\\\\r");
    default: break;
    }
    if (cp < 0x20 || cp == 0x7F) {
        return slm_buf_printf(out, "\\\\u%04x", (unsigned)cp);
    }
    char u[4];
    return slm_buf_append(out, u, utf8_encode(cp, u));
}

int slm__gbnf_put_class_cp(struct slm_buf *out, uint32_t cp) {
    if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) {
        return slm_buf_putc(out, (char)cp);
    }
    if (cp <= 0xFF) {
        return slm_buf_printf(out, "\\x%02X", (unsigned)cp);
    }
    if (cp <= 0xFFFF) {
        return slm_buf_printf(out, "\\u%04X", (unsigned)cp);
    }
    return slm_buf_printf(out, "\\U%08X", (unsigned)cp);
}

/* ---------------------------------------------------------------- code point sets */

struct range {
    uint32_t lo, hi;
};

struct cpset {
    struct range *r;
    size_t n;
};

struct rx_alt;

struct rx_node {
    bool is_group;
    uint32_t min, max;    /* repeat count; max REP_INF = unbounded */
    struct cpset set;     /* !is_group */
    struct rx_alt *alts;  /* is_group */
    struct rx_node *next; /* in its sequence */
};

struct rx_alt {
    struct rx_node *first, *last;
    bool anchor_start, anchor_end; /* top level only */
    struct rx_alt *next;
};

struct rx {
    const char *p;
    size_t len, pos;
    struct slm_arena arena;
    struct slm_err *err;
    unsigned uses;
};

static int rx_nomem(struct rx *x) {
    return slm_err_set(x->err, SLM_E_NOMEM, "pattern: out of memory");
}

static int rx_unsupported(struct rx *x, size_t at, const char *what) {
    return slm_err_set(x->err, SLM_E_UNSUPPORTED, "pattern: %s at offset %zu is not supported",
                       what, at);
}

static int rx_invalid(struct rx *x, size_t at, const char *what) {
    return slm_err_set(x->err, SLM_E_INVALID, "pattern: %s at offset %zu", what, at);
}

static int range_cmp(const void *a, const void *b) {
    const struct range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges in place. */
static void set_normalize(struct cpset *s) {
    if (s->n < 2) {
        return;
    }
    qsort(s->r, s->n, sizeof(*s->r), range_cmp);
    size_t w = 0;
    for (size_t i = 1; i < s->n; i++) {
        if (s->r[i].lo <= s->r[w].hi + 1) {
            s->r[w].hi = SLM_MAX(s->r[w].hi, s->r[i].hi);
        } else {
            s->r[++w] = s->r[i];
        }
    }
    s->n = w + 1;
}

/* A set of `n` ranges copied into the arena. */
static int set_make(struct rx *x, const struct range *r, size_t n, struct cpset *out) {
    out->r = slm_arena_alloc(&x->arena, (n ? n : 1) * sizeof(*r));
    if (!out->r) {
        return rx_nomem(x);
    }
    memcpy(out->r, r, n * sizeof(*r));
    out->n = n;
    set_normalize(out);
    return SLM_OK;
}

/* Complement over all code points (surrogates removed later). */
static int set_complement(struct rx *x, const struct cpset *s, struct cpset *out) {
    struct range *r = slm_arena_alloc(&x->arena, (s->n + 1) * sizeof(*r));
    if (!r) {
        return rx_nomem(x);
    }
    size_t n = 0;
    uint32_t next = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->r[i].lo > next) {
            r[n++] = (struct range){next, s->r[i].lo - 1};
        }
        next = s->r[i].hi + 1;
    }
    if (next <= CP_MAX) {
        r[n++] = (struct range){next, CP_MAX};
    }
    out->r = r;
    out->n = n;
    return SLM_OK;
}

/* Removes [lo, hi] from a normalized set. */
static int set_remove(struct rx *x, struct cpset *s, uint32_t lo, uint32_t hi) {
    struct range *r = slm_arena_alloc(&x->arena, (s->n + 1) * sizeof(*r));
    if (!r) {
        return rx_nomem(x);
    }
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct range a = s->r[i];
        if (a.hi < lo || a.lo > hi) {
            r[n++] = a;
            continue;
        }
        if (a.lo < lo) {
            r[n++] = (struct range){a.lo, lo - 1};
        }
        if (a.hi > hi) {
            r[n++] = (struct range){hi + 1, a.hi};
        }
    }
    s->r = r;
    s->n = n;
    return SLM_OK;
}

static bool set_has(const struct cpset *s, uint32_t cp) {
    for (size_t i = 0; i < s->n; i++) {
        if (cp >= s->r[i].lo && cp <= s->r[i].hi) {
            return true;
        }
    }
    return false;
}

/* A growable list of ranges while a class is being read. */
struct rlist {
    struct range *r;
    size_t n, cap;
};

static int rlist_add(struct rx *x, struct rlist *l, uint32_t lo, uint32_t hi) {
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        struct range *nr = slm_arena_alloc(&x->arena, ncap * sizeof(*nr));
        if (!nr) {
            return rx_nomem(x);
        }
        if (l->n) {
            memcpy(nr, l->r, l->n * sizeof(*nr));
        }
        l->r = nr;
        l->cap = ncap;
    }
    l->r[l->n++] = (struct range){lo, hi};
    return SLM_OK;
}

/* Shorthand classes. `big` picks, where ECMAScript and PCRE2 disagree, the
 * larger set (used inside negated classes), else the smaller one. */
static const struct range digit_r[] = {{'0', '9'}};
static const struct range word_r[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
static const struct range space_ascii_r[] = {{0x09, 0x0D}, {0x20, 0x20}};
static const struct range space_all_r[] = {
    {0x09, 0x0D},     {0x20, 0x20},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};

static int shorthand_add(struct rx *x, struct rlist *l, char c, bool big) {
    const struct range *r;
    size_t n;
    bool neg = c == 'D' || c == 'W' || c == 'S';
    switch (c) {
    case 'd':
    case 'D': r = digit_r, n = SLM_ARRAY_LEN(digit_r); break;
    case 'w':
    case 'W': r = word_r, n = SLM_ARRAY_LEN(word_r); break;
    default:
        /* \s small is ASCII; \S small is the complement of all spaces. */
        if (big != neg) {
            r = space_all_r, n = SLM_ARRAY_LEN(space_all_r);
        } else {
            r = space_ascii_r, n = SLM_ARRAY_LEN(space_ascii_r);
        }
        break;
    }
    struct cpset s = {(struct range *)r, n};
    if (neg) {
        int rc = set_complement(x, &s, &s);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    for (size_t i = 0; i < s.n; i++) {
        int rc = rlist_add(x, l, s.r[i].lo, s.r[i].hi);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- parsing */

static bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static uint32_t hex_value(const char *p, size_t n) {
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        v = v * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Reads \uHHHH (and a following low surrogate) at x->pos (just after "\u"). */
static int read_u_escape(struct rx *x, size_t at, uint32_t *cp) {
    const char *p = x->p + x->pos;
    size_t left = x->len - x->pos;
    if (left < 4 || !is_hex(p[0]) || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3])) {
        return rx_unsupported(x, at, "'\\u' without four hex digits");
    }
    uint32_t v = hex_value(p, 4);
    x->pos += 4;
    if (v >= 0xD800 && v <= 0xDBFF && left >= 10 && p[4] == '\\' && p[5] == 'u' && is_hex(p[6]) &&
        is_hex(p[7]) && is_hex(p[8]) && is_hex(p[9])) {
        uint32_t lo = hex_value(p + 6, 4);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            x->pos += 6;
            *cp = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            return SLM_OK;
        }
    }
    if (v >= 0xD800 && v <= 0xDFFF) {
        return rx_unsupported(x, at, "a lone surrogate escape");
    }
    *cp = v;
    return SLM_OK;
}

/*
 * Reads the escape after a backslash at `at` (x->pos is past the backslash).
 * Sets *cp for a single character, or adds to `l` and sets *is_set for a
 * shorthand class. `in_class` changes \b (backspace there).
 */
static int read_escape(struct rx *x, size_t at, bool in_class, bool big, uint32_t *cp, bool *is_set,
                       struct rlist *l) {
    *is_set = false;
    if (x->pos >= x->len) {
        return rx_invalid(x, at, "trailing backslash");
    }
    char c = x->p[x->pos++];
    switch (c) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S': *is_set = true; return shorthand_add(x, l, c, big);
    case 'n': *cp = '\n'; return SLM_OK;
    case 't': *cp = '\t'; return SLM_OK;
    case 'r': *cp = '\r'; return SLM_OK;
    case 'f': *cp = '\f'; return SLM_OK;
    case 'v': *cp = 0x0B; return SLM_OK;
    case '0':
        if (x->pos < x->len && x->p[x->pos] >= '0' && x->p[x->pos] <= '9') {
            return rx_unsupported(x, at, "an octal escape");
        }
        *cp = 0;
        return SLM_OK;
    case 'x':
        if (x->pos + 2 > x->len || !is_hex(x->p[x->pos]) || !is_hex(x->p[x->pos + 1])) {
            return rx_unsupported(x, at, "'\\x' without two hex digits");
        }
        *cp = hex_value(x->p + x->pos, 2);
        x->pos += 2;
        return SLM_OK;
    case 'u': return read_u_escape(x, at, cp);
    case 'b':
        if (in_class) {
            *cp = 0x08;
            return SLM_OK;
        }
        return rx_unsupported(x, at, "'\\b' (word boundary)");
    case 'B': return rx_unsupported(x, at, "'\\B' (non-word boundary)");
    case 'p':
    case 'P': return rx_unsupported(x, at, "a Unicode property escape ('\\p')");
    case 'k': return rx_unsupported(x, at, "a named backreference ('\\k')");
    case 'c': return rx_unsupported(x, at, "a control escape ('\\c')");
    default: break;
    }
    if (c >= '1' && c <= '9') {
        return rx_unsupported(x, at, "a backreference");
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        char what[48];
        snprintf(what, sizeof(what), "the escape '\\%c'", c);
        return rx_unsupported(x, at, what);
    }
    /* Escaped punctuation or any other character stands for itself. */
    x->pos--;
    size_t used = slm__utf8_decode(x->p + x->pos, x->len - x->pos, cp);
    if (used == 0) {
        return rx_invalid(x, at, "invalid UTF-8");
    }
    x->pos += used;
    return SLM_OK;
}

static int read_literal(struct rx *x, uint32_t *cp) {
    size_t used = slm__utf8_decode(x->p + x->pos, x->len - x->pos, cp);
    if (used == 0) {
        return rx_invalid(x, x->pos, "invalid UTF-8");
    }
    x->pos += used;
    return SLM_OK;
}

/* One item of a class: a character or a shorthand set. */
static int class_item(struct rx *x, bool big, uint32_t *cp, bool *is_set, struct rlist *l) {
    size_t at = x->pos;
    if (x->p[x->pos] == '\\') {
        x->pos++;
        return read_escape(x, at, true, big, cp, is_set, l);
    }
    if (x->p[x->pos] == '[' && x->pos + 1 < x->len &&
        (x->p[x->pos + 1] == ':' || x->p[x->pos + 1] == '=' || x->p[x->pos + 1] == '.')) {
        return rx_unsupported(x, at, "a POSIX class ('[:name:]')");
    }
    *is_set = false;
    return read_literal(x, cp);
}

/* Reads a class; x->pos is just past '['. */
static int parse_class(struct rx *x, struct cpset *out) {
    size_t start = x->pos - 1;
    bool neg = x->pos < x->len && x->p[x->pos] == '^';
    if (neg) {
        x->pos++;
    }
    if (x->pos < x->len && x->p[x->pos] == ']') {
        return rx_unsupported(x, start,
                              "']' first in a class (the dialects disagree; escape it as '\\]')");
    }
    struct rlist l = {0};
    for (;;) {
        if (x->pos >= x->len) {
            return rx_invalid(x, start, "unterminated character class");
        }
        if (x->p[x->pos] == ']') {
            x->pos++;
            break;
        }
        size_t at = x->pos;
        uint32_t lo = 0, hi = 0;
        bool set = false;
        int rc = class_item(x, neg, &lo, &set, &l);
        if (rc != SLM_OK) {
            return rc;
        }
        if (set) {
            if (x->pos + 1 < x->len && x->p[x->pos] == '-' && x->p[x->pos + 1] != ']') {
                return rx_unsupported(x, at, "a range that starts with a class shorthand");
            }
            continue;
        }
        hi = lo;
        if (x->pos + 1 < x->len && x->p[x->pos] == '-' && x->p[x->pos + 1] != ']') {
            x->pos++;
            bool set2 = false;
            rc = class_item(x, neg, &hi, &set2, &l);
            if (rc != SLM_OK) {
                return rc;
            }
            if (set2) {
                return rx_unsupported(x, at, "a range that ends with a class shorthand");
            }
            if (hi < lo) {
                return rx_invalid(x, at, "a range out of order");
            }
        }
        rc = rlist_add(x, &l, lo, hi);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    struct cpset s;
    int rc = set_make(x, l.r, l.n, &s);
    if (rc == SLM_OK && neg) {
        rc = set_complement(x, &s, &s);
    }
    *out = s;
    return rc;
}

static int parse_alts(struct rx *x, int depth, bool top, struct rx_alt **out);

static int new_node(struct rx *x, struct rx_node **out) {
    struct rx_node *n = slm_arena_alloc(&x->arena, sizeof(*n));
    if (!n) {
        return rx_nomem(x);
    }
    n->min = n->max = 1;
    *out = n;
    return SLM_OK;
}

static int parse_group(struct rx *x, int depth, struct rx_node *n) {
    size_t at = x->pos - 1;
    if (depth >= RX_MAX_DEPTH) {
        return rx_unsupported(x, at, "groups nested deeper than 64");
    }
    if (x->pos < x->len && x->p[x->pos] == '?') {
        const char *q = x->p + x->pos;
        size_t left = x->len - x->pos;
        if (left >= 2 && q[1] == ':') {
            x->pos += 2;
        } else if (left >= 2 && (q[1] == '=' || q[1] == '!')) {
            return rx_unsupported(x, at, "a lookahead");
        } else if (left >= 3 && q[1] == '<' && (q[2] == '=' || q[2] == '!')) {
            return rx_unsupported(x, at, "a lookbehind");
        } else if (left >= 2 && (q[1] == '<' || (left >= 3 && q[1] == 'P' && q[2] == '<'))) {
            /* A named group matches what its body matches. */
            size_t i = x->pos + (q[1] == 'P' ? 3 : 2);
            while (i < x->len && x->p[i] != '>') {
                char c = x->p[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_')) {
                    return rx_invalid(x, at, "a bad group name");
                }
                i++;
            }
            if (i >= x->len) {
                return rx_invalid(x, at, "an unterminated group name");
            }
            x->pos = i + 1;
        } else {
            return rx_unsupported(x, at, "this group syntax ('(?')");
        }
    }
    n->is_group = true;
    int rc = parse_alts(x, depth + 1, false, &n->alts);
    if (rc != SLM_OK) {
        return rc;
    }
    if (x->pos >= x->len || x->p[x->pos] != ')') {
        return rx_invalid(x, at, "unbalanced parentheses");
    }
    x->pos++;
    return SLM_OK;
}

/* Reads digits into *v (capped); false when none. */
static bool read_uint(struct rx *x, size_t *i, uint32_t *v) {
    size_t start = *i;
    uint64_t acc = 0;
    while (*i < x->len && x->p[*i] >= '0' && x->p[*i] <= '9') {
        acc = acc * 10 + (uint64_t)(x->p[*i] - '0');
        if (acc > 1000000) {
            acc = 1000000;
        }
        (*i)++;
    }
    *v = (uint32_t)acc;
    return *i > start;
}

/* Recognizes {n}, {n,}, {n,m} at x->pos; returns false (and leaves pos) when
 * the brace is a literal. {,m} is refused: the dialects read it differently. */
static int read_braces(struct rx *x, bool *is_quant, uint32_t *min, uint32_t *max) {
    size_t i = x->pos + 1;
    *is_quant = false;
    if (i < x->len && x->p[i] == ',') {
        return rx_unsupported(x, x->pos, "'{,n}' (write '{0,n}')");
    }
    if (!read_uint(x, &i, min)) {
        return SLM_OK;
    }
    *max = *min;
    if (i < x->len && x->p[i] == ',') {
        i++;
        if (!read_uint(x, &i, max)) {
            *max = REP_INF;
        }
    }
    if (i >= x->len || x->p[i] != '}') {
        return SLM_OK;
    }
    *is_quant = true;
    x->pos = i + 1;
    return SLM_OK;
}

/* Parses a quantifier after an atom, if any. */
static int parse_quant(struct rx *x, struct rx_node *n) {
    if (x->pos >= x->len) {
        return SLM_OK;
    }
    size_t at = x->pos;
    char c = x->p[x->pos];
    uint32_t min, max;
    if (c == '*' || c == '+' || c == '?') {
        min = c == '+' ? 1 : 0;
        max = c == '?' ? 1 : REP_INF;
        x->pos++;
    } else if (c == '{') {
        bool q;
        int rc = read_braces(x, &q, &min, &max);
        if (rc != SLM_OK || !q) {
            return rc;
        }
        if (max != REP_INF && min > max) {
            return rx_invalid(x, at, "a repeat count out of order");
        }
        if (min > SLM_GRAMMAR_MAX_REPEAT || (max != REP_INF && max > SLM_GRAMMAR_MAX_REPEAT)) {
            return rx_unsupported(x, at, "a repeat count above 1000");
        }
    } else {
        return SLM_OK;
    }
    n->min = min;
    n->max = max;
    if (x->pos < x->len && x->p[x->pos] == '?') {
        x->pos++; /* lazy: same language */
    } else if (x->pos < x->len && x->p[x->pos] == '+') {
        return rx_unsupported(x, at, "a possessive quantifier");
    }
    if (x->pos < x->len) {
        char d = x->p[x->pos];
        bool q = false;
        uint32_t a, b;
        if (d == '{' && read_braces(x, &q, &a, &b) == SLM_OK && q) {
            return rx_unsupported(x, x->pos, "a quantifier on a quantifier");
        }
        if (d == '*' || d == '+' || d == '?') {
            return rx_unsupported(x, x->pos, "a quantifier on a quantifier");
        }
    }
    return SLM_OK;
}

static int parse_atom(struct rx *x, int depth, struct rx_node **out) {
    struct rx_node *n = NULL;
    int rc = new_node(x, &n);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t at = x->pos;
    char c = x->p[x->pos++];
    uint32_t cp = 0;
    if (c == '(') {
        rc = parse_group(x, depth, n);
    } else if (c == '[') {
        rc = parse_class(x, &n->set);
    } else if (c == '.') {
        static const struct range nl[] = {{0x0A, 0x0A}, {0x0D, 0x0D}, {0x2028, 0x2029}};
        struct cpset s = {(struct range *)nl, SLM_ARRAY_LEN(nl)};
        rc = set_complement(x, &s, &n->set);
    } else if (c == '\\') {
        struct rlist l = {0};
        bool is_set = false;
        rc = read_escape(x, at, false, false, &cp, &is_set, &l);
        if (rc == SLM_OK) {
            rc = is_set ? set_make(x, l.r, l.n, &n->set)
                        : set_make(x, &(struct range){cp, cp}, 1, &n->set);
        }
    } else if (c == '*' || c == '+' || c == '?') {
        rc = rx_invalid(x, at, "nothing to repeat");
    } else {
        x->pos--;
        if (c == '{') {
            bool q = false;
            uint32_t a, b;
            rc = read_braces(x, &q, &a, &b);
            if (rc == SLM_OK && q) {
                return rx_invalid(x, at, "nothing to repeat");
            }
        }
        if (rc == SLM_OK) {
            rc = read_literal(x, &cp);
        }
        if (rc == SLM_OK) {
            rc = set_make(x, &(struct range){cp, cp}, 1, &n->set);
        }
    }
    if (rc == SLM_OK && !n->is_group) {
        rc = set_remove(x, &n->set, 0xD800, 0xDFFF);
    }
    if (rc == SLM_OK) {
        rc = parse_quant(x, n);
    }
    *out = n;
    return rc;
}

static int parse_seq(struct rx *x, int depth, bool top, struct rx_alt *alt) {
    if (top && x->pos < x->len && x->p[x->pos] == '^') {
        alt->anchor_start = true;
        x->pos++;
    }
    while (x->pos < x->len) {
        char c = x->p[x->pos];
        if (c == '|' || c == ')') {
            break;
        }
        if (c == '$') {
            size_t after = x->pos + 1;
            if (top && (after == x->len || x->p[after] == '|')) {
                alt->anchor_end = true;
                x->pos++;
                break;
            }
            return rx_unsupported(x, x->pos, "'$' inside the pattern (only at its end)");
        }
        if (c == '^') {
            return rx_unsupported(x, x->pos, "'^' inside the pattern (only at its start)");
        }
        struct rx_node *n = NULL;
        int rc = parse_atom(x, depth, &n);
        if (rc != SLM_OK) {
            return rc;
        }
        if (alt->last) {
            alt->last->next = n;
        } else {
            alt->first = n;
        }
        alt->last = n;
    }
    return SLM_OK;
}

static int parse_alts(struct rx *x, int depth, bool top, struct rx_alt **out) {
    struct rx_alt *head = NULL, *tail = NULL;
    for (;;) {
        struct rx_alt *a = slm_arena_alloc(&x->arena, sizeof(*a));
        if (!a) {
            return rx_nomem(x);
        }
        int rc = parse_seq(x, depth, top, a);
        if (rc != SLM_OK) {
            return rc;
        }
        if (tail) {
            tail->next = a;
        } else {
            head = a;
        }
        tail = a;
        if (x->pos < x->len && x->p[x->pos] == '|') {
            x->pos++;
            continue;
        }
        break;
    }
    *out = head;
    return SLM_OK;
}

/* ---------------------------------------------------------------- cost */

static uint64_t alts_cost(const struct rx_alt *a);

static uint64_t node_cost(const struct rx_node *n) {
    uint64_t one = n->is_group ? 1 + alts_cost(n->alts) : 1;
    uint64_t times = n->max == REP_INF ? (uint64_t)n->min + 1 : n->max;
    return one * (times ? times : 1);
}

static uint64_t alts_cost(const struct rx_alt *a) {
    uint64_t total = 0;
    for (; a; a = a->next) {
        for (const struct rx_node *n = a->first; n; n = n->next) {
            total += node_cost(n);
            if (total > RX_MAX_COST) {
                return total;
            }
        }
    }
    return total;
}

/* ---------------------------------------------------------------- printing */

static bool is_named_escape(uint32_t cp) {
    return cp == 0x08 || cp == 0x09 || cp == 0x0A || cp == 0x0C || cp == 0x0D || cp == '"' ||
           cp == '\\';
}

static bool single_cp(const struct rx_node *n, uint32_t *cp) {
    if (n->is_group || n->set.n != 1 || n->set.r[0].lo != n->set.r[0].hi) {
        return false;
    }
    *cp = n->set.r[0].lo;
    return true;
}

/* A set as a GBNF primary: raw characters in [...] plus the escaped forms of
 * quotes, backslashes and control characters it contains. */
static int emit_set(struct rx *x, const struct cpset *s, struct slm_buf *out) {
    struct cpset raw = *s;
    int rc = set_remove(x, &raw, 0x00, 0x1F);
    if (rc == SLM_OK) {
        rc = set_remove(x, &raw, '"', '"');
    }
    if (rc == SLM_OK) {
        rc = set_remove(x, &raw, '\\', '\\');
    }
    if (rc == SLM_OK) {
        rc = set_remove(x, &raw, 0x7F, 0x7F);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    uint32_t opts[40];
    size_t n_opts = 0;
    static const uint32_t named[] = {'"', '\\', 0x08, 0x09, 0x0A, 0x0C, 0x0D};
    for (size_t i = 0; i < SLM_ARRAY_LEN(named); i++) {
        if (set_has(s, named[i])) {
            opts[n_opts++] = named[i];
        }
    }
    /* Other control characters only when nothing else is left: the grammar
     * may write a subset of what the pattern allows, never more. */
    if (raw.n == 0 && n_opts == 0) {
        for (uint32_t cp = 0; cp <= 0x7F && n_opts < SLM_ARRAY_LEN(opts); cp++) {
            if ((cp < 0x20 || cp == 0x7F) && !is_named_escape(cp) && set_has(s, cp)) {
                opts[n_opts++] = cp;
            }
        }
    }
    size_t total = n_opts + (raw.n ? 1 : 0);
    if (total == 0) {
        return slm_err_set(x->err, SLM_E_UNSUPPORTED,
                           "pattern: a character class that matches nothing is not supported");
    }
    if (total > 1) {
        rc = slm_buf_puts(out, "(");
    }
    if (rc == SLM_OK && raw.n) {
        rc = slm_buf_putc(out, '[');
        for (size_t i = 0; i < raw.n && rc == SLM_OK; i++) {
            rc = slm__gbnf_put_class_cp(out, raw.r[i].lo);
            if (rc == SLM_OK && raw.r[i].hi != raw.r[i].lo) {
                rc = slm_buf_putc(out, '-');
                if (rc == SLM_OK) {
                    rc = slm__gbnf_put_class_cp(out, raw.r[i].hi);
                }
            }
        }
        if (rc == SLM_OK) {
            rc = slm_buf_putc(out, ']');
        }
    }
    for (size_t i = 0; i < n_opts && rc == SLM_OK; i++) {
        if (i > 0 || raw.n) {
            rc = slm_buf_puts(out, " | ");
        }
        if (rc == SLM_OK) {
            rc = slm_buf_putc(out, '"');
        }
        if (rc == SLM_OK) {
            rc = slm__gbnf_put_json_cp(out, opts[i]);
        }
        if (rc == SLM_OK) {
            rc = slm_buf_putc(out, '"');
        }
    }
    if (rc == SLM_OK && total > 1) {
        rc = slm_buf_puts(out, ")");
    }
    return rc;
}

static int emit_alts(struct rx *x, const struct rx_alt *a, bool top, struct slm_buf *out);

static int emit_primary(struct rx *x, const struct rx_node *n, struct slm_buf *out) {
    uint32_t cp;
    if (single_cp(n, &cp)) {
        int rc = slm_buf_putc(out, '"');
        if (rc == SLM_OK) {
            rc = slm__gbnf_put_json_cp(out, cp);
        }
        return rc == SLM_OK ? slm_buf_putc(out, '"') : rc;
    }
    if (!n->is_group) {
        return emit_set(x, &n->set, out);
    }
    int rc = slm_buf_puts(out, "(");
    if (rc == SLM_OK) {
        rc = emit_alts(x, n->alts, false, out);
    }
    return rc == SLM_OK ? slm_buf_puts(out, ")") : rc;
}

/* A repeated primary. Counted repeats get their own parentheses: llama.cpp
 * multiplies the counts of all repeats in one sequence against a limit. */
static int emit_node(struct rx *x, const struct rx_node *n, struct slm_buf *out) {
    if (n->max == 0) {
        return slm_buf_puts(out, "\"\"");
    }
    bool counted = !(n->min <= 1 && (n->max == 1 || n->max == REP_INF));
    int rc = counted ? slm_buf_putc(out, '(') : SLM_OK;
    if (rc == SLM_OK) {
        rc = emit_primary(x, n, out);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (!counted) {
        if (n->min == 0 && n->max == 1) {
            rc = slm_buf_putc(out, '?');
        } else if (n->min == 0) {
            rc = slm_buf_putc(out, '*');
        } else if (n->max == REP_INF) {
            rc = slm_buf_putc(out, '+');
        }
        return rc;
    }
    if (n->max == REP_INF) {
        return slm_buf_printf(out, "{%u,})", n->min);
    }
    if (n->min == n->max) {
        return slm_buf_printf(out, "{%u})", n->min);
    }
    return slm_buf_printf(out, "{%u,%u})", n->min, n->max);
}

static int emit_seq(struct rx *x, const struct rx_alt *a, bool top, struct slm_buf *out) {
    int rc = SLM_OK;
    bool first = true;
    if (top && !a->anchor_start) {
        rc = slm_buf_puts(out, "char*");
        x->uses |= SLM__RX_USES_CHAR;
        first = false;
    }
    bool in_lit = false;
    for (const struct rx_node *n = a->first; n && rc == SLM_OK; n = n->next) {
        uint32_t cp;
        bool lit = n->min == 1 && n->max == 1 && single_cp(n, &cp);
        if (lit && in_lit) {
            rc = slm__gbnf_put_json_cp(out, cp);
            continue;
        }
        if (in_lit) {
            rc = slm_buf_putc(out, '"');
            in_lit = false;
            if (rc != SLM_OK) {
                break;
            }
        }
        if (!first) {
            rc = slm_buf_putc(out, ' ');
        }
        first = false;
        if (rc != SLM_OK) {
            break;
        }
        if (lit) {
            rc = slm_buf_putc(out, '"');
            if (rc == SLM_OK) {
                rc = slm__gbnf_put_json_cp(out, cp);
            }
            in_lit = true;
        } else {
            rc = emit_node(x, n, out);
        }
    }
    if (rc == SLM_OK && in_lit) {
        rc = slm_buf_putc(out, '"');
    }
    if (rc == SLM_OK && top && !a->anchor_end) {
        rc = slm_buf_puts(out, first ? "char*" : " char*");
        x->uses |= SLM__RX_USES_CHAR;
        first = false;
    }
    if (rc == SLM_OK && first) {
        rc = slm_buf_puts(out, "\"\""); /* an empty alternative */
    }
    return rc;
}

static int emit_alts(struct rx *x, const struct rx_alt *a, bool top, struct slm_buf *out) {
    int rc = SLM_OK;
    for (const struct rx_alt *it = a; it && rc == SLM_OK; it = it->next) {
        if (it != a) {
            rc = slm_buf_puts(out, " | ");
        }
        if (rc == SLM_OK) {
            rc = emit_seq(x, it, top, out);
        }
    }
    return rc;
}

int slm__regex_to_gbnf(const char *pattern, size_t len, struct slm_buf *out, unsigned *uses,
                       struct slm_err *err) {
    struct rx x = {.p = pattern, .len = len, .err = err};
    slm_arena_init(&x.arena, (size_t)64 << 20);
    struct rx_alt *alts = NULL;
    int rc = parse_alts(&x, 0, true, &alts);
    if (rc == SLM_OK && x.pos < x.len) {
        rc = rx_invalid(&x, x.pos, "unbalanced parentheses");
    }
    if (rc == SLM_OK && alts_cost(alts) > RX_MAX_COST) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "pattern: too many repeats for a grammar (it would expand past %u "
                         "elements)",
                         RX_MAX_COST);
    }
    if (rc == SLM_OK) {
        bool multi = alts && alts->next;
        rc = multi ? slm_buf_putc(out, '(') : SLM_OK;
        if (rc == SLM_OK) {
            rc = emit_alts(&x, alts, true, out);
        }
        if (rc == SLM_OK && multi) {
            rc = slm_buf_putc(out, ')');
        }
        if (rc != SLM_OK && rc != SLM_E_UNSUPPORTED) {
            slm_err_set(err, rc, "pattern: %s while writing the grammar", slm_strerror(rc));
        }
    }
    if (uses) {
        *uses = x.uses;
    }
    slm_arena_free(&x.arena);
    return rc;
}
