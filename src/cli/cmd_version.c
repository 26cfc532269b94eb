/*
 * cli/cmd_version.c - `slm version`: slm's and llama.cpp's versions.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "slm/engine.h"

static int run(int argc, char **argv) {
    if (argc > 1 && slm_cli_is_help(argv[1])) {
        printf("Usage: slm version\n\nPrints the versions of slm and of the llama.cpp it is built "
               "on.\n");
        return SLM_EXIT_OK;
    }
    printf("slm %s (llama.cpp %s)\n", SLM_VERSION, slm_engine_version());
    return SLM_EXIT_OK;
}

const struct slm_cli_command slm_cli_cmd_version = {"version", "Print version information", run,
                                                    90};
