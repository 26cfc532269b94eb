/*
 * liquid/template.h - the template object and the stages that work on it
 * (private to the Liquid engine): parse (parser.c), load partials
 * (loader.c), render (render.c); template.c is the public API over them.
 *
 * Everything a template owns lives in its arena (nodes, strings, the copied
 * source) except the symbol table arrays (malloc, grown while parsing).
 * Everything a render makes lives in its budget's scratch memory, freed at
 * the end.
 *
 * The engine's files, each using only those listed before it (no call or
 * include cycle; docs/internals/liquid.md draws the same order):
 *
 *   errors.c/h       "name:line:col: message" and line/column of an offset
 *   budget.c/h       a render's steps, output cap, scratch memory, errors
 *   value.c/h        values: to_s/inspect, numbers, equality, ordering
 *   date.c/h         date parsing and strftime for the date filter
 *   symtab.c/h       symbol tables (names -> dense ids)
 *   ast.h            the parsed tree (types only)
 *   filters_num.c    the math filters
 *   filters_array.c  the array and hash filters (uses filters_num's sum)
 *   filters.c        the string filters and the table (filters.h)
 *   lexer.c/h        template scanner and markup lexer
 *   template.h       this file: the template object, parse/load/render
 *   loader.c         the jailed partial loader
 *   parser.c         source -> tree (uses the filter table for arities)
 *   render.c         the tree walker (calls filters with a struct lq_fenv)
 *   template.c       the public API (include/slm/liquid.h)
 */
#ifndef SLM_LIQUID_TEMPLATE_H
#define SLM_LIQUID_TEMPLATE_H

#include "slm/liquid.h"

#include "liquid/ast.h"
#include "liquid/symtab.h"

struct slm_liquid_template {
    struct slm_arena arena;
    struct slm_liquid_params params; /* root and partials below are owned copies */
    char *root;
    json_t *partials;
    struct lq_symtab syms;
    struct lq_unit *main;
    struct lq_unit *units; /* partials resolved at parse time */
    char **warnings;
    size_t nwarnings;
    char *name;
};

/* Where a parse puts what it makes. The public parse uses the template's
 * arena, symbols and unit list; a partial named only at render time is parsed
 * into the render's own (the template stays immutable). */
struct lq_penv {
    const struct slm_liquid_template *t; /* params and loaders */
    struct slm_arena *arena;
    struct lq_symtab *syms;
    struct lq_unit **units;      /* partials loaded by this parse are added here */
    struct lq_unit *const *also; /* and looked up here too (may be NULL) */
    char ***warnings;            /* NULL: do not record */
    size_t *nwarnings;
    int include_depth;
};

/* Parses `src` (copied into env->arena) as unit `name`, loading partials with
 * literal names. *out is valid as long as env->arena. */
int slm__lq_parse_unit(struct lq_penv *env, const char *name, const char *src, size_t len,
                       struct lq_unit **out, struct slm_err *err);
/* Reads a partial's source through the template's loaders. */
int slm__lq_load_source(const struct slm_liquid_template *t, const char *name, struct slm_buf *src,
                        struct slm_err *err);
/* Renders a parsed template (render.c); the public slm_liquid_render wraps it. */
int slm__lq_render(const struct slm_liquid_template *t, const json_t *vars, struct slm_buf *out,
                   struct slm_err *err);

#endif /* SLM_LIQUID_TEMPLATE_H */
