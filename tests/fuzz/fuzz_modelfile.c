/*
 * fuzz_modelfile.c - libFuzzer harness for the Modelfile parser; a parsed
 * Modelfile is also printed back through a manifest and must parse again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct slm_modelfile *mf = NULL;
    struct slm_err err;
    if (slm_modelfile_parse((const char *)data, size, "fuzz", &mf, &err) != SLM_OK) {
        if (err.msg[0] == '\0') {
            abort(); /* every error has a message */
        }
        return 0;
    }
    (void)slm_template_looks_like_go(mf->template_text ? mf->template_text : "",
                                     mf->template_text ? strlen(mf->template_text) : 0);
    struct slm_manifest m;
    memset(&m, 0, sizeof(m));
    m.name = "fuzz:latest";
    m.model_path = "/blobs/sha256-0";
    m.params = mf->params;
    m.system = mf->system;
    m.messages = mf->messages;
    m.license = mf->license;
    struct slm_buf out = {0};
    if (slm_manifest_to_modelfile(&m, &out, NULL) == SLM_OK) {
        struct slm_modelfile *back = NULL;
        if (slm_modelfile_parse(out.ptr, out.len, "back", &back, &err) != SLM_OK) {
            abort(); /* what we print must parse */
        }
        if (!json_equal(back->params, mf->params) || !json_equal(back->messages, mf->messages) ||
            (mf->system && (!back->system || strcmp(back->system, mf->system) != 0))) {
            abort();
        }
        slm_modelfile_free(back);
    }
    slm_buf_free(&out);
    slm_modelfile_free(mf);
    return 0;
}
