/*
 * slm/ledger.h - the router's meter: one SQLite row per routed request
 * (where it ran, what it cost, what it would have cost in the cloud), and the
 * reports `slm cost` prints from those rows (part of the router module).
 *
 * The ledger lives in $SLM_HOME/ledger.db (WAL journal). Its schema is
 * versioned (table `schema_version`); opening an older ledger migrates it in
 * one transaction per step, opening a newer one is refused (SLM_E_UNSUPPORTED)
 * so an old slm never misreads or damages it. A file that is not a SQLite
 * database, or a SQLite database that is not a ledger, is refused with
 * SLM_E_CORRUPT and never modified.
 *
 * Durability: slm_ledger_add() returns after its row is committed; a process
 * killed with -9 right after loses nothing that was added (WAL with
 * synchronous=NORMAL: the commit is in the OS before the call returns; pass
 * `durable = true` to also fsync each commit, which survives power loss too).
 * Several processes may share one ledger (busy timeout, default 5 s).
 *
 * Thread safety: one struct slm_ledger may be used by many threads at once
 * (adds and reports are serialised by a mutex inside). The cost report
 * functions (slm_cost_*) that take no ledger are pure.
 *
 * Money is in "currency units" (whatever the upstream prices were written
 * in, e.g. USD); the ledger never converts.
 */
#ifndef SLM_LEDGER_H
#define SLM_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "slm/base.h"

/* The schema version this build writes and understands. */
#define SLM_LEDGER_SCHEMA_VERSION 1

/* ---------------------------------------------------------------- rows */

/* One routed request. Strings are borrowed for the duration of the add call. */
struct slm_ledger_row {
    int64_t time_ms;        /* unix epoch ms when the request finished; 0 = now */
    const char *request_id; /* may be NULL */
    const char *route;      /* route name (the request's model name); required */
    const char *where;      /* "local" | "escalated" | "local_fallback" (every upstream
                               failed, the local answer was returned) | "error"; required */
    const char *target;     /* the local model name, or the upstream pool name/model that
                               answered; NULL is stored as "" */
    const char *adapter;    /* NULL = none */
    int64_t tokens_in, tokens_out;
    double latency_ms; /* wall time of the whole request (>= 0) */
    /* the failed check(s) that escalated, e.g. "label_prob<0.62"; NULL = none */
    const char *reason;
    double cost;        /* what this request cost (cloud charges; 0 for local) */
    double cloud_cost;  /* what it would have cost had it gone to the cloud (all-cloud baseline) */
    int shadow;         /* -1 = not shadowed, 0 = shadow disagreed, 1 = agreed */
    double shadow_cost; /* cloud charges of the shadow call (counted in spend) */
};

/* A row with every field neutral: time 0 (= now), shadow -1, numbers 0, strings NULL. */
struct slm_ledger_row slm_ledger_row_default(void);

struct slm_ledger;

struct slm_ledger_params {
    const char *path;    /* NULL = $SLM_HOME/ledger.db (SLM_HOME default ~/.slm) */
    int busy_timeout_ms; /* wait for another process's write lock; 0 = 5000 */
    bool durable;        /* fsync every commit (synchronous=FULL): survives power loss, slower */
    bool must_exist;     /* SLM_E_NOT_FOUND instead of creating a missing ledger (for reports) */
};
struct slm_ledger_params slm_ledger_params_default(void);

/* Opens/creates the SQLite db (WAL, schema versioned, migrations), `path` NULL =
 * $SLM_HOME/ledger.db (a missing folder is created). Errors: SLM_E_IO (cannot open or
 * write), SLM_E_CORRUPT (not a SQLite file, or a SQLite file that is not a
 * ledger), SLM_E_UNSUPPORTED (schema newer than SLM_LEDGER_SCHEMA_VERSION).
 * If it fails nothing is owed; on success one slm_ledger_close() is owed. */
int slm_ledger_open(const char *path, struct slm_ledger **out, struct slm_err *err);
/* The same with all parameters (NULL = defaults). */
int slm_ledger_open_ex(const struct slm_ledger_params *p, struct slm_ledger **out,
                       struct slm_err *err);
void slm_ledger_close(struct slm_ledger *l); /* NULL is a no-op */
/* The file path in use (borrowed, valid until close). */
const char *slm_ledger_path(const struct slm_ledger *l);

/* Appends one row, committed (durable against kill -9) before it returns. Thread-safe.
 * Strings longer than 1024 bytes are stored cut at a UTF-8 boundary.
 * SLM_E_INVALID when route or where is missing or where is not one of the four values,
 * when numbers are negative or not finite, or when shadow is not -1/0/1; SLM_E_IO when
 * the write fails (e.g. disk full, or another process holds the lock past the timeout). */
int slm_ledger_add(struct slm_ledger *l, const struct slm_ledger_row *row, struct slm_err *err);
/* The same, and *id (if not NULL) is the new row's id (increasing, never reused). */
int slm_ledger_add_id(struct slm_ledger *l, const struct slm_ledger_row *row, int64_t *id,
                      struct slm_err *err);
/* Records a shadow call's outcome on row `id` (from slm_ledger_add_id()): sets shadow to
 * `shadow` (-1 = no verdict: the call failed or was cancelled, 0 = disagreed, 1 = agreed) and
 * adds `shadow_cost` to the row's shadow_cost, committed before it returns. The row is written
 * first, with shadow = -1, when the request is answered, so a process killed while the shadow
 * call runs keeps the row. SLM_E_INVALID for a shadow outside -1..1 or a negative or non-finite
 * cost, SLM_E_NOT_FOUND when there is no row `id`, SLM_E_IO when the write fails. Thread-safe. */
int slm_ledger_set_shadow(struct slm_ledger *l, int64_t id, int shadow, double shadow_cost,
                          struct slm_err *err);
/* Number of rows; SLM_E_IO on a read error. */
int slm_ledger_count(struct slm_ledger *l, int64_t *n, struct slm_err *err);

/* ---------------------------------------------------------------- reports */

/* Prices for the break-even estimate. One struct so `slm cost` flags and router.yaml's
 * `meter:` section fill the same thing. Zero hardware_price = no break-even. */
struct slm_cost_params {
    double hardware_price; /* one-off price of the machine that runs the local models */
    double power_watts;    /* its power draw while answering requests, in W */
    double kwh_price;      /* electricity price per kWh, same currency as upstream prices */
};
struct slm_cost_params slm_cost_params_default(void); /* all zero */

enum slm_cost_group {
    SLM_COST_BY_DAY = 0, /* UTC calendar day, key "YYYY-MM-DD" */
    SLM_COST_BY_ROUTE,   /* key = route */
    SLM_COST_BY_TARGET,  /* key = target */
};
/* Parses "day" | "route" | "target"; SLM_E_INVALID otherwise. */
int slm_cost_group_parse(const char *s, enum slm_cost_group *out);

struct slm_cost_query {
    enum slm_cost_group by;
    int64_t since_ms; /* rows with time_ms >= since_ms; 0 = from the first row */
    int64_t until_ms; /* rows with time_ms < until_ms; 0 = to the last row */
};

/* Aggregates over one group of rows (or all of them). Definitions in docs/cost.md. */
struct slm_cost_stats {
    char key[256];                   /* day, route or target ("total" for the totals) */
    int64_t requests;                /* rows */
    int64_t local;                   /* where = "local" */
    int64_t escalated;               /* where = "escalated" */
    int64_t fallback;                /* where = "local_fallback" */
    int64_t errors;                  /* where = "error" */
    double share_local;              /* local / requests (0 when empty) */
    int64_t tokens_in, tokens_out;   /* sums */
    double cost;                     /* sum of cost */
    double shadow_cost;              /* sum of shadow_cost */
    double spend;                    /* cloud spend = cost + shadow_cost */
    double cloud_cost;               /* all-cloud baseline = sum of cloud_cost */
    double avoided;                  /* spend avoided = cloud_cost - spend (may be < 0) */
    int64_t shadowed, shadow_agreed; /* rows with shadow >= 0, rows with shadow = 1 */
    double p50_ms, p95_ms;           /* latency percentiles (nearest rank), 0 when empty */
};

/* Break-even of the local hardware at the observed rate (docs/cost.md):
 *   avoided_per_day = avoided / period_days
 *   energy_per_day  = busy_hours / period_days * power_watts / 1000 * kwh_price
 *   monthly_savings = (avoided_per_day - energy_per_day) * 30.44
 *   months          = hardware_price / monthly_savings   (only when monthly_savings > 0) */
struct slm_cost_breakeven {
    bool computed; /* hardware_price > 0 and period_days > 0 */
    double avoided_per_day, energy_per_day, monthly_savings;
    bool never;    /* computed, but monthly_savings <= 0: it never pays for itself */
    double months; /* when computed && !never */
};
#define SLM_COST_DAYS_PER_MONTH 30.44

/* The pure arithmetic above. */
void slm_cost_breakeven_compute(const struct slm_cost_params *p, double avoided, double period_days,
                                double busy_hours, struct slm_cost_breakeven *out);

/* Nearest-rank percentile of `n` values sorted ascending: v[ceil(q * n) - 1] (q in 0..1,
 * clamped; q = 0 gives v[0]); 0 when n = 0. */
double slm_cost_percentile(const double *sorted, size_t n, double q);

struct slm_cost_report {
    enum slm_cost_group by;
    struct slm_cost_stats *groups; /* sorted by key; owned */
    size_t n_groups;
    struct slm_cost_stats total;
    int64_t first_ms, last_ms; /* time_ms of the first and last row counted; 0 when empty */
    double period_days;        /* max(1, (last_ms - first_ms) in days); 0 when empty */
    /* length of the union of the intervals [time_ms - latency_ms, time_ms], in hours */
    double busy_hours;
    struct slm_cost_params params;
    struct slm_cost_breakeven breakeven;
};

/* Computes the report for the rows `q` selects. One slm_cost_report_free() is owed on
 * success (nothing on failure). SLM_E_IO on a read error. */
int slm_cost_report(struct slm_ledger *l, const struct slm_cost_query *q,
                    const struct slm_cost_params *p, struct slm_cost_report *out,
                    struct slm_err *err);
void slm_cost_report_free(struct slm_cost_report *r);
/* The report as JSON (schema in docs/cost.md); a new reference, NULL when out of memory. */
json_t *slm_cost_report_json(const struct slm_cost_report *r);

/* Cumulative spend over time, for the chart. */
struct slm_cost_point {
    int64_t time_ms;
    double spend; /* cumulative cost + shadow_cost up to and including time_ms */
    double cloud; /* cumulative cloud_cost */
};
/* At most `max_points` (>= 2) points: the rows are bucketed into equal time slices and
 * each bucket gives its last cumulative value. *points is malloc'ed (caller frees), NULL
 * with *n = 0 when no row matches. */
int slm_cost_series(struct slm_ledger *l, const struct slm_cost_query *q, size_t max_points,
                    struct slm_cost_point **points, size_t *n, struct slm_err *err);
/* Renders the series as a standalone SVG (two lines, axes, legend), appended to `out`. */
int slm_cost_svg(const struct slm_cost_point *points, size_t n, const char *title,
                 struct slm_buf *out, struct slm_err *err);

/* "YYYY-MM-DD" (UTC midnight) -> unix ms; SLM_E_INVALID on anything else. */
int slm_cost_parse_day(const char *s, int64_t *ms);
/* unix ms -> "YYYY-MM-DD" (UTC) into out (snprintf semantics). */
size_t slm_cost_format_day(int64_t ms, char *out, size_t cap);

#endif /* SLM_LEDGER_H */
