/*
 * liquid/internal.h - private structures shared by the Liquid engine's files:
 * values, the parsed tree, symbols, the render state and the scratch memory.
 *
 *   lexer.c    template scanner (text / {{ }} / {% %}) and markup tokens
 *   parser.c   tags and expressions -> tree; partials with literal names
 *   symtab.c   symbol tables (names -> dense ids)
 *   value.c    values: truthiness, equality, comparison, to-string, numbers
 *   render.c   the tree walker: scopes, loops, include/render
 *   filters*.c the standard filters and the extensions
 *   date.c     date parsing and strftime for the date filter
 *   loader.c   the jailed file loader
 *   template.c the public API glue
 *
 * Everything a template owns lives in its arena (nodes, strings, the copied
 * source) except the symbol table arrays (malloc, grown while parsing).
 * Everything a render makes lives in its scratch memory, freed at the end.
 */
#ifndef SLM_LIQUID_INTERNAL_H
#define SLM_LIQUID_INTERNAL_H

#include "slm/liquid.h"

#include <string.h>

/* ---------------------------------------------------------------- values */

enum lq_kind {
    LQ_NIL = 0,
    LQ_BOOL,
    LQ_INT,
    LQ_FLOAT,
    LQ_STR,   /* u.s: bytes, borrowed (template, vars or scratch) */
    LQ_RANGE, /* u.r: lo..hi inclusive */
    LQ_ARR,   /* u.a: an array made while rendering (scratch) */
    LQ_JARR,  /* u.j: a jansson array (borrowed from vars) */
    LQ_JOBJ,  /* u.j: a jansson object */
    LQ_EMPTY, /* the literal `empty` */
    LQ_BLANK, /* the literal `blank` */
    LQ_LOOP,  /* u.loop: forloop / tablerowloop */
};

struct lq_arr;
struct lq_loop;

struct lq_val {
    uint8_t k;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            int64_t lo, hi;
        } r;
        const json_t *j;
        const struct lq_arr *a;
        const struct lq_loop *loop;
    } u;
};

struct lq_arr {
    size_t n;
    struct lq_val v[];
};

static inline struct lq_val lq_nil(void) {
    struct lq_val v;
    v.k = LQ_NIL;
    v.u.i = 0;
    return v;
}
static inline struct lq_val lq_int(int64_t i) {
    struct lq_val v;
    v.k = LQ_INT;
    v.u.i = i;
    return v;
}
static inline struct lq_val lq_float(double f) {
    struct lq_val v;
    v.k = LQ_FLOAT;
    v.u.f = f;
    return v;
}
static inline struct lq_val lq_bool(bool b) {
    struct lq_val v;
    v.k = LQ_BOOL;
    v.u.i = 0;
    v.u.b = b;
    return v;
}
static inline struct lq_val lq_str(const char *p, size_t n) {
    struct lq_val v;
    v.k = LQ_STR;
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline bool lq_truthy(const struct lq_val *v) {
    return !(v->k == LQ_NIL || (v->k == LQ_BOOL && !v->u.b));
}
/* double -> int64 without undefined behaviour: NaN is 0, out of range clamps. */
static inline int64_t lq_f2i(double f) {
    if (!(f == f)) {
        return 0;
    }
    if (f >= 9.2e18) {
        return INT64_MAX;
    }
    if (f <= -9.2e18) {
        return INT64_MIN;
    }
    return (int64_t)f;
}
/* A count as a Liquid integer (clamped: a range can hold 2^64 numbers). */
static inline struct lq_val lq_count(size_t n) {
    return lq_int(n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n);
}
static inline bool lq_is_num(const struct lq_val *v) {
    return v->k == LQ_INT || v->k == LQ_FLOAT;
}

/* A jansson value as a Liquid value (no allocation). */
static inline struct lq_val lq_from_json(const json_t *j) {
    struct lq_val v;
    v.u.i = 0;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v.k = LQ_JOBJ;
        v.u.j = j;
        break;
    case JSON_ARRAY:
        v.k = LQ_JARR;
        v.u.j = j;
        break;
    case JSON_STRING:
        v.k = LQ_STR;
        v.u.s.p = json_string_value(j);
        v.u.s.n = json_string_length(j);
        break;
    case JSON_INTEGER:
        v.k = LQ_INT;
        v.u.i = (int64_t)json_integer_value(j);
        break;
    case JSON_REAL:
        v.k = LQ_FLOAT;
        v.u.f = json_real_value(j);
        break;
    case JSON_TRUE:
        v.k = LQ_BOOL;
        v.u.b = true;
        break;
    case JSON_FALSE:
        v.k = LQ_BOOL;
        v.u.b = false;
        break;
    default: v.k = LQ_NIL; break;
    }
    return v;
}

/* ---------------------------------------------------------------- symbols */

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

#define LQ_NOSYM UINT32_MAX

uint32_t slm__lq_hash(const char *p, size_t n);
/* Id of `name`, adding it (copied into `arena`) when absent; LQ_NOSYM on
 * allocation failure. */
uint32_t slm__lq_sym_intern(struct lq_symtab *t, struct slm_arena *arena, const char *p, size_t n);
/* Id of `name` or LQ_NOSYM. */
uint32_t slm__lq_sym_find(const struct lq_symtab *t, const char *p, size_t n);
int slm__lq_symtab_copy(struct lq_symtab *dst, const struct lq_symtab *src);
void slm__lq_symtab_free(struct lq_symtab *t);

/* ---------------------------------------------------------------- tree */

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
    const struct lq_prim *args;
    const struct lq_kwarg *kw;
};

/* A primary followed by filters: outputs, assign, echo. */
struct lq_fexpr {
    struct lq_prim prim;
    uint32_t nfilt;
    const struct lq_filter *filt;
};

enum lq_op { OP_NONE, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_CONTAINS };
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

/* ---------------------------------------------------------------- filters */

struct lq_rs;
typedef int (*lq_filter_fn)(struct lq_rs *rs, const struct lq_filter *f, struct lq_val *v,
                            const struct lq_val *args);

struct lq_filter_def {
    const char *name;
    uint8_t min, max; /* positional argument counts */
    bool kw;          /* takes keyword arguments */
    lq_filter_fn fn;
};

/* The table; index = lq_filter.id. */
extern const struct lq_filter_def slm__lq_filters[];
extern const size_t slm__lq_nfilters;
/* Index of the named filter or -1. */
int slm__lq_filter_find(const char *p, size_t n);

/* ---------------------------------------------------------------- template */

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
/* "name:line:col: " prefix for a position in `src`. */
int slm__lq_errf(struct slm_err *err, int code, const char *name, const char *src, size_t len,
                 size_t pos, const char *fmt, ...) SLM_PRINTF(7, 8);
/* Line (1-based) and column (1-based, bytes) of `pos`. */
void slm__lq_linecol(const char *src, size_t len, size_t pos, int *line, int *col);

/* ---------------------------------------------------------------- render state */

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
    _Alignas(16) char first[8192]; /* the first chunk lives in the render state */
};

struct lq_binding {
    struct lq_val v;
    struct lq_binding *prev;
};

struct lq_slot {
    struct lq_binding *top; /* innermost pushed scope (for, include arguments) */
    struct lq_val root;     /* the context's outermost scope (assign, capture) */
    struct lq_val global;   /* cached lookup in the variables */
    int64_t counter;        /* increment / decrement */
    uint8_t has_root;
    uint8_t global_state; /* 0 not looked up, 1 cached */
    uint8_t has_counter;
};

/* A scope context: the template's, or an isolated one for {% render %}. */
struct lq_ctx {
    struct lq_slot *slots;
    uint32_t nslots;
    const json_t *globals; /* NULL in render'd partials */
    const struct lq_symtab *syms;
};

struct lq_loop {
    struct slm_str name;
    int64_t index0;
    int64_t length;
    int64_t cols; /* tablerow only; 0 for forloop */
    bool tablerow;
    const struct lq_loop *parent;
};

struct lq_cycle_state {
    struct lq_val key;
    int64_t iter;
};

struct lq_offset {
    struct slm_str name;
    int64_t next;
};

/* A direct-mapped cache of object[key] lookups for keys written in the
 * template (the variables do not change during a render). */
#define LQ_KCACHE 256
struct lq_kcache {
    const json_t *obj;
    const char *key;
    const json_t *val;
};

struct lq_rs {
    struct lq_kcache kcache[LQ_KCACHE];
    const struct slm_liquid_template *t;
    const struct lq_unit *unit; /* for error positions */
    struct lq_ctx *ctx;
    struct slm_buf *out;
    size_t out_max;
    uint64_t steps, max_steps;
    int include_depth;
    int interrupt; /* 0, LQ_BREAK or LQ_CONTINUE */
    bool lax;
    const struct lq_loop *for_top; /* parentloop for the next forloop */
    struct lq_cycle_state *cycles;
    size_t ncycles, cycles_cap;
    struct lq_offset *offsets;
    size_t noffsets, offsets_cap;
    struct slm_str ifchanged;
    bool has_ifchanged;
    struct lq_symtab *dyn_syms; /* grown by partials named at render time */
    struct lq_unit *dyn_units;  /* partials parsed during this render */
    struct slm_arena dyn_arena;
    struct slm_err *err; /* never NULL (points at errbuf when the caller passed NULL) */
    struct slm_err errbuf;
    struct lq_mem mem;
};

#define LQ_BREAK 1
#define LQ_CONTINUE 2

/* Scratch memory: 16-byte aligned, not zeroed; NULL past max_memory_bytes. */
void *slm__lq_alloc(struct lq_rs *rs, size_t n);
/* A string builder on top of the scratch memory: while one is open no other
 * scratch allocation may happen. */
struct lq_sb {
    struct lq_rs *rs;
    char *p;
    size_t n, cap;
    bool failed;
};
void slm__lq_sb_begin(struct lq_rs *rs, struct lq_sb *sb, size_t hint);
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
/* Closes the builder; *out is the string (NUL-terminated). SLM_E_LIMIT when
 * the scratch memory ran out. */
int slm__lq_sb_end(struct lq_sb *sb, struct lq_val *out);

/* Runtime errors: "name:line:col: message". In lax mode callers may turn
 * SLM_E_INVALID into inline text (render.c decides). */
int slm__lq_rt_err(struct lq_rs *rs, uint32_t pos, int code, const char *fmt, ...) SLM_PRINTF(4, 5);
/* Charges `n` units of work; SLM_E_LIMIT past max_steps. */
int slm__lq_charge(struct lq_rs *rs, uint64_t n, uint32_t pos);

/* ---------------------------------------------------------------- value helpers (value.c) */

/* Appends the Liquid string form of `v` (arrays joined, objects inspected). */
void slm__lq_write_val(struct lq_sb *sb, const struct lq_val *v, int depth);
/* The string form of `v` as a view (no copy for strings; scratch otherwise).
 * Returns SLM_OK or SLM_E_LIMIT. */
int slm__lq_to_str(struct lq_rs *rs, const struct lq_val *v, struct slm_str *out);
/* Formats numbers as Ruby does (5, 5.0, 0.1, 1.0e+16). Returns length. */
size_t slm__lq_fmt_int(int64_t i, char *buf);  /* buf >= 24 */
size_t slm__lq_fmt_float(double f, char *buf); /* buf >= 40 */
/* Shortest round-trip digits of f (> 0, finite) into digits (>= 24 bytes):
 * f = 0.DIGITS x 10^decpt. Returns the number of digits. */
int slm__lq_float_digits(double f, char *digits, int *decpt);
bool slm__lq_equal(const struct lq_val *a, const struct lq_val *b);
/* Ruby's <=>: -1/0/1, or 2 when the values cannot be compared. */
int slm__lq_cmp(const struct lq_val *a, const struct lq_val *b);
/* `left op right` for conditions; SLM_E_INVALID for string vs number. */
int slm__lq_compare(struct lq_rs *rs, uint32_t pos, const struct lq_val *l, int op,
                    const struct lq_val *r, bool *res);
/* blank? / empty? in Shopify's sense. */
bool slm__lq_is_blank(const struct lq_val *v);
bool slm__lq_is_empty(const struct lq_val *v);
/* Length and items of array-likes (LQ_ARR, LQ_JARR, LQ_RANGE); 0 otherwise. */
size_t slm__lq_seq_len(const struct lq_val *v);
struct lq_val slm__lq_seq_get(const struct lq_val *v, size_t i);
/* Number of UTF-8 code points. */
size_t slm__lq_utf8_len(const char *p, size_t n);
/* Ruby's String#to_i (leading integer, else 0). */
int64_t slm__lq_str_to_i(const char *p, size_t n);
/* A fresh scratch array of n items (n may be 0). */
struct lq_arr *slm__lq_arr_new(struct lq_rs *rs, size_t n);
static inline struct lq_val lq_arr_val(const struct lq_arr *a) {
    struct lq_val v;
    v.k = LQ_ARR;
    v.u.a = a;
    return v;
}

/* ---------------------------------------------------------------- render helpers (render.c) */

int slm__lq_eval(struct lq_rs *rs, const struct lq_prim *p, struct lq_val *out);
/* Looks `key` up in `v` as a filter would (item[key]). */
bool slm__lq_lookup_key(const struct lq_val *v, struct slm_str key, struct lq_val *out);

/* Renders a parsed template (render.c); the public slm_liquid_render wraps it. */
int slm__lq_render(const struct slm_liquid_template *t, const json_t *vars, struct slm_buf *out,
                   struct slm_err *err);

/* ---------------------------------------------------------------- date (date.c) */

/* Parses a date the way Liquid's date filter accepts it (unix seconds,
 * "now"/"today", ISO 8601, "March 14, 2016", RFC 2822, ...). False when the
 * input is not a date. */
bool slm__lq_parse_date(const struct lq_val *v, int64_t now, int64_t *t, int *utc_off,
                        bool *has_off);
/* Ruby-compatible strftime into `sb`. */
void slm__lq_strftime(struct lq_sb *sb, const char *fmt, size_t n, int64_t t, int utc_off,
                      bool has_off);

#endif /* SLM_LIQUID_INTERNAL_H */
