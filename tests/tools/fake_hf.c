/*
 * tests/tools/fake_hf.c - a fake Hugging Face server for `slm pull` tests,
 * on libmicrohttpd, bound to 127.0.0.1 on a port it picks.
 *
 *   fake_hf --root DIR [--port-file FILE] [--log FILE] [faults...]
 *
 * It serves a folder in the mirror layout (docs/store.md):
 *   GET /ORG/REPO/resolve/main/PATH        DIR/ORG/REPO/resolve/main/PATH
 *                                          (Range: bytes=N- and bytes=N-M)
 *   GET /api/models/ORG/REPO/tree/main[/D] a listing generated from
 *                                          DIR/ORG/REPO/resolve/main[/D] with
 *                                          real sizes and sha256s (lfs.oid for
 *                                          .gguf files, like Hugging Face)
 * Faults, for file downloads only:
 *   --fail-first N           the first N downloads get HTTP 503
 *   --truncate-after BYTES   the first download that is not failed stops after
 *                            BYTES body bytes and drops the connection
 *   --corrupt                every download has one byte flipped (mid-file)
 *   --ignore-range           Range headers are ignored (always 200, whole file)
 *   --slow-bytes-per-sec N   throttle every download
 *   --redirect               downloads answer 302 to /_cdn/... (as HF does)
 *   --token T                every request needs "Authorization: Bearer T" (else 401)
 *
 * It prints the port on stdout (one line) and writes it to --port-file when
 * given (written to FILE.tmp, then renamed). Each request is logged to --log
 * as "METHOD PATH range=VALUE status=CODE". Runs until SIGTERM or SIGINT.
 * A test tool: it prints its own errors.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm/base.h"

static struct {
    char root[PATH_MAX];
    const char *log_path;
    long fail_first;
    long long truncate_after; /* -1 = off */
    bool corrupt;
    bool ignore_range;
    long long slow_bps;
    bool redirect;
    const char *token;
} g_opt = {.truncate_after = -1};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static long g_downloads; /* file requests seen */
static bool g_truncated; /* the one truncation happened */
static volatile sig_atomic_t g_stop;

static void log_request(const char *method, const char *url, const char *range, unsigned status) {
    if (!g_opt.log_path) {
        return;
    }
    pthread_mutex_lock(&g_lock);
    FILE *f = fopen(g_opt.log_path, "a");
    if (f) {
        fprintf(f, "%s %s range=%s status=%u\n", method, url, range ? range : "-", status);
        fclose(f);
    }
    pthread_mutex_unlock(&g_lock);
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type,
                                 const char *body) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static bool path_ok(const char *p) {
    return strstr(p, "..") == NULL && strstr(p, "//") == NULL;
}

/* ---------------------------------------------------------------- listing */

static int append_entries(struct slm_buf *out, const char *dir, const char *prefix, bool *first) {
    DIR *d = opendir(dir);
    if (!d) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char full[PATH_MAX * 2], rel[PATH_MAX];
        if (slm_path_join(full, sizeof(full), dir, e->d_name) >= sizeof(full) ||
            (prefix[0] ? slm_path_join(rel, sizeof(rel), prefix, e->d_name)
                       : (size_t)snprintf(rel, sizeof(rel), "%s", e->d_name)) >= sizeof(rel)) {
            continue;
        }
        struct stat st;
        if (stat(full, &st) != 0) {
            continue;
        }
        int rc = slm_buf_puts(out, *first ? "\n  " : ",\n  ");
        *first = false;
        if (S_ISDIR(st.st_mode)) {
            rc |= slm_buf_printf(out,
                                 "{\"type\": \"directory\", \"oid\": \"0\", \"size\": 0, "
                                 "\"path\": \"%s\"}",
                                 rel);
            continue;
        }
        char sha[65];
        if (slm_sha256_file(full, sha, NULL) != SLM_OK) {
            continue;
        }
        rc |= slm_buf_printf(out,
                             "{\"type\": \"file\", \"oid\": \"%.40s\", \"size\": %lld, "
                             "\"path\": \"%s\"",
                             sha, (long long)st.st_size, rel);
        size_t n = strlen(e->d_name);
        if (n > 5 && strcmp(e->d_name + n - 5, ".gguf") == 0) {
            rc |= slm_buf_printf(out,
                                 ", \"lfs\": {\"oid\": \"%s\", \"size\": %lld, "
                                 "\"pointerSize\": 134}",
                                 sha, (long long)st.st_size);
        }
        rc |= slm_buf_puts(out, "}");
        if (rc != 0) {
            break;
        }
    }
    closedir(d);
    return 0;
}

static enum MHD_Result serve_tree(struct MHD_Connection *c, const char *url) {
    /* /api/models/ORG/REPO/tree/main[/DIR] */
    const char *p = url + strlen("/api/models/");
    const char *org_end = strchr(p, '/');
    const char *repo_end = org_end ? strchr(org_end + 1, '/') : NULL;
    if (!repo_end || strncmp(repo_end, "/tree/main", 10) != 0 ||
        (repo_end[10] != '\0' && repo_end[10] != '/')) {
        return send_text(c, 404, "application/json", "{\"error\":\"Not Found\"}");
    }
    const char *sub = repo_end[10] == '/' ? repo_end + 11 : "";
    char dir[PATH_MAX * 2];
    snprintf(dir, sizeof(dir), "%s/%.*s/resolve/main%s%s", g_opt.root, (int)(repo_end - p), p,
             sub[0] ? "/" : "", sub);
    struct slm_buf out = {0};
    bool first = true;
    int rc = slm_buf_puts(&out, "[");
    if (rc != 0 || append_entries(&out, dir, sub, &first) != 0) {
        slm_buf_free(&out);
        return send_text(c, 404, "application/json", "{\"error\":\"Repository not found\"}");
    }
    rc = slm_buf_puts(&out, "\n]\n");
    enum MHD_Result ret =
        send_text(c, rc == 0 ? 200 : 500, "application/json", rc == 0 ? slm_buf_cstr(&out) : "{}");
    slm_buf_free(&out);
    return ret;
}

/* ---------------------------------------------------------------- files */

struct body {
    int fd;
    uint64_t start; /* first byte served */
    uint64_t file_size;
    long long cut_after; /* body bytes before dropping the connection; -1 = never */
    bool corrupt;
    double t0;
};

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max) {
    struct body *b = cls;
    if (b->cut_after >= 0 && (long long)pos >= b->cut_after) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (b->cut_after >= 0 && (long long)(pos + max) > b->cut_after) {
        max = (size_t)(b->cut_after - (long long)pos);
    }
    if (g_opt.slow_bps > 0) {
        /* Hold the average rate at slow_bps. */
        max = SLM_MIN(max, (size_t)SLM_MAX(g_opt.slow_bps / 10, 1));
        double due = b->t0 + (double)pos / (double)g_opt.slow_bps;
        double now = slm_time_mono();
        if (due > now) {
            slm_sleep_ms((int64_t)((due - now) * 1000.0));
        }
    }
    ssize_t n = pread(b->fd, buf, max, (off_t)(b->start + pos));
    if (n <= 0) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    uint64_t mid = b->file_size / 2, off = b->start + pos;
    if (b->corrupt && mid >= off && mid < off + (uint64_t)n) {
        buf[mid - off] ^= 0x5a;
    }
    return n;
}

static void free_body(void *cls) {
    struct body *b = cls;
    close(b->fd);
    free(b);
}

/* "bytes=N-" or "bytes=N-M" into [from, to]; false when absent or malformed. */
static bool parse_range(const char *h, uint64_t size, uint64_t *from, uint64_t *to) {
    if (!h || strncmp(h, "bytes=", 6) != 0) {
        return false;
    }
    const char *dash = strchr(h + 6, '-');
    uint64_t a, b = size ? size - 1 : 0;
    if (!dash || slm_parse_u64(slm_str_n(h + 6, (size_t)(dash - h - 6)), &a) != SLM_OK) {
        return false;
    }
    if (dash[1] && slm_parse_u64(slm_str_c(dash + 1), &b) != SLM_OK) {
        return false;
    }
    *from = a;
    *to = SLM_MIN(b, size ? size - 1 : 0);
    return true;
}

static enum MHD_Result serve_file(struct MHD_Connection *c, const char *method, const char *url,
                                  const char *rel, const char *range) {
    pthread_mutex_lock(&g_lock);
    long n = ++g_downloads;
    bool fail = n <= g_opt.fail_first;
    bool cut = !fail && g_opt.truncate_after >= 0 && !g_truncated;
    if (cut) {
        g_truncated = true;
    }
    pthread_mutex_unlock(&g_lock);
    if (fail) {
        log_request(method, url, range, 503);
        return send_text(c, 503, "text/plain", "Service Unavailable (injected)\n");
    }
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", g_opt.root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        log_request(method, url, range, 404);
        return send_text(c, 404, "text/plain", "Entry not found\n");
    }
    uint64_t size = (uint64_t)st.st_size, from = 0, to = size ? size - 1 : 0;
    bool partial = !g_opt.ignore_range && parse_range(range, size, &from, &to);
    if (partial && (from >= size || from > to)) {
        close(fd);
        log_request(method, url, range, 416);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        char cr[64];
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
        MHD_add_response_header(r, "Content-Range", cr);
        enum MHD_Result ret = MHD_queue_response(c, 416, r);
        MHD_destroy_response(r);
        return ret;
    }
    uint64_t len = partial ? to - from + 1 : size;
    struct body *b = calloc(1, sizeof(*b));
    b->fd = fd;
    b->start = from;
    b->file_size = size;
    b->cut_after = cut ? g_opt.truncate_after : -1;
    b->corrupt = g_opt.corrupt;
    b->t0 = slm_time_mono();
    struct MHD_Response *r =
        MHD_create_response_from_callback(len, 64 * 1024, read_body, b, free_body);
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    MHD_add_response_header(r, "Accept-Ranges", g_opt.ignore_range ? "none" : "bytes");
    if (partial) {
        char cr[96];
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)from,
                 (unsigned long long)to, (unsigned long long)size);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    unsigned status = partial ? 206 : 200;
    log_request(method, url, range, status);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
    (void)cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    if (*state == NULL) {
        *state = c; /* headers only on the first call */
        return MHD_YES;
    }
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        log_request(method, url, range, 405);
        return send_text(c, 405, "text/plain", "Method Not Allowed\n");
    }
    if (g_opt.token) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        char want[512];
        snprintf(want, sizeof(want), "Bearer %s", g_opt.token);
        if (!auth || strcmp(auth, want) != 0) {
            log_request(method, url, range, 401);
            return send_text(c, 401, "application/json", "{\"error\":\"Invalid credentials\"}");
        }
    }
    if (!path_ok(url)) {
        log_request(method, url, range, 400);
        return send_text(c, 400, "text/plain", "Bad path\n");
    }
    if (strncmp(url, "/api/models/", 12) == 0) {
        enum MHD_Result r = serve_tree(c, url);
        log_request(method, url, range, 200);
        return r;
    }
    const char *rel = url + 1;
    if (strncmp(url, "/_cdn/", 6) == 0) {
        rel = url + 6;
    } else if (g_opt.redirect && strstr(url, "/resolve/main/")) {
        char loc[PATH_MAX];
        snprintf(loc, sizeof(loc), "/_cdn%s", url);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Location", loc);
        log_request(method, url, range, 302);
        enum MHD_Result ret = MHD_queue_response(c, 302, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strstr(rel, "/resolve/main/")) {
        log_request(method, url, range, 404);
        return send_text(c, 404, "text/plain", "Not Found\n");
    }
    return serve_file(c, method, url, rel, range);
}

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: fake_hf --root DIR [--port-file FILE] [--log FILE] [--fail-first N]\n"
                    "               [--truncate-after BYTES] [--corrupt] [--ignore-range]\n"
                    "               [--slow-bytes-per-sec N] [--redirect] [--token T]\n");
}

static bool num_arg(const char *flag, const char *v, long long *out) {
    int64_t x;
    if (!v || slm_parse_i64(slm_str_c(v), &x) != SLM_OK || x < 0) {
        fprintf(stderr, "fake_hf: %s expects a non-negative integer\n", flag);
        return false;
    }
    *out = x;
    return true;
}

static int write_port_file(const char *path, unsigned port) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return -1;
    }
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0) {
        return -1;
    }
    return rename(tmp, path);
}

int main(int argc, char **argv) {
    const char *root = NULL, *port_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (strcmp(a, "--root") == 0 && v) {
            root = v;
            i++;
        } else if (strcmp(a, "--port-file") == 0 && v) {
            port_file = v;
            i++;
        } else if (strcmp(a, "--log") == 0 && v) {
            g_opt.log_path = v;
            i++;
        } else if (strcmp(a, "--token") == 0 && v) {
            g_opt.token = v;
            i++;
        } else if (strcmp(a, "--fail-first") == 0) {
            if (!num_arg(a, v, &x)) {
                return 2;
            }
            g_opt.fail_first = (long)x;
            i++;
        } else if (strcmp(a, "--truncate-after") == 0) {
            if (!num_arg(a, v, &g_opt.truncate_after)) {
                return 2;
            }
            i++;
        } else if (strcmp(a, "--slow-bytes-per-sec") == 0) {
            if (!num_arg(a, v, &g_opt.slow_bps)) {
                return 2;
            }
            i++;
        } else if (strcmp(a, "--corrupt") == 0) {
            g_opt.corrupt = true;
        } else if (strcmp(a, "--ignore-range") == 0) {
            g_opt.ignore_range = true;
        } else if (strcmp(a, "--redirect") == 0) {
            g_opt.redirect = true;
        } else {
            usage();
            return 2;
        }
    }
    if (!root || !realpath(root, g_opt.root)) {
        usage();
        fprintf(stderr, "fake_hf: --root must be an existing folder\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fake_hf: cannot start the server on 127.0.0.1\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    printf("%u\n", port);
    fflush(stdout);
    if (port_file && write_port_file(port_file, port) != 0) {
        fprintf(stderr, "fake_hf: cannot write %s: %s\n", port_file, strerror(errno));
        MHD_stop_daemon(d);
        return 1;
    }
    while (!g_stop) {
        pause();
    }
    MHD_stop_daemon(d);
    return 0;
}
