/*
 * server/stream.c - the content reader behind every streamed reply (SSE for
 * OpenAI, NDJSON for Ollama): libmicrohttpd asks for bytes, the reader hands
 * out what `step` has formatted and, when nothing is pending, calls `step`
 * again, which waits at most ~SRV_POLL_MS for the scheduler. Replies are
 * chunked, so each step's bytes go out as they are made.
 *
 * The reader runs on the connection's thread (thread per connection), so
 * blocking here blocks no other client. When `step` reports the client gone
 * the reply ends with an error and libmicrohttpd closes the connection; the
 * free callback then releases the job (cancelling what is still running).
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct srv_stream *st = cls;
    while (st->off >= st->out.len) {
        slm_buf_clear(&st->out);
        st->off = 0;
        if (st->finished) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (st->step(st) != SLM_OK) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = SLM_MIN(max, st->out.len - st->off);
    memcpy(buf, st->out.ptr + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void reader_free(void *cls) {
    struct srv_stream *st = cls;
    if (st->free_ctx) {
        st->free_ctx(st->ctx);
    }
    slm_buf_free(&st->out);
    free(st);
}

enum MHD_Result srv_reply_stream(struct srv_conn *rc, const char *content_type,
                                 srv_stream_step_fn step, void *ctx, srv_stream_free_fn free_ctx) {
    struct srv_stream *st = calloc(1, sizeof(*st));
    if (!st) {
        free_ctx(ctx);
        return MHD_NO;
    }
    st->srv = rc->srv;
    st->rc = rc;
    st->step = step;
    st->ctx = ctx;
    st->free_ctx = free_ctx;
    slm_buf_init(&st->out, (size_t)64 << 20);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, reader, st, reader_free);
    if (!r) {
        reader_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    srv_add_common_headers(rc, r);
    rc->status = 200;
    rc->is_stream = true;
    enum MHD_Result ok = MHD_queue_response(rc->conn, 200, r);
    MHD_destroy_response(r);
    return ok;
}

int srv_sse_event(struct slm_buf *out, json_t *v) {
    if (!v) {
        return SLM_E_NOMEM;
    }
    int rc = slm_buf_puts(out, "data: ");
    rc = rc == SLM_OK ? srv_json_dump(v, out) : rc;
    rc = rc == SLM_OK ? slm_buf_puts(out, "\n\n") : rc;
    json_decref(v);
    return rc;
}

int srv_stream_poll(struct srv_job *j, bool *changed, struct srv_error *e) {
    *changed = false;
    int rc = srv_job_poll(j, SRV_POLL_MS, changed);
    if (rc == SLM_OK && !j->finished && srv_job_check_alive(j, e) != SLM_OK) {
        return e->status == 499 ? SLM_E_ABORTED : SLM_OK;
    }
    return rc;
}
