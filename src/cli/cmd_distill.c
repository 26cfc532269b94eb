/*
 * cli/cmd_distill.c - `slm distill PROMPTS -o train.jsonl`: a teacher model writes the
 * completions that `slm tune` learns from, with the same cost cap, cache, concurrency and
 * progress as `slm label`. The work on a row is the eval module's (slm_contract_distill_row).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/contractor.h"
#include "slm/json.h"

static const char *const CMD = "distill";

static void usage(void) {
    printf("Usage: slm distill PROMPTS -o train.jsonl [OPTIONS]\n"
           "\n"
           "Asks a teacher model for answers to every row of PROMPTS (CSV with a header, or\n"
           "JSONL objects; the user message is --template rendered from the row, else its\n"
           "text, input or prompt field) and writes train.jsonl with one\n"
           "{\"prompt\", \"completion\"} row per kept answer (or {\"messages\"} with\n"
           "--messages), in input order, exactly as `slm tune` reads them.\n"
           "\n"
           "Answers:\n"
           "  -o, --output FILE     the training rows (JSONL)\n"
           "  --n K                 answers per prompt (default 1; K > 1 sends seed 1..K)\n"
           "  --check KIND:ARG      keep only answers that pass: schema:FILE (JSON valid\n"
           "                        against a JSON Schema), regex:PATTERN (a match found in\n"
           "                        the answer), labels:FILE (one of the labels); others\n"
           "                        are dropped and counted\n"
           "  --messages            write {\"messages\": [system?, user, assistant]} rows\n"
           "%s"
           "  -h, --help            this help\n"
           "\n"
           "Exit: 0 done, 1 error, 2 usage, 3 stopped at --max-cost (what is done is written).\n",
           SLM_CLI_CONTRACTOR_HELP);
}

struct distill_run {
    struct slm_cli_contractor o;
    struct slm_contract_distill_params dp;
    struct slm_contract_labels labels;
    json_t *schema;
    size_t kept, prompts;
};

static int distill_row(void *user, struct slm_contract *c, size_t i, json_t **out,
                       struct slm_err *err) {
    struct distill_run *r = user;
    return slm_contract_distill_row(c, &r->dp, r->o.rows[i], out, err);
}

static void count_row(void *user, const json_t *out) {
    struct distill_run *r = user;
    r->kept += json_array_size(out);
    r->prompts++;
}

static int load_check(struct distill_run *r, const char *spec) {
    struct slm_err err = {0};
    int rc = SLM_OK;
    const char *colon = strchr(spec, ':');
    const char *arg = colon ? colon + 1 : "";
    size_t kind = colon ? (size_t)(colon - spec) : 0;
    if (kind == 6 && strncmp(spec, "schema", 6) == 0) {
        rc = slm_json_load_file(arg, (size_t)16 << 20, &r->schema, &err);
        r->dp.check.schema = r->schema;
    } else if (kind == 5 && strncmp(spec, "regex", 5) == 0 && arg[0]) {
        r->dp.check.regex = arg;
    } else if (kind == 6 && strncmp(spec, "labels", 6) == 0) {
        struct slm_buf text = {0};
        rc = slm_file_read(arg, (size_t)64 << 20, &text, &err);
        if (rc == SLM_OK) {
            rc = slm_contract_labels_parse(arg, slm_buf_cstr(&text), text.len, &r->labels, &err);
        }
        slm_buf_free(&text);
        r->dp.check.labels = &r->labels;
    } else {
        slm_cli_error(CMD, "--check expects schema:FILE, regex:PATTERN or labels:FILE, got '%s'",
                      spec);
        return SLM_EXIT_USAGE;
    }
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_contractor_fail(CMD, rc, &err);
}

static int parse(int argc, char **argv, struct distill_run *r) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = slm_cli_contractor_flag(&r->o, argc, argv, &i);
        long long n;
        if (used < 0) {
            return SLM_EXIT_USAGE;
        } else if (used > 0) {
            continue;
        } else if (slm_cli_is_help(a)) {
            usage();
            return -1;
        } else if (strcmp(a, "--n") == 0 && i + 1 < argc) {
            if (!slm_cli_int(CMD, a, argv[++i], 1, 100, &n)) {
                return SLM_EXIT_USAGE;
            }
            r->dp.n = (int)n;
        } else if (strcmp(a, "--check") == 0 && i + 1 < argc) {
            int code = load_check(r, argv[++i]);
            if (code != SLM_EXIT_OK) {
                return code;
            }
        } else if (strcmp(a, "--messages") == 0) {
            r->dp.messages = true;
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option or missing value '%s' (see slm distill --help)", a);
            return SLM_EXIT_USAGE;
        } else if (!r->o.input) {
            r->o.input = a;
        } else {
            slm_cli_error(CMD, "one PROMPTS file only (see slm distill --help)");
            return SLM_EXIT_USAGE;
        }
    }
    if (!r->o.input) {
        slm_cli_error(CMD, "expects PROMPTS, a CSV or JSONL file (see slm distill --help)");
        return SLM_EXIT_USAGE;
    }
    return SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    struct distill_run r;
    memset(&r, 0, sizeof(r));
    slm_cli_contractor_init(&r.o, CMD);
    int code = parse(argc, argv, &r);
    if (code == SLM_EXIT_OK && !r.o.max_tokens_set) {
        json_object_set_new(r.o.fields, "max_tokens", json_integer(1024));
    }
    if (code == SLM_EXIT_OK) {
        code = slm_cli_contractor_open(&r.o);
    }
    size_t done = 0;
    if (code == SLM_EXIT_OK) {
        r.dp.ask = (struct slm_contract_ask){r.o.tmpl, r.o.system, r.o.fields};
        code = slm_cli_contractor_run(&r.o, distill_row, &r, count_row, &done);
        char calls[160];
        slm_cli_contractor_calls(&r.o, calls, sizeof(calls));
        size_t asked = r.prompts * (size_t)(r.dp.n > 0 ? r.dp.n : 1);
        printf("prompts %zu, answers kept %zu, dropped %zu, %s\n", done, r.kept, asked - r.kept,
               calls);
    }
    slm_cli_contractor_free(&r.o);
    slm_contract_labels_free(&r.labels);
    json_decref(r.schema);
    return code < 0 ? SLM_EXIT_OK : code;
}

const struct slm_cli_command slm_cli_cmd_distill = {
    "distill", "Have a teacher model write training completions (cost cap, cache)", run, 37};
