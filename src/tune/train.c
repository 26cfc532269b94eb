/*
 * tune/train.c - the trainer: a fixed-shape training graph (forward, masked
 * loss, backward into persistent gradient accumulators), AdamW with warm-up +
 * cosine schedule and global-norm clipping, gradient accumulation,
 * validation, and the progress loop.
 *
 * Why not ggml_opt_context: it offers no hook between the backward pass and
 * the optimizer step (clipping needs the global gradient norm there) and its
 * AdamW moments are private (a checkpoint must carry them for an exact
 * resume). The optimizer step here is still ggml's own AdamW kernel
 * (ggml_opt_step_adamw), run as a second small graph after the accumulation.
 *
 * The graph is built once: every micro-batch has the same shape [T, B] and
 * the same number C of loss rows. Loss masking: the hidden states of the C
 * selected positions are multiplied by a 0/1 weight before the output
 * projection (an unused row's logits are then exactly zero) and unused rows
 * get a uniform label, so their gradient is exactly zero
 * (ggml_cross_entropy_loss alone would still push the softmax of an all-zero
 * label row).
 *
 * After autodiff the backward and evaluation graphs go through the kernel
 * rewriter (rewrite.c), which swaps slow kernels for fast equivalents.
 */
#include "slm/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <ggml-cpu.h>

#include "tune/train_internal.h"

struct slm_tune_params slm_tune_params_default(void) {
    struct slm_tune_params p;
    memset(&p, 0, sizeof(p));
    p.lr_min = 0.1f;
    return p;
}

static void normalize_params(struct slm_tune_params *p) {
    if (p->rank == 0) {
        p->rank = 16;
    }
    if (p->alpha <= 0) {
        p->alpha = 2.0f * (float)p->rank;
    }
    if (p->targets == 0) {
        p->targets = SLM_TUNE_ALL;
    }
    if (p->n_ctx == 0) {
        p->n_ctx = 512;
    }
    if (p->batch == 0) {
        p->batch = 1;
    }
    if (p->grad_accum == 0) {
        p->grad_accum = 1;
    }
    if (p->epochs == 0) {
        p->epochs = 1;
    }
    if (p->lr <= 0) {
        p->lr = p->method == SLM_TUNE_FULL ? 1e-4f : 2e-4f;
    }
    if (p->lr_min < 0 || p->lr_min > 1) {
        p->lr_min = 0.1f;
    }
    if (p->beta1 <= 0) {
        p->beta1 = 0.9f;
    }
    if (p->beta2 <= 0) {
        p->beta2 = 0.999f;
    }
    if (p->eps <= 0) {
        p->eps = 1e-8f;
    }
    if (p->grad_clip == 0) {
        p->grad_clip = 1.0f;
    }
    if (p->seed == 0) {
        p->seed = 42;
    }
}

/* ---------------------------------------------------------------- setup */

static struct ggml_tensor *new_static(struct ggml_context *ctx, enum ggml_type t, int64_t ne0,
                                      int64_t ne1, int64_t ne2, int64_t ne3, const char *name) {
    struct ggml_tensor *x = ggml_new_tensor_4d(ctx, t, ne0, ne1, ne2, ne3);
    ggml_set_name(x, name);
    return x;
}

static void lora_init_values(struct slm_trainer *tr) {
    uint64_t s = tr->p.seed ^ 0x6c6f7261ull; /* "lora" */
    for (int i = 0; i < tr->m->hp.n_layer * SLM_TUNE_N_PROJ; i++) {
        struct slm__lora *lo = &tr->lora[i];
        if (!lo->a) {
            continue;
        }
        /* A: kaiming-uniform (bound 1/sqrt(n_in)); B: zero, so training starts at the base. */
        int64_t n = ggml_nelements(lo->a);
        float *buf = malloc((size_t)n * sizeof(float));
        if (!buf) {
            continue;
        }
        float bound = 1.0f / sqrtf((float)lo->a->ne[0]);
        for (int64_t k = 0; k < n; k++) {
            buf[k] = (float)(2.0 * slm__rng_unit(&s) - 1.0) * bound;
        }
        ggml_backend_tensor_set(lo->a, buf, 0, ggml_nbytes(lo->a));
        free(buf);
        ggml_backend_tensor_memset(lo->b, 0, 0, ggml_nbytes(lo->b));
    }
}

/* Declares inputs, LoRA weights and dropout masks in ctx_static. */
static int declare_static(struct slm_trainer *tr, struct slm_err *err) {
    const struct slm__hparams *hp = &tr->m->hp;
    const int64_t T = tr->T, B = tr->B, C = tr->C, V = hp->n_vocab, N = T * B;
    int n_lora = hp->n_layer * SLM_TUNE_N_PROJ;
    /* inputs, LoRA pairs, dropout masks, and two moments per parameter */
    size_t n_param_max = (size_t)n_lora * 2 + (size_t)hp->n_layer * 16 + 8;
    size_t n_tensors = 32 + (size_t)n_lora * 2 + (size_t)hp->n_layer * 4 + 2 * n_param_max;
    struct ggml_init_params ip = {n_tensors * ggml_tensor_overhead(), NULL, true};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    tr->ctx_static = ctx;
    tr->in.T = tr->T;
    tr->in.B = tr->B;
    tr->in.C = tr->C;
    tr->in.tokens = new_static(ctx, GGML_TYPE_I32, N, 1, 1, 1, "tokens");
    tr->in.pos = new_static(ctx, GGML_TYPE_I32, N, 1, 1, 1, "pos");
    tr->in.mask = new_static(ctx, GGML_TYPE_F32, T, T, 1, B, "mask");
    tr->in.out_idx = new_static(ctx, GGML_TYPE_I32, C, 1, 1, 1, "out_idx");
    tr->targets = new_static(ctx, GGML_TYPE_F32, V, C, 1, 1, "targets");
    tr->lw = new_static(ctx, GGML_TYPE_F32, 1, C, 1, 1, "loss_weight");
    tr->loss_scale = new_static(ctx, GGML_TYPE_F32, 1, 1, 1, 1, "loss_scale");
    tr->one = new_static(ctx, GGML_TYPE_F32, 1, 1, 1, 1, "one");
    tr->adamw_par = new_static(ctx, GGML_TYPE_F32, 7, 1, 1, 1, "adamw_params");
    tr->clip_max = new_static(ctx, GGML_TYPE_F32, 1, 1, 1, 1, "clip_max");
    if (tr->p.method == SLM_TUNE_LORA) {
        tr->lora = calloc((size_t)n_lora, sizeof(*tr->lora));
        if (!tr->lora) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        tr->in.lora = tr->lora;
        tr->in.lora_scale = tr->p.alpha / (float)tr->p.rank;
        char name[GGML_MAX_NAME];
        for (int l = 0; l < hp->n_layer; l++) {
            for (int pj = 0; pj < SLM_TUNE_N_PROJ; pj++) {
                if (!(tr->p.targets & (1u << pj))) {
                    continue;
                }
                const struct ggml_tensor *w = tr->m->layers[l].w[pj];
                struct slm__lora *lo = &tr->lora[l * SLM_TUNE_N_PROJ + pj];
                slm__proj_name(l, pj, name, sizeof(name));
                lo->a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], tr->p.rank);
                lo->b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->p.rank, w->ne[1]);
                ggml_format_name(lo->a, "%s.lora_a", name);
                ggml_format_name(lo->b, "%s.lora_b", name);
            }
        }
    }
    if (tr->p.dropout > 0) {
        tr->drop = calloc((size_t)hp->n_layer * 4, sizeof(*tr->drop));
        if (!tr->drop) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        const int64_t width[4] = {hp->n_embd, (int64_t)hp->head_dim * hp->n_head, hp->n_embd,
                                  hp->n_ff};
        for (int l = 0; l < hp->n_layer * 4; l++) {
            tr->drop[l] = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, width[l % 4], N);
        }
        tr->in.drop = tr->drop;
    }
    return SLM_OK;
}

/* Collects the trainable tensors (in a fixed order: checkpoints rely on it). */
static int collect_params(struct slm_trainer *tr, struct slm_err *err) {
    struct slm_tune_model *m = tr->m;
    size_t cap = 8 + (size_t)m->hp.n_layer * 2 * 16;
    tr->params = calloc(cap, sizeof(*tr->params));
    if (!tr->params) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (tr->p.method == SLM_TUNE_LORA) {
        for (int i = 0; i < m->hp.n_layer * SLM_TUNE_N_PROJ; i++) {
            if (tr->lora[i].a) {
                tr->params[tr->n_params++] = tr->lora[i].a;
                tr->params[tr->n_params++] = tr->lora[i].b;
            }
        }
    } else {
        for (struct ggml_tensor *t = ggml_get_first_tensor(m->ctx_w); t;
             t = ggml_get_next_tensor(m->ctx_w, t)) {
            if (t != m->rope_freqs) {
                tr->params[tr->n_params++] = t;
            }
        }
    }
    if (tr->n_params == 0) {
        return slm_err_set(err, SLM_E_INVALID, "nothing to train (no LoRA targets)");
    }
    for (size_t i = 0; i < tr->n_params; i++) {
        ggml_set_param(tr->params[i]);
        tr->n_trainable += (uint64_t)ggml_nelements(tr->params[i]);
    }
    return SLM_OK;
}

/* Accumulators and AdamW moments, one of each per parameter. */
static int declare_opt_state(struct slm_trainer *tr, struct slm_err *err) {
    struct ggml_init_params ip = {(tr->n_params * 3 + 4) * ggml_tensor_overhead(), NULL, true};
    tr->ctx_acc = ggml_init(ip);
    tr->acc = calloc(tr->n_params, sizeof(*tr->acc));
    tr->mom_m = calloc(tr->n_params, sizeof(*tr->mom_m));
    tr->mom_v = calloc(tr->n_params, sizeof(*tr->mom_v));
    if (!tr->ctx_acc || !tr->acc || !tr->mom_m || !tr->mom_v) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < tr->n_params; i++) {
        const struct ggml_tensor *p = tr->params[i];
        tr->acc[i] = ggml_new_tensor(tr->ctx_acc, GGML_TYPE_F32, GGML_MAX_DIMS, p->ne);
        tr->mom_m[i] = ggml_new_tensor(tr->ctx_static, GGML_TYPE_F32, GGML_MAX_DIMS, p->ne);
        tr->mom_v[i] = ggml_new_tensor(tr->ctx_static, GGML_TYPE_F32, GGML_MAX_DIMS, p->ne);
        ggml_format_name(tr->acc[i], "acc.%d", (int)i);
        ggml_format_name(tr->mom_m[i], "m.%d", (int)i);
        ggml_format_name(tr->mom_v[i], "v.%d", (int)i);
    }
    return SLM_OK;
}

static bool on_dev_always(const struct ggml_tensor *t, void *user) {
    (void)t;
    (void)user;
    return true;
}

static int alloc_static(struct slm_trainer *tr, struct slm_err *err) {
    /* Inputs, trainable tensors and optimizer state all on the device. The
     * static set counts as weights: the scheduler then runs the LoRA matmuls
     * where A and B are. */
    ggml_backend_buffer_type_t bt = slm__dev_buft(tr->m);
    if (slm__bufs_alloc(&tr->buf_static, tr->ctx_static, bt, on_dev_always, NULL,
                        GGML_BACKEND_BUFFER_USAGE_WEIGHTS) != SLM_OK ||
        slm__bufs_alloc(&tr->buf_acc, tr->ctx_acc, bt, on_dev_always, NULL,
                        GGML_BACKEND_BUFFER_USAGE_ANY) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "cannot allocate the training state on %s",
                           ggml_backend_dev_name(tr->m->dev));
    }
    slm__bufs_clear(&tr->buf_static, 0);
    slm__bufs_clear(&tr->buf_acc, 0);
    const float one = 1.0f;
    ggml_backend_tensor_set(tr->one, &one, 0, sizeof(one));
    const float clip = tr->p.grad_clip > 0 ? tr->p.grad_clip : INFINITY;
    ggml_backend_tensor_set(tr->clip_max, &clip, 0, sizeof(clip));
    if (tr->lora) {
        lora_init_values(tr);
    }
    return SLM_OK;
}

static long param_index(const struct slm_trainer *tr, const struct ggml_tensor *t) {
    for (size_t i = 0; i < tr->n_params; i++) {
        if (tr->params[i] == t) {
            return (long)i;
        }
    }
    return -1;
}

static int build_graphs(struct slm_trainer *tr, struct slm_err *err) {
    /* forward (twice), backward, optimizer, and the rewritten copies */
    size_t mem = (size_t)SLM_TUNE_GRAPH_SIZE * 5 * ggml_tensor_overhead() +
                 6 * ggml_graph_overhead_custom(SLM_TUNE_GRAPH_SIZE, true);
    struct ggml_init_params ip = {mem, NULL, true};
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor **grad_accs = NULL;
    if (!ctx) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    tr->ctx_graph = ctx;
    /* Evaluation gets its own copy of the forward tensors: ggml-alloc treats a
     * tensor that already has data as allocated elsewhere, so sharing tensors
     * between two allocators would let the eval plan's memory reuse corrupt
     * the activations the backward pass reads. */
    tr->gf_eval = ggml_new_graph_custom(ctx, SLM_TUNE_GRAPH_SIZE, false);
    tr->in.out_w = tr->lw;
    struct ggml_tensor *logits = slm__build_forward(ctx, tr->m, &tr->in);
    tr->ce_eval = ggml_cross_entropy_loss(ctx, logits, tr->targets);
    ggml_set_output(tr->ce_eval);
    ggml_build_forward_expand(tr->gf_eval, tr->ce_eval);

    tr->gf = ggml_new_graph_custom(ctx, SLM_TUNE_GRAPH_SIZE, true);
    logits = slm__build_forward(ctx, tr->m, &tr->in); /* [V, C], unused rows zero */
    tr->ce = ggml_cross_entropy_loss(ctx, logits, tr->targets);
    ggml_set_output(tr->ce);
    tr->loss = ggml_mul(ctx, tr->ce, tr->loss_scale);
    ggml_set_loss(tr->loss);
    ggml_set_output(tr->loss);
    ggml_build_forward_expand(tr->gf, tr->loss);
    int n = ggml_graph_n_nodes(tr->gf);
    grad_accs = calloc((size_t)n, sizeof(*grad_accs));
    if (!grad_accs) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        struct ggml_tensor *node = ggml_graph_node(tr->gf, i);
        long k = param_index(tr, node);
        grad_accs[i] = k >= 0 ? tr->acc[k] : node == tr->loss ? tr->one : NULL;
    }
    tr->gb = ggml_graph_dup(ctx, tr->gf, true);
    ggml_build_backward_expand(ctx, tr->gb, grad_accs);
    free(grad_accs);
    /* Kernel rewrites (rewrite.c); transposed weights only in the backward pass. */
    struct slm__rewrite_opts ro = {!tr->p.no_weight_transpose, !tr->p.no_graph_rewrite};
    struct slm__rewrite_opts ro_eval = {false, ro.general};
    int rc = slm__wt_init(&tr->wt, (size_t)tr->m->hp.n_layer * SLM_TUNE_N_PROJ + 2, err);
    if (rc == SLM_OK) {
        rc = slm__rewrite_graph(tr->m, &tr->wt, ctx, &tr->gb, ro, err);
    }
    if (rc == SLM_OK) {
        rc = slm__rewrite_graph(tr->m, &tr->wt, ctx, &tr->gf_eval, ro_eval, err);
    }
    if (rc == SLM_OK) {
        rc = slm__wt_fill(tr->m, &tr->wt, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }

    /* Optimizer graph: global norm, clip coefficient, AdamW per parameter. */
    tr->gopt = ggml_new_graph_custom(ctx, SLM_TUNE_GRAPH_SIZE / 4, false);
    struct ggml_tensor *norm2 = NULL;
    for (size_t i = 0; i < tr->n_params; i++) {
        struct ggml_tensor *s = ggml_sum(ctx, ggml_sqr(ctx, tr->acc[i]));
        norm2 = norm2 ? ggml_add(ctx, norm2, s) : s;
    }
    tr->gnorm2 = norm2;
    ggml_set_output(norm2);
    ggml_build_forward_expand(tr->gopt, norm2);
    struct ggml_tensor *coef =
        ggml_clamp(ctx, ggml_div(ctx, tr->clip_max, ggml_sqrt(ctx, norm2)), 0.0f, 1.0f);
    for (size_t i = 0; i < tr->n_params; i++) {
        struct ggml_tensor *g = ggml_mul(ctx, tr->acc[i], coef);
        ggml_build_forward_expand(tr->gopt, ggml_opt_step_adamw(ctx, tr->params[i], g, tr->mom_m[i],
                                                                tr->mom_v[i], tr->adamw_par));
    }
    tr->run_train = slm__runner_new(tr->m);
    tr->run_eval = slm__runner_new(tr->m);
    tr->run_opt = slm__runner_new(tr->m);
    if (!tr->run_train || !tr->run_eval || !tr->run_opt) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (!slm__runner_reserve(tr->run_train, tr->gb) ||
        !slm__runner_reserve(tr->run_opt, tr->gopt)) {
        return slm_err_set(err, SLM_E_NOMEM, "cannot allocate the training graph's memory");
    }
    return SLM_OK;
}

static uint32_t rows_per_step(const struct slm_trainer *tr) {
    return tr->p.batch * tr->p.grad_accum;
}

static int make_plans(struct slm_trainer *tr, struct slm_err *err) {
    const struct slm_tune_params *p = &tr->p;
    size_t per_step = rows_per_step(tr);
    size_t min_rows = p->steps ? (size_t)p->steps * per_step : 0;
    int rc = slm__plan_build(&tr->plan, tr->train, tr->T, tr->B, !p->no_packing, true, p->seed,
                             min_rows);
    if (rc != SLM_OK) {
        return slm_err_set(err, rc, "out of memory planning batches");
    }
    if (tr->plan.n_rows == 0) {
        return slm_err_set(err, SLM_E_INVALID,
                           "the training set has no example with a completion token to learn");
    }
    if (!p->steps) {
        /* More epochs: extend the plan epoch by epoch (same seeds). */
        slm__plan_free(&tr->plan);
        rc = slm__plan_build(&tr->plan, tr->train, tr->T, tr->B, !p->no_packing, true, p->seed, 0);
        size_t want = 0;
        if (rc == SLM_OK) {
            want = tr->plan.rows_per_epoch * p->epochs;
            slm__plan_free(&tr->plan);
            rc = slm__plan_build(&tr->plan, tr->train, tr->T, tr->B, !p->no_packing, true, p->seed,
                                 want);
        }
        if (rc != SLM_OK) {
            return slm_err_set(err, rc, "out of memory planning batches");
        }
        tr->n_steps = (uint32_t)((want + per_step - 1) / per_step);
    } else {
        tr->n_steps = p->steps;
    }
    if (tr->valid) {
        rc = slm__plan_build(&tr->vplan, tr->valid, tr->T, tr->B, !p->no_packing, false, 0, 0);
        if (rc != SLM_OK) {
            return slm_err_set(err, rc, "out of memory planning batches");
        }
    }
    uint32_t c = slm__plan_max_targets(&tr->plan, tr->B);
    if (tr->valid) {
        uint32_t cv = slm__plan_max_targets(&tr->vplan, tr->B);
        c = cv > c ? cv : c;
    }
    tr->C = (int32_t)c;
    return SLM_OK;
}

int slm_trainer_init(struct slm_tune_model *model, const struct slm_dataset *train,
                     const struct slm_dataset *valid, const struct slm_tune_params *params,
                     struct slm_trainer **out, struct slm_err *err) {
    struct slm_trainer *tr = calloc(1, sizeof(*tr));
    if (!tr) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    tr->m = model;
    tr->train = train;
    tr->valid = valid && valid->n ? valid : NULL;
    tr->p = params ? *params : slm_tune_params_default();
    normalize_params(&tr->p);
    tr->p.n_threads = slm__tune_threads(model->n_params, tr->p.n_threads);
    tr->T = (int32_t)tr->p.n_ctx;
    tr->B = (int32_t)tr->p.batch;
    tr->last_valid = NAN;
    int rc = SLM_OK;
    if (tr->p.method == SLM_TUNE_FULL && !model->params.trainable) {
        rc = slm_err_set(err, SLM_E_INVALID, "full fine-tuning needs the model loaded trainable");
        goto fail;
    }
    if (tr->p.dropout < 0 || tr->p.dropout > 0.9f) {
        rc = slm_err_set(err, SLM_E_INVALID, "dropout must be in [0, 0.9]");
        goto fail;
    }
    if ((rc = make_plans(tr, err)) != SLM_OK || (rc = declare_static(tr, err)) != SLM_OK ||
        (rc = collect_params(tr, err)) != SLM_OK || (rc = declare_opt_state(tr, err)) != SLM_OK ||
        (rc = alloc_static(tr, err)) != SLM_OK || (rc = build_graphs(tr, err)) != SLM_OK) {
        goto fail;
    }
    if (slm__batch_alloc(&tr->hb, tr->T, tr->B, tr->C, model->hp.n_vocab) != SLM_OK) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto fail;
    }
    tr->hist_train = calloc(tr->n_steps + 1, sizeof(float));
    tr->hist_valid = calloc(tr->n_steps + 2, sizeof(float));
    tr->hist_vstep = calloc(tr->n_steps + 2, sizeof(uint32_t));
    if (!tr->hist_train || !tr->hist_valid || !tr->hist_vstep) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto fail;
    }
    ggml_backend_cpu_set_n_threads(model->backend_cpu, tr->p.n_threads);
    *out = tr;
    return SLM_OK;
fail:
    slm_trainer_free(tr);
    return rc;
}

void slm_trainer_free(struct slm_trainer *tr) {
    if (!tr) {
        return;
    }
    for (size_t i = 0; i < tr->n_params; i++) {
        tr->params[i]->flags &= ~GGML_TENSOR_FLAG_PARAM;
    }
    slm__runner_free(tr->run_train);
    slm__runner_free(tr->run_eval);
    slm__runner_free(tr->run_opt);
    slm__wt_free(&tr->wt);
    if (tr->ctx_graph) {
        ggml_free(tr->ctx_graph);
    }
    slm__bufs_free(&tr->buf_acc);
    slm__bufs_free(&tr->buf_static);
    if (tr->ctx_acc) {
        ggml_free(tr->ctx_acc);
    }
    if (tr->ctx_static) {
        ggml_free(tr->ctx_static);
    }
    slm__plan_free(&tr->plan);
    slm__plan_free(&tr->vplan);
    slm__batch_free(&tr->hb);
    free(tr->lora);
    free(tr->drop);
    free(tr->params);
    free(tr->acc);
    free(tr->mom_m);
    free(tr->mom_v);
    free(tr->hist_train);
    free(tr->hist_valid);
    free(tr->hist_vstep);
    free(tr);
}

/* ---------------------------------------------------------------- steps */

static void upload_batch(struct slm_trainer *tr) {
    const struct slm__batch *hb = &tr->hb;
    ggml_backend_tensor_set(tr->in.tokens, hb->tokens, 0, ggml_nbytes(tr->in.tokens));
    ggml_backend_tensor_set(tr->in.pos, hb->pos, 0, ggml_nbytes(tr->in.pos));
    ggml_backend_tensor_set(tr->in.mask, hb->mask, 0, ggml_nbytes(tr->in.mask));
    ggml_backend_tensor_set(tr->in.out_idx, hb->out_idx, 0, ggml_nbytes(tr->in.out_idx));
    ggml_backend_tensor_set(tr->targets, hb->targets, 0, ggml_nbytes(tr->targets));
    ggml_backend_tensor_set(tr->lw, hb->lw, 0, ggml_nbytes(tr->lw));
}

/* Dropout masks for one micro-batch, from (seed, step, micro) alone. */
static void upload_dropout(struct slm_trainer *tr, uint64_t micro_id, bool train) {
    if (!tr->drop) {
        return;
    }
    uint64_t s = tr->p.seed * 0x9e3779b97f4a7c15ull + micro_id * 0x2545f4914f6cdd1dull + 7;
    const float keep = 1.0f - tr->p.dropout, scale = 1.0f / keep;
    for (int l = 0; l < tr->m->hp.n_layer * 4; l++) {
        struct ggml_tensor *d = tr->drop[l];
        int64_t n = ggml_nelements(d);
        /* host memory on the CPU; elsewhere a staging copy */
        bool host = ggml_backend_buffer_is_host(d->buffer);
        float *buf = host ? (float *)d->data : malloc(ggml_nbytes(d));
        if (!buf) {
            continue; /* the masks keep their last values; only on a failed malloc */
        }
        for (int64_t k = 0; k < n; k++) {
            buf[k] = !train ? 1.0f : slm__rng_unit(&s) < keep ? scale : 0.0f;
        }
        if (!host) {
            ggml_backend_tensor_set(d, buf, 0, ggml_nbytes(d));
            free(buf);
        }
    }
}

/* Summed loss over the real loss rows of the micro-batch just computed. */
static double micro_loss_sum(struct slm_trainer *tr, struct ggml_tensor *ce_t) {
    float ce = 0;
    ggml_backend_tensor_get(ce_t, &ce, 0, sizeof(ce));
    double unused = (double)(tr->C - (int32_t)tr->hb.n_target);
    return (double)ce * tr->C - unused * log((double)tr->m->hp.n_vocab);
}

static float lr_at(const struct slm_tune_params *p, uint32_t step, uint32_t n_steps) {
    uint32_t warm = p->warmup ? p->warmup : n_steps / 20;
    if (warm > 0 && step < warm) {
        return p->lr * (float)(step + 1) / (float)warm;
    }
    double span = n_steps > warm ? (double)(n_steps - warm) : 1.0;
    double prog = (double)(step - warm) / span;
    prog = prog > 1 ? 1 : prog;
    double c = 0.5 * (1.0 + cos(3.14159265358979323846 * prog));
    return (float)(p->lr * (p->lr_min + (1.0 - p->lr_min) * c));
}

static int train_step(struct slm_trainer *tr, float *loss_out, float *gnorm_out, float *lr_out,
                      struct slm_err *err) {
    const uint32_t accum = tr->p.grad_accum;
    const size_t row0 = (size_t)tr->step * rows_per_step(tr);
    uint32_t n_target = 0;
    for (size_t r = row0; r < row0 + rows_per_step(tr) && r < tr->plan.n_rows; r++) {
        n_target += tr->plan.rows[r].n_target;
    }
    float scale = n_target ? (float)tr->C / (float)n_target : 0.0f;
    ggml_backend_tensor_set(tr->loss_scale, &scale, 0, sizeof(scale));
    slm__bufs_clear(&tr->buf_acc, 0);
    double sum = 0;
    for (uint32_t k = 0; k < accum; k++) {
        slm__batch_fill(&tr->hb, &tr->plan, tr->train, row0 + (size_t)k * tr->p.batch, tr->T, tr->B,
                        tr->C, tr->m->hp.n_vocab);
        upload_batch(tr);
        upload_dropout(tr, (uint64_t)tr->step * accum + k, true);
        int rc = slm__runner_compute(tr->run_train, tr->gb, err);
        if (rc != SLM_OK) {
            return rc;
        }
        sum += micro_loss_sum(tr, tr->ce);
        tr->tokens_done += tr->hb.n_tok;
    }
    tr->opt_iter++;
    const struct slm_tune_params *p = &tr->p;
    float lr = lr_at(p, tr->step, tr->n_steps);
    float par[7] = {lr,
                    p->beta1,
                    p->beta2,
                    p->eps,
                    p->weight_decay,
                    1.0f / (1.0f - powf(p->beta1, (float)tr->opt_iter)),
                    1.0f / (1.0f - powf(p->beta2, (float)tr->opt_iter))};
    ggml_backend_tensor_set(tr->adamw_par, par, 0, sizeof(par));
    int rc = slm__runner_compute(tr->run_opt, tr->gopt, err);
    if (rc != SLM_OK) {
        return rc;
    }
    float n2 = 0;
    ggml_backend_tensor_get(tr->gnorm2, &n2, 0, sizeof(n2));
    *gnorm_out = sqrtf(n2);
    *loss_out = n_target ? (float)(sum / n_target) : NAN;
    *lr_out = lr;
    tr->step++;
    return SLM_OK;
}

static int eval_plan(struct slm_trainer *tr, const struct slm__plan *pl,
                     const struct slm_dataset *ds, uint32_t max_batches, float *out,
                     struct slm_err *err) {
    double sum = 0;
    uint64_t n = 0;
    uint32_t nb = 0;
    const float one = 1.0f;
    ggml_backend_tensor_set(tr->loss_scale, &one, 0, sizeof(one));
    upload_dropout(tr, 0, false);
    for (size_t r0 = 0; r0 < pl->n_rows; r0 += (size_t)tr->B) {
        if (max_batches && nb++ >= max_batches) {
            break;
        }
        slm__batch_fill(&tr->hb, pl, ds, r0, tr->T, tr->B, tr->C, tr->m->hp.n_vocab);
        if (tr->hb.n_target == 0) {
            continue;
        }
        upload_batch(tr);
        int rc = slm__runner_compute(tr->run_eval, tr->gf_eval, err);
        if (rc != SLM_OK) {
            return rc;
        }
        sum += micro_loss_sum(tr, tr->ce_eval);
        n += tr->hb.n_target;
    }
    *out = n ? (float)(sum / (double)n) : NAN;
    return SLM_OK;
}

int slm__trainer_probe(struct slm_trainer *tr, size_t row0, bool backward, float *loss,
                       struct slm_err *err) {
    slm__batch_fill(&tr->hb, &tr->plan, tr->train, row0, tr->T, tr->B, tr->C, tr->m->hp.n_vocab);
    float scale = tr->hb.n_target ? (float)tr->C / (float)tr->hb.n_target : 0.0f;
    ggml_backend_tensor_set(tr->loss_scale, &scale, 0, sizeof(scale));
    upload_batch(tr);
    upload_dropout(tr, 0, false);
    if (backward) {
        slm__bufs_clear(&tr->buf_acc, 0);
    }
    int rc = slm__runner_compute(backward ? tr->run_train : tr->run_eval,
                                 backward ? tr->gb : tr->gf_eval, err);
    if (rc == SLM_OK) {
        *loss = (float)(micro_loss_sum(tr, backward ? tr->ce : tr->ce_eval) /
                        (double)(tr->hb.n_target ? tr->hb.n_target : 1));
    }
    return rc;
}

int slm_trainer_eval(struct slm_trainer *tr, const struct slm_dataset *ds, float *loss,
                     struct slm_err *err) {
    if (!ds) {
        if (!tr->valid) {
            *loss = NAN;
            return SLM_OK;
        }
        return eval_plan(tr, &tr->vplan, tr->valid, tr->p.eval_max_batches, loss, err);
    }
    struct slm__plan pl;
    if (slm__plan_build(&pl, ds, tr->T, tr->B, !tr->p.no_packing, false, 0, 0) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (slm__plan_max_targets(&pl, tr->B) > (uint32_t)tr->C) {
        slm__plan_free(&pl);
        return slm_err_set(err, SLM_E_TOO_LARGE,
                           "this dataset has more loss tokens per batch than the trainer was "
                           "built for");
    }
    int rc = eval_plan(tr, &pl, ds, 0, loss, err);
    slm__plan_free(&pl);
    return rc;
}

static void record_valid(struct slm_trainer *tr, float v) {
    tr->last_valid = v;
    if (tr->n_hist_valid < tr->n_steps + 2) {
        tr->hist_valid[tr->n_hist_valid] = v;
        tr->hist_vstep[tr->n_hist_valid] = tr->step;
        tr->n_hist_valid++;
    }
}

#define SLM_TUNE_CKPT_MIN_S 60.0

int slm_trainer_run(struct slm_trainer *tr, slm_tune_progress_cb cb, void *user,
                    struct slm_err *err) {
    const struct slm_tune_params *p = &tr->p;
    uint32_t every = p->eval_every ? p->eval_every : (tr->n_steps >= 10 ? tr->n_steps / 10 : 1);
    uint32_t ck_every =
        p->checkpoint_every ? p->checkpoint_every : (tr->n_steps >= 20 ? tr->n_steps / 20 : 1);
    double t0 = slm_time_mono(), last_ck = t0;
    uint64_t tok0 = tr->tokens_done;
    uint32_t step0 = tr->step;
    int rc = SLM_OK;
    if (tr->valid && tr->step == 0 && tr->n_hist_valid == 0) {
        float v;
        if ((rc = slm_trainer_eval(tr, NULL, &v, err)) != SLM_OK) {
            return rc;
        }
        record_valid(tr, v);
    }
    while (tr->step < tr->n_steps) {
        struct slm_tune_progress pr;
        memset(&pr, 0, sizeof(pr));
        if ((rc = train_step(tr, &pr.loss, &pr.grad_norm, &pr.lr, err)) != SLM_OK) {
            return rc;
        }
        tr->hist_train[tr->n_hist_train < tr->n_steps ? tr->n_hist_train++ : tr->n_steps - 1] =
            pr.loss;
        if (tr->valid && (tr->step % every == 0 || tr->step == tr->n_steps)) {
            float v;
            if ((rc = slm_trainer_eval(tr, NULL, &v, err)) != SLM_OK) {
                return rc;
            }
            record_valid(tr, v);
            pr.did_eval = true;
        }
        /* The automatic schedule writes at most one a minute: a LoRA
         * checkpoint of a 135M model is 58 MB, and a short run checkpointing
         * at every 5% spent 9% of its time writing them. */
        if (p->checkpoint && tr->step % ck_every == 0 && tr->step < tr->n_steps &&
            (p->checkpoint_every || slm_time_mono() - last_ck >= SLM_TUNE_CKPT_MIN_S)) {
            if ((rc = slm__ckpt_save(tr, p->checkpoint, err)) != SLM_OK) {
                return rc;
            }
            last_ck = slm_time_mono();
        }
        double el = slm_time_mono() - t0;
        pr.step = tr->step;
        pr.n_steps = tr->n_steps;
        pr.epoch = tr->plan.rows_per_epoch
                       ? (double)tr->step * rows_per_step(tr) / (double)tr->plan.rows_per_epoch
                       : 0;
        pr.valid_loss = tr->last_valid;
        pr.elapsed_s = el;
        pr.tokens = tr->tokens_done;
        pr.tokens_per_s = el > 0 ? (double)(tr->tokens_done - tok0) / el : 0;
        pr.eta_s = el / (double)(tr->step - step0) * (double)(tr->n_steps - tr->step);
        if (cb && cb(&pr, user) != 0) {
            if (p->checkpoint && (rc = slm__ckpt_save(tr, p->checkpoint, err)) != SLM_OK) {
                return rc;
            }
            return slm_err_set(err, SLM_E_ABORTED, "training stopped at step %u of %u%s", tr->step,
                               tr->n_steps, p->checkpoint ? " (checkpoint written)" : "");
        }
    }
    if (p->checkpoint) {
        rc = slm__ckpt_save(tr, p->checkpoint, err);
    }
    return rc;
}

int slm_trainer_resume(struct slm_trainer *tr, const char *path, struct slm_err *err) {
    return slm__ckpt_load(tr, path, err);
}

int slm_trainer_save(struct slm_trainer *tr, const char *path, struct slm_err *err) {
    return tr->p.method == SLM_TUNE_LORA ? slm__save_adapter(tr, path, err)
                                         : slm__save_full(tr, path, err);
}

void slm_trainer_history(const struct slm_trainer *tr, const float **train_loss, size_t *n_train,
                         const float **valid_loss, const uint32_t **valid_step, size_t *n_valid) {
    *train_loss = tr->hist_train;
    *n_train = tr->n_hist_train;
    *valid_loss = tr->hist_valid;
    *valid_step = tr->hist_vstep;
    *n_valid = tr->n_hist_valid;
}

uint32_t slm_trainer_n_steps(const struct slm_trainer *tr) {
    return tr->n_steps;
}

uint64_t slm_trainer_n_trainable(const struct slm_trainer *tr) {
    return tr->n_trainable;
}

/* ---------------------------------------------------------------- forward */

int slm_tune_forward_logits(struct slm_tune_model *model, struct slm_trainer *tr,
                            const int32_t *tokens, size_t n, float *logits, struct slm_err *err) {
    if (n == 0 || n > 65536) {
        return slm_err_set(err, SLM_E_INVALID, "forward: 1 to 65536 tokens");
    }
    const int32_t T = (int32_t)n;
    size_t mem = (size_t)SLM_TUNE_GRAPH_SIZE * ggml_tensor_overhead() +
                 ggml_graph_overhead_custom(SLM_TUNE_GRAPH_SIZE, false);
    struct ggml_init_params ip = {mem, NULL, true};
    struct ggml_context *ctx = ggml_init(ip);
    struct slm__runner *run = slm__runner_new(model);
    int32_t *pos = malloc(n * sizeof(int32_t));
    int32_t *seg = calloc(n, sizeof(int32_t));
    float *mask = malloc(n * n * sizeof(float));
    int rc = SLM_OK;
    if (!ctx || !run || !pos || !seg || !mask) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }
    struct slm__graph_in in = {.T = T, .B = 1, .C = T};
    in.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    in.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    in.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, 1);
    ggml_set_input(in.tokens);
    ggml_set_input(in.pos);
    ggml_set_input(in.mask);
    if (tr) {
        in.lora = tr->lora;
        in.lora_scale = tr->in.lora_scale;
    }
    struct ggml_cgraph *g = ggml_new_graph_custom(ctx, SLM_TUNE_GRAPH_SIZE, false);
    struct ggml_tensor *out = slm__build_forward(ctx, model, &in);
    ggml_set_output(out);
    ggml_build_forward_expand(g, out);
    if ((rc = slm__runner_alloc(run, g, err)) != SLM_OK) {
        goto done;
    }
    for (int32_t i = 0; i < T; i++) {
        pos[i] = i;
    }
    slm__fill_mask(mask, seg, T);
    ggml_backend_tensor_set(in.tokens, tokens, 0, n * sizeof(int32_t));
    ggml_backend_tensor_set(in.pos, pos, 0, n * sizeof(int32_t));
    ggml_backend_tensor_set(in.mask, mask, 0, n * n * sizeof(float));
    if (tr) {
        ggml_backend_cpu_set_n_threads(model->backend_cpu, tr->p.n_threads);
    }
    if ((rc = slm__runner_run(run, g, err)) != SLM_OK) {
        goto done;
    }
    ggml_backend_tensor_get(out, logits, 0, ggml_nbytes(out));
done:
    free(pos);
    free(seg);
    free(mask);
    slm__runner_free(run);
    if (ctx) {
        ggml_free(ctx);
    }
    return rc;
}
