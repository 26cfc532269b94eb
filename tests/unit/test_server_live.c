/*
 * test_server_live.c - the server on the real model pool and scheduler with
 * the test model (test_stories.h: stories260K, else a random-weight one):
 * answers match `slm run`'s engine, streams match whole answers, concurrent
 * requests all finish,
 * grammars hold for schemas and required tool calls, embeddings are unit
 * vectors, models load and unload on request.
 */
#include <math.h>
#include <pthread.h>

#include "test_server_common.h"

static struct slm_pool *g_pool;

static void setup(void) {
    const char *path = need_model();
    make_home();
    char mf[PATH_MAX + 64];
    snprintf(mf, sizeof(mf), "FROM %s\n", path);
    create_model("stories", mf);
    struct slm_pool_params pp = slm_pool_params_default();
    pp.sched.n_parallel = 4;
    pp.sched.n_ctx = 4 * 1024;
    pp.sched.n_threads = 2;
    struct slm_err err = {0};
    cr_assert_eq(slm_pool_init(&pp, &g_pool, &err), SLM_OK, "%s", err.msg);
    struct slm_server_params p = slm_server_params_default();
    p.backend = slm_server_backend_pool(g_pool);
    p.n_ctx_seq = 1024;
    start_server(&p);
}

static void teardown(void) {
    if (g_srv) {
        stop_server();
    }
    slm_pool_free(g_pool);
    remove_home();
}

TestSuite(server_live, .init = setup, .fini = teardown, .timeout = 300);

static const char *choice_text(const struct resp *r) {
    const json_t *c = json_array_get(json_object_get(r->json, "choices"), 0);
    const json_t *t = json_object_get(c, "text");
    if (!t) {
        t = json_object_get(json_object_get(c, "message"), "content");
    }
    return json_string_value(t);
}

static int collect(const struct slm_token_event *ev, void *user) {
    return slm_buf_append(user, ev->text, ev->len) == SLM_OK ? 0 : 1;
}

/* What the engine alone (as `slm run --raw` uses it) writes for `prompt`. */
static char *engine_text(const char *prompt, int n) {
    struct slm_model *m = NULL;
    struct slm_ctx *ctx = NULL;
    struct slm_err err = {0};
    struct slm_model_params mp = slm_model_params_default();
    cr_assert_eq(slm_model_load(need_model(), &mp, &m, &err), SLM_OK, "%s", err.msg);
    struct slm_ctx_params cp = slm_ctx_params_default();
    cp.n_ctx = 512;
    cr_assert_eq(slm_ctx_init(m, &cp, &ctx, &err), SLM_OK, "%s", err.msg);
    int32_t *toks = NULL;
    size_t nt = 0;
    cr_assert_eq(slm_tokenize_alloc(m, slm_str_c(prompt), true, &toks, &nt, 0, &err), SLM_OK);
    struct slm_gen_params gp = slm_gen_params_default();
    gp.sample.temperature = 0;
    gp.sample.repeat_penalty = 1.0f;
    gp.max_tokens = n;
    struct slm_buf out = {0};
    struct slm_gen_stats st;
    cr_assert_eq(slm_generate(ctx, toks, nt, &gp, collect, &out, &st, &err), SLM_OK, "%s", err.msg);
    free(toks);
    slm_ctx_free(ctx);
    slm_model_free(m);
    return slm_buf_take(&out);
}

Test(server_live, completions_match_the_engine) {
    struct resp r = http("POST", "/v1/completions",
                         "{\"model\":\"stories\",\"prompt\":\"Once upon a time\",\"temperature\":0,"
                         "\"repeat_penalty\":1,\"max_tokens\":30}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    char *want = engine_text("Once upon a time", 30);
    cr_assert_str_eq(choice_text(&r), want);
    free(want);
    resp_free(&r);
}

Test(server_live, streams_match_whole_answers) {
#define BODY(extra)                                                                                \
    "{\"model\":\"stories\",\"temperature\":0,\"max_tokens\":40,\"messages\":[{\"role\":"          \
    "\"user\",\"content\":\"Tell me about Lily.\"}]" extra "}"
    const char *b1 = BODY(""), *b2 = BODY(",\"stream\":true");
#undef BODY
    struct resp whole = http("POST", "/v1/chat/completions", b1, NULL);
    cr_assert_eq(whole.status, 200, "%s", slm_buf_cstr(&whole.body));
    struct resp again = http("POST", "/v1/chat/completions", b1, NULL);
    cr_assert_str_eq(choice_text(&whole), choice_text(&again), "greedy answers differ");
    struct resp st = http("POST", "/v1/chat/completions", b2, NULL);
    json_t *ev = sse_events(&st.body);
    struct slm_buf text = {0};
    for (size_t i = 0; i + 1 < json_array_size(ev); i++) {
        const json_t *c = json_array_get(json_object_get(json_array_get(ev, i), "choices"), 0);
        const char *t = json_string_value(json_object_get(json_object_get(c, "delta"), "content"));
        cr_assert(slm_buf_puts(&text, t ? t : "") == SLM_OK);
    }
    cr_assert_str_eq(slm_buf_cstr(&text), choice_text(&whole));
    cr_assert_gt(text.len, 0);
    slm_buf_free(&text);
    json_decref(ev);
    resp_free(&whole);
    resp_free(&again);
    resp_free(&st);
}

struct worker {
    int i;
    long status;
    char finish[32];
    size_t len;
};

static void *one_request(void *arg) {
    struct worker *w = arg;
    char body[512];
    snprintf(
        body, sizeof(body),
        "{\"model\":\"stories\",\"seed\":%d,\"max_tokens\":24,\"messages\":[{\"role\":\"user\","
        "\"content\":\"Story %d\"}]}",
        w->i, w->i);
    struct resp r = http_ex("POST", "/v1/chat/completions", body, NULL, false);
    w->status = r.status;
    const char *t = choice_text(&r);
    w->len = t ? strlen(t) : 0;
    const char *f = json_string_value(
        json_object_get(json_array_get(json_object_get(r.json, "choices"), 0), "finish_reason"));
    snprintf(w->finish, sizeof(w->finish), "%s", f ? f : "");
    resp_free(&r);
    return NULL;
}

Test(server_live, concurrent_requests_all_finish) {
    enum { N = 10 };
    pthread_t th[N];
    struct worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.i = i};
        pthread_create(&th[i], NULL, one_request, &w[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(w[i].status, 200, "request %d: %ld", i, w[i].status);
        cr_assert(strcmp(w[i].finish, "length") == 0 || strcmp(w[i].finish, "stop") == 0);
    }
    struct resp r = http("GET", "/metrics", NULL, NULL);
    cr_assert(strstr(slm_buf_cstr(&r.body), "slm_generation_requests_total{model=\"stories\"} 10"),
              "%s", slm_buf_cstr(&r.body));
    cr_assert(strstr(slm_buf_cstr(&r.body), "slm_requests_waiting 0"));
    resp_free(&r);
}

Test(server_live, schemas_and_required_tools_hold) {
    struct resp r = http("POST", "/v1/chat/completions",
                         "{\"model\":\"stories\",\"temperature\":1,\"seed\":7,\"max_tokens\":200,"
                         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":"
                         "\"m\",\"schema\":{\"type\":\"object\",\"properties\":{\"mood\":{\"enum\":"
                         "[\"happy\",\"sad\"]}},\"required\":[\"mood\"],\"additionalProperties\":"
                         "false}}},\"messages\":[{\"role\":\"user\",\"content\":\"Lily was\"}]}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    json_t *v = NULL;
    const char *t = choice_text(&r);
    cr_assert_eq(slm_json_parse(t, strlen(t), "answer", &v, NULL), SLM_OK, "%s", t);
    const char *mood = json_string_value(json_object_get(v, "mood"));
    cr_assert(mood && (!strcmp(mood, "happy") || !strcmp(mood, "sad")), "%s", t);
    json_decref(v);
    resp_free(&r);
    r = http(
        "POST", "/v1/chat/completions",
        "{\"model\":\"stories\",\"temperature\":1,\"seed\":3,\"max_tokens\":200,\"tool_choice\":"
        "\"required\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"set_mood\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"mood\":{\"enum\":[\"happy\","
        "\"sad\"]}},\"required\":[\"mood\"]}}}],\"messages\":[{\"role\":\"user\",\"content\":"
        "\"Lily was\"}]}",
        NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "tool_calls", "%s",
                     slm_buf_cstr(&r.body));
    const json_t *fn = json_object_get(
        json_array_get(json_object_get(json_object_get(c, "message"), "tool_calls"), 0),
        "function");
    cr_assert_str_eq(json_string_value(json_object_get(fn, "name")), "set_mood");
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    cr_assert_eq(slm_json_parse(args, strlen(args), "arguments", &v, NULL), SLM_OK, "%s", args);
    cr_assert_not_null(json_object_get(v, "mood"), "%s", args);
    json_decref(v);
    resp_free(&r);
}

Test(server_live, embeddings_are_unit_vectors) {
    struct resp r =
        http("POST", "/v1/embeddings",
             "{\"model\":\"stories\",\"input\":[\"Lily has a ball.\",\"Tom runs.\"]}", NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *d = json_object_get(r.json, "data");
    cr_assert_eq(json_array_size(d), 2);
    const json_t *e = json_object_get(json_array_get(d, 0), "embedding");
    cr_assert_eq(json_array_size(e), 64);
    double ss = 0;
    for (size_t i = 0; i < json_array_size(e); i++) {
        double x = json_number_value(json_array_get(e, i));
        ss += x * x;
    }
    cr_assert_float_eq(sqrt(ss), 1.0, 1e-3);
    resp_free(&r);
}

Test(server_live, logprobs_are_log_probabilities) {
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"temperature\":0,\"max_tokens\":8,\"logprobs\":true,"
             "\"top_logprobs\":3,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
             NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(r.json, "choices"), 0), "logprobs"),
        "content");
    cr_assert_eq(json_array_size(content), 8);
    for (size_t i = 0; i < json_array_size(content); i++) {
        const json_t *e = json_array_get(content, i);
        double lp = json_number_value(json_object_get(e, "logprob"));
        const json_t *top = json_object_get(e, "top_logprobs");
        cr_assert_leq(lp, 0.0);
        cr_assert_eq(json_array_size(top), 3);
        double best = json_number_value(json_object_get(json_array_get(top, 0), "logprob"));
        cr_assert_float_eq(lp, best, 1e-4, "greedy picks the most likely token");
        cr_assert_geq(best, json_number_value(json_object_get(json_array_get(top, 2), "logprob")));
    }
    resp_free(&r);
}

Test(server_live, models_load_and_unload) {
    struct resp r =
        http("POST", "/api/generate", "{\"model\":\"stories\",\"keep_alive\":\"1m\"}", NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    r = http("GET", "/api/ps", NULL, NULL);
    const json_t *m = json_array_get(json_object_get(r.json, "models"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "name")), "stories:latest", "%s",
                     slm_buf_cstr(&r.body));
    resp_free(&r);
    r = http("POST", "/api/generate", "{\"model\":\"stories\",\"keep_alive\":0}", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "done_reason")), "unload");
    resp_free(&r);
    r = http("GET", "/api/ps", NULL, NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "models")), 0, "%s",
                 slm_buf_cstr(&r.body));
    resp_free(&r);
}
