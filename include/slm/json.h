/*
 * slm/json.h - small helpers over jansson (part of the base module).
 *
 * jansson's json_t is the data model everywhere in slm (requests, manifests,
 * template variables). These helpers turn jansson's errors into slm_err
 * messages that name the file, line and column, and read typed fields with
 * defaults.
 */
#ifndef SLM_JSON_H
#define SLM_JSON_H

#include <jansson.h>

#include "slm/base.h"

/* Parses `len` bytes of JSON (any value, not just objects). `what` names the
 * source in errors ("request body", a file name). On success *out is a new
 * reference owned by the caller. Duplicate keys are rejected. */
int slm_json_parse(const char *data, size_t len, const char *what, json_t **out,
                   struct slm_err *err);
/* Reads and parses a file of at most `max` bytes (0 = 64 MiB). */
int slm_json_load_file(const char *path, size_t max, json_t **out, struct slm_err *err);

/* Typed getters: the default when the key is missing or null; SLM_E_INVALID
 * (with a message naming `key`) when present with the wrong type. */
int slm_json_get_str(const json_t *obj, const char *key, const char *def, const char **out,
                     struct slm_err *err);
int slm_json_get_int(const json_t *obj, const char *key, int64_t def, int64_t *out,
                     struct slm_err *err);
int slm_json_get_bool(const json_t *obj, const char *key, bool def, bool *out, struct slm_err *err);

/* Serializes compactly into `out` (appended). */
int slm_json_dump(const json_t *v, struct slm_buf *out) SLM_NODISCARD;
/* A view of a JSON string value (works with embedded NULs); empty if not a string. */
struct slm_str slm_json_str(const json_t *v);

#endif /* SLM_JSON_H */
