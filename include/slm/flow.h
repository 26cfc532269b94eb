/*
 * slm/flow.h - workflows as graphs: the flow file (YAML or JSON, docs/flows.md)
 * loaded into an immutable graph definition, validated at load, and drawn as
 * a Mermaid or Graphviz diagram.
 *
 * A loaded flow is everything an executor needs without going back to the
 * text: edges are node indices (SLM_FLOW_END ends the run), Liquid templates
 * and conditions are parsed, JSON Schemas are checked and their grammars
 * made, tools are resolved, sub-flows (`flow` and `map` nodes) are loaded
 * recursively, and the router config a node names is loaded. Loading never
 * runs a model, a tool or a network call.
 *
 * Validation (every error reads "file:line: key.path: message", with a "did
 * you mean" where a name is close to a known one): unknown keys, missing and
 * mistyped fields, unknown node kinds, edges to unknown nodes, tools and
 * state keys used but not declared, Liquid that does not parse, JSON Schemas
 * outside the grammar module's subset, HTTP tools whose host is not on the
 * file's `http_allow` list, nodes unreachable from the start, nodes with no
 * path to an end, and cycles without a `max_iterations` bound on one of their
 * nodes. A sub-flow is resolved against the folder of the file that names it,
 * nesting is capped (SLM_E_LIMIT) and a file that includes itself, directly or
 * not, is refused.
 *
 * Not here yet: running a flow (executor, checkpoints, `slm flow run`); the
 * definitions are shaped for it.
 *
 * Thread safety: a loaded flow is immutable; any number of threads may read
 * it (and render its templates) at once. Load and free are not synchronised.
 */
#ifndef SLM_FLOW_H
#define SLM_FLOW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"

struct slm_liquid_template;
struct slm_router_config;

/* Edge targets besides a node index. */
#define SLM_FLOW_END ((size_t)-1) /* the run ends (LangGraph's END) */
#define SLM_FLOW_NONE                                                                              \
    ((size_t)-2) /* no edge: for on_error and a check's fail, the error stands                     \
                  */

enum slm_flow_kind {
    SLM_FLOW_TEMPLATE = 0, /* render a Liquid template into a state key */
    SLM_FLOW_GENERATE,     /* a local model, a router route or an upstream pool */
    SLM_FLOW_CLASSIFY,     /* score a label set: {label, prob} into a state key */
    SLM_FLOW_CHECK,        /* JSON Schema, regex, label set or condition: pass / fail */
    SLM_FLOW_TOOL,         /* a declared local command or HTTP endpoint */
    SLM_FLOW_BRANCH,       /* conditions over state choose the next node */
    SLM_FLOW_MAP,          /* a sub-flow for each element of a list */
    SLM_FLOW_INTERRUPT,    /* wait for a person's input */
    SLM_FLOW_SUBFLOW,      /* another flow file as one step */
    SLM_FLOW_KIND_COUNT,
};

/* The kind's name as written in the file ("generate"). */
const char *slm_flow_kind_name(enum slm_flow_kind kind);

/* A Liquid template from inline text or from a file (`template:`). */
struct slm_flow_text {
    char *source;                    /* the file (absolute) or "nodes.X.prompt" for inline text */
    struct slm_liquid_template *tpl; /* parsed; NULL when the field was absent */
};

/* A Liquid condition: `{% if COND %}` over the state, parsed at load. */
struct slm_flow_cond {
    char *text;                      /* as written */
    struct slm_liquid_template *tpl; /* renders "1" when true */
};

/* One case of a conditional edge: the first case whose condition holds is
 * taken; a case without a condition (always the last) is the otherwise. */
struct slm_flow_case {
    struct slm_flow_cond cond; /* cond.tpl NULL: otherwise */
    char *label;               /* shown on the diagram, or NULL (the condition is) */
    size_t to;                 /* node index or SLM_FLOW_END */
};

struct slm_flow_retry {
    int64_t max;          /* retries after the first attempt; 0 = none */
    double backoff_s;     /* first wait, doubled each retry, with full jitter */
    double backoff_max_s; /* cap of one wait */
};

/* A JSON Schema, checked against the grammar module's subset at load. */
struct slm_flow_schema {
    json_t *schema; /* owned; NULL when none */
    char *gbnf;     /* its grammar (for generate's structured output), or NULL */
};

enum slm_flow_target_kind {
    SLM_FLOW_TARGET_MODEL = 0, /* a store name, alias or GGUF path: the local model alone */
    SLM_FLOW_TARGET_ROUTE,     /* a route of the flow's router: local first, escalates */
    SLM_FLOW_TARGET_UPSTREAM,  /* an upstream pool of the flow's router: the cloud directly */
};

/* What a generate or classify node asks. */
struct slm_flow_target {
    enum slm_flow_target_kind kind;
    char *name;   /* model reference, route or pool name */
    size_t index; /* route: into router->routes; upstream: into router->pools */
};

struct slm_flow_generate {
    struct slm_flow_target target;
    struct slm_flow_text prompt;   /* `prompt:` inline or `template:` file; renders the prompt */
    struct slm_flow_text system;   /* optional system prompt */
    json_t *parameters;            /* Ollama-named options (validated), never NULL */
    struct slm_flow_schema schema; /* `json_schema:` structured output: state gets parsed JSON */
};

struct slm_flow_classify {
    struct slm_flow_target target; /* model or route */
    struct slm_flow_text prompt;   /* renders what the labels are scored after */
    char **labels;                 /* NULL with a route: the route's local target's labels */
    size_t n_labels;
};

enum slm_flow_check_kind {
    SLM_FLOW_CHECK_SCHEMA = 0, /* the value validates against a JSON Schema */
    SLM_FLOW_CHECK_REGEX,      /* the value (a string) matches a PCRE2 pattern */
    SLM_FLOW_CHECK_LABELS,     /* the value (a string) is one of a label set */
    SLM_FLOW_CHECK_CONDITION,  /* a Liquid condition over the state holds */
};

struct slm_flow_check {
    enum slm_flow_check_kind kind;
    size_t value; /* state key checked (`value:`); SLM_FLOW_NONE for a condition */
    struct slm_flow_schema schema;
    char *regex; /* compiled once at load to prove it compiles */
    char **labels;
    size_t n_labels;
    struct slm_flow_cond condition;
};

enum slm_flow_tool_kind {
    SLM_FLOW_TOOL_COMMAND = 0, /* argv, input JSON on stdin, output JSON on stdout */
    SLM_FLOW_TOOL_HTTP,        /* POST of the input JSON, JSON reply */
};

/* A tool, declared at the top of the file (never built from state). */
struct slm_flow_tool {
    char *name;
    enum slm_flow_tool_kind kind;
    char **argv; /* command: argv[0] absolute when it names a path, else found in PATH */
    size_t argc;
    char *url;  /* http: http(s)://host[:port]/path, host on the file's http_allow */
    char **env; /* environment variables passed through (all others are cleared) */
    size_t n_env;
    double timeout_s; /* default 30 */
};

struct slm_flow_tool_node {
    size_t tool;   /* index into flow->tools */
    size_t *input; /* state keys sent as a JSON object; NULL = the whole state */
    size_t n_input;
};

struct slm_flow;

/* map: the sub-flow runs once per element of `over`, given as its input key `as`. */
struct slm_flow_map {
    size_t over;         /* state key holding a list */
    char *as;            /* the sub-flow's input key that gets the element ("item") */
    int64_t concurrency; /* elements in flight at once (default 4) */
    struct slm_flow *flow;
    char *result; /* the sub-flow state key gathered, or NULL: its whole state */
};

/* flow: another flow file as one step. */
struct slm_flow_subflow {
    struct slm_flow *flow;
    size_t *input; /* parent state keys passed as the sub-flow's input (same names) */
    size_t n_input;
    char *result; /* the sub-flow state key written to `output`, or NULL: its whole state */
};

struct slm_flow_interrupt {
    struct slm_flow_text message;  /* shown to the person, or tpl NULL */
    struct slm_flow_schema schema; /* their answer must validate, or schema NULL */
};

struct slm_flow_node {
    char *name;
    enum slm_flow_kind kind;
    char *description; /* or NULL */
    int line;          /* where the node is written */
    size_t output;     /* state key written, or SLM_FLOW_NONE */
    /* Where the run goes next: `next` when n_cases is 0, else the first case
     * that holds. For a check, `next` is its `pass:` edge and `fail` its
     * `fail:` edge (SLM_FLOW_NONE: a failed check is an error). */
    size_t next;
    struct slm_flow_case *cases;
    size_t n_cases;
    size_t fail;
    size_t on_error; /* node taken when the node fails after its retries, or SLM_FLOW_NONE */
    struct slm_flow_retry retry;
    double timeout_s;       /* 0 = none */
    int64_t max_iterations; /* runs of this node in one run; 0 = unbounded */
    union {
        struct slm_flow_text template_text; /* SLM_FLOW_TEMPLATE */
        struct slm_flow_generate generate;
        struct slm_flow_classify classify;
        struct slm_flow_check check;
        struct slm_flow_tool_node tool;
        struct slm_flow_map map;
        struct slm_flow_interrupt interrupt;
        struct slm_flow_subflow subflow;
    } u;
};

/* A state key: what a run carries from node to node. */
struct slm_flow_key {
    char *name;
    struct slm_flow_schema schema; /* values written to the key must validate, or NULL */
    json_t *default_value;         /* the schema's `default`, or NULL */
    bool input;                    /* listed in `input:`: the run's input fills it */
};

struct slm_flow {
    char *path; /* the file (as given) */
    char *dir;  /* its folder: relative paths resolved against it */
    char *name; /* `name:`, else the file name without extension */
    char *description;
    struct slm_flow_key *keys;
    size_t n_keys;
    struct slm_flow_tool *tools;
    size_t n_tools;
    char **http_allow; /* hosts ("host" or "host:port") HTTP tools may call */
    size_t n_http_allow;
    struct slm_flow_node *nodes; /* in file order */
    size_t n_nodes;
    size_t start;                     /* node index */
    struct slm_router_config *router; /* `router:`, or NULL when no node needs one */
    int depth;                        /* 0 for the top flow, 1 for its sub-flows, ... */
};

struct slm_flow_params {
    int max_depth;    /* sub-flow nesting; 0 = 8 */
    size_t max_nodes; /* nodes in one file; 0 = 1,000 */
    size_t max_bytes; /* one flow file; 0 = 1 MiB */
};

struct slm_flow_params slm_flow_params_default(void);

/*
 * Loads and validates the flow file at `path` (YAML or JSON) and everything it
 * names: templates, schema files, label files, tools, the router config and
 * sub-flows. `params` may be NULL. On success one slm_flow_free() is owed; on
 * failure nothing is owed and `err` says where ("triage.yaml:14:
 * nodes.extract.kind: unknown kind 'extrct' (did you mean 'extract'?)").
 * Returns SLM_OK, SLM_E_INVALID, SLM_E_NOT_FOUND (the file or a file it
 * names), SLM_E_UNSUPPORTED (a schema keyword outside the subset), SLM_E_LIMIT
 * (sub-flow nesting, nodes), SLM_E_TOO_LARGE, SLM_E_IO, SLM_E_NOMEM.
 */
int slm_flow_load(const char *path, const struct slm_flow_params *params, struct slm_flow **out,
                  struct slm_err *err);

/* As slm_flow_load() for `len` bytes already in memory, named `name` in errors;
 * relative paths resolve against `dir` (NULL = the folder of `name`). */
int slm_flow_parse(const char *name, const char *text, size_t len, const char *dir,
                   const struct slm_flow_params *params, struct slm_flow **out,
                   struct slm_err *err);

/* Frees a flow and its sub-flows; NULL is a no-op. */
void slm_flow_free(struct slm_flow *flow);

/* The index of the node or state key named `name`, or SLM_FLOW_NONE. */
size_t slm_flow_node_index(const struct slm_flow *flow, const char *name);
size_t slm_flow_key_index(const struct slm_flow *flow, const char *name);

/* Counts for `slm flow check`: edges are every next, case, pass, fail and
 * on_error arrow, to a node or to the end. */
struct slm_flow_stats {
    size_t nodes, edges, tools, keys, subflows;
};
void slm_flow_stats(const struct slm_flow *flow, struct slm_flow_stats *out);

enum slm_flow_format {
    SLM_FLOW_MERMAID = 0, /* `flowchart TD`, renders on GitHub */
    SLM_FLOW_DOT,         /* Graphviz: `dot -Tsvg` */
};

/*
 * Appends the diagram of `flow` to `out`: a start and an end marker, one
 * shape per node kind, conditional edges labelled with their label or
 * condition, on_error and a check's fail edges dashed. Sub-flows are drawn as
 * one node. Returns SLM_OK, SLM_E_TOO_LARGE (past out->max) or SLM_E_NOMEM.
 */
int slm_flow_diagram(const struct slm_flow *flow, enum slm_flow_format format, struct slm_buf *out);

#endif /* SLM_FLOW_H */
