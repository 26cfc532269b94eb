/*
 * liquid/filters.h - the filter table and the filter functions, split over
 * filters.c (strings and the table), filters_array.c (arrays and hashes) and
 * filters_num.c (numbers). Private to the Liquid engine.
 *
 * Every filter receives the value to transform in *v (replaced by the result)
 * and its positional arguments evaluated in args[] (f->npos of them are real,
 * the rest up to the table's maximum are nil). Keyword arguments are in
 * f->kw, unevaluated: a filter that reads one evaluates it through fe->eval.
 *
 * Filters charge their work, allocate and report errors through fe->bud
 * (budget.h) and use value.h; they never call into render.c, which calls
 * them through the table.
 */
#ifndef SLM_LIQUID_FILTERS_H
#define SLM_LIQUID_FILTERS_H

#include "liquid/ast.h"
#include "liquid/budget.h"
#include "liquid/value.h"

/* Evaluates a primary in the render's current scope (render.c passes its
 * evaluator here, so that the dependency points from render.c to the
 * filters only). */
typedef int (*lq_eval_fn)(void *ctx, const struct lq_prim *p, struct lq_val *out);

/* What a filter sees of the render. Borrowed for the call. */
struct lq_fenv {
    struct lq_budget *bud; /* steps, scratch memory, errors */
    int64_t now;           /* params.now, for the date filter */
    lq_eval_fn eval;       /* evaluates keyword arguments */
    void *eval_ctx;        /* eval's first argument */
};

typedef int (*lq_filter_fn)(const struct lq_fenv *fe, const struct lq_filter *f, struct lq_val *v,
                            const struct lq_val *args);

struct lq_filter_def {
    const char *name;
    uint8_t min, max; /* positional argument counts */
    bool kw;          /* takes keyword arguments */
    lq_filter_fn fn;
};

/* The table; index = lq_filter.id. Entry 0 is the pass-through that lax mode
 * uses for unknown filters; the rest are sorted by name. */
extern const struct lq_filter_def slm__lq_filters[];
extern const size_t slm__lq_nfilters;
/* Index of the named filter or -1. */
int slm__lq_filter_find(const char *p, size_t n);

#define LQ_FILTER(name)                                                                            \
    int slm__lqf_##name(const struct lq_fenv *fe, const struct lq_filter *f, struct lq_val *v,     \
                        const struct lq_val *args)

/* strings (filters.c) */
LQ_FILTER(append);
LQ_FILTER(prepend);
LQ_FILTER(base64_decode);
LQ_FILTER(base64_encode);
LQ_FILTER(base64_url_safe_decode);
LQ_FILTER(base64_url_safe_encode);
LQ_FILTER(capitalize);
LQ_FILTER(downcase);
LQ_FILTER(upcase);
LQ_FILTER(escape);
LQ_FILTER(escape_once);
LQ_FILTER(lstrip);
LQ_FILTER(rstrip);
LQ_FILTER(strip);
LQ_FILTER(newline_to_br);
LQ_FILTER(strip_newlines);
LQ_FILTER(strip_html);
LQ_FILTER(remove);
LQ_FILTER(remove_first);
LQ_FILTER(remove_last);
LQ_FILTER(replace);
LQ_FILTER(replace_first);
LQ_FILTER(replace_last);
LQ_FILTER(slice);
LQ_FILTER(split);
LQ_FILTER(truncate);
LQ_FILTER(truncatewords);
LQ_FILTER(url_decode);
LQ_FILTER(url_encode);
LQ_FILTER(date);
LQ_FILTER(default);
LQ_FILTER(size);
LQ_FILTER(json);

/* arrays (filters_array.c) */
LQ_FILTER(compact);
LQ_FILTER(concat);
LQ_FILTER(find);
LQ_FILTER(find_index);
LQ_FILTER(first);
LQ_FILTER(has);
LQ_FILTER(join);
LQ_FILTER(last);
LQ_FILTER(map);
LQ_FILTER(reject);
LQ_FILTER(reverse);
LQ_FILTER(sort);
LQ_FILTER(sort_natural);
LQ_FILTER(sum);
LQ_FILTER(uniq);
LQ_FILTER(where);

/* numbers (filters_num.c) */
LQ_FILTER(abs);
LQ_FILTER(at_least);
LQ_FILTER(at_most);
LQ_FILTER(ceil);
LQ_FILTER(floor);
LQ_FILTER(round);
LQ_FILTER(plus);
LQ_FILTER(minus);
LQ_FILTER(times);
LQ_FILTER(divided_by);
LQ_FILTER(modulo);

/* Liquid's to_number + sum for the sum filter: adds to_number(items[i]). */
int slm__lq_sum_numbers(struct lq_budget *bud, uint32_t pos, const struct lq_val *items, size_t n,
                        struct lq_val *out);

#endif /* SLM_LIQUID_FILTERS_H */
