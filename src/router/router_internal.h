/*
 * router_internal.h - what the router's files share (config.c, route.c,
 * local.c, checks.c, policy.c). Not installed.
 */
#ifndef SLM_ROUTER_INTERNAL_H
#define SLM_ROUTER_INTERNAL_H

#include <pthread.h>

#include "slm/liquid.h"
#include "slm/options.h"
#include "slm/router.h"
#include "slm/score.h"
#include "slm/sched.h"
#include "slm/store.h"
#include "slm/turn.h"

/* A local target at run time: resolved on first use. */
struct slm__local_rt {
    const struct slm_router_local *cfg;
    pthread_mutex_t mu; /* lazy resolution; label scoring (scorer and label set are
                           one-thread-at-a-time objects) */
    bool resolved;
    /* the model with the config's template, system, parameters and adapters
     * (slm/turn.h); NULL until resolved */
    struct slm_turn *turn;
    /* label scoring: the model stays pinned in the pool while the router lives */
    struct slm_sched *pinned_sched;
    struct slm_model *pinned_model;
    struct slm_scorer *scorer;
    struct slm_label_set *labels;
};

struct slm_router {
    struct slm_router_config *cfg;
    struct slm_pool *pool;
    bool own_pool;
    struct slm_store *store;
    bool own_store;
    struct slm_ledger *ledger;
    bool own_ledger;
    struct slm_upstream_pool **upstreams; /* per cfg->pools */
    struct slm__local_rt *locals;         /* per cfg->locals */
    int32_t n_threads;
    pthread_mutex_t mu; /* rng, request counter, shadow bookkeeping */
    pthread_cond_t shadow_done;
    int shadow_running, shadow_max;
    uint64_t shadows_started, shadows_skipped;
    /* set once by slm_router_shutdown(): the shadow calls' cancel flag (read without the lock,
     * as slm_upstream_chat() polls it; written under it) */
    volatile int stopping;
    uint64_t rng;
    uint64_t n_requests;
};

/* The parts of an OpenAI chat request the router reads. */
struct slm__req_view {
    const char *model;
    const json_t *messages;  /* array, borrowed */
    char *input;             /* last user message's text (heap) */
    const char *system;      /* first system message, or NULL (borrowed) */
    const json_t *variables; /* object or NULL (borrowed) */
    const char *id;          /* request "id" if any (batch), or NULL */
};

int slm__req_view_init(const json_t *request, struct slm__req_view *v, struct slm_err *err);
void slm__req_view_free(struct slm__req_view *v);
/* Text of a message's content: a string, or the text parts of an array. Heap. */
char *slm__message_text(const json_t *content);

/* Runs the local target; local failures land in out->status, not the return. */
int slm__local_run(struct slm_router *r, size_t local, const struct slm__req_view *rv,
                   const json_t *request, const volatile int *cancel,
                   struct slm_router_local_result *out, struct slm_err *err);
void slm__local_rt_free(struct slm_router *r, struct slm__local_rt *lt);

/* Input checks (no model needed): fail count, results added to `checks`
 * and failed ones appended to `reason` ("input_chars>8000"). */
int slm__checks_input(const struct slm_router_checks *c, const struct slm_input_signals *in,
                      json_t *checks, struct slm_buf *reason);
/* Every check on a local result (input token count, confidence, labels,
 * output checks, local error). Returns the number that failed. */
int slm__checks_output(const struct slm_router_checks *c, const struct slm_router_local *t,
                       const struct slm_router_local_result *res, const char *input, json_t *checks,
                       struct slm_buf *reason);
/* Normalised comparison of two answers for shadow agreement. */
bool slm__answers_agree(const char *a, const char *b);

#endif /* SLM_ROUTER_INTERNAL_H */
