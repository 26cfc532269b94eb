/*
 * server/ollama_models.c - Ollama's model-management routes over the store:
 * GET /api/tags, POST /api/show, GET /api/ps, GET /api/version,
 * POST /api/copy, DELETE /api/delete (pull and create: ollama_admin.c).
 *
 * Over HTTP nothing reads server-side files a client names: /api/create
 * takes FROM a store name and inline SYSTEM/TEMPLATE text only (file paths
 * are refused), and model names never resolve to paths.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#include "slm/json.h"

static const char *model_field(const json_t *body) {
    const char *m = json_string_value(json_object_get(body, "model"));
    return m && m[0] ? m : json_string_value(json_object_get(body, "name"));
}

/* "Q4_K - Medium" -> "Q4_K_M", "all F32" -> "F32". */
static void quant_level(const char *ftype, char *out, size_t cap) {
    const char *p = strncmp(ftype, "all ", 4) == 0 ? ftype + 4 : ftype;
    size_t n = 0;
    for (; *p && n + 1 < cap; p++) {
        if (*p == ' ' && p[1] == '-' && p[2] == ' ' && p[3]) {
            out[n++] = '_';
            out[n] = '\0';
            if (n + 1 < cap) {
                out[n++] = p[3];
            }
            break;
        }
        out[n++] = *p;
    }
    out[n] = '\0';
}

static json_t *details(const struct srv_model_facts *f) {
    char size[32], quant[48];
    srv_format_params(f->info.n_params, size, sizeof(size));
    quant_level(f->info.ftype, quant, sizeof(quant));
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "gguf", "family",
                     f->info.arch, "families", f->info.arch, "parameter_size", size,
                     "quantization_level", quant);
}

/* Resolves a store name under the lock; 404 when missing or a path. */
static int resolve(struct slm_server *s, const char *name, struct slm_manifest **m,
                   struct srv_error *e) {
    if (!name || !name[0]) {
        return srv_bad(e, "model", "'model' is required");
    }
    struct slm_err err = {0};
    pthread_mutex_lock(&s->store_lock);
    int rc = slm_store_resolve_flags(s->store, name, SLM_RESOLVE_STORE_ONLY, m, &err);
    pthread_mutex_unlock(&s->store_lock);
    if (rc == SLM_E_NOT_FOUND || rc == SLM_E_INVALID) {
        return srv_model_not_found(e, name);
    }
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, &err);
}

static enum MHD_Result fail(struct srv_conn *rc, struct srv_error *e) {
    return srv_reply_error(rc, SRV_API_OLLAMA, e);
}

/* ---------------------------------------------------------------- tags, ps, version */

enum MHD_Result srv_ollama_tags(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    struct slm_err err = {0};
    struct slm_store_entry *list = NULL;
    size_t n = 0;
    pthread_mutex_lock(&s->store_lock);
    int r = slm_store_list(s->store, &list, &n, &err);
    pthread_mutex_unlock(&s->store_lock);
    if (r != SLM_OK) {
        srv_fail(&e, r, &err);
        return fail(rc, &e);
    }
    json_t *models = json_array();
    for (size_t i = 0; i < n; i++) {
        if (list[i].damaged) {
            continue;
        }
        struct slm_manifest *m = NULL;
        struct srv_model_facts f;
        memset(&f, 0, sizeof(f));
        if (resolve(s, list[i].name, &m, &e) != SLM_OK ||
            srv_model_facts(s, m->model_path, &f, &err) != SLM_OK) {
            slm_manifest_free(m);
            continue;
        }
        char t[64];
        srv_format_time(list[i].modified_ms, t, sizeof(t));
        json_array_append_new(models, json_pack("{s:s,s:s,s:s,s:I,s:s,s:o}", "name", list[i].name,
                                                "model", list[i].name, "modified_at", t, "size",
                                                (json_int_t)list[i].size, "digest", list[i].id,
                                                "details", details(&f)));
        srv_model_facts_free(&f);
        slm_manifest_free(m);
    }
    free(list);
    return srv_reply_json(rc, 200, json_pack("{s:o}", "models", models));
}

enum MHD_Result srv_ollama_ps(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    const struct slm_server_backend *b = &s->p.backend;
    struct slm_pool_entry *ents = calloc(64, sizeof(*ents));
    if (!ents) {
        return MHD_NO;
    }
    size_t n = SLM_MIN(b->list(b->user, ents, 64), (size_t)64);
    json_t *models = json_array();
    for (size_t i = 0; i < n; i++) {
        struct srv_loaded_name ln;
        if (!srv_lookup_name(s, ents[i].path, &ln)) {
            /* a path longer than a name is cut (shown, never used to open) */
            snprintf(ln.name, sizeof(ln.name), "%.*s", (int)sizeof(ln.name) - 1, ents[i].path);
            ln.digest[0] = '\0';
        }
        struct srv_model_facts f;
        struct slm_err err = {0};
        bool have = srv_model_facts(s, ents[i].path, &f, &err) == SLM_OK;
        char t[64];
        if (ents[i].expires_at_ms < 0) {
            snprintf(t, sizeof(t), "2318-11-26T00:00:00Z"); /* "forever", as Ollama writes it */
        } else {
            srv_format_time(ents[i].expires_at_ms, t, sizeof(t));
        }
        const char *digest = strncmp(ln.digest, "sha256-", 7) == 0 ? ln.digest + 7 : ln.digest;
        json_t *m =
            json_pack("{s:s,s:s,s:I,s:s,s:s,s:I,s:I}", "name", ln.name, "model", ln.name, "size",
                      (json_int_t)ents[i].size_bytes, "digest", digest, "expires_at", t,
                      "size_vram", (json_int_t)0, "in_use", (json_int_t)ents[i].in_use);
        if (have) {
            json_object_set_new(m, "details", details(&f));
            srv_model_facts_free(&f);
        }
        json_array_append_new(models, m);
    }
    free(ents);
    return srv_reply_json(rc, 200, json_pack("{s:o}", "models", models));
}

enum MHD_Result srv_ollama_version(struct srv_conn *rc) {
    return srv_reply_json(rc, 200, json_pack("{s:s}", "version", SLM_VERSION));
}

/* ---------------------------------------------------------------- show */

static json_t *parameters_text(const json_t *params) {
    struct slm_buf b = {0};
    slm_buf_init(&b, (size_t)1 << 20);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < n; i++) {
            const json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
            int rc = slm_buf_printf(&b, "%s%-30s ", b.len ? "\n" : "", key);
            rc = rc == SLM_OK ? srv_json_dump(x, &b) : rc;
            if (rc != SLM_OK) {
                break;
            }
        }
    }
    json_t *s = srv_json_text(b.ptr, b.len);
    slm_buf_free(&b);
    return s;
}

static json_t *model_info(const struct srv_model_facts *f) {
    const struct slm_model_info *in = &f->info;
    json_t *mi = json_pack("{s:s,s:I}", "general.architecture", in->arch, "general.parameter_count",
                           (json_int_t)in->n_params);
    if (in->name[0]) {
        json_object_set_new(mi, "general.name", json_string(in->name));
    }
    const struct {
        const char *suffix;
        int32_t v;
    } kv[] = {{"context_length", in->n_ctx_train},
              {"embedding_length", in->n_embd},
              {"block_count", in->n_layer},
              {"attention.head_count", in->n_head},
              {"attention.head_count_kv", in->n_head_kv},
              {"vocab_size", in->n_vocab}};
    for (size_t i = 0; i < SLM_ARRAY_LEN(kv); i++) {
        char key[96];
        snprintf(key, sizeof(key), "%s.%s", in->arch, kv[i].suffix);
        json_object_set_new(mi, key, json_integer(kv[i].v));
    }
    return mi;
}

enum MHD_Result srv_ollama_show(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    json_t *body = NULL;
    struct slm_manifest *m = NULL;
    struct srv_model_facts f;
    memset(&f, 0, sizeof(f));
    struct slm_err err = {0};
    int r = srv_conn_doc(rc, &body, &e);
    if (r == SLM_OK) {
        r = resolve(s, model_field(body), &m, &e);
    }
    if (r == SLM_OK && (r = srv_model_facts(s, m->model_path, &f, &err)) != SLM_OK) {
        srv_fail(&e, r, &err);
    }
    json_decref(body);
    if (r != SLM_OK) {
        slm_manifest_free(m);
        return fail(rc, &e);
    }
    struct slm_buf mf = {0}, tmpl = {0};
    slm_buf_init(&mf, (size_t)4 << 20);
    slm_buf_init(&tmpl, (size_t)4 << 20);
    if (slm_manifest_to_modelfile(m, &mf, &err) != SLM_OK) {
        slm_buf_clear(&mf);
    }
    if (m->template_path) {
        if (slm_file_read(m->template_path, (size_t)4 << 20, &tmpl, &err) != SLM_OK) {
            slm_buf_clear(&tmpl);
        }
    } else if (slm_buf_puts(&tmpl, f.chat_template) != SLM_OK) {
        slm_buf_clear(&tmpl);
    }
    json_t *out =
        json_pack("{s:o,s:o,s:o,s:o,s:o,s:[s,s,s]}", "modelfile", srv_json_text(mf.ptr, mf.len),
                  "parameters", parameters_text(m->params), "template",
                  srv_json_text(tmpl.ptr, tmpl.len), "details", details(&f), "model_info",
                  model_info(&f), "capabilities", "completion", "tools", "embedding");
    if (out && m->system) {
        json_object_set_new(out, "system", srv_json_text(m->system, strlen(m->system)));
    }
    if (out && m->license) {
        json_object_set_new(out, "license", srv_json_text(m->license, strlen(m->license)));
    }
    if (out && json_array_size(m->messages)) {
        json_object_set(out, "messages", m->messages);
    }
    if (out) {
        int32_t train = f.info.n_ctx_train;
        uint32_t n =
            s->p.n_ctx_seq ? s->p.n_ctx_seq : (train > 0 && train < 4096 ? (uint32_t)train : 4096);
        json_object_set_new(out, "context_length", json_integer(n)); /* per request, here */
    }
    slm_buf_free(&mf);
    slm_buf_free(&tmpl);
    srv_model_facts_free(&f);
    slm_manifest_free(m);
    return srv_reply_json(rc, 200, out);
}

/* ---------------------------------------------------------------- copy, delete */

enum MHD_Result srv_ollama_copy(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    json_t *body = NULL;
    if (srv_conn_doc(rc, &body, &e) != SLM_OK) {
        return fail(rc, &e);
    }
    const char *src = json_string_value(json_object_get(body, "source"));
    const char *dst = json_string_value(json_object_get(body, "destination"));
    int r = SLM_OK;
    if (!src || !dst || !src[0] || !dst[0]) {
        r = srv_bad(&e, NULL, "'source' and 'destination' are required");
    } else if (slm_name_looks_like_path(src) || slm_name_looks_like_path(dst)) {
        r = srv_bad(&e, NULL, "'source' and 'destination' must be model names");
    } else {
        struct slm_err err = {0};
        pthread_mutex_lock(&s->store_lock);
        r = slm_store_copy(s->store, src, dst, &err);
        pthread_mutex_unlock(&s->store_lock);
        if (r != SLM_OK) {
            srv_fail(&e, r, &err);
        }
    }
    json_decref(body);
    return r == SLM_OK ? srv_reply_text(rc, 200, "application/json", "", 0) : fail(rc, &e);
}

enum MHD_Result srv_ollama_delete(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    json_t *body = NULL;
    if (srv_conn_doc(rc, &body, &e) != SLM_OK) {
        return fail(rc, &e);
    }
    const char *name = model_field(body);
    int r = SLM_OK;
    if (!name || !name[0] || slm_name_looks_like_path(name)) {
        r = srv_bad(&e, "model", "'model' must name a model in the store");
    } else {
        struct slm_err err = {0};
        pthread_mutex_lock(&s->store_lock);
        r = slm_store_remove(s->store, name, NULL, &err);
        pthread_mutex_unlock(&s->store_lock);
        if (r != SLM_OK) {
            srv_fail(&e, r, &err);
        }
    }
    json_decref(body);
    return r == SLM_OK ? srv_reply_text(rc, 200, "application/json", "", 0) : fail(rc, &e);
}
