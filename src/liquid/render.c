/*
 * liquid/render.c - walks a parsed template and appends its output.
 *
 * Scopes: every symbol id has a slot holding the innermost pushed binding
 * (for loops, include arguments), the context's root value (assign,
 * capture), a counter (increment/decrement) and a cached lookup in the
 * variables, searched in that order as Liquid does. {% render %} gets a fresh
 * context that does not see the caller's variables; {% include %} shares it.
 *
 * Memory: nothing is allocated per node; values point into the template, the
 * variables or the render's scratch memory. Scratch memory, steps, the output
 * cap and runtime errors belong to the render's budget (budget.h, embedded
 * last in the render state so that its first 8 KiB chunk is not cleared).
 * Output goes straight into the caller's slm_buf; capture and ifchanged
 * render into it and take their text back out.
 *
 * This file is the top of the render side: it calls the filters through
 * their table (handing them a struct lq_fenv with the budget and eval_cb for
 * keyword arguments), values and the budget; none of them calls back here.
 */
#include "liquid/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liquid/ast.h"
#include "liquid/budget.h"
#include "liquid/filters.h"
#include "liquid/symtab.h"
#include "liquid/value.h"

/* ---------------------------------------------------------------- render state */

struct lq_binding {
    struct lq_val v;
    struct lq_binding *prev;
};

struct lq_slot {
    struct lq_binding *top; /* innermost pushed scope (for, include arguments) */
    struct lq_val root;     /* the context's outermost scope (assign, capture) */
    struct lq_val global;   /* cached lookup in the variables */
    int64_t counter;        /* increment / decrement */
    uint8_t has_root;
    uint8_t global_state; /* 0 not looked up, 1 cached */
    uint8_t has_counter;
};

/* A scope context: the template's, or an isolated one for {% render %}. */
struct lq_ctx {
    struct lq_slot *slots;
    uint32_t nslots;
    const json_t *globals; /* NULL in render'd partials */
    const struct lq_symtab *syms;
};

struct lq_loop {
    struct slm_str name;
    int64_t index0;
    int64_t length;
    int64_t cols; /* tablerow only; 0 for forloop */
    bool tablerow;
    const struct lq_loop *parent;
};

struct lq_cycle_state {
    struct lq_val key;
    int64_t iter;
};

struct lq_offset {
    struct slm_str name;
    int64_t next;
};

/* A direct-mapped cache of object[key] lookups for keys written in the
 * template (the variables do not change during a render). */
#define LQ_KCACHE 256
struct lq_kcache {
    const json_t *obj;
    const char *key;
    const json_t *val;
};

struct lq_rs {
    struct lq_kcache kcache[LQ_KCACHE];
    const struct slm_liquid_template *t;
    struct lq_ctx *ctx;
    int include_depth;
    int interrupt; /* 0, LQ_BREAK or LQ_CONTINUE */
    bool lax;
    const struct lq_loop *for_top; /* parentloop for the next forloop */
    struct lq_cycle_state *cycles;
    size_t ncycles, cycles_cap;
    struct lq_offset *offsets;
    size_t noffsets, offsets_cap;
    struct slm_str ifchanged;
    bool has_ifchanged;
    struct lq_symtab *dyn_syms; /* grown by partials named at render time */
    struct lq_unit *dyn_units;  /* partials parsed during this render */
    struct slm_arena dyn_arena;
    struct lq_fenv fenv;  /* what filters see: the budget, params.now, eval_cb */
    struct lq_budget bud; /* last: its first scratch chunk is not cleared */
};

#define LQ_BREAK 1
#define LQ_CONTINUE 2

/* Where runtime errors in `u` point. */
static struct lq_source unit_source(const struct lq_unit *u) {
    return (struct lq_source){u->name, u->src, u->len};
}

/* ---------------------------------------------------------------- scopes */

static const struct lq_symtab *syms(const struct lq_rs *rs) {
    return rs->dyn_syms ? rs->dyn_syms : &rs->t->syms;
}

static struct lq_slot *slot_for_write(struct lq_rs *rs, uint32_t sym) {
    struct lq_ctx *c = rs->ctx;
    if (sym >= c->nslots) {
        uint32_t n = syms(rs)->n > sym ? syms(rs)->n : sym + 1;
        struct lq_slot *s = slm__lq_alloc(&rs->bud, n * sizeof(*s));
        if (!s) {
            return NULL;
        }
        if (c->nslots) {
            memcpy(s, c->slots, c->nslots * sizeof(*s));
        }
        memset(s + c->nslots, 0, (n - c->nslots) * sizeof(*s));
        c->slots = s;
        c->nslots = n;
    }
    return &c->slots[sym];
}

static struct lq_val global_lookup(const struct lq_rs *rs, const char *name, size_t n) {
    const json_t *g = rs->ctx->globals;
    if (!g) {
        return lq_nil();
    }
    const json_t *j = json_object_getn(g, name, n);
    return j ? lq_from_json(j) : lq_nil();
}

static void lookup_sym(struct lq_rs *rs, uint32_t sym, struct lq_val *out) {
    struct lq_ctx *c = rs->ctx;
    if (sym < c->nslots) {
        struct lq_slot *s = &c->slots[sym];
        if (s->top) {
            *out = s->top->v;
        } else if (s->has_root) {
            *out = s->root;
        } else if (s->has_counter) {
            out->k = LQ_INT;
            out->u.i = s->counter;
        } else {
            if (!s->global_state) {
                const struct lq_sym *y = &syms(rs)->v[sym];
                s->global = global_lookup(rs, y->name, y->len);
                s->global_state = 1;
            }
            *out = s->global;
        }
        return;
    }
    const struct lq_sym *y = &syms(rs)->v[sym];
    *out = global_lookup(rs, y->name, y->len);
}

static int set_root(struct lq_rs *rs, uint32_t sym, const struct lq_val *v, uint32_t pos) {
    struct lq_slot *s = slot_for_write(rs, sym);
    if (!s) {
        return slm__lq_mem_fail(&rs->bud, pos);
    }
    s->root = *v;
    s->has_root = 1;
    return SLM_OK;
}

static struct lq_binding *push(struct lq_rs *rs, uint32_t sym, const struct lq_val *v) {
    struct lq_slot *s = slot_for_write(rs, sym);
    if (!s) {
        return NULL;
    }
    struct lq_binding *b = slm__lq_alloc(&rs->bud, sizeof(*b));
    if (!b) {
        return NULL;
    }
    b->v = *v;
    b->prev = s->top;
    s->top = b;
    return b;
}

static void pop(struct lq_rs *rs, uint32_t sym, struct lq_binding *b) {
    if (b) {
        rs->ctx->slots[sym].top = b->prev;
    }
}

/* ---------------------------------------------------------------- lookups */

static bool loop_attr(const struct lq_loop *l, uint8_t key, struct lq_val *out) {
    int64_t i = l->index0, n = l->length;
    int64_t cols = l->cols > 0 ? l->cols : 0;
    switch (key) {
    case K_NAME:
        if (l->tablerow) {
            return false;
        }
        *out = lq_str(l->name.ptr, l->name.len);
        return true;
    case K_LENGTH: *out = lq_int(n); return true;
    case K_INDEX: *out = lq_int(i + 1); return true;
    case K_INDEX0: *out = lq_int(i); return true;
    case K_RINDEX: *out = lq_int(n - i); return true;
    case K_RINDEX0: *out = lq_int(n - i - 1); return true;
    case K_FIRST: *out = lq_bool(i == 0); return true;
    case K_LAST: *out = lq_bool(i == n - 1); return true;
    case K_PARENTLOOP:
        if (l->tablerow) {
            return false;
        }
        if (l->parent) {
            out->k = LQ_LOOP;
            out->u.loop = l->parent;
        } else {
            *out = lq_nil();
        }
        return true;
    default: break;
    }
    if (!l->tablerow) {
        return false;
    }
    int64_t col = cols ? i % cols + 1 : i + 1;
    int64_t row = cols ? i / cols + 1 : 1;
    switch (key) {
    case K_COL: *out = lq_int(col); return true;
    case K_COL0: *out = lq_int(col - 1); return true;
    case K_COL_FIRST: *out = lq_bool(col == 1); return true;
    case K_COL_LAST: *out = lq_bool(cols ? col == cols : false); return true;
    case K_ROW: *out = lq_int(row); return true;
    default: return false;
    }
}

static int index_seq(const struct lq_val *v, int64_t i, struct lq_val *out) {
    size_t n = slm__lq_seq_len(v);
    if (i < 0) {
        i += (int64_t)n;
    }
    if (i < 0 || (uint64_t)i >= n) {
        *out = lq_nil();
    } else {
        *out = slm__lq_seq_get(v, (size_t)i);
    }
    return SLM_OK;
}

static struct lq_val first_pair(struct lq_rs *rs, const json_t *o, bool *nomem) {
    void *it = json_object_iter((json_t *)o);
    if (!it) {
        return lq_nil();
    }
    struct lq_arr *a = slm__lq_arr_new(&rs->bud, 2);
    if (!a) {
        *nomem = true;
        return lq_nil();
    }
    a->v[0] = lq_str(json_object_iter_key(it), json_object_iter_key_len(it));
    a->v[1] = lq_from_json(json_object_iter_value(it));
    return lq_arr_val(a);
}

static int eval_prim(struct lq_rs *rs, const struct lq_prim *p, struct lq_val *out);

/* One step of a path, in place: v[key] / v.key / v[index]. */
static int step(struct lq_rs *rs, struct lq_val *v, const struct lq_seg *s, uint32_t pos) {
    const char *kp = NULL;
    size_t kn = 0;
    int64_t idx = 0;
    bool is_idx = false;
    bool dot = s->dot;
    uint8_t kid = s->key;
    if (s->kind == SEG_KEY) {
        kp = s->name.ptr;
        kn = s->name.len;
    } else if (s->kind == SEG_INDEX) {
        idx = s->index;
        is_idx = true;
    } else {
        struct lq_val key;
        int rc = eval_prim(rs, s->dyn, &key);
        if (rc != SLM_OK) {
            return rc;
        }
        kid = K_NONE;
        if (key.k == LQ_INT) {
            idx = key.u.i;
            is_idx = true;
        } else if (key.k == LQ_STR) {
            kp = key.u.s.p;
            kn = key.u.s.n;
        } else {
            *v = lq_nil();
            return SLM_OK;
        }
    }
    switch (v->k) {
    case LQ_JOBJ:
        if (kp) {
            const json_t *j;
            if (s->kind == SEG_KEY) {
                uintptr_t h = ((uintptr_t)v->u.j >> 4) ^ ((uintptr_t)kp >> 2);
                struct lq_kcache *c = &rs->kcache[(h ^ (h >> 8)) & (LQ_KCACHE - 1)];
                if (c->obj != v->u.j || c->key != kp) {
                    c->obj = v->u.j;
                    c->key = kp;
                    c->val = json_object_getn(v->u.j, kp, kn);
                }
                j = c->val;
            } else {
                j = json_object_getn(v->u.j, kp, kn);
            }
            if (j) {
                *v = lq_from_json(j);
                return SLM_OK;
            }
            if (dot && kid == K_SIZE) {
                *v = lq_int((int64_t)json_object_size(v->u.j));
                return SLM_OK;
            }
            if (dot && kid == K_FIRST) {
                bool nm = false;
                *v = first_pair(rs, v->u.j, &nm);
                return nm ? slm__lq_mem_fail(&rs->bud, pos) : SLM_OK;
            }
        }
        break;
    case LQ_ARR:
    case LQ_JARR:
    case LQ_RANGE:
        if (is_idx) {
            return index_seq(v, idx, v);
        }
        if (dot && kid == K_SIZE) {
            *v = lq_count(slm__lq_seq_len(v));
            return SLM_OK;
        }
        if (dot && kid == K_FIRST) {
            return index_seq(v, 0, v);
        }
        if (dot && kid == K_LAST) {
            return index_seq(v, -1, v);
        }
        break;
    case LQ_STR:
        if (dot && kid == K_SIZE) {
            *v = lq_int((int64_t)slm__lq_utf8_len(v->u.s.p, v->u.s.n));
            return SLM_OK;
        }
        break;
    case LQ_LOOP:
        if (kid != K_NONE && loop_attr(v->u.loop, kid, v)) {
            return SLM_OK;
        }
        break;
    default: break;
    }
    *v = lq_nil();
    return SLM_OK;
}

__attribute__((noinline)) static int resolve(struct lq_rs *rs, const struct lq_prim *p,
                                             struct lq_val *out) {
    const struct lq_path *path = p->u.var;
    if (path->sym != LQ_NOSYM) {
        lookup_sym(rs, path->sym, out);
    } else {
        struct lq_val name;
        int rc = eval_prim(rs, path->root_dyn, &name);
        if (rc != SLM_OK) {
            return rc;
        }
        if (name.k != LQ_STR) {
            *out = lq_nil();
        } else {
            uint32_t sym = slm__lq_sym_find(syms(rs), name.u.s.p, name.u.s.n);
            if (sym != LQ_NOSYM) {
                lookup_sym(rs, sym, out);
            } else {
                *out = global_lookup(rs, name.u.s.p, name.u.s.n);
            }
        }
    }
    for (uint32_t i = 0; i < path->nseg && out->k != LQ_NIL; i++) {
        int rc = step(rs, out, &path->seg[i], p->pos);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int range_bound(struct lq_rs *rs, const struct lq_val *v, uint32_t pos, int64_t *out) {
    switch (v->k) {
    case LQ_INT: *out = v->u.i; return SLM_OK;
    case LQ_FLOAT: *out = lq_f2i(v->u.f); return SLM_OK;
    case LQ_STR: *out = slm__lq_str_to_i(v->u.s.p, v->u.s.n); return SLM_OK;
    case LQ_NIL: *out = 0; return SLM_OK;
    default: return slm__lq_rt_err(&rs->bud, pos, SLM_E_INVALID, "range bounds must be numbers");
    }
}

static int eval_range(struct lq_rs *rs, const struct lq_prim *p, struct lq_val *out) {
    struct lq_val lo, hi;
    int rc = eval_prim(rs, p->u.range.lo, &lo);
    if (rc == SLM_OK) {
        rc = eval_prim(rs, p->u.range.hi, &hi);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    out->k = LQ_RANGE;
    rc = range_bound(rs, &lo, p->pos, &out->u.r.lo);
    if (rc == SLM_OK) {
        rc = range_bound(rs, &hi, p->pos, &out->u.r.hi);
    }
    return rc;
}

/* Literals are copied inline; paths and ranges go out of line, so the common
 * case costs no call. */
static inline int eval(struct lq_rs *rs, const struct lq_prim *p, struct lq_val *out) {
    if (p->kind == P_LIT) {
        *out = p->u.lit;
        return SLM_OK;
    }
    return p->kind == P_VAR ? resolve(rs, p, out) : eval_range(rs, p, out);
}

static int eval_prim(struct lq_rs *rs, const struct lq_prim *p, struct lq_val *out) {
    return eval(rs, p, out);
}

/* The filters' evaluator for keyword arguments (struct lq_fenv). */
static int eval_cb(void *ctx, const struct lq_prim *p, struct lq_val *out) {
    return eval(ctx, p, out);
}

/* ---------------------------------------------------------------- expressions */

#define LQ_MAX_FARGS 32

static int apply_filter(struct lq_rs *rs, const struct lq_filter *f, struct lq_val *v) {
    const struct lq_filter_def *d = &slm__lq_filters[f->id];
    struct lq_val small[4];
    struct lq_val *args = small;
    unsigned n = f->npos > d->max ? f->npos : d->max;
    if (n > LQ_MAX_FARGS) {
        n = LQ_MAX_FARGS;
    }
    if (n > SLM_ARRAY_LEN(small)) {
        args = slm__lq_alloc(&rs->bud, n * sizeof(*args));
        if (!args) {
            return slm__lq_mem_fail(&rs->bud, f->pos);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (i < f->npos) {
            int rc = eval(rs, &f->args[i], &args[i]);
            if (rc != SLM_OK) {
                return rc;
            }
        } else {
            args[i] = lq_nil();
        }
    }
    rs->bud.steps++;
    if (v->k == LQ_EMPTY || v->k == LQ_BLANK) {
        *v = lq_str("", 0); /* filters see the literals empty and blank as '' */
    }
    return d->fn(&rs->fenv, f, v, args);
}

static int eval_fexpr(struct lq_rs *rs, const struct lq_fexpr *fe, struct lq_val *v) {
    int rc = eval(rs, &fe->prim, v);
    for (uint32_t i = 0; i < fe->nfilt && rc == SLM_OK; i++) {
        rc = apply_filter(rs, &fe->filt[i], v);
    }
    return rc;
}

static int write_val(struct lq_rs *rs, const struct lq_val *v, uint32_t pos) {
    char buf[48];
    size_t n;
    switch (v->k) {
    case LQ_STR: return slm__lq_out_put(&rs->bud, v->u.s.p, v->u.s.n, pos);
    case LQ_NIL: return SLM_OK;
    case LQ_INT: n = slm__lq_fmt_int(v->u.i, buf); return slm__lq_out_put(&rs->bud, buf, n, pos);
    case LQ_FLOAT:
        n = slm__lq_fmt_float(v->u.f, buf);
        return slm__lq_out_put(&rs->bud, buf, n, pos);
    case LQ_BOOL:
        return v->u.b ? slm__lq_out_put(&rs->bud, "true", 4, pos)
                      : slm__lq_out_put(&rs->bud, "false", 5, pos);
    default: break;
    }
    struct slm_str s;
    int rc = slm__lq_to_str(&rs->bud, v, &s);
    if (rc != SLM_OK) {
        return slm__lq_mem_fail(&rs->bud, pos);
    }
    return slm__lq_out_put(&rs->bud, s.ptr, s.len, pos);
}

static int eval_cond(struct lq_rs *rs, const struct lq_cond *c, bool *res) {
    for (;;) {
        struct lq_val l, r;
        bool t;
        int rc = eval(rs, &c->l, &l);
        if (rc != SLM_OK) {
            return rc;
        }
        if (c->op == OP_NONE) {
            t = lq_truthy(&l);
        } else {
            rc = eval(rs, &c->r, &r);
            if (rc == SLM_OK) {
                rc = slm__lq_compare(&rs->bud, c->l.pos, &l, c->op, &r, &t);
            }
            if (rc != SLM_OK) {
                return rc;
            }
        }
        if (c->rel == REL_NONE || (c->rel == REL_OR && t) || (c->rel == REL_AND && !t)) {
            *res = t;
            return SLM_OK;
        }
        c = c->next;
    }
}

/* ---------------------------------------------------------------- nodes */

static int render_block(struct lq_rs *rs, const struct lq_block *b);

static int render_if(struct lq_rs *rs, const struct lq_if *in) {
    bool first = true;
    for (const struct lq_branch *br = in->branches; br; br = br->next) {
        bool t = true;
        if (br->cond) {
            int rc = eval_cond(rs, br->cond, &t);
            if (rc != SLM_OK) {
                return rc;
            }
            if (first && in->unless) {
                t = !t;
            }
        }
        first = false;
        if (t) {
            return render_block(rs, &br->body);
        }
    }
    return SLM_OK;
}

static int render_case(struct lq_rs *rs, const struct lq_case *cs) {
    struct lq_val subj;
    int rc = eval(rs, &cs->subject, &subj);
    if (rc != SLM_OK) {
        return rc;
    }
    bool matched = false;
    for (const struct lq_when *w = cs->whens; w; w = w->next) {
        if (w->is_else) {
            if (!matched) {
                rc = render_block(rs, w->body);
            }
        } else {
            struct lq_val v;
            rc = eval(rs, &w->val, &v);
            if (rc == SLM_OK && slm__lq_equal(&subj, &v)) {
                matched = true;
                rc = render_block(rs, w->body);
            }
        }
        if (rc != SLM_OK || rs->interrupt) {
            return rc;
        }
    }
    return SLM_OK;
}

/* Ruby's Integer(): integers and integer strings; anything else is an error. */
static int to_integer(struct lq_rs *rs, const struct lq_val *v, uint32_t pos, const char *what,
                      int64_t *out) {
    if (v->k == LQ_INT) {
        *out = v->u.i;
        return SLM_OK;
    }
    if (v->k == LQ_STR) {
        struct slm_str s = slm_str_trim((struct slm_str){v->u.s.p, v->u.s.n});
        int64_t i;
        if (slm_parse_i64(s, &i) == SLM_OK) {
            *out = i;
            return SLM_OK;
        }
    }
    return slm__lq_rt_err(&rs->bud, pos, SLM_E_INVALID, "%s must be an integer", what);
}

/* Ruby's to_i for tablerow attributes. */
static int64_t to_i(const struct lq_val *v) {
    switch (v->k) {
    case LQ_INT: return v->u.i;
    case LQ_FLOAT: return lq_f2i(v->u.f);
    case LQ_STR: return slm__lq_str_to_i(v->u.s.p, v->u.s.n);
    default: return 0;
    }
}

/* A collection as something indexable: arrays and ranges as they are, a hash
 * as its [key, value] pairs, a non-empty string as itself once. */
static int loop_items(struct lq_rs *rs, const struct lq_val *coll, uint32_t pos,
                      struct lq_val *seq) {
    switch (coll->k) {
    case LQ_ARR:
    case LQ_JARR:
    case LQ_RANGE: *seq = *coll; return SLM_OK;
    case LQ_JOBJ: {
        size_t n = json_object_size(coll->u.j);
        struct lq_arr *a = slm__lq_arr_new(&rs->bud, n);
        if (!a) {
            return slm__lq_mem_fail(&rs->bud, pos);
        }
        size_t i = 0;
        const char *key;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach((json_t *)coll->u.j, key, klen, val) {
            struct lq_arr *pair = slm__lq_arr_new(&rs->bud, 2);
            if (!pair) {
                return slm__lq_mem_fail(&rs->bud, pos);
            }
            pair->v[0] = lq_str(key, klen);
            pair->v[1] = lq_from_json(val);
            a->v[i++] = lq_arr_val(pair);
        }
        *seq = lq_arr_val(a);
        return SLM_OK;
    }
    case LQ_STR:
        if (coll->u.s.n == 0) {
            break;
        }
        {
            struct lq_arr *a = slm__lq_arr_new(&rs->bud, 1);
            if (!a) {
                return slm__lq_mem_fail(&rs->bud, pos);
            }
            a->v[0] = *coll;
            *seq = lq_arr_val(a);
        }
        return SLM_OK;
    default: break;
    }
    *seq = lq_arr_val(NULL);
    seq->k = LQ_NIL;
    return SLM_OK;
}

static int64_t *offset_slot(struct lq_rs *rs, struct slm_str name) {
    for (size_t i = 0; i < rs->noffsets; i++) {
        if (slm_str_eq(rs->offsets[i].name, name)) {
            return &rs->offsets[i].next;
        }
    }
    if (rs->noffsets == rs->offsets_cap) {
        size_t cap = rs->offsets_cap ? rs->offsets_cap * 2 : 8;
        struct lq_offset *v = slm__lq_alloc(&rs->bud, cap * sizeof(*v));
        if (!v) {
            return NULL;
        }
        if (rs->noffsets) {
            memcpy(v, rs->offsets, rs->noffsets * sizeof(*v));
        }
        rs->offsets = v;
        rs->offsets_cap = cap;
    }
    rs->offsets[rs->noffsets] = (struct lq_offset){name, 0};
    return &rs->offsets[rs->noffsets++].next;
}

/* [start, start+count) of a sequence of `len` items after offset/limit the way
 * Liquid's slice_collection does it. */
static void window(size_t len, int64_t from, bool has_limit, int64_t limit, size_t *start,
                   size_t *count) {
    int64_t lo = from < 0 ? 0 : from;
    int64_t hi = len > (size_t)INT64_MAX ? INT64_MAX : (int64_t)len;
    if (has_limit) {
        int64_t to;
        if (__builtin_add_overflow(from, limit, &to)) {
            to = limit > 0 ? INT64_MAX : INT64_MIN;
        }
        if (to < hi) {
            hi = to;
        }
    }
    if (hi < lo) {
        hi = lo;
    }
    if (lo > (int64_t)len) {
        lo = hi = (int64_t)len;
    }
    *start = (size_t)lo;
    *count = (size_t)(hi - lo);
}

static int render_for(struct lq_rs *rs, const struct lq_node *n) {
    const struct lq_for *f = n->u.for_;
    struct lq_val coll, seq;
    int rc = eval(rs, &f->coll, &coll);
    if (rc != SLM_OK) {
        return rc;
    }
    int64_t from = 0, limit = 0;
    int64_t *cont = offset_slot(rs, f->name);
    if (!cont) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    if (f->offset_continue) {
        from = *cont;
    } else if (f->offset) {
        struct lq_val v;
        rc = eval(rs, f->offset, &v);
        if (rc == SLM_OK && v.k != LQ_NIL) {
            rc = to_integer(rs, &v, f->offset->pos, "offset", &from);
        }
        if (rc != SLM_OK) {
            return rc;
        }
    }
    bool has_limit = false;
    if (f->limit) {
        struct lq_val v;
        rc = eval(rs, f->limit, &v);
        if (rc == SLM_OK && v.k != LQ_NIL) {
            has_limit = true;
            rc = to_integer(rs, &v, f->limit->pos, "limit", &limit);
        }
        if (rc != SLM_OK) {
            return rc;
        }
    }
    rc = loop_items(rs, &coll, n->pos, &seq);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t len = seq.k == LQ_NIL ? 0 : slm__lq_seq_len(&seq);
    size_t start, count;
    if (coll.k == LQ_STR) {
        start = 0;
        count = len;
    } else {
        window(len, from, has_limit, limit, &start, &count);
    }
    if (__builtin_add_overflow(from, (int64_t)count, cont)) {
        *cont = INT64_MAX;
    }
    if (count == 0) {
        return f->else_body ? render_block(rs, f->else_body) : SLM_OK;
    }
    struct lq_loop *loop = slm__lq_alloc(&rs->bud, sizeof(*loop));
    if (!loop) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    *loop = (struct lq_loop){f->name, 0, (int64_t)count, 0, false, rs->for_top};
    struct lq_val lv = {.k = LQ_LOOP, .u.loop = loop};
    static const char forloop[] = "forloop";
    uint32_t fsym = slm__lq_sym_find(syms(rs), forloop, sizeof(forloop) - 1);
    struct lq_binding *fb = NULL;
    if (fsym != LQ_NOSYM && !(fb = push(rs, fsym, &lv))) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    struct lq_val nil = lq_nil();
    struct lq_binding *vb = push(rs, f->var, &nil);
    if (!vb) {
        pop(rs, fsym, fb);
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    rs->for_top = loop;
    rc = SLM_OK;
    for (size_t i = 0; i < count; i++) {
        size_t idx = f->reversed ? start + count - 1 - i : start + i;
        vb->v = slm__lq_seq_get(&seq, idx);
        loop->index0 = (int64_t)i;
        rc = slm__lq_charge(&rs->bud, 1, n->pos);
        if (rc == SLM_OK) {
            rc = render_block(rs, &f->body);
        }
        if (rc != SLM_OK) {
            break;
        }
        if (rs->interrupt) {
            int what = rs->interrupt;
            rs->interrupt = 0;
            if (what == LQ_BREAK) {
                break;
            }
        }
    }
    rs->for_top = loop->parent;
    pop(rs, f->var, vb);
    pop(rs, fsym, fb);
    return rc;
}

static int render_tablerow(struct lq_rs *rs, const struct lq_node *n) {
    const struct lq_for *f = n->u.for_;
    struct lq_val coll, seq, v;
    int rc = eval(rs, &f->coll, &coll);
    if (rc != SLM_OK) {
        return rc;
    }
    if (!lq_truthy(&coll)) {
        return SLM_OK;
    }
    int64_t from = 0, limit = 0, cols = 0;
    bool has_limit = false;
    if (f->offset) {
        if ((rc = eval(rs, f->offset, &v)) != SLM_OK) {
            return rc;
        }
        from = to_i(&v);
    }
    if (f->limit) {
        if ((rc = eval(rs, f->limit, &v)) != SLM_OK) {
            return rc;
        }
        has_limit = true;
        limit = to_i(&v);
    }
    if (f->cols) {
        if ((rc = eval(rs, f->cols, &v)) != SLM_OK) {
            return rc;
        }
        cols = to_i(&v);
    }
    if ((rc = loop_items(rs, &coll, n->pos, &seq)) != SLM_OK) {
        return rc;
    }
    size_t len = seq.k == LQ_NIL ? 0 : slm__lq_seq_len(&seq);
    size_t start, count;
    if (coll.k == LQ_STR) {
        start = 0;
        count = len;
    } else {
        window(len, from, has_limit, limit, &start, &count);
    }
    if (!f->cols) {
        cols = (int64_t)count;
    }
    struct lq_loop *loop = slm__lq_alloc(&rs->bud, sizeof(*loop));
    if (!loop) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    *loop = (struct lq_loop){{NULL, 0}, 0, (int64_t)count, cols, true, NULL};
    struct lq_val lv = {.k = LQ_LOOP, .u.loop = loop};
    static const char trl[] = "tablerowloop";
    uint32_t tsym = slm__lq_sym_find(syms(rs), trl, sizeof(trl) - 1);
    struct lq_binding *tb = NULL;
    if (tsym != LQ_NOSYM && !(tb = push(rs, tsym, &lv))) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    struct lq_val nil = lq_nil();
    struct lq_binding *vb = push(rs, f->var, &nil);
    if (!vb) {
        pop(rs, tsym, tb);
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    rc = slm__lq_out_put(&rs->bud, "<tr class=\"row1\">\n", 18, n->pos);
    for (size_t i = 0; i < count && rc == SLM_OK; i++) {
        vb->v = slm__lq_seq_get(&seq, start + i);
        loop->index0 = (int64_t)i;
        struct lq_val col;
        loop_attr(loop, K_COL, &col);
        char buf[64];
        int k = snprintf(buf, sizeof(buf), "<td class=\"col%lld\">", (long long)col.u.i);
        rc = slm__lq_charge(&rs->bud, 1, n->pos);
        if (rc == SLM_OK) {
            rc = slm__lq_out_put(&rs->bud, buf, (size_t)k, n->pos);
        }
        if (rc == SLM_OK) {
            rc = render_block(rs, &f->body);
        }
        if (rc == SLM_OK) {
            rc = slm__lq_out_put(&rs->bud, "</td>", 5, n->pos);
        }
        if (rc != SLM_OK) {
            break;
        }
        if (rs->interrupt) {
            int what = rs->interrupt;
            rs->interrupt = 0;
            if (what == LQ_BREAK) {
                break;
            }
        }
        struct lq_val cl, row;
        loop_attr(loop, K_COL_LAST, &cl);
        loop_attr(loop, K_ROW, &row);
        if (cl.u.b && i + 1 < count) {
            k = snprintf(buf, sizeof(buf), "</tr>\n<tr class=\"row%lld\">", (long long)row.u.i + 1);
            rc = slm__lq_out_put(&rs->bud, buf, (size_t)k, n->pos);
        }
    }
    if (rc == SLM_OK) {
        rc = slm__lq_out_put(&rs->bud, "</tr>\n", 6, n->pos);
    }
    pop(rs, f->var, vb);
    pop(rs, tsym, tb);
    return rc;
}

/* Renders `b` into the output, then moves what it wrote into scratch. */
static int render_to_string(struct lq_rs *rs, const struct lq_block *b, uint32_t pos,
                            struct lq_val *out) {
    size_t mark = rs->bud.out->len;
    int rc = render_block(rs, b);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t n = rs->bud.out->len - mark;
    char *s = slm__lq_alloc(&rs->bud, n + 1);
    if (!s) {
        return slm__lq_mem_fail(&rs->bud, pos);
    }
    memcpy(s, rs->bud.out->ptr ? rs->bud.out->ptr + mark : "", n);
    s[n] = '\0';
    rs->bud.out->len = mark;
    *out = lq_str(s, n);
    return SLM_OK;
}

static int render_counter(struct lq_rs *rs, const struct lq_node *n) {
    struct lq_slot *s = slot_for_write(rs, n->u.counter);
    if (!s) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    if (!s->has_counter) {
        struct lq_val g = s->global_state ? s->global
                                          : global_lookup(rs, syms(rs)->v[n->u.counter].name,
                                                          syms(rs)->v[n->u.counter].len);
        s->counter = g.k == LQ_INT ? g.u.i : 0;
        s->has_counter = 1;
    }
    struct lq_val v;
    if (n->kind == N_INCREMENT) {
        v = lq_int(s->counter);
        s->counter = s->counter == INT64_MAX ? s->counter : s->counter + 1;
    } else {
        s->counter = s->counter == INT64_MIN ? s->counter : s->counter - 1;
        v = lq_int(s->counter);
    }
    return write_val(rs, &v, n->pos);
}

static int render_cycle(struct lq_rs *rs, const struct lq_node *n) {
    const struct lq_cycle *cy = n->u.cycle;
    struct lq_val key;
    if (cy->group) {
        int rc = eval(rs, cy->group, &key);
        if (rc != SLM_OK) {
            return rc;
        }
    } else {
        key = lq_str(cy->key.ptr, cy->key.len);
        key.k = LQ_STR;
    }
    struct lq_cycle_state *st = NULL;
    int crc = slm__lq_charge(&rs->bud, rs->ncycles, n->pos);
    if (crc != SLM_OK) {
        return crc;
    }
    for (size_t i = 0; i < rs->ncycles; i++) {
        if (rs->cycles[i].key.k == key.k && slm__lq_equal(&rs->cycles[i].key, &key)) {
            st = &rs->cycles[i];
            break;
        }
    }
    if (!st) {
        if (rs->ncycles == rs->cycles_cap) {
            size_t cap = rs->cycles_cap ? rs->cycles_cap * 2 : 8;
            struct lq_cycle_state *v = slm__lq_alloc(&rs->bud, cap * sizeof(*v));
            if (!v) {
                return slm__lq_mem_fail(&rs->bud, n->pos);
            }
            if (rs->ncycles) {
                memcpy(v, rs->cycles, rs->ncycles * sizeof(*v));
            }
            rs->cycles = v;
            rs->cycles_cap = cap;
        }
        st = &rs->cycles[rs->ncycles++];
        st->key = key;
        st->iter = 0;
    }
    struct lq_val v = lq_nil();
    if (st->iter < (int64_t)cy->n) {
        int rc = eval(rs, &cy->vals[st->iter], &v);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    st->iter = st->iter + 1 >= (int64_t)cy->n ? 0 : st->iter + 1;
    return write_val(rs, &v, n->pos);
}

static const struct lq_unit *find_unit(struct lq_unit *list, const char *name, size_t n) {
    for (; list; list = list->next) {
        if (list->status == SLM_OK && strlen(list->name) == n && memcmp(list->name, name, n) == 0) {
            return list;
        }
    }
    return NULL;
}

/* A partial named at render time: looked up, else loaded and parsed into the
 * render's own arena and symbol table (the template stays untouched). */
static int dynamic_unit(struct lq_rs *rs, const struct lq_node *n, struct lq_val *name,
                        const struct lq_unit **out) {
    if (name->k != LQ_STR || name->u.s.n == 0) {
        return slm__lq_rt_err(&rs->bud, n->pos, SLM_E_INVALID,
                              "include needs a template name (got an empty or non-string value)");
    }
    const struct lq_unit *u = find_unit(rs->dyn_units, name->u.s.p, name->u.s.n);
    if (!u) {
        u = find_unit(rs->t->units, name->u.s.p, name->u.s.n);
    }
    if (u) {
        *out = u;
        return SLM_OK;
    }
    char *nm = slm__lq_alloc(&rs->bud, name->u.s.n + 1);
    if (!nm) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    memcpy(nm, name->u.s.p, name->u.s.n);
    nm[name->u.s.n] = '\0';
    if (!rs->dyn_syms) {
        rs->dyn_syms = malloc(sizeof(*rs->dyn_syms));
        if (!rs->dyn_syms || slm__lq_symtab_copy(rs->dyn_syms, &rs->t->syms) != SLM_OK) {
            free(rs->dyn_syms);
            rs->dyn_syms = NULL;
            return slm__lq_mem_fail(&rs->bud, n->pos);
        }
    }
    struct slm_buf src;
    slm_buf_init(&src, rs->t->params.max_template_bytes);
    struct slm_err lerr;
    slm_err_clear(&lerr);
    int rc = slm__lq_load_source(rs->t, nm, &src, &lerr);
    if (rc != SLM_OK) {
        slm_buf_free(&src);
        if (rc == SLM_E_NOT_FOUND) {
            return slm__lq_rt_err(&rs->bud, n->pos, SLM_E_NOT_FOUND, "partial '%s' not found", nm);
        }
        return slm__lq_rt_err(&rs->bud, n->pos, rc, "partial '%s': %s", nm,
                              lerr.msg[0] ? lerr.msg : slm_strerror(rc));
    }
    struct lq_penv env = {rs->t,
                          &rs->dyn_arena,
                          rs->dyn_syms,
                          &rs->dyn_units,
                          (struct lq_unit *const *)&rs->t->units,
                          NULL,
                          NULL,
                          rs->include_depth};
    struct lq_unit *pu;
    rc = slm__lq_parse_unit(&env, nm, slm_buf_cstr(&src), src.len, &pu, rs->bud.err);
    slm_buf_free(&src);
    if (rc != SLM_OK) {
        return rc;
    }
    *out = pu;
    return SLM_OK;
}

static int render_unit(struct lq_rs *rs, const struct lq_unit *u) {
    struct lq_source saved = rs->bud.where;
    rs->bud.where = unit_source(u);
    int rc = render_block(rs, &u->body);
    rs->bud.where = saved;
    return rc;
}

static bool is_iterable(const struct lq_val *v) {
    return v->k == LQ_ARR || v->k == LQ_JARR || v->k == LQ_RANGE || v->k == LQ_JOBJ;
}

/* {% render %}: a fresh context per call (and per item with `for`). */
static int render_isolated(struct lq_rs *rs, const struct lq_node *n, const struct lq_unit *u,
                           const struct lq_val *args, const struct lq_val *bound,
                           const struct lq_loop *loop) {
    const struct lq_include *inc = n->u.inc;
    struct lq_ctx ctx = {NULL, 0, NULL, NULL};
    uint32_t ns = syms(rs)->n;
    ctx.slots = slm__lq_alloc(&rs->bud, (ns ? ns : 1) * sizeof(*ctx.slots));
    if (!ctx.slots) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    memset(ctx.slots, 0, (ns ? ns : 1) * sizeof(*ctx.slots));
    ctx.nslots = ns;
    struct lq_ctx *outer = rs->ctx;
    const struct lq_loop *outer_for = rs->for_top;
    rs->ctx = &ctx;
    rs->for_top = NULL;
    int rc = SLM_OK;
    if (loop) {
        static const char forloop[] = "forloop";
        uint32_t fsym = slm__lq_sym_find(syms(rs), forloop, sizeof(forloop) - 1);
        struct lq_val lv = {.k = LQ_LOOP, .u.loop = loop};
        if (fsym != LQ_NOSYM) {
            rc = set_root(rs, fsym, &lv, n->pos);
        }
    }
    if (rc == SLM_OK && bound && inc->bind != LQ_NOSYM) {
        rc = set_root(rs, inc->bind, bound, n->pos);
    }
    for (uint32_t i = 0; i < inc->nargs && rc == SLM_OK; i++) {
        rc = set_root(rs, inc->args[i].sym, &args[i], n->pos);
    }
    if (rc == SLM_OK) {
        rc = render_unit(rs, u);
    }
    rs->interrupt = 0;
    rs->ctx = outer;
    rs->for_top = outer_for;
    return rc;
}

static int render_include(struct lq_rs *rs, const struct lq_node *n) {
    const struct lq_include *inc = n->u.inc;
    const struct lq_unit *u = inc->unit;
    uint32_t bind = inc->bind;
    int rc;
    if (!u) {
        struct lq_val name;
        if ((rc = eval(rs, &inc->name, &name)) != SLM_OK) {
            return rc;
        }
        if (inc->name.kind == P_LIT) {
            return slm__lq_rt_err(&rs->bud, n->pos, SLM_E_NOT_FOUND, "partial '%.*s' not found",
                                  (int)SLM_MIN(name.u.s.n, 100), name.u.s.p);
        }
        if ((rc = dynamic_unit(rs, n, &name, &u)) != SLM_OK) {
            return rc;
        }
        const char *base = name.u.s.p + name.u.s.n;
        while (base > name.u.s.p && base[-1] != '/') {
            base--;
        }
        if (bind == LQ_NOSYM && rs->dyn_syms) {
            bind = slm__lq_sym_intern(rs->dyn_syms, &rs->dyn_arena, base,
                                      (size_t)(name.u.s.p + name.u.s.n - base));
        }
    }
    if (rs->include_depth >= rs->t->params.max_include_depth) {
        return slm__lq_rt_err(&rs->bud, n->pos, SLM_E_LIMIT, "include/render nested deeper than %d",
                              rs->t->params.max_include_depth);
    }
    struct lq_val args[32];
    for (uint32_t i = 0; i < inc->nargs && i < 32; i++) {
        if ((rc = eval(rs, &inc->args[i].val, &args[i])) != SLM_OK) {
            return rc;
        }
    }
    struct lq_val with = lq_nil();
    if (inc->with && (rc = eval(rs, inc->with, &with)) != SLM_OK) {
        return rc;
    }
    rs->include_depth++;
    if (n->kind == N_RENDER) {
        if (inc->with && inc->is_for && is_iterable(&with)) {
            struct lq_val seq;
            rc = loop_items(rs, &with, n->pos, &seq);
            size_t cnt = rc == SLM_OK ? slm__lq_seq_len(&seq) : 0;
            struct lq_loop *loop = slm__lq_alloc(&rs->bud, sizeof(*loop));
            if (!loop && rc == SLM_OK) {
                rc = slm__lq_mem_fail(&rs->bud, n->pos);
            }
            for (size_t i = 0; i < cnt && rc == SLM_OK; i++) {
                *loop = (struct lq_loop){
                    {u->name, strlen(u->name)}, (int64_t)i, (int64_t)cnt, 0, false, NULL};
                struct lq_val item = slm__lq_seq_get(&seq, i);
                rc = slm__lq_charge(&rs->bud, 1, n->pos);
                if (rc == SLM_OK) {
                    rc = render_isolated(rs, n, u, args, &item, loop);
                }
            }
        } else {
            rc = render_isolated(rs, n, u, args, inc->with ? &with : NULL, NULL);
        }
        rs->include_depth--;
        return rc;
    }
    /* include: the caller's context, arguments in a pushed scope */
    struct lq_binding *bs[32];
    uint32_t na = inc->nargs < 32 ? inc->nargs : 32;
    rc = SLM_OK;
    for (uint32_t i = 0; i < na; i++) {
        bs[i] = push(rs, inc->args[i].sym, &args[i]);
        if (!bs[i]) {
            na = i;
            rc = slm__lq_mem_fail(&rs->bud, n->pos);
            break;
        }
    }
    if (rc == SLM_OK) {
        if (inc->with && bind != LQ_NOSYM) {
            struct lq_val nil = lq_nil();
            struct lq_binding *vb = push(rs, bind, &nil);
            if (!vb) {
                rc = slm__lq_mem_fail(&rs->bud, n->pos);
            } else if (with.k == LQ_ARR || with.k == LQ_JARR) {
                size_t cnt = slm__lq_seq_len(&with);
                for (size_t i = 0; i < cnt && rc == SLM_OK && !rs->interrupt; i++) {
                    vb->v = slm__lq_seq_get(&with, i);
                    rc = slm__lq_charge(&rs->bud, 1, n->pos);
                    if (rc == SLM_OK) {
                        rc = render_unit(rs, u);
                    }
                }
            } else {
                vb->v = with;
                rc = render_unit(rs, u);
            }
            pop(rs, bind, vb);
        } else {
            rc = render_unit(rs, u);
        }
    }
    for (uint32_t i = na; i-- > 0;) {
        pop(rs, inc->args[i].sym, bs[i]);
    }
    rs->include_depth--;
    return rc;
}

static int render_ifchanged(struct lq_rs *rs, const struct lq_node *n) {
    size_t mark = rs->bud.out->len;
    int rc = render_block(rs, &n->u.body);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_str now = {rs->bud.out->ptr ? rs->bud.out->ptr + mark : "", rs->bud.out->len - mark};
    if (rs->has_ifchanged && slm_str_eq(now, rs->ifchanged)) {
        rs->bud.out->len = mark;
        return SLM_OK;
    }
    char *copy = slm__lq_alloc(&rs->bud, now.len + 1);
    if (!copy) {
        return slm__lq_mem_fail(&rs->bud, n->pos);
    }
    memcpy(copy, now.ptr, now.len);
    rs->ifchanged = (struct slm_str){copy, now.len};
    rs->has_ifchanged = true;
    return SLM_OK;
}

static int render_node(struct lq_rs *rs, const struct lq_node *n) {
    switch (n->kind) {
    case N_OUTPUT: {
        struct lq_val v;
        int rc = eval_fexpr(rs, &n->u.out, &v);
        return rc == SLM_OK ? write_val(rs, &v, n->pos) : rc;
    }
    case N_IF: return render_if(rs, n->u.if_);
    case N_CASE: return render_case(rs, n->u.case_);
    case N_FOR: return render_for(rs, n);
    case N_TABLEROW: return render_tablerow(rs, n);
    case N_ASSIGN: {
        struct lq_val v;
        int rc = eval_fexpr(rs, n->u.assign.expr, &v);
        return rc == SLM_OK ? set_root(rs, n->u.assign.sym, &v, n->pos) : rc;
    }
    case N_CAPTURE: {
        struct lq_val v;
        int rc = render_to_string(rs, &n->u.capture.body, n->pos, &v);
        return rc == SLM_OK ? set_root(rs, n->u.capture.sym, &v, n->pos) : rc;
    }
    case N_INCREMENT:
    case N_DECREMENT: return render_counter(rs, n);
    case N_CYCLE: return render_cycle(rs, n);
    case N_BREAK: rs->interrupt = LQ_BREAK; return SLM_OK;
    case N_CONTINUE: rs->interrupt = LQ_CONTINUE; return SLM_OK;
    case N_INCLUDE:
    case N_RENDER: return render_include(rs, n);
    case N_IFCHANGED: return render_ifchanged(rs, n);
    default: return SLM_OK;
    }
}

/* Lax mode: a runtime error becomes text in the output, as Shopify renders it. */
static int inline_error(struct lq_rs *rs, uint32_t pos) {
    char msg[300];
    int k = snprintf(msg, sizeof(msg), "Liquid error: %s", rs->bud.err->msg);
    slm_err_clear(rs->bud.err);
    return slm__lq_out_put(&rs->bud, msg, (size_t)k < sizeof(msg) ? (size_t)k : sizeof(msg) - 1,
                           pos);
}

static int render_block(struct lq_rs *rs, const struct lq_block *b) {
    for (const struct lq_node *n = b->first; n; n = n->next) {
        if (++rs->bud.steps > rs->bud.max_steps) {
            return slm__lq_charge(&rs->bud, 0, n->pos);
        }
        int rc;
        if (n->kind == N_TEXT) {
            rc = slm__lq_out_put(&rs->bud, n->u.text.ptr, n->u.text.len, n->pos);
        } else {
            rc = render_node(rs, n);
            if ((rc == SLM_E_INVALID || rc == SLM_E_NOT_FOUND) && rs->lax) {
                rc = inline_error(rs, n->pos);
            }
        }
        if (rc != SLM_OK) {
            return rc;
        }
        if (rs->interrupt) {
            break;
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- entry */

int slm__lq_render(const struct slm_liquid_template *t, const json_t *vars, struct slm_buf *out,
                   struct slm_err *err) {
    if (vars && !json_is_object(vars)) {
        return slm_err_set(err, SLM_E_INVALID, "%s: template variables must be a JSON object",
                           t->name);
    }
    struct lq_rs *rs = malloc(sizeof(*rs));
    if (!rs) {
        return slm_err_set(err, SLM_E_NOMEM, "%s: out of memory", t->name);
    }
    memset(rs, 0, offsetof(struct lq_rs, bud));
    rs->t = t;
    rs->lax = t->params.mode == SLM_LIQUID_LAX || t->params.mode == SLM_LIQUID_WARN;
    size_t start = out->len;
    slm__lq_budget_init(&rs->bud, out, t->params.max_output_bytes, t->params.max_steps,
                        t->params.max_memory_bytes, unit_source(t->main));
    rs->fenv = (struct lq_fenv){&rs->bud, t->params.now, eval_cb, rs};
    slm_arena_init(&rs->dyn_arena, t->params.max_memory_bytes);

    struct lq_ctx ctx = {NULL, t->syms.n, vars, NULL};
    int rc = SLM_OK;
    ctx.slots = slm__lq_alloc(&rs->bud, (t->syms.n ? t->syms.n : 1) * sizeof(*ctx.slots));
    if (!ctx.slots) {
        rc = slm__lq_mem_fail(&rs->bud, 0);
    } else {
        memset(ctx.slots, 0, (t->syms.n ? t->syms.n : 1) * sizeof(*ctx.slots));
        rs->ctx = &ctx;
        rc = render_block(rs, &t->main->body);
    }
    if (rc == SLM_OK) {
        if (out->ptr) {
            out->ptr[out->len] = '\0';
        }
    } else {
        out->len = start;
        if (out->ptr) {
            out->ptr[start] = '\0';
        }
        if (err) {
            *err = rs->bud.errbuf;
            if (!err->msg[0] || err->code != rc) {
                slm_err_set(err, rc, "%s: %s", t->name, slm_strerror(rc));
            }
        }
    }
    slm__lq_budget_free(&rs->bud);
    if (rs->dyn_syms) {
        slm__lq_symtab_free(rs->dyn_syms);
        free(rs->dyn_syms);
    }
    slm_arena_free(&rs->dyn_arena);
    free(rs);
    return rc;
}
