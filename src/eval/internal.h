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

#endif /* SLM_EVAL_INTERNAL_H */
