/*
 * server/openai.c - the OpenAI routes: /v1/chat/completions and
 * /v1/completions (whole answers and SSE streams, with logprobs, JSON
 * formats and tool calls) and /v1/models.
 *
 * Shapes follow the OpenAI API reference; what slm adds or leaves out is in
 * docs/api.md.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/router.h"

/* ---------------------------------------------------------------- logprobs */

/* Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}. */
static json_t *chat_logprobs(const struct srv_job *j, const struct slm_req_token *recs, size_t n) {
    return json_pack("{s:o,s:n}", "content", srv_logprobs_content(j, recs, n), "refusal");
}

/* Legacy completions logprobs: {tokens, token_logprobs, top_logprobs, text_offset}. */
static json_t *legacy_logprobs(const struct srv_job *j, const struct slm_req_token *recs, size_t n,
                               size_t *offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    struct slm_buf piece = {0};
    slm_buf_init(&piece, 4096);
    for (size_t i = 0; i < n; i++) {
        slm_buf_clear(&piece);
        if (srv_job_token_text(j, recs[i].token, &piece) != SLM_OK) {
            slm_buf_clear(&piece);
        }
        json_array_append_new(tokens, srv_json_text(piece.ptr, piece.len));
        json_array_append_new(lps, json_real(recs[i].logprob));
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += piece.len;
        json_t *top = json_object();
        for (int k = 0; top && k < recs[i].n_top && k < j->g->top_logprobs; k++) {
            slm_buf_clear(&piece);
            if (srv_job_token_text(j, recs[i].top[k].token, &piece) == SLM_OK) {
                json_t *key = srv_json_text(piece.ptr, piece.len);
                if (key) {
                    json_object_set_new(top, json_string_value(key),
                                        json_real(recs[i].top[k].logprob));
                }
                json_decref(key);
            }
        }
        json_array_append_new(tops, top);
    }
    slm_buf_free(&piece);
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs",
                     tops, "text_offset", offs);
}

/* ---------------------------------------------------------------- tool calls */

/* [{index, id, type, function: {name, arguments (JSON text)}}]. */
static json_t *openai_tool_calls(const json_t *calls, bool with_index) {
    json_t *out = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c) {
        char id[48];
        srv_make_id("call_", id, sizeof(id));
        char *args = json_dumps(json_object_get(c, "arguments"), JSON_COMPACT);
        json_t *tc = json_pack("{s:s,s:s,s:{s:O,s:s}}", "id", id, "type", "function", "function",
                               "name", json_object_get(c, "name"), "arguments", args ? args : "{}");
        free(args);
        if (tc && with_index) {
            json_object_set_new(tc, "index", json_integer((json_int_t)i));
        }
        json_array_append_new(out, tc);
    }
    return out;
}

/* ---------------------------------------------------------------- whole answers */

static json_t *usage(const struct srv_job *j) {
    int64_t p, g, c;
    srv_job_usage(j, &p, &g, &c);
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)p, "completion_tokens",
                     (json_int_t)g, "total_tokens", (json_int_t)(p + g), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)c);
}

static json_t *incomplete_note(void) {
    return json_pack("{s:s,s:s}", "type", "output_incomplete", "message",
                     "the output was cut at max_tokens before the JSON was complete: raise "
                     "max_tokens");
}

/* Checks JSON formats of every choice: an invalid answer fails the request
 * (422); one cut by the length limit is marked. */
static int check_formats(struct srv_job *j, bool *incomplete, struct srv_error *e) {
    for (size_t i = 0; i < j->n_items; i++) {
        struct slm_err err = {0};
        int rc = srv_job_check_json(j, &j->items[i], &err);
        incomplete[i] = rc == SLM_E_INCOMPLETE;
        if (rc == SLM_E_INVALID) {
            return srv_error_set(e, rc, 422, "invalid_request_error", "output_invalid", "%s",
                                 err.msg);
        }
    }
    return SLM_OK;
}

static json_t *chat_choice(struct srv_job *j, struct srv_item *it, bool incomplete) {
    const char *finish = srv_finish_reason(it);
    json_t *message = json_pack("{s:s,s:n}", "role", "assistant", "refusal");
    json_t *content = NULL;
    if (j->tools_on) {
        json_t *calls = NULL;
        struct slm_buf rest = {0};
        slm_buf_init(&rest, SRV_MAX_TEXT);
        slm_tools_parse(it->text.ptr, it->text.len, j->g->tools, true, &calls, &rest);
        if (json_array_size(calls)) {
            json_object_set_new(message, "tool_calls", openai_tool_calls(calls, false));
            finish = "tool_calls";
            content = rest.len ? srv_json_text(rest.ptr, rest.len) : json_null();
        }
        json_decref(calls);
        slm_buf_free(&rest);
    }
    if (!content) {
        content = srv_json_text(it->text.ptr, it->text.len);
    }
    json_object_set_new(message, "content", content);
    json_t *c =
        json_pack("{s:i,s:o,s:s}", "index", it->index, "message", message, "finish_reason", finish);
    json_object_set_new(c, "logprobs",
                        j->g->logprobs ? chat_logprobs(j, it->recs, it->n_recs) : json_null());
    if (incomplete) {
        json_object_set_new(c, "error", incomplete_note());
    }
    return c;
}

static json_t *completion_choice(struct srv_job *j, struct srv_item *it, bool incomplete) {
    struct slm_buf text = {0};
    slm_buf_init(&text, SRV_MAX_TEXT * 2);
    size_t offset = 0;
    if (it->prompt_text) {
        offset = strlen(it->prompt_text);
        if (slm_buf_puts(&text, it->prompt_text) != SLM_OK) {
            slm_buf_clear(&text);
        }
    }
    if (slm_buf_append_str(&text, slm_buf_str(&it->text)) != SLM_OK) {
        slm_buf_clear(&text);
    }
    json_t *c =
        json_pack("{s:i,s:o,s:s}", "index", it->index, "text", srv_json_text(text.ptr, text.len),
                  "finish_reason", srv_finish_reason(it));
    slm_buf_free(&text);
    json_object_set_new(c, "logprobs",
                        j->g->logprobs ? legacy_logprobs(j, it->recs, it->n_recs, &offset)
                                       : json_null());
    if (incomplete) {
        json_object_set_new(c, "error", incomplete_note());
    }
    return c;
}

static json_t *whole_answer(struct srv_job *j, enum srv_route_id route, struct srv_error *e) {
    bool incomplete[SRV_MAX_CHOICES] = {false};
    if (check_formats(j, incomplete, e) != SLM_OK) {
        return NULL;
    }
    bool chat = route == SRV_R_OPENAI_CHAT;
    json_t *choices = json_array();
    for (size_t i = 0; choices && i < j->n_items; i++) {
        json_array_append_new(choices, chat ? chat_choice(j, &j->items[i], incomplete[i])
                                            : completion_choice(j, &j->items[i], incomplete[i]));
    }
    json_t *body = json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:o}", "id", j->id, "object",
                             chat ? "chat.completion" : "text_completion", "created",
                             (json_int_t)j->created, "model", j->model_name, "system_fingerprint",
                             "slm-" SLM_VERSION, "choices", choices, "usage", usage(j));
    if (!body) {
        srv_fail(e, SLM_E_NOMEM, NULL);
    }
    return body;
}

/* ---------------------------------------------------------------- streams */

static json_t *chunk(struct srv_job *j, bool chat, json_t *choice) {
    json_t *choices = choice ? json_pack("[o]", choice) : json_array();
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:o}", "id", j->id, "object",
                     chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)j->created, "model", j->model_name, "system_fingerprint",
                     "slm-" SLM_VERSION, "choices", choices);
}

struct oai_stream {
    struct srv_job *j;
    bool chat;
    size_t offsets[SRV_MAX_CHOICES]; /* legacy text_offset per choice */
};

static void oai_stream_free(void *ctx) {
    struct oai_stream *os = ctx;
    srv_job_free(os->j);
    free(os);
}

/* The chunk for what is new in one item (text up to `upto`, fresh logprobs). */
static int emit_delta(struct oai_stream *os, struct srv_item *it, size_t upto,
                      struct slm_buf *out) {
    struct srv_job *j = os->j;
    bool has_text = upto > it->sent;
    bool has_lp = j->g->logprobs && it->n_fresh;
    if (!has_text && !has_lp && (it->role_sent || !os->chat)) {
        return SLM_OK;
    }
    json_t *choice;
    json_t *text = srv_json_text(it->text.ptr + it->sent, upto - it->sent);
    if (os->chat) {
        json_t *delta = json_pack("{s:o}", "content", text);
        if (!it->role_sent) {
            json_object_set_new(delta, "role", json_string("assistant"));
        }
        choice = json_pack("{s:i,s:o,s:o,s:n}", "index", it->index, "delta", delta, "logprobs",
                           has_lp ? chat_logprobs(j, it->fresh, it->n_fresh) : json_null(),
                           "finish_reason");
    } else {
        if (!it->role_sent && it->prompt_text) { /* echo: the prompt comes first */
            size_t pl = strlen(it->prompt_text);
            os->offsets[it->index] = pl;
            struct slm_buf both = {0};
            slm_buf_init(&both, SRV_MAX_TEXT * 2);
            if (slm_buf_puts(&both, it->prompt_text) != SLM_OK ||
                slm_buf_append(&both, it->text.ptr + it->sent, upto - it->sent) != SLM_OK) {
                slm_buf_clear(&both);
            }
            json_decref(text);
            text = srv_json_text(both.ptr, both.len);
            slm_buf_free(&both);
        }
        choice =
            json_pack("{s:i,s:o,s:o,s:n}", "index", it->index, "text", text, "logprobs",
                      has_lp ? legacy_logprobs(j, it->fresh, it->n_fresh, &os->offsets[it->index])
                             : json_null(),
                      "finish_reason");
    }
    it->role_sent = true;
    it->sent = upto;
    return srv_sse_event(out, chunk(j, os->chat, choice));
}

/* The end of one item: leftover content, tool calls, finish_reason. */
static int emit_end(struct oai_stream *os, struct srv_item *it, struct slm_buf *out) {
    struct srv_job *j = os->j;
    const char *finish = srv_finish_reason(it);
    int rc = SLM_OK;
    if (j->tools_on && os->chat) {
        json_t *calls = NULL;
        struct slm_buf rest = {0};
        slm_buf_init(&rest, SRV_MAX_TEXT);
        slm_tools_parse(it->text.ptr + it->sent, it->text.len - it->sent, j->g->tools,
                        it->sent == 0, &calls, &rest);
        if (json_array_size(calls)) {
            if (rest.len) {
                json_t *d = json_pack("{s:o}", "content", srv_json_text(rest.ptr, rest.len));
                rc = srv_sse_event(out, chunk(j, true,
                                              json_pack("{s:i,s:o,s:n,s:n}", "index", it->index,
                                                        "delta", d, "logprobs", "finish_reason")));
            }
            json_t *d = json_pack("{s:o}", "tool_calls", openai_tool_calls(calls, true));
            if (!it->role_sent) {
                json_object_set_new(d, "role", json_string("assistant"));
                it->role_sent = true;
            }
            rc = rc == SLM_OK
                     ? srv_sse_event(out, chunk(j, true,
                                                json_pack("{s:i,s:o,s:n,s:n}", "index", it->index,
                                                          "delta", d, "logprobs", "finish_reason")))
                     : rc;
            it->sent = it->text.len;
            finish = "tool_calls";
        }
        json_decref(calls);
        slm_buf_free(&rest);
    }
    it->n_fresh = 0;
    rc = rc == SLM_OK ? emit_delta(os, it, it->text.len, out) : rc;
    json_t *choice = os->chat ? json_pack("{s:i,s:{},s:n,s:s}", "index", it->index, "delta",
                                          "logprobs", "finish_reason", finish)
                              : json_pack("{s:i,s:s,s:n,s:s}", "index", it->index, "text", "",
                                          "logprobs", "finish_reason", finish);
    struct slm_err err = {0};
    if (choice && srv_job_check_json(j, it, &err) == SLM_E_INCOMPLETE) {
        json_object_set_new(choice, "error", incomplete_note());
    }
    return rc == SLM_OK ? srv_sse_event(out, chunk(j, os->chat, choice)) : rc;
}

static int emit_error(struct slm_buf *out, const struct srv_error *e) {
    return srv_sse_event(out, srv_error_json(SRV_API_OPENAI, e));
}

static int emit_finish(struct oai_stream *os, struct slm_buf *out) {
    struct srv_job *j = os->j;
    struct srv_error e = {0};
    int rc = SLM_OK;
    if (srv_job_item_error(j, &e) != SLM_OK) {
        rc = emit_error(out, &e);
    } else {
        for (size_t i = 0; rc == SLM_OK && i < j->n_items; i++) {
            rc = emit_end(os, &j->items[i], out);
        }
        bool incomplete[SRV_MAX_CHOICES];
        if (rc == SLM_OK && check_formats(j, incomplete, &e) != SLM_OK) {
            rc = emit_error(out, &e);
        }
        if (rc == SLM_OK && j->g->include_usage) {
            json_t *c = chunk(j, os->chat, NULL);
            json_object_set_new(c, "usage", usage(j));
            rc = srv_sse_event(out, c);
        }
    }
    return rc == SLM_OK ? slm_buf_puts(out, "data: [DONE]\n\n") : rc;
}

static int oai_step(struct srv_stream *st) {
    struct oai_stream *os = st->ctx;
    struct srv_job *j = os->j;
    bool changed;
    struct srv_error e = {0};
    int rc = srv_stream_poll(j, &changed, &e);
    if (rc == SLM_OK && e.status) {
        st->finished = true;
        rc = emit_error(&st->out, &e);
        return rc == SLM_OK ? slm_buf_puts(&st->out, "data: [DONE]\n\n") : rc;
    }
    for (size_t i = 0; rc == SLM_OK && changed && i < j->n_items; i++) {
        struct srv_item *it = &j->items[i];
        /* An item that finished in this poll still has this poll's text and
         * log-prob records to send (they are gone after the next poll);
         * with tools, its end is parsed for calls first (emit_end). */
        if (!it->done || (!j->tools_on && (it->n_fresh || it->sent < it->text.len))) {
            rc = emit_delta(os, it, srv_job_releasable(j, it), &st->out);
        }
    }
    if (rc == SLM_OK && j->finished) {
        st->finished = true;
        rc = emit_finish(os, &st->out);
    }
    return rc;
}

/* ---------------------------------------------------------------- routes */

enum MHD_Result srv_openai_generate(struct srv_conn *rc, enum srv_route_id route) {
    struct srv_error e = {0};
    enum MHD_Result reply;
    struct srv_job *j = srv_job_from_body(rc, route, SRV_API_OPENAI, &reply);
    if (!j) {
        return reply;
    }
    srv_make_id(route == SRV_R_OPENAI_CHAT ? "chatcmpl-" : "cmpl-", j->id, sizeof(j->id));
    if (srv_job_submit(j, &e) != SLM_OK) {
        srv_job_free(j);
        return srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    if (j->g->stream) {
        struct oai_stream *os = calloc(1, sizeof(*os));
        if (!os) {
            srv_job_free(j);
            return MHD_NO;
        }
        os->j = j;
        os->chat = route == SRV_R_OPENAI_CHAT;
        return srv_reply_stream(rc, "text/event-stream", oai_step, os, oai_stream_free);
    }
    int r = srv_job_wait(j, &e);
    if (r == SLM_OK) {
        r = srv_job_item_error(j, &e);
    }
    json_t *body = r == SLM_OK ? whole_answer(j, route, &e) : NULL;
    srv_job_free(j);
    if (!body) {
        return e.status == 499 ? MHD_NO : srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    return srv_reply_json(rc, 200, body);
}

static json_t *model_object(const char *id, int64_t modified_ms) {
    return json_pack("{s:s,s:s,s:I,s:s}", "id", id, "object", "model", "created",
                     (json_int_t)(modified_ms / 1000), "owned_by", "slm");
}

enum MHD_Result srv_openai_models(struct srv_conn *rc, const char *one) {
    struct slm_server *s = rc->srv;
    struct srv_error e = {0};
    struct slm_err err = {0};
    struct slm_store_entry *list = NULL;
    size_t n = 0;
    pthread_mutex_lock(&s->store_lock);
    int r = slm_store_list(s->store, &list, &n, &err);
    pthread_mutex_unlock(&s->store_lock);
    if (r != SLM_OK) {
        srv_fail(&e, r, &err);
        return srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    json_t *data = json_array();
    json_t *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (list[i].damaged) {
            continue;
        }
        const char *name = list[i].name;
        if (one) {
            size_t ol = strlen(one), nl = strlen(name);
            bool same = strcmp(name, one) == 0 || (nl == ol + 7 && strncmp(name, one, ol) == 0 &&
                                                   !strcmp(name + ol, ":latest"));
            if (same && !found) {
                found = model_object(name, list[i].modified_ms);
            }
            continue;
        }
        json_array_append_new(data, model_object(name, list[i].modified_ms));
    }
    free(list);
    /* `--router`: its routes are models too (what clients put in "model"). */
    const struct slm_router_config *rcfg = s->p.router ? slm_router_get_config(s->p.router) : NULL;
    for (size_t i = 0; rcfg && i < rcfg->n_routes; i++) {
        const char *name = rcfg->routes[i].name;
        if (one && !found && strcmp(one, name) == 0) {
            found = json_pack("{s:s,s:s,s:i,s:s}", "id", name, "object", "model", "created", 0,
                              "owned_by", "slm-router");
        } else if (!one) {
            json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id", name, "object",
                                                  "model", "created", 0, "owned_by", "slm-router"));
        }
    }
    if (one) {
        json_decref(data);
        if (!found) {
            srv_error_set(&e, SLM_E_NOT_FOUND, 404, "invalid_request_error", "model_not_found",
                          "model '%s' not found (see GET /v1/models)", one);
            return srv_reply_error(rc, SRV_API_OPENAI, &e);
        }
        return srv_reply_json(rc, 200, found);
    }
    return srv_reply_json(rc, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}
