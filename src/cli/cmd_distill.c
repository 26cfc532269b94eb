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
           "Documents (instead of PROMPTS):\n"
           "  --docs DIR            read the text/Markdown files below DIR, cut them into\n"
           "                        chunks at headings and paragraphs, and ask for grounded\n"
           "                        question/answer pairs per chunk; each row records its\n"
           "                        source file, chunk number and heading path\n"
           "  --pairs K             pairs asked per chunk (default 3)\n"
           "  --docs-glob PATTERN   file names to read (repeatable; default *.md, *.markdown,\n"
           "                        *.txt, *.rst, *.org)\n"
           "  --docs-max-bytes N    skip larger files (default 1048576)\n"
           "  --chunk-bytes N       chunk size (default 2000)\n"
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
    struct slm_contract_docs_params docs;
    const char *globs[32];
    long long pairs;
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

/* --docs: the chunks are the rows; the built-in template unless --template names one; the
 * answer's JSON shape is sent as response_format. */
static int open_docs(struct distill_run *r) {
    struct slm_err err = {0};
    size_t skipped = 0;
    json_t *rows = NULL;
    int rc = slm_contract_docs_read(&r->docs, &rows, &skipped, &err);
    if (rc == SLM_OK && !r->o.template_path) {
        rc = slm_liquid_parse("docs template", SLM_CONTRACT_DOCS_TEMPLATE,
                              strlen(SLM_CONTRACT_DOCS_TEMPLATE), NULL, &r->o.tmpl, &err);
    }
    size_t n = json_array_size(rows);
    r->o.rows = rc == SLM_OK ? calloc(n + 1, sizeof(*r->o.rows)) : NULL;
    if (rc == SLM_OK && !r->o.rows) {
        rc = slm_err_set(&err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        r->o.rows[i] = json_incref(json_array_get(rows, i));
    }
    r->o.n_rows = rc == SLM_OK ? n : 0;
    json_decref(rows);
    if (rc != SLM_OK) {
        return slm_cli_contractor_fail(CMD, rc, &err);
    }
    r->dp.pairs = (int)r->pairs;
    json_t *schema = slm_contract_pairs_schema();
    json_object_set_new(r->o.fields, "response_format",
                        json_pack("{s:s, s:{s:s, s:o, s:b}}", "type", "json_schema", "json_schema",
                                  "name", "pairs", "schema", schema, "strict", 1));
    fprintf(stderr, "%s: %zu chunks from %s%s\n", CMD, n, r->docs.dir,
            skipped ? " (some files skipped: too large or not text)" : "");
    return SLM_EXIT_OK;
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
        } else if (strcmp(a, "--docs") == 0 && i + 1 < argc) {
            r->docs.dir = argv[++i];
        } else if (strcmp(a, "--docs-glob") == 0 && i + 1 < argc) {
            if (r->docs.n_globs == SLM_ARRAY_LEN(r->globs)) {
                slm_cli_error(CMD, "--docs-glob: at most %zu patterns", SLM_ARRAY_LEN(r->globs));
                return SLM_EXIT_USAGE;
            }
            r->globs[r->docs.n_globs++] = argv[++i];
            r->docs.globs = r->globs;
        } else if ((strcmp(a, "--pairs") == 0 || strcmp(a, "--docs-max-bytes") == 0 ||
                    strcmp(a, "--chunk-bytes") == 0) &&
                   i + 1 < argc) {
            long long hi = a[2] == 'p' ? 50 : (1LL << 30);
            if (!slm_cli_int(CMD, a, argv[++i], a[2] == 'c' ? 64 : 1, hi, &n)) {
                return SLM_EXIT_USAGE;
            }
            if (a[2] == 'p') {
                r->pairs = n;
            } else if (a[2] == 'c') {
                r->docs.max_chunk_bytes = (size_t)n;
            } else {
                r->docs.max_file_bytes = (size_t)n;
            }
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
    if (!r->o.input == !r->docs.dir) {
        slm_cli_error(CMD, "expects PROMPTS, a CSV or JSONL file, or --docs DIR (one; see slm "
                           "distill --help)");
        return SLM_EXIT_USAGE;
    }
    return SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    struct distill_run r;
    memset(&r, 0, sizeof(r));
    slm_cli_contractor_init(&r.o, CMD);
    r.pairs = 3;
    int code = parse(argc, argv, &r);
    if (code == SLM_EXIT_OK && !r.o.max_tokens_set) {
        json_object_set_new(r.o.fields, "max_tokens", json_integer(1024));
    }
    if (code == SLM_EXIT_OK && r.docs.dir) {
        code = open_docs(&r);
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
        if (r.docs.dir) {
            printf("chunks %zu, pairs kept %zu, %s\n", done, r.kept, calls);
        } else {
            printf("prompts %zu, answers kept %zu, dropped %zu, %s\n", done, r.kept, asked - r.kept,
                   calls);
        }
    }
    slm_cli_contractor_free(&r.o);
    slm_contract_labels_free(&r.labels);
    json_decref(r.schema);
    return code < 0 ? SLM_EXIT_OK : code;
}

const struct slm_cli_command slm_cli_cmd_distill = {
    "distill", "Have a teacher model write training completions (cost cap, cache)", run, 37};
