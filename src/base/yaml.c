/*
 * yaml.c - YAML into jansson with a position side table (slm/yaml.h).
 *
 * Built on libyaml's event API: a stack of open mappings/sequences, values
 * attached to the top as their events arrive. Positions live in one
 * open-addressing hash table keyed by (parent, key) for mapping members,
 * (parent, index) for sequence items and (node) for containers; jansson
 * shares its true/false/null singletons, so scalars can only be located
 * through their parent.
 */
#include "slm/yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

struct pos_entry {
    const json_t *parent; /* NULL = empty slot */
    const char *key;      /* member key (arena), or NULL */
    size_t index;         /* item index; SIZE_MAX for a node entry */
    struct slm_yaml_pos pos;
};

struct slm_yaml_doc {
    char *name;
    json_t *root;
    struct pos_entry *tab;
    size_t cap, used;
    struct slm_arena keys;
};

struct slm_yaml_params slm_yaml_params_default(void) {
    struct slm_yaml_params p = {(size_t)4 << 20, 64, 1000000};
    return p;
}

/* ---------------------------------------------------------------- position table */

static uint64_t hash_entry(const json_t *parent, const char *key, size_t index) {
    uint64_t h = (uint64_t)(uintptr_t)parent * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)index * 0xC2B2AE3D27D4EB4Full;
    if (key) {
        for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
            h = (h ^ *p) * 0x100000001B3ull;
        }
    }
    return h ^ (h >> 31);
}

static bool entry_matches(const struct pos_entry *e, const json_t *parent, const char *key,
                          size_t index) {
    if (e->parent != parent || e->index != index) {
        return false;
    }
    if (!key || !e->key) {
        return key == e->key;
    }
    return strcmp(key, e->key) == 0;
}

static struct pos_entry *find_slot(struct pos_entry *tab, size_t cap, const json_t *parent,
                                   const char *key, size_t index) {
    size_t i = (size_t)hash_entry(parent, key, index) & (cap - 1);
    while (tab[i].parent && !entry_matches(&tab[i], parent, key, index)) {
        i = (i + 1) & (cap - 1);
    }
    return &tab[i];
}

static int grow(struct slm_yaml_doc *d) {
    size_t ncap = d->cap ? d->cap * 2 : 256;
    struct pos_entry *nt = calloc(ncap, sizeof(*nt));
    if (!nt) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < d->cap; i++) {
        if (d->tab[i].parent) {
            *find_slot(nt, ncap, d->tab[i].parent, d->tab[i].key, d->tab[i].index) = d->tab[i];
        }
    }
    free(d->tab);
    d->tab = nt;
    d->cap = ncap;
    return SLM_OK;
}

static int pos_put(struct slm_yaml_doc *d, const json_t *parent, const char *key, size_t index,
                   struct slm_yaml_pos pos) {
    if ((d->used + 1) * 2 > d->cap && grow(d) != SLM_OK) {
        return SLM_E_NOMEM;
    }
    struct pos_entry *e = find_slot(d->tab, d->cap, parent, key, index);
    if (!e->parent) {
        if (key && !(key = slm_arena_strndup(&d->keys, key, strlen(key)))) {
            return SLM_E_NOMEM;
        }
        d->used++;
    }
    e->parent = parent;
    e->key = key;
    e->index = index;
    e->pos = pos;
    return SLM_OK;
}

static bool pos_get(const struct slm_yaml_doc *d, const json_t *parent, const char *key,
                    size_t index, struct slm_yaml_pos *out) {
    if (!d || !d->cap || !parent) {
        return false;
    }
    const struct pos_entry *e = find_slot(d->tab, d->cap, parent, key, index);
    if (!e->parent) {
        return false;
    }
    *out = e->pos;
    return true;
}

struct slm_yaml_pos slm_yaml_pos_node(const struct slm_yaml_doc *doc, const json_t *node) {
    struct slm_yaml_pos p = {0, 0};
    (void)pos_get(doc, node, NULL, SIZE_MAX, &p);
    return p;
}

struct slm_yaml_pos slm_yaml_pos_key(const struct slm_yaml_doc *doc, const json_t *parent,
                                     const char *key) {
    struct slm_yaml_pos p = {0, 0};
    if (key && pos_get(doc, parent, key, SIZE_MAX, &p)) {
        return p;
    }
    return slm_yaml_pos_node(doc, parent);
}

struct slm_yaml_pos slm_yaml_pos_index(const struct slm_yaml_doc *doc, const json_t *parent,
                                       size_t index) {
    struct slm_yaml_pos p = {0, 0};
    if (index != SIZE_MAX && pos_get(doc, parent, NULL, index, &p)) {
        return p;
    }
    return slm_yaml_pos_node(doc, parent);
}

json_t *slm_yaml_root(const struct slm_yaml_doc *doc) {
    return doc->root;
}

const char *slm_yaml_name(const struct slm_yaml_doc *doc) {
    return doc->name;
}

void slm_yaml_free(struct slm_yaml_doc *doc) {
    if (!doc) {
        return;
    }
    json_decref(doc->root);
    free(doc->tab);
    slm_arena_free(&doc->keys);
    free(doc->name);
    free(doc);
}

/* ---------------------------------------------------------------- the builder */

struct frame {
    json_t *node;
    bool is_map;
    char *key; /* pending mapping key (heap), NULL when the next scalar is a key */
    struct slm_yaml_pos key_pos;
    char *anchor; /* anchor to register when the node ends, or NULL */
};

struct anchor {
    char *name;
    json_t *value;
    size_t n_nodes; /* values in it, for the node limit of alias copies */
    int depth;
};

struct builder {
    struct slm_yaml_doc *doc;
    struct slm_yaml_params p;
    struct frame *stack;
    int depth;
    size_t n_nodes;
    struct anchor *anchors;
    size_t n_anchors;
    bool have_root;
    struct slm_err *err;
};

static int fail(struct builder *b, int code, yaml_mark_t mark, const char *fmt, ...)
    SLM_PRINTF(4, 5);

static int fail(struct builder *b, int code, yaml_mark_t mark, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return slm_err_set(b->err, code, "%s:%d:%d: %s", b->doc->name, (int)mark.line + 1,
                       (int)mark.column + 1, msg);
}

static struct slm_yaml_pos mark_pos(yaml_mark_t m) {
    struct slm_yaml_pos p = {(int)m.line + 1, (int)m.column + 1};
    return p;
}

static void count_nodes(const json_t *v, int depth, size_t *n, int *max_depth) {
    (*n)++;
    if (depth > *max_depth) {
        *max_depth = depth;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            count_nodes(c, depth + 1, n, max_depth);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            count_nodes(c, depth + 1, n, max_depth);
        }
    }
}

static int add_anchor(struct builder *b, const char *name, json_t *value, yaml_mark_t mark) {
    struct anchor *na = realloc(b->anchors, (b->n_anchors + 1) * sizeof(*na));
    if (!na) {
        return fail(b, SLM_E_NOMEM, mark, "out of memory");
    }
    b->anchors = na;
    struct anchor *a = &na[b->n_anchors];
    a->name = strdup(name);
    if (!a->name) {
        return fail(b, SLM_E_NOMEM, mark, "out of memory");
    }
    a->value = json_incref(value);
    a->n_nodes = 0;
    a->depth = 0;
    count_nodes(value, 0, &a->n_nodes, &a->depth);
    b->n_anchors++;
    return SLM_OK;
}

/* Attaches a finished value (takes the reference) to the open container or
 * makes it the root. */
static int attach(struct builder *b, json_t *v, yaml_mark_t mark) {
    struct slm_yaml_doc *d = b->doc;
    if (b->depth == 0) {
        d->root = v;
        b->have_root = true;
        return SLM_OK;
    }
    struct frame *f = &b->stack[b->depth - 1];
    int rc;
    if (f->is_map) {
        if (json_object_set_new(f->node, f->key, v) != 0) {
            return fail(b, SLM_E_NOMEM, mark, "out of memory");
        }
        rc = pos_put(d, f->node, f->key, SIZE_MAX, f->key_pos);
        free(f->key);
        f->key = NULL;
    } else {
        size_t index = json_array_size(f->node);
        if (json_array_append_new(f->node, v) != 0) {
            return fail(b, SLM_E_NOMEM, mark, "out of memory");
        }
        rc = pos_put(d, f->node, NULL, index, mark_pos(mark));
    }
    return rc == SLM_OK ? SLM_OK : fail(b, rc, mark, "out of memory");
}

static bool is_digits(const char *s, const char *set) {
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (!strchr(set, *s)) {
            return false;
        }
    }
    return true;
}

static bool looks_float(const char *s) {
    if (*s == '-' || *s == '+') {
        s++;
    }
    size_t digits = 0;
    while (*s >= '0' && *s <= '9') {
        s++, digits++;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            s++, digits++;
        }
    }
    if (digits == 0) {
        return false;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') {
            s++;
        }
        if (!(*s >= '0' && *s <= '9')) {
            return false;
        }
        while (*s >= '0' && *s <= '9') {
            s++;
        }
    }
    return *s == '\0';
}

static bool word_in(const char *s, const char *const *words) {
    for (; *words; words++) {
        if (strcmp(s, *words) == 0) {
            return true;
        }
    }
    return false;
}

/* A plain scalar under the core schema. */
static int resolve_plain(struct builder *b, const char *s, yaml_mark_t mark, json_t **out) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const specials[] = {".inf",  ".Inf",  ".INF",  "+.inf", "-.inf",
                                           "+.Inf", "-.Inf", "+.INF", "-.INF", ".nan",
                                           ".NaN",  ".NAN",  NULL};
    if (word_in(s, nulls)) {
        *out = json_null();
    } else if (word_in(s, trues)) {
        *out = json_true();
    } else if (word_in(s, falses)) {
        *out = json_false();
    } else if (word_in(s, specials)) {
        return fail(b, SLM_E_INVALID, mark, "'%s': infinity and NaN are not supported", s);
    } else if (is_digits(s + (*s == '-' || *s == '+'), "0123456789")) {
        int64_t v;
        if (slm_parse_i64(slm_str_c(s + (*s == '+')), &v) != SLM_OK) {
            return fail(b, SLM_E_INVALID, mark, "integer '%s' is out of range", s);
        }
        *out = json_integer((json_int_t)v);
    } else if ((s[0] == '0' && s[1] == 'x' && is_digits(s + 2, "0123456789abcdefABCDEF")) ||
               (s[0] == '0' && s[1] == 'o' && is_digits(s + 2, "01234567"))) {
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s + 2, &end, s[1] == 'x' ? 16 : 8);
        if (errno || *end || v > (unsigned long long)INT64_MAX) {
            return fail(b, SLM_E_INVALID, mark, "integer '%s' is out of range", s);
        }
        *out = json_integer((json_int_t)v);
    } else if (looks_float(s)) {
        double v;
        if (slm_parse_f64(slm_str_c(s), &v) != SLM_OK) {
            return fail(b, SLM_E_INVALID, mark, "number '%s' is out of range", s);
        }
        *out = json_real(v);
    } else {
        *out = json_string(s);
    }
    return SLM_OK;
}

static int make_scalar(struct builder *b, const yaml_event_t *ev, json_t **out) {
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    yaml_mark_t mark = ev->start_mark;
    *out = NULL;
    if (tag && strcmp(tag, "!") != 0) {
        if (strncmp(tag, YAML_TAG_PREFIX, strlen(YAML_TAG_PREFIX)) != 0) {
            return fail(b, SLM_E_INVALID, mark, "unsupported tag '%s'", tag);
        }
        const char *t = tag + strlen(YAML_TAG_PREFIX);
        if (strcmp(t, "str") == 0) {
            *out = json_stringn(s, len);
        } else if (strcmp(t, "int") == 0 || strcmp(t, "float") == 0 || strcmp(t, "bool") == 0 ||
                   strcmp(t, "null") == 0) {
            int rc = resolve_plain(b, s, mark, out);
            if (rc != SLM_OK) {
                return rc;
            }
            bool ok = (t[0] == 'i' && json_is_integer(*out)) ||
                      (t[0] == 'f' && json_is_number(*out)) ||
                      (t[0] == 'b' && json_is_boolean(*out)) || (t[0] == 'n' && json_is_null(*out));
            if (!ok) {
                json_decref(*out);
                *out = NULL;
                return fail(b, SLM_E_INVALID, mark, "'%s' is not a valid !!%s", s, t);
            }
        } else {
            return fail(b, SLM_E_INVALID, mark, "unsupported tag '!!%s'", t);
        }
    } else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag) {
        if (strlen(s) != len) {
            return fail(b, SLM_E_INVALID, mark, "NUL byte in a scalar");
        }
        int rc = resolve_plain(b, s, mark, out);
        if (rc != SLM_OK) {
            return rc;
        }
    } else {
        *out = json_stringn(s, len);
    }
    return *out ? SLM_OK : fail(b, SLM_E_INVALID, mark, "invalid scalar (not UTF-8?)");
}

static int count_node(struct builder *b, size_t n, yaml_mark_t mark) {
    b->n_nodes += n;
    if (b->n_nodes > b->p.max_nodes) {
        return fail(b, SLM_E_LIMIT, mark, "more than %zu values (alias expansion?)",
                    b->p.max_nodes);
    }
    return SLM_OK;
}

/* A scalar in key position of an open mapping. */
static int take_key(struct builder *b, const yaml_event_t *ev) {
    struct frame *f = &b->stack[b->depth - 1];
    const char *s = (const char *)ev->data.scalar.value;
    if (strlen(s) != ev->data.scalar.length) {
        return fail(b, SLM_E_INVALID, ev->start_mark, "NUL byte in a key");
    }
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(s, "<<") == 0) {
        return fail(b, SLM_E_INVALID, ev->start_mark, "merge keys ('<<') are not supported");
    }
    if (json_object_get(f->node, s)) {
        return fail(b, SLM_E_INVALID, ev->start_mark, "duplicate key '%s'", s);
    }
    f->key = strdup(s);
    if (!f->key) {
        return fail(b, SLM_E_NOMEM, ev->start_mark, "out of memory");
    }
    f->key_pos = mark_pos(ev->start_mark);
    return SLM_OK;
}

static bool expecting_key(const struct builder *b) {
    return b->depth > 0 && b->stack[b->depth - 1].is_map && !b->stack[b->depth - 1].key;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev) {
    if (expecting_key(b)) {
        return take_key(b, ev);
    }
    int rc = count_node(b, 1, ev->start_mark);
    json_t *v = NULL;
    if (rc == SLM_OK) {
        rc = make_scalar(b, ev, &v);
    }
    if (rc == SLM_OK && ev->data.scalar.anchor) {
        rc = add_anchor(b, (const char *)ev->data.scalar.anchor, v, ev->start_mark);
    }
    if (rc != SLM_OK) {
        json_decref(v);
        return rc;
    }
    return attach(b, v, ev->start_mark);
}

/* Values copied from an anchor are located at the alias that copied them. */
static int locate_copy(struct slm_yaml_doc *d, const json_t *v, struct slm_yaml_pos pos) {
    int rc = SLM_OK;
    if (json_is_object(v)) {
        rc = pos_put(d, v, NULL, SIZE_MAX, pos);
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            if (rc == SLM_OK) {
                rc = pos_put(d, v, k, SIZE_MAX, pos);
            }
            if (rc == SLM_OK) {
                rc = locate_copy(d, c, pos);
            }
        }
    } else if (json_is_array(v)) {
        rc = pos_put(d, v, NULL, SIZE_MAX, pos);
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c) {
            if (rc == SLM_OK) {
                rc = pos_put(d, v, NULL, i, pos);
            }
            if (rc == SLM_OK) {
                rc = locate_copy(d, c, pos);
            }
        }
    }
    return rc;
}

static int on_alias(struct builder *b, const yaml_event_t *ev) {
    if (expecting_key(b)) {
        return fail(b, SLM_E_INVALID, ev->start_mark, "an alias cannot be a key");
    }
    const char *name = (const char *)ev->data.alias.anchor;
    for (size_t i = b->n_anchors; i-- > 0;) {
        struct anchor *a = &b->anchors[i];
        if (strcmp(a->name, name) != 0) {
            continue;
        }
        if (b->depth + a->depth > b->p.max_depth) {
            return fail(b, SLM_E_LIMIT, ev->start_mark, "nesting deeper than %d", b->p.max_depth);
        }
        int rc = count_node(b, a->n_nodes, ev->start_mark);
        if (rc != SLM_OK) {
            return rc;
        }
        json_t *copy = json_deep_copy(a->value);
        if (!copy || locate_copy(b->doc, copy, mark_pos(ev->start_mark)) != SLM_OK) {
            json_decref(copy);
            return fail(b, SLM_E_NOMEM, ev->start_mark, "out of memory");
        }
        return attach(b, copy, ev->start_mark);
    }
    return fail(b, SLM_E_INVALID, ev->start_mark, "unknown or unfinished anchor '*%s'", name);
}

static int on_start(struct builder *b, const yaml_event_t *ev, bool is_map) {
    if (expecting_key(b)) {
        return fail(b, SLM_E_INVALID, ev->start_mark, "keys must be scalars");
    }
    if (b->depth >= b->p.max_depth) {
        return fail(b, SLM_E_LIMIT, ev->start_mark, "nesting deeper than %d", b->p.max_depth);
    }
    int rc = count_node(b, 1, ev->start_mark);
    if (rc != SLM_OK) {
        return rc;
    }
    const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    const char *want = is_map ? YAML_TAG_PREFIX "map" : YAML_TAG_PREFIX "seq";
    if (tag && strcmp((const char *)tag, "!") != 0 && strcmp((const char *)tag, want) != 0) {
        return fail(b, SLM_E_INVALID, ev->start_mark, "unsupported tag '%s'", (const char *)tag);
    }
    json_t *node = is_map ? json_object() : json_array();
    const yaml_char_t *anchor =
        is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    char *anchor_copy = anchor ? strdup((const char *)anchor) : NULL;
    if (!node || (anchor && !anchor_copy) ||
        pos_put(b->doc, node, NULL, SIZE_MAX, mark_pos(ev->start_mark)) != SLM_OK) {
        json_decref(node);
        free(anchor_copy);
        return fail(b, SLM_E_NOMEM, ev->start_mark, "out of memory");
    }
    struct frame *f = &b->stack[b->depth++];
    memset(f, 0, sizeof(*f));
    f->node = node;
    f->is_map = is_map;
    f->anchor = anchor_copy;
    return SLM_OK;
}

static int on_end(struct builder *b, const yaml_event_t *ev) {
    struct frame *f = &b->stack[--b->depth];
    json_t *node = f->node;
    char *anchor = f->anchor;
    free(f->key);
    memset(f, 0, sizeof(*f));
    int rc = anchor ? add_anchor(b, anchor, node, ev->start_mark) : SLM_OK;
    free(anchor);
    if (rc != SLM_OK) {
        json_decref(node);
        return rc;
    }
    /* the parent records the item where the container starts, not where it ends */
    struct slm_yaml_pos start = slm_yaml_pos_node(b->doc, node);
    yaml_mark_t mark = ev->start_mark;
    if (start.line > 0) {
        mark.line = (size_t)start.line - 1;
        mark.column = (size_t)start.col - 1;
    }
    return attach(b, node, mark);
}

static int parse_error(struct builder *b, const yaml_parser_t *ps) {
    const char *problem = ps->problem ? ps->problem : "syntax error";
    if (ps->context) {
        return slm_err_set(b->err, SLM_E_INVALID, "%s:%d:%d: %s %s", b->doc->name,
                           (int)ps->problem_mark.line + 1, (int)ps->problem_mark.column + 1,
                           problem, ps->context);
    }
    return slm_err_set(b->err, SLM_E_INVALID, "%s:%d:%d: %s", b->doc->name,
                       (int)ps->problem_mark.line + 1, (int)ps->problem_mark.column + 1, problem);
}

static int on_event(struct builder *b, const yaml_event_t *ev, int *n_docs) {
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*n_docs > 1) {
            return fail(b, SLM_E_INVALID, ev->start_mark, "more than one document");
        }
        return SLM_OK;
    case YAML_SCALAR_EVENT: return on_scalar(b, ev);
    case YAML_ALIAS_EVENT: return on_alias(b, ev);
    case YAML_MAPPING_START_EVENT: return on_start(b, ev, true);
    case YAML_SEQUENCE_START_EVENT: return on_start(b, ev, false);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT: return on_end(b, ev);
    default: return SLM_OK;
    }
}

static void builder_free(struct builder *b) {
    while (b->depth > 0) {
        struct frame *f = &b->stack[--b->depth];
        json_decref(f->node);
        free(f->key);
        free(f->anchor);
    }
    free(b->stack);
    for (size_t i = 0; i < b->n_anchors; i++) {
        free(b->anchors[i].name);
        json_decref(b->anchors[i].value);
    }
    free(b->anchors);
}

static int run_parser(struct builder *b, const char *data, size_t len) {
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) {
        return slm_err_set(b->err, SLM_E_NOMEM, "%s: out of memory", b->doc->name);
    }
    yaml_parser_set_input_string(&ps, (const unsigned char *)data, len);
    int rc = SLM_OK, n_docs = 0;
    for (bool done = false; !done && rc == SLM_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = parse_error(b, &ps);
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        rc = on_event(b, &ev, &n_docs);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ps);
    return rc;
}

int slm_yaml_parse(const char *name, const char *data, size_t len,
                   const struct slm_yaml_params *params, struct slm_yaml_doc **out,
                   struct slm_err *err) {
    *out = NULL;
    struct builder b;
    memset(&b, 0, sizeof(b));
    b.p = slm_yaml_params_default();
    if (params) {
        b.p.max_bytes = params->max_bytes ? params->max_bytes : b.p.max_bytes;
        b.p.max_depth = params->max_depth ? params->max_depth : b.p.max_depth;
        b.p.max_nodes = params->max_nodes ? params->max_nodes : b.p.max_nodes;
    }
    name = name ? name : "yaml";
    if (len > b.p.max_bytes) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s: larger than %zu bytes", name, b.p.max_bytes);
    }
    b.err = err;
    b.doc = calloc(1, sizeof(*b.doc));
    b.stack = calloc((size_t)b.p.max_depth + 1, sizeof(*b.stack));
    if (!b.doc || !b.stack || !(b.doc->name = strdup(name))) {
        free(b.stack);
        slm_yaml_free(b.doc);
        return slm_err_set(err, SLM_E_NOMEM, "%s: out of memory", name);
    }
    slm_arena_init(&b.doc->keys, 0);
    int rc = run_parser(&b, data, len);
    builder_free(&b);
    if (rc == SLM_OK && !b.have_root) {
        b.doc->root = json_null();
    }
    if (rc != SLM_OK) {
        slm_yaml_free(b.doc);
        return rc;
    }
    *out = b.doc;
    return SLM_OK;
}

int slm_yaml_load_file(const char *path, const struct slm_yaml_params *params,
                       struct slm_yaml_doc **out, struct slm_err *err) {
    size_t max =
        params && params->max_bytes ? params->max_bytes : slm_yaml_params_default().max_bytes;
    struct slm_buf buf = {0};
    *out = NULL;
    int rc = slm_file_read(path, max, &buf, err);
    if (rc == SLM_OK) {
        rc = slm_yaml_parse(path, slm_buf_cstr(&buf), buf.len, params, out, err);
    }
    slm_buf_free(&buf);
    return rc;
}
