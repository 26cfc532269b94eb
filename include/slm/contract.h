/*
 * slm/contract.h - the frontier model as a contractor (eval module): one cloud upstream, a call
 * cache, a hard cost cap and a runner that fans rows out to worker threads and writes results
 * back in input order. `slm label`, `slm distill` and `slm eval`'s cloud candidates and judge all
 * call a cloud through this header; nothing here prints or reads the environment (the CLI hands
 * API keys in).
 *
 * The pieces, bottom up:
 *  - an upstream (struct slm_contract_upstream): a pool of the router's upstream client
 *    (slm/upstream.h: retries, backoff, Retry-After, breaker), opened from a router.yaml's named
 *    upstream or from inline flags, with the identity (base URLs and models) the cache keys on;
 *  - a cache (struct slm_contract_cache): SQLite in WAL mode, one row per answered call keyed by
 *    sha256 of the upstream identity and the canonical request body, committed as soon as the
 *    call returns, so a run killed with -9 loses nothing it paid for;
 *  - a budget (struct slm_contract_budget): reservations of each call's worst case before it is
 *    sent, settled to the actual cost after; a call that does not fit is never sent;
 *  - a contract (struct slm_contract): the three together; slm_contract_chat() is one call,
 *    slm_contract_run() the row runner.
 *
 * Thread safety: slm_contract_chat(), the budget and the cache may be used from many threads at
 * once; open/init/free are not concurrent with anything else on the same object.
 */
#ifndef SLM_CONTRACT_H
#define SLM_CONTRACT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"
#include "slm/liquid.h"

/* ---------------------------------------------------------------- upstream */

/* How the user named the upstream (flags). Either `router_path` + `upstream`, or `base_url` +
 * `model`; never both. Strings are borrowed for the call. */
struct slm_contract_upstream_spec {
    const char *router_path; /* --router router.yaml */
    const char *upstream;    /* --upstream NAME: a pool of that file */
    const char *base_url;    /* --base-url URL ("http://host/v1") */
    const char *model;       /* --model M */
    const char *api_key;     /* the key itself (the CLI reads --api-key-env's variable); or NULL */
    double price_in, price_out; /* per 1M tokens, inline upstreams (0 = free) */
    int max_attempts;           /* inline upstreams: HTTP attempts per call; 0 = 3 */
    double timeout_s;           /* inline upstreams: one attempt's deadline; 0 = 60 */
    int max_concurrency;        /* inline upstreams: calls in flight; 0 = 16 */
    uint64_t seed;              /* backoff jitter seed (tests); 0 = the clock */
};

struct slm_contract_upstream;

/* The message when no upstream is named: nothing is ever sent without one. */
#define SLM_CONTRACT_NO_UPSTREAM                                                                   \
    "name an upstream: --router F --upstream NAME, or --base-url URL --model M"

/* Opens the upstream the spec names. SLM_E_INVALID when it names none (the message is
 * SLM_CONTRACT_NO_UPSTREAM), both kinds, or bad values; SLM_E_NOT_FOUND for an unknown
 * upstream name (the message lists the names the file has) or router file; the router's own
 * errors ("router.yaml:12: ...", a missing api_key_env variable). On success one
 * slm_contract_upstream_free() is owed. */
int slm_contract_upstream_open(const struct slm_contract_upstream_spec *spec,
                               struct slm_contract_upstream **out, struct slm_err *err);
void slm_contract_upstream_free(struct slm_contract_upstream *u);
/* "NAME" for a router upstream, "MODEL@BASE_URL" inline (borrowed, valid until free). */
const char *slm_contract_upstream_name(const struct slm_contract_upstream *u);
/* The calls the upstream takes at once: the sum of its members' max_concurrency. */
int slm_contract_upstream_concurrency(const struct slm_contract_upstream *u);
/*
 * The most one call of `request` can cost: an upper bound of its prompt tokens (the UTF-8 byte
 * count of its serialized "messages": every token of every tokenizer covers at least one byte,
 * and the JSON punctuation and role names outweigh the chat template's few special tokens per
 * message) plus its "max_tokens" (or "max_completion_tokens"; a request without either has no
 * bound: INFINITY), at the dearest member's prices, times the HTTP attempts a call may make
 * (an attempt whose reply was lost may still have been billed).
 */
double slm_contract_worst_cost(const struct slm_contract_upstream *u, const json_t *request);

/* ---------------------------------------------------------------- cache */

struct slm_contract_cache;

/* Opens (creating) the call cache at `path`; NULL = $SLM_HOME/cache/calls.db. SQLite in WAL
 * mode, synchronous NORMAL (a commit survives kill -9), 5 s busy timeout, so two runs may share
 * one cache. SLM_E_CORRUPT for a file that is not a SQLite database or not a call cache;
 * SLM_E_IO. On success one slm_contract_cache_close() is owed. */
int slm_contract_cache_open(const char *path, struct slm_contract_cache **out, struct slm_err *err);
void slm_contract_cache_close(struct slm_contract_cache *c);
/* The cache key of `request` to upstream `u`: sha256 (64 hex digits + NUL) of the upstream's
 * identity (each member's base URL and model) and the request's canonical JSON (keys sorted,
 * compact; "stream" left out). SLM_E_NOMEM. */
int slm_contract_cache_key(const struct slm_contract_upstream *u, const json_t *request,
                           char key[65]);
/* What a call used when it was made, kept next to its answer. */
struct slm_contract_usage {
    int64_t tokens_in, tokens_out;
    double cost;      /* what it was charged (slm_contract_chat()'s settled cost) */
    double latency_s; /* its wall time, retries included (0 in caches older than the column) */
};

/* Looks a key up: SLM_OK with *response (a new reference) and the call's recorded usage
 * (`usage` may be NULL), SLM_E_NOT_FOUND, or SLM_E_IO. */
int slm_contract_cache_get(struct slm_contract_cache *c, const char *key, json_t **response,
                           struct slm_contract_usage *usage, struct slm_err *err);
/* Stores an answered call (replacing an older answer to the same key), committed before it
 * returns. SLM_E_IO. */
int slm_contract_cache_put(struct slm_contract_cache *c, const char *key, const json_t *response,
                           const struct slm_contract_usage *usage, struct slm_err *err);
/* Rows in the cache (tests, `--help` text); -1 on error. */
int64_t slm_contract_cache_count(struct slm_contract_cache *c);

/* ---------------------------------------------------------------- budget */

struct slm_contract_budget;

/* A budget of `cap` currency units (INFINITY or a negative value = no cap). SLM_E_NOMEM. */
int slm_contract_budget_init(double cap, struct slm_contract_budget **out);
void slm_contract_budget_free(struct slm_contract_budget *b);
/* Reserves `amount` when spent + reserved + amount <= cap. When it does not fit but other
 * reservations are outstanding, waits for them to settle (they may cost less than reserved);
 * when it does not fit with none outstanding, returns false (nothing reserved) and from then on
 * the budget is exhausted: every later reserve fails too, so a run stops instead of sneaking
 * small calls past a large one. */
bool slm_contract_budget_reserve(struct slm_contract_budget *b, double amount);
/* Replaces a reservation of `reserved` by the `actual` cost (0 for a call never sent). */
void slm_contract_budget_settle(struct slm_contract_budget *b, double reserved, double actual);
struct slm_contract_budget_state {
    double cap; /* INFINITY when none */
    double spent, reserved;
    bool exhausted; /* a reservation was refused */
};
void slm_contract_budget_get(struct slm_contract_budget *b, struct slm_contract_budget_state *out);

/* ---------------------------------------------------------------- one call */

struct slm_contract_params {
    struct slm_contract_upstream *upstream; /* borrowed; required */
    struct slm_contract_cache *cache;       /* borrowed; NULL = no cache (--no-cache) */
    double max_cost;                        /* hard cap; <= 0 or INFINITY = none */
    struct slm_contract_budget *budget;     /* borrowed: a cap shared with other contracts
                                             * (slm eval's candidates and judge); when set,
                                             * max_cost is not used */
    double deadline_s;                      /* one call, retries included; 0 = 300 */
    const volatile int *cancel;             /* polled by calls in flight; may be NULL */
};

struct slm_contract;

/* Makes a contract (a budget of its own). SLM_E_INVALID without an upstream; SLM_E_NOMEM.
 * One slm_contract_free() is owed on success. */
int slm_contract_init(const struct slm_contract_params *p, struct slm_contract **out,
                      struct slm_err *err);
void slm_contract_free(struct slm_contract *c);
struct slm_contract_upstream *slm_contract_get_upstream(struct slm_contract *c);

struct slm_contract_reply {
    json_t *response;   /* the chat.completion body (owned; NULL on failure) */
    const char *text;   /* choices[0].message.content, borrowed from response ("" when none) */
    const char *finish; /* choices[0].finish_reason, borrowed ("" when none) */
    bool from_cache;
    int64_t tokens_in, tokens_out;
    double cost;      /* what this call cost now (0 from the cache) */
    double latency_s; /* wall time of the call, retries included (0 from the cache) */
    /* What the call cost and took when it was made: cost / latency_s for a new call, the
     * recorded figures for one from the cache (what `slm eval` reports per candidate). */
    double made_cost, made_latency_s;
    /* When the call failed upstream: slm_upstream_result.failure ("unauthorized",
     * "rate_limited", ...; static), else NULL. */
    const char *failure;
};

/*
 * Answers one OpenAI chat request body (borrowed; its "model" is replaced by the upstream's):
 * from the cache when it holds the same call, else sends it once its worst case
 * (slm_contract_worst_cost()) is reserved in the budget, then caches the answer (committed before
 * this returns) and settles the budget to the cost from the reply's usage, plus the worst case of
 * one attempt for every attempt that may have been billed unseen (a reply without usage counts
 * as its worst case).
 * Returns SLM_OK; SLM_E_LIMIT when the budget cannot take the call (nothing sent; the budget is
 * exhausted from then on); the upstream's errors (SLM_E_UPSTREAM, SLM_E_TIMEOUT,
 * SLM_E_ABORTED); SLM_E_IO when the cache cannot store the answer (the reply is freed: a run
 * stops rather than pay for calls it cannot keep). One slm_contract_reply_free() is owed
 * whatever the return.
 */
int slm_contract_chat(struct slm_contract *c, const json_t *request, struct slm_contract_reply *out,
                      struct slm_err *err);
void slm_contract_reply_free(struct slm_contract_reply *r);

struct slm_contract_stats {
    uint64_t calls;  /* calls sent (each may have made several HTTP attempts) */
    uint64_t cached; /* calls answered from the cache */
    uint64_t failed; /* calls that failed (upstream errors) */
    double spent;    /* settled cost */
    double cap;      /* INFINITY when none */
    bool exhausted;  /* the budget refused a call */
};
void slm_contract_get_stats(struct slm_contract *c, struct slm_contract_stats *out);

/* ---------------------------------------------------------------- building requests */

/* How a row becomes a chat request. */
struct slm_contract_ask {
    const struct slm_liquid_template *tmpl; /* renders the user message from the row's fields;
                                             * NULL: the row's "text", "input" or "prompt" */
    const char *system;                     /* system message, or NULL */
    const json_t *fields; /* extra request fields (temperature, top_p, max_tokens, seed, stop,
                           * response_format), borrowed; NULL = none */
};

/* Builds {"messages": [system?, user], ...fields} for `row` (an object); *prompt (may be NULL)
 * gets the user message (malloc'ed; a template's trailing newlines are dropped). SLM_E_INVALID
 * names the problem ("row has no 'text' field; pass --template"), the template's render errors. On
 * success *request is owed a json_decref. */
int slm_contract_request(const struct slm_contract_ask *a, const json_t *row, json_t **request,
                         char **prompt, struct slm_err *err);

/* ---------------------------------------------------------------- answers */

/* A label set. */
struct slm_contract_labels {
    char **items;
    size_t n;
};

/* Largest label in bytes, and most labels in a set. */
#define SLM_CONTRACT_MAX_LABEL 1024
#define SLM_CONTRACT_MAX_LABELS 100000

/* Parses a labels file's `len` bytes (untrusted, fuzzed): a JSON array of strings, or a JSON
 * object whose keys are the labels (values ignored: descriptions, ids). Labels must be
 * non-empty, distinct and at most SLM_CONTRACT_MAX_LABEL bytes. SLM_E_INVALID names the file
 * and the entry ("labels.json: [3]: duplicate label 'card_lost'"), SLM_E_TOO_LARGE. On
 * success one slm_contract_labels_free() is owed. */
int slm_contract_labels_parse(const char *name, const char *text, size_t len,
                              struct slm_contract_labels *out, struct slm_err *err);
void slm_contract_labels_free(struct slm_contract_labels *l);

/* What an answer must be; every field may be NULL (then any text passes). */
struct slm_contract_check {
    const struct slm_contract_labels *labels; /* one of these (trimmed; case-insensitive when
                                               * that is unambiguous) */
    const json_t *schema;                     /* JSON that validates (slm/grammar.h) */
    const char *regex;                        /* text a PCRE2 pattern finds a match in */
};

/* Checks answer `text` (`finish` is the finish_reason, "length" means cut). SLM_OK with *value
 * (may be NULL: not wanted) set to a new reference: the label as written in the set, the
 * parsed JSON for a schema, else the text. SLM_E_INVALID / SLM_E_INCOMPLETE with a message
 * meant for the model on a retry ("'card lost' is not one of the labels"); SLM_E_INVALID also
 * for a bad regex (the message says so). */
int slm_contract_check_answer(const struct slm_contract_check *k, const char *text,
                              const char *finish, json_t **value, struct slm_err *err);

/* `slm label`: one row's label. */
struct slm_contract_label_params {
    struct slm_contract_ask ask;
    struct slm_contract_check check; /* labels or schema */
    const char *field;               /* output field; NULL = "label" */
    int votes;                       /* answers per row; 0 or 1 = one, no agreement field */
    double vote_temperature;         /* temperature of votes; 0 = 0.7 */
};

/*
 * Labels one row: asks, checks the answer, and on a failed check asks once more with the
 * error shown to the model. *out is a copy of the row plus `field` (the label, or null with
 * "<field>_error" saying why, also when the upstream failed after its retries; an upstream that
 * refuses the key (401/403) ends the run instead, as SLM_E_UPSTREAM), with votes
 * "agreement" (share of answers that agree with the winner) and, without a majority, the
 * field null and the error "no majority". Returns SLM_OK, or what must stop a run:
 * SLM_E_LIMIT (the cost cap), SLM_E_ABORTED, SLM_E_IO, SLM_E_NOMEM, and request-building
 * errors (SLM_E_INVALID: a template error, a row without text). *out is owed a json_decref.
 */
int slm_contract_label_row(struct slm_contract *c, const struct slm_contract_label_params *p,
                           const json_t *row, json_t **out, struct slm_err *err);

/* `slm distill`: free-form answers to one row. */
struct slm_contract_distill_params {
    struct slm_contract_ask ask;
    struct slm_contract_check check; /* answers that fail it are dropped */
    int n;                           /* samples per row; 0 = 1 (n > 1 adds "seed": k) */
    bool messages;                   /* rows {"messages": [...]} instead of prompt/completion */
    /* --docs: the row is a chunk (slm_contract_docs_read()) and the answer is JSON
     * {"pairs": [{"question", "answer"}, ...]} with at most `pairs` items; each pair becomes a
     * row {"prompt": question, "completion": answer, "source": file, "chunk": i, "heading"}.
     * 0 = free-form answers. */
    int pairs;
};

/* ---------------------------------------------------------------- documents (distill --docs) */

/* Chunk size when none is given, in bytes. */
#define SLM_CONTRACT_CHUNK_BYTES 2000

/*
 * Cuts one text/Markdown document (untrusted, fuzzed) into chunks and appends them to `rows`
 * (a JSON array) as {"file": file, "chunk": i (0-based in this file), "heading": "A > B" (the
 * Markdown heading path above it, "" before any), "text": ...}. A heading line (`#` .. `######`
 * then a space) starts a new chunk; within a section, paragraphs (blank-line separated) are
 * packed up to `max_chunk` bytes (0 = SLM_CONTRACT_CHUNK_BYTES); a longer paragraph is cut at
 * its last newline or space before the limit, else at the limit (never inside a UTF-8
 * sequence). Chunks are trimmed, never empty, never longer than `max_chunk`. Lines inside
 * ``` fences are text, not headings. SLM_E_INVALID when the text is not UTF-8 (or holds a NUL),
 * SLM_E_NOMEM.
 */
int slm_contract_chunk_text(const char *file, const char *text, size_t len, size_t max_chunk,
                            json_t *rows, struct slm_err *err);

struct slm_contract_docs_params {
    const char *dir;          /* the folder (read recursively; symlinks not followed) */
    const char *const *globs; /* fnmatch patterns on the file name; NULL = *.md, *.txt, ... */
    size_t n_globs;
    size_t max_file_bytes;  /* larger files are skipped and counted; 0 = 1 MiB */
    size_t max_chunk_bytes; /* 0 = SLM_CONTRACT_CHUNK_BYTES */
    size_t max_files;       /* 0 = 10,000; more is SLM_E_TOO_LARGE */
};

/* Reads the matching files below `dir`, sorted by path, and chunks each
 * (slm_contract_chunk_text(), `file` relative to `dir`). *rows (owed a json_decref) gets the
 * chunks; *skipped the files over the size limit or not UTF-8 text. SLM_E_NOT_FOUND (no such
 * folder), SLM_E_INVALID (no matching files), SLM_E_TOO_LARGE, SLM_E_IO. */
int slm_contract_docs_read(const struct slm_contract_docs_params *p, json_t **rows, size_t *skipped,
                           struct slm_err *err);

/* The template `slm distill --docs` renders a chunk with when no --template is given
 * (variables: file, chunk, heading, text, k). */
extern const char SLM_CONTRACT_DOCS_TEMPLATE[];

/* The JSON Schema of a --docs answer, {"pairs": [{"question", "answer"}]} (a new reference;
 * NULL when out of memory): what the CLI sends as response_format. */
json_t *slm_contract_pairs_schema(void);

/* Asks for `n` answers to one row; *out is an array of the answers that passed the check, as
 * {"prompt", "completion"} or {"messages"} rows exactly as `slm tune` reads them. Answers that
 * fail the check, or whose call failed after its retries, are left out (n - size = dropped).
 * Returns as slm_contract_label_row(). */
int slm_contract_distill_row(struct slm_contract *c, const struct slm_contract_distill_params *p,
                             const json_t *row, json_t **out, struct slm_err *err);

/* ---------------------------------------------------------------- the runner */

/*
 * Works on row `index` (from a worker thread): makes its calls through `c` and sets *out to
 * what the row produced (an array of output rows, possibly empty; owned by the runner after).
 * Returns SLM_OK, or an error that stops the run: SLM_E_LIMIT (the budget), SLM_E_ABORTED, or
 * any other (the run ends with it). Called concurrently for different rows.
 */
typedef int (*slm_contract_row_fn)(void *user, struct slm_contract *c, size_t index, json_t **out,
                                   struct slm_err *err);
/* Receives the output of row `index`, in input order, one call at a time (never concurrently).
 * `out` is borrowed. A non-zero return stops the run with that status (a write failed). */
typedef int (*slm_contract_emit_fn)(void *user, size_t index, const json_t *out,
                                    struct slm_err *err);
/* Progress after each row: rows emitted of `total`, and the contract's stats. */
typedef void (*slm_contract_progress_fn)(void *user, size_t done, size_t total,
                                         const struct slm_contract_stats *stats);

struct slm_contract_run_params {
    size_t n_rows;
    int concurrency; /* worker threads; 0 = the upstream's max concurrency (at most 64) */
    slm_contract_row_fn row;
    slm_contract_emit_fn emit;
    slm_contract_progress_fn progress; /* may be NULL */
    void *user;
    const volatile int *stop; /* non-zero: start no new row (Ctrl-C); may be NULL */
};

struct slm_contract_run_result {
    size_t done;      /* rows emitted: always a prefix of the input, in order */
    bool budget_hit;  /* stopped because the cost cap could not take a call */
    bool interrupted; /* stopped by `stop` */
};

/*
 * Runs `row` over rows 0..n_rows-1 on `concurrency` threads and hands the outputs to `emit` in
 * input order. When a row fails (the budget, an error) or `stop` is set, no new row starts,
 * the rows in flight finish (their calls are cached, so a re-run does not pay for them again),
 * and the run ends after emitting the longest complete prefix. Returns SLM_OK when every row was
 * emitted; SLM_E_LIMIT (budget_hit set), SLM_E_ABORTED (interrupted set) or the first row's /
 * emit's error otherwise, with `err` naming the row ("row 14: ...").
 */
int slm_contract_run(struct slm_contract *c, const struct slm_contract_run_params *p,
                     struct slm_contract_run_result *out, struct slm_err *err);

#endif /* SLM_CONTRACT_H */
