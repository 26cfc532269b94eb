/*
 * test_tune_train.c - training on stories260K: gradients match finite
 * differences, the masked loss is the mean over completion tokens, training
 * lowers validation loss, adapters load in llama.cpp and compute what the
 * training graph computed, full fine-tunes save a loadable model, and a run
 * resumed from a checkpoint ends where an uninterrupted one does.
 */
#include "test_llama_ref.h"
#include "test_tune_common.h"

#include "tune/train_internal.h"

struct fixture {
    struct slm_tune_model *m;
    struct slm_dataset *train, *valid;
    struct slm_trainer *tr;
    char *dir;
};

static void setup(struct fixture *f, enum slm_tune_method method, struct slm_tune_params *p) {
    const char *path = tt_stories();
    TT_NEED(path);
    memset(f, 0, sizeof(*f));
    struct slm_err err = {0};
    struct slm_tune_model_params mp = slm_tune_model_params_default();
    mp.trainable = method == SLM_TUNE_FULL;
    cr_assert_eq(slm_tune_model_load(path, &mp, &f->m, &err), SLM_OK, "%s", err.msg);
    char *tj = tt_colors_jsonl(48, 0), *vj = tt_colors_jsonl(16, 3);
    f->train = tt_dataset(f->m, tj, 64);
    f->valid = tt_dataset(f->m, vj, 64);
    free(tj);
    free(vj);
    p->method = method;
    if (!p->n_ctx) {
        p->n_ctx = 64;
    }
    p->n_threads = 1;
    cr_assert_eq(slm_trainer_init(f->m, f->train, f->valid, p, &f->tr, &err), SLM_OK, "%s",
                 err.msg);
    f->dir = tt_tmpdir();
}

static void teardown(struct fixture *f) {
    slm_trainer_free(f->tr);
    slm_dataset_free(f->train);
    slm_dataset_free(f->valid);
    slm_tune_model_free(f->m);
    tt_rmdir(f->dir);
}

static void randomize(struct ggml_tensor *t, uint64_t seed, float scale) {
    int64_t n = ggml_nelements(t);
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        v[i] = (float)(2 * slm__rng_unit(&seed) - 1) * scale;
    }
    ggml_backend_tensor_set(t, v, 0, ggml_nbytes(t));
    free(v);
}

/* Compares the accumulated gradient of parameter `pi` with central
 * differences at its largest-gradient elements. */
static void check_param_tol(struct slm_trainer *tr, size_t pi, float h, double tol);

static void check_param(struct slm_trainer *tr, size_t pi, float h) {
    check_param_tol(tr, pi, h, 0.05);
}

static void check_param_tol(struct slm_trainer *tr, size_t pi, float h, double tol) {
    struct slm_err err = {0};
    float loss;
    cr_assert_eq(slm__trainer_probe(tr, 0, true, &loss, &err), SLM_OK, "%s", err.msg);
    struct ggml_tensor *p = tr->params[pi], *acc = tr->acc[pi];
    int64_t n = ggml_nelements(p);
    float *g = malloc((size_t)n * sizeof(float)), *w = malloc((size_t)n * sizeof(float));
    ggml_backend_tensor_get(acc, g, 0, ggml_nbytes(acc));
    ggml_backend_tensor_get(p, w, 0, ggml_nbytes(p));
    for (int k = 0; k < 3; k++) {
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++) {
            best = fabsf(g[i]) > fabsf(g[best]) ? i : best;
        }
        float orig = w[best], lp, lm;
        w[best] = orig + h;
        ggml_backend_tensor_set(p, w, 0, ggml_nbytes(p));
        cr_assert_eq(slm__trainer_probe(tr, 0, false, &lp, &err), SLM_OK);
        w[best] = orig - h;
        ggml_backend_tensor_set(p, w, 0, ggml_nbytes(p));
        cr_assert_eq(slm__trainer_probe(tr, 0, false, &lm, &err), SLM_OK);
        w[best] = orig;
        ggml_backend_tensor_set(p, w, 0, ggml_nbytes(p));
        double num = ((double)lp - (double)lm) / (2.0 * h);
        double rel = fabs(num - g[best]) / fmax(1e-6, fabs(g[best]));
        cr_log_info("%s[%lld]: analytic %.6g numeric %.6g (rel %.2g)", ggml_get_name(p),
                    (long long)best, (double)g[best], num, rel);
        cr_assert(rel < tol, "%s[%lld]: analytic %g vs numeric %g", ggml_get_name(p),
                  (long long)best, (double)g[best], num);
        g[best] = 0;
    }
    free(g);
    free(w);
}

Test(tune_train, lora_gradients_match_finite_differences) {
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    p.rank = 4;
    setup(&f, SLM_TUNE_LORA, &p);
    for (size_t i = 0; i < f.tr->n_params; i++) {
        randomize(f.tr->params[i], 100 + i, 0.2f);
    }
    check_param(f.tr, 0, 1e-2f);                  /* blk.0.attn_q lora_a */
    check_param(f.tr, 1, 1e-2f);                  /* blk.0.attn_q lora_b */
    check_param(f.tr, f.tr->n_params - 1, 1e-2f); /* last layer's ffn_down lora_b */
    teardown(&f);
}

Test(tune_train, full_gradients_match_finite_differences) {
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    setup(&f, SLM_TUNE_FULL, &p);
    for (size_t i = 0; i < f.tr->n_params; i++) {
        const char *name = ggml_get_name(f.tr->params[i]);
        if (strcmp(name, "blk.1.attn_k.weight") == 0 || strcmp(name, "output_norm.weight") == 0 ||
            strcmp(name, "token_embd.weight") == 0) {
            check_param(f.tr, i, 1e-2f);
        }
    }
    teardown(&f);
}

/* The trainer's loss equals the mean -log p(target) over completion tokens,
 * computed here from the forward logits of each example alone. */
Test(tune_train, masked_loss_is_mean_over_completion_tokens) {
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    p.no_packing = true;
    setup(&f, SLM_TUNE_LORA, &p);
    struct slm_err err = {0};
    float loss;
    cr_assert_eq(slm__trainer_probe(f.tr, 0, false, &loss, &err), SLM_OK);
    /* Row 0 of the plan holds one example (no packing). */
    uint32_t id = f.tr->plan.ex[f.tr->plan.rows[0].first];
    const uint8_t *train;
    size_t n;
    const int32_t *tok = slm_dataset_example(f.train, id, &train, &n);
    int32_t V = f.m->hp.n_vocab;
    float *lg = malloc(n * (size_t)V * sizeof(float));
    cr_assert_eq(slm_tune_forward_logits(f.m, f.tr, tok, n, lg, &err), SLM_OK);
    double sum = 0;
    int cnt = 0, n_prompt = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (!train[i + 1]) {
            n_prompt++;
            continue;
        }
        const float *row = lg + i * (size_t)V;
        double mx = row[0], z = 0;
        for (int32_t v = 1; v < V; v++) {
            mx = row[v] > mx ? row[v] : mx;
        }
        for (int32_t v = 0; v < V; v++) {
            z += exp(row[v] - mx);
        }
        sum += -(row[tok[i + 1]] - mx - log(z));
        cnt++;
    }
    cr_assert(cnt > 0 && n_prompt > 0);
    cr_log_info("trainer %.6f, host %.6f over %d completion tokens (%d prompt tokens masked)",
                (double)loss, sum / cnt, cnt, n_prompt);
    cr_assert(fabs(loss - sum / cnt) < 1e-4, "trainer %g vs host %g", (double)loss, sum / cnt);
    free(lg);
    teardown(&f);
}

Test(tune_train, training_lowers_valid_loss_and_adapter_matches_llama) {
    /* Learning this much in 30 steps takes stories260K (a random-weight
     * model's loss falls too, but not by 30%). */
    char real[4096];
    test_stories_path(real, sizeof(real));
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    p.rank = 8;
    p.lr = 1e-2f;
    p.steps = 30;
    p.batch = 2;
    p.eval_every = 100;
    setup(&f, SLM_TUNE_LORA, &p);
    struct slm_err err = {0};
    float before, after;
    cr_assert_eq(slm_trainer_eval(f.tr, NULL, &before, &err), SLM_OK);
    cr_assert_eq(slm_trainer_run(f.tr, NULL, NULL, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_trainer_eval(f.tr, NULL, &after, &err), SLM_OK);
    cr_log_info("valid loss %.4f -> %.4f", (double)before, (double)after);
    cr_assert(after < before * 0.7f, "valid loss %g -> %g", (double)before, (double)after);

    char path[4200];
    snprintf(path, sizeof(path), "%s/a.gguf", f.dir);
    cr_assert_eq(slm_trainer_save(f.tr, path, &err), SLM_OK, "%s", err.msg);
    int32_t tok[24];
    tt_tokens(tok, 24, f.m->hp.n_vocab, 3);
    size_t nl = 24 * (size_t)f.m->hp.n_vocab;
    float *a = malloc(nl * sizeof(float)), *b = malloc(nl * sizeof(float)),
          *base = malloc(nl * sizeof(float));
    cr_assert_eq(slm_tune_forward_logits(f.m, f.tr, tok, 24, a, &err), SLM_OK);
    cr_assert_eq(test_llama_logits(tt_stories(), path, 1.0f, tok, 24, b, 2, &err), SLM_OK, "%s",
                 err.msg);
    cr_assert_eq(test_llama_logits(tt_stories(), NULL, 1.0f, tok, 24, base, 2, &err), SLM_OK);
    double rms, rms_base;
    double mx = tt_max_diff(a, b, nl, &rms);
    tt_max_diff(a, base, nl, &rms_base);
    cr_log_info("adapter in libllama vs training graph: max %.3g rms %.3g (base differs by rms "
                "%.3g)",
                mx, rms, rms_base);
    cr_assert(mx < 1e-3, "adapter logits differ by %g", mx);
    cr_assert(rms_base > 1e-2, "the adapter changed nothing");
    free(a);
    free(b);
    free(base);
    teardown(&f);
}

Test(tune_train, full_finetune_saves_a_model_llama_loads) {
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    p.lr = 1e-3f;
    p.steps = 5;
    setup(&f, SLM_TUNE_FULL, &p);
    struct slm_err err = {0};
    cr_assert_eq(slm_trainer_run(f.tr, NULL, NULL, &err), SLM_OK, "%s", err.msg);
    char path[4200];
    snprintf(path, sizeof(path), "%s/full.gguf", f.dir);
    cr_assert_eq(slm_trainer_save(f.tr, path, &err), SLM_OK, "%s", err.msg);
    int32_t tok[16];
    tt_tokens(tok, 16, f.m->hp.n_vocab, 5);
    size_t nl = 16 * (size_t)f.m->hp.n_vocab;
    float *a = malloc(nl * sizeof(float)), *b = malloc(nl * sizeof(float));
    cr_assert_eq(slm_tune_forward_logits(f.m, NULL, tok, 16, a, &err), SLM_OK);
    cr_assert_eq(test_llama_logits(path, NULL, 1.0f, tok, 16, b, 2, &err), SLM_OK, "%s", err.msg);
    double mx = tt_max_diff(a, b, nl, NULL);
    cr_assert(mx < 1e-4, "saved model differs by %g", mx);
    free(a);
    free(b);
    teardown(&f);
}

static int stop_at_3(const struct slm_tune_progress *pr, void *user) {
    (void)user;
    return pr->step == 3;
}

static float *lora_values(struct slm_trainer *tr, size_t *n_out) {
    size_t n = 0;
    for (size_t i = 0; i < tr->n_params; i++) {
        n += (size_t)ggml_nelements(tr->params[i]);
    }
    float *v = malloc(n * sizeof(float));
    size_t off = 0;
    for (size_t i = 0; i < tr->n_params; i++) {
        ggml_backend_tensor_get(tr->params[i], v + off, 0, ggml_nbytes(tr->params[i]));
        off += (size_t)ggml_nelements(tr->params[i]);
    }
    *n_out = n;
    return v;
}

Test(tune_train, resume_ends_with_the_same_weights) {
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    p.rank = 4;
    p.lr = 5e-3f;
    p.steps = 6;
    p.eval_every = 2;
    p.dropout = 0.1f;
    p.grad_accum = 2;
    setup(&f, SLM_TUNE_LORA, &p);
    struct slm_err err = {0};
    cr_assert_eq(slm_trainer_run(f.tr, NULL, NULL, &err), SLM_OK, "%s", err.msg);
    size_t n;
    float *want = lora_values(f.tr, &n);
    slm_trainer_free(f.tr);
    f.tr = NULL;

    char ckpt[4200];
    snprintf(ckpt, sizeof(ckpt), "%s/ckpt.gguf", f.dir);
    p.checkpoint = ckpt;
    p.method = SLM_TUNE_LORA;
    struct slm_trainer *t1 = NULL, *t2 = NULL;
    cr_assert_eq(slm_trainer_init(f.m, f.train, f.valid, &p, &t1, &err), SLM_OK);
    cr_assert_eq(slm_trainer_run(t1, stop_at_3, NULL, &err), SLM_E_ABORTED);
    slm_trainer_free(t1);
    cr_assert_eq(slm_trainer_init(f.m, f.train, f.valid, &p, &t2, &err), SLM_OK);
    cr_assert_eq(slm_trainer_resume(t2, ckpt, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(t2->step, 3);
    cr_assert_eq(slm_trainer_run(t2, NULL, NULL, &err), SLM_OK, "%s", err.msg);
    size_t n2;
    float *got = lora_values(t2, &n2);
    cr_assert_eq(n, n2);
    double mx = tt_max_diff(want, got, n, NULL);
    cr_assert(mx == 0.0, "resumed weights differ by %g", mx);
    const float *tl, *vl;
    const uint32_t *vs;
    size_t ntl, nvl;
    slm_trainer_history(t2, &tl, &ntl, &vl, &vs, &nvl);
    cr_assert_eq(ntl, 6);

    /* A checkpoint of another configuration is refused with a reason. */
    p.rank = 8;
    struct slm_trainer *t3 = NULL;
    cr_assert_eq(slm_trainer_init(f.m, f.train, f.valid, &p, &t3, &err), SLM_OK);
    cr_assert_eq(slm_trainer_resume(t3, ckpt, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "another configuration"), "%s", err.msg);
    slm_trainer_free(t3);
    slm_trainer_free(t2);
    free(want);
    free(got);
    teardown(&f);
}

/* A Q8_0 base: the backward pass goes through transposed Q8_0 copies of the
 * frozen weights (rewrite.c).  */
Test(tune_train, q8_0_base_transposed_gradients_match_ggml_backward) {
    char *dir = tt_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/t.gguf", dir);
    if (!tt_mkmodel("--preset tiny --type f32 --quantize Q8_0", path)) {
        tt_rmdir(dir);
        cr_skip_test("needs build/tools/mkmodel and the vocab folder");
    }
    struct slm_err err = {0};
    struct slm_tune_model *m = NULL;
    cr_assert_eq(slm_tune_model_load(path, NULL, &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(m->layers[0].w[P_Q]->type, GGML_TYPE_Q8_0);
    char *tj = tt_colors_jsonl(8, 0);
    struct slm_dataset *ds = tt_dataset(m, tj, 32);
    free(tj);
    struct slm_tune_params p = slm_tune_params_default();
    p.rank = 4;
    p.n_ctx = 32;
    p.n_threads = 1;
    struct slm_trainer *tr = NULL;
    cr_assert_eq(slm_trainer_init(m, ds, NULL, &p, &tr, &err), SLM_OK, "%s", err.msg);
    cr_assert(tr->wt.n > 0, "no transposed weights were made");
    for (size_t i = 0; i < tr->n_params; i++) {
        randomize(tr->params[i], 200 + i, 0.2f);
    }
    /* Q8_0 quantizes activations in the forward pass, so finite differences
     * are too noisy here; compare with ggml's own backward (out_prod through
     * the stored weights) instead: the transposed copies are requantized, so
     * they agree within Q8_0's rounding. */
    struct slm_tune_params rp = p;
    rp.no_weight_transpose = true;
    struct slm_trainer *ref = NULL;
    cr_assert_eq(slm_trainer_init(m, ds, NULL, &rp, &ref, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(ref->wt.n, 0);
    for (size_t i = 0; i < tr->n_params; i++) {
        ggml_backend_tensor_copy(tr->params[i], ref->params[i]);
    }
    float la, lb;
    cr_assert_eq(slm__trainer_probe(tr, 0, true, &la, &err), SLM_OK);
    cr_assert_eq(slm__trainer_probe(ref, 0, true, &lb, &err), SLM_OK);
    cr_assert_float_eq(la, lb, 1e-6);
    double worst = 0;
    for (size_t i = 0; i < tr->n_params; i++) {
        size_t n = (size_t)ggml_nelements(tr->acc[i]);
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        ggml_backend_tensor_get(tr->acc[i], a, 0, n * sizeof(float));
        ggml_backend_tensor_get(ref->acc[i], b, 0, n * sizeof(float));
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++) {
            num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
            den += (double)b[k] * b[k];
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        worst = rel > worst ? rel : worst;
        free(a);
        free(b);
    }
    cr_log_info("q8_0: transposed-weight gradients vs out_prod: worst relative L2 %.3g", worst);
    cr_assert(worst < 0.02, "relative gradient difference %g", worst);
    slm_trainer_free(ref);
    slm_trainer_free(tr);
    slm_dataset_free(ds);
    slm_tune_model_free(m);
    tt_rmdir(dir);
}

/* The kernel rewrites (rewrite.c: out_prod as mul_mat, attention's tiny-head
 * K·Q as out_prod) change no math: loss and gradients equal ggml's own
 * backward to float rounding, for LoRA and full fine-tuning. */
static void check_rewrite_matches(enum slm_tune_method method) {
    struct fixture f;
    struct slm_tune_params p = slm_tune_params_default();
    p.rank = 16;
    p.batch = 2;
    setup(&f, method, &p);
    struct slm_err err = {0};
    for (size_t i = 0; method == SLM_TUNE_LORA && i < f.tr->n_params; i++) {
        randomize(f.tr->params[i], 300 + i, 0.2f);
    }
    struct slm_tune_params rp = p;
    rp.no_graph_rewrite = true;
    struct slm_trainer *ref = NULL;
    int rc = slm_trainer_init(f.m, f.train, f.valid, &rp, &ref, &err);
    cr_assert_eq(rc, SLM_OK, "%s", err.msg);
    cr_assert_neq(ggml_graph_n_nodes(f.tr->gb), ggml_graph_n_nodes(ref->gb), "nothing rewritten");
    for (size_t i = 0; method == SLM_TUNE_LORA && i < f.tr->n_params; i++) {
        ggml_backend_tensor_copy(f.tr->params[i], ref->params[i]);
    }
    float la, lb, va, vb;
    cr_assert_eq(slm__trainer_probe(f.tr, 0, true, &la, &err), SLM_OK);
    cr_assert_eq(slm__trainer_probe(ref, 0, true, &lb, &err), SLM_OK);
    cr_assert_float_eq(la, lb, 1e-5, "loss %g vs %g", la, lb);
    cr_assert_eq(slm_trainer_eval(f.tr, NULL, &va, &err), SLM_OK);
    cr_assert_eq(slm_trainer_eval(ref, NULL, &vb, &err), SLM_OK);
    cr_assert_float_eq(va, vb, 1e-5, "valid loss %g vs %g", va, vb);
    double worst = 0;
    for (size_t i = 0; i < f.tr->n_params; i++) {
        size_t n = (size_t)ggml_nelements(f.tr->acc[i]);
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        ggml_backend_tensor_get(f.tr->acc[i], a, 0, n * sizeof(float));
        ggml_backend_tensor_get(ref->acc[i], b, 0, n * sizeof(float));
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++) {
            num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
            den += (double)b[k] * b[k];
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        worst = rel > worst ? rel : worst;
        free(a);
        free(b);
    }
    cr_log_info("rewritten vs ggml backward: worst relative L2 %.3g", worst);
    cr_assert(worst < 1e-4, "relative gradient difference %g", worst);
    slm_trainer_free(ref);
    teardown(&f);
}

Test(tune_train, rewritten_lora_graph_matches_ggml_backward) {
    check_rewrite_matches(SLM_TUNE_LORA);
}

Test(tune_train, rewritten_full_graph_matches_ggml_backward) {
    check_rewrite_matches(SLM_TUNE_FULL);
}
