/*
 * grammar_check.c - asks llama.cpp's own grammar code about a GBNF grammar:
 * does it parse for this vocabulary (slm_model_check_grammar), and does it accept a
 * given text (slm_model_match_grammar, the ground truth the tests hold generated
 * grammars to).
 *
 * Needs a model (its vocabulary; a vocab-only load is enough). Reentrant: a
 * model is read-only after load.
 */
#include "slm/engine.h"

#include <llama.h>
#include <math.h>

#include "engine/internal.h"

int slm_model_check_grammar(const struct slm_model *model, const char *gbnf, struct slm_err *err) {
    if (!model || !gbnf) {
        return slm_err_set(err, SLM_E_INVALID, "no model or no grammar");
    }
    if (!gbnf[0]) {
        return slm_err_set(err, SLM_E_INVALID, "the grammar is empty");
    }
    slm_engine_init();
    struct llama_sampler *s = llama_sampler_init_grammar(model->vocab, gbnf, "root");
    if (!s) {
        return slm_err_set(err, SLM_E_INVALID,
                           "llama.cpp rejected the grammar (its parser logs where; a 'root' rule "
                           "is required and left recursion is not allowed)");
    }
    llama_sampler_free(s);
    return SLM_OK;
}

/* True when the grammar sampler leaves `tok` possible. */
static bool allowed(struct llama_sampler *s, llama_token tok) {
    llama_token_data d = {tok, 0.0f, 0.0f};
    llama_token_data_array arr = {&d, 1, -1, false};
    llama_sampler_apply(s, &arr);
    return !isinf(d.logit);
}

int slm_model_match_grammar(const struct slm_model *model, const char *gbnf, const char *text,
                            size_t len, struct slm_err *err) {
    int rc = slm_model_check_grammar(model, gbnf, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (!text && len) {
        return slm_err_set(err, SLM_E_INVALID, "no text");
    }
    /* Feed the text one byte at a time through tokens whose piece is that
     * byte (llama.cpp's grammar carries partial UTF-8 across tokens). */
    llama_token byte_tok[256];
    for (int i = 0; i < 256; i++) {
        byte_tok[i] = -1;
    }
    int32_t n_vocab = llama_vocab_n_tokens(model->vocab);
    for (llama_token t = 0; t < n_vocab; t++) {
        char piece[8];
        int32_t n = llama_token_to_piece(model->vocab, t, piece, sizeof(piece), 0, false);
        if (n == 1 && byte_tok[(unsigned char)piece[0]] < 0) {
            byte_tok[(unsigned char)piece[0]] = t;
        }
    }
    struct llama_sampler *s = llama_sampler_init_grammar(model->vocab, gbnf, "root");
    if (!s) {
        return slm_err_set(err, SLM_E_INVALID, "llama.cpp rejected the grammar");
    }
    for (size_t i = 0; i < len && rc == SLM_OK; i++) {
        unsigned char b = (unsigned char)text[i];
        llama_token tok = byte_tok[b];
        if (tok < 0) {
            rc = slm_err_set(err, SLM_E_UNSUPPORTED, "the vocabulary has no token for byte 0x%02x",
                             b);
        } else if (!allowed(s, tok)) {
            rc = slm_err_set(err, SLM_E_INVALID,
                             "the grammar rejects byte %zu (0x%02x) after '%.*s'", i, b,
                             (int)SLM_MIN(i, (size_t)120), text + (i > 120 ? i - 120 : 0));
        } else {
            llama_sampler_accept(s, tok);
        }
    }
    llama_token eog = llama_vocab_eos(model->vocab);
    if (eog < 0) {
        eog = llama_vocab_eot(model->vocab);
    }
    if (rc == SLM_OK && eog < 0) {
        rc = slm_err_set(err, SLM_E_UNSUPPORTED, "the vocabulary has no end-of-generation token");
    }
    if (rc == SLM_OK && !allowed(s, eog)) {
        rc = slm_err_set(err, SLM_E_INCOMPLETE,
                         "the grammar accepts the text only as a prefix: it wants more");
    }
    llama_sampler_free(s);
    return rc;
}
