/*
 * score_bench.c - label scoring speed (slm/score.h) on a labelled file, and
 * whether the shared scoring picks the label that scoring each label alone
 * picks.
 *
 *   score_bench MODEL DATA.csv TEMPLATE FIELD [--labels categories.json]
 *               [--valid-hash FIELD:M] [--max N] [--threads T] [--every N]
 *               [--check] [--kv-f32] [--dump OUT.jsonl] [--search REST|top]
 *               [--rows R]
 *
 * Rows are rendered with TEMPLATE (Liquid, as `slm tune eval --template`);
 * FIELD holds the label. The label set is --labels (a JSON array of strings)
 * or the distinct values of FIELD; each label is tokenized as `slm tune eval`
 * does (no BOS, EOS appended). One scorer scores every label of every row in
 * file order; every N rows (--every, default 50) a line gives the time per
 * row of that block, so a cost that grows with the rows before it shows.
 * --check also scores each label on its own (one candidate per call) and
 * counts the rows whose chosen label differs, and the largest log-prob
 * difference. label_tokens is what scoring every label token by token
 * decodes after the prompt, decoded_per_row what the scorer decoded.
 * --dump writes one JSON line per row: the rendered prompt, the
 * true label and the label chosen ("prompt", "label", "chosen"), for a peer
 * to be asked the same prompts. The last line is "rows=N rows_per_s=R accuracy=A" plus, with
 * --check, "disagree=D max_diff=X".
 * --search finds the best label best first (slm_scorer_best) instead of
 * scoring every label: REST is its max_rest (a share of the mass, e.g. 1e-3;
 * "top" stops as soon as the best is known), --rows its rows per decode.
 * Then --check compares with scoring every label together (the chosen label,
 * and the exact log-probs), and the last line adds "decodes_per_row".
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm/engine.h"
#include "slm/score.h"
#include "slm/tune.h"

struct opts {
    const char *labels, *hash_field, *dump;
    uint32_t hash_mod;
    size_t max, every;
    int32_t threads;
    bool check, kv_f32, search;
    double max_rest;
    uint32_t rows;
};

struct labels {
    char **text;
    int32_t **tok;
    size_t *len;
    size_t n;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const struct slm_err *err) {
    fprintf(stderr, "score_bench: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static void add_label(struct labels *l, const char *s) {
    for (size_t k = 0; k < l->n; k++) {
        if (strcmp(l->text[k], s) == 0) {
            return;
        }
    }
    l->text = realloc(l->text, (l->n + 1) * sizeof(*l->text));
    if (!l->text || !(l->text[l->n] = strdup(s))) {
        die("labels", NULL);
    }
    l->n++;
}

static void read_labels(const struct opts *o, const struct slm_data_records *recs,
                        const struct slm_model *m, struct labels *l) {
    if (o->labels) {
        json_t *a = json_load_file(o->labels, 0, NULL);
        for (size_t k = 0; k < json_array_size(a); k++) {
            add_label(l, json_string_value(json_array_get(a, k)));
        }
        json_decref(a);
    } else {
        for (size_t i = 0; i < recs->n; i++) {
            add_label(l, recs->items[i].completion);
        }
    }
    l->tok = calloc(l->n, sizeof(*l->tok));
    l->len = calloc(l->n, sizeof(*l->len));
    int32_t eos = slm_model_eos(m);
    for (size_t k = 0; k < l->n; k++) {
        struct slm_err err;
        if (slm_tokenize_alloc(m, slm_str_c(l->text[k]), false, &l->tok[k], &l->len[k], 0, &err) !=
            SLM_OK) {
            die("tokenizing a label", &err);
        }
        if (eos >= 0) {
            l->tok[k] = realloc(l->tok[k], (l->len[k] + 1) * sizeof(int32_t));
            l->tok[k][l->len[k]++] = eos;
        }
    }
}

static size_t argmax(const float *v, size_t n) {
    size_t b = 0;
    for (size_t k = 1; k < n; k++) {
        b = v[k] > v[b] ? k : b;
    }
    return b;
}

static void parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.every = 50};
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--check") == 0) {
            o->check = true;
        } else if (strcmp(a, "--kv-f32") == 0) {
            o->kv_f32 = true;
        } else if (!v) {
            fprintf(stderr, "score_bench: %s needs a value\n", a);
            exit(2);
        } else if (strcmp(a, "--dump") == 0) {
            o->dump = argv[++i];
        } else if (strcmp(a, "--labels") == 0) {
            o->labels = argv[++i];
        } else if (strcmp(a, "--valid-hash") == 0) {
            char *colon = strchr(argv[++i], ':');
            o->hash_mod = colon ? (uint32_t)strtoul(colon + 1, NULL, 10) : 10;
            if (colon) {
                *colon = '\0';
            }
            o->hash_field = argv[i];
        } else if (strcmp(a, "--max") == 0) {
            o->max = (size_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--threads") == 0) {
            o->threads = (int32_t)strtol(argv[++i], NULL, 10);
        } else if (strcmp(a, "--search") == 0) {
            o->search = true;
            i++;
            o->max_rest = strcmp(argv[i], "top") == 0 ? HUGE_VAL : strtod(argv[i], NULL);
        } else if (strcmp(a, "--rows") == 0) {
            o->rows = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--every") == 0) {
            o->every = (size_t)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "score_bench: unknown option %s\n", a);
            exit(2);
        }
    }
    o->every = o->every ? o->every : 50;
}

/* Scores each label alone: the reference the shared scoring must agree with. */
static void score_alone(struct slm_scorer *sc, const int32_t *p, size_t np, const struct labels *l,
                        float *out) {
    for (size_t k = 0; k < l->n; k++) {
        struct slm_err err;
        const int32_t *c = l->tok[k];
        if (slm_scorer_score(sc, p, np, &c, &l->len[k], 1, &out[k], &err) != SLM_OK) {
            die("scoring one label", &err);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: score_bench MODEL DATA.csv TEMPLATE FIELD [--labels JSON] "
                        "[--valid-hash F:M] [--max N] [--threads T] [--every N] [--check] "
                        "[--kv-f32] [--dump OUT.jsonl]\n");
        return 2;
    }
    struct opts o;
    parse_args(argc, argv, &o);
    struct slm_err err;
    struct slm_data_read_params rp = slm_data_read_params_default();
    rp.prompt_template = argv[3];
    rp.completion_field = argv[4];
    struct slm_data_records recs = {0}, held = {0};
    if (slm_data_read(argv[2], &rp, &recs, &err) != SLM_OK) {
        die(argv[2], &err);
    }
    if (o.hash_field &&
        slm_data_split_hash(&recs, o.hash_field, o.hash_mod, &held, &err) != SLM_OK) {
        die("--valid-hash", &err);
    }
    struct slm_data_records *rows = o.hash_field ? &held : &recs;
    struct slm_model *m = NULL;
    if (slm_model_load(argv[1], NULL, &m, &err) != SLM_OK) {
        die(argv[1], &err);
    }
    struct labels l = {0};
    read_labels(&o, &recs, m, &l);
    struct slm_scorer_params sp = slm_scorer_params_default();
    sp.n_threads = o.threads;
    sp.kv_f32 = o.kv_f32;
    sp.max_candidates = (uint32_t)l.n;
    struct slm_scorer *sc = NULL;
    if (slm_scorer_init_params(m, NULL, NULL, 0, &sp, &sc, &err) != SLM_OK) {
        die("scorer", &err);
    }
    size_t n = o.max && o.max < rows->n ? o.max : rows->n, correct = 0, disagree = 0;
    float *lp = calloc(l.n, sizeof(float)), *ref = calloc(l.n, sizeof(float));
    bool *exact = calloc(l.n, sizeof(bool));
    struct slm_scorer_search how = slm_scorer_search_default();
    how.max_rest = o.max_rest;
    how.max_rows = o.rows;
    double busy = 0, block = 0, max_diff = 0;
    size_t rows_decoded = 0, label_rows = 0, decodes = 0;
    for (size_t k = 0; k < l.n; k++) {
        label_rows += l.len[k] - 1;
    }
    FILE *dump = o.dump ? fopen(o.dump, "w") : NULL;
    if (o.dump && !dump) {
        die(o.dump, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        int32_t *p = NULL;
        size_t np = 0;
        const struct slm_data_record *r = &rows->items[i];
        if (slm_tokenize_alloc(m, slm_str_c(r->prompt), true, &p, &np, 0, &err) != SLM_OK) {
            die("tokenizing a prompt", &err);
        }
        double t0 = now_s();
        size_t best = 0;
        int rc = o.search ? slm_scorer_best(sc, p, np, (const int32_t *const *)l.tok, l.len, l.n,
                                            &how, &best, lp, exact, &err)
                          : slm_scorer_score(sc, p, np, (const int32_t *const *)l.tok, l.len, l.n,
                                             lp, &err);
        if (rc != SLM_OK) {
            die("scoring", &err);
        }
        double dt = now_s() - t0;
        struct slm_scorer_stats st;
        slm_scorer_last_stats(sc, &st);
        rows_decoded += st.n_cand_decoded;
        decodes += st.n_chunks;
        busy += dt;
        block += dt;
        best = o.search ? best : argmax(lp, l.n);
        correct += strcmp(l.text[best], r->completion) == 0;
        if (dump) {
            json_t *j = json_pack("{s:s, s:s, s:s}", "prompt", r->prompt, "label", r->completion,
                                  "chosen", l.text[best]);
            json_dumpf(j, dump, JSON_COMPACT);
            fputc('\n', dump);
            json_decref(j);
        }
        if (o.check && o.search) {
            if (slm_scorer_score(sc, p, np, (const int32_t *const *)l.tok, l.len, l.n, ref, &err) !=
                SLM_OK) {
                die("scoring every label", &err);
            }
            disagree += argmax(ref, l.n) != best;
            for (size_t k = 0; k < l.n; k++) {
                max_diff =
                    exact[k] ? fmax(max_diff, fabs((double)lp[k] - (double)ref[k])) : max_diff;
                if (!exact[k] && (double)ref[k] > (double)lp[k] + 1e-4) {
                    fprintf(stderr, "score_bench: row %zu: label %zu's bound %g is below %g\n", i,
                            k, (double)lp[k], (double)ref[k]);
                    disagree++;
                }
            }
        } else if (o.check) {
            score_alone(sc, p, np, &l, ref);
            disagree += argmax(ref, l.n) != best;
            for (size_t k = 0; k < l.n; k++) {
                max_diff = fmax(max_diff, fabs((double)lp[k] - (double)ref[k]));
            }
        }
        free(p);
        if ((i + 1) % o.every == 0 || i + 1 == n) {
            size_t in_block = (i % o.every) + 1;
            printf("rows %zu-%zu: %.3f ms/row\n", i + 2 - in_block, i + 1,
                   1e3 * block / (double)in_block);
            block = 0;
        }
    }
    printf("rows=%zu labels=%zu label_tokens=%zu decoded_per_row=%.1f rows_per_s=%.2f "
           "accuracy=%.4f",
           n, l.n, label_rows, n ? (double)rows_decoded / (double)n : 0.0,
           busy > 0 ? (double)n / busy : 0.0, n ? (double)correct / (double)n : 0.0);
    if (o.search) {
        printf(" decodes_per_row=%.2f", n ? (double)decodes / (double)n : 0.0);
    }
    if (o.check) {
        printf(" disagree=%zu max_diff=%.3g", disagree, max_diff);
    }
    printf("\n");
    if (dump) {
        fclose(dump);
    }
    free(lp);
    free(ref);
    free(exact);
    slm_scorer_free(sc);
    slm_model_free(m);
    slm_data_records_free(&recs);
    slm_data_records_free(&held);
    return 0;
}
