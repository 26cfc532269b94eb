/*
 * server/backend_pool.c - the backend `slm serve` uses: the model pool and
 * its schedulers (slm/sched.h), one call each.
 */
#include "server/internal.h"

static int pool_acquire(void *user, const char *path, int64_t keep_alive_ms,
                        struct slm_sched **sched, struct slm_model **model, struct slm_err *err) {
    return slm_pool_acquire(user, path, keep_alive_ms, sched, model, err);
}

static void pool_release(void *user, struct slm_sched *sched) {
    slm_pool_release(user, sched);
}

static int pool_adapter(void *user, struct slm_model *model, const char *path,
                        struct slm_adapter **out, struct slm_err *err) {
    return slm_pool_adapter(user, model, path, out, err);
}

static int pool_submit(void *user, struct slm_sched *sched, const int32_t *prompt, size_t n_prompt,
                       const struct slm_req_params *params, struct slm_request **out,
                       struct slm_err *err) {
    (void)user;
    return slm_sched_submit(sched, prompt, n_prompt, params, out, err);
}

static int pool_read(void *user, struct slm_request *r, int timeout_ms, struct slm_buf *text,
                     struct slm_req_token *toks, size_t cap, size_t *n_toks, bool *done) {
    (void)user;
    return slm_request_read(r, timeout_ms, text, toks, cap, n_toks, done);
}

static int pool_result(void *user, struct slm_request *r, struct slm_gen_stats *stats,
                       struct slm_err *err) {
    (void)user;
    return slm_request_result(r, stats, err);
}

static const float *pool_embedding(void *user, struct slm_request *r, int32_t *n_embd) {
    (void)user;
    return slm_request_embedding(r, n_embd);
}

static void pool_cancel(void *user, struct slm_request *r) {
    (void)user;
    slm_request_cancel(r);
}

static void pool_request_free(void *user, struct slm_request *r) {
    (void)user;
    slm_request_free(r);
}

static size_t pool_list(void *user, struct slm_pool_entry *out, size_t cap) {
    return slm_pool_list(user, out, cap);
}

struct slm_server_backend slm_server_backend_pool(struct slm_pool *pool) {
    return (struct slm_server_backend){
        .user = pool,
        .acquire = pool_acquire,
        .release = pool_release,
        .adapter = pool_adapter,
        .submit = pool_submit,
        .read = pool_read,
        .result = pool_result,
        .embedding = pool_embedding,
        .cancel = pool_cancel,
        .request_free = pool_request_free,
        .list = pool_list,
    };
}
