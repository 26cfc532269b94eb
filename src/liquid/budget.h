/*
 * liquid/budget.h - what one render may spend, and how it says it failed
 * (private to the Liquid engine).
 *
 * A `struct lq_budget` belongs to one render (render.c embeds it in its state
 * and hands a pointer to values and filters). It holds:
 *   - the step count against params.max_steps: every node, loop iteration and
 *     item a filter touches is charged, so huge ranges stop;
 *   - the output buffer, capped at the smaller of its own cap and
 *     params.max_output_bytes;
 *   - the scratch memory: a bump allocator over chunks (the first 8 KiB live
 *     inside the budget), capped at params.max_memory_bytes, freed at once
 *     at the end, with a string builder that grows in place at its top;
 *   - the runtime error: "name:line:col: message" for the unit being
 *     rendered, in the caller's slm_err or an internal one.
 *
 * Depends on errors.h and base only: values, filters and the renderer call
 * down into it, it calls nothing of theirs. Not thread-safe (one render, one
 * thread).
 */
#ifndef SLM_LIQUID_BUDGET_H
#define SLM_LIQUID_BUDGET_H

#include "slm/base.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct lq_chunk {
    struct lq_chunk *next;
    size_t cap;
    _Alignas(16) char data[];
};

struct lq_mem {
    char *p; /* bump pointer in the current chunk */
    char *end;
    struct lq_chunk *chunks;
    size_t total;
    size_t max;
    _Alignas(16) char first[8192]; /* the first chunk lives in the budget */
};

/* The source errors point into: the unit (template or partial) being
 * rendered. Borrowed from the template or the render's partials. */
struct lq_source {
    const char *name;
    const char *src;
    size_t len;
};

struct lq_budget {
    struct slm_buf *out; /* the caller's buffer (borrowed) */
    size_t out_max;      /* out->len may not pass this */
    uint64_t steps, max_steps;
    struct lq_source where; /* render.c switches it when it enters a partial */
    struct slm_err *err;    /* never NULL: points at errbuf */
    struct slm_err errbuf;
    struct lq_mem mem; /* last, so that its first chunk need not be cleared */
};

/* Sets up a budget for one render into `out` (borrowed until
 * slm__lq_budget_free): output up to `max_output` bytes past out->len (and
 * within out's own cap), `max_steps` steps, `max_memory` bytes of scratch
 * memory, errors pointing into `where`. Cannot fail. */
void slm__lq_budget_init(struct lq_budget *b, struct slm_buf *out, size_t max_output,
                         uint64_t max_steps, size_t max_memory, struct lq_source where);
/* Frees the scratch memory; every pointer slm__lq_alloc returned dies. */
void slm__lq_budget_free(struct lq_budget *b);

/* Sets the runtime error "name:line:col: message" at byte offset `pos` of the
 * current unit and returns `code`. In lax mode render.c may print an
 * SLM_E_INVALID or SLM_E_NOT_FOUND in place; limits always stop. */
int slm__lq_rt_err(struct lq_budget *b, uint32_t pos, int code, const char *fmt, ...)
    SLM_PRINTF(4, 5);

/* The step-limit error (SLM_E_LIMIT); slm__lq_charge's slow path. */
int slm__lq_steps_exceeded(struct lq_budget *b, uint32_t pos);

/* Charges `n` units of work; SLM_E_LIMIT past max_steps. */
static inline int slm__lq_charge(struct lq_budget *b, uint64_t n, uint32_t pos) {
    b->steps += n;
    if (b->steps > b->max_steps) {
        return slm__lq_steps_exceeded(b, pos);
    }
    return SLM_OK;
}

/* The output error for `rc` (SLM_E_TOO_LARGE names the cap); slm__lq_out_put's
 * slow path. */
int slm__lq_out_fail(struct lq_budget *b, uint32_t pos, int rc);

/* Appends `n` bytes to the output; SLM_E_TOO_LARGE past the cap, SLM_E_NOMEM
 * when the buffer cannot grow. Does not NUL-terminate. */
static inline int slm__lq_out_put(struct lq_budget *b, const char *p, size_t n, uint32_t pos) {
    struct slm_buf *o = b->out;
    if (n > b->out_max - o->len) {
        return slm__lq_out_fail(b, pos, SLM_E_TOO_LARGE);
    }
    if (o->cap - o->len <= n) {
        int rc = slm_buf_reserve(o, n);
        if (rc != SLM_OK) {
            return slm__lq_out_fail(b, pos, rc);
        }
    }
    memcpy(o->ptr + o->len, p, n);
    o->len += n;
    return SLM_OK;
}

/* Scratch memory: 16-byte aligned, not zeroed, valid until the budget is
 * freed; NULL past max_memory_bytes (or when malloc fails). */
void *slm__lq_alloc(struct lq_budget *b, size_t n);
/* The memory-limit error (SLM_E_LIMIT) for a NULL from slm__lq_alloc. */
int slm__lq_mem_fail(struct lq_budget *b, uint32_t pos);

/* A string builder on top of the scratch memory: while one is open no other
 * scratch allocation may happen. Appending never fails loudly: a builder that
 * ran out of memory sets `failed` and ignores the rest. */
struct lq_sb {
    struct lq_budget *b;
    char *p;
    size_t n, cap;
    bool failed;
};
void slm__lq_sb_begin(struct lq_budget *b, struct lq_sb *sb, size_t hint);
bool slm__lq_sb_grow(struct lq_sb *sb, size_t extra);
static inline void slm__lq_sb_put(struct lq_sb *sb, const void *p, size_t n) {
    if (sb->cap - sb->n < n && !slm__lq_sb_grow(sb, n)) {
        return;
    }
    if (n) {
        memcpy(sb->p + sb->n, p, n);
    }
    sb->n += n;
}
static inline void slm__lq_sb_putc(struct lq_sb *sb, char c) {
    if (sb->cap == sb->n && !slm__lq_sb_grow(sb, 1)) {
        return;
    }
    sb->p[sb->n++] = c;
}
/* Closes the builder; *out is the string (NUL-terminated, in scratch memory;
 * "" when the builder failed). SLM_E_LIMIT when the scratch memory ran out. */
int slm__lq_sb_end(struct lq_sb *sb, struct slm_str *out);

#endif /* SLM_LIQUID_BUDGET_H */
