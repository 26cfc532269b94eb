/*
 * tune/train_internal.h - the trainer's state, shared by train.c (graph and
 * loop), plan.c (packing rows into micro-batches) and save.c (checkpoints,
 * adapters, full models); the kernel rewriter (rewrite.h) sees none of it.
 * Never included outside src/tune/.
 */
#ifndef SLM_TUNE_TRAIN_INTERNAL_H
#define SLM_TUNE_TRAIN_INTERNAL_H

#include <ggml-alloc.h>

#include "tune/internal.h"
#include "tune/rewrite.h"

struct slm_dataset {
    int32_t *tokens; /* all examples back to back */
    uint8_t *train;  /* per token: 1 when it is a loss target */
    size_t n_tok, cap_tok;
    size_t *off, *len, *line; /* per example */
    size_t n, cap;
    uint64_t n_target;
    size_t n_truncated;
};

/* A packed row: examples [first, first + count) of a plan's example list. */
struct slm__row {
    uint32_t first, count;
    uint32_t n_tok, n_target;
};

/* The order in which examples are packed into rows, micro-batches, steps. */
struct slm__plan {
    uint32_t *ex; /* example ids, rows index into it */
    size_t n_ex;
    struct slm__row *rows;
    size_t n_rows;
    size_t rows_per_epoch; /* rows in the first epoch (for the epoch counter) */
};

/* Host-side copy of one micro-batch's inputs. */
struct slm__batch {
    int32_t *tokens, *pos, *seg, *out_idx;
    float *mask, *targets, *lw;
    uint32_t n_tok, n_target; /* real tokens, loss rows in use */
};

struct slm_trainer {
    struct slm_tune_model *m;
    const struct slm_dataset *train, *valid;
    struct slm_tune_params p;
    int32_t T, B, C;
    uint32_t n_steps, step, opt_iter;

    struct ggml_context *ctx_static; /* inputs, LoRA weights, accumulators, moments */
    struct slm__bufs buf_static;
    struct slm__bufs buf_acc; /* the accumulators alone: cleared per step */
    struct ggml_context *ctx_acc;
    struct ggml_context *ctx_graph;               /* graph metadata (no data) */
    struct ggml_cgraph *gf, *gb, *gopt, *gf_eval; /* gf_eval: own tensors */
    struct slm__runner *run_train, *run_eval, *run_opt;

    struct slm__graph_in in;
    struct slm__lora *lora;
    struct ggml_tensor **drop;
    struct ggml_tensor *targets, *lw, *loss_scale, *ce, *ce_eval, *loss, *one;
    struct ggml_tensor *adamw_par, *clip_max, *gnorm2;

    struct ggml_tensor **params, **acc, **mom_m, **mom_v;
    size_t n_params;
    uint64_t n_trainable;

    /* transposed copies of frozen weights for the backward pass (rewrite.c) */
    struct slm__wt_set wt;

    struct slm__plan plan, vplan;
    struct slm__batch hb;
    size_t micro_per_step; /* B rows * grad_accum per step */

    float *hist_train;
    size_t n_hist_train;
    float *hist_valid;
    uint32_t *hist_vstep;
    size_t n_hist_valid;
    float last_valid;
    uint64_t tokens_done;
};

/* plan.c */
int slm__plan_build(struct slm__plan *pl, const struct slm_dataset *ds, int32_t T, int32_t B,
                    bool pack, bool shuffle, uint64_t seed, size_t min_rows);
void slm__plan_free(struct slm__plan *pl);
/* Largest number of loss rows any micro-batch of B rows has. */
uint32_t slm__plan_max_targets(const struct slm__plan *pl, int32_t B);
int slm__batch_alloc(struct slm__batch *hb, int32_t T, int32_t B, int32_t C, int32_t V);
void slm__batch_free(struct slm__batch *hb);
/* Fills `hb` with rows [row0, row0 + B) of the plan (missing rows are padding). */
void slm__batch_fill(struct slm__batch *hb, const struct slm__plan *pl,
                     const struct slm_dataset *ds, size_t row0, int32_t T, int32_t B, int32_t C,
                     int32_t V);

/* train.c: one micro-batch (rows row0..row0+B of the training plan), forward
 * and, with `backward`, gradients into the accumulators (cleared first).
 * `loss` is the mean over the batch's loss tokens. For gradient checks. */
int slm__trainer_probe(struct slm_trainer *tr, size_t row0, bool backward, float *loss,
                       struct slm_err *err);

/* save.c */
int slm__save_adapter(struct slm_trainer *tr, const char *path, struct slm_err *err);
int slm__save_full(struct slm_trainer *tr, const char *path, struct slm_err *err);
int slm__ckpt_save(struct slm_trainer *tr, const char *path, struct slm_err *err);
int slm__ckpt_load(struct slm_trainer *tr, const char *path, struct slm_err *err);

#endif
