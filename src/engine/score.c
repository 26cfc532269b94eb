/*
 * engine/score.c - scoring candidate continuations of one prompt in one
 * decode (slm/score.h).
 *
 * Sequence 0 holds the prompt. The candidates of a chunk are sorted by their
 * tokens and laid out as a token trie: every distinct prefix (all tokens of a
 * candidate but its last, whose logits predict nothing we score) is one batch
 * row, however many candidates start with it. Each candidate has its own
 * sequence id; llama_memory_seq_cp adds them all to the prompt's cells (in a
 * unified KV cache a cell carries a set of sequence ids, so nothing is
 * copied), and a trie row belongs to the sequences of every candidate through
 * it, so a candidate's tokens attend to the prompt and to its own prefix, and
 * a prefix that 20 labels share is decoded, and its log-sum-exp computed,
 * once. Afterwards llama_memory_seq_keep(0) frees the candidates' cells in one
 * pass and leaves the prompt's cells to sequence 0, ready for the next chunk
 * or the next call's prefix reuse; the cells stay packed from 0 (freed cells
 * move llama.cpp's search head back), so the span every token attends over is
 * the prompt plus one chunk, whatever came before.
 *
 * The first token of every candidate is scored from the prompt's last logits,
 * so a one-token label costs no decode at all.
 */
#include "slm/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/sample.h"
#include "slm/sys.h"

/* One trie node: a distinct candidate prefix, decoded as one batch row. */
struct node {
    int32_t tok;             /* the prefix's last token */
    int32_t parent;          /* node of the prefix one token shorter; -1 after the prompt */
    uint32_t depth;          /* position after the prompt */
    uint32_t seq_lo, seq_hi; /* sequences of the candidates through it */
    double z;                /* log-sum-exp of its logits */
    double cum;              /* log-prob of the prefix's tokens after the first */
    /* The best-first search (slm_scorer_best) only: */
    int32_t child, sibling; /* first child and next sibling, -1 for none */
    int32_t cand;           /* first chunk slot whose longest prefix this is, -1 for none */
    uint8_t state;          /* NODE_UNKNOWN, NODE_FRONTIER or NODE_DECODED */
    uint32_t n_child;
    double first; /* log-prob of the prefix's first token */
    double bound; /* log-prob of the whole prefix once known: bounds every candidate under it */
    double est;   /* the search's guess of that log-prob (the bound, where known) */
};

enum { NODE_UNKNOWN, NODE_FRONTIER, NODE_DECODED };

struct slm_scorer {
    struct slm_model *model;
    struct llama_context *lc;
    struct llama_batch batch; /* n_batch tokens: the largest single decode we make */
    uint32_t n_ctx;           /* KV cells (llama.cpp may pad the n_ctx asked for) */
    uint32_t n_batch;         /* tokens per llama_decode */
    uint32_t n_seq;           /* sequences of the context, sequence 0 (the prompt) included */
    int32_t n_vocab;
    int32_t *cached; /* the tokens sequence 0 holds */
    size_t n_cached;
    size_t *chunk;      /* candidate indices of the chunk being decoded, n_seq - 1 */
    uint32_t *leaf;     /* n_seq - 1: the node of each chunk candidate's longest prefix */
    int32_t *next;      /* n_seq - 1: the next chunk slot with the same leaf (search), -1 */
    uint32_t *pick;     /* n_batch: the nodes of one search decode */
    struct node *nodes; /* n_batch: the chunk's trie */
    uint32_t *path;     /* n_batch: the nodes of the last candidate added */
    size_t *order;      /* 2 x cap_order: candidates in token order, and merge scratch */
    size_t cap_order;
    struct slm_scorer_stats stats;
};

struct slm_scorer_params slm_scorer_params_default(void) {
    return (struct slm_scorer_params){.n_ctx = 2048, .max_candidates = 255};
}

static int apply_adapters(struct slm_scorer *s, struct slm_adapter *const *adapters,
                          const float *scales, size_t n, struct slm_err *err) {
    struct llama_adapter_lora *la[64];
    float sc[64];
    if (n > SLM_ARRAY_LEN(la)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "at most %zu adapters at once", SLM_ARRAY_LEN(la));
    }
    for (size_t i = 0; i < n; i++) {
        if (!adapters[i] || adapters[i]->model != s->model) {
            return slm_err_set(err, SLM_E_INVALID, "adapter %zu was loaded for another model", i);
        }
        la[i] = adapters[i]->la;
        sc[i] = scales ? scales[i] : 1.0f;
    }
    if (n && llama_set_adapters_lora(s->lc, la, n, sc) != 0) {
        return slm_err_set(err, SLM_E_BACKEND, "llama.cpp refused the adapter set");
    }
    return SLM_OK;
}

int slm_scorer_init_params(struct slm_model *model, struct slm_adapter *const *adapters,
                           const float *scales, size_t n_adapters,
                           const struct slm_scorer_params *params, struct slm_scorer **out,
                           struct slm_err *err) {
    slm_engine_init();
    struct slm_scorer_params p = params ? *params : slm_scorer_params_default();
    p.n_ctx = p.n_ctx ? SLM_MAX(p.n_ctx, 16u) : 2048;
    p.max_candidates = p.max_candidates ? p.max_candidates : 255;
    struct slm_scorer *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    s->model = model;
    size_t max_seq = llama_max_parallel_sequences();
    s->n_seq = (uint32_t)SLM_MIN((size_t)p.max_candidates + 1, max_seq);
    struct llama_context_params lp = llama_context_default_params();
    lp.n_ctx = p.n_ctx;
    lp.n_batch = p.n_ctx; /* every candidate of a chunk in one llama_decode */
    lp.n_ubatch = SLM_MIN(p.n_ctx, 512u);
    lp.n_seq_max = s->n_seq;
    lp.kv_unified = true; /* the prompt's cells are shared by every sequence */
    lp.n_threads = p.n_threads > 0 ? p.n_threads : slm_default_threads();
    lp.n_threads_batch = lp.n_threads;
    lp.no_perf = true;
    /* Heads this small take llama.cpp's scalar flash-attention path with FP16
     * conversions: an F32 cache without it scored banking77 1.5x faster on
     * stories260K (head size 8). From head size 64 (SmolLM2) F16 with flash
     * attention is faster (0.92 against 0.70 rows/s), and the cache larger. */
    int32_t n_head = llama_model_n_head(model->lm);
    bool small_heads = n_head > 0 && llama_model_n_embd(model->lm) / n_head < 32;
    if (p.kv_f32 || small_heads) {
        lp.type_k = GGML_TYPE_F32;
        lp.type_v = GGML_TYPE_F32;
        lp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    int rc = SLM_OK;
    s->lc = llama_init_from_model(model->lm, lp);
    if (!s->lc) {
        rc = slm_err_set(err, SLM_E_BACKEND,
                         "could not create a scoring context of %u tokens and %u sequences",
                         p.n_ctx, s->n_seq);
        goto fail;
    }
    s->n_ctx = llama_n_ctx(s->lc);
    s->n_batch = llama_n_batch(s->lc);
    s->n_vocab = llama_vocab_n_tokens(model->vocab);
    /* A trie node's token belongs to every sequence through it. */
    s->batch = llama_batch_init((int32_t)s->n_batch, 0, (int32_t)s->n_seq);
    s->cached = malloc(s->n_ctx * sizeof(*s->cached));
    s->chunk = malloc(s->n_seq * sizeof(*s->chunk));
    s->leaf = malloc(s->n_seq * sizeof(*s->leaf));
    s->next = malloc(s->n_seq * sizeof(*s->next));
    s->pick = malloc(s->n_batch * sizeof(*s->pick));
    s->nodes = malloc(s->n_batch * sizeof(*s->nodes));
    s->path = malloc(s->n_batch * sizeof(*s->path));
    if (!s->batch.token || !s->cached || !s->chunk || !s->leaf || !s->next || !s->pick ||
        !s->nodes || !s->path) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = apply_adapters(s, adapters, scales, n_adapters, err)) != SLM_OK) {
        goto fail;
    }
    *out = s;
    return SLM_OK;
fail:
    slm_scorer_free(s);
    return rc;
}

void slm_scorer_free(struct slm_scorer *s) {
    if (!s) {
        return;
    }
    if (s->lc) {
        llama_batch_free(s->batch);
        llama_free(s->lc);
    }
    free(s->cached);
    free(s->chunk);
    free(s->leaf);
    free(s->next);
    free(s->pick);
    free(s->nodes);
    free(s->path);
    free(s->order);
    free(s);
}

struct slm_model *slm_scorer_model(const struct slm_scorer *s) {
    return s->model;
}

uint32_t slm_scorer_n_ctx(const struct slm_scorer *s) {
    return s->n_ctx;
}

void slm_scorer_last_stats(const struct slm_scorer *s, struct slm_scorer_stats *out) {
    *out = s->stats;
}

void slm_scorer_reset(struct slm_scorer *s) {
    llama_memory_clear(llama_get_memory(s->lc), true);
    s->n_cached = 0;
}

static void batch_add(struct llama_batch *b, int32_t tok, size_t pos, size_t seq, bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = (llama_pos)pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = (llama_seq_id)seq;
    b->logits[i] = logits;
}

static int check_tokens(const struct slm_scorer *s, const int32_t *t, size_t n, const char *what,
                        struct slm_err *err) {
    for (size_t i = 0; i < n; i++) {
        if (t[i] < 0 || t[i] >= s->n_vocab) {
            return slm_err_set(err, SLM_E_INVALID, "%s token %zu (%d) is not in the vocabulary",
                               what, i, (int)t[i]);
        }
    }
    return SLM_OK;
}

/* Leaves the prompt's KV on sequence 0 (and nothing else in the cache) with
 * the logits of its last token as the context's last output. */
static int decode_prompt(struct slm_scorer *s, const int32_t *prompt, size_t n,
                         struct slm_err *err) {
    llama_memory_t mem = llama_get_memory(s->lc);
    size_t keep = 0;
    while (keep < s->n_cached && keep < n && s->cached[keep] == prompt[keep]) {
        keep++;
    }
    /* The last token is decoded again even when cached: its logits are not kept. */
    keep = keep == n ? n - 1 : keep;
    for (uint32_t q = 1; q < s->n_seq; q++) {
        llama_memory_seq_rm(mem, (llama_seq_id)q, -1, -1);
    }
    if (!llama_memory_seq_rm(mem, 0, (llama_pos)keep, -1)) {
        llama_memory_clear(mem, true);
        keep = 0;
    }
    s->n_cached = keep;
    s->stats.n_prompt_reused = keep;
    int rc = SLM_OK;
    for (size_t i = keep; i < n && rc == SLM_OK;) {
        s->batch.n_tokens = 0;
        for (; i < n && (uint32_t)s->batch.n_tokens < s->n_batch; i++) {
            batch_add(&s->batch, prompt[i], i, 0, i + 1 == n);
        }
        rc = slm__decode_status(llama_decode(s->lc, s->batch), err);
    }
    if (rc != SLM_OK) {
        slm_scorer_reset(s);
        return rc;
    }
    memcpy(s->cached + keep, prompt + keep, (n - keep) * sizeof(*prompt));
    s->n_cached = n;
    s->stats.n_prompt_decoded = n - keep;
    return SLM_OK;
}

static int check_prompt(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                        size_t longest, struct slm_err *err) {
    if (n_prompt == 0) {
        return slm_err_set(err, SLM_E_INVALID, "nothing to score after an empty prompt");
    }
    size_t need = n_prompt + (longest ? longest - 1 : 0);
    if (need > s->n_ctx || (longest > 1 && longest - 1 > s->n_batch)) {
        return slm_err_set(err, SLM_E_OVERFLOW,
                           "scoring needs %zu tokens (prompt %zu + longest candidate %zu) but the "
                           "scorer's context holds %u",
                           need, n_prompt, longest, s->n_ctx);
    }
    return check_tokens(s, prompt, n_prompt, "prompt", err);
}

int slm_scorer_logits(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                      const float **logits, int32_t *n_vocab, struct slm_err *err) {
    memset(&s->stats, 0, sizeof(s->stats));
    int rc = check_prompt(s, prompt, n_prompt, 0, err);
    if (rc == SLM_OK) {
        rc = decode_prompt(s, prompt, n_prompt, err);
    }
    if (rc == SLM_OK) {
        *logits = llama_get_logits_ith(s->lc, -1);
        *n_vocab = s->n_vocab;
    }
    return rc;
}

/* A chunk's candidates as a token trie: node i is one distinct prefix (all
 * but the last token of some candidate) and batch row i. The candidates
 * through a node are a run of the sorted order, so they hold the sequence
 * ids seq_lo..seq_hi (chunk slot + 1), and the node's cell carries all of
 * them: a candidate attends to the prompt and its own prefix only. */
struct trie {
    size_t n_nodes;
    size_t n_cand; /* candidates in the chunk: s->chunk[0..n_cand) */
    size_t depth;  /* nodes on the last candidate's path (s->path) */
};

/* Lexicographic order of token arrays; a prefix sorts first. */
static int cmp_tokens(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    for (size_t j = 0; j < na && j < nb; j++) {
        if (a[j] != b[j]) {
            return a[j] < b[j] ? -1 : 1;
        }
    }
    return na < nb ? -1 : na > nb;
}

/* Stable bottom-up merge sort of candidate indices v[0..n) by their tokens
 * (tmp holds n): candidates that share a prefix end up side by side. */
static void sort_candidates(size_t *v, size_t *tmp, size_t n, const int32_t *const *cand,
                            const size_t *len) {
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = SLM_MIN(lo + w, n), hi = SLM_MIN(lo + 2 * w, n), a = lo, b = mid;
            for (size_t o = lo; o < hi; o++) {
                bool left = b >= hi || (a < mid && cmp_tokens(cand[v[a]], len[v[a]], cand[v[b]],
                                                              len[v[b]]) <= 0);
                tmp[o] = left ? v[a++] : v[b++];
            }
        }
        memcpy(v, tmp, n * sizeof(*v));
    }
}

/* Room for the order of n_cand candidates (kept between calls). */
static int reserve_order(struct slm_scorer *s, size_t n_cand, struct slm_err *err) {
    if (n_cand <= s->cap_order) {
        return SLM_OK;
    }
    size_t *o = realloc(s->order, 2 * n_cand * sizeof(*o));
    if (!o) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    s->order = o;
    s->cap_order = n_cand;
    return SLM_OK;
}

/* Adds candidate k (path = its length - 1 nodes, the first `shared` of which
 * the previous candidate already made) to the chunk's trie. */
static void trie_add(struct slm_scorer *s, struct trie *t, size_t k, const int32_t *c, size_t path,
                     size_t shared) {
    uint32_t seq = (uint32_t)t->n_cand + 1;
    for (size_t j = 0; j < shared; j++) {
        s->nodes[s->path[j]].seq_hi = seq;
    }
    for (size_t j = shared; j < path; j++) {
        uint32_t i = (uint32_t)t->n_nodes++;
        s->nodes[i] = (struct node){.tok = c[j],
                                    .parent = j ? (int32_t)s->path[j - 1] : -1,
                                    .depth = (uint32_t)j,
                                    .seq_lo = seq,
                                    .seq_hi = seq};
        s->path[j] = i;
    }
    s->chunk[t->n_cand] = k;
    s->leaf[t->n_cand++] = s->path[path - 1];
    t->depth = path;
}

/* Sets batch row r to trie node nd at its position after the prompt, in the
 * sequences of every candidate through it, with logits. */
static void batch_row(struct llama_batch *b, int32_t r, const struct node *nd, size_t n_prompt) {
    b->token[r] = nd->tok;
    b->pos[r] = (llama_pos)(n_prompt + nd->depth);
    b->n_seq_id[r] = (int32_t)(nd->seq_hi - nd->seq_lo + 1);
    for (uint32_t q = nd->seq_lo; q <= nd->seq_hi; q++) {
        b->seq_id[r][q - nd->seq_lo] = (llama_seq_id)q;
    }
    b->logits[r] = true;
}

/* Path nodes the next candidate `c` (path nodes long) shares with the last
 * one added to t (candidates come in token order). */
static size_t shared_path(const struct slm_scorer *s, const struct trie *t,
                          const int32_t *const *cand, const int32_t *c, size_t path) {
    size_t shared = 0;
    if (t->n_cand > 0) {
        const int32_t *prev = cand[s->chunk[t->n_cand - 1]];
        size_t most = SLM_MIN(t->depth, path);
        while (shared < most && prev[shared] == c[shared]) {
            shared++;
        }
    }
    return shared;
}

/* Decodes a chunk's trie in one batch and adds the log-probs of each of its
 * candidates' tokens after the first to logp. A node's log-sum-exp is
 * computed once for every candidate through it; the sums run in token order,
 * as one candidate alone would add them. */
static int trie_decode(struct slm_scorer *s, const struct trie *t, size_t n_prompt,
                       const int32_t *const *cand, const size_t *cand_len, float *logp,
                       struct slm_err *err) {
    llama_memory_t mem = llama_get_memory(s->lc);
    for (size_t c = 0; c < t->n_cand; c++) {
        llama_memory_seq_cp(mem, 0, (llama_seq_id)(c + 1), -1, -1);
    }
    struct llama_batch *b = &s->batch;
    b->n_tokens = (int32_t)t->n_nodes;
    for (size_t i = 0; i < t->n_nodes; i++) {
        batch_row(b, (int32_t)i, &s->nodes[i], n_prompt);
    }
    s->stats.n_cand_decoded += t->n_nodes;
    s->stats.n_chunks++;
    int rc = slm__decode_status(llama_decode(s->lc, *b), err);
    for (size_t i = 0; i < t->n_nodes && rc == SLM_OK; i++) {
        struct node *nd = &s->nodes[i];
        nd->z = slm__log_norm(llama_get_logits_ith(s->lc, (int32_t)i), s->n_vocab);
        nd->cum = 0;
        if (nd->parent >= 0) {
            const struct node *p = &s->nodes[nd->parent];
            const float *row = llama_get_logits_ith(s->lc, nd->parent);
            nd->cum = p->cum + ((double)row[nd->tok] - p->z);
        }
    }
    for (size_t c = 0; c < t->n_cand && rc == SLM_OK; c++) {
        size_t k = s->chunk[c];
        const struct node *leaf = &s->nodes[s->leaf[c]];
        const float *row = llama_get_logits_ith(s->lc, (int32_t)s->leaf[c]);
        double sum = leaf->cum + ((double)row[cand[k][cand_len[k] - 1]] - leaf->z);
        logp[k] = (float)((double)logp[k] + sum);
    }
    llama_memory_seq_keep(mem, 0); /* frees every candidate cell in one pass */
    return rc;
}

/* Scores every candidate of two tokens or more: sorted, then cut into
 * chunks of at most n_seq - 1 candidates and `room` trie nodes. */
static int score_rest(struct slm_scorer *s, size_t n_prompt, const int32_t *const *cand,
                      const size_t *cand_len, size_t n_cand, float *logp, struct slm_err *err) {
    int rc = reserve_order(s, n_cand, err);
    size_t n = 0;
    for (size_t k = 0; k < n_cand && rc == SLM_OK; k++) {
        if (cand_len[k] > 1) {
            s->order[n++] = k;
        }
    }
    if (rc != SLM_OK || n == 0) {
        return rc;
    }
    sort_candidates(s->order, s->order + s->cap_order, n, cand, cand_len);
    size_t room = SLM_MIN(s->n_ctx - n_prompt, (size_t)s->n_batch);
    struct trie t = {0};
    for (size_t i = 0; i < n && rc == SLM_OK; i++) {
        size_t k = s->order[i], path = cand_len[k] - 1;
        size_t shared = shared_path(s, &t, cand, cand[k], path);
        if (t.n_cand > 0 && (t.n_cand + 1 >= s->n_seq || t.n_nodes + path - shared > room)) {
            rc = trie_decode(s, &t, n_prompt, cand, cand_len, logp, err);
            t = (struct trie){0};
            shared = 0;
        }
        trie_add(s, &t, k, cand[k], path, shared);
    }
    if (rc == SLM_OK && t.n_cand > 0) {
        rc = trie_decode(s, &t, n_prompt, cand, cand_len, logp, err);
    }
    return rc;
}

/* Checks a call, decodes its prompt and scores every candidate's first token
 * from the prompt's last logits (logp[k]; 0 for an empty candidate). */
static int score_begin(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                       const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                       float *logp, struct slm_err *err) {
    memset(&s->stats, 0, sizeof(s->stats));
    size_t longest = 0;
    int rc = SLM_OK;
    for (size_t k = 0; k < n_cand && rc == SLM_OK; k++) {
        longest = SLM_MAX(longest, cand_len[k]);
        rc = check_tokens(s, cand[k], cand_len[k], "candidate", err);
    }
    if (rc == SLM_OK) {
        rc = check_prompt(s, prompt, n_prompt, longest, err);
    }
    if (rc == SLM_OK) {
        rc = decode_prompt(s, prompt, n_prompt, err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    /* First tokens from the prompt's last logits, before a chunk overwrites them. */
    const float *last = llama_get_logits_ith(s->lc, -1);
    double z = slm__log_norm(last, s->n_vocab);
    for (size_t k = 0; k < n_cand; k++) {
        logp[k] = cand_len[k] ? (float)((double)last[cand[k][0]] - z) : 0.0f;
    }
    return SLM_OK;
}

int slm_scorer_score(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                     const int32_t *const *cand, const size_t *cand_len, size_t n_cand, float *logp,
                     struct slm_err *err) {
    int rc = score_begin(s, prompt, n_prompt, cand, cand_len, n_cand, logp, err);
    if (rc != SLM_OK) {
        return rc;
    }
    rc = score_rest(s, n_prompt, cand, cand_len, n_cand, logp, err);
    if (rc != SLM_OK) {
        slm_scorer_reset(s);
    }
    return rc;
}

/* ------------------------------------------------------------ best first */

struct slm_scorer_search slm_scorer_search_default(void) {
    return (struct slm_scorer_search){.max_rest = 1e-3, .max_rows = 16};
}

/* The search over one trie of every candidate of two tokens or more. */
struct search {
    struct trie t;
    const struct slm_scorer_search *how;
    const int32_t *const *cand;
    const size_t *cand_len;
    size_t n_cand, n_prompt;
    float *logp;
    bool *exact;
    size_t best; /* an exact candidate of the highest log-prob; n_cand while none */
};

/* Lays every multi-token candidate out as one trie (a chunk of the full
 * scoring's kind) with child lists; false when they do not fit one chunk. */
static bool search_layout(struct slm_scorer *s, struct search *q, size_t n) {
    size_t room = SLM_MIN(s->n_ctx - q->n_prompt, (size_t)s->n_batch);
    struct trie *t = &q->t;
    for (size_t i = 0; i < n; i++) {
        size_t k = s->order[i], path = q->cand_len[k] - 1;
        size_t shared = shared_path(s, t, q->cand, q->cand[k], path);
        if (t->n_cand + 1 >= s->n_seq || t->n_nodes + path - shared > room) {
            return false;
        }
        trie_add(s, t, k, q->cand[k], path, shared);
    }
    for (size_t i = 0; i < t->n_nodes; i++) {
        struct node *nd = &s->nodes[i];
        nd->child = nd->sibling = nd->cand = -1;
        nd->n_child = 0;
        nd->state = nd->parent < 0 ? NODE_FRONTIER : NODE_UNKNOWN;
        nd->cum = 0;
    }
    /* Backwards, so that children and candidates stay in index order. */
    for (size_t i = t->n_nodes; i-- > 0;) {
        struct node *nd = &s->nodes[i];
        if (nd->parent >= 0) {
            struct node *p = &s->nodes[nd->parent];
            nd->sibling = p->child;
            p->child = (int32_t)i;
            p->n_child++;
        }
    }
    for (size_t c = t->n_cand; c-- > 0;) {
        struct node *leaf = &s->nodes[s->leaf[c]];
        s->next[c] = leaf->cand;
        leaf->cand = (int32_t)c;
    }
    for (size_t c = 0; c < t->n_cand; c++) {
        /* A depth-0 node's bound is its candidates' first token, known now. */
        size_t k = s->chunk[c];
        uint32_t i = s->leaf[c];
        while (s->nodes[i].parent >= 0) {
            i = (uint32_t)s->nodes[i].parent;
        }
        s->nodes[i].bound = (double)q->logp[k];
    }
    for (size_t i = 0; i < t->n_nodes; i++) {
        struct node *nd = &s->nodes[i];
        nd->first = nd->parent < 0 ? nd->bound : s->nodes[nd->parent].first;
    }
    return true;
}

static void search_note_exact(struct search *q, size_t k) {
    q->exact[k] = true;
    if (q->best == q->n_cand || q->logp[k] > q->logp[q->best] ||
        (k < q->best && q->logp[k] == q->logp[q->best])) {
        q->best = k;
    }
}

/* True when the search may stop: the best exact candidate beats every bound
 * still open, and the open bounds hold at most max_rest of the scored mass. */
static bool search_done(struct slm_scorer *s, const struct search *q) {
    if (q->best == q->n_cand) {
        return false;
    }
    double top = (double)q->logp[q->best], rest = 0, open = -INFINITY;
    for (size_t i = 0; i < q->t.n_nodes; i++) {
        const struct node *nd = &s->nodes[i];
        if (nd->state == NODE_FRONTIER) {
            open = SLM_MAX(open, nd->bound);
            rest += exp(nd->bound - top);
        }
    }
    /* A float's rounding of a sum near the top is ~1e-6: ties stay open. */
    if (open > -INFINITY && !(open + 1e-5 < top)) {
        return false;
    }
    if (!(q->how->max_rest < HUGE_VAL) || rest == 0) {
        return true;
    }
    double scored = 0;
    for (size_t k = 0; k < q->n_cand; k++) {
        scored += q->exact[k] ? exp((double)q->logp[k] - top) : 0;
    }
    return rest <= q->how->max_rest * scored;
}

/* Picks the nodes of the next decode: the undecoded ones with the highest
 * guess of their log-prob. A known bound is its own guess; below it, a node
 * guesses its parent's guess split evenly over the parent's children, so a
 * chain of single children rides along whole and a branch waits for its
 * logits. Parents come before their children (a child's guess is never
 * above its parent's; ties go to the lower index), so every picked node's
 * ancestors are decoded or picked. Returns how many. */
static size_t search_pick(struct slm_scorer *s, const struct search *q, size_t max_rows) {
    bool top_only = !(q->how->max_rest < HUGE_VAL);
    double floor = q->best < q->n_cand && top_only ? (double)q->logp[q->best] : -INFINITY;
    size_t n = 0;
    for (size_t i = 0; i < q->t.n_nodes; i++) {
        struct node *nd = &s->nodes[i];
        if (nd->state == NODE_DECODED) {
            continue;
        }
        if (nd->state == NODE_FRONTIER) {
            nd->est = nd->bound;
        } else {
            const struct node *p = &s->nodes[nd->parent];
            nd->est = p->est - log((double)p->n_child);
        }
        if (!(nd->est > floor - 1e-5)) {
            continue; /* nothing under it can win */
        }
        /* Insertion into the best max_rows so far, by guess, then index. */
        size_t j = n < max_rows ? n++ : max_rows;
        if (j == max_rows && !(nd->est > s->nodes[s->pick[max_rows - 1]].est)) {
            continue;
        }
        j = SLM_MIN(j, max_rows - 1);
        while (j > 0 && nd->est > s->nodes[s->pick[j - 1]].est) {
            s->pick[j] = s->pick[j - 1];
            j--;
        }
        s->pick[j] = (uint32_t)i;
    }
    return n;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Decodes the picked nodes in one batch, then makes their children's bounds
 * known and their candidates exact. */
static int search_decode(struct slm_scorer *s, struct search *q, size_t n_pick,
                         struct slm_err *err) {
    qsort(s->pick, n_pick, sizeof(*s->pick), cmp_u32); /* parents first */
    struct llama_batch *b = &s->batch;
    b->n_tokens = (int32_t)n_pick;
    for (size_t r = 0; r < n_pick; r++) {
        batch_row(b, (int32_t)r, &s->nodes[s->pick[r]], q->n_prompt);
    }
    s->stats.n_cand_decoded += n_pick;
    s->stats.n_chunks++;
    int rc = slm__decode_status(llama_decode(s->lc, *b), err);
    for (size_t r = 0; r < n_pick && rc == SLM_OK; r++) {
        struct node *nd = &s->nodes[s->pick[r]];
        const float *row = llama_get_logits_ith(s->lc, (int32_t)r);
        nd->z = slm__log_norm(row, s->n_vocab);
        nd->state = NODE_DECODED;
        /* The same sums, in the same order, as trie_decode's. */
        for (int32_t c = nd->child; c >= 0; c = s->nodes[c].sibling) {
            struct node *ch = &s->nodes[c];
            ch->cum = nd->cum + ((double)row[ch->tok] - nd->z);
            ch->bound = ch->first + ch->cum;
            ch->state = NODE_FRONTIER;
        }
        for (int32_t c = nd->cand; c >= 0; c = s->next[c]) {
            size_t k = s->chunk[c];
            double sum = nd->cum + ((double)row[q->cand[k][q->cand_len[k] - 1]] - nd->z);
            q->logp[k] = (float)((double)q->logp[k] + sum);
            search_note_exact(q, k);
        }
    }
    return rc;
}

/* The candidates that are still open get their bound as logp. */
static void search_bounds(struct slm_scorer *s, struct search *q) {
    for (size_t c = 0; c < q->t.n_cand; c++) {
        size_t k = s->chunk[c];
        if (q->exact[k]) {
            continue;
        }
        /* The shallowest node on its path that is not decoded holds a bound. */
        uint32_t i = s->leaf[c], open = i;
        for (;;) {
            if (s->nodes[i].state != NODE_DECODED) {
                open = i;
            }
            if (s->nodes[i].parent < 0) {
                break;
            }
            i = (uint32_t)s->nodes[i].parent;
        }
        q->logp[k] = (float)s->nodes[open].bound;
    }
}

int slm_scorer_best(struct slm_scorer *s, const int32_t *prompt, size_t n_prompt,
                    const int32_t *const *cand, const size_t *cand_len, size_t n_cand,
                    const struct slm_scorer_search *how, size_t *best, float *logp, bool *exact,
                    struct slm_err *err) {
    struct slm_scorer_search h = how ? *how : slm_scorer_search_default();
    if (n_cand == 0) {
        return slm_err_set(err, SLM_E_INVALID, "no candidates to choose from");
    }
    int rc = score_begin(s, prompt, n_prompt, cand, cand_len, n_cand, logp, err);
    size_t n = 0;
    for (size_t k = 0; k < n_cand && rc == SLM_OK; k++) {
        exact[k] = false;
    }
    if (rc == SLM_OK) {
        rc = reserve_order(s, n_cand, err);
    }
    for (size_t k = 0; k < n_cand && rc == SLM_OK; k++) {
        if (cand_len[k] > 1) {
            s->order[n++] = k;
        }
    }
    struct search q = {.how = &h,
                       .cand = cand,
                       .cand_len = cand_len,
                       .n_cand = n_cand,
                       .n_prompt = n_prompt,
                       .logp = logp,
                       .exact = exact,
                       .best = n_cand};
    if (rc == SLM_OK) {
        sort_candidates(s->order, s->order + s->cap_order, n, cand, cand_len);
        if (!search_layout(s, &q, n)) {
            /* More candidates than sequences or cells: score them all, in chunks. */
            rc = score_rest(s, n_prompt, cand, cand_len, n_cand, logp, err);
            for (size_t k = 0; k < n_cand && rc == SLM_OK; k++) {
                search_note_exact(&q, k);
            }
            n = 0;
            q.t = (struct trie){0};
        }
    }
    for (size_t k = 0; k < n_cand && rc == SLM_OK && n > 0; k++) {
        if (cand_len[k] <= 1) {
            search_note_exact(&q, k);
        }
    }
    if (rc == SLM_OK && n > 0) {
        llama_memory_t mem = llama_get_memory(s->lc);
        for (size_t c = 0; c < q.t.n_cand; c++) {
            llama_memory_seq_cp(mem, 0, (llama_seq_id)(c + 1), -1, -1);
        }
        /* Rows per decode start small and double every round up to max_rows:
         * a sure model stops after a few small decodes (banking77 on
         * stories260K tuned: 3.6 decodes of 23 rows in all, where the trie
         * has 932), an unsure one reaches the bulk of the trie in a few more. */
        size_t cap = h.max_rows ? h.max_rows : 16, max_rows = SLM_MIN((size_t)2, cap);
        while (rc == SLM_OK && !search_done(s, &q)) {
            size_t n_pick = search_pick(s, &q, max_rows);
            if (n_pick == 0) {
                break; /* every open bound is below the best: done */
            }
            rc = search_decode(s, &q, n_pick, err);
            max_rows = SLM_MIN(2 * max_rows, SLM_MIN(cap, (size_t)s->n_batch));
        }
        llama_memory_seq_keep(mem, 0);
        search_bounds(s, &q);
    }
    if (rc != SLM_OK) {
        slm_scorer_reset(s);
        return rc;
    }
    *best = q.best;
    return SLM_OK;
}
