/*
 * metrics.c - what one answer scored: exact text, JSON (valid, schema-valid,
 * per-field counts for precision/recall/F1) and regex matches. Pure functions
 * of the answer and the expected value; the statistics over rows are in
 * stats.c, the aggregation per candidate in score.c.
 */
#include "slm/eval.h"

#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "slm/grammar.h"
#include "slm/json.h"

bool slm_eval_exact(const char *answer, const char *expected, bool ignore_case) {
    struct slm_str a = slm_str_trim(slm_str_c(answer));
    struct slm_str e = slm_str_trim(slm_str_c(expected));
    return ignore_case ? slm_str_eq_nocase(a, e) : slm_str_eq(a, e);
}

/* The answer's JSON: the whole text, else the text inside a ```json fence. */
static json_t *parse_answer(const char *answer) {
    struct slm_str t = slm_str_trim(slm_str_c(answer));
    json_t *v = json_loadb(t.ptr, t.len, JSON_DECODE_ANY, NULL);
    if (v || !slm_str_starts_with(t, slm_str_c("```"))) {
        return v;
    }
    size_t nl = slm_str_find_char(t, '\n', 0);
    size_t end = slm_str_find(t, slm_str_c("```"), 3);
    if (nl == SIZE_MAX || end == SIZE_MAX || end <= nl) {
        return NULL;
    }
    return json_loadb(t.ptr + nl + 1, end - nl - 1, JSON_DECODE_ANY, NULL);
}

void slm_eval_json(const char *answer, const char *expected, const json_t *schema,
                   struct slm_eval_json_score *out) {
    memset(out, 0, sizeof(*out));
    json_t *want = expected ? json_loads(expected, JSON_DECODE_ANY, NULL) : NULL;
    json_t *got = answer ? parse_answer(answer) : NULL;
    out->n_expected = json_is_object(want) ? json_object_size(want) : (want ? 1 : 0);
    if (got) {
        out->valid = true;
        out->schema_valid = !schema || slm_json_schema_validate(schema, got, NULL) == SLM_OK;
        out->exact = want && json_equal(got, want);
        out->n_pred = json_is_object(got) ? json_object_size(got) : 1;
        if (json_is_object(got) && json_is_object(want)) {
            const char *k;
            json_t *val;
            json_object_foreach(got, k, val) {
                const json_t *w = json_object_get(want, k);
                out->tp += w && json_equal(w, val);
            }
        } else {
            out->tp = out->exact;
        }
    }
    json_decref(want);
    json_decref(got);
}

int slm_eval_regex(const char *pattern, bool ignore_case, const char *answer, struct slm_err *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | (ignore_case ? PCRE2_CASELESS : 0), &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return slm_err_set(err, SLM_E_INVALID, "bad pattern at offset %zu: %s", (size_t)off,
                           (const char *)msg);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)answer, strlen(answer), 0, 0, md, NULL)
                : PCRE2_ERROR_NOMEMORY;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (rc == PCRE2_ERROR_NOMEMORY) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return rc >= 0 ? 1 : 0;
}
