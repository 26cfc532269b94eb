/*
 * turn/prompt.c - the request side of a turn: the grammar a request asks for
 * and its prompt text (slm/turn.h lists the steps). The one place a prompt
 * is built: conversation, TEMPLATE, tools, chat template.
 */
#include "slm/turn.h"

#include <stdlib.h>
#include <string.h>

#include "slm/grammar.h"
#include "slm/json.h"

bool slm_turn_uses_tools(const struct slm_turn_req *r) {
    return r->tools && r->tool_choice != SLM_TOOLS_OFF && r->kind == SLM_TURN_CHAT;
}

/* ---------------------------------------------------------------- grammar */

int slm_turn_grammar(const struct slm_turn_req *r, const struct slm_tool_family *fam, char **out,
                     struct slm_err *err) {
    *out = NULL;
    struct slm_buf gb = {0};
    slm_buf_init(&gb, (size_t)4 << 20);
    int rc = SLM_OK;
    if (r->format == SLM_TURN_FORMAT_JSON) {
        rc = slm_buf_puts(&gb, slm_grammar_json_object);
    } else if (r->format == SLM_TURN_FORMAT_SCHEMA) {
        rc = slm_json_schema_to_gbnf(r->schema, &gb, err);
    } else if (slm_turn_uses_tools(r) && r->tool_choice >= SLM_TOOLS_REQUIRED) {
        rc = slm_tools_grammar(r->tools, r->tool_name, r->parallel_tool_calls, fam, &gb, err);
    } else {
        slm_buf_free(&gb);
        return SLM_OK;
    }
    if (rc != SLM_OK) {
        slm_buf_free(&gb);
        return rc;
    }
    *out = slm_buf_take(&gb);
    return *out ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------- pieces */

static json_t *msg(const char *role, const char *content, size_t len) {
    return json_pack("{s:s,s:s%}", "role", role, "content", content ? content : "",
                     content ? len : 0);
}

static const char *role_of(const json_t *m) {
    const char *r = json_string_value(json_object_get(m, "role"));
    return r ? r : "";
}

static int nomem(struct slm_err *err) {
    return slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

static int too_large(struct slm_err *err) {
    return slm_err_set(err, SLM_E_TOO_LARGE, "the prompt is larger than %zu bytes",
                       SLM_TURN_MAX_PROMPT);
}

/* The TEMPLATE renders `input` with the request's variables plus input,
 * system and messages (DESIGN.md); without one, the input as it is. */
static int render_input(const struct slm_turn *t, const struct slm_turn_req *r,
                        struct slm_str input, const char *system, const json_t *history,
                        struct slm_buf *out, struct slm_err *err) {
    if (!t->tmpl) {
        return slm_buf_append_str(out, input) == SLM_OK ? SLM_OK : too_large(err);
    }
    json_t *vars = json_is_object(r->variables) ? json_deep_copy(r->variables) : json_object();
    if (!vars) {
        return nomem(err);
    }
    json_object_set_new(vars, "input", json_stringn(input.ptr ? input.ptr : "", input.len));
    json_object_set_new(vars, "system", system ? json_string(system) : json_null());
    json_object_set_new(vars, "messages", history ? json_incref((json_t *)history) : json_array());
    int rc = slm_liquid_render(t->tmpl, vars, out, err);
    json_decref(vars);
    if (rc != SLM_OK) {
        slm_err_prefix(err, "the template");
        return rc == SLM_E_NOMEM || rc == SLM_E_TOO_LARGE ? rc : SLM_E_INVALID;
    }
    return SLM_OK;
}

/* A request message in the model's words: tool calls and results replayed in
 * the family's syntax. */
static json_t *replay(const struct slm_tool_family *f, const json_t *m) {
    const char *role = role_of(m);
    struct slm_str content = slm_json_str(json_object_get(m, "content"));
    const json_t *calls = json_object_get(m, "tool_calls");
    struct slm_buf b = {0};
    slm_buf_init(&b, SLM_TURN_MAX_PROMPT);
    json_t *out = NULL;
    if (strcmp(role, "tool") == 0 && f) {
        if (slm_buf_puts(&b, f->result_open) == SLM_OK &&
            slm_buf_append_str(&b, content) == SLM_OK &&
            slm_buf_puts(&b, f->result_close) == SLM_OK) {
            out = msg(f->result_role, b.ptr, b.len);
        }
        slm_buf_free(&b);
        return out;
    }
    if (!calls || !f) {
        slm_buf_free(&b);
        return msg(role, content.ptr, content.len);
    }
    int rc = slm_buf_append_str(&b, content);
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c) {
        if (rc == SLM_OK && b.len) {
            rc = slm_buf_putc(&b, '\n');
        }
        if (rc == SLM_OK) {
            rc = slm_tools_format_call(f, json_string_value(json_object_get(c, "name")),
                                       json_object_get(c, "arguments"), &b);
        }
    }
    out = rc == SLM_OK ? msg(role, b.ptr, b.len) : NULL;
    slm_buf_free(&b);
    return out;
}

/* The conversation as the model sees it: the system prompt (the request's,
 * else the turn's), the model's MESSAGEs after the leading system messages,
 * then the request's messages. */
static int conversation(const struct slm_turn *t, const struct slm_turn_req *r,
                        const struct slm_tool_family *fam, json_t *conv, struct slm_err *err) {
    const json_t *ms = r->messages;
    size_t n = json_array_size(ms);
    size_t lead = 0; /* leading system messages */
    while (lead < n && strcmp(role_of(json_array_get(ms, lead)), "system") == 0) {
        lead++;
    }
    bool has_system = false;
    for (size_t i = 0; i < n; i++) {
        has_system |= strcmp(role_of(json_array_get(ms, i)), "system") == 0;
    }
    if (!has_system && t->system) {
        json_array_append_new(conv, msg("system", t->system, strlen(t->system)));
    }
    for (size_t i = 0; i <= n; i++) {
        if (i == lead) {
            json_array_extend(conv, t->manifest->messages);
        }
        if (i == n) {
            break;
        }
        json_t *m = replay(fam, json_array_get(ms, i));
        if (!m || json_array_append_new(conv, m) != 0) {
            return nomem(err);
        }
    }
    if (json_array_size(conv) > SLM_TURN_MAX_MESSAGES) {
        return slm_err_set(err, SLM_E_INVALID, "too many messages (at most %d)",
                           SLM_TURN_MAX_MESSAGES);
    }
    return SLM_OK;
}

/* The system text at the head of `conv`, or NULL. */
static const char *head_system(const json_t *conv) {
    const json_t *first = json_array_get(conv, 0);
    return first && strcmp(role_of(first), "system") == 0
               ? json_string_value(json_object_get(first, "content"))
               : NULL;
}

/* Tools: the system message becomes the tool prompt. */
static int apply_tools(const struct slm_turn_req *r, const struct slm_tool_family *fam,
                       json_t *conv, struct slm_err *err) {
    const char *system = head_system(conv);
    struct slm_liquid_template *own = NULL;
    const struct slm_liquid_template *tp = r->tool_prompt;
    int rc = SLM_OK;
    if (!tp) {
        struct slm_liquid_params lp = slm_liquid_params_default();
        rc = slm_liquid_parse(fam->name, fam->template_src, strlen(fam->template_src), &lp, &own,
                              err);
        tp = own;
    }
    static const char *const choice[] = {"none", "auto", "required", "named"};
    struct slm_buf b = {0};
    slm_buf_init(&b, SLM_TURN_MAX_PROMPT);
    if (rc == SLM_OK) {
        rc = slm_tools_render(tp, r->tools, choice[r->tool_choice], r->tool_name, system, fam, &b,
                              err);
        if (rc != SLM_OK) {
            slm_err_prefix(err, "tool template");
            rc = rc == SLM_E_NOMEM ? rc : SLM_E_INVALID;
        }
    }
    if (rc == SLM_OK) {
        json_t *m = msg("system", b.ptr, b.len);
        rc = m ? SLM_OK : nomem(err);
        if (rc == SLM_OK && system) {
            json_array_set_new(conv, 0, m);
        } else if (rc == SLM_OK) {
            json_array_insert_new(conv, 0, m);
        }
    }
    slm_liquid_free(own);
    slm_buf_free(&b);
    return rc;
}

/* The last user turn goes through the TEMPLATE (its text replaced by
 * r->input first, when given). */
static int template_last_user(const struct slm_turn *t, const struct slm_turn_req *r, json_t *conv,
                              struct slm_buf *rendered, struct slm_err *err) {
    size_t n = json_array_size(conv);
    json_t *last = json_array_get(conv, n ? n - 1 : 0);
    if (!last || strcmp(role_of(last), "user") != 0) {
        return SLM_OK;
    }
    struct slm_str in =
        r->input ? slm_str_c(r->input) : slm_json_str(json_object_get(last, "content"));
    if (!t->tmpl) {
        if (rendered && slm_buf_append_str(rendered, in) != SLM_OK) {
            return too_large(err);
        }
        if (r->input) {
            json_object_set_new(last, "content", json_string(r->input));
        }
        return SLM_OK;
    }
    const char *system = head_system(conv);
    json_t *history = json_array();
    for (size_t i = system ? 1 : 0; history && i + 1 < n; i++) {
        json_array_append(history, json_array_get(conv, i));
    }
    struct slm_buf b = {0};
    slm_buf_init(&b, SLM_TURN_MAX_PROMPT);
    int rc = history ? render_input(t, r, in, system, history, &b, err) : nomem(err);
    if (rc == SLM_OK) {
        json_object_set_new(last, "content", json_stringn(b.ptr ? b.ptr : "", b.len));
    }
    if (rc == SLM_OK && rendered && slm_buf_append_str(rendered, slm_buf_str(&b)) != SLM_OK) {
        rc = too_large(err);
    }
    json_decref(history);
    slm_buf_free(&b);
    return rc;
}

int slm_turn_chat_format(const struct slm_model *model, const char *chat_template,
                         const json_t *messages, size_t n, bool add_assistant, struct slm_buf *out,
                         struct slm_err *err) {
    n = SLM_MIN(n, json_array_size(messages));
    struct slm_chat_msg *cm = calloc(n ? n : 1, sizeof(*cm));
    if (!cm) {
        return nomem(err);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(messages, i);
        cm[i].role = role_of(m);
        cm[i].content = json_string_value(json_object_get(m, "content"));
    }
    int rc = slm_chat_format(model, chat_template, cm, n, add_assistant, out, err);
    free(cm);
    return rc;
}

static int format_chat(const struct slm_model *model, const json_t *conv, struct slm_buf *out,
                       struct slm_err *err) {
    return slm_turn_chat_format(model, NULL, conv, json_array_size(conv), true, out, err);
}

/* ---------------------------------------------------------------- kinds */

static int chat_prompt(const struct slm_turn *t, const struct slm_model *model,
                       const struct slm_turn_req *r, struct slm_buf *out, struct slm_buf *rendered,
                       struct slm_err *err) {
    const struct slm_tool_family *fam = r->family;
    bool tools = slm_turn_uses_tools(r);
    if (!fam && tools) {
        struct slm_model_info info;
        slm_model_get_info(model, &info);
        fam = slm_tool_family_for(info.arch, slm_model_chat_template(model));
    }
    json_t *conv = json_array();
    int rc = conv ? conversation(t, r, tools ? fam : r->family, conv, err) : nomem(err);
    if (rc == SLM_OK) {
        rc = template_last_user(t, r, conv, rendered, err);
    }
    if (rc == SLM_OK && tools) {
        rc = apply_tools(r, fam, conv, err);
    }
    if (rc == SLM_OK) {
        rc = format_chat(model, conv, out, err);
    }
    json_decref(conv);
    return rc;
}

/* PROMPT: the TEMPLATE renders the whole prompt from the conversation. */
static int whole_prompt(const struct slm_turn *t, const struct slm_model *model,
                        const struct slm_turn_req *r, struct slm_buf *out, struct slm_buf *rendered,
                        struct slm_err *err) {
    if (!t->tmpl) {
        return chat_prompt(t, model, r, out, rendered, err);
    }
    const json_t *ms = r->messages;
    const char *system = NULL;
    struct slm_str input = SLM_STR_NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(ms, i, m) {
        if (strcmp(role_of(m), "user") == 0) {
            input = slm_json_str(json_object_get(m, "content"));
        } else if (strcmp(role_of(m), "system") == 0 && !system) {
            system = json_string_value(json_object_get(m, "content"));
        }
    }
    if (r->input) {
        input = slm_str_c(r->input);
    }
    int rc = render_input(t, r, input, system ? system : t->system, ms, out, err);
    if (rc == SLM_OK && rendered && slm_buf_append_str(rendered, slm_buf_str(out)) != SLM_OK) {
        rc = too_large(err);
    }
    return rc;
}

/* GENERATE: the TEMPLATE renders the user turn, then the chat template when
 * the model has one. */
static int generate_prompt(const struct slm_turn *t, const struct slm_model *model,
                           const struct slm_turn_req *r, struct slm_buf *out,
                           struct slm_buf *rendered, struct slm_err *err) {
    const char *system = r->system ? r->system : t->system;
    struct slm_buf turn = {0};
    slm_buf_init(&turn, SLM_TURN_MAX_PROMPT);
    int rc = render_input(t, r, r->prompt, system, t->manifest->messages, &turn, err);
    if (rc == SLM_OK && rendered && slm_buf_append_str(rendered, slm_buf_str(&turn)) != SLM_OK) {
        rc = too_large(err);
    }
    if (rc == SLM_OK && slm_model_chat_template(model)) {
        json_t *conv = json_array();
        if (system && system[0]) {
            json_array_append_new(conv, msg("system", system, strlen(system)));
        }
        json_array_extend(conv, t->manifest->messages);
        json_array_append_new(conv, msg("user", turn.ptr, turn.len));
        rc = format_chat(model, conv, out, err);
        json_decref(conv);
    } else if (rc == SLM_OK) {
        rc = slm_buf_append_str(out, slm_buf_str(&turn)) == SLM_OK ? SLM_OK : too_large(err);
    }
    slm_buf_free(&turn);
    return rc;
}

int slm_turn_prompt(const struct slm_turn *t, const struct slm_model *model,
                    const struct slm_turn_req *r, struct slm_buf *out, struct slm_buf *rendered,
                    struct slm_err *err) {
    switch (r->kind) {
    case SLM_TURN_CHAT: return chat_prompt(t, model, r, out, rendered, err);
    case SLM_TURN_PROMPT: return whole_prompt(t, model, r, out, rendered, err);
    case SLM_TURN_GENERATE: return generate_prompt(t, model, r, out, rendered, err);
    case SLM_TURN_COMPLETION: {
        int rc = render_input(t, r, r->prompt, t->system, t->manifest->messages, out, err);
        if (rc == SLM_OK && rendered && slm_buf_append_str(rendered, slm_buf_str(out)) != SLM_OK) {
            rc = too_large(err);
        }
        return rc;
    }
    case SLM_TURN_RAW:
        return slm_buf_append_str(out, r->prompt) == SLM_OK ? SLM_OK : too_large(err);
    }
    return slm_err_set(err, SLM_E_INVALID, "unknown kind of request");
}
