/*
 * server/job.c - a prepared request in flight: its sequences are submitted
 * to the model's scheduler through the backend, and their text, token
 * records and results are read back from each request's channel. The HTTP
 * thread that owns the job is the only one that touches it.
 *
 * While it waits, the thread looks every SRV_POLL_MS at the client (gone:
 * cancel, the sequence is freed at the scheduler's next step), at the server
 * (closing: cancel, 503) and at the clock (request timeout: cancel, 504).
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#include "slm/grammar.h"

#define FRESH_CAP 256

struct srv_job *srv_job_from_body(struct srv_conn *rc, enum srv_route_id route, enum srv_api api,
                                  enum MHD_Result *reply) {
    struct srv_error e = {0};
    struct srv_gen_req *g = calloc(1, sizeof(*g));
    if (!g) {
        *reply = MHD_NO;
        return NULL;
    }
    json_t *doc = NULL;
    int prc = srv_conn_doc(rc, &doc, &e);
    prc = prc == SLM_OK ? srv_parse_request_doc(route, doc, g, &e) : prc;
    json_decref(doc);
    if (prc != SLM_OK) {
        free(g);
        *reply = srv_reply_error(rc, api, &e);
        return NULL;
    }
    struct srv_job *j = NULL;
    if (srv_job_prepare(rc->srv, rc, g, &j, &e) != SLM_OK) {
        *reply = srv_reply_error(rc, api, &e);
        return NULL;
    }
    return j;
}

static int submit_item(struct srv_job *j, struct srv_item *it, struct slm_err *err) {
    const struct slm_server_backend *b = &j->srv->p.backend;
    struct slm_req_params rp = j->rp;
    uint32_t seed = rp.gen.sample.seed;
    if (seed != SLM_SEED_RANDOM) {
        rp.gen.sample.seed = (uint32_t)(seed + (uint32_t)it->index) % SLM_SEED_RANDOM;
    }
    int rc = b->submit(b->user, j->sched, it->toks, it->n_toks, &rp, &it->req, err);
    if (rc != SLM_OK) {
        it->req = NULL;
        return rc;
    }
    srv_metrics_waiting(j->srv->metrics, 1);
    if (j->conn) {
        j->conn->prompt_tokens += (int32_t)it->n_toks;
    }
    j->next_submit++;
    return SLM_OK;
}

int srv_job_submit(struct srv_job *j, struct srv_error *e) {
    memset(&j->rp, 0, sizeof(j->rp));
    j->rp.gen = slm_options_gen_params(&j->opt);
    j->rp.gen.sample.grammar = j->grammar;
    j->rp.gen.sample.infill = j->g->fim.infill_sampler;
    j->rp.gen.logprobs = j->g->logprobs;
    j->rp.gen.n_top_logprobs = j->g->top_logprobs;
    j->rp.gen.ignore_eos = j->g->ignore_eos;
    j->rp.gen.sample_budget = j->srv->p.grammar_budget;
    j->rp.adapters = j->adapters;
    j->rp.scales = j->scales;
    j->rp.n_adapters = j->n_adapters;
    j->rp.embed = j->g->kind == SRV_KIND_EMBED;
    /* Generations stream every choice at once; an embedding batch is one job
     * that keeps a few inputs in the queue, not one queue place per input. */
    j->window = j->rp.embed ? SLM_MIN(j->n_items, (size_t)SRV_EMBED_WINDOW) : j->n_items;
    j->next_submit = 0;
    while (j->next_submit < j->window) {
        struct slm_err err = {0};
        int rc = submit_item(j, &j->items[j->next_submit], &err);
        if (rc != SLM_OK) {
            if (rc == SLM_E_LIMIT) {
                srv_metrics_reject(j->srv->metrics, "queue_full");
            }
            srv_job_cancel(j);
            return srv_fail(e, rc, &err);
        }
    }
    return SLM_OK;
}

/* Keeps `window` items in flight: submits the next ones as others finish. A
 * full queue leaves them for the next poll (the deadline still holds). */
static void top_up(struct srv_job *j) {
    size_t in_flight = 0;
    for (size_t i = 0; i < j->next_submit; i++) {
        in_flight += !j->items[i].done;
    }
    while (j->next_submit < j->n_items && in_flight < j->window) {
        struct srv_item *it = &j->items[j->next_submit];
        int rc = submit_item(j, it, &it->err);
        if (rc == SLM_E_LIMIT) {
            return;
        }
        if (rc != SLM_OK) {
            it->rc = rc;
            it->done = true;
            j->next_submit++;
            continue;
        }
        in_flight++;
    }
}

/* The first output of an item: it has left the queue. */
static void started(struct srv_job *j, struct srv_item *it) {
    if (it->started) {
        return;
    }
    it->started = true;
    srv_metrics_waiting(j->srv->metrics, -1);
    if (j->t_first == 0) {
        j->t_first = slm_time_mono();
        srv_metrics_ttft(j->srv->metrics, j->t_first - j->t_start);
    }
}

static int record(struct srv_item *it) {
    if (it->n_recs + it->n_fresh > SRV_MAX_LOGPROB_RECORDS) {
        return SLM_E_TOO_LARGE;
    }
    if (it->n_recs + it->n_fresh > it->cap_recs) {
        size_t cap = SLM_MAX(it->cap_recs * 2, it->n_recs + it->n_fresh + 64);
        struct slm_req_token *r = realloc(it->recs, cap * sizeof(*r));
        if (!r) {
            return SLM_E_NOMEM;
        }
        it->recs = r;
        it->cap_recs = cap;
    }
    memcpy(it->recs + it->n_recs, it->fresh, it->n_fresh * sizeof(*it->fresh));
    it->n_recs += it->n_fresh;
    return SLM_OK;
}

static void finish_item(struct srv_job *j, struct srv_item *it) {
    const struct slm_server_backend *b = &j->srv->p.backend;
    it->rc = b->result(b->user, it->req, &it->stats, &it->err);
    if (it->rc == SLM_OK && j->g->kind == SRV_KIND_EMBED) {
        int32_t n = 0;
        const float *v = b->embedding(b->user, it->req, &n);
        if (v && n > 0) {
            it->embedding = malloc((size_t)n * sizeof(float));
            if (it->embedding) {
                memcpy(it->embedding, v, (size_t)n * sizeof(float));
                it->n_embd = n;
            } else {
                it->rc = slm_err_set(&it->err, SLM_E_NOMEM, "out of memory");
            }
        } else {
            it->rc = slm_err_set(&it->err, SLM_E_BACKEND, "the model gave no embedding");
        }
    }
    srv_metrics_tokens(j->srv->metrics, j->model_name, &it->stats);
    if (j->conn) {
        j->conn->gen_tokens += it->stats.n_gen;
    }
}

int srv_job_poll(struct srv_job *j, int timeout_ms, bool *changed) {
    const struct slm_server_backend *b = &j->srv->p.backend;
    *changed = false;
    bool waited = false;
    for (size_t i = 0; i < j->n_items; i++) {
        struct srv_item *it = &j->items[i];
        it->new_from = it->text.len;
        it->n_fresh = 0;
        if (it->done || !it->req) {
            continue;
        }
        bool done = false;
        size_t len0 = it->text.len;
        int rc = b->read(b->user, it->req, waited ? 0 : timeout_ms, &it->text, it->fresh, FRESH_CAP,
                         &it->n_fresh, &done);
        waited = true;
        if (rc == SLM_OK && j->g->logprobs && it->n_fresh) {
            rc = record(it);
        }
        if (rc != SLM_OK) {
            b->cancel(b->user, it->req);
            it->rc = slm_err_set(&it->err, rc, "the answer is too large (more than %zu bytes)",
                                 SRV_MAX_TEXT);
            it->done = true;
            *changed = true;
            started(j, it);
            continue;
        }
        if (it->text.len != len0 || it->n_fresh || done) {
            *changed = true;
            started(j, it);
        }
        if (done) {
            finish_item(j, it);
            it->done = true;
        }
    }
    top_up(j);
    bool all = true;
    for (size_t i = 0; i < j->n_items; i++) {
        all = all && j->items[i].done;
    }
    j->finished = all;
    if (!waited && !all) {
        slm_sleep_ms(timeout_ms); /* only queued items left: wait for a place as a read would */
    }
    return SLM_OK;
}

void srv_job_cancel(struct srv_job *j) {
    const struct slm_server_backend *b = &j->srv->p.backend;
    for (size_t i = 0; i < j->n_items; i++) {
        if (j->items[i].req && !j->items[i].done) {
            b->cancel(b->user, j->items[i].req);
        }
    }
}

int srv_job_check_alive(struct srv_job *j, struct srv_error *e) {
    if (j->conn && srv_client_gone(j->conn->conn)) {
        srv_job_cancel(j);
        return srv_error_set(e, SLM_E_ABORTED, 499, "server_error", "client_closed",
                             "the client closed the connection");
    }
    if (atomic_load(&j->srv->stopping)) {
        srv_job_cancel(j);
        return srv_error_set(e, SLM_E_ABORTED, 503, "server_error", "shutting_down",
                             "the server is shutting down");
    }
    if (j->deadline > 0 && slm_time_mono() > j->deadline) {
        srv_job_cancel(j);
        return srv_error_set(e, SLM_E_TIMEOUT, 504, "server_error", "timeout",
                             "the request took longer than %.0f s (slm serve --request-timeout)",
                             j->srv->p.request_timeout);
    }
    return SLM_OK;
}

int srv_job_wait(struct srv_job *j, struct srv_error *e) {
    while (!j->finished) {
        bool changed;
        int rc = srv_job_poll(j, SRV_POLL_MS, &changed);
        if (rc == SLM_OK && !j->finished) {
            rc = srv_job_check_alive(j, e);
        }
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

int srv_job_item_error(struct srv_job *j, struct srv_error *e) {
    for (size_t i = 0; i < j->n_items; i++) {
        if (j->items[i].rc != SLM_OK) {
            return srv_fail(e, j->items[i].rc, &j->items[i].err);
        }
    }
    return SLM_OK;
}

const char *srv_finish_reason(const struct srv_item *it) {
    switch (it->stats.finish) {
    case SLM_FINISH_LENGTH:
    case SLM_FINISH_CONTEXT: return "length";
    default: return "stop";
    }
}

int srv_job_check_json(const struct srv_job *j, const struct srv_item *it, struct slm_err *err) {
    if (j->g->format == SLM_TURN_FORMAT_TEXT) {
        return SLM_OK;
    }
    bool cut = it->stats.finish == SLM_FINISH_LENGTH || it->stats.finish == SLM_FINISH_CONTEXT;
    const json_t *schema = j->g->format == SLM_TURN_FORMAT_SCHEMA ? j->g->schema : NULL;
    int rc = slm_json_output_check(schema, slm_buf_cstr(&it->text), it->text.len, cut, NULL, err);
    if (rc == SLM_OK || rc == SLM_E_INCOMPLETE) {
        return rc;
    }
    slm_err_prefix(err, "the model's output does not match the requested format");
    return SLM_E_INVALID;
}

void srv_job_usage(const struct srv_job *j, int64_t *prompt, int64_t *gen, int64_t *cached) {
    *prompt = *gen = *cached = 0;
    for (size_t i = 0; i < j->n_items; i++) {
        const struct srv_item *it = &j->items[i];
        /* Choices of one prompt share it: count the prompt once, as OpenAI does. */
        if (j->g->n <= 1 || it->index % j->g->n == 0) {
            *prompt += it->stats.n_prompt ? it->stats.n_prompt : (int64_t)it->n_toks;
            *cached += it->stats.n_cached;
        }
        *gen += it->stats.n_gen;
    }
}

int srv_job_token_text(const struct srv_job *j, int32_t tok, struct slm_buf *out) {
    return slm_token_to_piece(j->model, tok, false, out);
}

static json_t *bytes_array(const char *p, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_array_append_new(a, json_integer((uint8_t)p[i]));
    }
    return a;
}

/* {token, logprob, bytes} for one token id. */
static json_t *token_entry(const struct srv_job *j, int32_t tok, float lp) {
    struct slm_buf piece = {0};
    slm_buf_init(&piece, 4096);
    if (srv_job_token_text(j, tok, &piece) != SLM_OK) {
        slm_buf_clear(&piece);
    }
    json_t *e = json_pack("{s:o,s:f,s:o}", "token", srv_json_text(piece.ptr, piece.len), "logprob",
                          (double)lp, "bytes", bytes_array(piece.ptr, piece.len));
    slm_buf_free(&piece);
    return e;
}

json_t *srv_logprobs_content(const struct srv_job *j, const struct slm_req_token *recs, size_t n) {
    json_t *content = json_array();
    for (size_t i = 0; content && i < n; i++) {
        json_t *e = token_entry(j, recs[i].token, recs[i].logprob);
        json_t *top = json_array();
        for (int k = 0; top && k < recs[i].n_top && k < j->g->top_logprobs; k++) {
            json_array_append_new(top,
                                  token_entry(j, recs[i].top[k].token, recs[i].top[k].logprob));
        }
        if (e && top) {
            json_object_set_new(e, "top_logprobs", top);
            json_array_append_new(content, e);
        } else {
            json_decref(e);
            json_decref(top);
        }
    }
    return content;
}

size_t srv_job_releasable(const struct srv_job *j, const struct srv_item *it) {
    if (!j->tools_on) {
        return it->text.len;
    }
    if (j->g->tool_choice >= SLM_TOOLS_REQUIRED) {
        return it->sent; /* the grammar makes it a call: hold all */
    }
    return it->sent + slm_tools_safe_prefix(j->family, it->text.ptr + it->sent,
                                            it->text.len - it->sent, it->sent == 0);
}

void srv_job_free(struct srv_job *j) {
    if (!j) {
        return;
    }
    const struct slm_server_backend *b = &j->srv->p.backend;
    for (size_t i = 0; i < j->n_items; i++) {
        struct srv_item *it = &j->items[i];
        if (it->req) {
            if (!it->started) {
                srv_metrics_waiting(j->srv->metrics, -1);
            }
            b->request_free(b->user, it->req);
        }
        free(it->toks);
        free(it->prompt_text);
        free(it->fresh);
        free(it->recs);
        free(it->embedding);
        slm_buf_free(&it->text);
    }
    free(j->items);
    if (j->pinned) {
        b->release(b->user, j->sched);
    }
    slm_turn_free(j->turn);
    srv_model_facts_free(&j->facts);
    slm_options_free(&j->opt);
    free(j->grammar);
    free(j->model_name);
    srv_gen_req_free(j->g);
    free(j->g);
    free(j);
}
