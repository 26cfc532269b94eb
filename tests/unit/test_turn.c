/*
 * test_turn.c - the one request path (slm/turn.h) on a real model: a store
 * model made from a Modelfile (SYSTEM, MESSAGE, TEMPLATE, PARAMETER) and the
 * prompt each kind of request gets from it. stories260K has no chat
 * template, so chats are ChatML, which makes every expected prompt exact.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/json.h"
#include "slm/turn.h"
#include "test_stories.h"

static char g_home[64];
static char g_model[1024];
static struct slm_store *g_store;
static struct slm_model *g_llm;

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* `bot`: SYSTEM, one MESSAGE pair, a TEMPLATE over input and a variable. */
static void setup(void) {
    test_stories_path(g_model, sizeof(g_model));
    snprintf(g_home, sizeof(g_home), "/tmp/slm-test-turn-XXXXXX");
    cr_assert_not_null(mkdtemp(g_home));
    struct slm_err err = {0};
    cr_assert_eq(slm_store_open(g_home, &g_store, &err), SLM_OK, "%s", err.msg);
    char path[1200], mf[4096];
    snprintf(path, sizeof(path), "%s/t.liquid", g_home);
    write_file(path, "[{{ topic | default: 'none' }}] {{ input }} ({{ messages | size }})");
    snprintf(mf, sizeof(mf),
             "FROM %s\nSYSTEM You are terse.\nMESSAGE user hi\nMESSAGE assistant hello\n"
             "TEMPLATE %s\nPARAMETER temperature 0.25\nPARAMETER stop END\n",
             g_model, path);
    struct slm_create_params cp = {0};
    cp.text = mf;
    cp.text_len = strlen(mf);
    cr_assert_eq(slm_create(g_store, "bot", &cp, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_model_load(g_model, NULL, &g_llm, &err), SLM_OK, "%s", err.msg);
}

static void teardown(void) {
    slm_model_free(g_llm);
    slm_store_close(g_store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_home);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(turn, .init = setup, .fini = teardown);

static struct slm_turn *open_turn(const char *ref, const struct slm_turn_params *p) {
    struct slm_turn *t = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_turn_open(g_store, ref, p, &t, &err), SLM_OK, "%s", err.msg);
    return t;
}

static void expect_prompt(const struct slm_turn *t, const struct slm_turn_req *r,
                          const char *want) {
    struct slm_buf out = {0};
    struct slm_err err = {0};
    cr_assert_eq(slm_turn_prompt(t, g_llm, r, &out, NULL, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&out), want);
    slm_buf_free(&out);
}

Test(turn, open_takes_the_models_options_system_and_template) {
    struct slm_turn *t = open_turn("bot", NULL);
    cr_assert_str_eq(t->system, "You are terse.");
    cr_assert_not_null(t->tmpl);
    cr_assert_float_eq(t->options.sample.temperature, 0.25f, 1e-6);
    cr_assert_eq(t->options.n_stop, 1);
    struct slm_options o;
    json_t *req = json_pack("{s:f,s:i}", "temperature", 0.5, "num_predict", 3);
    cr_assert_eq(slm_turn_options(t, req, &o, NULL), SLM_OK);
    cr_assert_float_eq(o.sample.temperature, 0.5f, 1e-6, "the request's option wins");
    cr_assert_eq(o.num_predict, 3);
    cr_assert_eq(o.n_stop, 1, "the model's stop stays");
    slm_options_free(&o);
    json_decref(req);
    slm_turn_free(t);
}

Test(turn, caller_parameters_system_and_template_override_the_models) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/other.liquid", g_home);
    write_file(path, "Q: {{ input }}");
    json_t *params = json_pack("{s:i}", "num_predict", 7);
    struct slm_turn_params tp = slm_turn_params_default();
    tp.template_path = path;
    tp.system = "Be kind.";
    tp.parameters = params;
    struct slm_turn *t = open_turn("bot", &tp);
    cr_assert_str_eq(t->system, "Be kind.");
    cr_assert_eq(t->options.num_predict, 7);
    struct slm_turn_req r = {.kind = SLM_TURN_COMPLETION, .prompt = SLM_STR("x")};
    expect_prompt(t, &r, "Q: x");
    slm_turn_free(t);
    json_decref(params);

    struct slm_err err = {0};
    params = json_pack("{s:f}", "repeat_penalty", 20.0);
    tp.parameters = params;
    t = NULL;
    cr_assert_eq(slm_turn_open(g_store, "bot", &tp, &t, &err), SLM_E_INVALID);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "repeat_penalty") != NULL, "%s", err.msg);
    json_decref(params);
}

Test(turn, a_chat_gets_system_messages_template_and_chatml) {
    struct slm_turn *t = open_turn("bot", NULL);
    json_t *vars = json_pack("{s:s}", "topic", "cats");
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "tell me");
    struct slm_turn_req r = {.kind = SLM_TURN_CHAT, .messages = msgs, .variables = vars};
    struct slm_buf out = {0}, rendered = {0};
    struct slm_err err = {0};
    cr_assert_eq(slm_turn_prompt(t, g_llm, &r, &out, &rendered, &err), SLM_OK, "%s", err.msg);
    /* the history the template sees: the model's two MESSAGEs */
    cr_assert_str_eq(slm_buf_cstr(&rendered), "[cats] tell me (2)");
    cr_assert_str_eq(slm_buf_cstr(&out), "<|im_start|>system\nYou are terse.<|im_end|>\n"
                                         "<|im_start|>user\nhi<|im_end|>\n"
                                         "<|im_start|>assistant\nhello<|im_end|>\n"
                                         "<|im_start|>user\n[cats] tell me (2)<|im_end|>\n"
                                         "<|im_start|>assistant\n");
    slm_buf_free(&out);
    slm_buf_free(&rendered);
    json_decref(msgs);

    /* a system message of the request replaces the model's SYSTEM */
    msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", "S", "role", "user",
                     "content", "u");
    r.messages = msgs;
    expect_prompt(t, &r,
                  "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                  "<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\n[cats] u "
                  "(2)<|im_end|>\n<|im_start|>assistant\n");
    json_decref(msgs);
    json_decref(vars);
    slm_turn_free(t);
}

Test(turn, prompt_kinds) {
    struct slm_turn *t = open_turn("bot", NULL);
    struct slm_turn_req r = {.kind = SLM_TURN_COMPLETION, .prompt = SLM_STR("go")};
    expect_prompt(t, &r, "[none] go (2)");
    r.kind = SLM_TURN_RAW;
    expect_prompt(t, &r, "go");
    /* no chat template on this model: generate renders the turn only */
    r.kind = SLM_TURN_GENERATE;
    expect_prompt(t, &r, "[none] go (2)");
    /* the router's kind: the template renders the whole prompt from the
     * conversation; `input` replaces the last user text */
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "user", "content", "a", "role",
                             "user", "content", "b");
    struct slm_turn_req p = {.kind = SLM_TURN_PROMPT, .messages = msgs};
    expect_prompt(t, &p, "[none] b (2)");
    p.input = "";
    expect_prompt(t, &p, "[none]  (2)");
    json_decref(msgs);
    slm_turn_free(t);

    /* without a template, the router's kind is a chat */
    t = open_turn(g_model, NULL);
    cr_assert_null(t->tmpl);
    msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "b");
    p.messages = msgs;
    p.input = NULL;
    expect_prompt(t, &p, "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n");
    json_decref(msgs);
    slm_turn_free(t);
}

Test(turn, tools_become_the_system_prompt_and_a_grammar) {
    struct slm_turn *t = open_turn(g_model, NULL);
    json_t *tools =
        json_pack("[{s:s,s:{s:s,s:s,s:{s:s,s:{s:{s:s}},s:[s]}}}]", "type", "function", "function",
                  "name", "get_weather", "description", "the weather", "parameters", "type",
                  "object", "properties", "city", "type", "string", "required", "city");
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "weather in Oslo?");
    struct slm_turn_req r = {
        .kind = SLM_TURN_CHAT, .messages = msgs, .tools = tools, .tool_choice = SLM_TOOLS_REQUIRED};
    cr_assert(slm_turn_uses_tools(&r));
    struct slm_buf out = {0};
    struct slm_err err = {0};
    cr_assert_eq(slm_turn_prompt(t, g_llm, &r, &out, NULL, &err), SLM_OK, "%s", err.msg);
    cr_assert(strncmp(slm_buf_cstr(&out), "<|im_start|>system\n", 19) == 0, "%s", out.ptr);
    cr_assert(strstr(slm_buf_cstr(&out), "get_weather") != NULL, "the tool prompt names it");
    char *gbnf = NULL;
    const struct slm_tool_family *fam = slm_tool_family_for("llama", NULL);
    cr_assert_eq(slm_turn_grammar(&r, fam, &gbnf, &err), SLM_OK, "%s", err.msg);
    cr_assert_not_null(gbnf);
    cr_assert(strstr(gbnf, "get_weather") != NULL);
    free(gbnf);
    r.tool_choice = SLM_TOOLS_AUTO;
    cr_assert_eq(slm_turn_grammar(&r, fam, &gbnf, &err), SLM_OK);
    cr_assert_null(gbnf, "auto: the model may answer in text");
    r.format = SLM_TURN_FORMAT_JSON;
    cr_assert_eq(slm_turn_grammar(&r, fam, &gbnf, &err), SLM_OK);
    cr_assert_not_null(gbnf);
    free(gbnf);
    slm_buf_free(&out);
    json_decref(msgs);
    json_decref(tools);
    slm_turn_free(t);
}

Test(turn, unknown_models_and_bad_references_fail_cleanly) {
    struct slm_turn *t = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_turn_open(g_store, "nosuch", NULL, &t, &err), SLM_E_NOT_FOUND);
    cr_assert_null(t);
    char path[1200];
    snprintf(path, sizeof(path), "%s/bad.liquid", g_home);
    write_file(path, "{% if %}");
    struct slm_turn_params tp = slm_turn_params_default();
    tp.template_path = path;
    cr_assert_neq(slm_turn_open(g_store, "bot", &tp, &t, &err), SLM_OK);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "bad.liquid") != NULL, "%s", err.msg);
}
