/*
 * engine/pool.c - the model pool: loads a model (and starts its scheduler)
 * on first acquire, pins it while acquired, unloads it after keep_alive idle,
 * and keeps what each model needs (slm/memory.h's estimate) under a memory
 * budget by unloading the least recently used idle models first; a model that
 * cannot fit even alone is refused (unless forced). Adapters are cached per
 * model.
 *
 * Threads: everything is under the pool's mutex except loading and
 * unloading, which happen outside it (an entry being loaded is marked, and
 * other acquirers of the same path wait for it). A reaper thread unloads
 * models whose keep-alive ran out.
 */
#include "slm/sched.h"
#include "slm/memory.h"
#include "slm/sync.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"

#define DEFAULT_KEEP_ALIVE_MS (5 * 60 * 1000)

struct pool_adapter {
    char *path;
    struct slm_adapter *adapter;
    struct pool_adapter *next;
};

struct pool_model {
    char path[1024];
    struct slm_model *model; /* NULL while loading */
    struct slm_sched *sched;
    bool loading;
    uint32_t in_use;
    int64_t keep_alive_ms; /* < 0: forever */
    int64_t idle_since;    /* monotonic ms of the last release */
    uint64_t size_bytes;
    struct pool_adapter *adapters;
    struct pool_model *next;
};

struct slm_pool {
    struct slm_pool_params p;
    pthread_mutex_t mu;
    pthread_cond_t loaded; /* an entry finished loading (or failed) */
    pthread_cond_t reap;   /* the reaper's clock: an expiry may have changed */
    pthread_t reaper;
    bool stopping;
    struct pool_model *models;
    uint64_t bytes; /* size_bytes of every entry, loading ones included */
};

static int64_t mono_ms(void) {
    return (int64_t)(slm_time_mono() * 1000.0);
}

struct slm_pool_params slm_pool_params_default(void) {
    return (struct slm_pool_params){
        .memory_budget = 0,
        .default_keep_alive_ms = DEFAULT_KEEP_ALIVE_MS,
        .sched = slm_sched_params_default(),
    };
}

/* The one estimate (slm/memory.h) with the scheduler's context, less the process itself,
 * which is running already: what loading `path` adds. */
static int estimate_bytes(const struct slm_pool *pool, const char *path,
                          struct slm_mem_estimate *est, uint64_t *out, struct slm_err *err) {
    const struct slm_sched_params *sp = &pool->p.sched;
    struct slm_mem_params mp = slm_mem_params_default();
    mp.n_parallel = sp->n_parallel > 0 ? sp->n_parallel : 4;
    mp.n_ctx = sp->n_ctx;
    mp.n_batch = sp->n_batch;
    mp.kv_f32 = sp->kv_f32;
    int rc = slm_mem_estimate(path, &mp, est, NULL, err);
    if (rc != SLM_OK) {
        return rc;
    }
    *out = est->total - est->baseline;
    return SLM_OK;
}

static void unload(struct pool_model *e) {
    slm_sched_free(e->sched);
    for (struct pool_adapter *a = e->adapters, *next; a; a = next) {
        next = a->next;
        slm_adapter_free(a->adapter);
        free(a->path);
        free(a);
    }
    slm_model_free(e->model);
    free(e);
}

static void unload_list(struct pool_model *list) {
    while (list) {
        struct pool_model *next = list->next;
        SLM_LOG(SLM_LOG_INFO, "pool: unloading %s", list->path);
        unload(list);
        list = next;
    }
}

static void unlink_model(struct slm_pool *pool, struct pool_model *e) {
    for (struct pool_model **pp = &pool->models; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    e->next = NULL;
    pool->bytes -= e->size_bytes;
}

static bool idle(const struct pool_model *e) {
    return !e->loading && e->in_use == 0;
}

/* Monotonic ms when `e` expires, or INT64_MAX for never. */
static int64_t expiry(const struct pool_model *e) {
    return e->keep_alive_ms < 0 ? INT64_MAX : e->idle_since + e->keep_alive_ms;
}

/* Unlinks idle models past their keep-alive onto *out. Under mu. */
static void collect_expired(struct slm_pool *pool, int64_t now, struct pool_model **out) {
    struct pool_model *e = pool->models;
    while (e) {
        struct pool_model *next = e->next;
        if (idle(e) && expiry(e) <= now) {
            unlink_model(pool, e);
            e->next = *out;
            *out = e;
        }
        e = next;
    }
}

static void *reaper_main(void *arg) {
    struct slm_pool *pool = arg;
    pthread_mutex_lock(&pool->mu);
    while (!pool->stopping) {
        struct pool_model *dead = NULL;
        int64_t now = mono_ms();
        collect_expired(pool, now, &dead);
        if (dead) {
            pthread_mutex_unlock(&pool->mu);
            unload_list(dead);
            pthread_mutex_lock(&pool->mu);
            continue;
        }
        int64_t next = INT64_MAX;
        for (struct pool_model *e = pool->models; e; e = e->next) {
            if (idle(e)) {
                next = SLM_MIN(next, expiry(e));
            }
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&pool->reap, &pool->mu);
            continue;
        }
        slm_cond_wait_for(&pool->reap, &pool->mu, (double)(next - now + 1) / 1000.0);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int slm_pool_init(const struct slm_pool_params *p, struct slm_pool **out, struct slm_err *err) {
    struct slm_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pool->p = p ? *p : slm_pool_params_default();
    if (pool->p.memory_budget == 0) {
        struct slm_mem_avail avail;
        slm_mem_usable(&avail, NULL, NULL);
        pool->p.memory_budget = avail.available;
    }
    if (pool->p.default_keep_alive_ms == 0) {
        pool->p.default_keep_alive_ms = DEFAULT_KEEP_ALIVE_MS;
    }
    int ok = pthread_mutex_init(&pool->mu, NULL) == 0;
    ok = ok && pthread_cond_init(&pool->loaded, NULL) == 0;
    ok = ok && slm_cond_init_mono(&pool->reap) == 0;
    if (!ok || pthread_create(&pool->reaper, NULL, reaper_main, pool) != 0) {
        free(pool);
        return slm_err_set(err, SLM_E_NOMEM, "could not start the model pool");
    }
    *out = pool;
    return SLM_OK;
}

void slm_pool_free(struct slm_pool *pool) {
    if (!pool) {
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->stopping = true;
    pthread_cond_signal(&pool->reap);
    pthread_mutex_unlock(&pool->mu);
    pthread_join(pool->reaper, NULL);
    unload_list(pool->models);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->loaded);
    pthread_cond_destroy(&pool->reap);
    free(pool);
}

static struct pool_model *find_path(struct slm_pool *pool, const char *path) {
    for (struct pool_model *e = pool->models; e; e = e->next) {
        if (strcmp(e->path, path) == 0) {
            return e;
        }
    }
    return NULL;
}

static void set_keep_alive(struct slm_pool *pool, struct pool_model *e, int64_t keep_alive_ms) {
    if (keep_alive_ms == -2) {
        return;
    }
    e->keep_alive_ms = keep_alive_ms < 0 ? -1 : keep_alive_ms;
    pthread_cond_signal(&pool->reap);
}

/* Makes room for `need` bytes by unlinking least recently used idle models
 * onto *dead. Under mu. False when it cannot: others are in use. */
static bool make_room(struct slm_pool *pool, uint64_t need, struct pool_model **dead) {
    while (pool->bytes + need > pool->p.memory_budget) {
        struct pool_model *lru = NULL;
        for (struct pool_model *e = pool->models; e; e = e->next) {
            if (idle(e) && (!lru || e->idle_since < lru->idle_since)) {
                lru = e;
            }
        }
        if (!lru) {
            /* A model larger than the budget (--force) still loads when it is alone. */
            return pool->models == NULL;
        }
        unlink_model(pool, lru);
        lru->next = *dead;
        *dead = lru;
    }
    return true;
}

/* Loads the model of entry `e` (outside the lock) and publishes it. */
static int load_entry(struct slm_pool *pool, struct pool_model *e, struct slm_err *err) {
    struct slm_model *model = NULL;
    struct slm_sched *sched = NULL;
    int rc = slm_model_load(e->path, NULL, &model, err);
    if (rc == SLM_OK) {
        rc = slm_sched_init(model, &pool->p.sched, &sched, err);
    }
    pthread_mutex_lock(&pool->mu);
    if (rc == SLM_OK) {
        e->model = model;
        e->sched = sched;
        e->loading = false;
    } else {
        unlink_model(pool, e);
    }
    pthread_cond_broadcast(&pool->loaded);
    pthread_mutex_unlock(&pool->mu);
    if (rc != SLM_OK) {
        slm_model_free(model);
        free(e);
    }
    return rc;
}

int slm_pool_acquire(struct slm_pool *pool, const char *path, int64_t keep_alive_ms,
                     struct slm_sched **sched, struct slm_model **model, struct slm_err *err) {
    if (strlen(path) >= sizeof(((struct pool_model *)0)->path)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "model path is too long");
    }
    uint64_t need = 0;
    struct slm_mem_estimate est;
    bool estimated = false;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        struct pool_model *e = find_path(pool, path);
        if (e && e->loading) {
            pthread_cond_wait(&pool->loaded, &pool->mu);
            continue;
        }
        if (e) {
            e->in_use++;
            set_keep_alive(pool, e, keep_alive_ms);
            *sched = e->sched;
            *model = e->model;
            pthread_mutex_unlock(&pool->mu);
            return SLM_OK;
        }
        if (estimated) {
            break;
        }
        /* Reading the header is file I/O: not under the lock. */
        pthread_mutex_unlock(&pool->mu);
        int rc = estimate_bytes(pool, path, &est, &need, err);
        if (rc != SLM_OK) {
            return rc;
        }
        /* What cannot fit even alone is refused before anything is unloaded for it. */
        if (need > pool->p.memory_budget && !pool->p.force) {
            return slm_mem_check(path, &est, pool->p.memory_budget + est.baseline, err);
        }
        estimated = true;
        pthread_mutex_lock(&pool->mu);
    }
    struct pool_model *dead = NULL;
    if (!make_room(pool, need, &dead)) {
        uint64_t used = pool->bytes;
        pthread_mutex_unlock(&pool->mu);
        unload_list(dead);
        return slm_err_set(err, SLM_E_LIMIT,
                           "%s needs about %llu MB but %llu MB of the %llu MB budget are in use; "
                           "retry when other models are released",
                           path, (unsigned long long)(need >> 20), (unsigned long long)(used >> 20),
                           (unsigned long long)(pool->p.memory_budget >> 20));
    }
    struct pool_model *e = calloc(1, sizeof(*e));
    if (!e) {
        pthread_mutex_unlock(&pool->mu);
        unload_list(dead);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    snprintf(e->path, sizeof(e->path), "%s", path);
    e->loading = true;
    e->in_use = 1;
    e->keep_alive_ms = pool->p.default_keep_alive_ms;
    set_keep_alive(pool, e, keep_alive_ms);
    e->size_bytes = need;
    e->next = pool->models;
    pool->models = e;
    pool->bytes += need;
    pthread_mutex_unlock(&pool->mu);
    unload_list(dead);
    int rc = load_entry(pool, e, err);
    if (rc != SLM_OK) {
        return rc;
    }
    *sched = e->sched;
    *model = e->model;
    return SLM_OK;
}

void slm_pool_release(struct slm_pool *pool, struct slm_sched *sched) {
    struct pool_model *dead = NULL;
    pthread_mutex_lock(&pool->mu);
    for (struct pool_model *e = pool->models; e; e = e->next) {
        if (e->sched != sched || e->loading || e->in_use == 0) {
            continue;
        }
        e->in_use--;
        e->idle_since = mono_ms();
        if (e->in_use == 0 && e->keep_alive_ms == 0) {
            unlink_model(pool, e);
            dead = e;
        }
        pthread_cond_signal(&pool->reap);
        break;
    }
    pthread_mutex_unlock(&pool->mu);
    unload_list(dead);
}

static struct pool_model *find_model(struct slm_pool *pool, const struct slm_model *model) {
    for (struct pool_model *e = pool->models; e; e = e->next) {
        if (e->model == model && !e->loading) {
            return e;
        }
    }
    return NULL;
}

static struct slm_adapter *find_adapter(const struct pool_model *e, const char *path) {
    for (struct pool_adapter *a = e->adapters; a; a = a->next) {
        if (strcmp(a->path, path) == 0) {
            return a->adapter;
        }
    }
    return NULL;
}

int slm_pool_adapter(struct slm_pool *pool, struct slm_model *model, const char *path,
                     struct slm_adapter **out, struct slm_err *err) {
    pthread_mutex_lock(&pool->mu);
    struct pool_model *e = find_model(pool, model);
    if (!e) {
        pthread_mutex_unlock(&pool->mu);
        return slm_err_set(err, SLM_E_INVALID, "adapter %s: the model is not loaded", path);
    }
    *out = find_adapter(e, path);
    if (*out) {
        pthread_mutex_unlock(&pool->mu);
        return SLM_OK;
    }
    e->in_use++; /* pinned while the adapter loads outside the lock */
    pthread_mutex_unlock(&pool->mu);
    struct slm_adapter *a = NULL;
    int rc = slm_adapter_load(model, path, &a, err);
    struct pool_adapter *pa = rc == SLM_OK ? calloc(1, sizeof(*pa)) : NULL;
    char *p = pa ? slm_str_dup(slm_str_c(path)) : NULL;
    if (rc == SLM_OK && (!pa || !p)) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&pool->mu);
    e->in_use--;
    struct slm_adapter *other = find_adapter(e, path);
    if (rc == SLM_OK && !other) {
        pa->path = p;
        pa->adapter = a;
        pa->next = e->adapters;
        e->adapters = pa;
        *out = a;
        pa = NULL;
        p = NULL;
        a = NULL;
    } else if (other) {
        *out = other; /* another thread loaded it meanwhile */
        rc = SLM_OK;
    }
    pthread_mutex_unlock(&pool->mu);
    slm_adapter_free(a);
    free(pa);
    free(p);
    return rc;
}

size_t slm_pool_list(struct slm_pool *pool, struct slm_pool_entry *out, size_t cap) {
    size_t n = 0;
    int64_t now = mono_ms();
    int64_t now_unix = slm_time_unix_ms();
    pthread_mutex_lock(&pool->mu);
    for (struct pool_model *e = pool->models; e; e = e->next) {
        if (e->loading) {
            continue;
        }
        if (n < cap) {
            struct slm_pool_entry *o = &out[n];
            snprintf(o->path, sizeof(o->path), "%s", e->path);
            o->size_bytes = e->size_bytes;
            o->in_use = e->in_use;
            slm_sched_get_stats(e->sched, &o->stats);
            if (e->keep_alive_ms < 0) {
                o->expires_at_ms = -1;
            } else {
                int64_t from = e->in_use > 0 ? now : e->idle_since;
                o->expires_at_ms = now_unix + (from + e->keep_alive_ms - now);
            }
        }
        n++;
    }
    pthread_mutex_unlock(&pool->mu);
    return n;
}

void slm_pool_gc(struct slm_pool *pool) {
    struct pool_model *dead = NULL;
    pthread_mutex_lock(&pool->mu);
    collect_expired(pool, mono_ms(), &dead);
    pthread_mutex_unlock(&pool->mu);
    unload_list(dead);
}
