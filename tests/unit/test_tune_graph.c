/*
 * test_tune_graph.c - the training graph computes what llama.cpp serves:
 * forward logits equal libllama's (F32 KV cache) on stories260K and on
 * synthetic qwen2 / llama models, and gradients match finite differences.
 */
#include "test_llama_ref.h"
#include "test_tune_common.h"

#include "tune/internal.h"

static void compare_with_llama(const char *path, enum slm_tune_base_type bt, size_t n, double tol) {
    struct slm_err err = {0};
    struct slm_tune_model *m = NULL;
    struct slm_tune_model_params mp = slm_tune_model_params_default();
    mp.base_type = bt;
    cr_assert_eq(slm_tune_model_load(path, &mp, &m, &err), SLM_OK, "%s", err.msg);
    struct slm_tune_model_info info;
    slm_tune_model_get_info(m, &info);
    int32_t *tok = malloc(n * sizeof(*tok));
    float *a = malloc(n * (size_t)info.n_vocab * sizeof(float));
    float *b = malloc(n * (size_t)info.n_vocab * sizeof(float));
    cr_assert(tok && a && b);
    tt_tokens(tok, n, info.n_vocab, 7);
    cr_assert_eq(slm_tune_forward_logits(m, NULL, tok, n, a, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(test_llama_logits(path, NULL, 1.0f, tok, n, b, 2, &err), SLM_OK, "%s", err.msg);
    double rms;
    double mx = tt_max_diff(a, b, n * (size_t)info.n_vocab, &rms);
    cr_log_info("%s (%s): max |diff| %.3g, rms %.3g over %zu tokens", info.arch, info.base_type, mx,
                rms, n);
    cr_assert(mx < tol, "%s: logits differ from libllama by %g (tolerance %g)", path, mx, tol);
    free(tok);
    free(a);
    free(b);
    slm_tune_model_free(m);
}

Test(tune_graph, stories260k_logits_match_libllama) {
    char p[4096]; /* the tolerance is set for stories260K's logits */
    test_stories_path(p, sizeof(p));
    compare_with_llama(p, SLM_TUNE_BASE_AUTO, 48, 1e-4);
}

Test(tune_graph, qwen2_logits_match_libllama) {
    char *dir = tt_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/q.gguf", dir);
    if (!tt_mkmodel("--arch qwen2 --layers 2 --embd 64 --heads 4 --kv-heads 2 --ff 128 "
                    "--vocab ggml-vocab-qwen2.gguf --type f32",
                    path)) {
        tt_rmdir(dir);
        cr_skip_test("needs build/tools/mkmodel and the vocab folder");
    }
    compare_with_llama(path, SLM_TUNE_BASE_AUTO, 24, 1e-4);
    tt_rmdir(dir);
}

/* qwen3 = qwen2's layout without QKV biases, plus per-head RMS norms on q
 * and k (QK-norm). mkmodel makes qwen2; rewrite one into a qwen3. */
static void qwen2_to_qwen3(const char *in, const char *out) {
    struct ggml_context *data = NULL;
    struct gguf_context *g = gguf_init_from_file(in, (struct gguf_init_params){false, &data});
    cr_assert_not_null(g);
    struct gguf_context *o = gguf_init_empty();
    for (int64_t k = 0; k < gguf_get_n_kv(g); k++) {
        const char *key = gguf_get_key(g, k);
        if (strncmp(key, "qwen2.", 6) != 0) {
            continue;
        }
        char nk[256];
        snprintf(nk, sizeof(nk), "qwen3.%s", key + 6);
        enum gguf_type t = gguf_get_kv_type(g, k);
        if (t == GGUF_TYPE_UINT32) {
            gguf_set_val_u32(o, nk, gguf_get_val_u32(g, k));
        } else if (t == GGUF_TYPE_FLOAT32) {
            gguf_set_val_f32(o, nk, gguf_get_val_f32(g, k));
        }
    }
    struct gguf_context *rest = gguf_init_empty();
    gguf_set_kv(rest, g);
    for (int64_t k = 0; k < gguf_get_n_kv(rest); k++) {
        if (strncmp(gguf_get_key(rest, k), "qwen2.", 6) == 0) {
            gguf_remove_key(rest, gguf_get_key(rest, k));
            k--;
        }
    }
    gguf_set_kv(o, rest);
    gguf_free(rest);
    gguf_set_val_str(o, "general.architecture", "qwen3");
    int64_t n_layer = 0, hd = 0;
    for (struct ggml_tensor *t = ggml_get_first_tensor(data); t;
         t = ggml_get_next_tensor(data, t)) {
        if (strstr(t->name, ".bias") || gguf_find_tensor(g, t->name) < 0) {
            continue; /* biases, and gguf's own data blob */
        }
        gguf_add_tensor(o, t);
        if (strstr(t->name, "attn_norm")) {
            n_layer++;
        }
    }
    struct ggml_context *extra = ggml_init((struct ggml_init_params){1 << 20, NULL, false});
    int64_t id = gguf_find_key(g, "qwen2.embedding_length");
    int64_t ih = gguf_find_key(g, "qwen2.attention.head_count");
    hd = (int64_t)gguf_get_val_u32(g, id) / (int64_t)gguf_get_val_u32(g, ih);
    uint64_t s = 5;
    for (int64_t l = 0; l < n_layer; l++) {
        for (int k = 0; k < 2; k++) {
            struct ggml_tensor *t = ggml_new_tensor_1d(extra, GGML_TYPE_F32, hd);
            ggml_format_name(t, "blk.%lld.attn_%s_norm.weight", (long long)l, k ? "k" : "q");
            for (int64_t i = 0; i < hd; i++) {
                ((float *)t->data)[i] = 0.5f + (float)slm__rng_unit(&s);
            }
            gguf_add_tensor(o, t);
        }
    }
    cr_assert(gguf_write_to_file(o, out, false));
    gguf_free(o);
    gguf_free(g);
    ggml_free(extra);
    ggml_free(data);
}

Test(tune_graph, qwen3_logits_match_libllama) {
    char *dir = tt_tmpdir();
    char q2[4200], q3[4200];
    snprintf(q2, sizeof(q2), "%s/q2.gguf", dir);
    snprintf(q3, sizeof(q3), "%s/q3.gguf", dir);
    if (!tt_mkmodel("--arch qwen2 --layers 2 --embd 64 --heads 4 --kv-heads 2 --ff 128 "
                    "--vocab ggml-vocab-qwen2.gguf --type f32",
                    q2)) {
        tt_rmdir(dir);
        cr_skip_test("needs build/tools/mkmodel and the vocab folder");
    }
    qwen2_to_qwen3(q2, q3);
    compare_with_llama(q3, SLM_TUNE_BASE_AUTO, 24, 1e-4);
    tt_rmdir(dir);
}

Test(tune_graph, q8_0_base_logits_match_libllama) {
    char *dir = tt_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/t.gguf", dir);
    if (!tt_mkmodel("--preset tiny --type f32 --quantize Q8_0", path)) {
        tt_rmdir(dir);
        cr_skip_test("needs build/tools/mkmodel and the vocab folder");
    }
    /* Q8_0 kept as stored: both sides quantize activations the same way. */
    compare_with_llama(path, SLM_TUNE_BASE_AUTO, 24, 2e-3);
    tt_rmdir(dir);
}

Test(tune_graph, unsupported_arch_is_refused) {
    char *dir = tt_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/bad.gguf", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fputs("not a gguf", f);
    fclose(f);
    struct slm_err err = {0};
    struct slm_tune_model *m = NULL;
    cr_assert_eq(slm_tune_model_load(path, NULL, &m, &err), SLM_E_INVALID);
    cr_assert_null(m);
    cr_assert_eq(slm_tune_model_load("/nonexistent.gguf", NULL, &m, &err), SLM_E_NOT_FOUND);
    cr_assert(slm_tune_arch_supported("qwen3"));
    cr_assert(!slm_tune_arch_supported("gemma3"));
    tt_rmdir(dir);
}

Test(tune_graph, targets_parse) {
    uint32_t t = 0;
    struct slm_err err = {0};
    cr_assert_eq(slm_tune_targets_parse("q,v", &t, &err), SLM_OK);
    cr_assert_eq(t, SLM_TUNE_Q | SLM_TUNE_V);
    cr_assert_eq(slm_tune_targets_parse("all", &t, &err), SLM_OK);
    cr_assert_eq(t, SLM_TUNE_ALL);
    cr_assert_eq(slm_tune_targets_parse("q,qq", &t, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "'qq'"));
    char buf[64];
    slm_tune_targets_format(SLM_TUNE_ALL, buf, sizeof(buf));
    cr_assert_str_eq(buf, "q,k,v,o,gate,up,down");
}
