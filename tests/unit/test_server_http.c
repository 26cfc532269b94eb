/*
 * test_server_http.c - generation through HTTP with a fake backend that
 * "generates" a scripted answer (stories260K's vocabulary makes the tokens
 * and the chat formatting real): OpenAI and Ollama shapes, streaming,
 * logprobs, tool calls, JSON formats, limits, cancellation when the client
 * leaves, shutdown while streaming, and how the prompt is built from the
 * model's SYSTEM, MESSAGE and TEMPLATE (as `slm run` does).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "test_server_common.h"

static struct fake g_fake;

static void setup_with(const char *script, int32_t max_tokens) {
    make_home();
    fake_init(&g_fake, script);
    char mf[PATH_MAX + 64];
    snprintf(mf, sizeof(mf), "FROM %s\n", need_model());
    create_model("stories", mf);
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&g_fake);
    p.max_tokens = max_tokens;
    p.n_ctx_seq = 1024;
    start_server(&p);
}

static void setup(void) {
    setup_with("Once upon a time, Lily played.", 0);
}

static void teardown(void) {
    if (g_srv) {
        stop_server();
    }
    slm_model_free(g_fake.model);
    remove_home();
}

TestSuite(server_gen, .init = setup, .fini = teardown);

static const char *msg_content(const json_t *choice) {
    const json_t *c = json_object_get(json_object_get(choice, "message"), "content");
    return json_is_string(c) ? json_string_value(c) : NULL;
}

Test(server_gen, openai_chat_whole_answer) {
    struct resp r = http("POST", "/v1/chat/completions",
                         "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":"
                         "\"Tell me a story\"}]}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "object")), "chat.completion");
    cr_assert(strncmp(json_string_value(json_object_get(r.json, "id")), "chatcmpl-", 9) == 0);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "model")), "stories");
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    cr_assert_str_eq(msg_content(c), "Once upon a time, Lily played.");
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "stop");
    const json_t *u = json_object_get(r.json, "usage");
    cr_assert_gt(json_integer_value(json_object_get(u, "prompt_tokens")), 5);
    cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), 10);
    resp_free(&r);
    /* A model without a chat template gets ChatML (DESIGN.md). */
    char *prompt = fake_last_prompt(&g_fake);
    cr_assert(strstr(prompt, "<|im_start|>user\nTell me a story<|im_end|>") != NULL, "%s", prompt);
    cr_assert(strstr(prompt, "<|im_start|>assistant\n") != NULL, "%s", prompt);
    free(prompt);
}

Test(server_gen, max_tokens_gives_length) {
    struct resp r = http("POST", "/v1/chat/completions",
                         "{\"model\":\"stories\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
                         "\"content\":\"x\"}]}",
                         NULL);
    cr_assert_eq(r.status, 200);
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    cr_assert_str_eq(msg_content(c), "Once u");
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "length");
    resp_free(&r);
}

Test(server_gen, openai_chat_stream) {
    struct resp r = http("POST", "/v1/chat/completions",
                         "{\"model\":\"stories\",\"stream\":true,\"stream_options\":{"
                         "\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":"
                         "\"x\"}]}",
                         NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(slm_buf_cstr(&r.headers), "text/event-stream") != NULL);
    json_t *ev = sse_events(&r.body);
    size_t n = json_array_size(ev);
    cr_assert_gt(n, 4);
    cr_assert(json_is_null(json_array_get(ev, n - 1)), "ends with [DONE]");
    struct slm_buf text = {0};
    const char *finish = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        const json_t *e = json_array_get(ev, i);
        cr_assert_str_eq(json_string_value(json_object_get(e, "object")), "chat.completion.chunk");
        const json_t *c = json_array_get(json_object_get(e, "choices"), 0);
        if (!c) {
            continue;
        }
        const json_t *d = json_object_get(c, "delta");
        if (i == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(d, "role")), "assistant");
        }
        const char *t = json_string_value(json_object_get(d, "content"));
        cr_assert(slm_buf_puts(&text, t ? t : "") == SLM_OK);
        if (json_is_string(json_object_get(c, "finish_reason"))) {
            finish = json_string_value(json_object_get(c, "finish_reason"));
        }
    }
    cr_assert_str_eq(slm_buf_cstr(&text), "Once upon a time, Lily played.");
    cr_assert_str_eq(finish, "stop");
    const json_t *usage = json_object_get(json_array_get(ev, n - 2), "usage");
    cr_assert_eq(json_integer_value(json_object_get(usage, "completion_tokens")), 10);
    slm_buf_free(&text);
    json_decref(ev);
    resp_free(&r);
}

Test(server_gen, completions_echo_n_and_logprobs) {
    struct resp r = http("POST", "/v1/completions",
                         "{\"model\":\"stories\",\"prompt\":\"Hi \",\"echo\":true,\"n\":2,"
                         "\"logprobs\":2,\"max_tokens\":3}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *ch = json_object_get(r.json, "choices");
    cr_assert_eq(json_array_size(ch), 2);
    const json_t *c = json_array_get(ch, 1);
    cr_assert_eq(json_integer_value(json_object_get(c, "index")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(c, "text")), "Hi Once upon");
    const json_t *lp = json_object_get(c, "logprobs");
    cr_assert_eq(json_array_size(json_object_get(lp, "tokens")), 3);
    cr_assert_eq(json_array_size(json_object_get(lp, "token_logprobs")), 3);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(lp, "text_offset"), 0)), 3);
    cr_assert_eq(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), 0)), 2);
    /* Two choices of one prompt count the prompt once. */
    const json_t *u = json_object_get(r.json, "usage");
    cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), 6);
    resp_free(&r);
    cr_assert_eq(atomic_load(&g_fake.submitted), 2);
}

Test(server_gen, chat_logprobs) {
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"logprobs\":true,\"top_logprobs\":3,\"max_tokens\":4,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
             NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    const json_t *content = json_object_get(json_object_get(c, "logprobs"), "content");
    cr_assert_eq(json_array_size(content), 4);
    const json_t *e = json_array_get(content, 0);
    cr_assert(json_is_string(json_object_get(e, "token")));
    cr_assert_float_eq(json_number_value(json_object_get(e, "logprob")), -0.5, 1e-6);
    cr_assert(json_is_array(json_object_get(e, "bytes")));
    cr_assert_eq(json_array_size(json_object_get(e, "top_logprobs")), 3);
    resp_free(&r);
}

Test(server_gen, queue_full_is_429_with_retry_after) {
    g_fake.submit_rc = SLM_E_LIMIT;
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL);
    cr_assert_eq(r.status, 429);
    cr_assert(strstr(slm_buf_cstr(&r.headers), "Retry-After: 1") != NULL);
    cr_assert_str_eq(err_code(&r), "queue_full");
    resp_free(&r);
    g_fake.submit_rc = SLM_E_OVERFLOW;
    r = http("POST", "/api/generate", "{\"model\":\"stories\",\"prompt\":\"x\",\"stream\":false}",
             NULL);
    cr_assert_eq(r.status, 400);
    cr_assert(json_is_string(json_object_get(r.json, "error")));
    resp_free(&r);
    g_fake.submit_rc = SLM_OK;
    r = http("GET", "/metrics", NULL, NULL);
    cr_assert(
        strstr(slm_buf_cstr(&r.body), "slm_rejected_requests_total{reason=\"queue_full\"} 1"));
    resp_free(&r);
}

Test(server_gen, prompts_longer_than_the_context_are_400) {
    struct slm_buf body = {0};
    cr_assert(slm_buf_puts(&body, "{\"model\":\"stories\",\"prompt\":\"") == SLM_OK);
    for (int i = 0; i < 400; i++) {
        cr_assert(slm_buf_puts(&body, "Once upon a time. ") == SLM_OK);
    }
    cr_assert(slm_buf_puts(&body, "\"}") == SLM_OK);
    struct resp r = http("POST", "/v1/completions", body.ptr, NULL);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(err_code(&r), "context_length_exceeded");
    cr_assert(strstr(err_msg(&r), "holds 1024") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    slm_buf_free(&body);
    cr_assert_eq(atomic_load(&g_fake.submitted), 0);
}

/* ---------------------------------------------------------------- tools */

static const char *g_tools =
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"
    "\"Weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}"
    "},"
    "\"required\":[\"city\"]}}}]";

static void tool_setup(void) {
    setup_with("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
               "</tool_call>",
               0);
}

TestSuite(server_tools_http, .init = tool_setup, .fini = teardown);

Test(server_tools_http, openai_tool_calls) {
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],%s}",
             g_tools);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "tool_calls");
    const json_t *m = json_object_get(c, "message");
    cr_assert(json_is_null(json_object_get(m, "content")));
    const json_t *tc = json_array_get(json_object_get(m, "tool_calls"), 0);
    cr_assert(strncmp(json_string_value(json_object_get(tc, "id")), "call_", 5) == 0);
    cr_assert_str_eq(json_string_value(json_object_get(tc, "type")), "function");
    const json_t *fn = json_object_get(tc, "function");
    cr_assert_str_eq(json_string_value(json_object_get(fn, "name")), "get_weather");
    cr_assert_str_eq(json_string_value(json_object_get(fn, "arguments")), "{\"city\":\"Paris\"}");
    resp_free(&r);
    /* The tool prompt replaced the system message and kept its text. */
    char *prompt = fake_last_prompt(&g_fake);
    cr_assert(strstr(prompt, "<|im_start|>system\nBe brief.\n\n# Tools") != NULL, "%s", prompt);
    cr_assert(strstr(prompt, "\"get_weather\"") != NULL, "%s", prompt);
    free(prompt);
}

Test(server_tools_http, openai_tool_calls_stream) {
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
             "\"Weather?\"}],%s}",
             g_tools);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200);
    json_t *ev = sse_events(&r.body);
    bool saw_call = false;
    const char *finish = NULL;
    for (size_t i = 0; i + 1 < json_array_size(ev); i++) {
        const json_t *c = json_array_get(json_object_get(json_array_get(ev, i), "choices"), 0);
        const json_t *d = json_object_get(c, "delta");
        const char *t = json_string_value(json_object_get(d, "content"));
        cr_assert(!t || !strstr(t, "tool_call"), "a call leaked as content: %s", t);
        const json_t *tc = json_array_get(json_object_get(d, "tool_calls"), 0);
        if (tc) {
            saw_call = true;
            cr_assert_eq(json_integer_value(json_object_get(tc, "index")), 0);
            cr_assert_str_eq(
                json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
                "{\"city\":\"Paris\"}");
        }
        if (json_is_string(json_object_get(c, "finish_reason"))) {
            finish = json_string_value(json_object_get(c, "finish_reason"));
        }
    }
    cr_assert(saw_call);
    cr_assert_str_eq(finish, "tool_calls");
    json_decref(ev);
    resp_free(&r);
}

Test(server_tools_http, results_are_replayed_to_the_model) {
    char body[2048];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":"
             "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
             "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\","
             "\"content\":\"21 C\"}],%s}",
             g_tools);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    char *prompt = fake_last_prompt(&g_fake);
    cr_assert(strstr(prompt, "<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\","
                             "\"arguments\":{\"city\":\"Paris\"}}\n</tool_call><|im_end|>") != NULL,
              "%s", prompt);
    cr_assert(strstr(prompt, "<|im_start|>user\n<tool_response>\n21 C\n</tool_response>") != NULL,
              "%s", prompt);
    free(prompt);
}

Test(server_tools_http, ollama_tool_calls) {
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":"
             "\"Weather?\"}],%s}",
             g_tools);
    struct resp r = http("POST", "/api/chat", body, NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *tc =
        json_array_get(json_object_get(json_object_get(r.json, "message"), "tool_calls"), 0);
    const json_t *fn = json_object_get(tc, "function");
    cr_assert_str_eq(json_string_value(json_object_get(fn, "name")), "get_weather");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(fn, "arguments"), "city")),
                     "Paris");
    resp_free(&r);
}

Test(server_tools_http, tool_choice_none_is_plain_text) {
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"model\":\"stories\",\"tool_choice\":\"none\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"Weather?\"}],%s}",
             g_tools);
    struct resp r = http("POST", "/v1/chat/completions", body, NULL);
    cr_assert_eq(r.status, 200);
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    cr_assert(strstr(msg_content(c), "<tool_call>") != NULL);
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "stop");
    resp_free(&r);
    char *prompt = fake_last_prompt(&g_fake);
    cr_assert(strstr(prompt, "# Tools") == NULL, "no tool prompt with tool_choice none");
    free(prompt);
}

/* ---------------------------------------------------------------- JSON formats */

static void json_setup(void) {
    setup_with("{\"name\": \"Lily\", \"age\": 200}", 0);
}

TestSuite(server_json, .init = json_setup, .fini = teardown);

Test(server_json, valid_incomplete_and_invalid_answers) {
    struct resp r = http("POST", "/v1/chat/completions",
                         "{\"model\":\"stories\",\"response_format\":{\"type\":\"json_object\"},"
                         "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    /* Cut by max_tokens: finish_reason length and a note that says so. */
    r = http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"max_tokens\":3,\"response_format\":{\"type\":"
             "\"json_object\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
             NULL);
    cr_assert_eq(r.status, 200);
    const json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "finish_reason")), "length");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "error"), "type")),
                     "output_incomplete");
    resp_free(&r);
    /* Complete but against the schema (a range the grammar cannot count): 422. */
    r = http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
             "{\"name\":\"p\",\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":"
             "\"string\"},\"age\":{\"type\":\"integer\",\"maximum\":150}},\"required\":[\"name\","
             "\"age\"]}}},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
             NULL);
    cr_assert_eq(r.status, 422, "%s", slm_buf_cstr(&r.body));
    cr_assert(strstr(err_msg(&r), "#/age") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    /* A schema keyword outside the subset is a 400 naming it. */
    r = http("POST", "/api/chat",
             "{\"model\":\"stories\",\"stream\":false,\"format\":{\"type\":\"object\","
             "\"patternProperties\":{}},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
             NULL);
    cr_assert_eq(r.status, 400, "%s", slm_buf_cstr(&r.body));
    cr_assert(strstr(err_msg(&r), "patternProperties") != NULL, "%s", err_msg(&r));
    resp_free(&r);
}

Test(server_json, ollama_stream_reports_an_invalid_answer) {
    struct resp r = http("POST", "/api/generate",
                         "{\"model\":\"stories\",\"prompt\":\"x\",\"format\":{\"type\":\"object\","
                         "\"properties\":{\"age\":{\"type\":\"integer\",\"maximum\":150}}}}",
                         NULL);
    cr_assert_eq(r.status, 200);
    json_t *lines = ndjson_lines(&r.body);
    const json_t *last = json_array_get(lines, json_array_size(lines) - 1);
    cr_assert(strstr(json_string_value(json_object_get(last, "error")), "#/age") != NULL, "%s",
              slm_buf_cstr(&r.body));
    json_decref(lines);
    resp_free(&r);
}

/* ---------------------------------------------------------------- Ollama */

Test(server_gen, ollama_chat_and_generate) {
    struct resp r = http("POST", "/api/chat",
                         "{\"model\":\"stories\",\"stream\":false,\"messages\":[{\"role\":\"user\","
                         "\"content\":\"x\"}],\"options\":{\"num_predict\":4}}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(r.json, "message"), "content")),
        "Once upon a ");
    cr_assert(json_is_true(json_object_get(r.json, "done")));
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "done_reason")), "length");
    cr_assert_eq(json_integer_value(json_object_get(r.json, "eval_count")), 4);
    cr_assert(json_is_integer(json_object_get(r.json, "total_duration")));
    cr_assert(json_is_string(json_object_get(r.json, "created_at")));
    resp_free(&r);
    r = http("POST", "/api/generate", "{\"model\":\"stories\",\"prompt\":\"x\"}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(slm_buf_cstr(&r.headers), "application/x-ndjson") != NULL);
    json_t *lines = ndjson_lines(&r.body);
    struct slm_buf text = {0};
    for (size_t i = 0; i < json_array_size(lines); i++) {
        const json_t *l = json_array_get(lines, i);
        cr_assert(slm_buf_puts(&text, json_string_value(json_object_get(l, "response"))) == SLM_OK);
        cr_assert_eq(json_is_true(json_object_get(l, "done")), i + 1 == json_array_size(lines));
    }
    cr_assert_str_eq(slm_buf_cstr(&text), "Once upon a time, Lily played.");
    const json_t *last = json_array_get(lines, json_array_size(lines) - 1);
    cr_assert_str_eq(json_string_value(json_object_get(last, "done_reason")), "stop");
    slm_buf_free(&text);
    json_decref(lines);
    resp_free(&r);
}

Test(server_gen, ollama_load_and_unload) {
    struct resp r = http("POST", "/api/generate", "{\"model\":\"stories\"}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "done_reason")), "load");
    resp_free(&r);
    r = http("POST", "/api/chat", "{\"model\":\"stories\",\"messages\":[],\"keep_alive\":0}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "done_reason")), "unload");
    resp_free(&r);
    cr_assert_eq(atomic_load(&g_fake.submitted), 0);
}

Test(server_gen, embeddings_in_both_shapes) {
    struct resp r =
        http("POST", "/v1/embeddings", "{\"model\":\"stories\",\"input\":[\"a b\",\"c\"]}", NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *d = json_object_get(r.json, "data");
    cr_assert_eq(json_array_size(d), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(d, 1), "index")), 1);
    cr_assert_eq(json_array_size(json_object_get(json_array_get(d, 0), "embedding")), 8);
    cr_assert_gt(
        json_integer_value(json_object_get(json_object_get(r.json, "usage"), "prompt_tokens")), 0);
    resp_free(&r);
    r = http("POST", "/v1/embeddings",
             "{\"model\":\"stories\",\"input\":\"a\",\"encoding_format\":\"base64\"}", NULL);
    cr_assert_eq(r.status, 200);
    const char *b64 = json_string_value(
        json_object_get(json_array_get(json_object_get(r.json, "data"), 0), "embedding"));
    cr_assert_not_null(b64);
    cr_assert_eq(strlen(b64), 44, "8 floats = 32 bytes = 44 base64 characters: %s", b64);
    resp_free(&r);
    r = http("POST", "/api/embed",
             "{\"model\":\"stories\",\"input\":[\"a\",\"b\"],\"dimensions\":4}", NULL);
    cr_assert_eq(r.status, 200);
    const json_t *es = json_object_get(r.json, "embeddings");
    cr_assert_eq(json_array_size(es), 2);
    cr_assert_eq(json_array_size(json_array_get(es, 0)), 4);
    resp_free(&r);
    r = http("POST", "/api/embeddings", "{\"model\":\"stories\",\"prompt\":\"a\"}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "embedding")), 8);
    resp_free(&r);
    r = http("POST", "/api/embed", "{\"model\":\"stories\",\"input\":\"a\",\"dimensions\":9}",
             NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
}

Test(server_gen, show_and_tags_describe_the_model) {
    struct resp r = http("GET", "/api/tags", NULL, NULL);
    cr_assert_eq(r.status, 200);
    const json_t *m = json_array_get(json_object_get(r.json, "models"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "name")), "stories:latest");
    const json_t *d = json_object_get(m, "details");
    cr_assert_str_eq(json_string_value(json_object_get(d, "family")), "llama");
    cr_assert_str_eq(json_string_value(json_object_get(d, "format")), "gguf");
    resp_free(&r);
    r = http("POST", "/api/show", "{\"model\":\"stories\"}", NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    cr_assert(strstr(json_string_value(json_object_get(r.json, "modelfile")), "FROM ") != NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r.json, "model_info"),
                                                    "llama.context_length")),
                 2048);
    resp_free(&r);
    r = http("GET", "/v1/models/stories", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "id")), "stories:latest");
    resp_free(&r);
}

Test(server_gen, copy_create_and_delete) {
    struct resp r =
        http("POST", "/api/copy", "{\"source\":\"stories\",\"destination\":\"tale\"}", NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    r = http("POST", "/api/create",
             "{\"model\":\"pirate\",\"from\":\"stories\",\"system\":\"Talk like a pirate.\","
             "\"parameters\":{\"temperature\":0.1,\"stop\":[\"END\"]},\"stream\":false}",
             NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    r = http("POST", "/api/show", "{\"model\":\"pirate\"}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "system")), "Talk like a pirate.");
    cr_assert(strstr(json_string_value(json_object_get(r.json, "parameters")), "\"END\"") != NULL);
    resp_free(&r);
    /* The model's SYSTEM is the system prompt when the request has none. */
    r = http("POST", "/v1/chat/completions",
             "{\"model\":\"pirate\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    char *prompt = fake_last_prompt(&g_fake);
    cr_assert(strstr(prompt, "<|im_start|>system\nTalk like a pirate.<|im_end|>") != NULL, "%s",
              prompt);
    free(prompt);
    r = http("DELETE", "/api/delete", "{\"model\":\"tale\"}", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = http("GET", "/api/tags", NULL, NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "models")), 2);
    resp_free(&r);
}

Test(server_gen, model_template_renders_the_user_turn) {
    create_model("qa", "FROM stories\nSYSTEM Answer briefly.\nMESSAGE user Who is Lily?\n"
                       "MESSAGE assistant A girl.\nTEMPLATE \"\"\"Q: {{ input | upcase }} "
                       "({{ topic }}, {{ messages | size }} before)\nA:\"\"\"\n");
    struct resp r = http("POST", "/v1/chat/completions",
                         "{\"model\":\"qa\",\"variables\":{\"topic\":\"toys\"},\"messages\":[{"
                         "\"role\":\"user\",\"content\":\"who is tom?\"}]}",
                         NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    char *prompt = fake_last_prompt(&g_fake);
    const char *want = "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWho is "
                       "Lily?<|im_end|>\n<|im_start|>assistant\nA girl.<|im_end|>\n<|im_start|>"
                       "user\nQ: WHO IS TOM? (toys, 2 before)\nA:<|im_end|>";
    cr_assert(strstr(prompt, want) != NULL, "%s", prompt);
    free(prompt);
    /* Ollama generate on a model without a chat template: the template's
     * text is the whole prompt, as `slm run` does. */
    r = http("POST", "/api/generate", "{\"model\":\"qa\",\"prompt\":\"hi\",\"stream\":false}",
             NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    prompt = fake_last_prompt(&g_fake);
    cr_assert(strstr(prompt, "Q: HI (, 2 before)\nA:") != NULL, "%s", prompt);
    cr_assert(strstr(prompt, "<|im_start|>") == NULL, "%s", prompt);
    free(prompt);
}

/* ---------------------------------------------------------------- limits and lifetimes */

static void slow_setup(void) {
    setup_with("Once upon a time there was a little girl who liked to play outside all day. "
               "She had a red ball and a small dog. One day the dog ran after the ball into the "
               "woods, and the girl ran after the dog, and they found a tiny house made of bread.",
               0);
    g_fake.delay_ms = 100;
    g_fake.piece = 1;
}

TestSuite(server_slow, .init = slow_setup, .fini = teardown);

/* Sends a streaming request on a raw socket, reads a little, and leaves. */
static void leave_early(const char *path, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(slm_server_port(g_srv));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, strlen(body), body);
    cr_assert_eq(send(fd, req, (size_t)n, 0), n);
    char buf[512];
    cr_assert_gt(recv(fd, buf, sizeof(buf), 0), 0);
    close(fd);
}

Test(server_slow, a_client_that_leaves_cancels_its_request) {
    leave_early("/v1/chat/completions",
                "{\"model\":\"stories\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                "\"content\":\"x\"}]}");
    for (int i = 0; i < 200 && atomic_load(&g_fake.freed) < 1; i++) {
        slm_sleep_ms(50);
    }
    cr_assert_eq(atomic_load(&g_fake.cancelled), 1, "the request was not cancelled");
    cr_assert_eq(atomic_load(&g_fake.freed), 1, "the request was not freed");
    leave_early("/api/chat", "{\"model\":\"stories\",\"stream\":false,\"messages\":[{\"role\":"
                             "\"user\",\"content\":\"x\"}]}");
    for (int i = 0; i < 200 && atomic_load(&g_fake.freed) < 2; i++) {
        slm_sleep_ms(50);
    }
    cr_assert_eq(atomic_load(&g_fake.freed), 2, "the non-streaming request was not freed");
}

static double g_t_close;

static void *close_soon(void *arg) {
    (void)arg;
    /* Once the request is streaming (however loaded the machine is). */
    for (int i = 0; i < 400 && atomic_load(&g_fake.submitted) == 0; i++) {
        slm_sleep_ms(25);
    }
    slm_sleep_ms(200);
    g_t_close = slm_time_mono();
    stop_server();
    return NULL;
}

Test(server_slow, closing_the_server_ends_streams) {
    pthread_t th;
    pthread_create(&th, NULL, close_soon, NULL);
    struct resp r = http_ex("POST", "/v1/chat/completions",
                            "{\"model\":\"stories\",\"stream\":true,\"messages\":[{\"role\":"
                            "\"user\",\"content\":\"x\"}]}",
                            NULL, false);
    pthread_join(th, NULL);
    cr_assert_eq(r.curl_rc, CURLE_OK, "the stream was cut: %s", slm_buf_cstr(&r.body));
    cr_assert_lt(slm_time_mono() - g_t_close, 5.0, "close waited for the whole answer (20 s)");
    cr_assert(strstr(slm_buf_cstr(&r.body), "shutting down") != NULL, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    cr_assert_eq(atomic_load(&g_fake.active), 0);
}

Test(server_slow, request_timeout_is_504) {
    stop_server();
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&g_fake);
    p.request_timeout = 1;
    start_server(&p);
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL);
    cr_assert_eq(r.status, 504, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
}

Test(server_gen, max_tokens_cap) {
    stop_server();
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&g_fake);
    p.max_tokens = 3;
    start_server(&p);
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\","
             "\"content\":\"x\"}]}",
             NULL);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(err_msg(&r), "at most 3") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    r = http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(
        json_integer_value(json_object_get(json_object_get(r.json, "usage"), "completion_tokens")),
        3);
    resp_free(&r);
}

Test(server_gen, streams_of_several_choices_and_completions) {
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"stories\",\"stream\":true,\"n\":2,\"max_tokens\":3,\"messages\":"
             "[{\"role\":\"user\",\"content\":\"x\"}]}",
             NULL);
    cr_assert_eq(r.status, 200);
    json_t *ev = sse_events(&r.body);
    struct slm_buf text[2] = {{0}, {0}};
    int finishes = 0;
    for (size_t i = 0; i + 1 < json_array_size(ev); i++) {
        const json_t *c = json_array_get(json_object_get(json_array_get(ev, i), "choices"), 0);
        json_int_t k = json_integer_value(json_object_get(c, "index"));
        cr_assert(k == 0 || k == 1);
        const char *t = json_string_value(json_object_get(json_object_get(c, "delta"), "content"));
        cr_assert(slm_buf_puts(&text[k], t ? t : "") == SLM_OK);
        finishes += json_is_string(json_object_get(c, "finish_reason"));
    }
    cr_assert_str_eq(slm_buf_cstr(&text[0]), "Once upon");
    cr_assert_str_eq(slm_buf_cstr(&text[1]), "Once upon");
    cr_assert_eq(finishes, 2);
    slm_buf_free(&text[0]);
    slm_buf_free(&text[1]);
    json_decref(ev);
    resp_free(&r);
    r = http("POST", "/v1/completions",
             "{\"model\":\"stories\",\"stream\":true,\"echo\":true,\"logprobs\":1,\"max_tokens\":2,"
             "\"prompt\":\"Hi \"}",
             NULL);
    cr_assert_eq(r.status, 200);
    ev = sse_events(&r.body);
    struct slm_buf all = {0};
    for (size_t i = 0; i + 1 < json_array_size(ev); i++) {
        const json_t *e = json_array_get(ev, i);
        cr_assert_str_eq(json_string_value(json_object_get(e, "object")), "text_completion");
        const json_t *c = json_array_get(json_object_get(e, "choices"), 0);
        cr_assert(slm_buf_puts(&all, json_string_value(json_object_get(c, "text"))) == SLM_OK);
        const json_t *lp = json_object_get(c, "logprobs");
        if (json_is_object(lp)) {
            json_int_t off =
                json_integer_value(json_array_get(json_object_get(lp, "text_offset"), 0));
            cr_assert(i == 0 ? off == 3 : off > 3, "text_offset %lld in chunk %zu", (long long)off,
                      i);
        }
    }
    cr_assert_str_eq(slm_buf_cstr(&all), "Hi Once u");
    slm_buf_free(&all);
    json_decref(ev);
    resp_free(&r);
}

Test(server_gen, ollama_logprobs) {
    struct resp r =
        http("POST", "/api/generate",
             "{\"model\":\"stories\",\"prompt\":\"x\",\"stream\":false,\"logprobs\":true,"
             "\"top_logprobs\":2,\"options\":{\"num_predict\":3}}",
             NULL);
    cr_assert_eq(r.status, 200, "%s", slm_buf_cstr(&r.body));
    const json_t *lp = json_object_get(r.json, "logprobs");
    cr_assert_eq(json_array_size(lp), 3);
    cr_assert_eq(json_array_size(json_object_get(json_array_get(lp, 0), "top_logprobs")), 2);
    resp_free(&r);
}
