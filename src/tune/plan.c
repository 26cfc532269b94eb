/*
 * tune/plan.c - the order of training: examples shuffled per epoch (seeded),
 * packed greedily into rows of T tokens (or one example per row), rows taken
 * B at a time as micro-batches. The whole run is planned up front, so the
 * number of steps (and the schedule, the ETA and a resume) are known exactly.
 *
 * A packed row holds several examples; the attention mask is block-diagonal
 * causal, and positions restart at 0 for every example, so packing changes
 * nothing an example sees.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune/train_internal.h"

static int push_ex(struct slm__plan *pl, size_t *cap, uint32_t id) {
    if (pl->n_ex == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        uint32_t *p = realloc(pl->ex, nc * sizeof(*p));
        if (!p) {
            return SLM_E_NOMEM;
        }
        pl->ex = p;
        *cap = nc;
    }
    pl->ex[pl->n_ex++] = id;
    return SLM_OK;
}

static int push_row(struct slm__plan *pl, size_t *cap, struct slm__row r) {
    if (pl->n_rows == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        struct slm__row *p = realloc(pl->rows, nc * sizeof(*p));
        if (!p) {
            return SLM_E_NOMEM;
        }
        pl->rows = p;
        *cap = nc;
    }
    pl->rows[pl->n_rows++] = r;
    return SLM_OK;
}

/* Targets of example `id` that fall inside a row (a target is token i+1 of
 * the example, predicted at position i). */
static uint32_t n_targets(const struct slm_dataset *ds, uint32_t id) {
    uint32_t n = 0;
    for (size_t i = 1; i < ds->len[id]; i++) {
        n += ds->train[ds->off[id] + i];
    }
    return n;
}

static int pack_epoch(struct slm__plan *pl, const struct slm_dataset *ds, uint32_t *order,
                      size_t n_order, int32_t T, bool pack, size_t *cap_ex, size_t *cap_rows) {
    struct slm__row cur = {(uint32_t)pl->n_ex, 0, 0, 0};
    for (size_t k = 0; k < n_order; k++) {
        uint32_t id = order[k];
        uint32_t len = (uint32_t)ds->len[id];
        if (cur.count > 0 && (!pack || cur.n_tok + len > (uint32_t)T)) {
            if (push_row(pl, cap_rows, cur) != SLM_OK) {
                return SLM_E_NOMEM;
            }
            cur = (struct slm__row){(uint32_t)pl->n_ex, 0, 0, 0};
        }
        if (push_ex(pl, cap_ex, id) != SLM_OK) {
            return SLM_E_NOMEM;
        }
        cur.count++;
        cur.n_tok += len;
        cur.n_target += n_targets(ds, id);
    }
    if (cur.count > 0 && push_row(pl, cap_rows, cur) != SLM_OK) {
        return SLM_E_NOMEM;
    }
    return SLM_OK;
}

int slm__plan_build(struct slm__plan *pl, const struct slm_dataset *ds, int32_t T, int32_t B,
                    bool pack, bool shuffle, uint64_t seed, size_t min_rows) {
    (void)B;
    memset(pl, 0, sizeof(*pl));
    size_t cap_ex = 0, cap_rows = 0, n_order = 0;
    uint32_t *order = malloc((ds->n ? ds->n : 1) * sizeof(*order));
    if (!order) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->len[i] >= 2 && n_targets(ds, (uint32_t)i) > 0) {
            order[n_order++] = (uint32_t)i;
        }
    }
    int rc = SLM_OK;
    for (uint64_t epoch = 0; rc == SLM_OK && n_order > 0; epoch++) {
        if (shuffle) {
            uint64_t s = seed * 0x100000001b3ull + epoch;
            for (size_t i = n_order; i > 1; i--) {
                size_t j = (size_t)(slm__rng_next(&s) % i);
                uint32_t t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
            }
        }
        rc = pack_epoch(pl, ds, order, n_order, T, pack, &cap_ex, &cap_rows);
        if (epoch == 0) {
            pl->rows_per_epoch = pl->n_rows;
        }
        if (pl->n_rows >= min_rows) {
            break;
        }
    }
    free(order);
    if (rc != SLM_OK) {
        slm__plan_free(pl);
    }
    return rc;
}

void slm__plan_free(struct slm__plan *pl) {
    free(pl->ex);
    free(pl->rows);
    memset(pl, 0, sizeof(*pl));
}

uint32_t slm__plan_max_targets(const struct slm__plan *pl, int32_t B) {
    uint32_t best = 1;
    for (size_t r0 = 0; r0 < pl->n_rows; r0 += (size_t)B) {
        uint32_t sum = 0;
        for (size_t r = r0; r < r0 + (size_t)B && r < pl->n_rows; r++) {
            sum += pl->rows[r].n_target;
        }
        best = sum > best ? sum : best;
    }
    return best;
}

int slm__batch_alloc(struct slm__batch *hb, int32_t T, int32_t B, int32_t C, int32_t V) {
    memset(hb, 0, sizeof(*hb));
    size_t N = (size_t)T * (size_t)B;
    hb->tokens = malloc(N * sizeof(int32_t));
    hb->pos = malloc(N * sizeof(int32_t));
    hb->seg = malloc(N * sizeof(int32_t));
    hb->out_idx = malloc((size_t)C * sizeof(int32_t));
    hb->mask = malloc((size_t)T * (size_t)T * (size_t)B * sizeof(float));
    hb->targets = malloc((size_t)V * (size_t)C * sizeof(float));
    hb->lw = malloc((size_t)C * sizeof(float));
    if (!hb->tokens || !hb->pos || !hb->seg || !hb->out_idx || !hb->mask || !hb->targets ||
        !hb->lw) {
        slm__batch_free(hb);
        return SLM_E_NOMEM;
    }
    return SLM_OK;
}

void slm__batch_free(struct slm__batch *hb) {
    free(hb->tokens);
    free(hb->pos);
    free(hb->seg);
    free(hb->out_idx);
    free(hb->mask);
    free(hb->targets);
    free(hb->lw);
    memset(hb, 0, sizeof(*hb));
}

static void fill_row(struct slm__batch *hb, const struct slm__plan *pl,
                     const struct slm_dataset *ds, const struct slm__row *row, int32_t b, int32_t T,
                     int32_t C, int32_t V, uint32_t *c) {
    int32_t t = 0;
    size_t base = (size_t)b * (size_t)T;
    for (uint32_t k = 0; row && k < row->count; k++) {
        uint32_t id = pl->ex[row->first + k];
        const int32_t *tok = ds->tokens + ds->off[id];
        const uint8_t *tr = ds->train + ds->off[id];
        size_t len = ds->len[id];
        for (size_t i = 0; i < len && t < T; i++, t++) {
            hb->tokens[base + (size_t)t] = tok[i];
            hb->pos[base + (size_t)t] = (int32_t)i;
            hb->seg[base + (size_t)t] = (int32_t)k;
            if (i + 1 < len && tr[i + 1] && *c < (uint32_t)C) {
                hb->out_idx[*c] = (int32_t)(base + (size_t)t);
                hb->targets[(size_t)*c * (size_t)V + (size_t)tok[i + 1]] = 1.0f;
                hb->lw[*c] = 1.0f;
                (*c)++;
            }
        }
        hb->n_tok += (uint32_t)len;
    }
    for (; t < T; t++) {
        hb->tokens[base + (size_t)t] = 0;
        hb->pos[base + (size_t)t] = 0;
        hb->seg[base + (size_t)t] = -1;
    }
    slm__fill_mask(hb->mask + base * (size_t)T, hb->seg + base, T);
}

void slm__batch_fill(struct slm__batch *hb, const struct slm__plan *pl,
                     const struct slm_dataset *ds, size_t row0, int32_t T, int32_t B, int32_t C,
                     int32_t V) {
    hb->n_tok = 0;
    memset(hb->targets, 0, (size_t)V * (size_t)C * sizeof(float));
    uint32_t c = 0;
    for (int32_t b = 0; b < B; b++) {
        size_t r = row0 + (size_t)b;
        fill_row(hb, pl, ds, r < pl->n_rows ? &pl->rows[r] : NULL, b, T, C, V, &c);
    }
    hb->n_target = c;
    /* Unused loss rows: weight 0 and a uniform label, so they add exactly
     * log(V) to the summed loss and nothing to any gradient. */
    const float u = 1.0f / (float)V;
    for (uint32_t k = c; k < (uint32_t)C; k++) {
        hb->out_idx[k] = 0;
        hb->lw[k] = 0.0f;
        float *row = hb->targets + (size_t)k * (size_t)V;
        for (int32_t v = 0; v < V; v++) {
            row[v] = u;
        }
    }
}
