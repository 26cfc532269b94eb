/*
 * store/store.c - the store on disk: opening $SLM_HOME, blob and manifest
 * paths, importing blobs (hash, then rename), writing manifests atomically,
 * resolving a name, alias or local path to a manifest.
 *
 * Every write ends in a rename inside the store, so a reader (or a crash)
 * sees the old state or the new one. Blobs are content-addressed: a blob
 * under a name always has that sha256. place_blob() is the one way in, and it
 * renames a file only once its sha256 is known to be the name's: hashed here,
 * or hashed by the writer from the very bytes it wrote into a file nothing
 * else could write (see slm__store_adopt_blob in internal.h for which).
 */
#define _XOPEN_SOURCE 700 /* realpath (XSI: every Unix slm builds on) */
#include "slm/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm/json.h"
#include "store/internal.h"

int slm_store_open(const char *home, struct slm_store **out, struct slm_err *err) {
    *out = NULL;
    char dir[PATH_MAX];
    /* Room for the subfolders and file names appended below. */
    int rc = slm_home_dir(home, dir, sizeof(dir) - 128, err);
    if (rc != SLM_OK) {
        return rc;
    }
    static const char *const subdirs[] = {"blobs", "manifests", "tmp"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(subdirs); i++) {
        char sub[PATH_MAX];
        slm_path_join(sub, sizeof(sub), dir, subdirs[i]);
        rc = slm_mkdir_p(sub, err);
        if (rc != SLM_OK) {
            return slm_err_prefix(err, "cannot create the model store");
        }
    }
    struct slm_store *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    memcpy(s->home, dir, strlen(dir) + 1);
    *out = s;
    return SLM_OK;
}

static bool same_inode(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

void slm_store_close(struct slm_store *store) {
    free(store);
}

const char *slm_store_home(const struct slm_store *store) {
    return store->home;
}

size_t slm_store_blob_path(const struct slm_store *store, const char *hex, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/blobs/sha256-%s", store->home, hex);
    return n < 0 ? 0 : (size_t)n;
}

size_t slm_store_manifest_path(const struct slm_store *store, const struct slm_name *name,
                               char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/manifests/%s/%s.json", store->home, name->name, name->tag);
    return n < 0 ? 0 : (size_t)n;
}

size_t slm_store_tmp_path(const struct slm_store *store, const char *file, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/tmp/%s", store->home, file);
    return n < 0 ? 0 : (size_t)n;
}

/* ---------------------------------------------------------------- blobs */

enum { CHUNK = 1 << 16 };

/* Copies `src` into a new temporary file in the store's tmp/, hashing the
 * bytes as they are written. On success `tmp` holds its path and *out_fd an
 * open descriptor on it, flock()ed so that no sweep removes it (the caller
 * places or unlinks the file, then closes the descriptor). */
static int copy_hashing(struct slm_store *store, const char *src, char *tmp, size_t cap,
                        char hex[65], int *out_fd, struct slm_err *err) {
    *out_fd = -1;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return slm_err_set(err, errno == ENOENT ? SLM_E_NOT_FOUND : SLM_E_IO, "%s: %s", src,
                           strerror(errno));
    }
    int len = snprintf(tmp, cap, "%s/tmp/import-XXXXXX", store->home);
    int out = len > 0 && (size_t)len < cap ? mkstemp(tmp) : -1;
    if (out < 0) {
        int e = errno;
        close(in);
        return slm_err_set(err, SLM_E_IO, "%s: %s", tmp, strerror(e));
    }
    /* mkstemp gives 0600; a blob is as readable as the rest of the store. */
    (void)fchmod(out, 0644);
    (void)flock(out, LOCK_EX | LOCK_NB); /* a new file: nobody else can hold it */
    struct slm_sha256 sha;
    slm_sha256_init(&sha);
    char *buf = malloc(CHUNK);
    int rc = buf ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    while (rc == SLM_OK) {
        ssize_t r = read(in, buf, CHUNK);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = slm_err_set(err, SLM_E_IO, "%s: %s", src, strerror(errno));
        } else if (r == 0) {
            break;
        } else if (slm_write_all(out, buf, (size_t)r) != 0) {
            rc = slm_err_set(err, SLM_E_IO, "%s: %s", tmp, strerror(errno));
        } else {
            slm_sha256_update(&sha, buf, (size_t)r);
        }
    }
    free(buf);
    if (rc == SLM_OK && fsync(out) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", tmp, strerror(errno));
    }
    close(in);
    if (rc != SLM_OK) {
        unlink(tmp);
        close(out);
        return rc;
    }
    uint8_t d[32];
    slm_sha256_final(&sha, d);
    slm_hex_encode(d, 32, hex);
    *out_fd = out;
    return SLM_OK;
}

/* The sha256 of what `fd` holds, read from its start; SLM_E_CORRUPT when the
 * file changed (size or mtime) while it was read. */
static int hash_fd(int fd, const char *path, char hex[65], struct slm_err *err) {
    struct stat before, after;
    if (fstat(fd, &before) != 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
    }
    struct slm_sha256 sha;
    slm_sha256_init(&sha);
    if (lseek(fd, 0, SEEK_SET) != 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
    }
    int rc = slm_sha256_update_fd(&sha, fd, path, NULL, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (fstat(fd, &after) != 0 || after.st_size != before.st_size ||
        after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) {
        return slm_err_set(err, SLM_E_CORRUPT, "%s changed while it was being hashed", path);
    }
    uint8_t d[32];
    slm_sha256_final(&sha, d);
    slm_hex_encode(d, 32, hex);
    return SLM_OK;
}

/* Puts the file at `path` (open as `fd`) into blobs/ under its sha256, which
 * is `expect` when `trusted` (see slm__store_adopt_blob), else computed here
 * (and compared with `expect` when given). `hex` gets the digest. An existing
 * blob of that name is replaced: the new file is known to be right, the old
 * one only hoped to be (a rename costs nothing; a check would read it all). */
static int place_blob(struct slm_store *store, const char *path, int fd, const char *expect,
                      bool trusted, char hex[65], struct slm_err *err) {
    struct stat held, named;
    if (fstat(fd, &held) != 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
    }
    if (trusted) {
        memmove(hex, expect, 65); /* the caller may pass one buffer as both */
    } else {
        int rc = hash_fd(fd, path, hex, err);
        if (rc != SLM_OK) {
            return rc;
        }
        if (expect && strcmp(expect, hex) != 0) {
            return slm_err_set(err, SLM_E_CORRUPT, "%s: sha256 mismatch: expected %s, got %s", path,
                               expect, hex);
        }
    }
    /* The name must still be the file that was hashed, whole. */
    if (stat(path, &named) != 0 || !same_inode(&held, &named) || named.st_size != held.st_size) {
        return slm_err_set(err, SLM_E_CORRUPT, "%s was replaced before it could be stored", path);
    }
    char blob[PATH_MAX];
    if (slm_store_blob_path(store, hex, blob, sizeof(blob)) >= sizeof(blob)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "store path too long");
    }
    if (rename(path, blob) == 0) {
        slm_fsync_dir_of(blob);
        return SLM_OK;
    }
    if (errno != EXDEV) {
        return slm_err_set(err, SLM_E_IO, "cannot move %s to %s: %s", path, blob, strerror(errno));
    }
    /* Another file system: copy into tmp/ (hashing the copy), then rename. */
    char tmp[PATH_MAX], got[65];
    int tfd;
    int rc = copy_hashing(store, path, tmp, sizeof(tmp), got, &tfd, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (strcmp(got, hex) != 0) {
        rc = slm_err_set(err, SLM_E_CORRUPT, "%s changed while it was being imported", path);
    } else if (rename(tmp, blob) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "cannot move %s to %s: %s", tmp, blob, strerror(errno));
    }
    if (rc != SLM_OK) {
        unlink(tmp);
        close(tfd);
        return rc;
    }
    close(tfd);
    slm_fsync_dir_of(blob);
    unlink(path);
    return SLM_OK;
}

static void lower_hex(const char *in, char out[65]) {
    for (int i = 0; i < 64; i++) {
        char c = in[i];
        out[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    out[64] = '\0';
}

int slm__store_adopt_blob(struct slm_store *store, const char *path, int fd, const char *hex,
                          bool trusted, char digest[72], struct slm_err *err) {
    char got[65];
    int rc = place_blob(store, path, fd, hex, trusted, got, err);
    if (rc == SLM_OK) {
        snprintf(digest, 72, "sha256-%s", got);
    }
    return rc;
}

int slm_store_import_blob(struct slm_store *store, const char *path, const char *expect_hex,
                          bool move, char digest[72], struct slm_err *err) {
    char expect[65] = "", hex[65];
    if (expect_hex) {
        if (!slm_is_sha256_hex(slm_str_c(expect_hex))) {
            return slm_err_set(err, SLM_E_INVALID, "'%.80s' is not a sha256 (64 hex digits)",
                               expect_hex);
        }
        lower_hex(expect_hex, expect);
    }
    slm__store_sweep_tmp(store, NULL);
    char tmp[PATH_MAX];
    int fd, rc;
    bool trusted = !move;
    if (move) {
        /* The caller's file: hashed here, through the descriptor renamed. */
        snprintf(tmp, sizeof(tmp), "%s", path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        rc = fd >= 0 ? SLM_OK
                     : slm_err_set(err, errno == ENOENT ? SLM_E_NOT_FOUND : SLM_E_IO, "%s: %s",
                                   path, strerror(errno));
    } else {
        /* A copy of it: hashed from the bytes written into our own file. */
        rc = copy_hashing(store, path, tmp, sizeof(tmp), hex, &fd, err);
        if (rc == SLM_OK && expect[0] && strcmp(expect, hex) != 0) {
            rc = slm_err_set(err, SLM_E_CORRUPT, "%s: sha256 mismatch: expected %s, got %s", path,
                             expect, hex);
        }
    }
    if (rc == SLM_OK) {
        rc = place_blob(store, tmp, fd, trusted ? hex : (expect[0] ? expect : NULL), trusted, hex,
                        err);
    }
    if (rc != SLM_OK && !move && fd >= 0) {
        unlink(tmp);
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rc == SLM_OK) {
        snprintf(digest, 72, "sha256-%s", hex);
    }
    return rc;
}

/* ---------------------------------------------------------------- manifests */

int slm_store_write_manifest(struct slm_store *store, const struct slm_name *name,
                             const json_t *doc, struct slm_err *err) {
    char path[PATH_MAX];
    if (slm_store_manifest_path(store, name, path, sizeof(path)) >= sizeof(path)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "manifest path too long");
    }
    char dir[PATH_MAX];
    memcpy(dir, path, strlen(path) + 1);
    *strrchr(dir, '/') = '\0';
    int rc = slm_mkdir_p(dir, err);
    if (rc != SLM_OK) {
        return rc;
    }
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        return slm_err_set(err, SLM_E_NOMEM, "cannot serialize the manifest");
    }
    size_t n = strlen(text);
    /* Manifests end with a newline like any text file. */
    char *with_nl = realloc(text, n + 2);
    if (!with_nl) {
        free(text);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    with_nl[n] = '\n';
    with_nl[n + 1] = '\0';
    /* A name that moves to other blobs must not leave the old ones behind. */
    char(*old)[72] = malloc(80 * sizeof(*old));
    size_t n_old = old ? slm__store_digests_of(store, path, old, 80) : 0;
    rc = slm_file_write_atomic(path, with_nl, n + 1, err);
    free(with_nl);
    if (rc == SLM_OK && n_old > 0) {
        slm__store_replaced(store, old, n_old);
    }
    free(old);
    return rc;
}

int slm_store_read_manifest(struct slm_store *store, const struct slm_name *name,
                            struct slm_manifest **out, struct slm_err *err) {
    *out = NULL;
    char path[PATH_MAX], full[SLM_NAME_MAX + 80];
    if (slm_store_manifest_path(store, name, path, sizeof(path)) >= sizeof(path)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "manifest path too long");
    }
    slm_name_format(name, full, sizeof(full));
    if (!slm_file_exists(path)) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "model '%s' not found", full);
    }
    json_t *doc = NULL;
    int rc = slm_json_load_file(path, SLM_MANIFEST_MAX, &doc, err);
    if (rc != SLM_OK) {
        if (rc == SLM_E_INVALID && err) {
            char msg[sizeof(err->msg)];
            memcpy(msg, err->msg, sizeof(msg));
            return slm_err_set(err, SLM_E_CORRUPT, "%s", msg);
        }
        return rc == SLM_E_INVALID ? SLM_E_CORRUPT : rc;
    }
    rc = slm_manifest_from_json(store, full, doc, out, err);
    json_decref(doc);
    return rc;
}

/* ---------------------------------------------------------------- resolve */

static int resolve_local(const char *text, struct slm_manifest **out, struct slm_err *err) {
    char real[PATH_MAX];
    if (!realpath(text, real)) {
        return slm_err_set(err, errno == ENOENT ? SLM_E_NOT_FOUND : SLM_E_IO, "%s: %s", text,
                           strerror(errno));
    }
    if (!slm_file_exists(real)) {
        return slm_err_set(err, SLM_E_INVALID, "%s: not a regular file", text);
    }
    struct slm_manifest *m = slm__manifest_new(text);
    if (!m || !(m->model_path = strdup(real))) {
        slm_manifest_free(m);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    m->model_size = (uint64_t)slm_file_size(real);
    *out = m;
    return SLM_OK;
}

/* Every blob a manifest points at must exist (a missing one means a damaged
 * store or a concurrent `slm rm`). */
static int check_blobs(const struct slm_manifest *m, struct slm_err *err) {
    const char *missing = NULL;
    if (!slm_file_exists(m->model_path)) {
        missing = m->model_path;
    }
    for (size_t i = 0; !missing && i < m->n_adapters; i++) {
        if (!slm_file_exists(m->adapters[i].path)) {
            missing = m->adapters[i].path;
        }
    }
    if (!missing && m->template_path && !slm_file_exists(m->template_path)) {
        missing = m->template_path;
    }
    if (missing) {
        return slm_err_set(err, SLM_E_NOT_FOUND,
                           "model '%.200s' is damaged: blob %s is missing (pull or create it "
                           "again)",
                           m->name, missing);
    }
    return SLM_OK;
}

/* Appends one adapter (path, scale 1) to a resolved manifest. */
static int add_adapter(struct slm_manifest *m, const char *path, struct slm_err *err) {
    struct slm_manifest_adapter *a = realloc(m->adapters, (m->n_adapters + 1) * sizeof(*a));
    if (!a) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    m->adapters = a;
    a = &m->adapters[m->n_adapters];
    memset(a, 0, sizeof(*a));
    a->scale = 1.0f;
    a->path = strdup(path);
    if (!a->path) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    m->n_adapters++;
    return SLM_OK;
}

/* "base+adapter": the base model plus an adapter given as a path to a GGUF
 * LoRA file, or as the name of a store model whose adapters are added. */
static int resolve_plus(struct slm_store *store, const char *text, const char *plus, unsigned flags,
                        struct slm_manifest **out, struct slm_err *err) {
    char base[SLM_NAME_MAX + 1024];
    size_t n = (size_t)(plus - text);
    if (n == 0 || n >= sizeof(base) || !plus[1]) {
        return slm_err_set(err, SLM_E_INVALID, "'%s': expected BASE+ADAPTER", text);
    }
    memcpy(base, text, n);
    base[n] = '\0';
    const char *adapter = plus + 1;
    int rc = slm_store_resolve_flags(store, base, flags, out, err);
    if (rc != SLM_OK) {
        return rc;
    }
    char real[PATH_MAX];
    if (!(flags & SLM_RESOLVE_STORE_ONLY) && slm_name_is_local_path(adapter) &&
        realpath(adapter, real)) {
        rc = add_adapter(*out, real, err);
    } else {
        struct slm_manifest *am = NULL;
        rc = slm_store_resolve_flags(store, adapter, flags, &am, err);
        if (rc == SLM_OK && am->n_adapters == 0) {
            rc = slm_err_set(err, SLM_E_INVALID,
                             "'%s' has no adapters (after '+', name an adapter .gguf file or a "
                             "model created with ADAPTER)",
                             adapter);
        }
        for (size_t i = 0; rc == SLM_OK && am && i < am->n_adapters; i++) {
            rc = add_adapter(*out, am->adapters[i].path, err);
            if (rc == SLM_OK) {
                (*out)->adapters[(*out)->n_adapters - 1].scale = am->adapters[i].scale;
            }
        }
        slm_manifest_free(am);
    }
    if (rc != SLM_OK) {
        slm_manifest_free(*out);
        *out = NULL;
    }
    return rc;
}

int slm_store_resolve(struct slm_store *store, const char *text, struct slm_manifest **out,
                      struct slm_err *err) {
    return slm_store_resolve_flags(store, text, 0, out, err);
}

int slm_store_resolve_flags(struct slm_store *store, const char *text, unsigned flags,
                            struct slm_manifest **out, struct slm_err *err) {
    *out = NULL;
    if ((flags & SLM_RESOLVE_STORE_ONLY) && slm_name_looks_like_path(text)) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "model '%.200s' not found", text);
    }
    const char *plus = strrchr(text, '+');
    if (plus && ((flags & SLM_RESOLVE_STORE_ONLY) || !slm_file_exists(text))) {
        return resolve_plus(store, text, plus, flags, out, err);
    }
    if (slm_name_is_local_path(text)) {
        return resolve_local(text, out, err);
    }
    struct slm_name name;
    int rc = slm_name_parse(text, &name, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_err ignore;
    rc = slm_store_read_manifest(store, &name, out, &ignore);
    if (rc == SLM_E_NOT_FOUND) {
        /* An alias may have been pulled under its target's name. */
        const struct slm_alias *a = slm_alias_find(text);
        struct slm_name target;
        if (a && slm_name_parse(a->target, &target, NULL) == SLM_OK) {
            rc = slm_store_read_manifest(store, &target, out, &ignore);
        }
    }
    if (rc == SLM_E_NOT_FOUND) {
        char full[SLM_NAME_MAX + 80];
        slm_name_format(&name, full, sizeof(full));
        return slm_err_set(err, SLM_E_NOT_FOUND,
                           "model '%s' not found: pull it with `slm pull %s`, or see `slm list`",
                           full, text);
    }
    if (rc != SLM_OK) {
        if (err) {
            *err = ignore;
        }
        return rc;
    }
    rc = check_blobs(*out, err);
    if (rc != SLM_OK) {
        slm_manifest_free(*out);
        *out = NULL;
    }
    return rc;
}
