/*
 * test_router.c - router.yaml validation (every error names file, line and
 * key), the thresholds include, and the checks over a local result. No model.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/router_internal.h"
#include "slm/json.h"
#include "test_stories.h"

static char g_dir[64];

static void write_file(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/slm-router-test-XXXXXX");
    cr_assert(mkdtemp(g_dir));
    write_file("intent.liquid", "Text: {{ input }}\nIntent:");
    write_file("labels.txt", "# banking intents\ncard_arrival\ncard_linking\n\nexchange_rate\n");
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(router, .init = setup, .fini = teardown);

static const char *GOOD = "# a comment that must survive calibrate\n"
                          "local:\n"
                          "  tiny:\n"
                          "    model: ./stories260K.gguf\n"
                          "    template: intent.liquid\n"
                          "    labels: labels.txt\n"
                          "    parameters: {temperature: 0, num_predict: 16}\n"
                          "  chat:\n"
                          "    model: smollm2:135m\n"
                          "    system: Be brief.\n"
                          "    timeout: 5\n"
                          "upstreams:\n"
                          "  - name: cloud\n"
                          "    base_url: http://127.0.0.1:9/v1\n"
                          "    model: big\n"
                          "    price_in: 0.15\n"
                          "    price_out: 0.6\n"
                          "    max_attempts: 2\n"
                          "  - name: cloud\n"
                          "    base_url: http://127.0.0.1:10/v1\n"
                          "    api_key_env: CLOUD_KEY\n"
                          "  - name: backup\n"
                          "    base_url: http://127.0.0.1:11/v1\n"
                          "routes:\n"
                          "  - name: intent\n"
                          "    local: tiny\n"
                          "    checks:\n"
                          "      label_prob: 0.5\n"
                          "      input_chars: 2000\n"
                          "    escalate: [cloud, backup]\n"
                          "    shadow: 0.1\n"
                          "  - name: answer\n"
                          "    local: chat\n"
                          "    checks:\n"
                          "      token_mean: 0.4\n"
                          "      json: true\n"
                          "      regex: '^\\{'\n"
                          "      liquid: \"output.size > 2\"\n"
                          "      json_schema: {type: object, required: [a]}\n"
                          "    escalate: cloud\n"
                          "meter:\n"
                          "  ledger: ledger.db\n"
                          "  hardware_price: 1200\n"
                          "  power_watts: 30\n"
                          "  kwh_price: 0.3\n";

static int parse(const char *text, struct slm_router_config **cfg, struct slm_err *err) {
    char name[128];
    snprintf(name, sizeof(name), "%s/router.yaml", g_dir);
    return slm_router_config_parse(name, text, strlen(text), NULL, cfg, err);
}

Test(router, good_config_parses) {
    struct slm_router_config *cfg = NULL;
    struct slm_err err = {0};
    cr_assert_eq(parse(GOOD, &cfg, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(cfg->n_locals, 2);
    cr_assert_eq(cfg->n_pools, 2);
    cr_assert_eq(cfg->pools[0].n_members, 2);
    cr_assert_eq(cfg->pools[0].params.max_attempts, 2);
    cr_assert_str_eq(cfg->pools[0].api_key_envs[1], "CLOUD_KEY");
    cr_assert_float_eq(cfg->pools[0].members[0].price_out_per_m, 0.6, 1e-12);
    const struct slm_router_local *t = &cfg->locals[0];
    cr_assert_str_eq(t->name, "tiny");
    cr_assert_eq(t->n_labels, 3);
    cr_assert_str_eq(t->labels[2], "exchange_rate");
    cr_assert(t->score_labels);
    cr_assert(strstr(t->template_path, g_dir) == t->template_path); /* resolved */
    cr_assert(strstr(t->model, g_dir) == t->model);
    cr_assert_str_eq(cfg->locals[1].model, "smollm2:135m"); /* a store name is kept */
    const struct slm_router_route *r = slm_router_config_route(cfg, "intent");
    cr_assert(r);
    cr_assert_float_eq(r->checks.label_prob, 0.5, 1e-12);
    cr_assert_eq(r->checks.input_chars, 2000);
    cr_assert_eq(r->n_escalate, 2);
    cr_assert_eq(r->escalate[1], 1);
    cr_assert(isnan(r->checks.token_mean));
    r = slm_router_config_route(cfg, "answer");
    cr_assert_eq(r->n_escalate, 1);
    cr_assert(r->checks.json);
    cr_assert(r->checks.json_schema);
    cr_assert_float_eq(cfg->meter.cost.hardware_price, 1200, 1e-9);
    cr_assert(strstr(cfg->meter.ledger, "ledger.db"));
    cr_assert_null(slm_router_config_route(cfg, "nope"));
    slm_router_config_free(cfg);
}

/* Replaces the first `from` in GOOD with `to` and expects `msg` in the error. */
static void expect_error(const char *from, const char *to, const char *msg) {
    const char *at = strstr(GOOD, from);
    cr_assert(at, "test bug: '%s' not in GOOD", from);
    struct slm_buf b = {0};
    cr_assert_eq(slm_buf_append(&b, GOOD, (size_t)(at - GOOD)), SLM_OK);
    cr_assert_eq(slm_buf_puts(&b, to), SLM_OK);
    cr_assert_eq(slm_buf_puts(&b, at + strlen(from)), SLM_OK);
    struct slm_router_config *cfg = NULL;
    struct slm_err err = {0};
    cr_assert_neq(parse(b.ptr, &cfg, &err), SLM_OK, "expected an error for '%s'", to);
    cr_assert_null(cfg);
    cr_assert(strstr(err.msg, msg), "error '%s' lacks '%s'", err.msg, msg);
    cr_assert(strstr(err.msg, "router.yaml:"), "error '%s' names no file", err.msg);
    slm_buf_free(&b);
}

Test(router, errors_name_line_and_key) {
    expect_error("label_prob: 0.5", "label_prob: 2",
                 "router.yaml:28: routes[0].checks.label_prob: expected a number between 0 and 1");
    expect_error("label_prob: 0.5", "lable_prob: 0.5",
                 "router.yaml:28: routes[0].checks.lable_prob: unknown key");
    expect_error("escalate: [cloud, backup]", "escalate: [cloud, bakup]",
                 "routes[0].escalate[1]: no upstream named 'bakup'");
    expect_error("local: tiny", "local: tinny", ":26: routes[0].local: no local target named");
    expect_error("template: intent.liquid", "template: missing.liquid",
                 ":5: local.tiny.template: no such file");
    expect_error("regex: '^\\{'", "regex: '('", "routes[1].checks.regex: bad regex");
    expect_error("liquid: \"output.size > 2\"", "liquid: \"output |\"",
                 "routes[1].checks.liquid: not a Liquid condition");
    expect_error("label_prob: 0.5", "token_mean: 0.5",
                 "routes[0].checks.token_mean: needs a generating target");
    expect_error("token_mean: 0.4", "label_prob: 0.4",
                 "routes[1].checks.label_prob: needs a local target with labels");
    expect_error("    api_key_env: CLOUD_KEY\n",
                 "    api_key_env: CLOUD_KEY\n    max_attempts: 3\n",
                 "upstreams[1].max_attempts: differs from an earlier member");
    expect_error("temperature: 0,", "temperature: hot,", ":7: local.tiny.parameters.temperature:");
    expect_error("  - name: answer", "  - name: intent",
                 "routes[1].name: route 'intent' is "
                 "defined twice");
    expect_error("base_url: http://127.0.0.1:11/v1", "base_url: ftp://x",
                 "upstreams[2].base_url: expected an http");
    expect_error("shadow: 0.1", "shadow: 1.5", "routes[0].shadow: expected a number between 0");
    expect_error("meter:", "meters:", ":41: meters: unknown key");
    expect_error("json_schema: {type: object, required: [a]}",
                 "json_schema: {type: object, multipleOf: 2}", "routes[1].checks.json_schema:");
    expect_error("    model: smollm2:135m\n", "", "local.chat.model: required");
}

Test(router, thresholds_include_overrides_and_is_validated) {
    write_file("thresholds.yaml", "# by calibrate\nroutes:\n  intent:\n    label_prob: 0.73\n");
    struct slm_buf b = {0};
    cr_assert_eq(slm_buf_printf(&b, "%sinclude: thresholds.yaml\n", GOOD), SLM_OK);
    struct slm_router_config *cfg = NULL;
    struct slm_err err = {0};
    cr_assert_eq(parse(b.ptr, &cfg, &err), SLM_OK, "%s", err.msg);
    cr_assert_float_eq(slm_router_config_route(cfg, "intent")->checks.label_prob, 0.73, 1e-12);
    cr_assert(strstr(cfg->include_path, "thresholds.yaml"));
    slm_router_config_free(cfg);

    write_file("thresholds.yaml", "routes:\n  intent:\n    label_prob: 0.7\n  nope:\n"
                                  "    label_prob: 0.1\n");
    cr_assert_neq(parse(b.ptr, &cfg, &err), SLM_OK);
    cr_assert(strstr(err.msg, "thresholds.yaml:4: routes.nope: no route named"), "%s", err.msg);
    write_file("thresholds.yaml", "routes:\n  intent:\n    json: true\n");
    cr_assert_neq(parse(b.ptr, &cfg, &err), SLM_OK);
    cr_assert(strstr(err.msg, "thresholds.yaml:3: routes.intent.json: unknown key"), "%s", err.msg);
    slm_buf_free(&b);
}

/* What `slm route calibrate` writes: other routes of the thresholds file stay. */
Test(router, calibration_output) {
    char path[128];
    snprintf(path, sizeof(path), "%s/thresholds.yaml", g_dir);
    write_file("thresholds.yaml", "routes:\n  other:\n    token_mean: 0.5\n");
    struct slm_err err = {0};
    cr_assert_eq(
        slm_router_write_thresholds(path, "intent", "label_prob", 0.625, "by a test", &err), SLM_OK,
        "%s", err.msg);
    struct slm_buf b = {0};
    cr_assert_eq(slm_file_read(path, 0, &b, &err), SLM_OK);
    cr_assert_str_eq(b.ptr, "# by a test\nroutes:\n  \"other\":\n    token_mean: 0.5\n"
                            "  \"intent\":\n    label_prob: 0.625\n");
    slm_buf_free(&b);

    struct slm_calib_point curve[] = {{0.2, 0, 0, 0.7, 0.6, 0},
                                      {0.5, 2, 0.5, 0.9, 0.8, 0.01},
                                      {INFINITY, 4, 1, 0.92, 0.85, 0.02}};
    struct slm_router_calib c = {.key = "label_prob",
                                 .n = 4,
                                 .n_correct = 3,
                                 .auroc = 0.75,
                                 .ece = 0.1,
                                 .cloud_accuracy = 0.92,
                                 .target_accuracy = 0.8,
                                 .confidence = 0.95,
                                 .curve = curve,
                                 .n_curve = 3,
                                 .chosen = curve[1],
                                 .oracle = curve[2],
                                 .reached = true,
                                 .threshold = 0.5};
    cr_assert_eq(slm_router_calib_report(&c, &b), SLM_OK);
    const char *t = slm_buf_cstr(&b);
    cr_assert(strstr(t, "rows 4, local accuracy 75.0%, AUROC 0.750, ECE 0.100"), "%s", t);
    cr_assert(strstr(t, "    0.5000      50.0%      90.0%      80.0%   0.010000\n"), "%s", t);
    cr_assert(strstr(t, "chosen: label_prob 0.5000: escalates 50.0%"), "%s", t);
    cr_assert(!strstr(t, "no threshold reaches"));
    slm_buf_free(&b);
    cr_assert_eq(slm_router_calib_svg(&c, &b), SLM_OK);
    cr_assert(strstr(slm_buf_cstr(&b), "<polyline") && strstr(slm_buf_cstr(&b), "<circle"));
    cr_assert(!strstr(slm_buf_cstr(&b), "inf"), "the escalate-all point is at cost 0.02");
    slm_buf_free(&b);
}

Test(router, json_config_and_top_level_errors) {
    struct slm_router_config *cfg = NULL;
    struct slm_err err = {0};
    cr_assert_neq(parse("[1, 2]", &cfg, &err), SLM_OK);
    cr_assert(strstr(err.msg, "expected a mapping"), "%s", err.msg);
    cr_assert_neq(parse("routes: []\n", &cfg, &err), SLM_OK);
    cr_assert(strstr(err.msg, "local: required"), "%s", err.msg);
    const char *json = "{\"local\": {\"t\": {\"model\": \"x:1\"}},\n"
                       " \"routes\": [{\"name\": \"r\", \"local\": \"t\",\n"
                       "   \"checks\": {\"output_chars_max\": 10}}]}";
    cr_assert_eq(parse(json, &cfg, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(cfg->routes[0].checks.output_chars_max, 10);
    cr_assert(cfg->routes[0].checks.local_error);
    slm_router_config_free(cfg);
}

/* ---------------------------------------------------------------- checks */

static struct slm_router_checks no_checks(void) {
    struct slm_router_checks c;
    memset(&c, 0, sizeof(c));
    c.token_mean = c.token_min = c.token_quantile = NAN;
    c.label_prob = c.label_margin = c.input_nontext = NAN;
    c.token_q = 0.1;
    c.local_error = true;
    return c;
}

static void result_text(struct slm_router_local_result *res, const char *text, float lp, int n) {
    memset(res, 0, sizeof(*res));
    cr_assert_eq(slm_buf_puts(&res->text, text), SLM_OK);
    res->finish = "stop";
    res->n_prompt = 12;
    res->n_gen = n;
    res->logprobs = calloc((size_t)n + 1, sizeof(float));
    for (int i = 0; i < n; i++) {
        res->logprobs[i] = lp;
    }
}

static int run_checks(const struct slm_router_checks *c, const struct slm_router_local *t,
                      const struct slm_router_local_result *res, char *reason_out) {
    json_t *checks = json_object();
    struct slm_buf reason = {0};
    int failed = slm__checks_output(c, t, res, "the input", checks, &reason);
    snprintf(reason_out, 256, "%s", slm_buf_cstr(&reason));
    json_decref(checks);
    slm_buf_free(&reason);
    return failed;
}

Test(router, token_confidence_checks) {
    struct slm_router_local t = {0};
    struct slm_router_checks c = no_checks();
    c.token_mean = 0.5;
    struct slm_router_local_result res;
    char reason[256];
    result_text(&res, "hello", logf(0.9f), 4);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 0, "%s", reason);
    slm_router_local_result_free(&res);
    result_text(&res, "hello", logf(0.3f), 4);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "token_mean<0.5");
    slm_router_local_result_free(&res);
    result_text(&res, "", 0, 0); /* no tokens: no evidence of confidence */
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    slm_router_local_result_free(&res);
}

Test(router, output_checks) {
    char *labels[] = {"yes", "no"};
    struct slm_router_local t = {0};
    t.labels = labels;
    t.n_labels = 2;
    struct slm_router_checks c = no_checks();
    c.json = true;
    struct slm_router_local_result res;
    char reason[256];
    result_text(&res, " {\"a\": 1} ", 0, 3);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 0, "%s", reason);
    slm_router_local_result_free(&res);
    result_text(&res, "{\"a\": ", 0, 3);
    res.finish = "length";
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "json:incomplete");
    slm_router_local_result_free(&res);

    c = no_checks();
    c.json_schema = json_pack("{s:s, s:[s]}", "type", "object", "required", "a");
    result_text(&res, "{\"b\": 1}", 0, 3);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "json_schema");
    slm_router_local_result_free(&res);
    json_decref(c.json_schema);

    c = no_checks();
    c.regex = "^[a-z]+$";
    c.in_labels = true;
    c.output_chars_max = 3;
    result_text(&res, "Maybe!", 0, 2);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 3);
    cr_assert_str_eq(reason, "regex,in_labels,output_chars_max>3");
    slm_router_local_result_free(&res);
    result_text(&res, "yes", 0, 2);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 0, "%s", reason);
    slm_router_local_result_free(&res);

    c = no_checks();
    c.liquid = "json.score >= 3 and input contains 'input'";
    result_text(&res, "{\"score\": 4}", 0, 2);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 0, "%s", reason);
    slm_router_local_result_free(&res);
    result_text(&res, "{\"score\": 2}", 0, 2);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "liquid");
    slm_router_local_result_free(&res);

    c = no_checks();
    c.output_tokens_min = 5;
    c.input_tokens = 10;
    result_text(&res, "x", 0, 2);
    cr_assert_eq(run_checks(&c, &t, &res, reason), 2);
    cr_assert_str_eq(reason, "input_tokens>10,output_tokens<5");
    slm_router_local_result_free(&res);
}

Test(router, label_and_local_error_checks) {
    char *labels[] = {"a", "b"};
    struct slm_router_local t = {0};
    t.labels = labels;
    t.n_labels = 2;
    t.score_labels = true;
    struct slm_router_checks c = no_checks();
    c.label_prob = 0.62;
    c.label_margin = 0.2;
    struct slm_router_local_result res;
    char reason[256];
    result_text(&res, "a", 0, 1);
    res.has_label = true;
    res.label_prob = 0.55;
    res.label_margin = 0.3;
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "label_prob<0.62");
    res.status = SLM_E_OVERFLOW;
    snprintf(res.error, sizeof(res.error), "prompt too long");
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "local_error:overflow");
    res.status = SLM_E_TIMEOUT;
    cr_assert_eq(run_checks(&c, &t, &res, reason), 1);
    cr_assert_str_eq(reason, "local_error:timeout");
    slm_router_local_result_free(&res);
}

Test(router, input_checks) {
    struct slm_router_checks c = no_checks();
    c.input_chars = 10;
    c.input_nontext = 0.1;
    c.input_line = 5;
    struct slm_input_signals in;
    const char *ok = "abc\nde";
    slm_signal_input(ok, strlen(ok), &in);
    json_t *checks = json_object();
    struct slm_buf reason = {0};
    cr_assert_eq(slm__checks_input(&c, &in, checks, &reason), 0, "%s", slm_buf_cstr(&reason));
    const char *bad = "\x01\x02\x03 abcdefgh";
    slm_signal_input(bad, strlen(bad), &in);
    cr_assert_eq(slm__checks_input(&c, &in, checks, &reason), 3);
    cr_assert_str_eq(slm_buf_cstr(&reason), "input_chars>10,input_nontext>0.1,input_line>5");
    cr_assert(json_is_false(json_object_get(json_object_get(checks, "input_chars"), "pass")));
    json_decref(checks);
    slm_buf_free(&reason);
}

Test(router, answers_agree) {
    cr_assert(slm__answers_agree(" Card_Arrival.\n", "card_arrival"));
    cr_assert_not(slm__answers_agree("card_arrival", "card_linking"));
}

/* ---------------------------------------------------------------- concurrency */

#include <pthread.h>

#include "slm/ledger.h"

struct chat_thread {
    struct slm_router *r;
    const char *route;
    int n;
    char first[256];
    int failures, mismatches;
};

static void *chat_main(void *arg) {
    struct chat_thread *t = arg;
    for (int i = 0; i < t->n; i++) {
        json_t *req = json_pack("{s:s, s:[{s:s, s:s}], s:f}", "model", t->route, "messages", "role",
                                "user", "content", "Once upon a time", "temperature", 0.0);
        json_t *resp = NULL;
        struct slm_router_info info;
        struct slm_err err = {0};
        if (slm_router_chat(t->r, req, NULL, &resp, &info, &err) != SLM_OK ||
            strcmp(info.route, "local") != 0 || !json_object_get(resp, "slm")) {
            t->failures++;
        } else {
            const char *text = json_string_value(json_object_get(
                json_object_get(json_array_get(json_object_get(resp, "choices"), 0), "message"),
                "content"));
            if (i == 0) {
                snprintf(t->first, sizeof(t->first), "%s", text ? text : "");
            } else if (!text || strcmp(text, t->first) != 0) {
                t->mismatches++;
            }
        }
        json_decref(resp);
        json_decref(req);
    }
    return NULL;
}

/* Many threads call slm_router_chat at once (as the server's HTTP threads do): every call
 * answers, greedy answers agree, and the ledger has one row per call. */
Test(router, concurrent_chat_is_safe) {
    char model[512];
    test_model_path(model, sizeof(model));
    setenv("SLM_HOME", g_dir, 1);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "local:\n"
             "  gen: {model: %s, template: intent.liquid, parameters: {num_predict: 6}}\n"
             "  lab: {model: %s, template: intent.liquid, labels: labels.txt}\n"
             "routes:\n"
             "  - {name: gen, local: gen, checks: {output_tokens_max: 100}}\n"
             "  - {name: lab, local: lab}\n"
             "meter: {ledger: ledger.db}\n",
             model, model);
    write_file("router.yaml", yaml);
    char path[256];
    snprintf(path, sizeof(path), "%s/router.yaml", g_dir);
    struct slm_router_params p = slm_router_params_default();
    p.n_threads = 1;
    struct slm_router *r = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_router_load(path, &p, &r, &err), SLM_OK, "%s", err.msg);
    enum { N_THREADS = 6, N_EACH = 3 };
    struct chat_thread t[N_THREADS];
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].r = r;
        t[i].route = i % 2 ? "lab" : "gen";
        t[i].n = N_EACH;
        cr_assert_eq(pthread_create(&th[i], NULL, chat_main, &t[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(t[i].failures, 0, "thread %d: %d failures", i, t[i].failures);
        cr_assert_eq(t[i].mismatches, 0, "thread %d: answers differ", i);
        cr_assert_str_eq(t[i].first, t[i % 2].first, "greedy answers agree across threads");
    }
    struct slm_err e2 = {0};
    json_t *bad = json_pack("{s:s, s:[{s:s, s:s}]}", "model", "nope", "messages", "role", "user",
                            "content", "x");
    json_t *resp = NULL;
    cr_assert_eq(slm_router_chat(r, bad, NULL, &resp, NULL, &e2), SLM_E_NOT_FOUND);
    cr_assert(strstr(e2.msg, "routes: gen, lab"), "%s", e2.msg);
    json_decref(bad);
    slm_router_free(r);
    char db[256];
    snprintf(db, sizeof(db), "%s/ledger.db", g_dir);
    struct slm_ledger *l = NULL;
    cr_assert_eq(slm_ledger_open(db, &l, &err), SLM_OK, "%s", err.msg);
    int64_t rows = 0;
    cr_assert_eq(slm_ledger_count(l, &rows, &err), SLM_OK);
    cr_assert_eq(rows, N_THREADS * N_EACH);
    slm_ledger_close(l);
}

/* ---------------------------------------------------------------- shadows */

#include <netinet/in.h>
#include <sys/socket.h>

/* A loopback upstream that takes connections (the kernel's backlog) and never answers. */
static int hanging_upstream(unsigned *port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s, 64), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return s;
}

static int64_t ledger_rows(const char *where) {
    char db[256];
    snprintf(db, sizeof(db), "%s/ledger.db", g_dir);
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_ledger_open(db, &l, &err), SLM_OK, "%s", err.msg);
    struct slm_cost_query q = {.by = SLM_COST_BY_ROUTE};
    struct slm_cost_report rep;
    cr_assert_eq(slm_cost_report(l, &q, NULL, &rep, &err), SLM_OK, "%s", err.msg);
    int64_t n = strcmp(where, "shadowed") == 0 ? rep.total.shadowed : rep.total.requests;
    slm_cost_report_free(&rep);
    slm_ledger_close(l);
    return n;
}

/* Every answer shadowed to an upstream that never answers: each row is in the ledger when
 * the call returns; only max_shadows calls are in flight, the rest are skipped and counted;
 * slm_router_shutdown() cancels them, so slm_router_free() does not wait on them. */
Test(router, shadows_are_capped_and_never_hold_back_rows) {
    char model[512];
    test_model_path(model, sizeof(model));
    setenv("SLM_HOME", g_dir, 1);
    unsigned port = 0;
    int hang = hanging_upstream(&port);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "local:\n"
             "  gen: {model: %s, template: intent.liquid, parameters: {num_predict: 2}}\n"
             "upstreams:\n"
             "  - {name: hang, base_url: 'http://127.0.0.1:%u/v1', timeout: 600}\n"
             "routes:\n"
             "  - {name: s, local: gen, escalate: [hang], shadow: 1.0}\n"
             "meter: {ledger: ledger.db}\n",
             model, port);
    write_file("router.yaml", yaml);
    char path[256];
    snprintf(path, sizeof(path), "%s/router.yaml", g_dir);
    struct slm_router_params p = slm_router_params_default();
    p.n_threads = 1;
    p.max_shadows = 2;
    struct slm_router *r = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_router_load(path, &p, &r, &err), SLM_OK, "%s", err.msg);
    for (int i = 0; i < 5; i++) {
        json_t *req = json_pack("{s:s, s:[{s:s, s:s}]}", "model", "s", "messages", "role", "user",
                                "content", "Once upon a time");
        json_t *resp = NULL;
        struct slm_router_info info;
        cr_assert_eq(slm_router_chat(r, req, NULL, &resp, &info, &err), SLM_OK, "%s", err.msg);
        cr_assert_str_eq(info.route, "local");
        json_decref(resp);
        json_decref(req);
        cr_assert_eq(ledger_rows("requests"), i + 1, "the row is committed with the answer");
    }
    struct slm_router_stats st;
    slm_router_stats(r, &st);
    cr_expect_eq(st.shadows_started, 2);
    cr_expect_eq(st.shadows_skipped, 3);
    cr_expect_eq(st.shadows_running, 2);
    slm_router_shutdown(r);
    slm_router_free(r);
    close(hang);
    cr_assert_eq(ledger_rows("requests"), 5);
    cr_assert_eq(ledger_rows("shadowed"), 0, "a cancelled shadow gives no verdict");
}
