/*
 * cli/cmd_cost.c - `slm cost`: the router's meter. Reads the ledger and prints, per
 * day / route / target, requests, the share answered locally, cloud spend, spend
 * avoided and latency percentiles, then the hardware break-even; or the same as
 * JSON; optionally an SVG chart of cumulative spend vs all-cloud. Definitions in
 * docs/cost.md.
 */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/json.h"
#include "slm/ledger.h"
#include "slm/router.h"

static const char *const CMD = "cost";

/* Most points the chart draws: enough for a smooth line, small enough to open fast. */
#define SVG_MAX_POINTS 400

static void usage(void) {
    printf("Usage: slm cost [--ledger PATH] [--router ROUTER.yaml] [--by day|route|target]\n"
           "                [--since YYYY-MM-DD]\n"
           "                [--until YYYY-MM-DD] [--json] [--svg FILE]\n"
           "                [--hardware-price X --power-watts W --kwh-price Y]\n"
           "\n"
           "The router's meter: what the routed requests cost, what the same requests\n"
           "would have cost had all gone to the cloud, and when the local hardware has\n"
           "paid for itself at the current rate. Definitions: docs/cost.md.\n"
           "\n"
           "Options:\n"
           "  --ledger PATH         the ledger (default $SLM_HOME/ledger.db)\n"
           "  --router FILE         take the ledger and the break-even prices from router.yaml's\n"
           "                        meter: section (flags given here still win)\n"
           "  --by KEY              group rows by day (UTC, default), route or target\n"
           "  --since YYYY-MM-DD    only requests from that day on (UTC)\n"
           "  --until YYYY-MM-DD    only requests up to and including that day (UTC)\n"
           "  --json                the report as one JSON object instead of a table\n"
           "  --svg FILE            also write a chart of cumulative spend vs all-cloud\n"
           "  --hardware-price X    price of the machine that runs the local models\n"
           "  --power-watts W       its power draw while answering, in watts\n"
           "  --kwh-price Y         electricity price per kWh (same currency as the prices)\n"
           "  -h, --help            this help\n"
           "\n"
           "Columns: REQUESTS, LOCAL (share answered locally), ESC (escalated), FALLBK\n"
           "(every upstream failed, local answer returned), ERR, SPEND (cloud charges incl.\n"
           "shadow calls), ALL-CLOUD (the same requests priced at the cloud), AVOIDED\n"
           "(ALL-CLOUD - SPEND), SHADOW (share of shadowed answers the cloud agreed with),\n"
           "P50/P95 (latency in ms, nearest rank).\n");
}

struct cost_args {
    const char *ledger, *svg, *router;
    bool json;
    bool price_set[3]; /* hardware, watts, kwh given as flags (they win over --router) */
    struct slm_cost_query q;
    struct slm_cost_params p;
};

static bool parse_day_flag(const char *flag, const char *v, int64_t *ms) {
    if (slm_cost_parse_day(v, ms) != SLM_OK) {
        slm_cli_error(CMD, "%s expects a date YYYY-MM-DD (UTC), got '%s'", flag, v);
        return false;
    }
    return true;
}

/* Returns -1 to continue, else the exit code. */
static int parse_args(int argc, char **argv, struct cost_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (slm_cli_is_help(f)) {
            usage();
            return SLM_EXIT_OK;
        }
        if (strcmp(f, "--json") == 0) {
            a->json = true;
            continue;
        }
        if (strncmp(f, "--", 2) != 0) {
            slm_cli_error(CMD, "unexpected argument '%s' (see slm cost --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            slm_cli_error(CMD, "%s needs a value", f);
            return SLM_EXIT_USAGE;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(f, "--ledger") == 0) {
            a->ledger = v;
        } else if (strcmp(f, "--router") == 0) {
            a->router = v;
        } else if (strcmp(f, "--svg") == 0) {
            a->svg = v;
        } else if (strcmp(f, "--by") == 0) {
            ok = slm_cost_group_parse(v, &a->q.by) == SLM_OK;
            if (!ok) {
                slm_cli_error(CMD, "--by expects day, route or target, got '%s'", v);
            }
        } else if (strcmp(f, "--since") == 0) {
            ok = parse_day_flag(f, v, &a->q.since_ms);
        } else if (strcmp(f, "--until") == 0) {
            ok = parse_day_flag(f, v, &a->q.until_ms);
            a->q.until_ms += 86400000; /* the whole day is included */
        } else if (strcmp(f, "--hardware-price") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, DBL_MAX, &a->p.hardware_price);
            a->price_set[0] = true;
        } else if (strcmp(f, "--power-watts") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1e7, &a->p.power_watts);
            a->price_set[1] = true;
        } else if (strcmp(f, "--kwh-price") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1e6, &a->p.kwh_price);
            a->price_set[2] = true;
        } else {
            slm_cli_error(CMD, "unknown option '%s' (see slm cost --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (!ok) {
            return SLM_EXIT_USAGE;
        }
    }
    if (a->q.since_ms && a->q.until_ms && a->q.until_ms <= a->q.since_ms) {
        slm_cli_error(CMD, "--until is before --since");
        return SLM_EXIT_USAGE;
    }
    return -1;
}

static void print_stats(const struct slm_cost_stats *s, int w) {
    char shadow[16] = "-";
    if (s->shadowed > 0) {
        snprintf(shadow, sizeof(shadow), "%.0f%%",
                 100.0 * (double)s->shadow_agreed / (double)s->shadowed);
    }
    printf("%-*s %9lld %6.1f%% %6lld %6lld %5lld %11.4f %11.4f %11.4f %6s %8.1f %8.1f\n", w, s->key,
           (long long)s->requests, 100.0 * s->share_local, (long long)s->escalated,
           (long long)s->fallback, (long long)s->errors, s->spend, s->cloud_cost, s->avoided,
           shadow, s->p50_ms, s->p95_ms);
}

static void print_breakeven(const struct slm_cost_report *r) {
    const struct slm_cost_breakeven *b = &r->breakeven;
    const struct slm_cost_params *p = &r->params;
    if (!b->computed) {
        printf("break-even: pass --hardware-price (with --power-watts and --kwh-price) to "
               "estimate it\n");
        return;
    }
    printf("break-even: avoided %.4f/day - energy %.4f/day (%.0f W x %.3g h/day busy x %.4f/kWh)\n"
           "            = %.4f/month (x %.2f days)\n",
           b->avoided_per_day, b->energy_per_day, p->power_watts, r->busy_hours / r->period_days,
           p->kwh_price, b->monthly_savings, SLM_COST_DAYS_PER_MONTH);
    if (b->never) {
        printf("            hardware %.2f: never pays for itself at this rate\n",
               p->hardware_price);
    } else {
        printf("            hardware %.2f / %.4f per month = %.1f months\n", p->hardware_price,
               b->monthly_savings, b->months);
    }
}

static void print_table(const struct slm_cost_report *r, const char *path) {
    if (r->total.requests == 0) {
        printf("no requests in %s for this period\n", path);
        return;
    }
    int w = 10;
    for (size_t i = 0; i < r->n_groups; i++) {
        w = SLM_MAX(w, (int)SLM_MIN(strlen(r->groups[i].key), 48));
    }
    const char *by = r->by == SLM_COST_BY_ROUTE    ? "ROUTE"
                     : r->by == SLM_COST_BY_TARGET ? "TARGET"
                                                   : "DAY";
    printf("%-*s %9s %7s %6s %6s %5s %11s %11s %11s %6s %8s %8s\n", w, by, "REQUESTS", "LOCAL",
           "ESC", "FALLBK", "ERR", "SPEND", "ALL-CLOUD", "AVOIDED", "SHADOW", "P50ms", "P95ms");
    for (size_t i = 0; i < r->n_groups; i++) {
        print_stats(&r->groups[i], w);
    }
    print_stats(&r->total, w);
    char first[16], last[16];
    slm_cost_format_day(r->first_ms, first, sizeof(first));
    slm_cost_format_day(r->last_ms, last, sizeof(last));
    printf("\nperiod: %s .. %s (%.2f days), local machine busy %.3g h\n", first, last,
           r->period_days, r->busy_hours);
    print_breakeven(r);
}

static int report(const struct cost_args *ap);

static int write_svg(struct slm_ledger *l, const struct cost_args *a, struct slm_err *err) {
    struct slm_cost_point *pts = NULL;
    size_t n = 0;
    int rc = slm_cost_series(l, &a->q, SVG_MAX_POINTS, &pts, &n, err);
    struct slm_buf svg = {0};
    if (rc == SLM_OK) {
        rc = slm_cost_svg(pts, n, "slm cost: cumulative spend vs all-cloud", &svg, err);
    }
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(a->svg, svg.ptr, svg.len, err);
    }
    free(pts);
    slm_buf_free(&svg);
    return rc;
}

/* --router: the meter section of router.yaml supplies the prices (flags still win) and the
 * ledger path (unless --ledger is given). */
static int apply_router(struct cost_args *a, struct slm_router_config **cfg) {
    struct slm_err err = {0};
    int rc = slm_router_config_load(a->router, cfg, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    const struct slm_router_meter *m = &(*cfg)->meter;
    a->p.hardware_price = a->price_set[0] ? a->p.hardware_price : m->cost.hardware_price;
    a->p.power_watts = a->price_set[1] ? a->p.power_watts : m->cost.power_watts;
    a->p.kwh_price = a->price_set[2] ? a->p.kwh_price : m->cost.kwh_price;
    if (!a->ledger && m->ledger) {
        a->ledger = m->ledger;
    }
    return -1;
}

static int run(int argc, char **argv) {
    struct cost_args a = {0};
    int code = parse_args(argc, argv, &a);
    if (code >= 0) {
        return code;
    }
    struct slm_router_config *cfg = NULL;
    if (a.router && (code = apply_router(&a, &cfg)) >= 0) {
        return code;
    }
    code = report(&a);
    slm_router_config_free(cfg);
    return code;
}

static int report(const struct cost_args *ap) {
    struct cost_args a = *ap;
    int code;
    struct slm_ledger_params lp = slm_ledger_params_default();
    lp.path = a.ledger;
    lp.must_exist = true;
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    struct slm_cost_report r = {0};
    int rc = slm_ledger_open_ex(&lp, &l, &err);
    if (rc == SLM_OK) {
        rc = slm_cost_report(l, &a.q, &a.p, &r, &err);
    }
    if (rc == SLM_OK && a.svg) {
        rc = write_svg(l, &a, &err);
    }
    if (rc != SLM_OK) {
        slm_cost_report_free(&r);
        slm_ledger_close(l);
        return slm_cli_fail(CMD, rc, &err);
    }
    code = SLM_EXIT_OK;
    if (a.json) {
        json_t *j = slm_cost_report_json(&r);
        char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
        if (text) {
            printf("%s\n", text);
        } else {
            slm_cli_error(CMD, "out of memory");
            code = SLM_EXIT_ERROR;
        }
        free(text);
        json_decref(j);
    } else {
        print_table(&r, slm_ledger_path(l));
    }
    slm_cost_report_free(&r);
    slm_ledger_close(l);
    return code;
}

const struct slm_cli_command slm_cli_cmd_cost = {"cost", "Show the router's spend and savings", run,
                                                 45};
