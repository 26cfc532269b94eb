/*
 * liquid/filters_array.c - filters over arrays and hashes: join first last
 * reverse compact concat map sort sort_natural uniq sum where reject find
 * find_index has.
 *
 * Like Shopify Liquid, the input is first turned into a flat list (nested
 * arrays flattened, a hash or a scalar as a single item, nil as no items), and
 * `item[property]` follows Ruby: a hash looks the key up, a string answers the
 * substring if it contains it, an integer answers a bit, and an integer asked
 * for a string property is an error. Where nil or a boolean is asked for a
 * property, where/reject/find/find_index/has give nil (as the golden suite
 * expects). Sorting is stable.
 */
#include "liquid/filters.h"

#include <string.h>

static int fail_mem(struct lq_budget *bud, const struct lq_filter *f) {
    return slm__lq_rt_err(bud, f->pos, SLM_E_LIMIT,
                          "%s: render needs more than %zu bytes of memory", f->name, bud->mem.max);
}

static const char *fname(const struct lq_filter *f) {
    return f->name;
}

/* ---------------------------------------------------------------- flat lists */

static size_t flat_count(const struct lq_val *v, int depth) {
    if ((v->k != LQ_ARR && v->k != LQ_JARR) || depth > 64) {
        return 1;
    }
    size_t n = slm__lq_seq_len(v), c = 0;
    for (size_t i = 0; i < n; i++) {
        struct lq_val e = slm__lq_seq_get(v, i);
        c += flat_count(&e, depth + 1);
    }
    return c;
}

static void flat_fill(const struct lq_val *v, int depth, struct lq_val *out, size_t *k) {
    if ((v->k != LQ_ARR && v->k != LQ_JARR) || depth > 64) {
        out[(*k)++] = *v;
        return;
    }
    size_t n = slm__lq_seq_len(v);
    for (size_t i = 0; i < n; i++) {
        struct lq_val e = slm__lq_seq_get(v, i);
        flat_fill(&e, depth + 1, out, k);
    }
}

/* The flattened list Liquid's InputIterator sees: arrays flattened, a hash or
 * a scalar as one item, nil as none, ranges expanded. Charges one step per
 * item. */
static int to_list(struct lq_budget *bud, uint32_t pos, const struct lq_val *v,
                   const struct lq_arr **out) {
    size_t n;
    switch (v->k) {
    case LQ_NIL: n = 0; break;
    case LQ_ARR:
    case LQ_JARR: n = flat_count(v, 0); break;
    case LQ_RANGE: n = slm__lq_seq_len(v); break;
    default: n = 1; break;
    }
    int rc = slm__lq_charge(bud, n, pos);
    if (rc != SLM_OK) {
        return rc;
    }
    if (v->k == LQ_ARR && n == v->u.a->n) {
        bool flat = true;
        for (size_t i = 0; i < n && flat; i++) {
            flat = v->u.a->v[i].k != LQ_ARR && v->u.a->v[i].k != LQ_JARR;
        }
        if (flat) {
            *out = v->u.a;
            return SLM_OK;
        }
    }
    struct lq_arr *a = slm__lq_arr_new(bud, n);
    if (!a) {
        return slm__lq_rt_err(bud, pos, SLM_E_LIMIT, "render needs more than %zu bytes of memory",
                              bud->mem.max);
    }
    if (v->k == LQ_ARR || v->k == LQ_JARR) {
        size_t k = 0;
        flat_fill(v, 0, a->v, &k);
    } else if (v->k == LQ_RANGE) {
        for (size_t i = 0; i < n; i++) {
            a->v[i] = lq_int((int64_t)((uint64_t)v->u.r.lo + (uint64_t)i));
        }
    } else if (n) {
        a->v[0] = *v;
    }
    *out = a;
    return SLM_OK;
}

/* ---------------------------------------------------------------- item[property] */

enum { PROP_OK, PROP_NOMETHOD, PROP_TYPEERR };

static int item_prop(const struct lq_val *item, const struct lq_val *prop, struct lq_val *out) {
    *out = lq_nil();
    switch (item->k) {
    case LQ_JOBJ:
        if (prop->k == LQ_STR) {
            slm__lq_lookup_key(item, (struct slm_str){prop->u.s.p, prop->u.s.n}, out);
        }
        return PROP_OK;
    case LQ_STR: {
        struct slm_str s = {item->u.s.p, item->u.s.n};
        if (prop->k == LQ_STR) {
            if (slm_str_find(s, (struct slm_str){prop->u.s.p, prop->u.s.n}, 0) != SIZE_MAX) {
                *out = *prop;
            }
            return PROP_OK;
        }
        if (prop->k == LQ_INT || prop->k == LQ_FLOAT) {
            int64_t i = prop->k == LQ_INT ? prop->u.i : lq_f2i(prop->u.f);
            int64_t n = (int64_t)slm__lq_utf8_len(s.ptr, s.len);
            if (i < 0) {
                i += n;
            }
            if (i >= 0 && i < n) {
                size_t b = 0;
                for (int64_t c = 0; c < i; c++) {
                    b++;
                    while (b < s.len && ((unsigned char)s.ptr[b] & 0xC0) == 0x80) {
                        b++;
                    }
                }
                size_t e = b + 1;
                while (e < s.len && ((unsigned char)s.ptr[e] & 0xC0) == 0x80) {
                    e++;
                }
                *out = lq_str(s.ptr + b, e - b);
            }
            return PROP_OK;
        }
        return prop->k == LQ_RANGE ? PROP_OK : PROP_TYPEERR;
    }
    case LQ_INT:
        if (prop->k == LQ_INT || prop->k == LQ_FLOAT) {
            int64_t b = prop->k == LQ_INT ? prop->u.i : lq_f2i(prop->u.f);
            int64_t bit = b < 0 ? 0 : b >= 63 ? (item->u.i < 0) : (item->u.i >> b) & 1;
            *out = lq_int(bit);
            return PROP_OK;
        }
        return PROP_TYPEERR;
    case LQ_ARR:
    case LQ_JARR:
        if (prop->k == LQ_INT) {
            int64_t i = prop->u.i, n = (int64_t)slm__lq_seq_len(item);
            if (i < 0) {
                i += n;
            }
            if (i >= 0 && i < n) {
                *out = slm__lq_seq_get(item, (size_t)i);
            }
            return PROP_OK;
        }
        return PROP_TYPEERR;
    default: return PROP_NOMETHOD;
    }
}

static int prop_error(struct lq_budget *bud, const struct lq_filter *f, const struct lq_val *prop) {
    struct slm_str s = {"", 0};
    if (prop->k == LQ_STR) {
        s = (struct slm_str){prop->u.s.p, prop->u.s.n};
    }
    return slm__lq_rt_err(bud, f->pos, SLM_E_INVALID,
                          "%s: cannot read property '%.*s' of an item that is not a hash", fname(f),
                          (int)SLM_MIN(s.len, 60), s.ptr);
}

/* ---------------------------------------------------------------- simple */

LQ_FILTER(first) {
    (void)args;
    switch (v->k) {
    case LQ_ARR:
    case LQ_JARR: *v = slm__lq_seq_len(v) ? slm__lq_seq_get(v, 0) : lq_nil(); return SLM_OK;
    case LQ_RANGE: *v = lq_int(v->u.r.lo); return SLM_OK;
    case LQ_JOBJ: {
        void *it = json_object_iter((json_t *)v->u.j);
        if (!it) {
            *v = lq_nil();
            return SLM_OK;
        }
        struct lq_arr *a = slm__lq_arr_new(fe->bud, 2);
        if (!a) {
            return fail_mem(fe->bud, f);
        }
        a->v[0] = lq_str(json_object_iter_key(it), json_object_iter_key_len(it));
        a->v[1] = lq_from_json(json_object_iter_value(it));
        *v = lq_arr_val(a);
        return SLM_OK;
    }
    default: *v = lq_nil(); return SLM_OK;
    }
}

LQ_FILTER(last) {
    (void)fe;
    (void)f;
    (void)args;
    size_t n;
    switch (v->k) {
    case LQ_ARR:
    case LQ_JARR:
        n = slm__lq_seq_len(v);
        *v = n ? slm__lq_seq_get(v, n - 1) : lq_nil();
        return SLM_OK;
    case LQ_RANGE: *v = lq_int(v->u.r.hi); return SLM_OK;
    default: *v = lq_nil(); return SLM_OK;
    }
}

LQ_FILTER(join) {
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_str glue = {" ", 1};
    if (f->npos > 0 && slm__lq_to_str(fe->bud, &args[0], &glue) != SLM_OK) {
        return fail_mem(fe->bud, f);
    }
    struct lq_sb sb;
    slm__lq_sb_begin(fe->bud, &sb, l->n * (glue.len + 8));
    for (size_t i = 0; i < l->n; i++) {
        if (i) {
            slm__lq_sb_put(&sb, glue.ptr, glue.len);
        }
        slm__lq_write_val(&sb, &l->v[i], 0);
    }
    struct slm_str s;
    rc = slm__lq_sb_end(&sb, &s);
    *v = lq_str(s.ptr, s.len);
    return rc == SLM_OK ? SLM_OK : fail_mem(fe->bud, f);
}

LQ_FILTER(reverse) {
    (void)args;
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_arr *a = slm__lq_arr_new(fe->bud, l->n);
    if (!a) {
        return fail_mem(fe->bud, f);
    }
    for (size_t i = 0; i < l->n; i++) {
        a->v[i] = l->v[l->n - 1 - i];
    }
    *v = lq_arr_val(a);
    return SLM_OK;
}

LQ_FILTER(concat) {
    if (args[0].k != LQ_ARR && args[0].k != LQ_JARR) {
        return slm__lq_rt_err(fe->bud, f->pos, SLM_E_INVALID,
                              "concat: the argument must be an array");
    }
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t m = slm__lq_seq_len(&args[0]);
    struct lq_arr *a = slm__lq_arr_new(fe->bud, l->n + m);
    if (!a) {
        return fail_mem(fe->bud, f);
    }
    memcpy(a->v, l->v, l->n * sizeof(struct lq_val));
    for (size_t i = 0; i < m; i++) {
        a->v[l->n + i] = slm__lq_seq_get(&args[0], i);
    }
    *v = lq_arr_val(a);
    return slm__lq_charge(fe->bud, m, f->pos);
}

LQ_FILTER(compact) {
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    bool by_prop = f->npos > 0 && args[0].k != LQ_NIL;
    struct lq_arr *a = slm__lq_arr_new(fe->bud, l->n);
    if (!a) {
        return fail_mem(fe->bud, f);
    }
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct lq_val key = l->v[i];
        if (by_prop) {
            int pr = item_prop(&l->v[i], &args[0], &key);
            if (pr == PROP_TYPEERR) {
                return prop_error(fe->bud, f, &args[0]);
            }
            if (pr == PROP_NOMETHOD) {
                *v = lq_nil();
                return SLM_OK;
            }
        }
        if (key.k != LQ_NIL) {
            a->v[k++] = l->v[i];
        }
    }
    a->n = k;
    *v = lq_arr_val(a);
    return SLM_OK;
}

LQ_FILTER(map) {
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_arr *a = slm__lq_arr_new(fe->bud, l->n);
    if (!a) {
        return fail_mem(fe->bud, f);
    }
    bool self =
        args[0].k == LQ_STR && args[0].u.s.n == 9 && memcmp(args[0].u.s.p, "to_liquid", 9) == 0;
    for (size_t i = 0; i < l->n; i++) {
        if (self) {
            a->v[i] = l->v[i];
            continue;
        }
        if (item_prop(&l->v[i], &args[0], &a->v[i]) == PROP_TYPEERR) {
            return prop_error(fe->bud, f, &args[0]);
        }
    }
    *v = lq_arr_val(a);
    return SLM_OK;
}

/* ---------------------------------------------------------------- sorting */

struct sort_ctx {
    bool natural;
    bool failed;
};

static int casecmp(struct slm_str a, struct slm_str b) {
    size_t n = a.len < b.len ? a.len : b.len;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a.ptr[i], y = (unsigned char)b.ptr[i];
        if (x >= 'A' && x <= 'Z') {
            x = (unsigned char)(x + 32);
        }
        if (y >= 'A' && y <= 'Z') {
            y = (unsigned char)(y + 32);
        }
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return a.len < b.len ? -1 : a.len > b.len;
}

struct sort_item {
    struct lq_val key;
    struct lq_val item;
    struct slm_str text; /* sort_natural: key.to_s */
};

static int sort_cmp(struct sort_ctx *c, const struct sort_item *a, const struct sort_item *b) {
    if (c->natural) {
        if (a->key.k != LQ_NIL && b->key.k != LQ_NIL) {
            return casecmp(a->text, b->text);
        }
        return a->key.k == LQ_NIL ? 1 : -1;
    }
    int r = slm__lq_cmp(&a->key, &b->key);
    if (r != 2) {
        return r;
    }
    if (a->key.k == LQ_NIL) {
        return 1;
    }
    if (b->key.k == LQ_NIL) {
        return -1;
    }
    c->failed = true;
    return 0;
}

static void merge_sort(struct sort_ctx *c, struct sort_item *v, struct sort_item *tmp, size_t n) {
    if (n < 2 || c->failed) {
        return;
    }
    size_t h = n / 2;
    merge_sort(c, v, tmp, h);
    merge_sort(c, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        if (sort_cmp(c, &v[j], &v[i]) < 0) {
            tmp[k++] = v[j++];
        } else {
            tmp[k++] = v[i++];
        }
    }
    while (i < h) {
        tmp[k++] = v[i++];
    }
    while (j < n) {
        tmp[k++] = v[j++];
    }
    memcpy(v, tmp, n * sizeof(*v));
}

static int do_sort(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                   const struct lq_val *args, bool natural) {
    const struct lq_arr *l;
    int rc = to_list(bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    bool by_prop = f->npos > 0 && args[0].k != LQ_NIL;
    size_t n = l->n;
    struct sort_item *items = slm__lq_alloc(bud, (n ? n : 1) * 2 * sizeof(*items));
    if (!items) {
        return fail_mem(bud, f);
    }
    for (size_t i = 0; i < n; i++) {
        items[i].item = l->v[i];
        items[i].key = l->v[i];
        if (by_prop) {
            int pr = item_prop(&l->v[i], &args[0], &items[i].key);
            if (pr == PROP_NOMETHOD) {
                *v = lq_nil();
                return SLM_OK;
            }
            if (pr == PROP_TYPEERR) {
                return prop_error(bud, f, &args[0]);
            }
        }
    }
    if (natural) {
        for (size_t i = 0; i < n; i++) {
            if (items[i].key.k != LQ_NIL &&
                slm__lq_to_str(bud, &items[i].key, &items[i].text) != SLM_OK) {
                return fail_mem(bud, f);
            }
        }
    }
    size_t lg = 1;
    for (size_t m = n; m > 1; m >>= 1) {
        lg++;
    }
    rc = slm__lq_charge(bud, n * lg, f->pos);
    if (rc != SLM_OK) {
        return rc;
    }
    struct sort_ctx c = {natural, false};
    merge_sort(&c, items, items + n, n);
    if (c.failed) {
        return slm__lq_rt_err(bud, f->pos, SLM_E_INVALID,
                              "%s: cannot sort values of incompatible types", fname(f));
    }
    struct lq_arr *a = slm__lq_arr_new(bud, n);
    if (!a) {
        return fail_mem(bud, f);
    }
    for (size_t i = 0; i < n; i++) {
        a->v[i] = items[i].item;
    }
    *v = lq_arr_val(a);
    return SLM_OK;
}

LQ_FILTER(sort) {
    return do_sort(fe->bud, f, v, args, false);
}

LQ_FILTER(sort_natural) {
    return do_sort(fe->bud, f, v, args, true);
}

/* ---------------------------------------------------------------- uniq */

/* Ruby's eql?: 1 and 1.0 differ. */
static bool strict_eq(const struct lq_val *a, const struct lq_val *b) {
    if (lq_is_num(a) && lq_is_num(b) && a->k != b->k) {
        return false;
    }
    if ((a->k == LQ_ARR || a->k == LQ_JARR) && (b->k == LQ_ARR || b->k == LQ_JARR)) {
        size_t n = slm__lq_seq_len(a);
        if (n != slm__lq_seq_len(b)) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            struct lq_val x = slm__lq_seq_get(a, i), y = slm__lq_seq_get(b, i);
            if (!strict_eq(&x, &y)) {
                return false;
            }
        }
        return true;
    }
    return slm__lq_equal(a, b);
}

static uint32_t val_hash(const struct lq_val *v) {
    switch (v->k) {
    case LQ_STR: return slm__lq_hash(v->u.s.p, v->u.s.n);
    case LQ_INT: return (uint32_t)((uint64_t)v->u.i * 0x9E3779B97F4A7C15ull >> 32);
    case LQ_FLOAT: {
        double d = v->u.f == 0 ? 0 : v->u.f;
        uint64_t b;
        memcpy(&b, &d, sizeof(b));
        return (uint32_t)(b * 0x9E3779B97F4A7C15ull >> 32) ^ 1;
    }
    case LQ_BOOL: return v->u.b ? 3 : 5;
    case LQ_ARR:
    case LQ_JARR: return 7 + (uint32_t)slm__lq_seq_len(v);
    case LQ_JOBJ: return 11 + (uint32_t)json_object_size(v->u.j);
    default: return (uint32_t)v->k;
    }
}

LQ_FILTER(uniq) {
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    bool by_prop = f->npos > 0 && args[0].k != LQ_NIL;
    size_t n = l->n;
    size_t cap = 16;
    while (cap < n * 2) {
        cap *= 2;
    }
    struct lq_val *keys = slm__lq_alloc(fe->bud, (n ? n : 1) * sizeof(*keys));
    uint32_t *table = slm__lq_alloc(fe->bud, cap * sizeof(*table));
    struct lq_arr *a = slm__lq_arr_new(fe->bud, n);
    if (!keys || !table || !a) {
        return fail_mem(fe->bud, f);
    }
    memset(table, 0, cap * sizeof(*table));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        keys[i] = l->v[i];
        if (by_prop) {
            int pr = item_prop(&l->v[i], &args[0], &keys[i]);
            if (pr == PROP_TYPEERR) {
                return prop_error(fe->bud, f, &args[0]);
            }
            if (pr == PROP_NOMETHOD) {
                *v = lq_nil();
                return SLM_OK;
            }
        }
        uint32_t h = val_hash(&keys[i]);
        bool dup = false;
        size_t probes = 0;
        size_t j = h & (cap - 1);
        for (; table[j]; j = (j + 1) & (cap - 1), probes++) {
            if (strict_eq(&keys[table[j] - 1], &keys[i])) {
                dup = true;
                break;
            }
        }
        rc = slm__lq_charge(fe->bud, probes, f->pos);
        if (rc != SLM_OK) {
            return rc;
        }
        if (!dup) {
            table[j] = (uint32_t)i + 1;
            a->v[k++] = l->v[i];
        }
    }
    a->n = k;
    *v = lq_arr_val(a);
    return SLM_OK;
}

/* ---------------------------------------------------------------- sum */

LQ_FILTER(sum) {
    const struct lq_arr *l;
    int rc = to_list(fe->bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    if (l->n == 0) {
        *v = lq_int(0);
        return SLM_OK;
    }
    bool by_prop = f->npos > 0 && args[0].k != LQ_NIL;
    struct lq_arr *vals = slm__lq_arr_new(fe->bud, l->n);
    if (!vals) {
        return fail_mem(fe->bud, f);
    }
    for (size_t i = 0; i < l->n; i++) {
        vals->v[i] = l->v[i];
        if (by_prop) {
            int pr = item_prop(&l->v[i], &args[0], &vals->v[i]);
            if (pr == PROP_TYPEERR) {
                return prop_error(fe->bud, f, &args[0]);
            }
            if (pr == PROP_NOMETHOD) {
                vals->v[i] = lq_int(0);
            }
        }
    }
    struct lq_val all = lq_arr_val(vals);
    const struct lq_arr *flat;
    rc = to_list(fe->bud, f->pos, &all, &flat);
    if (rc != SLM_OK) {
        return rc;
    }
    return slm__lq_sum_numbers(fe->bud, f->pos, flat->v, flat->n, v);
}

/* ---------------------------------------------------------------- where & co */

enum { FA_WHERE, FA_REJECT, FA_FIND, FA_FIND_INDEX, FA_HAS };

static int filter_array(struct lq_budget *bud, const struct lq_filter *f, struct lq_val *v,
                        const struct lq_val *args, int mode) {
    const struct lq_val *prop = &args[0];
    const struct lq_val *target = &args[1];
    const struct lq_arr *l;
    int rc = to_list(bud, f->pos, v, &l);
    if (rc != SLM_OK) {
        return rc;
    }
    struct lq_val none = mode == FA_HAS                            ? lq_bool(false)
                         : (mode == FA_WHERE || mode == FA_REJECT) ? lq_arr_val(l)
                                                                   : lq_nil();
    if (l->n == 0 || prop->k == LQ_NIL) {
        if (mode == FA_WHERE || mode == FA_REJECT) {
            struct lq_arr *e = slm__lq_arr_new(bud, 0);
            if (!e) {
                return fail_mem(bud, f);
            }
            none = lq_arr_val(e);
        }
        *v = none;
        return SLM_OK;
    }
    struct lq_arr *a = NULL;
    if (mode == FA_WHERE || mode == FA_REJECT) {
        a = slm__lq_arr_new(bud, l->n);
        if (!a) {
            return fail_mem(bud, f);
        }
        a->n = 0;
    }
    for (size_t i = 0; i < l->n; i++) {
        struct lq_val got;
        int pr = item_prop(&l->v[i], prop, &got);
        if (pr == PROP_TYPEERR) {
            return prop_error(bud, f, prop);
        }
        if (pr == PROP_NOMETHOD) {
            *v = lq_nil();
            return SLM_OK;
        }
        bool hit = target->k == LQ_NIL ? lq_truthy(&got) : slm__lq_equal(&got, target);
        switch (mode) {
        case FA_WHERE:
            if (hit) {
                a->v[a->n++] = l->v[i];
            }
            break;
        case FA_REJECT:
            if (!hit) {
                a->v[a->n++] = l->v[i];
            }
            break;
        case FA_FIND:
            if (hit) {
                *v = l->v[i];
                return SLM_OK;
            }
            break;
        case FA_FIND_INDEX:
            if (hit) {
                *v = lq_int((int64_t)i);
                return SLM_OK;
            }
            break;
        default:
            if (hit) {
                *v = lq_bool(true);
                return SLM_OK;
            }
            break;
        }
    }
    if (a) {
        *v = lq_arr_val(a);
    } else {
        *v = mode == FA_HAS ? lq_bool(false) : lq_nil();
    }
    return SLM_OK;
}

LQ_FILTER(where) {
    return filter_array(fe->bud, f, v, args, FA_WHERE);
}

LQ_FILTER(reject) {
    return filter_array(fe->bud, f, v, args, FA_REJECT);
}

LQ_FILTER(find) {
    return filter_array(fe->bud, f, v, args, FA_FIND);
}

LQ_FILTER(find_index) {
    return filter_array(fe->bud, f, v, args, FA_FIND_INDEX);
}

LQ_FILTER(has) {
    return filter_array(fe->bud, f, v, args, FA_HAS);
}
