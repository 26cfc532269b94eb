/*
 * slm/base.h - the foundation every other module stands on: status codes and
 * error messages, length-carrying strings and capped buffers, arenas, logging,
 * files, hashing, time and number parsing.
 *
 * Needs libc only. Nothing here allocates behind the caller's back except where
 * a function says so; every growable buffer has a hard cap.
 *
 * Thread safety: everything is reentrant except slm_log_set_sink() and
 * slm_log_set_level(), which are meant to be called once at start-up.
 */
#ifndef SLM_BASE_H
#define SLM_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__) || defined(__clang__)
#define SLM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define SLM_NODISCARD __attribute__((warn_unused_result))
#else
#define SLM_PRINTF(fmt, args)
#define SLM_NODISCARD
#endif

#define SLM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SLM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SLM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---------------------------------------------------------------- status */

/* Functions that can fail return int: SLM_OK or one of these (negative). */
enum slm_status {
    SLM_OK = 0,
    SLM_E_NOMEM = -1,       /* allocation failed */
    SLM_E_INVALID = -2,     /* bad argument or malformed input */
    SLM_E_TOO_LARGE = -3,   /* a size cap was reached */
    SLM_E_IO = -4,          /* file or socket error */
    SLM_E_NOT_FOUND = -5,   /* no such model, file, key */
    SLM_E_UPSTREAM = -6,    /* a remote server failed or refused */
    SLM_E_ABORTED = -7,     /* cancelled by the caller or a signal */
    SLM_E_UNSUPPORTED = -8, /* valid, but not something slm does */
    SLM_E_EXISTS = -9,      /* the target already exists */
    SLM_E_CORRUPT = -10,    /* checksum or format mismatch */
    SLM_E_OVERFLOW = -11,   /* the input does not fit the context */
    SLM_E_LIMIT = -12,      /* a resource limit (steps, depth) was hit */
    SLM_E_TIMEOUT = -13,    /* a deadline passed */
    SLM_E_INCOMPLETE = -14, /* output cut short (e.g. by max tokens) */
    SLM_E_BACKEND = -15,    /* llama.cpp/ggml reported a failure */
};

/* A static, human-readable name for a status code. Never NULL. */
const char *slm_strerror(int code);

/*
 * Optional caller-owned error detail. Functions that take a `struct slm_err *`
 * accept NULL; when not NULL and the call fails, `code` is the returned status
 * and `msg` a NUL-terminated sentence that names the thing that went wrong.
 */
struct slm_err {
    int code;
    char msg[256];
};

/* Fills `err` (if not NULL) and returns `code`, so callers can
 * `return slm_err_set(err, SLM_E_INVALID, "...")`. */
int slm_err_set(struct slm_err *err, int code, const char *fmt, ...) SLM_PRINTF(3, 4);
/* Prefixes err->msg with "prefix: " (e.g. a file name); returns err->code. */
int slm_err_prefix(struct slm_err *err, const char *fmt, ...) SLM_PRINTF(2, 3);
void slm_err_clear(struct slm_err *err);

/* ---------------------------------------------------------------- strings */

/* A borrowed view: `ptr` need not be NUL-terminated; valid while the owner is. */
struct slm_str {
    const char *ptr;
    size_t len;
};

#define SLM_STR(lit) ((struct slm_str){(lit), sizeof(lit) - 1})
#define SLM_STR_NULL ((struct slm_str){NULL, 0})

struct slm_str slm_str_c(const char *s); /* NULL gives an empty view */
struct slm_str slm_str_n(const char *p, size_t n);
bool slm_str_eq(struct slm_str a, struct slm_str b);
bool slm_str_eq_c(struct slm_str a, const char *s);
bool slm_str_starts_with(struct slm_str s, struct slm_str prefix);
bool slm_str_ends_with(struct slm_str s, struct slm_str suffix);
struct slm_str slm_str_trim(struct slm_str s); /* ASCII whitespace, both ends */
struct slm_str slm_str_sub(struct slm_str s, size_t off, size_t len); /* clamped */
/* Index of the first `c` at or after `from`, or SIZE_MAX. */
size_t slm_str_find_char(struct slm_str s, char c, size_t from);
size_t slm_str_find(struct slm_str s, struct slm_str needle, size_t from);
/* Case-insensitive (ASCII) comparisons. */
bool slm_str_eq_nocase(struct slm_str a, struct slm_str b);
bool slm_str_contains_nocase(struct slm_str hay, struct slm_str needle);
/* strdup of a view; NULL on allocation failure. Caller frees. */
char *slm_str_dup(struct slm_str s);
/* Levenshtein distance between two NUL-terminated strings, for "did you
 * mean" messages; strings longer than 40 bytes count as SIZE_MAX away. */
size_t slm_edit_distance(const char *a, const char *b);
/* The entry of `names` (`n` strings) closest to `name`, when at most
 * `max_dist` edits away and not `name` itself; NULL otherwise. Borrowed from
 * `names`. */
const char *slm_closest_name(const char *name, const char *const *names, size_t n, size_t max_dist);

/*
 * An owned, growable, NUL-terminated byte buffer with a hard cap.
 * `max` is the largest `len` allowed (0 at init means SLM_BUF_DEFAULT_MAX).
 * Appends past `max` fail with SLM_E_TOO_LARGE and leave the buffer unchanged.
 * A zeroed struct is a valid empty buffer with the default cap.
 * `ptr` moves when the buffer grows: never keep pointers into it across appends.
 */
struct slm_buf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max;
};

#define SLM_BUF_DEFAULT_MAX ((size_t)1 << 30)

void slm_buf_init(struct slm_buf *b, size_t max);
void slm_buf_free(struct slm_buf *b);  /* back to empty; keeps max */
void slm_buf_clear(struct slm_buf *b); /* len = 0, keeps memory */
int slm_buf_reserve(struct slm_buf *b, size_t extra) SLM_NODISCARD;
int slm_buf_append(struct slm_buf *b, const void *p, size_t n) SLM_NODISCARD;
int slm_buf_append_str(struct slm_buf *b, struct slm_str s) SLM_NODISCARD;
int slm_buf_puts(struct slm_buf *b, const char *s) SLM_NODISCARD;
int slm_buf_putc(struct slm_buf *b, char c) SLM_NODISCARD;
int slm_buf_printf(struct slm_buf *b, const char *fmt, ...) SLM_PRINTF(2, 3) SLM_NODISCARD;
int slm_buf_vprintf(struct slm_buf *b, const char *fmt, va_list ap) SLM_PRINTF(2, 0) SLM_NODISCARD;
/* Returns the heap string (never NULL: an empty buffer gives "") and resets `b`.
 * Caller frees. NULL only on allocation failure. */
char *slm_buf_take(struct slm_buf *b);
/* Drops `n` bytes from the front. */
void slm_buf_consume(struct slm_buf *b, size_t n);
static inline struct slm_str slm_buf_str(const struct slm_buf *b) {
    return (struct slm_str){b->ptr ? b->ptr : "", b->len};
}
static inline const char *slm_buf_cstr(const struct slm_buf *b) {
    return b->ptr ? b->ptr : "";
}

/*
 * Masks what looks like a credential in the NUL-terminated `s`, in place, for
 * text bound for a log, an error message or a client: every occurrence of the
 * `n_keys` strings in `keys` (the configured key values; NULL entries and
 * entries shorter than 4 bytes are ignored; `keys` may be NULL when n_keys is
 * 0), the credential after "Bearer " or "Basic ", the value of a secret
 * parameter or header (api_key=, key=, access_token=, token=, password=,
 * secret=, "x-api-key: ", "api_key": "..." and the like; values shorter than 3
 * bytes are left), and tokens shaped like well-known API keys ("sk-...",
 * "sk_...", "gsk_...", "hf_...", "AIza...", at least 8 key characters after the
 * prefix, so a cloud's "sk-proj-****abcd" hint goes too), and any other key
 * hint (a token of 8 or more key characters with "****" in it). Each becomes "***";
 * a name, scheme or key prefix before it is kept ("Bearer ***", "api_key=***",
 * "sk-***"). Never makes `s` longer; returns its new length.
 */
size_t slm_mask_secrets(char *s, const char *const *keys, size_t n_keys);

/* ---------------------------------------------------------------- arena */

/*
 * A bump allocator for per-request / per-command lifetimes: many small
 * allocations, freed at once by slm_arena_free(). `max` caps the total bytes
 * (0 = no cap beyond memory). Allocations are 16-byte aligned.
 */
struct slm_arena_block;
struct slm_arena {
    struct slm_arena_block *head;
    size_t used;
    size_t max;
};

void slm_arena_init(struct slm_arena *a, size_t max);
void slm_arena_free(struct slm_arena *a);
/* NULL when the cap is reached or memory runs out. Memory is zeroed. */
void *slm_arena_alloc(struct slm_arena *a, size_t n);
char *slm_arena_strndup(struct slm_arena *a, const char *p, size_t n);

/* ---------------------------------------------------------------- logging */

enum slm_log_level {
    SLM_LOG_ERROR = 0,
    SLM_LOG_WARN = 1,
    SLM_LOG_INFO = 2,
    SLM_LOG_DEBUG = 3,
};

/* A sink receives one formatted line (no trailing newline). */
typedef void (*slm_log_sink_fn)(enum slm_log_level level, const char *line, void *user);

extern int slm__log_level;

/* Evaluates its arguments only when `level` is enabled. */
#define SLM_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if ((int)(level) <= slm__log_level)                                                        \
            slm_log_write((level), __VA_ARGS__);                                                   \
    } while (0)

void slm_log_write(enum slm_log_level level, const char *fmt, ...) SLM_PRINTF(2, 3);
void slm_log_set_level(enum slm_log_level level);
/* NULL restores the default sink (stderr, "slm: level: line"). */
void slm_log_set_sink(slm_log_sink_fn fn, void *user);
/* Parses "error|warn|info|debug"; SLM_E_INVALID otherwise. */
int slm_log_level_parse(const char *s, enum slm_log_level *out);

/* ---------------------------------------------------------------- files */

/* write(2) until all `n` bytes are written (EINTR retried); 0, or -1 with
 * errno set. */
int slm_write_all(int fd, const void *data, size_t n);

/* Reads a whole file into `out` (cleared first), at most `max` bytes
 * (0 = SLM_BUF_DEFAULT_MAX); SLM_E_TOO_LARGE past it. "-" reads stdin. */
int slm_file_read(const char *path, size_t max, struct slm_buf *out, struct slm_err *err);
/* Writes `n` bytes to `path` through a temporary file in the same directory,
 * fsync, then rename: readers see the old file or the new one, never a part. */
int slm_file_write_atomic(const char *path, const void *data, size_t n, struct slm_err *err);
/* mkdir -p with mode 0755. */
int slm_mkdir_p(const char *path, struct slm_err *err);
/* mkdir -p of the folder that will hold the file `path` (nothing when it
 * has no folder part or the folder exists). */
int slm_mkdir_parent(const char *path, struct slm_err *err);
bool slm_file_exists(const char *path);
bool slm_dir_exists(const char *path);
/* Size in bytes, or -1 when it cannot be stat'ed. */
int64_t slm_file_size(const char *path);
/* fsyncs the directory that holds `path` (so a rename survives power loss). */
int slm_fsync_dir_of(const char *path);
/* Joins two path parts with one '/' into `out` (snprintf semantics). */
size_t slm_path_join(char *out, size_t cap, const char *a, const char *b);
/* slm's home folder into `out`: `home` when given, else $SLM_HOME, else
 * $HOME/.slm, without trailing slashes. SLM_E_INVALID when neither variable
 * is set, SLM_E_TOO_LARGE when it does not fit `cap` (pass less than the
 * buffer to keep room for what the caller appends). Creates nothing. */
int slm_home_dir(const char *home, char *out, size_t cap, struct slm_err *err);

/* ---------------------------------------------------------------- sha256 */

struct slm_sha256 {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t block[64];
    size_t fill;
};

void slm_sha256_init(struct slm_sha256 *s);
void slm_sha256_update(struct slm_sha256 *s, const void *data, size_t n);
void slm_sha256_final(struct slm_sha256 *s, uint8_t digest[32]);
/* One call: digest of `n` bytes as 64 lowercase hex digits + NUL. */
void slm_sha256_hex(const void *data, size_t n, char hex[65]);
void slm_hex_encode(const uint8_t *bytes, size_t n, char *out); /* out: 2n+1 */
/* Hashes a file; SLM_E_IO when it cannot be read. */
int slm_sha256_file(const char *path, char hex[65], struct slm_err *err);
/* Feeds what `fd` holds from its current offset to its end into `s`;
 * *n_read (may be NULL) gets the bytes read. SLM_E_IO naming `path`. */
int slm_sha256_update_fd(struct slm_sha256 *s, int fd, const char *path, uint64_t *n_read,
                         struct slm_err *err);
/* True when `s` is exactly 64 hex digits (either case). */
bool slm_is_sha256_hex(struct slm_str s);

/* ---------------------------------------------------------------- time */

double slm_time_mono(void);     /* seconds, monotonic */
int64_t slm_time_unix_ms(void); /* wall clock, milliseconds since epoch */
void slm_sleep_ms(int64_t ms);
/* Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard
 * Hinnant's algorithms; any year, months 1..12). */
int64_t slm_days_from_civil(int64_t y, int64_t m, int64_t d);
void slm_civil_from_days(int64_t days, int64_t *y, int64_t *m, int64_t *d);

/* ---------------------------------------------------------------- numbers */

/* Strict parsers: the whole view must be a number in range. */
int slm_parse_i64(struct slm_str s, int64_t *out);
int slm_parse_u64(struct slm_str s, uint64_t *out);
int slm_parse_f64(struct slm_str s, double *out);
/* Human sizes: 1.2 GB style (powers of 1000), into `out` (snprintf semantics). */
size_t slm_format_size(char *out, size_t cap, uint64_t bytes);

/* ---------------------------------------------------------------- utf-8 */

/* Length of the longest prefix of `p[0..n)` that ends on a code-point
 * boundary (a trailing partial sequence is held back). */
size_t slm_utf8_complete_len(const char *p, size_t n);
/* True when the bytes are valid UTF-8. */
bool slm_utf8_valid(const char *p, size_t n);

#endif /* SLM_BASE_H */
