/*
 * liquid/date.h - the date filter's input parsing and Ruby-compatible
 * strftime (date.c; private to the Liquid engine). Depends on value.h and
 * budget.h (the string builder) only.
 */
#ifndef SLM_LIQUID_DATE_H
#define SLM_LIQUID_DATE_H

#include "liquid/budget.h"
#include "liquid/value.h"

/* Parses a date the way Liquid's date filter accepts it (unix seconds,
 * "now"/"today", ISO 8601, "March 14, 2016", RFC 2822, ...). False when the
 * input is not a date. */
bool slm__lq_parse_date(const struct lq_val *v, int64_t now, int64_t *t, int *utc_off,
                        bool *has_off);
/* Ruby-compatible strftime into `sb`. */
void slm__lq_strftime(struct lq_sb *sb, const char *fmt, size_t n, int64_t t, int utc_off,
                      bool has_off);

#endif /* SLM_LIQUID_DATE_H */
