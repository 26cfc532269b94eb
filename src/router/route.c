/*
 * route.c - the router object: the configuration bound to a model pool, a
 * store, upstream pools and a ledger (slm/router.h).
 */
#include "router_internal.h"

#include <stdlib.h>
#include <string.h>

struct slm_router_params slm_router_params_default(void) {
    struct slm_router_params p;
    memset(&p, 0, sizeof(p));
    return p;
}

const struct slm_router_config *slm_router_get_config(const struct slm_router *r) {
    return r->cfg;
}

/* API keys come from the environment at load, never from the file. */
static int resolve_keys(struct slm_router_config *cfg, struct slm_router_pool *p,
                        struct slm_err *err) {
    for (size_t j = 0; j < p->n_members; j++) {
        const char *env = p->api_key_envs[j];
        if (!env) {
            continue;
        }
        const char *key = getenv(env);
        if (!key || !key[0]) {
            return slm_err_set(err, SLM_E_INVALID,
                               "%s: upstream '%s': environment variable %s (api_key_env) is "
                               "not set",
                               cfg->path, p->name, env);
        }
        free((char *)p->members[j].api_key);
        if (!(p->members[j].api_key = strdup(key))) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    return SLM_OK;
}

int slm_router_config_open_pool(struct slm_router_config *cfg, const char *name, uint64_t seed,
                                struct slm_upstream_pool **out, struct slm_err *err) {
    *out = NULL;
    struct slm_router_pool *p = NULL;
    for (size_t i = 0; i < cfg->n_pools && !p; i++) {
        p = strcmp(cfg->pools[i].name, name) == 0 ? &cfg->pools[i] : NULL;
    }
    if (!p) {
        char names[512] = "";
        size_t len = 0;
        for (size_t i = 0; i < cfg->n_pools && len < sizeof(names); i++) {
            len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "",
                                    cfg->pools[i].name);
        }
        return slm_err_set(err, SLM_E_NOT_FOUND, "%s: no upstream named '%s' (it has: %s)",
                           cfg->path, name, cfg->n_pools ? names : "none");
    }
    int rc = resolve_keys(cfg, p, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (seed && !p->params.seed) {
        p->params.seed = seed;
    }
    rc = slm_upstream_pool_open(&p->params, out, err);
    return rc == SLM_OK ? SLM_OK : slm_err_prefix(err, "upstream '%s'", p->name);
}

static int open_upstreams(struct slm_router *r, struct slm_err *err) {
    struct slm_router_config *cfg = r->cfg;
    r->upstreams = calloc(cfg->n_pools + 1, sizeof(*r->upstreams));
    if (!r->upstreams) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < cfg->n_pools; i++) {
        struct slm_router_pool *p = &cfg->pools[i];
        int rc = resolve_keys(cfg, p, err);
        if (rc != SLM_OK) {
            return rc;
        }
        if (r->rng && !p->params.seed) {
            p->params.seed = r->rng + i + 1;
        }
        rc = slm_upstream_pool_open(&p->params, &r->upstreams[i], err);
        if (rc != SLM_OK) {
            return slm_err_prefix(err, "upstream '%s'", p->name);
        }
    }
    return SLM_OK;
}

static int open_parts(struct slm_router *r, const struct slm_router_params *p,
                      struct slm_err *err) {
    int rc = SLM_OK;
    r->store = p->store;
    if (!r->store) {
        r->own_store = true;
        rc = slm_store_open(NULL, &r->store, err);
    }
    r->pool = p->pool;
    if (rc == SLM_OK && !r->pool) {
        r->own_pool = true;
        struct slm_pool_params pp = slm_pool_params_default();
        pp.default_keep_alive_ms = -1; /* a batch run keeps its models */
        pp.sched.n_threads = p->n_threads;
        rc = slm_pool_init(&pp, &r->pool, err);
    }
    r->ledger = p->ledger;
    if (rc == SLM_OK && !r->ledger && !r->cfg->meter.off) {
        r->own_ledger = true;
        rc = slm_ledger_open(r->cfg->meter.ledger, &r->ledger, err);
    }
    if (rc == SLM_OK) {
        rc = open_upstreams(r, err);
    }
    return rc;
}

int slm_router_load(const char *path, const struct slm_router_params *params,
                    struct slm_router **out, struct slm_err *err) {
    *out = NULL;
    struct slm_router_params p = params ? *params : slm_router_params_default();
    struct slm_router *r = calloc(1, sizeof(*r));
    if (!r) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->shadow_done, NULL);
    r->n_threads = p.n_threads;
    r->shadow_max = p.max_shadows > 0 ? p.max_shadows : SLM_ROUTER_MAX_SHADOWS;
    r->rng = p.seed ? p.seed : (uint64_t)slm_time_unix_ms() ^ (uint64_t)(uintptr_t)r;
    int rc = slm_router_config_load(path, &r->cfg, err);
    if (rc == SLM_OK) {
        r->locals = calloc(r->cfg->n_locals + 1, sizeof(*r->locals));
        rc = r->locals ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == SLM_OK && i < r->cfg->n_locals; i++) {
        r->locals[i].cfg = &r->cfg->locals[i];
        pthread_mutex_init(&r->locals[i].mu, NULL);
    }
    if (rc == SLM_OK) {
        rc = open_parts(r, &p, err);
    }
    if (rc != SLM_OK) {
        slm_router_free(r);
        return rc;
    }
    *out = r;
    return SLM_OK;
}

void slm_router_shutdown(struct slm_router *r) {
    if (!r) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_mutex_unlock(&r->mu);
}

void slm_router_stats(struct slm_router *r, struct slm_router_stats *out) {
    pthread_mutex_lock(&r->mu);
    out->shadows_started = r->shadows_started;
    out->shadows_skipped = r->shadows_skipped;
    out->shadows_running = r->shadow_running;
    pthread_mutex_unlock(&r->mu);
}

void slm_router_free(struct slm_router *r) {
    if (!r) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    while (r->shadow_running > 0) {
        pthread_cond_wait(&r->shadow_done, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; r->locals && i < r->cfg->n_locals; i++) {
        slm__local_rt_free(r, &r->locals[i]);
        pthread_mutex_destroy(&r->locals[i].mu);
    }
    free(r->locals);
    for (size_t i = 0; r->upstreams && i < r->cfg->n_pools; i++) {
        slm_upstream_pool_free(r->upstreams[i]);
    }
    free(r->upstreams);
    if (r->own_ledger) {
        slm_ledger_close(r->ledger);
    }
    if (r->own_pool) {
        slm_pool_free(r->pool);
    }
    if (r->own_store) {
        slm_store_close(r->store);
    }
    slm_router_config_free(r->cfg);
    pthread_cond_destroy(&r->shadow_done);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
