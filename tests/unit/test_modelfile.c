/*
 * test_modelfile.c - the Modelfile parser, data-driven: every
 * tests/data/modelfile/ok_*.Modelfile must parse to ok_*.json, every
 * err_*.Modelfile must fail with a message containing err_*.err (file, line,
 * directive). A regression is a new pair of files. Plus parameter checks,
 * Go-template detection, and Modelfile output that parses back.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/options.h"
#include "slm/store.h"

static const char *data_dir(void) {
    static char dir[PATH_MAX];
    const char *base = getenv("SLM_TEST_DATA");
    snprintf(dir, sizeof(dir), "%s/modelfile", base ? base : "tests/data");
    return dir;
}

static json_t *opt_str(const char *s) {
    return s ? json_string(s) : json_null();
}

/* The parse result as JSON, to compare with the expected file. */
static json_t *as_json(const struct slm_modelfile *mf) {
    json_t *adapters = json_array();
    for (size_t i = 0; i < mf->n_adapters; i++) {
        json_array_append_new(adapters, json_string(mf->adapters[i]));
    }
    return json_pack("{soso sO so so sO so}", "from", opt_str(mf->from), "adapters", adapters,
                     "params", mf->params, "system", opt_str(mf->system), "template",
                     opt_str(mf->template_text), "messages", mf->messages, "license",
                     opt_str(mf->license));
}

static void check_ok_case(const char *dir, const char *file) {
    char path[PATH_MAX + 300], expect_path[PATH_MAX + 300];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(expect_path, sizeof(expect_path), "%s/%.*s.json", dir,
             (int)(strlen(file) - strlen(".Modelfile")), file);
    struct slm_buf text = {0};
    cr_assert_eq(slm_file_read(path, 0, &text, NULL), SLM_OK, "%s", path);
    struct slm_modelfile *mf = NULL;
    struct slm_err err = {0};
    int rc = slm_modelfile_parse(text.ptr, text.len, file, &mf, &err);
    cr_assert_eq(rc, SLM_OK, "%s: %s", file, err.msg);
    json_t *expect = NULL;
    cr_assert_eq(slm_json_load_file(expect_path, 0, &expect, &err), SLM_OK, "%s", err.msg);
    json_t *got = as_json(mf);
    char *g = json_dumps(got, JSON_SORT_KEYS), *e = json_dumps(expect, JSON_SORT_KEYS);
    cr_assert(json_equal(got, expect), "%s:\n got    %s\n expect %s", file, g, e);
    free(g);
    free(e);
    json_decref(got);
    json_decref(expect);
    slm_modelfile_free(mf);
    slm_buf_free(&text);
}

static void check_err_case(const char *dir, const char *file) {
    char path[PATH_MAX + 300], expect_path[PATH_MAX + 300];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(expect_path, sizeof(expect_path), "%s/%.*s.err", dir,
             (int)(strlen(file) - strlen(".Modelfile")), file);
    struct slm_buf text = {0}, expect = {0};
    cr_assert_eq(slm_file_read(path, 0, &text, NULL), SLM_OK, "%s", path);
    cr_assert_eq(slm_file_read(expect_path, 0, &expect, NULL), SLM_OK, "%s", expect_path);
    struct slm_str want = slm_str_trim(slm_buf_str(&expect));
    struct slm_modelfile *mf = NULL;
    struct slm_err err = {0};
    int rc = slm_modelfile_parse(text.ptr, text.len, file, &mf, &err);
    cr_assert_neq(rc, SLM_OK, "%s parsed but should fail", file);
    cr_assert_null(mf);
    cr_assert_eq(err.code, rc);
    cr_assert(slm_str_find(slm_str_c(err.msg), want, 0) != SIZE_MAX,
              "%s:\n got    %s\n expect %.*s", file, err.msg, (int)want.len, want.ptr);
    slm_buf_free(&text);
    slm_buf_free(&expect);
}

Test(modelfile, data_driven_cases) {
    const char *dir = data_dir();
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n_ok = 0, n_err = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct slm_str name = slm_str_c(e->d_name);
        if (!slm_str_ends_with(name, SLM_STR(".Modelfile"))) {
            continue;
        }
        if (slm_str_starts_with(name, SLM_STR("ok_"))) {
            check_ok_case(dir, e->d_name);
            n_ok++;
        } else if (slm_str_starts_with(name, SLM_STR("err_"))) {
            check_err_case(dir, e->d_name);
            n_err++;
        }
    }
    closedir(d);
    cr_assert_geq(n_ok, 4);
    cr_assert_geq(n_err, 10);
}

Test(modelfile, params_are_typed_and_checked) {
    json_t *p = json_object();
    struct slm_err err = {0};
    cr_assert_eq(slm_modelfile_check_param("seed", "-1", p, &err), SLM_OK);
    cr_assert_eq(slm_modelfile_check_param("seed", "4294967295", p, &err), SLM_OK);
    cr_assert_eq(slm_modelfile_check_param("seed", "4294967296", p, &err), SLM_E_INVALID);
    cr_assert_eq(slm_modelfile_check_param("num_ctx", "0", p, &err), SLM_E_INVALID);
    cr_assert_eq(slm_modelfile_check_param("temperature", "nan", p, &err), SLM_E_INVALID);
    cr_assert_eq(slm_modelfile_check_param("temperature", "-0.1", p, &err), SLM_E_INVALID);
    cr_assert_eq(slm_modelfile_check_param("temperature", "0.7", p, &err), SLM_OK);
    cr_assert(json_is_real(json_object_get(p, "temperature")));
    cr_assert(json_is_integer(json_object_get(p, "seed")));
    cr_assert_eq(slm_modelfile_check_param("stop", "", p, &err), SLM_E_INVALID);
    for (int i = 0; i < 16; i++) {
        cr_assert_eq(slm_modelfile_check_param("stop", "x", p, &err), SLM_OK);
    }
    cr_assert_eq(slm_modelfile_check_param("stop", "x", p, &err), SLM_E_LIMIT);
    cr_assert_eq(slm_modelfile_check_param("top_k", "40", p, &err), SLM_OK);
    json_decref(p);
    size_t n = 0;
    for (const char *const *names = slm_modelfile_param_names(); *names; names++) {
        n++;
    }
    cr_assert_eq(n, 14);
}

/* One option table: whatever a Modelfile accepts, a request to the model
 * accepts too (a stored PARAMETER that requests refuse makes every request
 * fail), and the edges of each range are the same on both sides. */
Test(modelfile, params_accepted_by_create_are_accepted_by_requests) {
    for (const struct slm_option_desc *d = slm_option_table(); d->name; d++) {
        if (d->type == SLM_OPT_STRINGS) {
            continue;
        }
        const double edges[] = {d->min, d->max, d->min - 1, d->max + 1};
        for (size_t i = 0; i < 4; i++) {
            char text[64];
            snprintf(text, sizeof(text), "%.17g", edges[i]);
            json_t *p = json_object();
            struct slm_err err = {0};
            int file_rc = slm_modelfile_check_param(d->name, text, p, &err);
            struct slm_options o;
            slm_options_init(&o);
            int req_rc = slm_options_apply(&o, p, false, &err);
            cr_assert_eq(req_rc, SLM_OK, "%s %s: the Modelfile accepted it, a request refuses: %s",
                         d->name, text, err.msg);
            if (file_rc == SLM_OK) {
                cr_assert_eq(slm_options_set_text(&o, d->name, text, &err), SLM_OK,
                             "%s %s: the Modelfile accepted it, the CLI refuses: %s", d->name, text,
                             err.msg);
            }
            bool inside = i < 2 && !(i == 0 && d->min == 0 && (d->flags & SLM_OPTF_ZERO_AUTO));
            cr_assert_eq(file_rc == SLM_OK, inside, "%s %s: %s", d->name, text, err.msg);
            slm_options_free(&o);
            json_decref(p);
        }
    }
}

Test(modelfile, openai_fields_map_through_the_table) {
    json_t *body = json_pack("{s:f,s:i,s:i,s:[s],s:i}", "temperature", 0.5, "max_tokens", 9,
                             "max_completion_tokens", 7, "stop", "END", "top_k", 3);
    json_t *named = json_object();
    const char *bad = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_options_from_openai(body, named, &bad, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(named, "num_predict")), 7, "newer name wins");
    cr_assert_eq(json_integer_value(json_object_get(named, "top_k")), 3);
    cr_assert(json_is_array(json_object_get(named, "stop")));
    cr_assert_null(json_object_get(named, "max_tokens"));
    json_object_set_new(body, "top_p", json_real(1.5));
    cr_assert_eq(slm_options_from_openai(body, named, &bad, &err), SLM_E_INVALID);
    cr_assert_str_eq(bad, "top_p");
    json_decref(body);
    json_decref(named);
}

Test(modelfile, go_templates_are_recognised) {
    static const char *const go[] = {
        "{{ .Prompt }}",
        "{{- if .System }}<|system|>{{ .System }}{{ end }}",
        "{{ range .Messages }}{{ .Content }}{{ end }}",
        "{{if .First}}x{{end}}",
        "{{ $last := eq (len (slice $.Messages $i)) 1 }}",
    };
    static const char *const liquid[] = {
        "{{ input }}",
        "{% if system %}{{ system }}{% endif %}{{ input | upcase }}",
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
        "plain text, no tags",
        "{{ ending }} {{ iffy }}",
        "{{",
    };
    for (size_t i = 0; i < SLM_ARRAY_LEN(go); i++) {
        cr_assert(slm_template_looks_like_go(go[i], strlen(go[i])), "%s", go[i]);
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(liquid); i++) {
        cr_assert_not(slm_template_looks_like_go(liquid[i], strlen(liquid[i])), "%s", liquid[i]);
    }
}

Test(modelfile, size_cap_and_nul_bytes) {
    struct slm_modelfile *mf = NULL;
    struct slm_err err = {0};
    static const char nul[] = "FROM x\nSYSTEM a\0b\n";
    cr_assert_eq(slm_modelfile_parse(nul, sizeof(nul) - 1, "M", &mf, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "M:2: SYSTEM") != NULL, "%s", err.msg);
    size_t big = ((size_t)4 << 20) + 1;
    char *text = calloc(1, big);
    cr_assert_eq(slm_modelfile_parse(text, big, "M", &mf, &err), SLM_E_TOO_LARGE);
    free(text);
    /* A byte-order mark is skipped. */
    static const char bom[] = "\xEF\xBB\xBF"
                              "FROM x\n";
    cr_assert_eq(slm_modelfile_parse(bom, sizeof(bom) - 1, "M", &mf, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(mf->from, "x");
    slm_modelfile_free(mf);
    slm_modelfile_free(NULL);
}

Test(modelfile, manifest_prints_a_modelfile_that_parses_back) {
    struct slm_manifest m = {0};
    m.name = "me/tiny:latest";
    m.model_path = "/store/blobs/sha256-aa";
    m.params =
        json_pack("{sfsis[ss]}", "temperature", 0.25, "num_ctx", 512, "stop", "a \"q\"", "b\\c");
    m.system = "line one\nline \"two\"\"\"";
    m.messages = json_pack("[{ssss}{ssss}]", "role", "user", "content", "hi", "role", "assistant",
                           "content", "hello \"there\"");
    m.license = "MIT";
    struct slm_buf out = {0};
    struct slm_err err = {0};
    cr_assert_eq(slm_manifest_to_modelfile(&m, &out, &err), SLM_OK, "%s", err.msg);
    struct slm_modelfile *mf = NULL;
    cr_assert_eq(slm_modelfile_parse(out.ptr, out.len, "generated", &mf, &err), SLM_OK, "%s\n%s",
                 err.msg, out.ptr);
    cr_assert_str_eq(mf->from, "/store/blobs/sha256-aa");
    cr_assert_str_eq(mf->system, m.system);
    cr_assert_str_eq(mf->license, "MIT");
    cr_assert(json_equal(mf->params, m.params), "%s", out.ptr);
    cr_assert(json_equal(mf->messages, m.messages), "%s", out.ptr);
    slm_modelfile_free(mf);
    slm_buf_free(&out);
    json_decref(m.params);
    json_decref(m.messages);
}
