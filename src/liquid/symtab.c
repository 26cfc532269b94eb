/*
 * liquid/symtab.c - symbol tables: every name a template binds or reads
 * (variables, counters, property keys) gets a dense id at parse time, so a
 * render keeps one slot per id instead of hash maps of scopes. Open
 * addressing over FNV-1a hashes; names live in the template's arena.
 */
#include "liquid/symtab.h"

#include <stdlib.h>
#include <string.h>

uint32_t slm__lq_hash(const char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    }
    return h;
}

uint32_t slm__lq_sym_find(const struct lq_symtab *t, const char *p, size_t n) {
    if (!t->index_cap) {
        return LQ_NOSYM;
    }
    uint32_t h = slm__lq_hash(p, n);
    uint32_t mask = t->index_cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t e = t->index[i];
        if (!e) {
            return LQ_NOSYM;
        }
        const struct lq_sym *s = &t->v[e - 1];
        if (s->hash == h && s->len == n && memcmp(s->name, p, n) == 0) {
            return e - 1;
        }
    }
}

static bool symtab_reindex(struct lq_symtab *t, uint32_t cap) {
    uint32_t *idx = calloc(cap, sizeof(*idx));
    if (!idx) {
        return false;
    }
    for (uint32_t id = 0; id < t->n; id++) {
        for (uint32_t i = t->v[id].hash & (cap - 1);; i = (i + 1) & (cap - 1)) {
            if (!idx[i]) {
                idx[i] = id + 1;
                break;
            }
        }
    }
    free(t->index);
    t->index = idx;
    t->index_cap = cap;
    return true;
}

uint32_t slm__lq_sym_intern(struct lq_symtab *t, struct slm_arena *arena, const char *p, size_t n) {
    uint32_t id = slm__lq_sym_find(t, p, n);
    if (id != LQ_NOSYM) {
        return id;
    }
    if (n > UINT32_MAX / 2 || t->n >= (1u << 24)) {
        return LQ_NOSYM;
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 32;
        struct lq_sym *v = realloc(t->v, cap * sizeof(*v));
        if (!v) {
            return LQ_NOSYM;
        }
        t->v = v;
        t->cap = cap;
    }
    if ((t->n + 1) * 2 > t->index_cap && !symtab_reindex(t, t->index_cap ? t->index_cap * 2 : 64)) {
        return LQ_NOSYM;
    }
    char *name = slm_arena_strndup(arena, p, n);
    if (!name) {
        return LQ_NOSYM;
    }
    id = t->n++;
    t->v[id] = (struct lq_sym){name, (uint32_t)n, slm__lq_hash(p, n)};
    uint32_t mask = t->index_cap - 1;
    for (uint32_t i = t->v[id].hash & mask;; i = (i + 1) & mask) {
        if (!t->index[i]) {
            t->index[i] = id + 1;
            break;
        }
    }
    return id;
}

int slm__lq_symtab_copy(struct lq_symtab *dst, const struct lq_symtab *src) {
    memset(dst, 0, sizeof(*dst));
    if (src->n) {
        dst->v = malloc(src->cap * sizeof(*dst->v));
        dst->index = malloc(src->index_cap * sizeof(*dst->index));
        if (!dst->v || !dst->index) {
            slm__lq_symtab_free(dst);
            return SLM_E_NOMEM;
        }
        memcpy(dst->v, src->v, src->n * sizeof(*dst->v));
        memcpy(dst->index, src->index, src->index_cap * sizeof(*dst->index));
        dst->n = src->n;
        dst->cap = src->cap;
        dst->index_cap = src->index_cap;
    }
    return SLM_OK;
}

void slm__lq_symtab_free(struct lq_symtab *t) {
    free(t->v);
    free(t->index);
    memset(t, 0, sizeof(*t));
}
