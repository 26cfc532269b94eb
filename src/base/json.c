/*
 * json.c - jansson helpers with slm-style errors.
 */
#include "slm/json.h"

#include <string.h>

int slm_json_parse(const char *data, size_t len, const char *what, json_t **out,
                   struct slm_err *err) {
    json_error_t je;
    json_t *v =
        json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v) {
        return slm_err_set(err, SLM_E_INVALID, "%s:%d:%d: invalid JSON: %s", what, je.line,
                           je.column, je.text);
    }
    *out = v;
    return SLM_OK;
}

int slm_json_load_file(const char *path, size_t max, json_t **out, struct slm_err *err) {
    struct slm_buf b = {0};
    int rc = slm_file_read(path, max ? max : (size_t)64 << 20, &b, err);
    if (rc == SLM_OK) {
        rc = slm_json_parse(b.ptr, b.len, path, out, err);
    }
    slm_buf_free(&b);
    return rc;
}

static const json_t *field(const json_t *obj, const char *key) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return (v && !json_is_null(v)) ? v : NULL;
}

int slm_json_get_str(const json_t *obj, const char *key, const char *def, const char **out,
                     struct slm_err *err) {
    const json_t *v = field(obj, key);
    if (!v) {
        *out = def;
        return SLM_OK;
    }
    if (!json_is_string(v)) {
        return slm_err_set(err, SLM_E_INVALID, "'%s' must be a string", key);
    }
    *out = json_string_value(v);
    return SLM_OK;
}

int slm_json_get_int(const json_t *obj, const char *key, int64_t def, int64_t *out,
                     struct slm_err *err) {
    const json_t *v = field(obj, key);
    if (!v) {
        *out = def;
        return SLM_OK;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return SLM_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return SLM_OK;
        }
    }
    return slm_err_set(err, SLM_E_INVALID, "'%s' must be an integer", key);
}

int slm_json_get_bool(const json_t *obj, const char *key, bool def, bool *out,
                      struct slm_err *err) {
    const json_t *v = field(obj, key);
    if (!v) {
        *out = def;
        return SLM_OK;
    }
    if (!json_is_boolean(v)) {
        return slm_err_set(err, SLM_E_INVALID, "'%s' must be true or false", key);
    }
    *out = json_is_true(v);
    return SLM_OK;
}

static int dump_cb(const char *buffer, size_t size, void *data) {
    return slm_buf_append(data, buffer, size) == SLM_OK ? 0 : -1;
}

int slm_json_dump(const json_t *v, struct slm_buf *out) {
    if (json_dump_callback(v, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        return SLM_E_TOO_LARGE;
    }
    return SLM_OK;
}

struct slm_str slm_json_str(const json_t *v) {
    if (!json_is_string(v)) {
        return SLM_STR("");
    }
    return slm_str_n(json_string_value(v), json_string_length(v));
}
