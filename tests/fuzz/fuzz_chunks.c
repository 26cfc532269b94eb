/*
 * fuzz_chunks.c - libFuzzer harness for the document chunker of `slm distill --docs`
 * (slm_contract_chunk_text), which reads whatever files a user's folder holds. Every chunk is
 * non-empty, at most the limit, valid UTF-8 (jansson would refuse anything else), numbered
 * 0, 1, 2, ... in order; text that is not UTF-8 is refused with a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/contract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t max = size > 0 ? 16 + data[0] * 4 : 64;
    json_t *rows = json_array();
    struct slm_err err = {0};
    int rc = slm_contract_chunk_text("f.md", (const char *)data, size, max, rows, &err);
    if (rc != SLM_OK) {
        if (!err.msg[0]) {
            abort();
        }
        json_decref(rows);
        return 0;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(rows, i, r) {
        const char *t = json_string_value(json_object_get(r, "text"));
        if (!t || !t[0] || strlen(t) > max ||
            json_integer_value(json_object_get(r, "chunk")) != (json_int_t)i ||
            !json_is_string(json_object_get(r, "heading"))) {
            abort();
        }
    }
    json_decref(rows);
    return 0;
}
