/*
 * fuzz_dataset.c - libFuzzer harness for dataset files (untrusted bytes that
 * `slm tune` and `slm data check` read): JSONL in every format and CSV, then
 * the checks and the hash split on whatever parsed. The first byte picks the
 * file kind and the options: null completions kept (as `slm data check`
 * reads) or refused (as `slm tune` does), the file as its own validation set
 * (input overlap, chunk leaks, shared source files), the agreement check on
 * or off.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/tune.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) {
        return 0;
    }
    const char *name = (data[0] & 1) ? "fuzz.csv" : "fuzz.jsonl";
    struct slm_data_read_params p = slm_data_read_params_default();
    p.max_records = 10000;
    p.completion_field = (data[0] & 2) ? "label" : NULL;
    p.keep_unlabelled = (data[0] & 32) != 0;
    struct slm_data_records recs;
    struct slm_err err;
    if (slm_data_parse((const char *)data + 1, size - 1, name, &p, &recs, &err) != SLM_OK) {
        if (err.msg[0] == '\0') {
            abort(); /* every failure explains itself */
        }
        return 0;
    }
    static const char *const labels[] = {"yes", "no"};
    struct slm_data_check_params cp = {0};
    cp.labels = labels;
    cp.n_labels = (data[0] & 4) ? 2 : 0;
    cp.json = (data[0] & 8) ? 1 : 0;
    cp.valid = (data[0] & 16) ? &recs : NULL;
    cp.min_agreement = (data[0] & 64) ? -1 : 0;
    struct slm_data_check_report rep;
    if (slm_data_check(&recs, &cp, &rep, &err) == SLM_OK) {
        if (rep.n_dropped > recs.n) {
            abort();
        }
        for (size_t i = 0; i < rep.n_issues; i++) {
            if (rep.issues[i].idx >= recs.n || rep.issues[i].other >= recs.n) {
                abort();
            }
            if (rep.issues[i].kind == SLM_ISSUE_NO_LABEL &&
                !recs.items[rep.issues[i].idx].unlabelled) {
                abort();
            }
        }
    }
    slm_data_check_report_free(&rep);
    struct slm_data_records held;
    if (slm_data_split_hash(&recs, "text", 10, &held, &err) == SLM_OK) {
        slm_data_records_free(&held);
    } else {
        slm_data_records_free(&held);
    }
    slm_data_records_free(&recs);
    return 0;
}
