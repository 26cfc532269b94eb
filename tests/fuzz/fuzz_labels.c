/*
 * fuzz_labels.c - libFuzzer harness for what `slm label --labels` / `slm distill --check
 * labels:` read (slm_contract_labels_parse) and the label check that answers from a cloud go
 * through (slm_contract_check_answer). A parsed set has 1..SLM_CONTRACT_MAX_LABELS distinct,
 * non-empty labels of at most SLM_CONTRACT_MAX_LABEL bytes; a failure names the file; an answer
 * that passes comes back as one of the set's labels.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/contract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct slm_contract_labels l;
    struct slm_err err = {0};
    if (slm_contract_labels_parse("fuzz.json", (const char *)data, size, &l, &err) != SLM_OK) {
        if (!strstr(err.msg, "fuzz.json") && err.code != SLM_E_NOMEM) {
            abort();
        }
        return 0;
    }
    if (l.n == 0 || l.n > SLM_CONTRACT_MAX_LABELS) {
        abort();
    }
    for (size_t i = 0; i < l.n; i++) {
        size_t n = strlen(l.items[i]);
        if (n == 0 || n > SLM_CONTRACT_MAX_LABEL) {
            abort();
        }
        for (size_t j = 0; j < i && l.n < 200; j++) {
            if (strcmp(l.items[i], l.items[j]) == 0) {
                abort();
            }
        }
    }
    /* The input itself as an answer, and the first label with noise around it. */
    struct slm_contract_check k = {.labels = &l};
    char *answer = strndup((const char *)data, size);
    json_t *v = NULL;
    if (answer && slm_contract_check_answer(&k, answer, "stop", &v, &err) == SLM_OK) {
        const char *got = json_string_value(v);
        bool in_set = false;
        for (size_t i = 0; got && i < l.n && !in_set; i++) {
            in_set = strcmp(got, l.items[i]) == 0;
        }
        if (!in_set) {
            abort();
        }
    }
    json_decref(v);
    free(answer);
    slm_contract_labels_free(&l);
    return 0;
}
