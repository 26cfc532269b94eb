/*
 * server/metrics.c - counters and histograms behind GET /metrics, in the
 * Prometheus text format (version 0.0.4).
 *
 * Everything is updated under one mutex: a request touches it a handful of
 * times, never per token. Label sets are bounded: routes are the server's
 * own, models are names that resolved in the store (the first 64; later
 * ones count as "other").
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 12
static const double g_bounds[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10,  30};

struct hist {
    uint64_t counts[N_BUCKETS + 1];
    double sum;
    uint64_t n;
};

struct route_stat {
    const char *route; /* static */
    struct hist duration;
    int statuses[16];
    uint64_t status_counts[16];
    size_t n_statuses;
};

struct model_stat {
    char name[128];
    uint64_t requests, prompt, cached, gen;
    double t_prompt, t_gen;
};

struct srv_metrics {
    pthread_mutex_t lock;
    struct route_stat routes[32];
    size_t n_routes;
    struct model_stat models[65];
    size_t n_models;
    struct hist ttft;
    uint64_t rejected[4];
    int64_t inflight, waiting;
    double t_start;
};

static const char *const g_reasons[] = {"queue_full", "body_too_large", "unauthorized", "other"};

int srv_metrics_init(struct srv_metrics **out) {
    struct srv_metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        return SLM_E_NOMEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->t_start = slm_time_mono();
    *out = m;
    return SLM_OK;
}

void srv_metrics_free(struct srv_metrics *m) {
    if (m) {
        pthread_mutex_destroy(&m->lock);
        free(m);
    }
}

static void observe(struct hist *h, double v) {
    size_t i = 0;
    while (i < N_BUCKETS && v > g_bounds[i]) {
        i++;
    }
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

void srv_metrics_request(struct srv_metrics *m, const char *route, int status, double seconds) {
    pthread_mutex_lock(&m->lock);
    size_t i = 0;
    while (i < m->n_routes && strcmp(m->routes[i].route, route) != 0) {
        i++;
    }
    if (i == m->n_routes && m->n_routes < SLM_ARRAY_LEN(m->routes)) {
        m->routes[m->n_routes++].route = route;
    }
    if (i < m->n_routes) {
        struct route_stat *r = &m->routes[i];
        observe(&r->duration, seconds);
        size_t k = 0;
        while (k < r->n_statuses && r->statuses[k] != status) {
            k++;
        }
        if (k == r->n_statuses && k < SLM_ARRAY_LEN(r->statuses)) {
            r->statuses[r->n_statuses++] = status;
        }
        if (k < r->n_statuses) {
            r->status_counts[k]++;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_tokens(struct srv_metrics *m, const char *model, const struct slm_gen_stats *st) {
    pthread_mutex_lock(&m->lock);
    size_t i = 0;
    while (i < m->n_models && strcmp(m->models[i].name, model ? model : "") != 0) {
        i++;
    }
    if (i == m->n_models) {
        if (m->n_models + 1 < SLM_ARRAY_LEN(m->models)) {
            snprintf(m->models[m->n_models++].name, sizeof(m->models[0].name), "%s",
                     model ? model : "");
        } else {
            i = SLM_ARRAY_LEN(m->models) - 1;
            snprintf(m->models[i].name, sizeof(m->models[i].name), "other");
        }
    }
    struct model_stat *s = &m->models[i];
    s->requests++;
    s->prompt += (uint64_t)SLM_MAX(st->n_prompt, 0);
    s->cached += (uint64_t)SLM_MAX(st->n_cached, 0);
    s->gen += (uint64_t)SLM_MAX(st->n_gen, 0);
    s->t_prompt += st->t_prompt;
    s->t_gen += st->t_gen;
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_ttft(struct srv_metrics *m, double seconds) {
    pthread_mutex_lock(&m->lock);
    observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_reject(struct srv_metrics *m, const char *reason) {
    size_t i = 0;
    while (i + 1 < SLM_ARRAY_LEN(g_reasons) && strcmp(g_reasons[i], reason) != 0) {
        i++;
    }
    pthread_mutex_lock(&m->lock);
    m->rejected[i]++;
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_inflight(struct srv_metrics *m, int delta) {
    pthread_mutex_lock(&m->lock);
    m->inflight += delta;
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_waiting(struct srv_metrics *m, int delta) {
    pthread_mutex_lock(&m->lock);
    m->waiting += delta;
    pthread_mutex_unlock(&m->lock);
}

/* ---------------------------------------------------------------- rendering */

/* A label value with \, " and newline escaped. */
static int label(struct slm_buf *b, const char *v) {
    int rc = SLM_OK;
    for (; rc == SLM_OK && *v; v++) {
        rc = *v == '\\'   ? slm_buf_puts(b, "\\\\")
             : *v == '"'  ? slm_buf_puts(b, "\\\"")
             : *v == '\n' ? slm_buf_puts(b, "\\n")
                          : slm_buf_putc(b, *v);
    }
    return rc;
}

static int head(struct slm_buf *b, const char *name, const char *type, const char *help) {
    return slm_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{key="value",...} with an optional extra label. */
static int series(struct slm_buf *b, const char *name, const char *suffix, const char *key,
                  const char *value, const char *key2, const char *value2) {
    int rc = slm_buf_printf(b, "%s%s", name, suffix);
    if (rc == SLM_OK && key) {
        rc = slm_buf_printf(b, "{%s=\"", key);
        rc = rc == SLM_OK ? label(b, value) : rc;
        if (rc == SLM_OK && key2) {
            rc = slm_buf_printf(b, "\",%s=\"", key2);
            rc = rc == SLM_OK ? label(b, value2) : rc;
        }
        rc = rc == SLM_OK ? slm_buf_puts(b, "\"}") : rc;
    }
    return rc;
}

static int hist(struct slm_buf *b, const char *name, const char *key, const char *value,
                const struct hist *h) {
    uint64_t cum = 0;
    int rc = SLM_OK;
    for (size_t i = 0; rc == SLM_OK && i <= N_BUCKETS; i++) {
        cum += h->counts[i];
        char le[32];
        if (i < N_BUCKETS) {
            snprintf(le, sizeof(le), "%g", g_bounds[i]);
        } else {
            snprintf(le, sizeof(le), "+Inf");
        }
        rc = series(b, name, "_bucket", key ? key : "le", key ? value : le, key ? "le" : NULL, le);
        rc = rc == SLM_OK ? slm_buf_printf(b, " %llu\n", (unsigned long long)cum) : rc;
    }
    rc = rc == SLM_OK ? series(b, name, "_sum", key, value, NULL, NULL) : rc;
    rc = rc == SLM_OK ? slm_buf_printf(b, " %.6f\n", h->sum) : rc;
    rc = rc == SLM_OK ? series(b, name, "_count", key, value, NULL, NULL) : rc;
    return rc == SLM_OK ? slm_buf_printf(b, " %llu\n", (unsigned long long)h->n) : rc;
}

static int render_routes(struct srv_metrics *m, struct slm_buf *b) {
    int rc = head(b, "slm_http_requests_total", "counter",
                  "HTTP requests answered, by route and "
                  "status (499: the client left).");
    for (size_t i = 0; rc == SLM_OK && i < m->n_routes; i++) {
        const struct route_stat *r = &m->routes[i];
        for (size_t k = 0; rc == SLM_OK && k < r->n_statuses; k++) {
            char st[16];
            snprintf(st, sizeof(st), "%d", r->statuses[k]);
            rc = series(b, "slm_http_requests_total", "", "route", r->route, "status", st);
            rc = rc == SLM_OK
                     ? slm_buf_printf(b, " %llu\n", (unsigned long long)r->status_counts[k])
                     : rc;
        }
    }
    rc = rc == SLM_OK ? head(b, "slm_http_request_duration_seconds", "histogram",
                             "Time from the request's arrival to its last byte.")
                      : rc;
    for (size_t i = 0; rc == SLM_OK && i < m->n_routes; i++) {
        rc = hist(b, "slm_http_request_duration_seconds", "route", m->routes[i].route,
                  &m->routes[i].duration);
    }
    return rc;
}

static int render_models(struct srv_metrics *m, struct slm_buf *b) {
    static const struct {
        const char *name, *help;
        int field;
    } counters[] = {
        {"slm_generation_requests_total", "Sequences finished, by model.", 0},
        {"slm_prompt_tokens_total", "Prompt tokens, by model (cached ones included).", 1},
        {"slm_prompt_tokens_cached_total", "Prompt tokens reused from the prefix cache.", 2},
        {"slm_generated_tokens_total", "Tokens generated, by model.", 3},
    };
    int rc = SLM_OK;
    for (size_t c = 0; rc == SLM_OK && c < SLM_ARRAY_LEN(counters); c++) {
        rc = head(b, counters[c].name, "counter", counters[c].help);
        for (size_t i = 0; rc == SLM_OK && i < m->n_models; i++) {
            const struct model_stat *s = &m->models[i];
            uint64_t v = counters[c].field == 0   ? s->requests
                         : counters[c].field == 1 ? s->prompt
                         : counters[c].field == 2 ? s->cached
                                                  : s->gen;
            rc = series(b, counters[c].name, "", "model", s->name, NULL, NULL);
            rc = rc == SLM_OK ? slm_buf_printf(b, " %llu\n", (unsigned long long)v) : rc;
        }
    }
    rc = rc == SLM_OK ? head(b, "slm_generation_seconds_total", "counter",
                             "Seconds spent evaluating prompts (phase=prompt) and generating "
                             "(phase=generate), summed over sequences.")
                      : rc;
    for (size_t i = 0; rc == SLM_OK && i < m->n_models; i++) {
        rc = series(b, "slm_generation_seconds_total", "", "model", m->models[i].name, "phase",
                    "prompt");
        rc = rc == SLM_OK ? slm_buf_printf(b, " %.6f\n", m->models[i].t_prompt) : rc;
        rc = rc == SLM_OK ? series(b, "slm_generation_seconds_total", "", "model",
                                   m->models[i].name, "phase", "generate")
                          : rc;
        rc = rc == SLM_OK ? slm_buf_printf(b, " %.6f\n", m->models[i].t_gen) : rc;
    }
    return rc;
}

/* Gauges read from each loaded model's scheduler: what it is doing now and
 * its throughput so far (tokens over the seconds spent on them). */
static int render_loaded(const struct slm_pool_entry *ents, const char *const *names, size_t n,
                         struct slm_buf *b) {
    static const struct {
        const char *name, *help;
        int field;
    } gauges[] = {
        {"slm_queue_depth", "Requests waiting for a sequence, by model.", 0},
        {"slm_sequences_active", "Sequences generating now, by model.", 1},
        {"slm_batch_tokens", "Tokens in the model's last decode step (the batch size).", 2},
        {"slm_prompt_tokens_per_second",
         "Prompt tokens evaluated per second of prompt work since the model loaded.", 3},
        {"slm_generation_tokens_per_second",
         "Tokens generated per second of generation work since the model loaded.", 4},
        {"slm_model_memory_bytes", "Weights and KV cache of a loaded model.", 5},
    };
    int rc = SLM_OK;
    for (size_t g = 0; rc == SLM_OK && g < SLM_ARRAY_LEN(gauges); g++) {
        rc = head(b, gauges[g].name, "gauge", gauges[g].help);
        for (size_t i = 0; rc == SLM_OK && i < n; i++) {
            const struct slm_sched_stats *st = &ents[i].stats;
            double v = 0;
            switch (gauges[g].field) {
            case 0: v = st->queue_depth; break;
            case 1: v = st->active; break;
            case 2: v = st->last_batch; break;
            case 3:
                v = st->prompt_seconds > 0 ? (double)st->prompt_tokens / st->prompt_seconds : 0;
                break;
            case 4: v = st->gen_seconds > 0 ? (double)st->gen_tokens / st->gen_seconds : 0; break;
            default: v = (double)ents[i].size_bytes; break;
            }
            rc = series(b, gauges[g].name, "", "model", names[i], NULL, NULL);
            rc = rc == SLM_OK ? slm_buf_printf(b, " %.6g\n", v) : rc;
        }
    }
    return rc;
}

int srv_metrics_render(struct srv_metrics *m, const struct slm_pool_entry *loaded,
                       const char *const *names, size_t n_loaded, struct slm_buf *b) {
    uint32_t models_loaded = (uint32_t)n_loaded;
    pthread_mutex_lock(&m->lock);
    int rc = render_routes(m, b);
    rc = rc == SLM_OK ? render_loaded(loaded, names, n_loaded, b) : rc;
    rc = rc == SLM_OK ? render_models(m, b) : rc;
    rc = rc == SLM_OK ? head(b, "slm_time_to_first_token_seconds", "histogram",
                             "Time from a request's arrival to its first generated token.")
                      : rc;
    rc = rc == SLM_OK ? hist(b, "slm_time_to_first_token_seconds", NULL, NULL, &m->ttft) : rc;
    rc = rc == SLM_OK ? head(b, "slm_rejected_requests_total", "counter",
                             "Requests refused before any work: queue_full (429), "
                             "body_too_large (413), unauthorized (401).")
                      : rc;
    for (size_t i = 0; rc == SLM_OK && i < SLM_ARRAY_LEN(g_reasons); i++) {
        rc = series(b, "slm_rejected_requests_total", "", "reason", g_reasons[i], NULL, NULL);
        rc = rc == SLM_OK ? slm_buf_printf(b, " %llu\n", (unsigned long long)m->rejected[i]) : rc;
    }
    rc = rc == SLM_OK ? head(b, "slm_http_requests_in_flight", "gauge",
                             "Requests being read, generated or written now.")
                      : rc;
    rc = rc == SLM_OK
             ? slm_buf_printf(b, "slm_http_requests_in_flight %lld\n", (long long)m->inflight)
             : rc;
    rc = rc == SLM_OK ? head(b, "slm_requests_waiting", "gauge",
                             "Sequences submitted to a scheduler that have no output yet.")
                      : rc;
    rc =
        rc == SLM_OK ? slm_buf_printf(b, "slm_requests_waiting %lld\n", (long long)m->waiting) : rc;
    rc = rc == SLM_OK ? head(b, "slm_models_loaded", "gauge", "Models in memory.") : rc;
    rc = rc == SLM_OK ? slm_buf_printf(b, "slm_models_loaded %u\n", models_loaded) : rc;
    rc = rc == SLM_OK ? head(b, "slm_uptime_seconds", "gauge", "Seconds since the server started.")
                      : rc;
    rc = rc == SLM_OK ? slm_buf_printf(b, "slm_uptime_seconds %.3f\n", slm_time_mono() - m->t_start)
                      : rc;
    pthread_mutex_unlock(&m->lock);
    return rc;
}
