/*
 * arena.c - bump allocator for per-request and per-command lifetimes.
 */
#include "slm/base.h"

#include <stdlib.h>
#include <string.h>

struct slm_arena_block {
    struct slm_arena_block *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK_MIN ((size_t)16 * 1024)

void slm_arena_init(struct slm_arena *a, size_t max) {
    a->head = NULL;
    a->used = 0;
    a->max = max;
}

void slm_arena_free(struct slm_arena *a) {
    struct slm_arena_block *b = a->head;
    while (b) {
        struct slm_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

void *slm_arena_alloc(struct slm_arena *a, size_t n) {
    if (n == 0) {
        n = 1;
    }
    if (n > SIZE_MAX / 2) {
        return NULL;
    }
    size_t rounded = (n + 15) & ~(size_t)15;
    if (a->max && (rounded > a->max || a->used > a->max - rounded)) {
        return NULL;
    }
    struct slm_arena_block *b = a->head;
    if (!b || b->size - b->used < rounded) {
        size_t size = rounded > ARENA_BLOCK_MIN ? rounded : ARENA_BLOCK_MIN;
        if (b && b->size * 2 > size && b->size < ((size_t)1 << 24)) {
            size = b->size * 2;
        }
        b = malloc(sizeof(*b) + size);
        if (!b) {
            return NULL;
        }
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += rounded;
    a->used += rounded;
    memset(p, 0, n);
    return p;
}

char *slm_arena_strndup(struct slm_arena *a, const char *p, size_t n) {
    char *s = slm_arena_alloc(a, n + 1);
    if (!s) {
        return NULL;
    }
    if (n) {
        memcpy(s, p, n);
    }
    s[n] = '\0';
    return s;
}
