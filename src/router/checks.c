/*
 * checks.c - the router's checks over the input and the local answer.
 *
 * Every check that runs is recorded in the response's "slm.checks" object
 * ({"value", "threshold", "pass"}), and every failed one adds a short token
 * to the reason ("label_prob<0.62", "json", "local_error:timeout") that the
 * x-slm-reason header and the ledger carry.
 */
#include "router_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "slm/grammar.h"
#include "slm/json.h"
#include "slm/liquid.h"

#define REGEX_MATCH_LIMIT 1000000

static void add_reason(struct slm_buf *reason, const char *fmt, ...) SLM_PRINTF(2, 3);

static void add_reason(struct slm_buf *reason, const char *fmt, ...) {
    if (reason->len > 0 && slm_buf_putc(reason, ',') != SLM_OK) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (slm_buf_vprintf(reason, fmt, ap) != SLM_OK) {
        /* the reason buffer is capped: a very long list keeps what fits */
    }
    va_end(ap);
}

static void record(json_t *checks, const char *name, json_t *value, json_t *threshold, bool pass,
                   const char *detail) {
    json_t *o = json_object();
    if (!o) {
        json_decref(value);
        json_decref(threshold);
        return;
    }
    json_object_set_new(o, "value", value ? value : json_null());
    if (threshold) {
        json_object_set_new(o, "threshold", threshold);
    }
    json_object_set_new(o, "pass", json_boolean(pass));
    if (detail && detail[0]) {
        json_object_set_new(o, "detail", json_string(detail));
    }
    json_object_set_new(checks, name, o);
}

/* value >= threshold passes (NaN fails: no evidence is not confidence). */
static int at_least(json_t *checks, struct slm_buf *reason, const char *name, double value,
                    double threshold) {
    if (isnan(threshold)) {
        return 0;
    }
    bool pass = !isnan(value) && value >= threshold;
    record(checks, name, isnan(value) ? json_null() : json_real(value), json_real(threshold), pass,
           NULL);
    if (!pass) {
        add_reason(reason, "%s<%g", name, threshold);
    }
    return !pass;
}

static int at_most(json_t *checks, struct slm_buf *reason, const char *name, double value,
                   double limit, bool integer) {
    bool pass = value <= limit;
    record(checks, name, integer ? json_integer((json_int_t)value) : json_real(value),
           integer ? json_integer((json_int_t)limit) : json_real(limit), pass, NULL);
    if (!pass) {
        add_reason(reason, "%s>%g", name, limit);
    }
    return !pass;
}

int slm__checks_input(const struct slm_router_checks *c, const struct slm_input_signals *in,
                      json_t *checks, struct slm_buf *reason) {
    int failed = 0;
    if (c->input_chars > 0) {
        failed += at_most(checks, reason, "input_chars", (double)in->n_chars,
                          (double)c->input_chars, true);
    }
    if (!isnan(c->input_nontext)) {
        failed +=
            at_most(checks, reason, "input_nontext", in->nontext_share, c->input_nontext, false);
    }
    if (c->input_line > 0) {
        failed += at_most(checks, reason, "input_line", (double)in->max_line, (double)c->input_line,
                          true);
    }
    return failed;
}

static int check_regex(const char *pattern, const char *text, size_t len, char *detail,
                       size_t cap) {
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ecode, &eoff, NULL);
    if (!re) {
        snprintf(detail, cap, "the pattern does not compile");
        return 0;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    int rc = -1;
    if (md && mc) {
        pcre2_set_match_limit(mc, REGEX_MATCH_LIMIT);
        /* invalid UTF-8 from a model is a non-match, never undefined behaviour */
        rc = slm_utf8_valid(text, len) ? pcre2_match(re, (PCRE2_SPTR)text, len, 0, 0, md, mc)
                                       : PCRE2_ERROR_BADUTFOFFSET;
    }
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        snprintf(detail, cap, "match failed (%d)", rc);
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static bool check_liquid(const char *expr, const char *text, const char *input,
                         const json_t *parsed, const char *label, char *detail, size_t cap) {
    struct slm_buf src = {0}, out = {0};
    struct slm_err err = {0};
    json_t *vars = json_pack("{s:s, s:s, s:O?, s:s?}", "output", text, "input", input, "json",
                             parsed, "label", label);
    int rc = vars ? slm_buf_printf(&src, "{%% if %s %%}1{%% endif %%}", expr) : SLM_E_NOMEM;
    if (rc == SLM_OK) {
        rc = slm_liquid_render_string(src.ptr, src.len, vars, NULL, &out, &err);
    }
    bool pass = rc == SLM_OK && out.len == 1 && out.ptr[0] == '1';
    if (rc != SLM_OK) {
        snprintf(detail, cap, "%s", err.msg);
    }
    json_decref(vars);
    slm_buf_free(&src);
    slm_buf_free(&out);
    return pass;
}

static int output_checks(const struct slm_router_checks *c, const struct slm_router_local *t,
                         const struct slm_router_local_result *res, const char *input,
                         json_t *checks, struct slm_buf *reason) {
    int failed = 0;
    const char *text = slm_buf_cstr(&res->text);
    size_t len = res->text.len;
    bool truncated = res->finish && strcmp(res->finish, "length") == 0;
    char detail[256] = "";
    json_t *parsed = NULL;
    struct slm_err jerr = {0};
    struct slm_str trimmed = slm_str_trim(slm_str_n(text, len));
    if (c->json || c->json_schema || c->liquid) {
        if (slm_json_parse(trimmed.ptr, trimmed.len, "output", &parsed, &jerr) != SLM_OK) {
            parsed = NULL;
        }
    }
    if (c->json) {
        bool pass = parsed != NULL;
        record(checks, "json", json_boolean(pass), NULL, pass,
               pass ? NULL : (truncated ? "the output was cut at max_tokens" : jerr.msg));
        if (!pass) {
            add_reason(reason, truncated ? "json:incomplete" : "json");
            failed++;
        }
    }
    if (c->json_schema) {
        struct slm_err serr = {0};
        int rc =
            slm_json_output_check(c->json_schema, trimmed.ptr, trimmed.len, truncated, NULL, &serr);
        if (rc == SLM_E_INVALID && json_is_object(parsed) == false && parsed &&
            slm_json_schema_validate(c->json_schema, parsed, &serr) == SLM_OK) {
            rc = SLM_OK; /* a schema for a non-object value */
        }
        record(checks, "json_schema", json_boolean(rc == SLM_OK), NULL, rc == SLM_OK, serr.msg);
        if (rc != SLM_OK) {
            add_reason(reason, rc == SLM_E_INCOMPLETE ? "json_schema:incomplete" : "json_schema");
            failed++;
        }
    }
    if (c->regex) {
        detail[0] = '\0';
        bool pass = check_regex(c->regex, text, len, detail, sizeof(detail));
        record(checks, "regex", json_boolean(pass), json_string(c->regex), pass, detail);
        if (!pass) {
            add_reason(reason, "regex");
            failed++;
        }
    }
    if (c->in_labels) {
        bool pass = false;
        for (size_t i = 0; i < t->n_labels && !pass; i++) {
            pass = slm_str_eq_c(trimmed, t->labels[i]);
        }
        record(checks, "in_labels", json_boolean(pass), NULL, pass, NULL);
        if (!pass) {
            add_reason(reason, "in_labels");
            failed++;
        }
    }
    if (c->liquid) {
        detail[0] = '\0';
        bool pass = check_liquid(c->liquid, text, input, parsed, res->has_label ? text : NULL,
                                 detail, sizeof(detail));
        record(checks, "liquid", json_boolean(pass), json_string(c->liquid), pass, detail);
        if (!pass) {
            add_reason(reason, "liquid");
            failed++;
        }
    }
    json_decref(parsed);
    struct slm_input_signals os;
    slm_signal_input(text, len, &os);
    if (c->output_chars_min > 0) {
        bool pass = (int64_t)os.n_chars >= c->output_chars_min;
        record(checks, "output_chars_min", json_integer((json_int_t)os.n_chars),
               json_integer(c->output_chars_min), pass, NULL);
        if (!pass) {
            add_reason(reason, "output_chars<%lld", (long long)c->output_chars_min);
            failed++;
        }
    }
    if (c->output_chars_max > 0) {
        failed += at_most(checks, reason, "output_chars_max", (double)os.n_chars,
                          (double)c->output_chars_max, true);
    }
    if (c->output_tokens_min > 0) {
        bool pass = res->n_gen >= c->output_tokens_min;
        record(checks, "output_tokens_min", json_integer(res->n_gen),
               json_integer(c->output_tokens_min), pass, NULL);
        if (!pass) {
            add_reason(reason, "output_tokens<%lld", (long long)c->output_tokens_min);
            failed++;
        }
    }
    if (c->output_tokens_max > 0) {
        failed += at_most(checks, reason, "output_tokens_max", (double)res->n_gen,
                          (double)c->output_tokens_max, true);
    }
    return failed;
}

int slm__checks_output(const struct slm_router_checks *c, const struct slm_router_local *t,
                       const struct slm_router_local_result *res, const char *input, json_t *checks,
                       struct slm_buf *reason) {
    int failed = 0;
    if (c->input_tokens > 0 && res->n_prompt > 0) {
        failed += at_most(checks, reason, "input_tokens", (double)res->n_prompt,
                          (double)c->input_tokens, true);
    }
    if (res->status != SLM_OK) {
        const char *kind = res->status == SLM_E_OVERFLOW  ? "overflow"
                           : res->status == SLM_E_TIMEOUT ? "timeout"
                                                          : "error";
        record(checks, "local_error", json_string(kind), NULL, false, res->error);
        add_reason(reason, "local_error:%s", kind);
        return failed + 1; /* nothing else can be judged without an answer */
    }
    if (!t->score_labels) {
        struct slm_token_conf tc;
        slm_signal_token_conf(res->logprobs, (size_t)res->n_gen, c->token_q, &tc);
        failed += at_least(checks, reason, "token_mean", tc.mean_prob, c->token_mean);
        failed += at_least(checks, reason, "token_min", tc.min_prob, c->token_min);
        failed += at_least(checks, reason, "token_quantile", tc.q_prob, c->token_quantile);
    } else {
        failed += at_least(checks, reason, "label_prob", res->label_prob, c->label_prob);
        failed += at_least(checks, reason, "label_margin", res->label_margin, c->label_margin);
    }
    return failed + output_checks(c, t, res, input, checks, reason);
}

bool slm__answers_agree(const char *a, const char *b) {
    struct slm_str x = slm_str_trim(slm_str_c(a)), y = slm_str_trim(slm_str_c(b));
    while (x.len > 0 && x.ptr[x.len - 1] == '.') {
        x.len--;
    }
    while (y.len > 0 && y.ptr[y.len - 1] == '.') {
        y.len--;
    }
    return slm_str_eq_nocase(x, y);
}
