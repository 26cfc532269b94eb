/*
 * cli/cmd_eval.c - `slm eval SUITE.yaml`: candidates side by side on the same
 * rows (the suite, the run, the statistics and the reports are eval/'s; this
 * file parses flags, draws progress, prints the table and writes the files).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "slm/eval.h"
#include "slm/json.h"

static const char *const CMD = "eval";

static void usage(void) {
    printf("Usage: slm eval SUITE.yaml [--json FILE] [--markdown FILE] [--html FILE]\n"
           "                [--limit N] [--threads N] [-q]\n"
           "\n"
           "Runs every candidate of the suite (store models, a model with an adapter, .gguf\n"
           "files, routes of a router.yaml) on the same rows and scores the same metrics\n"
           "(label, exact, json, regex), each with its 95%% bootstrap interval and the rows\n"
           "behind it, and tests every pair of candidates with McNemar's test. Local label\n"
           "scoring is `slm tune eval`'s. The suite format: docs/eval.md.\n"
           "\n"
           "Options:\n"
           "  --json FILE       also write the report as JSON\n"
           "  --markdown FILE   also write the report as Markdown\n"
           "  --html FILE       also write one self-contained HTML page with charts\n"
           "  --limit N         evaluate the first N rows at most (after the suite's filter)\n"
           "  --threads N       threads for local models (default: physical cores)\n"
           "  -q, --quiet       no progress bar\n"
           "  -h, --help        this help\n");
}

struct eval_args {
    const char *suite, *json, *markdown, *html;
    long long limit, threads;
    bool quiet;
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

static void on_progress(size_t done, size_t total, const char *candidate, void *user) {
    struct slm_cli_progress *bar = user;
    char label[64];
    snprintf(label, sizeof(label), "eval %.40s", candidate);
    slm_cli_progress_update(bar, label, done, total);
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
        return slm_cli_fail(CMD, rc, &err);
    }
    struct slm_cli_progress bar;
    slm_cli_progress_init(&bar, !a.quiet && slm_cli_stderr_tty(), SLM_CLI_PROGRESS_ITEMS);
    struct slm_eval_run_params p = slm_eval_run_params_default();
    p.limit = (size_t)a.limit;
    p.n_threads = (int32_t)a.threads;
    p.cancel = &slm_cli_interrupted;
    p.progress = on_progress;
    p.user = &bar;
    slm_cli_trap_signals();
    struct slm_eval_result *r = NULL;
    rc = slm_eval_run(s, &p, &r, &err);
    slm_cli_progress_finish(&bar);
    code = rc == SLM_OK ? reports(&a, r) : slm_cli_fail(CMD, rc, &err);
    slm_eval_result_free(r);
    slm_eval_suite_free(s);
    return code;
}

const struct slm_cli_command slm_cli_cmd_eval = {
    "eval", "Compare models, adapters and routes side by side on a suite", run, 42};
