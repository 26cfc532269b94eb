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
#include "slm/memory.h"
#include "slm/options.h"
#include "slm/store.h"
#include "slm/turn.h"

struct slm_session {
    struct slm_turn *turn; /* the model reference, resolved (slm/turn.h) */
    struct slm_model *model;
    struct slm_ctx *ctx;
    struct slm_adapter *adapters[SLM_TURN_MAX_ADAPTERS];
    size_t n_adapters;
    struct slm_options opt; /* in force: the turn's, then flags and /set */
    char *system;           /* owned, may be NULL (/set system changes it) */
    json_t *messages;       /* conversation so far: [{role, content}] */
    bool chat_format;       /* apply a chat template (model's or ChatML) */
    char *grammar;          /* GBNF, owned, or NULL */
    json_t *vars;           /* template variables from --vars (object, owned) */
    json_t *schema;         /* --json-schema, for validating the answer */
    bool want_json;
    bool token_ids; /* print ids instead of text */
    bool ignore_eos;
    bool verbose;
    const char *suffix; /* fill in the middle after the input (slm_fim_tokens), or NULL */
    bool force;         /* load even when the memory estimate says it does not fit */
    const char *name;   /* the model as the user named it (messages); borrowed */
    double t_load;
    struct slm_gen_stats last;
};

/* Loads the model, adapters and context of an opened turn with options
 * already set. Prints nothing; errors go to err. */
int slm_session_open(struct slm_session *s, struct slm_err *err);
void slm_session_close(struct slm_session *s);
/* Will it fit? slm/memory.h's estimate for the turn's model and adapters with a context of
 * `num_ctx` and `num_batch` (0: defaults) against the memory available now. `loaded`, when
 * not NULL, is the estimate of what this session holds already (a context being replaced:
 * its memory comes back). SLM_E_NOMEM with slm_mem_check's message when it does not fit;
 * with s->force that message is printed as a warning and SLM_OK returned. */
int slm_session_check_fit(const struct slm_session *s, int32_t num_ctx, int32_t num_batch,
                          const struct slm_mem_estimate *loaded, struct slm_err *err);
/* slm_session_check_fit's estimate alone. */
int slm_session_estimate(const struct slm_session *s, int32_t num_ctx, int32_t num_batch,
                         struct slm_mem_estimate *out, struct slm_err *err);
/* Re-creates the context (after num_ctx / num_thread / num_batch change). */
int slm_session_reload_ctx(struct slm_session *s, struct slm_err *err);

/* Builds the prompt of `input` through the turn (slm/turn.h: a chat turn
 * with the system prompt and history when chat formatting is on, the
 * template's rendering of the input otherwise), generates, streams to `out`
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
