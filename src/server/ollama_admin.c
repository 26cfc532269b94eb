/*
 * server/ollama_admin.c - POST /api/pull and POST /api/create.
 *
 * A pull runs on a thread of its own with its own store handle (the store
 * is safe across handles: writes are atomic renames); its progress lines
 * are queued for the connection's thread, which streams them as NDJSON or,
 * with "stream": false, waits for the end. A client that goes away cancels
 * the download (the partial file is kept for the next pull).
 *
 * /api/create builds a Modelfile from the request's fields and hands it to
 * slm_create(): FROM must be a store name, TEMPLATE and SYSTEM are inline
 * text. Nothing a client names is read from the server's disk.
 */
#include "server/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm/json.h"
#include "slm/sync.h"

struct pull_job {
    struct slm_server *srv;
    char name[SLM_NAME_MAX + 80];
    char home[4096];
    pthread_t th;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct slm_buf lines; /* NDJSON not yet sent */
    bool done;
    atomic_bool cancel;
    double last_progress;
    int rc;
    struct srv_error e;
};

static void push_line(struct pull_job *pj, json_t *v) {
    if (!v) {
        return;
    }
    pthread_mutex_lock(&pj->lock);
    if (srv_json_dump(v, &pj->lines) == SLM_OK) {
        if (slm_buf_putc(&pj->lines, '\n') != SLM_OK) {
            slm_buf_clear(&pj->lines);
        }
    }
    pthread_cond_signal(&pj->cond);
    pthread_mutex_unlock(&pj->lock);
    json_decref(v);
}

static int on_progress(const struct slm_pull_progress *p, void *user) {
    struct pull_job *pj = user;
    double now = slm_time_mono();
    bool last = p->total && p->done >= p->total;
    if (now - pj->last_progress >= 0.25 || last) {
        pj->last_progress = now;
        char status[300];
        snprintf(status, sizeof(status), "pulling %s", p->file ? p->file : "model");
        push_line(pj, json_pack("{s:s,s:s,s:I,s:I}", "status", status, "digest", "", "total",
                                (json_int_t)p->total, "completed", (json_int_t)p->done));
    }
    return atomic_load(&pj->cancel) ? 1 : 0;
}

static void on_note(const char *line, void *user) {
    push_line(user, json_pack("{s:s}", "status", line));
}

static void *pull_main(void *arg) {
    struct pull_job *pj = arg;
    struct slm_err err = {0};
    struct slm_store *store = NULL;
    push_line(pj, json_pack("{s:s}", "status", "pulling manifest"));
    int rc = slm_store_open(pj->home, &store, &err);
    if (rc == SLM_OK) {
        const struct slm_pull_params *dp = pj->srv->p.pull;
        struct slm_pull_params pp = dp ? *dp : slm_pull_params_default();
        pp.progress = on_progress;
        pp.note = on_note;
        pp.user = pj;
        struct slm_pull_result res;
        rc = slm_pull(store, pj->name, &pp, &res, &err);
        if (rc == SLM_OK) {
            push_line(pj, json_pack("{s:s,s:s}", "status", "verifying sha256 digest", "digest",
                                    res.digest));
            push_line(pj, json_pack("{s:s}", "status", "writing manifest"));
            push_line(pj, json_pack("{s:s}", "status", "success"));
        }
    }
    slm_store_close(store);
    pthread_mutex_lock(&pj->lock);
    pj->rc = rc;
    if (rc != SLM_OK) {
        srv_fail(&pj->e, rc, &err);
    }
    pj->done = true;
    pthread_cond_signal(&pj->cond);
    pthread_mutex_unlock(&pj->lock);
    return NULL;
}

static void pull_free(void *ctx) {
    struct pull_job *pj = ctx;
    atomic_store(&pj->cancel, true);
    if (pj->started) {
        pthread_join(pj->th, NULL);
    }
    pthread_mutex_destroy(&pj->lock);
    pthread_cond_destroy(&pj->cond);
    slm_buf_free(&pj->lines);
    free(pj);
}

/* Waits up to SRV_POLL_MS for lines or the end; moves lines into `out` (or
 * drops them when `out` is NULL). True when the pull is over. */
static bool pull_wait(struct pull_job *pj, struct slm_buf *out) {
    pthread_mutex_lock(&pj->lock);
    if (!pj->lines.len && !pj->done) {
        slm_cond_wait_for(&pj->cond, &pj->lock, SRV_POLL_MS / 1000.0);
    }
    if (!out || slm_buf_append_str(out, slm_buf_str(&pj->lines)) == SLM_OK) {
        slm_buf_clear(&pj->lines); /* without `out` (a whole answer) the lines are dropped */
    }
    bool done = pj->done && !pj->lines.len;
    pthread_mutex_unlock(&pj->lock);
    return done;
}

static int pull_step(struct srv_stream *st) {
    struct pull_job *pj = st->ctx;
    if (srv_client_gone(st->rc->conn)) {
        atomic_store(&pj->cancel, true);
        return SLM_E_ABORTED;
    }
    if (atomic_load(&st->srv->stopping)) {
        atomic_store(&pj->cancel, true);
    }
    if (pull_wait(pj, &st->out)) {
        st->finished = true;
        if (pj->rc != SLM_OK) {
            json_t *v = srv_error_json(SRV_API_OLLAMA, &pj->e);
            int rc = srv_json_dump(v, &st->out);
            json_decref(v);
            return rc == SLM_OK ? slm_buf_putc(&st->out, '\n') : rc;
        }
    }
    return SLM_OK;
}

enum MHD_Result srv_ollama_pull(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    json_t *body = NULL;
    if (srv_conn_doc(rc, &body, &e) != SLM_OK) {
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    const char *name = json_string_value(json_object_get(body, "model"));
    if (!name || !name[0]) {
        name = json_string_value(json_object_get(body, "name"));
    }
    const json_t *sv = json_object_get(body, "stream");
    bool stream = !json_is_false(sv);
    if (!name || !name[0] || strlen(name) >= SLM_NAME_MAX || name[0] == '/' || name[0] == '.') {
        json_decref(body);
        srv_bad(&e, "model",
                "'model' must name a model to pull (an alias, hf.co/ORG/REPO:QUANT "
                "or an https:// URL)");
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    struct pull_job *pj = calloc(1, sizeof(*pj));
    if (!pj) {
        json_decref(body);
        return MHD_NO;
    }
    pj->srv = s;
    snprintf(pj->name, sizeof(pj->name), "%s", name);
    snprintf(rc->model, sizeof(rc->model), "%s", name);
    json_decref(body);
    snprintf(pj->home, sizeof(pj->home), "%s", slm_store_home(s->store));
    pthread_mutex_init(&pj->lock, NULL);
    slm_cond_init_mono(&pj->cond);
    slm_buf_init(&pj->lines, (size_t)1 << 20);
    atomic_init(&pj->cancel, false);
    if (pthread_create(&pj->th, NULL, pull_main, pj) != 0) {
        pull_free(pj);
        srv_fail(&e, SLM_E_NOMEM, NULL);
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    pj->started = true;
    if (stream) {
        return srv_reply_stream(rc, "application/x-ndjson", pull_step, pj, pull_free);
    }
    while (!pull_wait(pj, NULL)) {
        if (srv_client_gone(rc->conn) || atomic_load(&s->stopping)) {
            atomic_store(&pj->cancel, true);
        }
    }
    enum MHD_Result ok;
    if (pj->rc == SLM_OK) {
        ok = srv_reply_json(rc, 200, json_pack("{s:s}", "status", "success"));
    } else {
        e = pj->e;
        ok = srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    pull_free(pj);
    return ok;
}

/* ---------------------------------------------------------------- create */

/* Appends a """quoted""" Modelfile value; text with """ in it is refused. */
static int quoted(struct slm_buf *b, const char *field, const char *text, struct srv_error *e) {
    if (strstr(text, "\"\"\"")) {
        return srv_bad(e, field, "'%s' cannot contain three double quotes in a row", field);
    }
    int rc = slm_buf_printf(b, "\"\"\"%s\"\"\"\n", text);
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, NULL);
}

static int param_value(struct slm_buf *b, const char *key, const json_t *v, struct srv_error *e) {
    int rc;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        rc = slm_buf_printf(b, "PARAMETER %s \"", key);
        for (; rc == SLM_OK && *s; s++) {
            if (*s == '\n' || *s == '\r') {
                return srv_bad(e, "parameters", "parameters.%s: line breaks are not allowed", key);
            }
            rc = (*s == '"' || *s == '\\') ? slm_buf_putc(b, '\\') : SLM_OK;
            rc = rc == SLM_OK ? slm_buf_putc(b, *s) : rc;
        }
        rc = rc == SLM_OK ? slm_buf_puts(b, "\"\n") : rc;
    } else if (json_is_number(v)) {
        rc = slm_buf_printf(b, "PARAMETER %s %.17g\n", key, json_number_value(v));
    } else {
        return srv_bad(e, "parameters", "parameters.%s must be a number or a string", key);
    }
    return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, NULL);
}

static int modelfile_params(struct slm_buf *b, const json_t *params, struct srv_error *e) {
    if (!params || json_is_null(params)) {
        return SLM_OK;
    }
    if (!json_is_object(params)) {
        return srv_bad(e, "parameters", "'parameters' must be an object");
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        for (const char *k = key; *k; k++) {
            if (!((*k >= 'a' && *k <= 'z') || *k == '_' || (*k >= '0' && *k <= '9'))) {
                return srv_bad(e, "parameters", "unknown parameter '%s'", key);
            }
        }
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < n; i++) {
            int rc = param_value(b, key, json_is_array(v) ? json_array_get(v, i) : v, e);
            if (rc != SLM_OK) {
                return rc;
            }
        }
    }
    return SLM_OK;
}

static int modelfile_messages(struct slm_buf *b, const json_t *msgs, struct srv_error *e) {
    if (!msgs || json_is_null(msgs)) {
        return SLM_OK;
    }
    if (!json_is_array(msgs)) {
        return srv_bad(e, "messages", "'messages' must be an array");
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!role || !content ||
            (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))) {
            return srv_bad(e, "messages",
                           "messages[%zu] must have a role (system, user, "
                           "assistant) and a content string",
                           i);
        }
        int rc = slm_buf_printf(b, "MESSAGE %s ", role);
        if (rc != SLM_OK || (rc = quoted(b, "messages", content, e)) != SLM_OK) {
            return rc == SLM_OK ? SLM_OK : srv_fail(e, rc, NULL);
        }
    }
    return SLM_OK;
}

int srv_create_modelfile(const json_t *body, struct slm_buf *b, struct srv_error *e) {
    static const char *const refused[] = {"files", "adapters", "quantize", "modelfile", "path"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(refused); i++) {
        const json_t *v = json_object_get(body, refused[i]);
        if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0) &&
            !(json_is_string(v) && json_string_length(v) == 0)) {
            return srv_bad(e, refused[i],
                           "'%s' is not supported over HTTP: create the model with `slm create` "
                           "(FROM a store name works here)",
                           refused[i]);
        }
    }
    const char *from = json_string_value(json_object_get(body, "from"));
    if (!from || !from[0] || slm_name_looks_like_path(from) || strpbrk(from, "\n\r\"")) {
        return srv_bad(e, "from", "'from' must name a model in the store");
    }
    int rc =
        slm_buf_printf(b, "FROM %s\n", from) == SLM_OK ? SLM_OK : srv_fail(e, SLM_E_NOMEM, NULL);
    const char *system = json_string_value(json_object_get(body, "system"));
    if (rc == SLM_OK && system) {
        rc = slm_buf_puts(b, "SYSTEM ") == SLM_OK ? quoted(b, "system", system, e)
                                                  : srv_fail(e, SLM_E_NOMEM, NULL);
    }
    const char *tmpl = json_string_value(json_object_get(body, "template"));
    if (rc == SLM_OK && tmpl && tmpl[0]) {
        if (!strchr(tmpl, '\n') && !strstr(tmpl, "{{") && !strstr(tmpl, "{%")) {
            return srv_bad(e, "template",
                           "'template' must be Liquid text (with {{ }} or {%% %%}); "
                           "file paths are not read over HTTP");
        }
        rc = slm_buf_puts(b, "TEMPLATE ") == SLM_OK ? quoted(b, "template", tmpl, e)
                                                    : srv_fail(e, SLM_E_NOMEM, NULL);
    }
    if (rc == SLM_OK) {
        rc = modelfile_params(b, json_object_get(body, "parameters"), e);
    }
    if (rc == SLM_OK) {
        rc = modelfile_messages(b, json_object_get(body, "messages"), e);
    }
    const json_t *lic = json_object_get(body, "license");
    size_t n = json_is_array(lic) ? json_array_size(lic) : (json_is_string(lic) ? 1 : 0);
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        const char *l = json_string_value(json_is_array(lic) ? json_array_get(lic, i) : lic);
        if (l) {
            rc = slm_buf_puts(b, "LICENSE ") == SLM_OK ? quoted(b, "license", l, e)
                                                       : srv_fail(e, SLM_E_NOMEM, NULL);
        }
    }
    return rc;
}

struct notes {
    struct slm_buf lines;
};

static void create_note(const char *line, void *user) {
    struct notes *n = user;
    json_t *v = json_pack("{s:s}", "status", line);
    if (v && srv_json_dump(v, &n->lines) == SLM_OK && slm_buf_putc(&n->lines, '\n') != SLM_OK) {
        slm_buf_clear(&n->lines);
    }
    json_decref(v);
}

enum MHD_Result srv_ollama_create(struct srv_conn *rc) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    json_t *body = NULL;
    if (srv_conn_doc(rc, &body, &e) != SLM_OK) {
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    const char *name = json_string_value(json_object_get(body, "model"));
    if (!name || !name[0]) {
        name = json_string_value(json_object_get(body, "name"));
    }
    bool stream = !json_is_false(json_object_get(body, "stream"));
    struct slm_buf mf = {0};
    slm_buf_init(&mf, (size_t)8 << 20);
    struct notes notes;
    slm_buf_init(&notes.lines, (size_t)1 << 20);
    int r = (!name || !name[0] || slm_name_looks_like_path(name))
                ? srv_bad(&e, "model", "'model' must be the new model's name")
                : srv_create_modelfile(body, &mf, &e);
    if (r == SLM_OK) {
        snprintf(rc->model, sizeof(rc->model), "%s", name);
        struct slm_create_params cp = {0};
        cp.text = slm_buf_cstr(&mf);
        cp.text_len = mf.len;
        cp.base_dir = "/nonexistent"; /* relative paths never resolve to server files */
        cp.note = create_note;
        cp.user = &notes;
        struct slm_err err = {0};
        pthread_mutex_lock(&s->store_lock);
        r = slm_create(s->store, name, &cp, &err);
        pthread_mutex_unlock(&s->store_lock);
        if (r != SLM_OK) {
            srv_fail(&e, r, &err);
            if (r == SLM_E_INVALID || r == SLM_E_UNSUPPORTED) {
                e.status = 400;
            }
        }
    }
    json_decref(body);
    slm_buf_free(&mf);
    enum MHD_Result ok;
    if (r != SLM_OK) {
        ok = srv_reply_error(rc, SRV_API_OLLAMA, &e);
    } else if (stream) {
        create_note("success", &notes);
        ok = srv_reply_text(rc, 200, "application/x-ndjson", slm_buf_cstr(&notes.lines),
                            notes.lines.len);
    } else {
        ok = srv_reply_json(rc, 200, json_pack("{s:s}", "status", "success"));
    }
    slm_buf_free(&notes.lines);
    return ok;
}
