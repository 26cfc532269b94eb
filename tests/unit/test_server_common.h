/*
 * test_server_common.h - what the server's tests share: a private store, a
 * server on 127.0.0.1 with a free port, a small HTTP client (libcurl), and
 * a fake backend that "generates" a scripted answer so the HTTP layer can be
 * tested without a model (errors, limits, streaming, cancellation).
 */
#ifndef TEST_SERVER_COMMON_H
#define TEST_SERVER_COMMON_H

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/internal.h"
#include "test_stories.h"
#include "slm/json.h"
#include "slm/server.h"
#include "slm/store.h"

/* ---------------------------------------------------------------- store */

static char g_home[256];

static inline void make_home(void) {
    snprintf(g_home, sizeof(g_home), "/tmp/slm-test-server-XXXXXX");
    cr_assert_not_null(mkdtemp(g_home));
}

static inline void remove_home(void) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_home);
    cr_assert_eq(system(cmd), 0);
}

/* The model the server tests run on (test_stories.h: stories260K, else a
 * random-weight one; skips when there is neither). */
static inline const char *need_model(void) {
    static char path[PATH_MAX];
    test_model_path(path, sizeof(path));
    return path;
}

/* Creates model `name` in the test store from a Modelfile text. */
static inline void create_model(const char *name, const char *modelfile) {
    struct slm_store *st = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_store_open(g_home, &st, &err), SLM_OK, "%s", err.msg);
    struct slm_create_params cp = {0};
    cp.text = modelfile;
    cp.text_len = strlen(modelfile);
    cr_assert_eq(slm_create(st, name, &cp, &err), SLM_OK, "%s", err.msg);
    slm_store_close(st);
}

/* ---------------------------------------------------------------- fake backend */

struct fake {
    struct slm_model *model; /* for tokens and chat formatting (vocab only) */
    const char *script;      /* the answer every request gets */
    int submit_rc;           /* != SLM_OK: submit fails with it */
    int delay_ms;            /* per piece */
    int piece;               /* bytes per piece (default 3) */
    atomic_int submitted, cancelled, freed, active;
    int max_queue;      /* > 0: submit fails with SLM_E_LIMIT past this many unfinished */
    atomic_int pending; /* submitted and not finished, as a scheduler's queue counts */
    int32_t n_embd;
    int32_t last_prompt[8192]; /* the last prompt submitted */
    size_t n_last;
};

struct fake_req {
    struct fake *f;
    size_t pos, len;
    int32_t max_tokens;
    int32_t n_gen, n_prompt;
    int32_t n_top;
    bool embed;
    atomic_bool cancel;
    bool finished;
    double next_at;
    float vec[8];
};

static inline int fake_acquire(void *user, const char *path, int64_t keep_alive_ms,
                               struct slm_sched **sched, struct slm_model **model,
                               struct slm_err *err) {
    (void)path;
    (void)keep_alive_ms;
    (void)err;
    struct fake *f = user;
    *sched = (struct slm_sched *)f;
    *model = f->model;
    return SLM_OK;
}

static inline void fake_release(void *user, struct slm_sched *sched) {
    (void)user;
    (void)sched;
}

static inline int fake_adapter(void *user, struct slm_model *model, const char *path,
                               struct slm_adapter **out, struct slm_err *err) {
    (void)user;
    (void)model;
    (void)path;
    (void)out;
    return slm_err_set(err, SLM_E_UNSUPPORTED, "no adapters here");
}

static inline int fake_submit(void *user, struct slm_sched *sched, const int32_t *prompt,
                              size_t n_prompt, const struct slm_req_params *p,
                              struct slm_request **out, struct slm_err *err) {
    (void)sched;
    struct fake *f = user;
    if (f->submit_rc != SLM_OK) {
        return slm_err_set(err, f->submit_rc, "fake: refused");
    }
    if (f->max_queue > 0 && atomic_load(&f->pending) >= f->max_queue) {
        return slm_err_set(err, SLM_E_LIMIT, "the queue is full (%d requests waiting)",
                           f->max_queue);
    }
    atomic_fetch_add(&f->pending, 1);
    f->n_last = SLM_MIN(n_prompt, SLM_ARRAY_LEN(f->last_prompt));
    memcpy(f->last_prompt, prompt, f->n_last * sizeof(*prompt));
    struct fake_req *r = calloc(1, sizeof(*r));
    r->f = f;
    r->len = strlen(f->script);
    r->max_tokens = p->gen.max_tokens;
    r->n_prompt = (int32_t)n_prompt;
    r->n_top = p->gen.n_top_logprobs;
    r->embed = p->embed;
    for (int i = 0; i < 8; i++) {
        r->vec[i] = (i == (int)(n_prompt % 8)) ? 1.0f : 0.0f;
    }
    atomic_fetch_add(&f->submitted, 1);
    atomic_fetch_add(&f->active, 1);
    *out = (struct slm_request *)r;
    return SLM_OK;
}

static inline int fake_read(void *user, struct slm_request *req, int timeout_ms,
                            struct slm_buf *text, struct slm_req_token *toks, size_t cap,
                            size_t *n_toks, bool *done) {
    (void)user;
    struct fake_req *r = (struct fake_req *)req;
    *n_toks = 0;
    *done = false;
    if (r->finished) {
        *done = true;
        return SLM_OK;
    }
    double now = slm_time_mono();
    if (now < r->next_at) {
        double wait = r->next_at - now;
        if (timeout_ms >= 0 && wait * 1e3 > timeout_ms) {
            slm_sleep_ms(timeout_ms);
            return SLM_OK; /* nothing yet */
        }
        slm_sleep_ms((int64_t)(wait * 1e3) + 1);
    }
    r->next_at = slm_time_mono() + r->f->delay_ms / 1e3;
    bool limit = r->max_tokens >= 0 && r->n_gen >= r->max_tokens;
    if (atomic_load(&r->cancel) || r->embed || r->pos >= r->len || limit) {
        r->finished = true;
        atomic_fetch_sub(&r->f->pending, 1);
        *done = true;
        return SLM_OK;
    }
    size_t piece = (size_t)(r->f->piece > 0 ? r->f->piece : 3);
    size_t n = SLM_MIN(piece, r->len - r->pos);
    int rc = slm_buf_append(text, r->f->script + r->pos, n);
    if (rc != SLM_OK) {
        return rc;
    }
    r->pos += n;
    r->n_gen++;
    if (cap > 0) {
        toks[0].token = 100 + (int32_t)(r->n_gen % 50);
        toks[0].logprob = -0.5f;
        toks[0].n_top = r->n_top;
        for (int k = 0; k < r->n_top; k++) {
            toks[0].top[k].token = 100 + k;
            toks[0].top[k].logprob = -0.5f - (float)k;
        }
        toks[0].text_end = (uint32_t)n;
        *n_toks = 1;
    }
    return SLM_OK;
}

static inline int fake_result(void *user, struct slm_request *req, struct slm_gen_stats *st,
                              struct slm_err *err) {
    (void)user;
    (void)err;
    struct fake_req *r = (struct fake_req *)req;
    memset(st, 0, sizeof(*st));
    st->n_prompt = r->n_prompt;
    st->n_gen = r->n_gen;
    bool limit = r->max_tokens >= 0 && r->n_gen >= r->max_tokens && r->pos < r->len;
    st->finish = atomic_load(&r->cancel) ? SLM_FINISH_ABORTED
                 : limit                 ? SLM_FINISH_LENGTH
                                         : SLM_FINISH_STOP;
    return SLM_OK;
}

static const float *fake_embedding(void *user, struct slm_request *req, int32_t *n) {
    (void)user;
    struct fake_req *r = (struct fake_req *)req;
    *n = 8;
    return r->vec;
}

static inline void fake_cancel(void *user, struct slm_request *req) {
    struct fake *f = user;
    struct fake_req *r = (struct fake_req *)req;
    if (!atomic_exchange(&r->cancel, true)) {
        atomic_fetch_add(&f->cancelled, 1);
    }
}

static inline void fake_free(void *user, struct slm_request *req) {
    struct fake *f = user;
    atomic_fetch_add(&f->freed, 1);
    atomic_fetch_sub(&f->active, 1);
    if (!((struct fake_req *)req)->finished) {
        atomic_fetch_sub(&f->pending, 1);
    }
    free(req);
}

static inline size_t fake_list(void *user, struct slm_pool_entry *out, size_t cap) {
    (void)user;
    (void)out;
    (void)cap;
    return 0;
}

static inline struct slm_server_backend fake_backend(struct fake *f) {
    return (struct slm_server_backend){f,           fake_acquire, fake_release, fake_adapter,
                                       fake_submit, fake_read,    fake_result,  fake_embedding,
                                       fake_cancel, fake_free,    fake_list};
}

/* Loads the test model's vocabulary for the fake (skips without one). */
static inline void fake_init(struct fake *f, const char *script) {
    memset(f, 0, sizeof(*f));
    const char *path = need_model();
    struct slm_model_params mp = slm_model_params_default();
    mp.vocab_only = true;
    struct slm_err err = {0};
    cr_assert_eq(slm_model_load(path, &mp, &f->model, &err), SLM_OK, "%s", err.msg);
    f->script = script;
}

/* The text of the last prompt the fake saw (special tokens rendered). */
static inline char *fake_last_prompt(struct fake *f) {
    struct slm_buf b = {0};
    for (size_t i = 0; i < f->n_last; i++) {
        cr_assert_eq(slm_token_to_piece(f->model, f->last_prompt[i], true, &b), SLM_OK);
    }
    return slm_buf_take(&b);
}

/* ---------------------------------------------------------------- server */

static struct slm_server *g_srv;
static char g_url[128];

static inline void start_server(struct slm_server_params *p) {
    p->host = "127.0.0.1";
    p->port = 0;
    p->store_home = g_home;
    struct slm_err err = {0};
    cr_assert_eq(slm_server_open(p, &g_srv, &err), SLM_OK, "%s", err.msg);
    slm_server_url(g_srv, g_url, sizeof(g_url));
}

static inline void stop_server(void) {
    slm_server_close(g_srv);
    g_srv = NULL;
}

/* ---------------------------------------------------------------- client */

struct resp {
    long status;
    int curl_rc; /* CURLE_OK unless the transfer broke */
    struct slm_buf body;
    struct slm_buf headers;
    json_t *json; /* the body parsed, when it is JSON */
};

static inline size_t on_body(char *p, size_t size, size_t n, void *user) {
    return slm_buf_append(user, p, size * n) == SLM_OK ? size * n : 0;
}

/* One request; `body` NULL for none. `auth` adds "Authorization: Bearer auth". */
static inline struct resp http_ex(const char *method, const char *path, const char *body,
                                  const char *auth, bool must_complete) {
    struct resp r;
    memset(&r, 0, sizeof(r));
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char url[512];
    snprintf(url, sizeof(url), "%s%s", g_url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char ah[256];
    if (auth) {
        snprintf(ah, sizeof(ah), "Authorization: Bearer %s", auth);
        h = curl_slist_append(h, ah);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode cc = curl_easy_perform(c);
    r.curl_rc = (int)cc;
    if (must_complete) {
        cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_error_t je;
    r.json = json_loadb(slm_buf_cstr(&r.body), r.body.len, 0, &je);
    return r;
}

static inline struct resp http(const char *method, const char *path, const char *body,
                               const char *auth) {
    return http_ex(method, path, body, auth, true);
}

static inline void resp_free(struct resp *r) {
    slm_buf_free(&r->body);
    slm_buf_free(&r->headers);
    json_decref(r->json);
}

/* The OpenAI error type/code of a reply, or "". */
static inline const char *err_code(const struct resp *r) {
    const char *c = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return c ? c : "";
}

static inline const char *err_msg(const struct resp *r) {
    const json_t *e = json_object_get(r->json, "error");
    const char *m =
        json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
    return m ? m : "";
}

/* Parses an SSE body into its data payloads (JSON values; "[DONE]" as null). */
static inline json_t *sse_events(const struct slm_buf *body) {
    json_t *events = json_array();
    struct slm_str s = slm_buf_str(body);
    size_t pos = 0;
    while (pos < s.len) {
        size_t nl = slm_str_find_char(s, '\n', pos);
        if (nl == SIZE_MAX) {
            nl = s.len;
        }
        struct slm_str line = slm_str_sub(s, pos, nl - pos);
        if (slm_str_starts_with(line, SLM_STR("data: "))) {
            struct slm_str d = slm_str_sub(line, 6, SIZE_MAX);
            if (slm_str_eq_c(d, "[DONE]")) {
                json_array_append_new(events, json_null());
            } else {
                json_error_t je;
                json_t *v = json_loadb(d.ptr, d.len, 0, &je);
                cr_assert_not_null(v, "bad SSE data: %.*s", (int)d.len, d.ptr);
                json_array_append_new(events, v);
            }
        }
        pos = nl + 1;
    }
    return events;
}

/* Parses an NDJSON body into an array. */
static inline json_t *ndjson_lines(const struct slm_buf *body) {
    json_t *lines = json_array();
    struct slm_str s = slm_buf_str(body);
    size_t pos = 0;
    while (pos < s.len) {
        size_t nl = slm_str_find_char(s, '\n', pos);
        if (nl == SIZE_MAX) {
            nl = s.len;
        }
        if (nl > pos) {
            json_error_t je;
            json_t *v = json_loadb(s.ptr + pos, nl - pos, 0, &je);
            cr_assert_not_null(v, "bad NDJSON line: %.*s", (int)(nl - pos), s.ptr + pos);
            json_array_append_new(lines, v);
        }
        pos = nl + 1;
    }
    return lines;
}

#endif
