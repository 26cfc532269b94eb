/*
 * server/ollama.c - the Ollama generation routes: /api/chat and
 * /api/generate, streamed as NDJSON by default (as Ollama does) or whole
 * with "stream": false; a request without a prompt or messages loads the
 * model (keep_alive 0 unloads it).
 *
 * The model-management routes (/api/tags, show, ps, pull, create, copy,
 * delete, version) are in ollama_models.c.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#include "slm/json.h"

static json_t *head(const struct srv_job *j) {
    char t[64];
    srv_format_time(slm_time_unix_ms(), t, sizeof(t));
    return json_pack("{s:s,s:s}", "model", j->model_name, "created_at", t);
}

static int ndjson(struct slm_buf *out, json_t *v) {
    if (!v) {
        return SLM_E_NOMEM;
    }
    int rc = srv_json_dump(v, out);
    rc = rc == SLM_OK ? slm_buf_putc(out, '\n') : rc;
    json_decref(v);
    return rc;
}

/* [{function: {name, arguments (object)}}] */
static json_t *ollama_tool_calls(const json_t *calls) {
    json_t *out = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c) {
        json_array_append_new(out, json_pack("{s:{s:i,s:O,s:O}}", "function", "index", (int)i,
                                             "name", json_object_get(c, "name"), "arguments",
                                             json_object_get(c, "arguments")));
    }
    return out;
}

/* The piece of an answer: a message (chat) or "response" (generate). */
static json_t *part(const struct srv_job *j, const char *text, size_t len, json_t *tool_calls) {
    json_t *v = head(j);
    if (j->g->kind == SRV_KIND_CHAT) {
        json_t *m =
            json_pack("{s:s,s:o}", "role", "assistant", "content", srv_json_text(text, len));
        if (tool_calls) {
            json_object_set_new(m, "tool_calls", tool_calls);
        }
        json_object_set_new(v, "message", m);
    } else {
        json_object_set_new(v, "response", srv_json_text(text, len));
    }
    json_object_set_new(v, "done", json_false());
    return v;
}

static void add_stats(const struct srv_job *j, json_t *v, const char *reason) {
    const struct srv_item *it = j->n_items ? &j->items[0] : NULL;
    double total = slm_time_mono() - j->t_start;
    json_object_set_new(v, "done", json_true());
    json_object_set_new(v, "done_reason", json_string(reason));
    json_object_set_new(v, "total_duration", json_integer((json_int_t)(total * 1e9)));
    json_object_set_new(v, "load_duration", json_integer((json_int_t)(j->t_load * 1e9)));
    if (!it) {
        return;
    }
    json_object_set_new(
        v, "prompt_eval_count",
        json_integer(it->stats.n_prompt ? it->stats.n_prompt : (json_int_t)it->n_toks));
    json_object_set_new(v, "prompt_eval_duration",
                        json_integer((json_int_t)(it->stats.t_prompt * 1e9)));
    json_object_set_new(v, "eval_count", json_integer(it->stats.n_gen));
    json_object_set_new(v, "eval_duration", json_integer((json_int_t)(it->stats.t_gen * 1e9)));
}

static const char *incomplete_msg = "the output was cut at num_predict before the JSON was "
                                    "complete: raise num_predict";

/* The JSON format check: INVALID fails, INCOMPLETE is noted. */
static int check_format(const struct srv_job *j, json_t *final, struct srv_error *e) {
    if (!j->n_items) {
        return SLM_OK;
    }
    struct slm_err err = {0};
    int rc = srv_job_check_json(j, &j->items[0], &err);
    if (rc == SLM_E_INCOMPLETE && final) {
        json_object_set_new(final, "output_incomplete", json_string(incomplete_msg));
    }
    if (rc == SLM_E_INVALID) {
        return srv_error_set(e, rc, 422, "invalid_request_error", "output_invalid", "%s", err.msg);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- whole answers */

static json_t *whole(struct srv_job *j, struct srv_error *e) {
    struct srv_item *it = &j->items[0];
    const char *reason = srv_finish_reason(it);
    json_t *calls = NULL;
    struct slm_buf rest = {0};
    slm_buf_init(&rest, SRV_MAX_TEXT);
    if (j->tools_on) {
        slm_tools_parse(it->text.ptr, it->text.len, j->g->tools, true, &calls, &rest);
    }
    json_t *v = json_array_size(calls) ? part(j, rest.ptr, rest.len, ollama_tool_calls(calls))
                                       : part(j, it->text.ptr, it->text.len, NULL);
    json_decref(calls);
    slm_buf_free(&rest);
    add_stats(j, v, reason);
    if (j->g->logprobs) {
        json_object_set_new(v, "logprobs", srv_logprobs_content(j, it->recs, it->n_recs));
    }
    if (check_format(j, v, e) != SLM_OK) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static enum MHD_Result load_only(struct srv_conn *rc, struct srv_job *j) {
    json_t *v = head(j);
    bool unload = j->g->keep_alive_ms == 0;
    if (j->g->kind == SRV_KIND_CHAT) {
        json_object_set_new(v, "message",
                            json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
    } else {
        json_object_set_new(v, "response", json_string(""));
    }
    json_object_set_new(v, "done", json_true());
    json_object_set_new(v, "done_reason", json_string(unload ? "unload" : "load"));
    srv_job_free(j); /* releasing with keep_alive 0 unloads */
    return srv_reply_json(rc, 200, v);
}

/* ---------------------------------------------------------------- streams */

static void job_free_cb(void *ctx) {
    srv_job_free(ctx);
}

static int emit_end(struct srv_job *j, struct slm_buf *out) {
    struct srv_item *it = &j->items[0];
    struct srv_error e = {0};
    if (srv_job_item_error(j, &e) != SLM_OK) {
        return ndjson(out, srv_error_json(SRV_API_OLLAMA, &e));
    }
    int rc = SLM_OK;
    bool called = false;
    if (j->tools_on) {
        json_t *calls = NULL;
        struct slm_buf rest = {0};
        slm_buf_init(&rest, SRV_MAX_TEXT);
        slm_tools_parse(it->text.ptr + it->sent, it->text.len - it->sent, j->g->tools,
                        it->sent == 0, &calls, &rest);
        if (json_array_size(calls)) {
            rc = ndjson(out, part(j, rest.ptr, rest.len, ollama_tool_calls(calls)));
            it->sent = it->text.len;
            called = true;
        }
        json_decref(calls);
        slm_buf_free(&rest);
    }
    /* The last poll's text and log-prob records (not sent by ollama_step,
     * which leaves a finished answer's end to this function). */
    bool lp = j->g->logprobs && it->n_fresh && !called;
    if (rc == SLM_OK && (it->sent < it->text.len || lp)) {
        json_t *v = part(j, it->text.ptr + it->sent, it->text.len - it->sent, NULL);
        if (lp && v) {
            json_object_set_new(v, "logprobs", srv_logprobs_content(j, it->fresh, it->n_fresh));
        }
        rc = ndjson(out, v);
        it->sent = it->text.len;
    }
    json_t *final = part(j, "", 0, NULL);
    add_stats(j, final, srv_finish_reason(it));
    if (check_format(j, final, &e) != SLM_OK) {
        json_decref(final);
        return rc == SLM_OK ? ndjson(out, srv_error_json(SRV_API_OLLAMA, &e)) : rc;
    }
    return rc == SLM_OK ? ndjson(out, final) : rc;
}

static int ollama_step(struct srv_stream *st) {
    struct srv_job *j = st->ctx;
    struct srv_item *it = &j->items[0];
    bool changed;
    struct srv_error e = {0};
    int rc = srv_stream_poll(j, &changed, &e);
    if (rc == SLM_OK && e.status) {
        st->finished = true;
        return ndjson(&st->out, srv_error_json(SRV_API_OLLAMA, &e));
    }
    if (rc == SLM_OK && changed && !it->done) {
        size_t upto = srv_job_releasable(j, it);
        bool lp = j->g->logprobs && it->n_fresh;
        if (upto > it->sent || lp) {
            json_t *v = part(j, it->text.ptr + it->sent, upto - it->sent, NULL);
            if (lp && v) {
                json_object_set_new(v, "logprobs", srv_logprobs_content(j, it->fresh, it->n_fresh));
            }
            it->sent = upto;
            rc = ndjson(&st->out, v);
        }
    }
    if (rc == SLM_OK && j->finished) {
        st->finished = true;
        rc = emit_end(j, &st->out);
    }
    return rc;
}

/* ---------------------------------------------------------------- route */

enum MHD_Result srv_ollama_generate(struct srv_conn *rc, enum srv_route_id route) {
    struct srv_error e = {0};
    enum MHD_Result reply;
    struct srv_job *j = srv_job_from_body(rc, route, SRV_API_OLLAMA, &reply);
    if (!j) {
        return reply;
    }
    if (j->g->load_only) {
        return load_only(rc, j);
    }
    if (srv_job_submit(j, &e) != SLM_OK) {
        srv_job_free(j);
        return srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    if (j->g->stream) {
        return srv_reply_stream(rc, "application/x-ndjson", ollama_step, j, job_free_cb);
    }
    int r = srv_job_wait(j, &e);
    if (r == SLM_OK) {
        r = srv_job_item_error(j, &e);
    }
    json_t *body = r == SLM_OK ? whole(j, &e) : NULL;
    srv_job_free(j);
    if (!body) {
        return e.status == 499 ? MHD_NO : srv_reply_error(rc, SRV_API_OLLAMA, &e);
    }
    return srv_reply_json(rc, 200, body);
}
