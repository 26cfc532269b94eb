/*
 * liquid/lexer.c - the template scanner and the markup lexer.
 *
 * Template tokens follow Shopify Liquid: a tag runs from "{%" to the first
 * "%}", an output from "{{" to the first "}}" (quotes are not special there),
 * and a '-' next to the delimiter strips the whitespace on that side
 * (" \t\n\v\f\r"). The text before "{{-" / "{%-" loses its trailing
 * whitespace, the text after "-}}" / "-%}" its leading whitespace.
 *
 * Markup tokens: identifiers ([A-Za-z_][A-Za-z0-9_-]*, with an optional
 * trailing '?'), 'single' and "double" quoted strings (no escapes), numbers
 * (-?digits[.digits]), comparison operators (== != <> < > <= >= contains),
 * and . .. | : , [ ] ( ).
 */
#include "liquid/lexer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void slm__lq_scan_init(struct lq_scan *sc, const char *src, const char *p, const char *end,
                       bool lines) {
    sc->src = src;
    sc->p = p;
    sc->end = end;
    sc->trim_next = false;
    sc->lines = lines;
}

/* Finds "{{" or "{%" at or after p; returns end when none. */
static const char *find_open(const char *p, const char *end) {
    while (p < end) {
        const char *q = memchr(p, '{', (size_t)(end - p));
        if (!q || q + 1 >= end) {
            return end;
        }
        if (q[1] == '{' || q[1] == '%') {
            return q;
        }
        p = q + 1;
    }
    return end;
}

static const char *find2(const char *p, const char *end, char a, char b) {
    while (p + 1 < end) {
        const char *q = memchr(p, a, (size_t)(end - p - 1));
        if (!q) {
            return NULL;
        }
        if (q[1] == b) {
            return q;
        }
        p = q + 1;
    }
    return NULL;
}

static struct slm_str trim(const char *p, const char *e) {
    while (p < e && is_ws(*p)) {
        p++;
    }
    while (e > p && is_ws(e[-1])) {
        e--;
    }
    return (struct slm_str){p, (size_t)(e - p)};
}

/* Splits tag content into name and markup. */
static bool tag_name(const char *p, const char *e, struct lq_tok *tok) {
    while (p < e && is_ws(*p)) {
        p++;
    }
    const char *n = p;
    if (p < e && *p == '#') {
        p++;
    } else {
        while (p < e && is_word(*p)) {
            p++;
        }
    }
    if (p == n) {
        return false;
    }
    tok->name = (struct slm_str){n, (size_t)(p - n)};
    tok->text = trim(p, e);
    return true;
}

static int scan_lines(struct lq_scan *sc, struct lq_tok *tok, const char **bad_pos,
                      const char **what) {
    for (;;) {
        if (sc->p >= sc->end) {
            tok->type = TK_EOF;
            tok->start = sc->end;
            return SLM_OK;
        }
        const char *nl = memchr(sc->p, '\n', (size_t)(sc->end - sc->p));
        const char *le = nl ? nl : sc->end;
        const char *ls = sc->p;
        sc->p = nl ? nl + 1 : sc->end;
        struct slm_str line = trim(ls, le);
        if (line.len == 0) {
            continue;
        }
        tok->type = TK_TAG;
        tok->start = line.ptr;
        tok->trim_right = false;
        if (!tag_name(line.ptr, line.ptr + line.len, tok)) {
            *bad_pos = line.ptr;
            *what = "a tag name at the start of the line";
            return SLM_E_INVALID;
        }
        return SLM_OK;
    }
}

int slm__lq_scan_next(struct lq_scan *sc, struct lq_tok *tok, const char **bad_pos,
                      const char **what) {
    if (sc->lines) {
        return scan_lines(sc, tok, bad_pos, what);
    }
    for (;;) {
        if (sc->p >= sc->end) {
            tok->type = TK_EOF;
            tok->start = sc->end;
            return SLM_OK;
        }
        if (sc->p[0] == '{' && sc->p + 1 < sc->end && (sc->p[1] == '{' || sc->p[1] == '%')) {
            break;
        }
        const char *open = find_open(sc->p, sc->end);
        const char *s = sc->p, *e = open;
        sc->p = open;
        if (sc->trim_next) {
            while (s < e && is_ws(*s)) {
                s++;
            }
            sc->trim_next = false;
        }
        if (open + 2 < sc->end && open[2] == '-') {
            while (e > s && is_ws(e[-1])) {
                e--;
            }
        }
        if (e > s) {
            tok->type = TK_TEXT;
            tok->start = s;
            tok->text = (struct slm_str){s, (size_t)(e - s)};
            tok->trim_right = false;
            return SLM_OK;
        }
    }
    const char *start = sc->p;
    bool output = start[1] == '{';
    const char *inner = start + 2;
    if (inner < sc->end && *inner == '-') {
        inner++;
    }
    const char *close = output ? find2(inner, sc->end, '}', '}') : find2(inner, sc->end, '%', '}');
    if (!close) {
        *bad_pos = start;
        *what = output ? "'}}' to close the output" : "'%}' to close the tag";
        return SLM_E_INVALID;
    }
    sc->p = close + 2;
    const char *ie = close;
    sc->trim_next = false;
    if (ie > inner && ie[-1] == '-') {
        ie--;
        sc->trim_next = true;
    }
    tok->start = start;
    tok->trim_right = sc->trim_next;
    if (output) {
        tok->type = TK_OUTPUT;
        tok->text = (struct slm_str){inner, (size_t)(ie - inner)};
        tok->name = (struct slm_str){"", 0};
        return SLM_OK;
    }
    tok->type = TK_TAG;
    if (!tag_name(inner, ie, tok)) {
        *bad_pos = inner;
        *what = "a tag name after '{%'";
        return SLM_E_INVALID;
    }
    return SLM_OK;
}

bool slm__lq_scan_until_end(struct lq_scan *sc, const char *endname, struct slm_str *body) {
    size_t en = strlen(endname);
    const char *p = sc->p;
    for (;;) {
        const char *q = find2(p, sc->end, '{', '%');
        if (!q) {
            return false;
        }
        const char *r = q + 2;
        if (r < sc->end && *r == '-') {
            r++;
        }
        while (r < sc->end && is_ws(*r)) {
            r++;
        }
        if ((size_t)(sc->end - r) >= en && memcmp(r, endname, en) == 0 &&
            (r + en >= sc->end || !is_word(r[en]))) {
            const char *close = find2(r + en, sc->end, '%', '}');
            if (!close) {
                return false;
            }
            *body = (struct slm_str){sc->p, (size_t)(q - sc->p)};
            sc->trim_next = close > r && close[-1] == '-';
            sc->p = close + 2;
            return true;
        }
        p = q + 2;
    }
}

/* ---------------------------------------------------------------- markup lexer */

void slm__lq_lex_init(struct lq_lex *lx, const char *p, size_t n) {
    lx->p = p;
    lx->end = p + n;
    slm__lq_lex_next(lx);
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool is_id_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static void lex_number(struct lq_lex *lx, const char *s) {
    const char *p = s;
    if (*p == '-') {
        p++;
    }
    while (p < lx->end && is_digit(*p)) {
        p++;
    }
    bool flt = false;
    if (p + 1 < lx->end && *p == '.' && is_digit(p[1])) {
        flt = true;
        p++;
        while (p < lx->end && is_digit(*p)) {
            p++;
        }
    }
    lx->tp = s;
    lx->tn = (size_t)(p - s);
    lx->p = p;
    char buf[64];
    size_t n = lx->tn < sizeof(buf) - 1 ? lx->tn : sizeof(buf) - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (!flt) {
        char *e;
        errno = 0;
        long long v = strtoll(buf, &e, 10);
        if (errno == 0 && lx->tn < sizeof(buf) - 1) {
            lx->t = T_INT;
            lx->ival = v;
            return;
        }
    }
    lx->t = T_FLOAT;
    lx->fval = strtod(buf, NULL);
}

void slm__lq_lex_next(struct lq_lex *lx) {
    const char *p = lx->p;
    while (p < lx->end && is_ws(*p)) {
        p++;
    }
    lx->tp = p;
    lx->tn = 1;
    if (p >= lx->end) {
        lx->t = T_EOS;
        lx->tn = 0;
        lx->p = p;
        return;
    }
    char c = *p;
    char c1 = p + 1 < lx->end ? p[1] : '\0';
    lx->p = p + 1;
    switch (c) {
    case '|': lx->t = T_PIPE; return;
    case ':': lx->t = T_COLON; return;
    case ',': lx->t = T_COMMA; return;
    case '[': lx->t = T_LBRACK; return;
    case ']': lx->t = T_RBRACK; return;
    case '(': lx->t = T_LPAREN; return;
    case ')': lx->t = T_RPAREN; return;
    case '.':
        if (c1 == '.') {
            lx->t = T_DOTDOT;
            lx->tn = 2;
            lx->p = p + 2;
        } else {
            lx->t = T_DOT;
        }
        return;
    case '=':
    case '!':
    case '<':
    case '>': {
        int op = OP_NONE;
        size_t n = 2;
        if (c == '=' && c1 == '=') {
            op = OP_EQ;
        } else if (c == '!' && c1 == '=') {
            op = OP_NE;
        } else if (c == '<' && c1 == '>') {
            op = OP_NE;
        } else if (c == '<' && c1 == '=') {
            op = OP_LE;
        } else if (c == '>' && c1 == '=') {
            op = OP_GE;
        } else if (c == '<') {
            op = OP_LT;
            n = 1;
        } else if (c == '>') {
            op = OP_GT;
            n = 1;
        }
        if (op == OP_NONE) {
            lx->t = T_BAD;
            return;
        }
        lx->t = T_CMP;
        lx->op = op;
        lx->tn = n;
        lx->p = p + n;
        return;
    }
    case '\'':
    case '"': {
        const char *q = memchr(p + 1, c, (size_t)(lx->end - p - 1));
        if (!q) {
            lx->t = T_BADSTR;
            lx->p = lx->end;
            return;
        }
        lx->t = T_STR;
        lx->tp = p + 1;
        lx->tn = (size_t)(q - p - 1);
        lx->p = q + 1;
        return;
    }
    default: break;
    }
    if (is_digit(c) || (c == '-' && is_digit(c1))) {
        lex_number(lx, p);
        return;
    }
    if (is_id_start(c)) {
        const char *q = p + 1;
        while (q < lx->end && (is_word(*q) || *q == '-')) {
            q++;
        }
        if (q < lx->end && *q == '?') {
            q++;
        }
        lx->tp = p;
        lx->tn = (size_t)(q - p);
        lx->p = q;
        if (lx->tn == 8 && memcmp(p, "contains", 8) == 0) {
            lx->t = T_CMP;
            lx->op = OP_CONTAINS;
            return;
        }
        lx->t = T_ID;
        return;
    }
    /* a UTF-8 sequence counts as one bad character */
    size_t n = 1;
    while (p + n < lx->end && ((unsigned char)p[n] & 0xC0) == 0x80) {
        n++;
    }
    lx->tn = n;
    lx->p = p + n;
    lx->t = T_BAD;
}

bool slm__lq_lex_is(const struct lq_lex *lx, const char *word) {
    size_t n = strlen(word);
    return lx->t == T_ID && lx->tn == n && memcmp(lx->tp, word, n) == 0;
}

void slm__lq_lex_describe(const struct lq_lex *lx, char *buf, size_t cap) {
    switch (lx->t) {
    case T_EOS: snprintf(buf, cap, "nothing more"); return;
    case T_BADSTR: snprintf(buf, cap, "an unterminated string"); return;
    case T_STR: snprintf(buf, cap, "the string '%.*s'", (int)SLM_MIN(lx->tn, 40), lx->tp); return;
    default: break;
    }
    snprintf(buf, cap, "'%.*s'", (int)SLM_MIN(lx->tn, 40), lx->tp);
}
