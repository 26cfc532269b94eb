/*
 * liquid/ast.h - the parsed tree of a Liquid unit (private to the Liquid
 * engine): primaries, paths, filters, conditions and nodes. parser.c builds
 * it into an arena, render.c walks it; it is immutable once parsed. Types
 * only: there is no ast.c.
 *
 * Positions (`pos`) are byte offsets into the unit's source; errors.h turns
 * them into lines and columns.
 */
#ifndef SLM_LIQUID_AST_H
#define SLM_LIQUID_AST_H

#include "liquid/symtab.h"
#include "liquid/value.h"

/* Names whose meaning is fixed at parse time (size/first/last commands and
 * the attributes of forloop/tablerowloop). */
enum lq_key {
    K_NONE = 0,
    K_SIZE,
    K_FIRST,
    K_LAST,
    K_INDEX,
    K_INDEX0,
    K_RINDEX,
    K_RINDEX0,
    K_LENGTH,
    K_PARENTLOOP,
    K_NAME,
    K_COL,
    K_COL0,
    K_COL_FIRST,
    K_COL_LAST,
    K_ROW,
};

enum lq_prim_kind { P_LIT, P_VAR, P_RANGE };

struct lq_path;

/* A primary expression: literal, variable path or range. */
struct lq_prim {
    uint8_t kind;
    uint32_t pos; /* byte offset in the unit's source */
    union {
        struct lq_val lit;
        const struct lq_path *var;
        struct {
            const struct lq_prim *lo, *hi;
        } range;
    } u;
};

enum lq_seg_kind { SEG_KEY, SEG_INDEX, SEG_DYN };

struct lq_seg {
    uint8_t kind;
    uint8_t dot;               /* written as .name (size/first/last apply) */
    uint8_t key;               /* enum lq_key for SEG_KEY */
    struct slm_str name;       /* SEG_KEY */
    int64_t index;             /* SEG_INDEX */
    const struct lq_prim *dyn; /* SEG_DYN */
};

struct lq_path {
    uint32_t sym;                   /* root name, or LQ_NOSYM when root_dyn */
    const struct lq_prim *root_dyn; /* [expr] at the start */
    uint32_t nseg;
    const struct lq_seg *seg;
};

struct lq_kwarg {
    struct slm_str name;
    struct lq_prim val;
};

struct lq_filter {
    uint16_t id;  /* index in the filter table */
    uint8_t npos; /* positional arguments */
    uint8_t nkw;  /* keyword arguments */
    uint32_t pos;
    const char *name; /* the table's name for it, for error messages */
    const struct lq_prim *args;
    const struct lq_kwarg *kw;
};

/* A primary followed by filters: outputs, assign, echo. */
struct lq_fexpr {
    struct lq_prim prim;
    uint32_t nfilt;
    const struct lq_filter *filt;
};

enum lq_rel { REL_NONE, REL_AND, REL_OR };

/* One comparison in an and/or chain (evaluated right-associatively). */
struct lq_cond {
    struct lq_prim l, r;
    uint8_t op;
    uint8_t rel; /* how `next` joins */
    const struct lq_cond *next;
};

enum lq_node_kind {
    N_TEXT,
    N_OUTPUT,
    N_IF,
    N_CASE,
    N_FOR,
    N_TABLEROW,
    N_ASSIGN,
    N_CAPTURE,
    N_INCREMENT,
    N_DECREMENT,
    N_CYCLE,
    N_BREAK,
    N_CONTINUE,
    N_INCLUDE,
    N_RENDER,
    N_IFCHANGED,
};

struct lq_node;

struct lq_block {
    const struct lq_node *first;
    bool blank;
};

struct lq_branch {
    const struct lq_cond *cond; /* NULL: else */
    struct lq_block body;
    const struct lq_branch *next;
};

struct lq_if {
    bool unless; /* the first condition is negated */
    const struct lq_branch *branches;
};

struct lq_when {
    bool is_else;
    struct lq_prim val;
    const struct lq_block *body; /* shared by `when a, b` */
    const struct lq_when *next;
};

struct lq_case {
    struct lq_prim subject;
    const struct lq_when *whens;
};

struct lq_for {
    uint32_t var;
    struct lq_prim coll;
    const struct lq_prim *limit, *offset, *cols;
    bool offset_continue;
    bool reversed;
    struct slm_str name; /* "var-collection", forloop.name and offset: continue key */
    struct lq_block body;
    const struct lq_block *else_body;
};

struct lq_cycle {
    const struct lq_prim *group; /* NULL: keyed by the values' source */
    struct slm_str key;
    uint32_t n;
    const struct lq_prim *vals;
};

struct lq_unit;

struct lq_incarg {
    uint32_t sym;
    struct lq_prim val;
};

struct lq_include {
    struct lq_prim name;        /* literal string, or (include only) an expression */
    const struct lq_unit *unit; /* resolved at parse time for literal names */
    const struct lq_prim *with; /* `with` / `for` expression */
    bool is_for;
    uint32_t bind; /* alias, or the template name's last component */
    uint32_t nargs;
    const struct lq_incarg *args;
};

struct lq_node {
    uint8_t kind;
    uint8_t blank;
    uint32_t pos;
    const struct lq_node *next;
    union {
        struct slm_str text;
        struct lq_fexpr out;
        const struct lq_if *if_;
        const struct lq_case *case_;
        const struct lq_for *for_;
        struct {
            uint32_t sym;
            const struct lq_fexpr *expr;
        } assign;
        struct {
            uint32_t sym;
            struct lq_block body;
        } capture;
        uint32_t counter;
        const struct lq_cycle *cycle;
        const struct lq_include *inc;
        struct lq_block body; /* ifchanged */
    } u;
};

/* One parsed source: the template itself or a partial. */
struct lq_unit {
    const char *name;
    const char *src;
    size_t len;
    struct lq_block body;
    int status;   /* parse status for partials being resolved (SLM_OK when done) */
    bool parsing; /* set while the unit's own body is being parsed */
    struct lq_unit *next;
};

#endif /* SLM_LIQUID_AST_H */
