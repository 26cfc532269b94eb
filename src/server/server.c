/*
 * server/server.c - the HTTP server: a libmicrohttpd daemon with one thread
 * per connection (capped), request bodies read into capped buffers,
 * authentication, routing to the OpenAI and Ollama handlers, one log line
 * per request and the metrics that go with it.
 *
 * The listening socket is made here (not by libmicrohttpd) so that a bind
 * failure says exactly why, and port 0 can report the port it got.
 *
 * Threads: the daemon's listener thread accepts; each connection gets a
 * thread that runs on_access() and, for streamed replies, the content reader
 * in stream.c. Shared state (store, caches) is behind store_lock; counters
 * are in metrics.c. Threads in long waits look at `stopping` every
 * SRV_POLL_MS, so slm_server_close() returns promptly.
 */
#include "server/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/headers.h"
#include "slm/json.h"
#include "slm/router.h"
#include "slm/sys.h"

struct slm_server_params slm_server_params_default(void) {
    struct slm_server_params p;
    memset(&p, 0, sizeof(p));
    p.host = "127.0.0.1";
    p.port = SLM_SERVER_DEFAULT_PORT;
    p.max_body = SRV_DEFAULT_MAX_BODY;
    p.max_body_total = SRV_DEFAULT_MAX_BODY_TOTAL;
    p.max_connections = SRV_DEFAULT_MAX_CONNECTIONS;
    p.max_client_connections = SRV_DEFAULT_MAX_CLIENT_CONNECTIONS;
    p.header_timeout = SRV_DEFAULT_HEADER_TIMEOUT;
    p.max_tokens = SLM_SERVER_DEFAULT_MAX_TOKENS;
    p.request_timeout = SLM_SERVER_DEFAULT_TIMEOUT;
    p.grammar_budget = SLM_SERVER_DEFAULT_GRAMMAR_BUDGET;
    return p;
}

/* ---------------------------------------------------------------- shared caches */

void srv_model_facts_free(struct srv_model_facts *f) {
    free(f->chat_template);
    f->chat_template = NULL;
}

int srv_model_facts(struct slm_server *s, const char *path, struct srv_model_facts *out,
                    struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    int64_t mtime = slm_file_size(path); /* size stands in for a change stamp */
    int rc = SLM_OK;
    pthread_mutex_lock(&s->store_lock);
    size_t i = 0;
    while (i < s->n_facts && (strcmp(s->facts[i].path, path) != 0 || s->facts[i].mtime != mtime)) {
        i++;
    }
    if (i == s->n_facts) {
        struct slm_model_info info;
        struct slm_buf tmpl = {0};
        slm_buf_init(&tmpl, (size_t)1 << 20);
        rc = slm_gguf_read_info(path, &info, &tmpl, err);
        if (rc == SLM_OK) {
            i = s->n_facts < SLM_ARRAY_LEN(s->facts) ? s->n_facts++
                                                     : s->next_fact++ % SLM_ARRAY_LEN(s->facts);
            srv_model_facts_free(&s->facts[i].f);
            snprintf(s->facts[i].path, sizeof(s->facts[i].path), "%s", path);
            s->facts[i].mtime = mtime;
            s->facts[i].f.info = info;
            s->facts[i].f.chat_template = slm_buf_take(&tmpl);
        }
        slm_buf_free(&tmpl);
    }
    if (rc == SLM_OK) {
        out->info = s->facts[i].f.info;
        out->chat_template = strdup(s->facts[i].f.chat_template ? s->facts[i].f.chat_template : "");
        rc = out->chat_template ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pthread_mutex_unlock(&s->store_lock);
    return rc;
}

void srv_note_name(struct slm_server *s, const char *path, const char *name, const char *digest) {
    pthread_mutex_lock(&s->store_lock);
    size_t i = 0;
    while (i < s->n_names && strcmp(s->names[i].path, path) != 0) {
        i++;
    }
    if (i == s->n_names) {
        i = s->n_names < SLM_ARRAY_LEN(s->names) ? s->n_names++
                                                 : s->next_name++ % SLM_ARRAY_LEN(s->names);
    }
    snprintf(s->names[i].path, sizeof(s->names[i].path), "%s", path);
    snprintf(s->names[i].name, sizeof(s->names[i].name), "%s", name);
    snprintf(s->names[i].digest, sizeof(s->names[i].digest), "%s", digest ? digest : "");
    pthread_mutex_unlock(&s->store_lock);
}

bool srv_lookup_name(struct slm_server *s, const char *path, struct srv_loaded_name *out) {
    bool found = false;
    pthread_mutex_lock(&s->store_lock);
    for (size_t i = 0; i < s->n_names && !found; i++) {
        if (strcmp(s->names[i].path, path) == 0) {
            *out = s->names[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&s->store_lock);
    return found;
}

/* ---------------------------------------------------------------- connections */

/* A peer that shut down its sending side reads as gone: HTTP clients do not
 * half-close while they wait for an answer. */
bool srv_client_gone(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) {
        return true;
    }
    struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) <= 0) {
        return false;
    }
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) {
        return true;
    }
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Whether an address is on the loopback interface: 127.0.0.0/8, ::1, and
 * 127.0.0.0/8 mapped into IPv6 (::ffff:127.x.y.z). */
bool srv_addr_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* Whether every address `host` resolves to is a loopback address. The name
 * is resolved, never read: "127.example.com" is whatever DNS says it is. */
static int host_is_loopback(const char *host, bool *loopback, struct slm_err *err) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0) {
        return slm_err_set(err, SLM_E_INVALID, "cannot resolve host '%s': %s", host,
                           gai_strerror(g));
    }
    bool all = res != NULL;
    for (const struct addrinfo *ai = res; ai && all; ai = ai->ai_next) {
        all = srv_addr_is_loopback(ai->ai_addr);
    }
    freeaddrinfo(res);
    *loopback = all;
    return SLM_OK;
}

/* Whether the request carries our API key (server/headers.h). */
static bool authorized(struct slm_server *s, struct MHD_Connection *c) {
    return !s->api_key ||
           srv_api_key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                          MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key"), s->api_key);
}

/* ---------------------------------------------------------------- routing */

enum route_kind {
    RK_ROOT,
    RK_HEALTH,
    RK_METRICS,
    RK_MODELS,
    RK_GEN,
    RK_TAGS,
    RK_SHOW,
    RK_PS,
    RK_VERSION,
    RK_PULL,
    RK_CREATE,
    RK_COPY,
    RK_DELETE,
    RK_LORA,
};

struct route {
    const char *method;
    const char *path;
    enum route_kind kind;
    enum srv_route_id gen; /* RK_GEN */
    enum srv_api api;
    bool prefix;
    bool open; /* no authentication */
};

static const struct route g_routes[] = {
    {"GET", "/", RK_ROOT, 0, SRV_API_PLAIN, false, true},
    {"HEAD", "/", RK_ROOT, 0, SRV_API_PLAIN, false, true},
    {"GET", "/health", RK_HEALTH, 0, SRV_API_PLAIN, false, true},
    {"GET", "/metrics", RK_METRICS, 0, SRV_API_OPENAI, false, false},
    {"GET", "/v1/models", RK_MODELS, 0, SRV_API_OPENAI, false, false},
    {"GET", "/v1/models/", RK_MODELS, 0, SRV_API_OPENAI, true, false},
    {"POST", "/v1/chat/completions", RK_GEN, SRV_R_OPENAI_CHAT, SRV_API_OPENAI, false, false},
    {"POST", "/v1/completions", RK_GEN, SRV_R_OPENAI_COMPLETIONS, SRV_API_OPENAI, false, false},
    {"POST", "/v1/embeddings", RK_GEN, SRV_R_OPENAI_EMBEDDINGS, SRV_API_OPENAI, false, false},
    {"POST", "/api/chat", RK_GEN, SRV_R_OLLAMA_CHAT, SRV_API_OLLAMA, false, false},
    {"POST", "/api/generate", RK_GEN, SRV_R_OLLAMA_GENERATE, SRV_API_OLLAMA, false, false},
    {"POST", "/api/embed", RK_GEN, SRV_R_OLLAMA_EMBED, SRV_API_OLLAMA, false, false},
    {"POST", "/api/embeddings", RK_GEN, SRV_R_OLLAMA_EMBEDDINGS, SRV_API_OLLAMA, false, false},
    {"GET", "/api/tags", RK_TAGS, 0, SRV_API_OLLAMA, false, false},
    {"POST", "/api/show", RK_SHOW, 0, SRV_API_OLLAMA, false, false},
    {"GET", "/api/ps", RK_PS, 0, SRV_API_OLLAMA, false, false},
    {"GET", "/api/version", RK_VERSION, 0, SRV_API_OLLAMA, false, false},
    {"POST", "/api/pull", RK_PULL, 0, SRV_API_OLLAMA, false, false},
    {"POST", "/api/create", RK_CREATE, 0, SRV_API_OLLAMA, false, false},
    {"POST", "/api/copy", RK_COPY, 0, SRV_API_OLLAMA, false, false},
    {"DELETE", "/api/delete", RK_DELETE, 0, SRV_API_OLLAMA, false, false},
    {"GET", "/lora-adapters", RK_LORA, 0, SRV_API_OPENAI, false, false},
    {"POST", "/infill", RK_GEN, SRV_R_LLAMA_INFILL, SRV_API_OPENAI, false, false},
};

/* The route for method+url; *path_known says whether some method serves it. */
static const struct route *find_route(const char *method, const char *url, bool *path_known) {
    *path_known = false;
    for (size_t i = 0; i < SLM_ARRAY_LEN(g_routes); i++) {
        const struct route *r = &g_routes[i];
        bool match = r->prefix ? strncmp(url, r->path, strlen(r->path)) == 0 && url[strlen(r->path)]
                               : strcmp(url, r->path) == 0;
        if (!match) {
            continue;
        }
        *path_known = true;
        if (strcmp(method, r->method) == 0) {
            return r;
        }
    }
    return NULL;
}

static enum srv_api api_of_url(const char *url) {
    return strncmp(url, "/api/", 5) == 0 ? SRV_API_OLLAMA : SRV_API_OPENAI;
}

/* GET /lora-adapters: the --lora adapters as llama-server lists its own. */
static enum MHD_Result lora_adapters(struct srv_conn *rc) {
    const struct slm_server *s = rc->srv;
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->n_lora; i++) {
        if (json_array_append_new(a, json_pack("{s:I,s:s,s:f,s:s,s:s}", "id", (json_int_t)i, "path",
                                               s->lora[i].path, "scale", (double)s->lora[i].scale,
                                               "task_name", "", "prompt_prefix", "")) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return srv_reply_json(rc, 200, a);
}

static enum MHD_Result dispatch(struct srv_conn *rc, const struct route *r, const char *url) {
    switch (r->kind) {
    case RK_ROOT: {
        static const char msg[] = "slm is running\n";
        return srv_reply_text(rc, 200, "text/plain; charset=utf-8", msg, sizeof(msg) - 1);
    }
    case RK_HEALTH: return srv_reply_json(rc, 200, json_pack("{s:s}", "status", "ok"));
    case RK_METRICS: return srv_metrics_route(rc);
    case RK_MODELS: return srv_openai_models(rc, r->prefix ? url + strlen(r->path) : NULL);
    case RK_GEN:
        if (r->gen == SRV_R_OPENAI_EMBEDDINGS || r->gen == SRV_R_OLLAMA_EMBED ||
            r->gen == SRV_R_OLLAMA_EMBEDDINGS) {
            return srv_embed(rc, r->gen);
        }
        if (rc->srv->p.router && (r->gen == SRV_R_OPENAI_CHAT || r->gen == SRV_R_OLLAMA_CHAT ||
                                  r->gen == SRV_R_OLLAMA_GENERATE)) {
            bool handled = false;
            enum MHD_Result res = r->gen == SRV_R_OPENAI_CHAT
                                      ? srv_router_chat(rc, &handled)
                                      : srv_router_ollama(rc, r->gen, &handled);
            if (handled) {
                return res;
            }
        }
        if (r->gen == SRV_R_LLAMA_INFILL) {
            return srv_llama_infill(rc);
        }
        return r->api == SRV_API_OLLAMA ? srv_ollama_generate(rc, r->gen)
                                        : srv_openai_generate(rc, r->gen);
    case RK_TAGS: return srv_ollama_tags(rc);
    case RK_SHOW: return srv_ollama_show(rc);
    case RK_PS: return srv_ollama_ps(rc);
    case RK_VERSION: return srv_ollama_version(rc);
    case RK_PULL: return srv_ollama_pull(rc);
    case RK_CREATE: return srv_ollama_create(rc);
    case RK_COPY: return srv_ollama_copy(rc);
    case RK_DELETE: return srv_ollama_delete(rc);
    case RK_LORA: return lora_adapters(rc);
    }
    return MHD_NO;
}

/* ---------------------------------------------------------------- MHD callbacks */

static struct srv_conn *conn_new(struct slm_server *s, struct MHD_Connection *c) {
    struct srv_conn *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        return NULL;
    }
    rc->srv = s;
    rc->conn = c;
    rc->t0 = slm_time_mono();
    slm_buf_init(&rc->body, s->p.max_body);
    uint64_t n = atomic_fetch_add(&s->next_id, 1);
    snprintf(rc->id, sizeof(rc->id), "%06llx", (unsigned long long)(n & 0xffffffffffull));
    srv_metrics_inflight(s->metrics, 1);
    atomic_fetch_add(&s->active, 1);
    return rc;
}

/* Takes n more bytes of the server's body budget for rc; false past it. */
static bool body_reserve(struct srv_conn *rc, size_t n) {
    struct slm_server *s = rc->srv;
    size_t cur = atomic_load(&s->body_bytes);
    do {
        if (n > s->p.max_body_total - SLM_MIN(cur, s->p.max_body_total)) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(&s->body_bytes, &cur, cur + n));
    rc->reserved += n;
    return true;
}

static enum MHD_Result reply_over_budget(struct srv_conn *rc) {
    struct srv_error e = {0};
    srv_metrics_reject(rc->srv->metrics, "body_budget");
    srv_error_set(&e, SLM_E_LIMIT, 503, "server_error", "server_busy",
                  "the server holds as many request bodies as it may (slm serve "
                  "--max-body-total); retry later");
    e.retry_after = 1;
    return srv_reply_error(rc, rc->api, &e);
}

/* Checks that can answer before the body is read: route, auth, size, and the
 * bytes of bodies in flight. */
static enum MHD_Result early_checks(struct srv_conn *rc, const char *method, const char *url,
                                    bool *answered) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    bool known;
    const struct route *r = find_route(method, url, &known);
    rc->api = r ? r->api : api_of_url(url);
    rc->route = r ? r->path : "other";
    *answered = true;
    if (!r) {
        srv_error_set(&e, SLM_E_NOT_FOUND, known ? 405 : 404, "invalid_request_error",
                      known ? "method_not_allowed" : "not_found",
                      known ? "%s is not allowed on %s" : "no route for %s %s", method, url);
        return srv_reply_error(rc, rc->api, &e);
    }
    if (s->local_only) {
        const char *host = MHD_lookup_connection_value(rc->conn, MHD_HEADER_KIND, "Host");
        const char *origin = MHD_lookup_connection_value(rc->conn, MHD_HEADER_KIND, "Origin");
        bool host_ok = srv_host_is_local(host, s->hostname);
        if (!host_ok || (origin && !srv_origin_is_local(origin, s->hostname))) {
            srv_metrics_reject(s->metrics, host_ok ? "foreign_origin" : "foreign_host");
            srv_error_set(&e, SLM_E_INVALID, 403, "invalid_request_error",
                          host_ok ? "origin_not_allowed" : "host_not_allowed",
                          host_ok ? "requests from web pages of other sites are refused on a "
                                    "server without an API key (slm serve --api-key)"
                                  : "this server answers only requests addressed to localhost "
                                    "or 127.0.0.1 (it has no API key; slm serve --api-key)");
            return srv_reply_error(rc, rc->api, &e);
        }
    }
    if (!r->open && !authorized(s, rc->conn)) {
        srv_metrics_reject(s->metrics, "unauthorized");
        srv_error_set(&e, SLM_E_INVALID, 401, "invalid_request_error", "invalid_api_key",
                      "missing or wrong API key: send 'Authorization: Bearer <key>'");
        return srv_reply_error(rc, rc->api, &e);
    }
    const char *cl = MHD_lookup_connection_value(rc->conn, MHD_HEADER_KIND, "Content-Length");
    uint64_t len;
    if (cl && srv_content_length(cl, &len) == SLM_OK && len > s->p.max_body) {
        srv_metrics_reject(s->metrics, "body_too_large");
        srv_error_set(&e, SLM_E_TOO_LARGE, 413, "invalid_request_error", "request_too_large",
                      "the request body is %llu bytes; this server accepts at most %zu "
                      "(slm serve --max-body)",
                      (unsigned long long)len, s->p.max_body);
        return srv_reply_error(rc, rc->api, &e);
    }
    if (cl && srv_content_length(cl, &len) == SLM_OK && len > 0 && !body_reserve(rc, (size_t)len)) {
        return reply_over_budget(rc);
    }
    *answered = false;
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
    (void)version;
    struct slm_server *s = cls;
    struct srv_conn *rc = *con_cls;
    if (!rc) {
        rc = conn_new(s, c);
        if (!rc) {
            return MHD_NO;
        }
        *con_cls = rc;
        srv_conns_request(s->conns, c, true);
        bool answered;
        enum MHD_Result ok = early_checks(rc, method, url, &answered);
        return answered ? ok : MHD_YES;
    }
    if (rc->status) {
        *upload_size = 0; /* already answered (413, 401): drop the body */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t want = rc->body.len + *upload_size;
        if (!rc->too_large && !rc->over_budget && want > rc->reserved &&
            !body_reserve(rc, want - rc->reserved)) {
            rc->over_budget = true; /* a body without Content-Length that grew past it */
            slm_buf_free(&rc->body);
        }
        if (!rc->too_large && !rc->over_budget &&
            slm_buf_append(&rc->body, upload, *upload_size) != SLM_OK) {
            rc->too_large = true;
            slm_buf_free(&rc->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rc->over_budget) {
        return reply_over_budget(rc);
    }
    if (rc->too_large) {
        struct srv_error e = {0};
        srv_metrics_reject(s->metrics, "body_too_large");
        srv_error_set(&e, SLM_E_TOO_LARGE, 413, "invalid_request_error", "request_too_large",
                      "the request body is larger than %zu bytes (slm serve --max-body)",
                      s->p.max_body);
        return srv_reply_error(rc, rc->api, &e);
    }
    bool known;
    const struct route *r = find_route(method, url, &known);
    return dispatch(rc, r, url);
}

/* A value from the request (the model name) as one key=value field: as is
 * when it is a plain name, else quoted with " and \ escaped, so that it
 * cannot forge other fields (slm_log_write escapes control bytes). */
static void log_field(const char *in, char *out, size_t cap) {
    bool plain = in[0] != '\0';
    for (const char *p = in; *p && plain; p++) {
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("._:/+-@", *p);
    }
    if (plain) {
        snprintf(out, cap, "%s", in);
        return;
    }
    size_t o = 0;
    out[o++] = '"';
    for (const char *p = in; *p && o + 3 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
        }
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = '\0';
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    (void)socket_context;
    struct slm_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED && s->conns) {
        srv_conns_closed(s->conns, c);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    struct slm_server *s = cls;
    struct srv_conn *rc = *con_cls;
    if (!rc) {
        return;
    }
    double dt = slm_time_mono() - rc->t0;
    int status = rc->status ? rc->status : 499; /* no reply: the client left */
    srv_metrics_request(s->metrics, rc->route ? rc->route : "other", status, dt);
    srv_metrics_inflight(s->metrics, -1);
    char model[2 * sizeof(rc->model) + 3];
    log_field(rc->model[0] ? rc->model : "-", model, sizeof(model));
    SLM_LOG(SLM_LOG_INFO,
            "req=%s route=%s status=%d model=%s prompt_tokens=%d gen_tokens=%d ms=%.1f%s", rc->id,
            rc->route ? rc->route : "other", status, model, rc->prompt_tokens, rc->gen_tokens,
            dt * 1e3, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    slm_buf_free(&rc->body);
    json_decref(rc->doc);
    atomic_fetch_sub(&s->body_bytes, rc->reserved);
    free(rc);
    *con_cls = NULL;
    srv_conns_request(s->conns, c, false);
    atomic_fetch_sub(&s->active, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) SLM_PRINTF(2, 0);

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    if (slm__log_level < SLM_LOG_DEBUG) {
        return;
    }
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    slm_log_write(SLM_LOG_DEBUG, "microhttpd: %s", line);
}

/* ---------------------------------------------------------------- open / close */

static int listen_socket(const char *host, uint16_t port, int *fd_out, bool *v6,
                         struct slm_err *err) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    int g = getaddrinfo(host, service, &hints, &res);
    if (g != 0) {
        return slm_err_set(err, SLM_E_INVALID, "cannot resolve host '%s': %s", host,
                           gai_strerror(g));
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = slm_socket_cloexec(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) {
            *v6 = ai->ai_family == AF_INET6;
            break;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return slm_err_set(
            err, SLM_E_IO, "cannot listen on %s:%u: %s%s", host, port, strerror(saved),
            saved == EADDRINUSE ? " (another server is running there? try --port)" : "");
    }
    *fd_out = fd;
    return SLM_OK;
}

static uint16_t bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int check_backend(const struct slm_server_backend *b, struct slm_err *err) {
    bool ok = b->acquire && b->release && b->adapter && b->submit && b->read && b->result &&
              b->embedding && b->cancel && b->request_free && b->list;
    return ok ? SLM_OK : slm_err_set(err, SLM_E_INVALID, "server: the backend is incomplete");
}

static int load_templates(struct slm_server *s, struct slm_err *err) {
    struct slm_liquid_params lp = slm_liquid_params_default();
    if (s->p.tool_template) {
        int rc = slm_liquid_parse_file(s->p.tool_template, &lp, &s->tool_tmpl, err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    const struct slm_tool_family *f = slm_tool_families();
    for (size_t i = 0; i < SLM_ARRAY_LEN(s->family_tmpl) && f[i].name; i++) {
        char name[64];
        snprintf(name, sizeof(name), "templates/tools/%s.liquid", f[i].name);
        int rc = slm_liquid_parse(name, f[i].template_src, strlen(f[i].template_src), &lp,
                                  &s->family_tmpl[i], err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int start_daemon(struct slm_server *s, struct slm_err *err) {
    int fd = -1;
    bool v6 = false;
    int rc = listen_socket(s->host, s->p.port, &fd, &v6, err);
    if (rc != SLM_OK) {
        return rc;
    }
    s->port = bound_port(fd);
    /* We accept (conns.c) and hand libmicrohttpd the connections within the
     * limits; its own limit is only a backstop above ours. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET |
                     (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->p.max_connections + 64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)128 << 10, MHD_OPTION_END);
    if (!s->daemon) {
        close(fd);
        return slm_err_set(err, SLM_E_IO, "cannot start the HTTP server on %s:%u", s->host,
                           s->port);
    }
    rc = srv_conns_start(s, fd, &s->conns, err);
    if (rc != SLM_OK) {
        close(fd);
    }
    return rc;
}

int slm_server_open(const struct slm_server_params *params, struct slm_server **out,
                    struct slm_err *err) {
    *out = NULL;
    struct slm_server_params p = params ? *params : slm_server_params_default();
    const char *host = p.host ? p.host : "127.0.0.1";
    bool keyed = p.api_key && p.api_key[0];
    bool local = true;
    int lrc = keyed || p.insecure ? SLM_OK : host_is_loopback(host, &local, err);
    if (lrc != SLM_OK) {
        return lrc;
    }
    if (!keyed && !p.insecure && !local) {
        return slm_err_set(err, SLM_E_INVALID,
                           "refusing to serve on %s without an API key: it is not (only) a "
                           "loopback address; give --api-key (or SLM_API_KEY), or --insecure "
                           "to serve without one",
                           host);
    }
    int rc = check_backend(&p.backend, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_server *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    p.max_body = p.max_body ? p.max_body : SRV_DEFAULT_MAX_BODY;
    p.max_connections = p.max_connections ? p.max_connections : SRV_DEFAULT_MAX_CONNECTIONS;
    p.max_client_connections =
        p.max_client_connections ? p.max_client_connections : SRV_DEFAULT_MAX_CLIENT_CONNECTIONS;
    p.header_timeout = p.header_timeout > 0 ? p.header_timeout : SRV_DEFAULT_HEADER_TIMEOUT;
    p.max_body_total =
        SLM_MAX(p.max_body_total ? p.max_body_total : SRV_DEFAULT_MAX_BODY_TOTAL, p.max_body);
    s->p = p;
    s->local_only = !keyed && !p.insecure;
    if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0) {
        s->hostname[0] = '\0';
    }
    pthread_mutex_init(&s->store_lock, NULL);
    srv_watcher_init(&s->watcher);
    s->host = strdup(host);
    s->api_key = keyed ? strdup(p.api_key) : NULL;
    s->p.host = s->host;
    s->p.api_key = s->api_key;
    s->p.tool_template = NULL; /* not kept: parsed below */
    s->p.lora = NULL;          /* copied below */
    s->p.n_lora = 0;
    s->lora = p.n_lora ? calloc(p.n_lora, sizeof(*s->lora)) : NULL;
    for (size_t i = 0; s->lora && i < p.n_lora; i++) {
        s->lora[i].scale = p.lora[i].scale;
        s->lora[i].path = strdup(p.lora[i].path);
        s->n_lora += s->lora[i].path != NULL;
    }
    s->p.store_home = NULL;
    atomic_init(&s->stopping, false);
    atomic_init(&s->next_id, 1);
    atomic_init(&s->active, 0);
    atomic_init(&s->body_bytes, 0);
    if (!s->host || (keyed && !s->api_key) || s->n_lora != p.n_lora ||
        srv_metrics_init(&s->metrics) != SLM_OK) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK) {
        rc = slm_store_open(p.store_home, &s->store, err);
    }
    if (rc == SLM_OK) {
        s->p.tool_template = p.tool_template;
        rc = load_templates(s, err);
        s->p.tool_template = NULL;
    }
    if (rc == SLM_OK) {
        rc = start_daemon(s, err);
    }
    if (rc != SLM_OK) {
        slm_server_close(s);
        return rc;
    }
    *out = s;
    return SLM_OK;
}

uint16_t slm_server_port(const struct slm_server *s) {
    return s->port;
}

size_t slm_server_url(const struct slm_server *s, char *out, size_t cap) {
    bool v6 = strchr(s->host, ':') != NULL;
    int n = snprintf(out, cap, v6 ? "http://[%s]:%u" : "http://%s:%u", s->host, s->port);
    return n < 0 ? 0 : (size_t)n;
}

void slm_server_close(struct slm_server *s) {
    if (!s) {
        return;
    }
    atomic_store(&s->stopping, true);
    if (s->daemon) {
        /* Stop accepting, let the requests in flight see `stopping` and end
         * their replies (streams get a last error event, waiting clients a
         * 503), then stop: that joins every connection thread. */
        srv_conns_stop(s->conns);
        double t0 = slm_time_mono();
        while (atomic_load(&s->active) > 0 && slm_time_mono() - t0 < 5.0) {
            slm_sleep_ms(10);
        }
        MHD_stop_daemon(s->daemon);
    }
    srv_watcher_free(&s->watcher);
    srv_conns_free(s->conns);
    slm_liquid_free(s->tool_tmpl);
    for (size_t i = 0; i < SLM_ARRAY_LEN(s->family_tmpl); i++) {
        slm_liquid_free(s->family_tmpl[i]);
    }
    for (size_t i = 0; i < s->n_facts; i++) {
        srv_model_facts_free(&s->facts[i].f);
    }
    slm_store_close(s->store);
    srv_metrics_free(s->metrics);
    pthread_mutex_destroy(&s->store_lock);
    for (size_t i = 0; i < s->n_lora; i++) {
        free((char *)s->lora[i].path);
    }
    free(s->lora);
    free(s->host);
    free(s->api_key);
    free(s);
}

enum MHD_Result srv_metrics_route(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    const struct slm_server_backend *b = &s->p.backend;
    enum { CAP = 64 };
    struct slm_pool_entry *ents = calloc(CAP, sizeof(*ents));
    struct srv_loaded_name *names = calloc(CAP, sizeof(*names));
    const char *labels[CAP];
    size_t loaded = ents && names ? b->list(b->user, ents, CAP) : 0;
    loaded = SLM_MIN(loaded, (size_t)CAP);
    for (size_t i = 0; i < loaded; i++) {
        labels[i] = srv_lookup_name(s, ents[i].path, &names[i]) ? names[i].name : ents[i].path;
    }
    struct slm_buf out = {0};
    slm_buf_init(&out, (size_t)8 << 20);
    enum MHD_Result ok;
    int rrc = srv_metrics_render(s->metrics, ents, labels, loaded, &out);
    free(ents);
    free(names);
    if (rrc == SLM_OK && s->p.router) {
        struct slm_router_stats rs;
        slm_router_stats(s->p.router, &rs);
        rrc = slm_buf_printf(
            &out,
            "# HELP slm_router_shadows_total Shadow calls to the cloud, by outcome.\n"
            "# TYPE slm_router_shadows_total counter\n"
            "slm_router_shadows_total{outcome=\"started\"} %llu\n"
            "slm_router_shadows_total{outcome=\"skipped_at_cap\"} %llu\n"
            "# HELP slm_router_shadows_running Shadow calls in flight.\n"
            "# TYPE slm_router_shadows_running gauge\n"
            "slm_router_shadows_running %d\n",
            (unsigned long long)rs.shadows_started, (unsigned long long)rs.shadows_skipped,
            rs.shadows_running);
    }
    if (rrc == SLM_OK) {
        ok = srv_reply_text(rc, 200, "text/plain; version=0.0.4; charset=utf-8", slm_buf_cstr(&out),
                            out.len);
    } else {
        struct srv_error e = {0};
        srv_fail(&e, SLM_E_NOMEM, NULL);
        ok = srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    slm_buf_free(&out);
    return ok;
}
