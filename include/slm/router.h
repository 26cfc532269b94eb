/*
 * slm/router.h - the small-first router: every request is answered by a local
 * model first; checks on that answer (and on the input) decide whether it
 * escalates, down a chain of upstream pools; every request is metered in the
 * ledger. The configuration is router.yaml (docs/router.md).
 *
 * Two layers:
 *  - the configuration (struct slm_router_config): parsing and validation
 *    only, no model, no network; every error names file, line and key
 *    ("router.yaml:12: routes[0].checks.label_prob: expected a number between
 *    0 and 1"). Unknown keys are errors: a typo must not silently disable a
 *    check.
 *  - the router (struct slm_router): the configuration bound to a model pool,
 *    upstream pools and a ledger; slm_router_chat() answers one request.
 *
 * Thread safety: slm_router_chat() may be called by any number of threads at
 * once (the HTTP server's threads): local generation goes through the model's
 * scheduler, label scoring is serialised per local target, upstream pools and
 * the ledger are thread-safe, shadow calls run on their own threads (at most
 * max_shadows at once, each with a deadline, cancelled by slm_router_shutdown()).
 * slm_router_load()/slm_router_free() are not synchronised with calls.
 */
#ifndef SLM_ROUTER_H
#define SLM_ROUTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"
#include "slm/ledger.h"
#include "slm/signals.h"
#include "slm/upstream.h"

/* ---------------------------------------------------------------- configuration */

struct slm_router_adapter {
    char *path; /* absolute, or relative to the yaml file's folder (resolved at parse) */
    float scale;
};

/* A `local:` target. */
struct slm_router_local {
    char *name;
    char *model; /* store name, alias, or a path (relative paths resolved against the yaml) */
    struct slm_router_adapter *adapters;
    size_t n_adapters;
    json_t *parameters;  /* Ollama-named options (validated through slm/options.h); never NULL */
    char *template_path; /* Liquid prompt template (absolute after parse), or NULL: chat template */
    char *system;        /* system prompt used when the request has none, or NULL */
    char **labels;       /* label set (from a list or a file, one label a line), or NULL */
    size_t n_labels;
    bool score_labels; /* label_mode: score (default with labels) = answer by scoring every
                          label; generate = free generation, labels only for `in_labels` */
    enum slm_label_correction correction;
    double timeout_s; /* local deadline; 0 = none */
};

/* One pool: the `upstreams:` entries that share a name. Strings owned. */
struct slm_router_pool {
    char *name;
    struct slm_upstream_member *members; /* strings owned by the config */
    char **api_key_envs;                 /* per member, or NULL */
    size_t n_members;
    struct slm_upstream_params params; /* members/name point into this struct */
};

/* Thresholds: NAN (or 0 / false for the output checks) = check off. */
struct slm_router_checks {
    double token_mean;     /* mean token probability must be >= */
    double token_min;      /* lowest token probability must be >= */
    double token_quantile; /* the `token_q` quantile of token probability must be >= */
    double token_q;        /* which quantile (0.1 default) */
    double label_prob;     /* probability of the chosen label must be >= */
    double label_margin;   /* best minus second label probability must be >= */
    int64_t input_tokens;  /* max prompt tokens (0 = off) */
    int64_t input_chars;   /* max input characters (0 = off) */
    double input_nontext;  /* max share of non-text characters */
    int64_t input_line;    /* max line length in characters (0 = off) */
    bool json;             /* output parses as JSON */
    json_t *json_schema;   /* output validates against this schema, or NULL */
    char *regex;           /* output matches this PCRE2 pattern, or NULL */
    bool in_labels;        /* output is one of the target's labels */
    char *liquid;          /* a Liquid condition over output/input/json that must be true */
    int64_t output_chars_min, output_chars_max; /* 0 = off */
    int64_t output_tokens_min, output_tokens_max;
    bool local_error; /* a local error escalates (default true); false = answer the error */
};

struct slm_router_route {
    char *name;   /* the request's "model" */
    size_t local; /* index into config->locals */
    struct slm_router_checks checks;
    size_t *escalate; /* indexes into config->pools, in order */
    size_t n_escalate;
    double shadow;     /* fraction of local answers also sent to the first upstream */
    double deadline_s; /* bound of the whole upstream phase; 0 = none */
};

struct slm_router_meter {
    char *ledger; /* path (absolute after parse), NULL = $SLM_HOME/ledger.db */
    bool off;     /* `ledger: off`: no metering */
    struct slm_cost_params cost;
};

struct slm_router_config {
    char *path; /* the yaml file */
    char *dir;  /* its folder: relative paths are resolved against it */
    struct slm_router_local *locals;
    size_t n_locals;
    struct slm_router_pool *pools;
    size_t n_pools;
    struct slm_router_route *routes;
    size_t n_routes;
    struct slm_router_meter meter;
    char *include_path; /* the thresholds file (absolute), or NULL */
};

/*
 * Parses and validates router.yaml (or JSON) `len` bytes named `name`; relative
 * paths resolve against `dir` (NULL = the folder of `name`). Files named by the
 * config (labels, schemas, the include) are read; templates must exist; models
 * are not loaded and API-key variables are read at load time, not here.
 * SLM_E_INVALID / SLM_E_NOT_FOUND with "file:line: key: message". On success
 * one slm_router_config_free() is owed.
 */
int slm_router_config_parse(const char *name, const char *text, size_t len, const char *dir,
                            struct slm_router_config **out, struct slm_err *err);
int slm_router_config_load(const char *path, struct slm_router_config **out, struct slm_err *err);
void slm_router_config_free(struct slm_router_config *cfg);
/* The route named `name`, or NULL. */
const struct slm_router_route *slm_router_config_route(const struct slm_router_config *cfg,
                                                       const char *name);

/* Opens the upstream pool named `name` (the `upstreams:` entries with that name) on its own,
 * without a router: what `slm label`, `slm distill` and `slm eval` call a cloud through. API
 * keys are read from the members' api_key_env variables (a missing one is SLM_E_INVALID naming
 * it) and stored in `cfg`; `seed` seeds the backoff jitter when the config has none (0 = the
 * clock). SLM_E_NOT_FOUND when no pool has that name (the message lists the names it has).
 * On success one slm_upstream_pool_free() is owed; the pool copies what it needs from `cfg`. */
int slm_router_config_open_pool(struct slm_router_config *cfg, const char *name, uint64_t seed,
                                struct slm_upstream_pool **out, struct slm_err *err);

/* ---------------------------------------------------------------- the router */

struct slm_pool;
struct slm_store;
struct slm_router;

struct slm_router_params {
    struct slm_pool *pool;     /* borrowed (the server's), or NULL: the router owns one */
    struct slm_store *store;   /* borrowed, or NULL: the router opens $SLM_HOME */
    struct slm_ledger *ledger; /* borrowed, or NULL: opened from meter.ledger (unless off) */
    uint64_t seed;             /* shadow sampling RNG; 0 = from the clock */
    int32_t n_threads;         /* label scorers' threads; 0 = physical cores */
    /* shadow calls in flight at once; past it a sampled request is not shadowed (counted in
     * slm_router_stats()); 0 = SLM_ROUTER_MAX_SHADOWS */
    int max_shadows;
};

/* Default cap of shadow calls in flight at once. */
#define SLM_ROUTER_MAX_SHADOWS 8
/* A shadow call's deadline when its route has no `deadline`, in seconds. */
#define SLM_ROUTER_SHADOW_DEADLINE_S 30.0

struct slm_router_params slm_router_params_default(void);

/* Loads the config, opens the upstream pools (API keys from their environment
 * variables: a missing variable is SLM_E_INVALID naming it) and the ledger.
 * Local models load on first use. On success one slm_router_free() is owed. */
int slm_router_load(const char *path, const struct slm_router_params *p, struct slm_router **out,
                    struct slm_err *err);
/* Waits for shadow calls still running (each bounded by its deadline; at once after
 * slm_router_shutdown()), then frees. NULL is a no-op. */
void slm_router_free(struct slm_router *r);
/* Cancels the shadow calls in flight (their rows stay, marked not shadowed) and starts no
 * new ones, so that slm_router_free() returns promptly: what a server does on SIGTERM. A
 * batch run that wants every shadow verdict frees without it. Thread-safe; NULL is a no-op. */
void slm_router_shutdown(struct slm_router *r);

struct slm_router_stats {
    uint64_t shadows_started; /* shadow calls started */
    uint64_t shadows_skipped; /* sampled for a shadow but not sent: the cap was reached */
    int shadows_running;      /* in flight now */
};
/* The router's counters. Thread-safe. */
void slm_router_stats(struct slm_router *r, struct slm_router_stats *out);
const struct slm_router_config *slm_router_get_config(const struct slm_router *r);

/* Where a request was answered, for the x-slm-route / x-slm-reason headers. */
struct slm_router_info {
    char route[24];     /* "local" | "escalated" | "local_fallback" */
    char reason[256];   /* reason codes, e.g. "label_prob<0.62,upstream:timeout"; "" when none */
    char target[256];   /* the local target name, or "pool/model" that answered */
    char name[128];     /* the route's name */
    double total_ms;    /* the whole call */
    double local_ms;    /* in the local target (resolve, render, tokenize, generate or score) */
    double upstream_ms; /* in upstream calls (retries and failed pools included) */
};

/*
 * Answers one OpenAI chat request body through the route named by its "model".
 * On success *response is an OpenAI chat.completion body (new reference) with
 * an extra "slm": {"route": "local"|"escalated"|"local_fallback", "reason":
 * "...", "target": "...", "checks": {...}} and `info` (may be NULL) filled.
 * The reason is codes only (docs/router.md): the failed checks and
 * "upstream:<code>" per failed pool; what an upstream said goes to the log.
 * SLM_E_NOT_FOUND when no route has that name; SLM_E_INVALID for a malformed
 * request; SLM_E_ABORTED when `cancel` (may be NULL) becomes non-zero; a local
 * error with `local_error: false` and no upstream is returned as is.
 * Every request of a route gets its ledger row, committed before this returns:
 * a cancelled one too (where "error", reason "client_aborted", or "shutdown"
 * when *cancel was SLM_ROUTER_CANCEL_SHUTDOWN).
 * Thread-safe (see the top of this header).
 */
int slm_router_chat(struct slm_router *r, const json_t *request, const volatile int *cancel,
                    json_t **response, struct slm_router_info *info, struct slm_err *err);
/* The value a server stores in slm_router_chat()'s `cancel` when it cancels because it is
 * stopping (any other non-zero value means the client left). */
#define SLM_ROUTER_CANCEL_SHUTDOWN 2
/* ... because the request ran past the server's --request-timeout (reason "timeout"). */
#define SLM_ROUTER_CANCEL_TIMEOUT 3

/* ---------------------------------------------------------------- local runs (calibration) */

/* What the local target said and the signals the checks read. */
struct slm_router_local_result {
    int status;              /* SLM_OK or the local error (overflow, timeout, ...) */
    char error[256];         /* message when status != SLM_OK */
    struct slm_buf text;     /* the answer (a label for label routes) */
    const char *finish;      /* "stop" | "length" | ... */
    int64_t n_prompt, n_gen; /* tokens */
    float *logprobs;         /* n_gen token log-probs (generation), malloc'ed */
    struct slm_token_conf tok;
    bool has_label;
    double label_prob, label_margin;
    size_t label_index;
    struct slm_input_signals input;
    double latency_ms;
};

/* Runs only the local target of `route` on `request` (no checks, no upstream,
 * no ledger): what `slm route calibrate` measures. Returns SLM_OK with the
 * local error in out->status, or SLM_E_NOT_FOUND / SLM_E_INVALID for the
 * request itself. One slm_router_local_result_free() is owed either way. */
int slm_router_run_local(struct slm_router *r, const char *route, const json_t *request,
                         const volatile int *cancel, struct slm_router_local_result *out,
                         struct slm_err *err);
void slm_router_local_result_free(struct slm_router_local_result *res);

/* ---------------------------------------------------------------- calibration runs */

struct slm_router_calib_params {
    double cloud_accuracy;      /* accuracy assumed for escalated rows (0..1; default 0.92) */
    double target_accuracy;     /* the accuracy to reach (0..1) */
    double confidence;          /* reach it with this one-sided confidence, not just on these rows
                                   (0.5..0.9999); 0 = 0.95; 0.5 = the measured accuracy */
    size_t limit;               /* usable rows at most; 0 = all */
    const volatile int *cancel; /* non-zero stops the run (SLM_E_ABORTED); may be NULL */
    /* After each line of the file is read: lines read so far. May be NULL. */
    void (*progress)(size_t lines, void *user);
    /* "FILE:LINE: why" for a row that cannot be used (it is skipped). May be NULL. */
    void (*note)(const char *line, void *user);
    void *user;
};

struct slm_router_calib_params slm_router_calib_params_default(void);

/* What a calibration run measured and chose. */
struct slm_router_calib {
    const char *key;     /* the check the threshold is for: "label_prob" or "token_mean" (static) */
    size_t n, n_correct; /* usable rows, answered right locally */
    double auroc, ece;   /* of the confidence for a right local answer (slm/signals.h) */
    double cloud_accuracy, target_accuracy, confidence; /* as asked (defaults applied) */
    struct slm_calib_point *curve; /* accuracy/cost over every threshold (owned) */
    size_t n_curve;
    struct slm_calib_point chosen, oracle;
    bool reached;     /* a threshold reaches the target; else `chosen` is the most accurate */
    double threshold; /* the value for the thresholds file (escalate-all is written as 1) */
};

/*
 * Runs `route`'s local target once per labelled row of the JSONL file `data`
 * ({"input" or "messages", "answer" or "label"}), reads its confidence (label
 * probability for label routes, else mean token probability), prices an
 * escalation at the first upstream's rates, and chooses the cheapest
 * threshold that reaches the target (slm_calib_choose, with the normal
 * quantile of `confidence` as z). Lines that are not JSON are skipped
 * silently; rows without the fields, or whose local run fails, go to
 * p->note. Nothing is written and no upstream is called.
 * Errors: SLM_E_NOT_FOUND (no such route, or `data` cannot be opened),
 * SLM_E_INVALID (the route escalates nowhere, no usable row), SLM_E_NOMEM,
 * SLM_E_ABORTED. On success one slm_router_calib_free() is owed.
 */
int slm_router_calibrate(struct slm_router *r, const char *route, const char *data,
                         const struct slm_router_calib_params *p, struct slm_router_calib *out,
                         struct slm_err *err);
void slm_router_calib_free(struct slm_router_calib *c);

/* Appends the report `slm route calibrate` prints: a summary line (rows,
 * accuracy, AUROC, ECE), the curve (about 20 rows), the oracle, and the
 * choice. */
int slm_router_calib_report(const struct slm_router_calib *c, struct slm_buf *out);
/* Appends the accuracy/cost chart as standalone SVG (slm/svg.h). */
int slm_router_calib_svg(const struct slm_router_calib *c, struct slm_buf *out);

/* Where calibrated thresholds go when no file is named: router.yaml's
 * include, else thresholds.yaml beside router.yaml (snprintf semantics). */
size_t slm_router_thresholds_path(const struct slm_router_config *cfg, char *out, size_t cap);
/* Sets routes.<route>.<key> = value in the thresholds file at `path`
 * (created if missing), keeping its other entries, under the comment line
 * `comment`; written atomically. */
int slm_router_write_thresholds(const char *path, const char *route, const char *key, double value,
                                const char *comment, struct slm_err *err);

#endif /* SLM_ROUTER_H */
