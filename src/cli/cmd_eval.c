/*
 * cli/cmd_eval.c - `slm eval SUITE.yaml`: candidates side by side on the same
 * rows (the suite, the run, the statistics and the reports are eval/'s; this
 * file parses flags, draws progress, prints the table and writes the files).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "cli/cli.h"
#include "cli/contractor.h"
#include "cli/progress.h"
#include "slm/contract.h"
#include "slm/eval.h"
#include "slm/json.h"

static const char *const CMD = "eval";

static void usage(void) {
    printf("Usage: slm eval SUITE.yaml [--json FILE] [--markdown FILE] [--html FILE]\n"
           "                [--limit N] [--threads N] [--max-cost USD] [--cache FILE]\n"
           "                [--no-cache] [--concurrency N] [-q]\n"
           "\n"
           "Runs every candidate of the suite (store models, a model with an adapter, .gguf\n"
           "files, routes of a router.yaml, cloud upstreams) on the same rows and scores the\n"
           "same metrics (label, exact, json, regex, judge), each with its 95%% bootstrap\n"
           "interval and the rows behind it, and tests every pair of candidates with McNemar's\n"
           "test. Local label scoring is `slm tune eval`'s. Cloud calls (upstream candidates,\n"
           "the judge) go through the call cache `slm label` uses: a second run of the same\n"
           "suite makes no call. The suite format: docs/eval.md.\n"
           "\n"
           "Options:\n"
           "  --json FILE       also write the report as JSON\n"
           "  --markdown FILE   also write the report as Markdown\n"
           "  --html FILE       also write one self-contained HTML page with charts\n"
           "  --limit N         evaluate the first N rows at most (after the suite's filter)\n"
           "  --threads N       threads for local models (default: idle physical cores)\n"
           "  --max-cost USD    hard cap on what the cloud calls of this run may cost, the\n"
           "                    candidates and the judge together; a call whose worst case\n"
           "                    does not fit is not sent, and the run stops (exit 3)\n"
           "  --cache FILE      call cache (default $SLM_HOME/cache/calls.db)\n"
           "  --no-cache        neither read nor write the cache\n"
           "  --concurrency N   cloud calls at once per candidate and for the judge\n"
           "                    (default: the upstream's max_concurrency)\n"
           "  -q, --quiet       no progress bar\n"
           "  -h, --help        this help\n");
}

struct eval_args {
    const char *suite, *json, *markdown, *html, *cache;
    long long limit, threads, concurrency;
    double max_cost;
    bool quiet, no_cache;
};

static int parse(int argc, char **argv, struct eval_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (slm_cli_is_help(f)) {
            usage();
            return -1;
        }
        if (strcmp(f, "-q") == 0 || strcmp(f, "--quiet") == 0) {
            a->quiet = true;
            continue;
        }
        if (strcmp(f, "--no-cache") == 0) {
            a->no_cache = true;
            continue;
        }
        if (f[0] != '-' || f[1] == '\0') {
            if (a->suite) {
                slm_cli_error(CMD, "unexpected argument '%s' (one suite at a time)", f);
                return SLM_EXIT_USAGE;
            }
            a->suite = f;
            continue;
        }
        if (i + 1 >= argc) {
            slm_cli_error(CMD, "%s needs a value (see slm eval --help)", f);
            return SLM_EXIT_USAGE;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(f, "--json") == 0) {
            a->json = v;
        } else if (strcmp(f, "--markdown") == 0) {
            a->markdown = v;
        } else if (strcmp(f, "--html") == 0) {
            a->html = v;
        } else if (strcmp(f, "--limit") == 0) {
            ok = slm_cli_int(CMD, f, v, 1, 100000000, &a->limit);
        } else if (strcmp(f, "--threads") == 0) {
            ok = slm_cli_int(CMD, f, v, 1, 1024, &a->threads);
        } else if (strcmp(f, "--concurrency") == 0) {
            ok = slm_cli_int(CMD, f, v, 1, 64, &a->concurrency);
        } else if (strcmp(f, "--max-cost") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1e9, &a->max_cost);
        } else if (strcmp(f, "--cache") == 0) {
            a->cache = v;
        } else {
            slm_cli_error(CMD, "unknown option '%s' (see slm eval --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (!ok) {
            return SLM_EXIT_USAGE;
        }
    }
    if (!a->suite) {
        slm_cli_error(CMD, "needs a suite file: slm eval SUITE.yaml (see --help)");
        return SLM_EXIT_USAGE;
    }
    return SLM_EXIT_OK;
}

/* Renders one report into a file, atomically. */
static int write_report(const char *path,
                        int (*fn)(const struct slm_eval_result *, struct slm_buf *),
                        const struct slm_eval_result *r) {
    struct slm_buf b;
    slm_buf_init(&b, (size_t)256 << 20);
    struct slm_err err = {0};
    int rc = fn(r, &b);
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(path, b.ptr, b.len, &err);
    } else {
        slm_err_set(&err, rc, "%s: %s", path, slm_strerror(rc));
    }
    slm_buf_free(&b);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail(CMD, rc, &err);
}

static int json_into(const struct slm_eval_result *r, struct slm_buf *out) {
    json_t *j = slm_eval_report_json(r);
    int rc = j ? slm_json_dump(j, out) : SLM_E_NOMEM;
    rc = rc == SLM_OK ? slm_buf_putc(out, '\n') : rc;
    json_decref(j);
    return rc;
}

static int reports(const struct eval_args *a, const struct slm_eval_result *r) {
    struct slm_buf table = {0};
    int code = slm_eval_report_text(r, &table) == SLM_OK ? SLM_EXIT_OK : SLM_EXIT_ERROR;
    fputs(slm_buf_cstr(&table), stdout);
    slm_buf_free(&table);
    if (code == SLM_EXIT_OK && a->json) {
        code = write_report(a->json, json_into, r);
    }
    if (code == SLM_EXIT_OK && a->markdown) {
        code = write_report(a->markdown, slm_eval_report_markdown, r);
    }
    if (code == SLM_EXIT_OK && a->html) {
        code = write_report(a->html, slm_eval_report_html, r);
    }
    return code;
}

/* The cloud side of a run: one cache and one budget for every upstream the suite names. */
#define MAX_CLOUDS (SLM_EVAL_MAX_CANDIDATES + 1)

struct clouds {
    const struct eval_args *a;
    struct slm_contract_cache *cache;
    struct slm_contract_budget *budget;
    struct slm_contract_upstream *ups[MAX_CLOUDS];
    struct slm_contract *contracts[MAX_CLOUDS];
    size_t n;
    bool cache_tried;
    struct slm_cli_progress *bar;
};

static int open_cloud(void *user, const struct slm_eval_suite *s, const struct slm_eval_cloud *c,
                      struct slm_contract **out, struct slm_err *err) {
    struct clouds *cl = user;
    if (cl->n >= MAX_CLOUDS) {
        return slm_err_set(err, SLM_E_LIMIT, "too many cloud upstreams");
    }
    char how[200];
    snprintf(how, sizeof(how), "%s:%d: %s: api-key-env", s->path, c->line, c->what);
    struct slm_contract_upstream_spec spec = {.router_path = c->router,
                                              .upstream = c->upstream,
                                              .base_url = c->base_url,
                                              .model = c->model,
                                              .price_in = c->price_in,
                                              .price_out = c->price_out};
    int rc = SLM_OK;
    if (!cl->cache_tried && !cl->a->no_cache) {
        cl->cache_tried = true;
        rc = slm_contract_cache_open(cl->a->cache, &cl->cache, err);
    }
    if (rc == SLM_OK) {
        rc = slm_cli_upstream_open(&spec, c->api_key_env, how, &cl->ups[cl->n], err);
    }
    struct slm_contract_params cp = {
        .upstream = cl->ups[cl->n], .cache = cl->cache, .budget = cl->budget};
    if (rc == SLM_OK) {
        rc = slm_contract_init(&cp, &cl->contracts[cl->n], err);
    }
    if (rc != SLM_OK) {
        slm_contract_upstream_free(cl->ups[cl->n]);
        cl->ups[cl->n] = NULL;
        return slm_err_prefix(err, "%s:%d: %s", s->path, c->line, c->what);
    }
    *out = cl->contracts[cl->n++];
    return SLM_OK;
}

static void on_progress(size_t done, size_t total, const char *candidate, void *user) {
    struct clouds *cl = user;
    char label[64];
    snprintf(label, sizeof(label), "eval %.40s", candidate);
    slm_cli_progress_update(cl->bar, label, done, total);
}

static void clouds_free(struct clouds *cl) {
    for (size_t i = 0; i < cl->n; i++) {
        slm_contract_free(cl->contracts[i]);
        slm_contract_upstream_free(cl->ups[i]);
    }
    slm_contract_cache_close(cl->cache);
    slm_contract_budget_free(cl->budget);
}

/* "cloud: calls 12, from cache 388, failed 0, spent $0.0123 of $1.00" on stderr. */
static void clouds_summary(struct clouds *cl) {
    if (cl->n == 0) {
        return;
    }
    struct slm_contract_stats t = {0};
    for (size_t i = 0; i < cl->n; i++) {
        struct slm_contract_stats s;
        slm_contract_get_stats(cl->contracts[i], &s);
        t.calls += s.calls;
        t.cached += s.cached;
        t.failed += s.failed;
        t.spent = s.spent; /* one shared budget */
        t.cap = s.cap;
    }
    char cap[48] = "";
    if (isfinite(t.cap)) {
        snprintf(cap, sizeof(cap), " of $%.4f", t.cap);
    }
    fprintf(stderr, "cloud: calls %llu, from cache %llu, failed %llu, spent $%.4f%s\n",
            (unsigned long long)t.calls, (unsigned long long)t.cached, (unsigned long long)t.failed,
            t.spent, cap);
}

static int run(int argc, char **argv) {
    struct eval_args a = {0};
    int code = parse(argc, argv, &a);
    if (code != SLM_EXIT_OK) {
        return code < 0 ? SLM_EXIT_OK : code;
    }
    struct slm_err err = {0};
    struct slm_eval_suite *s = NULL;
    int rc = slm_eval_suite_load(a.suite, &s, &err);
    if (rc != SLM_OK) {
        return slm_cli_contractor_fail(CMD, rc, &err);
    }
    struct slm_cli_progress bar;
    slm_cli_progress_init(&bar, !a.quiet && slm_cli_stderr_tty(), SLM_CLI_PROGRESS_ITEMS);
    struct slm_eval_run_params p = slm_eval_run_params_default();
    p.limit = (size_t)a.limit;
    p.n_threads = (int32_t)a.threads;
    p.cancel = &slm_cli_interrupted;
    struct clouds cl = {.a = &a, .bar = &bar};
    if (slm_contract_budget_init(a.max_cost > 0 ? a.max_cost : INFINITY, &cl.budget) != SLM_OK) {
        slm_eval_suite_free(s);
        return slm_cli_fail(CMD, SLM_E_NOMEM, NULL);
    }
    p.progress = on_progress;
    p.user = &cl;
    p.open_cloud = open_cloud;
    p.cloud_concurrency = (int)a.concurrency;
    slm_cli_trap_signals();
    struct slm_eval_result *r = NULL;
    rc = slm_eval_run(s, &p, &r, &err);
    slm_cli_progress_finish(&bar);
    code = rc == SLM_OK ? reports(&a, r) : SLM_EXIT_OK;
    fflush(stdout);
    clouds_summary(&cl);
    if (rc == SLM_E_LIMIT) {
        slm_cli_error(CMD, "%s", err.msg);
        code = SLM_EXIT_BUDGET;
    } else if (rc != SLM_OK) {
        code = slm_cli_contractor_fail(CMD, rc, &err); /* exit 3 is the cost cap here */
    }
    slm_eval_result_free(r);
    clouds_free(&cl);
    slm_eval_suite_free(s);
    return code;
}

const struct slm_cli_command slm_cli_cmd_eval = {
    "eval", "Compare models, adapters and routes side by side on a suite", run, 42};
