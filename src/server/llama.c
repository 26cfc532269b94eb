/*
 * server/llama.c - llama-server's POST /infill (fill in the middle), so that
 * editor plugins written for llama-server (llama.vim, llama.vscode) work
 * unchanged against `slm serve`: the prompt is built as llama-server builds it
 * (slm_fim_tokens, prompt.c) and the reply has llama-server's /completion
 * shape (content, tokens, stop, stop_type, timings, ... or only the paths of
 * "response_fields"), whole or as SSE events without a [DONE] line.
 *
 * n_indent and t_max_predict_ms are applied here, to the text as it comes:
 * a line indented less than n_indent ends the answer before that line's
 * first character, and past t_max_predict_ms of generation a newline ends
 * it. The request is then cancelled; what the model generated after the cut
 * within the same poll (at most SRV_POLL_MS) is dropped.
 */
#include <string.h>

#include "server/internal.h"

/* Where n_indent or t_max_predict_ms cuts the item's text, or SIZE_MAX. */
static size_t fim_cut(const struct srv_job *j, const struct srv_item *it) {
    const struct srv_fim *f = &j->g->fim;
    const char *t = it->text.ptr;
    size_t n = it->text.len;
    const char *nl = t ? memchr(t, '\n', n) : NULL;
    if (!nl) {
        return SIZE_MAX;
    }
    if (f->n_indent > 0) {
        /* Every line after the first: its indentation, once it has more. */
        for (size_t pos = (size_t)(nl - t) + 1; pos < n;) {
            size_t ind = 0;
            while (pos + ind < n && (t[pos + ind] == ' ' || t[pos + ind] == '\t')) {
                ind++;
            }
            if (pos + ind < n && t[pos + ind] != '\n' && (int)ind < f->n_indent) {
                return pos + ind;
            }
            const char *next = memchr(t + pos, '\n', n - pos);
            if (!next) {
                break;
            }
            pos = (size_t)(next - t) + 1;
        }
    }
    if (f->t_max_predict_ms > 0 && it->started &&
        (slm_time_mono() - j->t_start) * 1000.0 > f->t_max_predict_ms) {
        const char *last = t + n;
        while (last > t && last[-1] != '\n') {
            last--;
        }
        return (size_t)(last - t);
    }
    return SIZE_MAX;
}

struct llama_reply {
    struct srv_job *j;
    size_t cut;    /* SIZE_MAX: no cut */
    bool limited;  /* stopped by n_indent or t_max_predict_ms */
    int32_t n_gen; /* tokens read so far (the stream's tokens_predicted) */
};

/* Applies the cut once it appears: cancels the request and remembers where. */
static void apply_cut(struct llama_reply *lr) {
    struct srv_item *it = &lr->j->items[0];
    if (lr->limited || !(lr->j->g->fim.n_indent > 0 || lr->j->g->fim.t_max_predict_ms > 0)) {
        return;
    }
    size_t cut = fim_cut(lr->j, it);
    if (cut != SIZE_MAX) {
        lr->cut = cut;
        lr->limited = true;
        if (!it->done) {
            srv_job_cancel(lr->j);
        }
    }
}

static size_t text_len(const struct llama_reply *lr) {
    const struct srv_item *it = &lr->j->items[0];
    return lr->limited ? SLM_MIN(lr->cut, it->text.len) : it->text.len;
}

static const char *stop_type(const struct llama_reply *lr) {
    if (lr->limited) {
        return "limit";
    }
    switch (lr->j->items[0].stats.finish) {
    case SLM_FINISH_STOP: return "eos";
    case SLM_FINISH_LENGTH:
    case SLM_FINISH_CONTEXT: return "limit";
    default: return "none";
    }
}

/* The generated token ids whose text lies within the answer's `n` bytes. */
static json_t *token_ids(const struct srv_job *j, const struct srv_item *it, size_t n) {
    json_t *a = json_array();
    struct slm_buf piece = {0};
    slm_buf_init(&piece, 4096);
    size_t at = 0;
    for (size_t i = 0; a && i < it->n_recs && at < n; i++) {
        slm_buf_clear(&piece);
        srv_job_token_text(j, it->recs[i].token, &piece);
        at += piece.len;
        json_array_append_new(a, json_integer(it->recs[i].token));
    }
    slm_buf_free(&piece);
    return a;
}

static json_t *timings(const struct srv_item *it) {
    const struct slm_gen_stats *s = &it->stats;
    double pm = s->t_prompt * 1000.0, gm = s->t_gen * 1000.0;
    int32_t pn = s->n_prompt - s->n_cached;
    return json_pack("{s:i,s:i,s:f,s:f,s:f,s:i,s:f,s:f,s:f}", "cache_n", s->n_cached, "prompt_n",
                     pn, "prompt_ms", pm, "prompt_per_token_ms", pn > 0 ? pm / pn : 0.0,
                     "prompt_per_second", pm > 0 ? 1e3 * pn / pm : 0.0, "predicted_n", s->n_gen,
                     "predicted_ms", gm, "predicted_per_token_ms",
                     s->n_gen > 0 ? gm / s->n_gen : 0.0, "predicted_per_second",
                     gm > 0 ? 1e3 * s->n_gen / gm : 0.0);
}

/* Keeps only the "a/b" paths asked for, as flat keys (llama-server's
 * json_get_nested_values); a path that does not exist is left out. */
static json_t *only_fields(json_t *res, const json_t *paths) {
    if (!paths) {
        return res;
    }
    json_t *out = json_object();
    size_t i;
    const json_t *p;
    json_array_foreach(paths, i, p) {
        const char *path = json_string_value(p);
        const json_t *cur = res;
        char key[256];
        for (const char *s = path; cur && *s;) {
            const char *slash = strchr(s, '/');
            size_t len = slash ? (size_t)(slash - s) : strlen(s);
            if (len >= sizeof(key)) {
                cur = NULL;
                break;
            }
            memcpy(key, s, len);
            key[len] = '\0';
            cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
            s += len + (slash != NULL);
        }
        if (cur && *path) {
            json_object_set(out, path, (json_t *)cur);
        }
    }
    json_decref(res);
    return out;
}

/* The final object: llama-server's to_json_non_oaicompat. */
static json_t *final_json(struct llama_reply *lr, bool streamed) {
    struct srv_job *j = lr->j;
    struct srv_item *it = &j->items[0];
    size_t n = text_len(lr);
    const char *t = it->text.ptr ? it->text.ptr : "";
    json_t *res = json_pack(
        "{s:i,s:o,s:o,s:i,s:b,s:s,s:i,s:i,s:b,s:b,s:s,s:s,s:i,s:o}", "index", 0, "content",
        streamed ? json_string("") : srv_json_text(t, n), "tokens",
        j->g->fim.return_tokens && !streamed ? token_ids(j, it, n) : json_array(), "id_slot", 0,
        "stop", true, "model", j->model_name, "tokens_predicted", it->stats.n_gen,
        "tokens_evaluated", it->stats.n_prompt, "has_new_line", memchr(t, '\n', n) != NULL,
        "truncated", false, "stop_type", stop_type(lr), "stopping_word", "", "tokens_cached",
        it->stats.n_prompt + it->stats.n_gen, "timings", timings(it));
    return only_fields(res, j->g->fim.response_fields);
}

static void llama_reply_free(void *ctx) {
    struct llama_reply *lr = ctx;
    srv_job_free(lr->j);
    free(lr);
}

static int llama_step(struct srv_stream *st) {
    struct llama_reply *lr = st->ctx;
    struct srv_job *j = lr->j;
    struct srv_item *it = &j->items[0];
    bool changed;
    struct srv_error e = {0};
    int rc = srv_stream_poll(j, &changed, &e);
    if (rc == SLM_OK && e.status) {
        st->finished = true;
        return srv_sse_event(&st->out, srv_error_json(SRV_API_OPENAI, &e));
    }
    apply_cut(lr);
    lr->n_gen += (int32_t)it->n_fresh;
    size_t upto = SLM_MIN(text_len(lr), j->finished ? it->text.len : srv_job_releasable(j, it));
    if (rc == SLM_OK && upto > it->sent) {
        rc = srv_sse_event(&st->out,
                           json_pack("{s:i,s:o,s:[],s:b,s:i,s:i,s:i}", "index", 0, "content",
                                     srv_json_text(it->text.ptr + it->sent, upto - it->sent),
                                     "tokens", "stop", false, "id_slot", 0, "tokens_predicted",
                                     lr->n_gen, "tokens_evaluated", (int)it->n_toks));
        it->sent = upto;
    }
    if (rc == SLM_OK && j->finished) {
        st->finished = true;
        rc = srv_job_item_error(j, &e) == SLM_OK || lr->limited
                 ? srv_sse_event(&st->out, final_json(lr, true))
                 : srv_sse_event(&st->out, srv_error_json(SRV_API_OPENAI, &e));
    }
    return rc;
}

enum MHD_Result srv_llama_infill(struct srv_conn *rc) {
    struct srv_error e = {0};
    enum MHD_Result reply;
    struct srv_job *j = srv_job_from_body(rc, SRV_R_LLAMA_INFILL, SRV_API_OPENAI, &reply);
    if (!j) {
        return reply;
    }
    srv_make_id("infill-", j->id, sizeof(j->id));
    /* Token records carry the ids that "return_tokens" lists. */
    j->g->logprobs = j->g->logprobs || j->g->fim.return_tokens;
    struct llama_reply *lr = calloc(1, sizeof(*lr));
    if (!lr) {
        srv_job_free(j);
        return MHD_NO;
    }
    lr->j = j;
    lr->cut = SIZE_MAX;
    if (srv_job_submit(j, &e) != SLM_OK) {
        llama_reply_free(lr);
        return srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    if (j->g->stream) {
        return srv_reply_stream(rc, "text/event-stream", llama_step, lr, llama_reply_free);
    }
    int r = SLM_OK;
    while (r == SLM_OK && !j->finished) {
        bool changed;
        r = srv_job_poll(j, SRV_POLL_MS, &changed);
        if (r == SLM_OK && !j->finished) {
            r = srv_job_check_alive(j, &e);
        }
        apply_cut(lr);
    }
    if (r == SLM_OK && !lr->limited) {
        r = srv_job_item_error(j, &e);
    }
    json_t *body = r == SLM_OK ? final_json(lr, false) : NULL;
    llama_reply_free(lr);
    if (!body) {
        return e.status == 499 ? MHD_NO : srv_reply_error(rc, SRV_API_OPENAI, &e);
    }
    return srv_reply_json(rc, 200, body);
}
