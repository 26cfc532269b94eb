/*
 * fuzz_resolve.c - libFuzzer harness for name resolution as a network client
 * reaches it: slm_store_resolve_flags(..., SLM_RESOLVE_STORE_ONLY) on a
 * temporary store holding a model ("stories"), a model with an adapter
 * ("tuned"), one under a hf.co name and an alias target, with a file and a
 * folder next to the store that a name must never reach; names with '+',
 * '..', '/', '~' and ".gguf" come from the seeds.
 *
 * Invariants: with STORE_ONLY, a name resolves only to blobs inside the
 * store's folder (model, adapters and template alike, after realpath), is
 * never a synthesized local-path manifest, and fails with NOT_FOUND or
 * INVALID and a message otherwise; whatever slm_name_looks_like_path calls a
 * path is NOT_FOUND.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/store.h"

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static struct slm_store *store;
static char root[] = "/tmp/slm-fuzz-resolve-XXXXXX";
static char blobs[PATH_MAX]; /* realpath of the store's blobs/ folder, with '/' */

static void put(const char *path, const char *text) {
    struct slm_err err;
    if (slm_file_write_atomic(path, text, strlen(text), &err) != SLM_OK) {
        abort();
    }
}

static void put_manifest(const char *name, const char *json) {
    struct slm_name n;
    char path[PATH_MAX];
    if (slm_name_parse(name, &n, NULL) != SLM_OK) {
        abort();
    }
    slm_store_manifest_path(store, &n, path, sizeof(path));
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    if (slm_mkdir_p(dir, NULL) != SLM_OK) {
        abort();
    }
    put(path, json);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* libFuzzer ends with exit(): the temporary store goes with it. */
static void cleanup(void) {
    slm_store_close(store);
    nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void) {
    /* No chdir: libFuzzer reads the corpus by relative paths after the first run. */
    if (!mkdtemp(root)) {
        abort();
    }
    atexit(cleanup);
    char home[PATH_MAX];
    snprintf(home, sizeof(home), "%s/store", root);
    if (slm_store_open(home, &store, NULL) != SLM_OK) {
        abort();
    }
    char path[PATH_MAX];
    slm_store_blob_path(store, HEX_A, path, sizeof(path));
    put(path, "GGUF model");
    slm_store_blob_path(store, HEX_B, path, sizeof(path));
    put(path, "GGUF adapter");
    const char *model = "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HEX_A "\"}";
    char json[1024];
    snprintf(json, sizeof(json), "%s}", model);
    put_manifest("stories", json);
    put_manifest("hf.co/org/repo:q4_k_m", json);
    snprintf(json, sizeof(json), "%s,\"adapters\":[{\"digest\":\"sha256-" HEX_B "\"}]}", model);
    put_manifest("tuned:v1", json);
    const struct slm_alias *a = slm_alias_table();
    if (a && a->alias) {
        put_manifest(a->target, json);
    }
    /* What must stay out of reach: a model file and a folder beside the store. */
    snprintf(path, sizeof(path), "%s/outside.gguf", root);
    put(path, "GGUF outside");
    snprintf(path, sizeof(path), "%s/stories", root);
    put(path, "not the store's stories");
    snprintf(path, sizeof(path), "%s/models/stories", root);
    if (slm_mkdir_p(path, NULL) != SLM_OK) {
        abort();
    }
    snprintf(path, sizeof(path), "%s/models/stories/latest.json", root);
    put(path, json);
    if (!realpath(home, path)) {
        abort();
    }
    snprintf(blobs, sizeof(blobs), "%s/blobs/", path);
    slm_log_set_level(SLM_LOG_ERROR);
}

static void inside(const char *p) {
    char real[PATH_MAX];
    if (!p || !realpath(p, real) || strncmp(real, blobs, strlen(blobs)) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!store) {
        setup();
    }
    if (size > 2048) {
        return 0;
    }
    char *text = malloc(size + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};
    int rc = slm_store_resolve_flags(store, text, SLM_RESOLVE_STORE_ONLY, &m, &err);
    if (rc == SLM_OK) {
        if (!m->model_digest) {
            abort(); /* a synthesized manifest: the name was read as a file */
        }
        inside(m->model_path);
        for (size_t i = 0; i < m->n_adapters; i++) {
            inside(m->adapters[i].path);
        }
        if (m->template_path) {
            inside(m->template_path);
        }
        slm_manifest_free(m);
    } else if ((rc != SLM_E_NOT_FOUND && rc != SLM_E_INVALID) || err.msg[0] == '\0' || m) {
        abort();
    }
    if (slm_name_looks_like_path(text) && rc != SLM_E_NOT_FOUND) {
        abort();
    }
    free(text);
    return 0;
}
