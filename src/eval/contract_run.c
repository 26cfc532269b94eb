/*
 * eval/contract_run.c - the contractor's row runner (slm/contract.h): worker threads take rows
 * in input order from a shared counter, and whichever worker completes the next row due writes
 * it and every completed row after it, so the output is always a prefix of the input, in order,
 * whatever the concurrency. A failed row (the cost cap, an error) or a stop request ends the
 * dispatch; rows in flight finish, so what they paid for lands in the cache.
 */
#include "slm/contract.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 64

enum slot_state { SLOT_PENDING, SLOT_DONE, SLOT_FAILED };

struct runner {
    struct slm_contract *c;
    const struct slm_contract_run_params *p;
    pthread_mutex_t mu;
    size_t next;     /* next row to hand out */
    size_t emitted;  /* rows emitted (the prefix) */
    bool stopping;   /* no new rows */
    int status;      /* the first failure */
    size_t fail_row; /* its row */
    struct slm_err err;
    enum slot_state *state;
    json_t **out;
};

/* Under the lock: emits the completed rows due, in order. */
static void emit_ready(struct runner *r) {
    while (r->emitted < r->p->n_rows && r->state[r->emitted] == SLOT_DONE) {
        size_t i = r->emitted;
        struct slm_err err = {0};
        int rc = r->p->emit(r->p->user, i, r->out[i], &err);
        json_decref(r->out[i]);
        r->out[i] = NULL;
        if (rc != SLM_OK) {
            if (r->status == SLM_OK) {
                r->status = rc;
                r->fail_row = i;
                r->err = err;
            }
            r->stopping = true;
            return;
        }
        r->emitted++;
        if (r->p->progress) {
            struct slm_contract_stats s;
            slm_contract_get_stats(r->c, &s);
            r->p->progress(r->p->user, r->emitted, r->p->n_rows, &s);
        }
    }
}

static void *worker(void *arg) {
    struct runner *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        if (r->p->stop && *r->p->stop && !r->stopping) {
            r->stopping = true;
            if (r->status == SLM_OK) {
                r->status = SLM_E_ABORTED;
                r->fail_row = r->next;
                slm_err_set(&r->err, SLM_E_ABORTED, "interrupted");
            }
        }
        if (r->stopping || r->next >= r->p->n_rows) {
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        size_t i = r->next++;
        pthread_mutex_unlock(&r->mu);

        json_t *out = NULL;
        struct slm_err err = {0};
        int rc = r->p->row(r->p->user, r->c, i, &out, &err);
        if (rc == SLM_OK && !out && !(out = json_array())) {
            rc = slm_err_set(&err, SLM_E_NOMEM, "out of memory");
        }

        pthread_mutex_lock(&r->mu);
        if (rc == SLM_OK) {
            r->out[i] = out;
            r->state[i] = SLOT_DONE;
            emit_ready(r);
        } else {
            json_decref(out);
            r->state[i] = SLOT_FAILED;
            r->stopping = true;
            /* The earliest failed row explains the run's end best. */
            if (r->status == SLM_OK || i < r->fail_row) {
                r->status = rc;
                r->fail_row = i;
                r->err = err;
            }
        }
        pthread_mutex_unlock(&r->mu);
    }
}

static int start_workers(struct runner *r, int n, pthread_t *threads, int *started) {
    for (*started = 0; *started < n; (*started)++) {
        if (pthread_create(&threads[*started], NULL, worker, r) != 0) {
            return *started > 0 ? SLM_OK : SLM_E_NOMEM; /* fewer workers is still a run */
        }
    }
    return SLM_OK;
}

int slm_contract_run(struct slm_contract *c, const struct slm_contract_run_params *p,
                     struct slm_contract_run_result *out, struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    if (!p || !p->row || !p->emit) {
        return slm_err_set(err, SLM_E_INVALID, "a run needs a row and an emit function");
    }
    int n = p->concurrency > 0 ? p->concurrency
                               : slm_contract_upstream_concurrency(slm_contract_get_upstream(c));
    n = SLM_MAX(1, SLM_MIN(n, MAX_WORKERS));
    if ((size_t)n > p->n_rows) {
        n = (int)SLM_MAX((size_t)1, p->n_rows);
    }
    struct runner r = {.c = c, .p = p};
    r.state = calloc(p->n_rows + 1, sizeof(*r.state));
    r.out = calloc(p->n_rows + 1, sizeof(*r.out));
    pthread_t threads[MAX_WORKERS];
    int started = 0;
    int rc = r.state && r.out ? SLM_OK : SLM_E_NOMEM;
    pthread_mutex_init(&r.mu, NULL);
    if (rc == SLM_OK) {
        rc = start_workers(&r, n, threads, &started);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_mutex_destroy(&r.mu);
    for (size_t i = 0; r.out && i < p->n_rows; i++) {
        json_decref(r.out[i]);
    }
    free(r.state);
    free(r.out);
    out->done = r.emitted;
    if (rc != SLM_OK) {
        return slm_err_set(err, rc, "cannot start the workers");
    }
    if (r.status == SLM_OK) {
        return SLM_OK;
    }
    out->budget_hit = r.status == SLM_E_LIMIT;
    out->interrupted = r.status == SLM_E_ABORTED;
    if (err) {
        *err = r.err;
        err->code = r.status;
        if (!out->interrupted) {
            slm_err_prefix(err, "row %zu", r.fail_row + 1);
        }
    }
    return r.status;
}
