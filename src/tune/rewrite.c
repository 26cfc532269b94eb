/*
 * tune/rewrite.c - the training graph's kernel rewriter (rewrite.h): rewrites
 * that keep the math and change the kernel, and the transposed copies of
 * frozen weights that the backward pass's rewritten nodes read.
 *
 * Not the graph itself (model.c builds the forward pass, ggml's autodiff the
 * backward one) and not the trainer (train.c decides when to rewrite).
 */
#include "tune/rewrite.h"

#include <stdlib.h>
#include <string.h>

/*
 * The gradient of mul_mat(W, x) with respect to x is W^T g, which ggml's
 * autodiff computes as out_prod(W, transpose(g)). For a quantized W that
 * kernel dequantizes every row of W once per token (T times the whole
 * matrix): on a 135M model it was 40% of a step. A frozen weight never
 * changes, so a transposed copy Wt ([n_out, n_in], same type) turns that node
 * into mul_mat(Wt, g), the fast quantized matmul (or sgemm for F32).
 */
static struct ggml_tensor *transposed(struct slm__wt_set *ws, struct ggml_tensor *w) {
    for (size_t i = 0; i < ws->n; i++) {
        if (ws->src[i] == w) {
            return ws->t[i];
        }
    }
    if (ws->n == ws->cap) {
        return NULL;
    }
    struct ggml_tensor *t = ggml_new_tensor_2d(ws->ctx, w->type, w->ne[1], w->ne[0]);
    ggml_format_name(t, "%.*s.T", GGML_MAX_NAME - 3, ggml_get_name(w));
    ws->src[ws->n] = w;
    ws->t[ws->n++] = t;
    if (w->type == GGML_TYPE_F32) {
        ws->f32_bytes += ggml_nbytes(w);
    }
    return t;
}

/* Quantized frozen weights always; F32 ones while the copies stay under a
 * budget (a copy doubles F32 memory). The backward pass meets the output
 * projection first, the largest weight, whose per-step transpose would
 * otherwise be the largest transient tensor of the step: a copy of it costs
 * little peak memory. Weights without a copy are transposed in the graph
 * (`rewrite_node`), which beats F32 out_prod but costs time every step. */
#define SLM_TUNE_F32_TRANSPOSE_MAX ((size_t)256 << 20)

static bool reroutable(const struct slm_tune_model *m, const struct slm__wt_set *ws,
                       const struct ggml_tensor *w) {
    if (!slm__bufs_has(m->bufs_w, w->buffer) || (w->flags & GGML_TENSOR_FLAG_PARAM) ||
        ggml_n_dims(w) != 2 || w->ne[1] % ggml_blck_size(w->type) != 0) {
        return false;
    }
    if (ggml_is_quantized(w->type)) {
        return true;
    }
    if (w->type != GGML_TYPE_F32) {
        return false;
    }
    for (size_t i = 0; i < ws->n; i++) {
        if (ws->src[i] == w) {
            return true;
        }
    }
    return ws->f32_bytes + ggml_nbytes(w) <= SLM_TUNE_F32_TRANSPOSE_MAX;
}

/* Fills Wt = transpose(W), row by row through F32. */
static int fill_transposed(struct ggml_tensor *wt, const struct ggml_tensor *w) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const struct ggml_type_traits *tr = ggml_get_type_traits(w->type);
    /* W itself when it is in host memory (one buffer less: init's peak
     * memory counts too), else a copy read back from the device */
    const bool host = ggml_backend_buffer_is_host(w->buffer);
    void *wcopy = host ? NULL : malloc(ggml_nbytes(w));
    if (!host && !wcopy) {
        return SLM_E_NOMEM;
    }
    if (!host) {
        ggml_backend_tensor_get(w, wcopy, 0, ggml_nbytes(w));
    }
    const void *wdata = host ? w->data : wcopy;
    if (w->type == GGML_TYPE_F32) {
        float *ft = malloc(ggml_nbytes(wt));
        if (!ft) {
            free(wcopy);
            return SLM_E_NOMEM;
        }
        const float *f = (const float *)wdata;
        for (int64_t o = 0; o < n_out; o++) {
            for (int64_t i = 0; i < n_in; i++) {
                ft[i * n_out + o] = f[o * n_in + i];
            }
        }
        ggml_backend_tensor_set(wt, ft, 0, ggml_nbytes(wt));
        free(ft);
        free(wcopy);
        return SLM_OK;
    }
    float *f = malloc((size_t)(n_in * n_out) * sizeof(float));
    float *ft = malloc((size_t)(n_in * n_out) * sizeof(float));
    void *q = malloc(ggml_nbytes(wt));
    if (!f || !ft || !q) {
        free(f);
        free(ft);
        free(q);
        free(wcopy);
        return SLM_E_NOMEM;
    }
    tr->to_float(wdata, f, n_in * n_out);
    free(wcopy);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) {
            ft[i * n_out + o] = f[o * n_in + i];
        }
    }
    ggml_quantize_chunk(wt->type, ft, q, 0, n_in, n_out, NULL);
    ggml_backend_tensor_set(wt, q, 0, ggml_nbytes(wt));
    free(f);
    free(ft);
    free(q);
    return SLM_OK;
}

/*
 * Rewrites that keep the math and change the kernel. ggml's CPU out_prod
 * vectorizes along its output's first dimension only, and only in chunks of
 * 64 floats: with a LoRA rank of 16 or a head size of 8 it runs scalar code.
 * Its matmul (tinyBLAS) is fast when the contraction is a multiple of 16 and
 * slow when it is tiny (8: stories260K's heads). So, node by node:
 *
 * - out_prod(W, transpose(g)) with W a frozen weight: mul_mat(Wt, g), with Wt
 *   a transposed copy made once at init (see `transposed`);
 * - any other F32 out_prod(a, b) whose first dimension is short or whose b is
 *   a transposed view with a long contraction (a short one, a LoRA rank, is
 *   read in contiguous runs): transpose(out_prod(b, a)) when b has long rows (only
 *   the small result is copied), else mul_mat(aT, bT) with the transposes
 *   made contiguous by copies in the graph, when the contraction suits the
 *   matmul;
 * - mul_mat(a, b) with a contraction of 16 or less (attention's K·Q on tiny
 *   heads, LoRA's B (A x) at rank 16): out_prod(aT, transpose(b)),
 *   vectorized along the long side. tinyBLAS sums each output over the
 *   contraction in one register and then across it, so a contraction of 16
 *   is one multiply-add per horizontal sum: on a 135M model those 420
 *   matmuls took 7% of a step and did not scale with threads; as out_prod
 *   they take a third of that.
 *
 * New tensors go into a new graph (the nodes in order, each with its sources
 * first). slm_tune_params.no_graph_rewrite turns the last two off (tests
 * compare).
 */
struct rewriter {
    struct slm_tune_model *m;
    struct slm__wt_set *ws;
    struct ggml_context *ctx;
    struct ggml_tensor **memo_src, **memo_t;
    size_t n_memo, cap_memo;
    bool weights, general, added; /* added: new tensors, so a new graph */
    bool cpu;                     /* the device is the CPU (whose kernels these suit) */
};

/* Contractions this short go to out_prod rather than the matmul. */
#define SLM_TUNE_SHORT_K 16

/* A contiguous transpose of t (dims 0 and 1), made once per tensor. */
static struct ggml_tensor *ctrans(struct rewriter *rw, struct ggml_tensor *t) {
    if (t->op == GGML_OP_TRANSPOSE && ggml_is_contiguous(t->src[0])) {
        return t->src[0];
    }
    for (size_t i = 0; i < rw->n_memo; i++) {
        if (rw->memo_src[i] == t) {
            return rw->memo_t[i];
        }
    }
    struct ggml_tensor *c = ggml_cont(rw->ctx, ggml_transpose(rw->ctx, t));
    rw->added = true;
    if (rw->n_memo < rw->cap_memo) {
        rw->memo_src[rw->n_memo] = t;
        rw->memo_t[rw->n_memo++] = c;
    }
    return c;
}

static bool is_f32(const struct ggml_tensor *t) {
    return t && t->type == GGML_TYPE_F32;
}

static void set_op(struct ggml_tensor *node, enum ggml_op op, struct ggml_tensor *a,
                   struct ggml_tensor *b) {
    node->op = op;
    memset(node->op_params, 0, sizeof(node->op_params));
    node->src[0] = a;
    node->src[1] = b;
}

static void rewrite_node(struct rewriter *rw, struct ggml_tensor *node) {
    struct ggml_tensor *a = node->src[0], *b = node->src[1];
    if (!a || !b) {
        return;
    }
    if (node->op == GGML_OP_OUT_PROD && rw->weights && reroutable(rw->m, rw->ws, a) &&
        b->op == GGML_OP_TRANSPOSE && is_f32(b->src[0])) {
        struct ggml_tensor *wt = transposed(rw->ws, a);
        if (wt) {
            set_op(node, GGML_OP_MUL_MAT, wt, b->src[0]);
            return;
        }
    }
    if (!rw->general || !is_f32(a) || !is_f32(b) || a->ne[3] != 1 || b->ne[3] != 1) {
        return;
    }
    if (node->op == GGML_OP_OUT_PROD) {
        /* out_prod(a, b)[i, j] = sum_k a[i, k] b[j, k] = mul_mat(aT, bT) */
        const int64_t k = a->ne[1];
        /* A transposed b is read along k: on the CPU fine while k is a
         * LoRA rank (16 floats in a row), slow when it is a sequence. A
         * GPU's out_prod wants contiguous sources: there it is rewritten. */
        bool slow = a->ne[0] < 64 || (ggml_is_transposed(b) && (!rw->cpu || k > SLM_TUNE_SHORT_K));
        bool fits = k % 16 == 0 || k >= 128;
        if (!slow) {
            return;
        }
        if (!ggml_is_transposed(b) && b->ne[0] >= 64 && a->ne[2] == b->ne[2]) {
            /* = transpose(out_prod(b, a)): vectorized along b's long rows, and
             * only the small result is transposed (not b) */
            struct ggml_tensor *t = ggml_out_prod(rw->ctx, b, a);
            set_op(node, GGML_OP_CONT, ggml_transpose(rw->ctx, t), NULL);
            rw->added = true;
        } else if (fits) {
            set_op(node, GGML_OP_MUL_MAT, ctrans(rw, a), ctrans(rw, b));
        }
    } else if (node->op == GGML_OP_MUL_MAT && rw->cpu) {
        /* mul_mat(a, b)[i, j] = sum_k a[k, i] b[k, j] = out_prod(aT, transpose(b)).
         * CPU only: a GPU's out_prod wants contiguous sources, so this one
         * would fall back to the CPU there. */
        if (a->ne[0] <= SLM_TUNE_SHORT_K && a->ne[1] >= 64 && ggml_is_contiguous(a)) {
            set_op(node, GGML_OP_OUT_PROD, ctrans(rw, a), ggml_transpose(rw->ctx, b));
            rw->added = true;
        }
    }
}

static bool is_view_op(enum ggml_op op) {
    return op == GGML_OP_VIEW || op == GGML_OP_RESHAPE || op == GGML_OP_PERMUTE ||
           op == GGML_OP_TRANSPOSE;
}

int slm__rewrite_graph(struct slm_tune_model *m, struct slm__wt_set *ws, struct ggml_context *ctx,
                       struct ggml_cgraph **g, struct slm__rewrite_opts opts, struct slm_err *err) {
    struct rewriter rw = {m, ws, ctx, NULL, NULL, 0, 0, false, false, false, false};
    rw.cpu = m->backend == m->backend_cpu;
    rw.weights = opts.weights;
    rw.general = opts.general;
    int n = ggml_graph_n_nodes(*g);
    rw.cap_memo = (size_t)n;
    rw.memo_src = calloc(rw.cap_memo, sizeof(*rw.memo_src));
    rw.memo_t = calloc(rw.cap_memo, sizeof(*rw.memo_t));
    if (!rw.memo_src || !rw.memo_t) {
        free(rw.memo_src);
        free(rw.memo_t);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        rewrite_node(&rw, ggml_graph_node(*g, i));
    }
    free(rw.memo_src);
    free(rw.memo_t);
    if (rw.added) {
        struct ggml_cgraph *ng = ggml_new_graph_custom(ctx, SLM_TUNE_GRAPH_SIZE, false);
        for (int i = 0; i < n; i++) {
            /* Views come in with their users: a view nobody reads any more
             * (the transpose a rewrite replaced) would otherwise keep its
             * source allocated to the end of the graph. */
            struct ggml_tensor *node = ggml_graph_node(*g, i);
            if (!is_view_op(node->op)) {
                ggml_build_forward_expand(ng, node);
            }
        }
        *g = ng;
    }
    return SLM_OK;
}

struct wt_where {
    const struct slm_tune_model *m;
    const struct slm__wt_set *ws;
};

static bool wt_on_dev(const struct ggml_tensor *t, void *user) {
    const struct wt_where *w = user;
    for (size_t i = 0; i < w->ws->n; i++) {
        if (w->ws->t[i] == t) {
            const ggml_backend_buffer_t src = w->ws->src[i]->buffer;
            return !ggml_backend_buffer_is_host(src) ||
                   ggml_backend_buffer_get_type(src) == slm__dev_buft(w->m);
        }
    }
    return false;
}

int slm__wt_fill(struct slm_tune_model *m, struct slm__wt_set *ws, struct slm_err *err) {
    if (ws->n == 0) {
        return SLM_OK;
    }
    /* Each copy where its weight is: the device supports mul_mat on that type. */
    struct wt_where where = {m, ws};
    if (slm__bufs_alloc(&ws->buf, ws->ctx, slm__dev_buft(m), wt_on_dev, &where,
                        GGML_BACKEND_BUFFER_USAGE_WEIGHTS) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "cannot allocate transposed weights");
    }
    for (size_t i = 0; i < ws->n; i++) {
        if (fill_transposed(ws->t[i], ws->src[i]) != SLM_OK) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory transposing weights");
        }
    }
    return SLM_OK;
}

int slm__wt_init(struct slm__wt_set *ws, size_t cap, struct slm_err *err) {
    memset(ws, 0, sizeof(*ws));
    ws->cap = cap;
    ws->t = calloc(cap, sizeof(*ws->t));
    ws->src = calloc(cap, sizeof(*ws->src));
    struct ggml_init_params ip = {(cap + 1) * ggml_tensor_overhead(), NULL, true};
    ws->ctx = ggml_init(ip);
    if (!ws->t || !ws->src || !ws->ctx) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return SLM_OK;
}

void slm__wt_free(struct slm__wt_set *ws) {
    slm__bufs_free(&ws->buf);
    if (ws->ctx) {
        ggml_free(ws->ctx);
    }
    free(ws->t);
    free(ws->src);
    memset(ws, 0, sizeof(*ws));
}
