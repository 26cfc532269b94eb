/*
 * fuzz_router_checks.c - libFuzzer harness for the router's request path
 * without network or model: the client's chat request as the router reads
 * it (slm__req_view_init, slm__message_text), the input signals and checks,
 * and every output check (JSON, JSON Schema, regex, labels, Liquid, sizes,
 * token and label confidence) on an answer, as slm_router_chat runs them.
 *
 * Input: byte 0 picks one of four check sets and the local result's shape
 * (status, finish reason, label route); the rest is the request body, then a
 * NUL, then the local model's answer (whose bytes also make the token
 * log-probs). Invariants: a request view has a model, a non-empty messages
 * array and an input; input signals are consistent counts; the number of
 * failed checks is the number recorded with "pass": false, the reason is
 * empty exactly when none failed; the json and in_labels checks agree with
 * a direct parse and comparison; token confidence is a probability with
 * min <= quantile; answer agreement is reflexive and symmetric.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_internal.h"
#include "slm/json.h"
#include "slm/signals.h"

#define N_SETS 4

static struct slm_router_checks sets[N_SETS];
static struct slm_router_local targets[N_SETS];
static char *labels[] = {"yes", "no", "maybe"};

static struct slm_router_checks checks_off(void) {
    struct slm_router_checks c;
    memset(&c, 0, sizeof(c));
    c.token_mean = c.token_min = c.token_quantile = c.label_prob = c.label_margin = NAN;
    c.input_nontext = NAN;
    c.token_q = 0.1;
    c.local_error = true;
    return c;
}

static void setup(void) {
    const char *schema = "{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\","
                         "\"maxLength\":40},\"score\":{\"type\":\"number\",\"minimum\":0,"
                         "\"maximum\":1},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\","
                         "\"b\"]}}},\"required\":[\"answer\"],\"additionalProperties\":false}";
    for (int i = 0; i < N_SETS; i++) {
        sets[i] = checks_off();
        targets[i].name = "local";
        targets[i].labels = labels;
        targets[i].n_labels = 3;
    }
    /* 0: structured output and input limits */
    sets[0].json = true;
    if (slm_json_parse(schema, strlen(schema), "schema", &sets[0].json_schema, NULL) != SLM_OK) {
        abort();
    }
    sets[0].input_chars = 200;
    sets[0].input_nontext = 0.1;
    sets[0].input_line = 80;
    sets[0].input_tokens = 50;
    sets[0].output_chars_max = 300;
    /* 1: free text: regex, labels, Liquid, token confidence */
    sets[1].regex = "^(yes|no)\\b";
    sets[1].in_labels = true;
    sets[1].liquid = "output contains 'yes' or input.size > 10";
    sets[1].token_mean = 0.5;
    sets[1].token_min = 0.01;
    sets[1].token_quantile = 0.2;
    sets[1].output_chars_min = 2;
    sets[1].output_tokens_max = 20;
    /* 2: a label route */
    targets[2].score_labels = true;
    sets[2].label_prob = 0.6;
    sets[2].label_margin = 0.2;
    sets[2].in_labels = true;
    sets[2].liquid = "label == 'yes' and json == nil";
    /* 3: everything, with a pattern that backtracks */
    sets[3] = sets[0];
    sets[3].regex = "^(a+)+$";
    sets[3].liquid = "json.answer.size > 0 and output.size < 100";
    sets[3].in_labels = true;
    sets[3].output_tokens_min = 3;
    sets[3].token_mean = 0.9;
}

static void check_signals(const char *text, size_t len) {
    struct slm_input_signals s;
    slm_signal_input(text, len, &s);
    if (s.n_bytes != len || s.n_chars > len || s.n_nontext > s.n_chars || s.max_line > s.n_chars ||
        s.n_lines > s.n_chars || !(s.nontext_share >= 0 && s.nontext_share <= 1)) {
        abort();
    }
}

/* failed == the checks recorded with "pass": false; reason empty iff none. */
static void check_record(const json_t *checks, int failed, const struct slm_buf *reason) {
    int n = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)checks, k, v) {
        const json_t *pass = json_object_get(v, "pass");
        if (!json_is_boolean(pass)) {
            abort();
        }
        n += json_is_false(pass);
    }
    if (n != failed || (failed == 0) != (reason->len == 0)) {
        abort();
    }
}

static void check_answer(int set, const uint8_t flags, const char *input, const char *answer,
                         size_t len) {
    const struct slm_router_checks *c = &sets[set];
    const struct slm_router_local *t = &targets[set];
    struct slm_router_local_result res;
    memset(&res, 0, sizeof(res));
    slm_buf_init(&res.text, (size_t)1 << 20);
    if (slm_buf_append(&res.text, answer, len) != SLM_OK) {
        abort();
    }
    res.status = (flags & 0x10) ? SLM_E_TIMEOUT : SLM_OK;
    res.finish = (flags & 0x20) ? "length" : "stop";
    res.n_prompt = (int64_t)(flags & 0x40 ? 100 : 10);
    res.n_gen = (int64_t)(len < 64 ? len : 64);
    res.logprobs = malloc(((size_t)res.n_gen + 1) * sizeof(float));
    if (!res.logprobs) {
        abort();
    }
    for (int64_t i = 0; i < res.n_gen; i++) {
        res.logprobs[i] = -(float)(uint8_t)answer[i] / 16.0f;
    }
    slm_signal_token_conf(res.logprobs, (size_t)res.n_gen, c->token_q, &res.tok);
    /* (the mean of equal values may round an ulp below them) */
    if (res.n_gen > 0 &&
        !(res.tok.min_prob >= 0 && res.tok.min_prob <= res.tok.q_prob && res.tok.q_prob <= 1 &&
          res.tok.mean_prob >= res.tok.min_prob * (1 - 1e-12) && res.tok.mean_prob <= 1 + 1e-12)) {
        abort();
    }
    res.has_label = t->score_labels;
    res.label_prob = (double)(flags & 0x0f) / 15.0;
    res.label_margin = res.label_prob / 2;
    json_t *checks = json_object();
    struct slm_buf reason;
    slm_buf_init(&reason, 4096);
    int failed = slm__checks_output(c, t, &res, input, checks, &reason);
    check_record(checks, failed, &reason);
    struct slm_str trimmed = slm_str_trim(slm_str_n(answer, len));
    const json_t *jc = json_object_get(checks, "json");
    if (jc) {
        json_t *doc = NULL;
        bool parses = slm_json_parse(trimmed.ptr, trimmed.len, "output", &doc, NULL) == SLM_OK;
        json_decref(doc);
        if (json_is_true(json_object_get(jc, "pass")) != parses) {
            abort();
        }
    }
    if (json_is_true(json_object_get(json_object_get(checks, "in_labels"), "pass"))) {
        bool found = false;
        for (size_t i = 0; i < t->n_labels; i++) {
            found |= slm_str_eq_c(trimmed, t->labels[i]);
        }
        if (!found) {
            abort();
        }
    }
    json_decref(checks);
    slm_buf_free(&reason);
    slm_router_local_result_free(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!sets[0].json_schema) {
        setup();
        slm_log_set_level(SLM_LOG_ERROR);
    }
    if (size < 1 || size > 65536) {
        return 0;
    }
    int set = data[0] % N_SETS;
    const char *body = (const char *)data + 1;
    const char *nul = memchr(body, '\0', size - 1);
    size_t body_len = nul ? (size_t)(nul - body) : size - 1;
    const char *answer = nul ? nul + 1 : "";
    size_t answer_len = nul ? size - 1 - body_len - 1 : 0;

    json_t *request = NULL;
    struct slm__req_view rv;
    const char *input = "";
    bool have_view = false;
    if (slm_json_parse(body, body_len, "request", &request, NULL) == SLM_OK) {
        struct slm_err err = {0};
        if (slm__req_view_init(request, &rv, &err) == SLM_OK) {
            if (!rv.model || !rv.input || !json_is_array(rv.messages) ||
                json_array_size(rv.messages) == 0) {
                abort();
            }
            have_view = true;
            input = rv.input;
            check_signals(rv.input, strlen(rv.input));
            struct slm_input_signals in;
            slm_signal_input(rv.input, strlen(rv.input), &in);
            json_t *checks = json_object();
            struct slm_buf reason;
            slm_buf_init(&reason, 4096);
            int failed = slm__checks_input(&sets[set], &in, checks, &reason);
            check_record(checks, failed, &reason);
            json_decref(checks);
            slm_buf_free(&reason);
        } else if (err.msg[0] == '\0') {
            abort();
        }
    }
    check_signals(body, body_len);
    check_answer(set, data[0], input, answer, answer_len);

    char *a = strndup(answer, answer_len);
    if (a) {
        if (!slm__answers_agree(a, a) ||
            slm__answers_agree(a, input) != slm__answers_agree(input, a)) {
            abort();
        }
        free(a);
    }
    if (have_view) {
        slm__req_view_free(&rv);
    }
    json_decref(request);
    return 0;
}
