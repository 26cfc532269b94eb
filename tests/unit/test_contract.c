/*
 * test_contract.c - the contractor's pieces that need no cloud (slm/contract.h): the call
 * cache (keys, round trips, reopen, a file that is not a cache), the budget (reservations,
 * settling, exhaustion, many threads never past the cap), the worst case of a request, label
 * files, answer checks, request building and the runner's input order. The calls themselves
 * are tested end to end against the fake cloud (tests/e2e/test_label.sh).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "slm/contract.h"
#include "slm/json.h"

/* An upstream that is never called (port 9, discard): the cache keys and prices need one. */
static struct slm_contract_upstream *upstream(const char *url, const char *model, double in,
                                              double out) {
    struct slm_contract_upstream_spec s = {0};
    s.base_url = url;
    s.model = model;
    s.price_in = in;
    s.price_out = out;
    s.max_attempts = 2;
    struct slm_contract_upstream *u = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_upstream_open(&s, &u, &err), SLM_OK, "%s", err.msg);
    return u;
}

static json_t *parse(const char *s) {
    json_t *v = NULL;
    cr_assert_eq(slm_json_parse(s, strlen(s), "test", &v, NULL), SLM_OK, "%s", s);
    return v;
}

static char *tmp_path(const char *name) {
    static char path[256];
    snprintf(path, sizeof(path), "/tmp/slm-test-contract-%ld-%s", (long)getpid(), name);
    unlink(path);
    return path;
}

/* ---------------------------------------------------------------- upstream */

Test(contract, no_upstream_is_a_clear_error) {
    struct slm_contract_upstream_spec s = {0};
    struct slm_contract_upstream *u = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_upstream_open(&s, &u, &err), SLM_E_INVALID);
    cr_assert_str_eq(err.msg, SLM_CONTRACT_NO_UPSTREAM);
    s.base_url = "http://127.0.0.1:9/v1";
    cr_assert_eq(slm_contract_upstream_open(&s, &u, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "--model"), "%s", err.msg);
    s.model = "m";
    s.router_path = "router.yaml";
    cr_assert_eq(slm_contract_upstream_open(&s, &u, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "not both"), "%s", err.msg);
    cr_assert_null(u);
}

Test(contract, worst_case_bounds_tokens_by_bytes) {
    struct slm_contract_upstream *u = upstream("http://127.0.0.1:9/v1", "m", 1e6, 2e6);
    /* 1 unit per prompt byte, 2 per completion token, times 2 attempts. */
    json_t *req = parse("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                        "\"max_tokens\": 10}");
    char *msgs = json_dumps(json_object_get(req, "messages"), JSON_COMPACT);
    double want = ((double)strlen(msgs) + 2.0 * 10) * 2;
    cr_assert_float_eq(slm_contract_worst_cost(u, req), want, 1e-9);
    json_object_del(req, "max_tokens");
    cr_assert(isinf(slm_contract_worst_cost(u, req)), "no max_tokens: no bound");
    free(msgs);
    json_decref(req);
    slm_contract_upstream_free(u);
}

/* ---------------------------------------------------------------- cache */

Test(contract, cache_key_is_canonical_and_names_the_upstream) {
    struct slm_contract_upstream *a = upstream("http://127.0.0.1:9/v1", "m", 0, 0);
    struct slm_contract_upstream *b = upstream("http://127.0.0.1:9/v1", "other", 0, 0);
    struct slm_contract_upstream *c = upstream("http://127.0.0.2:9/v1", "m", 0, 0);
    json_t *r1 = parse("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                       "\"temperature\": 0, \"max_tokens\": 5}");
    json_t *r2 = parse("{\"max_tokens\": 5, \"stream\": true, \"temperature\": 0, "
                       "\"messages\": [{\"content\": \"x\", \"role\": \"user\"}]}");
    json_t *r3 = parse("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
                       "\"temperature\": 0, \"max_tokens\": 6}");
    char k1[65], k2[65], k3[65], kb[65], kc[65];
    cr_assert_eq(slm_contract_cache_key(a, r1, k1), SLM_OK);
    cr_assert_eq(slm_contract_cache_key(a, r2, k2), SLM_OK);
    cr_assert_eq(slm_contract_cache_key(a, r3, k3), SLM_OK);
    cr_assert_eq(slm_contract_cache_key(b, r1, kb), SLM_OK);
    cr_assert_eq(slm_contract_cache_key(c, r1, kc), SLM_OK);
    cr_assert_eq(strlen(k1), 64);
    cr_assert_str_eq(k1, k2, "key order and stream do not change the call");
    cr_assert_str_neq(k1, k3, "parameters do");
    cr_assert_str_neq(k1, kb, "the model does");
    cr_assert_str_neq(k1, kc, "the base URL does");
    json_decref(r1);
    json_decref(r2);
    json_decref(r3);
    slm_contract_upstream_free(a);
    slm_contract_upstream_free(b);
    slm_contract_upstream_free(c);
}

Test(contract, cache_round_trip_survives_reopen) {
    const char *path = tmp_path("cache.db");
    struct slm_contract_cache *c = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_cache_open(path, &c, &err), SLM_OK, "%s", err.msg);
    json_t *resp = parse("{\"choices\": [{\"message\": {\"content\": \"refund\"}}]}");
    json_t *got = NULL;
    cr_assert_eq(slm_contract_cache_get(c, "k1", &got, NULL, &err), SLM_E_NOT_FOUND);
    cr_assert_eq(
        slm_contract_cache_put(c, "k1", resp, &(struct slm_contract_usage){12, 3, 0.5, 0.25}, &err),
        SLM_OK, "%s", err.msg);
    slm_contract_cache_close(c);
    c = NULL;
    cr_assert_eq(slm_contract_cache_open(path, &c, &err), SLM_OK, "%s", err.msg);
    struct slm_contract_usage u = {0};
    cr_assert_eq(slm_contract_cache_get(c, "k1", &got, &u, &err), SLM_OK);
    cr_assert(json_equal(got, resp));
    cr_assert_eq(u.tokens_in, 12);
    cr_assert_eq(u.tokens_out, 3);
    cr_assert_float_eq(u.cost, 0.5, 1e-12);
    cr_assert_float_eq(u.latency_s, 0.25, 1e-12);
    cr_assert_eq(slm_contract_cache_count(c), 1);
    json_decref(got);
    json_decref(resp);
    slm_contract_cache_close(c);
    unlink(path);
}

/* A cache written before the latency column keeps its answers. */
Test(contract, cache_from_before_the_latency_column_still_answers) {
    const char *path = tmp_path("old.db");
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "CREATE TABLE calls (key TEXT PRIMARY KEY, response TEXT NOT NULL, "
                              "tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost REAL "
                              "NOT NULL, created REAL NOT NULL);"
                              "INSERT INTO calls VALUES ('k', '{\"id\": 1}', 5, 2, 0.125, 0);",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    struct slm_contract_cache *c = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_cache_open(path, &c, &err), SLM_OK, "%s", err.msg);
    json_t *got = NULL;
    struct slm_contract_usage u = {0};
    cr_assert_eq(slm_contract_cache_get(c, "k", &got, &u, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(u.tokens_in, 5);
    cr_assert_float_eq(u.cost, 0.125, 1e-12);
    cr_assert_float_eq(u.latency_s, 0.0, 1e-12);
    json_decref(got);
    json_t *resp = parse("{\"id\": 2}");
    cr_assert_eq(
        slm_contract_cache_put(c, "k2", resp, &(struct slm_contract_usage){1, 1, 0, 0.5}, &err),
        SLM_OK, "%s", err.msg);
    json_decref(resp);
    slm_contract_cache_close(c);
    unlink(path);
}

Test(contract, cache_refuses_a_file_that_is_not_one) {
    const char *path = tmp_path("notdb");
    FILE *f = fopen(path, "w");
    fputs("this is not sqlite, and it is long enough\n", f);
    fclose(f);
    struct slm_contract_cache *c = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_cache_open(path, &c, &err), SLM_E_CORRUPT);
    cr_assert(strstr(err.msg, "not a call cache"), "%s", err.msg);
    unlink(path);
}

/* ---------------------------------------------------------------- budget */

Test(contract, budget_reserves_settles_and_stays_exhausted) {
    struct slm_contract_budget *b = NULL;
    cr_assert_eq(slm_contract_budget_init(1.0, &b), SLM_OK);
    cr_assert(slm_contract_budget_reserve(b, 0.6));
    slm_contract_budget_settle(b, 0.6, 0.25); /* cost less than the worst case */
    cr_assert(slm_contract_budget_reserve(b, 0.75), "0.25 + 0.75 fits exactly");
    slm_contract_budget_settle(b, 0.75, 0.5);
    struct slm_contract_budget_state s;
    slm_contract_budget_get(b, &s);
    cr_assert_float_eq(s.spent, 0.75, 1e-12);
    cr_assert_float_eq(s.reserved, 0, 1e-12);
    cr_assert_not(slm_contract_budget_reserve(b, 0.3), "0.75 + 0.3 > 1");
    cr_assert_not(slm_contract_budget_reserve(b, 0.01), "exhausted: no small call sneaks in");
    slm_contract_budget_get(b, &s);
    cr_assert(s.exhausted);
    slm_contract_budget_free(b);

    cr_assert_eq(slm_contract_budget_init(INFINITY, &b), SLM_OK);
    cr_assert(slm_contract_budget_reserve(b, 1e12));
    slm_contract_budget_free(b);
}

struct spender {
    struct slm_contract_budget *b;
    double worst, actual;
    int calls;
};

static void *spend(void *arg) {
    struct spender *s = arg;
    while (slm_contract_budget_reserve(s->b, s->worst)) {
        nanosleep(&(struct timespec){0, 200000}, NULL);
        slm_contract_budget_settle(s->b, s->worst, s->actual);
        __atomic_add_fetch(&s->calls, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

Test(contract, budget_never_exceeded_by_many_threads) {
    struct slm_contract_budget *b = NULL;
    cr_assert_eq(slm_contract_budget_init(10.0, &b), SLM_OK);
    struct spender s = {b, 0.9, 0.3, 0};
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        pthread_create(&th[i], NULL, spend, &s);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
    }
    struct slm_contract_budget_state st;
    slm_contract_budget_get(b, &st);
    cr_assert_leq(st.spent, 10.0);
    cr_assert_float_eq(st.spent, 0.3 * s.calls, 1e-9);
    /* Waiting for the calls in flight uses the cap up to its last whole worst case. */
    cr_assert_gt(st.spent + 0.9, 10.0, "stopped at %.2f with %.2f of room", st.spent,
                 10.0 - st.spent);
    slm_contract_budget_free(b);
}

/* ---------------------------------------------------------------- labels and checks */

Test(contract, labels_files) {
    struct slm_contract_labels l;
    struct slm_err err = {0};
    const char *arr = "[\"card_lost\", \"refund\"]";
    cr_assert_eq(slm_contract_labels_parse("l.json", arr, strlen(arr), &l, &err), SLM_OK);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.items[1], "refund");
    slm_contract_labels_free(&l);
    const char *obj = "{\"a\": \"first\", \"b\": {\"id\": 2}}";
    cr_assert_eq(slm_contract_labels_parse("l.json", obj, strlen(obj), &l, &err), SLM_OK);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.items[0], "a");
    slm_contract_labels_free(&l);
    static const char *const bad[] = {"[]",    "[\"a\", \"a\"]", "[\"\"]", "[1]",
                                      "\"a\"", "[\"a\"",         "{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        cr_assert_neq(slm_contract_labels_parse("l.json", bad[i], strlen(bad[i]), &l, &err), SLM_OK,
                      "%s", bad[i]);
        cr_assert(strstr(err.msg, "l.json"), "%s: %s", bad[i], err.msg);
        cr_assert_null(l.items);
    }
}

Test(contract, answer_checks) {
    struct slm_contract_labels l;
    const char *arr = "[\"card_lost\", \"Refund\"]";
    cr_assert_eq(slm_contract_labels_parse("l", arr, strlen(arr), &l, NULL), SLM_OK);
    struct slm_contract_check k = {.labels = &l};
    json_t *v = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_check_answer(&k, " card_lost.\n", "stop", &v, &err), SLM_OK);
    cr_assert_str_eq(json_string_value(v), "card_lost");
    json_decref(v);
    cr_assert_eq(slm_contract_check_answer(&k, "\"refund\"", "stop", &v, &err), SLM_OK);
    cr_assert_str_eq(json_string_value(v), "Refund", "case folded to the set's spelling");
    json_decref(v);
    cr_assert_eq(slm_contract_check_answer(&k, "I don't know.", "stop", &v, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "not one of the allowed labels"), "%s", err.msg);
    cr_assert_null(v);

    json_t *schema = parse("{\"type\": \"object\", \"properties\": {\"n\": {\"type\": "
                           "\"integer\"}}, \"required\": [\"n\"]}");
    struct slm_contract_check ks = {.schema = schema};
    cr_assert_eq(slm_contract_check_answer(&ks, "{\"n\": 3}", "stop", &v, &err), SLM_OK);
    cr_assert_eq(json_integer_value(json_object_get(v, "n")), 3);
    json_decref(v);
    cr_assert_eq(slm_contract_check_answer(&ks, "{\"n\": \"x\"}", "stop", &v, &err), SLM_E_INVALID);
    cr_assert_eq(slm_contract_check_answer(&ks, "{\"n\": ", "length", &v, &err), SLM_E_INCOMPLETE);

    struct slm_contract_check kr = {.regex = "^[0-9]{3}$"};
    cr_assert_eq(slm_contract_check_answer(&kr, "123", "stop", NULL, &err), SLM_OK);
    cr_assert_eq(slm_contract_check_answer(&kr, "12a", "stop", NULL, &err), SLM_E_INVALID);
    json_decref(schema);
    slm_contract_labels_free(&l);
}

Test(contract, requests_from_rows) {
    struct slm_liquid_template *t = NULL;
    const char *src = "Customer: {{ text }}\n";
    cr_assert_eq(slm_liquid_parse("t", src, strlen(src), NULL, &t, NULL), SLM_OK);
    json_t *fields = parse("{\"max_tokens\": 8, \"temperature\": 0}");
    struct slm_contract_ask a = {t, "Be brief.", fields};
    json_t *row = parse("{\"text\": \"lost my card\", \"id\": 3}");
    json_t *req = NULL;
    char *prompt = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_request(&a, row, &req, &prompt, &err), SLM_OK, "%s", err.msg);
    json_t *want = parse("{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
                         "{\"role\": \"user\", \"content\": \"Customer: lost my card\"}], "
                         "\"max_tokens\": 8, \"temperature\": 0}");
    cr_assert(json_equal(req, want), "%s", json_dumps(req, 0));
    cr_assert_str_eq(prompt, "Customer: lost my card");
    json_decref(req);
    json_decref(want);
    free(prompt);
    /* Without a template: the text field; without one: a clear error. */
    struct slm_contract_ask plain = {NULL, NULL, NULL};
    cr_assert_eq(slm_contract_request(&plain, row, &req, NULL, &err), SLM_OK);
    json_decref(req);
    json_t *bare = parse("{\"body\": \"x\"}");
    cr_assert_eq(slm_contract_request(&plain, bare, &req, NULL, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "--template"), "%s", err.msg);
    json_decref(bare);
    json_decref(row);
    json_decref(fields);
    slm_liquid_free(t);
}

/* ---------------------------------------------------------------- the runner */

struct order_run {
    size_t emitted[64];
    size_t n;
    size_t fail_at; /* SIZE_MAX = none */
};

static int slow_row(void *user, struct slm_contract *c, size_t i, json_t **out,
                    struct slm_err *err) {
    struct order_run *r = user;
    (void)c;
    slm_sleep_ms((int64_t)((i * 7919) % 5)); /* finish out of order */
    if (i == r->fail_at) {
        return slm_err_set(err, SLM_E_LIMIT, "the cost cap");
    }
    *out = json_pack("[i]", (int)i);
    return SLM_OK;
}

static int record(void *user, size_t i, const json_t *out, struct slm_err *err) {
    struct order_run *r = user;
    (void)err;
    cr_assert_eq((size_t)json_integer_value(json_array_get(out, 0)), i);
    r->emitted[r->n++] = i;
    return SLM_OK;
}

Test(contract, runner_keeps_input_order_and_stops_at_a_prefix) {
    struct slm_contract_upstream *u = upstream("http://127.0.0.1:9/v1", "m", 0, 0);
    struct slm_contract_params cp = {.upstream = u};
    struct slm_contract *c = NULL;
    cr_assert_eq(slm_contract_init(&cp, &c, NULL), SLM_OK);
    struct order_run r = {.fail_at = SIZE_MAX};
    struct slm_contract_run_params rp = {
        .n_rows = 40, .concurrency = 8, .row = slow_row, .emit = record, .user = &r};
    struct slm_contract_run_result res;
    struct slm_err err = {0};
    cr_assert_eq(slm_contract_run(c, &rp, &res, &err), SLM_OK);
    cr_assert_eq(res.done, 40);
    for (size_t i = 0; i < 40; i++) {
        cr_assert_eq(r.emitted[i], i);
    }
    struct order_run r2 = {.fail_at = 17};
    rp.user = &r2;
    cr_assert_eq(slm_contract_run(c, &rp, &res, &err), SLM_E_LIMIT);
    cr_assert(res.budget_hit);
    cr_assert_eq(res.done, 17, "exactly the rows before the one that failed");
    cr_assert_eq(r2.n, 17);
    cr_assert(strstr(err.msg, "row 18"), "%s", err.msg);
    slm_contract_free(c);
    slm_contract_upstream_free(u);
}

/* ---------------------------------------------------------------- documents */

Test(contract, chunks_at_headings_and_paragraphs) {
    const char *doc = "Preface line.\n\n# A\n\npara one\n\npara two\n\n## B ##\n\n```\n# code\n\n"
                      "more code\n```\n\n# C\n\ntext";
    json_t *rows = json_array();
    cr_assert_eq(slm_contract_chunk_text("d.md", doc, strlen(doc), 0, rows, NULL), SLM_OK);
    cr_assert_eq(json_array_size(rows), 4, "%s", json_dumps(rows, 0));
    static const char *const headings[] = {"", "A", "A > B", "C"};
    for (size_t i = 0; i < 4; i++) {
        json_t *r = json_array_get(rows, i);
        cr_assert_str_eq(json_string_value(json_object_get(r, "heading")), headings[i]);
        cr_assert_eq(json_integer_value(json_object_get(r, "chunk")), (json_int_t)i);
        cr_assert_str_eq(json_string_value(json_object_get(r, "file")), "d.md");
    }
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 1), "text")),
                     "para one\n\npara two", "paragraphs of a section packed together");
    cr_assert(strstr(json_string_value(json_object_get(json_array_get(rows, 2), "text")), "# code"),
              "a fenced # line is text");
    json_decref(rows);
}

Test(contract, long_paragraphs_are_cut_within_the_limit) {
    char doc[3000];
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s", i % 2 ? "wörd " : "word ");
    }
    json_t *rows = json_array();
    cr_assert_eq(slm_contract_chunk_text("d.txt", doc, n, 100, rows, NULL), SLM_OK);
    cr_assert_gt(json_array_size(rows), 10);
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        const char *t = json_string_value(json_object_get(r, "text"));
        cr_assert(t, "chunk %zu is valid UTF-8 text", i);
        cr_assert_leq(strlen(t), 100);
        cr_assert_gt(strlen(t), 0);
    }
    json_decref(rows);
    struct slm_err err = {0};
    rows = json_array();
    cr_assert_eq(slm_contract_chunk_text("bin", "\xff\xfe", 2, 0, rows, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "not UTF-8"), "%s", err.msg);
    json_decref(rows);
}
