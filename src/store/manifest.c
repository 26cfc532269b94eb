/*
 * store/manifest.c - manifests: what a model name means, to and from the
 * on-disk JSON (docs/store.md). Manifests on disk may have been edited or
 * damaged, so every field is checked; a digest is used to build a path and
 * must be exactly "sha256-" and 64 lowercase hex digits.
 *
 * A struct slm_manifest owns all its strings and JSON references; one
 * slm_manifest_free() releases them.
 */
#include "slm/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm/json.h"
#include "store/internal.h"

void slm_manifest_free(struct slm_manifest *m) {
    if (!m) {
        return;
    }
    free(m->name);
    free(m->model_path);
    free(m->model_digest);
    free(m->source);
    for (size_t i = 0; i < m->n_adapters; i++) {
        free(m->adapters[i].path);
        free(m->adapters[i].digest);
    }
    free(m->adapters);
    json_decref(m->params);
    free(m->system);
    free(m->template_path);
    free(m->template_digest);
    json_decref(m->messages);
    free(m->license);
    free(m);
}

struct slm_manifest *slm__manifest_new(const char *name) {
    struct slm_manifest *m = calloc(1, sizeof(*m));
    if (!m) {
        return NULL;
    }
    m->name = strdup(name ? name : "");
    m->params = json_object();
    m->messages = json_array();
    if (!m->name || !m->params || !m->messages) {
        slm_manifest_free(m);
        return NULL;
    }
    return m;
}

bool slm__digest_valid(const char *d) {
    if (!d || strncmp(d, "sha256-", 7) != 0 || strlen(d) != 7 + 64) {
        return false;
    }
    for (const char *p = d + 7; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return false;
        }
    }
    return true;
}

size_t slm__format_time(int64_t ms, char *out, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (cap == 0 || !gmtime_r(&t, &tm)) {
        return 0;
    }
    return strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Reads `n` digits at `p` into *out. */
static bool digits(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

int slm__parse_time(const char *s, int64_t *ms) {
    /* "YYYY-MM-DDTHH:MM:SSZ", optionally with ".fff" before the Z. */
    int y, mo, d, h, mi, se, frac = 0;
    size_t n = strlen(s);
    if (n < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' ||
        !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se)) {
        return SLM_E_INVALID;
    }
    const char *p = s + 19;
    if (*p == '.') {
        if (!digits(p + 1, 3, &frac)) {
            return SLM_E_INVALID;
        }
        p += 4;
    }
    if (strcmp(p, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        se > 60) {
        return SLM_E_INVALID;
    }
    int64_t t = slm_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    *ms = t * 1000 + frac;
    return SLM_OK;
}

static int corrupt(struct slm_err *err, const char *name, const char *key, const char *what) {
    return slm_err_set(err, SLM_E_CORRUPT, "manifest of '%.200s': '%s' %s", name, key, what);
}

/* Copies an optional string field; SLM_E_CORRUPT when present and not a string. */
static int opt_str(const json_t *obj, const char *key, const char *name, char **out,
                   struct slm_err *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        return SLM_OK;
    }
    if (!json_is_string(v)) {
        return corrupt(err, name, key, "must be a string");
    }
    *out = slm_str_dup(slm_json_str(v));
    return *out ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

/* The digest field of `obj` (must be valid), blob path into *path. */
static int blob_ref(struct slm_store *store, const json_t *obj, const char *key, const char *name,
                    char **digest, char **path, struct slm_err *err) {
    const char *d = json_string_value(json_object_get(obj, "digest"));
    if (!d || !slm__digest_valid(d)) {
        return corrupt(err, name, key, "needs a \"digest\" of the form sha256-<64 hex digits>");
    }
    char buf[4096];
    size_t n = slm_store_blob_path(store, d + 7, buf, sizeof(buf));
    if (n >= sizeof(buf)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "store path too long");
    }
    *digest = strdup(d);
    *path = strdup(buf);
    return *digest && *path ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

static int read_model(struct slm_store *store, const json_t *doc, struct slm_manifest *m,
                      struct slm_err *err) {
    const json_t *model = json_object_get(doc, "model");
    if (!json_is_object(model)) {
        return corrupt(err, m->name, "model", "is missing or not an object");
    }
    int rc = blob_ref(store, model, "model", m->name, &m->model_digest, &m->model_path, err);
    if (rc != SLM_OK) {
        return rc;
    }
    const json_t *size = json_object_get(model, "size");
    if (size && !json_is_null(size)) {
        if (!json_is_integer(size) || json_integer_value(size) < 0) {
            return corrupt(err, m->name, "model.size", "must be a non-negative integer");
        }
        m->model_size = (uint64_t)json_integer_value(size);
    }
    return opt_str(model, "source", m->name, &m->source, err);
}

static int read_adapters(struct slm_store *store, const json_t *doc, struct slm_manifest *m,
                         struct slm_err *err) {
    const json_t *arr = json_object_get(doc, "adapters");
    if (!arr || json_is_null(arr)) {
        return SLM_OK;
    }
    if (!json_is_array(arr)) {
        return corrupt(err, m->name, "adapters", "must be an array");
    }
    size_t n = json_array_size(arr);
    if (n > 64) {
        return corrupt(err, m->name, "adapters", "has more than 64 entries");
    }
    if (n == 0) {
        return SLM_OK;
    }
    m->adapters = calloc(n, sizeof(*m->adapters));
    if (!m->adapters) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        if (!json_is_object(a)) {
            return corrupt(err, m->name, "adapters", "entries must be objects");
        }
        struct slm_manifest_adapter *ad = &m->adapters[i];
        m->n_adapters = i + 1;
        int rc = blob_ref(store, a, "adapters", m->name, &ad->digest, &ad->path, err);
        if (rc != SLM_OK) {
            return rc;
        }
        const json_t *scale = json_object_get(a, "scale");
        ad->scale = 1.0f;
        if (scale && !json_is_null(scale)) {
            if (!json_is_number(scale)) {
                return corrupt(err, m->name, "adapters.scale", "must be a number");
            }
            ad->scale = (float)json_number_value(scale);
        }
    }
    return SLM_OK;
}

static int read_messages(const json_t *doc, struct slm_manifest *m, struct slm_err *err) {
    const json_t *arr = json_object_get(doc, "messages");
    if (!arr || json_is_null(arr)) {
        return SLM_OK;
    }
    if (!json_is_array(arr)) {
        return corrupt(err, m->name, "messages", "must be an array");
    }
    size_t i;
    const json_t *msg;
    json_array_foreach(arr, i, msg) {
        const json_t *role = json_object_get(msg, "role");
        const json_t *content = json_object_get(msg, "content");
        if (!json_is_string(role) || !json_is_string(content)) {
            return corrupt(err, m->name, "messages",
                           "entries must be objects with string \"role\" and \"content\"");
        }
        json_t *copy = json_pack("{sOsO}", "role", role, "content", content);
        if (!copy || json_array_append_new(m->messages, copy) != 0) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    return SLM_OK;
}

static int read_rest(struct slm_store *store, const json_t *doc, struct slm_manifest *m,
                     struct slm_err *err) {
    const json_t *params = json_object_get(doc, "params");
    if (params && !json_is_null(params)) {
        if (!json_is_object(params)) {
            return corrupt(err, m->name, "params", "must be an object");
        }
        if (json_object_update(m->params, (json_t *)params) != 0) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    int rc = opt_str(doc, "system", m->name, &m->system, err);
    if (rc == SLM_OK) {
        rc = opt_str(doc, "license", m->name, &m->license, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    const json_t *tmpl = json_object_get(doc, "template");
    if (tmpl && !json_is_null(tmpl)) {
        if (!json_is_object(tmpl)) {
            return corrupt(err, m->name, "template", "must be an object");
        }
        rc =
            blob_ref(store, tmpl, "template", m->name, &m->template_digest, &m->template_path, err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    const json_t *created = json_object_get(doc, "created");
    if (created && !json_is_null(created)) {
        if (!json_is_string(created) ||
            slm__parse_time(json_string_value(created), &m->created_ms) != SLM_OK) {
            return corrupt(err, m->name, "created", "must be a time like 2026-01-31T12:00:00Z");
        }
    }
    return read_messages(doc, m, err);
}

int slm_manifest_from_json(struct slm_store *store, const char *name, const json_t *doc,
                           struct slm_manifest **out, struct slm_err *err) {
    *out = NULL;
    if (!json_is_object(doc)) {
        return slm_err_set(err, SLM_E_CORRUPT, "manifest of '%.200s' is not a JSON object",
                           name ? name : "");
    }
    struct slm_manifest *m = slm__manifest_new(name);
    if (!m) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc;
    const json_t *schema = json_object_get(doc, "schema");
    if (!json_is_integer(schema)) {
        rc = corrupt(err, m->name, "schema", "is missing or not an integer");
    } else if (json_integer_value(schema) != SLM_MANIFEST_SCHEMA) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "manifest of '%.200s' has schema %lld; this slm reads schema %d", m->name,
                         (long long)json_integer_value(schema), SLM_MANIFEST_SCHEMA);
    } else {
        rc = read_model(store, doc, m, err);
    }
    if (rc == SLM_OK) {
        rc = read_adapters(store, doc, m, err);
    }
    if (rc == SLM_OK) {
        rc = read_rest(store, doc, m, err);
    }
    if (rc != SLM_OK) {
        slm_manifest_free(m);
        return rc;
    }
    *out = m;
    return SLM_OK;
}

/* "sha256-<hex>" for a blob path: the digest field or the file's base name. */
static const char *digest_of(const char *digest, const char *path) {
    if (digest) {
        return digest;
    }
    const char *base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : path;
    return base && slm__digest_valid(base) ? base : NULL;
}

static int set_new(json_t *obj, const char *key, json_t *v) {
    return v ? json_object_set_new(obj, key, v) : -1;
}

json_t *slm_manifest_to_json(const struct slm_manifest *m) {
    json_t *doc = json_object();
    json_t *model = json_object();
    int bad = !doc || !model;
    const char *md = digest_of(m->model_digest, m->model_path);
    bad |= set_new(doc, "schema", json_integer(SLM_MANIFEST_SCHEMA));
    bad |= set_new(model, "digest", md ? json_string(md) : json_null());
    bad |= set_new(model, "size", json_integer((json_int_t)m->model_size));
    if (m->source) {
        bad |= set_new(model, "source", json_string(m->source));
    }
    bad |= json_object_set(doc, "model", model);
    if (m->n_adapters > 0) {
        json_t *arr = json_array();
        bad |= set_new(doc, "adapters", arr);
        for (size_t i = 0; arr && i < m->n_adapters; i++) {
            const char *d = digest_of(m->adapters[i].digest, m->adapters[i].path);
            bad |= json_array_append_new(arr, json_pack("{sssf}", "digest", d ? d : "", "scale",
                                                        (double)m->adapters[i].scale));
        }
    }
    if (m->params && json_object_size(m->params) > 0) {
        bad |= json_object_set(doc, "params", m->params);
    }
    if (m->system) {
        bad |= set_new(doc, "system", json_string(m->system));
    }
    const char *td = digest_of(m->template_digest, m->template_path);
    if (td) {
        bad |= set_new(doc, "template", json_pack("{ss}", "digest", td));
    }
    if (m->messages && json_array_size(m->messages) > 0) {
        bad |= json_object_set(doc, "messages", m->messages);
    }
    if (m->license) {
        bad |= set_new(doc, "license", json_string(m->license));
    }
    char when[32];
    if (slm__format_time(m->created_ms ? m->created_ms : slm_time_unix_ms(), when, sizeof(when)) >
        0) {
        bad |= set_new(doc, "created", json_string(when));
    }
    json_decref(model);
    if (bad) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}
