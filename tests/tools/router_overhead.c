/*
 * tests/tools/router_overhead.c - what the router adds over calling its local
 * target directly (bench/run_router.sh): the same request N times through
 * slm_router_run_local() (render, tokenize, generate or score) and through
 * slm_router_chat() (the same plus checks, the response with its slm field and
 * the ledger row), interleaved so both see the same machine load. Prints
 * p50/p99 of each and of the router's own work: the call's wall time minus the
 * time spent in the local target and upstreams (struct slm_router_info), which
 * a loaded machine does not blur the way a difference of two runs does.
 *
 *   router_overhead ROUTER.yaml ROUTE [N] [TEXT]
 *
 * A test tool: it prints its own errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm/router.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double q) {
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: router_overhead ROUTER.yaml ROUTE [N] [TEXT]\n");
        return 2;
    }
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 200;
    const char *text = argc > 4 ? argv[4] : "I am still waiting on my card?";
    if (n < 2) {
        n = 2;
    }
    struct slm_router_params p = slm_router_params_default();
    struct slm_router *r = NULL;
    struct slm_err err = {0};
    if (slm_router_load(argv[1], &p, &r, &err) != SLM_OK) {
        fprintf(stderr, "router_overhead: %s\n", err.msg);
        return 1;
    }
    json_t *req = json_pack("{s:s, s:[{s:s, s:s}]}", "model", argv[2], "messages", "role", "user",
                            "content", text);
    double *loc = calloc((size_t)n, sizeof(double)), *rt = calloc((size_t)n, sizeof(double));
    double *diff = calloc((size_t)n, sizeof(double));
    int rc = req && loc && rt && diff ? 0 : 1;
    for (long i = -2; i < n && rc == 0; i++) { /* two warm-up rounds load the model */
        struct slm_router_local_result res;
        double t0 = slm_time_mono();
        if (slm_router_run_local(r, argv[2], req, NULL, &res, &err) != SLM_OK ||
            res.status != SLM_OK) {
            fprintf(stderr, "router_overhead: local: %s\n", res.status ? res.error : err.msg);
            rc = 1;
        }
        slm_router_local_result_free(&res);
        double t1 = slm_time_mono();
        json_t *resp = NULL;
        struct slm_router_info info;
        if (rc == 0 && slm_router_chat(r, req, NULL, &resp, &info, &err) != SLM_OK) {
            fprintf(stderr, "router_overhead: chat: %s\n", err.msg);
            rc = 1;
        }
        json_decref(resp);
        if (i >= 0) {
            loc[i] = (t1 - t0) * 1e3;
            rt[i] = info.total_ms;
            diff[i] = info.total_ms - info.local_ms - info.upstream_ms;
        }
    }
    if (rc == 0) {
        printf("%-34s %10s %10s\n", "milliseconds", "p50", "p99");
        printf("%-34s %10.3f %10.3f\n", "local target directly", pct(loc, (size_t)n, 0.5),
               pct(loc, (size_t)n, 0.99));
        printf("%-34s %10.3f %10.3f\n", "through the router", pct(rt, (size_t)n, 0.5),
               pct(rt, (size_t)n, 0.99));
        printf("%-34s %10.3f %10.3f\n", "router's own work (total - local)",
               pct(diff, (size_t)n, 0.5), pct(diff, (size_t)n, 0.99));
        printf("requests: %ld\n", n);
    }
    free(loc);
    free(rt);
    free(diff);
    json_decref(req);
    slm_router_free(r);
    return rc;
}
