/*
 * liquid/parser.c - Liquid source to a tree, once, so that rendering does no
 * parsing: variable names become symbol ids, paths become segment arrays,
 * filters become table indexes with checked arities, literal partials are
 * loaded and parsed with the template.
 *
 * Tags: assign capture increment decrement if elsif else unless case when
 * for tablerow break continue cycle raw comment doc # liquid echo render
 * include ifchanged. Blocks whose bodies are all whitespace and blank tags
 * (assign, capture, comments) lose their whitespace text, as in Shopify
 * Liquid (so that {% if %}{% assign %}{% endif %} lines leave no blank lines).
 *
 * Errors name the template, line and column and say what was expected. In
 * lax and warn modes trailing junk and unknown filters are tolerated (warn
 * records them).
 */
#include "liquid/lexer.h"

#include <stdlib.h>
#include <string.h>

#include "liquid/errors.h"
#include "liquid/filters.h"
#include "liquid/template.h"

/* ---------------------------------------------------------------- parser state */

struct lq_parser {
    struct lq_penv *env;
    struct lq_unit *unit;
    struct slm_err *err;
    int depth;
    int max_depth;
    int mode;
};

#define PERR(P, at, ...)                                                                           \
    slm__lq_errf((P)->err, SLM_E_INVALID, (P)->unit->name, (P)->unit->src, (P)->unit->len,         \
                 (size_t)((at) - (P)->unit->src), __VA_ARGS__)

static uint32_t off(const struct lq_parser *P, const char *at) {
    return (uint32_t)(at - P->unit->src);
}

static void *palloc(struct lq_parser *P, size_t n) {
    return slm_arena_alloc(P->env->arena, n);
}

static int nomem(struct lq_parser *P) {
    return slm_err_set(P->err, SLM_E_NOMEM, "%s: out of memory while parsing", P->unit->name);
}

/* In strict mode an error; in lax/warn mode a (recorded) warning. */
static int tolerate(struct lq_parser *P, const char *at, const char *msg) {
    if (P->mode == SLM_LIQUID_STRICT) {
        return PERR(P, at, "%s", msg);
    }
    if (P->mode == SLM_LIQUID_WARN && P->env->warnings) {
        struct slm_err w;
        slm_err_clear(&w);
        slm__lq_errf(&w, SLM_E_INVALID, P->unit->name, P->unit->src, P->unit->len,
                     (size_t)(at - P->unit->src), "%s", msg);
        char **v = realloc(*P->env->warnings, (*P->env->nwarnings + 1) * sizeof(char *));
        if (!v) {
            return nomem(P);
        }
        *P->env->warnings = v;
        v[*P->env->nwarnings] = slm_str_dup(slm_str_c(w.msg));
        if (!v[*P->env->nwarnings]) {
            return nomem(P);
        }
        (*P->env->nwarnings)++;
    }
    return SLM_OK;
}

static int unexpected(struct lq_parser *P, const struct lq_lex *lx, const char *expected) {
    char what[64];
    slm__lq_lex_describe(lx, what, sizeof(what));
    if (lx->t == T_BAD) {
        return PERR(P, lx->tp, "expected %s, found the character %s", expected, what);
    }
    return PERR(P, lx->tp, "expected %s, found %s", expected, what);
}

/* Trailing tokens after a complete tag or output. */
static int expect_end(struct lq_parser *P, const struct lq_lex *lx, const char *what) {
    if (lx->t == T_EOS) {
        return SLM_OK;
    }
    if (P->mode == SLM_LIQUID_STRICT) {
        char buf[96];
        snprintf(buf, sizeof(buf), "the end of %s", what);
        return unexpected(P, lx, buf);
    }
    char d[64], m[96];
    slm__lq_lex_describe(lx, d, sizeof(d));
    snprintf(m, sizeof(m), "ignored trailing %s", d);
    return tolerate(P, lx->tp, m);
}

/* ---------------------------------------------------------------- expressions */

static uint8_t key_id(const char *p, size_t n) {
    static const struct {
        const char *s;
        uint8_t k;
    } keys[] = {
        {"size", K_SIZE},           {"first", K_FIRST},       {"last", K_LAST},
        {"index", K_INDEX},         {"index0", K_INDEX0},     {"rindex", K_RINDEX},
        {"rindex0", K_RINDEX0},     {"length", K_LENGTH},     {"parentloop", K_PARENTLOOP},
        {"name", K_NAME},           {"col", K_COL},           {"col0", K_COL0},
        {"col_first", K_COL_FIRST}, {"col_last", K_COL_LAST}, {"row", K_ROW},
    };
    for (size_t i = 0; i < SLM_ARRAY_LEN(keys); i++) {
        if (strlen(keys[i].s) == n && memcmp(keys[i].s, p, n) == 0) {
            return keys[i].k;
        }
    }
    return K_NONE;
}

static uint32_t intern(struct lq_parser *P, const char *p, size_t n) {
    return slm__lq_sym_intern(P->env->syms, P->env->arena, p, n);
}

static int parse_prim(struct lq_parser *P, struct lq_lex *lx, struct lq_prim *out);

/* Property names are interned: every "name" segment of a template points at
 * the same bytes, which lets the renderer cache object[key] lookups. */
static struct slm_str key_name(struct lq_parser *P, const char *p, size_t n) {
    uint32_t id = intern(P, p, n);
    if (id == LQ_NOSYM) {
        return (struct slm_str){NULL, 0};
    }
    const struct lq_sym *y = &P->env->syms->v[id];
    return (struct slm_str){y->name, y->len};
}

#define MAX_SEGS 64

static int parse_path(struct lq_parser *P, struct lq_lex *lx, struct lq_prim *out) {
    struct lq_seg segs[MAX_SEGS];
    uint32_t nseg = 0;
    struct lq_path *path = palloc(P, sizeof(*path));
    if (!path) {
        return nomem(P);
    }
    out->kind = P_VAR;
    out->pos = off(P, lx->tp);
    if (lx->t == T_ID) {
        path->sym = intern(P, lx->tp, lx->tn);
        if (path->sym == LQ_NOSYM) {
            return nomem(P);
        }
        slm__lq_lex_next(lx);
    } else { /* '[' expr ']' */
        path->sym = LQ_NOSYM;
        slm__lq_lex_next(lx);
        struct lq_prim *dyn = palloc(P, sizeof(*dyn));
        if (!dyn) {
            return nomem(P);
        }
        int rc = parse_prim(P, lx, dyn);
        if (rc != SLM_OK) {
            return rc;
        }
        if (lx->t != T_RBRACK) {
            return unexpected(P, lx, "']'");
        }
        slm__lq_lex_next(lx);
        path->root_dyn = dyn;
    }
    for (;;) {
        struct lq_seg s;
        memset(&s, 0, sizeof(s));
        if (lx->t == T_DOT) {
            slm__lq_lex_next(lx);
            if (lx->t != T_ID) {
                return unexpected(P, lx, "a property name after '.'");
            }
            s.kind = SEG_KEY;
            s.dot = 1;
            s.name = key_name(P, lx->tp, lx->tn);
            if (!s.name.ptr) {
                return nomem(P);
            }
            s.key = key_id(lx->tp, lx->tn);
            slm__lq_lex_next(lx);
        } else if (lx->t == T_LBRACK) {
            slm__lq_lex_next(lx);
            struct lq_prim *dyn = palloc(P, sizeof(*dyn));
            if (!dyn) {
                return nomem(P);
            }
            int rc = parse_prim(P, lx, dyn);
            if (rc != SLM_OK) {
                return rc;
            }
            if (lx->t != T_RBRACK) {
                return unexpected(P, lx, "']'");
            }
            slm__lq_lex_next(lx);
            if (dyn->kind == P_LIT && dyn->u.lit.k == LQ_STR) {
                s.kind = SEG_KEY;
                s.name = key_name(P, dyn->u.lit.u.s.p, dyn->u.lit.u.s.n);
                if (!s.name.ptr) {
                    return nomem(P);
                }
                s.key = key_id(s.name.ptr, s.name.len);
            } else if (dyn->kind == P_LIT && dyn->u.lit.k == LQ_INT) {
                s.kind = SEG_INDEX;
                s.index = dyn->u.lit.u.i;
            } else {
                s.kind = SEG_DYN;
                s.dyn = dyn;
            }
        } else {
            break;
        }
        if (nseg == MAX_SEGS) {
            return PERR(P, lx->tp, "variable path longer than %d parts", MAX_SEGS);
        }
        segs[nseg++] = s;
    }
    if (nseg) {
        struct lq_seg *v = palloc(P, nseg * sizeof(*v));
        if (!v) {
            return nomem(P);
        }
        memcpy(v, segs, nseg * sizeof(*v));
        path->seg = v;
        path->nseg = nseg;
    }
    out->u.var = path;
    return SLM_OK;
}

static int64_t lit_to_int(const struct lq_val *v) {
    switch (v->k) {
    case LQ_INT: return v->u.i;
    case LQ_FLOAT: return lq_f2i(v->u.f);
    case LQ_STR: return slm__lq_str_to_i(v->u.s.p, v->u.s.n);
    default: return 0;
    }
}

static bool peek_is(const struct lq_lex *lx, int t) {
    struct lq_lex copy = *lx;
    slm__lq_lex_next(&copy);
    return copy.t == t;
}

static int parse_prim(struct lq_parser *P, struct lq_lex *lx, struct lq_prim *out) {
    memset(out, 0, sizeof(*out));
    out->pos = off(P, lx->t == T_STR ? lx->tp - 1 : lx->tp); /* a string starts at its quote */
    if (++P->depth > P->max_depth) {
        return slm__lq_errf(P->err, SLM_E_LIMIT, P->unit->name, P->unit->src, P->unit->len,
                            out->pos, "expression nested deeper than %d", P->max_depth);
    }
    int rc = SLM_OK;
    switch (lx->t) {
    case T_STR:
        out->kind = P_LIT;
        out->u.lit = lq_str(lx->tp, lx->tn);
        slm__lq_lex_next(lx);
        break;
    case T_INT:
        out->kind = P_LIT;
        out->u.lit = lq_int(lx->ival);
        slm__lq_lex_next(lx);
        break;
    case T_FLOAT:
        out->kind = P_LIT;
        out->u.lit = lq_float(lx->fval);
        slm__lq_lex_next(lx);
        break;
    case T_ID: {
        static const struct {
            const char *w;
            uint8_t k;
            bool b;
        } lits[] = {{"true", LQ_BOOL, true},    {"false", LQ_BOOL, false},
                    {"nil", LQ_NIL, false},     {"null", LQ_NIL, false},
                    {"empty", LQ_EMPTY, false}, {"blank", LQ_BLANK, false}};
        if (!peek_is(lx, T_DOT) && !peek_is(lx, T_LBRACK)) {
            for (size_t i = 0; i < SLM_ARRAY_LEN(lits); i++) {
                if (slm__lq_lex_is(lx, lits[i].w)) {
                    out->kind = P_LIT;
                    out->u.lit.k = lits[i].k;
                    out->u.lit.u.b = lits[i].b;
                    slm__lq_lex_next(lx);
                    P->depth--;
                    return SLM_OK;
                }
            }
        }
        rc = parse_path(P, lx, out);
        break;
    }
    case T_LBRACK: rc = parse_path(P, lx, out); break;
    case T_LPAREN: {
        slm__lq_lex_next(lx);
        struct lq_prim *lo = palloc(P, sizeof(*lo)), *hi = palloc(P, sizeof(*hi));
        if (!lo || !hi) {
            return nomem(P);
        }
        rc = parse_prim(P, lx, lo);
        if (rc != SLM_OK) {
            return rc;
        }
        if (lx->t != T_DOTDOT) {
            return unexpected(P, lx, "'..' in a range");
        }
        slm__lq_lex_next(lx);
        rc = parse_prim(P, lx, hi);
        if (rc != SLM_OK) {
            return rc;
        }
        if (lx->t != T_RPAREN) {
            return unexpected(P, lx, "')' to close the range");
        }
        slm__lq_lex_next(lx);
        if (lo->kind == P_LIT && hi->kind == P_LIT) {
            out->kind = P_LIT;
            out->u.lit.k = LQ_RANGE;
            out->u.lit.u.r.lo = lit_to_int(&lo->u.lit);
            out->u.lit.u.r.hi = lit_to_int(&hi->u.lit);
        } else {
            out->kind = P_RANGE;
            out->u.range.lo = lo;
            out->u.range.hi = hi;
        }
        break;
    }
    case T_BADSTR: return PERR(P, lx->tp, "expected a closing quote, found an unterminated string");
    default: return unexpected(P, lx, "a value: a name, a string, a number or a range");
    }
    P->depth--;
    return rc;
}

#define MAX_ARGS 32
#define MAX_FILTERS 64

static int parse_filter(struct lq_parser *P, struct lq_lex *lx, struct lq_filter *f) {
    memset(f, 0, sizeof(*f));
    if (lx->t != T_ID) {
        return unexpected(P, lx, "a filter name after '|'");
    }
    const char *name = lx->tp;
    size_t nlen = lx->tn;
    f->pos = off(P, name);
    int id = slm__lq_filter_find(name, nlen);
    if (id < 0) {
        char m[96];
        snprintf(m, sizeof(m), "unknown filter '%.*s'", (int)SLM_MIN(nlen, 60), name);
        int rc = tolerate(P, name, m);
        if (rc != SLM_OK) {
            return rc;
        }
        id = 0; /* passes its input through */
    }
    f->id = (uint16_t)id;
    f->name = slm__lq_filters[id].name;
    slm__lq_lex_next(lx);
    struct lq_prim args[MAX_ARGS];
    struct lq_kwarg kws[MAX_ARGS];
    int npos = 0, nkw = 0;
    if (lx->t == T_COLON) {
        slm__lq_lex_next(lx);
        for (;;) {
            if (npos + nkw >= MAX_ARGS) {
                return PERR(P, lx->tp, "more than %d filter arguments", MAX_ARGS);
            }
            int rc;
            if (lx->t == T_ID && peek_is(lx, T_COLON)) {
                kws[nkw].name = (struct slm_str){lx->tp, lx->tn};
                slm__lq_lex_next(lx);
                slm__lq_lex_next(lx);
                rc = parse_prim(P, lx, &kws[nkw].val);
                nkw++;
            } else {
                rc = parse_prim(P, lx, &args[npos]);
                npos++;
            }
            if (rc != SLM_OK) {
                return rc;
            }
            if (lx->t != T_COMMA) {
                break;
            }
            slm__lq_lex_next(lx);
        }
    }
    const struct lq_filter_def *d = &slm__lq_filters[id];
    char nm[64];
    snprintf(nm, sizeof(nm), "%s", d->name);
    if (id != 0) {
        if (npos < d->min) {
            char m[128];
            snprintf(m, sizeof(m), "filter '%s' needs %s%d argument%s", nm,
                     d->min == d->max ? "" : "at least ", d->min, d->min == 1 ? "" : "s");
            int rc = tolerate(P, name, m);
            if (rc != SLM_OK) {
                return rc;
            }
        }
        if (npos > d->max) {
            char m[128];
            snprintf(m, sizeof(m), "filter '%s' takes %s%d argument%s, not %d", nm,
                     d->min == d->max ? "" : "at most ", d->max, d->max == 1 ? "" : "s", npos);
            int rc = tolerate(P, name, m);
            if (rc != SLM_OK) {
                return rc;
            }
        }
        if (nkw && !d->kw) {
            char m[128];
            snprintf(m, sizeof(m), "filter '%s' takes no keyword arguments", nm);
            int rc = tolerate(P, name, m);
            if (rc != SLM_OK) {
                return rc;
            }
            nkw = 0;
        }
    }
    if (npos) {
        struct lq_prim *v = palloc(P, (size_t)npos * sizeof(*v));
        if (!v) {
            return nomem(P);
        }
        memcpy(v, args, (size_t)npos * sizeof(*v));
        f->args = v;
    }
    if (nkw) {
        struct lq_kwarg *v = palloc(P, (size_t)nkw * sizeof(*v));
        if (!v) {
            return nomem(P);
        }
        memcpy(v, kws, (size_t)nkw * sizeof(*v));
        f->kw = v;
    }
    f->npos = (uint8_t)npos;
    f->nkw = (uint8_t)nkw;
    return SLM_OK;
}

static int parse_fexpr(struct lq_parser *P, struct lq_lex *lx, struct lq_fexpr *fe) {
    memset(fe, 0, sizeof(*fe));
    int rc = parse_prim(P, lx, &fe->prim);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_filter filt[MAX_FILTERS];
    uint32_t n = 0;
    while (lx->t == T_PIPE) {
        slm__lq_lex_next(lx);
        if (n == MAX_FILTERS) {
            return PERR(P, lx->tp, "more than %d filters in one expression", MAX_FILTERS);
        }
        rc = parse_filter(P, lx, &filt[n]);
        if (rc != SLM_OK) {
            return rc;
        }
        n++;
    }
    if (n) {
        struct lq_filter *v = palloc(P, n * sizeof(*v));
        if (!v) {
            return nomem(P);
        }
        memcpy(v, filt, n * sizeof(*v));
        fe->filt = v;
        fe->nfilt = n;
    }
    return SLM_OK;
}

static int parse_cond(struct lq_parser *P, struct lq_lex *lx, const struct lq_cond **out) {
    struct lq_cond *first = NULL, *last = NULL;
    for (;;) {
        struct lq_cond *c = palloc(P, sizeof(*c));
        if (!c) {
            return nomem(P);
        }
        int rc = parse_prim(P, lx, &c->l);
        if (rc != SLM_OK) {
            return rc;
        }
        if (lx->t == T_CMP) {
            c->op = (uint8_t)lx->op;
            slm__lq_lex_next(lx);
            rc = parse_prim(P, lx, &c->r);
            if (rc != SLM_OK) {
                return rc;
            }
        }
        if (last) {
            last->next = c;
        } else {
            first = c;
        }
        last = c;
        if (slm__lq_lex_is(lx, "and")) {
            c->rel = REL_AND;
        } else if (slm__lq_lex_is(lx, "or")) {
            c->rel = REL_OR;
        } else {
            break;
        }
        slm__lq_lex_next(lx);
    }
    *out = first;
    return expect_end(P, lx, "the condition");
}

/* Whitespace-free text of a markup slice (Ruby's normalised expression text). */
static struct slm_str squeeze(struct lq_parser *P, const char *p, const char *e) {
    char *buf = palloc(P, (size_t)(e - p) + 1);
    if (!buf) {
        return (struct slm_str){NULL, 0};
    }
    size_t n = 0;
    char q = 0;
    for (; p < e; p++) {
        if (q) {
            if (*p == q) {
                q = 0;
            }
        } else if (*p == '\'' || *p == '"') {
            q = *p;
        } else if (*p == ' ' || (*p >= '\t' && *p <= '\r')) {
            continue;
        }
        buf[n++] = *p;
    }
    buf[n] = '\0';
    return (struct slm_str){buf, n};
}

/* ---------------------------------------------------------------- bodies */

struct lq_nodelist {
    struct lq_node *head, *tail;
    bool blank;
};

static struct lq_node *new_node(struct lq_parser *P, int kind, const char *at) {
    struct lq_node *n = palloc(P, sizeof(*n));
    if (n) {
        n->kind = (uint8_t)kind;
        n->pos = off(P, at);
    }
    return n;
}

static void add(struct lq_nodelist *l, struct lq_node *n) {
    if (l->tail) {
        l->tail->next = n;
    } else {
        l->head = n;
    }
    l->tail = n;
    l->blank = l->blank && n->blank;
}

static int parse_body(struct lq_parser *P, struct lq_scan *sc, const char *open_name,
                      const char *open_at, const char *const *stops, struct lq_block *out,
                      struct lq_tok *end);

static bool tok_is(const struct lq_tok *t, const char *name) {
    return slm_str_eq_c(t->name, name);
}

/* Drops whitespace text from a blank block (Shopify's remove_blank_strings). */
static void strip_blank(struct lq_block *b) {
    struct lq_node **pp = (struct lq_node **)&b->first;
    while (*pp) {
        if ((*pp)->kind == N_TEXT && (*pp)->blank) {
            *pp = (struct lq_node *)(*pp)->next;
        } else {
            pp = (struct lq_node **)&(*pp)->next;
        }
    }
}

static int enter(struct lq_parser *P, const char *at) {
    if (++P->depth > P->max_depth) {
        return slm__lq_errf(P->err, SLM_E_LIMIT, P->unit->name, P->unit->src, P->unit->len,
                            off(P, at), "blocks nested deeper than %d", P->max_depth);
    }
    return SLM_OK;
}

static int tag_if(struct lq_parser *P, struct lq_scan *sc, const struct lq_tok *tk,
                  struct lq_node *node) {
    bool unless = tok_is(tk, "unless");
    const char *endname = unless ? "endunless" : "endif";
    const char *stops[] = {"elsif", "else", endname, NULL};
    struct lq_if *in = palloc(P, sizeof(*in));
    if (!in) {
        return nomem(P);
    }
    in->unless = unless;
    node->kind = N_IF;
    node->u.if_ = in;
    struct lq_branch **link = (struct lq_branch **)&in->branches;
    struct lq_tok cur = *tk;
    bool blank = true;
    for (;;) {
        struct lq_branch *br = palloc(P, sizeof(*br));
        if (!br) {
            return nomem(P);
        }
        if (!tok_is(&cur, "else")) {
            struct lq_lex lx;
            slm__lq_lex_init(&lx, cur.text.ptr, cur.text.len);
            if (lx.t == T_EOS) {
                return PERR(P, cur.start, "'%.*s' needs a condition", (int)cur.name.len,
                            cur.name.ptr);
            }
            int rc = parse_cond(P, &lx, &br->cond);
            if (rc != SLM_OK) {
                return rc;
            }
        }
        struct lq_tok end;
        int rc = parse_body(P, sc, unless ? "unless" : "if", tk->start, stops, &br->body, &end);
        if (rc != SLM_OK) {
            return rc;
        }
        blank = blank && br->body.blank;
        *link = br;
        link = (struct lq_branch **)&br->next;
        if (tok_is(&end, endname)) {
            break;
        }
        cur = end;
    }
    node->blank = blank;
    if (blank) {
        for (struct lq_branch *b = (struct lq_branch *)in->branches; b;
             b = (struct lq_branch *)b->next) {
            strip_blank(&b->body);
        }
    }
    return SLM_OK;
}

static int tag_case(struct lq_parser *P, struct lq_scan *sc, const struct lq_tok *tk,
                    struct lq_node *node) {
    static const char *const stops[] = {"when", "else", "endcase", NULL};
    struct lq_case *cs = palloc(P, sizeof(*cs));
    if (!cs) {
        return nomem(P);
    }
    node->kind = N_CASE;
    node->u.case_ = cs;
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    int rc = parse_prim(P, &lx, &cs->subject);
    if (rc != SLM_OK) {
        return rc;
    }
    rc = expect_end(P, &lx, "the case expression");
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_block ignored;
    struct lq_tok end;
    rc = parse_body(P, sc, "case", tk->start, stops, &ignored, &end);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_when **link = (struct lq_when **)&cs->whens;
    bool blank = true;
    while (!tok_is(&end, "endcase")) {
        struct lq_block *body = palloc(P, sizeof(*body));
        if (!body) {
            return nomem(P);
        }
        struct lq_tok cur = end;
        if (tok_is(&cur, "else")) {
            struct lq_when *w = palloc(P, sizeof(*w));
            if (!w) {
                return nomem(P);
            }
            w->is_else = true;
            w->body = body;
            *link = w;
            link = (struct lq_when **)&w->next;
        } else {
            slm__lq_lex_init(&lx, cur.text.ptr, cur.text.len);
            if (lx.t == T_EOS) {
                return PERR(P, cur.start, "'when' needs at least one value");
            }
            for (;;) {
                struct lq_when *w = palloc(P, sizeof(*w));
                if (!w) {
                    return nomem(P);
                }
                rc = parse_prim(P, &lx, &w->val);
                if (rc != SLM_OK) {
                    return rc;
                }
                w->body = body;
                *link = w;
                link = (struct lq_when **)&w->next;
                if (lx.t == T_COMMA || slm__lq_lex_is(&lx, "or")) {
                    slm__lq_lex_next(&lx);
                    continue;
                }
                /* Like Shopify Liquid, anything after the last value is ignored. */
                break;
            }
        }
        rc = parse_body(P, sc, "case", tk->start, stops, body, &end);
        if (rc != SLM_OK) {
            return rc;
        }
        blank = blank && body->blank;
    }
    node->blank = blank;
    if (blank) {
        for (struct lq_when *w = (struct lq_when *)cs->whens; w; w = (struct lq_when *)w->next) {
            strip_blank((struct lq_block *)w->body);
        }
    }
    return SLM_OK;
}

/* `var in collection` shared by for and tablerow. */
static int loop_head(struct lq_parser *P, struct lq_lex *lx, struct lq_for *f, const char **cs,
                     const char **ce) {
    if (lx->t != T_ID) {
        return unexpected(P, lx, "a loop variable name");
    }
    f->var = intern(P, lx->tp, lx->tn);
    if (f->var == LQ_NOSYM) {
        return nomem(P);
    }
    const char *vs = lx->tp;
    size_t vn = lx->tn;
    slm__lq_lex_next(lx);
    if (!slm__lq_lex_is(lx, "in")) {
        return unexpected(P, lx, "'in'");
    }
    slm__lq_lex_next(lx);
    *cs = lx->tp;
    int rc = parse_prim(P, lx, &f->coll);
    if (rc != SLM_OK) {
        return rc;
    }
    *ce = lx->tp;
    struct slm_str coll = squeeze(P, *cs, *ce);
    char *name = palloc(P, vn + 1 + coll.len + 1);
    if (!name || !coll.ptr) {
        return nomem(P);
    }
    memcpy(name, vs, vn);
    name[vn] = '-';
    memcpy(name + vn + 1, coll.ptr, coll.len);
    name[vn + 1 + coll.len] = '\0';
    f->name = (struct slm_str){name, vn + 1 + coll.len};
    return SLM_OK;
}

static int loop_attrs(struct lq_parser *P, struct lq_lex *lx, struct lq_for *f, bool tablerow) {
    for (;;) {
        if (lx->t == T_COMMA) {
            slm__lq_lex_next(lx);
            continue;
        }
        if (lx->t != T_ID) {
            break;
        }
        if (slm__lq_lex_is(lx, "reversed") && !tablerow) {
            f->reversed = true;
            slm__lq_lex_next(lx);
            continue;
        }
        const struct lq_prim **slot = NULL;
        bool is_offset = false;
        if (slm__lq_lex_is(lx, "limit")) {
            slot = &f->limit;
        } else if (slm__lq_lex_is(lx, "offset")) {
            slot = &f->offset;
            is_offset = true;
        } else if (tablerow && slm__lq_lex_is(lx, "cols")) {
            slot = &f->cols;
        } else {
            return unexpected(P, lx,
                              tablerow ? "'cols', 'limit' or 'offset'"
                                       : "'limit', 'offset' or 'reversed'");
        }
        slm__lq_lex_next(lx);
        if (lx->t != T_COLON) {
            return unexpected(P, lx, "':'");
        }
        slm__lq_lex_next(lx);
        if (is_offset && !tablerow && slm__lq_lex_is(lx, "continue")) {
            f->offset_continue = true;
            slm__lq_lex_next(lx);
            continue;
        }
        struct lq_prim *v = palloc(P, sizeof(*v));
        if (!v) {
            return nomem(P);
        }
        int rc = parse_prim(P, lx, v);
        if (rc != SLM_OK) {
            return rc;
        }
        *slot = v;
    }
    return expect_end(P, lx, tablerow ? "the tablerow tag" : "the for tag");
}

static int tag_for(struct lq_parser *P, struct lq_scan *sc, const struct lq_tok *tk,
                   struct lq_node *node) {
    bool tablerow = tok_is(tk, "tablerow");
    struct lq_for *f = palloc(P, sizeof(*f));
    if (!f) {
        return nomem(P);
    }
    node->kind = tablerow ? N_TABLEROW : N_FOR;
    node->u.for_ = f;
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    const char *cs, *ce;
    int rc = loop_head(P, &lx, f, &cs, &ce);
    if (rc == SLM_OK) {
        rc = loop_attrs(P, &lx, f, tablerow);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_tok end;
    if (tablerow) {
        static const char *const stops[] = {"endtablerow", NULL};
        rc = parse_body(P, sc, "tablerow", tk->start, stops, &f->body, &end);
        node->blank = f->body.blank;
        return rc;
    }
    static const char *const stops[] = {"else", "endfor", NULL};
    rc = parse_body(P, sc, "for", tk->start, stops, &f->body, &end);
    if (rc != SLM_OK) {
        return rc;
    }
    bool blank = f->body.blank;
    if (tok_is(&end, "else")) {
        static const char *const estops[] = {"endfor", NULL};
        struct lq_block *eb = palloc(P, sizeof(*eb));
        if (!eb) {
            return nomem(P);
        }
        rc = parse_body(P, sc, "for", tk->start, estops, eb, &end);
        if (rc != SLM_OK) {
            return rc;
        }
        f->else_body = eb;
        blank = blank && eb->blank;
    }
    node->blank = blank;
    if (blank) {
        strip_blank(&f->body);
        if (f->else_body) {
            strip_blank((struct lq_block *)f->else_body);
        }
    }
    return SLM_OK;
}

/* assign / capture target: a name of word characters and hyphens. */
static int target_name(struct lq_parser *P, struct lq_lex *lx, const char *tag, uint32_t *sym) {
    if (lx->t == T_STR && strcmp(tag, "capture") == 0) {
        /* {% capture 'name' %} */
    } else if (!((lx->t == T_ID && lx->tp[lx->tn - 1] != '?') ||
                 (lx->t == T_INT && lx->tp[0] != '-'))) {
        char buf[64];
        snprintf(buf, sizeof(buf), "a variable name after '%s'", tag);
        return unexpected(P, lx, buf);
    }
    *sym = intern(P, lx->tp, lx->tn);
    if (*sym == LQ_NOSYM) {
        return nomem(P);
    }
    slm__lq_lex_next(lx);
    return SLM_OK;
}

static int tag_assign(struct lq_parser *P, const struct lq_tok *tk, struct lq_node *node) {
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    node->kind = N_ASSIGN;
    node->blank = true;
    int rc = target_name(P, &lx, "assign", &node->u.assign.sym);
    if (rc != SLM_OK) {
        return rc;
    }
    if (!(lx.t == T_BAD && lx.tn == 1 && lx.tp[0] == '=')) {
        return unexpected(P, &lx, "'=' after the variable name");
    }
    slm__lq_lex_next(&lx);
    struct lq_fexpr *fe = palloc(P, sizeof(*fe));
    if (!fe) {
        return nomem(P);
    }
    rc = parse_fexpr(P, &lx, fe);
    if (rc != SLM_OK) {
        return rc;
    }
    node->u.assign.expr = fe;
    return expect_end(P, &lx, "the assign tag");
}

static int tag_capture(struct lq_parser *P, struct lq_scan *sc, const struct lq_tok *tk,
                       struct lq_node *node) {
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    node->kind = N_CAPTURE;
    node->blank = true;
    int rc = target_name(P, &lx, "capture", &node->u.capture.sym);
    if (rc == SLM_OK) {
        rc = expect_end(P, &lx, "the capture tag");
    }
    if (rc != SLM_OK) {
        return rc;
    }
    static const char *const stops[] = {"endcapture", NULL};
    struct lq_tok end;
    return parse_body(P, sc, "capture", tk->start, stops, &node->u.capture.body, &end);
}

static int tag_counter(struct lq_parser *P, const struct lq_tok *tk, struct lq_node *node) {
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    node->kind = tok_is(tk, "increment") ? N_INCREMENT : N_DECREMENT;
    if (lx.t != T_ID) {
        return unexpected(P, &lx, "a counter name");
    }
    node->u.counter = intern(P, lx.tp, lx.tn);
    if (node->u.counter == LQ_NOSYM) {
        return nomem(P);
    }
    slm__lq_lex_next(&lx);
    return expect_end(P, &lx, "the tag");
}

static int tag_cycle(struct lq_parser *P, const struct lq_tok *tk, struct lq_node *node) {
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    struct lq_cycle *cy = palloc(P, sizeof(*cy));
    struct lq_prim *vals = palloc(P, MAX_ARGS * sizeof(*vals));
    if (!cy || !vals) {
        return nomem(P);
    }
    node->kind = N_CYCLE;
    node->u.cycle = cy;
    if (lx.t == T_EOS) {
        return PERR(P, tk->start, "'cycle' needs at least one value");
    }
    uint32_t n = 0;
    const char *vs = lx.tp;
    for (;;) {
        if (n == MAX_ARGS) {
            return PERR(P, lx.tp, "more than %d values in a cycle", MAX_ARGS);
        }
        int rc = parse_prim(P, &lx, &vals[n]);
        if (rc != SLM_OK) {
            return rc;
        }
        if (n == 0 && !cy->group && lx.t == T_COLON) {
            struct lq_prim *g = palloc(P, sizeof(*g));
            if (!g) {
                return nomem(P);
            }
            *g = vals[0];
            cy->group = g;
            slm__lq_lex_next(&lx);
            vs = lx.tp;
            continue;
        }
        n++;
        if (lx.t != T_COMMA) {
            break;
        }
        slm__lq_lex_next(&lx);
    }
    /* Unnamed cycles are keyed by their values, written canonically. */
    struct lq_sb_local {
        char *p;
        size_t n;
    } key = {palloc(P, (size_t)(lx.tp - vs) * 2 + 16), 0};
    if (!key.p) {
        return nomem(P);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (i) {
            key.p[key.n++] = ',';
        }
        if (vals[i].kind == P_LIT && vals[i].u.lit.k == LQ_STR) {
            key.p[key.n++] = '"';
            memcpy(key.p + key.n, vals[i].u.lit.u.s.p, vals[i].u.lit.u.s.n);
            key.n += vals[i].u.lit.u.s.n;
            key.p[key.n++] = '"';
        } else {
            const char *s = P->unit->src + vals[i].pos;
            const char *e = i + 1 < n ? P->unit->src + vals[i + 1].pos : lx.tp;
            struct slm_str sq = squeeze(P, s, e);
            if (!sq.ptr) {
                return nomem(P);
            }
            while (sq.len && sq.ptr[sq.len - 1] == ',') {
                sq.len--;
            }
            memcpy(key.p + key.n, sq.ptr, sq.len);
            key.n += sq.len;
        }
    }
    cy->key = (struct slm_str){key.p, key.n};
    cy->vals = vals;
    cy->n = n;
    return expect_end(P, &lx, "the cycle tag");
}

static struct lq_unit *find_unit(struct lq_unit *list, const char *name) {
    for (; list; list = list->next) {
        /* a unit still being parsed is fine (recursion); a failed one is not */
        if ((list->parsing || list->status == SLM_OK) && strcmp(list->name, name) == 0) {
            return list;
        }
    }
    return NULL;
}

/* Loads and parses a partial named by a literal. NULL in *out when it does not
 * exist and the mode tolerates that (the render reports it if reached). */
static int resolve_partial(struct lq_parser *P, const char *at, const char *name,
                           const struct lq_unit **out) {
    *out = NULL;
    struct lq_unit *u = find_unit(*P->env->units, name);
    if (!u && P->env->also) {
        u = find_unit(*P->env->also, name);
    }
    if (u) {
        *out = u;
        return SLM_OK;
    }
    if (P->env->include_depth >= P->env->t->params.max_include_depth) {
        return slm__lq_errf(P->err, SLM_E_LIMIT, P->unit->name, P->unit->src, P->unit->len,
                            off(P, at), "partials nested deeper than %d",
                            P->env->t->params.max_include_depth);
    }
    struct slm_buf src;
    slm_buf_init(&src, P->env->t->params.max_template_bytes);
    struct slm_err lerr;
    slm_err_clear(&lerr);
    int rc = slm__lq_load_source(P->env->t, name, &src, &lerr);
    if (rc == SLM_E_NOT_FOUND) {
        slm_buf_free(&src);
        char m[160];
        snprintf(m, sizeof(m), "partial '%.100s' not found", name);
        return tolerate(P, at, m);
    }
    if (rc != SLM_OK) {
        slm_buf_free(&src);
        return slm__lq_errf(P->err, rc, P->unit->name, P->unit->src, P->unit->len, off(P, at),
                            "partial '%s': %s", name, lerr.msg[0] ? lerr.msg : slm_strerror(rc));
    }
    P->env->include_depth++;
    struct lq_unit *pu;
    rc = slm__lq_parse_unit(P->env, name, slm_buf_cstr(&src), src.len, &pu, P->err);
    P->env->include_depth--;
    slm_buf_free(&src);
    if (rc != SLM_OK) {
        return rc;
    }
    *out = pu;
    return SLM_OK;
}

static int tag_include(struct lq_parser *P, const struct lq_tok *tk, struct lq_node *node) {
    bool render = tok_is(tk, "render");
    struct lq_include *inc = palloc(P, sizeof(*inc));
    struct lq_incarg *args = palloc(P, MAX_ARGS * sizeof(*args));
    if (!inc || !args) {
        return nomem(P);
    }
    node->kind = render ? N_RENDER : N_INCLUDE;
    node->u.inc = inc;
    inc->bind = LQ_NOSYM;
    struct lq_lex lx;
    slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
    if (render && lx.t != T_STR) {
        return unexpected(P, &lx, "a quoted template name after 'render'");
    }
    int rc = parse_prim(P, &lx, &inc->name);
    if (rc != SLM_OK) {
        return rc;
    }
    if (inc->name.kind == P_LIT && inc->name.u.lit.k == LQ_STR) {
        const char *nm =
            slm_arena_strndup(P->env->arena, inc->name.u.lit.u.s.p, inc->name.u.lit.u.s.n);
        if (!nm) {
            return nomem(P);
        }
        const char *base = strrchr(nm, '/');
        base = base ? base + 1 : nm;
        inc->bind = intern(P, base, strlen(base));
        if (inc->bind == LQ_NOSYM) {
            return nomem(P);
        }
        rc = resolve_partial(P, tk->start, nm, &inc->unit);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    if (slm__lq_lex_is(&lx, "with") || slm__lq_lex_is(&lx, "for")) {
        inc->is_for = slm__lq_lex_is(&lx, "for");
        slm__lq_lex_next(&lx);
        struct lq_prim *w = palloc(P, sizeof(*w));
        if (!w) {
            return nomem(P);
        }
        rc = parse_prim(P, &lx, w);
        if (rc != SLM_OK) {
            return rc;
        }
        inc->with = w;
        if (slm__lq_lex_is(&lx, "as")) {
            slm__lq_lex_next(&lx);
            if (lx.t != T_ID) {
                return unexpected(P, &lx, "a variable name after 'as'");
            }
            inc->bind = intern(P, lx.tp, lx.tn);
            if (inc->bind == LQ_NOSYM) {
                return nomem(P);
            }
            slm__lq_lex_next(&lx);
        }
    }
    uint32_t n = 0;
    for (;;) {
        if (lx.t == T_COMMA) {
            slm__lq_lex_next(&lx);
        }
        if (lx.t != T_ID) {
            break;
        }
        if (n == MAX_ARGS) {
            return PERR(P, lx.tp, "more than %d arguments", MAX_ARGS);
        }
        args[n].sym = intern(P, lx.tp, lx.tn);
        if (args[n].sym == LQ_NOSYM) {
            return nomem(P);
        }
        slm__lq_lex_next(&lx);
        if (lx.t != T_COLON) {
            return unexpected(P, &lx, "':' after the argument name");
        }
        slm__lq_lex_next(&lx);
        rc = parse_prim(P, &lx, &args[n].val);
        if (rc != SLM_OK) {
            return rc;
        }
        n++;
    }
    inc->args = args;
    inc->nargs = n;
    return expect_end(P, &lx, render ? "the render tag" : "the include tag");
}

/* Ollama's Modelfile templates are Go templates ({{ .Prompt }}, {{ if .System }},
 * {{ end }}); say so instead of a generic syntax error. */
static bool looks_like_go(struct slm_str m) {
    m = slm_str_trim(m);
    if (m.len && m.ptr[0] == '.') {
        return true;
    }
    static const char *const words[] = {"if",  "range", "with",   "else",
                                        "end", "block", "define", "template"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(words); i++) {
        size_t n = strlen(words[i]);
        if (m.len >= n && memcmp(m.ptr, words[i], n) == 0 &&
            (m.len == n || m.ptr[n] == ' ' || m.ptr[n] == '\t')) {
            struct slm_str rest = slm_str_trim(slm_str_sub(m, n, m.len));
            return rest.len == 0 || rest.ptr[0] == '.' || rest.ptr[0] == '$';
        }
    }
    return false;
}

static int tag_output(struct lq_parser *P, struct slm_str markup, const char *what,
                      struct lq_node *node) {
    struct lq_lex lx;
    slm__lq_lex_init(&lx, markup.ptr, markup.len);
    node->kind = N_OUTPUT;
    if (lx.t == T_EOS) {
        node->u.out.prim.kind = P_LIT;
        node->u.out.prim.pos = node->pos;
        return SLM_OK;
    }
    int rc = parse_fexpr(P, &lx, &node->u.out);
    if (rc == SLM_OK) {
        rc = expect_end(P, &lx, what);
    }
    if (rc == SLM_E_INVALID && looks_like_go(markup)) {
        return PERR(P, slm_str_trim(markup).ptr,
                    "this is Go template syntax (as in Ollama's Modelfiles), not Liquid: "
                    "write {{ prompt }} for {{ .Prompt }} and {%% if x %%}...{%% endif %%}");
    }
    return rc;
}

/* Skips a comment body: nested comment tags are counted, raw bodies skipped,
 * anything else ignored (even malformed tags). */
static int skip_comment(struct lq_parser *P, struct lq_scan *sc, const struct lq_tok *tk) {
    int depth = 1;
    if (sc->lines) {
        for (;;) {
            if (sc->p >= sc->end) {
                break;
            }
            const char *nl = memchr(sc->p, '\n', (size_t)(sc->end - sc->p));
            const char *ls = sc->p, *le = nl ? nl : sc->end;
            sc->p = nl ? nl + 1 : sc->end;
            while (ls < le && (*ls == ' ' || (*ls >= '\t' && *ls <= '\r'))) {
                ls++;
            }
            size_t wl = 0;
            while (ls + wl < le && (ls[wl] == '_' || (ls[wl] >= 'a' && ls[wl] <= 'z'))) {
                wl++;
            }
            if (wl == 7 && memcmp(ls, "comment", 7) == 0) {
                depth++;
            } else if (wl == 10 && memcmp(ls, "endcomment", 10) == 0 && --depth == 0) {
                return SLM_OK;
            }
        }
        return PERR(P, tk->start, "'comment' was never closed (expected endcomment)");
    }
    const char *p = sc->p;
    for (;;) {
        const char *q = NULL;
        for (const char *s = p; s + 1 < sc->end; s++) {
            if (s[0] == '{' && s[1] == '%') {
                q = s;
                break;
            }
        }
        if (!q) {
            break;
        }
        const char *close = NULL;
        for (const char *s = q + 2; s + 1 < sc->end; s++) {
            if (s[0] == '%' && s[1] == '}') {
                close = s;
                break;
            }
        }
        if (!close) {
            break;
        }
        const char *r = q + 2;
        if (r < close && *r == '-') {
            r++;
        }
        while (r < close && (*r == ' ' || (*r >= '\t' && *r <= '\r'))) {
            r++;
        }
        size_t wl = 0;
        while (r + wl < close &&
               (r[wl] == '_' || (r[wl] >= 'a' && r[wl] <= 'z') || (r[wl] >= '0' && r[wl] <= '9') ||
                (r[wl] >= 'A' && r[wl] <= 'Z'))) {
            wl++;
        }
        p = close + 2;
        if (wl == 3 && memcmp(r, "raw", 3) == 0) {
            sc->p = p;
            struct slm_str body;
            if (!slm__lq_scan_until_end(sc, "endraw", &body)) {
                break;
            }
            p = sc->p;
        } else if (wl == 7 && memcmp(r, "comment", 7) == 0) {
            depth++;
        } else if (wl == 10 && memcmp(r, "endcomment", 10) == 0 && --depth == 0) {
            sc->p = p;
            sc->trim_next = close[-1] == '-';
            return SLM_OK;
        }
    }
    return PERR(P, tk->start, "'comment' was never closed (expected {%% endcomment %%})");
}

static int tag_liquid(struct lq_parser *P, const struct lq_tok *tk, struct lq_nodelist *list) {
    struct lq_scan sub;
    slm__lq_scan_init(&sub, P->unit->src, tk->text.ptr, tk->text.ptr + tk->text.len, true);
    struct lq_block b;
    int rc = parse_body(P, &sub, NULL, tk->start, NULL, &b, NULL);
    if (rc != SLM_OK) {
        return rc;
    }
    for (struct lq_node *n = (struct lq_node *)b.first; n;) {
        struct lq_node *next = (struct lq_node *)n->next;
        n->next = NULL;
        add(list, n);
        n = next;
    }
    return SLM_OK;
}

static bool is_end_word(struct slm_str name) {
    return slm_str_starts_with(name, SLM_STR("end")) || slm_str_eq_c(name, "else") ||
           slm_str_eq_c(name, "elsif") || slm_str_eq_c(name, "when");
}

static int parse_tag(struct lq_parser *P, struct lq_scan *sc, const struct lq_tok *tk,
                     struct lq_nodelist *list) {
    struct slm_str nm = tk->name;
    if (slm_str_eq_c(nm, "#")) {
        for (size_t i = 0; i < tk->text.len; i++) {
            if (tk->text.ptr[i] != '\n') {
                continue;
            }
            size_t j = i + 1;
            while (j < tk->text.len &&
                   (tk->text.ptr[j] == ' ' || tk->text.ptr[j] == '\t' || tk->text.ptr[j] == '\r')) {
                j++;
            }
            if (j < tk->text.len && tk->text.ptr[j] != '#' && tk->text.ptr[j] != '\n') {
                return PERR(P, tk->text.ptr + j,
                            "every line of an inline comment must start with '#'");
            }
        }
        return SLM_OK;
    }
    if (slm_str_eq_c(nm, "comment")) {
        return skip_comment(P, sc, tk);
    }
    if (slm_str_eq_c(nm, "doc")) {
        if (tk->text.len) {
            return PERR(P, tk->text.ptr, "'doc' takes no arguments");
        }
        struct slm_str body;
        if (sc->lines) {
            return PERR(P, tk->start, "'doc' cannot be used inside a liquid tag");
        }
        if (!slm__lq_scan_until_end(sc, "enddoc", &body)) {
            return PERR(P, tk->start, "'doc' was never closed (expected {%% enddoc %%})");
        }
        return SLM_OK;
    }
    if (slm_str_eq_c(nm, "liquid")) {
        return tag_liquid(P, tk, list);
    }
    struct lq_node *node = new_node(P, N_TEXT, tk->start);
    if (!node) {
        return nomem(P);
    }
    int rc = enter(P, tk->start);
    if (rc != SLM_OK) {
        return rc;
    }
    if (slm_str_eq_c(nm, "raw")) {
        struct slm_str body;
        if (sc->lines) {
            return PERR(P, tk->start, "'raw' cannot be used inside a liquid tag");
        }
        if (!slm__lq_scan_until_end(sc, "endraw", &body)) {
            return PERR(P, tk->start, "'raw' was never closed (expected {%% endraw %%})");
        }
        P->depth--;
        if (body.len == 0) {
            return SLM_OK;
        }
        node->u.text = body;
        add(list, node);
        return SLM_OK;
    }
    if (slm_str_eq_c(nm, "if") || slm_str_eq_c(nm, "unless")) {
        rc = tag_if(P, sc, tk, node);
    } else if (slm_str_eq_c(nm, "for") || slm_str_eq_c(nm, "tablerow")) {
        rc = tag_for(P, sc, tk, node);
    } else if (slm_str_eq_c(nm, "case")) {
        rc = tag_case(P, sc, tk, node);
    } else if (slm_str_eq_c(nm, "assign")) {
        rc = tag_assign(P, tk, node);
    } else if (slm_str_eq_c(nm, "capture")) {
        rc = tag_capture(P, sc, tk, node);
    } else if (slm_str_eq_c(nm, "increment") || slm_str_eq_c(nm, "decrement")) {
        rc = tag_counter(P, tk, node);
    } else if (slm_str_eq_c(nm, "cycle")) {
        rc = tag_cycle(P, tk, node);
    } else if (slm_str_eq_c(nm, "echo")) {
        rc = tag_output(P, tk->text, "the echo tag", node);
    } else if (slm_str_eq_c(nm, "include") || slm_str_eq_c(nm, "render")) {
        rc = tag_include(P, tk, node);
    } else if (slm_str_eq_c(nm, "break") || slm_str_eq_c(nm, "continue")) {
        node->kind = slm_str_eq_c(nm, "break") ? N_BREAK : N_CONTINUE;
        struct lq_lex lx;
        slm__lq_lex_init(&lx, tk->text.ptr, tk->text.len);
        rc = expect_end(P, &lx, "the tag");
    } else if (slm_str_eq_c(nm, "ifchanged")) {
        static const char *const stops[] = {"endifchanged", NULL};
        struct lq_tok end;
        node->kind = N_IFCHANGED;
        rc = parse_body(P, sc, "ifchanged", tk->start, stops, &node->u.body, &end);
        node->blank = node->u.body.blank;
    } else if (is_end_word(nm)) {
        return PERR(P, tk->start, "unexpected '%.*s' (no open block it could close)",
                    (int)SLM_MIN(nm.len, 40), nm.ptr);
    } else {
        return PERR(P, tk->start, "unknown tag '%.*s'", (int)SLM_MIN(nm.len, 40), nm.ptr);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    P->depth--;
    add(list, node);
    return SLM_OK;
}

static bool is_blank_text(struct slm_str s) {
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!(c == ' ' || (c >= '\t' && c <= '\r'))) {
            return false;
        }
    }
    return true;
}

static int parse_body(struct lq_parser *P, struct lq_scan *sc, const char *open_name,
                      const char *open_at, const char *const *stops, struct lq_block *out,
                      struct lq_tok *end) {
    struct lq_nodelist list = {NULL, NULL, true};
    for (;;) {
        struct lq_tok tk;
        const char *bad = NULL, *what = NULL;
        int rc = slm__lq_scan_next(sc, &tk, &bad, &what);
        if (rc != SLM_OK) {
            return PERR(P, bad, "expected %s", what);
        }
        if (tk.type == TK_EOF) {
            if (stops) {
                const char *endw = stops[0];
                for (const char *const *s = stops; *s; s++) {
                    if (strncmp(*s, "end", 3) == 0) {
                        endw = *s;
                    }
                }
                return PERR(P, open_at, "'%s' was never closed (expected {%% %s %%})", open_name,
                            endw);
            }
            break;
        }
        if (tk.type == TK_TEXT) {
            struct lq_node *n = new_node(P, N_TEXT, tk.start);
            if (!n) {
                return nomem(P);
            }
            n->u.text = tk.text;
            n->blank = is_blank_text(tk.text);
            add(&list, n);
            continue;
        }
        if (tk.type == TK_OUTPUT) {
            struct lq_node *n = new_node(P, N_OUTPUT, tk.start);
            if (!n) {
                return nomem(P);
            }
            rc = tag_output(P, tk.text, "the output", n);
            if (rc != SLM_OK) {
                return rc;
            }
            add(&list, n);
            continue;
        }
        if (stops) {
            bool stop = false;
            for (const char *const *s = stops; *s; s++) {
                if (tok_is(&tk, *s)) {
                    stop = true;
                }
            }
            if (stop) {
                *end = tk;
                break;
            }
        }
        rc = parse_tag(P, sc, &tk, &list);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    out->first = list.head;
    out->blank = list.blank;
    return SLM_OK;
}

int slm__lq_parse_unit(struct lq_penv *env, const char *name, const char *src, size_t len,
                       struct lq_unit **out, struct slm_err *err) {
    const struct slm_liquid_params *p = &env->t->params;
    if (len > p->max_template_bytes) {
        return slm_err_set(err, SLM_E_TOO_LARGE,
                           "%s: template is %zu bytes, over the %zu-byte limit", name, len,
                           p->max_template_bytes);
    }
    struct lq_unit *u = slm_arena_alloc(env->arena, sizeof(*u));
    char *copy = slm_arena_strndup(env->arena, src, len);
    char *nm = slm_arena_strndup(env->arena, name, strlen(name));
    if (!u || !copy || !nm) {
        return slm_err_set(err, SLM_E_NOMEM, "%s: out of memory", name);
    }
    u->name = nm;
    u->src = copy;
    u->len = len;
    u->parsing = true;
    u->status = SLM_E_INVALID; /* until the parse below succeeds */
    u->next = *env->units;
    *env->units = u;
    struct lq_parser P = {env, u, err, 0, p->max_depth, p->mode};
    struct lq_scan sc;
    slm__lq_scan_init(&sc, copy, copy, copy + len, false);
    int rc = parse_body(&P, &sc, NULL, copy, NULL, &u->body, NULL);
    u->parsing = false;
    u->status = rc;
    if (rc != SLM_OK) {
        return rc;
    }
    *out = u;
    return SLM_OK;
}
