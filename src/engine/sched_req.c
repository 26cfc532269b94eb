/*
 * engine/sched_req.c - a scheduled request and its channel: the bounded
 * buffer of released text and token records between the decode thread
 * (writer) and the reader, with a mutex and a condition variable.
 *
 * Everything the channel holds is allocated at submit: posting a token never
 * allocates. A full channel does not block the decode thread; the scheduler
 * pauses that one sequence until the reader catches up.
 */
#include "engine/sched_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"
#include "slm/sync.h"

/* Bytes of text one post may add beyond SLM_CHAN_TEXT (a piece plus what the
 * stop filter held back), so that the reservation made at submit holds. */
static size_t text_slack(const struct slm_request *r) {
    size_t longest = 0;
    for (size_t i = 0; i < r->gen.n_stop; i++) {
        longest = SLM_MAX(longest, strlen(r->stop[i]));
    }
    return 1024 + 2 * longest;
}

static void req_destroy(struct slm_request *r) {
    for (size_t i = 0; r->stop && i < r->gen.n_stop; i++) {
        free(r->stop[i]);
    }
    free(r->stop);
    free(r->grammar);
    free(r->prompt);
    free(r->adapters);
    free(r->scales);
    free(r->toks);
    free(r->tops);
    free(r->embd);
    slm_buf_free(&r->text);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static int copy_params(struct slm_request *r, const struct slm_req_params *p, struct slm_err *err) {
    r->gen = p->gen;
    r->gen.stop = NULL;
    r->gen.n_stop = 0;
    r->gen.sample.grammar = NULL;
    if (p->gen.n_stop > SLM_MAX_STOP) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%zu stop strings; at most %d", p->gen.n_stop,
                           SLM_MAX_STOP);
    }
    if (p->gen.n_stop > 0) {
        r->stop = calloc(p->gen.n_stop, sizeof(*r->stop));
        if (!r->stop) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < p->gen.n_stop; i++) {
        size_t n = strlen(p->gen.stop[i]);
        if (n > SLM_MAX_STOP_LEN) {
            return slm_err_set(err, SLM_E_TOO_LARGE, "stop string %zu is %zu bytes; at most %d", i,
                               n, SLM_MAX_STOP_LEN);
        }
        r->stop[i] = slm_str_dup(slm_str_n(p->gen.stop[i], n));
        if (!r->stop[i]) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        r->gen.n_stop = i + 1;
    }
    r->gen.stop = (const char *const *)r->stop;
    if (p->gen.sample.grammar && p->gen.sample.grammar[0]) {
        r->grammar = slm_str_dup(slm_str_c(p->gen.sample.grammar));
        if (!r->grammar) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        r->gen.sample.grammar = r->grammar;
    }
    if (p->n_adapters > 0) {
        r->adapters = malloc(p->n_adapters * sizeof(*r->adapters));
        r->scales = malloc(p->n_adapters * sizeof(*r->scales));
        if (!r->adapters || !r->scales) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        memcpy(r->adapters, p->adapters, p->n_adapters * sizeof(*r->adapters));
        for (size_t i = 0; i < p->n_adapters; i++) {
            r->scales[i] = p->scales ? p->scales[i] : 1.0f;
        }
        r->n_adapters = p->n_adapters;
    }
    r->embed = p->embed;
    return SLM_OK;
}

static int init_sync(struct slm_request *r) {
    if (slm_cond_init_mono(&r->cv) != 0) {
        return SLM_E_NOMEM;
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        pthread_cond_destroy(&r->cv);
        return SLM_E_NOMEM;
    }
    return SLM_OK;
}

int slm__req_new(struct slm_sched *s, const int32_t *prompt, size_t n_prompt,
                 const struct slm_req_params *params, int32_t n_embd, struct slm_request **out,
                 struct slm_err *err) {
    struct slm_request *r = calloc(1, sizeof(*r));
    if (!r) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (init_sync(r) != SLM_OK) {
        free(r);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    r->sched = s;
    r->refs = 2;
    r->attached = true;
    atomic_init(&r->cancel, false);
    slm_buf_init(&r->text, 0);
    int rc = copy_params(r, params, err);
    if (rc != SLM_OK) {
        req_destroy(r);
        return rc;
    }
    r->k_top = SLM_MAX(0, SLM_MIN(r->gen.n_top_logprobs, SLM_MAX_TOP_LOGPROBS));
    r->n_embd = n_embd;
    r->prompt = malloc(n_prompt * sizeof(*r->prompt));
    r->toks = malloc(SLM_CHAN_TOKENS * sizeof(*r->toks));
    if (r->k_top > 0) {
        r->tops = malloc((size_t)SLM_CHAN_TOKENS * (size_t)r->k_top * sizeof(*r->tops));
    }
    if (r->embed) {
        r->embd = calloc((size_t)n_embd, sizeof(*r->embd));
    }
    if (!r->prompt || !r->toks || (r->k_top > 0 && !r->tops) || (r->embed && !r->embd) ||
        slm_buf_reserve(&r->text, SLM_CHAN_TEXT + text_slack(r)) != SLM_OK) {
        req_destroy(r);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    memcpy(r->prompt, prompt, n_prompt * sizeof(*prompt));
    r->n_prompt = n_prompt;
    *out = r;
    return SLM_OK;
}

void slm__req_unref(struct slm_request *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left == 0) {
        req_destroy(r);
    }
}

bool slm__req_has_room(struct slm_request *r) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->n_toks < SLM_CHAN_TOKENS && r->text.len <= SLM_CHAN_TEXT;
    if (!ok) {
        r->paused = true;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

int slm__req_post(struct slm_request *r, int32_t token, float logprob,
                  const struct slm_top_logprob *top, int n_top, const char *text, size_t len) {
    pthread_mutex_lock(&r->mu);
    int rc = slm_buf_append(&r->text, text, len);
    if (rc == SLM_OK && r->n_toks < SLM_CHAN_TOKENS) {
        struct slm__chan_tok *t = &r->toks[r->n_toks];
        t->token = token;
        t->logprob = logprob;
        t->n_top = SLM_MIN(n_top, r->k_top);
        t->text_end = (uint32_t)r->text.len;
        if (t->n_top > 0) {
            memcpy(r->tops + r->n_toks * (size_t)r->k_top, top, (size_t)t->n_top * sizeof(*top));
        }
        r->n_toks++;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int slm__req_post_text(struct slm_request *r, const char *text, size_t len) {
    pthread_mutex_lock(&r->mu);
    int rc = slm_buf_append(&r->text, text, len);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void slm__req_finish(struct slm_request *r, int status, const char *msg,
                     const struct slm_gen_stats *stats) {
    pthread_mutex_lock(&r->mu);
    r->status = status;
    if (status != SLM_OK) {
        slm_err_set(&r->err, status, "%s", msg ? msg : slm_strerror(status));
    }
    if (stats) {
        r->stats = *stats;
    }
    r->finished = true;
    r->attached = false;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    slm__req_unref(r);
}

/* ---------------------------------------------------------------- reader side */

static bool has_output(const struct slm_request *r) {
    return r->text.len > 0 || r->n_toks > 0;
}

static void wait_output(struct slm_request *r, int timeout_ms) {
    if (timeout_ms == 0) {
        return;
    }
    double deadline = slm_time_mono() + (double)timeout_ms / 1000.0;
    while (!r->finished && !has_output(r)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else if (slm_cond_wait_until(&r->cv, &r->mu, deadline) == ETIMEDOUT) {
            break;
        }
    }
}

/* Moves `n` records (and the text up to the last one's end, or all text when
 * n is every record) out of the channel. */
static int take(struct slm_request *r, size_t n, struct slm_buf *text, struct slm_req_token *toks) {
    size_t tlen = n < r->n_toks ? r->toks[n - 1].text_end : r->text.len;
    int rc = slm_buf_append(text, r->text.ptr ? r->text.ptr : "", tlen);
    if (rc != SLM_OK) {
        return rc;
    }
    for (size_t i = 0; toks && i < n; i++) {
        const struct slm__chan_tok *t = &r->toks[i];
        toks[i].token = t->token;
        toks[i].logprob = t->logprob;
        toks[i].n_top = t->n_top;
        toks[i].text_end = t->text_end;
        if (t->n_top > 0) {
            memcpy(toks[i].top, r->tops + i * (size_t)r->k_top,
                   (size_t)t->n_top * sizeof(*r->tops));
        }
    }
    slm_buf_consume(&r->text, tlen);
    size_t rest = r->n_toks - n;
    memmove(r->toks, r->toks + n, rest * sizeof(*r->toks));
    if (r->k_top > 0) {
        memmove(r->tops, r->tops + n * (size_t)r->k_top,
                rest * (size_t)r->k_top * sizeof(*r->tops));
    }
    for (size_t i = 0; i < rest; i++) {
        r->toks[i].text_end -= (uint32_t)tlen;
    }
    r->n_toks = rest;
    return SLM_OK;
}

int slm_request_read(struct slm_request *r, int timeout_ms, struct slm_buf *text,
                     struct slm_req_token *toks, size_t cap, size_t *n_toks, bool *done) {
    *n_toks = 0;
    *done = false;
    pthread_mutex_lock(&r->mu);
    wait_output(r, timeout_ms);
    int rc = SLM_OK;
    if (has_output(r)) {
        bool want = toks && cap > 0;
        /* Not asked for records: they go with their text. */
        size_t n = want ? SLM_MIN(cap, r->n_toks) : r->n_toks;
        rc = take(r, n, text, want ? toks : NULL);
        if (rc == SLM_OK && want) {
            *n_toks = n;
        }
    }
    *done = r->finished && !has_output(r);
    if (r->paused && r->attached) {
        r->paused = false;
        slm__sched_kick(r->sched); /* lock order: request, then scheduler */
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int slm_request_result(struct slm_request *r, struct slm_gen_stats *stats, struct slm_err *err) {
    pthread_mutex_lock(&r->mu);
    int rc;
    if (!r->finished) {
        rc = slm_err_set(err, SLM_E_INVALID, "the request is still running");
    } else {
        rc = r->status;
        if (stats) {
            *stats = r->stats;
        }
        if (rc != SLM_OK && err) {
            *err = r->err;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

const float *slm_request_embedding(struct slm_request *r, int32_t *n_embd) {
    pthread_mutex_lock(&r->mu);
    bool ok = r->finished && r->status == SLM_OK && r->embd;
    pthread_mutex_unlock(&r->mu);
    if (n_embd) {
        *n_embd = ok ? r->n_embd : 0;
    }
    return ok ? r->embd : NULL;
}

void slm_request_cancel(struct slm_request *r) {
    atomic_store(&r->cancel, true);
    pthread_mutex_lock(&r->mu);
    if (r->attached) {
        slm__sched_kick(r->sched);
    }
    pthread_mutex_unlock(&r->mu);
}

void slm_request_free(struct slm_request *r) {
    if (!r) {
        return;
    }
    slm_request_cancel(r);
    slm__req_unref(r);
}
