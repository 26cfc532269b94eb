/*
 * sched_burst.c - time to first token for a burst of requests that share a
 * long prefix, through the scheduler (include/slm/sched.h) without HTTP.
 *
 *   sched_burst MODEL [--requests 16] [--prefix 1000] [--suffix 16] [--gen 8]
 *               [--parallel N] [--threads 2] [--batch 512] [--reps 3] [--seed 1]
 *               [--dump FILE]
 *
 * Each repetition makes a fresh random prefix (so nothing is cached from the
 * last one), gives every request its own random suffix, submits them all at
 * once and records when each one's first token arrives. One warm-up burst
 * runs first and is not counted. --dump writes the prompts of every counted
 * repetition as JSON ([[ids...], ...] per repetition) so that a peer server
 * can be sent the same tokens.
 *
 * Prints one line per repetition and a summary line:
 *   ttft_mean_ms=... ttft_max_ms=... total_ms=... prompt_tokens=... cached_tokens=...
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm/base.h"
#include "slm/engine.h"
#include "slm/sched.h"

struct opts {
    const char *model;
    int requests, prefix, suffix, gen, parallel, threads, batch, reps;
    uint32_t seed;
    const char *dump;
};

struct reader {
    struct slm_request *req;
    double t0;
    double ttft;
    double end;
    int rc;
};

static void *read_one(void *arg) {
    struct reader *rd = arg;
    struct slm_buf text = {0};
    struct slm_req_token toks[16];
    bool done = false;
    rd->ttft = -1;
    while (!done) {
        size_t n = 0;
        if (slm_request_read(rd->req, -1, &text, toks, 16, &n, &done) != SLM_OK) {
            break;
        }
        if (n > 0 && rd->ttft < 0) {
            rd->ttft = slm_time_mono() - rd->t0;
        }
        slm_buf_clear(&text);
    }
    rd->end = slm_time_mono() - rd->t0;
    rd->rc = slm_request_result(rd->req, NULL, NULL);
    slm_buf_free(&text);
    return NULL;
}

static uint32_t next_rand(uint32_t *x) {
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

/* A random id that is not an end-of-generation or low control token. */
static int32_t rand_token(const struct slm_model *m, int32_t n_vocab, uint32_t *x) {
    for (;;) {
        int32_t t = 100 + (int32_t)(next_rand(x) % (uint32_t)(n_vocab - 200));
        if (!slm_token_is_eog(m, t)) {
            return t;
        }
    }
}

static int parse_int(const char *s, int *out) {
    int64_t v;
    if (slm_parse_i64(slm_str_c(s), &v) != SLM_OK || v < 0 || v > 1000000) {
        return SLM_E_INVALID;
    }
    *out = (int)v;
    return SLM_OK;
}

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){NULL, 16, 1000, 16, 8, 0, 2, 512, 3, 1, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *target = NULL;
        if (a[0] != '-') {
            o->model = a;
            continue;
        }
        if (i + 1 >= argc) {
            return SLM_E_INVALID;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--dump") == 0) {
            o->dump = v;
            continue;
        }
        if (strcmp(a, "--seed") == 0) {
            int s;
            if (parse_int(v, &s) != SLM_OK) {
                return SLM_E_INVALID;
            }
            o->seed = (uint32_t)s;
            continue;
        }
        target = strcmp(a, "--requests") == 0   ? &o->requests
                 : strcmp(a, "--prefix") == 0   ? &o->prefix
                 : strcmp(a, "--suffix") == 0   ? &o->suffix
                 : strcmp(a, "--gen") == 0      ? &o->gen
                 : strcmp(a, "--parallel") == 0 ? &o->parallel
                 : strcmp(a, "--threads") == 0  ? &o->threads
                 : strcmp(a, "--batch") == 0    ? &o->batch
                 : strcmp(a, "--reps") == 0     ? &o->reps
                                                : NULL;
        if (!target || parse_int(v, target) != SLM_OK) {
            return SLM_E_INVALID;
        }
    }
    if (o->parallel == 0) {
        o->parallel = o->requests;
    }
    return o->model && o->requests > 0 && o->requests <= 256 && o->prefix + o->suffix > 0
               ? SLM_OK
               : SLM_E_INVALID;
}

/* One burst; returns the mean TTFT in seconds (and fills *max, *total). */
static int burst(struct slm_sched *s, const struct slm_model *m, const struct opts *o,
                 uint32_t seed, FILE *dump, double *mean, double *max, double *total) {
    int32_t n_vocab = slm_model_n_vocab(m);
    size_t len = (size_t)(o->prefix + o->suffix);
    int32_t *prompts = malloc((size_t)o->requests * len * sizeof(int32_t));
    struct reader *rd = calloc((size_t)o->requests, sizeof(*rd));
    pthread_t *th = calloc((size_t)o->requests, sizeof(*th));
    if (!prompts || !rd || !th) {
        return SLM_E_NOMEM;
    }
    uint32_t x = seed * 2654435761u + 7;
    for (int i = 0; i < o->prefix; i++) {
        prompts[i] = rand_token(m, n_vocab, &x);
    }
    for (int r = 0; r < o->requests; r++) {
        int32_t *p = prompts + (size_t)r * len;
        memcpy(p, prompts, (size_t)o->prefix * sizeof(int32_t));
        for (int i = 0; i < o->suffix; i++) {
            p[o->prefix + i] = rand_token(m, n_vocab, &x);
        }
    }
    struct slm_req_params rp = {.gen = slm_gen_params_default()};
    rp.gen.sample.temperature = 0;
    rp.gen.max_tokens = o->gen;
    rp.gen.ignore_eos = true;
    double t0 = slm_time_mono();
    int rc = SLM_OK;
    for (int r = 0; r < o->requests && rc == SLM_OK; r++) {
        struct slm_err err;
        rd[r].t0 = t0;
        rc = slm_sched_submit(s, prompts + (size_t)r * len, len, &rp, &rd[r].req, &err);
        if (rc != SLM_OK) {
            fprintf(stderr, "sched_burst: submit: %s\n", err.msg);
        } else {
            pthread_create(&th[r], NULL, read_one, &rd[r]);
        }
    }
    *mean = *max = *total = 0;
    for (int r = 0; r < o->requests && rc == SLM_OK; r++) {
        pthread_join(th[r], NULL);
        rc = rd[r].rc;
        *mean += rd[r].ttft / o->requests;
        *max = SLM_MAX(*max, rd[r].ttft);
        *total = SLM_MAX(*total, rd[r].end);
        slm_request_free(rd[r].req);
    }
    for (int r = 0; dump && r < o->requests; r++) {
        fprintf(dump, "%s[", r == 0 ? "[" : ",");
        for (size_t i = 0; i < len; i++) {
            fprintf(dump, "%s%d", i ? "," : "", prompts[(size_t)r * len + i]);
        }
        fprintf(dump, "]%s", r == o->requests - 1 ? "]" : "");
    }
    free(prompts);
    free(rd);
    free(th);
    return rc;
}

int main(int argc, char **argv) {
    struct opts o;
    if (parse_args(argc, argv, &o) != SLM_OK) {
        fprintf(stderr, "usage: sched_burst MODEL [--requests N] [--prefix N] [--suffix N] "
                        "[--gen N] [--parallel N] [--threads N] [--batch N] [--reps N] "
                        "[--seed N] [--dump FILE]\n");
        return 2;
    }
    struct slm_err err;
    struct slm_model *m;
    if (slm_model_load(o.model, NULL, &m, &err) != SLM_OK) {
        fprintf(stderr, "sched_burst: %s\n", err.msg);
        return 1;
    }
    struct slm_sched_params sp = slm_sched_params_default();
    sp.n_parallel = o.parallel;
    sp.n_ctx = (uint32_t)(o.parallel * (o.prefix + o.suffix + o.gen + 16));
    sp.n_threads = o.threads;
    sp.n_batch = (uint32_t)o.batch;
    struct slm_sched *s;
    if (slm_sched_init(m, &sp, &s, &err) != SLM_OK) {
        fprintf(stderr, "sched_burst: %s\n", err.msg);
        slm_model_free(m);
        return 1;
    }
    FILE *dump = o.dump ? fopen(o.dump, "w") : NULL;
    if (dump) {
        fputc('[', dump);
    }
    double mean, max, total, sum_mean = 0, sum_max = 0, sum_total = 0;
    int rc = burst(s, m, &o, o.seed + 1000, NULL, &mean, &max, &total); /* warm-up */
    for (int k = 0; rc == SLM_OK && k < o.reps; k++) {
        if (dump && k > 0) {
            fputc(',', dump);
        }
        rc = burst(s, m, &o, o.seed + (uint32_t)k, dump, &mean, &max, &total);
        printf("rep %d: ttft_mean_ms=%.1f ttft_max_ms=%.1f total_ms=%.1f\n", k, mean * 1e3,
               max * 1e3, total * 1e3);
        sum_mean += mean;
        sum_max += max;
        sum_total += total;
    }
    if (dump) {
        fputs("]\n", dump);
        fclose(dump);
    }
    struct slm_sched_stats st;
    slm_sched_get_stats(s, &st);
    if (rc == SLM_OK) {
        printf("ttft_mean_ms=%.1f ttft_max_ms=%.1f total_ms=%.1f prompt_tokens=%llu "
               "cached_tokens=%llu\n",
               sum_mean / o.reps * 1e3, sum_max / o.reps * 1e3, sum_total / o.reps * 1e3,
               (unsigned long long)st.prompt_tokens, (unsigned long long)st.cached_tokens);
    } else {
        fprintf(stderr, "sched_burst: a request failed: %s\n", slm_strerror(rc));
    }
    slm_sched_free(s);
    slm_model_free(m);
    return rc == SLM_OK ? 0 : 1;
}
