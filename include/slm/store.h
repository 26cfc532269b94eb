/*
 * slm/store.h - the model store under $SLM_HOME (default ~/.slm): blobs by
 * sha256, manifests by name, and the commands that fill it (pull, create,
 * copy, remove, quantize). Layout and formats are in docs/store.md.
 *
 *   $SLM_HOME/blobs/sha256-<hex>              model, adapter, template bytes
 *   $SLM_HOME/manifests/<name...>/<tag>.json  what a name means (below)
 *   $SLM_HOME/tmp/                            partial downloads (resumable), locks
 *
 * Names: "name", "name:tag", "org/name:tag", "hf.co/ORG/REPO:QUANT",
 * "hf.co/ORG/REPO/PATH.gguf", short aliases ("stories260k"), or a path to a
 * local .gguf file. A name is checked component by component and can never
 * reach outside the store (no "..", no absolute paths, no control bytes).
 *
 * Ownership: a store handle from slm_store_open() owes one slm_store_close();
 * manifests, Modelfiles and listings returned here are owned by the caller
 * and freed with their *_free() (or free() where said).
 * Thread safety: a store handle may be used from one thread at a time; several
 * processes (and several handles in one process) may share one $SLM_HOME:
 * writes are atomic renames, and pulls of one file take turns on a lock in
 * tmp/ (docs/internals/store.md). Library code never prints: slm_pull() and
 * slm_create() report through callbacks.
 */
#ifndef SLM_STORE_H
#define SLM_STORE_H

#include <jansson.h>

#include "slm/base.h"

/* ---------------------------------------------------------------- names */

#define SLM_NAME_MAX 256

struct slm_name {
    char
        name[SLM_NAME_MAX]; /* "stories260k", "hf.co/ggml-org/models/tinyllamas/stories260K.gguf" */
    char tag[64];           /* "latest" when none was given */
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
/* True when `text` reads as a file path whether or not the file exists: it
 * starts with '/', '.' or '~', or ends in .gguf, or is a local path. */
bool slm_name_looks_like_path(const char *text);

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
/* Path of `file` in the store's tmp/ folder (partial downloads). */
size_t slm_store_tmp_path(const struct slm_store *store, const char *file, char *out, size_t cap);

/* ---------------------------------------------------------------- manifests */

struct slm_manifest_adapter {
    char *path;   /* absolute path of the adapter GGUF (a blob) */
    char *digest; /* "sha256-<hex>" */
    float scale;  /* 1.0 unless given */
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
    char *name;         /* "name:tag", or the local path */
    char *model_path;   /* absolute path of the model GGUF */
    char *model_digest; /* "sha256-<hex>", NULL for a local path */
    uint64_t model_size;
    char *source; /* where it was pulled from, or NULL */
    struct slm_manifest_adapter *adapters;
    size_t n_adapters;
    json_t *params;      /* object of Ollama-named parameters (never NULL) */
    char *system;        /* SYSTEM text, or NULL */
    char *template_path; /* Liquid template blob, or NULL */
    json_t *messages;    /* array of {role, content} (never NULL) */
    char *license;       /* or NULL */
    int64_t created_ms;
    char *template_digest; /* "sha256-<hex>" of template_path, or NULL */
};

/* Resolves a name, alias or local path to a manifest. For a local .gguf path
 * the manifest is synthesized (no params, no adapters). SLM_E_NOT_FOUND with
 * a message that suggests `slm pull` or `slm list` when nothing matches; the
 * blob's presence is checked (not its hash: see slm_store_verify). */
int slm_store_resolve(struct slm_store *store, const char *name, struct slm_manifest **out,
                      struct slm_err *err);
void slm_manifest_free(struct slm_manifest *m);

enum slm_resolve_flags {
    /* Only what is in the store: no file path, neither as the model nor after
     * '+' as an adapter (what a network client may name). SLM_E_NOT_FOUND. */
    SLM_RESOLVE_STORE_ONLY = 1 << 0,
};

/* slm_store_resolve() with `flags` (enum slm_resolve_flags). */
int slm_store_resolve_flags(struct slm_store *store, const char *name, unsigned flags,
                            struct slm_manifest **out, struct slm_err *err);
/* Reads the manifest stored for exactly `name` (no alias, no local path).
 * SLM_E_NOT_FOUND when there is none, SLM_E_CORRUPT when it is damaged. The
 * blobs' presence is not checked. */
int slm_store_read_manifest(struct slm_store *store, const struct slm_name *name,
                            struct slm_manifest **out, struct slm_err *err);
/* Parses manifest JSON (as on disk) for `name`; blob paths are made absolute
 * against `store`. SLM_E_CORRUPT with the key when malformed. */
int slm_manifest_from_json(struct slm_store *store, const char *name, const json_t *doc,
                           struct slm_manifest **out, struct slm_err *err);
/* Serializes `m` to the on-disk JSON (blob paths become digests). */
json_t *slm_manifest_to_json(const struct slm_manifest *m);
/* Writes a manifest for `name` atomically (replacing any existing one; the
 * blobs only the replaced manifest referred to are then removed). */
int slm_store_write_manifest(struct slm_store *store, const struct slm_name *name,
                             const json_t *doc, struct slm_err *err);

/* Puts a finished file into blobs/ under its sha256, which is always computed
 * here; when `expect_hex` (64 hex digits, any case) is given and differs,
 * SLM_E_CORRUPT and nothing is stored. `move` renames the file in (it is
 * consumed; copied across file systems), else it is copied through tmp/.
 * Writes the digest as "sha256-<hex>" into `digest` (72 bytes). */
int slm_store_import_blob(struct slm_store *store, const char *path, const char *expect_hex,
                          bool move, char digest[72], struct slm_err *err);

/* ---------------------------------------------------------------- list, cp, rm */

struct slm_store_entry {
    char name[SLM_NAME_MAX + 80]; /* "name:tag" */
    char id[65];                  /* sha256 of the manifest file (`slm list` shows 12 digits) */
    char model_digest[72];        /* "sha256-<hex>", "" when damaged */
    uint64_t size;                /* bytes of the model, adapter and template blobs */
    int64_t modified_ms;          /* the manifest's modification time */
    bool damaged;                 /* unreadable manifest or a missing blob */
};

/* Every model in the store, newest first. *out (n entries) is owed to free(). */
int slm_store_list(struct slm_store *store, struct slm_store_entry **out, size_t *n,
                   struct slm_err *err);

/* Gives the model `src` a second name `dst` (the manifest is copied; blobs
 * are shared). An existing `dst` is replaced. SLM_E_NOT_FOUND when `src` is
 * not in the store. */
int slm_store_copy(struct slm_store *store, const char *src, const char *dst, struct slm_err *err);

struct slm_remove_result {
    char name[SLM_NAME_MAX + 80]; /* the name removed */
    size_t blobs_removed;         /* blobs no other manifest referred to */
    uint64_t bytes_freed;
};

/* Removes model `name` (its manifest) and then the blobs it referred to that
 * no other manifest refers to. `res` may be NULL. SLM_E_NOT_FOUND when there
 * is no such model. */
int slm_store_remove(struct slm_store *store, const char *name, struct slm_remove_result *res,
                     struct slm_err *err);

/* ---------------------------------------------------------------- pull sources */

enum slm_source_kind {
    SLM_SOURCE_HF_FILE = 1, /* hf.co/ORG/REPO/PATH.gguf: one file */
    SLM_SOURCE_HF_QUANT,    /* hf.co/ORG/REPO:QUANT: the .gguf whose name has QUANT */
    SLM_SOURCE_URL,         /* http(s)://...: needs an expected sha256 */
};

/* What `slm pull TEXT` fetches and the name it is stored under. */
struct slm_source {
    enum slm_source_kind kind;
    struct slm_name name;          /* store name: the text as typed (alias or hf.co name) */
    const struct slm_alias *alias; /* the alias entry when TEXT was one, else NULL */
    const char *pinned_sha256;     /* the alias table's digest, or NULL */
    char org[96];
    char repo[96];
    char path[SLM_NAME_MAX]; /* HF_FILE: the file's path inside the repository */
    char quant[64];          /* HF_QUANT: the tag asked for; "" = Q4_K_M or the only .gguf */
    char url[2048];          /* URL */
};

/* Parses a pull name: an alias, "hf.co/..." (or "huggingface.co/..."), or an
 * http(s) URL. SLM_E_INVALID for a malformed name, SLM_E_NOT_FOUND for a
 * plain name that is neither an alias nor an hf.co name. */
int slm_source_parse(const char *text, struct slm_source *out, struct slm_err *err);

/* One file of a Hugging Face tree listing
 * (GET /api/models/ORG/REPO/tree/main: [{type, path, size, lfs: {oid, size}}]). */
struct slm_hf_file {
    char *path;      /* path inside the repository, "dir/model-Q4_K_M.gguf" */
    uint64_t size;   /* bytes, 0 when unknown */
    char sha256[65]; /* lfs.oid in lowercase hex, "" when the file is not in LFS */
};

/* Parses a listing (directories are skipped). SLM_E_INVALID when it is not a
 * JSON array. On success *files (n entries) is owed to slm_hf_files_free(). */
int slm_hf_tree_parse(const char *data, size_t len, struct slm_hf_file **files, size_t *n,
                      struct slm_err *err);
void slm_hf_files_free(struct slm_hf_file *files, size_t n);
/* Chooses the .gguf for `quant` (case-insensitive substring of the file's base
 * name; several matches: the one where it is a whole token, e.g. Q4_K_M but
 * not Q4_K_L for "Q4_K"). `quant` NULL or "" means Q4_K_M, or the only .gguf.
 * Vision projectors (mmproj) are never chosen. SLM_E_NOT_FOUND lists the
 * files there are; SLM_E_INVALID lists the candidates when ambiguous. */
int slm_hf_pick_quant(const struct slm_hf_file *files, size_t n, const char *quant, size_t *index,
                      struct slm_err *err);
/* Index of the entry whose path is exactly `path`, or -1. */
int slm_hf_find_path(const struct slm_hf_file *files, size_t n, const char *path);

/* ---------------------------------------------------------------- pull */

struct slm_pull_progress {
    const char *file;      /* the file being fetched (base name) */
    uint64_t done;         /* bytes in hand, including a resumed part */
    uint64_t total;        /* expected bytes, 0 when unknown */
    uint64_t resumed_from; /* bytes kept from an earlier attempt */
};

/* Called often while bytes arrive; return non-zero to cancel (SLM_E_ABORTED,
 * the partial file is kept for the next pull). */
typedef int (*slm_pull_progress_fn)(const struct slm_pull_progress *p, void *user);
/* Called with one-line notes: retries, resumes, what was verified. */
typedef void (*slm_pull_note_fn)(const char *line, void *user);

/* No field falls back to the environment: `slm pull` and `slm serve` fill
 * endpoint, mirror, token and backoff_ms from SLM_HF_ENDPOINT, SLM_MIRROR,
 * HF_TOKEN and SLM_PULL_BACKOFF_MS (docs/commands.md, "Environment"). */
struct slm_pull_params {
    const char *endpoint; /* Hugging Face base URL; NULL or "" = https://huggingface.co */
    const char *mirror;   /* a URL or a folder in the same layout; NULL or "" = none */
    const char *token;    /* bearer token for the endpoint only (gated repositories); NULL = none */
    const char *sha256;   /* expected digest; required for a plain URL */
    const char *name;     /* store a URL under this name; NULL: from the file name */
    int max_retries;      /* transient failures retried; 0 = 5, -1 = none */
    int backoff_ms;       /* first retry delay, doubling; 0 = 500, negative = no delay */
    slm_pull_progress_fn progress;
    slm_pull_note_fn note;
    void *user;
};

struct slm_pull_params slm_pull_params_default(void);

struct slm_pull_result {
    char name[SLM_NAME_MAX + 80]; /* "name:tag" the manifest was written under */
    char digest[72];              /* "sha256-<hex>" */
    char source[2200];            /* where the bytes came from */
    uint64_t size;
    bool already;          /* it was in the store: verified, nothing downloaded */
    bool verified;         /* the sha256 matched a published, pinned or given digest */
    uint64_t resumed_from; /* bytes reused from an earlier partial download */
    int retries;           /* transient failures retried */
};

/*
 * Downloads a model into the store (docs/store.md): resolves the name to one
 * file, downloads it into $SLM_HOME/tmp/ (resuming a partial file with an HTTP
 * Range request; from zero when the server ignores it), retries transient
 * failures (5xx, 429, resets, truncation) with backoff, verifies the sha256,
 * then moves the blob in by rename and writes the manifest atomically. A
 * broken, truncated or corrupted download never appears under a real name.
 * While another pull of the same file (any process, any handle) is running,
 * it waits for that one (noting "waiting for another pull of FILE", calling
 * `progress`, which may cancel), then finds the blob in place and verifies
 * it. The first pull through a handle also sweeps stale files from tmp/.
 * Errors: SLM_E_NOT_FOUND (404, or no matching file), SLM_E_UPSTREAM (401/403,
 * other HTTP errors, retries exhausted), SLM_E_CORRUPT (digest mismatch),
 * SLM_E_INVALID (bad name, a URL without sha256), SLM_E_ABORTED.
 * `result` may be NULL.
 */
int slm_pull(struct slm_store *store, const char *text, const struct slm_pull_params *params,
             struct slm_pull_result *result, struct slm_err *err);

/* ---------------------------------------------------------------- Modelfile */

#define SLM_MODELFILE_MAX_ADAPTERS 16

/* A parsed Modelfile (docs/modelfile.md). Paths are as written (relative to
 * the Modelfile's folder); slm_create() resolves them. */
struct slm_modelfile {
    char *from; /* FROM: a store name or a .gguf path */
    int from_line;
    char *adapters[SLM_MODELFILE_MAX_ADAPTERS]; /* ADAPTER paths, in order */
    int adapter_lines[SLM_MODELFILE_MAX_ADAPTERS];
    size_t n_adapters;
    json_t *params;      /* checked and typed: {"temperature": 0.2, "stop": ["a"]}, never NULL */
    char *system;        /* the last SYSTEM, or NULL */
    char *template_text; /* the last TEMPLATE (a file path or inline Liquid), or NULL */
    int template_line;
    json_t *messages; /* [{"role", "content"}], never NULL */
    char *license;    /* LICENSE texts joined by blank lines, or NULL */
};

/* Parses a Modelfile as Ollama reads it: directives FROM ADAPTER PARAMETER
 * SYSTEM TEMPLATE MESSAGE LICENSE (any case), '#' comments, values quoted
 * "like this" (\" and \\ escapes) or """over several lines""". `filename`
 * names the file in errors: "Modelfile:7: PARAMETER: 'top_p' must be from 0
 * to 1, got 1.5". SLM_E_INVALID (or SLM_E_UNSUPPORTED for an Ollama
 * parameter slm lacks) on error; on success one slm_modelfile_free() is owed. */
int slm_modelfile_parse(const char *text, size_t len, const char *filename,
                        struct slm_modelfile **out, struct slm_err *err);
void slm_modelfile_free(struct slm_modelfile *mf);
/* Checks one PARAMETER (Ollama name, text value) and adds it to `params`
 * typed (stop strings accumulate in an array). Used by the parser and by
 * `/set parameter` style callers. */
int slm_modelfile_check_param(const char *name, const char *value, json_t *params,
                              struct slm_err *err);
/* The parameter names slm accepts, NULL-terminated. */
const char *const *slm_modelfile_param_names(void);
/* True when a template is written in Ollama's Go template syntax
 * ({{ .Prompt }}, {{ if .System }}, {{ end }}) rather than Liquid. */
bool slm_template_looks_like_go(const char *text, size_t len);

/* Writes a Modelfile that recreates `m` (what `slm show --modelfile` prints):
 * FROM the model blob, ADAPTER blobs, PARAMETER lines, TEMPLATE (the template
 * blob's text), SYSTEM, MESSAGE and LICENSE. Appends to `out`. */
int slm_manifest_to_modelfile(const struct slm_manifest *m, struct slm_buf *out,
                              struct slm_err *err);

/* ---------------------------------------------------------------- create */

struct slm_create_params {
    const char *modelfile; /* path of the Modelfile ("-" = stdin); or NULL with `text` */
    const char *text;      /* Modelfile text when `modelfile` is NULL */
    size_t text_len;
    const char *base_dir;  /* folder relative paths are read from (with `text`); NULL = cwd */
    slm_pull_note_fn note; /* progress lines ("importing model.gguf"), may be NULL */
    void *user;
};

/* Creates (or replaces) model `name` from a Modelfile: FROM a store name
 * (its manifest is the base: model, adapters, parameters, system, template,
 * messages and license are inherited and then overridden), or FROM a .gguf
 * path (copied in as a blob); ADAPTER files, a TEMPLATE file and inline
 * TEMPLATE text are stored as blobs. A Go-syntax template is refused
 * (SLM_E_UNSUPPORTED: slm templates are Liquid). Files given must be GGUF.
 * Errors name the Modelfile, the line and the directive. */
int slm_create(struct slm_store *store, const char *name, const struct slm_create_params *params,
               struct slm_err *err);

#endif /* SLM_STORE_H */
