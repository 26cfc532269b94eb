/*
 * label_bench.c - measures the label-set signal on banking77's dev split:
 * accuracy, AUROC and ECE (10 bins) of the chosen label's probability for
 * each short-label correction (none, prior, length).
 *
 *   label_bench MODEL train.csv categories.json [--adapter A] [--max N] [--threads T]
 *
 * Dev rows are DESIGN.md's: the first byte of sha256(text) divisible by 10.
 * The prompt is tests/data/tune/banking77.liquid rendered by hand
 * ("Customer: {text}\nIntent:"); the prior's empty prompt is the same with an
 * empty text. Prints a Markdown table.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm/engine.h"
#include "slm/score.h"
#include "slm/signals.h"

/* Reads one CSV field starting at *p (RFC 4180 quotes); advances past it. */
static void csv_field(const char **p, const char *end, struct slm_buf *out) {
    slm_buf_clear(out);
    const char *s = *p;
    int rc = SLM_OK;
    if (s < end && *s == '"') {
        for (s++; s < end; s++) {
            if (*s == '"' && s + 1 < end && s[1] == '"') {
                rc |= slm_buf_putc(out, '"');
                s++;
            } else if (*s == '"') {
                s++;
                break;
            } else {
                rc |= slm_buf_putc(out, *s);
            }
        }
    } else {
        for (; s < end && *s != ',' && *s != '\n' && *s != '\r'; s++) {
            rc |= slm_buf_putc(out, *s);
        }
    }
    if (rc != SLM_OK) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    *p = s;
}

struct row {
    char *text, *label;
};

static size_t read_dev(const char *path, struct row **out) {
    struct slm_buf f = {0}, a = {0}, b = {0};
    struct slm_err err;
    if (slm_file_read(path, 0, &f, &err) != SLM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    const char *p = f.ptr, *end = f.ptr + f.len;
    p = (const char *)memchr(p, '\n', f.len) + 1; /* header */
    size_t n = 0, cap = 0;
    struct row *rows = NULL;
    while (p < end) {
        csv_field(&p, end, &a);
        p += p < end && *p == ',';
        csv_field(&p, end, &b);
        while (p < end && (*p == '\r' || *p == '\n')) {
            p++;
        }
        uint8_t d[32];
        struct slm_sha256 h;
        slm_sha256_init(&h);
        slm_sha256_update(&h, a.ptr, a.len);
        slm_sha256_final(&h, d);
        if (d[0] % 10 != 0 || a.len == 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            rows = realloc(rows, cap * sizeof(*rows));
        }
        rows[n].text = slm_buf_take(&a);
        rows[n].label = slm_buf_take(&b);
        n++;
    }
    slm_buf_free(&f);
    slm_buf_free(&a);
    slm_buf_free(&b);
    *out = rows;
    return n;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: label_bench MODEL train.csv categories.json [--adapter A] "
                        "[--max N] [--threads T] [--no-eos] [--kv-f32]\n");
        return 2;
    }
    const char *adapter = NULL;
    size_t max = 0;
    int32_t threads = 0;
    bool eos = true, kv_f32 = false;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--adapter") == 0 && i + 1 < argc) {
            adapter = argv[++i];
        } else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc) {
            max = (size_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = (int32_t)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--kv-f32") == 0) {
            kv_f32 = true;
        } else if (strcmp(argv[i], "--no-eos") == 0) {
            eos = false;
        }
    }
    struct slm_err err;
    struct slm_model *model = NULL;
    struct slm_adapter *ad = NULL;
    struct slm_scorer *sc = NULL;
    if (slm_model_load(argv[1], NULL, &model, &err) != SLM_OK ||
        (adapter && slm_adapter_load(model, adapter, &ad, &err) != SLM_OK)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    json_t *cats = json_load_file(argv[3], 0, NULL);
    size_t nl = json_array_size(cats);
    const char **labels = calloc(nl, sizeof(*labels));
    for (size_t k = 0; k < nl; k++) {
        labels[k] = json_string_value(json_array_get(cats, k));
    }
    struct row *rows;
    size_t n = read_dev(argv[2], &rows);
    n = max && max < n ? max : n;
    float one = 1.0f;
    struct slm_scorer_params sp = slm_scorer_params_default();
    sp.n_ctx = 4096;
    sp.max_candidates = (uint32_t)nl;
    sp.n_threads = threads;
    sp.kv_f32 = kv_f32;
    if (slm_scorer_init_params(model, &ad, &one, ad ? 1 : 0, &sp, &sc, &err) != SLM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    enum slm_label_correction corr[3] = {SLM_LABEL_CORR_NONE, SLM_LABEL_CORR_PRIOR,
                                         SLM_LABEL_CORR_LENGTH};
    struct slm_label_set *ls[3];
    double *conf[3];
    bool *ok[3];
    size_t *picks[3];
    for (int c = 0; c < 3; c++) {
        struct slm_label_set_params lp = slm_label_set_params_default();
        lp.correction = corr[c];
        lp.add_eos = eos;
        if (slm_label_set_init(model, labels, nl, &lp, &ls[c], &err) != SLM_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        conf[c] = calloc(n, sizeof(double));
        ok[c] = calloc(n, sizeof(bool));
        picks[c] = calloc(nl, sizeof(size_t));
    }
    struct slm_buf prompt = {0};
    struct slm_str empty = SLM_STR("Customer: \nIntent:");
    for (size_t i = 0; i < n; i++) {
        slm_buf_clear(&prompt);
        if (slm_buf_printf(&prompt, "Customer: %s\nIntent:", rows[i].text) != SLM_OK) {
            return 1;
        }
        for (int c = 0; c < 3; c++) {
            struct slm_label_result r;
            if (slm_label_set_score(ls[c], sc, slm_buf_str(&prompt), empty, &r, &err) != SLM_OK) {
                fprintf(stderr, "row %zu: %s\n", i, err.msg);
                return 1;
            }
            conf[c][i] = r.prob;
            ok[c][i] = strcmp(labels[r.best], rows[i].label) == 0;
            picks[c][r.best]++;
        }
    }
    printf("| correction | n | accuracy | AUROC | ECE (10 bins) | mean prob | distinct picks | "
           "most picked (share) |\n|---|---|---|---|---|---|---|---|\n");
    for (int c = 0; c < 3; c++) {
        size_t correct = 0, distinct = 0, top = 0;
        double mean = 0;
        for (size_t i = 0; i < n; i++) {
            correct += ok[c][i];
            mean += conf[c][i] / (double)n;
        }
        for (size_t k = 0; k < nl; k++) {
            distinct += picks[c][k] > 0;
            top = picks[c][k] > picks[c][top] ? k : top;
        }
        printf("| %s | %zu | %.2f%% | %.3f | %.3f | %.3f | %zu | %s (%.0f%%) |\n",
               slm_label_correction_name(corr[c]), n, 100.0 * (double)correct / (double)n,
               slm_calib_auroc(conf[c], ok[c], n), slm_calib_ece(conf[c], ok[c], n, 10), mean,
               distinct, labels[top], 100.0 * (double)picks[c][top] / (double)n);
    }
    for (int c = 0; c < 3; c++) {
        slm_label_set_free(ls[c]);
        free(conf[c]);
        free(ok[c]);
        free(picks[c]);
    }
    for (size_t i = 0; i < n; i++) {
        free(rows[i].text);
        free(rows[i].label);
    }
    free(rows);
    free(labels);
    slm_buf_free(&prompt);
    json_decref(cats);
    slm_scorer_free(sc);
    slm_adapter_free(ad);
    slm_model_free(model);
    return 0;
}
