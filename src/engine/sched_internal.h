/*
 * engine/sched_internal.h - what the scheduler (sched.c) and the request
 * channel (sched_req.c) share. Never included outside src/engine/.
 *
 * A request is held by two owners, the reader (until slm_request_free) and
 * the scheduler (until it finishes the request); `refs` counts them and the
 * last one frees it. Lock order: a request's mutex before the scheduler's.
 */
#ifndef SLM_ENGINE_SCHED_INTERNAL_H
#define SLM_ENGINE_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "slm/sched.h"

/* Token records a request's channel holds before its sequence pauses (the
 * reader is behind; other sequences go on). */
#define SLM_CHAN_TOKENS 256
/* Bytes of unread text likewise. */
#define SLM_CHAN_TEXT 16384
/* Stop strings per request, and bytes per stop string. */

struct slm__chan_tok {
    int32_t token;
    float logprob;
    int32_t n_top;
    uint32_t text_end; /* offset in the channel's text where this token's text ends */
};

struct slm_request {
    /* Set at submit, then read-only. */
    struct slm_sched *sched; /* valid while `attached` */
    int32_t *prompt;
    size_t n_prompt;
    struct slm_gen_params gen; /* stop and grammar point into the copies below */
    char **stop;
    char *grammar;
    struct slm_adapter **adapters;
    float *scales;
    size_t n_adapters;
    bool embed;
    int k_top; /* alternatives per token record */
    int32_t n_embd;
    atomic_bool cancel;

    /* The channel, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool attached; /* the scheduler still holds the request */
    bool paused;   /* the scheduler skipped it for lack of room */
    bool finished;
    struct slm_buf text;
    struct slm__chan_tok *toks;
    struct slm_top_logprob *tops; /* k_top per record */
    size_t n_toks;
    int status;
    struct slm_err err;
    struct slm_gen_stats stats;
    float *embd; /* n_embd floats for embed requests; written before `finished` */

    /* The scheduler's queue link (under the scheduler's mutex). */
    struct slm_request *next;
};

/* Copies the prompt and params into a new request with refs = 2. */
int slm__req_new(struct slm_sched *s, const int32_t *prompt, size_t n_prompt,
                 const struct slm_req_params *params, int32_t n_embd, struct slm_request **out,
                 struct slm_err *err);
/* Drops one reference; the last frees. */
void slm__req_unref(struct slm_request *r);
/* True when the channel has room for one more token; otherwise marks the
 * request paused (the reader's next read wakes the scheduler). */
bool slm__req_has_room(struct slm_request *r);
/* Appends one token record and its released text; wakes the reader. */
int slm__req_post(struct slm_request *r, int32_t token, float logprob,
                  const struct slm_top_logprob *top, int n_top, const char *text, size_t len);
/* Appends text that belongs to no token (the stop filter's tail). */
int slm__req_post_text(struct slm_request *r, const char *text, size_t len);
/* Marks the request finished with `status` (and `msg` when failing),
 * detaches it from the scheduler and drops the scheduler's reference. */
void slm__req_finish(struct slm_request *r, int status, const char *msg,
                     const struct slm_gen_stats *stats);

/* Wakes the decode thread (after a cancel, or a read that made room). */
void slm__sched_kick(struct slm_sched *s);

#endif
