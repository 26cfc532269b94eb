/*
 * test_liquid_cases.c - data-driven Liquid cases from tests/data/liquid/cases/
 * (one JSON file per topic; a regression is a new case). Each case:
 *
 *   name, template              required
 *   data                        variables (default: the file's "data", else none)
 *   partials                    name -> source for include/render
 *   mode                        "strict" (default), "warn" or "lax"
 *   now                         unix seconds for the date filter's "now"
 *   result | result_prefix      expected output (exact, or how it starts)
 *   error                       a substring of the expected error message
 *   invalid: true               any parse or render error
 *   warnings                    substrings of expected warnings (warn mode)
 *
 * Templates are named "case" in error messages.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm/json.h"
#include "slm/liquid.h"

static int run_case(const json_t *file, const json_t *tc, char *why, size_t cap) {
    struct slm_liquid_params p = slm_liquid_params_default();
    const char *mode = json_string_value(json_object_get(tc, "mode"));
    if (mode && strcmp(mode, "warn") == 0) {
        p.mode = SLM_LIQUID_WARN;
    } else if (mode && strcmp(mode, "lax") == 0) {
        p.mode = SLM_LIQUID_LAX;
    }
    p.partials = json_object_get(tc, "partials");
    p.now = json_integer_value(json_object_get(tc, "now"));
    json_t *data = json_object_get(tc, "data");
    if (!data) {
        data = json_object_get(file, "data");
    }
    const char *src = json_string_value(json_object_get(tc, "template"));
    struct slm_liquid_template *t = NULL;
    struct slm_err err;
    slm_err_clear(&err);
    struct slm_buf out;
    slm_buf_init(&out, 0);
    int rc = slm_liquid_parse("case", src, strlen(src), &p, &t, &err);
    int failed = 0;
    json_t *warns = json_object_get(tc, "warnings");
    if (rc == SLM_OK && warns) {
        size_t i;
        json_t *w;
        json_array_foreach(warns, i, w) {
            bool found = false;
            for (size_t k = 0; k < slm_liquid_warning_count(t); k++) {
                found = found || strstr(slm_liquid_warning(t, k), json_string_value(w));
            }
            if (!found) {
                snprintf(why, cap, "missing warning '%s' (%zu warnings)", json_string_value(w),
                         slm_liquid_warning_count(t));
                failed = 1;
            }
        }
    }
    if (rc == SLM_OK) {
        rc = slm_liquid_render(t, data, &out, &err);
    }
    slm_liquid_free(t);
    const char *want_err = json_string_value(json_object_get(tc, "error"));
    bool invalid = json_is_true(json_object_get(tc, "invalid"));
    const char *result = json_string_value(json_object_get(tc, "result"));
    const char *prefix = json_string_value(json_object_get(tc, "result_prefix"));
    if (failed) {
        /* why is set */
    } else if (want_err || invalid) {
        if (rc == SLM_OK) {
            snprintf(why, cap, "expected an error, got output '%s'", slm_buf_cstr(&out));
            failed = 1;
        } else if (want_err && !strstr(err.msg, want_err)) {
            snprintf(why, cap, "error '%s' does not contain '%s'", err.msg, want_err);
            failed = 1;
        }
    } else if (rc != SLM_OK) {
        snprintf(why, cap, "unexpected error: %s", err.msg);
        failed = 1;
    } else if (result && strcmp(result, slm_buf_cstr(&out)) != 0) {
        snprintf(why, cap, "expected '%s', got '%s'", result, slm_buf_cstr(&out));
        failed = 1;
    } else if (prefix && strncmp(prefix, slm_buf_cstr(&out), strlen(prefix)) != 0) {
        snprintf(why, cap, "expected output starting '%s', got '%s'", prefix, slm_buf_cstr(&out));
        failed = 1;
    }
    slm_buf_free(&out);
    return failed;
}

Test(liquid_cases, all_files) {
    setenv("TZ", "UTC", 1);
    tzset();
    const char *dd = getenv("SLM_TEST_DATA");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/liquid/cases", dd ? dd : "tests/data");
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    size_t files = 0, total = 0, failures = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0) {
            continue;
        }
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        json_t *file = NULL;
        struct slm_err err;
        cr_assert_eq(slm_json_load_file(path, 0, &file, &err), SLM_OK, "%s", err.msg);
        files++;
        size_t i;
        json_t *tc;
        json_array_foreach(json_object_get(file, "cases"), i, tc) {
            char why[1024];
            total++;
            if (run_case(file, tc, why, sizeof(why))) {
                failures++;
                cr_log_error("%s: %s: %s", e->d_name,
                             json_string_value(json_object_get(tc, "name")), why);
            }
        }
        json_decref(file);
    }
    closedir(d);
    fprintf(stderr, "liquid cases: %zu files, %zu cases, %zu failures\n", files, total, failures);
    cr_assert(files > 0, "no case files in %s", dir);
    cr_assert_eq(failures, 0, "%zu of %zu cases failed", failures, total);
}
