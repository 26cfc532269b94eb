/*
 * diagram.c - a loaded flow drawn as Mermaid (`flowchart TD`, renders on
 * GitHub) or Graphviz DOT: start and end markers, one shape per node kind,
 * conditional edges labelled with their label or condition, on_error and a
 * check's fail edges dashed. Node ids are the node names (n<index> where a
 * name would read as a keyword); labels are escaped.
 */
#include <stdio.h>
#include <string.h>

#include "slm/flow.h"

#define LABEL_MAX 60 /* longer conditions are cut with "..." on the diagram */

/* Mermaid open/close brackets per kind. */
static const char *const g_mermaid_shape[SLM_FLOW_KIND_COUNT][2] = {
    [SLM_FLOW_TEMPLATE] = {"[/", "/]"}, [SLM_FLOW_GENERATE] = {"(", ")"},
    [SLM_FLOW_CLASSIFY] = {"([", "])"}, [SLM_FLOW_CHECK] = {"{{", "}}"},
    [SLM_FLOW_TOOL] = {"[[", "]]"},     [SLM_FLOW_BRANCH] = {"{", "}"},
    [SLM_FLOW_MAP] = {"[\\", "\\]"},    [SLM_FLOW_INTERRUPT] = {">", "]"},
    [SLM_FLOW_SUBFLOW] = {"[(", ")]"},
};

/* Graphviz shape (and style) per kind. */
static const char *const g_dot_shape[SLM_FLOW_KIND_COUNT] = {
    [SLM_FLOW_TEMPLATE] = "shape=parallelogram",
    [SLM_FLOW_GENERATE] = "shape=box, style=rounded",
    [SLM_FLOW_CLASSIFY] = "shape=ellipse",
    [SLM_FLOW_CHECK] = "shape=hexagon",
    [SLM_FLOW_TOOL] = "shape=component",
    [SLM_FLOW_BRANCH] = "shape=diamond",
    [SLM_FLOW_MAP] = "shape=box3d",
    [SLM_FLOW_INTERRUPT] = "shape=house",
    [SLM_FLOW_SUBFLOW] = "shape=folder",
};

struct emit {
    const struct slm_flow *f;
    enum slm_flow_format fmt;
    struct slm_buf *out;
    int rc;
};

static void put(struct emit *e, const char *s) {
    if (e->rc == SLM_OK) {
        e->rc = slm_buf_puts(e->out, s);
    }
}

/* A label, escaped for the format, cut at LABEL_MAX bytes (on a UTF-8 boundary). */
static void put_label(struct emit *e, const char *s) {
    size_t n = strlen(s);
    size_t cut = n > LABEL_MAX ? slm_utf8_complete_len(s, LABEL_MAX) : n;
    for (size_t i = 0; i < cut && e->rc == SLM_OK; i++) {
        char ch = s[i];
        if (e->fmt == SLM_FLOW_DOT) {
            if (ch == '"' || ch == '\\') {
                e->rc = slm_buf_putc(e->out, '\\');
            }
            e->rc = e->rc == SLM_OK ? slm_buf_putc(e->out, ch == '\n' ? ' ' : ch) : e->rc;
        } else if (ch == '"') {
            put(e, "#quot;");
        } else if (ch == '<' || ch == '>' || ch == '#') {
            /* entity codes: Mermaid's HTML labels would read < and > as markup */
            put(e, ch == '<' ? "#lt;" : ch == '>' ? "#gt;" : "#35;");
        } else if (ch == '\n' || ch == '\r') {
            put(e, " ");
        } else {
            e->rc = slm_buf_putc(e->out, ch);
        }
    }
    if (cut < n) {
        put(e, "...");
    }
}

/* Node ids are the node names where both languages read them as plain ids;
 * names that are keywords (Mermaid's `end`, `graph`, ...), hold a dash or
 * start with "__" (the start / end markers) become n<index>. */
static bool plain_id(const char *name) {
    static const char *const keywords[] = {
        "end",  "graph",     "subgraph",  "flowchart", "style", "class", "classdef", "click",
        "call", "linkstyle", "direction", "default",   "node",  "edge",  "digraph",  "strict"};
    if (name[0] == '_' && name[1] == '_') {
        return false;
    }
    for (const char *q = name; *q; q++) {
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '_')) {
            return false;
        }
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(keywords); i++) {
        if (slm_str_eq_nocase(slm_str_c(name), slm_str_c(keywords[i]))) {
            return false;
        }
    }
    return true;
}

static void put_id(struct emit *e, size_t node) {
    if (e->rc != SLM_OK) {
        return;
    }
    if (node == SLM_FLOW_END) {
        e->rc = slm_buf_puts(e->out, "__end__");
    } else if (plain_id(e->f->nodes[node].name)) {
        e->rc = slm_buf_puts(e->out, e->f->nodes[node].name);
    } else {
        e->rc = slm_buf_printf(e->out, "n%zu", node);
    }
}

static void put_edge(struct emit *e, size_t from, size_t to, const char *label, bool dashed) {
    put(e, "    ");
    if (from == SLM_FLOW_NONE) {
        put(e, "__start__");
    } else {
        put_id(e, from);
    }
    if (e->fmt == SLM_FLOW_MERMAID) {
        put(e, dashed ? " -.->" : " -->");
        if (label) {
            put(e, "|\"");
            put_label(e, label);
            put(e, "\"|");
        }
        put(e, " ");
        put_id(e, to);
        put(e, "\n");
        return;
    }
    put(e, " -> ");
    put_id(e, to);
    if (label || dashed) {
        put(e, " [");
        if (label) {
            put(e, "label=\"");
            put_label(e, label);
            put(e, "\"");
        }
        put(e, label && dashed ? ", " : "");
        put(e, dashed ? "style=dashed" : "");
        put(e, "]");
    }
    put(e, ";\n");
}

static void put_node(struct emit *e, size_t i) {
    const struct slm_flow_node *n = &e->f->nodes[i];
    put(e, "    ");
    put_id(e, i);
    if (e->fmt == SLM_FLOW_MERMAID) {
        put(e, g_mermaid_shape[n->kind][0]);
        put(e, "\"");
        put_label(e, n->name);
        put(e, "<br/>(");
        put(e, slm_flow_kind_name(n->kind));
        put(e, ")\"");
        put(e, g_mermaid_shape[n->kind][1]);
        put(e, "\n");
        return;
    }
    put(e, " [label=\"");
    put_label(e, n->name);
    put(e, "\\n(");
    put(e, slm_flow_kind_name(n->kind));
    put(e, ")\", ");
    put(e, g_dot_shape[n->kind]);
    put(e, "];\n");
}

static void put_edges(struct emit *e, size_t i) {
    const struct slm_flow_node *n = &e->f->nodes[i];
    if (n->n_cases == 0) {
        put_edge(e, i, n->next, n->kind == SLM_FLOW_CHECK ? "pass" : NULL, false);
    }
    for (size_t k = 0; k < n->n_cases; k++) {
        const struct slm_flow_case *cs = &n->cases[k];
        const char *label = cs->label ? cs->label : cs->cond.text ? cs->cond.text : "otherwise";
        put_edge(e, i, cs->to, label, false);
    }
    if (n->fail != SLM_FLOW_NONE) {
        put_edge(e, i, n->fail, "fail", true);
    }
    if (n->on_error != SLM_FLOW_NONE) {
        put_edge(e, i, n->on_error, "on_error", true);
    }
}

int slm_flow_diagram(const struct slm_flow *flow, enum slm_flow_format format,
                     struct slm_buf *out) {
    struct emit e = {.f = flow, .fmt = format, .out = out, .rc = SLM_OK};
    size_t len0 = out->len;
    if (format == SLM_FLOW_MERMAID) {
        put(&e, "flowchart TD\n    __start__((start))\n    __end__(((end)))\n");
    } else {
        put(&e, "digraph \"");
        put_label(&e, flow->name);
        put(&e, "\" {\n    rankdir=TB;\n    node [fontname=\"Helvetica\"];\n"
                "    edge [fontname=\"Helvetica\", fontsize=10];\n"
                "    __start__ [label=\"start\", shape=circle];\n"
                "    __end__ [label=\"end\", shape=doublecircle];\n");
    }
    for (size_t i = 0; i < flow->n_nodes; i++) {
        put_node(&e, i);
    }
    put_edge(&e, SLM_FLOW_NONE, flow->start, NULL, false);
    for (size_t i = 0; i < flow->n_nodes; i++) {
        put_edges(&e, i);
    }
    if (format == SLM_FLOW_DOT) {
        put(&e, "}\n");
    }
    if (e.rc != SLM_OK) {
        out->len = len0;
        if (out->ptr) {
            out->ptr[len0] = '\0';
        }
    }
    return e.rc;
}
