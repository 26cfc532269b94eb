/*
 * fuzz_hf_tree.c - libFuzzer harness for what servers and disks hand the
 * store: Hugging Face tree listings (slm_hf_tree_parse, slm_hf_pick_quant)
 * and manifest JSON (slm_manifest_from_json, which builds paths from
 * digests: they must stay inside blobs/).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/store.h"

static struct slm_store *g_store;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_store && slm_store_open("/tmp/slm-fuzz-store", &g_store, NULL) != SLM_OK) {
        abort();
    }
    struct slm_hf_file *files = NULL;
    size_t n = 0;
    struct slm_err err;
    if (slm_hf_tree_parse((const char *)data, size, &files, &n, &err) == SLM_OK) {
        size_t idx;
        static const char *const quants[] = {"Q4_K_M", "q8_0", "", "K"};
        for (size_t q = 0; q < 4; q++) {
            if (slm_hf_pick_quant(files, n, quants[q], &idx, &err) == SLM_OK && idx >= n) {
                abort();
            }
        }
        slm_hf_files_free(files, n);
    }
    json_t *doc = NULL;
    if (slm_json_parse((const char *)data, size, "fuzz", &doc, NULL) == SLM_OK) {
        struct slm_manifest *m = NULL;
        if (slm_manifest_from_json(g_store, "fuzz:latest", doc, &m, &err) == SLM_OK) {
            if (strstr(m->model_path, "..") || strstr(m->model_path, "/blobs/sha256-") == NULL) {
                abort();
            }
            json_t *back = slm_manifest_to_json(m);
            json_decref(back);
            slm_manifest_free(m);
        }
        json_decref(doc);
    }
    return 0;
}
