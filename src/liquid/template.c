/*
 * liquid/template.c - the public API of the Liquid engine: parameters,
 * parse, render, free, warnings.
 */
#include "liquid/template.h"

#include <stdlib.h>
#include <string.h>

struct slm_liquid_params slm_liquid_params_default(void) {
    struct slm_liquid_params p;
    memset(&p, 0, sizeof(p));
    p.mode = SLM_LIQUID_STRICT;
    p.max_template_bytes = (size_t)1 << 20;
    p.max_output_bytes = (size_t)16 << 20;
    p.max_steps = 10000000;
    p.max_memory_bytes = (size_t)64 << 20;
    p.max_depth = 64;
    p.max_include_depth = 32;
    return p;
}

static void fill_defaults(struct slm_liquid_params *p) {
    struct slm_liquid_params d = slm_liquid_params_default();
    if (!p->max_template_bytes) {
        p->max_template_bytes = d.max_template_bytes;
    }
    if (!p->max_output_bytes) {
        p->max_output_bytes = d.max_output_bytes;
    }
    if (!p->max_steps) {
        p->max_steps = d.max_steps;
    }
    if (!p->max_memory_bytes) {
        p->max_memory_bytes = d.max_memory_bytes;
    }
    if (p->max_depth <= 0) {
        p->max_depth = d.max_depth;
    }
    if (p->max_include_depth <= 0) {
        p->max_include_depth = d.max_include_depth;
    }
    if (p->mode != SLM_LIQUID_WARN && p->mode != SLM_LIQUID_LAX) {
        p->mode = SLM_LIQUID_STRICT;
    }
}

void slm_liquid_free(struct slm_liquid_template *t) {
    if (!t) {
        return;
    }
    slm_arena_free(&t->arena);
    slm__lq_symtab_free(&t->syms);
    free(t->root);
    json_decref(t->partials);
    for (size_t i = 0; i < t->nwarnings; i++) {
        free(t->warnings[i]);
    }
    free(t->warnings);
    free(t->name);
    free(t);
}

static int parse_with_root(const char *name, const char *src, size_t len,
                           const struct slm_liquid_params *params, const char *root,
                           struct slm_liquid_template **out, struct slm_err *err) {
    *out = NULL;
    if (!name) {
        name = "template";
    }
    struct slm_liquid_template *t = calloc(1, sizeof(*t));
    if (!t) {
        return slm_err_set(err, SLM_E_NOMEM, "%s: out of memory", name);
    }
    t->params = params ? *params : slm_liquid_params_default();
    fill_defaults(&t->params);
    slm_arena_init(&t->arena, 0);
    int rc = SLM_E_NOMEM;
    t->name = slm_str_dup(slm_str_c(name));
    if (!t->name) {
        goto fail;
    }
    if (root) {
        t->root = slm_str_dup(slm_str_c(root));
        if (!t->root) {
            goto fail;
        }
    }
    t->params.root = t->root;
    if (t->params.partials) {
        t->partials = json_incref((json_t *)t->params.partials);
    }
    t->params.partials = t->partials;
    /* The loop variables always have ids, so partials parsed at render time
     * can see them. */
    if (slm__lq_sym_intern(&t->syms, &t->arena, "forloop", 7) == LQ_NOSYM ||
        slm__lq_sym_intern(&t->syms, &t->arena, "tablerowloop", 12) == LQ_NOSYM) {
        goto fail;
    }
    struct lq_penv env = {t, &t->arena, &t->syms, &t->units, NULL, &t->warnings, &t->nwarnings, 0};
    rc = slm__lq_parse_unit(&env, name, src ? src : "", src ? len : 0, &t->main, err);
    if (rc != SLM_OK) {
        slm_liquid_free(t);
        return rc;
    }
    /* The main unit is first in t->units (it was added before its partials
     * finished); take it out so only partials remain there. */
    struct lq_unit **pp = &t->units;
    while (*pp && *pp != t->main) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = t->main->next;
        t->main->next = NULL;
    }
    *out = t;
    return SLM_OK;
fail:
    slm_liquid_free(t);
    return slm_err_set(err, rc, "%s: out of memory", name);
}

int slm_liquid_parse(const char *name, const char *src, size_t len,
                     const struct slm_liquid_params *params, struct slm_liquid_template **out,
                     struct slm_err *err) {
    return parse_with_root(name, src, len, params, params ? params->root : NULL, out, err);
}

int slm_liquid_parse_file(const char *path, const struct slm_liquid_params *params,
                          struct slm_liquid_template **out, struct slm_err *err) {
    *out = NULL;
    struct slm_liquid_params p = params ? *params : slm_liquid_params_default();
    fill_defaults(&p);
    struct slm_buf src;
    slm_buf_init(&src, p.max_template_bytes);
    int rc = slm_file_read(path, p.max_template_bytes, &src, err);
    if (rc != SLM_OK) {
        slm_buf_free(&src);
        if (rc == SLM_E_TOO_LARGE) {
            return slm_err_set(err, rc, "%s: template is over the %zu-byte limit", path,
                               p.max_template_bytes);
        }
        return rc;
    }
    char *dir = NULL;
    if (!p.root) {
        const char *slash = strrchr(path, '/');
        dir = slash ? slm_str_dup(slm_str_n(path, slash == path ? 1 : (size_t)(slash - path)))
                    : slm_str_dup(SLM_STR("."));
        if (!dir) {
            slm_buf_free(&src);
            return slm_err_set(err, SLM_E_NOMEM, "%s: out of memory", path);
        }
    }
    rc = parse_with_root(path, slm_buf_cstr(&src), src.len, &p, p.root ? p.root : dir, out, err);
    free(dir);
    slm_buf_free(&src);
    return rc;
}

int slm_liquid_render(const struct slm_liquid_template *t, const json_t *vars, struct slm_buf *out,
                      struct slm_err *err) {
    if (!t || !out) {
        return slm_err_set(err, SLM_E_INVALID, "liquid: no template or output buffer");
    }
    return slm__lq_render(t, vars, out, err);
}

int slm_liquid_render_string(const char *src, size_t len, const json_t *vars,
                             const struct slm_liquid_params *params, struct slm_buf *out,
                             struct slm_err *err) {
    struct slm_liquid_template *t;
    int rc = slm_liquid_parse(NULL, src, len, params, &t, err);
    if (rc != SLM_OK) {
        return rc;
    }
    rc = slm_liquid_render(t, vars, out, err);
    slm_liquid_free(t);
    return rc;
}

const char *slm_liquid_name(const struct slm_liquid_template *t) {
    return t ? t->name : "";
}

size_t slm_liquid_warning_count(const struct slm_liquid_template *t) {
    return t ? t->nwarnings : 0;
}

const char *slm_liquid_warning(const struct slm_liquid_template *t, size_t i) {
    return t && i < t->nwarnings ? t->warnings[i] : NULL;
}
