/*
 * run.c - one evaluation: read the suite's rows (the dataset reader `slm tune`
 * uses, the same template, the same dev split), let every candidate answer
 * every row, then the judge (judge.c), then score (score.c). Candidates run
 * one after another: each local model is loaded once and answers rows in
 * order, so its latencies are its own; a cloud candidate and the judge send
 * many rows at once through the contractor.
 */
#include "eval/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/tune.h"

struct slm_eval_run_params slm_eval_run_params_default(void) {
    return (struct slm_eval_run_params){0};
}

void slm_eval_result_free(struct slm_eval_result *r) {
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        free(r->rows[i].prompt);
        free(r->rows[i].input);
        free(r->rows[i].expected);
        json_decref(r->rows[i].row);
    }
    for (size_t c = 0; c < r->n_cands; c++) {
        struct slm_eval_cand_result *cr = &r->cands[c];
        for (size_t i = 0; cr->answers && i < r->n_rows; i++) {
            free(cr->answers[i].text);
            free(cr->answers[i].error);
            free(cr->answers[i].judge_reason);
        }
        for (size_t k = 0; k < cr->n_labels; k++) {
            free(cr->labels[k].label);
        }
        free(cr->labels);
        free(cr->answers);
        free(cr->right);
    }
    for (size_t k = 0; k < r->n_labels; k++) {
        free(r->labels[k]);
    }
    free(r->labels);
    for (size_t k = 0; k < r->n_judged; k++) {
        free(r->judged[k].verdict);
    }
    free(r->judged);
    free(r->rows);
    free(r->cands);
    free(r->pairs);
    free(r);
}

/* The rows: read and filtered to the dev split (the limit applies to the rows that run, not to
 * the label set: rows_to_use()). */
static int read_rows(const struct slm_eval_suite *s, struct slm_data_records *recs,
                     struct slm_err *err) {
    struct slm_data_read_params rp = slm_data_read_params_default();
    rp.prompt_template = s->data.template;
    rp.completion_field = s->data.expected;
    int rc = slm_data_read(s->data.file, &rp, recs, err);
    if (rc == SLM_OK && s->data.hash_field) {
        struct slm_data_records held = {0};
        rc = slm_data_split_hash(recs, s->data.hash_field, s->data.hash_mod, &held, err);
        slm_data_records_free(recs);
        *recs = held;
    }
    if (rc == SLM_OK && recs->format == SLM_DATA_MESSAGES) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "%s: messages records are not supported by slm eval yet; use rows with "
                         "a template, or prompt/completion",
                         s->data.file);
    }
    if (rc == SLM_OK && recs->n == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: no rows to evaluate%s", s->data.file,
                         s->data.hash_field ? " after the valid-hash filter" : "");
    }
    return rc;
}

/* How many rows run: the smaller of the run's and the suite's limit (0 = all). */
static size_t rows_to_use(const struct slm_eval_suite *s, size_t limit, size_t n) {
    limit = limit && s->data.limit ? (limit < s->data.limit ? limit : s->data.limit)
                                   : (limit ? limit : s->data.limit);
    return limit && limit < n ? limit : n;
}

/* The first `n` records, as every candidate sees them. */
static int copy_rows(const struct slm_eval_suite *s, const struct slm_data_records *recs, size_t n,
                     struct slm_eval_result *r) {
    r->rows = calloc(n ? n : 1, sizeof(*r->rows));
    if (!r->rows) {
        return SLM_E_NOMEM;
    }
    r->n_rows = n;
    for (size_t i = 0; i < n; i++) {
        const struct slm_data_record *d = &recs->items[i];
        struct slm_eval_row *row = &r->rows[i];
        const char *in =
            s->data.input ? json_string_value(json_object_get(d->row, s->data.input)) : NULL;
        row->line = d->line;
        row->prompt = strdup(d->prompt);
        row->expected = strdup(d->completion);
        row->input = strdup(in ? in : d->prompt);
        row->row = json_incref(d->row);
        if (!row->prompt || !row->expected || !row->input) {
            return SLM_E_NOMEM;
        }
    }
    return SLM_OK;
}

/* The label set: the distinct expected answers of every row of the data (after the valid-hash
 * filter, before any limit), in order of first appearance: the set `slm tune eval` scores on
 * the same file, so a limited run answers the same question as a whole one. */
static int collect_labels(struct slm_eval_result *r, const struct slm_data_records *recs) {
    r->labels = calloc(recs->n ? recs->n : 1, sizeof(char *));
    if (!r->labels) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < recs->n; i++) {
        const char *want = recs->items[i].completion;
        bool seen = false;
        for (size_t k = 0; k < r->n_labels && !seen; k++) {
            seen = strcmp(r->labels[k], want) == 0;
        }
        if (!seen && !(r->labels[r->n_labels++] = strdup(want))) {
            return SLM_E_NOMEM;
        }
    }
    return SLM_OK;
}

struct progress_ctx {
    const struct slm_eval_run_params *p;
    const char *name;
    size_t base, total;
};

static void batch_progress(size_t done, void *user) {
    struct progress_ctx *pc = user;
    if (pc->p->progress) {
        pc->p->progress(pc->base + done, pc->total, pc->name, pc->p->user);
    }
}

static int open_backend(const struct slm_eval_suite *s, const struct slm_eval_candidate *c,
                        const struct slm_data_records *recs, const struct slm_eval_run_params *p,
                        struct slm_eval_backend *be, struct slm_err *err) {
    bool label = slm_eval_suite_metric(s, SLM_EVAL_LABEL) != NULL;
    switch (c->kind) {
    case SLM_EVAL_CAND_MODEL:
    case SLM_EVAL_CAND_ADAPTER:
    case SLM_EVAL_CAND_GGUF:
        return label ? slm__eval_open_label(c, recs, p->n_threads, p->cancel, be, err)
                     : slm__eval_open_gen(c, p->n_threads, be, err);
    case SLM_EVAL_CAND_ROUTE: return slm__eval_open_route(c, p->n_threads, be, err);
    case SLM_EVAL_CAND_UPSTREAM: {
        char what[160];
        snprintf(what, sizeof(what), "candidate '%s'", c->name);
        struct slm_eval_cloud ref = {what,           c->line,     c->router,
                                     c->upstream,    c->base_url, c->model,
                                     c->api_key_env, c->price_in, c->price_out};
        struct slm_contract *contract = NULL;
        int rc = p->open_cloud(p->user, s, &ref, &contract, err);
        return rc == SLM_OK
                   ? slm__eval_open_cloud(s, c, contract, p->cloud_concurrency, p->cancel, be, err)
                   : rc;
    }
    }
    return slm_err_set(err, SLM_E_INVALID, "unknown candidate kind");
}

/* Refused before any row runs, not after the local candidates took their time. */
static int check_upstreams(const struct slm_eval_suite *s, const struct slm_eval_run_params *p,
                           struct slm_err *err) {
    for (size_t i = 0; !p->open_cloud && i < s->n_candidates; i++) {
        const struct slm_eval_candidate *c = &s->candidates[i];
        if (c->kind == SLM_EVAL_CAND_UPSTREAM) {
            return slm_err_set(err, SLM_E_UNSUPPORTED,
                               "%s:%d: candidate '%s': this caller cannot open cloud upstreams",
                               s->path, c->line, c->name);
        }
    }
    const struct slm_eval_metric *j = slm_eval_suite_metric(s, SLM_EVAL_JUDGE);
    if (j && !p->open_cloud) {
        return slm_err_set(err, SLM_E_UNSUPPORTED,
                           "%s:%d: judge: this caller cannot open cloud upstreams", s->path,
                           j->line);
    }
    return SLM_OK;
}

/* The judge's contract, then its verdicts. */
static int run_judge(const struct slm_eval_suite *s, const struct slm_eval_run_params *p,
                     struct slm_eval_result *r, struct slm_err *err) {
    const struct slm_eval_metric *m = slm_eval_suite_metric(s, SLM_EVAL_JUDGE);
    if (!m) {
        return SLM_OK;
    }
    struct slm_eval_cloud ref = {"judge",  m->line,        m->router,   m->upstream, m->base_url,
                                 m->model, m->api_key_env, m->price_in, m->price_out};
    struct slm_contract *contract = NULL;
    int rc = p->open_cloud(p->user, s, &ref, &contract, err);
    return rc == SLM_OK ? slm__eval_judge(r, m, contract, p, err) : rc;
}

static int run_candidate(const struct slm_eval_suite *s, size_t ci,
                         const struct slm_data_records *recs, const struct slm_eval_run_params *p,
                         struct slm_eval_result *r, struct slm_err *err) {
    const struct slm_eval_candidate *c = &s->candidates[ci];
    struct slm_eval_cand_result *cr = &r->cands[ci];
    cr->cand = c;
    cr->answers = calloc(r->n_rows, sizeof(*cr->answers));
    if (!cr->answers) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        cr->answers[i].confidence = NAN;
        cr->answers[i].judge = NAN;
        cr->answers[i].status = SLM_E_ABORTED; /* until answered */
    }
    struct slm_eval_backend be = {0};
    int rc = open_backend(s, c, recs, p, &be, err);
    if (rc != SLM_OK) { /* open_cloud names file, line and candidate itself */
        return c->kind == SLM_EVAL_CAND_UPSTREAM ? rc
                                                 : slm_err_prefix(err, "candidate '%s'", c->name);
    }
    const struct slm_eval_metric *json = slm_eval_suite_metric(s, SLM_EVAL_JSON);
    struct progress_ctx pc = {p, c->name, ci * r->n_rows, s->n_candidates * r->n_rows};
    if (be.batch) {
        rc = be.batch(be.self, r->rows, r->n_rows, (const char *const *)r->labels, r->n_labels,
                      cr->answers, batch_progress, &pc, err);
    }
    for (size_t i = 0; !be.batch && rc == SLM_OK && i < r->n_rows; i++) {
        if (p->cancel && *p->cancel) {
            rc = slm_err_set(err, SLM_E_ABORTED, "interrupted");
            break;
        }
        struct slm_eval_request req = {.index = i,
                                       .row = &r->rows[i],
                                       .labels = (const char *const *)r->labels,
                                       .n_labels = r->n_labels,
                                       .schema = json ? json->schema : NULL,
                                       .want_json = json != NULL,
                                       .max_tokens = s->max_tokens};
        cr->answers[i].status = SLM_OK;
        rc = be.answer(be.self, &req, &cr->answers[i], err);
        batch_progress(i + 1, &pc);
    }
    be.close(be.self);
    return rc == SLM_OK ? rc : slm_err_prefix(err, "candidate '%s'", c->name);
}

int slm_eval_run(const struct slm_eval_suite *s, const struct slm_eval_run_params *params,
                 struct slm_eval_result **out, struct slm_err *err) {
    struct slm_eval_run_params p = params ? *params : slm_eval_run_params_default();
    *out = NULL;
    double t0 = slm_time_mono();
    struct slm_data_records recs = {0};
    struct slm_eval_result *r = calloc(1, sizeof(*r));
    if (!r) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    r->suite = s;
    int rc = check_upstreams(s, &p, err);
    if (rc == SLM_OK) {
        rc = read_rows(s, &recs, err);
    }
    if (rc == SLM_OK) {
        if (slm_eval_suite_metric(s, SLM_EVAL_LABEL)) {
            rc = collect_labels(r, &recs);
        }
        if (rc == SLM_OK) { /* the records stay whole: label scoring reads the set from all */
            rc = copy_rows(s, &recs, rows_to_use(s, p.limit, recs.n), r);
        }
        if (rc == SLM_OK && !(r->cands = calloc(s->n_candidates, sizeof(*r->cands)))) {
            rc = SLM_E_NOMEM;
        }
        r->n_cands = r->cands ? s->n_candidates : 0;
        if (rc == SLM_E_NOMEM) {
            slm_err_set(err, rc, "out of memory");
        }
    }
    for (size_t ci = 0; rc == SLM_OK && ci < s->n_candidates; ci++) {
        rc = run_candidate(s, ci, &recs, &p, r, err);
    }
    if (rc == SLM_OK) {
        rc = run_judge(s, &p, r, err);
    }
    slm_data_records_free(&recs);
    r->wall_s = slm_time_mono() - t0;
    if (rc == SLM_OK) {
        rc = slm_eval_score(r, err);
    }
    if (rc != SLM_OK) {
        slm_eval_result_free(r);
        return rc;
    }
    *out = r;
    return SLM_OK;
}
