/*
 * server/reply.c - replies: JSON bodies, errors in the shape each API's
 * clients expect (OpenAI {"error": {message, type, param, code}}, Ollama
 * {"error": "message"}), and the small formatting helpers the routes share.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm/json.h"
#include "slm/sys.h"

int srv_fail(struct srv_error *e, int rc, const struct slm_err *err) {
    const char *msg = err && err->msg[0] ? err->msg : slm_strerror(rc);
    e->param[0] = '\0';
    switch (rc) {
    case SLM_E_INVALID: return srv_error_set(e, rc, 400, "invalid_request_error", NULL, "%s", msg);
    case SLM_E_NOT_FOUND:
        return srv_error_set(e, rc, 404, "invalid_request_error", "model_not_found", "%s", msg);
    case SLM_E_OVERFLOW:
        return srv_error_set(e, rc, 400, "invalid_request_error", "context_length_exceeded", "%s",
                             msg);
    case SLM_E_LIMIT:
        srv_error_set(e, rc, 429, "rate_limit_error", "queue_full",
                      "the server is busy (%s); retry later", msg);
        e->retry_after = 1;
        return rc;
    case SLM_E_TOO_LARGE:
        return srv_error_set(e, rc, 413, "invalid_request_error", "request_too_large", "%s", msg);
    case SLM_E_UNSUPPORTED:
        return srv_error_set(e, rc, 400, "invalid_request_error", "unsupported", "%s", msg);
    case SLM_E_INCOMPLETE:
        return srv_error_set(e, rc, 422, "invalid_request_error", "output_incomplete", "%s", msg);
    case SLM_E_TIMEOUT: return srv_error_set(e, rc, 504, "server_error", "timeout", "%s", msg);
    case SLM_E_ABORTED:
        return srv_error_set(e, rc, 503, "server_error", "shutting_down", "%s", msg);
    case SLM_E_NOMEM:
        /* A model that does not fit (slm_mem_check's message names the numbers), or an
         * allocation that failed: the server is up, this request cannot be served. */
        return srv_error_set(e, rc, 503, "server_error", "insufficient_memory", "%s", msg);
    case SLM_E_UPSTREAM:
        return srv_error_set(e, rc, 502, "server_error", "upstream_error", "%s", msg);
    default: return srv_error_set(e, rc, 500, "server_error", NULL, "%s", msg);
    }
}

json_t *srv_error_json(enum srv_api api, const struct srv_error *e) {
    if (api == SRV_API_OLLAMA) {
        return json_pack("{s:s}", "error", e->msg);
    }
    return json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", e->msg, "type",
                     e->type ? e->type : "server_error", "param",
                     e->param[0] ? json_string(e->param) : json_null(), "code",
                     e->code ? json_string(e->code) : json_null());
}

void srv_add_common_headers(struct srv_conn *rc, struct MHD_Response *r) {
    MHD_add_response_header(r, "X-Request-Id", rc->id);
    if (rc->x_route[0]) {
        MHD_add_response_header(r, "x-slm-route", rc->x_route);
        if (rc->x_reason[0]) {
            MHD_add_response_header(r, "x-slm-reason", rc->x_reason);
        }
    }
}

static enum MHD_Result queue(struct srv_conn *rc, int status, struct MHD_Response *r) {
    if (!r) {
        return MHD_NO;
    }
    srv_add_common_headers(rc, r);
    rc->status = status;
    enum MHD_Result ok = MHD_queue_response(rc->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

enum MHD_Result srv_reply_text(struct srv_conn *rc, int status, const char *content_type,
                               const char *text, size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (r) {
        MHD_add_response_header(r, "Content-Type", content_type);
    }
    return queue(rc, status, r);
}

static int dump_cb(const char *p, size_t n, void *user) {
    return slm_buf_append(user, p, n) == SLM_OK ? 0 : -1;
}

int srv_json_dump(const json_t *v, struct slm_buf *out) {
    size_t len0 = out->len;
    if (!v || json_dump_callback(v, dump_cb, out,
                                 JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9)) != 0) {
        out->len = len0;
        if (out->ptr) {
            out->ptr[len0] = '\0';
        }
        return SLM_E_TOO_LARGE;
    }
    return SLM_OK;
}

enum MHD_Result srv_reply_json(struct srv_conn *rc, int status, json_t *body) {
    struct slm_buf b = {0};
    if (!body || srv_json_dump(body, &b) != SLM_OK || slm_buf_putc(&b, '\n') != SLM_OK) {
        json_decref(body);
        slm_buf_free(&b);
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}\n";
        return srv_reply_text(rc, 500, "application/json", oom, sizeof(oom) - 1);
    }
    json_decref(body);
    size_t len = b.len;
    char *p = slm_buf_take(&b);
    struct MHD_Response *r =
        p ? MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(p);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    return queue(rc, status, r);
}

enum MHD_Result srv_reply_error(struct srv_conn *rc, enum srv_api api, const struct srv_error *e) {
    json_t *body = srv_error_json(api, e);
    struct slm_buf b = {0};
    if (!body || srv_json_dump(body, &b) != SLM_OK || slm_buf_putc(&b, '\n') != SLM_OK) {
        json_decref(body);
        slm_buf_free(&b);
        return MHD_NO;
    }
    json_decref(body);
    size_t len = b.len;
    char *p = slm_buf_take(&b);
    struct MHD_Response *r =
        p ? MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(p);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (e->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", e->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    if (e->status == 401) {
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    }
    /* Client errors may quote the request: only at debug level. */
    SLM_LOG(e->status >= 500 ? SLM_LOG_WARN : SLM_LOG_DEBUG, "req=%s status=%d error=\"%s\"",
            rc->id, e->status, e->msg);
    return queue(rc, e->status, r);
}

int srv_conn_doc(struct srv_conn *rc, json_t **out, struct srv_error *e) {
    *out = NULL;
    if (!rc->doc_done) {
        struct slm_err err = {0};
        json_t *doc = NULL;
        rc->doc_done = true;
        if (slm_json_parse(slm_buf_cstr(&rc->body), rc->body.len, "request body", &doc, &err) !=
            SLM_OK) {
            srv_bad(&rc->doc_err, NULL, "%s", err.msg);
        } else if (!json_is_object(doc)) {
            json_decref(doc);
            srv_bad(&rc->doc_err, NULL, "the request body must be a JSON object");
        } else {
            rc->doc = doc;
        }
        slm_buf_free(&rc->body); /* the text is not needed again */
    }
    if (!rc->doc) {
        *e = rc->doc_err;
        return SLM_E_INVALID;
    }
    *out = json_incref(rc->doc);
    return SLM_OK;
}

/* ---------------------------------------------------------------- helpers */

json_t *srv_json_text(const char *p, size_t n) {
    if (!p) {
        return json_string("");
    }
    if (slm_utf8_valid(p, n)) {
        return json_stringn(p, n);
    }
    struct slm_buf b = {0};
    slm_buf_init(&b, n * 3 + 16);
    size_t i = 0;
    while (i < n) {
        size_t step = 1;
        /* The longest valid sequence (1..4 bytes) starting here, if any. */
        for (size_t k = 4; k >= 1; k--) {
            if (i + k <= n && slm_utf8_valid(p + i, k)) {
                step = k;
                break;
            }
        }
        if (step == 1 && !slm_utf8_valid(p + i, 1)) {
            if (slm_buf_puts(&b, "\xef\xbf\xbd") != SLM_OK) {
                break;
            }
        } else if (slm_buf_append(&b, p + i, step) != SLM_OK) {
            break;
        }
        i += step;
    }
    json_t *v = json_stringn(slm_buf_cstr(&b), b.len);
    slm_buf_free(&b);
    return v;
}

void srv_make_id(const char *prefix, char *out, size_t cap) {
    uint8_t bytes[12];
    if (slm_random_bytes(bytes, sizeof(bytes)) != 0) {
        /* Not a secret: uniqueness is all that matters. */
        uint64_t t = (uint64_t)slm_time_unix_ms() ^ ((uint64_t)(uintptr_t)out << 16);
        for (size_t i = 0; i < sizeof(bytes); i++) {
            bytes[i] = (uint8_t)(t >> ((i % 8) * 8)) ^ (uint8_t)(i * 131);
        }
    }
    char hex[2 * sizeof(bytes) + 1];
    slm_hex_encode(bytes, sizeof(bytes), hex);
    snprintf(out, cap, "%s%s", prefix, hex);
}

void srv_format_time(int64_t unix_ms, char *out, size_t cap) {
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03d000000Z", base, (int)(unix_ms % 1000));
}

void srv_format_params(uint64_t n, char *out, size_t cap) {
    if (n >= 1000000000ull) {
        snprintf(out, cap, "%.2fB", (double)n / 1e9);
    } else if (n >= 1000000ull) {
        snprintf(out, cap, "%.2fM", (double)n / 1e6);
    } else if (n >= 1000ull) {
        snprintf(out, cap, "%.2fK", (double)n / 1e3);
    } else {
        snprintf(out, cap, "%llu", (unsigned long long)n);
    }
}
