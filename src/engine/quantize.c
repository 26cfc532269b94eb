/*
 * engine/quantize.c - slm_quantize: llama.cpp's quantizer behind slm's type
 * names and error codes.
 *
 * The output is written to OUT.tmp.<pid> and renamed: OUT is whole or
 * absent. Reentrant (llama_model_quantize holds no global state beyond the
 * backend set-up done once by slm_engine_init).
 */
#include "slm/engine.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"

static const struct {
    const char *name;
    enum llama_ftype ftype;
} g_types[] = {
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},     {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S}, {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L}, {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S},
    {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"F16", LLAMA_FTYPE_MOSTLY_F16},       {"BF16", LLAMA_FTYPE_MOSTLY_BF16},
    {"F32", LLAMA_FTYPE_ALL_F32},
};

const char *const *slm_quantize_types(void) {
    static const char *names[SLM_ARRAY_LEN(g_types) + 1];
    for (size_t i = 0; i < SLM_ARRAY_LEN(g_types); i++) {
        names[i] = g_types[i].name;
    }
    names[SLM_ARRAY_LEN(g_types)] = NULL;
    return names;
}

/* The input's tensors must be F32, F16 or BF16: re-quantizing a quantized
 * model compounds the error, and llama.cpp refuses it by default. */
static bool is_float_model(const char *ftype) {
    return strcmp(ftype, "all F32") == 0 || strcmp(ftype, "F16") == 0 ||
           strcmp(ftype, "MOSTLY_F16") == 0 || strcmp(ftype, "BF16") == 0 ||
           strcmp(ftype, "MOSTLY_BF16") == 0 || strcmp(ftype, "f32") == 0 ||
           strcmp(ftype, "f16") == 0 || strcmp(ftype, "bf16") == 0;
}

int slm_quantize(const char *in, const char *out, const char *type, int32_t n_threads,
                 struct slm_err *err) {
    const char *name = NULL;
    enum llama_ftype ftype = LLAMA_FTYPE_ALL_F32;
    for (size_t i = 0; type && i < SLM_ARRAY_LEN(g_types); i++) {
        if (slm_str_eq_nocase(slm_str_c(type), slm_str_c(g_types[i].name))) {
            name = g_types[i].name;
            ftype = g_types[i].ftype;
        }
    }
    if (!name) {
        return slm_err_set(err, SLM_E_INVALID,
                           "unknown quantization type '%.40s' (one of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 "
                           "Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K F16 BF16 "
                           "F32)",
                           type ? type : "");
    }
    struct slm_model_info info;
    int rc = slm_gguf_read_info(in, &info, NULL, err);
    if (rc != SLM_OK) {
        return rc;
    }
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", out, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s: path too long", out);
    }
    slm_engine_init();
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = n_threads > 0 ? n_threads : 0;
    qp.ftype = ftype;
    uint32_t status = llama_model_quantize(in, tmp, &qp);
    if (status != 0) {
        unlink(tmp);
        if (!is_float_model(info.ftype)) {
            return slm_err_set(err, SLM_E_UNSUPPORTED,
                               "%s is already quantized (%s): quantize from the F32, F16 or "
                               "BF16 model",
                               in, info.ftype);
        }
        return slm_err_set(err, SLM_E_BACKEND,
                           "llama.cpp could not quantize %s to %s (SLM_LOG=debug shows why)", in,
                           name);
    }
    if (rename(tmp, out) != 0) {
        int e = errno;
        unlink(tmp);
        return slm_err_set(err, SLM_E_IO, "%s: %s", out, strerror(e));
    }
    slm_fsync_dir_of(out);
    return SLM_OK;
}
