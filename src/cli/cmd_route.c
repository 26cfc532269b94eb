/*
 * cli/cmd_route.c - `slm route`: batch requests through the router, and
 * `slm route calibrate`: choose check thresholds from labelled data (the run,
 * the maths, the report and the chart are router/calibrate.c's; this file
 * parses flags, draws progress and writes the files).
 *
 * Batch: input lines are OpenAI chat bodies with an "id"; output lines are
 * {"id", "response", "route", "reason"} (or {"id", "error", "route": "error"})
 * in input order, flushed one by one, so a rerun resumes after the last id
 * written (a half-written last line from a kill is cut off first).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "slm/json.h"
#include "slm/router.h"

static const char *const CMD = "route";

#define MAX_LINE ((size_t)16 << 20)

static void usage(void) {
    printf("Usage: slm route --router ROUTER.yaml IN.jsonl -o OUT.jsonl [--on-error skip|fail]\n"
           "       slm route calibrate --router ROUTER.yaml --data LABELLED.jsonl\n"
           "                 --target-accuracy X [--route NAME] [--cloud-accuracy P]\n"
           "                 [--confidence C] [--out thresholds.yaml] [--svg curve.svg]\n"
           "                 [--limit N]\n"
           "\n"
           "  -o, --output FILE   batch: where the answers go\n"
           "  -h, --help          this text\n"
           "\n"
           "Batch: every input line is an OpenAI chat request body with an \"id\" and a\n"
           "\"model\" naming a route; every output line is {\"id\", \"response\", \"route\",\n"
           "\"reason\"}. A rerun with the same OUT resumes after the last id written.\n"
           "A bad input line is reported with its line number and skipped (--on-error skip,\n"
           "the default) or stops the run (--on-error fail); output already written stays.\n"
           "\n"
           "Calibrate: runs the route's local target once per labelled row ({\"input\" or\n"
           "\"messages\", \"answer\"}), reads its confidence (label probability, or mean token\n"
           "probability), prints the accuracy/cost curve and writes the cheapest threshold that\n"
           "reaches the target accuracy to the thresholds file router.yaml includes.\n"
           "  --cloud-accuracy P  accuracy assumed for escalated rows (default 0.92)\n"
           "  --confidence C      reach the target with this one-sided confidence, not just on\n"
           "                      these rows (default 0.95; 0.5 = the measured accuracy)\n"
           "  --out FILE          default: router.yaml's include, else thresholds.yaml beside it\n"
           "See docs/router.md.\n");
}

/* ---------------------------------------------------------------- resume */

/* Cuts a partial last line off OUT and returns the last id written (heap), or
 * NULL when the file is empty or missing. */
static int resume_point(const char *path, char **last_id, struct slm_err *err) {
    *last_id = NULL;
    if (!slm_file_exists(path)) {
        return SLM_OK;
    }
    struct slm_buf b = {0};
    int rc = slm_file_read(path, 0, &b, err);
    if (rc != SLM_OK) {
        return rc;
    }
    size_t end = b.len;
    while (end > 0 && b.ptr[end - 1] != '\n') {
        end--; /* a half-written line from an interrupted run */
    }
    if (end != b.len && truncate(path, (off_t)end) != 0) {
        slm_buf_free(&b);
        return slm_err_set(err, SLM_E_IO, "%s: cannot cut the partial last line: %s", path,
                           strerror(errno));
    }
    if (end > 0) {
        size_t start = end - 1;
        while (start > 0 && b.ptr[start - 1] != '\n') {
            start--;
        }
        json_t *line = NULL;
        rc = slm_json_parse(b.ptr + start, end - start, path, &line, err);
        const json_t *id = json_object_get(line, "id");
        if (rc == SLM_OK && json_is_string(id)) {
            *last_id = strdup(json_string_value(id));
        } else if (rc == SLM_OK) {
            rc = slm_err_set(err, SLM_E_INVALID, "%s: the last line has no string \"id\"", path);
        }
        json_decref(line);
    }
    slm_buf_free(&b);
    return rc;
}

static size_t count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int c;
    while (f && (c = getc(f)) != EOF) {
        n += c == '\n';
    }
    if (f) {
        fclose(f);
    }
    return n;
}

/* ---------------------------------------------------------------- batch */

struct batch {
    struct slm_router *r;
    FILE *out;
    size_t ok, escalated, fallback, failed, bad;
};

static int write_line(struct batch *b, json_t *line) {
    struct slm_buf s = {0};
    int rc = slm_json_dump(line, &s);
    if (rc == SLM_OK && (fwrite(s.ptr, 1, s.len, b->out) != s.len || fputc('\n', b->out) == EOF ||
                         fflush(b->out) != 0)) {
        rc = SLM_E_IO;
    }
    slm_buf_free(&s);
    return rc;
}

static int route_one(struct batch *b, json_t *req, const char *id) {
    json_t *resp = NULL;
    struct slm_router_info info;
    memset(&info, 0, sizeof(info));
    struct slm_err err = {0};
    int rc = slm_router_chat(b->r, req, &slm_cli_interrupted, &resp, &info, &err);
    if (rc == SLM_E_ABORTED) {
        return rc;
    }
    json_t *line;
    if (rc == SLM_OK) {
        line = json_pack("{s:s, s:o, s:s, s:s}", "id", id, "response", resp, "route", info.route,
                         "reason", info.reason);
        b->ok++;
        b->escalated += strcmp(info.route, "escalated") == 0;
        b->fallback += strcmp(info.route, "local_fallback") == 0;
    } else {
        json_decref(resp);
        line = json_pack("{s:s, s:{s:s, s:s}, s:s, s:s}", "id", id, "error", "code",
                         slm_strerror(rc), "message", err.msg, "route", "error", "reason", err.msg);
        b->failed++;
    }
    rc = line ? write_line(b, line) : SLM_E_NOMEM;
    json_decref(line);
    return rc;
}

static int batch_run(struct batch *b, const char *in_path, const char *out_path, bool fail_bad) {
    char *resume = NULL;
    struct slm_err err = {0};
    int rc = resume_point(out_path, &resume, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    FILE *in = fopen(in_path, "r");
    if (!in) {
        free(resume);
        slm_cli_error(CMD, "cannot open %s: %s", in_path, strerror(errno));
        return SLM_EXIT_NOT_FOUND;
    }
    b->out = fopen(out_path, "a");
    if (!b->out) {
        fclose(in);
        free(resume);
        slm_cli_error(CMD, "cannot open %s: %s", out_path, strerror(errno));
        return SLM_EXIT_ERROR;
    }
    size_t total = count_lines(in_path), lineno = 0;
    struct slm_cli_progress prog;
    slm_cli_progress_init(&prog, slm_cli_stderr_tty(), SLM_CLI_PROGRESS_ITEMS);
    bool skipping = resume != NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int code = SLM_EXIT_OK;
    while (code == SLM_EXIT_OK && !slm_cli_interrupted && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        slm_cli_progress_update(&prog, "route", lineno, total);
        struct slm_str s = slm_str_trim(slm_str_n(line, (size_t)n));
        if (s.len == 0) {
            continue;
        }
        json_t *req = NULL;
        char where[64];
        snprintf(where, sizeof(where), "%s:%zu", in_path, lineno);
        rc = (size_t)n > MAX_LINE ? slm_err_set(&err, SLM_E_TOO_LARGE, "%s: line too long", where)
                                  : slm_json_parse(s.ptr, s.len, where, &req, &err);
        const json_t *idv = json_object_get(req, "id");
        if (rc == SLM_OK && !json_is_string(idv)) {
            rc = slm_err_set(&err, SLM_E_INVALID, "%s: a string \"id\" is required", where);
        }
        if (rc != SLM_OK) {
            json_decref(req);
            slm_cli_progress_finish(&prog);
            slm_cli_error(CMD, "%s%s", err.msg, fail_bad ? "" : " (skipped)");
            b->bad++;
            code = fail_bad ? SLM_EXIT_ERROR : SLM_EXIT_OK;
            continue;
        }
        char *id = strdup(json_string_value(idv));
        if (skipping) {
            skipping = strcmp(id, resume) != 0;
        } else if (id) {
            rc = route_one(b, req, id);
            if (rc != SLM_OK && rc != SLM_E_ABORTED) {
                slm_cli_error(CMD, "cannot write %s: %s", out_path, slm_strerror(rc));
                code = SLM_EXIT_ERROR;
            }
        }
        free(id);
        json_decref(req);
    }
    slm_cli_progress_finish(&prog);
    if (skipping && code == SLM_EXIT_OK) {
        slm_cli_error(CMD, "%s ends with id '%s', which is not in %s: not resuming", out_path,
                      resume, in_path);
        code = SLM_EXIT_ERROR;
    }
    free(line);
    free(resume);
    fclose(in);
    if (fclose(b->out) != 0 && code == SLM_EXIT_OK) {
        slm_cli_error(CMD, "cannot write %s", out_path);
        code = SLM_EXIT_ERROR;
    }
    if (slm_cli_interrupted) {
        return SLM_EXIT_INTERRUPTED;
    }
    fprintf(stderr,
            "route: %zu answered (%zu escalated, %zu local_fallback), %zu failed, %zu bad lines\n",
            b->ok, b->escalated, b->fallback, b->failed, b->bad);
    return code;
}

/* ---------------------------------------------------------------- calibrate */

struct calib_args {
    const char *router, *data, *route, *out, *svg;
    double target, cloud_accuracy, confidence;
    long long limit;
};

struct calib_ui {
    struct slm_cli_progress bar;
    size_t total; /* lines in the data file */
};

static void calib_progress(size_t lines, void *user) {
    struct calib_ui *ui = user;
    slm_cli_progress_update(&ui->bar, "calibrate", lines, ui->total);
}

static void calib_note(const char *line, void *user) {
    struct calib_ui *ui = user;
    slm_cli_progress_finish(&ui->bar);
    slm_cli_error(CMD, "%s", line);
}

/* Writes the thresholds file and the chart the flags ask for. */
static int calib_write(const struct calib_args *a, const struct slm_router_config *cfg,
                       const struct slm_router_route *route, const struct slm_router_calib *c) {
    int code = SLM_EXIT_OK;
    char out[4096];
    if (a->out) {
        snprintf(out, sizeof(out), "%s", a->out);
    } else {
        slm_router_thresholds_path(cfg, out, sizeof(out));
    }
    char comment[512];
    snprintf(comment, sizeof(comment),
             "written by slm route calibrate: target accuracy %.4f on %zu rows of %s", a->target,
             c->n, a->data);
    struct slm_err err = {0};
    if (slm_router_write_thresholds(out, route->name, c->key, c->threshold, comment, &err) !=
        SLM_OK) {
        code = slm_cli_fail(CMD, err.code, &err);
    } else {
        printf("wrote %s%s\n", out,
               cfg->include_path ? "" : " (add `include: thresholds.yaml` to router.yaml)");
    }
    if (a->svg) {
        struct slm_buf svg = {0};
        int rc = slm_router_calib_svg(c, &svg);
        if (rc == SLM_OK) {
            rc = slm_file_write_atomic(a->svg, svg.ptr, svg.len, &err);
        }
        slm_buf_free(&svg);
        if (rc != SLM_OK) {
            slm_cli_error(CMD, "cannot write %s", a->svg);
            code = SLM_EXIT_ERROR;
        }
    }
    return code;
}

static int calib_run(struct slm_router *r, const struct calib_args *a,
                     const struct slm_router_route *route) {
    struct calib_ui ui = {.total = count_lines(a->data)};
    slm_cli_progress_init(&ui.bar, slm_cli_stderr_tty(), SLM_CLI_PROGRESS_ITEMS);
    struct slm_router_calib_params cp = slm_router_calib_params_default();
    cp.cloud_accuracy = a->cloud_accuracy;
    cp.target_accuracy = a->target;
    cp.confidence = a->confidence;
    cp.limit = a->limit > 0 ? (size_t)a->limit : 0;
    cp.cancel = &slm_cli_interrupted;
    cp.progress = calib_progress;
    cp.note = calib_note;
    cp.user = &ui;
    struct slm_router_calib c;
    struct slm_err err = {0};
    int rc = slm_router_calibrate(r, route->name, a->data, &cp, &c, &err);
    slm_cli_progress_finish(&ui.bar);
    if (rc == SLM_E_ABORTED) {
        return SLM_EXIT_INTERRUPTED;
    }
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    struct slm_buf report = {0};
    int code = SLM_EXIT_OK;
    if (slm_router_calib_report(&c, &report) == SLM_OK) {
        fputs(slm_buf_cstr(&report), stdout);
        code = calib_write(a, slm_router_get_config(r), route, &c);
    } else {
        slm_cli_error(CMD, "out of memory");
        code = SLM_EXIT_ERROR;
    }
    slm_buf_free(&report);
    slm_router_calib_free(&c);
    return code;
}

static int calibrate(int argc, char **argv) {
    struct calib_args a = {.cloud_accuracy = 0.92, .target = NAN, .confidence = 0.95};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (slm_cli_is_help(f)) {
            usage();
            return SLM_EXIT_OK;
        }
        if (f[0] != '-') {
            slm_cli_error(CMD, "unexpected argument '%s' (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            slm_cli_error(CMD, "%s needs a value (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(f, "--router") == 0) {
            a.router = v;
        } else if (strcmp(f, "--data") == 0) {
            a.data = v;
        } else if (strcmp(f, "--route") == 0) {
            a.route = v;
        } else if (strcmp(f, "--out") == 0) {
            a.out = v;
        } else if (strcmp(f, "--svg") == 0) {
            a.svg = v;
        } else if (strcmp(f, "--target-accuracy") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1, &a.target);
        } else if (strcmp(f, "--cloud-accuracy") == 0) {
            ok = slm_cli_float(CMD, f, v, 0, 1, &a.cloud_accuracy);
        } else if (strcmp(f, "--confidence") == 0) {
            ok = slm_cli_float(CMD, f, v, 0.5, 0.9999, &a.confidence);
        } else if (strcmp(f, "--limit") == 0) {
            ok = slm_cli_int(CMD, f, v, 1, 1000000000, &a.limit);
        } else {
            slm_cli_error(CMD, "unknown option '%s' (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        }
        if (!ok) {
            return SLM_EXIT_USAGE;
        }
    }
    if (!a.router || !a.data || isnan(a.target)) {
        slm_cli_error(CMD, "calibrate needs --router, --data and --target-accuracy");
        return SLM_EXIT_USAGE;
    }
    struct slm_router_params p = slm_router_params_default();
    struct slm_router *r = NULL;
    struct slm_err err = {0};
    int rc = slm_router_load(a.router, &p, &r, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    const struct slm_router_config *cfg = slm_router_get_config(r);
    const struct slm_router_route *route =
        a.route ? slm_router_config_route(cfg, a.route) : &cfg->routes[0];
    int code = SLM_EXIT_OK;
    if (!route) {
        slm_cli_error(CMD, "no route named '%s' in %s", a.route, a.router);
        code = SLM_EXIT_NOT_FOUND;
    } else if (route->n_escalate == 0) {
        slm_cli_error(CMD, "route '%s' has no upstream to escalate to", route->name);
        code = SLM_EXIT_USAGE;
    }
    if (code == SLM_EXIT_OK) {
        slm_cli_trap_signals();
        code = calib_run(r, &a, route);
    }
    slm_router_free(r);
    return code;
}

/* ---------------------------------------------------------------- entry */

static int run(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "calibrate") == 0) {
        return calibrate(argc - 1, argv + 1);
    }
    const char *router = NULL, *in = NULL, *out = NULL;
    bool fail_bad = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (slm_cli_is_help(f)) {
            usage();
            return SLM_EXIT_OK;
        }
        bool has_val = i + 1 < argc;
        if ((strcmp(f, "--router") == 0 || strcmp(f, "-o") == 0 || strcmp(f, "--output") == 0 ||
             strcmp(f, "--on-error") == 0) &&
            !has_val) {
            slm_cli_error(CMD, "%s needs a value", f);
            return SLM_EXIT_USAGE;
        }
        if (strcmp(f, "--router") == 0) {
            router = argv[++i];
        } else if (strcmp(f, "-o") == 0 || strcmp(f, "--output") == 0) {
            out = argv[++i];
        } else if (strcmp(f, "--on-error") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "skip") != 0 && strcmp(v, "fail") != 0) {
                slm_cli_error(CMD, "--on-error expects skip or fail, got '%s'", v);
                return SLM_EXIT_USAGE;
            }
            fail_bad = v[0] == 'f';
        } else if (f[0] == '-' && f[1] != '\0') {
            slm_cli_error(CMD, "unknown option '%s' (see slm route --help)", f);
            return SLM_EXIT_USAGE;
        } else if (!in) {
            in = f;
        } else {
            slm_cli_error(CMD, "unexpected argument '%s'", f);
            return SLM_EXIT_USAGE;
        }
    }
    if (!router || !in || !out) {
        slm_cli_error(CMD, "needs --router ROUTER.yaml IN.jsonl -o OUT.jsonl (see --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_router_params p = slm_router_params_default();
    struct batch b;
    memset(&b, 0, sizeof(b));
    struct slm_err err = {0};
    int rc = slm_router_load(router, &p, &b.r, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    slm_cli_trap_signals();
    int code = batch_run(&b, in, out, fail_bad);
    if (slm_cli_interrupted) {
        slm_router_shutdown(b.r); /* stopped: shadow calls still running are not waited for */
    }
    slm_router_free(b.r);
    return code;
}

const struct slm_cli_command slm_cli_cmd_route = {
    "route", "Answer a JSONL batch through the small-first router, or calibrate it", run, 58};
