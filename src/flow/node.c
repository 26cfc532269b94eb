/*
 * node.c - one node of a flow file: its kind, the fields of that kind, its
 * edges (next, conditional cases, a check's pass / fail, on_error) resolved
 * to node indices, retries, timeout and max_iterations. Liquid templates and
 * conditions are parsed here, once; schemas are compiled through load.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/internal.h"
#include "slm/grammar.h"
#include "slm/liquid.h"
#include "slm/options.h"
#include "slm/router.h"

/* Keys every node may have; a check has pass/fail instead of next, and no output. */
#define COMMON_KEYS "kind", "description", "on_error", "retries", "timeout", "max_iterations"

static const char *const g_kinds[SLM_FLOW_KIND_COUNT] = {
    "template", "generate", "classify", "check", "tool", "branch", "map", "interrupt", "flow",
};

static const char *const g_keys_template[] = {COMMON_KEYS, "next",     "output",
                                              "text",      "template", NULL};
static const char *const g_keys_generate[] = {COMMON_KEYS, "next",       "output",      "model",
                                              "route",     "upstream",   "prompt",      "template",
                                              "system",    "parameters", "json_schema", NULL};
static const char *const g_keys_classify[] = {COMMON_KEYS, "next",     "output", "model", "route",
                                              "prompt",    "template", "labels", NULL};
static const char *const g_keys_check[] = {
    COMMON_KEYS, "pass", "fail", "value", "json_schema", "regex", "labels", "condition", NULL};
static const char *const g_keys_tool[] = {COMMON_KEYS, "next", "output", "tool", "input", NULL};
static const char *const g_keys_branch[] = {COMMON_KEYS, "next", NULL};
static const char *const g_keys_map[] = {COMMON_KEYS, "next",        "output", "over", "as",
                                         "flow",      "concurrency", "result", NULL};
static const char *const g_keys_interrupt[] = {COMMON_KEYS, "next",        "output",
                                               "message",   "json_schema", NULL};
static const char *const g_keys_subflow[] = {COMMON_KEYS, "next",   "output", "flow",
                                             "input",     "result", NULL};

static const char *const *const g_kind_keys[SLM_FLOW_KIND_COUNT] = {
    g_keys_template, g_keys_generate, g_keys_classify,  g_keys_check,   g_keys_tool,
    g_keys_branch,   g_keys_map,      g_keys_interrupt, g_keys_subflow,
};

static bool has(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v);
}

/* An error about the node as a whole (a missing field), at the line of its name. */
static int node_err(struct slm__flow_ctx *c, const char *path, const char *fmt, ...)
    SLM_PRINTF(3, 4);

static int node_err(struct slm__flow_ctx *c, const char *path, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return slm_yaml_verr(&c->v, SLM_E_INVALID, c->nodes, c->node, 0, path, "%s", msg);
}

/* ---------------------------------------------------------------- Liquid */

static struct slm_liquid_params liquid_params(const struct slm__flow_ctx *c, bool inline_text) {
    struct slm_liquid_params lp = slm_liquid_params_default();
    /* inline text finds partials next to the flow; a file, next to itself */
    lp.root = inline_text ? c->flow->dir : NULL;
    return lp;
}

/* One of obj[inline_key] (Liquid source) or obj[file_key] (a file). */
static int parse_text(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                      const char *inline_key, const char *file_key, bool required,
                      struct slm_flow_text *out) {
    bool has_inline = has(obj, inline_key), has_file = file_key && has(obj, file_key);
    if (has_inline && has_file) {
        return slm_yaml_key_err(&c->v, obj, path, file_key, "give %s or %s, not both", inline_key,
                                file_key);
    }
    if (!has_inline && !has_file) {
        if (!required) {
            return SLM_OK;
        }
        return node_err(c, path, "required: %s (inline Liquid)%s%s", inline_key,
                        file_key ? " or " : "", file_key ? file_key : "");
    }
    const char *key = has_inline ? inline_key : file_key;
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, key);
    struct slm_err lerr;
    slm_err_clear(&lerr);
    struct slm_liquid_params lp = liquid_params(c, has_inline);
    int rc;
    if (has_inline) {
        const json_t *val = json_object_get(obj, key);
        if (!json_is_string(val)) {
            return slm_yaml_key_err(&c->v, obj, path, key, "expected Liquid text");
        }
        if (!(out->source = strdup(p))) {
            return SLM_E_NOMEM;
        }
        rc = slm_liquid_parse(key, json_string_value(val), json_string_length(val), &lp, &out->tpl,
                              &lerr);
    } else {
        if ((rc = slm_yaml_get_path(&c->v, obj, path, key, true, &out->source)) != SLM_OK) {
            return rc;
        }
        rc = slm_liquid_parse_file(out->source, &lp, &out->tpl, &lerr);
    }
    if (rc != SLM_OK && rc != SLM_E_NOMEM) {
        return slm_yaml_verr(&c->v, SLM_E_INVALID, obj, key, 0, p, "%s", lerr.msg);
    }
    return rc;
}

static void text_free(struct slm_flow_text *t) {
    free(t->source);
    slm_liquid_free(t->tpl);
}

/* A condition is the inside of `{% if ... %}`, over the state keys. */
static int parse_cond(struct slm__flow_ctx *c, const json_t *obj, const char *path, const char *key,
                      struct slm_flow_cond *out) {
    int rc = slm_yaml_get_str(&c->v, obj, path, key, true, &out->text);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_buf src = {0};
    struct slm_err lerr;
    slm_err_clear(&lerr);
    rc = slm_buf_printf(&src, "{%% if %s %%}1{%% endif %%}", out->text);
    struct slm_liquid_params lp = liquid_params(c, true);
    if (rc == SLM_OK) {
        rc = slm_liquid_parse(key, src.ptr, src.len, &lp, &out->tpl, &lerr);
    }
    slm_buf_free(&src);
    if (rc != SLM_OK && rc != SLM_E_NOMEM) {
        return slm_yaml_key_err(&c->v, obj, path, key, "not a Liquid condition: %s", lerr.msg);
    }
    return rc;
}

static void cond_free(struct slm_flow_cond *cd) {
    free(cd->text);
    slm_liquid_free(cd->tpl);
}

/* ---------------------------------------------------------------- edges */

/* A node name (or `end`) at obj[key] into a node index / SLM_FLOW_END. */
static int resolve_name(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                        const char *key, const char *name, size_t *out) {
    if (strcmp(name, "end") == 0) {
        *out = SLM_FLOW_END;
        return SLM_OK;
    }
    for (size_t i = 0; i < c->n_names; i++) {
        if (strcmp(c->node_names[i], name) == 0) {
            *out = i;
            return SLM_OK;
        }
    }
    const char *near = slm_closest_name(name, c->node_names, c->n_names, 2);
    if (!near && slm_edit_distance(name, "end") <= 2) {
        near = "end";
    }
    if (near) {
        return slm_yaml_key_err(&c->v, obj, path, key, "no node '%.60s' (did you mean '%s'?)", name,
                                near);
    }
    return slm_yaml_key_err(&c->v, obj, path, key, "no node '%.60s' (nor 'end')", name);
}

static int get_edge(struct slm__flow_ctx *c, const json_t *obj, const char *path, const char *key,
                    size_t *out) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    if (!json_is_string(val)) {
        return slm_yaml_key_err(&c->v, obj, path, key, "expected a node name (or end)");
    }
    return resolve_name(c, obj, path, key, json_string_value(val), out);
}

static int parse_case(struct slm__flow_ctx *c, const json_t *list, size_t i, const char *path,
                      bool last, struct slm_flow_case *cs) {
    static const char *const keys[] = {"if", "to", "label", NULL};
    const json_t *obj = json_array_get(list, i);
    char p[280];
    snprintf(p, sizeof(p), "%.250s[%zu]", path, i);
    int rc;
    if ((rc = slm_yaml_want_object(&c->v, list, NULL, i, p, obj)) != SLM_OK ||
        (rc = slm_yaml_check_keys(&c->v, obj, p, keys)) != SLM_OK ||
        (rc = slm_yaml_get_str(&c->v, obj, p, "label", false, &cs->label)) != SLM_OK) {
        return rc;
    }
    if (!has(obj, "to")) {
        return slm_yaml_verr(&c->v, SLM_E_INVALID, list, NULL, i, p,
                             "required: to (a node or end)");
    }
    if ((rc = get_edge(c, obj, p, "to", &cs->to)) != SLM_OK) {
        return rc;
    }
    if (has(obj, "if")) {
        if (last) {
            return slm_yaml_key_err(&c->v, obj, p, "if",
                                    "the last case is the otherwise: it takes no `if` (add a case "
                                    "`- to: NODE` after it)");
        }
        return parse_cond(c, obj, p, "if", &cs->cond);
    }
    if (!last) {
        return slm_yaml_verr(&c->v, SLM_E_INVALID, list, NULL, i, p,
                             "only the last case may leave out `if` (it is the otherwise)");
    }
    return SLM_OK;
}

/* `next`: a node name, or a list of {if, to, label} cases ending with an otherwise. */
static int parse_next(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                      struct slm_flow_node *n) {
    const json_t *val = json_object_get(obj, "next");
    n->next = SLM_FLOW_END;
    if (!val || json_is_null(val) || json_is_string(val)) {
        if (n->kind == SLM_FLOW_BRANCH) {
            return slm_yaml_key_err(&c->v, obj, path, "next",
                                    "a branch needs a list of cases: - if: CONDITION / to: NODE");
        }
        return get_edge(c, obj, path, "next", &n->next);
    }
    if (!json_is_array(val) || json_array_size(val) == 0 || json_array_size(val) > 256) {
        return slm_yaml_key_err(&c->v, obj, path, "next",
                                "expected a node name or a list of cases (if / to / label)");
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "next");
    n->cases = calloc(json_array_size(val), sizeof(*n->cases));
    if (!n->cases) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < json_array_size(val); i++) {
        n->n_cases = i + 1;
        int rc = parse_case(c, val, i, p, i + 1 == json_array_size(val), &n->cases[i]);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    if (n->n_cases < 2 && n->kind == SLM_FLOW_BRANCH) {
        return slm_yaml_key_err(&c->v, obj, path, "next",
                                "a branch needs at least one `if` case and the otherwise");
    }
    return SLM_OK;
}

static int parse_retries(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                         struct slm_flow_retry *r) {
    r->backoff_s = 1;
    r->backoff_max_s = 30;
    const json_t *val = json_object_get(obj, "retries");
    if (!val || json_is_null(val) || json_is_integer(val)) {
        return slm_yaml_get_int(&c->v, obj, path, "retries", 0, 100, &r->max);
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "retries");
    static const char *const keys[] = {"max", "backoff", "backoff_max", NULL};
    int rc;
    if (!json_is_object(val)) {
        return slm_yaml_key_err(&c->v, obj, path, "retries",
                                "expected a count, or a mapping of max, backoff, backoff_max");
    }
    if ((rc = slm_yaml_check_keys(&c->v, val, p, keys)) != SLM_OK ||
        (rc = slm_yaml_get_int(&c->v, val, p, "max", 0, 100, &r->max)) != SLM_OK ||
        (rc = slm_yaml_get_num(&c->v, val, p, "backoff", 0, 3600, &r->backoff_s)) != SLM_OK ||
        (rc = slm_yaml_get_num(&c->v, val, p, "backoff_max", 0, 3600, &r->backoff_max_s)) !=
            SLM_OK) {
        return rc;
    }
    if (r->backoff_max_s < r->backoff_s) {
        return slm_yaml_key_err(&c->v, val, p, "backoff_max", "is less than backoff");
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- targets */

static int parse_target(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                        bool upstream_ok, struct slm_flow_target *t) {
    static const char *const kinds[] = {"model", "route", "upstream"};
    const char *key = NULL;
    int given = 0;
    for (size_t i = 0; i < (upstream_ok ? 3u : 2u); i++) {
        if (has(obj, kinds[i])) {
            key = kinds[i];
            t->kind = (enum slm_flow_target_kind)i;
            given++;
        }
    }
    if (given != 1) {
        return node_err(c, path, "give exactly one of model (a local model)%s",
                        upstream_ok ? ", route (the router's) or upstream (a cloud pool)"
                                    : " or route (a label route of the router)");
    }
    int rc = slm_yaml_get_str(&c->v, obj, path, key, true, &t->name);
    if (rc != SLM_OK || t->kind == SLM_FLOW_TARGET_MODEL) {
        return rc;
    }
    const struct slm_router_config *r = c->flow->router;
    if (!r) {
        return slm_yaml_key_err(&c->v, obj, path, key,
                                "names the router's %s, but the flow has no `router:` file", key);
    }
    size_t n = t->kind == SLM_FLOW_TARGET_ROUTE ? r->n_routes : r->n_pools;
    const char **names = calloc(n + 1, sizeof(*names));
    if (!names) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = t->kind == SLM_FLOW_TARGET_ROUTE ? r->routes[i].name : r->pools[i].name;
        if (strcmp(names[i], t->name) == 0) {
            t->index = i;
            free(names);
            return SLM_OK;
        }
    }
    const char *near = slm_closest_name(t->name, names, n, 2);
    if (near) {
        rc = slm_yaml_key_err(&c->v, obj, path, key,
                              "the router has no %s '%.60s' (did you mean "
                              "'%s'?)",
                              key, t->name, near);
    } else {
        rc = slm_yaml_key_err(&c->v, obj, path, key, "the router has no %s '%.60s'", key, t->name);
    }
    free(names);
    return rc;
}

static int parse_parameters(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                            json_t **out) {
    if (!(*out = json_object())) {
        return SLM_E_NOMEM;
    }
    const json_t *params = json_object_get(obj, "parameters");
    if (!params || json_is_null(params)) {
        return SLM_OK;
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "parameters");
    int rc = slm_yaml_want_object(&c->v, obj, "parameters", 0, p, params);
    const char *k;
    json_t *pv;
    json_object_foreach((json_t *)params, k, pv) {
        if (rc != SLM_OK) {
            break;
        }
        /* the same option table and ranges as the CLI, the Modelfile and router.yaml */
        struct slm_options o;
        slm_options_init(&o);
        struct slm_err oerr;
        slm_err_clear(&oerr);
        rc = slm_options_set_json(&o, k, pv, &oerr);
        slm_options_free(&o);
        if (rc != SLM_OK) {
            rc = slm_yaml_key_err(&c->v, params, p, k, "%s", oerr.msg);
        }
    }
    if (rc == SLM_OK && json_object_update(*out, (json_t *)params) != 0) {
        rc = SLM_E_NOMEM;
    }
    return rc;
}

/* ---------------------------------------------------------------- kinds */

static int parse_generate(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                          struct slm_flow_generate *g) {
    int rc;
    if ((rc = parse_target(c, obj, path, true, &g->target)) != SLM_OK ||
        (rc = parse_text(c, obj, path, "prompt", "template", true, &g->prompt)) != SLM_OK ||
        (rc = parse_text(c, obj, path, "system", NULL, false, &g->system)) != SLM_OK ||
        (rc = parse_parameters(c, obj, path, &g->parameters)) != SLM_OK) {
        return rc;
    }
    return slm__flow_parse_schema(c, obj, path, "json_schema", true, &g->schema);
}

static int parse_classify(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                          struct slm_flow_classify *k) {
    int rc;
    if ((rc = parse_target(c, obj, path, false, &k->target)) != SLM_OK ||
        (rc = parse_text(c, obj, path, "prompt", "template", false, &k->prompt)) != SLM_OK ||
        (rc = slm__flow_get_labels(c, obj, path, "labels", &k->labels, &k->n_labels)) != SLM_OK) {
        return rc;
    }
    if (k->target.kind == SLM_FLOW_TARGET_MODEL) {
        if (!k->labels) {
            return node_err(c, path, "required: labels (a list, or a file with one label a line)");
        }
        if (!k->prompt.tpl) {
            return node_err(c, path,
                            "required: prompt or template (what the labels are scored after)");
        }
        return SLM_OK;
    }
    const struct slm_router_config *r = c->flow->router;
    const struct slm_router_local *t = &r->locals[r->routes[k->target.index].local];
    if (k->labels) {
        return slm_yaml_key_err(&c->v, obj, path, "labels",
                                "the route's local target '%s' has the labels; leave this out",
                                t->name);
    }
    if (t->n_labels == 0) {
        return slm_yaml_key_err(&c->v, obj, path, "route",
                                "route '%s' has no labels (its local target '%s' generates)",
                                k->target.name, t->name);
    }
    return SLM_OK;
}

static int regex_schema(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                        struct slm_flow_check *k) {
    int rc = slm_yaml_get_str(&c->v, obj, path, "regex", true, &k->regex);
    if (rc != SLM_OK) {
        return rc;
    }
    /* a regex check is the grammar module's `pattern`: one regex dialect in slm */
    k->schema.schema = json_pack("{s:s, s:s}", "type", "string", "pattern", k->regex);
    json_t *empty = json_string("");
    if (!k->schema.schema || !empty) {
        json_decref(empty);
        return SLM_E_NOMEM;
    }
    struct slm_err serr;
    slm_err_clear(&serr);
    rc = slm_json_schema_validate(k->schema.schema, empty, &serr);
    json_decref(empty);
    /* "" may well not match; anything else wrong is the pattern itself */
    if (rc == SLM_OK || rc == SLM_E_NOMEM || strstr(serr.msg, "does not match the pattern")) {
        return rc == SLM_E_NOMEM ? rc : SLM_OK;
    }
    return slm_yaml_key_err(&c->v, obj, path, "regex", "not a usable pattern: %s", serr.msg);
}

static int parse_check(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                       struct slm_flow_node *n) {
    struct slm_flow_check *k = &n->u.check;
    static const char *const kinds[] = {"json_schema", "regex", "labels", "condition"};
    int given = 0;
    for (size_t i = 0; i < SLM_ARRAY_LEN(kinds); i++) {
        if (has(obj, kinds[i])) {
            k->kind = (enum slm_flow_check_kind)i;
            given++;
        }
    }
    if (given != 1) {
        return node_err(c, path, "give exactly one of json_schema, regex, labels or condition");
    }
    int rc;
    k->value = SLM_FLOW_NONE;
    n->next = SLM_FLOW_END;
    n->fail = SLM_FLOW_NONE;
    if ((rc = get_edge(c, obj, path, "pass", &n->next)) != SLM_OK ||
        (rc = get_edge(c, obj, path, "fail", &n->fail)) != SLM_OK) {
        return rc;
    }
    if (k->kind == SLM_FLOW_CHECK_CONDITION) {
        if (has(obj, "value")) {
            return slm_yaml_key_err(&c->v, obj, path, "value",
                                    "a condition reads the state itself; leave this out");
        }
        return parse_cond(c, obj, path, "condition", &k->condition);
    }
    if ((rc = slm__flow_get_key(c, obj, path, "value", true, &k->value)) != SLM_OK) {
        return rc;
    }
    switch (k->kind) {
    case SLM_FLOW_CHECK_SCHEMA:
        return slm__flow_parse_schema(c, obj, path, "json_schema", false, &k->schema);
    case SLM_FLOW_CHECK_REGEX: return regex_schema(c, obj, path, k);
    default: return slm__flow_get_labels(c, obj, path, "labels", &k->labels, &k->n_labels);
    }
}

static int parse_tool(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                      struct slm_flow_tool_node *t) {
    char *name = NULL;
    int rc = slm_yaml_get_str(&c->v, obj, path, "tool", true, &name);
    if (rc != SLM_OK) {
        return rc;
    }
    const struct slm_flow *f = c->flow;
    t->tool = SLM_FLOW_NONE;
    for (size_t i = 0; i < f->n_tools; i++) {
        if (strcmp(f->tools[i].name, name) == 0) {
            t->tool = i;
        }
    }
    if (t->tool == SLM_FLOW_NONE) {
        const char **names = calloc(f->n_tools + 1, sizeof(*names));
        for (size_t i = 0; names && i < f->n_tools; i++) {
            names[i] = f->tools[i].name;
        }
        const char *near = names ? slm_closest_name(name, names, f->n_tools, 2) : NULL;
        rc = slm_yaml_key_err(&c->v, obj, path, "tool",
                              "tool '%.60s' is not declared under tools:%s%s%s", name,
                              near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        free(names);
        free(name);
        return rc;
    }
    free(name);
    return slm__flow_get_keys(c, obj, path, "input", &t->input, &t->n_input);
}

/* The sub-flow's input keys that have no default must come from somewhere. */
static int check_child_inputs(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                              const char *key, const struct slm_flow *child, const char *as,
                              const size_t *input, size_t n_input) {
    for (size_t i = 0; i < child->n_keys; i++) {
        const struct slm_flow_key *ck = &child->keys[i];
        if (!ck->input || ck->default_value || (as && strcmp(ck->name, as) == 0)) {
            continue;
        }
        bool given = false;
        if (input) {
            for (size_t j = 0; j < n_input; j++) {
                given = given || strcmp(c->flow->keys[input[j]].name, ck->name) == 0;
            }
        } else {
            given = slm_flow_key_index(c->flow, ck->name) != SLM_FLOW_NONE;
        }
        if (!given) {
            return slm_yaml_key_err(&c->v, obj, path, key,
                                    "%s needs input '%s', which this flow does not %s", child->name,
                                    ck->name, input ? "pass" : "have in its state");
        }
    }
    return SLM_OK;
}

/* Every key passed must be one of the sub-flow's input keys. */
static int check_passed(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                        const struct slm_flow *child, const size_t *input, size_t n_input) {
    for (size_t j = 0; j < n_input; j++) {
        const char *name = c->flow->keys[input[j]].name;
        size_t k = slm_flow_key_index(child, name);
        if (k == SLM_FLOW_NONE || !child->keys[k].input) {
            return slm_yaml_key_err(&c->v, obj, path, "input", "%s has no input key '%s'",
                                    child->name, name);
        }
    }
    return SLM_OK;
}

static int check_result(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                        const struct slm_flow *child, char **result) {
    int rc = slm_yaml_get_str(&c->v, obj, path, "result", false, result);
    if (rc == SLM_OK && *result && slm_flow_key_index(child, *result) == SLM_FLOW_NONE) {
        return slm_yaml_key_err(&c->v, obj, path, "result", "%s has no state key '%.60s'",
                                child->name, *result);
    }
    return rc;
}

static int parse_map(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                     struct slm_flow_map *m) {
    int rc;
    m->concurrency = 4;
    if ((rc = slm__flow_get_key(c, obj, path, "over", true, &m->over)) != SLM_OK ||
        (rc = slm_yaml_get_int(&c->v, obj, path, "concurrency", 1, 256, &m->concurrency)) !=
            SLM_OK ||
        (rc = slm_yaml_get_str(&c->v, obj, path, "as", false, &m->as)) != SLM_OK) {
        return rc;
    }
    if (!m->as && !(m->as = strdup("item"))) {
        return SLM_E_NOMEM;
    }
    const json_t *type = c->flow->keys[m->over].schema.schema
                             ? json_object_get(c->flow->keys[m->over].schema.schema, "type")
                             : NULL;
    if (json_is_string(type) && strcmp(json_string_value(type), "array") != 0) {
        return slm_yaml_key_err(&c->v, obj, path, "over",
                                "state key '%s' holds a %s, not a list (its schema says so)",
                                c->flow->keys[m->over].name, json_string_value(type));
    }
    if (!has(obj, "flow")) {
        return node_err(c, path, "required: flow (the file run for each element)");
    }
    if ((rc = slm__flow_load_child(c, obj, path, "flow", &m->flow)) != SLM_OK) {
        return rc;
    }
    size_t k = slm_flow_key_index(m->flow, m->as);
    if (k == SLM_FLOW_NONE || !m->flow->keys[k].input) {
        return slm_yaml_key_err(&c->v, obj, path, has(obj, "as") ? "as" : "flow",
                                "%s has no input key '%s' to take each element", m->flow->name,
                                m->as);
    }
    if ((rc = check_child_inputs(c, obj, path, "flow", m->flow, m->as, NULL, 0)) != SLM_OK) {
        return rc;
    }
    return check_result(c, obj, path, m->flow, &m->result);
}

static int parse_subflow(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                         struct slm_flow_subflow *s) {
    int rc;
    if (!has(obj, "flow")) {
        return node_err(c, path, "required: flow (the file to call)");
    }
    if ((rc = slm__flow_get_keys(c, obj, path, "input", &s->input, &s->n_input)) != SLM_OK ||
        (rc = slm__flow_load_child(c, obj, path, "flow", &s->flow)) != SLM_OK ||
        (rc = check_child_inputs(c, obj, path, "flow", s->flow, NULL, s->input, s->n_input)) !=
            SLM_OK ||
        (rc = check_passed(c, obj, path, s->flow, s->input, s->n_input)) != SLM_OK) {
        return rc;
    }
    return check_result(c, obj, path, s->flow, &s->result);
}

static int parse_kind(struct slm__flow_ctx *c, const char *name, const json_t *obj,
                      enum slm_flow_kind *out) {
    char path[256];
    slm_yaml_subpath(path, sizeof(path), "nodes", name);
    const json_t *kind = json_object_get(obj, "kind");
    if (!kind || json_is_null(kind)) {
        return node_err(c, path,
                        "required: kind (template, generate, classify, check, tool, branch, map, "
                        "interrupt or flow)");
    }
    const char *k = json_is_string(kind) ? json_string_value(kind) : "";
    for (int i = 0; i < SLM_FLOW_KIND_COUNT; i++) {
        if (strcmp(k, g_kinds[i]) == 0) {
            *out = (enum slm_flow_kind)i;
            return SLM_OK;
        }
    }
    const char *near = slm_closest_name(k, g_kinds, SLM_FLOW_KIND_COUNT, 2);
    if (near) {
        return slm_yaml_key_err(&c->v, obj, path, "kind",
                                "unknown kind '%.60s' (did you mean "
                                "'%s'?)",
                                k, near);
    }
    return slm_yaml_key_err(&c->v, obj, path, "kind",
                            "unknown kind '%.60s' (expected template, generate, classify, check, "
                            "tool, branch, map, interrupt or flow)",
                            k);
}

static int parse_body(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                      struct slm_flow_node *n) {
    switch (n->kind) {
    case SLM_FLOW_TEMPLATE:
        return parse_text(c, obj, path, "text", "template", true, &n->u.template_text);
    case SLM_FLOW_GENERATE: return parse_generate(c, obj, path, &n->u.generate);
    case SLM_FLOW_CLASSIFY: return parse_classify(c, obj, path, &n->u.classify);
    case SLM_FLOW_CHECK: return parse_check(c, obj, path, n);
    case SLM_FLOW_TOOL: return parse_tool(c, obj, path, &n->u.tool);
    case SLM_FLOW_BRANCH: return SLM_OK;
    case SLM_FLOW_MAP: return parse_map(c, obj, path, &n->u.map);
    case SLM_FLOW_INTERRUPT: {
        int rc = parse_text(c, obj, path, "message", NULL, false, &n->u.interrupt.message);
        return rc != SLM_OK ? rc
                            : slm__flow_parse_schema(c, obj, path, "json_schema", false,
                                                     &n->u.interrupt.schema);
    }
    case SLM_FLOW_SUBFLOW: return parse_subflow(c, obj, path, &n->u.subflow);
    default: return SLM_E_INVALID;
    }
}

int slm__flow_parse_node(struct slm__flow_ctx *c, const json_t *nodes, size_t i,
                         const json_t *obj) {
    struct slm_flow_node *n = &c->flow->nodes[i];
    const char *name = c->node_names[i];
    char path[256];
    slm_yaml_subpath(path, sizeof(path), "nodes", name);
    n->output = SLM_FLOW_NONE;
    n->next = SLM_FLOW_END;
    n->fail = SLM_FLOW_NONE;
    n->on_error = SLM_FLOW_NONE;
    n->line = slm_yaml_pos_key(c->v.doc, nodes, name).line;
    c->nodes = nodes;
    c->node = name;
    if (!(n->name = strdup(name))) {
        return SLM_E_NOMEM;
    }
    int rc;
    if ((rc = slm_yaml_want_object(&c->v, nodes, name, 0, path, obj)) != SLM_OK ||
        (rc = parse_kind(c, name, obj, &n->kind)) != SLM_OK ||
        (rc = slm_yaml_check_keys(&c->v, obj, path, g_kind_keys[n->kind])) != SLM_OK ||
        (rc = slm_yaml_get_str(&c->v, obj, path, "description", false, &n->description)) !=
            SLM_OK ||
        (rc = parse_retries(c, obj, path, &n->retry)) != SLM_OK ||
        (rc = slm_yaml_get_num(&c->v, obj, path, "timeout", 0.001, 86400, &n->timeout_s)) !=
            SLM_OK ||
        (rc = slm_yaml_get_int(&c->v, obj, path, "max_iterations", 1, 1000000,
                               &n->max_iterations)) != SLM_OK ||
        (rc = get_edge(c, obj, path, "on_error", &n->on_error)) != SLM_OK) {
        return rc;
    }
    if (n->kind != SLM_FLOW_CHECK && (rc = parse_next(c, obj, path, n)) != SLM_OK) {
        return rc;
    }
    if (n->kind != SLM_FLOW_CHECK && n->kind != SLM_FLOW_BRANCH) {
        if (!has(obj, "output")) {
            char p[256];
            slm_yaml_subpath(p, sizeof(p), path, "output");
            return node_err(c, p, "required: the state key this node writes");
        }
        if ((rc = slm__flow_get_key(c, obj, path, "output", true, &n->output)) != SLM_OK) {
            return rc;
        }
    }
    return parse_body(c, obj, path, n);
}

static void free_labels(char **l, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(l[i]);
    }
    free(l);
}

void slm__flow_node_free(struct slm_flow_node *n) {
    free(n->name);
    free(n->description);
    for (size_t i = 0; i < n->n_cases; i++) {
        cond_free(&n->cases[i].cond);
        free(n->cases[i].label);
    }
    free(n->cases);
    switch (n->kind) {
    case SLM_FLOW_TEMPLATE: text_free(&n->u.template_text); break;
    case SLM_FLOW_GENERATE:
        free(n->u.generate.target.name);
        text_free(&n->u.generate.prompt);
        text_free(&n->u.generate.system);
        json_decref(n->u.generate.parameters);
        slm__flow_schema_free(&n->u.generate.schema);
        break;
    case SLM_FLOW_CLASSIFY:
        free(n->u.classify.target.name);
        text_free(&n->u.classify.prompt);
        free_labels(n->u.classify.labels, n->u.classify.n_labels);
        break;
    case SLM_FLOW_CHECK:
        slm__flow_schema_free(&n->u.check.schema);
        free(n->u.check.regex);
        free_labels(n->u.check.labels, n->u.check.n_labels);
        cond_free(&n->u.check.condition);
        break;
    case SLM_FLOW_TOOL: free(n->u.tool.input); break;
    case SLM_FLOW_MAP:
        free(n->u.map.as);
        free(n->u.map.result);
        slm_flow_free(n->u.map.flow);
        break;
    case SLM_FLOW_INTERRUPT:
        text_free(&n->u.interrupt.message);
        slm__flow_schema_free(&n->u.interrupt.schema);
        break;
    case SLM_FLOW_SUBFLOW:
        free(n->u.subflow.input);
        free(n->u.subflow.result);
        slm_flow_free(n->u.subflow.flow);
        break;
    default: break;
    }
}
