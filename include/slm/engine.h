/*
 * slm/engine.h - the libllama wrapper: models, contexts, tokens, chat
 * formatting, LoRA adapters, sampling and generation with confidence signals.
 *
 * src/engine/ is the only place that includes llama.h: it converts llama.cpp's
 * return codes into slm statuses and routes its logs into SLM_LOG. Nothing
 * outside it sees a llama_* type.
 *
 * Ownership: a model outlives every context and adapter made from it.
 * Thread safety: a model may be shared by threads (read-only after load); a
 * context belongs to one thread at a time (the server's scheduler owns its
 * contexts; HTTP threads never touch one).
 */
#ifndef SLM_ENGINE_H
#define SLM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"

/* Initializes llama.cpp's backends and routes its logs into SLM_LOG. Safe to
 * call more than once and from several threads; every engine entry point that
 * needs it calls it. */
void slm_engine_init(void);
/* "0.5.0-dev (de3ff815)" style string naming the llama.cpp build. */
const char *slm_engine_version(void);

/* ---------------------------------------------------------------- models */

struct slm_model;

struct slm_model_params {
    int32_t n_gpu_layers; /* layers to offload when a GPU backend exists; -1 = all (default) */
    bool vocab_only;      /* load only the vocabulary (tokenize, chat format) */
};

struct slm_model_params slm_model_params_default(void);

/* Loads a GGUF model. Errors say which: file missing (SLM_E_NOT_FOUND), not a
 * GGUF (SLM_E_INVALID), architecture llama.cpp does not support
 * (SLM_E_UNSUPPORTED), anything else (SLM_E_BACKEND). If it fails nothing is
 * owed; on success one slm_model_free() is owed. */
int slm_model_load(const char *path, const struct slm_model_params *params, struct slm_model **out,
                   struct slm_err *err);
void slm_model_free(struct slm_model *model);

/* Facts about a model, from its GGUF metadata. Strings are NUL-terminated and
 * empty when unknown. */
struct slm_model_info {
    char arch[32];     /* general.architecture: "llama", "qwen2", ... */
    char name[128];    /* general.name */
    char ftype[48];    /* "Q8_0", "Q4_K - Medium", "all F32", ... */
    char license[128]; /* general.license */
    char desc[128];    /* llama.cpp's one-line description */
    uint64_t n_params;
    uint64_t size_bytes; /* bytes of tensor data */
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_vocab;
    int32_t n_tensors;
    int32_t n_ff;          /* feed-forward width; 0 when unknown (or varies by layer) */
    int32_t n_embd_head_k; /* key width of one head; 0 = n_embd / n_head */
    int32_t n_embd_head_v; /* value width of one head; 0 = n_embd / n_head */
    bool has_chat_template;
};

void slm_model_get_info(const struct slm_model *model, struct slm_model_info *out);

/* Reads the same facts from a GGUF file's header without loading weights
 * (what `slm show` and `slm list` use). n_params is summed from tensor shapes.
 * `chat_template`, if not NULL, receives the template text (may be empty).
 * SLM_E_INVALID when the file is not a GGUF. */
int slm_gguf_read_info(const char *path, struct slm_model_info *out, struct slm_buf *chat_template,
                       struct slm_err *err);

/* The model's chat template (tokenizer.chat_template), or NULL if it has none.
 * Borrowed, valid while the model is. */
const char *slm_model_chat_template(const struct slm_model *model);

/* Quantizes a GGUF model with llama.cpp's quantizer into `out`.
 * `type` is one of slm_quantize_types() (case-insensitive): Q4_K_M, Q5_K_M,
 * Q6_K, Q8_0, F16, ... `n_threads` 0 = all cores. SLM_E_INVALID names the
 * accepted types when `type` is unknown. */
int slm_quantize(const char *in, const char *out, const char *type, int32_t n_threads,
                 struct slm_err *err);
/* The type names slm_quantize accepts, NULL-terminated. */
const char *const *slm_quantize_types(void);

/* ---------------------------------------------------------------- tokens */

/* Tokenizes `text`. `add_bos` adds the model's BOS when its vocabulary asks
 * for one; `parse_special` turns "<|im_start|>" style text into control tokens.
 * Writes at most `cap` tokens; returns the number needed (>= 0) or a negative
 * status. Callers retry with a larger array when the result exceeds `cap`. */
int64_t slm_tokenize(const struct slm_model *model, struct slm_str text, bool add_bos,
                     bool parse_special, int32_t *tokens, size_t cap);
/* Appends the text of one token to `out` (special tokens rendered when
 * `special`). */
int slm_token_to_piece(const struct slm_model *model, int32_t token, bool special,
                       struct slm_buf *out);
bool slm_token_is_eog(const struct slm_model *model, int32_t token);
int32_t slm_model_n_vocab(const struct slm_model *model);
/* The model's end-of-sequence token (what a tuned label ends with), -1 when
 * it has none. */
int32_t slm_model_eos(const struct slm_model *model);

/* ---------------------------------------------------------------- chat */

struct slm_chat_msg {
    const char *role; /* "system", "user", "assistant", "tool" */
    const char *content;
};

/* The ChatML template slm uses for models that have none (DESIGN.md). */
extern const char slm_chatml_template[];

/*
 * Formats messages into a prompt with the model's chat template, or with
 * `tmpl` when not NULL (a Jinja template llama.cpp recognises or a builtin
 * name such as "chatml"). Models without a template use ChatML. Appends to
 * `out`; with `add_assistant` the prompt ends where the assistant's reply
 * starts. SLM_E_UNSUPPORTED when llama.cpp does not know the template.
 */
int slm_chat_format(const struct slm_model *model, const char *tmpl,
                    const struct slm_chat_msg *msgs, size_t n_msgs, bool add_assistant,
                    struct slm_buf *out, struct slm_err *err);

/* ---------------------------------------------------------------- adapters */

struct slm_adapter;

/* Loads a GGUF LoRA adapter for `model`. SLM_E_INVALID when the file is not a
 * LoRA adapter for this model's architecture and shapes. One
 * slm_adapter_free() is owed (before the model is freed). */
int slm_adapter_load(struct slm_model *model, const char *path, struct slm_adapter **out,
                     struct slm_err *err);
void slm_adapter_free(struct slm_adapter *adapter);
/* Reads only `path`'s GGUF header: SLM_OK when it is a LoRA adapter (general.type
 * "adapter"), SLM_E_NOT_FOUND when it cannot be read, SLM_E_INVALID (saying what it
 * is instead) otherwise. Whether it fits a model is known only when it is loaded. */
int slm_adapter_probe(const char *path, struct slm_err *err);

/* ---------------------------------------------------------------- contexts */

struct slm_ctx;

struct slm_ctx_params {
    uint32_t n_ctx;          /* tokens of context; 0 = min(training context, 4096) */
    uint32_t n_batch;        /* tokens per llama_decode; 0 = 512 */
    uint32_t n_ubatch;       /* physical batch; 0 = min(n_batch, 512) */
    uint32_t n_seq_max;      /* parallel sequences; 0 = 1 */
    int32_t n_threads;       /* generation threads; 0 = physical cores */
    int32_t n_threads_batch; /* prompt threads; 0 = n_threads */
    bool embeddings;         /* pooled embeddings instead of logits */
    bool kv_f32;             /* F32 KV cache and F32 attention (no flash attention), for exact
                                comparisons; default F16 with flash attention where supported */
};

struct slm_ctx_params slm_ctx_params_default(void);

/* If init fails nothing is owed; on success one slm_ctx_free() is owed. */
int slm_ctx_init(struct slm_model *model, const struct slm_ctx_params *params, struct slm_ctx **out,
                 struct slm_err *err);
void slm_ctx_free(struct slm_ctx *ctx);
uint32_t slm_ctx_n_ctx(const struct slm_ctx *ctx);
struct slm_model *slm_ctx_model(const struct slm_ctx *ctx);
/* Sets the adapters applied to every decode of this context (replacing any
 * earlier set; n = 0 clears). Adapters are borrowed. The cached prompt is
 * dropped when the set changes. */
int slm_ctx_set_adapters(struct slm_ctx *ctx, struct slm_adapter *const *adapters,
                         const float *scales, size_t n, struct slm_err *err);
/* Forgets the cached prompt (the next generation starts from an empty KV). */
void slm_ctx_reset(struct slm_ctx *ctx);

/* ---------------------------------------------------------------- sampling */

struct slm_sample_params {
    float temperature;       /* 0 = greedy */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    uint32_t seed;           /* SLM_SEED_RANDOM for a random seed */
    float repeat_penalty;    /* 1 = off */
    int32_t repeat_last_n;   /* tokens the penalties look back; -1 = whole context */
    float presence_penalty;  /* 0 = off */
    float frequency_penalty; /* 0 = off */
    const char *grammar;     /* GBNF with a "root" rule, or NULL; borrowed */
    /* llama.cpp's infill sampler after top-k/top-p/min-p (llama-server's "infill" in
     * "samplers"): ends a fill-in-the-middle answer when end-of-generation is likely and
     * merges candidates that share a prefix. */
    bool infill;
};

#define SLM_SEED_RANDOM 0xFFFFFFFFu

/* Ollama's defaults: temperature 0.8, top_k 40, top_p 0.9, min_p 0,
 * repeat_penalty 1.1 over the last 64 tokens, random seed. */
struct slm_sample_params slm_sample_params_default(void);

/* ---------------------------------------------------------------- grammars
 * llama.cpp's own GBNF parser and matcher, for a grammar made by the grammar
 * module (slm/grammar.h) or written by hand. */

/*
 * Asks llama.cpp whether it accepts `gbnf` (with a `root` rule) for `model`'s
 * vocabulary: builds its grammar sampler and frees it. A vocab-only model
 * (slm_model_params.vocab_only) is enough. SLM_OK, or SLM_E_INVALID when
 * llama.cpp rejects the grammar (its parser logs the reason), or when an
 * argument is NULL.
 */
int slm_model_check_grammar(const struct slm_model *model, const char *gbnf, struct slm_err *err);

/*
 * Runs `len` bytes of `text` through llama.cpp's grammar matcher for `gbnf`,
 * one byte-sized token at a time (what a model could write), then asks
 * whether the grammar is complete. SLM_OK when the grammar accepts the whole
 * text; SLM_E_INVALID naming the first byte it rejects; SLM_E_INCOMPLETE when
 * the text is only a prefix of something it accepts; SLM_E_UNSUPPORTED when
 * the vocabulary lacks a single-byte token for some byte. The test suite's
 * proof that generated grammars mean what they should; also a debugging aid
 * (llama.cpp's gbnf-validator).
 */
int slm_model_match_grammar(const struct slm_model *model, const char *gbnf, const char *text,
                            size_t len, struct slm_err *err);

/* ---------------------------------------------------------------- generation */

enum slm_finish {
    SLM_FINISH_NONE = 0,
    SLM_FINISH_STOP,    /* end-of-generation token or a stop string */
    SLM_FINISH_LENGTH,  /* max_tokens reached */
    SLM_FINISH_CONTEXT, /* the context filled up */
    SLM_FINISH_ABORTED, /* the callback asked to stop */
};

const char *slm_finish_name(enum slm_finish f); /* "stop", "length", ... */

#define SLM_MAX_TOP_LOGPROBS 20

struct slm_top_logprob {
    int32_t token;
    float logprob;
};

/* One step of output, handed to the callback. `text` holds the bytes that are
 * now safe to show (whole UTF-8 code points, not part of a possible stop
 * string); it may be empty when bytes are held back. */
struct slm_token_event {
    const char *text;
    size_t len;
    int32_t token;
    float logprob; /* log-probability of `token` under the model (before temperature) */
    const struct slm_top_logprob *top; /* n_top best alternatives, best first */
    int n_top;
};

/* Return 0 to continue, non-zero to stop (finish = SLM_FINISH_ABORTED). */
typedef int (*slm_token_cb)(const struct slm_token_event *ev, void *user);

/* Stop strings per request, everywhere: CLI, Modelfile, APIs, scheduler. */
#define SLM_MAX_STOP 16
#define SLM_MAX_STOP_LEN 1024 /* bytes of one stop string */

struct slm_gen_params {
    struct slm_sample_params sample;
    int32_t max_tokens;      /* -1 = until end-of-generation or the context is full */
    const char *const *stop; /* stop strings, borrowed; the match is not output */
    size_t n_stop;
    int32_t n_top_logprobs; /* alternatives per token in events, 0..SLM_MAX_TOP_LOGPROBS */
    bool logprobs;          /* compute token log-probs (events and stats) */
    bool ignore_eos;        /* never sample end-of-generation tokens (benchmarks) */
    /* Seconds of sampling under `sample.grammar` one request may use (the
     * grammar's cost per token depends on the grammar, and it runs where
     * every other sequence waits); past it the request ends with
     * SLM_E_TIMEOUT. 0 = no budget. */
    double sample_budget;
};

struct slm_gen_params slm_gen_params_default(void);

struct slm_gen_stats {
    int32_t n_prompt; /* prompt tokens */
    int32_t n_cached; /* of which reused from the context's cache */
    int32_t n_gen;    /* generated tokens */
    double t_prompt;  /* seconds evaluating the prompt */
    double t_gen;     /* seconds generating (after the prompt) */
    enum slm_finish finish;
    double logprob_sum; /* with gen_params.logprobs: sum over generated tokens */
    float logprob_min;  /* lowest token log-prob, 0 when none */
};

/*
 * Evaluates `prompt` on sequence 0 of `ctx` and generates until a stop
 * condition, calling `cb` (may be NULL) for every token. The part of `prompt`
 * that matches what the context already holds is reused, so a chat that grows
 * turn by turn only evaluates the new tokens.
 *
 * A prompt longer than the context fails with SLM_E_OVERFLOW and a message
 * with both numbers; nothing is truncated. `stats` (may be NULL) is filled
 * either way.
 */
int slm_generate(struct slm_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                 const struct slm_gen_params *params, slm_token_cb cb, void *user,
                 struct slm_gen_stats *stats, struct slm_err *err);

/* Tokenizes `text` (BOS added when the model wants one, special tokens parsed)
 * into a malloc'd array. At most `max` tokens (0 = no cap); SLM_E_OVERFLOW
 * past it with both numbers in the message. Caller frees *out. */
int slm_tokenize_alloc(const struct slm_model *model, struct slm_str text, bool add_bos,
                       int32_t **out, size_t *n_out, size_t max, struct slm_err *err);

/* ---------------------------------------------------------------- fill in the middle */

#define SLM_FIM_MAX_TOKENS (1 << 20) /* tokens of one fill-in-the-middle prompt */

/* A file of repository context (llama-server's input_extra). */
struct slm_fim_chunk {
    struct slm_str filename; /* NULL ptr = "tmp" */
    struct slm_str text;
};

struct slm_fim_params {
    struct slm_str prefix; /* the text before the cursor */
    struct slm_str suffix; /* the text after it */
    struct slm_str prompt; /* the start of the middle (llama.vim: the line up to the cursor) */
    const struct slm_fim_chunk *extra; /* borrowed */
    size_t n_extra;
    /* The sizes llama-server cuts long inputs by: the prefix keeps its last 3/4 of n_batch
     * tokens, the suffix its first n_batch/4 less the prompt, the extra context its last
     * n_ctx - n_batch - 2 x n_predict. */
    int32_t n_batch;   /* default 2048 */
    int32_t n_predict; /* default -1 */
    int32_t n_ctx;     /* default 4096 */
    bool spm;          /* suffix before prefix (llama-server --spm-infill) */
};

/* Empty strings, no extra context, sizes as documented. */
struct slm_fim_params slm_fim_params_default(void);

/*
 * The prompt llama-server's /infill decodes for these inputs, as a malloc'd
 * token array (caller frees *out): [extra context] [BOS] FIM_PRE prefix
 * prompt FIM_SUF suffix FIM_MID, with the model's FIM tokens (and its
 * repository and file-separator tokens when it has them). SLM_E_UNSUPPORTED
 * (the message names what is missing) for a model without FIM tokens,
 * SLM_E_TOO_LARGE past SLM_FIM_MAX_TOKENS.
 */
int slm_fim_tokens(const struct slm_model *model, const struct slm_fim_params *params,
                   int32_t **out, size_t *n_out, struct slm_err *err);

/* 0 when the model has fill-in-the-middle tokens; otherwise writes (snprintf-style) what
 * it lacks and returns the length. */
size_t slm_fim_missing(const struct slm_model *model, char *out, size_t cap);

/* ---------------------------------------------------------------- stop filter */

/*
 * Streams text out of token pieces: holds back bytes that end in a partial
 * UTF-8 code point or could be the start of a stop string, and reports a
 * full stop-string match. Used by slm_generate and by the server.
 */
struct slm_stop_filter {
    const char *const *stop;
    size_t n_stop;
    struct slm_buf pending; /* bytes not yet released */
    bool stopped;
};

void slm_stop_filter_init(struct slm_stop_filter *f, const char *const *stop, size_t n_stop);
void slm_stop_filter_free(struct slm_stop_filter *f);
/* Adds bytes; appends what is now safe to release to `out`. Sets f->stopped
 * when a stop string matched (the match and anything after it are dropped). */
int slm_stop_filter_push(struct slm_stop_filter *f, const char *p, size_t n, struct slm_buf *out);
/* At the end: releases everything still held (a partial stop string is text). */
int slm_stop_filter_flush(struct slm_stop_filter *f, struct slm_buf *out);

#endif /* SLM_ENGINE_H */
