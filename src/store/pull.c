/*
 * store/pull.c - `slm pull`: fetch one model file from Hugging Face (or a
 * mirror with the same layout, or a plain URL) into the store.
 *
 * The bytes go to $SLM_HOME/tmp/<key>.partial and are hashed as they arrive;
 * a later attempt resumes that file with an HTTP Range request (from zero
 * when the server answers 200 instead of 206). Only a file whose sha256
 * matches the published, pinned or given digest is moved into blobs/ (by
 * rename), and only then is the manifest written (atomically): a name never
 * points at a broken download. From the check for a blob already present to
 * the manifest, a pull holds the flock tmp/<key>.lock, so a second pull of
 * the same file waits and then finds the blob in place (store/tmp.c and
 * docs/internals/store.md say why waiting, and why the hash taken while
 * downloading is then the file's).
 *
 * Network: libcurl, http(s) only, redirects followed (Hugging Face redirects
 * to its CDN); the params' token is sent as a bearer token to the Hugging
 * Face endpoint only. Reads no environment variable: the CLI maps SLM_MIRROR,
 * SLM_HF_ENDPOINT, HF_TOKEN and SLM_PULL_BACKOFF_MS onto the params.
 * Thread safety: one pull per store handle at a time.
 */
#define _XOPEN_SOURCE 700 /* realpath (XSI: every Unix slm builds on) */
#include "slm/store.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm/json.h"
#include "slm/memory.h"
#include "store/internal.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define LISTING_MAX ((size_t)16 << 20)

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct slm_pull_params slm_pull_params_default(void) {
    struct slm_pull_params p;
    memset(&p, 0, sizeof(p));
    return p;
}

/* One pull in progress. */
struct pull {
    struct slm_store *store;
    const struct slm_pull_params *p;
    struct slm_pull_result *res;
    char base[1024];           /* endpoint or mirror URL, without a trailing '/' */
    char mirror_dir[PATH_MAX]; /* set when the mirror is a folder */
    bool send_token;           /* base is the Hugging Face endpoint */
    int max_retries;
    int backoff_ms;
    const char *file; /* base name of the file, for progress */
    uint64_t total;   /* expected size, 0 when unknown */
};

static void note(struct pull *pl, const char *fmt, ...) SLM_PRINTF(2, 3);

static void note(struct pull *pl, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    SLM_LOG(SLM_LOG_DEBUG, "pull: %s", line);
    if (pl->p->note) {
        pl->p->note(line, pl->p->user);
    }
}

static int report(struct pull *pl, uint64_t done, uint64_t total) {
    if (!pl->p->progress) {
        return 0;
    }
    struct slm_pull_progress pr = {pl->file, done, total, pl->res->resumed_from};
    return pl->p->progress(&pr, pl->p->user);
}

/* Sleeps `ms`, asking the progress callback every 100 ms whether to cancel. */
static bool sleep_cancellable(struct pull *pl, int ms, uint64_t done) {
    for (int slept = 0; slept < ms; slept += 100) {
        slm_sleep_ms(SLM_MIN(100, ms - slept));
        if (report(pl, done, pl->total) != 0) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- HTTP */

enum outcome { XFER_OK, XFER_TRANSIENT, XFER_FATAL };

/* Where a transfer's bytes go: a capped buffer or a file being hashed. */
struct xfer {
    struct pull *pl;
    CURL *h;
    struct slm_buf *buf;
    int fd;
    struct slm_sha256 *sha;
    uint64_t offset;  /* bytes in the file before this transfer's first byte */
    uint64_t written; /* bytes this transfer wrote */
    bool asked_range;
    bool checked;
    int cb_error; /* a status from the write callback */
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
    struct xfer *x = user;
    size_t n = size * nmemb;
    if (!x->checked && x->fd >= 0) {
        x->checked = true;
        long code = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
        struct curl_header *cr = NULL;
        const char *crv =
            curl_easy_header(x->h, "Content-Range", 0, CURLH_HEADER, -1, &cr) == CURLHE_OK
                ? cr->value
                : NULL;
        enum slm__range_action act =
            slm__range_check(x->offset, code, crv, crv ? strlen(crv) : 0, x->pl->total);
        if (act != SLM__RANGE_APPEND) {
            /* The body is the whole file, or cannot be placed: start over. */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                x->cb_error = SLM_E_IO;
                return 0;
            }
            slm_sha256_init(x->sha);
            x->offset = 0;
            x->pl->res->resumed_from = 0;
            if (act == SLM__RANGE_REJECT) {
                x->cb_error = SLM_E_UPSTREAM; /* a transient error: the retry asks from 0 */
                return 0;
            }
            note(x->pl, "the server ignored the range request; downloading from the start");
        }
    }
    if (x->buf) {
        if (slm_buf_append(x->buf, ptr, n) != SLM_OK) {
            x->cb_error = SLM_E_TOO_LARGE;
            return 0;
        }
        return n;
    }
    if (slm_write_all(x->fd, ptr, n) != 0) {
        x->cb_error = SLM_E_IO;
        return 0;
    }
    slm_sha256_update(x->sha, ptr, n);
    x->written += n;
    return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)ultotal;
    (void)ulnow;
    struct xfer *x = user;
    if (x->buf) {
        return 0;
    }
    uint64_t total =
        x->pl->total ? x->pl->total : (dltotal > 0 ? x->offset + (uint64_t)dltotal : 0);
    return report(x->pl, x->offset + (uint64_t)(dlnow > 0 ? dlnow : 0), total);
}

static bool transient_curl(CURLcode c) {
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
    }
}

/* Runs one GET. Returns XFER_OK, XFER_TRANSIENT (worth a retry; `why` says
 * what happened) or XFER_FATAL (*status and `err` set). *http is the HTTP
 * status (0 when none). */
static enum outcome transfer(struct pull *pl, const char *url, struct xfer *x, long *http,
                             char *why, size_t why_cap, int *status, struct slm_err *err) {
    CURL *h = curl_easy_init();
    if (!h) {
        *status = slm_err_set(err, SLM_E_NOMEM, "cannot start an HTTP transfer");
        return XFER_FATAL;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    char range[32];
    struct curl_slist *hdr = NULL;
    const char *token = pl->p->token;
    if (pl->send_token && token && token[0]) {
        char auth[1024];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    x->h = h;
    x->checked = false;
    x->asked_range = x->fd >= 0 && x->offset > 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled connection (under 1 byte/s for a minute) is a transient error. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "slm/" SLM_VERSION);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    if (hdr) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    }
    if (x->asked_range) {
        snprintf(range, sizeof(range), "%llu-", (unsigned long long)x->offset);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
    CURLcode c = curl_easy_perform(h);
    *http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);

    const char *detail = cerr[0] ? cerr : curl_easy_strerror(c);
    if (c == CURLE_OK) {
        return XFER_OK;
    }
    if (x->cb_error == SLM_E_UPSTREAM) {
        snprintf(why, why_cap, "the answer's Content-Range does not continue the partial file");
        return XFER_TRANSIENT;
    }
    if (x->cb_error) {
        *status =
            x->cb_error == SLM_E_TOO_LARGE
                ? slm_err_set(err, SLM_E_TOO_LARGE, "%s: response too large", url)
                : slm_err_set(err, SLM_E_IO, "cannot write the download: %s", strerror(errno));
        return XFER_FATAL;
    }
    if (c == CURLE_ABORTED_BY_CALLBACK) {
        *status = slm_err_set(err, SLM_E_ABORTED, "download cancelled");
        return XFER_FATAL;
    }
    if (c == CURLE_HTTP_RETURNED_ERROR) {
        long s = *http;
        if (s == 404) {
            *status = slm_err_set(err, SLM_E_NOT_FOUND, "not found (HTTP 404): %s", url);
            return XFER_FATAL;
        }
        if (s == 401 || s == 403) {
            *status = slm_err_set(err, SLM_E_UPSTREAM,
                                  "access denied (HTTP %ld): %s; the repository may be gated or "
                                  "private: accept its terms and set HF_TOKEN",
                                  s, url);
            return XFER_FATAL;
        }
        if (s == 408 || s == 429 || s >= 500 || s == 416) {
            snprintf(why, why_cap, "HTTP %ld", s);
            return XFER_TRANSIENT;
        }
        *status = slm_err_set(err, SLM_E_UPSTREAM, "HTTP %ld from %s", s, url);
        return XFER_FATAL;
    }
    if (transient_curl(c)) {
        snprintf(why, why_cap, "%s", detail);
        return XFER_TRANSIENT;
    }
    *status = slm_err_set(err, SLM_E_UPSTREAM, "%s: %s", url, detail);
    return XFER_FATAL;
}

/* Delay before retry number `attempt` (0-based): backoff, doubling, capped. */
static int backoff(const struct pull *pl, int attempt) {
    long ms = pl->backoff_ms;
    for (int i = 0; i < attempt && ms < 16000; i++) {
        ms *= 2;
    }
    return (int)SLM_MIN(ms, 16000L);
}

/* GETs a small document (a listing) into `out`, retrying transient errors. */
static int http_small(struct pull *pl, const char *url, struct slm_buf *out, struct slm_err *err) {
    for (int attempt = 0;; attempt++) {
        slm_buf_free(out);
        slm_buf_init(out, LISTING_MAX);
        struct xfer x = {.pl = pl, .buf = out, .fd = -1};
        long http;
        char why[256];
        int status = SLM_OK;
        enum outcome o = transfer(pl, url, &x, &http, why, sizeof(why), &status, err);
        if (o == XFER_OK) {
            return SLM_OK;
        }
        if (o == XFER_FATAL) {
            return status;
        }
        if (attempt >= pl->max_retries) {
            return slm_err_set(err, SLM_E_UPSTREAM, "%s: %s (gave up after %d retries)", url, why,
                               attempt);
        }
        int ms = backoff(pl, attempt);
        note(pl, "%s: %s; retrying in %.1fs", url, why, ms / 1000.0);
        pl->res->retries++;
        if (!sleep_cancellable(pl, ms, 0)) {
            return slm_err_set(err, SLM_E_ABORTED, "cancelled");
        }
    }
}

/* ---------------------------------------------------------------- locations */

static bool is_url(const char *s) {
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0 ||
           strncmp(s, "file://", 7) == 0;
}

static int setup_base(struct pull *pl, struct slm_err *err) {
    const char *mirror = pl->p->mirror;
    const char *base;
    if (mirror && mirror[0]) {
        if (strncmp(mirror, "file://", 7) == 0) {
            mirror += 7;
        } else if (is_url(mirror)) {
            base = mirror;
            goto url;
        }
        if (!slm_dir_exists(mirror)) {
            return slm_err_set(err, SLM_E_NOT_FOUND,
                               "mirror '%s' is neither an http(s) URL nor a folder", mirror);
        }
        if (!realpath(mirror, pl->mirror_dir)) {
            return slm_err_set(err, SLM_E_IO, "%s: %s", mirror, strerror(errno));
        }
        return SLM_OK;
    }
    base = pl->p->endpoint && pl->p->endpoint[0] ? pl->p->endpoint : DEFAULT_ENDPOINT;
    if (!is_url(base) || strncmp(base, "file://", 7) == 0) {
        return slm_err_set(err, SLM_E_INVALID, "endpoint '%s' is not an http(s) URL", base);
    }
    pl->send_token = true;
url:;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        n--;
    }
    if (n >= sizeof(pl->base)) {
        return slm_err_set(err, SLM_E_INVALID, "endpoint URL too long");
    }
    memcpy(pl->base, base, n);
    pl->base[n] = '\0';
    return SLM_OK;
}

/* A path from a listing or a name, safe to use under a folder and in a URL:
 * no empty, "." or ".." component, no control bytes or backslashes. */
static bool safe_repo_path(const char *p) {
    if (!p[0] || p[0] == '/') {
        return false;
    }
    for (const char *s = p; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '\\') {
            return false;
        }
        bool start = s == p || s[-1] == '/';
        if (start && (*s == '/' || (s[0] == '.' && (s[1] == '/' || s[1] == '\0')) ||
                      (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == '\0')))) {
            return false;
        }
    }
    return p[strlen(p) - 1] != '/';
}

/* base + "/" + rel with every path segment of `rel` percent-escaped. */
static int join_url(const char *base, const char *rel, char *out, size_t cap) {
    struct slm_buf b = {0};
    slm_buf_init(&b, cap - 1);
    int rc = slm_buf_puts(&b, base);
    const char *s = rel;
    while (rc == SLM_OK && *s) {
        size_t n = strcspn(s, "/");
        char *esc = curl_easy_escape(NULL, s, (int)n);
        rc = esc ? slm_buf_printf(&b, "/%s", esc) : SLM_E_NOMEM;
        curl_free(esc);
        s += n;
        if (*s == '/') {
            s++;
        }
    }
    if (rc == SLM_OK) {
        memcpy(out, slm_buf_cstr(&b), b.len + 1);
    }
    slm_buf_free(&b);
    return rc;
}

/* Reads "api/models/ORG/REPO/tree/main[/dir]" from the base or mirror folder. */
static int fetch_listing(struct pull *pl, const struct slm_source *src, const char *dir,
                         struct slm_hf_file **files, size_t *n, struct slm_err *err) {
    char rel[1024];
    snprintf(rel, sizeof(rel), "api/models/%s/%s/tree/main%s%s", src->org, src->repo,
             dir[0] ? "/" : "", dir);
    struct slm_buf body = {0};
    int rc;
    char where[PATH_MAX + 1100];
    if (pl->mirror_dir[0]) {
        snprintf(where, sizeof(where), "%s/%s", pl->mirror_dir, rel);
        rc = slm_file_exists(where) ? slm_file_read(where, LISTING_MAX, &body, err)
                                    : slm_err_set(err, SLM_E_NOT_FOUND, "%s: no listing", where);
    } else {
        rc = join_url(pl->base, rel, where, sizeof(where));
        rc = rc == SLM_OK ? http_small(pl, where, &body, err)
                          : slm_err_set(err, SLM_E_INVALID, "URL too long");
    }
    if (rc == SLM_OK) {
        rc = slm_hf_tree_parse(body.ptr, body.len, files, n, err);
        if (rc != SLM_OK) {
            slm_err_prefix(err, "%s", where);
        }
    }
    slm_buf_free(&body);
    return rc;
}

/* A folder mirror without a listing: its files, without digests. */
static int scan_mirror(struct pull *pl, const struct slm_source *src, struct slm_hf_file **files,
                       size_t *n, struct slm_err *err);

/* ---------------------------------------------------------------- the file */

/* What to fetch: repository path (or URL), expected digest and size. */
struct target {
    char path[2048];
    char sha256[65];
    uint64_t size;
    char source[2200];
};

static int pick_target(struct pull *pl, const struct slm_source *src, struct target *t,
                       struct slm_err *err) {
    struct slm_hf_file *files = NULL;
    size_t n = 0;
    int rc = SLM_OK;
    if (src->kind == SLM_SOURCE_HF_QUANT) {
        rc = fetch_listing(pl, src, "", &files, &n, err);
        if (rc == SLM_E_NOT_FOUND && pl->mirror_dir[0]) {
            rc = scan_mirror(pl, src, &files, &n, err);
        } else if (rc == SLM_E_NOT_FOUND) {
            slm_err_set(err, SLM_E_NOT_FOUND, "repository %s/%s not found at %s", src->org,
                        src->repo, pl->base);
        }
        size_t idx = 0;
        if (rc == SLM_OK) {
            rc = slm_hf_pick_quant(files, n, src->quant, &idx, err);
            if (rc != SLM_OK) {
                slm_err_prefix(err, "hf.co/%s/%s", src->org, src->repo);
            }
        }
        if (rc == SLM_OK) {
            snprintf(t->path, sizeof(t->path), "%s", files[idx].path);
            memcpy(t->sha256, files[idx].sha256, 65);
            t->size = files[idx].size;
        }
    } else {
        snprintf(t->path, sizeof(t->path), "%s", src->path);
        if (src->pinned_sha256) {
            snprintf(t->sha256, sizeof(t->sha256), "%s", src->pinned_sha256);
        } else {
            /* The digest of one file: from its folder's listing, else the root's. */
            char dir[1024];
            snprintf(dir, sizeof(dir), "%s", src->path);
            char *slash = strrchr(dir, '/');
            *(slash ? slash : dir) = '\0';
            rc = fetch_listing(pl, src, dir, &files, &n, err);
            if (rc == SLM_E_NOT_FOUND && dir[0]) {
                rc = fetch_listing(pl, src, "", &files, &n, err);
            }
            int i = rc == SLM_OK ? slm_hf_find_path(files, n, src->path) : -1;
            if (i >= 0) {
                memcpy(t->sha256, files[i].sha256, 65);
                t->size = files[i].size;
            }
            if (rc == SLM_E_NOT_FOUND || rc == SLM_E_INVALID) {
                rc = SLM_OK; /* no listing: the download itself says whether the file exists */
            }
        }
    }
    slm_hf_files_free(files, n);
    if (rc == SLM_OK && !safe_repo_path(t->path)) {
        rc = slm_err_set(err, SLM_E_INVALID, "refusing the file name '%.200s' from the listing",
                         t->path);
    }
    if (rc == SLM_OK && strstr(t->path, "-of-") && strstr(t->path, "-00001-of-")) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "%s is split into several files; slm pulls single-file models only",
                         t->path);
    }
    /* Joined with a capped buffer: gcc's truncation analysis (at every
     * optimisation level) cannot see a length checked before snprintf. */
    struct slm_buf b = {0};
    slm_buf_init(&b, sizeof(t->source) - 1);
    if (rc == SLM_OK && (slm_buf_puts(&b, "hf.co/") != SLM_OK || slm_buf_puts(&b, src->org) ||
                         slm_buf_putc(&b, '/') || slm_buf_puts(&b, src->repo) ||
                         slm_buf_putc(&b, '/') || slm_buf_puts(&b, t->path))) {
        rc = slm_err_set(err, SLM_E_INVALID, "the file path '%.200s' is too long", t->path);
    }
    if (rc == SLM_OK) {
        memcpy(t->source, b.ptr, b.len + 1);
    }
    slm_buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- download */

static int open_partial(const char *path, int *fd, uint64_t *size, struct slm_sha256 *sha,
                        struct slm_err *err) {
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
    }
    slm_sha256_init(sha);
    /* Hash what an earlier attempt left, so the digest covers the whole file. */
    uint64_t total = 0;
    int rc = slm_sha256_update_fd(sha, *fd, path, &total, err);
    *size = total;
    if (rc != SLM_OK) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

static int restart_file(int fd, struct slm_sha256 *sha, uint64_t *size, const char *path,
                        struct slm_err *err) {
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
    }
    slm_sha256_init(sha);
    *size = 0;
    return SLM_OK;
}

/* Copies a file from a folder mirror into the partial file (local: no resume). */
static int copy_local(struct pull *pl, const char *from, int fd, struct slm_sha256 *sha,
                      uint64_t *size, struct slm_err *err) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return slm_err_set(err, errno == ENOENT ? SLM_E_NOT_FOUND : SLM_E_IO, "%s: %s", from,
                           strerror(errno));
    }
    char *buf = malloc(1 << 16);
    int rc = buf ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    double last = 0;
    while (rc == SLM_OK) {
        ssize_t r = read(in, buf, 1 << 16);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            if (r < 0) {
                rc = slm_err_set(err, SLM_E_IO, "%s: %s", from, strerror(errno));
            }
            break;
        }
        if (slm_write_all(fd, buf, (size_t)r) != 0) {
            rc = slm_err_set(err, SLM_E_IO, "cannot write the download: %s", strerror(errno));
            break;
        }
        slm_sha256_update(sha, buf, (size_t)r);
        *size += (uint64_t)r;
        double now = slm_time_mono();
        if (now - last > 0.1) {
            last = now;
            if (report(pl, *size, pl->total) != 0) {
                rc = slm_err_set(err, SLM_E_ABORTED, "download cancelled");
            }
        }
    }
    free(buf);
    close(in);
    return rc;
}

/* Downloads `url` (or copies `local`) into `partial`, resuming and retrying;
 * on success `hex` is the sha256 of the whole file, *size its length and
 * *out_fd the open (fsynced) partial file, which the caller closes. The hash
 * covers what was on disk when the file was opened (re-read) and then every
 * byte written through the descriptor. */
static int download(struct pull *pl, const char *url, const char *local, const char *partial,
                    const char *expect, char hex[65], uint64_t *size, int *out_fd,
                    struct slm_err *err) {
    *out_fd = -1;
    int fd;
    struct slm_sha256 sha;
    uint64_t have = 0;
    int rc = open_partial(partial, &fd, &have, &sha, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if ((pl->total && have > pl->total) || local) {
        rc = restart_file(fd, &sha, &have, partial, err);
    }
    if (have > 0) {
        pl->res->resumed_from = have;
        note(pl, "resuming %s at byte %llu", pl->file, (unsigned long long)have);
    }
    bool fresh_retry = false;
    for (int attempt = 0; rc == SLM_OK;) {
        if (local) {
            rc = copy_local(pl, local, fd, &sha, &have, err);
        } else if (!(pl->total && have == pl->total)) {
            struct xfer x = {.pl = pl, .fd = fd, .sha = &sha, .offset = have};
            long http;
            char why[256];
            int status = SLM_OK;
            enum outcome o = transfer(pl, url, &x, &http, why, sizeof(why), &status, err);
            have = x.offset + x.written;
            if (o == XFER_FATAL) {
                rc = status;
                break;
            }
            if (o == XFER_OK && pl->total && have < pl->total) {
                o = XFER_TRANSIENT;
                snprintf(why, sizeof(why), "the transfer ended after %llu of %llu bytes",
                         (unsigned long long)have, (unsigned long long)pl->total);
            }
            if (o == XFER_TRANSIENT) {
                if (http == 416) {
                    /* Range not satisfiable: what we have is not a prefix of the file. */
                    rc = restart_file(fd, &sha, &have, partial, err);
                }
                if (attempt >= pl->max_retries) {
                    rc = slm_err_set(err, SLM_E_UPSTREAM,
                                     "%s: %s (gave up after %d retries; "
                                     "pull again to resume)",
                                     url, why, attempt);
                    break;
                }
                int ms = backoff(pl, attempt);
                note(pl, "%s; retrying in %.1fs", why, ms / 1000.0);
                pl->res->retries++;
                attempt++;
                if (!sleep_cancellable(pl, ms, have)) {
                    rc = slm_err_set(err, SLM_E_ABORTED, "download cancelled");
                }
                continue;
            }
        }
        if (rc != SLM_OK) {
            break;
        }
        uint8_t d[32];
        struct slm_sha256 copy = sha;
        slm_sha256_final(&copy, d);
        slm_hex_encode(d, 32, hex);
        if (pl->total && have != pl->total) {
            rc = slm_err_set(err, SLM_E_CORRUPT, "%s: got %llu bytes, expected %llu", pl->file,
                             (unsigned long long)have, (unsigned long long)pl->total);
        } else if (expect[0] && strcmp(hex, expect) != 0) {
            rc = slm_err_set(err, SLM_E_CORRUPT,
                             "%s: sha256 mismatch: expected %s, got %s; nothing was stored",
                             pl->file, expect, hex);
        }
        if (rc == SLM_E_CORRUPT && pl->res->resumed_from > 0 && !fresh_retry && !local) {
            /* The kept part may be what is wrong: one more try from zero. */
            note(pl, "%s; downloading again from the start", err ? err->msg : "mismatch");
            fresh_retry = true;
            pl->res->resumed_from = 0;
            rc = restart_file(fd, &sha, &have, partial, err);
            continue;
        }
        break;
    }
    if (rc == SLM_OK && fsync(fd) != 0) {
        rc = slm_err_set(err, SLM_E_IO, "%s: %s", partial, strerror(errno));
    }
    if (rc == SLM_OK) {
        *out_fd = fd;
    } else {
        close(fd);
    }
    /* Keep a partial file for resuming only after a transient failure or a
     * cancel; a wrong or refused file is worth nothing. */
    if (rc == SLM_E_CORRUPT || rc == SLM_E_NOT_FOUND || (rc == SLM_E_UPSTREAM && have == 0)) {
        unlink(partial);
    }
    *size = have;
    return rc;
}

/* ---------------------------------------------------------------- lock */

/* Takes the lock on the download `key`, waiting while another pull (another
 * process, or another thread of `slm serve`) holds it; the wait follows the
 * other pull's partial file in the progress callback, which may cancel it.
 * *locked is false when the file system has no flock: the pull then goes on
 * alone, and its file is hashed again before it is stored. */
static int take_lock(struct pull *pl, const char *key, const char *partial, struct slm__lock *l,
                     bool *locked, struct slm_err *err) {
    *locked = false;
    struct slm_err lerr = {0};
    int rc = slm__store_trylock(pl->store, key, l, &lerr);
    if (rc == SLM_E_UNSUPPORTED) {
        note(pl, "%s; pulling without the lock (the file is hashed again before it is stored)",
             lerr.msg);
        return SLM_OK;
    }
    for (bool told = false; rc == SLM_OK && l->fd < 0;) {
        if (!told) {
            note(pl, "waiting for another pull of %s", pl->file);
            told = true;
        }
        int64_t have = slm_file_size(partial);
        if (!sleep_cancellable(pl, 250, have > 0 ? (uint64_t)have : 0)) {
            return slm_err_set(err, SLM_E_ABORTED, "cancelled while waiting for another pull of %s",
                               pl->file);
        }
        rc = slm__store_trylock(pl->store, key, l, &lerr);
    }
    if (rc != SLM_OK) {
        if (err) {
            *err = lerr;
        }
        return rc;
    }
    *locked = true;
    return SLM_OK;
}

/* ---------------------------------------------------------------- manifest */

static int write_pulled_manifest(struct pull *pl, const struct slm_name *name, const char *digest,
                                 uint64_t size, const char *source, struct slm_err *err) {
    struct slm_manifest *m = slm__manifest_new("");
    if (!m) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    m->model_digest = strdup(digest);
    m->source = strdup(source);
    m->model_size = size;
    m->created_ms = slm_time_unix_ms();
    json_t *doc = m->model_digest && m->source ? slm_manifest_to_json(m) : NULL;
    slm_manifest_free(m);
    if (!doc) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = slm_store_write_manifest(pl->store, name, doc, err);
    json_decref(doc);
    return rc;
}

/* When the blob is already in the store and still hashes to its name, only
 * the manifest is (re)written. True when that happened. A damaged blob is
 * removed only by the holder of the download's lock (`locked`), who is about
 * to replace it; anyone else could remove the good blob a holder has just
 * put in its place. */
static bool already_present(struct pull *pl, const struct slm_name *name, const char *hex,
                            const char *source, bool locked, struct slm_err *err, int *rc) {
    char blob[PATH_MAX];
    slm_store_blob_path(pl->store, hex, blob, sizeof(blob));
    if (!slm_file_exists(blob)) {
        return false;
    }
    char got[65];
    if (slm_sha256_file(blob, got, NULL) != SLM_OK || strcmp(got, hex) != 0) {
        if (locked) {
            note(pl, "the stored copy of %s is damaged; downloading it again", pl->file);
            unlink(blob);
        }
        return false;
    }
    uint64_t size = (uint64_t)slm_file_size(blob);
    char digest[72];
    snprintf(digest, sizeof(digest), "sha256-%s", hex);
    struct slm_manifest *m = NULL;
    bool same = slm_store_read_manifest(pl->store, name, &m, NULL) == SLM_OK &&
                strcmp(m->model_digest, digest) == 0;
    slm_manifest_free(m);
    *rc = same ? SLM_OK : write_pulled_manifest(pl, name, digest, size, source, err);
    memcpy(pl->res->digest, digest, sizeof(digest));
    pl->res->size = size;
    pl->res->already = true;
    pl->res->verified = true;
    return true;
}

/* Without a published digest: a manifest with the same source whose blob
 * still matches means the model is present. */
static bool already_by_source(struct pull *pl, const struct slm_name *name, const char *source,
                              bool locked, struct slm_err *err, int *rc) {
    struct slm_manifest *m = NULL;
    if (slm_store_read_manifest(pl->store, name, &m, NULL) != SLM_OK) {
        return false;
    }
    bool ok = m->source && strcmp(m->source, source) == 0;
    char hex[65];
    snprintf(hex, sizeof(hex), "%s", m->model_digest + 7);
    slm_manifest_free(m);
    if (!ok) {
        return false;
    }
    bool present = already_present(pl, name, hex, source, locked, err, rc);
    pl->res->verified = false;
    return present;
}

/* ---------------------------------------------------------------- pull */

static void lower(char *s) {
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'F') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
}

static int resolve_target(struct pull *pl, const struct slm_source *src, struct target *t,
                          char expect[65], struct slm_err *err) {
    memset(t, 0, sizeof(*t));
    const char *given = pl->p->sha256;
    if (given && !slm_is_sha256_hex(slm_str_c(given))) {
        return slm_err_set(err, SLM_E_INVALID, "--sha256 '%.80s' is not 64 hex digits", given);
    }
    int rc = SLM_OK;
    if (src->kind == SLM_SOURCE_URL) {
        if (!given) {
            return slm_err_set(err, SLM_E_INVALID,
                               "a URL needs the file's digest: slm pull URL --sha256 HEX");
        }
        snprintf(t->path, sizeof(t->path), "%s", src->url);
        snprintf(t->source, sizeof(t->source), "%s", src->url);
    } else {
        rc = pick_target(pl, src, t, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    snprintf(expect, 65, "%s", t->sha256);
    if (given) {
        char g[65];
        snprintf(g, sizeof(g), "%s", given);
        lower(g);
        if (expect[0] && strcmp(expect, g) != 0) {
            return slm_err_set(err, SLM_E_CORRUPT,
                               "--sha256 %s differs from the published digest %s of %s", g, expect,
                               t->path);
        }
        memcpy(expect, g, 65);
    }
    return SLM_OK;
}

/* Will it fit? Before the download only the file's size is known: the weights and the
 * process (slm/memory.h with no header facts), a floor under what the model needs. */
static void warn_fit_size(struct pull *pl, uint64_t size) {
    if (size == 0) {
        return;
    }
    struct slm_model_info info = {.size_bytes = size};
    struct slm_mem_estimate est;
    slm_mem_estimate_info(&info, NULL, 0, &est);
    struct slm_mem_avail avail;
    slm_mem_usable(&avail, NULL, NULL);
    if (est.total > avail.available) {
        note(pl,
             "warning: %s will not fit: its weights and the process need at least %llu MiB "
             "(the KV cache comes on top) but %llu MiB is available; downloading anyway",
             pl->file, (unsigned long long)(est.total >> 20),
             (unsigned long long)(avail.available >> 20));
    }
}

/* After it: the whole estimate for the default context, from the stored file's header. */
static void warn_fit_model(struct pull *pl, const char *digest) {
    char blob[PATH_MAX];
    slm_store_blob_path(pl->store, digest + 7, blob, sizeof(blob));
    struct slm_mem_estimate est;
    struct slm_err e = {0};
    if (slm_mem_estimate(blob, NULL, &est, NULL, &e) != SLM_OK) {
        return; /* not a model slm can read: running it will say why */
    }
    struct slm_mem_avail avail;
    slm_mem_usable(&avail, NULL, NULL);
    if (slm_mem_check(pl->res->name, &est, avail.available, &e) != SLM_OK) {
        note(pl, "warning: %s", e.msg);
    }
}

int slm_pull(struct slm_store *store, const char *text, const struct slm_pull_params *params,
             struct slm_pull_result *result, struct slm_err *err) {
    pthread_once(&g_curl_once, curl_init_once);
    struct slm_pull_params defaults = slm_pull_params_default();
    struct slm_pull_result local_res = {0};
    struct pull pl = {.store = store, .p = params ? params : &defaults};
    pl.res = result ? result : &local_res;
    memset(pl.res, 0, sizeof(*pl.res));
    pl.max_retries = pl.p->max_retries == 0 ? 5 : SLM_MAX(pl.p->max_retries, 0);
    pl.backoff_ms = pl.p->backoff_ms > 0 ? pl.p->backoff_ms : pl.p->backoff_ms < 0 ? 0 : 500;

    struct slm_source src;
    int rc = slm_source_parse(text, &src, err);
    if (rc == SLM_OK && src.kind == SLM_SOURCE_URL && pl.p->name) {
        rc = slm_name_parse(pl.p->name, &src.name, err);
    }
    if (rc == SLM_OK) {
        rc = setup_base(&pl, err);
    }
    struct target t;
    char expect[65] = "";
    if (rc == SLM_OK) {
        rc = resolve_target(&pl, &src, &t, expect, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    slm_name_format(&src.name, pl.res->name, sizeof(pl.res->name));
    snprintf(pl.res->source, sizeof(pl.res->source), "%s", t.source);
    const char *slash = strrchr(t.path, '/');
    pl.file = slash ? slash + 1 : t.path;
    pl.total = t.size;

    /* The partial file's name ties it to the content (or the source) so a
     * resume never mixes two different files. */
    char key[65], partial[PATH_MAX], url[PATH_MAX + 1100], local[PATH_MAX * 2];
    if (expect[0]) {
        memcpy(key, expect, 65);
    } else {
        slm_sha256_hex(t.source, strlen(t.source), key);
    }
    char fname[100];
    snprintf(fname, sizeof(fname), "%.64s.partial", key);
    slm_store_tmp_path(store, fname, partial, sizeof(partial));
    bool is_local = pl.mirror_dir[0] && src.kind != SLM_SOURCE_URL;
    if (src.kind == SLM_SOURCE_URL) {
        snprintf(url, sizeof(url), "%s", src.url);
    } else {
        char rel[2400];
        snprintf(rel, sizeof(rel), "%s/%s/resolve/main/%s", src.org, src.repo, t.path);
        if (is_local) {
            snprintf(local, sizeof(local), "%s/%s", pl.mirror_dir, rel);
        } else if (join_url(pl.base, rel, url, sizeof(url)) != SLM_OK) {
            return slm_err_set(err, SLM_E_INVALID, "URL too long");
        }
    }
    if (src.kind == SLM_SOURCE_URL) {
        pl.send_token = false; /* the token is for Hugging Face only */
    }

    uint64_t freed = 0;
    size_t swept = slm__store_sweep_tmp(store, &freed);
    if (swept > 0) {
        char sz[32];
        slm_format_size(sz, sizeof(sz), freed);
        note(&pl, "removed %zu stale file%s from %s/tmp (%s)", swept, swept == 1 ? "" : "s",
             slm_store_home(store), sz);
    }
    /* Everything from here to the manifest happens under the file's lock:
     * a second pull of it waits, then finds the blob in place. */
    struct slm__lock lock;
    bool locked;
    rc = take_lock(&pl, key, partial, &lock, &locked, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (expect[0] ? already_present(&pl, &src.name, expect, t.source, locked, err, &rc)
                  : already_by_source(&pl, &src.name, t.source, locked, err, &rc)) {
        slm__store_unlock(&lock);
        return rc;
    }
    warn_fit_size(&pl, t.size);
    char hex[65];
    uint64_t size = 0;
    int fd;
    rc = download(&pl, is_local ? NULL : url, is_local ? local : NULL, partial, expect, hex, &size,
                  &fd, err);
    char digest[72];
    if (rc == SLM_OK) {
        if (!expect[0]) {
            note(&pl, "%s has no published sha256; stored under its computed digest", pl.file);
        }
        /* Under the lock no one else wrote the partial file, so the hash taken
         * while downloading is the file's (trusted); without it, hash again. */
        rc = slm__store_adopt_blob(store, partial, fd, hex, locked, digest, err);
        if (rc == SLM_E_CORRUPT) {
            unlink(partial);
        }
        close(fd);
    }
    if (rc == SLM_OK) {
        rc = write_pulled_manifest(&pl, &src.name, digest, size, t.source, err);
    }
    slm__store_unlock(&lock);
    if (rc == SLM_OK) {
        warn_fit_model(&pl, digest);
        memcpy(pl.res->digest, digest, sizeof(digest));
        pl.res->size = size;
        pl.res->verified = expect[0] != '\0';
    }
    return rc;
}

/* ---------------------------------------------------------------- mirrors */

static int scan_mirror(struct pull *pl, const struct slm_source *src, struct slm_hf_file **files,
                       size_t *n, struct slm_err *err) {
    char dir[PATH_MAX + 600];
    snprintf(dir, sizeof(dir), "%s/%s/%s/resolve/main", pl->mirror_dir, src->org, src->repo);
    DIR *d = opendir(dir);
    if (!d) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "repository %s/%s is not in the mirror %s",
                           src->org, src->repo, pl->mirror_dir);
    }
    size_t cap = 16, count = 0;
    struct slm_hf_file *out = calloc(cap, sizeof(*out));
    int rc = out ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    struct dirent *e;
    while (rc == SLM_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (count == cap) {
            struct slm_hf_file *grown = realloc(out, 2 * cap * sizeof(*out));
            if (!grown) {
                rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
                break;
            }
            out = grown;
            memset(out + cap, 0, cap * sizeof(*out));
            cap *= 2;
        }
        out[count].path = strdup(e->d_name);
        if (!out[count].path) {
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
            break;
        }
        char full[PATH_MAX * 2];
        snprintf(full, sizeof(full), "%s/%s", dir, e->d_name);
        int64_t sz = slm_file_size(full);
        out[count].size = sz > 0 ? (uint64_t)sz : 0;
        count++;
    }
    closedir(d);
    if (rc != SLM_OK) {
        slm_hf_files_free(out, count);
        return rc;
    }
    *files = out;
    *n = count;
    return SLM_OK;
}
