/*
 * test_tune_common.h - helpers shared by the tune module's unit tests: where
 * the models are, making a synthetic model with mkmodel, comparing logits.
 */
#ifndef SLM_TEST_TUNE_COMMON_H
#define SLM_TEST_TUNE_COMMON_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/base.h"
#include "slm/tune.h"
#include "test_stories.h"

/* A model to tune (test_stories.h: stories260K, else a random-weight one
 * made by mkmodel); the test skips when there is neither. */
static inline const char *tt_stories(void) {
    static char path[4096];
    test_model_path(path, sizeof(path));
    return path;
}

#define TT_NEED(path)                                                                              \
    do {                                                                                           \
        if (!(path)) {                                                                             \
            cr_skip_test("needs a model (tests/tools/test-model.sh)");                             \
        }                                                                                          \
    } while (0)

/* Makes a synthetic model with $SLM_TOOLS/mkmodel into `out`; false when
 * the tool or the vocabulary is not there. `args` is the shape. */
static inline bool tt_mkmodel(const char *args, const char *out) {
    const char *tools = getenv("SLM_TOOLS");
    const char *vocab = getenv("SLM_VOCAB_DIR");
    if (!tools || !vocab) {
        return false;
    }
    struct slm_buf tool = {0}, cmd = {0};
    bool ok = slm_buf_printf(&tool, "%s/mkmodel", tools) == SLM_OK &&
              access(slm_buf_cstr(&tool), X_OK) == 0 &&
              slm_buf_printf(&cmd, "SLM_VOCAB_DIR='%s' '%s' %s -o '%s' >/dev/null 2>&1", vocab,
                             slm_buf_cstr(&tool), args, out) == SLM_OK &&
              system(slm_buf_cstr(&cmd)) == 0 && access(out, R_OK) == 0;
    slm_buf_free(&tool);
    slm_buf_free(&cmd);
    return ok;
}

/* SLM_LOG=debug shows llama.cpp's messages in a failing test. */
static inline void tt_log_from_env(void) {
    enum slm_log_level l;
    const char *e = getenv("SLM_LOG");
    if (e && slm_log_level_parse(e, &l) == SLM_OK) {
        slm_log_set_level(l);
    }
}

static inline char *tt_tmpdir(void) {
    tt_log_from_env();
    char tmpl[] = "/tmp/slm-tune-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void tt_rmdir(char *dir) {
    if (dir) {
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", dir);
        }
        free(dir);
    }
}

/* Largest absolute difference and RMS of the difference. */
static inline double tt_max_diff(const float *a, const float *b, size_t n, double *rms) {
    double mx = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        mx = d > mx ? d : mx;
        s += d * d;
    }
    if (rms) {
        *rms = n ? sqrt(s / (double)n) : 0;
    }
    return mx;
}

static inline void tt_tokens(int32_t *t, size_t n, int32_t n_vocab, uint32_t seed) {
    uint32_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        t[i] = 1 + (int32_t)((s >> 8) % (uint32_t)(n_vocab - 1));
    }
}

#endif

/* Tokenized dataset from JSONL text, with the model's EOS after completions. */
static inline struct slm_dataset *tt_dataset(struct slm_tune_model *m, const char *jsonl,
                                             uint32_t n_ctx) {
    struct slm_err err = {0};
    struct slm_data_records recs;
    cr_assert_eq(slm_data_parse(jsonl, strlen(jsonl), "test.jsonl", NULL, &recs, &err), SLM_OK,
                 "%s", err.msg);
    struct slm_dataset_params dp = slm_dataset_params_default();
    dp.n_ctx = n_ctx;
    dp.eos = slm_tune_model_eos(m);
    struct slm_dataset *ds = NULL;
    cr_assert_eq(slm_dataset_init(&recs, slm_tune_model_vocab(m), &dp, &ds, &err), SLM_OK, "%s",
                 err.msg);
    slm_data_records_free(&recs);
    return ds;
}

/* A small learnable task for stories260K: a name decides the completion. */
static inline char *tt_colors_jsonl(int n, int offset) {
    static const char *names[] = {"Lily", "Tom", "Sue", "Ben", "Max", "Mia", "Sam", "Tim"};
    static const char *colors[] = {"red", "blue", "green", "big", "small", "happy", "sad", "old"};
    struct slm_buf b = {0};
    for (int i = 0; i < n; i++) {
        int k = (i + offset) % 8;
        if (slm_buf_printf(&b,
                           "{\"prompt\":\"%s had a ball. The ball was\",\"completion\":\" %s.\"}\n",
                           names[k], colors[k]) != SLM_OK) {
            break;
        }
    }
    return slm_buf_take(&b);
}
