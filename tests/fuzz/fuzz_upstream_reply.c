/*
 * fuzz_upstream_reply.c - libFuzzer harness for what an upstream sends the router: chat replies
 * (slm_upstream_parse_reply), error bodies (slm_upstream_error_message) and Retry-After values
 * (slm_upstream_parse_retry_after). Token counts must come out non-negative, messages printable
 * and NUL-terminated, waits non-negative or -1.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data;
    struct slm_upstream_reply r;
    struct slm_err err;
    if (slm_upstream_parse_reply(p, size, &r, &err) == SLM_OK) {
        if (!r.body || r.tokens_in < 0 || r.tokens_out < 0 ||
            !json_is_array(json_object_get(r.body, "choices"))) {
            abort();
        }
        json_decref(r.body);
    } else if (strlen(err.msg) == 0) {
        abort();
    }
    char msg[96];
    slm_upstream_error_message(p, size, msg, sizeof(msg));
    if (strnlen(msg, sizeof(msg)) == sizeof(msg)) {
        abort();
    }
    for (size_t i = 0; msg[i]; i++) {
        if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f) {
            abort();
        }
    }
    double wait = slm_upstream_parse_retry_after(p, size, 1.7e9);
    if (!(wait == -1.0 || (wait >= 0 && isfinite(wait)))) {
        abort();
    }
    return 0;
}
