/*
 * tune/scorer.c - the tune scorer: a model and an optional adapter loaded from
 * paths, and the engine's scorer over them (slm_tune_scorer_*), for `slm tune
 * eval`. All llama.cpp calls go through the engine.
 */
#include <stdlib.h>

#include "slm/engine.h"
#include "slm/score.h"
#include "tune/internal.h"

/* A thin owner of what the engine scorer borrows: the model and the adapter
 * it loads from paths. */
struct slm_tune_scorer {
    struct slm_model *model;
    struct slm_adapter *ad;
    struct slm_scorer *sc;
};

int slm_tune_scorer_init(const char *model, const char *adapter, uint32_t n_ctx,
                         uint32_t n_candidates, int32_t n_threads, struct slm_tune_scorer **out,
                         struct slm_err *err) {
    struct slm_tune_scorer *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_model_params mp = slm_model_params_default();
    mp.n_gpu_layers = 0;
    int rc = slm_model_load(model, &mp, &s->model, err);
    if (rc == SLM_OK && adapter) {
        rc = slm_adapter_load(s->model, adapter, &s->ad, err);
    }
    if (rc == SLM_OK) {
        float one = 1.0f;
        struct slm_scorer_params sp = slm_scorer_params_default();
        sp.n_ctx = n_ctx < 64 ? 64 : n_ctx;
        sp.max_candidates = n_candidates ? n_candidates : 1;
        struct slm_model_info mi;
        slm_model_get_info(s->model, &mi);
        sp.n_threads = slm__tune_threads(mi.n_params, n_threads);
        rc = slm_scorer_init_params(s->model, &s->ad, &one, s->ad ? 1 : 0, &sp, &s->sc, err);
    }
    if (rc != SLM_OK) {
        slm_tune_scorer_free(s);
        return rc;
    }
    *out = s;
    return SLM_OK;
}

void slm_tune_scorer_free(struct slm_tune_scorer *s) {
    if (!s) {
        return;
    }
    slm_scorer_free(s->sc);
    slm_adapter_free(s->ad);
    slm_model_free(s->model);
    free(s);
}

int slm_tune_scorer_score(struct slm_tune_scorer *s, const int32_t *prompt, size_t n_prompt,
                          const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                          float *scores, struct slm_err *err) {
    return slm_scorer_score(s->sc, prompt, n_prompt, cand, cand_len, n_cand, scores, err);
}

int slm_tune_scorer_best(struct slm_tune_scorer *s, const int32_t *prompt, size_t n_prompt,
                         const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                         double max_rest, size_t *best, float *scores, bool *exact,
                         struct slm_err *err) {
    struct slm_scorer_search how = slm_scorer_search_default();
    how.max_rest = max_rest;
    return slm_scorer_best(s->sc, prompt, n_prompt, cand, cand_len, n_cand, &how, best, scores,
                           exact, err);
}
