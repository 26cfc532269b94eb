/*
 * liquid/budget.c - a render's limits (steps, output bytes, scratch memory)
 * and its runtime errors. See budget.h; the fast paths (charging steps,
 * appending output and string bytes) are inline there, the failures and the
 * allocator's chunk handling are here.
 */
#include "liquid/budget.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "liquid/errors.h"

void slm__lq_budget_init(struct lq_budget *b, struct slm_buf *out, size_t max_output,
                         uint64_t max_steps, size_t max_memory, struct lq_source where) {
    memset(b, 0, offsetof(struct lq_budget, mem));
    size_t start = out->len;
    size_t bmax = out->max ? out->max : SLM_BUF_DEFAULT_MAX;
    b->out = out;
    b->out_max = max_output > bmax - start ? bmax : start + max_output;
    b->steps = 0;
    b->max_steps = max_steps;
    b->where = where;
    slm_err_clear(&b->errbuf);
    b->err = &b->errbuf;
    b->mem.p = b->mem.first;
    b->mem.end = b->mem.first + sizeof(b->mem.first);
    b->mem.chunks = NULL;
    b->mem.total = 0;
    b->mem.max = max_memory;
}

void slm__lq_budget_free(struct lq_budget *b) {
    for (struct lq_chunk *c = b->mem.chunks; c;) {
        struct lq_chunk *next = c->next;
        free(c);
        c = next;
    }
    b->mem.chunks = NULL;
}

/* ---------------------------------------------------------------- errors */

int slm__lq_rt_err(struct lq_budget *b, uint32_t pos, int code, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const struct lq_source *w = &b->where;
    return slm__lq_errf(b->err, code, w->name, w->src, w->len, pos, "%s", msg);
}

int slm__lq_steps_exceeded(struct lq_budget *b, uint32_t pos) {
    return slm__lq_rt_err(b, pos, SLM_E_LIMIT, "render exceeded %llu steps (max_steps)",
                          (unsigned long long)b->max_steps);
}

int slm__lq_out_fail(struct lq_budget *b, uint32_t pos, int rc) {
    if (rc == SLM_E_TOO_LARGE) {
        return slm__lq_rt_err(b, pos, SLM_E_TOO_LARGE, "output exceeds %zu bytes", b->out_max);
    }
    return slm__lq_rt_err(b, pos, rc, "%s", slm_strerror(rc));
}

int slm__lq_mem_fail(struct lq_budget *b, uint32_t pos) {
    return slm__lq_rt_err(b, pos, SLM_E_LIMIT, "render needs more than %zu bytes of memory",
                          b->mem.max);
}

/* ---------------------------------------------------------------- scratch memory */

void *slm__lq_alloc(struct lq_budget *b, size_t n) {
    struct lq_mem *m = &b->mem;
    n = (n + 15) & ~(size_t)15;
    if ((size_t)(m->end - m->p) >= n) {
        void *r = m->p;
        m->p += n;
        return r;
    }
    size_t cap = m->chunks ? m->chunks->cap * 2 : (size_t)64 << 10;
    if (cap < n) {
        cap = n;
    }
    if (cap > ((size_t)16 << 20) && n <= ((size_t)16 << 20)) {
        cap = (size_t)16 << 20;
    }
    if (m->total + cap > m->max) {
        if (m->total + n > m->max) {
            return NULL;
        }
        cap = n;
    }
    struct lq_chunk *c = malloc(sizeof(*c) + cap);
    if (!c) {
        return NULL;
    }
    c->cap = cap;
    c->next = m->chunks;
    m->chunks = c;
    m->total += cap;
    m->p = c->data + n;
    m->end = c->data + cap;
    return c->data;
}

void slm__lq_sb_begin(struct lq_budget *b, struct lq_sb *sb, size_t hint) {
    sb->b = b;
    sb->n = 0;
    sb->failed = false;
    struct lq_mem *m = &b->mem;
    if ((size_t)(m->end - m->p) > hint) {
        sb->p = m->p;
        sb->cap = (size_t)(m->end - m->p) - 1; /* room for the NUL */
        return;
    }
    sb->p = NULL;
    sb->cap = 0;
    if (!slm__lq_sb_grow(sb, hint + 1)) {
        sb->failed = true;
    }
}

bool slm__lq_sb_grow(struct lq_sb *sb, size_t extra) {
    if (sb->failed) {
        return false;
    }
    struct lq_mem *m = &sb->b->mem;
    size_t need = sb->n + extra + 1;
    size_t want = need * 2 > 256 ? need * 2 : 256;
    /* The builder owns [m->p, m->end) while open; allocate a fresh chunk and
     * move what is written so far. */
    char *old = sb->p;
    char *save_p = m->p;
    if (old == m->p) {
        m->p = m->end; /* force a new chunk */
    }
    char *np = slm__lq_alloc(sb->b, want);
    if (!np) {
        m->p = save_p;
        sb->failed = true;
        return false;
    }
    /* slm__lq_alloc bumped past `want`; give the rest of the chunk back to
     * the builder (it is the newest chunk). */
    m->p = np;
    if (sb->n) {
        memcpy(np, old, sb->n);
    }
    sb->p = np;
    sb->cap = (size_t)(m->end - np) - 1;
    return true;
}

int slm__lq_sb_end(struct lq_sb *sb, struct slm_str *out) {
    if (sb->failed || !sb->p) {
        *out = (struct slm_str){"", 0};
        return sb->failed ? SLM_E_LIMIT : SLM_OK;
    }
    sb->p[sb->n] = '\0';
    struct lq_mem *m = &sb->b->mem;
    if (sb->p == m->p) {
        size_t used = (sb->n + 1 + 15) & ~(size_t)15;
        m->p = (size_t)(m->end - m->p) >= used ? m->p + used : m->end;
    }
    *out = (struct slm_str){sb->p, sb->n};
    return SLM_OK;
}
