/*
 * yaml_check.c - validation helpers for config files loaded with slm/yaml.h
 * (router.yaml, eval suites): typed getters whose errors name file, line and
 * key path, unknown-key checks, and paths resolved against the file's folder.
 */
#include "slm/yaml.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int verr(struct slm_yaml_check *v, int code, const json_t *parent, const char *key,
                size_t index, const char *path, const char *fmt, va_list ap) {
    struct slm_yaml_pos pos =
        key ? slm_yaml_pos_key(v->doc, parent, key) : slm_yaml_pos_index(v->doc, parent, index);
    char msg[200];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return slm_err_set(v->err, code, "%s:%d: %s: %s", slm_yaml_name(v->doc), pos.line, path, msg);
}

int slm_yaml_verr(struct slm_yaml_check *v, int code, const json_t *parent, const char *key,
                  size_t index, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = verr(v, code, parent, key, index, path, fmt, ap);
    va_end(ap);
    return rc;
}

int slm_yaml_key_err(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     const char *fmt, ...) {
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, key);
    va_list ap;
    va_start(ap, fmt);
    int rc = verr(v, SLM_E_INVALID, obj, key, 0, p, fmt, ap);
    va_end(ap);
    return rc;
}

void slm_yaml_subpath(char *out, size_t cap, const char *path, const char *key) {
    int n = snprintf(out, cap, "%s%s%s", path, path[0] ? "." : "", key);
    if (n < 0 || (size_t)n >= cap) {
        out[cap - 1] = '\0'; /* a cut path still points the right way */
    }
}

/* Unknown keys are errors; the message names the closest allowed key, or
 * lists what is allowed. */
int slm_yaml_check_keys(struct slm_yaml_check *v, const json_t *obj, const char *path,
                        const char *const *allowed) {
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)obj, k, val) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++) {
            ok = strcmp(*a, k) == 0;
        }
        if (!ok) {
            size_t n_allowed = 0;
            while (allowed[n_allowed]) {
                n_allowed++;
            }
            const char *near = slm_closest_name(k, allowed, n_allowed, 2);
            if (near) {
                return slm_yaml_key_err(v, obj, path, k, "unknown key (did you mean '%s'?)", near);
            }
            char list[160] = "";
            size_t used = 0;
            for (const char *const *a = allowed; *a && used + 1 < sizeof(list); a++) {
                int n = snprintf(list + used, sizeof(list) - used, "%s%s", a == allowed ? "" : ", ",
                                 *a);
                used += n > 0 ? (size_t)n : 0;
            }
            char p[256];
            slm_yaml_subpath(p, sizeof(p), path, k);
            return slm_yaml_verr(v, SLM_E_INVALID, obj, k, 0, p,
                                 "unknown key (expected one of: %s)", list);
        }
    }
    return SLM_OK;
}

int slm_yaml_want_object(struct slm_yaml_check *v, const json_t *parent, const char *key,
                         size_t index, const char *path, const json_t *val) {
    if (!json_is_object(val)) {
        return slm_yaml_verr(v, SLM_E_INVALID, parent, key, index, path, "expected a mapping");
    }
    return SLM_OK;
}

int slm_yaml_get_str(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     bool required, char **out) {
    const json_t *val = json_object_get(obj, key);
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, key);
    if (!val || json_is_null(val)) {
        if (required) {
            return slm_yaml_verr(v, SLM_E_INVALID, obj, NULL, SIZE_MAX, p, "required");
        }
        return SLM_OK;
    }
    if (!json_is_string(val) || json_string_length(val) == 0) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, key, 0, p, "expected a non-empty string");
    }
    free(*out);
    *out = strdup(json_string_value(val));
    return *out ? SLM_OK : SLM_E_NOMEM;
}

int slm_yaml_get_num(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     double lo, double hi, double *out) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, key);
    double d = json_number_value(val);
    if (!json_is_number(val) || d < lo || d > hi) {
        if (hi == INFINITY || hi >= 1e300) {
            return slm_yaml_verr(v, SLM_E_INVALID, obj, key, 0, p, "expected a number >= %g", lo);
        }
        return slm_yaml_verr(v, SLM_E_INVALID, obj, key, 0, p,
                             "expected a number between %g and %g", lo, hi);
    }
    *out = d;
    return SLM_OK;
}

int slm_yaml_get_int(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     int64_t lo, int64_t hi, int64_t *out) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, key);
    if (!json_is_integer(val) || json_integer_value(val) < lo || json_integer_value(val) > hi) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, key, 0, p,
                             "expected an integer between %lld and %lld", (long long)lo,
                             (long long)hi);
    }
    *out = (int64_t)json_integer_value(val);
    return SLM_OK;
}

int slm_yaml_get_bool(struct slm_yaml_check *v, const json_t *obj, const char *path,
                      const char *key, bool *out) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    if (!json_is_boolean(val)) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, key);
        return slm_yaml_verr(v, SLM_E_INVALID, obj, key, 0, p, "expected true or false");
    }
    *out = json_is_true(val);
    return SLM_OK;
}

/* Makes `rel` absolute against the config's folder (a copy either way). */
char *slm_yaml_resolve_path(const char *dir, const char *rel) {
    if (rel[0] == '/' || !dir || !dir[0]) {
        return strdup(rel);
    }
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p) {
        snprintf(p, n, "%s/%s", dir, rel);
    }
    return p;
}

int slm_yaml_get_path(struct slm_yaml_check *v, const json_t *obj, const char *path,
                      const char *key, bool must_exist, char **out) {
    char *rel = NULL;
    int rc = slm_yaml_get_str(v, obj, path, key, false, &rel);
    if (rc != SLM_OK || !rel) {
        return rc;
    }
    char *abs = slm_yaml_resolve_path(v->dir, rel);
    free(rel);
    if (!abs) {
        return SLM_E_NOMEM;
    }
    if (must_exist && !slm_file_exists(abs)) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, key);
        rc = slm_yaml_verr(v, SLM_E_NOT_FOUND, obj, key, 0, p, "no such file: %s", abs);
        free(abs);
        return rc;
    }
    free(*out);
    *out = abs;
    return SLM_OK;
}
