/*
 * store/ops.c - listing, copying and removing models; removing the blobs no
 * manifest refers to any more.
 *
 * A manifest is the only thing that gives a blob a name, so `rm` first
 * removes the manifest (atomic unlink) and only then the blobs it held that
 * no other manifest refers to.
 */
#include "slm/store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm/json.h"
#include "store/internal.h"

#define WALK_DEPTH 16
#define RELEASE_MAX 80 /* model + 64 adapters + template, with room */

/* ---------------------------------------------------------------- walking */

typedef int (*manifest_fn)(const char *path, const char *name, void *user);

/* Calls `fn` for every manifests/<name>/<tag>.json with a valid name. */
static int walk(const char *dir, const char *prefix, int depth, manifest_fn fn, void *user) {
    if (depth > WALK_DEPTH) {
        return SLM_OK;
    }
    DIR *d = opendir(dir);
    if (!d) {
        return errno == ENOENT ? SLM_OK : SLM_E_IO;
    }
    int rc = SLM_OK;
    struct dirent *e;
    while (rc == SLM_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[PATH_MAX], sub[SLM_NAME_MAX + 80];
        int n1 = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (n1 < 0 || (size_t)n1 >= sizeof(path)) {
            continue;
        }
        struct stat st;
        if (lstat(path, &st) != 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            int n2 = snprintf(sub, sizeof(sub), "%s%s%s", prefix, prefix[0] ? "/" : "", e->d_name);
            if (n2 > 0 && (size_t)n2 < SLM_NAME_MAX) {
                rc = walk(path, sub, depth + 1, fn, user);
            }
            continue;
        }
        size_t len = strlen(e->d_name);
        if (!S_ISREG(st.st_mode) || !prefix[0] || len <= 5 ||
            strcmp(e->d_name + len - 5, ".json") != 0) {
            continue;
        }
        int n3 = snprintf(sub, sizeof(sub), "%s:%.*s", prefix, (int)(len - 5), e->d_name);
        struct slm_name parsed;
        if (n3 > 0 && (size_t)n3 < sizeof(sub) && slm_name_parse(sub, &parsed, NULL) == SLM_OK) {
            rc = fn(path, sub, user);
        }
    }
    closedir(d);
    return rc;
}

static int walk_store(struct slm_store *store, manifest_fn fn, void *user) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/manifests", slm_store_home(store));
    return walk(dir, "", 0, fn, user);
}

/* ---------------------------------------------------------------- list */

struct list_ctx {
    struct slm_store *store;
    struct slm_store_entry *items;
    size_t n, cap;
};

static uint64_t blob_size(const char *path) {
    int64_t s = path ? slm_file_size(path) : -1;
    return s > 0 ? (uint64_t)s : 0;
}

static int list_one(const char *path, const char *name, void *user) {
    struct list_ctx *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct slm_store_entry *grown = realloc(c->items, cap * sizeof(*grown));
        if (!grown) {
            return SLM_E_NOMEM;
        }
        c->items = grown;
        c->cap = cap;
    }
    struct slm_store_entry *e = &c->items[c->n];
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    struct stat st;
    if (stat(path, &st) == 0) {
        e->modified_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    }
    struct slm_buf text = {0};
    json_t *doc = NULL;
    struct slm_manifest *m = NULL;
    if (slm_file_read(path, SLM_MANIFEST_MAX, &text, NULL) == SLM_OK &&
        slm_json_parse(text.ptr, text.len, path, &doc, NULL) == SLM_OK &&
        slm_manifest_from_json(c->store, name, doc, &m, NULL) == SLM_OK) {
        slm_sha256_hex(text.ptr, text.len, e->id);
        snprintf(e->model_digest, sizeof(e->model_digest), "%s", m->model_digest);
        e->size = blob_size(m->model_path);
        e->damaged = !slm_file_exists(m->model_path);
        for (size_t i = 0; i < m->n_adapters; i++) {
            e->size += blob_size(m->adapters[i].path);
            e->damaged |= !slm_file_exists(m->adapters[i].path);
        }
        e->size += blob_size(m->template_path);
    } else {
        e->damaged = true;
    }
    slm_manifest_free(m);
    json_decref(doc);
    slm_buf_free(&text);
    c->n++;
    return SLM_OK;
}

static int by_modified_desc(const void *a, const void *b) {
    const struct slm_store_entry *x = a, *y = b;
    if (x->modified_ms != y->modified_ms) {
        return x->modified_ms < y->modified_ms ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}

int slm_store_list(struct slm_store *store, struct slm_store_entry **out, size_t *n,
                   struct slm_err *err) {
    struct list_ctx c = {.store = store};
    int rc = walk_store(store, list_one, &c);
    if (rc != SLM_OK) {
        free(c.items);
        *out = NULL;
        *n = 0;
        return slm_err_set(err, rc, "cannot list %s/manifests: %s", slm_store_home(store),
                           slm_strerror(rc));
    }
    if (c.n > 1) {
        qsort(c.items, c.n, sizeof(*c.items), by_modified_desc);
    }
    *out = c.items;
    *n = c.n;
    return SLM_OK;
}

/* ---------------------------------------------------------------- copy */

/* The stored name for user text: the name itself when a manifest exists,
 * else an alias's target when that exists. */
static int stored_name(struct slm_store *store, const char *text, struct slm_name *out,
                       char path[PATH_MAX], struct slm_err *err) {
    int rc = slm_name_parse(text, out, err);
    if (rc != SLM_OK) {
        return rc;
    }
    slm_store_manifest_path(store, out, path, PATH_MAX);
    if (slm_file_exists(path)) {
        return SLM_OK;
    }
    const struct slm_alias *a = slm_alias_find(text);
    struct slm_name t;
    if (a && slm_name_parse(a->target, &t, NULL) == SLM_OK) {
        slm_store_manifest_path(store, &t, path, PATH_MAX);
        if (slm_file_exists(path)) {
            *out = t;
            return SLM_OK;
        }
    }
    char full[SLM_NAME_MAX + 80];
    slm_name_format(out, full, sizeof(full));
    return slm_err_set(err, SLM_E_NOT_FOUND, "model '%s' not found (see `slm list`)", full);
}

int slm_store_copy(struct slm_store *store, const char *src, const char *dst, struct slm_err *err) {
    if (slm_name_is_local_path(src)) {
        return slm_err_set(err, SLM_E_INVALID,
                           "'%s' is a file, not a model in the store: import it with `slm create "
                           "NAME` and a Modelfile saying FROM %s",
                           src, src);
    }
    struct slm_name from, to;
    char path[PATH_MAX];
    int rc = stored_name(store, src, &from, path, err);
    if (rc == SLM_OK) {
        rc = slm_name_parse(dst, &to, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_buf text = {0};
    json_t *doc = NULL;
    struct slm_manifest *m = NULL;
    /* Validate before copying: a damaged manifest is not duplicated. */
    rc = slm_file_read(path, SLM_MANIFEST_MAX, &text, err);
    if (rc == SLM_OK) {
        rc = slm_json_parse(text.ptr, text.len, path, &doc, err);
    }
    if (rc == SLM_OK) {
        rc = slm_manifest_from_json(store, src, doc, &m, err);
    }
    if (rc == SLM_OK) {
        char dpath[PATH_MAX];
        if (slm_store_manifest_path(store, &to, dpath, sizeof(dpath)) >= sizeof(dpath)) {
            rc = slm_err_set(err, SLM_E_TOO_LARGE, "name too long");
        } else {
            rc = slm_store_write_manifest(store, &to, doc, err);
        }
    }
    slm_manifest_free(m);
    json_decref(doc);
    slm_buf_free(&text);
    return rc;
}

/* ---------------------------------------------------------------- remove */

struct refs_ctx {
    struct slm_store *store;
    const char *skip;    /* manifest path being removed */
    char (*digests)[72]; /* digests to look for */
    bool *used;
    size_t n;
};

static void mark(struct refs_ctx *c, const char *digest) {
    for (size_t i = 0; digest && i < c->n; i++) {
        if (strcmp(c->digests[i], digest) == 0) {
            c->used[i] = true;
        }
    }
}

static int refs_one(const char *path, const char *name, void *user) {
    struct refs_ctx *c = user;
    if (c->skip && strcmp(path, c->skip) == 0) {
        return SLM_OK;
    }
    json_t *doc = NULL;
    struct slm_manifest *m = NULL;
    if (slm_json_load_file(path, SLM_MANIFEST_MAX, &doc, NULL) == SLM_OK &&
        slm_manifest_from_json(c->store, name, doc, &m, NULL) == SLM_OK) {
        mark(c, m->model_digest);
        for (size_t i = 0; i < m->n_adapters; i++) {
            mark(c, m->adapters[i].digest);
        }
        mark(c, m->template_digest);
    } else if (doc) {
        /* A manifest we cannot fully read still protects what it names. */
        const char *text = json_dumps(doc, JSON_COMPACT);
        for (size_t i = 0; text && i < c->n; i++) {
            if (strstr(text, c->digests[i])) {
                c->used[i] = true;
            }
        }
        free((void *)text);
    }
    slm_manifest_free(m);
    json_decref(doc);
    return SLM_OK;
}

/* Removes empty folders from `path`'s folder up to (not including) manifests/. */
static void prune_dirs(struct slm_store *store, const char *path) {
    char top[PATH_MAX], dir[PATH_MAX];
    snprintf(top, sizeof(top), "%s/manifests", slm_store_home(store));
    snprintf(dir, sizeof(dir), "%s", path);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            return;
        }
        *slash = '\0';
        if (strlen(dir) <= strlen(top) || rmdir(dir) != 0) {
            return;
        }
    }
}

/* Collects the digests a manifest file refers to (at most `cap`). */
static size_t manifest_digests(struct slm_store *store, const char *path, char (*out)[72],
                               size_t cap) {
    size_t n = 0;
    json_t *doc = NULL;
    struct slm_manifest *m = NULL;
    if (slm_json_load_file(path, SLM_MANIFEST_MAX, &doc, NULL) == SLM_OK &&
        slm_manifest_from_json(store, "", doc, &m, NULL) == SLM_OK) {
        snprintf(out[n++], 72, "%s", m->model_digest);
        for (size_t i = 0; i < m->n_adapters && n < cap; i++) {
            snprintf(out[n++], 72, "%s", m->adapters[i].digest);
        }
        if (m->template_digest && n < cap) {
            snprintf(out[n++], 72, "%s", m->template_digest);
        }
    }
    slm_manifest_free(m);
    json_decref(doc);
    return n;
}

/* Removes the blobs among `digests` that no manifest (but `skip`) refers to. */
static void release(struct slm_store *store, const char *skip, char (*digests)[72], size_t n,
                    struct slm_remove_result *res) {
    bool used[RELEASE_MAX];
    memset(used, 0, sizeof(used));
    struct refs_ctx c = {store, skip, digests, used, n};
    if (walk_store(store, refs_one, &c) != SLM_OK) {
        return; /* unsure what is still used: keep every blob */
    }
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++) {
            dup |= strcmp(digests[i], digests[j]) == 0;
        }
        if (used[i] || dup) {
            continue;
        }
        char blob[PATH_MAX];
        slm_store_blob_path(store, digests[i] + 7, blob, sizeof(blob));
        int64_t size = slm_file_size(blob);
        if (size >= 0 && unlink(blob) == 0 && res) {
            res->blobs_removed++;
            res->bytes_freed += (uint64_t)size;
        }
    }
}

void slm__store_replaced(struct slm_store *store, char (*old)[72], size_t n) {
    release(store, NULL, old, n, NULL);
}

size_t slm__store_digests_of(struct slm_store *store, const char *path, char (*out)[72],
                             size_t cap) {
    return manifest_digests(store, path, out, SLM_MIN(cap, (size_t)RELEASE_MAX));
}

int slm_store_remove(struct slm_store *store, const char *text, struct slm_remove_result *res,
                     struct slm_err *err) {
    struct slm_remove_result local = {0};
    res = res ? res : &local;
    memset(res, 0, sizeof(*res));
    struct slm_name name;
    char path[PATH_MAX];
    int rc = stored_name(store, text, &name, path, err);
    if (rc != SLM_OK) {
        return rc;
    }
    slm_name_format(&name, res->name, sizeof(res->name));
    /* Remember which blobs it held before the manifest goes. */
    char digests[RELEASE_MAX][72];
    size_t n = manifest_digests(store, path, digests, RELEASE_MAX);
    if (unlink(path) != 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
    }
    prune_dirs(store, path);
    release(store, path, digests, n, res);
    return SLM_OK;
}
