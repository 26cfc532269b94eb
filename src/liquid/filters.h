/*
 * liquid/filters.h - the filter functions, split over filters.c (strings and
 * the table), filters_array.c (arrays and hashes) and filters_num.c (numbers).
 * Private to the Liquid engine.
 *
 * Every filter receives the value to transform in *v (replaced by the result)
 * and its positional arguments evaluated in args[] (f->npos of them are real,
 * the rest up to the table's maximum are nil). Keyword arguments are in
 * f->kw, unevaluated.
 */
#ifndef SLM_LIQUID_FILTERS_H
#define SLM_LIQUID_FILTERS_H

#include "liquid/internal.h"

#define LQ_FILTER(name)                                                                            \
    int slm__lqf_##name(struct lq_rs *rs, const struct lq_filter *f, struct lq_val *v,             \
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
int slm__lq_sum_numbers(struct lq_rs *rs, uint32_t pos, const struct lq_val *items, size_t n,
                        struct lq_val *out);

/* Ruby's Integer() for filter arguments (slice, truncate): SLM_E_INVALID with
 * a message naming the filter otherwise. */
int slm__lq_arg_int(struct lq_rs *rs, const struct lq_filter *f, const struct lq_val *v,
                    int64_t *out);

/* The flattened list Liquid's InputIterator sees: arrays flattened, a hash or
 * a scalar as one item, nil as none, ranges expanded. */
int slm__lq_to_list(struct lq_rs *rs, uint32_t pos, const struct lq_val *v,
                    const struct lq_arr **out);

#endif /* SLM_LIQUID_FILTERS_H */
