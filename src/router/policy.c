/*
 * policy.c - one request through a route: the cheap input checks, the local
 * target, the checks on its answer, escalation down the chain of upstream
 * pools, the local answer as a marked fallback when every upstream fails,
 * the ledger row (written before the answer is returned, also for a request
 * cancelled midway), and shadow sampling (bounded calls on detached threads
 * that update the row when they finish) (slm_router_chat()).
 *
 * Reasons are codes (docs/router.md): the failed checks, `upstream:<code>`
 * per failed pool, `client_aborted` / `shutdown`; they reach the client (the
 * x-slm-reason header, the "slm" field) and the ledger. What an upstream said
 * goes only to the log, masked by the upstream client.
 *
 * Money: `cost` is what the request was charged (the answering upstream's
 * usage at its member's prices, plus anything failed attempts were charged);
 * `cloud_cost` is the all-cloud baseline: the first upstream pool's first
 * member's prices applied to the upstream's usage when the request went up,
 * else to the local token counts.
 */
#include "router_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"

struct outcome {
    const char *where; /* "local" | "escalated" | "local_fallback" | "error" */
    json_t *checks;
    struct slm_buf reason;
    struct slm_router_local_result local;
    bool local_ran;
    struct slm_upstream_result up;
    bool up_ok;
    size_t up_pool;
    double cost_failed;
    double local_ms, upstream_ms;
};

/* ---------------------------------------------------------------- helpers */

static uint64_t next_rand(struct slm_router *r) {
    pthread_mutex_lock(&r->mu);
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    pthread_mutex_unlock(&r->mu);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(struct slm_router *r) {
    return (double)(next_rand(r) >> 11) / (double)(1ull << 53);
}

static const struct slm_upstream_member *baseline_member(const struct slm_router *r,
                                                         const struct slm_router_route *route) {
    if (route->n_escalate == 0) {
        return NULL;
    }
    const struct slm_router_pool *p = &r->cfg->pools[route->escalate[0]];
    return p->n_members ? &p->members[0] : NULL;
}

static const char *answer_text(const json_t *response) {
    const json_t *choice = json_array_get(json_object_get(response, "choices"), 0);
    const json_t *msg = json_object_get(choice, "message");
    const char *t = json_string_value(json_object_get(msg, "content"));
    return t ? t : "";
}

static json_t *slm_field(const struct outcome *o, const char *target) {
    return json_pack("{s:s, s:s, s:s, s:O}", "route", o->where, "reason", slm_buf_cstr(&o->reason),
                     "target", target, "checks", o->checks);
}

static json_t *local_response(struct slm_router *r, const char *route_name,
                              const struct outcome *o) {
    pthread_mutex_lock(&r->mu);
    uint64_t n = ++r->n_requests;
    pthread_mutex_unlock(&r->mu);
    char id[64];
    snprintf(id, sizeof(id), "chatcmpl-slm-%llu", (unsigned long long)n);
    const struct slm_router_local_result *l = &o->local;
    return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s%}, s:s}], s:{s:I, s:I, s:I}}", "id",
                     id, "object", "chat.completion", "created",
                     (json_int_t)(slm_time_unix_ms() / 1000), "model", route_name, "choices",
                     "index", 0, "message", "role", "assistant", "content", slm_buf_cstr(&l->text),
                     l->text.len, "finish_reason", l->finish ? l->finish : "stop", "usage",
                     "prompt_tokens", (json_int_t)l->n_prompt, "completion_tokens",
                     (json_int_t)l->n_gen, "total_tokens", (json_int_t)(l->n_prompt + l->n_gen));
}

/* What goes upstream: the request minus the fields only slm reads (a batch
 * line's "id", template "variables"), which OpenAI-style servers refuse. */
static json_t *upstream_body(const json_t *request) {
    json_t *body = json_copy((json_t *)request);
    if (body) {
        json_object_del(body, "id");
        json_object_del(body, "variables");
    }
    return body;
}

/* ---------------------------------------------------------------- ledger and shadow */

/* Adds the row; *id is its id, or 0 when there is no ledger or the write failed. */
static void write_row(struct slm_router *r, const struct slm_ledger_row *row, int64_t *id) {
    *id = 0;
    if (!r->ledger) {
        return;
    }
    struct slm_err err = {0};
    if (slm_ledger_add_id(r->ledger, row, id, &err) != SLM_OK) {
        /* the client has its answer; losing the meter row is reported, not fatal */
        SLM_LOG(SLM_LOG_ERROR, "router: ledger write failed: %s", err.msg);
        *id = 0;
    }
}

/* A shadow call: the request sent to the first pool after a local answer, to measure agreement.
 * Its row is already written; the verdict updates it. */
struct shadow_job {
    struct slm_router *r;
    size_t pool;
    double deadline_s;
    json_t *request;
    char *answer;
    char *route; /* for the log */
    int64_t row_id;
};

static void shadow_job_free(struct shadow_job *j) {
    json_decref(j->request);
    free(j->answer);
    free(j->route);
    free(j);
}

static void *shadow_main(void *arg) {
    struct shadow_job *j = arg;
    struct slm_router *r = j->r;
    struct slm_upstream_result res;
    struct slm_err err = {0};
    int shadow = -1;
    int rc = slm_upstream_chat(r->upstreams[j->pool], j->request, j->deadline_s, &r->stopping, &res,
                               &err);
    if (rc == SLM_OK) {
        shadow = slm__answers_agree(j->answer, answer_text(res.response)) ? 1 : 0;
    } else {
        SLM_LOG(rc == SLM_E_ABORTED ? SLM_LOG_INFO : SLM_LOG_WARN,
                "router: route=%s shadow call failed (%s): %s", j->route, res.failure, err.msg);
    }
    if (shadow >= 0 || res.cost > 0) {
        struct slm_err lerr = {0};
        if (slm_ledger_set_shadow(r->ledger, j->row_id, shadow, res.cost, &lerr) != SLM_OK) {
            SLM_LOG(SLM_LOG_ERROR, "router: ledger shadow update failed: %s", lerr.msg);
        }
    }
    slm_upstream_result_free(&res);
    shadow_job_free(j);
    pthread_mutex_lock(&r->mu);
    if (--r->shadow_running == 0) {
        pthread_cond_broadcast(&r->shadow_done);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Takes a slot for a shadow call, or counts it as skipped: at most r->shadow_max run at once
 * (a hanging upstream must not pile up threads), none once the router is shutting down. */
static bool shadow_slot(struct slm_router *r, const char *route) {
    pthread_mutex_lock(&r->mu);
    bool ok = !r->stopping && r->shadow_running < r->shadow_max;
    if (ok) {
        r->shadow_running++;
        r->shadows_started++;
    } else {
        r->shadows_skipped++;
    }
    uint64_t skipped = r->shadows_skipped;
    int running = r->shadow_running;
    pthread_mutex_unlock(&r->mu);
    if (!ok) {
        SLM_LOG(SLM_LOG_INFO, "router: route=%s shadow skipped (%d running, cap %d; %llu skipped)",
                route, running, r->shadow_max, (unsigned long long)skipped);
    }
    return ok;
}

static void shadow_slot_return(struct slm_router *r) {
    pthread_mutex_lock(&r->mu);
    r->shadows_started--;
    r->shadows_skipped++;
    if (--r->shadow_running == 0) {
        pthread_cond_broadcast(&r->shadow_done);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Starts the shadow call for the answered request whose row is `row_id`, on its own detached
 * thread, bounded by the route's deadline (or SLM_ROUTER_SHADOW_DEADLINE_S) and cancelled by
 * slm_router_shutdown(). Nothing to do without a ledger row to record it on. */
static void start_shadow(struct slm_router *r, const struct slm_router_route *route,
                         const json_t *request, const char *answer, int64_t row_id) {
    if (row_id <= 0 || !shadow_slot(r, route->name)) {
        return;
    }
    struct shadow_job *j = calloc(1, sizeof(*j));
    bool ok = j != NULL;
    if (ok) {
        j->r = r;
        j->pool = route->escalate[0];
        j->deadline_s = route->deadline_s > 0 ? route->deadline_s : SLM_ROUTER_SHADOW_DEADLINE_S;
        j->request = upstream_body(request);
        j->answer = strdup(answer);
        j->route = strdup(route->name);
        j->row_id = row_id;
        ok = j->request && j->answer && j->route;
    }
    pthread_attr_t attr;
    pthread_t th;
    if (ok && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&th, &attr, shadow_main, j) == 0;
        pthread_attr_destroy(&attr);
    } else {
        ok = false;
    }
    if (!ok) {
        if (j) {
            shadow_job_free(j);
        }
        shadow_slot_return(r);
    }
}

/* ---------------------------------------------------------------- the policy */

static int escalate(struct slm_router *r, const struct slm_router_route *route,
                    const json_t *request, const volatile int *cancel, struct outcome *o,
                    struct slm_err *err) {
    json_t *body = upstream_body(request);
    if (!body) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int out = SLM_OK;
    for (size_t i = 0; i < route->n_escalate; i++) {
        size_t pi = route->escalate[i];
        struct slm_err uerr = {0};
        memset(&o->up, 0, sizeof(o->up));
        int rc =
            slm_upstream_chat(r->upstreams[pi], body, route->deadline_s, cancel, &o->up, &uerr);
        if (rc == SLM_OK) {
            o->up_ok = true;
            o->up_pool = pi;
            break;
        }
        o->cost_failed += o->up.cost;
        slm_upstream_result_free(&o->up);
        if (rc == SLM_E_ABORTED) {
            out = slm_err_set(err, rc, "cancelled");
            break;
        }
        /* The details (member URL, the upstream's own message, masked by the upstream client)
         * are for the operator's log; the client and the ledger get the code. */
        SLM_LOG(SLM_LOG_WARN, "router: route=%s upstream=%s failed (%s): %s", route->name,
                r->cfg->pools[pi].name, o->up.failure, uerr.msg);
        if (slm_buf_printf(&o->reason, "%supstream:%s", o->reason.len ? "," : "",
                           o->up.failure ? o->up.failure : "error") != SLM_OK) {
            /* the reason is capped; the ledger keeps what fits */
        }
    }
    json_decref(body);
    return out;
}

static int decide(struct slm_router *r, const struct slm_router_route *route,
                  const struct slm__req_view *rv, const json_t *request, const volatile int *cancel,
                  struct outcome *o, struct slm_err *err) {
    const struct slm_router_checks *c = &route->checks;
    const struct slm_router_local *t = &r->cfg->locals[route->local];
    struct slm_input_signals in;
    slm_signal_input(rv->input, strlen(rv->input), &in);
    int failed = slm__checks_input(c, &in, o->checks, &o->reason);
    /* an unusual input goes straight up: the local model is not even asked */
    if (failed == 0 || route->n_escalate == 0) {
        double t0 = slm_time_mono();
        int rc = slm__local_run(r, route->local, rv, request, cancel, &o->local, err);
        o->local_ms += (slm_time_mono() - t0) * 1000.0;
        o->local_ran = true;
        if (rc != SLM_OK) {
            return rc;
        }
        if (o->local.status != SLM_OK && !c->local_error) {
            return slm_err_set(err, o->local.status, "local target '%s': %s", t->name,
                               o->local.error);
        }
        failed += slm__checks_output(c, t, &o->local, rv->input, o->checks, &o->reason);
    }
    if (failed == 0) {
        o->where = "local";
        return SLM_OK;
    }
    double t_up = slm_time_mono();
    int rc = escalate(r, route, request, cancel, o, err);
    o->upstream_ms = (slm_time_mono() - t_up) * 1000.0;
    if (rc != SLM_OK) {
        return rc;
    }
    if (o->up_ok) {
        o->where = "escalated";
        return SLM_OK;
    }
    if (!o->local_ran) {
        double t0 = slm_time_mono();
        rc = slm__local_run(r, route->local, rv, request, cancel, &o->local, err);
        o->local_ms += (slm_time_mono() - t0) * 1000.0;
        o->local_ran = true;
        if (rc != SLM_OK) {
            return rc;
        }
    }
    if (o->local.status != SLM_OK) {
        o->where = "error";
        return slm_err_set(err, route->n_escalate ? SLM_E_UPSTREAM : o->local.status,
                           "route '%s': the local target failed (%s) and %s", route->name,
                           o->local.error,
                           route->n_escalate ? "every upstream failed" : "there is no upstream");
    }
    o->where = "local_fallback";
    return SLM_OK;
}

static void fill_row(struct slm_router *r, const struct slm_router_route *route,
                     const struct slm__req_view *rv, const struct outcome *o, double t0,
                     const char *target, struct slm_ledger_row *row) {
    *row = slm_ledger_row_default();
    row->request_id = rv->id;
    row->route = route->name;
    row->where = o->where;
    row->target = target;
    const struct slm_router_local *t = &r->cfg->locals[route->local];
    row->adapter = !o->up_ok && t->n_adapters ? t->adapters[0].path : NULL;
    row->latency_ms = (slm_time_mono() - t0) * 1000.0;
    row->reason = o->reason.len ? slm_buf_cstr(&o->reason) : NULL;
    const struct slm_upstream_member *base = baseline_member(r, route);
    if (o->up_ok) {
        row->tokens_in = o->up.tokens_in;
        row->tokens_out = o->up.tokens_out;
        row->cost = o->up.cost + o->cost_failed;
    } else {
        row->tokens_in = o->local.n_prompt;
        row->tokens_out = o->local.n_gen;
        row->cost = o->cost_failed;
    }
    row->cloud_cost = base ? slm_upstream_price(base, row->tokens_in, row->tokens_out) : 0.0;
}

static void fill_info(struct slm_router_info *info, const struct slm_router_route *route,
                      const struct outcome *o, const char *target, double t0) {
    if (!info) {
        return;
    }
    info->total_ms = (slm_time_mono() - t0) * 1000.0;
    info->local_ms = o->local_ms;
    info->upstream_ms = o->upstream_ms;
    snprintf(info->route, sizeof(info->route), "%s", o->where);
    snprintf(info->reason, sizeof(info->reason), "%s", slm_buf_cstr(&o->reason));
    for (char *c = info->reason; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            *c = ' '; /* it becomes an HTTP header value */
        }
    }
    snprintf(info->target, sizeof(info->target), "%s", target);
    snprintf(info->name, sizeof(info->name), "%s", route->name);
}

static int route_not_found(const struct slm_router *r, const char *name, struct slm_err *err) {
    char names[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < r->cfg->n_routes && used + 1 < sizeof(names); i++) {
        int n = snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                         r->cfg->routes[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
    return slm_err_set(err, SLM_E_NOT_FOUND, "no route named '%s' (routes: %s)", name, names);
}

int slm_router_chat(struct slm_router *r, const json_t *request, const volatile int *cancel,
                    json_t **response, struct slm_router_info *info, struct slm_err *err) {
    *response = NULL;
    double t0 = slm_time_mono();
    struct slm__req_view rv;
    int rc = slm__req_view_init(request, &rv, err);
    if (rc != SLM_OK) {
        return rc;
    }
    const struct slm_router_route *route = slm_router_config_route(r->cfg, rv.model);
    if (!route) {
        rc = route_not_found(r, rv.model, err);
        slm__req_view_free(&rv);
        return rc;
    }
    struct outcome o;
    memset(&o, 0, sizeof(o));
    slm_buf_init(&o.reason, 4096);
    o.checks = json_object();
    o.where = "error";
    rc = o.checks ? decide(r, route, &rv, request, cancel, &o, err)
                  : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    char target[256];
    if (o.up_ok) {
        snprintf(target, sizeof(target), "%s/%s", r->cfg->pools[o.up_pool].name, o.up.model);
    } else {
        snprintf(target, sizeof(target), "%s", r->cfg->locals[route->local].name);
    }
    json_t *resp = NULL;
    if (rc == SLM_OK) {
        resp = o.up_ok ? json_deep_copy(o.up.response) : local_response(r, route->name, &o);
        json_t *field = slm_field(&o, target);
        if (!resp || !field || json_object_set_new(resp, "slm", field) != 0) {
            json_decref(resp);
            resp = NULL;
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    if (rc != SLM_OK) {
        o.where = "error";
    }
    if (rc == SLM_E_ABORTED) {
        const char *code = cancel && *cancel == SLM_ROUTER_CANCEL_SHUTDOWN  ? "shutdown"
                           : cancel && *cancel == SLM_ROUTER_CANCEL_TIMEOUT ? "timeout"
                                                                            : "client_aborted";
        if (slm_buf_printf(&o.reason, "%s%s", o.reason.len ? "," : "", code) != SLM_OK) {
            /* capped: the ledger keeps what fits */
        }
    }
    /* The row is committed before the answer leaves (kill -9 right after loses nothing), also
     * for a request that will be shadowed: the shadow's verdict updates it later. */
    struct slm_ledger_row row;
    fill_row(r, route, &rv, &o, t0, target, &row);
    int64_t row_id = 0;
    write_row(r, &row, &row_id);
    if (rc == SLM_OK && strcmp(o.where, "local") == 0 && route->shadow > 0 &&
        route->n_escalate > 0 && uniform01(r) < route->shadow) {
        start_shadow(r, route, request, slm_buf_cstr(&o.local.text), row_id);
    }
    fill_info(info, route, &o, target, t0);
    slm_router_local_result_free(&o.local);
    slm_upstream_result_free(&o.up);
    json_decref(o.checks);
    slm_buf_free(&o.reason);
    slm__req_view_free(&rv);
    *response = resp;
    return rc;
}

int slm_router_run_local(struct slm_router *r, const char *route_name, const json_t *request,
                         const volatile int *cancel, struct slm_router_local_result *out,
                         struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    const struct slm_router_route *route = slm_router_config_route(r->cfg, route_name);
    if (!route) {
        return route_not_found(r, route_name, err);
    }
    struct slm__req_view rv;
    int rc = slm__req_view_init(request, &rv, err);
    if (rc == SLM_OK) {
        rc = slm__local_run(r, route->local, &rv, request, cancel, out, err);
    }
    slm__req_view_free(&rv);
    return rc;
}
