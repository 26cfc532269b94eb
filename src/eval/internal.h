/*
 * eval/internal.h - what the eval module's files share and nobody else sees.
 */
#ifndef SLM_EVAL_INTERNAL_H
#define SLM_EVAL_INTERNAL_H

#include "slm/contract.h"

/* The upstream's identity the cache keys on: "base_url model\n" per member (borrowed). */
const char *slm__contract_identity(const struct slm_contract_upstream *u);

#endif /* SLM_EVAL_INTERNAL_H */
