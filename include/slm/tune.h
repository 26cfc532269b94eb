/*
 * slm/tune.h - teaching a small model the job: datasets, a training graph for
 * llama-family decoders built from GGUF weights, LoRA and full fine-tuning
 * with AdamW, adapter GGUF files llama.cpp loads, fusing an adapter into its
 * base, and checking a dataset before training on it.
 *
 * What it is not: a general autodiff framework. The graph covers the decoders
 * slm_tune_arch_supported() names (llama / mistral / SmolLM as "llama",
 * qwen2 with QKV bias, qwen3 with QK-norm); every other architecture is
 * refused with SLM_E_UNSUPPORTED and a message that lists those.
 *
 * Ownership: every _init or _load that succeeds owes one matching _free;
 * if it fails nothing is owed. A trainer borrows its model and datasets:
 * they outlive it.
 * Thread safety: objects belong to one thread at a time; a trainer uses
 * `n_threads` worker threads inside its own calls.
 */
#ifndef SLM_TUNE_H
#define SLM_TUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm/base.h"
#include "slm/json.h"

struct slm_model;

/* ---------------------------------------------------------------- targets */

/* Projections LoRA can attach to (a bit set). */
enum slm_tune_target {
    SLM_TUNE_Q = 1u << 0,
    SLM_TUNE_K = 1u << 1,
    SLM_TUNE_V = 1u << 2,
    SLM_TUNE_O = 1u << 3,
    SLM_TUNE_GATE = 1u << 4,
    SLM_TUNE_UP = 1u << 5,
    SLM_TUNE_DOWN = 1u << 6,
    SLM_TUNE_ALL = 0x7fu,
};

/* Parses "q,k,v,o,gate,up,down" (any subset, comma separated; "all" for the
 * seven) into a bit set. SLM_E_INVALID names the unknown entry. */
int slm_tune_targets_parse(const char *list, uint32_t *out, struct slm_err *err);
/* Writes "q,k,v" style text for a bit set (snprintf semantics). */
size_t slm_tune_targets_format(uint32_t targets, char *out, size_t cap);

/* True for the architectures the training graph implements. */
bool slm_tune_arch_supported(const char *arch);

/* ---------------------------------------------------------------- model */

/* How frozen base weights are held in memory while training. */
enum slm_tune_base_type {
    /* F32 and Q8_0 stay as stored (the fast paths for backward through
     * mul_mat on CPU); F16, BF16 and other quantized types are dequantized to
     * F32 at load. */
    SLM_TUNE_BASE_AUTO = 0,
    SLM_TUNE_BASE_F32,  /* dequantize everything to F32 */
    SLM_TUNE_BASE_KEEP, /* keep every tensor in its stored type (slow backward for F16/K-quants) */
    SLM_TUNE_BASE_Q8_0, /* requantize 2-D weights to Q8_0 (least memory of the fast paths) */
};

struct slm_tune_model_params {
    enum slm_tune_base_type base_type;
    bool trainable; /* full fine-tuning: every weight F32 and trainable */
    /* Where training runs, from ggml's device registry (backends loaded
     * dynamically by a system llama.cpp included): NULL or "auto" = the first
     * GPU or integrated GPU if there is one, else the CPU; "cpu"; or a device
     * name as ggml reports it ("Vulkan0", "CUDA0"; case-insensitive). An
     * unknown name is SLM_E_INVALID and the message lists the devices. Ops
     * the device cannot run fall back to the CPU. */
    const char *device;
    /* On the CPU: run through ggml_backend_sched like a GPU device instead of
     * the direct CPU path (which is faster; for tests and measurement).
     * `slm tune` sets it from SLM_TUNE_CPU_SCHED. */
    bool cpu_sched;
};

struct slm_tune_model_params slm_tune_model_params_default(void);

/* The training view of a GGUF model: its weights as ggml tensors plus its
 * vocabulary (through the engine) for tokenizing data. */
struct slm_tune_model;

/* Loads `path`. SLM_E_UNSUPPORTED (message lists the supported
 * architectures) for other decoders, SLM_E_INVALID for a malformed file,
 * SLM_E_NOT_FOUND when it does not exist. */
int slm_tune_model_load(const char *path, const struct slm_tune_model_params *params,
                        struct slm_tune_model **out, struct slm_err *err);
void slm_tune_model_free(struct slm_tune_model *model);

struct slm_tune_model_info {
    char arch[32];
    int32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, head_dim, n_ctx_train;
    uint64_t n_params;
    char base_type[16];    /* how the 2-D weights are held: "f32", "q8_0", "mixed" */
    char device[64];       /* the device training runs on, as ggml names it ("CPU", "Vulkan0") */
    char device_desc[128]; /* its description ("NVIDIA ...", "llvmpipe ...") */
    bool device_is_cpu;    /* the CPU device (no GPU in use) */
    uint32_t n_weights_on_device, n_weights; /* weight tensors held on the device / in all */
};

void slm_tune_model_get_info(const struct slm_tune_model *model, struct slm_tune_model_info *out);
/* The engine model (vocabulary only) used for tokenizing. Borrowed. */
struct slm_model *slm_tune_model_vocab(const struct slm_tune_model *model);
/* The end-of-sequence token (tokenizer.ggml.eos_token_id), -1 when none. */
int32_t slm_tune_model_eos(const struct slm_tune_model *model);
/* The same from a GGUF file's header; -1 when absent or unreadable. */
int32_t slm_tune_gguf_eos(const char *path);

/* ---------------------------------------------------------------- records */

/* Dataset file formats. AUTO looks at the first record's keys. */
enum slm_data_format {
    SLM_DATA_AUTO = 0,
    SLM_DATA_PROMPT_COMPLETION, /* JSONL {"prompt","completion"} */
    SLM_DATA_MESSAGES,          /* JSONL {"messages":[{role,content}...]} */
    SLM_DATA_TEXT,              /* JSONL {"text"}: loss on every token */
    SLM_DATA_ROWS,              /* JSONL objects or CSV rows + a Liquid prompt template
                                 * (variables: the row's fields); every record is a row
                                 * when a template is given */
};

const char *slm_data_format_name(enum slm_data_format f);

/* One example, as read from the file (before tokenizing). */
struct slm_data_record {
    size_t line;      /* 1-based line where the record starts in its file */
    char *prompt;     /* text the model reads (no loss); "" for text records; for
                       * messages, the conversation before the last assistant turn as JSON */
    char *completion; /* text the model learns to write; for messages, the last assistant turn */
    json_t *row;      /* the record as an object (JSONL line, or CSV row of strings); owned */
    const json_t *messages; /* messages records: the array inside `row`; else NULL */
    char *raw; /* the record's original bytes (one JSONL line / CSV record), for --fix */
    /* The completion field is JSON null (read with `keep_unlabelled`): the
     * contractor gave no label (`slm label`). `completion` is then "". */
    bool unlabelled;
    /* Then the row's "<field>_error" string ("label_error" for the field
     * "label"), or NULL when it has none; borrowed from `row`. */
    const char *label_error;
};

struct slm_data_records {
    struct slm_data_record *items;
    size_t n;
    enum slm_data_format format; /* the format actually read */
    bool csv;                    /* read from CSV */
    char *csv_header;            /* CSV: the header line as read; else NULL */
};

/* Options for reading rows. */
struct slm_data_read_params {
    enum slm_data_format format;
    const char *prompt_template;     /* rows: Liquid file rendering the prompt from a row */
    const char *completion_field;    /* rows: field holding the completion (default "completion") */
    const char *completion_template; /* rows: Liquid file rendering the completion, instead */
    size_t max_records;              /* 0 = 10 million */
    size_t max_bytes;                /* file cap; 0 = 1 GiB */
    bool rows_only; /* rows: keep each record's `row` and render nothing (prompt and completion
                     * stay NULL): unlabelled input for `slm label` / `slm distill` */
    /* A completion field that is JSON null (what `slm label` writes when the
     * contractor gave no label): false = SLM_E_INVALID naming the line, the
     * field and its "<field>_error" text (training refuses such data); true =
     * the record is kept and marked `unlabelled`, for `slm data check`. */
    bool keep_unlabelled;
};

struct slm_data_read_params slm_data_read_params_default(void);

/* Parses a dataset from memory. `name` appears in errors, which name the
 * line and field: "train.jsonl:14: field 'completion' must be a string".
 * On success the caller owes slm_data_records_free(). */
int slm_data_parse(const char *data, size_t len, const char *name,
                   const struct slm_data_read_params *params, struct slm_data_records *out,
                   struct slm_err *err);
/* Reads and parses a file (".csv" files are rows). */
int slm_data_read(const char *path, const struct slm_data_read_params *params,
                  struct slm_data_records *out, struct slm_err *err);
void slm_data_records_free(struct slm_data_records *recs);
/* Moves every record whose string field `field` hashes into the held-out set
 * (first byte of sha256(value) divisible by `mod`: DESIGN.md's banking77 dev
 * split is field "text", mod 10) from `recs` into `held`. SLM_E_INVALID names
 * the line of a record without that string field. */
int slm_data_split_hash(struct slm_data_records *recs, const char *field, uint32_t mod,
                        struct slm_data_records *held, struct slm_err *err);

/* ---------------------------------------------------------------- check */

enum slm_data_issue_kind {
    SLM_ISSUE_DUPLICATE = 0,   /* warning: same prompt and completion as an earlier record */
    SLM_ISSUE_NEAR_DUPLICATE,  /* warning: equal after lowercasing and dropping punctuation */
    SLM_ISSUE_CONTRADICTION,   /* error: the same input with different outputs */
    SLM_ISSUE_NOT_A_LABEL,     /* error: output not in the label set */
    SLM_ISSUE_BAD_JSON,        /* error: output should be JSON and does not parse */
    SLM_ISSUE_IN_VALID,        /* error: the input is also in the validation set */
    SLM_ISSUE_EMPTY,           /* error: nothing to learn */
    SLM_ISSUE_TOO_LONG,        /* warning: longer than the context (will be cut) */
    SLM_ISSUE_NO_LABEL,        /* error: the completion is null: the contractor gave no label */
    SLM_ISSUE_LOW_AGREEMENT,   /* warning: the row's "agreement" is below min_agreement */
    SLM_ISSUE_CHUNK_LEAK,      /* error: same ("source", "chunk") as a validation record */
    SLM_ISSUE_SOURCE_IN_VALID, /* warning: a training "source" file also in the validation set;
                                * one per file: `idx` its first training record, `other` its
                                * first validation record */
    SLM_ISSUE_COUNT
};

const char *slm_data_issue_name(enum slm_data_issue_kind k);
bool slm_data_issue_is_error(enum slm_data_issue_kind k);

struct slm_data_issue {
    enum slm_data_issue_kind kind;
    size_t idx;   /* record index */
    size_t other; /* the record it clashes with (duplicates, contradictions; the validation
                   * record for IN_VALID, CHUNK_LEAK, SOURCE_IN_VALID) */
    size_t n_here, n_there; /* SOURCE_IN_VALID: records from that file in the checked set and in
                             * the validation set; else 0 */
};

struct slm_data_check_params {
    const struct slm_model *vocab; /* for token lengths; NULL = skip them */
    uint32_t n_ctx;                /* context to compare lengths with; 0 = none */
    int32_t eos;                   /* counted in lengths; -1 = none */
    const char *chat_template;     /* messages records */
    const char *const *labels;     /* allowed outputs, or NULL */
    size_t n_labels;
    int json;                             /* 1 = outputs must be JSON, -1 = never, 0 = auto
                                           * (when 80% of them look like JSON) */
    const struct slm_data_records *valid; /* validation set to check overlap with, or NULL:
                                           * the same input, and for rows that carry "source"
                                           * and "chunk" (`slm distill --docs`) the same chunk
                                           * and the same source file */
    /* Rows with a number field "agreement" (`slm label --votes`) below this,
     * compared at two decimals (2 of 3 votes, 0.667, counts as 0.67), are a
     * warning. 0 = 0.67 (2 of 3 votes pass, 1 of 2 does not); negative = off. */
    double min_agreement;
};

#define SLM_DATA_HIST_BUCKETS 12 /* token lengths <=16, <=32, ... <=16384, more */

struct slm_data_check_report {
    size_t n, distinct_inputs, distinct_outputs;
    struct slm_data_issue *issues;
    size_t n_issues, cap_issues;
    size_t count[SLM_ISSUE_COUNT];
    size_t n_errors, n_warnings;
    uint8_t *drop; /* per record: 1 when --fix drops it */
    size_t n_dropped;
    bool checked_json;
    bool have_lengths;
    size_t hist[SLM_DATA_HIST_BUCKETS];
    size_t max_len;
    uint64_t sum_len;
};

/* Checks records; `r` is filled (and owes slm_data_check_report_free) even
 * when problems are found: the return value is SLM_OK unless the check
 * itself failed. */
int slm_data_check(const struct slm_data_records *recs, const struct slm_data_check_params *params,
                   struct slm_data_check_report *r, struct slm_err *err);
void slm_data_check_report_free(struct slm_data_check_report *r);
/* Writes the records not marked in `drop` (NULL = all) in their original form
 * (CSV keeps its header), atomically. */
int slm_data_write_kept(const char *path, const struct slm_data_records *recs, const uint8_t *drop,
                        struct slm_err *err);

/* ---------------------------------------------------------------- dataset */

/* Tokenized examples: tokens plus, per token, whether the loss covers it. */
struct slm_dataset;

struct slm_dataset_params {
    uint32_t n_ctx;            /* longer examples are cut (and counted): the start of the
                                * prompt goes, the completion stays; text records lose
                                * their end; 0 = no cut */
    int32_t eos;               /* token ending every completion (a target); -1 = none */
    const char *chat_template; /* messages: Jinja or builtin name; NULL = the model's */
};

struct slm_dataset_params slm_dataset_params_default(void);

/* Tokenizes records with `model`'s vocabulary. */
int slm_dataset_init(const struct slm_data_records *recs, const struct slm_model *vocab,
                     const struct slm_dataset_params *params, struct slm_dataset **out,
                     struct slm_err *err);
void slm_dataset_free(struct slm_dataset *ds);
size_t slm_dataset_size(const struct slm_dataset *ds);
/* Example `i`: borrowed arrays of `*n` tokens and loss flags (1 = the token is
 * a target). NULL when `i` is out of range. */
const int32_t *slm_dataset_example(const struct slm_dataset *ds, size_t i, const uint8_t **train,
                                   size_t *n);
/* Tokens seen and the number cut by n_ctx. */
void slm_dataset_stats(const struct slm_dataset *ds, uint64_t *n_tokens, uint64_t *n_target,
                       size_t *n_truncated);
/* Moves about one example in `every` (chosen by a seeded hash of its index)
 * into a new dataset `*valid`; they leave `ds`. */
int slm_dataset_split(struct slm_dataset *ds, uint32_t every, uint64_t seed,
                      struct slm_dataset **valid, struct slm_err *err);

/* ---------------------------------------------------------------- trainer */

enum slm_tune_method {
    SLM_TUNE_LORA = 0,
    SLM_TUNE_FULL = 1,
};

struct slm_tune_params {
    enum slm_tune_method method;
    /* LoRA */
    uint32_t rank;    /* 0 = 16 */
    float alpha;      /* 0 = 2 * rank */
    float dropout;    /* on the LoRA input, 0..0.9; 0 = off */
    uint32_t targets; /* enum slm_tune_target bits; 0 = all seven */
    /* batches */
    uint32_t n_ctx;      /* tokens per row; 0 = 512 */
    uint32_t batch;      /* rows per micro-batch; 0 = 1 */
    uint32_t grad_accum; /* micro-batches per optimizer step; 0 = 1 */
    bool no_packing;     /* one example per row (padded) instead of packing */
    /* schedule */
    uint32_t epochs;         /* 0 = 1 (ignored when steps is set) */
    uint32_t steps;          /* optimizer steps; 0 = from epochs */
    float lr;                /* peak learning rate; 0 = 2e-4 (LoRA) / 1e-4 (full) */
    float lr_min;            /* cosine floor as a fraction of lr; default 0.1 */
    uint32_t warmup;         /* warm-up steps; 0 = 5% of the steps */
    float weight_decay;      /* AdamW; default 0 */
    float beta1, beta2, eps; /* 0 = 0.9, 0.999, 1e-8 */
    float grad_clip;         /* global L2 norm; 0 = 1.0; negative = off */
    uint64_t seed;           /* 0 = 42 */
    /* evaluation and checkpoints */
    uint32_t eval_every;       /* steps between validation passes; 0 = 10% of the steps */
    uint32_t eval_max_batches; /* validation batches per pass; 0 = all */
    const char *checkpoint;    /* path of the checkpoint file (NULL = none) */
    uint32_t checkpoint_every; /* steps; 0 = every 5% of the run, at most once a minute (and at the
                                  end, on abort) */
    int32_t n_threads;         /* 0 = 1 for models under 20M parameters, else physical cores */
    /* Kernel choices (docs/internals/tune.md), for tests and measurement; the
     * math is the same either way. `slm tune` sets them from
     * SLM_TUNE_NO_TRANSPOSE and SLM_TUNE_NO_REWRITE. */
    bool no_weight_transpose; /* no transposed copies of frozen weights: less memory, slower */
    bool no_graph_rewrite;    /* keep ggml's own out_prod / mul_mat nodes */
};

struct slm_tune_params slm_tune_params_default(void);

/* What the trainer reports after every step and validation pass. */
struct slm_tune_progress {
    uint32_t step, n_steps; /* steps done, total */
    double epoch;           /* fractional epoch */
    float loss;             /* training loss of this step (mean over target tokens) */
    float valid_loss;       /* last validation loss, NAN before the first */
    bool did_eval;          /* a validation pass ran at this step */
    float lr;
    float grad_norm;     /* before clipping */
    double tokens_per_s; /* tokens processed per second (incl. prompt tokens) */
    double eta_s;        /* seconds left */
    double elapsed_s;
    uint64_t tokens; /* tokens processed so far */
};

/* Return non-zero to stop (the trainer writes a checkpoint and returns
 * SLM_E_ABORTED). */
typedef int (*slm_tune_progress_cb)(const struct slm_tune_progress *p, void *user);

struct slm_trainer;

/* Builds the training graph. `valid` may be NULL. The model must be loaded
 * with `trainable` for SLM_TUNE_FULL. */
int slm_trainer_init(struct slm_tune_model *model, const struct slm_dataset *train,
                     const struct slm_dataset *valid, const struct slm_tune_params *params,
                     struct slm_trainer **out, struct slm_err *err);
void slm_trainer_free(struct slm_trainer *tr);
/* Restores weights, optimizer moments and position from a checkpoint written
 * by the same configuration. SLM_E_INVALID when it does not match. */
int slm_trainer_resume(struct slm_trainer *tr, const char *path, struct slm_err *err);
/* Trains until the last step or until `cb` asks to stop. */
int slm_trainer_run(struct slm_trainer *tr, slm_tune_progress_cb cb, void *user,
                    struct slm_err *err);
/* Mean loss over the validation set (or `ds` when not NULL) with the current
 * weights; NAN when there is nothing to evaluate. */
int slm_trainer_eval(struct slm_trainer *tr, const struct slm_dataset *ds, float *loss,
                     struct slm_err *err);
/* LoRA: writes the adapter as GGUF that llama_adapter_lora_init loads.
 * Full: writes a complete GGUF model (base metadata, trained weights). */
int slm_trainer_save(struct slm_trainer *tr, const char *path, struct slm_err *err);
/* The loss history: arrays borrowed until the next run/free. */
void slm_trainer_history(const struct slm_trainer *tr, const float **train_loss, size_t *n_train,
                         const float **valid_loss, const uint32_t **valid_step, size_t *n_valid);
uint32_t slm_trainer_n_steps(const struct slm_trainer *tr);
/* Number of trainable parameters. */
uint64_t slm_trainer_n_trainable(const struct slm_trainer *tr);

/*
 * Logits of the training graph's forward pass for one sequence of `n`
 * tokens (positions 0..n-1): `logits` receives n * n_vocab floats, row per
 * token. With a trainer, its current LoRA weights apply; `tr` may be NULL to
 * run the bare base model.
 */
int slm_tune_forward_logits(struct slm_tune_model *model, struct slm_trainer *tr,
                            const int32_t *tokens, size_t n, float *logits, struct slm_err *err);

/* ---------------------------------------------------------------- scoring */

/*
 * Scores candidate completions with libllama itself (the inference path, not
 * the training graph): the log-probability of each candidate's tokens after a
 * prompt. Used to measure label accuracy before and after tuning and to check
 * fused models. A thin owner of a model (+ adapter) loaded from paths and an
 * engine scorer over them (slm/score.h): every candidate in one decode.
 */
struct slm_tune_scorer;

/* `adapter` may be NULL. `n_ctx` must hold the longest prompt plus all
 * candidates together. */
int slm_tune_scorer_init(const char *model, const char *adapter, uint32_t n_ctx,
                         uint32_t n_candidates, int32_t n_threads, struct slm_tune_scorer **out,
                         struct slm_err *err);
void slm_tune_scorer_free(struct slm_tune_scorer *s);
/* scores[k] = sum of log p(cand[k][j] | prompt, cand[k][<j]). Candidate
 * arrays are borrowed. */
int slm_tune_scorer_score(struct slm_tune_scorer *s, const int32_t *prompt, size_t n_prompt,
                          const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                          float *scores, struct slm_err *err);
/* The best candidate, best first: slm_scorer_best (slm/score.h) with max_rest
 * (HUGE_VAL: stop once the best is known). */
int slm_tune_scorer_best(struct slm_tune_scorer *s, const int32_t *prompt, size_t n_prompt,
                         const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                         double max_rest, size_t *best, float *scores, bool *exact,
                         struct slm_err *err);

struct slm_tune_eval_params {
    size_t max_examples;       /* 0 = all */
    size_t max_labels;         /* more distinct completions than this: no accuracy; 0 = 256 */
    uint32_t n_ctx;            /* longest prompt; 0 = 1024 */
    int32_t n_threads;         /* 0 = physical cores */
    bool add_eos;              /* completions end with EOS, as in training (default true) */
    const char *chat_template; /* messages records */
    /* Called after each example's labels are scored (label sets only), or NULL:
     * `i` the example, `logp[k]` the log-probability of `labels[k]` (k <
     * n_labels; -INFINITY for a label the search left unscored), `best` the
     * label picked, `n_prompt` the prompt's tokens. What `slm eval` reads per
     * row, so both measure the same thing. Arrays are borrowed for the call.
     * A non-zero return stops the run (SLM_E_ABORTED). */
    int (*on_example)(void *user, size_t i, const char *const *labels, const float *logp,
                      size_t n_labels, size_t best, size_t n_prompt);
    void *user;
    /* Skips the loss (one more scoring per example) when only labels matter. */
    bool no_loss;
    /* The best label is found best first (slm_scorer_best's max_rest): HUGE_VAL (the
     * default) stops as soon as it is known; a share such as 1e-2 goes on until the
     * unscored labels hold at most that share of the mass, for a confidence (the best
     * label's softmax over the set) exact to that fraction; 0 scores every label. */
    double max_rest;
};

struct slm_tune_eval_params slm_tune_eval_params_default(void);

struct slm_tune_eval_result {
    size_t n;        /* examples evaluated */
    double loss;     /* mean -log p over completion tokens (incl. EOS) */
    double accuracy; /* label accuracy, NAN when the completions are not a label set */
    size_t n_labels; /* distinct completions scored (0 = none) */
};

/* Evaluates `model` (+ `adapter`, may be NULL) on records through libllama. */
int slm_tune_evaluate(const char *model, const char *adapter, const struct slm_data_records *recs,
                      const struct slm_tune_eval_params *params, struct slm_tune_eval_result *res,
                      struct slm_err *err);

/* ---------------------------------------------------------------- reports */

/* Writes the loss curves (training, validation) as an SVG chart. */
int slm_tune_write_svg(const char *path, const float *train, size_t n_train, const float *valid,
                       const uint32_t *valid_step, size_t n_valid, struct slm_err *err);

/* ---------------------------------------------------------------- fuse */

struct slm_fuse_params {
    float scale;          /* adapter scale; 0 = 1 */
    const char *out_type; /* NULL = keep each tensor's stored type; "f32", "f16", "q8_0" */
};

/* Writes BASE with W + scale * alpha/r * B A merged into every adapted
 * tensor (dequantize, merge, requantize to the tensor's type or out_type). */
int slm_fuse(const char *base, const char *adapter, const char *out,
             const struct slm_fuse_params *params, struct slm_err *err);

#endif /* SLM_TUNE_H */
