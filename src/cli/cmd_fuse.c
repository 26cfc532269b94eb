/*
 * cli/cmd_fuse.c - `slm fuse BASE ADAPTER OUT`: merges a LoRA adapter into
 * its base and writes one standalone GGUF, optionally quantized.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "slm/engine.h"
#include "slm/store.h"
#include "slm/tune.h"

static const char *const CMD = "fuse";

static void usage(void) {
    printf("Usage: slm fuse [OPTIONS] BASE ADAPTER OUT\n"
           "\n"
           "Merges ADAPTER (a GGUF LoRA adapter, e.g. from `slm tune`) into BASE (a store\n"
           "name or .gguf) as W + scale * alpha/r * B A, and writes OUT, a model that needs\n"
           "no adapter. Adapted tensors are dequantized, merged and requantized to their\n"
           "own type unless --type says otherwise; all others are copied as they are.\n"
           "\n"
           "Options:\n"
           "  --type T          keep|f32|f16|q8_0: type of the merged tensors (default keep)\n"
           "  --quantize TYPE   quantize the fused model with llama.cpp's quantizer\n"
           "                    (Q4_K_M, Q8_0, ...; needs an F32/F16 base)\n"
           "  --scale S         adapter scale (default 1)\n"
           "  --threads N       quantization threads (default: all cores)\n"
           "  -h, --help        this help\n");
}

static int run(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0;
    const char *type = NULL, *quant = NULL;
    double scale = 1.0;
    long long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (slm_cli_is_help(a)) {
            usage();
            return SLM_EXIT_OK;
        } else if (strcmp(a, "--type") == 0 && i + 1 < argc) {
            type = argv[++i];
        } else if (strcmp(a, "--quantize") == 0 && i + 1 < argc) {
            quant = argv[++i];
        } else if (strcmp(a, "--scale") == 0 && i + 1 < argc) {
            if (!slm_cli_float(CMD, a, argv[++i], 0.0001, 1000, &scale)) {
                return SLM_EXIT_USAGE;
            }
        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc) {
            if (!slm_cli_int(CMD, a, argv[++i], 0, 1024, &threads)) {
                return SLM_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            slm_cli_error(CMD, "unknown option or missing value '%s' (see slm fuse --help)", a);
            return SLM_EXIT_USAGE;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            slm_cli_error(CMD, "too many arguments (see slm fuse --help)");
            return SLM_EXIT_USAGE;
        }
    }
    if (n_pos != 3) {
        slm_cli_error(CMD, "expects BASE ADAPTER OUT (see slm fuse --help)");
        return SLM_EXIT_USAGE;
    }
    struct slm_err err = {0};
    char base[PATH_MAX];
    int rc = SLM_OK;
    if (slm_file_exists(pos[0])) {
        snprintf(base, sizeof(base), "%s", pos[0]);
    } else {
        struct slm_store *store = NULL;
        struct slm_manifest *m = NULL;
        rc = slm_store_open(NULL, &store, &err);
        if (rc == SLM_OK) {
            rc = slm_store_resolve(store, pos[0], &m, &err);
        }
        if (rc == SLM_OK) {
            snprintf(base, sizeof(base), "%s", m->model_path);
        }
        slm_manifest_free(m);
        slm_store_close(store);
    }
    if (rc == SLM_OK && !slm_file_exists(pos[1])) {
        rc = slm_err_set(&err, SLM_E_NOT_FOUND, "%s: no such adapter file", pos[1]);
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.f32.%ld.gguf", pos[2], (long)getpid());
    struct slm_fuse_params fp = {(float)scale, quant ? "f32" : type};
    double t0 = slm_time_mono();
    if (rc == SLM_OK) {
        rc = slm_fuse(base, pos[1], quant ? tmp : pos[2], &fp, &err);
    }
    if (rc == SLM_OK && quant) {
        rc = slm_quantize(tmp, pos[2], quant, (int32_t)threads, &err);
        unlink(tmp);
    }
    if (rc != SLM_OK) {
        return slm_cli_fail(CMD, rc, &err);
    }
    char size[32];
    slm_format_size(size, sizeof(size), (uint64_t)slm_file_size(pos[2]));
    printf("wrote %s (%s) in %.1fs\n", pos[2], size, slm_time_mono() - t0);
    return SLM_EXIT_OK;
}

const struct slm_cli_command slm_cli_cmd_fuse = {"fuse", "Merge a LoRA adapter into its base model",
                                                 run, 41};
