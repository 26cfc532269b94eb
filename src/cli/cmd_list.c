/*
 * cli/cmd_list.c - `slm list`: the models in the store, like `ollama list`
 * (NAME, ID, SIZE, MODIFIED), or as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/store.h"

static const char *const CMD = "list";

static void usage(void) {
    printf("Usage: slm list [--json]\n"
           "\n"
           "Lists the models in the store ($SLM_HOME, default ~/.slm), newest first:\n"
           "NAME, ID (the first 12 digits of the manifest's sha256), SIZE (model, adapter\n"
           "and template blobs) and MODIFIED.\n"
           "\n"
           "Options:\n"
           "  --json      one JSON array: [{name, id, digest, size, modified, damaged}]\n"
           "  -h, --help  this help\n");
}

/* "3 minutes ago", like ollama list. */
static void ago(int64_t then_ms, char *out, size_t cap) {
    int64_t s = (slm_time_unix_ms() - then_ms) / 1000;
    static const struct {
        int64_t secs;
        const char *one, *many;
    } units[] = {{365 * 86400, "About a year ago", "years"},
                 {30 * 86400, "About a month ago", "months"},
                 {7 * 86400, "About a week ago", "weeks"},
                 {86400, "About a day ago", "days"},
                 {3600, "About an hour ago", "hours"},
                 {60, "About a minute ago", "minutes"},
                 {1, "1 second ago", "seconds"}};
    if (s < 1) {
        snprintf(out, cap, "Less than a second ago");
        return;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(units); i++) {
        int64_t n = s / units[i].secs;
        if (n >= 1) {
            if (n == 1) {
                snprintf(out, cap, "%s", units[i].one);
            } else {
                snprintf(out, cap, "%lld %s ago", (long long)n, units[i].many);
            }
            return;
        }
    }
}

static int print_json(const struct slm_store_entry *items, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        const struct slm_store_entry *e = &items[i];
        json_array_append_new(arr, json_pack("{sssssssIsIsb}", "name", e->name, "id", e->id,
                                             "digest", e->model_digest, "size", (json_int_t)e->size,
                                             "modified", (json_int_t)(e->modified_ms / 1000),
                                             "damaged", e->damaged));
    }
    char *text = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
    json_decref(arr);
    if (!text) {
        slm_cli_error(CMD, "out of memory");
        return SLM_EXIT_ERROR;
    }
    printf("%s\n", text);
    free(text);
    return SLM_EXIT_OK;
}

static int run(int argc, char **argv) {
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (slm_cli_is_help(argv[i])) {
            usage();
            return SLM_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            slm_cli_error(CMD, "unexpected argument '%s' (see slm list --help)", argv[i]);
            return SLM_EXIT_USAGE;
        }
    }
    struct slm_store *store = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    struct slm_store_entry *items = NULL;
    size_t n = 0;
    if (rc == SLM_OK) {
        rc = slm_store_list(store, &items, &n, &err);
    }
    slm_store_close(store);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    int exit_code = SLM_EXIT_OK;
    if (json) {
        exit_code = print_json(items, n);
    } else {
        size_t w = 4;
        for (size_t i = 0; i < n; i++) {
            w = SLM_MAX(w, strlen(items[i].name));
        }
        printf("%-*s    %-12s    %-8s    %s\n", (int)w, "NAME", "ID", "SIZE", "MODIFIED");
        for (size_t i = 0; i < n; i++) {
            char size[32], when[48];
            slm_format_size(size, sizeof(size), items[i].size);
            ago(items[i].modified_ms, when, sizeof(when));
            printf("%-*s    %-12.12s    %-8s    %s%s\n", (int)w, items[i].name,
                   items[i].damaged ? "?" : items[i].id, size, when,
                   items[i].damaged ? "  (damaged: pull or create it again)" : "");
        }
    }
    free(items);
    return exit_code;
}

const struct slm_cli_command slm_cli_cmd_list = {"list", "List the models in the store", run, 21};
