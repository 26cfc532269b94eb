/*
 * router/cost.c - the reports `slm cost` prints from the ledger: per day / route /
 * target aggregates with latency percentiles, the break-even arithmetic, the
 * cumulative spend series, and the report as JSON. The definitions are the ones in
 * docs/cost.md; change both together.
 *
 * Aggregation happens here in one ordered scan rather than in SQL, because
 * percentiles need the sorted latencies of each group anyway.
 */
#include "slm/ledger.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "router/ledger_internal.h"

#define MS_PER_DAY 86400000.0
#define MS_PER_HOUR 3600000.0

struct slm_cost_params slm_cost_params_default(void) {
    return (struct slm_cost_params){0};
}

int slm_cost_group_parse(const char *s, enum slm_cost_group *out) {
    static const char *const names[] = {"day", "route", "target"};
    for (size_t i = 0; s && i < SLM_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum slm_cost_group)i;
            return SLM_OK;
        }
    }
    return SLM_E_INVALID;
}

static const char *group_name(enum slm_cost_group g) {
    return g == SLM_COST_BY_ROUTE ? "route" : g == SLM_COST_BY_TARGET ? "target" : "day";
}

double slm_cost_percentile(const double *sorted, size_t n, double q) {
    if (n == 0) {
        return 0;
    }
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    /* Nearest rank: the smallest value with at least q*n values at or below it. The
     * small epsilon keeps 0.95 * 20 = 19 from becoming 19.000000000000004 -> rank 20. */
    double rank = ceil(q * (double)n - 1e-9);
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    return sorted[i < n ? i : n - 1];
}

void slm_cost_breakeven_compute(const struct slm_cost_params *p, double avoided, double period_days,
                                double busy_hours, struct slm_cost_breakeven *out) {
    memset(out, 0, sizeof(*out));
    if (!(period_days > 0)) {
        return;
    }
    out->avoided_per_day = avoided / period_days;
    out->energy_per_day = busy_hours / period_days * p->power_watts / 1000.0 * p->kwh_price;
    out->monthly_savings = (out->avoided_per_day - out->energy_per_day) * SLM_COST_DAYS_PER_MONTH;
    out->computed = p->hardware_price > 0;
    if (!out->computed) {
        return;
    }
    out->never = !(out->monthly_savings > 0);
    out->months = out->never ? 0 : p->hardware_price / out->monthly_savings;
}

/* ---------------------------------------------------------------- days */

static int digits(const char *s, size_t n, int64_t *out) {
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return SLM_E_INVALID;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return SLM_OK;
}

int slm_cost_parse_day(const char *s, int64_t *ms) {
    int64_t y, m, d;
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) ||
        digits(s + 5, 2, &m) || digits(s + 8, 2, &d) || y < 1970 || m < 1 || m > 12 || d < 1) {
        return SLM_E_INVALID;
    }
    /* The day must exist: it round-trips through the calendar. */
    int64_t days = slm_days_from_civil(y, m, d), y2, m2, d2;
    slm_civil_from_days(days, &y2, &m2, &d2);
    if (y2 != y || m2 != m || d2 != d) {
        return SLM_E_INVALID;
    }
    *ms = days * 86400000;
    return SLM_OK;
}

size_t slm_cost_format_day(int64_t ms, char *out, size_t cap) {
    int64_t days = ms / 86400000 - (ms % 86400000 < 0); /* floor, without negating ms */
    int64_t y, m, d;
    slm_civil_from_days(days, &y, &m, &d);
    int n = snprintf(out, cap, "%04lld-%02lld-%02lld", (long long)y, (long long)m, (long long)d);
    return n < 0 ? 0 : (size_t)n;
}

/* ---------------------------------------------------------------- report */

/* A growable array of doubles (latencies) with the same cap discipline as slm_buf. */
struct dvec {
    double *v;
    size_t n, cap;
};

static int dvec_push(struct dvec *d, double x) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        double *v = realloc(d->v, cap * sizeof(*v));
        if (!v) {
            return SLM_E_NOMEM;
        }
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return SLM_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bind_range(sqlite3_stmt *st, const struct slm_cost_query *q) {
    sqlite3_bind_int64(st, 1, q->since_ms > 0 ? q->since_ms : INT64_MIN);
    /* until is exclusive; the SQL compares inclusively so "no end" reaches INT64_MAX. */
    sqlite3_bind_int64(st, 2, q->until_ms > 0 ? q->until_ms - 1 : INT64_MAX);
}

/* Token sums saturate: a hand-edited ledger may hold any integers. */
static int64_t sat_add(int64_t a, int64_t b) {
    if (b > 0 && a > INT64_MAX - b) {
        return INT64_MAX;
    }
    if (b < 0 && a < INT64_MIN - b) {
        return INT64_MIN;
    }
    return a + b;
}

/* Adds one row (columns from the scan below) to `s`. */
static void stats_add(struct slm_cost_stats *s, sqlite3_stmt *st) {
    const char *where = (const char *)sqlite3_column_text(st, 1);
    s->requests++;
    if (where && strcmp(where, "local") == 0) {
        s->local++;
    } else if (where && strcmp(where, "escalated") == 0) {
        s->escalated++;
    } else if (where && strcmp(where, "local_fallback") == 0) {
        s->fallback++;
    } else {
        s->errors++;
    }
    s->tokens_in = sat_add(s->tokens_in, sqlite3_column_int64(st, 2));
    s->tokens_out = sat_add(s->tokens_out, sqlite3_column_int64(st, 3));
    s->cost += sqlite3_column_double(st, 5);
    s->cloud_cost += sqlite3_column_double(st, 6);
    int shadow = sqlite3_column_int(st, 7);
    s->shadowed += shadow >= 0;
    s->shadow_agreed += shadow == 1;
    s->shadow_cost += sqlite3_column_double(st, 8);
}

static void stats_finish(struct slm_cost_stats *s, const double *sorted_lat, size_t n) {
    s->share_local = s->requests ? (double)s->local / (double)s->requests : 0;
    s->spend = s->cost + s->shadow_cost;
    s->avoided = s->cloud_cost - s->spend;
    s->p50_ms = slm_cost_percentile(sorted_lat, n, 0.50);
    s->p95_ms = slm_cost_percentile(sorted_lat, n, 0.95);
}

static int push_group(struct slm_cost_report *r, size_t *cap, const struct slm_cost_stats *s) {
    if (r->n_groups == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct slm_cost_stats *g = realloc(r->groups, ncap * sizeof(*g));
        if (!g) {
            return SLM_E_NOMEM;
        }
        r->groups = g;
        *cap = ncap;
    }
    r->groups[r->n_groups++] = *s;
    return SLM_OK;
}

static const char *key_expr(enum slm_cost_group by) {
    switch (by) {
    case SLM_COST_BY_ROUTE: return "route";
    case SLM_COST_BY_TARGET: return "target";
    default: return "strftime('%Y-%m-%d', time_ms / 1000, 'unixepoch')";
    }
}

/* The grouped scan: rows ordered by key then latency, so each group's latencies
 * arrive sorted and a group ends when the key changes. */
static int scan_groups(struct slm_ledger *l, sqlite3 *db, const struct slm_cost_query *q,
                       struct slm_cost_report *r, struct dvec *all, struct slm_err *err) {
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT %s AS k, where_ran, tokens_in, tokens_out, latency_ms, cost, cloud_cost,"
             " shadow, shadow_cost, time_ms FROM requests WHERE time_ms >= ?1 AND time_ms <= ?2"
             " ORDER BY k, latency_ms",
             key_expr(q->by));
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "reading the ledger", err);
    }
    bind_range(st, q);
    struct slm_cost_stats cur = {0};
    struct dvec lat = {0};
    size_t cap = 0;
    bool open = false;
    int status = SLM_OK;
    while (status == SLM_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        key = key ? key : "";
        if (open && strncmp(cur.key, key, sizeof(cur.key) - 1) != 0) {
            stats_finish(&cur, lat.v, lat.n);
            status = push_group(r, &cap, &cur);
            open = false;
        }
        if (!open) {
            memset(&cur, 0, sizeof(cur));
            snprintf(cur.key, sizeof(cur.key), "%s", key);
            lat.n = 0;
            open = true;
        }
        double latency = sqlite3_column_double(st, 4);
        int64_t t = sqlite3_column_int64(st, 9);
        stats_add(&cur, st);
        stats_add(&r->total, st);
        r->first_ms = r->total.requests == 1 ? t : SLM_MIN(r->first_ms, t);
        r->last_ms = SLM_MAX(r->last_ms, t);
        if (status == SLM_OK) {
            status = dvec_push(&lat, latency);
        }
        if (status == SLM_OK) {
            status = dvec_push(all, latency);
        }
    }
    if (status == SLM_OK && rc != SQLITE_DONE) {
        status = slm__ledger_db_err(l, rc, "reading the ledger", err);
    } else if (status == SLM_OK && open) {
        stats_finish(&cur, lat.v, lat.n);
        status = push_group(r, &cap, &cur);
    }
    if (status == SLM_E_NOMEM) {
        slm_err_set(err, status, "out of memory");
    }
    free(lat.v);
    sqlite3_finalize(st);
    return status;
}

/* Length of the union of the intervals [time_ms - latency_ms, time_ms]: the time the
 * machine was answering at least one request, however many ran at once. */
static int busy_time(struct slm_ledger *l, sqlite3 *db, const struct slm_cost_query *q,
                     double *hours, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT time_ms - max(latency_ms, 0) AS s, time_ms FROM requests"
                                " WHERE time_ms >= ?1 AND time_ms <= ?2 ORDER BY s",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "reading the ledger", err);
    }
    bind_range(st, q);
    double total = 0, cs = 0, ce = 0;
    bool open = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        double s = sqlite3_column_double(st, 0), e = sqlite3_column_double(st, 1);
        if (open && s <= ce) {
            ce = e > ce ? e : ce;
            continue;
        }
        if (open) {
            total += ce - cs;
        }
        cs = s;
        ce = e;
        open = true;
    }
    if (open) {
        total += ce - cs;
    }
    int status = SLM_OK;
    if (rc != SQLITE_DONE) {
        status = slm__ledger_db_err(l, rc, "reading the ledger", err);
    }
    sqlite3_finalize(st);
    *hours = total / MS_PER_HOUR;
    return status;
}

int slm_cost_report(struct slm_ledger *l, const struct slm_cost_query *q,
                    const struct slm_cost_params *p, struct slm_cost_report *out,
                    struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    out->by = q->by;
    out->params = p ? *p : slm_cost_params_default();
    snprintf(out->total.key, sizeof(out->total.key), "total");
    struct dvec all = {0};
    sqlite3 *db = slm__ledger_lock(l);
    /* One read transaction: the groups, totals and busy time see the same rows
     * even while other threads or processes keep adding. */
    int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    int status = rc == SQLITE_OK ? SLM_OK : slm__ledger_db_err(l, rc, "reading the ledger", err);
    if (status == SLM_OK) {
        status = scan_groups(l, db, q, out, &all, err);
    }
    if (status == SLM_OK) {
        status = busy_time(l, db, q, &out->busy_hours, err);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    slm__ledger_unlock(l);
    if (status != SLM_OK) {
        free(all.v);
        slm_cost_report_free(out);
        return status;
    }
    if (all.n > 0) {
        qsort(all.v, all.n, sizeof(double), cmp_double);
    }
    stats_finish(&out->total, all.v, all.n);
    free(all.v);
    if (out->total.requests > 0) {
        /* Less than a day of data counts as one day, so a short burst is not
         * extrapolated into a daily rate. */
        out->period_days =
            SLM_MAX(1.0, ((double)out->last_ms - (double)out->first_ms) / MS_PER_DAY);
    }
    slm_cost_breakeven_compute(&out->params, out->total.avoided, out->period_days, out->busy_hours,
                               &out->breakeven);
    return SLM_OK;
}

void slm_cost_report_free(struct slm_cost_report *r) {
    if (!r) {
        return;
    }
    free(r->groups);
    r->groups = NULL;
    r->n_groups = 0;
}

/* ---------------------------------------------------------------- JSON */

/* A JSON number, or null for what JSON cannot hold (inf from a hand-edited ledger). */
static json_t *num(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *stats_json(const struct slm_cost_stats *s) {
    return json_pack("{ss sI sI sI sI sI so sI sI so so so so so sI sI so so}", "key", s->key,
                     "requests", (json_int_t)s->requests, "local", (json_int_t)s->local,
                     "escalated", (json_int_t)s->escalated, "local_fallback",
                     (json_int_t)s->fallback, "errors", (json_int_t)s->errors, "share_local",
                     num(s->share_local), "tokens_in", (json_int_t)s->tokens_in, "tokens_out",
                     (json_int_t)s->tokens_out, "cost", num(s->cost), "shadow_cost",
                     num(s->shadow_cost), "spend", num(s->spend), "cloud_cost", num(s->cloud_cost),
                     "avoided", num(s->avoided), "shadowed", (json_int_t)s->shadowed,
                     "shadow_agreed", (json_int_t)s->shadow_agreed, "p50_ms", num(s->p50_ms),
                     "p95_ms", num(s->p95_ms));
}

static json_t *breakeven_json(const struct slm_cost_breakeven *b) {
    json_t *months = b->computed && !b->never ? num(b->months) : json_null();
    return json_pack("{sb so so so sb so}", "computed", b->computed, "avoided_per_day",
                     num(b->avoided_per_day), "energy_per_day", num(b->energy_per_day),
                     "monthly_savings", num(b->monthly_savings), "never", b->never, "months",
                     months);
}

json_t *slm_cost_report_json(const struct slm_cost_report *r) {
    json_t *groups = json_array();
    for (size_t i = 0; groups && i < r->n_groups; i++) {
        if (json_array_append_new(groups, stats_json(&r->groups[i])) != 0) {
            json_decref(groups);
            return NULL;
        }
    }
    char first[16] = "", last[16] = "";
    if (r->total.requests > 0) {
        slm_cost_format_day(r->first_ms, first, sizeof(first));
        slm_cost_format_day(r->last_ms, last, sizeof(last));
    }
    json_t *params =
        json_pack("{so so so}", "hardware_price", num(r->params.hardware_price), "power_watts",
                  num(r->params.power_watts), "kwh_price", num(r->params.kwh_price));
    return json_pack("{ss sI sI ss ss so so so so so so}", "by", group_name(r->by), "first_ms",
                     (json_int_t)r->first_ms, "last_ms", (json_int_t)r->last_ms, "first_day", first,
                     "last_day", last, "period_days", num(r->period_days), "busy_hours",
                     num(r->busy_hours), "groups", groups, "total", stats_json(&r->total), "params",
                     params, "breakeven", breakeven_json(&r->breakeven));
}

/* ---------------------------------------------------------------- series */

static int time_range(struct slm_ledger *l, sqlite3 *db, const struct slm_cost_query *q,
                      int64_t *lo, int64_t *hi, int64_t *n, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT min(time_ms), max(time_ms), count(*) FROM requests"
                                " WHERE time_ms >= ?1 AND time_ms <= ?2",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        bind_range(st, q);
        rc = sqlite3_step(st);
    }
    int status = SLM_OK;
    if (rc == SQLITE_ROW) {
        *lo = sqlite3_column_int64(st, 0);
        *hi = sqlite3_column_int64(st, 1);
        *n = sqlite3_column_int64(st, 2);
    } else {
        status = slm__ledger_db_err(l, rc, "reading the ledger", err);
    }
    sqlite3_finalize(st);
    return status;
}

static int scan_series(struct slm_ledger *l, sqlite3 *db, const struct slm_cost_query *q,
                       int64_t lo, int64_t hi, size_t max_points, struct slm_cost_point *pts,
                       size_t *n, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT time_ms, cost + shadow_cost, cloud_cost FROM requests"
                                " WHERE time_ms >= ?1 AND time_ms <= ?2 ORDER BY time_ms, id",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "reading the ledger", err);
    }
    bind_range(st, q);
    double spend = 0, cloud = 0, span = (double)hi - (double)lo;
    size_t last_bucket = SIZE_MAX;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t t = sqlite3_column_int64(st, 0);
        spend += sqlite3_column_double(st, 1);
        cloud += sqlite3_column_double(st, 2);
        /* Equal slices of [lo, hi]; the last one also holds hi itself. */
        double x = span > 0 ? ((double)t - (double)lo) / span * (double)max_points : 0;
        /* Clamped before the conversion: hand-edited ledgers may hold any times. */
        size_t b = x >= 1 ? (x < (double)max_points ? (size_t)x : max_points - 1) : 0;
        if (b != last_bucket) {
            (*n)++;
            last_bucket = b;
        }
        pts[*n - 1] = (struct slm_cost_point){t, spend, cloud};
    }
    int status = SLM_OK;
    if (rc != SQLITE_DONE) {
        status = slm__ledger_db_err(l, rc, "reading the ledger", err);
    }
    sqlite3_finalize(st);
    return status;
}

int slm_cost_series(struct slm_ledger *l, const struct slm_cost_query *q, size_t max_points,
                    struct slm_cost_point **points, size_t *n, struct slm_err *err) {
    *points = NULL;
    *n = 0;
    if (max_points < 2) {
        return slm_err_set(err, SLM_E_INVALID, "a series needs at least 2 points");
    }
    sqlite3 *db = slm__ledger_lock(l);
    int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    int status = rc == SQLITE_OK ? SLM_OK : slm__ledger_db_err(l, rc, "reading the ledger", err);
    int64_t lo = 0, hi = 0, count = 0;
    if (status == SLM_OK) {
        status = time_range(l, db, q, &lo, &hi, &count, err);
    }
    struct slm_cost_point *pts = NULL;
    if (status == SLM_OK && count > 0) {
        max_points = SLM_MIN(max_points, (size_t)count);
        max_points = SLM_MAX(max_points, 2);
        pts = calloc(max_points, sizeof(*pts));
        status = pts ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (status == SLM_OK && pts) {
        status = scan_series(l, db, q, lo, hi, max_points, pts, n, err);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    slm__ledger_unlock(l);
    if (status != SLM_OK) {
        free(pts);
        *n = 0;
        return status;
    }
    *points = pts;
    return SLM_OK;
}
