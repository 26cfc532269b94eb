/*
 * slm/memory.h - "will it fit?": one estimate of the memory a model needs, read from its GGUF
 * header without loading the weights, and the check that refuses what will not fit (engine
 * module). `slm show` prints it, `slm pull` warns with it, `slm run` and the server's model
 * pool (slm/sched.h) refuse with it; docs/memory.md compares it with measured peak RSS.
 *
 * The estimate is the peak resident memory of a process that loads the model and fills its
 * context: the process itself (binary, libraries, threads), the weights (each tensor's bytes at
 * its type), the KV cache (every cell of every layer at the cache type), the compute buffer a
 * full batch touches (the attention mask over the context and the activations of n_ubatch
 * tokens), the output rows (logits and the sampler's candidates per sequence), the tokenizer's
 * tables, and the adapters' files. It models what llama.cpp v0.5.0 allocates on the CPU
 * (docs/internals/engine.md); with a GPU backend the same bytes are split between RAM and VRAM.
 *
 * Thread safety: every function here may be called from any thread.
 */
#ifndef SLM_MEMORY_H
#define SLM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "slm/base.h"
#include "slm/engine.h"
#include "slm/sys.h"

/* What the model will be loaded with. Zero means the default of the context that uses it. */
struct slm_mem_params {
    uint32_t n_ctx;     /* KV cells in all (every sequence's); 0 = min(training context, 4096)
                           times n_parallel, as slm_ctx_init and slm_sched_init pick */
    int32_t n_parallel; /* sequences, each with its own KV stream of n_ctx / n_parallel; 0 = 1 */
    uint32_t n_batch;   /* tokens per decode; 0 = 512 (the physical batch is at most 512) */
    bool kv_f32;        /* F32 KV cache (slm_ctx_params.kv_f32); default F16 */
    const char *const *adapter_paths; /* LoRA adapter files (borrowed), counted by file size */
    size_t n_adapters;
};

struct slm_mem_params slm_mem_params_default(void);

/* The estimate, in bytes, part by part; `total` is their sum (saturating). */
struct slm_mem_estimate {
    uint32_t n_ctx;     /* KV cells as llama.cpp will make them (padded to 256 per stream) */
    uint32_t n_ctx_seq; /* cells per sequence */
    int32_t n_parallel;
    uint32_t n_ubatch;
    uint64_t baseline;      /* the process before any model: binary, libraries, threads */
    uint64_t weights;       /* tensor data, each tensor at its own type */
    uint64_t kv;            /* K and V of every layer for n_ctx cells */
    uint64_t kv_per_cell;   /* bytes of one cell over all layers (K + V) */
    uint64_t attn_per_cell; /* compute bytes of one cell of a sequence's context */
    uint64_t compute;  /* attention mask over n_ctx_seq cells + activations of n_ubatch tokens */
    uint64_t output;   /* logits and sampler candidates of n_parallel rows */
    uint64_t vocab;    /* the tokenizer's tables */
    uint64_t adapters; /* LoRA adapter files */
    uint64_t total;
};

/*
 * The estimate for a model described by `info` (from slm_gguf_read_info) with `params` (NULL
 * for the defaults) and `adapter_bytes` of adapters. Pure: no I/O, so it is what the tests
 * check. Header values are the file's word; a product that would wrap saturates (the model
 * then does not fit) instead of making a huge model look small.
 */
void slm_mem_estimate_info(const struct slm_model_info *info, const struct slm_mem_params *params,
                           uint64_t adapter_bytes, struct slm_mem_estimate *out);

/*
 * Reads the GGUF header at `path` (not the weights) and the adapters' sizes, then estimates as
 * slm_mem_estimate_info. `info` (may be NULL) receives the header's facts. SLM_E_NOT_FOUND,
 * SLM_E_INVALID (not a GGUF), SLM_E_CORRUPT (damaged header) or SLM_E_IO, naming the file.
 */
int slm_mem_estimate(const char *path, const struct slm_mem_params *params,
                     struct slm_mem_estimate *out, struct slm_model_info *info,
                     struct slm_err *err);

/*
 * The memory slm may use now: slm_mem_available() (RAM, under the cgroup limit, or
 * SLM_MEMORY_AVAILABLE) plus the free memory of the GPUs llama.cpp's backends report, when a
 * GPU backend is built. `vram_free` and `vram_total` (may be NULL) receive the GPUs' part
 * alone (0 without a GPU).
 */
void slm_mem_usable(struct slm_mem_avail *out, uint64_t *vram_free, uint64_t *vram_total);

/*
 * SLM_OK when `e` fits in `available` bytes; else SLM_E_NOMEM with the message every caller
 * shows: "NAME needs about X MiB (weights A, KV cache B for ctx N, compute C) but Y MiB is
 * available; try --ctx-size M or a smaller quantization (e.g. Q4_K_M), or --force". M is the
 * largest context (a multiple of 256, per sequence times n_parallel) that would fit; the
 * suggestion is left out when none would. `name` is what the user called the model.
 */
int slm_mem_check(const char *name, const struct slm_mem_estimate *e, uint64_t available,
                  struct slm_err *err);

/* The largest n_ctx (all sequences) whose estimate fits in `available`, a multiple of
 * 256 x n_parallel; 0 when not even 256 cells per sequence fit. */
uint32_t slm_mem_max_ctx(const struct slm_mem_estimate *e, uint64_t available);

#endif /* SLM_MEMORY_H */
