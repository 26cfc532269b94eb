/*
 * load.c - the flow file: the top-level keys (name, router, state, input,
 * tools, http_allow, start, nodes), state keys and their schemas, declared
 * tools, sub-flow files (depth cap, cycle detection), and freeing. Nodes are
 * parsed in node.c and the whole graph is checked in graph.c.
 *
 * Ownership: a struct slm_flow owns every string, schema, template, tool,
 * sub-flow and the router config it holds; slm_flow_free() releases them all.
 */
#define _XOPEN_SOURCE 700 /* realpath (XSI: every Unix slm builds on) */
#include "slm/flow.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/internal.h"
#include "slm/grammar.h"
#include "slm/json.h"
#include "slm/router.h"
#include "slm/yaml.h"

#define MAX_LABELS 4096
#define MAX_LIST 256 /* argv, env, input lists, http_allow */

static const char *const g_kind_names[SLM_FLOW_KIND_COUNT] = {
    "template", "generate", "classify", "check", "tool", "branch", "map", "interrupt", "flow",
};

const char *slm_flow_kind_name(enum slm_flow_kind kind) {
    return (unsigned)kind < SLM_FLOW_KIND_COUNT ? g_kind_names[kind] : "?";
}

struct slm_flow_params slm_flow_params_default(void) {
    return (struct slm_flow_params){.max_depth = 8, .max_nodes = 1000, .max_bytes = 1 << 20};
}

static void fill_params(struct slm_flow_params *p, const struct slm_flow_params *in) {
    *p = in ? *in : slm_flow_params_default();
    struct slm_flow_params d = slm_flow_params_default();
    p->max_depth = p->max_depth > 0 ? p->max_depth : d.max_depth;
    p->max_nodes = p->max_nodes ? p->max_nodes : d.max_nodes;
    p->max_bytes = p->max_bytes ? p->max_bytes : d.max_bytes;
}

/* ---------------------------------------------------------------- shared helpers */

/* State keys, node and tool names are what Liquid can name: identifiers. */
static bool is_ident(const char *s) {
    if (!s[0] || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) {
        return false;
    }
    for (const char *q = s; *q; q++) {
        bool ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                  (*q >= '0' && *q <= '9') || *q == '_' || *q == '-';
        if (!ok || q - s >= 64) {
            return false;
        }
    }
    return true;
}

void slm__flow_schema_free(struct slm_flow_schema *s) {
    json_decref(s->schema);
    free(s->gbnf);
    s->schema = NULL;
    s->gbnf = NULL;
}

int slm__flow_parse_schema(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                           const char *key, bool grammar, struct slm_flow_schema *out) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    json_t *schema = NULL;
    struct slm_err serr;
    int rc;
    if (json_is_string(val)) {
        char *file = slm_yaml_resolve_path(c->v.dir, json_string_value(val));
        rc = file ? slm_json_load_file(file, 0, &schema, &serr) : SLM_E_NOMEM;
        free(file);
        if (rc != SLM_OK) {
            return rc == SLM_E_NOMEM ? rc : slm_yaml_key_err(&c->v, obj, path, key, "%s", serr.msg);
        }
    } else if (json_is_object(val)) {
        schema = json_deep_copy(val);
        if (!schema) {
            return SLM_E_NOMEM;
        }
    } else {
        return slm_yaml_key_err(&c->v, obj, path, key,
                                "expected a JSON Schema (a mapping) or a schema file name");
    }
    /* a schema outside the grammar module's subset fails now, not mid-run */
    struct slm_buf g = {0};
    rc = slm_json_schema_to_gbnf(schema, &g, &serr);
    if (rc != SLM_OK) {
        slm_buf_free(&g);
        json_decref(schema);
        if (rc == SLM_E_NOMEM) {
            return rc;
        }
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, key);
        return slm_yaml_verr(&c->v, rc, obj, key, 0, p, "schema: %s", serr.msg);
    }
    slm__flow_schema_free(out);
    out->schema = schema;
    out->gbnf = grammar ? slm_buf_take(&g) : NULL;
    slm_buf_free(&g);
    if (grammar && !out->gbnf) {
        return SLM_E_NOMEM;
    }
    return SLM_OK;
}

static int name_err(struct slm__flow_ctx *c, const json_t *obj, const char *path, const char *key,
                    const char *what, const char *name, const char *const *names, size_t n) {
    const char *near = slm_closest_name(name, names, n, 2);
    if (near) {
        return slm_yaml_key_err(&c->v, obj, path, key, "unknown %s '%.60s' (did you mean '%s'?)",
                                what, name, near);
    }
    return slm_yaml_key_err(&c->v, obj, path, key, "unknown %s '%.60s'", what, name);
}

/* The key names for slm_closest_name(), a temporary array. */
static int key_names(const struct slm_flow *f, const char ***out) {
    *out = calloc(f->n_keys + 1, sizeof(**out));
    if (!*out) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < f->n_keys; i++) {
        (*out)[i] = f->keys[i].name;
    }
    return SLM_OK;
}

static int resolve_key(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                       const char *key, const char *name, size_t *out) {
    size_t k = slm_flow_key_index(c->flow, name);
    if (k != SLM_FLOW_NONE) {
        *out = k;
        return SLM_OK;
    }
    const char **names = NULL;
    int rc = key_names(c->flow, &names);
    if (rc == SLM_OK) {
        rc = name_err(c, obj, path, key, "state key", name, names, c->flow->n_keys);
    }
    free(names);
    return rc;
}

int slm__flow_get_key(struct slm__flow_ctx *c, const json_t *obj, const char *path, const char *key,
                      bool required, size_t *out) {
    char *name = NULL;
    int rc = slm_yaml_get_str(&c->v, obj, path, key, required, &name);
    if (rc == SLM_OK && name) {
        rc = resolve_key(c, obj, path, key, name, out);
    }
    free(name);
    return rc;
}

/* A list of non-empty strings at obj[key] (a lone string counts as a list of one). */
static int get_strings(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                       const char *key, char ***out, size_t *n) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, key);
    if (json_is_string(val) && json_string_length(val) > 0) {
        *out = calloc(1, sizeof(**out));
        if (!*out || !((*out)[0] = strdup(json_string_value(val)))) {
            return SLM_E_NOMEM;
        }
        *n = 1;
        return SLM_OK;
    }
    if (!json_is_array(val) || json_array_size(val) > MAX_LIST) {
        return slm_yaml_key_err(&c->v, obj, path, key, "expected a list of at most %d strings",
                                MAX_LIST);
    }
    *out = calloc(json_array_size(val) + 1, sizeof(**out));
    if (!*out) {
        return SLM_E_NOMEM;
    }
    size_t i;
    json_t *item;
    json_array_foreach(val, i, item) {
        if (!json_is_string(item) || json_string_length(item) == 0) {
            char ip[280];
            snprintf(ip, sizeof(ip), "%s[%zu]", p, i);
            return slm_yaml_verr(&c->v, SLM_E_INVALID, val, NULL, i, ip,
                                 "expected a non-empty string");
        }
        if (!((*out)[i] = strdup(json_string_value(item)))) {
            return SLM_E_NOMEM;
        }
        *n = i + 1;
    }
    return SLM_OK;
}

static void free_strings(char **s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(s[i]);
    }
    free(s);
}

int slm__flow_get_keys(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                       const char *key, size_t **out, size_t *n) {
    char **names = NULL;
    size_t count = 0;
    int rc = get_strings(c, obj, path, key, &names, &count);
    if (rc == SLM_OK && names) {
        *out = calloc(count + 1, sizeof(**out));
        rc = *out ? SLM_OK : SLM_E_NOMEM;
        for (size_t i = 0; rc == SLM_OK && i < count; i++) {
            rc = resolve_key(c, obj, path, key, names[i], &(*out)[i]);
        }
        *n = rc == SLM_OK ? count : 0;
    }
    free_strings(names, count);
    return rc;
}

int slm__flow_get_labels(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                         const char *key, char ***out, size_t *n) {
    const json_t *val = json_object_get(obj, key);
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    int rc = SLM_OK;
    if (json_is_array(val)) {
        if (json_array_size(val) > MAX_LABELS) {
            return slm_yaml_key_err(&c->v, obj, path, key, "more than %d labels", MAX_LABELS);
        }
        *out = calloc(json_array_size(val) + 1, sizeof(**out));
        size_t i;
        json_t *item;
        json_array_foreach(val, i, item) {
            if (!*out) {
                return SLM_E_NOMEM;
            }
            if (!json_is_string(item) || json_string_length(item) == 0) {
                return slm_yaml_key_err(&c->v, obj, path, key,
                                        "item %zu: expected a non-empty string", i);
            }
            if (!((*out)[i] = strdup(json_string_value(item)))) {
                return SLM_E_NOMEM;
            }
            *n = i + 1;
        }
    } else if (json_is_string(val)) {
        char *file = slm_yaml_resolve_path(c->v.dir, json_string_value(val));
        struct slm_buf b = {0};
        struct slm_err ferr;
        rc = file ? slm_file_read(file, (size_t)4 << 20, &b, &ferr) : SLM_E_NOMEM;
        if (rc != SLM_OK && rc != SLM_E_NOMEM) {
            char p[256];
            slm_yaml_subpath(p, sizeof(p), path, key);
            rc = slm_yaml_verr(&c->v, rc, obj, key, 0, p, "%s", ferr.msg);
        }
        free(file);
        struct slm_str rest = slm_buf_str(&b);
        size_t cap = 0;
        while (rc == SLM_OK && rest.len > 0) {
            size_t nl = slm_str_find_char(rest, '\n', 0);
            struct slm_str line = slm_str_trim(slm_str_sub(rest, 0, nl));
            rest = nl == SIZE_MAX ? SLM_STR("") : slm_str_sub(rest, nl + 1, SIZE_MAX);
            if (line.len == 0 || line.ptr[0] == '#') {
                continue;
            }
            if (*n >= MAX_LABELS) {
                rc = slm_yaml_key_err(&c->v, obj, path, key, "more than %d labels", MAX_LABELS);
                break;
            }
            if (*n + 1 >= cap) {
                cap = cap ? cap * 2 : 64;
                char **nl2 = realloc(*out, cap * sizeof(*nl2));
                if (!nl2) {
                    rc = SLM_E_NOMEM;
                    break;
                }
                *out = nl2;
            }
            if (!((*out)[*n] = slm_str_dup(line))) {
                rc = SLM_E_NOMEM;
                break;
            }
            (*n)++;
        }
        slm_buf_free(&b);
        if (rc != SLM_OK) {
            return rc;
        }
    } else {
        return slm_yaml_key_err(&c->v, obj, path, key,
                                "expected a list of labels or a file name (one label a line)");
    }
    if (*n == 0) {
        return slm_yaml_key_err(&c->v, obj, path, key, "expected at least one label");
    }
    for (size_t i = 0; i < *n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*out)[i], (*out)[j]) == 0) {
                return slm_yaml_key_err(&c->v, obj, path, key, "duplicate label '%.60s'",
                                        (*out)[i]);
            }
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- state and input */

static int parse_state(struct slm__flow_ctx *c, const json_t *root) {
    const json_t *state = json_object_get(root, "state");
    if (!state || json_is_null(state)) {
        return slm_yaml_key_err(&c->v, root, "", "state",
                                "required: the keys a run carries (each optionally a JSON Schema)");
    }
    if (!json_is_object(state) || json_object_size(state) == 0) {
        return slm_yaml_key_err(&c->v, root, "", "state", "expected a mapping of key -> schema");
    }
    struct slm_flow *f = c->flow;
    f->keys = calloc(json_object_size(state), sizeof(*f->keys));
    if (!f->keys) {
        return SLM_E_NOMEM;
    }
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)state, k, val) {
        struct slm_flow_key *key = &f->keys[f->n_keys];
        if (!is_ident(k) || strcmp(k, "end") == 0) {
            return slm_yaml_key_err(&c->v, state, "state", k,
                                    "a key is a name of letters, digits, _ and - (not 'end')");
        }
        if (!(key->name = strdup(k))) {
            return SLM_E_NOMEM;
        }
        f->n_keys++;
        int rc = slm__flow_parse_schema(c, state, "state", k, false, &key->schema);
        if (rc != SLM_OK) {
            return rc;
        }
        const json_t *def =
            key->schema.schema ? json_object_get(key->schema.schema, "default") : NULL;
        if (def) {
            struct slm_err serr;
            if (slm_json_schema_validate(key->schema.schema, def, &serr) != SLM_OK) {
                return slm_yaml_key_err(&c->v, state, "state", k,
                                        "default does not match the schema: %s", serr.msg);
            }
            key->default_value = json_incref((json_t *)def);
        }
    }
    size_t *input = NULL, n_input = 0;
    int rc = slm__flow_get_keys(c, root, "", "input", &input, &n_input);
    for (size_t i = 0; rc == SLM_OK && i < n_input; i++) {
        f->keys[input[i]].input = true;
    }
    free(input);
    return rc;
}

/* ---------------------------------------------------------------- tools */

/* The host[:port] of an http(s) URL into `out`; false when it is not one. */
static bool url_host(const char *url, char *out, size_t cap) {
    const char *rest = strncmp(url, "http://", 7) == 0    ? url + 7
                       : strncmp(url, "https://", 8) == 0 ? url + 8
                                                          : NULL;
    if (!rest) {
        return false;
    }
    size_t n = strcspn(rest, "/?#");
    if (n == 0 || n >= cap || memchr(rest, '@', n)) {
        return false; /* no credentials in a URL: they would end up in logs */
    }
    memcpy(out, rest, n);
    out[n] = '\0';
    return true;
}

static bool host_allowed(const struct slm_flow *f, const char *hostport) {
    size_t hn = strcspn(hostport, ":");
    for (size_t i = 0; i < f->n_http_allow; i++) {
        const char *a = f->http_allow[i];
        if (strcmp(a, hostport) == 0 ||
            (!strchr(a, ':') && strlen(a) == hn && strncmp(a, hostport, hn) == 0)) {
            return true;
        }
    }
    return false;
}

static int parse_tool(struct slm__flow_ctx *c, const json_t *tools, const char *name,
                      const json_t *obj, struct slm_flow_tool *t) {
    char path[256];
    slm_yaml_subpath(path, sizeof(path), "tools", name);
    static const char *const keys[] = {"command", "url", "env", "timeout", "description", NULL};
    int rc;
    if ((rc = slm_yaml_want_object(&c->v, tools, name, 0, path, obj)) != SLM_OK ||
        (rc = slm_yaml_check_keys(&c->v, obj, path, keys)) != SLM_OK) {
        return rc;
    }
    if (!is_ident(name)) {
        return slm_yaml_key_err(&c->v, tools, "tools", name,
                                "a tool name is letters, digits, _ and -");
    }
    if (!(t->name = strdup(name))) {
        return SLM_E_NOMEM;
    }
    t->timeout_s = 30;
    bool has_cmd = json_object_get(obj, "command") != NULL;
    bool has_url = json_object_get(obj, "url") != NULL;
    if (has_cmd == has_url) {
        return slm_yaml_key_err(&c->v, tools, "tools", name,
                                "give exactly one of command (a local program) or url (HTTP)");
    }
    if ((rc = slm_yaml_get_num(&c->v, obj, path, "timeout", 0.001, 86400, &t->timeout_s)) !=
            SLM_OK ||
        (rc = get_strings(c, obj, path, "env", &t->env, &t->n_env)) != SLM_OK) {
        return rc;
    }
    if (has_url) {
        t->kind = SLM_FLOW_TOOL_HTTP;
        if ((rc = slm_yaml_get_str(&c->v, obj, path, "url", true, &t->url)) != SLM_OK) {
            return rc;
        }
        char host[256];
        if (!url_host(t->url, host, sizeof(host))) {
            return slm_yaml_key_err(&c->v, obj, path, "url",
                                    "expected http(s)://host[:port]/path without credentials");
        }
        if (!host_allowed(c->flow, host)) {
            return slm_yaml_key_err(&c->v, obj, path, "url",
                                    "host '%.100s' is not on the http_allow list", host);
        }
        return SLM_OK;
    }
    t->kind = SLM_FLOW_TOOL_COMMAND;
    if (!json_is_array(json_object_get(obj, "command"))) {
        return slm_yaml_key_err(&c->v, obj, path, "command",
                                "expected a list: the program and its arguments (no shell)");
    }
    if ((rc = get_strings(c, obj, path, "command", &t->argv, &t->argc)) != SLM_OK) {
        return rc;
    }
    if (t->argc == 0) {
        return slm_yaml_key_err(&c->v, obj, path, "command", "expected the program to run");
    }
    if (strchr(t->argv[0], '/')) {
        /* a path is relative to the flow file, like every other path in it */
        char *abs = slm_yaml_resolve_path(c->v.dir, t->argv[0]);
        if (!abs) {
            return SLM_E_NOMEM;
        }
        free(t->argv[0]);
        t->argv[0] = abs;
        if (!slm_file_exists(abs)) {
            return slm_yaml_key_err(&c->v, obj, path, "command", "no such program: %.150s", abs);
        }
    }
    return SLM_OK;
}

static int parse_tools(struct slm__flow_ctx *c, const json_t *root) {
    struct slm_flow *f = c->flow;
    int rc = get_strings(c, root, "", "http_allow", &f->http_allow, &f->n_http_allow);
    if (rc != SLM_OK) {
        return rc;
    }
    const json_t *tools = json_object_get(root, "tools");
    if (!tools || json_is_null(tools)) {
        return SLM_OK;
    }
    if (!json_is_object(tools)) {
        return slm_yaml_key_err(&c->v, root, "", "tools", "expected a mapping of name -> tool");
    }
    f->tools = calloc(json_object_size(tools) + 1, sizeof(*f->tools));
    if (!f->tools) {
        return SLM_E_NOMEM;
    }
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)tools, k, val) {
        rc = parse_tool(c, tools, k, val, &f->tools[f->n_tools++]);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- sub-flows */

static int load_file(const char *path, const struct slm_flow_params *p,
                     const struct slm__flow_chain *chain, int depth, struct slm_flow **out,
                     struct slm_err *err);

int slm__flow_load_child(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                         const char *key, struct slm_flow **out) {
    char *file = NULL;
    int rc = slm_yaml_get_path(&c->v, obj, path, key, true, &file);
    if (rc != SLM_OK || !file) {
        free(file);
        return rc;
    }
    char real[PATH_MAX];
    if (!realpath(file, real)) {
        rc = slm_yaml_key_err(&c->v, obj, path, key, "cannot resolve %.150s", file);
        goto done;
    }
    for (const struct slm__flow_chain *up = c->chain; up; up = up->up) {
        if (strcmp(up->real, real) == 0) {
            rc = slm_yaml_key_err(&c->v, obj, path, key,
                                  "%.150s includes itself (a flow cannot call itself)", file);
            goto done;
        }
    }
    if (c->flow->depth + 1 > c->p.max_depth) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, key);
        rc = slm_yaml_verr(&c->v, SLM_E_LIMIT, obj, key, 0, p, "sub-flows nested deeper than %d",
                           c->p.max_depth);
        goto done;
    }
    struct slm_err cerr;
    slm_err_clear(&cerr);
    rc = load_file(file, &c->p, c->chain, c->flow->depth + 1, out, &cerr);
    if (rc != SLM_OK && rc != SLM_E_NOMEM) {
        /* the inner error already names its file and line; say who called it */
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, key);
        rc = slm_yaml_verr(&c->v, rc, obj, key, 0, p, "%s", cerr.msg);
    }
done:
    free(file);
    return rc;
}

/* ---------------------------------------------------------------- the file */

static int parse_router(struct slm__flow_ctx *c, const json_t *root) {
    char *file = NULL;
    int rc = slm_yaml_get_path(&c->v, root, "", "router", true, &file);
    if (rc != SLM_OK || !file) {
        free(file);
        return rc;
    }
    struct slm_err rerr;
    slm_err_clear(&rerr);
    rc = slm_router_config_load(file, &c->flow->router, &rerr);
    free(file);
    if (rc != SLM_OK && rc != SLM_E_NOMEM) {
        rc = slm_yaml_verr(&c->v, rc, root, "router", 0, "router", "%s", rerr.msg);
    }
    return rc;
}

static int parse_nodes(struct slm__flow_ctx *c, const json_t *root) {
    struct slm_flow *f = c->flow;
    const json_t *nodes = json_object_get(root, "nodes");
    if (!nodes || json_is_null(nodes)) {
        return slm_yaml_key_err(&c->v, root, "", "nodes", "required: the steps of the flow");
    }
    if (!json_is_object(nodes) || json_object_size(nodes) == 0) {
        return slm_yaml_key_err(&c->v, root, "", "nodes", "expected a mapping of name -> node");
    }
    if (json_object_size(nodes) > c->p.max_nodes) {
        return slm_yaml_verr(&c->v, SLM_E_LIMIT, root, "nodes", 0, "nodes", "more than %zu nodes",
                             c->p.max_nodes);
    }
    size_t n = json_object_size(nodes);
    c->node_names = calloc(n + 1, sizeof(*c->node_names));
    f->nodes = calloc(n, sizeof(*f->nodes));
    if (!c->node_names || !f->nodes) {
        return SLM_E_NOMEM;
    }
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)nodes, k, val) {
        if (!is_ident(k) || strcmp(k, "end") == 0) {
            return slm_yaml_key_err(&c->v, nodes, "nodes", k,
                                    "a node name is letters, digits, _ and - (not 'end')");
        }
        c->node_names[c->n_names++] = k;
    }
    size_t i = 0;
    json_object_foreach((json_t *)nodes, k, val) {
        f->n_nodes = i + 1;
        int rc = slm__flow_parse_node(c, nodes, i, val);
        if (rc != SLM_OK) {
            return rc;
        }
        i++;
    }
    char *start = NULL;
    int rc = slm_yaml_get_str(&c->v, root, "", "start", false, &start);
    if (rc == SLM_OK) {
        f->start = start ? slm_flow_node_index(f, start) : 0;
        if (f->start == SLM_FLOW_NONE) {
            rc = name_err(c, root, "", "start", "node", start, c->node_names, c->n_names);
        }
    }
    free(start);
    return rc == SLM_OK ? slm__flow_check_graph(c, nodes) : rc;
}

static int parse_root(struct slm__flow_ctx *c, const json_t *root) {
    static const char *const keys[] = {"name",  "description", "router", "state", "input",
                                       "tools", "http_allow",  "start",  "nodes", NULL};
    int rc;
    if (!json_is_object(root)) {
        return slm_err_set(c->v.err, SLM_E_INVALID, "%s:1: expected a mapping (state, nodes, ...)",
                           slm_yaml_name(c->v.doc));
    }
    struct slm_flow *f = c->flow;
    if ((rc = slm_yaml_check_keys(&c->v, root, "", keys)) != SLM_OK ||
        (rc = slm_yaml_get_str(&c->v, root, "", "name", false, &f->name)) != SLM_OK ||
        (rc = slm_yaml_get_str(&c->v, root, "", "description", false, &f->description)) != SLM_OK ||
        (rc = parse_router(c, root)) != SLM_OK || (rc = parse_state(c, root)) != SLM_OK ||
        (rc = parse_tools(c, root)) != SLM_OK || (rc = parse_nodes(c, root)) != SLM_OK) {
        return rc;
    }
    if (!f->name) {
        const char *base = strrchr(f->path, '/');
        base = base ? base + 1 : f->path;
        size_t n = strcspn(base, ".");
        f->name = slm_str_dup(slm_str_n(base, n ? n : strlen(base)));
        if (!f->name) {
            return SLM_E_NOMEM;
        }
    }
    return SLM_OK;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        return strdup(".");
    }
    return slm_str_dup(slm_str_n(path, slash == path ? 1 : (size_t)(slash - path)));
}

static int parse_text(const char *name, const char *text, size_t len, const char *dir,
                      const struct slm_flow_params *p, const struct slm__flow_chain *chain,
                      int depth, struct slm_flow **out, struct slm_err *err) {
    *out = NULL;
    struct slm_yaml_params yp = slm_yaml_params_default();
    yp.max_bytes = p->max_bytes;
    struct slm_yaml_doc *doc = NULL;
    int rc = slm_yaml_parse(name, text, len, &yp, &doc, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_flow *f = calloc(1, sizeof(*f));
    struct slm__flow_ctx c = {.p = *p, .flow = f, .chain = chain};
    if (!f || !(f->path = strdup(name)) || !(f->dir = dir ? strdup(dir) : dir_of(name))) {
        rc = SLM_E_NOMEM;
        goto fail;
    }
    f->depth = depth;
    c.v = (struct slm_yaml_check){.doc = doc, .dir = f->dir, .err = err};
    rc = parse_root(&c, slm_yaml_root(doc));
    if (rc != SLM_OK) {
        goto fail;
    }
    free(c.node_names);
    slm_yaml_free(doc);
    *out = f;
    return SLM_OK;
fail:
    if (rc == SLM_E_NOMEM) {
        slm_err_set(err, rc, "%s: out of memory", name);
    }
    free(c.node_names);
    slm_flow_free(f);
    slm_yaml_free(doc);
    return rc;
}

static int load_file(const char *path, const struct slm_flow_params *p,
                     const struct slm__flow_chain *chain, int depth, struct slm_flow **out,
                     struct slm_err *err) {
    *out = NULL;
    struct slm_buf text = {0};
    int rc = slm_file_read(path, p->max_bytes, &text, err);
    if (rc != SLM_OK) {
        return rc;
    }
    char real[PATH_MAX];
    struct slm__flow_chain self = {.real = realpath(path, real) ? real : path, .up = chain};
    rc = parse_text(path, text.ptr ? text.ptr : "", text.len, NULL, p, &self, depth, out, err);
    slm_buf_free(&text);
    return rc;
}

int slm_flow_load(const char *path, const struct slm_flow_params *params, struct slm_flow **out,
                  struct slm_err *err) {
    struct slm_flow_params p;
    fill_params(&p, params);
    struct slm_err local;
    return load_file(path, &p, NULL, 0, out, err ? err : &local);
}

int slm_flow_parse(const char *name, const char *text, size_t len, const char *dir,
                   const struct slm_flow_params *params, struct slm_flow **out,
                   struct slm_err *err) {
    struct slm_flow_params p;
    fill_params(&p, params);
    struct slm__flow_chain self = {.real = name ? name : "flow", .up = NULL};
    struct slm_err local;
    return parse_text(name ? name : "flow", text, len, dir, &p, &self, 0, out, err ? err : &local);
}

/* ---------------------------------------------------------------- lookups and free */

size_t slm_flow_node_index(const struct slm_flow *flow, const char *name) {
    for (size_t i = 0; i < flow->n_nodes; i++) {
        if (flow->nodes[i].name && strcmp(flow->nodes[i].name, name) == 0) {
            return i;
        }
    }
    return SLM_FLOW_NONE;
}

size_t slm_flow_key_index(const struct slm_flow *flow, const char *name) {
    for (size_t i = 0; i < flow->n_keys; i++) {
        if (strcmp(flow->keys[i].name, name) == 0) {
            return i;
        }
    }
    return SLM_FLOW_NONE;
}

void slm_flow_free(struct slm_flow *flow) {
    if (!flow) {
        return;
    }
    for (size_t i = 0; i < flow->n_nodes; i++) {
        slm__flow_node_free(&flow->nodes[i]);
    }
    free(flow->nodes);
    for (size_t i = 0; i < flow->n_keys; i++) {
        free(flow->keys[i].name);
        slm__flow_schema_free(&flow->keys[i].schema);
        json_decref(flow->keys[i].default_value);
    }
    free(flow->keys);
    for (size_t i = 0; i < flow->n_tools; i++) {
        struct slm_flow_tool *t = &flow->tools[i];
        free(t->name);
        free_strings(t->argv, t->argc);
        free_strings(t->env, t->n_env);
        free(t->url);
    }
    free(flow->tools);
    free_strings(flow->http_allow, flow->n_http_allow);
    slm_router_config_free(flow->router);
    free(flow->path);
    free(flow->dir);
    free(flow->name);
    free(flow->description);
    free(flow);
}
