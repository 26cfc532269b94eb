/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF metadata slm reads itself
 * (what `slm show`, `slm list`, the server's model facts and the pool's
 * memory estimate see of a downloaded file): slm_gguf_read_info and
 * slm_tune_gguf_eos, over ggml's header parser. The bytes go to a memfd,
 * since both readers take a path.
 *
 * Invariants: a read either fails with a message or gives counts that are
 * never negative (0 = unknown), NUL-terminated strings, a chat template
 * only when the header says there is one; the EOS id is -1 or >= 0 (it is
 * not checked against the vocabulary: the tune module's callers do that). llama.cpp itself is not
 * built with coverage, so the fuzzer steers by slm's side of the reader; the seeds
 * (tests/fuzz/corpus/gguf/, made by tests/fuzz/gguf_seeds.py) carry the
 * header's shapes.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "slm/engine.h"
#include "slm/tune.h"

static int memfd = -1;
static char path[64];

static void not_negative(int64_t v) {
    if (v < 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (memfd < 0) {
        slm_log_set_level(SLM_LOG_ERROR);
        slm_log_set_sink(NULL, NULL);
        slm_engine_init();
        memfd = memfd_create("fuzz-gguf", 0);
        if (memfd < 0) {
            abort();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    struct slm_model_info info;
    struct slm_buf tmpl;
    slm_buf_init(&tmpl, (size_t)1 << 20);
    struct slm_err err = {0};
    int rc = slm_gguf_read_info(path, &info, &tmpl, &err);
    if (rc == SLM_OK) {
        not_negative(info.n_ctx_train);
        not_negative(info.n_embd);
        not_negative(info.n_layer);
        not_negative(info.n_head);
        not_negative(info.n_head_kv);
        not_negative(info.n_vocab);
        not_negative(info.n_tensors);
        if (strnlen(info.arch, sizeof(info.arch)) == sizeof(info.arch) ||
            strnlen(info.name, sizeof(info.name)) == sizeof(info.name) ||
            strnlen(info.ftype, sizeof(info.ftype)) == sizeof(info.ftype) ||
            strnlen(info.desc, sizeof(info.desc)) == sizeof(info.desc)) {
            abort();
        }
        if (tmpl.len > 0 && !info.has_chat_template) {
            abort();
        }
        int32_t eos = slm_tune_gguf_eos(path);
        if (eos < -1) {
            abort();
        }
    } else if (err.msg[0] == '\0') {
        abort();
    }
    slm_buf_free(&tmpl);
    return 0;
}
