/*
 * graph.c - the passes over a whole flow once its nodes are parsed: every
 * node is reachable from the start, every node has a path to an end, and
 * every cycle has a node bounded by max_iterations (strongly connected
 * components, Tarjan). Also the edge counts of slm_flow_stats().
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/internal.h"

/* A node's out-edges: next or its cases, a check's fail, on_error. Node
 * indices and SLM_FLOW_END; `out` holds n_cases + 3. Returns the count. */
static size_t out_edges(const struct slm_flow_node *n, size_t *out) {
    size_t k = 0;
    if (n->n_cases == 0) {
        out[k++] = n->next;
    }
    for (size_t i = 0; i < n->n_cases; i++) {
        out[k++] = n->cases[i].to;
    }
    if (n->fail != SLM_FLOW_NONE) {
        out[k++] = n->fail;
    }
    if (n->on_error != SLM_FLOW_NONE) {
        out[k++] = n->on_error;
    }
    return k;
}

void slm_flow_stats(const struct slm_flow *flow, struct slm_flow_stats *out) {
    memset(out, 0, sizeof(*out));
    out->nodes = flow->n_nodes;
    out->tools = flow->n_tools;
    out->keys = flow->n_keys;
    for (size_t i = 0; i < flow->n_nodes; i++) {
        const struct slm_flow_node *n = &flow->nodes[i];
        out->edges += (n->n_cases ? n->n_cases : 1) + (n->fail != SLM_FLOW_NONE) +
                      (n->on_error != SLM_FLOW_NONE);
        out->subflows += n->kind == SLM_FLOW_MAP || n->kind == SLM_FLOW_SUBFLOW;
    }
}

struct graph {
    const struct slm_flow *f;
    size_t **succ; /* per node, its out-edges */
    size_t *n_succ;
};

static int graph_init(struct graph *g, const struct slm_flow *f) {
    g->f = f;
    g->succ = calloc(f->n_nodes, sizeof(*g->succ));
    g->n_succ = calloc(f->n_nodes, sizeof(*g->n_succ));
    if (!g->succ || !g->n_succ) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        g->succ[i] = malloc((f->nodes[i].n_cases + 3) * sizeof(**g->succ));
        if (!g->succ[i]) {
            return SLM_E_NOMEM;
        }
        g->n_succ[i] = out_edges(&f->nodes[i], g->succ[i]);
    }
    return SLM_OK;
}

static void graph_free(struct graph *g) {
    for (size_t i = 0; g->succ && i < g->f->n_nodes; i++) {
        free(g->succ[i]);
    }
    free(g->succ);
    free(g->n_succ);
}

static int node_err(struct slm__flow_ctx *c, const json_t *nodes, size_t i, const char *fmt, ...)
    SLM_PRINTF(4, 5);

static int node_err(struct slm__flow_ctx *c, const json_t *nodes, size_t i, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char path[256];
    slm_yaml_subpath(path, sizeof(path), "nodes", c->flow->nodes[i].name);
    return slm_yaml_verr(&c->v, SLM_E_INVALID, nodes, c->flow->nodes[i].name, 0, path, "%s", msg);
}

/* Every node is reachable from the start (depth-first, explicit stack). */
static int check_reachable(struct slm__flow_ctx *c, const struct graph *g, const json_t *nodes) {
    size_t n = c->flow->n_nodes;
    bool *seen = calloc(n, sizeof(*seen));
    size_t *stack = malloc(n * sizeof(*stack));
    int rc = seen && stack ? SLM_OK : SLM_E_NOMEM;
    size_t top = 0;
    if (rc == SLM_OK) {
        seen[c->flow->start] = true;
        stack[top++] = c->flow->start;
    }
    while (top > 0) {
        size_t u = stack[--top];
        for (size_t j = 0; j < g->n_succ[u]; j++) {
            size_t w = g->succ[u][j];
            if (w < n && !seen[w]) {
                seen[w] = true;
                stack[top++] = w;
            }
        }
    }
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        if (!seen[i]) {
            rc = node_err(c, nodes, i, "unreachable: no edge leads here from the start node '%s'",
                          c->flow->nodes[c->flow->start].name);
        }
    }
    free(seen);
    free(stack);
    return rc;
}

/* Every node has a path to an end: fixpoint of "an edge leads to end or to
 * a node that has one" (n is small; n^2 worst case is fine at load). */
static int check_ends(struct slm__flow_ctx *c, const struct graph *g, const json_t *nodes) {
    size_t n = c->flow->n_nodes;
    bool *ends = calloc(n, sizeof(*ends));
    if (!ends) {
        return SLM_E_NOMEM;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; !ends[i] && j < g->n_succ[i]; j++) {
                size_t w = g->succ[i][j];
                if (w == SLM_FLOW_END || (w < n && ends[w])) {
                    ends[i] = true;
                    changed = true;
                }
            }
        }
    }
    int rc = SLM_OK;
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        if (!ends[i]) {
            rc = node_err(c, nodes, i,
                          "no path from here to end: the flow could never finish (give a loop an "
                          "edge to end or to a node that reaches it)");
        }
    }
    free(ends);
    return rc;
}

/* Tarjan's strongly connected components, recursive (nodes are capped). */
struct tarjan {
    const struct graph *g;
    size_t *index, *low, *stack, *comp;
    bool *on;
    size_t next_index, top, n_comp;
};

static void strongconnect(struct tarjan *t, size_t v) {
    t->index[v] = t->low[v] = t->next_index++;
    t->stack[t->top++] = v;
    t->on[v] = true;
    for (size_t j = 0; j < t->g->n_succ[v]; j++) {
        size_t w = t->g->succ[v][j];
        if (w >= t->g->f->n_nodes) {
            continue;
        }
        if (t->index[w] == SIZE_MAX) {
            strongconnect(t, w);
            t->low[v] = SLM_MIN(t->low[v], t->low[w]);
        } else if (t->on[w]) {
            t->low[v] = SLM_MIN(t->low[v], t->index[w]);
        }
    }
    if (t->low[v] == t->index[v]) {
        size_t w;
        do {
            w = t->stack[--t->top];
            t->on[w] = false;
            t->comp[w] = t->n_comp;
        } while (w != v);
        t->n_comp++;
    }
}

static bool self_loop(const struct graph *g, size_t v) {
    for (size_t j = 0; j < g->n_succ[v]; j++) {
        if (g->succ[v][j] == v) {
            return true;
        }
    }
    return false;
}

/* A cycle's members in file order, for the message. */
static void cycle_names(const struct tarjan *t, size_t comp, char *out, size_t cap) {
    size_t used = 0, first = SIZE_MAX;
    out[0] = '\0';
    for (size_t i = 0; i < t->g->f->n_nodes && used + 1 < cap; i++) {
        if (t->comp[i] != comp) {
            continue;
        }
        first = first == SIZE_MAX ? i : first;
        int w = snprintf(out + used, cap - used, "%s -> ", t->g->f->nodes[i].name);
        used += w > 0 ? (size_t)w : 0;
    }
    if (first != SIZE_MAX && used + 1 < cap) {
        snprintf(out + used, cap - used, "%s", t->g->f->nodes[first].name);
    }
}

static int check_loops(struct slm__flow_ctx *c, const struct graph *g, const json_t *nodes) {
    size_t n = c->flow->n_nodes;
    struct tarjan t = {.g = g};
    t.index = malloc(n * sizeof(size_t));
    t.low = malloc(n * sizeof(size_t));
    t.stack = malloc(n * sizeof(size_t));
    t.comp = malloc(n * sizeof(size_t));
    t.on = calloc(n, sizeof(bool));
    size_t *size = calloc(n, sizeof(size_t));
    bool *bounded = calloc(n, sizeof(bool));
    int rc =
        t.index && t.low && t.stack && t.comp && t.on && size && bounded ? SLM_OK : SLM_E_NOMEM;
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        t.index[i] = SIZE_MAX;
    }
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        if (t.index[i] == SIZE_MAX) {
            strongconnect(&t, i);
        }
    }
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        size[t.comp[i]]++;
        bounded[t.comp[i]] = bounded[t.comp[i]] || c->flow->nodes[i].max_iterations > 0;
    }
    for (size_t i = 0; rc == SLM_OK && i < n; i++) {
        size_t k = t.comp[i];
        if ((size[k] > 1 || self_loop(g, i)) && !bounded[k]) {
            char names[160];
            cycle_names(&t, k, names, sizeof(names));
            rc = node_err(c, nodes, i,
                          "a loop without a bound (%s): give one of its nodes max_iterations",
                          names);
        }
    }
    free(t.index);
    free(t.low);
    free(t.stack);
    free(t.comp);
    free(t.on);
    free(size);
    free(bounded);
    return rc;
}

int slm__flow_check_graph(struct slm__flow_ctx *c, const json_t *nodes) {
    struct graph g = {0};
    int rc = graph_init(&g, c->flow);
    if (rc == SLM_OK) {
        rc = check_reachable(c, &g, nodes);
    }
    if (rc == SLM_OK) {
        rc = check_ends(c, &g, nodes);
    }
    if (rc == SLM_OK) {
        rc = check_loops(c, &g, nodes);
    }
    graph_free(&g);
    return rc;
}
