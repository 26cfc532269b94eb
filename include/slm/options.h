/*
 * slm/options.h - generation options under one table of names (part of the
 * engine module, but needs no model).
 *
 * The same option has an Ollama name (Modelfile PARAMETER, chat
 * `/set parameter`, the Ollama API's `options`, router `parameters`), a CLI
 * flag spelled with dashes (DESIGN.md) and, for most, an OpenAI request field
 * (`max_tokens`). This table is the single place that maps them, checks types
 * and ranges, and documents them (docs/commands.md mirrors it): the CLI, the
 * Modelfile reader, the HTTP parsers and the router's config all check
 * against it. Defaults live in slm_options_init() (the sampler's in
 * slm_sample_params_default()); slm_option_get() reads them back for help.
 */
#ifndef SLM_OPTIONS_H
#define SLM_OPTIONS_H

#include <jansson.h>

#include "slm/base.h"
#include "slm/engine.h"

struct slm_options {
    struct slm_sample_params sample;
    int32_t num_predict;      /* max tokens; -1 = until done */
    int32_t num_ctx;          /* 0 = model default (min(training context, 4096)) */
    int32_t num_batch;        /* 0 = 512 */
    int32_t num_thread;       /* 0 = physical cores */
    char *stop[SLM_MAX_STOP]; /* owned */
    size_t n_stop;
    bool repeat_penalty_set; /* given explicitly (else off at temperature 0) */
};

enum slm_option_type { SLM_OPT_INT, SLM_OPT_FLOAT, SLM_OPT_STRINGS };

enum slm_option_flags {
    /* 0 means "decide for me" (the model's context, the core count): fine on
     * the command line and in requests; a Modelfile must name a value. */
    SLM_OPTF_ZERO_AUTO = 1 << 0,
    /* Sizes the context rather than one generation (num_ctx, num_thread,
     * num_batch): a server's per-request options leave them alone. */
    SLM_OPTF_CONTEXT = 1 << 1,
};

struct slm_option_desc {
    const char *name;       /* Ollama name: "num_predict" */
    const char *flag;       /* CLI flag: "max-tokens" */
    const char *openai;     /* OpenAI request field ("max_tokens"), or NULL */
    const char *openai_new; /* a newer OpenAI name that wins over `openai`, or NULL */
    enum slm_option_type type;
    double min, max;
    unsigned flags; /* enum slm_option_flags */
    const char *help;
};

/* The table, terminated by name == NULL. */
const struct slm_option_desc *slm_option_table(void);
/* Finds by Ollama name or by flag name (with or without leading dashes). */
const struct slm_option_desc *slm_option_find(const char *name);
/* The error for a name the table does not know: SLM_E_UNSUPPORTED for an
 * Ollama parameter slm deliberately lacks (mirostat, num_gpu, ...), else
 * SLM_E_INVALID with the closest known name ("did you mean 'top_k'?"). */
int slm_option_unknown(const char *name, struct slm_err *err);
/* Checks `text` as a value of `d` (a Modelfile PARAMETER: zero is refused
 * where SLM_OPTF_ZERO_AUTO) and returns it typed: a JSON integer, real or
 * string (one stop string). New reference in *out. */
int slm_option_parse_file_value(const struct slm_option_desc *d, const char *text, json_t **out,
                                struct slm_err *err);
/* The value of a numeric option in `o` (for help texts and `/show`). */
double slm_option_get(const struct slm_options *o, const struct slm_option_desc *d);

/* Defaults: slm_sample_params_default(), num_predict -1, rest auto. */
void slm_options_init(struct slm_options *o);
void slm_options_free(struct slm_options *o);
int slm_options_copy(struct slm_options *dst, const struct slm_options *src);
/* Sets one option from text ("0.2", "40", a stop string): SLM_E_INVALID with a
 * message naming the option and the allowed range. "stop" appends. */
int slm_options_set_text(struct slm_options *o, const char *name, const char *text,
                         struct slm_err *err);
/* Sets one option from a JSON value (number, or string / array of strings for
 * stop, which then replaces the list). */
int slm_options_set_json(struct slm_options *o, const char *name, const json_t *value,
                         struct slm_err *err);
/* Applies every key of an object (manifest params, Ollama `options`).
 * Unknown keys are SLM_E_INVALID unless `ignore_unknown`. */
int slm_options_apply(struct slm_options *o, const json_t *obj, bool ignore_unknown,
                      struct slm_err *err);
/* The OpenAI request fields of `body` that the table names (max_tokens,
 * temperature, stop, ... and llama-server's extensions top_k, min_p,
 * repeat_penalty, repeat_last_n) copied into `ollama` under their Ollama
 * names, each checked against the table. On a bad value, *bad_field names the
 * request field (static) and err says why. Options with SLM_OPTF_CONTEXT
 * have no OpenAI name. */
int slm_options_from_openai(const json_t *body, json_t *ollama, const char **bad_field,
                            struct slm_err *err);
/* The options that differ from defaults, as an object of Ollama names. */
json_t *slm_options_to_json(const struct slm_options *o);
/* The generation parameters these options mean (stop strings borrowed from o).
 * At temperature 0 the default repeat penalty is off, so greedy decoding is
 * the model's own argmax (as llama.cpp's greedy sampler); a repeat_penalty
 * given explicitly still applies. */
struct slm_gen_params slm_options_gen_params(const struct slm_options *o);

#endif /* SLM_OPTIONS_H */
