/*
 * fuzz_flow_load.c - libFuzzer harness for the flow loader (slm_flow_parse on
 * in-memory YAML, files resolved against a folder that does not exist).
 * Invariants: any input is a valid flow or an error whose message names the
 * file; a loaded flow's edges, start, outputs, tools and state keys are in
 * range, only a last case is an otherwise, every cycle has a bounded node
 * (checked again here by a walk), and both diagrams render.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/flow.h"

static void check_edge(const struct slm_flow *f, size_t to, bool none_ok) {
    if (!(to < f->n_nodes || to == SLM_FLOW_END || (none_ok && to == SLM_FLOW_NONE))) {
        abort();
    }
}

/* From every node, a walk that never re-enters a node without max_iterations
 * twice must end within n_nodes steps along `next`-only edges: an unbounded
 * cycle would revisit. Here simply: a node on a cycle of plain next edges
 * (no cases) needs a bounded node on that cycle. */
static void check_plain_cycles(const struct slm_flow *f) {
    for (size_t s = 0; s < f->n_nodes; s++) {
        size_t at = s;
        bool bounded = false;
        for (size_t step = 0; step <= f->n_nodes; step++) {
            const struct slm_flow_node *n = &f->nodes[at];
            bounded = bounded || n->max_iterations > 0;
            if (n->n_cases || n->next >= f->n_nodes) {
                break;
            }
            at = n->next;
            if (at == s && !bounded && f->nodes[at].max_iterations == 0) {
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct slm_flow *f = NULL;
    struct slm_err err;
    memset(&err, 0, sizeof(err));
    int rc = slm_flow_parse("fuzz.yaml", (const char *)data, size, "/nonexistent-slm-fuzz", NULL,
                            &f, &err);
    if (rc != SLM_OK) {
        if (f || err.msg[0] == '\0' || (rc == SLM_E_INVALID && !strstr(err.msg, "fuzz.yaml"))) {
            abort();
        }
        return 0;
    }
    if (f->n_nodes == 0 || f->start >= f->n_nodes || f->n_keys == 0) {
        abort();
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct slm_flow_node *n = &f->nodes[i];
        if ((unsigned)n->kind >= SLM_FLOW_KIND_COUNT || !n->name) {
            abort();
        }
        check_edge(f, n->next, false);
        check_edge(f, n->fail, true);
        check_edge(f, n->on_error, true);
        for (size_t k = 0; k < n->n_cases; k++) {
            check_edge(f, n->cases[k].to, false);
            if ((n->cases[k].cond.tpl == NULL) != (k + 1 == n->n_cases)) {
                abort();
            }
        }
        if (n->output != SLM_FLOW_NONE && n->output >= f->n_keys) {
            abort();
        }
        if (n->kind == SLM_FLOW_TOOL && n->u.tool.tool >= f->n_tools) {
            abort();
        }
    }
    check_plain_cycles(f);
    for (int fmt = SLM_FLOW_MERMAID; fmt <= SLM_FLOW_DOT; fmt++) {
        struct slm_buf b;
        slm_buf_init(&b, (size_t)16 << 20);
        if (slm_flow_diagram(f, (enum slm_flow_format)fmt, &b) != SLM_OK || b.len == 0) {
            abort();
        }
        slm_buf_free(&b);
    }
    slm_flow_free(f);
    return 0;
}
