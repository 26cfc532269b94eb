/*
 * slm/sched.h - serving many requests on one model at once (engine module).
 *
 * A scheduler owns the llama contexts of one model and a decode thread. HTTP
 * threads (or anyone) submit a tokenized prompt and read the answer back
 * through the request's channel; they never touch a llama_context.
 *
 * - Continuous batching: up to n_parallel sequences per context; new requests
 *   join the running batch between decode steps, finished ones leave.
 * - Prefix cache: a new prompt that shares a prefix with KV already held (a
 *   system prompt, a few-shot block) reuses those cells instead of recomputing
 *   them; bounded, least recently used evicted first.
 * - Adapters: llama.cpp v0.5.0 applies adapters to a whole context, so each
 *   distinct adapter set (adapters + scales) gets its own context sharing the
 *   model's weights; their decode steps are interleaved, so requests with
 *   different adapters are served at the same time. The prefix cache is keyed
 *   by adapter set.
 * - A cancelled request (client gone) frees its sequence at the next step.
 *
 * The model cache (slm_pool) loads models on first use, unloads them after
 * keep_alive idle, and keeps the total under a memory budget (LRU).
 *
 * Thread safety: every function here may be called from any thread, except
 * that one slm_request is read by one thread at a time.
 */
#ifndef SLM_SCHED_H
#define SLM_SCHED_H

#include "slm/engine.h"

struct slm_sched;
struct slm_request;

#define SLM_SCHED_DEFAULT_BATCH 2048u

struct slm_sched_params {
    int32_t n_parallel;    /* sequences per context; 0 = 4 */
    uint32_t n_ctx;        /* KV cells per context, shared by its sequences; 0 = n_parallel * 4096
                              capped at the training context x n_parallel. One sequence (prompt +
                              output) holds at most n_ctx / n_parallel tokens. */
    uint32_t n_batch;      /* tokens per decode; 0 = SLM_SCHED_DEFAULT_BATCH (2048; llama.cpp
                              splits it in ubatches of 512) */
    int32_t n_threads;     /* 0 = physical cores */
    uint32_t max_queue;    /* requests waiting for a sequence; 0 = 64. Past it: SLM_E_LIMIT */
    uint32_t max_contexts; /* distinct adapter sets alive at once; 0 = 4 */
    bool kv_f32;           /* F32 KV cache and attention, as slm_ctx_params.kv_f32 (exact
                              comparisons in tests); default F16 with flash attention */
};

struct slm_sched_params slm_sched_params_default(void);

/* Starts a scheduler (and its thread) for `model`, which must outlive it. */
int slm_sched_init(struct slm_model *model, const struct slm_sched_params *params,
                   struct slm_sched **out, struct slm_err *err);
/* Cancels everything still running, joins the thread, frees. NULL is a no-op.
 * Requests not yet freed stay readable: they finish with SLM_E_ABORTED. */
void slm_sched_free(struct slm_sched *s);

struct slm_req_params {
    struct slm_gen_params gen;           /* sampling, max_tokens, stop (copied), logprobs */
    struct slm_adapter *const *adapters; /* borrowed for the call; must outlive the request */
    const float *scales;
    size_t n_adapters;
    bool embed; /* pooled embedding instead of generation */
};

/*
 * Queues a request. The prompt and stop strings are copied. Fails with
 * SLM_E_LIMIT when the queue is full (callers answer 429/503 with
 * Retry-After), SLM_E_OVERFLOW when the prompt (+1) does not fit one sequence
 * (message with both numbers). On success one slm_request_free() is owed.
 */
int slm_sched_submit(struct slm_sched *s, const int32_t *prompt, size_t n_prompt,
                     const struct slm_req_params *params, struct slm_request **out,
                     struct slm_err *err);

/* One generated token as the reader sees it. */
struct slm_req_token {
    int32_t token;
    float logprob;
    int n_top;
    struct slm_top_logprob top[SLM_MAX_TOP_LOGPROBS];
    uint32_t text_end; /* offset in the text appended by this read where this token's text ends */
};

/*
 * Waits up to `timeout_ms` (-1 = forever) for output, then appends all text
 * released so far (whole UTF-8 code points, stop strings removed) to `text`
 * and up to `cap` token records to `toks` (*n_toks set). *done is set when the
 * request has finished; then slm_request_result() tells how.
 * Returns SLM_OK (possibly with nothing new when the timeout passed).
 * With `toks` NULL or `cap` 0 the records are dropped with their text. When
 * more than `cap` records are ready, the text stops at the cap-th record's end
 * and the rest waits for the next read. The channel holds 256 unread tokens
 * (16 KiB of text); past that the request's sequence pauses (others go on)
 * until the reader catches up.
 */
int slm_request_read(struct slm_request *r, int timeout_ms, struct slm_buf *text,
                     struct slm_req_token *toks, size_t cap, size_t *n_toks, bool *done);

/* After done: SLM_OK or the failure (with err), and the statistics. A
 * cancelled request gives SLM_E_ABORTED (stats.finish SLM_FINISH_ABORTED).
 * SLM_E_INVALID while it is still running. stats.n_cached counts the prompt
 * tokens reused from the prefix cache or from another request. */
int slm_request_result(struct slm_request *r, struct slm_gen_stats *stats, struct slm_err *err);

/* For embed requests, after done: the pooled (mean over the prompt's tokens
 * of the last hidden state), L2-normalized vector (borrowed, n_embd floats,
 * valid until slm_request_free). NULL for other requests or on failure. */
const float *slm_request_embedding(struct slm_request *r, int32_t *n_embd);

/* Asks the scheduler to stop the request at the next step (idempotent). */
void slm_request_cancel(struct slm_request *r);
/* Cancels if still running and frees. NULL is a no-op. */
void slm_request_free(struct slm_request *r);

/* Counters for /metrics. */
struct slm_sched_stats {
    uint64_t requests;      /* submitted */
    uint64_t prompt_tokens; /* evaluated */
    uint64_t cached_tokens; /* reused from the prefix cache */
    uint64_t gen_tokens;
    uint32_t queue_depth;
    uint32_t active;     /* sequences generating now */
    uint32_t last_batch; /* tokens in the last decode */
    double prompt_seconds, gen_seconds;
};

void slm_sched_get_stats(struct slm_sched *s, struct slm_sched_stats *out);

/* ---------------------------------------------------------------- model pool */

struct slm_pool;

struct slm_pool_params {
    uint64_t memory_budget;        /* bytes the loaded models may need (slm/memory.h's estimate,
                                      less the process itself); 0 = the memory available when
                                      the pool starts (slm_mem_usable) */
    int64_t default_keep_alive_ms; /* idle time before unloading; 0 = default 5 minutes;
                                      <0 = forever */
    struct slm_sched_params sched;
    bool force; /* load a model that needs more than the whole budget when it is alone;
                   without it such a model is refused with SLM_E_NOMEM (slm_mem_check) */
};

struct slm_pool_params slm_pool_params_default(void);
int slm_pool_init(const struct slm_pool_params *p, struct slm_pool **out, struct slm_err *err);
void slm_pool_free(struct slm_pool *pool);

/*
 * Returns the scheduler of the model at `path` (loading it, and unloading the
 * least recently used idle models when the budget requires), pinned until
 * slm_pool_release(). `keep_alive_ms` updates the model's idle timeout
 * (-2 = leave as is; 0 = unload as soon as released). SLM_E_NOMEM, with
 * slm_mem_check's message, when the model needs more than the whole budget
 * (and the pool is not forced); SLM_E_LIMIT when it would fit but models in
 * use hold the room.
 */
int slm_pool_acquire(struct slm_pool *pool, const char *path, int64_t keep_alive_ms,
                     struct slm_sched **sched, struct slm_model **model, struct slm_err *err);
void slm_pool_release(struct slm_pool *pool, struct slm_sched *sched);

/* Loads (and caches) an adapter for a pooled model. Borrowed; lives as long
 * as the model stays loaded. */
int slm_pool_adapter(struct slm_pool *pool, struct slm_model *model, const char *path,
                     struct slm_adapter **out, struct slm_err *err);

struct slm_pool_entry {
    char path[1024];
    uint64_t size_bytes;   /* weights + KV */
    int64_t expires_at_ms; /* unix ms, or -1 for never */
    uint32_t in_use;
    struct slm_sched_stats stats; /* the model's scheduler, at the time of the call */
};

/* Fills up to `cap` entries for /api/ps; returns how many are loaded. */
size_t slm_pool_list(struct slm_pool *pool, struct slm_pool_entry *out, size_t cap);
/* Unloads idle models past their keep-alive (the pool also does this itself). */
void slm_pool_gc(struct slm_pool *pool);

#endif /* SLM_SCHED_H */
