/*
 * test_base.c - strings, buffers, arenas, files, sha256, numbers, UTF-8, the
 * SVG chart writer.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include "slm/sync.h"
#include "slm/sys.h"

#include "slm/base.h"
#include "slm/json.h"
#include "slm/svg.h"

Test(base, str_views) {
    struct slm_str s = SLM_STR("  hello world \n");
    struct slm_str t = slm_str_trim(s);
    cr_assert(slm_str_eq_c(t, "hello world"));
    cr_assert(slm_str_starts_with(t, SLM_STR("hello")));
    cr_assert(slm_str_ends_with(t, SLM_STR("world")));
    cr_assert_eq(slm_str_find(t, SLM_STR("world"), 0), 6);
    cr_assert_eq(slm_str_find(t, SLM_STR("xyz"), 0), SIZE_MAX);
    cr_assert(slm_str_eq_nocase(SLM_STR("Q4_K_M"), SLM_STR("q4_k_m")));
    cr_assert(slm_str_contains_nocase(SLM_STR("model-Q4_K_M.gguf"), SLM_STR("q4_k_m")));
    cr_assert(slm_str_eq_c(slm_str_sub(t, 6, 100), "world"));
}

Test(base, buf_cap_is_enforced_and_buffer_unchanged) {
    struct slm_buf b;
    slm_buf_init(&b, 8);
    cr_assert_eq(slm_buf_puts(&b, "12345678"), SLM_OK);
    cr_assert_eq(slm_buf_putc(&b, '9'), SLM_E_TOO_LARGE);
    cr_assert_str_eq(b.ptr, "12345678");
    slm_buf_consume(&b, 3);
    cr_assert_str_eq(b.ptr, "45678");
    cr_assert_eq(slm_buf_printf(&b, "%d", 123), SLM_OK);
    cr_assert_str_eq(b.ptr, "45678123");
    cr_assert_eq(slm_buf_printf(&b, "%d", 4), SLM_E_TOO_LARGE);
    char *p = slm_buf_take(&b);
    cr_assert_str_eq(p, "45678123");
    free(p);
    cr_assert_null(b.ptr);
}

Test(base, buf_printf_long) {
    struct slm_buf b = {0};
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(slm_buf_printf(&b, "[%s]", big), SLM_OK);
    cr_assert_eq(b.len, 1001);
    slm_buf_free(&b);
}

Test(base, arena_cap) {
    struct slm_arena a;
    slm_arena_init(&a, 1024);
    void *p = slm_arena_alloc(&a, 1000);
    cr_assert_not_null(p);
    cr_assert_eq(((uintptr_t)p) % 16, 0);
    cr_assert_null(slm_arena_alloc(&a, 100));
    slm_arena_free(&a);
    slm_arena_init(&a, 0);
    for (int i = 0; i < 10000; i++) {
        char *s = slm_arena_strndup(&a, "abc", 3);
        cr_assert_str_eq(s, "abc");
    }
    slm_arena_free(&a);
}

Test(base, sha256_vectors) {
    char hex[65];
    slm_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    slm_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    slm_sha256_hex(m, strlen(m), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* Incremental updates of odd sizes give the same digest. */
    struct slm_sha256 s;
    slm_sha256_init(&s);
    for (const char *p = m; *p; p++) {
        slm_sha256_update(&s, p, 1);
    }
    uint8_t d[32];
    slm_sha256_final(&s, d);
    slm_hex_encode(d, 32, hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    cr_assert(slm_is_sha256_hex(slm_str_c(hex)));
    cr_assert(!slm_is_sha256_hex(SLM_STR("xyz")));
}

Test(base, files_atomic_and_capped_read) {
    char dir[] = "/tmp/slm-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char sub[256], path[300];
    snprintf(sub, sizeof(sub), "%s/a/b/c", dir);
    cr_assert_eq(slm_mkdir_p(sub, NULL), SLM_OK);
    snprintf(path, sizeof(path), "%s/file.txt", sub);
    cr_assert_eq(slm_file_write_atomic(path, "hello", 5, NULL), SLM_OK);
    struct slm_buf b = {0};
    cr_assert_eq(slm_file_read(path, 0, &b, NULL), SLM_OK);
    cr_assert_str_eq(b.ptr, "hello");
    struct slm_err err;
    cr_assert_eq(slm_file_read(path, 3, &b, &err), SLM_E_TOO_LARGE);
    cr_assert(strstr(err.msg, "larger than 3") != NULL);
    cr_assert_eq(slm_file_read(path, 5, &b, &err), SLM_OK);
    cr_assert_eq(slm_file_read("/nonexistent/x", 0, &b, &err), SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "/nonexistent/x") != NULL);
    char hex[65];
    cr_assert_eq(slm_sha256_file(path, hex, NULL), SLM_OK);
    cr_assert_str_eq(hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    slm_buf_free(&b);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(base, numbers_are_strict) {
    int64_t i;
    double d;
    uint64_t u;
    cr_assert_eq(slm_parse_i64(SLM_STR("-42"), &i), SLM_OK);
    cr_assert_eq(i, -42);
    cr_assert_eq(slm_parse_i64(SLM_STR("42x"), &i), SLM_E_INVALID);
    cr_assert_eq(slm_parse_i64(SLM_STR(""), &i), SLM_E_INVALID);
    cr_assert_eq(slm_parse_i64(SLM_STR("99999999999999999999"), &i), SLM_E_INVALID);
    cr_assert_eq(slm_parse_u64(SLM_STR("-1"), &u), SLM_E_INVALID);
    cr_assert_eq(slm_parse_f64(SLM_STR("0.25"), &d), SLM_OK);
    cr_assert_float_eq(d, 0.25, 1e-12);
    cr_assert_eq(slm_parse_f64(SLM_STR("nan"), &d), SLM_E_INVALID);
    cr_assert_eq(slm_parse_f64(SLM_STR("1e999"), &d), SLM_E_INVALID);
}

Test(base, utf8_boundaries) {
    const char *e = "caf\xc3\xa9"; /* café */
    cr_assert_eq(slm_utf8_complete_len(e, 5), 5);
    cr_assert_eq(slm_utf8_complete_len(e, 4), 3); /* holds the lead byte */
    const char *emoji = "\xf0\x9f\x98\x80";
    cr_assert_eq(slm_utf8_complete_len(emoji, 3), 0);
    cr_assert_eq(slm_utf8_complete_len(emoji, 4), 4);
    cr_assert(slm_utf8_valid(e, 5));
    cr_assert(!slm_utf8_valid(e, 4));
    cr_assert(!slm_utf8_valid("\xc0\x80", 2));     /* overlong */
    cr_assert(!slm_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
}

Test(base, json_helpers) {
    json_t *v = NULL;
    struct slm_err err;
    cr_assert_eq(slm_json_parse("{\"a\":1,\"a\":2}", 13, "body", &v, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "body:1:") != NULL);
    cr_assert_eq(slm_json_parse("{\"n\":3,\"s\":\"x\",\"b\":true}", 24, "body", &v, &err), SLM_OK);
    int64_t n;
    const char *s;
    bool b;
    cr_assert_eq(slm_json_get_int(v, "n", 0, &n, &err), SLM_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(slm_json_get_int(v, "s", 0, &n, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "'s'") != NULL);
    cr_assert_eq(slm_json_get_str(v, "missing", "dflt", &s, &err), SLM_OK);
    cr_assert_str_eq(s, "dflt");
    cr_assert_eq(slm_json_get_bool(v, "b", false, &b, &err), SLM_OK);
    cr_assert(b);
    struct slm_buf out = {0};
    cr_assert_eq(slm_json_dump(v, &out), SLM_OK);
    cr_assert_str_eq(out.ptr, "{\"n\":3,\"s\":\"x\",\"b\":true}");
    slm_buf_free(&out);
    json_decref(v);
}

static size_t pct_label(double v, char *out, size_t cap, void *user) {
    (void)user;
    return (size_t)snprintf(out, cap, "%.0f%%", 100 * v);
}

Test(base, svg_chart_maps_labels_and_escapes) {
    struct slm_svg_chart c = {.width = 200, .height = 100, .margin = {20, 10, 30, 20}};
    c.title = "a <b> & 'c'";
    c.x = (struct slm_svg_axis){.min = 0, .max = 10, .ticks = 2, .fmt = "%.0f", .title = "step"};
    c.y = (struct slm_svg_axis){.min = 0, .max = 1, .ticks = 4, .label = pct_label};
    /* The plot area is [20, 190] x [30, 80]; y grows upwards. */
    cr_assert_float_eq(slm_svg_px(&c, 0), 20, 1e-9);
    cr_assert_float_eq(slm_svg_px(&c, 10), 190, 1e-9);
    cr_assert_float_eq(slm_svg_py(&c, 0), 80, 1e-9);
    cr_assert_float_eq(slm_svg_py(&c, 1), 30, 1e-9);
    struct slm_buf b = {0};
    const struct slm_svg_style s = {"#123456", 1.5, "4 2"};
    cr_assert_eq(slm_svg_begin(&b, &c), SLM_OK);
    cr_assert_eq(slm_svg_line_begin(&b, &s), SLM_OK);
    cr_assert_eq(slm_svg_line_point(&b, &c, 0, 0), SLM_OK);
    cr_assert_eq(slm_svg_line_point(&b, &c, 5, NAN), SLM_OK); /* left out */
    cr_assert_eq(slm_svg_line_point(&b, &c, 10, 1), SLM_OK);
    cr_assert_eq(slm_svg_line_end(&b), SLM_OK);
    cr_assert_eq(slm_svg_marker(&b, &c, 5, 0.5, 3, "red"), SLM_OK);
    cr_assert_eq(slm_svg_legend(&b, &c, 0, &s, "x < y"), SLM_OK);
    cr_assert_eq(slm_svg_end(&b), SLM_OK);
    const char *t = slm_buf_cstr(&b);
    cr_assert(strncmp(t, "<?xml", 5) == 0);
    cr_assert(strstr(t, "<title>a &lt;b&gt; &amp; &apos;c&apos;</title>"), "%s", t);
    cr_assert(strstr(t, "points=\"20.0,80.0 190.0,30.0 \""), "%s", t);
    cr_assert(strstr(t, "stroke=\"#123456\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\""));
    cr_assert(strstr(t, ">75%</text>") && strstr(t, ">100%</text>"), "custom y labels");
    cr_assert(strstr(t, ">5</text>") && strstr(t, ">step</text>"), "x labels and title");
    cr_assert(strstr(t, "<circle cx=\"105.0\" cy=\"55.0\" r=\"3\" fill=\"red\"/>"), "%s", t);
    cr_assert(strstr(t, ">x &lt; y</text>"));
    cr_assert(!strstr(t, "nan") && !strstr(t, "inf"));
    cr_assert(strstr(t, "</svg>\n"));
    slm_buf_free(&b);
    cr_assert_float_eq(slm_svg_nice_max(7.5), 10, 1e-12);
    cr_assert_float_eq(slm_svg_nice_max(0.013), 0.02, 1e-12);
    cr_assert_float_eq(slm_svg_nice_max(-1), 1, 1e-12);
}

/* ---------------------------------------------------------------- log */

static char g_logged[4096];
static int g_log_lines;

static void capture(enum slm_log_level level, const char *line, void *user) {
    (void)level;
    (void)user;
    snprintf(g_logged, sizeof(g_logged), "%s", line);
    g_log_lines++;
}

/* Issue 14, hole 7: a value a client sent (a model name with a newline, an
 * escape sequence for the terminal) cannot start a forged log line. */
Test(log, a_record_is_one_line_whatever_it_quotes) {
    slm_log_set_sink(capture, NULL);
    enum slm_log_level old = (enum slm_log_level)slm__log_level;
    slm_log_set_level(SLM_LOG_INFO);
    SLM_LOG(SLM_LOG_INFO, "model=%s ms=1", "x\nslm: info: req=forged status=200\r\x1b[2J\t.");
    slm_log_set_level(old);
    slm_log_set_sink(NULL, NULL);
    cr_assert_eq(g_log_lines, 1);
    cr_assert_str_eq(g_logged, "model=x\\nslm: info: req=forged status=200\\r\\x1b[2J\\t. ms=1");
}

/* One case: `in` masked with the configured `keys` must read `want`. */
static void expect_masked(const char *in, const char *const *keys, size_t n_keys,
                          const char *want) {
    char s[512];
    snprintf(s, sizeof(s), "%s", in);
    size_t n = slm_mask_secrets(s, keys, n_keys);
    cr_assert_str_eq(s, want, "masking '%s'", in);
    cr_assert_eq(n, strlen(want));
}

Test(base, secrets_are_masked) {
    const char *keys[] = {"hunter2-the-key", NULL, "ab"};
    /* nothing key-like: unchanged */
    expect_masked("pool 'cloud': HTTP 500 after 3 attempts", keys, 3,
                  "pool 'cloud': HTTP 500 after 3 attempts");
    expect_masked("", keys, 3, "");
    expect_masked("risk-averse task_sk-1 skim", NULL, 0, "risk-averse task_sk-1 skim");
    /* the configured key values themselves, wherever they appear (short ones are ignored) */
    expect_masked("got hunter2-the-key twice: xhunter2-the-keyx", keys, 3, "got *** twice: x***x");
    expect_masked("ab is too short to be a key", keys, 3, "ab is too short to be a key");
    /* bearer and basic credentials */
    expect_masked("Authorization: Bearer abc.def-123", NULL, 0, "Authorization: Bearer ***");
    expect_masked("authorization: bearer   tok, then", NULL, 0,
                  "authorization: bearer   ***, then");
    expect_masked("Basic dXNlcjpwYXNz\"}", NULL, 0, "Basic ***\"}");
    expect_masked("a Bearer", NULL, 0, "a Bearer");
    /* key-shaped tokens, also the hints clouds put in 401 bodies */
    expect_masked("Incorrect API key provided: sk-proj-****************abcd. See docs", NULL, 0,
                  "Incorrect API key provided: sk-***. See docs");
    expect_masked("(sk_live_0123456789abcdef) gsk_0123456789 hf_abcdefghij AIzaSyA12345678", NULL,
                  0, "(sk_***) gsk_*** hf_*** AIza***");
    expect_masked("sk-short", NULL, 0, "sk-short");
    expect_masked("provided: zz-plain****abcd. ok **** a***b", NULL, 0,
                  "provided: ***. ok **** a***b");
    /* secret query parameters and key headers */
    expect_masked("GET https://h/v1/models?api_key=s3cr3t&x=1#f", NULL, 0,
                  "GET https://h/v1/models?api_key=***&x=1#f");
    expect_masked("https://h/v1?key=AbCdEf123 and access_token=xyz99 token=a", NULL, 0,
                  "https://h/v1?key=*** and access_token=*** token=a");
    expect_masked("monkey=banana keyboard=qwerty", NULL, 0, "monkey=banana keyboard=qwerty");
    expect_masked("x-api-key: abcdef123\r\nnext", NULL, 0, "x-api-key: ***\r\nnext");
    expect_masked("{\"api_key\": \"abcdef123\"}", NULL, 0, "{\"api_key\": \"***\"}");
    /* several rules in one line, never longer than the input */
    const char *one[] = {"k-9f8e7d6c"};
    expect_masked("k-9f8e7d6c Bearer k-9f8e7d6c sk-ABCDEFGHIJKL password=pw123", one, 1,
                  "*** Bearer *** sk-*** password=***");
}

/* ---------------------------------------------------------------- portable system calls */

Test(sys, descriptors_are_born_close_on_exec) {
    int fds[2];
    cr_assert_eq(slm_pipe_cloexec(fds), 0);
    cr_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    cr_assert(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
    cr_assert_eq(write(fds[1], "x", 1), 1);
    char c = 0;
    cr_assert_eq(read(fds[0], &c, 1), 1);
    cr_assert_eq(c, 'x');
    close(fds[0]);
    close(fds[1]);
    int s = slm_socket_cloexec(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s, 0);
    cr_assert(fcntl(s, F_GETFD) & FD_CLOEXEC);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s, 1), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
    int cl = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(cl, (struct sockaddr *)&a, sizeof(a)), 0);
    int in = slm_accept_cloexec(s, NULL, NULL);
    cr_assert_geq(in, 0);
    cr_assert(fcntl(in, F_GETFD) & FD_CLOEXEC);
    close(in);
    close(cl);
    close(s);
}

Test(sys, random_bytes_differ) {
    uint8_t a[16] = {0}, b[16] = {0};
    cr_assert_eq(slm_random_bytes(a, sizeof(a)), 0);
    cr_assert_eq(slm_random_bytes(b, sizeof(b)), 0);
    cr_assert_neq(memcmp(a, b, sizeof(a)), 0, "two draws of 128 bits were equal");
}

Test(sync, timed_waits_count_on_the_monotonic_clock) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c;
    cr_assert_eq(slm_cond_init_mono(&c), 0);
    pthread_mutex_lock(&m);
    double t0 = slm_time_mono();
    cr_assert_eq(slm_cond_wait_for(&c, &m, 0.05), ETIMEDOUT);
    double waited = slm_time_mono() - t0;
    cr_assert(waited >= 0.045 && waited < 2.0, "waited %.3f s for 0.05", waited);
    t0 = slm_time_mono();
    cr_assert_eq(slm_cond_wait_until(&c, &m, t0 + 0.03), ETIMEDOUT);
    cr_assert_geq(slm_time_mono() - t0, 0.025);
    cr_assert_eq(slm_cond_wait_until(&c, &m, t0 - 1), ETIMEDOUT, "a deadline passed: no wait");
    cr_assert_eq(slm_cond_wait_for(&c, &m, 0), ETIMEDOUT);
    pthread_mutex_unlock(&m);
    pthread_cond_destroy(&c);
}

Test(sys, threads_leave_the_busy_cpus_to_their_work) {
    cr_assert_eq(slm_threads_for(2, 0.0), 2);
    cr_assert_eq(slm_threads_for(2, 0.3), 2, "noise is not a busy CPU");
    cr_assert_eq(slm_threads_for(2, 0.6), 1, "a CPU half busy or more counts");
    cr_assert_eq(slm_threads_for(2, 2.0), 1, "never fewer than one thread");
    cr_assert_eq(slm_threads_for(8, 3.2), 5);
    cr_assert_eq(slm_threads_for(1, 5.0), 1);
    int p = slm_physical_cores();
    cr_assert_geq(p, 1);
    double busy = slm_cpus_busy(20);
    cr_assert(busy >= 0 && busy <= (double)sysconf(_SC_NPROCESSORS_ONLN) + 0.01, "%f", busy);
    int d = slm_default_threads();
    cr_assert(d >= 1 && d <= p);
}

/* The memory available: the system's answer, and the override the tests use. */
Test(sys, memory_available_reads_the_system_and_the_override) {
    unsetenv("SLM_MEMORY_AVAILABLE");
    struct slm_mem_avail a;
    cr_assert_eq(slm_mem_available(&a), 0);
    cr_assert_gt(a.total, 0);
    cr_assert_gt(a.available, 0);
    cr_assert(a.available <= a.total, "%llu > %llu", (unsigned long long)a.available,
              (unsigned long long)a.total);
    cr_assert_neq(a.source[0], '\0');
    setenv("SLM_MEMORY_AVAILABLE", "123456789", 1);
    cr_assert_eq(slm_mem_available(&a), 0);
    cr_assert_eq(a.available, 123456789);
    cr_assert_str_eq(a.source, "SLM_MEMORY_AVAILABLE");
    /* Not a whole number of bytes: ignored, the system's answer stands. */
    setenv("SLM_MEMORY_AVAILABLE", "12G", 1);
    cr_assert_eq(slm_mem_available(&a), 0);
    cr_assert_str_neq(a.source, "SLM_MEMORY_AVAILABLE");
    unsetenv("SLM_MEMORY_AVAILABLE");
}
