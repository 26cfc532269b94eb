/*
 * router/upstream_http.c - one HTTP exchange with an upstream over libcurl's multi interface,
 * so the transfer can be cancelled within a few milliseconds of `cancel` being set (the easy
 * interface's progress callback may go a second between calls on an idle connection).
 *
 * The body is collected into a capped buffer and the Retry-After header is kept; nothing is
 * interpreted here beyond classifying how the exchange ended. Thread-safe: every call has its
 * own handles.
 */
#include "router/upstream_internal.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void slm__up_curl_init(void) {
    pthread_once(&g_curl_once, curl_init_once);
}

struct sink {
    struct slm__up_exchange *x;
    bool too_large;
};

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    struct sink *s = user;
    if (slm_buf_append(&s->x->body, p, size * n) != SLM_OK) {
        s->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *user) {
    struct sink *s = user;
    struct slm_str line = slm_str_n(p, size * n);
    struct slm_str name = SLM_STR("retry-after:");
    if (line.len > name.len && slm_str_eq_nocase(slm_str_sub(line, 0, name.len), name)) {
        struct slm_str v = slm_str_sub(line, name.len, line.len - name.len);
        s->x->retry_after_s = slm_upstream_parse_retry_after(v.ptr, v.len, (double)time(NULL));
    } else if (line.len >= 5 && memcmp(line.ptr, "HTTP/", 5) == 0) {
        s->x->retry_after_s = -1.0; /* a new response (after a 100 Continue): forget the old */
    }
    return size * n;
}

static enum slm__up_outcome classify(CURLcode rc, bool too_large) {
    switch (rc) {
    case CURLE_OK: return SLM__UP_HTTP;
    case CURLE_OPERATION_TIMEDOUT: return SLM__UP_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return SLM__UP_REFUSED;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE: return SLM__UP_RESET;
    case CURLE_WRITE_ERROR: return too_large ? SLM__UP_TOO_LARGE : SLM__UP_ERROR;
    default: return SLM__UP_ERROR;
    }
}

static struct curl_slist *make_headers(const char *api_key, bool has_body) {
    struct curl_slist *h = NULL, *t;
    if (has_body && (t = curl_slist_append(h, "Content-Type: application/json")) != NULL) {
        h = t;
    }
    if ((t = curl_slist_append(h, "Accept: application/json")) != NULL) {
        h = t;
    }
    if ((t = curl_slist_append(h, "Expect:")) != NULL) { /* no 100-continue round trip */
        h = t;
    }
    if (api_key && api_key[0]) {
        struct slm_buf auth = {0};
        if (slm_buf_printf(&auth, "Authorization: Bearer %s", api_key) == SLM_OK &&
            (t = curl_slist_append(h, auth.ptr)) != NULL) {
            h = t;
        }
        /* The key must not linger in freed memory longer than needed. */
        if (auth.ptr) {
            memset(auth.ptr, 0, auth.len);
        }
        slm_buf_free(&auth);
    }
    return h;
}

struct slm__up_conn {
    CURLM *multi; /* owns the connection cache */
    CURL *easy;
};

struct slm__up_conn *slm__up_conn_new(void) {
    slm__up_curl_init();
    struct slm__up_conn *c = calloc(1, sizeof(*c));
    if (c && (c->multi = curl_multi_init()) != NULL && (c->easy = curl_easy_init()) != NULL) {
        return c;
    }
    slm__up_conn_free(c);
    return NULL;
}

void slm__up_conn_free(struct slm__up_conn *c) {
    if (!c) {
        return;
    }
    if (c->easy) {
        curl_easy_cleanup(c->easy);
    }
    if (c->multi) {
        curl_multi_cleanup(c->multi);
    }
    free(c);
}

/* Drives the transfer, polling `cancel`; returns the easy handle's result. */
static CURLcode run(struct slm__up_conn *c, const volatile int *cancel, bool *aborted) {
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) {
        return CURLE_OUT_OF_MEMORY;
    }
    CURLcode result = CURLE_OK;
    int running = 1;
    while (running) {
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
            result = CURLE_RECV_ERROR;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *msg = curl_multi_info_read(c->multi, &left);
            result = msg && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_RECV_ERROR;
            break;
        }
        if (cancel && *cancel) {
            *aborted = true;
            result = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        curl_multi_poll(c->multi, NULL, 0, 20, NULL);
    }
    curl_multi_remove_handle(c->multi, c->easy);
    return result;
}

void slm__up_http(struct slm__up_conn *conn, const char *url, const char *api_key, const char *body,
                  size_t body_len, double timeout_s, const volatile int *cancel,
                  struct slm__up_exchange *x) {
    memset(x, 0, sizeof(*x));
    slm_buf_init(&x->body, SLM_UPSTREAM_MAX_REPLY);
    x->retry_after_s = -1.0;
    struct slm__up_conn *own = conn ? NULL : slm__up_conn_new();
    struct slm__up_conn *c = conn ? conn : own;
    if (!c) {
        x->outcome = SLM__UP_ERROR;
        snprintf(x->detail, sizeof(x->detail), "cannot create a libcurl handle");
        return;
    }
    CURL *h = c->easy;
    curl_easy_reset(h); /* keeps the connection cache, drops the previous request's options */
    struct sink s = {x, false};
    struct curl_slist *headers = make_headers(api_key, body != NULL);
    char errbuf[CURL_ERROR_SIZE] = "";
    long ms = (long)(timeout_s * 1000.0);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)SLM_UPSTREAM_MAX_REPLY);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    bool aborted = false;
    CURLcode rc = run(c, cancel, &aborted);
    x->outcome = aborted ? SLM__UP_ABORTED : classify(rc, s.too_large);
    if (rc == CURLE_FILESIZE_EXCEEDED) {
        x->outcome = SLM__UP_TOO_LARGE;
    }
    if (x->outcome == SLM__UP_HTTP) {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        x->status = (int)code;
    } else if (x->outcome == SLM__UP_ERROR) {
        snprintf(x->detail, sizeof(x->detail), "%.120s",
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    slm__up_conn_free(own);
}
