/*
 * liquid/loader.c - where include/render find partials: the caller's
 * callback, the in-memory partials object, then the jailed root directory.
 *
 * The jail: a partial name is a relative path of [A-Za-z0-9._-] components
 * ("header", "shots/qa"); absolute paths, "." and ".." components, empty
 * components and any other byte are refused before touching the file system.
 * The candidate file's real path (symlinks resolved) must then lie inside the
 * real path of the root, so a symlink pointing out of the root is refused too.
 */
#define _XOPEN_SOURCE 700 /* realpath (XSI: every Unix slm builds on) */
#include "liquid/template.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool name_ok(const char *name, const char **why) {
    size_t n = strlen(name);
    if (n == 0) {
        *why = "is empty";
        return false;
    }
    if (n > 512) {
        *why = "is longer than 512 bytes";
        return false;
    }
    if (name[0] == '/') {
        *why = "is an absolute path";
        return false;
    }
    const char *c = name;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0) {
            *why = "has an empty path component";
            return false;
        }
        if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) {
            *why = "has a '.' or '..' component";
            return false;
        }
        for (size_t i = 0; i < len; i++) {
            char ch = c[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')) {
                *why = "has a character other than letters, digits, '.', '_', '-' and '/'";
                return false;
            }
        }
        c += len;
        if (*c == '/') {
            c++;
            if (!*c) {
                *why = "ends with '/'";
                return false;
            }
        }
    }
    return true;
}

int slm_liquid_load_jailed(const char *root, const char *name, size_t max, struct slm_buf *src,
                           struct slm_err *err) {
    const char *why = NULL;
    if (!root || !name) {
        return slm_err_set(err, SLM_E_INVALID, "partial: no root directory or name");
    }
    if (!name_ok(name, &why)) {
        return slm_err_set(err, SLM_E_INVALID, "partial name '%.100s' %s", name, why);
    }
    char rootreal[PATH_MAX];
    if (!realpath(root, rootreal)) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "template root '%.150s' not found", root);
    }
    size_t rl = strlen(rootreal);
    for (int attempt = 0; attempt < 2; attempt++) {
        char cand[PATH_MAX], real[PATH_MAX];
        size_t need = (size_t)snprintf(cand, sizeof(cand), "%s/%s%s", rootreal, name,
                                       attempt ? ".liquid" : "");
        if (need >= sizeof(cand)) {
            return slm_err_set(err, SLM_E_INVALID, "partial name '%.100s' is too long", name);
        }
        if (!realpath(cand, real)) {
            if (errno == ENOENT || errno == ENOTDIR) {
                continue;
            }
            return slm_err_set(err, SLM_E_IO, "partial '%.100s': %s", name, strerror(errno));
        }
        if (!(strncmp(real, rootreal, rl) == 0 && (real[rl] == '/' || rl == 1))) {
            return slm_err_set(err, SLM_E_INVALID,
                               "partial '%.100s' resolves outside the template root", name);
        }
        struct stat st;
        if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        slm_buf_clear(src);
        int rc = slm_file_read(real, max ? max : ((size_t)1 << 20), src, err);
        return rc;
    }
    return slm_err_set(err, SLM_E_NOT_FOUND, "partial '%.100s' not found in '%.100s'", name, root);
}

int slm__lq_load_source(const struct slm_liquid_template *t, const char *name, struct slm_buf *src,
                        struct slm_err *err) {
    const struct slm_liquid_params *p = &t->params;
    if (p->load) {
        int rc = p->load(p->load_user, name, src, err);
        if (rc != SLM_E_NOT_FOUND) {
            return rc;
        }
        slm_buf_clear(src);
    }
    if (t->partials) {
        json_t *s = json_object_get(t->partials, name);
        if (s && json_is_string(s)) {
            if (json_string_length(s) > p->max_template_bytes) {
                return slm_err_set(err, SLM_E_TOO_LARGE, "partial '%.100s' is over %zu bytes", name,
                                   p->max_template_bytes);
            }
            return slm_buf_append(src, json_string_value(s), json_string_length(s));
        }
    }
    if (t->root) {
        int rc = slm_liquid_load_jailed(t->root, name, p->max_template_bytes, src, err);
        if (rc != SLM_E_NOT_FOUND) {
            return rc;
        }
    }
    return slm_err_set(err, SLM_E_NOT_FOUND, "partial '%.100s' not found", name);
}
