/*
 * eval/contract.c - the contractor's upstream, budget and single call (slm/contract.h): a pool
 * of the router's upstream client opened from a router.yaml or inline flags, worst-case
 * reservations against a hard cap, and the cache consulted before and filled after each call.
 * No HTTP here: every byte to a cloud goes through slm_upstream_chat().
 */
#include "slm/contract.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "eval/internal.h"
#include "slm/json.h"
#include "slm/router.h"
#include "slm/upstream.h"

/* ---------------------------------------------------------------- upstream */

struct slm_contract_upstream {
    struct slm_upstream_pool *pool;
    char *name;
    char *identity;             /* "base_url model\n" per member: what the cache keys on */
    double price_in, price_out; /* the dearest member's, per 1M tokens */
    int max_attempts;
    int concurrency;
};

static int identity_add(struct slm_buf *id, const struct slm_upstream_member *m) {
    int rc = slm_buf_puts(id, m->base_url);
    rc |= slm_buf_putc(id, ' ');
    rc |= slm_buf_puts(id, m->model ? m->model : "");
    rc |= slm_buf_putc(id, '\n');
    return rc;
}

/* Prices, identity and concurrency from the members the pool was opened with. */
static int describe(struct slm_contract_upstream *u, const struct slm_upstream_params *p) {
    struct slm_buf id = {0};
    int rc = SLM_OK;
    for (size_t i = 0; i < p->n_members; i++) {
        const struct slm_upstream_member *m = &p->members[i];
        rc |= identity_add(&id, m);
        u->price_in = SLM_MAX(u->price_in, m->price_in_per_m);
        u->price_out = SLM_MAX(u->price_out, m->price_out_per_m);
        u->concurrency += m->max_concurrency > 0 ? m->max_concurrency : 16;
    }
    u->max_attempts = p->max_attempts > 0 ? p->max_attempts : 3;
    u->identity = rc == SLM_OK ? slm_buf_take(&id) : NULL;
    slm_buf_free(&id);
    return u->identity ? SLM_OK : SLM_E_NOMEM;
}

static int open_router(const struct slm_contract_upstream_spec *s, struct slm_contract_upstream *u,
                       struct slm_err *err) {
    if (!s->upstream || !s->upstream[0]) {
        return slm_err_set(err, SLM_E_INVALID, "--router %s needs --upstream NAME", s->router_path);
    }
    struct slm_router_config *cfg = NULL;
    int rc = slm_router_config_load(s->router_path, &cfg, err);
    if (rc == SLM_OK) {
        rc = slm_router_config_open_pool(cfg, s->upstream, s->seed, &u->pool, err);
    }
    for (size_t i = 0; rc == SLM_OK && i < cfg->n_pools; i++) {
        if (strcmp(cfg->pools[i].name, s->upstream) == 0) {
            rc = describe(u, &cfg->pools[i].params);
        }
    }
    if (rc == SLM_OK && !(u->name = slm_str_dup(slm_str_c(s->upstream)))) {
        rc = SLM_E_NOMEM;
    }
    slm_router_config_free(cfg);
    return rc;
}

static int open_inline(const struct slm_contract_upstream_spec *s, struct slm_contract_upstream *u,
                       struct slm_err *err) {
    if (!s->model || !s->model[0]) {
        return slm_err_set(err, SLM_E_INVALID, "--base-url %s needs --model M", s->base_url);
    }
    if (!(s->price_in >= 0) || !(s->price_out >= 0)) {
        return slm_err_set(err, SLM_E_INVALID, "prices must be non-negative numbers");
    }
    struct slm_upstream_member m = {
        .base_url = s->base_url,
        .api_key = s->api_key,
        .model = s->model,
        .price_in_per_m = s->price_in,
        .price_out_per_m = s->price_out,
        .timeout_s = s->timeout_s,
        .max_concurrency = s->max_concurrency,
    };
    struct slm_upstream_params p;
    slm_upstream_params_default(&p);
    p.name = "inline";
    p.members = &m;
    p.n_members = 1;
    p.max_attempts = s->max_attempts;
    p.seed = s->seed;
    int rc = slm_upstream_pool_open(&p, &u->pool, err);
    if (rc == SLM_OK) {
        rc = describe(u, &p);
    }
    struct slm_buf name = {0};
    if (rc == SLM_OK &&
        (slm_buf_puts(&name, s->model) != SLM_OK || slm_buf_putc(&name, '@') != SLM_OK ||
         slm_buf_puts(&name, s->base_url) != SLM_OK)) {
        rc = SLM_E_NOMEM;
    }
    u->name = rc == SLM_OK ? slm_buf_take(&name) : NULL;
    slm_buf_free(&name);
    return rc == SLM_OK && !u->name ? SLM_E_NOMEM : rc;
}

int slm_contract_upstream_open(const struct slm_contract_upstream_spec *spec,
                               struct slm_contract_upstream **out, struct slm_err *err) {
    *out = NULL;
    bool by_router = spec && spec->router_path && spec->router_path[0];
    bool by_url = spec && spec->base_url && spec->base_url[0];
    if (!by_router && !by_url) {
        if (spec && spec->upstream && spec->upstream[0]) {
            return slm_err_set(err, SLM_E_INVALID, "--upstream %s needs --router FILE",
                               spec->upstream);
        }
        return slm_err_set(err, SLM_E_INVALID, SLM_CONTRACT_NO_UPSTREAM);
    }
    if (by_router && by_url) {
        return slm_err_set(
            err, SLM_E_INVALID,
            "name one upstream: --router/--upstream or --base-url/--model, not both");
    }
    struct slm_contract_upstream *u = calloc(1, sizeof(*u));
    if (!u) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = by_router ? open_router(spec, u, err) : open_inline(spec, u, err);
    if (rc != SLM_OK) {
        if (rc == SLM_E_NOMEM && err && !err->msg[0]) {
            slm_err_set(err, rc, "out of memory");
        }
        slm_contract_upstream_free(u);
        return rc;
    }
    *out = u;
    return SLM_OK;
}

void slm_contract_upstream_free(struct slm_contract_upstream *u) {
    if (!u) {
        return;
    }
    slm_upstream_pool_free(u->pool);
    free(u->name);
    free(u->identity);
    free(u);
}

const char *slm_contract_upstream_name(const struct slm_contract_upstream *u) {
    return u->name;
}

int slm_contract_upstream_concurrency(const struct slm_contract_upstream *u) {
    return u->concurrency;
}

const char *slm__contract_identity(const struct slm_contract_upstream *u) {
    return u->identity;
}

/* The worst case of one attempt. */
static double worst_attempt(const struct slm_contract_upstream *u, const json_t *request) {
    const json_t *mt = json_object_get(request, "max_tokens");
    if (!json_is_integer(mt)) {
        mt = json_object_get(request, "max_completion_tokens");
    }
    if (!json_is_integer(mt) || json_integer_value(mt) < 0) {
        return INFINITY;
    }
    /* A token covers at least one byte of the text it stands for, so the serialized messages'
     * byte count bounds the prompt's tokens; the JSON quoting, keys and role names add more
     * bytes per message than a chat template adds special tokens. */
    char *msgs = json_dumps(json_object_get(request, "messages"), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!msgs) {
        return INFINITY;
    }
    double in = (double)strlen(msgs);
    free(msgs);
    double out = (double)json_integer_value(mt);
    return in * u->price_in / 1e6 + out * u->price_out / 1e6;
}

double slm_contract_worst_cost(const struct slm_contract_upstream *u, const json_t *request) {
    return worst_attempt(u, request) * (double)u->max_attempts;
}

/* ---------------------------------------------------------------- budget */

struct slm_contract_budget {
    pthread_mutex_t mu;
    pthread_cond_t settled;
    double cap, spent, reserved;
    bool exhausted;
};

int slm_contract_budget_init(double cap, struct slm_contract_budget **out) {
    *out = calloc(1, sizeof(**out));
    if (!*out) {
        return SLM_E_NOMEM;
    }
    pthread_mutex_init(&(*out)->mu, NULL);
    pthread_cond_init(&(*out)->settled, NULL);
    (*out)->cap = cap < 0 || isnan(cap) ? INFINITY : cap;
    return SLM_OK;
}

void slm_contract_budget_free(struct slm_contract_budget *b) {
    if (b) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->settled);
        free(b);
    }
}

bool slm_contract_budget_reserve(struct slm_contract_budget *b, double amount) {
    pthread_mutex_lock(&b->mu);
    bool ok = false;
    /* While other calls hold reservations, their settling may free enough: wait for them.
     * With nothing in flight, what does not fit now never will. */
    while (!b->exhausted && amount >= 0) {
        if (isinf(b->cap) || b->spent + b->reserved + amount <= b->cap) {
            b->reserved += amount;
            ok = true;
            break;
        }
        if (b->reserved <= 0) {
            break;
        }
        pthread_cond_wait(&b->settled, &b->mu);
    }
    if (!ok) {
        b->exhausted = true;
        pthread_cond_broadcast(&b->settled);
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void slm_contract_budget_settle(struct slm_contract_budget *b, double reserved, double actual) {
    pthread_mutex_lock(&b->mu);
    b->reserved -= reserved;
    if (b->reserved < 1e-12) {
        b->reserved = 0; /* no drift from summing doubles: "nothing in flight" must be exact */
    }
    b->spent += actual;
    pthread_cond_broadcast(&b->settled);
    pthread_mutex_unlock(&b->mu);
}

void slm_contract_budget_get(struct slm_contract_budget *b, struct slm_contract_budget_state *out) {
    pthread_mutex_lock(&b->mu);
    *out = (struct slm_contract_budget_state){b->cap, b->spent, b->reserved, b->exhausted};
    pthread_mutex_unlock(&b->mu);
}

/* ---------------------------------------------------------------- the contract */

struct slm_contract {
    struct slm_contract_params p;
    struct slm_contract_budget *budget; /* p.budget, or own */
    struct slm_contract_budget *own;
    pthread_mutex_t mu;
    uint64_t calls, cached, failed;
};

int slm_contract_init(const struct slm_contract_params *p, struct slm_contract **out,
                      struct slm_err *err) {
    *out = NULL;
    if (!p || !p->upstream) {
        return slm_err_set(err, SLM_E_INVALID, SLM_CONTRACT_NO_UPSTREAM);
    }
    struct slm_contract *c = calloc(1, sizeof(*c));
    if (!c || (!p->budget &&
               slm_contract_budget_init(p->max_cost > 0 ? p->max_cost : INFINITY, &c->own))) {
        free(c);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    c->budget = p->budget ? p->budget : c->own;
    c->p = *p;
    if (c->p.deadline_s <= 0) {
        c->p.deadline_s = 300;
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return SLM_OK;
}

void slm_contract_free(struct slm_contract *c) {
    if (!c) {
        return;
    }
    slm_contract_budget_free(c->own);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

struct slm_contract_upstream *slm_contract_get_upstream(struct slm_contract *c) {
    return c->p.upstream;
}

void slm_contract_get_stats(struct slm_contract *c, struct slm_contract_stats *out) {
    struct slm_contract_budget_state b;
    slm_contract_budget_get(c->budget, &b);
    pthread_mutex_lock(&c->mu);
    *out = (struct slm_contract_stats){c->calls, c->cached, c->failed, b.spent, b.cap, b.exhausted};
    pthread_mutex_unlock(&c->mu);
}

static void count(struct slm_contract *c, uint64_t *field) {
    pthread_mutex_lock(&c->mu);
    (*field)++;
    pthread_mutex_unlock(&c->mu);
}

/* Points text/finish into the response. */
static void read_reply(struct slm_contract_reply *r) {
    const json_t *choice = json_array_get(json_object_get(r->response, "choices"), 0);
    const char *text =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    r->text = text ? text : "";
    r->finish = finish ? finish : "";
}

/* What an answered call cost, never less than it may have: usage when the reply has it, else
 * the worst case; plus the worst case of each attempt that may have been billed unseen. */
static double actual_cost(const struct slm_upstream_result *res, double worst_one) {
    double cost = res->tokens_in > 0 || res->tokens_out > 0 ? res->cost : worst_one;
    return cost + (double)res->maybe_charged * worst_one;
}

static int send_call(struct slm_contract *c, const json_t *request, const char *key,
                     struct slm_contract_reply *out, struct slm_err *err) {
    double worst_one = worst_attempt(c->p.upstream, request);
    double reserve = slm_contract_worst_cost(c->p.upstream, request);
    if (!slm_contract_budget_reserve(c->budget, reserve)) {
        struct slm_contract_budget_state b;
        slm_contract_budget_get(c->budget, &b);
        if (isinf(reserve)) {
            return slm_err_set(err, SLM_E_INVALID,
                               "a request without max_tokens has no worst case to reserve");
        }
        return slm_err_set(err, SLM_E_LIMIT,
                           "the cost cap of %.4f cannot take another call (spent %.4f, the next "
                           "call may cost up to %.4f)",
                           b.cap, b.spent, reserve);
    }
    struct slm_upstream_result res;
    int rc =
        slm_upstream_chat(c->p.upstream->pool, request, c->p.deadline_s, c->p.cancel, &res, err);
    double actual =
        rc == SLM_OK ? actual_cost(&res, worst_one) : (double)res.maybe_charged * worst_one;
    slm_contract_budget_settle(c->budget, reserve, actual);
    count(c, rc == SLM_OK ? &c->calls : &c->failed);
    out->failure = rc == SLM_OK ? NULL : res.failure;
    if (rc == SLM_OK) {
        out->response = res.response;
        res.response = NULL;
        out->tokens_in = res.tokens_in;
        out->tokens_out = res.tokens_out;
        out->cost = out->made_cost = actual;
        out->latency_s = out->made_latency_s = res.latency_s;
        if (c->p.cache) {
            struct slm_contract_usage u = {out->tokens_in, out->tokens_out, actual, res.latency_s};
            rc = slm_contract_cache_put(c->p.cache, key, out->response, &u, err);
        }
    }
    slm_upstream_result_free(&res);
    return rc;
}

int slm_contract_chat(struct slm_contract *c, const json_t *request, struct slm_contract_reply *out,
                      struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    char key[65] = "";
    int rc = SLM_OK;
    if (c->p.cache) {
        if ((rc = slm_contract_cache_key(c->p.upstream, request, key)) != SLM_OK) {
            return slm_err_set(err, rc, "out of memory");
        }
        struct slm_contract_usage u = {0};
        rc = slm_contract_cache_get(c->p.cache, key, &out->response, &u, err);
        if (rc == SLM_OK) {
            out->from_cache = true;
            out->tokens_in = u.tokens_in;
            out->tokens_out = u.tokens_out;
            out->made_cost = u.cost;
            out->made_latency_s = u.latency_s;
            count(c, &c->cached);
            read_reply(out);
            return SLM_OK;
        }
        if (rc != SLM_E_NOT_FOUND) {
            return rc;
        }
    }
    rc = send_call(c, request, key, out, err);
    if (rc != SLM_OK) {
        slm_contract_reply_free(out);
        return rc;
    }
    read_reply(out);
    return SLM_OK;
}

void slm_contract_reply_free(struct slm_contract_reply *r) {
    if (r) {
        json_decref(r->response);
        r->response = NULL;
        r->text = r->finish = "";
    }
}

/* ---------------------------------------------------------------- requests */

static const char *const DEFAULT_FIELDS[] = {"text", "input", "prompt", NULL};

static int user_text(const struct slm_contract_ask *a, const json_t *row, struct slm_buf *out,
                     struct slm_err *err) {
    if (a->tmpl) {
        int rc = slm_liquid_render(a->tmpl, row, out, err);
        /* A template file's final newline is the file's, not the message's. */
        while (rc == SLM_OK && out->len > 0 &&
               (out->ptr[out->len - 1] == '\n' || out->ptr[out->len - 1] == '\r')) {
            out->ptr[--out->len] = '\0';
        }
        return rc;
    }
    for (size_t i = 0; DEFAULT_FIELDS[i]; i++) {
        const json_t *v = json_object_get(row, DEFAULT_FIELDS[i]);
        if (json_is_string(v)) {
            return slm_buf_append_str(out, slm_json_str(v)) == SLM_OK
                       ? SLM_OK
                       : slm_err_set(err, SLM_E_TOO_LARGE, "the row's text is too large");
        }
    }
    return slm_err_set(err, SLM_E_INVALID,
                       "the row has no string 'text', 'input' or 'prompt' field; pass --template "
                       "FILE to say what to send");
}

static json_t *message(const char *role, const char *content) {
    return json_pack("{s:s, s:s}", "role", role, "content", content);
}

int slm_contract_request(const struct slm_contract_ask *a, const json_t *row, json_t **request,
                         char **prompt, struct slm_err *err) {
    *request = NULL;
    if (prompt) {
        *prompt = NULL;
    }
    if (!json_is_object(row)) {
        return slm_err_set(err, SLM_E_INVALID, "a row must be an object");
    }
    struct slm_buf text;
    slm_buf_init(&text, (size_t)4 << 20);
    int rc = user_text(a, row, &text, err);
    json_t *req = rc == SLM_OK ? json_object() : NULL;
    json_t *msgs = req ? json_array() : NULL;
    if (rc == SLM_OK && (!msgs || json_object_set_new(req, "messages", msgs) != 0)) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && a->system &&
        json_array_append_new(msgs, message("system", a->system)) != 0) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && json_array_append_new(msgs, message("user", slm_buf_cstr(&text))) != 0) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && a->fields && json_object_update(req, (json_t *)a->fields) != 0) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && prompt && !(*prompt = slm_buf_take(&text))) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    slm_buf_free(&text);
    if (rc != SLM_OK) {
        json_decref(req);
        return rc;
    }
    *request = req;
    return SLM_OK;
}
