/*
 * test_server.c - the server without a model: request parsing (OpenAI and
 * Ollama), durations, tool-call parsing and grammars, the built-in tool
 * templates, error shapes, metrics; and the HTTP layer itself (routes,
 * methods, auth, body limits, errors) on 127.0.0.1 with a fake backend.
 *
 * Generation through HTTP with the fake backend is in test_server_http.c,
 * with the real scheduler and stories260K in test_server_live.c.
 */
#include "test_server_common.h"

#include "server/headers.h"

extern const char slm__tool_template_hermes[];
extern const char slm__tool_template_llama3[];
extern const char slm__tool_template_mistral[];

/* ---------------------------------------------------------------- parsing */

static void parse_ok(enum srv_route_id route, const char *body, struct srv_gen_req *g) {
    struct srv_error e;
    int rc = srv_parse_request(route, body, strlen(body), g, &e);
    cr_assert_eq(rc, SLM_OK, "%s -> %d %s", body, e.status, e.msg);
}

static void parse_fails(enum srv_route_id route, const char *body, int status, const char *want) {
    struct srv_gen_req g;
    struct srv_error e;
    int rc = srv_parse_request(route, body, strlen(body), &g, &e);
    cr_assert_neq(rc, SLM_OK, "accepted: %s", body);
    cr_assert_eq(e.status, status, "%s -> %d %s", body, e.status, e.msg);
    cr_assert(strstr(e.msg, want) != NULL, "%s: message '%s' lacks '%s'", body, e.msg, want);
}

/* server/headers.h: the header values read before the body. */
Test(server_headers, content_length_and_api_key) {
    uint64_t n = 0;
    cr_assert_eq(srv_content_length("0", &n), SLM_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(srv_content_length("00000000000000000000000000000000000009000000", &n), SLM_OK);
    cr_assert_eq(n, 9000000);
    cr_assert_eq(srv_content_length("99999999999999999999999", &n), SLM_OK);
    cr_assert_eq(n, UINT64_MAX);
    const char *bad[] = {"", " 5", "+5", "-1", "5,5", "0x10", "1e9", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(srv_content_length(bad[i], &n), SLM_E_INVALID, "%s", bad[i]);
    }
    cr_assert(srv_api_key_ok("Bearer sk-1", NULL, "sk-1"));
    cr_assert(srv_api_key_ok("bearer   sk-1", NULL, "sk-1"));
    cr_assert(srv_api_key_ok(NULL, "sk-1", "sk-1"));
    cr_assert(srv_api_key_ok("Basic abc", "sk-1", "sk-1"));
    cr_assert_not(srv_api_key_ok("Bearer sk-2", "sk-1", "sk-1")); /* Bearer decides alone */
    cr_assert_not(srv_api_key_ok("Bearer sk-1x", NULL, "sk-1"));
    cr_assert_not(srv_api_key_ok("Bearer sk-", NULL, "sk-1"));
    cr_assert_not(srv_api_key_ok("sk-1", NULL, "sk-1"));
    cr_assert_not(srv_api_key_ok(NULL, NULL, "sk-1"));
}

Test(server_parse, openai_chat_maps_fields_to_options) {
    struct srv_gen_req g;
    parse_ok(
        SRV_R_OPENAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
        "\"text\":\"b\"}]}],\"temperature\":0.2,\"max_tokens\":7,\"stop\":[\"x\",\"y\"],"
        "\"seed\":3,\"top_k\":5,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"n\":2,\"logprobs\":true,\"top_logprobs\":3,\"user\":\"u\",\"store\":false}",
        &g);
    cr_assert_eq(g.kind, SRV_KIND_CHAT);
    cr_assert_str_eq(g.model, "m");
    cr_assert(g.stream && g.include_usage && g.logprobs);
    cr_assert_eq(g.top_logprobs, 3);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(g.messages, 0), "role")),
                     "system");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(g.messages, 1), "content")),
                     "a\nb");
    cr_assert_eq(json_integer_value(json_object_get(g.options, "num_predict")), 7);
    cr_assert_float_eq(json_number_value(json_object_get(g.options, "temperature")), 0.2, 1e-9);
    cr_assert_eq(json_array_size(json_object_get(g.options, "stop")), 2);
    cr_assert_eq(json_integer_value(json_object_get(g.options, "top_k")), 5);
    srv_gen_req_free(&g);
}

Test(server_parse, openai_chat_errors_name_the_field) {
    parse_fails(SRV_R_OPENAI_CHAT, "{\"messages\":[]}", 400, "'model' is required");
    parse_fails(SRV_R_OPENAI_CHAT, "{\"model\":\"m\"}", 400, "'messages'");
    parse_fails(SRV_R_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", 400, "non-empty");
    parse_fails(SRV_R_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\"}]}", 400,
                "messages[0].role");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                "\"image_url\",\"image_url\":{}}]}]}",
                400, "image_url");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"temperature\":-1}",
                400, "temperature");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":99}",
                400, "'n'");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"top_logprobs\":2}",
                400, "logprobs");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"logit_bias\":{\"1\":2}}",
                400, "logit_bias");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"response_format\":{\"type\":\"yaml\"}}",
                400, "response_format.type");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"stop\":[1]}",
                400, "stop");
    parse_fails(SRV_R_OPENAI_CHAT, "{\"model\":", 400, "invalid JSON");
    parse_fails(SRV_R_OPENAI_CHAT, "[1,2]", 400, "JSON object");
    parse_fails(SRV_R_OPENAI_CHAT, "{\"model\":\"m\",\"model\":\"n\"}", 400, "invalid JSON");
}

Test(server_parse, response_formats) {
    struct srv_gen_req g;
    parse_ok(SRV_R_OPENAI_CHAT,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\","
             "\"schema\":{\"type\":\"object\"}}}}",
             &g);
    cr_assert_eq(g.format, SLM_TURN_FORMAT_SCHEMA);
    cr_assert(json_is_object(g.schema));
    srv_gen_req_free(&g);
    parse_ok(SRV_R_OPENAI_CHAT,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"response_format\":{\"type\":\"json_object\"}}",
             &g);
    cr_assert_eq(g.format, SLM_TURN_FORMAT_JSON);
    srv_gen_req_free(&g);
    parse_ok(SRV_R_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[],\"format\":\"json\"}", &g);
    cr_assert_eq(g.format, SLM_TURN_FORMAT_JSON);
    cr_assert(g.load_only);
    cr_assert(g.stream, "Ollama streams by default");
    srv_gen_req_free(&g);
    parse_fails(SRV_R_OLLAMA_CHAT, "{\"model\":\"m\",\"format\":\"xml\"}", 400, "'format'");
}

Test(server_parse, ollama_options_and_fields) {
    struct srv_gen_req g;
    parse_ok(SRV_R_OLLAMA_GENERATE,
             "{\"model\":\"m\",\"prompt\":\"hi\",\"system\":\"s\",\"raw\":true,\"stream\":false,"
             "\"options\":{\"temperature\":0,\"num_predict\":4,\"num_ctx\":99999,\"mirostat\":1},"
             "\"keep_alive\":\"10m\"}",
             &g);
    cr_assert_eq(g.kind, SRV_KIND_GENERATE);
    cr_assert(g.raw && !g.stream);
    cr_assert_str_eq(g.system, "s");
    cr_assert_eq(g.keep_alive_ms, 600000);
    cr_assert_eq(json_integer_value(json_object_get(g.options, "num_predict")), 4);
    cr_assert_null(json_object_get(g.options, "num_ctx"), "num_ctx belongs to the server");
    cr_assert_null(json_object_get(g.options, "mirostat"));
    srv_gen_req_free(&g);
    parse_fails(SRV_R_OLLAMA_GENERATE,
                "{\"model\":\"m\",\"prompt\":\"x\",\"options\":{\"top_p\":3}}", 400, "top_p");
    parse_fails(SRV_R_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"x\",\"context\":[1,2]}", 400,
                "context");
    parse_fails(SRV_R_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"x\",\"images\":[\"aGk=\"]}",
                400, "images");
    parse_fails(SRV_R_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[],\"think\":true}", 400,
                "think");
    parse_fails(SRV_R_OLLAMA_CHAT, "{\"model\":\"m\",\"keep_alive\":\"soon\"}", 400, "keep_alive");
    parse_ok(SRV_R_OLLAMA_GENERATE, "{\"name\":\"m\"}", &g);
    cr_assert(g.load_only);
    srv_gen_req_free(&g);
}

Test(server_parse, completions_and_embeddings_inputs) {
    struct srv_gen_req g;
    parse_ok(SRV_R_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\",\"echo\":true}", &g);
    cr_assert_eq(json_array_size(g.inputs), 1);
    cr_assert(g.echo);
    srv_gen_req_free(&g);
    parse_ok(SRV_R_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"n\":2}", &g);
    cr_assert_eq(json_array_size(g.inputs), 2);
    srv_gen_req_free(&g);
    parse_ok(SRV_R_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,3],\"logprobs\":2}", &g);
    cr_assert_eq(json_array_size(g.inputs), 1);
    cr_assert(json_is_array(json_array_get(g.inputs, 0)));
    cr_assert(g.logprobs);
    cr_assert_eq(g.top_logprobs, 2);
    srv_gen_req_free(&g);
    parse_ok(SRV_R_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\",\"suffix\":\"z\"}", &g);
    cr_assert(g.fim.on);
    cr_assert_eq(g.fim.prefix.len, 1);
    cr_assert_eq(g.fim.suffix.ptr[0], 'z');
    srv_gen_req_free(&g);
    parse_fails(SRV_R_OPENAI_COMPLETIONS,
                "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"suffix\":\"z\"}", 400,
                "one prompt string");
    parse_fails(SRV_R_OPENAI_COMPLETIONS,
                "{\"model\":\"m\",\"prompt\":\"a\",\"suffix\":\"z\",\"echo\":true}", 400, "echo");
    parse_fails(SRV_R_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[1],[-2]]}", 400,
                "token id");
    parse_fails(SRV_R_OPENAI_COMPLETIONS,
                "{\"model\":\"m\",\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\"],\"n\":4}", 400, "n");
    parse_ok(SRV_R_OPENAI_EMBEDDINGS,
             "{\"model\":\"m\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\"}", &g);
    cr_assert_eq(g.kind, SRV_KIND_EMBED);
    cr_assert(g.base64);
    srv_gen_req_free(&g);
    parse_fails(SRV_R_OPENAI_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"\"}", 400, "empty");
    parse_fails(SRV_R_OPENAI_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":1}",
                400, "encoding_format");
    parse_ok(SRV_R_OLLAMA_EMBEDDINGS, "{\"model\":\"m\",\"prompt\":\"\"}", &g);
    cr_assert_eq(json_array_size(g.inputs), 0);
    srv_gen_req_free(&g);
}

Test(server_parse, tools_and_tool_choice) {
    const char *tools = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
                        "\"string\"}},\"required\":[\"city\"]}}}]";
    char body[1024];
    struct srv_gen_req g;
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,"
             "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}}",
             tools);
    parse_ok(SRV_R_OPENAI_CHAT, body, &g);
    cr_assert_eq(g.tool_choice, SLM_TOOLS_NAMED);
    cr_assert_str_eq(g.tool_name, "get_weather");
    srv_gen_req_free(&g);
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,"
             "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}",
             tools);
    parse_fails(SRV_R_OPENAI_CHAT, body, 400, "nope");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":"
                "[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}",
                400, "function.name");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":"
                "[{\"function\":{\"name\":\"a\"}},{\"function\":{\"name\":\"a\"}}]}",
                400, "twice");
    /* Replayed calls: OpenAI arguments are JSON text, Ollama's an object. */
    parse_ok(SRV_R_OPENAI_CHAT,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
             "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
             "\"arguments\":\"{\\\"a\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\","
             "\"content\":\"42\"}]}",
             &g);
    const json_t *call =
        json_array_get(json_object_get(json_array_get(g.messages, 0), "tool_calls"), 0);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(call, "arguments"), "a")), 1);
    srv_gen_req_free(&g);
}

Test(server_parse, durations) {
    int64_t ms;
    cr_assert_eq(srv_parse_duration_text("5m", &ms), SLM_OK);
    cr_assert_eq(ms, 300000);
    cr_assert_eq(srv_parse_duration_text("1h30m", &ms), SLM_OK);
    cr_assert_eq(ms, 5400000);
    cr_assert_eq(srv_parse_duration_text("300ms", &ms), SLM_OK);
    cr_assert_eq(ms, 300);
    cr_assert_eq(srv_parse_duration_text("1.5s", &ms), SLM_OK);
    cr_assert_eq(ms, 1500);
    cr_assert_eq(srv_parse_duration_text("-1", &ms), SLM_OK);
    cr_assert_eq(ms, -1);
    cr_assert_eq(srv_parse_duration_text("-5m", &ms), SLM_OK);
    cr_assert_eq(ms, -1);
    cr_assert_eq(srv_parse_duration_text("0", &ms), SLM_OK);
    cr_assert_eq(ms, 0);
    cr_assert_eq(srv_parse_duration_text("30", &ms), SLM_OK);
    cr_assert_eq(ms, 30000);
    cr_assert_neq(srv_parse_duration_text("5 minutes", &ms), SLM_OK);
    cr_assert_neq(srv_parse_duration_text("", &ms), SLM_OK);
    cr_assert_neq(srv_parse_duration_text("m", &ms), SLM_OK);
    json_t *n = json_integer(-3);
    cr_assert_eq(srv_parse_duration_ms(n, &ms), SLM_OK);
    cr_assert_eq(ms, -1);
    json_decref(n);
}

/* ---------------------------------------------------------------- tools */

static json_t *weather_tools(void) {
    json_t *t;
    const char *src = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                      "\"description\":\"Weather in a city\",\"parameters\":{\"type\":\"object\","
                      "\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\","
                      "\"f\"]}},\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":"
                      "{\"name\":\"add\",\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":"
                      "{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}}}}}]";
    cr_assert_eq(slm_json_parse(src, strlen(src), "tools", &t, NULL), SLM_OK);
    return t;
}

static json_t *calls_of(const char *text, bool bare, const char *content) {
    json_t *tools = weather_tools();
    json_t *calls = NULL;
    struct slm_buf rest = {0};
    cr_assert_eq(slm_tools_parse(text, strlen(text), tools, bare, &calls, &rest), SLM_OK);
    cr_assert_str_eq(slm_buf_cstr(&rest), content, "content of '%s'", text);
    slm_buf_free(&rest);
    json_decref(tools);
    return calls;
}

static void call_is(const json_t *calls, size_t i, const char *name, const char *key,
                    const char *value) {
    const json_t *c = json_array_get(calls, i);
    cr_assert_str_eq(json_string_value(json_object_get(c, "name")), name);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "arguments"), key)),
                     value);
}

Test(server_tools, parses_the_shapes_models_write) {
    json_t *c = calls_of("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                         "\"Paris\"}}\n</tool_call>",
                         true, "");
    cr_assert_eq(json_array_size(c), 1);
    call_is(c, 0, "get_weather", "city", "Paris");
    json_decref(c);
    c = calls_of("Let me check.\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":"
                 "\"Oslo\"}}</tool_call>\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{"
                 "\"city\":\"Rome\"}}</tool_call>",
                 true, "Let me check.");
    cr_assert_eq(json_array_size(c), 2);
    call_is(c, 1, "get_weather", "city", "Rome");
    json_decref(c);
    c = calls_of("```json\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}\n```",
                 true, "");
    call_is(c, 0, "get_weather", "city", "Lima");
    json_decref(c);
    c = calls_of("[TOOL_CALLS][{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Kyiv\"}}]", true,
                 "");
    call_is(c, 0, "get_weather", "city", "Kyiv");
    json_decref(c);
    c = calls_of(
        "<|python_tag|>{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Nice\\\"}\"}",
        true, "");
    call_is(c, 0, "get_weather", "city", "Nice");
    json_decref(c);
    /* Unclosed block at the end (cut by max_tokens or a stop string). */
    c = calls_of("<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Bern\"}}", true,
                 "");
    call_is(c, 0, "get_weather", "city", "Bern");
    json_decref(c);
}

Test(server_tools, ignores_what_is_not_a_declared_call) {
    json_t *c = calls_of("<tool_call>{\"name\":\"rm_rf\",\"arguments\":{}}</tool_call>", true,
                         "<tool_call>{\"name\":\"rm_rf\",\"arguments\":{}}</tool_call>");
    cr_assert_eq(json_array_size(c), 0);
    json_decref(c);
    c = calls_of("{\"name\":\"get_weather\",\"arguments\":{\"city\":\"X\"}}", false,
                 "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"X\"}}");
    cr_assert_eq(json_array_size(c), 0, "bare JSON counts only when allowed");
    json_decref(c);
    c = calls_of("  The weather is nice.  ", true, "The weather is nice.");
    cr_assert_eq(json_array_size(c), 0);
    json_decref(c);
    c = calls_of("<tool_call>not json</tool_call> tail", true,
                 "<tool_call>not json</tool_call>\ntail");
    cr_assert_eq(json_array_size(c), 0);
    json_decref(c);
}

Test(server_tools, safe_prefix_holds_back_possible_calls) {
    const struct slm_tool_family *f = slm_tool_family_for("qwen2", "<|im_start|>");
    cr_assert_str_eq(f->name, "hermes");
    cr_assert_eq(slm_tools_safe_prefix(f, "Hello there", 11, true), 11);
    cr_assert_eq(slm_tools_safe_prefix(f, "Hello <tool", 11, true), 6);
    cr_assert_eq(slm_tools_safe_prefix(f, "Hi <tool_call>{", 15, true), 3);
    cr_assert_eq(slm_tools_safe_prefix(f, "  {\"name\"", 9, true), 0);
    cr_assert_eq(slm_tools_safe_prefix(f, "  {\"name\"", 9, false), 9);
    cr_assert_eq(slm_tools_safe_prefix(f, "   ", 3, true), 0);
    cr_assert_str_eq(slm_tool_family_for("llama", "<|start_header_id|>")->name, "llama3");
    cr_assert_str_eq(slm_tool_family_for("llama", "[INST]")->name, "mistral");
}

Test(server_tools, grammar_wraps_the_calls) {
    json_t *tools = weather_tools();
    struct slm_buf g = {0};
    struct slm_err err = {0};
    const struct slm_tool_family *f = slm_tool_family_for("qwen2", "");
    cr_assert_eq(slm_tools_grammar(tools, "get_weather", false, f, &g, &err), SLM_OK, "%s",
                 err.msg);
    cr_assert(strncmp(g.ptr, "root ::= slm-tool-call-block\n", 29) == 0, "%s", g.ptr);
    cr_assert(strstr(g.ptr, "\"<tool_call>\\n\"") != NULL, "%s", g.ptr);
    cr_assert(strstr(g.ptr, "get_weather") != NULL);
    cr_assert(strstr(g.ptr, "\"add\"") == NULL, "only the named tool");
    slm_buf_clear(&g);
    cr_assert_eq(slm_tools_grammar(tools, NULL, true, f, &g, &err), SLM_OK, "%s", err.msg);
    cr_assert(strstr(g.ptr, "(\"\\n\" slm-tool-call-block)*") != NULL, "%s", g.ptr);
    slm_buf_clear(&g);
    const struct slm_tool_family *m = slm_tool_family_for("llama", "[INST]");
    cr_assert_eq(slm_tools_grammar(tools, NULL, true, m, &g, &err), SLM_OK, "%s", err.msg);
    cr_assert(strstr(g.ptr, "\"[TOOL_CALLS]\"") != NULL, "%s", g.ptr);
    slm_buf_free(&g);
    json_decref(tools);
}

Test(server_tools, replayed_calls_use_the_family_syntax) {
    json_t *args = json_pack("{s:s}", "city", "Paris");
    struct slm_buf b = {0};
    const struct slm_tool_family *f = slm_tool_families();
    cr_assert_eq(slm_tools_format_call(&f[0], "get_weather", args, &b), SLM_OK);
    cr_assert_str_eq(b.ptr, "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":"
                            "\"Paris\"}}\n</tool_call>");
    slm_buf_clear(&b);
    cr_assert_eq(slm_tools_format_call(&f[1], "get_weather", args, &b), SLM_OK);
    cr_assert_str_eq(b.ptr, "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Paris\"}}");
    slm_buf_free(&b);
    json_decref(args);
}

/* The .liquid files are the readable copies of the built-in templates. */
Test(server_tools, built_in_templates_match_their_files) {
    const char *src = getenv("SLM_SRC");
    if (!src) {
        cr_skip_test("SLM_SRC is not set");
    }
    const char *names[] = {"hermes", "llama3", "mistral"};
    const char *texts[] = {slm__tool_template_hermes, slm__tool_template_llama3,
                           slm__tool_template_mistral};
    for (size_t i = 0; i < 3; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/templates/tools/%s.liquid", src, names[i]);
        struct slm_buf b = {0};
        cr_assert_eq(slm_file_read(path, 0, &b, NULL), SLM_OK, "%s", path);
        cr_assert_str_eq(slm_buf_cstr(&b), texts[i],
                         "%s differs from src/turn/tool_templates.c: copy the file there", path);
        slm_buf_free(&b);
        cr_assert_str_eq(slm_tool_families()[i].name, names[i]);
    }
}

Test(server_tools, templates_render) {
    json_t *tools = weather_tools();
    const struct slm_tool_family *f = slm_tool_families();
    for (size_t i = 0; f[i].name; i++) {
        struct slm_liquid_template *t = NULL;
        struct slm_err err = {0};
        cr_assert_eq(slm_liquid_parse(f[i].name, f[i].template_src, strlen(f[i].template_src), NULL,
                                      &t, &err),
                     SLM_OK, "%s: %s", f[i].name, err.msg);
        struct slm_buf out = {0};
        cr_assert_eq(
            slm_tools_render(t, tools, "named", "get_weather", "You are terse.", &f[i], &out, &err),
            SLM_OK, "%s: %s", f[i].name, err.msg);
        cr_assert(strstr(out.ptr, "You are terse.") == out.ptr, "%s: %s", f[i].name, out.ptr);
        cr_assert(strstr(out.ptr, "\"get_weather\"") != NULL, "%s: %s", f[i].name, out.ptr);
        cr_assert(strstr(out.ptr, "Weather in a city") != NULL, "%s", f[i].name);
        slm_buf_clear(&out);
        cr_assert_eq(slm_tools_render(t, tools, "auto", NULL, NULL, &f[i], &out, &err), SLM_OK);
        cr_assert(strstr(out.ptr, "get_weather") != NULL);
        slm_buf_free(&out);
        slm_liquid_free(t);
    }
    json_decref(tools);
}

/* ---------------------------------------------------------------- replies and metrics */

Test(server_reply, error_shapes) {
    struct srv_error e = {0};
    struct slm_err err = {0};
    slm_err_set(&err, SLM_E_LIMIT, "the queue is full");
    srv_fail(&e, SLM_E_LIMIT, &err);
    cr_assert_eq(e.status, 429);
    cr_assert_eq(e.retry_after, 1);
    json_t *o = srv_error_json(SRV_API_OPENAI, &e);
    const json_t *inner = json_object_get(o, "error");
    cr_assert(strstr(json_string_value(json_object_get(inner, "message")), "queue is full"));
    cr_assert_str_eq(json_string_value(json_object_get(inner, "type")), "rate_limit_error");
    cr_assert(json_is_null(json_object_get(inner, "param")));
    json_decref(o);
    o = srv_error_json(SRV_API_OLLAMA, &e);
    cr_assert(json_is_string(json_object_get(o, "error")));
    json_decref(o);
    cr_assert_eq((srv_fail(&e, SLM_E_OVERFLOW, NULL), e.status), 400);
    cr_assert_str_eq(e.code, "context_length_exceeded");
    cr_assert_eq((srv_fail(&e, SLM_E_NOT_FOUND, NULL), e.status), 404);
    cr_assert_eq((srv_fail(&e, SLM_E_TOO_LARGE, NULL), e.status), 413);
    cr_assert_eq((srv_fail(&e, SLM_E_BACKEND, NULL), e.status), 500);
}

Test(server_reply, model_text_is_always_valid_json) {
    json_t *v = srv_json_text("ok \xff\xfe caf\xc3\xa9 \xe2\x82", 14);
    cr_assert_not_null(v);
    cr_assert(strstr(json_string_value(v), "caf\xc3\xa9") != NULL);
    cr_assert(strstr(json_string_value(v), "\xef\xbf\xbd") != NULL);
    json_decref(v);
    char name[64];
    srv_format_params(292800, name, sizeof(name));
    cr_assert_str_eq(name, "292.80K");
    srv_format_params(1540000000ull, name, sizeof(name));
    cr_assert_str_eq(name, "1.54B");
}

Test(server_metrics, renders_prometheus_text) {
    struct srv_metrics *m = NULL;
    cr_assert_eq(srv_metrics_init(&m), SLM_OK);
    srv_metrics_request(m, "/v1/chat/completions", 200, 0.3);
    srv_metrics_request(m, "/v1/chat/completions", 429, 0.001);
    struct slm_gen_stats st = {.n_prompt = 10, .n_cached = 4, .n_gen = 5, .t_gen = 0.5};
    srv_metrics_tokens(m, "a\"b", &st);
    srv_metrics_ttft(m, 0.02);
    srv_metrics_reject(m, "queue_full");
    struct slm_buf b = {0};
    struct slm_pool_entry ents[2] = {
        {.size_bytes = 1000,
         .stats = {.queue_depth = 3,
                   .active = 2,
                   .last_batch = 7,
                   .gen_tokens = 50,
                   .gen_seconds = 0.5}},
        {.size_bytes = 2000},
    };
    const char *names[2] = {"m1:latest", "m2:latest"};
    cr_assert_eq(srv_metrics_render(m, ents, names, 2, &b), SLM_OK);
    const char *want[] = {
        "slm_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1",
        "slm_http_requests_total{route=\"/v1/chat/completions\",status=\"429\"} 1",
        "slm_http_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.5\"} 2",
        "slm_http_request_duration_seconds_count{route=\"/v1/chat/completions\"} 2",
        "slm_generated_tokens_total{model=\"a\\\"b\"} 5",
        "slm_prompt_tokens_cached_total{model=\"a\\\"b\"} 4",
        "slm_time_to_first_token_seconds_bucket{le=\"0.025\"} 1",
        "slm_rejected_requests_total{reason=\"queue_full\"} 1",
        "slm_models_loaded 2",
        "slm_queue_depth{model=\"m1:latest\"} 3",
        "slm_sequences_active{model=\"m1:latest\"} 2",
        "slm_batch_tokens{model=\"m1:latest\"} 7",
        "slm_generation_tokens_per_second{model=\"m1:latest\"} 100",
        "slm_generation_tokens_per_second{model=\"m2:latest\"} 0",
        "slm_model_memory_bytes{model=\"m2:latest\"} 2000",
        "# TYPE slm_http_request_duration_seconds histogram",
    };
    for (size_t i = 0; i < SLM_ARRAY_LEN(want); i++) {
        cr_assert(strstr(b.ptr, want[i]) != NULL, "missing '%s' in:\n%s", want[i], b.ptr);
    }
    slm_buf_free(&b);
    srv_metrics_free(m);
}

/* ---------------------------------------------------------------- HTTP without a model */

static struct fake g_nofake;

static void http_setup(void) {
    make_home();
    memset(&g_nofake, 0, sizeof(g_nofake));
    g_nofake.script = "";
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&g_nofake);
    p.max_body = 4096;
    start_server(&p);
}

static void http_teardown(void) {
    stop_server();
    remove_home();
}

TestSuite(server_http, .init = http_setup, .fini = http_teardown);

Test(server_http, root_health_and_unknown_routes) {
    struct resp r = http("GET", "/", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(slm_buf_cstr(&r.body), "running") != NULL);
    cr_assert(strstr(slm_buf_cstr(&r.headers), "X-Request-Id: ") != NULL);
    resp_free(&r);
    r = http("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = http("GET", "/v1/nothing", NULL, NULL);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(err_code(&r), "not_found");
    resp_free(&r);
    r = http("GET", "/v1/chat/completions", NULL, NULL);
    cr_assert_eq(r.status, 405);
    resp_free(&r);
    r = http("GET", "/api/nothing", NULL, NULL);
    cr_assert_eq(r.status, 404);
    cr_assert(json_is_string(json_object_get(r.json, "error")), "Ollama-shaped error");
    resp_free(&r);
}

Test(server_http, bad_bodies_are_400_and_large_ones_413) {
    struct resp r = http("POST", "/v1/chat/completions", "{not json", NULL);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(err_msg(&r), "invalid JSON") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    r = http("POST", "/v1/chat/completions", big, NULL);
    cr_assert_eq(r.status, 413);
    cr_assert_str_eq(err_code(&r), "request_too_large");
    resp_free(&r);
    free(big);
    /* The server is still fine. */
    r = http("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
}

Test(server_http, unknown_models_and_paths_are_404) {
    struct resp r =
        http("POST", "/v1/chat/completions",
             "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(err_code(&r), "model_not_found");
    cr_assert(strstr(err_msg(&r), "nope") != NULL);
    resp_free(&r);
    r = http("POST", "/api/generate", "{\"model\":\"/etc/passwd\",\"prompt\":\"x\"}", NULL);
    cr_assert_eq(r.status, 404);
    cr_assert(strstr(err_msg(&r), "not files") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    r = http("POST", "/api/show", "{\"model\":\"../x.gguf\"}", NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    r = http("GET", "/v1/models/nope", NULL, NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
}

Test(server_http, empty_store_lists_nothing) {
    struct resp r = http("GET", "/v1/models", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "object")), "list");
    cr_assert_eq(json_array_size(json_object_get(r.json, "data")), 0);
    resp_free(&r);
    r = http("GET", "/api/tags", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "models")), 0);
    resp_free(&r);
    r = http("GET", "/api/ps", NULL, NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = http("GET", "/api/version", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(json_is_string(json_object_get(r.json, "version")));
    resp_free(&r);
    r = http("GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(slm_buf_cstr(&r.body), "slm_http_requests_total{route=\"/v1/models\","
                                            "status=\"200\"} 1") != NULL,
              "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
}

Test(server_http, admin_routes_check_their_input) {
    struct resp r = http("POST", "/api/create", "{\"model\":\"x\",\"from\":\"/etc/passwd\"}", NULL);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(err_msg(&r), "from") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    r = http("POST", "/api/create", "{\"model\":\"x\",\"from\":\"nope\"}", NULL);
    cr_assert_eq(r.status, 404, "%s", slm_buf_cstr(&r.body));
    resp_free(&r);
    r = http("POST", "/api/create", "{\"model\":\"x\",\"from\":\"m\",\"template\":\"/etc/passwd\"}",
             NULL);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(err_msg(&r), "Liquid") != NULL, "%s", err_msg(&r));
    resp_free(&r);
    r = http("POST", "/api/copy", "{\"source\":\"nope\",\"destination\":\"b\"}", NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    r = http("DELETE", "/api/delete", "{\"model\":\"nope\"}", NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    r = http("POST", "/api/pull", "{\"model\":\"/abs\"}", NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
}

/* ---------------------------------------------------------------- auth */

static void auth_setup(void) {
    make_home();
    memset(&g_nofake, 0, sizeof(g_nofake));
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&g_nofake);
    p.api_key = "s3cret";
    start_server(&p);
}

TestSuite(server_auth, .init = auth_setup, .fini = http_teardown);

Test(server_auth, key_is_required_except_for_health) {
    struct resp r = http("GET", "/v1/models", NULL, NULL);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(err_code(&r), "invalid_api_key");
    cr_assert(strstr(slm_buf_cstr(&r.headers), "WWW-Authenticate: Bearer") != NULL);
    resp_free(&r);
    r = http("GET", "/v1/models", NULL, "wrong");
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    r = http("GET", "/v1/models", NULL, "s3cret2");
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    r = http("GET", "/v1/models", NULL, "s3cret");
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = http("POST", "/api/chat", "{}", NULL);
    cr_assert_eq(r.status, 401);
    cr_assert(json_is_string(json_object_get(r.json, "error")));
    resp_free(&r);
    r = http("GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    r = http("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
}

Test(server_open, refuses_public_hosts_without_a_key) {
    struct fake f;
    memset(&f, 0, sizeof(f));
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&f);
    p.host = "0.0.0.0";
    p.port = 0;
    struct slm_server *s = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_server_open(&p, &s, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "--api-key") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "--insecure") != NULL, "%s", err.msg);
    p.host = "127.0.0.1";
    p.backend.read = NULL;
    cr_assert_eq(slm_server_open(&p, &s, &err), SLM_E_INVALID);
}

Test(server_open, a_busy_port_is_a_clear_error) {
    make_home();
    struct fake f;
    memset(&f, 0, sizeof(f));
    struct slm_server_params p = slm_server_params_default();
    p.backend = fake_backend(&f);
    start_server(&p);
    struct slm_server_params q = p;
    q.port = slm_server_port(g_srv);
    struct slm_server *s2 = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_server_open(&q, &s2, &err), SLM_E_IO);
    cr_assert(strstr(err.msg, "in use") != NULL, "%s", err.msg);
    stop_server();
    remove_home();
}

/* ---------------------------------------------------------------- /api/create */

Test(server_create, the_modelfile_means_what_the_fields_say) {
    const char *src = "{\"from\":\"base\",\"system\":\"Say \\\"hi\\\".\\nThen stop \\\\ here.\","
                      "\"template\":\"Q: {{ input }}\\nA:\",\"parameters\":{\"temperature\":0.5,"
                      "\"stop\":[\"END\",\"a \\\"b\\\" \\\\c\"]},\"messages\":[{\"role\":\"user\","
                      "\"content\":\"hi\"}],\"license\":\"MIT\"}";
    json_t *body = NULL;
    cr_assert_eq(slm_json_parse(src, strlen(src), "body", &body, NULL), SLM_OK);
    struct slm_buf mf = {0};
    struct srv_error e = {0};
    cr_assert_eq(srv_create_modelfile(body, &mf, &e), SLM_OK, "%s", e.msg);
    struct slm_modelfile *m = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_modelfile_parse(mf.ptr, mf.len, "Modelfile", &m, &err), SLM_OK, "%s\n%s",
                 err.msg, mf.ptr);
    cr_assert_str_eq(m->from, "base");
    cr_assert_str_eq(m->system, "Say \"hi\".\nThen stop \\ here.");
    cr_assert_str_eq(m->template_text, "Q: {{ input }}\nA:");
    cr_assert_float_eq(json_number_value(json_object_get(m->params, "temperature")), 0.5, 1e-9);
    const json_t *stop = json_object_get(m->params, "stop");
    cr_assert_eq(json_array_size(stop), 2);
    cr_assert_str_eq(json_string_value(json_array_get(stop, 1)), "a \"b\" \\c");
    cr_assert_eq(json_array_size(m->messages), 1);
    cr_assert_str_eq(m->license, "MIT");
    slm_modelfile_free(m);
    slm_buf_free(&mf);
    json_decref(body);
}

Test(server_create, refuses_files_and_quotes) {
    const char *bad[] = {
        "{\"from\":\"./model.gguf\"}",
        "{\"from\":\"base\\nADAPTER /etc/x\"}",
        "{\"from\":\"base\",\"template\":\"/etc/passwd\"}",
        "{\"from\":\"base\",\"system\":\"a \\\"\\\"\\\" b\"}",
        "{\"from\":\"base\",\"files\":{\"m.gguf\":\"sha256:00\"}}",
        "{\"from\":\"base\",\"adapters\":{\"a.gguf\":\"sha256:00\"}}",
        "{\"from\":\"base\",\"quantize\":\"q4_K_M\"}",
        "{\"from\":\"base\",\"parameters\":{\"stop\":\"a\\nFROM x\"}}",
        "{\"from\":\"base\",\"parameters\":{\"bad key\":1}}",
        "{\"from\":\"base\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
    };
    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        json_t *body = NULL;
        cr_assert_eq(slm_json_parse(bad[i], strlen(bad[i]), "body", &body, NULL), SLM_OK, "%s",
                     bad[i]);
        struct slm_buf mf = {0};
        struct srv_error e = {0};
        cr_assert_neq(srv_create_modelfile(body, &mf, &e), SLM_OK, "accepted: %s", bad[i]);
        cr_assert_eq(e.status, 400, "%s", bad[i]);
        slm_buf_free(&mf);
        json_decref(body);
    }
}

/* llama-server's /infill body, as llama.vim sends it (no model). */
Test(server_parse, infill_and_lora) {
    struct srv_gen_req g;
    parse_ok(SRV_R_LLAMA_INFILL,
             "{\"input_prefix\":\"def f():\\n\",\"input_suffix\":\"\\n\",\"prompt\":\"  x\","
             "\"input_extra\":[{\"text\":\"y = 1\\n\",\"filename\":\"a.py\",\"time\":1}],"
             "\"n_predict\":16,\"n_indent\":4,\"samplers\":[\"top_k\",\"infill\"],"
             "\"t_max_predict_ms\":250,\"response_fields\":[\"content\"],\"return_tokens\":true,"
             "\"lora\":[{\"id\":1,\"scale\":0.5},{\"name\":\"tuned\"},{\"id\":0,\"scale\":0}]}",
             &g);
    cr_assert(g.fim.on);
    cr_assert_null(g.model);
    cr_assert_eq(g.kind, SRV_KIND_COMPLETION);
    cr_assert_eq(g.fim.n_indent, 4);
    cr_assert(g.fim.infill_sampler);
    cr_assert(g.fim.return_tokens);
    cr_assert_float_eq(g.fim.t_max_predict_ms, 250.0, 1e-9);
    cr_assert_eq(json_array_size(g.fim.extra), 1);
    cr_assert_eq(json_integer_value(json_object_get(g.options, "num_predict")), 16);
    /* llama-server's sampling defaults where the request is silent */
    cr_assert_float_eq(json_number_value(json_object_get(g.options, "repeat_penalty")), 1.0, 1e-9);
    cr_assert_eq(g.n_lora, 2, "a scale-0 entry is dropped");
    cr_assert_eq(g.lora[0].id, 1);
    cr_assert_float_eq(g.lora[0].scale, 0.5f, 1e-6);
    cr_assert_str_eq(g.lora[1].name, "tuned");
    cr_assert_float_eq(g.lora[1].scale, 1.0f, 1e-6);
    srv_gen_req_free(&g);
    parse_fails(SRV_R_LLAMA_INFILL, "{\"input_suffix\":\"b\"}", 400, "input_prefix");
    parse_fails(SRV_R_LLAMA_INFILL, "{\"input_prefix\":\"a\"}", 400, "input_suffix");
    parse_fails(
        SRV_R_LLAMA_INFILL,
        "{\"input_prefix\":\"a\",\"input_suffix\":\"b\",\"input_extra\":[{\"filename\":\"x\"}]}",
        400, "text");
    parse_fails(SRV_R_LLAMA_INFILL,
                "{\"input_prefix\":\"a\",\"input_suffix\":\"b\",\"response_fields\":\"content\"}",
                400, "response_fields");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                "\"lora\":[{\"id\":-1}]}",
                400, "non-negative");
    parse_fails(SRV_R_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                "\"lora\":[{\"id\":0,\"scale\":1e9}]}",
                400, "scale");
    parse_fails(SRV_R_OLLAMA_GENERATE,
                "{\"model\":\"m\",\"prompt\":\"a\",\"suffix\":\"b\",\"raw\":true}", 400, "raw");
}
