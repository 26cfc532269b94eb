/*
 * test_yaml.c - YAML -> jansson with positions (slm/yaml.h).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "slm/yaml.h"

static struct slm_yaml_doc *load(const char *src) {
    struct slm_yaml_doc *d = NULL;
    struct slm_err err = {0};
    int rc = slm_yaml_parse("t.yaml", src, strlen(src), NULL, &d, &err);
    cr_assert_eq(rc, SLM_OK, "parse failed: %s", err.msg);
    return d;
}

static int load_fail(const char *src, struct slm_err *err) {
    struct slm_yaml_doc *d = NULL;
    int rc = slm_yaml_parse("t.yaml", src, strlen(src), NULL, &d, err);
    cr_assert_neq(rc, SLM_OK);
    cr_assert_null(d);
    return rc;
}

Test(yaml, scalars_follow_the_core_schema) {
    struct slm_yaml_doc *d = load("a: 1\nb: -2.5\nc: true\nd: ~\ne: hello world\nf: '1'\n"
                                  "g: 0x1f\nh: 1e3\ni: \"yes\"\nj: !!str 12\nk:\n");
    json_t *r = slm_yaml_root(d);
    cr_assert_eq(json_integer_value(json_object_get(r, "a")), 1);
    cr_assert_float_eq(json_real_value(json_object_get(r, "b")), -2.5, 1e-12);
    cr_assert(json_is_true(json_object_get(r, "c")));
    cr_assert(json_is_null(json_object_get(r, "d")));
    cr_assert_str_eq(json_string_value(json_object_get(r, "e")), "hello world");
    cr_assert_str_eq(json_string_value(json_object_get(r, "f")), "1");
    cr_assert_eq(json_integer_value(json_object_get(r, "g")), 31);
    cr_assert_float_eq(json_real_value(json_object_get(r, "h")), 1000.0, 1e-9);
    cr_assert_str_eq(json_string_value(json_object_get(r, "i")), "yes");
    cr_assert_str_eq(json_string_value(json_object_get(r, "j")), "12");
    cr_assert(json_is_null(json_object_get(r, "k")));
    slm_yaml_free(d);
}

Test(yaml, positions_of_keys_items_and_nodes) {
    const char *src = "# comment\n"
                      "routes:\n"
                      "  - name: a\n"
                      "    checks:\n"
                      "      label_prob: 2\n"
                      "  - name: b\n";
    struct slm_yaml_doc *d = load(src);
    json_t *r = slm_yaml_root(d);
    cr_assert_eq(slm_yaml_pos_key(d, r, "routes").line, 2);
    json_t *routes = json_object_get(r, "routes");
    cr_assert_eq(slm_yaml_pos_index(d, routes, 0).line, 3);
    cr_assert_eq(slm_yaml_pos_index(d, routes, 1).line, 6);
    json_t *r0 = json_array_get(routes, 0);
    json_t *checks = json_object_get(r0, "checks");
    struct slm_yaml_pos p = slm_yaml_pos_key(d, checks, "label_prob");
    cr_assert_eq(p.line, 5);
    cr_assert_eq(p.col, 7);
    cr_assert_eq(slm_yaml_pos_key(d, r0, "name").line, 3);
    /* unknown key falls back to the mapping's own position */
    cr_assert_eq(slm_yaml_pos_key(d, checks, "nope").line, 5);
    slm_yaml_free(d);
}

Test(yaml, json_is_yaml) {
    struct slm_yaml_doc *d = load("{\"a\": [1, 2, {\"b\": null}],\n \"c\": \"x\"}");
    json_t *r = slm_yaml_root(d);
    cr_assert_eq(json_array_size(json_object_get(r, "a")), 3);
    cr_assert_eq(slm_yaml_pos_key(d, r, "c").line, 2);
    slm_yaml_free(d);
}

Test(yaml, aliases_are_copied) {
    struct slm_yaml_doc *d = load("base: &b {x: 1}\nother: *b\n");
    json_t *r = slm_yaml_root(d);
    cr_assert(json_equal(json_object_get(r, "base"), json_object_get(r, "other")));
    cr_assert_neq(json_object_get(r, "base"), json_object_get(r, "other"));
    slm_yaml_free(d);
}

Test(yaml, billion_laughs_hits_the_node_limit) {
    const char *src = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    struct slm_err err;
    cr_assert_eq(load_fail(src, &err), SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "values"), "%s", err.msg);
}

Test(yaml, errors_name_file_line_and_problem) {
    struct slm_err err;
    load_fail("a: 1\na: 2\n", &err);
    cr_assert_str_eq(err.msg, "t.yaml:2:1: duplicate key 'a'");
    load_fail("a: [1, 2\n", &err);
    cr_assert(strncmp(err.msg, "t.yaml:", 7) == 0, "%s", err.msg);
    load_fail("a: 1\n---\nb: 2\n", &err);
    cr_assert(strstr(err.msg, "more than one document"), "%s", err.msg);
    load_fail("<<: {a: 1}\n", &err);
    cr_assert(strstr(err.msg, "merge keys"), "%s", err.msg);
    load_fail("a: !!python/object x\n", &err);
    cr_assert(strstr(err.msg, "unsupported tag"), "%s", err.msg);
    load_fail("? [a]\n: 1\n", &err);
    cr_assert(strstr(err.msg, "keys must be scalars"), "%s", err.msg);
    load_fail("a: *nope\n", &err);
    cr_assert(strstr(err.msg, "anchor"), "%s", err.msg);
    load_fail("a: .nan\n", &err);
    load_fail("a: 99999999999999999999\n", &err);
    cr_assert(strstr(err.msg, "out of range"), "%s", err.msg);
}

Test(yaml, depth_and_size_limits) {
    struct slm_buf b = {0};
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(slm_buf_putc(&b, '['), SLM_OK);
    }
    struct slm_err err;
    struct slm_yaml_doc *d = NULL;
    cr_assert_eq(slm_yaml_parse("deep", b.ptr, b.len, NULL, &d, &err), SLM_E_LIMIT);
    struct slm_yaml_params p = slm_yaml_params_default();
    p.max_bytes = 4;
    cr_assert_eq(slm_yaml_parse("big", "a: 12345", 8, &p, &d, &err), SLM_E_TOO_LARGE);
    slm_buf_free(&b);
}

Test(yaml, empty_document_is_null) {
    struct slm_yaml_doc *d = load("# nothing\n");
    cr_assert(json_is_null(slm_yaml_root(d)));
    slm_yaml_free(d);
}

Test(yaml, alias_copies_are_located_at_the_alias) {
    struct slm_yaml_doc *d = load("base: &b {x: [1, {y: 2}]}\n\nother: *b\n");
    json_t *other = json_object_get(slm_yaml_root(d), "other");
    cr_assert_eq(slm_yaml_pos_key(d, other, "x").line, 3);
    json_t *x = json_object_get(other, "x");
    cr_assert_eq(slm_yaml_pos_index(d, x, 1).line, 3);
    cr_assert_eq(slm_yaml_pos_key(d, json_array_get(x, 1), "y").line, 3);
    cr_assert_eq(slm_yaml_pos_key(d, json_object_get(slm_yaml_root(d), "base"), "x").line, 1);
    slm_yaml_free(d);
}
