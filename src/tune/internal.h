/*
 * tune/internal.h - what the tune module's files share; never included
 * outside src/tune/ (and its unit tests).
 *
 * Layout of the training view of a model: one ggml context holds the weight
 * tensors (frozen base, or trainable F32 weights for full fine-tuning). On
 * the CPU they live in plain CPU backend buffers (never a repack buffer type:
 * out_prod cannot read those). On another device, every weight whose ops the
 * device supports for its type lives in the device's buffers, the rest in
 * plain CPU buffers, and graphs run through a ggml_backend_sched over
 * [device, CPU] so that unsupported ops fall back to the CPU.
 */
#ifndef SLM_TUNE_INTERNAL_H
#define SLM_TUNE_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include <ggml-backend.h>
#include <ggml.h>
#include <gguf.h>

#include "slm/tune.h"

#define SLM_TUNE_N_PROJ 7
#define SLM_TUNE_GRAPH_SIZE 65536
#define SLM_TUNE_MAX_BUFS 32 /* buffers per tensor set (a device caps a buffer's size) */

enum slm__proj { P_Q, P_K, P_V, P_O, P_GATE, P_UP, P_DOWN };

/* GGUF tensor name suffixes of the seven projections ("blk.N.<name>.weight"). */
extern const char *const slm__proj_gguf[SLM_TUNE_N_PROJ];
/* Short names used on the command line ("q", "gate", ...). */
extern const char *const slm__proj_short[SLM_TUNE_N_PROJ];

struct slm__layer {
    struct ggml_tensor *attn_norm, *ffn_norm;
    struct ggml_tensor *w[SLM_TUNE_N_PROJ]; /* [n_in, n_out] */
    struct ggml_tensor *bq, *bk, *bv;       /* qwen2, may be NULL */
    struct ggml_tensor *q_norm, *k_norm;    /* qwen3, may be NULL */
};

struct slm__hparams {
    int32_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_rot, n_ctx_train;
    float eps, rope_base, rope_scale;
    int rope_type; /* 0 = normal (llama), 2 = neox (qwen) */
};

struct slm_tune_model {
    char arch[32];
    char path[4096];
    struct slm__hparams hp;
    struct slm_tune_model_params params;
    struct ggml_context *ctx_w;
    struct slm__bufs *bufs_w;
    ggml_backend_dev_t dev;     /* where training runs */
    ggml_backend_t backend;     /* its backend; == backend_cpu when it is the CPU */
    ggml_backend_t backend_cpu; /* fallback for what the device lacks; thread count */
    bool use_sched;             /* graphs go through ggml_backend_sched */
    uint32_t n_w_dev, n_w;      /* weight tensors on the device / in all */
    struct ggml_tensor *tok_embd, *output_norm, *output, *rope_freqs;
    bool tied_output; /* output == tok_embd */
    struct slm__layer *layers;
    struct slm_model *vocab; /* engine model, vocabulary only */
    uint64_t n_params;
    char base_type[16];
    /* For writing a full model: the source file's metadata. */
    struct gguf_context *gguf;
};

/* LoRA pair of one projection in one layer; NULL when not adapted. */
struct slm__lora {
    struct ggml_tensor *a; /* [n_in, r] */
    struct ggml_tensor *b; /* [r, n_out] */
};

/* What the forward graph builder needs besides the model. */
struct slm__graph_in {
    int32_t T, B, C;             /* tokens per row, rows, loss rows */
    struct ggml_tensor *tokens;  /* I32 [T*B] */
    struct ggml_tensor *pos;     /* I32 [T*B] */
    struct ggml_tensor *mask;    /* F32 [T, T, 1, B] */
    struct ggml_tensor *out_idx; /* I32 [C]: which positions get logits */
    struct ggml_tensor *out_w;   /* F32 [1, C] 0/1 per loss row (zero logits), or NULL */
    struct slm__lora *lora;      /* n_layer * 7, or NULL */
    float lora_scale;            /* alpha / r */
    struct ggml_tensor *
        *drop; /* n_layer * 4 dropout masks (attn in, o in, ffn in, down in) or NULL */
};

/* Buffers holding one set of tensors (some on a device, some on the CPU). */
struct slm__bufs {
    ggml_backend_buffer_t b[SLM_TUNE_MAX_BUFS];
    int n;
};

/* Allocates every tensor of `ctx` that has no data yet: those `on_dev` accepts
 * into buffers of `dev_bt`, the others (all of them when dev_bt is NULL) into
 * plain CPU buffers. `usage` is set on every buffer. On failure the buffers
 * made so far are freed. */
int slm__bufs_alloc(struct slm__bufs *out, struct ggml_context *ctx,
                    ggml_backend_buffer_type_t dev_bt,
                    bool (*on_dev)(const struct ggml_tensor *t, void *user), void *user,
                    enum ggml_backend_buffer_usage usage);
void slm__bufs_free(struct slm__bufs *b);
void slm__bufs_clear(struct slm__bufs *b, uint8_t value);
bool slm__bufs_has(const struct slm__bufs *b, const ggml_backend_buffer_t buf);

/* The device `want` names (see slm_tune_model_params.device). */
int slm__device_pick(const char *want, ggml_backend_dev_t *out, struct slm_err *err);

/* The device's buffer type when the model runs on a device other than the
 * CPU, else NULL (plain CPU buffers). */
ggml_backend_buffer_type_t slm__dev_buft(const struct slm_tune_model *m);

/* Runs graphs on the model's device: directly on the CPU backend with a
 * graph allocator, or through a scheduler over [device, CPU]. One runner per
 * fixed graph, so that its memory plan is made once. */
struct slm__runner;
struct slm__runner *slm__runner_new(struct slm_tune_model *m);
/* Plans the graph's memory ahead of the first compute (peak memory at init). */
bool slm__runner_reserve(struct slm__runner *r, struct ggml_cgraph *g);
/* Allocation and computation apart (graph-allocated inputs are set between
 * them), or both at once. */
int slm__runner_alloc(struct slm__runner *r, struct ggml_cgraph *g, struct slm_err *err);
int slm__runner_run(struct slm__runner *r, struct ggml_cgraph *g, struct slm_err *err);
int slm__runner_compute(struct slm__runner *r, struct ggml_cgraph *g, struct slm_err *err);
void slm__runner_free(struct slm__runner *r);

/* Builds the forward pass up to the logits [n_vocab, C]. */
struct ggml_tensor *slm__build_forward(struct ggml_context *ctx, const struct slm_tune_model *m,
                                       const struct slm__graph_in *in);

/* Fills a causal mask for rows whose examples start at `starts` (a block-
 * diagonal causal mask over packed examples): seg[t] is the example id of
 * token t in the row; -1 marks padding. */
void slm__fill_mask(float *mask, const int32_t *seg, int32_t T);

/* Writes a gguf context to `path` atomically (temp file, fsync, rename). */
int slm__gguf_write_atomic(const struct gguf_context *g, const char *path, struct slm_err *err);

/* The projection's weight tensor name in GGUF: "blk.3.attn_q.weight". */
void slm__proj_name(int layer, int proj, char *out, size_t cap);

/* splitmix64: the module's only random source, so runs are reproducible. */
static inline uint64_t slm__rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline double slm__rng_unit(uint64_t *s) {
    return (double)(slm__rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* `asked` when given; else one thread for models under 20M parameters
 * (ggml meets its threads at a spinning barrier after every op, and a small
 * model's ops are too short to pay for it: 7-9x slower with two threads on a
 * busy machine), all cores' default otherwise. Training and evaluation. */
int32_t slm__tune_threads(uint64_t n_params, int32_t asked);

#endif
