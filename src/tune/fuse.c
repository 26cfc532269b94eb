/*
 * tune/fuse.c - `slm fuse`: merges a LoRA adapter into its base model,
 * W' = W + scale * (alpha / r) * B A, and writes a standalone GGUF.
 *
 * The output is streamed tensor by tensor (header first, then each tensor's
 * data at its aligned offset), so memory stays at one tensor at a time.
 * Adapted tensors are dequantized, merged in F32 and written in the base
 * tensor's type (requantized) or in `out_type`; every other tensor is copied
 * byte for byte. The file is written under a temporary name and renamed.
 */
#include "slm/tune.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tune/internal.h"

struct fuse_pair {
    const struct ggml_tensor *a, *b;
};

static int parse_out_type(const char *s, enum ggml_type *t, struct slm_err *err) {
    if (!s || strcmp(s, "keep") == 0) {
        *t = GGML_TYPE_COUNT;
    } else if (strcmp(s, "f32") == 0 || strcmp(s, "F32") == 0) {
        *t = GGML_TYPE_F32;
    } else if (strcmp(s, "f16") == 0 || strcmp(s, "F16") == 0) {
        *t = GGML_TYPE_F16;
    } else if (strcmp(s, "q8_0") == 0 || strcmp(s, "Q8_0") == 0) {
        *t = GGML_TYPE_Q8_0;
    } else {
        return slm_err_set(err, SLM_E_INVALID, "output type '%s': expected keep, f32, f16 or q8_0",
                           s);
    }
    return SLM_OK;
}

/* Finds the adapter pair for base tensor `name`; checks shapes. */
static int find_pair(struct ggml_context *actx, const char *name, const int64_t *ne,
                     struct fuse_pair *out, struct slm_err *err) {
    char an[GGML_MAX_NAME + 16], bn[GGML_MAX_NAME + 16];
    snprintf(an, sizeof(an), "%s.lora_a", name);
    snprintf(bn, sizeof(bn), "%s.lora_b", name);
    out->a = ggml_get_tensor(actx, an);
    out->b = ggml_get_tensor(actx, bn);
    if (!out->a && !out->b) {
        return SLM_OK;
    }
    if (!out->a || !out->b || out->a->type != GGML_TYPE_F32 || out->b->type != GGML_TYPE_F32 ||
        out->a->ne[0] != ne[0] || out->b->ne[1] != ne[1] || out->a->ne[1] != out->b->ne[0]) {
        return slm_err_set(err, SLM_E_INVALID,
                           "adapter tensors for %s are missing a half, not F32, or do not match "
                           "its shape [%lld, %lld]",
                           name, (long long)ne[0], (long long)ne[1]);
    }
    return SLM_OK;
}

/* w[o][i] += s * sum_k b[o][k] * a[k][i] */
static void merge(float *w, const struct fuse_pair *p, float s) {
    const int64_t n_in = p->a->ne[0], r = p->a->ne[1], n_out = p->b->ne[1];
    const float *a = p->a->data, *b = p->b->data;
    for (int64_t o = 0; o < n_out; o++) {
        float *row = w + o * n_in;
        for (int64_t k = 0; k < r; k++) {
            const float c = s * b[o * r + k];
            const float *arow = a + k * n_in;
            for (int64_t i = 0; i < n_in; i++) {
                row[i] += c * arow[i];
            }
        }
    }
}

struct fuse_io {
    FILE *in, *out;
    const struct gguf_context *base;
    size_t in_data, out_data, align;
};

static int write_tensor(struct fuse_io *io, const struct gguf_context *og, int64_t i,
                        const struct fuse_pair *pair, float s, enum ggml_type out_t,
                        struct slm_err *err) {
    const char *name = gguf_get_tensor_name(io->base, i);
    enum ggml_type st = gguf_get_tensor_type(io->base, i);
    size_t nb = gguf_get_tensor_size(io->base, i);
    const int64_t *ne = gguf_get_tensor_ne(io->base, i);
    int64_t n = ne[0] * ne[1] * ne[2] * ne[3];
    void *raw = malloc(nb ? nb : 1), *dst = NULL;
    float *f = NULL;
    int rc = SLM_OK;
    if (!raw) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    size_t off = io->in_data + gguf_get_tensor_offset(io->base, i);
    if (fseeko(io->in, (off_t)off, SEEK_SET) != 0 || fread(raw, 1, nb, io->in) != nb) {
        rc = slm_err_set(err, SLM_E_IO, "cannot read tensor %s", name);
        goto done;
    }
    const void *data = raw;
    size_t out_nb = nb;
    if (pair->a) {
        const struct ggml_type_traits *tr = ggml_get_type_traits(st);
        f = malloc((size_t)n * sizeof(float));
        if (!f || (st != GGML_TYPE_F32 && !tr->to_float)) {
            rc = slm_err_set(err, f ? SLM_E_UNSUPPORTED : SLM_E_NOMEM, "cannot dequantize %s (%s)",
                             name, ggml_type_name(st));
            goto done;
        }
        if (st == GGML_TYPE_F32) {
            memcpy(f, raw, (size_t)n * sizeof(float));
        } else {
            tr->to_float(raw, f, n);
        }
        merge(f, pair, s);
        enum ggml_type t = gguf_get_tensor_type(og, gguf_find_tensor(og, name));
        (void)out_t;
        out_nb = ggml_row_size(t, ne[0]) * (size_t)(n / ne[0]);
        if (t == GGML_TYPE_F32) {
            data = f;
        } else {
            dst = malloc(out_nb);
            if (!dst) {
                rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
                goto done;
            }
            ggml_quantize_chunk(t, f, dst, 0, n / ne[0], ne[0], NULL);
            data = dst;
        }
    }
    size_t pos = io->out_data + gguf_get_tensor_offset(og, gguf_find_tensor(og, name));
    if (fseeko(io->out, (off_t)pos, SEEK_SET) != 0 || fwrite(data, 1, out_nb, io->out) != out_nb) {
        rc = slm_err_set(err, SLM_E_IO, "cannot write tensor %s: %s", name, strerror(errno));
    }
done:
    free(raw);
    free(f);
    free(dst);
    return rc;
}

/* The output's metadata: the base's keys and tensor list, adapted tensors
 * possibly retyped. */
static struct gguf_context *out_meta(const struct gguf_context *base, struct ggml_context *meta,
                                     struct ggml_context *actx, enum ggml_type out_t,
                                     size_t *n_merged, struct slm_err *err) {
    struct gguf_context *og = gguf_init_empty();
    if (!og) {
        return NULL;
    }
    gguf_set_kv(og, base);
    *n_merged = 0;
    for (int64_t i = 0; i < gguf_get_n_tensors(base); i++) {
        const char *name = gguf_get_tensor_name(base, i);
        struct ggml_tensor *t = ggml_get_tensor(meta, name);
        struct fuse_pair pair;
        if (!t || find_pair(actx, name, t->ne, &pair, err) != SLM_OK) {
            gguf_free(og);
            return NULL;
        }
        gguf_add_tensor(og, t);
        if (pair.a) {
            enum ggml_type nt = out_t != GGML_TYPE_COUNT ? out_t : t->type;
            if (t->ne[0] % ggml_blck_size(nt) != 0 || !ggml_get_type_traits(nt)->from_float_ref) {
                nt = GGML_TYPE_F32; /* rows that do not fit the block, or no quantizer */
            }
            gguf_set_tensor_type(og, name, nt);
            (*n_merged)++;
        }
    }
    return og;
}

int slm_fuse(const char *base_path, const char *adapter_path, const char *out_path,
             const struct slm_fuse_params *params, struct slm_err *err) {
    struct slm_fuse_params p = params ? *params : (struct slm_fuse_params){0};
    enum ggml_type out_t;
    int rc = parse_out_type(p.out_type, &out_t, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct ggml_context *meta = NULL, *actx = NULL;
    struct gguf_context *base =
        gguf_init_from_file(base_path, (struct gguf_init_params){true, &meta});
    struct gguf_context *ad =
        gguf_init_from_file(adapter_path, (struct gguf_init_params){false, &actx});
    struct gguf_context *og = NULL;
    struct fuse_io io = {0};
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", out_path, (long)getpid());
    if (!base || !ad) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: not a readable GGUF file",
                         !base ? base_path : adapter_path);
        goto done;
    }
    int64_t kt = gguf_find_key(ad, "general.type"), ka = gguf_find_key(ad, "general.architecture");
    int64_t kb = gguf_find_key(base, "general.architecture"),
            kl = gguf_find_key(ad, "adapter.lora.alpha");
    if (kt < 0 || strcmp(gguf_get_val_str(ad, kt), "adapter") != 0 || ka < 0 || kb < 0 ||
        strcmp(gguf_get_val_str(ad, ka), gguf_get_val_str(base, kb)) != 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: not a LoRA adapter for a %s model", adapter_path,
                         kb >= 0 ? gguf_get_val_str(base, kb) : "?");
        goto done;
    }
    float alpha =
        kl >= 0 && gguf_get_kv_type(ad, kl) == GGUF_TYPE_FLOAT32 ? gguf_get_val_f32(ad, kl) : 0;
    size_t n_merged = 0;
    og = out_meta(base, meta, actx, out_t, &n_merged, err);
    if (!og) {
        rc = err && err->code ? err->code : slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }
    if (n_merged == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: no tensor of the adapter matches %s",
                         adapter_path, base_path);
        goto done;
    }
    io.base = base;
    io.in = fopen(base_path, "rb");
    io.out = fopen(tmp, "wb");
    if (!io.in || !io.out) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", io.in ? tmp : base_path, strerror(errno));
        goto done;
    }
    io.in_data = gguf_get_data_offset(base);
    size_t meta_size = gguf_get_meta_size(og);
    void *mbuf = malloc(meta_size);
    if (!mbuf) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }
    gguf_get_meta_data(og, mbuf);
    bool ok = fwrite(mbuf, 1, meta_size, io.out) == meta_size;
    free(mbuf);
    io.out_data = meta_size;
    if (!ok) {
        rc = slm_err_set(err, SLM_E_IO, "%s: cannot write", tmp);
        goto done;
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(base) && rc == SLM_OK; i++) {
        struct fuse_pair pair;
        const char *name = gguf_get_tensor_name(base, i);
        rc = find_pair(actx, name, gguf_get_tensor_ne(base, i), &pair, err);
        if (rc == SLM_OK) {
            float r = pair.a ? (float)pair.a->ne[1] : 1.0f;
            float s = (p.scale > 0 ? p.scale : 1.0f) * (alpha > 0 ? alpha / r : 1.0f);
            rc = write_tensor(&io, og, i, &pair, s, out_t, err);
        }
    }
    /* Pad the file to the last tensor's aligned end. */
    if (rc == SLM_OK && (fflush(io.out) != 0 || fsync(fileno(io.out)) != 0)) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", tmp, strerror(errno));
    }
done:
    if (io.in) {
        fclose(io.in);
    }
    if (io.out && fclose(io.out) != 0 && rc == SLM_OK) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", tmp, strerror(errno));
    }
    if (rc == SLM_OK && rename(tmp, out_path) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", out_path, strerror(errno));
    }
    if (rc != SLM_OK && io.out) {
        unlink(tmp);
    }
    gguf_free(og);
    gguf_free(base);
    gguf_free(ad);
    if (meta) {
        ggml_free(meta);
    }
    if (actx) {
        ggml_free(actx);
    }
    return rc;
}
