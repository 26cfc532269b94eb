/*
 * router/upstream.c - a pool of OpenAI-compatible upstreams: member choice (least busy among
 * healthy members with a closed breaker, under each member's concurrency cap), retries with
 * exponential backoff and full jitter (Retry-After honoured), per-attempt timeouts and an overall
 * deadline, cancellation, a circuit breaker and a health flag per member, and a background thread
 * that probes unhealthy members with GET {base_url}/models.
 *
 * All member state lives under the pool's one mutex; HTTP exchanges run outside it. Members are
 * chosen per attempt, so a retry moves to another member when one is available.
 */
#include "slm/upstream.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/upstream_internal.h"
#include "slm/json.h"
#include "slm/sync.h"

enum breaker { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct member {
    struct slm_upstream_member m; /* strings owned by the pool */
    char *url_chat, *url_models;
    /* Under pool->lock: */
    int in_flight;
    uint64_t requests, failures;
    int consecutive_failures;
    enum breaker breaker;
    double opened_at;     /* slm_time_mono() when the breaker last opened */
    bool probe_in_flight; /* the one half-open trial request */
    bool healthy;
    double retry_at; /* slm_time_mono() before which the member asked us to wait (Retry-After) */
    struct slm__up_conn **idle; /* max_concurrency slots of kept-alive connections */
    int n_idle;
};

struct slm_upstream_pool {
    char *name;
    struct member *members;
    size_t n;
    int max_attempts;
    double backoff_base_s, backoff_max_s;
    int breaker_failures;
    double breaker_cooldown_s, health_interval_s;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a slot freed, or the pool is stopping */
    uint64_t rng;
    volatile int stop; /* also the health probes' cancel flag */
    bool health_started;
    pthread_t health;
};

void slm_upstream_params_default(struct slm_upstream_params *p) {
    memset(p, 0, sizeof(*p));
}

const char *slm_upstream_pool_name(const struct slm_upstream_pool *pool) {
    return pool && pool->name ? pool->name : "";
}

/* ---------------------------------------------------------------- open / free */

static char *dup_or_null(const char *s) {
    return s ? slm_str_dup(slm_str_c(s)) : NULL;
}

static char *join_url(const char *base, const char *path) {
    struct slm_str b = slm_str_c(base);
    while (b.len > 0 && b.ptr[b.len - 1] == '/') {
        b.len--;
    }
    struct slm_buf out = {0};
    if (slm_buf_append_str(&out, b) != SLM_OK || slm_buf_puts(&out, path) != SLM_OK) {
        slm_buf_free(&out);
        return NULL;
    }
    return slm_buf_take(&out);
}

static int check_member(const struct slm_upstream_member *m, size_t i, struct slm_err *err) {
    struct slm_str url = slm_str_c(m->base_url);
    if (!slm_str_starts_with(url, SLM_STR("http://")) &&
        !slm_str_starts_with(url, SLM_STR("https://"))) {
        return slm_err_set(err, SLM_E_INVALID,
                           "member %zu: base_url '%.120s' must start with http:// or https://", i,
                           m->base_url ? m->base_url : "");
    }
    if (!(m->price_in_per_m >= 0) || !(m->price_out_per_m >= 0) || !(m->timeout_s >= 0) ||
        m->max_concurrency < 0 || !isfinite(m->price_in_per_m) || !isfinite(m->price_out_per_m) ||
        !isfinite(m->timeout_s)) {
        return slm_err_set(err, SLM_E_INVALID,
                           "%.120s: prices, timeout and max_concurrency must be non-negative",
                           m->base_url);
    }
    return SLM_OK;
}

static int copy_member(struct member *dst, const struct slm_upstream_member *src) {
    dst->m = *src;
    dst->m.base_url = dup_or_null(src->base_url);
    dst->m.api_key = dup_or_null(src->api_key);
    dst->m.model = dup_or_null(src->model);
    dst->m.timeout_s = src->timeout_s > 0 ? src->timeout_s : 60.0;
    dst->m.max_concurrency = src->max_concurrency > 0 ? src->max_concurrency : 16;
    dst->url_chat = join_url(src->base_url, "/chat/completions");
    dst->url_models = join_url(src->base_url, "/models");
    dst->healthy = true;
    dst->idle = calloc((size_t)dst->m.max_concurrency, sizeof(*dst->idle));
    bool ok = dst->idle && dst->m.base_url && dst->url_chat && dst->url_models &&
              (!src->api_key || dst->m.api_key) && (!src->model || dst->m.model);
    return ok ? SLM_OK : SLM_E_NOMEM;
}

static void free_member(struct member *m) {
    for (int i = 0; i < m->n_idle; i++) {
        slm__up_conn_free(m->idle[i]);
    }
    free(m->idle);
    free((char *)m->m.base_url);
    if (m->m.api_key) {
        memset((char *)m->m.api_key, 0, strlen(m->m.api_key));
    }
    free((char *)m->m.api_key);
    free((char *)m->m.model);
    free(m->url_chat);
    free(m->url_models);
}

static void *health_main(void *arg);

static uint64_t seed_from_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)&ts;
}

static int init_sync(struct slm_upstream_pool *pool) {
    if (slm_cond_init_mono(&pool->changed) != 0) {
        return SLM_E_NOMEM;
    }
    if (pthread_mutex_init(&pool->lock, NULL) != 0) {
        pthread_cond_destroy(&pool->changed);
        return SLM_E_NOMEM;
    }
    return SLM_OK;
}

int slm_upstream_pool_open(const struct slm_upstream_params *p, struct slm_upstream_pool **out,
                           struct slm_err *err) {
    *out = NULL;
    if (!p || !p->members || p->n_members == 0) {
        return slm_err_set(err, SLM_E_INVALID, "upstream pool '%s' has no members",
                           p && p->name ? p->name : "");
    }
    for (size_t i = 0; i < p->n_members; i++) {
        int rc = check_member(&p->members[i], i, err);
        if (rc != SLM_OK) {
            return slm_err_prefix(err, "upstream pool '%s'", p->name ? p->name : "");
        }
    }
    struct slm_upstream_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pool->name = slm_str_dup(slm_str_c(p->name));
    pool->members = calloc(p->n_members, sizeof(*pool->members));
    if (!pool->name || !pool->members) {
        goto nomem;
    }
    for (size_t i = 0; i < p->n_members; i++) {
        pool->n++;
        if (copy_member(&pool->members[i], &p->members[i]) != SLM_OK) {
            goto nomem;
        }
    }
    pool->max_attempts = p->max_attempts > 0 ? p->max_attempts : 3;
    pool->backoff_base_s = p->backoff_base_s > 0 ? p->backoff_base_s : 0.25;
    pool->backoff_max_s = p->backoff_max_s > 0 ? p->backoff_max_s : 8.0;
    pool->breaker_failures = p->breaker_failures > 0 ? p->breaker_failures : 5;
    pool->breaker_cooldown_s = p->breaker_cooldown_s > 0 ? p->breaker_cooldown_s : 30.0;
    pool->health_interval_s = p->health_interval_s == 0 ? 10.0 : p->health_interval_s;
    pool->rng = p->seed ? p->seed : seed_from_time();
    if (init_sync(pool) != SLM_OK) {
        goto nomem;
    }
    if (pool->health_interval_s > 0) {
        if (pthread_create(&pool->health, NULL, health_main, pool) != 0) {
            pthread_mutex_destroy(&pool->lock);
            pthread_cond_destroy(&pool->changed);
            goto nomem;
        }
        pool->health_started = true;
    }
    slm__up_curl_init();
    *out = pool;
    return SLM_OK;
nomem:
    for (size_t i = 0; i < pool->n; i++) {
        free_member(&pool->members[i]);
    }
    free(pool->members);
    free(pool->name);
    free(pool);
    return slm_err_set(err, SLM_E_NOMEM, "out of memory opening upstream pool");
}

void slm_upstream_pool_free(struct slm_upstream_pool *pool) {
    if (!pool) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->stop = 1;
    pthread_cond_broadcast(&pool->changed);
    pthread_mutex_unlock(&pool->lock);
    if (pool->health_started) {
        pthread_join(pool->health, NULL);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->changed);
    for (size_t i = 0; i < pool->n; i++) {
        free_member(&pool->members[i]);
    }
    free(pool->members);
    free(pool->name);
    free(pool);
}

/* ---------------------------------------------------------------- health */

static void timed_wait(struct slm_upstream_pool *pool, double seconds) {
    slm_cond_wait_for(&pool->changed, &pool->lock, seconds);
}

/* Probes each unhealthy member once; the lock is not held during the HTTP calls. */
static void health_round(struct slm_upstream_pool *pool) {
    for (size_t i = 0; i < pool->n; i++) {
        struct member *m = &pool->members[i];
        pthread_mutex_lock(&pool->lock);
        bool probe = !m->healthy && !pool->stop;
        pthread_mutex_unlock(&pool->lock);
        if (!probe) {
            continue;
        }
        struct slm__up_exchange x;
        /* A probe never waits long: a slow /models says as much as a dead one. */
        slm__up_http(NULL, m->url_models, m->m.api_key, NULL, 0, SLM_MIN(m->m.timeout_s, 5.0),
                     &pool->stop, &x);
        bool ok = x.outcome == SLM__UP_HTTP && x.status >= 200 && x.status < 300;
        slm_buf_free(&x.body);
        if (ok) {
            pthread_mutex_lock(&pool->lock);
            m->healthy = true;
            pthread_mutex_unlock(&pool->lock);
            SLM_LOG(SLM_LOG_INFO, "upstream=%s member=%s healthy again (GET /models answered)",
                    pool->name, m->m.base_url);
        }
    }
}

static void *health_main(void *arg) {
    struct slm_upstream_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    while (!pool->stop) {
        timed_wait(pool, pool->health_interval_s);
        if (pool->stop) {
            break;
        }
        pthread_mutex_unlock(&pool->lock);
        health_round(pool);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* ---------------------------------------------------------------- choice */

/* splitmix64 under the pool lock: full jitter needs only a fair coin, not crypto. */
static double rand_unit(struct slm_upstream_pool *pool) {
    uint64_t z = (pool->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

enum pick { PICK_OK, PICK_BUSY, PICK_BROKEN };

/* True when the member may take a request now; moves an open breaker to half-open after the
 * cooldown. `busy` is set when only the concurrency cap stands in the way. */
static bool available(struct slm_upstream_pool *pool, struct member *m, double now, bool *busy) {
    if (m->breaker == BREAKER_OPEN && now - m->opened_at >= pool->breaker_cooldown_s) {
        m->breaker = BREAKER_HALF_OPEN;
        m->probe_in_flight = false;
    }
    if (m->breaker == BREAKER_OPEN) {
        return false;
    }
    if (m->breaker == BREAKER_HALF_OPEN && m->probe_in_flight) {
        return false; /* one trial at a time; the others fail fast like an open breaker */
    }
    if (m->in_flight >= m->m.max_concurrency) {
        *busy = true;
        return false;
    }
    return true;
}

/* Ranks candidates: members not yet tried by this call first, then healthy ones, then members not
 * asking us to wait, then the least busy, then the least used (spreads sequential load). */
static bool better(const struct member *a, bool a_tried, const struct member *b, bool b_tried,
                   double now) {
    if (a_tried != b_tried) {
        return !a_tried;
    }
    if (a->healthy != b->healthy) {
        return a->healthy;
    }
    bool a_wait = a->retry_at > now, b_wait = b->retry_at > now;
    if (a_wait != b_wait) {
        return !a_wait;
    }
    if (a->in_flight != b->in_flight) {
        return a->in_flight < b->in_flight;
    }
    return a->requests < b->requests;
}

/* Under the lock: picks a member and takes a slot on it. */
static enum pick pick_member(struct slm_upstream_pool *pool, const bool *tried, size_t *out) {
    double now = slm_time_mono();
    bool busy = false;
    struct member *best = NULL;
    size_t best_i = 0;
    for (size_t i = 0; i < pool->n; i++) {
        struct member *m = &pool->members[i];
        if (!available(pool, m, now, &busy)) {
            continue;
        }
        if (!best || better(m, tried[i], best, tried[best_i], now)) {
            best = m;
            best_i = i;
        }
    }
    if (!best) {
        return busy ? PICK_BUSY : PICK_BROKEN;
    }
    best->in_flight++;
    best->requests++;
    if (best->breaker == BREAKER_HALF_OPEN) {
        best->probe_in_flight = true;
    }
    *out = best_i;
    return PICK_OK;
}

/* What an attempt's end says about the member. */
enum blame {
    BLAME_NONE,    /* it answered */
    BLAME_MEMBER,  /* it failed: counts toward its breaker */
    BLAME_DOWN,    /* it failed at the transport level or with a 5xx: also marks it unhealthy */
    BLAME_REQUEST, /* it refused this request (a 4xx): a failure in the stats only */
    BLAME_NOBODY,  /* we gave up (cancel, our own deadline): not a failure at all */
};

/* Under the lock: records an attempt's end on the member's breaker, health and counters. */
static void settle(struct slm_upstream_pool *pool, struct member *m, enum blame blame,
                   double retry_after_s) {
    double now = slm_time_mono();
    m->in_flight--;
    bool probe = m->breaker == BREAKER_HALF_OPEN && m->probe_in_flight;
    m->probe_in_flight = false;
    if (retry_after_s >= 0) {
        m->retry_at = now + SLM_MIN(retry_after_s, pool->backoff_max_s);
    }
    if (blame == BLAME_NONE) {
        m->consecutive_failures = 0;
        m->breaker = BREAKER_CLOSED;
        m->healthy = true;
    } else if (blame == BLAME_MEMBER || blame == BLAME_DOWN) {
        m->failures++;
        m->consecutive_failures++;
        if (blame == BLAME_DOWN) {
            m->healthy = false;
        }
        if (probe ||
            (m->breaker == BREAKER_CLOSED && m->consecutive_failures >= pool->breaker_failures)) {
            m->breaker = BREAKER_OPEN;
            m->opened_at = now;
            SLM_LOG(SLM_LOG_WARN, "upstream=%s member=%s breaker open after %d failures",
                    pool->name, m->m.base_url, m->consecutive_failures);
        }
    } else if (blame == BLAME_REQUEST) {
        m->failures++;
    }
    /* After an uninformative end the breaker stays half-open: the next request is the probe. */
    pthread_cond_broadcast(&pool->changed);
}

size_t slm_upstream_pool_stats(struct slm_upstream_pool *pool,
                               struct slm_upstream_member_stats *out, size_t cap) {
    if (!pool) {
        return 0;
    }
    pthread_mutex_lock(&pool->lock);
    for (size_t i = 0; i < pool->n && i < cap; i++) {
        const struct member *m = &pool->members[i];
        out[i] = (struct slm_upstream_member_stats){
            .base_url = m->m.base_url,
            .requests = m->requests,
            .failures = m->failures,
            .in_flight = m->in_flight,
            .healthy = m->healthy,
            .breaker_open = m->breaker != BREAKER_CLOSED,
        };
    }
    pthread_mutex_unlock(&pool->lock);
    return pool->n;
}

/* ---------------------------------------------------------------- one call */

struct call {
    struct slm_upstream_pool *pool;
    const json_t *request;
    double t0, deadline; /* slm_time_mono(); deadline 0 = none */
    const volatile int *cancel;
    bool *tried;
    struct slm_upstream_result *res;
    char reason[96];     /* the last failure, short: "HTTP 429", "connection refused" */
    char detail[112];    /* the upstream's own message for it, may be empty */
    char first_key[224]; /* member + reason of the first failure, to say "N times the same" */
    bool same;           /* every failure so far had first_key */
};

static bool cancelled(const struct call *c) {
    return c->cancel && *c->cancel;
}

static double remaining(const struct call *c) {
    return c->deadline > 0 ? c->deadline - slm_time_mono() : INFINITY;
}

static int fail_deadline(struct call *c, struct slm_err *err) {
    c->res->failure = "timeout";
    if (c->res->attempts == 0) {
        return slm_err_set(err, SLM_E_TIMEOUT,
                           "pool '%s': deadline of %.1f s passed before any "
                           "attempt",
                           c->pool->name, c->deadline - c->t0);
    }
    return slm_err_set(err, SLM_E_TIMEOUT,
                       "pool '%s': deadline of %.1f s passed after %d attempt%s (last: %.100s: "
                       "%s)",
                       c->pool->name, c->deadline - c->t0, c->res->attempts,
                       c->res->attempts == 1 ? "" : "s", c->res->member, c->reason);
}

static int fail_aborted(struct call *c, struct slm_err *err) {
    c->res->failure = "cancelled";
    return slm_err_set(err, SLM_E_ABORTED, "pool '%s': cancelled after %d attempt%s", c->pool->name,
                       c->res->attempts, c->res->attempts == 1 ? "" : "s");
}

/* Sleeps until `until` (monotonic) in short slices so cancellation is seen quickly. */
static int wait_until(struct call *c, double until, struct slm_err *err) {
    if (c->deadline > 0 && until > c->deadline) {
        return fail_deadline(c, err);
    }
    for (;;) {
        if (cancelled(c)) {
            return fail_aborted(c, err);
        }
        double left = until - slm_time_mono();
        if (left <= 0) {
            return SLM_OK;
        }
        slm_sleep_ms((int64_t)(SLM_MIN(left, 0.01) * 1000.0) + 1);
    }
}

static int fail_every_attempt(struct call *c, struct slm_err *err) {
    int n = c->res->attempts;
    if (c->same) {
        return slm_err_set(err, SLM_E_UPSTREAM, "pool '%s': %.100s: %s after %d attempt%s%s%s%s",
                           c->pool->name, c->res->member, c->reason, n, n == 1 ? "" : "s",
                           c->detail[0] ? " (" : "", c->detail, c->detail[0] ? ")" : "");
    }
    return slm_err_set(err, SLM_E_UPSTREAM, "pool '%s': %d attempts failed, last %.100s: %s%s%s%s",
                       c->pool->name, n, c->res->member, c->reason, c->detail[0] ? " (" : "",
                       c->detail, c->detail[0] ? ")" : "");
}

/* Why no member can be chosen: every breaker open (names the first one). */
static int fail_broken(struct call *c, struct slm_err *err) {
    if (c->res->attempts > 0) {
        fail_every_attempt(c, err); /* the code stays the last attempt's */
        return slm_err_prefix(err, "every circuit breaker is open now");
    }
    struct slm_upstream_pool *pool = c->pool;
    pthread_mutex_lock(&pool->lock);
    const struct member *m = &pool->members[0]; /* the one that half-opens first */
    for (size_t i = 1; i < pool->n; i++) {
        if (pool->members[i].opened_at < m->opened_at) {
            m = &pool->members[i];
        }
    }
    c->res->failure = "breaker_open";
    double left = pool->breaker_cooldown_s - (slm_time_mono() - m->opened_at);
    int fails = m->consecutive_failures;
    pthread_mutex_unlock(&pool->lock);
    snprintf(c->res->member, sizeof(c->res->member), "%s", m->m.base_url);
    return slm_err_set(err, SLM_E_UPSTREAM,
                       "pool '%s': every member's circuit breaker is open (%.100s: %d consecutive "
                       "failures, half-open in %.1f s)",
                       pool->name, m->m.base_url, fails, SLM_MAX(left, 0.0));
}

/* Takes a slot on some member, waiting while every available member is at its concurrency cap. */
static int acquire(struct call *c, size_t *idx, struct slm_err *err) {
    struct slm_upstream_pool *pool = c->pool;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        enum pick p = pick_member(pool, c->tried, idx);
        if (p == PICK_OK) {
            pthread_mutex_unlock(&pool->lock);
            return SLM_OK;
        }
        if (p == PICK_BROKEN) {
            pthread_mutex_unlock(&pool->lock);
            return fail_broken(c, err);
        }
        if (cancelled(c)) {
            pthread_mutex_unlock(&pool->lock);
            return fail_aborted(c, err);
        }
        if (remaining(c) <= 0) {
            pthread_mutex_unlock(&pool->lock);
            return fail_deadline(c, err);
        }
        timed_wait(pool, 0.01); /* short: cancellation is polled, not signalled */
    }
}

static void release(struct call *c, struct member *m) {
    /* A slot given back unused: neither a request nor a failure. */
    pthread_mutex_lock(&c->pool->lock);
    m->in_flight--;
    m->requests--;
    m->probe_in_flight = false;
    pthread_cond_broadcast(&c->pool->changed);
    pthread_mutex_unlock(&c->pool->lock);
}

/* The body sent to `m`: the request with its model replaced and streaming off. */
static int request_body(const struct call *c, const struct member *m, struct slm_buf *out) {
    json_t *req = json_deep_copy(c->request);
    if (!req) {
        return SLM_E_NOMEM;
    }
    int rc = SLM_OK;
    if (m->m.model && json_object_set_new(req, "model", json_string(m->m.model)) != 0) {
        rc = SLM_E_NOMEM;
    }
    if (rc == SLM_OK && json_object_set_new(req, "stream", json_false()) != 0) {
        rc = SLM_E_NOMEM;
    }
    json_object_del(req, "stream_options");
    if (rc == SLM_OK) {
        rc = slm_json_dump(req, out);
    }
    json_decref(req);
    return rc;
}

static void note_failure(struct call *c, const char *reason, const char *detail) {
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : "");
    char key[sizeof(c->first_key)];
    snprintf(key, sizeof(key), "%.120s %s", c->res->member, reason);
    if (c->first_key[0] == '\0') {
        snprintf(c->first_key, sizeof(c->first_key), "%s", key);
    } else if (strcmp(key, c->first_key) != 0) {
        c->same = false;
    }
}

enum verdict { V_OK, V_RETRY, V_FATAL, V_TIMEOUT, V_ABORTED };

/* The code slm_upstream_result.failure gives for an exchange (NULL when it answered). */
static const char *failure_code(const struct slm__up_exchange *x) {
    switch (x->outcome) {
    case SLM__UP_HTTP:
        if (x->status >= 200 && x->status < 300) {
            return "bad_reply"; /* unless it parses: judge() clears it then */
        }
        return x->status == 429                       ? "rate_limited"
               : x->status == 401 || x->status == 403 ? "unauthorized"
               : x->status == 408                     ? "timeout"
               : x->status >= 500                     ? "server_error"
                                                      : "rejected";
    case SLM__UP_TIMEOUT: return "timeout";
    case SLM__UP_REFUSED: return "unreachable";
    case SLM__UP_RESET: return "reset";
    case SLM__UP_TOO_LARGE: return "bad_reply";
    case SLM__UP_ABORTED: return "cancelled";
    case SLM__UP_ERROR: return "error";
    }
    return "error";
}

/* Masks the pool's keys (and anything key-shaped) in `s`, in place. */
static void mask(const struct slm_upstream_pool *pool, char *s) {
    slm_mask_secrets(s, NULL, 0);
    for (size_t i = 0; i < pool->n; i++) {
        if (pool->members[i].m.api_key) {
            slm_mask_secrets(s, &pool->members[i].m.api_key, 1);
        }
    }
}

/* Classifies an exchange with member `m`, fills the result on success, settles the member. */
static enum verdict judge(struct call *c, struct member *m, struct slm__up_exchange *x,
                          double attempt_timeout, struct slm_err *err) {
    struct slm_upstream_result *res = c->res;
    res->http_status = x->status;
    char reason[96] = "";
    char detail[112] = "";
    enum verdict v = V_RETRY;
    enum blame blame = BLAME_DOWN;
    res->failure = failure_code(x);
    switch (x->outcome) {
    case SLM__UP_HTTP:
        if (x->status >= 200 && x->status < 300) {
            struct slm_upstream_reply reply;
            struct slm_err perr;
            if (slm_upstream_parse_reply(x->body.ptr, x->body.len, &reply, &perr) == SLM_OK) {
                res->response = reply.body;
                res->tokens_in = reply.tokens_in;
                res->tokens_out = reply.tokens_out;
                res->cost = slm_upstream_price(&m->m, reply.tokens_in, reply.tokens_out);
                res->failure = NULL;
                v = V_OK;
                blame = BLAME_NONE;
                break;
            }
            res->maybe_charged++;
            snprintf(reason, sizeof(reason), "HTTP %d with a malformed reply", x->status);
            snprintf(detail, sizeof(detail), "%.100s", perr.msg);
            blame = BLAME_MEMBER;
            break;
        }
        snprintf(reason, sizeof(reason), "HTTP %d", x->status);
        slm_upstream_error_message(x->body.ptr, x->body.len, detail, sizeof(detail));
        blame = x->status >= 500 ? BLAME_DOWN : BLAME_MEMBER;
        if (x->status != 429 && x->status != 408 && x->status < 500) {
            v = V_FATAL;
            blame = BLAME_REQUEST;
        }
        break;
    case SLM__UP_TIMEOUT:
        res->maybe_charged++;
        snprintf(reason, sizeof(reason), "timeout after %.1f s", attempt_timeout);
        /* Cut short by the call's deadline rather than the member's own timeout. */
        if (attempt_timeout < m->m.timeout_s) {
            v = V_TIMEOUT;
            blame = BLAME_NOBODY;
        }
        break;
    case SLM__UP_REFUSED: snprintf(reason, sizeof(reason), "connection refused"); break;
    case SLM__UP_RESET:
        res->maybe_charged++;
        snprintf(reason, sizeof(reason), "connection reset");
        break;
    case SLM__UP_TOO_LARGE:
        res->maybe_charged++;
        snprintf(reason, sizeof(reason), "reply larger than %zu bytes", SLM_UPSTREAM_MAX_REPLY);
        blame = BLAME_MEMBER;
        break;
    case SLM__UP_ABORTED:
        snprintf(reason, sizeof(reason), "cancelled");
        v = V_ABORTED;
        blame = BLAME_NOBODY;
        break;
    case SLM__UP_ERROR: snprintf(reason, sizeof(reason), "%.90s", x->detail); break;
    }
    pthread_mutex_lock(&c->pool->lock);
    settle(c->pool, m, blame, x->retry_after_s);
    pthread_mutex_unlock(&c->pool->lock);
    if (v == V_OK) {
        return v;
    }
    note_failure(c, reason, detail);
    /* An attempt that may be retried is news for a server's log (info), not a warning on a
     * batch command's terminal: a call that fails for good comes back as an error, which the
     * caller reports (slm label's label_error, slm eval's failed count). */
    enum slm_log_level lvl = v == V_RETRY ? SLM_LOG_INFO : SLM_LOG_WARN;
    if (slm__log_level >= (int)lvl) {
        char line[512];
        snprintf(line, sizeof(line), "upstream=%s member=%s attempt=%d failed: %s", c->pool->name,
                 m->m.base_url, res->attempts, reason);
        mask(c->pool, line);
        SLM_LOG(lvl, "%s", line);
    }
    if (v == V_FATAL) {
        slm_err_set(err, SLM_E_UPSTREAM, "pool '%s': %.100s: %s%s%.110s", c->pool->name,
                    m->m.base_url, reason, detail[0] ? ": " : "", detail);
    }
    return v;
}

/* A kept-alive connection to `m`, or a new one (NULL when that fails: a one-off exchange). */
static struct slm__up_conn *take_conn(struct slm_upstream_pool *pool, struct member *m) {
    pthread_mutex_lock(&pool->lock);
    struct slm__up_conn *conn = m->n_idle > 0 ? m->idle[--m->n_idle] : NULL;
    pthread_mutex_unlock(&pool->lock);
    return conn ? conn : slm__up_conn_new();
}

static void give_conn(struct slm_upstream_pool *pool, struct member *m, struct slm__up_conn *conn) {
    if (!conn) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    if (m->n_idle < m->m.max_concurrency) {
        m->idle[m->n_idle++] = conn;
        conn = NULL;
    }
    pthread_mutex_unlock(&pool->lock);
    slm__up_conn_free(conn);
}

/* One attempt on a member already acquired. */
static enum verdict attempt(struct call *c, size_t idx, struct slm_err *err) {
    struct member *m = &c->pool->members[idx];
    struct slm_upstream_result *res = c->res;
    c->tried[idx] = true;
    res->attempts++;
    snprintf(res->member, sizeof(res->member), "%s", m->m.base_url);
    snprintf(res->model, sizeof(res->model), "%s", m->m.model ? m->m.model : "");
    struct slm_buf body = {0};
    if (request_body(c, m, &body) != SLM_OK) {
        slm_buf_free(&body);
        release(c, m);
        slm_err_set(err, SLM_E_NOMEM, "out of memory building the upstream request");
        return V_FATAL;
    }
    double timeout = SLM_MIN(m->m.timeout_s, remaining(c));
    struct slm__up_conn *conn = take_conn(c->pool, m);
    struct slm__up_exchange x;
    slm__up_http(conn, m->url_chat, m->m.api_key, body.ptr, body.len, timeout, c->cancel, &x);
    give_conn(c->pool, m, conn);
    slm_buf_free(&body);
    enum verdict v = judge(c, m, &x, timeout, err);
    slm_buf_free(&x.body);
    return v;
}

/* Before attempt n+1: full-jitter exponential backoff, then the chosen member's Retry-After. */
static int backoff(struct call *c, int n, struct slm_err *err) {
    struct slm_upstream_pool *pool = c->pool;
    double cap = SLM_MIN(pool->backoff_max_s, pool->backoff_base_s * ldexp(1.0, n - 1));
    pthread_mutex_lock(&pool->lock);
    double wait = rand_unit(pool) * cap;
    pthread_mutex_unlock(&pool->lock);
    return wait_until(c, slm_time_mono() + wait, err);
}

static int honour_retry_after(struct call *c, struct member *m, struct slm_err *err) {
    pthread_mutex_lock(&c->pool->lock);
    double until = m->retry_at;
    pthread_mutex_unlock(&c->pool->lock);
    if (until <= slm_time_mono()) {
        return SLM_OK;
    }
    int rc = wait_until(c, until, err);
    if (rc != SLM_OK) {
        release(c, m);
    }
    return rc;
}

int slm_upstream_chat(struct slm_upstream_pool *pool, const json_t *request, double deadline_s,
                      const volatile int *cancel, struct slm_upstream_result *out,
                      struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    if (!pool || !json_is_object(request)) {
        return slm_err_set(err, SLM_E_INVALID, "upstream request must be a JSON object");
    }
    bool *tried = calloc(pool->n, sizeof(*tried));
    if (!tried) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct call c = {.pool = pool,
                     .request = request,
                     .t0 = slm_time_mono(),
                     .cancel = cancel,
                     .tried = tried,
                     .res = out,
                     .same = true};
    c.deadline = deadline_s > 0 ? c.t0 + deadline_s : 0;
    int rc = SLM_E_UPSTREAM;
    for (int n = 0; n < pool->max_attempts; n++) {
        if (n > 0 && (rc = backoff(&c, n, err)) != SLM_OK) {
            break;
        }
        if (cancelled(&c)) {
            rc = fail_aborted(&c, err);
            break;
        }
        if (remaining(&c) <= 0) {
            rc = fail_deadline(&c, err);
            break;
        }
        size_t idx = 0;
        if ((rc = acquire(&c, &idx, err)) != SLM_OK ||
            (rc = honour_retry_after(&c, &pool->members[idx], err)) != SLM_OK) {
            break;
        }
        enum verdict v = attempt(&c, idx, err);
        rc = v == V_OK        ? SLM_OK
             : v == V_FATAL   ? (err ? err->code : SLM_E_UPSTREAM)
             : v == V_TIMEOUT ? fail_deadline(&c, err)
             : v == V_ABORTED ? fail_aborted(&c, err)
                              : SLM_E_UPSTREAM;
        if (v != V_RETRY) {
            break;
        }
        if (n + 1 == pool->max_attempts) {
            rc = fail_every_attempt(&c, err);
        }
    }
    out->latency_s = slm_time_mono() - c.t0;
    free(tried);
    if (rc != SLM_OK) {
        out->failure = out->failure ? out->failure : "error";
        if (err) {
            mask(pool, err->msg);
        }
    }
    return rc;
}

void slm_upstream_result_free(struct slm_upstream_result *r) {
    if (r) {
        json_decref(r->response);
        r->response = NULL;
    }
}
