/*
 * cli/cmd_rm.c - `slm rm NAME...`: remove models, and the blobs no other
 * model uses.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/store.h"

static const char *const CMD = "rm";

static int run(int argc, char **argv) {
    const char *names[256];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (slm_cli_is_help(argv[i])) {
            printf("Usage: slm rm NAME...\n"
                   "\n"
                   "Removes models from the store: the name goes first, then every blob\n"
                   "(model, adapter, template) that no other model refers to.\n");
            return SLM_EXIT_OK;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            slm_cli_error(CMD, "unknown option '%s' (see slm rm --help)", argv[i]);
            return SLM_EXIT_USAGE;
        }
        if (n == (int)SLM_ARRAY_LEN(names)) {
            slm_cli_error(CMD, "too many names");
            return SLM_EXIT_USAGE;
        }
        names[n++] = argv[i];
    }
    if (n == 0) {
        slm_cli_error(CMD, "no model named (see slm rm --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_store *store = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    int exit_code = SLM_EXIT_OK;
    for (int i = 0; i < n; i++) {
        struct slm_remove_result res;
        rc = slm_store_remove(store, names[i], &res, &err);
        if (rc != SLM_OK) {
            exit_code = slm_cli_fail(CMD, rc, &err);
            continue;
        }
        if (res.blobs_removed > 0) {
            char size[32];
            slm_format_size(size, sizeof(size), res.bytes_freed);
            printf("deleted '%s' (freed %s)\n", res.name, size);
        } else {
            printf("deleted '%s'\n", res.name);
        }
    }
    slm_store_close(store);
    return exit_code;
}

const struct slm_cli_command slm_cli_cmd_rm = {"rm", "Remove models from the store", run, 24};
