/*
 * cli/session.h - what `slm run` holds while it runs: a resolved model, its
 * context, the options in force, the system prompt and the conversation.
 * Shared by one-shot runs and the interactive chat.
 */
#ifndef SLM_CLI_SESSION_H
#define SLM_CLI_SESSION_H

#include <jansson.h>
#include <stdio.h>

#include "slm/engine.h"
#include "slm/liquid.h"
#include "slm/options.h"
#include "slm/store.h"

#define SLM_SESSION_MAX_ADAPTERS 16

struct slm_session {
    struct slm_manifest *manifest;
    struct slm_model *model;
    struct slm_ctx *ctx;
    const char *adapter_paths[SLM_SESSION_MAX_ADAPTERS]; /* borrowed until open */
    struct slm_adapter *adapters[SLM_SESSION_MAX_ADAPTERS];
    float scales[SLM_SESSION_MAX_ADAPTERS];
    size_t n_adapters;
    struct slm_options opt;
    char *system;                     /* owned, may be NULL */
    json_t *messages;                 /* conversation so far: [{role, content}] */
    bool chat_format;                 /* apply a chat template (model's or ChatML) */
    char *grammar;                    /* GBNF, owned, or NULL */
    struct slm_liquid_template *tmpl; /* renders the user turn, or NULL */
    json_t *vars;                     /* template variables from --vars (object, owned) */
    json_t *schema;                   /* --json-schema, for validating the answer */
    bool want_json;
    bool token_ids; /* print ids instead of text */
    bool ignore_eos;
    bool verbose;
    double t_load;
    struct slm_gen_stats last;
};

/* Loads the model, adapters and context for an already-resolved manifest with
 * options already set. Prints nothing; errors go to err. */
int slm_session_open(struct slm_session *s, struct slm_err *err);
void slm_session_close(struct slm_session *s);
/* Re-creates the context (after num_ctx / num_thread / num_batch change). */
int slm_session_reload_ctx(struct slm_session *s, struct slm_err *err);

/* Formats `input` as the next user turn (with system prompt and history when
 * chat formatting is on; the raw text otherwise), generates, streams to `out`
 * and, on success, appends the turn to the history. The full answer is left
 * in `answer`. */
int slm_session_turn(struct slm_session *s, const char *input, FILE *out, struct slm_buf *answer,
                     struct slm_err *err);
/* Prints --verbose statistics to stderr. */
void slm_session_print_stats(const struct slm_session *s);

/* Interactive chat on the terminal (libedit) or, when stdin is not a
 * terminal, on plain lines. Returns an exit code. */
int slm_chat_repl(struct slm_session *s);

#endif
