/*
 * engine/model.c - loading models and reading their metadata; llama.cpp's
 * process-wide set-up and log routing.
 */
#include "slm/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gguf.h>

#include "engine/internal.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* llama.cpp logs in pieces (a line may arrive in several calls): assemble
 * lines per thread before handing them to our sink. */
static _Thread_local char t_line[1024];
static _Thread_local size_t t_len;
static _Thread_local enum ggml_log_level t_level;

/* llama.cpp reports failures through return codes too, which the engine turns
 * into messages that say what to do; its own log lines are detail, shown with
 * SLM_LOG=info (errors) or SLM_LOG=debug (everything). */
static enum slm_log_level map_level(enum ggml_log_level l) {
    switch (l) {
    case GGML_LOG_LEVEL_ERROR: return SLM_LOG_INFO;
    default: return SLM_LOG_DEBUG;
    }
}

static void route_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level != GGML_LOG_LEVEL_CONT) {
        t_level = level;
    }
    for (const char *p = text; *p; p++) {
        if (*p == '\n' || t_len + 1 >= sizeof(t_line)) {
            t_line[t_len] = '\0';
            if (t_len > 0) {
                SLM_LOG(map_level(t_level), "llama.cpp: %s", t_line);
            }
            t_len = 0;
            if (*p == '\n') {
                continue;
            }
        }
        t_line[t_len++] = *p;
    }
}

static void init_once(void) {
    llama_log_set(route_log, NULL);
    llama_backend_init();
}

void slm_engine_init(void) {
    pthread_once(&g_once, init_once);
}

const char *slm_engine_version(void) {
    return llama_version();
}

struct slm_model_params slm_model_params_default(void) {
    return (struct slm_model_params){.n_gpu_layers = -1, .vocab_only = false};
}

/* Reads `path`'s GGUF header without the tensors: general.architecture into
 * arch ("" when absent) and general.type into type ("model" when absent).
 * SLM_E_NOT_FOUND, SLM_E_INVALID ("not a GGUF <what>"), SLM_E_CORRUPT. */
static int read_gguf_kind(const char *path, const char *what, char arch[64], char type[32],
                          struct slm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "%s: %s", path, strerror(errno));
    }
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0) {
        return slm_err_set(err, SLM_E_INVALID, "%s: not a GGUF %s", path, what);
    }
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        return slm_err_set(err, SLM_E_CORRUPT, "%s: GGUF header is damaged or truncated", path);
    }
    snprintf(arch, 64, "%s", "");
    snprintf(type, 32, "%s", "model");
    int64_t k = gguf_find_key(g, "general.architecture");
    if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) {
        snprintf(arch, 64, "%s", gguf_get_val_str(g, k));
    }
    k = gguf_find_key(g, "general.type");
    if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) {
        snprintf(type, 32, "%s", gguf_get_val_str(g, k));
    }
    gguf_free(g);
    return SLM_OK;
}

/* Distinguishes "not a GGUF" and "unknown architecture" from other failures
 * so the user gets the right message. */
static int diagnose_load_failure(const char *path, struct slm_err *err) {
    char arch[64], type[32];
    int rc = read_gguf_kind(path, "model file", arch, type, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (strcmp(type, "adapter") == 0) {
        return slm_err_set(err, SLM_E_INVALID,
                           "%s: this is a LoRA adapter, not a model (use it with --adapter)", path);
    }
    if (!arch[0]) {
        return slm_err_set(err, SLM_E_INVALID, "%s: GGUF has no general.architecture", path);
    }
    return slm_err_set(err, SLM_E_UNSUPPORTED,
                       "%s: could not load architecture '%s' (unsupported by llama.cpp %s, or "
                       "tensors missing; SLM_LOG=info shows llama.cpp's reason)",
                       path, arch, llama_version());
}

int slm_model_load(const char *path, const struct slm_model_params *params, struct slm_model **out,
                   struct slm_err *err) {
    slm_engine_init();
    struct slm_model_params p = params ? *params : slm_model_params_default();
    if (access(path, R_OK) != 0) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "%s: %s", path, strerror(errno));
    }
    struct slm_model *m = calloc(1, sizeof(*m));
    if (!m) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    snprintf(m->path, sizeof(m->path), "%s", path);
    struct llama_model_params lp = llama_model_default_params();
    lp.n_gpu_layers = p.n_gpu_layers;
    lp.vocab_only = p.vocab_only;
    m->lm = llama_model_load_from_file(path, lp);
    if (!m->lm) {
        free(m);
        return diagnose_load_failure(path, err);
    }
    m->vocab = llama_model_get_vocab(m->lm);
    const char *tmpl = llama_model_chat_template(m->lm, NULL);
    if (tmpl && tmpl[0]) {
        m->chat_template = strdup(tmpl);
        if (!m->chat_template) {
            llama_model_free(m->lm);
            free(m);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    *out = m;
    return SLM_OK;
}

void slm_model_free(struct slm_model *model) {
    if (!model) {
        return;
    }
    llama_model_free(model->lm);
    free(model->chat_template);
    free(model);
}

static void meta_str(const struct llama_model *lm, const char *key, char *out, size_t cap) {
    if (llama_model_meta_val_str(lm, key, out, cap) < 0) {
        out[0] = '\0';
    }
}

void slm_model_get_info(const struct slm_model *model, struct slm_model_info *out) {
    memset(out, 0, sizeof(*out));
    const struct llama_model *lm = model->lm;
    meta_str(lm, "general.architecture", out->arch, sizeof(out->arch));
    meta_str(lm, "general.name", out->name, sizeof(out->name));
    meta_str(lm, "general.license", out->license, sizeof(out->license));
    llama_model_desc(lm, out->desc, sizeof(out->desc));
    snprintf(out->ftype, sizeof(out->ftype), "%s", llama_ftype_name(llama_model_ftype(lm)));
    out->n_params = llama_model_n_params(lm);
    out->size_bytes = llama_model_size(lm);
    out->n_ctx_train = llama_model_n_ctx_train(lm);
    out->n_embd = llama_model_n_embd(lm);
    out->n_layer = llama_model_n_layer(lm);
    out->n_head = llama_model_n_head(lm);
    out->n_head_kv = llama_model_n_head_kv(lm);
    out->n_vocab = llama_vocab_n_tokens(model->vocab);
    out->has_chat_template = model->chat_template != NULL;
}

const char *slm_model_chat_template(const struct slm_model *model) {
    return model->chat_template;
}

int32_t slm_model_n_vocab(const struct slm_model *model) {
    return llama_vocab_n_tokens(model->vocab);
}

int32_t slm_model_eos(const struct slm_model *model) {
    llama_token t = llama_vocab_eos(model->vocab);
    return t == LLAMA_TOKEN_NULL ? -1 : (int32_t)t;
}

/* ---------------------------------------------------------------- GGUF header */

static int64_t kv_int(const struct gguf_context *g, const char *key) {
    int64_t k = gguf_find_key(g, key);
    if (k < 0) {
        return 0;
    }
    switch (gguf_get_kv_type(g, k)) {
    case GGUF_TYPE_UINT8: return gguf_get_val_u8(g, k);
    case GGUF_TYPE_INT8: return gguf_get_val_i8(g, k);
    case GGUF_TYPE_UINT16: return gguf_get_val_u16(g, k);
    case GGUF_TYPE_INT16: return gguf_get_val_i16(g, k);
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, k);
    case GGUF_TYPE_INT32: return gguf_get_val_i32(g, k);
    case GGUF_TYPE_UINT64: return (int64_t)gguf_get_val_u64(g, k);
    case GGUF_TYPE_INT64: return gguf_get_val_i64(g, k);
    default: return 0;
    }
}

/* A count or size: 0 (unknown) when the header's value is negative or past
 * int32 (a hostile file must not make a negative context or head count). */
static int32_t kv_count(const struct gguf_context *g, const char *key) {
    int64_t v = kv_int(g, key);
    return v >= 0 && v <= INT32_MAX ? (int32_t)v : 0;
}

static void kv_str(const struct gguf_context *g, const char *key, char *out, size_t cap) {
    int64_t k = gguf_find_key(g, key);
    out[0] = '\0';
    if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) {
        snprintf(out, cap, "%s", gguf_get_val_str(g, k));
    }
}

/* The file type llama.cpp would name, derived from the most common tensor
 * type among 2-D weights (general.file_type is optional). */
static void ftype_from_tensors(const struct gguf_context *g, char *out, size_t cap) {
    int64_t ft = -1;
    int64_t k = gguf_find_key(g, "general.file_type");
    if (k >= 0) {
        ft = kv_int(g, "general.file_type");
    }
    if (ft >= 0) {
        snprintf(out, cap, "%s", llama_ftype_name((enum llama_ftype)ft));
        return;
    }
    int64_t counts[GGML_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        enum ggml_type t = gguf_get_tensor_type(g, i);
        if ((int)t >= 0 && t < GGML_TYPE_COUNT) {
            counts[t]++;
        }
    }
    int best = 0;
    for (int t = 1; t < GGML_TYPE_COUNT; t++) {
        if (counts[t] > counts[best]) {
            best = t;
        }
    }
    snprintf(out, cap, "%s", ggml_type_name((enum ggml_type)best));
}

int slm_gguf_read_info(const char *path, struct slm_model_info *out, struct slm_buf *chat_template,
                       struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) {
        return slm_err_set(err, errno == ENOENT ? SLM_E_NOT_FOUND : SLM_E_IO, "%s: %s", path,
                           strerror(errno));
    }
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4) != 0) {
        return slm_err_set(err, SLM_E_INVALID, "%s: not a GGUF file", path);
    }
    slm_engine_init();
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        return slm_err_set(err, SLM_E_CORRUPT, "%s: GGUF header is damaged or truncated", path);
    }
    kv_str(g, "general.architecture", out->arch, sizeof(out->arch));
    kv_str(g, "general.name", out->name, sizeof(out->name));
    kv_str(g, "general.license", out->license, sizeof(out->license));
    ftype_from_tensors(g, out->ftype, sizeof(out->ftype));
    char key[128];
    snprintf(key, sizeof(key), "%s.context_length", out->arch);
    out->n_ctx_train = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.embedding_length", out->arch);
    out->n_embd = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.block_count", out->arch);
    out->n_layer = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.attention.head_count", out->arch);
    out->n_head = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.attention.head_count_kv", out->arch);
    out->n_head_kv = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.feed_forward_length", out->arch);
    out->n_ff = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.attention.key_length", out->arch);
    out->n_embd_head_k = kv_count(g, key);
    snprintf(key, sizeof(key), "%s.attention.value_length", out->arch);
    out->n_embd_head_v = kv_count(g, key);
    int64_t tk = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (tk >= 0 && gguf_get_kv_type(g, tk) == GGUF_TYPE_ARRAY) {
        size_t n = gguf_get_arr_n(g, tk);
        out->n_vocab = n <= INT32_MAX ? (int32_t)n : 0;
    }
    int64_t ct = gguf_find_key(g, "tokenizer.chat_template");
    if (ct >= 0 && gguf_get_kv_type(g, ct) == GGUF_TYPE_STRING) {
        out->has_chat_template = true;
        if (chat_template && slm_buf_puts(chat_template, gguf_get_val_str(g, ct)) != SLM_OK) {
            gguf_free(g);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    out->n_tensors = (int32_t)SLM_MIN(gguf_get_n_tensors(g), (int64_t)INT32_MAX);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        out->size_bytes += gguf_get_tensor_size(g, i);
        enum ggml_type t = gguf_get_tensor_type(g, i);
        size_t bs = ggml_blck_size(t);
        size_t ts = ggml_type_size(t);
        if (bs > 0 && ts > 0) {
            out->n_params += (uint64_t)(gguf_get_tensor_size(g, i) / ts * bs);
        }
    }
    snprintf(out->desc, sizeof(out->desc), "%s %s", out->arch, out->ftype);
    gguf_free(g);
    return SLM_OK;
}

/* ---------------------------------------------------------------- adapters */

int slm_adapter_probe(const char *path, struct slm_err *err) {
    char arch[64], type[32];
    int rc = read_gguf_kind(path, "file", arch, type, err);
    if (rc == SLM_OK && strcmp(type, "adapter") != 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: a GGUF %s, not a LoRA adapter", path, type);
    }
    return rc;
}

int slm_adapter_load(struct slm_model *model, const char *path, struct slm_adapter **out,
                     struct slm_err *err) {
    if (access(path, R_OK) != 0) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "adapter %s: %s", path, strerror(errno));
    }
    struct slm_adapter *a = calloc(1, sizeof(*a));
    if (!a) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    a->la = llama_adapter_lora_init(model->lm, path);
    if (!a->la) {
        free(a);
        return slm_err_set(err, SLM_E_INVALID,
                           "adapter %s: not a LoRA adapter for this model (architecture or "
                           "tensor shapes differ; SLM_LOG=info shows llama.cpp's reason)",
                           path);
    }
    a->model = model;
    *out = a;
    return SLM_OK;
}

void slm_adapter_free(struct slm_adapter *adapter) {
    if (!adapter) {
        return;
    }
    llama_adapter_lora_free(adapter->la);
    free(adapter);
}

/* ---------------------------------------------------------------- tokens */

int64_t slm_tokenize(const struct slm_model *model, struct slm_str text, bool add_bos,
                     bool parse_special, int32_t *tokens, size_t cap) {
    if (text.len > INT32_MAX || cap > INT32_MAX) {
        return SLM_E_TOO_LARGE;
    }
    int32_t n = llama_tokenize(model->vocab, text.ptr, (int32_t)text.len, tokens, (int32_t)cap,
                               add_bos, parse_special);
    if (n == INT32_MIN) {
        return SLM_E_TOO_LARGE;
    }
    return n < 0 ? (int64_t)-n : (int64_t)n;
}

int slm_tokenize_alloc(const struct slm_model *model, struct slm_str text, bool add_bos,
                       int32_t **out, size_t *n_out, size_t max, struct slm_err *err) {
    size_t cap = text.len / 2 + 16;
    int32_t *toks = malloc(cap * sizeof(*toks));
    if (!toks) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int64_t n = slm_tokenize(model, text, add_bos, true, toks, cap);
    if (n >= 0 && (size_t)n > cap) {
        cap = (size_t)n;
        int32_t *t2 = realloc(toks, cap * sizeof(*toks));
        if (!t2) {
            free(toks);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        toks = t2;
        n = slm_tokenize(model, text, add_bos, true, toks, cap);
    }
    if (n < 0) {
        free(toks);
        return slm_err_set(err, (int)n, "tokenizing failed: %s", slm_strerror((int)n));
    }
    if (max && (size_t)n > max) {
        free(toks);
        return slm_err_set(err, SLM_E_OVERFLOW, "input is %lld tokens, the limit is %zu",
                           (long long)n, max);
    }
    *out = toks;
    *n_out = (size_t)n;
    return SLM_OK;
}

int slm_token_to_piece(const struct slm_model *model, int32_t token, bool special,
                       struct slm_buf *out) {
    char small[128];
    int32_t n = llama_token_to_piece(model->vocab, token, small, sizeof(small), 0, special);
    if (n >= 0) {
        return slm_buf_append(out, small, (size_t)n);
    }
    int rc = slm_buf_reserve(out, (size_t)-n);
    if (rc != SLM_OK) {
        return rc;
    }
    n = llama_token_to_piece(model->vocab, token, out->ptr + out->len, -n, 0, special);
    if (n < 0) {
        return SLM_E_BACKEND;
    }
    out->len += (size_t)n;
    out->ptr[out->len] = '\0';
    return SLM_OK;
}

bool slm_token_is_eog(const struct slm_model *model, int32_t token) {
    return llama_vocab_is_eog(model->vocab, token);
}
