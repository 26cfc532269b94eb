/*
 * server/parse.c - request bodies of the generation and embedding routes
 * (OpenAI and Ollama) into one checked struct srv_gen_req.
 *
 * Everything here is untrusted input (tests/fuzz/fuzz_request.c feeds it
 * arbitrary bytes): every field is type-checked, every list is capped, and
 * each error names the field ("messages[2].content: ...") with a 400. Fields
 * a client library sends that change nothing for slm (user, store,
 * metadata, ...) are accepted and ignored; fields that would change the
 * answer and that slm does not do (logit_bias, images, suffix, ...) are
 * refused, never silently ignored.
 */
#include "server/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/grammar.h"
#include "slm/json.h"

int srv_error_set(struct srv_error *e, int rc, int status, const char *type, const char *code,
                  const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    e->retry_after = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return rc;
}

int srv_bad(struct srv_error *e, const char *param, const char *fmt, ...) {
    e->status = 400;
    e->type = "invalid_request_error";
    e->code = NULL;
    e->retry_after = 0;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return SLM_E_INVALID;
}

void srv_gen_req_free(struct srv_gen_req *g) {
    if (!g) {
        return;
    }
    json_decref(g->messages);
    json_decref(g->inputs);
    json_decref(g->options);
    json_decref(g->body);
    memset(g, 0, sizeof(*g));
}

/* ---------------------------------------------------------------- durations */

static int unit_ms(const char *u, size_t n, double *ms) {
    static const struct {
        const char *name;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"\xce\xbcs", 1e-3},
                 {"ms", 1.0},  {"s", 1e3},   {"m", 60e3},         {"h", 3600e3}};
    for (size_t i = 0; i < SLM_ARRAY_LEN(units); i++) {
        if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0) {
            *ms = units[i].ms;
            return SLM_OK;
        }
    }
    return SLM_E_INVALID;
}

int srv_parse_duration_text(const char *s, int64_t *out_ms) {
    struct slm_str t = slm_str_trim(slm_str_c(s));
    double plain;
    if (t.len && slm_parse_f64(t, &plain) == SLM_OK) { /* a bare number: seconds */
        *out_ms = plain < 0 ? -1 : (int64_t)fmin(plain * 1e3, 1e15);
        return SLM_OK;
    }
    size_t i = 0;
    bool neg = false;
    if (i < t.len && (t.ptr[i] == '-' || t.ptr[i] == '+')) {
        neg = t.ptr[i++] == '-';
    }
    if (i >= t.len || t.len > 64) {
        return SLM_E_INVALID;
    }
    double total = 0;
    while (i < t.len) {
        size_t start = i;
        while (i < t.len && ((t.ptr[i] >= '0' && t.ptr[i] <= '9') || t.ptr[i] == '.')) {
            i++;
        }
        double v;
        if (i == start || slm_parse_f64(slm_str_n(t.ptr + start, i - start), &v) != SLM_OK) {
            return SLM_E_INVALID;
        }
        size_t ustart = i;
        while (i < t.len && !((t.ptr[i] >= '0' && t.ptr[i] <= '9') || t.ptr[i] == '.')) {
            i++;
        }
        double ms;
        if (unit_ms(t.ptr + ustart, i - ustart, &ms) != SLM_OK) {
            return SLM_E_INVALID;
        }
        total += v * ms;
    }
    *out_ms = neg ? -1 : (int64_t)fmin(total, 1e15);
    return SLM_OK;
}

int srv_parse_duration_ms(const json_t *v, int64_t *out_ms) {
    if (json_is_number(v)) {
        double sec = json_number_value(v);
        if (!isfinite(sec)) {
            return SLM_E_INVALID;
        }
        *out_ms = sec < 0 ? -1 : (int64_t)fmin(sec * 1e3, 1e15);
        return SLM_OK;
    }
    if (json_is_string(v)) {
        return srv_parse_duration_text(json_string_value(v), out_ms);
    }
    return SLM_E_INVALID;
}

/* ---------------------------------------------------------------- field helpers */

/* A present, non-null field. */
static json_t *field(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int get_bool(const json_t *obj, const char *key, bool def, bool *out, struct srv_error *e) {
    const json_t *v = field(obj, key);
    if (!v) {
        *out = def;
        return SLM_OK;
    }
    if (!json_is_boolean(v)) {
        return srv_bad(e, key, "'%s' must be true or false", key);
    }
    *out = json_is_true(v);
    return SLM_OK;
}

static int get_int(const json_t *obj, const char *key, int64_t def, int64_t lo, int64_t hi,
                   int64_t *out, struct srv_error *e) {
    const json_t *v = field(obj, key);
    if (!v) {
        *out = def;
        return SLM_OK;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || d != floor(d)) {
        return srv_bad(e, key, "'%s' must be an integer", key);
    }
    if (d < (double)lo || d > (double)hi) {
        return srv_bad(e, key, "'%s' must be from %lld to %lld, got %.0f", key, (long long)lo,
                       (long long)hi, d);
    }
    *out = (int64_t)d;
    return SLM_OK;
}

static int get_model(const json_t *body, const char *key, struct srv_gen_req *g,
                     struct srv_error *e) {
    const json_t *m = field(body, key);
    if (!m && strcmp(key, "model") == 0) {
        m = field(body, "name"); /* older Ollama clients */
    }
    if (!m || !json_is_string(m) || json_string_length(m) == 0) {
        return srv_bad(e, "model",
                       "'model' is required: the name of a model in the store "
                       "(see GET /v1/models)");
    }
    if (json_string_length(m) >= SLM_NAME_MAX ||
        strlen(json_string_value(m)) != json_string_length(m)) {
        return srv_bad(e, "model", "'model' is not a valid model name");
    }
    g->model = json_string_value(m);
    return SLM_OK;
}

/* Refuses a field that would change the answer in a way slm does not do. */
static int refuse(const json_t *body, const char *key, const char *why, struct srv_error *e) {
    const json_t *v = field(body, key);
    bool empty = !v || json_is_false(v) || (json_is_string(v) && json_string_length(v) == 0) ||
                 (json_is_array(v) && json_array_size(v) == 0) ||
                 (json_is_object(v) && json_object_size(v) == 0);
    if (empty) {
        return SLM_OK;
    }
    snprintf(e->param, sizeof(e->param), "%s", key);
    return srv_error_set(e, SLM_E_UNSUPPORTED, 400, "invalid_request_error",
                         "unsupported_parameter", "'%s' is not supported: %s", key, why);
}

/* Sets one generation option (Ollama name) in g->options, checking it with
 * the option table so the error names the client's field. */
static int put_option(struct srv_gen_req *g, const char *field_name, const char *opt_name,
                      json_t *v, struct srv_error *e) {
    struct slm_options scratch;
    slm_options_init(&scratch);
    struct slm_err err = {0};
    int rc = slm_options_set_json(&scratch, opt_name, v, &err);
    slm_options_free(&scratch);
    if (rc != SLM_OK) {
        return srv_bad(e, field_name, "'%s': %s", field_name, err.msg);
    }
    if (json_object_set(g->options, opt_name, v) != 0) {
        return srv_error_set(e, SLM_E_NOMEM, 500, "server_error", NULL, "out of memory");
    }
    return SLM_OK;
}

/* OpenAI top-level sampling fields (and llama-server's extensions), named by
 * the option table. */
static int openai_options(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const char *bad = NULL;
    struct slm_err err = {0};
    int rc = slm_options_from_openai(body, g->options, &bad, &err);
    if (rc == SLM_E_NOMEM || (rc != SLM_OK && !bad)) {
        return srv_fail(e, rc, &err);
    }
    if (rc != SLM_OK) {
        return srv_bad(e, bad, "'%s': %s", bad, err.msg);
    }
    return SLM_OK;
}

/* Ollama `options`: checked against the table; options that belong to the
 * server (num_ctx, num_thread, num_batch) and Ollama options slm lacks are
 * ignored as Ollama ignores unknown ones. */
static int ollama_options(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *o = field(body, "options");
    if (!o) {
        return SLM_OK;
    }
    if (!json_is_object(o)) {
        return srv_bad(e, "options", "'options' must be an object");
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        const struct slm_option_desc *d = slm_option_find(key);
        if (!d || strcmp(d->name, key) != 0 || json_is_null(v) || (d->flags & SLM_OPTF_CONTEXT)) {
            continue;
        }
        char name[96];
        snprintf(name, sizeof(name), "options.%s", key);
        int rc = put_option(g, name, key, v, e);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int keep_alive(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *v = field(body, "keep_alive");
    g->keep_alive_ms = SRV_KEEP_ALIVE_UNSET;
    if (v && srv_parse_duration_ms(v, &g->keep_alive_ms) != SLM_OK) {
        return srv_bad(e, "keep_alive",
                       "'keep_alive' must be a number of seconds or a duration "
                       "such as \"5m\", \"1h\", \"-1\" (forever) or \"0\"");
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- tools */

static bool valid_fn_name(const char *s, size_t n) {
    if (n == 0 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

int srv_tools_check(const json_t *tools, struct srv_error *e) {
    if (!json_is_array(tools)) {
        return srv_bad(e, "tools", "'tools' must be an array");
    }
    if (json_array_size(tools) > SLM_MAX_TOOLS) {
        return srv_bad(e, "tools", "at most %d tools", SLM_MAX_TOOLS);
    }
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *type = json_object_get(t, "type");
        const json_t *fn = json_object_get(t, "function");
        if (!json_is_object(t) ||
            (type && !json_is_null(type) &&
             (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0))) {
            return srv_bad(e, "tools",
                           "tools[%zu] must be {\"type\": \"function\", \"function\": "
                           "{...}}",
                           i);
        }
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_object(fn) || !json_is_string(name) ||
            !valid_fn_name(json_string_value(name), json_string_length(name))) {
            return srv_bad(e, "tools",
                           "tools[%zu].function.name must be 1 to 64 letters, digits, "
                           "'_', '-' or '.'",
                           i);
        }
        const json_t *d = json_object_get(fn, "description");
        const json_t *p = json_object_get(fn, "parameters");
        if (d && !json_is_null(d) && !json_is_string(d)) {
            return srv_bad(e, "tools", "tools[%zu].function.description must be a string", i);
        }
        if (p && !json_is_null(p) && !json_is_object(p)) {
            return srv_bad(e, "tools",
                           "tools[%zu].function.parameters must be a JSON Schema "
                           "object",
                           i);
        }
        for (size_t k = 0; k < i; k++) {
            const char *other = json_string_value(
                json_object_get(json_object_get(json_array_get(tools, k), "function"), "name"));
            if (other && strcmp(other, json_string_value(name)) == 0) {
                return srv_bad(e, "tools", "tools[%zu]: the name '%s' is used twice", i, other);
            }
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- messages */

/* OpenAI content: a string or an array of parts; text parts are joined. */
static int content_text(const json_t *c, const char *where, struct slm_buf *out,
                        struct srv_error *e) {
    if (!c || json_is_null(c)) {
        return SLM_OK;
    }
    if (json_is_string(c)) {
        return slm_buf_append(out, json_string_value(c), json_string_length(c)) == SLM_OK
                   ? SLM_OK
                   : srv_bad(e, where, "%s is too large", where);
    }
    if (!json_is_array(c)) {
        return srv_bad(e, where, "%s must be a string or an array of content parts", where);
    }
    size_t i;
    const json_t *part;
    json_array_foreach(c, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!json_is_object(part) || !type) {
            return srv_bad(e, where, "%s[%zu] must be an object with a 'type'", where, i);
        }
        if (strcmp(type, "text") != 0 && strcmp(type, "input_text") != 0) {
            return srv_error_set(
                e, SLM_E_UNSUPPORTED, 400, "invalid_request_error", "unsupported_content",
                "%s[%zu]: content of type '%s' is not supported (text only)", where, i, type);
        }
        const json_t *t = json_object_get(part, "text");
        if (!json_is_string(t)) {
            return srv_bad(e, where, "%s[%zu].text must be a string", where, i);
        }
        if ((out->len && slm_buf_putc(out, '\n') != SLM_OK) ||
            slm_buf_append(out, json_string_value(t), json_string_length(t)) != SLM_OK) {
            return srv_bad(e, where, "%s is too large", where);
        }
    }
    return SLM_OK;
}

/* tool_calls of an assistant message, into [{id, name, arguments (object)}]. */
static int tool_calls(const json_t *tc, const char *where, bool ollama, json_t *msg,
                      struct srv_error *e) {
    if (!json_is_array(tc) || json_array_size(tc) > SLM_MAX_TOOLS) {
        return srv_bad(e, where, "%s must be an array of at most %d calls", where, SLM_MAX_TOOLS);
    }
    json_t *calls = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(tc, i, c) {
        const json_t *fn = json_object_get(c, "function");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(fn) || !json_is_string(name)) {
            json_decref(calls);
            return srv_bad(e, where, "%s[%zu].function.name must be a string", where, i);
        }
        json_t *argv = NULL;
        if (json_is_string(args) && !ollama) {
            if (slm_json_parse(json_string_value(args), json_string_length(args), "arguments",
                               &argv, NULL) != SLM_OK) {
                argv = json_incref((json_t *)args); /* replay it as the model wrote it */
            }
        } else if (json_is_object(args)) {
            argv = json_incref((json_t *)args);
        } else if (!args || json_is_null(args)) {
            argv = json_object();
        } else {
            json_decref(calls);
            return srv_bad(e, where, "%s[%zu].function.arguments must be %s", where, i,
                           ollama ? "an object" : "a JSON string");
        }
        const json_t *id = json_object_get(c, "id");
        json_array_append_new(calls,
                              json_pack("{s:O,s:o,s:s}", "name", name, "arguments", argv, "id",
                                        json_is_string(id) ? json_string_value(id) : ""));
    }
    json_object_set_new(msg, "tool_calls", calls);
    return SLM_OK;
}

static int one_message(const json_t *m, size_t i, bool ollama, json_t *out, struct srv_error *e) {
    char where[64];
    snprintf(where, sizeof(where), "messages[%zu]", i);
    if (!json_is_object(m)) {
        return srv_bad(e, "messages", "%s must be an object", where);
    }
    const char *role = json_string_value(json_object_get(m, "role"));
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    bool ok = false;
    for (size_t k = 0; role && k < SLM_ARRAY_LEN(roles); k++) {
        ok = ok || strcmp(role, roles[k]) == 0;
    }
    if (!ok) {
        return srv_bad(e, "messages",
                       "%s.role must be one of system, developer, user, "
                       "assistant, tool",
                       where);
    }
    if (strcmp(role, "developer") == 0) {
        role = "system";
    }
    if (ollama && json_array_size(field(m, "images")) > 0) {
        return refuse(m, "images", "slm serves text models", e);
    }
    struct slm_buf text = {0};
    slm_buf_init(&text, SRV_MAX_PROMPT_TEXT);
    char cwhere[80];
    snprintf(cwhere, sizeof(cwhere), "%s.content", where);
    int rc = content_text(json_object_get(m, "content"), cwhere, &text, e);
    json_t *msg = NULL;
    if (rc == SLM_OK) {
        msg = json_pack("{s:s,s:s%}", "role", role, "content", slm_buf_cstr(&text), text.len);
        rc = msg ? SLM_OK
                 : srv_error_set(e, SLM_E_NOMEM, 500, "server_error", NULL, "out of memory");
    }
    slm_buf_free(&text);
    const json_t *tc = field(m, "tool_calls");
    if (rc == SLM_OK && tc && json_array_size(tc) > 0) {
        snprintf(cwhere, sizeof(cwhere), "%s.tool_calls", where);
        rc = tool_calls(tc, cwhere, ollama, msg, e);
    }
    const char *extra[] = {"tool_call_id", "name", "tool_name"};
    for (size_t k = 0; rc == SLM_OK && k < SLM_ARRAY_LEN(extra); k++) {
        const json_t *v = field(m, extra[k]);
        if (v && json_is_string(v)) {
            json_object_set(msg, extra[k], (json_t *)v);
        }
    }
    if (rc == SLM_OK) {
        json_array_append_new(out, msg);
    } else {
        json_decref(msg);
    }
    return rc;
}

static int parse_messages(const json_t *body, bool ollama, struct srv_gen_req *g,
                          struct srv_error *e) {
    const json_t *ms = field(body, "messages");
    if (ollama && (!ms || (json_is_array(ms) && json_array_size(ms) == 0))) {
        g->load_only = true;
        g->messages = json_array();
        return SLM_OK;
    }
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        return srv_bad(e, "messages", "'messages' must be a non-empty array");
    }
    if (json_array_size(ms) > SRV_MAX_MESSAGES) {
        return srv_bad(e, "messages", "at most %d messages", SRV_MAX_MESSAGES);
    }
    g->messages = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(ms, i, m) {
        int rc = one_message(m, i, ollama, g->messages, e);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- formats and tools */

static int response_format(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *rf = field(body, "response_format");
    if (!rf) {
        return SLM_OK;
    }
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type) {
        return srv_bad(e, "response_format", "'response_format' must be an object with a 'type'");
    }
    if (strcmp(type, "text") == 0) {
        return SLM_OK;
    }
    if (strcmp(type, "json_object") == 0) {
        g->format = SLM_TURN_FORMAT_JSON;
        return SLM_OK;
    }
    if (strcmp(type, "json_schema") != 0) {
        return srv_bad(e, "response_format.type",
                       "response_format.type must be text, json_object or json_schema");
    }
    const json_t *js = json_object_get(rf, "json_schema");
    const json_t *schema = json_object_get(js, "schema");
    if (!json_is_object(js)) {
        return srv_bad(e, "response_format.json_schema",
                       "response_format.json_schema must be an object with a 'schema'");
    }
    if (!schema) {
        g->format = SLM_TURN_FORMAT_JSON; /* OpenAI allows a schema-less json_schema */
        return SLM_OK;
    }
    if (!json_is_object(schema) && !json_is_boolean(schema)) {
        return srv_bad(e, "response_format.json_schema.schema",
                       "response_format.json_schema.schema must be a JSON Schema object");
    }
    g->format = SLM_TURN_FORMAT_SCHEMA;
    g->schema = schema;
    return SLM_OK;
}

/* Ollama `format`: "json" or a schema object. */
static int ollama_format(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *f = field(body, "format");
    if (!f || (json_is_string(f) && json_string_length(f) == 0)) {
        return SLM_OK;
    }
    if (json_is_string(f) && strcmp(json_string_value(f), "json") == 0) {
        g->format = SLM_TURN_FORMAT_JSON;
        return SLM_OK;
    }
    if (json_is_object(f)) {
        g->format = SLM_TURN_FORMAT_SCHEMA;
        g->schema = f;
        return SLM_OK;
    }
    return srv_bad(e, "format", "'format' must be \"json\" or a JSON Schema object");
}

static int parse_tools(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *tools = field(body, "tools");
    g->parallel_tool_calls = true;
    if (!tools || (json_is_array(tools) && json_array_size(tools) == 0)) {
        return SLM_OK;
    }
    int rc = srv_tools_check(tools, e);
    if (rc != SLM_OK) {
        return rc;
    }
    g->tools = tools;
    g->tool_choice = SLM_TOOLS_AUTO;
    rc = get_bool(body, "parallel_tool_calls", true, &g->parallel_tool_calls, e);
    if (rc != SLM_OK) {
        return rc;
    }
    const json_t *tc = field(body, "tool_choice");
    if (!tc) {
        return SLM_OK;
    }
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "none") == 0) {
            g->tool_choice = SLM_TOOLS_OFF;
        } else if (strcmp(s, "auto") == 0) {
            g->tool_choice = SLM_TOOLS_AUTO;
        } else if (strcmp(s, "required") == 0) {
            g->tool_choice = SLM_TOOLS_REQUIRED;
        } else {
            return srv_bad(e, "tool_choice",
                           "tool_choice must be none, auto, required or "
                           "{\"type\": \"function\", \"function\": {\"name\": ...}}");
        }
        return SLM_OK;
    }
    const char *name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
    if (!name) {
        return srv_bad(e, "tool_choice",
                       "tool_choice must be none, auto, required or "
                       "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *tn = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (tn && strcmp(tn, name) == 0) {
            g->tool_choice = SLM_TOOLS_NAMED;
            g->tool_name = name;
            return SLM_OK;
        }
    }
    return srv_bad(e, "tool_choice", "tool_choice names '%s', which is not in 'tools'", name);
}

/* ---------------------------------------------------------------- inputs */

/* A string, an array of strings, an array of token ids or an array of such
 * arrays, into g->inputs (array of strings / token arrays). */
static int parse_inputs(const json_t *v, const char *key, size_t max, struct srv_gen_req *g,
                        struct srv_error *e) {
    g->inputs = json_array();
    if (json_is_string(v)) {
        json_array_append(g->inputs, (json_t *)v);
        return SLM_OK;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return srv_bad(e, key,
                       "'%s' must be a string or a non-empty array of strings or token "
                       "ids",
                       key);
    }
    if (json_is_integer(json_array_get(v, 0))) { /* one prompt as token ids */
        json_array_append(g->inputs, (json_t *)v);
    } else {
        if (json_array_size(v) > max) {
            return srv_bad(e, key, "at most %zu inputs per request", max);
        }
        json_array_extend(g->inputs, (json_t *)v);
    }
    size_t i;
    const json_t *x;
    json_array_foreach(g->inputs, i, x) {
        if (json_is_string(x)) {
            continue;
        }
        if (!json_is_array(x) || json_array_size(x) == 0) {
            return srv_bad(e, key, "%s[%zu] must be a string or a non-empty array of token ids",
                           key, i);
        }
        size_t k;
        const json_t *t;
        json_array_foreach(x, k, t) {
            if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                json_integer_value(t) > INT32_MAX) {
                return srv_bad(e, key, "%s[%zu][%zu] must be a token id", key, i, k);
            }
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- routes */

/* "lora": [{"id": N, "scale": S} | {"name": "model", "scale": S}], scale 1 when absent. Ids
 * are checked against the server's adapters when the request runs. */
static int parse_lora(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *l = field(body, "lora");
    if (!l) {
        return SLM_OK;
    }
    if (!json_is_array(l)) {
        return srv_bad(e, "lora", "'lora' must be an array of {\"id\": N, \"scale\": S}");
    }
    if (json_array_size(l) > SRV_MAX_LORA_REQ) {
        return srv_bad(e, "lora", "'lora' may list at most %d adapters", SRV_MAX_LORA_REQ);
    }
    size_t i;
    const json_t *x;
    json_array_foreach(l, i, x) {
        const json_t *id = json_object_get(x, "id"), *name = json_object_get(x, "name");
        const json_t *scale = json_object_get(x, "scale");
        if (!json_is_object(x) || (!id == !name)) {
            return srv_bad(e, "lora", "lora[%zu] must be an object with an \"id\" or a \"name\"",
                           i);
        }
        if (id && (!json_is_integer(id) || json_integer_value(id) < 0 ||
                   json_integer_value(id) > INT32_MAX)) {
            return srv_bad(e, "lora", "lora[%zu].id must be a non-negative integer", i);
        }
        if (name && (!json_is_string(name) || json_string_length(name) == 0)) {
            return srv_bad(e, "lora", "lora[%zu].name must be a model name", i);
        }
        if (scale && !json_is_number(scale)) {
            return srv_bad(e, "lora", "lora[%zu].scale must be a number", i);
        }
        double sc = scale ? json_number_value(scale) : 1.0;
        if (!isfinite(sc) || fabs(sc) > 100) {
            return srv_bad(e, "lora", "lora[%zu].scale must be a number from -100 to 100", i);
        }
        if (sc == 0) {
            continue;
        }
        g->lora[g->n_lora++] =
            (struct srv_lora_req){.id = id ? (int32_t)json_integer_value(id) : -1,
                                  .name = name ? json_string_value(name) : NULL,
                                  .scale = (float)sc};
    }
    return SLM_OK;
}

/* A completion's "suffix" (OpenAI /v1/completions, Ollama /api/generate): the prompt is the
 * text before the cursor, the suffix the text after it, and the answer fills the middle, as
 * POST /infill does. One prompt only; not with echo or raw. */
static int completion_suffix(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    const json_t *sfx = field(body, "suffix");
    if (!sfx || json_is_null(sfx)) {
        return SLM_OK;
    }
    if (!json_is_string(sfx)) {
        return srv_bad(e, "suffix", "'suffix' must be a string");
    }
    if (json_string_length(sfx) == 0) {
        return SLM_OK; /* nothing after the cursor: a plain completion */
    }
    size_t n_in = json_array_size(g->inputs);
    const json_t *in = json_array_get(g->inputs, 0);
    if (n_in > 1 || (in && !json_is_string(in))) {
        return srv_bad(e, "suffix", "'suffix' takes one prompt string");
    }
    if (g->echo || g->raw) {
        return srv_bad(e, "suffix", "'suffix' cannot be combined with '%s'",
                       g->echo ? "echo" : "raw");
    }
    if (!in) { /* Ollama: an empty prompt before the suffix */
        if (json_array_append_new(g->inputs, json_string("")) != 0) {
            return srv_fail(e, SLM_E_NOMEM, NULL);
        }
        g->load_only = false;
    }
    g->fim.on = true;
    g->fim.prefix = in ? slm_json_str(in) : slm_str_c("");
    g->fim.suffix = slm_json_str(sfx);
    g->fim.prompt = slm_str_c("");
    return SLM_OK;
}

/* llama-server's POST /infill: input_prefix and input_suffix (required), input_extra,
 * prompt, its sampling fields (n_predict, temperature, top_k, top_p, min_p, seed,
 * repeat_penalty, repeat_last_n, stop), stream, n_indent, t_max_predict_ms,
 * return_tokens, response_fields. cache_prompt (always on here), samplers, id_slot and
 * t_max_prompt_ms are accepted and have no effect. */
static int parse_llama_infill(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    g->kind = SRV_KIND_COMPLETION;
    g->n = 1;
    const json_t *pre = field(body, "input_prefix"), *suf = field(body, "input_suffix");
    const json_t *prompt = field(body, "prompt"), *extra = field(body, "input_extra");
    if (!pre || !json_is_string(pre)) {
        return srv_bad(e, "input_prefix", "'input_prefix' is required: a string");
    }
    if (!suf || !json_is_string(suf)) {
        return srv_bad(e, "input_suffix", "'input_suffix' is required: a string");
    }
    if (prompt && !json_is_string(prompt)) {
        return srv_bad(e, "prompt", "'prompt' must be a string");
    }
    if (extra && !json_is_array(extra)) {
        return srv_bad(e, "input_extra",
                       "'input_extra' must be an array of {\"filename\": string, \"text\": "
                       "string}");
    }
    if (json_array_size(extra) > SRV_MAX_FIM_EXTRA) {
        return srv_bad(e, "input_extra", "'input_extra' may hold at most %d chunks",
                       SRV_MAX_FIM_EXTRA);
    }
    size_t i;
    const json_t *c;
    json_array_foreach(extra, i, c) {
        const json_t *t = json_object_get(c, "text"), *f = json_object_get(c, "filename");
        if (!json_is_object(c) || !json_is_string(t)) {
            return srv_bad(e, "input_extra", "input_extra[%zu] needs a \"text\" string", i);
        }
        if (f && !json_is_string(f)) {
            return srv_bad(e, "input_extra", "input_extra[%zu].filename must be a string", i);
        }
    }
    g->fim = (struct srv_fim){.on = true,
                              .prefix = slm_json_str(pre),
                              .suffix = slm_json_str(suf),
                              .prompt = prompt ? slm_json_str(prompt) : slm_str_c(""),
                              .extra = extra,
                              .llama_api = true};
    g->inputs = json_array();
    if (!g->inputs || json_array_append_new(g->inputs, json_string("")) != 0) {
        return srv_fail(e, SLM_E_NOMEM, NULL);
    }
    /* llama-server's defaults where the request is silent (slm's own are Ollama's: a
     * repeat penalty of 1.1 would change the tokens). */
    static const struct {
        const char *name;
        double value;
        bool integer;
    } defaults[] = {{"temperature", 0.8, false},    {"top_k", 40, true},
                    {"top_p", 0.95, false},         {"min_p", 0.05, false},
                    {"repeat_penalty", 1.0, false}, {"repeat_last_n", 64, true}};
    for (i = 0; i < SLM_ARRAY_LEN(defaults); i++) {
        json_t *v = defaults[i].integer ? json_integer((json_int_t)defaults[i].value)
                                        : json_real(defaults[i].value);
        if (!v || json_object_set_new(g->options, defaults[i].name, v) != 0) {
            return srv_fail(e, SLM_E_NOMEM, NULL);
        }
    }
    int rc = openai_options(body, g, e);
    const json_t *np = field(body, "n_predict");
    if (rc == SLM_OK && np && !json_is_null(np)) {
        rc = put_option(g, "n_predict", "num_predict", (json_t *)np, e);
    }
    if (rc == SLM_OK) {
        rc = parse_lora(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = get_bool(body, "stream", false, &g->stream, e);
    }
    int64_t indent = 0;
    if (rc == SLM_OK) {
        rc = get_int(body, "n_indent", 0, 0, 1 << 16, &indent, e);
        g->fim.n_indent = (int)indent;
    }
    const json_t *tmax = field(body, "t_max_predict_ms");
    if (rc == SLM_OK && tmax && (!json_is_number(tmax) || json_number_value(tmax) < 0)) {
        rc = srv_bad(e, "t_max_predict_ms", "'t_max_predict_ms' must be a number of ms >= 0");
    }
    g->fim.t_max_predict_ms = tmax ? json_number_value(tmax) : 0;
    if (rc == SLM_OK) {
        rc = get_bool(body, "return_tokens", false, &g->fim.return_tokens, e);
    }
    const json_t *samplers = field(body, "samplers");
    const json_t *sname;
    json_array_foreach(samplers, i, sname) {
        g->fim.infill_sampler |=
            json_is_string(sname) && strcmp(json_string_value(sname), "infill") == 0;
    }
    const json_t *rf = field(body, "response_fields");
    if (rc == SLM_OK && rf) {
        const json_t *x;
        json_array_foreach(rf, i, x) {
            if (!json_is_string(x)) {
                rf = NULL;
            }
        }
        rc = json_is_array(rf)
                 ? SLM_OK
                 : srv_bad(e, "response_fields", "'response_fields' must be an array of strings");
        g->fim.response_fields = rf;
    }
    if (rc == SLM_OK) {
        rc = keep_alive(body, g, e);
    }
    return rc;
}

static int common_openai(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    int64_t n;
    int rc = openai_options(body, g, e);
    if (rc == SLM_OK) {
        rc = parse_lora(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = get_bool(body, "stream", false, &g->stream, e);
    }
    const json_t *so = field(body, "stream_options");
    if (rc == SLM_OK && so) {
        rc = json_is_object(so)
                 ? get_bool(so, "include_usage", false, &g->include_usage, e)
                 : srv_bad(e, "stream_options", "'stream_options' must be an object");
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "n", 1, 1, SRV_MAX_CHOICES, &n, e);
        g->n = (int)n;
    }
    if (rc == SLM_OK) {
        rc = refuse(body, "logit_bias", "slm does not bias logits", e);
    }
    if (rc == SLM_OK) {
        rc = response_format(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = keep_alive(body, g, e);
    }
    const json_t *vars = field(body, "variables");
    if (rc == SLM_OK && vars) {
        rc = json_is_object(vars) ? SLM_OK
                                  : srv_bad(e, "variables", "'variables' must be an object");
        g->variables = vars;
    }
    return rc;
}

static int parse_openai_chat(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    g->kind = SRV_KIND_CHAT;
    int64_t top = 0;
    int rc = parse_messages(body, false, g, e);
    if (rc == SLM_OK) {
        rc = common_openai(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = get_bool(body, "logprobs", false, &g->logprobs, e);
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "top_logprobs", 0, 0, SLM_MAX_TOP_LOGPROBS, &top, e);
        g->top_logprobs = (int)top;
    }
    if (rc == SLM_OK && top > 0 && !g->logprobs) {
        rc = srv_bad(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
    if (rc == SLM_OK) {
        rc = refuse(body, "functions", "use 'tools'", e);
    }
    if (rc == SLM_OK) {
        rc = refuse(body, "audio", "slm serves text models", e);
    }
    if (rc == SLM_OK) {
        rc = parse_tools(body, g, e);
    }
    return rc;
}

static int parse_openai_completion(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    g->kind = SRV_KIND_COMPLETION;
    int64_t lp = 0, best_of = 0;
    const json_t *prompt = field(body, "prompt");
    int rc = prompt ? parse_inputs(prompt, "prompt", SRV_MAX_CHOICES, g, e)
                    : srv_bad(e, "prompt", "'prompt' is required");
    if (rc == SLM_OK) {
        rc = common_openai(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "logprobs", 0, 0, SLM_MAX_TOP_LOGPROBS, &lp, e);
        g->logprobs = field(body, "logprobs") != NULL;
        g->top_logprobs = (int)lp;
    }
    if (rc == SLM_OK) {
        rc = get_bool(body, "echo", false, &g->echo, e);
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "best_of", g->n, 1, SRV_MAX_CHOICES, &best_of, e);
    }
    if (rc == SLM_OK && best_of != g->n) {
        rc = srv_bad(e, "best_of", "'best_of' other than n is not supported");
    }
    if (rc == SLM_OK) {
        rc = completion_suffix(body, g, e);
    }
    if (rc == SLM_OK && json_array_size(g->inputs) * (size_t)g->n > SRV_MAX_CHOICES) {
        rc = srv_bad(e, "n", "prompts x n must be at most %d", SRV_MAX_CHOICES);
    }
    return rc;
}

static int parse_openai_embeddings(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    g->kind = SRV_KIND_EMBED;
    int64_t dim = 0;
    const json_t *input = field(body, "input");
    int rc = input ? parse_inputs(input, "input", SRV_MAX_EMBED_INPUTS, g, e)
                   : srv_bad(e, "input", "'input' is required");
    const char *enc = NULL;
    if (rc == SLM_OK) {
        rc = slm_json_get_str(body, "encoding_format", "float", &enc, NULL) == SLM_OK &&
                     (strcmp(enc, "float") == 0 || strcmp(enc, "base64") == 0)
                 ? SLM_OK
                 : srv_bad(e, "encoding_format", "'encoding_format' must be float or base64");
        g->base64 = rc == SLM_OK && strcmp(enc, "base64") == 0;
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "dimensions", 0, 1, 1 << 20, &dim, e);
        g->dimensions = (int)dim;
    }
    if (rc == SLM_OK) {
        rc = keep_alive(body, g, e);
    }
    size_t i;
    const json_t *x;
    json_array_foreach(g->inputs, i, x) {
        if (rc == SLM_OK && json_is_string(x) && json_string_length(x) == 0) {
            rc = srv_bad(e, "input", "input[%zu] is empty", i);
        }
    }
    g->n = 1;
    return rc;
}

static int common_ollama(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    int rc = ollama_options(body, g, e);
    if (rc == SLM_OK) {
        rc = parse_lora(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = get_bool(body, "stream", true, &g->stream, e);
    }
    if (rc == SLM_OK) {
        rc = ollama_format(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = keep_alive(body, g, e);
    }
    bool think = false;
    if (rc == SLM_OK && json_is_boolean(field(body, "think"))) {
        rc = get_bool(body, "think", false, &think, e);
    }
    if (rc == SLM_OK && think) {
        rc = srv_bad(e, "think", "this model does not support thinking");
    }
    int64_t top = 0;
    if (rc == SLM_OK) {
        rc = get_bool(body, "logprobs", false, &g->logprobs, e);
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "top_logprobs", 0, 0, SLM_MAX_TOP_LOGPROBS, &top, e);
        g->top_logprobs = (int)top;
    }
    const json_t *vars = field(body, "variables");
    if (rc == SLM_OK && vars) {
        rc = json_is_object(vars) ? SLM_OK
                                  : srv_bad(e, "variables", "'variables' must be an object");
        g->variables = vars;
    }
    g->n = 1;
    return rc;
}

static int parse_ollama_chat(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    g->kind = SRV_KIND_CHAT;
    int rc = parse_messages(body, true, g, e);
    if (rc == SLM_OK) {
        rc = common_ollama(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = parse_tools(body, g, e);
    }
    return rc;
}

static int parse_ollama_generate(const json_t *body, struct srv_gen_req *g, struct srv_error *e) {
    g->kind = SRV_KIND_GENERATE;
    const json_t *prompt = field(body, "prompt");
    int rc = SLM_OK;
    if (prompt && !json_is_string(prompt)) {
        return srv_bad(e, "prompt", "'prompt' must be a string");
    }
    g->inputs = json_array();
    if (!prompt || json_string_length(prompt) == 0) {
        g->load_only = true;
    } else {
        json_array_append(g->inputs, (json_t *)prompt);
    }
    const json_t *sys = field(body, "system");
    if (sys && !json_is_string(sys)) {
        return srv_bad(e, "system", "'system' must be a string");
    }
    g->system = sys ? json_string_value(sys) : NULL;
    rc = get_bool(body, "raw", false, &g->raw, e);
    if (rc == SLM_OK) {
        rc = common_ollama(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = completion_suffix(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = refuse(body, "template",
                    "slm templates are Liquid: give the model a TEMPLATE with "
                    "`slm create`",
                    e);
    }
    if (rc == SLM_OK) {
        rc = refuse(body, "context", "send the conversation to /api/chat instead", e);
    }
    if (rc == SLM_OK) {
        rc = refuse(body, "images", "slm serves text models", e);
    }
    return rc;
}

static int parse_ollama_embed(const json_t *body, bool legacy, struct srv_gen_req *g,
                              struct srv_error *e) {
    g->kind = SRV_KIND_EMBED;
    const char *key = legacy ? "prompt" : "input";
    const json_t *input = field(body, key);
    int rc;
    if (legacy && input && !json_is_string(input)) {
        return srv_bad(e, key, "'prompt' must be a string");
    }
    if (!input || (json_is_string(input) && json_string_length(input) == 0 && legacy)) {
        g->inputs = json_array(); /* Ollama answers an empty embedding */
        rc = SLM_OK;
    } else {
        rc = parse_inputs(input, key, SRV_MAX_EMBED_INPUTS, g, e);
    }
    int64_t dim = 0;
    if (rc == SLM_OK) {
        rc = get_bool(body, "truncate", true, &g->truncate, e);
    }
    if (rc == SLM_OK) {
        rc = get_int(body, "dimensions", 0, 1, 1 << 20, &dim, e);
        g->dimensions = (int)dim;
    }
    if (rc == SLM_OK) {
        rc = keep_alive(body, g, e);
    }
    if (rc == SLM_OK) {
        rc = ollama_options(body, g, e);
    }
    g->n = 1;
    return rc;
}

int srv_parse_request(enum srv_route_id route, const char *body, size_t len,
                      struct srv_gen_req *out, struct srv_error *e) {
    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    struct slm_err err = {0};
    json_t *doc = NULL;
    if (slm_json_parse(body, len, "request body", &doc, &err) != SLM_OK) {
        return srv_bad(e, NULL, "%s", err.msg);
    }
    int rc = srv_parse_request_doc(route, doc, out, e);
    json_decref(doc);
    return rc;
}

int srv_parse_request_doc(enum srv_route_id route, json_t *doc, struct srv_gen_req *out,
                          struct srv_error *e) {
    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    if (!json_is_object(doc)) {
        return srv_bad(e, NULL, "the request body must be a JSON object");
    }
    out->body = json_incref(doc);
    out->options = json_object();
    out->keep_alive_ms = SRV_KEEP_ALIVE_UNSET;
    bool ollama = route >= SRV_R_OLLAMA_CHAT && route <= SRV_R_OLLAMA_EMBEDDINGS;
    out->api = ollama ? SRV_API_OLLAMA : SRV_API_OPENAI;
    /* llama-server's clients name no model: the server's --model serves them. */
    bool optional = route == SRV_R_LLAMA_INFILL && !field(doc, "model");
    int rc = !out->options
                 ? srv_error_set(e, SLM_E_NOMEM, 500, "server_error", NULL, "out of memory")
             : optional ? SLM_OK
                        : get_model(doc, "model", out, e);
    if (rc == SLM_OK) {
        switch (route) {
        case SRV_R_OPENAI_CHAT: rc = parse_openai_chat(doc, out, e); break;
        case SRV_R_OPENAI_COMPLETIONS: rc = parse_openai_completion(doc, out, e); break;
        case SRV_R_OPENAI_EMBEDDINGS: rc = parse_openai_embeddings(doc, out, e); break;
        case SRV_R_OLLAMA_CHAT: rc = parse_ollama_chat(doc, out, e); break;
        case SRV_R_OLLAMA_GENERATE: rc = parse_ollama_generate(doc, out, e); break;
        case SRV_R_OLLAMA_EMBED: rc = parse_ollama_embed(doc, false, out, e); break;
        case SRV_R_OLLAMA_EMBEDDINGS: rc = parse_ollama_embed(doc, true, out, e); break;
        case SRV_R_LLAMA_INFILL: rc = parse_llama_infill(doc, out, e); break;
        default: rc = srv_bad(e, NULL, "unknown route"); break;
        }
    }
    if (rc == SLM_OK && out->format != SLM_TURN_FORMAT_TEXT &&
        out->tool_choice >= SLM_TOOLS_REQUIRED) {
        rc = srv_bad(e, "response_format",
                     "a JSON response format cannot be combined with a "
                     "required tool call");
    }
    if (rc == SLM_OK) {
        rc = get_bool(doc, "ignore_eos", false, &out->ignore_eos, e);
    }
    if (rc != SLM_OK) {
        srv_gen_req_free(out);
    }
    return rc;
}
