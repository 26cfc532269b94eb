/*
 * test_tune_fuse.c - a fused model computes what base + adapter computes in
 * libllama: exactly for F32 output, within quantization error for F16 and
 * Q8_0; and fuse refuses adapters for another model.
 */
#include "test_llama_ref.h"
#include "test_tune_common.h"

#include "tune/train_internal.h"

/* Writes an adapter with random (non-zero) A and B for stories260K. */
static void make_adapter(struct slm_tune_model *m, const char *path) {
    struct slm_err err = {0};
    struct slm_dataset *ds = tt_dataset(m, "{\"prompt\":\"a\",\"completion\":\" b\"}\n", 32);
    struct slm_tune_params p = slm_tune_params_default();
    p.rank = 4;
    p.n_ctx = 32;
    p.n_threads = 1;
    struct slm_trainer *tr = NULL;
    cr_assert_eq(slm_trainer_init(m, ds, NULL, &p, &tr, &err), SLM_OK, "%s", err.msg);
    uint64_t s = 9;
    for (size_t i = 0; i < tr->n_params; i++) {
        int64_t n = ggml_nelements(tr->params[i]);
        float *v = malloc((size_t)n * sizeof(float));
        for (int64_t k = 0; k < n; k++) {
            v[k] = (float)(2 * slm__rng_unit(&s) - 1) * 0.1f;
        }
        ggml_backend_tensor_set(tr->params[i], v, 0, ggml_nbytes(tr->params[i]));
        free(v);
    }
    cr_assert_eq(slm_trainer_save(tr, path, &err), SLM_OK, "%s", err.msg);
    slm_trainer_free(tr);
    slm_dataset_free(ds);
}

static size_t argmax_agree(const float *a, const float *b, size_t n_tok, size_t n_vocab) {
    size_t agree = 0;
    for (size_t t = 0; t < n_tok; t++) {
        size_t ia = 0, ib = 0;
        for (size_t v = 1; v < n_vocab; v++) {
            ia = a[t * n_vocab + v] > a[t * n_vocab + ia] ? v : ia;
            ib = b[t * n_vocab + v] > b[t * n_vocab + ib] ? v : ib;
        }
        agree += ia == ib;
    }
    return agree;
}

Test(tune_fuse, fused_model_matches_base_plus_adapter) {
    const char *base = tt_stories();
    TT_NEED(base);
    struct slm_err err = {0};
    struct slm_tune_model *m = NULL;
    cr_assert_eq(slm_tune_model_load(base, NULL, &m, &err), SLM_OK, "%s", err.msg);
    char *dir = tt_tmpdir();
    char ad[4200], f32[4200], f16[4200], q8[4200];
    snprintf(ad, sizeof(ad), "%s/a.gguf", dir);
    snprintf(f32, sizeof(f32), "%s/f32.gguf", dir);
    snprintf(f16, sizeof(f16), "%s/f16.gguf", dir);
    snprintf(q8, sizeof(q8), "%s/q8.gguf", dir);
    make_adapter(m, ad);
    const size_t n = 32, V = (size_t)m->hp.n_vocab;
    int32_t tok[32];
    tt_tokens(tok, n, (int32_t)V, 11);
    float *want = malloc(n * V * sizeof(float)), *got = malloc(n * V * sizeof(float));
    cr_assert_eq(test_llama_logits(base, ad, 1.0f, tok, n, want, 1, &err), SLM_OK, "%s", err.msg);

    struct slm_fuse_params fp = {1.0f, NULL};
    cr_assert_eq(slm_fuse(base, ad, f32, &fp, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(test_llama_logits(f32, NULL, 1.0f, tok, n, got, 1, &err), SLM_OK, "%s", err.msg);
    double rms, mx = tt_max_diff(want, got, n * V, &rms);
    cr_log_info("f32: max %.3g rms %.3g", mx, rms);
    cr_assert(mx < 1e-3, "fused F32 differs by %g", mx);

    fp.out_type = "f16";
    cr_assert_eq(slm_fuse(base, ad, f16, &fp, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(test_llama_logits(f16, NULL, 1.0f, tok, n, got, 1, &err), SLM_OK);
    tt_max_diff(want, got, n * V, &rms);
    size_t agree = argmax_agree(want, got, n, V);
    cr_log_info("f16: rms %.3g, greedy agreement %zu/%zu", rms, agree, n);
    cr_assert(rms < 1e-2, "fused F16 rms %g", rms);
    cr_assert(agree * 100 >= n * 95, "greedy agreement %zu/%zu", agree, n);

    fp.out_type = "q8_0";
    cr_assert_eq(slm_fuse(base, ad, q8, &fp, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(test_llama_logits(q8, NULL, 1.0f, tok, n, got, 1, &err), SLM_OK);
    tt_max_diff(want, got, n * V, &rms);
    agree = argmax_agree(want, got, n, V);
    cr_log_info("q8_0: rms %.3g, greedy agreement %zu/%zu", rms, agree, n);
    cr_assert(rms < 0.1, "fused Q8_0 rms %g", rms);

    /* Not an adapter, or an adapter for nothing in this model. */
    cr_assert_eq(slm_fuse(base, base, f32, NULL, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "not a LoRA adapter"), "%s", err.msg);
    free(want);
    free(got);
    slm_tune_model_free(m);
    tt_rmdir(dir);
}
