/*
 * liquid/symtab.h - symbol tables (private to the Liquid engine): every name
 * a template can bind or read (variables, counters, loop names) gets a dense
 * id at parse time, so that a render keeps one slot per id. A table belongs
 * to its template (or to one render, for partials named at render time);
 * names live in the owner's arena, the arrays are malloc'd. Depends on base
 * only.
 */
#ifndef SLM_LIQUID_SYMTAB_H
#define SLM_LIQUID_SYMTAB_H

#include "slm/base.h"

#include <stddef.h>
#include <stdint.h>

/* Every name a template can bind or read (variables, counters, loop names)
 * gets an id at parse time; a render keeps one slot per id. */
struct lq_sym {
    const char *name; /* NUL-terminated, in the template arena */
    uint32_t len;
    uint32_t hash;
};

struct lq_symtab {
    struct lq_sym *v;
    uint32_t n, cap;
    uint32_t *index; /* open addressing: id + 1, 0 = empty */
    uint32_t index_cap;
};

/* "No symbol": a path whose root is computed at render time, or a failed
 * lookup. */
#define LQ_NOSYM UINT32_MAX

/* FNV-1a of `n` bytes at `p` (also used by the uniq filter). */
uint32_t slm__lq_hash(const char *p, size_t n);
/* Id of `name`, adding it (copied into `arena`) when absent; LQ_NOSYM on
 * allocation failure. */
uint32_t slm__lq_sym_intern(struct lq_symtab *t, struct slm_arena *arena, const char *p, size_t n);
/* Id of `name` or LQ_NOSYM. */
uint32_t slm__lq_sym_find(const struct lq_symtab *t, const char *p, size_t n);
/* Makes `dst` a copy of `src` that can grow on its own (names stay shared, in
 * src's arena). SLM_OK or SLM_E_NOMEM; on failure nothing is owed. */
int slm__lq_symtab_copy(struct lq_symtab *dst, const struct lq_symtab *src);
/* Frees the arrays (not the names) and empties `t`. */
void slm__lq_symtab_free(struct lq_symtab *t);

#endif /* SLM_LIQUID_SYMTAB_H */
