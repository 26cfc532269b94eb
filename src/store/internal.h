/*
 * store/internal.h - names shared between the files of src/store/ (not part
 * of the public API).
 */
#ifndef SLM_STORE_INTERNAL_H
#define SLM_STORE_INTERNAL_H

#include "slm/store.h"

#define SLM_MANIFEST_SCHEMA 1
#define SLM_MANIFEST_MAX ((size_t)4 << 20)

/* A manifest with only `name` set and empty params/messages; NULL on OOM. */
struct slm_manifest *slm__manifest_new(const char *name);
/* True when `d` is "sha256-" followed by 64 lowercase hex digits. */
bool slm__digest_valid(const char *d);
/* "2026-01-31T12:00:00Z" from milliseconds since the epoch (strftime result). */
size_t slm__format_time(int64_t ms, char *out, size_t cap);
int slm__parse_time(const char *s, int64_t *ms);

/* Moves a file whose sha256 the caller has already computed (`hex`, lowercase)
 * into blobs/ by rename (copying across file systems). */
int slm__store_adopt_blob(struct slm_store *store, const char *path, const char *hex,
                          char digest[72], struct slm_err *err);

/* The blob digests the manifest file at `path` refers to (none when it is
 * missing or damaged); at most `cap`. */
size_t slm__store_digests_of(struct slm_store *store, const char *path, char (*out)[72],
                             size_t cap);
/* After a manifest was replaced: removes the blobs among `old` (the previous
 * manifest's digests) that no manifest refers to any more. */
void slm__store_replaced(struct slm_store *store, char (*old)[72], size_t n);

#endif /* SLM_STORE_INTERNAL_H */
