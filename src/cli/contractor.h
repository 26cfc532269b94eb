/*
 * cli/contractor.h - the flags and the run loop that `slm label` and `slm distill` share (and
 * `slm eval`'s cloud candidates will): naming the upstream, the cache, the cost cap, the
 * concurrency, the request (template, system, sampling flags from the option table), reading
 * the rows, writing the output in input order, the progress bar and the summary. The work on
 * one row is the eval module's (slm/contract.h); this file only parses, prints and writes.
 */
#ifndef SLM_CLI_CONTRACTOR_H
#define SLM_CLI_CONTRACTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "cli/progress.h"
#include "slm/contract.h"

/* Exit code when the cost cap stops a run (docs/commands.md). */
#define SLM_EXIT_BUDGET 3

struct slm_cli_contractor {
    const char *cmd; /* "label", "distill" */
    struct slm_contract_upstream_spec spec;
    const char *api_key_env;
    const char *cache_path;
    bool no_cache;
    double max_cost; /* 0 = none */
    long long concurrency;
    const char *template_path;
    const char *system;
    const char *out_path;
    const char *input;
    bool quiet;
    json_t *fields; /* request fields from the sampling flags */
    bool max_tokens_set;

    /* opened by slm_cli_contractor_open() */
    struct slm_liquid_template *tmpl;
    struct slm_contract_upstream *upstream;
    struct slm_contract_cache *cache;
    struct slm_contract *contract;
    json_t **rows;
    size_t n_rows;
    FILE *out;
    char tmp_path[4096];
    struct slm_cli_progress bar;
    double t0;
};

/* The shared flags' help lines (printed inside each command's usage). */
extern const char SLM_CLI_CONTRACTOR_HELP[];

void slm_cli_contractor_init(struct slm_cli_contractor *o, const char *cmd);
/* Opens the upstream `spec` names; `api_key_env` (may be NULL) names the environment variable
 * holding an inline upstream's key, `how` the flag or key that named it (for messages). */
int slm_cli_upstream_open(struct slm_contract_upstream_spec *spec, const char *api_key_env,
                          const char *how, struct slm_contract_upstream **out, struct slm_err *err);
/* Parses argv[*i] when it is a shared flag (advancing *i past its value): 1 when it was one,
 * 0 when not, -1 after printing an error for a bad value. */
int slm_cli_contractor_flag(struct slm_cli_contractor *o, int argc, char **argv, int *i);
/* Checks the flags, opens the template, upstream, cache and contract, reads the rows and opens
 * the output; returns an exit code (SLM_EXIT_OK to go on) after printing any error. */
int slm_cli_contractor_open(struct slm_cli_contractor *o);
/* Runs `row` over the rows, writing each output row as a JSON line; `count` (may be NULL) sees
 * every output array in order (for the summary's counts). Returns the exit code after the
 * cost-cap / interrupt / error message; `done` receives the rows written. */
int slm_cli_contractor_run(struct slm_cli_contractor *o, slm_contract_row_fn row, void *user,
                           void (*count)(void *user, const json_t *out), size_t *done);
/* slm_cli_fail() for these commands: exit 3 means the cost cap here, so a missing file or
 * upstream exits 1. */
int slm_cli_contractor_fail(const char *cmd, int status, const struct slm_err *err);
/* "calls 12, from cache 3, cost $0.0123" into `buf`. */
void slm_cli_contractor_calls(struct slm_cli_contractor *o, char *buf, size_t cap);
void slm_cli_contractor_free(struct slm_cli_contractor *o);

#endif /* SLM_CLI_CONTRACTOR_H */
