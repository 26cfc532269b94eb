/*
 * fuzz_request.c - libFuzzer harness for what the server reads from clients
 * and models: request bodies of every generation and embedding route
 * (srv_parse_request), Ollama durations, tool definitions, the tool-call
 * parser over model output, the streaming hold-back for tool calls, the
 * Liquid tool prompts rendered with the request's tools, tool grammars, and
 * the UTF-8 repair of model text.
 *
 * Input: the first byte picks the route; the rest is the body. When the body
 * parses, its tools (if any) go through the tool prompt, the grammar and the
 * call parser; the body's bytes are also parsed as model output and as an
 * /api/create body (whose Modelfile is then parsed). Nothing may crash, leak
 * or hang.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/internal.h"
#include "slm/json.h"

static void exercise_tools(const json_t *tools, const char *text, size_t len) {
    const struct slm_tool_family *fams = slm_tool_families();
    for (size_t i = 0; fams[i].name; i++) {
        struct slm_liquid_template *t = NULL;
        if (slm_liquid_parse(fams[i].name, fams[i].template_src, strlen(fams[i].template_src), NULL,
                             &t, NULL) == SLM_OK) {
            struct slm_buf out;
            slm_buf_init(&out, (size_t)1 << 20);
            (void)slm_tools_render(t, tools, "auto", NULL, "sys", &fams[i], &out, NULL);
            slm_buf_free(&out);
            slm_liquid_free(t);
        }
        struct slm_buf g;
        slm_buf_init(&g, (size_t)1 << 20);
        (void)slm_tools_grammar(tools, NULL, i % 2 == 0, &fams[i], &g, NULL);
        slm_buf_free(&g);
        (void)slm_tools_safe_prefix(&fams[i], text, len, i == 0);
    }
    for (int bare = 0; bare < 2; bare++) {
        json_t *calls = NULL;
        struct slm_buf rest;
        slm_buf_init(&rest, (size_t)1 << 20);
        if (slm_tools_parse(text, len, tools, bare, &calls, &rest) == SLM_OK) {
            size_t k;
            const json_t *c;
            json_array_foreach(calls, k, c) {
                struct slm_buf b = {0};
                (void)slm_tools_format_call(&fams[k % 3],
                                            json_string_value(json_object_get(c, "name")),
                                            json_object_get(c, "arguments"), &b);
                slm_buf_free(&b);
            }
        }
        json_decref(calls);
        slm_buf_free(&rest);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) {
        return 0;
    }
    enum srv_route_id route = (enum srv_route_id)(data[0] % SRV_R_COUNT_GEN);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct srv_gen_req g;
    struct srv_error e;
    static json_t *default_tools;
    if (!default_tools) {
        const char *src = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                          "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
                          "\"string\"}},\"required\":[\"city\"]}}}]";
        (void)slm_json_parse(src, strlen(src), "tools", &default_tools, NULL);
    }
    if (srv_parse_request(route, body, len, &g, &e) == SLM_OK) {
        if (g.tools) {
            exercise_tools(g.tools, body, len);
        }
        srv_gen_req_free(&g);
    }
    exercise_tools(default_tools, body, len);

    json_t *doc = NULL;
    if (slm_json_parse(body, len, "body", &doc, NULL) == SLM_OK && json_is_object(doc)) {
        struct slm_buf mf;
        slm_buf_init(&mf, (size_t)1 << 20);
        if (srv_create_modelfile(doc, &mf, &e) == SLM_OK) {
            struct slm_modelfile *m = NULL;
            if (slm_modelfile_parse(mf.ptr, mf.len, "Modelfile", &m, NULL) == SLM_OK) {
                slm_modelfile_free(m);
            }
        }
        slm_buf_free(&mf);
    }
    json_decref(doc);

    char text[128];
    size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
    memcpy(text, body, n);
    text[n] = '\0';
    int64_t ms;
    (void)srv_parse_duration_text(text, &ms);
    json_decref(srv_json_text(body, len));
    return 0;
}
