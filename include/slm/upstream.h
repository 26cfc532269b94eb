/*
 * slm/upstream.h - the router's client for OpenAI-compatible "cloud" upstreams (router module).
 *
 * A pool is a named set of members (OpenAI-compatible servers: a cloud API, vLLM, llama-server,
 * another slm). One call sends one chat request to the least-busy member that is healthy and
 * whose circuit breaker is closed, retrying failures with exponential backoff and full jitter
 * (honouring Retry-After), bounded by a per-attempt timeout and an overall deadline, and
 * cancellable from another thread. Every member has a circuit breaker (closed -> open after N
 * consecutive failures -> half-open after a cooldown, when one probe request is let through) and
 * a health flag: a member that fails is marked unhealthy and probed with GET {base_url}/models by
 * a background thread until it answers again.
 *
 * Upstream replies are untrusted: bodies are size-capped, malformed JSON and missing or odd
 * usage are errors or zeros, never crashes. Nothing here prints; errors come back in slm_err with
 * the member and the reason ("http://h/v1: 429 after 3 attempts"), passed through
 * slm_mask_secrets() with the pool's keys (a cloud's 401 body hints at the key it was given), and
 * as a short code in slm_upstream_result.failure: the message is for the operator's log, the
 * code is what a client may be told.
 *
 * Thread safety: a pool is safe to use from many threads at once; open/free are not concurrent
 * with anything else on the same pool.
 */
#ifndef SLM_UPSTREAM_H
#define SLM_UPSTREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"

/* Largest reply body accepted from an upstream (chat completion or /models). */
#define SLM_UPSTREAM_MAX_REPLY ((size_t)8 << 20)

/* One member of a pool: an OpenAI-compatible server. Strings are copied at open. */
struct slm_upstream_member {
    const char *base_url; /* "http://127.0.0.1:8080/v1" (POST {base_url}/chat/completions) */
    const char
        *api_key;      /* the key itself (config resolves it from the named env var); NULL = none */
    const char *model; /* model name sent upstream; NULL = keep the request's "model" */
    double price_in_per_m;  /* cost of 1M prompt tokens (currency units, e.g. USD) */
    double price_out_per_m; /* cost of 1M completion tokens */
    double timeout_s;       /* one attempt's deadline; 0 = 60 */
    int max_concurrency;    /* requests in flight to this member; 0 = 16 */
};

/* A named pool: several members with the same name. Zero fields mean the default. */
struct slm_upstream_params {
    const char *name;
    const struct slm_upstream_member *members;
    size_t n_members;
    int max_attempts;          /* HTTP attempts per request across members; 0 = 3 */
    double backoff_base_s;     /* exponential backoff with full jitter; 0 = 0.25 */
    double backoff_max_s;      /* cap of one backoff (and of an honoured Retry-After); 0 = 8 */
    int breaker_failures;      /* consecutive failures that open a member's breaker; 0 = 5 */
    double breaker_cooldown_s; /* open -> half-open after this; 0 = 30 */
    double
        health_interval_s; /* GET {base_url}/models probe of unhealthy members; 0 = 10, <0 = off */
    uint64_t seed;         /* jitter RNG seed (tests); 0 = from time */
};

struct slm_upstream_pool;

/* Fills `p` with the defaults (all zero: every field means "default"). */
void slm_upstream_params_default(struct slm_upstream_params *p);

/* Opens a pool: validates the params (at least one member, http(s) base URLs, non-negative
 * prices and timeouts), copies every string and starts the health thread (unless
 * health_interval_s < 0). SLM_E_INVALID with a message naming the member on bad params,
 * SLM_E_NOMEM. If it fails nothing is owed; on success one slm_upstream_pool_free() is owed. */
int slm_upstream_pool_open(const struct slm_upstream_params *p, struct slm_upstream_pool **out,
                           struct slm_err *err);
/* Stops the health thread and frees the pool. No call may be in flight. NULL is a no-op. */
void slm_upstream_pool_free(struct slm_upstream_pool *pool);
/* The pool's name (borrowed, valid until free); "" when it has none. */
const char *slm_upstream_pool_name(const struct slm_upstream_pool *pool);

struct slm_upstream_result {
    json_t *response;              /* the upstream's chat.completion body (owned, new reference) */
    int64_t tokens_in, tokens_out; /* from the response's usage (0 if absent) */
    double cost;                   /* tokens priced with the answering member's prices */
    double latency_s;              /* wall time of the whole call, retries included */
    int attempts;                  /* HTTP attempts made */
    char member[256];              /* base_url of the member that answered (or last tried) */
    char model[128];               /* the model name sent to that member */
    int http_status;               /* last HTTP status (0 = no response: timeout/reset/refused) */
    /* Attempts that failed in a way a cloud may still have billed: a 2xx whose body was
     * malformed or too large, a timeout or a reset after the request was sent. A budget that
     * must never be exceeded prices each at the worst case (slm/contract.h does). */
    int maybe_charged;
    /* Why the call failed, as a code a client may see (static; NULL on success): "timeout",
     * "rate_limited" (429), "unauthorized" (401, 403), "rejected" (another 4xx), "server_error"
     * (5xx), "unreachable" (refused, DNS), "reset", "bad_reply" (malformed or too large),
     * "breaker_open", "cancelled" or "error". The details are in the slm_err message. */
    const char *failure;
};

/*
 * Sends an OpenAI chat request body (the "model" field is replaced by the member's model,
 * "stream" forced false) to the least-busy healthy member whose breaker is closed; retries on
 * 429/5xx/408/timeouts/resets/refused with backoff (honouring Retry-After, in seconds or as an
 * HTTP-date, capped by backoff_max_s and the deadline), moving to another member when there is
 * one. `deadline_s` bounds the whole call in seconds (0 = none). `cancel` (may be NULL) is polled
 * during transfers and waits.
 *
 * Returns SLM_OK; SLM_E_UPSTREAM (every attempt failed, or every breaker is open / every member
 * busy; the message says which member and why, e.g. "pool 'cloud': http://h/v1: 429 after 3
 * attempts"); SLM_E_TIMEOUT (the deadline passed); SLM_E_ABORTED (`cancel` set to non-zero by
 * another thread); SLM_E_INVALID (request is not an object). 4xx other than 408/429 are not
 * retried (SLM_E_UPSTREAM with the upstream's error message). A 2xx reply whose body is not a
 * JSON object with "choices" counts as a failed attempt ("malformed reply").
 *
 * Thread-safe. `out` is always filled; one slm_upstream_result_free() is owed whatever the return
 * (response is NULL on failure, the other fields describe the last attempt).
 */
int slm_upstream_chat(struct slm_upstream_pool *pool, const json_t *request, double deadline_s,
                      const volatile int *cancel, struct slm_upstream_result *out,
                      struct slm_err *err);
void slm_upstream_result_free(struct slm_upstream_result *r);

/* Cost of tokens at a member's prices (also used for "cost had everything gone to the cloud"):
 * tokens_in * price_in_per_m / 1e6 + tokens_out * price_out_per_m / 1e6. */
double slm_upstream_price(const struct slm_upstream_member *m, int64_t tokens_in,
                          int64_t tokens_out);

/* Per-member counters for /metrics and tests (least-busy balancing is checked with these).
 * `requests` counts HTTP attempts sent to the member, `failures` the failed ones. */
struct slm_upstream_member_stats {
    const char *base_url; /* borrowed, valid until the pool is freed */
    uint64_t requests, failures;
    int in_flight;
    bool healthy;
    bool breaker_open; /* open or half-open */
};
/* Writes up to `cap` members' stats into `out`; returns the number of members. */
size_t slm_upstream_pool_stats(struct slm_upstream_pool *pool,
                               struct slm_upstream_member_stats *out, size_t cap);

/* ---------------------------------------------------------------- parsing (pure, fuzzed) */

/* Parsed essentials of an upstream chat reply. */
struct slm_upstream_reply {
    json_t *body; /* the parsed object (owned, new reference) */
    int64_t tokens_in, tokens_out;
};
/* Parses an untrusted chat.completion reply of `len` bytes: at most SLM_UPSTREAM_MAX_REPLY, a JSON
 * object with a "choices" array; usage.prompt_tokens / completion_tokens read when they are
 * non-negative integers (else 0). SLM_E_TOO_LARGE, SLM_E_CORRUPT ("malformed reply: ...").
 * On success out->body is owed a json_decref. */
int slm_upstream_parse_reply(const char *data, size_t len, struct slm_upstream_reply *out,
                             struct slm_err *err);
/* The "error.message" (or "error" string, or "message") of an error body, copied into `out`
 * (snprintf semantics); "" when there is none. Never fails on malformed input. */
size_t slm_upstream_error_message(const char *data, size_t len, char *out, size_t cap);
/* Parses a Retry-After value: delta-seconds (non-negative, may be fractional) or an HTTP-date
 * (RFC 9110 IMF-fixdate) relative to `now_unix` seconds. Returns seconds to wait (>= 0) or -1
 * when the value is not understood. */
double slm_upstream_parse_retry_after(const char *value, size_t len, double now_unix);

#endif /* SLM_UPSTREAM_H */
