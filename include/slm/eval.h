/*
 * slm/eval.h - `slm eval`: candidates side by side on the same rows, the same
 * metrics, with the uncertainty shown (docs/eval.md).
 *
 * Four layers, each usable alone:
 *  - the suite (struct slm_eval_suite): a YAML (or JSON) file naming the data,
 *    the candidates and the metrics; parsing and validation only, every error
 *    names file, line and key ("suite.yaml:7: candidates[1].adapter: ...").
 *  - the run: every candidate answers every row through a backend (struct
 *    slm_eval_backend). Local candidates (store model, model + adapter, .gguf)
 *    go through the one request path (slm/turn.h) or, for the `label` metric,
 *    score every label exactly as `slm tune eval` does; route candidates go
 *    through slm_router_chat() without HTTP; upstream candidates and the
 *    judge call a cloud through the contractor (slm/contract.h: its cache,
 *    shared cost cap and retries), opened by slm_eval_run_params.open_cloud,
 *    many rows at once.
 *  - metrics and statistics: per row right/wrong (or a score), per candidate
 *    value with a seeded 95% bootstrap interval, per pair of candidates a paired
 *    McNemar test; every figure carries the number of rows behind it.
 *  - reports: a terminal table, JSON, Markdown, one self-contained HTML file.
 *
 * Library code: prints nothing. Thread safety: a suite and a result are
 * read-only once built; a run is one thread, and a backend may use more
 * inside (a cloud candidate and the judge send many calls at once).
 */
#ifndef SLM_EVAL_H
#define SLM_EVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"

struct slm_contract;

/* ---------------------------------------------------------------- suite */

#define SLM_EVAL_MAX_CANDIDATES 32
#define SLM_EVAL_MAX_METRICS 8

enum slm_eval_cand_kind {
    SLM_EVAL_CAND_MODEL = 0, /* `model: NAME` (store name, alias, or path) */
    SLM_EVAL_CAND_ADAPTER,   /* `model: NAME` + `adapter: FILE` */
    SLM_EVAL_CAND_GGUF,      /* `gguf: FILE` */
    SLM_EVAL_CAND_ROUTE,     /* `router: router.yaml` + `route: NAME` */
    SLM_EVAL_CAND_UPSTREAM,  /* `upstream: NAME` (+ `router:`), or `base-url:` + `model:` */
};

const char *slm_eval_cand_kind_name(enum slm_eval_cand_kind k);

/* One candidate. Paths are absolute, or resolved against the suite's folder. */
struct slm_eval_candidate {
    char *name; /* unique; default derived from what it runs */
    enum slm_eval_cand_kind kind;
    char *model;    /* MODEL / ADAPTER: the model reference; UPSTREAM inline: the cloud model */
    char *adapter;  /* ADAPTER */
    char *gguf;     /* GGUF */
    char *router;   /* ROUTE, or UPSTREAM by name */
    char *route;    /* ROUTE */
    char *upstream; /* UPSTREAM by name (a pool of router.yaml) */
    char *base_url, *api_key_env; /* UPSTREAM inline */
    double price_in, price_out;   /* UPSTREAM inline: USD per 1M tokens (0 = unknown) */
    double cost_per_1k;           /* local: a configured rate per 1,000 requests (0) */
    char *system;                 /* UPSTREAM: the system message, or NULL (a default for
                                   * `label`: the label set and "answer with one") */
    bool structured; /* UPSTREAM: constrain the answer with response_format (the label set as an
                      * enum, the json metric's schema); `structured: false` for clouds without
                      * structured outputs (default true) */
    int line;        /* where it is written in the suite */
};

enum slm_eval_metric_kind {
    SLM_EVAL_LABEL = 0, /* the answer is the expected label (local: every label scored) */
    SLM_EVAL_EXACT,     /* the answer equals the expected text (both trimmed) */
    SLM_EVAL_JSON,      /* valid JSON, schema-valid, per-field precision/recall/F1 */
    SLM_EVAL_REGEX,     /* the answer matches a pattern */
    SLM_EVAL_JUDGE,     /* a cloud model grades each answer against a rubric */
};

enum slm_eval_judge_mode {
    SLM_EVAL_JUDGE_SCORE = 0, /* a score from 1 to 5 per answer ("judge_score": the mean) */
    SLM_EVAL_JUDGE_PASS,      /* pass or fail per answer ("judge_pass": the pass rate) */
    SLM_EVAL_JUDGE_PAIRWISE,  /* two candidates' answers side by side, asked twice with the
                               * order swapped; a win counts only when both orders agree */
};

const char *slm_eval_judge_mode_name(enum slm_eval_judge_mode m);

const char *slm_eval_metric_name(enum slm_eval_metric_kind k);

struct slm_eval_metric {
    enum slm_eval_metric_kind kind;
    json_t *schema;   /* JSON: a JSON Schema (from `schema: FILE` or inline), or NULL */
    char *regex;      /* REGEX: the PCRE2 pattern */
    bool ignore_case; /* EXACT / REGEX */
    /* JUDGE: the mode, the rubric (a Liquid file; NULL = the mode's built-in rubric), for
     * pairwise the candidate every other is compared with (NULL = every pair), the judge's
     * upstream (as a candidate names one) and its answer's tokens at most. */
    enum slm_eval_judge_mode mode;
    char *rubric;
    char *against;
    char *router, *upstream, *base_url, *model, *api_key_env;
    double price_in, price_out;
    int32_t judge_max_tokens;
    int line;
};

struct slm_eval_suite {
    char *path; /* the file */
    char *dir;  /* its folder: relative paths resolve against it */
    char *name; /* `name:`, else the file's base name */
    struct {
        char *file;        /* JSONL or CSV rows */
        char *template;    /* Liquid file rendering the prompt from a row, or NULL */
        char *expected;    /* the field holding the expected answer (default "completion") */
        char *input;       /* the field sent as the user message to routes/upstreams, or NULL
                              (the rendered prompt) */
        char *hash_field;  /* `valid-hash: FIELD:M`: keep only the rows DESIGN.md's dev split */
        uint32_t hash_mod; /* holds out (first byte of sha256(FIELD) % M == 0), or 0 = all */
        size_t limit;      /* rows at most (after the filter); 0 = all */
    } data;
    struct slm_eval_candidate candidates[SLM_EVAL_MAX_CANDIDATES];
    size_t n_candidates;
    struct slm_eval_metric metrics[SLM_EVAL_MAX_METRICS];
    size_t n_metrics;
    int32_t max_tokens; /* generated tokens per answer (default 128) */
    uint32_t bootstrap; /* resamples (default 1000) */
    uint64_t seed;      /* bootstrap seed (default 42) */
};

/*
 * Parses and validates a suite of `len` bytes named `name`; relative paths
 * resolve against `dir` (NULL = the folder of `name`). Unknown keys are
 * errors. Files are not read (a schema file is). SLM_E_INVALID /
 * SLM_E_NOT_FOUND with "file:line: key: message". On success one
 * slm_eval_suite_free() is owed; on failure nothing is.
 */
int slm_eval_suite_parse(const char *name, const char *text, size_t len, const char *dir,
                         struct slm_eval_suite **out, struct slm_err *err);
int slm_eval_suite_load(const char *path, struct slm_eval_suite **out, struct slm_err *err);
void slm_eval_suite_free(struct slm_eval_suite *s);
/* The metric of `kind` in the suite, or NULL. */
const struct slm_eval_metric *slm_eval_suite_metric(const struct slm_eval_suite *s,
                                                    enum slm_eval_metric_kind kind);

/* ---------------------------------------------------------------- rows and answers */

/* One row of the data, as every candidate sees it. Owned by the result. */
struct slm_eval_row {
    size_t line;    /* where the row is in its file */
    char *prompt;   /* rendered prompt (the template's output, or the row's prompt) */
    char *input;    /* the user message for routes and upstreams */
    char *expected; /* expected answer as text (JSON compact for objects) */
    json_t *row;    /* the row as an object */
};

/* One candidate's answer to one row. */
struct slm_eval_answer {
    int status;        /* SLM_OK, or the error that row met (it counts as wrong) */
    char *text;        /* the answer (malloc'ed), NULL on error */
    char *error;       /* the message when status != SLM_OK */
    double confidence; /* probability of the chosen label (label scoring), NAN if none */
    double latency_ms;
    int64_t n_in, n_out; /* tokens */
    double cost_usd;     /* what the answer cost (0 for local) */
    double judge;        /* JUDGE score or pass: 1..5, or 1 / 0; NAN when not judged */
    char *judge_reason;  /* the judge's reason (malloc'ed), or why there is no verdict */
};

/* What a backend is asked for one row. Borrowed for the call. */
struct slm_eval_request {
    size_t index;
    const struct slm_eval_row *row;
    const char *const *labels; /* the label set when the suite has `label`, else NULL */
    size_t n_labels;
    const json_t *schema; /* JSON output expected (`json` metric with a schema), or NULL */
    bool want_json;       /* `json` metric */
    int32_t max_tokens;
};

/*
 * How a candidate answers. `answer` fills `out` (zeroed by the caller; confidence
 * preset to NAN) and returns SLM_OK, or a status that stops the whole run
 * (SLM_E_ABORTED, a broken backend); an error that belongs to one row goes in
 * out->status instead. `batch`, when set, answers all rows at once (local label
 * scoring) and `answer` may be NULL. `close` frees `self`.
 */
struct slm_eval_backend {
    void *self;
    int (*answer)(void *self, const struct slm_eval_request *req, struct slm_eval_answer *out,
                  struct slm_err *err);
    int (*batch)(void *self, const struct slm_eval_row *rows, size_t n_rows,
                 const char *const *labels, size_t n_labels, struct slm_eval_answer *out,
                 void (*progress)(size_t done, void *user), void *user, struct slm_err *err);
    void (*close)(void *self);
};

/* ---------------------------------------------------------------- run */

/* A cloud model the suite names: an upstream candidate or the judge (borrowed strings). */
struct slm_eval_cloud {
    const char *what;                           /* "candidate 'gpt'" or "judge", for messages */
    int line;                                   /* where the suite names it */
    const char *router, *upstream;              /* a pool of a router.yaml */
    const char *base_url, *model, *api_key_env; /* or inline */
    double price_in, price_out;                 /* inline: USD per 1M tokens */
};

struct slm_eval_run_params {
    size_t limit;               /* rows at most, over the suite's limit; 0 = the suite's */
    int32_t n_threads;          /* local models; 0 = physical cores */
    const volatile int *cancel; /* non-zero stops the run (SLM_E_ABORTED); may be NULL */
    /* After every answer: answers done of `total`, the candidate answering. */
    void (*progress)(size_t done, size_t total, const char *candidate, void *user);
    void *user;
    /* Opens the contract a cloud candidate or the judge calls through (the caller's: its
     * cache, its cost cap, freed by the caller after the run); an error's message names the
     * suite, line and c->what. NULL: a suite with an upstream candidate or a judge is refused
     * before any row runs. */
    int (*open_cloud)(void *user, const struct slm_eval_suite *s, const struct slm_eval_cloud *c,
                      struct slm_contract **out, struct slm_err *err);
    int cloud_concurrency; /* calls in flight per cloud candidate and for the judge;
                            * 0 = the upstream's max concurrency */
};

struct slm_eval_run_params slm_eval_run_params_default(void);

/* One metric of one candidate. */
struct slm_eval_value {
    const char *key; /* "label", "exact", "json_valid", "json_schema", "json_f1", ... (static) */
    double value;    /* in [0, 1]; NAN when no row counts */
    double lo, hi;   /* 95% bootstrap interval */
    size_t n;        /* rows behind it */
    bool paired;     /* right/wrong per row (McNemar applies) */
};

#define SLM_EVAL_MAX_VALUES 16

struct slm_eval_label_acc {
    char *label;
    size_t n, right;
};

struct slm_eval_cand_result {
    const struct slm_eval_candidate *cand; /* borrowed from the suite */
    struct slm_eval_answer *answers;       /* one per row */
    struct slm_eval_value values[SLM_EVAL_MAX_VALUES];
    size_t n_values;
    uint8_t *right; /* per row, for the suite's first right/wrong metric (1 = right) */
    size_t n;       /* rows answered (errors count as wrong) */
    size_t n_errors;
    double p50_ms, p95_ms;
    int64_t tokens_in, tokens_out;
    double cost_per_1k;                /* USD per 1,000 requests */
    struct slm_eval_label_acc *labels; /* per expected label (label metric), or NULL */
    size_t n_labels;
};

struct slm_eval_pair {
    size_t a, b;           /* candidate indexes */
    const char *key;       /* the metric compared */
    size_t n;              /* rows */
    size_t only_a, only_b; /* discordant rows: right for one only */
    double p_value;        /* McNemar (exact binomial when only_a + only_b <= 25) */
};

struct slm_eval_result {
    const struct slm_eval_suite *suite; /* borrowed */
    struct slm_eval_row *rows;
    size_t n_rows;
    char **labels; /* distinct expected values when the suite has `label` */
    size_t n_labels;
    struct slm_eval_cand_result *cands;
    size_t n_cands;
    struct slm_eval_pair *pairs;
    size_t n_pairs;
    /* JUDGE pairwise, filled by the run: per pair of candidates, per row, +1 when the judge
     * preferred A in both orders, -1 for B, 0 for a tie, a split verdict or no verdict.
     * Scored into `pairs` under the key "judge_pairwise" (only_a / only_b = wins; the sign
     * test is McNemar's). */
    struct slm_eval_judged_pair {
        size_t a, b;
        int8_t *verdict;
        size_t split; /* rows where the two orders disagreed */
    } * judged;
    size_t n_judged;
    size_t judge_errors; /* judge calls without a verdict (reasons in the answers) */
    double wall_s;
};

/*
 * Reads the suite's data, runs every candidate on every row, scores the
 * metrics and the statistics. Errors: the data's (file:line), SLM_E_NOT_FOUND
 * for a model or route, SLM_E_UNSUPPORTED for an upstream candidate without
 * open_upstream, SLM_E_ABORTED. On success one slm_eval_result_free() is owed;
 * on failure nothing is.
 */
int slm_eval_run(const struct slm_eval_suite *s, const struct slm_eval_run_params *p,
                 struct slm_eval_result **out, struct slm_err *err);
void slm_eval_result_free(struct slm_eval_result *r);

/* Scores answers already in `r` (cands[i].answers) into values, per-label
 * accuracy, latency, tokens, cost and pairs. slm_eval_run() calls it; exposed
 * for tests and for backends that fill answers themselves. */
int slm_eval_score(struct slm_eval_result *r, struct slm_err *err);

/* ---------------------------------------------------------------- metrics (per row) */

/* EXACT: trimmed equality (ASCII case folded with `ignore_case`). */
bool slm_eval_exact(const char *answer, const char *expected, bool ignore_case);

/* JSON: what one answer scored against the expected object. */
struct slm_eval_json_score {
    bool valid;                    /* the answer parses as JSON */
    bool schema_valid;             /* ... and validates against the schema (true when none) */
    bool exact;                    /* ... and equals the expected value */
    size_t tp, n_pred, n_expected; /* fields (top-level keys) right / answered / expected */
};

/* Compares `answer` with `expected` (JSON text). Field counts are of
 * top-level keys; a field is right when its value is equal (json_equal). */
void slm_eval_json(const char *answer, const char *expected, const json_t *schema,
                   struct slm_eval_json_score *out);

/* REGEX: 1 match, 0 no match, or a negative status (SLM_E_INVALID: a bad pattern,
 * message in err). */
int slm_eval_regex(const char *pattern, bool ignore_case, const char *answer, struct slm_err *err);

/* ---------------------------------------------------------------- statistics */

/* Parses a judge's reply `text` for `mode`: a JSON object with "score" (1..5), "pass"
 * (true/false) or "winner" ("A", "B" or "tie"), and "reason". SLM_OK with *value (1..5; 1/0;
 * +1 A, -1 B, 0 tie) and *reason (malloc'ed, may be ""); SLM_E_INVALID with a message meant
 * for the judge on a retry. Untrusted text (fuzzed). */
int slm_eval_judge_parse(enum slm_eval_judge_mode mode, const char *text, double *value,
                         char **reason, struct slm_err *err);

/* A percentile bootstrap interval (level 0.95) of the mean of x[0..n), from
 * `b` resamples drawn with a seeded generator (the same seed, the same
 * interval). n == 0 gives NAN, NAN. */
void slm_eval_bootstrap_mean(const double *x, size_t n, uint32_t b, uint64_t seed, double *lo,
                             double *hi);
/* The same for micro-averaged F1 = 2 sum(tp) / (sum(pred) + sum(expected)). */
void slm_eval_bootstrap_f1(const size_t *tp, const size_t *pred, const size_t *expected, size_t n,
                           uint32_t b, uint64_t seed, double *lo, double *hi);
/* Two-sided McNemar p-value for `b` and `c` discordant pairs: exact binomial
 * (p = 1/2) when b + c <= 25, else chi-square with continuity correction. */
double slm_eval_mcnemar(size_t b, size_t c);
/* Nearest-rank percentile (0..100) of x[0..n) (sorted here); NAN when n == 0. */
double slm_eval_percentile(double *x, size_t n, double pct);

/* ---------------------------------------------------------------- reports */

/* The terminal table: one line per candidate, then the pairs. */
int slm_eval_report_text(const struct slm_eval_result *r, struct slm_buf *out);
/* The JSON report (docs/eval.md): new reference, NULL on no memory. */
json_t *slm_eval_report_json(const struct slm_eval_result *r);
int slm_eval_report_markdown(const struct slm_eval_result *r, struct slm_buf *out);
/* One self-contained HTML page: inline CSS and SVG (slm/svg.h), no scripts,
 * no network; every text from the data is escaped. */
int slm_eval_report_html(const struct slm_eval_result *r, struct slm_buf *out);

#endif /* SLM_EVAL_H */
