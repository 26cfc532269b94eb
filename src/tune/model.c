/*
 * tune/model.c - the training view of a llama-family GGUF: hyperparameters,
 * weights loaded into a plain CPU buffer (in their stored type or
 * dequantized, see enum slm_tune_base_type), and the forward graph.
 *
 * The graph mirrors llama.cpp's llama / qwen2 / qwen3 builders op for op so
 * that its logits match libllama's (tests/unit/test_tune_graph.c), but uses
 * only ops that have a backward pass: soft_max_ext with a mask instead of
 * flash attention, swiglu_split instead of fused swiglu, and the batch folded
 * into dim 2 of attention (GQA backward asserts on batch in dim 3).
 */
#include "slm/tune.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ggml-cpu.h>

#include "slm/engine.h"
#include "tune/internal.h"
#include "slm/sys.h"

const char *const slm__proj_gguf[SLM_TUNE_N_PROJ] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                     "ffn_gate", "ffn_up", "ffn_down"};
const char *const slm__proj_short[SLM_TUNE_N_PROJ] = {"q", "k", "v", "o", "gate", "up", "down"};

static const char *const supported_archs[] = {"llama", "qwen2", "qwen3"};

bool slm_tune_arch_supported(const char *arch) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(supported_archs); i++) {
        if (arch && strcmp(arch, supported_archs[i]) == 0) {
            return true;
        }
    }
    return false;
}

int32_t slm__tune_threads(uint64_t n_params, int32_t asked) {
    if (asked > 0) {
        return asked;
    }
    return n_params < 20u * 1000 * 1000 ? 1 : slm_default_threads();
}

void slm__proj_name(int layer, int proj, char *out, size_t cap) {
    snprintf(out, cap, "blk.%d.%s.weight", layer, slm__proj_gguf[proj]);
}

int slm_tune_targets_parse(const char *list, uint32_t *out, struct slm_err *err) {
    uint32_t bits = 0;
    struct slm_str s = slm_str_c(list);
    size_t pos = 0;
    while (pos <= s.len) {
        size_t end = slm_str_find_char(s, ',', pos);
        if (end == SIZE_MAX) {
            end = s.len;
        }
        struct slm_str item = slm_str_trim(slm_str_sub(s, pos, end - pos));
        bool found = false;
        if (slm_str_eq_c(item, "all")) {
            bits |= SLM_TUNE_ALL;
            found = true;
        }
        for (int p = 0; p < SLM_TUNE_N_PROJ && !found; p++) {
            if (slm_str_eq_c(item, slm__proj_short[p]) || slm_str_eq_c(item, slm__proj_gguf[p])) {
                bits |= 1u << p;
                found = true;
            }
        }
        if (!found) {
            return slm_err_set(err, SLM_E_INVALID,
                               "unknown LoRA target '%.*s' (expected q, k, v, o, gate, up, down "
                               "or all)",
                               (int)item.len, item.ptr);
        }
        pos = end + 1;
    }
    *out = bits;
    return SLM_OK;
}

size_t slm_tune_targets_format(uint32_t targets, char *out, size_t cap) {
    size_t len = 0;
    if (cap) {
        out[0] = '\0';
    }
    for (int p = 0; p < SLM_TUNE_N_PROJ; p++) {
        if (targets & (1u << p)) {
            int n = snprintf(len < cap ? out + len : NULL, len < cap ? cap - len : 0, "%s%s",
                             len ? "," : "", slm__proj_short[p]);
            len += (size_t)(n > 0 ? n : 0);
        }
    }
    return len;
}

struct slm_tune_model_params slm_tune_model_params_default(void) {
    return (struct slm_tune_model_params){.base_type = SLM_TUNE_BASE_AUTO, .trainable = false};
}

/* ---------------------------------------------------------------- metadata */

static int64_t kv_find(const struct gguf_context *g, const char *arch, const char *key) {
    char full[128];
    snprintf(full, sizeof(full), "%s.%s", arch, key);
    return gguf_find_key(g, full);
}

static bool kv_num(const struct gguf_context *g, int64_t id, double *out) {
    if (id < 0) {
        return false;
    }
    switch (gguf_get_kv_type(g, id)) {
    case GGUF_TYPE_UINT8: *out = gguf_get_val_u8(g, id); return true;
    case GGUF_TYPE_INT8: *out = gguf_get_val_i8(g, id); return true;
    case GGUF_TYPE_UINT16: *out = gguf_get_val_u16(g, id); return true;
    case GGUF_TYPE_INT16: *out = gguf_get_val_i16(g, id); return true;
    case GGUF_TYPE_UINT32: *out = gguf_get_val_u32(g, id); return true;
    case GGUF_TYPE_INT32: *out = gguf_get_val_i32(g, id); return true;
    case GGUF_TYPE_UINT64: *out = (double)gguf_get_val_u64(g, id); return true;
    case GGUF_TYPE_INT64: *out = (double)gguf_get_val_i64(g, id); return true;
    case GGUF_TYPE_FLOAT32: *out = gguf_get_val_f32(g, id); return true;
    case GGUF_TYPE_FLOAT64: *out = gguf_get_val_f64(g, id); return true;
    default: return false;
    }
}

static double kv_get(const struct gguf_context *g, const char *arch, const char *key, double def,
                     bool *missing) {
    double v;
    if (kv_num(g, kv_find(g, arch, key), &v)) {
        return v;
    }
    if (missing) {
        *missing = true;
    }
    return def;
}

static int read_hparams(struct slm_tune_model *m, const struct gguf_context *g,
                        struct slm_err *err) {
    const char *a = m->arch;
    struct slm__hparams *hp = &m->hp;
    bool missing = false;
    hp->n_layer = (int32_t)kv_get(g, a, "block_count", 0, &missing);
    hp->n_embd = (int32_t)kv_get(g, a, "embedding_length", 0, &missing);
    hp->n_head = (int32_t)kv_get(g, a, "attention.head_count", 0, &missing);
    hp->n_ff = (int32_t)kv_get(g, a, "feed_forward_length", 0, &missing);
    if (missing || hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_ff <= 0 ||
        hp->n_layer > 1024 || hp->n_embd > 65536 || hp->n_head > 1024) {
        return slm_err_set(err, SLM_E_INVALID,
                           "%s: missing or bad %s.block_count / embedding_length / "
                           "attention.head_count / feed_forward_length",
                           m->path, a);
    }
    hp->n_head_kv = (int32_t)kv_get(g, a, "attention.head_count_kv", hp->n_head, NULL);
    hp->head_dim = (int32_t)kv_get(g, a, "attention.key_length", hp->n_embd / hp->n_head, NULL);
    hp->n_rot = (int32_t)kv_get(g, a, "rope.dimension_count", hp->head_dim, NULL);
    hp->n_ctx_train = (int32_t)kv_get(g, a, "context_length", 2048, NULL);
    hp->eps = (float)kv_get(g, a, "attention.layer_norm_rms_epsilon", 1e-5, NULL);
    hp->rope_base = (float)kv_get(g, a, "rope.freq_base", 10000.0, NULL);
    double factor = kv_get(g, a, "rope.scaling.factor", 0.0, NULL);
    hp->rope_scale = factor > 0 ? (float)(1.0 / factor) : 1.0f;
    hp->rope_type = strcmp(a, "llama") == 0 ? 0 : 2;
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0 || hp->head_dim <= 0 ||
        hp->n_rot != hp->head_dim) {
        return slm_err_set(err, SLM_E_UNSUPPORTED,
                           "%s: attention shape not supported for training (heads %d, kv heads "
                           "%d, head dim %d, rope dims %d)",
                           m->path, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_rot);
    }
    int64_t st = kv_find(g, a, "rope.scaling.type");
    if (st >= 0 && gguf_get_kv_type(g, st) == GGUF_TYPE_STRING) {
        const char *t = gguf_get_val_str(g, st);
        if (strcmp(t, "none") != 0 && strcmp(t, "linear") != 0) {
            return slm_err_set(err, SLM_E_UNSUPPORTED,
                               "%s: rope scaling '%s' is not supported for training (none or "
                               "linear)",
                               m->path, t);
        }
    }
    double attn_scale = kv_get(g, a, "attention.scale", 0.0, NULL);
    if (attn_scale != 0.0) {
        return slm_err_set(err, SLM_E_UNSUPPORTED, "%s: %s.attention.scale is not supported",
                           m->path, a);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- weights */

/* The type a tensor is held in while training. */
static enum ggml_type hold_type(const struct slm_tune_model *m, enum ggml_type stored, int n_dims,
                                int64_t ne0) {
    if (m->params.trainable || n_dims < 2) {
        return GGML_TYPE_F32;
    }
    switch (m->params.base_type) {
    case SLM_TUNE_BASE_F32: return GGML_TYPE_F32;
    case SLM_TUNE_BASE_KEEP: return stored;
    case SLM_TUNE_BASE_Q8_0:
        return ne0 % ggml_blck_size(GGML_TYPE_Q8_0) == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32;
    case SLM_TUNE_BASE_AUTO:
    default: return stored == GGML_TYPE_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32;
    }
}

struct load_job {
    struct ggml_tensor *t;
    int64_t gi; /* index in the gguf file */
};

static int convert_into(struct ggml_tensor *t, enum ggml_type src_type, const void *src,
                        struct slm_err *err) {
    if (src_type == t->type) {
        ggml_backend_tensor_set(t, src, 0, ggml_nbytes(t));
        return SLM_OK;
    }
    int64_t n = ggml_nelements(t);
    float *f = NULL;
    void *q = NULL;
    const struct ggml_type_traits *tr = ggml_get_type_traits(src_type);
    if (src_type == GGML_TYPE_F32) {
        f = (float *)src;
    } else {
        if (!tr->to_float) {
            return slm_err_set(err, SLM_E_UNSUPPORTED, "tensor %s: cannot dequantize type %s",
                               t->name, ggml_type_name(src_type));
        }
        f = malloc((size_t)n * sizeof(float));
        if (!f) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory dequantizing %s", t->name);
        }
        tr->to_float(src, f, n);
    }
    if (t->type == GGML_TYPE_F32) {
        ggml_backend_tensor_set(t, f, 0, ggml_nbytes(t));
    } else {
        q = malloc(ggml_nbytes(t));
        if (!q) {
            if (f != src) {
                free(f);
            }
            return slm_err_set(err, SLM_E_NOMEM, "out of memory quantizing %s", t->name);
        }
        ggml_quantize_chunk(t->type, f, q, 0, ggml_nrows(t), t->ne[0], NULL);
        ggml_backend_tensor_set(t, q, 0, ggml_nbytes(t));
        free(q);
    }
    if (f != src) {
        free(f);
    }
    return SLM_OK;
}

static int read_tensor_data(struct slm_tune_model *m, FILE *fp, const struct gguf_context *g,
                            const struct load_job *job, struct slm_err *err) {
    enum ggml_type st = gguf_get_tensor_type(g, job->gi);
    size_t nbytes = gguf_get_tensor_size(g, job->gi);
    size_t off = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, job->gi);
    void *buf = malloc(nbytes ? nbytes : 1);
    if (!buf) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory reading %s", job->t->name);
    }
    int rc = SLM_OK;
    if (fseeko(fp, (off_t)off, SEEK_SET) != 0 || fread(buf, 1, nbytes, fp) != nbytes) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: tensor %s: data past the end of the file",
                         m->path, job->t->name);
    } else {
        rc = convert_into(job->t, st, buf, err);
    }
    free(buf);
    return rc;
}

/* Declares a weight tensor with the file's shape; NULL (and SLM_OK) when
 * optional and absent. */
static int declare(struct slm_tune_model *m, const struct gguf_context *g, const char *name,
                   bool required, int n_dims, const int64_t *want, struct ggml_tensor **out,
                   struct load_job *jobs, size_t *n_jobs, struct slm_err *err) {
    *out = NULL;
    int64_t gi = gguf_find_tensor(g, name);
    if (gi < 0) {
        return required ? slm_err_set(err, SLM_E_INVALID, "%s: tensor %s is missing", m->path, name)
                        : SLM_OK;
    }
    const int64_t *ne = gguf_get_tensor_ne(g, gi);
    for (int d = 0; d < GGML_MAX_DIMS; d++) {
        int64_t w = d < n_dims ? want[d] : 1;
        if (ne[d] != w) {
            return slm_err_set(err, SLM_E_INVALID,
                               "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                               m->path, name, (long long)ne[0], (long long)ne[1],
                               (long long)want[0], (long long)(n_dims > 1 ? want[1] : 1));
        }
    }
    enum ggml_type st = gguf_get_tensor_type(g, gi);
    enum ggml_type ht = hold_type(m, st, n_dims, ne[0]);
    struct ggml_tensor *t = n_dims == 1 ? ggml_new_tensor_1d(m->ctx_w, ht, ne[0])
                                        : ggml_new_tensor_2d(m->ctx_w, ht, ne[0], ne[1]);
    ggml_set_name(t, name);
    jobs[(*n_jobs)++] = (struct load_job){t, gi};
    m->n_params += (uint64_t)ggml_nelements(t);
    *out = t;
    return SLM_OK;
}

static int declare_all(struct slm_tune_model *m, const struct gguf_context *g,
                       struct load_job *jobs, size_t *n_jobs, struct slm_err *err) {
    const struct slm__hparams *hp = &m->hp;
    int64_t gi = gguf_find_tensor(g, "token_embd.weight");
    if (gi < 0) {
        return slm_err_set(err, SLM_E_INVALID, "%s: tensor token_embd.weight is missing", m->path);
    }
    m->hp.n_vocab = (int32_t)gguf_get_tensor_ne(g, gi)[1];
    int64_t E = hp->n_embd, V = m->hp.n_vocab, F = hp->n_ff;
    int64_t Q = (int64_t)hp->head_dim * hp->n_head, KV = (int64_t)hp->head_dim * hp->n_head_kv;
    int rc = SLM_OK;
#define DECL(name, req, nd, out, ...)                                                              \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        rc = declare(m, g, name, req, nd, want_, out, jobs, n_jobs, err);                          \
        if (rc != SLM_OK) {                                                                        \
            return rc;                                                                             \
        }                                                                                          \
    } while (0)
    DECL("token_embd.weight", true, 2, &m->tok_embd, E, V);
    DECL("output_norm.weight", true, 1, &m->output_norm, E);
    DECL("output.weight", false, 2, &m->output, E, V);
    DECL("rope_freqs.weight", false, 1, &m->rope_freqs, hp->n_rot / 2);
    if (!m->output) {
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    const int64_t pin[SLM_TUNE_N_PROJ] = {E, E, E, Q, E, E, F};
    const int64_t pout[SLM_TUNE_N_PROJ] = {Q, KV, KV, E, F, F, E};
    char name[96];
    for (int l = 0; l < hp->n_layer; l++) {
        struct slm__layer *L = &m->layers[l];
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
        DECL(name, true, 1, &L->attn_norm, E);
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
        DECL(name, true, 1, &L->ffn_norm, E);
        for (int p = 0; p < SLM_TUNE_N_PROJ; p++) {
            slm__proj_name(l, p, name, sizeof(name));
            DECL(name, true, 2, &L->w[p], pin[p], pout[p]);
        }
        snprintf(name, sizeof(name), "blk.%d.attn_q.bias", l);
        DECL(name, false, 1, &L->bq, Q);
        snprintf(name, sizeof(name), "blk.%d.attn_k.bias", l);
        DECL(name, false, 1, &L->bk, KV);
        snprintf(name, sizeof(name), "blk.%d.attn_v.bias", l);
        DECL(name, false, 1, &L->bv, KV);
        snprintf(name, sizeof(name), "blk.%d.attn_q_norm.weight", l);
        DECL(name, false, 1, &L->q_norm, hp->head_dim);
        snprintf(name, sizeof(name), "blk.%d.attn_k_norm.weight", l);
        DECL(name, false, 1, &L->k_norm, hp->head_dim);
        if (strcmp(m->arch, "qwen3") == 0 && (!L->q_norm || !L->k_norm)) {
            return slm_err_set(err, SLM_E_INVALID, "%s: qwen3 layer %d lacks attn_q_norm/k_norm",
                               m->path, l);
        }
    }
#undef DECL
    return SLM_OK;
}

static void set_base_type_label(struct slm_tune_model *m) {
    enum ggml_type t0 = m->layers[0].w[P_Q]->type;
    bool same = true;
    for (int l = 0; l < m->hp.n_layer; l++) {
        for (int p = 0; p < SLM_TUNE_N_PROJ; p++) {
            same = same && m->layers[l].w[p]->type == t0;
        }
    }
    snprintf(m->base_type, sizeof(m->base_type), "%s", same ? ggml_type_name(t0) : "mixed");
}

/*
 * Whether the device runs the ops that read weight `w` for w's type: the
 * forward mul_mat (and, on the backward pass, the mul_mat with its transposed
 * copy, same type), get_rows for the embeddings, mul/add for norms and
 * biases, and AdamW for trainable weights. Asked of the device with dummy
 * nodes; a weight it cannot use stays in a CPU buffer, where the
 * scheduler runs its ops on the CPU without copying it every step.
 */
static bool weight_on_dev(const struct ggml_tensor *wc, void *user) {
    struct slm_tune_model *m = user;
    struct ggml_tensor *w = (struct ggml_tensor *)wc;
    struct ggml_init_params ip = {16 * ggml_tensor_overhead(), NULL, true};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) {
        return false;
    }
    struct ggml_tensor *ops[4] = {NULL};
    int n = 0;
    if (ggml_n_dims(w) == 1) {
        struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], 4);
        ops[n++] = ggml_mul(ctx, x, w);
        ops[n++] = ggml_add(ctx, x, w);
    } else {
        struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], 4);
        ops[n++] = ggml_mul_mat(ctx, w, x);
        if (w == m->tok_embd) {
            ops[n++] = ggml_get_rows(ctx, w, ggml_new_tensor_1d(ctx, GGML_TYPE_I32, 4));
        }
    }
    if (m->params.trainable) {
        /* a stand-in of w's type and shape: the op wants a parameter */
        struct ggml_tensor *wp = ggml_new_tensor(ctx, w->type, GGML_MAX_DIMS, w->ne);
        ggml_set_param(wp);
        struct ggml_tensor *g = ggml_new_tensor(ctx, GGML_TYPE_F32, GGML_MAX_DIMS, w->ne);
        struct ggml_tensor *mo = ggml_new_tensor(ctx, GGML_TYPE_F32, GGML_MAX_DIMS, w->ne);
        struct ggml_tensor *v = ggml_new_tensor(ctx, GGML_TYPE_F32, GGML_MAX_DIMS, w->ne);
        struct ggml_tensor *par = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 7);
        ops[n++] = ggml_opt_step_adamw(ctx, wp, g, mo, v, par);
    }
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        ok = ggml_backend_dev_supports_op(m->dev, ops[i]);
    }
    ggml_free(ctx);
    return ok;
}

static int load_weights(struct slm_tune_model *m, const struct gguf_context *g,
                        struct slm_err *err) {
    size_t max_jobs = 8 + (size_t)m->hp.n_layer * 16;
    struct load_job *jobs = calloc(max_jobs, sizeof(*jobs));
    size_t n_jobs = 0;
    FILE *fp = NULL;
    int rc = SLM_OK;
    if (!jobs) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct ggml_init_params ip = {max_jobs * ggml_tensor_overhead(), NULL, true};
    m->ctx_w = ggml_init(ip);
    if (!m->ctx_w) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }
    rc = declare_all(m, g, jobs, &n_jobs, err);
    if (rc != SLM_OK) {
        goto done;
    }
    m->bufs_w = calloc(1, sizeof(*m->bufs_w));
    if (!m->bufs_w) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }
    rc = slm__bufs_alloc(m->bufs_w, m->ctx_w, slm__dev_buft(m), weight_on_dev, m,
                         GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    if (rc != SLM_OK) {
        rc = slm_err_set(err, rc, "%s: cannot allocate the weights on %s", m->path,
                         ggml_backend_dev_name(m->dev));
        goto done;
    }
    for (struct ggml_tensor *t = ggml_get_first_tensor(m->ctx_w); t;
         t = ggml_get_next_tensor(m->ctx_w, t)) {
        m->n_w++;
        m->n_w_dev +=
            slm__dev_buft(m) && ggml_backend_buffer_get_type(t->buffer) == slm__dev_buft(m);
    }
    fp = fopen(m->path, "rb");
    if (!fp) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", m->path, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < n_jobs && rc == SLM_OK; i++) {
        rc = read_tensor_data(m, fp, g, &jobs[i], err);
    }
    if (rc == SLM_OK) {
        set_base_type_label(m);
    }
done:
    if (fp) {
        fclose(fp);
    }
    free(jobs);
    return rc;
}

static int open_gguf(const char *path, struct gguf_context **out, char *arch, size_t arch_cap,
                     struct slm_err *err) {
    if (access(path, R_OK) != 0) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "%s: %s", path, strerror(errno));
    }
    struct gguf_init_params gp = {true, NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        return slm_err_set(err, SLM_E_INVALID, "%s: not a GGUF file", path);
    }
    int64_t id = gguf_find_key(g, "general.architecture");
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) {
        gguf_free(g);
        return slm_err_set(err, SLM_E_INVALID, "%s: GGUF has no general.architecture", path);
    }
    snprintf(arch, arch_cap, "%s", gguf_get_val_str(g, id));
    *out = g;
    return SLM_OK;
}

/* The device the params name, its backend, and the CPU backend next to it. */
static int open_device(struct slm_tune_model *m, struct slm_err *err) {
    int rc = slm__device_pick(m->params.device, &m->dev, err);
    if (rc != SLM_OK) {
        return rc;
    }
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    m->backend_cpu = cpu ? ggml_backend_dev_init(cpu, NULL) : NULL;
    if (!m->backend_cpu) {
        return slm_err_set(err, SLM_E_BACKEND, "cannot start the CPU backend");
    }
    if (m->dev == cpu) {
        m->backend = m->backend_cpu;
        m->use_sched = m->params.cpu_sched;
        return SLM_OK;
    }
    /* ggml-vulkan reorders a graph's nodes before running it; on these
     * graphs that gave wrong gradient sums over micro-batches and wrong,
     * changing validation losses on lavapipe (all within 1e-5 of the CPU
     * with GGML_VK_DISABLE_GRAPH_OPTIMIZE set). It reads the variable when
     * it opens the device, which is next; a value the user set stays. */
    if (strcmp(ggml_backend_reg_name(ggml_backend_dev_backend_reg(m->dev)), "Vulkan") == 0) {
        setenv("GGML_VK_DISABLE_GRAPH_OPTIMIZE", "1", 0);
    }
    m->backend = ggml_backend_dev_init(m->dev, NULL);
    if (!m->backend) {
        return slm_err_set(err, SLM_E_BACKEND, "cannot start device %s (%s)",
                           ggml_backend_dev_name(m->dev), ggml_backend_dev_description(m->dev));
    }
    m->use_sched = true;
    return SLM_OK;
}

int slm_tune_model_load(const char *path, const struct slm_tune_model_params *params,
                        struct slm_tune_model **out, struct slm_err *err) {
    struct slm_tune_model *m = calloc(1, sizeof(*m));
    if (!m) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    m->params = params ? *params : slm_tune_model_params_default();
    snprintf(m->path, sizeof(m->path), "%s", path);
    int rc = open_gguf(path, &m->gguf, m->arch, sizeof(m->arch), err);
    if (rc != SLM_OK) {
        goto fail;
    }
    int64_t tid = gguf_find_key(m->gguf, "general.type");
    if (tid >= 0 && gguf_get_kv_type(m->gguf, tid) == GGUF_TYPE_STRING &&
        strcmp(gguf_get_val_str(m->gguf, tid), "adapter") == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: this is an adapter, not a base model", path);
        goto fail;
    }
    if (!slm_tune_arch_supported(m->arch)) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "%s: architecture '%s' cannot be trained by slm; supported: llama "
                         "(llama, mistral, SmolLM), qwen2, qwen3",
                         path, m->arch);
        goto fail;
    }
    rc = read_hparams(m, m->gguf, err);
    if (rc != SLM_OK) {
        goto fail;
    }
    m->layers = calloc((size_t)m->hp.n_layer, sizeof(*m->layers));
    if (!m->layers) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto fail;
    }
    rc = open_device(m, err);
    if (rc != SLM_OK) {
        goto fail;
    }
    rc = load_weights(m, m->gguf, err);
    if (rc != SLM_OK) {
        goto fail;
    }
    struct slm_model_params mp = slm_model_params_default();
    mp.vocab_only = true;
    rc = slm_model_load(path, &mp, &m->vocab, err);
    if (rc != SLM_OK) {
        goto fail;
    }
    *out = m;
    return SLM_OK;
fail:
    slm_tune_model_free(m);
    return rc;
}

void slm_tune_model_free(struct slm_tune_model *m) {
    if (!m) {
        return;
    }
    slm_model_free(m->vocab);
    if (m->bufs_w) {
        slm__bufs_free(m->bufs_w);
        free(m->bufs_w);
    }
    if (m->backend && m->backend != m->backend_cpu) {
        ggml_backend_free(m->backend);
    }
    if (m->backend_cpu) {
        ggml_backend_free(m->backend_cpu);
    }
    if (m->ctx_w) {
        ggml_free(m->ctx_w);
    }
    if (m->gguf) {
        gguf_free(m->gguf);
    }
    free(m->layers);
    free(m);
}

void slm_tune_model_get_info(const struct slm_tune_model *m, struct slm_tune_model_info *out) {
    memset(out, 0, sizeof(*out));
    snprintf(out->arch, sizeof(out->arch), "%s", m->arch);
    out->n_layer = m->hp.n_layer;
    out->n_embd = m->hp.n_embd;
    out->n_head = m->hp.n_head;
    out->n_head_kv = m->hp.n_head_kv;
    out->n_ff = m->hp.n_ff;
    out->n_vocab = m->hp.n_vocab;
    out->head_dim = m->hp.head_dim;
    out->n_ctx_train = m->hp.n_ctx_train;
    out->n_params = m->n_params;
    snprintf(out->base_type, sizeof(out->base_type), "%s", m->base_type);
    snprintf(out->device, sizeof(out->device), "%s", m->dev ? ggml_backend_dev_name(m->dev) : "");
    snprintf(out->device_desc, sizeof(out->device_desc), "%s",
             m->dev ? ggml_backend_dev_description(m->dev) : "");
    out->device_is_cpu = m->backend == m->backend_cpu;
    out->n_weights_on_device = m->n_w_dev;
    out->n_weights = m->n_w;
}

struct slm_model *slm_tune_model_vocab(const struct slm_tune_model *m) {
    return m->vocab;
}

/* ---------------------------------------------------------------- graph */

void slm__fill_mask(float *mask, const int32_t *seg, int32_t T) {
    for (int32_t q = 0; q < T; q++) {
        for (int32_t k = 0; k < T; k++) {
            bool ok = k <= q && seg[k] == seg[q];
            /* A padding query still attends to itself so its row is finite. */
            mask[(size_t)q * T + k] = ok || k == q ? 0.0f : -INFINITY;
        }
    }
}

/* y = W x (+ b) (+ scale * B (A x)) */
static struct ggml_tensor *proj(struct ggml_context *ctx, const struct slm__graph_in *in, int l,
                                int p, struct ggml_tensor *w, struct ggml_tensor *bias,
                                struct ggml_tensor *x, struct ggml_tensor *drop) {
    struct ggml_tensor *y = ggml_mul_mat(ctx, w, x);
    if (bias) {
        y = ggml_add(ctx, y, bias);
    }
    if (in->lora) {
        const struct slm__lora *lo = &in->lora[l * SLM_TUNE_N_PROJ + p];
        if (lo->a) {
            struct ggml_tensor *xi = drop ? ggml_mul(ctx, x, drop) : x;
            /* scale * B (A x) as B (scale * A x): the same sum, and the
             * scaling (and its gradient) on the rank-sized tensor */
            struct ggml_tensor *ax = ggml_scale(ctx, ggml_mul_mat(ctx, lo->a, xi), in->lora_scale);
            y = ggml_add(ctx, y, ggml_mul_mat(ctx, lo->b, ax));
        }
    }
    return y;
}

static struct ggml_tensor *rms(struct ggml_context *ctx, struct ggml_tensor *x,
                               struct ggml_tensor *w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

static struct ggml_tensor *rope(struct ggml_context *ctx, const struct slm_tune_model *m,
                                struct ggml_tensor *x, struct ggml_tensor *pos) {
    const struct slm__hparams *hp = &m->hp;
    return ggml_rope_ext(ctx, x, pos, m->rope_freqs, hp->n_rot, hp->rope_type, hp->n_ctx_train,
                         hp->rope_base, hp->rope_scale, 0.0f, 1.0f, 32.0f, 1.0f);
}

static struct ggml_tensor *attention(struct ggml_context *ctx, const struct slm_tune_model *m,
                                     const struct slm__graph_in *in, int l, struct ggml_tensor *h,
                                     struct ggml_tensor *drop) {
    const struct slm__hparams *hp = &m->hp;
    const struct slm__layer *L = &m->layers[l];
    const int64_t hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, T = in->T, B = in->B;
    struct ggml_tensor *q = proj(ctx, in, l, P_Q, L->w[P_Q], L->bq, h, drop);
    struct ggml_tensor *k = proj(ctx, in, l, P_K, L->w[P_K], L->bk, h, drop);
    struct ggml_tensor *v = proj(ctx, in, l, P_V, L->w[P_V], L->bv, h, drop);
    q = ggml_reshape_3d(ctx, q, hd, nh, T * B); /* [hd, nh, N] */
    k = ggml_reshape_3d(ctx, k, hd, nkv, T * B);
    if (L->q_norm) {
        q = rms(ctx, q, L->q_norm, hp->eps);
        k = rms(ctx, k, L->k_norm, hp->eps);
    }
    q = rope(ctx, m, q, in->pos);
    k = rope(ctx, m, k, in->pos);
    /* [hd, nh, T, B] -> [hd, T, nh, B] -> [hd, T, nh*B]: the batch folded into dim 2. */
    q = ggml_reshape_3d(
        ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, q, hd, nh, T, B), 0, 2, 1, 3)),
        hd, T, nh * B);
    k = ggml_reshape_3d(
        ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, k, hd, nkv, T, B), 0, 2, 1, 3)),
        hd, T, nkv * B);
    /* v^T: [hd, nkv, T, B] -> [T, hd, nkv, B] -> [T, hd, nkv*B] */
    struct ggml_tensor *vt = ggml_reshape_3d(
        ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, hd, nkv, T, B), 1, 2, 0, 3)),
        T, hd, nkv * B);
    struct ggml_tensor *kq = ggml_mul_mat(ctx, k, q); /* [T_k, T_q, nh*B] */
    kq = ggml_reshape_4d(ctx, kq, T, T, nh, B);
    kq = ggml_soft_max_ext(ctx, kq, in->mask, 1.0f / sqrtf((float)hd), 0.0f);
    /* Its backward reads this output through the reshaped view below, and
     * ggml-alloc (v0.5.0) reuses the memory too early in that case: gradients
     * explode layer by layer. Keeping it as an output pins it. */
    ggml_set_output(kq);
    kq = ggml_reshape_3d(ctx, kq, T, T, nh * B);
    struct ggml_tensor *o = ggml_mul_mat(ctx, vt, kq); /* [hd, T_q, nh*B] */
    /* [hd, T, nh, B] -> [hd, nh, T, B] -> [hd*nh, N] */
    o = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, o, hd, T, nh, B), 0, 2, 1, 3));
    o = ggml_reshape_2d(ctx, o, hd * nh, T * B);
    struct ggml_tensor *drop_o = in->drop ? in->drop[l * 4 + 1] : NULL;
    return proj(ctx, in, l, P_O, L->w[P_O], NULL, o, drop_o);
}

struct ggml_tensor *slm__build_forward(struct ggml_context *ctx, const struct slm_tune_model *m,
                                       const struct slm__graph_in *in) {
    const struct slm__hparams *hp = &m->hp;
    struct ggml_tensor *x = ggml_get_rows(ctx, m->tok_embd, in->tokens); /* [E, N] */
    for (int l = 0; l < hp->n_layer; l++) {
        const struct slm__layer *L = &m->layers[l];
        struct ggml_tensor **drop = in->drop ? &in->drop[l * 4] : NULL;
        struct ggml_tensor *h = rms(ctx, x, L->attn_norm, hp->eps);
        x = ggml_add(ctx, x, attention(ctx, m, in, l, h, drop ? drop[0] : NULL));
        h = rms(ctx, x, L->ffn_norm, hp->eps);
        struct ggml_tensor *g =
            proj(ctx, in, l, P_GATE, L->w[P_GATE], NULL, h, drop ? drop[2] : NULL);
        struct ggml_tensor *u = proj(ctx, in, l, P_UP, L->w[P_UP], NULL, h, drop ? drop[2] : NULL);
        struct ggml_tensor *a = ggml_swiglu_split(ctx, g, u); /* silu(g) * u */
        x = ggml_add(ctx, x,
                     proj(ctx, in, l, P_DOWN, L->w[P_DOWN], NULL, a, drop ? drop[3] : NULL));
    }
    x = rms(ctx, x, m->output_norm, hp->eps);
    if (in->out_idx) {
        x = ggml_get_rows(ctx, x, in->out_idx); /* [E, C] */
        if (in->out_w) {
            /* Zeroing an unused row's input zeroes its logits exactly, at
             * 1/V of the cost of masking the logits themselves. */
            x = ggml_mul(ctx, x, in->out_w);
        }
    }
    return ggml_mul_mat(ctx, m->output, x); /* [V, C] */
}

/* The end-of-sequence id, or -1 when there is none or it is not a token of
 * the vocabulary (a header is the file's word: an id past the vocabulary
 * would index past every table built from it). */
static int32_t eos_of(const struct gguf_context *g) {
    int64_t k = gguf_find_key(g, "tokenizer.ggml.eos_token_id");
    int64_t t = gguf_find_key(g, "tokenizer.ggml.tokens");
    double v;
    if (!kv_num(g, k, &v) || !(v >= 0) || t < 0 || gguf_get_kv_type(g, t) != GGUF_TYPE_ARRAY) {
        return -1;
    }
    return v < (double)gguf_get_arr_n(g, t) ? (int32_t)v : -1;
}

int32_t slm_tune_model_eos(const struct slm_tune_model *m) {
    return eos_of(m->gguf);
}

int32_t slm_tune_gguf_eos(const char *path) {
    struct gguf_init_params gp = {true, NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        return -1;
    }
    int32_t e = eos_of(g);
    gguf_free(g);
    return e;
}
