/*
 * turn/tools.c - tool calling for models that have no tool support in
 * llama.cpp's C API: a Liquid tool prompt per model family tells the model
 * which functions exist and how to call them; its answer is searched for
 * calls afterwards. With tool_choice "required" or a named function, a
 * grammar makes the model write exactly a call of a declared function with
 * arguments that match its parameters schema.
 *
 * The model's output is untrusted text: slm_tools_parse() never trusts a
 * name that was not declared, and is fuzzed (tests/fuzz/fuzz_request.c).
 * Checking the request's `tools` is the HTTP parser's job (server/parse.c).
 */
#include "slm/turn.h"

#include <string.h>

#include "slm/grammar.h"
#include "slm/json.h"

extern const char slm__tool_template_hermes[];
extern const char slm__tool_template_llama3[];
extern const char slm__tool_template_mistral[];

/* Families: how calls are written and how results are fed back. */
static const struct slm_tool_family g_families[] = {
    {"hermes", slm__tool_template_hermes, "<tool_call>\n", "\n</tool_call>", "arguments", "user",
     "<tool_response>\n", "\n</tool_response>", false},
    {"llama3", slm__tool_template_llama3, "", "", "parameters", "ipython", "", "", false},
    {"mistral", slm__tool_template_mistral, "[TOOL_CALLS]", "", "arguments", "user",
     "[TOOL_RESULTS]", "[/TOOL_RESULTS]", true},
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false},
};

const struct slm_tool_family *slm_tool_families(void) {
    return g_families;
}

const struct slm_tool_family *slm_tool_family_for(const char *arch, const char *chat_template) {
    (void)arch;
    const char *t = chat_template ? chat_template : "";
    if (strstr(t, "<|start_header_id|>")) {
        return &g_families[1];
    }
    if (strstr(t, "[INST]")) {
        return &g_families[2];
    }
    return &g_families[0];
}

static const json_t *find_tool(const json_t *tools, const char *name) {
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n && strcmp(n, name) == 0) {
            return t;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- prompt */

int slm_tools_render(const struct slm_liquid_template *tmpl, const json_t *tools,
                     const char *tool_choice, const char *tool_name, const char *system,
                     const struct slm_tool_family *fam, struct slm_buf *out, struct slm_err *err) {
    json_t *vars =
        json_pack("{s:O,s:s,s:s,s:s,s:s}", "tools", tools, "tool_choice", tool_choice, "tool_name",
                  tool_name ? tool_name : "", "system", system ? system : "", "family", fam->name);
    if (!vars) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = slm_liquid_render(tmpl, vars, out, err);
    json_decref(vars);
    return rc;
}

/* ---------------------------------------------------------------- grammar */

/* Appends `s` as a GBNF string literal. */
static int gbnf_literal(struct slm_buf *out, const char *s) {
    int rc = slm_buf_putc(out, '"');
    for (; rc == SLM_OK && *s; s++) {
        switch (*s) {
        case '\n': rc = slm_buf_puts(out, "\\n"); break;
        case '\r': rc = slm_buf_puts(out, "\\r"); break;
        case '\t': rc = slm_buf_puts(out, "\\t"); break;
        case '"': rc = slm_buf_puts(out, "\\\""); break;
        case '\\': rc = slm_buf_puts(out, "\\\\"); break;
        default: rc = slm_buf_putc(out, *s); break;
        }
    }
    return rc == SLM_OK ? slm_buf_putc(out, '"') : rc;
}

/* {"name": const, ARGS: parameters} for one tool. */
static json_t *call_schema(const json_t *tool, const char *args_key) {
    const json_t *fn = json_object_get(tool, "function");
    const json_t *params = json_object_get(fn, "parameters");
    json_t *p = json_is_object(params) ? json_incref((json_t *)params)
                                       : json_pack("{s:s}", "type", "object");
    return json_pack("{s:s,s:{s:{s:O},s:o},s:[s,s],s:b}", "type", "object", "properties", "name",
                     "const", json_object_get(fn, "name"), args_key, p, "required", "name",
                     args_key, "additionalProperties", 0);
}

#define CALL_RULE "slm-tool-call"

int slm_tools_grammar(const json_t *tools, const char *only_name, bool parallel,
                      const struct slm_tool_family *fam, struct slm_buf *out, struct slm_err *err) {
    json_t *alts = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (!only_name || (n && strcmp(n, only_name) == 0)) {
            json_array_append_new(alts, call_schema(t, fam->args_key));
        }
    }
    json_t *schema = json_array_size(alts) == 1 ? json_incref(json_array_get(alts, 0))
                                                : json_pack("{s:O}", "anyOf", alts);
    json_decref(alts);
    if (fam->array_calls && schema) {
        schema = json_pack("{s:s,s:o,s:i,s:i}", "type", "array", "items", schema, "minItems", 1,
                           "maxItems", parallel ? SLM_MAX_TOOLS : 1);
    }
    if (!schema) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct slm_buf g = {0};
    slm_buf_init(&g, out->max);
    int rc = slm_json_schema_to_gbnf(schema, &g, err);
    json_decref(schema);
    if (rc != SLM_OK) {
        slm_buf_free(&g);
        return slm_err_prefix(err, "tools: parameters");
    }
    /* The schema's root rule becomes CALL_RULE; a new root wraps it. */
    struct slm_str gs = slm_buf_str(&g);
    if (!slm_str_starts_with(gs, SLM_STR("root ::= "))) {
        slm_buf_free(&g);
        return slm_err_set(err, SLM_E_INVALID, "tools: unexpected grammar");
    }
    const char *block = fam->array_calls || !parallel ? "" : " (\"\\n\" " CALL_RULE "-block)*";
    rc = slm_buf_printf(out, "root ::= " CALL_RULE "-block%s\n" CALL_RULE "-block ::= ", block);
    if (rc == SLM_OK) {
        rc = gbnf_literal(out, fam->call_open);
    }
    if (rc == SLM_OK) {
        rc = slm_buf_puts(out, " " CALL_RULE " ");
    }
    if (rc == SLM_OK) {
        rc = gbnf_literal(out, fam->call_close);
    }
    if (rc == SLM_OK) {
        rc = slm_buf_printf(out, "\n" CALL_RULE " ::= %s", gs.ptr + strlen("root ::= "));
    }
    slm_buf_free(&g);
    return rc == SLM_OK ? SLM_OK : slm_err_set(err, rc, "tools: grammar too large");
}

/* ---------------------------------------------------------------- parsing */

/* A call object in any of the shapes models write: {"name", "arguments" |
 * "parameters"}, {"function": {...}}, {"type": "function", "function": ...}.
 * Appends {name, arguments (object)} to calls when the name is declared. */
static bool take_call(const json_t *v, const json_t *tools, json_t *calls) {
    if (!json_is_object(v)) {
        return false;
    }
    const json_t *fn = json_object_get(v, "function");
    if (json_is_object(fn)) {
        v = fn;
    }
    const char *name = json_string_value(json_object_get(v, "name"));
    if (!name || !find_tool(tools, name)) {
        return false;
    }
    const json_t *args = json_object_get(v, "arguments");
    if (!args) {
        args = json_object_get(v, "parameters");
    }
    json_t *a = NULL;
    if (json_is_object(args)) {
        a = json_incref((json_t *)args);
    } else if (json_is_string(args)) {
        if (slm_json_parse(json_string_value(args), json_string_length(args), "arguments", &a,
                           NULL) != SLM_OK ||
            !json_is_object(a)) {
            json_decref(a);
            return false;
        }
    } else if (!args || json_is_null(args)) {
        a = json_object();
    } else {
        return false;
    }
    json_array_append_new(calls, json_pack("{s:s,s:o}", "name", name, "arguments", a));
    return true;
}

/* A call or an array of calls; true when every element is a call. */
static bool take_calls(const json_t *v, const json_t *tools, json_t *calls) {
    size_t before = json_array_size(calls);
    bool ok = true;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        ok = json_array_size(v) > 0;
        json_array_foreach(v, i, x) {
            ok = ok && take_call(x, tools, calls);
        }
    } else {
        ok = take_call(v, tools, calls);
    }
    while (!ok && json_array_size(calls) > before) {
        json_array_remove(calls, json_array_size(calls) - 1);
    }
    return ok;
}

/* Strips whitespace, a ```json fence and a <|python_tag|> prefix. */
static struct slm_str unwrap(struct slm_str s) {
    s = slm_str_trim(s);
    if (slm_str_starts_with(s, SLM_STR("<|python_tag|>"))) {
        s = slm_str_trim(slm_str_sub(s, 14, SIZE_MAX));
    }
    if (slm_str_starts_with(s, SLM_STR("```")) && s.len >= 6 &&
        slm_str_ends_with(s, SLM_STR("```"))) {
        size_t nl = slm_str_find_char(s, '\n', 0);
        if (nl != SIZE_MAX && nl < s.len - 3) {
            s = slm_str_trim(slm_str_sub(s, nl + 1, s.len - 3 - (nl + 1)));
        }
    }
    return s;
}

static json_t *parse_json(struct slm_str s) {
    json_t *v = NULL;
    if (s.len == 0 || slm_json_parse(s.ptr, s.len, "tool call", &v, NULL) != SLM_OK) {
        return NULL;
    }
    return v;
}

static int append_trimmed(struct slm_buf *content, struct slm_str s) {
    s = slm_str_trim(s);
    if (s.len == 0) {
        return SLM_OK;
    }
    if (content->len && slm_buf_putc(content, '\n') != SLM_OK) {
        return SLM_E_TOO_LARGE;
    }
    return slm_buf_append_str(content, s);
}

/* <tool_call>...</tool_call> blocks (the last may be unclosed). */
static int parse_tagged(struct slm_str text, const json_t *tools, json_t *calls,
                        struct slm_buf *content) {
    struct slm_str open = SLM_STR("<tool_call>"), close = SLM_STR("</tool_call>");
    size_t pos = 0;
    int rc = SLM_OK;
    while (rc == SLM_OK && pos < text.len) {
        size_t at = slm_str_find(text, open, pos);
        if (at == SIZE_MAX) {
            break;
        }
        size_t body = at + open.len;
        size_t end = slm_str_find(text, close, body);
        size_t next = end == SIZE_MAX ? text.len : end + close.len;
        json_t *v =
            parse_json(unwrap(slm_str_sub(text, body, (end == SIZE_MAX ? text.len : end) - body)));
        bool ok = v && take_calls(v, tools, calls);
        json_decref(v);
        rc = append_trimmed(content, slm_str_sub(text, pos, (ok ? at : next) - pos));
        pos = next;
    }
    return rc == SLM_OK ? append_trimmed(content, slm_str_sub(text, pos, SIZE_MAX)) : rc;
}

int slm_tools_parse(const char *text, size_t len, const json_t *tools, bool allow_bare,
                    json_t **calls, struct slm_buf *content) {
    *calls = json_array();
    if (!*calls) {
        return SLM_E_NOMEM;
    }
    struct slm_str t = slm_str_n(text ? text : "", text ? len : 0);
    if (slm_str_find(t, SLM_STR("<tool_call>"), 0) != SIZE_MAX) {
        return parse_tagged(t, tools, *calls, content);
    }
    size_t tc = slm_str_find(t, SLM_STR("[TOOL_CALLS]"), 0);
    if (tc != SIZE_MAX) {
        struct slm_str rest = slm_str_trim(slm_str_sub(t, tc + 12, SIZE_MAX));
        json_error_t je;
        json_t *v =
            json_loadb(rest.ptr, rest.len, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);
        bool ok = v && take_calls(v, tools, *calls);
        json_decref(v);
        if (ok) {
            int rc = append_trimmed(content, slm_str_sub(t, 0, tc));
            if (rc == SLM_OK && (size_t)je.position < rest.len) {
                rc = append_trimmed(content, slm_str_sub(rest, (size_t)je.position, SIZE_MAX));
            }
            return rc;
        }
    }
    struct slm_str u = unwrap(t);
    if (allow_bare && u.len && (u.ptr[0] == '{' || u.ptr[0] == '[')) {
        json_t *v = parse_json(u);
        bool ok = v && take_calls(v, tools, *calls);
        json_decref(v);
        if (ok) {
            return SLM_OK;
        }
    }
    return append_trimmed(content, t);
}

/* ---------------------------------------------------------------- streaming */

static const char *const g_markers[] = {"<tool_call>", "[TOOL_CALLS]", "<|python_tag|>"};

/* Length of the longest suffix of s that is a proper prefix of a marker. */
static size_t partial_marker(struct slm_str s) {
    size_t best = 0;
    for (size_t i = 0; i < SLM_ARRAY_LEN(g_markers); i++) {
        size_t ml = strlen(g_markers[i]);
        for (size_t k = SLM_MIN(ml - 1, s.len); k > best; k--) {
            if (memcmp(s.ptr + s.len - k, g_markers[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

size_t slm_tools_safe_prefix(const struct slm_tool_family *fam, const char *text, size_t len,
                             bool at_start) {
    (void)fam;
    struct slm_str s = slm_str_n(text, len);
    if (at_start) {
        size_t i = 0;
        while (i < len &&
               (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) {
            i++;
        }
        if (i == len) {
            return 0; /* only whitespace: undecided */
        }
        struct slm_str rest = slm_str_sub(s, i, SIZE_MAX);
        if (rest.ptr[0] == '{' || rest.ptr[0] == '[' || rest.ptr[0] == '`') {
            return 0; /* may be a bare JSON call: decided at the end */
        }
    }
    size_t first = len;
    for (size_t i = 0; i < SLM_ARRAY_LEN(g_markers); i++) {
        size_t at = slm_str_find(s, slm_str_c(g_markers[i]), 0);
        first = SLM_MIN(first, at == SIZE_MAX ? len : at);
    }
    if (first < len) {
        return first;
    }
    return len - partial_marker(s);
}

int slm_tools_format_call(const struct slm_tool_family *fam, const char *name,
                          const json_t *arguments, struct slm_buf *out) {
    json_t *a = arguments ? json_incref((json_t *)arguments) : json_object();
    json_t *call = json_pack("{s:s,s:o}", "name", name, fam->args_key, a);
    if (!call) {
        return SLM_E_NOMEM;
    }
    int rc = slm_buf_puts(out, fam->call_open);
    if (rc == SLM_OK && fam->array_calls) {
        rc = slm_buf_putc(out, '[');
    }
    if (rc == SLM_OK) {
        rc = slm_json_dump(call, out);
    }
    if (rc == SLM_OK && fam->array_calls) {
        rc = slm_buf_putc(out, ']');
    }
    if (rc == SLM_OK) {
        rc = slm_buf_puts(out, fam->call_close);
    }
    json_decref(call);
    return rc;
}
