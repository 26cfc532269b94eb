/*
 * tune/save.c - what training writes: LoRA adapters (GGUF exactly as
 * llama_adapter_lora_init loads them), full models (the base's metadata with
 * the trained F32 weights), and checkpoints (trainable weights, AdamW moments,
 * position and loss history) for an exact resume.
 *
 * Every file is written to a temporary name, fsync'ed and renamed, so a kill
 * at any moment leaves the previous file intact.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tune/train_internal.h"

#define CKPT_VERSION 1

int slm__gguf_write_atomic(const struct gguf_context *g, const char *path, struct slm_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (!gguf_write_to_file(g, tmp, false)) {
        unlink(tmp);
        return slm_err_set(err, SLM_E_IO, "%s: cannot write", path);
    }
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        unlink(tmp);
        return slm_err_set(err, SLM_E_IO, "%s: fsync: %s", path, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return slm_err_set(err, SLM_E_IO, "%s: rename: %s", path, strerror(e));
    }
    slm_fsync_dir_of(path);
    return SLM_OK;
}

/* An alias of `src` under another name, for gguf_add_tensor (which reads
 * tensor->data when writing): header-only for a tensor in host memory, a copy
 * in the alias context's memory for one on a device. */
static struct ggml_tensor *alias(struct ggml_context *ctx, const struct ggml_tensor *src,
                                 const char *name) {
    bool host = !src->buffer || ggml_backend_buffer_is_host(src->buffer);
    ggml_set_no_alloc(ctx, host);
    struct ggml_tensor *t = ggml_new_tensor(ctx, src->type, GGML_MAX_DIMS, src->ne);
    if (host) {
        t->data = src->data;
    } else {
        ggml_backend_tensor_get(src, t->data, 0, ggml_nbytes(src));
    }
    ggml_set_name(t, name);
    ggml_set_no_alloc(ctx, true);
    return t;
}

/* Memory the aliases of these tensors copy (the device-resident ones). */
static size_t copy_bytes(struct ggml_tensor *const *ts, size_t n) {
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (ts[i]->buffer && !ggml_backend_buffer_is_host(ts[i]->buffer)) {
            b += ggml_nbytes(ts[i]) + GGML_MEM_ALIGN;
        }
    }
    return b;
}

/* A context for n aliases, `bytes` of them copies. */
static struct ggml_context *alias_ctx(size_t n, size_t bytes) {
    struct ggml_init_params ip = {(n + 4) * ggml_tensor_overhead() + bytes, NULL, true};
    return ggml_init(ip);
}

int slm__save_adapter(struct slm_trainer *tr, const char *path, struct slm_err *err) {
    struct gguf_context *g = gguf_init_empty();
    struct ggml_context *ctx = alias_ctx(tr->n_params, copy_bytes(tr->params, tr->n_params));
    if (!g || !ctx) {
        gguf_free(g);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    char targets[64];
    slm_tune_targets_format(tr->p.targets, targets, sizeof(targets));
    gguf_set_val_str(g, "general.architecture", tr->m->arch);
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "general.name", "slm tune LoRA");
    gguf_set_val_str(g, "adapter.type", "lora");
    gguf_set_val_f32(g, "adapter.lora.alpha", tr->p.alpha);
    gguf_set_val_u32(g, "slm.lora.rank", tr->p.rank);
    gguf_set_val_str(g, "slm.lora.targets", targets);
    gguf_set_val_u32(g, "slm.tune.steps", tr->step);
    for (size_t i = 0; i < tr->n_params; i++) {
        gguf_add_tensor(g, alias(ctx, tr->params[i], ggml_get_name(tr->params[i])));
    }
    int rc = slm__gguf_write_atomic(g, path, err);
    gguf_free(g);
    ggml_free(ctx);
    return rc;
}

int slm__save_full(struct slm_trainer *tr, const char *path, struct slm_err *err) {
    const struct slm_tune_model *m = tr->m;
    const struct gguf_context *src = m->gguf;
    int64_t n = gguf_get_n_tensors(src);
    struct gguf_context *g = gguf_init_empty();
    size_t bytes = 0;
    for (struct ggml_tensor *t = ggml_get_first_tensor(m->ctx_w); t;
         t = ggml_get_next_tensor(m->ctx_w, t)) {
        bytes += copy_bytes(&t, 1);
    }
    struct ggml_context *ctx = alias_ctx((size_t)n, bytes);
    void **extra = calloc((size_t)n + 1, sizeof(void *));
    FILE *fp = NULL;
    int rc = SLM_OK;
    if (!g || !ctx || !extra) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto done;
    }
    gguf_set_kv(g, src);
    gguf_set_val_u32(g, "general.file_type", 0); /* all F32 */
    for (int64_t i = 0; i < n; i++) {
        const char *name = gguf_get_tensor_name(src, i);
        struct ggml_tensor *t = ggml_get_tensor(m->ctx_w, name);
        if (t) {
            gguf_add_tensor(g, alias(ctx, t, name));
            continue;
        }
        /* A tensor the graph does not use: copied as stored. */
        size_t nb = gguf_get_tensor_size(src, i);
        if (!fp && !(fp = fopen(m->path, "rb"))) {
            rc = slm_err_set(err, SLM_E_IO, "%s: %s", m->path, strerror(errno));
            goto done;
        }
        extra[i] = malloc(nb ? nb : 1);
        if (!extra[i]) {
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
            goto done;
        }
        size_t off = gguf_get_data_offset(src) + gguf_get_tensor_offset(src, i);
        if (fseeko(fp, (off_t)off, SEEK_SET) != 0 || fread(extra[i], 1, nb, fp) != nb) {
            rc = slm_err_set(err, SLM_E_IO, "%s: cannot read tensor %s", m->path, name);
            goto done;
        }
        struct ggml_tensor *c = ggml_new_tensor(ctx, gguf_get_tensor_type(src, i), GGML_MAX_DIMS,
                                                gguf_get_tensor_ne(src, i));
        c->data = extra[i];
        ggml_set_name(c, name);
        gguf_add_tensor(g, c);
    }
    rc = slm__gguf_write_atomic(g, path, err);
done:
    if (fp) {
        fclose(fp);
    }
    for (int64_t i = 0; extra && i < n; i++) {
        free(extra[i]);
    }
    free(extra);
    gguf_free(g);
    if (ctx) {
        ggml_free(ctx);
    }
    return rc;
}

/* ---------------------------------------------------------------- checkpoints */

static uint64_t data_hash(const struct slm_dataset *ds) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; ds && i < ds->n_tok; i++) {
        h = (h ^ (uint32_t)ds->tokens[i]) * 0x100000001b3ull;
        h = (h ^ ds->train[i]) * 0x100000001b3ull;
    }
    return h;
}

/* The settings a checkpoint must agree with to be resumed. */
static void config_string(const struct slm_trainer *tr, char *out, size_t cap) {
    const struct slm_tune_params *p = &tr->p;
    snprintf(out, cap,
             "method=%d rank=%u alpha=%g targets=%u ctx=%d batch=%d accum=%u steps=%u seed=%llu "
             "packing=%d lr=%g warmup=%u params=%zu",
             (int)p->method, p->rank, (double)p->alpha, p->targets, tr->T, tr->B, p->grad_accum,
             tr->n_steps, (unsigned long long)p->seed, !p->no_packing, (double)p->lr, p->warmup,
             tr->n_params);
}

int slm__ckpt_save(struct slm_trainer *tr, const char *path, struct slm_err *err) {
    struct gguf_context *g = gguf_init_empty();
    struct ggml_context *ctx = alias_ctx(tr->n_params * 3, copy_bytes(tr->params, tr->n_params) +
                                                               copy_bytes(tr->mom_m, tr->n_params) +
                                                               copy_bytes(tr->mom_v, tr->n_params));
    if (!g || !ctx) {
        gguf_free(g);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    char cfg[512];
    config_string(tr, cfg, sizeof(cfg));
    gguf_set_val_str(g, "general.type", "slm-checkpoint");
    gguf_set_val_str(g, "general.architecture", tr->m->arch);
    gguf_set_val_u32(g, "slm.ckpt.version", CKPT_VERSION);
    gguf_set_val_str(g, "slm.ckpt.config", cfg);
    gguf_set_val_u64(g, "slm.ckpt.data_hash", data_hash(tr->train));
    gguf_set_val_u32(g, "slm.ckpt.step", tr->step);
    gguf_set_val_u32(g, "slm.ckpt.opt_iter", tr->opt_iter);
    gguf_set_val_u64(g, "slm.ckpt.tokens", tr->tokens_done);
    gguf_set_arr_data(g, "slm.ckpt.train_loss", GGUF_TYPE_FLOAT32, tr->hist_train,
                      tr->n_hist_train);
    gguf_set_arr_data(g, "slm.ckpt.valid_loss", GGUF_TYPE_FLOAT32, tr->hist_valid,
                      tr->n_hist_valid);
    gguf_set_arr_data(g, "slm.ckpt.valid_step", GGUF_TYPE_UINT32, tr->hist_vstep, tr->n_hist_valid);
    char name[GGML_MAX_NAME];
    for (size_t i = 0; i < tr->n_params; i++) {
        snprintf(name, sizeof(name), "p.%zu", i);
        gguf_add_tensor(g, alias(ctx, tr->params[i], name));
        snprintf(name, sizeof(name), "m.%zu", i);
        gguf_add_tensor(g, alias(ctx, tr->mom_m[i], name));
        snprintf(name, sizeof(name), "v.%zu", i);
        gguf_add_tensor(g, alias(ctx, tr->mom_v[i], name));
    }
    int rc = slm__gguf_write_atomic(g, path, err);
    gguf_free(g);
    ggml_free(ctx);
    return rc;
}

static int restore_tensor(struct ggml_context *src, const char *name, struct ggml_tensor *dst,
                          const char *path, struct slm_err *err) {
    struct ggml_tensor *t = ggml_get_tensor(src, name);
    if (!t || t->type != GGML_TYPE_F32 || ggml_nelements(t) != ggml_nelements(dst)) {
        return slm_err_set(err, SLM_E_INVALID, "%s: tensor %s is missing or has another shape",
                           path, name);
    }
    ggml_backend_tensor_set(dst, t->data, 0, ggml_nbytes(dst));
    return SLM_OK;
}

static int restore_history(struct slm_trainer *tr, const struct gguf_context *g) {
    int64_t k = gguf_find_key(g, "slm.ckpt.train_loss");
    if (k >= 0 && gguf_get_arr_type(g, k) == GGUF_TYPE_FLOAT32) {
        size_t n = SLM_MIN(gguf_get_arr_n(g, k), (size_t)tr->n_steps);
        memcpy(tr->hist_train, gguf_get_arr_data(g, k), n * sizeof(float));
        tr->n_hist_train = n;
    }
    int64_t kv = gguf_find_key(g, "slm.ckpt.valid_loss");
    int64_t ks = gguf_find_key(g, "slm.ckpt.valid_step");
    if (kv >= 0 && ks >= 0 && gguf_get_arr_type(g, kv) == GGUF_TYPE_FLOAT32 &&
        gguf_get_arr_type(g, ks) == GGUF_TYPE_UINT32) {
        size_t n =
            SLM_MIN(SLM_MIN(gguf_get_arr_n(g, kv), gguf_get_arr_n(g, ks)), (size_t)tr->n_steps + 2);
        memcpy(tr->hist_valid, gguf_get_arr_data(g, kv), n * sizeof(float));
        memcpy(tr->hist_vstep, gguf_get_arr_data(g, ks), n * sizeof(uint32_t));
        tr->n_hist_valid = n;
        tr->last_valid = n ? tr->hist_valid[n - 1] : NAN;
    }
    return SLM_OK;
}

static uint64_t kv_u64(const struct gguf_context *g, const char *key, enum gguf_type type,
                       bool *ok) {
    int64_t k = gguf_find_key(g, key);
    if (k < 0 || gguf_get_kv_type(g, k) != type) {
        *ok = false;
        return 0;
    }
    return type == GGUF_TYPE_UINT64 ? gguf_get_val_u64(g, k) : gguf_get_val_u32(g, k);
}

int slm__ckpt_load(struct slm_trainer *tr, const char *path, struct slm_err *err) {
    struct ggml_context *data = NULL;
    struct gguf_init_params gp = {false, &data};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        return slm_err_set(err, access(path, R_OK) == 0 ? SLM_E_INVALID : SLM_E_NOT_FOUND,
                           "%s: not a readable checkpoint", path);
    }
    int rc = SLM_OK;
    char cfg[512];
    config_string(tr, cfg, sizeof(cfg));
    int64_t kc = gguf_find_key(g, "slm.ckpt.config");
    bool ok = true;
    uint32_t step = (uint32_t)kv_u64(g, "slm.ckpt.step", GGUF_TYPE_UINT32, &ok);
    uint32_t iter = (uint32_t)kv_u64(g, "slm.ckpt.opt_iter", GGUF_TYPE_UINT32, &ok);
    uint64_t tokens = kv_u64(g, "slm.ckpt.tokens", GGUF_TYPE_UINT64, &ok);
    uint64_t hash = kv_u64(g, "slm.ckpt.data_hash", GGUF_TYPE_UINT64, &ok);
    if (kc < 0 || gguf_get_kv_type(g, kc) != GGUF_TYPE_STRING || !ok) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: not an slm checkpoint", path);
        goto done;
    }
    if (strcmp(gguf_get_val_str(g, kc), cfg) != 0) {
        rc = slm_err_set(err, SLM_E_INVALID,
                         "%s: written by another configuration (%s); this run is (%s)", path,
                         gguf_get_val_str(g, kc), cfg);
        goto done;
    }
    if (hash != data_hash(tr->train)) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: written for different training data", path);
        goto done;
    }
    if (step > tr->n_steps) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: step %u is past the end (%u)", path, step,
                         tr->n_steps);
        goto done;
    }
    char name[GGML_MAX_NAME];
    for (size_t i = 0; i < tr->n_params && rc == SLM_OK; i++) {
        snprintf(name, sizeof(name), "p.%zu", i);
        rc = restore_tensor(data, name, tr->params[i], path, err);
        snprintf(name, sizeof(name), "m.%zu", i);
        rc = rc ? rc : restore_tensor(data, name, tr->mom_m[i], path, err);
        snprintf(name, sizeof(name), "v.%zu", i);
        rc = rc ? rc : restore_tensor(data, name, tr->mom_v[i], path, err);
    }
    if (rc == SLM_OK) {
        tr->step = step;
        tr->opt_iter = iter;
        tr->tokens_done = tokens;
        restore_history(tr, g);
    }
done:
    gguf_free(g);
    if (data) {
        ggml_free(data);
    }
    return rc;
}
