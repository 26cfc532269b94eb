/*
 * tune/rewrite.h - the training graph's kernel rewriter (rewrite.c): after
 * ggml's autodiff has built a graph, nodes whose ggml kernel is slow in the
 * shape at hand are replaced by ones that compute the same values faster
 * (docs/internals/tune.md), and frozen weights get transposed copies so the
 * backward pass can use the fast matmul instead of out_prod.
 *
 * Internal to src/tune/: the trainer (train.c) is its only user. It reads the
 * model's weights and device; it owns nothing but the copies in a
 * struct slm__wt_set, which the trainer holds and frees.
 */
#ifndef SLM_TUNE_REWRITE_H
#define SLM_TUNE_REWRITE_H

#include "tune/internal.h"

/* Transposed copies Wt of frozen weights W, made once per trainer. */
struct slm__wt_set {
    struct ggml_context *ctx;      /* the copies' metadata */
    struct slm__bufs buf;          /* their data */
    struct ggml_tensor **t, **src; /* t[i] = transpose(src[i]) */
    size_t n, cap;
    size_t f32_bytes; /* F32 copies so far (they have a budget) */
};

/* Which rewrites run (slm_tune_params.no_weight_transpose, .no_graph_rewrite). */
struct slm__rewrite_opts {
    bool weights; /* out_prod through a frozen weight: mul_mat with its transposed copy */
    bool general; /* the shape-driven out_prod / mul_mat swaps */
};

/* Room for up to `cap` copies. Nothing is allocated on the device yet. */
int slm__wt_init(struct slm__wt_set *ws, size_t cap, struct slm_err *err);
/* Frees the copies; a zeroed set is fine. */
void slm__wt_free(struct slm__wt_set *ws);

/*
 * Rewrites the nodes of *g in place (new tensors and, when any were added, a
 * new graph replacing *g go into `ctx`, which must have room for a graph of
 * SLM_TUNE_GRAPH_SIZE nodes). Copies the weight rewrite asks for are declared
 * in `ws`; slm__wt_fill() gives them their values. SLM_E_NOMEM only.
 */
int slm__rewrite_graph(struct slm_tune_model *m, struct slm__wt_set *ws, struct ggml_context *ctx,
                       struct ggml_cgraph **g, struct slm__rewrite_opts opts, struct slm_err *err);

/* Allocates the declared copies (on the model's device where their weight
 * is) and fills them. Call once, after the last slm__rewrite_graph(). */
int slm__wt_fill(struct slm_tune_model *m, struct slm__wt_set *ws, struct slm_err *err);

#endif
