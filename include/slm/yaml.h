/*
 * slm/yaml.h - YAML (or JSON) files as jansson trees that remember where every
 * value came from (part of the base module).
 *
 * Config files (router.yaml, flows, eval suites) are read into jansson so the
 * rest of slm has one data model, but validation errors must name the file,
 * line and key ("router.yaml:12: routes[0].checks.label_prob: expected a
 * number between 0 and 1"). A loaded document therefore keeps a side table:
 * the position of every mapping member (where its key is written), of every
 * sequence item, and of every mapping or sequence node.
 *
 * Scalars follow YAML 1.2's core schema: plain `null ~` (and empty) are null,
 * `true false` booleans, decimal / 0x / 0o integers and decimal floats,
 * `.inf .nan` floats; quoted scalars are strings, and so is a `!!str` tag.
 * JSON is YAML, so JSON files load through the same path.
 *
 * Refused with a clear error: more than one document, non-scalar or duplicate
 * keys, merge keys (`<<`), unknown tags. Aliases are resolved by copying the
 * anchored value, counted against the node limit (so "billion laughs" inputs
 * fail with SLM_E_LIMIT instead of eating memory).
 *
 * Thread safety: a loaded document is immutable; lookups may run in parallel.
 */
#ifndef SLM_YAML_H
#define SLM_YAML_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "slm/base.h"

struct slm_yaml_params {
    size_t max_bytes; /* input size; 0 = 4 MiB */
    int max_depth;    /* mapping/sequence nesting; 0 = 64 */
    size_t max_nodes; /* values created, alias copies included; 0 = 1,000,000 */
};

struct slm_yaml_params slm_yaml_params_default(void);

/* A position in the source, 1-based; line 0 means unknown. */
struct slm_yaml_pos {
    int line;
    int col;
};

struct slm_yaml_doc;

/*
 * Parses `len` bytes. `name` names the source in errors and is copied (NULL =
 * "yaml"). `params` may be NULL. On success one slm_yaml_free() is owed; on
 * failure nothing is owed and `err` reads "name:line:col: what". Returns
 * SLM_OK, SLM_E_INVALID (syntax, duplicate key, unsupported feature),
 * SLM_E_TOO_LARGE (input size), SLM_E_LIMIT (depth, nodes), SLM_E_NOMEM.
 * An empty document gives a null root.
 */
int slm_yaml_parse(const char *name, const char *data, size_t len,
                   const struct slm_yaml_params *params, struct slm_yaml_doc **out,
                   struct slm_err *err);
/* Reads and parses a file (named by `path` in errors); also SLM_E_IO /
 * SLM_E_NOT_FOUND when it cannot be read. */
int slm_yaml_load_file(const char *path, const struct slm_yaml_params *params,
                       struct slm_yaml_doc **out, struct slm_err *err);
void slm_yaml_free(struct slm_yaml_doc *doc);

/* The root value (borrowed, valid until slm_yaml_free(); never NULL). */
json_t *slm_yaml_root(const struct slm_yaml_doc *doc);
/* The name given at parse time (borrowed). */
const char *slm_yaml_name(const struct slm_yaml_doc *doc);

/* Where `parent[key]` is written (the key's position). Falls back to the
 * parent's own position, then to line 0, when unknown (values copied from an
 * alias report the alias). */
struct slm_yaml_pos slm_yaml_pos_key(const struct slm_yaml_doc *doc, const json_t *parent,
                                     const char *key);
/* Where item `index` of sequence `parent` starts (with the same fallbacks). */
struct slm_yaml_pos slm_yaml_pos_index(const struct slm_yaml_doc *doc, const json_t *parent,
                                       size_t index);
/* Where a mapping or sequence node starts (line 0 for scalars: jansson shares
 * true/false/null values, so scalars are located through their parent). */
struct slm_yaml_pos slm_yaml_pos_node(const struct slm_yaml_doc *doc, const json_t *node);

/* ---------------------------------------------------------------- validation helpers
 * For the parsers of config files (router.yaml, eval suites): every error reads
 * "file:line: key.path: message". `path` is the key path of `obj` ("" at the
 * root); getters leave *out alone when the key is absent or null. */

struct slm_yaml_check {
    const struct slm_yaml_doc *doc;
    const char *dir;     /* relative paths resolve against it (NULL = as given) */
    struct slm_err *err; /* gets the message */
};

/* Sets the error at parent[key] (or item `index` when key is NULL); returns `code`. */
int slm_yaml_verr(struct slm_yaml_check *v, int code, const json_t *parent, const char *key,
                  size_t index, const char *path, const char *fmt, ...) SLM_PRINTF(7, 8);
/* SLM_E_INVALID at obj[key], named "path.key": the error of one key of a mapping. */
int slm_yaml_key_err(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     const char *fmt, ...) SLM_PRINTF(5, 6);
/* out = path + "." + key (cut to cap). */
void slm_yaml_subpath(char *out, size_t cap, const char *path, const char *key);
/* SLM_E_INVALID naming the first key of `obj` not in the NULL-terminated `allowed`,
 * with the closest allowed key ("did you mean 'next'?") or the list of them. */
int slm_yaml_check_keys(struct slm_yaml_check *v, const json_t *obj, const char *path,
                        const char *const *allowed);
int slm_yaml_want_object(struct slm_yaml_check *v, const json_t *parent, const char *key,
                         size_t index, const char *path, const json_t *val);
/* A non-empty string (malloc'ed copy, replacing *out); `required` makes absence an error. */
int slm_yaml_get_str(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     bool required, char **out);
int slm_yaml_get_num(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     double lo, double hi, double *out);
int slm_yaml_get_int(struct slm_yaml_check *v, const json_t *obj, const char *path, const char *key,
                     int64_t lo, int64_t hi, int64_t *out);
int slm_yaml_get_bool(struct slm_yaml_check *v, const json_t *obj, const char *path,
                      const char *key, bool *out);
/* `rel` made absolute against `dir` (a malloc'ed copy either way; NULL on no memory). */
char *slm_yaml_resolve_path(const char *dir, const char *rel);
/* A string resolved as a path; with `must_exist`, SLM_E_NOT_FOUND when no such file. */
int slm_yaml_get_path(struct slm_yaml_check *v, const json_t *obj, const char *path,
                      const char *key, bool must_exist, char **out);

#endif /* SLM_YAML_H */
