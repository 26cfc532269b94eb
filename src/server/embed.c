/*
 * server/embed.c - embeddings for OpenAI (/v1/embeddings) and Ollama
 * (/api/embed, /api/embeddings): every input is a sequence submitted with
 * `embed` set; the scheduler returns its pooled, L2-normalized vector.
 * `dimensions` keeps the first N components and normalizes them again.
 */
#include "server/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int base64(const uint8_t *p, size_t n, struct slm_buf *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = SLM_OK;
    for (size_t i = 0; rc == SLM_OK && i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        v |= i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0;
        v |= i + 2 < n ? (uint32_t)p[i + 2] : 0;
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        rc = slm_buf_append(out, q, 4);
    }
    return rc;
}

/* The vector as JSON: an array of numbers or base64 of little-endian float32. */
static json_t *vector(const float *v, int32_t n, bool b64) {
    if (b64) {
        struct slm_buf b = {0};
        uint8_t *bytes = malloc((size_t)n * 4 + 1);
        json_t *s = NULL;
        if (bytes) {
            for (int32_t i = 0; i < n; i++) {
                uint32_t u;
                memcpy(&u, &v[i], 4);
                for (int k = 0; k < 4; k++) {
                    bytes[i * 4 + k] = (uint8_t)(u >> (8 * k));
                }
            }
            if (base64(bytes, (size_t)n * 4, &b) == SLM_OK) {
                s = json_stringn(slm_buf_cstr(&b), b.len);
            }
        }
        free(bytes);
        slm_buf_free(&b);
        return s;
    }
    json_t *a = json_array();
    for (int32_t i = 0; a && i < n; i++) {
        json_array_append_new(a, json_real(isfinite(v[i]) ? v[i] : 0.0));
    }
    return a;
}

/* Keeps `dim` components, normalized again. */
static int truncate_dims(struct srv_job *j, int dim, struct srv_error *e) {
    for (size_t i = 0; i < j->n_items; i++) {
        struct srv_item *it = &j->items[i];
        if (dim > it->n_embd) {
            return srv_bad(e, "dimensions",
                           "this model's embeddings have %d dimensions; "
                           "'dimensions' asks for %d",
                           it->n_embd, dim);
        }
        double ss = 0;
        for (int k = 0; k < dim; k++) {
            ss += (double)it->embedding[k] * it->embedding[k];
        }
        double norm = ss > 0 ? sqrt(ss) : 1.0;
        for (int k = 0; k < dim; k++) {
            it->embedding[k] = (float)(it->embedding[k] / norm);
        }
        it->n_embd = dim;
    }
    return SLM_OK;
}

static json_t *answer(struct srv_job *j, enum srv_route_id route) {
    int64_t prompt = 0;
    for (size_t i = 0; i < j->n_items; i++) {
        prompt += (int64_t)j->items[i].n_toks;
    }
    if (route == SRV_R_OPENAI_EMBEDDINGS) {
        json_t *data = json_array();
        for (size_t i = 0; data && i < j->n_items; i++) {
            const struct srv_item *it = &j->items[i];
            json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index",
                                                  it->index, "embedding",
                                                  vector(it->embedding, it->n_embd, j->g->base64)));
        }
        return json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model",
                         j->model_name, "usage", "prompt_tokens", (json_int_t)prompt,
                         "total_tokens", (json_int_t)prompt);
    }
    if (route == SRV_R_OLLAMA_EMBEDDINGS) {
        return json_pack("{s:o}", "embedding",
                         j->n_items ? vector(j->items[0].embedding, j->items[0].n_embd, false)
                                    : json_array());
    }
    json_t *vs = json_array();
    for (size_t i = 0; vs && i < j->n_items; i++) {
        json_array_append_new(vs, vector(j->items[i].embedding, j->items[i].n_embd, false));
    }
    double total = slm_time_mono() - j->t_start;
    return json_pack("{s:s,s:o,s:I,s:I,s:I}", "model", j->model_name, "embeddings", vs,
                     "total_duration", (json_int_t)(total * 1e9), "load_duration",
                     (json_int_t)(j->t_load * 1e9), "prompt_eval_count", (json_int_t)prompt);
}

enum MHD_Result srv_embed(struct srv_conn *rc, enum srv_route_id route) {
    enum srv_api api = route == SRV_R_OPENAI_EMBEDDINGS ? SRV_API_OPENAI : SRV_API_OLLAMA;
    struct srv_error e = {0};
    enum MHD_Result reply;
    struct srv_job *j = srv_job_from_body(rc, route, api, &reply);
    if (!j) {
        return reply;
    }
    int r = srv_job_submit(j, &e);
    if (r == SLM_OK) {
        r = srv_job_wait(j, &e);
    }
    if (r == SLM_OK) {
        r = srv_job_item_error(j, &e);
    }
    if (r == SLM_OK && j->g->dimensions > 0) {
        r = truncate_dims(j, j->g->dimensions, &e);
    }
    json_t *body = r == SLM_OK ? answer(j, route) : NULL;
    srv_job_free(j);
    if (r != SLM_OK) {
        return e.status == 499 ? MHD_NO : srv_reply_error(rc, api, &e);
    }
    if (!body) {
        srv_fail(&e, SLM_E_NOMEM, NULL);
        return srv_reply_error(rc, api, &e);
    }
    return srv_reply_json(rc, 200, body);
}
