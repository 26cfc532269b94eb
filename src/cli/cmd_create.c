/*
 * cli/cmd_create.c - `slm create NAME [-f Modelfile]`: make a model from a
 * Modelfile (store/create.c does the work).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/store.h"

static const char *const CMD = "create";

static void usage(void) {
    printf("Usage: slm create NAME [-f, --file MODELFILE]\n"
           "\n"
           "Creates (or replaces) the model NAME from a Modelfile (default ./Modelfile;\n"
           "\"-\" reads standard input). Directives, as Ollama reads them:\n"
           "  FROM <name or path.gguf>       the base: a model in the store or a GGUF file\n"
           "  ADAPTER <path.gguf>            a LoRA adapter (repeatable)\n"
           "  PARAMETER <name> <value>       num_ctx num_predict temperature top_k top_p\n"
           "                                 min_p seed repeat_penalty repeat_last_n\n"
           "                                 presence_penalty frequency_penalty stop\n"
           "                                 num_batch num_thread\n"
           "  SYSTEM <text>                  the system message\n"
           "  TEMPLATE <path or text>        a Liquid prompt template (Go templates are\n"
           "                                 not supported)\n"
           "  MESSAGE <role> <text>          a conversation to start from (repeatable)\n"
           "  LICENSE <text>                 the model's license\n"
           "Values may be \"quoted\" or \"\"\"span several lines\"\"\". See docs/modelfile.md.\n");
}

static void on_note(const char *line, void *user) {
    (void)user;
    fprintf(stderr, "%s\n", line);
}

static int run(int argc, char **argv) {
    const char *name = NULL, *file = "Modelfile";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (slm_cli_is_help(a)) {
            usage();
            return SLM_EXIT_OK;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if (i + 1 >= argc) {
                slm_cli_error(CMD, "%s needs a file", a);
                return SLM_EXIT_USAGE;
            }
            file = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option '%s' (see slm create --help)", a);
            return SLM_EXIT_USAGE;
        } else if (!name) {
            name = a;
        } else {
            slm_cli_error(CMD, "one name at a time (see slm create --help)");
            return SLM_EXIT_USAGE;
        }
    }
    if (!name) {
        slm_cli_error(CMD, "no name given (see slm create --help)");
        return SLM_EXIT_USAGE;
    }
    if (strcmp(file, "-") != 0 && !slm_file_exists(file)) {
        slm_cli_error(CMD, "no Modelfile at '%s' (give one with -f)", file);
        return SLM_EXIT_NOT_FOUND;
    }
    struct slm_store *store = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    if (rc == SLM_OK) {
        struct slm_create_params cp = {.modelfile = file, .note = on_note};
        rc = slm_create(store, name, &cp, &err);
    }
    slm_store_close(store);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    struct slm_name n;
    char full[SLM_NAME_MAX + 80];
    slm_name_parse(name, &n, NULL);
    slm_name_format(&n, full, sizeof(full));
    printf("created %s\n", full);
    return SLM_EXIT_OK;
}

const struct slm_cli_command slm_cli_cmd_create = {"create", "Create a model from a Modelfile", run,
                                                   23};
