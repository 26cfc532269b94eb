/*
 * cli/cmd_data.c - `slm data check FILE`: counts, token lengths against the
 * context, duplicates, contradictions, label and JSON checks, rows `slm label`
 * left without a label or with low agreement, overlap with a validation set
 * (inputs, document chunks and files); exits 1 when it finds errors; --fix OUT
 * writes the records it keeps and says what it dropped.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/engine.h"
#include "slm/store.h"
#include "slm/tune.h"

static const char *const CMD = "data";

static void usage(void) {
    printf("Usage: slm data check [OPTIONS] FILE\n"
           "\n"
           "Checks a training set (the formats `slm tune` reads) before you train on it:\n"
           "counts, exact and near duplicates, the same input with different outputs,\n"
           "outputs outside a label set, outputs that should be JSON and do not parse,\n"
           "overlap with a validation set and, with --model, a histogram of token lengths\n"
           "against the context. Exits 1 when it finds errors, 0 otherwise.\n"
           "\n"
           "Rows from `slm label`: a null label is an error (no label from the contractor;\n"
           "its <field>_error says why), an \"agreement\" below --min-agreement a warning.\n"
           "Rows from `slm distill --docs` in both FILE and --valid: the same \"source\" and\n"
           "\"chunk\" is an error even when the questions differ; the same source file a\n"
           "warning, one per file.\n"
           "\n"
           "Options:\n"
           "  --model MODEL          tokenize with this model (store name or .gguf)\n"
           "  --ctx-size N           context to compare lengths with (default 512)\n"
           "  --template FILE        Liquid prompt template for CSV/JSONL rows\n"
           "  --completion-field F   rows: field holding the completion (default completion)\n"
           "  --labels LIST|FILE     allowed outputs: a,b,c or a file (one per line, or a\n"
           "                         JSON array)\n"
           "  --json / --no-json     outputs must be JSON / never check (default: check when\n"
           "                         most outputs look like JSON)\n"
           "  --valid FILE           validation set: inputs and document chunks must not\n"
           "                         appear in both\n"
           "  --min-agreement X      votes: warn below this agreement, 0..1 (default 0.67:\n"
           "                         2 of 3 pass, 1 of 2 does not; 0 = off)\n"
           "  --fix OUT              write the records that pass to OUT (same format)\n"
           "  --show N               lines listed per finding (default 5)\n"
           "  -h, --help             this help\n");
}

struct data_cli {
    const char *file, *model, *template_path, *completion_field, *labels, *valid, *fix;
    long long ctx, show;
    double min_agreement;
    int json;
};

static int parse(struct data_cli *c, int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **str = NULL;
        if (slm_cli_is_help(a)) {
            usage();
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            c->json = 1;
            continue;
        } else if (strcmp(a, "--no-json") == 0) {
            c->json = -1;
            continue;
        } else if (strcmp(a, "--model") == 0) {
            str = &c->model;
        } else if (strcmp(a, "--template") == 0) {
            str = &c->template_path;
        } else if (strcmp(a, "--completion-field") == 0) {
            str = &c->completion_field;
        } else if (strcmp(a, "--labels") == 0) {
            str = &c->labels;
        } else if (strcmp(a, "--valid") == 0) {
            str = &c->valid;
        } else if (strcmp(a, "--fix") == 0) {
            str = &c->fix;
        } else if (strcmp(a, "--ctx-size") == 0 && i + 1 < argc) {
            if (!slm_cli_int(CMD, a, argv[++i], 1, 1 << 20, &c->ctx)) {
                return -1;
            }
            continue;
        } else if (strcmp(a, "--min-agreement") == 0 && i + 1 < argc) {
            if (!slm_cli_float(CMD, a, argv[++i], 0.0, 1.0, &c->min_agreement)) {
                return -1;
            }
            continue;
        } else if (strcmp(a, "--show") == 0 && i + 1 < argc) {
            if (!slm_cli_int(CMD, a, argv[++i], 0, 1000000, &c->show)) {
                return -1;
            }
            continue;
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option '%s' (see slm data check --help)", a);
            return -1;
        } else if (!c->file) {
            c->file = a;
            continue;
        } else {
            slm_cli_error(CMD, "too many arguments (see slm data check --help)");
            return -1;
        }
        if (i + 1 >= argc) {
            slm_cli_error(CMD, "%s needs a value", a);
            return -1;
        }
        *str = argv[++i];
    }
    if (!c->file) {
        slm_cli_error(CMD, "check expects FILE (see slm data check --help)");
        return -1;
    }
    return 0;
}

/* Labels from "a,b,c", a file with one per line, or a file with a JSON array. */
static int load_labels(const char *spec, char ***out, size_t *n, struct slm_err *err) {
    struct slm_buf b = {0};
    *out = NULL;
    *n = 0;
    if (slm_file_exists(spec)) {
        int rc = slm_file_read(spec, (size_t)16 << 20, &b, err);
        if (rc != SLM_OK) {
            return rc;
        }
    } else if (slm_buf_puts(&b, spec) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    json_t *arr = NULL;
    struct slm_str s = slm_str_trim(slm_buf_str(&b));
    if (s.len && s.ptr[0] == '[' && slm_json_parse(s.ptr, s.len, spec, &arr, err) != SLM_OK) {
        slm_buf_free(&b);
        return err->code;
    }
    size_t cap = arr ? json_array_size(arr) + 1 : s.len + 2;
    char **v = calloc(cap, sizeof(char *));
    if (!v) {
        slm_buf_free(&b);
        json_decref(arr);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (arr) {
        for (size_t i = 0; i < json_array_size(arr); i++) {
            if (json_is_string(json_array_get(arr, i))) {
                v[(*n)++] = strdup(json_string_value(json_array_get(arr, i)));
            }
        }
    } else {
        char sep = slm_file_exists(spec) ? '\n' : ',';
        size_t pos = 0;
        while (pos <= s.len) {
            size_t e = slm_str_find_char(s, sep, pos);
            e = e == SIZE_MAX ? s.len : e;
            struct slm_str item = slm_str_trim(slm_str_sub(s, pos, e - pos));
            if (item.len) {
                v[(*n)++] = slm_str_dup(item);
            }
            pos = e + 1;
        }
    }
    json_decref(arr);
    slm_buf_free(&b);
    *out = v;
    return SLM_OK;
}

static void print_lines(const struct slm_data_records *recs, const struct slm_data_check_report *r,
                        enum slm_data_issue_kind k, long long show,
                        const struct slm_data_records *valid) {
    size_t shown = 0;
    for (size_t i = 0; i < r->n_issues && (long long)shown < show; i++) {
        const struct slm_data_issue *is = &r->issues[i];
        if (is->kind != k) {
            continue;
        }
        const struct slm_data_record *rec = &recs->items[is->idx];
        switch (k) {
        case SLM_ISSUE_DUPLICATE:
        case SLM_ISSUE_NEAR_DUPLICATE:
            printf("    line %zu repeats line %zu\n", rec->line, recs->items[is->other].line);
            break;
        case SLM_ISSUE_CONTRADICTION:
            printf("    line %zu: '%.60s' -> '%.40s'\n", rec->line, rec->prompt, rec->completion);
            break;
        case SLM_ISSUE_IN_VALID:
            printf("    line %zu is line %zu of the validation set\n", rec->line,
                   valid ? valid->items[is->other].line : 0);
            break;
        case SLM_ISSUE_NO_LABEL:
            printf("    line %zu: %.100s\n", rec->line,
                   rec->label_error ? rec->label_error : "null, no error field says why");
            break;
        case SLM_ISSUE_LOW_AGREEMENT:
            printf("    line %zu: agreement %.2f -> '%.40s'\n", rec->line,
                   json_number_value(json_object_get(rec->row, "agreement")), rec->completion);
            break;
        case SLM_ISSUE_CHUNK_LEAK:
            printf("    line %zu: %s chunk %lld is line %zu of the validation set\n", rec->line,
                   json_string_value(json_object_get(rec->row, "source")),
                   (long long)json_integer_value(json_object_get(rec->row, "chunk")),
                   valid ? valid->items[is->other].line : 0);
            break;
        case SLM_ISSUE_SOURCE_IN_VALID:
            printf("    %s: %zu rows from line %zu, %zu validation rows from line %zu\n",
                   json_string_value(json_object_get(rec->row, "source")), is->n_here, rec->line,
                   is->n_there, valid ? valid->items[is->other].line : 0);
            break;
        default: printf("    line %zu: '%.60s'\n", rec->line, rec->completion); break;
        }
        shown++;
    }
    if (r->count[k] > shown) {
        printf("    ... and %zu more\n", r->count[k] - shown);
    }
}

static void print_report(const struct data_cli *c, const struct slm_data_records *recs,
                         const struct slm_data_check_report *r,
                         const struct slm_data_records *valid) {
    printf("%s: %zu records (%s%s), %zu distinct inputs, %zu distinct outputs\n", c->file, recs->n,
           slm_data_format_name(recs->format), recs->csv ? ", CSV" : "", r->distinct_inputs,
           r->distinct_outputs);
    if (r->have_lengths) {
        printf("token lengths: mean %.1f, max %zu, context %lld\n",
               r->n ? (double)r->sum_len / (double)r->n : 0.0, r->max_len, c->ctx);
        for (int b = 0; b < SLM_DATA_HIST_BUCKETS; b++) {
            if (!r->hist[b]) {
                continue;
            }
            size_t lim = (size_t)1 << (b + 4);
            int bar = (int)(40.0 * (double)r->hist[b] / (double)(r->n ? r->n : 1) + 0.5);
            char label[32];
            if (b == SLM_DATA_HIST_BUCKETS - 1) {
                snprintf(label, sizeof(label), "> %zu", lim / 2);
            } else {
                snprintf(label, sizeof(label), "<= %zu", lim);
            }
            printf("  %9s %8zu %-40.*s%s\n", label, r->hist[b], bar,
                   "########################################",
                   (long long)lim > c->ctx ? "  (past the context)" : "");
        }
    }
    for (int k = 0; k < SLM_ISSUE_COUNT; k++) {
        if (!r->count[k]) {
            continue;
        }
        printf("%s: %zu %s",
               slm_data_issue_is_error((enum slm_data_issue_kind)k) ? "error" : "warning",
               r->count[k], slm_data_issue_name((enum slm_data_issue_kind)k));
        if (k == SLM_ISSUE_LOW_AGREEMENT) {
            printf(" (below %.2f, --min-agreement)", c->min_agreement);
        }
        printf("\n");
        print_lines(recs, r, (enum slm_data_issue_kind)k, c->show, valid);
    }
    if (r->checked_json) {
        printf("outputs were checked as JSON\n");
    }
    printf("%zu errors, %zu warnings\n", r->n_errors, r->n_warnings);
}

static int check(int argc, char **argv) {
    struct data_cli c = {0};
    c.ctx = 512;
    c.show = 5;
    c.min_agreement = 0.67;
    int prc = parse(&c, argc, argv);
    if (prc != 0) {
        return prc > 0 ? SLM_EXIT_OK : SLM_EXIT_USAGE;
    }
    struct slm_err err = {0};
    struct slm_data_read_params rp = slm_data_read_params_default();
    rp.prompt_template = c.template_path;
    rp.completion_field = c.completion_field;
    rp.keep_unlabelled = true; /* reported as findings, not read errors */
    struct slm_data_records recs = {0}, valid = {0};
    struct slm_data_check_report rep = {0};
    struct slm_model *vocab = NULL;
    char **labels = NULL;
    size_t n_labels = 0;
    char model_path[PATH_MAX] = "";
    int rc = slm_data_read(c.file, &rp, &recs, &err);
    if (rc == SLM_OK && c.valid) {
        rc = slm_data_read(c.valid, &rp, &valid, &err);
    }
    if (rc == SLM_OK && c.labels) {
        rc = load_labels(c.labels, &labels, &n_labels, &err);
    }
    if (rc == SLM_OK && c.model) {
        struct slm_store *store = NULL;
        struct slm_manifest *m = NULL;
        if (slm_file_exists(c.model)) {
            snprintf(model_path, sizeof(model_path), "%s", c.model);
        } else if ((rc = slm_store_open(NULL, &store, &err)) == SLM_OK &&
                   (rc = slm_store_resolve(store, c.model, &m, &err)) == SLM_OK) {
            snprintf(model_path, sizeof(model_path), "%s", m->model_path);
        }
        slm_manifest_free(m);
        slm_store_close(store);
        struct slm_model_params mp = slm_model_params_default();
        mp.vocab_only = true;
        if (rc == SLM_OK) {
            rc = slm_model_load(model_path, &mp, &vocab, &err);
        }
    }
    if (rc == SLM_OK) {
        struct slm_data_check_params cp = {0};
        cp.vocab = vocab;
        cp.n_ctx = (uint32_t)c.ctx;
        cp.eos = vocab ? slm_tune_gguf_eos(model_path) : -1;
        cp.labels = (const char *const *)labels;
        cp.n_labels = n_labels;
        cp.json = c.json;
        cp.valid = c.valid ? &valid : NULL;
        cp.min_agreement = c.min_agreement > 0 ? c.min_agreement : -1;
        rc = slm_data_check(&recs, &cp, &rep, &err);
    }
    if (rc == SLM_OK) {
        print_report(&c, &recs, &rep, c.valid ? &valid : NULL);
        if (c.fix) {
            rc = slm_data_write_kept(c.fix, &recs, rep.drop, &err);
            if (rc == SLM_OK) {
                printf("wrote %s: kept %zu records, dropped %zu (duplicates after the first, "
                       "contradicting records outside a majority, non-labels, invalid JSON, "
                       "validation overlap and leaked chunks, empty outputs, rows without a "
                       "label)\n",
                       c.fix, recs.n - rep.n_dropped, rep.n_dropped);
            }
        }
    }
    bool errors = rc == SLM_OK && rep.n_errors > 0;
    slm_data_check_report_free(&rep);
    slm_data_records_free(&recs);
    slm_data_records_free(&valid);
    slm_model_free(vocab);
    for (size_t i = 0; i < n_labels; i++) {
        free(labels[i]);
    }
    free(labels);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    return errors ? SLM_EXIT_ERROR : SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    if (argc < 2 || slm_cli_is_help(argv[1])) {
        usage();
        return argc < 2 ? SLM_EXIT_USAGE : SLM_EXIT_OK;
    }
    if (strcmp(argv[1], "check") == 0) {
        return check(argc, argv);
    }
    slm_cli_error(CMD, "unknown subcommand '%s' (expected check)", argv[1]);
    return SLM_EXIT_USAGE;
}

const struct slm_cli_command slm_cli_cmd_data = {
    "data", "Check a training dataset (slm data check)", run, 39};
