/*
 * cli/cmd_flow.c - `slm flow check FLOW` (validate a flow file and what it
 * names, without running anything) and `slm flow graph FLOW --format
 * mermaid|dot` (draw it). The format is in docs/flows.md.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/flow.h"

#define CMD "flow"

static void usage(FILE *f) {
    fprintf(f, "Usage: slm flow check FLOW.yaml\n"
               "       slm flow graph FLOW.yaml [--format mermaid|dot] [-o FILE]\n"
               "\n"
               "A flow is a workflow as a graph of steps in one YAML (or JSON) file: state, tools\n"
               "and nodes (template, generate, classify, check, tool, branch, map, interrupt,\n"
               "flow) joined by edges. The format: docs/flows.md.\n"
               "\n"
               "  check   validate the file and everything it names (templates, schemas, tools,\n"
               "          the router config, sub-flows) without running anything; prints a\n"
               "          one-line summary\n"
               "  graph   draw the flow: Mermaid (renders on GitHub) or Graphviz DOT\n"
               "          (`slm flow graph f.yaml --format dot | dot -Tsvg > f.svg`)\n"
               "\n"
               "Flags:\n"
               "  --format mermaid|dot   diagram language for graph (default mermaid)\n"
               "  -o, --output FILE      write the diagram to FILE instead of stdout\n"
               "\n"
               "Exit codes: 0 ok, 1 invalid flow (the message names file, line and key),\n"
               "2 bad usage, 3 file not found.\n");
}

static int load(const char *file, struct slm_flow **out) {
    struct slm_err err;
    slm_err_clear(&err);
    int rc = slm_flow_load(file, NULL, out, &err);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail(CMD, rc, &err);
}

static int check(const char *file) {
    struct slm_flow *flow = NULL;
    int ex = load(file, &flow);
    if (ex != SLM_EXIT_OK) {
        return ex;
    }
    struct slm_flow_stats st;
    slm_flow_stats(flow, &st);
    printf("%s: ok: %zu node%s, %zu edge%s, %zu tool%s, %zu state key%s, %zu sub-flow%s\n", file,
           st.nodes, st.nodes == 1 ? "" : "s", st.edges, st.edges == 1 ? "" : "s", st.tools,
           st.tools == 1 ? "" : "s", st.keys, st.keys == 1 ? "" : "s", st.subflows,
           st.subflows == 1 ? "" : "s");
    slm_flow_free(flow);
    return SLM_EXIT_OK;
}

static int graph(const char *file, enum slm_flow_format fmt, const char *output) {
    struct slm_flow *flow = NULL;
    int ex = load(file, &flow);
    if (ex != SLM_EXIT_OK) {
        return ex;
    }
    struct slm_buf b;
    slm_buf_init(&b, (size_t)64 << 20);
    struct slm_err err;
    slm_err_clear(&err);
    int rc = slm_flow_diagram(flow, fmt, &b);
    slm_flow_free(flow);
    if (rc == SLM_OK && output) {
        rc = slm_file_write_atomic(output, b.ptr ? b.ptr : "", b.len, &err);
    } else if (rc == SLM_OK && b.len > 0 && fwrite(b.ptr, 1, b.len, stdout) != b.len) {
        rc = slm_err_set(&err, SLM_E_IO, "cannot write the diagram to stdout");
    }
    slm_buf_free(&b);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail(CMD, rc, &err);
}

static int run(int argc, char **argv) {
    if (argc < 2 || slm_cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SLM_EXIT_USAGE : SLM_EXIT_OK;
    }
    const char *sub = argv[1];
    bool is_graph = strcmp(sub, "graph") == 0;
    if (!is_graph && strcmp(sub, "check") != 0) {
        slm_cli_error(CMD,
                      "unknown subcommand '%s' (expected check or graph; run, resume and "
                      "the rest are not built yet)",
                      sub);
        return SLM_EXIT_USAGE;
    }
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum slm_flow_format fmt = SLM_FLOW_MERMAID;
    const char *output = NULL;
    bool fmt_given = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt_given = true;
            if (strcmp(optarg, "mermaid") == 0) {
                fmt = SLM_FLOW_MERMAID;
            } else if (strcmp(optarg, "dot") == 0) {
                fmt = SLM_FLOW_DOT;
            } else {
                slm_cli_error(CMD, "--format expects mermaid or dot, got '%s'", optarg);
                return SLM_EXIT_USAGE;
            }
            break;
        case 'o': output = optarg; break;
        case 'h': usage(stdout); return SLM_EXIT_OK;
        default:
            slm_cli_error(CMD, "unknown flag or missing value (see slm flow --help)");
            return SLM_EXIT_USAGE;
        }
    }
    int first = optind + 1;
    if (first >= argc) {
        slm_cli_error(CMD, "%s needs a FLOW file", sub);
        return SLM_EXIT_USAGE;
    }
    if (first + 1 < argc) {
        slm_cli_error(CMD, "unexpected argument '%s'", argv[first + 1]);
        return SLM_EXIT_USAGE;
    }
    if (!is_graph && (fmt_given || output)) {
        slm_cli_error(CMD, "check takes no --format or --output");
        return SLM_EXIT_USAGE;
    }
    return is_graph ? graph(argv[first], fmt, output) : check(argv[first]);
}

const struct slm_cli_command slm_cli_cmd_flow = {
    "flow", "Check a workflow file (a graph of steps) or draw it as a diagram", run, 59};
