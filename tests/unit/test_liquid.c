/*
 * test_liquid.c - the Liquid engine's API: parse/render/free, buffers,
 * resource limits, the jailed loader, files, loaders, warnings, threads.
 * Language cases are data (test_liquid_cases.c, test_liquid_golden.c).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slm/json.h"
#include "slm/liquid.h"

static int render(const char *src, const char *vars_json, const struct slm_liquid_params *p,
                  struct slm_buf *out, struct slm_err *err) {
    json_t *vars = NULL;
    if (vars_json) {
        cr_assert_eq(slm_json_parse(vars_json, strlen(vars_json), "vars", &vars, err), SLM_OK);
    }
    int rc = slm_liquid_render_string(src, strlen(src), vars, p, out, err);
    json_decref(vars);
    return rc;
}

Test(liquid_api, defaults) {
    struct slm_liquid_params p = slm_liquid_params_default();
    cr_assert_eq(p.mode, SLM_LIQUID_STRICT);
    cr_assert_eq(p.max_template_bytes, (size_t)1 << 20);
    cr_assert_eq(p.max_output_bytes, (size_t)16 << 20);
    cr_assert_eq(p.max_steps, 10000000u);
    cr_assert_eq(p.max_depth, 64);
    cr_assert_eq(p.max_include_depth, 32);
    cr_assert_null(p.root);
}

Test(liquid_api, parse_once_render_many) {
    struct slm_liquid_template *t;
    struct slm_err err;
    const char *src = "Hi {{ name | capitalize }}{% for i in (1..3) %} {{ i }}{% endfor %}";
    cr_assert_eq(slm_liquid_parse("greet", src, strlen(src), NULL, &t, &err), SLM_OK, "%s",
                 err.msg);
    cr_assert_str_eq(slm_liquid_name(t), "greet");
    json_t *a = json_pack("{s:s}", "name", "ada");
    json_t *b = json_pack("{s:s}", "name", "bob");
    struct slm_buf out;
    slm_buf_init(&out, 0);
    for (int i = 0; i < 100; i++) {
        slm_buf_clear(&out);
        cr_assert_eq(slm_liquid_render(t, i % 2 ? b : a, &out, &err), SLM_OK);
        cr_assert_str_eq(slm_buf_cstr(&out), i % 2 ? "Hi Bob 1 2 3" : "Hi Ada 1 2 3");
    }
    slm_buf_free(&out);
    json_decref(a);
    json_decref(b);
    slm_liquid_free(t);
    slm_liquid_free(NULL);
}

Test(liquid_api, render_appends_and_restores_on_error) {
    struct slm_buf out;
    slm_buf_init(&out, 0);
    struct slm_err err;
    cr_assert_eq(slm_buf_puts(&out, "pre:"), SLM_OK);
    cr_assert_eq(render("ok", NULL, NULL, &out, &err), SLM_OK);
    cr_assert_str_eq(slm_buf_cstr(&out), "pre:ok");
    cr_assert_eq(render("partial output {{ 1 | divided_by: 0 }}", NULL, NULL, &out, &err),
                 SLM_E_INVALID);
    cr_assert_str_eq(slm_buf_cstr(&out), "pre:ok");
    cr_assert(strstr(err.msg, "template:1:23: divided_by: divided by 0"), "%s", err.msg);
    slm_buf_free(&out);
}

Test(liquid_api, vars_must_be_an_object) {
    struct slm_liquid_template *t;
    struct slm_err err;
    cr_assert_eq(slm_liquid_parse(NULL, "x", 1, NULL, &t, &err), SLM_OK);
    json_t *arr = json_array();
    struct slm_buf out;
    slm_buf_init(&out, 0);
    cr_assert_eq(slm_liquid_render(t, arr, &out, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "must be a JSON object"));
    cr_assert_eq(slm_liquid_render(t, NULL, &out, NULL), SLM_OK);
    json_decref(arr);
    slm_buf_free(&out);
    slm_liquid_free(t);
}

Test(liquid_api, null_err_is_fine) {
    struct slm_liquid_template *t = NULL;
    cr_assert_eq(slm_liquid_parse(NULL, "{% if %}", 8, NULL, &t, NULL), SLM_E_INVALID);
    cr_assert_null(t);
    struct slm_buf out;
    slm_buf_init(&out, 0);
    cr_assert_eq(slm_liquid_render_string("{{ 1 | modulo: 0 }}", 19, NULL, NULL, &out, NULL),
                 SLM_E_INVALID);
    slm_buf_free(&out);
}

/* ---------------------------------------------------------------- limits */

Test(liquid_limits, output_size) {
    struct slm_liquid_params p = slm_liquid_params_default();
    p.max_output_bytes = 1000;
    struct slm_buf out;
    slm_buf_init(&out, 0);
    struct slm_err err;
    cr_assert_eq(render("{% for i in (1..1000) %}0123456789{% endfor %}", NULL, &p, &out, &err),
                 SLM_E_TOO_LARGE);
    cr_assert(strstr(err.msg, "output exceeds 1000 bytes"), "%s", err.msg);
    cr_assert_eq(out.len, 0);
    /* the buffer's own cap counts too */
    struct slm_buf small;
    slm_buf_init(&small, 50);
    cr_assert_eq(render("{% for i in (1..10) %}0123456789{% endfor %}", NULL, NULL, &small, &err),
                 SLM_E_TOO_LARGE);
    /* capture output counts while it is being made */
    cr_assert_eq(render("{% capture c %}{% for i in (1..1000) %}0123456789{% endfor %}"
                        "{% endcapture %}",
                        NULL, &p, &out, &err),
                 SLM_E_TOO_LARGE);
    slm_buf_free(&out);
    slm_buf_free(&small);
}

Test(liquid_limits, steps) {
    struct slm_liquid_params p = slm_liquid_params_default();
    p.max_steps = 100000;
    struct slm_buf out;
    slm_buf_init(&out, 0);
    struct slm_err err;
    cr_assert_eq(render("{% for i in (1..1000000000) %}{% for j in (1..1000000000) %}"
                        "{% endfor %}{% endfor %}",
                        NULL, &p, &out, &err),
                 SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "exceeded 100000 steps"), "%s", err.msg);
    /* filters charge their work: a huge range joined */
    cr_assert_eq(render("{{ (1..1000000000) | join: ',' }}", NULL, &p, &out, &err), SLM_E_LIMIT);
    cr_assert_eq(render("{% if (1..1000000000) contains 0 %}{% endif %}", NULL, &p, &out, &err),
                 SLM_E_LIMIT);
    slm_buf_free(&out);
}

Test(liquid_limits, memory) {
    struct slm_liquid_params p = slm_liquid_params_default();
    p.max_memory_bytes = 1 << 20;
    struct slm_buf out;
    slm_buf_init(&out, 0);
    struct slm_err err;
    cr_assert_eq(render("{% assign s = 'xxxxxxxx' %}{% for i in (1..40) %}"
                        "{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
                        NULL, &p, &out, &err),
                 SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "bytes of memory"), "%s", err.msg);
    p.max_steps = (uint64_t)1 << 40;
    cr_assert_eq(render("{{ (1..100000000) | reverse | size }}", NULL, &p, &out, &err),
                 SLM_E_LIMIT);
    slm_buf_free(&out);
}

Test(liquid_limits, nesting_depth) {
    struct slm_buf src, out;
    slm_buf_init(&src, 0);
    slm_buf_init(&out, 0);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(slm_buf_puts(&src, "{% if true %}"), SLM_OK);
    }
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(slm_buf_puts(&src, "{% endif %}"), SLM_OK);
    }
    struct slm_err err;
    cr_assert_eq(render(slm_buf_cstr(&src), NULL, NULL, &out, &err), SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "nested deeper than 64"), "%s", err.msg);
    slm_buf_clear(&src);
    cr_assert_eq(slm_buf_puts(&src, "{{ "), SLM_OK);
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(slm_buf_puts(&src, "a["), SLM_OK);
    }
    cr_assert_eq(slm_buf_puts(&src, "0"), SLM_OK);
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(slm_buf_puts(&src, "]"), SLM_OK);
    }
    cr_assert_eq(slm_buf_puts(&src, " }}"), SLM_OK);
    cr_assert_eq(render(slm_buf_cstr(&src), NULL, NULL, &out, &err), SLM_E_LIMIT);
    /* 60 levels are fine */
    slm_buf_clear(&src);
    for (int i = 0; i < 60; i++) {
        cr_assert_eq(slm_buf_puts(&src, "{% for i in (1..1) %}"), SLM_OK);
    }
    cr_assert_eq(slm_buf_puts(&src, "x"), SLM_OK);
    for (int i = 0; i < 60; i++) {
        cr_assert_eq(slm_buf_puts(&src, "{% endfor %}"), SLM_OK);
    }
    cr_assert_eq(render(slm_buf_cstr(&src), NULL, NULL, &out, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&out), "x");
    slm_buf_free(&src);
    slm_buf_free(&out);
}

Test(liquid_limits, template_size) {
    struct slm_liquid_params p = slm_liquid_params_default();
    p.max_template_bytes = 100;
    char src[201];
    memset(src, 'x', 200);
    src[200] = '\0';
    struct slm_liquid_template *t;
    struct slm_err err;
    cr_assert_eq(slm_liquid_parse("big", src, 200, &p, &t, &err), SLM_E_TOO_LARGE);
    cr_assert(strstr(err.msg, "over the 100-byte limit"), "%s", err.msg);
}

Test(liquid_limits, partial_chain_depth) {
    json_t *parts = json_object();
    for (int i = 0; i < 40; i++) {
        char name[16], body[64];
        snprintf(name, sizeof(name), "p%d", i);
        snprintf(body, sizeof(body), "{%% include 'p%d' %%}", i + 1);
        json_object_set_new(parts, name, json_string(body));
    }
    struct slm_liquid_params p = slm_liquid_params_default();
    p.partials = parts;
    struct slm_liquid_template *t;
    struct slm_err err;
    const char *src = "{% include 'p0' %}";
    cr_assert_eq(slm_liquid_parse(NULL, src, strlen(src), &p, &t, &err), SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "partials nested deeper than 32"), "%s", err.msg);
    json_decref(parts);
}

/* ---------------------------------------------------------------- files and the jail */

static char tmpdir[256];

static void write_file(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void make_tree(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/slm-liquid-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char path[512];
    snprintf(path, sizeof(path), "%s/root", tmpdir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/root/shots", tmpdir);
    mkdir(path, 0755);
    write_file("root/main.liquid", "[{% include 'header' %}|{% render 'shots/qa', q: 'why' %}]");
    write_file("root/header.liquid", "H {{ title }}");
    write_file("root/shots/qa.liquid", "Q: {{ q }}");
    write_file("root/plain", "no extension");
    write_file("secret.txt", "top secret");
    snprintf(path, sizeof(path), "%s/root/leak", tmpdir);
    char target[512];
    snprintf(target, sizeof(target), "%s/secret.txt", tmpdir);
    cr_assert_eq(symlink(target, path), 0);
    snprintf(path, sizeof(path), "%s/root/inside", tmpdir);
    cr_assert_eq(symlink("header.liquid", path), 0);
}

static void remove_tree(void) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

Test(liquid_files, jailed_loader, .init = make_tree, .fini = remove_tree) {
    char root[512];
    snprintf(root, sizeof(root), "%s/root", tmpdir);
    struct slm_buf src;
    slm_buf_init(&src, 0);
    struct slm_err err;
    cr_assert_eq(slm_liquid_load_jailed(root, "header", 0, &src, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&src), "H {{ title }}");
    cr_assert_eq(slm_liquid_load_jailed(root, "shots/qa", 0, &src, &err), SLM_OK);
    cr_assert_eq(slm_liquid_load_jailed(root, "plain", 0, &src, &err), SLM_OK);
    cr_assert_str_eq(slm_buf_cstr(&src), "no extension");
    cr_assert_eq(slm_liquid_load_jailed(root, "inside", 0, &src, &err), SLM_OK);
    static const char *const bad[] = {"../secret.txt", "/etc/passwd", "shots/../header",
                                      "./header",      "shots//qa",   "shots/",
                                      "a b",           "x\\y",        "",
                                      "we$ird"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(slm_liquid_load_jailed(root, bad[i], 0, &src, &err), SLM_E_INVALID,
                     "'%s' was accepted", bad[i]);
    }
    cr_assert_eq(slm_liquid_load_jailed(root, "leak", 0, &src, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "outside the template root"), "%s", err.msg);
    cr_assert_eq(slm_liquid_load_jailed(root, "nope", 0, &src, &err), SLM_E_NOT_FOUND);
    cr_assert_eq(slm_liquid_load_jailed(root, "header", 5, &src, &err), SLM_E_TOO_LARGE);
    slm_buf_free(&src);
}

Test(liquid_files, parse_file_uses_its_folder, .init = make_tree, .fini = remove_tree) {
    char path[512];
    snprintf(path, sizeof(path), "%s/root/main.liquid", tmpdir);
    struct slm_liquid_template *t;
    struct slm_err err;
    cr_assert_eq(slm_liquid_parse_file(path, NULL, &t, &err), SLM_OK, "%s", err.msg);
    json_t *vars = json_pack("{s:s}", "title", "T");
    struct slm_buf out;
    slm_buf_init(&out, 0);
    cr_assert_eq(slm_liquid_render(t, vars, &out, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&out), "[H T|Q: why]");
    slm_buf_free(&out);
    json_decref(vars);
    slm_liquid_free(t);
    /* a partial that escapes the jail fails the parse */
    write_file("root/evil.liquid", "{% include 'leak' %}");
    snprintf(path, sizeof(path), "%s/root/evil.liquid", tmpdir);
    cr_assert_eq(slm_liquid_parse_file(path, NULL, &t, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "outside the template root"), "%s", err.msg);
    snprintf(path, sizeof(path), "%s/root/missing.liquid", tmpdir);
    cr_assert_neq(slm_liquid_parse_file(path, NULL, &t, &err), SLM_OK);
}

static int my_loader(void *user, const char *name, struct slm_buf *src, struct slm_err *err) {
    (void)err;
    int *calls = user;
    (*calls)++;
    if (strcmp(name, "cb") == 0) {
        return slm_buf_puts(src, "from callback");
    }
    return SLM_E_NOT_FOUND;
}

Test(liquid_files, custom_loader_then_partials) {
    int calls = 0;
    json_t *parts = json_pack("{s:s}", "mem", "from memory");
    struct slm_liquid_params p = slm_liquid_params_default();
    p.load = my_loader;
    p.load_user = &calls;
    p.partials = parts;
    struct slm_buf out;
    slm_buf_init(&out, 0);
    struct slm_err err;
    cr_assert_eq(render("{% include 'cb' %}/{% include 'mem' %}", NULL, &p, &out, &err), SLM_OK,
                 "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&out), "from callback/from memory");
    cr_assert_eq(calls, 2);
    slm_buf_free(&out);
    json_decref(parts);
}

/* ---------------------------------------------------------------- warnings, threads */

Test(liquid_api, warnings) {
    struct slm_liquid_params p = slm_liquid_params_default();
    p.mode = SLM_LIQUID_WARN;
    struct slm_liquid_template *t;
    struct slm_err err;
    const char *src = "{{ a | shout }}\n{{ b c }}";
    cr_assert_eq(slm_liquid_parse("w.liquid", src, strlen(src), &p, &t, &err), SLM_OK);
    cr_assert_eq(slm_liquid_warning_count(t), 2);
    cr_assert_str_eq(slm_liquid_warning(t, 0), "w.liquid:1:8: unknown filter 'shout'");
    cr_assert_str_eq(slm_liquid_warning(t, 1), "w.liquid:2:6: ignored trailing 'c'");
    cr_assert_null(slm_liquid_warning(t, 2));
    slm_liquid_free(t);
    p.mode = SLM_LIQUID_LAX;
    cr_assert_eq(slm_liquid_parse("w.liquid", src, strlen(src), &p, &t, &err), SLM_OK);
    cr_assert_eq(slm_liquid_warning_count(t), 0);
    slm_liquid_free(t);
}

struct thread_arg {
    const struct slm_liquid_template *t;
    const json_t *vars;
    const char *expect;
    int failures;
};

static void *render_loop(void *p) {
    struct thread_arg *a = p;
    struct slm_buf out;
    slm_buf_init(&out, 0);
    for (int i = 0; i < 300; i++) {
        slm_buf_clear(&out);
        struct slm_err err;
        if (slm_liquid_render(a->t, a->vars, &out, &err) != SLM_OK ||
            strcmp(slm_buf_cstr(&out), a->expect) != 0) {
            a->failures++;
        }
    }
    slm_buf_free(&out);
    return NULL;
}

Test(liquid_api, concurrent_renders) {
    json_t *parts = json_pack("{s:s,s:s}", "a", "<{{ x }}{% assign y = x | upcase %}>", "b",
                              "({{ forloop.index }}{{ x }})");
    struct slm_liquid_params p = slm_liquid_params_default();
    p.partials = parts;
    const char *src = "{% for x in xs %}{% include which %}{% render 'b' for xs as x %}"
                      "{% cycle 'A', 'B' %}{{ y }}{% endfor %}";
    struct slm_liquid_template *t;
    struct slm_err err;
    cr_assert_eq(slm_liquid_parse(NULL, src, strlen(src), &p, &t, &err), SLM_OK, "%s", err.msg);
    json_t *vars = json_pack("{s:[s,s],s:s}", "xs", "p", "q", "which", "a");
    struct slm_buf ref;
    slm_buf_init(&ref, 0);
    cr_assert_eq(slm_liquid_render(t, vars, &ref, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&ref), "<p>(1p)(2q)AP<q>(1p)(2q)BQ");
    struct thread_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){t, vars, slm_buf_cstr(&ref), 0};
        cr_assert_eq(pthread_create(&th[i], NULL, render_loop, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].failures, 0);
    }
    slm_buf_free(&ref);
    json_decref(vars);
    json_decref(parts);
    slm_liquid_free(t);
}

/* ---------------------------------------------------------------- the CLI */

/* Runs a shell command; returns its exit status and its output (stdout and
 * stderr) in out. */
static int run_cmd(const char *cmd, char *out, size_t cap) {
    char full[2048];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(liquid_cli, template_render_and_check, .init = make_tree, .fini = remove_tree) {
    const char *bin = getenv("SLM_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        cr_skip_test("SLM_BIN is not set to the slm binary; skipping the CLI test");
    }
    char cmd[1536], out[4096];
    write_file("vars.json", "{\"title\": \"From file\"}");
    snprintf(cmd, sizeof(cmd), "%s template render %s/root/main.liquid --vars '{\"title\":\"T\"}'",
             bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "[H T|Q: why]");
    snprintf(cmd, sizeof(cmd), "%s template render %s/root/main.liquid --vars @%s/vars.json", bin,
             tmpdir, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "[H From file|Q: why]");
    snprintf(cmd, sizeof(cmd), "%s template check %s/root/main.liquid", bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "main.liquid: ok"), "%s", out);
    write_file("bad.liquid", "line\n{% for x in %}{% endfor %}");
    snprintf(cmd, sizeof(cmd), "%s template check %s/bad.liquid", bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "bad.liquid:2:12: expected a value"), "%s", out);
    write_file("warn.liquid", "{{ 'a' | nope }}");
    snprintf(cmd, sizeof(cmd), "%s template render %s/warn.liquid --mode warn", bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "warning: ") && strstr(out, "unknown filter 'nope'"), "%s", out);
    write_file("big.liquid", "{% for i in (1..100) %}0123456789{% endfor %}");
    snprintf(cmd, sizeof(cmd), "%s template render %s/big.liquid --max-output 100", bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "output exceeds 100 bytes"), "%s", out);
    snprintf(cmd, sizeof(cmd), "%s template render %s/nope.liquid", bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 3, "%s", out);
    snprintf(cmd, sizeof(cmd), "%s template render %s/root/main.liquid --vars '[1]'", bin, tmpdir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 2, "%s", out);
    snprintf(cmd, sizeof(cmd), "%s template frob", bin);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 2, "%s", out);
}
