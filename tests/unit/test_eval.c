/*
 * test_eval.c - the eval module without a model (slm/eval.h): suite parsing
 * and its file:line:key errors, the per-row metrics, the statistics against
 * known values, scoring of fixed answers, and the reports' shape and escaping.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/eval.h"

/* A folder with the files suites name (they must exist). */
static char dir[64];

static void touch(const char *name, const char *text) {
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    snprintf(dir, sizeof(dir), "/tmp/slm-test-eval-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    touch("data.jsonl", "{\"prompt\":\"a\",\"completion\":\"x\"}\n");
    touch("a.gguf", "x");
    touch("lora.gguf", "x");
    touch("router.yaml", "x");
    touch("schema.json", "{\"type\":\"object\"}");
}

static void teardown(void) {
    const char *names[] = {"data.jsonl", "a.gguf", "lora.gguf", "router.yaml", "schema.json"};
    for (size_t i = 0; i < 5; i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static struct slm_eval_suite *parse_ok(const char *src) {
    struct slm_eval_suite *s = NULL;
    struct slm_err err = {0};
    int rc = slm_eval_suite_parse("suite.yaml", src, strlen(src), dir, &s, &err);
    cr_assert_eq(rc, SLM_OK, "parse failed: %s", err.msg);
    return s;
}

static void parse_fails(const char *src, const char *want) {
    struct slm_eval_suite *s = NULL;
    struct slm_err err = {0};
    int rc = slm_eval_suite_parse("suite.yaml", src, strlen(src), dir, &s, &err);
    cr_assert_neq(rc, SLM_OK, "should fail: %s", src);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, want), "error '%s' should contain '%s'", err.msg, want);
}

#define HEAD "data:\n  file: data.jsonl\n"

TestSuite(eval_suite, .init = setup, .fini = teardown);

Test(eval_suite, five_candidate_kinds) {
    struct slm_eval_suite *s =
        parse_ok("name: demo\n" HEAD "  valid-hash: text:10\n  limit: 50\n"
                 "candidates:\n"
                 "  - model: smollm2:135m\n"
                 "  - model: smollm2:135m\n    adapter: lora.gguf\n"
                 "  - gguf: a.gguf\n    cost-per-1k: 0.02\n"
                 "  - router: router.yaml\n    route: support\n"
                 "  - name: cloud\n    base-url: http://127.0.0.1:9/v1\n    model: gpt-x\n"
                 "    price-in: 0.15\n    price-out: 0.6\n"
                 "metrics: [label, exact, {kind: json, schema: schema.json}, "
                 "{kind: regex, pattern: '^\\w+$'}]\n");
    cr_assert_str_eq(s->name, "demo");
    cr_assert_eq(s->n_candidates, 5);
    cr_assert_eq(s->candidates[0].kind, SLM_EVAL_CAND_MODEL);
    cr_assert_str_eq(s->candidates[0].name, "smollm2:135m");
    cr_assert_eq(s->candidates[1].kind, SLM_EVAL_CAND_ADAPTER);
    cr_assert_str_eq(s->candidates[1].name, "smollm2:135m+adapter");
    cr_assert(strstr(s->candidates[1].adapter, dir) == s->candidates[1].adapter);
    cr_assert_eq(s->candidates[2].kind, SLM_EVAL_CAND_GGUF);
    cr_assert_float_eq(s->candidates[2].cost_per_1k, 0.02, 1e-12);
    cr_assert_eq(s->candidates[3].kind, SLM_EVAL_CAND_ROUTE);
    cr_assert_str_eq(s->candidates[3].name, "support");
    cr_assert_eq(s->candidates[4].kind, SLM_EVAL_CAND_UPSTREAM);
    cr_assert_float_eq(s->candidates[4].price_out, 0.6, 1e-12);
    cr_assert_eq(s->n_metrics, 4);
    cr_assert_not_null(slm_eval_suite_metric(s, SLM_EVAL_JSON)->schema);
    cr_assert_str_eq(s->data.hash_field, "text");
    cr_assert_eq(s->data.hash_mod, 10);
    cr_assert_eq(s->data.limit, 50);
    cr_assert_eq(s->bootstrap, 1000);
    cr_assert_eq(s->max_tokens, 128);
    slm_eval_suite_free(s);
}

Test(eval_suite, errors_name_file_line_and_key) {
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\n  - model: m\n    adaptr: lora.gguf\n"
                     "metrics: [label]\n",
                "suite.yaml:6: candidates[1].adaptr: unknown key");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics: [lable]\n",
                "suite.yaml:5: metrics[0]: unknown metric 'lable'");
    parse_fails(HEAD "  valid-hash: text:1\ncandidates:\n  - gguf: a.gguf\nmetrics: [label]\n",
                "suite.yaml:3: data.valid-hash: expected FIELD or FIELD:M");
    parse_fails(HEAD "candidates:\n  - route: r\nmetrics: [label]\n",
                "suite.yaml:4: candidates[0]: a route needs router");
    parse_fails(HEAD "candidates:\n  - gguf: missing.gguf\nmetrics: [label]\n",
                "suite.yaml:4: candidates[0].gguf: no such file");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\n    model: m\nmetrics: [label]\n",
                "candidates[0]: name exactly one of");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\n  - gguf: a.gguf\nmetrics: [label]\n",
                "suite.yaml:5: candidates[1]: two candidates are named 'a.gguf'");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics:\n  - kind: regex\n"
                     "    pattern: \"(\"\n",
                "suite.yaml:7: metrics[0]: bad pattern");
    parse_fails(HEAD
                "candidates:\n  - gguf: a.gguf\nmetrics:\n  - {kind: json, schema: /dev/null}\n",
                "suite.yaml:6: metrics[0].schema: no such file: /dev/null");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics: [label]\nbootstrap: 5\n",
                "suite.yaml:6: bootstrap: expected an integer between 100");
    parse_fails("candidates:\n  - gguf: a.gguf\nmetrics: [label]\n",
                "suite.yaml:1: data: required");
    parse_fails(HEAD "metrics: [label]\n", "candidates: expected a list");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics: [label, label]\n",
                "metrics[1]: 'label' is listed twice");
}

/* ---------------------------------------------------------------- metrics */

Test(eval_metrics, exact_json_regex) {
    cr_assert(slm_eval_exact("  red\n", " red", false));
    cr_assert_not(slm_eval_exact("Red", "red", false));
    cr_assert(slm_eval_exact("Red", "red", true));

    struct slm_eval_json_score js;
    slm_eval_json("{\"a\":1,\"b\":\"x\",\"c\":3}", "{\"a\":1,\"b\":\"y\",\"d\":4}", NULL, &js);
    cr_assert(js.valid && js.schema_valid && !js.exact);
    cr_assert_eq(js.tp, 1);
    cr_assert_eq(js.n_pred, 3);
    cr_assert_eq(js.n_expected, 3);
    slm_eval_json("```json\n{\"a\":1}\n```", "{\"a\":1}", NULL, &js);
    cr_assert(js.valid && js.exact && js.tp == 1);
    slm_eval_json("{\"a\":", "{\"a\":1}", NULL, &js);
    cr_assert(!js.valid && js.tp == 0 && js.n_pred == 0 && js.n_expected == 1);
    json_t *schema = json_loads("{\"type\":\"object\",\"required\":[\"b\"]}", 0, NULL);
    slm_eval_json("{\"a\":1}", "{\"a\":1}", schema, &js);
    cr_assert(js.valid && !js.schema_valid && js.exact);
    json_decref(schema);

    struct slm_err err = {0};
    cr_assert_eq(slm_eval_regex("^[a-z]+$", false, "abc", &err), 1);
    cr_assert_eq(slm_eval_regex("^[a-z]+$", false, "ABC", &err), 0);
    cr_assert_eq(slm_eval_regex("^[a-z]+$", true, "ABC", &err), 1);
    cr_assert_eq(slm_eval_regex("(", false, "x", &err), SLM_E_INVALID);
}

/* ---------------------------------------------------------------- statistics */

Test(eval_stats, mcnemar_known_values) {
    /* Exact: b = 1, c = 6: 2 * (C(7,0) + C(7,1)) / 2^7 = 0.125. */
    cr_assert_float_eq(slm_eval_mcnemar(1, 6), 0.125, 1e-12);
    cr_assert_float_eq(slm_eval_mcnemar(0, 10), 2.0 / 1024.0, 1e-12);
    cr_assert_float_eq(slm_eval_mcnemar(5, 5), 1.0, 1e-12);
    cr_assert_float_eq(slm_eval_mcnemar(0, 0), 1.0, 1e-12);
    /* Chi-square with continuity correction: (|10-25|-1)^2/35 = 5.6, p = 0.017960. */
    cr_assert_float_eq(slm_eval_mcnemar(10, 25), 0.0179604775, 1e-9);
    cr_assert_float_eq(slm_eval_mcnemar(25, 10), 0.0179604775, 1e-9);
}

Test(eval_stats, bootstrap_of_a_known_proportion) {
    double x[1000];
    for (size_t i = 0; i < 1000; i++) {
        x[i] = i % 10 < 3; /* p = 0.3: normal interval 0.3 +- 1.96 sqrt(0.21/1000) */
    }
    double lo, hi, lo2, hi2;
    slm_eval_bootstrap_mean(x, 1000, 2000, 7, &lo, &hi);
    cr_assert_float_eq(lo, 0.3 - 0.0284, 0.006, "lo %f", lo);
    cr_assert_float_eq(hi, 0.3 + 0.0284, 0.006, "hi %f", hi);
    slm_eval_bootstrap_mean(x, 1000, 2000, 7, &lo2, &hi2);
    cr_assert(lo == lo2 && hi == hi2, "the same seed gives the same interval");
    slm_eval_bootstrap_mean(x, 0, 100, 7, &lo, &hi);
    cr_assert(isnan(lo) && isnan(hi));
    /* All right: the interval is the point. */
    for (size_t i = 0; i < 20; i++) {
        x[i] = 1;
    }
    slm_eval_bootstrap_mean(x, 20, 500, 1, &lo, &hi);
    cr_assert(lo == 1 && hi == 1);
    /* F1 with every row the same: the interval is the point. */
    size_t tp[10], pred[10], exp[10];
    for (size_t i = 0; i < 10; i++) {
        tp[i] = 1;
        pred[i] = 2;
        exp[i] = 2;
    }
    slm_eval_bootstrap_f1(tp, pred, exp, 10, 500, 3, &lo, &hi);
    cr_assert_float_eq(lo, 0.5, 1e-12);
    cr_assert_float_eq(hi, 0.5, 1e-12);
}

Test(eval_stats, percentile_nearest_rank) {
    double x[] = {5, 1, 4, 2, 3, 10, 9, 8, 7, 6};
    cr_assert_float_eq(slm_eval_percentile(x, 10, 50), 5, 1e-12);
    cr_assert_float_eq(slm_eval_percentile(x, 10, 95), 10, 1e-12);
    cr_assert(isnan(slm_eval_percentile(x, 0, 50)));
}

/* ---------------------------------------------------------------- scoring and reports */

/* Two candidates on four label rows with fixed answers. */
static struct slm_eval_result *fixed_result(struct slm_eval_suite **sp) {
    struct slm_eval_suite *s = parse_ok(HEAD "candidates:\n  - gguf: a.gguf\n    name: a\n"
                                             "  - gguf: a.gguf\n    name: \"b<i>\"\n"
                                             "metrics: [label]\nbootstrap: 200\n");
    struct slm_eval_result *r = calloc(1, sizeof(*r));
    r->suite = s;
    r->n_rows = 4;
    r->rows = calloc(4, sizeof(*r->rows));
    const char *exp[] = {"yes", "no", "yes", "no"};
    const char *ans[2][4] = {{"yes", "no", "no", "no"}, {"yes", "yes", "no", "yes"}};
    r->labels = calloc(2, sizeof(char *));
    r->labels[0] = strdup("yes");
    r->labels[1] = strdup("no");
    r->n_labels = 2;
    for (size_t i = 0; i < 4; i++) {
        r->rows[i].line = i + 1;
        r->rows[i].prompt = strdup("p");
        r->rows[i].input = strdup(i == 1 ? "<script>alert(1)</script> | x" : "in");
        r->rows[i].expected = strdup(exp[i]);
    }
    r->n_cands = 2;
    r->cands = calloc(2, sizeof(*r->cands));
    for (size_t c = 0; c < 2; c++) {
        r->cands[c].cand = &s->candidates[c];
        r->cands[c].answers = calloc(4, sizeof(struct slm_eval_answer));
        for (size_t i = 0; i < 4; i++) {
            r->cands[c].answers[i] = (struct slm_eval_answer){.text = strdup(ans[c][i]),
                                                              .confidence = 0.5 + 0.1 * (double)i,
                                                              .latency_ms = 10.0 * (double)(i + 1),
                                                              .n_in = 3,
                                                              .n_out = 1};
        }
    }
    struct slm_err err = {0};
    cr_assert_eq(slm_eval_score(r, &err), SLM_OK, "%s", err.msg);
    *sp = s;
    return r;
}

Test(eval_score, values_pairs_labels, .init = setup, .fini = teardown) {
    struct slm_eval_suite *s;
    struct slm_eval_result *r = fixed_result(&s);
    const struct slm_eval_cand_result *a = &r->cands[0], *b = &r->cands[1];
    cr_assert_eq(a->n_values, 1);
    cr_assert_str_eq(a->values[0].key, "label");
    cr_assert_float_eq(a->values[0].value, 0.75, 1e-12);
    cr_assert_float_eq(b->values[0].value, 0.25, 1e-12);
    cr_assert(a->values[0].lo <= 0.75 && a->values[0].hi >= 0.75);
    cr_assert_eq(a->values[0].n, 4);
    cr_assert_float_eq(a->p50_ms, 20, 1e-12);
    cr_assert_float_eq(a->p95_ms, 40, 1e-12);
    cr_assert_eq(a->tokens_in, 12);
    /* yes: a 1/2, no: a 2/2. */
    cr_assert_eq(a->n_labels, 2);
    cr_assert_eq(a->labels[0].right, 1);
    cr_assert_eq(a->labels[1].right, 2);
    cr_assert_eq(r->n_pairs, 1);
    cr_assert_eq(r->pairs[0].only_a, 2); /* rows 2 and 4 */
    cr_assert_eq(r->pairs[0].only_b, 0);
    cr_assert_float_eq(r->pairs[0].p_value, 0.5, 1e-12);

    json_t *j = slm_eval_report_json(r);
    cr_assert_not_null(j);
    cr_assert_eq(json_integer_value(json_object_get(j, "rows")), 4);
    json_t *c0 = json_array_get(json_object_get(j, "candidates"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c0, "name")), "a");
    json_t *lab = json_object_get(json_object_get(c0, "metrics"), "label");
    cr_assert_float_eq(json_real_value(json_object_get(lab, "value")), 0.75, 1e-12);
    cr_assert_eq(json_array_size(json_object_get(lab, "ci95")), 2);
    cr_assert_not_null(json_object_get(json_object_get(c0, "latency_ms"), "p95"));
    cr_assert_not_null(json_object_get(c0, "cost_per_1k"));
    json_t *p0 = json_array_get(json_object_get(j, "pairs"), 0);
    cr_assert_float_eq(json_real_value(json_object_get(p0, "p_value")), 0.5, 1e-12);
    json_decref(j);

    struct slm_buf html = {0}, md = {0}, txt = {0};
    cr_assert_eq(slm_eval_report_html(r, &html), SLM_OK);
    const char *h = slm_buf_cstr(&html);
    cr_assert(strstr(h, "&lt;script&gt;alert(1)&lt;/script&gt;"), "input escaped");
    cr_assert_null(strstr(h, "<script"), "no script in the page");
    cr_assert(strstr(h, "b&lt;i&gt;"), "candidate names escaped");
    cr_assert_null(strstr(h, "<?xml"));
    cr_assert(strstr(h, "id=\"labels\"") && strstr(h, "<rect"), "per-label bars");
    cr_assert(strstr(h, "id=\"coverage\"") && strstr(h, "<polyline"), "coverage curve");
    cr_assert(strstr(h, "id=\"disagree\""));
    cr_assert_eq(slm_eval_report_markdown(r, &md), SLM_OK);
    cr_assert(strstr(slm_buf_cstr(&md), "| a | gguf | 4 | label | 0.750 |"), "%s",
              slm_buf_cstr(&md));
    cr_assert_eq(slm_eval_report_text(r, &txt), SLM_OK);
    cr_assert(strstr(slm_buf_cstr(&txt), "only A 2  only B 0  p=0.5  n=4"), "%s",
              slm_buf_cstr(&txt));
    slm_buf_free(&html);
    slm_buf_free(&md);
    slm_buf_free(&txt);
    slm_eval_result_free(r);
    slm_eval_suite_free(s);
}

Test(eval_score, a_failed_answer_counts_as_wrong, .init = setup, .fini = teardown) {
    struct slm_eval_suite *s;
    struct slm_eval_result *r = fixed_result(&s);
    /* Rescore with row 1 of `a` failed. */
    struct slm_eval_cand_result *a = &r->cands[0];
    for (size_t c = 0; c < 2; c++) {
        for (size_t k = 0; k < r->cands[c].n_labels; k++) {
            free(r->cands[c].labels[k].label);
        }
        free(r->cands[c].labels);
        free(r->cands[c].right);
        r->cands[c].labels = NULL;
        r->cands[c].right = NULL;
        r->cands[c].n_labels = r->cands[c].n_values = r->cands[c].n_errors = 0;
        r->cands[c].tokens_in = r->cands[c].tokens_out = 0;
    }
    free(r->pairs);
    r->pairs = NULL;
    r->n_pairs = 0;
    a->answers[0].status = SLM_E_TIMEOUT;
    struct slm_err err = {0};
    cr_assert_eq(slm_eval_score(r, &err), SLM_OK);
    cr_assert_float_eq(a->values[0].value, 0.5, 1e-12);
    cr_assert_eq(a->n_errors, 1);
    cr_assert_eq(a->values[0].n, 4);
    slm_eval_result_free(r);
    slm_eval_suite_free(s);
}

/* ---------------------------------------------------------------- the judge */

Test(eval_suite, judge_and_cloud_keys) {
    struct slm_eval_suite *s =
        parse_ok(HEAD "candidates:\n  - gguf: a.gguf\n    name: a\n"
                      "  - {name: cloud, base-url: \"http://127.0.0.1:9/v1\", model: m,\n"
                      "     system: Be brief., structured: false}\n"
                      "metrics:\n  - exact\n"
                      "  - {kind: judge, mode: pairwise, against: a, router: router.yaml,\n"
                      "     upstream: big, max-tokens: 64}\n");
    const struct slm_eval_metric *j = slm_eval_suite_metric(s, SLM_EVAL_JUDGE);
    cr_assert_not_null(j);
    cr_assert_eq(j->mode, SLM_EVAL_JUDGE_PAIRWISE);
    cr_assert_str_eq(j->against, "a");
    cr_assert_str_eq(j->upstream, "big");
    cr_assert(strstr(j->router, dir) == j->router, "router resolved against the suite's folder");
    cr_assert_eq(j->judge_max_tokens, 64);
    cr_assert_eq(j->line, 10);
    cr_assert_str_eq(s->candidates[1].system, "Be brief.");
    cr_assert_not(s->candidates[1].structured);
    cr_assert(s->candidates[0].structured == true ||
              s->candidates[0].kind != SLM_EVAL_CAND_UPSTREAM);
    slm_eval_suite_free(s);
    s = parse_ok(HEAD "candidates:\n  - gguf: a.gguf\n"
                      "metrics: [{kind: judge, base-url: \"http://x/v1\", model: j}]\n");
    cr_assert_eq(slm_eval_suite_metric(s, SLM_EVAL_JUDGE)->mode, SLM_EVAL_JUDGE_SCORE);
    cr_assert_eq(slm_eval_suite_metric(s, SLM_EVAL_JUDGE)->judge_max_tokens, 256);
    slm_eval_suite_free(s);
}

Test(eval_suite, judge_errors_name_line_and_key) {
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics: [judge]\n",
                "suite.yaml:5: metrics[0]: judge needs its cloud model");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics:\n  - {kind: judge, mode: pass}\n",
                "metrics[0]: the judge needs a cloud model");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics:\n"
                     "  - {kind: judge, mode: best, base-url: \"http://x/v1\", model: j}\n",
                "suite.yaml:6: metrics[0].mode: unknown judge mode 'best'");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics:\n"
                     "  - {kind: judge, mode: pairwise, base-url: \"http://x/v1\", model: j}\n",
                "pairwise needs at least two candidates");
    parse_fails(HEAD "candidates:\n  - {gguf: a.gguf, name: a}\n  - {gguf: a.gguf, name: b}\n"
                     "metrics:\n  - {kind: judge, mode: pairwise, against: c, base-url: "
                     "\"http://x/v1\", model: j}\n",
                "metrics[0].against: no candidate is named 'c'");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics:\n"
                     "  - {kind: judge, rubric: missing.liquid, base-url: \"http://x/v1\", "
                     "model: j}\n",
                "metrics[0].rubric: no such file");
    parse_fails(HEAD "candidates:\n  - gguf: a.gguf\nmetrics:\n  - {kind: exact, mode: pass}\n",
                "suite.yaml:6: metrics[0].mode: goes with kind: judge");
    parse_fails(HEAD "candidates:\n  - {gguf: a.gguf, system: hi}\nmetrics: [exact]\n",
                "candidates[0].system: goes with an upstream candidate");
}

Test(eval_judge, verdict_parsing) {
    double v;
    char *why = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_eval_judge_parse(SLM_EVAL_JUDGE_SCORE, "{\"score\": 4, \"reason\": \"close\"}",
                                      &v, &why, &err),
                 SLM_OK);
    cr_assert_float_eq(v, 4, 0);
    cr_assert_str_eq(why, "close");
    free(why);
    cr_assert_eq(slm_eval_judge_parse(SLM_EVAL_JUDGE_PASS,
                                      "```json\n{\"pass\": false, \"reason\": \"no\"}\n```", &v,
                                      &why, &err),
                 SLM_OK, "a fenced reply: %s", err.msg);
    cr_assert_float_eq(v, 0, 0);
    free(why);
    cr_assert_eq(
        slm_eval_judge_parse(SLM_EVAL_JUDGE_PAIRWISE, " {\"winner\": \"b\"} ", &v, &why, &err),
        SLM_OK);
    cr_assert_float_eq(v, -1, 0);
    cr_assert_str_eq(why, "");
    free(why);
    const char *bad[][2] = {{"{\"score\": 6}", "1 to 5"},
                            {"{\"score\": 2.5}", "whole number"},
                            {"{\"score\": \"5\"}", "whole number"},
                            {"The answer is fine.", "not a JSON object"},
                            {"{\"score\": 3, \"reason\": 7}", "\"reason\" must be a string"}};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(slm_eval_judge_parse(SLM_EVAL_JUDGE_SCORE, bad[i][0], &v, &why, &err),
                     SLM_E_INVALID, "%s", bad[i][0]);
        cr_assert(isnan(v) && !why);
        cr_assert(strstr(err.msg, bad[i][1]), "'%s': %s", bad[i][0], err.msg);
    }
    cr_assert_eq(slm_eval_judge_parse(SLM_EVAL_JUDGE_PASS, "{\"pass\": \"yes\"}", &v, &why, &err),
                 SLM_E_INVALID);
    cr_assert_eq(
        slm_eval_judge_parse(SLM_EVAL_JUDGE_PAIRWISE, "{\"winner\": \"C\"}", &v, &why, &err),
        SLM_E_INVALID);
}

/* Judge verdicts scored: the mean score with its interval, and pairwise wins as a pair. */
Test(eval_score, judge_score_and_pairwise, .init = setup, .fini = teardown) {
    struct slm_eval_suite *s =
        parse_ok(HEAD "candidates:\n  - {gguf: a.gguf, name: a}\n  - {gguf: a.gguf, name: b}\n"
                      "metrics: [exact, {kind: judge, base-url: \"http://x/v1\", model: j}]\n"
                      "bootstrap: 200\n");
    struct slm_eval_result *r = calloc(1, sizeof(*r));
    r->suite = s;
    r->n_rows = 4;
    r->rows = calloc(4, sizeof(*r->rows));
    for (size_t i = 0; i < 4; i++) {
        r->rows[i] = (struct slm_eval_row){i + 1, strdup("p"), strdup("in"), strdup("x"), NULL};
    }
    r->n_cands = 2;
    r->cands = calloc(2, sizeof(*r->cands));
    const double scores[2][4] = {{5, 4, NAN, 3}, {1, 1, 2, 2}};
    for (size_t c = 0; c < 2; c++) {
        r->cands[c].cand = &s->candidates[c];
        r->cands[c].answers = calloc(4, sizeof(struct slm_eval_answer));
        for (size_t i = 0; i < 4; i++) {
            r->cands[c].answers[i] = (struct slm_eval_answer){
                .text = strdup("x"), .confidence = NAN, .judge = scores[c][i]};
        }
    }
    /* Pairwise verdicts as judge.c leaves them: a wins 2, b wins 1, one tie. */
    r->judged = calloc(1, sizeof(*r->judged));
    r->judged[0] =
        (struct slm_eval_judged_pair){.a = 0, .b = 1, .verdict = calloc(4, 1), .split = 1};
    r->judged[0].verdict[0] = 1;
    r->judged[0].verdict[1] = 1;
    r->judged[0].verdict[3] = -1;
    r->n_judged = 1;
    struct slm_err err = {0};
    cr_assert_eq(slm_eval_score(r, &err), SLM_OK, "%s", err.msg);
    const struct slm_eval_value *v = &r->cands[0].values[1];
    cr_assert_str_eq(v->key, "judge_score");
    cr_assert_float_eq(v->value, 4, 1e-12); /* (5 + 4 + 3) / 3: the row without a verdict is out */
    cr_assert_eq(v->n, 3);
    cr_assert(v->lo >= 3 && v->hi <= 5 && v->lo <= 4 && v->hi >= 4);
    cr_assert_not(v->paired);
    cr_assert_float_eq(r->cands[1].values[1].value, 1.5, 1e-12);
    const struct slm_eval_pair *p = &r->pairs[r->n_pairs - 1];
    cr_assert_str_eq(p->key, "judge_pairwise");
    cr_assert_eq(p->only_a, 2);
    cr_assert_eq(p->only_b, 1);
    cr_assert_float_eq(p->p_value, 1.0, 1e-12);
    slm_eval_result_free(r);
    slm_eval_suite_free(s);
}
