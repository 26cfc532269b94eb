/*
 * server/metrics.h - counters and histograms for /metrics. Server-internal.
 */
#ifndef SLM_SERVER_METRICS_H
#define SLM_SERVER_METRICS_H

#include "slm/base.h"
#include "slm/engine.h"
#include "slm/sched.h"

/* ---------------------------------------------------------------- metrics */

struct srv_metrics;
int srv_metrics_init(struct srv_metrics **out);
void srv_metrics_free(struct srv_metrics *m);
void srv_metrics_request(struct srv_metrics *m, const char *route, int status, double seconds);
void srv_metrics_tokens(struct srv_metrics *m, const char *model, const struct slm_gen_stats *st);
void srv_metrics_ttft(struct srv_metrics *m, double seconds);
void srv_metrics_reject(struct srv_metrics *m, const char *reason);
void srv_metrics_inflight(struct srv_metrics *m, int delta);
void srv_metrics_waiting(struct srv_metrics *m, int delta);
/* The loaded models' scheduler gauges come from `loaded` (pool entries) with
 * their names (`names[i]`, the store name asked for, or the file's path). */
int srv_metrics_render(struct srv_metrics *m, const struct slm_pool_entry *loaded,
                       const char *const *names, size_t n_loaded, struct slm_buf *out);

#endif /* SLM_SERVER_METRICS_H */
