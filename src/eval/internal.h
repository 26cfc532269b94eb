/*
 * eval/internal.h - what the eval module's files share and nobody else sees:
 * the contractor's identity for the cache key, and the backends of local
 * candidates (backends.c), used by the run (run.c).
 */
#ifndef SLM_EVAL_INTERNAL_H
#define SLM_EVAL_INTERNAL_H

#include "slm/contract.h"

/* The upstream's identity the cache keys on: "base_url model\n" per member (borrowed). */
const char *slm__contract_identity(const struct slm_contract_upstream *u);

/* Errors that end a run rather than fail one answer: the cost cap, an interrupt, the cache, no
 * memory, a bad request, a refused key (it would fail every row the same way). */
bool slm__contract_fatal(int rc, const struct slm_contract_reply *rep);

/* Checks one answer: SLM_OK with *value (a new reference), or an error whose message is meant
 * for the model on a retry. */
typedef int (*slm__contract_check_fn)(const void *user, const char *text, const char *finish,
                                      json_t **value, struct slm_err *err);
/*
 * One checked answer: asks, checks, and retries once with the error shown to the model. Returns
 * SLM_OK with *value, or SLM_OK with *value NULL and `why` saying why there is none (a failed
 * check twice, an upstream error), or a fatal status (slm__contract_fatal()).
 */
int slm__contract_ask(struct slm_contract *c, const json_t *req, slm__contract_check_fn check,
                      const void *check_user, json_t **value, char *why, size_t why_cap,
                      struct slm_err *err);

#include "slm/eval.h"

struct slm_data_records;

/* The model file and adapter (or NULL) of a local candidate (malloc'ed). */
int slm__eval_local_paths(const struct slm_eval_candidate *c, char **model, char **adapter,
                          struct slm_err *err);
/* Label scoring as `slm tune eval` does it, over `recs` (borrowed; row i of the
 * run is recs->items[i]). */
int slm__eval_open_label(const struct slm_eval_candidate *c, const struct slm_data_records *recs,
                         int32_t n_threads, const volatile int *cancel,
                         struct slm_eval_backend *out, struct slm_err *err);
/* Greedy generation through the one request path. */
int slm__eval_open_gen(const struct slm_eval_candidate *c, int32_t n_threads,
                       struct slm_eval_backend *out, struct slm_err *err);
/* A route of a router.yaml through slm_router_chat(). */
int slm__eval_open_route(const struct slm_eval_candidate *c, int32_t n_threads,
                         struct slm_eval_backend *out, struct slm_err *err);
/* An upstream candidate through the contract `c` (borrowed): every row answered, `concurrency`
 * calls at once (cloud.c). */
int slm__eval_open_cloud(const struct slm_eval_suite *s, const struct slm_eval_candidate *cand,
                         struct slm_contract *c, int concurrency, const volatile int *cancel,
                         struct slm_eval_backend *out, struct slm_err *err);
/* The judge (judge.c): grades the answers in `r` (score, pass) or compares candidates
 * (pairwise) through the contract `c`, filling answers' judge fields or r->judged. */
int slm__eval_judge(struct slm_eval_result *r, const struct slm_eval_metric *m,
                    struct slm_contract *c, const struct slm_eval_run_params *p,
                    struct slm_err *err);

#endif /* SLM_EVAL_INTERNAL_H */
