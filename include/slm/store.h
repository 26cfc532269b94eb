/*
 * slm/store.h - the model store under $SLM_HOME (default ~/.slm): blobs by
 * sha256, manifests by name, and the commands that fill it (pull, create,
 * copy, remove, quantize). Layout and formats are in docs/store.md.
 *
 *   $SLM_HOME/blobs/sha256-<hex>              model, adapter, template bytes
 *   $SLM_HOME/manifests/<name...>/<tag>.json  what a name means (below)
 *   $SLM_HOME/tmp/                            partial downloads (resumable)
 *
 * Names: "name", "name:tag", "org/name:tag", "hf.co/ORG/REPO:QUANT",
 * "hf.co/ORG/REPO/PATH.gguf", short aliases ("stories260k"), or a path to a
 * local .gguf file. A name is checked component by component and can never
 * reach outside the store (no "..", no absolute paths, no control bytes).
 *
 * Thread safety: a store handle may be used from one thread at a time; several
 * processes may share one $SLM_HOME (writes are atomic renames).
 */
#ifndef SLM_STORE_H
#define SLM_STORE_H

#include <jansson.h>

#include "slm/base.h"

/* ---------------------------------------------------------------- names */

#define SLM_NAME_MAX 256

struct slm_name {
    char name[SLM_NAME_MAX]; /* "stories260k", "hf.co/ggml-org/models/tinyllamas/stories260K.gguf" */
    char tag[64];            /* "latest" when none was given */
};

/* Parses and validates a model name (after alias expansion). SLM_E_INVALID
 * with a message saying what is wrong: empty, a ".." or "." component, a
 * leading '/', a character outside [A-Za-z0-9._-/], a component starting
 * with '.', too long. */
int slm_name_parse(const char *text, struct slm_name *out, struct slm_err *err);
/* "name:tag" (always with the tag) into `out` (snprintf semantics). */
size_t slm_name_format(const struct slm_name *n, char *out, size_t cap);

/* Short aliases for well-known models. */
struct slm_alias {
    const char *alias;  /* "stories260k" */
    const char *target; /* "hf.co/ggml-org/models/tinyllamas/stories260K.gguf" */
    const char *sha256; /* pinned digest of the file, or NULL when resolved at pull time */
    const char *summary;
};

/* The alias table entry for `name` (compared without tag, case-insensitive),
 * or NULL. */
const struct slm_alias *slm_alias_find(const char *name);
/* The whole table, NULL-terminated by alias == NULL. */
const struct slm_alias *slm_alias_table(void);

/* True when `text` names a local file rather than a store entry: it starts
 * with '/', "./" or "../", or ends in ".gguf" and exists on disk. */
bool slm_name_is_local_path(const char *text);

/* ---------------------------------------------------------------- store */

struct slm_store;

/* Opens (creating the folders if needed) the store at `home`, or at $SLM_HOME,
 * or ~/.slm when `home` is NULL. One slm_store_close() is owed on success. */
int slm_store_open(const char *home, struct slm_store **out, struct slm_err *err);
void slm_store_close(struct slm_store *store);
const char *slm_store_home(const struct slm_store *store);
/* Path of the blob with this hex digest (exists or not), snprintf semantics. */
size_t slm_store_blob_path(const struct slm_store *store, const char *hex, char *out, size_t cap);
/* Path of the manifest file for a parsed name. */
size_t slm_store_manifest_path(const struct slm_store *store, const struct slm_name *name,
                               char *out, size_t cap);

/* ---------------------------------------------------------------- manifests */

struct slm_manifest_adapter {
    char *path;  /* absolute path of the adapter GGUF (a blob) */
    char *digest; /* "sha256-<hex>" */
    float scale; /* 1.0 unless given */
};

/*
 * What a name means. On disk (manifests/<name>/<tag>.json):
 *   {"schema": 1, "model": {"digest": "sha256-..", "size": N, "source": "hf.co/..."},
 *    "adapters": [{"digest": "sha256-..", "scale": 1.0}],
 *    "params": {"temperature": 0.2, "num_ctx": 2048, "stop": ["..."]},
 *    "system": "...", "template": {"digest": "sha256-.."}, "messages": [{"role","content"}],
 *    "license": "...", "created": "2026-11-22T10:00:00Z"}
 * Only "schema" and "model" are required.
 */
struct slm_manifest {
    char *name;          /* "name:tag", or the local path */
    char *model_path;    /* absolute path of the model GGUF */
    char *model_digest;  /* "sha256-<hex>", NULL for a local path */
    uint64_t model_size;
    char *source;        /* where it was pulled from, or NULL */
    struct slm_manifest_adapter *adapters;
    size_t n_adapters;
    json_t *params;      /* object of Ollama-named parameters (never NULL) */
    char *system;        /* SYSTEM text, or NULL */
    char *template_path; /* Liquid template blob, or NULL */
    json_t *messages;    /* array of {role, content} (never NULL) */
    char *license;       /* or NULL */
    int64_t created_ms;
};

/* Resolves a name, alias or local path to a manifest. For a local .gguf path
 * the manifest is synthesized (no params, no adapters). SLM_E_NOT_FOUND with
 * a message that suggests `slm pull` or `slm list` when nothing matches; the
 * blob's presence is checked (not its hash: see slm_store_verify). */
int slm_store_resolve(struct slm_store *store, const char *name, struct slm_manifest **out,
                      struct slm_err *err);
void slm_manifest_free(struct slm_manifest *m);
/* Parses manifest JSON (as on disk) for `name`; blob paths are made absolute
 * against `store`. SLM_E_CORRUPT with the key when malformed. */
int slm_manifest_from_json(struct slm_store *store, const char *name, const json_t *doc,
                           struct slm_manifest **out, struct slm_err *err);
/* Serializes `m` to the on-disk JSON (blob paths become digests). */
json_t *slm_manifest_to_json(const struct slm_manifest *m);
/* Writes a manifest for `name` atomically (replacing any existing one). */
int slm_store_write_manifest(struct slm_store *store, const struct slm_name *name,
                             const json_t *doc, struct slm_err *err);

/* Moves a finished file into blobs/ under its sha256 (computed here unless
 * `expect_hex` is given and matches; SLM_E_CORRUPT when it does not). Writes
 * the digest as "sha256-<hex>" into `digest` (72 bytes). */
int slm_store_import_blob(struct slm_store *store, const char *path, const char *expect_hex,
                          bool move, char digest[72], struct slm_err *err);

#endif /* SLM_STORE_H */
