/*
 * store/internal.h - names shared between the files of src/store/ (not part
 * of the public API).
 */
#ifndef SLM_STORE_INTERNAL_H
#define SLM_STORE_INTERNAL_H

#include <limits.h>

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

/* The store handle (store.c opens it; tmp.c sweeps its tmp/ once). */
struct slm_store {
    char home[PATH_MAX];
    bool swept; /* tmp/ was swept through this handle */
};

/* Moves the file at `path`, open as `fd` (the caller's; not closed here), into
 * blobs/ as sha256-<hex>, replacing a blob of that name. `trusted`: `hex` is
 * the sha256 of exactly the bytes the caller wrote through `fd` into a file no
 * other writer could touch meanwhile (a download under its tmp/ lock, a copy
 * into a fresh mkstemp() file); the file is then not read again, only checked
 * to still be that file (device, inode, size). Otherwise the file is hashed
 * through `fd` here (one full read), must not change meanwhile (size, mtime)
 * and must hash to `hex`. SLM_E_CORRUPT when a check fails; nothing is stored
 * and `path` is left for the caller. */
int slm__store_adopt_blob(struct slm_store *store, const char *path, int fd, const char *hex,
                          bool trusted, char digest[72], struct slm_err *err);

/* ---------------------------------------------------------------- tmp/ (tmp.c) */

/* How long an unlocked file in tmp/ is kept after its last write: a partial
 * download (<64 hex>.partial, resumable) 7 days, anything else an hour. */
#define SLM_TMP_PARTIAL_MAX_AGE_S (7 * 24 * 3600)
#define SLM_TMP_MAX_AGE_S 3600

/* An exclusive flock(2) on tmp/<key>.lock: one per download key (the file's
 * expected sha256, else the sha256 of its source). fd is -1 when not held. */
struct slm__lock {
    int fd;
    char path[PATH_MAX];
};

/* Tries to take the lock for `key` (64 hex digits) without waiting. SLM_OK
 * with l->fd >= 0 when taken, with l->fd == -1 when another holder (another
 * process, or another open in this one) has it; SLM_E_UNSUPPORTED when the
 * file system has no flock; SLM_E_IO otherwise. */
int slm__store_trylock(struct slm_store *store, const char *key, struct slm__lock *l,
                       struct slm_err *err);
/* Removes the lock file, then releases the lock; a no-op when not held. */
void slm__store_unlock(struct slm__lock *l);

/* Removes what crashed writers left in tmp/: files older than the ages above
 * that no live process holds locked. Runs once per handle (the first pull,
 * create or import through it); returns the files removed and adds their
 * bytes to *bytes (may be NULL). */
size_t slm__store_sweep_tmp(struct slm_store *store, uint64_t *bytes);

/* The blob digests the manifest file at `path` refers to (none when it is
 * missing or damaged); at most `cap`. */
size_t slm__store_digests_of(struct slm_store *store, const char *path, char (*out)[72],
                             size_t cap);
/* After a manifest was replaced: removes the blobs among `old` (the previous
 * manifest's digests) that no manifest refers to any more. */
void slm__store_replaced(struct slm_store *store, char (*old)[72], size_t n);

/* ---------------------------------------------------------------- resumed downloads (range.c) */

/* The complete length "*" (unknown) in a Content-Range. */
#define SLM_RANGE_UNKNOWN UINT64_MAX

/* Parses a Content-Range value of a 206 answer, "bytes FIRST-LAST/COMPLETE"
 * where COMPLETE may be "*" (RFC 9110 14.4; unit case-insensitive, surrounding
 * whitespace ignored). On SLM_OK, first <= last, and last < complete unless
 * complete is SLM_RANGE_UNKNOWN. SLM_E_INVALID otherwise (including numbers
 * past UINT64_MAX - 1). */
int slm__content_range_parse(const char *value, size_t len, uint64_t *first, uint64_t *last,
                             uint64_t *complete);

enum slm__range_action {
    SLM__RANGE_APPEND,  /* the body continues the partial file at `offset` */
    SLM__RANGE_RESTART, /* the body is the file from byte 0: truncate, then write */
    SLM__RANGE_REJECT,  /* the body cannot be placed: drop the transfer, retry from 0 */
};

/* What to do with a download's body, decided at its first byte: `offset` is
 * the size of the partial file (0 = no Range was asked), `status` the HTTP
 * status, `content_range` (`len` bytes, NULL = absent) the Content-Range
 * header, `total` the expected file size (0 = unknown). A 206 is appended
 * only when its range starts at `offset` and fits `total`. */
enum slm__range_action slm__range_check(uint64_t offset, long status, const char *content_range,
                                        size_t len, uint64_t total);

#endif /* SLM_STORE_INTERNAL_H */
