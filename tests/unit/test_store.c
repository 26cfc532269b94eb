/*
 * test_store.c - the model store: names (and traversal attempts), aliases,
 * manifests to and from JSON, blob import, the tmp/ locks and sweep,
 * resolve. Needs no model: blobs
 * are small files written here; every test uses its own temporary store.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "slm/json.h"
#include "slm/store.h"
#include "store/internal.h"

static char g_home[256];

static void make_home(void) {
    snprintf(g_home, sizeof(g_home), "/tmp/slm-test-store-XXXXXX");
    cr_assert_not_null(mkdtemp(g_home));
}

static void remove_home(void) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_home);
    cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* ---------------------------------------------------------------- names */

static void parses_to(const char *text, const char *name, const char *tag) {
    struct slm_name n;
    struct slm_err err = {0};
    int rc = slm_name_parse(text, &n, &err);
    cr_assert_eq(rc, SLM_OK, "'%s': %s", text, err.msg);
    cr_assert_str_eq(n.name, name);
    cr_assert_str_eq(n.tag, tag);
}

static void rejected(const char *text, const char *why) {
    struct slm_name n;
    struct slm_err err = {0};
    int rc = slm_name_parse(text, &n, &err);
    cr_assert_eq(rc, SLM_E_INVALID, "'%s' was accepted", text);
    cr_assert_eq(err.code, SLM_E_INVALID);
    cr_assert(strstr(err.msg, why) != NULL, "'%s': message '%s' lacks '%s'", text, err.msg, why);
}

Test(store_names, valid_names) {
    parses_to("stories260k", "stories260k", "latest");
    parses_to("smollm2:135m", "smollm2", "135m");
    parses_to("me/my-model:v1.2", "me/my-model", "v1.2");
    parses_to("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
              "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF", "Q4_K_M");
    parses_to("hf.co/ggml-org/models/tinyllamas/stories260K.gguf",
              "hf.co/ggml-org/models/tinyllamas/stories260K.gguf", "latest");
    parses_to("a_b-c.d", "a_b-c.d", "latest");
}

Test(store_names, traversal_and_bad_bytes_are_refused) {
    rejected("", "empty");
    rejected("../x", "may not start with '.'");
    rejected("a/../../etc/passwd", "may not start with '.'");
    rejected("a/./b", "may not start with '.'");
    rejected("..", "may not start with '.'");
    rejected(".hidden", "may not start with '.'");
    rejected("/etc/passwd", "may not start with '/'");
    rejected("a//b", "empty");
    rejected("a/", "empty");
    rejected("a:", "empty tag");
    rejected("a:..", "may not start with '.'");
    rejected("a:b/c", "character ':'"); /* ':' before the last '/' is part of the name */
    rejected("a b", "byte 0x20");
    rejected("a\\b", "character '\\'");
    rejected("a\nb", "byte 0x0a");
    rejected("a:b:c", "character ':'");
    rejected("na\xc3\xafve", "byte 0xc3");
    rejected("a%2f..", "character '%'");
    char long_name[400];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    rejected(long_name, "too long");
    char long_tag[100] = "x:";
    memset(long_tag + 2, 't', 80);
    long_tag[82] = '\0';
    rejected(long_tag, "too long");
}

Test(store_names, format_always_has_tag) {
    struct slm_name n;
    cr_assert_eq(slm_name_parse("me/m", &n, NULL), SLM_OK);
    char buf[300];
    cr_assert_eq(slm_name_format(&n, buf, sizeof(buf)), strlen("me/m:latest"));
    cr_assert_str_eq(buf, "me/m:latest");
    char small[4];
    cr_assert_eq(slm_name_format(&n, small, sizeof(small)), strlen("me/m:latest"));
    cr_assert_str_eq(small, "me/");
}

/* store/range.c: what a resumed download does with the server's answer. */
Test(store_pull, content_range_decides_append_restart_reject) {
    const char *cr = "bytes 300-999/1000";
    cr_assert_eq(slm__range_check(300, 206, cr, strlen(cr), 1000), SLM__RANGE_APPEND);
    cr_assert_eq(slm__range_check(300, 206, cr, strlen(cr), 0), SLM__RANGE_APPEND);
    cr_assert_eq(slm__range_check(300, 206, cr, strlen(cr), 2000), SLM__RANGE_REJECT);
    cr_assert_eq(slm__range_check(200, 206, cr, strlen(cr), 1000), SLM__RANGE_REJECT);
    cr_assert_eq(slm__range_check(300, 206, NULL, 0, 1000), SLM__RANGE_REJECT);
    cr = "bytes 0-999/*";
    cr_assert_eq(slm__range_check(300, 206, cr, strlen(cr), 1000), SLM__RANGE_RESTART);
    cr_assert_eq(slm__range_check(300, 200, NULL, 0, 1000), SLM__RANGE_RESTART);
    cr_assert_eq(slm__range_check(0, 200, NULL, 0, 0), SLM__RANGE_APPEND);
    uint64_t a, b, c;
    const char *bad[] = {
        "bytes 5-4/10", "bytes 0-10/10", "bytes 1-2",  "items 1-2/3",
        "bytes -2/3",   "bytes 1-2/3x",  "bytes */10", "bytes 0-1/18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(slm__content_range_parse(bad[i], strlen(bad[i]), &a, &b, &c), SLM_E_INVALID,
                     "%s", bad[i]);
    }
    cr = " Bytes 1-2/* ";
    cr_assert_eq(slm__content_range_parse(cr, strlen(cr), &a, &b, &c), SLM_OK);
    cr_assert(a == 1 && b == 2 && c == SLM_RANGE_UNKNOWN);
}

Test(store_names, aliases) {
    const struct slm_alias *a = slm_alias_find("stories260k");
    cr_assert_not_null(a);
    cr_assert_str_eq(a->target, "hf.co/ggml-org/models/tinyllamas/stories260K.gguf");
    cr_assert_str_eq(a->sha256, "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
    cr_assert_eq(slm_alias_find("Stories260K:latest"), a);
    cr_assert_null(slm_alias_find("stories260k:other"));
    const struct slm_alias *s = slm_alias_find("smollm2:135m");
    cr_assert_not_null(s);
    cr_assert(strstr(s->target, "SmolLM2-135M") != NULL);
    cr_assert(strstr(slm_alias_find("smollm2:360m")->target, "360M") != NULL);
    cr_assert(strstr(slm_alias_find("qwen2.5:0.5b")->target, "0.5B") != NULL);
    cr_assert(strstr(slm_alias_find("qwen2.5:1.5b")->target, "1.5B") != NULL);
    cr_assert_null(slm_alias_find("smollm2"));
    cr_assert_null(slm_alias_find(NULL));
    size_t n = 0;
    for (const struct slm_alias *t = slm_alias_table(); t->alias; t++) {
        struct slm_name parsed;
        cr_assert_eq(slm_name_parse(t->target, &parsed, NULL), SLM_OK, "%s", t->target);
        cr_assert_eq(slm_name_parse(t->alias, &parsed, NULL), SLM_OK, "%s", t->alias);
        n++;
    }
    cr_assert_geq(n, 5);
}

Test(store_names, local_paths) {
    cr_assert(slm_name_is_local_path("/abs/model.gguf"));
    cr_assert(slm_name_is_local_path("./m.gguf"));
    cr_assert(slm_name_is_local_path("../m"));
    cr_assert_not(slm_name_is_local_path("stories260k"));
    cr_assert_not(slm_name_is_local_path("hf.co/a/b/c.gguf")); /* no such file here */
    cr_assert_not(slm_name_is_local_path(""));
    cr_assert_not(slm_name_is_local_path(NULL));
    make_home();
    char cwd[PATH_MAX];
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    cr_assert_eq(chdir(g_home), 0);
    write_file("here.gguf", "x");
    cr_assert(slm_name_is_local_path("here.gguf"));
    cr_assert_eq(chdir(cwd), 0);
    remove_home();
}

/* ---------------------------------------------------------------- store */

Test(store, open_creates_layout_and_paths, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    char home[PATH_MAX];
    snprintf(home, sizeof(home), "%s/sub/", g_home);
    cr_assert_eq(slm_store_open(home, &st, NULL), SLM_OK);
    char expect[512];
    snprintf(expect, sizeof(expect), "%s/sub", g_home);
    cr_assert_str_eq(slm_store_home(st), expect);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/blobs", expect);
    cr_assert(slm_dir_exists(p));
    snprintf(p, sizeof(p), "%s/manifests", expect);
    cr_assert(slm_dir_exists(p));
    snprintf(p, sizeof(p), "%s/tmp", expect);
    cr_assert(slm_dir_exists(p));

    char out[PATH_MAX], want[PATH_MAX];
    slm_store_blob_path(st, "abc", out, sizeof(out));
    snprintf(want, sizeof(want), "%s/blobs/sha256-abc", expect);
    cr_assert_str_eq(out, want);
    struct slm_name n;
    cr_assert_eq(slm_name_parse("me/x:v1", &n, NULL), SLM_OK);
    slm_store_manifest_path(st, &n, out, sizeof(out));
    snprintf(want, sizeof(want), "%s/manifests/me/x/v1.json", expect);
    cr_assert_str_eq(out, want);
    slm_store_close(st);
}

Test(store, open_uses_slm_home, .init = make_home, .fini = remove_home) {
    setenv("SLM_HOME", g_home, 1);
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(NULL, &st, NULL), SLM_OK);
    cr_assert_str_eq(slm_store_home(st), g_home);
    slm_store_close(st);
    unsetenv("SLM_HOME");
}

#define HELLO_SHA "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

Test(store, import_blob_copy_move_and_mismatch, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    char src[PATH_MAX], blob[PATH_MAX], digest[72];
    snprintf(src, sizeof(src), "%s/hello.bin", g_home);
    write_file(src, "hello");
    struct slm_err err = {0};
    cr_assert_eq(slm_store_import_blob(st, src, NULL, false, digest, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(digest, "sha256-" HELLO_SHA);
    slm_store_blob_path(st, HELLO_SHA, blob, sizeof(blob));
    cr_assert(slm_file_exists(blob));
    cr_assert(slm_file_exists(src), "a copy keeps the source");

    /* Wrong expectation: SLM_E_CORRUPT, nothing new in blobs/, source kept. */
    write_file(src, "hellx");
    int rc = slm_store_import_blob(st, src, HELLO_SHA, false, digest, &err);
    cr_assert_eq(rc, SLM_E_CORRUPT);
    cr_assert(strstr(err.msg, "sha256 mismatch") != NULL, "%s", err.msg);
    cr_assert(slm_file_exists(src));
    rc = slm_store_import_blob(st, src, HELLO_SHA, true, digest, &err);
    cr_assert_eq(rc, SLM_E_CORRUPT);
    cr_assert(slm_file_exists(src));
    cr_assert_eq(slm_store_import_blob(st, src, "nothex", false, digest, &err), SLM_E_INVALID);

    /* Move with the right (upper-case) expectation. */
    write_file(src, "hello");
    cr_assert_eq(slm_store_import_blob(st, src,
                                       "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362"
                                       "938B9824",
                                       true, digest, &err),
                 SLM_OK, "%s", err.msg);
    cr_assert_not(slm_file_exists(src), "a move consumes the source");
    cr_assert_str_eq(digest, "sha256-" HELLO_SHA);

    /* tmp/ is left empty. */
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s/tmp')\"", g_home);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(slm_store_import_blob(st, "/nonexistent/x", NULL, false, digest, &err),
                 SLM_E_NOT_FOUND);
    slm_store_close(st);
}

/* A blob under a name that is not its hash (a damaged disk, an old bug) is
 * replaced by the next import of the right bytes, even at the same size. */
Test(store, import_replaces_a_damaged_blob_of_the_same_size, .init = make_home,
     .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    char src[PATH_MAX], blob[PATH_MAX], digest[72], got[65];
    slm_store_blob_path(st, HELLO_SHA, blob, sizeof(blob));
    write_file(blob, "hellx");
    snprintf(src, sizeof(src), "%s/hello.bin", g_home);
    struct slm_err err = {0};
    write_file(src, "hello");
    cr_assert_eq(slm_store_import_blob(st, src, NULL, false, digest, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_sha256_file(blob, got, NULL), SLM_OK);
    cr_assert_str_eq(got, HELLO_SHA, "the copy left a damaged blob in place");
    write_file(blob, "hellx");
    cr_assert_eq(slm_store_import_blob(st, src, NULL, true, digest, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_sha256_file(blob, got, NULL), SLM_OK);
    cr_assert_str_eq(got, HELLO_SHA, "the move left a damaged blob in place");
    slm_store_close(st);
}

/* ---------------------------------------------------------------- tmp/ */

/* The download lock is a flock: two opens conflict even in one process (two
 * threads of `slm serve`), unlocking removes the lock file, and the next
 * taker gets it. */
Test(store_tmp, lock_is_exclusive_per_open_and_removed_on_unlock, .init = make_home,
     .fini = remove_home) {
    struct slm_store *a = NULL, *b = NULL;
    cr_assert_eq(slm_store_open(g_home, &a, NULL), SLM_OK);
    cr_assert_eq(slm_store_open(g_home, &b, NULL), SLM_OK);
    struct slm__lock la, lb;
    cr_assert_eq(slm__store_trylock(a, HELLO_SHA, &la, NULL), SLM_OK);
    cr_assert_geq(la.fd, 0);
    cr_assert(slm_file_exists(la.path));
    cr_assert_eq(slm__store_trylock(b, HELLO_SHA, &lb, NULL), SLM_OK);
    cr_assert_eq(lb.fd, -1, "a second open took a held lock");
    slm__store_unlock(&la);
    cr_assert_not(slm_file_exists(la.path), "unlock left the lock file");
    cr_assert_eq(slm__store_trylock(b, HELLO_SHA, &lb, NULL), SLM_OK);
    cr_assert_geq(lb.fd, 0, "the lock was not free after unlock");
    slm__store_unlock(&lb);
    slm__store_unlock(&lb); /* a no-op once released */
    slm_store_close(a);
    slm_store_close(b);
}

/* Old files go unless locked; young ones stay; a sweep runs once a handle. */
Test(store_tmp, sweep_removes_old_unlocked_files, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL, *holder = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    cr_assert_eq(slm_store_open(g_home, &holder, NULL), SLM_OK);
    static const char *const names[] = {
        HELLO_SHA ".partial", /* 8 days: goes */
        "0000000000000000000000000000000000000000000000000000000000000000.partial", /* held */
        "1111111111111111111111111111111111111111111111111111111111111111.partial", /* 2 days */
        "import-old", /* 2 hours: goes */
        "import-new", /* now: stays */
    };
    static const int ages_h[] = {8 * 24, 8 * 24, 2 * 24, 2, 0};
    char path[PATH_MAX];
    for (size_t i = 0; i < SLM_ARRAY_LEN(names); i++) {
        slm_store_tmp_path(st, names[i], path, sizeof(path));
        write_file(path, "junk");
        struct timespec t[2] = {{time(NULL) - ages_h[i] * 3600L, 0}, {0, 0}};
        t[1] = t[0];
        cr_assert_eq(utimensat(AT_FDCWD, path, t, 0), 0);
    }
    struct slm__lock l;
    cr_assert_eq(
        slm__store_trylock(
            holder, "0000000000000000000000000000000000000000000000000000000000000000", &l, NULL),
        SLM_OK);
    cr_assert_geq(l.fd, 0);
    uint64_t bytes = 0;
    cr_assert_eq(slm__store_sweep_tmp(st, &bytes), 2);
    cr_assert_eq(bytes, 8);
    static const bool kept[] = {false, true, true, false, true};
    for (size_t i = 0; i < SLM_ARRAY_LEN(names); i++) {
        slm_store_tmp_path(st, names[i], path, sizeof(path));
        cr_assert_eq(slm_file_exists(path), kept[i], "%s", names[i]);
    }
    slm__store_unlock(&l);
    cr_assert_eq(slm__store_sweep_tmp(st, NULL), 0, "a second sweep through one handle");
    slm_store_close(st);
    slm_store_close(holder);
}

/* ---------------------------------------------------------------- manifests */

static json_t *sample_doc(void) {
    json_error_t je;
    json_t *doc = json_loads("{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA
                             "\",\"size\":5,\"source\":\"hf.co/a/b/c.gguf\"},"
                             "\"adapters\":[{\"digest\":\"sha256-" HELLO_SHA "\",\"scale\":0.5}],"
                             "\"params\":{\"temperature\":0.2,\"stop\":[\"a\",\"b\"]},"
                             "\"system\":\"Be brief.\",\"template\":{\"digest\":\"sha256-" HELLO_SHA
                             "\"},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                             "\"license\":\"MIT\",\"created\":\"2026-01-31T12:00:00Z\"}",
                             0, &je);
    cr_assert_not_null(doc, "%s", je.text);
    return doc;
}

Test(manifest, json_round_trip, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    json_t *doc = sample_doc();
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_manifest_from_json(st, "x:latest", doc, &m, &err), SLM_OK, "%s", err.msg);
    char blob[PATH_MAX];
    slm_store_blob_path(st, HELLO_SHA, blob, sizeof(blob));
    cr_assert_str_eq(m->name, "x:latest");
    cr_assert_str_eq(m->model_path, blob);
    cr_assert_str_eq(m->model_digest, "sha256-" HELLO_SHA);
    cr_assert_eq(m->model_size, 5);
    cr_assert_str_eq(m->source, "hf.co/a/b/c.gguf");
    cr_assert_eq(m->n_adapters, 1);
    cr_assert_float_eq(m->adapters[0].scale, 0.5f, 1e-6);
    cr_assert_str_eq(m->adapters[0].path, blob);
    cr_assert_float_eq(json_real_value(json_object_get(m->params, "temperature")), 0.2, 1e-9);
    cr_assert_str_eq(m->system, "Be brief.");
    cr_assert_str_eq(m->template_path, blob);
    cr_assert_eq(json_array_size(m->messages), 1);
    cr_assert_str_eq(m->license, "MIT");
    cr_assert_eq(m->created_ms, 1769860800000LL);

    json_t *back = slm_manifest_to_json(m);
    cr_assert_not_null(back);
    cr_assert(json_equal(back, doc), "%s", json_dumps(back, 0));
    json_decref(back);
    json_decref(doc);
    slm_manifest_free(m);
    slm_manifest_free(NULL);
    slm_store_close(st);
}

static void corrupt_case(struct slm_store *st, const char *text, int code, const char *why) {
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    cr_assert_not_null(doc, "%s: %s", text, je.text);
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_manifest_from_json(st, "m", doc, &m, &err), code, "%s", text);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, why) != NULL, "%s: '%s' lacks '%s'", text, err.msg, why);
    json_decref(doc);
}

Test(manifest, malformed_is_corrupt_and_names_the_key, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    corrupt_case(st, "[]", SLM_E_CORRUPT, "not a JSON object");
    corrupt_case(st, "{}", SLM_E_CORRUPT, "'schema'");
    corrupt_case(st, "{\"schema\":2,\"model\":{}}", SLM_E_UNSUPPORTED, "schema 2");
    corrupt_case(st, "{\"schema\":1}", SLM_E_CORRUPT, "'model'");
    corrupt_case(st, "{\"schema\":1,\"model\":{\"digest\":\"sha256-../../etc/passwd\"}}",
                 SLM_E_CORRUPT, "'model'");
    corrupt_case(st, "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA "\",\"size\":-1}}",
                 SLM_E_CORRUPT, "'model.size'");
    corrupt_case(st,
                 "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA "\"},\"adapters\":{}}",
                 SLM_E_CORRUPT, "'adapters'");
    corrupt_case(st,
                 "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA
                 "\"},\"adapters\":[{\"digest\":\"x\"}]}",
                 SLM_E_CORRUPT, "'adapters'");
    corrupt_case(st, "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA "\"},\"system\":1}",
                 SLM_E_CORRUPT, "'system'");
    corrupt_case(st, "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA "\"},\"params\":[]}",
                 SLM_E_CORRUPT, "'params'");
    corrupt_case(st,
                 "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA
                 "\"},\"messages\":[{\"role\":1}]}",
                 SLM_E_CORRUPT, "'messages'");
    corrupt_case(st,
                 "{\"schema\":1,\"model\":{\"digest\":\"sha256-" HELLO_SHA
                 "\"},\"created\":\"yesterday\"}",
                 SLM_E_CORRUPT, "'created'");
    slm_store_close(st);
}

/* ---------------------------------------------------------------- resolve */

Test(store, write_manifest_then_resolve, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    char src[PATH_MAX], digest[72];
    snprintf(src, sizeof(src), "%s/hello.bin", g_home);
    write_file(src, "hello");
    cr_assert_eq(slm_store_import_blob(st, src, NULL, true, digest, NULL), SLM_OK);

    struct slm_name n;
    cr_assert_eq(slm_name_parse("me/tiny:v1", &n, NULL), SLM_OK);
    json_t *doc = json_pack("{sis{sssi}ss}", "schema", 1, "model", "digest", digest, "size", 5,
                            "system", "sys");
    struct slm_err err = {0};
    cr_assert_eq(slm_store_write_manifest(st, &n, doc, &err), SLM_OK, "%s", err.msg);
    json_decref(doc);

    struct slm_manifest *m = NULL;
    cr_assert_eq(slm_store_resolve(st, "me/tiny:v1", &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(m->name, "me/tiny:v1");
    cr_assert_str_eq(m->system, "sys");
    cr_assert(slm_file_exists(m->model_path));
    slm_manifest_free(m);

    int rc = slm_store_resolve(st, "me/tiny", &m, &err);
    cr_assert_eq(rc, SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "slm pull me/tiny") != NULL, "%s", err.msg);
    cr_assert_eq(slm_store_resolve(st, "../../etc/passwd:x", &m, &err), SLM_E_NOT_FOUND);
    cr_assert_eq(slm_store_resolve(st, "a b", &m, &err), SLM_E_INVALID);

    /* A blob that went missing is reported, not handed out. */
    char blob[PATH_MAX];
    slm_store_blob_path(st, HELLO_SHA, blob, sizeof(blob));
    unlink(blob);
    rc = slm_store_resolve(st, "me/tiny:v1", &m, &err);
    cr_assert_eq(rc, SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "missing") != NULL, "%s", err.msg);

    /* A damaged manifest file is SLM_E_CORRUPT. */
    char mpath[PATH_MAX];
    slm_store_manifest_path(st, &n, mpath, sizeof(mpath));
    write_file(mpath, "{not json");
    cr_assert_eq(slm_store_resolve(st, "me/tiny:v1", &m, &err), SLM_E_CORRUPT);
    slm_store_close(st);
}

Test(store, resolve_alias_and_local_path, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    char src[PATH_MAX], digest[72];
    snprintf(src, sizeof(src), "%s/model.gguf", g_home);
    write_file(src, "hello");
    cr_assert_eq(slm_store_import_blob(st, src, NULL, false, digest, NULL), SLM_OK);

    /* Pulled under the alias target's name: the alias finds it. */
    struct slm_name n;
    cr_assert_eq(slm_name_parse(slm_alias_find("stories260k")->target, &n, NULL), SLM_OK);
    json_t *doc = json_pack("{sis{sssi}}", "schema", 1, "model", "digest", digest, "size", 5);
    cr_assert_eq(slm_store_write_manifest(st, &n, doc, NULL), SLM_OK);
    json_decref(doc);
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_store_resolve(st, "stories260k", &m, &err), SLM_OK, "%s", err.msg);
    slm_manifest_free(m);

    /* A local path is synthesized with its real path and no digest. */
    cr_assert_eq(slm_store_resolve(st, src, &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(m->name, src);
    cr_assert_null(m->model_digest);
    cr_assert_eq(m->model_size, 5);
    cr_assert_eq(m->n_adapters, 0);
    cr_assert_not_null(m->params);
    slm_manifest_free(m);
    cr_assert_eq(slm_store_resolve(st, "/nonexistent/m.gguf", &m, &err), SLM_E_NOT_FOUND);
    slm_store_close(st);
}

Test(store, replacing_a_manifest_releases_its_old_blobs, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    char src[PATH_MAX], d1[72], d2[72], b1[PATH_MAX], b2[PATH_MAX];
    snprintf(src, sizeof(src), "%s/x.bin", g_home);
    write_file(src, "one");
    cr_assert_eq(slm_store_import_blob(st, src, NULL, false, d1, NULL), SLM_OK);
    write_file(src, "two");
    cr_assert_eq(slm_store_import_blob(st, src, NULL, false, d2, NULL), SLM_OK);
    slm_store_blob_path(st, d1 + 7, b1, sizeof(b1));
    slm_store_blob_path(st, d2 + 7, b2, sizeof(b2));
    struct slm_name a, b;
    cr_assert_eq(slm_name_parse("a", &a, NULL), SLM_OK);
    cr_assert_eq(slm_name_parse("b", &b, NULL), SLM_OK);
    json_t *doc1 = json_pack("{sis{ss}}", "schema", 1, "model", "digest", d1);
    json_t *doc2 = json_pack("{sis{ss}}", "schema", 1, "model", "digest", d2);
    cr_assert_eq(slm_store_write_manifest(st, &a, doc1, NULL), SLM_OK);
    cr_assert_eq(slm_store_write_manifest(st, &b, doc1, NULL), SLM_OK);
    cr_assert_eq(slm_store_write_manifest(st, &a, doc2, NULL), SLM_OK);
    cr_assert(slm_file_exists(b1), "still used by b");
    cr_assert_eq(slm_store_write_manifest(st, &b, doc2, NULL), SLM_OK);
    cr_assert_not(slm_file_exists(b1), "no longer used by anyone");
    cr_assert(slm_file_exists(b2));
    json_decref(doc1);
    json_decref(doc2);
    slm_store_close(st);
}

/* ---------------------------------------------------------------- pull names */

Test(store_pull, sources) {
    struct slm_source s;
    struct slm_err err = {0};
    cr_assert_eq(slm_source_parse("stories260k", &s, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(s.kind, SLM_SOURCE_HF_FILE);
    cr_assert_str_eq(s.org, "ggml-org");
    cr_assert_str_eq(s.repo, "models");
    cr_assert_str_eq(s.path, "tinyllamas/stories260K.gguf");
    cr_assert_str_eq(s.name.name, "stories260k");
    cr_assert_not_null(s.pinned_sha256);

    cr_assert_eq(slm_source_parse("smollm2:135m", &s, &err), SLM_OK);
    cr_assert_eq(s.kind, SLM_SOURCE_HF_QUANT);
    cr_assert_str_eq(s.quant, "Q4_K_M");
    cr_assert_str_eq(s.name.name, "smollm2");
    cr_assert_str_eq(s.name.tag, "135m");

    cr_assert_eq(slm_source_parse("huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF", &s, &err),
                 SLM_OK);
    cr_assert_eq(s.kind, SLM_SOURCE_HF_QUANT);
    cr_assert_str_eq(s.quant, "");
    cr_assert_str_eq(s.name.name, "hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF");

    cr_assert_eq(slm_source_parse("https://example.com/dir/My Model.gguf", &s, &err),
                 SLM_E_INVALID);
    cr_assert_eq(slm_source_parse("https://example.com/dir/my.model-Q8_0.gguf?x=1", &s, &err),
                 SLM_OK);
    cr_assert_eq(s.kind, SLM_SOURCE_URL);
    cr_assert_str_eq(s.name.name, "my.model-Q8_0");

    cr_assert_eq(slm_source_parse("hf.co/only-org", &s, &err), SLM_E_INVALID);
    cr_assert_eq(slm_source_parse("hf.co/o/r/readme.md", &s, &err), SLM_E_INVALID);
    cr_assert_eq(slm_source_parse("hf.co/o/r/../x.gguf", &s, &err), SLM_E_INVALID);
    cr_assert_eq(slm_source_parse("llama3", &s, &err), SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "unknown model 'llama3'") != NULL, "%s", err.msg);
    cr_assert_eq(slm_source_parse("", &s, &err), SLM_E_INVALID);
}

#define SHA_A "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"

static const char g_listing[] =
    "[{\"type\":\"file\",\"path\":\"README.md\",\"size\":10,\"oid\":\"abc\"},"
    "{\"type\":\"directory\",\"path\":\"old\",\"size\":0},"
    "{\"type\":\"file\",\"path\":\"M-Q4_K_M.gguf\",\"size\":7,"
    "\"lfs\":{\"oid\":\"" SHA_A "\",\"size\":1234,\"pointerSize\":134}},"
    "{\"type\":\"file\",\"path\":\"M-Q4_K_L.gguf\",\"size\":8,"
    "\"lfs\":{\"oid\":\"sha256:" SHA_A "\",\"size\":99}},"
    "{\"type\":\"file\",\"path\":\"M-Q8_0.gguf\",\"size\":9},"
    "{\"type\":\"file\",\"path\":\"mmproj-M-Q8_0.gguf\",\"size\":9},"
    "{\"type\":\"file\",\"path\":\"sub/M-IQ4_XS.gguf\",\"size\":3},"
    "{\"type\":\"file\",\"path\":7},{\"nonsense\":true},5]";

static size_t pick(const struct slm_hf_file *f, size_t n, const char *q, int want_rc) {
    size_t idx = SIZE_MAX;
    struct slm_err err = {0};
    int rc = slm_hf_pick_quant(f, n, q, &idx, &err);
    cr_assert_eq(rc, want_rc, "'%s': %s", q ? q : "(null)", err.msg);
    return idx;
}

Test(store_pull, tree_listing_and_quant_choice) {
    struct slm_hf_file *f = NULL;
    size_t n = 0;
    struct slm_err err = {0};
    cr_assert_eq(slm_hf_tree_parse(g_listing, strlen(g_listing), &f, &n, &err), SLM_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 6); /* directories and malformed entries skipped */
    cr_assert_str_eq(f[1].path, "M-Q4_K_M.gguf");
    cr_assert_eq(f[1].size, 1234); /* lfs.size wins */
    cr_assert_str_eq(f[1].sha256, SHA_A);
    cr_assert_str_eq(f[2].sha256, SHA_A); /* "sha256:" prefix dropped */
    cr_assert_str_eq(f[3].sha256, "");

    cr_assert_str_eq(f[pick(f, n, "Q4_K_M", SLM_OK)].path, "M-Q4_K_M.gguf");
    cr_assert_str_eq(f[pick(f, n, "q4_k_m", SLM_OK)].path, "M-Q4_K_M.gguf");
    cr_assert_str_eq(f[pick(f, n, "Q8_0", SLM_OK)].path, "M-Q8_0.gguf"); /* not mmproj */
    cr_assert_str_eq(f[pick(f, n, "", SLM_OK)].path, "M-Q4_K_M.gguf");
    cr_assert_str_eq(f[pick(f, n, NULL, SLM_OK)].path, "M-Q4_K_M.gguf");
    cr_assert_str_eq(f[pick(f, n, "IQ4_XS", SLM_OK)].path, "sub/M-IQ4_XS.gguf");
    /* "Q4_K" is a whole token of neither: ambiguous, with the candidates. */
    size_t idx;
    cr_assert_eq(slm_hf_pick_quant(f, n, "Q4_K", &idx, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "ambiguous") && strstr(err.msg, "M-Q4_K_L.gguf"), "%s", err.msg);
    cr_assert_eq(slm_hf_pick_quant(f, n, "Q3_K_S", &idx, &err), SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "M-Q8_0.gguf") != NULL, "%s", err.msg);
    cr_assert_eq(slm_hf_find_path(f, n, "M-Q8_0.gguf"), 3);
    cr_assert_eq(slm_hf_find_path(f, n, "nope"), -1);
    slm_hf_files_free(f, n);

    /* A whole-token match beats substring matches. */
    static const char two[] = "[{\"type\":\"file\",\"path\":\"a-Q4_0.gguf\"},"
                              "{\"type\":\"file\",\"path\":\"a-Q4_0_4_4.gguf\"}]";
    cr_assert_eq(slm_hf_tree_parse(two, strlen(two), &f, &n, &err), SLM_OK);
    cr_assert_str_eq(f[pick(f, n, "Q4_0", SLM_OK)].path, "a-Q4_0.gguf");
    /* Without a tag and without Q4_K_M: ambiguous between two files. */
    pick(f, n, "", SLM_E_NOT_FOUND);
    slm_hf_files_free(f, n);

    cr_assert_eq(slm_hf_tree_parse("{}", 2, &f, &n, &err), SLM_E_INVALID);
    cr_assert_eq(slm_hf_tree_parse("[", 1, &f, &n, &err), SLM_E_INVALID);
    cr_assert_eq(slm_hf_tree_parse("[]", 2, &f, &n, &err), SLM_OK);
    pick(f, n, "Q4_K_M", SLM_E_NOT_FOUND);
    slm_hf_files_free(f, n);
}

/* ---------------------------------------------------------------- pull, list, cp, rm */

static void mkdirs(const char *path) {
    cr_assert_eq(slm_mkdir_p(path, NULL), SLM_OK, "%s", path);
}

Test(store_pull, from_folder_mirror_then_list_copy_remove, .init = make_home, .fini = remove_home) {
    char repo[512], file[PATH_MAX], home[PATH_MAX];
    snprintf(repo, sizeof(repo), "%s/mirror/acme/m-GGUF/resolve/main", g_home);
    mkdirs(repo);
    snprintf(file, sizeof(file), "%s/m-Q4_K_M.gguf", repo);
    write_file(file, "hello");
    snprintf(home, sizeof(home), "%s/home", g_home);
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(home, &st, NULL), SLM_OK);

    char mirror[PATH_MAX];
    snprintf(mirror, sizeof(mirror), "%s/mirror", g_home);
    struct slm_pull_params pp = slm_pull_params_default();
    pp.mirror = mirror;
    struct slm_pull_result res;
    struct slm_err err = {0};
    cr_assert_eq(slm_pull(st, "hf.co/acme/m-GGUF:Q4_K_M", &pp, &res, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(res.name, "hf.co/acme/m-GGUF:Q4_K_M");
    cr_assert_str_eq(res.digest, "sha256-" HELLO_SHA);
    cr_assert_not(res.verified); /* no listing in this mirror */
    cr_assert_not(res.already);
    cr_assert_eq(slm_pull(st, "hf.co/acme/m-GGUF:Q4_K_M", &pp, &res, &err), SLM_OK);
    cr_assert(res.already);

    /* With a pinned or given digest that does not match: refused, nothing named. */
    pp.sha256 = SHA_A;
    cr_assert_eq(slm_pull(st, "hf.co/acme/m-GGUF/m-Q4_K_M.gguf", &pp, &res, &err), SLM_E_CORRUPT);
    pp.sha256 = NULL;
    cr_assert_eq(slm_pull(st, "https://example.invalid/m.gguf", &pp, &res, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "--sha256") != NULL, "%s", err.msg);
    pp.mirror = "/nonexistent/mirror";
    cr_assert_eq(slm_pull(st, "hf.co/acme/m-GGUF:Q4_K_M", &pp, &res, &err), SLM_E_NOT_FOUND);

    struct slm_store_entry *items = NULL;
    size_t n = 0;
    cr_assert_eq(slm_store_list(st, &items, &n, &err), SLM_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(items[0].name, "hf.co/acme/m-GGUF:Q4_K_M");
    cr_assert_eq(items[0].size, 5);
    cr_assert_not(items[0].damaged);
    free(items);

    cr_assert_eq(slm_store_copy(st, "hf.co/acme/m-GGUF:Q4_K_M", "me/m", &err), SLM_OK, "%s",
                 err.msg);
    cr_assert_eq(slm_store_copy(st, "nope", "me/x", &err), SLM_E_NOT_FOUND);
    cr_assert_eq(slm_store_copy(st, "me/m", "../x", &err), SLM_E_INVALID);
    cr_assert_eq(slm_store_list(st, &items, &n, &err), SLM_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(items[0].id, items[1].id);
    free(items);

    struct slm_remove_result rr;
    cr_assert_eq(slm_store_remove(st, "hf.co/acme/m-GGUF:Q4_K_M", &rr, &err), SLM_OK);
    cr_assert_eq(rr.blobs_removed, 0); /* me/m still uses it */
    cr_assert_eq(slm_store_remove(st, "me/m", &rr, &err), SLM_OK);
    cr_assert_eq(rr.blobs_removed, 1);
    cr_assert_eq(rr.bytes_freed, 5);
    cr_assert_eq(slm_store_remove(st, "me/m", &rr, &err), SLM_E_NOT_FOUND);
    cr_assert_eq(slm_store_list(st, &items, &n, &err), SLM_OK);
    cr_assert_eq(n, 0);
    free(items);
    char manifests[PATH_MAX + 16];
    snprintf(manifests, sizeof(manifests), "%s/manifests/me", home);
    cr_assert_not(slm_dir_exists(manifests), "empty folders are pruned");
    slm_store_close(st);
}

/* ---------------------------------------------------------------- create */

Test(store_create, modelfile_into_manifest, .init = make_home, .fini = remove_home) {
    char dir[512], path[PATH_MAX], home[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/mf", g_home);
    mkdirs(dir);
    snprintf(path, sizeof(path), "%s/base.gguf", dir);
    write_file(path, "GGUF-not-really-a-model");
    snprintf(path, sizeof(path), "%s/t.liquid", dir);
    write_file(path, "{{ input }}");
    snprintf(home, sizeof(home), "%s/home", g_home);
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(home, &st, NULL), SLM_OK);

    static const char mf1[] = "FROM ./base.gguf\nADAPTER base.gguf\nPARAMETER seed 7\n"
                              "TEMPLATE t.liquid\nSYSTEM s1\nMESSAGE user u\n";
    struct slm_create_params cp = {.text = mf1, .text_len = strlen(mf1), .base_dir = dir};
    struct slm_err err = {0};
    cr_assert_eq(slm_create(st, "me/a", &cp, &err), SLM_OK, "%s", err.msg);
    struct slm_manifest *m = NULL;
    cr_assert_eq(slm_store_resolve(st, "me/a", &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(m->n_adapters, 1);
    cr_assert_str_eq(m->adapters[0].digest, m->model_digest);
    cr_assert_eq(json_integer_value(json_object_get(m->params, "seed")), 7);
    cr_assert_not_null(m->template_path);
    cr_assert_str_eq(m->system, "s1");
    slm_manifest_free(m);

    /* FROM another model: inherited, then overridden. */
    static const char mf2[] = "FROM me/a\nPARAMETER seed 8\nPARAMETER top_k 3\n"
                              "TEMPLATE \"\"\"{% if system %}{{ system }}{% endif %}\"\"\"\n";
    cp.text = mf2;
    cp.text_len = strlen(mf2);
    cr_assert_eq(slm_create(st, "me/b", &cp, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_store_resolve(st, "me/b", &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(m->params, "seed")), 8);
    cr_assert_eq(json_integer_value(json_object_get(m->params, "top_k")), 3);
    cr_assert_str_eq(m->system, "s1");
    cr_assert_eq(m->n_adapters, 1);
    cr_assert_eq(json_array_size(m->messages), 1);
    struct slm_buf t = {0};
    cr_assert_eq(slm_file_read(m->template_path, 0, &t, NULL), SLM_OK);
    cr_assert_str_eq(t.ptr, "{% if system %}{{ system }}{% endif %}");
    slm_buf_free(&t);
    slm_manifest_free(m);

    /* Errors: Go templates, a missing base, a non-GGUF adapter; nothing created. */
    static const char bad1[] = "FROM me/a\n# comment\nTEMPLATE {{ .Prompt }}\n";
    cp.text = bad1;
    cp.text_len = strlen(bad1);
    cr_assert_eq(slm_create(st, "me/c", &cp, &err), SLM_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "Modelfile:3: TEMPLATE:") && strstr(err.msg, "Liquid"), "%s",
              err.msg);
    static const char bad2[] = "FROM me/none\n";
    cp.text = bad2;
    cp.text_len = strlen(bad2);
    cr_assert_eq(slm_create(st, "me/c", &cp, &err), SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "Modelfile:1: FROM:") != NULL, "%s", err.msg);
    static const char bad3[] = "FROM me/a\nADAPTER t.liquid\n";
    cp.text = bad3;
    cp.text_len = strlen(bad3);
    cr_assert_eq(slm_create(st, "me/c", &cp, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "Modelfile:2: ADAPTER: t.liquid is not a GGUF file") != NULL, "%s",
              err.msg);
    cr_assert_eq(slm_create(st, "bad name", &cp, &err), SLM_E_INVALID);
    cr_assert_eq(slm_store_resolve(st, "me/c", &m, &err), SLM_E_NOT_FOUND);
    slm_store_close(st);
}

Test(store, resolve_base_plus_adapter, .init = make_home, .fini = remove_home) {
    struct slm_store *st = NULL;
    cr_assert_eq(slm_store_open(g_home, &st, NULL), SLM_OK);
    char model[PATH_MAX], adapter[PATH_MAX], digest[72];
    snprintf(model, sizeof(model), "%s/model.gguf", g_home);
    snprintf(adapter, sizeof(adapter), "%s/lora.gguf", g_home);
    write_file(model, "model bytes");
    write_file(adapter, "adapter bytes");
    char text[2 * PATH_MAX + 2];
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};

    /* A local base plus an adapter file. */
    snprintf(text, sizeof(text), "%s+%s", model, adapter);
    cr_assert_eq(slm_store_resolve(st, text, &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(m->n_adapters, 1);
    cr_assert_str_eq(m->adapters[0].path, adapter);
    cr_assert_float_eq(m->adapters[0].scale, 1.0f, 1e-6);
    slm_manifest_free(m);

    /* A store model plus a store model that carries adapters (scales kept). */
    cr_assert_eq(slm_store_import_blob(st, model, NULL, false, digest, NULL), SLM_OK);
    char adigest[72];
    cr_assert_eq(slm_store_import_blob(st, adapter, NULL, false, adigest, NULL), SLM_OK);
    struct slm_name base, tuned;
    cr_assert_eq(slm_name_parse("base", &base, NULL), SLM_OK);
    cr_assert_eq(slm_name_parse("tuned", &tuned, NULL), SLM_OK);
    json_t *doc = json_pack("{sis{ss}}", "schema", 1, "model", "digest", digest);
    cr_assert_eq(slm_store_write_manifest(st, &base, doc, NULL), SLM_OK);
    json_decref(doc);
    doc = json_pack("{sis{ss}s[{sssf}]}", "schema", 1, "model", "digest", digest, "adapters",
                    "digest", adigest, "scale", 0.5);
    cr_assert_eq(slm_store_write_manifest(st, &tuned, doc, NULL), SLM_OK);
    json_decref(doc);
    cr_assert_eq(slm_store_resolve(st, "base+tuned", &m, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(m->n_adapters, 1);
    cr_assert_float_eq(m->adapters[0].scale, 0.5f, 1e-6);
    slm_manifest_free(m);

    /* Errors: nothing after '+', an adapter name without adapters, a missing file. */
    cr_assert_eq(slm_store_resolve(st, "base+", &m, &err), SLM_E_INVALID);
    cr_assert_eq(slm_store_resolve(st, "base+base", &m, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "no adapters") != NULL, "%s", err.msg);
    cr_assert_eq(slm_store_resolve(st, "base+nosuch", &m, &err), SLM_E_NOT_FOUND);
    cr_assert_null(m);
    slm_store_close(st);
}
