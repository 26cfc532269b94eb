/*
 * store/create.c - `slm create NAME -f Modelfile`: turns a parsed Modelfile
 * into a manifest (importing model, adapter and template files as blobs),
 * and the reverse, a manifest printed as a Modelfile (`slm show
 * --modelfile`).
 *
 * The manifest is written last, so a failed create leaves at most unnamed
 * blobs behind, never a half-made model; a killed one may also leave its
 * import in tmp/, which the next writer's sweep removes once it is old
 * (store/tmp.c).
 */
#define _XOPEN_SOURCE 700 /* realpath (XSI: every Unix slm builds on) */
#include "slm/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/json.h"
#include "slm/liquid.h"
#include "store/internal.h"

#define TEMPLATE_MAX ((size_t)1 << 20)

struct create {
    struct slm_store *store;
    const struct slm_create_params *p;
    const char *file;   /* the Modelfile's name, for errors */
    char dir[PATH_MAX]; /* relative paths start here */
    struct slm_err *err;
};

static int fail(struct create *c, int code, int line, const char *dir, const char *fmt, ...)
    SLM_PRINTF(5, 6);

static int fail(struct create *c, int code, int line, const char *dir, const char *fmt, ...) {
    char msg[220];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return slm_err_set(c->err, code, "%s:%d: %s: %s", c->file, line, dir, msg);
}

static void note(struct create *c, const char *fmt, ...) SLM_PRINTF(2, 3);

static void note(struct create *c, const char *fmt, ...) {
    if (!c->p->note) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->p->note(line, c->p->user);
}

/* `path` relative to the Modelfile's folder (absolute paths as they are;
 * "~/" is the home folder, as in Ollama). */
static bool resolve_path(const struct create *c, const char *path, char *out, size_t cap) {
    const char *home = getenv("HOME");
    size_t n;
    if (path[0] == '/') {
        n = (size_t)snprintf(out, cap, "%s", path);
    } else if (path[0] == '~' && path[1] == '/' && home) {
        n = slm_path_join(out, cap, home, path + 2);
    } else {
        n = slm_path_join(out, cap, c->dir, path);
    }
    return n < cap;
}

/* FROM names a file when it is written as a path, or ends in .gguf and such
 * a file exists (else "hf.co/ORG/REPO/F.gguf" is a store name). */
static bool names_file(const struct create *c, const char *s) {
    struct slm_str v = slm_str_c(s);
    if (s[0] == '/' || s[0] == '~' || slm_str_starts_with(v, SLM_STR("./")) ||
        slm_str_starts_with(v, SLM_STR("../"))) {
        return true;
    }
    char path[PATH_MAX];
    resolve_path(c, s, path, sizeof(path));
    return (slm_str_ends_with(v, SLM_STR(".gguf")) || slm_str_ends_with(v, SLM_STR(".GGUF"))) &&
           slm_file_exists(path);
}

static bool has_gguf_magic(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char magic[4] = {0};
    bool ok = fd >= 0 && read(fd, magic, 4) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* Imports `path` (a GGUF) as a blob; writes the digest. */
static int import_gguf(struct create *c, int line, const char *dir, const char *given,
                       char digest[72], uint64_t *size) {
    char path[PATH_MAX];
    resolve_path(c, given, path, sizeof(path));
    if (!slm_file_exists(path)) {
        return fail(c, SLM_E_NOT_FOUND, line, dir, "file not found: %s", path);
    }
    if (!has_gguf_magic(path)) {
        return fail(c, SLM_E_INVALID, line, dir, "%s is not a GGUF file", given);
    }
    note(c, "importing %s", given);
    struct slm_err ierr = {0};
    int rc = slm_store_import_blob(c->store, path, NULL, false, digest, &ierr);
    if (rc != SLM_OK) {
        return fail(c, rc, line, dir, "%s", ierr.msg);
    }
    if (size) {
        *size = (uint64_t)slm_file_size(path);
    }
    return SLM_OK;
}

/* Stores bytes as a blob (through a temporary file in the store). */
static int import_bytes(struct create *c, const char *data, size_t n, char digest[72]) {
    char tmp[PATH_MAX];
    char fname[64];
    snprintf(fname, sizeof(fname), "text-%ld-%lld", (long)getpid(), (long long)slm_time_unix_ms());
    slm_store_tmp_path(c->store, fname, tmp, sizeof(tmp));
    int rc = slm_file_write_atomic(tmp, data, n, c->err);
    if (rc == SLM_OK) {
        rc = slm_store_import_blob(c->store, tmp, NULL, true, digest, c->err);
    }
    unlink(tmp);
    return rc;
}

/* TEMPLATE: a file (read, checked, stored) or inline Liquid (stored). */
static int do_template(struct create *c, const struct slm_modelfile *mf, struct slm_manifest *m) {
    const char *t = mf->template_text;
    int line = mf->template_line;
    bool one_line = !strchr(t, '\n');
    bool has_tags = strstr(t, "{{") || strstr(t, "{%");
    struct slm_buf text = {0};
    const char *what = "the inline template";
    int rc = SLM_OK;
    if (one_line && !has_tags) {
        char path[PATH_MAX];
        resolve_path(c, t, path, sizeof(path));
        if (slm_file_exists(path)) {
            struct slm_err ferr = {0};
            rc = slm_file_read(path, TEMPLATE_MAX, &text, &ferr);
            if (rc != SLM_OK) {
                return fail(c, rc, line, "TEMPLATE", "%s", ferr.msg);
            }
            what = t;
        } else if (strchr(t, '/') || strchr(t, '.')) {
            return fail(c, SLM_E_NOT_FOUND, line, "TEMPLATE", "template file not found: %s", path);
        }
    }
    if (!text.ptr) {
        rc = slm_buf_puts(&text, t);
    }
    if (rc == SLM_OK && slm_template_looks_like_go(slm_buf_cstr(&text), text.len)) {
        rc = fail(c, SLM_E_UNSUPPORTED, line, "TEMPLATE",
                  "%s uses Ollama's Go template syntax ({{ .Prompt }}, {{ if .System }}), which "
                  "slm does not support: write it in Liquid ({{ input }}, {%% if system %%})",
                  what);
    } else if (rc == SLM_OK && !slm_utf8_valid(slm_buf_cstr(&text), text.len)) {
        rc = fail(c, SLM_E_INVALID, line, "TEMPLATE", "%s is not UTF-8 text", what);
    } else if (rc == SLM_OK) {
        /* Stored as one blob, so it must parse on its own: a syntax error or an
         * include/render of another file is reported now, not at run time. */
        struct slm_liquid_params lp = slm_liquid_params_default();
        struct slm_liquid_template *parsed = NULL;
        struct slm_err lerr = {0};
        rc = slm_liquid_parse(what, slm_buf_cstr(&text), text.len, &lp, &parsed, &lerr);
        slm_liquid_free(parsed);
        if (rc != SLM_OK) {
            rc = fail(c, rc, line, "TEMPLATE", "%s", lerr.msg);
        }
    }
    char digest[72];
    if (rc == SLM_OK) {
        rc = import_bytes(c, slm_buf_cstr(&text), text.len, digest);
    }
    if (rc == SLM_OK) {
        char blob[PATH_MAX];
        slm_store_blob_path(c->store, digest + 7, blob, sizeof(blob));
        free(m->template_digest);
        free(m->template_path);
        m->template_digest = strdup(digest);
        m->template_path = strdup(blob);
        if (!m->template_digest || !m->template_path) {
            rc = slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
        }
    }
    slm_buf_free(&text);
    return rc;
}

/* FROM: the base manifest (a store model) or a new one around a GGUF file. */
static int do_from(struct create *c, const struct slm_modelfile *mf, const char *name,
                   struct slm_manifest **out) {
    const char *from = mf->from;
    int line = mf->from_line;
    if (names_file(c, from)) {
        char digest[72];
        uint64_t size = 0;
        int rc = import_gguf(c, line, "FROM", from, digest, &size);
        if (rc != SLM_OK) {
            return rc;
        }
        struct slm_manifest *m = slm__manifest_new(name);
        char path[PATH_MAX], blob[PATH_MAX];
        resolve_path(c, from, path, sizeof(path));
        char real[PATH_MAX];
        slm_store_blob_path(c->store, digest + 7, blob, sizeof(blob));
        if (!m || !(m->model_digest = strdup(digest)) || !(m->model_path = strdup(blob)) ||
            !(m->source = strdup(realpath(path, real) ? real : path))) {
            slm_manifest_free(m);
            return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
        }
        m->model_size = size;
        *out = m;
        return SLM_OK;
    }
    struct slm_err rerr = {0};
    int rc = slm_store_resolve(c->store, from, out, &rerr);
    if (rc != SLM_OK) {
        return fail(c, rc, line, "FROM", "%s", rerr.msg);
    }
    free((*out)->name);
    (*out)->name = strdup(name);
    return (*out)->name ? SLM_OK : slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
}

static int do_adapters(struct create *c, const struct slm_modelfile *mf, struct slm_manifest *m) {
    if (mf->n_adapters == 0) {
        return SLM_OK;
    }
    size_t total = m->n_adapters + mf->n_adapters;
    struct slm_manifest_adapter *grown = realloc(m->adapters, total * sizeof(*grown));
    if (!grown) {
        return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
    }
    m->adapters = grown;
    for (size_t i = 0; i < mf->n_adapters; i++) {
        char digest[72], blob[PATH_MAX];
        int rc = import_gguf(c, mf->adapter_lines[i], "ADAPTER", mf->adapters[i], digest, NULL);
        if (rc != SLM_OK) {
            return rc;
        }
        slm_store_blob_path(c->store, digest + 7, blob, sizeof(blob));
        struct slm_manifest_adapter *a = &m->adapters[m->n_adapters];
        a->digest = strdup(digest);
        a->path = strdup(blob);
        a->scale = 1.0f;
        m->n_adapters++;
        if (!a->digest || !a->path) {
            return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
        }
    }
    return SLM_OK;
}

static int replace_str(char **dst, const char *src) {
    if (!src) {
        return SLM_OK;
    }
    char *copy = strdup(src);
    if (!copy) {
        return SLM_E_NOMEM;
    }
    free(*dst);
    *dst = copy;
    return SLM_OK;
}

static int apply(struct create *c, const struct slm_modelfile *mf, struct slm_manifest *m) {
    int rc = do_adapters(c, mf, m);
    if (rc != SLM_OK) {
        return rc;
    }
    /* Parameters override the base's one by one; a Modelfile's stop list
     * replaces the base's. */
    if (json_object_update(m->params, mf->params) != 0) {
        return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
    }
    if (replace_str(&m->system, mf->system) != SLM_OK ||
        replace_str(&m->license, mf->license) != SLM_OK) {
        return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
    }
    if (json_array_size(mf->messages) > 0) {
        json_decref(m->messages);
        m->messages = json_deep_copy(mf->messages);
        if (!m->messages) {
            return slm_err_set(c->err, SLM_E_NOMEM, "out of memory");
        }
    }
    return mf->template_text ? do_template(c, mf, m) : SLM_OK;
}

static int setup(struct create *c, struct slm_buf *text) {
    const struct slm_create_params *p = c->p;
    if (p->modelfile) {
        c->file = p->modelfile;
        int rc = slm_file_read(p->modelfile, (size_t)4 << 20, text, c->err);
        if (rc != SLM_OK) {
            return rc;
        }
        char real[PATH_MAX];
        if (strcmp(p->modelfile, "-") != 0 && realpath(p->modelfile, real)) {
            char *slash = strrchr(real, '/');
            *(slash == real ? slash + 1 : slash) = '\0';
            snprintf(c->dir, sizeof(c->dir), "%s", real);
            return SLM_OK;
        }
    } else {
        c->file = "Modelfile";
        int rc = slm_buf_append(text, p->text ? p->text : "", p->text ? p->text_len : 0);
        if (rc != SLM_OK) {
            return slm_err_set(c->err, rc, "Modelfile too large");
        }
    }
    const char *base = p->base_dir;
    char cwd[PATH_MAX];
    if (!base) {
        base = getcwd(cwd, sizeof(cwd)) ? cwd : ".";
    }
    snprintf(c->dir, sizeof(c->dir), "%s", base);
    return SLM_OK;
}

int slm_create(struct slm_store *store, const char *name, const struct slm_create_params *params,
               struct slm_err *err) {
    struct create c = {.store = store, .p = params, .err = err};
    struct slm_name target;
    int rc = slm_name_parse(name, &target, err);
    if (rc != SLM_OK) {
        return rc;
    }
    char full[SLM_NAME_MAX + 80];
    slm_name_format(&target, full, sizeof(full));
    uint64_t freed = 0;
    size_t swept = slm__store_sweep_tmp(store, &freed);
    if (swept > 0) {
        char sz[32];
        slm_format_size(sz, sizeof(sz), freed);
        note(&c, "removed %zu stale file%s from %s/tmp (%s)", swept, swept == 1 ? "" : "s",
             slm_store_home(store), sz);
    }
    struct slm_buf text = {0};
    struct slm_modelfile *mf = NULL;
    struct slm_manifest *m = NULL;
    json_t *doc = NULL;
    rc = setup(&c, &text);
    if (rc == SLM_OK) {
        rc = slm_modelfile_parse(slm_buf_cstr(&text), text.len, c.file, &mf, err);
    }
    if (rc == SLM_OK) {
        rc = do_from(&c, mf, full, &m);
    }
    if (rc == SLM_OK) {
        rc = apply(&c, mf, m);
    }
    if (rc == SLM_OK) {
        m->created_ms = slm_time_unix_ms();
        doc = slm_manifest_to_json(m);
        rc = doc ? slm_store_write_manifest(store, &target, doc, err)
                 : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    json_decref(doc);
    slm_manifest_free(m);
    slm_modelfile_free(mf);
    slm_buf_free(&text);
    return rc;
}

/* ---------------------------------------------------------------- to Modelfile */

/* "a" with \" and \\ escaped. */
static int put_quoted(struct slm_buf *out, const char *text) {
    int rc = slm_buf_putc(out, '"');
    for (const char *s = text; *s && rc == SLM_OK; s++) {
        rc = (*s == '"' || *s == '\\') ? slm_buf_putc(out, '\\') : SLM_OK;
        rc = rc == SLM_OK ? slm_buf_putc(out, *s) : rc;
    }
    return rc == SLM_OK ? slm_buf_putc(out, '"') : rc;
}

/* A value the parser reads back as it was: plain when it is one simple
 * line, else in """...""" when that cannot end early, else "escaped". */
static int put_text(struct slm_buf *out, const char *dir, const char *text) {
    size_t n = strlen(text);
    struct slm_str t = slm_str_n(text, n);
    bool plain = n > 0 && !strchr(text, '\n') && !strchr(text, '"') && !strchr(text, '#') &&
                 slm_str_eq(slm_str_trim(t), t);
    if (plain) {
        return slm_buf_printf(out, "%s %s\n", dir, text);
    }
    if (!strstr(text, "\"\"\"") && (n == 0 || text[n - 1] != '"')) {
        return slm_buf_printf(out, "%s \"\"\"%s\"\"\"\n", dir, text);
    }
    int rc = slm_buf_printf(out, "%s ", dir);
    rc = rc == SLM_OK ? put_quoted(out, text) : rc;
    return rc == SLM_OK ? slm_buf_putc(out, '\n') : rc;
}

static int put_param(struct slm_buf *out, const char *key, const json_t *v) {
    if (json_is_integer(v)) {
        return slm_buf_printf(out, "PARAMETER %s %lld\n", key, (long long)json_integer_value(v));
    }
    if (json_is_real(v)) {
        return slm_buf_printf(out, "PARAMETER %s %g\n", key, json_real_value(v));
    }
    if (json_is_string(v)) {
        int rc = slm_buf_printf(out, "PARAMETER %s ", key);
        rc = rc == SLM_OK ? put_quoted(out, json_string_value(v)) : rc;
        return rc == SLM_OK ? slm_buf_putc(out, '\n') : rc;
    }
    return SLM_OK;
}

int slm_manifest_to_modelfile(const struct slm_manifest *m, struct slm_buf *out,
                              struct slm_err *err) {
    int rc = slm_buf_printf(out,
                            "# Modelfile generated by \"slm show --modelfile\"\n"
                            "# To build a new Modelfile based on this one, replace the FROM "
                            "line with:\n# FROM %s\n\nFROM %s\n",
                            m->name, m->model_path);
    for (size_t i = 0; rc == SLM_OK && i < m->n_adapters; i++) {
        rc = slm_buf_printf(out, "ADAPTER %s\n", m->adapters[i].path);
    }
    if (rc == SLM_OK && m->template_path) {
        struct slm_buf t = {0};
        rc = slm_file_read(m->template_path, TEMPLATE_MAX, &t, err);
        if (rc == SLM_OK) {
            rc = slm_buf_printf(out, "TEMPLATE \"\"\"%s\"\"\"\n", slm_buf_cstr(&t));
        }
        slm_buf_free(&t);
    }
    if (rc == SLM_OK && m->system) {
        rc = put_text(out, "SYSTEM", m->system);
    }
    const char *key;
    json_t *v;
    json_object_foreach(m->params, key, v) {
        if (rc != SLM_OK) {
            break;
        }
        if (json_is_array(v)) {
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item) {
                rc = rc == SLM_OK ? put_param(out, key, item) : rc;
            }
        } else {
            rc = put_param(out, key, v);
        }
    }
    size_t i;
    json_t *msg;
    json_array_foreach(m->messages, i, msg) {
        if (rc != SLM_OK) {
            break;
        }
        const char *role = json_string_value(json_object_get(msg, "role"));
        const char *content = json_string_value(json_object_get(msg, "content"));
        char dir[64];
        snprintf(dir, sizeof(dir), "MESSAGE %s", role ? role : "user");
        rc = put_text(out, dir, content ? content : "");
    }
    if (rc == SLM_OK && m->license) {
        rc = put_text(out, "LICENSE", m->license);
    }
    if (rc != SLM_OK && err && err->code != rc) {
        slm_err_set(err, rc, "cannot write the Modelfile: %s", slm_strerror(rc));
    }
    return rc;
}
