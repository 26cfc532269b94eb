/*
 * cli/cmd_pull.c - `slm pull NAME...`: download models into the store
 * (store/pull.c does the work; this file parses flags and prints).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "slm/store.h"

static const char *const CMD = "pull";

static void usage(void) {
    printf("Usage: slm pull [OPTIONS] NAME...\n"
           "\n"
           "Downloads models into the store ($SLM_HOME, default ~/.slm), verifying each\n"
           "file's sha256 before it gets a name. An interrupted download resumes.\n"
           "\n"
           "NAME is one of:\n"
           "  an alias                    stories260k, smollm2:135m, smollm2:360m,\n"
           "                              qwen2.5:0.5b, qwen2.5:1.5b\n"
           "  hf.co/ORG/REPO:QUANT        the .gguf in the repository whose name contains\n"
           "                              QUANT (e.g. Q4_K_M); without :QUANT, Q4_K_M\n"
           "  hf.co/ORG/REPO/PATH.gguf    one file of a repository\n"
           "  https://.../FILE.gguf       any URL; needs --sha256\n"
           "\n"
           "Options:\n"
           "  --mirror URL|DIR   read from a mirror with Hugging Face's layout instead\n"
           "                     (default: $SLM_MIRROR)\n"
           "  --sha256 HEX       expected digest (required for a URL)\n"
           "  --name NAME        store a URL under this name\n"
           "  --retries N        retries of transient failures (default 5)\n"
           "  -q, --quiet        no progress bar and no notes\n"
           "  -h, --help         this help\n"
           "\n"
           "Environment: SLM_HOME, SLM_MIRROR, SLM_HF_ENDPOINT (Hugging Face base URL,\n"
           "default https://huggingface.co), HF_TOKEN (for gated repositories).\n"
           "\n"
           "Aliases:\n");
    for (const struct slm_alias *a = slm_alias_table(); a->alias; a++) {
        printf("  %-14s %s\n", a->alias, a->target);
    }
}

struct ui {
    struct slm_cli_progress bar;
    bool quiet;
};

static int on_progress(const struct slm_pull_progress *p, void *user) {
    struct ui *ui = user;
    slm_cli_progress_update(&ui->bar, p->file, p->done, p->total);
    return slm_cli_interrupted;
}

static void on_note(const char *line, void *user) {
    struct ui *ui = user;
    if (ui->quiet) {
        return;
    }
    slm_cli_progress_finish(&ui->bar);
    fprintf(stderr, "slm pull: %s\n", line);
}

static int pull_one(struct slm_store *store, const char *name, const struct slm_pull_params *pp,
                    struct ui *ui) {
    struct slm_pull_result res;
    struct slm_err err = {0};
    int rc = slm_pull(store, name, pp, &res, &err);
    slm_cli_progress_finish(&ui->bar);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    char size[32];
    slm_format_size(size, sizeof(size), res.size);
    const char *check = res.verified ? "sha256 verified" : "sha256 not published; computed";
    if (res.already) {
        printf("%s is already present (%s, %s %.12s)\n", res.name, size, check, res.digest + 7);
    } else {
        printf("pulled %s (%s, %s %.12s)\n", res.name, size, check, res.digest + 7);
    }
    return SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    struct slm_pull_params pp = slm_pull_params_default();
    struct ui ui = {0};
    const char *names[64];
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (slm_cli_is_help(a)) {
            usage();
            return SLM_EXIT_OK;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            ui.quiet = true;
        } else if ((strcmp(a, "--mirror") == 0 || strcmp(a, "--sha256") == 0 ||
                    strcmp(a, "--name") == 0 || strcmp(a, "--retries") == 0)) {
            if (!v) {
                slm_cli_error(CMD, "%s needs a value", a);
                return SLM_EXIT_USAGE;
            }
            i++;
            if (strcmp(a, "--mirror") == 0) {
                pp.mirror = v;
            } else if (strcmp(a, "--sha256") == 0) {
                pp.sha256 = v;
            } else if (strcmp(a, "--name") == 0) {
                pp.name = v;
            } else {
                long long r;
                if (!slm_cli_int(CMD, a, v, 0, 100, &r)) {
                    return SLM_EXIT_USAGE;
                }
                pp.max_retries = r == 0 ? -1 : (int)r;
            }
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option '%s' (see slm pull --help)", a);
            return SLM_EXIT_USAGE;
        } else if (n_names < (int)SLM_ARRAY_LEN(names)) {
            names[n_names++] = a;
        } else {
            slm_cli_error(CMD, "too many names");
            return SLM_EXIT_USAGE;
        }
    }
    if (n_names == 0) {
        slm_cli_error(CMD, "no model named (see slm pull --help)");
        return SLM_EXIT_USAGE;
    }
    if (n_names > 1 && (pp.sha256 || pp.name)) {
        slm_cli_error(CMD, "--sha256 and --name apply to one model at a time");
        return SLM_EXIT_USAGE;
    }
    slm_cli_pull_env(&pp);
    slm_cli_progress_init(&ui.bar, !ui.quiet && slm_cli_stderr_tty(), SLM_CLI_PROGRESS_BYTES);
    pp.progress = on_progress;
    pp.note = on_note;
    pp.user = &ui;
    slm_cli_trap_signals();

    struct slm_store *store = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    int exit_code = SLM_EXIT_OK;
    for (int i = 0; i < n_names && !slm_cli_interrupted; i++) {
        int e = pull_one(store, names[i], &pp, &ui);
        if (e != SLM_EXIT_OK) {
            exit_code = e;
        }
    }
    slm_store_close(store);
    return slm_cli_interrupted ? SLM_EXIT_INTERRUPTED : exit_code;
}

const struct slm_cli_command slm_cli_cmd_pull = {"pull", "Download a model into the store", run,
                                                 20};
