/*
 * main.c - `slm COMMAND [ARGS]`: finds the command in the registry the build
 * generated from src/cli/cmd_*.c and runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli_registry.h"

static int cmp_order(const void *a, const void *b) {
    const struct slm_cli_command *x = *(const struct slm_cli_command *const *)a;
    const struct slm_cli_command *y = *(const struct slm_cli_command *const *)b;
    if (x->order != y->order) {
        return x->order < y->order ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

static void usage(FILE *f) {
    size_t n = SLM_ARRAY_LEN(slm_cli_registry);
    const struct slm_cli_command *sorted[SLM_ARRAY_LEN(slm_cli_registry)];
    memcpy(sorted, slm_cli_registry, sizeof(sorted));
    qsort(sorted, n, sizeof(sorted[0]), cmp_order);
    fprintf(f, "slm - small language models on the machine you already own\n\n"
               "Usage: slm COMMAND [ARGS...]\n\nCommands:\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %-10s %s\n", sorted[i]->name, sorted[i]->summary);
    }
    fprintf(f, "\nRun 'slm COMMAND --help' for a command's flags.\n"
               "Environment: SLM_HOME (model store, default ~/.slm), SLM_MIRROR (pull from a "
               "folder),\n  SLM_LOG (error|warn|info|debug), SLM_HUGEPAGES=0 (no huge pages: "
               "docs/commands.md).\n");
}

char **slm_cli_argv;

int main(int argc, char **argv) {
    slm_cli_argv = argv;
    static const char *const model_commands[] = {"run", "serve", "route"};
    for (size_t i = 0; argc >= 2 && i < SLM_ARRAY_LEN(model_commands); i++) {
        if (strcmp(argv[1], model_commands[i]) == 0) {
            slm_cli_use_hugepages(argv);
        }
    }
    const char *lvl = getenv("SLM_LOG");
    enum slm_log_level level;
    if (lvl && slm_log_level_parse(lvl, &level) == SLM_OK) {
        slm_log_set_level(level);
    }
    if (argc < 2 || slm_cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            argv[1] = argv[2];
            argv[2] = "--help";
            argc = 3;
        } else {
            usage(argc < 2 ? stderr : stdout);
            return argc < 2 ? SLM_EXIT_USAGE : SLM_EXIT_OK;
        }
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("slm %s\n", SLM_VERSION);
        return SLM_EXIT_OK;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(slm_cli_registry); i++) {
        if (strcmp(argv[1], slm_cli_registry[i]->name) == 0) {
            return slm_cli_registry[i]->run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "slm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return SLM_EXIT_USAGE;
}
