/*
 * fuzz_judge_verdict.c - libFuzzer harness for the judge's reply (slm_eval_judge_parse), text a
 * cloud model wrote. The first byte picks the mode; the rest is the reply. A verdict is in range
 * for its mode (score 1..5 whole, pass 0/1, winner -1/0/+1) with a reason string; a refusal is
 * SLM_E_INVALID with NAN and no reason.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) {
        return 0;
    }
    enum slm_eval_judge_mode mode = (enum slm_eval_judge_mode)(data[0] % 3);
    char *text = strndup((const char *)data + 1, size - 1);
    if (!text) {
        return 0;
    }
    double v = 0;
    char *reason = NULL;
    struct slm_err err = {0};
    int rc = slm_eval_judge_parse(mode, text, &v, &reason, &err);
    if (rc == SLM_OK) {
        bool ok = reason != NULL;
        if (mode == SLM_EVAL_JUDGE_SCORE) {
            ok = ok && v >= 1 && v <= 5 && v == floor(v);
        } else if (mode == SLM_EVAL_JUDGE_PASS) {
            ok = ok && (v == 0 || v == 1);
        } else {
            ok = ok && (v == -1 || v == 0 || v == 1);
        }
        if (!ok) {
            abort();
        }
    } else if ((rc != SLM_E_INVALID && rc != SLM_E_NOMEM) || reason || !isnan(v) || !err.msg[0]) {
        abort();
    }
    free(reason);
    free(text);
    return 0;
}
