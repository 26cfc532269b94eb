/*
 * fuzz_eval_suite.c - libFuzzer harness for eval suite validation: any input
 * is either a valid suite or an error whose message names the file. Suites
 * may name the files made in a private folder at start (data.jsonl, a.gguf,
 * lora.gguf, router.yaml, schema.json): only schema.json is ever read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/eval.h"

static char dir[64];

static const char *const names[] = {"data.jsonl", "a.gguf", "lora.gguf", "router.yaml",
                                    "schema.json"};

static void remove_files(void) {
    for (size_t i = 0; i < 5; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void make_files(void) {
    snprintf(dir, sizeof(dir), "/tmp/slm-fuzz-eval-XXXXXX");
    if (!mkdtemp(dir)) {
        abort();
    }
    const char *texts[] = {"{}\n", "x", "x", "x", "{\"type\":\"object\"}"};
    for (size_t i = 0; i < 5; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "w");
        if (!f) {
            abort();
        }
        fputs(texts[i], f);
        fclose(f);
    }
    atexit(remove_files);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        make_files();
    }
    struct slm_eval_suite *s = NULL;
    struct slm_err err;
    memset(&err, 0, sizeof(err));
    int rc = slm_eval_suite_parse("fuzz.yaml", (const char *)data, size, dir, &s, &err);
    if (rc != SLM_OK) {
        if (err.msg[0] == '\0' || (rc == SLM_E_INVALID && !strstr(err.msg, "fuzz.yaml"))) {
            abort(); /* every error has a message naming the file */
        }
        return 0;
    }
    if (s->n_candidates == 0 || s->n_metrics == 0 || !s->data.file || !s->name) {
        abort();
    }
    for (size_t i = 0; i < s->n_candidates; i++) {
        if (!s->candidates[i].name) {
            abort();
        }
    }
    slm_eval_suite_free(s);
    return 0;
}
