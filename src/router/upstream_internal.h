/*
 * router/upstream_internal.h - what upstream.c (pool, breakers, retries) and upstream_http.c
 * (one HTTP exchange over libcurl) share. Not a public API.
 */
#ifndef SLM_ROUTER_UPSTREAM_INTERNAL_H
#define SLM_ROUTER_UPSTREAM_INTERNAL_H

#include "slm/upstream.h"

/* How one HTTP exchange ended, before any retry decision. */
enum slm__up_outcome {
    SLM__UP_HTTP,      /* a complete response with `status` */
    SLM__UP_TIMEOUT,   /* the attempt's timeout passed */
    SLM__UP_REFUSED,   /* could not connect (refused, unreachable, DNS) */
    SLM__UP_RESET,     /* the connection broke or closed without a whole response */
    SLM__UP_TOO_LARGE, /* the body passed the cap */
    SLM__UP_ABORTED,   /* `cancel` was set */
    SLM__UP_ERROR,     /* anything else libcurl reports (message in `detail`) */
};

struct slm__up_exchange {
    enum slm__up_outcome outcome;
    int status;           /* HTTP status when outcome is SLM__UP_HTTP, else 0 */
    struct slm_buf body;  /* the response body (capped); caller frees */
    double retry_after_s; /* parsed Retry-After, -1 when absent or not understood */
    char detail[128];     /* libcurl's message for SLM__UP_ERROR */
};

/* A libcurl multi + easy pair kept between requests to one member, so its connection cache (kept
 * alive HTTP connections, TLS sessions, DNS) is reused instead of a new handshake per request. */
struct slm__up_conn;
/* NULL on allocation failure (callers then make one-off exchanges). */
struct slm__up_conn *slm__up_conn_new(void);
void slm__up_conn_free(struct slm__up_conn *c);

/* One request over `conn` (NULL = a one-off connection): a GET, or a POST of `body_len` JSON bytes
 * when `body` is not NULL, bearer `api_key`
 * (NULL = none), `timeout_s` for the whole exchange, `cancel` polled every few ms. Never fails:
 * the outcome says what happened. x->body must be freed by the caller. */
void slm__up_http(struct slm__up_conn *conn, const char *url, const char *api_key, const char *body,
                  size_t body_len, double timeout_s, const volatile int *cancel,
                  struct slm__up_exchange *x);
/* Process-wide libcurl initialisation, done once. */
void slm__up_curl_init(void);

#endif /* SLM_ROUTER_UPSTREAM_INTERNAL_H */
