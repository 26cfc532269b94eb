/*
 * cli/cmd_cp.c - `slm cp SRC DST`: a second name for a model (blobs are
 * shared, nothing is copied but the manifest).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/store.h"

static const char *const CMD = "cp";

static int run(int argc, char **argv) {
    if (argc > 1 && slm_cli_is_help(argv[1])) {
        printf("Usage: slm cp SOURCE DESTINATION\n"
               "\n"
               "Gives the model SOURCE a second name. The two names share their blobs;\n"
               "`slm rm` of one leaves the other whole. An existing DESTINATION is replaced.\n");
        return SLM_EXIT_OK;
    }
    if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
        slm_cli_error(CMD, "expects SOURCE and DESTINATION (see slm cp --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_store *store = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    if (rc == SLM_OK) {
        rc = slm_store_copy(store, argv[1], argv[2], &err);
    }
    slm_store_close(store);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    printf("copied '%s' to '%s'\n", argv[1], argv[2]);
    return SLM_EXIT_OK;
}

const struct slm_cli_command slm_cli_cmd_cp = {"cp", "Copy a model to a new name", run, 25};
