/*
 * cli/cmd_quantize.c - `slm quantize IN OUT TYPE`: llama.cpp's quantizer on
 * a store model or a file, into a file or (--create NAME) into the store.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "slm/engine.h"
#include "slm/store.h"

static const char *const CMD = "quantize";

static void usage(void) {
    printf("Usage: slm quantize [OPTIONS] IN OUT TYPE\n"
           "       slm quantize [OPTIONS] IN TYPE --create NAME\n"
           "\n"
           "Quantizes a GGUF model with llama.cpp's quantizer. IN is a model in the store\n"
           "or a .gguf path (F32, F16 or BF16 weights); OUT is a .gguf path. With --create\n"
           "the result goes into the store as NAME, keeping IN's parameters, system\n"
           "message, template, messages, adapters and license.\n"
           "\n"
           "TYPE:");
    for (const char *const *t = slm_quantize_types(); *t; t++) {
        printf(" %s", *t);
    }
    printf("\n"
           "  (Q4_K_M is the usual choice; Q8_0 is nearly lossless.)\n"
           "\n"
           "Options:\n"
           "  --create NAME   store the result as model NAME instead of writing OUT\n"
           "  --threads N     threads (default: all cores)\n"
           "  -h, --help      this help\n");
}

/* A manifest for NAME: IN's (when IN is in the store) with the new blob. */
static int store_result(struct slm_store *store, const struct slm_manifest *in, const char *tmp,
                        const char *type, const char *name, struct slm_err *err) {
    struct slm_name n;
    int rc = slm_name_parse(name, &n, err);
    char digest[72];
    if (rc == SLM_OK) {
        rc = slm_store_import_blob(store, tmp, NULL, true, digest, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    json_t *doc = slm_manifest_to_json(in);
    char src[SLM_NAME_MAX + 200];
    snprintf(src, sizeof(src), "%s (quantized to %s)", in->source ? in->source : in->name, type);
    char blob[PATH_MAX];
    slm_store_blob_path(store, digest + 7, blob, sizeof(blob));
    json_t *model = json_pack("{sssIss}", "digest", digest, "size", (json_int_t)slm_file_size(blob),
                              "source", src);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!doc || !model || json_object_set_new(doc, "model", model) != 0 ||
        json_object_set_new(doc, "created", json_string(when)) != 0) {
        json_decref(doc);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    rc = slm_store_write_manifest(store, &n, doc, err);
    json_decref(doc);
    return rc;
}

static int run(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0;
    const char *create = NULL;
    long long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (slm_cli_is_help(a)) {
            usage();
            return SLM_EXIT_OK;
        } else if (strcmp(a, "--create") == 0 && i + 1 < argc) {
            create = argv[++i];
        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc) {
            if (!slm_cli_int(CMD, a, argv[++i], 0, 1024, &threads)) {
                return SLM_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option or missing value '%s' (see slm quantize --help)", a);
            return SLM_EXIT_USAGE;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            slm_cli_error(CMD, "too many arguments (see slm quantize --help)");
            return SLM_EXIT_USAGE;
        }
    }
    if (n_pos != (create ? 2 : 3)) {
        slm_cli_error(CMD, create ? "expects IN TYPE --create NAME" : "expects IN OUT TYPE");
        return SLM_EXIT_USAGE;
    }
    const char *in = pos[0];
    const char *type = pos[n_pos - 1];
    struct slm_store *store = NULL;
    struct slm_manifest *m = NULL;
    struct slm_err err = {0};
    int rc = slm_store_open(NULL, &store, &err);
    if (rc == SLM_OK) {
        rc = slm_store_resolve(store, in, &m, &err);
    }
    if (rc == SLM_OK && m->n_adapters > 0 && !create) {
        fprintf(stderr, "slm quantize: note: %s has adapters; only the base model is quantized\n",
                in);
    }
    char out[PATH_MAX];
    if (rc == SLM_OK) {
        if (create) {
            char file[64];
            snprintf(file, sizeof(file), "quantize-%ld.gguf", (long)getpid());
            slm_store_tmp_path(store, file, out, sizeof(out));
        } else {
            snprintf(out, sizeof(out), "%s", pos[1]);
        }
        fprintf(stderr, "quantizing %s to %s\n", in, type);
        rc = slm_quantize(m->model_path, out, type, (int32_t)threads, &err);
    }
    if (rc == SLM_OK && create) {
        rc = store_result(store, m, out, type, create, &err);
        unlink(out);
    }
    slm_manifest_free(m);
    slm_store_close(store);
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    int64_t size = slm_file_size(create ? "" : out);
    char sz[32] = "";
    if (size > 0) {
        slm_format_size(sz, sizeof(sz), (uint64_t)size);
    }
    if (create) {
        printf("created %s (%s)\n", create, type);
    } else {
        printf("wrote %s (%s, %s)\n", out, type, sz);
    }
    return SLM_EXIT_OK;
}

const struct slm_cli_command slm_cli_cmd_quantize = {
    "quantize", "Quantize a model (Q4_K_M, Q8_0, ...)", run, 26};
