/*
 * engine/chat.c - chat formatting through llama.cpp's template matcher, with
 * ChatML for models that ship no template.
 */
#include "slm/engine.h"

#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

const char slm_chatml_template[] = "chatml";

int slm_chat_format(const struct slm_model *model, const char *tmpl,
                    const struct slm_chat_msg *msgs, size_t n_msgs, bool add_assistant,
                    struct slm_buf *out, struct slm_err *err) {
    const char *t =
        tmpl ? tmpl : (model && model->chat_template ? model->chat_template : slm_chatml_template);
    struct llama_chat_message stack_msgs[16];
    struct llama_chat_message *lm = stack_msgs;
    if (n_msgs > SLM_ARRAY_LEN(stack_msgs)) {
        lm = malloc(n_msgs * sizeof(*lm));
        if (!lm) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    size_t total = 64;
    for (size_t i = 0; i < n_msgs; i++) {
        lm[i].role = msgs[i].role;
        lm[i].content = msgs[i].content ? msgs[i].content : "";
        total += strlen(lm[i].content) + 64;
    }
    int rc = SLM_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (total > INT32_MAX) {
            rc = slm_err_set(err, SLM_E_TOO_LARGE, "conversation too large");
            break;
        }
        rc = slm_buf_reserve(out, total);
        if (rc != SLM_OK) {
            slm_err_set(err, rc, "conversation too large");
            break;
        }
        int32_t n = llama_chat_apply_template(t, lm, n_msgs, add_assistant, out->ptr + out->len,
                                              (int32_t)total);
        if (n < 0) {
            rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                             "the model's chat template is not one llama.cpp recognises; use "
                             "--raw, or give a Liquid template with --template");
            break;
        }
        if ((size_t)n <= total) {
            out->len += (size_t)n;
            out->ptr[out->len] = '\0';
            break;
        }
        total = (size_t)n;
    }
    if (lm != stack_msgs) {
        free(lm);
    }
    return rc;
}
