/*
 * judge.c - the `judge` metric: a cloud model grades answers against a
 * rubric (a Liquid template), through the contractor (slm/contract.h), so
 * its verdicts are cached, its spend counts against the run's cost cap and
 * many verdicts are asked at once.
 *
 *  - score: 1 to 5 per answer; pass: pass or fail per answer. An answer that
 *    failed is not sent: it scores 1 / fails.
 *  - pairwise: two candidates' answers to the same row, asked twice with the
 *    order swapped (judges favour a position); a win counts only when both
 *    orders name the same candidate, anything else is a tie.
 *
 * A reply that does not parse is asked again once with the problem shown; a
 * row the judge never answers has no verdict (NAN, its reason says why) and
 * is counted in r->judge_errors.
 */
#include "eval/internal.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "slm/json.h"
#include "slm/liquid.h"

/* ---------------------------------------------------------------- rubrics */

static const char RUBRIC_SCORE[] =
    "You grade one answer to a task against a reference answer.\n\n"
    "<task>\n{{ input }}\n</task>\n\n"
    "<reference>\n{{ expected }}\n</reference>\n\n"
    "<answer>\n{{ answer }}\n</answer>\n\n"
    "Score the answer from 1 to 5: 5 = as right as the reference (wording may differ), "
    "4 = right with a small flaw, 3 = partly right, 2 = mostly wrong, 1 = wrong or missing.\n"
    "Reply with JSON only: {\"score\": 1-5, \"reason\": \"one sentence\"}\n";

static const char RUBRIC_PASS[] =
    "You check one answer to a task against a reference answer.\n\n"
    "<task>\n{{ input }}\n</task>\n\n"
    "<reference>\n{{ expected }}\n</reference>\n\n"
    "<answer>\n{{ answer }}\n</answer>\n\n"
    "Does the answer do what the task asks and agree with the reference (wording may "
    "differ)?\nReply with JSON only: {\"pass\": true or false, \"reason\": \"one sentence\"}\n";

static const char RUBRIC_PAIRWISE[] =
    "You compare two answers to the same task, with a reference answer.\n\n"
    "<task>\n{{ input }}\n</task>\n\n"
    "<reference>\n{{ expected }}\n</reference>\n\n"
    "<answer_a>\n{{ answer_a }}\n</answer_a>\n\n"
    "<answer_b>\n{{ answer_b }}\n</answer_b>\n\n"
    "Which answer is better: closer to the reference, and doing what the task asks? Their "
    "order is arbitrary; length is not merit.\n"
    "Reply with JSON only: {\"winner\": \"A\", \"B\" or \"tie\", \"reason\": \"one sentence\"}\n";

/* The reply's shape, sent as response_format. */
static json_t *verdict_format(enum slm_eval_judge_mode mode) {
    json_t *verdict =
        mode == SLM_EVAL_JUDGE_SCORE
            ? json_pack("{s:s, s:[i,i,i,i,i]}", "type", "integer", "enum", 1, 2, 3, 4, 5)
        : mode == SLM_EVAL_JUDGE_PASS
            ? json_pack("{s:s}", "type", "boolean")
            : json_pack("{s:s, s:[s,s,s]}", "type", "string", "enum", "A", "B", "tie");
    const char *key = mode == SLM_EVAL_JUDGE_SCORE  ? "score"
                      : mode == SLM_EVAL_JUDGE_PASS ? "pass"
                                                    : "winner";
    return json_pack("{s:s, s:{s:s, s:b, s:{s:s, s:{s:o, s:{s:s}}, s:[s,s], s:b}}}", "type",
                     "json_schema", "json_schema", "name", "verdict", "strict", 1, "schema", "type",
                     "object", "properties", key, verdict, "reason", "type", "string", "required",
                     key, "reason", "additionalProperties", 0);
}

/* ---------------------------------------------------------------- parsing a verdict */

/* The JSON inside the reply: trimmed, a Markdown code fence around it dropped. */
static struct slm_str unwrap(const char *text) {
    struct slm_str s = slm_str_trim(slm_str_c(text));
    if (slm_str_starts_with(s, slm_str_c("```"))) {
        const char *nl = memchr(s.ptr, '\n', s.len);
        if (nl) {
            s = slm_str_n(nl + 1, s.len - (size_t)(nl + 1 - s.ptr));
            s = slm_str_trim(s);
            if (slm_str_ends_with(s, slm_str_c("```"))) {
                s = slm_str_trim(slm_str_n(s.ptr, s.len - 3));
            }
        }
    }
    return s;
}

int slm_eval_judge_parse(enum slm_eval_judge_mode mode, const char *text, double *value,
                         char **reason, struct slm_err *err) {
    *value = NAN;
    *reason = NULL;
    struct slm_str s = unwrap(text ? text : "");
    json_t *o = NULL;
    if (slm_json_parse(s.ptr, s.len, "verdict", &o, NULL) != SLM_OK || !json_is_object(o)) {
        json_decref(o);
        return slm_err_set(err, SLM_E_INVALID, "the reply is not a JSON object");
    }
    int rc = SLM_OK;
    if (mode == SLM_EVAL_JUDGE_SCORE) {
        const json_t *v = json_object_get(o, "score");
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(x >= 1 && x <= 5) || x != floor(x)) {
            rc = slm_err_set(err, SLM_E_INVALID, "\"score\" must be a whole number from 1 to 5");
        }
        *value = x;
    } else if (mode == SLM_EVAL_JUDGE_PASS) {
        const json_t *v = json_object_get(o, "pass");
        if (!json_is_boolean(v)) {
            rc = slm_err_set(err, SLM_E_INVALID, "\"pass\" must be true or false");
        }
        *value = json_is_true(v) ? 1 : 0;
    } else {
        const char *w = json_string_value(json_object_get(o, "winner"));
        if (w && strcasecmp(w, "a") == 0) {
            *value = 1;
        } else if (w && strcasecmp(w, "b") == 0) {
            *value = -1;
        } else if (w && strcasecmp(w, "tie") == 0) {
            *value = 0;
        } else {
            rc = slm_err_set(err, SLM_E_INVALID, "\"winner\" must be \"A\", \"B\" or \"tie\"");
        }
    }
    const json_t *r = json_object_get(o, "reason");
    if (rc == SLM_OK && r && !json_is_string(r)) {
        rc = slm_err_set(err, SLM_E_INVALID, "\"reason\" must be a string");
    }
    if (rc == SLM_OK && !(*reason = strdup(r ? json_string_value(r) : ""))) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc != SLM_OK) {
        *value = NAN;
    }
    json_decref(o);
    return rc;
}

/* ---------------------------------------------------------------- one run */

struct judge {
    struct slm_eval_result *r;
    const struct slm_eval_metric *m;
    struct slm_liquid_template *rubric;
    json_t *format;
    size_t (*pairs)[2]; /* pairwise: candidate indexes */
    size_t n_pairs;
    pthread_mutex_t mu;
    size_t errors;
    const struct slm_eval_run_params *p;
    size_t done, total;
};

/* The verdict checker slm__contract_ask() retries with. */
static int check_verdict(const void *user, const char *text, const char *finish, json_t **value,
                         struct slm_err *err) {
    (void)finish;
    const struct judge *j = user;
    double v;
    char *reason = NULL;
    int rc = slm_eval_judge_parse(j->m->mode, text, &v, &reason, err);
    if (rc == SLM_OK && !(*value = json_pack("{s:f, s:s}", "v", v, "reason", reason))) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    free(reason);
    return rc;
}

/* One verdict: NAN and the reason for none when the judge gave none. */
static int ask(struct judge *j, struct slm_contract *c, json_t *vars, double *value, char **reason,
               struct slm_err *err) {
    *value = NAN;
    *reason = NULL;
    struct slm_buf text;
    slm_buf_init(&text, (size_t)8 << 20);
    int rc = slm_liquid_render(j->rubric, vars, &text, err);
    json_t *req = NULL;
    if (rc == SLM_OK) {
        req = json_pack("{s:[{s:s, s:s}], s:i, s:I, s:O}", "messages", "role", "user", "content",
                        slm_buf_cstr(&text), "temperature", 0, "max_tokens",
                        (json_int_t)j->m->judge_max_tokens, "response_format", j->format);
        rc = req ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    } else {
        slm_err_prefix(err, "the judge's rubric");
    }
    slm_buf_free(&text);
    json_t *got = NULL;
    char why[512] = "";
    if (rc == SLM_OK) {
        rc = slm__contract_ask(c, req, check_verdict, j, &got, why, sizeof(why), err);
    }
    json_decref(req);
    if (rc == SLM_OK && got) {
        *value = json_real_value(json_object_get(got, "v"));
        *reason = strdup(json_string_value(json_object_get(got, "reason")));
    } else if (rc == SLM_OK) {
        char msg[600];
        snprintf(msg, sizeof(msg), "no verdict: %s", why);
        *reason = strdup(msg);
        pthread_mutex_lock(&j->mu);
        j->errors++;
        pthread_mutex_unlock(&j->mu);
    }
    json_decref(got);
    if (rc == SLM_OK && !*reason) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return rc;
}

static bool answered(const struct slm_eval_answer *a) {
    return a->status == SLM_OK && a->text;
}

static json_t *row_vars(const struct slm_eval_row *row) {
    return json_pack("{s:s, s:s, s:s, s:O}", "input", row->input, "prompt", row->prompt, "expected",
                     row->expected, "row", row->row);
}

/* score / pass: task t is candidate t / rows, row t % rows. */
static int grade(struct judge *j, struct slm_contract *c, size_t t, struct slm_err *err) {
    struct slm_eval_result *r = j->r;
    struct slm_eval_cand_result *cr = &r->cands[t / r->n_rows];
    size_t i = t % r->n_rows;
    struct slm_eval_answer *a = &cr->answers[i];
    if (!answered(a)) {
        a->judge = j->m->mode == SLM_EVAL_JUDGE_SCORE ? 1 : 0;
        a->judge_reason = strdup("no answer to judge");
        return a->judge_reason ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    json_t *vars = row_vars(&r->rows[i]);
    if (!vars || json_object_set_new(vars, "answer", json_string(a->text)) != 0 ||
        json_object_set_new(vars, "candidate", json_string(cr->cand->name)) != 0) {
        json_decref(vars);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = ask(j, c, vars, &a->judge, &a->judge_reason, err);
    json_decref(vars);
    return rc;
}

/* One order of a pair: +1 the first-shown answer, -1 the second, 0 tie, NAN none. */
static int compare(struct judge *j, struct slm_contract *c, size_t i,
                   const struct slm_eval_answer *first, const struct slm_eval_answer *second,
                   double *v, struct slm_err *err) {
    json_t *vars = row_vars(&j->r->rows[i]);
    if (!vars || json_object_set_new(vars, "answer_a", json_string(first->text)) != 0 ||
        json_object_set_new(vars, "answer_b", json_string(second->text)) != 0) {
        json_decref(vars);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    char *reason = NULL;
    int rc = ask(j, c, vars, v, &reason, err);
    free(reason);
    json_decref(vars);
    return rc;
}

/* pairwise: task t is pair t / rows, row t % rows, both orders. */
static int duel(struct judge *j, struct slm_contract *c, size_t t, struct slm_err *err) {
    struct slm_eval_result *r = j->r;
    struct slm_eval_judged_pair *jp = &r->judged[t / r->n_rows];
    size_t i = t % r->n_rows;
    const struct slm_eval_answer *a = &r->cands[jp->a].answers[i];
    const struct slm_eval_answer *b = &r->cands[jp->b].answers[i];
    if (!answered(a) || !answered(b)) {
        jp->verdict[i] = (int8_t)(answered(a) - answered(b)); /* the one that answered wins */
        return SLM_OK;
    }
    double ab = NAN, ba = NAN;
    int rc = compare(j, c, i, a, b, &ab, err);
    if (rc == SLM_OK) {
        rc = compare(j, c, i, b, a, &ba, err);
    }
    if (rc == SLM_OK) {
        /* ab: +1 = a; ba: +1 = b. A win needs both orders. */
        bool agree = !isnan(ab) && !isnan(ba) && ab == -ba;
        jp->verdict[i] = (int8_t)(agree ? ab : 0);
        if (!isnan(ab) && !isnan(ba) && !agree) {
            pthread_mutex_lock(&j->mu);
            jp->split++;
            pthread_mutex_unlock(&j->mu);
        }
    }
    return rc;
}

static int task_fn(void *user, struct slm_contract *c, size_t t, json_t **out,
                   struct slm_err *err) {
    struct judge *j = user;
    *out = NULL;
    return j->m->mode == SLM_EVAL_JUDGE_PAIRWISE ? duel(j, c, t, err) : grade(j, c, t, err);
}

static int emit_fn(void *user, size_t index, const json_t *out, struct slm_err *err) {
    (void)index;
    (void)out;
    (void)err;
    struct judge *j = user;
    j->done++;
    if (j->p->progress) {
        j->p->progress(j->done, j->total, "judge", j->p->user);
    }
    return SLM_OK;
}

/* The pairs to compare: every pair, or each candidate with `against`. */
static int make_pairs(struct judge *j) {
    struct slm_eval_result *r = j->r;
    r->judged = calloc(r->n_cands * r->n_cands + 1, sizeof(*r->judged));
    if (!r->judged) {
        return SLM_E_NOMEM;
    }
    for (size_t a = 0; a < r->n_cands; a++) {
        for (size_t b = a + 1; b < r->n_cands; b++) {
            const char *against = j->m->against;
            if (against && strcmp(r->cands[a].cand->name, against) != 0 &&
                strcmp(r->cands[b].cand->name, against) != 0) {
                continue;
            }
            struct slm_eval_judged_pair *jp = &r->judged[r->n_judged];
            *jp = (struct slm_eval_judged_pair){.a = a, .b = b};
            if (!(jp->verdict = calloc(r->n_rows + 1, 1))) {
                return SLM_E_NOMEM;
            }
            r->n_judged++;
        }
    }
    return SLM_OK;
}

int slm__eval_judge(struct slm_eval_result *r, const struct slm_eval_metric *m,
                    struct slm_contract *c, const struct slm_eval_run_params *p,
                    struct slm_err *err) {
    struct judge j = {.r = r, .m = m, .p = p};
    int rc = SLM_OK;
    if (m->rubric) {
        rc = slm_liquid_parse_file(m->rubric, NULL, &j.rubric, err);
    } else {
        const char *src = m->mode == SLM_EVAL_JUDGE_SCORE  ? RUBRIC_SCORE
                          : m->mode == SLM_EVAL_JUDGE_PASS ? RUBRIC_PASS
                                                           : RUBRIC_PAIRWISE;
        rc = slm_liquid_parse("judge rubric", src, strlen(src), NULL, &j.rubric, err);
    }
    if (rc == SLM_OK && !(j.format = verdict_format(m->mode))) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && m->mode == SLM_EVAL_JUDGE_PAIRWISE && make_pairs(&j) != SLM_OK) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&j.mu, NULL);
    j.total = (m->mode == SLM_EVAL_JUDGE_PAIRWISE ? r->n_judged : r->n_cands) * r->n_rows;
    if (rc == SLM_OK) {
        struct slm_contract_run_params rp = {.n_rows = j.total,
                                             .concurrency = p->cloud_concurrency,
                                             .row = task_fn,
                                             .emit = emit_fn,
                                             .user = &j,
                                             .stop = p->cancel};
        struct slm_contract_run_result res;
        rc = slm_contract_run(c, &rp, &res, err);
        if (rc == SLM_E_LIMIT) {
            slm_err_prefix(err,
                           "stopped by --max-cost after %zu of %zu verdicts (they are "
                           "cached; a re-run pays only for the rest)",
                           res.done, j.total);
        }
    }
    r->judge_errors = j.errors;
    pthread_mutex_destroy(&j.mu);
    json_decref(j.format);
    slm_liquid_free(j.rubric);
    return rc == SLM_OK ? rc : slm_err_prefix(err, "judge");
}
