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
 * not checked against the vocabulary: the tune module's callers do that); the memory
 * estimate (slm/memory.h) of the header adds up without wrapping, and the context it
 * suggests fits. llama.cpp itself is not
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
#include "slm/memory.h"
#include "slm/tune.h"

static int memfd = -1;
static char path[64];

static void not_negative(int64_t v) {
    if (v < 0) {
        abort();
    }
}

/* The memory estimate of a hostile header: parts add up to the total (or it saturates), a
 * context the inversion suggests fits, and the refusal has a message. */
static void check_estimate(const struct slm_model_info *info) {
    struct slm_mem_params p = slm_mem_params_default();
    p.n_ctx = (uint32_t)info->n_ctx_train;
    p.n_parallel = 1 + (int32_t)(info->n_layer % 4);
    struct slm_mem_estimate e;
    slm_mem_estimate_info(info, &p, 0, &e);
    if (e.total < e.weights || e.total < e.kv || e.n_ctx_seq == 0 || e.n_ctx % 256 != 0) {
        abort();
    }
    uint64_t avail = e.total / 2;
    uint32_t m = slm_mem_max_ctx(&e, avail);
    if (m > 0) {
        struct slm_mem_estimate at;
        p.n_ctx = m;
        slm_mem_estimate_info(info, &p, 0, &at);
        if (at.total > avail) {
            abort();
        }
    }
    struct slm_err err = {0};
    if (e.total > 0 && (slm_mem_check("m", &e, e.total - 1, &err) != SLM_E_NOMEM || !err.msg[0])) {
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
        not_negative(info.n_ff);
        not_negative(info.n_embd_head_k);
        not_negative(info.n_embd_head_v);
        if (strnlen(info.arch, sizeof(info.arch)) == sizeof(info.arch) ||
            strnlen(info.name, sizeof(info.name)) == sizeof(info.name) ||
            strnlen(info.ftype, sizeof(info.ftype)) == sizeof(info.ftype) ||
            strnlen(info.desc, sizeof(info.desc)) == sizeof(info.desc)) {
            abort();
        }
        if (tmpl.len > 0 && !info.has_chat_template) {
            abort();
        }
        check_estimate(&info);
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
