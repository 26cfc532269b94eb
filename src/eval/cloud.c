/*
 * cloud.c - an upstream candidate (slm/eval.h): every row sent to a cloud
 * model through the contractor (slm/contract.h), so its answers come from the
 * call cache when the same suite ran before, its spend counts against the
 * run's cost cap, and many rows are in flight at once (the contractor's
 * ordered runner). The cloud is measured as it is: one answer per row,
 * greedy, no retry with the error shown (that would flatter it); with
 * `structured` (the default) the answer is constrained by response_format,
 * the label set as an enum or the json metric's schema.
 */
#include "eval/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"

struct cloud {
    const struct slm_eval_suite *s;
    const struct slm_eval_candidate *cand;
    struct slm_contract *c;
    int concurrency;
    const volatile int *cancel;
    /* one batch */
    const struct slm_eval_row *rows;
    struct slm_contract_labels labels; /* borrowed strings */
    json_t *fields;                    /* sampling and response_format, sent with every row */
    char *system;
    struct slm_eval_answer *out;
    void (*progress)(size_t done, void *user);
    void *user;
};

/* The default system message of a label task: the set, and one label as the answer. */
static char *label_system(const struct cloud *cl) {
    struct slm_buf b;
    slm_buf_init(&b, (size_t)4 << 20);
    int rc = slm_buf_puts(&b, cl->cand->structured
                                  ? "Classify the user's message. Answer with the one label "
                                    "that fits best, as JSON {\"label\": ...}. The labels:\n"
                                  : "Classify the user's message. Answer with the one label "
                                    "that fits best, exactly as written and nothing else. "
                                    "The labels:\n");
    for (size_t i = 0; rc == SLM_OK && i < cl->labels.n; i++) {
        rc = slm_buf_printf(&b, "%s\n", cl->labels.items[i]);
    }
    if (rc != SLM_OK) {
        slm_buf_free(&b);
        return NULL;
    }
    return slm_buf_take(&b);
}

static json_t *json_schema_format(const char *name, json_t *schema) {
    return json_pack("{s:s, s:{s:s, s:b, s:o}}", "type", "json_schema", "json_schema", "name", name,
                     "strict", 1, "schema", schema);
}

/* {"label": one of the set}: the label task's structured output. */
static json_t *label_format(const struct cloud *cl) {
    json_t *names = json_array();
    for (size_t i = 0; names && i < cl->labels.n; i++) {
        json_array_append_new(names, json_string(cl->labels.items[i]));
    }
    if (!names) {
        return NULL;
    }
    return json_schema_format("label",
                              json_pack("{s:s, s:{s:{s:s, s:o}}, s:[s], s:b}", "type", "object",
                                        "properties", "label", "type", "string", "enum", names,
                                        "required", "label", "additionalProperties", 0));
}

static int prepare(struct cloud *cl, const struct slm_eval_request *req) {
    const struct slm_eval_candidate *cand = cl->cand;
    cl->fields =
        json_pack("{s:i, s:I}", "temperature", 0, "max_tokens", (json_int_t)req->max_tokens);
    if (!cl->fields) {
        return SLM_E_NOMEM;
    }
    json_t *format = NULL;
    if (req->labels && cand->structured) {
        format = label_format(cl);
    } else if (req->want_json && cand->structured) {
        format = req->schema ? json_schema_format("answer", json_deep_copy(req->schema))
                             : json_pack("{s:s}", "type", "json_object");
    }
    if ((req->labels || req->want_json) && cand->structured &&
        (!format || json_object_set_new(cl->fields, "response_format", format) != 0)) {
        return SLM_E_NOMEM;
    }
    const char *sys = cand->system;
    if (!sys && req->labels) {
        if (!(cl->system = label_system(cl))) {
            return SLM_E_NOMEM;
        }
    }
    if (sys && !(cl->system = strdup(sys))) {
        return SLM_E_NOMEM;
    }
    return SLM_OK;
}

/* The answer's text as the metrics see it: a structured label unwrapped from its JSON, a label
 * written as the set writes it (trimmed, case folded when that is unambiguous). */
static char *answer_text(const struct cloud *cl, const char *text) {
    json_t *obj = NULL;
    const char *t = text;
    if (cl->labels.n && cl->cand->structured &&
        slm_json_parse(text, strlen(text), "answer", &obj, NULL) == SLM_OK) {
        const char *l = json_string_value(json_object_get(obj, "label"));
        t = l ? l : text;
    }
    char *out = NULL;
    if (cl->labels.n) {
        struct slm_contract_check k = {.labels = &cl->labels};
        json_t *v = NULL;
        if (slm_contract_check_answer(&k, t, NULL, &v, NULL) == SLM_OK && json_is_string(v)) {
            out = strdup(json_string_value(v));
        }
        json_decref(v);
    }
    if (!out) {
        out = strdup(t);
    }
    json_decref(obj);
    return out;
}

static int row_fn(void *user, struct slm_contract *c, size_t index, json_t **out,
                  struct slm_err *err) {
    struct cloud *cl = user;
    struct slm_eval_answer *a = &cl->out[index];
    *out = NULL;
    json_t *req = json_pack("{s:[]}", "messages");
    json_t *msgs = json_object_get(req, "messages");
    if (!req ||
        (cl->system && json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system",
                                                             "content", cl->system)) != 0) ||
        json_array_append_new(
            msgs, json_pack("{s:s, s:s}", "role", "user", "content", cl->rows[index].input)) != 0 ||
        json_object_update(req, cl->fields) != 0) {
        json_decref(req);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_contract_reply rep;
    struct slm_err e = {0};
    int rc = slm_contract_chat(c, req, &rep, &e);
    json_decref(req);
    if (rc != SLM_OK && slm__contract_fatal(rc, &rep)) {
        slm_contract_reply_free(&rep);
        *err = e;
        return rc;
    }
    a->status = rc;
    if (rc == SLM_OK) {
        a->text = answer_text(cl, rep.text);
        a->latency_ms = rep.made_latency_s * 1000.0;
        a->n_in = rep.tokens_in;
        a->n_out = rep.tokens_out;
        a->cost_usd = rep.made_cost;
        if (!a->text) {
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    } else {
        a->error = strdup(e.msg);
        rc = SLM_OK; /* one row's failure: it counts as wrong */
    }
    slm_contract_reply_free(&rep);
    return rc;
}

static int emit_fn(void *user, size_t index, const json_t *out, struct slm_err *err) {
    (void)out;
    (void)err;
    struct cloud *cl = user;
    if (cl->progress) {
        cl->progress(index + 1, cl->user);
    }
    return SLM_OK;
}

static int batch(void *self, const struct slm_eval_row *rows, size_t n_rows,
                 const char *const *labels, size_t n_labels, struct slm_eval_answer *out,
                 void (*progress)(size_t done, void *user), void *user, struct slm_err *err) {
    struct cloud *cl = self;
    cl->rows = rows;
    cl->out = out;
    cl->progress = progress;
    cl->user = user;
    cl->labels = (struct slm_contract_labels){(char **)labels, n_labels};
    const struct slm_eval_metric *json = slm_eval_suite_metric(cl->s, SLM_EVAL_JSON);
    struct slm_eval_request req = {.labels = labels,
                                   .n_labels = n_labels,
                                   .schema = json ? json->schema : NULL,
                                   .want_json = json != NULL,
                                   .max_tokens = cl->s->max_tokens};
    if (prepare(cl, &req) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_rows; i++) {
        out[i].status = SLM_OK;
    }
    struct slm_contract_run_params rp = {.n_rows = n_rows,
                                         .concurrency = cl->concurrency,
                                         .row = row_fn,
                                         .emit = emit_fn,
                                         .user = cl,
                                         .stop = cl->cancel};
    struct slm_contract_run_result res;
    int rc = slm_contract_run(cl->c, &rp, &res, err);
    for (size_t i = res.done; rc != SLM_OK && i < n_rows; i++) {
        out[i].status = SLM_E_ABORTED; /* not reached */
    }
    size_t failed = 0;
    for (size_t i = 0; rc == SLM_OK && i < n_rows; i++) {
        failed += out[i].status != SLM_OK;
    }
    if (rc == SLM_OK && n_rows > 0 && failed == n_rows) {
        /* Nothing to compare: an unreachable or misconfigured upstream, not a weak model. */
        return slm_err_set(err, SLM_E_UPSTREAM, "every call failed (row 1: %s)",
                           out[0].error ? out[0].error : "?");
    }
    if (rc == SLM_E_LIMIT) {
        slm_err_prefix(err, "stopped by --max-cost (answers so far are cached; a re-run pays "
                            "only for the rest)");
    }
    return rc;
}

static void close_fn(void *self) {
    struct cloud *cl = self;
    json_decref(cl->fields);
    free(cl->system);
    free(cl);
}

int slm__eval_open_cloud(const struct slm_eval_suite *s, const struct slm_eval_candidate *cand,
                         struct slm_contract *c, int concurrency, const volatile int *cancel,
                         struct slm_eval_backend *out, struct slm_err *err) {
    struct cloud *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    *cl =
        (struct cloud){.s = s, .cand = cand, .c = c, .concurrency = concurrency, .cancel = cancel};
    *out = (struct slm_eval_backend){.self = cl, .batch = batch, .close = close_fn};
    return SLM_OK;
}
