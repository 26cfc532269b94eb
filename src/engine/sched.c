/*
 * engine/sched.c - the continuous-batching scheduler: one decode thread per
 * model, owning that model's llama contexts (one per adapter set, plus one
 * for embeddings when asked), serving many requests at once.
 *
 * Each context has n_parallel sequence ids, each with its own KV stream of
 * n_ctx / n_parallel cells (llama.cpp's kv_unified = false, as llama-server
 * runs with -np): a token attends over its own sequence's cells only, not
 * over every cell in use, which is what makes 16 parallel sequences cheap.
 * A sequence that is not active (prefilling or generating) is a cache
 * entry: the KV of the request it last served, kept until its id is needed.
 * A sequence is in one of these states:
 *
 *   EMPTY   -> no KV
 *   CACHED  -> idle; tokens[0..n_past) are in KV, reusable as a prefix
 *   WAIT    -> admitted; waits until another sequence has evaluated the
 *              prefix they share (a burst of requests with one few-shot
 *              block evaluates it once), then copies it
 *   PREFILL -> evaluating its prompt, in chunks that fit the batch
 *   GEN     -> generating; tokens[n_past] is sampled, not yet decoded
 *
 * A step of one context builds one llama_batch: one token for every
 * generating sequence, then prompt chunks in admission order up to n_batch
 * tokens; decodes it; samples each sequence from its own logits row with its
 * own sampler chain; pushes the text through the request's stop filter into
 * its channel; retires finished sequences. Steps of different contexts are
 * interleaved in the one thread.
 *
 * Prefix reuse takes the sequence that shares the longest prefix (cached or
 * active): in place when the new request lands on that sequence's own id,
 * else by copying its stream (llama.cpp copies streams whole, at the next
 * decode; a memcpy of the stream, far cheaper than evaluating the prefix
 * again) and cutting the copy to the common prefix.
 *
 * Which id a new request takes matters for speed: llama.cpp splits a batch
 * over several streams into runs of consecutive sequence ids, one ubatch
 * (one pass over the weights) per run. So a request takes a free id inside
 * or next to the range of active ids (see claim_seq), and the batch lists
 * sequences in id order.
 *
 * The token loop allocates nothing: batches, sequence token arrays and
 * embedding sums are sized when a context is made; sampler chains and stop
 * filters when a request is admitted; channels when it is submitted.
 *
 * Threads: the decode thread alone touches contexts and sequences; the
 * queue, the counters and the wake-up counter are under `mu`.
 */
#include "slm/sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/sample.h"
#include "engine/sched_internal.h"
#include "slm/sys.h"

/* A new request waits for a prefix another sequence is still evaluating only
 * when that saves at least this many tokens. */
#define SHARE_MIN_WAIT 32
/* A prefix held by another sequence is copied (a whole stream: a memcpy of
 * its KV) only when it is at least this long; shorter ones are evaluated. */
#define SHARE_MIN_COPY 16
/* Adapters in one set (llama.cpp takes them as one array). */
#define MAX_ADAPTERS 64

enum seq_state { SEQ_EMPTY, SEQ_CACHED, SEQ_WAIT, SEQ_PREFILL, SEQ_GEN };

struct seq {
    int32_t id;
    enum seq_state state;
    uint32_t epoch;  /* changes whenever KV this sequence held is dropped */
    int32_t *tokens; /* seq_cap entries: prompt, then generated tokens */
    uint32_t n_tokens;
    uint32_t n_past; /* tokens[0..n_past) are in the KV cache */
    uint32_t n_prompt;
    uint64_t order; /* admission order: prompts are evaluated first come, first served */
    double last_used;
    struct slm_request *req;
    struct llama_sampler *chain;
    struct slm_stop_filter stop;
    int32_t wait_src; /* index of the sequence whose prefix this one waits for */
    uint32_t wait_epoch;
    uint32_t wait_len;
    int32_t row;       /* batch row holding this sequence's logits this step, or -1 */
    int32_t first_row; /* its first batch row this step */
    uint32_t n_batch;  /* tokens it put in this step's batch */
    double *embd_sum;  /* embed contexts: n_embd running sums */
    struct slm_gen_stats st;
    double t_start;
    double t_first;
    double t_grammar; /* seconds spent sampling under a grammar */
};

struct sctx {
    struct llama_context *lc;
    struct slm_adapter **adapters;
    float *scales;
    size_t n_adapters;
    bool embed;
    struct llama_batch batch;
    struct seq *seqs;
    struct seq **order; /* scratch: prefilling sequences by admission */
    int32_t n_seq;
    int32_t n_active;
    double last_used;
};

struct slm_sched {
    struct slm_model *model;
    struct slm_sched_params p; /* resolved: no zeros */
    uint32_t seq_cap;          /* tokens one sequence may hold */
    int32_t n_vocab;
    int32_t n_embd;
    bool can_share; /* the memory supports partial removal and copies (not recurrent) */

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    uint64_t kicks;
    struct slm_request *q_head, *q_tail;
    uint32_t q_len;
    uint32_t n_active; /* active sequences over all contexts */
    struct slm_sched_stats stats;

    /* Decode thread only (and init/free). */
    struct sctx **ctxs;
    size_t n_ctxs;
    llama_token_data *cand;
    int32_t *eog;
    size_t n_eog;
    struct slm_buf piece;
    struct slm_buf out;
    struct slm_top_logprob top[SLM_MAX_TOP_LOGPROBS];
    uint64_t order;
    size_t rr;
};

struct slm_sched_params slm_sched_params_default(void) {
    return (struct slm_sched_params){0};
}

void slm__sched_kick(struct slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->kicks++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static bool seq_active(const struct seq *q) {
    return q->state == SEQ_WAIT || q->state == SEQ_PREFILL || q->state == SEQ_GEN;
}

/* ---------------------------------------------------------------- contexts */

static void sctx_free(struct sctx *c) {
    if (!c) {
        return;
    }
    for (int32_t i = 0; c->seqs && i < c->n_seq; i++) {
        free(c->seqs[i].tokens);
        free(c->seqs[i].embd_sum);
    }
    free(c->seqs);
    free(c->order);
    free(c->adapters);
    free(c->scales);
    llama_batch_free(c->batch);
    if (c->lc) {
        llama_free(c->lc);
    }
    free(c);
}

static int sctx_set_adapters(struct sctx *c, struct slm_adapter *const *adapters,
                             const float *scales, size_t n, struct slm_err *err) {
    if (n == 0) {
        return SLM_OK;
    }
    struct llama_adapter_lora *la[MAX_ADAPTERS];
    float sc[MAX_ADAPTERS];
    c->adapters = malloc(n * sizeof(*c->adapters));
    c->scales = malloc(n * sizeof(*c->scales));
    if (!c->adapters || !c->scales) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        la[i] = adapters[i]->la;
        sc[i] = scales[i];
        c->adapters[i] = adapters[i];
        c->scales[i] = scales[i];
    }
    c->n_adapters = n;
    if (llama_set_adapters_lora(c->lc, la, n, sc) != 0) {
        return slm_err_set(err, SLM_E_BACKEND, "llama.cpp refused the adapter set");
    }
    return SLM_OK;
}

static int sctx_alloc_seqs(struct slm_sched *s, struct sctx *c) {
    c->seqs = calloc((size_t)c->n_seq, sizeof(*c->seqs));
    c->order = calloc((size_t)c->n_seq, sizeof(*c->order));
    if (!c->seqs || !c->order) {
        return SLM_E_NOMEM;
    }
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        q->id = i;
        q->row = -1;
        q->tokens = malloc(s->seq_cap * sizeof(*q->tokens));
        if (!q->tokens) {
            return SLM_E_NOMEM;
        }
        if (c->embed) {
            q->embd_sum = calloc((size_t)s->n_embd, sizeof(*q->embd_sum));
            if (!q->embd_sum) {
                return SLM_E_NOMEM;
            }
        }
    }
    return SLM_OK;
}

/* A context for one adapter set (and generation or embeddings). */
static int sctx_new(struct slm_sched *s, struct slm_adapter *const *adapters, const float *scales,
                    size_t n_adapters, bool embed, struct sctx **out, struct slm_err *err) {
    struct sctx *c = calloc(1, sizeof(*c));
    if (!c) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    c->embed = embed;
    c->n_seq = s->p.n_parallel;
    struct llama_context_params lp = llama_context_default_params();
    lp.n_ctx = s->p.n_ctx;
    lp.n_batch = s->p.n_batch;
    lp.n_ubatch = SLM_MIN(s->p.n_batch, 512u);
    lp.n_seq_max = (uint32_t)c->n_seq;
    lp.n_threads = s->p.n_threads;
    lp.n_threads_batch = s->p.n_threads;
    lp.kv_unified = false; /* a stream per sequence: see the top of this file */
    lp.no_perf = true;
    /* Prefix reuse removes KV from arbitrary positions; a sliding-window
     * cache would have forgotten them. */
    lp.swa_full = true;
    if (s->p.kv_f32) {
        /* Flash attention would cast an F32 cache back to F16. */
        lp.type_k = GGML_TYPE_F32;
        lp.type_v = GGML_TYPE_F32;
        lp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    if (embed) {
        /* Per-token embeddings, mean-pooled here so a prompt may span
         * several batches. */
        lp.embeddings = true;
        lp.pooling_type = LLAMA_POOLING_TYPE_NONE;
    }
    int rc = SLM_OK;
    c->lc = llama_init_from_model(s->model->lm, lp);
    if (!c->lc) {
        rc = slm_err_set(err, SLM_E_BACKEND,
                         "could not create a context of %u tokens (out of memory?)", s->p.n_ctx);
        goto fail;
    }
    c->batch = llama_batch_init((int32_t)s->p.n_batch, 0, 1);
    if (!c->batch.token || sctx_alloc_seqs(s, c) != SLM_OK) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        goto fail;
    }
    rc = sctx_set_adapters(c, adapters, scales, n_adapters, err);
    if (rc != SLM_OK) {
        goto fail;
    }
    c->last_used = slm_time_mono();
    *out = c;
    return SLM_OK;
fail:
    sctx_free(c);
    return rc;
}

static bool sctx_matches(const struct sctx *c, const struct slm_request *r) {
    if (c->embed != r->embed || c->n_adapters != r->n_adapters) {
        return false;
    }
    for (size_t i = 0; i < r->n_adapters; i++) {
        if (c->adapters[i] != r->adapters[i] || c->scales[i] != r->scales[i]) {
            return false;
        }
    }
    return true;
}

static struct sctx *find_ctx(struct slm_sched *s, const struct slm_request *r) {
    for (size_t i = 0; i < s->n_ctxs; i++) {
        if (sctx_matches(s->ctxs[i], r)) {
            return s->ctxs[i];
        }
    }
    return NULL;
}

/* The least recently used context with nothing running, or -1. */
static ptrdiff_t idle_ctx(const struct slm_sched *s) {
    ptrdiff_t best = -1;
    for (size_t i = 0; i < s->n_ctxs; i++) {
        if (s->ctxs[i]->n_active == 0 &&
            (best < 0 || s->ctxs[i]->last_used < s->ctxs[(size_t)best]->last_used)) {
            best = (ptrdiff_t)i;
        }
    }
    return best;
}

/* ---------------------------------------------------------------- sequences */

static llama_memory_t mem_of(const struct sctx *c) {
    return llama_get_memory(c->lc);
}

static void seq_drop(struct sctx *c, struct seq *q) {
    llama_memory_seq_rm(mem_of(c), q->id, -1, -1);
    q->n_past = 0;
    q->n_tokens = 0;
    q->epoch++;
    q->state = SEQ_EMPTY;
}

/* Keeps tokens[0..n) of q's KV. */
static void seq_truncate(struct sctx *c, struct seq *q, uint32_t n) {
    if (n >= q->n_past) {
        return;
    }
    q->epoch++;
    if (!llama_memory_seq_rm(mem_of(c), q->id, (llama_pos)n, -1)) {
        llama_memory_seq_rm(mem_of(c), q->id, -1, -1);
        n = 0;
    }
    q->n_past = n;
}

/* Makes q's KV hold the first `len` tokens of src's (q's own KV is replaced). */
static void seq_adopt(struct sctx *c, struct seq *q, struct seq *src, uint32_t len) {
    if (src == q) {
        seq_truncate(c, q, len);
        return;
    }
    llama_memory_seq_rm(mem_of(c), q->id, -1, -1);
    q->n_past = 0;
    if (len > 0) {
        /* Across streams llama.cpp copies whole streams only. */
        llama_memory_seq_cp(mem_of(c), src->id, q->id, -1, -1);
        llama_memory_seq_rm(mem_of(c), q->id, (llama_pos)len, -1);
        q->n_past = len;
    }
}

struct match {
    struct seq *src; /* longest prefix available now */
    uint32_t now;
    struct seq *wait; /* longer prefix a prefilling sequence will have */
    uint32_t wait_len;
};

static uint32_t common_prefix(const int32_t *a, uint32_t na, const int32_t *b, uint32_t nb) {
    uint32_t n = SLM_MIN(na, nb);
    uint32_t i = 0;
    while (i < n && a[i] == b[i]) {
        i++;
    }
    return i;
}

/* Finds the sequences sharing the longest prefix with `prompt`: at most
 * n - 1 tokens, since the last one must be evaluated for its logits. */
static void find_match(const struct slm_sched *s, struct sctx *c, const int32_t *prompt, uint32_t n,
                       bool allow_wait, struct match *m) {
    memset(m, 0, sizeof(*m));
    if (!s->can_share || c->embed || n < 2) {
        return;
    }
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        if (q->state == SEQ_EMPTY) {
            continue;
        }
        uint32_t known = seq_active(q) ? q->n_tokens : q->n_past;
        uint32_t len = SLM_MIN(common_prefix(q->tokens, known, prompt, n), n - 1);
        uint32_t now = SLM_MIN(len, q->n_past);
        if (now > m->now) {
            m->src = q;
            m->now = now;
        }
        if (allow_wait && (q->state == SEQ_PREFILL || q->state == SEQ_WAIT) && len > m->wait_len) {
            m->wait = q;
            m->wait_len = len;
        }
    }
    if (m->wait && m->wait_len < m->now + SHARE_MIN_WAIT) {
        m->wait = NULL;
        m->wait_len = 0;
    }
}

/*
 * A sequence id for a new request. Candidates are the ids that keep the
 * active ones consecutive: a free id between two active ones first, else one
 * just below or above the active range, else (nothing active) any. Among the
 * candidates: the cached best match itself (its prefix is used in place)
 * when the match is SHARE_MIN_COPY tokens or half the entry, else an empty one, else the least
 * recently used cache entry. Free ids further out keep their cache entries.
 */
static struct seq *claim_seq(struct sctx *c, struct match *m) {
    int32_t lo = c->n_seq, hi = -1;
    for (int32_t i = 0; i < c->n_seq; i++) {
        if (seq_active(&c->seqs[i])) {
            lo = SLM_MIN(lo, i);
            hi = SLM_MAX(hi, i);
        }
    }
    int32_t from = 0, to = c->n_seq - 1;
    if (hi >= 0) {
        bool gap = false;
        for (int32_t i = lo; i <= hi && !gap; i++) {
            gap = !seq_active(&c->seqs[i]);
        }
        from = gap ? lo : SLM_MAX(lo - 1, 0);
        to = gap ? hi : SLM_MIN(hi + 1, c->n_seq - 1);
    }
    struct seq *empty = NULL, *lru = NULL;
    for (int32_t i = from; i <= to; i++) {
        struct seq *q = &c->seqs[i];
        if (seq_active(q)) {
            continue;
        }
        /* In place when the match is long, or is most of what the entry
         * holds (an editor's next keystroke): little else is lost. */
        if (q == m->src && (m->now >= SHARE_MIN_COPY || 2 * m->now >= q->n_past)) {
            return q;
        }
        if (q->state == SEQ_EMPTY) {
            empty = empty ? empty : q;
        } else if (!lru || q->last_used < lru->last_used) {
            lru = q;
        }
    }
    return empty ? empty : lru;
}

/* ---------------------------------------------------------------- retiring */

static void count_active(struct slm_sched *s, int delta) {
    pthread_mutex_lock(&s->mu);
    s->n_active = (uint32_t)((int)s->n_active + delta);
    s->stats.active = s->n_active;
    pthread_mutex_unlock(&s->mu);
}

/* Ends q's request with `finish` (status SLM_OK) or a failure, and makes q a
 * cache entry (or empty when its KV cannot be trusted or is not wanted). */
static void retire(struct slm_sched *s, struct sctx *c, struct seq *q, enum slm_finish finish,
                   int status, const char *msg) {
    struct slm_request *r = q->req;
    double now = slm_time_mono();
    if (status == SLM_OK && finish != SLM_FINISH_ABORTED) {
        slm_buf_clear(&s->out);
        if (slm_stop_filter_flush(&q->stop, &s->out) == SLM_OK && s->out.len > 0) {
            slm__req_post_text(r, s->out.ptr, s->out.len);
        }
    }
    q->st.finish = finish;
    if (q->t_first > 0) {
        q->st.t_gen = now - q->t_first;
    } else {
        q->st.t_prompt = now - q->t_start;
    }
    if (finish == SLM_FINISH_ABORTED && status == SLM_OK) {
        status = SLM_E_ABORTED;
        msg = msg ? msg : "cancelled";
    }
    llama_sampler_free(q->chain);
    q->chain = NULL;
    slm_stop_filter_free(&q->stop);
    q->req = NULL;
    slm__req_finish(r, status, msg, &q->st);
    c->n_active--;
    c->last_used = now;
    count_active(s, -1);
    bool keep = !c->embed && q->n_past > 0 && q->state != SEQ_WAIT &&
                (status == SLM_OK || status == SLM_E_ABORTED);
    if (keep) {
        q->state = SEQ_CACHED;
        q->n_tokens = q->n_past;
        q->last_used = now;
    } else {
        seq_drop(c, q);
    }
}

/* ---------------------------------------------------------------- admission */

static bool placeable(const struct slm_sched *s, const struct slm_request *r) {
    for (size_t i = 0; i < s->n_ctxs; i++) {
        if (sctx_matches(s->ctxs[i], r)) {
            return s->ctxs[i]->n_active < s->p.n_parallel;
        }
    }
    return s->n_ctxs < s->p.max_contexts || idle_ctx(s) >= 0;
}

static int ctx_for(struct slm_sched *s, struct slm_request *r, struct sctx **out,
                   struct slm_err *err) {
    struct sctx *c = find_ctx(s, r);
    if (c) {
        *out = c;
        return SLM_OK;
    }
    if (s->n_ctxs >= s->p.max_contexts) {
        ptrdiff_t i = idle_ctx(s); /* placeable() saw one */
        if (i < 0) {
            return slm_err_set(err, SLM_E_LIMIT, "every context is busy");
        }
        sctx_free(s->ctxs[i]);
        s->ctxs[i] = s->ctxs[--s->n_ctxs];
    }
    int rc = sctx_new(s, r->adapters, r->scales, r->n_adapters, r->embed, &c, err);
    if (rc != SLM_OK) {
        return rc;
    }
    s->ctxs[s->n_ctxs++] = c;
    *out = c;
    return SLM_OK;
}

static void count_cached(struct slm_sched *s, uint32_t n) {
    if (n == 0) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stats.cached_tokens += n;
    pthread_mutex_unlock(&s->mu);
}

/* Puts `r` on a sequence of its context; finishes it with the error when
 * that fails. */
static void place(struct slm_sched *s, struct slm_request *r) {
    struct slm_err err = {0};
    struct sctx *c = NULL;
    int rc = ctx_for(s, r, &c, &err);
    if (rc != SLM_OK) {
        slm__req_finish(r, rc, err.msg, NULL);
        return;
    }
    struct llama_sampler *chain = NULL;
    if (!r->embed) {
        rc = slm__chain_init(s->model, &r->gen.sample, (int32_t)s->seq_cap, &chain, &err);
        if (rc != SLM_OK) {
            slm__req_finish(r, rc, err.msg, NULL);
            return;
        }
    }
    /* The stop filter holds back at most a stop string and a piece: sized
     * now, so that the token loop does not allocate. */
    struct slm_stop_filter stop;
    slm_stop_filter_init(&stop, r->gen.stop, r->gen.n_stop);
    size_t longest = 0;
    for (size_t i = 0; i < r->gen.n_stop; i++) {
        longest = SLM_MAX(longest, strlen(r->gen.stop[i]));
    }
    if (slm_buf_reserve(&stop.pending, 512 + 2 * longest) != SLM_OK) {
        llama_sampler_free(chain);
        slm__req_finish(r, SLM_E_NOMEM, "out of memory", NULL);
        return;
    }
    uint32_t n = (uint32_t)r->n_prompt;
    struct match m;
    find_match(s, c, r->prompt, n, true, &m);
    struct seq *q = claim_seq(c, &m);
    if (!q) {
        /* Cannot happen (placeable() saw n_active < n_parallel = n_seq), but
         * a request must never be lost. */
        llama_sampler_free(chain);
        slm_stop_filter_free(&stop);
        slm__req_finish(r, SLM_E_BACKEND, "no free sequence", NULL);
        return;
    }
    /* What q itself still holds of the prompt, and whether another
     * sequence's longer prefix is worth a copy. */
    uint32_t own = SLM_MIN(common_prefix(q->tokens, q->n_past, r->prompt, n), n - 1);
    struct seq *src = q;
    uint32_t len = own;
    if (m.src && m.src != q && m.now >= SHARE_MIN_COPY && m.now > own) {
        src = m.src;
        len = m.now;
    }
    /* A new owner: whoever waited for this sequence's old tokens must look
     * again (its KV past n_past will be other tokens). */
    q->epoch++;
    memset(&q->st, 0, sizeof(q->st));
    q->req = r;
    q->chain = chain;
    q->stop = stop;
    memcpy(q->tokens, r->prompt, n * sizeof(*q->tokens));
    q->n_tokens = n;
    q->n_prompt = n;
    q->order = s->order++;
    q->t_start = slm_time_mono();
    q->t_first = 0;
    q->t_grammar = 0;
    q->st.n_prompt = (int32_t)n;
    if (c->embed) {
        memset(q->embd_sum, 0, (size_t)s->n_embd * sizeof(*q->embd_sum));
    }
    if (m.wait) {
        q->state = SEQ_WAIT;
        q->wait_src = m.wait->id;
        q->wait_epoch = m.wait->epoch;
        q->wait_len = m.wait_len;
        seq_adopt(c, q, q, 0);
    } else {
        q->state = SEQ_PREFILL;
        seq_adopt(c, q, src, len);
        q->st.n_cached = (int32_t)q->n_past;
        count_cached(s, q->n_past);
    }
    c->n_active++;
    c->last_used = q->t_start;
    count_active(s, +1);
}

/* Admits queued requests while sequences are free; drops cancelled ones.
 * Returns true when it did anything. */
static bool admit(struct slm_sched *s) {
    bool any = false;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct slm_request *r = s->q_head, *prev = NULL;
        while (r && !atomic_load(&r->cancel) && !placeable(s, r)) {
            prev = r;
            r = r->next;
        }
        if (r) {
            if (prev) {
                prev->next = r->next;
            } else {
                s->q_head = r->next;
            }
            if (s->q_tail == r) {
                s->q_tail = prev;
            }
            r->next = NULL;
            s->q_len--;
            s->stats.queue_depth = s->q_len;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r) {
            return any;
        }
        any = true;
        if (atomic_load(&r->cancel)) {
            slm__req_finish(r, SLM_E_ABORTED, "cancelled while queued", NULL);
        } else {
            place(s, r);
        }
    }
}

/* ---------------------------------------------------------------- stepping */

/* A waiting sequence copies the shared prefix once its source has it, or
 * takes what there is when the source went away. */
static void wake_waiter(struct slm_sched *s, struct sctx *c, struct seq *q) {
    struct seq *src = &c->seqs[q->wait_src];
    bool same = src->epoch == q->wait_epoch;
    if (same && src->n_past >= q->wait_len) {
        seq_adopt(c, q, src, q->wait_len);
    } else if (same && (src->state == SEQ_PREFILL || src->state == SEQ_WAIT)) {
        return;
    } else {
        struct match m;
        q->state = SEQ_PREFILL; /* not a wait source for itself while matching */
        find_match(s, c, q->tokens, q->n_prompt, false, &m);
        bool copy = m.src && m.src != q && m.now >= SHARE_MIN_COPY;
        seq_adopt(c, q, copy ? m.src : q, copy ? m.now : 0);
    }
    q->state = SEQ_PREFILL;
    q->st.n_cached = (int32_t)q->n_past;
    count_cached(s, q->n_past);
}

static void batch_add(struct llama_batch *b, int32_t tok, uint32_t pos, int32_t seq, bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = (llama_pos)pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = logits;
}

/* Cancelled requests leave; waiters whose prefix is ready start prefilling. */
static bool prepare(struct slm_sched *s, struct sctx *c) {
    bool any = false;
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        q->row = -1;
        q->n_batch = 0;
        if (!seq_active(q)) {
            continue;
        }
        if (atomic_load(&q->req->cancel)) {
            retire(s, c, q, SLM_FINISH_ABORTED, SLM_OK, NULL);
            any = true;
        } else if (q->state == SEQ_WAIT) {
            wake_waiter(s, c, q);
        }
    }
    return any;
}

/* Builds this step's batch: a token per generating sequence whose reader
 * keeps up, then prompt chunks in admission order up to n_batch tokens. The
 * tokens go in in sequence id order, so that llama.cpp's split of the batch
 * over streams finds the longest runs of consecutive ids. Returns prompt
 * tokens. */
static uint32_t build_batch(struct slm_sched *s, struct sctx *c) {
    struct llama_batch *b = &c->batch;
    b->n_tokens = 0;
    int32_t n_pre = 0;
    uint32_t used = 0;
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        if (q->state == SEQ_GEN && slm__req_has_room(q->req)) {
            q->n_batch = 1;
            used++;
        } else if (q->state == SEQ_PREFILL) {
            int32_t j = n_pre++;
            while (j > 0 && c->order[j - 1]->order > q->order) {
                c->order[j] = c->order[j - 1];
                j--;
            }
            c->order[j] = q;
        }
    }
    uint32_t n_prompt = 0;
    for (int32_t k = 0; k < n_pre && used < s->p.n_batch; k++) {
        struct seq *q = c->order[k];
        q->n_batch = SLM_MIN(q->n_prompt - q->n_past, s->p.n_batch - used);
        used += q->n_batch;
        n_prompt += q->n_batch;
    }
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        if (q->n_batch == 0) {
            continue;
        }
        q->first_row = b->n_tokens;
        if (q->state == SEQ_GEN) {
            q->row = b->n_tokens;
            batch_add(b, q->tokens[q->n_past], q->n_past, q->id, true);
            continue;
        }
        for (uint32_t j = 0; j < q->n_batch; j++) {
            uint32_t pos = q->n_past + j;
            bool last = pos == q->n_prompt - 1;
            if (last) {
                q->row = b->n_tokens;
            }
            batch_add(b, q->tokens[pos], pos, q->id, c->embed || last);
        }
    }
    return n_prompt;
}

static void fail_batch(struct slm_sched *s, struct sctx *c, int rc, const char *msg) {
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        if (seq_active(q) && q->n_batch > 0) {
            q->n_past = 0; /* what the failed decode left in KV is not trusted */
            retire(s, c, q, SLM_FINISH_NONE, rc, msg);
        }
    }
}

/* Decodes the batch. A sequence never holds more than its stream's cells
 * (seq_cap), so there is no "no room" to make here. */
static int decode(struct sctx *c, struct slm_err *err) {
    return slm__decode_status(llama_decode(c->lc, c->batch), err);
}

static void finish_embedding(struct slm_sched *s, struct sctx *c, struct seq *q) {
    float *v = q->req->embd;
    double norm = 0.0;
    for (int32_t i = 0; i < s->n_embd; i++) {
        double x = q->embd_sum[i] / (double)q->n_prompt;
        v[i] = (float)x;
        norm += x * x;
    }
    norm = sqrt(norm);
    for (int32_t i = 0; norm > 0.0 && i < s->n_embd; i++) {
        v[i] = (float)(v[i] / norm);
    }
    q->st.t_prompt = slm_time_mono() - q->t_start;
    retire(s, c, q, SLM_FINISH_STOP, SLM_OK, NULL);
}

static int accumulate_embeddings(struct slm_sched *s, struct sctx *c, struct seq *q) {
    for (uint32_t j = 0; j < q->n_batch; j++) {
        const float *e = llama_get_embeddings_ith(c->lc, q->first_row + (int32_t)j);
        if (!e) {
            return SLM_E_BACKEND;
        }
        for (int32_t i = 0; i < s->n_embd; i++) {
            q->embd_sum[i] += e[i];
        }
    }
    return SLM_OK;
}

/* Samples q's next token from its logits row and hands it to the reader. */
static void next_token(struct slm_sched *s, struct sctx *c, struct seq *q) {
    struct slm_request *r = q->req;
    const float *logits = llama_get_logits_ith(c->lc, q->row);
    if (!logits) {
        retire(s, c, q, SLM_FINISH_NONE, SLM_E_BACKEND, "llama.cpp returned no logits");
        return;
    }
    /* A grammar's cost per token depends on the grammar, and every other
     * sequence waits for it: a request gets a budget of sampling time. */
    bool timed = r->gen.sample_budget > 0 && r->gen.sample.grammar && r->gen.sample.grammar[0];
    double t0 = timed ? slm_time_mono() : 0;
    int32_t tok = slm__sample_token(q->chain, logits, s->n_vocab, s->cand, s->eog, s->n_eog,
                                    r->gen.ignore_eos);
    if (timed && (q->t_grammar += slm_time_mono() - t0) > r->gen.sample_budget) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "sampling under the grammar took more than %.3g s after %d tokens: the JSON "
                 "schema, pattern or tool set is too costly for this model",
                 r->gen.sample_budget, q->st.n_gen + 1);
        retire(s, c, q, SLM_FINISH_NONE, SLM_E_TIMEOUT, msg);
        return;
    }
    if (tok < 0 || llama_vocab_is_eog(s->model->vocab, tok)) {
        retire(s, c, q, SLM_FINISH_STOP, SLM_OK, NULL);
        return;
    }
    float lp = 0.0f;
    int n_top = 0;
    if (r->gen.logprobs || r->k_top > 0) {
        lp = slm__token_logprob(logits, s->n_vocab, tok, r->k_top, s->top);
        n_top = r->k_top;
        q->st.logprob_sum += lp;
        q->st.logprob_min = q->st.n_gen == 0 ? lp : SLM_MIN(q->st.logprob_min, lp);
    }
    q->st.n_gen++;
    slm_buf_clear(&s->piece);
    slm_buf_clear(&s->out);
    int rc = slm_token_to_piece(s->model, tok, false, &s->piece);
    if (rc == SLM_OK) {
        rc = slm_stop_filter_push(&q->stop, s->piece.ptr, s->piece.len, &s->out);
    }
    if (rc == SLM_OK) {
        rc = slm__req_post(r, tok, lp, s->top, n_top, slm_buf_cstr(&s->out), s->out.len);
    }
    if (rc != SLM_OK) {
        retire(s, c, q, SLM_FINISH_NONE, rc, "streaming output failed");
    } else if (q->stop.stopped) {
        retire(s, c, q, SLM_FINISH_STOP, SLM_OK, NULL);
    } else if (r->gen.max_tokens >= 0 && q->st.n_gen >= r->gen.max_tokens) {
        retire(s, c, q, SLM_FINISH_LENGTH, SLM_OK, NULL);
    } else if (q->n_past + 1 >= s->seq_cap) {
        retire(s, c, q, SLM_FINISH_CONTEXT, SLM_OK, NULL);
    } else {
        q->tokens[q->n_tokens++] = tok;
    }
}

/* After a decode: advances every sequence in the batch. Returns tokens
 * generated. */
static uint32_t advance(struct slm_sched *s, struct sctx *c) {
    uint32_t n_gen = 0;
    for (int32_t i = 0; i < c->n_seq; i++) {
        struct seq *q = &c->seqs[i];
        if (!seq_active(q) || q->n_batch == 0) {
            continue;
        }
        bool prefill = q->state == SEQ_PREFILL;
        q->n_past += q->n_batch;
        if (c->embed) {
            if (accumulate_embeddings(s, c, q) != SLM_OK) {
                retire(s, c, q, SLM_FINISH_NONE, SLM_E_BACKEND, "llama.cpp returned no embeddings");
            } else if (q->n_past == q->n_prompt) {
                finish_embedding(s, c, q);
            }
            continue;
        }
        if (q->row < 0) {
            continue; /* a prompt chunk that is not the last */
        }
        if (prefill) {
            q->t_first = slm_time_mono();
            q->st.t_prompt = q->t_first - q->t_start;
            q->state = SEQ_GEN;
            if (q->req->gen.max_tokens == 0) {
                retire(s, c, q, SLM_FINISH_LENGTH, SLM_OK, NULL);
                continue;
            }
        }
        uint32_t before = (uint32_t)q->st.n_gen;
        next_token(s, c, q);
        n_gen += (uint32_t)q->st.n_gen - before;
    }
    return n_gen;
}

/* One decode of context `c`. Returns true when anything happened. */
static bool step(struct slm_sched *s, struct sctx *c) {
    if (c->n_active == 0) {
        return false;
    }
    bool any = prepare(s, c);
    uint32_t n_prompt = build_batch(s, c);
    if (c->batch.n_tokens == 0) {
        return any;
    }
    double t0 = slm_time_mono();
    struct slm_err err = {0};
    int rc = decode(c, &err);
    double dt = slm_time_mono() - t0;
    if (rc != SLM_OK) {
        fail_batch(s, c, rc, err.msg);
        return true;
    }
    uint32_t n_tok = (uint32_t)c->batch.n_tokens;
    uint32_t n_gen = advance(s, c);
    double share = (double)n_prompt / (double)n_tok;
    pthread_mutex_lock(&s->mu);
    s->stats.prompt_tokens += n_prompt;
    s->stats.gen_tokens += n_gen;
    s->stats.last_batch = n_tok;
    s->stats.prompt_seconds += dt * share;
    s->stats.gen_seconds += dt * (1.0 - share);
    pthread_mutex_unlock(&s->mu);
    c->last_used = slm_time_mono();
    return true;
}

/* ---------------------------------------------------------------- the thread */

static void shutdown_all(struct slm_sched *s) {
    for (size_t i = 0; i < s->n_ctxs; i++) {
        struct sctx *c = s->ctxs[i];
        for (int32_t j = 0; j < c->n_seq; j++) {
            if (seq_active(&c->seqs[j])) {
                retire(s, c, &c->seqs[j], SLM_FINISH_ABORTED, SLM_E_ABORTED,
                       "the scheduler was shut down");
            }
        }
    }
    pthread_mutex_lock(&s->mu);
    struct slm_request *r = s->q_head;
    s->q_head = s->q_tail = NULL;
    s->q_len = 0;
    pthread_mutex_unlock(&s->mu);
    while (r) {
        struct slm_request *next = r->next;
        slm__req_finish(r, SLM_E_ABORTED, "the scheduler was shut down", NULL);
        r = next;
    }
}

static void *sched_main(void *arg) {
    struct slm_sched *s = arg;
    uint64_t seen = 0;
    bool progress = false;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !progress && s->kicks == seen) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        seen = s->kicks;
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) {
            break;
        }
        progress = admit(s);
        /* Round robin over contexts, so that no adapter set goes first always. */
        size_t n = s->n_ctxs;
        for (size_t k = 0; k < n; k++) {
            progress |= step(s, s->ctxs[(s->rr + k) % n]);
        }
        s->rr++;
    }
    shutdown_all(s);
    return NULL;
}

/* ---------------------------------------------------------------- init / free */

static int resolve_params(const struct slm_model *model, const struct slm_sched_params *in,
                          struct slm_sched_params *p, struct slm_err *err) {
    *p = in ? *in : slm_sched_params_default();
    if (p->n_parallel <= 0) {
        p->n_parallel = 4;
    }
    if (p->n_parallel > 128) {
        return slm_err_set(err, SLM_E_INVALID, "n_parallel %d: at most 128", p->n_parallel);
    }
    uint32_t n_train = (uint32_t)SLM_MAX(llama_model_n_ctx_train(model->lm), 0);
    if (p->n_ctx == 0) {
        uint32_t per = n_train > 0 && n_train < 4096 ? n_train : 4096;
        p->n_ctx = per * (uint32_t)p->n_parallel;
    }
    if (p->n_ctx / (uint32_t)p->n_parallel < 2) {
        return slm_err_set(err, SLM_E_INVALID, "n_ctx %u is too small for %d sequences", p->n_ctx,
                           p->n_parallel);
    }
    if (p->n_batch == 0) {
        /* llama-server's default: the prompts of requests that arrive together start
         * together, so none waits behind the others' prefill (bench/run_server.sh: p95
         * latency at 16 clients 0.97x llama-server's, against 1.04x with 512). */
        p->n_batch = SLM_SCHED_DEFAULT_BATCH;
    }
    p->n_batch = SLM_MIN(p->n_batch, p->n_ctx);
    if (p->n_threads <= 0) {
        p->n_threads = slm_default_threads();
    }
    if (p->max_queue == 0) {
        p->max_queue = 64;
    }
    if (p->max_contexts == 0) {
        p->max_contexts = 4;
    }
    return SLM_OK;
}

static int sched_alloc(struct slm_sched *s, struct slm_err *err) {
    s->ctxs = calloc(s->p.max_contexts, sizeof(*s->ctxs));
    s->cand = malloc((size_t)s->n_vocab * sizeof(*s->cand));
    if (!s->ctxs || !s->cand || slm__eog_ids(s->model, &s->eog, &s->n_eog) != SLM_OK ||
        slm_buf_reserve(&s->piece, 256) != SLM_OK || slm_buf_reserve(&s->out, 4096) != SLM_OK) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return SLM_OK;
}

static void sched_release(struct slm_sched *s) {
    for (size_t i = 0; i < s->n_ctxs; i++) {
        sctx_free(s->ctxs[i]);
    }
    free(s->ctxs);
    free(s->cand);
    free(s->eog);
    slm_buf_free(&s->piece);
    slm_buf_free(&s->out);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int slm_sched_init(struct slm_model *model, const struct slm_sched_params *params,
                   struct slm_sched **out, struct slm_err *err) {
    slm_engine_init();
    struct slm_sched_params p;
    int rc = resolve_params(model, params, &p, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_sched *s = calloc(1, sizeof(*s));
    if (!s) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0 || pthread_cond_init(&s->cv, NULL) != 0) {
        free(s);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    s->model = model;
    s->p = p;
    s->seq_cap = p.n_ctx / (uint32_t)p.n_parallel;
    s->n_vocab = llama_vocab_n_tokens(model->vocab);
    s->n_embd = llama_model_n_embd_out(model->lm);
    s->can_share = !llama_model_is_recurrent(model->lm) && !llama_model_is_hybrid(model->lm);
    slm_buf_init(&s->piece, 0);
    slm_buf_init(&s->out, 0);
    rc = sched_alloc(s, err);
    if (rc == SLM_OK) {
        /* The plain context is made now, so that a model that cannot get
         * its KV cache fails here rather than on the first request. */
        rc = sctx_new(s, NULL, NULL, 0, false, &s->ctxs[0], err);
        s->n_ctxs = rc == SLM_OK ? 1 : 0;
    }
    if (rc == SLM_OK && pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        rc = slm_err_set(err, SLM_E_NOMEM, "could not start the scheduler thread");
    }
    if (rc != SLM_OK) {
        sched_release(s);
        return rc;
    }
    *out = s;
    return SLM_OK;
}

void slm_sched_free(struct slm_sched *s) {
    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    sched_release(s);
}

/* ---------------------------------------------------------------- submit */

static int check_request(const struct slm_sched *s, size_t n_prompt, const struct slm_req_params *p,
                         struct slm_err *err) {
    if (n_prompt == 0) {
        return slm_err_set(err, SLM_E_INVALID, "empty prompt");
    }
    size_t need = p->embed ? n_prompt : n_prompt + 1;
    if (need > s->seq_cap) {
        return slm_err_set(err, SLM_E_OVERFLOW,
                           "the prompt is %zu tokens but a sequence holds %u (context %u shared "
                           "by %d parallel sequences); shorten the input or raise the context",
                           n_prompt, s->seq_cap, s->p.n_ctx, s->p.n_parallel);
    }
    if (p->n_adapters > MAX_ADAPTERS) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%zu adapters; at most %d at once", p->n_adapters,
                           MAX_ADAPTERS);
    }
    for (size_t i = 0; i < p->n_adapters; i++) {
        if (!p->adapters[i] || p->adapters[i]->model != s->model) {
            return slm_err_set(err, SLM_E_INVALID, "adapter %zu was loaded for another model", i);
        }
    }
    return SLM_OK;
}

int slm_sched_submit(struct slm_sched *s, const int32_t *prompt, size_t n_prompt,
                     const struct slm_req_params *params, struct slm_request **out,
                     struct slm_err *err) {
    struct slm_req_params dflt = {.gen = slm_gen_params_default()};
    const struct slm_req_params *p = params ? params : &dflt;
    int rc = check_request(s, n_prompt, p, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_request *r;
    rc = slm__req_new(s, prompt, n_prompt, p, s->n_embd, &r, err);
    if (rc != SLM_OK) {
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    if (s->q_len >= s->p.max_queue || s->stopping) {
        uint32_t n = s->q_len;
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        slm__req_unref(r);
        slm__req_unref(r);
        return stopping ? slm_err_set(err, SLM_E_ABORTED, "the scheduler is shutting down")
                        : slm_err_set(err, SLM_E_LIMIT,
                                      "the queue is full (%u requests waiting); retry later", n);
    }
    if (s->q_tail) {
        s->q_tail->next = r;
    } else {
        s->q_head = r;
    }
    s->q_tail = r;
    s->q_len++;
    s->stats.requests++;
    s->stats.queue_depth = s->q_len;
    s->kicks++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return SLM_OK;
}

void slm_sched_get_stats(struct slm_sched *s, struct slm_sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}
