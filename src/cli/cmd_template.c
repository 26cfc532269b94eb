/*
 * cli/cmd_template.c - `slm template render FILE --vars JSON|@file` and
 * `slm template check FILE`: render a Liquid prompt template, or check that
 * it parses (with its partials). The language is in docs/templates.md.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/json.h"
#include "slm/liquid.h"

#define CMD "template"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: slm template render FILE [--vars JSON|@FILE] [flags]\n"
            "       slm template check FILE [flags]\n"
            "\n"
            "Renders a Liquid template (FILE, or - for stdin) to stdout, or checks that it and\n"
            "the partials it includes parse. The language: docs/templates.md.\n"
            "\n"
            "Flags:\n"
            "  --vars JSON|@FILE      variables: a JSON object, or @file.json (@- for stdin)\n"
            "  --root DIR             folder for include/render partials (default: FILE's folder)\n"
            "  --mode strict|warn|lax error mode (default strict)\n"
            "  --max-output BYTES     output limit (default 16 MiB)\n"
            "  --max-steps N          render step limit (default 10,000,000)\n"
            "  --now UNIX_SECONDS     the time the date filter calls \"now\"\n"
            "\n"
            "Exit codes: 0 ok, 1 error (syntax, runtime, limit), 2 bad usage, 3 file not found.\n");
}

enum { OPT_VARS = 1000, OPT_ROOT, OPT_MODE, OPT_MAX_OUTPUT, OPT_MAX_STEPS, OPT_NOW };

static int load_vars(const char *arg, json_t **out, struct slm_err *err) {
    if (arg[0] == '@') {
        return slm_json_load_file(arg + 1, 0, out, err);
    }
    return slm_json_parse(arg, strlen(arg), "--vars", out, err);
}

static int run(int argc, char **argv) {
    if (argc < 2 || slm_cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SLM_EXIT_USAGE : SLM_EXIT_OK;
    }
    const char *sub = argv[1];
    bool render = strcmp(sub, "render") == 0;
    if (!render && strcmp(sub, "check") != 0) {
        slm_cli_error(CMD, "unknown subcommand '%s' (expected render or check)", sub);
        return SLM_EXIT_USAGE;
    }
    static const struct option opts[] = {
        {"vars", required_argument, NULL, OPT_VARS},
        {"root", required_argument, NULL, OPT_ROOT},
        {"mode", required_argument, NULL, OPT_MODE},
        {"max-output", required_argument, NULL, OPT_MAX_OUTPUT},
        {"max-steps", required_argument, NULL, OPT_MAX_STEPS},
        {"now", required_argument, NULL, OPT_NOW},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct slm_liquid_params p = slm_liquid_params_default();
    const char *vars_arg = NULL;
    long long n;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_VARS: vars_arg = optarg; break;
        case OPT_ROOT: p.root = optarg; break;
        case OPT_MODE:
            if (strcmp(optarg, "strict") == 0) {
                p.mode = SLM_LIQUID_STRICT;
            } else if (strcmp(optarg, "warn") == 0) {
                p.mode = SLM_LIQUID_WARN;
            } else if (strcmp(optarg, "lax") == 0) {
                p.mode = SLM_LIQUID_LAX;
            } else {
                slm_cli_error(CMD, "--mode expects strict, warn or lax, got '%s'", optarg);
                return SLM_EXIT_USAGE;
            }
            break;
        case OPT_MAX_OUTPUT:
            if (!slm_cli_int(CMD, "--max-output", optarg, 1, (long long)1 << 40, &n)) {
                return SLM_EXIT_USAGE;
            }
            p.max_output_bytes = (size_t)n;
            break;
        case OPT_MAX_STEPS:
            if (!slm_cli_int(CMD, "--max-steps", optarg, 1, (long long)1 << 50, &n)) {
                return SLM_EXIT_USAGE;
            }
            p.max_steps = (uint64_t)n;
            break;
        case OPT_NOW:
            if (!slm_cli_int(CMD, "--now", optarg, 1, (long long)1 << 40, &n)) {
                return SLM_EXIT_USAGE;
            }
            p.now = n;
            break;
        case 'h': usage(stdout); return SLM_EXIT_OK;
        default:
            slm_cli_error(CMD, "unknown flag or missing value (see slm template --help)");
            return SLM_EXIT_USAGE;
        }
    }
    int first = optind + 1;
    if (first >= argc) {
        slm_cli_error(CMD, "%s needs a template FILE", sub);
        return SLM_EXIT_USAGE;
    }
    if (first + 1 < argc) {
        slm_cli_error(CMD, "unexpected argument '%s'", argv[first + 1]);
        return SLM_EXIT_USAGE;
    }
    const char *file = argv[first];
    if (!render && vars_arg) {
        slm_cli_error(CMD, "check takes no --vars");
        return SLM_EXIT_USAGE;
    }
    struct slm_err err;
    slm_err_clear(&err);
    json_t *vars = NULL;
    if (vars_arg) {
        int rc = load_vars(vars_arg, &vars, &err);
        if (rc != SLM_OK) {
            return slm_cli_fail(CMD, rc, &err);
        }
        if (!json_is_object(vars)) {
            json_decref(vars);
            slm_cli_error(CMD, "--vars must be a JSON object");
            return SLM_EXIT_USAGE;
        }
    }
    struct slm_liquid_template *t = NULL;
    int rc = slm_liquid_parse_file(file, &p, &t, &err);
    if (rc != SLM_OK) {
        json_decref(vars);
        return slm_cli_fail(CMD, rc, &err);
    }
    for (size_t i = 0; i < slm_liquid_warning_count(t); i++) {
        fprintf(stderr, "slm template: warning: %s\n", slm_liquid_warning(t, i));
    }
    if (!render) {
        printf("%s: ok\n", file);
        slm_liquid_free(t);
        return SLM_EXIT_OK;
    }
    struct slm_buf out;
    slm_buf_init(&out, 0);
    rc = slm_liquid_render(t, vars, &out, &err);
    if (rc == SLM_OK) {
        fwrite(out.ptr ? out.ptr : "", 1, out.len, stdout);
        fflush(stdout);
    }
    slm_buf_free(&out);
    slm_liquid_free(t);
    json_decref(vars);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail(CMD, rc, &err);
}

const struct slm_cli_command slm_cli_cmd_template = {
    "template", "Render or check a Liquid prompt template", run, 40};
