/*
 * engine/memory.c - slm/memory.h: the one estimate of what a model needs, and the check that
 * refuses what will not fit.
 *
 * The parts and their constants come from llama.cpp v0.5.0's own accounting (its load log,
 * SLM_LOG=debug: "model buffer", "KV buffer", "output buffer", "compute buffer size") and
 * from peak RSS measured with bench/run_memory.sh (docs/memory.md). The compute buffer
 * llama.cpp reserves is sized for n_ubatch rows of logits, but slm asks for the logits of the
 * last token of each sequence only, so those pages are never touched; what a full batch does
 * touch is the attention mask over the context and the layer activations, modelled here.
 */
#include "slm/memory.h"

#include <string.h>

#include "engine/internal.h"

/* Peak RSS of `slm run` on stories260K (1.1 MiB of weights, 0.3 MiB of KV) less the modelled
 * parts: the binary, libslm's and llama.cpp's libraries, ggml's threads and heap (Linux x86-64,
 * glibc; 19-22 MiB in all over repeated runs, as the thread count varies). */
#define BASELINE_BYTES ((uint64_t)18 << 20)
/* The tokenizer's tables per vocabulary entry (token text, scores, maps, BPE merges): fitted
 * to SmolLM2's (49,152) and Qwen2.5's (151,936) vocabularies, within 6 MiB of each. */
#define VOCAB_BYTES_PER_TOKEN 450
/* Bytes of a sampler candidate (llama_token_data: id, logit, p) and of one logit. */
#define CANDIDATE_BYTES 12
#define LOGIT_BYTES 4
#define MAX_UBATCH 512u
#define CTX_PAD 256u

struct slm_mem_params slm_mem_params_default(void) {
    return (struct slm_mem_params){0};
}

static uint64_t sat_mul(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint32_t pad_up(uint64_t n, uint32_t to) {
    uint64_t r = (n + to - 1) / to * to;
    return r > UINT32_MAX - to ? UINT32_MAX / to * to : (uint32_t)r;
}

/* Cells per sequence and in all, as llama.cpp makes them: n_ctx padded to 256, then each
 * stream's share padded to 256 (llama-context.cpp). */
static void size_context(const struct slm_model_info *info, const struct slm_mem_params *p,
                         struct slm_mem_estimate *out) {
    out->n_parallel = p->n_parallel > 0 ? p->n_parallel : 1;
    uint64_t n_ctx = p->n_ctx;
    if (n_ctx == 0) {
        int32_t t = info->n_ctx_train;
        n_ctx = (uint64_t)(t > 0 && t < 4096 ? t : 4096) * (uint64_t)out->n_parallel;
    }
    n_ctx = pad_up(n_ctx, CTX_PAD);
    out->n_ctx_seq = pad_up(n_ctx / (uint64_t)out->n_parallel, CTX_PAD);
    uint64_t all = (uint64_t)out->n_ctx_seq * (uint64_t)out->n_parallel;
    out->n_ctx = all > UINT32_MAX ? UINT32_MAX / CTX_PAD * CTX_PAD : (uint32_t)all;
    /* Not capped by a small context as llama.cpp caps it: a few hundred tokens' activations
     * at most, and the parts that grow with the context stay linear in it (slm_mem_max_ctx). */
    uint32_t n_batch = p->n_batch ? p->n_batch : 512;
    out->n_ubatch = SLM_MIN(n_batch, MAX_UBATCH);
}

/* Bytes of one KV cell over every layer: K and V of the KV heads. */
static uint64_t kv_cell_bytes(const struct slm_model_info *info, bool f32) {
    uint64_t n_head = info->n_head > 0 ? (uint64_t)info->n_head : 1;
    uint64_t n_head_kv = info->n_head_kv > 0 ? (uint64_t)info->n_head_kv : n_head;
    uint64_t embd = info->n_embd > 0 ? (uint64_t)info->n_embd : 0;
    uint64_t head_k = info->n_embd_head_k > 0 ? (uint64_t)info->n_embd_head_k : embd / n_head;
    uint64_t head_v = info->n_embd_head_v > 0 ? (uint64_t)info->n_embd_head_v : embd / n_head;
    uint64_t per_layer = sat_mul(n_head_kv, sat_add(head_k, head_v));
    uint64_t layers = info->n_layer > 0 ? (uint64_t)info->n_layer : 0;
    return sat_mul(sat_mul(per_layer, layers), f32 ? 4 : 2);
}

/* Bytes of attention work per cell of one sequence's context in a full batch: the mask row
 * (F16 with flash attention; F32 without it, plus the KQ scores of every head). */
static uint64_t attn_cell_bytes(const struct slm_model_info *info, uint32_t n_ubatch, bool f32) {
    if (!f32) {
        return (uint64_t)n_ubatch * 2;
    }
    uint64_t n_head = info->n_head > 0 ? (uint64_t)info->n_head : 1;
    return sat_mul(n_ubatch, sat_mul(4, sat_add(1, n_head)));
}

void slm_mem_estimate_info(const struct slm_model_info *info, const struct slm_mem_params *params,
                           uint64_t adapter_bytes, struct slm_mem_estimate *out) {
    struct slm_mem_params p = params ? *params : slm_mem_params_default();
    memset(out, 0, sizeof(*out));
    size_context(info, &p, out);
    out->baseline = BASELINE_BYTES;
    out->weights = info->size_bytes;
    out->kv_per_cell = kv_cell_bytes(info, p.kv_f32);
    out->kv = sat_mul(out->kv_per_cell, out->n_ctx);
    out->attn_per_cell = attn_cell_bytes(info, out->n_ubatch, p.kv_f32);
    /* Per token of a batch: the FFN's gate and up rows and a few n_embd rows (residual,
     * norm, Q/K/V, attention output) alive at once, F32. */
    uint64_t embd = info->n_embd > 0 ? (uint64_t)info->n_embd : 0;
    uint64_t ff = info->n_ff > 0 ? (uint64_t)info->n_ff : sat_mul(4, embd);
    uint64_t act = sat_mul((uint64_t)out->n_ubatch * 4, sat_add(sat_mul(2, ff), sat_mul(4, embd)));
    out->compute = sat_add(sat_mul(out->attn_per_cell, out->n_ctx_seq), act);
    uint64_t vocab = info->n_vocab > 0 ? (uint64_t)info->n_vocab : 0;
    out->output = sat_mul(sat_mul(vocab, LOGIT_BYTES + CANDIDATE_BYTES), (uint64_t)out->n_parallel);
    out->vocab = sat_mul(vocab, VOCAB_BYTES_PER_TOKEN);
    out->adapters = adapter_bytes;
    uint64_t parts[] = {out->baseline, out->weights, out->kv,      out->compute,
                        out->output,   out->vocab,   out->adapters};
    for (size_t i = 0; i < SLM_ARRAY_LEN(parts); i++) {
        out->total = sat_add(out->total, parts[i]);
    }
}

int slm_mem_estimate(const char *path, const struct slm_mem_params *params,
                     struct slm_mem_estimate *out, struct slm_model_info *info,
                     struct slm_err *err) {
    struct slm_model_info local = {0};
    struct slm_model_info *mi = info ? info : &local;
    int rc = slm_gguf_read_info(path, mi, NULL, err);
    if (rc != SLM_OK) {
        return rc;
    }
    uint64_t adapters = 0;
    for (size_t i = 0; params && i < params->n_adapters; i++) {
        int64_t size = slm_file_size(params->adapter_paths[i]);
        if (size < 0) {
            return slm_err_set(err, SLM_E_NOT_FOUND, "adapter %s: cannot read its size",
                               params->adapter_paths[i]);
        }
        adapters = sat_add(adapters, (uint64_t)size);
    }
    slm_mem_estimate_info(mi, params, adapters, out);
    return SLM_OK;
}

void slm_mem_usable(struct slm_mem_avail *out, uint64_t *vram_free, uint64_t *vram_total) {
    slm_mem_available(out);
    uint64_t free_sum = 0, total_sum = 0;
    slm_engine_init();
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) {
            continue;
        }
        size_t f = 0, t = 0;
        ggml_backend_dev_memory(dev, &f, &t);
        free_sum = sat_add(free_sum, f);
        total_sum = sat_add(total_sum, t);
    }
    /* Offloaded layers (all by default) live in VRAM: the two pools add up. An override
     * (SLM_MEMORY_AVAILABLE) is the whole answer. */
    if (strcmp(out->source, "SLM_MEMORY_AVAILABLE") != 0) {
        out->available = sat_add(out->available, free_sum);
    }
    if (vram_free) {
        *vram_free = free_sum;
    }
    if (vram_total) {
        *vram_total = total_sum;
    }
}

uint32_t slm_mem_max_ctx(const struct slm_mem_estimate *e, uint64_t available) {
    if (e->total == UINT64_MAX || e->n_parallel <= 0) {
        return 0;
    }
    /* total = fixed + cells per sequence x (KV of a cell in every sequence + attention). */
    uint64_t unit = sat_add(sat_mul(e->kv_per_cell, (uint64_t)e->n_parallel), e->attn_per_cell);
    uint64_t fixed = e->total - e->kv - sat_mul(e->attn_per_cell, e->n_ctx_seq);
    if (unit == 0 || available <= fixed) {
        return 0;
    }
    uint64_t cells = (available - fixed) / unit / CTX_PAD * CTX_PAD;
    if (cells < CTX_PAD) {
        return 0;
    }
    uint64_t all = sat_mul(cells, (uint64_t)e->n_parallel);
    return all > UINT32_MAX ? UINT32_MAX / CTX_PAD * CTX_PAD : (uint32_t)all;
}

static uint64_t mib(uint64_t b) {
    return (b + (1u << 19)) >> 20;
}

int slm_mem_check(const char *name, const struct slm_mem_estimate *e, uint64_t available,
                  struct slm_err *err) {
    if (e->total <= available) {
        return SLM_OK;
    }
    char hint[80] = "";
    uint32_t m = slm_mem_max_ctx(e, available);
    if (m > 0 && m < e->n_ctx) {
        snprintf(hint, sizeof(hint), "--ctx-size %u or ", m);
    }
    uint64_t known = sat_add(e->weights, e->kv);
    uint64_t rest = e->total > known ? e->total - known : 0;
    return slm_err_set(err, SLM_E_NOMEM,
                       "%s needs about %llu MiB (weights %llu, KV cache %llu for ctx %u, compute "
                       "and buffers %llu) but %llu MiB is available; try %sa smaller "
                       "quantization (e.g. Q4_K_M), or --force",
                       name, (unsigned long long)mib(e->total), (unsigned long long)mib(e->weights),
                       (unsigned long long)mib(e->kv), e->n_ctx, (unsigned long long)mib(rest),
                       (unsigned long long)mib(available), hint);
}
