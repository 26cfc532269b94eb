/*
 * test_upstream.c - the router's upstream pool against real fake clouds: build/tools/fake_cloud
 * processes on loopback (from $SLM_TOOLS), each with its own JSONL log, which is what the
 * assertions check (what the cloud saw and charged), not only what the client says.
 *
 * Every fault path: 429 + Retry-After (seconds and HTTP-date), 5xx, timeouts, resets, refused
 * connections, malformed replies, wrong key (not retried), breakers opening and half-opening,
 * health probes, least-busy balancing, concurrency caps, deadline and cancellation. Latencies and
 * backoffs are small so the file runs in seconds.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slm/json.h"
#include "slm/upstream.h"

extern char **environ;

/* ---------------------------------------------------------------- fake clouds */

struct cloud {
    pid_t pid;
    unsigned port;
    char url[64];
    char log[128];
};

#define MAX_CLOUDS 8
static struct cloud g_clouds[MAX_CLOUDS];
static size_t g_n_clouds;
static char g_dir[64];

static void stop_all(void) {
    for (size_t i = 0; i < g_n_clouds; i++) {
        kill(g_clouds[i].pid, SIGTERM);
        waitpid(g_clouds[i].pid, NULL, 0);
        unlink(g_clouds[i].log);
    }
    g_n_clouds = 0;
    if (g_dir[0]) {
        char gold[128];
        snprintf(gold, sizeof(gold), "%s/gold.jsonl", g_dir);
        unlink(gold);
        rmdir(g_dir);
    }
}

static const char *tool_path(void) {
    static char path[512];
    const char *tools = getenv("SLM_TOOLS");
    snprintf(path, sizeof(path), "%s/fake_cloud", tools ? tools : "build/tools");
    return path;
}

/* A temporary folder for this test process's logs and gold files, removed by stop_all(). */
static const char *work_dir(void) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof(g_dir), "/tmp/slm-upstream-XXXXXX");
        cr_assert_not_null(mkdtemp(g_dir));
    }
    return g_dir;
}

/* Starts fake_cloud with `args` (NULL-terminated) plus --log; returns its record. */
static struct cloud *cloud_start(const char *const *args) {
    if (access(tool_path(), X_OK) != 0) {
        cr_skip_test("needs %s (set SLM_TOOLS)", tool_path());
    }
    work_dir();
    cr_assert_lt(g_n_clouds, MAX_CLOUDS);
    struct cloud *c = &g_clouds[g_n_clouds];
    snprintf(c->log, sizeof(c->log), "%s/cloud%zu-%d.log", g_dir, g_n_clouds, (int)getpid());
    unlink(c->log);
    const char *argv[40] = {tool_path(), "--log", c->log};
    size_t n = 3;
    for (size_t i = 0; args && args[i] && n < 38; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    cr_assert_eq(posix_spawn(&c->pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    g_n_clouds++;
    FILE *f = fdopen(fds[0], "r");
    char line[64] = "";
    cr_assert(fgets(line, sizeof(line), f), "fake_cloud printed no port");
    fclose(f);
    uint64_t port = 0;
    struct slm_str l = slm_str_trim(slm_str_c(line));
    cr_assert(slm_str_starts_with(l, SLM_STR("port=")));
    cr_assert_eq(slm_parse_u64(slm_str_sub(l, 5, l.len), &port), SLM_OK);
    c->port = (unsigned)port;
    snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%u/v1", c->port);
    return c;
}

/* A loopback port nobody listens on (bound, then closed). */
static unsigned free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    return ntohs(a.sin_port);
}

/* The cloud's log: lines, and the sum of charges and counts of a status. */
struct log_summary {
    size_t lines, ok;
    double charge;
    int64_t prompt_tokens, completion_tokens;
    char last_model[64];
    size_t client_ports; /* distinct client source ports: connections the cloud saw */
};

static struct log_summary read_log(const struct cloud *c) {
    struct log_summary s = {0};
    json_int_t ports[64];
    struct slm_buf b = {0};
    if (slm_file_read(c->log, 0, &b, NULL) != SLM_OK) {
        return s;
    }
    struct slm_str all = slm_buf_str(&b);
    size_t pos = 0;
    while (pos < all.len) {
        size_t nl = slm_str_find_char(all, '\n', pos);
        size_t end = nl == SIZE_MAX ? all.len : nl;
        json_t *o = NULL;
        cr_assert_eq(slm_json_parse(all.ptr + pos, end - pos, c->log, &o, NULL), SLM_OK);
        s.lines++;
        if (json_integer_value(json_object_get(o, "status")) == 200) {
            s.ok++;
        }
        s.charge += json_number_value(json_object_get(o, "charge"));
        s.prompt_tokens += json_integer_value(json_object_get(o, "prompt_tokens"));
        s.completion_tokens += json_integer_value(json_object_get(o, "completion_tokens"));
        snprintf(s.last_model, sizeof(s.last_model), "%s",
                 json_string_value(json_object_get(o, "model")));
        json_int_t port = json_integer_value(json_object_get(o, "client_port"));
        bool seen = false;
        for (size_t i = 0; i < s.client_ports && i < 64; i++) {
            seen = seen || ports[i] == port;
        }
        if (!seen && s.client_ports < 64) {
            ports[s.client_ports++] = port;
        }
        json_decref(o);
        pos = end + 1;
    }
    slm_buf_free(&b);
    return s;
}

/* The pool logs every failed attempt at WARN; the tests provoke hundreds. SLM_LOG=debug shows them.
 */
static void quiet(void) {
    enum slm_log_level level = SLM_LOG_ERROR;
    const char *e = getenv("SLM_LOG");
    if (e) {
        slm_log_level_parse(e, &level);
    }
    slm_log_set_level(level);
}

TestSuite(upstream, .init = quiet, .fini = stop_all);

/* ---------------------------------------------------------------- pools */

static struct slm_upstream_member member(const char *url) {
    return (struct slm_upstream_member){.base_url = url,
                                        .model = "cloud-model",
                                        .price_in_per_m = 3.0,
                                        .price_out_per_m = 15.0,
                                        .timeout_s = 5.0};
}

static struct slm_upstream_params fast_params(const struct slm_upstream_member *m, size_t n) {
    return (struct slm_upstream_params){.name = "cloud",
                                        .members = m,
                                        .n_members = n,
                                        .max_attempts = 3,
                                        .backoff_base_s = 0.01,
                                        .backoff_max_s = 2.0,
                                        .breaker_failures = 5,
                                        .breaker_cooldown_s = 30,
                                        .health_interval_s = -1,
                                        .seed = 42};
}

static struct slm_upstream_pool *open_pool(const struct slm_upstream_params *p) {
    struct slm_upstream_pool *pool = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_upstream_pool_open(p, &pool, &err), SLM_OK, "%s", err.msg);
    return pool;
}

static json_t *chat_request(const char *text) {
    return json_pack("{s:s, s:b, s:[{s:s, s:s}, {s:s, s:s}]}", "model", "route-name", "stream", 1,
                     "messages", "role", "system", "content", "Classify the message.", "role",
                     "user", "content", text);
}

/* One call; returns the status and leaves the result and error for the caller to inspect. */
static int call(struct slm_upstream_pool *pool, const char *text, double deadline,
                const volatile int *cancel, struct slm_upstream_result *r, struct slm_err *err) {
    json_t *req = chat_request(text);
    slm_err_clear(err);
    int rc = slm_upstream_chat(pool, req, deadline, cancel, r, err);
    json_decref(req);
    return rc;
}

static const char *answer_of(const struct slm_upstream_result *r) {
    const json_t *choice = json_array_get(json_object_get(r->response, "choices"), 0);
    return json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
}

static void write_gold(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(
        "{\"input\": \"my card was declined at the shop\", \"answer\": \"declined_card_payment\"}\n"
        "{\"input\": \"how do I top up\", \"answer\": \"top_up_by_card\"}\n",
        f);
    fclose(f);
}

/* ---------------------------------------------------------------- parsing */

Test(upstream, retry_after_values) {
    cr_expect_float_eq(slm_upstream_parse_retry_after("3", 1, 0), 3.0, 1e-9);
    cr_expect_float_eq(slm_upstream_parse_retry_after(" 0.5 ", 5, 0), 0.5, 1e-9);
    cr_expect_lt(slm_upstream_parse_retry_after("-1", 2, 0), 0);
    cr_expect_lt(slm_upstream_parse_retry_after("soon", 4, 0), 0);
    cr_expect_lt(slm_upstream_parse_retry_after("", 0, 0), 0);
    const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";
    cr_expect_float_eq(slm_upstream_parse_retry_after(d, strlen(d), 784111777.0 - 10), 10.0, 1e-9);
    cr_expect_float_eq(slm_upstream_parse_retry_after(d, strlen(d), 784111777.0 + 5), 0.0, 1e-9);
    const char *bad = "Sun, 06 Foo 1994 08:49:37 GMT";
    cr_expect_lt(slm_upstream_parse_retry_after(bad, strlen(bad), 0), 0);
}

Test(upstream, reply_parsing_is_defensive) {
    struct slm_upstream_reply r;
    struct slm_err err;
    const char *ok = "{\"choices\":[{\"message\":{\"content\":\"x\"}}],"
                     "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}";
    cr_assert_eq(slm_upstream_parse_reply(ok, strlen(ok), &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.tokens_in, 12);
    cr_expect_eq(r.tokens_out, 3);
    json_decref(r.body);
    const char *odd =
        "{\"choices\":[{}],\"usage\":{\"prompt_tokens\":-4,\"completion_tokens\":\"9\"}}";
    cr_assert_eq(slm_upstream_parse_reply(odd, strlen(odd), &r, &err), SLM_OK);
    cr_expect_eq(r.tokens_in, 0);
    cr_expect_eq(r.tokens_out, 0);
    json_decref(r.body);
    static const char *const bad[] = {
        "", "{", "[]", "{\"choices\":[]}", "{\"choices\":{}}", "{\"x\":1}", "null"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        cr_expect_eq(slm_upstream_parse_reply(bad[i], strlen(bad[i]), &r, &err), SLM_E_CORRUPT,
                     "%s", bad[i]);
        cr_expect(strstr(err.msg, "malformed reply"), "%s", err.msg);
    }
    cr_expect_eq(slm_upstream_parse_reply(ok, SLM_UPSTREAM_MAX_REPLY + 1, &r, &err),
                 SLM_E_TOO_LARGE);
    char msg[64];
    const char *e1 = "{\"error\":{\"message\":\"bad key\\n\"}}";
    slm_upstream_error_message(e1, strlen(e1), msg, sizeof(msg));
    cr_expect_str_eq(msg, "bad key ");
    slm_upstream_error_message("{\"error\":\"nope\"}", 16, msg, sizeof(msg));
    cr_expect_str_eq(msg, "nope");
    slm_upstream_error_message("<html>", 6, msg, sizeof(msg));
    cr_expect_str_eq(msg, "");
}

Test(upstream, price_and_validation) {
    struct slm_upstream_member m = member("http://x/v1");
    cr_expect_float_eq(slm_upstream_price(&m, 1000000, 2000000), 3.0 + 30.0, 1e-9);
    cr_expect_float_eq(slm_upstream_price(&m, -5, 0), 0.0, 1e-12);
    struct slm_upstream_member bad = member("ftp://x");
    struct slm_upstream_params p = fast_params(&bad, 1);
    struct slm_upstream_pool *pool = NULL;
    struct slm_err err;
    cr_expect_eq(slm_upstream_pool_open(&p, &pool, &err), SLM_E_INVALID);
    cr_expect(strstr(err.msg, "ftp://x") && strstr(err.msg, "cloud"), "%s", err.msg);
    p.n_members = 0;
    cr_expect_eq(slm_upstream_pool_open(&p, &pool, &err), SLM_E_INVALID);
    cr_expect_null(pool);
}

/* ---------------------------------------------------------------- answers and cost */

Test(upstream, answers_and_cost_match_the_cloud_log) {
    char gold[128];
    snprintf(gold, sizeof(gold), "%s/gold.jsonl", work_dir());
    write_gold(gold);
    struct cloud *c = cloud_start((const char *[]){"--gold", gold, "--price-in", "3", "--price-out",
                                                   "15", "--tokens", "bytes4", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    cr_expect_str_eq(slm_upstream_pool_name(pool), "cloud");
    static const char *const inputs[] = {"my card was declined at the shop", "how do I top up",
                                         "something the cloud never saw"};
    static const char *const answers[] = {"declined_card_payment", "top_up_by_card",
                                          "I don't know."};
    double cost = 0;
    int64_t tin = 0, tout = 0;
    for (size_t i = 0; i < 3; i++) {
        struct slm_upstream_result r;
        struct slm_err err;
        cr_assert_eq(call(pool, inputs[i], 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
        cr_expect_str_eq(answer_of(&r), answers[i]);
        cr_expect_eq(r.attempts, 1);
        cr_expect_eq(r.http_status, 200);
        cr_expect_str_eq(r.member, c->url);
        cr_expect_gt(r.tokens_in, 0);
        cr_expect_float_eq(r.cost, slm_upstream_price(&m, r.tokens_in, r.tokens_out), 1e-15);
        cost += r.cost;
        tin += r.tokens_in;
        tout += r.tokens_out;
        slm_upstream_result_free(&r);
    }
    struct log_summary s = read_log(c);
    cr_expect_eq(s.lines, 3);
    cr_expect_eq(s.prompt_tokens, tin);
    cr_expect_eq(s.completion_tokens, tout);
    cr_expect_float_eq(s.charge, cost, 1e-12, "cloud charged %.12g, client priced %.12g", s.charge,
                       cost);
    cr_expect_str_eq(s.last_model, "cloud-model"); /* the member's model, not the route's */
    cr_expect_eq(s.client_ports, 1, "%zu connections for 3 sequential calls: no keep-alive",
                 s.client_ports);
    slm_upstream_pool_free(pool);
}

Test(upstream, missing_usage_costs_nothing_and_malformed_is_retried) {
    struct cloud *c = cloud_start((const char *[]){"--faults", "malformed,nousage", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.attempts, 2);
    cr_expect_eq(r.tokens_in, 0);
    cr_expect_eq(r.tokens_out, 0);
    cr_expect_float_eq(r.cost, 0.0, 1e-15);
    cr_expect_eq(r.maybe_charged, 1, "the malformed 200 may have been billed");
    slm_upstream_result_free(&r);
    struct slm_upstream_member_stats st;
    cr_expect_eq(slm_upstream_pool_stats(pool, &st, 1), 1);
    cr_expect_eq(st.requests, 2);
    cr_expect_eq(st.failures, 1);
    slm_upstream_pool_free(pool);
}

/* ---------------------------------------------------------------- retries */

Test(upstream, retry_after_seconds_is_honoured) {
    struct cloud *c = cloud_start((const char *[]){"--faults", "429", "--retry-after", "1", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.attempts, 2);
    cr_expect_geq(r.latency_s, 0.95, "waited only %.3f s", r.latency_s);
    cr_expect_eq(r.maybe_charged, 0, "a 429 is not billed");
    slm_upstream_result_free(&r);
    struct log_summary s = read_log(c);
    cr_expect_eq(s.lines, 2);
    cr_expect_eq(s.ok, 1);
    slm_upstream_pool_free(pool);
}

Test(upstream, retry_after_http_date_is_honoured) {
    struct cloud *c =
        cloud_start((const char *[]){"--faults", "429", "--retry-after", "date:2", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.attempts, 2);
    /* The date has one-second resolution: 2 s ahead is at least 1 s of waiting. */
    cr_expect_geq(r.latency_s, 0.95, "waited only %.3f s", r.latency_s);
    slm_upstream_result_free(&r);
    slm_upstream_pool_free(pool);
}

Test(upstream, server_errors_then_success) {
    struct cloud *c = cloud_start((const char *[]){"--faults", "500,503", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.attempts, 3);
    cr_expect_eq(r.http_status, 200);
    slm_upstream_result_free(&r);
    struct slm_upstream_member_stats st;
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect_eq(st.requests, 3);
    cr_expect_eq(st.failures, 2);
    cr_expect(st.healthy);
    cr_expect_not(st.breaker_open);
    cr_expect_eq(read_log(c).lines, 3);
    slm_upstream_pool_free(pool);
}

Test(upstream, every_attempt_failing_is_a_clear_error) {
    struct cloud *c =
        cloud_start((const char *[]){"--faults", "429x10", "--retry-after", "0", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect(strstr(err.msg, "429 after 3 attempts") && strstr(err.msg, c->url), "%s", err.msg);
    cr_expect_null(r.response);
    cr_expect_eq(r.attempts, 3);
    cr_expect_eq(r.http_status, 429);
    slm_upstream_result_free(&r);
    cr_expect_eq(read_log(c).lines, 3);
    slm_upstream_pool_free(pool);
}

Test(upstream, timeout_then_success_and_timeouts_only) {
    struct cloud *c = cloud_start(
        (const char *[]){"--faults", "timeout,ok,timeout,timeout", "--hang-s", "5", NULL});
    struct slm_upstream_member m = member(c->url);
    m.timeout_s = 0.3;
    struct slm_upstream_params p = fast_params(&m, 1);
    p.max_attempts = 2;
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.attempts, 2);
    slm_upstream_result_free(&r);
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect(strstr(err.msg, "timeout after 0.3 s after 2 attempts"), "%s", err.msg);
    cr_expect_eq(r.http_status, 0);
    cr_expect_eq(r.maybe_charged, 2, "a request timed out after sending may still be billed");
    slm_upstream_result_free(&r);
    slm_upstream_pool_free(pool);
}

Test(upstream, connection_reset_then_success) {
    struct cloud *c = cloud_start((const char *[]){"--faults", "reset,reset", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    cr_expect_eq(r.attempts, 3);
    slm_upstream_result_free(&r);
    struct log_summary s = read_log(c);
    cr_expect_eq(s.lines, 3);
    cr_expect_eq(s.ok, 1);
    slm_upstream_pool_free(pool);
}

Test(upstream, connection_refused) {
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", free_port());
    struct slm_upstream_member m = member(url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect(strstr(err.msg, "connection refused after 3 attempts") && strstr(err.msg, url), "%s",
              err.msg);
    cr_expect_str_eq(r.member, url);
    slm_upstream_result_free(&r);
    struct slm_upstream_member_stats st;
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect_not(st.healthy);
    cr_expect_eq(st.failures, 3);
    slm_upstream_pool_free(pool);
}

Test(upstream, wrong_key_is_not_retried) {
    struct cloud *c = cloud_start((const char *[]){"--api-key", "sk-right", NULL});
    struct slm_upstream_member m = member(c->url);
    m.api_key = "sk-wrong";
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect_eq(r.attempts, 1);
    cr_expect_eq(r.http_status, 401);
    cr_expect(strstr(err.msg, "HTTP 401") && strstr(err.msg, "Incorrect API key"), "%s", err.msg);
    cr_expect_null(strstr(err.msg, "sk-wrong"), "the key leaked into: %s", err.msg);
    cr_expect_str_eq(r.failure, "unauthorized");
    slm_upstream_result_free(&r);
    slm_upstream_pool_free(pool);
    /* The cloud's 401 hints at the key it got ("sk-test-****cdef"): the message keeps the
     * cloud's words and masks the hint; a key of no known shape is masked as configured. */
    const char *keys[] = {"sk-test-0123456789abcdef", "zz-plain-0123456789-abcd"};
    for (size_t k = 0; k < 2; k++) {
        m.api_key = keys[k];
        pool = open_pool(&p);
        cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
        cr_expect(strstr(err.msg, "Incorrect API key provided"), "%s", err.msg);
        const char *tail = keys[k] + strlen(keys[k]) - 4;
        cr_expect_null(strstr(err.msg, tail), "the key's hint leaked into: %s", err.msg);
        cr_expect_null(strstr(err.msg, "****"), "the key's hint leaked into: %s", err.msg);
        slm_upstream_result_free(&r);
        slm_upstream_pool_free(pool);
    }
    cr_expect_eq(read_log(c).lines, 3);
    /* With the right key the same cloud answers. */
    m.api_key = "sk-right";
    pool = open_pool(&p);
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    slm_upstream_result_free(&r);
    slm_upstream_pool_free(pool);
}

/* ---------------------------------------------------------------- pools and breakers */

Test(upstream, pool_with_a_member_down_still_answers) {
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%u/v1", free_port());
    struct cloud *c = cloud_start(NULL);
    struct slm_upstream_member ms[2] = {member(dead), member(c->url)};
    struct slm_upstream_params p = fast_params(ms, 2);
    struct slm_upstream_pool *pool = open_pool(&p);
    for (int i = 0; i < 6; i++) {
        struct slm_upstream_result r;
        struct slm_err err;
        cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
        cr_expect_str_eq(r.member, c->url);
        slm_upstream_result_free(&r);
    }
    struct slm_upstream_member_stats st[2];
    cr_assert_eq(slm_upstream_pool_stats(pool, st, 2), 2);
    /* The dead member was tried at most once: after that it is unhealthy and passed over. */
    cr_expect_leq(st[0].requests, 1);
    cr_expect_eq(st[0].failures, st[0].requests);
    cr_expect_eq(st[1].requests, 6);
    cr_expect_eq(read_log(c).ok, 6);
    slm_upstream_pool_free(pool);
}

Test(upstream, rate_limited_member_is_left_for_another) {
    struct cloud *a = cloud_start((const char *[]){"--faults", "429", "--retry-after", "5", NULL});
    struct cloud *b = cloud_start(NULL);
    struct slm_upstream_member ms[2] = {member(a->url), member(b->url)};
    struct slm_upstream_params p = fast_params(ms, 2);
    p.backoff_max_s = 10;
    struct slm_upstream_pool *pool = open_pool(&p);
    for (int i = 0; i < 3; i++) {
        struct slm_upstream_result r;
        struct slm_err err;
        cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
        cr_expect_str_eq(r.member, b->url);
        cr_expect_lt(r.latency_s, 2.0, "waited %.3f s for a member that asked for 5", r.latency_s);
        slm_upstream_result_free(&r);
    }
    cr_expect_eq(read_log(a).lines, 1, "the rate-limited member was asked again too soon");
    cr_expect_eq(read_log(b).ok, 3);
    slm_upstream_pool_free(pool);
}

Test(upstream, breaker_opens_then_half_opens_after_cooldown) {
    struct cloud *c = cloud_start((const char *[]){"--faults", "500x3", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    p.max_attempts = 1;
    p.breaker_failures = 2;
    p.breaker_cooldown_s = 0.4;
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    struct slm_upstream_member_stats st;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
        cr_expect(strstr(err.msg, "HTTP 500 after 1 attempt"), "%s", err.msg);
        slm_upstream_result_free(&r);
    }
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect(st.breaker_open);
    /* Open: refused without a request reaching the cloud. */
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect(strstr(err.msg, "circuit breaker is open"), "%s", err.msg);
    cr_expect_eq(r.attempts, 0);
    slm_upstream_result_free(&r);
    cr_expect_eq(read_log(c).lines, 2);
    /* Half-open after the cooldown: one trial; it fails (third 500) and reopens at once. */
    slm_sleep_ms(450);
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect_eq(r.attempts, 1);
    slm_upstream_result_free(&r);
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    cr_expect_eq(r.attempts, 0, "the breaker should have reopened after a failed trial");
    slm_upstream_result_free(&r);
    cr_expect_eq(read_log(c).lines, 3);
    /* The next trial succeeds and closes it. */
    slm_sleep_ms(450);
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    slm_upstream_result_free(&r);
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect_not(st.breaker_open);
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_OK, "%s", err.msg);
    slm_upstream_result_free(&r);
    cr_expect_eq(read_log(c).ok, 2);
    slm_upstream_pool_free(pool);
}

Test(upstream, health_probe_marks_a_returning_member_healthy) {
    unsigned port = free_port();
    char url[64], port_s[16];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", port);
    snprintf(port_s, sizeof(port_s), "%u", port);
    struct slm_upstream_member m = member(url);
    struct slm_upstream_params p = fast_params(&m, 1);
    p.max_attempts = 1;
    p.health_interval_s = 0.1;
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, NULL, &r, &err), SLM_E_UPSTREAM);
    slm_upstream_result_free(&r);
    struct slm_upstream_member_stats st;
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect_not(st.healthy);
    slm_sleep_ms(300); /* probes fail while nothing listens */
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect_not(st.healthy);
    cloud_start((const char *[]){"--port", port_s, NULL});
    for (int i = 0; i < 100 && !st.healthy; i++) {
        slm_sleep_ms(20);
        slm_upstream_pool_stats(pool, &st, 1);
    }
    cr_expect(st.healthy, "the health thread never saw GET /models answer");
    cr_expect_eq(st.requests, 1, "health probes are not chat requests");
    slm_upstream_pool_free(pool);
}

struct worker {
    struct slm_upstream_pool *pool;
    pthread_barrier_t *start;
    int rc;
    char member[256];
};

static void *work(void *arg) {
    struct worker *w = arg;
    pthread_barrier_wait(w->start);
    struct slm_upstream_result r;
    struct slm_err err;
    json_t *req = chat_request("hi");
    w->rc = slm_upstream_chat(w->pool, req, 0, NULL, &r, &err);
    snprintf(w->member, sizeof(w->member), "%s", r.member);
    slm_upstream_result_free(&r);
    json_decref(req);
    return NULL;
}

/* Runs `n` concurrent calls; every one must succeed. */
static void run_concurrently(struct slm_upstream_pool *pool, size_t n) {
    pthread_t t[8];
    struct worker w[8];
    pthread_barrier_t start;
    cr_assert_leq(n, 8);
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        w[i] = (struct worker){.pool = pool, .start = &start};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (size_t i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(w[i].rc, SLM_OK);
    }
    pthread_barrier_destroy(&start);
}

Test(upstream, least_busy_spreads_concurrent_load) {
    struct cloud *c[3];
    struct slm_upstream_member ms[3];
    for (int i = 0; i < 3; i++) {
        c[i] = cloud_start((const char *[]){"--latency-ms", "400", NULL});
        ms[i] = member(c[i]->url);
    }
    struct slm_upstream_params p = fast_params(ms, 3);
    struct slm_upstream_pool *pool = open_pool(&p);
    run_concurrently(pool, 6);
    struct slm_upstream_member_stats st[3];
    cr_assert_eq(slm_upstream_pool_stats(pool, st, 3), 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(st[i].requests, 2, "member %d got %llu", i,
                     (unsigned long long)st[i].requests);
        cr_expect_eq(st[i].in_flight, 0);
        cr_expect_eq(read_log(c[i]).ok, 2, "cloud %d's own log disagrees", i);
    }
    slm_upstream_pool_free(pool);
}

Test(upstream, max_concurrency_queues_instead_of_overloading) {
    struct cloud *c[2];
    struct slm_upstream_member ms[2];
    for (int i = 0; i < 2; i++) {
        c[i] = cloud_start((const char *[]){"--latency-ms", "200", NULL});
        ms[i] = member(c[i]->url);
        ms[i].max_concurrency = 1;
    }
    struct slm_upstream_params p = fast_params(ms, 2);
    struct slm_upstream_pool *pool = open_pool(&p);
    double t0 = slm_time_mono();
    run_concurrently(pool, 4);
    /* Two slots for four 200 ms requests: two rounds. */
    cr_expect_geq(slm_time_mono() - t0, 0.39);
    struct slm_upstream_member_stats st[2];
    slm_upstream_pool_stats(pool, st, 2);
    cr_expect_eq(st[0].requests, 2);
    cr_expect_eq(st[1].requests, 2);
    cr_expect_eq(read_log(c[0]).ok + read_log(c[1]).ok, 4);
    slm_upstream_pool_free(pool);
}

/* ---------------------------------------------------------------- deadline and cancel */

Test(upstream, deadline_bounds_the_whole_call) {
    struct cloud *c = cloud_start((const char *[]){"--latency-ms", "3000", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0.3, NULL, &r, &err), SLM_E_TIMEOUT, "%s", err.msg);
    cr_expect_lt(r.latency_s, 2.0);
    cr_expect(strstr(err.msg, "deadline of 0.3 s"), "%s", err.msg);
    slm_upstream_result_free(&r);
    struct slm_upstream_member_stats st;
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect(st.healthy, "our own deadline is not the member's failure");
    cr_expect_eq(st.failures, 0);
    slm_upstream_pool_free(pool);
}

Test(upstream, retry_after_beyond_the_deadline_gives_up_early) {
    struct cloud *c =
        cloud_start((const char *[]){"--faults", "429", "--retry-after", "1.5", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0.8, NULL, &r, &err), SLM_E_TIMEOUT, "%s", err.msg);
    cr_expect_lt(r.latency_s, 0.7, "it waited %.3f s for nothing", r.latency_s);
    cr_expect(strstr(err.msg, "HTTP 429"), "%s", err.msg);
    slm_upstream_result_free(&r);
    slm_upstream_pool_free(pool);
}

struct canceller {
    volatile int *flag;
    int64_t after_ms;
};

static void *cancel_later(void *arg) {
    struct canceller *c = arg;
    slm_sleep_ms(c->after_ms);
    *c->flag = 1;
    return NULL;
}

Test(upstream, cancel_stops_a_call_in_flight_and_in_backoff) {
    struct cloud *c = cloud_start((const char *[]){"--latency-ms", "3000", NULL});
    struct slm_upstream_member m = member(c->url);
    struct slm_upstream_params p = fast_params(&m, 1);
    struct slm_upstream_pool *pool = open_pool(&p);
    volatile int flag = 0;
    struct canceller k = {&flag, 200};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, &k);
    struct slm_upstream_result r;
    struct slm_err err;
    cr_assert_eq(call(pool, "hi", 0, &flag, &r, &err), SLM_E_ABORTED, "%s", err.msg);
    pthread_join(t, NULL);
    cr_expect_lt(r.latency_s, 1.5);
    slm_upstream_result_free(&r);
    struct slm_upstream_member_stats st;
    slm_upstream_pool_stats(pool, &st, 1);
    cr_expect_eq(st.in_flight, 0);
    cr_expect_not(st.breaker_open);
    slm_upstream_pool_free(pool);
    /* Cancelled while waiting out a Retry-After. */
    struct cloud *c2 = cloud_start((const char *[]){"--faults", "429", "--retry-after", "5", NULL});
    m = member(c2->url);
    p = fast_params(&m, 1);
    p.backoff_max_s = 10;
    pool = open_pool(&p);
    flag = 0;
    pthread_create(&t, NULL, cancel_later, &k);
    cr_assert_eq(call(pool, "hi", 0, &flag, &r, &err), SLM_E_ABORTED, "%s", err.msg);
    pthread_join(t, NULL);
    cr_expect_eq(r.attempts, 1);
    cr_expect_lt(r.latency_s, 1.5);
    slm_upstream_result_free(&r);
    slm_upstream_pool_free(pool);
}
