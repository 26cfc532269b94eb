/*
 * test_flow.c - the flow loader: every node kind parses into resolved
 * definitions (edges as indices, templates and conditions compiled, schemas
 * and their grammars, tools, sub-flows, the router's routes and pools), every
 * validation error names the file, the line and the key, and the diagrams
 * hold the nodes and edges. No model, no network.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm/flow.h"
#include "slm/liquid.h"

static char g_dir[64];

static void write_file(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/slm-flow-test-XXXXXX");
    cr_assert(mkdtemp(g_dir));
    write_file("prompt.liquid", "Text: {{ text }}\nAnswer:");
    write_file("labels.txt", "# labels\nyes\nno\n\nmaybe\n");
    write_file("schema.json", "{\"type\": \"object\", \"properties\": {\"n\": {\"type\": "
                              "\"integer\"}}, \"required\": [\"n\"]}");
    write_file("tool.sh", "#!/bin/sh\ncat\n");
    char path[256];
    snprintf(path, sizeof(path), "%s/tool.sh", g_dir);
    cr_assert_eq(chmod(path, 0755), 0);
    write_file("child.yaml", "state:\n"
                             "  item: {type: string}\n"
                             "  result: {type: string}\n"
                             "input: [item]\n"
                             "nodes:\n"
                             "  echo: {kind: template, text: '{{ item }}!', output: result}\n");
    write_file("self.yaml", "state: {x: ~}\n"
                            "input: [x]\n"
                            "nodes:\n"
                            "  again: {kind: flow, flow: self.yaml, output: x}\n");
    write_file("router.yaml", "local:\n"
                              "  intent:\n"
                              "    model: ./tiny.gguf\n"
                              "    template: prompt.liquid\n"
                              "    labels: labels.txt\n"
                              "  writer:\n"
                              "    model: smollm2:135m\n"
                              "upstreams:\n"
                              "  - name: cloud\n"
                              "    base_url: http://127.0.0.1:9/v1\n"
                              "routes:\n"
                              "  - name: intent\n"
                              "    local: intent\n"
                              "    escalate: [cloud]\n"
                              "  - name: writer\n"
                              "    local: writer\n");
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(flow, .init = setup, .fini = teardown);

static int parse(const char *text, struct slm_flow **out, struct slm_err *err) {
    slm_err_clear(err);
    return slm_flow_parse("t.yaml", text, strlen(text), g_dir, NULL, out, err);
}

/* The 1-based line of the first line of `text` that contains `needle`. */
static int line_of(const char *text, const char *needle) {
    const char *at = strstr(text, needle);
    cr_assert(at, "'%s' is not in the test's flow", needle);
    int line = 1;
    for (const char *p = text; p < at; p++) {
        line += *p == '\n';
    }
    return line;
}

/* Loading `text` fails with `code`, and the message starts with
 * "t.yaml:LINE: " where LINE is the line holding `at`, followed by `msg`. */
static void expect_err(const char *text, int code, const char *at, const char *msg) {
    struct slm_flow *f = NULL;
    struct slm_err err;
    int rc = parse(text, &f, &err);
    cr_assert_eq(rc, code, "expected %s, got %s: %s", slm_strerror(code), slm_strerror(rc),
                 err.msg);
    cr_assert_null(f);
    char want[300];
    snprintf(want, sizeof(want), "t.yaml:%d: %s", line_of(text, at), msg);
    cr_assert(strncmp(err.msg, want, strlen(want)) == 0, "\nwant: %s\ngot:  %s", want, err.msg);
}

/* ---------------------------------------------------------------- every kind */

static const char *ALL = "name: all-kinds\n"
                         "router: router.yaml\n"
                         "state:\n"
                         "  text: {type: string, default: hello}\n"
                         "  items: {type: array}\n"
                         "  item: {type: string}\n"
                         "  out: ~\n"
                         "  label: {type: object}\n"
                         "  data: schema.json\n"
                         "  answer: ~\n"
                         "input: [text, items, item]\n"
                         "http_allow: [127.0.0.1]\n"
                         "tools:\n"
                         "  sh: {command: [./tool.sh, --flag], timeout: 2, env: [PATH]}\n"
                         "  web: {url: 'http://127.0.0.1:9/x'}\n"
                         "nodes:\n"
                         "  t: {kind: template, text: 'hi {{ text }}', output: out, next: g}\n"
                         "  g:\n"
                         "    kind: generate\n"
                         "    model: ./m.gguf\n"
                         "    prompt: '{{ out }}'\n"
                         "    system: Be brief.\n"
                         "    parameters: {temperature: 0, num_predict: 8}\n"
                         "    json_schema: schema.json\n"
                         "    output: data\n"
                         "    next: r\n"
                         "  r: {kind: generate, route: writer, template: prompt.liquid, output: "
                         "out, next: u}\n"
                         "  u:\n"
                         "    kind: generate\n"
                         "    upstream: cloud\n"
                         "    prompt: x\n"
                         "    output: out\n"
                         "    retries: {max: 2, backoff: 0.5, backoff_max: 4}\n"
                         "    timeout: 10\n"
                         "    on_error: t\n"
                         "    max_iterations: 3\n"
                         "    next: c\n"
                         "  c: {kind: classify, model: ./m.gguf, prompt: '{{ text }}', labels: [a, "
                         "b], output: label, next: c2}\n"
                         "  c2: {kind: classify, route: intent, output: label, next: k}\n"
                         "  k: {kind: check, value: data, json_schema: {type: object}, pass: k2, "
                         "fail: end}\n"
                         "  k2: {kind: check, value: out, regex: '^h', pass: k3}\n"
                         "  k3: {kind: check, value: out, labels: labels.txt, pass: k4, fail: "
                         "end}\n"
                         "  k4: {kind: check, condition: out != empty, pass: tl}\n"
                         "  tl: {kind: tool, tool: sh, input: [text], output: data, retries: 1, "
                         "next: w}\n"
                         "  w: {kind: tool, tool: web, output: data, next: b}\n"
                         "  b:\n"
                         "    kind: branch\n"
                         "    next:\n"
                         "      - if: label.label == 'a'\n"
                         "        label: is a\n"
                         "        to: m\n"
                         "      - to: i\n"
                         "  m: {kind: map, over: items, flow: child.yaml, concurrency: 2, result: "
                         "result, output: answer, next: i}\n"
                         "  i: {kind: interrupt, message: 'ok? {{ out }}', json_schema: {type: "
                         "object}, output: answer, next: f}\n"
                         "  f: {kind: flow, flow: child.yaml, input: [item], output: answer}\n";

static const struct slm_flow_node *node(const struct slm_flow *f, const char *name) {
    size_t i = slm_flow_node_index(f, name);
    cr_assert_neq(i, SLM_FLOW_NONE, "no node %s", name);
    return &f->nodes[i];
}

Test(flow, every_kind_parses) {
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(parse(ALL, &f, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(f->name, "all-kinds");
    cr_assert_eq(f->n_nodes, 16);
    cr_assert_eq(f->start, 0);
    cr_assert_eq(f->n_keys, 7);
    cr_assert(f->keys[slm_flow_key_index(f, "text")].input);
    cr_assert_str_eq(json_string_value(f->keys[0].default_value), "hello");
    cr_assert_not(f->keys[slm_flow_key_index(f, "out")].input);
    cr_assert_null(f->keys[slm_flow_key_index(f, "out")].schema.schema);
    cr_assert_not_null(f->keys[slm_flow_key_index(f, "data")].schema.schema);
    cr_assert_not_null(f->router);

    const struct slm_flow_node *t = node(f, "t");
    cr_assert_eq(t->kind, SLM_FLOW_TEMPLATE);
    cr_assert_not_null(t->u.template_text.tpl);
    cr_assert_eq(t->output, slm_flow_key_index(f, "out"));
    cr_assert_eq(t->next, slm_flow_node_index(f, "g"));
    cr_assert_eq(t->on_error, SLM_FLOW_NONE);

    const struct slm_flow_node *g = node(f, "g");
    cr_assert_eq(g->u.generate.target.kind, SLM_FLOW_TARGET_MODEL);
    cr_assert_str_eq(g->u.generate.target.name, "./m.gguf");
    cr_assert_not_null(g->u.generate.system.tpl);
    cr_assert_not_null(g->u.generate.schema.gbnf, "generate keeps its grammar");
    cr_assert(strstr(g->u.generate.schema.gbnf, "root"));
    cr_assert_eq(json_integer_value(json_object_get(g->u.generate.parameters, "num_predict")), 8);

    const struct slm_flow_node *r = node(f, "r");
    cr_assert_eq(r->u.generate.target.kind, SLM_FLOW_TARGET_ROUTE);
    cr_assert_eq(r->u.generate.target.index, 1);
    cr_assert(strstr(r->u.generate.prompt.source, "/prompt.liquid"));

    const struct slm_flow_node *u = node(f, "u");
    cr_assert_eq(u->u.generate.target.kind, SLM_FLOW_TARGET_UPSTREAM);
    cr_assert_eq(u->retry.max, 2);
    cr_assert_float_eq(u->retry.backoff_s, 0.5, 1e-9);
    cr_assert_float_eq(u->retry.backoff_max_s, 4, 1e-9);
    cr_assert_float_eq(u->timeout_s, 10, 1e-9);
    cr_assert_eq(u->on_error, 0);
    cr_assert_eq(u->max_iterations, 3);

    const struct slm_flow_node *c = node(f, "c");
    cr_assert_eq(c->kind, SLM_FLOW_CLASSIFY);
    cr_assert_eq(c->u.classify.n_labels, 2);
    cr_assert_null(node(f, "c2")->u.classify.labels, "a route brings its own labels");

    const struct slm_flow_node *k = node(f, "k");
    cr_assert_eq(k->u.check.kind, SLM_FLOW_CHECK_SCHEMA);
    cr_assert_eq(k->next, slm_flow_node_index(f, "k2"));
    cr_assert_eq(k->fail, SLM_FLOW_END);
    cr_assert_eq(node(f, "k2")->u.check.kind, SLM_FLOW_CHECK_REGEX);
    cr_assert_not_null(node(f, "k2")->u.check.schema.schema, "a regex is a pattern schema");
    cr_assert_eq(node(f, "k2")->fail, SLM_FLOW_NONE);
    cr_assert_eq(node(f, "k3")->u.check.n_labels, 3);
    cr_assert_not_null(node(f, "k4")->u.check.condition.tpl);
    cr_assert_eq(node(f, "k4")->u.check.value, SLM_FLOW_NONE);

    const struct slm_flow_node *tl = node(f, "tl");
    cr_assert_eq(tl->u.tool.tool, 0);
    cr_assert_eq(tl->u.tool.n_input, 1);
    cr_assert_eq(f->tools[0].kind, SLM_FLOW_TOOL_COMMAND);
    cr_assert_eq(f->tools[0].argc, 2);
    cr_assert_eq(f->tools[0].argv[0][0], '/', "a relative program is resolved");
    cr_assert_str_eq(f->tools[0].env[0], "PATH");
    cr_assert_float_eq(f->tools[0].timeout_s, 2, 1e-9);
    cr_assert_eq(f->tools[1].kind, SLM_FLOW_TOOL_HTTP);
    cr_assert_float_eq(f->tools[1].timeout_s, 30, 1e-9);

    const struct slm_flow_node *b = node(f, "b");
    cr_assert_eq(b->kind, SLM_FLOW_BRANCH);
    cr_assert_eq(b->n_cases, 2);
    cr_assert_not_null(b->cases[0].cond.tpl);
    cr_assert_str_eq(b->cases[0].label, "is a");
    cr_assert_eq(b->cases[0].to, slm_flow_node_index(f, "m"));
    cr_assert_null(b->cases[1].cond.tpl, "the last case is the otherwise");

    const struct slm_flow_node *m = node(f, "m");
    cr_assert_not_null(m->u.map.flow);
    cr_assert_eq(m->u.map.flow->depth, 1);
    cr_assert_str_eq(m->u.map.as, "item");
    cr_assert_eq(m->u.map.concurrency, 2);
    cr_assert_str_eq(m->u.map.result, "result");

    cr_assert_not_null(node(f, "i")->u.interrupt.schema.schema);
    const struct slm_flow_node *fl = node(f, "f");
    cr_assert_str_eq(fl->u.subflow.flow->name, "child");
    cr_assert_eq(fl->next, SLM_FLOW_END, "no next: the run ends here");

    struct slm_flow_stats st;
    slm_flow_stats(f, &st);
    cr_assert_eq(st.nodes, 16);
    cr_assert_eq(st.tools, 2);
    cr_assert_eq(st.subflows, 2);
    /* 15 single edges, the branch's 2 cases, the fails of k and k3, u's on_error */
    cr_assert_eq(st.edges, 15 + 2 + 2 + 1, "%zu", st.edges);
    slm_flow_free(f);
}

/* Conditions and templates compiled at load render without re-parsing. */
Test(flow, conditions_render) {
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(parse(ALL, &f, &err), SLM_OK, "%s", err.msg);
    const struct slm_flow_node *b = node(f, "b");
    json_t *state = json_pack("{s:{s:s}}", "label", "label", "a");
    struct slm_buf out = {0};
    cr_assert_eq(slm_liquid_render(b->cases[0].cond.tpl, state, &out, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(slm_buf_cstr(&out), "1");
    json_decref(state);
    slm_buf_free(&out);
    slm_flow_free(f);
}

Test(flow, json_and_defaults) {
    const char *text = "{\"state\": {\"q\": null, \"a\": null}, \"input\": [\"q\"],"
                       " \"nodes\": {\"one\": {\"kind\": \"template\", \"text\": \"{{ q }}\","
                       " \"output\": \"a\"}}}";
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(parse(text, &f, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(f->name, "t", "the name defaults to the file's");
    cr_assert_eq(f->nodes[0].next, SLM_FLOW_END);
    cr_assert_eq(f->nodes[0].retry.max, 0);
    cr_assert_null(f->router);
    slm_flow_free(f);
}

Test(flow, load_from_file) {
    char path[256];
    snprintf(path, sizeof(path), "%s/flow.yaml", g_dir);
    write_file("flow.yaml", ALL);
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(slm_flow_load(path, NULL, &f, &err), SLM_OK, "%s", err.msg);
    cr_assert_str_eq(f->dir, g_dir);
    slm_flow_free(f);
    slm_flow_free(NULL);
}

/* ---------------------------------------------------------------- validation errors */

#define HEAD "state: {q: ~, a: ~, obj: {type: object}}\ninput: [q]\n"

Test(flow, unknown_kind) {
    expect_err(HEAD "nodes:\n  x: {kind: generat, output: a}\n", SLM_E_INVALID, "kind: generat",
               "nodes.x.kind: unknown kind 'generat' (did you mean 'generate'?)");
    expect_err(HEAD "nodes:\n  x: {output: a}\n", SLM_E_INVALID, "  x:", "nodes.x: required: kind");
}

Test(flow, unknown_keys) {
    expect_err(HEAD "nodes:\n  x:\n    kind: template\n    text: hi\n    output: a\n    nxt: end\n",
               SLM_E_INVALID, "nxt:", "nodes.x.nxt: unknown key (did you mean 'next'?)");
    expect_err(HEAD "nodez: {}\n", SLM_E_INVALID, "nodez",
               "nodez: unknown key (did you mean "
               "'nodes'?)");
    /* a key of another kind is unknown to this one */
    expect_err(HEAD
               "nodes:\n  x:\n    kind: template\n    text: hi\n    output: a\n    labels: [a]\n",
               SLM_E_INVALID, "labels:", "nodes.x.labels: unknown key");
}

Test(flow, missing_fields) {
    expect_err(HEAD "nodes:\n  x:\n    kind: generate\n    model: m\n    output: a\n",
               SLM_E_INVALID, "  x:", "nodes.x: required: prompt");
    expect_err(HEAD "nodes:\n  x:\n    kind: template\n    text: hi\n", SLM_E_INVALID,
               "  x:", "nodes.x.output: required");
    expect_err(HEAD "nodes:\n  x:\n    kind: generate\n    prompt: hi\n    output: a\n",
               SLM_E_INVALID, "  x:", "nodes.x: give exactly one of model");
    expect_err(HEAD "nodes:\n  x:\n    kind: check\n    pass: end\n", SLM_E_INVALID,
               "  x:", "nodes.x: give exactly one of json_schema, regex, labels or condition");
    expect_err("input: [q]\nnodes: {}\n", SLM_E_INVALID, "input", "state: required");
    expect_err(HEAD "start: x\n", SLM_E_INVALID, "state", "nodes: required");
}

Test(flow, edges_to_unknown_nodes) {
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: a, next: reploy}\n"
                    "  reply: {kind: template, text: hi, output: a}\n",
               SLM_E_INVALID, "next: reploy",
               "nodes.x.next: no node 'reploy' (did you mean 'reply'?)");
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: a, on_error: nowhere}\n",
               SLM_E_INVALID, "on_error", "nodes.x.on_error: no node 'nowhere'");
    expect_err(HEAD "nodes:\n  x:\n    kind: branch\n    next:\n      - if: q\n        to: ned\n"
                    "      - to: end\n",
               SLM_E_INVALID, "to: ned", "nodes.x.next[0].to: no node 'ned' (did you mean 'end'?)");
    expect_err(HEAD "start: y\nnodes:\n  x: {kind: template, text: hi, output: a}\n", SLM_E_INVALID,
               "start", "start: unknown node 'y'");
}

Test(flow, cases) {
    expect_err(HEAD "nodes:\n  x:\n    kind: branch\n    next:\n      - if: q\n        to: end\n",
               SLM_E_INVALID, "if: q", "nodes.x.next[0].if: the last case is the otherwise");
    expect_err(HEAD "nodes:\n  x:\n    kind: branch\n    next:\n      - to: end\n      - to: end\n",
               SLM_E_INVALID, "- to: end", "nodes.x.next[0]: only the last case");
    expect_err(HEAD "nodes:\n  x: {kind: branch, next: end}\n", SLM_E_INVALID, "next: end",
               "nodes.x.next: a branch needs a list of cases");
}

Test(flow, state_keys_and_tools) {
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: ab}\n", SLM_E_INVALID,
               "output: ab", "nodes.x.output: unknown state key 'ab' (did you mean 'a'?)");
    expect_err(HEAD "nodes:\n  x: {kind: tool, tool: sh, output: a}\n", SLM_E_INVALID, "tool: sh",
               "nodes.x.tool: tool 'sh' is not declared under tools:");
    expect_err(HEAD "tools:\n  sh: {command: [./tool.sh]}\nnodes:\n"
                    "  x: {kind: tool, tool: hs, output: a}\n",
               SLM_E_INVALID, "tool: hs",
               "nodes.x.tool: tool 'hs' is not declared under tools: "
               "(did you mean 'sh'?)");
    expect_err(HEAD "tools:\n  sh: {command: ./tool.sh}\nnodes: {}\n", SLM_E_INVALID, "command",
               "tools.sh.command: expected a list");
    expect_err(HEAD "tools:\n  sh: {command: [./missing.sh]}\nnodes: {}\n", SLM_E_INVALID,
               "command", "tools.sh.command: no such program");
    expect_err(HEAD "tools:\n  web: {url: 'http://example.com/x'}\nnodes: {}\n", SLM_E_INVALID,
               "url", "tools.web.url: host 'example.com' is not on the http_allow list");
    expect_err(HEAD "http_allow: [example.com]\ntools:\n  web: {url: 'http://u:p@example.com/'}\n"
                    "nodes: {}\n",
               SLM_E_INVALID, "url", "tools.web.url: expected http(s)://host");
    expect_err("state: {q: ~}\ninput: [q, z]\nnodes: {}\n", SLM_E_INVALID, "input",
               "input: unknown state key 'z'");
    expect_err("state: {q: {type: string, default: 3}}\nnodes: {}\n", SLM_E_INVALID,
               "q:", "state.q: default does not match the schema");
}

Test(flow, liquid_compiled_at_load) {
    expect_err(HEAD "nodes:\n  x: {kind: template, text: '{{ q | nosuchfilter }}', output: a}\n",
               SLM_E_INVALID, "text:", "nodes.x.text: text:1:");
    expect_err(HEAD "nodes:\n  x:\n    kind: branch\n    next:\n      - if: q ==\n        to: end\n"
                    "      - to: end\n",
               SLM_E_INVALID, "if: q", "nodes.x.next[0].if: not a Liquid condition");
    expect_err(HEAD "nodes:\n  x: {kind: check, condition: '{% if %}', pass: end}\n", SLM_E_INVALID,
               "condition", "nodes.x.condition: not a Liquid condition");
    expect_err(HEAD "nodes:\n  x: {kind: generate, model: m, template: nope.liquid, output: a}\n",
               SLM_E_NOT_FOUND, "template", "nodes.x.template: no such file");
    write_file("bad.liquid", "{% for x in %}");
    expect_err(HEAD "nodes:\n  x: {kind: generate, model: m, template: bad.liquid, output: a}\n",
               SLM_E_INVALID, "template", "nodes.x.template: ");
}

Test(flow, schemas_compiled_at_load) {
    expect_err(HEAD "nodes:\n  x:\n    kind: generate\n    model: m\n    prompt: hi\n"
                    "    json_schema: {type: object, patternProperties: {}}\n    output: a\n",
               SLM_E_UNSUPPORTED, "json_schema", "nodes.x.json_schema: schema: ");
    expect_err("state:\n  q: {type: strng}\nnodes: {}\n", SLM_E_INVALID, "q:", "state.q: schema: ");
    expect_err(HEAD "nodes:\n  x: {kind: check, value: q, regex: '(', pass: end}\n", SLM_E_INVALID,
               "regex", "nodes.x.regex: not a usable pattern: ");
    expect_err(HEAD "nodes:\n  x: {kind: check, value: q, json_schema: missing.json}\n",
               SLM_E_INVALID, "json_schema", "nodes.x.json_schema: ");
}

Test(flow, router_names) {
    expect_err(HEAD "nodes:\n  x: {kind: generate, route: writer, prompt: hi, output: a}\n",
               SLM_E_INVALID, "route",
               "nodes.x.route: names the router's route, but the flow has "
               "no `router:` file");
    expect_err(HEAD "router: router.yaml\nnodes:\n"
                    "  x: {kind: generate, upstream: clod, prompt: hi, output: a}\n",
               SLM_E_INVALID, "upstream",
               "nodes.x.upstream: the router has no upstream 'clod' "
               "(did you mean 'cloud'?)");
    expect_err(HEAD "router: router.yaml\nnodes:\n"
                    "  x: {kind: classify, route: writer, output: a}\n",
               SLM_E_INVALID, "route: writer", "nodes.x.route: route 'writer' has no labels");
    expect_err(HEAD "router: nope.yaml\nnodes: {}\n", SLM_E_NOT_FOUND, "router",
               "router: no such file");
    expect_err(HEAD "nodes:\n  x: {kind: generate, model: m, prompt: hi, output: a,"
                    " parameters: {temprature: 0}}\n",
               SLM_E_INVALID, "temprature", "nodes.x.parameters.temprature: unknown parameter");
}

Test(flow, graph_passes) {
    /* a loop with an exit but no bound */
    expect_err(HEAD "nodes:\n"
                    "  a: {kind: template, text: hi, output: a, next: b}\n"
                    "  b:\n    kind: branch\n    next:\n      - {if: q, to: a}\n      - to: end\n",
               SLM_E_INVALID, "  a:",
               "nodes.a: a loop without a bound (a -> b -> a): give one of its nodes "
               "max_iterations");
    /* a node that loops on itself */
    expect_err(HEAD "nodes:\n"
                    "  a:\n    kind: template\n    text: hi\n    output: a\n    next:\n"
                    "      - {if: q, to: a}\n      - to: end\n",
               SLM_E_INVALID, "  a:", "nodes.a: a loop without a bound (a -> a)");
    /* the same loop bounded is fine */
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(parse(HEAD "nodes:\n"
                            "  a: {kind: template, text: hi, output: a, next: b, max_iterations: "
                            "3}\n"
                            "  b:\n    kind: branch\n    next:\n      - {if: q, to: a}\n"
                            "      - to: end\n",
                       &f, &err),
                 SLM_OK, "%s", err.msg);
    slm_flow_free(f);
    /* unreachable from the start */
    expect_err(HEAD "nodes:\n"
                    "  a: {kind: template, text: hi, output: a}\n"
                    "  lost: {kind: template, text: hi, output: a}\n",
               SLM_E_INVALID,
               "  lost:", "nodes.lost: unreachable: no edge leads here from the start node 'a'");
    /* bounded, but no way out: refused at load */
    expect_err(HEAD "nodes:\n"
                    "  a: {kind: template, text: hi, output: a, next: b, max_iterations: 2}\n"
                    "  b: {kind: template, text: hi, output: a, next: a}\n",
               SLM_E_INVALID, "  a:", "nodes.a: no path from here to end");
    /* reserved and malformed names */
    expect_err(HEAD "nodes:\n  end: {kind: template, text: hi, output: a}\n", SLM_E_INVALID,
               "  end:", "nodes.end: a node name is");
}

Test(flow, subflows) {
    expect_err(HEAD "nodes:\n  x: {kind: flow, flow: self.yaml, input: [q], output: a}\n",
               SLM_E_INVALID, "flow: self", "nodes.x.flow: ");
    struct slm_flow *f = NULL;
    struct slm_err err;
    const char *text = HEAD "nodes:\n  x: {kind: flow, flow: self.yaml, input: [q], output: a}\n";
    cr_assert_eq(parse(text, &f, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "includes itself"), "%s", err.msg);

    /* nesting past the cap */
    write_file("mid.yaml", "state: {item: ~}\ninput: [item]\nnodes:\n"
                           "  x: {kind: flow, flow: child.yaml, output: item}\n");
    const char *deep = "state: {item: ~}\ninput: [item]\nnodes:\n"
                       "  x: {kind: flow, flow: mid.yaml, output: item}\n";
    struct slm_flow_params p = slm_flow_params_default();
    p.max_depth = 1;
    cr_assert_eq(slm_flow_parse("t.yaml", deep, strlen(deep), g_dir, &p, &f, &err), SLM_E_LIMIT,
                 "%s", err.msg);
    cr_assert(strstr(err.msg, "nested deeper than 1"), "%s", err.msg);
    p.max_depth = 2;
    cr_assert_eq(slm_flow_parse("t.yaml", deep, strlen(deep), g_dir, &p, &f, &err), SLM_OK, "%s",
                 err.msg);
    cr_assert_eq(f->nodes[0].u.subflow.flow->nodes[0].u.subflow.flow->depth, 2);
    slm_flow_free(f);

    /* the child's inputs must come from somewhere */
    expect_err(HEAD "nodes:\n  x: {kind: flow, flow: child.yaml, output: a}\n", SLM_E_INVALID,
               "flow: child", "nodes.x.flow: child needs input 'item'");
    expect_err("state: {list: ~, a: ~}\nnodes:\n"
               "  m: {kind: map, over: list, flow: child.yaml, as: elem, output: a}\n",
               SLM_E_INVALID, "as: elem", "nodes.m.as: child has no input key 'elem'");
    expect_err("state: {list: {type: string}, a: ~}\nnodes:\n"
               "  m: {kind: map, over: list, flow: child.yaml, output: a}\n",
               SLM_E_INVALID, "over: list",
               "nodes.m.over: state key 'list' holds a string, not a list");
    expect_err("state: {item: ~, q: ~, a: ~}\nnodes:\n"
               "  f: {kind: flow, flow: child.yaml, input: [item, q], output: a}\n",
               SLM_E_INVALID, "input: [item", "nodes.f.input: child has no input key 'q'");
    expect_err("state: {list: ~, a: ~}\nnodes:\n"
               "  m: {kind: map, over: list, flow: child.yaml, result: nope, output: a}\n",
               SLM_E_INVALID, "result", "nodes.m.result: child has no state key 'nope'");
}

Test(flow, retries_and_limits) {
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: a, retries: -1}\n",
               SLM_E_INVALID, "retries", "nodes.x.retries: expected an integer between 0 and 100");
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: a, retries: {max: 2, "
                    "tries: 3}}\n",
               SLM_E_INVALID, "tries", "nodes.x.retries.tries: unknown key");
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: a, timeout: 0}\n",
               SLM_E_INVALID, "timeout", "nodes.x.timeout: expected a number between");
    expect_err(HEAD "nodes:\n  x: {kind: template, text: hi, output: a, max_iterations: 0}\n",
               SLM_E_INVALID, "max_iterations", "nodes.x.max_iterations: expected an integer");
    struct slm_flow_params p = slm_flow_params_default();
    p.max_nodes = 1;
    const char *two = HEAD "nodes:\n  x: {kind: template, text: hi, output: a, next: y}\n"
                           "  y: {kind: template, text: hi, output: a}\n";
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(slm_flow_parse("t.yaml", two, strlen(two), g_dir, &p, &f, &err), SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "more than 1 nodes"), "%s", err.msg);
}

/* ---------------------------------------------------------------- diagrams */

Test(flow, diagrams) {
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(parse(ALL, &f, &err), SLM_OK, "%s", err.msg);
    struct slm_buf b = {0};
    cr_assert_eq(slm_flow_diagram(f, SLM_FLOW_MERMAID, &b), SLM_OK);
    const char *m = slm_buf_cstr(&b);
    cr_assert(strncmp(m, "flowchart TD\n", 13) == 0, "%s", m);
    cr_assert(strstr(m, "    __start__ --> t\n"), "%s", m);
    cr_assert(strstr(m, "    t[/\"t<br/>(template)\"/]\n"), "%s", m);
    cr_assert(strstr(m, "    b{\"b<br/>(branch)\"}\n"), "%s", m);
    cr_assert(strstr(m, "    b -->|\"is a\"| m\n"), "%s", m);
    cr_assert(strstr(m, "    b -->|\"otherwise\"| i\n"), "%s", m);
    cr_assert(strstr(m, "    u -.->|\"on_error\"| t\n"), "%s", m);
    cr_assert(strstr(m, "    k -.->|\"fail\"| __end__\n"), "%s", m);
    cr_assert(strstr(m, "    f --> __end__\n"), "%s", m);
    slm_buf_clear(&b);
    cr_assert_eq(slm_flow_diagram(f, SLM_FLOW_DOT, &b), SLM_OK);
    const char *d = slm_buf_cstr(&b);
    cr_assert(strncmp(d, "digraph \"all-kinds\" {\n", 22) == 0, "%s", d);
    cr_assert(strstr(d, "    b [label=\"b\\n(branch)\", shape=diamond];\n"), "%s", d);
    cr_assert(strstr(d, "    b -> m [label=\"is a\"];\n"), "%s", d);
    cr_assert(strstr(d, "    u -> t [label=\"on_error\", style=dashed];\n"), "%s", d);
    cr_assert(strstr(d, "\n}\n"), "%s", d);
    /* a capped buffer fails cleanly and keeps what it had */
    struct slm_buf small;
    slm_buf_init(&small, 64);
    cr_assert_eq(slm_flow_diagram(f, SLM_FLOW_DOT, &small), SLM_E_TOO_LARGE);
    cr_assert_eq(small.len, 0);
    slm_buf_free(&small);
    slm_buf_free(&b);
    slm_flow_free(f);
}

Test(flow, diagram_escapes_conditions_and_keywords) {
    const char *text = HEAD "nodes:\n"
                            "  graph:\n    kind: branch\n    next:\n"
                            "      - if: q == \"x\" and a > 1\n        to: end\n      - to: end\n";
    struct slm_flow *f = NULL;
    struct slm_err err;
    cr_assert_eq(parse(text, &f, &err), SLM_OK, "%s", err.msg);
    struct slm_buf b = {0};
    cr_assert_eq(slm_flow_diagram(f, SLM_FLOW_MERMAID, &b), SLM_OK);
    cr_assert(strstr(slm_buf_cstr(&b), "n0 -->|\"q == #quot;x#quot; and a #gt; 1\"| __end__"), "%s",
              slm_buf_cstr(&b));
    slm_buf_clear(&b);
    cr_assert_eq(slm_flow_diagram(f, SLM_FLOW_DOT, &b), SLM_OK);
    cr_assert(strstr(slm_buf_cstr(&b), "n0 -> __end__ [label=\"q == \\\"x\\\" and a > 1\"];"), "%s",
              slm_buf_cstr(&b));
    slm_buf_free(&b);
    slm_flow_free(f);
}
