/*
 * tests/tools/mkmodel.c - writes a llama-family GGUF model of a chosen shape
 * with seeded random weights, for tests and benchmarks.
 *
 * The weights are noise (N(0, std), norms 1), so the model says nothing
 * useful, but it has exactly the tensors, shapes and metadata of the real
 * architecture: llama.cpp loads it, runs it at the real model's speed and
 * generates without NaNs. The tokenizer is real: every tokenizer.* key is
 * copied from a vocab-only GGUF (llama.cpp's models/ggml-vocab-*.gguf), so
 * prompts tokenize as they would with the real model and n_vocab matches.
 *
 *   mkmodel --preset smollm2-135m --quantize Q8_0 -o smollm2-135m-q8_0.gguf
 *   mkmodel --preset tiny -o tiny.gguf
 *   mkmodel --arch qwen2 --layers 2 --embd 128 --heads 4 --kv-heads 2 --ff 256 \
 *           --vocab ggml-vocab-qwen2.gguf -o small-qwen2.gguf
 *
 * The file is written to OUT.tmp and renamed, so OUT is whole or absent.
 * Tensors are streamed to disk in chunks: memory stays small for any shape.
 * Same flags and seed give the same bytes.
 *
 * A test tool, not part of libslm: it includes gguf.h, ggml.h and llama.h
 * directly and prints its own errors.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ggml.h>
#include <gguf.h>
#include <llama.h>

#include "slm/base.h"

#define MK_CHUNK ((size_t)1 << 20) /* elements generated and written at a time */
#define MK_MAX_TENSORS 4096

struct mk_spec {
    const char *preset;
    const char *arch; /* "llama" or "qwen2" */
    int64_t n_layer;
    int64_t n_embd;
    int64_t n_head;
    int64_t n_head_kv;
    int64_t n_ff;
    int64_t n_ctx;
    double rope_theta;
    double norm_eps;
    double std;           /* weight scale */
    bool tied;            /* no output.weight: token_embd is reused */
    const char *vocab;    /* path, or a file name looked up in $SLM_VOCAB_DIR */
    enum ggml_type type;  /* F32 or F16 for 2-D weights; 1-D tensors stay F32 */
    const char *quantize; /* NULL, or a type name for llama_model_quantize */
    uint64_t seed;
    int64_t threads;  /* quantization threads; 0 = all */
    const char *name; /* general.name */
    const char *out;
    bool verbose;
};

struct mk_preset {
    const char *name;
    const char *arch;
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx;
    double rope_theta, norm_eps;
    bool tied;
    const char *vocab;
    const char *what;
};

/* Shapes from the real models' config.json. */
static const struct mk_preset k_presets[] = {
    {"tiny", "llama", 2, 64, 4, 2, 192, 2048, 10000.0, 1e-5, false, "ggml-vocab-llama-spm.gguf",
     "2 layers, 64 embd, untied, llama-spm vocab (32,000): fast tests"},
    {"smollm2-135m", "llama", 30, 576, 9, 3, 1536, 8192, 100000.0, 1e-5, true,
     "ggml-vocab-starcoder.gguf", "HuggingFaceTB/SmolLM2-135M shape (134.5M params)"},
    {"qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 4864, 32768, 1000000.0, 1e-6, true,
     "ggml-vocab-qwen2.gguf", "Qwen/Qwen2.5-0.5B shape (q/k/v biases)"},
};

struct mk_qtype {
    const char *name;
    enum llama_ftype ftype;
};

static const struct mk_qtype k_qtypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},          {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"BF16", LLAMA_FTYPE_MOSTLY_BF16},     {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},     {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},     {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
};

/* What a tensor is filled with. */
enum mk_fill {
    MK_FILL_ONES,   /* RMS norm weights */
    MK_FILL_NORMAL, /* N(0, std) */
};

struct mk_tensor {
    struct ggml_tensor *t; /* metadata only (no_alloc context) */
    enum mk_fill fill;
    float std;
};

struct mk_model {
    struct ggml_context *ggml;
    struct gguf_context *gguf;
    struct mk_tensor tensors[MK_MAX_TENSORS];
    size_t n_tensors;
    uint64_t n_params;
    int64_t n_vocab;
};

static bool g_verbose;

static void usage(FILE *f) {
    fprintf(f, "Usage: mkmodel [--preset NAME] [options] -o OUT.gguf\n"
               "\n"
               "Writes a llama-family GGUF with seeded random weights and a real tokenizer.\n"
               "\n"
               "  --preset NAME       start from a named shape; the other flags override it\n"
               "  --arch llama|qwen2  architecture (qwen2 adds q/k/v biases)\n"
               "  --layers N --embd N --heads N --kv-heads N --ff N --ctx N\n"
               "  --vocab FILE        vocab-only GGUF to copy tokenizer.* from; a bare file name\n"
               "                      is also looked up in $SLM_VOCAB_DIR\n"
               "  --tied | --untied   reuse token_embd as the output projection (or not)\n"
               "  --type f32|f16      type of 2-D weights (1-D tensors stay F32); default f16\n"
               "  --quantize TYPE     then quantize with llama_model_quantize (Q8_0, Q4_K_M, ...)\n"
               "  --seed N            random seed (default 1)\n"
               "  --rope-theta X --norm-eps X --std X (weight scale, default 0.02)\n"
               "  --name TEXT         general.name\n"
               "  --threads N         quantization threads (default: all)\n"
               "  -o, --output OUT    file to write\n"
               "  -v, --verbose       show llama.cpp's quantization log\n"
               "\n"
               "Presets:\n");
    for (size_t i = 0; i < SLM_ARRAY_LEN(k_presets); i++) {
        fprintf(f, "  %-14s %s\n", k_presets[i].name, k_presets[i].what);
    }
    fprintf(f, "\nQuantization types:");
    for (size_t i = 0; i < SLM_ARRAY_LEN(k_qtypes); i++) {
        fprintf(f, " %s", k_qtypes[i].name);
    }
    fprintf(f, "\n");
}

static void die_usage(const char *fmt, ...) SLM_PRINTF(1, 2);

static void die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mkmodel: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(mkmodel --help lists the options)\n");
    va_end(ap);
    exit(2);
}

/* ---------------------------------------------------------------- flags */

static int64_t parse_int(const char *flag, const char *val, int64_t lo, int64_t hi) {
    int64_t v;
    if (slm_parse_i64(slm_str_c(val), &v) != SLM_OK || v < lo || v > hi) {
        fprintf(stderr, "mkmodel: %s wants an integer in [%lld, %lld], got '%s'\n", flag,
                (long long)lo, (long long)hi, val);
        exit(2);
    }
    return v;
}

static double parse_pos_double(const char *flag, const char *val) {
    double v;
    if (slm_parse_f64(slm_str_c(val), &v) != SLM_OK || !(v > 0.0) || !isfinite(v)) {
        fprintf(stderr, "mkmodel: %s wants a positive number, got '%s'\n", flag, val);
        exit(2);
    }
    return v;
}

static void apply_preset(struct mk_spec *s, const char *name) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(k_presets); i++) {
        const struct mk_preset *p = &k_presets[i];
        if (strcmp(p->name, name) == 0) {
            s->preset = p->name;
            s->arch = p->arch;
            s->n_layer = p->n_layer;
            s->n_embd = p->n_embd;
            s->n_head = p->n_head;
            s->n_head_kv = p->n_head_kv;
            s->n_ff = p->n_ff;
            s->n_ctx = p->n_ctx;
            s->rope_theta = p->rope_theta;
            s->norm_eps = p->norm_eps;
            s->tied = p->tied;
            s->vocab = p->vocab;
            return;
        }
    }
    die_usage("unknown preset '%s' (presets: tiny, smollm2-135m, qwen2.5-0.5b)", name);
}

static void spec_defaults(struct mk_spec *s) {
    memset(s, 0, sizeof(*s));
    s->arch = "llama";
    s->n_ctx = 2048;
    s->rope_theta = 10000.0;
    s->norm_eps = 1e-5;
    s->std = 0.02;
    s->type = GGML_TYPE_F16;
    s->seed = 1;
}

/* Flags that take a value; the rest are switches. */
static bool takes_value(const char *a) {
    static const char *const with_value[] = {
        "--preset", "--arch",  "--layers",  "--embd",     "--heads", "--kv-heads",   "--ff",
        "--ctx",    "--vocab", "--type",    "--quantize", "--seed",  "--rope-theta", "--norm-eps",
        "--std",    "--name",  "--threads", "-o",         "--output"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(with_value); i++) {
        if (strcmp(a, with_value[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void parse_flag(struct mk_spec *s, const char *a, const char *v) {
    const int64_t big = (int64_t)1 << 24;
    if (strcmp(a, "--preset") == 0) {
        /* applied in the first pass */
    } else if (strcmp(a, "--arch") == 0) {
        if (strcmp(v, "llama") != 0 && strcmp(v, "qwen2") != 0) {
            die_usage("--arch must be llama or qwen2, got '%s'", v);
        }
        s->arch = v;
    } else if (strcmp(a, "--layers") == 0) {
        s->n_layer = parse_int(a, v, 1, 256); /* 12 tensors a layer < MK_MAX_TENSORS */
    } else if (strcmp(a, "--embd") == 0) {
        s->n_embd = parse_int(a, v, 1, big);
    } else if (strcmp(a, "--heads") == 0) {
        s->n_head = parse_int(a, v, 1, 4096);
    } else if (strcmp(a, "--kv-heads") == 0) {
        s->n_head_kv = parse_int(a, v, 1, 4096);
    } else if (strcmp(a, "--ff") == 0) {
        s->n_ff = parse_int(a, v, 1, big);
    } else if (strcmp(a, "--ctx") == 0) {
        s->n_ctx = parse_int(a, v, 1, big);
    } else if (strcmp(a, "--vocab") == 0) {
        s->vocab = v;
    } else if (strcmp(a, "--type") == 0) {
        if (strcasecmp(v, "f32") == 0) {
            s->type = GGML_TYPE_F32;
        } else if (strcasecmp(v, "f16") == 0) {
            s->type = GGML_TYPE_F16;
        } else {
            die_usage("--type must be f32 or f16, got '%s'", v);
        }
    } else if (strcmp(a, "--quantize") == 0) {
        s->quantize = v;
    } else if (strcmp(a, "--seed") == 0) {
        s->seed = (uint64_t)parse_int(a, v, 0, INT64_MAX);
    } else if (strcmp(a, "--rope-theta") == 0) {
        s->rope_theta = parse_pos_double(a, v);
    } else if (strcmp(a, "--norm-eps") == 0) {
        s->norm_eps = parse_pos_double(a, v);
    } else if (strcmp(a, "--std") == 0) {
        s->std = parse_pos_double(a, v);
    } else if (strcmp(a, "--name") == 0) {
        s->name = v;
    } else if (strcmp(a, "--threads") == 0) {
        s->threads = parse_int(a, v, 0, 1024);
    } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
        s->out = v;
    } else {
        die_usage("unknown option '%s'", a);
    }
}

static void parse_args(struct mk_spec *s, int argc, char **argv) {
    spec_defaults(s);
    /* First pass: the preset, so that the other flags override it in any order. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) {
            apply_preset(s, argv[i + 1]);
        }
        if (takes_value(argv[i])) {
            i++;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--tied") == 0) {
            s->tied = true;
        } else if (strcmp(a, "--untied") == 0) {
            s->tied = false;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            s->verbose = true;
        } else if (takes_value(a)) {
            if (i + 1 >= argc) {
                die_usage("%s needs a value", a);
            }
            parse_flag(s, a, argv[++i]);
        } else {
            die_usage("unknown option '%s'", a);
        }
    }
}

/* The quantization type named `name` (any case), or NULL. */
static const struct mk_qtype *find_qtype(const char *name) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(k_qtypes); i++) {
        if (strcasecmp(name, k_qtypes[i].name) == 0) {
            return &k_qtypes[i];
        }
    }
    return NULL;
}

static void check_spec(const struct mk_spec *s) {
    if (!s->out) {
        die_usage("no output file: pass -o OUT.gguf");
    }
    if (!s->vocab) {
        die_usage("no vocabulary: pass --vocab FILE or a --preset");
    }
    if (!s->n_layer || !s->n_embd || !s->n_head || !s->n_ff) {
        die_usage("the shape is incomplete: pass --preset or all of --layers --embd --heads --ff");
    }
    if (s->n_embd % s->n_head != 0 || (s->n_embd / s->n_head) % 2 != 0) {
        die_usage("--embd must be a multiple of --heads with an even head size (RoPE)");
    }
    int64_t kv = s->n_head_kv ? s->n_head_kv : s->n_head;
    if (s->n_head % kv != 0) {
        die_usage("--heads must be a multiple of --kv-heads");
    }
    if (s->quantize && !find_qtype(s->quantize)) {
        die_usage("unknown quantization type '%s'", s->quantize);
    }
}

/* ---------------------------------------------------------------- random */

/* splitmix64: tiny, seedable, good enough for weights that only need to be
 * deterministic and roughly normal. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static double rng_unit(uint64_t *state) {
    return ((double)(rng_next(state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

/* Box-Muller: fills `n` values with N(0, std). */
static void rng_normal(uint64_t *state, float *out, size_t n, float std) {
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(rng_unit(state)));
        double th = two_pi * rng_unit(state);
        out[i] = (float)(r * cos(th)) * std;
        if (i + 1 < n) {
            out[i + 1] = (float)(r * sin(th)) * std;
        }
    }
}

/* ---------------------------------------------------------------- tensors */

static int add_tensor(struct mk_model *m, const struct mk_spec *s, const char *name, int64_t ne0,
                      int64_t ne1, enum mk_fill fill, double std) {
    if (m->n_tensors == MK_MAX_TENSORS) {
        fprintf(stderr, "mkmodel: more than %d tensors\n", MK_MAX_TENSORS);
        return -1;
    }
    struct ggml_tensor *t;
    if (ne1 == 0) {
        t = ggml_new_tensor_1d(m->ggml, GGML_TYPE_F32, ne0);
    } else {
        t = ggml_new_tensor_2d(m->ggml, s->type, ne0, ne1);
    }
    if (!t) {
        fprintf(stderr, "mkmodel: out of tensor metadata space\n");
        return -1;
    }
    ggml_set_name(t, name);
    gguf_add_tensor(m->gguf, t);
    m->tensors[m->n_tensors++] = (struct mk_tensor){t, fill, (float)std};
    m->n_params += (uint64_t)ggml_nelements(t);
    return 0;
}

static int add_layer(struct mk_model *m, const struct mk_spec *s, int il) {
    const int64_t head = s->n_embd / s->n_head;
    const int64_t n_q = head * s->n_head;
    const int64_t n_kv = head * (s->n_head_kv ? s->n_head_kv : s->n_head);
    /* GPT-2's trick: the projections that add into the residual stream are
     * scaled down with depth, so the stream's variance stays bounded. */
    const double std_res = s->std / sqrt(2.0 * (double)s->n_layer);
    const bool bias = strcmp(s->arch, "qwen2") == 0;
    char n[GGML_MAX_NAME];
    int rc = 0;

#define MK_T(suffix, ne0, ne1, fill, std)                                                          \
    do {                                                                                           \
        snprintf(n, sizeof(n), "blk.%d.%s", il, suffix);                                           \
        rc |= add_tensor(m, s, n, ne0, ne1, fill, std);                                            \
    } while (0)

    MK_T("attn_norm.weight", s->n_embd, 0, MK_FILL_ONES, 0);        /* [n_embd] */
    MK_T("attn_q.weight", s->n_embd, n_q, MK_FILL_NORMAL, s->std);  /* [n_embd, n_head*head] */
    MK_T("attn_k.weight", s->n_embd, n_kv, MK_FILL_NORMAL, s->std); /* [n_embd, n_kv*head] */
    MK_T("attn_v.weight", s->n_embd, n_kv, MK_FILL_NORMAL, s->std); /* [n_embd, n_kv*head] */
    if (bias) {
        MK_T("attn_q.bias", n_q, 0, MK_FILL_NORMAL, s->std);
        MK_T("attn_k.bias", n_kv, 0, MK_FILL_NORMAL, s->std);
        MK_T("attn_v.bias", n_kv, 0, MK_FILL_NORMAL, s->std);
    }
    MK_T("attn_output.weight", n_q, s->n_embd, MK_FILL_NORMAL, std_res); /* [n_q, n_embd] */
    MK_T("ffn_norm.weight", s->n_embd, 0, MK_FILL_ONES, 0);
    MK_T("ffn_gate.weight", s->n_embd, s->n_ff, MK_FILL_NORMAL, s->std);  /* [n_embd, n_ff] */
    MK_T("ffn_up.weight", s->n_embd, s->n_ff, MK_FILL_NORMAL, s->std);    /* [n_embd, n_ff] */
    MK_T("ffn_down.weight", s->n_ff, s->n_embd, MK_FILL_NORMAL, std_res); /* [n_ff, n_embd] */
#undef MK_T
    return rc ? -1 : 0;
}

static int add_tensors(struct mk_model *m, const struct mk_spec *s) {
    /* token_embd: [n_embd, n_vocab], one row per token */
    if (add_tensor(m, s, "token_embd.weight", s->n_embd, m->n_vocab, MK_FILL_NORMAL, s->std)) {
        return -1;
    }
    for (int il = 0; il < (int)s->n_layer; il++) {
        if (add_layer(m, s, il)) {
            return -1;
        }
    }
    if (add_tensor(m, s, "output_norm.weight", s->n_embd, 0, MK_FILL_ONES, 0)) {
        return -1;
    }
    if (!s->tied &&
        add_tensor(m, s, "output.weight", s->n_embd, m->n_vocab, MK_FILL_NORMAL, s->std)) {
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- metadata */

static bool is_tokenizer_key(const char *k) {
    return strncmp(k, "tokenizer.", 10) == 0;
}

/* Reads every tokenizer.* key of the vocab file into a new context `*out`
 * (caller frees); sets m->n_vocab. */
static int read_vocab(struct mk_model *m, const char *path, struct gguf_context **out) {
    struct gguf_init_params ip = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *src = gguf_init_from_file(path, ip);
    if (!src) {
        fprintf(stderr, "mkmodel: cannot read '%s' as GGUF\n", path);
        return -1;
    }
    int64_t tok = gguf_find_key(src, "tokenizer.ggml.tokens");
    if (tok < 0 || gguf_get_kv_type(src, tok) != GGUF_TYPE_ARRAY) {
        fprintf(stderr, "mkmodel: '%s' has no tokenizer.ggml.tokens array\n", path);
        gguf_free(src);
        return -1;
    }
    m->n_vocab = (int64_t)gguf_get_arr_n(src, tok);
    /* gguf_set_kv copies all keys with their types; drop the non-tokenizer ones
     * (general.*, the vocab file's own architecture keys) from a scratch copy. */
    struct gguf_context *tmp = gguf_init_empty();
    gguf_set_kv(tmp, src);
    for (int64_t i = gguf_get_n_kv(tmp) - 1; i >= 0; i--) {
        if (!is_tokenizer_key(gguf_get_key(tmp, i))) {
            gguf_remove_key(tmp, gguf_get_key(tmp, i));
        }
    }
    gguf_free(src);
    *out = tmp;
    return 0;
}

static void set_hparams(struct mk_model *m, const struct mk_spec *s) {
    char k[128];
    const char *a = s->arch;
    char name[128];
    if (s->name) {
        snprintf(name, sizeof(name), "%s", s->name);
    } else {
        snprintf(name, sizeof(name), "mkmodel %s", s->preset ? s->preset : a);
    }
    gguf_set_val_str(m->gguf, "general.architecture", a);
    gguf_set_val_str(m->gguf, "general.name", name);
    gguf_set_val_str(m->gguf, "general.description",
                     "synthetic random weights from slm tests/tools/mkmodel.c; not a trained "
                     "model");
    gguf_set_val_u32(m->gguf, "general.file_type",
                     s->type == GGML_TYPE_F32 ? LLAMA_FTYPE_ALL_F32 : LLAMA_FTYPE_MOSTLY_F16);
    gguf_set_val_u64(m->gguf, "mkmodel.seed", s->seed);

#define MK_U32(suffix, v)                                                                          \
    do {                                                                                           \
        snprintf(k, sizeof(k), "%s.%s", a, suffix);                                                \
        gguf_set_val_u32(m->gguf, k, (uint32_t)(v));                                               \
    } while (0)
#define MK_F32(suffix, v)                                                                          \
    do {                                                                                           \
        snprintf(k, sizeof(k), "%s.%s", a, suffix);                                                \
        gguf_set_val_f32(m->gguf, k, (float)(v));                                                  \
    } while (0)
    MK_U32("context_length", s->n_ctx);
    MK_U32("embedding_length", s->n_embd);
    MK_U32("block_count", s->n_layer);
    MK_U32("feed_forward_length", s->n_ff);
    MK_U32("attention.head_count", s->n_head);
    MK_U32("attention.head_count_kv", s->n_head_kv ? s->n_head_kv : s->n_head);
    MK_U32("rope.dimension_count", s->n_embd / s->n_head);
    MK_U32("vocab_size", m->n_vocab);
    MK_F32("rope.freq_base", s->rope_theta);
    MK_F32("attention.layer_norm_rms_epsilon", s->norm_eps);
#undef MK_U32
#undef MK_F32
}

/* ---------------------------------------------------------------- writing */

static int write_zeros(FILE *f, size_t n) {
    static const char zeros[64];
    while (n > 0) {
        size_t k = SLM_MIN(n, sizeof(zeros));
        if (fwrite(zeros, 1, k, f) != k) {
            return -1;
        }
        n -= k;
    }
    return 0;
}

/* Streams one tensor's values in chunks, converting to its type. */
static int write_tensor(FILE *f, const struct mk_tensor *mt, uint64_t seed, size_t index,
                        float *scratch, ggml_fp16_t *scratch16) {
    uint64_t state = seed * 0x2545f4914f6cdd1dULL + (uint64_t)index * 0x9e3779b97f4a7c15ULL;
    const size_t n = (size_t)ggml_nelements(mt->t);
    for (size_t off = 0; off < n; off += MK_CHUNK) {
        size_t k = SLM_MIN(MK_CHUNK, n - off);
        if (mt->fill == MK_FILL_ONES) {
            for (size_t i = 0; i < k; i++) {
                scratch[i] = 1.0f;
            }
        } else {
            rng_normal(&state, scratch, k, mt->std);
        }
        size_t wrote;
        if (mt->t->type == GGML_TYPE_F16) {
            ggml_fp32_to_fp16_row(scratch, scratch16, (int64_t)k);
            wrote = fwrite(scratch16, sizeof(ggml_fp16_t), k, f);
        } else {
            wrote = fwrite(scratch, sizeof(float), k, f);
        }
        if (wrote != k) {
            return -1;
        }
    }
    return 0;
}

static int write_gguf(const struct mk_model *m, const struct mk_spec *s, const char *path) {
    int rc = -1;
    float *scratch = malloc(MK_CHUNK * sizeof(float));
    ggml_fp16_t *scratch16 = malloc(MK_CHUNK * sizeof(ggml_fp16_t));
    FILE *f = fopen(path, "wb");
    if (!scratch || !scratch16 || !f) {
        fprintf(stderr, "mkmodel: cannot write '%s': %s\n", path, strerror(errno));
        goto done;
    }
    if (!gguf_write_to_file_ptr(m->gguf, f, true)) {
        fprintf(stderr, "mkmodel: writing the GGUF header of '%s' failed\n", path);
        goto done;
    }
    const size_t align = gguf_get_alignment(m->gguf);
    for (size_t i = 0; i < m->n_tensors; i++) {
        size_t nbytes = ggml_nbytes(m->tensors[i].t);
        if (write_tensor(f, &m->tensors[i], s->seed, i, scratch, scratch16) ||
            write_zeros(f, GGML_PAD(nbytes, align) - nbytes)) {
            fprintf(stderr, "mkmodel: writing '%s' failed: %s\n", path, strerror(errno));
            goto done;
        }
    }
    if (fflush(f) != 0 || ferror(f)) {
        fprintf(stderr, "mkmodel: writing '%s' failed: %s\n", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (f && fclose(f) != 0 && rc == 0) {
        fprintf(stderr, "mkmodel: closing '%s' failed: %s\n", path, strerror(errno));
        rc = -1;
    }
    free(scratch16);
    free(scratch);
    return rc;
}

/* ---------------------------------------------------------------- quantize */

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    /* Without --verbose only errors: the K-quant fallbacks that shapes like
     * n_embd 576 need are expected (the real SmolLM2 files have them too). */
    if (g_verbose || level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static int quantize(const char *in, const char *out, const struct mk_spec *s) {
    const struct mk_qtype *qt = find_qtype(s->quantize); /* checked by check_spec */
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = (int32_t)s->threads;
    qp.ftype = qt->ftype;
    uint32_t r = llama_model_quantize(in, out, &qp);
    llama_backend_free();
    if (r != 0) {
        fprintf(stderr, "mkmodel: llama_model_quantize to %s failed (%u)\n", s->quantize, r);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- main */

/* A bare vocab file name is looked up in $SLM_VOCAB_DIR. Says why it fails. */
static int resolve_vocab(const char *vocab, char *out, size_t cap) {
    if (strchr(vocab, '/') || slm_file_exists(vocab)) {
        snprintf(out, cap, "%s", vocab);
    } else {
        const char *dir = getenv("SLM_VOCAB_DIR");
        if (!dir || !*dir) {
            fprintf(stderr,
                    "mkmodel: vocabulary '%s' not found: pass --vocab PATH or set SLM_VOCAB_DIR "
                    "(e.g. SLM_VOCAB_DIR=$(scripts/llama-deps.sh)/share/slm-vocab)\n",
                    vocab);
            return -1;
        }
        slm_path_join(out, cap, dir, vocab);
    }
    if (!slm_file_exists(out)) {
        fprintf(stderr, "mkmodel: vocabulary file '%s' does not exist\n", out);
        return -1;
    }
    return 0;
}

static int make(const struct mk_spec *s) {
    struct mk_model *m = calloc(1, sizeof(*m));
    struct gguf_context *tok = NULL;
    char vocab[4096];
    char tmp[4096];
    char tmp_q[4096];
    int rc = 1;
    tmp[0] = tmp_q[0] = '\0';
    if (!m) {
        fprintf(stderr, "mkmodel: out of memory\n");
        return 1;
    }
    if (resolve_vocab(s->vocab, vocab, sizeof(vocab))) {
        goto done;
    }
    struct ggml_init_params gp = {
        .mem_size = MK_MAX_TENSORS * ggml_tensor_overhead(), .mem_buffer = NULL, .no_alloc = true};
    m->ggml = ggml_init(gp);
    m->gguf = gguf_init_empty();
    if (!m->ggml || !m->gguf) {
        fprintf(stderr, "mkmodel: out of memory\n");
        goto done;
    }
    if (read_vocab(m, vocab, &tok)) {
        goto done;
    }
    set_hparams(m, s); /* general.* and hyperparameters first, then the tokenizer */
    gguf_set_kv(m->gguf, tok);
    if (add_tensors(m, s)) {
        goto done;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->out);
    if (write_gguf(m, s, tmp)) {
        goto done;
    }
    if (s->quantize) {
        snprintf(tmp_q, sizeof(tmp_q), "%s.tmp-q", s->out);
        if (quantize(tmp, tmp_q, s)) {
            goto done;
        }
        unlink(tmp);
        if (rename(tmp_q, tmp) != 0) {
            fprintf(stderr, "mkmodel: rename to '%s' failed: %s\n", tmp, strerror(errno));
            goto done;
        }
    }
    if (rename(tmp, s->out) != 0) {
        fprintf(stderr, "mkmodel: rename to '%s' failed: %s\n", s->out, strerror(errno));
        goto done;
    }
    tmp[0] = tmp_q[0] = '\0';
    char size[32];
    slm_format_size(size, sizeof(size), (uint64_t)slm_file_size(s->out));
    fprintf(stderr,
            "mkmodel: wrote %s: %s, %lld layers, n_embd %lld, n_vocab %lld, %s, %.1fM params, "
            "%s, %s\n",
            s->out, s->arch, (long long)s->n_layer, (long long)s->n_embd, (long long)m->n_vocab,
            s->tied ? "tied" : "untied", (double)m->n_params / 1e6,
            s->quantize ? find_qtype(s->quantize)->name
                        : (s->type == GGML_TYPE_F32 ? "F32" : "F16"),
            size);
    rc = 0;
done:
    if (tmp[0]) {
        unlink(tmp);
    }
    if (tmp_q[0]) {
        unlink(tmp_q);
    }
    if (tok) {
        gguf_free(tok);
    }
    if (m->gguf) {
        gguf_free(m->gguf);
    }
    if (m->ggml) {
        ggml_free(m->ggml);
    }
    free(m);
    return rc;
}

int main(int argc, char **argv) {
    struct mk_spec s;
    parse_args(&s, argc, argv);
    check_spec(&s);
    g_verbose = s.verbose;
    return make(&s);
}
