/*
 * flow/internal.h - shared between the flow loader's files (load.c: the file,
 * state, tools, router; node.c: one node of each kind; graph.c: the passes
 * over the whole graph). Not part of the public API.
 */
#ifndef SLM_FLOW_INTERNAL_H
#define SLM_FLOW_INTERNAL_H

#include "slm/flow.h"
#include "slm/yaml.h"

/* The files being loaded, innermost first: a sub-flow that names a file on
 * this chain is a cycle. */
struct slm__flow_chain {
    const char *real; /* realpath of the file, or its name for in-memory text */
    const struct slm__flow_chain *up;
};

/* One file's load: the validation context and what the nodes may name. */
struct slm__flow_ctx {
    struct slm_yaml_check v;
    struct slm_flow_params p;
    struct slm_flow *flow;
    const char **node_names; /* the keys of `nodes:`, in order (borrowed from the doc) */
    size_t n_names;
    const struct slm__flow_chain *chain;
    const json_t *nodes; /* while a node is parsed: `nodes:` and its name, where */
    const char *node;    /* node-level errors point */
};

/* node.c: parses flow->nodes[i] from `obj` (at nodes.NAME); names resolve
 * through ctx->node_names, state keys and tools through ctx->flow. */
int slm__flow_parse_node(struct slm__flow_ctx *c, const json_t *nodes, size_t i, const json_t *obj);
void slm__flow_node_free(struct slm_flow_node *n);

/* load.c: helpers the node parser shares. */
int slm__flow_parse_schema(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                           const char *key, bool grammar, struct slm_flow_schema *out);
void slm__flow_schema_free(struct slm_flow_schema *s);
/* Loads a sub-flow named by obj[key] (relative to this file's folder). */
int slm__flow_load_child(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                         const char *key, struct slm_flow **out);
/* A state key named by obj[key] (a string): its index, or an error naming
 * the closest declared key. */
int slm__flow_get_key(struct slm__flow_ctx *c, const json_t *obj, const char *path, const char *key,
                      bool required, size_t *out);
/* A list of strings at obj[key] as state key indices (malloc'ed). */
int slm__flow_get_keys(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                       const char *key, size_t **out, size_t *n);
/* A list of labels (inline or a file, one a line) at obj[key]. */
int slm__flow_get_labels(struct slm__flow_ctx *c, const json_t *obj, const char *path,
                         const char *key, char ***out, size_t *n);

/* graph.c: the passes over the whole graph once every node is parsed. */
int slm__flow_check_graph(struct slm__flow_ctx *c, const json_t *nodes);

#endif /* SLM_FLOW_INTERNAL_H */
