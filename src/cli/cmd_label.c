/*
 * cli/cmd_label.c - `slm label DATA -o OUT.jsonl`: a cloud model labels unlabelled rows (CSV or
 * JSONL) into a dataset for `slm tune`, under a hard cost cap, through the call cache. The work
 * on a row is the eval module's (slm_contract_label_row); this file parses flags and prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/contractor.h"
#include "slm/json.h"

static const char *const CMD = "label";

static void usage(void) {
    printf("Usage: slm label DATA -o OUT.jsonl (--labels FILE | --json-schema FILE) [OPTIONS]\n"
           "\n"
           "Asks a cloud model to label every row of DATA (CSV with a header, or JSONL\n"
           "objects) and writes OUT.jsonl: each input row, in input order, plus the label\n"
           "field, ready for `slm data check` and `slm tune`. An answer outside the label set\n"
           "(or failing the schema) is asked again once with the error shown; then the row\n"
           "gets \"label\": null and \"label_error\". Answered calls are cached, so a re-run,\n"
           "or a run after Ctrl-C or kill -9, pays for nothing twice.\n"
           "\n"
           "Answer:\n"
           "  -o, --output FILE     the labelled rows (JSONL)\n"
           "  --labels FILE         allowed labels: a JSON array, or an object whose keys are\n"
           "                        the labels\n"
           "  --json-schema FILE    or: the answer is JSON valid against this schema (sent as\n"
           "                        response_format too)\n"
           "  --field NAME          output field (default label)\n"
           "  --votes K             ask K times (at --temperature, default 0.7) and keep the\n"
           "                        majority; writes \"agreement\"; no majority: null + error\n"
           "%s"
           "  -h, --help            this help\n"
           "\n"
           "Exit: 0 done, 1 error, 2 usage, 3 stopped at --max-cost (what is done is written).\n",
           SLM_CLI_CONTRACTOR_HELP);
}

struct label_run {
    struct slm_cli_contractor o;
    struct slm_contract_label_params lp;
    struct slm_contract_labels labels;
    json_t *schema;
    const char *field;
    size_t labelled, rejected, no_majority;
};

static int label_row(void *user, struct slm_contract *c, size_t i, json_t **out,
                     struct slm_err *err) {
    struct label_run *r = user;
    json_t *row = NULL;
    int rc = slm_contract_label_row(c, &r->lp, r->o.rows[i], &row, err);
    if (rc != SLM_OK) {
        return rc;
    }
    *out = json_array();
    if (!*out || json_array_append_new(*out, row) != 0) {
        json_decref(row);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return SLM_OK;
}

static void count_row(void *user, const json_t *out) {
    struct label_run *r = user;
    const json_t *row = json_array_get(out, 0);
    bool ok = !json_is_null(json_object_get(row, r->lp.field));
    r->labelled += ok;
    r->rejected += !ok;
}

/* The default system message: the label set or the schema, so the model knows the shape. */
static int default_system(struct label_run *r, struct slm_buf *b) {
    int rc = SLM_OK;
    if (r->labels.n) {
        rc |= slm_buf_puts(b, "Classify the input. Answer with exactly one of these labels and "
                              "nothing else:");
        for (size_t i = 0; i < r->labels.n; i++) {
            rc |= slm_buf_printf(b, "%s %s", i ? "," : "", r->labels.items[i]);
        }
    } else {
        char *s = json_dumps(r->schema, JSON_COMPACT);
        rc |= s ? slm_buf_printf(b, "Answer with JSON only, valid against this JSON Schema: %s", s)
                : SLM_E_NOMEM;
        free(s);
    }
    return rc;
}

static int load_shape(struct label_run *r, const char *labels_path, const char *schema_path) {
    struct slm_err err = {0};
    int rc = SLM_OK;
    if (!labels_path == !schema_path) {
        slm_cli_error(CMD, "name the answer's shape: --labels FILE or --json-schema FILE (one)");
        return SLM_EXIT_USAGE;
    }
    if (labels_path) {
        struct slm_buf text = {0};
        rc = slm_file_read(labels_path, (size_t)64 << 20, &text, &err);
        if (rc == SLM_OK) {
            rc = slm_contract_labels_parse(labels_path, slm_buf_cstr(&text), text.len, &r->labels,
                                           &err);
        }
        slm_buf_free(&text);
        r->lp.check.labels = &r->labels;
    } else {
        rc = slm_json_load_file(schema_path, (size_t)16 << 20, &r->schema, &err);
        r->lp.check.schema = r->schema;
        if (rc == SLM_OK) {
            json_object_set_new(r->o.fields, "response_format",
                                json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema",
                                          "json_schema", "name", "answer", "schema", r->schema,
                                          "strict", 1));
        }
    }
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_contractor_fail(CMD, rc, &err);
}

static int parse(int argc, char **argv, struct label_run *r, const char **labels,
                 const char **schema, long long *votes) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = slm_cli_contractor_flag(&r->o, argc, argv, &i);
        if (used < 0) {
            return SLM_EXIT_USAGE;
        } else if (used > 0) {
            continue;
        } else if (slm_cli_is_help(a)) {
            usage();
            return -1;
        } else if (strcmp(a, "--labels") == 0 && i + 1 < argc) {
            *labels = argv[++i];
        } else if (strcmp(a, "--json-schema") == 0 && i + 1 < argc) {
            *schema = argv[++i];
        } else if (strcmp(a, "--field") == 0 && i + 1 < argc) {
            r->field = argv[++i];
        } else if (strcmp(a, "--votes") == 0 && i + 1 < argc) {
            if (!slm_cli_int(CMD, a, argv[++i], 1, 99, votes)) {
                return SLM_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option or missing value '%s' (see slm label --help)", a);
            return SLM_EXIT_USAGE;
        } else if (!r->o.input) {
            r->o.input = a;
        } else {
            slm_cli_error(CMD, "one DATA file only (see slm label --help)");
            return SLM_EXIT_USAGE;
        }
    }
    if (!r->o.input) {
        slm_cli_error(CMD, "expects DATA, a CSV or JSONL file (see slm label --help)");
        return SLM_EXIT_USAGE;
    }
    return SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    struct label_run r;
    memset(&r, 0, sizeof(r));
    slm_cli_contractor_init(&r.o, CMD);
    const char *labels = NULL, *schema = NULL;
    long long votes = 1;
    struct slm_buf sys = {0};
    int code = parse(argc, argv, &r, &labels, &schema, &votes);
    if (code == SLM_EXIT_OK) {
        code = load_shape(&r, labels, schema);
    }
    if (code == SLM_EXIT_OK && !r.o.max_tokens_set) {
        json_object_set_new(r.o.fields, "max_tokens", json_integer(schema ? 1024 : 64));
    }
    if (code == SLM_EXIT_OK && !json_object_get(r.o.fields, "temperature") && votes <= 1) {
        json_object_set_new(r.o.fields, "temperature", json_real(0));
    }
    if (code == SLM_EXIT_OK && !r.o.system && default_system(&r, &sys) != SLM_OK) {
        code = slm_cli_contractor_fail(CMD, SLM_E_NOMEM, NULL);
    }
    if (code == SLM_EXIT_OK) {
        code = slm_cli_contractor_open(&r.o);
    }
    size_t done = 0;
    if (code == SLM_EXIT_OK) {
        const json_t *t = json_object_get(r.o.fields, "temperature");
        r.lp = (struct slm_contract_label_params){
            .ask = {r.o.tmpl, r.o.system ? r.o.system : slm_buf_cstr(&sys), r.o.fields},
            .check = r.lp.check,
            .field = r.field ? r.field : "label",
            .votes = (int)votes,
            .vote_temperature = json_number_value(t),
        };
        code = slm_cli_contractor_run(&r.o, label_row, &r, count_row, &done);
        char calls[160];
        slm_cli_contractor_calls(&r.o, calls, sizeof(calls));
        printf("rows %zu, labelled %zu, rejected %zu, %s\n", done, r.labelled, r.rejected, calls);
    }
    slm_buf_free(&sys);
    slm_cli_contractor_free(&r.o);
    slm_contract_labels_free(&r.labels);
    json_decref(r.schema);
    return code < 0 ? SLM_EXIT_OK : code;
}

const struct slm_cli_command slm_cli_cmd_label = {
    "label", "Label rows with a cloud model into a training set (cost cap, cache)", run, 36};
