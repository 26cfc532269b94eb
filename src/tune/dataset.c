/*
 * tune/dataset.c - records to training examples: tokens plus a loss flag per
 * token. The prompt is read (no loss), the completion is learned; messages
 * are rendered with the chat template turn by turn so that only assistant
 * turns (with their end-of-turn markers) carry loss; text records learn every
 * token.
 */
#include "slm/tune.h"

#include <stdlib.h>
#include <string.h>

#include "slm/engine.h"
#include "slm/turn.h"
#include "tune/train_internal.h"

#define MAX_TOKENS ((size_t)1 << 31)

struct slm_dataset_params slm_dataset_params_default(void) {
    return (struct slm_dataset_params){.n_ctx = 0, .eos = -1, .chat_template = NULL};
}

static int ds_reserve_tok(struct slm_dataset *ds, size_t extra) {
    if (ds->n_tok + extra <= ds->cap_tok) {
        return SLM_OK;
    }
    if (ds->n_tok + extra > MAX_TOKENS) {
        return SLM_E_TOO_LARGE;
    }
    size_t nc = ds->cap_tok ? ds->cap_tok : 4096;
    while (nc < ds->n_tok + extra) {
        nc *= 2;
    }
    int32_t *t = realloc(ds->tokens, nc * sizeof(*t));
    if (!t) {
        return SLM_E_NOMEM;
    }
    ds->tokens = t;
    uint8_t *m = realloc(ds->train, nc);
    if (!m) {
        return SLM_E_NOMEM;
    }
    ds->train = m;
    ds->cap_tok = nc;
    return SLM_OK;
}

static int ds_begin_example(struct slm_dataset *ds, size_t line) {
    if (ds->n == ds->cap) {
        size_t nc = ds->cap ? ds->cap * 2 : 256;
        size_t *o = realloc(ds->off, nc * sizeof(size_t));
        if (!o) {
            return SLM_E_NOMEM;
        }
        ds->off = o;
        size_t *l = realloc(ds->len, nc * sizeof(size_t));
        if (!l) {
            return SLM_E_NOMEM;
        }
        ds->len = l;
        size_t *ln = realloc(ds->line, nc * sizeof(size_t));
        if (!ln) {
            return SLM_E_NOMEM;
        }
        ds->line = ln;
        ds->cap = nc;
    }
    ds->off[ds->n] = ds->n_tok;
    ds->len[ds->n] = 0;
    ds->line[ds->n] = line;
    ds->n++;
    return SLM_OK;
}

/* Tokenizes `text` onto the current example with loss flag `train`. */
static int ds_add_text(struct slm_dataset *ds, const struct slm_model *vocab, struct slm_str text,
                       bool add_bos, bool special, uint8_t train, struct slm_err *err) {
    if (text.len == 0 && !add_bos) {
        return SLM_OK;
    }
    size_t guess = text.len + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ds_reserve_tok(ds, guess) != SLM_OK) {
            return slm_err_set(err, SLM_E_TOO_LARGE, "dataset too large");
        }
        int64_t n = slm_tokenize(vocab, text, add_bos, special, ds->tokens + ds->n_tok,
                                 ds->cap_tok - ds->n_tok);
        if (n < 0) {
            return slm_err_set(err, (int)n, "tokenizing failed");
        }
        if ((size_t)n <= ds->cap_tok - ds->n_tok) {
            memset(ds->train + ds->n_tok, train, (size_t)n);
            ds->n_tok += (size_t)n;
            ds->len[ds->n - 1] += (size_t)n;
            return SLM_OK;
        }
        guess = (size_t)n;
    }
    return slm_err_set(err, SLM_E_BACKEND, "tokenizer size mismatch");
}

static int ds_add_token(struct slm_dataset *ds, int32_t tok, uint8_t train) {
    if (ds_reserve_tok(ds, 1) != SLM_OK) {
        return SLM_E_TOO_LARGE;
    }
    ds->tokens[ds->n_tok] = tok;
    ds->train[ds->n_tok] = train;
    ds->n_tok++;
    ds->len[ds->n - 1]++;
    return SLM_OK;
}

/* Renders msgs[0..n) (with the assistant header when add_assistant), as a
 * request's prompt is rendered (slm/turn.h). */
static int render(const struct slm_model *vocab, const char *tmpl, const json_t *msgs, size_t n,
                  bool add_assistant, struct slm_buf *out, struct slm_err *err) {
    slm_buf_clear(out);
    return slm_turn_chat_format(vocab, tmpl, msgs, n, add_assistant, out, err);
}

static int messages_example(struct slm_dataset *ds, const struct slm_model *vocab,
                            const struct slm_data_record *r, const struct slm_dataset_params *p,
                            struct slm_err *err) {
    struct slm_buf prefix = {0}, full = {0};
    size_t done = 0; /* bytes of the conversation already tokenized */
    int rc = SLM_OK;
    bool first = true;
    for (size_t i = 0; i < json_array_size(r->messages) && rc == SLM_OK; i++) {
        const char *role =
            json_string_value(json_object_get(json_array_get(r->messages, i), "role"));
        if (strcmp(role, "assistant") != 0) {
            continue;
        }
        rc = render(vocab, p->chat_template, r->messages, i, true, &prefix, err);
        if (rc == SLM_OK) {
            rc = render(vocab, p->chat_template, r->messages, i + 1, false, &full, err);
        }
        if (rc != SLM_OK) {
            break;
        }
        if (prefix.len < done || full.len < prefix.len ||
            memcmp(prefix.ptr, full.ptr, prefix.len) != 0) {
            rc = slm_err_set(err, SLM_E_UNSUPPORTED,
                             "line %zu: the chat template does not render the conversation turn "
                             "by turn, so assistant turns cannot be masked",
                             r->line);
            break;
        }
        struct slm_str before = slm_str_n(prefix.ptr + done, prefix.len - done);
        struct slm_str reply = slm_str_n(full.ptr + prefix.len, full.len - prefix.len);
        rc = ds_add_text(ds, vocab, before, first, true, 0, err);
        if (rc == SLM_OK) {
            rc = ds_add_text(ds, vocab, reply, false, true, 1, err);
        }
        first = false;
        done = full.len;
    }
    slm_buf_free(&prefix);
    slm_buf_free(&full);
    return rc;
}

/* Fits example `i` (the last one) into n_ctx tokens. With a prompt, the
 * start of the prompt goes (the first token, BOS, stays) so that the part the
 * model learns survives; a text record is cut at the end. */
static void cut_example(struct slm_dataset *ds, size_t i, size_t n_ctx) {
    int32_t *t = ds->tokens + ds->off[i];
    uint8_t *m = ds->train + ds->off[i];
    size_t len = ds->len[i], drop = len - n_ctx;
    if (!m[0] && n_ctx >= 2 && !m[1 + drop - 1]) {
        memmove(t + 1, t + 1 + drop, (n_ctx - 1) * sizeof(*t));
        memmove(m + 1, m + 1 + drop, n_ctx - 1);
    }
    ds->n_tok -= drop;
    ds->len[i] = n_ctx;
    ds->n_truncated++;
}

static int add_example(struct slm_dataset *ds, const struct slm_model *vocab,
                       const struct slm_data_record *r, enum slm_data_format fmt,
                       const struct slm_dataset_params *p, struct slm_err *err) {
    if (ds_begin_example(ds, r->line) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc;
    if (fmt == SLM_DATA_MESSAGES && r->messages) {
        rc = messages_example(ds, vocab, r, p, err);
    } else if (fmt == SLM_DATA_TEXT) {
        rc = ds_add_text(ds, vocab, slm_str_c(r->completion), true, false, 1, err);
    } else {
        rc = ds_add_text(ds, vocab, slm_str_c(r->prompt), true, true, 0, err);
        if (rc == SLM_OK) {
            rc = ds_add_text(ds, vocab, slm_str_c(r->completion), false, false, 1, err);
        }
    }
    if (rc == SLM_OK && p->eos >= 0 && fmt != SLM_DATA_MESSAGES) {
        rc = ds_add_token(ds, p->eos, 1) == SLM_OK
                 ? SLM_OK
                 : slm_err_set(err, SLM_E_TOO_LARGE, "dataset too large");
    }
    if (rc != SLM_OK) {
        return rc;
    }
    size_t i = ds->n - 1;
    if (p->n_ctx && ds->len[i] > p->n_ctx) {
        cut_example(ds, i, p->n_ctx);
    }
    for (size_t k = 1; k < ds->len[i]; k++) {
        ds->n_target += ds->train[ds->off[i] + k];
    }
    return SLM_OK;
}

int slm_dataset_init(const struct slm_data_records *recs, const struct slm_model *vocab,
                     const struct slm_dataset_params *params, struct slm_dataset **out,
                     struct slm_err *err) {
    struct slm_dataset_params p = params ? *params : slm_dataset_params_default();
    struct slm_dataset *ds = calloc(1, sizeof(*ds));
    if (!ds) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < recs->n; i++) {
        int rc = add_example(ds, vocab, &recs->items[i], recs->format, &p, err);
        if (rc != SLM_OK) {
            slm_dataset_free(ds);
            return rc;
        }
    }
    *out = ds;
    return SLM_OK;
}

void slm_dataset_free(struct slm_dataset *ds) {
    if (!ds) {
        return;
    }
    free(ds->tokens);
    free(ds->train);
    free(ds->off);
    free(ds->len);
    free(ds->line);
    free(ds);
}

size_t slm_dataset_size(const struct slm_dataset *ds) {
    return ds->n;
}

const int32_t *slm_dataset_example(const struct slm_dataset *ds, size_t i, const uint8_t **train,
                                   size_t *n) {
    if (i >= ds->n) {
        return NULL;
    }
    if (train) {
        *train = ds->train + ds->off[i];
    }
    *n = ds->len[i];
    return ds->tokens + ds->off[i];
}

void slm_dataset_stats(const struct slm_dataset *ds, uint64_t *n_tokens, uint64_t *n_target,
                       size_t *n_truncated) {
    if (n_tokens) {
        *n_tokens = ds->n_tok;
    }
    if (n_target) {
        *n_target = ds->n_target;
    }
    if (n_truncated) {
        *n_truncated = ds->n_truncated;
    }
}

/* Moves the examples with pick[i] set into a new dataset. */
static int dataset_take(struct slm_dataset *ds, const uint8_t *pick, struct slm_dataset **taken,
                        struct slm_err *err) {
    struct slm_dataset *keep = calloc(1, sizeof(*keep)), *out = calloc(1, sizeof(*out));
    if (!keep || !out) {
        free(keep);
        free(out);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ds->n; i++) {
        struct slm_dataset *dst = pick[i] ? out : keep;
        if (ds_begin_example(dst, ds->line[i]) != SLM_OK ||
            ds_reserve_tok(dst, ds->len[i]) != SLM_OK) {
            slm_dataset_free(keep);
            slm_dataset_free(out);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        memcpy(dst->tokens + dst->n_tok, ds->tokens + ds->off[i], ds->len[i] * sizeof(int32_t));
        memcpy(dst->train + dst->n_tok, ds->train + ds->off[i], ds->len[i]);
        dst->n_tok += ds->len[i];
        dst->len[dst->n - 1] = ds->len[i];
        for (size_t k = 1; k < ds->len[i]; k++) {
            dst->n_target += ds->train[ds->off[i] + k];
        }
    }
    keep->n_truncated = ds->n_truncated;
    /* Swap `keep` into `ds` in place (callers hold the pointer). */
    struct slm_dataset tmp = *ds;
    *ds = *keep;
    *keep = tmp;
    slm_dataset_free(keep);
    *taken = out;
    return SLM_OK;
}

int slm_dataset_split(struct slm_dataset *ds, uint32_t every, uint64_t seed,
                      struct slm_dataset **valid, struct slm_err *err) {
    if (every < 2) {
        return slm_err_set(err, SLM_E_INVALID, "split: 'every' must be at least 2");
    }
    uint8_t *pick = calloc(ds->n ? ds->n : 1, 1);
    if (!pick) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ds->n; i++) {
        uint64_t s = seed ^ (i * 0x9e3779b97f4a7c15ull);
        pick[i] = slm__rng_next(&s) % every == 0;
    }
    int rc = dataset_take(ds, pick, valid, err);
    free(pick);
    return rc;
}
